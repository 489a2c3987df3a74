/* rss-bench: usbgwd's memory per attached idle session (figure
 * rss-per-session) against Debian's usbredirect exporting one identical key.
 *
 * Usage (the driver starts usbgw-bench-sim, whose extra keys key1, key2, …
 * make many attachments possible, with this program as its child):
 *
 *   bench/run-gateway-bench.sh rss build/bench/usbgw-bench-sim \
 *       build/bench/rss-bench build/gateway/usbgwd [OPTION…]
 *   meson test -C build --benchmark gateway-rss -v
 *
 * Options: --rounds N (5, at least 5), --sessions LIST (1,10,25,49),
 * --settle-ms MS (500), --no-usbredirect.
 *
 * key1…keyMAX (identical 0529:0001 keys on ports 1-5, 1-6, …) are plugged
 * once at the start. For each step N a fresh usbgwd runs with a policy that
 * assigns exactly key1…keyN (via-port), so it claims N keys and opens N
 * attachment sockets; a QEMU-role usbredirparser peer connects to each,
 * waits for device_connect and runs one challenge/response (checked against
 * that key's secret: every session is live); after a settle time the bench
 * reads usbgwd's VmRSS, RssAnon and VmHWM from /proc/PID/status and stops
 * it. The baseline runs in the same rounds: usbredirect --device 0529:0001
 * --as 127.0.0.1:PORT (it opens the first identical key libusb lists — its
 * "--device BUS-DEV" form resolves to VID:PID as well — so the check
 * accepts any key's answer and the output names the key), one peer over
 * TCP, the same check and settling, its VmRSS and RssAnon. A round runs the baseline and the steps
 * in an order rotated by one each round. usbredirect serves one device per
 * process, so N devices cost N processes: the baseline for N sessions is N
 * times its figure (for VmRSS that overstates N real processes, which share
 * their libraries' file pages; RssAnon is the fairer per-process cost).
 *
 * The per-session figure is the least-squares slope of usbgwd's figure over
 * the steps, per round. Limits of this rig: umockdev 0.17's preload aborts
 * a process holding more than 50 emulated device fds (FD_MAP_MAX), so one
 * usbgwd can attach at most 49 simulated keys (100 and 1,000 sessions are
 * out of reach); and umockdev cannot re-add a device under a device number
 * it used before (stale /sys/dev/char link), so keys are never replugged. */
#include <glib/gstdio.h>
#include <string.h>
#include <sys/wait.h>

#include <gio/gio.h>

#include "bench-common.h"

#define RSS_CONNECT_US (60 * G_USEC_PER_SEC)
#define RSS_OP_US      (10 * G_USEC_PER_SEC)
#define RSS_VM         "rss"
#define RSS_MAX_STEPS  8
/* umockdev 0.17's preload tracks at most 50 open emulated device fds per
 * process (FD_MAP_MAX) and aborts on the 51st: usbgwd holds one per
 * attached key, plus one briefly while it describes each device. */
#define RSS_MAX_SESSIONS 49
#define RSS_FIRST_PORT   5 /* key1 is at 1-5 (bench-sim-keys.c) */

typedef struct {
    const gchar *sim_control;
    const gchar *usbgwd;
    const gchar *usbredirect;
    const gchar *workdir;
    gint redirect_key; /* the key usbredirect opened (index into secrets), -1 before */
    guint steps[RSS_MAX_STEPS];
    guint n_steps;
    guint max_sessions;
    guint8 (*secrets)[USBGW_KEY_LEN]; /* key1… */
    gint settle_ms;
    GRand *rand;
    /* per round */
    GArray *gw_rss[RSS_MAX_STEPS]; /* kB */
    GArray *gw_anon[RSS_MAX_STEPS];
    GArray *gw_hwm[RSS_MAX_STEPS];
    GArray *redirect_rss;
    GArray *redirect_anon;
} Rss;

static void
rss_append(GArray *a, gdouble v)
{
    g_array_append_val(a, v);
}

/* One challenge/response on @peer, checked against the secrets of keys
 * @first…@last (indexes into rss->secrets); returns the index of the key
 * that answered, or -1. */
static gint
rss_check(Rss *rss, UsbredirPeer *peer, guint first, guint last, GError **error)
{
    guint8 challenge[USBGW_KEY_LEN], response[USBGW_KEY_LEN], want[USBGW_KEY_LEN];
    gint64 op_ns, in_ns;

    for (guint k = 0; k < USBGW_KEY_LEN; k++)
        challenge[k] = (guint8)g_rand_int(rss->rand);
    if (!bench_peer_challenge(peer, challenge, response, &op_ns, &in_ns, RSS_OP_US, error))
        return -1;
    for (guint k = first; k <= last; k++) {
        usbgw_key_compute(rss->secrets[k], challenge, want);
        if (memcmp(want, response, USBGW_KEY_LEN) == 0)
            return (gint)k;
    }
    g_set_error(error, G_IO_ERROR, G_IO_ERROR_FAILED, "%s: the response is no key's answer",
                usbredir_peer_get_label(peer));
    return -1;
}

/* Serves the peers for the settle time, so nothing is left in flight. */
static gboolean
rss_settle(Rss *rss, UsbredirPeer *const *peers, guint n, GError **error)
{
    return usbredir_peer_serve_all(peers, n, NULL,
                                   g_get_monotonic_time() + (gint64)rss->settle_ms * 1000, error);
}

static gboolean
rss_round_usbredirect(Rss *rss, GError **error)
{
    g_autofree gchar *log = g_build_filename(rss->workdir, "usbredirect.log", NULL);
    g_autofree gchar *as = NULL;
    g_autoptr(UsbredirPeer) peer = NULL;
    guint16 port = bench_free_tcp_port(error);
    GPid pid = 0;
    gboolean ok = FALSE;
    int fd;

    if (port == 0)
        return FALSE;
    as = g_strdup_printf("127.0.0.1:%u", port);
    /* usbredirect 0.13 resolves even "--device BUS-DEV" to VID:PID and opens
     * the first such device libusb lists: any of the identical keys (none
     * is in use while it runs). The check below says which one. */
    const gchar *argv[] = {rss->usbredirect, "--device", "0529:0001", "--as", as, NULL};
    if (!bench_child_spawn(argv, log, &pid, error))
        return FALSE;
    fd = bench_connect_tcp(port, RSS_CONNECT_US, error);
    if (fd >= 0) {
        peer = bench_peer_new(fd, "usbredirect peer");
        gint key = -1;
        ok = bench_peer_wait_connected(peer, RSS_CONNECT_US, error) &&
             (key = rss_check(rss, peer, 0, rss->max_sessions - 1, error)) >= 0 &&
             rss_settle(rss, &peer, 1, error);
        if (ok && rss->redirect_key >= 0 && key != rss->redirect_key)
            g_printerr("note: usbredirect opened key%d this time, key%d before\n", key + 1,
                       rss->redirect_key + 1);
        rss->redirect_key = key;
    }
    if (ok) {
        rss_append(rss->redirect_rss, (gdouble)bench_proc_status_kib(pid, "VmRSS"));
        rss_append(rss->redirect_anon, (gdouble)bench_proc_status_kib(pid, "RssAnon"));
    }
    g_clear_pointer(&peer, usbredir_peer_free);
    bench_child_stop(pid);
    return ok;
}

/* Waits for usbgwd's "ready" line. */
static gboolean
rss_wait_ready(GPid pid, const gchar *log, gsize log_start, GError **error)
{
    for (int i = 0; i < 1000; i++) {
        g_autofree gchar *text = NULL;
        gsize len;
        if (g_file_get_contents(log, &text, &len, NULL) && len > log_start &&
            strstr(text + log_start, ": ready") != NULL)
            return TRUE;
        if (!bench_child_alive(pid)) {
            g_set_error(error, G_IO_ERROR, G_IO_ERROR_FAILED, "usbgwd exited at start (see %s)",
                        log);
            return FALSE;
        }
        g_usleep(10 * 1000);
    }
    g_set_error(error, G_IO_ERROR, G_IO_ERROR_TIMED_OUT, "usbgwd not ready after 10 s");
    return FALSE;
}

/* Waits for usbgwd to create @sock (a plugged key arrived), failing fast
 * if usbgwd dies. */
static gboolean
rss_wait_socket(GPid pid, const gchar *sock, const gchar *log, GError **error)
{
    gint64 deadline = g_get_monotonic_time() + RSS_CONNECT_US;

    while (!g_file_test(sock, G_FILE_TEST_EXISTS)) {
        if (!bench_child_alive(pid)) {
            g_set_error(error, G_IO_ERROR, G_IO_ERROR_FAILED, "usbgwd died (see %s)", log);
            return FALSE;
        }
        if (g_get_monotonic_time() > deadline) {
            g_set_error(error, G_IO_ERROR, G_IO_ERROR_TIMED_OUT, "usbgwd did not create %s", sock);
            return FALSE;
        }
        g_usleep(5 * 1000);
    }
    return TRUE;
}

/* One usbgwd process serving key1…keyN: policy, start, one peer per
 * attachment, a checked challenge on each, settle, /proc figures, stop. */
static gboolean
rss_run_usbgwd(Rss *rss, guint step, GError **error)
{
    guint n = rss->steps[step];
    g_autofree gchar *policy = g_build_filename(rss->workdir, "rss.policy", NULL);
    g_autofree gchar *rundir = g_build_filename(rss->workdir, "run", NULL);
    g_autofree gchar *log = g_build_filename(rss->workdir, "usbgwd.log", NULL);
    g_autofree gchar *config = g_build_filename(rss->workdir, "none.conf", NULL);
    g_autoptr(GString) text = g_string_new(NULL);
    const gchar *argv[] = {rss->usbgwd, "--foreground", "--policy", policy, "--rundir",
                           rundir,      "--config",     config,     NULL};
    g_autoptr(GPtrArray) peers = g_ptr_array_new_with_free_func((GDestroyNotify)usbredir_peer_free);
    gsize log_start = 0;
    GStatBuf st;
    GPid pid = 0;
    gboolean ok = FALSE;
    int status;

    g_string_append_printf(text, "# rss-bench: key1..key%u go to usbgwd, other keys stay free\n",
                           n);
    for (guint k = 0; k < n; k++)
        g_string_append_printf(text, "assign id 0529:0001 via-port \"1-%u\" to vm \"" RSS_VM "\"\n",
                               RSS_FIRST_PORT + k);
    if (g_stat(log, &st) == 0)
        log_start = (gsize)st.st_size; /* the log grows over the runs */
    if (!g_file_set_contents(policy, text->str, (gssize)text->len, error) ||
        !bench_child_spawn(argv, log, &pid, error))
        return FALSE;
    if (!rss_wait_ready(pid, log, log_start, error))
        goto out;
    for (guint k = 0; k < n; k++) {
        g_autofree gchar *file = g_strdup_printf("0529-0001-at-1-%u.sock", RSS_FIRST_PORT + k);
        g_autofree gchar *sock = g_build_filename(rundir, "vm", RSS_VM, file, NULL);
        g_autofree gchar *label = g_strdup_printf("usbgwd peer key%u", k + 1);
        int fd;
        if (!rss_wait_socket(pid, sock, log, error))
            goto out;
        fd = bench_connect_unix(sock, RSS_CONNECT_US, error);
        if (fd < 0)
            goto out;
        g_ptr_array_add(peers, bench_peer_new(fd, label));
    }
    if (!bench_peers_wait_connected((UsbredirPeer **)peers->pdata, peers->len, RSS_CONNECT_US,
                                    error))
        goto out;
    for (guint k = 0; k < n; k++) {
        if (rss_check(rss, g_ptr_array_index(peers, k), k, k, error) < 0)
            goto out;
    }
    if (!rss_settle(rss, (UsbredirPeer **)peers->pdata, peers->len, error))
        goto out;
    rss_append(rss->gw_rss[step], (gdouble)bench_proc_status_kib(pid, "VmRSS"));
    rss_append(rss->gw_anon[step], (gdouble)bench_proc_status_kib(pid, "RssAnon"));
    rss_append(rss->gw_hwm[step], (gdouble)bench_proc_status_kib(pid, "VmHWM"));
    ok = TRUE;

out:
    g_ptr_array_set_size(peers, 0);
    status = bench_child_stop(pid);
    if (ok && !(WIFEXITED(status) && WEXITSTATUS(status) == 0))
        g_printerr("warning: usbgwd did not exit cleanly on SIGTERM (status %d)\n", status);
    if (!ok && error != NULL && *error != NULL)
        g_prefix_error(error, "usbgwd with %u sessions: ", n);
    return ok;
}

/* Least-squares slope of y over x. */
static gdouble
rss_slope(const guint *x, const gdouble *y, guint n)
{
    gdouble mx = 0, my = 0, sxy = 0, sxx = 0;
    for (guint i = 0; i < n; i++) {
        mx += x[i];
        my += y[i];
    }
    mx /= n;
    my /= n;
    for (guint i = 0; i < n; i++) {
        sxy += (x[i] - mx) * (y[i] - my);
        sxx += (x[i] - mx) * (x[i] - mx);
    }
    return sxx > 0 ? sxy / sxx : 0;
}

/* Per-round slopes of @per_step (one array per step). */
static GArray *
rss_round_slopes(Rss *rss, GArray **per_step)
{
    GArray *slopes = bench_new_doubles();
    for (guint r = 0; r < per_step[0]->len; r++) {
        gdouble y[RSS_MAX_STEPS];
        for (guint s = 0; s < rss->n_steps; s++)
            y[s] = g_array_index(per_step[s], gdouble, r);
        rss_append(slopes, rss_slope(rss->steps, y, rss->n_steps));
    }
    return slopes;
}

/* @decimals: 0 for RSS figures, 1 for slopes */
static void
rss_print(const gchar *name, GArray *values, const gchar *base, GArray *base_values,
          gdouble base_factor, int decimals)
{
    g_autoptr(GArray) v = g_array_copy(values);
    g_autoptr(GArray) b = g_array_copy(base_values);
    g_autoptr(GArray) ratios = bench_new_doubles();
    gdouble vmin, vmax, rmin, rmax, value, base_value;

    for (guint i = 0; i < MIN(values->len, base_values->len); i++) {
        gdouble bv = g_array_index(base_values, gdouble, i) * base_factor;
        rss_append(ratios, bv != 0 ? g_array_index(values, gdouble, i) / bv : 0);
    }
    value = bench_median(v);
    base_value = bench_median(b) * base_factor;
    bench_min_max(v, &vmin, &vmax);
    bench_min_max(ratios, &rmin, &rmax);
    g_print("bench %s: %.*f KiB (baseline %s %.0f KiB, ratio %.3f) rounds: median %.*f, min-max "
            "%.*f-%.*f; ratio median %.3f, min-max %.3f-%.3f\n",
            name, decimals, value, base, base_value, base_value != 0 ? value / base_value : 0,
            decimals, value, decimals, vmin, decimals, vmax, bench_median(ratios), rmin, rmax);
}

static gboolean
rss_parse_steps(Rss *rss, const gchar *text, GError **error)
{
    g_auto(GStrv) parts = g_strsplit(text, ",", -1);
    guint prev = 0;

    rss->n_steps = 0;
    for (gchar **p = parts; *p != NULL; p++) {
        guint64 v = g_ascii_strtoull(*p, NULL, 10);
        if (v <= prev || v > RSS_MAX_SESSIONS || rss->n_steps == RSS_MAX_STEPS) {
            g_set_error(error, G_IO_ERROR, G_IO_ERROR_INVALID_ARGUMENT,
                        "--sessions: up to %d increasing counts from 1 to %d (umockdev's "
                        "preload aborts a process with more than 50 emulated device fds)",
                        RSS_MAX_STEPS, RSS_MAX_SESSIONS);
            return FALSE;
        }
        rss->steps[rss->n_steps++] = prev = (guint)v;
    }
    if (rss->n_steps < 2) {
        g_set_error(error, G_IO_ERROR, G_IO_ERROR_INVALID_ARGUMENT, "--sessions: at least 2 steps");
        return FALSE;
    }
    rss->max_sessions = prev;
    return TRUE;
}

int
main(int argc, char **argv)
{
    g_autofree gchar *sim_control = NULL;
    g_autofree gchar *usbgwd = NULL;
    g_autofree gchar *usbredirect = g_strdup("usbredirect");
    g_autofree gchar *workdir = NULL;
    g_autofree gchar *sessions = g_strdup("1,10,25,49");
    gint rounds = 5, settle_ms = 500;
    gboolean no_usbredirect = FALSE;
    const GOptionEntry entries[] = {
        {"sim-control", 0, 0, G_OPTION_ARG_FILENAME, &sim_control, "usbgw-sim control socket",
         "PATH"},
        {"usbgwd", 0, 0, G_OPTION_ARG_FILENAME, &usbgwd, "usbgwd to run", "PATH"},
        {"usbredirect", 0, 0, G_OPTION_ARG_FILENAME, &usbredirect, "usbredirect (from PATH)",
         "PATH"},
        {"workdir", 0, 0, G_OPTION_ARG_FILENAME, &workdir, "Policy, rundir and logs", "DIR"},
        {"sessions", 0, 0, G_OPTION_ARG_STRING, &sessions, "Session counts (1,10,25,49)", "LIST"},
        {"rounds", 0, 0, G_OPTION_ARG_INT, &rounds, "Rounds (5, at least 5)", "N"},
        {"settle-ms", 0, 0, G_OPTION_ARG_INT, &settle_ms, "Wait before reading RSS (500)", "MS"},
        {"no-usbredirect", 0, 0, G_OPTION_ARG_NONE, &no_usbredirect, "Leave usbredirect out", NULL},
        G_OPTION_ENTRY_NULL,
    };
    g_autoptr(GOptionContext) context = g_option_context_new("— usbgwd RSS per attached session");
    g_autoptr(GError) error = NULL;
    Rss rss = {0};
    gdouble load_at_start = -1;
    int status = 1;

    g_option_context_add_main_entries(context, entries, NULL);
    if (!g_option_context_parse(context, &argc, &argv, &error)) {
        g_printerr("rss-bench: %s\n", error->message);
        return 2;
    }
    if (sim_control == NULL || usbgwd == NULL || workdir == NULL) {
        g_printerr("rss-bench: --sim-control, --usbgwd and --workdir are required "
                   "(run it through bench/run-gateway-bench.sh)\n");
        return 2;
    }
    if (!rss_parse_steps(&rss, sessions, &error)) {
        g_printerr("rss-bench: %s\n", error->message);
        return 2;
    }
    rounds = MAX(rounds, 5);
    load_at_start = bench_loadavg();
    rss.sim_control = sim_control;
    rss.usbgwd = usbgwd;
    rss.usbredirect = no_usbredirect ? NULL : usbredirect;
    rss.workdir = workdir;
    rss.redirect_key = -1;
    rss.settle_ms = MAX(settle_ms, 0);
    rss.rand = g_rand_new_with_seed(1124);
    rss.redirect_rss = bench_new_doubles();
    rss.redirect_anon = bench_new_doubles();
    for (guint s = 0; s < rss.n_steps; s++) {
        rss.gw_rss[s] = bench_new_doubles();
        rss.gw_anon[s] = bench_new_doubles();
        rss.gw_hwm[s] = bench_new_doubles();
    }
    rss.secrets = g_malloc0_n(rss.max_sessions, USBGW_KEY_LEN);
    for (guint k = 0; k < rss.max_sessions; k++) {
        g_autofree gchar *name = g_strdup_printf("key%u", k + 1);
        g_autofree gchar *port = NULL;
        g_autofree gchar *want = g_strdup_printf("1-%u", RSS_FIRST_PORT + k);
        guint devnum;
        if (!bench_sim_key_info(sim_control, name, &port, NULL, &devnum, rss.secrets[k], &error))
            goto out;
        if (g_strcmp0(port, want) != 0) {
            g_set_error(&error, G_IO_ERROR, G_IO_ERROR_FAILED,
                        "%s is at %s, not %s (usbgw-bench-sim with USBGW_BENCH_SIM_KEYS >= %u?)",
                        name, port, want, rss.max_sessions);
            goto out;
        }
        if (devnum == 0) {
            g_autofree gchar *cmd = g_strdup_printf("plug %s", name);
            g_autofree gchar *reply = bench_sim_command(sim_control, cmd, &error);
            if (reply == NULL)
                goto out;
        }
    }

    /* interleaved: item 0 is the baseline, 1… the steps; rotated each round */
    for (gint r = 0; r < rounds; r++) {
        guint n_items = rss.n_steps + 1;
        for (guint i = 0; i < n_items; i++) {
            guint item = (i + (guint)r) % n_items;
            if (item == 0) {
                if (rss.usbredirect != NULL && !rss_round_usbredirect(&rss, &error))
                    goto out;
            } else if (!rss_run_usbgwd(&rss, item - 1, &error)) {
                goto out;
            }
        }
    }

    {
        g_autofree gchar *rig =
            g_strdup_printf("usbgw-bench-sim: key1..key%u, identical 0529:0001 vendor keys -> "
                            "usbgwd; Debian usbredirect --device 0529:0001 over TCP (it opened "
                            "key%d)",
                            rss.max_sessions, rss.redirect_key + 1);
        bench_print_rig(rig, load_at_start);
    }
    g_print("method: %d rounds, baseline and steps interleaved (rotating order); per step a "
            "fresh usbgwd assigned N keys, a peer per attachment, device_connect, one checked "
            "challenge each, %d ms settle, then /proc/PID/status\n",
            rounds, rss.settle_ms);
    g_print("usbgwd (round medians):");
    for (guint s = 0; s < rss.n_steps; s++)
        g_print("%s %u sessions VmRSS %.0f KiB (RssAnon %.0f, VmHWM %.0f)", s > 0 ? "," : "",
                rss.steps[s], bench_median(rss.gw_rss[s]), bench_median(rss.gw_anon[s]),
                bench_median(rss.gw_hwm[s]));
    g_print("\n");
    if (rss.usbredirect != NULL)
        g_print("usbredirect, one device and peer: VmRSS %.0f KiB, RssAnon %.0f KiB (medians)\n",
                bench_median(rss.redirect_rss), bench_median(rss.redirect_anon));
    else {
        /* no baseline: compare with nothing but keep the line format */
        for (gint r = 0; r < rounds; r++) {
            rss_append(rss.redirect_rss, 0);
            rss_append(rss.redirect_anon, 0);
        }
    }

    for (guint s = 0; s < rss.n_steps; s++) {
        g_autofree gchar *name = g_strdup_printf("rss-sessions-%u", rss.steps[s]);
        g_autofree gchar *base = g_strdup_printf("usbredirect-x%u", rss.steps[s]);
        rss_print(name, rss.gw_rss[s], base, rss.redirect_rss, rss.steps[s], 0);
    }
    {
        g_autoptr(GArray) slopes = rss_round_slopes(&rss, rss.gw_rss);
        g_autoptr(GArray) anon_slopes = rss_round_slopes(&rss, rss.gw_anon);
        g_autoptr(GArray) hwm_slopes = rss_round_slopes(&rss, rss.gw_hwm);
        rss_print("rss-per-session", slopes, "usbredirect-per-device", rss.redirect_rss, 1, 1);
        rss_print("rss-anon-per-session", anon_slopes, "usbredirect-anon-per-device",
                  rss.redirect_anon, 1, 1);
        rss_print("hwm-per-session", hwm_slopes, "usbredirect-per-device", rss.redirect_rss, 1, 1);
    }
    status = 0;

out:
    if (error != NULL)
        g_printerr("rss-bench: %s\n", error->message);
    for (guint s = 0; s < rss.n_steps; s++) {
        g_array_unref(rss.gw_rss[s]);
        g_array_unref(rss.gw_anon[s]);
        g_array_unref(rss.gw_hwm[s]);
    }
    g_array_unref(rss.redirect_rss);
    g_array_unref(rss.redirect_anon);
    g_free(rss.secrets);
    g_rand_free(rss.rand);
    return status;
}
