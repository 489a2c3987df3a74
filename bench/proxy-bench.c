/* proxy-rtt: the round trip of a vendor control transfer through GwProxy
 * (the validating usbredir proxy of the workstation/SPICE path) against the
 * same kind of fake device talked to directly, and the proxy's idle CPU.
 *
 *   proxy-bench [--rounds N] [--ops N] [--warmup N]
 *
 * Protocol-level rig, no libusb, no umockdev: each fake device is a
 * tests/usbredir-peer in the host role on its own thread, answering control
 * transfers at once (OUT 0x01 stores a 16-byte challenge, IN 0x02 returns
 * the key function of it, as the simulated keys do). The QEMU-role peer is
 * bench-common's (a usbredir-peer guest) on the main thread; the proxy
 * runs on a thread of its own with its own GMainContext, as usbgwd's main
 * thread would.
 *
 *   direct   peer <-socketpair-> fake device A
 *   proxy    peer <-socketpair-> GwProxy <-socketpair-> fake device B
 *
 * Rounds alternate the order (A B, B A, …); each round times --ops
 * operations per target after a short warm-up. An op is OUT + IN; the
 * figure is the IN's round trip (one transfer), the OUT+IN time is printed
 * too. Idle CPU: the proxy thread's schedstat run time over 1 s with both
 * devices connected and nothing in flight. */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "../tests/sim/key-protocol.h"
#include "bench-common.h"
#include "gw-proxy.h"

#define PROXY_BENCH_ROUNDS         5
#define PROXY_BENCH_OPS            2000
#define PROXY_BENCH_WARMUP         200
#define PROXY_BENCH_ROUND_WARMUP   20
#define PROXY_BENCH_TIMEOUT_US     (5 * G_USEC_PER_SEC)
#define PROXY_BENCH_IDLE_WINDOW_US G_USEC_PER_SEC

/* ---- The fake device: a usbredir host answering at once ------------------ */

typedef struct {
    UsbredirPeerThread *thread; /* owned: serves the device; its events run there */
    UsbredirFakeKey key;
} FakeDevice;

/* The device side: hello, control transfers; the rest is dropped. */
static FakeDevice *
fake_device_start(int fd)
{
    FakeDevice *dev = g_new0(FakeDevice, 1);

    usbredir_fake_key_init(&dev->key);

    dev->thread = usbredir_peer_thread_start(
        usbredir_fake_key_peer_new(fd, &dev->key, "proxy-bench fake device"), "fake-device");
    return dev;
}

static void
fake_device_stop(FakeDevice *dev)
{
    g_autoptr(GError) error = NULL;

    if (!usbredir_peer_thread_stop(dev->thread, &error))
        g_printerr("fake device: %s\n", error->message);
    g_free(dev);
}

/* ---- The proxy on its own thread ---------------------------------------- */

typedef struct {
    int client_fd; /* towards the fake device */
    int qemu_fd;   /* towards the peer */
    GMainContext *context;
    GMainLoop *loop;
    GThread *thread;
    GMutex lock;
    GCond cond;
    gboolean ready;
    pid_t tid;
    gboolean ended;
} ProxyThread;

static gboolean
proxy_check(GwProxy *proxy, const PolicyDevice *device, gchar **reason, gpointer user_data)
{
    return TRUE;
}

static void
proxy_closed(GwProxy *proxy, GwProxyEnd end, const gchar *reason, gpointer user_data)
{
    ProxyThread *pt = user_data;
    g_printerr("proxy-bench: the proxy session ended: %s\n", reason);
    pt->ended = TRUE;
}

static gpointer
proxy_thread(gpointer data)
{
    static const GwProxyCallbacks callbacks = {.check = proxy_check, .closed = proxy_closed};
    ProxyThread *pt = data;
    g_autoptr(GSocket) client = g_socket_new_from_fd(pt->client_fd, NULL);
    g_autoptr(GSocket) qemu = g_socket_new_from_fd(pt->qemu_fd, NULL);
    g_autoptr(GError) error = NULL;
    GwProxy *proxy;

    g_main_context_push_thread_default(pt->context);
    proxy = gw_proxy_new(client, qemu, "bench", &callbacks, pt, &error);
    if (proxy == NULL)
        g_error("proxy-bench: %s", error->message);
    g_mutex_lock(&pt->lock);
    pt->tid = (pid_t)syscall(SYS_gettid);
    pt->ready = TRUE;
    g_cond_signal(&pt->cond);
    g_mutex_unlock(&pt->lock);
    g_main_loop_run(pt->loop);
    gw_proxy_free(proxy);
    g_main_context_pop_thread_default(pt->context);
    return NULL;
}

/* Run time of a thread in ns, from /proc/self/task/TID/schedstat. */
static guint64
proxy_bench_thread_ns(pid_t tid)
{
    g_autofree gchar *path = g_strdup_printf("/proc/self/task/%d/schedstat", (int)tid);
    g_autofree gchar *text = NULL;

    if (!g_file_get_contents(path, &text, NULL, NULL))
        return 0;
    return g_ascii_strtoull(text, NULL, 10);
}

/* ---- Measuring ------------------------------------------------------------ */

typedef struct {
    const gchar *name;
    UsbredirPeer *peer;
    GArray *in_us;     /* pooled: IN round trips */
    GArray *op_us;     /* pooled: OUT+IN */
    GArray *round_p50; /* per round: p50 of IN */
} Target;

static gboolean
proxy_bench_ops(Target *t, guint n, gboolean record, GArray *round_in, GError **error)
{
    guint8 challenge[USBGW_KEY_LEN], response[USBGW_KEY_LEN], want[USBGW_KEY_LEN];

    for (guint i = 0; i < n; i++) {
        gint64 op_ns, in_ns;
        for (guint k = 0; k < USBGW_KEY_LEN; k++)
            challenge[k] = (guint8)g_random_int();
        if (!bench_peer_challenge(t->peer, challenge, response, &op_ns, &in_ns,
                                  PROXY_BENCH_TIMEOUT_US, error))
            return FALSE;
        usbgw_key_compute(bench_fake_key_secret, challenge, want);
        if (memcmp(want, response, USBGW_KEY_LEN) != 0) {
            g_set_error(error, G_IO_ERROR, G_IO_ERROR_FAILED, "%s: wrong answer", t->name);
            return FALSE;
        }
        if (record) {
            gdouble in = (gdouble)in_ns / 1000.0, op = (gdouble)op_ns / 1000.0;
            g_array_append_val(t->in_us, in);
            g_array_append_val(t->op_us, op);
            g_array_append_val(round_in, in);
        }
    }
    return TRUE;
}

int
main(int argc, char **argv)
{
    gint rounds = PROXY_BENCH_ROUNDS, ops = PROXY_BENCH_OPS, warmup = PROXY_BENCH_WARMUP;
    const GOptionEntry entries[] = {
        {"rounds", 0, 0, G_OPTION_ARG_INT, &rounds, "Interleaved rounds (5)", "N"},
        {"ops", 0, 0, G_OPTION_ARG_INT, &ops, "Timed ops per target and round (2000)", "N"},
        {"warmup", 0, 0, G_OPTION_ARG_INT, &warmup, "Warm-up ops per target (200)", "N"},
        G_OPTION_ENTRY_NULL,
    };
    g_autoptr(GOptionContext) octx = g_option_context_new("— proxy-rtt benchmark");
    g_autoptr(GError) error = NULL;
    int direct_pair[2], dev_pair[2], peer_pair[2];
    FakeDevice *dev_direct, *dev_proxied;
    ProxyThread pt = {0};
    Target direct = {.name = "direct"}, proxied = {.name = "proxy"};
    Target *targets[2] = {&direct, &proxied};
    g_autoptr(GArray) round_ratio = bench_new_doubles();
    g_autoptr(GArray) round_ratio_op = bench_new_doubles();
    g_autoptr(GArray) round_op_c = bench_new_doubles();
    g_autoptr(GArray) round_op_b = bench_new_doubles();
    gdouble load_at_start = bench_loadavg();
    guint64 cpu0, cpu1;
    gint64 t0, t1;
    int status = 1;

    g_option_context_add_main_entries(octx, entries, NULL);
    if (!g_option_context_parse(octx, &argc, &argv, &error) || rounds < 1 || ops < 1) {
        g_printerr("usage: proxy-bench [--rounds N] [--ops N] [--warmup N]\n");
        return 2;
    }
    if (socketpair(AF_UNIX, SOCK_STREAM, 0, direct_pair) != 0 ||
        socketpair(AF_UNIX, SOCK_STREAM, 0, dev_pair) != 0 ||
        socketpair(AF_UNIX, SOCK_STREAM, 0, peer_pair) != 0) {
        g_printerr("proxy-bench: socketpair: %s\n", g_strerror(errno));
        return 1;
    }
    g_log_set_handler("usbgw-proxy", G_LOG_LEVEL_MESSAGE | G_LOG_LEVEL_INFO, g_log_default_handler,
                      NULL);

    /* direct: peer <-> device A */
    dev_direct = fake_device_start(direct_pair[0]);
    direct.peer = bench_peer_new(direct_pair[1], "direct");
    /* proxied: peer <-> proxy <-> device B */
    dev_proxied = fake_device_start(dev_pair[0]);
    pt.client_fd = dev_pair[1];
    pt.qemu_fd = peer_pair[0];
    pt.context = g_main_context_new();
    pt.loop = g_main_loop_new(pt.context, FALSE);
    g_mutex_init(&pt.lock);
    g_cond_init(&pt.cond);
    pt.thread = g_thread_new("proxy", proxy_thread, &pt);
    g_mutex_lock(&pt.lock);
    while (!pt.ready)
        g_cond_wait(&pt.cond, &pt.lock);
    g_mutex_unlock(&pt.lock);
    proxied.peer = bench_peer_new(peer_pair[1], "proxy");

    for (guint i = 0; i < 2; i++) {
        targets[i]->in_us = bench_new_doubles();
        targets[i]->op_us = bench_new_doubles();
        targets[i]->round_p50 = bench_new_doubles();
        if (!bench_peer_wait_connected(targets[i]->peer, PROXY_BENCH_TIMEOUT_US, &error) ||
            !proxy_bench_ops(targets[i], (guint)warmup, FALSE, NULL, &error))
            goto out;
    }

    g_print("rig: protocol-level fake device (usbredirparser host on its own thread, no libusb, "
            "no umockdev); proxy on its own thread and GMainContext; %u cores (nproc), load "
            "%.2f at start, %.2f at end (1-min loadavg)\n",
            g_get_num_processors(), load_at_start, bench_loadavg());
    g_print("method: op = vendor OUT 0x01 (16 bytes) + vendor IN 0x02 (16 bytes), answer "
            "checked; figure = the IN's round trip; %d rounds x %d timed ops per target, "
            "interleaved (order alternates), %d warm-up ops (+%d per round)\n",
            rounds, ops, warmup, PROXY_BENCH_ROUND_WARMUP);

    for (gint r = 0; r < rounds; r++) {
        gdouble p50[2], op50[2];
        for (guint k = 0; k < 2; k++) {
            guint i = (r % 2 == 0) ? k : 1 - k;
            g_autoptr(GArray) round_in = bench_new_doubles();
            guint op_start = targets[i]->op_us->len;
            g_autoptr(GArray) round_op = bench_new_doubles();
            if (!proxy_bench_ops(targets[i], PROXY_BENCH_ROUND_WARMUP, FALSE, NULL, &error) ||
                !proxy_bench_ops(targets[i], (guint)ops, TRUE, round_in, &error))
                goto out;
            p50[i] = bench_percentile(round_in, 50);
            g_array_append_vals(round_op, &g_array_index(targets[i]->op_us, gdouble, op_start),
                                targets[i]->op_us->len - op_start);
            op50[i] = bench_percentile(round_op, 50);
            g_array_append_val(targets[i]->round_p50, p50[i]);
        }
        gdouble ratio = p50[1] / p50[0], ratio_op = op50[1] / op50[0];
        g_array_append_val(round_ratio, ratio);
        g_array_append_val(round_ratio_op, ratio_op);
        g_array_append_val(round_op_c, op50[1]);
        g_array_append_val(round_op_b, op50[0]);
    }

    {
        static const struct {
            const gchar *name;
            gdouble p;
        } rows[] = {{"proxy-rtt-p50", 50}, {"proxy-rtt-p99", 99}, {"proxy-rtt-p99.9", 99.9}};
        for (guint i = 0; i < G_N_ELEMENTS(rows); i++) {
            gdouble c = bench_percentile(proxied.in_us, rows[i].p);
            gdouble b = bench_percentile(direct.in_us, rows[i].p);
            if (rows[i].p == 50) {
                bench_print_compared(rows[i].name, "us", c, "direct", b, c / b, proxied.round_p50,
                                     round_ratio);
            } else {
                g_print("bench %s: %.1f us (baseline direct %.1f us, ratio %.3f) over %u ops "
                        "each\n",
                        rows[i].name, c, b, c / b, proxied.in_us->len);
            }
        }
        gdouble c = bench_percentile(proxied.op_us, 50), b = bench_percentile(direct.op_us, 50);
        bench_print_compared("proxy-op-p50 (OUT+IN)", "us", c, "direct", b, c / b, round_op_c,
                             round_ratio_op);
    }

    /* idle: both devices connected, nothing in flight */
    g_usleep(100 * 1000);
    cpu0 = proxy_bench_thread_ns(pt.tid);
    t0 = g_get_monotonic_time();
    g_usleep(PROXY_BENCH_IDLE_WINDOW_US);
    cpu1 = proxy_bench_thread_ns(pt.tid);
    t1 = g_get_monotonic_time();
    g_print("bench proxy-idle-cpu: %.3f %% of a core (proxy thread, %.2f s window; baseline: "
            "none, a blocked poll is 0)\n",
            100.0 * (gdouble)(cpu1 - cpu0) / (gdouble)((t1 - t0) * 1000),
            (gdouble)(t1 - t0) / G_USEC_PER_SEC);
    status = pt.ended ? 1 : 0;

out:
    if (error != NULL)
        g_printerr("proxy-bench: %s\n", error->message);
    g_main_loop_quit(pt.loop);
    g_main_context_wakeup(pt.context);
    g_thread_join(pt.thread);
    for (guint i = 0; i < 2; i++) {
        g_clear_pointer(&targets[i]->peer, usbredir_peer_free);
        if (targets[i]->in_us != NULL) {
            g_array_unref(targets[i]->in_us);
            g_array_unref(targets[i]->op_us);
            g_array_unref(targets[i]->round_p50);
        }
    }
    fake_device_stop(dev_direct);
    fake_device_stop(dev_proxied);
    g_main_loop_unref(pt.loop);
    g_main_context_unref(pt.context);
    g_mutex_clear(&pt.lock);
    g_cond_clear(&pt.cond);
    return status;
}
