/* GwClusterRegistry (gw-cluster-registry.h): the wanted set written as the
 * differences from what was written under the current lease, and the view
 * kept from one read and a watch, its changes queued as events and
 * delivered once the state is updated. */
#include <string.h>

#include "gw-cluster-registry.h"

/* Keys a first read asks for at most: the directory's and some of the
 * pools' (a read that would return more is done gateway by gateway). */
#define GW_CLUSTER_REGISTRY_READ_LIMIT                                                             \
    (GW_CLUSTER_REGISTRY_MAX_GATEWAYS + GW_CLUSTER_REGISTRY_MAX_DEVICES + 10000)
/* Bad keys remembered so that each is logged once (then forgotten all). */
#define GW_CLUSTER_REGISTRY_MAX_WARNED 4096

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

/* An event queued for delivery, with copies of what it names. */
typedef struct {
    GwRegistryEventKind kind;
    gchar *gateway;       /* owned */
    gchar *id;            /* owned, nullable */
    gchar *address;       /* owned, nullable */
    PolicyDevice *device; /* owned, nullable */
} GwRegistryEvent;

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

/* ---- small things ---- */

static void
gw_registry_device_free(GwRegistryDevice *device)
{
    policy_device_free(device->device);
    g_free(device);
}

static void
gw_registry_gateway_free(GwRegistryGateway *gateway)
{
    g_free(gateway->name);
    g_free(gateway->address);
    g_hash_table_unref(gateway->devices);
    g_free(gateway);
}

static void
gw_registry_event_free(GwRegistryEvent *event)
{
    g_free(event->gateway);
    g_free(event->id);
    g_free(event->address);
    if (event->device != NULL)
        policy_device_free(event->device);
    g_free(event);
}

static GwClusterRegistry *
gw_cluster_registry_ref(GwClusterRegistry *registry)
{
    registry->refs++;
    return registry;
}

static void
gw_cluster_registry_unref(GwClusterRegistry *registry)
{
    if (--registry->refs > 0)
        return;
    g_queue_clear_full(&registry->queue, (GDestroyNotify)gw_registry_event_free);
    g_queue_clear_full(&registry->read_pending, g_free);
    g_clear_pointer(&registry->read_kvs, g_ptr_array_unref);
    g_hash_table_unref(registry->gateways);
    g_hash_table_unref(registry->warned);
    g_hash_table_unref(registry->wanted);
    g_hash_table_unref(registry->written);
    g_hash_table_unref(registry->dirty);
    g_hash_table_unref(registry->in_flight);
    g_bytes_unref(registry->registration);
    g_object_unref(registry->cancellable);
    g_object_unref(registry->etcd);
    g_free(registry->gateway);
    g_free(registry->address);
    g_free(registry->write_error);
    g_free(registry->read_error);
    g_free(registry);
}

static void
gw_registry_set_error(gchar **slot, const gchar *message)
{
    g_free(*slot);
    *slot = g_strdup(message);
}

/* ---- events ---- */

static void
gw_registry_queue(GwClusterRegistry *registry, GwRegistryEventKind kind, const gchar *gateway,
                  const gchar *id, const gchar *address, const PolicyDevice *device)
{
    GwRegistryEvent *event = g_new0(GwRegistryEvent, 1);

    event->kind = kind;
    event->gateway = g_strdup(gateway);
    event->id = g_strdup(id);
    event->address = g_strdup(address);
    event->device = device != NULL ? policy_device_copy(device) : NULL;
    g_queue_push_tail(&registry->queue, event);
}

/* Delivers the queued events in order; a handler may free the registry
 * (the caller holds a reference), after which nothing more is delivered. */
static void
gw_registry_deliver(GwClusterRegistry *registry)
{
    const GwClusterRegistryEvents *events = &registry->events;
    GwRegistryEvent *event;

    if (registry->delivering)
        return;
    registry->delivering = TRUE;
    while (!registry->closed && (event = g_queue_pop_head(&registry->queue)) != NULL) {
        switch (event->kind) {
        case GW_REGISTRY_EVENT_UP:
            if (events->gateway_up != NULL)
                events->gateway_up(event->gateway, event->address, registry->user_data);
            break;
        case GW_REGISTRY_EVENT_GONE:
            if (events->gateway_gone != NULL)
                events->gateway_gone(event->gateway, registry->user_data);
            break;
        case GW_REGISTRY_EVENT_FOUND:
            if (events->device_found != NULL)
                events->device_found(event->gateway, event->id, event->device, registry->user_data);
            break;
        case GW_REGISTRY_EVENT_LOST:
            if (events->device_lost != NULL)
                events->device_lost(event->gateway, event->id, registry->user_data);
            break;
        }
        gw_registry_event_free(event);
    }
    registry->delivering = FALSE;
}

/* ---- the view ---- */

/* Logs a bad key once per key and revision. */
static void
gw_registry_warn_bad(GwClusterRegistry *registry, const GwEtcdKv *kv, const GError *error)
{
    gint64 *logged = g_hash_table_lookup(registry->warned, kv->key);
    g_autofree gchar *shown = NULL;

    if (logged != NULL && *logged == kv->mod_revision)
        return;
    if (g_hash_table_size(registry->warned) >= GW_CLUSTER_REGISTRY_MAX_WARNED)
        g_hash_table_remove_all(registry->warned);
    g_hash_table_replace(registry->warned, g_strdup(kv->key), g_memdup2(&kv->mod_revision, 8));
    shown = g_strescape(kv->key, NULL);
    g_warning("directory (gateway %s): etcd key \"%s\" (revision %" G_GINT64_FORMAT ") skipped: %s",
              registry->gateway, shown, kv->mod_revision, error->message);
}

static GwRegistryGateway *
gw_registry_gateway_get(GwClusterRegistry *registry, const gchar *name, const GwEtcdKv *kv)
{
    GwRegistryGateway *gateway = g_hash_table_lookup(registry->gateways, name);
    g_autoptr(GError) error = NULL;

    if (gateway != NULL)
        return gateway;
    if (g_hash_table_size(registry->gateways) >= GW_CLUSTER_REGISTRY_MAX_GATEWAYS) {
        error = g_error_new(GW_CLUSTER_REGISTRY_ERROR, GW_CLUSTER_REGISTRY_ERROR_TOO_LARGE,
                            "the view already holds %d gateways", GW_CLUSTER_REGISTRY_MAX_GATEWAYS);
        gw_registry_warn_bad(registry, kv, error);
        return NULL;
    }
    gateway = g_new0(GwRegistryGateway, 1);
    gateway->name = g_strdup(name);
    gateway->devices = g_hash_table_new_full(g_str_hash, g_str_equal, g_free,
                                             (GDestroyNotify)gw_registry_device_free);
    g_hash_table_insert(registry->gateways, gateway->name, gateway);
    return gateway;
}

/* Forgets @gateway when nothing of it is left. */
static void
gw_registry_gateway_prune(GwClusterRegistry *registry, GwRegistryGateway *gateway)
{
    if (!gateway->registered && g_hash_table_size(gateway->devices) == 0)
        g_hash_table_remove(registry->gateways, gateway->name);
}

/* Sets whether @device (of @gateway, named @id) is reported, queueing
 * found or lost; @changed: its description changed since it was. */
static void
gw_registry_device_report(GwClusterRegistry *registry, GwRegistryGateway *gateway, const gchar *id,
                          GwRegistryDevice *device, gboolean changed)
{
    gboolean visible = gateway->registered && gateway->lease == device->lease;

    if (visible && (!device->reported || changed))
        gw_registry_queue(registry, GW_REGISTRY_EVENT_FOUND, gateway->name, id, NULL,
                          device->device);
    else if (!visible && device->reported)
        gw_registry_queue(registry, GW_REGISTRY_EVENT_LOST, gateway->name, id, NULL, NULL);
    if (visible != device->reported) {
        gateway->reported += visible ? 1 : -1;
        registry->n_reported += visible ? 1 : -1;
    }
    device->reported = visible;
}

static void
gw_registry_gateway_reevaluate(GwClusterRegistry *registry, GwRegistryGateway *gateway)
{
    GHashTableIter iter;
    gpointer id, device;

    g_hash_table_iter_init(&iter, gateway->devices);
    while (g_hash_table_iter_next(&iter, &id, &device))
        gw_registry_device_report(registry, gateway, id, device, FALSE);
}

static void
gw_registry_delete_gateway(GwClusterRegistry *registry, const gchar *name)
{
    GwRegistryGateway *gateway = g_hash_table_lookup(registry->gateways, name);

    if (gateway == NULL || !gateway->registered)
        return;
    gateway->registered = FALSE;
    registry->n_registered--;
    gw_registry_gateway_reevaluate(registry, gateway);
    gw_registry_queue(registry, GW_REGISTRY_EVENT_GONE, name, NULL, NULL, NULL);
    g_debug("directory (gateway %s): gateway %s gone", registry->gateway, name);
    gw_registry_gateway_prune(registry, gateway);
}

static void
gw_registry_delete_device(GwClusterRegistry *registry, const gchar *name, const gchar *id)
{
    GwRegistryGateway *gateway = g_hash_table_lookup(registry->gateways, name);
    GwRegistryDevice *device = gateway != NULL ? g_hash_table_lookup(gateway->devices, id) : NULL;

    if (device == NULL)
        return;
    device->lease = -1; /* never visible: reported lost */
    gw_registry_device_report(registry, gateway, id, device, FALSE);
    g_hash_table_remove(gateway->devices, id);
    registry->n_entries--;
    gw_registry_gateway_prune(registry, gateway);
}

static void
gw_registry_put_gateway(GwClusterRegistry *registry, const gchar *name, const GwEtcdKv *kv)
{
    g_autoptr(GError) error = NULL;
    g_autofree gchar *address = NULL;
    gsize len = 0;
    const gchar *data = g_bytes_get_data(kv->value, &len);
    GwRegistryGateway *gateway;
    gboolean moved, released;

    if (!gw_cluster_registry_parse_gateway_value(data, len, &address, &error)) {
        gw_registry_warn_bad(registry, kv, error);
        gw_registry_delete_gateway(registry, name);
        return;
    }
    gateway = gw_registry_gateway_get(registry, name, kv);
    if (gateway == NULL)
        return;
    gateway->seen = registry->read_count;
    moved = !gateway->registered || g_strcmp0(gateway->address, address) != 0;
    released = !gateway->registered || gateway->lease != kv->lease;
    if (!gateway->registered)
        registry->n_registered++;
    gateway->registered = TRUE;
    gateway->lease = kv->lease;
    g_free(gateway->address);
    gateway->address = g_steal_pointer(&address);
    if (moved) {
        g_debug("directory (gateway %s): gateway %s up at %s", registry->gateway, name,
                gateway->address != NULL ? gateway->address : "(no address)");
        gw_registry_queue(registry, GW_REGISTRY_EVENT_UP, name, NULL, gateway->address, NULL);
    }
    if (released)
        gw_registry_gateway_reevaluate(registry, gateway);
}

static void
gw_registry_put_device(GwClusterRegistry *registry, const gchar *name, const gchar *id,
                       const GwEtcdKv *kv)
{
    g_autoptr(GError) error = NULL;
    g_autoptr(PolicyDevice) parsed = NULL;
    gsize len = 0;
    const gchar *data = g_bytes_get_data(kv->value, &len);
    GwRegistryGateway *gateway;
    GwRegistryDevice *device;
    gboolean changed;

    parsed = gw_cluster_registry_parse_device_value(data, len, &error);
    if (parsed == NULL) {
        gw_registry_warn_bad(registry, kv, error);
        gw_registry_delete_device(registry, name, id);
        return;
    }
    gateway = gw_registry_gateway_get(registry, name, kv);
    if (gateway == NULL)
        return;
    device = g_hash_table_lookup(gateway->devices, id);
    if (device == NULL) {
        if (registry->n_entries >= GW_CLUSTER_REGISTRY_MAX_DEVICES) {
            error =
                g_error_new(GW_CLUSTER_REGISTRY_ERROR, GW_CLUSTER_REGISTRY_ERROR_TOO_LARGE,
                            "the view already holds %d devices", GW_CLUSTER_REGISTRY_MAX_DEVICES);
            gw_registry_warn_bad(registry, kv, error);
            gw_registry_gateway_prune(registry, gateway);
            return;
        }
        device = g_new0(GwRegistryDevice, 1);
        g_hash_table_insert(gateway->devices, g_strdup(id), device);
        registry->n_entries++;
    }
    device->seen = registry->read_count;
    changed = device->device == NULL || !gw_cluster_registry_device_equal(device->device, parsed);
    if (changed) {
        g_clear_pointer(&device->device, policy_device_free);
        device->device = g_steal_pointer(&parsed);
    }
    device->lease = kv->lease;
    gw_registry_device_report(registry, gateway, id, device, changed);
}

/* One pair or event of the directory's prefix. */
static void
gw_registry_apply(GwClusterRegistry *registry, const GwEtcdKv *kv, gboolean deleted)
{
    g_autoptr(GError) error = NULL;
    g_autofree gchar *name = NULL;
    g_autofree gchar *id = NULL;
    GwClusterRegistryKeyKind kind;

    if (!gw_cluster_registry_parse_key(kv->key, kv->key_len, &kind, &name, &id, &error)) {
        if (!deleted)
            gw_registry_warn_bad(registry, kv, error);
        return;
    }
    switch (kind) {
    case GW_CLUSTER_REGISTRY_KEY_OTHER:
        break;
    case GW_CLUSTER_REGISTRY_KEY_GATEWAY:
        if (deleted)
            gw_registry_delete_gateway(registry, name);
        else
            gw_registry_put_gateway(registry, name, kv);
        break;
    case GW_CLUSTER_REGISTRY_KEY_DEVICE:
        if (deleted)
            gw_registry_delete_device(registry, name, id);
        else
            gw_registry_put_device(registry, name, id, kv);
        break;
    }
}

static void gw_registry_read_start(GwClusterRegistry *registry);

static gboolean
gw_registry_read_retry(gpointer user_data)
{
    GwClusterRegistry *registry = user_data;

    registry->read_retry_id = 0;
    gw_registry_read_start(registry);
    return G_SOURCE_REMOVE;
}

/* Reads everything again after @delay_ms. */
static void
gw_registry_read_later(GwClusterRegistry *registry, guint delay_ms)
{
    if (registry->read_retry_id == 0)
        registry->read_retry_id = g_timeout_add(delay_ms, gw_registry_read_retry, registry);
}

/* A read failed (@error: etcd's): kept as the error, tried again later. */
static void
gw_registry_read_failed(GwClusterRegistry *registry, const GError *error)
{
    g_autofree gchar *message = g_strdup_printf("reading the directory: %s", error->message);

    registry->reading = FALSE;
    g_clear_pointer(&registry->read_kvs, g_ptr_array_unref);
    g_queue_clear_full(&registry->read_pending, g_free);
    g_message("gateway %s: %s; again in %u ms", registry->gateway, message,
              registry->read_backoff_ms);
    gw_registry_set_error(&registry->read_error, message);
    gw_registry_read_later(registry, registry->read_backoff_ms);
    registry->read_backoff_ms =
        MIN(registry->read_backoff_ms * 2, GW_CLUSTER_REGISTRY_RETRY_MAX_MS);
}

static void
gw_registry_watch_cb(GwEtcdWatch *watch, GPtrArray *events, const GError *error, gpointer user_data)
{
    GwClusterRegistry *registry = user_data;

    if (registry->closed || watch != registry->watch)
        return;
    if (error != NULL) {
        if (g_error_matches(error, GW_ETCD_ERROR, GW_ETCD_ERROR_COMPACTED)) {
            g_message("gateway %s: %s; reading the directory again", registry->gateway,
                      error->message);
            gw_registry_read_later(registry, 0);
        } else {
            gw_registry_read_failed(registry, error);
        }
        return;
    }
    gw_cluster_registry_ref(registry);
    for (guint i = 0; i < events->len; i++) {
        GwEtcdEvent *event = g_ptr_array_index(events, i);
        gw_registry_apply(registry, event->kv, event->type == GW_ETCD_EVENT_DELETE);
    }
    gw_registry_deliver(registry);
    gw_cluster_registry_unref(registry);
}

/* Whether @kv is a gateway key (applied before the devices). */
static gboolean
gw_registry_is_gateway_key(const GwEtcdKv *kv)
{
    return g_str_has_prefix(kv->key, GW_CLUSTER_REGISTRY_GATEWAYS_PREFIX);
}

/* A full read (@kvs at @revision) replaces the view: its pairs are applied
 * (gateways first, so a device's gateway is up before it is found), then
 * whatever the read did not have is deleted (devices first, so they are
 * lost before their gateway is gone); the watch goes on from there. */
static void
gw_registry_read_done(GwClusterRegistry *registry, GPtrArray *kvs, gint64 revision)
{
    GHashTableIter iter, devices;
    gpointer value, id, device;
    g_autoptr(GPtrArray) gone = g_ptr_array_new_with_free_func(g_free);

    registry->reading = FALSE;
    registry->read_count++;
    for (guint pass = 0; pass < 2; pass++) {
        for (guint i = 0; i < kvs->len; i++) {
            const GwEtcdKv *kv = g_ptr_array_index(kvs, i);
            if (gw_registry_is_gateway_key(kv) == (pass == 0))
                gw_registry_apply(registry, kv, FALSE);
        }
    }
    g_hash_table_iter_init(&iter, registry->gateways);
    while (g_hash_table_iter_next(&iter, NULL, &value)) {
        GwRegistryGateway *gateway = value;
        g_hash_table_iter_init(&devices, gateway->devices);
        while (g_hash_table_iter_next(&devices, &id, &device)) {
            if (((GwRegistryDevice *)device)->seen == registry->read_count)
                continue;
            ((GwRegistryDevice *)device)->lease = -1;
            gw_registry_device_report(registry, gateway, id, device, FALSE);
            g_hash_table_iter_remove(&devices);
            registry->n_entries--;
        }
        g_ptr_array_add(gone, g_strdup(gateway->name));
    }
    for (guint i = 0; i < gone->len; i++) {
        GwRegistryGateway *gateway = g_hash_table_lookup(registry->gateways, gone->pdata[i]);
        if (gateway->registered && gateway->seen != registry->read_count)
            gw_registry_delete_gateway(registry, gateway->name);
        else
            gw_registry_gateway_prune(registry, gateway);
    }
    if (!registry->synced)
        g_debug("directory (gateway %s): synced at revision %" G_GINT64_FORMAT ": %u gateways, "
                "%u devices",
                registry->gateway, revision, registry->n_registered, registry->n_reported);
    registry->synced = TRUE;
    registry->read_backoff_ms = GW_CLUSTER_REGISTRY_RETRY_FIRST_MS;
    g_clear_pointer(&registry->read_error, g_free);
    g_clear_pointer(&registry->watch, gw_etcd_watch_free);
    registry->watch = gw_etcd_watch_new(registry->etcd, GW_CLUSTER_REGISTRY_PREFIX, revision + 1,
                                        gw_registry_watch_cb, registry);
    gw_registry_deliver(registry);
}

static void gw_registry_read_next(GwClusterRegistry *registry);

/* A page of the paged read: the gateways (then each one's devices are
 * queued) or one gateway's devices. */
static void
gw_registry_read_page_cb(GObject *source, GAsyncResult *result, gpointer user_data)
{
    GwClusterRegistry *registry = user_data;
    g_autoptr(GError) error = NULL;
    gint64 revision = 0;
    gboolean more = FALSE;
    g_autoptr(GPtrArray) kvs =
        gw_etcd_range_finish(GW_ETCD(source), result, &revision, &more, &error);

    if (registry->closed) {
        gw_cluster_registry_unref(registry);
        return;
    }
    if (kvs == NULL) {
        gw_registry_read_failed(registry, error);
        gw_cluster_registry_unref(registry);
        return;
    }
    if (registry->read_revision == 0) {
        registry->read_revision = revision;
        for (guint i = 0; i < kvs->len; i++) {
            const GwEtcdKv *kv = g_ptr_array_index(kvs, i);
            if (gw_registry_is_gateway_key(kv) && strlen(kv->key) == kv->key_len &&
                gw_cluster_registry_check_name(
                    kv->key + strlen(GW_CLUSTER_REGISTRY_GATEWAYS_PREFIX), NULL))
                g_queue_push_tail(&registry->read_pending,
                                  g_strdup(kv->key + strlen(GW_CLUSTER_REGISTRY_GATEWAYS_PREFIX)));
        }
    }
    if (more)
        g_warning("directory (gateway %s): a page of the directory has more keys than the view "
                  "holds; the rest is left out",
                  registry->gateway);
    for (guint i = 0; i < kvs->len; i++)
        g_ptr_array_add(registry->read_kvs, g_steal_pointer(&kvs->pdata[i]));
    gw_registry_read_next(registry);
    gw_cluster_registry_unref(registry);
}

/* The next page, or the end of the paged read. The watch starts after the
 * first page's revision: events the later pages already had are applied
 * again, which changes nothing (puts of the same value, deletes of absent
 * keys), so nothing is lost. */
static void
gw_registry_read_next(GwClusterRegistry *registry)
{
    g_autofree gchar *name = g_queue_pop_head(&registry->read_pending);
    g_autofree gchar *prefix = NULL;
    g_autoptr(GPtrArray) kvs = NULL;

    if (name == NULL) {
        kvs = g_steal_pointer(&registry->read_kvs);
        gw_registry_read_done(registry, kvs, registry->read_revision);
        return;
    }
    prefix = g_strconcat(GW_CLUSTER_REGISTRY_DEVICES_PREFIX, name, "/", NULL);
    gw_etcd_range_async(registry->etcd, prefix, TRUE, GW_CLUSTER_REGISTRY_MAX_DEVICES + 1,
                        registry->cancellable, gw_registry_read_page_cb,
                        gw_cluster_registry_ref(registry));
}

static void
gw_registry_read_cb(GObject *source, GAsyncResult *result, gpointer user_data)
{
    GwClusterRegistry *registry = user_data;
    g_autoptr(GError) error = NULL;
    gint64 revision = 0;
    gboolean more = FALSE;
    g_autoptr(GPtrArray) kvs =
        gw_etcd_range_finish(GW_ETCD(source), result, &revision, &more, &error);

    if (registry->closed) {
        gw_cluster_registry_unref(registry);
        return;
    }
    if (more || g_error_matches(error, GW_ETCD_ERROR, GW_ETCD_ERROR_TOO_LARGE)) {
        /* too much for one answer: the gateways, then each one's devices */
        g_message("gateway %s: the directory is too large for one read; reading it gateway by "
                  "gateway",
                  registry->gateway);
        registry->read_kvs = g_ptr_array_new_with_free_func((GDestroyNotify)gw_etcd_kv_free);
        registry->read_revision = 0;
        gw_etcd_range_async(registry->etcd, GW_CLUSTER_REGISTRY_GATEWAYS_PREFIX, TRUE,
                            GW_CLUSTER_REGISTRY_MAX_GATEWAYS + 1, registry->cancellable,
                            gw_registry_read_page_cb, registry);
        return;
    }
    if (kvs == NULL)
        gw_registry_read_failed(registry, error);
    else
        gw_registry_read_done(registry, kvs, revision);
    gw_cluster_registry_unref(registry);
}

/* A full read of the directory (the watch, if any, is stopped: the read
 * and the watch after it cover what it would have said). */
static void
gw_registry_read_start(GwClusterRegistry *registry)
{
    if (registry->reading || registry->closed)
        return;
    registry->reading = TRUE;
    g_clear_pointer(&registry->watch, gw_etcd_watch_free);
    gw_etcd_range_async(registry->etcd, GW_CLUSTER_REGISTRY_PREFIX, TRUE,
                        GW_CLUSTER_REGISTRY_READ_LIMIT, registry->cancellable, gw_registry_read_cb,
                        gw_cluster_registry_ref(registry));
}

/* ---- writes ---- */

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

static void gw_registry_flush(GwClusterRegistry *registry);

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
static gboolean
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
static void
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

/* ---- the API ---- */

GwClusterRegistry *
gw_cluster_registry_new(GwEtcd *etcd, const gchar *gateway, const gchar *address,
                        const GwClusterRegistryEvents *events, gpointer user_data, GError **error)
{
    GwClusterRegistry *registry;

    if (!gw_cluster_registry_check_name(gateway, error))
        return NULL;
    if (address != NULL && !gw_cluster_registry_check_address(address, error)) {
        g_prefix_error(error, "gateway %s: ", gateway);
        return NULL;
    }
    registry = g_new0(GwClusterRegistry, 1);
    registry->refs = 1;
    registry->etcd = g_object_ref(etcd);
    registry->gateway = g_strdup(gateway);
    registry->address = g_strdup(address);
    if (events != NULL)
        registry->events = *events;
    registry->user_data = user_data;
    registry->cancellable = g_cancellable_new();
    registry->registration = gw_cluster_registry_gateway_value(address);
    registry->wanted =
        g_hash_table_new_full(g_str_hash, g_str_equal, g_free, (GDestroyNotify)g_bytes_unref);
    registry->written =
        g_hash_table_new_full(g_str_hash, g_str_equal, g_free, (GDestroyNotify)g_bytes_unref);
    registry->dirty = g_hash_table_new_full(g_str_hash, g_str_equal, g_free, NULL);
    registry->in_flight = g_hash_table_new_full(g_str_hash, g_str_equal, g_free, NULL);
    registry->write_backoff_ms = GW_CLUSTER_REGISTRY_RETRY_FIRST_MS;
    registry->read_backoff_ms = GW_CLUSTER_REGISTRY_RETRY_FIRST_MS;
    registry->gateways = g_hash_table_new_full(g_str_hash, g_str_equal, NULL,
                                               (GDestroyNotify)gw_registry_gateway_free);
    registry->warned = g_hash_table_new_full(g_str_hash, g_str_equal, g_free, g_free);
    g_queue_init(&registry->queue);
    g_queue_init(&registry->read_pending);
    return registry;
}

void
gw_cluster_registry_free(GwClusterRegistry *registry)
{
    if (registry == NULL)
        return;
    registry->closed = TRUE;
    g_cancellable_cancel(registry->cancellable);
    g_clear_pointer(&registry->watch, gw_etcd_watch_free);
    g_clear_handle_id(&registry->write_retry_id, g_source_remove);
    g_clear_handle_id(&registry->read_retry_id, g_source_remove);
    gw_cluster_registry_unref(registry);
}

void
gw_cluster_registry_start(GwClusterRegistry *registry, gint64 lease_id)
{
    GHashTableIter iter;
    gpointer id;

    if (lease_id <= 0) {
        g_warning("gateway %s: the directory needs an etcd lease (given %" G_GINT64_FORMAT ")",
                  registry->gateway, lease_id);
        return;
    }
    g_debug("directory (gateway %s): registering under lease %" G_GINT64_FORMAT, registry->gateway,
            lease_id);
    registry->lease_id = lease_id;
    registry->lost = FALSE;
    registry->generation++;
    registry->registered = FALSE;
    g_hash_table_remove_all(registry->written);
    g_hash_table_iter_init(&iter, registry->wanted);
    while (g_hash_table_iter_next(&iter, &id, NULL))
        g_hash_table_add(registry->dirty, g_strdup(id));
    g_clear_handle_id(&registry->write_retry_id, g_source_remove);
    registry->write_backoff_ms = GW_CLUSTER_REGISTRY_RETRY_FIRST_MS;
    gw_registry_flush(registry);
    if (!registry->view_started) {
        registry->view_started = TRUE;
        gw_registry_read_start(registry);
    }
}

void
gw_cluster_registry_lease_lost(GwClusterRegistry *registry)
{
    g_debug("directory (gateway %s): lease %" G_GINT64_FORMAT " lost; no writes until a new one",
            registry->gateway, registry->lease_id);
    registry->lost = TRUE;
    g_clear_handle_id(&registry->write_retry_id, g_source_remove);
}

void
gw_cluster_registry_publish(GwClusterRegistry *registry, const gchar *id,
                            const PolicyDevice *device)
{
    g_autoptr(GError) error = NULL;
    g_autoptr(GBytes) value = NULL;
    GBytes *had;

    if (!gw_cluster_registry_check_id(id, &error)) {
        g_warning("gateway %s: device not published: %s", registry->gateway, error->message);
        return;
    }
    value = gw_cluster_registry_device_value(device);
    had = g_hash_table_lookup(registry->wanted, id);
    if (had != NULL && g_bytes_equal(had, value))
        return;
    g_hash_table_replace(registry->wanted, g_strdup(id), g_steal_pointer(&value));
    g_hash_table_add(registry->dirty, g_strdup(id));
    gw_registry_flush(registry);
}

void
gw_cluster_registry_withdraw(GwClusterRegistry *registry, const gchar *id)
{
    if (id == NULL || !g_hash_table_remove(registry->wanted, id))
        return;
    g_hash_table_add(registry->dirty, g_strdup(id));
    gw_registry_flush(registry);
}

gboolean
gw_cluster_registry_is_synced(GwClusterRegistry *registry)
{
    return registry->synced;
}

const gchar *
gw_cluster_registry_get_error(GwClusterRegistry *registry)
{
    return registry->write_error != NULL ? registry->write_error : registry->read_error;
}

gboolean
gw_cluster_registry_is_written(GwClusterRegistry *registry)
{
    GHashTableIter iter;
    gpointer id;

    if (registry->lease_id == 0 || registry->lost || !registry->registered ||
        g_hash_table_size(registry->in_flight) > 0)
        return FALSE;
    g_hash_table_iter_init(&iter, registry->dirty);
    while (g_hash_table_iter_next(&iter, &id, NULL)) {
        if (!gw_registry_is_clean(registry, id))
            return FALSE;
    }
    return TRUE;
}

static gint
gw_registry_compare_names(gconstpointer a, gconstpointer b)
{
    return strcmp(*(const gchar *const *)a, *(const gchar *const *)b);
}

void
gw_cluster_registry_to_json(GwClusterRegistry *registry, JsonBuilder *builder)
{
    g_autoptr(GPtrArray) names = g_ptr_array_new();
    const gchar *error = gw_cluster_registry_get_error(registry);
    GHashTableIter iter;
    gpointer value;

    g_hash_table_iter_init(&iter, registry->gateways);
    while (g_hash_table_iter_next(&iter, NULL, &value)) {
        GwRegistryGateway *gateway = value;
        if (gateway->registered)
            g_ptr_array_add(names, gateway->name);
    }
    g_ptr_array_sort(names, gw_registry_compare_names);
    json_builder_set_member_name(builder, "gateways");
    json_builder_begin_array(builder);
    for (guint i = 0; i < names->len; i++) {
        GwRegistryGateway *gateway = g_hash_table_lookup(registry->gateways, names->pdata[i]);
        json_builder_begin_object(builder);
        json_builder_set_member_name(builder, "name");
        json_builder_add_string_value(builder, gateway->name);
        json_builder_set_member_name(builder, "address");
        if (gateway->address != NULL)
            json_builder_add_string_value(builder, gateway->address);
        else
            json_builder_add_null_value(builder);
        json_builder_set_member_name(builder, "devices");
        json_builder_add_int_value(builder, gateway->reported);
        json_builder_end_object(builder);
    }
    json_builder_end_array(builder);
    json_builder_set_member_name(builder, "devices");
    json_builder_add_int_value(builder, registry->n_reported);
    json_builder_set_member_name(builder, "synced");
    json_builder_add_boolean_value(builder, registry->synced);
    json_builder_set_member_name(builder, "error");
    if (error != NULL)
        json_builder_add_string_value(builder, error);
    else
        json_builder_add_null_value(builder);
}

guint
gw_cluster_registry_count_gateways(GwClusterRegistry *registry)
{
    return registry->n_registered;
}

guint
gw_cluster_registry_count_devices(GwClusterRegistry *registry)
{
    return registry->n_reported;
}

const PolicyDevice *
gw_cluster_registry_lookup(GwClusterRegistry *registry, const gchar *gateway, const gchar *id)
{
    GwRegistryGateway *entry = g_hash_table_lookup(registry->gateways, gateway);
    GwRegistryDevice *device = entry != NULL ? g_hash_table_lookup(entry->devices, id) : NULL;

    return device != NULL && device->reported ? device->device : NULL;
}
