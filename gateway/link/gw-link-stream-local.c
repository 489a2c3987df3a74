/* A GwLinkStream's local end: the socket a stream relays (read while its
 * window has room, written with what the peer sent, its EOF) or, for a
 * direct stream, the owner's reads and writes and its readable() and
 * writable() calls. See gw-link.h for the contract, gw-link-private.h for
 * the structs. */
#include "gw-link.h"

#include <errno.h>
#include <string.h>
#include <sys/socket.h>

#include "gw-fd-watch.h"
#include "gw-link-private.h"
#include "gw-link-wire.h"

/* Bytes read from a local socket per read call (on the stack) and per
 * dispatch. */
#define GW_LINK_LOCAL_READ_SIZE   GW_LINK_MAX_DATA
#define GW_LINK_LOCAL_READ_BUDGET (64 * 1024)

/* ---- A socket stream: the relayed socket --------------------------------- */

void
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

/* Writes what the peer sent to the local socket. FALSE: @s ended. */
gboolean
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
gboolean
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

void
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

/* ---- A direct stream: its owner ------------------------------------------ */

/* Queues DATA for what a direct stream's owner wrote and the peer has not
 * been sent yet (at most a window), ahead of the stream's CLOSE. */
void
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
void
gw_link_stream_notify(GwLinkStream *s, gboolean in)
{
    if (!s->notify_in && !s->notify_out)
        g_queue_push_tail_link(&s->link->notify, &s->notify_node);
    if (in)
        s->notify_in = TRUE;
    else
        s->notify_out = TRUE;
}

/* Tells the owners of direct streams what the frames just handled
 * brought: bytes to read, room to write. Their callbacks may end streams
 * or free the link. */
void
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
    /* inside a dispatch: once, after every session of this wake-up queued
     * what it had */
    if (link->conn_watch != NULL && gw_fd_watch_call_after_dispatch(link->conn_watch))
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
