/* Control socket transport: framing, limits, credentials, subscriptions. */
#include "gw-control.h"

#include <errno.h>
#include <fcntl.h>
#include <gio/gunixsocketaddress.h>
#include <glib/gstdio.h>
#include <grp.h>
#include <pwd.h>
#include <string.h>
#include <sys/stat.h>

/* The admin group; its members may send every command. */
#define GW_CONTROL_GROUP "usbgw"
/* Bytes read from a client per read call. */
#define GW_CONTROL_READ_CHUNK 4096
/* After refusing an oversized request, read and drop at most this much
 * more before closing, so the client can read the error reply (closing a
 * unix socket with unread data resets it, and the reply is lost). */
#define GW_CONTROL_DISCARD_MAX (1024 * 1024)
/* Internal marker member on a reply that asks for a subscription. */
#define GW_CONTROL_SUBSCRIBE_MARK "__subscribe"

typedef struct _GwControlConn GwControlConn;

struct _GwControl {
    gchar *socket_path;      /* owned */
    GSocketService *service; /* owned */
    GwControlHandler handler;
    gpointer user_data;
    GList *clients; /* GwControlConn, owned */
};

struct _GwControlConn {
    GwControl *control;            /* borrowed */
    GSocketConnection *connection; /* owned */
    GCancellable *cancellable;     /* owned */
    GByteArray *buffer;            /* owned: bytes read, not yet a full line */
    guint8 chunk[GW_CONTROL_READ_CHUNK];
    GwControlPeer peer;
    gboolean subscribed;
    gboolean closing;
    gsize discard; /* after a refused request: bytes still read and dropped */
};

JsonNode *
gw_control_reply_ok(JsonNode *result)
{
    g_autoptr(JsonObject) obj = json_object_new();
    json_object_set_boolean_member(obj, "ok", TRUE);
    json_object_set_member(
        obj, "result",
        result != NULL ? result : json_node_init_object(json_node_alloc(), json_object_new()));
    return json_node_init_object(json_node_alloc(), obj);
}

JsonNode *
gw_control_reply_error(const gchar *code, const gchar *format, ...)
{
    g_autoptr(JsonObject) obj = json_object_new();
    g_autoptr(JsonObject) err = json_object_new();
    g_autofree gchar *message = NULL;
    va_list args;

    va_start(args, format);
    message = g_strdup_vprintf(format, args);
    va_end(args);
    json_object_set_string_member(err, "code", code);
    json_object_set_string_member(err, "message", message);
    json_object_set_boolean_member(obj, "ok", FALSE);
    json_object_set_object_member(obj, "error", g_steal_pointer(&err));
    return json_node_init_object(json_node_alloc(), obj);
}

void
gw_control_reply_set_subscribe(JsonNode *reply)
{
    json_object_set_boolean_member(json_node_get_object(reply), GW_CONTROL_SUBSCRIBE_MARK, TRUE);
}

/* uid 0, or uid whose user is a member of the admin group (primary or
 * supplementary). */
static gboolean
gw_control_is_admin(uid_t uid)
{
    struct group *grp;
    struct passwd *pw;

    if (uid == 0)
        return TRUE;
    grp = getgrnam(GW_CONTROL_GROUP);
    pw = getpwuid(uid);
    if (grp == NULL || pw == NULL)
        return FALSE;
    if (pw->pw_gid == grp->gr_gid)
        return TRUE;
    for (gchar **member = grp->gr_mem; member != NULL && *member != NULL; member++) {
        if (g_strcmp0(*member, pw->pw_name) == 0)
            return TRUE;
    }
    return FALSE;
}

static void
gw_control_conn_free(GwControlConn *client)
{
    g_cancellable_cancel(client->cancellable);
    g_object_unref(client->cancellable);
    g_io_stream_close(G_IO_STREAM(client->connection), NULL, NULL);
    g_object_unref(client->connection);
    g_byte_array_unref(client->buffer);
    g_free(client);
}

static void
gw_control_conn_close(GwControlConn *client)
{
    if (client->closing)
        return;
    client->closing = TRUE;
    client->control->clients = g_list_remove(client->control->clients, client);
    /* a pending read completes with CANCELLED and frees the client */
    g_cancellable_cancel(client->cancellable);
}

/* Writes one JSON line without blocking the main loop. Replies and events
 * are far smaller than a unix socket's send buffer; a client that lets
 * them pile up (never reads) is dropped rather than waited for. */
static gboolean
gw_control_conn_send(GwControlConn *client, JsonNode *node)
{
    g_autoptr(JsonGenerator) generator = json_generator_new();
    g_autofree gchar *text = NULL;
    GSocket *socket = g_socket_connection_get_socket(client->connection);
    g_autoptr(GError) error = NULL;
    gsize len;
    gsize written = 0;

    json_generator_set_root(generator, node);
    text = json_generator_to_data(generator, &len);
    text = g_realloc(text, len + 2);
    text[len] = '\n';
    text[len + 1] = '\0';
    while (written < len + 1) {
        gssize n = g_socket_send_with_blocking(socket, text + written, len + 1 - written, FALSE,
                                               NULL, &error);
        if (n < 0) {
            g_message("control: dropping a client (uid %u): %s", (guint)client->peer.uid,
                      error->message);
            return FALSE;
        }
        written += (gsize)n;
    }
    return TRUE;
}

static void
gw_control_conn_handle_line(GwControlConn *client, const gchar *line, gsize len)
{
    g_autoptr(JsonParser) parser = json_parser_new_immutable();
    g_autoptr(GError) error = NULL;
    g_autoptr(JsonNode) reply = NULL;
    JsonNode *root;
    JsonObject *request;
    JsonNode *id = NULL;

    if (!json_parser_load_from_data(parser, line, (gssize)len, &error)) {
        reply = gw_control_reply_error("bad-request", "request is not JSON: %s", error->message);
    } else {
        root = json_parser_get_root(parser);
        if (root == NULL || !JSON_NODE_HOLDS_OBJECT(root)) {
            reply = gw_control_reply_error("bad-request", "request must be a JSON object");
        } else {
            request = json_node_get_object(root);
            id = json_object_get_member(request, "id");
            if (!json_object_has_member(request, "command") ||
                json_node_get_value_type(json_object_get_member(request, "command")) !=
                    G_TYPE_STRING)
                reply = gw_control_reply_error("bad-request",
                                               "request needs a string member \"command\"");
            else
                reply =
                    client->control->handler(request, &client->peer, client->control->user_data);
        }
    }
    if (reply == NULL)
        reply = gw_control_reply_error("internal", "no reply");
    if (id != NULL)
        json_object_set_member(json_node_get_object(reply), "id", json_node_copy(id));
    if (json_object_has_member(json_node_get_object(reply), GW_CONTROL_SUBSCRIBE_MARK)) {
        json_object_remove_member(json_node_get_object(reply), GW_CONTROL_SUBSCRIBE_MARK);
        client->subscribed = TRUE;
    }
    if (!gw_control_conn_send(client, reply))
        gw_control_conn_close(client);
}

static void gw_control_conn_read(GwControlConn *client);

static void
gw_control_conn_read_cb(GObject *source, GAsyncResult *result, gpointer user_data)
{
    GwControlConn *client = user_data;
    g_autoptr(GError) error = NULL;
    gssize n = g_input_stream_read_finish(G_INPUT_STREAM(source), result, &error);
    guint8 *nl;

    if (client->closing || n <= 0) {
        if (!client->closing)
            gw_control_conn_close(client);
        gw_control_conn_free(client);
        return;
    }
    if (client->discard > 0) {
        client->discard = (gsize)n < client->discard ? client->discard - (gsize)n : 0;
        if (client->discard == 0) {
            gw_control_conn_close(client);
            gw_control_conn_free(client);
            return;
        }
        gw_control_conn_read(client);
        return;
    }
    g_byte_array_append(client->buffer, client->chunk, (guint)n);
    while (!client->closing &&
           (nl = memchr(client->buffer->data, '\n', client->buffer->len)) != NULL) {
        gsize len = (gsize)(nl - client->buffer->data);
        if (len > GW_CONTROL_MAX_LINE)
            break;
        if (len > 0 && memchr(client->buffer->data, '\0', len) != NULL) {
            g_autoptr(JsonNode) reply =
                gw_control_reply_error("bad-request", "request contains a NUL byte");
            gw_control_conn_send(client, reply);
            gw_control_conn_close(client);
            break;
        }
        if (len > 0)
            gw_control_conn_handle_line(client, (const gchar *)client->buffer->data, len);
        g_byte_array_remove_range(client->buffer, 0, (guint)len + 1);
    }
    if (!client->closing && client->buffer->len > GW_CONTROL_MAX_LINE) {
        g_autoptr(JsonNode) reply = gw_control_reply_error(
            "bad-request", "request longer than %d bytes", GW_CONTROL_MAX_LINE);
        if (gw_control_conn_send(client, reply)) {
            g_socket_shutdown(g_socket_connection_get_socket(client->connection), FALSE, TRUE,
                              NULL);
            g_byte_array_set_size(client->buffer, 0);
            client->discard = GW_CONTROL_DISCARD_MAX;
        } else {
            gw_control_conn_close(client);
        }
    }
    if (client->closing) {
        gw_control_conn_free(client);
        return;
    }
    gw_control_conn_read(client);
}

static void
gw_control_conn_read(GwControlConn *client)
{
    GInputStream *in = g_io_stream_get_input_stream(G_IO_STREAM(client->connection));
    g_input_stream_read_async(in, client->chunk, sizeof(client->chunk), G_PRIORITY_DEFAULT,
                              client->cancellable, gw_control_conn_read_cb, client);
}

static gboolean
gw_control_incoming(GSocketService *service, GSocketConnection *connection, GObject *source,
                    gpointer user_data)
{
    GwControl *control = user_data;
    GSocket *socket = g_socket_connection_get_socket(connection);
    g_autoptr(GCredentials) creds = NULL;
    g_autoptr(GError) error = NULL;
    GwControlConn *client;

    if (g_list_length(control->clients) >= GW_CONTROL_MAX_CLIENTS) {
        g_warning("control: refusing a connection: %d clients already", GW_CONTROL_MAX_CLIENTS);
        g_io_stream_close(G_IO_STREAM(connection), NULL, NULL);
        return TRUE;
    }
    creds = g_socket_get_credentials(socket, &error);
    if (creds == NULL) {
        g_warning("control: no peer credentials, refusing: %s", error->message);
        g_io_stream_close(G_IO_STREAM(connection), NULL, NULL);
        return TRUE;
    }
    client = g_new0(GwControlConn, 1);
    client->control = control;
    client->connection = g_object_ref(connection);
    client->cancellable = g_cancellable_new();
    client->buffer = g_byte_array_new();
    client->peer.uid = g_credentials_get_unix_user(creds, NULL);
    client->peer.pid = g_credentials_get_unix_pid(creds, NULL);
    client->peer.admin = gw_control_is_admin(client->peer.uid);
    control->clients = g_list_prepend(control->clients, client);
    gw_control_conn_read(client);
    return TRUE;
}

GwControl *
gw_control_new(const gchar *socket_path, GwControlHandler handler, gpointer user_data,
               GError **error)
{
    g_autoptr(GwControl) control = g_new0(GwControl, 1);
    g_autoptr(GSocketAddress) address = g_unix_socket_address_new(socket_path);
    g_autofree gchar *dir = g_path_get_dirname(socket_path);

    control->socket_path = g_strdup(socket_path);
    control->handler = handler;
    control->user_data = user_data;
    if (g_mkdir_with_parents(dir, 0755) != 0) {
        int saved = errno;
        g_set_error(error, G_IO_ERROR, g_io_error_from_errno(saved), "cannot create %s: %s", dir,
                    g_strerror(saved));
        return NULL;
    }
    g_unlink(socket_path);
    control->service = g_socket_service_new();
    if (!g_socket_listener_add_address(G_SOCKET_LISTENER(control->service), address,
                                       G_SOCKET_TYPE_STREAM, G_SOCKET_PROTOCOL_DEFAULT, NULL, NULL,
                                       error)) {
        g_prefix_error(error, "cannot listen on %s: ", socket_path);
        return NULL;
    }
    /* everyone may connect and ask for status; commands check credentials */
    if (fchmodat(AT_FDCWD, socket_path, 0666, AT_SYMLINK_NOFOLLOW) != 0)
        g_warning("cannot chmod %s: %s", socket_path, g_strerror(errno));
    g_signal_connect(control->service, "incoming", G_CALLBACK(gw_control_incoming), control);
    g_socket_service_start(control->service);
    return g_steal_pointer(&control);
}

void
gw_control_broadcast(GwControl *control, JsonNode *event)
{
    GList *next;
    for (GList *l = control->clients; l != NULL; l = next) {
        GwControlConn *client = l->data;
        next = l->next;
        if (client->subscribed && !gw_control_conn_send(client, event))
            gw_control_conn_close(client);
    }
}

void
gw_control_free(GwControl *control)
{
    if (control == NULL)
        return;
    if (control->service != NULL) {
        g_socket_service_stop(control->service);
        g_socket_listener_close(G_SOCKET_LISTENER(control->service));
        g_signal_handlers_disconnect_by_data(control->service, control);
        g_object_unref(control->service);
        g_unlink(control->socket_path);
    }
    /* pending reads finish with CANCELLED on the next iterations and free
     * their clients; detach them from us first */
    while (control->clients != NULL)
        gw_control_conn_close(control->clients->data);
    while (g_main_context_iteration(NULL, FALSE))
        ;
    g_free(control->socket_path);
    g_free(control);
}
