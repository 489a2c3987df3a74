/* gw-handover.c: the ring of bytes written to a peer, the peer's unread
 * count from the kernel, and the re-send that makes a handover byte-exact,
 * over socketpairs standing for QEMU's connections. */
#include <errno.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>
#include <gio/gio.h>
#include <linux/sockios.h>
#include <usbredirparser.h>

#include "gw-handover.h"

/* Deterministic bytes: position i holds a function of i, so a shifted or
 * repeated stretch is caught. */
static void
fill_pattern(guint8 *buf, gsize len, guint64 from)
{
    for (gsize i = 0; i < len; i++)
        buf[i] = (guint8)((from + i) * 131u + ((from + i) >> 8));
}

static void
test_ring_tail(void)
{
    g_autoptr(GwHandoverRing) ring = gw_handover_ring_new(100);
    g_autoptr(GError) error = NULL;
    guint8 all[1000];
    g_autoptr(GBytes) tail = NULL;
    GBytes *none;

    fill_pattern(all, sizeof(all), 0);
    /* chunks of odd sizes wrap the ring many times; one is larger than it */
    for (gsize at = 0, step = 7; at < sizeof(all); at += step, step = step * 3 % 151 + 1)
        gw_handover_ring_append(ring, all + at, MIN(step, sizeof(all) - at));
    g_assert_cmpuint(gw_handover_ring_total(ring), ==, sizeof(all));
    g_assert_cmpuint(gw_handover_ring_kept(ring), ==, 100);
    for (guint64 n = 0; n <= 100; n += 25) {
        g_autoptr(GBytes) got = gw_handover_ring_tail(ring, n, &error);
        g_assert_no_error(error);
        g_assert_cmpmem(g_bytes_get_data(got, NULL), g_bytes_get_size(got), all + sizeof(all) - n,
                        n);
    }
    none = gw_handover_ring_tail(ring, 101, &error);
    g_assert_null(none);
    g_assert_error(error, G_IO_ERROR, G_IO_ERROR_NO_SPACE);
    g_assert_nonnull(strstr(error->message, "101 bytes were not read"));
    g_assert_nonnull(strstr(error->message, "last 100 written"));
    g_clear_error(&error);

    /* fewer appended than the capacity: only those are kept */
    g_autoptr(GwHandoverRing) small = gw_handover_ring_new(100);
    gw_handover_ring_append(small, all, 30);
    g_assert_cmpuint(gw_handover_ring_kept(small), ==, 30);
    tail = gw_handover_ring_tail(small, 30, &error);
    g_assert_no_error(error);
    g_assert_cmpmem(g_bytes_get_data(tail, NULL), g_bytes_get_size(tail), all, 30);
    g_assert_null(gw_handover_ring_tail(small, 31, NULL));
}

static void
socketpair_or_fail(int sv[2])
{
    g_assert_cmpint(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), ==, 0);
}

/* The kernel's count is exact to the byte, where SIOCOUTQ on the writer's
 * end is not (it counts buffer memory). */
static void
test_peer_unread(void)
{
    int sv[2];
    guint8 buf[5100];
    guint64 unread = 0;
    int outq = 0;
    g_autoptr(GError) error = NULL;

    socketpair_or_fail(sv);
    if (!gw_handover_peer_unread(sv[0], &unread, &error)) {
        g_test_skip(error->message);
        close(sv[0]);
        close(sv[1]);
        return;
    }
    g_assert_cmpuint(unread, ==, 0);
    fill_pattern(buf, sizeof(buf), 0);
    g_assert_cmpint(send(sv[0], buf, 100, 0), ==, 100);
    g_assert_cmpint(send(sv[0], buf + 100, 5000, 0), ==, 5000);
    g_assert_cmpint(recv(sv[1], buf, 50, 0), ==, 50);
    g_assert_true(gw_handover_peer_unread(sv[0], &unread, &error));
    g_assert_no_error(error);
    g_assert_cmpuint(unread, ==, 5050);
    g_assert_cmpint(ioctl(sv[0], SIOCOUTQ, &outq), ==, 0);
    g_test_message("5050 bytes unread: SIOCOUTQ says %d", outq);
    g_assert_cmpint(recv(sv[1], buf, 60, 0), ==, 60); /* within the first send's buffer */
    g_assert_true(gw_handover_peer_unread(sv[0], &unread, NULL));
    g_assert_cmpuint(unread, ==, 4990);

    /* a peer gone cannot be asked: an error naming the socket, no count */
    close(sv[1]);
    unread = 7;
    g_assert_false(gw_handover_peer_unread(sv[0], &unread, &error));
    g_assert_nonnull(error);
    g_assert_nonnull(strstr(error->message, "socket diagnostics"));
    g_assert_cmpuint(unread, ==, 7);
    g_clear_error(&error);
    close(sv[0]);

    /* not a socket */
    int p[2];
    g_assert_cmpint(pipe(p), ==, 0);
    g_assert_false(gw_handover_peer_unread(p[0], &unread, &error));
    g_assert_error(error, G_IO_ERROR, G_IO_ERROR_INVALID_ARGUMENT);
    close(p[0]);
    close(p[1]);
}

/* Reads what is there without blocking; returns how many bytes. */
static gsize
drain(int fd, guint8 *into, gsize room)
{
    gsize got = 0;
    for (;;) {
        ssize_t n = recv(fd, into + got, room - got, MSG_DONTWAIT);
        if (n <= 0)
            return got;
        got += (gsize)n;
    }
}

/* A source that read part of the stream and paused, a destination that
 * gets the rest: source's bytes + re-sent bytes = everything written, in
 * order, whatever the source had read when it stopped. */
static void
test_resend(void)
{
    const gsize total = 300 * 1024;
    g_autofree guint8 *all = g_malloc(total);
    g_autofree guint8 *seen = g_malloc(total);
    guint64 unread;

    fill_pattern(all, total, 0);
    for (gsize stop_at = 0; stop_at <= 150 * 1024; stop_at += 37 * 1024 + 11) {
        int src[2], dst[2];
        gsize written = 0, read = 0, step = 1;
        g_autoptr(GwHandoverRing) ring = NULL;
        g_autoptr(GBytes) resend = NULL;
        g_autoptr(GError) error = NULL;

        socketpair_or_fail(src);
        socketpair_or_fail(dst);
        ring = gw_handover_ring_new(gw_handover_ring_capacity_for(src[0]));
        /* the source reads until stop_at, then pauses; the writer goes on
         * until the socket takes no more */
        while (written < total) {
            ssize_t n = send(src[0], all + written, MIN(step, total - written),
                             MSG_DONTWAIT | MSG_NOSIGNAL);
            if (n < 0) {
                g_assert_true(errno == EAGAIN || errno == EWOULDBLOCK);
                if (read >= stop_at)
                    break;
            } else {
                gw_handover_ring_append(ring, all + written, (gsize)n);
                written += (gsize)n;
            }
            step = step * 5 % 4093 + 1;
            if (read < stop_at) {
                gsize want = MIN(stop_at - read, (gsize)4096);
                ssize_t r = recv(src[1], seen + read, want, MSG_DONTWAIT);
                if (r > 0)
                    read += (gsize)r;
            }
        }
        if (!gw_handover_peer_unread(src[0], &unread, &error)) {
            g_test_skip(error->message);
            return;
        }
        g_assert_cmpuint(unread, ==, written - read);
        resend = gw_handover_ring_tail(ring, unread, &error);
        g_assert_no_error(error);
        /* the source is closed unread; the destination gets the rest */
        close(src[1]);
        gsize size;
        const guint8 *data = g_bytes_get_data(resend, &size);
        gsize sent = 0, got = 0;
        while (sent < size || got < size) {
            if (sent < size) {
                ssize_t n = send(dst[0], data + sent, size - sent, MSG_DONTWAIT);
                if (n > 0)
                    sent += (gsize)n;
            }
            got += drain(dst[1], seen + read + got, total - read - got);
        }
        g_assert_cmpuint(read + got, ==, written);
        g_assert_cmpmem(seen, written, all, written);
        g_test_message("source read %" G_GSIZE_FORMAT " of %" G_GSIZE_FORMAT
                       " bytes; %" G_GUINT64_FORMAT " re-sent to the destination",
                       read, written, unread);
        close(src[0]);
        close(dst[0]);
        close(dst[1]);
    }
}

/* More unread than kept: a clear error, never a partial re-send. */
static void
test_resend_too_much(void)
{
    int src[2];
    guint8 buf[4096];
    guint64 unread;
    g_autoptr(GwHandoverRing) ring = gw_handover_ring_new(1000);
    g_autoptr(GError) error = NULL;

    socketpair_or_fail(src);
    fill_pattern(buf, sizeof(buf), 0);
    g_assert_cmpint(send(src[0], buf, sizeof(buf), 0), ==, sizeof(buf));
    gw_handover_ring_append(ring, buf, sizeof(buf));
    if (!gw_handover_peer_unread(src[0], &unread, &error)) {
        g_test_skip(error->message);
        return;
    }
    g_assert_cmpuint(unread, ==, sizeof(buf));
    g_assert_null(gw_handover_ring_tail(ring, unread, &error));
    g_assert_error(error, G_IO_ERROR, G_IO_ERROR_NO_SPACE);
    close(src[0]);
    close(src[1]);
}

static guint8 hello_bytes[512];
static gsize hello_len;

static int
capture_write(void *priv, uint8_t *data, int count)
{
    gsize room = sizeof(hello_bytes) - hello_len;
    gsize n = MIN((gsize)count, room);
    memcpy(hello_bytes + hello_len, data, n);
    hello_len += n;
    return (int)n;
}

static int
no_read(void *priv, uint8_t *data, int count)
{
    return 0;
}

/* A real parser's hello is one; its later packets and a stream picked up
 * mid-way are not. */
static void
test_is_hello(void)
{
    struct usbredirparser *parser = usbredirparser_create();
    uint32_t caps[USB_REDIR_CAPS_SIZE] = {0};
    guint8 packet[16] = {0};
    guint32 type = usb_redir_control_packet, length = 10;

    parser->read_func = no_read;
    parser->write_func = capture_write;
    usbredirparser_caps_set_cap(caps, usb_redir_cap_64bits_ids);
    usbredirparser_init(parser, "test 1.0", caps, USB_REDIR_CAPS_SIZE, 0);
    g_assert_cmpint(usbredirparser_do_write(parser), ==, 0);
    usbredirparser_destroy(parser);
    g_assert_cmpuint(hello_len, >=, GW_HANDOVER_HELLO_PEEK);
    g_assert_true(gw_handover_is_hello(hello_bytes, hello_len));
    g_assert_false(gw_handover_is_hello(hello_bytes, GW_HANDOVER_HELLO_PEEK - 1));
    memcpy(packet, &type, 4);
    memcpy(packet + 4, &length, 4);
    g_assert_false(gw_handover_is_hello(packet, sizeof(packet)));
    /* type 0 with a length no hello has (a payload of zeros) */
    memset(packet, 0, sizeof(packet));
    g_assert_false(gw_handover_is_hello(packet, sizeof(packet)));
}

int
main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    g_test_add_func("/handover/ring-tail", test_ring_tail);
    g_test_add_func("/handover/peer-unread", test_peer_unread);
    g_test_add_func("/handover/resend", test_resend);
    g_test_add_func("/handover/resend-too-much", test_resend_too_much);
    g_test_add_func("/handover/is-hello", test_is_hello);
    return g_test_run();
}
