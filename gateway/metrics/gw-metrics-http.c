/* The metrics HTTP listener (gw-metrics-http.h): a GSocketService that
 * counts and times connections, SoupServer for the requests on them. */
#include "gw-metrics-http.h"

#include <string.h>
#include <libsoup/soup.h>

/* One accepted connection. SoupServer holds the only reference to it; a
 * weak reference tells us when SoupServer let it go. */
typedef struct {
    GwMetricsHttp *http;           /* borrowed: the owner */
    GSocketConnection *connection; /* weak */
    GSocket *socket;               /* borrowed from @connection: the key SoupServer gives back */
    guint timeout_id;              /* closes the connection when it fires */
} GwMetricsHttpConn;

struct _GwMetricsHttp {
    GwMetrics *metrics;      /* borrowed */
    GSocketService *service; /* owned */
    SoupServer *server;      /* owned */
    GHashTable *conns;       /* GSocket (borrowed) → GwMetricsHttpConn (owned) */
    guint16 port;
};

/* ---- connections ------------------------------------------------------------ */

static gboolean
gw_metrics_http_conn_timed_out(gpointer data)
{
    GwMetricsHttpConn *conn = data;

    conn->timeout_id = 0;
    g_debug("metrics: closing a connection idle or slow for %d s", GW_METRICS_HTTP_TIMEOUT_S);
    /* SoupServer sees the end of the stream and lets the connection go */
    g_socket_shutdown(conn->socket, TRUE, TRUE, NULL);
    return G_SOURCE_REMOVE;
}

static void
gw_metrics_http_conn_arm(GwMetricsHttpConn *conn)
{
    g_clear_handle_id(&conn->timeout_id, g_source_remove);
    conn->timeout_id =
        g_timeout_add_seconds(GW_METRICS_HTTP_TIMEOUT_S, gw_metrics_http_conn_timed_out, conn);
}

static void
gw_metrics_http_conn_free(gpointer data)
{
    GwMetricsHttpConn *conn = data;
    g_clear_handle_id(&conn->timeout_id, g_source_remove);
    g_free(conn);
}

/* SoupServer dropped the connection. */
static void
gw_metrics_http_conn_gone(gpointer data, GObject *where_the_object_was)
{
    GwMetricsHttpConn *conn = data;
    g_hash_table_remove(conn->http->conns, conn->socket);
}

static gboolean
gw_metrics_http_incoming(GSocketService *service, GSocketConnection *connection,
                         GObject *source_object, gpointer user_data)
{
    GwMetricsHttp *http = user_data;
    g_autoptr(GSocketAddress) local = g_socket_connection_get_local_address(connection, NULL);
    g_autoptr(GSocketAddress) remote = g_socket_connection_get_remote_address(connection, NULL);
    g_autoptr(GError) error = NULL;
    GwMetricsHttpConn *conn;

    if (g_hash_table_size(http->conns) >= GW_METRICS_HTTP_MAX_CONNECTIONS) {
        g_debug("metrics: refused a connection (%d open)", GW_METRICS_HTTP_MAX_CONNECTIONS);
        g_io_stream_close(G_IO_STREAM(connection), NULL, NULL);
        return TRUE;
    }
    conn = g_new0(GwMetricsHttpConn, 1);
    conn->http = http;
    conn->connection = connection;
    conn->socket = g_socket_connection_get_socket(connection);
    if (!soup_server_accept_iostream(http->server, G_IO_STREAM(connection), local, remote,
                                     &error)) {
        g_debug("metrics: %s", error->message);
        g_free(conn);
        g_io_stream_close(G_IO_STREAM(connection), NULL, NULL);
        return TRUE;
    }
    g_hash_table_insert(http->conns, conn->socket, conn);
    g_object_weak_ref(G_OBJECT(connection), gw_metrics_http_conn_gone, conn);
    gw_metrics_http_conn_arm(conn);
    return TRUE;
}

static GwMetricsHttpConn *
gw_metrics_http_conn_of(GwMetricsHttp *http, SoupServerMessage *msg)
{
    GSocket *socket = soup_server_message_get_socket(msg);
    return socket != NULL ? g_hash_table_lookup(http->conns, socket) : NULL;
}

/* A whole request came: its answer must be taken within the timeout too. */
static void
gw_metrics_http_request_read(SoupServer *server, SoupServerMessage *msg, gpointer user_data)
{
    GwMetricsHttpConn *conn = gw_metrics_http_conn_of(user_data, msg);
    if (conn != NULL)
        gw_metrics_http_conn_arm(conn);
}

/* The answer went (or the request broke off): the next request must come
 * within the timeout. */
static void
gw_metrics_http_request_done(SoupServer *server, SoupServerMessage *msg, gpointer user_data)
{
    GwMetricsHttpConn *conn = gw_metrics_http_conn_of(user_data, msg);
    if (conn != NULL)
        gw_metrics_http_conn_arm(conn);
}

/* ---- requests --------------------------------------------------------------- */

static void
gw_metrics_http_refuse(SoupServerMessage *msg, guint status)
{
    soup_server_message_set_status(msg, status, NULL);
    soup_server_message_set_response(msg, "text/plain; charset=utf-8", SOUP_MEMORY_STATIC,
                                     soup_status_get_phrase(status),
                                     strlen(soup_status_get_phrase(status)));
    /* one wrong request is enough: no keep-alive for it */
    soup_message_headers_replace(soup_server_message_get_response_headers(msg), "Connection",
                                 "close");
}

/* Runs once the headers are read, before any body: a status set here is
 * the answer, and the body is never read. */
static void
gw_metrics_http_early(SoupServer *server, SoupServerMessage *msg, const char *path,
                      GHashTable *query, gpointer user_data)
{
    const gchar *method = soup_server_message_get_method(msg);
    SoupMessageHeaders *headers = soup_server_message_get_request_headers(msg);

    if (method != SOUP_METHOD_GET && method != SOUP_METHOD_HEAD) {
        gw_metrics_http_refuse(msg, SOUP_STATUS_METHOD_NOT_ALLOWED);
        soup_message_headers_replace(soup_server_message_get_response_headers(msg), "Allow",
                                     "GET, HEAD");
        return;
    }
    if (soup_message_headers_get_encoding(headers) == SOUP_ENCODING_CHUNKED ||
        soup_message_headers_get_content_length(headers) > 0) {
        gw_metrics_http_refuse(msg, SOUP_STATUS_REQUEST_ENTITY_TOO_LARGE);
        return;
    }
    if (g_strcmp0(path, GW_METRICS_HTTP_PATH) != 0)
        gw_metrics_http_refuse(msg, SOUP_STATUS_NOT_FOUND);
}

static void
gw_metrics_http_handle(SoupServer *server, SoupServerMessage *msg, const char *path,
                       GHashTable *query, gpointer user_data)
{
    GwMetricsHttp *http = user_data;
    gchar *text;

    /* the early handler answered everything else */
    if (soup_server_message_get_status(msg) != 0 && soup_server_message_get_status(msg) != 200)
        return;
    text = gw_metrics_render(http->metrics);
    soup_server_message_set_status(msg, SOUP_STATUS_OK, NULL);
    soup_server_message_set_response(msg, GW_METRICS_CONTENT_TYPE, SOUP_MEMORY_TAKE, text,
                                     strlen(text));
}

GwMetricsHttp *
gw_metrics_http_new(GwMetrics *metrics, GSocketAddress *address, GError **error)
{
    g_autoptr(GwMetricsHttp) http = g_new0(GwMetricsHttp, 1);
    g_autoptr(GSocketAddress) bound = NULL;

    http->metrics = metrics;
    http->conns =
        g_hash_table_new_full(g_direct_hash, g_direct_equal, NULL, gw_metrics_http_conn_free);
    http->server = soup_server_new("server-header", "usbgwd", NULL);
    soup_server_add_early_handler(http->server, NULL, gw_metrics_http_early, http, NULL);
    soup_server_add_handler(http->server, NULL, gw_metrics_http_handle, http, NULL);
    g_signal_connect(http->server, "request-read", G_CALLBACK(gw_metrics_http_request_read), http);
    g_signal_connect(http->server, "request-finished", G_CALLBACK(gw_metrics_http_request_done),
                     http);
    g_signal_connect(http->server, "request-aborted", G_CALLBACK(gw_metrics_http_request_done),
                     http);
    http->service = g_socket_service_new();
    if (!g_socket_listener_add_address(G_SOCKET_LISTENER(http->service), address,
                                       G_SOCKET_TYPE_STREAM, G_SOCKET_PROTOCOL_TCP, NULL, &bound,
                                       error))
        return NULL;
    http->port = g_inet_socket_address_get_port(G_INET_SOCKET_ADDRESS(bound));
    g_signal_connect(http->service, "incoming", G_CALLBACK(gw_metrics_http_incoming), http);
    g_socket_service_start(http->service);
    return g_steal_pointer(&http);
}

guint16
gw_metrics_http_get_port(GwMetricsHttp *http)
{
    return http->port;
}

guint
gw_metrics_http_get_connections(GwMetricsHttp *http)
{
    return g_hash_table_size(http->conns);
}

void
gw_metrics_http_free(GwMetricsHttp *http)
{
    GHashTableIter iter;
    gpointer value;

    if (http == NULL)
        return;
    if (http->service != NULL) {
        g_socket_service_stop(http->service);
        g_socket_listener_close(G_SOCKET_LISTENER(http->service));
        g_signal_handlers_disconnect_by_data(http->service, http);
        g_object_unref(http->service);
    }
    /* no weak notify may reach a freed table */
    g_hash_table_iter_init(&iter, http->conns);
    while (g_hash_table_iter_next(&iter, NULL, &value)) {
        GwMetricsHttpConn *conn = value;
        g_object_weak_unref(G_OBJECT(conn->connection), gw_metrics_http_conn_gone, conn);
    }
    g_hash_table_remove_all(http->conns);
    if (http->server != NULL) {
        g_signal_handlers_disconnect_by_data(http->server, http);
        soup_server_disconnect(http->server);
        g_object_unref(http->server);
    }
    g_hash_table_unref(http->conns);
    g_free(http);
}
