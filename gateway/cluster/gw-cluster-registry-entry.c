/* The directory's keys and values (gw-cluster-registry-entry.h). */
#include <string.h>

#include "gw-cluster-registry-entry.h"
#include "gw-device-json.h"
#include "gw-etcd-json.h"

G_DEFINE_QUARK(gw - cluster - registry - error - quark, gw_cluster_registry_error)

/* ---- names ---- */

gboolean
gw_cluster_registry_check_name(const gchar *name, GError **error)
{
    gsize len = name != NULL ? strlen(name) : 0;

    if (len == 0 || len > GW_CLUSTER_REGISTRY_MAX_NAME) {
        g_set_error(error, GW_CLUSTER_REGISTRY_ERROR, GW_CLUSTER_REGISTRY_ERROR_INVALID,
                    "gateway name of %zu bytes: must be 1 to %d", len,
                    GW_CLUSTER_REGISTRY_MAX_NAME);
        return FALSE;
    }
    for (gsize i = 0; i < len; i++) {
        if (!g_ascii_isalnum(name[i]) && strchr("._:-", name[i]) == NULL) {
            g_autofree gchar *shown = g_strescape(name, NULL);
            g_set_error(error, GW_CLUSTER_REGISTRY_ERROR, GW_CLUSTER_REGISTRY_ERROR_INVALID,
                        "gateway name \"%s\": byte %zu is not a letter, digit or one of \"._:-\"",
                        shown, i + 1);
            return FALSE;
        }
    }
    return TRUE;
}

gboolean
gw_cluster_registry_check_id(const gchar *id, GError **error)
{
    gsize len = id != NULL ? strlen(id) : 0;
    const gchar *end = NULL;

    if (len == 0 || len > GW_CLUSTER_REGISTRY_MAX_ID) {
        g_set_error(error, GW_CLUSTER_REGISTRY_ERROR, GW_CLUSTER_REGISTRY_ERROR_INVALID,
                    "device id of %zu bytes: must be 1 to %d", len, GW_CLUSTER_REGISTRY_MAX_ID);
        return FALSE;
    }
    if (!g_utf8_validate(id, len, &end)) {
        g_set_error(error, GW_CLUSTER_REGISTRY_ERROR, GW_CLUSTER_REGISTRY_ERROR_INVALID,
                    "device id: not UTF-8 at byte %zu", (gsize)(end - id) + 1);
        return FALSE;
    }
    for (const gchar *p = id; *p != '\0'; p = g_utf8_next_char(p)) {
        if (g_unichar_iscntrl(g_utf8_get_char(p))) {
            g_autofree gchar *shown = g_strescape(id, NULL);
            g_set_error(error, GW_CLUSTER_REGISTRY_ERROR, GW_CLUSTER_REGISTRY_ERROR_INVALID,
                        "device id \"%s\": a control character at byte %zu", shown,
                        (gsize)(p - id) + 1);
            return FALSE;
        }
    }
    return TRUE;
}

gboolean
gw_cluster_registry_check_address(const gchar *address, GError **error)
{
    gsize len = address != NULL ? strlen(address) : 0;
    const gchar *colon = address != NULL ? strrchr(address, ':') : NULL;
    guint64 port = 0;

    for (gsize i = 0; i < len; i++) {
        if (!g_ascii_isgraph(address[i]))
            colon = NULL;
    }
    if (len == 0 || len > GW_CLUSTER_REGISTRY_MAX_ADDRESS || colon == NULL || colon == address ||
        !g_ascii_string_to_unsigned(colon + 1, 10, 1, 65535, &port, NULL)) {
        g_autofree gchar *shown = g_strescape(address != NULL ? address : "", NULL);
        g_set_error(error, GW_CLUSTER_REGISTRY_ERROR, GW_CLUSTER_REGISTRY_ERROR_INVALID,
                    "address \"%s\": expected HOST:PORT (printable, at most %d bytes, port 1 to "
                    "65535)",
                    shown, GW_CLUSTER_REGISTRY_MAX_ADDRESS);
        return FALSE;
    }
    return TRUE;
}

/* ---- keys ---- */

static gboolean
gw_cluster_registry_needs_escape(guchar c)
{
    return c == '/' || c == '%' || c >= 0x80;
}

gchar *
gw_cluster_registry_escape_id(const gchar *id)
{
    GString *out = g_string_sized_new(strlen(id));

    for (const guchar *p = (const guchar *)id; *p != '\0'; p++) {
        if (gw_cluster_registry_needs_escape(*p))
            g_string_append_printf(out, "%%%02X", *p);
        else
            g_string_append_c(out, (gchar)*p);
    }
    return g_string_free(out, FALSE);
}

gchar *
gw_cluster_registry_gateway_key(const gchar *gateway)
{
    return g_strconcat(GW_CLUSTER_REGISTRY_GATEWAYS_PREFIX, gateway, NULL);
}

gchar *
gw_cluster_registry_device_key(const gchar *gateway, const gchar *id)
{
    g_autofree gchar *escaped = gw_cluster_registry_escape_id(id);

    return g_strconcat(GW_CLUSTER_REGISTRY_DEVICES_PREFIX, gateway, "/", escaped, NULL);
}

/* The escaped id of a key back to the id; NULL unless @escaped is exactly
 * what gw_cluster_registry_escape_id() makes of a valid id. */
static gchar *
gw_cluster_registry_unescape_id(const gchar *escaped, GError **error)
{
    g_autoptr(GString) id = g_string_new(NULL);
    g_autoptr(GError) local = NULL;
    g_autofree gchar *again = NULL;

    for (const gchar *p = escaped; *p != '\0'; p++) {
        if (*p != '%') {
            g_string_append_c(id, *p);
            continue;
        }
        if (!g_ascii_isxdigit(p[1]) || !g_ascii_isxdigit(p[2])) {
            g_set_error(error, GW_CLUSTER_REGISTRY_ERROR, GW_CLUSTER_REGISTRY_ERROR_BAD_ENTRY,
                        "a %% not followed by two hex digits at byte %zu",
                        (gsize)(p - escaped) + 1);
            return NULL;
        }
        g_string_append_c(id,
                          (gchar)(g_ascii_xdigit_value(p[1]) << 4 | g_ascii_xdigit_value(p[2])));
        p += 2;
    }
    if (strlen(id->str) != id->len || !gw_cluster_registry_check_id(id->str, &local)) {
        g_set_error(error, GW_CLUSTER_REGISTRY_ERROR, GW_CLUSTER_REGISTRY_ERROR_BAD_ENTRY, "%s",
                    local != NULL ? local->message : "device id with a NUL byte");
        return NULL;
    }
    again = gw_cluster_registry_escape_id(id->str);
    if (strcmp(again, escaped) != 0) {
        g_set_error(error, GW_CLUSTER_REGISTRY_ERROR, GW_CLUSTER_REGISTRY_ERROR_BAD_ENTRY,
                    "device id not escaped as \"%s\"", again);
        return NULL;
    }
    return g_string_free(g_steal_pointer(&id), FALSE);
}

gboolean
gw_cluster_registry_parse_key(const gchar *key, gsize key_len, GwClusterRegistryKeyKind *kind,
                              gchar **gateway, gchar **id, GError **error)
{
    g_autoptr(GError) local = NULL;
    g_autofree gchar *name = NULL;
    g_autofree gchar *device = NULL;
    const gchar *rest;
    const gchar *slash;

    *kind = GW_CLUSTER_REGISTRY_KEY_OTHER;
    *gateway = NULL;
    *id = NULL;
    if (g_str_has_prefix(key, GW_CLUSTER_REGISTRY_GATEWAYS_PREFIX)) {
        rest = key + strlen(GW_CLUSTER_REGISTRY_GATEWAYS_PREFIX);
        if (strlen(key) != key_len || !gw_cluster_registry_check_name(rest, &local)) {
            g_set_error(error, GW_CLUSTER_REGISTRY_ERROR, GW_CLUSTER_REGISTRY_ERROR_BAD_ENTRY,
                        "not %sGATEWAY: %s", GW_CLUSTER_REGISTRY_GATEWAYS_PREFIX,
                        local != NULL ? local->message : "a NUL byte in the key");
            return FALSE;
        }
        *kind = GW_CLUSTER_REGISTRY_KEY_GATEWAY;
        *gateway = g_strdup(rest);
        return TRUE;
    }
    if (!g_str_has_prefix(key, GW_CLUSTER_REGISTRY_DEVICES_PREFIX))
        return TRUE;
    rest = key + strlen(GW_CLUSTER_REGISTRY_DEVICES_PREFIX);
    slash = strchr(rest, '/');
    if (strlen(key) != key_len || slash == NULL || strchr(slash + 1, '/') != NULL) {
        g_set_error(error, GW_CLUSTER_REGISTRY_ERROR, GW_CLUSTER_REGISTRY_ERROR_BAD_ENTRY,
                    "not %sGATEWAY/ID (one \"/\" after the prefix, no NUL)",
                    GW_CLUSTER_REGISTRY_DEVICES_PREFIX);
        return FALSE;
    }
    name = g_strndup(rest, slash - rest);
    if (!gw_cluster_registry_check_name(name, &local) ||
        (device = gw_cluster_registry_unescape_id(slash + 1, &local)) == NULL) {
        g_set_error(error, GW_CLUSTER_REGISTRY_ERROR, GW_CLUSTER_REGISTRY_ERROR_BAD_ENTRY,
                    "not %sGATEWAY/ID: %s", GW_CLUSTER_REGISTRY_DEVICES_PREFIX, local->message);
        return FALSE;
    }
    *kind = GW_CLUSTER_REGISTRY_KEY_DEVICE;
    *gateway = g_steal_pointer(&name);
    *id = g_steal_pointer(&device);
    return TRUE;
}

/* ---- values ---- */

static GBytes *
gw_cluster_registry_generate(JsonBuilder *builder)
{
    g_autoptr(JsonGenerator) generator = json_generator_new();
    g_autoptr(JsonNode) root = json_builder_get_root(builder);
    gsize len = 0;
    gchar *text;

    json_generator_set_root(generator, root);
    text = json_generator_to_data(generator, &len);
    return g_bytes_new_take(text, len);
}

GBytes *
gw_cluster_registry_gateway_value(const gchar *address)
{
    g_autoptr(JsonBuilder) builder = json_builder_new();

    json_builder_begin_object(builder);
    json_builder_set_member_name(builder, "address");
    if (address != NULL)
        json_builder_add_string_value(builder, address);
    else
        json_builder_add_null_value(builder);
    json_builder_set_member_name(builder, "version");
    json_builder_add_string_value(builder, PACKAGE_VERSION);
    json_builder_end_object(builder);
    return gw_cluster_registry_generate(builder);
}

GBytes *
gw_cluster_registry_device_value(const PolicyDevice *device)
{
    g_autoptr(JsonBuilder) builder = json_builder_new();

    gw_device_to_json(device, builder);
    return gw_cluster_registry_generate(builder);
}

/* @data as a JSON object (size and depth bounded). */
static JsonNode *
gw_cluster_registry_parse_json(const gchar *data, gsize len, GError **error)
{
    g_autoptr(GError) local = NULL;
    JsonNode *root;

    if (len > GW_CLUSTER_REGISTRY_MAX_VALUE) {
        g_set_error(error, GW_CLUSTER_REGISTRY_ERROR, GW_CLUSTER_REGISTRY_ERROR_TOO_LARGE,
                    "value of %zu bytes, over %d", len, GW_CLUSTER_REGISTRY_MAX_VALUE);
        return NULL;
    }
    root = gw_etcd_json_parse(data, len, NULL, &local);
    if (root == NULL) {
        g_set_error(error, GW_CLUSTER_REGISTRY_ERROR, GW_CLUSTER_REGISTRY_ERROR_BAD_ENTRY,
                    "value: %s", local->message);
        return NULL;
    }
    return root;
}

gboolean
gw_cluster_registry_parse_gateway_value(const gchar *data, gsize len, gchar **address,
                                        GError **error)
{
    g_autoptr(JsonNode) root = gw_cluster_registry_parse_json(data, len, error);
    g_autoptr(GError) local = NULL;
    JsonNode *member;
    const gchar *text;

    *address = NULL;
    if (root == NULL)
        return FALSE;
    member = json_object_get_member(json_node_get_object(root), "address");
    if (member == NULL) {
        g_set_error(error, GW_CLUSTER_REGISTRY_ERROR, GW_CLUSTER_REGISTRY_ERROR_BAD_ENTRY,
                    "value: member \"address\" missing");
        return FALSE;
    }
    if (JSON_NODE_HOLDS_NULL(member))
        return TRUE;
    text = JSON_NODE_HOLDS_VALUE(member) && json_node_get_value_type(member) == G_TYPE_STRING
               ? json_node_get_string(member)
               : NULL;
    if (text == NULL || !gw_cluster_registry_check_address(text, &local)) {
        g_set_error(error, GW_CLUSTER_REGISTRY_ERROR, GW_CLUSTER_REGISTRY_ERROR_BAD_ENTRY,
                    "value: member \"address\": %s",
                    local != NULL ? local->message : "neither a string nor null");
        return FALSE;
    }
    *address = g_strdup(text);
    return TRUE;
}

/* json-glib turns a lone \\uD800 escape into bytes that are not UTF-8:
 * a description's strings are checked before anyone prints them. */
static gboolean
gw_cluster_registry_check_strings(const PolicyDevice *device, GError **error)
{
    const struct {
        const gchar *name;
        const gchar *text;
    } strings[] = {
        {"manufacturer", device->manufacturer},
        {"product", device->product},
        {"serial", device->serial},
        {"port", device->port},
        {"hash", device->hash},
    };

    for (guint i = 0; i < G_N_ELEMENTS(strings); i++) {
        if (strings[i].text != NULL && !g_utf8_validate(strings[i].text, -1, NULL)) {
            g_set_error(error, GW_CLUSTER_REGISTRY_ERROR, GW_CLUSTER_REGISTRY_ERROR_BAD_ENTRY,
                        "value.%s: not UTF-8", strings[i].name);
            return FALSE;
        }
    }
    return TRUE;
}

PolicyDevice *
gw_cluster_registry_parse_device_value(const gchar *data, gsize len, GError **error)
{
    g_autoptr(JsonNode) root = gw_cluster_registry_parse_json(data, len, error);
    g_autoptr(GError) local = NULL;
    g_autoptr(PolicyDevice) device = NULL;

    if (root == NULL)
        return NULL;
    device = gw_device_from_json(root, "value", &local);
    if (device == NULL) {
        g_set_error(error, GW_CLUSTER_REGISTRY_ERROR, GW_CLUSTER_REGISTRY_ERROR_BAD_ENTRY, "%s",
                    local->message);
        return NULL;
    }
    if (!gw_cluster_registry_check_strings(device, error))
        return NULL;
    return g_steal_pointer(&device);
}

gboolean
gw_cluster_registry_device_equal(const PolicyDevice *a, const PolicyDevice *b)
{
    if (a->vendor_id != b->vendor_id || a->product_id != b->product_id ||
        a->bcd_device != b->bcd_device || a->device_class != b->device_class ||
        a->device_subclass != b->device_subclass || a->device_protocol != b->device_protocol ||
        g_strcmp0(a->manufacturer, b->manufacturer) != 0 ||
        g_strcmp0(a->product, b->product) != 0 || g_strcmp0(a->serial, b->serial) != 0 ||
        g_strcmp0(a->port, b->port) != 0 || g_strcmp0(a->hash, b->hash) != 0 ||
        g_strcmp0(a->gateway, b->gateway) != 0 || a->interfaces->len != b->interfaces->len)
        return FALSE;
    for (guint i = 0; i < a->interfaces->len; i++) {
        const PolicyInterface *x = &g_array_index(a->interfaces, PolicyInterface, i);
        const PolicyInterface *y = &g_array_index(b->interfaces, PolicyInterface, i);
        if (x->klass != y->klass || x->subclass != y->subclass || x->protocol != y->protocol)
            return FALSE;
    }
    return TRUE;
}
