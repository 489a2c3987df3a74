/* spice-test-peer: plays usbgwd's side of usbgw-spice-worker's socketpair
 * for the tests.
 *
 * Starts the worker with one end of a socketpair, speaks the frames of
 * spice/sw-frame.h, and runs one buffered tests/usbredir-peer (the guest
 * role, as QEMU or usbgwd's proxy would) per open channel: it sends the
 * hello the client's usbredirhost waits for, and reports what the client
 * sends.
 * One line per event on stdout:
 *
 *   READY version=V channels=N
 *   OPEN CH | CLOSE CH
 *   HELLO CH VERSION-STRING
 *   INTERFACE_INFO CH count=N class=CC
 *   EP_INFO CH
 *   DEVICE_CONNECT CH VVVV:PPPP
 *   DEVICE_DISCONNECT CH
 *   CLIENT LOGIN|LEFT|REFUSED ADDRESS
 *   WORKER_EXIT STATUS
 *
 * Commands on stdin: "restart MS" (close the socketpair, wait for the
 * worker to exit, start a new one after MS milliseconds), "ticket TEXT"
 * (send a TICKET frame). At EOF on stdin it closes the socketpair, waits
 * for the worker and exits 0 if the worker exited 0. */
#include <errno.h>
#include <gio/gio.h>
#include <gio/gunixinputstream.h>
#include <glib-unix.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#include "sw-frame.h"
#include "usbredir-peer.h"

#define PEER_EXIT_FAILURE      1
#define PEER_TICKET_LIFETIME_S 600

typedef struct Peer Peer;

typedef struct {
    Peer *peer; /* not owned */
    guint index;
    UsbredirPeer *usbredir; /* owned, nullable: while open */
} PeerChannel;

struct Peer {
    GMainLoop *loop;     /* owned */
    GSubprocess *worker; /* owned, nullable */
    int fd;              /* our end of the socketpair, -1 when closed */
    guint fd_watch;      /* g_unix_fd_add id */
    GByteArray *in;      /* owned: frames from the worker */
    PeerChannel channels[SW_FRAME_MAX_CHANNELS];
    guint n_channels;
    char **worker_argv;             /* owned */
    char *ticket;                   /* owned, nullable: sent as TICKET after READY */
    GDataInputStream *stdin_stream; /* owned */
    gboolean stdin_eof;
    int exit_status;
};

G_GNUC_PRINTF(1, 2)
static void
peer_say(const char *format, ...)
{
    va_list args;

    va_start(args, format);
    vprintf(format, args);
    va_end(args);
    putchar('\n');
    fflush(stdout);
}

static void
peer_send(Peer *peer, SwFrameType type, guint channel, const guint8 *payload, gsize length)
{
    guint8 header[SW_FRAME_HEADER_SIZE];
    struct iovec iov[2];
    gsize total = SW_FRAME_HEADER_SIZE + length;
    gsize done = 0;

    if (peer->fd < 0)
        return;
    sw_frame_header_pack(header, type, channel, (guint32)length);
    while (done < total) {
        ssize_t n;

        if (done < SW_FRAME_HEADER_SIZE) {
            iov[0].iov_base = header + done;
            iov[0].iov_len = SW_FRAME_HEADER_SIZE - done;
            iov[1].iov_base = (void *)payload;
            iov[1].iov_len = length;
            n = writev(peer->fd, iov, length > 0 ? 2 : 1);
        } else {
            n = write(peer->fd, payload + (done - SW_FRAME_HEADER_SIZE), total - done);
        }
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            g_printerr("spice-test-peer: write to worker: %s\n", g_strerror(errno));
            return;
        }
        done += (gsize)n;
    }
}

static void
peer_channel_send(UsbredirPeer *usbredir, const guint8 *data, gsize length, gpointer user_data)
{
    PeerChannel *channel = user_data;
    gsize offset = 0;

    while (offset < length) {
        gsize chunk = MIN(length - offset, SW_FRAME_MAX_PAYLOAD);

        peer_send(channel->peer, SW_FRAME_DATA, channel->index, data + offset, chunk);
        offset += chunk;
    }
}

static void
peer_channel_hello(UsbredirPeer *usbredir, const struct usb_redir_hello_header *hello,
                   gpointer user_data)
{
    PeerChannel *channel = user_data;

    peer_say("HELLO %u %.64s", channel->index, hello->version);
}

static void
peer_channel_device_connect(UsbredirPeer *usbredir,
                            const struct usb_redir_device_connect_header *connect,
                            gpointer user_data)
{
    PeerChannel *channel = user_data;

    peer_say("DEVICE_CONNECT %u %04x:%04x", channel->index, connect->vendor_id,
             connect->product_id);
}

static void
peer_channel_device_disconnect(UsbredirPeer *usbredir, gpointer user_data)
{
    PeerChannel *channel = user_data;

    peer_say("DEVICE_DISCONNECT %u", channel->index);
}

static void
peer_channel_interface_info(UsbredirPeer *usbredir,
                            const struct usb_redir_interface_info_header *info, gpointer user_data)
{
    PeerChannel *channel = user_data;

    peer_say("INTERFACE_INFO %u count=%u class=%02x", channel->index, info->interface_count,
             info->interface_count > 0 ? info->interface_class[0] : 0);
}

static void
peer_channel_ep_info(UsbredirPeer *usbredir, const struct usb_redir_ep_info_header *ep_info,
                     gpointer user_data)
{
    PeerChannel *channel = user_data;

    peer_say("EP_INFO %u", channel->index);
}

/* A new usbredir stream: the hello goes out at once. */
static void
peer_channel_open(PeerChannel *channel)
{
    static const UsbredirPeerEvents events = {
        .hello = peer_channel_hello,
        .device_connect = peer_channel_device_connect,
        .device_disconnect = peer_channel_device_disconnect,
        .interface_info = peer_channel_interface_info,
        .ep_info = peer_channel_ep_info,
    };
    g_autofree gchar *label = g_strdup_printf("spice-test-peer: channel %u", channel->index);
    const UsbredirPeerConfig config = {
        .role = USBREDIR_PEER_GUEST,
        .version = "usbgw-spice-test-peer",
        .label = label,
        .log_level = usbredirparser_warning,
    };

    g_clear_pointer(&channel->usbredir, usbredir_peer_free);
    channel->usbredir = usbredir_peer_new_buffered(&config, peer_channel_send, &events, channel);
}

static void
peer_channel_data(PeerChannel *channel, const guint8 *data, gsize length)
{
    g_autoptr(GError) error = NULL;

    if (channel->usbredir == NULL) {
        g_printerr("spice-test-peer: %zu bytes on channel %u, which is not open\n", length,
                   channel->index);
        return;
    }
    if (!usbredir_peer_feed(channel->usbredir, data, length, &error))
        g_printerr("%s\n", error->message);
}

static gboolean
peer_on_frame(Peer *peer, const SwFrameHeader *header, const guint8 *payload, GError **error)
{
    PeerChannel *channel;

    if (header->type == SW_FRAME_READY) {
        if (header->length != 8) {
            g_set_error(error, G_IO_ERROR, G_IO_ERROR_INVALID_DATA, "READY of %u bytes",
                        header->length);
            return FALSE;
        }
        peer->n_channels = MIN(sw_frame_get_u32(payload + 4), SW_FRAME_MAX_CHANNELS);
        peer_say("READY version=%u channels=%u", sw_frame_get_u32(payload), peer->n_channels);
        if (peer->ticket != NULL) {
            gsize length = strlen(peer->ticket);
            g_autofree guint8 *frame = g_malloc(4 + length);

            sw_frame_put_u32(frame, PEER_TICKET_LIFETIME_S);
            memcpy(frame + 4, peer->ticket, length);
            peer_send(peer, SW_FRAME_TICKET, 0, frame, 4 + length);
        }
        return TRUE;
    }
    if (header->type == SW_FRAME_CLIENT) {
        static const char *const events[] = {
            [SW_CLIENT_LOGIN] = "LOGIN",
            [SW_CLIENT_LEFT] = "LEFT",
            [SW_CLIENT_REFUSED] = "REFUSED",
        };

        if (header->length < 2 || payload[0] < SW_CLIENT_LOGIN || payload[0] > SW_CLIENT_REFUSED) {
            g_set_error(error, G_IO_ERROR, G_IO_ERROR_INVALID_DATA, "CLIENT frame of %u bytes",
                        header->length);
            return FALSE;
        }
        peer_say("CLIENT %s %.*s", events[payload[0]], (int)header->length - 1,
                 (const char *)payload + 1);
        return TRUE;
    }
    if (header->channel >= peer->n_channels) {
        g_set_error(error, G_IO_ERROR, G_IO_ERROR_INVALID_DATA, "frame for channel %u",
                    header->channel);
        return FALSE;
    }
    channel = &peer->channels[header->channel];
    switch (header->type) {
    case SW_FRAME_OPEN:
        peer_say("OPEN %u", channel->index);
        peer_channel_open(channel);
        return TRUE;
    case SW_FRAME_CLOSE:
        peer_say("CLOSE %u", channel->index);
        g_clear_pointer(&channel->usbredir, usbredir_peer_free);
        peer_send(peer, SW_FRAME_CLOSE, channel->index, NULL, 0);
        return TRUE;
    case SW_FRAME_DATA:
        peer_channel_data(channel, payload, header->length);
        return TRUE;
    default:
        g_set_error(error, G_IO_ERROR, G_IO_ERROR_INVALID_DATA, "frame type %u from the worker",
                    header->type);
        return FALSE;
    }
}

static void peer_close_link(Peer *peer);

static gboolean
peer_on_readable(int fd, GIOCondition condition, gpointer user_data)
{
    Peer *peer = user_data;
    guint8 buffer[65536];
    ssize_t n = read(fd, buffer, sizeof(buffer));
    gsize offset = 0;

    if (n < 0 && errno == EINTR)
        return G_SOURCE_CONTINUE;
    if (n <= 0) {
        g_printerr("spice-test-peer: worker closed the socketpair\n");
        peer->fd_watch = 0;
        peer_close_link(peer);
        return G_SOURCE_REMOVE;
    }
    g_byte_array_append(peer->in, buffer, (guint)n);
    while (peer->in->len - offset >= SW_FRAME_HEADER_SIZE) {
        g_autoptr(GError) error = NULL;
        SwFrameHeader header;

        if (!sw_frame_header_unpack(peer->in->data + offset, &header, &error)) {
            g_printerr("spice-test-peer: bad frame: %s\n", error->message);
            peer->exit_status = PEER_EXIT_FAILURE;
            break;
        }
        if (peer->in->len - offset < SW_FRAME_HEADER_SIZE + header.length)
            break;
        if (!peer_on_frame(peer, &header, peer->in->data + offset + SW_FRAME_HEADER_SIZE, &error)) {
            g_printerr("spice-test-peer: %s\n", error->message);
            peer->exit_status = PEER_EXIT_FAILURE;
        }
        offset += SW_FRAME_HEADER_SIZE + header.length;
    }
    g_byte_array_remove_range(peer->in, 0, (guint)offset);
    return G_SOURCE_CONTINUE;
}

static void
peer_close_link(Peer *peer)
{
    g_clear_handle_id(&peer->fd_watch, g_source_remove);
    if (peer->fd >= 0)
        close(peer->fd);
    peer->fd = -1;
    g_byte_array_set_size(peer->in, 0);
    for (guint i = 0; i < SW_FRAME_MAX_CHANNELS; i++)
        g_clear_pointer(&peer->channels[i].usbredir, usbredir_peer_free);
}

static gboolean
peer_start_worker(Peer *peer, GError **error)
{
    g_autoptr(GSubprocessLauncher) launcher = g_subprocess_launcher_new(G_SUBPROCESS_FLAGS_NONE);
    int fds[2];

    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds) != 0) {
        g_set_error(error, G_IO_ERROR, g_io_error_from_errno(errno), "socketpair: %s",
                    g_strerror(errno));
        return FALSE;
    }
    g_subprocess_launcher_take_fd(launcher, fds[1], 3);
    peer->worker =
        g_subprocess_launcher_spawnv(launcher, (const char *const *)peer->worker_argv, error);
    if (peer->worker == NULL) {
        close(fds[0]);
        return FALSE;
    }
    peer->fd = fds[0];
    peer->fd_watch = g_unix_fd_add(peer->fd, G_IO_IN | G_IO_HUP | G_IO_ERR, peer_on_readable, peer);
    return TRUE;
}

static int
peer_wait_worker(Peer *peer)
{
    int status;

    if (peer->worker == NULL)
        return 0;
    g_subprocess_wait(peer->worker, NULL, NULL);
    status = g_subprocess_get_if_exited(peer->worker)
                 ? g_subprocess_get_exit_status(peer->worker)
                 : 128 + g_subprocess_get_term_sig(peer->worker);
    g_clear_object(&peer->worker);
    peer_say("WORKER_EXIT %d", status);
    return status;
}

static gboolean
peer_restart(gpointer user_data)
{
    Peer *peer = user_data;
    g_autoptr(GError) error = NULL;

    if (!peer_start_worker(peer, &error)) {
        g_printerr("spice-test-peer: %s\n", error->message);
        peer->exit_status = PEER_EXIT_FAILURE;
        g_main_loop_quit(peer->loop);
    }
    return G_SOURCE_REMOVE;
}

static void peer_read_command(Peer *peer);

static void
peer_on_command(GObject *source, GAsyncResult *result, gpointer user_data)
{
    Peer *peer = user_data;
    g_autoptr(GError) error = NULL;
    g_autofree char *line =
        g_data_input_stream_read_line_finish(G_DATA_INPUT_STREAM(source), result, NULL, &error);

    if (line == NULL) {
        peer->stdin_eof = TRUE;
        g_main_loop_quit(peer->loop);
        return;
    }
    if (g_str_has_prefix(line, "restart ")) {
        guint delay_ms = (guint)g_ascii_strtoull(line + 8, NULL, 10);

        peer_close_link(peer);
        if (peer_wait_worker(peer) != 0)
            peer->exit_status = PEER_EXIT_FAILURE;
        g_timeout_add(delay_ms, peer_restart, peer);
    } else if (g_str_has_prefix(line, "ticket ")) {
        gsize length = strlen(line + 7);
        g_autofree guint8 *frame = g_malloc(4 + length);

        sw_frame_put_u32(frame, PEER_TICKET_LIFETIME_S);
        memcpy(frame + 4, line + 7, length);
        peer_send(peer, SW_FRAME_TICKET, 0, frame, 4 + length);
    } else if (*line != '\0') {
        g_printerr("spice-test-peer: unknown command \"%s\"\n", line);
    }
    peer_read_command(peer);
}

static void
peer_read_command(Peer *peer)
{
    g_data_input_stream_read_line_async(peer->stdin_stream, G_PRIORITY_DEFAULT, NULL,
                                        peer_on_command, peer);
}

int
main(int argc, char **argv)
{
    g_autoptr(GOptionContext) context = NULL;
    g_autoptr(GError) error = NULL;
    g_autofree char *worker_path = NULL;
    g_autofree char *ticket_file = NULL;
    g_autofree char *user = NULL;
    g_autoptr(GPtrArray) worker_argv = g_ptr_array_new_with_free_func(g_free);
    g_autoptr(GInputStream) stdin_raw = NULL;
    Peer peer = {.fd = -1};
    int port = 0, channels = 4;
    const GOptionEntry entries[] = {
        {"worker", 0, 0, G_OPTION_ARG_FILENAME, &worker_path, "usbgw-spice-worker", "PATH"},
        {"port", 0, 0, G_OPTION_ARG_INT, &port, "Port for the worker", "PORT"},
        {"channels", 0, 0, G_OPTION_ARG_INT, &channels, "usbredir channels", "N"},
        {"ticket", 0, 0, G_OPTION_ARG_STRING, &peer.ticket, "Send this ticket after READY", "T"},
        {"ticket-file", 0, 0, G_OPTION_ARG_FILENAME, &ticket_file, "Pass to the worker", "F"},
        {"user", 0, 0, G_OPTION_ARG_STRING, &user, "Pass to the worker", "USER"},
        G_OPTION_ENTRY_NULL,
    };

    context = g_option_context_new("- plays usbgwd for usbgw-spice-worker");
    g_option_context_add_main_entries(context, entries, NULL);
    if (!g_option_context_parse(context, &argc, &argv, &error) || worker_path == NULL ||
        port <= 0) {
        g_printerr("spice-test-peer: %s\n",
                   error != NULL ? error->message : "--worker and --port are required");
        return 2;
    }
    g_ptr_array_add(worker_argv, g_strdup(worker_path));
    g_ptr_array_add(worker_argv, g_strdup("--fd=3"));
    g_ptr_array_add(worker_argv, g_strdup("--addr=127.0.0.1"));
    g_ptr_array_add(worker_argv, g_strdup_printf("--port=%d", port));
    g_ptr_array_add(worker_argv, g_strdup_printf("--channels=%d", channels));
    if (ticket_file != NULL)
        g_ptr_array_add(worker_argv, g_strdup_printf("--ticket-file=%s", ticket_file));
    if (user != NULL)
        g_ptr_array_add(worker_argv, g_strdup_printf("--user=%s", user));
    g_ptr_array_add(worker_argv, NULL);
    peer.worker_argv = (char **)g_ptr_array_free(g_steal_pointer(&worker_argv), FALSE);

    peer.loop = g_main_loop_new(NULL, FALSE);
    peer.in = g_byte_array_new();
    for (guint i = 0; i < SW_FRAME_MAX_CHANNELS; i++) {
        peer.channels[i].peer = &peer;
        peer.channels[i].index = i;
    }
    stdin_raw = g_unix_input_stream_new(STDIN_FILENO, FALSE);
    peer.stdin_stream = g_data_input_stream_new(stdin_raw);
    if (!peer_start_worker(&peer, &error)) {
        g_printerr("spice-test-peer: %s\n", error->message);
        return PEER_EXIT_FAILURE;
    }
    peer_read_command(&peer);
    g_main_loop_run(peer.loop);

    /* Closing the socketpair must make the worker exit 0. */
    peer_close_link(&peer);
    if (peer_wait_worker(&peer) != 0)
        peer.exit_status = PEER_EXIT_FAILURE;
    g_byte_array_unref(peer.in);
    g_object_unref(peer.stdin_stream);
    g_strfreev(peer.worker_argv);
    g_free(peer.ticket);
    g_main_loop_unref(peer.loop);
    return peer.exit_status;
}
