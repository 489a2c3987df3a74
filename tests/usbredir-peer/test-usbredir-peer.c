/* usbredir-peer against itself: a guest and a host over a socketpair (the
 * host on a thread of its own, as proxy-bench's fake device), a buffered
 * guest, and the ways a wait ends (closed, timed out, garbage). */
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "usbredir-peer.h"

#define TEST_TIMEOUT_US    (5 * G_USEC_PER_SEC)
#define TEST_SHORT_WAIT_US (200 * 1000)
#define TEST_VENDOR        0x0529
#define TEST_PRODUCT       0x0001
#define TEST_REQ_ECHO      0x01 /* OUT: store the data; IN: get it back */

/* ---- a device: the host role on its own thread --------------------------- */

typedef struct {
    UsbredirPeerThread *thread; /* owned: serves the device; its events run there */
    guint8 stored[USBREDIR_PEER_CONTROL_DATA_MAX];
    gint stored_length;
} Device;

static void
device_hello(UsbredirPeer *usbredir, const struct usb_redir_hello_header *hello, gpointer user_data)
{
    usbredir_peer_announce_device(usbredir, TEST_VENDOR, TEST_PRODUCT, 0xff);
}

static void
device_control(UsbredirPeer *usbredir, const UsbredirPeerControl *control, gpointer user_data)
{
    Device *dev = user_data;
    struct usbredirparser *parser = usbredir_peer_get_parser(usbredir);
    struct usb_redir_control_packet_header answer = control->header;

    answer.status = control->header.request == TEST_REQ_ECHO ? usb_redir_success : usb_redir_stall;
    if (!(control->header.endpoint & 0x80)) {
        memcpy(dev->stored, control->data, (gsize)control->length);
        dev->stored_length = control->length;
        usbredirparser_send_control_packet(parser, control->id, &answer, NULL, 0);
    } else {
        answer.length = (guint16)MIN(control->header.length, dev->stored_length);
        usbredirparser_send_control_packet(parser, control->id, &answer, dev->stored,
                                           answer.length);
    }
}

static Device *
device_start(int fd)
{
    static const UsbredirPeerEvents events = {
        .hello = device_hello,
        .control_packet = device_control,
    };
    static const UsbredirPeerConfig config = {
        .role = USBREDIR_PEER_HOST,
        .version = "test-device",
        .log_level = usbredirparser_warning,
    };
    Device *dev = g_new0(Device, 1);

    dev->thread =
        usbredir_peer_thread_start(usbredir_peer_new(fd, &config, &events, dev), "test-device");
    return dev;
}

/* Stops the device; its thread must have ended only by the stop or a
 * close. */
static void
device_stop(Device *dev)
{
    g_autoptr(GError) error = NULL;

    g_assert_true(usbredir_peer_thread_stop(dev->thread, &error));
    g_assert_no_error(error);
    g_free(dev);
}

/* ---- the guest ---------------------------------------------------------- */

static const UsbredirPeerConfig guest_config = {
    .role = USBREDIR_PEER_GUEST,
    .version = "test-guest",
    .log_level = usbredirparser_warning,
};

typedef struct {
    guint connects;
    guint16 vendor;
    guint interface_infos;
    guint ep_infos;
    GByteArray *out; /* nullable: what a buffered guest sent */
} Seen;

static void
seen_connect(UsbredirPeer *usbredir, const struct usb_redir_device_connect_header *h,
             gpointer user_data)
{
    Seen *seen = user_data;

    /* the peer's own state is updated before the event */
    g_assert_true(usbredir_peer_is_connected(usbredir));
    seen->connects++;
    seen->vendor = h->vendor_id;
}

static void
seen_interface_info(UsbredirPeer *usbredir, const struct usb_redir_interface_info_header *h,
                    gpointer user_data)
{
    ((Seen *)user_data)->interface_infos++;
}

static void
seen_ep_info(UsbredirPeer *usbredir, const struct usb_redir_ep_info_header *h, gpointer user_data)
{
    ((Seen *)user_data)->ep_infos++;
}

static const UsbredirPeerEvents seen_events = {
    .device_connect = seen_connect,
    .interface_info = seen_interface_info,
    .ep_info = seen_ep_info,
};

static void
make_pair(int fds[2])
{
    g_assert_cmpint(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds), ==, 0);
}

/* ---- cases -------------------------------------------------------------- */

/* A guest sees the device the host announces and gets its answers back. */
static void
test_control_round_trip(void)
{
    static const guint8 data[] = {1, 2, 3, 4, 5, 6, 7, 8};
    g_autoptr(UsbredirPeer) guest = NULL;
    g_autoptr(GError) error = NULL;
    const UsbredirPeerControl *answer;
    Seen seen = {0};
    Device *dev;
    int fds[2];
    gint64 deadline = g_get_monotonic_time() + TEST_TIMEOUT_US;

    make_pair(fds);
    dev = device_start(fds[0]);
    guest = usbredir_peer_new(fds[1], &guest_config, &seen_events, &seen);
    g_assert_true(usbredir_peer_run_until(guest, usbredir_peer_is_connected, deadline, &error));
    g_assert_no_error(error);
    g_assert_true(usbredir_peer_has_hello(guest));
    g_assert_cmpuint(seen.connects, ==, 1);
    g_assert_cmphex(seen.vendor, ==, TEST_VENDOR);
    g_assert_cmpuint(seen.interface_infos, ==, 1);
    g_assert_cmpuint(seen.ep_infos, ==, 1);

    g_assert_true(
        usbredir_peer_control(guest, 0x40, TEST_REQ_ECHO, data, sizeof(data), deadline, &error));
    g_assert_no_error(error);
    g_assert_true(
        usbredir_peer_control(guest, 0xc0, TEST_REQ_ECHO, NULL, sizeof(data), deadline, &error));
    g_assert_no_error(error);
    answer = usbredir_peer_get_control(guest);
    g_assert_cmpuint(answer->id, ==, 1); /* ids count from 0 */
    g_assert_cmpuint(answer->header.status, ==, usb_redir_success);
    g_assert_cmpmem(answer->data, answer->length, data, sizeof(data));

    /* an answer that is not success is still an answer */
    g_assert_true(usbredir_peer_control(guest, 0xc0, TEST_REQ_ECHO + 1, NULL, 4, deadline, &error));
    g_assert_no_error(error);
    g_assert_cmpuint(usbredir_peer_get_control(guest)->header.status, ==, usb_redir_stall);
    device_stop(dev);
}

/* The other end goes away: "closed" is done, a transfer fails. */
static void
test_closed(void)
{
    g_autoptr(UsbredirPeer) guest = NULL;
    g_autoptr(GError) error = NULL;
    gint64 deadline = g_get_monotonic_time() + TEST_TIMEOUT_US;
    int fds[2];

    make_pair(fds);
    guest = usbredir_peer_new(fds[1], &guest_config, NULL, NULL);
    close(fds[0]);
    g_assert_true(usbredir_peer_run_until(guest, usbredir_peer_is_closed, deadline, &error));
    g_assert_no_error(error);
    g_assert_false(usbredir_peer_control(guest, 0xc0, TEST_REQ_ECHO, NULL, 4, deadline, &error));
    g_assert_error(error, G_IO_ERROR, G_IO_ERROR_CONNECTION_CLOSED);
    g_assert_nonnull(strstr(error->message, "test-guest"));
}

/* Nobody answers: the wait ends at the deadline; with no condition that
 * is success. */
static void
test_deadline(void)
{
    g_autoptr(UsbredirPeer) guest = NULL;
    g_autoptr(GError) error = NULL;
    int fds[2];

    make_pair(fds);
    guest = usbredir_peer_new(fds[1], &guest_config, NULL, NULL);
    g_assert_false(usbredir_peer_run_until(guest, usbredir_peer_is_connected,
                                           g_get_monotonic_time() + TEST_SHORT_WAIT_US, &error));
    g_assert_error(error, G_IO_ERROR, G_IO_ERROR_TIMED_OUT);
    g_clear_error(&error);
    g_assert_true(
        usbredir_peer_run_until(guest, NULL, g_get_monotonic_time() + TEST_SHORT_WAIT_US, &error));
    g_assert_no_error(error);
    close(fds[0]);
}

/* Bytes that are not usbredir: a wait ends with INVALID_DATA. */
static void
test_garbage(void)
{
    static const guint8 junk[64] = {0xff, 0xff, 0xff, 0xff, 0x00, 0x00, 0x10, 0x00};
    g_autoptr(UsbredirPeer) guest = NULL;
    g_autoptr(GError) error = NULL;
    int fds[2];

    make_pair(fds);
    guest = usbredir_peer_new(fds[1], &guest_config, NULL, NULL);
    g_assert_cmpint(send(fds[0], junk, sizeof(junk), MSG_NOSIGNAL), ==, sizeof(junk));
    g_assert_false(usbredir_peer_run_until(guest, usbredir_peer_is_connected,
                                           g_get_monotonic_time() + TEST_TIMEOUT_US, &error));
    g_assert_error(error, G_IO_ERROR, G_IO_ERROR_INVALID_DATA);
    close(fds[0]);
}

/* A buffered guest: its hello goes out through the send function at
 * once, and what it is fed is parsed. */
static void
buffered_send(UsbredirPeer *usbredir, const guint8 *data, gsize length, gpointer user_data)
{
    Seen *seen = user_data;

    g_byte_array_append(seen->out, data, (guint)length);
}

static void
test_buffered(void)
{
    g_autoptr(GByteArray) out = g_byte_array_new();
    g_autoptr(UsbredirPeer) guest = NULL;
    g_autoptr(UsbredirPeer) device = NULL;
    g_autoptr(GError) error = NULL;
    Seen seen = {0};
    guint8 buffer[4096];
    int fds[2];
    gint64 deadline = g_get_monotonic_time() + TEST_TIMEOUT_US;

    seen.out = out;
    guest = usbredir_peer_new_buffered(&guest_config, buffered_send, &seen_events, &seen);
    g_assert_cmpuint(out->len, >, 0);
    g_assert_cmpint(usbredir_peer_get_fd(guest), ==, -1);

    /* the device (this thread) on a socketpair: hand it the guest's hello
     * and feed its announcement back to the guest */
    make_pair(fds);
    {
        static const UsbredirPeerEvents events = {.hello = device_hello};
        static const UsbredirPeerConfig config = {
            .role = USBREDIR_PEER_HOST,
            .version = "test-device",
        };
        device = usbredir_peer_new(fds[0], &config, &events, NULL);
    }
    g_assert_cmpint(send(fds[1], out->data, out->len, MSG_NOSIGNAL), ==, (gssize)out->len);
    while (!usbredir_peer_is_connected(guest) && g_get_monotonic_time() < deadline) {
        ssize_t n;

        usbredir_peer_io(device);
        n = recv(fds[1], buffer, sizeof(buffer), MSG_DONTWAIT);
        if (n > 0)
            g_assert_true(usbredir_peer_feed(guest, buffer, (gsize)n, &error));
        g_assert_no_error(error);
        g_usleep(1000);
    }
    g_assert_true(usbredir_peer_is_connected(guest));
    g_assert_cmphex(seen.vendor, ==, TEST_VENDOR);

    /* garbage is refused; the parser goes on after it */
    {
        static const guint8 junk[16] = {0xff, 0xff, 0xff, 0xff, 0x00, 0x00, 0x00, 0x00};
        g_assert_false(usbredir_peer_feed(guest, junk, sizeof(junk), &error));
        g_assert_error(error, G_IO_ERROR, G_IO_ERROR_INVALID_DATA);
    }
    close(fds[1]);
}

int
main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    g_test_add_func("/usbredir-peer/control-round-trip", test_control_round_trip);
    g_test_add_func("/usbredir-peer/closed", test_closed);
    g_test_add_func("/usbredir-peer/deadline", test_deadline);
    g_test_add_func("/usbredir-peer/garbage", test_garbage);
    g_test_add_func("/usbredir-peer/buffered", test_buffered);
    return g_test_run();
}
