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
 * here (gw_binder_set_elsewhere()); a key this gateway no longer holds
 * because its etcd lease was lost is taken from its VM at once. */
#include "gw-daemon-private.h"

#include <string.h>

#include "gw-cluster-pool.h"
#include "gw-cluster-registry.h"
#include "gw-etcd.h"
#include "gw-log.h"

/* Between attempts to reach etcd (a lease grant, an acquire, a release, the
 * pool watch) after a failure. */
#define GW_DAEMON_CLUSTER_RETRY_MS 2000
/* An acquire refused because the key is held is tried again after this
 * long, unless the pool watch says who holds it first. */
#define GW_DAEMON_CLUSTER_HELD_RETRY_MS 1000

typedef enum {
    GW_DAEMON_HOLD_WAITING,   /* the binding waits for the key's lease */
    GW_DAEMON_HOLD_HELD,      /* this gateway holds it for @vm */
    GW_DAEMON_HOLD_RELEASING, /* it is being given back */
} GwDaemonHoldState;

/* One pool key this gateway holds, or wants, in the cluster. */
typedef struct {
    GwDaemonCluster *cluster; /* borrowed */
    gchar *id;                /* owned: the binder's device id */
    gchar *name;              /* owned: the device's name in etcd */
    gchar *pool;              /* owned */
    gchar *vm;                /* owned: the VM the binding wants it for */
    gchar *asked_vm;          /* owned, nullable: the VM the acquire in flight asks for */
    gchar *held_vm;           /* owned, nullable: HELD, RELEASING: the VM etcd's entry names */
    GwDaemonHoldState state;
    gchar *reason;   /* owned, nullable: why it waits */
    gint64 revision; /* HELD: the revision of our put */
    gboolean wanted; /* the binder binds it to @vm */
    gboolean busy;   /* an etcd operation on it is in flight */
    guint retry;     /* a timer for the next attempt, 0: none */
} GwDaemonHold;

struct _GwDaemonCluster {
    GwDaemon *daemon;          /* borrowed: the cluster is the daemon's */
    gchar *gateway;            /* owned: our name */
    GwEtcd *etcd;              /* owned */
    GwEtcdLeaseKeeper *keeper; /* owned, nullable: while we have a lease */
    gint64 lease;
    gint64 ttl;
    GwClusterPool *pools;        /* owned, nullable: while we have a lease */
    GwClusterRegistry *registry; /* owned */
    GwEtcdWatch *watch;          /* owned, nullable: the pool watch */
    GHashTable *holds;           /* binder id → GwDaemonHold (owned) */
    GHashTable *holders;         /* binder id → "gateway G for vm V": others' holds */
    GHashTable *lost;            /* binder ids taken from their VMs when the lease was lost */
    gchar *error;                /* owned, nullable: the last etcd problem */
    gint64 error_us;             /* when it happened (monotonic) */
    gint64 lost_lease;           /* the lease lost last: revoked once a new one is had */
    guint grant_retry;           /* timer of the next lease grant, 0: none */
    guint watch_retry;           /* timer of the next pool read, 0: none */
    gboolean granting;           /* a lease grant is in flight */
    gint64 grant_sent_us;        /* when it was sent (monotonic) */
    gboolean watch_reading;      /* the pool read is in flight */
    guint64 lease_losses;
    guint64 acquires, refusals;
    GCancellable *cancellable; /* owned: cancelled when the daemon goes */
    /* the directory the daemon publishes to: the links' and the registry */
    GwDirectory directory;
    GwDirectory *links_directory; /* borrowed */
};

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
static void gw_daemon_cluster_read_pools(GwDaemonCluster *cluster);
static gboolean gw_daemon_cluster_read_pools_due(gpointer user_data);

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

/* The last etcd problem (@error NULL: none; a new lease clears it). */
static void
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
 * renewal (or a keepalive is overdue: half the TTL without one), else
 * "up". */
static const gchar *
gw_daemon_cluster_current_state(GwDaemonCluster *cluster)
{
    gint64 renewed;

    if (cluster->pools == NULL || cluster->keeper == NULL)
        return cluster->lease_losses > 0 ? "lease-lost"
               : cluster->error != NULL  ? "unreachable"
                                         : "connecting";
    renewed = gw_etcd_lease_keeper_get_renewed_at(cluster->keeper);
    if (g_get_monotonic_time() - renewed > cluster->ttl * G_USEC_PER_SEC / 2 ||
        (cluster->error != NULL && cluster->error_us > renewed))
        return "unreachable";
    return "up";
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
static gchar *
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
        cluster->acquires++;
        hold->state = GW_DAEMON_HOLD_HELD;
        hold->revision = got->revision;
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
        cluster->refusals++;
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

/* ---- what others hold: the pool watch ------------------------------------- */

/* Another gateway holds @id's key (@holder), or nobody does (NULL). */
static void
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
        g_warning("cluster: ignored etcd key \"%s\": not a pool key", kv->key);
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

static void
gw_daemon_cluster_read_pools(GwDaemonCluster *cluster)
{
    if (cluster->watch != NULL || cluster->watch_reading)
        return;
    cluster->watch_reading = TRUE;
    gw_etcd_range_async(cluster->etcd, GW_CLUSTER_POOL_PREFIX, TRUE, GW_CLUSTER_POOL_MAX_KEYS,
                        cluster->cancellable, gw_daemon_cluster_pools_read, cluster);
}

static gboolean
gw_daemon_cluster_read_pools_due(gpointer user_data)
{
    GwDaemonCluster *cluster = user_data;
    cluster->watch_retry = 0;
    gw_daemon_cluster_read_pools(cluster);
    return G_SOURCE_REMOVE;
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

static const gchar *
gw_daemon_hold_state_to_string(GwDaemonHoldState state)
{
    switch (state) {
    case GW_DAEMON_HOLD_WAITING:
        return "waiting";
    case GW_DAEMON_HOLD_HELD:
        return "held";
    case GW_DAEMON_HOLD_RELEASING:
        return "releasing";
    }
    return "unknown";
}

const gchar *
gw_daemon_cluster_state(GwDaemon *daemon)
{
    return daemon->cluster != NULL ? gw_daemon_cluster_current_state(daemon->cluster) : NULL;
}

static void
gw_daemon_cluster_hold_json(JsonBuilder *builder, const gchar *pool, const gchar *device,
                            const gchar *vm, const gchar *state, const gchar *reason)
{
    json_builder_begin_object(builder);
    json_builder_set_member_name(builder, "pool");
    json_builder_add_string_value(builder, pool);
    json_builder_set_member_name(builder, "device");
    if (device != NULL)
        json_builder_add_string_value(builder, device);
    else
        json_builder_add_null_value(builder);
    json_builder_set_member_name(builder, "vm");
    json_builder_add_string_value(builder, vm);
    json_builder_set_member_name(builder, "state");
    json_builder_add_string_value(builder, state);
    json_builder_set_member_name(builder, "reason");
    if (reason != NULL)
        json_builder_add_string_value(builder, reason);
    else
        json_builder_add_null_value(builder);
    json_builder_end_object(builder);
}

/* Running VMs of a pool that hold none of its keys here and ask for none
 * now (every key is held elsewhere, or taken): one "waiting" entry each,
 * the reason naming every key's holder. */
static void
gw_daemon_cluster_waiting_vms_json(GwDaemon *daemon, JsonBuilder *builder)
{
    GwDaemonCluster *cluster = daemon->cluster;
    Policy *policy = gw_binder_get_policy(daemon->binder);
    g_autoptr(GPtrArray) devices = gw_binder_list_devices(daemon->binder);
    g_autoptr(GPtrArray) vms = gw_binder_list_vms(daemon->binder);
    g_autoptr(GHashTable) done = g_hash_table_new(g_str_hash, g_str_equal);

    for (guint i = 0; i < devices->len; i++) {
        const GwBinderDevice *first = g_ptr_array_index(devices, i);
        const gchar *pool = first->decision.target;
        g_autoptr(GString) keys = NULL;

        if (first->decision.verdict != POLICY_VERDICT_ASSIGN ||
            first->decision.target_kind != POLICY_TARGET_POOL || pool == NULL ||
            g_hash_table_contains(done, pool))
            continue;
        g_hash_table_add(done, (gpointer)pool);
        for (guint v = 0; v < vms->len; v++) {
            const gchar *vm = g_ptr_array_index(vms, v);
            gboolean has = FALSE;
            GHashTableIter iter;
            gpointer value;

            if (!policy_decision_is_for_vm(policy, &first->decision, vm,
                                           gw_binder_get_vm_uuid(daemon->binder, vm)))
                continue;
            for (guint k = 0; k < devices->len && !has; k++) {
                const GwBinderDevice *dev = g_ptr_array_index(devices, k);
                has = g_strcmp0(dev->decision.target, pool) == 0 && g_strcmp0(dev->vm, vm) == 0;
            }
            g_hash_table_iter_init(&iter, cluster->holds);
            while (!has && g_hash_table_iter_next(&iter, NULL, &value)) {
                const GwDaemonHold *hold = value;
                has = g_strcmp0(hold->pool, pool) == 0 && g_strcmp0(hold->vm, vm) == 0 &&
                      hold->wanted;
            }
            if (has)
                continue;
            if (keys == NULL) {
                keys = g_string_new(NULL);
                for (guint k = 0; k < devices->len; k++) {
                    const GwBinderDevice *dev = g_ptr_array_index(devices, k);
                    const gchar *holder = gw_binder_get_elsewhere(daemon->binder, dev->id);
                    if (g_strcmp0(dev->decision.target, pool) != 0 ||
                        dev->decision.target_kind != POLICY_TARGET_POOL)
                        continue;
                    g_string_append_printf(keys, "%s%s: ", keys->len > 0 ? ", " : "", dev->id);
                    if (holder != NULL)
                        g_string_append(keys, holder);
                    else if (dev->vm != NULL)
                        g_string_append_printf(keys, "vm %s here", dev->vm);
                    else if (!dev->present)
                        g_string_append(keys, "absent");
                    else
                        g_string_append(keys, "free");
                }
                g_string_prepend(keys, "no key of the pool is free (");
                g_string_append(keys, ")");
            }
            gw_daemon_cluster_hold_json(builder, pool, NULL, vm, "waiting", keys->str);
        }
    }
}

void
gw_daemon_cluster_to_json(GwDaemon *daemon, JsonBuilder *builder)
{
    GwDaemonCluster *cluster = daemon->cluster;
    g_auto(GStrv) urls = NULL;
    g_autoptr(GList) ids = NULL;

    json_builder_begin_object(builder);
    gw_cluster_registry_to_json(cluster->registry, builder);
    json_builder_set_member_name(builder, "etcd");
    json_builder_begin_array(builder);
    urls = g_strsplit(daemon->config.cluster_etcd, ",", -1);
    for (guint i = 0; urls[i] != NULL; i++)
        json_builder_add_string_value(builder, g_strstrip(urls[i]));
    json_builder_end_array(builder);
    json_builder_set_member_name(builder, "gateway");
    json_builder_add_string_value(builder, cluster->gateway);
    json_builder_set_member_name(builder, "state");
    json_builder_add_string_value(builder, gw_daemon_cluster_current_state(cluster));
    /* the last etcd problem, while it matters */
    json_builder_set_member_name(builder, "error");
    if (cluster->error != NULL && g_strcmp0(gw_daemon_cluster_current_state(cluster), "up") != 0)
        json_builder_add_string_value(builder, cluster->error);
    else
        json_builder_add_null_value(builder);
    json_builder_set_member_name(builder, "lease");
    json_builder_add_int_value(builder, cluster->lease);
    json_builder_set_member_name(builder, "ttl");
    json_builder_add_int_value(builder, daemon->config.cluster_ttl);
    json_builder_set_member_name(builder, "lease_losses");
    json_builder_add_int_value(builder, (gint64)cluster->lease_losses);
    json_builder_set_member_name(builder, "holds");
    json_builder_begin_array(builder);
    ids = g_list_sort(g_hash_table_get_keys(cluster->holds), (GCompareFunc)strcmp);
    for (GList *l = ids; l != NULL; l = l->next) {
        const GwDaemonHold *hold = g_hash_table_lookup(cluster->holds, l->data);
        if (hold->state == GW_DAEMON_HOLD_WAITING && !hold->wanted)
            continue;
        gw_daemon_cluster_hold_json(builder, hold->pool, hold->id,
                                    hold->held_vm != NULL ? hold->held_vm : hold->vm,
                                    gw_daemon_hold_state_to_string(hold->state),
                                    hold->state == GW_DAEMON_HOLD_WAITING ? hold->reason : NULL);
    }
    gw_daemon_cluster_waiting_vms_json(daemon, builder);
    json_builder_end_array(builder);
    json_builder_end_object(builder);
}

gboolean
gw_daemon_cluster_waits(GwDaemon *daemon, const gchar *id)
{
    GwDaemonHold *hold;

    if (daemon->cluster == NULL)
        return FALSE;
    hold = g_hash_table_lookup(daemon->cluster->holds, id);
    return hold != NULL && hold->wanted && hold->state != GW_DAEMON_HOLD_HELD;
}

const gchar *
gw_daemon_cluster_device_note(GwDaemon *daemon, const gchar *id)
{
    GwDaemonHold *hold;

    if (daemon->cluster == NULL)
        return NULL;
    hold = g_hash_table_lookup(daemon->cluster->holds, id);
    if (hold != NULL && hold->state == GW_DAEMON_HOLD_WAITING && hold->wanted)
        return hold->reason;
    if (hold != NULL && hold->state == GW_DAEMON_HOLD_HELD)
        return "held here";
    return gw_binder_get_elsewhere(daemon->binder, id);
}

void
gw_daemon_cluster_counts(GwDaemon *daemon, GwDaemonClusterCounts *counts)
{
    GwDaemonCluster *cluster = daemon->cluster;
    GHashTableIter iter;
    gpointer value;

    memset(counts, 0, sizeof(*counts));
    if (cluster == NULL)
        return;
    counts->enabled = TRUE;
    counts->up = g_strcmp0(gw_daemon_cluster_current_state(cluster), "up") == 0;
    counts->lease_losses = cluster->lease_losses;
    counts->gateways = gw_cluster_registry_count_gateways(cluster->registry);
    counts->devices = gw_cluster_registry_count_devices(cluster->registry);
    g_hash_table_iter_init(&iter, cluster->holds);
    while (g_hash_table_iter_next(&iter, NULL, &value)) {
        const GwDaemonHold *hold = value;
        counts->held += hold->state == GW_DAEMON_HOLD_HELD;
        counts->waiting += hold->state == GW_DAEMON_HOLD_WAITING && hold->wanted;
    }
}
