/* GwClusterPool: one gateway's leases on the keys of cluster-wide pools,
 * kept in etcd (docs/cluster.md, "Pool leases").
 *
 * Key layout: the key D of pool P is held while /usbgw/pools/P/D exists;
 * its value is the JSON object {"gateway": G, "vm": V} naming the gateway
 * that lent it and the VM it was lent to, and it is attached to the
 * gateway's etcd lease, so it goes away with the gateway (the lease
 * expires when the gateway stops renewing it).
 *
 * Acquire: the pool's keys are read (one range); then, for each candidate
 * device that was free, in the caller's order, a transaction "if
 * /usbgw/pools/P/D does not exist, put it with our value and our lease";
 * the first that succeeds is the hold. etcd runs transactions one at a
 * time, so two gateways can never both create the same key: no key is
 * lent twice. When every candidate is taken (at the read, or by the time
 * our transactions ran and at a second read), the acquire fails with
 * GW_CLUSTER_POOL_ERROR_ALL_HELD, naming the holders.
 * Release: a transaction "if the key's mod_revision is still the one our
 * put made, delete it", so a key that was lost (lease expired) and taken
 * by another gateway meanwhile is never deleted by its former holder.
 *
 * Lease loss: the caller keeps the lease alive (a GwEtcdLeaseKeeper) and,
 * when the keeper reports it lost, calls gw_cluster_pool_lease_lost():
 * every hold is dropped (etcd deletes the keys with the lease, or will
 * when it expires) and returned, so the caller stops lending those
 * devices; later acquires fail with GW_CLUSTER_POOL_ERROR_LEASE_LOST.
 *
 * Names: pool names are 1 to GW_CLUSTER_POOL_MAX_NAME bytes of letters,
 * digits and "._:-" (no "/", so one pool's prefix never covers another's
 * keys); device names the same and "@#%+=," (gw_cluster_pool_device_name()
 * makes one of any device id); the gateway and VM names are non-empty UTF-8 of at most
 * GW_CLUSTER_POOL_MAX_NAME bytes. Anything else is
 * GW_CLUSTER_POOL_ERROR_INVALID naming it.
 *
 * Errors: every error names the pool (and the device when there is one);
 * an etcd failure keeps its GW_ETCD_ERROR domain and code (so
 * GW_ETCD_ERROR_UNREACHABLE can be told apart) with the pool and device
 * put in front of etcd's message.
 *
 * Threading: like GwEtcd, everything runs on the thread-default main
 * context of the thread that made the GwEtcd; call every function from
 * that thread. Callbacks come on that context.
 *
 * Ownership: GwClusterPool holds a reference on its GwEtcd; operations in
 * flight hold one on the GwClusterPool (a plain refcount: free it with
 * gw_cluster_pool_free(), in-flight operations finish on their own). */
#pragma once

#include "gw-etcd.h"

G_BEGIN_DECLS

#define GW_CLUSTER_POOL_ERROR (gw_cluster_pool_error_quark())
GQuark gw_cluster_pool_error_quark(void);

typedef enum {
    GW_CLUSTER_POOL_ERROR_INVALID,    /* a bad pool, device, gateway or VM name */
    GW_CLUSTER_POOL_ERROR_ALL_HELD,   /* every candidate key of the pool is held */
    GW_CLUSTER_POOL_ERROR_NOT_HELD,   /* release of a key this gateway does not hold */
    GW_CLUSTER_POOL_ERROR_LEASE_LOST, /* the gateway's etcd lease was lost */
    GW_CLUSTER_POOL_ERROR_BAD_ENTRY,  /* a pool key in etcd whose value is not ours to read */
    GW_CLUSTER_POOL_ERROR_TOO_MANY,   /* a query over GW_CLUSTER_POOL_MAX_KEYS keys */
} GwClusterPoolError;

/* Where the pools' keys live in etcd. */
#define GW_CLUSTER_POOL_PREFIX "/usbgw/pools/"
/* Longest pool, device, gateway or VM name, in bytes. */
#define GW_CLUSTER_POOL_MAX_NAME 128
/* Largest value of a pool key read back (ours are far smaller). */
#define GW_CLUSTER_POOL_MAX_VALUE 4096
/* Most keys one query returns (bounds the answer's memory). */
#define GW_CLUSTER_POOL_MAX_KEYS 100000

/* The device name of device id @id (any string): bytes other than letters,
 * digits and "._:-@#+=," become %XX. gw_cluster_pool_device_id() reverses
 * it (NULL: not such a name). Both owned by the caller. */
gchar *gw_cluster_pool_device_name(const gchar *id) G_GNUC_WARN_UNUSED_RESULT;
gchar *gw_cluster_pool_device_id(const gchar *name) G_GNUC_WARN_UNUSED_RESULT;

/* One held key of a pool, as etcd has it. */
typedef struct {
    gchar *pool;     /* owned */
    gchar *device;   /* owned */
    gchar *gateway;  /* owned */
    gchar *vm;       /* owned */
    gint64 lease;    /* the holder's etcd lease */
    gint64 revision; /* the put's revision: the hold's identity */
} GwClusterPoolHold;

void gw_cluster_pool_hold_free(GwClusterPoolHold *hold);
G_DEFINE_AUTOPTR_CLEANUP_FUNC(GwClusterPoolHold, gw_cluster_pool_hold_free)

/* A pool key as etcd holds it (a range's or a watch's put), read into a
 * hold (owned by the caller); BAD_ENTRY naming the key when it is not
 * POOL/DEVICE = {"gateway","vm"}. */
GwClusterPoolHold *gw_cluster_pool_parse_kv(const GwEtcdKv *kv,
                                            GError **error) G_GNUC_WARN_UNUSED_RESULT;
/* The pool and device names of pool key @key (a watch's delete has no
 * value); FALSE when it is not one. */
gboolean gw_cluster_pool_split_key(const gchar *key, gchar **pool_name, gchar **device);

typedef struct _GwClusterPool GwClusterPool;

/* The pool leases of gateway @gateway, attached to its etcd lease
 * @lease_id (kept alive by the caller). Fails (INVALID) on a bad gateway
 * name or a lease id of 0. */
GwClusterPool *gw_cluster_pool_new(GwEtcd *etcd, const gchar *gateway, gint64 lease_id,
                                   GError **error) G_GNUC_WARN_UNUSED_RESULT;
void gw_cluster_pool_free(GwClusterPool *pool);
G_DEFINE_AUTOPTR_CLEANUP_FUNC(GwClusterPool, gw_cluster_pool_free)

/* Acquires one key of @pool_name for @vm: the first of @devices (in that
 * order, NULL-terminated, at least one) that nobody holds. Candidates this
 * gateway already holds are skipped. */
void gw_cluster_pool_acquire_async(GwClusterPool *pool, const gchar *pool_name,
                                   const gchar *const *devices, const gchar *vm,
                                   GCancellable *cancellable, GAsyncReadyCallback callback,
                                   gpointer user_data);
/* The hold (owned by the caller), or NULL with ALL_HELD ("pool P: all N
 * keys are held (by D1: G1 for V1, …)"), LEASE_LOST, INVALID or an etcd
 * error. */
GwClusterPoolHold *gw_cluster_pool_acquire_finish(GwClusterPool *pool, GAsyncResult *result,
                                                  GError **error) G_GNUC_WARN_UNUSED_RESULT;

/* Releases this gateway's hold on @device of @pool_name: deletes the key
 * if it is still the one this gateway put. */
void gw_cluster_pool_release_async(GwClusterPool *pool, const gchar *pool_name, const gchar *device,
                                   GCancellable *cancellable, GAsyncReadyCallback callback,
                                   gpointer user_data);
/* TRUE when the key was deleted (@revision, nullable: the delete's). FALSE
 * with NOT_HELD when this gateway did not hold it or no longer did (it was
 * taken over after the lease expired; etcd was left alone), with an etcd
 * error when etcd did not answer (the hold is kept: try again). */
gboolean gw_cluster_pool_release_finish(GwClusterPool *pool, GAsyncResult *result, gint64 *revision,
                                        GError **error) G_GNUC_WARN_UNUSED_RESULT;

/* Who holds what: every held key of @pool_name, or of every pool when
 * @pool_name is NULL, from etcd, whichever gateway holds it. */
void gw_cluster_pool_query_async(GwClusterPool *pool, const gchar *pool_name,
                                 GCancellable *cancellable, GAsyncReadyCallback callback,
                                 gpointer user_data);
/* The holds (GwClusterPoolHold, in key order, owned by the array) and
 * @revision (nullable) the store's revision they were read at. A key whose
 * value is not {"gateway","vm"} is BAD_ENTRY naming the key. */
GPtrArray *gw_cluster_pool_query_finish(GwClusterPool *pool, GAsyncResult *result, gint64 *revision,
                                        GError **error) G_GNUC_WARN_UNUSED_RESULT;

/* What this gateway holds as far as it knows (GwClusterPoolHold copies,
 * owned by the caller), in no particular order. */
GPtrArray *gw_cluster_pool_get_held(GwClusterPool *pool);

/* The lease was lost (@error: the keeper's reason): every hold is dropped
 * and returned (owned by the caller) so the caller stops lending those
 * devices; every later acquire fails with LEASE_LOST, and an acquire in
 * flight that etcd still granted is not reported as a hold. */
GPtrArray *gw_cluster_pool_lease_lost(GwClusterPool *pool, const GError *error);

G_END_DECLS
