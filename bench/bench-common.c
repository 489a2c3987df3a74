/* Helpers of the gateway benches; see bench-common.h. */
#include "bench-common.h"

#include "sim-hex.h"

#include <errno.h>
#include <fcntl.h>
#include <gio/gio.h>
#include <gio/gunixsocketaddress.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

gint64
bench_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (gint64)ts.tv_sec * G_GINT64_CONSTANT(1000000000) + ts.tv_nsec;
}

/* ---- the peer */

UsbredirPeer *
bench_peer_new(int fd, const gchar *label)
{
    /* usbredir-peer's default capabilities: those QEMU 7.2's usb-redir
     * announces that matter here */
    const UsbredirPeerConfig config = {
        .role = USBREDIR_PEER_GUEST,
        .version = "usbgw-bench-peer",
        .label = label,
        .log_level = usbredirparser_warning,
    };

    return usbredir_peer_new(fd, &config, NULL, NULL);
}

gboolean
bench_peers_wait_connected(UsbredirPeer *const *peers, guint n_peers, gint64 timeout_us,
                           GError **error)
{
    if (!usbredir_peer_serve_all(peers, n_peers, usbredir_peer_is_connected,
                                 g_get_monotonic_time() + timeout_us, error)) {
        g_prefix_error(error,
                       "waiting %.1f s for device_connect: ", (gdouble)timeout_us / G_USEC_PER_SEC);
        return FALSE;
    }
    return TRUE;
}

gboolean
bench_peer_wait_connected(UsbredirPeer *peer, gint64 timeout_us, GError **error)
{
    return bench_peers_wait_connected(&peer, 1, timeout_us, error);
}

/* One control transfer, answered with success. */
static gboolean
bench_peer_control(UsbredirPeer *peer, guint8 requesttype, guint8 request, const guint8 *data,
                   guint16 length, gint64 deadline, GError **error)
{
    guint8 status;

    if (!usbredir_peer_control(peer, requesttype, request, data, length, deadline, error))
        return FALSE;
    status = usbredir_peer_get_control(peer)->header.status;
    if (status != usb_redir_success) {
        g_set_error(error, G_IO_ERROR, G_IO_ERROR_FAILED, "%s: control request 0x%02x: status %u",
                    usbredir_peer_get_label(peer), request, status);
        return FALSE;
    }
    return TRUE;
}

gboolean
bench_peer_challenge(UsbredirPeer *peer, const guint8 challenge[USBGW_KEY_LEN],
                     guint8 response[USBGW_KEY_LEN], gint64 *op_ns, gint64 *in_ns,
                     gint64 timeout_us, GError **error)
{
    const UsbredirPeerControl *answer = usbredir_peer_get_control(peer);
    gint64 deadline = g_get_monotonic_time() + timeout_us;
    gint64 start = bench_now_ns(), mid;

    if (!bench_peer_control(peer, 0x40, USBGW_KEY_REQ_CHALLENGE, challenge, USBGW_KEY_LEN, deadline,
                            error))
        return FALSE;
    mid = bench_now_ns();
    if (!bench_peer_control(peer, 0xc0, USBGW_KEY_REQ_RESPONSE, NULL, USBGW_KEY_LEN, deadline,
                            error))
        return FALSE;
    *in_ns = bench_now_ns() - mid;
    *op_ns = bench_now_ns() - start;
    if (answer->length != USBGW_KEY_LEN) {
        g_set_error(error, G_IO_ERROR, G_IO_ERROR_FAILED, "%s: response of %d bytes, not %d",
                    usbredir_peer_get_label(peer), answer->length, USBGW_KEY_LEN);
        return FALSE;
    }
    memcpy(response, answer->data, USBGW_KEY_LEN);
    return TRUE;
}

/* ---- sockets */

int
bench_connect_unix(const gchar *path, gint64 timeout_us, GError **error)
{
    gint64 deadline = g_get_monotonic_time() + timeout_us;

    for (;;) {
        g_autoptr(GSocketAddress) address = g_unix_socket_address_new(path);
        g_autoptr(GSocket) socket = g_socket_new(G_SOCKET_FAMILY_UNIX, G_SOCKET_TYPE_STREAM,
                                                 G_SOCKET_PROTOCOL_DEFAULT, error);
        g_autoptr(GError) local_error = NULL;

        if (socket == NULL)
            return -1;
        if (g_socket_connect(socket, address, NULL, &local_error)) {
            /* GSocket made it non-blocking; the dup shares that flag */
            int fd = fcntl(g_socket_get_fd(socket), F_DUPFD_CLOEXEC, 0);
            if (fd >= 0)
                fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) & ~O_NONBLOCK);
            return fd;
        }
        if (g_get_monotonic_time() > deadline) {
            g_set_error(error, G_IO_ERROR, G_IO_ERROR_TIMED_OUT, "cannot connect to %s: %s", path,
                        local_error->message);
            return -1;
        }
        g_usleep(20 * 1000);
    }
}

int
bench_connect_tcp(guint16 port, gint64 timeout_us, GError **error)
{
    gint64 deadline = g_get_monotonic_time() + timeout_us;
    struct sockaddr_in addr = {
        .sin_family = AF_INET,
        .sin_port = htons(port),
        .sin_addr.s_addr = htonl(INADDR_LOOPBACK),
    };

    for (;;) {
        int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        int one = 1;

        if (fd < 0) {
            g_set_error(error, G_IO_ERROR, g_io_error_from_errno(errno), "socket: %s",
                        g_strerror(errno));
            return -1;
        }
        if (connect(fd, (struct sockaddr *)&addr, sizeof(addr)) == 0) {
            if (setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one)) != 0) {
                g_set_error(error, G_IO_ERROR, g_io_error_from_errno(errno), "TCP_NODELAY: %s",
                            g_strerror(errno));
                close(fd);
                return -1;
            }
            return fd;
        }
        int saved = errno;
        close(fd);
        if (g_get_monotonic_time() > deadline) {
            g_set_error(error, G_IO_ERROR, g_io_error_from_errno(saved),
                        "cannot connect to 127.0.0.1:%u: %s", port, g_strerror(saved));
            return -1;
        }
        g_usleep(20 * 1000);
    }
}

guint16
bench_free_tcp_port(GError **error)
{
    struct sockaddr_in addr = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof(addr);
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    guint16 port = 0;

    if (fd >= 0 && bind(fd, (struct sockaddr *)&addr, sizeof(addr)) == 0 &&
        getsockname(fd, (struct sockaddr *)&addr, &len) == 0)
        port = ntohs(addr.sin_port);
    else
        g_set_error(error, G_IO_ERROR, g_io_error_from_errno(errno), "no free TCP port: %s",
                    g_strerror(errno));
    if (fd >= 0)
        close(fd);
    return port;
}

/* ---- usbgw-sim */

/* The start of the last line of @text (which ends in a newline). */
static const gchar *
bench_last_line(const GString *text)
{
    const gchar *nl = text->len >= 2 ? g_strrstr_len(text->str, (gssize)text->len - 1, "\n") : NULL;
    return nl != NULL ? nl + 1 : text->str;
}

gchar *
bench_sim_command(const gchar *control, const gchar *command, GError **error)
{
    g_autoptr(GString) reply = g_string_new(NULL);
    g_autofree gchar *line = g_strconcat(command, "\n", NULL);
    int fd = bench_connect_unix(control, 5 * G_USEC_PER_SEC, error);
    const gchar *last;
    gchar buf[4096];

    if (fd < 0)
        return NULL;
    if (send(fd, line, strlen(line), MSG_NOSIGNAL) != (ssize_t)strlen(line)) {
        g_set_error(error, G_IO_ERROR, G_IO_ERROR_FAILED, "usbgw-sim: cannot send '%s'", command);
        close(fd);
        return NULL;
    }
    /* The reply ends with a line "ok…" or "error: …". */
    for (;;) {
        ssize_t n = recv(fd, buf, sizeof(buf), 0);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            break;
        g_string_append_len(reply, buf, n);
        if (reply->str[reply->len - 1] != '\n')
            continue;
        last = bench_last_line(reply);
        if (g_str_has_prefix(last, "ok") || g_str_has_prefix(last, "error"))
            break;
    }
    close(fd);
    last = bench_last_line(reply);
    if (!g_str_has_prefix(last, "ok")) {
        g_autofree gchar *why = g_strchomp(g_strdup(reply->len > 0 ? last : "no reply"));
        g_set_error(error, G_IO_ERROR, G_IO_ERROR_FAILED, "usbgw-sim '%s': %s", command, why);
        return NULL;
    }
    g_string_truncate(reply, (gsize)(last - reply->str));
    return g_string_free(g_steal_pointer(&reply), FALSE);
}

gboolean
bench_sim_key_info(const gchar *control, const gchar *name, gchar **port, guint *bus, guint *devnum,
                   guint8 secret[USBGW_KEY_LEN], GError **error)
{
    g_autofree gchar *list = bench_sim_command(control, "list", error);
    g_auto(GStrv) lines = NULL;

    if (list == NULL)
        return FALSE;
    lines = g_strsplit(list, "\n", -1);
    for (gchar **l = lines; *l != NULL; l++) {
        /* NAME STATE VID:PID DEVPATH BUS/DEV SECRET */
        g_auto(GStrv) f = g_strsplit(*l, " ", -1);
        if (g_strv_length(f) != 6 || g_strcmp0(f[0], name) != 0)
            continue;
        if (port != NULL)
            *port = g_strdup(f[3]);
        if (bus != NULL)
            *bus = g_str_equal(f[4], "-") ? 0 : (guint)g_ascii_strtoull(f[4], NULL, 10);
        if (devnum != NULL) {
            const gchar *slash = strchr(f[4], '/');
            *devnum = slash != NULL ? (guint)g_ascii_strtoull(slash + 1, NULL, 10) : 0;
        }
        if (secret != NULL && !sim_hex_decode(f[5], secret, USBGW_KEY_LEN, NULL)) {
            g_set_error(error, G_IO_ERROR, G_IO_ERROR_INVALID_DATA, "usbgw-sim: bad secret '%s'",
                        f[5]);
            return FALSE;
        }
        return TRUE;
    }
    g_set_error(error, G_IO_ERROR, G_IO_ERROR_NOT_FOUND, "usbgw-sim has no key '%s'", name);
    return FALSE;
}

/* ---- child processes */

gboolean
bench_child_spawn(const gchar *const *argv, const gchar *log_path, GPid *pid, GError **error)
{
    int log_fd = open(log_path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    int null_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
    gboolean ok;

    if (log_fd < 0 || null_fd < 0) {
        g_set_error(error, G_IO_ERROR, g_io_error_from_errno(errno), "%s: %s", log_path,
                    g_strerror(errno));
        if (log_fd >= 0)
            close(log_fd);
        if (null_fd >= 0)
            close(null_fd);
        return FALSE;
    }
    ok = g_spawn_async_with_fds(NULL, (gchar **)argv, NULL,
                                G_SPAWN_SEARCH_PATH | G_SPAWN_DO_NOT_REAP_CHILD, NULL, NULL, pid,
                                null_fd, log_fd, log_fd, error);
    close(log_fd);
    close(null_fd);
    if (!ok)
        g_prefix_error(error, "cannot start %s: ", argv[0]);
    return ok;
}

gboolean
bench_child_alive(GPid pid)
{
    int status;
    return pid > 0 && waitpid(pid, &status, WNOHANG) == 0;
}

int
bench_child_stop(GPid pid)
{
    int status = -1;

    if (pid <= 0)
        return -1;
    kill(pid, SIGCONT);
    kill(pid, SIGTERM);
    for (int i = 0; i < 500; i++) {
        pid_t r = waitpid(pid, &status, WNOHANG);
        if (r == pid)
            return status;
        if (r < 0)
            return -1;
        g_usleep(10 * 1000);
    }
    kill(pid, SIGKILL);
    waitpid(pid, &status, 0);
    return -1;
}

void
bench_child_stop_warn(GPid *pid, const gchar *name)
{
    int status;

    if (*pid <= 0)
        return;
    status = bench_child_stop(*pid);
    if (!(WIFEXITED(status) && WEXITSTATUS(status) == 0))
        g_printerr("warning: %s did not exit cleanly on SIGTERM (status %d)\n", name, status);
    *pid = 0;
}

guint64
bench_proc_status_kib(GPid pid, const gchar *field)
{
    g_autofree gchar *path = g_strdup_printf("/proc/%d/status", (int)pid);
    g_autofree gchar *text = NULL;
    g_autofree gchar *key = g_strconcat(field, ":", NULL);
    g_auto(GStrv) lines = NULL;

    if (!g_file_get_contents(path, &text, NULL, NULL))
        return 0;
    lines = g_strsplit(text, "\n", -1);
    for (gchar **l = lines; *l != NULL; l++) {
        if (g_str_has_prefix(*l, key))
            return g_ascii_strtoull(*l + strlen(key), NULL, 10);
    }
    return 0;
}

/* ---- statistics */

GArray *
bench_new_doubles(void)
{
    return g_array_new(FALSE, FALSE, sizeof(gdouble));
}

static gint
bench_compare_doubles(gconstpointer a, gconstpointer b)
{
    gdouble x = *(const gdouble *)a, y = *(const gdouble *)b;
    return x < y ? -1 : x > y;
}

gdouble
bench_percentile(GArray *values, gdouble p)
{
    gsize rank;

    if (values->len == 0)
        return 0.0;
    g_array_sort(values, bench_compare_doubles);
    /* nearest rank: the smallest value with at least p % of the values <= it */
    rank = (gsize)((p / 100.0) * values->len + 0.999999);
    rank = CLAMP(rank, 1, values->len);
    return g_array_index(values, gdouble, rank - 1);
}

gdouble
bench_median(GArray *values)
{
    if (values->len == 0)
        return 0.0;
    g_array_sort(values, bench_compare_doubles);
    if (values->len % 2 == 1)
        return g_array_index(values, gdouble, values->len / 2);
    return (g_array_index(values, gdouble, values->len / 2 - 1) +
            g_array_index(values, gdouble, values->len / 2)) /
           2.0;
}

void
bench_min_max(GArray *values, gdouble *min, gdouble *max)
{
    *min = *max = values->len > 0 ? g_array_index(values, gdouble, 0) : 0.0;
    for (guint i = 1; i < values->len; i++) {
        *min = MIN(*min, g_array_index(values, gdouble, i));
        *max = MAX(*max, g_array_index(values, gdouble, i));
    }
}

GArray *
bench_pairwise(GArray *a, GArray *b, BenchPairwise op)
{
    GArray *out = bench_new_doubles();
    for (guint i = 0; i < MIN(a->len, b->len); i++) {
        gdouble x = g_array_index(a, gdouble, i), y = g_array_index(b, gdouble, i);
        gdouble v = op == BENCH_RATIO ? (y != 0 ? x / y : 0) : x - y;
        g_array_append_val(out, v);
    }
    return out;
}

void
bench_print_compared(const gchar *name, const gchar *unit, gdouble value, const gchar *base,
                     gdouble base_value, gdouble ratio, GArray *round_values, GArray *round_ratios)
{
    gdouble vmin, vmax, rmin, rmax;
    gdouble vmed = bench_median(round_values), rmed = bench_median(round_ratios);

    bench_min_max(round_values, &vmin, &vmax);
    bench_min_max(round_ratios, &rmin, &rmax);
    g_print("bench %s: %.1f %s (baseline %s %.1f %s, ratio %.3f) rounds: median %.1f, min-max "
            "%.1f-%.1f; ratio median %.3f, min-max %.3f-%.3f\n",
            name, value, unit, base, base_value, unit, ratio, vmed, vmin, vmax, rmed, rmin, rmax);
}

gdouble
bench_loadavg(void)
{
    g_autofree gchar *text = NULL;
    return g_file_get_contents("/proc/loadavg", &text, NULL, NULL) ? g_ascii_strtod(text, NULL)
                                                                   : -1.0;
}

void
bench_print_rig(const gchar *detail, gdouble load_at_start)
{
    g_print("rig: umockdev simulated device (%s), %u cores (nproc), load %.2f at start, %.2f at "
            "end (1-min loadavg)\n",
            detail, g_get_num_processors(), load_at_start, bench_loadavg());
}

/* ---- a timed target */

void
bench_target_init(BenchTarget *t, const gchar *name, const gchar *key)
{
    t->name = name;
    t->key = g_strdup(key);
    t->op_us = bench_new_doubles();
    t->in_us = bench_new_doubles();
    t->round_p50 = bench_new_doubles();
    t->round_p99 = bench_new_doubles();
    t->round_p999 = bench_new_doubles();
    t->round_in_p50 = bench_new_doubles();
    t->round_ops = bench_new_doubles();
}

void
bench_target_clear(BenchTarget *t)
{
    g_clear_pointer(&t->peer, usbredir_peer_free);
    g_clear_pointer(&t->key, g_free);
    g_clear_pointer(&t->port, g_free);
    g_clear_pointer(&t->op_us, g_array_unref);
    g_clear_pointer(&t->in_us, g_array_unref);
    g_clear_pointer(&t->round_p50, g_array_unref);
    g_clear_pointer(&t->round_p99, g_array_unref);
    g_clear_pointer(&t->round_p999, g_array_unref);
    g_clear_pointer(&t->round_in_p50, g_array_unref);
    g_clear_pointer(&t->round_ops, g_array_unref);
}

gboolean
bench_target_find_key(BenchTarget *t, const gchar *sim_control, GError **error)
{
    if (!bench_sim_key_info(sim_control, t->key, &t->port, NULL, &t->devnum, t->secret, error))
        return FALSE;
    if (t->devnum == 0) {
        g_set_error(error, G_IO_ERROR, G_IO_ERROR_NOT_FOUND, "key %s is not plugged", t->key);
        return FALSE;
    }
    return TRUE;
}

gboolean
bench_target_run_ops(BenchTarget *t, BenchTarget *const *keyed, guint n_keyed, GRand *rand, guint n,
                     gint64 timeout_us, GArray *op_us, GArray *in_us, GError **error)
{
    for (guint i = 0; i < n; i++) {
        guint8 challenge[USBGW_KEY_LEN], response[USBGW_KEY_LEN], want[USBGW_KEY_LEN];
        gint64 op_ns, in_ns;
        gdouble v;

        for (guint k = 0; k < USBGW_KEY_LEN; k++)
            challenge[k] = (guint8)g_rand_int(rand);
        if (!bench_peer_challenge(t->peer, challenge, response, &op_ns, &in_ns, timeout_us, error))
            return FALSE;
        usbgw_key_compute(t->secret, challenge, want);
        if (memcmp(want, response, USBGW_KEY_LEN) != 0) {
            g_set_error(error, G_IO_ERROR, G_IO_ERROR_FAILED,
                        "%s: the response is not key %s's answer", t->name, t->key);
            return FALSE;
        }
        for (guint o = 0; o < n_keyed && t->verified == 0; o++) {
            BenchTarget *other = keyed[o];
            if (other == t)
                continue;
            usbgw_key_compute(other->secret, challenge, want);
            if (memcmp(want, response, USBGW_KEY_LEN) == 0) {
                g_set_error(error, G_IO_ERROR, G_IO_ERROR_FAILED, "%s answers as key %s, not %s",
                            t->name, other->key, t->key);
                return FALSE;
            }
        }
        t->verified++;
        v = op_ns / 1000.0;
        g_array_append_val(op_us, v);
        v = in_ns / 1000.0;
        g_array_append_val(in_us, v);
    }
    return TRUE;
}

void
bench_target_add_round(BenchTarget *t, GArray *op_us, GArray *in_us, gdouble elapsed_s)
{
    gdouble v;

    g_array_append_vals(t->op_us, op_us->data, op_us->len);
    g_array_append_vals(t->in_us, in_us->data, in_us->len);
    v = bench_percentile(op_us, 50);
    g_array_append_val(t->round_p50, v);
    v = bench_percentile(op_us, 99);
    g_array_append_val(t->round_p99, v);
    v = bench_percentile(op_us, 99.9);
    g_array_append_val(t->round_p999, v);
    v = bench_percentile(in_us, 50);
    g_array_append_val(t->round_in_p50, v);
    v = op_us->len / elapsed_s;
    g_array_append_val(t->round_ops, v);
    t->busy_s += elapsed_s;
}

void
bench_target_print(BenchTarget *t, const gchar *tail)
{
    g_print("%s (key %s at %s): %u ops timed, %u responses checked; p50 %.1f us, p99 %.1f us, "
            "p99.9 %.1f us, max %.1f us, IN p50 %.1f us, %.0f ops/s%s\n",
            t->name, t->key, t->port, t->op_us->len, t->verified, bench_percentile(t->op_us, 50),
            bench_percentile(t->op_us, 99), bench_percentile(t->op_us, 99.9),
            bench_percentile(t->op_us, 100), bench_percentile(t->in_us, 50),
            t->op_us->len / t->busy_s, tail);
}

/* The percentile @figure stands for, and the targets' per-round arrays of it. */
static gdouble
bench_figure_rounds(BenchFigure figure, BenchTarget *t, GArray **rounds)
{
    switch (figure) {
    case BENCH_FIGURE_P50:
        *rounds = t->round_p50;
        return 50;
    case BENCH_FIGURE_P99:
        *rounds = t->round_p99;
        return 99;
    case BENCH_FIGURE_P999:
        *rounds = t->round_p999;
        return 99.9;
    case BENCH_FIGURE_IN_P50:
        *rounds = t->round_in_p50;
        return 50;
    }
    g_return_val_if_reached(0);
}

void
bench_target_compare(const gchar *name, BenchTarget *cand, BenchTarget *base, BenchFigure figure,
                     gboolean added)
{
    GArray *pooled_c = figure == BENCH_FIGURE_IN_P50 ? cand->in_us : cand->op_us;
    GArray *pooled_b = figure == BENCH_FIGURE_IN_P50 ? base->in_us : base->op_us;
    GArray *round_c = NULL, *round_b = NULL;
    gdouble p = bench_figure_rounds(figure, cand, &round_c);
    gdouble c = bench_percentile(pooled_c, p), b;
    g_autoptr(GArray) ratios = NULL;
    g_autoptr(GArray) values = NULL;

    bench_figure_rounds(figure, base, &round_b);
    b = bench_percentile(pooled_b, p);
    ratios = bench_pairwise(round_c, round_b, BENCH_RATIO);
    values = added ? bench_pairwise(round_c, round_b, BENCH_DIFFERENCE) : g_array_copy(round_c);
    bench_print_compared(name, "us", added ? c - b : c, base->name, b, b != 0 ? c / b : 0, values,
                         ratios);
}

void
bench_target_compare_ops(const gchar *name, BenchTarget *cand, BenchTarget *base)
{
    gdouble c = cand->op_us->len / cand->busy_s, b = base->op_us->len / base->busy_s;
    g_autoptr(GArray) ratios = bench_pairwise(cand->round_ops, base->round_ops, BENCH_RATIO);
    g_autoptr(GArray) values = g_array_copy(cand->round_ops);

    bench_print_compared(name, "ops/s", c, base->name, b, b != 0 ? c / b : 0, values, ratios);
}

/* ---- gateway links */

gboolean
bench_make_certs(const gchar *script, const gchar *dir, const gchar *names, GError **error)
{
    g_autofree gchar *out = NULL;
    gint wait_status = 0;
    g_auto(GStrv) list = g_strsplit(names, " ", -1);
    g_autoptr(GPtrArray) argv = g_ptr_array_new();

    g_ptr_array_add(argv, (gpointer) "bash");
    g_ptr_array_add(argv, (gpointer)script);
    g_ptr_array_add(argv, (gpointer)dir);
    for (guint i = 0; list[i] != NULL; i++)
        g_ptr_array_add(argv, list[i]);
    g_ptr_array_add(argv, NULL);
    if (!g_spawn_sync(NULL, (gchar **)argv->pdata, NULL, G_SPAWN_SEARCH_PATH, NULL, NULL, &out,
                      &out, &wait_status, error))
        return FALSE;
    if (!g_spawn_check_wait_status(wait_status, error)) {
        g_prefix_error(error, "%s %s %s: %s: ", script, dir, names, out != NULL ? out : "");
        return FALSE;
    }
    return TRUE;
}

gboolean
bench_usbgwd_start(const gchar *usbgwd, const gchar *dir, const gchar *config_lines,
                   const gchar *policy_text, GPid *pid, GError **error)
{
    g_autofree gchar *conf = g_build_filename(dir, "usbgwd.conf", NULL);
    g_autofree gchar *policy = g_build_filename(dir, "policy", NULL);
    g_autofree gchar *rundir = g_build_filename(dir, "run", NULL);
    g_autofree gchar *log = g_build_filename(dir, "usbgwd.log", NULL);
    g_autofree gchar *conf_text =
        g_strdup_printf("[usbgwd]\ncontrol-socket=%s/control.sock\nstate=%s/state.json\n"
                        "audit-log=%s/audit.log\nlibvirt-uri=\n%s",
                        dir, dir, dir, config_lines);
    const gchar *argv[] = {usbgwd, "--foreground", "--policy", policy, "--rundir",
                           rundir, "--config",     conf,       NULL};

    if (g_mkdir_with_parents(dir, 0755) != 0) {
        g_set_error(error, G_IO_ERROR, g_io_error_from_errno(errno), "%s: %s", dir,
                    g_strerror(errno));
        return FALSE;
    }
    if (!g_file_set_contents(conf, conf_text, -1, error) ||
        !g_file_set_contents(policy, policy_text, -1, error))
        return FALSE;
    return bench_child_spawn(argv, log, pid, error);
}

gchar **
bench_vm_sockets(const gchar *dir, const gchar *vm, guint n, gint64 timeout_us, GError **error)
{
    g_autofree gchar *vmdir = g_build_filename(dir, "run", "vm", vm, NULL);
    gint64 deadline = g_get_monotonic_time() + timeout_us;

    for (;;) {
        g_autoptr(GDir) d = g_dir_open(vmdir, 0, NULL);
        g_autoptr(GPtrArray) found = g_ptr_array_new_with_free_func(g_free);
        const gchar *name;

        while (d != NULL && (name = g_dir_read_name(d)) != NULL) {
            if (g_str_has_suffix(name, ".sock"))
                g_ptr_array_add(found, g_build_filename(vmdir, name, NULL));
        }
        if (found->len >= n) {
            g_ptr_array_sort(found, (GCompareFunc)g_strcmp0);
            g_ptr_array_add(found, NULL);
            return (gchar **)g_ptr_array_free(g_steal_pointer(&found), FALSE);
        }
        if (g_get_monotonic_time() > deadline) {
            g_set_error(error, G_IO_ERROR, G_IO_ERROR_TIMED_OUT,
                        "%u device sockets in %s, not %u, after %.0f s", found->len, vmdir, n,
                        (gdouble)timeout_us / G_USEC_PER_SEC);
            return NULL;
        }
        g_usleep(50 * 1000);
    }
}

guint64
bench_proc_cpu_ticks(GPid pid)
{
    g_autofree gchar *path = g_strdup_printf("/proc/%d/stat", (int)pid);
    g_autofree gchar *text = NULL;
    g_auto(GStrv) fields = NULL;
    const gchar *after;

    if (!g_file_get_contents(path, &text, NULL, NULL))
        return 0;
    /* the command name may hold spaces: fields count from after its ')' */
    after = strrchr(text, ')');
    if (after == NULL)
        return 0;
    fields = g_strsplit(after + 2, " ", -1);
    /* state is field 3, utime 14 and stime 15 (proc(5)) */
    if (g_strv_length(fields) < 13)
        return 0;
    return g_ascii_strtoull(fields[11], NULL, 10) + g_ascii_strtoull(fields[12], NULL, 10);
}

/* ---- a fake key */

const guint8 bench_fake_key_secret[USBGW_KEY_LEN] = {0, 1, 2,  3,  4,  5,  6,  7,
                                                     8, 9, 10, 11, 12, 13, 14, 15};
