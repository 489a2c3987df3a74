/* What a session needs to hand its peer's stream over to a live
 * migration's destination byte-exactly (docs/migration.md):
 *
 *   - GwHandoverRing keeps the last bytes written to the peer, so those
 *     the paused source never read can be sent again to the destination;
 *   - gw_handover_peer_unread() says how many bytes wait unread in the
 *     peer's receive queue of a unix stream socket: the kernel's own count
 *     of the peer socket (sock_diag, UNIX_DIAG_RQLEN), exact to the byte.
 *     SIOCOUTQ on our end is not: for AF_UNIX it gives the memory the
 *     queued buffers take (struct sk_buff overhead included), not bytes;
 *   - gw_handover_is_hello() tells a new peer (which starts with a usbredir
 *     hello) from a migration destination (whose parser goes on where the
 *     source's stopped, without a hello).
 *
 * Threading: none of its own; a ring is used under its owner's lock. A
 * ring owns its buffer. */
#pragma once

#include <glib.h>

G_BEGIN_DECLS

/* While a destination is pending, the source's unread byte count is read
 * this often: a source that hangs up before the destination writes
 * (libvirt stops it once the destination runs) still has a count, and a
 * source that stopped reading is seen. */
#define GW_HANDOVER_SAMPLE_MS 10
/* A source that has not read for this long while bytes wait for it is
 * taken as stopped (QEMU reads its chardev at once while its VM runs, and
 * not at all once it stopped for the migration's last phase): the waiting
 * bytes are copied to the destination, which reads them when it runs.
 * Far longer than the stalls a loaded host gives a running QEMU (more than
 * 250 ms seen here during a migration's live phase under TCG): a source
 * that reads again after the copy costs the destination its connection.
 * Shorter than a guest's USB timeouts (5 s), so an answer on its way when
 * the source stopped reaches the guest late, never lost. libvirt stops the
 * source right after the destination resumes, which hands over at once. */
#define GW_HANDOVER_STALL_MS 1500
/* A source on another host (a migration relay, gw-handover-relay.h) is
 * asked for its exact unread count before a handover; its answer is
 * waited for this long at most (a link round trip takes milliseconds),
 * then the last count it reported stands. */
#define GW_HANDOVER_SETTLE_MS 2000
/* Kept beyond the socket's send buffer: the kernel lets one more buffer
 * be queued past SO_SNDBUF. */
#define GW_HANDOVER_RING_SLACK (64 * 1024)

typedef struct _GwHandoverRing GwHandoverRing;

/* A ring holding the last @capacity bytes appended. */
GwHandoverRing *gw_handover_ring_new(gsize capacity);
/* The capacity for a peer on @fd: its SO_SNDBUF (the most bytes that can
 * wait unread in the peer) plus GW_HANDOVER_RING_SLACK. */
gsize gw_handover_ring_capacity_for(int fd);
void gw_handover_ring_append(GwHandoverRing *ring, const guint8 *data, gsize len);
/* How many bytes were appended, in all. */
guint64 gw_handover_ring_total(GwHandoverRing *ring);
/* How many of the last ones are kept (at most the capacity). */
gsize gw_handover_ring_kept(GwHandoverRing *ring);
/* The last @n bytes appended, oldest first; NULL (with @error) when fewer
 * are kept. */
GBytes *gw_handover_ring_tail(GwHandoverRing *ring, guint64 n,
                              GError **error) G_GNUC_WARN_UNUSED_RESULT;
/* Appends to @out the @n bytes appended from the @from'th on (counted
 * from the ring's first byte); FALSE (with @error) when they are not all
 * kept. */
gboolean gw_handover_ring_copy(GwHandoverRing *ring, guint64 from, guint64 n, GByteArray *out,
                               GError **error) G_GNUC_WARN_UNUSED_RESULT;
void gw_handover_ring_free(GwHandoverRing *ring);
G_DEFINE_AUTOPTR_CLEANUP_FUNC(GwHandoverRing, gw_handover_ring_free)

/* The bytes written on @fd (a connected unix stream socket) that its peer
 * has not read yet. Fails (naming why) when the kernel's socket
 * diagnostics cannot tell: no sock_diag, the peer gone, not a unix socket.
 * A peer that is a migration relay's end (gw-handover-relay.h) adds what
 * it forwarded and its remote QEMU has not read. */
gboolean gw_handover_peer_unread(int fd, guint64 *unread, GError **error) G_GNUC_WARN_UNUSED_RESULT;
/* The inode of @fd's peer socket (a connected unix stream socket). */
gboolean gw_handover_peer_inode(int fd, guint64 *peer_ino,
                                GError **error) G_GNUC_WARN_UNUSED_RESULT;

/* The fewest bytes gw_handover_is_hello() looks at. */
#define GW_HANDOVER_HELLO_PEEK 8
/* Whether @data (the first bytes a peer sent) start a usbredir hello
 * packet: type hello, a length a hello can have. */
gboolean gw_handover_is_hello(const guint8 *data, gsize len);

G_END_DECLS
