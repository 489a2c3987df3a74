/* GwClusterPool's keys and values (gw-cluster-pool.h, "Key layout" and
 * "Names"), alone: no I/O, so tests/fuzz compiles this file itself. A pool
 * key's name and value are anyone's who can write to etcd. */
#include <string.h>

#include "gw-cluster-pool-key.h"
#include "gw-etcd-json.h"

G_DEFINE_QUARK(gw - cluster - pool - error - quark, gw_cluster_pool_error)

void
gw_cluster_pool_hold_free(GwClusterPoolHold *hold)
{
    if (hold == NULL)
        return;
    g_free(hold->pool);
    g_free(hold->device);
    g_free(hold->gateway);
    g_free(hold->vm);
    g_free(hold);
}

GwClusterPoolHold *
gw_cluster_pool_hold_copy(const GwClusterPoolHold *hold)
{
    GwClusterPoolHold *copy = g_new0(GwClusterPoolHold, 1);

    copy->pool = g_strdup(hold->pool);
    copy->device = g_strdup(hold->device);
    copy->gateway = g_strdup(hold->gateway);
    copy->vm = g_strdup(hold->vm);
    copy->lease = hold->lease;
    copy->revision = hold->revision;
    return copy;
}

/* Bytes a device name may hold besides letters and digits ('%' starts the
 * escapes of gw_cluster_pool_device_name()); a pool name's are "._:-". */
#define GW_CLUSTER_POOL_DEVICE_CHARS "._:-@#%+=,"
#define GW_CLUSTER_POOL_POOL_CHARS   "._:-"

/* A pool or device name: it becomes one component of an etcd key. */
gboolean
gw_cluster_pool_check_component(const gchar *what, const gchar *name, GError **error)
{
    gsize len = name != NULL ? strlen(name) : 0;
    const gchar *allowed =
        strcmp(what, "pool") == 0 ? GW_CLUSTER_POOL_POOL_CHARS : GW_CLUSTER_POOL_DEVICE_CHARS;

    if (len == 0 || len > GW_CLUSTER_POOL_MAX_NAME) {
        g_autofree gchar *shown = g_strescape(name != NULL ? name : "", NULL);
        g_set_error(error, GW_CLUSTER_POOL_ERROR, GW_CLUSTER_POOL_ERROR_INVALID,
                    "%s name \"%s\": must be 1 to %d bytes", what, shown, GW_CLUSTER_POOL_MAX_NAME);
        return FALSE;
    }
    for (gsize i = 0; i < len; i++) {
        if (!g_ascii_isalnum(name[i]) && strchr(allowed, name[i]) == NULL) {
            g_autofree gchar *shown = g_strescape(name, NULL);
            g_set_error(error, GW_CLUSTER_POOL_ERROR, GW_CLUSTER_POOL_ERROR_INVALID,
                        "%s name \"%s\": byte %zu is not a letter, digit or one of \"%s\"", what,
                        shown, i + 1, allowed);
            return FALSE;
        }
    }
    return TRUE;
}

gchar *
gw_cluster_pool_device_name(const gchar *id)
{
    GString *name = g_string_new(NULL);

    for (const guchar *p = (const guchar *)id; *p != '\0'; p++) {
        if (g_ascii_isalnum(*p) || (*p != '%' && strchr(GW_CLUSTER_POOL_DEVICE_CHARS, *p) != NULL))
            g_string_append_c(name, (gchar)*p);
        else
            g_string_append_printf(name, "%%%02X", *p);
    }
    return g_string_free(name, FALSE);
}

gchar *
gw_cluster_pool_device_id(const gchar *name)
{
    GString *id = g_string_new(NULL);

    for (const gchar *p = name; *p != '\0'; p++) {
        gint hi, lo;
        if (*p != '%') {
            g_string_append_c(id, *p);
            continue;
        }
        hi = g_ascii_xdigit_value(p[1]);
        lo = hi >= 0 ? g_ascii_xdigit_value(p[2]) : -1;
        if (lo < 0 || (hi == 0 && lo == 0)) {
            g_string_free(id, TRUE);
            return NULL;
        }
        g_string_append_c(id, (gchar)(hi * 16 + lo));
        p += 2;
    }
    return g_string_free(id, FALSE);
}

/* A gateway or VM name: it goes into the JSON value, and from a value
 * read back into logs and `usbgwctl list`, so no control characters. */
gboolean
gw_cluster_pool_check_text(const gchar *what, const gchar *name, GError **error)
{
    gsize len = name != NULL ? strlen(name) : 0;

    if (len == 0 || len > GW_CLUSTER_POOL_MAX_NAME || !g_utf8_validate(name, -1, NULL)) {
        g_set_error(error, GW_CLUSTER_POOL_ERROR, GW_CLUSTER_POOL_ERROR_INVALID,
                    "%s name: must be 1 to %d bytes of UTF-8", what, GW_CLUSTER_POOL_MAX_NAME);
        return FALSE;
    }
    for (const gchar *p = name; *p != '\0'; p = g_utf8_next_char(p)) {
        if (g_unichar_iscntrl(g_utf8_get_char(p))) {
            g_set_error(error, GW_CLUSTER_POOL_ERROR, GW_CLUSTER_POOL_ERROR_INVALID,
                        "%s name: control character at byte %zu", what, (gsize)(p - name) + 1);
            return FALSE;
        }
    }
    return TRUE;
}

gchar *
gw_cluster_pool_key(const gchar *pool_name, const gchar *device)
{
    return g_strconcat(GW_CLUSTER_POOL_PREFIX, pool_name, "/", device, NULL);
}

GBytes *
gw_cluster_pool_value(const gchar *gateway, const gchar *vm)
{
    g_autoptr(JsonBuilder) builder = json_builder_new();
    g_autoptr(JsonGenerator) generator = json_generator_new();
    g_autoptr(JsonNode) root = NULL;
    gsize len = 0;
    gchar *text;

    json_builder_begin_object(builder);
    json_builder_set_member_name(builder, "gateway");
    json_builder_add_string_value(builder, gateway);
    json_builder_set_member_name(builder, "vm");
    json_builder_add_string_value(builder, vm);
    json_builder_end_object(builder);
    root = json_builder_get_root(builder);
    json_generator_set_root(generator, root);
    text = json_generator_to_data(generator, &len);
    return g_bytes_new_take(text, len);
}

static const gchar *
gw_cluster_pool_member(JsonObject *object, const gchar *name, GError **error)
{
    JsonNode *node = json_object_get_member(object, name);
    const gchar *value;

    if (node == NULL || !JSON_NODE_HOLDS_VALUE(node) ||
        json_node_get_value_type(node) != G_TYPE_STRING) {
        g_set_error(error, GW_CLUSTER_POOL_ERROR, GW_CLUSTER_POOL_ERROR_BAD_ENTRY,
                    "member \"%s\" missing or not a string", name);
        return NULL;
    }
    value = json_node_get_string(node);
    /* the caller wraps the error as BAD_ENTRY */
    return gw_cluster_pool_check_text(name, value, error) ? value : NULL;
}

/* A pool key's value: {"gateway": G, "vm": V}; @gateway and @vm are
 * borrowed from *@root (owned by the caller). */
static gboolean
gw_cluster_pool_parse_value(const gchar *data, gsize len, const gchar **gateway, const gchar **vm,
                            JsonNode **root, GError **error)
{
    if (len > GW_CLUSTER_POOL_MAX_VALUE) {
        g_set_error(error, GW_CLUSTER_POOL_ERROR, GW_CLUSTER_POOL_ERROR_BAD_ENTRY,
                    "value of %zu bytes, over %d", len, GW_CLUSTER_POOL_MAX_VALUE);
        return FALSE;
    }
    *root = gw_etcd_json_parse(data, len, NULL, error);
    if (*root == NULL)
        return FALSE;
    *gateway = gw_cluster_pool_member(json_node_get_object(*root), "gateway", error);
    if (*gateway == NULL)
        return FALSE;
    *vm = gw_cluster_pool_member(json_node_get_object(*root), "vm", error);
    return *vm != NULL;
}

gboolean
gw_cluster_pool_split_key(const gchar *key, gchar **pool_name, gchar **device)
{
    const gchar *rest, *slash;

    if (!g_str_has_prefix(key, GW_CLUSTER_POOL_PREFIX))
        return FALSE;
    rest = key + strlen(GW_CLUSTER_POOL_PREFIX);
    slash = strchr(rest, '/');
    if (slash == NULL || slash == rest || slash[1] == '\0' ||
        !gw_cluster_pool_check_component("device", slash + 1, NULL))
        return FALSE;
    *pool_name = g_strndup(rest, slash - rest);
    *device = g_strdup(slash + 1);
    return TRUE;
}

GwClusterPoolHold *
gw_cluster_pool_parse_kv(const GwEtcdKv *kv, GError **error)
{
    g_autoptr(GwClusterPoolHold) hold = g_new0(GwClusterPoolHold, 1);
    g_autoptr(JsonNode) root = NULL;
    g_autoptr(GError) local = NULL;
    const gchar *rest = g_str_has_prefix(kv->key, GW_CLUSTER_POOL_PREFIX)
                            ? kv->key + strlen(GW_CLUSTER_POOL_PREFIX)
                            : NULL;
    const gchar *slash = rest != NULL ? strchr(rest, '/') : NULL;
    gsize len = 0;
    const gchar *data = g_bytes_get_data(kv->value, &len);
    const gchar *gateway = NULL, *vm = NULL;

    /* the prefix checked before anything past it is read */
    if (slash == NULL || strlen(kv->key) != kv->key_len) {
        g_autofree gchar *shown = g_strescape(kv->key, NULL);
        g_set_error(error, GW_CLUSTER_POOL_ERROR, GW_CLUSTER_POOL_ERROR_BAD_ENTRY,
                    "pool key \"%s\": not %sPOOL/DEVICE", shown, GW_CLUSTER_POOL_PREFIX);
        return NULL;
    }
    hold->pool = g_strndup(rest, slash - rest);
    hold->device = g_strdup(slash + 1);
    hold->lease = kv->lease;
    hold->revision = kv->mod_revision;
    if (!gw_cluster_pool_check_component("pool", hold->pool, &local) ||
        !gw_cluster_pool_check_component("device", hold->device, &local) ||
        !gw_cluster_pool_parse_value(data, len, &gateway, &vm, &root, &local)) {
        g_autofree gchar *shown = g_strescape(kv->key, NULL);
        g_set_error(error, GW_CLUSTER_POOL_ERROR, GW_CLUSTER_POOL_ERROR_BAD_ENTRY,
                    "pool key \"%s\": %s", shown, local->message);
        return NULL;
    }
    hold->gateway = g_strdup(gateway);
    hold->vm = g_strdup(vm);
    return g_steal_pointer(&hold);
}
