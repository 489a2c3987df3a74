/* The anchor's end of a migration relay stream. */
#include "gw-relay-anchor.h"

#include <errno.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>
#include <glib-unix.h>

#include "gw-fd-watch.h"
#include "gw-handover-relay.h"
#include "gw-log.h"
#include "gw-relay-wire.h"

typedef enum {
    GW_RELAY_ANCHOR_PENDING, /* connected: a migration destination, or refused */
    GW_RELAY_ANCHOR_PEER,    /* the socket owner's peer: the VM runs on the relay's host */
    GW_RELAY_ANCHOR_DONE,    /* handed over to another, or dropped */
} GwRelayAnchorRole;

struct _GwRelayAnchor {
    GwLinkStream *stream; /* nullable once it ended */
    gchar *self;
    gchar *gateway;
    gchar *vm;
    gchar *path;
    GwRelayAnchorRole role;
    GwRelayAnchorClosed closed;
    gpointer user_data;

    int fd; /* our end, connected to the VM's socket */
    GwFdWatch *watch;
    GwHandoverRelay *relay;
    GwRelayDecoder *decoder;
    GByteArray *out;       /* records the stream did not take yet */
    GByteArray *in;        /* bytes from the stream not decoded yet */
    gsize in_pos;          /* decoded up to here */
    GByteArray *to_socket; /* DATA not written to the socket yet */
    guint64 forwarded;     /* DATA bytes read from the socket and sent */
    guint64 consumed;      /* of them, read by the relay's QEMU (its last report) */
    gboolean stream_ended; /* the relay closed the stream, or the link was lost */
    gboolean ended;        /* closed() ran */
};

static GHashTable *gw_relay_anchors; /* path -> GPtrArray of GwRelayAnchor (borrowed) */

static void gw_relay_anchor_update_watch(GwRelayAnchor *anchor);
static void gw_relay_anchor_pump_in(GwRelayAnchor *anchor);
static void gw_relay_anchor_relay_gone(GwRelayAnchor *anchor, const gchar *reason);

static void
gw_relay_anchor_register(GwRelayAnchor *anchor)
{
    GPtrArray *list;

    if (gw_relay_anchors == NULL)
        gw_relay_anchors = g_hash_table_new_full(g_str_hash, g_str_equal, g_free,
                                                 (GDestroyNotify)g_ptr_array_unref);
    list = g_hash_table_lookup(gw_relay_anchors, anchor->path);
    if (list == NULL) {
        list = g_ptr_array_new();
        g_hash_table_insert(gw_relay_anchors, g_strdup(anchor->path), list);
    }
    g_ptr_array_add(list, anchor);
}

static void
gw_relay_anchor_unregister(GwRelayAnchor *anchor)
{
    GPtrArray *list =
        gw_relay_anchors != NULL ? g_hash_table_lookup(gw_relay_anchors, anchor->path) : NULL;

    if (list == NULL)
        return;
    g_ptr_array_remove(list, anchor);
    if (list->len == 0)
        g_hash_table_remove(gw_relay_anchors, anchor->path);
}

/* The anchor on @path in @role, if any. */
static GwRelayAnchor *
gw_relay_anchor_find(const gchar *path, GwRelayAnchorRole role)
{
    GPtrArray *list = gw_relay_anchors != NULL ? g_hash_table_lookup(gw_relay_anchors, path) : NULL;

    for (guint i = 0; list != NULL && i < list->len; i++) {
        GwRelayAnchor *anchor = g_ptr_array_index(list, i);
        if (anchor->role == role && !anchor->ended)
            return anchor;
    }
    return NULL;
}

/* Ends the anchor once: the stream closed with @reason, closed() told. */
static void
gw_relay_anchor_end(GwRelayAnchor *anchor, const gchar *reason)
{
    if (anchor->ended)
        return;
    anchor->ended = TRUE;
    g_clear_pointer(&anchor->watch, gw_fd_watch_free);
    if (anchor->stream != NULL)
        gw_link_stream_close(g_steal_pointer(&anchor->stream), reason);
    /* a handover waiting for a count gets the last one */
    gw_handover_relay_set_final(anchor->relay);
    anchor->closed(anchor, reason, anchor->user_data);
}

static void
gw_relay_anchor_flush_out(GwRelayAnchor *anchor)
{
    gssize n;

    if (anchor->stream == NULL || anchor->out->len == 0)
        return;
    n = gw_link_stream_write(anchor->stream, anchor->out->data, anchor->out->len);
    if (n > 0)
        g_byte_array_remove_range(anchor->out, 0, (guint)n);
    gw_link_stream_flush(anchor->stream);
}

static void
gw_relay_anchor_update_watch(GwRelayAnchor *anchor)
{
    GIOCondition condition = G_IO_HUP | G_IO_ERR;

    if (anchor->watch == NULL)
        return;
    if (anchor->to_socket->len > 0)
        condition |= G_IO_OUT;
    /* reads go to the relay while it keeps up with its reports */
    if (!anchor->stream_ended && anchor->out->len == 0 &&
        anchor->forwarded - anchor->consumed < GW_RELAY_ANCHOR_WINDOW)
        condition |= G_IO_IN;
    gw_fd_watch_set_condition(anchor->watch, condition);
}

/* Writes what waits for the socket; FALSE when some still waits. */
static gboolean
gw_relay_anchor_write_socket(GwRelayAnchor *anchor)
{
    while (anchor->to_socket->len > 0) {
        ssize_t n = send(anchor->fd, anchor->to_socket->data, anchor->to_socket->len,
                         MSG_DONTWAIT | MSG_NOSIGNAL);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            return FALSE;
        if (n < 0) {
            /* the owner closed its end: our read sees it and ends us */
            g_byte_array_set_size(anchor->to_socket, 0);
            return TRUE;
        }
        g_byte_array_remove_range(anchor->to_socket, 0, (guint)n);
    }
    return TRUE;
}

/* The relay's count of what its QEMU read. */
static gboolean
gw_relay_anchor_count(GwRelayAnchor *anchor, const GwRelayRecord *record, GError **error)
{
    guint64 value = gw_relay_record_u64(record);

    if (value < anchor->consumed || value > anchor->forwarded) {
        g_set_error(error, G_IO_ERROR, G_IO_ERROR_INVALID_DATA,
                    "migration relay stream: %s says %" G_GUINT64_FORMAT
                    " bytes read, but %" G_GUINT64_FORMAT " were sent and %" G_GUINT64_FORMAT
                    " reported read before",
                    gw_relay_record_name(record->type), value, anchor->forwarded, anchor->consumed);
        return FALSE;
    }
    anchor->consumed = value;
    gw_handover_relay_set_unread(anchor->relay, anchor->forwarded - anchor->consumed);
    return TRUE;
}

static gboolean
gw_relay_anchor_record(GwRelayAnchor *anchor, const GwRelayRecord *record, GError **error)
{
    switch (record->type) {
    case GW_RELAY_RECORD_DATA:
        g_byte_array_append(anchor->to_socket, record->payload, record->length);
        gw_relay_anchor_write_socket(anchor);
        return TRUE;
    case GW_RELAY_RECORD_CONSUMED:
        return gw_relay_anchor_count(anchor, record, error);
    case GW_RELAY_RECORD_ANSWER:
        if (!gw_relay_anchor_count(anchor, record, error))
            return FALSE;
        gw_handover_relay_settled(anchor->relay);
        return TRUE;
    case GW_RELAY_RECORD_GONE:
        /* the stream stays for the records a handover sends the relay */
        gw_relay_anchor_relay_gone(anchor, "its QEMU closed its connection");
        return TRUE;
    default:
        /* the decoder lets nothing else through */
        g_set_error(error, G_IO_ERROR, G_IO_ERROR_INVALID_DATA,
                    "migration relay stream: unexpected %s", gw_relay_record_name(record->type));
        return FALSE;
    }
}

/* Decodes what the stream brought, in order: a DATA record the socket does
 * not take yet holds the ones after it (an ANSWER counts only once what
 * came before it is in the socket). */
static void
gw_relay_anchor_pump_in(GwRelayAnchor *anchor)
{
    g_autoptr(GError) error = NULL;

    while (!anchor->ended && anchor->to_socket->len == 0) {
        GwRelayRecord record;
        gsize used;

        if (anchor->in_pos == anchor->in->len) {
            gssize n;
            if (anchor->stream == NULL)
                break;
            g_byte_array_set_size(anchor->in, GW_RELAY_WIRE_MAX_DATA + GW_RELAY_WIRE_HEADER_LEN);
            n = gw_link_stream_read(anchor->stream, anchor->in->data, anchor->in->len);
            g_byte_array_set_size(anchor->in, n > 0 ? (guint)n : 0);
            anchor->in_pos = 0;
            if (n <= 0)
                break;
        }
        switch (gw_relay_decoder_feed(anchor->decoder, anchor->in->data + anchor->in_pos,
                                      anchor->in->len - anchor->in_pos, &used, &record, &error)) {
        case GW_RELAY_DECODE_MORE:
            anchor->in_pos += used;
            break;
        case GW_RELAY_DECODE_RECORD:
            anchor->in_pos += used;
            if (!gw_relay_anchor_record(anchor, &record, &error)) {
                gw_log_device(G_LOG_LEVEL_WARNING, NULL, anchor->vm, NULL,
                              "migration relay from gateway %s: %s", anchor->gateway,
                              error->message);
                gw_relay_anchor_end(anchor, error->message);
                return;
            }
            break;
        case GW_RELAY_DECODE_ERROR:
            gw_log_device(G_LOG_LEVEL_WARNING, NULL, anchor->vm, NULL,
                          "migration relay from gateway %s: %s", anchor->gateway, error->message);
            gw_relay_anchor_end(anchor, error->message);
            return;
        }
    }
    gw_relay_anchor_update_watch(anchor);
}

/* What the socket's owner wrote goes to the relay, within the window. */
static void
gw_relay_anchor_read_socket(GwRelayAnchor *anchor)
{
    guint8 buf[GW_RELAY_WIRE_MAX_DATA];
    guint64 room = GW_RELAY_ANCHOR_WINDOW - (anchor->forwarded - anchor->consumed);
    ssize_t n;

    n = recv(anchor->fd, buf, MIN(sizeof(buf), room), MSG_DONTWAIT);
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR))
        return;
    if (n <= 0) {
        gw_relay_anchor_end(anchor, n == 0 ? "the VM socket's owner closed the connection"
                                           : "the VM socket's connection failed");
        return;
    }
    gw_relay_wire_put_data(anchor->out, buf, (gsize)n);
    anchor->forwarded += (guint64)n;
    gw_handover_relay_set_unread(anchor->relay, anchor->forwarded - anchor->consumed);
    gw_relay_anchor_flush_out(anchor);
}

static void
gw_relay_anchor_socket_ready(int fd, GIOCondition revents, gpointer data)
{
    GwRelayAnchor *anchor = data;

    if (revents & G_IO_OUT) {
        if (gw_relay_anchor_write_socket(anchor))
            gw_relay_anchor_pump_in(anchor);
        if (anchor->ended)
            return;
    }
    if (revents & G_IO_IN) {
        gw_relay_anchor_read_socket(anchor);
        if (anchor->ended)
            return;
    } else if (revents & (G_IO_HUP | G_IO_ERR)) {
        gw_relay_anchor_end(anchor, "the VM socket's owner closed the connection");
        return;
    }
    gw_relay_anchor_update_watch(anchor);
}

static void
gw_relay_anchor_readable(GwLinkStream *stream, gpointer user_data)
{
    gw_relay_anchor_pump_in(user_data);
}

static void
gw_relay_anchor_writable(GwLinkStream *stream, gpointer user_data)
{
    GwRelayAnchor *anchor = user_data;

    gw_relay_anchor_flush_out(anchor);
    gw_relay_anchor_update_watch(anchor);
}

/* The relay's QEMU left (GONE), or the stream ended: the socket's owner
 * sees its end after what came before; we stay until it closes. */
static void
gw_relay_anchor_relay_gone(GwRelayAnchor *anchor, const gchar *reason)
{
    if (anchor->stream_ended)
        return;
    anchor->stream_ended = TRUE;
    gw_log_device(G_LOG_LEVEL_INFO, NULL, anchor->vm, NULL,
                  "migration relay from gateway %s on %s: %s", anchor->gateway, anchor->path,
                  reason);
    /* the count is final: a handover that waits for it goes on, and one
     * the end starts needs no answer */
    gw_handover_relay_set_final(anchor->relay);
    shutdown(anchor->fd, SHUT_WR);
    gw_relay_anchor_update_watch(anchor);
}

static void
gw_relay_anchor_stream_closed(GwLinkStream *stream, const gchar *reason, gpointer user_data)
{
    GwRelayAnchor *anchor = user_data;

    gw_relay_anchor_pump_in(anchor);
    anchor->stream = NULL;
    gw_relay_anchor_relay_gone(anchor, reason);
}

/* A handover on the socket wants the relay's count now. */
static void
gw_relay_anchor_settle(gpointer data)
{
    GwRelayAnchor *anchor = data;

    gw_relay_wire_put_empty(anchor->out, GW_RELAY_RECORD_QUERY);
    gw_relay_anchor_flush_out(anchor);
    gw_relay_anchor_update_watch(anchor);
}

static int
gw_relay_anchor_connect(const gchar *path, GError **error)
{
    struct sockaddr_un addr = {.sun_family = AF_UNIX};
    int fd;

    if (strlen(path) >= sizeof(addr.sun_path)) {
        g_set_error(error, G_IO_ERROR, G_IO_ERROR_FILENAME_TOO_LONG, "%s: path too long", path);
        return -1;
    }
    strcpy(addr.sun_path, path);
    fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0 || connect(fd, (struct sockaddr *)&addr, sizeof(addr)) != 0) {
        int saved = errno;
        g_set_error(error, G_IO_ERROR, g_io_error_from_errno(saved), "cannot connect to %s: %s",
                    path, g_strerror(saved));
        if (fd >= 0)
            close(fd);
        return -1;
    }
    return fd;
}

GwRelayAnchor *
gw_relay_anchor_new(GwLinkStream *stream, const gchar *self, const gchar *gateway, const gchar *vm,
                    const gchar *path, GwRelayAnchorClosed closed, gpointer user_data,
                    GError **error)
{
    static const GwLinkStreamCallbacks callbacks = {
        .closed = gw_relay_anchor_stream_closed,
        .readable = gw_relay_anchor_readable,
        .writable = gw_relay_anchor_writable,
    };
    GwRelayAnchor *anchor;
    int fd;

    if (gw_relay_anchor_find(path, GW_RELAY_ANCHOR_PENDING) != NULL) {
        g_set_error(error, G_IO_ERROR, G_IO_ERROR_BUSY,
                    "a migration relay is already pending on %s", path);
        return NULL;
    }
    fd = gw_relay_anchor_connect(path, error);
    if (fd < 0)
        return NULL;
    g_unix_set_fd_nonblocking(fd, TRUE, NULL);
    anchor = g_new0(GwRelayAnchor, 1);
    anchor->stream = stream;
    anchor->self = g_strdup(self);
    anchor->gateway = g_strdup(gateway);
    anchor->vm = g_strdup(vm);
    anchor->path = g_strdup(path);
    anchor->closed = closed;
    anchor->user_data = user_data;
    anchor->fd = fd;
    anchor->decoder = gw_relay_decoder_new(GW_RELAY_END_ANCHOR);
    anchor->out = g_byte_array_new();
    anchor->in = g_byte_array_new();
    anchor->to_socket = g_byte_array_new();
    anchor->relay =
        gw_handover_relay_new(fd, GW_RELAY_ANCHOR_WINDOW, gw_relay_anchor_settle, anchor);
    anchor->watch =
        gw_fd_watch_new(g_main_context_get_thread_default(), "usbgw-relay-anchor", fd,
                        G_IO_IN | G_IO_HUP | G_IO_ERR, gw_relay_anchor_socket_ready, anchor);
    gw_link_stream_set_callbacks(stream, &callbacks, anchor);
    gw_relay_anchor_register(anchor);
    gw_log_device(G_LOG_LEVEL_MESSAGE, NULL, vm, NULL,
                  "migration relay from gateway %s connected to %s", gateway, path);
    return anchor;
}

void
gw_relay_anchor_free(GwRelayAnchor *anchor)
{
    if (anchor == NULL)
        return;
    gw_relay_anchor_unregister(anchor);
    g_clear_pointer(&anchor->watch, gw_fd_watch_free);
    if (anchor->stream != NULL)
        gw_link_stream_close(anchor->stream, "the anchor closed");
    gw_handover_relay_free(anchor->relay);
    close(anchor->fd);
    gw_relay_decoder_free(anchor->decoder);
    g_byte_array_unref(anchor->out);
    g_byte_array_unref(anchor->in);
    g_byte_array_unref(anchor->to_socket);
    g_free(anchor->self);
    g_free(anchor->gateway);
    g_free(anchor->vm);
    g_free(anchor->path);
    g_free(anchor);
}

const gchar *
gw_relay_anchor_get_gateway(GwRelayAnchor *anchor)
{
    return anchor->gateway;
}

const gchar *
gw_relay_anchor_get_vm(GwRelayAnchor *anchor)
{
    return anchor->vm;
}

gboolean
gw_relay_anchor_is_peer(GwRelayAnchor *anchor)
{
    return anchor->role == GW_RELAY_ANCHOR_PEER && !anchor->ended;
}

const gchar *
gw_relay_anchor_vm_host(const gchar *vm)
{
    GHashTableIter iter;
    gpointer value;

    if (gw_relay_anchors == NULL)
        return NULL;
    g_hash_table_iter_init(&iter, gw_relay_anchors);
    while (g_hash_table_iter_next(&iter, NULL, &value)) {
        GPtrArray *list = value;
        for (guint i = 0; i < list->len; i++) {
            GwRelayAnchor *anchor = g_ptr_array_index(list, i);
            if (gw_relay_anchor_is_peer(anchor) && g_strcmp0(anchor->vm, vm) == 0)
                return anchor->gateway;
        }
    }
    return NULL;
}

gboolean
gw_relay_anchor_vm_is_away(const gchar *vm)
{
    GHashTableIter iter;
    gpointer value;

    if (gw_relay_anchors == NULL)
        return FALSE;
    g_hash_table_iter_init(&iter, gw_relay_anchors);
    while (g_hash_table_iter_next(&iter, NULL, &value)) {
        GPtrArray *list = value;
        for (guint i = 0; i < list->len; i++) {
            GwRelayAnchor *anchor = g_ptr_array_index(list, i);
            if (!anchor->ended && anchor->role != GW_RELAY_ANCHOR_DONE &&
                g_strcmp0(anchor->vm, vm) == 0)
                return TRUE;
        }
    }
    return FALSE;
}

/* Tells the relay @anchor a record naming @gateway. */
static void
gw_relay_anchor_tell(GwRelayAnchor *anchor, GwRelayRecordType type, const gchar *gateway)
{
    if (anchor->stream == NULL)
        return;
    gw_relay_wire_put_name(anchor->out, type, gateway);
    gw_relay_anchor_flush_out(anchor);
    gw_relay_anchor_update_watch(anchor);
}

void
gw_relay_anchor_handover_ended(const gchar *path, gboolean done, gboolean local_source,
                               gboolean local_destination, gchar **from, gchar **to)
{
    GwRelayAnchor *source = local_source ? NULL : gw_relay_anchor_find(path, GW_RELAY_ANCHOR_PEER);
    GwRelayAnchor *destination =
        local_destination ? NULL : gw_relay_anchor_find(path, GW_RELAY_ANCHOR_PENDING);

    *from = source != NULL ? g_strdup(source->gateway) : NULL;
    *to = destination != NULL ? g_strdup(destination->gateway) : NULL;
    if (!done) {
        if (destination != NULL)
            destination->role = GW_RELAY_ANCHOR_DONE;
        return;
    }
    if (destination != NULL) {
        destination->role = GW_RELAY_ANCHOR_PEER;
        gw_relay_anchor_tell(destination, GW_RELAY_RECORD_MIGRATED_IN,
                             source != NULL ? source->gateway : destination->self);
    }
    if (source != NULL) {
        source->role = GW_RELAY_ANCHOR_DONE;
        gw_relay_anchor_tell(source, GW_RELAY_RECORD_MIGRATED_OUT,
                             destination != NULL ? destination->gateway : source->self);
    }
}
