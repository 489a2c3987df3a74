/* usbgw-fake-exporter: a gateway that lies. It accepts links like a
 * dongle server (TLS, certificates from the link CA), announces one
 * device, and serves every open with a protocol-level usbredir device
 * (tests/usbredir-peer, the host role) that may present something else:
 * the importer's validating proxy must refuse it before QEMU sees it.
 *
 *   usbgw-fake-exporter --listen ADDR:PORT --cert F --key F --ca F \
 *       --announce VID:PID:CLASS [--present VID:PID:CLASS] [--secret HEX]
 *
 * The presented device answers the simulated key's challenge-response
 * (tests/sim/key-protocol.h) with --secret. Prints one line per event on
 * stdout: "READY", "LINK UP PEER", "OPEN ID". */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <glib-unix.h>

#include "gw-link-tls.h"
#include "gw-link.h"
#include "sim-hex.h"
#include "usbredir-fake-key.h"

#define FAKE_DEVICE_ID "0529:0001@9-9"

typedef struct {
    guint16 vendor, product;
    guint8 klass;
} FakeIdentity;

typedef struct {
    UsbredirPeerThread *thread;
    UsbredirFakeKey key;
} FakeDevice;

static FakeIdentity fake_announced, fake_presented;
static guint8 fake_secret[USBGW_KEY_LEN];
static GwLinkTls *fake_tls;
static GPtrArray *fake_links;   /* GwLink */
static GPtrArray *fake_devices; /* FakeDevice */

static gboolean
fake_parse_identity(const gchar *text, FakeIdentity *id)
{
    unsigned vendor, product, klass;
    gchar tail;

    if (sscanf(text, "%4x:%4x:%2x%c", &vendor, &product, &klass, &tail) != 3)
        return FALSE;
    id->vendor = (guint16)vendor;
    id->product = (guint16)product;
    id->klass = (guint8)klass;
    return TRUE;
}

static GSocket *
fake_open(GwLink *link, const gchar *id, gchar **reason, gpointer user_data)
{
    g_autoptr(GError) error = NULL;
    FakeDevice *dev;
    GSocket *socket;
    int fds[2];

    g_print("OPEN %s\n", id);
    if (g_strcmp0(id, FAKE_DEVICE_ID) != 0) {
        *reason = g_strdup_printf("no device %s here", id);
        return NULL;
    }
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds) != 0) {
        *reason = g_strdup_printf("socketpair: %s", g_strerror(errno));
        return NULL;
    }
    socket = g_socket_new_from_fd(fds[1], &error);
    if (socket == NULL) {
        close(fds[0]);
        close(fds[1]);
        *reason = g_strdup(error->message);
        return NULL;
    }
    dev = g_new0(FakeDevice, 1);
    usbredir_fake_key_init(&dev->key);
    dev->key.vendor = fake_presented.vendor;
    dev->key.product = fake_presented.product;
    dev->key.device_class = fake_presented.klass;
    memcpy(dev->key.secret, fake_secret, USBGW_KEY_LEN);
    dev->thread = usbredir_peer_thread_start(
        usbredir_fake_key_peer_new(fds[0], &dev->key, "usbgw-fake-exporter"), "fake-device");
    g_ptr_array_add(fake_devices, dev);
    return socket;
}

static void
fake_up(GwLink *link, gboolean resumed, gpointer user_data)
{
    g_print("LINK UP %s\n", gw_link_get_peer(link));
}

static void
fake_accepted(GObject *source, GAsyncResult *result, gpointer user_data)
{
    static const GwLinkCallbacks callbacks = {
        .up = fake_up,
        .open = fake_open,
    };
    g_autoptr(GError) error = NULL;
    g_autoptr(GError) refusal = NULL;
    g_autofree gchar *name = NULL;
    g_autoptr(GIOStream) stream =
        gw_link_tls_accept_finish(fake_tls, result, &name, &refusal, &error);
    g_autoptr(PolicyDevice) device = NULL;
    GwLink *link;

    if (stream == NULL || name == NULL) {
        g_printerr("fake exporter: %s\n", error != NULL ? error->message : refusal->message);
        return;
    }
    link = gw_link_new(name, &(GwLinkConfig){0}, &callbacks, NULL);
    g_ptr_array_add(fake_links, link);
    device = policy_device_new(fake_announced.vendor, fake_announced.product);
    device->port = g_strdup("9-9");
    device->device_class = fake_announced.klass;
    policy_device_add_interface(device, fake_announced.klass, 0, 0);
    gw_link_announce(link, FAKE_DEVICE_ID, device);
    gw_link_attach(link, stream);
}

static gboolean
fake_incoming(GSocketService *service, GSocketConnection *connection, GObject *source,
              gpointer user_data)
{
    gw_link_tls_accept_async(fake_tls, connection, 10000, NULL, fake_accepted, NULL);
    return TRUE;
}

static gboolean
fake_quit(gpointer loop)
{
    g_main_loop_quit(loop);
    return G_SOURCE_REMOVE;
}

static void
fake_device_free(gpointer data)
{
    FakeDevice *dev = data;
    g_autoptr(GError) error = NULL;

    if (!usbredir_peer_thread_stop(dev->thread, &error))
        g_debug("fake device: %s", error->message);
    g_free(dev);
}

int
main(int argc, char **argv)
{
    g_autofree gchar *listen = NULL, *cert = NULL, *key = NULL, *ca = NULL;
    g_autofree gchar *announce = NULL, *present = NULL, *secret = NULL;
    const GOptionEntry entries[] = {
        {"listen", 0, 0, G_OPTION_ARG_STRING, &listen, "Accept links here", "ADDR:PORT"},
        {"cert", 0, 0, G_OPTION_ARG_FILENAME, &cert, "This gateway's certificate", "FILE"},
        {"key", 0, 0, G_OPTION_ARG_FILENAME, &key, "Its key", "FILE"},
        {"ca", 0, 0, G_OPTION_ARG_FILENAME, &ca, "The link CA", "FILE"},
        {"announce", 0, 0, G_OPTION_ARG_STRING, &announce, "What the directory says",
         "VID:PID:CLASS"},
        {"present", 0, 0, G_OPTION_ARG_STRING, &present, "What the stream presents",
         "VID:PID:CLASS"},
        {"secret", 0, 0, G_OPTION_ARG_STRING, &secret, "The key's secret", "HEX"},
        G_OPTION_ENTRY_NULL,
    };
    g_autoptr(GOptionContext) context = g_option_context_new(NULL);
    g_autoptr(GError) error = NULL;
    g_autoptr(GMainLoop) loop = g_main_loop_new(NULL, FALSE);
    g_autoptr(GSocketService) service = g_socket_service_new();
    g_autoptr(GInetSocketAddress) address = NULL;
    const gchar *colon;
    g_autofree gchar *host = NULL;

    g_option_context_add_main_entries(context, entries, NULL);
    if (!g_option_context_parse(context, &argc, &argv, &error) || listen == NULL || cert == NULL ||
        key == NULL || ca == NULL || announce == NULL ||
        !fake_parse_identity(announce, &fake_announced) ||
        !fake_parse_identity(present != NULL ? present : announce, &fake_presented) ||
        (secret != NULL && !sim_hex_decode(secret, fake_secret, USBGW_KEY_LEN, NULL))) {
        g_printerr("usage: usbgw-fake-exporter --listen ADDR:PORT --cert F --key F --ca F "
                   "--announce VID:PID:CLASS [--present VID:PID:CLASS] [--secret HEX]%s%s\n",
                   error != NULL ? ": " : "", error != NULL ? error->message : "");
        return 2;
    }
    fake_tls = gw_link_tls_new(cert, key, ca, &error);
    if (fake_tls == NULL) {
        g_printerr("usbgw-fake-exporter: %s\n", error->message);
        return 1;
    }
    colon = strrchr(listen, ':');
    host = colon != NULL ? g_strndup(listen, colon - listen) : NULL;
    address =
        host != NULL
            ? G_INET_SOCKET_ADDRESS(g_inet_socket_address_new_from_string(host, atoi(colon + 1)))
            : NULL;
    if (address == NULL || !g_socket_listener_add_address(
                               G_SOCKET_LISTENER(service), G_SOCKET_ADDRESS(address),
                               G_SOCKET_TYPE_STREAM, G_SOCKET_PROTOCOL_TCP, NULL, NULL, &error)) {
        g_printerr("usbgw-fake-exporter: cannot listen on %s%s%s\n", listen,
                   error != NULL ? ": " : "", error != NULL ? error->message : "");
        return 1;
    }
    fake_links = g_ptr_array_new_with_free_func((GDestroyNotify)gw_link_free);
    fake_devices = g_ptr_array_new_with_free_func(fake_device_free);
    g_signal_connect(service, "incoming", G_CALLBACK(fake_incoming), NULL);
    g_socket_service_start(service);
    g_unix_signal_add(SIGTERM, fake_quit, loop);
    g_unix_signal_add(SIGINT, fake_quit, loop);
    g_print("READY\n");
    g_main_loop_run(loop);
    g_ptr_array_unref(fake_links);
    g_ptr_array_unref(fake_devices);
    gw_link_tls_free(fake_tls);
    return 0;
}
