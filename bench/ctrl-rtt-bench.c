/* ctrl-rtt-bench: vendor control-transfer round trips through usbgwd versus
 * an in-process usbredirhost and Debian's usbredirect, on identical
 * simulated keys (figures ctrl-rtt and ops).
 *
 * Usage (the driver starts usbgw-bench-sim with the keys and this program
 * as its child, which then starts usbgwd and usbredirect itself):
 *
 *   bench/run-gateway-bench.sh ctrl build/bench/usbgw-bench-sim \
 *       build/bench/ctrl-rtt-bench build/gateway/usbgwd [OPTION…]
 *   meson test -C build --benchmark gateway-ctrl-rtt -v
 *
 * Options: --rounds N (7, at least 5), --ops N (1000 timed ops per target
 * and round), --warmup N (200 per target), --no-usbredirect, --no-quiesce.
 *
 * One op = vendor control OUT 0x01 with a random 16-byte challenge, then
 * vendor control IN 0x02 reading the 16-byte response (key-protocol.h),
 * sent by the same usbredirparser peer (QEMU's role) to three targets:
 *
 *   usbgwd       key "hasp" (port 1-1), served by usbgwd through a policy
 *                with via-port; the peer connects to its attachment socket.
 *   inproc       key "hasp2" (port 1-2): usbredirhost in this process on a
 *                libusb handle, a socketpair to the peer, an I/O thread and
 *                a libusb event thread (the same shape as usbgwd's, minus
 *                the daemon).
 *   usbredirect  key "key1" (port 1-5; usbgw-bench-sim's third identical
 *                key), exported by `usbredirect --device 0529:0001 --as
 *                127.0.0.1:PORT`; the peer connects over TCP with
 *                TCP_NODELAY. usbredirect 0.13 cannot pick one of several
 *                identical keys: even its "--device BUS-DEV" form only
 *                looks up VID:PID, then it opens the first such device
 *                libusb lists, which here is key1 (the last on the bus);
 *                the secret check below fails the run if it were another.
 *
 * Every response is checked against the key function under that key's
 * secret (from usbgw-sim's "list"), and the first one of each target
 * against the other keys' secrets too, so each target provably talks to
 * its own key. Rounds run A B C, B C A, C A B, … and, unless --no-quiesce,
 * the targets not being measured are stopped (SIGSTOP; the in-process
 * event thread parked): under umockdev every open libusb handle makes its
 * event loop spin, and usbgwd and usbredirect each keep a core busy while a
 * peer is connected (usbgwd: its session source's prepare() calls
 * g_source_modify_unix_fd(), which wakes the main context, every
 * iteration; usbredirect: a permanent G_IO_OUT watch), which on a 2-core
 * rig would otherwise swamp the figures.
 * Latency percentiles are over all timed ops of a target (rounds x ops);
 * "rounds:" gives the median and min-max of the per-round figures and of
 * the per-round ratios. */
#include <errno.h>
#include <libusb.h>
#include <poll.h>
#include <signal.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>
#include <usbredirhost.h>

#include <gio/gio.h>

#include "bench-common.h"
#include "gw-device.h"

#define CTRL_OP_TIMEOUT_US    (5 * G_USEC_PER_SEC)
#define CTRL_CONNECT_US       (20 * G_USEC_PER_SEC)
#define CTRL_ROUND_WARMUP_OPS 20 /* untimed, after a target is resumed */
#define CTRL_VM               "bench"

/* ---- the in-process usbredirhost */

typedef struct {
    libusb_context *ctx;
    struct usbredirhost *host;
    int fd;      /* our end of the socketpair */
    int wake_fd; /* eventfd: output is pending, or stop */
    GThread *io_thread;
    GThread *event_thread;
    gint stop;   /* atomic */
    gint failed; /* atomic */
    GMutex pause_lock;
    GCond pause_cond;
    gboolean paused;
} InprocHost;

static void
inproc_log(void *priv, int level, const char *msg)
{
    if (level <= usbredirparser_warning)
        g_printerr("inproc usbredirhost: %s\n", msg);
}

static int
inproc_read(void *priv, uint8_t *data, int count)
{
    InprocHost *h = priv;
    ssize_t n = recv(h->fd, data, (size_t)count, MSG_DONTWAIT);
    if (n > 0)
        return (int)n;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR))
        return 0;
    return -1;
}

static int
inproc_write(void *priv, uint8_t *data, int count)
{
    InprocHost *h = priv;
    ssize_t n = send(h->fd, data, (size_t)count, MSG_DONTWAIT | MSG_NOSIGNAL);
    if (n >= 0)
        return (int)n;
    if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)
        return 0;
    g_atomic_int_set(&h->failed, 1);
    return -1;
}

static void
inproc_wake(InprocHost *h)
{
    guint64 one = 1;
    if (write(h->wake_fd, &one, sizeof(one)) < 0 && errno != EAGAIN)
        g_atomic_int_set(&h->failed, 1);
}

/* As usbgwd's session: write at once from whichever thread queued output;
 * what does not fit is left to the I/O thread. */
static void
inproc_flush(void *priv)
{
    InprocHost *h = priv;
    if (h->host == NULL)
        return;
    usbredirhost_write_guest_data(h->host);
    if (usbredirhost_has_data_to_write(h->host) > 0)
        inproc_wake(h);
}

static void *
inproc_lock_new(void)
{
    GMutex *mutex = g_new0(GMutex, 1);
    g_mutex_init(mutex);
    return mutex;
}

static void
inproc_lock(void *lock)
{
    g_mutex_lock(lock);
}

static void
inproc_unlock(void *lock)
{
    g_mutex_unlock(lock);
}

static void
inproc_lock_free(void *lock)
{
    g_mutex_clear(lock);
    g_free(lock);
}

/* Reads from the peer: the one reader usbredirhost allows. */
static gpointer
inproc_io_thread(gpointer data)
{
    InprocHost *h = data;

    while (!g_atomic_int_get(&h->stop)) {
        struct pollfd pfds[2] = {{.fd = h->fd, .events = POLLIN},
                                 {.fd = h->wake_fd, .events = POLLIN}};
        if (usbredirhost_has_data_to_write(h->host) > 0)
            pfds[0].events |= POLLOUT;
        if (poll(pfds, 2, 500) < 0 && errno != EINTR)
            break;
        if (pfds[1].revents & POLLIN) {
            guint64 count;
            if (read(h->wake_fd, &count, sizeof(count)) < 0 && errno != EAGAIN)
                break;
        }
        if (pfds[0].revents & POLLOUT && usbredirhost_write_guest_data(h->host) < 0)
            break;
        if (pfds[0].revents & (POLLIN | POLLHUP | POLLERR)) {
            int rc = usbredirhost_read_guest_data(h->host);
            if (rc == usbredirhost_read_io_error || rc == usbredirhost_read_parse_error)
                break;
        }
    }
    if (!g_atomic_int_get(&h->stop))
        g_atomic_int_set(&h->failed, 1);
    return NULL;
}

static gpointer
inproc_event_thread(gpointer data)
{
    InprocHost *h = data;

    while (!g_atomic_int_get(&h->stop)) {
        struct timeval tv = {.tv_sec = 0, .tv_usec = 100 * 1000};
        g_mutex_lock(&h->pause_lock);
        while (h->paused && !g_atomic_int_get(&h->stop))
            g_cond_wait(&h->pause_cond, &h->pause_lock);
        g_mutex_unlock(&h->pause_lock);
        libusb_handle_events_timeout_completed(h->ctx, &tv, NULL);
    }
    return NULL;
}

/* Parks the event thread between rounds (no transfer is in flight then). */
static void
inproc_host_pause(InprocHost *h, gboolean paused)
{
    g_mutex_lock(&h->pause_lock);
    h->paused = paused;
    g_cond_broadcast(&h->pause_cond);
    g_mutex_unlock(&h->pause_lock);
}

static void
inproc_host_free(InprocHost *h)
{
    if (h == NULL)
        return;
    g_atomic_int_set(&h->stop, 1);
    inproc_host_pause(h, FALSE);
    if (h->io_thread != NULL) {
        inproc_wake(h);
        g_thread_join(h->io_thread);
    }
    if (h->host != NULL) {
        struct usbredirhost *host = h->host;
        h->host = NULL;
        usbredirhost_close(host); /* closes the device handle too */
    }
    if (h->event_thread != NULL) {
        libusb_interrupt_event_handler(h->ctx);
        g_thread_join(h->event_thread);
    }
    if (h->ctx != NULL)
        libusb_exit(h->ctx);
    if (h->fd >= 0)
        close(h->fd);
    if (h->wake_fd >= 0)
        close(h->wake_fd);
    g_mutex_clear(&h->pause_lock);
    g_cond_clear(&h->pause_cond);
    g_free(h);
}
G_DEFINE_AUTOPTR_CLEANUP_FUNC(InprocHost, inproc_host_free)

/* "1-2" for bus 1, port 2 (as usbgwd and usbgw-sim name ports). */
/* Opens the key at @port and serves it on a socketpair; *peer_fd gets the
 * other end. */
static InprocHost *
inproc_host_new(const gchar *port, int *peer_fd, GError **error)
{
    g_autoptr(InprocHost) h = g_new0(InprocHost, 1);
    libusb_device **list = NULL;
    libusb_device_handle *handle = NULL;
    ssize_t n;
    int sv[2], rc;

    h->fd = h->wake_fd = -1;
    g_mutex_init(&h->pause_lock);
    g_cond_init(&h->pause_cond);
    rc = libusb_init(&h->ctx);
    if (rc != LIBUSB_SUCCESS) {
        h->ctx = NULL;
        g_set_error(error, G_IO_ERROR, G_IO_ERROR_FAILED, "libusb_init: %s", libusb_strerror(rc));
        return NULL;
    }
    n = libusb_get_device_list(h->ctx, &list);
    for (ssize_t i = 0; i < n && handle == NULL; i++) {
        g_autofree gchar *path = gw_device_port_path(list[i]);
        if (g_strcmp0(path, port) != 0)
            continue;
        rc = libusb_open(list[i], &handle);
        if (rc != LIBUSB_SUCCESS) {
            g_set_error(error, G_IO_ERROR, G_IO_ERROR_FAILED, "cannot open the key at %s: %s", port,
                        libusb_strerror(rc));
            libusb_free_device_list(list, 1);
            return NULL;
        }
    }
    if (n >= 0)
        libusb_free_device_list(list, 1);
    if (handle == NULL) {
        g_set_error(error, G_IO_ERROR, G_IO_ERROR_NOT_FOUND, "libusb sees no device at %s", port);
        return NULL;
    }
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0 ||
        (h->wake_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC)) < 0) {
        g_set_error(error, G_IO_ERROR, g_io_error_from_errno(errno), "socketpair/eventfd: %s",
                    g_strerror(errno));
        libusb_close(handle);
        return NULL;
    }
    h->fd = sv[0];
    *peer_fd = sv[1];
    h->host =
        usbredirhost_open_full(h->ctx, NULL, inproc_log, inproc_read, inproc_write, inproc_flush,
                               inproc_lock_new, inproc_lock, inproc_unlock, inproc_lock_free, h,
                               "usbgw-bench inproc", usbredirparser_warning, 0);
    if (h->host == NULL) {
        g_set_error(error, G_IO_ERROR, G_IO_ERROR_FAILED, "usbredirhost_open_full failed");
        libusb_close(handle);
        close(*peer_fd);
        return NULL;
    }
    /* usbredirhost owns the handle from here, as in usbgwd */
    rc = usbredirhost_set_device(h->host, handle);
    if (rc != 0) {
        g_set_error(error, G_IO_ERROR, G_IO_ERROR_FAILED, "usbredirhost_set_device: %d", rc);
        close(*peer_fd);
        return NULL;
    }
    h->event_thread = g_thread_new("bench-usb", inproc_event_thread, h);
    h->io_thread = g_thread_new("bench-host-io", inproc_io_thread, h);
    return g_steal_pointer(&h);
}

/* ---- targets */

typedef enum {
    TARGET_GATEWAY,
    TARGET_INPROC,
    TARGET_USBREDIRECT,
    N_TARGETS,
} TargetId;

typedef struct {
    BenchTarget common;
    gboolean enabled;
    GPid pid;         /* usbgwd or usbredirect; 0 for inproc */
    InprocHost *host; /* inproc only */
} Target;

typedef struct {
    Target targets[N_TARGETS];
    BenchTarget *keyed[N_TARGETS]; /* the enabled ones */
    guint n_keyed;
    gboolean quiesce;
    GRand *rand;
} Bench;

static void
target_pause(Target *t, gboolean paused)
{
    if (!t->enabled)
        return;
    if (t->host != NULL)
        inproc_host_pause(t->host, paused);
    else if (t->pid > 0)
        kill(t->pid, paused ? SIGSTOP : SIGCONT);
}

/* Runs @n ops; records them unless @record is FALSE (warm-up). */
static gboolean
target_run(Bench *bench, Target *t, guint n, gboolean record, GError **error)
{
    g_autoptr(GArray) op_us = bench_new_doubles();
    g_autoptr(GArray) in_us = bench_new_doubles();
    gint64 start = bench_now_ns();

    if (!bench_target_run_ops(&t->common, bench->keyed, bench->n_keyed, bench->rand, n,
                              CTRL_OP_TIMEOUT_US, op_us, in_us, error))
        return FALSE;
    if (t->host != NULL && g_atomic_int_get(&t->host->failed)) {
        g_set_error(error, G_IO_ERROR, G_IO_ERROR_FAILED,
                    "%s: the in-process host lost its socket or its I/O thread", t->common.name);
        return FALSE;
    }
    if (record)
        bench_target_add_round(&t->common, op_us, in_us, (bench_now_ns() - start) / 1e9);
    return TRUE;
}

static void
target_clear(Target *t)
{
    g_clear_pointer(&t->common.peer, usbredir_peer_free);
    g_clear_pointer(&t->host, inproc_host_free);
    bench_child_stop_warn(&t->pid, t->common.name);
    bench_target_clear(&t->common);
}

static gboolean
start_gateway(Target *t, const gchar *usbgwd, const gchar *workdir, GError **error)
{
    g_autofree gchar *policy = g_build_filename(workdir, "ctrl.policy", NULL);
    g_autofree gchar *rundir = g_build_filename(workdir, "run", NULL);
    g_autofree gchar *log = g_build_filename(workdir, "usbgwd.log", NULL);
    g_autofree gchar *config = g_build_filename(workdir, "none.conf", NULL);
    g_autofree gchar *text =
        g_strdup_printf("# ctrl-rtt-bench: only the key at %s goes to usbgwd\n"
                        "assign id 0529:0001 via-port \"%s\" to vm \"" CTRL_VM "\"\n",
                        t->common.port, t->common.port);
    g_autofree gchar *file = g_strdup_printf("0529-0001-at-%s.sock", t->common.port);
    g_autofree gchar *sock = g_build_filename(rundir, "vm", CTRL_VM, file, NULL);
    const gchar *argv[] = {usbgwd, "--foreground", "--policy", policy, "--rundir",
                           rundir, "--config",     config,     NULL};
    int fd;

    if (!g_file_set_contents(policy, text, -1, error))
        return FALSE;
    if (!bench_child_spawn(argv, log, &t->pid, error))
        return FALSE;
    fd = bench_connect_unix(sock, CTRL_CONNECT_US, error);
    if (fd < 0)
        return FALSE;
    t->common.peer = bench_peer_new(fd, "usbgwd peer");
    return bench_peer_wait_connected(t->common.peer, CTRL_CONNECT_US, error);
}

static gboolean
start_inproc(Target *t, GError **error)
{
    int fd = -1;
    t->host = inproc_host_new(t->common.port, &fd, error);
    if (t->host == NULL)
        return FALSE;
    t->common.peer = bench_peer_new(fd, "inproc peer");
    return bench_peer_wait_connected(t->common.peer, CTRL_CONNECT_US, error);
}

static gboolean
start_usbredirect(Target *t, const gchar *usbredirect, const gchar *workdir, GError **error)
{
    g_autofree gchar *log = g_build_filename(workdir, "usbredirect.log", NULL);
    g_autofree gchar *as = NULL;
    guint16 port = bench_free_tcp_port(error);
    int fd;

    if (port == 0)
        return FALSE;
    as = g_strdup_printf("127.0.0.1:%u", port);
    /* see the top of the file: this opens the first 0529:0001 key listed */
    const gchar *argv[] = {usbredirect, "--device", "0529:0001", "--as", as, NULL};
    if (!bench_child_spawn(argv, log, &t->pid, error))
        return FALSE;
    fd = bench_connect_tcp(port, CTRL_CONNECT_US, error);
    if (fd < 0)
        return FALSE;
    t->common.peer = bench_peer_new(fd, "usbredirect peer");
    return bench_peer_wait_connected(t->common.peer, CTRL_CONNECT_US, error);
}

/* ---- output */

static void
ctrl_report_pair(Target *cand, Target *base)
{
    BenchTarget *c = &cand->common, *b = &base->common;

    bench_target_compare("ctrl-rtt-p50", c, b, BENCH_FIGURE_P50, FALSE);
    bench_target_compare("ctrl-rtt-p99", c, b, BENCH_FIGURE_P99, FALSE);
    bench_target_compare("ctrl-rtt-p99.9", c, b, BENCH_FIGURE_P999, FALSE);
    bench_target_compare("ctrl-rtt-in-p50", c, b, BENCH_FIGURE_IN_P50, FALSE);
    bench_target_compare("ctrl-rtt-added-p50", c, b, BENCH_FIGURE_P50, TRUE);
    bench_target_compare("ctrl-rtt-added-p99", c, b, BENCH_FIGURE_P99, TRUE);
    bench_target_compare_ops("ops", c, b);
}

int
main(int argc, char **argv)
{
    g_autofree gchar *sim_control = NULL;
    g_autofree gchar *usbgwd = NULL;
    g_autofree gchar *usbredirect = g_strdup("usbredirect");
    g_autofree gchar *workdir = NULL;
    g_autofree gchar *gateway_key = g_strdup("hasp");
    g_autofree gchar *inproc_key = g_strdup("hasp2");
    g_autofree gchar *usbredirect_key = g_strdup("key1");
    gint rounds = 7, ops = 1000, warmup = 200;
    gboolean no_usbredirect = FALSE, no_quiesce = FALSE;
    const GOptionEntry entries[] = {
        {"sim-control", 0, 0, G_OPTION_ARG_FILENAME, &sim_control, "usbgw-sim control socket",
         "PATH"},
        {"usbgwd", 0, 0, G_OPTION_ARG_FILENAME, &usbgwd, "usbgwd to run", "PATH"},
        {"usbredirect", 0, 0, G_OPTION_ARG_FILENAME, &usbredirect, "usbredirect (from PATH)",
         "PATH"},
        {"workdir", 0, 0, G_OPTION_ARG_FILENAME, &workdir, "Policy, rundir and logs", "DIR"},
        {"gateway-key", 0, 0, G_OPTION_ARG_STRING, &gateway_key, "Key for usbgwd (hasp)", "NAME"},
        {"inproc-key", 0, 0, G_OPTION_ARG_STRING, &inproc_key,
         "Key for the in-process host (hasp2)", "NAME"},
        {"usbredirect-key", 0, 0, G_OPTION_ARG_STRING, &usbredirect_key,
         "Key for usbredirect (key1)", "NAME"},
        {"rounds", 0, 0, G_OPTION_ARG_INT, &rounds, "Rounds (7, at least 5)", "N"},
        {"ops", 0, 0, G_OPTION_ARG_INT, &ops, "Timed ops per target and round (1000)", "N"},
        {"warmup", 0, 0, G_OPTION_ARG_INT, &warmup, "Warm-up ops per target (200)", "N"},
        {"no-usbredirect", 0, 0, G_OPTION_ARG_NONE, &no_usbredirect, "Leave usbredirect out", NULL},
        {"no-quiesce", 0, 0, G_OPTION_ARG_NONE, &no_quiesce,
         "Keep the targets not measured running", NULL},
        G_OPTION_ENTRY_NULL,
    };
    g_autoptr(GOptionContext) context =
        g_option_context_new("— control round trips: usbgwd vs in-process usbredirhost vs "
                             "usbredirect");
    g_autoptr(GError) error = NULL;
    Bench bench = {0};
    Target *gw = &bench.targets[TARGET_GATEWAY];
    Target *inproc = &bench.targets[TARGET_INPROC];
    Target *redirect = &bench.targets[TARGET_USBREDIRECT];
    guint order[N_TARGETS], n_order = 0;
    gdouble load_at_start = -1;
    int status = 1;

    g_option_context_add_main_entries(context, entries, NULL);
    if (!g_option_context_parse(context, &argc, &argv, &error)) {
        g_printerr("ctrl-rtt-bench: %s\n", error->message);
        return 2;
    }
    if (sim_control == NULL || usbgwd == NULL || workdir == NULL) {
        g_printerr("ctrl-rtt-bench: --sim-control, --usbgwd and --workdir are required "
                   "(run it through bench/run-gateway-bench.sh)\n");
        return 2;
    }
    rounds = MAX(rounds, 5);
    load_at_start = bench_loadavg();
    ops = MAX(ops, 1);
    bench.quiesce = !no_quiesce;
    bench.rand = g_rand_new_with_seed(20261124);

    bench_target_init(&gw->common, "usbgwd", gateway_key);
    bench_target_init(&inproc->common, "inproc-usbredirhost", inproc_key);
    bench_target_init(&redirect->common, "usbredirect", usbredirect_key);
    redirect->enabled = !no_usbredirect;
    gw->enabled = inproc->enabled = TRUE;
    for (guint i = 0; i < N_TARGETS; i++) {
        Target *t = &bench.targets[i];
        if (!t->enabled)
            continue;
        order[n_order++] = i;
        bench.keyed[bench.n_keyed++] = &t->common;
        if (!bench_target_find_key(&t->common, sim_control, &error))
            goto out;
    }

    if (!start_gateway(gw, usbgwd, workdir, &error) || !start_inproc(inproc, &error) ||
        (redirect->enabled && !start_usbredirect(redirect, usbredirect, workdir, &error)))
        goto out;

    /* warm-up, each target alone if quiescing */
    for (guint i = 0; i < n_order && bench.quiesce; i++)
        target_pause(&bench.targets[order[i]], TRUE);
    for (guint i = 0; i < n_order; i++) {
        Target *t = &bench.targets[order[i]];
        if (bench.quiesce)
            target_pause(t, FALSE);
        if (!target_run(&bench, t, (guint)warmup, FALSE, &error))
            goto out;
        if (bench.quiesce)
            target_pause(t, TRUE);
    }
    /* rounds: A B C, B C A, C A B, … */
    for (gint r = 0; r < rounds; r++) {
        for (guint k = 0; k < n_order; k++) {
            Target *t = &bench.targets[order[(r + k) % n_order]];
            if (bench.quiesce)
                target_pause(t, FALSE);
            if (!target_run(&bench, t, CTRL_ROUND_WARMUP_OPS, FALSE, &error) ||
                !target_run(&bench, t, (guint)ops, TRUE, &error))
                goto out;
            if (bench.quiesce)
                target_pause(t, TRUE);
        }
    }
    for (guint i = 0; i < n_order; i++)
        target_pause(&bench.targets[order[i]], FALSE);

    {
        g_autofree gchar *rig = g_strdup_printf(
            "usbgw-bench-sim keys, identical 0529:0001 vendor keys: %s@%s -> usbgwd, %s@%s -> "
            "in-process usbredirhost%s%s%s%s",
            gw->common.key, gw->common.port, inproc->common.key, inproc->common.port,
            redirect->enabled ? ", " : "", redirect->enabled ? redirect->common.key : "",
            redirect->enabled ? "@" : "", redirect->enabled ? redirect->common.port : "");
        g_autofree gchar *rig_full = g_strdup_printf(
            "%s%s", rig, redirect->enabled ? " -> Debian usbredirect over TCP" : "");
        bench_print_rig(rig_full, load_at_start);
    }
    g_print("method: op = vendor OUT 0x01 (16-byte challenge) + vendor IN 0x02 (16-byte "
            "response), response checked; %d rounds x %d timed ops per target, interleaved "
            "(rotating order), after %d warm-up ops (+%d per round); %s\n",
            rounds, ops, warmup, CTRL_ROUND_WARMUP_OPS,
            bench.quiesce ? "targets not measured are stopped (SIGSTOP / parked event thread)"
                          : "all targets run all the time (--no-quiesce)");
    for (guint i = 0; i < n_order; i++)
        bench_target_print(&bench.targets[order[i]].common, "");
    ctrl_report_pair(gw, inproc);
    if (redirect->enabled)
        ctrl_report_pair(gw, redirect);
    status = 0;

out:
    if (error != NULL)
        g_printerr("ctrl-rtt-bench: %s\n", error->message);
    for (guint i = 0; i < N_TARGETS; i++)
        target_clear(&bench.targets[i]);
    g_rand_free(bench.rand);
    return status;
}
