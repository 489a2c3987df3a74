/* libFuzzer target for the gateway link (gateway/link): the input is what
 * a peer gateway sends. It goes twice through the code:
 *
 *   - the wire decoder alone (gw-link-wire.c), in pieces of sizes the
 *     input's first byte picks, every frame through its message parser;
 *   - a GwLink over a socketpair, after a valid HELLO when the first byte
 *     is even (so that the fuzzer reaches past the handshake), fed in
 *     small chunks with the main context running between them. The link
 *     exports one device ("dev"), accepts streams on it (the test end of
 *     each is drained) and refuses any other id.
 *
 * Never a crash, a leak, a sanitizer report, a warning or a broken
 * invariant: a frame the decoder returns obeys its type's length rules;
 * no stream buffers more than GW_LINK_WINDOW; at most GW_LINK_MAX_STREAMS
 * streams and GW_LINK_MAX_DEVICES peer devices.
 *
 * Run the fuzzer (clang):
 *
 *   CC=clang meson setup /tmp/buildfuzz -Dfuzzing=true -Db_sanitize=address,undefined \
 *       -Db_lundef=false
 *   ninja -C /tmp/buildfuzz tests/fuzz/fuzz-link
 *   mkdir -p /tmp/fuzz-link-corpus
 *   /tmp/buildfuzz/tests/fuzz/fuzz-link /tmp/fuzz-link-corpus tests/fuzz/corpus/link \
 *       -max_len=8192 -max_total_time=300
 *
 * A crash leaves crash-<sha1>: fix it and copy it to tests/fuzz/corpus/link/;
 * fuzz-link-replay replays the corpus in every build. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "gw-link-private.h"
#include "gw-link-wire.h"
#include "gw-link.h"

#include "fuzz-common.h"

/* Bytes written to the link between two runs of the main context. */
#define FUZZ_CHUNK 64
/* Main-context rounds after each chunk. */
#define FUZZ_ROUNDS 3

typedef struct {
    GPtrArray *ends; /* GSocket: the test ends of accepted streams */
    guint downs;
} FuzzPeer;

static void
fuzz_decode(const uint8_t *data, size_t size)
{
    GwLinkDecoder decoder;
    size_t piece = size > 0 ? (size_t)(data[0] % 17) + 1 : 1;
    size_t off = 0;

    gw_link_decoder_init(&decoder);
    while (off < size) {
        size_t n = MIN(piece, size - off);
        size_t used_total = 0;
        while (used_total < n) {
            g_autoptr(GError) error = NULL;
            GwLinkFrame frame;
            gsize used = 0;
            GwLinkDecodeResult r = gw_link_decoder_feed(&decoder, data + off + used_total,
                                                        n - used_total, &used, &frame, &error);
            used_total += used;
            if (r == GW_LINK_DECODE_ERROR) {
                FUZZ_CHECK(error != NULL);
                gw_link_decoder_clear(&decoder);
                return;
            }
            if (r == GW_LINK_DECODE_MORE)
                break;
            FUZZ_CHECK(frame.type >= GW_LINK_FRAME_HELLO && frame.type <= GW_LINK_FRAME_PONG);
            FUZZ_CHECK(frame.type != GW_LINK_FRAME_DATA ||
                       (frame.length >= 1 && frame.length <= GW_LINK_MAX_DATA));

            g_autofree gchar *text = NULL;
            g_autofree gchar *json = NULL;
            g_autoptr(PolicyDevice) device = NULL;
            g_autoptr(GError) parse_error = NULL;
            switch (frame.type) {
            case GW_LINK_FRAME_HELLO:
                if (gw_link_wire_parse_hello(&frame, &text, &parse_error))
                    FUZZ_CHECK(strlen(text) == GW_LINK_WIRE_INSTANCE_LEN);
                break;
            case GW_LINK_FRAME_REFUSE:
            case GW_LINK_FRAME_CLOSE:
                if (gw_link_wire_parse_reason(&frame, &text, &parse_error))
                    FUZZ_CHECK(strlen(text) <= GW_LINK_WIRE_MAX_REASON);
                break;
            case GW_LINK_FRAME_DEVICE_ADD:
                if (gw_link_wire_parse_device_add(&frame, &text, &device, &json, &parse_error))
                    FUZZ_CHECK(device != NULL && json != NULL);
                break;
            case GW_LINK_FRAME_DEVICE_REMOVE:
                if (gw_link_wire_parse_device_remove(&frame, &text, &parse_error))
                    FUZZ_CHECK(parse_error == NULL);
                break;
            case GW_LINK_FRAME_SYNCED:
                if (gw_link_wire_parse_synced(&frame, &parse_error))
                    FUZZ_CHECK(parse_error == NULL);
                break;
            case GW_LINK_FRAME_OPEN:
                if (gw_link_wire_parse_open(&frame, &text, &parse_error))
                    FUZZ_CHECK(parse_error == NULL);
                break;
            default:
                break;
            }
        }
        off += n;
    }
    gw_link_decoder_clear(&decoder);
}

static GSocket *
fuzz_open(GwLink *link, const gchar *id, gchar **reason, gpointer user_data)
{
    FuzzPeer *peer = user_data;
    int fds[2];

    if (strcmp(id, "dev") != 0) {
        *reason = g_strdup("no such device");
        return NULL;
    }
    FUZZ_CHECK(socketpair(AF_UNIX, SOCK_STREAM, 0, fds) == 0);
    g_ptr_array_add(peer->ends, g_socket_new_from_fd(fds[0], NULL));
    return g_socket_new_from_fd(fds[1], NULL);
}

static void
fuzz_down(GwLink *link, const gchar *reason, gpointer user_data)
{
    FuzzPeer *peer = user_data;
    FUZZ_CHECK(reason != NULL);
    peer->downs++;
}

static void
fuzz_round(GwLink *link, FuzzPeer *peer)
{
    guint8 sink[4096];
    for (guint i = 0; i < FUZZ_ROUNDS; i++) {
        while (g_main_context_iteration(NULL, FALSE))
            ;
        for (guint j = 0; j < peer->ends->len; j++)
            (void)recv(g_socket_get_fd(g_ptr_array_index(peer->ends, j)), sink, sizeof(sink),
                       MSG_DONTWAIT);
    }
    gsize tx, rx;
    GwLinkStats stats;
    gw_link_debug_buffered(link, &tx, &rx);
    FUZZ_CHECK(tx <= GW_LINK_WINDOW && rx <= GW_LINK_WINDOW);
    gw_link_get_stats(link, &stats);
    FUZZ_CHECK(stats.streams <= GW_LINK_MAX_STREAMS);
    FUZZ_CHECK(stats.peer_devices <= GW_LINK_MAX_DEVICES);
}

static void
fuzz_link(const uint8_t *data, size_t size)
{
    static const GwLinkCallbacks callbacks = {.down = fuzz_down, .open = fuzz_open};
    FuzzPeer peer = {.ends = g_ptr_array_new_with_free_func(g_object_unref)};
    g_autoptr(GByteArray) input = g_byte_array_new();
    g_autoptr(PolicyDevice) device = policy_device_new(0x0529, 0x0001);
    int fds[2];

    FUZZ_CHECK(socketpair(AF_UNIX, SOCK_STREAM, 0, fds) == 0);
    g_autoptr(GSocket) ours = g_socket_new_from_fd(fds[0], NULL);
    g_autoptr(GIOStream) conn = G_IO_STREAM(g_socket_connection_factory_create_connection(ours));
    GwLink *link = gw_link_new("fuzz-peer", NULL, &callbacks, &peer);

    gw_link_announce(link, "dev", device);
    gw_link_attach(link, conn);
    if (size > 0 && data[0] % 2 == 0)
        gw_link_wire_put_hello(input, "00112233aabbccdd");
    if (size > 1)
        g_byte_array_append(input, data + 1, (guint)(size - 1));

    for (gsize off = 0; off < input->len && peer.downs == 0; off += FUZZ_CHUNK) {
        gsize n = MIN(FUZZ_CHUNK, input->len - off);
        guint8 sink[65536];
        if (send(fds[1], input->data + off, n, MSG_DONTWAIT | MSG_NOSIGNAL) < 0)
            break;
        /* the peer reads what the link sends, so that it never blocks */
        (void)recv(fds[1], sink, sizeof(sink), MSG_DONTWAIT);
        fuzz_round(link, &peer);
    }
    shutdown(fds[1], SHUT_RDWR);
    for (guint i = 0; i < 20 && peer.downs == 0; i++)
        fuzz_round(link, &peer);
    FUZZ_CHECK(peer.downs == 1);
    FUZZ_CHECK(!gw_link_is_up(link));

    gw_link_free(link);
    g_ptr_array_unref(peer.ends);
    close(fds[1]);
    while (g_main_context_iteration(NULL, FALSE))
        ;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    g_log_set_default_handler(fuzz_log_handler, NULL);
    fuzz_decode(data, size);
    fuzz_link(data, size);
    return 0;
}
