/* JSON device descriptions, checked field by field so that a bad list names
 * the exact field at fault. */
#include "gw-device-json.h"

#include <gio/gio.h>
#include <string.h>

/* A device list larger than this is refused before parsing. */
#define GW_DEVICE_LIST_MAX_SIZE (16 * 1024 * 1024)

static gboolean
gw_json_hex(JsonObject *obj, const gchar *where, const gchar *field, guint digits, gboolean needed,
            guint *value, GError **error)
{
    JsonNode *node = json_object_get_member(obj, field);
    const gchar *text;

    if (node == NULL || JSON_NODE_HOLDS_NULL(node)) {
        if (needed)
            g_set_error(error, G_IO_ERROR, G_IO_ERROR_INVALID_DATA, "%s: '%s' is missing", where,
                        field);
        return !needed;
    }
    text = JSON_NODE_HOLDS_VALUE(node) && json_node_get_value_type(node) == G_TYPE_STRING
               ? json_node_get_string(node)
               : NULL;
    if (text == NULL || strlen(text) != digits ||
        strspn(text, "0123456789abcdefABCDEF") != digits) {
        g_set_error(error, G_IO_ERROR, G_IO_ERROR_INVALID_DATA,
                    "%s.%s: expected a string of %u hex digits", where, field, digits);
        return FALSE;
    }
    *value = (guint)g_ascii_strtoull(text, NULL, 16);
    return TRUE;
}

static gboolean
gw_json_string(JsonObject *obj, const gchar *where, const gchar *field, gchar **value,
               GError **error)
{
    JsonNode *node = json_object_get_member(obj, field);
    if (node == NULL || JSON_NODE_HOLDS_NULL(node))
        return TRUE;
    if (!JSON_NODE_HOLDS_VALUE(node) || json_node_get_value_type(node) != G_TYPE_STRING) {
        g_set_error(error, G_IO_ERROR, G_IO_ERROR_INVALID_DATA, "%s.%s: expected a string", where,
                    field);
        return FALSE;
    }
    *value = g_strdup(json_node_get_string(node));
    return TRUE;
}

/* "ff:00:00" */
static gboolean
gw_json_parse_triple(const gchar *text, guint8 out[3])
{
    if (text == NULL || strlen(text) != 8 || text[2] != ':' || text[5] != ':')
        return FALSE;
    for (guint i = 0; i < 3; i++) {
        const gchar *p = text + 3 * i;
        if (!g_ascii_isxdigit(p[0]) || !g_ascii_isxdigit(p[1]))
            return FALSE;
        out[i] = (guint8)(g_ascii_xdigit_value(p[0]) << 4 | g_ascii_xdigit_value(p[1]));
    }
    return TRUE;
}

PolicyDevice *
gw_device_from_json(JsonNode *node, const gchar *where, GError **error)
{
    g_autoptr(PolicyDevice) device = NULL;
    JsonObject *obj;
    JsonNode *member;
    guint vid = 0, pid = 0, bcd = 0;
    guint8 triple[3];

    if (!JSON_NODE_HOLDS_OBJECT(node)) {
        g_set_error(error, G_IO_ERROR, G_IO_ERROR_INVALID_DATA, "%s: expected an object", where);
        return NULL;
    }
    obj = json_node_get_object(node);
    if (!gw_json_hex(obj, where, "vid", 4, TRUE, &vid, error) ||
        !gw_json_hex(obj, where, "pid", 4, TRUE, &pid, error) ||
        !gw_json_hex(obj, where, "bcd_device", 4, FALSE, &bcd, error))
        return NULL;
    device = policy_device_new((guint16)vid, (guint16)pid);
    device->bcd_device = (guint16)bcd;
    if (!gw_json_string(obj, where, "manufacturer", &device->manufacturer, error) ||
        !gw_json_string(obj, where, "product", &device->product, error) ||
        !gw_json_string(obj, where, "serial", &device->serial, error) ||
        !gw_json_string(obj, where, "port", &device->port, error) ||
        !gw_json_string(obj, where, "hash", &device->hash, error) ||
        !gw_json_string(obj, where, "gateway", &device->gateway, error))
        return NULL;
    if (device->gateway != NULL && !policy_gateway_name_is_valid(device->gateway)) {
        g_set_error(error, G_IO_ERROR, G_IO_ERROR_INVALID_DATA,
                    "%s.gateway: expected a gateway name (a letter or digit, then letters, "
                    "digits, '.', '_' or '-'; at most %d bytes)",
                    where, POLICY_GATEWAY_NAME_MAX);
        return NULL;
    }

    member = json_object_get_member(obj, "class");
    if (member != NULL && !JSON_NODE_HOLDS_NULL(member)) {
        const gchar *text =
            JSON_NODE_HOLDS_VALUE(member) && json_node_get_value_type(member) == G_TYPE_STRING
                ? json_node_get_string(member)
                : NULL;
        if (!gw_json_parse_triple(text, triple)) {
            g_set_error(error, G_IO_ERROR, G_IO_ERROR_INVALID_DATA,
                        "%s.class: expected \"CC:SS:PP\" in hex, like \"ff:00:00\"", where);
            return NULL;
        }
        device->device_class = triple[0];
        device->device_subclass = triple[1];
        device->device_protocol = triple[2];
    }

    member = json_object_get_member(obj, "interfaces");
    if (member != NULL && !JSON_NODE_HOLDS_NULL(member)) {
        JsonArray *array;
        if (!JSON_NODE_HOLDS_ARRAY(member)) {
            g_set_error(error, G_IO_ERROR, G_IO_ERROR_INVALID_DATA,
                        "%s.interfaces: expected an array of \"CC:SS:PP\" strings", where);
            return NULL;
        }
        array = json_node_get_array(member);
        for (guint i = 0; i < json_array_get_length(array); i++) {
            JsonNode *element = json_array_get_element(array, i);
            const gchar *text =
                JSON_NODE_HOLDS_VALUE(element) && json_node_get_value_type(element) == G_TYPE_STRING
                    ? json_node_get_string(element)
                    : NULL;
            if (!gw_json_parse_triple(text, triple)) {
                g_set_error(error, G_IO_ERROR, G_IO_ERROR_INVALID_DATA,
                            "%s.interfaces[%u]: expected \"CC:SS:PP\" in hex, like \"08:06:50\"",
                            where, i);
                return NULL;
            }
            policy_device_add_interface(device, triple[0], triple[1], triple[2]);
        }
    }
    return g_steal_pointer(&device);
}

void
gw_device_to_json(const PolicyDevice *device, JsonBuilder *builder)
{
    g_autofree gchar *vid = g_strdup_printf("%04x", device->vendor_id);
    g_autofree gchar *pid = g_strdup_printf("%04x", device->product_id);
    g_autofree gchar *bcd = g_strdup_printf("%04x", device->bcd_device);
    g_autofree gchar *klass = g_strdup_printf("%02x:%02x:%02x", device->device_class,
                                              device->device_subclass, device->device_protocol);
    const struct {
        const gchar *name;
        const gchar *value;
    } strings[] = {
        {"manufacturer", device->manufacturer},
        {"product", device->product},
        {"serial", device->serial},
        {"port", device->port},
        {"hash", device->hash},
        {"gateway", device->gateway},
    };

    json_builder_begin_object(builder);
    json_builder_set_member_name(builder, "vid");
    json_builder_add_string_value(builder, vid);
    json_builder_set_member_name(builder, "pid");
    json_builder_add_string_value(builder, pid);
    json_builder_set_member_name(builder, "bcd_device");
    json_builder_add_string_value(builder, bcd);
    json_builder_set_member_name(builder, "class");
    json_builder_add_string_value(builder, klass);
    for (guint i = 0; i < G_N_ELEMENTS(strings); i++) {
        if (strings[i].value == NULL)
            continue;
        json_builder_set_member_name(builder, strings[i].name);
        json_builder_add_string_value(builder, strings[i].value);
    }
    json_builder_set_member_name(builder, "interfaces");
    json_builder_begin_array(builder);
    for (guint i = 0; i < device->interfaces->len; i++) {
        const PolicyInterface *iface = &g_array_index(device->interfaces, PolicyInterface, i);
        g_autofree gchar *text =
            g_strdup_printf("%02x:%02x:%02x", iface->klass, iface->subclass, iface->protocol);
        json_builder_add_string_value(builder, text);
    }
    json_builder_end_array(builder);
    json_builder_end_object(builder);
}

GPtrArray *
gw_device_list_load_data(const gchar *data, gssize len, const gchar *name, GError **error)
{
    g_autoptr(JsonParser) parser = json_parser_new_immutable();
    g_autoptr(GPtrArray) devices =
        g_ptr_array_new_with_free_func((GDestroyNotify)policy_device_free);
    g_autoptr(GError) local_error = NULL;
    JsonNode *root;
    JsonArray *array;

    if (!json_parser_load_from_data(parser, data, len, &local_error)) {
        /* json-glib names the input "<data>": say the file once instead */
        const gchar *message = local_error->message;
        if (g_str_has_prefix(message, "<data>:"))
            message += strlen("<data>:");
        g_set_error(error, G_IO_ERROR, G_IO_ERROR_INVALID_DATA, "%s: %s", name, message);
        return NULL;
    }
    root = json_parser_get_root(parser);
    if (root != NULL && JSON_NODE_HOLDS_OBJECT(root)) {
        JsonNode *member = json_object_get_member(json_node_get_object(root), "devices");
        root = member;
    }
    if (root == NULL || !JSON_NODE_HOLDS_ARRAY(root)) {
        g_set_error(error, G_IO_ERROR, G_IO_ERROR_INVALID_DATA,
                    "%s: expected {\"devices\": [ … ]} or an array of devices", name);
        return NULL;
    }
    array = json_node_get_array(root);
    for (guint i = 0; i < json_array_get_length(array); i++) {
        g_autofree gchar *where = g_strdup_printf("%s: devices[%u]", name, i);
        PolicyDevice *device = gw_device_from_json(json_array_get_element(array, i), where, error);
        if (device == NULL)
            return NULL;
        g_ptr_array_add(devices, device);
    }
    return g_steal_pointer(&devices);
}

GPtrArray *
gw_device_list_load(const gchar *path, GError **error)
{
    g_autofree gchar *data = NULL;
    gsize len = 0;
    g_autoptr(GFile) file = g_file_new_for_commandline_arg(path);
    g_autoptr(GFileInfo) info = NULL;

    info =
        g_file_query_info(file, G_FILE_ATTRIBUTE_STANDARD_SIZE "," G_FILE_ATTRIBUTE_STANDARD_TYPE,
                          G_FILE_QUERY_INFO_NONE, NULL, error);
    if (info == NULL)
        return NULL;
    if (g_file_info_get_file_type(info) != G_FILE_TYPE_REGULAR ||
        g_file_info_get_size(info) > GW_DEVICE_LIST_MAX_SIZE) {
        g_set_error(error, G_IO_ERROR, G_IO_ERROR_INVALID_DATA,
                    "%s: not a regular file of at most %d bytes", path, GW_DEVICE_LIST_MAX_SIZE);
        return NULL;
    }
    if (!g_file_get_contents(path, &data, &len, error))
        return NULL;
    return gw_device_list_load_data(data, (gssize)len, path, error);
}
