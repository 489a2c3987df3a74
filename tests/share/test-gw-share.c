/* GwShare with a fake worker: a device is lent (the share's proxy relays
 * it to a QEMU-role peer on the share's VM socket), then the share is
 * freed. gw_share_free() must call back nobody: no "return" event, no
 * ended(), in the free or after it; gw_share_list_lent() names the lent
 * device before.
 *
 * The fake worker is this program, run by gw_share_new() as the worker
 * ("--fd=3 …"): it hands its socketpair end to the test over a unix
 * socket (SCM_RIGHTS) and waits. The test then speaks the worker's frames
 * (sw-frame.h) itself: READY, OPEN, and the lending client's usbredir
 * bytes as DATA. */
#include <errno.h>
#include <gio/gio.h>
#include <gio/gunixconnection.h>
#include <gio/gunixsocketaddress.h>
#include <glib/gstdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "gw-share.h"
#include "sw-frame.h"
#include "usbredir-peer.h"

#define TEST_TIMEOUT_MS 10000
/* The fake worker finds where to send its socketpair end in --addr (the
 * share gives workers a cleared environment). */
#define TEST_WORKER_ADDR_ARG "--addr="
#define TEST_VID             0x0529
#define TEST_PID             0x0001

/* ---- the fake worker (a process of its own) ------------------------------ */

static int
fake_worker_main(const gchar *path)
{
    g_autoptr(GError) error = NULL;
    g_autoptr(GSocketClient) client = g_socket_client_new();
    g_autoptr(GSocketAddress) address = NULL;
    g_autoptr(GSocketConnection) connection = NULL;
    guint8 byte;

    address = g_unix_socket_address_new(path);
    connection = g_socket_client_connect(client, G_SOCKET_CONNECTABLE(address), NULL, &error);
    if (connection == NULL ||
        !g_unix_connection_send_fd(G_UNIX_CONNECTION(connection), 3, NULL, &error)) {
        g_printerr("fake worker: %s\n", error->message);
        return 1;
    }
    close(3);
    /* until the test closes its end or usbgwd's side sends SIGTERM */
    (void)g_input_stream_read(g_io_stream_get_input_stream(G_IO_STREAM(connection)), &byte, 1, NULL,
                              NULL);
    return 0;
}

/* ---- the test ------------------------------------------------------------- */

typedef struct {
    gchar *dir;             /* owned: temporary directory */
    GSocket *listener;      /* owned: where the fake worker connects */
    GSocketConnection *fw;  /* owned: the fake worker's connection */
    int worker_fd;          /* owned: the worker's end of usbgwd's socketpair */
    GByteArray *from_share; /* owned: frames from usbgwd's end, not yet whole */
    GwShare *share;         /* owned, nullable */
    UsbredirPeer *client;   /* owned, nullable: the lending client (host role) */
    UsbredirPeer *qemu;     /* owned, nullable: QEMU's usb-redir (guest role) */
    guint tickets;          /* TICKET and DISCONNECT frames seen */
    guint events;           /* event() calls */
    guint lends;
    guint returns;
    guint ended;
    gboolean freeing;  /* inside gw_share_free() */
    guint during_free; /* callbacks from inside gw_share_free() */
} Harness;

static gboolean
harness_check(GwShare *share, const PolicyDevice *device, gchar **rule, gchar **reason,
              gpointer user_data)
{
    *rule = g_strdup("test:1");
    return TRUE;
}

static void
harness_event(GwShare *share, const gchar *event, const PolicyDevice *device, const gchar *rule,
              const gchar *reason, gpointer user_data)
{
    Harness *h = user_data;

    g_test_message("share event %s (%s)", event, reason != NULL ? reason : "");
    h->events++;
    h->during_free += h->freeing;
    if (g_strcmp0(event, "lend") == 0)
        h->lends++;
    else if (g_strcmp0(event, "return") == 0)
        h->returns++;
}

static void
harness_ended(GwShare *share, const gchar *reason, gpointer user_data)
{
    Harness *h = user_data;

    g_test_message("share ended: %s", reason);
    h->ended++;
    h->during_free += h->freeing;
}

/* The client's usbredir bytes go to usbgwd as DATA on channel 0. */
static void
harness_client_send(UsbredirPeer *peer, const guint8 *data, gsize length, gpointer user_data)
{
    Harness *h = usbredir_peer_get_user_data(peer);

    while (length > 0) {
        gsize chunk = MIN(length, SW_FRAME_MAX_PAYLOAD);
        guint8 header[SW_FRAME_HEADER_SIZE];

        sw_frame_header_pack(header, SW_FRAME_DATA, 0, (guint32)chunk);
        g_assert_cmpint(send(h->worker_fd, header, sizeof(header), MSG_NOSIGNAL), ==,
                        (ssize_t)sizeof(header));
        g_assert_cmpint(send(h->worker_fd, data, chunk, MSG_NOSIGNAL), ==, (ssize_t)chunk);
        data += chunk;
        length -= chunk;
    }
}

static void
harness_send_frame(Harness *h, SwFrameType type, const guint8 *payload, guint32 length)
{
    guint8 header[SW_FRAME_HEADER_SIZE];

    sw_frame_header_pack(header, type, 0, length);
    g_assert_cmpint(send(h->worker_fd, header, sizeof(header), MSG_NOSIGNAL), ==,
                    (ssize_t)sizeof(header));
    if (length > 0)
        g_assert_cmpint(send(h->worker_fd, payload, length, MSG_NOSIGNAL), ==, (ssize_t)length);
}

/* Takes the whole frames usbgwd's end wrote; DATA goes to the client. */
static void
harness_read_frames(Harness *h)
{
    guint8 buffer[SW_FRAME_MAX_PAYLOAD];
    ssize_t n;
    gsize offset = 0;

    while ((n = recv(h->worker_fd, buffer, sizeof(buffer), MSG_DONTWAIT)) > 0)
        g_byte_array_append(h->from_share, buffer, (guint)n);
    while (h->from_share->len - offset >= SW_FRAME_HEADER_SIZE) {
        g_autoptr(GError) error = NULL;
        SwFrameHeader header;
        const guint8 *payload = h->from_share->data + offset + SW_FRAME_HEADER_SIZE;

        g_assert_true(sw_frame_header_unpack(h->from_share->data + offset, &header, &error));
        if (h->from_share->len - offset - SW_FRAME_HEADER_SIZE < header.length)
            break;
        if (header.type == SW_FRAME_TICKET || header.type == SW_FRAME_DISCONNECT)
            h->tickets++;
        else if (header.type == SW_FRAME_DATA && h->client != NULL) {
            g_assert_true(usbredir_peer_feed(h->client, payload, header.length, &error));
            g_assert_no_error(error);
        }
        offset += SW_FRAME_HEADER_SIZE + header.length;
    }
    g_byte_array_remove_range(h->from_share, 0, (guint)offset);
}

typedef gboolean (*HarnessDone)(Harness *h);

/* Runs usbgwd's side (the main context), the frames and QEMU's peer until
 * @done. */
static void
harness_run_until(Harness *h, HarnessDone done)
{
    gint64 deadline = g_get_monotonic_time() + TEST_TIMEOUT_MS * G_TIME_SPAN_MILLISECOND;

    while (!done(h)) {
        g_assert_cmpint(g_get_monotonic_time(), <, deadline);
        while (g_main_context_iteration(NULL, FALSE))
            ;
        harness_read_frames(h);
        if (h->client != NULL)
            (void)usbredir_peer_flush(h->client);
        if (h->qemu != NULL)
            (void)usbredir_peer_io(h->qemu);
        g_usleep(2 * G_TIME_SPAN_MILLISECOND);
    }
}

static gboolean
done_ticket(Harness *h)
{
    return h->tickets > 0;
}

static gboolean
done_lent(Harness *h)
{
    return h->lends > 0 && usbredir_peer_is_connected(h->qemu);
}

static gboolean
done_client_hello(Harness *h)
{
    return usbredir_peer_has_hello(h->client);
}

static gboolean
done_qemu_closed(Harness *h)
{
    return usbredir_peer_is_closed(h->qemu);
}

static void
harness_accept_worker(Harness *h)
{
    g_autoptr(GError) error = NULL;
    g_autoptr(GSocket) socket = NULL;

    g_socket_set_timeout(h->listener, TEST_TIMEOUT_MS / 1000);
    socket = g_socket_accept(h->listener, NULL, &error);
    g_assert_no_error(error);
    h->fw = g_socket_connection_factory_create_connection(socket);
    h->worker_fd = g_unix_connection_receive_fd(G_UNIX_CONNECTION(h->fw), NULL, &error);
    g_assert_no_error(error);
    g_assert_cmpint(h->worker_fd, >=, 0);
}

static void
harness_init(Harness *h, const gchar *program)
{
    static const GwShareCallbacks callbacks = {
        .check = harness_check,
        .event = harness_event,
        .ended = harness_ended,
    };
    g_autoptr(GError) error = NULL;
    g_autoptr(GSocketAddress) address = NULL;
    g_autofree gchar *worker_socket = NULL;
    g_autofree gchar *socket_dir = NULL;
    GwShareOptions options = {
        .vm = "test-vm",
        .user = "alice",
        .ttl_s = 60,
        .socket_uid = getuid(),
        .socket_gid = (gid_t)-1,
        .worker =
            {
                .program = program,
                .port = 5999, /* the fake worker binds nothing */
                .channels = 1,
            },
    };

    memset(h, 0, sizeof(*h));
    h->worker_fd = -1;
    h->from_share = g_byte_array_new();
    h->dir = g_dir_make_tmp("test-gw-share-XXXXXX", &error);
    g_assert_no_error(error);
    worker_socket = g_build_filename(h->dir, "worker.sock", NULL);
    h->listener =
        g_socket_new(G_SOCKET_FAMILY_UNIX, G_SOCKET_TYPE_STREAM, G_SOCKET_PROTOCOL_DEFAULT, &error);
    g_assert_no_error(error);
    address = g_unix_socket_address_new(worker_socket);
    g_assert_true(g_socket_bind(h->listener, address, TRUE, &error));
    g_assert_true(g_socket_listen(h->listener, &error));
    options.worker.address = worker_socket; /* the fake worker's --addr */

    socket_dir = g_build_filename(h->dir, "vm", "test-vm", NULL);
    options.socket_dir = socket_dir;
    h->share = gw_share_new(&options, &callbacks, h, &error);
    g_assert_no_error(error);
    g_assert_nonnull(h->share);
    harness_accept_worker(h);
}

/* The worker is READY, QEMU waits on the VM socket, a client opens channel
 * 0 and lends a device that the check allows. */
static void
harness_lend(Harness *h)
{
    static const UsbredirPeerConfig qemu_config = {
        .role = USBREDIR_PEER_GUEST,
        .version = "test-qemu",
        .caps = USBREDIR_PEER_CAP_FILTER | USBREDIR_PEER_CAP_DEVICE_DISCONNECT_ACK,
    };
    static const UsbredirPeerConfig client_config = {
        .role = USBREDIR_PEER_HOST,
        .version = "test-client",
        .caps = USBREDIR_PEER_CAP_FILTER | USBREDIR_PEER_CAP_DEVICE_DISCONNECT_ACK,
    };
    const gchar *const *paths = gw_share_get_socket_paths(h->share);
    struct sockaddr_un sun = {.sun_family = AF_UNIX};
    struct usb_redir_interface_info_header interfaces = {.interface_count = 1};
    struct usb_redir_ep_info_header endpoints = {0};
    struct usb_redir_device_connect_header device_connect = {
        .speed = usb_redir_speed_full,
        .device_class = 0xff,
        .vendor_id = TEST_VID,
        .product_id = TEST_PID,
        .device_version_bcd = 0x0100,
    };
    guint8 ready[8];
    struct usbredirparser *parser;
    int qemu_fd;

    sw_frame_put_u32(ready, SW_FRAME_VERSION);
    sw_frame_put_u32(ready + 4, 1);
    harness_send_frame(h, SW_FRAME_READY, ready, sizeof(ready));
    harness_run_until(h, done_ticket);

    /* QEMU connects to the share's VM socket and waits */
    g_assert_nonnull(paths[0]);
    g_assert_cmpuint(strlen(paths[0]), <, sizeof(sun.sun_path));
    strcpy(sun.sun_path, paths[0]);
    qemu_fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    g_assert_cmpint(connect(qemu_fd, (struct sockaddr *)&sun, sizeof(sun)), ==, 0);
    h->qemu = usbredir_peer_new(qemu_fd, &qemu_config, NULL, h);

    /* a client opens channel 0: the share's proxy starts */
    harness_send_frame(h, SW_FRAME_OPEN, NULL, 0);
    h->client = usbredir_peer_new_buffered(&client_config, harness_client_send, NULL, h);
    harness_run_until(h, done_client_hello);

    /* the client's device: HID interface 0, ep0 and interrupt IN 0x81 */
    interfaces.interface[0] = 0;
    interfaces.interface_class[0] = 0x03;
    memset(endpoints.type, usb_redir_type_invalid, sizeof(endpoints.type));
    endpoints.type[0] = endpoints.type[16] = usb_redir_type_control;
    endpoints.max_packet_size[0] = endpoints.max_packet_size[16] = 64;
    endpoints.type[17] = usb_redir_type_interrupt;
    endpoints.interval[17] = 10;
    endpoints.max_packet_size[17] = 64;
    parser = usbredir_peer_get_parser(h->client);
    usbredirparser_send_interface_info(parser, &interfaces);
    usbredirparser_send_ep_info(parser, &endpoints);
    usbredirparser_send_device_connect(parser, &device_connect);
    harness_run_until(h, done_lent);
}

static void
harness_clear(Harness *h)
{
    g_clear_pointer(&h->share, gw_share_free);
    g_clear_pointer(&h->client, usbredir_peer_free);
    g_clear_pointer(&h->qemu, usbredir_peer_free);
    if (h->worker_fd >= 0)
        close(h->worker_fd);
    g_clear_object(&h->fw);
    g_clear_object(&h->listener);
    g_byte_array_unref(h->from_share);
    if (h->dir != NULL) {
        g_autofree gchar *worker_socket = g_build_filename(h->dir, "worker.sock", NULL);
        g_autofree gchar *vm_dir = g_build_filename(h->dir, "vm", "test-vm", NULL);
        g_autofree gchar *vms = g_build_filename(h->dir, "vm", NULL);

        g_unlink(worker_socket);
        g_rmdir(vm_dir);
        g_rmdir(vms);
        g_rmdir(h->dir);
        g_free(h->dir);
    }
}

static gchar *test_program; /* this program, run as the fake worker */

/* The lent device is listed while lent; freeing the share reports nothing
 * to its owner, neither inside gw_share_free() nor from the main loop
 * afterwards. */
static void
test_free_calls_back_nobody(void)
{
    Harness h;
    g_autoptr(GPtrArray) lent = NULL;
    const PolicyDevice *device;

    harness_init(&h, test_program);
    harness_lend(&h);
    g_assert_cmpuint(h.lends, ==, 1);
    g_assert_cmpuint(h.returns, ==, 0);

    lent = gw_share_list_lent(h.share);
    g_assert_cmpuint(lent->len, ==, 1);
    device = g_ptr_array_index(lent, 0);
    g_assert_cmphex(device->vendor_id, ==, TEST_VID);
    g_assert_cmphex(device->product_id, ==, TEST_PID);
    g_clear_pointer(&lent, g_ptr_array_unref);

    h.events = 0;
    h.freeing = TRUE;
    g_clear_pointer(&h.share, gw_share_free);
    h.freeing = FALSE;
    g_assert_cmpuint(h.during_free, ==, 0);
    /* nothing is left queued to call back later either */
    while (g_main_context_iteration(NULL, FALSE))
        ;
    g_assert_cmpuint(h.events, ==, 0);
    g_assert_cmpuint(h.ended, ==, 0);
    /* QEMU's connection went with the share */
    harness_run_until(&h, done_qemu_closed);
    harness_clear(&h);
}

int
main(int argc, char **argv)
{
    int status;

    for (int i = 1; i < argc; i++) {
        if (!g_str_equal(argv[i], "--fd=3"))
            continue;
        for (int j = 1; j < argc; j++) {
            if (g_str_has_prefix(argv[j], TEST_WORKER_ADDR_ARG))
                return fake_worker_main(argv[j] + strlen(TEST_WORKER_ADDR_ARG));
        }
        return 2;
    }
    g_test_init(&argc, &argv, NULL);
    test_program = g_file_read_link("/proc/self/exe", NULL);
    g_assert_nonnull(test_program);
    g_test_add_func("/gw-share/free/calls-back-nobody", test_free_calls_back_nobody);
    status = g_test_run();
    g_free(test_program);
    return status;
}
