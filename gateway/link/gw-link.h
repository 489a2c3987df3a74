/* GwLink: one gateway link, this usbgwd and one peer gateway (data path D,
 * docs/links.md). One multiplexed connection (TLS in usbgwd, any GIOStream
 * in tests) carries the peer's device directory, the devices we export to
 * the peer, and every device stream between the two gateways, each stream
 * flow-controlled on its own and resumed byte-exact after a lost
 * connection.
 *
 * The GwLink outlives its connections: gw_link_attach() gives it a fresh,
 * already authenticated connection (after a handshake gw-link-tls.h did);
 * when that connection is lost, streams are suspended for the grace
 * period. A new connection to the same peer instance within the grace
 * resumes every stream (bytes in flight re-sent from where the other side
 * received them); past the grace, or when the peer restarted (a new
 * instance in its HELLO), every stream is closed and every device the peer
 * announced is removed.
 *
 * Streams relay a local connected stream socket (the owner makes a
 * socketpair and hands one end to the link): what is read from it goes to
 * the peer, what the peer sends is written to it. Local EOF or an error
 * closes the stream (CLOSE to the peer); a stream closed by the peer
 * closes the local socket. A direct stream (gw_link_open_direct()) has no
 * socket: its owner takes the peer's bytes with gw_link_stream_read() when
 * told they came (readable) and queues its own with gw_link_stream_write()
 * within the stream's window (writable: the window opened again), one
 * socketpair hop, its wake-ups and system calls less per message. The
 * same windows, credits, resume and close apply to both kinds.
 *
 * A protocol error from the peer (a frame the wire does not allow, DATA
 * beyond a stream's window, a frame on a stream that does not exist, bad
 * JSON, more than GW_LINK_MAX_DEVICES devices) is logged naming the peer
 * and the problem, and drops the connection: it counts as a lost
 * connection (down() runs, streams get the grace), since the next
 * connection may well be sane. A CLOSE the link sends is answered by the
 * peer's CLOSE; frames crossing it on the wire are ignored until then.
 *
 * gw_link_attach() while a connection is attached closes that one without
 * down(). gw_link_refuse() runs asynchronously on the thread-default main
 * context (write, then read until the peer closes, at most @timeout_ms).
 *
 * Threading: create, use and free on one thread, the one whose
 * thread-default GMainContext is current at gw_link_new() (usbgwd's main
 * thread). Callbacks run on that thread, never from inside a gw_link_*()
 * call (from idle callbacks or I/O dispatch); the owner may free the link
 * from any callback.
 */
#pragma once

#include <gio/gio.h>

#include "policy.h"

G_BEGIN_DECLS

/* Largest DATA payload. */
#define GW_LINK_MAX_DATA 16384
/* Bytes of one stream direction sent and not yet acknowledged. */
#define GW_LINK_WINDOW (256 * 1024)
/* Streams open at once on one link (both directions together). */
#define GW_LINK_MAX_STREAMS 4096
/* Devices one peer may announce. */
#define GW_LINK_MAX_DEVICES 16384
/* Streams whose id starts with this are not device streams: a live
 * migration's relay of a VM's QEMU to the gateway that keeps its device
 * ("migrate:VM/FILE", docs/migration.md). No device id has a '/'. */
#define GW_LINK_MIGRATION_STREAM_PREFIX "migrate:"
/* Defaults of GwLinkConfig. */
#define GW_LINK_DEFAULT_GRACE_MS     10000
#define GW_LINK_DEFAULT_KEEPALIVE_MS 1000

typedef struct _GwLink GwLink;
typedef struct _GwLinkStream GwLinkStream;

typedef struct {
    guint grace_ms; /* streams survive a lost connection this long; 0: default */
    guint
        keepalive_ms; /* PING after this long without sending; dead after 3x silence; 0: default */
} GwLinkConfig;

typedef struct {
    guint64 bytes_in;   /* read from the connections, framing included */
    guint64 bytes_out;  /* written to the connections */
    guint64 connects;   /* connections attached */
    guint64 resumed;    /* of which resumed the previous one's streams */
    guint streams;      /* now: open streams, both directions */
    guint peer_devices; /* now: devices the peer announced */
    gint64 rtt_us;      /* last PING round trip, -1 if none yet */
    gboolean up;        /* a connection is attached and HELLO came */
} GwLinkStats;

typedef struct {
    /* Optional. A connection is up (the peer's HELLO came); @resumed: same
     * peer instance as before, its streams go on. */
    void (*up)(GwLink *link, gboolean resumed, gpointer user_data);
    /* Optional. The connection was lost or closed (@reason for logs);
     * streams are suspended, the peer's devices kept, for the grace. */
    void (*down)(GwLink *link, const gchar *reason, gpointer user_data);
    /* Optional. The peer refused this link (its REFUSE message, @reason as
     * the peer wrote it, sanitized to printable text). down() follows. */
    void (*refused)(GwLink *link, const gchar *reason, gpointer user_data);
    /* Optional. The peer announced (or re-announced, with a new
     * description) its device @id; @device is borrowed for the call. */
    void (*device_added)(GwLink *link, const gchar *id, const PolicyDevice *device,
                         gpointer user_data);
    /* Optional. The peer withdrew @id, did not re-announce it after a
     * reconnect, restarted, or the grace passed. */
    void (*device_removed)(GwLink *link, const gchar *id, gpointer user_data);
    /* Optional. The peer's full device list came after a connect (SYNCED):
     * it exports @devices devices to us. */
    void (*synced)(GwLink *link, guint devices, gpointer user_data);
    /* Required. The peer opens a stream on our device @id. Return a
     * connected stream socket the link relays (the link takes it), or NULL
     * with *@reason set (g_strdup'd, taken) to refuse: the peer's stream
     * gets CLOSE with that reason. */
    GSocket *(*open)(GwLink *link, const gchar *id, gchar **reason, gpointer user_data);
    /* Optional; when set, used instead of open(): the peer opens @stream,
     * a direct stream, on our device @id. Take it (set its callbacks with
     * gw_link_stream_set_callbacks(); closed() then runs as for our own
     * streams) and return TRUE, or return FALSE with *@reason set
     * (g_strdup'd, taken) to refuse: the link frees @stream. */
    gboolean (*open_direct)(GwLink *link, GwLinkStream *stream, const gchar *id, gchar **reason,
                            gpointer user_data);
    /* Optional. gw_link_expire() is done: every stream ended and every
     * device the peer announced was removed. The owner may free the link
     * here. */
    void (*expired)(GwLink *link, gpointer user_data);
} GwLinkCallbacks;

typedef struct {
    /* Optional. The peer accepted the stream (OPENED). */
    void (*opened)(GwLinkStream *stream, gpointer user_data);
    /* Required. The stream ended: refused or closed by the peer (its
     * reason), the local socket closed, or the link lost past the grace.
     * The local socket is closed; the stream is freed after this returns.
     * A direct stream's owner may still gw_link_stream_read() what the
     * peer sent before its end (then -1) from here; writes fail. */
    void (*closed)(GwLinkStream *stream, const gchar *reason, gpointer user_data);
    /* Direct streams, required there: bytes from the peer wait. Told once
     * per arrival, not again for bytes the owner leaves unread. */
    void (*readable)(GwLinkStream *stream, gpointer user_data);
    /* Direct streams, required there: gw_link_stream_write() takes bytes
     * again after it took fewer than offered. */
    void (*writable)(GwLinkStream *stream, gpointer user_data);
} GwLinkStreamCallbacks;

/* @peer: the peer gateway's name (from its certificate), for logs. @config
 * and @cb are copied. */
GwLink *gw_link_new(const gchar *peer, const GwLinkConfig *config, const GwLinkCallbacks *cb,
                    gpointer user_data);
/* Closes the connection and every stream (no callback runs after this). */
void gw_link_free(GwLink *link);
G_DEFINE_AUTOPTR_CLEANUP_FUNC(GwLink, gw_link_free)

/* A fresh authenticated connection to the peer (the link takes a
 * reference); a current one is closed first. Sends HELLO, then RESUME for
 * surviving streams if the peer is the same instance, then every
 * announced device and SYNCED. */
void gw_link_attach(GwLink *link, GIOStream *connection);
/* The peer is gone for good: the connection is closed now (no down()),
 * and, without waiting for the grace, from an idle callback soon after,
 * the link ends as at the end of the grace: every stream ends (closed()
 * with @reason), every device the peer announced is removed
 * (device_removed()), then expired() runs. */
void gw_link_expire(GwLink *link, const gchar *reason);
/* Sends REFUSE with @reason on @connection and closes it (no GwLink
 * needed: an acceptor refusing a peer it does not take). Best effort,
 * does not block longer than @timeout_ms. */
void gw_link_refuse(GIOStream *connection, const gchar *reason, guint timeout_ms);
const gchar *gw_link_get_peer(GwLink *link);
gboolean gw_link_is_up(GwLink *link);
void gw_link_get_stats(GwLink *link, GwLinkStats *stats);

/* Our device @id is exported to this peer (sent now if up, and after every
 * reconnect); announcing an id again replaces its description. */
void gw_link_announce(GwLink *link, const gchar *id, const PolicyDevice *device);
void gw_link_withdraw(GwLink *link, const gchar *id);

/* Opens a stream on the peer's device @id relaying @local (the link takes
 * a reference and makes it non-blocking). The stream waits for a
 * connection if the link is down. @cb is copied. */
GwLinkStream *gw_link_open(GwLink *link, const gchar *id, GSocket *local,
                           const GwLinkStreamCallbacks *cb, gpointer user_data);
/* Opens a direct stream on the peer's device @id: no local socket, the
 * owner reads and writes it (@cb's readable and writable are required). */
GwLinkStream *gw_link_open_direct(GwLink *link, const gchar *id, const GwLinkStreamCallbacks *cb,
                                  gpointer user_data);
/* A direct stream the peer opened (open_direct()): its owner's callbacks
 * (closed, readable and writable required), copied. */
void gw_link_stream_set_callbacks(GwLinkStream *stream, const GwLinkStreamCallbacks *cb,
                                  gpointer user_data);
/* Direct streams. Takes up to @count bytes the peer sent: the count, 0
 * when none wait, -1 once the stream ended and none are left. Taking
 * them credits the peer (as a socket's reading would). */
gssize gw_link_stream_read(GwLinkStream *stream, guint8 *data, gsize count);
/* Direct streams. Queues up to @count bytes for the peer, as far as the
 * stream's window allows: the count taken (0: the window is full,
 * writable() follows), -1 when the stream is ending. Nothing is written
 * before gw_link_stream_flush() or the link's next dispatch. */
gssize gw_link_stream_write(GwLinkStream *stream, const guint8 *data, gsize count);
/* Direct streams. What is queued goes to the connection: called from a
 * GwFdWatch callback, once the callbacks of that dispatch are done, so
 * that the frames every session queued in one wake-up go out as one TLS
 * record and one write; otherwise now, as far as the connection takes it.
 * No callback runs inside this call (a write error is handled from the
 * link's dispatch or an idle). */
void gw_link_stream_flush(GwLinkStream *stream);
/* A direct stream as a GwTransport's read, write and flush
 * (common/gw-transport.h): @data is a GwLinkStream ** whose stream is
 * NULL once it ended (read and write then say -1, flush does nothing). */
gssize gw_link_stream_slot_read(gpointer data, guint8 *buf, gsize count);
gssize gw_link_stream_slot_write(gpointer data, const guint8 *buf, gsize count);
void gw_link_stream_slot_flush(gpointer data);
/* Closes the stream (CLOSE with @reason to the peer, after what the owner
 * of a direct stream wrote; the local socket closed); no callback runs
 * after this. */
void gw_link_stream_close(GwLinkStream *stream, const gchar *reason);
const gchar *gw_link_stream_get_device(GwLinkStream *stream);
GwLink *gw_link_stream_get_link(GwLinkStream *stream);

G_END_DECLS
