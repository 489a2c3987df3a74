/* usbgwd's end of a usbgw-spice-worker: process, frames, channel streams. */
#include "gw-spice.h"

#include <errno.h>
#include <grp.h>
#include <pwd.h>
#include <signal.h>
#include <string.h>
#include <glib-unix.h>
#include <sys/socket.h>
#include <unistd.h>

#include "gw-fd-watch.h"
#include "sw-frame.h"

/* Bytes queued for the worker beyond which a stream's write() takes
 * nothing (the worker stops reading too when its clients are slow). */
#define GW_SPICE_OUT_MAX (1024 * 1024)
/* Bytes from the client that one stream's user has not read, beyond
 * which the worker is not read. */
#define GW_SPICE_CHANNEL_MAX (1024 * 1024)
/* After the worker closed its end of the socketpair, how long its exit
 * status is waited for (it names the problem better than the EOF). */
#define GW_SPICE_EXIT_WAIT_MS 2000
/* Bytes read from a socket per call. */
#define GW_SPICE_READ_CHUNK SW_FRAME_MAX_PAYLOAD
/* Candidates of the uid range looked at before a share start gives up. */
#define GW_SPICE_UID_TRIES 4096
/* Buffer for one getpwuid_r()/getgrgid_r() answer. */
#define GW_SPICE_NSS_BUFFER 16384
/* The environment a worker gets from usbgwd's: debug output and the
 * sanitizers' settings (read only by sanitizer builds), nothing else. */
static const gchar *const gw_spice_environment[] = {
    "G_MESSAGES_DEBUG", "ASAN_OPTIONS", "UBSAN_OPTIONS", "LSAN_OPTIONS", NULL,
};

/* One client's session on one channel (gw-spice.h). */
struct _GwSpiceStream {
    /* not owned, nullable: NULL once detached (the client closed the
     * channel, or the worker is gone); the stream then only reads out
     * what came before */
    GwSpiceWorker *worker;
    guint index;                  /* the channel */
    GByteArray *in;               /* owned: from the client, not yet read */
    gboolean eof;                 /* detached: read() returns -1 once @in is empty */
    gboolean notify;              /* bytes came in this read from the worker */
    gboolean want_out;            /* write() took nothing: tell G_IO_OUT */
    guint hup_id;                 /* idle telling the user of the detach */
    GwSpiceStreamReadyFunc ready; /* nullable */
    gpointer ready_data;
};

typedef struct {
    guint index;
    GwSpiceStream *stream; /* nullable: the session's, until its user closes it */
    gboolean open;         /* the worker said OPEN and not yet CLOSE */
} GwSpiceChannel;

struct _GwSpiceWorker {
    GSubprocess *process; /* owned */
    int fd;               /* owned, -1 once closed: our end of the socketpair */
    GwFdWatch *watch;     /* owned, nullable: on @fd until the worker is gone */
    GByteArray *in;       /* owned: from the worker, not yet a whole frame */
    GByteArray *out;      /* owned: frames for the worker */
    GwSpiceChannel *channels;
    guint n_channels;
    gboolean ready;
    gboolean hung_up; /* the worker closed its end: waiting for its exit */
    guint hang_up_id; /* timeout for that wait */
    gboolean gone;    /* exited() was scheduled */
    gchar *why_gone;  /* owned, nullable */
    guint gone_id;    /* idle reporting exited() */
    guint out_id;     /* idle telling streams that write() takes bytes again */
    GCancellable *cancellable;
    GwSpiceWorkerCallbacks callbacks;
    gpointer user_data;
    guint uid; /* 0, or the worker's own uid, held in gw_spice_uids */
};

/* Uids of this usbgwd's workers, from gw_spice_worker_new() to
 * gw_spice_worker_free(); main thread only. */
static GHashTable *gw_spice_uids;
/* Offset in the range where the next search starts: uids go round, so one
 * just freed (its process may still be exiting) comes last. */
static guint64 gw_spice_uid_next;

static void gw_spice_worker_update_watches(GwSpiceWorker *worker);
static void gw_spice_worker_ready_cb(int fd, GIOCondition condition, gpointer data);

static gboolean
gw_spice_worker_report_gone(gpointer data)
{
    GwSpiceWorker *worker = data;

    worker->gone_id = 0;
    worker->callbacks.exited(worker, worker->why_gone, worker->user_data);
    return G_SOURCE_REMOVE;
}

static gboolean
gw_spice_stream_hup_idle(gpointer data)
{
    GwSpiceStream *stream = data;

    stream->hup_id = 0;
    if (stream->ready != NULL)
        stream->ready(stream, G_IO_IN | G_IO_HUP, stream->ready_data);
    return G_SOURCE_REMOVE;
}

/* The channel's session is over for the worker's side: the stream's user
 * reads what came before, then the end (told from an idle, so never from
 * inside one of its own calls). */
static void
gw_spice_channel_detach(GwSpiceChannel *channel)
{
    GwSpiceStream *stream = channel->stream;

    if (stream == NULL)
        return;
    channel->stream = NULL;
    stream->worker = NULL;
    stream->eof = TRUE;
    stream->want_out = FALSE;
    if (stream->hup_id == 0)
        stream->hup_id = g_idle_add(gw_spice_stream_hup_idle, stream);
}

/* The worker is unusable: stop all I/O, report once from an idle. */
static void gw_spice_worker_fail(GwSpiceWorker *worker, const gchar *format, ...)
    G_GNUC_PRINTF(2, 3);

static void
gw_spice_worker_fail(GwSpiceWorker *worker, const gchar *format, ...)
{
    va_list args;

    if (worker->gone)
        return;
    worker->gone = TRUE;
    va_start(args, format);
    worker->why_gone = g_strdup_vprintf(format, args);
    va_end(args);
    g_clear_pointer(&worker->watch, gw_fd_watch_free);
    g_clear_handle_id(&worker->hang_up_id, g_source_remove);
    g_clear_handle_id(&worker->out_id, g_source_remove);
    for (guint i = 0; i < worker->n_channels; i++)
        gw_spice_channel_detach(&worker->channels[i]);
    if (worker->fd >= 0)
        close(worker->fd);
    worker->fd = -1;
    if (worker->process != NULL)
        g_subprocess_force_exit(worker->process);
    worker->gone_id = g_idle_add(gw_spice_worker_report_gone, worker);
}

static void
gw_spice_worker_queue(GwSpiceWorker *worker, SwFrameType type, guint channel, const guint8 *payload,
                      gsize length)
{
    guint8 header[SW_FRAME_HEADER_SIZE];

    if (worker->gone)
        return;
    sw_frame_header_pack(header, type, channel, (guint32)length);
    g_byte_array_append(worker->out, header, sizeof(header));
    if (length > 0)
        g_byte_array_append(worker->out, payload, (guint)length);
}

/* Writes what the socket takes now; FALSE on a broken socket. */
static gboolean
gw_spice_flush(int fd, GByteArray *buffer, int *error_number)
{
    while (buffer->len > 0) {
        ssize_t n = send(fd, buffer->data, buffer->len, MSG_NOSIGNAL | MSG_DONTWAIT);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            return TRUE;
        if (n < 0) {
            *error_number = errno;
            return FALSE;
        }
        g_byte_array_remove_range(buffer, 0, (guint)n);
    }
    return TRUE;
}

static gboolean
gw_spice_worker_out_idle(gpointer data)
{
    GwSpiceWorker *worker = data;

    worker->out_id = 0;
    for (guint i = 0; i < worker->n_channels && !worker->gone; i++) {
        GwSpiceStream *stream = worker->channels[i].stream;

        if (stream == NULL || !stream->want_out || worker->out->len >= GW_SPICE_OUT_MAX)
            continue;
        stream->want_out = FALSE;
        if (stream->ready != NULL)
            stream->ready(stream, G_IO_OUT, stream->ready_data);
    }
    return G_SOURCE_REMOVE;
}

static void
gw_spice_worker_flush(GwSpiceWorker *worker)
{
    int error_number = 0;

    if (worker->gone)
        return;
    if (worker->hung_up) {
        g_byte_array_set_size(worker->out, 0); /* nobody reads it */
        return;
    }
    if (!gw_spice_flush(worker->fd, worker->out, &error_number)) {
        gw_spice_worker_fail(worker, "writing to the worker: %s", g_strerror(error_number));
        return;
    }
    gw_spice_worker_update_watches(worker);
    /* a stream whose write() was refused learns of the room from an idle:
     * this may run inside its user's flush() */
    if (worker->out->len < GW_SPICE_OUT_MAX && worker->out_id == 0) {
        for (guint i = 0; i < worker->n_channels; i++) {
            GwSpiceStream *stream = worker->channels[i].stream;
            if (stream != NULL && stream->want_out) {
                worker->out_id = g_idle_add(gw_spice_worker_out_idle, worker);
                break;
            }
        }
    }
}

/* What the worker's fd is watched for: input unless a stream's user lags
 * behind (or the worker hung up), output while frames wait. A hang-up is
 * heard while writing too (HUP with OUT). */
static void
gw_spice_worker_update_watches(GwSpiceWorker *worker)
{
    GIOCondition condition = 0;
    gboolean read_worker = !worker->hung_up;

    if (worker->gone)
        return;
    for (guint i = 0; i < worker->n_channels; i++) {
        GwSpiceStream *stream = worker->channels[i].stream;
        if (stream != NULL && stream->in->len >= GW_SPICE_CHANNEL_MAX)
            read_worker = FALSE;
    }
    if (read_worker)
        condition |= G_IO_IN | G_IO_HUP | G_IO_ERR;
    if (worker->out->len > 0 && !worker->hung_up)
        condition |= G_IO_OUT | G_IO_HUP | G_IO_ERR;
    gw_fd_watch_set_condition(worker->watch, condition);
}

/* ---- streams: the channels' sessions as GwTransport ---------------------- */

/* The bytes the client sent, in order; -1 after the end. */
static gssize
gw_spice_stream_read(gpointer data, guint8 *buf, gsize count)
{
    GwSpiceStream *stream = data;
    gboolean was_full = stream->in->len >= GW_SPICE_CHANNEL_MAX;
    gsize n = MIN(count, (gsize)stream->in->len);

    if (n == 0)
        return stream->eof ? -1 : 0;
    memcpy(buf, stream->in->data, n);
    g_byte_array_remove_range(stream->in, 0, (guint)n);
    /* the worker is read again once no stream holds too much */
    if (was_full && stream->worker != NULL)
        gw_spice_worker_update_watches(stream->worker);
    return (gssize)n;
}

/* Frames of @count bytes for the client, queued for the worker (sent at
 * flush()); nothing while GW_SPICE_OUT_MAX bytes wait. */
static gssize
gw_spice_stream_write(gpointer data, const guint8 *buf, gsize count)
{
    GwSpiceStream *stream = data;
    GwSpiceWorker *worker = stream->worker;

    if (worker == NULL || worker->gone)
        return -1;
    if (worker->out->len >= GW_SPICE_OUT_MAX) {
        stream->want_out = TRUE;
        return 0;
    }
    for (gsize offset = 0; offset < count;) {
        gsize chunk = MIN(count - offset, (gsize)SW_FRAME_MAX_PAYLOAD);

        gw_spice_worker_queue(worker, SW_FRAME_DATA, stream->index, buf + offset, chunk);
        offset += chunk;
    }
    return (gssize)count;
}

static void
gw_spice_stream_flush(gpointer data)
{
    GwSpiceStream *stream = data;

    if (stream->worker != NULL)
        gw_spice_worker_flush(stream->worker);
}

void
gw_spice_stream_close(GwSpiceStream *stream)
{
    GwSpiceWorker *worker = stream->worker;

    if (worker != NULL) {
        /* what the client sends from now on is dropped, until it closes
         * the channel */
        worker->channels[stream->index].stream = NULL;
        gw_spice_worker_update_watches(worker);
    }
    g_clear_handle_id(&stream->hup_id, g_source_remove);
    g_byte_array_unref(stream->in);
    g_free(stream);
}

static void
gw_spice_stream_transport_close(gpointer data)
{
    gw_spice_stream_close(data);
}

const GwTransport gw_spice_stream_transport = {
    .read = gw_spice_stream_read,
    .write = gw_spice_stream_write,
    .flush = gw_spice_stream_flush,
    .close = gw_spice_stream_transport_close,
};

void
gw_spice_stream_set_ready_func(GwSpiceStream *stream, GwSpiceStreamReadyFunc func,
                               gpointer user_data)
{
    stream->ready = func;
    stream->ready_data = user_data;
}

/* Tells the users of streams that got bytes in this read from the worker,
 * at once (their replies then leave in this same main-loop iteration).
 * A user may close its stream or make the worker fail meanwhile. */
static void
gw_spice_worker_notify_streams(GwSpiceWorker *worker)
{
    for (guint i = 0; i < worker->n_channels && !worker->gone; i++) {
        GwSpiceStream *stream = worker->channels[i].stream;

        if (stream == NULL || !stream->notify)
            continue;
        stream->notify = FALSE;
        if (stream->ready != NULL)
            stream->ready(stream, G_IO_IN, stream->ready_data);
    }
}

/* ---- frames from the worker ---------------------------------------------- */

static gboolean
gw_spice_worker_on_open(GwSpiceWorker *worker, GwSpiceChannel *channel)
{
    GwSpiceStream *stream;

    if (channel->open) {
        gw_spice_worker_fail(worker, "worker opened channel %u twice", channel->index);
        return FALSE;
    }
    stream = g_new0(GwSpiceStream, 1);
    stream->worker = worker;
    stream->index = channel->index;
    stream->in = g_byte_array_new();
    channel->open = TRUE;
    channel->stream = stream;
    worker->callbacks.channel_opened(worker, channel->index, stream, worker->user_data);
    return !worker->gone;
}

/* CLIENT: an event byte and a printable address (sw-frame.h). */
static gboolean
gw_spice_worker_on_client(GwSpiceWorker *worker, const SwFrameHeader *header, const guint8 *payload)
{
    g_autofree gchar *address = NULL;

    if (!worker->ready || header->channel != 0 || header->length < 2 ||
        header->length > 1 + SW_FRAME_MAX_ADDRESS) {
        gw_spice_worker_fail(worker, "CLIENT frame %s (channel %u, %u bytes)",
                             worker->ready ? "malformed" : "before READY", header->channel,
                             header->length);
        return FALSE;
    }
    if (payload[0] < SW_CLIENT_LOGIN || payload[0] > SW_CLIENT_REFUSED) {
        gw_spice_worker_fail(worker, "CLIENT frame with unknown event %u", payload[0]);
        return FALSE;
    }
    for (guint i = 1; i < header->length; i++) {
        if (!g_ascii_isgraph(payload[i])) {
            gw_spice_worker_fail(worker,
                                 "CLIENT frame: byte %u of the address is 0x%02x, not "
                                 "printable",
                                 i - 1, payload[i]);
            return FALSE;
        }
    }
    address = g_strndup((const gchar *)payload + 1, header->length - 1);
    if (worker->callbacks.client != NULL)
        worker->callbacks.client(worker, payload[0], address, worker->user_data);
    return !worker->gone;
}

static gboolean
gw_spice_worker_on_frame(GwSpiceWorker *worker, const SwFrameHeader *header, const guint8 *payload)
{
    GwSpiceChannel *channel;

    if (header->type == SW_FRAME_READY) {
        if (worker->ready || header->length != 8 || sw_frame_get_u32(payload) != SW_FRAME_VERSION ||
            sw_frame_get_u32(payload + 4) != worker->n_channels) {
            gw_spice_worker_fail(worker,
                                 "unexpected READY from the worker (version or channel count "
                                 "differs from usbgwd's %u/%u)",
                                 SW_FRAME_VERSION, worker->n_channels);
            return FALSE;
        }
        worker->ready = TRUE;
        worker->callbacks.ready(worker, worker->user_data);
        return !worker->gone;
    }
    if (header->type == SW_FRAME_CLIENT)
        return gw_spice_worker_on_client(worker, header, payload);
    if (header->type != SW_FRAME_OPEN && header->type != SW_FRAME_CLOSE &&
        header->type != SW_FRAME_DATA) {
        gw_spice_worker_fail(worker, "frame type %u does not go from worker to usbgwd",
                             header->type);
        return FALSE;
    }
    if (!worker->ready || header->channel >= worker->n_channels) {
        gw_spice_worker_fail(worker, "frame for channel %u %s", header->channel,
                             worker->ready ? "that does not exist" : "before READY");
        return FALSE;
    }
    channel = &worker->channels[header->channel];
    switch (header->type) {
    case SW_FRAME_OPEN:
        return gw_spice_worker_on_open(worker, channel);
    case SW_FRAME_CLOSE:
        if (!channel->open) {
            gw_spice_worker_fail(worker, "worker closed channel %u, which is not open",
                                 channel->index);
            return FALSE;
        }
        channel->open = FALSE;
        /* nothing of the old session reaches the next client: the worker
         * drops DATA for this channel until this ack */
        gw_spice_channel_detach(channel);
        gw_spice_worker_queue(worker, SW_FRAME_CLOSE, channel->index, NULL, 0);
        gw_spice_worker_flush(worker);
        worker->callbacks.channel_closed(worker, channel->index, worker->user_data);
        return !worker->gone;
    default: /* DATA */
        if (!channel->open) {
            gw_spice_worker_fail(worker, "worker sent data on channel %u, which is not open",
                                 channel->index);
            return FALSE;
        }
        /* without a stream (its user closed it) the bytes are dropped */
        if (channel->stream != NULL) {
            g_byte_array_append(channel->stream->in, payload, header->length);
            channel->stream->notify = TRUE;
        }
        return TRUE;
    }
}

static gboolean
gw_spice_worker_hang_up_timeout(gpointer data)
{
    GwSpiceWorker *worker = data;

    worker->hang_up_id = 0;
    gw_spice_worker_fail(worker, "the worker closed its socketpair and did not exit");
    return G_SOURCE_REMOVE;
}

static void
gw_spice_worker_read(GwSpiceWorker *worker)
{
    guint8 buffer[GW_SPICE_READ_CHUNK];
    gsize offset = 0;
    ssize_t n;

    do {
        n = recv(worker->fd, buffer, sizeof(buffer), MSG_DONTWAIT);
    } while (n < 0 && errno == EINTR);
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
        return;
    if (n <= 0) {
        /* it is exiting: its status says more than the EOF, if it comes soon */
        if (n < 0)
            g_debug("spice worker socketpair: %s", g_strerror(errno));
        if (worker->process == NULL) {
            gw_spice_worker_fail(worker, "the worker closed its socketpair");
            return;
        }
        worker->hung_up = TRUE;
        gw_fd_watch_set_condition(worker->watch, 0);
        worker->hang_up_id =
            g_timeout_add(GW_SPICE_EXIT_WAIT_MS, gw_spice_worker_hang_up_timeout, worker);
        return;
    }
    g_byte_array_append(worker->in, buffer, (guint)n);
    while (!worker->gone) {
        SwFrameHeader header;
        g_autoptr(GError) error = NULL;

        if (worker->in->len - offset < SW_FRAME_HEADER_SIZE)
            break;
        if (!sw_frame_header_unpack(worker->in->data + offset, &header, &error)) {
            gw_spice_worker_fail(worker, "from the worker: %s", error->message);
            return;
        }
        if (worker->in->len - offset < SW_FRAME_HEADER_SIZE + header.length)
            break;
        if (!gw_spice_worker_on_frame(worker, &header,
                                      worker->in->data + offset + SW_FRAME_HEADER_SIZE))
            return;
        offset += SW_FRAME_HEADER_SIZE + header.length;
    }
    if (worker->gone)
        return;
    g_byte_array_remove_range(worker->in, 0, (guint)offset);
    gw_spice_worker_notify_streams(worker);
}

static void
gw_spice_worker_ready_cb(int fd, GIOCondition condition, gpointer data)
{
    GwSpiceWorker *worker = data;

    if (condition & (G_IO_IN | G_IO_HUP | G_IO_ERR))
        gw_spice_worker_read(worker);
    gw_spice_worker_flush(worker); /* also updates every watch */
}

static void
gw_spice_worker_exited(GObject *source, GAsyncResult *result, gpointer data)
{
    GwSpiceWorker *worker = data;
    GSubprocess *process = G_SUBPROCESS(source);
    g_autoptr(GError) error = NULL;

    if (!g_subprocess_wait_finish(process, result, &error))
        return; /* cancelled: the owner freed the worker */
    if (g_subprocess_get_if_exited(process))
        gw_spice_worker_fail(worker, "the worker exited with status %d",
                             g_subprocess_get_exit_status(process));
    else
        gw_spice_worker_fail(worker, "the worker was killed by signal %d",
                             g_subprocess_get_term_sig(process));
}

/* ---- the worker's uid ----------------------------------------------------- */

/* Uids and gids within first..last that some process holds (real,
 * effective, saved or filesystem). Only processes usbgwd can see: under
 * the unit's ProtectProc=invisible, other users' are hidden, so this is a
 * second check behind the NSS lookup and the round robin. */
static GHashTable *
gw_spice_ids_in_use(guint first, guint last)
{
    GHashTable *ids = g_hash_table_new(g_direct_hash, g_direct_equal);
    g_autoptr(GDir) dir = g_dir_open("/proc", 0, NULL);
    const gchar *name;

    while (dir != NULL && (name = g_dir_read_name(dir)) != NULL) {
        g_autofree gchar *path = NULL;
        g_autofree gchar *status = NULL;
        g_auto(GStrv) lines = NULL;

        if (!g_ascii_isdigit(name[0]))
            continue;
        path = g_build_filename("/proc", name, "status", NULL);
        if (!g_file_get_contents(path, &status, NULL, NULL))
            continue; /* gone meanwhile */
        lines = g_strsplit(status, "\n", -1);
        for (guint i = 0; lines[i] != NULL; i++) {
            g_auto(GStrv) fields = NULL;

            if (!g_str_has_prefix(lines[i], "Uid:") && !g_str_has_prefix(lines[i], "Gid:"))
                continue;
            fields = g_strsplit_set(lines[i] + 4, " \t", -1);
            for (guint f = 0; fields[f] != NULL; f++) {
                guint64 id;

                if (g_ascii_string_to_unsigned(fields[f], 10, first, last, &id, NULL))
                    g_hash_table_add(ids, GUINT_TO_POINTER((guint)id));
            }
        }
    }
    return ids;
}

/* An NSS lookup's answer: 0, ENOENT or ESRCH with no entry mean "not
 * found" (getpwuid_r(3)); any other error counts as taken. */
static gboolean
gw_spice_nss_taken(int rc, gconstpointer result)
{
    return result != NULL || (rc != 0 && rc != ENOENT && rc != ESRCH);
}

/* TRUE if the user or group database names @id (a uid or gid there is
 * someone's: files, other services). */
static gboolean
gw_spice_id_in_nss(guint id)
{
    g_autofree gchar *buffer = g_malloc(GW_SPICE_NSS_BUFFER);
    struct passwd pw, *pw_result = NULL;
    struct group gr, *gr_result = NULL;
    int rc;

    rc = getpwuid_r((uid_t)id, &pw, buffer, GW_SPICE_NSS_BUFFER, &pw_result);
    if (gw_spice_nss_taken(rc, pw_result))
        return TRUE;
    rc = getgrgid_r((gid_t)id, &gr, buffer, GW_SPICE_NSS_BUFFER, &gr_result);
    return gw_spice_nss_taken(rc, gr_result);
}

/* A uid (and the same gid) for a new worker, held until
 * gw_spice_worker_free(). */
static gboolean
gw_spice_take_uid(guint first, guint last, guint *uid, GError **error)
{
    guint64 count = (guint64)last - first + 1;
    g_autoptr(GHashTable) running = gw_spice_ids_in_use(first, last);

    if (gw_spice_uids == NULL)
        gw_spice_uids = g_hash_table_new(g_direct_hash, g_direct_equal);
    for (guint64 i = 0; i < MIN(count, GW_SPICE_UID_TRIES); i++) {
        guint candidate = first + (guint)((gw_spice_uid_next + i) % count);

        if (g_hash_table_contains(gw_spice_uids, GUINT_TO_POINTER(candidate)) ||
            g_hash_table_contains(running, GUINT_TO_POINTER(candidate)) ||
            gw_spice_id_in_nss(candidate))
            continue;
        g_hash_table_add(gw_spice_uids, GUINT_TO_POINTER(candidate));
        gw_spice_uid_next = (candidate - first + 1) % count;
        *uid = candidate;
        return TRUE;
    }
    g_set_error(error, G_IO_ERROR, G_IO_ERROR_EXISTS,
                "no free uid for the SPICE worker in spice-uid-range %u-%u (%u workers hold one; "
                "the others are used by processes or named in the user or group database)",
                first, last, g_hash_table_size(gw_spice_uids));
    return FALSE;
}

static void
gw_spice_release_uid(guint uid)
{
    if (uid != 0 && gw_spice_uids != NULL)
        g_hash_table_remove(gw_spice_uids, GUINT_TO_POINTER(uid));
}

/* usbgwd's environment reduced to gw_spice_environment. */
static GStrv
gw_spice_worker_environ(void)
{
    g_autoptr(GStrvBuilder) builder = g_strv_builder_new();

    for (guint i = 0; gw_spice_environment[i] != NULL; i++) {
        const gchar *value = g_getenv(gw_spice_environment[i]);
        g_autofree gchar *entry = NULL;

        if (value == NULL)
            continue;
        entry = g_strdup_printf("%s=%s", gw_spice_environment[i], value);
        g_strv_builder_add(builder, entry);
    }
    return g_strv_builder_end(builder);
}

/* ---- public ------------------------------------------------------------- */

GwSpiceWorker *
gw_spice_worker_new(const GwSpiceWorkerOptions *options, const GwSpiceWorkerCallbacks *callbacks,
                    gpointer user_data, GError **error)
{
    g_autoptr(GSubprocessLauncher) launcher = NULL;
    g_autoptr(GPtrArray) argv = g_ptr_array_new_with_free_func(g_free);
    g_auto(GStrv) environment = gw_spice_worker_environ();
    GSubprocess *process;
    GwSpiceWorker *worker;
    guint uid = 0;
    int fds[2];

    g_return_val_if_fail(options->channels > 0 && options->channels <= SW_FRAME_MAX_CHANNELS, NULL);
    if (options->uid_first != 0 &&
        !gw_spice_take_uid(options->uid_first, options->uid_last, &uid, error))
        return NULL;
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds) != 0) {
        g_set_error(error, G_IO_ERROR, g_io_error_from_errno(errno),
                    "socketpair for the SPICE worker: %s", g_strerror(errno));
        gw_spice_release_uid(uid);
        return NULL;
    }
    g_ptr_array_add(argv, g_strdup(options->program));
    g_ptr_array_add(argv, g_strdup("--fd=3"));
    g_ptr_array_add(argv, g_strdup_printf("--addr=%s", options->address));
    if (options->tls_cert != NULL) {
        g_ptr_array_add(argv, g_strdup("--port=0"));
        g_ptr_array_add(argv, g_strdup_printf("--tls-port=%u", options->port));
        g_ptr_array_add(argv, g_strdup_printf("--tls-ca=%s", options->tls_ca));
        g_ptr_array_add(argv, g_strdup_printf("--tls-cert=%s", options->tls_cert));
        g_ptr_array_add(argv, g_strdup_printf("--tls-key=%s", options->tls_key));
        g_ptr_array_add(argv, g_strdup("--tls-required"));
    } else {
        g_ptr_array_add(argv, g_strdup_printf("--port=%u", options->port));
    }
    g_ptr_array_add(argv, g_strdup_printf("--channels=%u", options->channels));
    if (uid != 0)
        g_ptr_array_add(argv, g_strdup_printf("--uid=%u", uid));
    else if (options->user != NULL)
        g_ptr_array_add(argv, g_strdup_printf("--user=%s", options->user));
    g_ptr_array_add(argv, NULL);

    /* stdin /dev/null, stdout and stderr usbgwd's (its log), fd 3 the
     * socketpair and no other fd (GLib closes the rest), an environment
     * of gw_spice_environment only */
    launcher = g_subprocess_launcher_new(G_SUBPROCESS_FLAGS_NONE);
    g_subprocess_launcher_set_environ(launcher, environment);
    g_subprocess_launcher_set_stdin_file_path(launcher, "/dev/null");
    g_subprocess_launcher_take_fd(launcher, fds[1], 3);
    process = g_subprocess_launcher_spawnv(launcher, (const gchar *const *)argv->pdata, error);
    if (process == NULL) {
        close(fds[0]);
        gw_spice_release_uid(uid);
        return NULL;
    }
    worker = gw_spice_worker_new_for_fd(fds[0], options->channels, callbacks, user_data);
    worker->process = process;
    worker->uid = uid;
    g_subprocess_wait_async(worker->process, worker->cancellable, gw_spice_worker_exited, worker);
    return worker;
}

GwSpiceWorker *
gw_spice_worker_new_for_fd(int fd, guint channels, const GwSpiceWorkerCallbacks *callbacks,
                           gpointer user_data)
{
    GwSpiceWorker *worker = g_new0(GwSpiceWorker, 1);

    g_return_val_if_fail(channels > 0 && channels <= SW_FRAME_MAX_CHANNELS, NULL);
    worker->fd = fd;
    g_unix_set_fd_nonblocking(worker->fd, TRUE, NULL);
    worker->in = g_byte_array_new();
    worker->out = g_byte_array_new();
    worker->n_channels = channels;
    worker->channels = g_new0(GwSpiceChannel, channels);
    for (guint i = 0; i < channels; i++)
        worker->channels[i].index = i;
    worker->callbacks = *callbacks;
    worker->user_data = user_data;
    worker->cancellable = g_cancellable_new();
    worker->watch = gw_fd_watch_new(NULL, "usbgw-spice-worker", worker->fd, 0,
                                    gw_spice_worker_ready_cb, worker);
    gw_spice_worker_update_watches(worker);
    return worker;
}

void
gw_spice_worker_set_ticket(GwSpiceWorker *worker, const gchar *ticket, guint lifetime_s,
                           gboolean disconnect)
{
    gsize length = strlen(ticket);
    g_autofree guint8 *payload = g_malloc(4 + length);

    g_return_if_fail(length > 0 && length <= SW_FRAME_MAX_TICKET);
    sw_frame_put_u32(payload, lifetime_s);
    memcpy(payload + 4, ticket, length);
    gw_spice_worker_queue(worker, disconnect ? SW_FRAME_DISCONNECT : SW_FRAME_TICKET, 0, payload,
                          4 + length);
    explicit_bzero(payload, 4 + length);
    gw_spice_worker_flush(worker);
}

gboolean
gw_spice_worker_is_ready(GwSpiceWorker *worker)
{
    return worker->ready && !worker->gone;
}

guint
gw_spice_worker_get_uid(GwSpiceWorker *worker)
{
    return worker->uid;
}

void
gw_spice_worker_free(GwSpiceWorker *worker)
{
    if (worker == NULL)
        return;
    g_cancellable_cancel(worker->cancellable);
    g_clear_handle_id(&worker->gone_id, g_source_remove);
    g_clear_pointer(&worker->watch, gw_fd_watch_free);
    g_clear_handle_id(&worker->hang_up_id, g_source_remove);
    g_clear_handle_id(&worker->out_id, g_source_remove);
    /* a stream still held reads what came, then the end */
    for (guint i = 0; i < worker->n_channels; i++)
        gw_spice_channel_detach(&worker->channels[i]);
    if (worker->fd >= 0)
        close(worker->fd); /* the worker exits on EOF */
    /* it exits on the EOF or on SIGTERM, whichever it sees first; GLib's
     * child watch reaps it */
    if (!worker->gone && worker->process != NULL)
        g_subprocess_send_signal(worker->process, SIGTERM);
    g_clear_object(&worker->process);
    gw_spice_release_uid(worker->uid);
    g_object_unref(worker->cancellable);
    g_byte_array_unref(worker->in);
    g_byte_array_unref(worker->out);
    g_free(worker->channels);
    g_free(worker->why_gone);
    g_free(worker);
}
