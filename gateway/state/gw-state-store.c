/* The state file: typed state in memory, one atomic JSON write per flush. */
#include "gw-state-store.h"

#include <errno.h>
#include <string.h>
#include <gio/gio.h>
#include <glib/gstdio.h>
#include <json-glib/json-glib.h>

#include "gw-json.h"

/* A state file larger than this is not ours. */
#define GW_STATE_MAX_SIZE (16 * 1024 * 1024)

static void
gw_state_set_aside(const gchar *path, const gchar *why)
{
    g_autoptr(GDateTime) now = g_date_time_new_now_utc();
    g_autofree gchar *stamp = g_date_time_format(now, "%Y%m%dT%H%M%S");
    g_autofree gchar *aside = g_strdup_printf("%s.corrupt-%s", path, stamp);

    g_warning("state %s: %s; moved to %s, starting with an empty state", path, why, aside);
    if (g_rename(path, aside) != 0)
        g_warning("cannot move %s aside: %s", path, g_strerror(errno));
}

static JsonObject *
gw_state_load(const gchar *path)
{
    g_autofree gchar *data = NULL;
    gsize len = 0;
    g_autoptr(GError) error = NULL;
    g_autoptr(JsonParser) parser = json_parser_new_immutable();
    JsonNode *root;
    JsonObject *obj;

    if (!g_file_get_contents(path, &data, &len, &error)) {
        if (!g_error_matches(error, G_FILE_ERROR, G_FILE_ERROR_NOENT))
            g_warning("cannot read state %s: %s", path, error->message);
        return json_object_new();
    }
    if (len > GW_STATE_MAX_SIZE) {
        gw_state_set_aside(path, "too large");
        return json_object_new();
    }
    if (!json_parser_load_from_data(parser, data, (gssize)len, &error)) {
        gw_state_set_aside(path, error->message);
        return json_object_new();
    }
    root = json_parser_get_root(parser);
    if (root == NULL || !JSON_NODE_HOLDS_OBJECT(root)) {
        gw_state_set_aside(path, "not a JSON object");
        return json_object_new();
    }
    obj = json_node_get_object(root);
    if (gw_json_get_int(obj, "version", 0) != GW_STATE_VERSION) {
        gw_state_set_aside(path, "unknown version");
        return json_object_new();
    }
    return json_object_ref(obj);
}

static gboolean
gw_state_save(const gchar *path, JsonObject *state, GError **error)
{
    g_autoptr(JsonGenerator) generator = json_generator_new();
    g_autoptr(JsonNode) root = json_node_init_object(json_node_alloc(), state);
    g_autofree gchar *dir = g_path_get_dirname(path);
    g_autofree gchar *text = NULL;
    gsize len = 0;

    json_object_set_int_member(state, "version", GW_STATE_VERSION);
    json_generator_set_root(generator, root);
    json_generator_set_pretty(generator, TRUE);
    text = json_generator_to_data(generator, &len);
    if (g_mkdir_with_parents(dir, 0750) != 0) {
        int saved = errno;
        g_set_error(error, G_IO_ERROR, g_io_error_from_errno(saved), "cannot create %s: %s", dir,
                    g_strerror(saved));
        return FALSE;
    }
    return g_file_set_contents_full(path, text, (gssize)len,
                                    G_FILE_SET_CONTENTS_CONSISTENT | G_FILE_SET_CONTENTS_DURABLE,
                                    0600, error);
}

struct _GwStateStore {
    gchar *path;         /* owned */
    GHashTable *maps[3]; /* assignments, released, leases: id → vm (owned strings) */
    GPtrArray *shares;   /* GwStateShare (owned), by VM name */
    gboolean dirty;
};

enum { GW_STATE_ASSIGNMENTS, GW_STATE_RELEASED, GW_STATE_LEASES };
static const gchar *const gw_state_map_names[] = {"assignments", "released", "leases"};

void
gw_state_share_free(GwStateShare *share)
{
    if (share == NULL)
        return;
    g_free(share->vm);
    g_free(share->user);
    g_free(share->ticket);
    g_free(share);
}

static GwStateShare *
gw_state_share_copy(const GwStateShare *share)
{
    GwStateShare *copy = g_new0(GwStateShare, 1);
    copy->vm = g_strdup(share->vm);
    copy->user = g_strdup(share->user);
    copy->ticket = g_strdup(share->ticket);
    copy->port = share->port;
    copy->expires = share->expires;
    copy->ends = share->ends;
    return copy;
}

static gint
gw_state_share_compare(gconstpointer a, gconstpointer b)
{
    return strcmp((*(GwStateShare *const *)a)->vm, (*(GwStateShare *const *)b)->vm);
}

static GHashTable *
gw_state_map_new(void)
{
    return g_hash_table_new_full(g_str_hash, g_str_equal, g_free, g_free);
}

/* A section of the file (an object), or NULL: missing, null, or of another
 * type, which loses what it held and is said. */
static JsonObject *
gw_state_section(JsonObject *root, const gchar *name, const gchar *path)
{
    JsonNode *node = json_object_get_member(root, name);

    if (node == NULL || JSON_NODE_HOLDS_NULL(node))
        return NULL;
    if (!JSON_NODE_HOLDS_OBJECT(node)) {
        g_warning("state %s: \"%s\" is not an object; its entries are ignored", path, name);
        return NULL;
    }
    return json_node_get_object(node);
}

GwStateStore *
gw_state_store_open(const gchar *path)
{
    GwStateStore *store = g_new0(GwStateStore, 1);
    g_autoptr(JsonObject) root = gw_state_load(path);
    JsonObject *shares = gw_state_section(root, "shares", path);
    g_autoptr(GList) vms = shares != NULL ? json_object_get_members(shares) : NULL;

    store->path = g_strdup(path);
    store->shares = g_ptr_array_new_with_free_func((GDestroyNotify)gw_state_share_free);
    for (guint m = 0; m < G_N_ELEMENTS(store->maps); m++) {
        JsonObject *obj = gw_state_section(root, gw_state_map_names[m], path);
        g_autoptr(GList) ids = obj != NULL ? json_object_get_members(obj) : NULL;
        store->maps[m] = gw_state_map_new();
        for (GList *l = ids; l != NULL; l = l->next) {
            const gchar *vm = gw_json_get_string(obj, l->data);
            if (m == GW_STATE_RELEASED)
                g_hash_table_insert(store->maps[m], g_strdup(l->data), NULL);
            else if (vm != NULL)
                g_hash_table_insert(store->maps[m], g_strdup(l->data), g_strdup(vm));
            else
                g_warning("state %s: %s entry of %s is not a VM name; ignored", path,
                          gw_state_map_names[m], (const gchar *)l->data);
        }
    }
    for (GList *l = vms; l != NULL; l = l->next) {
        JsonObject *entry = gw_json_get_object(shares, l->data);
        GwStateShare *share = g_new0(GwStateShare, 1);
        share->vm = g_strdup(l->data);
        share->user = g_strdup(gw_json_get_string(entry, "user"));
        share->ticket = g_strdup(gw_json_get_string(entry, "ticket"));
        share->port = gw_json_get_int(entry, "port", 0);
        share->expires = gw_json_get_int(entry, "expires", -1);
        share->ends = gw_json_get_int(entry, "ends", 0);
        g_ptr_array_add(store->shares, share);
    }
    g_ptr_array_sort(store->shares, gw_state_share_compare);
    return store;
}

void
gw_state_store_free(GwStateStore *store)
{
    if (store == NULL)
        return;
    for (guint m = 0; m < G_N_ELEMENTS(store->maps); m++)
        g_hash_table_unref(store->maps[m]);
    g_ptr_array_unref(store->shares);
    g_free(store->path);
    g_free(store);
}

GHashTable *
gw_state_store_get_assignments(GwStateStore *store)
{
    return store->maps[GW_STATE_ASSIGNMENTS];
}

GHashTable *
gw_state_store_get_released(GwStateStore *store)
{
    return store->maps[GW_STATE_RELEASED];
}

GHashTable *
gw_state_store_get_leases(GwStateStore *store)
{
    return store->maps[GW_STATE_LEASES];
}

static void
gw_state_store_set_map(GwStateStore *store, guint m, GHashTable *map)
{
    GHashTableIter iter;
    gpointer key, value;

    g_hash_table_remove_all(store->maps[m]);
    g_hash_table_iter_init(&iter, map);
    while (g_hash_table_iter_next(&iter, &key, &value))
        g_hash_table_insert(store->maps[m], g_strdup(key), g_strdup(value));
    store->dirty = TRUE;
}

void
gw_state_store_set_assignments(GwStateStore *store, GHashTable *assignments)
{
    gw_state_store_set_map(store, GW_STATE_ASSIGNMENTS, assignments);
}

void
gw_state_store_set_released(GwStateStore *store, GHashTable *released)
{
    gw_state_store_set_map(store, GW_STATE_RELEASED, released);
}

void
gw_state_store_set_leases(GwStateStore *store, GHashTable *leases)
{
    gw_state_store_set_map(store, GW_STATE_LEASES, leases);
}

GPtrArray *
gw_state_store_get_shares(GwStateStore *store)
{
    return store->shares;
}

static gboolean
gw_state_shares_equal(GPtrArray *a, GPtrArray *b)
{
    if (a->len != b->len)
        return FALSE;
    for (guint i = 0; i < a->len; i++) {
        const GwStateShare *x = g_ptr_array_index(a, i);
        const GwStateShare *y = g_ptr_array_index(b, i);
        if (g_strcmp0(x->vm, y->vm) != 0 || g_strcmp0(x->user, y->user) != 0 ||
            g_strcmp0(x->ticket, y->ticket) != 0 || x->port != y->port ||
            x->expires != y->expires || x->ends != y->ends)
            return FALSE;
    }
    return TRUE;
}

void
gw_state_store_set_shares(GwStateStore *store, GPtrArray *shares)
{
    g_autoptr(GPtrArray) copy = g_ptr_array_new_with_free_func((GDestroyNotify)gw_state_share_free);

    for (guint i = 0; i < shares->len; i++)
        g_ptr_array_add(copy, gw_state_share_copy(g_ptr_array_index(shares, i)));
    g_ptr_array_sort(copy, gw_state_share_compare);
    if (gw_state_shares_equal(store->shares, copy))
        return;
    g_ptr_array_unref(store->shares);
    store->shares = g_steal_pointer(&copy);
    store->dirty = TRUE;
}

gboolean
gw_state_store_flush(GwStateStore *store, GError **error)
{
    g_autoptr(JsonObject) root = NULL;
    g_autoptr(JsonObject) shares = NULL;

    if (!store->dirty)
        return TRUE;
    root = json_object_new();
    for (guint m = 0; m < G_N_ELEMENTS(store->maps); m++) {
        g_autoptr(JsonObject) obj = json_object_new();
        g_autoptr(GList) ids = g_hash_table_get_keys(store->maps[m]);
        ids = g_list_sort(ids, (GCompareFunc)strcmp);
        for (GList *l = ids; l != NULL; l = l->next) {
            if (m == GW_STATE_RELEASED)
                json_object_set_boolean_member(obj, l->data, TRUE);
            else
                json_object_set_string_member(obj, l->data,
                                              g_hash_table_lookup(store->maps[m], l->data));
        }
        json_object_set_object_member(root, gw_state_map_names[m], g_steal_pointer(&obj));
    }
    shares = json_object_new();
    for (guint i = 0; i < store->shares->len; i++) {
        const GwStateShare *share = g_ptr_array_index(store->shares, i);
        g_autoptr(JsonObject) entry = json_object_new();
        json_object_set_string_member(entry, "user", share->user);
        json_object_set_string_member(entry, "ticket", share->ticket);
        json_object_set_int_member(entry, "port", share->port);
        json_object_set_int_member(entry, "expires", share->expires);
        if (share->ends != 0)
            json_object_set_int_member(entry, "ends", share->ends);
        json_object_set_object_member(shares, share->vm, g_steal_pointer(&entry));
    }
    json_object_set_object_member(root, "shares", g_steal_pointer(&shares));
    if (!gw_state_save(store->path, root, error))
        return FALSE;
    store->dirty = FALSE;
    return TRUE;
}
