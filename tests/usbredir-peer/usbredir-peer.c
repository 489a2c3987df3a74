/* A usbredir peer for the tests and benches; see usbredir-peer.h. */
#include "usbredir-peer.h"

#include <errno.h>
#include <poll.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>
#include <usbredirfilter.h>

struct _UsbredirPeer {
    struct usbredirparser *parser; /* owned */
    int fd;                        /* owned; -1 for a buffered peer */
    GByteArray *in;                /* owned, nullable: a buffered peer's bytes not parsed yet */
    UsbredirPeerSendFunc send;     /* nullable: a buffered peer's output */
    UsbredirPeerEvents events;
    gpointer user_data;
    gchar *label; /* owned */
    int log_level;
    UsbredirPeerRole role;
    gboolean hello;
    gboolean connected;       /* device_connect came, no device_disconnect since */
    gboolean interfaces_seen; /* interface_info came since the last device_disconnect */
    gboolean disconnected;    /* device_disconnect came, no device_connect since */
    gboolean closed;
    gboolean control_ready; /* a control packet came since usbredir_peer_control() sent */
    UsbredirPeerControl control;
    guint64 next_id;
    gint stop; /* atomic: usbredir_peer_thread_stop() asks the serving thread to end */
};

/* ---- usbredirparser's I/O */

static void
usbredir_peer_log(void *priv, int level, const char *msg)
{
    UsbredirPeer *peer = priv;

    if (level <= peer->log_level)
        g_printerr("%s: usbredir: %s\n", peer->label, msg);
}

static int
usbredir_peer_read(void *priv, uint8_t *data, int count)
{
    UsbredirPeer *peer = priv;
    ssize_t n;

    if (peer->in != NULL) {
        guint taken = MIN((guint)count, peer->in->len);

        memcpy(data, peer->in->data, taken);
        g_byte_array_remove_range(peer->in, 0, taken);
        return (int)taken;
    }
    n = recv(peer->fd, data, (size_t)count, MSG_DONTWAIT);
    if (n > 0)
        return (int)n;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR))
        return 0;
    peer->closed = TRUE;
    return -1;
}

static int
usbredir_peer_write(void *priv, uint8_t *data, int count)
{
    UsbredirPeer *peer = priv;
    ssize_t n;

    if (peer->send != NULL) {
        peer->send(peer, data, (gsize)count, peer->user_data);
        return count;
    }
    n = send(peer->fd, data, (size_t)count, MSG_DONTWAIT | MSG_NOSIGNAL);
    if (n >= 0)
        return (int)n;
    if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)
        return 0;
    peer->closed = TRUE;
    return -1;
}

/* ---- the packets the peer follows */

static void
usbredir_peer_on_hello(void *priv, struct usb_redir_hello_header *hello)
{
    UsbredirPeer *peer = priv;

    peer->hello = TRUE;
    if (peer->events.hello != NULL)
        peer->events.hello(peer, hello, peer->user_data);
}

static void
usbredir_peer_on_device_connect(void *priv, struct usb_redir_device_connect_header *device_connect)
{
    UsbredirPeer *peer = priv;

    peer->connected = TRUE;
    peer->disconnected = FALSE;
    if (peer->events.device_connect != NULL)
        peer->events.device_connect(peer, device_connect, peer->user_data);
}

static void
usbredir_peer_on_device_disconnect(void *priv)
{
    UsbredirPeer *peer = priv;

    peer->connected = FALSE;
    peer->interfaces_seen = FALSE;
    peer->disconnected = TRUE;
    if (peer->events.device_disconnect != NULL)
        peer->events.device_disconnect(peer, peer->user_data);
}

static void
usbredir_peer_on_interface_info(void *priv, struct usb_redir_interface_info_header *interface_info)
{
    UsbredirPeer *peer = priv;

    peer->interfaces_seen = TRUE;
    if (peer->events.interface_info != NULL)
        peer->events.interface_info(peer, interface_info, peer->user_data);
}

static void
usbredir_peer_on_ep_info(void *priv, struct usb_redir_ep_info_header *ep_info)
{
    UsbredirPeer *peer = priv;

    if (peer->events.ep_info != NULL)
        peer->events.ep_info(peer, ep_info, peer->user_data);
}

static void
usbredir_peer_on_filter_reject(void *priv)
{
    UsbredirPeer *peer = priv;

    if (peer->events.filter_reject != NULL)
        peer->events.filter_reject(peer, peer->user_data);
}

static void
usbredir_peer_on_device_disconnect_ack(void *priv)
{
    UsbredirPeer *peer = priv;

    if (peer->events.device_disconnect_ack != NULL)
        peer->events.device_disconnect_ack(peer, peer->user_data);
}

static void
usbredir_peer_on_control_packet(void *priv, uint64_t id, struct usb_redir_control_packet_header *h,
                                uint8_t *data, int data_len)
{
    UsbredirPeer *peer = priv;

    peer->control.id = id;
    peer->control.header = *h;
    peer->control.length = CLAMP(data_len, 0, USBREDIR_PEER_CONTROL_DATA_MAX);
    if (peer->control.length > 0)
        memcpy(peer->control.data, data, (size_t)peer->control.length);
    peer->control_ready = TRUE;
    usbredirparser_free_packet_data(peer->parser, data);
    if (peer->events.control_packet != NULL)
        peer->events.control_packet(peer, &peer->control, peer->user_data);
}

static void
usbredir_peer_on_interrupt_packet(void *priv, uint64_t id,
                                  struct usb_redir_interrupt_packet_header *h, uint8_t *data,
                                  int data_len)
{
    UsbredirPeer *peer = priv;

    if (peer->events.interrupt_packet != NULL)
        peer->events.interrupt_packet(peer, id, h, data, data_len, peer->user_data);
    usbredirparser_free_packet_data(peer->parser, data);
}

/* ---- the packets the peer drops: usbredirparser calls every callback
 * unchecked, so each needs a body */

static void
usbredir_peer_drop_void(void *priv)
{
}

static void
usbredir_peer_drop_id(void *priv, uint64_t id)
{
}

static void
usbredir_peer_drop_filter(void *priv, struct usbredirfilter_rule *rules, int count)
{
    usbredirfilter_free(rules);
}

#define USBREDIR_PEER_DROP_ID(name, header)                                                        \
    static void usbredir_peer_drop_##name(void *priv, uint64_t id, struct header *h)               \
    {                                                                                              \
    }
USBREDIR_PEER_DROP_ID(set_configuration, usb_redir_set_configuration_header)
USBREDIR_PEER_DROP_ID(configuration_status, usb_redir_configuration_status_header)
USBREDIR_PEER_DROP_ID(set_alt_setting, usb_redir_set_alt_setting_header)
USBREDIR_PEER_DROP_ID(get_alt_setting, usb_redir_get_alt_setting_header)
USBREDIR_PEER_DROP_ID(alt_setting_status, usb_redir_alt_setting_status_header)
USBREDIR_PEER_DROP_ID(start_iso_stream, usb_redir_start_iso_stream_header)
USBREDIR_PEER_DROP_ID(stop_iso_stream, usb_redir_stop_iso_stream_header)
USBREDIR_PEER_DROP_ID(iso_stream_status, usb_redir_iso_stream_status_header)
USBREDIR_PEER_DROP_ID(start_interrupt_receiving, usb_redir_start_interrupt_receiving_header)
USBREDIR_PEER_DROP_ID(stop_interrupt_receiving, usb_redir_stop_interrupt_receiving_header)
USBREDIR_PEER_DROP_ID(interrupt_receiving_status, usb_redir_interrupt_receiving_status_header)
USBREDIR_PEER_DROP_ID(alloc_bulk_streams, usb_redir_alloc_bulk_streams_header)
USBREDIR_PEER_DROP_ID(free_bulk_streams, usb_redir_free_bulk_streams_header)
USBREDIR_PEER_DROP_ID(bulk_streams_status, usb_redir_bulk_streams_status_header)
USBREDIR_PEER_DROP_ID(start_bulk_receiving, usb_redir_start_bulk_receiving_header)
USBREDIR_PEER_DROP_ID(stop_bulk_receiving, usb_redir_stop_bulk_receiving_header)
USBREDIR_PEER_DROP_ID(bulk_receiving_status, usb_redir_bulk_receiving_status_header)

#define USBREDIR_PEER_DROP_DATA(name, header)                                                      \
    static void usbredir_peer_drop_##name(void *priv, uint64_t id, struct header *h,               \
                                          uint8_t *data, int data_len)                             \
    {                                                                                              \
        UsbredirPeer *peer = priv;                                                                 \
        usbredirparser_free_packet_data(peer->parser, data);                                       \
    }
USBREDIR_PEER_DROP_DATA(bulk_packet, usb_redir_bulk_packet_header)
USBREDIR_PEER_DROP_DATA(iso_packet, usb_redir_iso_packet_header)
USBREDIR_PEER_DROP_DATA(buffered_bulk_packet, usb_redir_buffered_bulk_packet_header)

/* ---- life */

static UsbredirPeer *
usbredir_peer_create(int fd, const UsbredirPeerConfig *config, UsbredirPeerSendFunc send,
                     const UsbredirPeerEvents *events, gpointer user_data)
{
    UsbredirPeer *peer = g_new0(UsbredirPeer, 1);
    uint32_t caps[USB_REDIR_CAPS_SIZE] = {0};
    struct usbredirparser *p = usbredirparser_create();

    peer->parser = p;
    peer->fd = fd;
    peer->in = send != NULL ? g_byte_array_new() : NULL;
    peer->send = send;
    if (events != NULL)
        peer->events = *events;
    peer->user_data = user_data;
    peer->label = g_strdup(config->label != NULL ? config->label : config->version);
    peer->log_level = config->log_level;
    peer->role = config->role;

    p->priv = peer;
    p->log_func = usbredir_peer_log;
    p->read_func = usbredir_peer_read;
    p->write_func = usbredir_peer_write;
    p->hello_func = usbredir_peer_on_hello;
    p->device_connect_func = usbredir_peer_on_device_connect;
    p->device_disconnect_func = usbredir_peer_on_device_disconnect;
    p->interface_info_func = usbredir_peer_on_interface_info;
    p->ep_info_func = usbredir_peer_on_ep_info;
    p->reset_func = usbredir_peer_drop_void;
    p->set_configuration_func = usbredir_peer_drop_set_configuration;
    p->get_configuration_func = usbredir_peer_drop_id;
    p->configuration_status_func = usbredir_peer_drop_configuration_status;
    p->set_alt_setting_func = usbredir_peer_drop_set_alt_setting;
    p->get_alt_setting_func = usbredir_peer_drop_get_alt_setting;
    p->alt_setting_status_func = usbredir_peer_drop_alt_setting_status;
    p->start_iso_stream_func = usbredir_peer_drop_start_iso_stream;
    p->stop_iso_stream_func = usbredir_peer_drop_stop_iso_stream;
    p->iso_stream_status_func = usbredir_peer_drop_iso_stream_status;
    p->start_interrupt_receiving_func = usbredir_peer_drop_start_interrupt_receiving;
    p->stop_interrupt_receiving_func = usbredir_peer_drop_stop_interrupt_receiving;
    p->interrupt_receiving_status_func = usbredir_peer_drop_interrupt_receiving_status;
    p->alloc_bulk_streams_func = usbredir_peer_drop_alloc_bulk_streams;
    p->free_bulk_streams_func = usbredir_peer_drop_free_bulk_streams;
    p->bulk_streams_status_func = usbredir_peer_drop_bulk_streams_status;
    p->cancel_data_packet_func = usbredir_peer_drop_id;
    p->filter_reject_func = usbredir_peer_on_filter_reject;
    p->filter_filter_func = usbredir_peer_drop_filter;
    p->device_disconnect_ack_func = usbredir_peer_on_device_disconnect_ack;
    p->start_bulk_receiving_func = usbredir_peer_drop_start_bulk_receiving;
    p->stop_bulk_receiving_func = usbredir_peer_drop_stop_bulk_receiving;
    p->bulk_receiving_status_func = usbredir_peer_drop_bulk_receiving_status;
    p->control_packet_func = usbredir_peer_on_control_packet;
    p->bulk_packet_func = usbredir_peer_drop_bulk_packet;
    p->iso_packet_func = usbredir_peer_drop_iso_packet;
    p->interrupt_packet_func = usbredir_peer_on_interrupt_packet;
    p->buffered_bulk_packet_func = usbredir_peer_drop_buffered_bulk_packet;

    usbredirparser_caps_set_cap(caps, usb_redir_cap_connect_device_version);
    usbredirparser_caps_set_cap(caps, usb_redir_cap_ep_info_max_packet_size);
    usbredirparser_caps_set_cap(caps, usb_redir_cap_64bits_ids);
    usbredirparser_caps_set_cap(caps, usb_redir_cap_32bits_bulk_length);
    if (config->caps & USBREDIR_PEER_CAP_FILTER)
        usbredirparser_caps_set_cap(caps, usb_redir_cap_filter);
    if (config->caps & USBREDIR_PEER_CAP_DEVICE_DISCONNECT_ACK)
        usbredirparser_caps_set_cap(caps, usb_redir_cap_device_disconnect_ack);
    if (config->caps & USBREDIR_PEER_CAP_BULK_RECEIVING)
        usbredirparser_caps_set_cap(caps, usb_redir_cap_bulk_receiving);
    usbredirparser_init(p, config->version, caps, USB_REDIR_CAPS_SIZE,
                        config->role == USBREDIR_PEER_HOST ? usbredirparser_fl_usb_host : 0);
    usbredir_peer_flush(peer);
    return peer;
}

UsbredirPeer *
usbredir_peer_new(int fd, const UsbredirPeerConfig *config, const UsbredirPeerEvents *events,
                  gpointer user_data)
{
    g_return_val_if_fail(fd >= 0, NULL);
    g_return_val_if_fail(config != NULL && config->version != NULL, NULL);
    return usbredir_peer_create(fd, config, NULL, events, user_data);
}

UsbredirPeer *
usbredir_peer_new_buffered(const UsbredirPeerConfig *config, UsbredirPeerSendFunc send,
                           const UsbredirPeerEvents *events, gpointer user_data)
{
    g_return_val_if_fail(config != NULL && config->version != NULL, NULL);
    g_return_val_if_fail(send != NULL, NULL);
    return usbredir_peer_create(-1, config, send, events, user_data);
}

void
usbredir_peer_free(UsbredirPeer *peer)
{
    if (peer == NULL)
        return;
    usbredirparser_destroy(peer->parser);
    if (peer->fd >= 0)
        close(peer->fd);
    if (peer->in != NULL)
        g_byte_array_unref(peer->in);
    g_free(peer->label);
    g_free(peer);
}

/* ---- what it has seen */

struct usbredirparser *
usbredir_peer_get_parser(UsbredirPeer *peer)
{
    return peer->parser;
}

int
usbredir_peer_get_fd(UsbredirPeer *peer)
{
    return peer->fd;
}

const gchar *
usbredir_peer_get_label(UsbredirPeer *peer)
{
    return peer->label;
}

gpointer
usbredir_peer_get_user_data(UsbredirPeer *peer)
{
    return peer->user_data;
}

const UsbredirPeerControl *
usbredir_peer_get_control(UsbredirPeer *peer)
{
    return &peer->control;
}

gboolean
usbredir_peer_has_hello(UsbredirPeer *peer)
{
    return peer->hello;
}

gboolean
usbredir_peer_is_connected(UsbredirPeer *peer)
{
    return peer->connected && peer->interfaces_seen;
}

gboolean
usbredir_peer_is_disconnected(UsbredirPeer *peer)
{
    return peer->disconnected;
}

gboolean
usbredir_peer_is_closed(UsbredirPeer *peer)
{
    return peer->closed;
}

void
usbredir_peer_announce_device(UsbredirPeer *peer, guint16 vendor, guint16 product,
                              guint8 device_class)
{
    struct usb_redir_interface_info_header info = {.interface_count = 1};
    struct usb_redir_ep_info_header ep = {0};
    struct usb_redir_device_connect_header connect = {
        .speed = usb_redir_speed_full,
        .device_class = device_class,
        .vendor_id = vendor,
        .product_id = product,
        .device_version_bcd = 0x0100,
    };

    g_return_if_fail(peer->role == USBREDIR_PEER_HOST);

    info.interface_class[0] = device_class;
    memset(ep.type, usb_redir_type_invalid, sizeof(ep.type));
    ep.type[0] = ep.type[16] = usb_redir_type_control;
    ep.max_packet_size[0] = ep.max_packet_size[16] = 64;
    usbredirparser_send_interface_info(peer->parser, &info);
    usbredirparser_send_ep_info(peer->parser, &ep);
    usbredirparser_send_device_connect(peer->parser, &connect);
}

/* ---- a peer on a socket */

gboolean
usbredir_peer_flush(UsbredirPeer *peer)
{
    /* usbredirparser_do_write() writes until the socket would block */
    if (usbredirparser_has_data_to_write(peer->parser))
        usbredirparser_do_write(peer->parser);
    return !peer->closed;
}

gboolean
usbredir_peer_io(UsbredirPeer *peer)
{
    g_return_val_if_fail(peer->fd >= 0, FALSE);

    usbredir_peer_flush(peer);
    if (usbredirparser_do_read(peer->parser) == usbredirparser_read_io_error)
        peer->closed = TRUE;
    return usbredir_peer_flush(peer);
}

/* Does what poll() reported for @peer. FALSE if a packet did not parse. */
static gboolean
usbredir_peer_handle(UsbredirPeer *peer, short revents, GError **error)
{
    if (revents & POLLOUT)
        usbredir_peer_flush(peer);
    if (revents & (POLLIN | POLLHUP | POLLERR)) {
        switch (usbredirparser_do_read(peer->parser)) {
        case usbredirparser_read_io_error:
            peer->closed = TRUE;
            break;
        case usbredirparser_read_parse_error:
            g_set_error(error, G_IO_ERROR, G_IO_ERROR_INVALID_DATA,
                        "%s: a packet from the other end did not parse", peer->label);
            return FALSE;
        default:
            break;
        }
    }
    usbredir_peer_flush(peer);
    return TRUE;
}

gboolean
usbredir_peer_serve_all(UsbredirPeer *const *peers, guint n_peers, UsbredirPeerDoneFunc done,
                        gint64 deadline, GError **error)
{
    g_autofree struct pollfd *pfds = g_new0(struct pollfd, MAX(n_peers, 1));

    for (guint i = 0; i < n_peers; i++)
        g_return_val_if_fail(peers[i]->fd >= 0, FALSE);

    for (;;) {
        UsbredirPeer *waiting = NULL; /* the first peer not done */
        gint64 left;

        for (guint i = 0; i < n_peers && waiting == NULL; i++) {
            if (done == NULL || !done(peers[i]))
                waiting = peers[i];
        }
        if (waiting == NULL)
            return TRUE;
        for (guint i = 0; i < n_peers; i++) {
            if (peers[i]->closed) {
                g_set_error(error, G_IO_ERROR, G_IO_ERROR_CONNECTION_CLOSED,
                            "%s: the connection closed", peers[i]->label);
                return FALSE;
            }
        }
        left = deadline - g_get_monotonic_time();
        if (left <= 0) {
            if (done == NULL)
                return TRUE;
            g_set_error(error, G_IO_ERROR, G_IO_ERROR_TIMED_OUT, "%s: timed out", waiting->label);
            return FALSE;
        }
        for (guint i = 0; i < n_peers; i++) {
            pfds[i].fd = peers[i]->fd;
            pfds[i].events = POLLIN;
            if (usbredirparser_has_data_to_write(peers[i]->parser))
                pfds[i].events |= POLLOUT;
            pfds[i].revents = 0;
        }
        if (poll(pfds, n_peers, (int)MIN(left / 1000 + 1, USBREDIR_PEER_POLL_MS)) < 0) {
            if (errno == EINTR)
                continue;
            g_set_error(error, G_IO_ERROR, g_io_error_from_errno(errno), "poll: %s",
                        g_strerror(errno));
            return FALSE;
        }
        for (guint i = 0; i < n_peers; i++) {
            if (!usbredir_peer_handle(peers[i], pfds[i].revents, error))
                return FALSE;
        }
    }
}

gboolean
usbredir_peer_run_until(UsbredirPeer *peer, UsbredirPeerDoneFunc done, gint64 deadline,
                        GError **error)
{
    return usbredir_peer_serve_all(&peer, 1, done, deadline, error);
}

static gboolean
usbredir_peer_is_answered(UsbredirPeer *peer)
{
    return peer->control_ready || peer->disconnected;
}

gboolean
usbredir_peer_control(UsbredirPeer *peer, guint8 requesttype, guint8 request, const guint8 *data,
                      guint16 length, gint64 deadline, GError **error)
{
    struct usb_redir_control_packet_header h = {
        .endpoint = requesttype & 0x80,
        .request = request,
        .requesttype = requesttype,
        .length = length,
    };
    gboolean in = (requesttype & 0x80) != 0;
    guint64 id;

    g_return_val_if_fail(peer->role == USBREDIR_PEER_GUEST, FALSE);
    g_return_val_if_fail(in || length == 0 || data != NULL, FALSE);

    id = peer->next_id++;
    peer->control_ready = FALSE;
    usbredirparser_send_control_packet(peer->parser, id, &h, in ? NULL : (uint8_t *)data,
                                       in ? 0 : length);
    usbredir_peer_flush(peer);
    if (!usbredir_peer_run_until(peer, usbredir_peer_is_answered, deadline, error)) {
        g_prefix_error(error, "control request 0x%02x: ", request);
        return FALSE;
    }
    if (!peer->control_ready) {
        g_set_error(error, G_IO_ERROR, G_IO_ERROR_NOT_CONNECTED,
                    "%s: the device went away before control request 0x%02x was answered",
                    peer->label, request);
        return FALSE;
    }
    if (peer->control.id != id) {
        g_set_error(error, G_IO_ERROR, G_IO_ERROR_FAILED,
                    "%s: control request 0x%02x (id %" G_GUINT64_FORMAT
                    ") answered as id %" G_GUINT64_FORMAT,
                    peer->label, request, id, peer->control.id);
        return FALSE;
    }
    return TRUE;
}

/* ---- a peer on a thread of its own */

struct _UsbredirPeerThread {
    UsbredirPeer *peer; /* owned; only @thread calls into it until joined */
    GThread *thread;    /* owned: joined by usbredir_peer_thread_stop() */
    GError *error;      /* owned, nullable: what ended the serving; set by @thread */
};

static gboolean
usbredir_peer_is_stopping(UsbredirPeer *peer)
{
    return g_atomic_int_get(&peer->stop);
}

static gpointer
usbredir_peer_thread_run(gpointer data)
{
    UsbredirPeerThread *thread = data;
    g_autoptr(GError) error = NULL;

    if (!usbredir_peer_run_until(thread->peer, usbredir_peer_is_stopping, G_MAXINT64, &error) &&
        !g_error_matches(error, G_IO_ERROR, G_IO_ERROR_CONNECTION_CLOSED))
        thread->error = g_steal_pointer(&error);
    return NULL;
}

UsbredirPeerThread *
usbredir_peer_thread_start(UsbredirPeer *peer, const gchar *name)
{
    UsbredirPeerThread *thread;

    g_return_val_if_fail(peer->fd >= 0, NULL);

    thread = g_new0(UsbredirPeerThread, 1);
    thread->peer = peer;
    thread->thread = g_thread_new(name, usbredir_peer_thread_run, thread);
    return thread;
}

gboolean
usbredir_peer_thread_stop(UsbredirPeerThread *thread, GError **error)
{
    gboolean ok;

    g_atomic_int_set(&thread->peer->stop, 1);
    g_thread_join(thread->thread);
    usbredir_peer_free(thread->peer);
    ok = thread->error == NULL;
    if (!ok)
        g_propagate_error(error, thread->error);
    g_free(thread);
    return ok;
}

/* ---- a buffered peer */

gboolean
usbredir_peer_feed(UsbredirPeer *peer, const guint8 *data, gsize length, GError **error)
{
    gboolean ok = TRUE;

    g_return_val_if_fail(peer->in != NULL, FALSE);

    g_byte_array_append(peer->in, data, (guint)length);
    while (peer->in->len > 0) {
        int ret = usbredirparser_do_read(peer->parser);

        if (ret != 0) {
            g_set_error(error, G_IO_ERROR, G_IO_ERROR_INVALID_DATA,
                        "%s: a packet did not parse (usbredirparser_do_read: %d)", peer->label,
                        ret);
            ok = FALSE;
            break;
        }
    }
    usbredir_peer_flush(peer);
    return ok;
}
