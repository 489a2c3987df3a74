/* `usbgwctl pools`: usbgwd's device list grouped by pool. */
#include "usbgwctl-pools.h"

#include <string.h>

#include "gw-json.h"

#define USBGWCTL_POOL_TARGET_PREFIX "pool \""

/* The pool a device of `list` belongs to ("pool \"NAME\"" → NAME), or NULL. */
static gchar *
usbgwctl_pool_of(JsonObject *device)
{
    const gchar *target = gw_json_get_string(device, "target");
    gsize len;

    if (target == NULL || !g_str_has_prefix(target, USBGWCTL_POOL_TARGET_PREFIX))
        return NULL;
    target += strlen(USBGWCTL_POOL_TARGET_PREFIX);
    len = strlen(target);
    if (len < 2 || target[len - 1] != '"')
        return NULL;
    return g_strndup(target, len - 1);
}

static gint
usbgwctl_compare_ids(gconstpointer a, gconstpointer b)
{
    JsonObject *da = *(JsonObject *const *)a;
    JsonObject *db = *(JsonObject *const *)b;
    return g_strcmp0(gw_json_get_string(da, "id"), gw_json_get_string(db, "id"));
}

JsonObject *
usbgwctl_pools_from_devices(JsonArray *devices)
{
    /* pool name → GPtrArray of its devices (borrowed from @devices) */
    g_autoptr(GHashTable) by_pool =
        g_hash_table_new_full(g_str_hash, g_str_equal, g_free, (GDestroyNotify)g_ptr_array_unref);
    g_autoptr(GList) names = NULL;
    g_autoptr(JsonArray) pools = json_array_new();
    JsonObject *result = json_object_new();

    for (guint i = 0; devices != NULL && i < json_array_get_length(devices); i++) {
        JsonNode *node = json_array_get_element(devices, i);
        JsonObject *device = JSON_NODE_HOLDS_OBJECT(node) ? json_node_get_object(node) : NULL;
        g_autofree gchar *pool = device != NULL ? usbgwctl_pool_of(device) : NULL;
        GPtrArray *members;

        if (pool == NULL)
            continue;
        members = g_hash_table_lookup(by_pool, pool);
        if (members == NULL) {
            members = g_ptr_array_new();
            g_hash_table_insert(by_pool, g_strdup(pool), members);
        }
        g_ptr_array_add(members, device);
    }

    names = g_list_sort(g_hash_table_get_keys(by_pool), (GCompareFunc)g_strcmp0);
    for (GList *l = names; l != NULL; l = l->next) {
        GPtrArray *members = g_hash_table_lookup(by_pool, l->data);
        g_autoptr(JsonObject) pool = json_object_new();
        g_autoptr(JsonArray) list = json_array_new();
        guint used = 0;

        g_ptr_array_sort(members, usbgwctl_compare_ids);
        for (guint i = 0; i < members->len; i++) {
            JsonObject *device = g_ptr_array_index(members, i);
            const gchar *vm = gw_json_get_string(device, "vm");
            const gchar *state = gw_json_get_string(device, "state");
            g_autoptr(JsonObject) entry = json_object_new();
            const gchar *id = gw_json_get_string(device, "id");

            json_object_set_string_member(entry, "id", id != NULL ? id : "");
            if (vm != NULL) {
                json_object_set_string_member(entry, "vm", vm);
                used++;
            } else
                json_object_set_null_member(entry, "vm");
            json_object_set_string_member(entry, "state", state != NULL ? state : "");
            json_array_add_object_element(list, g_steal_pointer(&entry));
        }
        json_object_set_string_member(pool, "name", l->data);
        json_object_set_int_member(pool, "keys", members->len);
        json_object_set_int_member(pool, "used", used);
        json_object_set_int_member(pool, "free", members->len - used);
        json_object_set_array_member(pool, "devices", g_steal_pointer(&list));
        json_array_add_object_element(pools, g_steal_pointer(&pool));
    }
    json_object_set_array_member(result, "pools", g_steal_pointer(&pools));
    return result;
}

void
usbgwctl_pools_print(JsonObject *pools)
{
    JsonArray *list = gw_json_get_array(pools, "pools");

    g_print("%-20s %-5s %-5s %-5s %s\n", "POOL", "KEYS", "FREE", "USED", "HOLDERS");
    for (guint i = 0; list != NULL && i < json_array_get_length(list); i++) {
        JsonObject *pool = json_array_get_object_element(list, i);
        JsonArray *devices = gw_json_get_array(pool, "devices");
        g_autoptr(GString) holders = g_string_new(NULL);

        for (guint k = 0; devices != NULL && k < json_array_get_length(devices); k++) {
            JsonObject *device = json_array_get_object_element(devices, k);
            const gchar *vm = gw_json_get_string(device, "vm");
            if (vm != NULL)
                g_string_append_printf(holders, "%s%s → %s", holders->len > 0 ? ", " : "",
                                       gw_json_get_string(device, "id"), vm);
        }
        g_print("%-20s %-5" G_GINT64_FORMAT " %-5" G_GINT64_FORMAT " %-5" G_GINT64_FORMAT " %s\n",
                gw_json_get_string(pool, "name"), gw_json_get_int(pool, "keys", 0),
                gw_json_get_int(pool, "free", 0), gw_json_get_int(pool, "used", 0),
                holders->len > 0 ? holders->str : "-");
    }
}
