/* GwClusterRegistry's writes (gw-cluster-registry.h, "Writes"): the
 * registration, then the differences between the wanted set and what was
 * written under the current lease, in transactions of at most
 * GW_CLUSTER_REGISTRY_TXN_OPS, with a backoff while etcd does not answer. */
#include "gw-cluster-registry-private.h"

/* One write in flight: the registration's put, or a transaction of puts
 * and deletes of devices. */
typedef struct {
    GwClusterRegistry *registry; /* owned ref */
    GPtrArray *ids;              /* owned: the devices' ids (owned); NULL for the registration */
    GPtrArray *values;           /* owned: GBytes (owned) per id, NULL for a delete */
    guint generation;
} GwRegistryWrite;

static void
gw_registry_write_free(GwRegistryWrite *write)
{
    gw_cluster_registry_unref(write->registry);
    g_clear_pointer(&write->ids, g_ptr_array_unref);
    g_clear_pointer(&write->values, g_ptr_array_unref);
    g_free(write);
}

static gboolean
gw_registry_write_retry(gpointer user_data)
{
    GwClusterRegistry *registry = user_data;

    registry->write_retry_id = 0;
    gw_registry_flush(registry);
    return G_SOURCE_REMOVE;
}

/* A write ended (@error: NULL when it succeeded). */
static void
gw_registry_write_ended(GwRegistryWrite *write, const GError *error)
{
    GwClusterRegistry *registry = write->registry;
    g_autofree gchar *message = NULL;

    if (registry->closed)
        return;
    if (write->generation != registry->generation) {
        /* written under a lease given up since: start() writes it all again */
        gw_registry_flush(registry);
        return;
    }
    if (error == NULL) {
        if (write->ids == NULL)
            registry->registered = TRUE;
        for (guint i = 0; write->ids != NULL && i < write->ids->len; i++) {
            GBytes *value = g_ptr_array_index(write->values, i);
            if (value != NULL)
                g_hash_table_replace(registry->written, g_strdup(write->ids->pdata[i]),
                                     g_bytes_ref(value));
            else
                g_hash_table_remove(registry->written, write->ids->pdata[i]);
        }
        registry->write_backoff_ms = GW_CLUSTER_REGISTRY_RETRY_FIRST_MS;
        g_clear_pointer(&registry->write_error, g_free);
        gw_registry_flush(registry);
        return;
    }
    if (write->ids == NULL)
        message = g_strdup_printf("writing the registration: %s", error->message);
    else
        message = g_strdup_printf("writing %u devices (%s, …): %s", write->ids->len,
                                  (const gchar *)write->ids->pdata[0], error->message);
    gw_registry_set_error(&registry->write_error, message);
    if (g_error_matches(error, GW_ETCD_ERROR, GW_ETCD_ERROR_LEASE_NOT_FOUND)) {
        /* the keeper will say so too; nothing can be written before a new lease */
        g_message("gateway %s: %s; no more writes before a new lease", registry->gateway, message);
        registry->lost = TRUE;
        return;
    }
    g_message("gateway %s: %s; again in %u ms", registry->gateway, message,
              registry->write_backoff_ms);
    if (registry->write_retry_id == 0)
        registry->write_retry_id =
            g_timeout_add(registry->write_backoff_ms, gw_registry_write_retry, registry);
    registry->write_backoff_ms =
        MIN(registry->write_backoff_ms * 2, GW_CLUSTER_REGISTRY_RETRY_MAX_MS);
}

static void
gw_registry_register_cb(GObject *source, GAsyncResult *result, gpointer user_data)
{
    GwRegistryWrite *write = user_data;
    g_autoptr(GError) error = NULL;

    write->registry->registering = FALSE;
    if (!gw_etcd_put_finish(GW_ETCD(source), result, NULL, &error))
        gw_registry_write_ended(write, error);
    else
        gw_registry_write_ended(write, NULL);
    gw_registry_write_free(write);
}

static void
gw_registry_txn_cb(GObject *source, GAsyncResult *result, gpointer user_data)
{
    GwRegistryWrite *write = user_data;
    GwClusterRegistry *registry = write->registry;
    g_autoptr(GError) error = NULL;
    gboolean succeeded = FALSE;

    registry->writing--;
    for (guint i = 0; i < write->ids->len; i++)
        g_hash_table_remove(registry->in_flight, write->ids->pdata[i]);
    if (!gw_etcd_txn_finish(GW_ETCD(source), result, &succeeded, NULL, &error))
        gw_registry_write_ended(write, error);
    else
        gw_registry_write_ended(write, NULL);
    gw_registry_write_free(write);
}

static GwRegistryWrite *
gw_registry_write_new(GwClusterRegistry *registry, gboolean devices)
{
    GwRegistryWrite *write = g_new0(GwRegistryWrite, 1);

    write->registry = gw_cluster_registry_ref(registry);
    if (devices) {
        write->ids = g_ptr_array_new_with_free_func(g_free);
        write->values = g_ptr_array_new_with_free_func((GDestroyNotify)g_bytes_unref);
    }
    write->generation = registry->generation;
    return write;
}

/* Whether @id's wanted value is what was written. */
gboolean
gw_registry_is_clean(GwClusterRegistry *registry, const gchar *id)
{
    GBytes *want = g_hash_table_lookup(registry->wanted, id);
    GBytes *have = g_hash_table_lookup(registry->written, id);

    return want == have || (want != NULL && have != NULL && g_bytes_equal(want, have));
}

/* One transaction of at most GW_CLUSTER_REGISTRY_TXN_OPS puts and deletes
 * of dirty devices not in flight; FALSE when there was none. */
static gboolean
gw_registry_write_some(GwClusterRegistry *registry)
{
    g_autoptr(GwEtcdTxn) txn = NULL;
    GwRegistryWrite *write = NULL;
    GHashTableIter iter;
    gpointer id;

    g_hash_table_iter_init(&iter, registry->dirty);
    while (g_hash_table_iter_next(&iter, &id, NULL)) {
        g_autofree gchar *key = NULL;
        GBytes *want;

        if (g_hash_table_contains(registry->in_flight, id))
            continue;
        if (gw_registry_is_clean(registry, id)) {
            g_hash_table_iter_remove(&iter);
            continue;
        }
        if (txn == NULL) {
            txn = gw_etcd_txn_new();
            write = gw_registry_write_new(registry, TRUE);
        }
        want = g_hash_table_lookup(registry->wanted, id);
        key = gw_cluster_registry_device_key(registry->gateway, id);
        if (want != NULL)
            gw_etcd_txn_put(txn, TRUE, key, want, registry->lease_id);
        else
            gw_etcd_txn_delete(txn, TRUE, key);
        g_hash_table_add(registry->in_flight, g_strdup(id));
        g_ptr_array_add(write->ids, g_strdup(id));
        g_ptr_array_add(write->values, want != NULL ? g_bytes_ref(want) : NULL);
        if (write->ids->len == GW_CLUSTER_REGISTRY_TXN_OPS)
            break;
    }
    if (txn == NULL)
        return FALSE;
    registry->writing++;
    gw_etcd_txn_async(registry->etcd, txn, registry->cancellable, gw_registry_txn_cb, write);
    return TRUE;
}

/* Writes the differences between the wanted set and what was written
 * under the current lease: the registration first, then transactions of
 * up to GW_CLUSTER_REGISTRY_TXN_OPS puts and deletes (a device published
 * with others is one revision and one watch event batch for everyone, not
 * one each), at most GW_CLUSTER_REGISTRY_MAX_IN_FLIGHT at a time, an id in
 * one of them at most (so an id's writes land in order). */
void
gw_registry_flush(GwClusterRegistry *registry)
{
    g_autofree gchar *key = NULL;

    if (registry->closed || registry->lease_id == 0 || registry->lost ||
        registry->write_retry_id != 0)
        return;
    if (!registry->registered) {
        if (registry->registering)
            return;
        registry->registering = TRUE;
        key = gw_cluster_registry_gateway_key(registry->gateway);
        gw_etcd_put_async(registry->etcd, key, registry->registration, registry->lease_id,
                          registry->cancellable, gw_registry_register_cb,
                          gw_registry_write_new(registry, FALSE));
        return;
    }
    while (registry->writing < GW_CLUSTER_REGISTRY_MAX_IN_FLIGHT &&
           gw_registry_write_some(registry))
        ;
}
