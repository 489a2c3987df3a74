/* link-wire: what the gateway-link wire (path D) would cost, one TLS
 * connection per device session or one multiplexed link, measured on
 * loopback with GIO TLS (glib-networking, GnuTLS) and mutual certificates.
 *
 *   link-wire-bench [--rounds N] [--handshakes N] [--pings N] [--hol-pings N]
 *
 * A throwaway CA, server and client certificate are made with openssl in a
 * temporary directory at start. Server and client live in this process:
 * each listener (TLS, plain TCP) has an accept thread that accepts, does
 * the server handshake (client certificate required and verified against
 * the CA) and hands the server end to the main thread. Every connection
 * carries frames of a 4-byte header (2-byte stream id, 2-byte length, big
 * endian) and a payload; a frame server thread per connection echoes
 * stream 1 and discards stream 2.
 *
 *   1. handshake: connect + handshake + both ends verified, vs TCP connect
 *   2. rss-per-conn: VmRSS slope over 1, 10, 100, 1000 idle connections
 *      (both ends counted: a child process per count, server and client in
 *      it), TLS vs TCP
 *   3. rtt: 64-byte payload ping-pong on one connection, TLS vs TCP
 *   4. hol: stream 1 pings on a TLS link while stream 2 pushes 16 KiB
 *      frames on the same link (mux) or on a second TLS link (separate).
 *      No flow control: a ping waits at most for the bulk frame being
 *      written, then for whatever bulk the socket and TLS already hold.
 *
 * Rounds interleave the variants and alternate their order. */
#include <stdarg.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include <gio/gio.h>
#include <glib/gstdio.h>
#include <netinet/in.h>
#include <netinet/tcp.h>

#include "bench-common.h"

#define LW_ROUNDS         5
#define LW_HANDSHAKES     50   /* per round and kind */
#define LW_PINGS          1000 /* timed, per round and variant */
#define LW_HOL_PINGS      1000
#define LW_WARMUP         200
#define LW_PAYLOAD        64
#define LW_BULK           16384
#define LW_HEADER         4
#define LW_STREAM_PING    1
#define LW_STREAM_BULK    2
#define LW_TIMEOUT_US     (10 * G_USEC_PER_SEC)
#define LW_BULK_SETTLE_US (100 * 1000) /* bulk runs this long before pings */
#define LW_NOFILE         4096

static const guint lw_rss_counts[] = {1, 10, 100, 1000};

/* ---- credentials ---------------------------------------------------------- */

typedef struct {
    gchar *dir;                   /* owned */
    GTlsCertificate *server_cert; /* owned */
    GTlsCertificate *client_cert; /* owned */
    GTlsDatabase *ca;             /* owned */
} LwCreds;

/* Runs "openssl ARGS" in @dir; @fmt is split like a shell would. */
static gboolean lw_openssl(const gchar *dir, GError **error, const gchar *fmt, ...)
    G_GNUC_PRINTF(3, 4);

static gboolean
lw_openssl(const gchar *dir, GError **error, const gchar *fmt, ...)
{
    g_autofree gchar *args = NULL, *cmd = NULL, *err = NULL;
    g_auto(GStrv) argv = NULL;
    va_list ap;
    gint status;

    va_start(ap, fmt);
    args = g_strdup_vprintf(fmt, ap);
    va_end(ap);
    cmd = g_strconcat("openssl ", args, NULL);
    if (!g_shell_parse_argv(cmd, NULL, &argv, error) ||
        !g_spawn_sync(dir, argv, NULL, G_SPAWN_SEARCH_PATH, NULL, NULL, NULL, &err, &status, error))
        return FALSE;
    if (!g_spawn_check_wait_status(status, NULL)) {
        g_set_error(error, G_IO_ERROR, G_IO_ERROR_FAILED, "%s: %s", cmd, err);
        return FALSE;
    }
    return TRUE;
}

/* The same shape as tests/gateway/test-share.py's certificates, plus a
 * client certificate: the link is mutually authenticated. */
static gboolean
lw_creds_make(const gchar *dir, GError **error)
{
    const gchar *names[] = {"server", "client"};
    const gchar *subjects[] = {"/CN=127.0.0.1", "/CN=usbgw bench gateway"};
    const gchar *exts[] = {"subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth\n",
                           "extendedKeyUsage=clientAuth\n"};

    if (!lw_openssl(dir, error,
                    "req -x509 -newkey rsa:2048 -nodes -days 2 -subj '/CN=usbgw bench CA' "
                    "-keyout ca-key.pem -out ca-cert.pem"))
        return FALSE;
    for (guint i = 0; i < 2; i++) {
        g_autofree gchar *ext = g_strdup_printf("%s/%s.ext", dir, names[i]);
        const gchar *n = names[i];

        if (!g_file_set_contents(ext, exts[i], -1, error) ||
            !lw_openssl(dir, error,
                        "req -newkey rsa:2048 -nodes -subj '%s' -keyout %s-key.pem -out %s.csr",
                        subjects[i], n, n) ||
            !lw_openssl(dir, error,
                        "x509 -req -in %s.csr -CA ca-cert.pem -CAkey ca-key.pem -CAcreateserial "
                        "-days 2 -extfile %s.ext -out %s-cert.pem",
                        n, n, n))
            return FALSE;
    }
    return TRUE;
}

static gboolean
lw_creds_load(LwCreds *c, const gchar *dir, GError **error)
{
    g_autofree gchar *ca = g_build_filename(dir, "ca-cert.pem", NULL);
    g_autofree gchar *sc = g_build_filename(dir, "server-cert.pem", NULL);
    g_autofree gchar *sk = g_build_filename(dir, "server-key.pem", NULL);
    g_autofree gchar *cc = g_build_filename(dir, "client-cert.pem", NULL);
    g_autofree gchar *ck = g_build_filename(dir, "client-key.pem", NULL);

    c->dir = g_strdup(dir);
    c->server_cert = g_tls_certificate_new_from_files(sc, sk, error);
    if (!c->server_cert)
        return FALSE;
    c->client_cert = g_tls_certificate_new_from_files(cc, ck, error);
    if (!c->client_cert)
        return FALSE;
    c->ca = g_tls_file_database_new(ca, error);
    return c->ca != NULL;
}

static void
lw_creds_clear(LwCreds *c)
{
    g_clear_object(&c->server_cert);
    g_clear_object(&c->client_cert);
    g_clear_object(&c->ca);
    g_clear_pointer(&c->dir, g_free);
}

/* ---- the server: an accept thread per listener ---------------------------- */

typedef struct {
    GIOStream *stream; /* owned, nullable */
    GError *error;     /* owned, nullable */
} LwAccepted;

typedef struct {
    LwCreds *creds; /* nullable: plain TCP */
    GSocketListener *listener;
    guint16 port;
    GCancellable *cancel;
    GAsyncQueue *accepted; /* of LwAccepted */
    GThread *thread;
} LwServer;

static void
lw_set_nodelay(GSocketConnection *conn)
{
    /* Best effort: without it the figures would include Nagle's delay. */
    g_socket_set_option(g_socket_connection_get_socket(conn), IPPROTO_TCP, TCP_NODELAY, 1, NULL);
}

/* GIO asks a server's handler about every client certificate, even one
 * its database verified: accept exactly those. */
static gboolean
lw_accept_client(GTlsConnection *conn, GTlsCertificate *peer, GTlsCertificateFlags errors,
                 gpointer user_data)
{
    return errors == 0;
}

static gpointer
lw_accept_thread(gpointer data)
{
    LwServer *s = data;

    for (;;) {
        LwAccepted *a = g_new0(LwAccepted, 1);
        g_autoptr(GSocketConnection) conn =
            g_socket_listener_accept(s->listener, NULL, s->cancel, &a->error);

        if (conn && !s->creds) {
            lw_set_nodelay(conn);
            a->stream = G_IO_STREAM(g_steal_pointer(&conn));
        } else if (conn) {
            lw_set_nodelay(conn);
            a->stream =
                g_tls_server_connection_new(G_IO_STREAM(conn), s->creds->server_cert, &a->error);
            if (a->stream) {
                g_object_set(a->stream, "authentication-mode", G_TLS_AUTHENTICATION_REQUIRED, NULL);
                g_tls_connection_set_database(G_TLS_CONNECTION(a->stream), s->creds->ca);
                g_signal_connect(a->stream, "accept-certificate", G_CALLBACK(lw_accept_client),
                                 NULL);
                if (!g_tls_connection_handshake(G_TLS_CONNECTION(a->stream), NULL, &a->error))
                    g_clear_object(&a->stream);
            }
        }
        if (a->error && g_error_matches(a->error, G_IO_ERROR, G_IO_ERROR_CANCELLED)) {
            g_error_free(a->error);
            g_free(a);
            return NULL;
        }
        g_async_queue_push(s->accepted, a);
    }
}

static gboolean
lw_server_start(LwServer *s, LwCreds *creds, GError **error)
{
    g_autoptr(GInetAddress) lo = g_inet_address_new_loopback(G_SOCKET_FAMILY_IPV4);
    g_autoptr(GSocketAddress) addr = g_inet_socket_address_new(lo, 0);
    g_autoptr(GSocketAddress) bound = NULL;

    s->creds = creds;
    s->listener = g_socket_listener_new();
    g_socket_listener_set_backlog(s->listener, 128);
    if (!g_socket_listener_add_address(s->listener, addr, G_SOCKET_TYPE_STREAM,
                                       G_SOCKET_PROTOCOL_TCP, NULL, &bound, error))
        return FALSE;
    s->port = g_inet_socket_address_get_port(G_INET_SOCKET_ADDRESS(bound));
    s->cancel = g_cancellable_new();
    s->accepted = g_async_queue_new();
    s->thread = g_thread_new(creds ? "accept-tls" : "accept-tcp", lw_accept_thread, s);
    return TRUE;
}

static void
lw_server_stop(LwServer *s)
{
    if (!s->thread)
        return;
    g_cancellable_cancel(s->cancel);
    g_thread_join(s->thread);
    g_socket_listener_close(s->listener);
    g_clear_object(&s->listener);
    g_clear_object(&s->cancel);
    g_async_queue_unref(s->accepted);
}

/* ---- a connection: both ends, framed ------------------------------------- */

typedef struct {
    GIOStream *client;      /* owned */
    GIOStream *server;      /* owned */
    GMutex write_lock;      /* client side: one frame at a time */
    gint ping_waiting;      /* atomic: the bulk writer yields to a ping */
    gint stop_bulk;         /* atomic */
    GThread *server_thread; /* nullable: the frame server */
    GThread *bulk_thread;   /* nullable */
    GError *server_error;   /* owned, nullable: the frame server's */
    GError *bulk_error;     /* owned, nullable: the bulk writer's */
} LwConn;

/* A direct connection: no proxy lookup (GIO would ask libproxy). */
static GSocketClient *
lw_client_new(void)
{
    GSocketClient *client = g_socket_client_new();

    g_socket_client_set_enable_proxy(client, FALSE);
    return client;
}

/* Connects, handshakes (TLS) and waits for the server end: on return both
 * ends are established and, for TLS, both certificates verified. */
static LwConn *
lw_conn_open(LwServer *s, GSocketClient *client, GError **error)
{
    g_autoptr(GInetAddress) lo = g_inet_address_new_loopback(G_SOCKET_FAMILY_IPV4);
    g_autoptr(GSocketAddress) addr = g_inet_socket_address_new(lo, s->port);
    g_autoptr(GSocketConnection) conn =
        g_socket_client_connect(client, G_SOCKET_CONNECTABLE(addr), NULL, error);
    g_autoptr(GIOStream) stream = NULL;
    LwAccepted *a;
    LwConn *c;

    if (!conn)
        return NULL;
    lw_set_nodelay(conn);
    if (!s->creds) {
        stream = G_IO_STREAM(g_steal_pointer(&conn));
    } else {
        g_autoptr(GSocketConnectable) id = g_network_address_new("127.0.0.1", s->port);

        stream = g_tls_client_connection_new(G_IO_STREAM(conn), id, error);
        if (!stream)
            return NULL;
        /* Ask for full handshakes (a gateway back from a restart has no
         * session to resume) where the backend has the switch; the
         * glib-networking 2.74 this was run with has none. */
        if (g_object_class_find_property(G_OBJECT_GET_CLASS(stream), "session-resumption-enabled"))
            g_object_set(stream, "session-resumption-enabled", FALSE, NULL);
        g_tls_connection_set_certificate(G_TLS_CONNECTION(stream), s->creds->client_cert);
        g_tls_connection_set_database(G_TLS_CONNECTION(stream), s->creds->ca);
        if (!g_tls_connection_handshake(G_TLS_CONNECTION(stream), NULL, error))
            return NULL;
    }
    a = g_async_queue_timeout_pop(s->accepted, LW_TIMEOUT_US);
    if (!a) {
        g_set_error(error, G_IO_ERROR, G_IO_ERROR_TIMED_OUT, "no server end after %d s",
                    (int)(LW_TIMEOUT_US / G_USEC_PER_SEC));
        return NULL;
    }
    if (!a->stream) {
        g_propagate_prefixed_error(error, a->error, "server end: ");
        g_free(a);
        return NULL;
    }
    if (s->creds && (g_tls_connection_get_peer_certificate_errors(G_TLS_CONNECTION(a->stream)) ||
                     !g_tls_connection_get_peer_certificate(G_TLS_CONNECTION(a->stream)))) {
        g_set_error(error, G_IO_ERROR, G_IO_ERROR_FAILED, "server end: client not verified");
        g_object_unref(a->stream);
        g_free(a);
        return NULL;
    }
    c = g_new0(LwConn, 1);
    c->client = g_steal_pointer(&stream);
    c->server = a->stream;
    g_mutex_init(&c->write_lock);
    g_free(a);
    return c;
}

static gboolean
lw_write_frame(GIOStream *stream, guint16 id, const guint8 *data, guint16 len, GError **error)
{
    guint8 buf[LW_HEADER + LW_BULK];

    buf[0] = id >> 8;
    buf[1] = id & 0xff;
    buf[2] = len >> 8;
    buf[3] = len & 0xff;
    memcpy(buf + LW_HEADER, data, len);
    return g_output_stream_write_all(g_io_stream_get_output_stream(stream), buf, LW_HEADER + len,
                                     NULL, NULL, error);
}

/* FALSE with no error at a clean end of stream before a header. */
static gboolean
lw_read_frame(GIOStream *stream, guint16 *id, guint8 *data, guint16 *len, GError **error)
{
    GInputStream *in = g_io_stream_get_input_stream(stream);
    guint8 head[LW_HEADER];
    gsize got;

    if (!g_input_stream_read_all(in, head, LW_HEADER, &got, NULL, error))
        return FALSE;
    if (got == 0)
        return FALSE;
    *id = (head[0] << 8) | head[1];
    *len = (head[2] << 8) | head[3];
    if (got != LW_HEADER || *len > LW_BULK) {
        g_set_error(error, G_IO_ERROR, G_IO_ERROR_INVALID_DATA, "bad frame header (%zu bytes)",
                    got);
        return FALSE;
    }
    if (!g_input_stream_read_all(in, data, *len, &got, NULL, error))
        return FALSE;
    if (got != *len) {
        g_set_error(error, G_IO_ERROR, G_IO_ERROR_CLOSED, "frame cut after %zu of %u bytes", got,
                    *len);
        return FALSE;
    }
    return TRUE;
}

/* The server end: echoes stream 1, discards stream 2, until end of stream. */
static gpointer
lw_frame_server(gpointer data)
{
    LwConn *c = data;
    guint8 buf[LW_BULK];
    guint16 id, len;

    while (lw_read_frame(c->server, &id, buf, &len, &c->server_error)) {
        if (id == LW_STREAM_PING) {
            if (!lw_write_frame(c->server, id, buf, len, &c->server_error))
                return NULL;
        } else if (id != LW_STREAM_BULK) {
            g_set_error(&c->server_error, G_IO_ERROR, G_IO_ERROR_INVALID_DATA, "stream %u", id);
            return NULL;
        }
    }
    return NULL;
}

static gpointer
lw_bulk_writer(gpointer data)
{
    LwConn *c = data;
    static guint8 bulk[LW_BULK];
    gboolean ok = TRUE;

    while (ok && !g_atomic_int_get(&c->stop_bulk)) {
        while (g_atomic_int_get(&c->ping_waiting))
            g_thread_yield();
        g_mutex_lock(&c->write_lock);
        ok = lw_write_frame(c->client, LW_STREAM_BULK, bulk, LW_BULK, &c->bulk_error);
        g_mutex_unlock(&c->write_lock);
    }
    return NULL;
}

static void
lw_bulk_stop(LwConn *c)
{
    if (!c->bulk_thread)
        return;
    g_atomic_int_set(&c->stop_bulk, 1);
    g_thread_join(g_steal_pointer(&c->bulk_thread));
}

/* Closes both ends (joining the threads); FALSE with @error if any of
 * them failed. */
static gboolean
lw_conn_close(LwConn *c, GError **error)
{
    g_autoptr(GError) client_error = NULL;
    g_autoptr(GError) server_error = NULL;
    gboolean ok, error_set;

    lw_bulk_stop(c);
    ok = g_io_stream_close(c->client, NULL, &client_error);
    if (c->server_thread)
        g_thread_join(c->server_thread);
    error_set = c->server_error || c->bulk_error;
    /* The client said goodbye first; the server's close_notify may meet a
     * closed socket, which is not a failure of what was measured. */
    if (!g_io_stream_close(c->server, NULL, &server_error))
        g_debug("server end close: %s", server_error->message);
    if (!ok)
        g_propagate_prefixed_error(error, g_steal_pointer(&client_error), "close: ");
    else if (c->server_error)
        g_propagate_prefixed_error(error, g_steal_pointer(&c->server_error), "frame server: ");
    else if (c->bulk_error)
        g_propagate_prefixed_error(error, g_steal_pointer(&c->bulk_error), "bulk writer: ");
    ok = ok && !error_set;
    g_clear_error(&c->server_error);
    g_clear_error(&c->bulk_error);
    g_object_unref(c->client);
    g_object_unref(c->server);
    g_mutex_clear(&c->write_lock);
    g_free(c);
    return ok;
}

/* @n pings of a 64-byte payload on stream 1; the times (µs) go to @us
 * unless NULL. Every echo must be the payload sent. */
static gboolean
lw_ping(LwConn *c, guint n, GArray *us, GError **error)
{
    guint8 out[LW_PAYLOAD], back[LW_BULK];
    guint16 id, len;

    for (guint i = 0; i < n; i++) {
        gint64 t0;
        gboolean ok;

        memset(out, i & 0xff, sizeof out);
        t0 = bench_now_ns();
        g_atomic_int_set(&c->ping_waiting, 1);
        g_mutex_lock(&c->write_lock);
        ok = lw_write_frame(c->client, LW_STREAM_PING, out, LW_PAYLOAD, error);
        g_mutex_unlock(&c->write_lock);
        g_atomic_int_set(&c->ping_waiting, 0);
        if (!ok)
            return FALSE;
        if (!lw_read_frame(c->client, &id, back, &len, error)) {
            if (error && !*error)
                g_set_error(error, G_IO_ERROR, G_IO_ERROR_CLOSED, "closed during a ping");
            return FALSE;
        }
        if (id != LW_STREAM_PING || len != LW_PAYLOAD || memcmp(out, back, LW_PAYLOAD) != 0) {
            g_set_error(error, G_IO_ERROR, G_IO_ERROR_INVALID_DATA, "wrong echo (stream %u)", id);
            return FALSE;
        }
        if (us) {
            gdouble v = (bench_now_ns() - t0) / 1000.0;
            g_array_append_val(us, v);
        }
    }
    return TRUE;
}

/* ---- figures -------------------------------------------------------------- */

typedef struct {
    const gchar *name;
    GArray *all;       /* owned: every sample */
    GArray *round_p50; /* owned */
    GArray *round_p99; /* owned */
} LwFigure;

static void
lw_figure_init(LwFigure *f, const gchar *name)
{
    f->name = name;
    f->all = bench_new_doubles();
    f->round_p50 = bench_new_doubles();
    f->round_p99 = bench_new_doubles();
}

static void
lw_figure_add_round(LwFigure *f, GArray *round)
{
    gdouble p50 = bench_percentile(round, 50), p99 = bench_percentile(round, 99);

    g_array_append_vals(f->all, round->data, round->len);
    g_array_append_val(f->round_p50, p50);
    g_array_append_val(f->round_p99, p99);
}

static void
lw_figure_clear(LwFigure *f)
{
    g_array_unref(f->all);
    g_array_unref(f->round_p50);
    g_array_unref(f->round_p99);
}

/* "bench <name>-p50: …" and "-p99" of @cand against @base; @name
 * defaults to @cand's. */
static void
lw_figure_compare(const gchar *cname, LwFigure *cand, LwFigure *base)
{
    const gdouble ps[] = {50, 99};

    for (guint i = 0; i < 2; i++) {
        GArray *cr = i ? cand->round_p99 : cand->round_p50;
        GArray *br = i ? base->round_p99 : base->round_p50;
        g_autoptr(GArray) ratios = bench_pairwise(cr, br, BENCH_RATIO);
        g_autoptr(GArray) values = g_array_copy(cr);
        g_autofree gchar *name = g_strdup_printf("%s-p%.0f", cname ? cname : cand->name, ps[i]);
        g_autofree gchar *bname = g_strdup_printf("%s-p%.0f", base->name, ps[i]);
        gdouble c = bench_percentile(cand->all, ps[i]), b = bench_percentile(base->all, ps[i]);

        bench_print_compared(name, "us", c, bname, b, b != 0 ? c / b : 0, values, ratios);
    }
}

/* ---- 1. handshakes -------------------------------------------------------- */

static gboolean
lw_handshakes(LwServer *s, GSocketClient *client, guint n, GArray *us, GError **error)
{
    for (guint i = 0; i < n; i++) {
        gint64 t0 = bench_now_ns();
        LwConn *c = lw_conn_open(s, client, error);
        gdouble v;

        if (!c)
            return FALSE;
        v = (bench_now_ns() - t0) / 1000.0;
        g_array_append_val(us, v);
        if (!lw_conn_close(c, error))
            return FALSE;
    }
    return TRUE;
}

/* ---- 2. memory: a child per count ----------------------------------------- */

/* In the child: the RSS (KiB) that @n idle connections add, both ends. */
static int
lw_rss_child(const gchar *kind, guint n, const gchar *dir)
{
    g_autoptr(GError) error = NULL;
    g_autoptr(GSocketClient) client = lw_client_new();
    g_autoptr(GPtrArray) conns = g_ptr_array_new();
    LwCreds creds = {0};
    LwServer server = {0};
    gboolean tls = g_str_equal(kind, "tls");
    guint64 rss0;
    LwConn *warm;

    if ((tls && !lw_creds_load(&creds, dir, &error)) ||
        !lw_server_start(&server, tls ? &creds : NULL, &error))
        goto fail;
    /* Libraries and credentials in use before the first reading. */
    if (!(warm = lw_conn_open(&server, client, &error)) || !lw_conn_close(warm, &error))
        goto fail;
    rss0 = bench_proc_status_kib(getpid(), "VmRSS");
    for (guint i = 0; i < n; i++) {
        LwConn *c = lw_conn_open(&server, client, &error);
        if (!c)
            goto fail;
        g_ptr_array_add(conns, c);
    }
    g_print("%" G_GINT64_FORMAT "\n",
            (gint64)bench_proc_status_kib(getpid(), "VmRSS") - (gint64)rss0);
    return 0;
fail:
    g_printerr("link-wire-bench (rss child, %s, %u): %s\n", kind, n, error->message);
    return 1;
}

static gboolean
lw_rss_run(const gchar *self, const gchar *kind, guint n, const gchar *dir, gdouble *kib,
           GError **error)
{
    g_autofree gchar *count = g_strdup_printf("%u", n);
    const gchar *argv[] = {self, "--rss-child", kind, count, dir, NULL};
    g_autofree gchar *out = NULL;
    gint status;

    if (!g_spawn_sync(NULL, (gchar **)argv, NULL, G_SPAWN_CHILD_INHERITS_STDIN, NULL, NULL, &out,
                      NULL, &status, error) ||
        !g_spawn_check_wait_status(status, error))
        return FALSE;
    *kib = g_ascii_strtod(out, NULL);
    return TRUE;
}

/* Least-squares slope of @kib over lw_rss_counts. */
static gdouble
lw_slope(const gdouble *kib)
{
    guint k = G_N_ELEMENTS(lw_rss_counts);
    gdouble mx = 0, my = 0, sxy = 0, sxx = 0;

    for (guint i = 0; i < k; i++) {
        mx += lw_rss_counts[i] / (gdouble)k;
        my += kib[i] / k;
    }
    for (guint i = 0; i < k; i++) {
        sxy += (lw_rss_counts[i] - mx) * (kib[i] - my);
        sxx += (lw_rss_counts[i] - mx) * (lw_rss_counts[i] - mx);
    }
    return sxy / sxx;
}

/* ---- main ------------------------------------------------------------------ */

typedef enum {
    LW_HS_TLS,
    LW_HS_TCP,
    LW_RTT_TLS,
    LW_RTT_TCP,
    LW_MUX_IDLE, /* the four hol variants, in this order */
    LW_MUX_BULK,
    LW_SEP_IDLE,
    LW_SEP_BULK,
    LW_RSS_TLS,
    LW_RSS_TCP,
    LW_N_FIGURES,
} LwFigureId;

static const gchar *const lw_figure_names[LW_N_FIGURES] = {
    "link-handshake",   "tcp-connect",      "link-rtt-tls",      "rtt-tcp",
    "hol-mux-idle",     "hol-mux-bulk",     "hol-separate-idle", "hol-separate-bulk",
    "rss-per-conn-tls", "rss-per-conn-tcp",
};

typedef struct {
    gint rounds, handshakes, pings, hol_pings;
    gchar *self; /* owned: this program, for the rss children */
    LwCreds creds;
    LwServer tls, tcp;
    GSocketClient *client; /* owned */
    LwFigure fig[LW_N_FIGURES];
} LwBench;

/* Interleaving: the variant to run @k-th of @n in round @r (A B, B A, …). */
static guint
lw_order(gint r, guint k, guint n)
{
    return (r % 2) ? n - 1 - k : k;
}

/* Handshakes, then the rtt pings, TLS and TCP in @r's order. */
static gboolean
lw_round_basic(LwBench *b, gint r, GError **error)
{
    for (guint k = 0; k < 2; k++) {
        guint i = lw_order(r, k, 2);
        LwServer *server = i ? &b->tcp : &b->tls;
        g_autoptr(GArray) us = bench_new_doubles();
        LwConn *c;
        gboolean ok;

        if (!lw_handshakes(server, b->client, b->handshakes, us, error))
            return FALSE;
        lw_figure_add_round(&b->fig[LW_HS_TLS + i], us);
        g_array_set_size(us, 0);
        if (!(c = lw_conn_open(server, b->client, error)))
            return FALSE;
        c->server_thread = g_thread_new("frame-server", lw_frame_server, c);
        ok = lw_ping(c, LW_WARMUP, NULL, error) && lw_ping(c, b->pings, us, error);
        if (!lw_conn_close(c, ok ? error : NULL) || !ok)
            return FALSE;
        lw_figure_add_round(&b->fig[LW_RTT_TLS + i], us);
    }
    return TRUE;
}

/* The four hol variants in @r's order. */
static gboolean
lw_round_hol(LwBench *b, gint r, GError **error)
{
    for (guint k = 0; k < 4; k++) {
        guint i = lw_order(r, k, 4);
        gboolean bulk = i % 2, separate = i >= 2, ok;
        g_autoptr(GArray) us = bench_new_doubles();
        LwConn *p = lw_conn_open(&b->tls, b->client, error), *q = NULL;

        if (!p)
            return FALSE;
        p->server_thread = g_thread_new("frame-server", lw_frame_server, p);
        ok = !separate || (q = lw_conn_open(&b->tls, b->client, error));
        if (q)
            q->server_thread = g_thread_new("frame-server", lw_frame_server, q);
        if (ok && bulk) {
            LwConn *bc = separate ? q : p;
            bc->bulk_thread = g_thread_new("bulk", lw_bulk_writer, bc);
            g_usleep(LW_BULK_SETTLE_US);
        }
        ok = ok && lw_ping(p, LW_WARMUP, NULL, error) && lw_ping(p, b->hol_pings, us, error);
        ok = lw_conn_close(p, ok ? error : NULL) && ok;
        ok = (!q || lw_conn_close(q, ok ? error : NULL)) && ok;
        if (!ok)
            return FALSE;
        lw_figure_add_round(&b->fig[LW_MUX_IDLE + i], us);
    }
    return TRUE;
}

/* An rss child per count and kind; the round's figure is the slope. */
static gboolean
lw_round_rss(LwBench *b, gint r, GError **error)
{
    for (guint k = 0; k < 2; k++) {
        guint i = lw_order(r, k, 2);
        const gchar *kind = i ? "tcp" : "tls";
        gdouble kib[G_N_ELEMENTS(lw_rss_counts)], slope;
        g_autoptr(GArray) one = bench_new_doubles();

        for (guint j = 0; j < G_N_ELEMENTS(lw_rss_counts); j++)
            if (!lw_rss_run(b->self, kind, lw_rss_counts[j], b->creds.dir, &kib[j], error))
                return FALSE;
        g_print("rss round %d %s: +%.0f, +%.0f, +%.0f, +%.0f KiB with 1, 10, 100, 1000 "
                "connections\n",
                r + 1, kind, kib[0], kib[1], kib[2], kib[3]);
        slope = lw_slope(kib);
        g_array_append_val(one, slope);
        lw_figure_add_round(&b->fig[LW_RSS_TLS + i], one);
    }
    return TRUE;
}

static void
lw_print_rss(LwFigure *cand, LwFigure *base)
{
    g_autoptr(GArray) r = bench_pairwise(cand->round_p50, base->round_p50, BENCH_RATIO);
    g_autoptr(GArray) v = g_array_copy(cand->round_p50);
    gdouble c = bench_median(cand->all), b = bench_median(base->all);

    bench_print_compared(cand->name, "KiB", c, base->name, b, b != 0 ? c / b : 0, v, r);
}

static gboolean
lw_bench_run(LwBench *b, GError **error)
{
    g_autofree gchar *dir = g_dir_make_tmp("link-wire-bench-XXXXXX", error);
    gboolean ok = TRUE;

    if (!dir || !lw_creds_make(dir, error) || !lw_creds_load(&b->creds, dir, error) ||
        !lw_server_start(&b->tls, &b->creds, error) || !lw_server_start(&b->tcp, NULL, error))
        ok = FALSE;
    else
        for (gint r = 0; r < b->rounds && ok; r++)
            ok = lw_round_basic(b, r, error) && lw_round_hol(b, r, error) &&
                 lw_round_rss(b, r, error);
    if (dir) {
        g_autoptr(GDir) d = g_dir_open(dir, 0, NULL);
        const gchar *name;

        while (d && (name = g_dir_read_name(d))) {
            g_autofree gchar *path = g_build_filename(dir, name, NULL);
            g_unlink(path);
        }
        g_rmdir(dir);
    }
    return ok;
}

int
main(int argc, char **argv)
{
    LwBench b = {.rounds = LW_ROUNDS,
                 .handshakes = LW_HANDSHAKES,
                 .pings = LW_PINGS,
                 .hol_pings = LW_HOL_PINGS};
    const GOptionEntry entries[] = {
        {"rounds", 0, 0, G_OPTION_ARG_INT, &b.rounds, "Interleaved rounds (5)", "N"},
        {"handshakes", 0, 0, G_OPTION_ARG_INT, &b.handshakes, "Per round and kind (50)", "N"},
        {"pings", 0, 0, G_OPTION_ARG_INT, &b.pings, "Timed rtt pings per round (1000)", "N"},
        {"hol-pings", 0, 0, G_OPTION_ARG_INT, &b.hol_pings, "Timed hol pings per round (1000)",
         "N"},
        G_OPTION_ENTRY_NULL,
    };
    g_autoptr(GOptionContext) octx = g_option_context_new("— gateway-link wire benchmark");
    g_autoptr(GError) error = NULL;
    GTlsBackend *backend = g_tls_backend_get_default();
    gdouble load_at_start = bench_loadavg();
    struct rlimit nofile;
    gboolean ok;

    if (argc == 5 && g_str_equal(argv[1], "--rss-child"))
        return lw_rss_child(argv[2], (guint)g_ascii_strtoull(argv[3], NULL, 10), argv[4]);
    g_option_context_add_main_entries(octx, entries, NULL);
    if (!g_option_context_parse(octx, &argc, &argv, &error) || b.rounds < 1 || b.handshakes < 1 ||
        b.pings < 1 || b.hol_pings < 1) {
        g_printerr("usage: link-wire-bench [--rounds N] [--handshakes N] [--pings N] "
                   "[--hol-pings N]\n");
        return 2;
    }
    if (!g_tls_backend_supports_tls(backend)) {
        g_printerr("link-wire-bench: GIO has no TLS backend (install glib-networking)\n");
        return 1;
    }
    /* 1,000 connections are 2,000 descriptors in one process. */
    if (getrlimit(RLIMIT_NOFILE, &nofile) == 0 && nofile.rlim_cur < LW_NOFILE) {
        nofile.rlim_cur = MIN((rlim_t)LW_NOFILE, nofile.rlim_max);
        if (setrlimit(RLIMIT_NOFILE, &nofile) != 0 || nofile.rlim_cur < LW_NOFILE) {
            g_printerr("link-wire-bench: cannot raise RLIMIT_NOFILE to %d\n", LW_NOFILE);
            return 1;
        }
    }
    b.self = g_file_read_link("/proc/self/exe", &error);
    if (!b.self) {
        g_printerr("link-wire-bench: %s\n", error->message);
        return 1;
    }
    b.client = lw_client_new();
    for (guint i = 0; i < LW_N_FIGURES; i++)
        lw_figure_init(&b.fig[i], lw_figure_names[i]);
    g_print("link-wire-bench: loopback 127.0.0.1, %s, RSA-2048 mutual certificates, %d rounds\n",
            G_OBJECT_TYPE_NAME(backend), b.rounds);

    ok = lw_bench_run(&b, &error);
    if (ok) {
        lw_figure_compare(NULL, &b.fig[LW_HS_TLS], &b.fig[LW_HS_TCP]);
        lw_print_rss(&b.fig[LW_RSS_TLS], &b.fig[LW_RSS_TCP]);
        lw_figure_compare(NULL, &b.fig[LW_RTT_TLS], &b.fig[LW_RTT_TCP]);
        lw_figure_compare(NULL, &b.fig[LW_MUX_BULK], &b.fig[LW_MUX_IDLE]);
        lw_figure_compare(NULL, &b.fig[LW_SEP_BULK], &b.fig[LW_SEP_IDLE]);
        lw_figure_compare("hol-mux-vs-separate", &b.fig[LW_MUX_BULK], &b.fig[LW_SEP_BULK]);
        g_print("samples: %u handshakes per kind, %u pings per rtt variant, %u per hol variant; "
                "rss: both ends in one process, a child per count\n",
                b.fig[LW_HS_TLS].all->len, b.fig[LW_RTT_TLS].all->len, b.fig[LW_MUX_BULK].all->len);
        g_print("rig: loopback 127.0.0.1, protocol-level (no device), %u cores (nproc), load %.2f "
                "at start, %.2f at end (1-min loadavg)\n",
                g_get_num_processors(), load_at_start, bench_loadavg());
    } else {
        g_printerr("link-wire-bench: %s\n", error->message);
    }
    lw_server_stop(&b.tls);
    lw_server_stop(&b.tcp);
    lw_creds_clear(&b.creds);
    g_clear_object(&b.client);
    g_free(b.self);
    for (guint i = 0; i < LW_N_FIGURES; i++)
        lw_figure_clear(&b.fig[i]);
    return ok ? 0 : 1;
}
