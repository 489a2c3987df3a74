/* GwClusterRegistry: the cluster's directory of gateways and the devices
 * they export, kept in etcd (docs/cluster.md, "The directory"), from one
 * gateway's side: what it publishes, and its view of everyone's entries.
 *
 * Writes: the gateway's registration /usbgw/gateways/G = {"address": A or
 * null, "version": V} and one key /usbgw/devices/G/ID (the id escaped,
 * gw-cluster-registry-entry.h) per published device, all attached to the
 * gateway's etcd lease, so they go away with the gateway. publish() and
 * withdraw() only change the wanted set; the registry writes the
 * differences when it can (registration first, then the devices in
 * transactions of up to GW_CLUSTER_REGISTRY_TXN_OPS, a bounded number in
 * flight), retries with a backoff while etcd does not answer,
 * and writes everything again after start() with a new lease. After
 * lease_lost() it writes nothing until the next start().
 *
 * View: one range of /usbgw/ (when that answer would be too large: the
 * gateways, then each gateway's devices), then a watch from the read's
 * revision + 1. A watch that ends (compacted, or etcd unreachable) is
 * followed by a full read diffed against the view, so only real
 * differences are reported. A device is in the view while its gateway is
 * registered and the device key is under the same lease as the
 * registration; when the registration goes, its devices are reported lost
 * before gateway_gone, even if their keys linger until etcd deletes them
 * with the lease. Our own entries are reported too.
 *
 * Untrusted input: a bad key or value under the directory's prefixes is
 * logged (a warning naming the key, once per key and revision) and
 * skipped, as if absent. Bounds: GW_CLUSTER_REGISTRY_MAX_GATEWAYS gateways
 * and GW_CLUSTER_REGISTRY_MAX_DEVICES devices in the view (more are
 * skipped with a warning), GW_CLUSTER_REGISTRY_MAX_VALUE bytes per value.
 *
 * Threading: like GwEtcd, everything runs on the thread-default main
 * context of the thread that made the GwEtcd; call every function from
 * that thread. Events come on that context, never from inside a
 * gw_cluster_registry_*() call; an event handler may call any function
 * here, gw_cluster_registry_free() included (no event follows it).
 *
 * Ownership: the registry holds a reference on its GwEtcd; operations in
 * flight hold one on the registry (free it with gw_cluster_registry_free();
 * in-flight operations are cancelled and end on their own). */
#pragma once

#include "gw-cluster-registry-entry.h"
#include "gw-etcd.h"

G_BEGIN_DECLS

/* Most gateways and devices the view holds. */
#define GW_CLUSTER_REGISTRY_MAX_GATEWAYS 4096
#define GW_CLUSTER_REGISTRY_MAX_DEVICES  100000
/* Puts and deletes of devices per etcd transaction (etcd refuses more
 * than its --max-txn-ops, 128 by default), and transactions of one
 * registry in flight at once. */
#define GW_CLUSTER_REGISTRY_TXN_OPS       64
#define GW_CLUSTER_REGISTRY_MAX_IN_FLIGHT 4
/* Backoff of writes and reads after etcd did not answer: the first retry
 * after the first delay, doubling up to the most. */
#define GW_CLUSTER_REGISTRY_RETRY_FIRST_MS 200
#define GW_CLUSTER_REGISTRY_RETRY_MAX_MS   5000

typedef struct _GwClusterRegistry GwClusterRegistry;

typedef struct {
    /* gateway @gateway registered (or its address changed): @address
     * "HOST:PORT" its link listener, NULL when it exports nothing reachable */
    void (*gateway_up)(const gchar *gateway, const gchar *address, gpointer user_data);
    /* its registration key went away (lease expired or revoked, or it
     * deregistered); its devices were reported lost just before */
    void (*gateway_gone)(const gchar *gateway, gpointer user_data);
    /* gateway @gateway exports device @id (@device borrowed for the call);
     * again on a change of its description */
    void (*device_found)(const gchar *gateway, const gchar *id, const PolicyDevice *device,
                         gpointer user_data);
    void (*device_lost)(const gchar *gateway, const gchar *id, gpointer user_data);
} GwClusterRegistryEvents; /* every member optional (NULL) */

/* The directory as gateway @gateway (checked: gw_cluster_registry_check_
 * name) sees it and writes it. @address: our link listener "HOST:PORT", or
 * NULL (we export nothing reachable). @events is copied. Nothing is read
 * or written before gw_cluster_registry_start(). */
GwClusterRegistry *gw_cluster_registry_new(GwEtcd *etcd, const gchar *gateway, const gchar *address,
                                           const GwClusterRegistryEvents *events,
                                           gpointer user_data,
                                           GError **error) G_GNUC_WARN_UNUSED_RESULT;
void gw_cluster_registry_free(GwClusterRegistry *registry);
G_DEFINE_AUTOPTR_CLEANUP_FUNC(GwClusterRegistry, gw_cluster_registry_free)

/* (Re)registers under etcd lease @lease_id (> 0, kept alive by the
 * caller): puts the registration and every published device under it,
 * and starts (or keeps) the view's read and watch. Called again with a new
 * lease after a loss. */
void gw_cluster_registry_start(GwClusterRegistry *registry, gint64 lease_id);
/* Our lease was lost: no writes until the next start(); the view is kept. */
void gw_cluster_registry_lease_lost(GwClusterRegistry *registry);

/* Our device @id is exported: its description @device (copied) is put
 * under /usbgw/devices/G/ID; again updates it. Withdraw deletes it. Both
 * may be called at any time; the registry writes the wanted set when it
 * can. A bad id is refused with a warning naming it. */
void gw_cluster_registry_publish(GwClusterRegistry *registry, const gchar *id,
                                 const PolicyDevice *device);
void gw_cluster_registry_withdraw(GwClusterRegistry *registry, const gchar *id);

/* Whether the first full read of the directory came. */
gboolean gw_cluster_registry_is_synced(GwClusterRegistry *registry);
/* The last write's or read's failure (etcd unreachable), NULL once one
 * succeeded again. Borrowed until the next main-context iteration. */
const gchar *gw_cluster_registry_get_error(GwClusterRegistry *registry);
/* Whether every published device (and the registration) is written under
 * the current lease, nothing in flight. */
gboolean gw_cluster_registry_is_written(GwClusterRegistry *registry);

/* The directory as this gateway sees it, members added to @builder (an
 * object is open): "gateways": [{"name", "address", "devices": N}, …] in
 * name order, "devices": N, "synced": bool, "error": string or null. */
void gw_cluster_registry_to_json(GwClusterRegistry *registry, JsonBuilder *builder);
/* Registered gateways, and devices of registered gateways, in the view. */
guint gw_cluster_registry_count_gateways(GwClusterRegistry *registry);
guint gw_cluster_registry_count_devices(GwClusterRegistry *registry);
/* A device in the view (borrowed until the next main-context iteration),
 * or NULL. */
const PolicyDevice *gw_cluster_registry_lookup(GwClusterRegistry *registry, const gchar *gateway,
                                               const gchar *id);

G_END_DECLS
