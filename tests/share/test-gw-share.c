/* GwShare with a fake worker: a device is lent (the share's proxy relays
 * it to a QEMU-role peer on the share's VM socket), then the share is
 * freed. gw_share_free() must call back nobody: no "return" event, no
 * ended(), in the free or after it; gw_share_list_lent() names the lent
 * device before. And on a share socket, a process of QEMU's user that
 * is not the VM's QEMU (its pid not in the VM's pid file) is refused,
 * the one whose pid is there is taken as QEMU.
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
#include <grp.h>
#include <string.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
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
/* QEMU's user and group in the peer test (nobody, nogroup on Debian) */
#define TEST_QEMU_ID 65534

/* The last refusal of a peer the VM socket logged, "MESSAGE [vm USBGW_VM]". */
static gchar *refusal_logged;

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
    guint denies;
    guint ended;
    gboolean freeing;    /* inside gw_share_free() */
    guint during_free;   /* callbacks from inside gw_share_free() */
    gchar *deny_client;  /* owned, nullable: the last "deny"'s client */
    gchar *deny_reason;  /* owned, nullable: and its reason */
    gchar *ended_reason; /* owned, nullable */
} Harness;

/* share-max-life: long for the lending test, short for the one ending by it */
#define TEST_LONG_LIFE_S 3600
#define TEST_MAX_LIFE_S  1
static guint harness_max_life_s = TEST_LONG_LIFE_S;

static gboolean
harness_check(GwShare *share, const PolicyDevice *device, gchar **rule, gchar **reason,
              gpointer user_data)
{
    *rule = g_strdup("test:1");
    return TRUE;
}

static void
harness_event(GwShare *share, const gchar *event, const PolicyDevice *device, const gchar *rule,
              const gchar *reason, const gchar *client, gpointer user_data)
{
    Harness *h = user_data;

    g_test_message("share event %s (%s)", event, reason != NULL ? reason : "");
    h->events++;
    h->during_free += h->freeing;
    if (g_strcmp0(event, "lend") == 0) {
        h->lends++;
    } else if (g_strcmp0(event, "return") == 0) {
        h->returns++;
    } else if (g_strcmp0(event, "deny") == 0) {
        h->denies++;
        g_free(h->deny_client);
        h->deny_client = g_strdup(client);
        g_free(h->deny_reason);
        h->deny_reason = g_strdup(reason);
    }
}

static void
harness_ended(GwShare *share, const gchar *reason, gpointer user_data)
{
    Harness *h = user_data;

    g_test_message("share ended: %s", reason);
    h->ended++;
    g_free(h->ended_reason);
    h->ended_reason = g_strdup(reason);
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
done_deny(Harness *h)
{
    return h->deny_client != NULL;
}

static gboolean
done_ended(Harness *h)
{
    return h->ended > 0;
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

/* The test's own user plays QEMU's user (set in main); the peer test
 * changes it. */
static GwVmSocketAccess harness_access = {
    .uid = (uid_t)-1,
    .gid = (gid_t)-1,
    .check = GW_VM_PEER_CHECK_UID,
};

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
        .access = &harness_access,
        .max_life_s = harness_max_life_s,
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
    g_free(h->deny_client);
    g_free(h->deny_reason);
    g_free(h->ended_reason);
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

/* ---- only the VM's QEMU on a share socket ----------------------------------- */

static guint refused_count;
static gchar *refused_reason;

static void
harness_refused(const gchar *vm, const gchar *device_id, const gchar *path, const gchar *actor,
                const gchar *reason, gpointer user_data)
{
    g_test_message("refused %s on %s: %s", actor, path, reason);
    g_assert_cmpstr(vm, ==, "test-vm");
    g_assert_null(device_id);
    refused_count++;
    g_free(refused_reason);
    refused_reason = g_strdup(reason);
}

/* A child of QEMU's user that connects to @path when it reads a byte from
 * @go, then exits 0 when the connection is closed on it (refused). Only
 * async-signal-safe calls after fork (the test has GLib threads). */
static pid_t
spawn_qemu_user_peer(const gchar *path, int go)
{
    struct sockaddr_un sun = {.sun_family = AF_UNIX};
    pid_t child;

    g_assert_cmpuint(strlen(path), <, sizeof(sun.sun_path));
    strcpy(sun.sun_path, path);
    child = fork();
    g_assert_cmpint(child, >=, 0);
    if (child == 0) {
        char byte;
        int fd;

        if (setgroups(0, NULL) != 0 || setgid(TEST_QEMU_ID) != 0 || setuid(TEST_QEMU_ID) != 0 ||
            read(go, &byte, 1) != 1)
            _exit(3);
        fd = socket(AF_UNIX, SOCK_STREAM, 0);
        if (fd < 0 || connect(fd, (struct sockaddr *)&sun, sizeof(sun)) != 0)
            _exit(2);
        /* EOF: usbgwd closed it */
        _exit(read(fd, &byte, 1) == 0 ? 0 : 1);
    }
    return child;
}

static gboolean
child_exited(pid_t child, int *status)
{
    return waitpid(child, status, WNOHANG) == child;
}

/* Every VM's QEMU runs as QEMU's user: a process of that user whose pid is
 * not in the VM's pid file is refused on the share socket (the owner hears
 * of it), the one whose pid is there is taken as QEMU. */
static void
test_share_socket_only_the_vm_qemu(void)
{
    Harness h;
    g_autofree gchar *pid_file = NULL;
    g_autofree gchar *pid_text = NULL;
    g_autoptr(GError) error = NULL;
    const gchar *path;
    gint64 deadline;
    int go[2];
    int status = -1;
    pid_t child;

    if (geteuid() != 0) {
        g_test_skip("needs root (a peer of another user)");
        return;
    }
    harness_access.uid = TEST_QEMU_ID;
    harness_access.gid = TEST_QEMU_ID;
    harness_access.check = GW_VM_PEER_CHECK_PID_FILE;
    harness_access.refused = harness_refused;
    harness_init(&h, test_program);
    g_assert_cmpint(g_chmod(h.dir, 0755), ==, 0);
    path = gw_share_get_socket_paths(h.share)[0];
    harness_access.pid_file = g_build_filename(h.dir, "{vm}.pid", NULL);
    pid_file = g_build_filename(h.dir, "test-vm.pid", NULL);

    /* the VM's QEMU is some other process: refused */
    g_assert_true(g_file_set_contents(pid_file, "4194304\n", -1, &error));
    g_assert_cmpint(pipe(go), ==, 0);
    /* the refusal is a structured warning with the VM's journal field,
     * which g_test_expect_message() cannot catch: recorded instead */
    GLogLevelFlags fatal = g_log_set_always_fatal(G_LOG_FATAL_MASK);
    g_clear_pointer(&refusal_logged, g_free);
    child = spawn_qemu_user_peer(path, go[0]);
    g_assert_cmpint(write(go[1], "x", 1), ==, 1);
    deadline = g_get_monotonic_time() + TEST_TIMEOUT_MS * G_TIME_SPAN_MILLISECOND;
    while (!child_exited(child, &status)) {
        g_assert_cmpint(g_get_monotonic_time(), <, deadline);
        g_main_context_iteration(NULL, FALSE);
        g_usleep(2 * G_TIME_SPAN_MILLISECOND);
    }
    g_assert_true(WIFEXITED(status));
    g_assert_cmpint(WEXITSTATUS(status), ==, 0);
    g_log_set_always_fatal(fatal);
    g_assert_nonnull(refusal_logged);
    g_assert_true(g_pattern_match_simple("test-vm: refused a peer with uid 65534 pid * on "
                                         "*share0.sock: not vm \"test-vm\"'s QEMU (pid 4194304 "
                                         "in *test-vm.pid) [vm test-vm]",
                                         refusal_logged));
    g_assert_cmpuint(refused_count, ==, 1);
    g_assert_nonnull(strstr(refused_reason, "not vm \"test-vm\"'s QEMU (pid 4194304"));
    g_assert_false(gw_share_socket_has_qemu(h.share, path));

    /* the process whose pid libvirt wrote: QEMU */
    child = spawn_qemu_user_peer(path, go[0]);
    pid_text = g_strdup_printf("%d\n", (int)child);
    g_assert_true(g_file_set_contents(pid_file, pid_text, -1, &error));
    g_assert_cmpint(write(go[1], "x", 1), ==, 1);
    deadline = g_get_monotonic_time() + TEST_TIMEOUT_MS * G_TIME_SPAN_MILLISECOND;
    while (!gw_share_socket_has_qemu(h.share, path)) {
        g_assert_cmpint(g_get_monotonic_time(), <, deadline);
        g_assert_false(child_exited(child, &status));
        g_main_context_iteration(NULL, FALSE);
        g_usleep(2 * G_TIME_SPAN_MILLISECOND);
    }
    g_assert_cmpuint(refused_count, ==, 1);
    kill(child, SIGKILL);
    g_assert_cmpint(waitpid(child, &status, 0), ==, child);

    close(go[0]);
    close(go[1]);
    g_unlink(pid_file);
    gw_vm_socket_access_clear(&harness_access);
    harness_access.uid = getuid();
    harness_access.gid = (gid_t)-1;
    harness_access.check = GW_VM_PEER_CHECK_UID;
    harness_access.refused = NULL;
    g_clear_pointer(&refused_reason, g_free);
    harness_clear(&h);
}

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

static gboolean
done_client_request(Harness *h)
{
    return usbredir_peer_get_control(h->client)->id != 0;
}

static gboolean
done_denied(Harness *h)
{
    return h->denies > 0 && usbredir_peer_is_closed(h->qemu);
}

/* The lent device (class ff, HID interface) answers QEMU's
 * GET_DESCRIPTOR(device) with a keyboard's ids: the lending ends, QEMU
 * never gets the answer, and the audit trail has a "deny" naming why. */
static void
test_descriptor_denied_is_audited(void)
{
    static const guint8 keyboard[] = {0x12, 0x01, 0x00, 0x02, 0x00, 0x00, 0x00, 0x08, 0x6d,
                                      0x04, 0x1c, 0xc3, 0x00, 0x01, 0x01, 0x02, 0x00, 0x01};
    struct usb_redir_control_packet_header request = {
        .endpoint = 0x80, .request = 0x06, .requesttype = 0x80, .value = 0x0100, .length = 64};
    struct usb_redir_control_packet_header answer;
    const UsbredirPeerControl *asked;
    Harness h;

    harness_init(&h, test_program);
    harness_lend(&h);
    usbredirparser_send_control_packet(usbredir_peer_get_parser(h.qemu), 77, &request, NULL, 0);
    harness_run_until(&h, done_client_request);
    asked = usbredir_peer_get_control(h.client);
    answer = asked->header;
    answer.status = usb_redir_success;
    answer.length = sizeof(keyboard);
    usbredirparser_send_control_packet(usbredir_peer_get_parser(h.client), asked->id, &answer,
                                       (guint8 *)keyboard, sizeof(keyboard));
    harness_run_until(&h, done_denied);
    g_assert_cmpuint(h.denies, ==, 1);
    g_assert_nonnull(strstr(h.deny_reason, "device descriptor says 046d:c31c"));
    g_assert_cmpuint(h.returns, ==, 1);
    g_assert_cmpuint(usbredir_peer_get_control(h.qemu)->id, ==, 0);
    harness_clear(&h);
}

static void
harness_send_client(Harness *h, SwClientEvent event, const gchar *address)
{
    g_autofree guint8 *payload = g_malloc(1 + strlen(address));

    payload[0] = (guint8)event;
    memcpy(payload + 1, address, strlen(address));
    harness_send_frame(h, SW_FRAME_CLIENT, payload, (guint32)(1 + strlen(address)));
}

/* The worker reports a login, then a second client refused: the share
 * records a "deny" naming the refused client (client) and the one holding
 * the share (reason); the login starts share-max-life, after which the
 * share ends with a reason naming it. */
static void
test_second_client_and_max_life(void)
{
    Harness h;
    guint8 ready[8];
    gint64 login_us;
    gint64 now_s;

    harness_max_life_s = TEST_MAX_LIFE_S;
    harness_init(&h, test_program);
    harness_max_life_s = TEST_LONG_LIFE_S;
    sw_frame_put_u32(ready, SW_FRAME_VERSION);
    sw_frame_put_u32(ready + 4, 1);
    harness_send_frame(&h, SW_FRAME_READY, ready, sizeof(ready));
    harness_run_until(&h, done_ticket);
    g_assert_cmpint(gw_share_get_ends_unix(h.share), ==, 0);

    login_us = g_get_monotonic_time();
    now_s = g_get_real_time() / G_USEC_PER_SEC;
    harness_send_client(&h, SW_CLIENT_LOGIN, "192.0.2.7:5000");
    harness_send_client(&h, SW_CLIENT_REFUSED, "198.51.100.9:6000");
    harness_run_until(&h, done_deny);
    g_assert_cmpstr(gw_share_get_client_address(h.share), ==, "192.0.2.7:5000");
    g_assert_cmpstr(h.deny_client, ==, "198.51.100.9:6000");
    g_assert_nonnull(strstr(h.deny_reason, "from 198.51.100.9:6000 refused"));
    g_assert_nonnull(strstr(h.deny_reason, "client 192.0.2.7:5000 holds the share"));
    g_assert_cmpint(gw_share_get_ends_unix(h.share), >=, now_s + TEST_MAX_LIFE_S);
    g_assert_cmpint(gw_share_get_ends_unix(h.share), <=, now_s + TEST_MAX_LIFE_S + 1);
    g_assert_cmpuint(h.ended, ==, 0);

    harness_run_until(&h, done_ended);
    g_assert_nonnull(g_strstr_len(h.ended_reason, -1, "share-max-life"));
    /* not before its life is over (g_timeout_add_seconds may round up) */
    g_assert_cmpint(g_get_monotonic_time() - login_us, >=,
                    (TEST_MAX_LIFE_S * G_USEC_PER_SEC) - 10 * G_TIME_SPAN_MILLISECOND);
    harness_clear(&h);
}

/* Records the VM socket's refusal of a peer (with its USBGW_VM field) and
 * writes every message as GLib would. */
static GLogWriterOutput
record_refusal(GLogLevelFlags level, const GLogField *fields, gsize n_fields, gpointer user_data)
{
    const gchar *domain = NULL, *message = NULL, *vm = NULL;

    for (gsize i = 0; i < n_fields; i++) {
        if (g_str_equal(fields[i].key, "GLIB_DOMAIN"))
            domain = fields[i].value;
        else if (g_str_equal(fields[i].key, "MESSAGE"))
            message = fields[i].value;
        else if (g_str_equal(fields[i].key, "USBGW_VM"))
            vm = fields[i].value;
    }
    if ((level & G_LOG_LEVEL_WARNING) && g_strcmp0(domain, "usbgw-serve") == 0 && message != NULL &&
        strstr(message, "refused a peer") != NULL) {
        g_free(refusal_logged);
        refusal_logged = g_strdup_printf("%s [vm %s]", message, vm != NULL ? vm : "-");
    }
    return g_log_writer_default(level, fields, n_fields, user_data);
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
    g_log_set_writer_func(record_refusal, NULL, NULL);
    g_test_init(&argc, &argv, NULL);
    test_program = g_file_read_link("/proc/self/exe", NULL);
    g_assert_nonnull(test_program);
    harness_access.uid = getuid();
    g_test_add_func("/gw-share/free/calls-back-nobody", test_free_calls_back_nobody);
    g_test_add_func("/gw-share/socket/only-the-vm-qemu", test_share_socket_only_the_vm_qemu);
    g_test_add_func("/gw-share/descriptor-denied-is-audited", test_descriptor_denied_is_audited);
    g_test_add_func("/gw-share/client/second-refused-max-life", test_second_client_and_max_life);
    status = g_test_run();
    g_free(test_program);
    return status;
}
