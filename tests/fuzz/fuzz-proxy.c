/* libFuzzer target for GwProxy (gateway/gw-proxy.c), the validating
 * usbredir proxy: the input is what an untrusted lending client sends. It
 * goes into a GwProxy over a socketpair in small chunks, the main context
 * running between chunks; a fake QEMU (tests/usbredir-peer, a guest) on the other
 * socketpair says hello and, once it has a device, asks for the device
 * descriptor and a bulk transfer, starts interrupt and bulk receiving, and
 * asks for the configuration descriptor, interface 0's HID report
 * descriptor and string 2, so answers later in the input find requests
 * (the proxy numbers them 1 to 7 on the client side, 1 to 6 when the
 * client lacks bulk_receiving). Never a crash, a leak, a sanitizer report
 * or a broken invariant:
 *
 *   - QEMU never sees a device with a mass-storage (08) interface: the
 *     check refuses them;
 *   - QEMU never sees device_connect without interface_info before it;
 *   - a device descriptor QEMU gets has device_connect's ids; a HID report
 *     descriptor QEMU gets is of an interface announced as HID
 *     (gw-proxy-descriptors.h);
 *   - the session ends exactly once.
 *
 * Run the fuzzer (clang):
 *
 *   CC=clang meson setup /tmp/buildfuzz -Dfuzzing=true -Db_sanitize=address,undefined \
 *       -Db_lundef=false
 *   ninja -C /tmp/buildfuzz tests/fuzz/fuzz-proxy
 *   mkdir -p /tmp/fuzz-proxy-corpus
 *   /tmp/buildfuzz/tests/fuzz/fuzz-proxy /tmp/fuzz-proxy-corpus tests/fuzz/corpus/proxy \
 *       -max_len=4096 -max_total_time=300
 *
 * A crash leaves crash-<sha1>: fix it and copy it to tests/fuzz/corpus/proxy/;
 * fuzz-proxy-replay replays the corpus in every build. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "gw-proxy.h"
#include "usbredir-peer.h"

#include "fuzz-common.h"

/* Bytes written to the proxy between two runs of the main context. */
#define FUZZ_CHUNK 48
/* Main-context rounds after each chunk: enough for a packet to cross the
 * proxy and the fake QEMU's answer to come back. */
#define FUZZ_ROUNDS 4

/* QEMU's ids of its GET_DESCRIPTOR requests */
#define FUZZ_ID_DEVICE_DESCRIPTOR 1000
#define FUZZ_ID_HID_REPORT        1005

typedef struct {
    UsbredirPeer *peer;     /* owned: QEMU's end */
    gboolean interfaces_ok; /* interface_info came and had no 08 interface */
    gboolean asked;
    guint ends;
    gint interface0_class; /* from the last interface_info; -1: not listed */
    guint16 vendor_id;     /* from device_connect */
    guint16 product_id;
} FuzzQemu;

static void
fuzz_interface_info(UsbredirPeer *peer, const struct usb_redir_interface_info_header *h,
                    gpointer user_data)
{
    FuzzQemu *q = user_data;
    FUZZ_CHECK(h->interface_count <= 32);
    q->interface0_class = -1;
    for (guint32 i = 0; i < h->interface_count; i++) {
        FUZZ_CHECK(h->interface_class[i] != 0x08);
        if (h->interface[i] == 0)
            q->interface0_class = h->interface_class[i];
    }
    q->interfaces_ok = TRUE;
}

/* The answers QEMU gets to its descriptor requests agree with the device. */
static void
fuzz_control_packet(UsbredirPeer *peer, const UsbredirPeerControl *control, gpointer user_data)
{
    FuzzQemu *q = user_data;

    if (control->id == FUZZ_ID_DEVICE_DESCRIPTOR && control->length >= 12) {
        FUZZ_CHECK((control->data[8] | control->data[9] << 8) == q->vendor_id);
        FUZZ_CHECK((control->data[10] | control->data[11] << 8) == q->product_id);
    }
    if (control->id == FUZZ_ID_HID_REPORT && control->length > 0)
        FUZZ_CHECK(q->interface0_class == 0x03);
}

static void
fuzz_device_connect(UsbredirPeer *peer, const struct usb_redir_device_connect_header *h,
                    gpointer user_data)
{
    FuzzQemu *q = user_data;
    struct usbredirparser *parser = usbredir_peer_get_parser(peer);
    struct usb_redir_control_packet_header control = {
        .endpoint = 0x80, .request = 6, .requesttype = 0x80, .value = 0x0100, .length = 18};
    struct usb_redir_control_packet_header config = {
        .endpoint = 0x80, .request = 6, .requesttype = 0x80, .value = 0x0200, .length = 255};
    struct usb_redir_control_packet_header report = {
        .endpoint = 0x80, .request = 6, .requesttype = 0x81, .value = 0x2200, .length = 64};
    struct usb_redir_control_packet_header string = {.endpoint = 0x80,
                                                     .request = 6,
                                                     .requesttype = 0x80,
                                                     .value = 0x0302,
                                                     .index = 0x0409,
                                                     .length = 255};
    struct usb_redir_bulk_packet_header bulk = {.endpoint = 0x82, .length = 512};
    struct usb_redir_start_interrupt_receiving_header interrupt = {.endpoint = 0x81};
    struct usb_redir_start_bulk_receiving_header bulk_rx = {
        .endpoint = 0x83, .bytes_per_transfer = 1024, .no_transfers = 2};

    FUZZ_CHECK(q->interfaces_ok);
    q->vendor_id = h->vendor_id;
    q->product_id = h->product_id;
    if (q->asked)
        return;
    q->asked = TRUE;
    usbredirparser_send_control_packet(parser, FUZZ_ID_DEVICE_DESCRIPTOR, &control, NULL, 0);
    usbredirparser_send_bulk_packet(parser, 1001, &bulk, NULL, 0);
    usbredirparser_send_start_interrupt_receiving(parser, 1002, &interrupt);
    if (usbredirparser_peer_has_cap(parser, usb_redir_cap_bulk_receiving))
        usbredirparser_send_start_bulk_receiving(parser, 1003, &bulk_rx);
    usbredirparser_send_control_packet(parser, 1004, &config, NULL, 0);
    usbredirparser_send_control_packet(parser, FUZZ_ID_HID_REPORT, &report, NULL, 0);
    usbredirparser_send_control_packet(parser, 1006, &string, NULL, 0);
}

static void
fuzz_device_disconnect(UsbredirPeer *peer, gpointer user_data)
{
    FuzzQemu *q = user_data;
    q->interfaces_ok = FALSE;
    q->asked = FALSE;
}

/* QEMU's side: the rest of what it receives is dropped, the log is silent. */
static void
fuzz_qemu_init(FuzzQemu *q, int fd)
{
    static const UsbredirPeerEvents events = {
        .device_connect = fuzz_device_connect,
        .device_disconnect = fuzz_device_disconnect,
        .interface_info = fuzz_interface_info,
        .control_packet = fuzz_control_packet,
    };
    static const UsbredirPeerConfig config = {
        .role = USBREDIR_PEER_GUEST,
        .version = "fuzz-qemu",
        .caps = USBREDIR_PEER_CAP_FILTER | USBREDIR_PEER_CAP_DEVICE_DISCONNECT_ACK |
                USBREDIR_PEER_CAP_BULK_RECEIVING,
    };

    q->peer = usbredir_peer_new(fd, &config, &events, q);
}

static gboolean
fuzz_check(GwProxy *proxy, const PolicyDevice *device, gchar **reason, gpointer user_data)
{
    for (guint i = 0; i < device->interfaces->len; i++) {
        if (g_array_index(device->interfaces, PolicyInterface, i).klass == 0x08) {
            *reason = g_strdup("no mass storage");
            return FALSE;
        }
    }
    return TRUE;
}

static void
fuzz_closed(GwProxy *proxy, GwProxyEnd end, const gchar *reason, gpointer user_data)
{
    FuzzQemu *q = user_data;
    FUZZ_CHECK(reason != NULL);
    q->ends++;
    if (g_getenv("FUZZ_PROXY_VERBOSE") != NULL) {
        GwProxyStats stats;
        gw_proxy_get_stats(proxy, &stats);
        g_printerr("  ended (%s): %s; packets client>proxy %" G_GUINT64_FORMAT
                   " proxy>QEMU %" G_GUINT64_FORMAT " QEMU>proxy %" G_GUINT64_FORMAT "\n",
                   gw_proxy_end_to_string(end), reason, stats.client_packets_in,
                   stats.qemu_packets_out, stats.qemu_packets_in);
    }
}

static void
fuzz_round(FuzzQemu *q)
{
    for (guint i = 0; i < FUZZ_ROUNDS; i++) {
        while (g_main_context_iteration(NULL, FALSE))
            ;
        usbredir_peer_io(q->peer);
    }
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const GwProxyCallbacks callbacks = {.check = fuzz_check, .closed = fuzz_closed};
    int client_pair[2], qemu_pair[2];
    g_autoptr(GSocket) client = NULL;
    g_autoptr(GSocket) qemu = NULL;
    FuzzQemu q = {0};
    GwProxy *proxy;

    g_log_set_default_handler(fuzz_log_handler, NULL);
    FUZZ_CHECK(socketpair(AF_UNIX, SOCK_STREAM, 0, client_pair) == 0);
    FUZZ_CHECK(socketpair(AF_UNIX, SOCK_STREAM, 0, qemu_pair) == 0);
    client = g_socket_new_from_fd(client_pair[1], NULL);
    qemu = g_socket_new_from_fd(qemu_pair[0], NULL);
    FUZZ_CHECK(client != NULL && qemu != NULL);
    fuzz_qemu_init(&q, qemu_pair[1]);
    proxy = gw_proxy_new(client, qemu, "fuzz", &callbacks, &q, NULL);
    FUZZ_CHECK(proxy != NULL);

    for (size_t off = 0; off < size && q.ends == 0; off += FUZZ_CHUNK) {
        size_t n = MIN(FUZZ_CHUNK, size - off);
        if (send(client_pair[0], data + off, n, MSG_DONTWAIT | MSG_NOSIGNAL) < 0)
            break;
        fuzz_round(&q);
    }
    /* the client leaves: the session ends, once */
    shutdown(client_pair[0], SHUT_RDWR);
    for (guint i = 0; i < 50 && q.ends == 0; i++)
        fuzz_round(&q);
    FUZZ_CHECK(q.ends == 1);
    fuzz_round(&q);
    FUZZ_CHECK(q.ends == 1);

    gw_proxy_free(proxy);
    usbredir_peer_free(q.peer);
    close(client_pair[0]);
    return 0;
}
