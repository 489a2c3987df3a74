/* GwLinkStream on the link: its life (opened by us or by the peer,
 * doomed, ended), the peer's stream frames (OPEN, OPENED, CLOSE, DATA,
 * CREDIT, RESUME), windows and credits, the round-robin writer's turn of
 * one stream, resume after HELLO, CLOSE and its tombstones. A stream's
 * local end (its socket or its direct owner) is gw-link-stream-local.c.
 * See gw-link.h for the contract, gw-link-private.h for the structs. */
#include "gw-link.h"

#include "gw-link-private.h"
#include "gw-link-wire.h"

/* A CREDIT goes out once this many bytes were delivered since the last
 * one. Smaller amounts, once the stream's receive buffer drained, ride
 * with the stream's next DATA frame (a device's answer carries the credit
 * of its request: one TLS record instead of two, and no wake-up of the
 * peer for the credit alone) or go out GW_LINK_CREDIT_DELAY_MS later. */
#define GW_LINK_CREDIT_STEP     GW_LINK_MAX_DATA
#define GW_LINK_CREDIT_DELAY_MS 20
/* Streams we closed whose CLOSE the peer has not answered yet. */
#define GW_LINK_MAX_TOMBSTONES GW_LINK_MAX_STREAMS

void
gw_link_stream_mark_ready(GwLinkStream *s)
{
    if (s->ready || !gw_link_stream_may_send(s))
        return;
    s->ready = TRUE;
    g_queue_push_tail_link(&s->link->ready, &s->ready_node);
}

void
gw_link_stream_unready(GwLinkStream *s)
{
    if (!s->ready)
        return;
    g_queue_unlink(&s->link->ready, &s->ready_node);
    s->ready = FALSE;
}

void
gw_link_stream_credit_done(GwLinkStream *s)
{
    if (!s->credit_due)
        return;
    g_queue_unlink(&s->link->credit_due, &s->credit_node);
    s->credit_due = FALSE;
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

void
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
void
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

/* Ends @s: CLOSE to the peer as @mode says, the local socket closed, the
 * closed callback (ours, when @notify) and the stream freed. The callback
 * may free the link: callers check link->freed after. */
void
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
void
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

/* The round robin's turn of @s (the head of link->ready): one DATA frame
 * into @out, the CREDIT the stream owes riding just before it, and @s back
 * at the tail while it has more to send. */
void
gw_link_stream_put_data(GwLinkStream *s, GByteArray *out)
{
    guint8 data[GW_LINK_MAX_DATA];

    gw_link_stream_unready(s);
    if (!gw_link_stream_may_send(s))
        return;
    gsize n = (gsize)MIN(s->tx_read - s->tx_sent, (guint64)GW_LINK_MAX_DATA);
    gw_link_buffer_peek(&s->tx, (gsize)(s->tx_sent - s->tx_acked), data, n);
    /* what this stream delivered rides with its DATA */
    gw_link_stream_put_credit(s, out, TRUE);
    gw_link_wire_put_data(out, gw_link_stream_flags(s), s->id, data, n);
    s->tx_sent += n;
    s->tx_max_sent = MAX(s->tx_max_sent, s->tx_sent);
    gw_link_stream_mark_ready(s);
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

/* ---- Every stream at once: closed, or resumed after HELLO ---------------- */

/* Closes every stream the peer knows of (all when @all), callbacks with
 * @reason. */
void
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

/* The peer's HELLO came: our streams that wait for a connection are
 * opened, the others resumed (RESUME from what we received, CREDIT for
 * what we delivered). */
void
gw_link_streams_hello(GwLink *link)
{
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
}

/* ---- The peer's stream frames -------------------------------------------- */

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
void
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

/* ---- Public API ---------------------------------------------------------- */

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
