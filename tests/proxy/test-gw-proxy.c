/* GwProxy against crafted packet sequences: a fake usbredir host (a
 * tests/usbredir-peer in the host role) plays the lending client, a fake
 * guest plays QEMU, both over socketpairs; malformed input is
 * written as raw bytes. Each case states what QEMU must (not) have seen and
 * how the session must end. */
#include <string.h>
#include <sys/socket.h>

#include "gw-proxy.h"
#include "sim-hex.h"
#include "usbredir-peer.h"

#define TEST_TIMEOUT_MS   3000
#define TEST_FLOOD_PACKET 32768
#define TEST_FLOOD_COUNT  400

typedef struct {
    UsbredirPeer *peer; /* owned */
    gboolean is_host;
    gboolean reading; /* FALSE: leave the socket unread (backpressure test) */
    /* seen by the fake QEMU; its last answer is usbredir_peer_get_control() */
    guint connects;
    guint disconnects;
    guint interface_infos;
    struct usb_redir_device_connect_header connect;
    struct usb_redir_interface_info_header interfaces;
    guint control_answers;
    guint interrupt_packets;
    /* seen by the fake host; its last request is usbredir_peer_get_control() */
    guint filter_rejects;
    guint disconnect_acks;
    guint control_requests;
} Fake;

typedef struct {
    Fake host; /* the lending client */
    Fake qemu;
    GwProxy *proxy;
    gboolean ended;
    GwProxyEnd end;
    gchar *reason;
    gboolean deny_class_08;
} Harness;

/* ---- The fakes ---------------------------------------------------------- */

static void
fake_connect(UsbredirPeer *peer, const struct usb_redir_device_connect_header *h,
             gpointer user_data)
{
    Fake *fake = user_data;
    fake->connects++;
    fake->connect = *h;
}

static void
fake_disconnect(UsbredirPeer *peer, gpointer user_data)
{
    Fake *fake = user_data;
    fake->disconnects++; /* usbredirparser sends the ack */
}

static void
fake_interface_info(UsbredirPeer *peer, const struct usb_redir_interface_info_header *h,
                    gpointer user_data)
{
    Fake *fake = user_data;
    fake->interface_infos++;
    fake->interfaces = *h;
}

static void
fake_filter_reject(UsbredirPeer *peer, gpointer user_data)
{
    ((Fake *)user_data)->filter_rejects++;
}

static void
fake_disconnect_ack(UsbredirPeer *peer, gpointer user_data)
{
    ((Fake *)user_data)->disconnect_acks++;
}

static void
fake_control(UsbredirPeer *peer, const UsbredirPeerControl *control, gpointer user_data)
{
    Fake *fake = user_data;
    if (fake->is_host)
        fake->control_requests++; /* the fake host: a request */
    else
        fake->control_answers++; /* the fake QEMU: an answer */
}

static void
fake_interrupt(UsbredirPeer *peer, guint64 id, const struct usb_redir_interrupt_packet_header *h,
               const guint8 *data, gint length, gpointer user_data)
{
    ((Fake *)user_data)->interrupt_packets++;
}

static void
fake_init(Fake *fake, int fd, gboolean host)
{
    static const UsbredirPeerEvents events = {
        .device_connect = fake_connect,
        .device_disconnect = fake_disconnect,
        .interface_info = fake_interface_info,
        .filter_reject = fake_filter_reject,
        .device_disconnect_ack = fake_disconnect_ack,
        .control_packet = fake_control,
        .interrupt_packet = fake_interrupt,
    };
    /* with the capabilities QEMU and usbredirhost both announce that
     * GwProxy cares about */
    const UsbredirPeerConfig config = {
        .role = host ? USBREDIR_PEER_HOST : USBREDIR_PEER_GUEST,
        .version = host ? "fake-host" : "fake-qemu",
        .caps = USBREDIR_PEER_CAP_FILTER | USBREDIR_PEER_CAP_DEVICE_DISCONNECT_ACK,
        .log_level = usbredirparser_warning,
    };

    fake->is_host = host;
    fake->reading = TRUE;
    fake->peer = usbredir_peer_new(fd, &config, &events, fake);
}

static void
fake_io(Fake *fake)
{
    if (fake->reading)
        usbredir_peer_io(fake->peer);
    else
        usbredir_peer_flush(fake->peer);
}

/* The fake's parser, to send packets with. */
static struct usbredirparser *
fake_parser(Fake *fake)
{
    return usbredir_peer_get_parser(fake->peer);
}

/* ---- Harness -------------------------------------------------------------- */

static gboolean
harness_check(GwProxy *proxy, const PolicyDevice *device, gchar **reason, gpointer user_data)
{
    Harness *h = user_data;
    for (guint i = 0; h->deny_class_08 && i < device->interfaces->len; i++) {
        if (g_array_index(device->interfaces, PolicyInterface, i).klass == 0x08) {
            *reason = g_strdup("mass storage is not lent");
            return FALSE;
        }
    }
    return TRUE;
}

static void
harness_closed(GwProxy *proxy, GwProxyEnd end, const gchar *reason, gpointer user_data)
{
    Harness *h = user_data;
    h->ended = TRUE;
    h->end = end;
    h->reason = g_strdup(reason);
}

static void
harness_init(Harness *h)
{
    static const GwProxyCallbacks callbacks = {.check = harness_check, .closed = harness_closed};
    int client_pair[2], qemu_pair[2];
    g_autoptr(GSocket) client = NULL;
    g_autoptr(GSocket) qemu = NULL;
    g_autoptr(GError) error = NULL;

    memset(h, 0, sizeof(*h));
    h->deny_class_08 = TRUE;
    g_assert_cmpint(socketpair(AF_UNIX, SOCK_STREAM, 0, client_pair), ==, 0);
    g_assert_cmpint(socketpair(AF_UNIX, SOCK_STREAM, 0, qemu_pair), ==, 0);
    client = g_socket_new_from_fd(client_pair[1], &error);
    g_assert_no_error(error);
    qemu = g_socket_new_from_fd(qemu_pair[0], &error);
    g_assert_no_error(error);
    fake_init(&h->host, client_pair[0], TRUE);
    fake_init(&h->qemu, qemu_pair[1], FALSE);
    h->proxy = gw_proxy_new(client, qemu, "test", &callbacks, h, &error);
    g_assert_no_error(error);
    g_assert_nonnull(h->proxy);
}

static void
harness_clear(Harness *h)
{
    g_clear_pointer(&h->proxy, gw_proxy_free);
    g_clear_pointer(&h->host.peer, usbredir_peer_free);
    g_clear_pointer(&h->qemu.peer, usbredir_peer_free);
    g_free(h->reason);
}

static void
harness_step(Harness *h)
{
    fake_io(&h->host);
    fake_io(&h->qemu);
    while (g_main_context_iteration(NULL, FALSE))
        ;
    fake_io(&h->host);
    fake_io(&h->qemu);
}

static gboolean
harness_run(Harness *h, gboolean (*done)(Harness *))
{
    gint64 deadline = g_get_monotonic_time() + TEST_TIMEOUT_MS * 1000;
    while (!done(h)) {
        if (g_get_monotonic_time() > deadline)
            return FALSE;
        harness_step(h);
        g_usleep(200);
    }
    return TRUE;
}

/* Runs for @ms, whatever happens. */
static void
harness_settle(Harness *h, guint ms)
{
    gint64 until = g_get_monotonic_time() + ms * 1000;
    while (g_get_monotonic_time() < until) {
        harness_step(h);
        g_usleep(200);
    }
}

static gboolean
done_hellos(Harness *h)
{
    return usbredir_peer_has_hello(h->host.peer) && usbredir_peer_has_hello(h->qemu.peer);
}

static gboolean
done_ended(Harness *h)
{
    return h->ended;
}

static gboolean
done_connected(Harness *h)
{
    return h->qemu.connects > 0 || h->ended;
}

static gboolean
done_answer(Harness *h)
{
    return h->qemu.control_answers > 0 || h->ended;
}

static gboolean
done_request(Harness *h)
{
    return h->host.control_requests > 0 || h->ended;
}

static gboolean
done_disconnect_acked(Harness *h)
{
    return (h->qemu.disconnects > 0 && h->host.disconnect_acks > 0) || h->ended;
}

/* ---- Packet makers ------------------------------------------------------- */

static void
send_interfaces(Harness *h, guint8 klass, guint8 subclass, guint8 protocol)
{
    struct usb_redir_interface_info_header info = {.interface_count = 1};
    info.interface[0] = 0;
    info.interface_class[0] = klass;
    info.interface_subclass[0] = subclass;
    info.interface_protocol[0] = protocol;
    usbredirparser_send_interface_info(fake_parser(&h->host), &info);
}

/* ep0 and interrupt IN 0x81 on interface 0 */
static void
send_endpoints(Harness *h)
{
    struct usb_redir_ep_info_header ep = {0};
    memset(ep.type, usb_redir_type_invalid, sizeof(ep.type));
    ep.type[0] = ep.type[16] = usb_redir_type_control;
    ep.max_packet_size[0] = ep.max_packet_size[16] = 64;
    ep.type[17] = usb_redir_type_interrupt;
    ep.interval[17] = 10;
    ep.max_packet_size[17] = 64;
    usbredirparser_send_ep_info(fake_parser(&h->host), &ep);
}

static void
send_connect(Harness *h)
{
    struct usb_redir_device_connect_header c = {
        .speed = usb_redir_speed_full,
        .device_class = 0xff,
        .vendor_id = 0x0529,
        .product_id = 0x0001,
        .device_version_bcd = 0x0100,
    };
    usbredirparser_send_device_connect(fake_parser(&h->host), &c);
}

static void
lend_device(Harness *h)
{
    g_assert_true(harness_run(h, done_hellos));
    send_interfaces(h, 0xff, 0x00, 0x00);
    send_endpoints(h);
    send_connect(h);
    g_assert_true(harness_run(h, done_connected));
    g_assert_false(h->ended);
    g_assert_cmpuint(h->qemu.connects, ==, 1);
}

/* QEMU asks for @length bytes IN on ep0; waits until the host saw it. */
static void
qemu_control_in(Harness *h, guint16 length)
{
    struct usb_redir_control_packet_header c = {
        .endpoint = 0x80, .request = 0x02, .requesttype = 0xc0, .length = length};
    usbredirparser_send_control_packet(fake_parser(&h->qemu), 0x123456789aULL, &c, NULL, 0);
    g_assert_true(harness_run(h, done_request));
    g_assert_false(h->ended);
}

static void
host_answer_in(Harness *h, guint64 id, guint16 length)
{
    struct usb_redir_control_packet_header c = usbredir_peer_get_control(h->host.peer)->header;
    g_autofree guint8 *data = g_malloc(length);
    for (guint i = 0; i < length; i++)
        data[i] = (guint8)(i * 7 + 1);
    c.status = usb_redir_success;
    c.length = length;
    usbredirparser_send_control_packet(fake_parser(&h->host), id, &c, data, length);
}

/* A raw packet with 64-bit ids (both fakes and the proxy have the cap). */
static void
send_raw(Harness *h, guint32 type, guint32 length, const void *payload, gsize payload_len)
{
    guint8 buf[16 + 512];
    guint64 id = 0;
    g_assert_cmpuint(payload_len, <=, 512);
    memcpy(buf, &type, 4);
    memcpy(buf + 4, &length, 4);
    memcpy(buf + 8, &id, 8);
    if (payload_len > 0)
        memcpy(buf + 16, payload, payload_len);
    g_assert_cmpint(send(usbredir_peer_get_fd(h->host.peer), buf, 16 + payload_len, MSG_NOSIGNAL),
                    ==, (gssize)(16 + payload_len));
}

static void
assert_ended(Harness *h, GwProxyEnd end, const gchar *reason_part)
{
    g_assert_true(harness_run(h, done_ended));
    g_test_message("ended (%s): %s", gw_proxy_end_to_string(h->end), h->reason);
    g_assert_cmpstr(gw_proxy_end_to_string(h->end), ==, gw_proxy_end_to_string(end));
    if (reason_part != NULL)
        g_assert_nonnull(strstr(h->reason, reason_part));
    /* the peers see the connection closed */
    harness_settle(h, 20);
    g_assert_true(usbredir_peer_is_closed(h->host.peer));
    g_assert_true(usbredir_peer_is_closed(h->qemu.peer));
}

/* ---- Cases ---------------------------------------------------------------- */

static void
test_relay_control(void)
{
    Harness h;
    GwProxyStats stats;
    const UsbredirPeerControl *request, *answer;

    harness_init(&h);
    lend_device(&h);
    g_assert_cmphex(h.qemu.connect.vendor_id, ==, 0x0529);
    g_assert_cmphex(h.qemu.connect.device_version_bcd, ==, 0x0100);
    g_assert_cmpuint(h.qemu.interfaces.interface_count, ==, 1);
    g_assert_cmphex(h.qemu.interfaces.interface_class[0], ==, 0xff);

    qemu_control_in(&h, 16);
    /* the proxy chose the id the host sees; QEMU gets its own back */
    request = usbredir_peer_get_control(h.host.peer);
    g_assert_cmphex(request->header.request, ==, 0x02);
    g_assert_cmpuint(request->header.length, ==, 16);
    host_answer_in(&h, request->id, 16);
    g_assert_true(harness_run(&h, done_answer));
    g_assert_false(h.ended);
    answer = usbredir_peer_get_control(h.qemu.peer);
    g_assert_cmphex(answer->id, ==, 0x123456789aULL);
    g_assert_cmpint(answer->length, ==, 16);
    for (guint i = 0; i < 16; i++)
        g_assert_cmphex(answer->data[i], ==, (guint8)(i * 7 + 1));

    /* the device leaves: QEMU sees it, the host is acknowledged */
    usbredirparser_send_device_disconnect(fake_parser(&h.host));
    g_assert_true(harness_run(&h, done_disconnect_acked));
    g_assert_false(h.ended);
    g_assert_false(gw_proxy_has_device(h.proxy));

    gw_proxy_get_stats(h.proxy, &stats);
    g_assert_cmpuint(stats.client_packets_in, >=, 6);
    g_assert_cmpuint(stats.qemu_packets_out, >=, 5);
    g_assert_cmpuint(stats.client_bytes_in, >, 0);
    g_assert_cmpuint(stats.qemu_bytes_out, >, 0);
    g_assert_cmpuint(stats.pending, ==, 0);
    harness_clear(&h);
}

static void
test_denied(void)
{
    Harness h;

    harness_init(&h);
    g_assert_true(harness_run(&h, done_hellos));
    send_interfaces(&h, 0x08, 0x06, 0x50);
    send_endpoints(&h);
    send_connect(&h);
    assert_ended(&h, GW_PROXY_END_DENIED, "mass storage is not lent");
    g_assert_cmpuint(h.qemu.connects, ==, 0);
    g_assert_cmpuint(h.qemu.interface_infos, ==, 0);
    g_assert_cmpuint(h.host.filter_rejects, ==, 1);
    harness_clear(&h);
}

static void
test_recheck_new_configuration(void)
{
    Harness h;

    harness_init(&h);
    lend_device(&h);
    /* after a set_configuration a host re-sends interface_info: a device
     * that turns into mass storage is refused, QEMU loses it */
    send_interfaces(&h, 0x08, 0x06, 0x50);
    assert_ended(&h, GW_PROXY_END_DENIED, "denied");
    g_assert_cmpuint(h.qemu.disconnects, ==, 1);
    g_assert_cmphex(h.qemu.interfaces.interface_class[0], ==, 0xff);
    harness_clear(&h);
}

static void
test_interface_count_33(void)
{
    Harness h;
    struct usb_redir_interface_info_header info = {.interface_count = 33};

    harness_init(&h);
    g_assert_true(harness_run(&h, done_hellos));
    send_raw(&h, usb_redir_interface_info, sizeof(info), &info, sizeof(info));
    assert_ended(&h, GW_PROXY_END_CLIENT_PROTOCOL, "malformed");
    g_assert_cmpuint(h.qemu.interface_infos, ==, 0);
    harness_clear(&h);
}

static void
test_ep_info_first(void)
{
    Harness h;

    harness_init(&h);
    g_assert_true(harness_run(&h, done_hellos));
    send_endpoints(&h);
    assert_ended(&h, GW_PROXY_END_CLIENT_PROTOCOL, "ep_info before interface_info");
    harness_clear(&h);
}

static void
test_connect_without_info(void)
{
    Harness h;

    harness_init(&h);
    g_assert_true(harness_run(&h, done_hellos));
    send_connect(&h);
    assert_ended(&h, GW_PROXY_END_CLIENT_PROTOCOL, "before interface_info");
    g_assert_cmpuint(h.qemu.connects, ==, 0);
    harness_clear(&h);
}

static void
test_connect_twice(void)
{
    Harness h;

    harness_init(&h);
    lend_device(&h);
    send_connect(&h);
    assert_ended(&h, GW_PROXY_END_CLIENT_PROTOCOL, "device_connect twice");
    g_assert_cmpuint(h.qemu.connects, ==, 1);
    harness_clear(&h);
}

static void
test_endpoint_of_unknown_interface(void)
{
    Harness h;
    struct usb_redir_ep_info_header ep = {0};

    harness_init(&h);
    g_assert_true(harness_run(&h, done_hellos));
    send_interfaces(&h, 0xff, 0, 0);
    memset(ep.type, usb_redir_type_invalid, sizeof(ep.type));
    ep.type[0] = ep.type[16] = usb_redir_type_control;
    ep.type[18] = usb_redir_type_bulk;
    ep.interface[18] = 3; /* not listed */
    usbredirparser_send_ep_info(fake_parser(&h.host), &ep);
    assert_ended(&h, GW_PROXY_END_CLIENT_PROTOCOL, "interface 3");
    harness_clear(&h);
}

static void
test_data_unknown_endpoint(void)
{
    Harness h;
    struct usb_redir_interrupt_packet_header ip = {.endpoint = 0x83, .length = 8};
    guint8 data[8] = {0};

    harness_init(&h);
    lend_device(&h);
    usbredirparser_send_interrupt_packet(fake_parser(&h.host), 1, &ip, data, sizeof(data));
    assert_ended(&h, GW_PROXY_END_CLIENT_PROTOCOL, "endpoint 83");
    g_assert_cmpuint(h.qemu.interrupt_packets, ==, 0);
    harness_clear(&h);
}

static void
test_answer_unknown_id(void)
{
    Harness h;

    harness_init(&h);
    lend_device(&h);
    qemu_control_in(&h, 8);
    host_answer_in(&h, usbredir_peer_get_control(h.host.peer)->id + 1000, 8);
    assert_ended(&h, GW_PROXY_END_CLIENT_PROTOCOL, "answers no request");
    g_assert_cmpuint(h.qemu.control_answers, ==, 0);
    harness_clear(&h);
}

static void
test_answer_oversize(void)
{
    Harness h;

    harness_init(&h);
    lend_device(&h);
    qemu_control_in(&h, 4);
    host_answer_in(&h, usbredir_peer_get_control(h.host.peer)->id, 200);
    assert_ended(&h, GW_PROXY_END_CLIENT_PROTOCOL, "200 bytes, 4 were asked for");
    g_assert_cmpuint(h.qemu.control_answers, ==, 0);
    harness_clear(&h);
}

static void
test_raw_oversize_length(void)
{
    Harness h;
    struct usb_redir_bulk_packet_header bulk = {.endpoint = 0x82};

    harness_init(&h);
    lend_device(&h);
    /* a header announcing more than usbredir permits */
    send_raw(&h, usb_redir_bulk_packet, 0x7fffffff, &bulk, sizeof(bulk));
    assert_ended(&h, GW_PROXY_END_CLIENT_PROTOCOL, "announced a packet of 2147483647 bytes");
    harness_clear(&h);
}

/* A header announcing 100 MiB (usbredir allows 128): refused at the
 * header, before anything is allocated for it or reaches QEMU. */
static void
test_raw_length_over_proxy_limit(void)
{
    Harness h;
    struct usb_redir_bulk_packet_header bulk = {.endpoint = 0x82};

    harness_init(&h);
    lend_device(&h);
    send_raw(&h, usb_redir_bulk_packet, 100 * 1024 * 1024, &bulk, sizeof(bulk));
    assert_ended(&h, GW_PROXY_END_CLIENT_PROTOCOL, "announced a packet of 104857600 bytes");
    g_assert_cmpuint(h.qemu.control_answers, ==, 0);
    harness_clear(&h);
}

static void
test_garbage(void)
{
    Harness h;
    static const guint8 junk[64] = {0xff, 0xff, 0xff, 0xff, 0x00, 0x00, 0x10, 0x00};

    harness_init(&h);
    g_assert_true(harness_run(&h, done_hellos));
    g_assert_cmpint(send(usbredir_peer_get_fd(h.host.peer), junk, sizeof(junk), MSG_NOSIGNAL), ==,
                    sizeof(junk));
    assert_ended(&h, GW_PROXY_END_CLIENT_PROTOCOL, "malformed");
    g_assert_cmpuint(h.qemu.connects, ==, 0);
    harness_clear(&h);
}

static void
test_client_gone(void)
{
    Harness h;

    harness_init(&h);
    lend_device(&h);
    shutdown(usbredir_peer_get_fd(h.host.peer), SHUT_RDWR);
    assert_ended(&h, GW_PROXY_END_CLIENT_CLOSED, NULL);
    /* QEMU was told before the connection closed */
    g_assert_cmpuint(h.qemu.disconnects, ==, 1);
    harness_clear(&h);
}

/* QEMU stops reading: the proxy must stop reading the client instead of
 * buffering the flood. */
static void
test_backpressure(void)
{
    Harness h;
    GwProxyStats stats;
    struct usb_redir_ep_info_header ep = {0};
    struct usb_redir_interrupt_packet_header ip = {.endpoint = 0x81, .length = TEST_FLOOD_PACKET};
    g_autofree guint8 *data = g_malloc0(TEST_FLOOD_PACKET);
    guint64 total = (guint64)TEST_FLOOD_COUNT * TEST_FLOOD_PACKET;

    harness_init(&h);
    g_assert_true(harness_run(&h, done_hellos));
    send_interfaces(&h, 0xff, 0, 0);
    memset(ep.type, usb_redir_type_invalid, sizeof(ep.type));
    ep.type[0] = ep.type[16] = usb_redir_type_control;
    ep.type[17] = usb_redir_type_interrupt;
    ep.max_packet_size[17] = 64;
    usbredirparser_send_ep_info(fake_parser(&h.host), &ep);
    send_connect(&h);
    g_assert_true(harness_run(&h, done_connected));

    h.qemu.reading = FALSE;
    for (guint i = 0; i < TEST_FLOOD_COUNT; i++)
        usbredirparser_send_interrupt_packet(fake_parser(&h.host), i, &ip, data, TEST_FLOOD_PACKET);
    harness_settle(&h, 300);
    g_assert_false(h.ended);
    gw_proxy_get_stats(h.proxy, &stats);
    g_test_message("while QEMU does not read: %" G_GUINT64_FORMAT
                   " bytes in from the client, %" G_GUINT64_FORMAT " queued for QEMU",
                   stats.client_bytes_in, stats.qemu_buffered);
    g_assert_cmpuint(stats.qemu_buffered, <=, GW_PROXY_MAX_BUFFERED + TEST_FLOOD_PACKET + 64);
    g_assert_cmpuint(stats.client_bytes_in, <, total);

    /* QEMU reads again: everything arrives */
    h.qemu.reading = TRUE;
    while (h.qemu.interrupt_packets < TEST_FLOOD_COUNT && !h.ended) {
        gint64 before = g_get_monotonic_time();
        harness_step(&h);
        g_assert_cmpint(g_get_monotonic_time() - before, <, TEST_TIMEOUT_MS * 1000);
    }
    g_assert_false(h.ended);
    g_assert_cmpuint(h.qemu.interrupt_packets, ==, TEST_FLOOD_COUNT);
    harness_clear(&h);
}

/* ---- Descriptors (QEMU's GET_DESCRIPTOR reads and the client's answers) -- */

#define USB_REQ_GET_DESCRIPTOR 0x06
#define USB_RT_IN_DEVICE       0x80
#define USB_RT_IN_INTERFACE    0x81

/* What send_connect()/send_interfaces(ff)/send_endpoints() announce:
 * 0529:0001 class ff bcd 0x0100, interface 0 ff:00:00, interrupt IN 0x81. */
#define DESC_DEVICE_HASP "12 01 00 02 ff 00 00 40 29 05 01 00 00 01 01 02 03 01"
#define DESC_CONFIG_HASP                                                                           \
    "09 02 19 00 01 01 00 80 32"                                                                   \
    " 09 04 00 00 01 ff 00 00 00"                                                                  \
    " 07 05 81 03 40 00 0a"
/* A USB keyboard's device descriptor: 046d:c31c, class 00 (per interface). */
#define DESC_DEVICE_KEYBOARD "12 01 00 02 00 00 00 08 6d 04 1c c3 00 01 01 02 00 01"
/* A configuration with a HID boot-keyboard interface 0 (03:01:01), its HID
 * descriptor and interrupt IN 0x81. */
#define DESC_CONFIG_BOOT_KEYBOARD                                                                  \
    "09 02 22 00 01 01 00 a0 32"                                                                   \
    " 09 04 00 00 01 03 01 01 00"                                                                  \
    " 09 21 11 01 00 01 22 3f 00"                                                                  \
    " 07 05 81 03 08 00 0a"
/* The approved vendor interface, but with a HID descriptor in it. */
#define DESC_CONFIG_VENDOR_WITH_HID                                                                \
    "09 02 22 00 01 01 00 80 32"                                                                   \
    " 09 04 00 00 01 ff 00 00 00"                                                                  \
    " 09 21 11 01 00 01 22 3f 00"                                                                  \
    " 07 05 81 03 40 00 0a"
/* Alternate setting 1 of interface 0 turns it into a boot keyboard. */
#define DESC_CONFIG_ALT_KEYBOARD                                                                   \
    "09 02 29 00 01 01 00 80 32"                                                                   \
    " 09 04 00 00 01 ff 00 00 00"                                                                  \
    " 07 05 81 03 40 00 0a"                                                                        \
    " 09 04 00 01 01 03 01 01 00"                                                                  \
    " 07 05 81 03 08 00 0a"
/* The endpoint descriptor's bLength (12) runs past wTotalLength. */
#define DESC_CONFIG_TRUNCATED                                                                      \
    "09 02 19 00 01 01 00 80 32"                                                                   \
    " 09 04 00 00 01 ff 00 00 00"                                                                  \
    " 0c 05 81 03 40 00 0a"
/* The boot keyboard report descriptor of the HID specification (B.1). */
#define DESC_REPORT_KEYBOARD                                                                       \
    "05 01 09 06 a1 01 05 07 19 e0 29 e7 15 00 25 01 75 01 95 08 81 02 95 01 75 08 81 01"          \
    " 95 05 75 01 05 08 19 01 29 05 91 02 95 01 75 03 91 01 95 06 75 08 15 00 25 65 05 07"         \
    " 19 00 29 65 81 00 c0"

/* "12 01 00 02" -> bytes */
static GByteArray *
hex_bytes(const gchar *hex)
{
    g_autoptr(GError) error = NULL;
    GByteArray *out = sim_hex_decode_spaced(hex, &error);

    g_assert_no_error(error);
    return out;
}

/* QEMU asks GET_DESCRIPTOR(@type, @index) with @windex for @length bytes;
 * waits until the host saw the request. */
static void
qemu_get_descriptor(Harness *h, guint8 requesttype, guint8 type, guint8 index, guint16 windex,
                    guint16 length)
{
    struct usb_redir_control_packet_header c = {
        .endpoint = 0x80,
        .request = USB_REQ_GET_DESCRIPTOR,
        .requesttype = requesttype,
        .value = (guint16)(type << 8 | index),
        .index = windex,
        .length = length,
    };
    h->host.control_requests = 0;
    h->qemu.control_answers = 0;
    usbredirparser_send_control_packet(fake_parser(&h->qemu), 0x4242, &c, NULL, 0);
    g_assert_true(harness_run(h, done_request));
    g_assert_false(h->ended);
}

/* The host answers the last request with @hex. */
static void
host_answer_hex(Harness *h, const gchar *hex)
{
    g_autoptr(GByteArray) data = hex_bytes(hex);
    const UsbredirPeerControl *request = usbredir_peer_get_control(h->host.peer);
    struct usb_redir_control_packet_header c = request->header;
    c.status = usb_redir_success;
    c.length = (guint16)data->len;
    usbredirparser_send_control_packet(fake_parser(&h->host), request->id, &c, data->data,
                                       (int)data->len);
}

/* The answer @hex reaches QEMU unchanged and the session goes on. */
static void
assert_descriptor_passes(Harness *h, const gchar *hex)
{
    g_autoptr(GByteArray) want = hex_bytes(hex);
    const UsbredirPeerControl *answer;

    host_answer_hex(h, hex);
    g_assert_true(harness_run(h, done_answer));
    g_assert_false(h->ended);
    answer = usbredir_peer_get_control(h->qemu.peer);
    g_assert_cmpuint(answer->id, ==, 0x4242);
    g_assert_cmpint(answer->header.status, ==, usb_redir_success);
    g_assert_cmpmem(answer->data, answer->length, want->data, want->len);
}

/* The answer @hex ends the session as a denial naming @reason_part; QEMU
 * never gets it and loses the device. */
static void
assert_descriptor_denied(Harness *h, const gchar *hex, const gchar *reason_part)
{
    host_answer_hex(h, hex);
    assert_ended(h, GW_PROXY_END_DENIED, reason_part);
    g_assert_cmpuint(h->qemu.control_answers, ==, 0);
    g_assert_cmpuint(h->qemu.disconnects, ==, 1);
    g_assert_cmpuint(h->host.filter_rejects, ==, 1);
}

static void
test_descriptor_honest(void)
{
    Harness h;

    harness_init(&h);
    lend_device(&h);
    /* as Linux enumerates: 64 bytes of the device descriptor, then the
     * configuration's header, then all of it, then strings */
    qemu_get_descriptor(&h, USB_RT_IN_DEVICE, 1, 0, 0, 64);
    assert_descriptor_passes(&h, DESC_DEVICE_HASP);
    qemu_get_descriptor(&h, USB_RT_IN_DEVICE, 2, 0, 0, 9);
    assert_descriptor_passes(&h, "09 02 19 00 01 01 00 80 32");
    qemu_get_descriptor(&h, USB_RT_IN_DEVICE, 2, 0, 0, 0x19);
    assert_descriptor_passes(&h, DESC_CONFIG_HASP);
    qemu_get_descriptor(&h, USB_RT_IN_DEVICE, 3, 0, 0, 255);
    assert_descriptor_passes(&h, "04 03 09 04");
    qemu_get_descriptor(&h, USB_RT_IN_DEVICE, 3, 2, 0x0409, 255);
    assert_descriptor_passes(&h, "0a 03 48 00 41 00 53 00 50 00");
    harness_clear(&h);
}

static void
test_descriptor_device_keyboard(void)
{
    Harness h;

    harness_init(&h);
    lend_device(&h);
    qemu_get_descriptor(&h, USB_RT_IN_DEVICE, 1, 0, 0, 64);
    assert_descriptor_denied(&h, DESC_DEVICE_KEYBOARD, "046d:c31c");
    g_test_message("reason: %s", h.reason);
    g_assert_nonnull(strstr(h.reason, "device descriptor"));
    harness_clear(&h);
}

static void
test_descriptor_config_boot_keyboard(void)
{
    Harness h;

    harness_init(&h);
    lend_device(&h);
    qemu_get_descriptor(&h, USB_RT_IN_DEVICE, 2, 0, 0, 255);
    assert_descriptor_denied(&h, DESC_CONFIG_BOOT_KEYBOARD, "interface 0");
    g_assert_nonnull(strstr(h.reason, "03:01:01"));
    harness_clear(&h);
}

static void
test_descriptor_config_vendor_with_hid(void)
{
    Harness h;

    harness_init(&h);
    lend_device(&h);
    qemu_get_descriptor(&h, USB_RT_IN_DEVICE, 2, 0, 0, 255);
    assert_descriptor_denied(&h, DESC_CONFIG_VENDOR_WITH_HID, "HID descriptor");
    harness_clear(&h);
}

static void
test_descriptor_config_alt_keyboard(void)
{
    Harness h;

    harness_init(&h);
    lend_device(&h);
    qemu_get_descriptor(&h, USB_RT_IN_DEVICE, 2, 0, 0, 255);
    assert_descriptor_denied(&h, DESC_CONFIG_ALT_KEYBOARD, "alternate setting 1");
    harness_clear(&h);
}

static void
test_descriptor_config_truncated(void)
{
    Harness h;

    harness_init(&h);
    lend_device(&h);
    qemu_get_descriptor(&h, USB_RT_IN_DEVICE, 2, 0, 0, 255);
    assert_descriptor_denied(&h, DESC_CONFIG_TRUNCATED, "malformed");
    harness_clear(&h);
}

static void
test_descriptor_hid_report(void)
{
    Harness h;

    harness_init(&h);
    lend_device(&h);
    qemu_get_descriptor(&h, USB_RT_IN_INTERFACE, 0x22, 0, 0, 63);
    assert_descriptor_denied(&h, DESC_REPORT_KEYBOARD, "HID report descriptor");
    g_assert_nonnull(strstr(h.reason, "ff:00:00"));
    harness_clear(&h);
}

/* An answer longer than its own length field says (asked for more). */
static void
test_descriptor_longer_than_its_length(void)
{
    Harness h;

    harness_init(&h);
    lend_device(&h);
    qemu_get_descriptor(&h, USB_RT_IN_DEVICE, 3, 2, 0x0409, 255);
    assert_descriptor_denied(&h, "04 03 48 00 41 00 53 00 50 00", "string descriptor");
    harness_clear(&h);
}

/* QEMU switches interface 0 to an alternate setting; the client says the
 * interface is now a boot keyboard: refused although the policy check
 * (which only refuses mass storage here) would let it pass. */
static void
test_alt_setting_to_keyboard(void)
{
    Harness h;
    struct usb_redir_set_alt_setting_header alt = {.interface = 0, .alt = 1};

    harness_init(&h);
    lend_device(&h);
    usbredirparser_send_set_alt_setting(fake_parser(&h.qemu), 7, &alt);
    harness_settle(&h, 20);
    g_assert_false(h.ended);
    send_interfaces(&h, 0x03, 0x01, 0x01);
    assert_ended(&h, GW_PROXY_END_DENIED, "03:01:01");
    g_assert_cmpuint(h.qemu.interface_infos, ==, 1);
    g_assert_cmphex(h.qemu.interfaces.interface_class[0], ==, 0xff);
    harness_clear(&h);
}

/* A new configuration that adds an interface nobody approved. */
static void
test_reconfigure_adds_interface(void)
{
    Harness h;
    struct usb_redir_interface_info_header info = {.interface_count = 2};

    harness_init(&h);
    lend_device(&h);
    info.interface[0] = 0;
    info.interface_class[0] = 0xff;
    info.interface[1] = 1;
    info.interface_class[1] = 0xff;
    usbredirparser_send_interface_info(fake_parser(&h.host), &info);
    assert_ended(&h, GW_PROXY_END_DENIED, "interface 1");
    g_assert_cmpuint(h.qemu.interface_infos, ==, 1);
    harness_clear(&h);
}

int
main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    g_test_add_func("/proxy/relay-control", test_relay_control);
    g_test_add_func("/proxy/denied", test_denied);
    g_test_add_func("/proxy/recheck-new-configuration", test_recheck_new_configuration);
    g_test_add_func("/proxy/raw-length-over-proxy-limit", test_raw_length_over_proxy_limit);
    g_test_add_func("/proxy/interface-count-33", test_interface_count_33);
    g_test_add_func("/proxy/ep-info-before-interface-info", test_ep_info_first);
    g_test_add_func("/proxy/connect-without-info", test_connect_without_info);
    g_test_add_func("/proxy/connect-twice", test_connect_twice);
    g_test_add_func("/proxy/endpoint-of-unknown-interface", test_endpoint_of_unknown_interface);
    g_test_add_func("/proxy/data-unknown-endpoint", test_data_unknown_endpoint);
    g_test_add_func("/proxy/answer-unknown-id", test_answer_unknown_id);
    g_test_add_func("/proxy/answer-oversize", test_answer_oversize);
    g_test_add_func("/proxy/raw-oversize-length", test_raw_oversize_length);
    g_test_add_func("/proxy/garbage", test_garbage);
    g_test_add_func("/proxy/client-gone", test_client_gone);
    g_test_add_func("/proxy/backpressure", test_backpressure);
    g_test_add_func("/proxy/descriptor/honest", test_descriptor_honest);
    g_test_add_func("/proxy/descriptor/device-keyboard", test_descriptor_device_keyboard);
    g_test_add_func("/proxy/descriptor/config-boot-keyboard", test_descriptor_config_boot_keyboard);
    g_test_add_func("/proxy/descriptor/config-vendor-with-hid",
                    test_descriptor_config_vendor_with_hid);
    g_test_add_func("/proxy/descriptor/config-alt-keyboard", test_descriptor_config_alt_keyboard);
    g_test_add_func("/proxy/descriptor/config-truncated", test_descriptor_config_truncated);
    g_test_add_func("/proxy/descriptor/hid-report", test_descriptor_hid_report);
    g_test_add_func("/proxy/descriptor/longer-than-its-length",
                    test_descriptor_longer_than_its_length);
    g_test_add_func("/proxy/alt-setting-to-keyboard", test_alt_setting_to_keyboard);
    g_test_add_func("/proxy/reconfigure-adds-interface", test_reconfigure_adds_interface);
    return g_test_run();
}
