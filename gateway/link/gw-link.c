/* GwLink, the connection: frames read from and written to the socket
 * (TLS in usbgwd), the peer's HELLO (resume or restart), keepalive, the
 * grace after a loss, the link's lifetime. See gw-link.h for the contract,
 * gw-link-private.h for what the link's other files hold, and
 * docs/links.md ("The wire as built") for frames, flow control and resume. */
#include "gw-link.h"

#include <netinet/in.h>
#include <netinet/tcp.h>
#include <string.h>

#include "gw-fd-watch.h"
#include "gw-link-private.h"
#include "gw-link-wire.h"

/* Bytes read from the connection per read call (on the stack). */
#define GW_LINK_READ_SIZE 32768
/* Bytes read from the connection per dispatch, so that one busy link
 * does not starve the rest of the main context. */
#define GW_LINK_READ_BUDGET (256 * 1024)
/* While this many bytes of control frames wait to be written (the peer
 * does not read), the connection is not read: what the peer makes us
 * answer (PONG, CREDIT, CLOSE) stays bounded. */
#define GW_LINK_CONTROL_HIGH (64 * 1024)
/* TCP_NOTSENT_LOWAT on a TCP connection: the kernel keeps this little
 * unsent, so a control frame is not stuck behind a deep socket queue. */
#define GW_LINK_NOTSENT_LOWAT GW_LINK_MAX_DATA
/* Dead connection: this many keepalive periods without a byte in. */
#define GW_LINK_DEAD_PERIODS 3

static void gw_link_conn_lost(GwLink *link, const gchar *reason);

GwLink *
gw_link_ref(GwLink *link)
{
    link->ref++;
    return link;
}

void
gw_link_unref(GwLink *link)
{
    if (--link->ref > 0)
        return;
    g_free(link->peer);
    g_free(link);
}

/* ---- The grace after a lost connection ---------------------------------- */

static gboolean
gw_link_grace_cb(gpointer user_data)
{
    GwLink *link = gw_link_ref(user_data);
    gboolean expired = link->expire_reason != NULL;
    g_autofree gchar *reason =
        expired
            ? g_steal_pointer(&link->expire_reason)
            : g_strdup_printf("the link to %s was down for longer than its grace period (%u ms)",
                              link->peer, link->config.grace_ms);

    g_clear_pointer(&link->grace_source, g_source_unref);
    g_message("%s", reason);
    gw_link_close_streams(link, reason, TRUE);
    if (!link->freed)
        gw_link_remove_peer_devices(link, FALSE);
    if (expired && !link->freed && link->cb.expired != NULL)
        link->cb.expired(link, link->user_data);
    gw_link_unref(link);
    return G_SOURCE_REMOVE;
}

/* The end of the grace, @ms from now. */
static void
gw_link_grace_arm(GwLink *link, guint ms)
{
    link->grace_source = g_timeout_source_new(ms);
    g_source_set_name(link->grace_source, "usbgw-link-grace");
    g_source_set_callback(link->grace_source, gw_link_grace_cb, link, NULL);
    g_source_attach(link->grace_source, link->context);
}

void
gw_link_grace_start(GwLink *link)
{
    if (link->grace_source != NULL)
        return;
    gw_link_grace_arm(link, link->config.grace_ms);
}

static void
gw_link_grace_stop(GwLink *link)
{
    g_clear_pointer(&link->expire_reason, g_free);
    if (link->grace_source == NULL)
        return;
    g_source_destroy(link->grace_source);
    g_clear_pointer(&link->grace_source, g_source_unref);
}

static void gw_link_conn_close(GwLink *link);

void
gw_link_expire(GwLink *link, const gchar *reason)
{
    gw_link_conn_close(link);
    gw_link_grace_stop(link);
    link->expire_reason = g_strdup(reason);
    gw_link_grace_arm(link, 0);
}

/* ---- The connection: writing ------------------------------------------- */

static gboolean
gw_link_out_cb(GObject *stream, gpointer user_data)
{
    GwLink *link = gw_link_ref(user_data);
    gw_link_conn_flush(link);
    gw_link_unref(link);
    return G_SOURCE_CONTINUE;
}

static gboolean gw_link_in_cb(GObject *stream, gpointer user_data);
static void gw_link_conn_read(GwLink *link);

static void
gw_link_destroy_source(GSource **source)
{
    if (*source == NULL)
        return;
    g_source_destroy(*source);
    g_clear_pointer(source, g_source_unref);
}

/* Before a poll while the last read stopped short (budget, control
 * queue) or TLS may hold decrypted bytes the socket no longer shows:
 * dispatch the connection's watch at once. */
static gboolean
gw_link_conn_prepare(gpointer user_data)
{
    GwLink *link = user_data;
    return link->in_pending && link->ctl->len < GW_LINK_CONTROL_HIGH;
}

/* The connection is readable or writable, or (revents 0) its prepare
 * asked, or a direct stream's owner flushed during this dispatch
 * (gw_link_stream_flush()): read what came, write what is queued. */
static void
gw_link_conn_watch_cb(int fd, GIOCondition revents, gpointer user_data)
{
    GwLink *link = gw_link_ref(user_data);

    if ((revents & (G_IO_IN | G_IO_HUP | G_IO_ERR)) != 0 || link->in_pending)
        gw_link_conn_read(link);
    if (!link->freed)
        gw_link_conn_flush(link);
    gw_link_unref(link);
}

/* Watches the connection for what is needed now: output only while a
 * write would block, input unless the peer makes us queue too much. A
 * connection over a socket is one GwFdWatch on that socket (TLS reads and
 * writes go through the GIOStream as before): GLib's pollable sources of
 * a TLS connection are a source with child sources, which GLib takes out
 * of the poll set and puts back around every dispatch, waking the context
 * each time (five eventfd writes per frame read, measured). */
static void
gw_link_conn_update_sources(GwLink *link)
{
    gboolean want_in = link->conn != NULL && link->ctl->len < GW_LINK_CONTROL_HIGH;
    gboolean want_out = link->conn != NULL && link->want_out;

    if (link->conn_watch != NULL) {
        GIOCondition cond = 0;
        if (want_in)
            cond |= G_IO_IN | G_IO_HUP | G_IO_ERR;
        if (want_out)
            cond |= G_IO_OUT;
        gw_fd_watch_set_condition(link->conn_watch, cond);
        gw_fd_watch_set_prepare(link->conn_watch, link->in_pending ? gw_link_conn_prepare : NULL);
        return;
    }
    if (want_in && link->in_source == NULL) {
        link->in_source = g_pollable_input_stream_create_source(link->input, NULL);
        g_source_set_name(link->in_source, "usbgw-link-in");
        g_source_set_callback(link->in_source, G_SOURCE_FUNC(gw_link_in_cb), link, NULL);
        g_source_attach(link->in_source, link->context);
    } else if (!want_in) {
        gw_link_destroy_source(&link->in_source);
    }
    if (want_out && link->out_source == NULL) {
        link->out_source = g_pollable_output_stream_create_source(link->output, NULL);
        g_source_set_name(link->out_source, "usbgw-link-out");
        g_source_set_callback(link->out_source, G_SOURCE_FUNC(gw_link_out_cb), link, NULL);
        g_source_attach(link->out_source, link->context);
    } else if (!want_out) {
        gw_link_destroy_source(&link->out_source);
    }
}

/* Tops up the output buffer: control frames first, then one DATA frame
 * per stream in turn. */
static void
gw_link_fill_out(GwLink *link)
{
    if (link->out == NULL)
        link->out = g_byte_array_new();
    while (link->out->len - link->out_pos < GW_LINK_OUT_LOW) {
        GwLinkStream *s;

        if (link->ctl->len == 0 && link->hello)
            gw_link_fill_directory(link);
        if (link->ctl->len > 0) {
            g_byte_array_append(link->out, link->ctl->data, link->ctl->len);
            g_byte_array_set_size(link->ctl, 0);
            continue;
        }
        s = g_queue_peek_head(&link->ready);
        if (s == NULL)
            break;
        gw_link_stream_put_data(s, link->out);
    }
}

/* Writes what can be written now; the rest when the connection takes it. */
void
gw_link_conn_flush(GwLink *link)
{
    gw_link_destroy_source(&link->flush_source);
    link->want_out = FALSE;
    while (link->conn != NULL) {
        g_autoptr(GError) error = NULL;
        gssize n;

        if (link->out == NULL || link->out_pos == link->out->len)
            gw_link_fill_out(link);
        if (link->out->len == link->out_pos)
            break; /* drained: kept for the next write (one per link) */
        n = g_pollable_output_stream_write_nonblocking(
            link->output, link->out->data + link->out_pos, link->out->len - link->out_pos, NULL,
            &error);
        if (n < 0 && g_error_matches(error, G_IO_ERROR, G_IO_ERROR_WOULD_BLOCK)) {
            link->want_out = TRUE;
            break;
        }
        if (n < 0 && link->quiet) {
            /* inside an API call: the loss is handled (with its callbacks)
             * when the idle write meets the error again */
            gw_link_kick(link);
            break;
        }
        if (n < 0) {
            g_autofree gchar *reason = g_strdup_printf("write: %s", error->message);
            gw_link_conn_lost(link, reason);
            return;
        }
        link->out_pos += (gsize)n;
        link->stats.bytes_out += (guint64)n;
        link->last_tx = g_get_monotonic_time();
        if (link->out_pos == link->out->len) {
            g_byte_array_set_size(link->out, 0);
            link->out_pos = 0;
        }
    }
    gw_link_conn_update_sources(link);
}

static gboolean
gw_link_flush_cb(gpointer user_data)
{
    GwLink *link = gw_link_ref(user_data);
    g_clear_pointer(&link->flush_source, g_source_unref);
    gw_link_conn_flush(link);
    gw_link_unref(link);
    return G_SOURCE_REMOVE;
}

/* Output is waiting: write it from an idle (API calls must not run
 * callbacks, and a failed write does). */
void
gw_link_kick(GwLink *link)
{
    if (link->conn == NULL || link->flush_source != NULL)
        return;
    link->flush_source = g_idle_source_new();
    g_source_set_name(link->flush_source, "usbgw-link-flush");
    g_source_set_callback(link->flush_source, gw_link_flush_cb, link, NULL);
    g_source_attach(link->flush_source, link->context);
}

/* ---- The connection: attach and loss ------------------------------------ */

/* Closes the connection (no callbacks): streams stay, suspended. */
static void
gw_link_conn_close(GwLink *link)
{
    GIOStream *base = NULL;

    if (link->conn == NULL)
        return;
    gw_link_destroy_source(&link->in_source);
    gw_link_destroy_source(&link->out_source);
    g_clear_pointer(&link->conn_watch, gw_fd_watch_free);
    link->conn_fd = -1;
    link->in_pending = FALSE;
    gw_link_destroy_source(&link->flush_source);
    gw_link_destroy_source(&link->credit_source);
    gw_link_destroy_source(&link->keepalive_source);
    /* close the socket under a TLS connection first: a close_notify to a
     * dead or stalled peer would wait */
    if (G_IS_TLS_CONNECTION(link->conn))
        g_object_get(link->conn, "base-io-stream", &base, NULL);
    if (base != NULL) {
        g_io_stream_close(base, NULL, NULL);
        g_object_unref(base);
    }
    g_io_stream_close(link->conn, NULL, NULL);
    g_clear_object(&link->conn);
    link->input = NULL;
    link->output = NULL;
    link->conn_gen++;
    link->hello = FALSE;
    link->syncing = FALSE;
    link->want_out = FALSE;
    link->stats.up = FALSE;
    gw_link_decoder_clear(&link->decoder);
    g_clear_pointer(&link->out, g_byte_array_unref);
    link->out_pos = 0;
    g_byte_array_set_size(link->ctl, 0);
    while (link->ready.head != NULL)
        gw_link_stream_unready(link->ready.head->data);
    /* a resumed connection credits what was delivered with RESUME */
    while (link->credit_due.head != NULL)
        gw_link_stream_credit_done(link->credit_due.head->data);
    gw_link_directory_stop_sync(link);
    g_hash_table_remove_all(link->tomb_mine);
    g_hash_table_remove_all(link->tomb_theirs);
}

static void
gw_link_conn_lost(GwLink *link, const gchar *reason)
{
    if (link->conn == NULL)
        return;
    g_message("link to %s: connection lost: %s", link->peer, reason);
    gw_link_conn_close(link);
    gw_link_grace_start(link);
    if (link->cb.down != NULL)
        link->cb.down(link, reason, link->user_data);
}

void
gw_link_protocol_error(GwLink *link, const gchar *problem)
{
    g_autofree gchar *reason = g_strdup_printf("protocol error: %s", problem);
    gw_link_conn_lost(link, reason);
}

static gboolean
gw_link_keepalive_cb(gpointer user_data)
{
    GwLink *link = gw_link_ref(user_data);
    gint64 now = g_get_monotonic_time();
    gint64 period = (gint64)link->config.keepalive_ms * 1000;

    if (now - link->last_rx >= GW_LINK_DEAD_PERIODS * period) {
        g_autofree gchar *reason = g_strdup_printf("nothing received for %" G_GINT64_FORMAT " ms",
                                                   (now - link->last_rx) / 1000);
        gw_link_conn_lost(link, reason);
    } else if (link->hello && now - link->last_tx >= period / 2 && link->ctl->len == 0 &&
               (link->out == NULL || link->out->len == link->out_pos)) {
        guint8 ping[8];
        for (guint i = 0; i < 8; i++)
            ping[i] = (guint8)((guint64)now >> (56 - 8 * i));
        gw_link_wire_put_ping(link->ctl, GW_LINK_FRAME_PING, ping);
        gw_link_conn_flush(link);
    }
    gw_link_unref(link);
    return G_SOURCE_CONTINUE;
}

/* The socket under @connection (TLS or not), if it is one: its fd, and
 * TCP_NOTSENT_LOWAT and TCP_NODELAY set on a TCP socket. -1 otherwise. */
static int
gw_link_tune_socket(GIOStream *connection)
{
    g_autoptr(GIOStream) base = NULL;
    GSocket *socket;

    if (G_IS_TLS_CONNECTION(connection))
        g_object_get(connection, "base-io-stream", &base, NULL);
    else
        base = g_object_ref(connection);
    if (!G_IS_SOCKET_CONNECTION(base))
        return -1;
    socket = g_socket_connection_get_socket(G_SOCKET_CONNECTION(base));
    if (g_socket_get_family(socket) == G_SOCKET_FAMILY_IPV4 ||
        g_socket_get_family(socket) == G_SOCKET_FAMILY_IPV6) {
        (void)g_socket_set_option(socket, IPPROTO_TCP, TCP_NOTSENT_LOWAT, GW_LINK_NOTSENT_LOWAT,
                                  NULL);
        (void)g_socket_set_option(socket, IPPROTO_TCP, TCP_NODELAY, 1, NULL);
    }
    return g_socket_get_fd(socket);
}

void
gw_link_attach(GwLink *link, GIOStream *connection)
{
    GInputStream *in = g_io_stream_get_input_stream(connection);
    GOutputStream *out = g_io_stream_get_output_stream(connection);

    g_return_if_fail(link != NULL && G_IS_IO_STREAM(connection));
    gw_link_conn_close(link);
    if (!G_IS_POLLABLE_INPUT_STREAM(in) ||
        !g_pollable_input_stream_can_poll(G_POLLABLE_INPUT_STREAM(in)) ||
        !G_IS_POLLABLE_OUTPUT_STREAM(out) ||
        !g_pollable_output_stream_can_poll(G_POLLABLE_OUTPUT_STREAM(out))) {
        g_critical("link to %s: the connection cannot be polled", link->peer);
        return;
    }
    link->conn = g_object_ref(connection);
    link->input = G_POLLABLE_INPUT_STREAM(in);
    link->output = G_POLLABLE_OUTPUT_STREAM(out);
    link->conn_fd = gw_link_tune_socket(connection);
    if (link->conn_fd >= 0) {
        g_autofree gchar *name = g_strdup_printf("usbgw-link-%s", link->peer);
        link->conn_watch =
            gw_fd_watch_new(link->context, name, link->conn_fd, 0, gw_link_conn_watch_cb, link);
        /* the handshake's last read may have taken our peer's first
         * frames into TLS's buffer: read once without waiting for poll */
        link->in_pending = TRUE;
    }
    gw_link_decoder_init(&link->decoder);
    link->last_rx = link->last_tx = g_get_monotonic_time();
    link->stats.connects++;
    gw_link_wire_put_hello(link->ctl, link->instance);

    link->keepalive_source = g_timeout_source_new(MAX(link->config.keepalive_ms / 2, 1));
    g_source_set_name(link->keepalive_source, "usbgw-link-keepalive");
    g_source_set_callback(link->keepalive_source, gw_link_keepalive_cb, link, NULL);
    g_source_attach(link->keepalive_source, link->context);
    gw_link_conn_update_sources(link);
    gw_link_kick(link);
}

/* ---- The connection: frames from the peer -------------------------------- */

/* The peer's HELLO: resume or start over, then our side of the sync. */
static void
gw_link_on_hello(GwLink *link, const GwLinkFrame *frame)
{
    g_autoptr(GError) error = NULL;
    g_autofree gchar *instance = NULL;
    gboolean resumed;
    guint gen = link->conn_gen;

    if (!gw_link_wire_parse_hello(frame, &instance, &error)) {
        gw_link_protocol_error(link, error->message);
        return;
    }
    resumed = link->peer_instance != NULL && strcmp(link->peer_instance, instance) == 0;
    if (link->peer_instance != NULL && !resumed) {
        g_autofree gchar *reason = g_strdup_printf("the gateway %s restarted", link->peer);
        g_message("link to %s: the peer restarted (instance %s, was %s)", link->peer, instance,
                  link->peer_instance);
        gw_link_close_streams(link, reason, FALSE);
        if (!link->freed)
            gw_link_remove_peer_devices(link, FALSE);
        if (link->freed || link->conn_gen != gen)
            return;
    }
    g_free(link->peer_instance);
    link->peer_instance = g_steal_pointer(&instance);
    link->hello = TRUE;
    link->stats.up = TRUE;
    if (resumed)
        link->stats.resumed++;
    gw_link_grace_stop(link);

    gw_link_streams_hello(link);
    gw_link_directory_start_sync(link);

    g_message("link to %s: up%s", link->peer, resumed ? " (resumed)" : "");
    if (link->cb.up != NULL)
        link->cb.up(link, resumed, link->user_data);
}

/* One frame from the peer. */
static void
gw_link_on_frame(GwLink *link, const GwLinkFrame *frame)
{
    g_autoptr(GError) error = NULL;

    if (!link->hello && frame->type != GW_LINK_FRAME_HELLO && frame->type != GW_LINK_FRAME_REFUSE) {
        g_autofree gchar *problem =
            g_strdup_printf("%s before HELLO", gw_link_frame_type_name(frame->type));
        gw_link_protocol_error(link, problem);
        return;
    }
    switch ((GwLinkFrameType)frame->type) {
    case GW_LINK_FRAME_HELLO:
        if (link->hello) {
            gw_link_protocol_error(link, "a second HELLO");
            return;
        }
        gw_link_on_hello(link, frame);
        return;
    case GW_LINK_FRAME_REFUSE: {
        g_autofree gchar *reason = NULL;
        g_autofree gchar *lost = NULL;
        guint gen = link->conn_gen;
        if (!gw_link_wire_parse_reason(frame, &reason, &error)) {
            gw_link_protocol_error(link, error->message);
            return;
        }
        g_message("link to %s: refused by the peer: %s", link->peer, reason);
        if (link->cb.refused != NULL)
            link->cb.refused(link, reason, link->user_data);
        if (link->freed || link->conn_gen != gen)
            return;
        lost = g_strdup_printf("refused by the peer: %s", reason);
        gw_link_conn_lost(link, lost);
        return;
    }
    case GW_LINK_FRAME_DEVICE_ADD:
        gw_link_on_device_add(link, frame);
        return;
    case GW_LINK_FRAME_DEVICE_REMOVE:
        gw_link_on_device_remove(link, frame);
        return;
    case GW_LINK_FRAME_SYNCED:
        gw_link_on_synced(link, frame);
        return;
    case GW_LINK_FRAME_PING:
        gw_link_wire_put_ping(link->ctl, GW_LINK_FRAME_PONG, frame->payload);
        return;
    case GW_LINK_FRAME_PONG: {
        guint64 sent = gw_link_wire_parse_u64(frame);
        gint64 now = g_get_monotonic_time();
        if (sent <= (guint64)now)
            link->stats.rtt_us = now - (gint64)sent;
        return;
    }
    case GW_LINK_FRAME_OPEN:
    case GW_LINK_FRAME_OPENED:
    case GW_LINK_FRAME_CLOSE:
    case GW_LINK_FRAME_DATA:
    case GW_LINK_FRAME_CREDIT:
    case GW_LINK_FRAME_RESUME:
        gw_link_on_stream_frame(link, frame);
        return;
    }
}

static void gw_link_conn_read_frames(GwLink *link);

/* Reads and handles what the peer sent, within the read budget. */
static void
gw_link_conn_read(GwLink *link)
{
    link->reading = TRUE;
    gw_link_conn_read_frames(link);
    if (!link->freed)
        link->reading = FALSE;
    gw_link_notify_streams(link);
}

static void
gw_link_conn_read_frames(GwLink *link)
{
    guint gen = link->conn_gen;
    gsize budget = GW_LINK_READ_BUDGET;
    guint8 buf[GW_LINK_READ_SIZE];

    /* stays set when the budget or the control queue stops the loop */
    link->in_pending = TRUE;
    while (link->conn != NULL && link->conn_gen == gen && budget > 0 &&
           link->ctl->len < GW_LINK_CONTROL_HIGH) {
        g_autoptr(GError) error = NULL;
        gssize n =
            g_pollable_input_stream_read_nonblocking(link->input, buf, sizeof(buf), NULL, &error);
        if (n < 0 && g_error_matches(error, G_IO_ERROR, G_IO_ERROR_WOULD_BLOCK)) {
            link->in_pending = FALSE;
            break;
        }
        if (n < 0) {
            g_autofree gchar *reason = g_strdup_printf("read: %s", error->message);
            gw_link_conn_lost(link, reason);
            return;
        }
        if (n == 0) {
            gw_link_conn_lost(link, "the peer closed the connection");
            return;
        }
        link->stats.bytes_in += (guint64)n;
        link->last_rx = g_get_monotonic_time();
        budget -= MIN(budget, (gsize)n);

        gsize off = 0;
        while (off < (gsize)n) {
            g_autoptr(GError) decode_error = NULL;
            GwLinkFrame frame;
            gsize used = 0;
            GwLinkDecodeResult r = gw_link_decoder_feed(&link->decoder, buf + off, (gsize)n - off,
                                                        &used, &frame, &decode_error);
            off += used;
            if (r == GW_LINK_DECODE_ERROR) {
                gw_link_protocol_error(link, decode_error->message);
                return;
            }
            if (r == GW_LINK_DECODE_MORE)
                break;
            gw_link_on_frame(link, &frame);
            if (link->freed || link->conn_gen != gen)
                return;
        }
    }
}

static gboolean
gw_link_in_cb(GObject *stream, gpointer user_data)
{
    GwLink *link = gw_link_ref(user_data);

    gw_link_conn_read(link);
    if (!link->freed)
        gw_link_conn_flush(link);
    gw_link_unref(link);
    return G_SOURCE_CONTINUE;
}

/* ---- Public API ---------------------------------------------------------- */

GwLink *
gw_link_new(const gchar *peer, const GwLinkConfig *config, const GwLinkCallbacks *cb,
            gpointer user_data)
{
    GwLink *link = g_new0(GwLink, 1);

    g_return_val_if_fail(cb != NULL && (cb->open != NULL || cb->open_direct != NULL), NULL);
    link->ref = 1;
    link->peer = g_strdup(peer);
    if (config != NULL)
        link->config = *config;
    if (link->config.grace_ms == 0)
        link->config.grace_ms = GW_LINK_DEFAULT_GRACE_MS;
    if (link->config.keepalive_ms == 0)
        link->config.keepalive_ms = GW_LINK_DEFAULT_KEEPALIVE_MS;
    link->cb = *cb;
    link->user_data = user_data;
    link->context = g_main_context_ref_thread_default();
    g_snprintf(link->instance, sizeof(link->instance), "%08x%08x", g_random_int(), g_random_int());
    link->ctl = g_byte_array_new();
    link->mine = g_hash_table_new(NULL, NULL);
    link->theirs = g_hash_table_new(NULL, NULL);
    link->tomb_mine = g_hash_table_new(NULL, NULL);
    link->tomb_theirs = g_hash_table_new(NULL, NULL);
    link->exports = g_hash_table_new_full(g_str_hash, g_str_equal, NULL, gw_link_export_free);
    link->peer_devices =
        g_hash_table_new_full(g_str_hash, g_str_equal, g_free, gw_link_peer_device_free);
    link->next_id = 1;
    link->conn_fd = -1;
    link->stats.rtt_us = -1;
    return link;
}

void
gw_link_free(GwLink *link)
{
    GwLinkStream *s;

    if (link == NULL)
        return;
    link->freed = TRUE;
    gw_link_conn_close(link);
    gw_link_destroy_source(&link->grace_source);
    gw_link_destroy_source(&link->credit_source);
    gw_link_destroy_source(&link->doom_source);
    while ((s = g_queue_peek_head(&link->streams)) != NULL) {
        gw_link_stream_detach(s);
        gw_link_stream_free(s);
    }
    g_queue_clear(&link->doomed);
    g_clear_pointer(&link->mine, g_hash_table_unref);
    g_clear_pointer(&link->theirs, g_hash_table_unref);
    g_clear_pointer(&link->tomb_mine, g_hash_table_unref);
    g_clear_pointer(&link->tomb_theirs, g_hash_table_unref);
    g_clear_pointer(&link->exports, g_hash_table_unref);
    g_clear_pointer(&link->peer_devices, g_hash_table_unref);
    g_clear_pointer(&link->ctl, g_byte_array_unref);
    g_clear_pointer(&link->peer_instance, g_free);
    g_clear_pointer(&link->expire_reason, g_free);
    g_clear_pointer(&link->context, g_main_context_unref);
    gw_link_unref(link);
}

const gchar *
gw_link_get_peer(GwLink *link)
{
    return link->peer;
}

gboolean
gw_link_is_up(GwLink *link)
{
    return link->stats.up;
}

void
gw_link_get_stats(GwLink *link, GwLinkStats *stats)
{
    *stats = link->stats;
}
