/* usbgw-hook ↔ usbgwd: see hook-control.h. */
#include "hook-control.h"

#include <gio/gio.h>
#include <json-glib/json-glib.h>
#include <string.h>
#include <sys/un.h>

/* Bytes asked of the socket per receive. */
#define HOOK_CONTROL_RECEIVE_CHUNK 4096
/* How long to wait before connecting again while usbgwd's listen backlog is
 * full (a non-blocking unix connect() fails with EAGAIN then). */
#define HOOK_CONTROL_BACKLOG_RETRY_US (10 * G_TIME_SPAN_MILLISECOND)
/* The op whose request lists the VM's usb-redir sockets: libvirt runs it on
 * the destination host before the incoming QEMU starts. */
#define HOOK_CONTROL_OP_MIGRATE "migrate"

G_DEFINE_QUARK(usbgw_hook_control_error, hook_control_error)

void
hook_reply_clear(HookReply *reply)
{
    reply->ok = FALSE;
    g_clear_pointer(&reply->code, g_free);
    g_clear_pointer(&reply->message, g_free);
}

gchar *
hook_control_build_request(const HookDomain *domain, const gchar *op, const gchar *sub_op)
{
    g_autoptr(JsonBuilder) builder = json_builder_new();
    g_autoptr(JsonGenerator) generator = json_generator_new();
    g_autoptr(JsonNode) root = NULL;
    /* argv strings are bytes: JSON needs UTF-8 */
    g_autofree gchar *op_utf8 = g_utf8_make_valid(op, -1);
    g_autofree gchar *sub_op_utf8 = g_utf8_make_valid(sub_op, -1);

    json_builder_begin_object(builder);
    json_builder_set_member_name(builder, "command");
    json_builder_add_string_value(builder, "hook");
    json_builder_set_member_name(builder, "domain");
    json_builder_add_string_value(builder, domain->name);
    json_builder_set_member_name(builder, "uuid");
    json_builder_add_string_value(builder, domain->uuid);
    json_builder_set_member_name(builder, "op");
    json_builder_add_string_value(builder, op_utf8);
    json_builder_set_member_name(builder, "sub_op");
    json_builder_add_string_value(builder, sub_op_utf8);
    if (strcmp(op, HOOK_CONTROL_OP_MIGRATE) == 0) {
        /* usbgwd binds these before QEMU connects to them */
        json_builder_set_member_name(builder, "sockets");
        json_builder_begin_array(builder);
        for (gchar **path = domain->sockets; path != NULL && *path != NULL; path++)
            json_builder_add_string_value(builder, *path);
        json_builder_end_array(builder);
    }
    json_builder_end_object(builder);

    root = json_builder_get_root(builder);
    json_generator_set_root(generator, root);
    /* not pretty: strings escape their newlines, so this is one line */
    return json_generator_to_data(generator, NULL);
}

static gboolean
hook_control_protocol_error(GError **error, const gchar *what)
{
    g_set_error(error, HOOK_CONTROL_ERROR, HOOK_CONTROL_ERROR_PROTOCOL, "bad reply from usbgwd: %s",
                what);
    return FALSE;
}

gboolean
hook_control_parse_reply(const gchar *line, gsize len, HookReply *reply, GError **error)
{
    g_autoptr(JsonParser) parser = json_parser_new();
    g_autoptr(GError) local_error = NULL;
    JsonNode *root;
    JsonObject *object;
    JsonNode *node;
    JsonObject *error_object;

    hook_reply_clear(reply);
    if (len > HOOK_CONTROL_MAX_LINE)
        return hook_control_protocol_error(error, "longer than 64 KiB");
    if (!json_parser_load_from_data(parser, line, (gssize)len, &local_error)) {
        g_set_error(error, HOOK_CONTROL_ERROR, HOOK_CONTROL_ERROR_PROTOCOL,
                    "bad reply from usbgwd: not JSON: %s", local_error->message);
        return FALSE;
    }
    root = json_parser_get_root(parser);
    if (root == NULL || !JSON_NODE_HOLDS_OBJECT(root))
        return hook_control_protocol_error(error, "not a JSON object");
    object = json_node_get_object(root);

    node = json_object_get_member(object, "ok");
    if (node == NULL || json_node_get_value_type(node) != G_TYPE_BOOLEAN)
        return hook_control_protocol_error(error, "no boolean \"ok\"");
    if (json_node_get_boolean(node)) {
        reply->ok = TRUE;
        return TRUE;
    }

    node = json_object_get_member(object, "error");
    if (node == NULL || !JSON_NODE_HOLDS_OBJECT(node))
        return hook_control_protocol_error(error,
                                           "\"ok\" is false but there is no \"error\" object");
    error_object = json_node_get_object(node);
    node = json_object_get_member(error_object, "code");
    if (node == NULL || json_node_get_value_type(node) != G_TYPE_STRING)
        return hook_control_protocol_error(error, "no string \"error.code\"");
    reply->code = g_strdup(json_node_get_string(node));
    node = json_object_get_member(error_object, "message");
    if (node != NULL && json_node_get_value_type(node) != G_TYPE_STRING) {
        hook_reply_clear(reply);
        return hook_control_protocol_error(error, "\"error.message\" is not a string");
    }
    reply->message = g_strdup(node != NULL ? json_node_get_string(node) : "");
    return TRUE;
}

/* Microseconds left before @deadline, or 0 with a TIMEOUT error. */
static gint64
hook_control_remaining(gint64 deadline, const gchar *waiting_for, GError **error)
{
    gint64 remaining = deadline - g_get_monotonic_time();

    if (remaining > 0)
        return remaining;
    g_set_error(error, HOOK_CONTROL_ERROR, HOOK_CONTROL_ERROR_TIMEOUT, "no %s in time",
                waiting_for);
    return 0;
}

/* Waits for @condition on @socket until @deadline. */
static gboolean
hook_control_wait(GSocket *socket, GIOCondition condition, gint64 deadline,
                  const gchar *waiting_for, GError **error)
{
    g_autoptr(GError) local_error = NULL;
    gint64 remaining = hook_control_remaining(deadline, waiting_for, error);

    if (remaining == 0)
        return FALSE;
    if (g_socket_condition_timed_wait(socket, condition, remaining, NULL, &local_error))
        return TRUE;
    if (g_error_matches(local_error, G_IO_ERROR, G_IO_ERROR_TIMED_OUT))
        g_set_error(error, HOOK_CONTROL_ERROR, HOOK_CONTROL_ERROR_TIMEOUT, "no %s in time",
                    waiting_for);
    else
        g_set_error(error, HOOK_CONTROL_ERROR, HOOK_CONTROL_ERROR_IO, "waiting for %s: %s",
                    waiting_for, local_error->message);
    return FALSE;
}

static GSocket *
hook_control_connect(const gchar *socket_path, gint64 deadline, GError **error)
{
    g_autoptr(GSocket) socket = NULL;
    g_autoptr(GSocketAddress) address = NULL;
    g_autoptr(GError) local_error = NULL;

    if (strlen(socket_path) >= sizeof(((struct sockaddr_un *)NULL)->sun_path)) {
        g_set_error_literal(error, HOOK_CONTROL_ERROR, HOOK_CONTROL_ERROR_UNREACHABLE,
                            "path too long for a unix socket");
        return NULL;
    }
    socket = g_socket_new(G_SOCKET_FAMILY_UNIX, G_SOCKET_TYPE_STREAM, G_SOCKET_PROTOCOL_DEFAULT,
                          &local_error);
    if (socket == NULL) {
        g_set_error(error, HOOK_CONTROL_ERROR, HOOK_CONTROL_ERROR_IO, "%s", local_error->message);
        return NULL;
    }
    g_socket_set_blocking(socket, FALSE);
    address = g_unix_socket_address_new(socket_path);

    while (!g_socket_connect(socket, address, NULL, &local_error)) {
        if (g_error_matches(local_error, G_IO_ERROR, G_IO_ERROR_PENDING)) {
            g_clear_error(&local_error);
            if (!hook_control_wait(socket, G_IO_OUT, deadline, "connection", error))
                return NULL;
            if (!g_socket_check_connect_result(socket, &local_error))
                break;
            return g_steal_pointer(&socket);
        }
        if (g_error_matches(local_error, G_IO_ERROR, G_IO_ERROR_WOULD_BLOCK)) {
            /* the listen backlog is full: usbgwd is alive but busy */
            gint64 remaining = hook_control_remaining(deadline, "connection", error);
            if (remaining == 0)
                return NULL;
            g_clear_error(&local_error);
            g_usleep((gulong)MIN(remaining, HOOK_CONTROL_BACKLOG_RETRY_US));
            continue;
        }
        break;
    }
    if (local_error == NULL)
        return g_steal_pointer(&socket);

    if (g_error_matches(local_error, G_IO_ERROR, G_IO_ERROR_NOT_FOUND))
        g_set_error_literal(error, HOOK_CONTROL_ERROR, HOOK_CONTROL_ERROR_UNREACHABLE,
                            "no such socket");
    else if (g_error_matches(local_error, G_IO_ERROR, G_IO_ERROR_CONNECTION_REFUSED))
        g_set_error_literal(error, HOOK_CONTROL_ERROR, HOOK_CONTROL_ERROR_UNREACHABLE,
                            "nothing listens there");
    else
        g_set_error(error, HOOK_CONTROL_ERROR, HOOK_CONTROL_ERROR_UNREACHABLE, "%s",
                    local_error->message);
    return NULL;
}

static gboolean
hook_control_send_all(GSocket *socket, const gchar *data, gsize len, gint64 deadline,
                      GError **error)
{
    gsize done = 0;

    while (done < len) {
        g_autoptr(GError) local_error = NULL;
        gssize sent = g_socket_send(socket, data + done, len - done, NULL, &local_error);

        if (sent >= 0) {
            done += (gsize)sent;
            continue;
        }
        if (!g_error_matches(local_error, G_IO_ERROR, G_IO_ERROR_WOULD_BLOCK)) {
            g_set_error(error, HOOK_CONTROL_ERROR, HOOK_CONTROL_ERROR_IO,
                        "cannot send the request: %s", local_error->message);
            return FALSE;
        }
        if (!hook_control_wait(socket, G_IO_OUT, deadline, "room to send the request", error))
            return FALSE;
    }
    return TRUE;
}

/* Reads up to the first newline; returns the line without it. */
static GString *
hook_control_receive_line(GSocket *socket, gint64 deadline, GError **error)
{
    g_autoptr(GString) line = g_string_new(NULL);

    for (;;) {
        g_autoptr(GError) local_error = NULL;
        gchar buffer[HOOK_CONTROL_RECEIVE_CHUNK];
        const gchar *newline;
        gssize got;

        if (!hook_control_wait(socket, G_IO_IN, deadline, "reply", error))
            return NULL;
        got = g_socket_receive(socket, buffer, sizeof(buffer), NULL, &local_error);
        if (got < 0) {
            if (g_error_matches(local_error, G_IO_ERROR, G_IO_ERROR_WOULD_BLOCK))
                continue;
            g_set_error(error, HOOK_CONTROL_ERROR, HOOK_CONTROL_ERROR_IO,
                        "cannot read the reply: %s", local_error->message);
            return NULL;
        }
        if (got == 0) {
            g_set_error_literal(error, HOOK_CONTROL_ERROR, HOOK_CONTROL_ERROR_PROTOCOL,
                                line->len == 0
                                    ? "usbgwd closed the connection without a reply"
                                    : "usbgwd closed the connection in the middle of its reply");
            return NULL;
        }
        newline = memchr(buffer, '\n', (gsize)got);
        g_string_append_len(line, buffer, newline != NULL ? newline - buffer : got);
        if (line->len > HOOK_CONTROL_MAX_LINE) {
            hook_control_protocol_error(error, "longer than 64 KiB");
            return NULL;
        }
        if (newline != NULL)
            return g_steal_pointer(&line);
    }
}

gboolean
hook_control_call(const gchar *socket_path, const gchar *request, gint64 deadline, HookReply *reply,
                  GError **error)
{
    g_autoptr(GSocket) socket = NULL;
    g_autoptr(GString) line = NULL;
    g_autofree gchar *request_line = g_strconcat(request, "\n", NULL);
    gsize request_len = strlen(request_line);

    if (request_len > HOOK_CONTROL_MAX_LINE) {
        g_set_error(error, HOOK_CONTROL_ERROR, HOOK_CONTROL_ERROR_TOO_LARGE,
                    "the request is %" G_GSIZE_FORMAT
                    " bytes, more than usbgwd's limit of %d (is the VM name that long?)",
                    request_len, HOOK_CONTROL_MAX_LINE);
        return FALSE;
    }
    socket = hook_control_connect(socket_path, deadline, error);
    if (socket != NULL && hook_control_send_all(socket, request_line, request_len, deadline, error))
        line = hook_control_receive_line(socket, deadline, error);
    if (line == NULL) {
        g_prefix_error(error, "%s: ", socket_path);
        return FALSE;
    }
    return hook_control_parse_reply(line->str, line->len, reply, error);
}
