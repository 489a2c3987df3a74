/* usbgwd's cluster mode (docs/cluster.md): the gateway's etcd lease, its
 * registration and exported devices in the cluster's directory, the
 * gateways it learns there dialled as link peers, and the cluster-wide
 * leases of pool keys.
 *
 * Pool keys: the binder decides locally which key of a pool a VM gets; in
 * cluster mode a binding of a pool key is served only once this gateway
 * holds the key's etcd lease (/usbgw/pools/POOL/DEVICE, gw-cluster-pool.h)
 * for that VM. Until then the binding waits (gw_daemon_cluster_wait()).
 * A key another gateway holds (the pool watch says so) is out of the pool
 * here (gw_binder_set_elsewhere(), gw-daemon-cluster-watch.c); a key this
 * gateway no longer holds because its etcd lease was lost is taken from
 * its VM at once. What usbgwctl and the metrics show of it is in
 * gw-daemon-cluster-status.c. */
#include "gw-daemon-cluster-private.h"

#include <string.h>

#include "gw-log.h"
/* What an etcd operation's callback needs to find its hold again; the
 * cluster is not touched when the operation was cancelled (the daemon
 * went). */
typedef struct {
    GwDaemonCluster *cluster;
    gchar *id;
} GwDaemonClusterCall;

static GwDaemonClusterCall *
gw_daemon_cluster_call_new(GwDaemonCluster *cluster, const gchar *id)
{
    GwDaemonClusterCall *call = g_new0(GwDaemonClusterCall, 1);
    call->cluster = cluster;
    call->id = g_strdup(id);
    return call;
}

static void
gw_daemon_cluster_call_free(GwDaemonClusterCall *call)
{
    g_free(call->id);
    g_free(call);
}
G_DEFINE_AUTOPTR_CLEANUP_FUNC(GwDaemonClusterCall, gw_daemon_cluster_call_free)

static void gw_daemon_cluster_kick(GwDaemonHold *hold);
static void gw_daemon_cluster_grant(GwDaemonCluster *cluster);

static void
gw_daemon_hold_free(gpointer data)
{
    GwDaemonHold *hold = data;
    g_clear_handle_id(&hold->retry, g_source_remove);
    g_free(hold->id);
    g_free(hold->name);
    g_free(hold->pool);
    g_free(hold->vm);
    g_free(hold->asked_vm);
    g_free(hold->held_vm);
    g_free(hold->reason);
    g_free(hold);
}

void
gw_daemon_cluster_set_error(GwDaemonCluster *cluster, const GError *error)
{
    if (error == NULL) {
        g_clear_pointer(&cluster->error, g_free);
        return;
    }
    if (g_strcmp0(cluster->error, error->message) != 0)
        g_warning("cluster: %s", error->message);
    g_free(cluster->error);
    cluster->error = g_strdup(error->message);
    cluster->error_us = g_get_monotonic_time();
}

/* Where the cluster stands for status and metrics: "connecting" before the
 * first lease, "lease-lost" while there is none after a loss,
 * "unreachable" while the lease is held but etcd failed since its last
 * renewal, or no endpoint answered since one failed (a request, a watch or
 * a keepalive: the first endpoint's timeout tells, not the last's), or a
 * keepalive is overdue (half the TTL without one), else "up". */
const gchar *
gw_daemon_cluster_current_state(GwDaemonCluster *cluster)
{
    gint64 renewed;

    if (cluster->pools == NULL || cluster->keeper == NULL)
        return cluster->lease_losses > 0 ? "lease-lost"
               : cluster->error != NULL  ? "unreachable"
                                         : "connecting";
    renewed = gw_etcd_lease_keeper_get_renewed_at(cluster->keeper);
    if (g_get_monotonic_time() - renewed > cluster->ttl * G_USEC_PER_SEC / 2 ||
        (cluster->error != NULL && cluster->error_us > renewed) ||
        gw_etcd_get_failure(cluster->etcd) != NULL)
        return "unreachable";
    return "up";
}

/* Why the state is not "up": the last failed operation's error while it
 * is newer than the last renewal, else the endpoint's that failed last;
 * NULL while up. */
const gchar *
gw_daemon_cluster_current_error(GwDaemonCluster *cluster)
{
    const gchar *failure = gw_etcd_get_failure(cluster->etcd);

    if (g_strcmp0(gw_daemon_cluster_current_state(cluster), "up") == 0)
        return NULL;
    if (cluster->error != NULL &&
        (cluster->keeper == NULL ||
         cluster->error_us > gw_etcd_lease_keeper_get_renewed_at(cluster->keeper)))
        return cluster->error;
    return failure != NULL ? failure : cluster->error;
}

/* A cluster record in the audit trail. */
static void
gw_daemon_cluster_audit(GwDaemonCluster *cluster, GwAuditKind kind, const GwDaemonHold *hold,
                        const gchar *vm, gint64 revision, const gchar *reason)
{
    GwInventoryDevice *inv = gw_inventory_lookup(cluster->daemon->inventory, hold->id);
    GwAuditEvent record = {
        .event = kind,
        .device_id = hold->id,
        .device = inv != NULL ? inv->desc : NULL,
        .vm = vm,
        .actor = "cluster",
        .reason = reason,
        .pool = hold->pool,
        .revision = revision,
    };
    gw_daemon_record(cluster->daemon, &record);
}

/* ---- names ----------------------------------------------------------------- */

/* The name of binder device @id in etcd: gateway-qualified, so that every
 * gateway names a key the same ("d1/0529:0001@1-1", escaped). */
static gchar *
gw_daemon_cluster_device_name(GwDaemonCluster *cluster, const gchar *id)
{
    g_autofree gchar *qualified = NULL;

    if (gw_daemon_is_remote(cluster->daemon, id))
        return gw_cluster_pool_device_name(id);
    qualified = g_strdup_printf("%s/%s", cluster->gateway, id);
    return gw_cluster_pool_device_name(qualified);
}

/* The binder id of the device named @name in etcd; NULL if no id. */
gchar *
gw_daemon_cluster_device_id(GwDaemonCluster *cluster, const gchar *name)
{
    g_autofree gchar *qualified = gw_cluster_pool_device_id(name);
    gsize ours = strlen(cluster->gateway);

    if (qualified == NULL)
        return NULL;
    if (strncmp(qualified, cluster->gateway, ours) == 0 && qualified[ours] == '/')
        return g_strdup(qualified + ours + 1);
    return g_steal_pointer(&qualified);
}

/* ---- holds ---------------------------------------------------------------- */

static void
gw_daemon_hold_wait(GwDaemonHold *hold, const gchar *reason)
{
    if (hold->state == GW_DAEMON_HOLD_WAITING && g_strcmp0(hold->reason, reason) != 0)
        gw_log_device(G_LOG_LEVEL_MESSAGE, hold->id, hold->vm, NULL,
                      "%s: vm \"%s\" waits for its cluster lease of pool \"%s\": %s", hold->id,
                      hold->vm, hold->pool, reason);
    g_free(hold->reason);
    hold->reason = g_strdup(reason);
}

static gboolean
gw_daemon_hold_retry_due(gpointer user_data)
{
    GwDaemonHold *hold = user_data;
    hold->retry = 0;
    gw_daemon_cluster_kick(hold);
    return G_SOURCE_REMOVE;
}

static void
gw_daemon_hold_retry(GwDaemonHold *hold, guint ms)
{
    if (hold->retry == 0)
        hold->retry = g_timeout_add(ms, gw_daemon_hold_retry_due, hold);
}

/* The hold is done with: out of the table (frees it). */
static void
gw_daemon_hold_drop(GwDaemonHold *hold)
{
    g_hash_table_remove(hold->cluster->holds, hold->id);
}

static void
gw_daemon_cluster_acquired(GObject *source, GAsyncResult *result, gpointer user_data)
{
    g_autoptr(GwDaemonClusterCall) call = user_data;
    GwDaemonCluster *cluster = call->cluster;
    const gchar *id = call->id;
    g_autoptr(GError) error = NULL;
    g_autoptr(GwClusterPoolHold) got = NULL;
    GwDaemonHold *hold;

    got = gw_cluster_pool_acquire_finish((GwClusterPool *)source, result, &error);
    if (g_error_matches(error, G_IO_ERROR, G_IO_ERROR_CANCELLED))
        return;
    /* a busy hold stays in the table */
    hold = g_hash_table_lookup(cluster->holds, id);
    g_return_if_fail(hold != NULL);
    hold->busy = FALSE;
    if (got != NULL) {
        hold->state = GW_DAEMON_HOLD_HELD;
        g_free(hold->held_vm);
        hold->held_vm = g_steal_pointer(&hold->asked_vm);
        g_clear_pointer(&hold->reason, g_free);
        gw_log_device(
            G_LOG_LEVEL_MESSAGE, id, hold->held_vm, NULL,
            "%s: cluster lease of pool \"%s\" held for vm \"%s\" (revision %" G_GINT64_FORMAT ")",
            id, hold->pool, hold->held_vm, got->revision);
        gw_daemon_cluster_audit(cluster, GW_AUDIT_CLUSTER_HOLD, hold, hold->held_vm, got->revision,
                                NULL);
        if (hold->wanted && g_strcmp0(hold->vm, hold->held_vm) == 0) {
            g_autofree gchar *vm = g_strdup(hold->vm);
            gw_daemon_serve_bind(cluster->daemon, id, vm, "cluster");
        } else {
            /* unbound, or bound to another VM of ours, meanwhile */
            gw_daemon_cluster_kick(hold);
        }
        gw_daemon_save_state(cluster->daemon);
        return;
    }
    g_clear_pointer(&hold->asked_vm, g_free);
    if (!hold->wanted) {
        gw_daemon_hold_drop(hold);
        return;
    }
    if (g_error_matches(error, GW_CLUSTER_POOL_ERROR, GW_CLUSTER_POOL_ERROR_ALL_HELD)) {
        gw_daemon_hold_wait(hold, error->message);
        /* the pool watch names the holder soon (and takes the key out of
         * the pool here); if it was freed meanwhile, the next try gets it */
        gw_daemon_hold_retry(hold, GW_DAEMON_CLUSTER_HELD_RETRY_MS);
        return;
    }
    if (error->domain == GW_ETCD_ERROR)
        gw_daemon_cluster_set_error(cluster, error);
    gw_daemon_hold_wait(hold, error->message);
    gw_daemon_hold_retry(hold, GW_DAEMON_CLUSTER_RETRY_MS);
}

static void
gw_daemon_cluster_released(GObject *source, GAsyncResult *result, gpointer user_data)
{
    g_autoptr(GwDaemonClusterCall) call = user_data;
    GwDaemonCluster *cluster = call->cluster;
    const gchar *id = call->id;
    g_autoptr(GError) error = NULL;
    gint64 revision = 0;
    gboolean ok =
        gw_cluster_pool_release_finish((GwClusterPool *)source, result, &revision, &error);
    GwDaemonHold *hold;

    if (g_error_matches(error, G_IO_ERROR, G_IO_ERROR_CANCELLED))
        return;
    hold = g_hash_table_lookup(cluster->holds, id);
    g_return_if_fail(hold != NULL);
    hold->busy = FALSE;
    if (!ok && error->domain == GW_ETCD_ERROR) {
        /* etcd did not answer: the key is still ours there, try again */
        gw_daemon_cluster_set_error(cluster, error);
        gw_daemon_hold_retry(hold, GW_DAEMON_CLUSTER_RETRY_MS);
        return;
    }
    if (ok) {
        gw_log_device(G_LOG_LEVEL_MESSAGE, id, hold->held_vm, NULL,
                      "%s: cluster lease of pool \"%s\" given back (vm \"%s\")", id, hold->pool,
                      hold->held_vm);
        gw_daemon_cluster_audit(cluster, GW_AUDIT_CLUSTER_RELEASE, hold, hold->held_vm, revision,
                                NULL);
    } else {
        gw_log_device(G_LOG_LEVEL_MESSAGE, id, hold->held_vm, NULL, "%s: %s", id, error->message);
    }
    g_clear_pointer(&hold->held_vm, g_free);
    if (hold->wanted) {
        /* bound again meanwhile: acquire anew */
        hold->state = GW_DAEMON_HOLD_WAITING;
        gw_daemon_cluster_kick(hold);
        return;
    }
    gw_daemon_hold_drop(hold);
}

/* Moves @hold on: acquire what a binding waits for, release what no
 * binding wants any more. One etcd operation at a time per hold. */
static void
gw_daemon_cluster_kick(GwDaemonHold *hold)
{
    GwDaemonCluster *cluster = hold->cluster;

    if (hold->busy || hold->retry != 0)
        return;
    if (cluster->pools == NULL) {
        if (hold->state == GW_DAEMON_HOLD_WAITING && hold->wanted)
            gw_daemon_hold_wait(hold,
                                cluster->error != NULL ? cluster->error : "no etcd lease yet");
        return;
    }
    if (hold->wanted && hold->state == GW_DAEMON_HOLD_WAITING) {
        const gchar *candidates[] = {hold->name, NULL};
        hold->busy = TRUE;
        g_free(hold->asked_vm);
        hold->asked_vm = g_strdup(hold->vm);
        gw_cluster_pool_acquire_async(cluster->pools, hold->pool, candidates, hold->vm,
                                      cluster->cancellable, gw_daemon_cluster_acquired,
                                      gw_daemon_cluster_call_new(cluster, hold->id));
        return;
    }
    if (hold->state == GW_DAEMON_HOLD_HELD &&
        (!hold->wanted || g_strcmp0(hold->vm, hold->held_vm) != 0)) {
        /* no binding wants it, or it is held for another VM of ours: it
         * goes back first (etcd's entry names the VM) */
        hold->state = GW_DAEMON_HOLD_RELEASING;
        hold->busy = TRUE;
        gw_cluster_pool_release_async(cluster->pools, hold->pool, hold->name, cluster->cancellable,
                                      gw_daemon_cluster_released,
                                      gw_daemon_cluster_call_new(cluster, hold->id));
        return;
    }
    if (!hold->wanted && hold->state == GW_DAEMON_HOLD_WAITING)
        gw_daemon_hold_drop(hold);
}

/* ---- the gateway's lease ---------------------------------------------------- */

static void
gw_daemon_cluster_kick_all(GwDaemonCluster *cluster)
{
    g_autoptr(GList) holds = g_hash_table_get_values(cluster->holds);
    for (GList *l = holds; l != NULL; l = l->next)
        gw_daemon_cluster_kick(l->data);
}

static gboolean
gw_daemon_cluster_grant_due(gpointer user_data)
{
    GwDaemonCluster *cluster = user_data;
    cluster->grant_retry = 0;
    gw_daemon_cluster_grant(cluster);
    return G_SOURCE_REMOVE;
}

static gboolean
gw_daemon_cluster_free_keeper(gpointer data)
{
    gw_etcd_lease_keeper_free(data);
    return G_SOURCE_REMOVE;
}

/* The keeper says our lease is gone (etcd expired it, or we could not
 * renew it in time): nothing of it is ours any more. Every pool key held
 * under it is taken from its VM now, before another gateway can have it. */
static void
gw_daemon_cluster_lease_lost(GwEtcdLeaseKeeper *keeper, const GError *error, gpointer user_data)
{
    GwDaemonCluster *cluster = user_data;
    g_autoptr(GPtrArray) dropped = NULL;
    g_autoptr(GList) holds = NULL;
    g_autoptr(GPtrArray) taken = g_ptr_array_new_with_free_func(gw_daemon_hold_free);
    g_autofree gchar *reason =
        g_strdup_printf("this gateway's cluster lease was lost: %s", error->message);

    cluster->lease_losses++;
    cluster->lost_lease = cluster->lease;
    gw_daemon_cluster_set_error(cluster, error);
    /* the keeper is in its own callback: it goes once this returns */
    g_idle_add(gw_daemon_cluster_free_keeper, keeper);
    cluster->keeper = NULL;
    dropped = gw_cluster_pool_lease_lost(cluster->pools, error);
    g_clear_pointer(&cluster->pools, gw_cluster_pool_free);
    cluster->lease = 0;
    gw_cluster_registry_lease_lost(cluster->registry);
    holds = g_hash_table_get_values(cluster->holds);
    for (GList *l = holds; l != NULL; l = l->next) {
        GwDaemonHold *hold = l->data;
        GwDaemonHold *copy;
        if (hold->state == GW_DAEMON_HOLD_WAITING)
            continue;
        g_hash_table_add(cluster->lost, g_strdup(hold->id));
        copy = g_new0(GwDaemonHold, 1);
        copy->id = g_strdup(hold->id);
        copy->vm = g_strdup(hold->held_vm != NULL ? hold->held_vm : hold->vm);
        copy->pool = g_strdup(hold->pool);
        g_ptr_array_add(taken, copy);
        hold->state = GW_DAEMON_HOLD_WAITING;
        g_clear_pointer(&hold->held_vm, g_free);
    }
    /* the binder unbinds them (our unbound hook lets the holds go) */
    for (guint i = 0; i < taken->len; i++) {
        GwDaemonHold *copy = g_ptr_array_index(taken, i);
        gw_binder_set_elsewhere(cluster->daemon->binder, copy->id, "nobody (lease lost)",
                                "cluster");
        gw_log_device(G_LOG_LEVEL_WARNING, copy->id, copy->vm, NULL, "%s: taken from vm \"%s\": %s",
                      copy->id, copy->vm, reason);
        gw_daemon_cluster_audit(cluster, GW_AUDIT_CLUSTER_LOST, copy, copy->vm, 0, reason);
    }
    gw_daemon_save_state(cluster->daemon);
    gw_daemon_cluster_grant(cluster);
}

static void
gw_daemon_cluster_old_revoked(GObject *source, GAsyncResult *result, gpointer user_data)
{
    g_autoptr(GError) error = NULL;

    if (gw_etcd_lease_revoke_finish(GW_ETCD(source), result, &error))
        g_message("cluster: the lease given up was still in etcd: revoked, its keys freed");
    else if (!g_error_matches(error, G_IO_ERROR, G_IO_ERROR_CANCELLED))
        g_debug("cluster: the lease given up: %s", error->message);
}

static void
gw_daemon_cluster_granted(GObject *source, GAsyncResult *result, gpointer user_data)
{
    GwDaemonCluster *cluster = user_data;
    g_autoptr(GError) error = NULL;
    g_autoptr(GList) lost = NULL;
    gint64 lease = 0, ttl = 0;

    if (!gw_etcd_lease_grant_finish(GW_ETCD(source), result, &lease, &ttl, &error)) {
        if (g_error_matches(error, G_IO_ERROR, G_IO_ERROR_CANCELLED))
            return;
        cluster->granting = FALSE;
        gw_daemon_cluster_set_error(cluster, error);
        cluster->grant_retry =
            g_timeout_add(GW_DAEMON_CLUSTER_RETRY_MS, gw_daemon_cluster_grant_due, cluster);
        return;
    }
    cluster->granting = FALSE;
    cluster->pools = gw_cluster_pool_new(cluster->etcd, cluster->gateway, lease, &error);
    if (cluster->pools == NULL) {
        /* our name was checked when the links started */
        g_warning("cluster: %s", error->message);
        return;
    }
    cluster->lease = lease;
    cluster->ttl = ttl;
    cluster->keeper =
        gw_etcd_lease_keeper_new(cluster->etcd, lease, ttl, gw_daemon_cluster_lease_lost, cluster);
    gw_daemon_cluster_set_error(cluster, NULL);
    g_message("cluster: gateway %s registered under etcd lease %" G_GINT64_FORMAT
              " (TTL %" G_GINT64_FORMAT " s) at %s",
              cluster->gateway, lease, ttl, gw_etcd_get_endpoint(cluster->etcd));
    gw_cluster_registry_start(cluster->registry, lease);
    if (cluster->lost_lease != 0) {
        /* if etcd still has the lease we gave up, its keys go now rather
         * than at its expiry (we stopped using them when we gave it up) */
        gw_etcd_lease_revoke_async(cluster->etcd, cluster->lost_lease, cluster->cancellable,
                                   gw_daemon_cluster_old_revoked, NULL);
        cluster->lost_lease = 0;
    }
    /* keys taken from their VMs when the last lease went may be had again */
    lost = g_hash_table_get_keys(cluster->lost);
    for (GList *l = lost; l != NULL; l = l->next) {
        g_autofree gchar *id = g_strdup(l->data);
        g_hash_table_remove(cluster->lost, id);
        if (!g_hash_table_contains(cluster->holders, id))
            gw_binder_set_elsewhere(cluster->daemon->binder, id, NULL, "cluster");
    }
    gw_daemon_cluster_read_pools(cluster);
    gw_daemon_cluster_kick_all(cluster);
}

static void
gw_daemon_cluster_grant(GwDaemonCluster *cluster)
{
    if (cluster->granting || cluster->pools != NULL || cluster->grant_retry != 0)
        return;
    cluster->granting = TRUE;
    cluster->grant_sent_us = g_get_monotonic_time();
    gw_etcd_lease_grant_async(cluster->etcd, cluster->daemon->config.cluster_ttl,
                              cluster->cancellable, gw_daemon_cluster_granted, cluster);
}

/* ---- the directory: links and registry ------------------------------------- */

static GwDaemonCluster *
gw_daemon_cluster_of_directory(GwDirectory *directory)
{
    return (GwDaemonCluster *)((gchar *)directory - G_STRUCT_OFFSET(GwDaemonCluster, directory));
}

static void
gw_daemon_cluster_publish(GwDirectory *directory, const gchar *id, const PolicyDevice *device)
{
    GwDaemonCluster *cluster = gw_daemon_cluster_of_directory(directory);
    gw_directory_publish(cluster->links_directory, id, device);
    gw_cluster_registry_publish(cluster->registry, id, device);
}

static void
gw_daemon_cluster_withdraw(GwDirectory *directory, const gchar *id)
{
    GwDaemonCluster *cluster = gw_daemon_cluster_of_directory(directory);
    gw_directory_withdraw(cluster->links_directory, id);
    gw_cluster_registry_withdraw(cluster->registry, id);
}

static void
gw_daemon_cluster_refresh(GwDirectory *directory)
{
    GwDaemonCluster *cluster = gw_daemon_cluster_of_directory(directory);
    gw_directory_refresh(cluster->links_directory);
}

static const GwDirectoryOps gw_daemon_cluster_directory_ops = {
    .publish = gw_daemon_cluster_publish,
    .withdraw = gw_daemon_cluster_withdraw,
    .refresh = gw_daemon_cluster_refresh,
};

/* A gateway registered: it becomes a link peer (the one whose name sorts
 * first dials). */
static void
gw_daemon_cluster_gateway_up(const gchar *gateway, const gchar *address, gpointer user_data)
{
    GwDaemonCluster *cluster = user_data;

    if (g_strcmp0(gateway, cluster->gateway) == 0 || address == NULL)
        return;
    g_message("cluster: gateway %s at %s", gateway, address);
    gw_links_add_peer(cluster->daemon->links, gateway, address);
}

/* Its registration went (its lease expired, it stopped): its devices
 * leave at once. */
static void
gw_daemon_cluster_gateway_gone(const gchar *gateway, gpointer user_data)
{
    GwDaemonCluster *cluster = user_data;

    if (g_strcmp0(gateway, cluster->gateway) == 0)
        return;
    g_message("cluster: gateway %s left the cluster", gateway);
    gw_links_remove_peer(cluster->daemon->links, gateway);
}

/* ---- the daemon's side ------------------------------------------------------ */

gboolean
gw_daemon_start_cluster(GwDaemon *daemon, GError **error)
{
    static const GwClusterRegistryEvents events = {
        .gateway_up = gw_daemon_cluster_gateway_up,
        .gateway_gone = gw_daemon_cluster_gateway_gone,
    };
    const GwConfig *config = &daemon->config;
    g_auto(GStrv) urls = NULL;
    GwDaemonCluster *cluster;

    if (config->cluster_etcd == NULL)
        return TRUE;
    g_return_val_if_fail(daemon->links != NULL, FALSE);
    urls = g_strsplit(config->cluster_etcd, ",", -1);
    for (guint i = 0; urls[i] != NULL; i++)
        g_strstrip(urls[i]);
    cluster = g_new0(GwDaemonCluster, 1);
    cluster->daemon = daemon;
    cluster->gateway = g_strdup(gw_links_get_name(daemon->links));
    cluster->holds = g_hash_table_new_full(g_str_hash, g_str_equal, NULL, gw_daemon_hold_free);
    cluster->holders = g_hash_table_new_full(g_str_hash, g_str_equal, g_free, g_free);
    cluster->lost = g_hash_table_new_full(g_str_hash, g_str_equal, g_free, NULL);
    cluster->cancellable = g_cancellable_new();
    cluster->directory.ops = &gw_daemon_cluster_directory_ops;
    cluster->links_directory = gw_links_get_directory(daemon->links);
    daemon->cluster = cluster;
    cluster->etcd = gw_etcd_new((const gchar *const *)urls, error);
    if (cluster->etcd == NULL)
        return FALSE;
    if ((config->cluster_etcd_cert != NULL || config->cluster_etcd_ca != NULL) &&
        !gw_etcd_set_tls(cluster->etcd, config->cluster_etcd_cert, config->cluster_etcd_key,
                         config->cluster_etcd_ca, error))
        return FALSE;
    cluster->registry = gw_cluster_registry_new(cluster->etcd, cluster->gateway,
                                                config->cluster_address, &events, cluster, error);
    if (cluster->registry == NULL)
        return FALSE;
    g_message("cluster: gateway %s, etcd %s, lease TTL %u s", cluster->gateway,
              config->cluster_etcd, config->cluster_ttl);
    gw_daemon_cluster_grant(cluster);
    return TRUE;
}

/* The revoke at a clean stop; the stop waits for it a while only. */
typedef struct {
    gboolean done;
    gboolean abandoned; /* the stop went on: the callback frees this */
} GwDaemonClusterRevoke;

static void
gw_daemon_cluster_revoked(GObject *source, GAsyncResult *result, gpointer user_data)
{
    GwDaemonClusterRevoke *revoke = user_data;
    g_autoptr(GError) error = NULL;

    if (!gw_etcd_lease_revoke_finish(GW_ETCD(source), result, &error))
        g_message("cluster: our lease is left to expire: %s", error->message);
    if (revoke->abandoned)
        g_free(revoke);
    else
        revoke->done = TRUE;
}

void
gw_daemon_cluster_free(GwDaemonCluster *cluster)
{
    gint64 until = g_get_monotonic_time() + 2 * G_USEC_PER_SEC;

    if (cluster == NULL)
        return;
    g_cancellable_cancel(cluster->cancellable);
    g_clear_pointer(&cluster->watch, gw_etcd_watch_free);
    g_clear_pointer(&cluster->keeper, gw_etcd_lease_keeper_free);
    g_clear_handle_id(&cluster->grant_retry, g_source_remove);
    g_clear_handle_id(&cluster->watch_retry, g_source_remove);
    g_clear_pointer(&cluster->registry, gw_cluster_registry_free);
    if (cluster->lease != 0) {
        /* a clean stop: our registration and pool keys go now, not after
         * the TTL (at most 2 s spent on it) */
        GwDaemonClusterRevoke *revoke = g_new0(GwDaemonClusterRevoke, 1);
        gw_etcd_lease_revoke_async(cluster->etcd, cluster->lease, NULL, gw_daemon_cluster_revoked,
                                   revoke);
        while (!revoke->done && g_get_monotonic_time() < until)
            if (!g_main_context_iteration(NULL, FALSE))
                g_usleep(5000);
        if (revoke->done)
            g_free(revoke);
        else
            revoke->abandoned = TRUE;
    }
    g_clear_pointer(&cluster->pools, gw_cluster_pool_free);
    g_hash_table_unref(cluster->holds);
    g_hash_table_unref(cluster->holders);
    g_hash_table_unref(cluster->lost);
    g_clear_object(&cluster->etcd);
    g_object_unref(cluster->cancellable);
    g_free(cluster->error);
    g_free(cluster->gateway);
    g_free(cluster);
}

GwDirectory *
gw_daemon_directory(GwDaemon *daemon)
{
    if (daemon->cluster != NULL)
        return &daemon->cluster->directory;
    return daemon->links != NULL ? gw_links_get_directory(daemon->links) : NULL;
}

gboolean
gw_daemon_cluster_wait(GwDaemon *daemon, const gchar *id, const gchar *vm)
{
    GwDaemonCluster *cluster = daemon->cluster;
    const GwBinderDevice *dev;
    GwDaemonHold *hold;

    if (cluster == NULL)
        return FALSE;
    dev = gw_binder_lookup(daemon->binder, id);
    if (dev == NULL || dev->manual_vm != NULL || dev->decision.verdict != POLICY_VERDICT_ASSIGN ||
        dev->decision.target_kind != POLICY_TARGET_POOL)
        return FALSE;
    hold = g_hash_table_lookup(cluster->holds, id);
    if (hold != NULL && hold->state == GW_DAEMON_HOLD_HELD && g_strcmp0(hold->held_vm, vm) == 0) {
        hold->wanted = TRUE;
        return FALSE;
    }
    if (hold == NULL) {
        hold = g_new0(GwDaemonHold, 1);
        hold->cluster = cluster;
        hold->id = g_strdup(id);
        hold->name = gw_daemon_cluster_device_name(cluster, id);
        hold->state = GW_DAEMON_HOLD_WAITING;
        g_hash_table_insert(cluster->holds, hold->id, hold);
    }
    g_free(hold->pool);
    hold->pool = g_strdup(dev->decision.target);
    /* held for another VM of ours: kick gives it back, then takes it anew */
    g_free(hold->vm);
    hold->vm = g_strdup(vm);
    hold->wanted = TRUE;
    gw_daemon_hold_wait(hold, cluster->pools != NULL ? "asking etcd" : "no etcd lease yet");
    gw_daemon_cluster_kick(hold);
    return TRUE;
}

void
gw_daemon_cluster_unbound(GwDaemon *daemon, const gchar *id, const gchar *vm)
{
    GwDaemonHold *hold;

    if (daemon->cluster == NULL)
        return;
    hold = g_hash_table_lookup(daemon->cluster->holds, id);
    if (hold == NULL || g_strcmp0(hold->vm, vm) != 0)
        return;
    hold->wanted = FALSE;
    gw_daemon_cluster_kick(hold);
}
