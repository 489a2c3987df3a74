/* A live migration's handover of a usbredir peer from its source to a
 * destination (docs/migration.md). */
#include "gw-peer-handover.h"

#include <errno.h>
#include <sys/socket.h>

#include "gw-fd-watch.h"
#include "gw-handover.h"
#include "gw-handover-relay.h"
#include "gw-log.h"

struct _GwPeerHandover {
    int source_fd;            /* borrowed from the owner */
    GMutex *lock;             /* the owner's: guards written, ring, the stream and the samples */
    GwHandoverStream *stream; /* not owned */
    GMainContext *context;    /* owned ref */
    gchar *label;             /* owned */
    gchar *device_id;         /* owned, nullable */
    gchar *vm;                /* owned, nullable */
    const GwPeerHandoverFuncs *funcs;
    gpointer owner;

    GSocket *destination;         /* owned ref, nullable once given to the owner */
    GwFdWatch *destination_watch; /* owned, nullable: its first bytes or its hang-up */
    GSource *sample_timer;        /* owned */
    GwHandoverRing *ring;         /* owned: what was written to the source from ring_base on */
    guint64 ring_base;            /* offset of the ring's first byte */
    guint64 written;              /* offset after the last byte written to the source */

    guint64 answered_from;      /* what the source had read when it last wrote */
    guint64 answered_now;       /* read before the owner's current read */
    gboolean answered_pending;  /* answered_now was taken */
    guint64 unread_sample;      /* the source's unread bytes when last asked */
    guint64 unread_sample_at;   /* written then */
    guint64 source_read;        /* the bytes the source had read then */
    gint64 source_read_changed; /* monotonic µs: when that last changed */
    gboolean copied;            /* the stopped source's bytes were copied to the destination */
    guint64 copied_at;          /* written then */
    gsize copied_len;           /* how many */
    guint copied_answers;       /* answers among them */
    gboolean source_eof;        /* a read met the source's end */
    gboolean hung_up;           /* the owner saw the source hang up */
    gboolean settling;          /* waiting for a relayed source's count (gw-handover-relay.h) */
    GSource *settle_timer;      /* owned, nullable: gives up waiting */
    gboolean settled;           /* that count is up to date */
};

static void
gw_peer_handover_stop_sampling(GwPeerHandover *handover)
{
    if (handover->sample_timer == NULL)
        return;
    g_source_destroy(handover->sample_timer);
    g_clear_pointer(&handover->sample_timer, g_source_unref);
}

/* Ends the handover with @result; nothing of it may be touched after. */
static void
gw_peer_handover_finish(GwPeerHandover *handover, GwPeerHandoverResult result, const gchar *detail)
{
    g_mutex_lock(handover->lock);
    gw_handover_stream_record(handover->stream, FALSE);
    g_mutex_unlock(handover->lock);
    gw_peer_handover_stop_sampling(handover);
    g_clear_pointer(&handover->destination_watch, gw_fd_watch_free);
    handover->funcs->finished(handover->owner, result, detail);
}

/* Closes the destination; the source goes on as it did (bytes copied to
 * the destination were copies: the source's own queue still holds them). */
static void
gw_peer_handover_drop(GwPeerHandover *handover, GwPeerHandoverResult result, const gchar *reason)
{
    g_clear_pointer(&handover->destination_watch, gw_fd_watch_free);
    if (handover->destination != NULL)
        g_socket_close(handover->destination, NULL);
    gw_log_device(G_LOG_LEVEL_MESSAGE, handover->device_id, handover->vm, NULL,
                  "%s: migration destination dropped: %s", handover->label, reason);
    gw_peer_handover_finish(handover, result, reason);
}

/* What the destination needs, the source having read the first
 * @consumed bytes written to it: the answers it may have taken after it
 * stopped (those written after it last wrote; QEMU ignores one whose
 * request it does not hold), then the bytes it did not read. The answers
 * go only where @consumed falls between two packets: a packet cut there
 * was begun by the source's parser, whose state the destination holds.
 * Under the lock. */
static GBytes *
gw_peer_handover_bytes_locked(GwPeerHandover *handover, guint64 consumed, guint *answers,
                              GError **error)
{
    g_autoptr(GByteArray) out = g_byte_array_new();
    g_autoptr(GArray) ranges = g_array_new(FALSE, FALSE, sizeof(GwHandoverRange));

    *answers = 0;
    if (consumed < handover->ring_base || consumed > handover->written) {
        g_set_error(error, G_IO_ERROR, G_IO_ERROR_NO_SPACE,
                    "the source left unread bytes written before its destination connected");
        return NULL;
    }
    if (gw_handover_stream_answers(handover->stream,
                                   MAX(handover->answered_from, handover->ring_base), consumed,
                                   ranges)) {
        for (guint i = 0; i < ranges->len; i++) {
            const GwHandoverRange *range = &g_array_index(ranges, GwHandoverRange, i);
            if (!gw_handover_ring_copy(handover->ring, range->start - handover->ring_base,
                                       range->end - range->start, out, error))
                return NULL;
        }
        *answers = ranges->len;
    }
    if (!gw_handover_ring_copy(handover->ring, consumed - handover->ring_base,
                               handover->written - consumed, out, error))
        return NULL;
    return g_byte_array_free_to_bytes(g_steal_pointer(&out));
}

static void gw_peer_handover_settled(gpointer data);
static gboolean gw_peer_handover_settle_timeout(gpointer data);

/* The destination runs (it wrote, or read what was copied to it), or the
 * source hung up: drain the source, give the destination what the source
 * did not read and the answers it may have taken after it stopped, and
 * make it the owner's peer. */
static void
gw_peer_handover_take_over(GwPeerHandover *handover)
{
    g_autoptr(GError) error = NULL;
    g_autoptr(GBytes) resend = NULL;
    g_autofree gchar *detail = NULL;
    guint64 unread, consumed, drained = 0;
    guint answers = 0;
    gsize resent;

    if (handover->settling)
        return;
    /* a source on another host: its count is brought up to date first
     * (and what it wrote before comes ahead of the answer) */
    if (!handover->settled && !handover->copied) {
        handover->settled = TRUE;
        if (gw_handover_settle_peer(handover->source_fd, gw_peer_handover_settled, handover)) {
            handover->settling = TRUE;
            handover->settle_timer = g_timeout_source_new(GW_HANDOVER_SETTLE_MS);
            g_source_set_callback(handover->settle_timer, gw_peer_handover_settle_timeout, handover,
                                  NULL);
            g_source_attach(handover->settle_timer, handover->context);
            /* its first bytes wait unread meanwhile: not told again */
            g_clear_pointer(&handover->destination_watch, gw_fd_watch_free);
            return;
        }
    }
    /* the owner reads the source to its end; it may be closing then */
    if (!handover->funcs->drain(handover->owner, &drained))
        return;
    g_mutex_lock(handover->lock);
    if (handover->copied) {
        /* the answers went with the copy; what was written after it */
        resend =
            gw_handover_ring_tail(handover->ring, handover->written - handover->copied_at, &error);
    } else {
        if ((handover->source_eof || handover->hung_up) &&
            !gw_handover_peer_unread(handover->source_fd, &unread, NULL)) {
            /* gone: the kernel cannot be asked any more; what it had read
             * at the last count (it stopped before it left). A relay's end
             * that only shut down its side can still be asked. */
            consumed = handover->unread_sample_at - handover->unread_sample;
            resend = gw_peer_handover_bytes_locked(handover, consumed, &answers, &error);
        } else if (handover->source_eof || handover->hung_up ||
                   gw_handover_peer_unread(handover->source_fd, &unread, &error)) {
            consumed = handover->written - unread;
            resend = gw_peer_handover_bytes_locked(handover, consumed, &answers, &error);
        }
    }
    if (resend == NULL) {
        g_mutex_unlock(handover->lock);
        g_autofree gchar *why = g_strdup_printf("migration handover: %s", error->message);
        gw_peer_handover_finish(handover, GW_PEER_HANDOVER_FAILED, why);
        return;
    }
    resent = g_bytes_get_size(resend) + (handover->copied ? handover->copied_len : 0);
    answers += handover->copied ? handover->copied_answers : 0;
    g_clear_pointer(&handover->destination_watch, gw_fd_watch_free);
    handover->funcs->switch_peer_locked(handover->owner, g_steal_pointer(&handover->destination),
                                        g_steal_pointer(&resend));
    g_mutex_unlock(handover->lock);

    detail =
        g_strdup_printf("%" G_GUINT64_FORMAT " bytes drained from the source, %" G_GUINT64_FORMAT
                        " bytes re-sent to the destination (%u answers the source may have "
                        "taken after it stopped, and what it had not read)",
                        drained, (guint64)resent, answers);
    gw_log_device(G_LOG_LEVEL_MESSAGE, handover->device_id, handover->vm, NULL,
                  "%s: handed over to the migration destination: %s", handover->label, detail);
    gw_peer_handover_finish(handover, GW_PEER_HANDOVER_DONE, detail);
}

/* A relayed source's count is up to date: take over now. */
static void
gw_peer_handover_settled(gpointer data)
{
    GwPeerHandover *handover = data;

    handover->settling = FALSE;
    if (handover->settle_timer != NULL) {
        g_source_destroy(handover->settle_timer);
        g_clear_pointer(&handover->settle_timer, g_source_unref);
    }
    gw_peer_handover_take_over(handover);
}

/* The relayed source's gateway did not answer in time (its link is down,
 * or it is stuck): the last count it reported stands, as for a local
 * source that left. */
static gboolean
gw_peer_handover_settle_timeout(gpointer data)
{
    GwPeerHandover *handover = data;

    gw_log_device(G_LOG_LEVEL_WARNING, handover->device_id, handover->vm, NULL,
                  "%s: the relayed migration source did not report its count within %d ms; "
                  "handing over with the last one",
                  handover->label, GW_HANDOVER_SETTLE_MS);
    gw_handover_settle_cancel(handover);
    g_clear_pointer(&handover->settle_timer, g_source_unref);
    handover->settling = FALSE;
    gw_peer_handover_take_over(handover);
    return G_SOURCE_REMOVE;
}

/* Copies what the stopped source needs to the destination (it read the
 * first @consumed bytes), which reads them once its VM runs. Under the
 * lock. */
static gboolean
gw_peer_handover_copy_locked(GwPeerHandover *handover, guint64 consumed, GError **error)
{
    guint answers;
    g_autoptr(GBytes) bytes = gw_peer_handover_bytes_locked(handover, consumed, &answers, error);
    gsize size;
    const guint8 *data;
    ssize_t n;

    if (bytes == NULL)
        return FALSE;
    data = g_bytes_get_data(bytes, &size);
    /* the destination's socket is empty: a few packets always fit */
    n = send(g_socket_get_fd(handover->destination), data, size, MSG_DONTWAIT | MSG_NOSIGNAL);
    if (n != (ssize_t)size) {
        g_set_error(error, G_IO_ERROR, G_IO_ERROR_FAILED,
                    "cannot copy %" G_GSIZE_FORMAT " bytes to it: %s", size,
                    n < 0 ? g_strerror(errno) : "short write");
        return FALSE;
    }
    handover->copied = TRUE;
    handover->copied_at = handover->written;
    handover->copied_len = size;
    handover->copied_answers = answers;
    return TRUE;
}

/* Every GW_HANDOVER_SAMPLE_MS: how many bytes the source has not read. A
 * source that has not read for GW_HANDOVER_STALL_MS while bytes wait for
 * it is taken as stopped (QEMU reads its chardev at once while its VM
 * runs): those bytes are copied to the destination, and once the
 * destination has read some of them its VM runs and it takes over. A
 * source that reads again after the copy was only slow: the destination,
 * now holding bytes it must not get, is dropped. */
static gboolean
gw_peer_handover_sample(gpointer data)
{
    GwPeerHandover *handover = data;
    gint64 now = g_get_monotonic_time();
    g_autoptr(GError) error = NULL;
    g_autofree gchar *drop = NULL;
    guint64 unread, dest_unread;
    gboolean take_over = FALSE;

    if (handover->settling)
        return G_SOURCE_CONTINUE;
    g_mutex_lock(handover->lock);
    if (gw_handover_peer_unread(handover->source_fd, &unread, NULL)) {
        guint64 read = handover->written - unread;
        handover->unread_sample = unread;
        handover->unread_sample_at = handover->written;
        if (read != handover->source_read) {
            handover->source_read = read;
            handover->source_read_changed = now;
            if (handover->copied)
                drop = g_strdup("the source read again after it had stopped reading (it was "
                                "slow, not stopped)");
        } else if (!handover->copied && unread > 0 &&
                   now - handover->source_read_changed >= GW_HANDOVER_STALL_MS * 1000) {
            if (gw_peer_handover_copy_locked(handover, read, &error))
                gw_log_device(G_LOG_LEVEL_INFO, handover->device_id, handover->vm, NULL,
                              "%s: the source stopped reading with %" G_GUINT64_FORMAT
                              " bytes unread: copied to the migration destination",
                              handover->label, unread);
            else
                drop = g_strdup(error->message);
        }
    }
    if (drop == NULL && handover->copied &&
        gw_handover_peer_unread(g_socket_get_fd(handover->destination), &dest_unread, NULL) &&
        dest_unread < handover->copied_len)
        take_over = TRUE;
    /* packets whose bytes the ring no longer keeps cannot be re-sent */
    gw_handover_stream_forget_before(handover->stream, handover->ring_base +
                                                           gw_handover_ring_total(handover->ring) -
                                                           gw_handover_ring_kept(handover->ring));
    g_mutex_unlock(handover->lock);
    if (drop != NULL)
        gw_peer_handover_drop(handover, GW_PEER_HANDOVER_DROPPED, drop);
    else if (take_over)
        gw_peer_handover_take_over(handover);
    return G_SOURCE_CONTINUE;
}

/* The destination's first bytes, or its end. */
static void
gw_peer_handover_destination_ready(int fd, GIOCondition revents, gpointer data)
{
    GwPeerHandover *handover = data;
    guint8 head[GW_HANDOVER_HELLO_PEEK];
    ssize_t n;

    n = recv(fd, head, sizeof(head), MSG_PEEK | MSG_DONTWAIT);
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR))
        return;
    if (n < 0) {
        g_autofree gchar *why = g_strdup_printf(
            "its connection failed before it took over (%s): migration cancelled or failed",
            g_strerror(errno));
        gw_peer_handover_drop(handover, GW_PEER_HANDOVER_DROPPED, why);
        return;
    }
    if (n == 0) {
        gw_peer_handover_drop(handover, GW_PEER_HANDOVER_DROPPED,
                              "closed before it took over (migration cancelled or failed)");
        return;
    }
    if (gw_handover_is_hello(head, (gsize)n)) {
        gw_peer_handover_drop(handover, GW_PEER_HANDOVER_REFUSED,
                              "sent a usbredir hello: a new peer, not a migration destination");
        return;
    }
    gw_peer_handover_take_over(handover);
}

GwPeerHandover *
gw_peer_handover_new(int source_fd, guint64 written, GMutex *lock, GwHandoverStream *stream,
                     GSocket *destination, GMainContext *context, const gchar *label,
                     const gchar *device_id, const gchar *vm, const GwPeerHandoverFuncs *funcs,
                     gpointer owner, GError **error)
{
    g_autoptr(GError) local = NULL;
    GwPeerHandover *handover;
    guint64 unread;

    /* the first count tells whether the kernel can count unread bytes */
    if (!gw_handover_peer_unread(source_fd, &unread, &local)) {
        g_set_error(error, G_IO_ERROR, G_IO_ERROR_NOT_SUPPORTED, "%s: no migration destination: %s",
                    label, local->message);
        return NULL;
    }
    handover = g_new0(GwPeerHandover, 1);
    handover->source_fd = source_fd;
    handover->lock = lock;
    handover->stream = stream;
    handover->context = g_main_context_ref(context);
    handover->label = g_strdup(label);
    handover->device_id = g_strdup(device_id);
    handover->vm = g_strdup(vm);
    handover->funcs = funcs;
    handover->owner = owner;
    handover->written = written;
    handover->unread_sample = unread;
    handover->unread_sample_at = written;
    handover->source_read = written - unread;
    handover->source_read_changed = g_get_monotonic_time();
    handover->answered_from = handover->source_read;
    handover->ring = gw_handover_ring_new(gw_handover_ring_capacity_for(source_fd));
    handover->ring_base = written;
    gw_handover_stream_record(stream, TRUE);

    g_socket_set_blocking(destination, FALSE);
    handover->destination = g_object_ref(destination);
    handover->destination_watch =
        gw_fd_watch_new(context, "usbgw-migration-destination", g_socket_get_fd(destination),
                        G_IO_IN, gw_peer_handover_destination_ready, handover);
    handover->sample_timer = g_timeout_source_new(GW_HANDOVER_SAMPLE_MS);
    g_source_set_callback(handover->sample_timer, gw_peer_handover_sample, handover, NULL);
    g_source_attach(handover->sample_timer, context);
    gw_log_device(G_LOG_LEVEL_MESSAGE, device_id, vm, NULL,
                  "%s: migration destination connected; it takes over once its VM runs", label);
    return handover;
}

void
gw_peer_handover_free(GwPeerHandover *handover)
{
    if (handover == NULL)
        return;
    gw_handover_settle_cancel(handover);
    if (handover->settle_timer != NULL) {
        g_source_destroy(handover->settle_timer);
        g_source_unref(handover->settle_timer);
    }
    gw_peer_handover_stop_sampling(handover);
    g_clear_pointer(&handover->destination_watch, gw_fd_watch_free);
    if (handover->destination != NULL) {
        g_socket_close(handover->destination, NULL);
        g_object_unref(handover->destination);
    }
    gw_handover_ring_free(handover->ring);
    g_main_context_unref(handover->context);
    g_free(handover->label);
    g_free(handover->device_id);
    g_free(handover->vm);
    g_free(handover);
}

void
gw_peer_handover_written_locked(GwPeerHandover *handover, const guint8 *data, gsize len)
{
    gw_handover_ring_append(handover->ring, data, len);
    handover->written += len;
}

void
gw_peer_handover_before_read(GwPeerHandover *handover)
{
    guint64 unread;

    g_mutex_lock(handover->lock);
    handover->answered_pending = gw_handover_peer_unread(handover->source_fd, &unread, NULL);
    if (handover->answered_pending)
        handover->answered_now = handover->written - unread;
    g_mutex_unlock(handover->lock);
}

void
gw_peer_handover_after_read(GwPeerHandover *handover, gssize got)
{
    if (got > 0 && handover->answered_pending)
        handover->answered_from = MAX(handover->answered_from, handover->answered_now);
    handover->answered_pending = FALSE;
    if (got < 0)
        handover->source_eof = TRUE;
}

gboolean
gw_peer_handover_source_ended(GwPeerHandover *handover)
{
    return handover->source_eof;
}

void
gw_peer_handover_source_gone(GwPeerHandover *handover)
{
    handover->hung_up = TRUE;
    gw_log_device(G_LOG_LEVEL_INFO, handover->device_id, handover->vm, NULL,
                  "%s: the migration's source hung up; its destination takes over",
                  handover->label);
    gw_peer_handover_take_over(handover);
}
