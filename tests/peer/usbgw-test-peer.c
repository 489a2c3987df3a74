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
 *   streams            ask for bulk streams on 0x82 and free them again
 *                      (what a guest asks of a USB 3 device), also with no
 *                      device; prints "STREAMS"
 *   sleep MS           keep serving for MS milliseconds
 *   closed             wait for the gateway to close the connection; prints "CLOSED"
 *   interrupt EP       start interrupt receiving on IN endpoint EP (0x81) and
 *                      serve until its first packet; prints "INTERRUPT <len>"
 *   stall MS           neither read nor write for MS milliseconds (a peer
 *                      that stopped reading: a paused or wedged QEMU)
 *   flood N MS         queue N get_configuration requests and write them,
 *                      reading nothing, for at most MS milliseconds;
 *                      prints "FLOOD <bytes> bytes sent" (what the gateway
 *                      took off the socket is what it could answer)
 *   drain MS           serve (read and write) for MS milliseconds; prints
 *                      "DRAINED <n> interrupt packets" that came meanwhile
 *
 *   usbgw-test-peer [--timeout S] --silent SOCKET
 *
 * connects and sends nothing, not even the usbredir hello, and waits for
 * the gateway to close the connection; prints "CLOSED".
 *
 *   usbgw-test-peer --key-answer SECRET32 CHALLENGE32
 *
 * prints the answer a key with this secret gives to this challenge.
 *
 * Exit status 0 when every step completed, 1 on timeout, error or an
 * unexpected close.
 *
 * The usbredir end is tests/usbredir-peer in the guest role. */
#include <gio/gio.h>
#include <gio/gunixsocketaddress.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "../sim/key-protocol.h"
#include "sim-hex.h"
#include "usbredir-peer.h"

/* Requests queued in the peer's parser at a time while flooding. */
#define PEER_FLOOD_BATCH 1024
/* Packet ids of the "streams" step, apart from the control transfers'. */
#define PEER_STREAMS_ID 0x5e000
/* How long the "streams" step serves the connection after asking. */
#define PEER_STREAMS_WAIT_US (200 * 1000)

typedef struct {
    guint8 challenge[USBGW_KEY_LEN]; /* the last one sent */
    gboolean have_response;          /* the last challenge got a key-sized response */
    guint interrupt_packets;         /* interrupt IN packets received */
    gint interrupt_length;           /* length of the last one */
} Peer;

static void
peer_on_interrupt_packet(UsbredirPeer *usbredir, guint64 id,
                         const struct usb_redir_interrupt_packet_header *header, const guint8 *data,
                         gint length, gpointer user_data)
{
    Peer *peer = user_data;
    peer->interrupt_packets++;
    peer->interrupt_length = length;
}

static gboolean
peer_has_interrupt_packet(UsbredirPeer *usbredir)
{
    Peer *peer = usbredir_peer_get_user_data(usbredir);
    return peer->interrupt_packets > 0;
}

/* Writes @n get_configuration requests (answered by the gateway without
 * touching the device) for at most until @deadline, never reading; returns
 * the bytes the socket took. */
static guint64
peer_flood(UsbredirPeer *usbredir, guint n, gint64 deadline)
{
    struct usbredirparser *parser = usbredir_peer_get_parser(usbredir);
    guint64 sent = 0;
    guint queued = 0;

    while (g_get_monotonic_time() < deadline) {
        int before;
        while (queued < n && usbredirparser_has_data_to_write(parser) < PEER_FLOOD_BATCH) {
            usbredirparser_send_get_configuration(parser, 0x10000 + queued);
            queued++;
        }
        before = usbredirparser_has_data_to_write(parser);
        if (before == 0)
            break;
        if (!usbredir_peer_flush(usbredir))
            break;
        if (usbredirparser_has_data_to_write(parser) == before)
            g_usleep(1000); /* the socket is full: the gateway is not reading */
        /* every request is the same size: count whole packets written */
        sent += (guint64)(before - usbredirparser_has_data_to_write(parser)) *
                sizeof(struct usb_redir_header);
    }
    return sent;
}

/* --silent: connect, say nothing, wait for the close. */
static int
peer_silent(int fd, gint64 deadline)
{
    for (;;) {
        guint8 buf[256];
        ssize_t n = recv(fd, buf, sizeof(buf), MSG_DONTWAIT);
        if (n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)) {
            printf("CLOSED\n");
            return 0;
        }
        if (g_get_monotonic_time() > deadline) {
            fprintf(stderr, "peer: the gateway did not close a silent connection\n");
            return 1;
        }
        if (n < 0)
            g_usleep(20 * 1000);
    }
}

static void
peer_on_device_connect(UsbredirPeer *usbredir, const struct usb_redir_device_connect_header *h,
                       gpointer user_data)
{
    printf("CONNECT %04x:%04x class %02x:%02x:%02x bcd %04x\n", h->vendor_id, h->product_id,
           h->device_class, h->device_subclass, h->device_protocol, h->device_version_bcd);
    fflush(stdout);
}

static void
peer_on_interface_info(UsbredirPeer *usbredir, const struct usb_redir_interface_info_header *h,
                       gpointer user_data)
{
    g_autoptr(GString) line = g_string_new("INTERFACES");

    for (guint32 i = 0; i < h->interface_count && i < 32; i++)
        g_string_append_printf(line, " %02x:%02x:%02x", h->interface_class[i],
                               h->interface_subclass[i], h->interface_protocol[i]);
    printf("%s\n", line->str);
    fflush(stdout);
}

static void
peer_on_device_disconnect(UsbredirPeer *usbredir, gpointer user_data)
{
    printf("DISCONNECT\n");
    fflush(stdout);
}

static const UsbredirPeerEvents peer_events = {
    .device_connect = peer_on_device_connect,
    .interface_info = peer_on_interface_info,
    .device_disconnect = peer_on_device_disconnect,
    .interrupt_packet = peer_on_interrupt_packet,
};

/* The key's challenge: vendor OUT with @challenge, then, if that
 * succeeded, vendor IN of the response. TRUE when both were answered; the
 * last answer (the OUT's if it failed) is usbredir_peer_get_control(). */
static gboolean
peer_challenge(UsbredirPeer *usbredir, const guint8 challenge[USBGW_KEY_LEN], gint64 deadline,
               GError **error)
{
    if (!usbredir_peer_control(usbredir, 0x40, USBGW_KEY_REQ_CHALLENGE, challenge, USBGW_KEY_LEN,
                               deadline, error))
        return FALSE;
    if (usbredir_peer_get_control(usbredir)->header.status != usb_redir_success)
        return TRUE;
    return usbredir_peer_control(usbredir, 0xc0, USBGW_KEY_REQ_RESPONSE, NULL, USBGW_KEY_LEN,
                                 deadline, error);
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
    static const UsbredirPeerConfig config = {
        .role = USBREDIR_PEER_GUEST,
        .version = "usbgw-test-peer",
        .label = "peer",
        .log_level = usbredirparser_warning,
    };
    gint timeout_s = 20;
    gboolean silent = FALSE;
    const GOptionEntry entries[] = {
        {"timeout", 't', 0, G_OPTION_ARG_INT, &timeout_s, "Seconds for each step (20)", "S"},
        {"silent", 0, 0, G_OPTION_ARG_NONE, &silent, "Send nothing, wait for the close", NULL},
        G_OPTION_ENTRY_NULL,
    };
    g_autoptr(GOptionContext) context = g_option_context_new("SOCKET STEP… — usbredir test peer");
    g_autoptr(GError) error = NULL;
    g_autoptr(UsbredirPeer) usbredir = NULL;
    Peer peer = {0};
    int fd;

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
    fd = peer_connect_socket(argv[1], g_get_monotonic_time() + timeout_s * G_USEC_PER_SEC);
    if (fd < 0) {
        fprintf(stderr, "peer: cannot connect to %s\n", argv[1]);
        return 1;
    }
    if (silent)
        return peer_silent(fd, g_get_monotonic_time() + timeout_s * G_USEC_PER_SEC);
    usbredir = usbredir_peer_new(fd, &config, &peer_events, &peer);

    for (int i = 2; i < argc; i++) {
        const gchar *step = argv[i];
        gint64 deadline = g_get_monotonic_time() + timeout_s * G_USEC_PER_SEC;
        g_autoptr(GError) step_error = NULL;
        const UsbredirPeerControl *answer = usbredir_peer_get_control(usbredir);
        gboolean ok = TRUE;

        if (g_strcmp0(step, "connect") == 0) {
            ok = usbredir_peer_run_until(usbredir, usbredir_peer_is_connected, deadline,
                                         &step_error);
        } else if (g_strcmp0(step, "disconnect") == 0) {
            ok = usbredir_peer_run_until(usbredir, usbredir_peer_is_disconnected, deadline,
                                         &step_error);
        } else if (g_strcmp0(step, "closed") == 0) {
            ok = usbredir_peer_run_until(usbredir, usbredir_peer_is_closed, deadline, &step_error);
            if (ok)
                printf("CLOSED\n");
        } else if (g_strcmp0(step, "garbage") == 0) {
            static const guint8 junk[64] = {0xff, 0xff, 0xff, 0xff, 0x00, 0x00, 0x10, 0x00};
            ok = send(usbredir_peer_get_fd(usbredir), junk, sizeof(junk), MSG_NOSIGNAL) ==
                 sizeof(junk);
        } else if (g_strcmp0(step, "streams") == 0) {
            /* usbredir's endpoint mask: bit 0x12 is endpoint 0x82 */
            struct usb_redir_alloc_bulk_streams_header alloc = {.endpoints = 1u << 0x12,
                                                                .no_streams = 4};
            struct usb_redir_free_bulk_streams_header release = {.endpoints = 1u << 0x12};
            struct usbredirparser *parser = usbredir_peer_get_parser(usbredir);
            usbredirparser_send_alloc_bulk_streams(parser, PEER_STREAMS_ID, &alloc);
            usbredirparser_send_free_bulk_streams(parser, PEER_STREAMS_ID + 1, &release);
            ok = usbredir_peer_run_until(
                usbredir, NULL, g_get_monotonic_time() + PEER_STREAMS_WAIT_US, &step_error);
            if (ok)
                printf("STREAMS\n");
        } else if (g_strcmp0(step, "sleep") == 0 && i + 1 < argc) {
            gint64 until = g_get_monotonic_time() + g_ascii_strtoll(argv[++i], NULL, 10) * 1000;
            ok = usbredir_peer_run_until(usbredir, NULL, until, &step_error);
        } else if (g_strcmp0(step, "interrupt") == 0 && i + 1 < argc) {
            struct usb_redir_start_interrupt_receiving_header start = {
                .endpoint = (guint8)g_ascii_strtoull(argv[++i], NULL, 0),
            };
            usbredirparser_send_start_interrupt_receiving(usbredir_peer_get_parser(usbredir), 1,
                                                          &start);
            ok =
                usbredir_peer_run_until(usbredir, peer_has_interrupt_packet, deadline, &step_error);
            if (ok)
                printf("INTERRUPT %d\n", peer.interrupt_length);
        } else if (g_strcmp0(step, "stall") == 0 && i + 1 < argc) {
            g_usleep((gulong)g_ascii_strtoull(argv[++i], NULL, 10) * 1000);
        } else if (g_strcmp0(step, "flood") == 0 && i + 2 < argc) {
            guint n = (guint)g_ascii_strtoull(argv[i + 1], NULL, 10);
            gint64 until = g_get_monotonic_time() + g_ascii_strtoll(argv[i + 2], NULL, 10) * 1000;
            i += 2;
            printf("FLOOD %" G_GUINT64_FORMAT " bytes sent\n", peer_flood(usbredir, n, until));
        } else if (g_strcmp0(step, "drain") == 0 && i + 1 < argc) {
            gint64 until = g_get_monotonic_time() + g_ascii_strtoll(argv[++i], NULL, 10) * 1000;
            guint before = peer.interrupt_packets;
            ok = usbredir_peer_run_until(usbredir, NULL, until, &step_error);
            if (ok)
                printf("DRAINED %u interrupt packets\n", peer.interrupt_packets - before);
        } else if (g_strcmp0(step, "challenge") == 0 && i + 1 < argc) {
            guint8 challenge[USBGW_KEY_LEN];
            peer.have_response = FALSE;
            if (!sim_hex_decode(argv[++i], challenge, sizeof(challenge), NULL)) {
                fprintf(stderr, "peer: challenge must be %d hex digits\n", 2 * USBGW_KEY_LEN);
                return 2;
            }
            ok = peer_challenge(usbredir, challenge, deadline, &step_error);
            memcpy(peer.challenge, challenge, sizeof(challenge));
            if (ok && answer->header.status == usb_redir_success) {
                peer.have_response = answer->length == USBGW_KEY_LEN;
                printf("RESPONSE ");
                for (int k = 0; k < answer->length; k++)
                    printf("%02x", answer->data[k]);
                printf("\n");
            } else if (ok) {
                printf("STATUS %u\n", answer->header.status);
            }
        } else if (g_strcmp0(step, "expect") == 0 && i + 1 < argc) {
            guint8 secret[USBGW_KEY_LEN], want[USBGW_KEY_LEN];
            if (!sim_hex_decode(argv[++i], secret, sizeof(secret), NULL)) {
                fprintf(stderr, "peer: secret must be %d hex digits\n", 2 * USBGW_KEY_LEN);
                return 2;
            }
            usbgw_key_compute(secret, peer.challenge, want);
            ok = peer.have_response && memcmp(want, answer->data, USBGW_KEY_LEN) == 0;
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
            while (!usbredir_peer_is_disconnected(usbredir) && g_get_monotonic_time() < deadline) {
                for (guint k = 0; k < USBGW_KEY_LEN; k++)
                    challenge[k] = (guint8)g_random_int();
                if (!peer_challenge(usbredir, challenge, deadline, NULL) ||
                    answer->header.status != usb_redir_success)
                    continue; /* the disconnect cut this round short */
                usbgw_key_compute(secret, challenge, want);
                if (answer->length != USBGW_KEY_LEN ||
                    memcmp(want, answer->data, USBGW_KEY_LEN) != 0) {
                    fprintf(stderr, "peer: wrong answer in round %u\n", answers + 1);
                    return 1;
                }
                answers++;
            }
            printf("HAMMER %u answers\n", answers);
            ok = usbredir_peer_is_disconnected(usbredir) && answers > 0;
        } else if (g_strcmp0(step, "control-in") == 0 && i + 2 < argc) {
            guint8 request = (guint8)g_ascii_strtoull(argv[i + 1], NULL, 0);
            guint16 length = (guint16)g_ascii_strtoull(argv[i + 2], NULL, 0);
            i += 2;
            ok =
                usbredir_peer_control(usbredir, 0xc0, request, NULL, length, deadline, &step_error);
            if (ok)
                printf("STATUS %u LEN %d\n", answer->header.status, answer->length);
        } else {
            fprintf(stderr, "peer: unknown step '%s'\n", step);
            return 2;
        }
        fflush(stdout);
        if (!ok) {
            fprintf(stderr, "peer: step '%s' failed (%s)\n", step,
                    step_error != NULL                  ? step_error->message
                    : usbredir_peer_is_closed(usbredir) ? "connection closed"
                                                        : "timeout");
            return 1;
        }
    }
    return 0;
}
