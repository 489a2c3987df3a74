/* bench-cluster-scale: the cluster directory (gateway/cluster/
 * gw-cluster-registry.h) at scale, on a real etcd member started here
 * (tests/cluster/test-etcd-members.c). In one process and one main loop it
 * simulates G gateways (default 100), each with its own GwEtcd client,
 * lease, lease keeper and GwClusterRegistry publishing D devices (default
 * 100), and measures:
 *
 *   (a) sync: from every start() until every view holds all G × D devices;
 *   (b) convergence: a change (a device published, one withdrawn, a
 *       gateway's lease revoked) until every view has it, over --changes
 *       changes, against one etcd put round trip measured just before each
 *       change (interleaved baseline);
 *   (c) steady state: etcd revisions (writes) per second over a quiet
 *       window, and the keepers' keepalives per second (not revisions);
 *   (d) memory: the process's RSS growth from before the views were filled
 *       to after, per gateway, against the bytes of the values one view
 *       holds; and one registry measured alone in a child process (this
 *       program with --one-view).
 *
 *   build/bench/bench-cluster-scale [--gateways 100] [--devices 100] [--changes 20]
 *                                   [--quiet 10] [--ttl 30]
 *
 * docs/performance.md ("Cluster directory at scale") has the method and
 * the figures. Exits 77 (skipped) when no etcd binary is installed. */
#include <glib/gstdio.h>
#include <malloc.h>
#include <stdio.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include "bench-common.h"
#include "gw-cluster-registry.h"
#include "test-etcd-members.h"

/* How long the initial sync and one change may take before the bench
 * gives up. */
#define BENCH_SYNC_TIMEOUT_S   600
#define BENCH_CHANGE_TIMEOUT_S 60
/* Puts timed for the baseline before each change. */
#define BENCH_BASELINE_PUTS 5

static gint opt_gateways = 100;
static gint opt_devices = 100;
static gint opt_changes = 20;
static gint opt_quiet_s = 10;
static gint opt_ttl_s = 30;
static gchar *opt_one_view; /* the child's mode: the etcd URL */

/* What the current change is and who has seen it. */
typedef enum {
    BENCH_WAIT_NONE,
    BENCH_WAIT_FOUND,
    BENCH_WAIT_LOST,
    BENCH_WAIT_GONE,
} BenchWaitKind;

typedef struct {
    BenchWaitKind kind;
    gchar *gateway;
    gchar *id;
    guint seen; /* views that saw it */
} BenchWait;

static BenchWait wait_for;
static guint64 total_devices; /* every view should hold this many */
static guint views_full;      /* views holding total_devices */

typedef struct {
    gchar *name;
    GwEtcd *etcd; /* owned */
    gint64 lease;
    GwEtcdLeaseKeeper *keeper;   /* owned */
    GwClusterRegistry *registry; /* owned */
    gboolean full;               /* counted in views_full */
    gboolean seen;               /* saw the current change */
    guint next_id;               /* for devices published later */
} BenchGw;

static void
bench_check_full(BenchGw *gw)
{
    gboolean full = gw_cluster_registry_count_devices(gw->registry) == total_devices &&
                    gw_cluster_registry_count_gateways(gw->registry) == (guint)opt_gateways;

    if (full != gw->full) {
        gw->full = full;
        views_full += full ? 1 : -1;
    }
}

static void
bench_saw(BenchGw *gw, BenchWaitKind kind, const gchar *gateway, const gchar *id)
{
    if (gw->seen || wait_for.kind != kind || g_strcmp0(wait_for.gateway, gateway) != 0 ||
        g_strcmp0(wait_for.id, id) != 0)
        return;
    gw->seen = TRUE;
    wait_for.seen++;
}

static void
bench_on_found(const gchar *gateway, const gchar *id, const PolicyDevice *device,
               gpointer user_data)
{
    bench_saw(user_data, BENCH_WAIT_FOUND, gateway, id);
    bench_check_full(user_data);
}

static void
bench_on_lost(const gchar *gateway, const gchar *id, gpointer user_data)
{
    bench_saw(user_data, BENCH_WAIT_LOST, gateway, id);
    bench_check_full(user_data);
}

static void
bench_on_up(const gchar *gateway, const gchar *address, gpointer user_data)
{
    bench_check_full(user_data);
}

static void
bench_on_gone(const gchar *gateway, gpointer user_data)
{
    bench_saw(user_data, BENCH_WAIT_GONE, gateway, NULL);
    bench_check_full(user_data);
}

static const GwClusterRegistryEvents bench_events = {
    .gateway_up = bench_on_up,
    .gateway_gone = bench_on_gone,
    .device_found = bench_on_found,
    .device_lost = bench_on_lost,
};

static void
bench_lease_lost(GwEtcdLeaseKeeper *keeper, const GError *error, gpointer user_data)
{
    BenchGw *gw = user_data;

    /* only the revoked one of a change; anything else spoils the figures */
    if (wait_for.kind != BENCH_WAIT_GONE || g_strcmp0(wait_for.gateway, gw->name) != 0)
        g_printerr("gateway %s lost its lease: %s\n", gw->name, error->message);
    gw_cluster_registry_lease_lost(gw->registry);
}

/* A device as a dongle gateway would describe it. */
static PolicyDevice *
bench_device(guint gateway, guint index)
{
    PolicyDevice *device = policy_device_new(0x0529, 0x0001 + index % 4);

    device->bcd_device = 0x0325;
    device->manufacturer = g_strdup("SafeNet Inc.");
    device->product = g_strdup("HASP HL 3.25");
    device->serial = g_strdup_printf("G%04u-D%04u", gateway, index);
    device->port = g_strdup_printf("%u-%u.%u", 1 + index / 64, 1 + index % 8, 1 + index / 8 % 8);
    policy_device_add_interface(device, 0xff, 0x00, 0x00);
    return device;
}

static gchar *
bench_device_id(guint index)
{
    return g_strdup_printf("%u-%u.%u-%u", 1 + index / 64, 1 + index % 8, 1 + index / 8 % 8, index);
}

/* Runs the main loop until *@counter reaches @want; FALSE after @timeout_s. */
static gboolean
bench_run_until(guint *counter, guint want, gint timeout_s)
{
    gint64 deadline = g_get_monotonic_time() + (gint64)timeout_s * G_USEC_PER_SEC;

    while (*counter < want) {
        if (g_get_monotonic_time() > deadline)
            return FALSE;
        g_main_context_iteration(NULL, TRUE);
    }
    return TRUE;
}

static gint64
bench_put_rtt_us(GwEtcd *etcd, GBytes *value)
{
    g_autoptr(GAsyncResult) result = NULL;
    g_autoptr(GError) error = NULL;
    gint64 start = g_get_monotonic_time();

    gw_etcd_put_async(etcd, "/bench/baseline", value, 0, NULL, test_got_result, &result);
    if (!gw_etcd_put_finish(etcd, test_wait(&result), NULL, &error))
        g_error("baseline put: %s", error->message);
    return g_get_monotonic_time() - start;
}

static gint64
bench_revision(GwEtcd *etcd)
{
    gint64 revision = 0;
    g_ptr_array_unref(test_range(etcd, "/bench/none", FALSE, 0, &revision, NULL));
    return revision;
}

/* A new lease and its keeper. */
static void
bench_gw_grant(BenchGw *gw)
{
    g_clear_pointer(&gw->keeper, gw_etcd_lease_keeper_free);
    gw->lease = test_grant(gw->etcd, opt_ttl_s);
    gw->keeper = gw_etcd_lease_keeper_new(gw->etcd, gw->lease, opt_ttl_s, bench_lease_lost, gw);
}

static void
bench_gw_start(BenchGw *gw)
{
    bench_gw_grant(gw);
    gw_cluster_registry_start(gw->registry, gw->lease);
}

static gdouble
bench_rusage_s(const struct rusage *usage)
{
    return usage->ru_utime.tv_sec + usage->ru_stime.tv_sec +
           (usage->ru_utime.tv_usec + usage->ru_stime.tv_usec) / 1e6;
}

static guint64
bench_self_kib(const gchar *field)
{
    return bench_proc_status_kib(getpid(), field);
}

static guint64
bench_cpu_ticks(GPid pid)
{
    return bench_proc_cpu_ticks(pid);
}

/* --one-view URL: one registry, alone in this process, synced with the
 * directory (its first read); prints "rss-before KIB rss-after KIB devices N". */
static int
bench_one_view(void)
{
    const gchar *endpoints[] = {opt_one_view, NULL};
    g_autoptr(GwEtcd) etcd = test_client(endpoints);
    g_autoptr(GError) error = NULL;
    g_autoptr(GwClusterRegistry) registry = NULL;
    g_autoptr(GwEtcdLeaseKeeper) keeper = NULL;
    guint64 before, after, trimmed;
    gint64 lease, start, sync_us;

    lease = test_grant(etcd, opt_ttl_s);
    keeper = gw_etcd_lease_keeper_new(etcd, lease, opt_ttl_s, NULL, NULL);
    registry = gw_cluster_registry_new(etcd, "bench-probe", NULL, NULL, NULL, &error);
    g_assert_no_error(error);
    (void)bench_revision(etcd); /* the client's connection and buffers, before */
    before = bench_self_kib("VmRSS");
    start = g_get_monotonic_time();
    gw_cluster_registry_start(registry, lease);
    /* the first read is the whole directory at once */
    while (!gw_cluster_registry_is_synced(registry))
        g_main_context_iteration(NULL, TRUE);
    sync_us = g_get_monotonic_time() - start;
    test_sleep_running(500);
    after = bench_self_kib("VmRSS");
    /* what malloc keeps of the first read's answer, given back */
    malloc_trim(0);
    trimmed = bench_self_kib("VmRSS");
    g_print("rss-before %" G_GUINT64_FORMAT " rss-after %" G_GUINT64_FORMAT
            " rss-trimmed %" G_GUINT64_FORMAT " hwm %" G_GUINT64_FORMAT
            " devices %u sync-us %" G_GINT64_FORMAT "\n",
            before, after, trimmed, bench_self_kib("VmHWM"),
            gw_cluster_registry_count_devices(registry), sync_us);
    {
        g_autoptr(GAsyncResult) result = NULL;
        gw_etcd_lease_revoke_async(etcd, lease, NULL, test_got_result, &result);
        if (!gw_etcd_lease_revoke_finish(etcd, test_wait(&result), NULL))
            g_printerr("--one-view: the probe's lease was not revoked\n");
    }
    return 0;
}

/* Runs this program with --one-view (with G_SLICE=always-malloc when
 * @slice_malloc): its RSS growth in kB after the sync (@trimmed_kib: after
 * malloc_trim, @peak_kib: VmHWM's growth), or 0. */
static guint64
bench_measure_one_view(const gchar *self, const gchar *url, gboolean slice_malloc,
                       guint64 *trimmed_kib, guint64 *peak_kib)
{
    g_auto(GStrv) envp = g_get_environ();
    g_autofree gchar *gateways = g_strdup_printf("%d", opt_gateways);
    g_autofree gchar *devices = g_strdup_printf("%d", opt_devices);
    const gchar *argv[] = {self,     "--one-view", url,     "--gateways",
                           gateways, "--devices",  devices, NULL};
    g_autofree gchar *out = NULL;
    g_autoptr(GError) error = NULL;
    guint64 before = 0, after = 0, trimmed = 0, hwm = 0;
    gint64 sync_us = 0;
    guint n = 0;
    gint status = -1;

    /* GLib 2.74's slice allocator keeps what json-glib's nodes freed */
    if (slice_malloc)
        envp = g_environ_setenv(envp, "G_SLICE", "always-malloc", TRUE);
    if (!g_spawn_sync(NULL, (gchar **)argv, envp, G_SPAWN_DEFAULT, NULL, NULL, &out, NULL, &status,
                      &error) ||
        status != 0) {
        g_printerr("--one-view: %s\n", error != NULL ? error->message : "failed");
        return 0;
    }
    if (sscanf(out,
               "rss-before %" G_GUINT64_FORMAT " rss-after %" G_GUINT64_FORMAT
               " rss-trimmed %" G_GUINT64_FORMAT " hwm %" G_GUINT64_FORMAT
               " devices %u sync-us %" G_GINT64_FORMAT,
               &before, &after, &trimmed, &hwm, &n, &sync_us) != 6)
        return 0;
    g_print("bench cluster-join%s: %.1f ms for a gateway's first read of %u devices (one view "
            "alone in a process)\n",
            slice_malloc ? "-slice-malloc" : "", sync_us / 1000.0, n);
    *trimmed_kib = trimmed > before ? trimmed - before : 0;
    *peak_kib = hwm > before ? hwm - before : 0;
    return after > before ? after - before : 0;
}

int
main(int argc, char **argv)
{
    const GOptionEntry entries[] = {
        {"gateways", 0, 0, G_OPTION_ARG_INT, &opt_gateways, "Simulated gateways", "N"},
        {"devices", 0, 0, G_OPTION_ARG_INT, &opt_devices, "Devices per gateway", "N"},
        {"changes", 0, 0, G_OPTION_ARG_INT, &opt_changes, "Changes timed", "N"},
        {"quiet", 0, 0, G_OPTION_ARG_INT, &opt_quiet_s, "Seconds of the quiet window", "S"},
        {"ttl", 0, 0, G_OPTION_ARG_INT, &opt_ttl_s, "Lease TTL of the gateways", "S"},
        {"one-view", 0, G_OPTION_FLAG_HIDDEN, G_OPTION_ARG_STRING, &opt_one_view, NULL, NULL},
        G_OPTION_ENTRY_NULL,
    };
    g_autoptr(GOptionContext) context = g_option_context_new("- the cluster directory at scale");
    g_autoptr(GError) error = NULL;
    g_autoptr(GPtrArray) gws = NULL;
    g_autoptr(GArray) change_ms = bench_new_doubles();
    g_autoptr(GArray) base_ms = bench_new_doubles();
    g_autoptr(GArray) ratios = bench_new_doubles();
    GArray *kind_ms[3] = {bench_new_doubles(), bench_new_doubles(), bench_new_doubles()};
    static const gchar *const kind_names[3] = {"publish", "withdraw", "revoke"};
    g_autoptr(GArray) sync_put = bench_new_doubles();
    g_autoptr(GwEtcd) probe = NULL;
    g_autoptr(GBytes) sample = NULL;
    TestCluster *cluster;
    struct rlimit limit;
    struct rusage usage0, usage1;
    gdouble load_start = bench_loadavg();
    guint64 rss_clients, rss_full, value_bytes = 0, one_view_kib;
    guint64 one_view_trimmed = 0, one_view_peak = 0;
    gint64 t0, sync_us, rev0, rev1, rev_sync0, quiet_start, quiet_us;
    guint64 renewals0 = 0, renewals1 = 0, cpu_self0, cpu_self1, cpu_etcd0, cpu_etcd1;
    GPid etcd_pid;
    gdouble put_ms, median, vmin, vmax;

    g_option_context_add_main_entries(context, entries, NULL);
    if (!g_option_context_parse(context, &argc, &argv, &error)) {
        g_printerr("%s\n", error->message);
        return 2;
    }
    if (opt_gateways < 1 || opt_devices < 1 || opt_changes < 0 || opt_quiet_s < 1 ||
        opt_ttl_s < 2) {
        g_printerr("--gateways and --devices at least 1, --quiet 1 s, --ttl 2 s\n");
        return 2;
    }
    total_devices = (guint64)opt_gateways * opt_devices;
    if (opt_one_view != NULL)
        return bench_one_view();

    /* a client per gateway: watch and op connections, a few fds each */
    if (getrlimit(RLIMIT_NOFILE, &limit) == 0 && limit.rlim_cur < limit.rlim_max) {
        limit.rlim_cur = limit.rlim_max;
        setrlimit(RLIMIT_NOFILE, &limit);
    }
    test_etcd_setup();
    if (etcd_path == NULL) {
        g_print("no etcd binary (Debian: etcd-server): skipped\n");
        return 77;
    }
    cluster = test_cluster_start(1);
    etcd_pid = atoi(g_subprocess_get_identifier(
        ((TestMember *)g_ptr_array_index(cluster->members, 0))->process));
    probe = test_client((const gchar *const[]){test_url(cluster, 0), NULL});
    {
        g_autoptr(PolicyDevice) device = bench_device(0, 0);
        sample = gw_cluster_registry_device_value(device);
    }
    g_print("bench-cluster-scale: %d gateways x %d devices (%" G_GUINT64_FORMAT
            " in all), 1 etcd member (%s), lease TTL %d s\n",
            opt_gateways, opt_devices, total_devices, etcd_path, opt_ttl_s);

    /* the gateways: clients, registries and their devices published, not started */
    gws = g_ptr_array_new();
    for (gint g = 0; g < opt_gateways; g++) {
        BenchGw *gw = g_new0(BenchGw, 1);
        g_autofree gchar *address = g_strdup_printf("10.0.%d.%d:7000", g / 250, 1 + g % 250);

        gw->name = g_strdup_printf("gw%04d", g);
        gw->etcd = test_client((const gchar *const[]){test_url(cluster, 0), NULL});
        gw->registry =
            gw_cluster_registry_new(gw->etcd, gw->name, address, &bench_events, gw, &error);
        g_assert_no_error(error);
        for (gint d = 0; d < opt_devices; d++) {
            g_autoptr(PolicyDevice) device = bench_device(g, d);
            g_autofree gchar *id = bench_device_id(d);
            g_autoptr(GBytes) value = gw_cluster_registry_device_value(device);
            value_bytes += g_bytes_get_size(value);
            gw_cluster_registry_publish(gw->registry, id, device);
        }
        gw->next_id = opt_devices;
        g_ptr_array_add(gws, gw);
    }
    for (guint i = 0; i < 5; i++)
        g_array_append_val(sync_put, (gdouble){bench_put_rtt_us(probe, sample) / 1000.0});
    rss_clients = bench_self_kib("VmRSS");

    /* (a) the leases first (a grant waits for its answer), then every
     * registry started at once; until every view is full */
    for (guint i = 0; i < gws->len; i++)
        bench_gw_grant(g_ptr_array_index(gws, i));
    rev_sync0 = bench_revision(probe);
    getrusage(RUSAGE_SELF, &usage0);
    cpu_etcd0 = bench_cpu_ticks(etcd_pid);
    t0 = g_get_monotonic_time();
    for (guint i = 0; i < gws->len; i++) {
        BenchGw *gw = g_ptr_array_index(gws, i);
        gw_cluster_registry_start(gw->registry, gw->lease);
    }
    if (!bench_run_until(&views_full, gws->len, BENCH_SYNC_TIMEOUT_S))
        g_error("the views were not full within %d s (%u full)", BENCH_SYNC_TIMEOUT_S, views_full);
    sync_us = g_get_monotonic_time() - t0;
    getrusage(RUSAGE_SELF, &usage1);
    cpu_etcd1 = bench_cpu_ticks(etcd_pid);
    test_sleep_running(1000);
    g_print("bench cluster-sync-writes: %" G_GINT64_FORMAT
            " etcd revisions for %d registrations and %" G_GUINT64_FORMAT " devices\n",
            bench_revision(probe) - rev_sync0, opt_gateways, total_devices);
    rss_full = bench_self_kib("VmRSS");
    put_ms = bench_median(sync_put);
    g_print("bench cluster-sync: %.2f s until %d views hold %" G_GUINT64_FORMAT
            " devices (baseline etcd put %.2f ms, ratio %.0f; %.0f device puts/s into %d views)\n",
            sync_us / 1e6, opt_gateways, total_devices, put_ms, sync_us / 1000.0 / put_ms,
            total_devices / (sync_us / 1e6), opt_gateways);
    g_print("bench cluster-sync-cpu: %.2f s of this process's CPU (%.1f ms per view, %.1f us per "
            "device event), etcd %.2f s\n",
            bench_rusage_s(&usage1) - bench_rusage_s(&usage0),
            (bench_rusage_s(&usage1) - bench_rusage_s(&usage0)) * 1000.0 / opt_gateways,
            (bench_rusage_s(&usage1) - bench_rusage_s(&usage0)) * 1e6 / opt_gateways /
                (gdouble)total_devices,
            (gdouble)(cpu_etcd1 - cpu_etcd0) / sysconf(_SC_CLK_TCK));

    /* (b) changes, each after a baseline put round trip (interleaved) */
    for (gint c = 0; c < opt_changes; c++) {
        guint kind = c % 3;
        BenchGw *gw = g_ptr_array_index(gws, g_random_int_range(0, gws->len));
        g_autoptr(GArray) puts = bench_new_doubles();
        gint64 start, elapsed;
        gdouble ms;

        for (guint i = 0; i < BENCH_BASELINE_PUTS; i++)
            g_array_append_val(puts, (gdouble){bench_put_rtt_us(probe, sample) / 1000.0});
        for (guint i = 0; i < gws->len; i++)
            ((BenchGw *)g_ptr_array_index(gws, i))->seen = FALSE;
        g_free(wait_for.gateway);
        g_free(wait_for.id);
        wait_for.gateway = g_strdup(gw->name);
        wait_for.id = NULL;
        wait_for.seen = 0;
        start = g_get_monotonic_time();
        if (kind == 0) {
            g_autoptr(PolicyDevice) device = bench_device(0, gw->next_id);
            wait_for.kind = BENCH_WAIT_FOUND;
            wait_for.id = bench_device_id(gw->next_id++);
            total_devices++;
            gw_cluster_registry_publish(gw->registry, wait_for.id, device);
        } else if (kind == 1) {
            wait_for.kind = BENCH_WAIT_LOST;
            wait_for.id = bench_device_id(0);
            /* withdraw device 0 if there, else the newest */
            if (gw_cluster_registry_lookup(gw->registry, gw->name, wait_for.id) == NULL) {
                g_free(wait_for.id);
                wait_for.id = bench_device_id(--gw->next_id);
            }
            total_devices--;
            gw_cluster_registry_withdraw(gw->registry, wait_for.id);
        } else {
            g_autoptr(GAsyncResult) result = NULL;
            wait_for.kind = BENCH_WAIT_GONE;
            gw_etcd_lease_revoke_async(probe, gw->lease, NULL, test_got_result, &result);
            if (!gw_etcd_lease_revoke_finish(probe, test_wait(&result), &error))
                g_error("revoke: %s", error->message);
        }
        if (!bench_run_until(&wait_for.seen, gws->len, BENCH_CHANGE_TIMEOUT_S))
            g_error("change %d (%s) reached %u of %u views within %d s", c, kind_names[kind],
                    wait_for.seen, gws->len, BENCH_CHANGE_TIMEOUT_S);
        elapsed = g_get_monotonic_time() - start;
        ms = elapsed / 1000.0;
        g_array_append_val(change_ms, ms);
        g_array_append_val(kind_ms[kind], ms);
        g_array_append_val(base_ms, (gdouble){bench_median(puts)});
        g_array_append_val(ratios, (gdouble){ms / bench_median(puts)});
        wait_for.kind = BENCH_WAIT_NONE;
        if (kind == 2) {
            /* back: a new lease, everything written again; untimed */
            bench_gw_start(gw);
            if (!bench_run_until(&views_full, gws->len, BENCH_SYNC_TIMEOUT_S))
                g_error("gateway %s not back in every view", gw->name);
        } else {
            if (!bench_run_until(&views_full, gws->len, BENCH_CHANGE_TIMEOUT_S))
                g_error("views not full after change %d", c);
        }
    }
    if (change_ms->len > 0) {
        gdouble base = bench_median(base_ms);
        g_autoptr(GArray) ratio_copy = g_array_copy(ratios);
        g_autoptr(GArray) value_copy = g_array_copy(change_ms);

        median = bench_median(change_ms);
        bench_print_compared("cluster-convergence", "ms", median, "etcd-put", base,
                             bench_median(ratio_copy), value_copy, ratio_copy);
        bench_min_max(change_ms, &vmin, &vmax);
        g_print("bench cluster-convergence-max: %.1f ms over %u changes (p50 %.1f ms)\n", vmax,
                change_ms->len, median);
        for (guint k = 0; k < 3; k++) {
            if (kind_ms[k]->len == 0)
                continue;
            bench_min_max(kind_ms[k], &vmin, &vmax);
            g_print("bench cluster-convergence-%s: median %.1f ms, min-max %.1f-%.1f ms (%u "
                    "changes)\n",
                    kind_names[k], bench_median(kind_ms[k]), vmin, vmax, kind_ms[k]->len);
        }
    }

    /* (c) a quiet window: revisions and keepalives per second, CPU */
    test_sleep_running(1000);
    rev0 = bench_revision(probe);
    for (guint i = 0; i < gws->len; i++)
        renewals0 += gw_etcd_lease_keeper_get_renewals(((BenchGw *)gws->pdata[i])->keeper);
    cpu_self0 = bench_cpu_ticks(getpid());
    cpu_etcd0 = bench_cpu_ticks(etcd_pid);
    quiet_start = g_get_monotonic_time();
    test_sleep_running(opt_quiet_s * 1000);
    quiet_us = g_get_monotonic_time() - quiet_start;
    rev1 = bench_revision(probe);
    cpu_self1 = bench_cpu_ticks(getpid());
    cpu_etcd1 = bench_cpu_ticks(etcd_pid);
    for (guint i = 0; i < gws->len; i++)
        renewals1 += gw_etcd_lease_keeper_get_renewals(((BenchGw *)gws->pdata[i])->keeper);
    /* the second range is one revision read, not a write */
    g_print("bench cluster-steady-writes: %.2f writes/s (etcd revisions over %.1f s; baseline "
            "keepalives %.2f/s, expected %d gateways x %d per %d s = %.2f/s)\n",
            (rev1 - rev0) / (quiet_us / 1e6), quiet_us / 1e6,
            (renewals1 - renewals0) / (quiet_us / 1e6), opt_gateways, GW_ETCD_KEEPALIVE_PER_TTL,
            opt_ttl_s, (gdouble)opt_gateways * GW_ETCD_KEEPALIVE_PER_TTL / opt_ttl_s);
    g_print("bench cluster-steady-cpu: this process %.1f %%, etcd %.1f %% of one core\n",
            100.0 * (cpu_self1 - cpu_self0) / sysconf(_SC_CLK_TCK) / (quiet_us / 1e6),
            100.0 * (cpu_etcd1 - cpu_etcd0) / sysconf(_SC_CLK_TCK) / (quiet_us / 1e6));

    /* (d) memory */
    g_print("bench cluster-view-rss: %.1f KiB per gateway (RSS %" G_GUINT64_FORMAT
            " -> %" G_GUINT64_FORMAT " KiB over %d views of %" G_GUINT64_FORMAT
            " devices; baseline value bytes per view %.1f KiB, ratio %.2f)\n",
            (gdouble)(rss_full - rss_clients) / opt_gateways, rss_clients, rss_full, opt_gateways,
            (guint64)opt_gateways * opt_devices, value_bytes / 1024.0,
            (rss_full - rss_clients) * 1024.0 / opt_gateways / value_bytes);
    for (guint slice_malloc = 0; slice_malloc < 2; slice_malloc++) {
        one_view_kib = bench_measure_one_view(argv[0], test_url(cluster, 0), slice_malloc,
                                              &one_view_trimmed, &one_view_peak);
        g_print("bench cluster-one-view-rss%s: %" G_GUINT64_FORMAT
                " KiB for one view alone in a process, %" G_GUINT64_FORMAT
                " KiB after malloc_trim, peak +%" G_GUINT64_FORMAT
                " KiB (baseline value bytes %.1f KiB, ratio %.2f trimmed; %.0f bytes per device "
                "trimmed)\n",
                slice_malloc ? "-slice-malloc" : "", one_view_kib, one_view_trimmed, one_view_peak,
                value_bytes / 1024.0, one_view_trimmed * 1024.0 / value_bytes,
                one_view_trimmed * 1024.0 / ((gdouble)total_devices));
    }
    g_print("rig: real etcd %s on 127.0.0.1, %u cores (nproc), load %.2f at start, %.2f at end "
            "(1-min loadavg)\n",
            etcd_path, g_get_num_processors(), load_start, bench_loadavg());

    for (guint i = 0; i < gws->len; i++) {
        BenchGw *gw = g_ptr_array_index(gws, i);
        gw_etcd_lease_keeper_free(gw->keeper);
        gw_cluster_registry_free(gw->registry);
        g_object_unref(gw->etcd);
        g_free(gw->name);
        g_free(gw);
    }
    g_free(wait_for.gateway);
    g_free(wait_for.id);
    for (guint k = 0; k < 3; k++)
        g_array_unref(kind_ms[k]);
    test_cluster_stop(cluster);
    test_etcd_teardown();
    return 0;
}
