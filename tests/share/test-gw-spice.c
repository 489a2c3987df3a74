/* GwSpiceWorker's channel streams (gateway/share/gw-spice.h): the test
 * plays the worker on the other end of the socketpair and the proxy on
 * the stream's GwTransport, and checks the bytes each side gets. */
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <gio/gio.h>

#include "gw-spice.h"
#include "sw-frame.h"

#define TEST_CHANNELS 2
#define TEST_WAIT_US  (5 * G_USEC_PER_SEC)

typedef struct {
    int fd;                                /* the worker's end */
    GwSpiceStream *streams[TEST_CHANNELS]; /* owned, nullable */
    GIOCondition told[TEST_CHANNELS];      /* what each stream's ready func got */
    guint opened;
    guint closed;
    gboolean ready;
} Fixture;

static void
on_stream_ready(GwSpiceStream *stream, GIOCondition condition, gpointer user_data)
{
    Fixture *f = user_data;

    for (guint i = 0; i < TEST_CHANNELS; i++)
        if (f->streams[i] == stream)
            f->told[i] |= condition;
}

static void
on_ready(GwSpiceWorker *worker, gpointer user_data)
{
    ((Fixture *)user_data)->ready = TRUE;
}

static void
on_opened(GwSpiceWorker *worker, guint channel, GwSpiceStream *stream, gpointer user_data)
{
    Fixture *f = user_data;

    g_assert_cmpuint(channel, <, TEST_CHANNELS);
    g_assert_null(f->streams[channel]);
    f->streams[channel] = stream;
    gw_spice_stream_set_ready_func(stream, on_stream_ready, f);
    f->opened++;
}

static void
on_closed(GwSpiceWorker *worker, guint channel, gpointer user_data)
{
    ((Fixture *)user_data)->closed++;
}

static void
on_exited(GwSpiceWorker *worker, const gchar *reason, gpointer user_data)
{
    g_error("the worker's end failed: %s", reason);
}

/* One frame from the "worker". */
static void
send_frame(Fixture *f, SwFrameType type, guint channel, const void *payload, gsize length)
{
    guint8 header[SW_FRAME_HEADER_SIZE];

    sw_frame_header_pack(header, type, channel, (guint32)length);
    g_assert_cmpint(send(f->fd, header, sizeof(header), MSG_NOSIGNAL), ==, sizeof(header));
    if (length > 0)
        g_assert_cmpint(send(f->fd, payload, length, MSG_NOSIGNAL), ==, (gssize)length);
}

/* Iterates the main loop until @done or the time is up. */
static void
run_until(gboolean (*done)(Fixture *f), Fixture *f)
{
    gint64 end = g_get_monotonic_time() + TEST_WAIT_US;

    while (!done(f) && g_get_monotonic_time() < end)
        g_main_context_iteration(NULL, FALSE);
    g_assert_true(done(f));
}

static gboolean
is_ready(Fixture *f)
{
    return f->ready;
}

static gboolean
told_in_0(Fixture *f)
{
    return (f->told[0] & G_IO_IN) != 0;
}

static gboolean
told_hup_0(Fixture *f)
{
    return (f->told[0] & G_IO_HUP) != 0;
}

static gboolean
opened_two(Fixture *f)
{
    return f->opened == 2;
}

/* One frame usbgwd sent, read from the worker's end. */
static void
recv_frame(Fixture *f, SwFrameHeader *header, guint8 *payload, gsize size)
{
    guint8 raw[SW_FRAME_HEADER_SIZE];
    g_autoptr(GError) error = NULL;

    g_assert_cmpint(recv(f->fd, raw, sizeof(raw), MSG_WAITALL), ==, sizeof(raw));
    g_assert_true(sw_frame_header_unpack(raw, header, &error));
    g_assert_cmpuint(header->length, <=, size);
    if (header->length > 0)
        g_assert_cmpint(recv(f->fd, payload, header->length, MSG_WAITALL), ==, header->length);
}

static void
test_stream_carries_both_ways(void)
{
    static const GwSpiceWorkerCallbacks callbacks = {
        .ready = on_ready,
        .channel_opened = on_opened,
        .channel_closed = on_closed,
        .exited = on_exited,
    };
    Fixture f = {0};
    g_autoptr(GwSpiceWorker) worker = NULL;
    guint8 ready[8], buffer[64], payload[64];
    SwFrameHeader header;
    int fds[2];

    g_assert_cmpint(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds), ==, 0);
    f.fd = fds[1];
    worker = gw_spice_worker_new_for_fd(fds[0], TEST_CHANNELS, &callbacks, &f);
    sw_frame_put_u32(ready, SW_FRAME_VERSION);
    sw_frame_put_u32(ready + 4, TEST_CHANNELS);
    send_frame(&f, SW_FRAME_READY, 0, ready, sizeof(ready));
    run_until(is_ready, &f);

    /* the client's bytes of channel 0 reach its stream only, in order */
    send_frame(&f, SW_FRAME_OPEN, 0, NULL, 0);
    send_frame(&f, SW_FRAME_OPEN, 1, NULL, 0);
    send_frame(&f, SW_FRAME_DATA, 0, "hello ", 6);
    send_frame(&f, SW_FRAME_DATA, 0, "usbredir", 8);
    run_until(told_in_0, &f);
    g_assert_cmpuint(f.opened, ==, 2);
    g_assert_cmpint(gw_spice_stream_transport.read(f.streams[0], buffer, 4), ==, 4);
    g_assert_cmpmem(buffer, 4, "hell", 4);
    g_assert_cmpint(gw_spice_stream_transport.read(f.streams[0], buffer, sizeof(buffer)), ==, 10);
    g_assert_cmpmem(buffer, 10, "o usbredir", 10);
    g_assert_cmpint(gw_spice_stream_transport.read(f.streams[0], buffer, sizeof(buffer)), ==, 0);
    g_assert_cmpint(gw_spice_stream_transport.read(f.streams[1], buffer, sizeof(buffer)), ==, 0);
    g_assert_cmpuint(f.told[1], ==, 0);

    /* what the proxy writes leaves as DATA of its channel at flush() */
    g_assert_cmpint(gw_spice_stream_transport.write(f.streams[1], (const guint8 *)"answer", 6), ==,
                    6);
    gw_spice_stream_transport.flush(f.streams[1]);
    recv_frame(&f, &header, payload, sizeof(payload));
    g_assert_cmpuint(header.type, ==, SW_FRAME_DATA);
    g_assert_cmpuint(header.channel, ==, 1);
    g_assert_cmpmem(payload, header.length, "answer", 6);

    /* the client closes channel 0: usbgwd acks, the stream reads the bytes
     * that came before, then -1, and writes fail */
    send_frame(&f, SW_FRAME_DATA, 0, "last", 4);
    send_frame(&f, SW_FRAME_CLOSE, 0, NULL, 0);
    run_until(told_hup_0, &f);
    g_assert_cmpuint(f.closed, ==, 1);
    recv_frame(&f, &header, payload, sizeof(payload));
    g_assert_cmpuint(header.type, ==, SW_FRAME_CLOSE);
    g_assert_cmpuint(header.channel, ==, 0);
    g_assert_cmpint(gw_spice_stream_transport.read(f.streams[0], buffer, sizeof(buffer)), ==, 4);
    g_assert_cmpmem(buffer, 4, "last", 4);
    g_assert_cmpint(gw_spice_stream_transport.read(f.streams[0], buffer, sizeof(buffer)), ==, -1);
    g_assert_cmpint(gw_spice_stream_transport.write(f.streams[0], (const guint8 *)"x", 1), ==, -1);
    g_clear_pointer(&f.streams[0], gw_spice_stream_close);

    /* the proxy of channel 1 closes its stream: the client's bytes are
     * dropped until it closes the channel; the next session starts clean */
    g_clear_pointer(&f.streams[1], gw_spice_stream_close);
    f.opened = 0;
    f.told[0] = f.told[1] = 0;
    send_frame(&f, SW_FRAME_DATA, 1, "stale", 5);
    send_frame(&f, SW_FRAME_CLOSE, 1, NULL, 0);
    send_frame(&f, SW_FRAME_OPEN, 1, NULL, 0);
    send_frame(&f, SW_FRAME_OPEN, 0, NULL, 0);
    send_frame(&f, SW_FRAME_DATA, 0, "new", 3);
    run_until(opened_two, &f);
    run_until(told_in_0, &f);
    g_assert_cmpuint(f.closed, ==, 2);
    recv_frame(&f, &header, payload, sizeof(payload));
    g_assert_cmpuint(header.type, ==, SW_FRAME_CLOSE);
    g_assert_cmpuint(header.channel, ==, 1);
    g_assert_cmpint(gw_spice_stream_transport.read(f.streams[1], buffer, sizeof(buffer)), ==, 0);
    g_assert_cmpint(gw_spice_stream_transport.read(f.streams[0], buffer, sizeof(buffer)), ==, 3);
    g_assert_cmpmem(buffer, 3, "new", 3);

    /* streams outlive the worker: they read the end */
    g_clear_pointer(&worker, gw_spice_worker_free);
    for (guint i = 0; i < TEST_CHANNELS; i++) {
        g_assert_cmpint(gw_spice_stream_transport.read(f.streams[i], buffer, sizeof(buffer)), ==,
                        -1);
        g_clear_pointer(&f.streams[i], gw_spice_stream_close);
    }
    close(f.fd);
}

int
main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    g_test_add_func("/gw-spice/stream-carries-both-ways", test_stream_carries_both_ways);
    return g_test_run();
}
