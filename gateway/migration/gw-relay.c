/* A migrated VM's QEMU on this host, relayed to its device's anchor. */
#include "gw-relay.h"

#include <errno.h>
#include <string.h>
#include <sys/socket.h>

#include "gw-fd-watch.h"
#include "gw-handover.h"
#include "gw-log.h"
#include "gw-relay-anchor.h"
#include "gw-relay-wire.h"

/* More DATA than this waiting for QEMU means the anchor ignored its
 * window (its own reads stop at GW_RELAY_ANCHOR_WINDOW unreported). */
#define GW_RELAY_MAX_TO_QEMU (2 * GW_RELAY_ANCHOR_WINDOW)
/* Records waiting for the stream, at most: QEMU's bytes are read only
 * once the stream took the earlier ones, so only counts can pile up. */
#define GW_RELAY_MAX_OUT (GW_RELAY_WIRE_MAX_DATA * 16)
/* After QEMU left, the anchor's last records are waited for this long. */
#define GW_RELAY_LINGER_S 30

struct _GwRelay {
    GSocketConnection *qemu; /* owned */
    int fd;                  /* qemu's */
    gchar *vm;
    gchar *id; /* the stream id */
    const GwRelayFuncs *funcs;
    gpointer user_data;

    GwLinkStream *stream; /* nullable: none accepted yet, or it ended */
    guint attempt;
    gboolean opened;
    gchar *anchor; /* the gateway that accepted */
    gboolean holds_device;
    gboolean migrated_out; /* the anchor said the VM went on */
    gboolean qemu_gone; /* GONE sent: the stream waits for the anchor's last records */
    guint linger;       /* ends the relay if the anchor does not */
    gboolean ended;

    GwFdWatch *watch;
    GwRelayDecoder *decoder;
    GByteArray *out;     /* records the stream did not take yet */
    GByteArray *to_qemu; /* DATA not written to QEMU yet */
    guint64 delivered;   /* DATA bytes written to QEMU's socket */
    guint64 reported;    /* the count last sent */
    GSource *sampler;    /* while bytes written to QEMU may be unread */
};

static void gw_relay_open_next(GwRelay *relay, const gchar *reason);

static void
gw_relay_end(GwRelay *relay, const gchar *reason)
{
    if (relay->ended)
        return;
    relay->ended = TRUE;
    if (relay->linger != 0) {
        g_source_remove(relay->linger);
        relay->linger = 0;
    }
    gw_log_device(G_LOG_LEVEL_MESSAGE, NULL, relay->vm, NULL,
                  "migration relay of %s to gateway %s ended: %s", relay->id,
                  relay->anchor != NULL ? relay->anchor : "(none)", reason);
    g_clear_pointer(&relay->watch, gw_fd_watch_free);
    if (relay->sampler != NULL) {
        g_source_destroy(relay->sampler);
        g_clear_pointer(&relay->sampler, g_source_unref);
    }
    if (relay->stream != NULL)
        gw_link_stream_close(g_steal_pointer(&relay->stream), reason);
    g_io_stream_close(G_IO_STREAM(relay->qemu), NULL, NULL);
    relay->funcs->closed(relay, reason, relay->user_data);
}

static void gw_relay_flush_out(GwRelay *relay);

static gboolean
gw_relay_linger_done(gpointer data)
{
    GwRelay *relay = data;

    relay->linger = 0;
    gw_relay_end(relay, "the VM's QEMU closed its connection");
    return G_SOURCE_REMOVE;
}

/* QEMU's connection ended: the anchor is told (GONE) and may still say
 * that the VM migrated on (its handover takes the end as the source
 * leaving); it closes the stream when its socket's owner let go. */
static void
gw_relay_qemu_gone(GwRelay *relay, const gchar *reason)
{
    if (relay->qemu_gone)
        return;
    if (relay->stream == NULL || !relay->opened) {
        gw_relay_end(relay, reason);
        return;
    }
    relay->qemu_gone = TRUE;
    gw_log_device(G_LOG_LEVEL_INFO, NULL, relay->vm, NULL,
                  "migration relay of %s: %s; telling gateway %s", relay->id, reason,
                  relay->anchor);
    g_clear_pointer(&relay->watch, gw_fd_watch_free);
    if (relay->sampler != NULL) {
        g_source_destroy(relay->sampler);
        g_clear_pointer(&relay->sampler, g_source_unref);
    }
    g_io_stream_close(G_IO_STREAM(relay->qemu), NULL, NULL);
    g_byte_array_set_size(relay->to_qemu, 0);
    gw_relay_wire_put_empty(relay->out, GW_RELAY_RECORD_GONE);
    gw_relay_flush_out(relay);
    relay->linger = g_timeout_add_seconds(GW_RELAY_LINGER_S, gw_relay_linger_done, relay);
}

static void
gw_relay_flush_out(GwRelay *relay)
{
    gssize n;

    if (relay->stream == NULL || relay->out->len == 0)
        return;
    /* only counts pile up while the anchor takes nothing: it is stuck */
    if (relay->out->len > GW_RELAY_MAX_OUT) {
        gw_relay_end(relay, "the gateway that holds the device took nothing for too long");
        return;
    }
    n = gw_link_stream_write(relay->stream, relay->out->data, relay->out->len);
    if (n > 0)
        g_byte_array_remove_range(relay->out, 0, (guint)n);
    gw_link_stream_flush(relay->stream);
}

static void
gw_relay_update_watch(GwRelay *relay)
{
    GIOCondition condition = G_IO_HUP | G_IO_ERR;

    if (relay->watch == NULL)
        return;
    if (relay->to_qemu->len > 0)
        condition |= G_IO_OUT;
    /* QEMU's bytes are read once a stream took the earlier ones */
    if (relay->opened && relay->out->len == 0)
        condition |= G_IO_IN;
    gw_fd_watch_set_condition(relay->watch, condition);
}

/* How many of the bytes written to QEMU it has read; sends CONSUMED (or
 * @type) when that changed, or always for an ANSWER. */
static void
gw_relay_report(GwRelay *relay, GwRelayRecordType type)
{
    guint64 unread;
    guint64 read = relay->reported;

    if (!relay->qemu_gone && gw_handover_peer_unread(relay->fd, &unread, NULL) &&
        unread <= relay->delivered)
        read = relay->delivered - unread;
    if (read == relay->reported && type == GW_RELAY_RECORD_CONSUMED)
        return;
    relay->reported = MAX(read, relay->reported);
    gw_relay_wire_put_u64(relay->out, type, relay->reported);
}

static gboolean
gw_relay_sample(gpointer data)
{
    GwRelay *relay = data;

    gw_relay_report(relay, GW_RELAY_RECORD_CONSUMED);
    gw_relay_flush_out(relay);
    gw_relay_update_watch(relay);
    if (relay->reported < relay->delivered)
        return G_SOURCE_CONTINUE;
    g_clear_pointer(&relay->sampler, g_source_unref);
    return G_SOURCE_REMOVE;
}

static void
gw_relay_write_qemu(GwRelay *relay)
{
    while (relay->to_qemu->len > 0) {
        ssize_t n =
            send(relay->fd, relay->to_qemu->data, relay->to_qemu->len, MSG_DONTWAIT | MSG_NOSIGNAL);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            break; /* full, or QEMU left: its read side tells */
        g_byte_array_remove_range(relay->to_qemu, 0, (guint)n);
        relay->delivered += (guint64)n;
    }
    if (relay->reported < relay->delivered && relay->sampler == NULL) {
        relay->sampler = g_timeout_source_new(GW_HANDOVER_SAMPLE_MS);
        g_source_set_callback(relay->sampler, gw_relay_sample, relay, NULL);
        g_source_attach(relay->sampler, g_main_context_get_thread_default());
    }
}

/* Reads what QEMU wrote (at most one DATA record; @all: everything that
 * waits). FALSE when QEMU's connection ended. */
static gboolean
gw_relay_read_qemu(GwRelay *relay, gboolean all)
{
    guint8 buf[GW_RELAY_WIRE_MAX_DATA];

    /* what it read before it wrote goes first */
    gw_relay_report(relay, GW_RELAY_RECORD_CONSUMED);
    do {
        ssize_t n = recv(relay->fd, buf, sizeof(buf), MSG_DONTWAIT);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            break;
        if (n <= 0) {
            gw_relay_flush_out(relay);
            gw_relay_qemu_gone(relay, n == 0 ? "the VM's QEMU closed its connection"
                                             : "the VM's QEMU's connection failed");
            return FALSE;
        }
        gw_relay_wire_put_data(relay->out, buf, (gsize)n);
    } while (all);
    gw_relay_flush_out(relay);
    return TRUE;
}

static gboolean
gw_relay_record(GwRelay *relay, const GwRelayRecord *record, GError **error)
{
    g_autofree gchar *name = NULL;

    switch (record->type) {
    case GW_RELAY_RECORD_DATA:
        if (relay->qemu_gone)
            return TRUE;
        if (relay->to_qemu->len + record->length > GW_RELAY_MAX_TO_QEMU) {
            g_set_error(error, G_IO_ERROR, G_IO_ERROR_INVALID_DATA,
                        "migration relay stream: more than %u bytes sent ahead of the VM's QEMU",
                        GW_RELAY_MAX_TO_QEMU);
            return FALSE;
        }
        g_byte_array_append(relay->to_qemu, record->payload, record->length);
        gw_relay_write_qemu(relay);
        return TRUE;
    case GW_RELAY_RECORD_QUERY:
        /* everything QEMU wrote, then what it read */
        if (!relay->qemu_gone && !gw_relay_read_qemu(relay, TRUE))
            return TRUE;
        gw_relay_report(relay, GW_RELAY_RECORD_ANSWER);
        gw_relay_flush_out(relay);
        return TRUE;
    case GW_RELAY_RECORD_MIGRATED_IN:
    case GW_RELAY_RECORD_MIGRATED_OUT:
        name = gw_relay_record_name_text(record);
        relay->holds_device = record->type == GW_RELAY_RECORD_MIGRATED_IN;
        relay->migrated_out = record->type == GW_RELAY_RECORD_MIGRATED_OUT;
        gw_log_device(G_LOG_LEVEL_MESSAGE, NULL, relay->vm, NULL,
                      relay->holds_device
                          ? "%s: migrated in from gateway %s; the device stays on gateway %s"
                          : "%s: migrated out to gateway %s; the device stays on gateway %s",
                      relay->id, name, relay->anchor);
        if (relay->funcs->migrated != NULL)
            relay->funcs->migrated(relay, relay->holds_device, relay->anchor, name,
                                   relay->user_data);
        return TRUE;
    default:
        g_set_error(error, G_IO_ERROR, G_IO_ERROR_INVALID_DATA,
                    "migration relay stream: unexpected %s", gw_relay_record_name(record->type));
        return FALSE;
    }
}

static void
gw_relay_readable(GwLinkStream *stream, gpointer user_data)
{
    GwRelay *relay = user_data;
    guint8 buf[GW_RELAY_WIRE_MAX_DATA + GW_RELAY_WIRE_HEADER_LEN];
    g_autoptr(GError) error = NULL;
    gssize n;

    while (!relay->ended && stream != NULL &&
           (n = gw_link_stream_read(stream, buf, sizeof(buf))) > 0) {
        gsize pos = 0;
        while (pos < (gsize)n && !relay->ended) {
            GwRelayRecord record;
            gsize used;
            GwRelayDecodeResult result = gw_relay_decoder_feed(
                relay->decoder, buf + pos, (gsize)n - pos, &used, &record, &error);
            pos += used;
            if (result == GW_RELAY_DECODE_ERROR ||
                (result == GW_RELAY_DECODE_RECORD && !gw_relay_record(relay, &record, &error))) {
                gw_log_device(G_LOG_LEVEL_WARNING, NULL, relay->vm, NULL,
                              "migration relay of %s: gateway %s: %s", relay->id, relay->anchor,
                              error->message);
                gw_relay_end(relay, error->message);
                return;
            }
        }
    }
    gw_relay_update_watch(relay);
}

static void
gw_relay_writable(GwLinkStream *stream, gpointer user_data)
{
    GwRelay *relay = user_data;

    gw_relay_flush_out(relay);
    gw_relay_update_watch(relay);
}

static void
gw_relay_opened(GwLinkStream *stream, gpointer user_data)
{
    GwRelay *relay = user_data;

    relay->opened = TRUE;
    relay->anchor = g_strdup(gw_link_get_peer(gw_link_stream_get_link(stream)));
    gw_log_device(G_LOG_LEVEL_MESSAGE, NULL, relay->vm, NULL,
                  "migration relay of %s: gateway %s holds the device; relaying the VM's QEMU "
                  "to it",
                  relay->id, relay->anchor);
    gw_relay_update_watch(relay);
}

static void
gw_relay_stream_closed(GwLinkStream *stream, const gchar *reason, gpointer user_data)
{
    GwRelay *relay = user_data;

    /* what the anchor sent before its end (its last records) first */
    relay->stream = NULL;
    if (relay->opened)
        gw_relay_readable(stream, relay);
    if (relay->ended)
        return;
    if (!relay->opened) {
        /* refused: the next migration peer may hold the device */
        gw_relay_open_next(relay, reason);
        return;
    }
    gw_relay_end(relay, reason);
}

static void
gw_relay_open_next(GwRelay *relay, const gchar *reason)
{
    static const GwLinkStreamCallbacks callbacks = {
        .opened = gw_relay_opened,
        .closed = gw_relay_stream_closed,
        .readable = gw_relay_readable,
        .writable = gw_relay_writable,
    };

    relay->stream =
        relay->funcs->open(relay->id, relay->attempt++, &callbacks, relay, relay->user_data);
    if (relay->stream == NULL) {
        g_autofree gchar *why =
            g_strdup_printf("no migration peer holds the device (%s)",
                            reason != NULL ? reason : "no migration peer is configured or linked");
        gw_relay_end(relay, why);
    }
}

static void
gw_relay_qemu_ready(int fd, GIOCondition revents, gpointer data)
{
    GwRelay *relay = data;

    if (revents & G_IO_OUT) {
        gw_relay_write_qemu(relay);
        gw_relay_readable(relay->stream, relay);
        if (relay->ended || relay->qemu_gone)
            return;
    }
    if (revents & G_IO_IN) {
        if (!gw_relay_read_qemu(relay, FALSE))
            return;
    } else if (revents & (G_IO_HUP | G_IO_ERR)) {
        gw_relay_qemu_gone(relay, "the VM's QEMU closed its connection");
        return;
    }
    gw_relay_update_watch(relay);
}

GwRelay *
gw_relay_new(GSocketConnection *qemu, const gchar *vm, const gchar *file, const GwRelayFuncs *funcs,
             gpointer user_data)
{
    GwRelay *relay = g_new0(GwRelay, 1);
    GSocket *socket = g_socket_connection_get_socket(qemu);

    relay->qemu = g_object_ref(qemu);
    relay->fd = g_socket_get_fd(socket);
    g_socket_set_blocking(socket, FALSE);
    relay->vm = g_strdup(vm);
    relay->id = g_strconcat(GW_RELAY_STREAM_PREFIX, vm, "/", file, NULL);
    relay->funcs = funcs;
    relay->user_data = user_data;
    relay->decoder = gw_relay_decoder_new(GW_RELAY_END_RELAY);
    relay->out = g_byte_array_new();
    relay->to_qemu = g_byte_array_new();
    relay->watch = gw_fd_watch_new(g_main_context_get_thread_default(), "usbgw-relay", relay->fd,
                                   G_IO_HUP | G_IO_ERR, gw_relay_qemu_ready, relay);
    gw_relay_open_next(relay, NULL);
    return relay;
}

void
gw_relay_free(GwRelay *relay)
{
    if (relay == NULL)
        return;
    g_clear_pointer(&relay->watch, gw_fd_watch_free);
    if (relay->sampler != NULL) {
        g_source_destroy(relay->sampler);
        g_source_unref(relay->sampler);
    }
    if (relay->linger != 0)
        g_source_remove(relay->linger);
    if (relay->stream != NULL)
        gw_link_stream_close(relay->stream, "the relay closed");
    g_io_stream_close(G_IO_STREAM(relay->qemu), NULL, NULL);
    g_object_unref(relay->qemu);
    gw_relay_decoder_free(relay->decoder);
    g_byte_array_unref(relay->out);
    g_byte_array_unref(relay->to_qemu);
    g_free(relay->vm);
    g_free(relay->id);
    g_free(relay->anchor);
    g_free(relay);
}

const gchar *
gw_relay_get_vm(GwRelay *relay)
{
    return relay->vm;
}

const gchar *
gw_relay_get_anchor(GwRelay *relay)
{
    return relay->anchor;
}

gboolean
gw_relay_holds_device(GwRelay *relay)
{
    return relay->holds_device && !relay->ended;
}

gboolean
gw_relay_is_current(GwRelay *relay)
{
    return !relay->ended && !relay->qemu_gone && !relay->migrated_out;
}

gboolean
gw_relay_parse_stream_id(const gchar *id, gchar **vm, gchar **file)
{
    const gchar *rest, *slash;

    if (!g_str_has_prefix(id, GW_RELAY_STREAM_PREFIX))
        return FALSE;
    rest = id + strlen(GW_RELAY_STREAM_PREFIX);
    slash = strchr(rest, '/');
    if (slash == NULL || slash == rest || !g_str_has_suffix(slash + 1, ".sock") ||
        strchr(slash + 1, '/') != NULL || slash[1] == '.')
        return FALSE;
    for (const gchar *p = slash + 1; *p != '\0'; p++)
        if (!g_ascii_isalnum(*p) && *p != '.' && *p != '_' && *p != '-')
            return FALSE;
    *vm = g_strndup(rest, (gsize)(slash - rest));
    *file = g_strdup(slash + 1);
    return TRUE;
}
