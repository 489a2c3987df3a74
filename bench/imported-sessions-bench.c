/* imported-sessions-bench: what sessions imported over a gateway link cost
 * the importing usbgwd (figures imported-sessions and sessions-per-core).
 *
 *   imported-sessions-bench --usbgwd PATH --link-exporter PATH
 *       --make-certs tests/link/make-certs.sh [OPTION…]
 *   meson test -C build --benchmark link-imported-sessions -v
 *
 * Protocol-level rig, no libusb, no umockdev:
 *
 *   this program: N peers in QEMU's role (tests/usbredir-peer guests),
 *     one per imported device's socket
 *       -> usbgwd "hv1" (the importer: GwImport, GwProxy, one GwLink)
 *       -> TLS link on 127.0.0.1
 *       -> link-exporter "exp" (GwLinkTls, GwLink, N fake devices that
 *          answer control transfers at once)
 *
 * The importer's policy is `assign id 0529:* on gateway "exp" to vm
 * "vm1"`: one VM holding every device, one socket and one session each.
 *
 * For each N of --sizes (1,10,100,1000) a fresh exporter announcing N
 * devices and a fresh importer; once all N peers have device_connect and
 * one checked challenge each:
 *   - RSS: the importer's VmRSS with the imports alone (sockets, no peer)
 *     and with N sessions; the per-session cost is the least-squares
 *     slope over the sizes (and between neighbouring sizes);
 *   - idle CPU: utime+stime of the whole importer (/proc/PID/stat) over
 *     --idle-s seconds (10) with every session idle, and of the exporter;
 *   - latency: --ops (2000) sequential control IN round trips spread over
 *     the sessions; p50, p99, p99.9 against those at the smallest N.
 * At the smallest N, link-rtt on this rig: session 0's round trip against
 * a fake device of the same exporter reached directly on a unix socket
 * (link-exporter --direct), 5 interleaved rounds of --ops each.
 * Then, at each N, sessions-per-core: K of the N sessions each sending a
 * control IN --rate times a second (100, evenly phased) for --load-s
 * seconds (5), K stepping through --load-steps (10,25,50,100,250,500,
 * 1000,2000, those <= N),
 * each step right after a K=1 window (the baseline). Latency counts from
 * the request's scheduled time, so a backlog shows. A step passes while
 * its p99 minus the K=1 p99 stays within 1 ms and at least 95 % of the
 * requests were answered in the window; the search stops at the first
 * failure. Printed per step: the added p99 and the CPU (share of one core)
 * of the importer, the exporter and this program, which all share the
 * machine's cores. */
#include <errno.h>
#include <glib/gstdio.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include <gio/gio.h>

#include "../tests/sim/key-protocol.h"
#include "bench-common.h"

#define IMP_CONNECT_US    (120 * G_USEC_PER_SEC)
#define IMP_OP_TIMEOUT_US (5 * G_USEC_PER_SEC)
#define IMP_SETTLE_US     (2 * G_USEC_PER_SEC)
#define IMP_DRAIN_US      (2 * G_USEC_PER_SEC)
#define IMP_ADDED_P99_MAX 1000.0 /* µs: the sessions-per-core criterion */
#define IMP_ANSWERED_MIN  0.95   /* of the requests sent, within the window */
#define IMP_RTT_ROUNDS    5      /* link-rtt-protocol: both targets per round, order alternating */
#define IMP_RTT_WARMUP    200
#define IMP_EXPORTER      "exp"
#define IMP_IMPORTER      "hv1"
#define IMP_VM            "vm1"

/* ---- sessions under load ---------------------------------------------------- */

typedef struct Load Load;

typedef struct {
    UsbredirPeer *peer; /* owned */
    Load *load;         /* nullable: while a load runs */
    guint64 next_id;
    guint64 waiting_id;
    gint64 due_ns;  /* next request's scheduled time */
    gint64 sent_ns; /* the outstanding request's scheduled time, 0: none */
} Session;

struct Load {
    GArray *lat_us;
    guint sent;
    guint answered;
    guint failed;
};

static void
session_answer(UsbredirPeer *peer, const UsbredirPeerControl *control, gpointer user_data)
{
    Session *s = user_data;
    gdouble us;

    if (s->load == NULL || s->sent_ns == 0 || control->id != s->waiting_id)
        return;
    us = (gdouble)(bench_now_ns() - s->sent_ns) / 1000.0;
    if (control->header.status != usb_redir_success || control->length != USBGW_KEY_LEN)
        s->load->failed++;
    g_array_append_val(s->load->lat_us, us);
    s->load->answered++;
    s->sent_ns = 0;
}

static void
session_send(Session *s)
{
    struct usb_redir_control_packet_header header = {
        .endpoint = 0x80,
        .request = USBGW_KEY_REQ_RESPONSE,
        .requesttype = 0xc0,
        .length = USBGW_KEY_LEN,
    };

    /* ids of our own, far from usbredir_peer_control()'s */
    s->waiting_id = (G_GUINT64_CONSTANT(1) << 40) + s->next_id++;
    usbredirparser_send_control_packet(usbredir_peer_get_parser(s->peer), s->waiting_id, &header,
                                       NULL, 0);
    usbredir_peer_flush(s->peer);
    s->sent_ns = s->due_ns;
    s->load->sent++;
}

/* K sessions at @rate requests/s each for @seconds; latencies into
 * @load. */
static gboolean
load_run(Session *sessions, guint k, guint rate, gdouble seconds, Load *load, GError **error)
{
    g_autofree struct pollfd *pfds = g_new0(struct pollfd, k);
    gint64 period = G_GINT64_CONSTANT(1000000000) / rate;
    gint64 start = bench_now_ns() + 10 * G_GINT64_CONSTANT(1000000);
    gint64 end = start + (gint64)(seconds * 1e9);
    gint64 drain_end = end + IMP_DRAIN_US * 1000;

    for (guint i = 0; i < k; i++) {
        sessions[i].load = load;
        sessions[i].sent_ns = 0;
        sessions[i].due_ns = start + period * i / k;
        pfds[i].fd = usbredir_peer_get_fd(sessions[i].peer);
        pfds[i].events = POLLIN;
    }
    for (;;) {
        gint64 now = bench_now_ns(), next = G_MAXINT64;
        gboolean outstanding = FALSE;
        struct timespec ts;

        for (guint i = 0; i < k; i++) {
            Session *s = &sessions[i];
            if (s->sent_ns == 0 && now >= s->due_ns && now < end) {
                session_send(s);
                s->due_ns += period;
            }
            if (s->sent_ns != 0)
                outstanding = TRUE;
            else if (s->due_ns < next)
                next = s->due_ns;
        }
        if (now >= end && (!outstanding || now >= drain_end))
            break;
        if (now >= end)
            next = drain_end;
        next = MAX(next, now);
        ts.tv_sec = (next - now) / 1000000000;
        ts.tv_nsec = (next - now) % 1000000000;
        if (ppoll(pfds, k, &ts, NULL) < 0 && errno != EINTR) {
            g_set_error(error, G_IO_ERROR, g_io_error_from_errno(errno), "ppoll: %s",
                        g_strerror(errno));
            return FALSE;
        }
        for (guint i = 0; i < k; i++) {
            if (pfds[i].revents == 0)
                continue;
            if (!usbredir_peer_io(sessions[i].peer)) {
                g_set_error(error, G_IO_ERROR, G_IO_ERROR_CONNECTION_CLOSED,
                            "session %u closed under load", i);
                return FALSE;
            }
        }
    }
    for (guint i = 0; i < k; i++)
        sessions[i].load = NULL;
    return TRUE;
}

/* ---- one size ------------------------------------------------------------------ */

typedef struct {
    guint n;
    guint64 rss_imports_kib;  /* imports, no peer */
    guint64 rss_sessions_kib; /* N sessions */
    gdouble idle_importer;    /* share of one core */
    gdouble idle_exporter;
    gdouble p50, p99, p999; /* µs, sequential IN round trips */
} SizeResult;

typedef struct {
    const gchar *usbgwd;
    const gchar *exporter;
    const gchar *make_certs;
    const gchar *certs;
    const gchar *workdir;
    gdouble idle_s;
    guint ops;
    guint rate;
    gdouble load_s;
    GArray *load_steps; /* guint */
} Config;

typedef struct {
    GPid exporter;
    GPid importer;
    Session *sessions;
    guint n_sessions;
} Rig;

static void
rig_clear(Rig *rig)
{
    for (guint i = 0; i < rig->n_sessions; i++)
        g_clear_pointer(&rig->sessions[i].peer, usbredir_peer_free);
    g_clear_pointer(&rig->sessions, g_free);
    rig->n_sessions = 0;
    bench_child_stop_warn(&rig->importer, "usbgwd " IMP_IMPORTER);
    bench_child_stop_warn(&rig->exporter, "link-exporter");
}

static gdouble
clk_tck(void)
{
    return (gdouble)sysconf(_SC_CLK_TCK);
}

/* The share of one core @pid used over @ticks during @seconds. */
static gdouble
cpu_share(guint64 ticks, gdouble seconds)
{
    return (gdouble)ticks / clk_tck() / seconds;
}

static guint64
self_ticks(void)
{
    return bench_proc_cpu_ticks(getpid());
}

static gboolean
rig_start(Rig *rig, const Config *cfg, guint n, GError **error)
{
    g_autofree gchar *dir = g_strdup_printf("%s/n%u", cfg->workdir, n);
    g_autofree gchar *exp_log = g_build_filename(dir, "link-exporter.log", NULL);
    g_autofree gchar *listen = NULL, *devices = NULL, *cert = NULL, *key = NULL, *ca = NULL;
    g_autofree gchar *conf = NULL, *policy = NULL, *imp_dir = NULL;
    g_auto(GStrv) socks = NULL;
    guint16 port = bench_free_tcp_port(error);

    if (port == 0)
        return FALSE;
    g_mkdir_with_parents(dir, 0755);
    listen = g_strdup_printf("127.0.0.1:%u", port);
    devices = g_strdup_printf("%u", n);
    cert = g_build_filename(cfg->certs, IMP_EXPORTER "-cert.pem", NULL);
    key = g_build_filename(cfg->certs, IMP_EXPORTER "-key.pem", NULL);
    ca = g_build_filename(cfg->certs, "ca-cert.pem", NULL);
    {
        g_autofree gchar *direct = g_build_filename(dir, "direct.sock", NULL);
        const gchar *argv[] = {cfg->exporter, "--listen", listen, "--cert", cert,
                               "--key",       key,        "--ca", ca,       "--devices",
                               devices,       "--direct", direct, NULL};
        if (!bench_child_spawn(argv, exp_log, &rig->exporter, error))
            return FALSE;
    }
    conf = g_strdup_printf("link-peers=" IMP_EXPORTER "@%s\nlink-cert=%s/" IMP_IMPORTER
                           "-cert.pem\nlink-key=%s/" IMP_IMPORTER
                           "-key.pem\nlink-ca=%s/ca-cert.pem\nlink-reattach-interval=0\n",
                           listen, cfg->certs, cfg->certs, cfg->certs);
    policy = g_strdup("assign id 0529:* on gateway \"" IMP_EXPORTER "\" to vm \"" IMP_VM "\"\n");
    imp_dir = g_build_filename(dir, IMP_IMPORTER, NULL);
    if (!bench_usbgwd_start(cfg->usbgwd, imp_dir, conf, policy, &rig->importer, error))
        return FALSE;
    /* every device imported: its socket is there */
    socks = bench_vm_sockets(imp_dir, IMP_VM, n, IMP_CONNECT_US, error);
    return socks != NULL;
}

static gboolean
rig_connect(Rig *rig, const Config *cfg, guint n, GError **error)
{
    static const UsbredirPeerEvents events = {.control_packet = session_answer};
    static const UsbredirPeerConfig config = {
        .role = USBREDIR_PEER_GUEST,
        .version = "usbgw-bench-peer",
        .label = "session",
        .log_level = usbredirparser_warning,
    };
    g_autofree gchar *imp_dir = g_strdup_printf("%s/n%u/" IMP_IMPORTER, cfg->workdir, n);
    g_auto(GStrv) socks = bench_vm_sockets(imp_dir, IMP_VM, n, IMP_CONNECT_US, error);
    g_autofree UsbredirPeer **peers = g_new0(UsbredirPeer *, n);

    if (socks == NULL)
        return FALSE;
    rig->sessions = g_new0(Session, n);
    for (guint i = 0; i < n; i++) {
        int fd = bench_connect_unix(socks[i], IMP_CONNECT_US, error);
        if (fd < 0)
            return FALSE;
        rig->sessions[i].peer = peers[i] =
            usbredir_peer_new(fd, &config, &events, &rig->sessions[i]);
        rig->n_sessions = i + 1;
    }
    if (!bench_peers_wait_connected(peers, n, IMP_CONNECT_US, error))
        return FALSE;
    /* each session talks to a fake device that computes the key function */
    for (guint i = 0; i < n; i++) {
        guint8 challenge[USBGW_KEY_LEN], response[USBGW_KEY_LEN], want[USBGW_KEY_LEN];
        gint64 op_ns, in_ns;
        for (guint k = 0; k < USBGW_KEY_LEN; k++)
            challenge[k] = (guint8)g_random_int();
        if (!bench_peer_challenge(peers[i], challenge, response, &op_ns, &in_ns, IMP_OP_TIMEOUT_US,
                                  error))
            return FALSE;
        usbgw_key_compute(bench_fake_key_secret, challenge, want);
        if (memcmp(want, response, USBGW_KEY_LEN) != 0) {
            g_set_error(error, G_IO_ERROR, G_IO_ERROR_FAILED, "session %u: wrong answer", i);
            return FALSE;
        }
    }
    return TRUE;
}

/* One control IN round trip on @peer, in µs. */
static gboolean
control_in_us(UsbredirPeer *peer, gdouble *us, GError **error)
{
    gint64 t0 = bench_now_ns();

    if (!usbredir_peer_control(peer, 0xc0, USBGW_KEY_REQ_RESPONSE, NULL, USBGW_KEY_LEN,
                               g_get_monotonic_time() + IMP_OP_TIMEOUT_US, error))
        return FALSE;
    *us = (gdouble)(bench_now_ns() - t0) / 1000.0;
    if (usbredir_peer_get_control(peer)->header.status != usb_redir_success) {
        g_set_error(error, G_IO_ERROR, G_IO_ERROR_FAILED, "%s: control IN failed",
                    usbredir_peer_get_label(peer));
        return FALSE;
    }
    return TRUE;
}

/* link-rtt on the protocol-level rig: session 0's round trip (importer,
 * link, exporter's fake device) against a fake device of the same
 * exporter reached directly on its --direct socket; interleaved rounds. */
static gboolean
rig_link_rtt(Rig *rig, const Config *cfg, guint n, GError **error)
{
    g_autofree gchar *path = g_strdup_printf("%s/n%u/direct.sock", cfg->workdir, n);
    g_autoptr(UsbredirPeer) direct = NULL;
    g_autoptr(GArray) pooled_l = bench_new_doubles(), pooled_d = bench_new_doubles();
    g_autoptr(GArray) p50_l = bench_new_doubles(), p50_d = bench_new_doubles();
    g_autoptr(GArray) p99_l = bench_new_doubles(), p99_d = bench_new_doubles();
    UsbredirPeer *link = rig->sessions[0].peer;
    int fd = bench_connect_unix(path, IMP_CONNECT_US, error);
    gdouble us;

    if (fd < 0)
        return FALSE;
    direct = bench_peer_new(fd, "direct");
    if (!bench_peer_wait_connected(direct, IMP_CONNECT_US, error))
        return FALSE;
    for (guint i = 0; i < IMP_RTT_WARMUP; i++) {
        if (!control_in_us(link, &us, error) || !control_in_us(direct, &us, error))
            return FALSE;
    }
    for (guint r = 0; r < IMP_RTT_ROUNDS; r++) {
        for (guint k = 0; k < 2; k++) {
            gboolean is_link = (r + k) % 2 == 0;
            UsbredirPeer *peer = is_link ? link : direct;
            g_autoptr(GArray) round = bench_new_doubles();
            for (guint i = 0; i < cfg->ops; i++) {
                if (!control_in_us(peer, &us, error))
                    return FALSE;
                g_array_append_val(round, us);
                g_array_append_val(is_link ? pooled_l : pooled_d, us);
            }
            {
                gdouble p50 = bench_percentile(round, 50), p99 = bench_percentile(round, 99);
                g_array_append_val(is_link ? p50_l : p50_d, p50);
                g_array_append_val(is_link ? p99_l : p99_d, p99);
            }
        }
    }
    {
        const struct {
            const gchar *name;
            gdouble p;
            GArray *round_l, *round_d;
            gboolean added;
        } figures[] = {
            {"link-rtt-protocol-p50", 50, p50_l, p50_d, FALSE},
            {"link-rtt-protocol-p99", 99, p99_l, p99_d, FALSE},
            {"link-rtt-protocol-added-p50", 50, p50_l, p50_d, TRUE},
            {"link-rtt-protocol-added-p99", 99, p99_l, p99_d, TRUE},
        };
        for (guint i = 0; i < G_N_ELEMENTS(figures); i++) {
            gdouble l = bench_percentile(pooled_l, figures[i].p);
            gdouble d = bench_percentile(pooled_d, figures[i].p);
            g_autoptr(GArray) ratios =
                bench_pairwise(figures[i].round_l, figures[i].round_d, BENCH_RATIO);
            g_autoptr(GArray) values =
                figures[i].added
                    ? bench_pairwise(figures[i].round_l, figures[i].round_d, BENCH_DIFFERENCE)
                    : g_array_copy(figures[i].round_l);
            bench_print_compared(figures[i].name, "us", figures[i].added ? l - d : l,
                                 "direct fake device", d, d > 0 ? l / d : 0, values, ratios);
        }
    }
    return TRUE;
}

/* --ops sequential IN round trips over the sessions in turn. */
static gboolean
rig_sequential(Rig *rig, guint ops, SizeResult *res, GError **error)
{
    g_autoptr(GArray) lat = bench_new_doubles();

    for (guint i = 0; i < ops; i++) {
        gdouble us;
        if (!control_in_us(rig->sessions[i % rig->n_sessions].peer, &us, error))
            return FALSE;
        g_array_append_val(lat, us);
    }
    res->p50 = bench_percentile(lat, 50);
    res->p99 = bench_percentile(lat, 99);
    res->p999 = bench_percentile(lat, 99.9);
    return TRUE;
}

typedef struct {
    guint n; /* sessions the importer had */
    guint k;
    gdouble base_p99, p50, p99, added_p99;
    gdouble answered; /* of the requests due */
    gdouble importer, exporter, self;
    gboolean pass;
} LoadStep;

static gboolean
load_window(Rig *rig, const Config *cfg, guint k, GArray *lat, gdouble *answered, gdouble *imp,
            gdouble *exp, gdouble *self, GError **error)
{
    Load load = {.lat_us = lat};
    guint64 i0 = bench_proc_cpu_ticks(rig->importer), e0 = bench_proc_cpu_ticks(rig->exporter);
    guint64 s0 = self_ticks();
    gint64 t0 = bench_now_ns();
    gdouble wall;

    if (!load_run(rig->sessions, k, cfg->rate, cfg->load_s, &load, error))
        return FALSE;
    wall = (gdouble)(bench_now_ns() - t0) / 1e9;
    if (load.failed > 0) {
        g_set_error(error, G_IO_ERROR, G_IO_ERROR_FAILED, "K=%u: %u requests failed", k,
                    load.failed);
        return FALSE;
    }
    *answered = (gdouble)load.answered / ((gdouble)k * cfg->rate * cfg->load_s);
    *imp = cpu_share(bench_proc_cpu_ticks(rig->importer) - i0, wall);
    *exp = cpu_share(bench_proc_cpu_ticks(rig->exporter) - e0, wall);
    *self = cpu_share(self_ticks() - s0, wall);
    return TRUE;
}

static gboolean
load_search(Rig *rig, const Config *cfg, GArray *steps_out, GError **error)
{
    for (guint i = 0; i < cfg->load_steps->len; i++) {
        guint k = g_array_index(cfg->load_steps, guint, i);
        g_autoptr(GArray) base = bench_new_doubles();
        g_autoptr(GArray) lat = bench_new_doubles();
        LoadStep step = {.n = rig->n_sessions, .k = k};
        gdouble dummy_a, dummy_i, dummy_e, dummy_s;

        if (k > rig->n_sessions)
            break;
        if (!load_window(rig, cfg, 1, base, &dummy_a, &dummy_i, &dummy_e, &dummy_s, error) ||
            !load_window(rig, cfg, k, lat, &step.answered, &step.importer, &step.exporter,
                         &step.self, error))
            return FALSE;
        step.base_p99 = bench_percentile(base, 99);
        step.p50 = bench_percentile(lat, 50);
        step.p99 = bench_percentile(lat, 99);
        step.added_p99 = step.p99 - step.base_p99;
        step.pass = step.added_p99 <= IMP_ADDED_P99_MAX && step.answered >= IMP_ANSWERED_MIN;
        g_print(
            "load N=%u K=%u at %u req/s each: p50 %.0f us, p99 %.0f us (K=1: %.0f us), added p99 "
            "%.0f us, answered %.1f %%; CPU importer %.1f %%, exporter %.1f %%, bench %.1f %% "
            "of a core -> %s\n",
            rig->n_sessions, k, cfg->rate, step.p50, step.p99, step.base_p99, step.added_p99,
            100 * step.answered, 100 * step.importer, 100 * step.exporter, 100 * step.self,
            step.pass ? "pass" : "FAIL");
        g_array_append_val(steps_out, step);
        if (!step.pass)
            break;
    }
    return TRUE;
}

static gboolean
measure_size(const Config *cfg, guint n, gboolean with_rtt, SizeResult *res, GArray *steps,
             GError **error)
{
    Rig rig = {0};
    gboolean ok = FALSE;
    guint64 i0, e0;
    gint64 t0;
    gdouble wall;

    res->n = n;
    if (!rig_start(&rig, cfg, n, error))
        goto out;
    g_usleep(IMP_SETTLE_US);
    res->rss_imports_kib = bench_proc_status_kib(rig.importer, "VmRSS");
    if (!rig_connect(&rig, cfg, n, error))
        goto out;
    g_usleep(IMP_SETTLE_US);
    res->rss_sessions_kib = bench_proc_status_kib(rig.importer, "VmRSS");
    i0 = bench_proc_cpu_ticks(rig.importer);
    e0 = bench_proc_cpu_ticks(rig.exporter);
    t0 = bench_now_ns();
    g_usleep((gulong)(cfg->idle_s * G_USEC_PER_SEC));
    wall = (gdouble)(bench_now_ns() - t0) / 1e9;
    res->idle_importer = cpu_share(bench_proc_cpu_ticks(rig.importer) - i0, wall);
    res->idle_exporter = cpu_share(bench_proc_cpu_ticks(rig.exporter) - e0, wall);
    if (!rig_sequential(&rig, cfg->ops, res, error))
        goto out;
    g_print("N=%u: importer VmRSS %" G_GUINT64_FORMAT " KiB with the imports, %" G_GUINT64_FORMAT
            " KiB with %u sessions; idle CPU over %.0f s: importer %.2f %%, exporter %.2f %% of a "
            "core; sequential IN round trip p50 %.0f us, p99 %.0f us, p99.9 %.0f us\n",
            n, res->rss_imports_kib, res->rss_sessions_kib, n, cfg->idle_s,
            100 * res->idle_importer, 100 * res->idle_exporter, res->p50, res->p99, res->p999);
    if ((with_rtt && !rig_link_rtt(&rig, cfg, n, error)) || !load_search(&rig, cfg, steps, error))
        goto out;
    ok = TRUE;
out:
    if (!ok)
        g_prefix_error(error, "N=%u: ", n);
    rig_clear(&rig);
    return ok;
}

/* Least-squares slope of @y over @x. */
static gdouble
slope(const gdouble *x, const gdouble *y, guint n)
{
    gdouble mx = 0, my = 0, sxy = 0, sxx = 0;

    for (guint i = 0; i < n; i++) {
        mx += x[i] / n;
        my += y[i] / n;
    }
    for (guint i = 0; i < n; i++) {
        sxy += (x[i] - mx) * (y[i] - my);
        sxx += (x[i] - mx) * (x[i] - mx);
    }
    return sxx > 0 ? sxy / sxx : 0;
}

static GArray *
parse_list(const gchar *text, GError **error)
{
    g_auto(GStrv) parts = g_strsplit(text, ",", -1);
    GArray *out = g_array_new(FALSE, FALSE, sizeof(guint));

    for (guint i = 0; parts[i] != NULL; i++) {
        guint64 v;
        if (!g_ascii_string_to_unsigned(g_strstrip(parts[i]), 10, 1, 100000, &v, error)) {
            g_array_unref(out);
            return NULL;
        }
        guint u = (guint)v;
        g_array_append_val(out, u);
    }
    return out;
}

int
main(int argc, char **argv)
{
    g_autofree gchar *usbgwd = NULL, *exporter = NULL, *make_certs = NULL, *workdir_opt = NULL;
    g_autofree gchar *sizes_text = g_strdup("1,10,100,1000");
    g_autofree gchar *steps_text = g_strdup("10,25,50,100,250,500,1000,2000");
    gdouble idle_s = 10, load_s = 5;
    gint ops = 2000, rate = 100;
    gboolean keep = FALSE;
    const GOptionEntry entries[] = {
        {"usbgwd", 0, 0, G_OPTION_ARG_FILENAME, &usbgwd, "usbgwd (the importer)", "PATH"},
        {"link-exporter", 0, 0, G_OPTION_ARG_FILENAME, &exporter, "bench/link-exporter", "PATH"},
        {"make-certs", 0, 0, G_OPTION_ARG_FILENAME, &make_certs, "tests/link/make-certs.sh",
         "PATH"},
        {"workdir", 0, 0, G_OPTION_ARG_FILENAME, &workdir_opt, "Work directory (a new one in /tmp)",
         "DIR"},
        {"keep", 0, 0, G_OPTION_ARG_NONE, &keep, "Keep the work directory", NULL},
        {"sizes", 0, 0, G_OPTION_ARG_STRING, &sizes_text, "Session counts (1,10,100,1000)", "N,…"},
        {"idle-s", 0, 0, G_OPTION_ARG_DOUBLE, &idle_s, "Idle window (10 s)", "S"},
        {"ops", 0, 0, G_OPTION_ARG_INT, &ops, "Sequential round trips per size (2000)", "N"},
        {"load-steps", 0, 0, G_OPTION_ARG_STRING, &steps_text,
         "Active sessions to try (10,25,50,100,250,500,1000,2000)", "K,…"},
        {"rate", 0, 0, G_OPTION_ARG_INT, &rate, "Requests per second per session (100)", "N"},
        {"load-s", 0, 0, G_OPTION_ARG_DOUBLE, &load_s, "Each load window (5 s)", "S"},
        G_OPTION_ENTRY_NULL,
    };
    g_autoptr(GOptionContext) context =
        g_option_context_new("— sessions imported over a gateway link");
    g_autoptr(GError) error = NULL;
    g_autoptr(GArray) sizes = NULL;
    g_autoptr(GArray) results = g_array_new(FALSE, TRUE, sizeof(SizeResult));
    g_autoptr(GArray) steps = g_array_new(FALSE, TRUE, sizeof(LoadStep));
    g_autofree gchar *workdir = NULL, *certs = NULL;
    gdouble load_at_start = bench_loadavg();
    struct rlimit limit;
    Config cfg = {0};
    int status = 1;

    g_option_context_add_main_entries(context, entries, NULL);
    if (!g_option_context_parse(context, &argc, &argv, &error)) {
        g_printerr("imported-sessions-bench: %s\n", error->message);
        return 2;
    }
    if (usbgwd == NULL || exporter == NULL || make_certs == NULL || ops < 1 || rate < 1 ||
        idle_s < 1 || load_s <= 0) {
        g_printerr("imported-sessions-bench: --usbgwd, --link-exporter and --make-certs are "
                   "required; --ops, --rate, --idle-s (>= 1) and --load-s positive\n");
        return 2;
    }
    sizes = parse_list(sizes_text, &error);
    cfg.load_steps = parse_list(steps_text, &error);
    if (sizes == NULL || cfg.load_steps == NULL) {
        g_printerr("imported-sessions-bench: --sizes/--load-steps: %s\n", error->message);
        return 2;
    }
    /* a peer per session here; the importer (our child) inherits the limit */
    if (getrlimit(RLIMIT_NOFILE, &limit) == 0 && limit.rlim_cur < limit.rlim_max) {
        limit.rlim_cur = limit.rlim_max;
        setrlimit(RLIMIT_NOFILE, &limit);
    }
    workdir = workdir_opt != NULL ? g_strdup(workdir_opt)
                                  : g_dir_make_tmp("usbgw-imported-XXXXXX", &error);
    if (workdir == NULL)
        goto out;
    certs = g_build_filename(workdir, "certs", NULL);
    if (!bench_make_certs(make_certs, certs, IMP_EXPORTER " " IMP_IMPORTER, &error))
        goto out;
    cfg = (Config){
        .usbgwd = usbgwd,
        .exporter = exporter,
        .make_certs = make_certs,
        .certs = certs,
        .workdir = workdir,
        .idle_s = idle_s,
        .ops = (guint)ops,
        .rate = (guint)rate,
        .load_s = load_s,
        .load_steps = cfg.load_steps,
    };

    g_print("rig: protocol-level fake devices (bench/link-exporter: GwLinkTls + GwLink, usbredir "
            "host peers) -> TLS link on 127.0.0.1 -> usbgwd importer -> QEMU-role peers in this "
            "process; %u cores (nproc), RLIMIT_NOFILE %lu\n",
            g_get_num_processors(), (gulong)limit.rlim_max);
    for (guint i = 0; i < sizes->len; i++) {
        SizeResult res = {0};
        guint n = g_array_index(sizes, guint, i);
        if (!measure_size(&cfg, n, i == 0, &res, steps, &error))
            goto out;
        g_array_append_val(results, res);
    }

    {
        g_autofree gdouble *x = g_new0(gdouble, results->len);
        g_autofree gdouble *y = g_new0(gdouble, results->len);
        g_autofree gdouble *yi = g_new0(gdouble, results->len);
        SizeResult *first = &g_array_index(results, SizeResult, 0);

        for (guint i = 0; i < results->len; i++) {
            SizeResult *r = &g_array_index(results, SizeResult, i);
            x[i] = r->n;
            y[i] = (gdouble)r->rss_sessions_kib;
            yi[i] = (gdouble)r->rss_imports_kib;
            if (i > 0) {
                SizeResult *p = &g_array_index(results, SizeResult, i - 1);
                g_print("bench imported-sessions-rss-slope-%u-%u: %.1f KiB/session\n", p->n, r->n,
                        (y[i] - y[i - 1]) / (x[i] - x[i - 1]));
            }
        }
        g_print("bench imported-sessions-rss-per-session: %.1f KiB (baseline imports without a "
                "peer %.1f KiB, ratio %.3f) least squares over N=%s; goal <= 64 KiB\n",
                slope(x, y, results->len), slope(x, yi, results->len),
                slope(x, yi, results->len) > 0
                    ? slope(x, y, results->len) / slope(x, yi, results->len)
                    : 0,
                sizes_text);
        for (guint i = 0; i < results->len; i++) {
            SizeResult *r = &g_array_index(results, SizeResult, i);
            g_print("bench imported-sessions-idle-cpu-%u: %.2f %% of a core (baseline exporter "
                    "%.2f %%)%s\n",
                    r->n, 100 * r->idle_importer, 100 * r->idle_exporter,
                    r->n == 1000 ? "; goal <= 1 % at 1,000" : "");
            g_print("bench imported-sessions-p99-%u: %.0f us (baseline N=%u %.0f us, ratio %.3f); "
                    "p50 %.0f us, p99.9 %.0f us\n",
                    r->n, r->p99, first->n, first->p99, first->p99 > 0 ? r->p99 / first->p99 : 0,
                    r->p50, r->p999);
        }
        for (guint i = 0; i < results->len; i++) {
            SizeResult *r = &g_array_index(results, SizeResult, i);
            LoadStep *best = NULL, *tried = NULL;
            for (guint j = 0; j < steps->len; j++) {
                LoadStep *st = &g_array_index(steps, LoadStep, j);
                if (st->n != r->n)
                    continue;
                tried = st;
                if (st->pass)
                    best = st;
            }
            if (tried == NULL)
                continue;
            if (best == NULL) {
                g_print("bench sessions-per-core-%u: no step passed (K=%u: added p99 %.0f us, "
                        "answered %.1f %%, importer %.1f %% of a core)\n",
                        r->n, tried->k, tried->added_p99, 100 * tried->answered,
                        100 * tried->importer);
                continue;
            }
            g_print("bench sessions-per-core-%u: %.0f active sessions per importer core (K=%u "
                    "passed%s, importer %.1f %% of a core, exporter %.1f %%, bench %.1f %%; added "
                    "p99 %.0f us vs K=1 p99 %.0f us); goal >= 2,000\n",
                    r->n, best->importer > 0 ? best->k / best->importer : 0, best->k,
                    best == tried && best->k == r->n ? ", all the sessions there were" : "",
                    100 * best->importer, 100 * best->exporter, 100 * best->self, best->added_p99,
                    best->base_p99);
        }
    }
    g_print("load: %.2f at start, %.2f at end (1-min loadavg)\n", load_at_start, bench_loadavg());
    status = 0;

out:
    if (error != NULL)
        g_printerr("imported-sessions-bench: %s\n", error->message);
    if (workdir != NULL && !keep && status == 0) {
        g_autofree gchar *cmd = g_strdup_printf("rm -rf '%s'", workdir);
        if (system(cmd) != 0)
            g_printerr("imported-sessions-bench: could not remove %s\n", workdir);
    } else if (workdir != NULL) {
        g_printerr("imported-sessions-bench: work directory %s\n", workdir);
    }
    g_array_unref(cfg.load_steps);
    return status;
}
