/* usbgwd's metric families and event counters (gw-usbgw-metrics.h). */
#include "gw-usbgw-metrics.h"

typedef struct {
    GwMetrics *metrics;
    GwUsbgwMetricFamilies families;
    /* the series incremented on hot paths, made once */
    GwMetricSeries *attach[3];
    GwMetricSeries *attach_duration;
    GwMetricSeries *redir_bytes[2];
    GwMetricSeries *transfer_errors;
    GwMetricSeries *reenumerations;
} GwUsbgwMetrics;

static GwUsbgwMetrics *
gw_usbgw_metrics_instance(void)
{
    static gsize once = 0;
    static GwUsbgwMetrics m;

    if (g_once_init_enter(&once)) {
        static const gchar *const state[] = {"state", NULL};
        static const gchar *const result[] = {"result", NULL};
        static const gchar *const direction[] = {"direction", NULL};
        static const gchar *const vm[] = {"vm", NULL};
        static const gchar *const pool_state[] = {"pool", "state", NULL};
        static const gchar *const peer[] = {"peer", NULL};
        static const gchar *const peer_direction[] = {"peer", "direction", NULL};
        static const gchar *const version[] = {"version", NULL};
        static const gdouble buckets[] = {GW_USBGW_ATTACH_BUCKETS};
        GwUsbgwMetricFamilies *f = &m.families;
        GwMetrics *r = gw_metrics_new();

        f->build_info = gw_metrics_add_family(r, GW_METRIC_GAUGE, "usbgw_build_info",
                                              "usbgwd's version; always 1", version);
        f->devices = gw_metrics_add_family(
            r, GW_METRIC_GAUGE, "usbgw_devices",
            "Devices usbgwd knows, by the state usbgwctl list shows (absent, present, denied, "
            "claimed, bound, waiting, attached, exported)",
            state);
        f->sessions = gw_metrics_add_family(
            r, GW_METRIC_GAUGE, "usbgw_sessions",
            "usbredir sessions with a peer now: QEMU on a VM socket or a gateway importing a "
            "device, and imported devices QEMU is connected to",
            NULL);
        f->attach = gw_metrics_add_family(
            r, GW_METRIC_COUNTER, "usbgw_attach_total",
            "Attaches: a VM's QEMU got a usbredir session for a device (ok), a peer on a VM "
            "socket was refused (refused), libvirt or the session failed (failed)",
            result);
        f->attach_duration = gw_metrics_add_histogram(
            r, "usbgw_attach_duration_seconds",
            "Seconds from a device's binding to a VM to the VM's first usbredir session on it",
            NULL, buckets, G_N_ELEMENTS(buckets));
        f->redir_bytes = gw_metrics_add_family(
            r, GW_METRIC_COUNTER, "usbgw_redir_bytes_total",
            "usbredir bytes on usbgwd's session sockets: sent to the peer (to_peer), read from "
            "it (from_peer)",
            direction);
        f->transfer_errors = gw_metrics_add_family(
            r, GW_METRIC_COUNTER, "usbgw_transfer_errors_total",
            "Errors usbredirhost reported in sessions: USB transfers or requests that failed, "
            "packets of the peer it could not parse",
            NULL);
        f->reenumerations = gw_metrics_add_family(
            r, GW_METRIC_COUNTER, "usbgw_device_reenumerations_total",
            "Devices that came back with an identity usbgwd knew (a replug or a reset)", NULL);
        f->required_missing = gw_metrics_add_family(
            r, GW_METRIC_GAUGE, "usbgw_required_missing",
            "Required rules of a running VM that no present device meets", vm);
        f->pool_keys = gw_metrics_add_family(
            r, GW_METRIC_GAUGE, "usbgw_pool_keys",
            "Keys of each pool by state (leased, free, absent, excluded)", pool_state);
        f->shares = gw_metrics_add_family(r, GW_METRIC_GAUGE, "usbgw_shares",
                                          "Shares (VMs that may get lent devices)", NULL);
        f->link_up = gw_metrics_add_family(r, GW_METRIC_GAUGE, "usbgw_link_up",
                                           "1 when the link to a peer gateway is up", peer);
        f->link_bytes = gw_metrics_add_family(
            r, GW_METRIC_COUNTER, "usbgw_link_bytes_total",
            "Bytes on a gateway link's connections, framing and TLS payload (sent, received)",
            peer_direction);
        f->link_connects = gw_metrics_add_family(
            r, GW_METRIC_COUNTER, "usbgw_link_connects_total",
            "Connections a gateway link attached (its first and every reconnect)", peer);
        f->link_reconnects =
            gw_metrics_add_family(r, GW_METRIC_COUNTER, "usbgw_link_reconnects_total",
                                  "Connections a gateway link attached after its first", peer);
        f->link_streams = gw_metrics_add_family(
            r, GW_METRIC_GAUGE, "usbgw_link_streams",
            "Open streams (device sessions) on a gateway link, both directions", peer);
        f->cluster_up = gw_metrics_add_family(
            r, GW_METRIC_GAUGE, "usbgw_cluster_up",
            "1 when the gateway holds its etcd lease and etcd answered its last request", NULL);
        f->cluster_holds = gw_metrics_add_family(
            r, GW_METRIC_GAUGE, "usbgw_cluster_holds",
            "Pool keys whose cluster lease this gateway holds (held) or waits for (waiting)",
            state);
        f->cluster_gateways = gw_metrics_add_family(r, GW_METRIC_GAUGE, "usbgw_cluster_gateways",
                                                    "Gateways registered in the cluster", NULL);
        f->cluster_devices = gw_metrics_add_family(
            r, GW_METRIC_GAUGE, "usbgw_cluster_devices",
            "Devices the cluster's gateways export, as the directory says", NULL);
        f->cluster_lease_losses = gw_metrics_add_family(
            r, GW_METRIC_COUNTER, "usbgw_cluster_lease_losses_total",
            "Times this gateway lost its etcd lease (and stopped lending its pool keys)", NULL);

        gw_metric_series_set(
            gw_metric_family_series(f->build_info, (const gchar *const[]){PACKAGE_VERSION}), 1);
        m.attach[GW_USBGW_ATTACH_OK] =
            gw_metric_family_series(f->attach, (const gchar *const[]){"ok"});
        m.attach[GW_USBGW_ATTACH_REFUSED] =
            gw_metric_family_series(f->attach, (const gchar *const[]){"refused"});
        m.attach[GW_USBGW_ATTACH_FAILED] =
            gw_metric_family_series(f->attach, (const gchar *const[]){"failed"});
        m.attach_duration = gw_metric_family_single(f->attach_duration);
        m.redir_bytes[GW_USBGW_TO_PEER] =
            gw_metric_family_series(f->redir_bytes, (const gchar *const[]){"to_peer"});
        m.redir_bytes[GW_USBGW_FROM_PEER] =
            gw_metric_family_series(f->redir_bytes, (const gchar *const[]){"from_peer"});
        m.transfer_errors = gw_metric_family_single(f->transfer_errors);
        m.reenumerations = gw_metric_family_single(f->reenumerations);
        m.metrics = r;
        g_once_init_leave(&once, 1);
    }
    return &m;
}

GwMetrics *
gw_usbgw_metrics_get(void)
{
    return gw_usbgw_metrics_instance()->metrics;
}

const GwUsbgwMetricFamilies *
gw_usbgw_metrics_families(void)
{
    return &gw_usbgw_metrics_instance()->families;
}

void
gw_usbgw_metrics_attach(GwUsbgwAttachResult result, gdouble seconds)
{
    GwUsbgwMetrics *m = gw_usbgw_metrics_instance();

    g_return_if_fail((guint)result < G_N_ELEMENTS(m->attach));
    gw_metric_series_add(m->attach[result], 1);
    if (result == GW_USBGW_ATTACH_OK && seconds >= 0)
        gw_metric_series_observe(m->attach_duration, seconds);
}

void
gw_usbgw_metrics_redir_bytes(GwUsbgwDirection direction, guint64 bytes)
{
    GwUsbgwMetrics *m = gw_usbgw_metrics_instance();

    g_return_if_fail((guint)direction < G_N_ELEMENTS(m->redir_bytes));
    gw_metric_series_add(m->redir_bytes[direction], bytes);
}

void
gw_usbgw_metrics_transfer_error(void)
{
    gw_metric_series_add(gw_usbgw_metrics_instance()->transfer_errors, 1);
}

void
gw_usbgw_metrics_reenumeration(void)
{
    gw_metric_series_add(gw_usbgw_metrics_instance()->reenumerations, 1);
}
