/* The validating usbredir proxy: see gw-proxy.h for what is relayed, what
 * is checked and the buffering and threading contract. */
#include "gw-proxy.h"

#include <errno.h>
#include <stdarg.h>
#include <string.h>
#include <sys/socket.h>
#include <usbredirfilter.h>
#include <usbredirparser.h>

#define GW_PROXY_VERSION "usbgw-proxy"
/* usbredir's endpoint index: OUT endpoints 0-15, IN endpoints 16-31. */
#define GW_PROXY_EP_INDEX(ep) ((((ep)&0x80) >> 3) | ((ep)&0x0f))
#define GW_PROXY_EP_COUNT     32
#define GW_PROXY_EP0_OUT      0
#define GW_PROXY_EP0_IN       16
/* usbredir's interface_info holds at most this many interfaces. */
#define GW_PROXY_MAX_INTERFACES 32
/* USB 3 allows 2^16 streams per endpoint. */
#define GW_PROXY_MAX_STREAMS 65536

typedef enum {
    GW_PROXY_DEV_NONE,       /* the client offers no device */
    GW_PROXY_DEV_INTERFACES, /* interface_info held */
    GW_PROXY_DEV_ENDPOINTS,  /* interface_info and ep_info held */
    GW_PROXY_DEV_ALLOWED,    /* device_connect came and was allowed; waiting for QEMU */
    GW_PROXY_DEV_IN_QEMU,    /* relayed to QEMU */
} GwProxyDevState;

typedef struct {
    GwProxy *proxy;                /* back pointer */
    const gchar *name;             /* "client" or "QEMU" */
    GSocket *socket;               /* owned ref */
    int fd;                        /* borrowed from socket; -1 once closed */
    struct usbredirparser *parser; /* owned */
    gboolean initialized;          /* usbredirparser_init() done (our hello queued) */
    gboolean hello;                /* the peer's hello came */
    gboolean blocked;              /* not read: the other side's output is over the limit */
    gboolean eof;                  /* the peer closed or a socket error */
    /* The peer's packet framing, followed byte by byte as the parser reads
     * (it reads exactly one header, type header and data at a time): a
     * length over GW_PROXY_MAX_PACKET_LEN ends the session before the
     * parser allocates a buffer for it. */
    guint8 frame_header[16];
    guint frame_header_len;  /* 12 or 16, fixed at the header's first byte */
    guint frame_header_got;  /* header bytes seen */
    guint64 frame_body_left; /* type header + data bytes still to come */
    gchar *stream_error;     /* owned, nullable: why the framing was refused */
    gpointer tag;            /* the fd in the GSource */
    GIOCondition events;     /* what the fd is polled for now */
    guint64 bytes_in;
    guint64 bytes_out;
    guint64 packets_in;
    guint64 packets_out;
} GwProxySide;

/* A request from QEMU awaiting the client's answer. */
typedef struct {
    guint64 client_id; /* key of GwProxy.pending */
    guint64 qemu_id;   /* key of GwProxy.pending_by_qemu */
    guint32 answer;    /* the usb_redir_* packet type that answers it */
    gint endpoint;     /* -1: none */
    guint32 length;    /* data packets: the length asked for */
    guint32 stream_id; /* bulk packets */
    gboolean stale;    /* the device left: drop the answer */
} GwProxyPending;

typedef struct {
    GSource source;
    GwProxy *proxy;
} GwProxySource;

struct _GwProxy {
    gchar *label; /* owned */
    GwProxyCallbacks cb;
    gpointer user_data;
    GMainContext *context;  /* owned ref */
    GSource *io_source;     /* owned */
    GSource *notify_source; /* owned, nullable: a pending idle notification */
    GwProxySide client;
    GwProxySide qemu;

    GwProxyDevState dev;
    struct usb_redir_interface_info_header interfaces; /* validated copy */
    struct usb_redir_ep_info_header endpoints;         /* validated copy */
    struct usb_redir_device_connect_header connect;    /* validated copy */
    guint32 bulk_receiving_bytes[GW_PROXY_EP_COUNT];   /* per IN endpoint, 0: never started */
    gboolean qemu_awaiting_ack; /* device_disconnect sent to QEMU, no ack yet */

    GHashTable *pending;         /* guint64 client id -> GwProxyPending, owned */
    GHashTable *pending_by_qemu; /* guint64 QEMU id -> GwProxyPending, borrowed */
    guint64 next_client_id;

    PolicyDevice *connected_device; /* owned, nullable: connected() to report */
    PolicyDevice *denied_device;    /* owned, nullable */
    gboolean ended;
    gboolean end_notified;
    GwProxyEnd end;
    gchar *end_reason; /* owned, nullable */
};

static void gw_proxy_end(GwProxy *proxy, GwProxyEnd end, const gchar *reason);

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

static void G_GNUC_PRINTF(3, 4)
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

#define gw_proxy_client_violation(proxy, ...)                                                      \
    gw_proxy_fail(proxy, GW_PROXY_END_CLIENT_PROTOCOL, __VA_ARGS__)

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

static void
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

    if (!side->initialized || side->fd < 0)
        return FALSE;
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

static int
gw_proxy_side_read(GwProxySide *side, uint8_t *data, int count)
{
    ssize_t n;

    if (side->fd < 0 || side->proxy->ended)
        return -1;
    /* pretend the socket is empty: usbredirparser_do_read() returns and
     * resumes where it stopped once the other side drained */
    if (!gw_proxy_side_may_read(side))
        return 0;
    n = recv(side->fd, data, (size_t)count, MSG_DONTWAIT);
    if (n > 0) {
        side->bytes_in += (guint64)n;
        if (!gw_proxy_side_track_frames(side, data, (gsize)n))
            return -1;
        return (int)n;
    }
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR))
        return 0;
    side->eof = TRUE;
    return -1;
}

static int
gw_proxy_side_write(GwProxySide *side, uint8_t *data, int count)
{
    ssize_t n;

    if (side->fd < 0)
        return -1;
    n = send(side->fd, data, (size_t)count, MSG_DONTWAIT | MSG_NOSIGNAL);
    if (n >= 0) {
        side->bytes_out += (guint64)n;
        return (int)n;
    }
    if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)
        return 0;
    side->eof = TRUE;
    return -1;
}

static int
gw_proxy_client_read_cb(void *priv, uint8_t *data, int count)
{
    GwProxy *proxy = priv;
    return gw_proxy_side_read(&proxy->client, data, count);
}

static int
gw_proxy_client_write_cb(void *priv, uint8_t *data, int count)
{
    GwProxy *proxy = priv;
    return gw_proxy_side_write(&proxy->client, data, count);
}

static int
gw_proxy_qemu_read_cb(void *priv, uint8_t *data, int count)
{
    GwProxy *proxy = priv;
    return gw_proxy_side_read(&proxy->qemu, data, count);
}

static int
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
        g_message("%s: usbredir (%s): %s", proxy->label, side, msg);
        break;
    case usbredirparser_info:
        g_info("%s: usbredir (%s): %s", proxy->label, side, msg);
        break;
    default:
        g_debug("%s: usbredir (%s): %s", proxy->label, side, msg);
        break;
    }
}

static void
gw_proxy_client_log_cb(void *priv, int level, const char *msg)
{
    gw_proxy_log(priv, "client", level, msg);
}

static void
gw_proxy_qemu_log_cb(void *priv, int level, const char *msg)
{
    gw_proxy_log(priv, "QEMU", level, msg);
}

/* ---- Session end ------------------------------------------------------- */

static void
gw_proxy_side_close(GwProxySide *side)
{
    if (side->fd < 0)
        return;
    g_socket_close(side->socket, NULL);
    side->fd = -1;
}

/* Stops I/O at once (with a best-effort farewell to each peer) and tells
 * the owner from a fresh main-loop iteration. Safe from inside a parser
 * callback: the parsers see closed sockets from then on. */
static void
gw_proxy_end(GwProxy *proxy, GwProxyEnd end, const gchar *reason)
{
    gboolean qemu_alive = end != GW_PROXY_END_QEMU_CLOSED && end != GW_PROXY_END_QEMU_PROTOCOL;

    if (proxy->ended)
        return;
    proxy->ended = TRUE;
    proxy->end = end;
    proxy->end_reason = g_strdup(reason);
    g_message("%s: session ends (%s): %s", proxy->label, gw_proxy_end_to_string(end), reason);

    if (qemu_alive && proxy->dev == GW_PROXY_DEV_IN_QEMU && proxy->qemu.fd >= 0) {
        usbredirparser_send_device_disconnect(proxy->qemu.parser);
        (void)usbredirparser_do_write(proxy->qemu.parser);
    }
    if (end == GW_PROXY_END_DENIED && proxy->client.fd >= 0 &&
        usbredirparser_peer_has_cap(proxy->client.parser, usb_redir_cap_filter)) {
        usbredirparser_send_filter_reject(proxy->client.parser);
        (void)usbredirparser_do_write(proxy->client.parser);
    }
    gw_proxy_side_close(&proxy->client);
    gw_proxy_side_close(&proxy->qemu);
    g_source_destroy(proxy->io_source);
    gw_proxy_notify_later(proxy);
}

/* ---- Pending requests -------------------------------------------------- */

static void
gw_proxy_pending_remove(GwProxy *proxy, GwProxyPending *pending)
{
    if (g_hash_table_lookup(proxy->pending_by_qemu, &pending->qemu_id) == pending)
        g_hash_table_remove(proxy->pending_by_qemu, &pending->qemu_id);
    g_hash_table_remove(proxy->pending, &pending->client_id); /* frees it */
}

/* The device left: QEMU forgets its requests, answers still on their way
 * from the client are dropped when they come. */
static void
gw_proxy_pending_make_stale(GwProxy *proxy)
{
    GHashTableIter iter;
    gpointer value;

    g_hash_table_remove_all(proxy->pending_by_qemu);
    g_hash_table_iter_init(&iter, proxy->pending);
    while (g_hash_table_iter_next(&iter, NULL, &value))
        ((GwProxyPending *)value)->stale = TRUE;
}

/* Records a request from QEMU; returns FALSE when QEMU does not have the
 * device (the request is dropped) or the session ended. */
static gboolean
gw_proxy_qemu_request(GwProxy *proxy, uint64_t qemu_id, guint32 answer, gint endpoint,
                      guint32 length, guint32 stream_id, uint64_t *client_id)
{
    GwProxyPending *pending;
    guint64 id;

    if (proxy->ended)
        return FALSE;
    if (proxy->dev != GW_PROXY_DEV_IN_QEMU || proxy->qemu_awaiting_ack) {
        g_debug("%s: request from QEMU without a device, dropped", proxy->label);
        return FALSE;
    }
    /* the read side stops at GW_PROXY_MAX_PENDING; one packet in parsing may
     * still complete */
    if (g_hash_table_size(proxy->pending) > GW_PROXY_MAX_PENDING) {
        gw_proxy_fail(proxy, GW_PROXY_END_QEMU_PROTOCOL, "more than %d requests outstanding",
                      GW_PROXY_MAX_PENDING);
        return FALSE;
    }
    do {
        id = proxy->next_client_id++;
        if (!usbredirparser_peer_has_cap(proxy->client.parser, usb_redir_cap_64bits_ids))
            id &= G_MAXUINT32;
    } while (g_hash_table_contains(proxy->pending, &id));

    pending = g_new0(GwProxyPending, 1);
    pending->client_id = id;
    pending->qemu_id = qemu_id;
    pending->answer = answer;
    pending->endpoint = endpoint;
    pending->length = length;
    pending->stream_id = stream_id;
    g_hash_table_insert(proxy->pending, &pending->client_id, pending);
    g_hash_table_replace(proxy->pending_by_qemu, &pending->qemu_id, pending);
    *client_id = id;
    return TRUE;
}

/* The request a client answer refers to. Returns TRUE with *out filled (and
 * the request forgotten) when the answer is to be relayed; FALSE when it is
 * dropped (a request of a device that left) or is a protocol violation
 * (the session ended). */
static gboolean
gw_proxy_take_answer(GwProxy *proxy, uint64_t id, guint32 answer, gint endpoint, const gchar *what,
                     GwProxyPending *out)
{
    GwProxyPending *pending = g_hash_table_lookup(proxy->pending, &id);

    if (pending == NULL || pending->answer != answer) {
        gw_proxy_client_violation(proxy, "%s with id %" G_GUINT64_FORMAT " answers no request",
                                  what, id);
        return FALSE;
    }
    if (pending->endpoint != endpoint) {
        gw_proxy_client_violation(proxy,
                                  "%s with id %" G_GUINT64_FORMAT
                                  " is for endpoint %02x, the request was for %02x",
                                  what, id, (guint)endpoint, (guint)pending->endpoint);
        return FALSE;
    }
    *out = *pending;
    gw_proxy_pending_remove(proxy, pending);
    return !out->stale;
}

/* Stream statuses may answer a start/stop request or come on their own
 * (a stream that failed): TRUE and *qemu_id when @id is a request's. */
static gboolean
gw_proxy_try_take_stream_answer(GwProxy *proxy, uint64_t id, guint32 answer, gint endpoint,
                                uint64_t *qemu_id, gboolean *stale)
{
    GwProxyPending *pending = g_hash_table_lookup(proxy->pending, &id);

    if (pending == NULL || pending->answer != answer || pending->endpoint != endpoint)
        return FALSE;
    *qemu_id = pending->qemu_id;
    *stale = pending->stale;
    gw_proxy_pending_remove(proxy, pending);
    return TRUE;
}

/* ---- Client side: validation ------------------------------------------- */

/* Every client packet: counts it; FALSE when it must be ignored (the
 * session ended, or it came before hello, which ends the session). */
static gboolean
gw_proxy_client_packet(GwProxy *proxy, const gchar *what)
{
    if (proxy->ended)
        return FALSE;
    proxy->client.packets_in++;
    if (!proxy->client.hello) {
        gw_proxy_client_violation(proxy, "%s before hello", what);
        return FALSE;
    }
    return TRUE;
}

/* Packets that only make sense while QEMU has the device. */
static gboolean
gw_proxy_client_device_packet(GwProxy *proxy, const gchar *what)
{
    if (!gw_proxy_client_packet(proxy, what))
        return FALSE;
    if (proxy->dev != GW_PROXY_DEV_IN_QEMU) {
        gw_proxy_client_violation(proxy, "%s while no device is connected", what);
        return FALSE;
    }
    return TRUE;
}

static gboolean
gw_proxy_check_interfaces(GwProxy *proxy, const struct usb_redir_interface_info_header *h)
{
    guint32 seen = 0;

    if (h->interface_count > GW_PROXY_MAX_INTERFACES) {
        gw_proxy_client_violation(proxy, "interface_info with %u interfaces (at most %d)",
                                  h->interface_count, GW_PROXY_MAX_INTERFACES);
        return FALSE;
    }
    for (guint32 i = 0; i < h->interface_count; i++) {
        /* interface numbers index a 32-bit set: 32 interfaces at most */
        guint8 number = h->interface[i];
        if (number >= GW_PROXY_MAX_INTERFACES || (seen & (1u << number))) {
            gw_proxy_client_violation(proxy, "interface_info lists interface %u %s", number,
                                      number >= GW_PROXY_MAX_INTERFACES ? "(out of range)"
                                                                        : "twice");
            return FALSE;
        }
        seen |= 1u << number;
    }
    return TRUE;
}

static gboolean
gw_proxy_has_interface(const struct usb_redir_interface_info_header *interfaces, guint8 number)
{
    for (guint32 i = 0; i < interfaces->interface_count; i++) {
        if (interfaces->interface[i] == number)
            return TRUE;
    }
    return FALSE;
}

static gboolean
gw_proxy_check_endpoints(GwProxy *proxy, const struct usb_redir_ep_info_header *h)
{
    for (guint i = 0; i < GW_PROXY_EP_COUNT; i++) {
        guint ep = (i & 0x10) << 3 | (i & 0x0f);
        guint8 type = h->type[i];

        if (i == GW_PROXY_EP0_OUT || i == GW_PROXY_EP0_IN) {
            if (type != usb_redir_type_control) {
                gw_proxy_client_violation(proxy, "ep_info: endpoint %02x is not control", ep);
                return FALSE;
            }
            continue;
        }
        switch (type) {
        case usb_redir_type_invalid:
            continue;
        case usb_redir_type_control:
        case usb_redir_type_iso:
        case usb_redir_type_bulk:
        case usb_redir_type_interrupt:
            break;
        default:
            gw_proxy_client_violation(proxy, "ep_info: endpoint %02x has type %u", ep, type);
            return FALSE;
        }
        if (!gw_proxy_has_interface(&proxy->interfaces, h->interface[i])) {
            gw_proxy_client_violation(proxy,
                                      "ep_info: endpoint %02x belongs to interface %u, which "
                                      "interface_info does not list",
                                      ep, h->interface[i]);
            return FALSE;
        }
        if (h->max_packet_size[i] > GW_PROXY_MAX_EP_PACKET_SIZE) {
            gw_proxy_client_violation(proxy, "ep_info: endpoint %02x max_packet_size %u", ep,
                                      h->max_packet_size[i]);
            return FALSE;
        }
        if (h->max_streams[i] > GW_PROXY_MAX_STREAMS ||
            (h->max_streams[i] != 0 && type != usb_redir_type_bulk)) {
            gw_proxy_client_violation(proxy, "ep_info: endpoint %02x max_streams %u", ep,
                                      h->max_streams[i]);
            return FALSE;
        }
    }
    return TRUE;
}

static guint8
gw_proxy_endpoint_type(GwProxy *proxy, guint8 ep)
{
    return proxy->endpoints.type[GW_PROXY_EP_INDEX(ep)];
}

/* A stream packet (iso/interrupt/buffered bulk data, stream status) must
 * name an endpoint of that type in the client's ep_info. */
static gboolean
gw_proxy_check_stream_endpoint(GwProxy *proxy, guint8 ep, guint8 type, const gchar *what)
{
    if (gw_proxy_endpoint_type(proxy, ep) != type) {
        gw_proxy_client_violation(
            proxy, "%s for endpoint %02x, which ep_info does not give that type", what, ep);
        return FALSE;
    }
    return TRUE;
}

static PolicyDevice *
gw_proxy_build_device(GwProxy *proxy, const struct usb_redir_interface_info_header *interfaces)
{
    PolicyDevice *device = policy_device_new(proxy->connect.vendor_id, proxy->connect.product_id);

    device->bcd_device = proxy->connect.device_version_bcd;
    device->device_class = proxy->connect.device_class;
    device->device_subclass = proxy->connect.device_subclass;
    device->device_protocol = proxy->connect.device_protocol;
    for (guint32 i = 0; i < interfaces->interface_count && i < GW_PROXY_MAX_INTERFACES; i++)
        policy_device_add_interface(device, interfaces->interface_class[i],
                                    interfaces->interface_subclass[i],
                                    interfaces->interface_protocol[i]);
    return device;
}

/* Asks the owner; on deny the session ends. */
static gboolean
gw_proxy_check_device(GwProxy *proxy, const struct usb_redir_interface_info_header *interfaces)
{
    g_autoptr(PolicyDevice) device = gw_proxy_build_device(proxy, interfaces);
    g_autofree gchar *description = policy_device_describe(device);
    g_autofree gchar *reason = NULL;
    g_autofree gchar *message = NULL;

    if (proxy->cb.check(proxy, device, &reason, proxy->user_data)) {
        g_info("%s: device %s allowed", proxy->label, description);
        return TRUE;
    }
    message = g_strdup_printf("device %s denied: %s", description,
                              reason != NULL ? reason : "refused by the check");
    proxy->denied_device = g_steal_pointer(&device);
    gw_proxy_end(proxy, GW_PROXY_END_DENIED, message);
    return FALSE;
}

static void
gw_proxy_count_to_qemu(GwProxy *proxy)
{
    proxy->qemu.packets_out++;
}

static void
gw_proxy_count_to_client(GwProxy *proxy)
{
    proxy->client.packets_out++;
}

/* Sends the held device to QEMU once it is allowed, QEMU said hello and
 * acknowledged the previous device's disconnect. */
static void
gw_proxy_try_forward(GwProxy *proxy)
{
    if (proxy->ended || proxy->dev != GW_PROXY_DEV_ALLOWED || !proxy->qemu.hello ||
        proxy->qemu_awaiting_ack)
        return;
    usbredirparser_send_interface_info(proxy->qemu.parser, &proxy->interfaces);
    usbredirparser_send_ep_info(proxy->qemu.parser, &proxy->endpoints);
    usbredirparser_send_device_connect(proxy->qemu.parser, &proxy->connect);
    proxy->qemu.packets_out += 3;
    proxy->dev = GW_PROXY_DEV_IN_QEMU;
    g_clear_pointer(&proxy->connected_device, policy_device_free);
    proxy->connected_device = gw_proxy_build_device(proxy, &proxy->interfaces);
    gw_proxy_notify_later(proxy);
}

/* ---- Client side: callbacks (the client is a usbredir host) ------------ */

static void gw_proxy_init_qemu(GwProxy *proxy);

static void
gw_proxy_client_hello(void *priv, struct usb_redir_hello_header *h)
{
    GwProxy *proxy = priv;
    gchar version[sizeof(h->version) + 1] = {0};
    g_autofree gchar *escaped = NULL;

    if (proxy->ended)
        return;
    proxy->client.packets_in++;
    memcpy(version, h->version, sizeof(h->version));
    escaped = g_strescape(version, NULL);
    g_info("%s: client is \"%s\"", proxy->label, escaped);
    proxy->client.hello = TRUE;
    gw_proxy_init_qemu(proxy);
}

static void
gw_proxy_client_interface_info(void *priv, struct usb_redir_interface_info_header *h)
{
    GwProxy *proxy = priv;

    if (!gw_proxy_client_packet(proxy, "interface_info") || !gw_proxy_check_interfaces(proxy, h))
        return;
    switch (proxy->dev) {
    case GW_PROXY_DEV_NONE:
        proxy->interfaces = *h;
        proxy->dev = GW_PROXY_DEV_INTERFACES;
        break;
    case GW_PROXY_DEV_INTERFACES:
    case GW_PROXY_DEV_ENDPOINTS:
    case GW_PROXY_DEV_ALLOWED:
        gw_proxy_client_violation(proxy, "interface_info twice before QEMU got the device");
        break;
    case GW_PROXY_DEV_IN_QEMU:
        /* a new configuration: the device must still pass with its new
         * interfaces */
        if (!gw_proxy_check_device(proxy, h))
            return;
        proxy->interfaces = *h;
        usbredirparser_send_interface_info(proxy->qemu.parser, &proxy->interfaces);
        gw_proxy_count_to_qemu(proxy);
        break;
    }
}

static void
gw_proxy_client_ep_info(void *priv, struct usb_redir_ep_info_header *h)
{
    GwProxy *proxy = priv;
    struct usb_redir_ep_info_header ep = *h;

    if (!gw_proxy_client_packet(proxy, "ep_info"))
        return;
    /* fields the client's capabilities leave out are not sent: do not
     * relay what the parser left in them */
    if (!usbredirparser_peer_has_cap(proxy->client.parser, usb_redir_cap_ep_info_max_packet_size))
        memset(ep.max_packet_size, 0, sizeof(ep.max_packet_size));
    if (!usbredirparser_peer_has_cap(proxy->client.parser, usb_redir_cap_bulk_streams))
        memset(ep.max_streams, 0, sizeof(ep.max_streams));
    switch (proxy->dev) {
    case GW_PROXY_DEV_NONE:
        gw_proxy_client_violation(proxy, "ep_info before interface_info");
        return;
    case GW_PROXY_DEV_ENDPOINTS:
    case GW_PROXY_DEV_ALLOWED:
        gw_proxy_client_violation(proxy, "ep_info twice before QEMU got the device");
        return;
    case GW_PROXY_DEV_INTERFACES:
    case GW_PROXY_DEV_IN_QEMU:
        break;
    }
    if (!gw_proxy_check_endpoints(proxy, &ep))
        return;
    proxy->endpoints = ep;
    if (proxy->dev == GW_PROXY_DEV_INTERFACES) {
        proxy->dev = GW_PROXY_DEV_ENDPOINTS;
        return;
    }
    usbredirparser_send_ep_info(proxy->qemu.parser, &proxy->endpoints);
    gw_proxy_count_to_qemu(proxy);
}

static void
gw_proxy_client_device_connect(void *priv, struct usb_redir_device_connect_header *h)
{
    GwProxy *proxy = priv;

    if (!gw_proxy_client_packet(proxy, "device_connect"))
        return;
    switch (proxy->dev) {
    case GW_PROXY_DEV_NONE:
    case GW_PROXY_DEV_INTERFACES:
        gw_proxy_client_violation(proxy, "device_connect before interface_info and ep_info");
        return;
    case GW_PROXY_DEV_ALLOWED:
    case GW_PROXY_DEV_IN_QEMU:
        gw_proxy_client_violation(proxy, "device_connect twice");
        return;
    case GW_PROXY_DEV_ENDPOINTS:
        break;
    }
    switch (h->speed) {
    case usb_redir_speed_low:
    case usb_redir_speed_full:
    case usb_redir_speed_high:
    case usb_redir_speed_super:
    case usb_redir_speed_unknown:
        break;
    default:
        gw_proxy_client_violation(proxy, "device_connect with speed %u", h->speed);
        return;
    }
    proxy->connect = *h;
    if (!usbredirparser_peer_has_cap(proxy->client.parser, usb_redir_cap_connect_device_version))
        proxy->connect.device_version_bcd = 0;
    if (!gw_proxy_check_device(proxy, &proxy->interfaces))
        return;
    proxy->dev = GW_PROXY_DEV_ALLOWED;
    gw_proxy_try_forward(proxy);
}

static void
gw_proxy_client_device_disconnect(void *priv)
{
    GwProxy *proxy = priv;

    if (!gw_proxy_client_packet(proxy, "device_disconnect"))
        return;
    /* usbredirparser acknowledges to the client itself, right after this
     * callback; a next device waits for QEMU's acknowledgement instead
     * (gw_proxy_try_forward) */
    if (proxy->dev == GW_PROXY_DEV_IN_QEMU) {
        usbredirparser_send_device_disconnect(proxy->qemu.parser);
        gw_proxy_count_to_qemu(proxy);
        gw_proxy_pending_make_stale(proxy);
        g_info("%s: the client's device left", proxy->label);
        if (usbredirparser_peer_has_cap(proxy->qemu.parser, usb_redir_cap_device_disconnect_ack))
            proxy->qemu_awaiting_ack = TRUE;
    }
    proxy->dev = GW_PROXY_DEV_NONE;
    memset(&proxy->interfaces, 0, sizeof(proxy->interfaces));
    memset(&proxy->endpoints, 0, sizeof(proxy->endpoints));
    memset(proxy->bulk_receiving_bytes, 0, sizeof(proxy->bulk_receiving_bytes));
}

#define GW_PROXY_CLIENT_STATUS(name, header, what)                                                 \
    static void gw_proxy_client_##name(void *priv, uint64_t id, struct header *h)                  \
    {                                                                                              \
        GwProxy *proxy = priv;                                                                     \
        GwProxyPending pending;                                                                    \
        if (!gw_proxy_client_packet(proxy, what) ||                                                \
            !gw_proxy_take_answer(proxy, id, usb_redir_##name, -1, what, &pending))                \
            return;                                                                                \
        usbredirparser_send_##name(proxy->qemu.parser, pending.qemu_id, h);                        \
        gw_proxy_count_to_qemu(proxy);                                                             \
    }
GW_PROXY_CLIENT_STATUS(configuration_status, usb_redir_configuration_status_header,
                       "configuration_status")
GW_PROXY_CLIENT_STATUS(alt_setting_status, usb_redir_alt_setting_status_header,
                       "alt_setting_status")
GW_PROXY_CLIENT_STATUS(bulk_streams_status, usb_redir_bulk_streams_status_header,
                       "bulk_streams_status")

#define GW_PROXY_CLIENT_STREAM_STATUS(name, header, what, type)                                    \
    static void gw_proxy_client_##name(void *priv, uint64_t id, struct header *h)                  \
    {                                                                                              \
        GwProxy *proxy = priv;                                                                     \
        uint64_t qemu_id = id;                                                                     \
        gboolean stale = FALSE;                                                                    \
        if (!gw_proxy_client_packet(proxy, what))                                                  \
            return;                                                                                \
        if (gw_proxy_try_take_stream_answer(proxy, id, usb_redir_##name, h->endpoint, &qemu_id,    \
                                            &stale) &&                                             \
            stale)                                                                                 \
            return;                                                                                \
        if (proxy->dev != GW_PROXY_DEV_IN_QEMU) {                                                  \
            gw_proxy_client_violation(proxy, "%s while no device is connected", what);             \
            return;                                                                                \
        }                                                                                          \
        if (!gw_proxy_check_stream_endpoint(proxy, h->endpoint, type, what))                       \
            return;                                                                                \
        usbredirparser_send_##name(proxy->qemu.parser, qemu_id, h);                                \
        gw_proxy_count_to_qemu(proxy);                                                             \
    }
GW_PROXY_CLIENT_STREAM_STATUS(iso_stream_status, usb_redir_iso_stream_status_header,
                              "iso_stream_status", usb_redir_type_iso)
GW_PROXY_CLIENT_STREAM_STATUS(interrupt_receiving_status,
                              usb_redir_interrupt_receiving_status_header,
                              "interrupt_receiving_status", usb_redir_type_interrupt)
GW_PROXY_CLIENT_STREAM_STATUS(bulk_receiving_status, usb_redir_bulk_receiving_status_header,
                              "bulk_receiving_status", usb_redir_type_bulk)

static void
gw_proxy_client_filter_filter(void *priv, struct usbredirfilter_rule *rules, int rules_count)
{
    GwProxy *proxy = priv;

    if (gw_proxy_client_packet(proxy, "filter_filter"))
        g_debug("%s: the client's filter (%d rules) is not relayed", proxy->label, rules_count);
    usbredirfilter_free(rules);
}

/* An answer's data must not exceed what was asked for. */
static gboolean
gw_proxy_check_answer_length(GwProxy *proxy, const GwProxyPending *pending, guint32 length,
                             const gchar *what)
{
    if (length > pending->length) {
        gw_proxy_client_violation(proxy, "%s answer of %u bytes, %u were asked for", what, length,
                                  pending->length);
        return FALSE;
    }
    return TRUE;
}

static void
gw_proxy_client_control_packet(void *priv, uint64_t id, struct usb_redir_control_packet_header *h,
                               uint8_t *data, int data_len)
{
    GwProxy *proxy = priv;
    GwProxyPending pending;

    if (gw_proxy_client_packet(proxy, "control packet") &&
        gw_proxy_take_answer(proxy, id, usb_redir_control_packet, h->endpoint, "control packet",
                             &pending) &&
        gw_proxy_check_answer_length(proxy, &pending, h->length, "control packet")) {
        usbredirparser_send_control_packet(proxy->qemu.parser, pending.qemu_id, h, data, data_len);
        gw_proxy_count_to_qemu(proxy);
    }
    usbredirparser_free_packet_data(proxy->client.parser, data);
}

static guint32
gw_proxy_bulk_length(struct usbredirparser *parser, const struct usb_redir_bulk_packet_header *h)
{
    /* the parser clears length_high unless both sides have the cap */
    return (guint32)h->length_high << 16 | h->length;
}

static void
gw_proxy_client_bulk_packet(void *priv, uint64_t id, struct usb_redir_bulk_packet_header *h,
                            uint8_t *data, int data_len)
{
    GwProxy *proxy = priv;
    GwProxyPending pending;

    if (gw_proxy_client_packet(proxy, "bulk packet") &&
        gw_proxy_take_answer(proxy, id, usb_redir_bulk_packet, h->endpoint, "bulk packet",
                             &pending) &&
        gw_proxy_check_answer_length(proxy, &pending, gw_proxy_bulk_length(proxy->client.parser, h),
                                     "bulk packet")) {
        if (h->stream_id != pending.stream_id) {
            gw_proxy_client_violation(proxy, "bulk answer for stream %u, asked on stream %u",
                                      h->stream_id, pending.stream_id);
        } else {
            usbredirparser_send_bulk_packet(proxy->qemu.parser, pending.qemu_id, h, data, data_len);
            gw_proxy_count_to_qemu(proxy);
        }
    }
    usbredirparser_free_packet_data(proxy->client.parser, data);
}

static void
gw_proxy_client_interrupt_packet(void *priv, uint64_t id,
                                 struct usb_redir_interrupt_packet_header *h, uint8_t *data,
                                 int data_len)
{
    GwProxy *proxy = priv;
    GwProxyPending pending;
    uint64_t qemu_id = id;

    if (!gw_proxy_client_device_packet(proxy, "interrupt packet"))
        goto done;
    if (h->endpoint & 0x80) {
        /* interrupt receiving: data the device sent */
        if (!gw_proxy_check_stream_endpoint(proxy, h->endpoint, usb_redir_type_interrupt,
                                            "interrupt packet"))
            goto done;
        if (data_len > GW_PROXY_MAX_EP_PACKET_SIZE) {
            gw_proxy_client_violation(proxy, "interrupt packet of %d bytes", data_len);
            goto done;
        }
    } else {
        if (!gw_proxy_take_answer(proxy, id, usb_redir_interrupt_packet, h->endpoint,
                                  "interrupt packet", &pending) ||
            !gw_proxy_check_answer_length(proxy, &pending, h->length, "interrupt packet"))
            goto done;
        qemu_id = pending.qemu_id;
    }
    usbredirparser_send_interrupt_packet(proxy->qemu.parser, qemu_id, h, data, data_len);
    gw_proxy_count_to_qemu(proxy);
done:
    usbredirparser_free_packet_data(proxy->client.parser, data);
}

static void
gw_proxy_client_iso_packet(void *priv, uint64_t id, struct usb_redir_iso_packet_header *h,
                           uint8_t *data, int data_len)
{
    GwProxy *proxy = priv;

    /* the parser only lets IN iso packets come from a host */
    if (gw_proxy_client_device_packet(proxy, "iso packet") &&
        gw_proxy_check_stream_endpoint(proxy, h->endpoint, usb_redir_type_iso, "iso packet")) {
        if (data_len > GW_PROXY_MAX_EP_PACKET_SIZE) {
            gw_proxy_client_violation(proxy, "iso packet of %d bytes", data_len);
        } else {
            usbredirparser_send_iso_packet(proxy->qemu.parser, id, h, data, data_len);
            gw_proxy_count_to_qemu(proxy);
        }
    }
    usbredirparser_free_packet_data(proxy->client.parser, data);
}

static void
gw_proxy_client_buffered_bulk_packet(void *priv, uint64_t id,
                                     struct usb_redir_buffered_bulk_packet_header *h, uint8_t *data,
                                     int data_len)
{
    GwProxy *proxy = priv;

    if (gw_proxy_client_device_packet(proxy, "buffered bulk packet") &&
        gw_proxy_check_stream_endpoint(proxy, h->endpoint, usb_redir_type_bulk,
                                       "buffered bulk packet")) {
        guint32 limit = proxy->bulk_receiving_bytes[GW_PROXY_EP_INDEX(h->endpoint)];
        if (limit == 0) {
            gw_proxy_client_violation(proxy,
                                      "buffered bulk packet on endpoint %02x, where QEMU never "
                                      "started bulk receiving",
                                      h->endpoint);
        } else if (h->length > limit) {
            gw_proxy_client_violation(proxy, "buffered bulk packet of %u bytes (at most %u)",
                                      h->length, limit);
        } else {
            usbredirparser_send_buffered_bulk_packet(proxy->qemu.parser, id, h, data, data_len);
            gw_proxy_count_to_qemu(proxy);
        }
    }
    usbredirparser_free_packet_data(proxy->client.parser, data);
}

/* ---- QEMU side: callbacks (QEMU is a usbredir guest) -------------------- */

static gboolean
gw_proxy_qemu_packet(GwProxy *proxy)
{
    if (proxy->ended)
        return FALSE;
    proxy->qemu.packets_in++;
    return TRUE;
}

static void
gw_proxy_qemu_hello(void *priv, struct usb_redir_hello_header *h)
{
    GwProxy *proxy = priv;

    if (!gw_proxy_qemu_packet(proxy))
        return;
    proxy->qemu.hello = TRUE;
    gw_proxy_try_forward(proxy);
}

/* Relays a request with an id, recording what must answer it. */
#define GW_PROXY_QEMU_REQUEST(name, header, answer, endpoint_expr)                                 \
    static void gw_proxy_qemu_##name(void *priv, uint64_t id, struct header *h)                    \
    {                                                                                              \
        GwProxy *proxy = priv;                                                                     \
        uint64_t client_id;                                                                        \
        if (!gw_proxy_qemu_packet(proxy) ||                                                        \
            !gw_proxy_qemu_request(proxy, id, answer, endpoint_expr, 0, 0, &client_id))            \
            return;                                                                                \
        usbredirparser_send_##name(proxy->client.parser, client_id, h);                            \
        gw_proxy_count_to_client(proxy);                                                           \
    }
GW_PROXY_QEMU_REQUEST(set_configuration, usb_redir_set_configuration_header,
                      usb_redir_configuration_status, -1)
GW_PROXY_QEMU_REQUEST(set_alt_setting, usb_redir_set_alt_setting_header,
                      usb_redir_alt_setting_status, -1)
GW_PROXY_QEMU_REQUEST(get_alt_setting, usb_redir_get_alt_setting_header,
                      usb_redir_alt_setting_status, -1)
GW_PROXY_QEMU_REQUEST(start_iso_stream, usb_redir_start_iso_stream_header,
                      usb_redir_iso_stream_status, h->endpoint)
GW_PROXY_QEMU_REQUEST(stop_iso_stream, usb_redir_stop_iso_stream_header,
                      usb_redir_iso_stream_status, h->endpoint)
GW_PROXY_QEMU_REQUEST(start_interrupt_receiving, usb_redir_start_interrupt_receiving_header,
                      usb_redir_interrupt_receiving_status, h->endpoint)
GW_PROXY_QEMU_REQUEST(stop_interrupt_receiving, usb_redir_stop_interrupt_receiving_header,
                      usb_redir_interrupt_receiving_status, h->endpoint)
GW_PROXY_QEMU_REQUEST(alloc_bulk_streams, usb_redir_alloc_bulk_streams_header,
                      usb_redir_bulk_streams_status, -1)
GW_PROXY_QEMU_REQUEST(free_bulk_streams, usb_redir_free_bulk_streams_header,
                      usb_redir_bulk_streams_status, -1)
GW_PROXY_QEMU_REQUEST(stop_bulk_receiving, usb_redir_stop_bulk_receiving_header,
                      usb_redir_bulk_receiving_status, h->endpoint)

static void
gw_proxy_qemu_get_configuration(void *priv, uint64_t id)
{
    GwProxy *proxy = priv;
    uint64_t client_id;

    if (!gw_proxy_qemu_packet(proxy) ||
        !gw_proxy_qemu_request(proxy, id, usb_redir_configuration_status, -1, 0, 0, &client_id))
        return;
    usbredirparser_send_get_configuration(proxy->client.parser, client_id);
    gw_proxy_count_to_client(proxy);
}

static void
gw_proxy_qemu_start_bulk_receiving(void *priv, uint64_t id,
                                   struct usb_redir_start_bulk_receiving_header *h)
{
    GwProxy *proxy = priv;
    uint64_t client_id;

    if (!gw_proxy_qemu_packet(proxy))
        return;
    if (h->bytes_per_transfer == 0 || h->bytes_per_transfer > GW_PROXY_MAX_DATA_LEN) {
        gw_proxy_fail(proxy, GW_PROXY_END_QEMU_PROTOCOL,
                      "start_bulk_receiving with %u bytes per transfer (at most %d)",
                      h->bytes_per_transfer, GW_PROXY_MAX_DATA_LEN);
        return;
    }
    if (!gw_proxy_qemu_request(proxy, id, usb_redir_bulk_receiving_status, h->endpoint, 0, 0,
                               &client_id))
        return;
    proxy->bulk_receiving_bytes[GW_PROXY_EP_INDEX(h->endpoint)] = h->bytes_per_transfer;
    usbredirparser_send_start_bulk_receiving(proxy->client.parser, client_id, h);
    gw_proxy_count_to_client(proxy);
}

static void
gw_proxy_qemu_cancel_data_packet(void *priv, uint64_t id)
{
    GwProxy *proxy = priv;
    GwProxyPending *pending;

    if (!gw_proxy_qemu_packet(proxy))
        return;
    pending = g_hash_table_lookup(proxy->pending_by_qemu, &id);
    if (pending == NULL) /* answered already */
        return;
    usbredirparser_send_cancel_data_packet(proxy->client.parser, pending->client_id);
    gw_proxy_count_to_client(proxy);
}

static void
gw_proxy_qemu_reset(void *priv)
{
    GwProxy *proxy = priv;

    if (!gw_proxy_qemu_packet(proxy) || proxy->dev != GW_PROXY_DEV_IN_QEMU ||
        proxy->qemu_awaiting_ack)
        return;
    usbredirparser_send_reset(proxy->client.parser);
    gw_proxy_count_to_client(proxy);
}

static void
gw_proxy_qemu_filter_reject(void *priv)
{
    GwProxy *proxy = priv;

    if (!gw_proxy_qemu_packet(proxy))
        return;
    g_message("%s: QEMU's filter rejects the device", proxy->label);
    if (usbredirparser_peer_has_cap(proxy->client.parser, usb_redir_cap_filter)) {
        usbredirparser_send_filter_reject(proxy->client.parser);
        gw_proxy_count_to_client(proxy);
    }
}

static void
gw_proxy_qemu_filter_filter(void *priv, struct usbredirfilter_rule *rules, int rules_count)
{
    GwProxy *proxy = priv;

    if (gw_proxy_qemu_packet(proxy) &&
        usbredirparser_peer_has_cap(proxy->client.parser, usb_redir_cap_filter)) {
        usbredirparser_send_filter_filter(proxy->client.parser, rules, rules_count);
        gw_proxy_count_to_client(proxy);
    }
    usbredirfilter_free(rules);
}

static void
gw_proxy_qemu_device_disconnect_ack(void *priv)
{
    GwProxy *proxy = priv;

    if (!gw_proxy_qemu_packet(proxy))
        return;
    if (!proxy->qemu_awaiting_ack) {
        g_debug("%s: device_disconnect_ack from QEMU without a disconnect", proxy->label);
        return;
    }
    proxy->qemu_awaiting_ack = FALSE;
    gw_proxy_try_forward(proxy);
}

static void
gw_proxy_qemu_control_packet(void *priv, uint64_t id, struct usb_redir_control_packet_header *h,
                             uint8_t *data, int data_len)
{
    GwProxy *proxy = priv;
    uint64_t client_id;

    if (gw_proxy_qemu_packet(proxy) &&
        gw_proxy_qemu_request(proxy, id, usb_redir_control_packet, h->endpoint, h->length, 0,
                              &client_id)) {
        usbredirparser_send_control_packet(proxy->client.parser, client_id, h, data, data_len);
        gw_proxy_count_to_client(proxy);
    }
    usbredirparser_free_packet_data(proxy->qemu.parser, data);
}

static void
gw_proxy_qemu_bulk_packet(void *priv, uint64_t id, struct usb_redir_bulk_packet_header *h,
                          uint8_t *data, int data_len)
{
    GwProxy *proxy = priv;
    guint32 length = gw_proxy_bulk_length(proxy->qemu.parser, h);
    uint64_t client_id;

    if (!gw_proxy_qemu_packet(proxy))
        goto done;
    if (length > GW_PROXY_MAX_DATA_LEN) {
        gw_proxy_fail(proxy, GW_PROXY_END_QEMU_PROTOCOL, "bulk packet of %u bytes (at most %d)",
                      length, GW_PROXY_MAX_DATA_LEN);
        goto done;
    }
    if (gw_proxy_qemu_request(proxy, id, usb_redir_bulk_packet, h->endpoint, length, h->stream_id,
                              &client_id)) {
        usbredirparser_send_bulk_packet(proxy->client.parser, client_id, h, data, data_len);
        gw_proxy_count_to_client(proxy);
    }
done:
    usbredirparser_free_packet_data(proxy->qemu.parser, data);
}

static void
gw_proxy_qemu_interrupt_packet(void *priv, uint64_t id, struct usb_redir_interrupt_packet_header *h,
                               uint8_t *data, int data_len)
{
    GwProxy *proxy = priv;
    uint64_t client_id;

    /* from a guest the parser only lets OUT interrupt packets through */
    if (gw_proxy_qemu_packet(proxy) &&
        gw_proxy_qemu_request(proxy, id, usb_redir_interrupt_packet, h->endpoint, h->length, 0,
                              &client_id)) {
        usbredirparser_send_interrupt_packet(proxy->client.parser, client_id, h, data, data_len);
        gw_proxy_count_to_client(proxy);
    }
    usbredirparser_free_packet_data(proxy->qemu.parser, data);
}

static void
gw_proxy_qemu_iso_packet(void *priv, uint64_t id, struct usb_redir_iso_packet_header *h,
                         uint8_t *data, int data_len)
{
    GwProxy *proxy = priv;

    /* iso OUT data: no answer, ids are QEMU's own stream counter */
    if (gw_proxy_qemu_packet(proxy) && proxy->dev == GW_PROXY_DEV_IN_QEMU &&
        !proxy->qemu_awaiting_ack) {
        usbredirparser_send_iso_packet(proxy->client.parser, id, h, data, data_len);
        gw_proxy_count_to_client(proxy);
    }
    usbredirparser_free_packet_data(proxy->qemu.parser, data);
}

/* ---- Packets a side can never send --------------------------------------- */

/* usbredirparser rejects packet types sent in the wrong direction before
 * it calls back; these bodies only exist because it calls every callback
 * unchecked. */
static void
gw_proxy_unexpected(void *priv)
{
    GwProxy *proxy = priv;
    gw_proxy_fail(proxy, GW_PROXY_END_CLIENT_PROTOCOL, "packet in the wrong direction");
}

static void
gw_proxy_unexpected_id(void *priv, uint64_t id)
{
    gw_proxy_unexpected(priv);
}

#define GW_PROXY_UNEXPECTED(name, header)                                                          \
    static void gw_proxy_unexpected_##name(void *priv, uint64_t id, struct header *h)              \
    {                                                                                              \
        gw_proxy_unexpected(priv);                                                                 \
    }
GW_PROXY_UNEXPECTED(set_configuration, usb_redir_set_configuration_header)
GW_PROXY_UNEXPECTED(configuration_status, usb_redir_configuration_status_header)
GW_PROXY_UNEXPECTED(set_alt_setting, usb_redir_set_alt_setting_header)
GW_PROXY_UNEXPECTED(get_alt_setting, usb_redir_get_alt_setting_header)
GW_PROXY_UNEXPECTED(alt_setting_status, usb_redir_alt_setting_status_header)
GW_PROXY_UNEXPECTED(start_iso_stream, usb_redir_start_iso_stream_header)
GW_PROXY_UNEXPECTED(stop_iso_stream, usb_redir_stop_iso_stream_header)
GW_PROXY_UNEXPECTED(iso_stream_status, usb_redir_iso_stream_status_header)
GW_PROXY_UNEXPECTED(start_interrupt_receiving, usb_redir_start_interrupt_receiving_header)
GW_PROXY_UNEXPECTED(stop_interrupt_receiving, usb_redir_stop_interrupt_receiving_header)
GW_PROXY_UNEXPECTED(interrupt_receiving_status, usb_redir_interrupt_receiving_status_header)
GW_PROXY_UNEXPECTED(alloc_bulk_streams, usb_redir_alloc_bulk_streams_header)
GW_PROXY_UNEXPECTED(free_bulk_streams, usb_redir_free_bulk_streams_header)
GW_PROXY_UNEXPECTED(bulk_streams_status, usb_redir_bulk_streams_status_header)
GW_PROXY_UNEXPECTED(start_bulk_receiving, usb_redir_start_bulk_receiving_header)
GW_PROXY_UNEXPECTED(stop_bulk_receiving, usb_redir_stop_bulk_receiving_header)
GW_PROXY_UNEXPECTED(bulk_receiving_status, usb_redir_bulk_receiving_status_header)

static void
gw_proxy_unexpected_connect(void *priv, struct usb_redir_device_connect_header *h)
{
    gw_proxy_unexpected(priv);
}

static void
gw_proxy_unexpected_interface_info(void *priv, struct usb_redir_interface_info_header *h)
{
    gw_proxy_unexpected(priv);
}

static void
gw_proxy_unexpected_ep_info(void *priv, struct usb_redir_ep_info_header *h)
{
    gw_proxy_unexpected(priv);
}

static void
gw_proxy_unexpected_buffered_bulk(void *priv, uint64_t id,
                                  struct usb_redir_buffered_bulk_packet_header *h, uint8_t *data,
                                  int data_len)
{
    GwProxy *proxy = priv;
    usbredirparser_free_packet_data(proxy->qemu.parser, data);
    gw_proxy_unexpected(priv);
}

/* ---- Parsers ------------------------------------------------------------ */

static struct usbredirparser *
gw_proxy_client_parser_new(GwProxy *proxy)
{
    struct usbredirparser *p = usbredirparser_create();

    if (p == NULL)
        return NULL;
    p->priv = proxy;
    p->log_func = gw_proxy_client_log_cb;
    p->read_func = gw_proxy_client_read_cb;
    p->write_func = gw_proxy_client_write_cb;
    p->hello_func = gw_proxy_client_hello;
    p->device_connect_func = gw_proxy_client_device_connect;
    p->device_disconnect_func = gw_proxy_client_device_disconnect;
    p->interface_info_func = gw_proxy_client_interface_info;
    p->ep_info_func = gw_proxy_client_ep_info;
    p->configuration_status_func = gw_proxy_client_configuration_status;
    p->alt_setting_status_func = gw_proxy_client_alt_setting_status;
    p->iso_stream_status_func = gw_proxy_client_iso_stream_status;
    p->interrupt_receiving_status_func = gw_proxy_client_interrupt_receiving_status;
    p->bulk_streams_status_func = gw_proxy_client_bulk_streams_status;
    p->bulk_receiving_status_func = gw_proxy_client_bulk_receiving_status;
    p->filter_filter_func = gw_proxy_client_filter_filter;
    p->control_packet_func = gw_proxy_client_control_packet;
    p->bulk_packet_func = gw_proxy_client_bulk_packet;
    p->iso_packet_func = gw_proxy_client_iso_packet;
    p->interrupt_packet_func = gw_proxy_client_interrupt_packet;
    p->buffered_bulk_packet_func = gw_proxy_client_buffered_bulk_packet;
    /* host-bound types: the parser refuses them from a host */
    p->reset_func = gw_proxy_unexpected;
    p->set_configuration_func = gw_proxy_unexpected_set_configuration;
    p->get_configuration_func = gw_proxy_unexpected_id;
    p->set_alt_setting_func = gw_proxy_unexpected_set_alt_setting;
    p->get_alt_setting_func = gw_proxy_unexpected_get_alt_setting;
    p->start_iso_stream_func = gw_proxy_unexpected_start_iso_stream;
    p->stop_iso_stream_func = gw_proxy_unexpected_stop_iso_stream;
    p->start_interrupt_receiving_func = gw_proxy_unexpected_start_interrupt_receiving;
    p->stop_interrupt_receiving_func = gw_proxy_unexpected_stop_interrupt_receiving;
    p->alloc_bulk_streams_func = gw_proxy_unexpected_alloc_bulk_streams;
    p->free_bulk_streams_func = gw_proxy_unexpected_free_bulk_streams;
    p->cancel_data_packet_func = gw_proxy_unexpected_id;
    p->filter_reject_func = gw_proxy_unexpected;
    p->device_disconnect_ack_func = gw_proxy_unexpected;
    p->start_bulk_receiving_func = gw_proxy_unexpected_start_bulk_receiving;
    p->stop_bulk_receiving_func = gw_proxy_unexpected_stop_bulk_receiving;
    return p;
}

static struct usbredirparser *
gw_proxy_qemu_parser_new(GwProxy *proxy)
{
    struct usbredirparser *p = usbredirparser_create();

    if (p == NULL)
        return NULL;
    p->priv = proxy;
    p->log_func = gw_proxy_qemu_log_cb;
    p->read_func = gw_proxy_qemu_read_cb;
    p->write_func = gw_proxy_qemu_write_cb;
    p->hello_func = gw_proxy_qemu_hello;
    p->reset_func = gw_proxy_qemu_reset;
    p->set_configuration_func = gw_proxy_qemu_set_configuration;
    p->get_configuration_func = gw_proxy_qemu_get_configuration;
    p->set_alt_setting_func = gw_proxy_qemu_set_alt_setting;
    p->get_alt_setting_func = gw_proxy_qemu_get_alt_setting;
    p->start_iso_stream_func = gw_proxy_qemu_start_iso_stream;
    p->stop_iso_stream_func = gw_proxy_qemu_stop_iso_stream;
    p->start_interrupt_receiving_func = gw_proxy_qemu_start_interrupt_receiving;
    p->stop_interrupt_receiving_func = gw_proxy_qemu_stop_interrupt_receiving;
    p->alloc_bulk_streams_func = gw_proxy_qemu_alloc_bulk_streams;
    p->free_bulk_streams_func = gw_proxy_qemu_free_bulk_streams;
    p->cancel_data_packet_func = gw_proxy_qemu_cancel_data_packet;
    p->filter_reject_func = gw_proxy_qemu_filter_reject;
    p->filter_filter_func = gw_proxy_qemu_filter_filter;
    p->device_disconnect_ack_func = gw_proxy_qemu_device_disconnect_ack;
    p->start_bulk_receiving_func = gw_proxy_qemu_start_bulk_receiving;
    p->stop_bulk_receiving_func = gw_proxy_qemu_stop_bulk_receiving;
    p->control_packet_func = gw_proxy_qemu_control_packet;
    p->bulk_packet_func = gw_proxy_qemu_bulk_packet;
    p->iso_packet_func = gw_proxy_qemu_iso_packet;
    p->interrupt_packet_func = gw_proxy_qemu_interrupt_packet;
    /* guest-bound types: the parser refuses them from a guest */
    p->device_connect_func = gw_proxy_unexpected_connect;
    p->device_disconnect_func = gw_proxy_unexpected;
    p->interface_info_func = gw_proxy_unexpected_interface_info;
    p->ep_info_func = gw_proxy_unexpected_ep_info;
    p->configuration_status_func = gw_proxy_unexpected_configuration_status;
    p->alt_setting_status_func = gw_proxy_unexpected_alt_setting_status;
    p->iso_stream_status_func = gw_proxy_unexpected_iso_stream_status;
    p->interrupt_receiving_status_func = gw_proxy_unexpected_interrupt_receiving_status;
    p->bulk_streams_status_func = gw_proxy_unexpected_bulk_streams_status;
    p->bulk_receiving_status_func = gw_proxy_unexpected_bulk_receiving_status;
    p->buffered_bulk_packet_func = gw_proxy_unexpected_buffered_bulk;
    return p;
}

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
static void
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

/* ---- The GSource ------------------------------------------------------- */

static GIOCondition
gw_proxy_side_wanted(GwProxySide *side)
{
    GIOCondition events = 0;

    if (side->fd < 0)
        return 0;
    if (gw_proxy_side_may_read(side))
        events |= G_IO_IN;
    if (side->initialized && usbredirparser_has_data_to_write(side->parser) > 0)
        events |= G_IO_OUT;
    return events;
}

static void
gw_proxy_side_update(GSource *source, GwProxySide *side)
{
    GIOCondition events = gw_proxy_side_wanted(side);
    /* g_source_modify_unix_fd() wakes the context: only on a change */
    if (events != side->events) {
        g_source_modify_unix_fd(source, side->tag, events);
        side->events = events;
    }
}

static gboolean
gw_proxy_source_prepare(GSource *source, gint *timeout)
{
    GwProxy *proxy = ((GwProxySource *)source)->proxy;

    *timeout = -1;
    gw_proxy_side_update(source, &proxy->client);
    gw_proxy_side_update(source, &proxy->qemu);
    return FALSE;
}

static GwProxyEnd
gw_proxy_side_closed_end(GwProxySide *side)
{
    return side == &side->proxy->client ? GW_PROXY_END_CLIENT_CLOSED : GW_PROXY_END_QEMU_CLOSED;
}

static void
gw_proxy_side_flush(GwProxySide *side)
{
    GwProxy *proxy = side->proxy;

    if (proxy->ended || !side->initialized || !usbredirparser_has_data_to_write(side->parser))
        return;
    if (usbredirparser_do_write(side->parser) < 0)
        gw_proxy_fail(proxy, gw_proxy_side_closed_end(side), "write to %s failed", side->name);
}

static void
gw_proxy_side_dispatch_read(GwProxySide *side, GIOCondition revents)
{
    GwProxy *proxy = side->proxy;
    gboolean is_client = side == &proxy->client;

    if (proxy->ended)
        return;
    if (revents & G_IO_IN) {
        int rc = usbredirparser_do_read(side->parser);
        if (proxy->ended)
            return;
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
        if (rc < 0 || side->eof) {
            gw_proxy_fail(proxy, gw_proxy_side_closed_end(side), "%s closed the connection",
                          side->name);
            return;
        }
    } else if (revents & (G_IO_HUP | G_IO_ERR)) {
        /* not read now (backpressure) but gone */
        gw_proxy_fail(proxy, gw_proxy_side_closed_end(side), "%s hung up", side->name);
    }
}

static gboolean
gw_proxy_source_dispatch(GSource *source, GSourceFunc callback, gpointer user_data)
{
    GwProxy *proxy = ((GwProxySource *)source)->proxy;
    GIOCondition client_rev = g_source_query_unix_fd(source, proxy->client.tag);
    GIOCondition qemu_rev = g_source_query_unix_fd(source, proxy->qemu.tag);

    if (client_rev & G_IO_OUT)
        gw_proxy_side_flush(&proxy->client);
    if (qemu_rev & G_IO_OUT)
        gw_proxy_side_flush(&proxy->qemu);
    if (client_rev & (G_IO_IN | G_IO_HUP | G_IO_ERR))
        gw_proxy_side_dispatch_read(&proxy->client, client_rev);
    if (qemu_rev & (G_IO_IN | G_IO_HUP | G_IO_ERR))
        gw_proxy_side_dispatch_read(&proxy->qemu, qemu_rev);
    /* relay at once: what one side's read queued for the other */
    gw_proxy_side_flush(&proxy->qemu);
    gw_proxy_side_flush(&proxy->client);
    return G_SOURCE_CONTINUE;
}

static GSourceFuncs gw_proxy_source_funcs = {
    .prepare = gw_proxy_source_prepare,
    .dispatch = gw_proxy_source_dispatch,
};

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

GwProxy *
gw_proxy_new(GSocket *client, GSocket *qemu, const gchar *label, const GwProxyCallbacks *cb,
             gpointer user_data, GError **error)
{
    g_autoptr(GwProxy) proxy = NULL;
    GwProxySource *source;

    g_return_val_if_fail(G_IS_SOCKET(client) && G_IS_SOCKET(qemu), NULL);
    g_return_val_if_fail(cb != NULL && cb->check != NULL && cb->closed != NULL, NULL);

    proxy = g_new0(GwProxy, 1);
    proxy->label = g_strdup(label);
    proxy->cb = *cb;
    proxy->user_data = user_data;
    proxy->context = g_main_context_ref_thread_default();
    proxy->pending = g_hash_table_new_full(g_int64_hash, g_int64_equal, NULL, g_free);
    proxy->pending_by_qemu = g_hash_table_new(g_int64_hash, g_int64_equal);
    proxy->next_client_id = 1;
    gw_proxy_side_setup(proxy, &proxy->client, "the client", client);
    gw_proxy_side_setup(proxy, &proxy->qemu, "QEMU", qemu);

    proxy->client.parser = gw_proxy_client_parser_new(proxy);
    proxy->qemu.parser = gw_proxy_qemu_parser_new(proxy);
    if (proxy->client.parser == NULL || proxy->qemu.parser == NULL) {
        g_set_error(error, G_IO_ERROR, G_IO_ERROR_FAILED, "%s: cannot create usbredir parsers",
                    label);
        return NULL;
    }
    gw_proxy_init_client(proxy);

    proxy->io_source = g_source_new(&gw_proxy_source_funcs, sizeof(GwProxySource));
    source = (GwProxySource *)proxy->io_source;
    source->proxy = proxy;
    proxy->client.events = G_IO_IN | G_IO_OUT;
    proxy->client.tag =
        g_source_add_unix_fd(proxy->io_source, proxy->client.fd, proxy->client.events);
    proxy->qemu.events = 0;
    proxy->qemu.tag = g_source_add_unix_fd(proxy->io_source, proxy->qemu.fd, proxy->qemu.events);
    g_source_set_name(proxy->io_source, "usbgw-proxy");
    g_source_attach(proxy->io_source, proxy->context);
    return g_steal_pointer(&proxy);
}

const gchar *
gw_proxy_get_label(GwProxy *proxy)
{
    return proxy->label;
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
    gw_proxy_side_close(side);
    g_clear_pointer(&side->parser, usbredirparser_destroy);
    g_clear_object(&side->socket);
    g_clear_pointer(&side->stream_error, g_free);
}

void
gw_proxy_free(GwProxy *proxy)
{
    if (proxy == NULL)
        return;
    if (proxy->io_source != NULL) {
        g_source_destroy(proxy->io_source);
        g_source_unref(proxy->io_source);
    }
    if (proxy->notify_source != NULL) {
        g_source_destroy(proxy->notify_source);
        g_source_unref(proxy->notify_source);
    }
    gw_proxy_side_clear(&proxy->client);
    gw_proxy_side_clear(&proxy->qemu);
    g_clear_pointer(&proxy->pending_by_qemu, g_hash_table_unref);
    g_clear_pointer(&proxy->pending, g_hash_table_unref);
    g_clear_pointer(&proxy->connected_device, policy_device_free);
    g_clear_pointer(&proxy->denied_device, policy_device_free);
    g_clear_pointer(&proxy->context, g_main_context_unref);
    g_free(proxy->end_reason);
    g_free(proxy->label);
    g_free(proxy);
}
