/* GwPeerHandover: one live migration's handover of a usbredir peer on a
 * unix stream socket, from its source (the QEMU that is the peer now) to
 * a destination (a second QEMU's connection, held meanwhile), for an
 * owner that writes the peer's bytes itself: a usbredirhost session
 * (gw-session.c). docs/migration.md says what it does and why.
 *
 * The owner keeps a GwHandoverStream of everything it writes to the peer
 * from the first byte, tells the handover of every write to the source
 * and of every read from it, and does the switch when told to. The
 * handover holds the destination (neither read nor written), keeps what
 * is written to the source in a ring, samples the source's unread byte
 * count, and decides when the destination takes over and which bytes it
 * gets.
 *
 * Threading: the owner's writes may come on any thread, under the
 * owner's lock (@lock), which the handover takes itself on the main
 * thread; everything else on the main thread (@context's). The handover
 * owns the destination until it gives it to the owner. */
#pragma once

#include <gio/gio.h>

#include "gw-handover-stream.h"

G_BEGIN_DECLS

typedef struct _GwPeerHandover GwPeerHandover;

typedef enum {
    GW_PEER_HANDOVER_DONE,    /* the destination is the owner's peer now */
    GW_PEER_HANDOVER_DROPPED, /* it left, or went wrong: the source stays */
    GW_PEER_HANDOVER_REFUSED, /* it sent a hello: a new peer, not a destination */
    GW_PEER_HANDOVER_FAILED,  /* the handover cannot go on: the owner must end */
} GwPeerHandoverResult;

typedef struct {
    /* Reads what the source sent, to its end, past the back-pressure that
     * holds a running peer (how many bytes: @drained); FALSE when the
     * owner is closing (the handover then does nothing more, and is freed
     * by the owner). */
    gboolean (*drain)(gpointer owner, guint64 *drained);
    /* Under the owner's lock: @destination (a reference passed) is the
     * peer from now on, and @resend (a reference passed) goes to it
     * before anything else; the owner closes the source. */
    void (*switch_peer_locked)(gpointer owner, GSocket *destination, GBytes *resend);
    /* The end: @detail says what was re-sent (DONE) or why. The owner may
     * free the handover from here; it is not used after. */
    void (*finished)(gpointer owner, GwPeerHandoverResult result, const gchar *detail);
} GwPeerHandoverFuncs;

/* Holds @destination (a reference is taken) for the source on
 * @source_fd, to which @written bytes were written so far; @stream (not
 * owned) follows them. Under the owner's lock, so that no write comes in
 * between. Fails when the kernel cannot count
 * the source's unread bytes (socket diagnostics). @label prefixes its
 * log lines; @device_id and @vm go in their journal fields. */
GwPeerHandover *gw_peer_handover_new(int source_fd, guint64 written, GMutex *lock,
                                     GwHandoverStream *stream, GSocket *destination,
                                     GMainContext *context, const gchar *label,
                                     const gchar *device_id, const gchar *vm,
                                     const GwPeerHandoverFuncs *funcs, gpointer owner,
                                     GError **error);
/* Closes a destination still held. */
void gw_peer_handover_free(GwPeerHandover *handover);
G_DEFINE_AUTOPTR_CLEANUP_FUNC(GwPeerHandover, gw_peer_handover_free)

/* Under the owner's lock: @len bytes were sent to the source. */
void gw_peer_handover_written_locked(GwPeerHandover *handover, const guint8 *data, gsize len);

/* Around each read of the owner from the source: before it (not while
 * the owner drains), then with what it read (> 0: bytes; 0: nothing
 * waits; < 0: the source's end or a reset). The source writes only while
 * its VM runs, so what it had read before each write was read while it
 * ran. */
void gw_peer_handover_before_read(GwPeerHandover *handover);
void gw_peer_handover_after_read(GwPeerHandover *handover, gssize got);

/* Whether a read met the source's end (it quit, or reset its connection
 * leaving bytes unread). */
gboolean gw_peer_handover_source_ended(GwPeerHandover *handover);

/* The owner saw the source hang up (or its read met the end): the
 * destination takes over. */
void gw_peer_handover_source_gone(GwPeerHandover *handover);

G_END_DECLS
