/* GwEtcdWatch (gw-etcd.h): one POST to /v3/watch whose answer is a stream
 * of JSON lines, read as they come and cut by GwEtcdLineBuffer; when the
 * stream breaks, a new one on the next endpoint from the revision after
 * the last event delivered. */
#include <string.h>

#include "gw-etcd-json.h"
#include "gw-etcd-private.h"

/* Bytes asked for per read of the stream. */
#define GW_ETCD_WATCH_READ_CHUNK 16384

struct _GwEtcdWatch {
    gint refs;     /* the owner's, and one per read or send in flight */
    GwEtcd *etcd;  /* owned ref */
    gchar *prefix; /* owned */
    gint64 next_revision;
    GwEtcdWatchFunc func;
    gpointer user_data;
    GCancellable *cancellable; /* owned: cancelled by _free() */
    SoupMessage *msg;          /* owned, nullable: the current stream's request */
    GInputStream *stream;      /* owned, nullable: the current stream */
    GwEtcdLineBuffer lines;
    guint index;         /* the current stream's endpoint */
    guint failures;      /* endpoints that failed in a row */
    gboolean created;    /* etcd confirmed the watch on the current stream */
    gboolean http_error; /* the current stream's status was not 200 */
    gboolean ended;      /* the last call was made, or _free() */
};

static void gw_etcd_watch_start(GwEtcdWatch *watch);

static GwEtcdWatch *
gw_etcd_watch_ref(GwEtcdWatch *watch)
{
    watch->refs++;
    return watch;
}

static void
gw_etcd_watch_unref(GwEtcdWatch *watch)
{
    if (--watch->refs > 0)
        return;
    g_clear_object(&watch->msg);
    g_clear_object(&watch->stream);
    gw_etcd_line_buffer_clear(&watch->lines);
    g_object_unref(watch->cancellable);
    g_object_unref(watch->etcd);
    g_free(watch->prefix);
    g_free(watch);
}

static const gchar *
gw_etcd_watch_endpoint(GwEtcdWatch *watch)
{
    return gw_etcd_get_endpoint_at(watch->etcd, watch->index);
}

/* The last call: @error (taken), named. */
static void
gw_etcd_watch_end(GwEtcdWatch *watch, GError *error)
{
    if (watch->ended) {
        g_error_free(error);
        return;
    }
    watch->ended = TRUE;
    g_cancellable_cancel(watch->cancellable);
    g_prefix_error(&error, "etcd watch of \"%s\" at %s: ", watch->prefix,
                   gw_etcd_watch_endpoint(watch));
    watch->func(watch, NULL, error, watch->user_data);
    g_error_free(error);
}

/* The stream broke or the member cannot serve (@error, taken): a new
 * stream on the next endpoint, or the end when every one failed in a
 * row. */
static void
gw_etcd_watch_next(GwEtcdWatch *watch, GError *error)
{
    guint n = gw_etcd_get_n_endpoints(watch->etcd);

    if (watch->ended) {
        g_error_free(error);
        return;
    }
    watch->failures = watch->created ? 1 : watch->failures + 1;
    g_debug("etcd watch of \"%s\" at %s: %s; from revision %" G_GINT64_FORMAT " on the next "
            "endpoint",
            watch->prefix, gw_etcd_watch_endpoint(watch), error->message, watch->next_revision);
    gw_etcd_endpoint_failed(watch->etcd, watch->index, error);
    if (watch->failures >= n) {
        g_prefix_error(&error, "no endpoint answered (%u tried); last: ", watch->failures);
        error->domain = GW_ETCD_ERROR;
        error->code = GW_ETCD_ERROR_UNREACHABLE;
        gw_etcd_watch_end(watch, error);
        return;
    }
    g_error_free(error);
    watch->index = (watch->index + 1) % n;
    gw_etcd_watch_start(watch);
}

/* One line: events delivered, or the watch's confirmation, or its end.
 * FALSE when the stream is done with (ended or moved on). */
static gboolean
gw_etcd_watch_line(GwEtcdWatch *watch, GBytes *line)
{
    g_autoptr(GError) error = NULL;
    g_autoptr(JsonNode) root = NULL;
    GwEtcdWatchResponse response;
    gint grpc_code = -1;
    gsize len = 0;
    const gchar *data = g_bytes_get_data(line, &len);

    root = gw_etcd_json_parse(data, len, &grpc_code, &error);
    if (root == NULL) {
        if (grpc_code == GW_ETCD_GRPC_UNAVAILABLE)
            gw_etcd_watch_next(watch, g_steal_pointer(&error));
        else
            gw_etcd_watch_end(watch, g_steal_pointer(&error));
        return FALSE;
    }
    if (!gw_etcd_json_parse_watch(json_node_get_object(root), &response, &error)) {
        gw_etcd_watch_end(watch, g_steal_pointer(&error));
        return FALSE;
    }
    if (response.canceled) {
        if (response.compact_revision > 0)
            error = g_error_new(GW_ETCD_ERROR, GW_ETCD_ERROR_COMPACTED,
                                "revision %" G_GINT64_FORMAT
                                " was compacted (up to %" G_GINT64_FORMAT ")",
                                watch->next_revision, response.compact_revision);
        else
            error = g_error_new(
                GW_ETCD_ERROR, GW_ETCD_ERROR_WATCH_CANCELED, "cancelled by etcd: %s",
                response.cancel_reason != NULL ? response.cancel_reason : "no reason given");
        gw_etcd_watch_response_clear(&response);
        gw_etcd_watch_end(watch, g_steal_pointer(&error));
        return FALSE;
    }
    if (response.created && !watch->created) {
        watch->created = TRUE;
        watch->failures = 0;
        gw_etcd_endpoint_answered(watch->etcd, watch->index);
    }
    if (response.events->len > 0) {
        GwEtcdEvent *last = g_ptr_array_index(response.events, response.events->len - 1);
        watch->next_revision = MAX(watch->next_revision, last->kv->mod_revision + 1);
        watch->func(watch, response.events, NULL, watch->user_data);
    }
    gw_etcd_watch_response_clear(&response);
    return !watch->ended;
}

static void
gw_etcd_watch_read_cb(GObject *source, GAsyncResult *result, gpointer user_data)
{
    GwEtcdWatch *watch = user_data;
    GError *error = NULL;
    g_autoptr(GBytes) bytes =
        g_input_stream_read_bytes_finish(G_INPUT_STREAM(source), result, &error);
    gboolean go_on = TRUE;

    /* a read of a stream given up on (a new stream is on its way) */
    if (watch->ended || G_INPUT_STREAM(source) != watch->stream) {
        g_clear_error(&error);
        gw_etcd_watch_unref(watch);
        return;
    }
    if (bytes == NULL) {
        gw_etcd_watch_next(watch, error);
        gw_etcd_watch_unref(watch);
        return;
    }
    if (g_bytes_get_size(bytes) == 0) {
        if (watch->http_error)
            gw_etcd_watch_end(watch, g_error_new(GW_ETCD_ERROR, GW_ETCD_ERROR_HTTP, "HTTP %u",
                                                 soup_message_get_status(watch->msg)));
        else
            gw_etcd_watch_next(watch, g_error_new_literal(GW_ETCD_ERROR, GW_ETCD_ERROR_UNREACHABLE,
                                                          "the stream ended"));
        gw_etcd_watch_unref(watch);
        return;
    }
    if (!gw_etcd_line_buffer_push(&watch->lines, g_bytes_get_data(bytes, NULL),
                                  g_bytes_get_size(bytes), &error)) {
        gw_etcd_watch_end(watch, error);
        gw_etcd_watch_unref(watch);
        return;
    }
    while (go_on) {
        g_autoptr(GBytes) line = gw_etcd_line_buffer_pop(&watch->lines);
        if (line == NULL)
            break;
        go_on = gw_etcd_watch_line(watch, line);
    }
    if (go_on)
        g_input_stream_read_bytes_async(watch->stream, GW_ETCD_WATCH_READ_CHUNK, G_PRIORITY_DEFAULT,
                                        watch->cancellable, gw_etcd_watch_read_cb,
                                        gw_etcd_watch_ref(watch));
    gw_etcd_watch_unref(watch);
}

static void
gw_etcd_watch_sent_cb(GObject *source, GAsyncResult *result, gpointer user_data)
{
    GwEtcdWatch *watch = user_data;
    GError *error = NULL;
    GInputStream *stream = soup_session_send_finish(SOUP_SESSION(source), result, &error);

    if (watch->ended) {
        g_clear_error(&error);
        g_clear_object(&stream);
        gw_etcd_watch_unref(watch);
        return;
    }
    if (stream == NULL) {
        gw_etcd_watch_next(watch, gw_etcd_explain_failure(watch->etcd, watch->msg, error));
        gw_etcd_watch_unref(watch);
        return;
    }
    watch->stream = stream;
    /* etcd's error answer comes as a line too; the status decides only when
     * there is none */
    watch->http_error = soup_message_get_status(watch->msg) != SOUP_STATUS_OK;
    g_input_stream_read_bytes_async(watch->stream, GW_ETCD_WATCH_READ_CHUNK, G_PRIORITY_DEFAULT,
                                    watch->cancellable, gw_etcd_watch_read_cb, watch);
}

/* A new stream on watch->index from watch->next_revision. */
static void
gw_etcd_watch_start(GwEtcdWatch *watch)
{
    g_autofree gchar *url = g_strconcat(gw_etcd_watch_endpoint(watch), "/v3/watch", NULL);
    g_autofree gchar *body = gw_etcd_json_watch_request(watch->prefix, watch->next_revision);

    g_clear_object(&watch->msg);
    g_clear_object(&watch->stream);
    gw_etcd_line_buffer_clear(&watch->lines);
    gw_etcd_line_buffer_init(&watch->lines, GW_ETCD_MAX_LINE);
    watch->created = FALSE;
    watch->http_error = FALSE;
    watch->msg = soup_message_new(SOUP_METHOD_POST, url);
    if (watch->msg == NULL) {
        gw_etcd_watch_end(watch, g_error_new(GW_ETCD_ERROR, GW_ETCD_ERROR_INVALID,
                                             "cannot make a request of \"%s\"", url));
        return;
    }
    gw_etcd_prepare_message(watch->etcd, watch->msg);
    gsize len = strlen(body);
    g_autoptr(GBytes) bytes = g_bytes_new_take(g_steal_pointer(&body), len);
    soup_message_set_request_body_from_bytes(watch->msg, "application/json", bytes);
    soup_session_send_async(gw_etcd_get_stream_session(watch->etcd), watch->msg, G_PRIORITY_DEFAULT,
                            watch->cancellable, gw_etcd_watch_sent_cb, gw_etcd_watch_ref(watch));
}

GwEtcdWatch *
gw_etcd_watch_new(GwEtcd *etcd, const gchar *prefix, gint64 start_revision, GwEtcdWatchFunc func,
                  gpointer user_data)
{
    GwEtcdWatch *watch = g_new0(GwEtcdWatch, 1);

    watch->refs = 1;
    watch->etcd = g_object_ref(etcd);
    watch->prefix = g_strdup(prefix);
    watch->next_revision = MAX(start_revision, 1);
    watch->func = func;
    watch->user_data = user_data;
    watch->cancellable = g_cancellable_new();
    watch->index = gw_etcd_get_current(etcd);
    gw_etcd_line_buffer_init(&watch->lines, GW_ETCD_MAX_LINE);
    gw_etcd_watch_start(watch);
    return watch;
}

gboolean
gw_etcd_watch_is_created(GwEtcdWatch *watch)
{
    return watch->created;
}

void
gw_etcd_watch_free(GwEtcdWatch *watch)
{
    if (watch == NULL)
        return;
    watch->ended = TRUE;
    g_cancellable_cancel(watch->cancellable);
    gw_etcd_watch_unref(watch);
}
