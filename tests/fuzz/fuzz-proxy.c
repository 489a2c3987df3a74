/* libFuzzer target for GwProxy (gateway/gw-proxy.c), the validating
 * usbredir proxy: the input is what an untrusted lending client sends. It
 * goes into a GwProxy over a socketpair in small chunks, the main context
 * running between chunks; a fake QEMU (a usbredirparser guest) on the other
 * socketpair says hello and, once it has a device, asks for a control and a
 * bulk transfer and starts interrupt and bulk receiving, so answers later in
 * the input find requests (the proxy numbers them 1, 2, 3, 4 on the client
 * side). Never a crash, a leak, a sanitizer report or a broken invariant:
 *
 *   - QEMU never sees a device with a mass-storage (08) interface: the
 *     check refuses them;
 *   - QEMU never sees device_connect without interface_info before it;
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
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>
#include <usbredirfilter.h>
#include <usbredirparser.h>

#include "gw-proxy.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define FUZZ_CHECK(cond)                                                                           \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            g_printerr("%s:%d: invariant broken: %s\n", __FILE__, __LINE__, #cond);                \
            abort();                                                                               \
        }                                                                                          \
    } while (0)

/* Bytes written to the proxy between two runs of the main context. */
#define FUZZ_CHUNK 48
/* Main-context rounds after each chunk: enough for a packet to cross the
 * proxy and the fake QEMU's answer to come back. */
#define FUZZ_ROUNDS 4

typedef struct {
    int fd;
    struct usbredirparser *parser;
    gboolean interfaces_ok; /* interface_info came and had no 08 interface */
    gboolean asked;
    guint ends;
} FuzzQemu;

static int
fuzz_read(void *priv, uint8_t *data, int count)
{
    FuzzQemu *q = priv;
    ssize_t n = recv(q->fd, data, (size_t)count, MSG_DONTWAIT);
    if (n > 0)
        return (int)n;
    if (n < 0 && (errno == EAGAIN || errno == EINTR))
        return 0;
    return -1;
}

static int
fuzz_write(void *priv, uint8_t *data, int count)
{
    FuzzQemu *q = priv;
    ssize_t n = send(q->fd, data, (size_t)count, MSG_DONTWAIT | MSG_NOSIGNAL);
    if (n >= 0)
        return (int)n;
    return errno == EAGAIN || errno == EINTR ? 0 : -1;
}

static void
fuzz_log(void *priv, int level, const char *msg)
{
}

static void
fuzz_interface_info(void *priv, struct usb_redir_interface_info_header *h)
{
    FuzzQemu *q = priv;
    FUZZ_CHECK(h->interface_count <= 32);
    for (guint32 i = 0; i < h->interface_count; i++)
        FUZZ_CHECK(h->interface_class[i] != 0x08);
    q->interfaces_ok = TRUE;
}

static void
fuzz_device_connect(void *priv, struct usb_redir_device_connect_header *h)
{
    FuzzQemu *q = priv;
    struct usb_redir_control_packet_header control = {
        .endpoint = 0x80, .request = 6, .requesttype = 0x80, .value = 0x0100, .length = 18};
    struct usb_redir_bulk_packet_header bulk = {.endpoint = 0x82, .length = 512};
    struct usb_redir_start_interrupt_receiving_header interrupt = {.endpoint = 0x81};
    struct usb_redir_start_bulk_receiving_header bulk_rx = {
        .endpoint = 0x83, .bytes_per_transfer = 1024, .no_transfers = 2};

    FUZZ_CHECK(q->interfaces_ok);
    if (q->asked)
        return;
    q->asked = TRUE;
    usbredirparser_send_control_packet(q->parser, 1000, &control, NULL, 0);
    usbredirparser_send_bulk_packet(q->parser, 1001, &bulk, NULL, 0);
    usbredirparser_send_start_interrupt_receiving(q->parser, 1002, &interrupt);
    if (usbredirparser_peer_has_cap(q->parser, usb_redir_cap_bulk_receiving))
        usbredirparser_send_start_bulk_receiving(q->parser, 1003, &bulk_rx);
}

static void
fuzz_device_disconnect(void *priv)
{
    FuzzQemu *q = priv;
    q->interfaces_ok = FALSE;
    q->asked = FALSE;
}

static void
fuzz_void(void *priv)
{
}

static void
fuzz_ep_info(void *priv, struct usb_redir_ep_info_header *h)
{
}

static void
fuzz_hello(void *priv, struct usb_redir_hello_header *h)
{
}

#define FUZZ_IGNORE(name, header)                                                                  \
    static void fuzz_ignore_##name(void *priv, uint64_t id, struct header *h)                      \
    {                                                                                              \
    }
FUZZ_IGNORE(configuration_status, usb_redir_configuration_status_header)
FUZZ_IGNORE(alt_setting_status, usb_redir_alt_setting_status_header)
FUZZ_IGNORE(iso_stream_status, usb_redir_iso_stream_status_header)
FUZZ_IGNORE(interrupt_receiving_status, usb_redir_interrupt_receiving_status_header)
FUZZ_IGNORE(bulk_streams_status, usb_redir_bulk_streams_status_header)
FUZZ_IGNORE(bulk_receiving_status, usb_redir_bulk_receiving_status_header)

#define FUZZ_IGNORE_DATA(name, header)                                                             \
    static void fuzz_ignore_##name(void *priv, uint64_t id, struct header *h, uint8_t *data,       \
                                   int data_len)                                                   \
    {                                                                                              \
        FuzzQemu *q = priv;                                                                        \
        usbredirparser_free_packet_data(q->parser, data);                                          \
    }
FUZZ_IGNORE_DATA(control_packet, usb_redir_control_packet_header)
FUZZ_IGNORE_DATA(bulk_packet, usb_redir_bulk_packet_header)
FUZZ_IGNORE_DATA(iso_packet, usb_redir_iso_packet_header)
FUZZ_IGNORE_DATA(interrupt_packet, usb_redir_interrupt_packet_header)
FUZZ_IGNORE_DATA(buffered_bulk_packet, usb_redir_buffered_bulk_packet_header)

static void
fuzz_filter(void *priv, struct usbredirfilter_rule *rules, int count)
{
    usbredirfilter_free(rules);
}

static void
fuzz_qemu_init(FuzzQemu *q, int fd)
{
    uint32_t caps[USB_REDIR_CAPS_SIZE] = {0};
    struct usbredirparser *p = usbredirparser_create();

    q->fd = fd;
    q->parser = p;
    p->priv = q;
    p->log_func = fuzz_log;
    p->read_func = fuzz_read;
    p->write_func = fuzz_write;
    p->hello_func = fuzz_hello;
    p->device_connect_func = fuzz_device_connect;
    p->device_disconnect_func = fuzz_device_disconnect;
    p->interface_info_func = fuzz_interface_info;
    p->ep_info_func = fuzz_ep_info;
    p->reset_func = fuzz_void;
    p->device_disconnect_ack_func = fuzz_void;
    p->filter_reject_func = fuzz_void;
    p->filter_filter_func = fuzz_filter;
    p->configuration_status_func = fuzz_ignore_configuration_status;
    p->alt_setting_status_func = fuzz_ignore_alt_setting_status;
    p->iso_stream_status_func = fuzz_ignore_iso_stream_status;
    p->interrupt_receiving_status_func = fuzz_ignore_interrupt_receiving_status;
    p->bulk_streams_status_func = fuzz_ignore_bulk_streams_status;
    p->bulk_receiving_status_func = fuzz_ignore_bulk_receiving_status;
    p->control_packet_func = fuzz_ignore_control_packet;
    p->bulk_packet_func = fuzz_ignore_bulk_packet;
    p->iso_packet_func = fuzz_ignore_iso_packet;
    p->interrupt_packet_func = fuzz_ignore_interrupt_packet;
    p->buffered_bulk_packet_func = fuzz_ignore_buffered_bulk_packet;
    usbredirparser_caps_set_cap(caps, usb_redir_cap_connect_device_version);
    usbredirparser_caps_set_cap(caps, usb_redir_cap_filter);
    usbredirparser_caps_set_cap(caps, usb_redir_cap_device_disconnect_ack);
    usbredirparser_caps_set_cap(caps, usb_redir_cap_ep_info_max_packet_size);
    usbredirparser_caps_set_cap(caps, usb_redir_cap_64bits_ids);
    usbredirparser_caps_set_cap(caps, usb_redir_cap_32bits_bulk_length);
    usbredirparser_caps_set_cap(caps, usb_redir_cap_bulk_receiving);
    usbredirparser_init(p, "fuzz-qemu", caps, USB_REDIR_CAPS_SIZE, 0);
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
fuzz_log_handler(const gchar *domain, GLogLevelFlags level, const gchar *message, gpointer data)
{
    if (level & (G_LOG_LEVEL_CRITICAL | G_LOG_LEVEL_ERROR | G_LOG_LEVEL_WARNING)) {
        g_printerr("%s: %s\n", domain, message);
        abort();
    }
}

static void
fuzz_round(FuzzQemu *q)
{
    for (guint i = 0; i < FUZZ_ROUNDS; i++) {
        while (g_main_context_iteration(NULL, FALSE))
            ;
        usbredirparser_do_read(q->parser);
        if (usbredirparser_has_data_to_write(q->parser))
            usbredirparser_do_write(q->parser);
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
    usbredirparser_destroy(q.parser);
    close(client_pair[0]);
    close(qemu_pair[1]);
    return 0;
}
