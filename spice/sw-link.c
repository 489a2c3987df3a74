/* sw-link: the worker's end of the socketpair to usbgwd. */
#include "sw-link.h"

#include <errno.h>
#include <fcntl.h>
#include <sys/socket.h>
#include <unistd.h>

#include "gw-fd-watch.h"

/* Bytes taken from the socket per read(). */
#define SW_LINK_READ_CHUNK (64 * 1024)

struct SwLink {
    int fd;           /* owned */
    GwFdWatch *watch; /* owned, nullable: after close */
    GByteArray *in;   /* owned: received, not yet dispatched */
    GByteArray *out;  /* owned: queued for usbgwd */
    guint idle_id;    /* pending sw_link_idle(), 0 if none */
    GError *error;    /* owned, nullable: why the link failed */
    const SwLinkCallbacks *callbacks;
    gpointer user_data;
    gboolean reading;
    gboolean eof;
    gboolean closed;         /* callbacks->closed was called */
    gboolean notify_drained; /* call callbacks->drained when out is empty */
};

static void sw_link_schedule(SwLink *link);

static void
sw_link_update_watch(SwLink *link)
{
    GIOCondition condition = 0;

    if (link->watch == NULL)
        return;
    if (link->reading && !link->eof)
        condition |= G_IO_IN | G_IO_HUP | G_IO_ERR;
    if (link->out->len > 0)
        condition |= G_IO_OUT | G_IO_ERR;
    gw_fd_watch_set_condition(link->watch, condition);
}

static void
sw_link_fail(SwLink *link, GError *error)
{
    if (link->error == NULL)
        link->error = error;
    else
        g_error_free(error);
    g_clear_pointer(&link->watch, gw_fd_watch_free);
    sw_link_schedule(link);
}

/* Dispatches complete frames while reading is on. Returns FALSE once the
 * link has failed. */
static gboolean
sw_link_dispatch_frames(SwLink *link)
{
    gsize offset = 0;

    while (link->reading && link->error == NULL) {
        SwFrameHeader header;
        GError *error = NULL;

        if (link->in->len - offset < SW_FRAME_HEADER_SIZE)
            break;
        if (!sw_frame_header_unpack(link->in->data + offset, &header, &error)) {
            g_prefix_error(&error, "from usbgwd: ");
            sw_link_fail(link, error);
            break;
        }
        if (link->in->len - offset < SW_FRAME_HEADER_SIZE + header.length)
            break;
        if (!link->callbacks->frame(&header, link->in->data + offset + SW_FRAME_HEADER_SIZE,
                                    link->user_data, &error)) {
            sw_link_fail(link, error);
            break;
        }
        offset += SW_FRAME_HEADER_SIZE + header.length;
    }
    g_byte_array_remove_range(link->in, 0, offset);
    if (offset > 0 && link->callbacks->frames_done != NULL)
        link->callbacks->frames_done(link->user_data);
    return link->error == NULL;
}

/* usbgwd closed its end: nothing more will come and nothing can be sent. */
static void
sw_link_hang_up(SwLink *link)
{
    link->eof = TRUE;
    g_clear_pointer(&link->watch, gw_fd_watch_free);
    sw_link_schedule(link);
}

static void
sw_link_flush(SwLink *link)
{
    while (link->out->len > 0 && link->error == NULL) {
        ssize_t n = send(link->fd, link->out->data, link->out->len, MSG_NOSIGNAL | MSG_DONTWAIT);

        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            break;
        if (n < 0 && (errno == EPIPE || errno == ECONNRESET)) {
            /* usbgwd closed its end: what is queued has nobody to go to. */
            g_byte_array_set_size(link->out, 0);
            sw_link_hang_up(link);
            return;
        }
        if (n < 0) {
            int saved = errno;

            sw_link_fail(link, g_error_new(G_IO_ERROR, g_io_error_from_errno(saved),
                                           "writing to usbgwd: %s", g_strerror(saved)));
            return;
        }
        g_byte_array_remove_range(link->out, 0, (guint)n);
        if (link->out->len == 0 && link->notify_drained)
            sw_link_schedule(link);
    }
    sw_link_update_watch(link);
}

static void
sw_link_read(SwLink *link)
{
    guint8 buffer[SW_LINK_READ_CHUNK];
    ssize_t n;

    do {
        n = recv(link->fd, buffer, sizeof(buffer), MSG_DONTWAIT);
    } while (n < 0 && errno == EINTR);
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
        return;
    /* ECONNRESET: usbgwd closed its end with our frames still unread. All
     * it sent was read before this, so it is an end like any other. */
    if (n == 0 || (n < 0 && errno == ECONNRESET)) {
        sw_link_hang_up(link);
        return;
    }
    if (n < 0) {
        int saved = errno;

        sw_link_fail(link, g_error_new(G_IO_ERROR, g_io_error_from_errno(saved),
                                       "reading from usbgwd: %s", g_strerror(saved)));
        return;
    }
    g_byte_array_append(link->in, buffer, (guint)n);
    sw_link_dispatch_frames(link);
}

static void
sw_link_ready(int fd, GIOCondition revents, gpointer user_data)
{
    SwLink *link = user_data;

    if (revents & G_IO_OUT)
        sw_link_flush(link);
    if (link->error == NULL && link->reading && (revents & (G_IO_IN | G_IO_HUP | G_IO_ERR)))
        sw_link_read(link);
}

/* Deferred work: frames left over after a pause, "drained", EOF and
 * failure reports. */
static gboolean
sw_link_idle(gpointer user_data)
{
    SwLink *link = user_data;

    link->idle_id = 0;
    if (link->closed)
        return G_SOURCE_REMOVE;
    if (link->error == NULL && link->reading)
        sw_link_dispatch_frames(link);
    if (link->error != NULL || (link->eof && link->reading)) {
        if (link->error == NULL && link->in->len > 0)
            link->error = g_error_new(G_IO_ERROR, G_IO_ERROR_PARTIAL_INPUT,
                                      "usbgwd closed the socketpair inside a frame "
                                      "(%u bytes left)",
                                      link->in->len);
        link->closed = TRUE;
        g_clear_pointer(&link->watch, gw_fd_watch_free);
        link->callbacks->closed(link->error, link->user_data);
        return G_SOURCE_REMOVE;
    }
    if (link->out->len == 0 && link->notify_drained) {
        link->notify_drained = FALSE;
        link->callbacks->drained(link->user_data);
    }
    return G_SOURCE_REMOVE;
}

static void
sw_link_schedule(SwLink *link)
{
    if (link->idle_id == 0)
        link->idle_id = g_idle_add(sw_link_idle, link);
}

SwLink *
sw_link_new(int fd, const SwLinkCallbacks *callbacks, gpointer user_data)
{
    SwLink *link = g_new0(SwLink, 1);
    int flags = fcntl(fd, F_GETFL);

    if (flags >= 0)
        fcntl(fd, F_SETFL, flags | O_NONBLOCK);
    link->fd = fd;
    link->in = g_byte_array_new();
    link->out = g_byte_array_new();
    link->callbacks = callbacks;
    link->user_data = user_data;
    link->reading = TRUE;
    link->watch = gw_fd_watch_new(NULL, "usbgw-spice-worker link", fd, 0, sw_link_ready, link);
    sw_link_update_watch(link);
    return link;
}

void
sw_link_free(SwLink *link)
{
    if (link == NULL)
        return;
    g_clear_handle_id(&link->idle_id, g_source_remove);
    g_clear_pointer(&link->watch, gw_fd_watch_free);
    g_byte_array_unref(link->in);
    g_byte_array_unref(link->out);
    g_clear_error(&link->error);
    close(link->fd);
    g_free(link);
}

void
sw_link_send(SwLink *link, SwFrameType type, guint channel, const guint8 *payload, gsize length)
{
    guint8 header[SW_FRAME_HEADER_SIZE];

    g_return_if_fail(length <= SW_FRAME_MAX_PAYLOAD);
    if (link->error != NULL || link->closed)
        return;
    sw_frame_header_pack(header, type, channel, (guint32)length);
    g_byte_array_append(link->out, header, sizeof(header));
    if (length > 0)
        g_byte_array_append(link->out, payload, (guint)length);
    /* Try at once: most frames leave in this call. */
    sw_link_flush(link);
}

gsize
sw_link_get_queued(SwLink *link)
{
    return link->out->len;
}

void
sw_link_set_reading(SwLink *link, gboolean reading)
{
    if (link->reading == reading)
        return;
    link->reading = reading;
    sw_link_update_watch(link);
    /* Frames already received wait for the next turn of the loop. */
    if (reading)
        sw_link_schedule(link);
}

void
sw_link_notify_when_drained(SwLink *link)
{
    link->notify_drained = TRUE;
    if (link->out->len == 0)
        sw_link_schedule(link);
}
