/* What the parts of GwClusterRegistry share (gw-cluster-registry.c: the
 * object, its events and the API; -view.c: the read and the watch; -write.c:
 * the wanted set written under the lease). Not for use outside them. */
#pragma once

#include "gw-cluster-registry.h"

/* One device of the view. */
typedef struct {
    PolicyDevice *device; /* owned */
    gint64 lease;         /* the lease its key is under */
    gboolean reported;    /* found was reported (and lost not since) */
    guint seen;           /* the last full read that had it */
} GwRegistryDevice;

/* One gateway of the view: registered, or only holding device keys (not
 * reported until it registers). */
typedef struct {
    gchar *name;         /* owned */
    gchar *address;      /* owned, nullable */
    gint64 lease;        /* its registration's lease */
    gboolean registered; /* its registration key is there */
    guint seen;          /* the last full read that had its registration */
    GHashTable *devices; /* owned: id (owned) -> GwRegistryDevice (owned) */
    guint reported;      /* devices reported found */
} GwRegistryGateway;

typedef enum {
    GW_REGISTRY_EVENT_UP,
    GW_REGISTRY_EVENT_GONE,
    GW_REGISTRY_EVENT_FOUND,
    GW_REGISTRY_EVENT_LOST,
} GwRegistryEventKind;

struct _GwClusterRegistry {
    gint refs;       /* the owner's, and one per operation in flight */
    gboolean closed; /* _free() was called: no more events nor operations */
    GwEtcd *etcd;    /* owned ref */
    gchar *gateway;  /* owned */
    gchar *address;  /* owned, nullable */
    GwClusterRegistryEvents events;
    gpointer user_data;
    GCancellable *cancellable; /* owned: cancelled by _free() */

    /* writes */
    gint64 lease_id;       /* 0 before the first start() */
    gboolean lost;         /* lease_lost() since the last start() */
    guint generation;      /* start() calls: a write of an older one is stale */
    GBytes *registration;  /* owned: our gateway key's value */
    gboolean registered;   /* the registration is written under lease_id */
    gboolean registering;  /* a registration put is in flight */
    GHashTable *wanted;    /* owned: id (owned) -> GBytes (owned) */
    GHashTable *written;   /* owned: id (owned) -> GBytes (owned), under lease_id */
    GHashTable *dirty;     /* owned: ids (owned) whose wanted and written may differ */
    GHashTable *in_flight; /* owned: ids (owned) with a put or delete in flight */
    guint writing;         /* transactions in flight */
    guint write_retry_id;  /* the backoff timer, 0 when none */
    guint write_backoff_ms;
    gchar *write_error; /* owned, nullable */

    /* view */
    gboolean view_started;
    gboolean synced;
    GHashTable *gateways; /* owned: name (owned) -> GwRegistryGateway (owned) */
    guint n_registered;   /* gateways registered */
    guint n_entries;      /* device entries held (reported or not) */
    guint n_reported;     /* devices reported found */
    guint read_count;     /* full reads applied (GwRegistryDevice.seen) */
    GwEtcdWatch *watch;   /* owned, nullable */
    gboolean reading;     /* a full read is in flight */
    GPtrArray *read_kvs;  /* owned, nullable: the paged read's pairs so far */
    GQueue read_pending;  /* gateway names (owned) whose devices the paged read still reads */
    gint64 read_revision; /* the paged read's first revision */
    guint read_retry_id;  /* the reread timer, 0 when none */
    guint read_backoff_ms;
    gchar *read_error;  /* owned, nullable */
    GHashTable *warned; /* owned: bad key (owned) -> its mod_revision logged, in a gint64 */
    GQueue queue;       /* GwRegistryEvent (owned) waiting for delivery */
    gboolean delivering;
};

/* gw-cluster-registry.c */
GwClusterRegistry *gw_cluster_registry_ref(GwClusterRegistry *registry);
void gw_cluster_registry_unref(GwClusterRegistry *registry);
void gw_registry_set_error(gchar **slot, const gchar *message);
/* Queues an event (copies of what it names) for gw_registry_deliver(). */
void gw_registry_queue(GwClusterRegistry *registry, GwRegistryEventKind kind, const gchar *gateway,
                       const gchar *id, const gchar *address, const PolicyDevice *device);
/* Delivers the queued events in order; a handler may free the registry
 * (the caller holds a reference), after which nothing more is delivered. */
void gw_registry_deliver(GwClusterRegistry *registry);

/* gw-cluster-registry-view.c */
void gw_registry_device_free(GwRegistryDevice *device);
void gw_registry_gateway_free(GwRegistryGateway *gateway);
/* The full read of the directory, then the watch from its revision. */
void gw_registry_read_start(GwClusterRegistry *registry);

/* gw-cluster-registry-write.c */
/* Whether device @id's written value is the wanted one, nothing in flight. */
gboolean gw_registry_is_clean(GwClusterRegistry *registry, const gchar *id);
/* Writes what differs from the wanted set, as far as the limits allow. */
void gw_registry_flush(GwClusterRegistry *registry);
