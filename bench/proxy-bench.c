/* proxy-rtt: the round trip of a vendor control transfer through GwProxy
 * (the validating usbredir proxy of the workstation/SPICE path) against the
 * same kind of fake device talked to directly, and the proxy's idle CPU.
 *
 *   proxy-bench [--rounds N] [--ops N] [--warmup N]
 *
 * Protocol-level rig, no libusb, no umockdev: each fake device is a
 * usbredirparser in the host role on its own thread, answering control
 * transfers at once (OUT 0x01 stores a 16-byte challenge, IN 0x02 returns
 * the key function of it, as the simulated keys do). The QEMU-role peer is
 * bench-common's BenchPeer on the main thread; the proxy runs on a thread
 * of its own with its own GMainContext, as usbgwd's main thread would.
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
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>
#include <usbredirparser.h>

#include "../tests/sim/key-protocol.h"
#include "bench-common.h"
#include "gw-proxy.h"

#define PROXY_BENCH_ROUNDS         5
#define PROXY_BENCH_OPS            2000
#define PROXY_BENCH_WARMUP         200
#define PROXY_BENCH_ROUND_WARMUP   20
#define PROXY_BENCH_TIMEOUT_US     (5 * G_USEC_PER_SEC)
#define PROXY_BENCH_IDLE_WINDOW_US G_USEC_PER_SEC
#define PROXY_BENCH_DEVICE_POLL_MS 100

static const guint8 proxy_bench_secret[USBGW_KEY_LEN] = {0, 1, 2,  3,  4,  5,  6,  7,
                                                         8, 9, 10, 11, 12, 13, 14, 15};

/* ---- The fake device: a usbredir host answering at once ------------------ */

typedef struct {
    int fd;
    struct usbredirparser *parser;
    GThread *thread;
    gint stop; /* atomic */
    gboolean announced;
    guint8 challenge[USBGW_KEY_LEN];
} FakeDevice;

static int
fake_read(void *priv, uint8_t *data, int count)
{
    FakeDevice *dev = priv;
    ssize_t n = recv(dev->fd, data, (size_t)count, MSG_DONTWAIT);
    if (n > 0)
        return (int)n;
    if (n < 0 && (errno == EAGAIN || errno == EINTR))
        return 0;
    return -1;
}

static int
fake_write(void *priv, uint8_t *data, int count)
{
    FakeDevice *dev = priv;
    ssize_t n = send(dev->fd, data, (size_t)count, MSG_DONTWAIT | MSG_NOSIGNAL);
    if (n >= 0)
        return (int)n;
    return errno == EAGAIN || errno == EINTR ? 0 : -1;
}

static void
fake_log(void *priv, int level, const char *msg)
{
    if (level <= usbredirparser_error)
        g_printerr("fake device: %s\n", msg);
}

static void
fake_hello(void *priv, struct usb_redir_hello_header *h)
{
    FakeDevice *dev = priv;
    struct usb_redir_interface_info_header info = {.interface_count = 1};
    struct usb_redir_ep_info_header ep = {0};
    struct usb_redir_device_connect_header connect = {
        .speed = usb_redir_speed_full,
        .device_class = 0xff,
        .vendor_id = 0x0529,
        .product_id = 0x0001,
        .device_version_bcd = 0x0100,
    };

    if (dev->announced)
        return;
    dev->announced = TRUE;
    info.interface_class[0] = 0xff;
    memset(ep.type, usb_redir_type_invalid, sizeof(ep.type));
    ep.type[0] = ep.type[16] = usb_redir_type_control;
    ep.max_packet_size[0] = ep.max_packet_size[16] = 64;
    usbredirparser_send_interface_info(dev->parser, &info);
    usbredirparser_send_ep_info(dev->parser, &ep);
    usbredirparser_send_device_connect(dev->parser, &connect);
}

static void
fake_control(void *priv, uint64_t id, struct usb_redir_control_packet_header *h, uint8_t *data,
             int data_len)
{
    FakeDevice *dev = priv;
    struct usb_redir_control_packet_header answer = *h;
    guint8 response[USBGW_KEY_LEN];

    answer.status = usb_redir_success;
    if (!(h->endpoint & 0x80)) {
        if (h->request == USBGW_KEY_REQ_CHALLENGE && data_len == USBGW_KEY_LEN)
            memcpy(dev->challenge, data, USBGW_KEY_LEN);
        usbredirparser_send_control_packet(dev->parser, id, &answer, NULL, 0);
    } else {
        usbgw_key_compute(proxy_bench_secret, dev->challenge, response);
        answer.length = MIN(h->length, USBGW_KEY_LEN);
        usbredirparser_send_control_packet(dev->parser, id, &answer, response, answer.length);
    }
    usbredirparser_free_packet_data(dev->parser, data);
}

static void
fake_void(void *priv)
{
}

static void
fake_id(void *priv, uint64_t id)
{
}

static void
fake_filter(void *priv, struct usbredirfilter_rule *rules, int count)
{
    free(rules);
}

#define FAKE_IGNORE(name, header)                                                                  \
    static void fake_ignore_##name(void *priv, uint64_t id, struct header *h)                      \
    {                                                                                              \
    }
FAKE_IGNORE(set_configuration, usb_redir_set_configuration_header)
FAKE_IGNORE(set_alt_setting, usb_redir_set_alt_setting_header)
FAKE_IGNORE(get_alt_setting, usb_redir_get_alt_setting_header)
FAKE_IGNORE(start_iso_stream, usb_redir_start_iso_stream_header)
FAKE_IGNORE(stop_iso_stream, usb_redir_stop_iso_stream_header)
FAKE_IGNORE(start_interrupt_receiving, usb_redir_start_interrupt_receiving_header)
FAKE_IGNORE(stop_interrupt_receiving, usb_redir_stop_interrupt_receiving_header)
FAKE_IGNORE(alloc_bulk_streams, usb_redir_alloc_bulk_streams_header)
FAKE_IGNORE(free_bulk_streams, usb_redir_free_bulk_streams_header)
FAKE_IGNORE(start_bulk_receiving, usb_redir_start_bulk_receiving_header)
FAKE_IGNORE(stop_bulk_receiving, usb_redir_stop_bulk_receiving_header)

#define FAKE_IGNORE_DATA(name, header)                                                             \
    static void fake_ignore_##name(void *priv, uint64_t id, struct header *h, uint8_t *data,       \
                                   int data_len)                                                   \
    {                                                                                              \
        FakeDevice *dev = priv;                                                                    \
        usbredirparser_free_packet_data(dev->parser, data);                                        \
    }
FAKE_IGNORE_DATA(bulk_packet, usb_redir_bulk_packet_header)
FAKE_IGNORE_DATA(iso_packet, usb_redir_iso_packet_header)
FAKE_IGNORE_DATA(interrupt_packet, usb_redir_interrupt_packet_header)

static gpointer
fake_device_thread(gpointer data)
{
    FakeDevice *dev = data;

    while (!g_atomic_int_get(&dev->stop)) {
        struct pollfd pfd = {.fd = dev->fd, .events = POLLIN};
        if (usbredirparser_has_data_to_write(dev->parser))
            pfd.events |= POLLOUT;
        if (poll(&pfd, 1, PROXY_BENCH_DEVICE_POLL_MS) < 0 && errno != EINTR)
            break;
        if (pfd.revents & POLLOUT)
            usbredirparser_do_write(dev->parser);
        if (pfd.revents & (POLLIN | POLLHUP | POLLERR)) {
            if (usbredirparser_do_read(dev->parser) == usbredirparser_read_io_error)
                break;
        }
        if (usbredirparser_has_data_to_write(dev->parser))
            usbredirparser_do_write(dev->parser);
    }
    return NULL;
}

static FakeDevice *
fake_device_start(int fd)
{
    FakeDevice *dev = g_new0(FakeDevice, 1);
    uint32_t caps[USB_REDIR_CAPS_SIZE] = {0};
    struct usbredirparser *p = usbredirparser_create();

    dev->fd = fd;
    dev->parser = p;
    p->priv = dev;
    p->log_func = fake_log;
    p->read_func = fake_read;
    p->write_func = fake_write;
    p->hello_func = fake_hello;
    p->control_packet_func = fake_control;
    p->reset_func = fake_void;
    p->get_configuration_func = fake_id;
    p->cancel_data_packet_func = fake_id;
    p->filter_reject_func = fake_void;
    p->filter_filter_func = fake_filter;
    p->device_disconnect_ack_func = fake_void;
    p->set_configuration_func = fake_ignore_set_configuration;
    p->set_alt_setting_func = fake_ignore_set_alt_setting;
    p->get_alt_setting_func = fake_ignore_get_alt_setting;
    p->start_iso_stream_func = fake_ignore_start_iso_stream;
    p->stop_iso_stream_func = fake_ignore_stop_iso_stream;
    p->start_interrupt_receiving_func = fake_ignore_start_interrupt_receiving;
    p->stop_interrupt_receiving_func = fake_ignore_stop_interrupt_receiving;
    p->alloc_bulk_streams_func = fake_ignore_alloc_bulk_streams;
    p->free_bulk_streams_func = fake_ignore_free_bulk_streams;
    p->start_bulk_receiving_func = fake_ignore_start_bulk_receiving;
    p->stop_bulk_receiving_func = fake_ignore_stop_bulk_receiving;
    p->bulk_packet_func = fake_ignore_bulk_packet;
    p->iso_packet_func = fake_ignore_iso_packet;
    p->interrupt_packet_func = fake_ignore_interrupt_packet;
    usbredirparser_caps_set_cap(caps, usb_redir_cap_connect_device_version);
    usbredirparser_caps_set_cap(caps, usb_redir_cap_filter);
    usbredirparser_caps_set_cap(caps, usb_redir_cap_device_disconnect_ack);
    usbredirparser_caps_set_cap(caps, usb_redir_cap_ep_info_max_packet_size);
    usbredirparser_caps_set_cap(caps, usb_redir_cap_64bits_ids);
    usbredirparser_caps_set_cap(caps, usb_redir_cap_32bits_bulk_length);
    usbredirparser_init(p, "proxy-bench fake device", caps, USB_REDIR_CAPS_SIZE,
                        usbredirparser_fl_usb_host);
    dev->thread = g_thread_new("fake-device", fake_device_thread, dev);
    return dev;
}

static void
fake_device_stop(FakeDevice *dev)
{
    g_atomic_int_set(&dev->stop, 1);
    g_thread_join(dev->thread);
    usbredirparser_destroy(dev->parser);
    close(dev->fd);
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
    BenchPeer *peer;
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
        usbgw_key_compute(proxy_bench_secret, challenge, want);
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

static void
proxy_bench_print(const gchar *name, const gchar *unit, gdouble value, const gchar *base,
                  gdouble base_value, GArray *round_values, GArray *round_ratios)
{
    gdouble vmin, vmax, rmin, rmax;
    gdouble vmed = bench_median(round_values), rmed = bench_median(round_ratios);

    bench_min_max(round_values, &vmin, &vmax);
    bench_min_max(round_ratios, &rmin, &rmax);
    g_print("bench %s: %.1f %s (baseline %s %.1f %s, ratio %.3f) rounds: median %.1f, min-max "
            "%.1f-%.1f; ratio median %.3f, min-max %.3f-%.3f\n",
            name, value, unit, base, base_value, unit, value / base_value, vmed, vmin, vmax, rmed,
            rmin, rmax);
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
    g_autoptr(GArray) round_ratio = g_array_new(FALSE, FALSE, sizeof(gdouble));
    g_autoptr(GArray) round_ratio_op = g_array_new(FALSE, FALSE, sizeof(gdouble));
    g_autoptr(GArray) round_op_c = g_array_new(FALSE, FALSE, sizeof(gdouble));
    g_autoptr(GArray) round_op_b = g_array_new(FALSE, FALSE, sizeof(gdouble));
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
        targets[i]->in_us = g_array_new(FALSE, FALSE, sizeof(gdouble));
        targets[i]->op_us = g_array_new(FALSE, FALSE, sizeof(gdouble));
        targets[i]->round_p50 = g_array_new(FALSE, FALSE, sizeof(gdouble));
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
            g_autoptr(GArray) round_in = g_array_new(FALSE, FALSE, sizeof(gdouble));
            guint op_start = targets[i]->op_us->len;
            g_autoptr(GArray) round_op = g_array_new(FALSE, FALSE, sizeof(gdouble));
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
                proxy_bench_print(rows[i].name, "us", c, "direct", b, proxied.round_p50,
                                  round_ratio);
            } else {
                g_print("bench %s: %.1f us (baseline direct %.1f us, ratio %.3f) over %u ops "
                        "each\n",
                        rows[i].name, c, b, c / b, proxied.in_us->len);
            }
        }
        proxy_bench_print("proxy-op-p50 (OUT+IN)", "us", bench_percentile(proxied.op_us, 50),
                          "direct", bench_percentile(direct.op_us, 50), round_op_c, round_ratio_op);
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
        g_clear_pointer(&targets[i]->peer, bench_peer_free);
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
