/* Helpers of the gateway benches; see bench-common.h. */
#include "bench-common.h"

#include "sim-hex.h"

#include <errno.h>
#include <fcntl.h>
#include <gio/gio.h>
#include <gio/gunixsocketaddress.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <usbredirparser.h>

#define BENCH_PEER_MAX_REPLY 64

gint64
bench_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (gint64)ts.tv_sec * G_GINT64_CONSTANT(1000000000) + ts.tv_nsec;
}

/* ---- the peer */

struct _BenchPeer {
    int fd;
    gchar *label;
    struct usbredirparser *parser;
    gboolean connected;       /* device_connect seen */
    gboolean interfaces_seen; /* interface_info seen */
    gboolean closed;
    gboolean reply_ready;
    guint64 reply_id;
    guint8 reply_status;
    guint8 reply_data[BENCH_PEER_MAX_REPLY];
    int reply_len;
    guint64 next_id;
};

static void
bench_peer_log(void *priv, int level, const char *msg)
{
    BenchPeer *peer = priv;
    if (level <= usbredirparser_warning)
        g_printerr("%s: usbredir: %s\n", peer->label, msg);
}

static int
bench_peer_read(void *priv, uint8_t *data, int count)
{
    BenchPeer *peer = priv;
    ssize_t n = recv(peer->fd, data, (size_t)count, MSG_DONTWAIT);
    if (n > 0)
        return (int)n;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR))
        return 0;
    peer->closed = TRUE;
    return -1;
}

static int
bench_peer_write(void *priv, uint8_t *data, int count)
{
    BenchPeer *peer = priv;
    ssize_t n = send(peer->fd, data, (size_t)count, MSG_DONTWAIT | MSG_NOSIGNAL);
    if (n >= 0)
        return (int)n;
    if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)
        return 0;
    peer->closed = TRUE;
    return -1;
}

static void
bench_peer_device_connect(void *priv, struct usb_redir_device_connect_header *h)
{
    BenchPeer *peer = priv;
    peer->connected = TRUE;
}

static void
bench_peer_interface_info(void *priv, struct usb_redir_interface_info_header *h)
{
    BenchPeer *peer = priv;
    peer->interfaces_seen = TRUE;
}

static void
bench_peer_device_disconnect(void *priv)
{
    BenchPeer *peer = priv;
    peer->connected = FALSE;
    peer->interfaces_seen = FALSE;
}

static void
bench_peer_control_packet(void *priv, uint64_t id, struct usb_redir_control_packet_header *h,
                          uint8_t *data, int data_len)
{
    BenchPeer *peer = priv;
    peer->reply_ready = TRUE;
    peer->reply_id = id;
    peer->reply_status = h->status;
    peer->reply_len = MIN(data_len, BENCH_PEER_MAX_REPLY);
    if (data_len > 0)
        memcpy(peer->reply_data, data, (size_t)peer->reply_len);
    usbredirparser_free_packet_data(peer->parser, data);
}

/* usbredirparser calls every callback unchecked: the unused ones need a body. */
static void
bench_peer_ignore_ep_info(void *priv, struct usb_redir_ep_info_header *h)
{
}

static void
bench_peer_ignore_hello(void *priv, struct usb_redir_hello_header *h)
{
}

static void
bench_peer_ignore_void(void *priv)
{
}

#define BENCH_PEER_IGNORE_STATUS(name, header)                                                     \
    static void bench_peer_ignore_##name(void *priv, uint64_t id, struct header *h)                \
    {                                                                                              \
    }
BENCH_PEER_IGNORE_STATUS(configuration_status, usb_redir_configuration_status_header)
BENCH_PEER_IGNORE_STATUS(alt_setting_status, usb_redir_alt_setting_status_header)
BENCH_PEER_IGNORE_STATUS(iso_stream_status, usb_redir_iso_stream_status_header)
BENCH_PEER_IGNORE_STATUS(interrupt_receiving_status, usb_redir_interrupt_receiving_status_header)
BENCH_PEER_IGNORE_STATUS(bulk_streams_status, usb_redir_bulk_streams_status_header)
BENCH_PEER_IGNORE_STATUS(bulk_receiving_status, usb_redir_bulk_receiving_status_header)

#define BENCH_PEER_IGNORE_DATA(name, header)                                                       \
    static void bench_peer_ignore_##name(void *priv, uint64_t id, struct header *h, uint8_t *data, \
                                         int data_len)                                             \
    {                                                                                              \
        BenchPeer *peer = priv;                                                                    \
        usbredirparser_free_packet_data(peer->parser, data);                                       \
    }
BENCH_PEER_IGNORE_DATA(bulk_packet, usb_redir_bulk_packet_header)
BENCH_PEER_IGNORE_DATA(iso_packet, usb_redir_iso_packet_header)
BENCH_PEER_IGNORE_DATA(interrupt_packet, usb_redir_interrupt_packet_header)
BENCH_PEER_IGNORE_DATA(buffered_bulk_packet, usb_redir_buffered_bulk_packet_header)

BenchPeer *
bench_peer_new(int fd, const gchar *label)
{
    BenchPeer *peer = g_new0(BenchPeer, 1);
    uint32_t caps[USB_REDIR_CAPS_SIZE] = {0};
    struct usbredirparser *p;

    peer->fd = fd;
    peer->label = g_strdup(label);
    fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
    p = peer->parser = usbredirparser_create();
    p->priv = peer;
    p->log_func = bench_peer_log;
    p->read_func = bench_peer_read;
    p->write_func = bench_peer_write;
    p->device_connect_func = bench_peer_device_connect;
    p->device_disconnect_func = bench_peer_device_disconnect;
    p->interface_info_func = bench_peer_interface_info;
    p->control_packet_func = bench_peer_control_packet;
    p->ep_info_func = bench_peer_ignore_ep_info;
    p->hello_func = bench_peer_ignore_hello;
    p->reset_func = bench_peer_ignore_void;
    p->device_disconnect_ack_func = bench_peer_ignore_void;
    p->configuration_status_func = bench_peer_ignore_configuration_status;
    p->alt_setting_status_func = bench_peer_ignore_alt_setting_status;
    p->iso_stream_status_func = bench_peer_ignore_iso_stream_status;
    p->interrupt_receiving_status_func = bench_peer_ignore_interrupt_receiving_status;
    p->bulk_streams_status_func = bench_peer_ignore_bulk_streams_status;
    p->bulk_receiving_status_func = bench_peer_ignore_bulk_receiving_status;
    p->bulk_packet_func = bench_peer_ignore_bulk_packet;
    p->iso_packet_func = bench_peer_ignore_iso_packet;
    p->interrupt_packet_func = bench_peer_ignore_interrupt_packet;
    p->buffered_bulk_packet_func = bench_peer_ignore_buffered_bulk_packet;
    /* the capabilities QEMU 7.2's usb-redir announces that matter here */
    usbredirparser_caps_set_cap(caps, usb_redir_cap_connect_device_version);
    usbredirparser_caps_set_cap(caps, usb_redir_cap_ep_info_max_packet_size);
    usbredirparser_caps_set_cap(caps, usb_redir_cap_64bits_ids);
    usbredirparser_caps_set_cap(caps, usb_redir_cap_32bits_bulk_length);
    usbredirparser_init(p, "usbgw-bench-peer", caps, USB_REDIR_CAPS_SIZE, 0);
    usbredirparser_do_write(p);
    return peer;
}

void
bench_peer_free(BenchPeer *peer)
{
    if (peer == NULL)
        return;
    usbredirparser_destroy(peer->parser);
    close(peer->fd);
    g_free(peer->label);
    g_free(peer);
}

const gchar *
bench_peer_get_label(BenchPeer *peer)
{
    return peer->label;
}

gboolean
bench_peer_is_connected(BenchPeer *peer)
{
    return peer->connected && peer->interfaces_seen;
}

static void
bench_peer_set_closed_error(BenchPeer *peer, GError **error)
{
    g_set_error(error, G_IO_ERROR, G_IO_ERROR_CONNECTION_CLOSED, "%s: the connection closed",
                peer->label);
}

/* Handles what poll() reported for one peer. FALSE once it is closed. */
static gboolean
bench_peer_handle(BenchPeer *peer, short revents)
{
    if (revents & POLLOUT)
        usbredirparser_do_write(peer->parser);
    if (revents & (POLLIN | POLLHUP | POLLERR)) {
        if (usbredirparser_do_read(peer->parser) != 0)
            peer->closed = TRUE;
    }
    return !peer->closed;
}

gboolean
bench_peers_serve(BenchPeer **peers, guint n_peers, gint64 timeout_us, gboolean until_connected,
                  GError **error)
{
    g_autofree struct pollfd *pfds = g_new0(struct pollfd, n_peers);
    gint64 deadline = g_get_monotonic_time() + timeout_us;

    for (;;) {
        gboolean all_connected = TRUE;
        gint64 left = deadline - g_get_monotonic_time();

        for (guint i = 0; i < n_peers; i++) {
            if (peers[i]->closed) {
                bench_peer_set_closed_error(peers[i], error);
                return FALSE;
            }
            all_connected = all_connected && bench_peer_is_connected(peers[i]);
            pfds[i].fd = peers[i]->fd;
            pfds[i].events = POLLIN;
            if (usbredirparser_has_data_to_write(peers[i]->parser))
                pfds[i].events |= POLLOUT;
            pfds[i].revents = 0;
        }
        if (until_connected && all_connected)
            return TRUE;
        if (left <= 0) {
            if (!until_connected)
                return TRUE;
            for (guint i = 0; i < n_peers; i++) {
                if (!bench_peer_is_connected(peers[i])) {
                    g_set_error(error, G_IO_ERROR, G_IO_ERROR_TIMED_OUT,
                                "%s: no device_connect within %.1f s", peers[i]->label,
                                (gdouble)timeout_us / G_USEC_PER_SEC);
                    break;
                }
            }
            return FALSE;
        }
        if (poll(pfds, n_peers, (int)MIN(left / 1000 + 1, 100)) < 0 && errno != EINTR) {
            g_set_error(error, G_IO_ERROR, g_io_error_from_errno(errno), "poll: %s",
                        g_strerror(errno));
            return FALSE;
        }
        for (guint i = 0; i < n_peers; i++)
            bench_peer_handle(peers[i], pfds[i].revents);
    }
}

gboolean
bench_peer_wait_connected(BenchPeer *peer, gint64 timeout_us, GError **error)
{
    return bench_peers_serve(&peer, 1, timeout_us, TRUE, error);
}

/* Sends one control packet and serves the socket until its reply. */
static gboolean
bench_peer_control(BenchPeer *peer, guint8 requesttype, guint8 request, const guint8 *data,
                   guint16 length, gint64 deadline, GError **error)
{
    struct usb_redir_control_packet_header h = {
        .endpoint = requesttype & 0x80,
        .request = request,
        .requesttype = requesttype,
        .length = length,
    };
    guint64 id = peer->next_id++;
    gboolean in = (requesttype & 0x80) != 0;

    peer->reply_ready = FALSE;
    usbredirparser_send_control_packet(peer->parser, id, &h, in ? NULL : (uint8_t *)data,
                                       in ? 0 : length);
    usbredirparser_do_write(peer->parser);
    while (!peer->reply_ready) {
        struct pollfd pfd = {.fd = peer->fd, .events = POLLIN};
        gint64 left = deadline - g_get_monotonic_time();

        if (peer->closed || !peer->connected) {
            g_set_error(error, G_IO_ERROR, G_IO_ERROR_CONNECTION_CLOSED,
                        "%s: the connection or the device went away", peer->label);
            return FALSE;
        }
        if (left <= 0) {
            g_set_error(error, G_IO_ERROR, G_IO_ERROR_TIMED_OUT,
                        "%s: no reply to control request 0x%02x", peer->label, request);
            return FALSE;
        }
        if (usbredirparser_has_data_to_write(peer->parser))
            pfd.events |= POLLOUT;
        if (poll(&pfd, 1, (int)MIN(left / 1000 + 1, 100)) < 0 && errno != EINTR)
            continue;
        bench_peer_handle(peer, pfd.revents);
    }
    if (peer->reply_id != id || peer->reply_status != usb_redir_success) {
        g_set_error(error, G_IO_ERROR, G_IO_ERROR_FAILED,
                    "%s: control request 0x%02x: status %u (id %" G_GUINT64_FORMAT
                    ", expected %" G_GUINT64_FORMAT ")",
                    peer->label, request, peer->reply_status, peer->reply_id, id);
        return FALSE;
    }
    return TRUE;
}

gboolean
bench_peer_challenge(BenchPeer *peer, const guint8 challenge[USBGW_KEY_LEN],
                     guint8 response[USBGW_KEY_LEN], gint64 *op_ns, gint64 *in_ns,
                     gint64 timeout_us, GError **error)
{
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
    if (peer->reply_len != USBGW_KEY_LEN) {
        g_set_error(error, G_IO_ERROR, G_IO_ERROR_FAILED, "%s: response of %d bytes, not %d",
                    peer->label, peer->reply_len, USBGW_KEY_LEN);
        return FALSE;
    }
    memcpy(response, peer->reply_data, USBGW_KEY_LEN);
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
    g_clear_pointer(&t->peer, bench_peer_free);
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
