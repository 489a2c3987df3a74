/* GwClusterPool (gw-cluster-pool.h): pool leases as etcd keys written in
 * transactions, with this gateway's holds remembered by key so a release
 * can compare the key's mod_revision with the one its put made. */
#include <string.h>

#include "gw-cluster-pool-key.h"
#include "gw-cluster-pool.h"

struct _GwClusterPool {
    gint refs;      /* the owner's, and one per operation in flight */
    GwEtcd *etcd;   /* owned ref */
    gchar *gateway; /* owned */
    gint64 lease_id;
    GHashTable *held;    /* owned: etcd key (owned) -> GwClusterPoolHold (owned) */
    GHashTable *pending; /* owned: etcd key (owned) -> our acquire txns in flight on it */
    gchar *lost_reason;  /* owned, nullable: set once the lease was lost */
};

/* Reads of the pool one acquire makes at most: the first, and one more
 * when every key that was free then was taken before our transaction. */
#define GW_CLUSTER_POOL_ACQUIRE_READS 2

static GwClusterPool *
gw_cluster_pool_ref(GwClusterPool *pool)
{
    pool->refs++;
    return pool;
}

static void
gw_cluster_pool_unref(GwClusterPool *pool)
{
    if (--pool->refs > 0)
        return;
    g_hash_table_unref(pool->held);
    g_hash_table_unref(pool->pending);
    g_object_unref(pool->etcd);
    g_free(pool->gateway);
    g_free(pool->lost_reason);
    g_free(pool);
}

GwClusterPool *
gw_cluster_pool_new(GwEtcd *etcd, const gchar *gateway, gint64 lease_id, GError **error)
{
    GwClusterPool *pool;

    if (!gw_cluster_pool_check_text("gateway", gateway, error))
        return NULL;
    if (lease_id == 0) {
        g_set_error(error, GW_CLUSTER_POOL_ERROR, GW_CLUSTER_POOL_ERROR_INVALID,
                    "gateway %s: pool leases need an etcd lease", gateway);
        return NULL;
    }
    pool = g_new0(GwClusterPool, 1);
    pool->refs = 1;
    pool->etcd = g_object_ref(etcd);
    pool->gateway = g_strdup(gateway);
    pool->lease_id = lease_id;
    pool->held = g_hash_table_new_full(g_str_hash, g_str_equal, g_free,
                                       (GDestroyNotify)gw_cluster_pool_hold_free);
    pool->pending = g_hash_table_new_full(g_str_hash, g_str_equal, g_free, NULL);
    return pool;
}

void
gw_cluster_pool_free(GwClusterPool *pool)
{
    if (pool != NULL)
        gw_cluster_pool_unref(pool);
}

static void
gw_cluster_pool_set_lost_error(GwClusterPool *pool, const gchar *pool_name, GError **error)
{
    g_set_error(error, GW_CLUSTER_POOL_ERROR, GW_CLUSTER_POOL_ERROR_LEASE_LOST,
                "pool %s: gateway %s lost its etcd lease %" G_GINT64_FORMAT ": %s", pool_name,
                pool->gateway, pool->lease_id, pool->lost_reason);
}

/* An etcd error of an operation on @pool_name (@device nullable), its
 * domain and code kept. */
static GError *
gw_cluster_pool_etcd_error(GError *error, const gchar *pool_name, const gchar *device)
{
    if (device != NULL)
        g_prefix_error(&error, "pool %s, device %s: ", pool_name, device);
    else
        g_prefix_error(&error, "pool %s: ", pool_name);
    return error;
}

/* ---- acquire ---- */

typedef struct {
    GwClusterPool *pool; /* owned ref */
    gchar *pool_name;
    gchar **devices;
    gchar *vm;
    GBytes *value;     /* what our put writes */
    guint index;       /* the candidate being tried */
    GHashTable *taken; /* keys (owned) of candidates held at the last read */
    guint reads;       /* reads of the pool so far */
} GwClusterPoolAcquire;

static void
gw_cluster_pool_acquire_free(GwClusterPoolAcquire *acquire)
{
    gw_cluster_pool_unref(acquire->pool);
    g_free(acquire->pool_name);
    g_strfreev(acquire->devices);
    g_free(acquire->vm);
    g_bytes_unref(acquire->value);
    g_hash_table_unref(acquire->taken);
    g_free(acquire);
}

static void gw_cluster_pool_acquire_next(GTask *task);

/* Counts our acquire transactions in flight on @key (@delta: +1, -1). */
static void
gw_cluster_pool_pending(GwClusterPool *pool, const gchar *key, gint delta)
{
    guint count = GPOINTER_TO_UINT(g_hash_table_lookup(pool->pending, key)) + delta;

    if (count == 0)
        g_hash_table_remove(pool->pending, key);
    else
        g_hash_table_replace(pool->pending, g_strdup(key), GUINT_TO_POINTER(count));
}

/* Records the hold on @device made at @revision and ends @task with it. */
static void
gw_cluster_pool_acquire_won(GTask *task, const gchar *device, gint64 revision)
{
    GwClusterPoolAcquire *acquire = g_task_get_task_data(task);
    GwClusterPool *pool = acquire->pool;
    GwClusterPoolHold *hold = g_new0(GwClusterPoolHold, 1);

    hold->pool = g_strdup(acquire->pool_name);
    hold->device = g_strdup(device);
    hold->gateway = g_strdup(pool->gateway);
    hold->vm = g_strdup(acquire->vm);
    hold->lease = pool->lease_id;
    hold->revision = revision;
    g_hash_table_replace(pool->held, gw_cluster_pool_key(acquire->pool_name, device),
                         gw_cluster_pool_hold_copy(hold));
    g_debug("pool %s: device %s lent by %s to VM %s (revision %" G_GINT64_FORMAT ")", hold->pool,
            hold->device, hold->gateway, hold->vm, revision);
    g_task_return_pointer(task, hold, (GDestroyNotify)gw_cluster_pool_hold_free);
}

/* The holder of each candidate in @kvs (the pool's keys), for a refusal:
 * "d1: G1 for V1, d2: free now". */
static gchar *
gw_cluster_pool_holders(GwClusterPoolAcquire *acquire, GHashTable *found)
{
    GString *holders = g_string_new(NULL);

    for (guint d = 0; acquire->devices[d] != NULL; d++) {
        g_autofree gchar *key = gw_cluster_pool_key(acquire->pool_name, acquire->devices[d]);
        const GwEtcdKv *kv = g_hash_table_lookup(found, key);
        g_autoptr(GwClusterPoolHold) hold = NULL;

        g_string_append_printf(holders, "%s%s: ", d > 0 ? ", " : "", acquire->devices[d]);
        if (kv == NULL) {
            g_string_append(holders, "free now");
            continue;
        }
        hold = gw_cluster_pool_parse_kv(kv, NULL);
        if (hold != NULL)
            g_string_append_printf(holders, "%s for %s", hold->gateway, hold->vm);
        else
            g_string_append(holders, "unreadable value");
    }
    return g_string_free(holders, FALSE);
}

/* The pool's keys were read: candidates that exist are skipped (one read
 * saves a transaction per held key), the others tried in order; when none
 * is free, the refusal names the holders. A candidate held with our lease
 * and our value that we do not know of is ours: an earlier try whose
 * answer was lost when a member went away created it (the retry then
 * found it taken), unless one of our transactions on it is still in
 * flight (another acquire of ours may be about to be told it won it). */
static void
gw_cluster_pool_acquire_read(GObject *source, GAsyncResult *result, gpointer user_data)
{
    g_autoptr(GTask) task = user_data;
    GwClusterPoolAcquire *acquire = g_task_get_task_data(task);
    GwClusterPool *pool = acquire->pool;
    g_autoptr(GError) error = NULL;
    g_autoptr(GPtrArray) kvs = gw_etcd_range_finish(GW_ETCD(source), result, NULL, NULL, &error);
    g_autoptr(GHashTable) found = g_hash_table_new(g_str_hash, g_str_equal);
    g_autofree gchar *holders = NULL;
    gboolean any_free = FALSE;

    if (kvs == NULL) {
        g_task_return_error(
            task, gw_cluster_pool_etcd_error(g_steal_pointer(&error), acquire->pool_name, NULL));
        return;
    }
    if (pool->lost_reason != NULL) {
        gw_cluster_pool_set_lost_error(pool, acquire->pool_name, &error);
        g_task_return_error(task, g_steal_pointer(&error));
        return;
    }
    for (guint i = 0; i < kvs->len; i++) {
        GwEtcdKv *kv = g_ptr_array_index(kvs, i);
        g_hash_table_insert(found, kv->key, kv);
    }
    g_hash_table_remove_all(acquire->taken);
    for (guint d = 0; acquire->devices[d] != NULL; d++) {
        g_autofree gchar *key = gw_cluster_pool_key(acquire->pool_name, acquire->devices[d]);
        const GwEtcdKv *kv = g_hash_table_lookup(found, key);

        if (kv == NULL) {
            any_free = TRUE;
            continue;
        }
        if (kv->lease == pool->lease_id && g_bytes_equal(kv->value, acquire->value) &&
            !g_hash_table_contains(pool->held, key) && !g_hash_table_contains(pool->pending, key)) {
            gw_cluster_pool_acquire_won(task, acquire->devices[d], kv->mod_revision);
            return;
        }
        g_hash_table_add(acquire->taken, g_steal_pointer(&key));
    }
    if (any_free && acquire->reads < GW_CLUSTER_POOL_ACQUIRE_READS) {
        acquire->index = 0;
        gw_cluster_pool_acquire_next(g_steal_pointer(&task));
        return;
    }
    holders = gw_cluster_pool_holders(acquire, found);
    g_task_return_new_error(task, GW_CLUSTER_POOL_ERROR, GW_CLUSTER_POOL_ERROR_ALL_HELD,
                            "pool %s: all %u keys are held (by %s)", acquire->pool_name,
                            g_strv_length(acquire->devices), holders);
}

static void
gw_cluster_pool_acquire_done(GObject *source, GAsyncResult *result, gpointer user_data)
{
    g_autoptr(GTask) task = user_data;
    GwClusterPoolAcquire *acquire = g_task_get_task_data(task);
    const gchar *device = acquire->devices[acquire->index];
    g_autofree gchar *key = gw_cluster_pool_key(acquire->pool_name, device);
    g_autoptr(GError) error = NULL;
    gboolean succeeded = FALSE;
    gint64 revision = 0;

    gw_cluster_pool_pending(acquire->pool, key, -1);
    if (!gw_etcd_txn_finish(GW_ETCD(source), result, &succeeded, &revision, &error)) {
        g_task_return_error(
            task, gw_cluster_pool_etcd_error(g_steal_pointer(&error), acquire->pool_name, device));
        return;
    }
    if (acquire->pool->lost_reason != NULL) {
        /* granted or not, the lease it would live under is gone */
        gw_cluster_pool_set_lost_error(acquire->pool, acquire->pool_name, &error);
        g_task_return_error(task, g_steal_pointer(&error));
        return;
    }
    if (succeeded) {
        gw_cluster_pool_acquire_won(task, device, revision);
        return;
    }
    acquire->index++;
    gw_cluster_pool_acquire_next(g_steal_pointer(&task));
}

/* Reads the pool's keys. Takes @task. */
static void
gw_cluster_pool_acquire_start_read(GTask *task)
{
    GwClusterPoolAcquire *acquire = g_task_get_task_data(task);
    g_autofree gchar *prefix = g_strconcat(GW_CLUSTER_POOL_PREFIX, acquire->pool_name, "/", NULL);

    acquire->reads++;
    gw_etcd_range_async(acquire->pool->etcd, prefix, TRUE, GW_CLUSTER_POOL_MAX_KEYS,
                        g_task_get_cancellable(task), gw_cluster_pool_acquire_read, task);
}

/* Tries the next candidate that was free when the pool was read and that
 * this gateway does not hold already; when every one failed, reads the
 * pool again (they were taken meanwhile). Takes @task. */
static void
gw_cluster_pool_acquire_next(GTask *task)
{
    GwClusterPoolAcquire *acquire = g_task_get_task_data(task);
    GwClusterPool *pool = acquire->pool;

    for (; acquire->devices[acquire->index] != NULL; acquire->index++) {
        g_autofree gchar *key =
            gw_cluster_pool_key(acquire->pool_name, acquire->devices[acquire->index]);
        g_autoptr(GwEtcdTxn) txn = NULL;

        if (g_hash_table_contains(acquire->taken, key) || g_hash_table_contains(pool->held, key))
            continue;
        txn = gw_etcd_txn_new();
        gw_etcd_txn_if_absent(txn, key);
        gw_etcd_txn_put(txn, TRUE, key, acquire->value, pool->lease_id);
        gw_cluster_pool_pending(pool, key, +1);
        gw_etcd_txn_async(pool->etcd, txn, g_task_get_cancellable(task),
                          gw_cluster_pool_acquire_done, task);
        return;
    }
    gw_cluster_pool_acquire_start_read(task);
}

void
gw_cluster_pool_acquire_async(GwClusterPool *pool, const gchar *pool_name,
                              const gchar *const *devices, const gchar *vm,
                              GCancellable *cancellable, GAsyncReadyCallback callback,
                              gpointer user_data)
{
    g_autoptr(GTask) task = g_task_new(NULL, cancellable, callback, user_data);
    g_autoptr(GError) error = NULL;
    GwClusterPoolAcquire *acquire;

    g_task_set_source_tag(task, gw_cluster_pool_acquire_async);
    if (!gw_cluster_pool_check_component("pool", pool_name, &error)) {
        g_task_return_error(task, g_steal_pointer(&error));
        return;
    }
    if (devices == NULL || devices[0] == NULL) {
        g_task_return_new_error(task, GW_CLUSTER_POOL_ERROR, GW_CLUSTER_POOL_ERROR_INVALID,
                                "pool %s: no candidate device", pool_name);
        return;
    }
    for (guint i = 0; devices[i] != NULL; i++) {
        if (!gw_cluster_pool_check_component("device", devices[i], &error)) {
            g_prefix_error(&error, "pool %s: ", pool_name);
            g_task_return_error(task, g_steal_pointer(&error));
            return;
        }
    }
    if (!gw_cluster_pool_check_text("VM", vm, &error)) {
        g_prefix_error(&error, "pool %s: ", pool_name);
        g_task_return_error(task, g_steal_pointer(&error));
        return;
    }
    if (pool->lost_reason != NULL) {
        gw_cluster_pool_set_lost_error(pool, pool_name, &error);
        g_task_return_error(task, g_steal_pointer(&error));
        return;
    }
    acquire = g_new0(GwClusterPoolAcquire, 1);
    acquire->pool = gw_cluster_pool_ref(pool);
    acquire->pool_name = g_strdup(pool_name);
    acquire->devices = g_strdupv((gchar **)devices);
    acquire->vm = g_strdup(vm);
    acquire->value = gw_cluster_pool_value(pool->gateway, vm);
    acquire->taken = g_hash_table_new_full(g_str_hash, g_str_equal, g_free, NULL);
    g_task_set_task_data(task, acquire, (GDestroyNotify)gw_cluster_pool_acquire_free);
    gw_cluster_pool_acquire_start_read(g_steal_pointer(&task));
}

GwClusterPoolHold *
gw_cluster_pool_acquire_finish(GwClusterPool *pool, GAsyncResult *result, GError **error)
{
    g_return_val_if_fail(g_task_is_valid(result, NULL), NULL);
    return g_task_propagate_pointer(G_TASK(result), error);
}

/* ---- release ---- */

typedef struct {
    GwClusterPool *pool; /* owned ref */
    gchar *pool_name;
    gchar *device;
    gchar *key;
    gint64 revision; /* the hold's */
} GwClusterPoolRelease;

static void
gw_cluster_pool_release_free(GwClusterPoolRelease *release)
{
    gw_cluster_pool_unref(release->pool);
    g_free(release->pool_name);
    g_free(release->device);
    g_free(release->key);
    g_free(release);
}

/* Forgets the hold released, unless a newer one (or none) is there. */
static void
gw_cluster_pool_forget(GwClusterPool *pool, const gchar *key, gint64 revision)
{
    GwClusterPoolHold *hold = g_hash_table_lookup(pool->held, key);

    if (hold != NULL && hold->revision == revision)
        g_hash_table_remove(pool->held, key);
}

static void
gw_cluster_pool_release_done(GObject *source, GAsyncResult *result, gpointer user_data)
{
    g_autoptr(GTask) task = user_data;
    GwClusterPoolRelease *release = g_task_get_task_data(task);
    g_autoptr(GError) error = NULL;
    gboolean succeeded = FALSE;
    gint64 revision = 0;

    if (!gw_etcd_txn_finish(GW_ETCD(source), result, &succeeded, &revision, &error)) {
        g_task_return_error(task, gw_cluster_pool_etcd_error(g_steal_pointer(&error),
                                                             release->pool_name, release->device));
        return;
    }
    gw_cluster_pool_forget(release->pool, release->key, release->revision);
    if (!succeeded) {
        g_task_return_new_error(task, GW_CLUSTER_POOL_ERROR, GW_CLUSTER_POOL_ERROR_NOT_HELD,
                                "pool %s, device %s: no longer held by gateway %s (its hold of "
                                "revision %" G_GINT64_FORMAT " expired; etcd left as it is)",
                                release->pool_name, release->device, release->pool->gateway,
                                release->revision);
        return;
    }
    g_debug("pool %s: device %s released by %s (revision %" G_GINT64_FORMAT ")", release->pool_name,
            release->device, release->pool->gateway, revision);
    g_task_return_int(task, revision);
}

void
gw_cluster_pool_release_async(GwClusterPool *pool, const gchar *pool_name, const gchar *device,
                              GCancellable *cancellable, GAsyncReadyCallback callback,
                              gpointer user_data)
{
    g_autoptr(GTask) task = g_task_new(NULL, cancellable, callback, user_data);
    g_autoptr(GError) error = NULL;
    g_autoptr(GwEtcdTxn) txn = NULL;
    GwClusterPoolRelease *release;
    GwClusterPoolHold *hold;
    g_autofree gchar *key = NULL;

    g_task_set_source_tag(task, gw_cluster_pool_release_async);
    if (!gw_cluster_pool_check_component("pool", pool_name, &error) ||
        !gw_cluster_pool_check_component("device", device, &error)) {
        g_task_return_error(task, g_steal_pointer(&error));
        return;
    }
    key = gw_cluster_pool_key(pool_name, device);
    hold = g_hash_table_lookup(pool->held, key);
    if (hold == NULL) {
        g_task_return_new_error(task, GW_CLUSTER_POOL_ERROR, GW_CLUSTER_POOL_ERROR_NOT_HELD,
                                "pool %s, device %s: not held by gateway %s", pool_name, device,
                                pool->gateway);
        return;
    }
    release = g_new0(GwClusterPoolRelease, 1);
    release->pool = gw_cluster_pool_ref(pool);
    release->pool_name = g_strdup(pool_name);
    release->device = g_strdup(device);
    release->key = g_steal_pointer(&key);
    release->revision = hold->revision;
    g_task_set_task_data(task, release, (GDestroyNotify)gw_cluster_pool_release_free);
    txn = gw_etcd_txn_new();
    gw_etcd_txn_if_mod_revision(txn, release->key, release->revision);
    gw_etcd_txn_delete(txn, TRUE, release->key);
    gw_etcd_txn_async(pool->etcd, txn, cancellable, gw_cluster_pool_release_done,
                      g_steal_pointer(&task));
}

gboolean
gw_cluster_pool_release_finish(GwClusterPool *pool, GAsyncResult *result, gint64 *revision,
                               GError **error)
{
    g_autoptr(GError) local = NULL;
    gssize value;

    g_return_val_if_fail(g_task_is_valid(result, NULL), FALSE);
    value = g_task_propagate_int(G_TASK(result), &local);
    if (local != NULL) {
        g_propagate_error(error, g_steal_pointer(&local));
        return FALSE;
    }
    if (revision != NULL)
        *revision = value;
    return TRUE;
}

/* ---- query ---- */

typedef struct {
    GPtrArray *holds;
    gint64 revision;
} GwClusterPoolQuery;

static void
gw_cluster_pool_query_free(GwClusterPoolQuery *query)
{
    g_clear_pointer(&query->holds, g_ptr_array_unref);
    g_free(query);
}

static void
gw_cluster_pool_query_done(GObject *source, GAsyncResult *result, gpointer user_data)
{
    g_autoptr(GTask) task = user_data;
    const gchar *pool_name = g_task_get_task_data(task);
    g_autoptr(GError) error = NULL;
    gint64 revision = 0;
    gboolean more = FALSE;
    g_autoptr(GPtrArray) kvs =
        gw_etcd_range_finish(GW_ETCD(source), result, &revision, &more, &error);
    g_autoptr(GPtrArray) holds =
        g_ptr_array_new_with_free_func((GDestroyNotify)gw_cluster_pool_hold_free);
    GwClusterPoolQuery *query;

    if (kvs == NULL) {
        g_task_return_error(task,
                            gw_cluster_pool_etcd_error(g_steal_pointer(&error), pool_name, NULL));
        return;
    }
    if (more) {
        g_task_return_new_error(task, GW_CLUSTER_POOL_ERROR, GW_CLUSTER_POOL_ERROR_TOO_MANY,
                                "pool %s: more than %d held keys", pool_name,
                                GW_CLUSTER_POOL_MAX_KEYS);
        return;
    }
    for (guint i = 0; i < kvs->len; i++) {
        GwClusterPoolHold *hold = gw_cluster_pool_parse_kv(g_ptr_array_index(kvs, i), &error);
        if (hold == NULL) {
            g_task_return_error(task, g_steal_pointer(&error));
            return;
        }
        g_ptr_array_add(holds, hold);
    }
    query = g_new0(GwClusterPoolQuery, 1);
    query->holds = g_steal_pointer(&holds);
    query->revision = revision;
    g_task_return_pointer(task, query, (GDestroyNotify)gw_cluster_pool_query_free);
}

void
gw_cluster_pool_query_async(GwClusterPool *pool, const gchar *pool_name, GCancellable *cancellable,
                            GAsyncReadyCallback callback, gpointer user_data)
{
    g_autoptr(GTask) task = g_task_new(NULL, cancellable, callback, user_data);
    g_autoptr(GError) error = NULL;
    g_autofree gchar *prefix = NULL;

    g_task_set_source_tag(task, gw_cluster_pool_query_async);
    if (pool_name != NULL && !gw_cluster_pool_check_component("pool", pool_name, &error)) {
        g_task_return_error(task, g_steal_pointer(&error));
        return;
    }
    /* the name errors speak of ("pool *" for every pool) */
    g_task_set_task_data(task, g_strdup(pool_name != NULL ? pool_name : "*"), g_free);
    prefix = pool_name != NULL ? g_strconcat(GW_CLUSTER_POOL_PREFIX, pool_name, "/", NULL)
                               : g_strdup(GW_CLUSTER_POOL_PREFIX);
    gw_etcd_range_async(pool->etcd, prefix, TRUE, GW_CLUSTER_POOL_MAX_KEYS, cancellable,
                        gw_cluster_pool_query_done, g_steal_pointer(&task));
}

GPtrArray *
gw_cluster_pool_query_finish(GwClusterPool *pool, GAsyncResult *result, gint64 *revision,
                             GError **error)
{
    GwClusterPoolQuery *query;
    GPtrArray *holds;

    g_return_val_if_fail(g_task_is_valid(result, NULL), NULL);
    query = g_task_propagate_pointer(G_TASK(result), error);
    if (query == NULL)
        return NULL;
    if (revision != NULL)
        *revision = query->revision;
    holds = g_steal_pointer(&query->holds);
    gw_cluster_pool_query_free(query);
    return holds;
}

/* ---- what we hold, and losing it ---- */

GPtrArray *
gw_cluster_pool_get_held(GwClusterPool *pool)
{
    GPtrArray *holds = g_ptr_array_new_with_free_func((GDestroyNotify)gw_cluster_pool_hold_free);
    GHashTableIter iter;
    gpointer value;

    g_hash_table_iter_init(&iter, pool->held);
    while (g_hash_table_iter_next(&iter, NULL, &value))
        g_ptr_array_add(holds, gw_cluster_pool_hold_copy(value));
    return holds;
}

GPtrArray *
gw_cluster_pool_lease_lost(GwClusterPool *pool, const GError *error)
{
    GPtrArray *holds = gw_cluster_pool_get_held(pool);

    if (pool->lost_reason == NULL)
        pool->lost_reason = g_strdup(error != NULL ? error->message : "lost");
    g_hash_table_remove_all(pool->held);
    g_message("gateway %s lost its etcd lease %" G_GINT64_FORMAT " (%s): %u pool keys are no "
              "longer held",
              pool->gateway, pool->lease_id, pool->lost_reason, holds->len);
    return holds;
}
