/* gw_link_refuse(): REFUSE on a connection no GwLink takes (gw-link.h). */
#include "gw-link.h"

#include "gw-link-wire.h"

typedef struct {
    GIOStream *conn;           /* owned */
    GCancellable *cancellable; /* owned */
    GSource *timeout;          /* owned */
    GByteArray *frame;         /* owned */
    guint8 sink[1024];         /* what the refused peer still sends, dropped */
} GwLinkRefusal;

static void
gw_link_refusal_finish(GwLinkRefusal *r)
{
    g_source_destroy(r->timeout);
    g_source_unref(r->timeout);
    g_io_stream_close_async(r->conn, G_PRIORITY_DEFAULT, NULL, NULL, NULL);
    g_object_unref(r->conn);
    g_object_unref(r->cancellable);
    g_byte_array_unref(r->frame);
    g_free(r);
}

static gboolean
gw_link_refusal_timeout_cb(gpointer user_data)
{
    GwLinkRefusal *r = user_data;
    g_cancellable_cancel(r->cancellable);
    return G_SOURCE_REMOVE;
}

/* Reads until the peer closes: closing with unread input would reset the
 * connection and could destroy the REFUSE before the peer read it. */
static void
gw_link_refusal_read_cb(GObject *source, GAsyncResult *result, gpointer user_data)
{
    GwLinkRefusal *r = user_data;
    gssize n = g_input_stream_read_finish(G_INPUT_STREAM(source), result, NULL);

    if (n <= 0) {
        gw_link_refusal_finish(r);
        return;
    }
    g_input_stream_read_async(G_INPUT_STREAM(source), r->sink, sizeof(r->sink), G_PRIORITY_DEFAULT,
                              r->cancellable, gw_link_refusal_read_cb, r);
}

static void
gw_link_refusal_written_cb(GObject *source, GAsyncResult *result, gpointer user_data)
{
    GwLinkRefusal *r = user_data;

    if (!g_output_stream_write_all_finish(G_OUTPUT_STREAM(source), result, NULL, NULL)) {
        gw_link_refusal_finish(r);
        return;
    }
    /* the peer sees the end after the REFUSE */
    if (G_IS_SOCKET_CONNECTION(r->conn))
        (void)g_socket_shutdown(g_socket_connection_get_socket(G_SOCKET_CONNECTION(r->conn)), FALSE,
                                TRUE, NULL);
    g_input_stream_read_async(g_io_stream_get_input_stream(r->conn), r->sink, sizeof(r->sink),
                              G_PRIORITY_DEFAULT, r->cancellable, gw_link_refusal_read_cb, r);
}

void
gw_link_refuse(GIOStream *connection, const gchar *reason, guint timeout_ms)
{
    GwLinkRefusal *r;

    g_return_if_fail(G_IS_IO_STREAM(connection));
    r = g_new0(GwLinkRefusal, 1);
    r->conn = g_object_ref(connection);
    r->cancellable = g_cancellable_new();
    r->frame = g_byte_array_new();
    gw_link_wire_put_refuse(r->frame, reason);
    r->timeout = g_timeout_source_new(timeout_ms);
    g_source_set_name(r->timeout, "usbgw-link-refuse");
    g_source_set_callback(r->timeout, gw_link_refusal_timeout_cb, r, NULL);
    g_source_attach(r->timeout, g_main_context_get_thread_default());
    g_output_stream_write_all_async(g_io_stream_get_output_stream(connection), r->frame->data,
                                    r->frame->len, G_PRIORITY_DEFAULT, r->cancellable,
                                    gw_link_refusal_written_cb, r);
}
