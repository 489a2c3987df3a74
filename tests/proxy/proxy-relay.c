/* usbgw-proxy-relay: runs GwProxy between a lending client and a QEMU-role
 * peer, one session at a time, deciding with a policy file as usbgwd will
 * (POLICY_ORIGIN_SHARE):
 *
 *   usbgw-proxy-relay --policy FILE --user U --vm V --qemu PATH
 *                     (--client-tcp 127.0.0.1:PORT | --client-unix PATH)
 *
 * PORT 0 picks a free port. Accepts one client and one QEMU connection,
 * relays between them until the session ends, then accepts the next pair
 * (connections that come while a session runs wait their turn). Prints to
 * stdout, one line each, for tests to read:
 *
 *   LISTEN client tcp:127.0.0.1:PORT   (or unix:PATH)
 *   SESSION n start
 *   DECISION n allow|deny DEVICE (RULE or "no rule")
 *   CONNECTED n DEVICE
 *   DENIED n REASON
 *   END n KIND REASON bytes c>q N q>c N packets c>q N q>c N
 *
 * Runs until SIGTERM/SIGINT. */
#include <gio/gio.h>
#include <gio/gunixsocketaddress.h>
#include <glib-unix.h>
#include <glib/gstdio.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <unistd.h>

#include "gw-proxy.h"
#include "policy.h"

typedef struct {
    Policy *policy;  /* owned */
    gchar *user;     /* owned */
    gchar *vm;       /* owned */
    GMainLoop *loop; /* owned */
    GQueue clients;  /* GSocket, owned */
    GQueue qemus;    /* GSocket, owned */
    GwProxy *proxy;  /* owned, nullable: the running session */
    guint session;   /* number of the running or last session */
} Relay;

static void relay_start_next(Relay *relay);

static void relay_print(const gchar *format, ...) G_GNUC_PRINTF(1, 2);

static void
relay_print(const gchar *format, ...)
{
    va_list args;
    va_start(args, format);
    vprintf(format, args);
    va_end(args);
    printf("\n");
    fflush(stdout);
}

static gboolean
relay_check(GwProxy *proxy, const PolicyDevice *device, gchar **reason, gpointer user_data)
{
    Relay *relay = user_data;
    PolicyContext ctx = {.user = relay->user, .vm_name = relay->vm};
    PolicyDecision decision;
    g_autofree gchar *description = policy_device_describe(device);
    g_autofree gchar *rule = NULL;
    gboolean allow;

    policy_decide(relay->policy, POLICY_ORIGIN_SHARE, device, &ctx, &decision);
    allow = decision.verdict == POLICY_VERDICT_SHARE &&
            policy_decision_is_for_vm(relay->policy, &decision, relay->vm, NULL);
    rule = decision.file != NULL ? g_strdup_printf("%s:%u", decision.file, decision.line)
                                 : g_strdup("no rule");
    relay_print("DECISION %u %s %s (%s)", relay->session, allow ? "allow" : "deny", description,
                rule);
    if (!allow)
        *reason = g_strdup_printf("policy %s for user %s to vm %s (%s)",
                                  policy_verdict_to_string(decision.verdict), relay->user,
                                  relay->vm, rule);
    return allow;
}

static void
relay_connected(GwProxy *proxy, const PolicyDevice *device, gpointer user_data)
{
    Relay *relay = user_data;
    g_autofree gchar *description = policy_device_describe(device);
    relay_print("CONNECTED %u %s", relay->session, description);
}

static void
relay_denied(GwProxy *proxy, const PolicyDevice *device, const gchar *reason, gpointer user_data)
{
    Relay *relay = user_data;
    relay_print("DENIED %u %s", relay->session, reason);
}

static gboolean
relay_start_idle(gpointer data)
{
    relay_start_next(data);
    return G_SOURCE_REMOVE;
}

static void
relay_closed(GwProxy *proxy, GwProxyEnd end, const gchar *reason, gpointer user_data)
{
    Relay *relay = user_data;
    GwProxyStats stats;

    gw_proxy_get_stats(proxy, &stats);
    relay_print("END %u %s %s bytes c>q %" G_GUINT64_FORMAT " q>c %" G_GUINT64_FORMAT
                " packets c>q %" G_GUINT64_FORMAT " q>c %" G_GUINT64_FORMAT,
                relay->session, gw_proxy_end_to_string(end), reason, stats.client_bytes_in,
                stats.qemu_bytes_in, stats.qemu_packets_out, stats.client_packets_out);
    g_clear_pointer(&relay->proxy, gw_proxy_free);
    g_idle_add(relay_start_idle, relay);
}

static void
relay_start_next(Relay *relay)
{
    static const GwProxyCallbacks callbacks = {
        .check = relay_check,
        .denied = relay_denied,
        .connected = relay_connected,
        .closed = relay_closed,
    };
    g_autoptr(GSocket) client = NULL;
    g_autoptr(GSocket) qemu = NULL;
    g_autoptr(GError) error = NULL;
    g_autofree gchar *label = NULL;

    if (relay->proxy != NULL || g_queue_is_empty(&relay->clients) ||
        g_queue_is_empty(&relay->qemus))
        return;
    client = g_queue_pop_head(&relay->clients);
    qemu = g_queue_pop_head(&relay->qemus);
    relay->session++;
    label = g_strdup_printf("relay session %u", relay->session);
    relay_print("SESSION %u start", relay->session);
    relay->proxy = gw_proxy_new(client, qemu, label, &callbacks, relay, &error);
    if (relay->proxy == NULL) {
        relay_print("END %u error %s", relay->session, error->message);
        g_idle_add(relay_start_idle, relay);
    }
}

/* Keeps a socket of its own (a dup of the connection's): the proxy owns its
 * sockets, the GSocketConnection closes its own on finalize. */
static GSocket *
relay_take_socket(GSocketConnection *connection)
{
    GSocket *socket = g_socket_connection_get_socket(connection);
    int fd = dup(g_socket_get_fd(socket));
    g_autoptr(GError) error = NULL;
    GSocket *copy;

    if (fd < 0)
        return NULL;
    copy = g_socket_new_from_fd(fd, &error);
    if (copy == NULL) {
        close(fd);
        g_printerr("relay: %s\n", error->message);
        return NULL;
    }
    if (g_socket_get_family(copy) != G_SOCKET_FAMILY_UNIX)
        g_socket_set_option(copy, IPPROTO_TCP, TCP_NODELAY, 1, NULL);
    return copy;
}

static gboolean
relay_incoming(GSocketService *service, GSocketConnection *connection, GObject *source,
               gpointer user_data)
{
    Relay *relay = user_data;
    GSocket *socket = relay_take_socket(connection);
    const gchar *side = g_object_get_data(source, "relay-side");

    if (socket == NULL)
        return TRUE;
    g_queue_push_tail(g_strcmp0(side, "client") == 0 ? &relay->clients : &relay->qemus, socket);
    relay_start_next(relay);
    return TRUE;
}

static gboolean
relay_add_unix(GSocketService *service, const gchar *path, const gchar *side, GError **error)
{
    g_autoptr(GSocketAddress) address = NULL;
    g_autoptr(GObject) tag = g_object_new(G_TYPE_OBJECT, NULL);

    g_unlink(path);
    address = g_unix_socket_address_new(path);
    g_object_set_data_full(tag, "relay-side", g_strdup(side), g_free);
    return g_socket_listener_add_address(G_SOCKET_LISTENER(service), address, G_SOCKET_TYPE_STREAM,
                                         G_SOCKET_PROTOCOL_DEFAULT, tag, NULL, error);
}

static gboolean
relay_add_tcp(GSocketService *service, const gchar *where, guint16 *port, GError **error)
{
    const gchar *colon = strrchr(where, ':');
    g_autofree gchar *host = colon != NULL ? g_strndup(where, (gsize)(colon - where)) : NULL;
    g_autoptr(GInetAddress) inet = host != NULL ? g_inet_address_new_from_string(host) : NULL;
    g_autoptr(GSocketAddress) address = NULL;
    g_autoptr(GSocketAddress) effective = NULL;
    g_autoptr(GObject) tag = g_object_new(G_TYPE_OBJECT, NULL);

    if (inet == NULL) {
        g_set_error(error, G_IO_ERROR, G_IO_ERROR_INVALID_ARGUMENT, "bad address '%s'", where);
        return FALSE;
    }
    address = g_inet_socket_address_new(inet, (guint16)g_ascii_strtoull(colon + 1, NULL, 10));
    g_object_set_data_full(tag, "relay-side", g_strdup("client"), g_free);
    if (!g_socket_listener_add_address(G_SOCKET_LISTENER(service), address, G_SOCKET_TYPE_STREAM,
                                       G_SOCKET_PROTOCOL_TCP, tag, &effective, error))
        return FALSE;
    *port = g_inet_socket_address_get_port(G_INET_SOCKET_ADDRESS(effective));
    return TRUE;
}

static gboolean
relay_quit(gpointer data)
{
    Relay *relay = data;
    g_main_loop_quit(relay->loop);
    return G_SOURCE_REMOVE;
}

int
main(int argc, char **argv)
{
    g_autofree gchar *policy_file = NULL;
    g_autofree gchar *qemu_path = NULL;
    g_autofree gchar *client_tcp = NULL;
    g_autofree gchar *client_unix = NULL;
    Relay relay = {0};
    const GOptionEntry entries[] = {
        {"policy", 0, 0, G_OPTION_ARG_FILENAME, &policy_file, "Policy file", "FILE"},
        {"user", 0, 0, G_OPTION_ARG_STRING, &relay.user, "The lending user", "U"},
        {"vm", 0, 0, G_OPTION_ARG_STRING, &relay.vm, "The VM the device goes to", "V"},
        {"qemu", 0, 0, G_OPTION_ARG_FILENAME, &qemu_path, "Unix socket for QEMU's side", "PATH"},
        {"client-tcp", 0, 0, G_OPTION_ARG_STRING, &client_tcp, "TCP listener for clients",
         "HOST:PORT"},
        {"client-unix", 0, 0, G_OPTION_ARG_FILENAME, &client_unix, "Unix socket for clients",
         "PATH"},
        G_OPTION_ENTRY_NULL,
    };
    g_autoptr(GOptionContext) context = g_option_context_new("— usbgw proxy test relay");
    g_autoptr(GError) error = NULL;
    g_autoptr(GSocketService) service = NULL;
    g_autoptr(GPtrArray) diagnostics = NULL;
    guint16 port = 0;

    g_option_context_add_main_entries(context, entries, NULL);
    if (!g_option_context_parse(context, &argc, &argv, &error) || policy_file == NULL ||
        qemu_path == NULL || relay.user == NULL || relay.vm == NULL ||
        (client_tcp == NULL) == (client_unix == NULL)) {
        g_printerr("usage: usbgw-proxy-relay --policy FILE --user U --vm V --qemu PATH "
                   "(--client-tcp HOST:PORT | --client-unix PATH)\n");
        return 2;
    }
    relay.policy = policy_load_file(policy_file, &diagnostics, &error);
    if (relay.policy == NULL) {
        g_printerr("relay: %s\n", error->message);
        return 1;
    }
    service = g_socket_service_new();
    if (!relay_add_unix(service, qemu_path, "qemu", &error) ||
        (client_unix != NULL && !relay_add_unix(service, client_unix, "client", &error)) ||
        (client_tcp != NULL && !relay_add_tcp(service, client_tcp, &port, &error))) {
        g_printerr("relay: %s\n", error->message);
        return 1;
    }
    g_signal_connect(service, "incoming", G_CALLBACK(relay_incoming), &relay);
    relay.loop = g_main_loop_new(NULL, FALSE);
    g_unix_signal_add(SIGTERM, relay_quit, &relay);
    g_unix_signal_add(SIGINT, relay_quit, &relay);
    g_socket_service_start(service);
    if (client_tcp != NULL)
        relay_print("LISTEN client tcp:127.0.0.1:%u", port);
    else
        relay_print("LISTEN client unix:%s", client_unix);

    g_main_loop_run(relay.loop);

    g_socket_service_stop(service);
    g_clear_pointer(&relay.proxy, gw_proxy_free);
    g_queue_clear_full(&relay.clients, g_object_unref);
    g_queue_clear_full(&relay.qemus, g_object_unref);
    g_main_loop_unref(relay.loop);
    policy_unref(relay.policy);
    g_free(relay.user);
    g_free(relay.vm);
    return 0;
}
