/* What gw-daemon-cluster.c (the lease, the holds, the directory),
 * gw-daemon-cluster-watch.c (the pool watch: what others hold) and
 * gw-daemon-cluster-status.c (status, list and metrics) share. Nothing
 * outside them includes it. Main thread only. */
#pragma once

#include "gw-daemon-private.h"

#include "gw-cluster-pool.h"
#include "gw-cluster-registry.h"
#include "gw-etcd.h"

G_BEGIN_DECLS

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
    GCancellable *cancellable; /* owned: cancelled when the daemon goes */
    /* the directory the daemon publishes to: the links' and the registry */
    GwDirectory directory;
    GwDirectory *links_directory; /* borrowed */
};

/* The last etcd problem (@error NULL: none; a new lease clears it). */
void gw_daemon_cluster_set_error(GwDaemonCluster *cluster, const GError *error);
/* "connecting", "up", "unreachable" or "lease-lost" (docs/cluster.md). */
const gchar *gw_daemon_cluster_current_state(GwDaemonCluster *cluster);
/* Why it is not "up" (borrowed), NULL while it is. */
const gchar *gw_daemon_cluster_current_error(GwDaemonCluster *cluster);
/* The binder id of the device named @name in etcd; NULL if no id. */
gchar *gw_daemon_cluster_device_id(GwDaemonCluster *cluster,
                                   const gchar *name) G_GNUC_WARN_UNUSED_RESULT;
/* The pool watch (gw-daemon-cluster-watch.c): reads every pool key, then
 * watches them; again after the watch ends. */
void gw_daemon_cluster_read_pools(GwDaemonCluster *cluster);
gboolean gw_daemon_cluster_read_pools_due(gpointer user_data);
/* Another gateway holds @id's key (@holder), or nobody does (NULL). */
void gw_daemon_cluster_set_holder(GwDaemonCluster *cluster, const gchar *id, const gchar *holder);

G_END_DECLS
