/* usbgw-test-peer: plays QEMU's usb-redir role (the usbredir "guest" side)
 * over a unix socket, driven by a list of steps, printing what it sees so
 * tests can assert data:
 *
 *   usbgw-test-peer [--timeout S] SOCKET STEP…
 *
 * SOCKET is a unix socket path or tcp:HOST:PORT.
 *
 *   connect            wait for device_connect; prints
 *                      "CONNECT vvvv:pppp class cc:ss:pp bcd xxxx" and, once
 *                      the interface info came, "INTERFACES cc:ss:pp …"
 *   challenge HEX32    vendor OUT 0x01 with the challenge, vendor IN 0x02;
 *                      prints "RESPONSE <hex>" (or "STATUS <n>" on failure)
 *   expect SECRET32    the last response must be the key function of the
 *                      last challenge under this secret; prints "MATCH"
 *   control-in REQ LEN vendor IN request REQ; prints "STATUS n LEN m"
 *   disconnect         wait for device_disconnect; prints "DISCONNECT"
 *   hammer SECRET32    challenge after challenge, each checked against the
 *                      secret, until the device disconnects mid-stream;
 *                      prints "HAMMER <n> answers" (0 answers fails)
 *   garbage            send bytes that are not usbredir
 *   sleep MS           keep serving for MS milliseconds
 *   closed             wait for the gateway to close the connection; prints "CLOSED"
 *
 *   usbgw-test-peer --key-answer SECRET32 CHALLENGE32
 *
 * prints the answer a key with this secret gives to this challenge.
 *
 * Exit status 0 when every step completed, 1 on timeout, error or an
 * unexpected close. */
#include <errno.h>
#include <gio/gio.h>
#include <gio/gunixsocketaddress.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>
#include <usbredirparser.h>

#include "../sim/key-protocol.h"
#include "sim-hex.h"

typedef struct {
    int fd;
    struct usbredirparser *parser;
    gboolean connected;
    gboolean interfaces_seen;
    gboolean disconnected;
    gboolean closed;
    gboolean reply_ready;
    guint8 reply_status;
    guint8 reply_data[256];
    int reply_len;
    guint64 next_id;
    guint8 challenge[USBGW_KEY_LEN];
    gboolean have_response;
} Peer;

static void
peer_log(void *priv, int level, const char *msg)
{
    if (level <= usbredirparser_warning)
        fprintf(stderr, "peer: usbredir: %s\n", msg);
}

static int
peer_read(void *priv, uint8_t *data, int count)
{
    Peer *peer = priv;
    ssize_t n = recv(peer->fd, data, (size_t)count, MSG_DONTWAIT);
    if (n > 0)
        return (int)n;
    if (n < 0 && (errno == EAGAIN || errno == EINTR))
        return 0;
    peer->closed = TRUE;
    return -1;
}

static int
peer_write(void *priv, uint8_t *data, int count)
{
    Peer *peer = priv;
    ssize_t n = send(peer->fd, data, (size_t)count, MSG_NOSIGNAL);
    if (n >= 0)
        return (int)n;
    if (errno == EAGAIN || errno == EINTR)
        return 0;
    peer->closed = TRUE;
    return -1;
}

static void
peer_device_connect(void *priv, struct usb_redir_device_connect_header *h)
{
    Peer *peer = priv;
    peer->connected = TRUE;
    peer->disconnected = FALSE;
    printf("CONNECT %04x:%04x class %02x:%02x:%02x bcd %04x\n", h->vendor_id, h->product_id,
           h->device_class, h->device_subclass, h->device_protocol, h->device_version_bcd);
    fflush(stdout);
}

static void
peer_interface_info(void *priv, struct usb_redir_interface_info_header *h)
{
    Peer *peer = priv;
    GString *line = g_string_new("INTERFACES");
    for (guint32 i = 0; i < h->interface_count && i < 32; i++)
        g_string_append_printf(line, " %02x:%02x:%02x", h->interface_class[i],
                               h->interface_subclass[i], h->interface_protocol[i]);
    printf("%s\n", line->str);
    fflush(stdout);
    g_string_free(line, TRUE);
    peer->interfaces_seen = TRUE;
}

static void
peer_device_disconnect(void *priv)
{
    Peer *peer = priv;
    peer->connected = FALSE;
    peer->interfaces_seen = FALSE;
    peer->disconnected = TRUE;
    printf("DISCONNECT\n");
    fflush(stdout);
}

static void
peer_control_packet(void *priv, uint64_t id, struct usb_redir_control_packet_header *h,
                    uint8_t *data, int data_len)
{
    Peer *peer = priv;
    peer->reply_ready = TRUE;
    peer->reply_status = h->status;
    peer->reply_len = MIN(data_len, (int)sizeof(peer->reply_data));
    if (data_len > 0)
        memcpy(peer->reply_data, data, (size_t)peer->reply_len);
    usbredirparser_free_packet_data(peer->parser, data);
}

/* usbredirparser calls every callback unchecked: the ones this peer does
 * not care about still need a body. */
static void
peer_ignore_ep_info(void *priv, struct usb_redir_ep_info_header *h)
{
}

#define PEER_IGNORE_STATUS(name, header)                                                           \
    static void peer_ignore_##name(void *priv, uint64_t id, struct header *h)                      \
    {                                                                                              \
    }
PEER_IGNORE_STATUS(configuration_status, usb_redir_configuration_status_header)
PEER_IGNORE_STATUS(alt_setting_status, usb_redir_alt_setting_status_header)
PEER_IGNORE_STATUS(iso_stream_status, usb_redir_iso_stream_status_header)
PEER_IGNORE_STATUS(interrupt_receiving_status, usb_redir_interrupt_receiving_status_header)
PEER_IGNORE_STATUS(bulk_streams_status, usb_redir_bulk_streams_status_header)
PEER_IGNORE_STATUS(bulk_receiving_status, usb_redir_bulk_receiving_status_header)

static void
peer_ignore_hello(void *priv, struct usb_redir_hello_header *h)
{
}

#define PEER_IGNORE_DATA(name, header)                                                             \
    static void peer_ignore_##name(void *priv, uint64_t id, struct header *h, uint8_t *data,       \
                                   int data_len)                                                   \
    {                                                                                              \
        Peer *peer = priv;                                                                         \
        usbredirparser_free_packet_data(peer->parser, data);                                       \
    }
PEER_IGNORE_DATA(bulk_packet, usb_redir_bulk_packet_header)
PEER_IGNORE_DATA(iso_packet, usb_redir_iso_packet_header)
PEER_IGNORE_DATA(interrupt_packet, usb_redir_interrupt_packet_header)
PEER_IGNORE_DATA(buffered_bulk_packet, usb_redir_buffered_bulk_packet_header)

static void
peer_ignore_void(void *priv)
{
}

/* Serves the connection until @done says so or the deadline passes. */
static gboolean
peer_run_until(Peer *peer, gboolean (*done)(Peer *), gint64 deadline)
{
    while (!done(peer)) {
        struct pollfd pfd = {.fd = peer->fd, .events = POLLIN};
        gint64 left = (deadline - g_get_monotonic_time()) / 1000;

        if (peer->closed)
            return FALSE;
        if (left <= 0)
            return FALSE;
        if (usbredirparser_has_data_to_write(peer->parser))
            pfd.events |= POLLOUT;
        if (poll(&pfd, 1, (int)MIN(left, 100)) < 0 && errno != EINTR)
            return FALSE;
        if (pfd.revents & POLLOUT)
            usbredirparser_do_write(peer->parser);
        if (pfd.revents & (POLLIN | POLLHUP | POLLERR)) {
            if (usbredirparser_do_read(peer->parser) != 0) {
                peer->closed = TRUE;
                return done(peer);
            }
        }
    }
    return TRUE;
}

static gboolean
peer_is_connected(Peer *peer)
{
    return peer->connected && peer->interfaces_seen;
}

static gboolean
peer_is_disconnected(Peer *peer)
{
    return peer->disconnected;
}

static gboolean
peer_has_reply_or_disconnect(Peer *peer)
{
    return peer->reply_ready || peer->disconnected;
}

static gboolean
peer_is_closed(Peer *peer)
{
    return peer->closed;
}

static gboolean
peer_never(Peer *peer)
{
    return FALSE;
}

static gboolean
peer_control(Peer *peer, guint8 requesttype, guint8 request, guint8 *data, guint16 length,
             gint64 deadline)
{
    struct usb_redir_control_packet_header h = {
        .endpoint = requesttype & 0x80,
        .request = request,
        .requesttype = requesttype,
        .length = length,
    };
    peer->reply_ready = FALSE;
    usbredirparser_send_control_packet(peer->parser, peer->next_id++, &h,
                                       requesttype & 0x80 ? NULL : data,
                                       requesttype & 0x80 ? 0 : length);
    usbredirparser_do_write(peer->parser);
    return peer_run_until(peer, peer_has_reply_or_disconnect, deadline) && peer->reply_ready;
}

/* SOCKET is a unix socket path, or tcp:HOST:PORT. */
static int
peer_connect_socket(const gchar *where, gint64 deadline)
{
    /* the gateway may still be creating the socket: retry until the deadline */
    for (;;) {
        g_autoptr(GSocketAddress) address = NULL;
        g_autoptr(GSocket) socket = NULL;

        if (g_str_has_prefix(where, "tcp:")) {
            const gchar *colon = strrchr(where + 4, ':');
            g_autofree gchar *host =
                colon != NULL ? g_strndup(where + 4, (gsize)(colon - where - 4)) : NULL;
            g_autoptr(GInetAddress) inet =
                host != NULL ? g_inet_address_new_from_string(host) : NULL;
            if (inet == NULL)
                return -1;
            address =
                g_inet_socket_address_new(inet, (guint16)g_ascii_strtoull(colon + 1, NULL, 10));
            socket = g_socket_new(g_inet_address_get_family(inet), G_SOCKET_TYPE_STREAM,
                                  G_SOCKET_PROTOCOL_TCP, NULL);
            if (socket != NULL)
                g_socket_set_option(socket, IPPROTO_TCP, TCP_NODELAY, 1, NULL);
        } else {
            address = g_unix_socket_address_new(where);
            socket = g_socket_new(G_SOCKET_FAMILY_UNIX, G_SOCKET_TYPE_STREAM,
                                  G_SOCKET_PROTOCOL_DEFAULT, NULL);
        }
        if (socket != NULL && g_socket_connect(socket, address, NULL, NULL))
            return dup(g_socket_get_fd(socket));
        if (g_get_monotonic_time() > deadline)
            return -1;
        g_usleep(20 * 1000);
    }
}

int
main(int argc, char **argv)
{
    gint timeout_s = 20;
    const GOptionEntry entries[] = {
        {"timeout", 't', 0, G_OPTION_ARG_INT, &timeout_s, "Seconds for each step (20)", "S"},
        G_OPTION_ENTRY_NULL,
    };
    g_autoptr(GOptionContext) context = g_option_context_new("SOCKET STEP… — usbredir test peer");
    g_autoptr(GError) error = NULL;
    uint32_t caps[USB_REDIR_CAPS_SIZE] = {0};
    Peer peer = {0};

    if (argc == 4 && g_strcmp0(argv[1], "--key-answer") == 0) {
        guint8 secret[USBGW_KEY_LEN], challenge[USBGW_KEY_LEN], answer[USBGW_KEY_LEN];
        if (!sim_hex_decode(argv[2], secret, sizeof(secret), NULL) ||
            !sim_hex_decode(argv[3], challenge, sizeof(challenge), NULL)) {
            fprintf(stderr, "peer: --key-answer takes two %d-digit hex values\n",
                    2 * USBGW_KEY_LEN);
            return 2;
        }
        usbgw_key_compute(secret, challenge, answer);
        for (guint k = 0; k < USBGW_KEY_LEN; k++)
            printf("%02x", answer[k]);
        printf("\n");
        return 0;
    }
    g_option_context_add_main_entries(context, entries, NULL);
    if (!g_option_context_parse(context, &argc, &argv, &error) || argc < 2) {
        fprintf(stderr, "usage: usbgw-test-peer [--timeout S] SOCKET STEP…\n");
        return 2;
    }
    peer.fd = peer_connect_socket(argv[1], g_get_monotonic_time() + timeout_s * G_USEC_PER_SEC);
    if (peer.fd < 0) {
        fprintf(stderr, "peer: cannot connect to %s\n", argv[1]);
        return 1;
    }
    peer.parser = usbredirparser_create();
    peer.parser->priv = &peer;
    peer.parser->log_func = peer_log;
    peer.parser->read_func = peer_read;
    peer.parser->write_func = peer_write;
    peer.parser->device_connect_func = peer_device_connect;
    peer.parser->device_disconnect_func = peer_device_disconnect;
    peer.parser->interface_info_func = peer_interface_info;
    peer.parser->control_packet_func = peer_control_packet;
    peer.parser->ep_info_func = peer_ignore_ep_info;
    peer.parser->hello_func = peer_ignore_hello;
    peer.parser->reset_func = peer_ignore_void;
    peer.parser->device_disconnect_ack_func = peer_ignore_void;
    peer.parser->configuration_status_func = peer_ignore_configuration_status;
    peer.parser->alt_setting_status_func = peer_ignore_alt_setting_status;
    peer.parser->iso_stream_status_func = peer_ignore_iso_stream_status;
    peer.parser->interrupt_receiving_status_func = peer_ignore_interrupt_receiving_status;
    peer.parser->bulk_streams_status_func = peer_ignore_bulk_streams_status;
    peer.parser->bulk_receiving_status_func = peer_ignore_bulk_receiving_status;
    peer.parser->bulk_packet_func = peer_ignore_bulk_packet;
    peer.parser->iso_packet_func = peer_ignore_iso_packet;
    peer.parser->interrupt_packet_func = peer_ignore_interrupt_packet;
    peer.parser->buffered_bulk_packet_func = peer_ignore_buffered_bulk_packet;
    usbredirparser_caps_set_cap(caps, usb_redir_cap_connect_device_version);
    usbredirparser_caps_set_cap(caps, usb_redir_cap_ep_info_max_packet_size);
    usbredirparser_caps_set_cap(caps, usb_redir_cap_64bits_ids);
    usbredirparser_caps_set_cap(caps, usb_redir_cap_32bits_bulk_length);
    usbredirparser_init(peer.parser, "usbgw-test-peer", caps, USB_REDIR_CAPS_SIZE, 0);

    for (int i = 2; i < argc; i++) {
        const gchar *step = argv[i];
        gint64 deadline = g_get_monotonic_time() + timeout_s * G_USEC_PER_SEC;
        gboolean ok = TRUE;

        if (g_strcmp0(step, "connect") == 0) {
            ok = peer_run_until(&peer, peer_is_connected, deadline);
        } else if (g_strcmp0(step, "disconnect") == 0) {
            ok = peer_run_until(&peer, peer_is_disconnected, deadline);
        } else if (g_strcmp0(step, "closed") == 0) {
            ok = peer_run_until(&peer, peer_is_closed, deadline);
            if (ok)
                printf("CLOSED\n");
        } else if (g_strcmp0(step, "garbage") == 0) {
            static const guint8 junk[64] = {0xff, 0xff, 0xff, 0xff, 0x00, 0x00, 0x10, 0x00};
            ok = send(peer.fd, junk, sizeof(junk), MSG_NOSIGNAL) == sizeof(junk);
        } else if (g_strcmp0(step, "sleep") == 0 && i + 1 < argc) {
            gint64 until = g_get_monotonic_time() + g_ascii_strtoll(argv[++i], NULL, 10) * 1000;
            peer_run_until(&peer, peer_never, until);
            ok = !peer.closed;
        } else if (g_strcmp0(step, "challenge") == 0 && i + 1 < argc) {
            guint8 challenge[USBGW_KEY_LEN];
            peer.have_response = FALSE;
            if (!sim_hex_decode(argv[++i], challenge, sizeof(challenge), NULL)) {
                fprintf(stderr, "peer: challenge must be %d hex digits\n", 2 * USBGW_KEY_LEN);
                return 2;
            }
            ok = peer_control(&peer, 0x40, USBGW_KEY_REQ_CHALLENGE, challenge, USBGW_KEY_LEN,
                              deadline);
            if (ok && peer.reply_status == usb_redir_success)
                ok = peer_control(&peer, 0xc0, USBGW_KEY_REQ_RESPONSE, NULL, USBGW_KEY_LEN,
                                  deadline);
            memcpy(peer.challenge, challenge, sizeof(challenge));
            if (ok && peer.reply_status == usb_redir_success) {
                peer.have_response = peer.reply_len == USBGW_KEY_LEN;
                printf("RESPONSE ");
                for (int k = 0; k < peer.reply_len; k++)
                    printf("%02x", peer.reply_data[k]);
                printf("\n");
            } else if (ok) {
                printf("STATUS %u\n", peer.reply_status);
            }
        } else if (g_strcmp0(step, "expect") == 0 && i + 1 < argc) {
            guint8 secret[USBGW_KEY_LEN], want[USBGW_KEY_LEN];
            if (!sim_hex_decode(argv[++i], secret, sizeof(secret), NULL)) {
                fprintf(stderr, "peer: secret must be %d hex digits\n", 2 * USBGW_KEY_LEN);
                return 2;
            }
            usbgw_key_compute(secret, peer.challenge, want);
            ok = peer.have_response && memcmp(want, peer.reply_data, USBGW_KEY_LEN) == 0;
            if (ok)
                printf("MATCH\n");
            else
                fprintf(stderr, "peer: the response is not the key's answer\n");
        } else if (g_strcmp0(step, "hammer") == 0 && i + 1 < argc) {
            guint8 secret[USBGW_KEY_LEN], want[USBGW_KEY_LEN], challenge[USBGW_KEY_LEN];
            guint answers = 0;
            if (!sim_hex_decode(argv[++i], secret, sizeof(secret), NULL)) {
                fprintf(stderr, "peer: secret must be %d hex digits\n", 2 * USBGW_KEY_LEN);
                return 2;
            }
            while (!peer.disconnected && g_get_monotonic_time() < deadline) {
                for (guint k = 0; k < USBGW_KEY_LEN; k++)
                    challenge[k] = (guint8)g_random_int();
                if (!peer_control(&peer, 0x40, USBGW_KEY_REQ_CHALLENGE, challenge, USBGW_KEY_LEN,
                                  deadline) ||
                    peer.reply_status != usb_redir_success ||
                    !peer_control(&peer, 0xc0, USBGW_KEY_REQ_RESPONSE, NULL, USBGW_KEY_LEN,
                                  deadline) ||
                    peer.reply_status != usb_redir_success)
                    continue; /* the disconnect cut this round short */
                usbgw_key_compute(secret, challenge, want);
                if (peer.reply_len != USBGW_KEY_LEN ||
                    memcmp(want, peer.reply_data, USBGW_KEY_LEN)) {
                    fprintf(stderr, "peer: wrong answer in round %u\n", answers + 1);
                    return 1;
                }
                answers++;
            }
            printf("HAMMER %u answers\n", answers);
            ok = peer.disconnected && answers > 0;
        } else if (g_strcmp0(step, "control-in") == 0 && i + 2 < argc) {
            guint8 request = (guint8)g_ascii_strtoull(argv[i + 1], NULL, 0);
            guint16 length = (guint16)g_ascii_strtoull(argv[i + 2], NULL, 0);
            i += 2;
            ok = peer_control(&peer, 0xc0, request, NULL, length, deadline);
            if (ok)
                printf("STATUS %u LEN %d\n", peer.reply_status, peer.reply_len);
        } else {
            fprintf(stderr, "peer: unknown step '%s'\n", step);
            return 2;
        }
        fflush(stdout);
        if (!ok) {
            fprintf(stderr, "peer: step '%s' failed (%s)\n", step,
                    peer.closed ? "connection closed" : "timeout");
            usbredirparser_destroy(peer.parser);
            close(peer.fd);
            return 1;
        }
    }
    usbredirparser_destroy(peer.parser);
    close(peer.fd);
    return 0;
}
