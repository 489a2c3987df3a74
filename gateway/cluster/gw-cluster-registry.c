/* GwClusterRegistry (gw-cluster-registry.h): the object, the queue of its
 * events (delivered once the state is updated) and the API. The view, kept
 * from one read and a watch, is gw-cluster-registry-view.c; the wanted set
 * written as the differences from what was written under the current
 * lease is gw-cluster-registry-write.c. */
#include <string.h>

#include "gw-cluster-registry-private.h"

/* ---- small things ---- */

/* An event queued for delivery, with copies of what it names. */
typedef struct {
    GwRegistryEventKind kind;
    gchar *gateway;       /* owned */
    gchar *id;            /* owned, nullable */
    gchar *address;       /* owned, nullable */
    PolicyDevice *device; /* owned, nullable */
} GwRegistryEvent;

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

GwClusterRegistry *
gw_cluster_registry_ref(GwClusterRegistry *registry)
{
    registry->refs++;
    return registry;
}

void
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

void
gw_registry_set_error(gchar **slot, const gchar *message)
{
    g_free(*slot);
    *slot = g_strdup(message);
}

/* ---- events ---- */

void
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
void
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
