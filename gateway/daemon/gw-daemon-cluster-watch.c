/* usbgwd's cluster mode: the pool watch. Every pool key is read, then
 * watched; a key another gateway holds is out of the pool here
 * (gw_binder_set_elsewhere()), one that names this gateway but no hold of
 * it (an earlier lease's, an orphan of a retried transaction) is deleted
 * if it is still that put. */
#include "gw-daemon-cluster-private.h"

void
gw_daemon_cluster_set_holder(GwDaemonCluster *cluster, const gchar *id, const gchar *holder)
{
    if (holder != NULL)
        g_hash_table_replace(cluster->holders, g_strdup(id), g_strdup(holder));
    else
        g_hash_table_remove(cluster->holders, id);
    if (holder == NULL && g_hash_table_contains(cluster->lost, id))
        return; /* kept from its VM until we have a lease again */
    gw_binder_set_elsewhere(cluster->daemon->binder, id, holder, "cluster");
}

static void
gw_daemon_cluster_orphan_released(GObject *source, GAsyncResult *result, gpointer user_data)
{
    g_autoptr(GError) error = NULL;
    gboolean succeeded = FALSE;
    g_autofree gchar *key = user_data;

    if (!gw_etcd_txn_finish(GW_ETCD(source), result, &succeeded, NULL, &error)) {
        if (!g_error_matches(error, G_IO_ERROR, G_IO_ERROR_CANCELLED))
            g_message("cluster: %s left to expire with our lease: %s", key, error->message);
        return;
    }
    if (succeeded)
        g_message("cluster: %s (ours, for no VM here) deleted", key);
}

/* A pool key that names us but no VM of ours wants (an earlier run's, or a
 * transaction whose answer was lost): deleted if it is still that put. */
static void
gw_daemon_cluster_release_orphan(GwDaemonCluster *cluster, const GwEtcdKv *kv)
{
    g_autoptr(GwEtcdTxn) txn = gw_etcd_txn_new();

    gw_etcd_txn_if_mod_revision(txn, kv->key, kv->mod_revision);
    gw_etcd_txn_delete(txn, TRUE, kv->key);
    gw_etcd_txn_async(cluster->etcd, txn, cluster->cancellable, gw_daemon_cluster_orphan_released,
                      g_strdup(kv->key));
}

/* One pool key as the range or the watch gives it. */
static void
gw_daemon_cluster_pool_event(GwDaemonCluster *cluster, GwEtcdEventType type, const GwEtcdKv *kv)
{
    g_autofree gchar *pool_name = NULL;
    g_autofree gchar *name = NULL;
    g_autofree gchar *id = NULL;
    g_autoptr(GwClusterPoolHold) entry = NULL;
    g_autoptr(GError) error = NULL;
    g_autofree gchar *holder = NULL;
    GwDaemonHold *hold;

    if (!gw_cluster_pool_split_key(kv->key, &pool_name, &name) ||
        (id = gw_daemon_cluster_device_id(cluster, name)) == NULL) {
        g_autofree gchar *shown = g_strescape(kv->key, NULL);
        g_warning("cluster: ignored etcd key \"%s\": not a pool key", shown);
        return;
    }
    if (type == GW_ETCD_EVENT_DELETE) {
        gw_daemon_cluster_set_holder(cluster, id, NULL);
        return;
    }
    entry = gw_cluster_pool_parse_kv(kv, &error);
    if (entry == NULL) {
        /* whoever wrote it holds the key: never take it as free */
        g_warning("cluster: %s", error->message);
        gw_daemon_cluster_set_holder(cluster, id, "an unreadable etcd entry");
        return;
    }
    hold = g_hash_table_lookup(cluster->holds, id);
    if (g_strcmp0(entry->gateway, cluster->gateway) == 0) {
        /* ours: the put of a hold, or an orphan of this lease (a txn whose
         * answer was lost), or of an earlier lease (a lost one, an earlier
         * run of usbgwd) that has not expired yet: the name is ours, so
         * the key goes */
        if (cluster->lease != 0 && (entry->lease != cluster->lease || hold == NULL))
            gw_daemon_cluster_release_orphan(cluster, kv);
        gw_daemon_cluster_set_holder(cluster, id, NULL);
        return;
    }
    holder = g_strdup_printf("gateway %s for vm %s", entry->gateway, entry->vm);
    gw_daemon_cluster_set_holder(cluster, id, holder);
}

static void
gw_daemon_cluster_watched(GwEtcdWatch *watch, GPtrArray *events, const GError *error,
                          gpointer user_data)
{
    GwDaemonCluster *cluster = user_data;

    if (events == NULL) {
        /* the watch ended: read the pools again and watch anew */
        gw_daemon_cluster_set_error(cluster, error);
        g_clear_pointer(&cluster->watch, gw_etcd_watch_free);
        if (cluster->watch_retry == 0)
            cluster->watch_retry = g_timeout_add(GW_DAEMON_CLUSTER_RETRY_MS,
                                                 gw_daemon_cluster_read_pools_due, cluster);
        return;
    }
    for (guint i = 0; i < events->len; i++) {
        const GwEtcdEvent *event = g_ptr_array_index(events, i);
        gw_daemon_cluster_pool_event(cluster, event->type, event->kv);
    }
    gw_daemon_save_state(cluster->daemon);
}

/* Every pool key, then a watch from the revision after. */
static void
gw_daemon_cluster_pools_read(GObject *source, GAsyncResult *result, gpointer user_data)
{
    GwDaemonCluster *cluster = user_data;
    g_autoptr(GError) error = NULL;
    g_autoptr(GPtrArray) kvs = NULL;
    g_autoptr(GHashTable) seen = NULL;
    g_autoptr(GPtrArray) gone = NULL;
    GHashTableIter iter;
    gpointer key;
    gint64 revision = 0;
    gboolean more = FALSE;

    kvs = gw_etcd_range_finish(GW_ETCD(source), result, &revision, &more, &error);
    if (g_error_matches(error, G_IO_ERROR, G_IO_ERROR_CANCELLED))
        return;
    cluster->watch_reading = FALSE;
    if (kvs == NULL || more) {
        if (kvs != NULL)
            g_set_error(&error, GW_ETCD_ERROR, GW_ETCD_ERROR_TOO_LARGE,
                        "the pools hold over %d keys", GW_CLUSTER_POOL_MAX_KEYS);
        gw_daemon_cluster_set_error(cluster, error);
        cluster->watch_retry =
            g_timeout_add(GW_DAEMON_CLUSTER_RETRY_MS, gw_daemon_cluster_read_pools_due, cluster);
        return;
    }
    seen = g_hash_table_new_full(g_str_hash, g_str_equal, g_free, NULL);
    for (guint i = 0; i < kvs->len; i++) {
        const GwEtcdKv *kv = g_ptr_array_index(kvs, i);
        g_autofree gchar *pool_name = NULL;
        g_autofree gchar *name = NULL;
        gchar *id;
        if (gw_cluster_pool_split_key(kv->key, &pool_name, &name) &&
            (id = gw_daemon_cluster_device_id(cluster, name)) != NULL)
            g_hash_table_add(seen, id);
        gw_daemon_cluster_pool_event(cluster, GW_ETCD_EVENT_PUT, kv);
    }
    /* what was freed while nobody watched */
    gone = g_ptr_array_new_with_free_func(g_free);
    g_hash_table_iter_init(&iter, cluster->holders);
    while (g_hash_table_iter_next(&iter, &key, NULL))
        if (!g_hash_table_contains(seen, key))
            g_ptr_array_add(gone, g_strdup(key));
    for (guint i = 0; i < gone->len; i++)
        gw_daemon_cluster_set_holder(cluster, g_ptr_array_index(gone, i), NULL);
    cluster->watch = gw_etcd_watch_new(cluster->etcd, GW_CLUSTER_POOL_PREFIX, revision + 1,
                                       gw_daemon_cluster_watched, cluster);
    gw_daemon_save_state(cluster->daemon);
}

void
gw_daemon_cluster_read_pools(GwDaemonCluster *cluster)
{
    if (cluster->watch != NULL || cluster->watch_reading)
        return;
    cluster->watch_reading = TRUE;
    gw_etcd_range_async(cluster->etcd, GW_CLUSTER_POOL_PREFIX, TRUE, GW_CLUSTER_POOL_MAX_KEYS,
                        cluster->cancellable, gw_daemon_cluster_pools_read, cluster);
}

gboolean
gw_daemon_cluster_read_pools_due(gpointer user_data)
{
    GwDaemonCluster *cluster = user_data;
    cluster->watch_retry = 0;
    gw_daemon_cluster_read_pools(cluster);
    return G_SOURCE_REMOVE;
}
