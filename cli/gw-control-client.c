/* Control socket client. */
#include "gw-control-client.h"

#include <gio/gunixsocketaddress.h>
#include <string.h>

#include "gw-defaults.h"

/* Replies longer than this are refused (usbgwd's replies are far smaller). */
#define GW_CONTROL_CLIENT_MAX_LINE GW_CONTROL_MAX_REPLY

struct _GwControlClient {
    gchar *socket_path;            /* owned */
    GSocketConnection *connection; /* owned */
    GDataInputStream *input;       /* owned */
};

GwControlClient *
gw_control_client_connect(const gchar *socket_path, GError **error)
{
    g_autoptr(GSocketClient) sc = g_socket_client_new();
    g_autoptr(GSocketAddress) address = g_unix_socket_address_new(socket_path);
    g_autoptr(GError) local_error = NULL;
    GwControlClient *client;
    GSocketConnection *connection =
        g_socket_client_connect(sc, G_SOCKET_CONNECTABLE(address), NULL, &local_error);

    if (connection == NULL) {
        g_set_error(error, local_error->domain, local_error->code,
                    "cannot reach usbgwd at %s: %s (is usbgwd running?)", socket_path,
                    local_error->message);
        return NULL;
    }
    client = g_new0(GwControlClient, 1);
    client->socket_path = g_strdup(socket_path);
    client->connection = connection;
    client->input = g_data_input_stream_new(g_io_stream_get_input_stream(G_IO_STREAM(connection)));
    g_data_input_stream_set_newline_type(client->input, G_DATA_STREAM_NEWLINE_TYPE_LF);
    return client;
}

JsonObject *
gw_control_client_read(GwControlClient *client, GError **error)
{
    gsize len = 0;
    g_autofree gchar *line = NULL;
    g_autoptr(JsonParser) parser = json_parser_new_immutable();
    JsonNode *root;
    GError *local_error = NULL;

    line = g_data_input_stream_read_line(client->input, &len, NULL, &local_error);
    if (line == NULL) {
        if (local_error != NULL)
            g_propagate_prefixed_error(error, local_error, "reading from usbgwd: ");
        else
            g_set_error(error, G_IO_ERROR, G_IO_ERROR_CLOSED, "usbgwd closed the connection");
        return NULL;
    }
    if (len > GW_CONTROL_CLIENT_MAX_LINE) {
        g_set_error(error, G_IO_ERROR, G_IO_ERROR_INVALID_DATA, "reply from usbgwd too long");
        return NULL;
    }
    if (!json_parser_load_from_data(parser, line, (gssize)len, error)) {
        g_prefix_error(error, "bad reply from usbgwd: ");
        return NULL;
    }
    root = json_parser_get_root(parser);
    if (root == NULL || !JSON_NODE_HOLDS_OBJECT(root)) {
        g_set_error(error, G_IO_ERROR, G_IO_ERROR_INVALID_DATA,
                    "bad reply from usbgwd: not an object");
        return NULL;
    }
    return json_object_ref(json_node_get_object(root));
}

JsonObject *
gw_control_client_call(GwControlClient *client, const gchar *command, JsonObject *args,
                       GError **error)
{
    g_autoptr(JsonObject) request = json_object_new();
    g_autoptr(JsonNode) node = NULL;
    g_autoptr(JsonGenerator) generator = json_generator_new();
    g_autofree gchar *text = NULL;
    g_autofree gchar *line = NULL;
    GOutputStream *out = g_io_stream_get_output_stream(G_IO_STREAM(client->connection));
    g_autoptr(GList) members = args != NULL ? json_object_get_members(args) : NULL;
    g_autoptr(GError) write_error = NULL;

    json_object_set_string_member(request, "command", command);
    for (GList *l = members; l != NULL; l = l->next)
        json_object_set_member(request, l->data,
                               json_node_copy(json_object_get_member(args, l->data)));
    node = json_node_init_object(json_node_alloc(), request);
    json_generator_set_root(generator, node);
    text = json_generator_to_data(generator, NULL);
    line = g_strconcat(text, "\n", NULL);
    if (!g_output_stream_write_all(out, line, strlen(line), NULL, NULL, &write_error)) {
        /* usbgwd may have refused the connection before reading the
         * request (too many connections): its reply says why */
        g_autoptr(JsonObject) reason = gw_control_client_read(client, NULL);
        if (reason != NULL)
            return g_steal_pointer(&reason);
        g_propagate_prefixed_error(error, g_steal_pointer(&write_error), "writing to usbgwd: ");
        return NULL;
    }
    return gw_control_client_read(client, error);
}

void
gw_control_client_free(GwControlClient *client)
{
    if (client == NULL)
        return;
    g_clear_object(&client->input);
    if (client->connection != NULL)
        g_io_stream_close(G_IO_STREAM(client->connection), NULL, NULL);
    g_clear_object(&client->connection);
    g_free(client->socket_path);
    g_free(client);
}
