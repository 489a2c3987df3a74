/* GwLink: see gw-link.h for the contract and docs/links.md ("Wire") for
 * the frames, flow control and resume. */
#include "gw-link.h"

#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <string.h>
#include <sys/socket.h>

#include "gw-fd-watch.h"
#include "gw-link-private.h"
#include "gw-link-wire.h"

/* Bytes read from the connection per read call (on the stack). */
#define GW_LINK_READ_SIZE 32768
/* Bytes read from the connection per dispatch, so that one busy link
 * does not starve the rest of the main context. */
#define GW_LINK_READ_BUDGET (256 * 1024)
/* Bytes read from a local socket per read call (on the stack) and per
 * dispatch. */
#define GW_LINK_LOCAL_READ_SIZE   GW_LINK_MAX_DATA
#define GW_LINK_LOCAL_READ_BUDGET (64 * 1024)
/* The output buffer is filled with frames while it holds less than this:
 * a control frame waits behind at most about this much DATA. */
#define GW_LINK_OUT_LOW GW_LINK_MAX_DATA
/* While this many bytes of control frames wait to be written (the peer
 * does not read), the connection is not read: what the peer makes us
 * answer (PONG, CREDIT, CLOSE) stays bounded. */
#define GW_LINK_CONTROL_HIGH (64 * 1024)
/* A CREDIT goes out once this many bytes were delivered since the last
 * one. Smaller amounts, once the stream's receive buffer drained, ride
 * with the stream's next DATA frame (a device's answer carries the credit
 * of its request: one TLS record instead of two, and no wake-up of the
 * peer for the credit alone) or go out GW_LINK_CREDIT_DELAY_MS later. */
#define GW_LINK_CREDIT_STEP     GW_LINK_MAX_DATA
#define GW_LINK_CREDIT_DELAY_MS 20
/* TCP_NOTSENT_LOWAT on a TCP connection: the kernel keeps this little
 * unsent, so a control frame is not stuck behind a deep socket queue. */
#define GW_LINK_NOTSENT_LOWAT GW_LINK_MAX_DATA
/* Streams we closed whose CLOSE the peer has not answered yet. */
#define GW_LINK_MAX_TOMBSTONES GW_LINK_MAX_STREAMS
/* Size of a buffer chunk made for a small first write and for later ones. */
#define GW_LINK_CHUNK_SMALL 2048
#define GW_LINK_CHUNK_LARGE GW_LINK_MAX_DATA
/* Dead connection: this many keepalive periods without a byte in. */
#define GW_LINK_DEAD_PERIODS 3

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

static void
gw_link_buffer_append(GwLinkBuffer *buf, const guint8 *data, gsize len)
{
    GwLinkChunk *tail = g_queue_peek_tail(&buf->chunks);

    buf->size += len;
    if (tail != NULL && tail->cap > tail->len) {
        gsize take = MIN(len, tail->cap - tail->len);
        memcpy(tail->data + tail->len, data, take);
        tail->len += take;
        data += take;
        len -= take;
    }
    if (len == 0)
        return;
    gsize cap = MAX(len, buf->chunks.length == 0 ? GW_LINK_CHUNK_SMALL : GW_LINK_CHUNK_LARGE);
    GwLinkChunk *chunk = g_malloc(sizeof(GwLinkChunk) + cap);
    chunk->len = len;
    chunk->cap = cap;
    memcpy(chunk->data, data, len);
    g_queue_push_tail(&buf->chunks, chunk);
}

/* Copies @len bytes from @offset (from the first byte held) to @out. */
static void
gw_link_buffer_peek(GwLinkBuffer *buf, gsize offset, guint8 *out, gsize len)
{
    offset += buf->head_off;
    for (GList *l = buf->chunks.head; l != NULL && len > 0; l = l->next) {
        GwLinkChunk *chunk = l->data;
        if (offset >= chunk->len) {
            offset -= chunk->len;
            continue;
        }
        gsize take = MIN(len, chunk->len - offset);
        memcpy(out, chunk->data + offset, take);
        out += take;
        len -= take;
        offset = 0;
    }
}

static void
gw_link_buffer_drop(GwLinkBuffer *buf, gsize len)
{
    len = MIN(len, buf->size);
    buf->size -= len;
    while (len > 0) {
        GwLinkChunk *chunk = g_queue_peek_head(&buf->chunks);
        gsize take = MIN(len, chunk->len - buf->head_off);
        buf->head_off += take;
        len -= take;
        if (buf->head_off == chunk->len) {
            g_free(g_queue_pop_head(&buf->chunks));
            buf->head_off = 0;
        }
    }
}

static void
gw_link_buffer_clear(GwLinkBuffer *buf)
{
    g_queue_clear_full(&buf->chunks, g_free);
    buf->head_off = 0;
    buf->size = 0;
}

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

static void gw_link_conn_flush(GwLink *link);
static void gw_link_conn_lost(GwLink *link, const gchar *reason);
static void gw_link_kick(GwLink *link);

static GwLink *
gw_link_ref(GwLink *link)
{
    link->ref++;
    return link;
}

static void
gw_link_unref(GwLink *link)
{
    if (--link->ref > 0)
        return;
    g_free(link->peer);
    g_free(link);
}

static guint8
gw_link_stream_flags(GwLinkStream *s)
{
    return s->mine ? GW_LINK_WIRE_FLAG_OPENER : 0;
}

/* ---- Streams: scheduling and local I/O ---------------------------------- */

static gboolean
gw_link_stream_may_send(GwLinkStream *s)
{
    GwLink *link = s->link;
    return link->conn != NULL && link->hello && s->state == GW_LINK_STREAM_OPEN &&
           !s->need_resume && s->tx_sent < s->tx_read;
}

static void
gw_link_stream_mark_ready(GwLinkStream *s)
{
    if (s->ready || !gw_link_stream_may_send(s))
        return;
    s->ready = TRUE;
    g_queue_push_tail_link(&s->link->ready, &s->ready_node);
}

static void
gw_link_stream_unready(GwLinkStream *s)
{
    if (!s->ready)
        return;
    g_queue_unlink(&s->link->ready, &s->ready_node);
    s->ready = FALSE;
}

static void
gw_link_stream_credit_done(GwLinkStream *s)
{
    if (!s->credit_due)
        return;
    g_queue_unlink(&s->link->credit_due, &s->credit_node);
    s->credit_due = FALSE;
}

static void
gw_link_stream_update_watch(GwLinkStream *s)
{
    GIOCondition cond = 0;

    if (s->watch == NULL)
        return;
    if (s->state == GW_LINK_STREAM_OPEN && !s->local_eof &&
        s->tx_read - s->tx_acked < GW_LINK_WINDOW)
        cond |= G_IO_IN | G_IO_HUP | G_IO_ERR;
    if (s->rx.size > 0)
        cond |= G_IO_OUT | G_IO_HUP | G_IO_ERR;
    gw_fd_watch_set_condition(s->watch, cond);
}

static gboolean
gw_link_connected(GwLink *link)
{
    return link->conn != NULL && link->hello;
}

static gboolean
gw_link_tombstone_full(GwLink *link)
{
    return g_hash_table_size(link->tomb_mine) + g_hash_table_size(link->tomb_theirs) >=
           GW_LINK_MAX_TOMBSTONES;
}

/* Queues CLOSE for stream @id (@flags as sent) and remembers it until the
 * peer's CLOSE answers, so that the peer's frames crossing ours are
 * ignored. */
static void
gw_link_send_close(GwLink *link, guint8 flags, guint32 id, const gchar *reason, gboolean tombstone)
{
    if (!gw_link_connected(link))
        return;
    gw_link_wire_put_close(link->ctl, flags, id, reason);
    if (tombstone && !gw_link_tombstone_full(link)) {
        GHashTable *tombs =
            (flags & GW_LINK_WIRE_FLAG_OPENER) != 0 ? link->tomb_mine : link->tomb_theirs;
        g_hash_table_add(tombs, GUINT_TO_POINTER(id));
    }
}

static void
gw_link_stream_free(GwLinkStream *s)
{
    g_clear_pointer(&s->watch, gw_fd_watch_free);
    if (s->local != NULL) {
        g_socket_close(s->local, NULL);
        g_clear_object(&s->local);
    }
    gw_link_buffer_clear(&s->tx);
    gw_link_buffer_clear(&s->rx);
    g_free(s->device);
    g_free(s->doom_reason);
    g_free(s);
}

/* Takes @s out of the link (tables, queues). */
static void
gw_link_stream_detach(GwLinkStream *s)
{
    GwLink *link = s->link;

    gw_link_stream_unready(s);
    gw_link_stream_credit_done(s);
    if (s->notify_in || s->notify_out) {
        g_queue_unlink(&link->notify, &s->notify_node);
        s->notify_in = s->notify_out = FALSE;
    }
    if (link->notifying == s)
        link->notifying = NULL;
    if (s->doom_reason != NULL)
        g_queue_remove(&link->doomed, s);
    g_hash_table_remove(s->mine ? link->mine : link->theirs, GUINT_TO_POINTER(s->id));
    g_queue_unlink(&link->streams, &s->all_node);
    link->stats.streams = link->streams.length;
}

/* Queues DATA for what a direct stream's owner wrote and the peer has not
 * been sent yet (at most a window), ahead of the stream's CLOSE. */
static void
gw_link_stream_put_unsent(GwLinkStream *s)
{
    guint8 data[GW_LINK_MAX_DATA];

    while (gw_link_stream_may_send(s)) {
        gsize n = (gsize)MIN(s->tx_read - s->tx_sent, (guint64)GW_LINK_MAX_DATA);
        gw_link_buffer_peek(&s->tx, (gsize)(s->tx_sent - s->tx_acked), data, n);
        gw_link_wire_put_data(s->link->ctl, gw_link_stream_flags(s), s->id, data, n);
        s->tx_sent += n;
        s->tx_max_sent = MAX(s->tx_max_sent, s->tx_sent);
    }
}

/* A direct stream's owner is told (after the frames of this read). */
static void
gw_link_stream_notify(GwLinkStream *s, gboolean in)
{
    if (!s->notify_in && !s->notify_out)
        g_queue_push_tail_link(&s->link->notify, &s->notify_node);
    if (in)
        s->notify_in = TRUE;
    else
        s->notify_out = TRUE;
}

typedef enum {
    GW_LINK_CLOSE_NONE,   /* nothing to the peer */
    GW_LINK_CLOSE_SEND,   /* CLOSE, remembered until the peer answers */
    GW_LINK_CLOSE_ANSWER, /* CLOSE answering the peer's */
} GwLinkCloseMode;

/* Ends @s: CLOSE to the peer as @mode says, the local socket closed, the
 * closed callback (ours, when @notify) and the stream freed. The callback
 * may free the link: callers check link->freed after. */
static void
gw_link_stream_end(GwLinkStream *s, const gchar *reason, GwLinkCloseMode mode, gboolean notify)
{
    GwLink *link = s->link;

    s->closing = TRUE;
    gw_link_stream_detach(s);
    /* what the owner of a direct stream wrote goes before the CLOSE */
    if (mode == GW_LINK_CLOSE_SEND && s->local == NULL)
        gw_link_stream_put_unsent(s);
    if (mode != GW_LINK_CLOSE_NONE && s->state != GW_LINK_STREAM_PENDING)
        gw_link_send_close(link, gw_link_stream_flags(s), s->id, reason,
                           mode == GW_LINK_CLOSE_SEND);
    g_clear_pointer(&s->watch, gw_fd_watch_free);
    if (s->local != NULL)
        g_socket_close(s->local, NULL);
    /* the peer's streams have an owner's callbacks when they are direct */
    if (notify && s->cb.closed != NULL && !link->freed)
        s->cb.closed(s, reason, s->user_data);
    gw_link_stream_free(s);
}

/* Queues a CREDIT into @out for what was delivered and not credited, if
 * anything, when @all or at least GW_LINK_CREDIT_STEP; TRUE if it did. */
static gboolean
gw_link_stream_put_credit(GwLinkStream *s, GByteArray *out, gboolean all)
{
    guint64 fresh = s->rx_delivered - s->rx_credited;

    if (fresh == 0 || !gw_link_connected(s->link) || s->state == GW_LINK_STREAM_PENDING)
        return FALSE;
    if (fresh < GW_LINK_CREDIT_STEP && (!all || s->rx.size > 0))
        return FALSE;
    gw_link_wire_put_u64(out, GW_LINK_FRAME_CREDIT, gw_link_stream_flags(s), s->id,
                         s->rx_delivered);
    s->rx_credited = s->rx_delivered;
    return TRUE;
}

/* The credits no DATA took along (GW_LINK_CREDIT_STEP): only the streams
 * that owe one, not every stream of the link. */
static gboolean
gw_link_credit_cb(gpointer user_data)
{
    GwLink *link = gw_link_ref(user_data);
    gboolean credited = FALSE;
    GwLinkStream *s;

    g_clear_pointer(&link->credit_source, g_source_unref);
    while ((s = g_queue_peek_head(&link->credit_due)) != NULL) {
        gw_link_stream_credit_done(s);
        credited |= gw_link_stream_put_credit(s, link->ctl, TRUE);
    }
    if (credited)
        gw_link_conn_flush(link);
    gw_link_unref(link);
    return G_SOURCE_REMOVE;
}

/* A CREDIT now when enough was delivered; a smaller one waits for the
 * stream's next DATA or GW_LINK_CREDIT_DELAY_MS. */
static void
gw_link_stream_maybe_credit(GwLinkStream *s)
{
    GwLink *link = s->link;

    if (gw_link_stream_put_credit(s, link->ctl, FALSE) || s->rx_delivered == s->rx_credited ||
        !gw_link_connected(link))
        return;
    if (!s->credit_due) {
        s->credit_due = TRUE;
        g_queue_push_tail_link(&link->credit_due, &s->credit_node);
    }
    if (link->credit_source != NULL)
        return;
    link->credit_source = g_timeout_source_new(GW_LINK_CREDIT_DELAY_MS);
    g_source_set_name(link->credit_source, "usbgw-link-credit");
    g_source_set_callback(link->credit_source, gw_link_credit_cb, link, NULL);
    g_source_attach(link->credit_source, link->context);
}

/* Writes what the peer sent to the local socket. FALSE: @s ended. */
static gboolean
gw_link_stream_write_local(GwLinkStream *s)
{
    int fd = g_socket_get_fd(s->local);

    while (s->rx.size > 0) {
        GwLinkChunk *chunk = g_queue_peek_head(&s->rx.chunks);
        ssize_t n = send(fd, chunk->data + s->rx.head_off, chunk->len - s->rx.head_off,
                         MSG_DONTWAIT | MSG_NOSIGNAL);
        if (n > 0) {
            gw_link_buffer_drop(&s->rx, (gsize)n);
            s->rx_delivered += (guint64)n;
            continue;
        }
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            break;
        g_autofree gchar *reason =
            g_strdup_printf("local socket: %s", n < 0 ? g_strerror(errno) : "closed");
        gw_link_stream_end(s, reason, GW_LINK_CLOSE_SEND, TRUE);
        return FALSE;
    }
    gw_link_stream_maybe_credit(s);
    return TRUE;
}

/* After the local end closed: once the peer acknowledged every byte, the
 * stream ends (CLOSE goes after our DATA). FALSE: @s ended. */
static gboolean
gw_link_stream_maybe_finish(GwLinkStream *s)
{
    if (!s->local_eof || s->tx_acked != s->tx_read || !gw_link_connected(s->link))
        return TRUE;
    gw_link_stream_end(s, "the local end closed", GW_LINK_CLOSE_SEND, TRUE);
    return FALSE;
}

/* Reads the local socket while the window has room. FALSE: @s ended. */
static gboolean
gw_link_stream_read_local(GwLinkStream *s)
{
    int fd = g_socket_get_fd(s->local);
    gsize budget = GW_LINK_LOCAL_READ_BUDGET;
    guint8 buf[GW_LINK_LOCAL_READ_SIZE];

    while (s->state == GW_LINK_STREAM_OPEN && !s->local_eof && budget > 0) {
        gsize room = GW_LINK_WINDOW - (gsize)(s->tx_read - s->tx_acked);
        if (room == 0)
            break;
        ssize_t n = recv(fd, buf, MIN(room, sizeof(buf)), MSG_DONTWAIT);
        if (n > 0) {
            gw_link_buffer_append(&s->tx, buf, (gsize)n);
            s->tx_read += (guint64)n;
            budget -= MIN(budget, (gsize)n);
            gw_link_stream_mark_ready(s);
            continue;
        }
        if (n == 0) {
            s->local_eof = TRUE;
            return gw_link_stream_maybe_finish(s);
        }
        if (errno == EINTR)
            continue;
        if (errno == EAGAIN || errno == EWOULDBLOCK)
            break;
        g_autofree gchar *reason = g_strdup_printf("local socket: %s", g_strerror(errno));
        gw_link_stream_end(s, reason, GW_LINK_CLOSE_SEND, TRUE);
        return FALSE;
    }
    return TRUE;
}

static void
gw_link_stream_watch_cb(int fd, GIOCondition revents, gpointer user_data)
{
    GwLinkStream *s = user_data;
    GwLink *link = gw_link_ref(s->link);
    gboolean alive = TRUE;

    if (s->rx.size > 0)
        alive = gw_link_stream_write_local(s);
    if (alive && (revents & (G_IO_IN | G_IO_HUP | G_IO_ERR)) != 0)
        alive = gw_link_stream_read_local(s);
    if (alive)
        gw_link_stream_update_watch(s);
    if (!link->freed)
        gw_link_conn_flush(link);
    gw_link_unref(link);
}

/* A new stream in the link's tables, relaying @local. */
static GwLinkStream *
gw_link_stream_new(GwLink *link, gboolean mine, guint32 id, const gchar *device, GSocket *local)
{
    GwLinkStream *s = g_new0(GwLinkStream, 1);
    g_autofree gchar *name = g_strdup_printf("usbgw-link-stream-%s", device);

    s->link = link;
    s->mine = mine;
    s->id = id;
    s->device = g_strdup(device);
    s->all_node.data = s;
    s->ready_node.data = s;
    s->credit_node.data = s;
    s->notify_node.data = s;
    s->local = local;
    if (local != NULL) {
        g_socket_set_blocking(local, FALSE);
        s->watch = gw_fd_watch_new(link->context, name, g_socket_get_fd(local), 0,
                                   gw_link_stream_watch_cb, s);
    }
    g_hash_table_insert(mine ? link->mine : link->theirs, GUINT_TO_POINTER(id), s);
    g_queue_push_tail_link(&link->streams, &s->all_node);
    link->stats.streams = link->streams.length;
    return s;
}

/* ---- Deferred work (callbacks never run inside a gw_link_*() call) ------ */

static gboolean
gw_link_doom_cb(gpointer user_data)
{
    GwLink *link = gw_link_ref(user_data);
    GwLinkStream *s;

    g_clear_pointer(&link->doom_source, g_source_unref);
    while (!link->freed && (s = g_queue_peek_head(&link->doomed)) != NULL) {
        g_autofree gchar *reason = g_strdup(s->doom_reason);
        gw_link_stream_end(s, reason, GW_LINK_CLOSE_SEND, TRUE);
    }
    if (!link->freed)
        gw_link_conn_flush(link);
    gw_link_unref(link);
    return G_SOURCE_REMOVE;
}

/* Closes @s from an idle with @reason (for a gw_link_open() that cannot
 * go on). */
static void
gw_link_stream_doom(GwLinkStream *s, const gchar *reason)
{
    GwLink *link = s->link;

    if (s->doom_reason != NULL)
        return;
    s->doom_reason = g_strdup(reason);
    g_queue_push_tail(&link->doomed, s);
    if (link->doom_source == NULL) {
        link->doom_source = g_idle_source_new();
        g_source_set_name(link->doom_source, "usbgw-link-doom");
        g_source_set_callback(link->doom_source, gw_link_doom_cb, link, NULL);
        g_source_attach(link->doom_source, link->context);
    }
}

/* ---- Closing everything (grace passed, peer restarted) ------------------ */

/* Removes every device the peer announced (device_removed for each). */
static void
gw_link_remove_peer_devices(GwLink *link, gboolean unseen_only)
{
    g_autoptr(GPtrArray) ids = g_ptr_array_new_with_free_func(g_free);
    GHashTableIter iter;
    gpointer key, value;

    g_hash_table_iter_init(&iter, link->peer_devices);
    while (g_hash_table_iter_next(&iter, &key, &value)) {
        GwLinkPeerDevice *d = value;
        if (!unseen_only || !d->seen)
            g_ptr_array_add(ids, g_strdup(key));
    }
    for (guint i = 0; i < ids->len && !link->freed; i++) {
        const gchar *id = g_ptr_array_index(ids, i);
        if (!g_hash_table_remove(link->peer_devices, id))
            continue;
        link->stats.peer_devices = g_hash_table_size(link->peer_devices);
        if (link->cb.device_removed != NULL)
            link->cb.device_removed(link, id, link->user_data);
    }
}

/* Closes every stream the peer knows of (all when @all), callbacks with
 * @reason. */
static void
gw_link_close_streams(GwLink *link, const gchar *reason, gboolean all)
{
    while (!link->freed) {
        GwLinkStream *s = NULL;
        /* from the head each time: a callback may end other streams */
        for (GList *l = link->streams.head; l != NULL && s == NULL; l = l->next) {
            GwLinkStream *candidate = l->data;
            if (all || candidate->state != GW_LINK_STREAM_PENDING)
                s = candidate;
        }
        if (s == NULL)
            break;
        gw_link_stream_end(s, reason, GW_LINK_CLOSE_NONE, TRUE);
    }
}

static gboolean
gw_link_grace_cb(gpointer user_data)
{
    GwLink *link = gw_link_ref(user_data);
    g_autofree gchar *reason =
        g_strdup_printf("the link to %s was down for longer than its grace period (%u ms)",
                        link->peer, link->config.grace_ms);

    g_clear_pointer(&link->grace_source, g_source_unref);
    g_message("%s", reason);
    gw_link_close_streams(link, reason, TRUE);
    if (!link->freed)
        gw_link_remove_peer_devices(link, FALSE);
    gw_link_unref(link);
    return G_SOURCE_REMOVE;
}

static void
gw_link_grace_start(GwLink *link)
{
    if (link->grace_source != NULL)
        return;
    link->grace_source = g_timeout_source_new(link->config.grace_ms);
    g_source_set_name(link->grace_source, "usbgw-link-grace");
    g_source_set_callback(link->grace_source, gw_link_grace_cb, link, NULL);
    g_source_attach(link->grace_source, link->context);
}

static void
gw_link_grace_stop(GwLink *link)
{
    if (link->grace_source == NULL)
        return;
    g_source_destroy(link->grace_source);
    g_clear_pointer(&link->grace_source, g_source_unref);
}

/* ---- The connection: writing ------------------------------------------- */

static gboolean
gw_link_out_cb(GObject *stream, gpointer user_data)
{
    GwLink *link = gw_link_ref(user_data);
    gw_link_conn_flush(link);
    gw_link_unref(link);
    return G_SOURCE_CONTINUE;
}

static gboolean gw_link_in_cb(GObject *stream, gpointer user_data);
static void gw_link_conn_read(GwLink *link);

static void
gw_link_destroy_source(GSource **source)
{
    if (*source == NULL)
        return;
    g_source_destroy(*source);
    g_clear_pointer(source, g_source_unref);
}

/* Before a poll while the last read stopped short (budget, control
 * queue) or TLS may hold decrypted bytes the socket no longer shows:
 * dispatch the connection's watch at once. */
static gboolean
gw_link_conn_prepare(gpointer user_data)
{
    GwLink *link = user_data;
    return link->in_pending && link->ctl->len < GW_LINK_CONTROL_HIGH;
}

static void
gw_link_conn_watch_cb(int fd, GIOCondition revents, gpointer user_data)
{
    GwLink *link = gw_link_ref(user_data);

    if ((revents & (G_IO_IN | G_IO_HUP | G_IO_ERR)) != 0 || link->in_pending)
        gw_link_conn_read(link);
    if (!link->freed)
        gw_link_conn_flush(link);
    gw_link_unref(link);
}

/* Watches the connection for what is needed now: output only while a
 * write would block, input unless the peer makes us queue too much. A
 * connection over a socket is one GwFdWatch on that socket (TLS reads and
 * writes go through the GIOStream as before): GLib's pollable sources of
 * a TLS connection are a source with child sources, which GLib takes out
 * of the poll set and puts back around every dispatch, waking the context
 * each time (five eventfd writes per frame read, measured). */
static void
gw_link_conn_update_sources(GwLink *link)
{
    gboolean want_in = link->conn != NULL && link->ctl->len < GW_LINK_CONTROL_HIGH;
    gboolean want_out = link->conn != NULL && link->want_out;

    if (link->conn_watch != NULL) {
        GIOCondition cond = 0;
        if (want_in)
            cond |= G_IO_IN | G_IO_HUP | G_IO_ERR;
        if (want_out)
            cond |= G_IO_OUT;
        gw_fd_watch_set_condition(link->conn_watch, cond);
        gw_fd_watch_set_prepare(link->conn_watch, link->in_pending ? gw_link_conn_prepare : NULL);
        return;
    }
    if (want_in && link->in_source == NULL) {
        link->in_source = g_pollable_input_stream_create_source(link->input, NULL);
        g_source_set_name(link->in_source, "usbgw-link-in");
        g_source_set_callback(link->in_source, G_SOURCE_FUNC(gw_link_in_cb), link, NULL);
        g_source_attach(link->in_source, link->context);
    } else if (!want_in) {
        gw_link_destroy_source(&link->in_source);
    }
    if (want_out && link->out_source == NULL) {
        link->out_source = g_pollable_output_stream_create_source(link->output, NULL);
        g_source_set_name(link->out_source, "usbgw-link-out");
        g_source_set_callback(link->out_source, G_SOURCE_FUNC(gw_link_out_cb), link, NULL);
        g_source_attach(link->out_source, link->context);
    } else if (!want_out) {
        gw_link_destroy_source(&link->out_source);
    }
}

/* Queues DEVICE_ADDs of the running sync (when nothing else waits), then
 * SYNCED. */
static void
gw_link_fill_directory(GwLink *link)
{
    GwLinkExport *e;

    while (link->ctl->len < GW_LINK_OUT_LOW && (e = g_queue_peek_head(&link->pending)) != NULL) {
        g_autoptr(GError) error = NULL;
        g_queue_unlink(&link->pending, &e->pending_node);
        e->pending = FALSE;
        if (!gw_link_wire_put_device_add(link->ctl, e->id, e->device_json, &error))
            g_message("link to %s: device %s not announced: %s", link->peer, e->id, error->message);
    }
    if (link->pending.length == 0 && link->synced_pending) {
        gw_link_wire_put_synced(link->ctl);
        link->synced_pending = FALSE;
    }
}

/* Tops up the output buffer: control frames first, then one DATA frame
 * per stream in turn. */
static void
gw_link_fill_out(GwLink *link)
{
    guint8 data[GW_LINK_MAX_DATA];

    if (link->out == NULL)
        link->out = g_byte_array_new();
    while (link->out->len - link->out_pos < GW_LINK_OUT_LOW) {
        GwLinkStream *s;

        if (link->ctl->len == 0 && link->hello)
            gw_link_fill_directory(link);
        if (link->ctl->len > 0) {
            g_byte_array_append(link->out, link->ctl->data, link->ctl->len);
            g_byte_array_set_size(link->ctl, 0);
            continue;
        }
        s = g_queue_peek_head(&link->ready);
        if (s == NULL)
            break;
        gw_link_stream_unready(s);
        if (!gw_link_stream_may_send(s))
            continue;
        gsize n = (gsize)MIN(s->tx_read - s->tx_sent, (guint64)GW_LINK_MAX_DATA);
        gw_link_buffer_peek(&s->tx, (gsize)(s->tx_sent - s->tx_acked), data, n);
        /* what this stream delivered rides with its DATA */
        gw_link_stream_put_credit(s, link->out, TRUE);
        gw_link_wire_put_data(link->out, gw_link_stream_flags(s), s->id, data, n);
        s->tx_sent += n;
        s->tx_max_sent = MAX(s->tx_max_sent, s->tx_sent);
        gw_link_stream_mark_ready(s);
    }
}

/* Writes what can be written now; the rest when the connection takes it. */
static void
gw_link_conn_flush(GwLink *link)
{
    gw_link_destroy_source(&link->flush_source);
    link->want_out = FALSE;
    while (link->conn != NULL) {
        g_autoptr(GError) error = NULL;
        gssize n;

        if (link->out == NULL || link->out_pos == link->out->len)
            gw_link_fill_out(link);
        if (link->out->len == link->out_pos) {
            /* drained: the buffer is freed until there is output again */
            g_clear_pointer(&link->out, g_byte_array_unref);
            link->out_pos = 0;
            break;
        }
        n = g_pollable_output_stream_write_nonblocking(
            link->output, link->out->data + link->out_pos, link->out->len - link->out_pos, NULL,
            &error);
        if (n < 0 && g_error_matches(error, G_IO_ERROR, G_IO_ERROR_WOULD_BLOCK)) {
            link->want_out = TRUE;
            break;
        }
        if (n < 0 && link->quiet) {
            /* inside an API call: the loss is handled (with its callbacks)
             * when the idle write meets the error again */
            gw_link_kick(link);
            break;
        }
        if (n < 0) {
            g_autofree gchar *reason = g_strdup_printf("write: %s", error->message);
            gw_link_conn_lost(link, reason);
            return;
        }
        link->out_pos += (gsize)n;
        link->stats.bytes_out += (guint64)n;
        link->last_tx = g_get_monotonic_time();
        if (link->out_pos == link->out->len) {
            g_byte_array_set_size(link->out, 0);
            link->out_pos = 0;
        }
    }
    gw_link_conn_update_sources(link);
}

static gboolean
gw_link_flush_cb(gpointer user_data)
{
    GwLink *link = gw_link_ref(user_data);
    g_clear_pointer(&link->flush_source, g_source_unref);
    gw_link_conn_flush(link);
    gw_link_unref(link);
    return G_SOURCE_REMOVE;
}

/* Output is waiting: write it from an idle (API calls must not run
 * callbacks, and a failed write does). */
static void
gw_link_kick(GwLink *link)
{
    if (link->conn == NULL || link->flush_source != NULL)
        return;
    link->flush_source = g_idle_source_new();
    g_source_set_name(link->flush_source, "usbgw-link-flush");
    g_source_set_callback(link->flush_source, gw_link_flush_cb, link, NULL);
    g_source_attach(link->flush_source, link->context);
}

/* ---- The connection: attach and loss ------------------------------------ */

/* Closes the connection (no callbacks): streams stay, suspended. */
static void
gw_link_conn_close(GwLink *link)
{
    GIOStream *base = NULL;

    if (link->conn == NULL)
        return;
    gw_link_destroy_source(&link->in_source);
    gw_link_destroy_source(&link->out_source);
    g_clear_pointer(&link->conn_watch, gw_fd_watch_free);
    link->conn_fd = -1;
    link->in_pending = FALSE;
    gw_link_destroy_source(&link->flush_source);
    gw_link_destroy_source(&link->credit_source);
    gw_link_destroy_source(&link->keepalive_source);
    /* close the socket under a TLS connection first: a close_notify to a
     * dead or stalled peer would wait */
    if (G_IS_TLS_CONNECTION(link->conn))
        g_object_get(link->conn, "base-io-stream", &base, NULL);
    if (base != NULL) {
        g_io_stream_close(base, NULL, NULL);
        g_object_unref(base);
    }
    g_io_stream_close(link->conn, NULL, NULL);
    g_clear_object(&link->conn);
    link->input = NULL;
    link->output = NULL;
    link->conn_gen++;
    link->hello = FALSE;
    link->syncing = FALSE;
    link->want_out = FALSE;
    link->stats.up = FALSE;
    gw_link_decoder_clear(&link->decoder);
    g_clear_pointer(&link->out, g_byte_array_unref);
    link->out_pos = 0;
    g_byte_array_set_size(link->ctl, 0);
    while (link->ready.head != NULL)
        gw_link_stream_unready(link->ready.head->data);
    /* a resumed connection credits what was delivered with RESUME */
    while (link->credit_due.head != NULL)
        gw_link_stream_credit_done(link->credit_due.head->data);
    while (link->pending.head != NULL) {
        GwLinkExport *e = link->pending.head->data;
        g_queue_unlink(&link->pending, &e->pending_node);
        e->pending = FALSE;
    }
    link->synced_pending = FALSE;
    g_hash_table_remove_all(link->tomb_mine);
    g_hash_table_remove_all(link->tomb_theirs);
}

static void
gw_link_conn_lost(GwLink *link, const gchar *reason)
{
    if (link->conn == NULL)
        return;
    g_message("link to %s: connection lost: %s", link->peer, reason);
    gw_link_conn_close(link);
    gw_link_grace_start(link);
    if (link->cb.down != NULL)
        link->cb.down(link, reason, link->user_data);
}

static void
gw_link_protocol_error(GwLink *link, const gchar *problem)
{
    g_autofree gchar *reason = g_strdup_printf("protocol error: %s", problem);
    gw_link_conn_lost(link, reason);
}

static gboolean
gw_link_keepalive_cb(gpointer user_data)
{
    GwLink *link = gw_link_ref(user_data);
    gint64 now = g_get_monotonic_time();
    gint64 period = (gint64)link->config.keepalive_ms * 1000;

    if (now - link->last_rx >= GW_LINK_DEAD_PERIODS * period) {
        g_autofree gchar *reason = g_strdup_printf("nothing received for %" G_GINT64_FORMAT " ms",
                                                   (now - link->last_rx) / 1000);
        gw_link_conn_lost(link, reason);
    } else if (link->hello && now - link->last_tx >= period / 2 && link->ctl->len == 0 &&
               (link->out == NULL || link->out->len == link->out_pos)) {
        guint8 ping[8];
        for (guint i = 0; i < 8; i++)
            ping[i] = (guint8)((guint64)now >> (56 - 8 * i));
        gw_link_wire_put_ping(link->ctl, GW_LINK_FRAME_PING, ping);
        gw_link_conn_flush(link);
    }
    gw_link_unref(link);
    return G_SOURCE_CONTINUE;
}

/* The socket under @connection (TLS or not), if it is one: its fd, and
 * TCP_NOTSENT_LOWAT and TCP_NODELAY set on a TCP socket. -1 otherwise. */
static int
gw_link_tune_socket(GIOStream *connection)
{
    g_autoptr(GIOStream) base = NULL;
    GSocket *socket;

    if (G_IS_TLS_CONNECTION(connection))
        g_object_get(connection, "base-io-stream", &base, NULL);
    else
        base = g_object_ref(connection);
    if (!G_IS_SOCKET_CONNECTION(base))
        return -1;
    socket = g_socket_connection_get_socket(G_SOCKET_CONNECTION(base));
    if (g_socket_get_family(socket) == G_SOCKET_FAMILY_IPV4 ||
        g_socket_get_family(socket) == G_SOCKET_FAMILY_IPV6) {
        (void)g_socket_set_option(socket, IPPROTO_TCP, TCP_NOTSENT_LOWAT, GW_LINK_NOTSENT_LOWAT,
                                  NULL);
        (void)g_socket_set_option(socket, IPPROTO_TCP, TCP_NODELAY, 1, NULL);
    }
    return g_socket_get_fd(socket);
}

void
gw_link_attach(GwLink *link, GIOStream *connection)
{
    GInputStream *in = g_io_stream_get_input_stream(connection);
    GOutputStream *out = g_io_stream_get_output_stream(connection);

    g_return_if_fail(link != NULL && G_IS_IO_STREAM(connection));
    gw_link_conn_close(link);
    if (!G_IS_POLLABLE_INPUT_STREAM(in) ||
        !g_pollable_input_stream_can_poll(G_POLLABLE_INPUT_STREAM(in)) ||
        !G_IS_POLLABLE_OUTPUT_STREAM(out) ||
        !g_pollable_output_stream_can_poll(G_POLLABLE_OUTPUT_STREAM(out))) {
        g_critical("link to %s: the connection cannot be polled", link->peer);
        return;
    }
    link->conn = g_object_ref(connection);
    link->input = G_POLLABLE_INPUT_STREAM(in);
    link->output = G_POLLABLE_OUTPUT_STREAM(out);
    link->conn_fd = gw_link_tune_socket(connection);
    if (link->conn_fd >= 0) {
        g_autofree gchar *name = g_strdup_printf("usbgw-link-%s", link->peer);
        link->conn_watch =
            gw_fd_watch_new(link->context, name, link->conn_fd, 0, gw_link_conn_watch_cb, link);
        /* the handshake's last read may have taken our peer's first
         * frames into TLS's buffer: read once without waiting for poll */
        link->in_pending = TRUE;
    }
    gw_link_decoder_init(&link->decoder);
    link->last_rx = link->last_tx = g_get_monotonic_time();
    link->stats.connects++;
    gw_link_wire_put_hello(link->ctl, link->instance);

    link->keepalive_source = g_timeout_source_new(MAX(link->config.keepalive_ms / 2, 1));
    g_source_set_name(link->keepalive_source, "usbgw-link-keepalive");
    g_source_set_callback(link->keepalive_source, gw_link_keepalive_cb, link, NULL);
    g_source_attach(link->keepalive_source, link->context);
    gw_link_conn_update_sources(link);
    gw_link_kick(link);
}

/* ---- The connection: frames from the peer -------------------------------- */

/* The peer's HELLO: resume or start over, then our side of the sync. */
static void
gw_link_on_hello(GwLink *link, const GwLinkFrame *frame)
{
    g_autoptr(GError) error = NULL;
    g_autofree gchar *instance = NULL;
    gboolean resumed;
    guint gen = link->conn_gen;

    if (!gw_link_wire_parse_hello(frame, &instance, &error)) {
        gw_link_protocol_error(link, error->message);
        return;
    }
    resumed = link->peer_instance != NULL && strcmp(link->peer_instance, instance) == 0;
    if (link->peer_instance != NULL && !resumed) {
        g_autofree gchar *reason = g_strdup_printf("the gateway %s restarted", link->peer);
        g_message("link to %s: the peer restarted (instance %s, was %s)", link->peer, instance,
                  link->peer_instance);
        gw_link_close_streams(link, reason, FALSE);
        if (!link->freed)
            gw_link_remove_peer_devices(link, FALSE);
        if (link->freed || link->conn_gen != gen)
            return;
    }
    g_free(link->peer_instance);
    link->peer_instance = g_steal_pointer(&instance);
    link->hello = TRUE;
    link->stats.up = TRUE;
    if (resumed)
        link->stats.resumed++;
    gw_link_grace_stop(link);

    for (GList *l = link->streams.head; l != NULL; l = l->next) {
        GwLinkStream *s = l->data;
        if (s->doom_reason != NULL)
            continue;
        if (s->state == GW_LINK_STREAM_PENDING) {
            g_autoptr(GError) open_error = NULL;
            if (gw_link_wire_put_open(link->ctl, s->id, s->device, &open_error))
                s->state = GW_LINK_STREAM_OPENING;
            else
                gw_link_stream_doom(s, open_error->message);
            continue;
        }
        /* the same peer: from where it received */
        s->need_resume = TRUE;
        gw_link_wire_put_u64(link->ctl, GW_LINK_FRAME_RESUME, gw_link_stream_flags(s), s->id,
                             s->rx_received);
        if (s->rx_delivered > 0) {
            gw_link_wire_put_u64(link->ctl, GW_LINK_FRAME_CREDIT, gw_link_stream_flags(s), s->id,
                                 s->rx_delivered);
            s->rx_credited = s->rx_delivered;
        }
    }

    /* our directory, in full, then SYNCED */
    GHashTableIter iter;
    gpointer value;
    g_hash_table_iter_init(&iter, link->exports);
    while (g_hash_table_iter_next(&iter, NULL, &value)) {
        GwLinkExport *e = value;
        e->pending = TRUE;
        g_queue_push_tail_link(&link->pending, &e->pending_node);
    }
    link->synced_pending = TRUE;
    /* the peer's directory: what it does not announce again goes */
    g_hash_table_iter_init(&iter, link->peer_devices);
    while (g_hash_table_iter_next(&iter, NULL, &value))
        ((GwLinkPeerDevice *)value)->seen = FALSE;
    link->syncing = TRUE;

    g_message("link to %s: up%s", link->peer, resumed ? " (resumed)" : "");
    if (link->cb.up != NULL)
        link->cb.up(link, resumed, link->user_data);
}

static void
gw_link_on_device_add(GwLink *link, const GwLinkFrame *frame)
{
    g_autoptr(GError) error = NULL;
    g_autofree gchar *id = NULL;
    g_autofree gchar *json = NULL;
    g_autoptr(PolicyDevice) device = NULL;
    GwLinkPeerDevice *d;

    if (!gw_link_wire_parse_device_add(frame, &id, &device, &json, &error)) {
        gw_link_protocol_error(link, error->message);
        return;
    }
    d = g_hash_table_lookup(link->peer_devices, id);
    if (d == NULL) {
        if (g_hash_table_size(link->peer_devices) >= GW_LINK_MAX_DEVICES) {
            g_autofree gchar *problem =
                g_strdup_printf("DEVICE_ADD: more than %u devices announced", GW_LINK_MAX_DEVICES);
            gw_link_protocol_error(link, problem);
            return;
        }
        d = g_new0(GwLinkPeerDevice, 1);
        g_hash_table_insert(link->peer_devices, g_strdup(id), d);
        link->stats.peer_devices = g_hash_table_size(link->peer_devices);
    } else if (strcmp(d->json, json) == 0) {
        d->seen = TRUE;
        return;
    }
    d->seen = TRUE;
    g_clear_pointer(&d->device, policy_device_free);
    g_free(d->json);
    d->device = g_steal_pointer(&device);
    d->json = g_steal_pointer(&json);
    if (link->cb.device_added != NULL)
        link->cb.device_added(link, id, d->device, link->user_data);
}

static void
gw_link_on_device_remove(GwLink *link, const GwLinkFrame *frame)
{
    g_autoptr(GError) error = NULL;
    g_autofree gchar *id = NULL;

    if (!gw_link_wire_parse_device_remove(frame, &id, &error)) {
        gw_link_protocol_error(link, error->message);
        return;
    }
    if (!g_hash_table_remove(link->peer_devices, id))
        return;
    link->stats.peer_devices = g_hash_table_size(link->peer_devices);
    if (link->cb.device_removed != NULL)
        link->cb.device_removed(link, id, link->user_data);
}

static void
gw_link_on_synced(GwLink *link, const GwLinkFrame *frame)
{
    g_autoptr(GError) error = NULL;

    if (!gw_link_wire_parse_synced(frame, &error)) {
        gw_link_protocol_error(link, error->message);
        return;
    }
    if (!link->syncing)
        return;
    link->syncing = FALSE;
    gw_link_remove_peer_devices(link, TRUE);
    if (!link->freed && link->cb.synced != NULL)
        link->cb.synced(link, g_hash_table_size(link->peer_devices), link->user_data);
}

/* The peer opens a stream on one of our devices. */
static void
gw_link_on_open(GwLink *link, const GwLinkFrame *frame)
{
    g_autoptr(GError) error = NULL;
    g_autofree gchar *device = NULL;
    g_autofree gchar *reason = NULL;
    GSocket *local;
    guint gen = link->conn_gen;
    gpointer id = GUINT_TO_POINTER(frame->stream);

    if (!gw_link_wire_parse_open(frame, &device, &error)) {
        gw_link_protocol_error(link, error->message);
        return;
    }
    if (g_hash_table_contains(link->theirs, id) || g_hash_table_contains(link->tomb_theirs, id)) {
        g_autofree gchar *problem =
            g_strdup_printf("OPEN of stream %u, which is open already", frame->stream);
        gw_link_protocol_error(link, problem);
        return;
    }
    if (gw_link_tombstone_full(link)) {
        gw_link_protocol_error(link, "too many streams closed and not answered");
        return;
    }
    if (link->streams.length >= GW_LINK_MAX_STREAMS) {
        g_autofree gchar *why =
            g_strdup_printf("too many streams on this link (at most %u)", GW_LINK_MAX_STREAMS);
        gw_link_send_close(link, 0, frame->stream, why, TRUE);
        return;
    }
    if (link->cb.open_direct != NULL) {
        GwLinkStream *s = gw_link_stream_new(link, FALSE, frame->stream, device, NULL);
        gboolean taken;

        s->state = GW_LINK_STREAM_OPEN;
        link->notifying = s; /* tells whether the callback ended it */
        taken = link->cb.open_direct(link, s, device, &reason, link->user_data);
        if (link->freed || link->notifying != s) {
            /* the link or the stream went meanwhile */
            return;
        }
        link->notifying = NULL;
        if (!taken || s->cb.readable == NULL) {
            gw_link_stream_detach(s);
            gw_link_stream_free(s);
            if (link->conn_gen == gen)
                gw_link_send_close(link, 0, frame->stream, reason != NULL ? reason : "refused",
                                   TRUE);
            return;
        }
        /* taken: a connection lost meanwhile resumes it like any other */
        if (link->conn_gen == gen)
            gw_link_wire_put_opened(link->ctl, 0, frame->stream);
        return;
    }
    local = link->cb.open(link, device, &reason, link->user_data);
    if (link->freed || link->conn_gen != gen) {
        g_clear_object(&local);
        return;
    }
    if (local == NULL) {
        gw_link_send_close(link, 0, frame->stream, reason != NULL ? reason : "refused", TRUE);
        return;
    }
    GwLinkStream *s = gw_link_stream_new(link, FALSE, frame->stream, device, local);
    s->state = GW_LINK_STREAM_OPEN;
    gw_link_wire_put_opened(link->ctl, 0, frame->stream);
    gw_link_stream_update_watch(s);
}

static void
gw_link_on_data(GwLink *link, GwLinkStream *s, const GwLinkFrame *frame)
{
    if (s->rx_received + frame->length - s->rx_credited > GW_LINK_WINDOW) {
        g_autofree gchar *problem = g_strdup_printf(
            "DATA beyond the window on stream %u (%" G_GUINT64_FORMAT " bytes unacknowledged, "
            "window %u)",
            frame->stream, s->rx_received + frame->length - s->rx_credited, GW_LINK_WINDOW);
        gw_link_protocol_error(link, problem);
        return;
    }
    s->rx_received += frame->length;
    gw_link_buffer_append(&s->rx, frame->payload, frame->length);
    if (s->local == NULL) {
        gw_link_stream_notify(s, TRUE);
        return;
    }
    if (gw_link_stream_write_local(s))
        gw_link_stream_update_watch(s);
}

static void
gw_link_on_credit(GwLink *link, GwLinkStream *s, const GwLinkFrame *frame)
{
    guint64 acked = gw_link_wire_parse_u64(frame);

    if (acked > s->tx_max_sent) {
        g_autofree gchar *problem = g_strdup_printf(
            "CREDIT of %" G_GUINT64_FORMAT " bytes on stream %u, only %" G_GUINT64_FORMAT " sent",
            acked, frame->stream, s->tx_max_sent);
        gw_link_protocol_error(link, problem);
        return;
    }
    if (acked <= s->tx_acked)
        return;
    gw_link_buffer_drop(&s->tx, (gsize)(acked - s->tx_acked));
    s->tx_acked = acked;
    s->tx_sent = MAX(s->tx_sent, acked);
    if (s->want_out) {
        s->want_out = FALSE;
        gw_link_stream_notify(s, FALSE);
    }
    if (gw_link_stream_maybe_finish(s))
        gw_link_stream_update_watch(s);
}

static void
gw_link_on_resume(GwLink *link, GwLinkStream *s, const GwLinkFrame *frame)
{
    guint64 offset = gw_link_wire_parse_u64(frame);

    if (!s->need_resume) {
        g_autofree gchar *problem =
            g_strdup_printf("RESUME of stream %u outside a reconnect", frame->stream);
        gw_link_protocol_error(link, problem);
        return;
    }
    if (offset < s->tx_acked || offset > s->tx_max_sent) {
        g_autofree gchar *problem = g_strdup_printf(
            "RESUME of stream %u from %" G_GUINT64_FORMAT ", outside the %" G_GUINT64_FORMAT
            "..%" G_GUINT64_FORMAT " it may ask for",
            frame->stream, offset, s->tx_acked, s->tx_max_sent);
        gw_link_protocol_error(link, problem);
        return;
    }
    s->need_resume = FALSE;
    s->tx_sent = offset;
    if (s->state == GW_LINK_STREAM_OPENING) {
        /* the peer has the stream: its OPENED was lost with the connection */
        s->state = GW_LINK_STREAM_OPEN;
        if (s->cb.opened != NULL)
            s->cb.opened(s, s->user_data);
        if (link->freed)
            return;
    }
    gw_link_stream_mark_ready(s);
    if (gw_link_stream_maybe_finish(s))
        gw_link_stream_update_watch(s);
}

/* A frame of one stream. */
static void
gw_link_on_stream_frame(GwLink *link, const GwLinkFrame *frame)
{
    gboolean theirs = (frame->flags & GW_LINK_WIRE_FLAG_OPENER) != 0;
    guint8 reply_flags = theirs ? 0 : GW_LINK_WIRE_FLAG_OPENER;
    GHashTable *table = theirs ? link->theirs : link->mine;
    GHashTable *tombs = theirs ? link->tomb_theirs : link->tomb_mine;
    gpointer id = GUINT_TO_POINTER(frame->stream);
    GwLinkStream *s;

    if (frame->type == GW_LINK_FRAME_OPEN) {
        gw_link_on_open(link, frame);
        return;
    }
    s = g_hash_table_lookup(table, id);
    if (s != NULL && s->doom_reason != NULL)
        s = NULL;
    if (s == NULL) {
        if (frame->type == GW_LINK_FRAME_CLOSE) {
            g_hash_table_remove(tombs, id);
            return;
        }
        if (g_hash_table_contains(tombs, id))
            return;
        if (frame->type == GW_LINK_FRAME_RESUME) {
            if (gw_link_tombstone_full(link)) {
                gw_link_protocol_error(link, "too many streams closed and not answered");
                return;
            }
            gw_link_send_close(link, reply_flags, frame->stream, "unknown stream", TRUE);
            return;
        }
        g_autofree gchar *problem =
            g_strdup_printf("%s on unknown stream %u (%s)", gw_link_frame_type_name(frame->type),
                            frame->stream, theirs ? "opened by the peer" : "opened by us");
        gw_link_protocol_error(link, problem);
        return;
    }

    switch ((GwLinkFrameType)frame->type) {
    case GW_LINK_FRAME_OPENED:
        if (!s->mine || s->state != GW_LINK_STREAM_OPENING) {
            g_autofree gchar *problem =
                g_strdup_printf("OPENED of stream %u, which is not opening", frame->stream);
            gw_link_protocol_error(link, problem);
            return;
        }
        s->state = GW_LINK_STREAM_OPEN;
        gw_link_stream_update_watch(s);
        /* what a direct stream's owner wrote meanwhile */
        gw_link_stream_mark_ready(s);
        if (s->cb.opened != NULL)
            s->cb.opened(s, s->user_data);
        return;
    case GW_LINK_FRAME_CLOSE: {
        g_autoptr(GError) error = NULL;
        g_autofree gchar *reason = NULL;
        if (!gw_link_wire_parse_reason(frame, &reason, &error)) {
            gw_link_protocol_error(link, error->message);
            return;
        }
        /* what the peer sent before its CLOSE goes to the local socket
         * as far as it takes it now */
        if (s->local != NULL && s->rx.size > 0 && !gw_link_stream_write_local(s))
            return;
        gw_link_stream_end(s, reason, GW_LINK_CLOSE_ANSWER, TRUE);
        return;
    }
    case GW_LINK_FRAME_DATA:
        gw_link_on_data(link, s, frame);
        return;
    case GW_LINK_FRAME_CREDIT:
        gw_link_on_credit(link, s, frame);
        return;
    case GW_LINK_FRAME_RESUME:
        gw_link_on_resume(link, s, frame);
        return;
    default:
        return;
    }
}

/* One frame from the peer. */
static void
gw_link_on_frame(GwLink *link, const GwLinkFrame *frame)
{
    g_autoptr(GError) error = NULL;

    if (!link->hello && frame->type != GW_LINK_FRAME_HELLO && frame->type != GW_LINK_FRAME_REFUSE) {
        g_autofree gchar *problem =
            g_strdup_printf("%s before HELLO", gw_link_frame_type_name(frame->type));
        gw_link_protocol_error(link, problem);
        return;
    }
    switch ((GwLinkFrameType)frame->type) {
    case GW_LINK_FRAME_HELLO:
        if (link->hello) {
            gw_link_protocol_error(link, "a second HELLO");
            return;
        }
        gw_link_on_hello(link, frame);
        return;
    case GW_LINK_FRAME_REFUSE: {
        g_autofree gchar *reason = NULL;
        g_autofree gchar *lost = NULL;
        guint gen = link->conn_gen;
        if (!gw_link_wire_parse_reason(frame, &reason, &error)) {
            gw_link_protocol_error(link, error->message);
            return;
        }
        g_message("link to %s: refused by the peer: %s", link->peer, reason);
        if (link->cb.refused != NULL)
            link->cb.refused(link, reason, link->user_data);
        if (link->freed || link->conn_gen != gen)
            return;
        lost = g_strdup_printf("refused by the peer: %s", reason);
        gw_link_conn_lost(link, lost);
        return;
    }
    case GW_LINK_FRAME_DEVICE_ADD:
        gw_link_on_device_add(link, frame);
        return;
    case GW_LINK_FRAME_DEVICE_REMOVE:
        gw_link_on_device_remove(link, frame);
        return;
    case GW_LINK_FRAME_SYNCED:
        gw_link_on_synced(link, frame);
        return;
    case GW_LINK_FRAME_PING:
        gw_link_wire_put_ping(link->ctl, GW_LINK_FRAME_PONG, frame->payload);
        return;
    case GW_LINK_FRAME_PONG: {
        guint64 sent = gw_link_wire_parse_u64(frame);
        gint64 now = g_get_monotonic_time();
        if (sent <= (guint64)now)
            link->stats.rtt_us = now - (gint64)sent;
        return;
    }
    case GW_LINK_FRAME_OPEN:
    case GW_LINK_FRAME_OPENED:
    case GW_LINK_FRAME_CLOSE:
    case GW_LINK_FRAME_DATA:
    case GW_LINK_FRAME_CREDIT:
    case GW_LINK_FRAME_RESUME:
        gw_link_on_stream_frame(link, frame);
        return;
    }
}

/* Reads and handles what the peer sent, within the read budget. */
/* Tells the owners of direct streams what the frames just handled
 * brought: bytes to read, room to write. Their callbacks may end streams
 * or free the link. */
static void
gw_link_notify_streams(GwLink *link)
{
    GList *node;

    while (!link->freed && (node = g_queue_pop_head_link(&link->notify)) != NULL) {
        GwLinkStream *s = node->data;
        gboolean in = s->notify_in, out = s->notify_out;

        s->notify_in = s->notify_out = FALSE;
        link->notifying = s;
        if (in)
            s->cb.readable(s, s->user_data);
        if (out && !link->freed && link->notifying == s)
            s->cb.writable(s, s->user_data);
        if (!link->freed)
            link->notifying = NULL;
    }
}

static void gw_link_conn_read_frames(GwLink *link);

static void
gw_link_conn_read(GwLink *link)
{
    link->reading = TRUE;
    gw_link_conn_read_frames(link);
    if (!link->freed)
        link->reading = FALSE;
    gw_link_notify_streams(link);
}

static void
gw_link_conn_read_frames(GwLink *link)
{
    guint gen = link->conn_gen;
    gsize budget = GW_LINK_READ_BUDGET;
    guint8 buf[GW_LINK_READ_SIZE];

    /* stays set when the budget or the control queue stops the loop */
    link->in_pending = TRUE;
    while (link->conn != NULL && link->conn_gen == gen && budget > 0 &&
           link->ctl->len < GW_LINK_CONTROL_HIGH) {
        g_autoptr(GError) error = NULL;
        gssize n =
            g_pollable_input_stream_read_nonblocking(link->input, buf, sizeof(buf), NULL, &error);
        if (n < 0 && g_error_matches(error, G_IO_ERROR, G_IO_ERROR_WOULD_BLOCK)) {
            link->in_pending = FALSE;
            break;
        }
        if (n < 0) {
            g_autofree gchar *reason = g_strdup_printf("read: %s", error->message);
            gw_link_conn_lost(link, reason);
            return;
        }
        if (n == 0) {
            gw_link_conn_lost(link, "the peer closed the connection");
            return;
        }
        link->stats.bytes_in += (guint64)n;
        link->last_rx = g_get_monotonic_time();
        budget -= MIN(budget, (gsize)n);

        gsize off = 0;
        while (off < (gsize)n) {
            g_autoptr(GError) decode_error = NULL;
            GwLinkFrame frame;
            gsize used = 0;
            GwLinkDecodeResult r = gw_link_decoder_feed(&link->decoder, buf + off, (gsize)n - off,
                                                        &used, &frame, &decode_error);
            off += used;
            if (r == GW_LINK_DECODE_ERROR) {
                gw_link_protocol_error(link, decode_error->message);
                return;
            }
            if (r == GW_LINK_DECODE_MORE)
                break;
            gw_link_on_frame(link, &frame);
            if (link->freed || link->conn_gen != gen)
                return;
        }
    }
}

static gboolean
gw_link_in_cb(GObject *stream, gpointer user_data)
{
    GwLink *link = gw_link_ref(user_data);

    gw_link_conn_read(link);
    if (!link->freed)
        gw_link_conn_flush(link);
    gw_link_unref(link);
    return G_SOURCE_CONTINUE;
}

/* ---- Public API ---------------------------------------------------------- */

static void
gw_link_export_free(gpointer data)
{
    GwLinkExport *e = data;
    g_free(e->id);
    g_free(e->device_json);
    g_free(e);
}

static void
gw_link_peer_device_free(gpointer data)
{
    GwLinkPeerDevice *d = data;
    if (d->device != NULL)
        policy_device_free(d->device);
    g_free(d->json);
    g_free(d);
}

GwLink *
gw_link_new(const gchar *peer, const GwLinkConfig *config, const GwLinkCallbacks *cb,
            gpointer user_data)
{
    GwLink *link = g_new0(GwLink, 1);

    g_return_val_if_fail(cb != NULL && (cb->open != NULL || cb->open_direct != NULL), NULL);
    link->ref = 1;
    link->peer = g_strdup(peer);
    if (config != NULL)
        link->config = *config;
    if (link->config.grace_ms == 0)
        link->config.grace_ms = GW_LINK_DEFAULT_GRACE_MS;
    if (link->config.keepalive_ms == 0)
        link->config.keepalive_ms = GW_LINK_DEFAULT_KEEPALIVE_MS;
    link->cb = *cb;
    link->user_data = user_data;
    link->context = g_main_context_ref_thread_default();
    g_snprintf(link->instance, sizeof(link->instance), "%08x%08x", g_random_int(), g_random_int());
    link->ctl = g_byte_array_new();
    link->mine = g_hash_table_new(NULL, NULL);
    link->theirs = g_hash_table_new(NULL, NULL);
    link->tomb_mine = g_hash_table_new(NULL, NULL);
    link->tomb_theirs = g_hash_table_new(NULL, NULL);
    link->exports = g_hash_table_new_full(g_str_hash, g_str_equal, NULL, gw_link_export_free);
    link->peer_devices =
        g_hash_table_new_full(g_str_hash, g_str_equal, g_free, gw_link_peer_device_free);
    link->next_id = 1;
    link->conn_fd = -1;
    link->stats.rtt_us = -1;
    return link;
}

void
gw_link_free(GwLink *link)
{
    GwLinkStream *s;

    if (link == NULL)
        return;
    link->freed = TRUE;
    gw_link_conn_close(link);
    gw_link_destroy_source(&link->grace_source);
    gw_link_destroy_source(&link->credit_source);
    gw_link_destroy_source(&link->doom_source);
    while ((s = g_queue_peek_head(&link->streams)) != NULL) {
        gw_link_stream_detach(s);
        gw_link_stream_free(s);
    }
    g_queue_clear(&link->doomed);
    g_clear_pointer(&link->mine, g_hash_table_unref);
    g_clear_pointer(&link->theirs, g_hash_table_unref);
    g_clear_pointer(&link->tomb_mine, g_hash_table_unref);
    g_clear_pointer(&link->tomb_theirs, g_hash_table_unref);
    g_clear_pointer(&link->exports, g_hash_table_unref);
    g_clear_pointer(&link->peer_devices, g_hash_table_unref);
    g_clear_pointer(&link->ctl, g_byte_array_unref);
    g_clear_pointer(&link->peer_instance, g_free);
    g_clear_pointer(&link->context, g_main_context_unref);
    gw_link_unref(link);
}

const gchar *
gw_link_get_peer(GwLink *link)
{
    return link->peer;
}

gboolean
gw_link_is_up(GwLink *link)
{
    return link->stats.up;
}

void
gw_link_get_stats(GwLink *link, GwLinkStats *stats)
{
    *stats = link->stats;
}

void
gw_link_announce(GwLink *link, const gchar *id, const PolicyDevice *device)
{
    GwLinkExport *e;

    g_return_if_fail(link != NULL && id != NULL && device != NULL);
    e = g_hash_table_lookup(link->exports, id);
    if (e == NULL) {
        e = g_new0(GwLinkExport, 1);
        e->id = g_strdup(id);
        e->pending_node.data = e;
        g_hash_table_insert(link->exports, e->id, e);
    }
    g_free(e->device_json);
    e->device_json = gw_link_wire_device_json(device);
    if (gw_link_connected(link) && !e->pending) {
        e->pending = TRUE;
        g_queue_push_tail_link(&link->pending, &e->pending_node);
        gw_link_kick(link);
    }
}

void
gw_link_withdraw(GwLink *link, const gchar *id)
{
    GwLinkExport *e;

    g_return_if_fail(link != NULL && id != NULL);
    e = g_hash_table_lookup(link->exports, id);
    if (e == NULL)
        return;
    if (e->pending)
        g_queue_unlink(&link->pending, &e->pending_node);
    if (gw_link_connected(link)) {
        g_autoptr(GError) error = NULL;
        if (gw_link_wire_put_device_remove(link->ctl, id, &error))
            gw_link_kick(link);
    }
    g_hash_table_remove(link->exports, id);
}

/* gw_link_open() and gw_link_open_direct(): @local (taken) or NULL. */
static GwLinkStream *
gw_link_open_stream(GwLink *link, const gchar *id, GSocket *local, const GwLinkStreamCallbacks *cb,
                    gpointer user_data)
{
    GwLinkStream *s;

    g_return_val_if_fail(link != NULL && id != NULL, NULL);
    g_return_val_if_fail(cb != NULL && cb->closed != NULL, NULL);
    s = gw_link_stream_new(link, TRUE, link->next_id++, id, local);
    if (link->next_id == 0)
        link->next_id = 1;
    s->cb = *cb;
    s->user_data = user_data;
    s->state = GW_LINK_STREAM_PENDING;
    if (link->streams.length > GW_LINK_MAX_STREAMS) {
        g_autofree gchar *reason =
            g_strdup_printf("too many streams on this link (at most %u)", GW_LINK_MAX_STREAMS);
        gw_link_stream_doom(s, reason);
        return s;
    }
    if (gw_link_connected(link)) {
        g_autoptr(GError) error = NULL;
        if (!gw_link_wire_put_open(link->ctl, s->id, id, &error)) {
            gw_link_stream_doom(s, error->message);
            return s;
        }
        s->state = GW_LINK_STREAM_OPENING;
        gw_link_kick(link);
    } else {
        gw_link_grace_start(link);
    }
    return s;
}

GwLinkStream *
gw_link_open_direct(GwLink *link, const gchar *id, const GwLinkStreamCallbacks *cb,
                    gpointer user_data)
{
    g_return_val_if_fail(cb != NULL && cb->readable != NULL && cb->writable != NULL, NULL);
    return gw_link_open_stream(link, id, NULL, cb, user_data);
}

void
gw_link_stream_set_callbacks(GwLinkStream *stream, const GwLinkStreamCallbacks *cb,
                             gpointer user_data)
{
    g_return_if_fail(stream->local == NULL && cb != NULL && cb->closed != NULL &&
                     cb->readable != NULL && cb->writable != NULL);
    stream->cb = *cb;
    stream->user_data = user_data;
}

gssize
gw_link_stream_read(GwLinkStream *stream, guint8 *data, gsize count)
{
    GwLinkBuffer *rx = &stream->rx;
    gsize n = 0;

    g_return_val_if_fail(stream->local == NULL, -1);
    while (n < count && rx->size > 0) {
        GwLinkChunk *chunk = g_queue_peek_head(&rx->chunks);
        gsize take = MIN(count - n, chunk->len - rx->head_off);
        memcpy(data + n, chunk->data + rx->head_off, take);
        gw_link_buffer_drop(rx, take);
        n += take;
    }
    if (n == 0)
        return stream->closing ? -1 : 0;
    stream->rx_delivered += n;
    if (!stream->closing) {
        gsize queued = stream->link->ctl->len;
        gw_link_stream_maybe_credit(stream);
        if (stream->link->ctl->len != queued && !stream->link->reading)
            gw_link_kick(stream->link);
    }
    return (gssize)n;
}

gssize
gw_link_stream_write(GwLinkStream *stream, const guint8 *data, gsize count)
{
    gsize room;

    g_return_val_if_fail(stream->local == NULL, -1);
    if (stream->closing || stream->local_eof)
        return -1;
    room = GW_LINK_WINDOW - (gsize)(stream->tx_read - stream->tx_acked);
    if (count > room) {
        stream->want_out = TRUE;
        count = room;
    }
    if (count == 0)
        return 0;
    gw_link_buffer_append(&stream->tx, data, count);
    stream->tx_read += count;
    gw_link_stream_mark_ready(stream);
    return (gssize)count;
}

void
gw_link_stream_flush(GwLinkStream *stream)
{
    GwLink *link = stream->link;

    /* the link's own dispatch writes when it is done */
    if (link->reading || link->conn == NULL || stream->closing)
        return;
    link->quiet = TRUE;
    gw_link_conn_flush(link);
    link->quiet = FALSE;
}

gssize
gw_link_stream_slot_read(gpointer data, guint8 *buf, gsize count)
{
    GwLinkStream *stream = *(GwLinkStream **)data;
    return stream != NULL ? gw_link_stream_read(stream, buf, count) : -1;
}

gssize
gw_link_stream_slot_write(gpointer data, const guint8 *buf, gsize count)
{
    GwLinkStream *stream = *(GwLinkStream **)data;
    return stream != NULL ? gw_link_stream_write(stream, buf, count) : -1;
}

void
gw_link_stream_slot_flush(gpointer data)
{
    GwLinkStream *stream = *(GwLinkStream **)data;
    if (stream != NULL)
        gw_link_stream_flush(stream);
}

GwLinkStream *
gw_link_open(GwLink *link, const gchar *id, GSocket *local, const GwLinkStreamCallbacks *cb,
             gpointer user_data)
{
    g_return_val_if_fail(G_IS_SOCKET(local), NULL);
    return gw_link_open_stream(link, id, g_object_ref(local), cb, user_data);
}

void
gw_link_stream_close(GwLinkStream *stream, const gchar *reason)
{
    GwLink *link;

    if (stream == NULL)
        return;
    link = stream->link;
    gw_link_stream_end(stream, reason != NULL ? reason : "closed", GW_LINK_CLOSE_SEND, FALSE);
    gw_link_kick(link);
}

const gchar *
gw_link_stream_get_device(GwLinkStream *stream)
{
    return stream->device;
}

GwLink *
gw_link_stream_get_link(GwLinkStream *stream)
{
    return stream->link;
}

void
gw_link_debug_buffered(GwLink *link, gsize *max_tx, gsize *max_rx)
{
    *max_tx = 0;
    *max_rx = 0;
    for (GList *l = link->streams.head; l != NULL; l = l->next) {
        GwLinkStream *s = l->data;
        *max_tx = MAX(*max_tx, s->tx.size);
        *max_rx = MAX(*max_rx, s->rx.size);
    }
}

/* ---- Refusing a connection without a link ------------------------------- */

typedef struct {
    GIOStream *conn;           /* owned */
    GCancellable *cancellable; /* owned */
    GSource *timeout;          /* owned */
    GByteArray *frame;         /* owned */
    guint8 sink[1024];         /* what the refused peer still sends, dropped */
} GwLinkRefusal;

static void
gw_link_refusal_finish(GwLinkRefusal *r)
{
    g_source_destroy(r->timeout);
    g_source_unref(r->timeout);
    g_io_stream_close_async(r->conn, G_PRIORITY_DEFAULT, NULL, NULL, NULL);
    g_object_unref(r->conn);
    g_object_unref(r->cancellable);
    g_byte_array_unref(r->frame);
    g_free(r);
}

static gboolean
gw_link_refusal_timeout_cb(gpointer user_data)
{
    GwLinkRefusal *r = user_data;
    g_cancellable_cancel(r->cancellable);
    return G_SOURCE_REMOVE;
}

/* Reads until the peer closes: closing with unread input would reset the
 * connection and could destroy the REFUSE before the peer read it. */
static void
gw_link_refusal_read_cb(GObject *source, GAsyncResult *result, gpointer user_data)
{
    GwLinkRefusal *r = user_data;
    gssize n = g_input_stream_read_finish(G_INPUT_STREAM(source), result, NULL);

    if (n <= 0) {
        gw_link_refusal_finish(r);
        return;
    }
    g_input_stream_read_async(G_INPUT_STREAM(source), r->sink, sizeof(r->sink), G_PRIORITY_DEFAULT,
                              r->cancellable, gw_link_refusal_read_cb, r);
}

static void
gw_link_refusal_written_cb(GObject *source, GAsyncResult *result, gpointer user_data)
{
    GwLinkRefusal *r = user_data;
    g_autoptr(GIOStream) base = NULL;

    if (!g_output_stream_write_all_finish(G_OUTPUT_STREAM(source), result, NULL, NULL)) {
        gw_link_refusal_finish(r);
        return;
    }
    /* the peer sees the end after the REFUSE */
    if (G_IS_SOCKET_CONNECTION(r->conn))
        (void)g_socket_shutdown(g_socket_connection_get_socket(G_SOCKET_CONNECTION(r->conn)), FALSE,
                                TRUE, NULL);
    g_input_stream_read_async(g_io_stream_get_input_stream(r->conn), r->sink, sizeof(r->sink),
                              G_PRIORITY_DEFAULT, r->cancellable, gw_link_refusal_read_cb, r);
}

void
gw_link_refuse(GIOStream *connection, const gchar *reason, guint timeout_ms)
{
    GwLinkRefusal *r;

    g_return_if_fail(G_IS_IO_STREAM(connection));
    r = g_new0(GwLinkRefusal, 1);
    r->conn = g_object_ref(connection);
    r->cancellable = g_cancellable_new();
    r->frame = g_byte_array_new();
    gw_link_wire_put_refuse(r->frame, reason);
    r->timeout = g_timeout_source_new(timeout_ms);
    g_source_set_name(r->timeout, "usbgw-link-refuse");
    g_source_set_callback(r->timeout, gw_link_refusal_timeout_cb, r, NULL);
    g_source_attach(r->timeout, g_main_context_get_thread_default());
    g_output_stream_write_all_async(g_io_stream_get_output_stream(connection), r->frame->data,
                                    r->frame->len, G_PRIORITY_DEFAULT, r->cancellable,
                                    gw_link_refusal_written_cb, r);
}
