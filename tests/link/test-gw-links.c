/* GwLinks (gateway/link/gw-links.c): peers added and removed at run time,
 * as usbgwd's cluster mode does with the gateways registered in etcd.
 * Two or three GwLinks in this process on one main loop, linked over
 * loopback TCP with GwLinkTls and the certificates tests/link/make-
 * certs.sh makes (its path comes in LINK_MAKE_CERTS). A plain socket
 * service counts the connections made to an address no gateway serves,
 * to see who dials where. */
#include <string.h>

#include <gio/gio.h>

#include "gw-links.h"
#include "link-test-certs.h"
#include "test-free-port.h"

#define T_GUARD_US (20 * G_USEC_PER_SEC)
/* The grace of the tests' links: long enough to tell "at once" from
 * "after the grace". */
#define T_GRACE_MS 5000
/* Lost events after a removal come within this (far below the grace). */
#define T_AT_ONCE_MS 1000
/* Three dial backoffs: 500 + 1000 + 2000 ms. */
#define T_THREE_BACKOFFS_MS (GW_LINKS_DIAL_FIRST_MS * 7 + 200)

static gchar *t_dir; /* the certificates */

typedef struct {
    GwLinks *links;
    GPtrArray *found; /* "GATEWAY/ID" */
    GPtrArray *lost;  /* "GATEWAY/ID" */
    gint64 lost_us;   /* monotonic time of the last lost event */
    GPtrArray *downs; /* "PEER: REASON" of the audit's link-down events */
    gchar *listen;    /* nullable: "127.0.0.1:PORT" */
} TGateway;

static gboolean
t_tick(gpointer data)
{
    return G_SOURCE_CONTINUE;
}

#define T_WAIT(cond)                                                                               \
    do {                                                                                           \
        gint64 t_end_ = g_get_monotonic_time() + T_GUARD_US;                                       \
        while (!(cond)) {                                                                          \
            g_assert_cmpint(g_get_monotonic_time(), <, t_end_);                                    \
            g_main_context_iteration(NULL, TRUE);                                                  \
        }                                                                                          \
    } while (0)

static gboolean
t_set_flag(gpointer data)
{
    *(gboolean *)data = TRUE;
    return G_SOURCE_REMOVE;
}

/* Runs the main loop for @ms. */
static void
t_sleep(guint ms)
{
    gboolean done = FALSE;

    g_timeout_add(ms, t_set_flag, &done);
    T_WAIT(done);
}

static guint
t_count(GPtrArray *events, const gchar *what)
{
    guint n = 0;

    for (guint i = 0; i < events->len; i++)
        n += g_strcmp0(g_ptr_array_index(events, i), what) == 0;
    return n;
}

/* ---- a gateway ---- */

static gboolean
t_may_export(const gchar *id, const PolicyDevice *device, const gchar *gateway, gpointer user_data)
{
    return TRUE;
}

static void
t_found(const gchar *gateway, const gchar *id, const PolicyDevice *device, gpointer user_data)
{
    TGateway *gw = user_data;
    g_ptr_array_add(gw->found, g_strdup_printf("%s/%s", gateway, id));
}

static void
t_lost(const gchar *gateway, const gchar *id, gpointer user_data)
{
    TGateway *gw = user_data;
    g_ptr_array_add(gw->lost, g_strdup_printf("%s/%s", gateway, id));
    gw->lost_us = g_get_monotonic_time();
}

static void
t_stream_closed(GwLinkStream *stream, const gchar *reason, gpointer user_data)
{
}

static void
t_stream_nothing(GwLinkStream *stream, gpointer user_data)
{
}

static const GwLinkStreamCallbacks t_accepted_stream = {
    .closed = t_stream_closed,
    .readable = t_stream_nothing,
    .writable = t_stream_nothing,
};

/* Every stream a peer opens is taken (and left idle). */
static gboolean
t_open_direct(GwLinks *links, GwLink *link, GwLinkStream *stream, const gchar *id, gchar **reason,
              gpointer user_data)
{
    gw_link_stream_set_callbacks(stream, &t_accepted_stream, NULL);
    return TRUE;
}

static void
t_event(GwLinks *links, GwLinksEvent event, const gchar *peer, const gchar *address,
        const gchar *reason, gpointer user_data)
{
    TGateway *gw = user_data;

    if (event == GW_LINKS_EVENT_DOWN)
        g_ptr_array_add(gw->downs, g_strdup_printf("%s: %s", peer, reason));
}

static TGateway *
t_gateway_new(const gchar *name, gboolean listen, const gchar *device)
{
    static const GwLinksCallbacks callbacks = {.open_direct = t_open_direct, .event = t_event};
    static const GwDirectoryEvents events = {
        .may_export = t_may_export, .found = t_found, .lost = t_lost};
    GwLinkConfig config = {.grace_ms = T_GRACE_MS};
    g_autofree gchar *cert = g_strdup_printf("%s/%s-cert.pem", t_dir, name);
    g_autofree gchar *key = g_strdup_printf("%s/%s-key.pem", t_dir, name);
    g_autofree gchar *ca = g_strdup_printf("%s/ca-cert.pem", t_dir);
    g_autoptr(GError) error = NULL;
    TGateway *gw = g_new0(TGateway, 1);
    GwLinkTls *tls = gw_link_tls_new(cert, key, ca, &error);

    g_assert_no_error(error);
    gw->found = g_ptr_array_new_with_free_func(g_free);
    gw->lost = g_ptr_array_new_with_free_func(g_free);
    gw->downs = g_ptr_array_new_with_free_func(g_free);
    if (listen)
        gw->listen = g_strdup_printf("127.0.0.1:%u", test_free_port());
    gw->links = gw_links_new(tls, gw->listen, NULL, 0, &config, &callbacks, &events, gw, &error);
    g_assert_no_error(error);
    if (device != NULL) {
        g_autoptr(PolicyDevice) d = policy_device_new(0x0529, 0x0001);
        gw_directory_publish(gw_links_get_directory(gw->links), device, d);
    }
    return gw;
}

static void
t_gateway_free(TGateway *gw)
{
    gw_links_free(gw->links);
    g_ptr_array_unref(gw->found);
    g_ptr_array_unref(gw->lost);
    g_ptr_array_unref(gw->downs);
    g_free(gw->listen);
    g_free(gw);
}

static gboolean
t_up(TGateway *gw, const gchar *peer)
{
    GwLink *link = gw_links_lookup(gw->links, peer);
    return link != NULL && gw_link_is_up(link);
}

/* What usbgwctl status says of @peer: whether we dial it. */
static gboolean
t_dialed(TGateway *gw, const gchar *peer)
{
    g_autoptr(JsonBuilder) builder = json_builder_new();
    g_autoptr(JsonNode) root = NULL;
    JsonArray *links;

    json_builder_begin_object(builder);
    gw_links_to_json(gw->links, builder);
    json_builder_end_object(builder);
    root = json_builder_get_root(builder);
    links = json_object_get_array_member(json_node_get_object(root), "links");
    for (guint i = 0; i < json_array_get_length(links); i++) {
        JsonObject *link = json_array_get_object_element(links, i);
        if (g_strcmp0(json_object_get_string_member(link, "peer"), peer) == 0)
            return json_object_get_boolean_member(link, "dialed");
    }
    g_assert_not_reached();
}

/* ---- an address nobody serves, counting the connections made to it ---- */

typedef struct {
    GSocketService *service;
    guint connections;
} TCounter;

static gboolean
t_counter_incoming(GSocketService *service, GSocketConnection *connection, GObject *source,
                   gpointer user_data)
{
    TCounter *counter = user_data;

    counter->connections++;
    g_io_stream_close(G_IO_STREAM(connection), NULL, NULL);
    return TRUE;
}

/* Listens at @address ("127.0.0.1:PORT"). */
static TCounter *
t_counter_new(const gchar *address)
{
    TCounter *counter = g_new0(TCounter, 1);
    guint16 port = (guint16)g_ascii_strtoull(strrchr(address, ':') + 1, NULL, 10);
    g_autoptr(GInetAddress) loopback = g_inet_address_new_loopback(G_SOCKET_FAMILY_IPV4);
    g_autoptr(GSocketAddress) addr = g_inet_socket_address_new(loopback, port);
    g_autoptr(GError) error = NULL;

    counter->service = g_socket_service_new();
    g_socket_listener_add_address(G_SOCKET_LISTENER(counter->service), addr, G_SOCKET_TYPE_STREAM,
                                  G_SOCKET_PROTOCOL_TCP, NULL, NULL, &error);
    g_assert_no_error(error);
    g_signal_connect(counter->service, "incoming", G_CALLBACK(t_counter_incoming), counter);
    g_socket_service_start(counter->service);
    return counter;
}

static void
t_counter_free(TCounter *counter)
{
    g_socket_service_stop(counter->service);
    g_socket_listener_close(G_SOCKET_LISTENER(counter->service));
    g_object_unref(counter->service);
    g_free(counter);
}

/* ---- cases ---- */

typedef struct {
    GwLinkStream *opened; /* set when the peer took it */
    gchar *closed;        /* the reason it ended */
} TStream;

static void
t_mine_opened(GwLinkStream *stream, gpointer user_data)
{
    ((TStream *)user_data)->opened = stream;
}

static void
t_mine_closed(GwLinkStream *stream, const gchar *reason, gpointer user_data)
{
    ((TStream *)user_data)->closed = g_strdup(reason);
}

static const GwLinkStreamCallbacks t_mine = {
    .opened = t_mine_opened,
    .closed = t_mine_closed,
    .readable = t_stream_nothing,
    .writable = t_stream_nothing,
};

/* gw-a adds gw-b (gw-a sorts first, so it dials): the link comes up and
 * gw-b's device is found. gw-b moves to another address: gw-a redials
 * the old one until told the new one, then goes there. gw-b dies and
 * is removed: its device is lost at once, not after the grace, the
 * stream on it ends, and nothing dials either address any more. */
static void
test_add_change_remove(void)
{
    TGateway *a = t_gateway_new("gw-a", FALSE, NULL);
    TGateway *b = t_gateway_new("gw-b", TRUE, "dev1");
    TCounter *old = NULL, *last = NULL;
    g_autofree gchar *old_address = g_strdup(b->listen);
    g_autofree gchar *new_address = NULL;
    TStream stream = {NULL, NULL};
    guint old_dials, last_dials;
    gint64 removed_us;

    gw_links_add_peer(a->links, "gw-b", b->listen);
    /* ourselves: ignored */
    gw_links_add_peer(a->links, "gw-a", "127.0.0.1:1");
    g_assert_null(gw_links_lookup(a->links, "gw-a"));
    T_WAIT(t_count(a->found, "gw-b/dev1") == 1);
    g_assert_true(t_up(a, "gw-b"));
    g_assert_true(t_dialed(a, "gw-b"));
    T_WAIT(t_up(b, "gw-a"));
    g_assert_false(t_dialed(b, "gw-a"));

    /* gw-b goes away; gw-a redials its old address */
    t_gateway_free(b);
    old = t_counter_new(old_address);
    T_WAIT(!t_up(a, "gw-b"));
    T_WAIT(old->connections >= 1);
    g_assert_cmpuint(a->lost->len, ==, 0); /* the grace holds its device */

    /* gw-b comes back elsewhere; told so, gw-a dials the new address */
    b = t_gateway_new("gw-b", TRUE, "dev2");
    new_address = g_strdup(b->listen);
    gw_links_add_peer(a->links, "gw-b", new_address);
    T_WAIT(t_count(a->found, "gw-b/dev2") == 1);
    g_assert_true(t_up(a, "gw-b"));
    /* a new instance of gw-b: what the old one exported is gone */
    g_assert_cmpuint(t_count(a->lost, "gw-b/dev1"), ==, 1);
    old_dials = old->connections;

    /* a stream on gw-b's device */
    gw_link_open_direct(gw_links_lookup(a->links, "gw-b"), "dev2", &t_mine, &stream);
    T_WAIT(stream.opened != NULL);

    /* gw-b dies; its device is kept for the grace, then it is removed */
    t_gateway_free(b);
    last = t_counter_new(new_address);
    T_WAIT(!t_up(a, "gw-b"));
    t_sleep(100);
    g_assert_cmpuint(t_count(a->lost, "gw-b/dev2"), ==, 0);
    g_assert_null(stream.closed);
    removed_us = g_get_monotonic_time();
    gw_links_remove_peer(a->links, "gw-b");
    g_assert_null(gw_links_lookup(a->links, "gw-b"));
    T_WAIT(t_count(a->lost, "gw-b/dev2") == 1 && stream.closed != NULL);
    g_assert_cmpint(a->lost_us - removed_us, <, T_AT_ONCE_MS * 1000);
    g_assert_nonnull(strstr(stream.closed, "gw-b is gone"));
    /* nothing dials gw-b any more, at either address */
    t_sleep(200);
    last_dials = last->connections;
    t_sleep(T_THREE_BACKOFFS_MS);
    g_assert_cmpuint(last->connections, ==, last_dials);
    g_assert_cmpuint(old->connections, ==, old_dials);
    g_assert_cmpuint(t_count(a->found, "gw-b/dev2"), ==, 1);
    /* removing it again, or an unknown peer: nothing */
    gw_links_remove_peer(a->links, "gw-b");
    gw_links_remove_peer(a->links, "gw-z");

    g_free(stream.closed);
    t_counter_free(old);
    t_counter_free(last);
    t_gateway_free(a);
}

/* gw-b adds gw-a: gw-a sorts first, so gw-b does not dial it (nothing
 * connects to gw-a's address) and waits; gw-a adds gw-b and dials. Then
 * gw-b removes gw-a: gw-a's link drops, gw-a dials again and gw-b takes
 * it as it takes any unlisted gateway. */
static void
test_sort_rule(void)
{
    TGateway *b = t_gateway_new("gw-b", TRUE, "devb");
    g_autofree gchar *a_address = g_strdup_printf("127.0.0.1:%u", test_free_port());
    TCounter *counter = t_counter_new(a_address);
    TGateway *a;

    gw_links_add_peer(b->links, "gw-a", a_address);
    t_sleep(GW_LINKS_DIAL_FIRST_MS * 3);
    g_assert_cmpuint(counter->connections, ==, 0);
    g_assert_false(t_dialed(b, "gw-a"));
    t_counter_free(counter);

    a = t_gateway_new("gw-a", FALSE, "deva");
    gw_links_add_peer(a->links, "gw-b", b->listen);
    T_WAIT(t_count(b->found, "gw-a/deva") == 1 && t_count(a->found, "gw-b/devb") == 1);
    g_assert_true(t_dialed(a, "gw-b"));
    g_assert_false(t_dialed(b, "gw-a"));

    /* no callback from inside the call; the audit hears of it after */
    gw_links_remove_peer(b->links, "gw-a");
    g_assert_cmpuint(b->lost->len, ==, 0);
    g_assert_cmpuint(b->downs->len, ==, 0);
    T_WAIT(t_count(b->lost, "gw-a/deva") == 1);
    T_WAIT(t_count(b->downs, "gw-a: removed: the gateway is gone") == 1);
    T_WAIT(t_count(b->found, "gw-a/deva") == 2);
    g_assert_true(t_up(b, "gw-a"));
    g_assert_false(t_dialed(b, "gw-a"));
    T_WAIT(t_up(a, "gw-b"));

    t_gateway_free(a);
    t_gateway_free(b);
}

/* Bad names are not added. */
static void
test_bad_peer(void)
{
    TGateway *a = t_gateway_new("gw-a", FALSE, NULL);

    gw_links_add_peer(a->links, "bad name/x", "127.0.0.1:1");
    g_assert_null(gw_links_lookup(a->links, "bad name/x"));
    gw_links_add_peer(a->links, "", "127.0.0.1:1");
    g_assert_null(gw_links_lookup(a->links, ""));
    t_gateway_free(a);
}

int
main(int argc, char **argv)
{
    const gchar *names[] = {"gw-a", "gw-b", NULL};
    int ret;

    g_test_init(&argc, &argv, NULL);
    /* dials that fail are warned about by GwLinks (a gateway gone, the
     * counting service's closed connections): expected here, not fatal */
    g_log_set_always_fatal(G_LOG_FATAL_MASK | G_LOG_LEVEL_CRITICAL);
    t_dir = link_test_certs_make("test-gw-links", names);
    if (t_dir == NULL)
        return 1;
    /* Wakes the loop so T_WAIT checks its guard. */
    g_timeout_add(100, t_tick, NULL);

    g_test_add_func("/links/add-change-remove", test_add_change_remove);
    g_test_add_func("/links/sort-rule", test_sort_rule);
    g_test_add_func("/links/bad-peer", test_bad_peer);
    ret = g_test_run();

    link_test_certs_remove(t_dir);
    g_free(t_dir);
    return ret;
}
