/* The validating usbredir proxy: see gw-proxy.h for what is relayed, what
 * is checked and the buffering and threading contract. */
#include "gw-proxy-private.h"

#include <errno.h>
#include <stdarg.h>
#include <string.h>
#include <sys/socket.h>

const gchar *
gw_proxy_end_to_string(GwProxyEnd end)
{
    switch (end) {
    case GW_PROXY_END_CLIENT_CLOSED:
        return "client-closed";
    case GW_PROXY_END_QEMU_CLOSED:
        return "qemu-closed";
    case GW_PROXY_END_CLIENT_PROTOCOL:
        return "client-protocol";
    case GW_PROXY_END_QEMU_PROTOCOL:
        return "qemu-protocol";
    case GW_PROXY_END_DENIED:
        return "denied";
    }
    return "unknown";
}

void
gw_proxy_fail(GwProxy *proxy, GwProxyEnd end, const gchar *format, ...)
{
    va_list args;
    g_autofree gchar *reason = NULL;

    if (proxy->ended)
        return;
    va_start(args, format);
    reason = g_strdup_vprintf(format, args);
    va_end(args);
    gw_proxy_end(proxy, end, reason);
}

/* ---- Notifications --------------------------------------------------- */

static gboolean
gw_proxy_notify_cb(gpointer data)
{
    GwProxy *proxy = data;

    g_clear_pointer(&proxy->notify_source, g_source_unref);
    if (proxy->connected_device != NULL) {
        g_autoptr(PolicyDevice) device = g_steal_pointer(&proxy->connected_device);
        if (proxy->cb.connected != NULL && !proxy->ended)
            proxy->cb.connected(proxy, device, proxy->user_data);
    }
    if (proxy->ended && !proxy->end_notified) {
        proxy->end_notified = TRUE;
        if (proxy->denied_device != NULL && proxy->cb.denied != NULL)
            proxy->cb.denied(proxy, proxy->denied_device, proxy->end_reason, proxy->user_data);
        /* the owner may free the proxy here */
        proxy->cb.closed(proxy, proxy->end, proxy->end_reason, proxy->user_data);
    }
    return G_SOURCE_REMOVE;
}

void
gw_proxy_notify_later(GwProxy *proxy)
{
    if (proxy->notify_source != NULL)
        return;
    proxy->notify_source = g_idle_source_new();
    g_source_set_name(proxy->notify_source, "usbgw-proxy-notify");
    g_source_set_callback(proxy->notify_source, gw_proxy_notify_cb, proxy, NULL);
    g_source_attach(proxy->notify_source, proxy->context);
}

/* ---- Socket I/O -------------------------------------------------------- */

static gboolean
gw_proxy_side_output_full(GwProxySide *side)
{
    return side->initialized &&
           usbredirparser_get_bufferered_output_size(side->parser) >= GW_PROXY_MAX_BUFFERED;
}

static gboolean
gw_proxy_side_output_drained(GwProxySide *side)
{
    return !side->initialized ||
           usbredirparser_get_bufferered_output_size(side->parser) < GW_PROXY_RESUME_BUFFERED;
}

/* The side's socket or transport is still in use. */
static gboolean
gw_proxy_side_is_open(GwProxySide *side)
{
    return side->transport.read != NULL ? side->transport_open : side->fd >= 0;
}

static GwProxySide *
gw_proxy_other(GwProxySide *side)
{
    GwProxy *proxy = side->proxy;
    return side == &proxy->client ? &proxy->qemu : &proxy->client;
}

/* Whether @side may be read now (backpressure, with hysteresis). */
static gboolean
gw_proxy_side_may_read(GwProxySide *side)
{
    GwProxySide *other = gw_proxy_other(side);
    GwProxy *proxy = side->proxy;

    if (!side->initialized || !gw_proxy_side_is_open(side))
        return FALSE;
    /* a migration's source is read to its end, whatever waits */
    if (side == &proxy->qemu && gw_proxy_migration_draining(proxy))
        return TRUE;
    if (side->blocked && gw_proxy_side_output_drained(other))
        side->blocked = FALSE;
    else if (!side->blocked && gw_proxy_side_output_full(other))
        side->blocked = TRUE;
    if (side->blocked)
        return FALSE;
    if (side == &proxy->qemu && g_hash_table_size(proxy->pending) >= GW_PROXY_MAX_PENDING)
        return FALSE;
    return TRUE;
}

/* Follows the peer's packet framing over @n bytes the parser is about to
 * get; FALSE (with side->stream_error) when a header announces more than
 * the proxy takes. */
static gboolean
gw_proxy_side_track_frames(GwProxySide *side, const uint8_t *data, gsize n)
{
    while (n > 0) {
        gsize take;

        if (side->frame_body_left > 0) {
            take = (gsize)MIN((guint64)n, side->frame_body_left);
            side->frame_body_left -= take;
            data += take;
            n -= take;
            continue;
        }
        if (side->frame_header_got == 0) {
            /* 64-bit ids once both hellos said so, as the parser decides */
            side->frame_header_len =
                usbredirparser_have_cap(side->parser, usb_redir_cap_64bits_ids) &&
                        usbredirparser_peer_has_cap(side->parser, usb_redir_cap_64bits_ids)
                    ? 16
                    : 12;
        }
        take = MIN(n, side->frame_header_len - side->frame_header_got);
        memcpy(side->frame_header + side->frame_header_got, data, take);
        side->frame_header_got += (guint)take;
        data += take;
        n -= take;
        if (side->frame_header_got == side->frame_header_len) {
            guint32 length = (guint32)side->frame_header[4] | (guint32)side->frame_header[5] << 8 |
                             (guint32)side->frame_header[6] << 16 |
                             (guint32)side->frame_header[7] << 24;
            side->frame_header_got = 0;
            if (length > GW_PROXY_MAX_PACKET_LEN) {
                side->stream_error =
                    g_strdup_printf("%s announced a packet of %u bytes; the proxy takes at most %u",
                                    side->name, length, (guint)GW_PROXY_MAX_PACKET_LEN);
                return FALSE;
            }
            side->frame_body_left = length;
        }
    }
    return TRUE;
}

/* The thread's read buffer: every proxy on a thread reads into the same
 * one (a dispatch hands what it read to its parser before it returns, and
 * keeps what is left in side->held), so a proxy costs no buffer while idle. */
static guint8 *
gw_proxy_read_buffer(void)
{
    static GPrivate buffer_key = G_PRIVATE_INIT(g_free);
    guint8 *buffer = g_private_get(&buffer_key);

    if (buffer == NULL) {
        buffer = g_malloc(GW_PROXY_READ_CHUNK);
        g_private_set(&buffer_key, buffer);
    }
    return buffer;
}

/* Takes what the socket holds, at most @count bytes straight into @data
 * when the parser asks for a read buffer's worth or more, else into the
 * thread's read buffer. Returns the bytes now available, 0 when the socket
 * is empty, -1 at the end of the stream or on an error. */
static gssize
gw_proxy_side_fill(GwProxySide *side, uint8_t *data, gsize count)
{
    gboolean direct = count >= GW_PROXY_READ_CHUNK;
    guint8 *buffer = direct ? data : gw_proxy_read_buffer();
    gsize want = direct ? count : GW_PROXY_READ_CHUNK;
    ssize_t n;

    /* a short read earlier in this dispatch emptied the socket: poll()
     * says when more comes */
    if (side->in_empty)
        return 0;
    if (side == &side->proxy->qemu)
        gw_proxy_migration_before_read(side->proxy);
    n = recv(side->fd, buffer, want, MSG_DONTWAIT);
    if (side == &side->proxy->qemu) {
        int saved = errno;
        gboolean end = n == 0 || (n < 0 && saved == ECONNRESET);
        if (gw_proxy_migration_after_read(side->proxy, end ? -1 : MAX(n, 0))) {
            /* a migration's source at its end: its destination goes on */
            side->in_empty = TRUE;
            return 0;
        }
        errno = saved;
    }
    if (n > 0) {
        side->bytes_in += (guint64)n;
        side->in_empty = (gsize)n < want;
        if (!direct) {
            side->in = buffer;
            side->in_len = (gsize)n;
        }
        return n;
    }
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)) {
        side->in_empty = errno != EINTR;
        return 0;
    }
    side->eof = TRUE;
    return -1;
}

static int
gw_proxy_side_read(GwProxySide *side, uint8_t *data, int count)
{
    gsize n = 0;

    if (!gw_proxy_side_is_open(side) || side->proxy->ended)
        return -1;
    /* pretend the socket is empty: usbredirparser_do_read() returns and
     * resumes where it stopped once the other side drained */
    if (!gw_proxy_side_may_read(side))
        return 0;
    if (side->transport.read != NULL) {
        /* straight into the parser's buffer: the transport holds the
         * bytes the parser leaves */
        gssize got = side->transport.read(side->transport_data, data, (gsize)count);
        if (got == 0) {
            side->transport_readable = FALSE;
            return 0;
        }
        if (got < 0) {
            side->eof = TRUE;
            return -1;
        }
        side->bytes_in += (guint64)got;
        if (!gw_proxy_side_track_frames(side, data, (gsize)got))
            return -1;
        return (int)got;
    }
    if (side->in_len == 0) {
        gssize got = gw_proxy_side_fill(side, data, (gsize)count);
        if (got <= 0)
            return (int)got;
        n = (gsize)got; /* read straight into @data, unless buffered */
    }
    if (side->in_len > 0) {
        n = MIN((gsize)count, side->in_len);
        memcpy(data, side->in, n);
        side->in += n;
        side->in_len -= n;
        if (side->in_len == 0)
            g_clear_pointer(&side->held, g_free);
    }
    if (!gw_proxy_side_track_frames(side, data, n))
        return -1;
    return (int)n;
}

static int
gw_proxy_side_write(GwProxySide *side, uint8_t *data, int count)
{
    ssize_t n;

    if (!gw_proxy_side_is_open(side))
        return -1;
    if (side->transport.read != NULL) {
        gssize taken = side->transport.write(side->transport_data, data, (gsize)count);
        if (taken < 0) {
            side->eof = TRUE;
            return -1;
        }
        side->bytes_out += (guint64)taken;
        return (int)taken;
    }
    if (side == &side->proxy->qemu) {
        /* a migration's re-sent bytes go first */
        int resent = gw_proxy_migration_flush_resend(side->proxy);
        if (resent < 0) {
            side->eof = TRUE;
            return -1;
        }
        if (resent == 0)
            return 0;
    }
    n = send(side->fd, data, (size_t)count, MSG_DONTWAIT | MSG_NOSIGNAL);
    if (n > 0 && side == &side->proxy->qemu)
        gw_proxy_migration_written(side->proxy, side->bytes_out, data, (gsize)n);
    if (n >= 0) {
        side->bytes_out += (guint64)n;
        return (int)n;
    }
    if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)
        return 0;
    side->eof = TRUE;
    return -1;
}

int
gw_proxy_client_read_cb(void *priv, uint8_t *data, int count)
{
    GwProxy *proxy = priv;
    return gw_proxy_side_read(&proxy->client, data, count);
}

int
gw_proxy_client_write_cb(void *priv, uint8_t *data, int count)
{
    GwProxy *proxy = priv;
    return gw_proxy_side_write(&proxy->client, data, count);
}

int
gw_proxy_qemu_read_cb(void *priv, uint8_t *data, int count)
{
    GwProxy *proxy = priv;
    return gw_proxy_side_read(&proxy->qemu, data, count);
}

int
gw_proxy_qemu_write_cb(void *priv, uint8_t *data, int count)
{
    GwProxy *proxy = priv;
    return gw_proxy_side_write(&proxy->qemu, data, count);
}

static void
gw_proxy_log(GwProxy *proxy, const gchar *side, int level, const char *msg)
{
    /* the client is untrusted: what it provokes is not a warning of ours */
    switch (level) {
    case usbredirparser_error:
    case usbredirparser_warning:
        gw_proxy_log_device(proxy, G_LOG_LEVEL_MESSAGE, NULL, "%s: usbredir (%s): %s", proxy->label,
                            side, msg);
        break;
    case usbredirparser_info:
        gw_proxy_log_device(proxy, G_LOG_LEVEL_INFO, NULL, "%s: usbredir (%s): %s", proxy->label,
                            side, msg);
        break;
    default:
        g_debug("%s: usbredir (%s): %s", proxy->label, side, msg);
        break;
    }
}

void
gw_proxy_client_log_cb(void *priv, int level, const char *msg)
{
    gw_proxy_log(priv, "client", level, msg);
}

void
gw_proxy_qemu_log_cb(void *priv, int level, const char *msg)
{
    gw_proxy_log(priv, "QEMU", level, msg);
}

/* ---- Session end ------------------------------------------------------- */

static void
gw_proxy_side_close(GwProxySide *side)
{
    if (side->transport.read != NULL) {
        if (side->transport_open && side->transport.close != NULL)
            side->transport.close(side->transport_data);
        side->transport_open = FALSE;
        return;
    }
    if (side->fd < 0)
        return;
    g_socket_close(side->socket, NULL);
    side->fd = -1;
}

/* Stops I/O at once (with a best-effort farewell to each peer) and tells
 * the owner from a fresh main-loop iteration. Safe from inside a parser
 * callback: the parsers see closed sockets from then on. */
void
gw_proxy_end(GwProxy *proxy, GwProxyEnd end, const gchar *reason)
{
    gboolean qemu_alive = end != GW_PROXY_END_QEMU_CLOSED && end != GW_PROXY_END_QEMU_PROTOCOL;

    if (proxy->ended)
        return;
    proxy->ended = TRUE;
    proxy->end = end;
    proxy->end_reason = g_strdup(reason);
    gw_proxy_log_device(proxy, G_LOG_LEVEL_MESSAGE, NULL, "%s: session ends (%s): %s", proxy->label,
                        gw_proxy_end_to_string(end), reason);

    if (qemu_alive && proxy->dev == GW_PROXY_DEV_IN_QEMU && proxy->qemu.fd >= 0) {
        usbredirparser_send_device_disconnect(proxy->qemu.parser);
        (void)usbredirparser_do_write(proxy->qemu.parser);
    }
    if (end == GW_PROXY_END_DENIED && gw_proxy_side_is_open(&proxy->client) &&
        usbredirparser_peer_has_cap(proxy->client.parser, usb_redir_cap_filter)) {
        usbredirparser_send_filter_reject(proxy->client.parser);
        (void)usbredirparser_do_write(proxy->client.parser);
        if (proxy->client.transport.flush != NULL && proxy->client.transport_open)
            proxy->client.transport.flush(proxy->client.transport_data);
    }
    /* a pending migration's destination is closed (its QEMU connects
     * again) */
    gw_proxy_migration_abandon(proxy);
    /* safe from inside either watch's callback */
    g_clear_pointer(&proxy->client.watch, gw_fd_watch_free);
    g_clear_pointer(&proxy->qemu.watch, gw_fd_watch_free);
    gw_proxy_side_close(&proxy->client);
    gw_proxy_side_close(&proxy->qemu);
    gw_proxy_notify_later(proxy);
}

/* ---- Parsers ------------------------------------------------------------ */

static void
gw_proxy_init_client(GwProxy *proxy)
{
    uint32_t caps[USB_REDIR_CAPS_SIZE] = {0};

    usbredirparser_caps_set_cap(caps, usb_redir_cap_connect_device_version);
    usbredirparser_caps_set_cap(caps, usb_redir_cap_filter);
    usbredirparser_caps_set_cap(caps, usb_redir_cap_device_disconnect_ack);
    usbredirparser_caps_set_cap(caps, usb_redir_cap_ep_info_max_packet_size);
    usbredirparser_caps_set_cap(caps, usb_redir_cap_64bits_ids);
    usbredirparser_caps_set_cap(caps, usb_redir_cap_32bits_bulk_length);
    usbredirparser_caps_set_cap(caps, usb_redir_cap_bulk_streams);
    usbredirparser_caps_set_cap(caps, usb_redir_cap_bulk_receiving);
    usbredirparser_init(proxy->client.parser, GW_PROXY_VERSION, caps, USB_REDIR_CAPS_SIZE, 0);
    proxy->client.initialized = TRUE;
}

/* QEMU is offered what the client can back: called once the client's
 * hello came. */
void
gw_proxy_init_qemu(GwProxy *proxy)
{
    static const int if_client_has[] = {
        usb_redir_cap_connect_device_version, usb_redir_cap_ep_info_max_packet_size,
        usb_redir_cap_32bits_bulk_length,     usb_redir_cap_bulk_streams,
        usb_redir_cap_bulk_receiving,
    };
    uint32_t caps[USB_REDIR_CAPS_SIZE] = {0};

    if (proxy->qemu.initialized)
        return;
    usbredirparser_caps_set_cap(caps, usb_redir_cap_filter);
    usbredirparser_caps_set_cap(caps, usb_redir_cap_device_disconnect_ack);
    usbredirparser_caps_set_cap(caps, usb_redir_cap_64bits_ids);
    for (gsize i = 0; i < G_N_ELEMENTS(if_client_has); i++) {
        if (usbredirparser_peer_has_cap(proxy->client.parser, if_client_has[i]))
            usbredirparser_caps_set_cap(caps, if_client_has[i]);
    }
    usbredirparser_init(proxy->qemu.parser, GW_PROXY_VERSION, caps, USB_REDIR_CAPS_SIZE,
                        usbredirparser_fl_usb_host);
    proxy->qemu.initialized = TRUE;
}

/* ---- The fd watches ---------------------------------------------------- */

/* A side's socket is always watched for a hang-up, also while it is
 * neither read (backpressure) nor written. */
static GIOCondition
gw_proxy_side_wanted(GwProxySide *side)
{
    GIOCondition events = G_IO_HUP | G_IO_ERR;

    if (side->fd < 0)
        return 0;
    if (gw_proxy_side_may_read(side))
        events |= G_IO_IN;
    if (side->initialized && usbredirparser_has_data_to_write(side->parser) > 0)
        events |= G_IO_OUT;
    if (side == &side->proxy->qemu && side->proxy->migration.resend != NULL)
        events |= G_IO_OUT;
    return events;
}

/* Before each poll while the side holds bytes held back by backpressure:
 * no poll() reports them, so the side is dispatched once it may read on
 * (the other side's queue drained). */
static gboolean
gw_proxy_side_prepare(gpointer data)
{
    GwProxySide *side = data;
    GIOCondition wanted = gw_proxy_side_wanted(side);

    gw_fd_watch_set_condition(side->watch, wanted);
    return side->in_len > 0 && (wanted & G_IO_IN);
}

/* Sets what @side is watched for from the proxy's state. The state
 * changes only in the sides' callbacks (and at the start), each of which
 * updates both sides when it is done, so the conditions are not
 * recomputed on every main-loop iteration. */
static void
gw_proxy_side_update(GwProxySide *side)
{
    if (side->watch == NULL)
        return;
    gw_fd_watch_set_condition(side->watch, gw_proxy_side_wanted(side));
    gw_fd_watch_set_prepare(side->watch, side->in_len > 0 ? gw_proxy_side_prepare : NULL);
}

static GwProxyEnd
gw_proxy_side_closed_end(GwProxySide *side)
{
    return side == &side->proxy->client ? GW_PROXY_END_CLIENT_CLOSED : GW_PROXY_END_QEMU_CLOSED;
}

void
gw_proxy_side_flush(GwProxySide *side)
{
    GwProxy *proxy = side->proxy;

    if (proxy->ended || !side->initialized || !usbredirparser_has_data_to_write(side->parser))
        return;
    if (usbredirparser_do_write(side->parser) < 0) {
        gw_proxy_fail(proxy, gw_proxy_side_closed_end(side), "write to %s failed", side->name);
        return;
    }
    /* a transport sends what this batch queued at once */
    if (side->transport.flush != NULL && side->transport_open)
        side->transport.flush(side->transport_data);
}

/* After a dispatch: what the parser left in the thread's read buffer
 * (it stopped: backpressure) is kept with the side until it reads on. */
static void
gw_proxy_side_hold(GwProxySide *side)
{
    if (side->in_len == 0 || side->held != NULL)
        return;
    side->held = g_memdup2(side->in, side->in_len);
    side->in = side->held;
}

static void
gw_proxy_side_dispatch_read(GwProxySide *side, GIOCondition revents)
{
    GwProxy *proxy = side->proxy;
    gboolean is_client = side == &proxy->client;

    if (proxy->ended)
        return;
    if ((revents & G_IO_IN) || (side->in_len > 0 && gw_proxy_side_may_read(side))) {
        int rc;

        side->in_empty = FALSE;
        rc = usbredirparser_do_read(side->parser);
        if (proxy->ended)
            return;
        gw_proxy_side_hold(side);
        if (side->stream_error != NULL) {
            gw_proxy_fail(proxy,
                          is_client ? GW_PROXY_END_CLIENT_PROTOCOL : GW_PROXY_END_QEMU_PROTOCOL,
                          "%s", side->stream_error);
            return;
        }
        if (rc == usbredirparser_read_parse_error) {
            gw_proxy_fail(proxy,
                          is_client ? GW_PROXY_END_CLIENT_PROTOCOL : GW_PROXY_END_QEMU_PROTOCOL,
                          "malformed usbredir data from %s", side->name);
            return;
        }
        /* a migration's source QEMU ended: its destination takes over */
        if (!is_client && proxy->migration.handover != NULL &&
            (gw_peer_handover_source_ended(proxy->migration.handover) ||
             (revents & (G_IO_HUP | G_IO_ERR)))) {
            gw_proxy_migration_source_gone(proxy);
            return;
        }
        if (rc < 0 || side->eof) {
            gw_proxy_fail(proxy, gw_proxy_side_closed_end(side), "%s closed the connection",
                          side->name);
            return;
        }
    } else if (revents & (G_IO_HUP | G_IO_ERR)) {
        /* not read now (backpressure) but gone; a migration's source QEMU
         * hands over to its destination */
        if (!is_client && gw_proxy_migration_source_gone(proxy))
            return;
        gw_proxy_fail(proxy, gw_proxy_side_closed_end(side), "%s hung up", side->name);
    }
}

static void
gw_proxy_side_ready(int fd, GIOCondition revents, gpointer data)
{
    GwProxySide *side = data;
    GwProxy *proxy = side->proxy;

    if ((revents & G_IO_OUT) && side == &proxy->qemu &&
        gw_proxy_migration_flush_resend(proxy) < 0) {
        gw_proxy_fail(proxy, GW_PROXY_END_QEMU_CLOSED, "write to QEMU failed");
        return;
    }
    if (revents & G_IO_OUT)
        gw_proxy_side_flush(side);
    if ((revents & (G_IO_IN | G_IO_HUP | G_IO_ERR)) || side->in_len > 0)
        gw_proxy_side_dispatch_read(side, revents);
    /* relay at once: what this side's read queued for the other */
    gw_proxy_side_flush(&proxy->qemu);
    gw_proxy_side_flush(&proxy->client);
    /* a client transport holding bytes it was not read for (backpressure)
     * has no poll() to report them: read on once the QEMU side drained */
    if (side != &proxy->client && proxy->client.transport_readable && !proxy->ended &&
        gw_proxy_side_may_read(&proxy->client)) {
        gw_proxy_side_dispatch_read(&proxy->client, G_IO_IN);
        gw_proxy_side_flush(&proxy->qemu);
        gw_proxy_side_flush(&proxy->client);
    }
    /* both: a side's condition depends on the other's queue (nothing when
     * the session ended: the watches are gone) */
    gw_proxy_side_update(&proxy->qemu);
    gw_proxy_side_update(&proxy->client);
}

/* ---- Public API -------------------------------------------------------- */

static void
gw_proxy_side_setup(GwProxy *proxy, GwProxySide *side, const gchar *name, GSocket *socket)
{
    side->proxy = proxy;
    side->name = name;
    side->socket = g_object_ref(socket);
    side->fd = g_socket_get_fd(socket);
    g_socket_set_blocking(socket, FALSE);
}

static void
gw_proxy_side_watch(GwProxy *proxy, GwProxySide *side, const gchar *name)
{
    side->watch = gw_fd_watch_new(proxy->context, name, side->fd, gw_proxy_side_wanted(side),
                                  gw_proxy_side_ready, side);
}

/* A side's socket changed (a migration's destination took over). */
void
gw_proxy_side_rewatch(GwProxySide *side)
{
    g_clear_pointer(&side->watch, gw_fd_watch_free);
    gw_proxy_side_watch(side->proxy, side, "usbgw-proxy qemu");
    gw_proxy_side_update(side);
}

/* gw_proxy_new() and gw_proxy_new_with_transport(): @client or @transport. */
static GwProxy *
gw_proxy_new_full(GSocket *client, const GwTransport *transport, gpointer transport_data,
                  GSocket *qemu, const gchar *label, const GwProxyCallbacks *cb, gpointer user_data,
                  GError **error)
{
    g_autoptr(GwProxy) proxy = NULL;

    g_return_val_if_fail(G_IS_SOCKET(qemu), NULL);
    g_return_val_if_fail(cb != NULL && cb->check != NULL && cb->closed != NULL, NULL);

    proxy = g_new0(GwProxy, 1);
    proxy->label = g_strdup(label);
    proxy->cb = *cb;
    proxy->user_data = user_data;
    proxy->context = g_main_context_ref_thread_default();
    proxy->pending = g_hash_table_new_full(g_int64_hash, g_int64_equal, NULL, g_free);
    proxy->pending_by_qemu = g_hash_table_new(g_int64_hash, g_int64_equal);
    proxy->next_client_id = 1;
    gw_proxy_migration_init(proxy);
    if (client != NULL) {
        gw_proxy_side_setup(proxy, &proxy->client, "the client", client);
    } else {
        proxy->client.proxy = proxy;
        proxy->client.name = "the client";
        proxy->client.fd = -1;
        proxy->client.transport = *transport;
        proxy->client.transport_data = transport_data;
        proxy->client.transport_open = TRUE;
    }
    gw_proxy_side_setup(proxy, &proxy->qemu, "QEMU", qemu);

    proxy->client.parser = gw_proxy_client_parser_new(proxy);
    proxy->qemu.parser = gw_proxy_qemu_parser_new(proxy);
    if (proxy->client.parser == NULL || proxy->qemu.parser == NULL) {
        g_set_error(error, G_IO_ERROR, G_IO_ERROR_FAILED, "%s: cannot create usbredir parsers",
                    label);
        return NULL;
    }
    gw_proxy_init_client(proxy);

    if (client != NULL)
        gw_proxy_side_watch(proxy, &proxy->client, "usbgw-proxy client");
    else
        gw_proxy_side_flush(&proxy->client); /* our hello */
    gw_proxy_side_watch(proxy, &proxy->qemu, "usbgw-proxy qemu");
    return g_steal_pointer(&proxy);
}

GwProxy *
gw_proxy_new(GSocket *client, GSocket *qemu, const gchar *label, const GwProxyCallbacks *cb,
             gpointer user_data, GError **error)
{
    g_return_val_if_fail(G_IS_SOCKET(client), NULL);
    return gw_proxy_new_full(client, NULL, NULL, qemu, label, cb, user_data, error);
}

GwProxy *
gw_proxy_new_with_transport(const GwTransport *client, gpointer client_data, GSocket *qemu,
                            const gchar *label, const GwProxyCallbacks *cb, gpointer user_data,
                            GError **error)
{
    g_return_val_if_fail(client != NULL && client->read != NULL && client->write != NULL, NULL);
    return gw_proxy_new_full(NULL, client, client_data, qemu, label, cb, user_data, error);
}

void
gw_proxy_transport_ready(GwProxy *proxy, GIOCondition condition)
{
    GwProxySide *side = &proxy->client;

    g_return_if_fail(side->transport.read != NULL);
    if (proxy->ended)
        return;
    if (condition & (G_IO_IN | G_IO_HUP | G_IO_ERR)) {
        side->transport_readable = TRUE;
        condition |= G_IO_IN;
    }
    gw_proxy_side_ready(-1, condition, side);
    /* gone while not read (backpressure): as a socket's hang-up */
    if ((condition & (G_IO_HUP | G_IO_ERR)) && !proxy->ended)
        gw_proxy_fail(proxy, GW_PROXY_END_CLIENT_CLOSED, "%s hung up", side->name);
}

void
gw_proxy_set_journal_fields(GwProxy *proxy, const gchar *device_id, const gchar *vm)
{
    g_free(proxy->device_id);
    g_free(proxy->vm);
    proxy->device_id = g_strdup(device_id);
    proxy->vm = g_strdup(vm);
}

gboolean
gw_proxy_has_device(GwProxy *proxy)
{
    return !proxy->ended && proxy->dev == GW_PROXY_DEV_IN_QEMU;
}

void
gw_proxy_get_stats(GwProxy *proxy, GwProxyStats *stats)
{
    memset(stats, 0, sizeof(*stats));
    stats->client_bytes_in = proxy->client.bytes_in;
    stats->client_bytes_out = proxy->client.bytes_out;
    stats->qemu_bytes_in = proxy->qemu.bytes_in;
    stats->qemu_bytes_out = proxy->qemu.bytes_out;
    stats->client_packets_in = proxy->client.packets_in;
    stats->client_packets_out = proxy->client.packets_out;
    stats->qemu_packets_in = proxy->qemu.packets_in;
    stats->qemu_packets_out = proxy->qemu.packets_out;
    if (proxy->client.initialized)
        stats->client_buffered = usbredirparser_get_bufferered_output_size(proxy->client.parser);
    if (proxy->qemu.initialized)
        stats->qemu_buffered = usbredirparser_get_bufferered_output_size(proxy->qemu.parser);
    stats->pending = g_hash_table_size(proxy->pending);
}

static void
gw_proxy_side_clear(GwProxySide *side)
{
    g_clear_pointer(&side->watch, gw_fd_watch_free);
    gw_proxy_side_close(side);
    g_clear_pointer(&side->parser, usbredirparser_destroy);
    if (side->socket != NULL)
        g_clear_object(&side->socket);
    g_clear_pointer(&side->stream_error, g_free);
    g_clear_pointer(&side->held, g_free);
    side->in = NULL;
    side->in_len = 0;
}

void
gw_proxy_free(GwProxy *proxy)
{
    if (proxy == NULL)
        return;
    if (proxy->notify_source != NULL) {
        g_source_destroy(proxy->notify_source);
        g_source_unref(proxy->notify_source);
    }
    gw_proxy_migration_abandon(proxy);
    gw_proxy_side_clear(&proxy->client);
    gw_proxy_side_clear(&proxy->qemu);
    gw_proxy_migration_clear(proxy);
    g_clear_pointer(&proxy->pending_by_qemu, g_hash_table_unref);
    g_clear_pointer(&proxy->pending, g_hash_table_unref);
    g_clear_pointer(&proxy->connected_device, policy_device_free);
    g_clear_pointer(&proxy->denied_device, policy_device_free);
    g_clear_pointer(&proxy->context, g_main_context_unref);
    g_free(proxy->end_reason);
    g_free(proxy->label);
    g_free(proxy->device_id);
    g_free(proxy->vm);
    g_free(proxy);
}
