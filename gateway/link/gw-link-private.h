/* Inside a GwLink: the structs its files share, the functions they call
 * in each other, and what the tests of GwLink look at. Not for the
 * daemon: its callers use gw-link.h alone.
 *
 * The link's files, by noun:
 *   gw-link.c               the connection: frames read and written, TLS
 *                           socket tuning, HELLO (resume or restart),
 *                           keepalive, the grace, the link's lifetime
 *   gw-link-stream.c        GwLinkStream on the wire: opening, the peer's
 *                           stream frames, windows and credits, the
 *                           writer's turn of one stream, resume, CLOSE and
 *                           its tombstones, closing every stream
 *   gw-link-stream-local.c  a stream's local end: the relayed socket, or a
 *                           direct stream's owner (read, write, readable
 *                           and writable calls)
 *   gw-link-directory.c     devices we export and devices the peer
 *                           exports (DEVICE_ADD, DEVICE_REMOVE, SYNCED)
 *   gw-link-buffer.c        GwLinkBuffer, a stream's bytes in chunks
 *   gw-link-refuse.c        gw_link_refuse(), without a GwLink
 *
 * Ownership: a GwLink owns its connection, its streams (link->streams;
 * mine/theirs index them), its exports and the peer's devices; each
 * field below says owned, borrowed or nullable. A GwLinkStream owns its
 * buffers and its local socket and watch; it is freed only by
 * gw_link_stream_end(), gw_link_free() or a refused open_direct(), never
 * by its owner.
 *
 * Threading: as gw-link.h, everything on the link's thread, no locks. A
 * function that may run an owner's callback says so; its caller checks
 * link->freed after it (and the stream may be gone: link->notifying and
 * link->conn_gen tell). gw_link_ref() keeps the struct alive across such a
 * call from a GLib source. */
#pragma once

#include "gw-fd-watch.h"
#include "gw-link-wire.h"
#include "gw-link.h"

G_BEGIN_DECLS

/* The output buffer is filled with frames while it holds less than this:
 * a control frame waits behind at most about this much DATA. */
#define GW_LINK_OUT_LOW GW_LINK_MAX_DATA

/* ---- Byte buffers ---------------------------------------------------- */

/* A queue of chunks: what a stream read and the peer has not acknowledged
 * (tx), or what the peer sent and the local socket has not taken (rx).
 * Empty buffers hold no memory. */
typedef struct {
    gsize len;
    gsize cap;
    guint8 data[];
} GwLinkChunk;

typedef struct {
    GQueue chunks;  /* GwLinkChunk, owned */
    gsize head_off; /* bytes of the first chunk already dropped */
    gsize size;     /* bytes held */
} GwLinkBuffer;

void gw_link_buffer_append(GwLinkBuffer *buf, const guint8 *data, gsize len);
void gw_link_buffer_peek(GwLinkBuffer *buf, gsize offset, guint8 *out, gsize len);
void gw_link_buffer_drop(GwLinkBuffer *buf, gsize len);
void gw_link_buffer_clear(GwLinkBuffer *buf);

/* ---- Types -------------------------------------------------------------- */

typedef enum {
    GW_LINK_STREAM_PENDING, /* ours, OPEN not sent yet (no connection) */
    GW_LINK_STREAM_OPENING, /* ours, OPEN sent, no OPENED yet */
    GW_LINK_STREAM_OPEN,
} GwLinkStreamState;

struct _GwLinkStream {
    GwLink *link;
    GList all_node;   /* in link->streams */
    GList ready_node; /* in link->ready while it has DATA to send */
    gboolean ready;
    GList credit_node; /* in link->credit_due while a small CREDIT waits */
    gboolean credit_due;
    GList notify_node;   /* in link->notify while a readable/writable call waits */
    gboolean notify_in;  /* direct: bytes from the peer came */
    gboolean notify_out; /* direct: the window opened after a short write */
    gboolean want_out;   /* direct: the last gw_link_stream_write() was short */
    gboolean closing;    /* ending: the closed callback runs */
    gboolean mine;       /* we opened it: our id namespace */
    guint32 id;
    gchar *device; /* owned */
    GwLinkStreamState state;
    gboolean need_resume; /* reconnected: no DATA until the peer's RESUME */
    gboolean local_eof;
    gchar *doom_reason; /* owned, nullable: to be closed from an idle */
    GSocket *local;     /* owned, nullable: NULL for a direct stream */
    GwFdWatch *watch;   /* owned, nullable: on @local */
    GwLinkStreamCallbacks cb;
    gpointer user_data;
    /* local -> peer: tx holds [tx_acked, tx_read) */
    GwLinkBuffer tx;
    guint64 tx_acked; /* the peer's last CREDIT */
    guint64 tx_sent;  /* sent on this connection (or resumed from) */
    guint64 tx_max_sent;
    guint64 tx_read;
    /* peer -> local: rx holds [rx_delivered, rx_received) */
    GwLinkBuffer rx;
    guint64 rx_received;
    guint64 rx_delivered;
    guint64 rx_credited; /* the last CREDIT we queued */
};

/* A device we export, and whether the running sync still has to send it. */
typedef struct {
    gchar *id;          /* owned */
    gchar *device_json; /* owned */
    GList pending_node; /* in link->pending while pending */
    gboolean pending;
} GwLinkExport;

/* A device the peer announced. */
typedef struct {
    PolicyDevice *device; /* owned */
    gchar *json;          /* owned: canonical form, to tell a new description */
    gboolean seen;        /* announced since the last HELLO */
} GwLinkPeerDevice;

struct _GwLink {
    gint ref; /* the struct lives while a dispatch runs; see gw_link_free() */
    gboolean freed;
    gchar *peer; /* owned */
    GwLinkConfig config;
    GwLinkCallbacks cb;
    gpointer user_data;
    GMainContext *context; /* owned ref */
    gchar instance[GW_LINK_WIRE_INSTANCE_LEN + 1];
    gchar *peer_instance; /* owned, nullable: from the last HELLO */

    /* the connection */
    GIOStream *conn;               /* owned, nullable */
    GPollableInputStream *input;   /* borrowed from conn */
    GPollableOutputStream *output; /* borrowed from conn */
    GSource *in_source;            /* owned, nullable: without @conn_fd */
    GSource *out_source;           /* owned, nullable: without @conn_fd */
    int conn_fd;                   /* borrowed: the socket under conn, or -1 */
    GwFdWatch *conn_watch;         /* owned, nullable: on @conn_fd */
    gboolean in_pending;           /* the last read stopped before the connection was empty */
    guint conn_gen;                /* changes when a connection ends */
    gboolean hello;                /* the peer's HELLO came on this connection */
    gboolean syncing;              /* the peer's directory sync runs (until SYNCED) */
    gboolean want_out;             /* the last write would block */
    GwLinkDecoder decoder;
    GByteArray *out; /* owned, nullable: frames being written */
    gsize out_pos;
    GByteArray *ctl;         /* owned: control frames not yet in out */
    GQueue ready;            /* GwLinkStream with DATA to send, round robin */
    GQueue credit_due;       /* GwLinkStream whose small CREDIT waits for credit_source */
    GQueue notify;           /* direct GwLinkStream to call readable/writable */
    GwLinkStream *notifying; /* nullable: whose callback runs (cleared if it ends) */
    gboolean reading;        /* frames are being handled: the dispatch writes after */
    gboolean quiet;          /* inside a gw_link_*() call: a write error is handled later */
    GQueue pending;          /* GwLinkExport to send in this sync */
    gboolean synced_pending; /* SYNCED still to send */
    gint64 last_rx;
    gint64 last_tx;
    GSource *keepalive_source; /* owned, nullable */
    GSource *grace_source;     /* owned, nullable */
    gchar *expire_reason;      /* owned, nullable: gw_link_expire() ends the grace now */
    GSource *flush_source;     /* owned, nullable */
    GSource *credit_source;    /* owned, nullable: GW_LINK_CREDIT_DELAY_MS */
    GSource *doom_source;      /* owned, nullable */

    /* streams */
    GQueue streams;        /* every GwLinkStream (owned) */
    GHashTable *mine;      /* id -> GwLinkStream, ours */
    GHashTable *theirs;    /* id -> GwLinkStream, the peer's */
    GHashTable *tomb_mine; /* ids closed by CLOSE, waiting for the peer's */
    GHashTable *tomb_theirs;
    guint32 next_id;
    GQueue doomed; /* GwLinkStream to close from an idle (by doom_reason) */

    GHashTable *exports;      /* id -> GwLinkExport */
    GHashTable *peer_devices; /* id -> GwLinkPeerDevice */

    GwLinkStats stats;
};

typedef enum {
    GW_LINK_CLOSE_NONE,   /* nothing to the peer */
    GW_LINK_CLOSE_SEND,   /* CLOSE, remembered until the peer answers */
    GW_LINK_CLOSE_ANSWER, /* CLOSE answering the peer's */
} GwLinkCloseMode;

static inline gboolean
gw_link_connected(GwLink *link)
{
    return link->conn != NULL && link->hello;
}

static inline guint8
gw_link_stream_flags(GwLinkStream *s)
{
    return s->mine ? GW_LINK_WIRE_FLAG_OPENER : 0;
}

static inline gboolean
gw_link_stream_may_send(GwLinkStream *s)
{
    GwLink *link = s->link;
    return link->conn != NULL && link->hello && s->state == GW_LINK_STREAM_OPEN &&
           !s->need_resume && s->tx_sent < s->tx_read;
}

/* ---- gw-link.c: the connection ------------------------------------------ */

GwLink *gw_link_ref(GwLink *link);
void gw_link_unref(GwLink *link);
void gw_link_grace_start(GwLink *link);
void gw_link_conn_flush(GwLink *link);
void gw_link_kick(GwLink *link);
/* Drops the connection (down() runs). */
void gw_link_protocol_error(GwLink *link, const gchar *problem);

/* ---- gw-link-stream.c: streams on the wire ------------------------------- */

void gw_link_stream_mark_ready(GwLinkStream *s);
void gw_link_stream_unready(GwLinkStream *s);
void gw_link_stream_credit_done(GwLinkStream *s);
void gw_link_stream_free(GwLinkStream *s);
void gw_link_stream_detach(GwLinkStream *s);
/* Runs the stream's closed callback (when @notify). */
void gw_link_stream_end(GwLinkStream *s, const gchar *reason, GwLinkCloseMode mode,
                        gboolean notify);
void gw_link_stream_maybe_credit(GwLinkStream *s);
void gw_link_stream_put_data(GwLinkStream *s, GByteArray *out);
/* Runs closed callbacks. */
void gw_link_close_streams(GwLink *link, const gchar *reason, gboolean all);
void gw_link_streams_hello(GwLink *link);
/* Runs callbacks (open, open_direct, opened, closed). */
void gw_link_on_stream_frame(GwLink *link, const GwLinkFrame *frame);

/* ---- gw-link-stream-local.c: a stream's local end ------------------------ */

void gw_link_stream_update_watch(GwLinkStream *s);
/* Both run closed() when the stream ends (FALSE). */
gboolean gw_link_stream_write_local(GwLinkStream *s);
gboolean gw_link_stream_maybe_finish(GwLinkStream *s);
void gw_link_stream_watch_cb(int fd, GIOCondition revents, gpointer user_data);
void gw_link_stream_put_unsent(GwLinkStream *s);
void gw_link_stream_notify(GwLinkStream *s, gboolean in);
/* Runs readable and writable callbacks. */
void gw_link_notify_streams(GwLink *link);

/* ---- gw-link-directory.c: exports and the peer's devices ----------------- */

void gw_link_export_free(gpointer data);
void gw_link_peer_device_free(gpointer data);
/* Runs device_removed. */
void gw_link_remove_peer_devices(GwLink *link, gboolean unseen_only);
void gw_link_directory_start_sync(GwLink *link);
void gw_link_directory_stop_sync(GwLink *link);
void gw_link_fill_directory(GwLink *link);
/* Run device_added, device_removed, synced. */
void gw_link_on_device_add(GwLink *link, const GwLinkFrame *frame);
void gw_link_on_device_remove(GwLink *link, const GwLinkFrame *frame);
void gw_link_on_synced(GwLink *link, const GwLinkFrame *frame);

/* ---- For the tests ------------------------------------------------------- */

/* The largest number of bytes any one stream of @link holds now: *@max_tx
 * read from a local socket and not yet acknowledged by the peer (the
 * retransmit buffer), *@max_rx received and not yet written to the local
 * socket. Both are bounded by GW_LINK_WINDOW. */
void gw_link_debug_buffered(GwLink *link, gsize *max_tx, gsize *max_rx);

G_END_DECLS
