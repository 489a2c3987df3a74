/* usbgwd's metrics (docs/metrics.md): the collector that sets the gauges
 * and the per-link counters at scrape time from the state the daemon keeps
 * anyway (inventory, binder, served devices, shares, links), and the HTTP
 * listener of metrics-listen. The counters incremented where their events
 * happen live in gateway/metrics/gw-usbgw-metrics.c. */
#include "gw-daemon-private.h"

#include "gw-address.h"

#include "gw-metrics-http.h"
#include "gw-usbgw-metrics.h"

/* The states of usbgw_devices: every one is rendered, 0 included, so
 * that a state's series does not vanish (gw_daemon_device_state()). */
static const gchar *const gw_daemon_metric_device_states[] = {
    "absent", "present", "denied", "claimed", "bound", "waiting", "attached", "exported",
};

/* The states of usbgw_pool_keys. */
typedef enum {
    GW_POOL_KEY_LEASED,   /* bound to a VM of the pool */
    GW_POOL_KEY_FREE,     /* present, for the next VM that starts */
    GW_POOL_KEY_ABSENT,   /* unplugged */
    GW_POOL_KEY_EXCLUDED, /* released or assigned by an admin: out of the pool */
    GW_POOL_KEY_STATES,
} GwPoolKeyState;

static const gchar *const gw_daemon_pool_key_states[] = {
    [GW_POOL_KEY_LEASED] = "leased",
    [GW_POOL_KEY_FREE] = "free",
    [GW_POOL_KEY_ABSENT] = "absent",
    [GW_POOL_KEY_EXCLUDED] = "excluded",
};

static void
gw_daemon_collect_devices(GwDaemon *daemon, const GwUsbgwMetricFamilies *f)
{
    g_autoptr(GPtrArray) devices = gw_inventory_list(daemon->inventory);
    guint counts[G_N_ELEMENTS(gw_daemon_metric_device_states)] = {0};
    GHashTableIter iter;
    gpointer value;
    guint sessions = 0;

    for (guint i = 0; i < devices->len; i++) {
        GwInventoryDevice *inv = g_ptr_array_index(devices, i);
        const gchar *state =
            gw_daemon_device_state(daemon, inv, gw_binder_lookup(daemon->binder, inv->id));
        for (guint s = 0; s < G_N_ELEMENTS(gw_daemon_metric_device_states); s++) {
            if (g_strcmp0(state, gw_daemon_metric_device_states[s]) == 0)
                counts[s]++;
        }
    }
    gw_metric_family_clear(f->devices);
    for (guint s = 0; s < G_N_ELEMENTS(gw_daemon_metric_device_states); s++)
        gw_metric_series_set(
            gw_metric_family_series(f->devices, &gw_daemon_metric_device_states[s]), counts[s]);

    g_hash_table_iter_init(&iter, daemon->served);
    while (g_hash_table_iter_next(&iter, NULL, &value)) {
        GwDaemonServed *served = value;
        if ((served->attachment != NULL && gw_attachment_has_peer(served->attachment)) ||
            (served->import != NULL && gw_import_is_attached(served->import)))
            sessions++;
    }
    gw_metric_series_set(gw_metric_family_single(f->sessions), sessions);
}

/* usbgw_required_missing: one series per running VM that has required
 * rules (VMs without any are not rendered: their number is unbounded). */
static void
gw_daemon_collect_required(GwDaemon *daemon, const GwUsbgwMetricFamilies *f)
{
    g_autoptr(GPtrArray) vms = gw_binder_list_vms(daemon->binder);

    gw_metric_family_clear(f->required_missing);
    for (guint i = 0; i < vms->len; i++) {
        const gchar *name = g_ptr_array_index(vms, i);
        guint required = 0;
        guint unmet = gw_binder_count_unmet_requirements(
            daemon->binder, name, gw_binder_get_vm_uuid(daemon->binder, name), &required);
        if (required > 0)
            gw_metric_series_set(gw_metric_family_series(f->required_missing, &name), unmet);
    }
}

static void
gw_daemon_collect_pools(GwDaemon *daemon, const GwUsbgwMetricFamilies *f)
{
    g_autoptr(GPtrArray) devices = gw_binder_list_devices(daemon->binder);
    /* pool name (borrowed from the policy) → guint[GW_POOL_KEY_STATES] */
    g_autoptr(GHashTable) pools = g_hash_table_new_full(g_str_hash, g_str_equal, NULL, g_free);
    GHashTableIter iter;
    gpointer key, value;

    for (guint i = 0; i < devices->len; i++) {
        const GwBinderDevice *dev = g_ptr_array_index(devices, i);
        guint *counts;

        if (dev->decision.verdict != POLICY_VERDICT_ASSIGN ||
            dev->decision.target_kind != POLICY_TARGET_POOL || dev->decision.target == NULL)
            continue;
        counts = g_hash_table_lookup(pools, dev->decision.target);
        if (counts == NULL) {
            counts = g_new0(guint, GW_POOL_KEY_STATES);
            g_hash_table_insert(pools, (gpointer)dev->decision.target, counts);
        }
        if (!dev->present)
            counts[GW_POOL_KEY_ABSENT]++;
        else if (dev->released || dev->manual_vm != NULL)
            counts[GW_POOL_KEY_EXCLUDED]++;
        else if (dev->vm != NULL)
            counts[GW_POOL_KEY_LEASED]++;
        else
            counts[GW_POOL_KEY_FREE]++;
    }
    gw_metric_family_clear(f->pool_keys);
    g_hash_table_iter_init(&iter, pools);
    while (g_hash_table_iter_next(&iter, &key, &value)) {
        const guint *counts = value;
        for (guint s = 0; s < GW_POOL_KEY_STATES; s++) {
            const gchar *labels[] = {key, gw_daemon_pool_key_states[s]};
            gw_metric_series_set(gw_metric_family_series(f->pool_keys, labels), counts[s]);
        }
    }
}

/* Per peer gateway: the GwLink keeps its totals for as long as usbgwd
 * runs, so they are counters. */
static void
gw_daemon_collect_links(GwDaemon *daemon, const GwUsbgwMetricFamilies *f)
{
    g_autoptr(GPtrArray) links = NULL;

    gw_metric_family_clear(f->link_up);
    gw_metric_family_clear(f->link_bytes);
    gw_metric_family_clear(f->link_connects);
    gw_metric_family_clear(f->link_reconnects);
    gw_metric_family_clear(f->link_streams);
    if (daemon->links == NULL)
        return;
    links = gw_links_list(daemon->links);
    for (guint i = 0; i < links->len; i++) {
        GwLink *link = g_ptr_array_index(links, i);
        const gchar *peer = gw_link_get_peer(link);
        const gchar *sent[] = {peer, "sent"};
        const gchar *received[] = {peer, "received"};
        GwLinkStats stats;

        gw_link_get_stats(link, &stats);
        gw_metric_series_set(gw_metric_family_series(f->link_up, &peer), stats.up ? 1 : 0);
        gw_metric_series_set(gw_metric_family_series(f->link_bytes, sent), stats.bytes_out);
        gw_metric_series_set(gw_metric_family_series(f->link_bytes, received), stats.bytes_in);
        gw_metric_series_set(gw_metric_family_series(f->link_connects, &peer), stats.connects);
        gw_metric_series_set(gw_metric_family_series(f->link_reconnects, &peer),
                             stats.connects > 0 ? stats.connects - 1 : 0);
        gw_metric_series_set(gw_metric_family_series(f->link_streams, &peer), stats.streams);
    }
}

/* GwMetricsCollectFunc: runs on the main thread (every render is). */
/* Cluster mode: the lease, the holds, the directory. */
static void
gw_daemon_collect_cluster(GwDaemon *daemon, const GwUsbgwMetricFamilies *f)
{
    GwDaemonClusterCounts counts;

    gw_daemon_cluster_counts(daemon, &counts);
    if (!counts.enabled)
        return;
    gw_metric_series_set(gw_metric_family_single(f->cluster_up), counts.up);
    gw_metric_series_set(gw_metric_family_series(f->cluster_holds, (const gchar *const[]){"held"}),
                         counts.held);
    gw_metric_series_set(
        gw_metric_family_series(f->cluster_holds, (const gchar *const[]){"waiting"}),
        counts.waiting);
    gw_metric_series_set(gw_metric_family_single(f->cluster_gateways), counts.gateways);
    gw_metric_series_set(gw_metric_family_single(f->cluster_devices), counts.devices);
    gw_metric_series_set(gw_metric_family_single(f->cluster_lease_losses),
                         (gdouble)counts.lease_losses);
}

static void
gw_daemon_collect(GwMetrics *metrics, gpointer user_data)
{
    GwDaemon *daemon = user_data;
    const GwUsbgwMetricFamilies *f = gw_usbgw_metrics_families();

    gw_daemon_collect_devices(daemon, f);
    gw_daemon_collect_required(daemon, f);
    gw_daemon_collect_pools(daemon, f);
    gw_daemon_collect_cluster(daemon, f);
    gw_metric_series_set(gw_metric_family_single(f->shares),
                         daemon->shares != NULL ? gw_share_registry_get_count(daemon->shares) : 0);
    gw_daemon_collect_links(daemon, f);
}

gchar *
gw_daemon_metrics_text(GwDaemon *daemon)
{
    return gw_metrics_render(gw_usbgw_metrics_get());
}

gboolean
gw_daemon_start_metrics(GwDaemon *daemon, GError **error)
{
    g_autoptr(GSocketAddress) address = NULL;
    g_autoptr(GError) local_error = NULL;

    daemon->metrics_collector =
        gw_metrics_add_collector(gw_usbgw_metrics_get(), gw_daemon_collect, daemon);
    if (daemon->config.metrics_listen == NULL)
        return TRUE;
    address = gw_address_parse_listen(daemon->config.metrics_listen, error);
    if (address == NULL) {
        g_prefix_error(error, "metrics-listen=%s: ", daemon->config.metrics_listen);
        return FALSE;
    }
    /* metrics are worth less than the devices: a port taken by something
     * else is logged, and usbgwd serves on without the listener */
    daemon->metrics_http = gw_metrics_http_new(gw_usbgw_metrics_get(), address, &local_error);
    if (daemon->metrics_http == NULL) {
        g_warning("metrics-listen=%s: cannot listen, no metrics over HTTP: %s",
                  daemon->config.metrics_listen, local_error->message);
        return TRUE;
    }
    g_message("metrics: Prometheus text on http://%s%s", daemon->config.metrics_listen,
              GW_METRICS_HTTP_PATH);
    return TRUE;
}

void
gw_daemon_stop_metrics(GwDaemon *daemon)
{
    g_clear_pointer(&daemon->metrics_http, gw_metrics_http_free);
    if (daemon->metrics_collector != 0)
        gw_metrics_remove_collector(gw_usbgw_metrics_get(), daemon->metrics_collector);
    daemon->metrics_collector = 0;
}
