/* GwClusterRegistry's view (gw-cluster-registry.h, "View"): one read of
 * /usbgw/ (paged by gateway when too large), then a watch from its
 * revision; a watch that ends is followed by a full read diffed against the
 * view. Changes are queued as events and delivered once the view is
 * updated. */
#include <string.h>

#include "gw-cluster-registry-private.h"

/* Keys a first read asks for at most: the directory's and some of the
 * pools' (a read that would return more is done gateway by gateway). */
#define GW_CLUSTER_REGISTRY_READ_LIMIT                                                             \
    (GW_CLUSTER_REGISTRY_MAX_GATEWAYS + GW_CLUSTER_REGISTRY_MAX_DEVICES + 10000)
/* Bad keys remembered so that each is logged once (then forgotten all). */
#define GW_CLUSTER_REGISTRY_MAX_WARNED 4096

void
gw_registry_device_free(GwRegistryDevice *device)
{
    policy_device_free(device->device);
    g_free(device);
}

void
gw_registry_gateway_free(GwRegistryGateway *gateway)
{
    g_free(gateway->name);
    g_free(gateway->address);
    g_hash_table_unref(gateway->devices);
    g_free(gateway);
}

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
void
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
