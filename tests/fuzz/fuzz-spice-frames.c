/* libFuzzer target for GwSpiceWorker (gateway/gw-spice.c), usbgwd's end of
 * a usbgw-spice-worker's socketpair: the input is what a worker sends. The
 * worker parses SPICE from the network as an unprivileged user; a worker
 * taken over must not take usbgwd with it. The input goes in over a real
 * socketpair in chunks, the main context running between them; what a
 * channel delivers is read and discarded, as a GwProxy would. Never a
 * crash, a leak or a sanitizer report, and:
 *
 *   - nothing is reported after exited();
 *   - exited() comes at most once;
 *   - a channel opens only when closed, and closes only when open;
 *   - a client's address (CLIENT) is printable and comes after READY.
 *
 * Run the fuzzer (clang), as tests/fuzz/fuzz-proxy.c says, with
 * tests/fuzz/corpus/spice-frames as the seed corpus. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "gw-spice.h"
#include "sw-frame.h"

#include "fuzz-common.h"

#define FUZZ_CHANNELS 4
#define FUZZ_CHUNK    64
#define FUZZ_ROUNDS   4

typedef struct {
    GwSpiceStream *clients[FUZZ_CHANNELS]; /* owned, nullable: open channels */
    gboolean ready;
    guint exits;
} FuzzOwner;

static void
fuzz_ready(GwSpiceWorker *worker, gpointer user_data)
{
    FuzzOwner *owner = user_data;

    FUZZ_CHECK(owner->exits == 0 && !owner->ready);
    owner->ready = TRUE;
}

static void
fuzz_opened(GwSpiceWorker *worker, guint channel, GwSpiceStream *client, gpointer user_data)
{
    FuzzOwner *owner = user_data;

    FUZZ_CHECK(owner->exits == 0 && channel < FUZZ_CHANNELS && owner->clients[channel] == NULL);
    owner->clients[channel] = client;
}

static void
fuzz_client(GwSpiceWorker *worker, guint event, const gchar *address, gpointer user_data)
{
    FuzzOwner *owner = user_data;

    FUZZ_CHECK(owner->exits == 0 && owner->ready && address[0] != '\0');
    for (const gchar *p = address; *p != '\0'; p++)
        FUZZ_CHECK(g_ascii_isgraph(*p));
}

static void
fuzz_closed(GwSpiceWorker *worker, guint channel, gpointer user_data)
{
    FuzzOwner *owner = user_data;

    FUZZ_CHECK(owner->exits == 0 && channel < FUZZ_CHANNELS && owner->clients[channel] != NULL);
    g_clear_pointer(&owner->clients[channel], gw_spice_stream_close);
}

static void
fuzz_exited(GwSpiceWorker *worker, const gchar *reason, gpointer user_data)
{
    FuzzOwner *owner = user_data;

    FUZZ_CHECK(reason != NULL && reason[0] != '\0');
    owner->exits++;
    FUZZ_CHECK(owner->exits == 1);
}

/* Reads what the channels carry (a proxy would) so nothing backs up, and
 * writes it back through the stream, as a proxy's answers go. */
static void
fuzz_drain(FuzzOwner *owner)
{
    for (guint i = 0; i < FUZZ_CHANNELS; i++) {
        guint8 buffer[4096];
        gssize n;
        if (owner->clients[i] == NULL)
            continue;
        while ((n = gw_spice_stream_transport.read(owner->clients[i], buffer, sizeof(buffer))) > 0)
            FUZZ_CHECK(gw_spice_stream_transport.write(owner->clients[i], buffer, (gsize)n) >= -1);
        gw_spice_stream_transport.flush(owner->clients[i]);
    }
}

static void
fuzz_run(GMainContext *context, FuzzOwner *owner)
{
    for (guint i = 0; i < FUZZ_ROUNDS; i++) {
        while (g_main_context_iteration(context, FALSE))
            ;
        fuzz_drain(owner);
    }
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const GwSpiceWorkerCallbacks callbacks = {
        .ready = fuzz_ready,
        .channel_opened = fuzz_opened,
        .channel_closed = fuzz_closed,
        .client = fuzz_client,
        .exited = fuzz_exited,
    };
    GMainContext *context = g_main_context_default();
    static char sink[4096];
    FuzzOwner owner = {0};
    gboolean ticket_sent = FALSE;
    GwSpiceWorker *worker;
    int fds[2];

    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0, fds) != 0)
        abort();
    worker = gw_spice_worker_new_for_fd(fds[0], FUZZ_CHANNELS, &callbacks, &owner);
    for (size_t offset = 0; offset < size && owner.exits == 0; offset += FUZZ_CHUNK) {
        size_t n = MIN(FUZZ_CHUNK, size - offset);
        if (send(fds[1], data + offset, n, MSG_NOSIGNAL) != (ssize_t)n)
            break;
        fuzz_run(context, &owner);
        if (owner.ready && !ticket_sent && owner.exits == 0) {
            gw_spice_worker_set_ticket(worker, "fuzz-ticket", 60, FALSE);
            ticket_sent = TRUE;
        }
        /* what usbgwd sends back (tickets, CLOSE acks, channel data) is
         * read so that it never blocks */
        while (recv(fds[1], sink, sizeof(sink), MSG_DONTWAIT) > 0)
            ;
    }
    close(fds[1]);
    fuzz_run(context, &owner);
    gw_spice_worker_free(worker);
    for (guint i = 0; i < FUZZ_CHANNELS; i++)
        g_clear_pointer(&owner.clients[i], gw_spice_stream_close);
    fuzz_run(context, &owner);
    return 0;
}
