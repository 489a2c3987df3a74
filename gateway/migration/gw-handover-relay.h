/* GwHandoverRelay: a socket end in this process that stands for a QEMU on
 * another host (docs/migration.md, "Across hosts"). A migration relay
 * stream's anchor end connects to a VM's socket like a QEMU and forwards
 * what it reads to the relay's QEMU over a gateway link; the bytes it
 * read are not yet read by that QEMU. So that a handover on the VM's
 * socket counts them as the kernel counts a local QEMU's unread bytes,
 * the relay end registers here:
 *
 *   - gw_handover_peer_unread() on a socket whose peer is a registered
 *     end adds the bytes that end took and its QEMU has not read yet;
 *   - gw_handover_ring_capacity_for() adds the most it may take so;
 *   - gw_handover_settle_peer() asks it to bring that count up to date
 *     (a round trip to the remote gateway) before a handover uses it.
 *
 * Threading: registration, counts and settling under one lock, so the
 * counts may be read on any thread; settle callbacks run on the main
 * thread, outside it. */
#pragma once

#include <glib.h>

G_BEGIN_DECLS

typedef struct _GwHandoverRelay GwHandoverRelay;

/* The relay is asked to settle its count: it calls
 * gw_handover_relay_settled() once it is up to date. */
typedef void (*GwHandoverRelaySettle)(gpointer data);
/* A settle that was waited for is done (or the relay went away). */
typedef void (*GwHandoverSettled)(gpointer data);

/* Registers the socket @fd (this end's) as a relay end that takes at
 * most @window bytes its QEMU has not read. */
GwHandoverRelay *gw_handover_relay_new(int fd, gsize window, GwHandoverRelaySettle settle,
                                       gpointer data);
/* Unregisters; whoever waits for a settle is told. */
void gw_handover_relay_free(GwHandoverRelay *relay);
G_DEFINE_AUTOPTR_CLEANUP_FUNC(GwHandoverRelay, gw_handover_relay_free)
/* The bytes it took from its socket that its QEMU has not read. */
void gw_handover_relay_set_unread(GwHandoverRelay *relay, guint64 unread);
/* Its count is up to date: tells whoever waits. */
void gw_handover_relay_settled(GwHandoverRelay *relay);
/* Its count will not change any more (its QEMU left): nothing to ask, a
 * handover uses it as it is. Tells whoever waits. */
void gw_handover_relay_set_final(GwHandoverRelay *relay);

/* When @fd's peer is a relay end: asks it to settle, and TRUE: @done(@data)
 * runs once it did (or went away), never from inside this call. FALSE
 * when there is nothing to wait for (a local peer, or a final count). */
gboolean gw_handover_settle_peer(int fd, GwHandoverSettled done, gpointer data);
/* Forgets every wait for @data (its owner is going away). */
void gw_handover_settle_cancel(gpointer data);

/* For gw-handover.c: what a relay end with inode @ino adds to its unread
 * count, and to the ring's capacity (0 for any other socket). */
guint64 gw_handover_relay_unread_of(guint64 ino);
gsize gw_handover_relay_window_of(guint64 ino);

G_END_DECLS
