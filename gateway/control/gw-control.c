/* Control socket transport: framing, limits, credentials, subscriptions. */
#include "gw-control.h"

#include <errno.h>
#include <fcntl.h>
#include <gio/gunixsocketaddress.h>
#include <glib/gstdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>

#include "gw-json.h"
#include "gw-users.h"

/* Bytes read from a client per read call. */
#define GW_CONTROL_READ_CHUNK 4096
/* After refusing an oversized request, read and drop at most this much
 * more before closing, so the client can read the error reply (closing a
 * unix socket with unread data resets it, and the reply is lost). */
#define GW_CONTROL_DISCARD_MAX (1024 * 1024)
/* Internal marker member on a reply that asks for a subscription. */
#define GW_CONTROL_SUBSCRIBE_MARK "__subscribe"
/* Supplementary groups read with SO_PEERGROUPS without a heap buffer. */
#define GW_CONTROL_PEER_GROUPS_INLINE 64
/* A refused connection: bytes of its request read and dropped before the
 * close, so the refusal line reaches the client (see DISCARD_MAX). */
#define GW_CONTROL_REFUSE_DRAIN (16 * 1024)
/* Refusals and idle closes are logged at most once per this many seconds
 * (a flood must not flood the log); the next line counts the others. */
#define GW_CONTROL_LOG_INTERVAL 10

typedef struct _GwControlConn GwControlConn;

/* Which connection pool a peer counts in (GwControlLimits). */
typedef enum {
    GW_CONTROL_POOL_USER,
    GW_CONTROL_POOL_ADMIN,
    GW_CONTROL_POOL_ROOT,
} GwControlPool;

struct _GwControl {
    gchar *socket_path;      /* owned */
    GSocketService *service; /* owned */
    GwControlHandler handler;
    gpointer user_data;
    GList *clients; /* GwControlConn, owned */
    GwControlLimits limits;
    gboolean has_admin_gid; /* the admin group exists */
    gid_t admin_gid;
    gint64 last_log;    /* monotonic µs of the last refusal/idle log line */
    guint logs_dropped; /* lines not logged since */
};

struct _GwControlConn {
    GwControl *control;            /* borrowed */
    GSocketConnection *connection; /* owned */
    GCancellable *cancellable;     /* owned */
    GByteArray *buffer;            /* owned: bytes read, not yet a full line */
    guint8 chunk[GW_CONTROL_READ_CHUNK];
    GwControlPeer peer;
    GwControlPool pool;
    guint idle_source; /* 0 once subscribed or closing */
    gboolean subscribed;
    gboolean closing;
    gsize discard; /* after a refused request: bytes still read and dropped */
};

JsonNode *
gw_control_reply_ok(JsonNode *result)
{
    g_autoptr(JsonObject) obj = json_object_new();
    json_object_set_boolean_member(obj, "ok", TRUE);
    json_object_set_member(obj, "result",
                           result != NULL ? result : gw_json_node_take_object(json_object_new()));
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

/* Logs a refusal or an idle close, at most once per LOG_INTERVAL. */
static void gw_control_log_limited(GwControl *control, const gchar *format, ...)
    G_GNUC_PRINTF(2, 3);

static void
gw_control_log_limited(GwControl *control, const gchar *format, ...)
{
    gint64 now = g_get_monotonic_time();
    g_autofree gchar *message = NULL;
    va_list args;

    if (control->last_log != 0 &&
        now - control->last_log < GW_CONTROL_LOG_INTERVAL * G_USEC_PER_SEC) {
        control->logs_dropped++;
        return;
    }
    va_start(args, format);
    message = g_strdup_vprintf(format, args);
    va_end(args);
    if (control->logs_dropped > 0)
        g_message("control: %s (and %u more refused or idle connections in the last %d s)", message,
                  control->logs_dropped, GW_CONTROL_LOG_INTERVAL);
    else
        g_message("control: %s", message);
    control->last_log = now;
    control->logs_dropped = 0;
}

/* Whether @gid is among the supplementary groups the peer of @fd had when
 * it connected (SO_PEERGROUPS, Linux 4.13). */
static gboolean
gw_control_peer_has_group(int fd, gid_t gid, GError **error)
{
    gid_t inline_groups[GW_CONTROL_PEER_GROUPS_INLINE];
    g_autofree gid_t *heap_groups = NULL;
    gid_t *groups = inline_groups;
    socklen_t len = sizeof(inline_groups);

    if (getsockopt(fd, SOL_SOCKET, SO_PEERGROUPS, groups, &len) != 0) {
        int saved = errno;
        if (saved == ERANGE) {
            /* @len is the size needed now */
            heap_groups = g_malloc(MAX(len, sizeof(gid_t)));
            groups = heap_groups;
            if (getsockopt(fd, SOL_SOCKET, SO_PEERGROUPS, groups, &len) == 0)
                saved = 0;
            else
                saved = errno;
        }
        if (saved != 0) {
            g_set_error(error, G_IO_ERROR, g_io_error_from_errno(saved), "SO_PEERGROUPS: %s",
                        g_strerror(saved));
            return FALSE;
        }
    }
    for (gsize i = 0; i < len / sizeof(gid_t); i++) {
        if (groups[i] == gid)
            return TRUE;
    }
    return FALSE;
}

/* uid 0, or a peer whose gid or supplementary groups at connect time hold
 * the admin group. A user name listed in /etc/group's usbgw does not
 * count by itself: the process that connects must have the group (a new
 * login, or `sg usbgw`, after usermod -aG). */
static gboolean
gw_control_peer_is_admin(GwControl *control, int fd, const GwControlPeer *peer)
{
    g_autoptr(GError) error = NULL;

    if (peer->uid == 0)
        return TRUE;
    if (!control->has_admin_gid)
        return FALSE;
    if (peer->gid == control->admin_gid)
        return TRUE;
    if (gw_control_peer_has_group(fd, control->admin_gid, &error))
        return TRUE;
    if (error != NULL)
        g_warning("control: cannot read the groups of uid %u (pid %d), not an admin: %s",
                  (guint)peer->uid, (int)peer->pid, error->message);
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
    g_clear_handle_id(&client->idle_source, g_source_remove);
    client->control->clients = g_list_remove(client->control->clients, client);
    /* a pending read completes with CANCELLED and frees the client */
    g_cancellable_cancel(client->cancellable);
}

/* Writes one JSON line without blocking the main loop. Replies and events
 * are far smaller than a unix socket's send buffer; a client that lets
 * them pile up (never reads) is dropped rather than waited for. */
static gboolean
gw_control_send_line(GSocket *socket, JsonNode *node, GError **error)
{
    g_autoptr(JsonGenerator) generator = json_generator_new();
    g_autofree gchar *text = NULL;
    gsize len;
    gsize written = 0;

    json_generator_set_root(generator, node);
    text = json_generator_to_data(generator, &len);
    text = g_realloc(text, len + 2);
    text[len] = '\n';
    text[len + 1] = '\0';
    while (written < len + 1) {
        gssize n = g_socket_send_with_blocking(socket, text + written, len + 1 - written, FALSE,
                                               NULL, error);
        if (n < 0)
            return FALSE;
        written += (gsize)n;
    }
    return TRUE;
}

static gboolean
gw_control_conn_send(GwControlConn *client, JsonNode *node)
{
    g_autoptr(GError) error = NULL;

    if (gw_control_send_line(g_socket_connection_get_socket(client->connection), node, &error))
        return TRUE;
    g_message("control: dropping a client (uid %u): %s", (guint)client->peer.uid, error->message);
    return FALSE;
}

/* No complete request line for control-idle-timeout seconds. */
static gboolean
gw_control_conn_idle(gpointer user_data)
{
    GwControlConn *client = user_data;
    GwControl *control = client->control;
    g_autoptr(JsonNode) reply = gw_control_reply_error(
        "timeout", "no complete request line within %u s (control-idle-timeout); closing",
        control->limits.idle_timeout);

    client->idle_source = 0;
    gw_control_log_limited(control, "closing an idle connection (uid %u, pid %d) after %u s",
                           (guint)client->peer.uid, (int)client->peer.pid,
                           control->limits.idle_timeout);
    /* best effort: the client may not read it */
    (void)gw_control_send_line(g_socket_connection_get_socket(client->connection), reply, NULL);
    gw_control_conn_close(client);
    return G_SOURCE_REMOVE;
}

/* (Re)starts the idle bound: a complete line came, or the connection is new. */
static void
gw_control_conn_arm_idle(GwControlConn *client)
{
    g_clear_handle_id(&client->idle_source, g_source_remove);
    if (client->closing || client->subscribed)
        return;
    client->idle_source =
        g_timeout_add_seconds(client->control->limits.idle_timeout, gw_control_conn_idle, client);
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
        gw_control_conn_arm_idle(client);
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

static GwControlPool
gw_control_pool_of(const GwControlPeer *peer)
{
    if (peer->uid == 0)
        return GW_CONTROL_POOL_ROOT;
    return peer->admin ? GW_CONTROL_POOL_ADMIN : GW_CONTROL_POOL_USER;
}

/* Why @peer may not have one more connection, or NULL. */
static gchar *
gw_control_over_limit(GwControl *control, const GwControlPeer *peer, GwControlPool pool)
{
    guint in_pool = 0;
    guint of_uid = 0;

    for (GList *l = control->clients; l != NULL; l = l->next) {
        const GwControlConn *other = l->data;
        if (other->pool != pool)
            continue;
        in_pool++;
        of_uid += other->peer.uid == peer->uid;
    }
    switch (pool) {
    case GW_CONTROL_POOL_ROOT:
        if (in_pool >= GW_CONTROL_MAX_ROOT_CLIENTS)
            return g_strdup_printf("root has %u connections open already (at most %d)", in_pool,
                                   GW_CONTROL_MAX_ROOT_CLIENTS);
        return NULL;
    case GW_CONTROL_POOL_ADMIN:
        if (in_pool >= GW_CONTROL_MAX_ADMIN_CLIENTS)
            return g_strdup_printf("members of group %s have %u connections open already (at "
                                   "most %d)",
                                   GW_CONTROL_ADMIN_GROUP, in_pool, GW_CONTROL_MAX_ADMIN_CLIENTS);
        return NULL;
    case GW_CONTROL_POOL_USER:
        if (of_uid >= control->limits.max_per_user)
            return g_strdup_printf("uid %u has %u connections open already "
                                   "(control-max-per-user=%u); close one and try again",
                                   (guint)peer->uid, of_uid, control->limits.max_per_user);
        if (in_pool >= control->limits.max_clients)
            return g_strdup_printf("users outside group %s have %u connections open already "
                                   "(control-max-clients=%u); try again later",
                                   GW_CONTROL_ADMIN_GROUP, in_pool, control->limits.max_clients);
        return NULL;
    }
    return NULL;
}

/* Sends a "busy" line and closes, without making @connection a client.
 * What the client already sent is read and dropped first, so that the
 * close does not reset the connection before the client reads why. */
static void
gw_control_refuse(GSocketConnection *connection, const gchar *reason)
{
    GSocket *socket = g_socket_connection_get_socket(connection);
    g_autoptr(JsonNode) reply = gw_control_reply_error("busy", "%s", reason);
    guint8 sink[GW_CONTROL_READ_CHUNK];
    gsize drained = 0;

    if (gw_control_send_line(socket, reply, NULL)) {
        while (drained < GW_CONTROL_REFUSE_DRAIN) {
            gssize n = g_socket_receive_with_blocking(socket, (gchar *)sink, sizeof(sink), FALSE,
                                                      NULL, NULL);
            if (n <= 0)
                break;
            drained += (gsize)n;
        }
    }
    g_io_stream_close(G_IO_STREAM(connection), NULL, NULL);
}

static gboolean
gw_control_incoming(GSocketService *service, GSocketConnection *connection, GObject *source,
                    gpointer user_data)
{
    GwControl *control = user_data;
    GSocket *socket = g_socket_connection_get_socket(connection);
    g_autoptr(GCredentials) creds = NULL;
    g_autoptr(GError) error = NULL;
    g_autofree gchar *refusal = NULL;
    const struct ucred *ucred;
    GwControlPeer peer = {0};
    GwControlPool pool;
    GwControlConn *client;

    creds = g_socket_get_credentials(socket, &error);
    ucred = creds != NULL ? g_credentials_get_native(creds, G_CREDENTIALS_TYPE_LINUX_UCRED) : NULL;
    if (ucred == NULL) {
        g_warning("control: no peer credentials, refusing: %s",
                  error != NULL ? error->message : "not SO_PEERCRED");
        g_io_stream_close(G_IO_STREAM(connection), NULL, NULL);
        return TRUE;
    }
    peer.uid = ucred->uid;
    peer.gid = ucred->gid;
    peer.pid = ucred->pid;
    peer.admin = gw_control_peer_is_admin(control, g_socket_get_fd(socket), &peer);
    pool = gw_control_pool_of(&peer);
    refusal = gw_control_over_limit(control, &peer, pool);
    if (refusal != NULL) {
        gw_control_log_limited(control, "refusing a connection from uid %u (pid %d): %s",
                               (guint)peer.uid, (int)peer.pid, refusal);
        gw_control_refuse(connection, refusal);
        return TRUE;
    }
    client = g_new0(GwControlConn, 1);
    client->control = control;
    client->connection = g_object_ref(connection);
    client->cancellable = g_cancellable_new();
    client->buffer = g_byte_array_new();
    client->peer = peer;
    client->pool = pool;
    control->clients = g_list_prepend(control->clients, client);
    gw_control_conn_arm_idle(client);
    gw_control_conn_read(client);
    return TRUE;
}

GwControl *
gw_control_new(const gchar *socket_path, const GwControlLimits *limits, GwControlHandler handler,
               gpointer user_data, GError **error)
{
    static const GwControlLimits defaults = {
        .max_clients = GW_CONTROL_DEFAULT_MAX_CLIENTS,
        .max_per_user = GW_CONTROL_DEFAULT_MAX_PER_USER,
        .idle_timeout = GW_CONTROL_DEFAULT_IDLE_TIMEOUT,
    };
    g_autoptr(GwControl) control = g_new0(GwControl, 1);
    g_autoptr(GSocketAddress) address = g_unix_socket_address_new(socket_path);
    g_autofree gchar *dir = g_path_get_dirname(socket_path);
    g_autoptr(GError) group_error = NULL;

    control->socket_path = g_strdup(socket_path);
    control->handler = handler;
    control->user_data = user_data;
    control->limits = limits != NULL ? *limits : defaults;
    control->has_admin_gid =
        gw_users_group_id(GW_CONTROL_ADMIN_GROUP, &control->admin_gid, &group_error);
    if (!control->has_admin_gid)
        g_message("control: %s; only root may send admin commands", group_error->message);
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
