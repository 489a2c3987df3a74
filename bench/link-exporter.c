/* link-exporter: a protocol-level exporting gateway for the link benches.
 * It speaks the gateway-link wire with gateway/link's own code (GwLinkTls
 * accepts and checks the importer's certificate, GwLink speaks the wire)
 * and announces N fake devices, 0529:0001 with serials S00000…, vendor
 * class. Each OPEN gets a direct stream (no socketpair: the link hands the
 * request's bytes to the device and takes its answer, as usbgwd's exporter
 * does with a usbredirhost session) served by a usbredir fake device
 * (tests/usbredir-peer in the host role, buffered, no libusb, no umockdev)
 * answering control transfers at once: OUT 0x01 stores a 16-byte
 * challenge, IN 0x02 returns the key function of it under the secret
 * 00 01 … 0f (tests/sim/key-protocol.h), as the simulated keys do.
 *
 *   link-exporter --listen 127.0.0.1:PORT --cert C --key K --ca CA --devices N
 *       [--direct PATH]
 *
 * --direct PATH also serves a fake device to every peer that connects to
 * the unix socket PATH, without the link: the baseline of a round trip
 * through the link, the same code in the same process.
 *
 * It prints "ready" on stdout once it listens. Everything (the listener,
 * the TLS handshakes, the link and every fake device) runs on the main
 * thread, so its CPU time is one number next to the importer's. */
#include <errno.h>
#include <glib-unix.h>
#include <stdio.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include <gio/gio.h>
#include <gio/gunixsocketaddress.h>

#include "bench-common.h"
#include "gw-link-tls.h"
#include "gw-link.h"

#define LINK_EXPORTER_HANDSHAKE_MS 10000
/* Devices announced, at most (GwLink's own limit). */
#define LINK_EXPORTER_MAX_DEVICES GW_LINK_MAX_DEVICES

typedef struct {
    GwLinkTls *tls;
    GSocketService *service;
    GwLink *link; /* nullable: the one importer's link */
    guint n_devices;
    GMainLoop *loop;
} Exporter;

/* ---- a fake device on one stream ------------------------------------------ */

/* A fake device on a link stream is a buffered peer on a direct stream, as
 * usbgwd's exporter serves a usbredirhost session (no socketpair between
 * the link and the device); on --direct it is a peer on its own socket. */
typedef struct {
    UsbredirFakeKey key;  /* the peer's user_data */
    UsbredirPeer *peer;   /* owned */
    guint watch;          /* --direct: the socket's source */
    GwLinkStream *stream; /* borrowed, nullable: a link stream until closed() */
    GByteArray *unsent;   /* owned: answers the stream's window did not take */
} FakeDevice;

static void
fake_device_free(FakeDevice *dev)
{
    g_clear_handle_id(&dev->watch, g_source_remove);
    g_clear_pointer(&dev->peer, usbredir_peer_free);
    g_clear_pointer(&dev->unsent, g_byte_array_unref);
    g_free(dev);
}

/* The link's end of the socketpair has bytes, or closed. Answers are
 * small and written from usbredir_peer_io() at once. */
static gboolean
fake_device_ready(gint fd, GIOCondition condition, gpointer user_data)
{
    FakeDevice *dev = user_data;

    if (usbredir_peer_io(dev->peer))
        return G_SOURCE_CONTINUE;
    dev->watch = 0;
    fake_device_free(dev);
    return G_SOURCE_REMOVE;
}

static FakeDevice *
fake_device_new(int fd)
{
    FakeDevice *dev = g_new0(FakeDevice, 1);

    usbredir_fake_key_init(&dev->key);

    dev->peer = usbredir_fake_key_peer_new(fd, &dev->key, "link-exporter fake device");
    dev->watch = g_unix_fd_add(fd, G_IO_IN | G_IO_HUP | G_IO_ERR, fake_device_ready, dev);
    return dev;
}

/* Queues what the stream's window takes of dev->unsent. */
static void
fake_device_write(FakeDevice *dev)
{
    while (dev->stream != NULL && dev->unsent->len > 0) {
        gssize n = gw_link_stream_write(dev->stream, dev->unsent->data, dev->unsent->len);
        if (n <= 0)
            break; /* full: writable() follows; ending: closed() follows */
        g_byte_array_remove_range(dev->unsent, 0, (guint)n);
    }
}

/* The buffered peer's output (user_data is the key, the device's first
 * member). */
static void
fake_device_send(UsbredirPeer *peer, const guint8 *data, gsize length, gpointer user_data)
{
    FakeDevice *dev = user_data;
    gssize n = 0;

    if (dev->stream != NULL && dev->unsent->len == 0)
        n = gw_link_stream_write(dev->stream, data, length);
    if (n < 0)
        return;
    g_byte_array_append(dev->unsent, data + n, (guint)(length - (gsize)n));
}

static void
fake_device_readable(GwLinkStream *stream, gpointer user_data)
{
    FakeDevice *dev = user_data;
    guint8 buf[GW_LINK_MAX_DATA];
    gssize n;

    while ((n = gw_link_stream_read(stream, buf, sizeof(buf))) > 0) {
        g_autoptr(GError) error = NULL;
        if (!usbredir_peer_feed(dev->peer, buf, (gsize)n, &error)) {
            g_printerr("link-exporter: %s\n", error->message);
            /* closed() does not run for our own close */
            gw_link_stream_close(stream, "the fake device could not parse the request");
            fake_device_free(dev);
            return;
        }
    }
    gw_link_stream_flush(stream);
}

static void
fake_device_writable(GwLinkStream *stream, gpointer user_data)
{
    FakeDevice *dev = user_data;

    fake_device_write(dev);
    gw_link_stream_flush(stream);
}

static void
fake_device_closed(GwLinkStream *stream, const gchar *reason, gpointer user_data)
{
    FakeDevice *dev = user_data;

    dev->stream = NULL;
    fake_device_free(dev);
}

/* ---- the link --------------------------------------------------------------- */

static gboolean
exporter_open_direct(GwLink *link, GwLinkStream *stream, const gchar *id, gchar **reason,
                     gpointer user_data)
{
    static const GwLinkStreamCallbacks callbacks = {
        .closed = fake_device_closed,
        .readable = fake_device_readable,
        .writable = fake_device_writable,
    };
    FakeDevice *dev = g_new0(FakeDevice, 1);

    G_STATIC_ASSERT(G_STRUCT_OFFSET(FakeDevice, key) == 0);
    usbredir_fake_key_init(&dev->key);
    dev->stream = stream;
    dev->unsent = g_byte_array_new();
    gw_link_stream_set_callbacks(stream, &callbacks, dev);
    /* its hello goes out with the link's OPENED */
    dev->peer = usbredir_fake_key_peer_new_buffered(&dev->key, "link-exporter fake device",
                                                    fake_device_send);
    return TRUE;
}

static void
exporter_down(GwLink *link, const gchar *reason, gpointer user_data)
{
    g_printerr("link-exporter: link to %s down: %s\n", gw_link_get_peer(link), reason);
}

static void
exporter_announce(Exporter *exp)
{
    for (guint i = 0; i < exp->n_devices; i++) {
        g_autoptr(PolicyDevice) device = policy_device_new(0x0529, 0x0001);
        g_autofree gchar *id = g_strdup_printf("dev%05u", i);

        device->device_class = 0xff;
        device->bcd_device = 0x0100;
        device->serial = g_strdup_printf("S%05u", i);
        device->port = g_strdup("1-1");
        policy_device_add_interface(device, 0xff, 0, 0);
        gw_link_announce(exp->link, id, device);
    }
}

static void
exporter_accepted(GObject *source, GAsyncResult *result, gpointer user_data)
{
    static const GwLinkCallbacks callbacks = {
        .down = exporter_down,
        .open_direct = exporter_open_direct,
    };
    Exporter *exp = user_data;
    g_autoptr(GError) error = NULL;
    g_autoptr(GError) refusal = NULL;
    g_autofree gchar *name = NULL;
    g_autoptr(GIOStream) stream =
        gw_link_tls_accept_finish(exp->tls, result, &name, &refusal, &error);

    if (stream == NULL) {
        g_printerr("link-exporter: %s\n", error->message);
        return;
    }
    if (name == NULL) {
        g_printerr("link-exporter: refused a gateway: %s\n", refusal->message);
        gw_link_refuse(stream, refusal->message, 1000);
        return;
    }
    if (exp->link != NULL && g_strcmp0(gw_link_get_peer(exp->link), name) != 0) {
        gw_link_refuse(stream, "this exporter serves one gateway", 1000);
        return;
    }
    if (exp->link == NULL) {
        GwLinkConfig config = {0};
        exp->link = gw_link_new(name, &config, &callbacks, exp);
        exporter_announce(exp);
    }
    gw_link_attach(exp->link, stream);
}

static gboolean
exporter_incoming(GSocketService *service, GSocketConnection *connection, GObject *source,
                  gpointer user_data)
{
    Exporter *exp = user_data;

    /* GwLink sets TCP_NODELAY itself */
    gw_link_tls_accept_async(exp->tls, connection, LINK_EXPORTER_HANDSHAKE_MS, NULL,
                             exporter_accepted, exp);
    return TRUE;
}

/* A peer on --direct: a fake device of its own, no link. */
static gboolean
exporter_direct_incoming(GSocketService *service, GSocketConnection *connection, GObject *source,
                         gpointer user_data)
{
    int fd = dup(g_socket_get_fd(g_socket_connection_get_socket(connection)));

    if (fd < 0) {
        g_printerr("link-exporter: dup: %s\n", g_strerror(errno));
        return TRUE;
    }
    fake_device_new(fd);
    return TRUE;
}

static gboolean
exporter_quit(gpointer user_data)
{
    Exporter *exp = user_data;

    g_main_loop_quit(exp->loop);
    return G_SOURCE_REMOVE;
}

int
main(int argc, char **argv)
{
    g_autofree gchar *listen = NULL, *cert = NULL, *key = NULL, *ca = NULL, *direct = NULL;
    gint devices = 1;
    const GOptionEntry entries[] = {
        {"listen", 0, 0, G_OPTION_ARG_STRING, &listen, "Where to listen", "ADDRESS:PORT"},
        {"cert", 0, 0, G_OPTION_ARG_FILENAME, &cert, "This gateway's certificate", "PEM"},
        {"key", 0, 0, G_OPTION_ARG_FILENAME, &key, "Its key", "PEM"},
        {"ca", 0, 0, G_OPTION_ARG_FILENAME, &ca, "The link CA", "PEM"},
        {"devices", 0, 0, G_OPTION_ARG_INT, &devices, "Fake devices to announce (1)", "N"},
        {"direct", 0, 0, G_OPTION_ARG_FILENAME, &direct,
         "Also serve fake devices on this unix socket, without the link", "PATH"},
        G_OPTION_ENTRY_NULL,
    };
    g_autoptr(GOptionContext) context = g_option_context_new("— a protocol-level exporter");
    g_autoptr(GError) error = NULL;
    g_autoptr(GSocketAddress) address = NULL;
    g_autoptr(GSocketService) direct_service = NULL;
    Exporter exp = {0};
    struct rlimit limit;
    const gchar *colon;
    guint64 port;

    g_option_context_add_main_entries(context, entries, NULL);
    if (!g_option_context_parse(context, &argc, &argv, &error)) {
        g_printerr("link-exporter: %s\n", error->message);
        return 2;
    }
    if (listen == NULL || cert == NULL || key == NULL || ca == NULL || devices < 0 ||
        devices > LINK_EXPORTER_MAX_DEVICES) {
        g_printerr("link-exporter: --listen, --cert, --key and --ca are required; --devices "
                   "from 0 to %d\n",
                   LINK_EXPORTER_MAX_DEVICES);
        return 2;
    }
    colon = strrchr(listen, ':');
    if (colon == NULL || !g_ascii_string_to_unsigned(colon + 1, 10, 1, G_MAXUINT16, &port, NULL)) {
        g_printerr("link-exporter: --listen %s: expected ADDRESS:PORT\n", listen);
        return 2;
    }
    {
        g_autofree gchar *host = g_strndup(listen, colon - listen);
        g_autoptr(GInetAddress) inet = g_inet_address_new_from_string(host);
        if (inet == NULL) {
            g_printerr("link-exporter: --listen %s: not an IP address\n", listen);
            return 2;
        }
        address = g_inet_socket_address_new(inet, (guint16)port);
    }
    /* one descriptor per --direct peer */
    if (getrlimit(RLIMIT_NOFILE, &limit) == 0 && limit.rlim_cur < limit.rlim_max) {
        limit.rlim_cur = limit.rlim_max;
        setrlimit(RLIMIT_NOFILE, &limit);
    }
    exp.n_devices = (guint)devices;
    exp.tls = gw_link_tls_new(cert, key, ca, &error);
    if (exp.tls == NULL) {
        g_printerr("link-exporter: %s\n", error->message);
        return 1;
    }
    exp.service = g_socket_service_new();
    if (!g_socket_listener_add_address(G_SOCKET_LISTENER(exp.service), address,
                                       G_SOCKET_TYPE_STREAM, G_SOCKET_PROTOCOL_TCP, NULL, NULL,
                                       &error)) {
        g_printerr("link-exporter: %s: %s\n", listen, error->message);
        return 1;
    }
    g_signal_connect(exp.service, "incoming", G_CALLBACK(exporter_incoming), &exp);
    g_socket_service_start(exp.service);
    if (direct != NULL) {
        g_autoptr(GSocketAddress) path = g_unix_socket_address_new(direct);
        direct_service = g_socket_service_new();
        if (!g_socket_listener_add_address(G_SOCKET_LISTENER(direct_service), path,
                                           G_SOCKET_TYPE_STREAM, G_SOCKET_PROTOCOL_DEFAULT, NULL,
                                           NULL, &error)) {
            g_printerr("link-exporter: %s: %s\n", direct, error->message);
            return 1;
        }
        g_signal_connect(direct_service, "incoming", G_CALLBACK(exporter_direct_incoming), NULL);
        g_socket_service_start(direct_service);
    }
    exp.loop = g_main_loop_new(NULL, FALSE);
    g_unix_signal_add(SIGTERM, exporter_quit, &exp);
    g_unix_signal_add(SIGINT, exporter_quit, &exp);
    g_print("ready\n");
    fflush(stdout);
    g_main_loop_run(exp.loop);

    g_clear_pointer(&exp.link, gw_link_free);
    g_socket_service_stop(exp.service);
    g_clear_object(&exp.service);
    gw_link_tls_free(exp.tls);
    g_main_loop_unref(exp.loop);
    return 0;
}
