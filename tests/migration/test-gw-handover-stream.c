/* gw-handover-stream.c: packet boundaries and the answers QEMU matches by
 * id, in streams a real usbredirparser wrote as the host after a real
 * guest parser's hello, fed in chunks of odd sizes. */
#include <string.h>
#include <usbredirparser.h>

#include "gw-handover-stream.h"

typedef struct {
    GByteArray *bytes;
    GArray *ends; /* guint64: where each write_func call ended */
} Capture;

static int
capture_write(void *priv, uint8_t *data, int count)
{
    Capture *capture = priv;
    guint64 end;

    g_byte_array_append(capture->bytes, data, (guint)count);
    end = capture->bytes->len;
    g_array_append_val(capture->ends, end);
    return count;
}

typedef struct {
    const guint8 *data;
    gsize len;
} Feed;

static int
feed_read(void *priv, uint8_t *data, int count)
{
    Feed *feed = priv;
    gsize n = MIN((gsize)count, feed->len);

    memcpy(data, feed->data, n);
    feed->data += n;
    feed->len -= n;
    return (int)n;
}

static int
no_read(void *priv, uint8_t *data, int count)
{
    return 0;
}

static void
heard_hello(void *priv, struct usb_redir_hello_header *hello)
{
}

static void
quiet_log(void *priv, int level, const char *msg)
{
}

static struct usbredirparser *
parser_new(Capture *capture, gboolean ids64, int flags)
{
    struct usbredirparser *parser = usbredirparser_create();
    uint32_t caps[USB_REDIR_CAPS_SIZE] = {0};

    capture->bytes = g_byte_array_new();
    capture->ends = g_array_new(FALSE, FALSE, sizeof(guint64));
    parser->priv = capture;
    parser->read_func = no_read;
    parser->write_func = capture_write;
    parser->hello_func = heard_hello;
    parser->log_func = quiet_log;
    if (ids64)
        usbredirparser_caps_set_cap(caps, usb_redir_cap_64bits_ids);
    usbredirparser_init(parser, "test 1.0", caps, USB_REDIR_CAPS_SIZE, flags);
    g_assert_cmpint(usbredirparser_do_write(parser), ==, 0);
    return parser;
}

static void
capture_clear(Capture *capture)
{
    g_byte_array_unref(capture->bytes);
    g_array_unref(capture->ends);
}

/* The host's parser hears the guest's hello, as usbredirhost does. */
static void
host_hears(struct usbredirparser *host, Capture *guest)
{
    Feed feed = {guest->bytes->data, guest->bytes->len};

    host->priv = &feed;
    host->read_func = feed_read;
    g_assert_cmpint(usbredirparser_do_read(host), ==, 0);
    g_assert_cmpuint(feed.len, ==, 0);
}

/* Packets the host writes, in this order: its hello (0), then
 *   1 ep_info                       not an answer
 *   2 control_packet  ep 0x80       answer
 *   3 interrupt_packet ep 0x81 (IN) a buffered report, not an answer
 *   4 interrupt_packet ep 0x01 (OUT) answer
 *   5 bulk_packet     ep 0x82       answer
 *   6 configuration_status          answer
 *   7 device_disconnect             not an answer */
static const gboolean expected_answer[] = {FALSE, FALSE, TRUE, FALSE, TRUE, TRUE, TRUE, FALSE};

static void
host_writes(struct usbredirparser *host, Capture *capture)
{
    struct usb_redir_ep_info_header ep_info = {0};
    struct usb_redir_control_packet_header control = {.endpoint = 0x80, .length = 16};
    struct usb_redir_interrupt_packet_header report = {.endpoint = 0x81, .length = 8};
    struct usb_redir_interrupt_packet_header out_status = {.endpoint = 0x01, .length = 0};
    struct usb_redir_bulk_packet_header bulk = {.endpoint = 0x82, .length = 300};
    struct usb_redir_configuration_status_header config = {.status = 0, .configuration = 1};
    guint8 data[300];

    memset(data, 0xa5, sizeof(data));
    host->priv = capture;
    usbredirparser_send_ep_info(host, &ep_info);
    usbredirparser_send_control_packet(host, G_GUINT64_CONSTANT(0x1122334455), &control, data, 16);
    usbredirparser_send_interrupt_packet(host, 7, &report, data, 8);
    usbredirparser_send_interrupt_packet(host, 8, &out_status, NULL, 0);
    usbredirparser_send_bulk_packet(host, 9, &bulk, data, 300);
    usbredirparser_send_configuration_status(host, 10, &config);
    usbredirparser_send_device_disconnect(host);
    g_assert_cmpint(usbredirparser_do_write(host), ==, 0);
}

/* A host stream as usbgwd writes it, and where each packet ends. */
static void
make_stream(gboolean guest_ids64, Capture *out, gboolean *ids64)
{
    Capture guest;
    struct usbredirparser *guest_parser = parser_new(&guest, guest_ids64, 0);
    struct usbredirparser *host = parser_new(out, TRUE, usbredirparser_fl_usb_host);

    g_assert_true(gw_handover_hello_ids64(guest.bytes->data, guest.bytes->len, ids64));
    host_hears(host, &guest);
    host_writes(host, out);
    g_assert_cmpuint(out->ends->len, ==, G_N_ELEMENTS(expected_answer));
    usbredirparser_destroy(host);
    usbredirparser_destroy(guest_parser);
    capture_clear(&guest);
}

static void
feed_stream(GwHandoverStream *stream, const Capture *capture, guint64 base)
{
    /* chunks of odd sizes, so headers and bodies are cut anywhere */
    for (gsize at = 0, step = 1; at < capture->bytes->len; at += step, step = step * 5 % 23 + 1) {
        gsize n = MIN(step, capture->bytes->len - at);
        gw_handover_stream_append(stream, base + at, capture->bytes->data + at, n);
    }
}

static guint64
packet_start(const Capture *capture, guint i)
{
    return i == 0 ? 0 : g_array_index(capture->ends, guint64, i - 1);
}

static void
check_answers(gboolean ids64_guest)
{
    Capture capture;
    gboolean ids64 = !ids64_guest;
    g_autoptr(GwHandoverStream) stream = gw_handover_stream_new();
    g_autoptr(GArray) answers = g_array_new(FALSE, FALSE, sizeof(GwHandoverRange));
    const guint64 base = 1000; /* offsets of the session's stream */
    guint n = 0;

    make_stream(ids64_guest, &capture, &ids64);
    g_assert_cmpint(ids64, ==, ids64_guest);
    gw_handover_stream_set_ids64(stream, ids64);
    gw_handover_stream_record(stream, TRUE);
    feed_stream(stream, &capture, base);

    g_assert_true(gw_handover_stream_answers(stream, base, base + capture.bytes->len, answers));
    for (guint i = 0; i < G_N_ELEMENTS(expected_answer); i++) {
        if (!expected_answer[i])
            continue;
        g_assert_cmpuint(n, <, answers->len);
        const GwHandoverRange *range = &g_array_index(answers, GwHandoverRange, n++);
        g_assert_cmpuint(range->start, ==, base + packet_start(&capture, i));
        g_assert_cmpuint(range->end, ==, base + g_array_index(capture.ends, guint64, i));
    }
    g_assert_cmpuint(n, ==, answers->len);

    /* from the interrupt report on, up to the end of the bulk packet */
    g_array_set_size(answers, 0);
    g_assert_true(gw_handover_stream_answers(stream, base + packet_start(&capture, 3),
                                             base + g_array_index(capture.ends, guint64, 5),
                                             answers));
    g_assert_cmpuint(answers->len, ==, 2);
    g_assert_cmpuint(g_array_index(answers, GwHandoverRange, 0).start, ==,
                     base + packet_start(&capture, 4));
    g_assert_cmpuint(g_array_index(answers, GwHandoverRange, 1).end, ==,
                     base + g_array_index(capture.ends, guint64, 5));

    /* an end inside the bulk packet: nothing can be re-sent */
    g_array_set_size(answers, 0);
    g_assert_false(
        gw_handover_stream_answers(stream, base, base + packet_start(&capture, 5) + 20, answers));
    g_assert_cmpuint(answers->len, ==, 0);

    /* forgotten records are not re-sent */
    gw_handover_stream_forget_before(stream, base + packet_start(&capture, 5));
    g_assert_true(gw_handover_stream_answers(stream, base, base + capture.bytes->len, answers));
    g_assert_cmpuint(answers->len, ==, 2);
    capture_clear(&capture);
}

static void
test_answers_ids64(void)
{
    check_answers(TRUE);
}

static void
test_answers_ids32(void)
{
    check_answers(FALSE);
}

/* Without the peer's hello the packets after the first cannot be cut:
 * nothing is offered for re-sending rather than a wrong cut. */
static void
test_ids_unknown(void)
{
    Capture capture;
    gboolean ids64;
    g_autoptr(GwHandoverStream) stream = gw_handover_stream_new();
    g_autoptr(GArray) answers = g_array_new(FALSE, FALSE, sizeof(GwHandoverRange));

    make_stream(TRUE, &capture, &ids64);
    gw_handover_stream_record(stream, TRUE);
    feed_stream(stream, &capture, 0);
    g_assert_false(gw_handover_stream_answers(stream, 0, capture.bytes->len, answers));
    g_assert_cmpuint(answers->len, ==, 0);
    capture_clear(&capture);
}

/* A header whose length no packet has: the stream stops following. */
static void
test_garbage(void)
{
    g_autoptr(GwHandoverStream) stream = gw_handover_stream_new();
    g_autoptr(GArray) answers = g_array_new(FALSE, FALSE, sizeof(GwHandoverRange));
    guint8 bad[16] = {0};
    guint32 type = usb_redir_control_packet, length = 0x7fffffff;

    gw_handover_stream_set_ids64(stream, TRUE);
    gw_handover_stream_record(stream, TRUE);
    memcpy(bad, &type, 4);
    memcpy(bad + 4, &length, 4);
    gw_handover_stream_append(stream, 0, bad, 12); /* the first header is 12 bytes */
    g_assert_false(gw_handover_stream_answers(stream, 0, 12, answers));
}

/* Only records made while recording count; stopping forgets them. */
static void
test_recording(void)
{
    Capture capture;
    gboolean ids64;
    g_autoptr(GwHandoverStream) stream = gw_handover_stream_new();
    g_autoptr(GArray) answers = g_array_new(FALSE, FALSE, sizeof(GwHandoverRange));
    guint64 half;

    make_stream(TRUE, &capture, &ids64);
    gw_handover_stream_set_ids64(stream, ids64);
    /* the first four packets go by before recording starts */
    half = g_array_index(capture.ends, guint64, 3);
    gw_handover_stream_append(stream, 0, capture.bytes->data, half);
    gw_handover_stream_record(stream, TRUE);
    gw_handover_stream_append(stream, half, capture.bytes->data + half, capture.bytes->len - half);
    g_assert_true(gw_handover_stream_answers(stream, 0, capture.bytes->len, answers));
    g_assert_cmpuint(answers->len, ==, 3);
    g_array_set_size(answers, 0);
    gw_handover_stream_record(stream, FALSE);
    g_assert_true(gw_handover_stream_answers(stream, 0, capture.bytes->len, answers));
    g_assert_cmpuint(answers->len, ==, 0);
    capture_clear(&capture);
}

/* The hello tells 64-bit ids only once its first capability word came. */
static void
test_hello_ids64(void)
{
    Capture guest;
    struct usbredirparser *parser = parser_new(&guest, TRUE, 0);
    gboolean ids64 = FALSE;
    guint32 type = usb_redir_control_packet;
    guint8 other[8] = {0};

    g_assert_false(gw_handover_hello_ids64(guest.bytes->data, 8, &ids64));
    g_assert_false(
        gw_handover_hello_ids64(guest.bytes->data, GW_HANDOVER_HELLO_CAPS_END - 1, &ids64));
    g_assert_true(gw_handover_hello_ids64(guest.bytes->data, GW_HANDOVER_HELLO_CAPS_END, &ids64));
    g_assert_true(ids64);
    memcpy(other, &type, 4);
    g_assert_true(gw_handover_hello_ids64(other, sizeof(other), &ids64));
    g_assert_false(ids64);
    usbredirparser_destroy(parser);
    capture_clear(&guest);
}

int
main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    g_test_add_func("/handover-stream/answers-ids64", test_answers_ids64);
    g_test_add_func("/handover-stream/answers-ids32", test_answers_ids32);
    g_test_add_func("/handover-stream/ids-unknown", test_ids_unknown);
    g_test_add_func("/handover-stream/garbage", test_garbage);
    g_test_add_func("/handover-stream/recording", test_recording);
    g_test_add_func("/handover-stream/hello-ids64", test_hello_ids64);
    return g_test_run();
}
