/* usbredirhost sessions over non-blocking stream sockets. */
#include "gw-session.h"

#include <errno.h>
#include <sys/socket.h>
#include <usbredirhost.h>

#include "gw-usb.h"

typedef struct {
    GSource source;
    GwSession *session;
    gpointer tag;
    GIOCondition events; /* what the fd is polled for now */
} GwSessionSource;

struct _GwSession {
    gchar *label;              /* owned */
    GSocket *socket;           /* owned ref */
    int fd;                    /* borrowed from socket */
    struct usbredirhost *host; /* owned */
    GMainContext *context;     /* owned ref */
    GSource *io_source;        /* owned */
    GSource *close_source;     /* owned, nullable: the pending close notification */
    GwSessionClosedFunc closed;
    gpointer user_data;
    gboolean has_device;
    gint write_failed;   /* atomic: set by the writer on any thread */
    gchar *close_reason; /* owned, nullable */
    gsize bytes_in;      /* atomic */
    gsize bytes_out;     /* atomic */
};

static void
gw_session_log_cb(void *priv, int level, const char *msg)
{
    GwSession *session = priv;
    switch (level) {
    case usbredirparser_error:
        g_warning("%s: usbredir: %s", session->label, msg);
        break;
    case usbredirparser_warning:
        g_message("%s: usbredir: %s", session->label, msg);
        break;
    case usbredirparser_info:
        g_info("%s: usbredir: %s", session->label, msg);
        break;
    default:
        g_debug("%s: usbredir: %s", session->label, msg);
        break;
    }
}

static int
gw_session_read_cb(void *priv, uint8_t *data, int count)
{
    GwSession *session = priv;
    ssize_t n = recv(session->fd, data, (size_t)count, MSG_DONTWAIT);

    if (n > 0) {
        g_atomic_pointer_add(&session->bytes_in, n);
        return (int)n;
    }
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR))
        return 0;
    /* 0: the peer closed; <0: a socket error. usbredirhost stops reading
     * on a negative return. */
    return -1;
}

static int
gw_session_write_cb(void *priv, uint8_t *data, int count)
{
    GwSession *session = priv;
    ssize_t n = send(session->fd, data, (size_t)count, MSG_DONTWAIT | MSG_NOSIGNAL);

    if (n >= 0) {
        g_atomic_pointer_add(&session->bytes_out, n);
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

/* Stops I/O and tells the owner from a fresh main-loop iteration. */
static void
gw_session_close_later(GwSession *session, const gchar *reason)
{
    if (session->close_reason != NULL)
        return;
    g_info("%s: closing: %s", session->label, reason);
    session->close_reason = g_strdup(reason);
    g_source_destroy(session->io_source);
    session->close_source = g_idle_source_new();
    g_source_set_callback(session->close_source, gw_session_notify_closed, session, NULL);
    g_source_attach(session->close_source, session->context);
}

static gboolean
gw_session_source_prepare(GSource *source, gint *timeout)
{
    GwSessionSource *s = (GwSessionSource *)source;
    GwSession *session = s->session;
    GIOCondition events = G_IO_IN | G_IO_HUP | G_IO_ERR;

    *timeout = -1;
    if (g_atomic_int_get(&session->write_failed))
        return TRUE;
    if (usbredirhost_has_data_to_write(session->host) > 0)
        events |= G_IO_OUT;
    /* g_source_modify_unix_fd() wakes the context: calling it on every
     * iteration would keep the main loop spinning */
    if (events != s->events) {
        g_source_modify_unix_fd(source, s->tag, events);
        s->events = events;
    }
    return FALSE;
}

static gboolean
gw_session_source_dispatch(GSource *source, GSourceFunc callback, gpointer user_data)
{
    GwSessionSource *s = (GwSessionSource *)source;
    GwSession *session = s->session;
    GIOCondition revents = g_source_query_unix_fd(source, s->tag);

    if (g_atomic_int_get(&session->write_failed)) {
        gw_session_close_later(session, "write to peer failed");
        return G_SOURCE_CONTINUE;
    }
    if (revents & G_IO_OUT && usbredirhost_write_guest_data(session->host) < 0) {
        gw_session_close_later(session, "write to peer failed");
        return G_SOURCE_CONTINUE;
    }
    if (revents & (G_IO_IN | G_IO_HUP | G_IO_ERR)) {
        int rc = usbredirhost_read_guest_data(session->host);
        switch (rc) {
        case 0:
            break;
        case usbredirhost_read_io_error:
            gw_session_close_later(session, "peer closed the connection");
            return G_SOURCE_CONTINUE;
        case usbredirhost_read_parse_error:
            gw_session_close_later(session, "peer sent malformed usbredir data");
            return G_SOURCE_CONTINUE;
        case usbredirhost_read_device_rejected:
            g_message("%s: peer rejected the device (its filter refused it)", session->label);
            gw_session_clear_device(session);
            break;
        case usbredirhost_read_device_lost:
            g_message("%s: device lost", session->label);
            session->has_device = FALSE;
            break;
        default:
            gw_session_close_later(session, "unexpected usbredirhost error");
            return G_SOURCE_CONTINUE;
        }
        if (revents & (G_IO_HUP | G_IO_ERR) && !(revents & G_IO_IN)) {
            gw_session_close_later(session, "peer hung up");
            return G_SOURCE_CONTINUE;
        }
    }
    return G_SOURCE_CONTINUE;
}

static GSourceFuncs gw_session_source_funcs = {
    .prepare = gw_session_source_prepare,
    .dispatch = gw_session_source_dispatch,
};

GwSession *
gw_session_new(libusb_context *usb, GSocket *socket, const gchar *label, GwSessionClosedFunc closed,
               gpointer user_data, GError **error)
{
    g_autoptr(GwSession) session = g_new0(GwSession, 1);
    GwSessionSource *source;

    session->label = g_strdup(label);
    session->socket = g_object_ref(socket);
    session->fd = g_socket_get_fd(socket);
    session->context = g_main_context_ref_thread_default();
    session->closed = closed;
    session->user_data = user_data;
    g_socket_set_blocking(socket, FALSE);

    session->host = usbredirhost_open_full(
        usb, NULL, gw_session_log_cb, gw_session_read_cb, gw_session_write_cb, gw_session_flush_cb,
        gw_session_lock_new, gw_session_lock_lock, gw_session_lock_unlock, gw_session_lock_free,
        session, "usbgwd " PACKAGE_VERSION, usbredirparser_warning, 0);
    if (session->host == NULL) {
        g_set_error(error, G_IO_ERROR, G_IO_ERROR_FAILED, "%s: cannot start a usbredir session",
                    label);
        return NULL;
    }

    session->io_source = g_source_new(&gw_session_source_funcs, sizeof(GwSessionSource));
    source = (GwSessionSource *)session->io_source;
    source->session = session;
    source->events = G_IO_IN;
    source->tag = g_source_add_unix_fd(session->io_source, session->fd, source->events);
    g_source_set_name(session->io_source, "usbgw-session");
    g_source_attach(session->io_source, session->context);
    return g_steal_pointer(&session);
}

gboolean
gw_session_set_device(GwSession *session, libusb_device_handle *handle, GError **error)
{
    int rc = usbredirhost_set_device(session->host, handle);
    if (rc != 0) {
        session->has_device = FALSE;
        g_set_error(error, GW_USB_ERROR, GW_USB_ERROR_IO,
                    "%s: cannot offer the device to the peer (usbredirhost error %d)",
                    session->label, rc);
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

guint64
gw_session_get_bytes_in(GwSession *session)
{
    return (guint64)g_atomic_pointer_get(&session->bytes_in);
}

guint64
gw_session_get_bytes_out(GwSession *session)
{
    return (guint64)g_atomic_pointer_get(&session->bytes_out);
}

void
gw_session_free(GwSession *session)
{
    if (session == NULL)
        return;
    if (session->io_source != NULL) {
        g_source_destroy(session->io_source);
        g_source_unref(session->io_source);
    }
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
    g_socket_close(session->socket, NULL);
    g_object_unref(session->socket);
    g_main_context_unref(session->context);
    g_free(session->close_reason);
    g_free(session->label);
    g_free(session);
}
