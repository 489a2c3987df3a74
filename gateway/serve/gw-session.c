/* usbredirhost sessions over non-blocking stream sockets. */
#include "gw-session.h"

#include <errno.h>
#include <string.h>
#include <sys/socket.h>
#include <usbredirhost.h>

#include "gw-fd-watch.h"
#include "gw-handover-stream.h"
#include "gw-handover.h"
#include "gw-peer-handover.h"
#include "gw-log.h"
#include "gw-usbgw-metrics.h"
#include "gw-usbredir-error.h"

/* Bounded memory per peer. What usbgwd queues for a peer that does not
 * read is bounded in two places:
 *   - stream data (interrupt and bulk receiving, iso): usbredirhost drops
 *     it once more than 800 packets wait to be written, and iso packets
 *     earlier, by bytes queued in its parser. usbredirhost_set_buffered_
 *     output_size_cb() is not set: usbredirhost (0.11 and later) only asks
 *     it when opened with usbredirhost_fl_write_cb_owns_buffer, that is
 *     when the application, not the parser, holds the queue (spice-gtk);
 *     here the parser does, and usbredirhost measures it itself;
 *   - answers to the peer's own requests, which usbredirhost never drops:
 *     the peer is not read while more than this many packets wait for it,
 *     so one that sends requests without reading the answers stalls
 *     itself. A peer that reads gets answers as they come and is never
 *     held back (the socket buffer absorbs them). */
#define GW_SESSION_MAX_QUEUED_PACKETS 128
/* A peer that has not sent its usbredir hello this long after connecting
 * is dropped, so that a connection that never starts the protocol (a port
 * scan, a wedged client) does not hold the device: QEMU sends its hello as
 * soon as it connects, if the VM runs. A paused VM's usb-redir neither
 * reads nor writes (RIG-NOTES), so its QEMU is dropped too and connects
 * again (usbgwd's redirdevs have <reconnect>); it gets the device once
 * the VM runs, as it would have anyway. */
#define GW_SESSION_HELLO_TIMEOUT_S 5
/* The fewest bytes that hold a hello: usbredir's packet header with a
 * 32-bit id (ids are 64-bit only once both hellos said so) and the version
 * string. Only counted: usbredirhost's parser checks what they say. */
#define GW_SESSION_HELLO_MIN_BYTES                                                                 \
    (sizeof(struct usb_redir_header) - sizeof(uint32_t) + sizeof(struct usb_redir_hello_header))

/* The main loop's side of a session on a transport: dispatched while
 * usbredirhost holds output the transport takes, or a write failed. */
typedef struct {
    GSource source;
    GwSession *session;
} GwSessionSource;

struct _GwSession {
    gchar *label;          /* owned */
    gchar *device_id;      /* owned, nullable: the journal's USBGW_DEVICE */
    gchar *vm;             /* owned, nullable: the journal's USBGW_VM */
    GSocket *socket;       /* owned ref, nullable: on a transport */
    int fd;                /* borrowed from socket; -1 on a transport */
    GwTransport transport; /* transport.read set: the peer is on it */
    gpointer transport_data;
    gboolean transport_full;     /* the last write was short: wait for G_IO_OUT */
    gboolean transport_readable; /* told G_IO_IN, not read empty since */
    GSource *transport_source;   /* owned, nullable: GwSessionSource */
    struct usbredirhost *host;   /* owned */
    GMainContext *context;       /* owned ref */
    GwFdWatch *watch;            /* owned, nullable: the peer's socket, until the session closes */
    GSource *close_source;       /* owned, nullable: the pending close notification */
    GSource *hello_timeout;      /* owned, nullable: until a hello's worth of bytes came */
    guint64 bytes_read;          /* from the peer; main thread */
    GwSessionClosedFunc closed;
    gpointer user_data;
    gboolean has_device;
    gint write_failed;   /* atomic: set by the writer on any thread */
    gchar *close_reason; /* owned, nullable */
    /* A live migration (docs/migration.md). io_lock guards fd,
     * bytes_written, the stream, resend and the handover's ring: the
     * writer runs on any thread, the handover on the main one. */
    GMutex io_lock;
    guint64 bytes_written;    /* to the peer */
    GwHandoverStream *stream; /* owned, nullable (on a transport): the packets written */
    GwPeerHandover *handover; /* owned, nullable: while a destination is pending */
    GBytes *resend;           /* owned, nullable: re-sent bytes the destination has not taken */
    gsize resend_offset;
    gboolean draining; /* reading the source to its end: no back-pressure, EOF ends it */
    guint8 hello[GW_HANDOVER_HELLO_CAPS_END]; /* the peer's first bytes, until ids are known */
    gsize hello_have;
    gboolean hello_known;
    GwSessionHandoverFunc handover_func; /* nullable */
    gpointer handover_data;
};

static void
gw_session_log_cb(void *priv, int level, const char *msg)
{
    GwSession *session = priv;
    GLogLevelFlags log_level;

    switch (level) {
    case usbredirparser_error:
        /* usbredirhost's errors are failed USB transfers and requests
         * (submitting, reaping, a configuration or interface change) */
        gw_usbgw_metrics_transfer_error();
        log_level = G_LOG_LEVEL_WARNING;
        break;
    case usbredirparser_warning:
        log_level = G_LOG_LEVEL_MESSAGE;
        break;
    case usbredirparser_info:
        log_level = G_LOG_LEVEL_INFO;
        break;
    default:
        log_level = G_LOG_LEVEL_DEBUG;
        break;
    }
    gw_log_device(log_level, session->device_id, session->vm, NULL, "%s: usbredir: %s",
                  session->label, msg);
}

/* The peer's first bytes: its hello says whether packet ids are 64-bit
 * (usbredirhost's are), which the stream of packets written needs. */
static void
gw_session_learn_hello(GwSession *session, const guint8 *data, gsize len)
{
    gsize take = MIN(len, sizeof(session->hello) - session->hello_have);
    gboolean ids64;

    memcpy(session->hello + session->hello_have, data, take);
    session->hello_have += take;
    if (!gw_handover_hello_ids64(session->hello, session->hello_have, &ids64))
        return;
    session->hello_known = TRUE;
    g_mutex_lock(&session->io_lock);
    gw_handover_stream_set_ids64(session->stream, ids64);
    g_mutex_unlock(&session->io_lock);
}

static int
gw_session_read_cb(void *priv, uint8_t *data, int count)
{
    GwSession *session = priv;
    ssize_t n;

    /* too much waits for the peer already: read on once it took some
     * (usbredirparser reads until the socket would block; 0 is that) */
    if (!session->draining &&
        usbredirhost_has_data_to_write(session->host) > GW_SESSION_MAX_QUEUED_PACKETS)
        return 0;
    if (session->transport.read != NULL) {
        gssize got = session->transport.read(session->transport_data, data, (gsize)count);
        if (got > 0) {
            session->bytes_read += (guint64)got;
            gw_usbgw_metrics_redir_bytes(GW_USBGW_FROM_PEER, (guint64)got);
        } else if (got == 0)
            session->transport_readable = FALSE;
        return (int)got;
    }
    if (session->handover != NULL && !session->draining)
        gw_peer_handover_before_read(session->handover);
    n = recv(session->fd, data, (size_t)count, MSG_DONTWAIT);
    int saved_errno = errno;
    if (session->handover != NULL)
        gw_peer_handover_after_read(session->handover,
                                    n > 0 || (n < 0 && saved_errno != ECONNRESET) ? MAX(n, 0) : -1);
    errno = saved_errno;
    if (n > 0) {
        session->bytes_read += (guint64)n;
        gw_usbgw_metrics_redir_bytes(GW_USBGW_FROM_PEER, (guint64)n);
        if (!session->hello_known)
            gw_session_learn_hello(session, data, (gsize)n);
        return (int)n;
    }
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR))
        return 0;
    if ((n == 0 || (n < 0 && errno == ECONNRESET)) && session->handover != NULL) {
        /* a migration's source at its end (reset when it left bytes
         * unread): the destination goes on */
        return 0;
    }
    /* 0: the peer closed; <0: a socket error. usbredirhost stops reading
     * on a negative return. */
    return -1;
}

/* Sends what is left of the bytes re-sent to a migration's destination:
 * 1 when none are left, 0 when some still wait (the socket is full), -1
 * on a failed write (write_failed set). Under io_lock. */
static int
gw_session_flush_resend_locked(GwSession *session)
{
    gsize size;
    const guint8 *data;

    if (session->resend == NULL)
        return 1;
    data = g_bytes_get_data(session->resend, &size);
    while (session->resend_offset < size) {
        ssize_t n = send(session->fd, data + session->resend_offset, size - session->resend_offset,
                         MSG_DONTWAIT | MSG_NOSIGNAL);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            return 0;
        if (n < 0) {
            g_atomic_int_set(&session->write_failed, 1);
            return -1;
        }
        session->bytes_written += (guint64)n;
        session->resend_offset += (gsize)n;
        gw_usbgw_metrics_redir_bytes(GW_USBGW_TO_PEER, (guint64)n);
    }
    g_clear_pointer(&session->resend, g_bytes_unref);
    session->resend_offset = 0;
    return 1;
}

static int
gw_session_write_cb(void *priv, uint8_t *data, int count)
{
    GwSession *session = priv;
    ssize_t n;

    if (session->transport.read != NULL) {
        /* main thread only (gw_session_flush_cb) */
        gssize taken = session->transport.write(session->transport_data, data, (gsize)count);
        if (taken == 0)
            session->transport_full = TRUE;
        if (taken > 0)
            gw_usbgw_metrics_redir_bytes(GW_USBGW_TO_PEER, (guint64)taken);
        if (taken >= 0)
            return (int)taken;
        g_atomic_int_set(&session->write_failed, 1);
        return -1;
    }
    g_mutex_lock(&session->io_lock);
    /* the bytes a migration's source did not read go first */
    if (gw_session_flush_resend_locked(session) <= 0) {
        g_mutex_unlock(&session->io_lock);
        return 0;
    }
    n = send(session->fd, data, (size_t)count, MSG_DONTWAIT | MSG_NOSIGNAL);
    if (n > 0) {
        gw_handover_stream_append(session->stream, session->bytes_written, data, (gsize)n);
        session->bytes_written += (guint64)n;
        if (session->handover != NULL)
            gw_peer_handover_written_locked(session->handover, data, (gsize)n);
    }
    if (n < 0 && session->handover != NULL && (errno == EPIPE || errno == ECONNRESET)) {
        /* the source hung up; the read side tells the main loop */
        g_mutex_unlock(&session->io_lock);
        return 0;
    }
    g_mutex_unlock(&session->io_lock);
    if (n >= 0) {
        gw_usbgw_metrics_redir_bytes(GW_USBGW_TO_PEER, (guint64)n);
        return (int)n;
    }
    if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)
        return 0;
    g_atomic_int_set(&session->write_failed, 1);
    g_main_context_wakeup(session->context);
    return -1;
}

/* Called by usbredirhost whenever it queued output, on any thread: write
 * at once from here (no main-loop hop on the hot path); leftovers are
 * flushed by the main loop once the socket is writable. */
static void
gw_session_flush_cb(void *priv)
{
    GwSession *session = priv;
    /* read once: the main thread clears it when the session closes, and
     * usbredirhost_close() only returns once this callback is done */
    struct usbredirhost *host = g_atomic_pointer_get(&session->host);
    if (host == NULL)
        return;
    if (session->transport.read != NULL) {
        /* a transport is the main thread's: from the usb thread, wake the
         * main loop, whose source writes */
        if (!g_main_context_is_owner(session->context)) {
            g_main_context_wakeup(session->context);
            return;
        }
        if (!session->transport_full)
            usbredirhost_write_guest_data(host);
        if (session->transport.flush != NULL)
            session->transport.flush(session->transport_data);
        return;
    }
    usbredirhost_write_guest_data(host);
    if (usbredirhost_has_data_to_write(host) > 0)
        g_main_context_wakeup(session->context);
}

static void *
gw_session_lock_new(void)
{
    GMutex *mutex = g_new0(GMutex, 1);
    g_mutex_init(mutex);
    return mutex;
}

static void
gw_session_lock_lock(void *lock)
{
    g_mutex_lock(lock);
}

static void
gw_session_lock_unlock(void *lock)
{
    g_mutex_unlock(lock);
}

static void
gw_session_lock_free(void *lock)
{
    g_mutex_clear(lock);
    g_free(lock);
}

static gboolean
gw_session_notify_closed(gpointer data)
{
    GwSession *session = data;
    g_clear_pointer(&session->close_source, g_source_unref);
    session->closed(session, session->close_reason, session->user_data);
    return G_SOURCE_REMOVE;
}

static void
gw_session_clear_hello_timeout(GwSession *session)
{
    if (session->hello_timeout == NULL)
        return;
    g_source_destroy(session->hello_timeout);
    g_clear_pointer(&session->hello_timeout, g_source_unref);
}

static void gw_session_close_later(GwSession *session, const gchar *reason);

/* A pending migration ends with the session: its destination is closed
 * (its QEMU connects again). */
static void
gw_session_end_handover(GwSession *session)
{
    GwPeerHandover *handover;

    g_mutex_lock(&session->io_lock);
    handover = g_steal_pointer(&session->handover);
    g_mutex_unlock(&session->io_lock);
    gw_peer_handover_free(handover);
}

static gboolean
gw_session_hello_timed_out(gpointer data)
{
    GwSession *session = data;
    g_autofree gchar *reason = NULL;

    g_clear_pointer(&session->hello_timeout, g_source_unref);
    if (session->bytes_read >= GW_SESSION_HELLO_MIN_BYTES)
        return G_SOURCE_REMOVE;
    reason =
        g_strdup_printf("peer sent no usbredir hello within %d s (%" G_GUINT64_FORMAT " bytes)",
                        GW_SESSION_HELLO_TIMEOUT_S, session->bytes_read);
    gw_session_close_later(session, reason);
    return G_SOURCE_REMOVE;
}

/* Stops I/O and tells the owner from a fresh main-loop iteration. */
static void
gw_session_close_later(GwSession *session, const gchar *reason)
{
    if (session->close_reason != NULL)
        return;
    gw_log_device(G_LOG_LEVEL_INFO, session->device_id, session->vm, NULL, "%s: closing: %s",
                  session->label, reason);
    session->close_reason = g_strdup(reason);
    g_clear_pointer(&session->watch, gw_fd_watch_free);
    if (session->transport_source != NULL) {
        g_source_destroy(session->transport_source);
        g_clear_pointer(&session->transport_source, g_source_unref);
    }
    gw_session_clear_hello_timeout(session);
    gw_session_end_handover(session);
    session->close_source = g_idle_source_new();
    g_source_set_callback(session->close_source, gw_session_notify_closed, session, NULL);
    g_source_attach(session->close_source, session->context);
}

/* Before each poll: output queued by the usb thread (which woke the
 * context) makes the socket watched for G_IO_OUT; a write that failed
 * there is handled at once. */
static gboolean
gw_session_prepare(gpointer data)
{
    GwSession *session = data;
    GIOCondition condition = G_IO_IN | G_IO_HUP | G_IO_ERR;
    int queued;

    if (g_atomic_int_get(&session->write_failed))
        return TRUE;
    queued = usbredirhost_has_data_to_write(session->host);
    g_mutex_lock(&session->io_lock);
    if (queued > 0 || session->resend != NULL)
        condition |= G_IO_OUT;
    g_mutex_unlock(&session->io_lock);
    if (queued > GW_SESSION_MAX_QUEUED_PACKETS)
        condition &= ~G_IO_IN; /* read on once the peer took some (a hang-up still wakes us) */
    gw_fd_watch_set_condition(session->watch, condition);
    return FALSE;
}

/* Reads what the peer sent; FALSE when the session is closing. */
static gboolean
gw_session_read_peer(GwSession *session)
{
    g_autoptr(GError) error = NULL;

    if (gw_usbredir_read_result_to_error(usbredirhost_read_guest_data(session->host), &error))
        return TRUE;
    if (g_error_matches(error, GW_USBREDIR_ERROR, GW_USBREDIR_ERROR_DEVICE_REJECTED)) {
        /* usbredirhost expects us to release the device */
        gw_log_device(G_LOG_LEVEL_MESSAGE, session->device_id, session->vm, NULL, "%s: %s",
                      session->label, error->message);
        gw_session_clear_device(session);
        return TRUE;
    }
    if (g_error_matches(error, GW_USBREDIR_ERROR, GW_USBREDIR_ERROR_DEVICE_LOST)) {
        /* usbredirhost released it itself */
        gw_log_device(G_LOG_LEVEL_MESSAGE, session->device_id, session->vm, NULL, "%s: %s",
                      session->label, error->message);
        session->has_device = FALSE;
        return TRUE;
    }
    gw_session_close_later(session, error->message);
    return FALSE;
}

static void
gw_session_ready(int fd, GIOCondition revents, gpointer data)
{
    GwSession *session = data;
    g_autoptr(GError) error = NULL;

    if (g_atomic_int_get(&session->write_failed)) {
        gw_session_close_later(session, "write to peer failed");
        return;
    }
    if (revents & G_IO_OUT) {
        g_mutex_lock(&session->io_lock);
        int resent = gw_session_flush_resend_locked(session);
        g_mutex_unlock(&session->io_lock);
        if (resent < 0) {
            gw_session_close_later(session, "write to peer failed");
            return;
        }
        if (!gw_usbredir_write_result_to_error(usbredirhost_write_guest_data(session->host),
                                               &error)) {
            gw_session_close_later(session, error->message);
            return;
        }
    }
    if (revents & (G_IO_IN | G_IO_HUP | G_IO_ERR)) {
        if (!gw_session_read_peer(session))
            return;
        if (session->handover != NULL && (gw_peer_handover_source_ended(session->handover) ||
                                          (revents & (G_IO_HUP | G_IO_ERR)))) {
            gw_peer_handover_source_gone(session->handover);
            return;
        }
        if (revents & (G_IO_HUP | G_IO_ERR) && !(revents & G_IO_IN))
            gw_session_close_later(session, "peer hung up");
    }
}

/* ---- A live migration's destination ----------------------------------------- */

/* GwPeerHandover's drain: what the source sent, read to its end. */
static gboolean
gw_session_drain_source(gpointer owner, guint64 *drained)
{
    GwSession *session = owner;
    guint64 before = session->bytes_read;
    gboolean ok = TRUE;

    if (!gw_peer_handover_source_ended(session->handover)) {
        session->draining = TRUE;
        ok = gw_session_read_peer(session);
        session->draining = FALSE;
    }
    *drained = session->bytes_read - before;
    return ok;
}

/* The destination is the peer from now on: the re-sent bytes go first,
 * the source is closed. Under io_lock. */
static void
gw_session_switch_peer_locked(gpointer owner, GSocket *destination, GBytes *resend)
{
    GwSession *session = owner;
    g_autoptr(GSocket) source = g_steal_pointer(&session->socket);

    session->socket = destination;
    session->fd = g_socket_get_fd(destination);
    session->resend = resend;
    session->resend_offset = 0;
    if (gw_session_flush_resend_locked(session) < 0)
        g_main_context_wakeup(session->context); /* write_failed: the main loop closes */
    g_clear_pointer(&session->watch, gw_fd_watch_free);
    g_socket_close(source, NULL);
    session->watch = gw_fd_watch_new(session->context, "usbgw-session", session->fd, G_IO_IN,
                                     gw_session_ready, session);
    gw_fd_watch_set_prepare(session->watch, gw_session_prepare);
}

static void
gw_session_handover_finished(gpointer owner, GwPeerHandoverResult result, const gchar *detail)
{
    GwSession *session = owner;

    g_mutex_lock(&session->io_lock);
    g_clear_pointer(&session->handover, gw_peer_handover_free);
    g_mutex_unlock(&session->io_lock);
    if (result == GW_PEER_HANDOVER_FAILED) {
        gw_session_close_later(session, detail);
        return;
    }
    if (session->handover_func != NULL)
        session->handover_func(session, result, detail, session->handover_data);
}

static const GwPeerHandoverFuncs gw_session_handover_funcs = {
    .drain = gw_session_drain_source,
    .switch_peer_locked = gw_session_switch_peer_locked,
    .finished = gw_session_handover_finished,
};

gboolean
gw_session_add_destination(GwSession *session, GSocket *socket, GError **error)
{
    GwPeerHandover *handover;

    if (session->socket == NULL || session->close_reason != NULL) {
        g_set_error(error, G_IO_ERROR, G_IO_ERROR_NOT_SUPPORTED,
                    "%s: no migration destination for a session on a transport or closing",
                    session->label);
        return FALSE;
    }
    if (session->handover != NULL) {
        g_set_error(error, G_IO_ERROR, G_IO_ERROR_BUSY,
                    "%s: a migration handover is pending already", session->label);
        return FALSE;
    }
    g_mutex_lock(&session->io_lock);
    if (session->resend != NULL) {
        g_mutex_unlock(&session->io_lock);
        g_set_error(error, G_IO_ERROR, G_IO_ERROR_BUSY,
                    "%s: the last migration's destination has not taken its bytes yet",
                    session->label);
        return FALSE;
    }
    handover = gw_peer_handover_new(session->fd, session->bytes_written, &session->io_lock,
                                    session->stream, socket, session->context, session->label,
                                    session->device_id, session->vm, &gw_session_handover_funcs,
                                    session, error);
    session->handover = handover;
    g_mutex_unlock(&session->io_lock);
    return handover != NULL;
}

gboolean
gw_session_is_migrating(GwSession *session)
{
    return session->handover != NULL;
}

void
gw_session_set_handover_func(GwSession *session, GwSessionHandoverFunc handover, gpointer user_data)
{
    session->handover_func = handover;
    session->handover_data = user_data;
}

/* ---- A peer on a transport ----------------------------------------------- */

/* Writes what usbredirhost holds (as far as the transport takes it), then
 * reads on if reading stopped for output that has drained now. */
static void
gw_session_transport_io(GwSession *session, gboolean read)
{
    g_autoptr(GError) error = NULL;

    if (session->close_reason != NULL)
        return;
    if (g_atomic_int_get(&session->write_failed)) {
        gw_session_close_later(session, "write to peer failed");
        return;
    }
    if (read && !gw_session_read_peer(session))
        return;
    if (!session->transport_full && usbredirhost_has_data_to_write(session->host) > 0) {
        if (!gw_usbredir_write_result_to_error(usbredirhost_write_guest_data(session->host),
                                               &error)) {
            gw_session_close_later(session, error->message);
            return;
        }
        if (session->transport.flush != NULL)
            session->transport.flush(session->transport_data);
    }
    if (g_atomic_int_get(&session->write_failed)) {
        gw_session_close_later(session, "write to peer failed");
        return;
    }
    if (session->transport_readable &&
        usbredirhost_has_data_to_write(session->host) <= GW_SESSION_MAX_QUEUED_PACKETS)
        (void)gw_session_read_peer(session);
}

static gboolean
gw_session_source_prepare(GSource *source, gint *timeout)
{
    GwSession *session = ((GwSessionSource *)source)->session;

    *timeout = -1;
    return g_atomic_int_get(&session->write_failed) ||
           (!session->transport_full && usbredirhost_has_data_to_write(session->host) > 0);
}

static gboolean
gw_session_source_check(GSource *source)
{
    gint timeout;
    return gw_session_source_prepare(source, &timeout);
}

static gboolean
gw_session_source_dispatch(GSource *source, GSourceFunc callback, gpointer user_data)
{
    GwSession *session = ((GwSessionSource *)source)->session;

    gw_session_transport_io(session, FALSE);
    return G_SOURCE_CONTINUE;
}

static GSourceFuncs gw_session_source_funcs = {
    .prepare = gw_session_source_prepare,
    .check = gw_session_source_check,
    .dispatch = gw_session_source_dispatch,
};

void
gw_session_transport_ready(GwSession *session, GIOCondition condition)
{
    g_return_if_fail(session->transport.read != NULL);
    if (condition & G_IO_OUT)
        session->transport_full = FALSE;
    if (condition & (G_IO_IN | G_IO_HUP | G_IO_ERR))
        session->transport_readable = TRUE;
    gw_session_transport_io(session, (condition & (G_IO_IN | G_IO_HUP | G_IO_ERR)) != 0);
    /* gone while not read (too much waits for it): as a socket's hang-up */
    if ((condition & (G_IO_HUP | G_IO_ERR)) && session->close_reason == NULL)
        gw_session_close_later(session, "peer hung up");
}

/* gw_session_new() and gw_session_new_with_transport(): @socket or
 * @transport. */
static GwSession *
gw_session_new_full(libusb_context *usb, GSocket *socket, const GwTransport *transport,
                    gpointer transport_data, const gchar *label, const gchar *device_id,
                    const gchar *vm, GwSessionClosedFunc closed, gpointer user_data, GError **error)
{
    g_autoptr(GwSession) session = g_new0(GwSession, 1);

    session->label = g_strdup(label);
    session->device_id = g_strdup(device_id);
    session->vm = g_strdup(vm);
    session->fd = -1;
    if (socket != NULL) {
        session->socket = g_object_ref(socket);
        session->fd = g_socket_get_fd(socket);
        g_socket_set_blocking(socket, FALSE);
        /* from the first byte: usbredirhost writes its hello at once */
        session->stream = gw_handover_stream_new();
    } else {
        session->transport = *transport;
        session->transport_data = transport_data;
    }
    g_mutex_init(&session->io_lock);
    session->context = g_main_context_ref_thread_default();
    session->closed = closed;
    session->user_data = user_data;

    session->host = usbredirhost_open_full(
        usb, NULL, gw_session_log_cb, gw_session_read_cb, gw_session_write_cb, gw_session_flush_cb,
        gw_session_lock_new, gw_session_lock_lock, gw_session_lock_unlock, gw_session_lock_free,
        session, "usbgwd " PACKAGE_VERSION, usbredirparser_warning, 0);
    if (session->host == NULL) {
        g_set_error(error, G_IO_ERROR, G_IO_ERROR_FAILED, "%s: cannot start a usbredir session",
                    label);
        /* the caller keeps the transport */
        session->transport.close = NULL;
        return NULL;
    }

    if (socket != NULL) {
        session->watch = gw_fd_watch_new(session->context, "usbgw-session", session->fd, G_IO_IN,
                                         gw_session_ready, session);
        gw_fd_watch_set_prepare(session->watch, gw_session_prepare);
    } else {
        session->transport_source = g_source_new(&gw_session_source_funcs, sizeof(GwSessionSource));
        ((GwSessionSource *)session->transport_source)->session = session;
        g_source_set_name(session->transport_source, "usbgw-session-transport");
        g_source_attach(session->transport_source, session->context);
    }
    session->hello_timeout = g_timeout_source_new_seconds(GW_SESSION_HELLO_TIMEOUT_S);
    g_source_set_callback(session->hello_timeout, gw_session_hello_timed_out, session, NULL);
    g_source_attach(session->hello_timeout, session->context);
    return g_steal_pointer(&session);
}

GwSession *
gw_session_new(libusb_context *usb, GSocket *socket, const gchar *label, const gchar *device_id,
               const gchar *vm, GwSessionClosedFunc closed, gpointer user_data, GError **error)
{
    g_return_val_if_fail(G_IS_SOCKET(socket), NULL);
    return gw_session_new_full(usb, socket, NULL, NULL, label, device_id, vm, closed, user_data,
                               error);
}

GwSession *
gw_session_new_with_transport(libusb_context *usb, const GwTransport *transport,
                              gpointer transport_data, const gchar *label, const gchar *device_id,
                              const gchar *vm, GwSessionClosedFunc closed, gpointer user_data,
                              GError **error)
{
    g_return_val_if_fail(transport != NULL && transport->read != NULL && transport->write != NULL,
                         NULL);
    return gw_session_new_full(usb, NULL, transport, transport_data, label, device_id, vm, closed,
                               user_data, error);
}

gboolean
gw_session_set_device(GwSession *session, libusb_device_handle *handle, GError **error)
{
    g_autoptr(GError) local = NULL;

    if (!gw_usbredir_status_to_error(usbredirhost_set_device(session->host, handle), &local)) {
        session->has_device = FALSE;
        g_propagate_prefixed_error(error, g_steal_pointer(&local),
                                   "%s: cannot offer the device to the peer: ", session->label);
        return FALSE;
    }
    session->has_device = TRUE;
    return TRUE;
}

void
gw_session_clear_device(GwSession *session)
{
    usbredirhost_set_device(session->host, NULL);
    session->has_device = FALSE;
}

gboolean
gw_session_has_device(GwSession *session)
{
    return session->has_device;
}

const gchar *
gw_session_get_label(GwSession *session)
{
    return session->label;
}

void
gw_session_free(GwSession *session)
{
    if (session == NULL)
        return;
    g_clear_pointer(&session->watch, gw_fd_watch_free);
    if (session->transport_source != NULL) {
        g_source_destroy(session->transport_source);
        g_clear_pointer(&session->transport_source, g_source_unref);
    }
    gw_session_clear_hello_timeout(session);
    if (session->close_source != NULL) {
        g_source_destroy(session->close_source);
        g_source_unref(session->close_source);
    }
    /* Closing releases the device (set_device NULL) and reaps its
     * transfers; writes after this point are dropped by the socket. */
    if (session->host != NULL) {
        struct usbredirhost *host = session->host;
        g_atomic_pointer_set(&session->host, NULL);
        usbredirhost_close(host);
    }
    gw_session_end_handover(session);
    g_clear_pointer(&session->stream, gw_handover_stream_free);
    g_clear_pointer(&session->resend, g_bytes_unref);
    if (session->socket != NULL) {
        g_socket_close(session->socket, NULL);
        g_object_unref(session->socket);
    } else if (session->transport.close != NULL) {
        session->transport.close(session->transport_data);
    }
    g_main_context_unref(session->context);
    g_mutex_clear(&session->io_lock);
    g_free(session->close_reason);
    g_free(session->label);
    g_free(session->device_id);
    g_free(session->vm);
    g_free(session);
}
