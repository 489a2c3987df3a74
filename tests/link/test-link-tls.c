/* GwLinkTls (gateway/link/gw-link-tls.c) over real loopback TCP, with the
 * certificates tests/link/make-certs.sh makes (run at start into a
 * temporary directory; the script's path comes in LINK_MAKE_CERTS).
 *
 * Acceptor and dialer run in this process on one main loop. A bad dialer
 * certificate is presented by a plain GIO TLS client (gw_link_tls_new()
 * refuses such certificates as our own); the acceptor tells it the
 * refusal as a line of text, standing in for gw_link_refuse(). */
#include <string.h>

#include <gio/gio.h>
#include <glib/gstdio.h>

#include "gw-link-tls.h"
#include "link-test-certs.h"
#include "policy.h"

#define T_TIMEOUT_MS 5000 /* handshakes that should complete */
#define T_SHORT_MS   300  /* handshakes that should time out */
#define T_GUARD_US   (20 * G_USEC_PER_SEC)
#define T_LINE_MAX   512

static gchar *t_dir; /* the certificates */

static gchar *
t_file(const gchar *name)
{
    return g_build_filename(t_dir, name, NULL);
}

/* GwLinkTls of NAME-cert.pem / NAME-key.pem with @ca (a file prefix). */
static GwLinkTls *
t_tls(const gchar *name, const gchar *ca)
{
    g_autofree gchar *cert = g_strdup_printf("%s/%s-cert.pem", t_dir, name);
    g_autofree gchar *key = g_strdup_printf("%s/%s-key.pem", t_dir, name);
    g_autofree gchar *ca_file = g_strdup_printf("%s/%s-cert.pem", t_dir, ca);
    g_autoptr(GError) error = NULL;
    GwLinkTls *tls = gw_link_tls_new(cert, key, ca_file, &error);

    g_assert_no_error(error);
    g_assert_cmpstr(gw_link_tls_get_name(tls), ==, name);
    return tls;
}

/* Runs the main loop until every flag is set (or fails the test). */
static void
t_wait(gboolean *a, gboolean *b)
{
    gint64 end = g_get_monotonic_time() + T_GUARD_US;

    while (!(*a && (!b || *b))) {
        g_assert_cmpint(g_get_monotonic_time(), <, end);
        g_main_context_iteration(NULL, TRUE);
    }
}

static GSocketListener *
t_listener(guint16 *port)
{
    g_autoptr(GInetAddress) lo = g_inet_address_new_loopback(G_SOCKET_FAMILY_IPV4);
    g_autoptr(GSocketAddress) addr = g_inet_socket_address_new(lo, 0);
    g_autoptr(GSocketAddress) bound = NULL;
    g_autoptr(GError) error = NULL;
    GSocketListener *listener = g_socket_listener_new();

    g_socket_listener_add_address(listener, addr, G_SOCKET_TYPE_STREAM, G_SOCKET_PROTOCOL_TCP, NULL,
                                  &bound, &error);
    g_assert_no_error(error);
    *port = g_inet_socket_address_get_port(G_INET_SOCKET_ADDRESS(bound));
    return listener;
}

/* Reads up to a newline or the end of @stream (blocking: the other side
 * wrote already or closed). */
static gchar *
t_read_line(GIOStream *stream)
{
    GInputStream *in = g_io_stream_get_input_stream(stream);
    GString *line = g_string_new(NULL);
    gchar c;

    while (line->len < T_LINE_MAX && g_input_stream_read(in, &c, 1, NULL, NULL) == 1 && c != '\n')
        g_string_append_c(line, c);
    return g_string_free(line, FALSE);
}

static void
t_write(GIOStream *stream, const gchar *text)
{
    g_autoptr(GError) error = NULL;

    g_output_stream_write_all(g_io_stream_get_output_stream(stream), text, strlen(text), NULL, NULL,
                              &error);
    g_assert_no_error(error);
}

/* ---- the acceptor ------------------------------------------------------ */

typedef struct {
    GwLinkTls *tls; /* borrowed */
    guint timeout_ms;
    GSocketListener *listener; /* owned */
    guint16 port;
    gboolean done;
    GIOStream *stream; /* owned, nullable */
    gchar *peer_name;  /* owned, nullable */
    GError *refusal;   /* owned, nullable */
    GError *error;     /* owned, nullable */
} TAcceptor;

static void
t_acceptor_tls_done(GObject *source, GAsyncResult *result, gpointer data)
{
    TAcceptor *a = data;

    a->stream = gw_link_tls_accept_finish(a->tls, result, &a->peer_name, &a->refusal, &a->error);
    /* A refused dialer is told why, as gw_link_refuse() would. */
    if (a->stream && a->refusal) {
        g_autofree gchar *line = g_strdup_printf("REFUSED %s\n", a->refusal->message);

        t_write(a->stream, line);
    }
    a->done = TRUE;
}

static void
t_acceptor_tcp_done(GObject *source, GAsyncResult *result, gpointer data)
{
    TAcceptor *a = data;
    g_autoptr(GSocketConnection) conn =
        g_socket_listener_accept_finish(G_SOCKET_LISTENER(source), result, NULL, &a->error);

    if (!conn) {
        a->done = TRUE;
        return;
    }
    gw_link_tls_accept_async(a->tls, conn, a->timeout_ms, NULL, t_acceptor_tls_done, a);
}

static void
t_acceptor_start(TAcceptor *a, GwLinkTls *tls, guint timeout_ms)
{
    memset(a, 0, sizeof(*a));
    a->tls = tls;
    a->timeout_ms = timeout_ms;
    a->listener = t_listener(&a->port);
    g_socket_listener_accept_async(a->listener, NULL, t_acceptor_tcp_done, a);
}

static void
t_acceptor_clear(TAcceptor *a)
{
    g_socket_listener_close(a->listener);
    g_clear_object(&a->listener);
    g_clear_object(&a->stream);
    g_clear_pointer(&a->peer_name, g_free);
    g_clear_error(&a->refusal);
    g_clear_error(&a->error);
}

/* ---- dialers ------------------------------------------------------------ */

typedef struct {
    gboolean done;
    GIOStream *stream; /* owned, nullable */
    GError *error;     /* owned, nullable */
    gint64 started;    /* monotonic µs */
    gint64 elapsed;    /* µs until done */
} TDialer;

static void
t_dialer_clear(TDialer *d)
{
    g_clear_object(&d->stream);
    g_clear_error(&d->error);
}

typedef struct {
    GwLinkTls *tls;
    TDialer *d;
} TDialCall;

static void
t_dial_trampoline(GObject *source, GAsyncResult *result, gpointer data)
{
    TDialCall *c = data;

    c->d->stream = gw_link_tls_connect_finish(c->tls, result, &c->d->error);
    c->d->elapsed = g_get_monotonic_time() - c->d->started;
    c->d->done = TRUE;
    g_free(c);
}

static void
t_dial_cancellable(TDialer *d, GwLinkTls *tls, const gchar *address, const gchar *peer,
                   guint timeout_ms, GCancellable *cancellable)
{
    TDialCall *c = g_new0(TDialCall, 1);

    memset(d, 0, sizeof(*d));
    c->tls = tls;
    c->d = d;
    d->started = g_get_monotonic_time();
    gw_link_tls_connect_async(tls, address, peer, timeout_ms, cancellable, t_dial_trampoline, c);
}

static void
t_dial(TDialer *d, GwLinkTls *tls, const gchar *address, const gchar *peer, guint timeout_ms)
{
    t_dial_cancellable(d, tls, address, peer, timeout_ms, NULL);
}

static gchar *
t_loopback(guint16 port)
{
    return g_strdup_printf("127.0.0.1:%u", port);
}

static gboolean
t_accept_any(GTlsConnection *conn, GTlsCertificate *peer, GTlsCertificateFlags errors,
             gpointer user_data)
{
    return TRUE;
}

static void
t_raw_handshaken(GObject *source, GAsyncResult *result, gpointer data)
{
    TDialer *d = data;

    if (!g_tls_connection_handshake_finish(G_TLS_CONNECTION(source), result, &d->error))
        g_clear_object(&d->stream);
    d->done = TRUE;
}

/* A plain GIO TLS client presenting @cert_name's certificate (NULL: none),
 * trusting the link CA, accepting any acceptor. */
static void
t_raw_dial(TDialer *d, guint16 port, const gchar *cert_name)
{
    g_autoptr(GSocketClient) client = g_socket_client_new();
    g_autoptr(GSocketConnection) conn = NULL;
    g_autofree gchar *ca_file = t_file("ca-cert.pem");
    g_autoptr(GTlsDatabase) ca = NULL;
    g_autoptr(GError) error = NULL;

    memset(d, 0, sizeof(*d));
    conn = g_socket_client_connect_to_host(client, "127.0.0.1", port, NULL, &error);
    g_assert_no_error(error);
    d->stream = g_tls_client_connection_new(G_IO_STREAM(conn), NULL, &error);
    g_assert_no_error(error);
    ca = g_tls_file_database_new(ca_file, &error);
    g_assert_no_error(error);
    g_tls_connection_set_database(G_TLS_CONNECTION(d->stream), ca);
    if (cert_name) {
        g_autofree gchar *cert_file = g_strdup_printf("%s/%s-cert.pem", t_dir, cert_name);
        g_autofree gchar *key_file = g_strdup_printf("%s/%s-key.pem", t_dir, cert_name);
        g_autoptr(GTlsCertificate) cert =
            g_tls_certificate_new_from_files(cert_file, key_file, &error);

        g_assert_no_error(error);
        g_tls_connection_set_certificate(G_TLS_CONNECTION(d->stream), cert);
    }
    g_signal_connect(d->stream, "accept-certificate", G_CALLBACK(t_accept_any), NULL);
    g_tls_connection_handshake_async(G_TLS_CONNECTION(d->stream), G_PRIORITY_DEFAULT, NULL,
                                     t_raw_handshaken, d);
}

/* A plain TCP connection to @port (connected by the kernel's backlog). */
static GSocketConnection *
t_plain_connect(guint16 port)
{
    g_autoptr(GSocketClient) client = g_socket_client_new();
    g_autoptr(GError) error = NULL;
    GSocketConnection *conn =
        g_socket_client_connect_to_host(client, "127.0.0.1", port, NULL, &error);

    g_assert_no_error(error);
    return conn;
}

/* ---- tests ---------------------------------------------------------------- */

static void
test_name_is_valid(void)
{
    static const struct {
        const gchar *name;
        gboolean valid;
    } cases[] = {
        {"alpha", TRUE},
        {"gw-1.example_2", TRUE},
        {"0", TRUE},
        {"A1", TRUE},
        {"", FALSE},
        {"-alpha", FALSE},
        {".alpha", FALSE},
        {"_a", FALSE},
        {"bad name", FALSE},
        {"a/b", FALSE},
        {"a,b", FALSE},
        {"gamma\n", FALSE},
        {"é", FALSE},
        {"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", TRUE},   /* 64 */
        {"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", FALSE}, /* 65 */
    };

    for (guint i = 0; i < G_N_ELEMENTS(cases); i++)
        g_assert_cmpint(policy_gateway_name_is_valid(cases[i].name), ==, cases[i].valid);
    g_assert_false(policy_gateway_name_is_valid(NULL));
}

/* The good pair: both ends learn the other's name and the stream carries
 * bytes both ways. */
static void
test_good_pair(void)
{
    g_autoptr(GwLinkTls) alpha = t_tls("alpha", "ca");
    g_autoptr(GwLinkTls) beta = t_tls("beta", "ca");
    g_autofree gchar *address = NULL;
    g_autofree gchar *got = NULL;
    TAcceptor a;
    TDialer d;

    t_acceptor_start(&a, alpha, T_TIMEOUT_MS);
    address = t_loopback(a.port);
    t_dial(&d, beta, address, "alpha", T_TIMEOUT_MS);
    t_wait(&a.done, &d.done);

    g_assert_no_error(a.error);
    g_assert_no_error(a.refusal);
    g_assert_nonnull(a.stream);
    g_assert_cmpstr(a.peer_name, ==, "beta");
    g_assert_no_error(d.error);
    g_assert_nonnull(d.stream);
    g_assert_true(G_IS_TLS_CONNECTION(d.stream));

    t_write(d.stream, "from beta\n");
    got = t_read_line(a.stream);
    g_assert_cmpstr(got, ==, "from beta");
    g_free(got);
    t_write(a.stream, "from alpha\n");
    got = t_read_line(d.stream);
    g_assert_cmpstr(got, ==, "from alpha");

    t_acceptor_clear(&a);
    t_dialer_clear(&d);
}

/* A dialer with a bad (or no) certificate: the handshake completes, the
 * acceptor has a stream and a refusal saying why, and the dialer reads
 * that refusal. */
static void
test_bad_dialer(gconstpointer data)
{
    static const struct {
        const gchar *cert; /* NULL: none */
        const gchar *refusal;
        gint code;
    } cases[] = {
        {NULL, "no client certificate", G_TLS_ERROR_CERTIFICATE_REQUIRED},
        {"foreign", "certificate not issued by the link CA", G_TLS_ERROR_BAD_CERTIFICATE},
        {"expired", "certificate expired on 2021-01-01 00:00:00 UTC", G_TLS_ERROR_BAD_CERTIFICATE},
        {"notyet", "certificate not valid before 2090-01-01 00:00:00 UTC",
         G_TLS_ERROR_BAD_CERTIFICATE},
        {"badcn", "certificate names no valid gateway: CN \"bad name/x\" is not a gateway name",
         G_TLS_ERROR_BAD_CERTIFICATE},
        {"twocn", "certificate names no valid gateway: its subject \"CN=alpha,CN=beta\" has 2 CNs",
         G_TLS_ERROR_BAD_CERTIFICATE},
        {"escaped",
         "certificate names no valid gateway: the CN in its subject \"CN=a\\\\,b\" is escaped or "
         "encoded",
         G_TLS_ERROR_BAD_CERTIFICATE},
        {"nocn", "certificate names no valid gateway: its subject \"O=usbgw\" has no CN",
         G_TLS_ERROR_BAD_CERTIFICATE},
    };
    guint i = GPOINTER_TO_UINT(data);
    g_autoptr(GwLinkTls) alpha = t_tls("alpha", "ca");
    g_autofree gchar *told = NULL;
    g_autofree gchar *want = g_strdup_printf("REFUSED %s", cases[i].refusal);
    TAcceptor a;
    TDialer d;

    t_acceptor_start(&a, alpha, T_TIMEOUT_MS);
    t_raw_dial(&d, a.port, cases[i].cert);
    t_wait(&a.done, &d.done);

    g_assert_no_error(a.error);
    g_assert_nonnull(a.stream);
    g_assert_null(a.peer_name);
    g_assert_error(a.refusal, G_TLS_ERROR, cases[i].code);
    g_assert_cmpstr(a.refusal->message, ==, cases[i].refusal);
    g_assert_no_error(d.error);
    g_assert_nonnull(d.stream);
    told = t_read_line(d.stream);
    g_assert_cmpstr(told, ==, want);

    t_acceptor_clear(&a);
    t_dialer_clear(&d);
}

/* The dialer refuses the acceptor: its certificate names another gateway
 * than the dialer meant, or it and its CA are another cluster's. The
 * acceptor's handshake may have completed before the dialer left: then it
 * saw the dialer as its own CA tells. */
static void
test_acceptor_refused(void)
{
    static const struct {
        const gchar *acceptor, *acceptor_ca, *peer;
        const gchar *error;   /* after "link to PEER at ADDRESS: acceptor refused: " */
        const gchar *dialer;  /* the acceptor's verdict: a name, or */
        const gchar *refusal; /* a refusal */
    } cases[] = {
        {"alpha", "ca", "gamma", "its certificate names gateway \"alpha\"", "beta", NULL},
        {"foreign", "other-ca", "foreign", "certificate not issued by the link CA", NULL,
         "certificate not issued by the link CA"},
    };
    g_autoptr(GwLinkTls) beta = t_tls("beta", "ca");

    for (guint i = 0; i < G_N_ELEMENTS(cases); i++) {
        g_autoptr(GwLinkTls) acceptor = t_tls(cases[i].acceptor, cases[i].acceptor_ca);
        g_autofree gchar *address = NULL;
        g_autofree gchar *want = NULL;
        TAcceptor a;
        TDialer d;

        t_acceptor_start(&a, acceptor, T_TIMEOUT_MS);
        address = t_loopback(a.port);
        t_dial(&d, beta, address, cases[i].peer, T_TIMEOUT_MS);
        t_wait(&a.done, &d.done);

        g_assert_null(d.stream);
        g_assert_error(d.error, G_TLS_ERROR, G_TLS_ERROR_BAD_CERTIFICATE);
        want = g_strdup_printf("link to %s at %s: acceptor refused: %s", cases[i].peer, address,
                               cases[i].error);
        g_assert_cmpstr(d.error->message, ==, want);
        g_test_message("acceptor: %s", a.error ? a.error->message : "handshake completed");
        if (!a.error) {
            g_assert_nonnull(a.stream);
            g_assert_cmpstr(a.peer_name, ==, cases[i].dialer);
            if (cases[i].refusal)
                g_assert_cmpstr(a.refusal->message, ==, cases[i].refusal);
            else
                g_assert_no_error(a.refusal);
        }
        t_acceptor_clear(&a);
        t_dialer_clear(&d);
    }
}

/* Nobody listens: the dialer fails fast, naming the address. */
static void
test_refused_port(void)
{
    g_autoptr(GwLinkTls) beta = t_tls("beta", "ca");
    g_autoptr(GSocketListener) listener = NULL;
    g_autofree gchar *address = NULL;
    guint16 port;
    TDialer d;

    /* A port that was free a moment ago, closed again. */
    listener = t_listener(&port);
    g_socket_listener_close(listener);
    address = t_loopback(port);
    t_dial(&d, beta, address, "alpha", T_TIMEOUT_MS);
    t_wait(&d.done, NULL);

    g_assert_null(d.stream);
    g_assert_error(d.error, G_IO_ERROR, G_IO_ERROR_CONNECTION_REFUSED);
    g_assert_true(g_str_has_prefix(d.error->message, "link to alpha at "));
    g_assert_nonnull(strstr(d.error->message, address));
    g_assert_nonnull(strstr(d.error->message, "connecting failed"));
    g_assert_cmpint(d.elapsed, <, T_TIMEOUT_MS * 1000);
    t_dialer_clear(&d);
}

/* A listener that never accepts (the kernel completes the TCP connect,
 * nobody answers the TLS hello): the dialer times out on time. */
static void
test_silent_acceptor(void)
{
    g_autoptr(GwLinkTls) beta = t_tls("beta", "ca");
    g_autoptr(GSocketListener) listener = NULL;
    g_autofree gchar *address = NULL;
    g_autofree gchar *want = NULL;
    guint16 port;
    TDialer d;

    listener = t_listener(&port);
    address = t_loopback(port);
    t_dial(&d, beta, address, "alpha", T_SHORT_MS);
    t_wait(&d.done, NULL);

    g_assert_null(d.stream);
    g_assert_error(d.error, G_IO_ERROR, G_IO_ERROR_TIMED_OUT);
    want = g_strdup_printf("link to alpha at %s: no TLS connection within %u ms (TLS handshake "
                           "did not finish)",
                           address, T_SHORT_MS);
    g_assert_cmpstr(d.error->message, ==, want);
    g_assert_cmpint(d.elapsed, >=, (T_SHORT_MS - 50) * 1000);
    g_assert_cmpint(d.elapsed, <, (T_SHORT_MS + 2000) * 1000);
    g_socket_listener_close(listener);
    t_dialer_clear(&d);
}

static gboolean
t_cancel(gpointer data)
{
    g_cancellable_cancel(data);
    return G_SOURCE_REMOVE;
}

/* The caller cancels a dial the silent acceptor would let run into its
 * timeout: it ends at once, cancelled. */
static void
test_cancel(void)
{
    g_autoptr(GwLinkTls) beta = t_tls("beta", "ca");
    g_autoptr(GSocketListener) listener = NULL;
    g_autoptr(GCancellable) cancellable = g_cancellable_new();
    g_autofree gchar *address = NULL;
    guint16 port;
    TDialer d;

    listener = t_listener(&port);
    address = t_loopback(port);
    t_dial_cancellable(&d, beta, address, "alpha", T_TIMEOUT_MS, cancellable);
    g_timeout_add(50, t_cancel, cancellable);
    t_wait(&d.done, NULL);

    g_assert_null(d.stream);
    g_assert_error(d.error, G_IO_ERROR, G_IO_ERROR_CANCELLED);
    g_assert_cmpint(d.elapsed, <, (T_TIMEOUT_MS / 2) * 1000);
    g_socket_listener_close(listener);
    t_dialer_clear(&d);
}

/* A dialer that connects and says nothing: the acceptor times out. */
static void
test_silent_dialer(void)
{
    g_autoptr(GwLinkTls) alpha = t_tls("alpha", "ca");
    g_autoptr(GSocketConnection) plain = NULL;
    gint64 started = g_get_monotonic_time();
    TAcceptor a;

    t_acceptor_start(&a, alpha, T_SHORT_MS);
    plain = t_plain_connect(a.port);
    t_wait(&a.done, NULL);

    g_assert_null(a.stream);
    g_assert_error(a.error, G_IO_ERROR, G_IO_ERROR_TIMED_OUT);
    g_assert_true(g_str_has_prefix(a.error->message, "link from 127.0.0.1:"));
    g_assert_nonnull(strstr(a.error->message, "no TLS connection within 300 ms"));
    g_assert_cmpint(g_get_monotonic_time() - started, <, (T_SHORT_MS + 2000) * 1000);
    t_acceptor_clear(&a);
}

/* A dialer that speaks plain text: the acceptor's handshake fails. */
static void
test_plain_dialer(void)
{
    g_autoptr(GwLinkTls) alpha = t_tls("alpha", "ca");
    g_autoptr(GSocketConnection) plain = NULL;
    TAcceptor a;

    t_acceptor_start(&a, alpha, T_TIMEOUT_MS);
    plain = t_plain_connect(a.port);
    t_write(G_IO_STREAM(plain), "GET / HTTP/1.0\r\n\r\n");
    t_wait(&a.done, NULL);

    g_assert_null(a.stream);
    g_assert_nonnull(a.error);
    g_assert_false(g_error_matches(a.error, G_IO_ERROR, G_IO_ERROR_TIMED_OUT));
    g_assert_true(g_str_has_prefix(a.error->message, "link from 127.0.0.1:"));
    g_assert_nonnull(strstr(a.error->message, ": TLS handshake failed: "));
    t_acceptor_clear(&a);
}

static void
t_plain_greet(GObject *source, GAsyncResult *result, gpointer data)
{
    GSocketConnection **conn = data;

    *conn = g_socket_listener_accept_finish(G_SOCKET_LISTENER(source), result, NULL, NULL);
    g_assert_nonnull(*conn);
    t_write(G_IO_STREAM(*conn), "220 plain text here\r\n");
}

/* An acceptor that speaks plain text: the dialer's handshake fails. */
static void
test_plain_acceptor(void)
{
    g_autoptr(GwLinkTls) beta = t_tls("beta", "ca");
    g_autoptr(GSocketListener) listener = NULL;
    g_autoptr(GSocketConnection) plain = NULL;
    g_autofree gchar *address = NULL;
    g_autofree gchar *prefix = NULL;
    guint16 port;
    TDialer d;

    listener = t_listener(&port);
    g_socket_listener_accept_async(listener, NULL, t_plain_greet, &plain);
    address = t_loopback(port);
    t_dial(&d, beta, address, "alpha", T_TIMEOUT_MS);
    t_wait(&d.done, NULL);

    g_assert_null(d.stream);
    g_assert_nonnull(d.error);
    g_assert_false(g_error_matches(d.error, G_IO_ERROR, G_IO_ERROR_TIMED_OUT));
    prefix = g_strdup_printf("link to alpha at %s: TLS handshake failed: ", address);
    g_assert_true(g_str_has_prefix(d.error->message, prefix));
    g_socket_listener_close(listener);
    t_dialer_clear(&d);
}

/* Addresses and peer names the dialer refuses before any I/O. */
static void
test_bad_address(void)
{
    static const struct {
        const gchar *address;
        const gchar *peer;
        const gchar *message;
    } cases[] = {
        {"127.0.0.1", "alpha", "link to alpha at 127.0.0.1: the address has no port"},
        {"[::1", "alpha", "link to alpha at [::1: not a host:port address: "},
        {"127.0.0.1:1", "bad name",
         "link to bad name at 127.0.0.1:1: \"bad name\" is not a "
         "gateway name"},
    };
    g_autoptr(GwLinkTls) beta = t_tls("beta", "ca");

    for (guint i = 0; i < G_N_ELEMENTS(cases); i++) {
        TDialer d;

        t_dial(&d, beta, cases[i].address, cases[i].peer, T_TIMEOUT_MS);
        t_wait(&d.done, NULL);
        g_assert_null(d.stream);
        g_assert_error(d.error, G_IO_ERROR, G_IO_ERROR_INVALID_ARGUMENT);
        g_assert_true(g_str_has_prefix(d.error->message, cases[i].message));
        t_dialer_clear(&d);
    }
}

/* IPv6 in brackets reaches an IPv6 acceptor (skipped without ::1). */
static void
test_ipv6(void)
{
    g_autoptr(GwLinkTls) alpha = t_tls("alpha", "ca");
    g_autoptr(GwLinkTls) beta = t_tls("beta", "ca");
    g_autoptr(GInetAddress) lo = g_inet_address_new_loopback(G_SOCKET_FAMILY_IPV6);
    g_autoptr(GSocketAddress) addr = g_inet_socket_address_new(lo, 0);
    g_autoptr(GSocketAddress) bound = NULL;
    g_autoptr(GError) error = NULL;
    g_autofree gchar *address = NULL;
    TAcceptor a;
    TDialer d;

    memset(&a, 0, sizeof(a));
    a.tls = alpha;
    a.timeout_ms = T_TIMEOUT_MS;
    a.listener = g_socket_listener_new();
    if (!g_socket_listener_add_address(a.listener, addr, G_SOCKET_TYPE_STREAM,
                                       G_SOCKET_PROTOCOL_TCP, NULL, &bound, &error)) {
        g_test_skip(error->message);
        t_acceptor_clear(&a);
        return;
    }
    a.port = g_inet_socket_address_get_port(G_INET_SOCKET_ADDRESS(bound));
    g_socket_listener_accept_async(a.listener, NULL, t_acceptor_tcp_done, &a);
    address = g_strdup_printf("[::1]:%u", a.port);
    t_dial(&d, beta, address, "alpha", T_TIMEOUT_MS);
    t_wait(&a.done, &d.done);

    g_assert_no_error(d.error);
    g_assert_no_error(a.error);
    g_assert_no_error(a.refusal);
    g_assert_cmpstr(a.peer_name, ==, "beta");
    t_acceptor_clear(&a);
    t_dialer_clear(&d);
}

/* gw_link_tls_new() on bad files: each error names the file and says
 * what is wrong. Files: a name in the certificate directory, or a made-up
 * one. */
static void
test_new_errors(void)
{
    static const struct {
        const gchar *cert, *key, *ca;
        const gchar *want[2]; /* substrings of the message (file:, what) */
    } cases[] = {
        {"missing-cert.pem", "alpha-key.pem", "ca-cert.pem", {"missing-cert.pem", "No such file"}},
        {"alpha-cert.pem", "missing-key.pem", "ca-cert.pem", {"missing-key.pem", "No such file"}},
        {"alpha-cert.pem", "alpha-key.pem", "missing-ca.pem", {"missing-ca.pem", "No such file"}},
        {"garbage.pem", "alpha-key.pem", "ca-cert.pem", {"garbage.pem: ", "Could not parse"}},
        {"text.pem", "alpha-key.pem", "ca-cert.pem", {"text.pem: ", "holds no PEM certificate"}},
        {"alpha-cert.pem", "garbage.pem", "ca-cert.pem", {"garbage.pem: ", ""}},
        {"alpha-cert.pem", "alpha-key.pem", "garbage.pem", {"garbage.pem: ", "Could not parse"}},
        {"alpha-cert.pem", "alpha-key.pem", "text.pem", {"text.pem: ", "holds no PEM certificate"}},
        {"alpha-cert.pem", "alpha-cert.pem", "ca-cert.pem", {"alpha-cert.pem: ", ""}},
        {"alpha-cert.pem",
         "beta-key.pem",
         "ca-cert.pem",
         {"beta-key.pem: not the key of the certificate in ", "alpha-cert.pem"}},
        {"foreign-cert.pem",
         "foreign-key.pem",
         "ca-cert.pem",
         {"foreign-cert.pem: certificate not issued by the link CA (link CA ", "ca-cert.pem)"}},
        {"alpha-cert.pem",
         "alpha-key.pem",
         "other-ca-cert.pem",
         {"alpha-cert.pem: certificate not issued by the link CA", "other-ca-cert.pem"}},
        {"expired-cert.pem",
         "expired-key.pem",
         "ca-cert.pem",
         {"expired-cert.pem: certificate expired on 2021-01-01 00:00:00 UTC", ""}},
        {"notyet-cert.pem",
         "notyet-key.pem",
         "ca-cert.pem",
         {"notyet-cert.pem: certificate not valid before 2090-01-01 00:00:00 UTC", ""}},
        {"badcn-cert.pem",
         "badcn-key.pem",
         "ca-cert.pem",
         {"badcn-cert.pem: certificate names no valid gateway", "\"bad name/x\""}},
    };
    g_autofree gchar *garbage = t_file("garbage.pem");
    g_autofree gchar *text = t_file("text.pem");
    g_autoptr(GError) error = NULL;

    g_file_set_contents(garbage, "garbage\n\x01\x02-----BEGIN CERTIFICATE-----\nxx\n", -1, &error);
    g_assert_no_error(error);
    g_file_set_contents(text, "no certificate here\n", -1, &error);
    g_assert_no_error(error);
    for (guint i = 0; i < G_N_ELEMENTS(cases); i++) {
        g_autofree gchar *cert = t_file(cases[i].cert);
        g_autofree gchar *key = t_file(cases[i].key);
        g_autofree gchar *ca = t_file(cases[i].ca);
        g_autoptr(GwLinkTls) tls = gw_link_tls_new(cert, key, ca, &error);

        g_test_message("case %u: %s", i, error ? error->message : "(no error)");
        g_assert_null(tls);
        g_assert_nonnull(error);
        g_assert_nonnull(strstr(error->message, cases[i].want[0]));
        g_assert_nonnull(strstr(error->message, cases[i].want[1]));
        g_clear_error(&error);
    }
}

/* Relative paths work (GIO's file database wants an absolute one). */
static void
test_new_relative(void)
{
    g_autofree gchar *cwd = g_get_current_dir();
    g_autoptr(GwLinkTls) tls = NULL;
    g_autoptr(GError) error = NULL;

    g_assert_cmpint(g_chdir(t_dir), ==, 0);
    tls = gw_link_tls_new("alpha-cert.pem", "alpha-key.pem", "ca-cert.pem", &error);
    g_assert_cmpint(g_chdir(cwd), ==, 0);
    g_assert_no_error(error);
    g_assert_cmpstr(gw_link_tls_get_name(tls), ==, "alpha");
}

static gboolean
t_tick(gpointer data)
{
    return G_SOURCE_CONTINUE;
}

int
main(int argc, char **argv)
{
    const gchar *names[] = {"alpha", "beta", NULL};
    const gchar *bad[] = {"none",  "foreign", "expired", "notyet",
                          "badcn", "twocn",   "escaped", "nocn"};
    int ret;

    g_test_init(&argc, &argv, NULL);
    t_dir = link_test_certs_make("test-link-tls", names);
    if (t_dir == NULL)
        return 1;
    /* Wakes the loop so t_wait() checks its guard. */
    g_timeout_add(100, t_tick, NULL);

    g_test_add_func("/link-tls/name-is-valid", test_name_is_valid);
    g_test_add_func("/link-tls/new-errors", test_new_errors);
    g_test_add_func("/link-tls/new-relative", test_new_relative);
    g_test_add_func("/link-tls/good-pair", test_good_pair);
    for (guint i = 0; i < G_N_ELEMENTS(bad); i++) {
        g_autofree gchar *path = g_strdup_printf("/link-tls/bad-dialer/%s", bad[i]);

        g_test_add_data_func(path, GUINT_TO_POINTER(i), test_bad_dialer);
    }
    g_test_add_func("/link-tls/acceptor-refused", test_acceptor_refused);
    g_test_add_func("/link-tls/refused-port", test_refused_port);
    g_test_add_func("/link-tls/silent-acceptor", test_silent_acceptor);
    g_test_add_func("/link-tls/silent-dialer", test_silent_dialer);
    g_test_add_func("/link-tls/cancel", test_cancel);
    g_test_add_func("/link-tls/plain-dialer", test_plain_dialer);
    g_test_add_func("/link-tls/plain-acceptor", test_plain_acceptor);
    g_test_add_func("/link-tls/bad-address", test_bad_address);
    g_test_add_func("/link-tls/ipv6", test_ipv6);
    ret = g_test_run();

    link_test_certs_remove(t_dir);
    g_free(t_dir);
    return ret;
}
