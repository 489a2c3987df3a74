/* libFuzzer target for state.json restore (gateway/state/gw-state-store.c):
 * any bytes as the state file. gw_state_store_open() promises
 * (gw-state-store.h) that a missing file gives an empty state and that a
 * file that is not valid state is moved aside to PATH.corrupt-TIME with a
 * warning and an empty state used. The harness reads the same bytes with
 * json-glib (the oracle) and checks, besides no crash, leak or critical:
 *
 *   - a file that is not a JSON object of GW_STATE_VERSION: the store is
 *     empty, a warning names the file, and the bytes are kept in
 *     PATH.corrupt-* (never lost);
 *   - a file of the right version: it stays where it is, and nothing in
 *     it is dropped silently: every assignment, release, lease and share
 *     it holds is in the getters with its value, and every entry or
 *     section that is not is named in a warning that names the file;
 *   - what the store writes back (flush) reopens to the same state.
 *
 * Run the fuzzer (clang), as tests/fuzz/fuzz-policy.c says, with
 * tests/fuzz/corpus/state-store as the seed corpus and
 * -dict=tests/fuzz/state-store.dict. */
#include <glib/gstdio.h>
#include <json-glib/json-glib.h>
#include <stdint.h>
#include <string.h>

#include "gw-state-store.h"

#include "fuzz-common.h"

typedef struct {
    gchar *dir;      /* owned */
    gchar *path;     /* owned: DIR/state.json */
    GString *warned; /* owned: every warning since the last reset, one per line */
} FuzzEnv;

static FuzzEnv fuzz_env;

static void
fuzz_log(const gchar *domain, GLogLevelFlags level, const gchar *message, gpointer user_data)
{
    FUZZ_CHECK((level & (G_LOG_LEVEL_CRITICAL | G_LOG_LEVEL_ERROR)) == 0);
    if (level & G_LOG_LEVEL_WARNING)
        g_string_append_printf(fuzz_env.warned, "%s\n", message);
}

static void
fuzz_cleanup(void)
{
    fuzz_remove_tree(fuzz_env.dir);
}

static FuzzEnv *
fuzz_setup(void)
{
    g_autoptr(GError) error = NULL;

    if (fuzz_env.dir != NULL)
        return &fuzz_env;
    fuzz_env.dir = g_dir_make_tmp("fuzz-state-XXXXXX", &error);
    if (fuzz_env.dir == NULL) {
        g_printerr("fuzz-state-store: %s\n", error->message);
        abort();
    }
    atexit(fuzz_cleanup);
    fuzz_env.path = g_build_filename(fuzz_env.dir, "state.json", NULL);
    fuzz_env.warned = g_string_new(NULL);
    g_log_set_default_handler(fuzz_log, NULL);
    return &fuzz_env;
}

/* Removes everything in the directory; returns the bytes of the one file
 * moved aside, if any. */
static GBytes *
fuzz_clean(FuzzEnv *env)
{
    g_autoptr(GDir) dir = g_dir_open(env->dir, 0, NULL);
    g_autoptr(GBytes) aside = NULL;
    const gchar *name;
    guint asides = 0;

    while (dir != NULL && (name = g_dir_read_name(dir)) != NULL) {
        g_autofree gchar *child = g_build_filename(env->dir, name, NULL);
        if (g_str_has_prefix(name, "state.json.corrupt-")) {
            gchar *data = NULL;
            gsize len = 0;
            FUZZ_CHECK(g_file_get_contents(child, &data, &len, NULL));
            aside = g_bytes_new_take(data, len);
            asides++;
        }
        g_unlink(child);
    }
    FUZZ_CHECK(asides <= 1);
    return g_steal_pointer(&aside);
}

/* Whether a warning since the last reset names both the file and @what. */
static gboolean
fuzz_warned(FuzzEnv *env, const gchar *what)
{
    g_auto(GStrv) lines = g_strsplit(env->warned->str, "\n", -1);

    for (guint i = 0; lines[i] != NULL; i++)
        if (strstr(lines[i], env->path) != NULL && (what == NULL || strstr(lines[i], what) != NULL))
            return TRUE;
    return FALSE;
}

static gboolean
fuzz_is_empty(GwStateStore *store)
{
    return g_hash_table_size(gw_state_store_get_assignments(store)) == 0 &&
           g_hash_table_size(gw_state_store_get_released(store)) == 0 &&
           g_hash_table_size(gw_state_store_get_leases(store)) == 0 &&
           gw_state_store_get_shares(store)->len == 0;
}

/* The file's version as the store reads it, or NULL when it is not a JSON
 * object of GW_STATE_VERSION. */
static JsonObject *
fuzz_oracle(JsonParser *parser, const uint8_t *data, size_t size)
{
    JsonNode *root, *version;
    JsonObject *obj;

    if (!json_parser_load_from_data(parser, (const gchar *)data, (gssize)size, NULL))
        return NULL;
    root = json_parser_get_root(parser);
    if (root == NULL || !JSON_NODE_HOLDS_OBJECT(root))
        return NULL;
    obj = json_node_get_object(root);
    /* an integer, not 1.0, "1" or true */
    version = json_object_get_member(obj, "version");
    if (version == NULL || json_node_get_value_type(version) != G_TYPE_INT64 ||
        json_node_get_int(version) != GW_STATE_VERSION)
        return NULL;
    return obj;
}

static const gchar *
fuzz_string_of(JsonNode *node)
{
    return node != NULL && json_node_get_value_type(node) == G_TYPE_STRING
               ? json_node_get_string(node)
               : NULL;
}

/* Every entry of a map section is in @map with its VM, or warned about. */
static void
fuzz_check_map(FuzzEnv *env, JsonObject *root, const gchar *section, GHashTable *map,
               gboolean released)
{
    JsonNode *node = json_object_get_member(root, section);
    g_autoptr(GList) ids = NULL;

    if (node == NULL || JSON_NODE_HOLDS_NULL(node)) {
        FUZZ_CHECK(g_hash_table_size(map) == 0);
        return;
    }
    if (!JSON_NODE_HOLDS_OBJECT(node)) {
        /* a section that is not an object loses all of it: say so */
        FUZZ_CHECK(g_hash_table_size(map) == 0);
        FUZZ_CHECK(fuzz_warned(env, section));
        return;
    }
    ids = json_object_get_members(json_node_get_object(node));
    for (GList *l = ids; l != NULL; l = l->next) {
        const gchar *id = l->data;
        const gchar *vm = fuzz_string_of(json_object_get_member(json_node_get_object(node), id));
        if (released) {
            FUZZ_CHECK(g_hash_table_contains(map, id));
        } else if (vm != NULL) {
            FUZZ_CHECK(g_strcmp0(g_hash_table_lookup(map, id), vm) == 0);
        } else {
            FUZZ_CHECK(!g_hash_table_contains(map, id) || strlen(id) == 0 || fuzz_warned(env, id));
            FUZZ_CHECK(fuzz_warned(env, section));
        }
    }
}

static void
fuzz_check_shares(FuzzEnv *env, JsonObject *root, GPtrArray *shares)
{
    JsonNode *node = json_object_get_member(root, "shares");
    g_autoptr(GList) vms = NULL;

    if (node == NULL || JSON_NODE_HOLDS_NULL(node)) {
        FUZZ_CHECK(shares->len == 0);
        return;
    }
    if (!JSON_NODE_HOLDS_OBJECT(node)) {
        FUZZ_CHECK(shares->len == 0);
        FUZZ_CHECK(fuzz_warned(env, "shares"));
        return;
    }
    /* every saved share comes back, in VM-name order, for the registry to
     * check (gw-state-store.h: the reader checks the entries) */
    vms = json_object_get_members(json_node_get_object(node));
    FUZZ_CHECK(shares->len == g_list_length(vms));
    for (guint i = 0; i < shares->len; i++) {
        const GwStateShare *share = g_ptr_array_index(shares, i);
        JsonNode *entry = json_object_get_member(json_node_get_object(node), share->vm);
        FUZZ_CHECK(entry != NULL);
        if (i > 0)
            FUZZ_CHECK(strcmp(((const GwStateShare *)g_ptr_array_index(shares, i - 1))->vm,
                              share->vm) <= 0);
        if (JSON_NODE_HOLDS_OBJECT(entry)) {
            JsonObject *obj = json_node_get_object(entry);
            FUZZ_CHECK(
                g_strcmp0(share->user, fuzz_string_of(json_object_get_member(obj, "user"))) == 0);
            FUZZ_CHECK(g_strcmp0(share->ticket,
                                 fuzz_string_of(json_object_get_member(obj, "ticket"))) == 0);
        }
    }
}

static gboolean
fuzz_maps_equal(GHashTable *a, GHashTable *b)
{
    GHashTableIter iter;
    gpointer key, value;

    if (g_hash_table_size(a) != g_hash_table_size(b))
        return FALSE;
    g_hash_table_iter_init(&iter, a);
    while (g_hash_table_iter_next(&iter, &key, &value)) {
        gpointer other = NULL;
        if (!g_hash_table_lookup_extended(b, key, NULL, &other) || g_strcmp0(value, other) != 0)
            return FALSE;
    }
    return TRUE;
}

/* What the store writes reads back the same. */
static void
fuzz_check_roundtrip(FuzzEnv *env, GwStateStore *store)
{
    g_autoptr(GError) error = NULL;
    g_autoptr(GwStateStore) again = NULL;
    g_autoptr(GHashTable) assignments = g_hash_table_ref(gw_state_store_get_assignments(store));
    g_autoptr(GPtrArray) shares = g_ptr_array_ref(gw_state_store_get_shares(store));

    /* setters mark the store dirty: it writes even an unchanged state */
    gw_state_store_set_assignments(store, assignments);
    FUZZ_CHECK(gw_state_store_flush(store, &error));
    g_string_truncate(env->warned, 0);
    again = gw_state_store_open(env->path);
    FUZZ_CHECK(!fuzz_warned(env, NULL));
    FUZZ_CHECK(fuzz_maps_equal(gw_state_store_get_assignments(store),
                               gw_state_store_get_assignments(again)));
    FUZZ_CHECK(
        fuzz_maps_equal(gw_state_store_get_released(store), gw_state_store_get_released(again)));
    FUZZ_CHECK(fuzz_maps_equal(gw_state_store_get_leases(store), gw_state_store_get_leases(again)));
    FUZZ_CHECK(gw_state_store_get_shares(again)->len == shares->len);
    for (guint i = 0; i < shares->len; i++) {
        const GwStateShare *a = g_ptr_array_index(shares, i);
        const GwStateShare *b = g_ptr_array_index(gw_state_store_get_shares(again), i);
        FUZZ_CHECK(g_strcmp0(a->vm, b->vm) == 0);
        FUZZ_CHECK(g_strcmp0(a->user, b->user) == 0 && g_strcmp0(a->ticket, b->ticket) == 0);
        FUZZ_CHECK(a->port == b->port && a->expires == b->expires);
    }
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    FuzzEnv *env = fuzz_setup();
    g_autoptr(JsonParser) parser = json_parser_new_immutable();
    g_autoptr(GwStateStore) store = NULL;
    g_autoptr(GBytes) aside = NULL;
    g_autoptr(GError) error = NULL;
    JsonObject *root;

    g_bytes_unref(fuzz_clean(env));
    g_string_truncate(env->warned, 0);
    if (!g_file_set_contents(env->path, (const gchar *)data, (gssize)size, &error)) {
        g_printerr("fuzz-state-store: %s\n", error->message);
        abort();
    }
    root = fuzz_oracle(parser, data, size);
    store = gw_state_store_open(env->path);
    FUZZ_CHECK(store != NULL);

    if (root == NULL) {
        FUZZ_CHECK(fuzz_is_empty(store));
        FUZZ_CHECK(fuzz_warned(env, NULL));
        FUZZ_CHECK(!g_file_test(env->path, G_FILE_TEST_EXISTS));
        aside = fuzz_clean(env);
        FUZZ_CHECK(aside != NULL);
        FUZZ_CHECK(g_bytes_get_size(aside) == size &&
                   (size == 0 || memcmp(g_bytes_get_data(aside, NULL), data, size) == 0));
        return 0;
    }
    /* valid state stays where it is */
    FUZZ_CHECK(g_file_test(env->path, G_FILE_TEST_EXISTS));
    fuzz_check_map(env, root, "assignments", gw_state_store_get_assignments(store), FALSE);
    fuzz_check_map(env, root, "released", gw_state_store_get_released(store), TRUE);
    fuzz_check_map(env, root, "leases", gw_state_store_get_leases(store), FALSE);
    fuzz_check_shares(env, root, gw_state_store_get_shares(store));
    fuzz_check_roundtrip(env, store);
    return 0;
}
