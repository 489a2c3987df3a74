/* GwLink (gateway/link/gw-link.c) between two links in one process, over
 * socketpairs and over an in-test relay that can stall, cut and watch the
 * frames going through: the device directory, streams both ways, flow
 * control, resume after a cut, the grace, a peer restart, keepalive, and
 * protocol errors from a raw peer. */
#include <errno.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "gw-link-private.h"
#include "gw-link-wire.h"
#include "gw-link.h"

#define TEST_TIMEOUT_US (20 * G_USEC_PER_SEC)

/* ---- Helpers --------------------------------------------------------- */

static GPtrArray *test_log; /* usbgw-link messages */

static void
test_log_handler(const gchar *domain, GLogLevelFlags level, const gchar *message, gpointer data)
{
    g_ptr_array_add(test_log, g_strdup(message));
    if (g_test_verbose())
        g_printerr("# %s: %s\n", domain, message);
}

static gboolean
test_log_has(const gchar *needle)
{
    for (guint i = 0; i < test_log->len; i++) {
        if (strstr(g_ptr_array_index(test_log, i), needle) != NULL)
            return TRUE;
    }
    return FALSE;
}

typedef gboolean (*TestCond)(gpointer data);

static void
test_wait(TestCond cond, gpointer data, const gchar *what)
{
    gint64 end = g_get_monotonic_time() + TEST_TIMEOUT_US;
    while (!cond(data)) {
        if (g_get_monotonic_time() > end)
            g_error("timed out waiting for %s", what);
        g_main_context_iteration(NULL, TRUE);
    }
}

/* Runs the main context for @ms. */
static void
test_run_for(guint ms)
{
    gint64 end = g_get_monotonic_time() + (gint64)ms * 1000;
    GSource *tick = g_timeout_source_new(5);
    g_source_set_dummy_callback(tick);
    g_source_attach(tick, NULL);
    while (g_get_monotonic_time() < end)
        g_main_context_iteration(NULL, TRUE);
    g_source_destroy(tick);
    g_source_unref(tick);
}

/* A connected pair of stream sockets as GSockets. */
static void
test_socketpair(GSocket **a, GSocket **b)
{
    int fds[2];
    g_assert_cmpint(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds), ==, 0);
    *a = g_socket_new_from_fd(fds[0], NULL);
    *b = g_socket_new_from_fd(fds[1], NULL);
    g_assert_nonnull(*a);
    g_assert_nonnull(*b);
}

static GIOStream *
test_connection(GSocket *socket)
{
    return G_IO_STREAM(g_socket_connection_factory_create_connection(socket));
}

/* One side: a GwLink and what its callbacks saw. */
typedef struct {
    GwLink *link;
    const gchar *name;
    guint ups, downs, resumed, refused;
    gchar *down_reason;
    gchar *refused_reason;
    GHashTable *devices; /* id -> product name, as announced by the peer */
    guint added, removed;
    gboolean refuse_opens;
    GPtrArray *accepted; /* GSocket: our test ends of streams the peer opened */
} Side;

static void
side_up(GwLink *link, gboolean resumed, gpointer data)
{
    Side *side = data;
    side->ups++;
    side->resumed += resumed ? 1 : 0;
}

static void
side_down(GwLink *link, const gchar *reason, gpointer data)
{
    Side *side = data;
    side->downs++;
    g_free(side->down_reason);
    side->down_reason = g_strdup(reason);
}

static void
side_refused(GwLink *link, const gchar *reason, gpointer data)
{
    Side *side = data;
    side->refused++;
    g_free(side->refused_reason);
    side->refused_reason = g_strdup(reason);
}

static void
side_device_added(GwLink *link, const gchar *id, const PolicyDevice *device, gpointer data)
{
    Side *side = data;
    side->added++;
    g_hash_table_insert(side->devices, g_strdup(id), g_strdup(device->product));
}

static void
side_device_removed(GwLink *link, const gchar *id, gpointer data)
{
    Side *side = data;
    side->removed++;
    g_assert_true(g_hash_table_remove(side->devices, id));
}

static GSocket *
side_open(GwLink *link, const gchar *id, gchar **reason, gpointer data)
{
    Side *side = data;
    GSocket *ours, *theirs;

    if (side->refuse_opens || strcmp(id, "missing") == 0) {
        *reason = g_strdup_printf("no device %s here", id);
        return NULL;
    }
    test_socketpair(&ours, &theirs);
    g_socket_set_blocking(ours, FALSE);
    g_ptr_array_add(side->accepted, ours);
    return theirs;
}

static void
side_init(Side *side, const gchar *name, guint grace_ms, guint keepalive_ms)
{
    static const GwLinkCallbacks cb = {
        .up = side_up,
        .down = side_down,
        .refused = side_refused,
        .device_added = side_device_added,
        .device_removed = side_device_removed,
        .open = side_open,
    };
    GwLinkConfig config = {.grace_ms = grace_ms, .keepalive_ms = keepalive_ms};

    memset(side, 0, sizeof(*side));
    side->name = name;
    side->devices = g_hash_table_new_full(g_str_hash, g_str_equal, g_free, g_free);
    side->accepted = g_ptr_array_new_with_free_func(g_object_unref);
    side->link = gw_link_new(name, &config, &cb, side);
}

static void
side_clear(Side *side)
{
    g_clear_pointer(&side->link, gw_link_free);
    g_clear_pointer(&side->devices, g_hash_table_unref);
    g_clear_pointer(&side->accepted, g_ptr_array_unref);
    g_clear_pointer(&side->down_reason, g_free);
    g_clear_pointer(&side->refused_reason, g_free);
}

static gboolean
side_is_up(gpointer data)
{
    return gw_link_is_up(((Side *)data)->link);
}

/* Connects @a and @b over a socketpair. */
static void
sides_connect(Side *a, Side *b)
{
    GSocket *sa, *sb;
    test_socketpair(&sa, &sb);
    g_autoptr(GIOStream) ca = test_connection(sa);
    g_autoptr(GIOStream) cb = test_connection(sb);
    g_object_unref(sa);
    g_object_unref(sb);
    gw_link_attach(a->link, ca);
    gw_link_attach(b->link, cb);
    test_wait(side_is_up, a, "a up");
    test_wait(side_is_up, b, "b up");
}

/* A stream we opened, and what its callbacks saw. */
typedef struct {
    GwLinkStream *stream;
    GSocket *end; /* our test end */
    guint opened;
    guint closed;
    gchar *reason;
} Opened;

static void
opened_cb(GwLinkStream *stream, gpointer data)
{
    ((Opened *)data)->opened++;
}

static void
closed_cb(GwLinkStream *stream, const gchar *reason, gpointer data)
{
    Opened *o = data;
    o->closed++;
    o->reason = g_strdup(reason);
    o->stream = NULL;
}

static void
opened_start(Opened *o, Side *side, const gchar *id)
{
    static const GwLinkStreamCallbacks cb = {.opened = opened_cb, .closed = closed_cb};
    GSocket *theirs;

    memset(o, 0, sizeof(*o));
    test_socketpair(&o->end, &theirs);
    g_socket_set_blocking(o->end, FALSE);
    o->stream = gw_link_open(side->link, id, theirs, &cb, o);
    g_object_unref(theirs);
}

static void
opened_clear(Opened *o)
{
    if (o->stream != NULL)
        gw_link_stream_close(o->stream, "test over");
    g_clear_object(&o->end);
    g_clear_pointer(&o->reason, g_free);
}

static gboolean
opened_is_open(gpointer data)
{
    return ((Opened *)data)->opened > 0 || ((Opened *)data)->closed > 0;
}

static gboolean
opened_is_closed(gpointer data)
{
    return ((Opened *)data)->closed > 0;
}

typedef struct {
    Side *side;
    guint n;
} AcceptedWait;

static gboolean
accepted_count(gpointer data)
{
    AcceptedWait *w = data;
    return w->side->accepted->len >= w->n;
}

/* Reads exactly @len bytes from @socket (running the main context). */
static void
test_read_exact(GSocket *socket, guint8 *buf, gsize len)
{
    gsize got = 0;
    gint64 end = g_get_monotonic_time() + TEST_TIMEOUT_US;
    while (got < len) {
        ssize_t n = recv(g_socket_get_fd(socket), buf + got, len - got, MSG_DONTWAIT);
        if (n > 0) {
            got += (gsize)n;
            continue;
        }
        g_assert_true(n < 0 && errno == EAGAIN);
        g_assert_cmpint(g_get_monotonic_time(), <, end);
        g_main_context_iteration(NULL, TRUE);
    }
}

static void
test_write_all(GSocket *socket, const void *buf, gsize len)
{
    gsize done = 0;
    while (done < len) {
        ssize_t n = send(g_socket_get_fd(socket), (const guint8 *)buf + done, len - done,
                         MSG_DONTWAIT | MSG_NOSIGNAL);
        if (n > 0)
            done += (gsize)n;
        else if (n < 0 && errno != EAGAIN)
            return; /* the other end is gone (a raw peer's link dropped it) */
        else
            g_main_context_iteration(NULL, TRUE);
    }
}

/* EOF on @socket (after reading whatever is left). */
static gboolean
test_socket_eof(gpointer data)
{
    guint8 buf[4096];
    ssize_t n = recv(g_socket_get_fd(data), buf, sizeof(buf), MSG_DONTWAIT);
    return n == 0 || (n < 0 && errno != EAGAIN);
}

static PolicyDevice *
test_device(const gchar *product)
{
    PolicyDevice *d = policy_device_new(0x0529, 0x0001);
    d->product = g_strdup(product);
    policy_device_add_interface(d, 0xff, 0, 0);
    return d;
}

/* ---- The relay ----------------------------------------------------------- */

/* Between two links: two socketpairs, bytes copied between them by the
 * main loop; it can stall (copy nothing) or be cut (both closed). It
 * decodes what goes from a to b to count DATA bytes per stream. */
typedef struct {
    int a_fd, b_fd; /* the relay's ends */
    GIOStream *a_conn, *b_conn;
    GSource *source;
    gboolean stalled;
    GByteArray *to_b, *to_a;
    GwLinkDecoder decoder;
    guint64 data_bytes[8]; /* DATA payload a->b per stream id (< 8) */
    guint32 watch_stream;  /* when a DATA frame of this stream passes… */
    guint64 seen_at;       /* …data_bytes[bulk_stream] then */
    guint32 bulk_stream;
    gboolean seen;
} Relay;

#define RELAY_MAX_BUFFERED (16 * 1024)

static void
relay_sniff(Relay *r, const guint8 *data, gsize len)
{
    while (len > 0) {
        GwLinkFrame frame;
        gsize used;
        g_autoptr(GError) error = NULL;
        GwLinkDecodeResult res =
            gw_link_decoder_feed(&r->decoder, data, len, &used, &frame, &error);
        g_assert_cmpint(res, !=, GW_LINK_DECODE_ERROR);
        data += used;
        len -= used;
        if (res != GW_LINK_DECODE_FRAME)
            break;
        if (frame.type == GW_LINK_FRAME_DATA && frame.stream < G_N_ELEMENTS(r->data_bytes)) {
            r->data_bytes[frame.stream] += frame.length;
            if (frame.stream == r->watch_stream && !r->seen) {
                r->seen = TRUE;
                r->seen_at = r->data_bytes[r->bulk_stream];
            }
        }
    }
}

static void
relay_pump(Relay *r, int from, int to, GByteArray *buf, gboolean sniff)
{
    guint8 tmp[4096];
    while (buf->len < RELAY_MAX_BUFFERED) {
        ssize_t n = recv(from, tmp, MIN(sizeof(tmp), RELAY_MAX_BUFFERED - buf->len), MSG_DONTWAIT);
        if (n <= 0)
            break;
        if (sniff)
            relay_sniff(r, tmp, (gsize)n);
        g_byte_array_append(buf, tmp, (guint)n);
    }
    while (buf->len > 0) {
        ssize_t n = send(to, buf->data, buf->len, MSG_DONTWAIT | MSG_NOSIGNAL);
        if (n <= 0)
            break;
        g_byte_array_remove_range(buf, 0, (guint)n);
    }
}

static gboolean
relay_tick(gpointer data)
{
    Relay *r = data;
    if (!r->stalled && r->a_fd >= 0) {
        relay_pump(r, r->a_fd, r->b_fd, r->to_b, TRUE);
        relay_pump(r, r->b_fd, r->a_fd, r->to_a, FALSE);
    }
    return G_SOURCE_CONTINUE;
}

static void
relay_setsockbuf(int fd, int size)
{
    g_assert_cmpint(setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &size, sizeof(size)), ==, 0);
    g_assert_cmpint(setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &size, sizeof(size)), ==, 0);
}

/* A relay between @a and @b, attached to both; @small: small kernel
 * buffers (like a TCP socket with TCP_NOTSENT_LOWAT). */
static Relay *
relay_new(Side *a, Side *b, gboolean small)
{
    Relay *r = g_new0(Relay, 1);
    int fa[2], fb[2];

    g_assert_cmpint(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fa), ==, 0);
    g_assert_cmpint(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fb), ==, 0);
    if (small) {
        relay_setsockbuf(fa[0], 16384);
        relay_setsockbuf(fa[1], 16384);
    }
    r->a_fd = fa[1];
    r->b_fd = fb[1];
    GSocket *sa = g_socket_new_from_fd(fa[0], NULL);
    GSocket *sb = g_socket_new_from_fd(fb[0], NULL);
    r->a_conn = test_connection(sa);
    r->b_conn = test_connection(sb);
    g_object_unref(sa);
    g_object_unref(sb);
    r->to_a = g_byte_array_new();
    r->to_b = g_byte_array_new();
    gw_link_decoder_init(&r->decoder);
    /* a short period keeps it simple: the relay is a test tool */
    r->source = g_timeout_source_new(1);
    g_source_set_callback(r->source, relay_tick, r, NULL);
    g_source_attach(r->source, NULL);
    gw_link_attach(a->link, r->a_conn);
    gw_link_attach(b->link, r->b_conn);
    return r;
}

static void
relay_cut(Relay *r)
{
    if (r->a_fd < 0)
        return;
    close(r->a_fd);
    close(r->b_fd);
    r->a_fd = r->b_fd = -1;
}

static void
relay_free(Relay *r)
{
    relay_cut(r);
    g_source_destroy(r->source);
    g_source_unref(r->source);
    g_object_unref(r->a_conn);
    g_object_unref(r->b_conn);
    g_byte_array_unref(r->to_a);
    g_byte_array_unref(r->to_b);
    gw_link_decoder_clear(&r->decoder);
    g_free(r);
}

/* ---- Directory ------------------------------------------------------------ */

static gboolean
side_has_devices(gpointer data)
{
    Side *side = data;
    return g_hash_table_size(side->devices) == 2 && side->added >= 2;
}

static void
test_directory(void)
{
    Side a, b;
    g_autoptr(PolicyDevice) d1 = test_device("one");
    g_autoptr(PolicyDevice) d2 = test_device("two");
    g_autoptr(PolicyDevice) d3 = test_device("three");

    side_init(&a, "a", 0, 0);
    side_init(&b, "b", 0, 0);
    gw_link_announce(a.link, "d1", d1);
    gw_link_announce(a.link, "d2", d2);
    sides_connect(&a, &b);
    test_wait(side_has_devices, &b, "b sees d1, d2");
    g_assert_cmpstr(g_hash_table_lookup(b.devices, "d1"), ==, "one");
    g_assert_cmpstr(g_hash_table_lookup(b.devices, "d2"), ==, "two");

    /* withdraw and announce while up */
    gw_link_withdraw(a.link, "d1");
    gw_link_announce(a.link, "d3", d3);
    test_run_for(50);
    g_assert_false(g_hash_table_contains(b.devices, "d1"));
    g_assert_cmpstr(g_hash_table_lookup(b.devices, "d3"), ==, "three");
    g_assert_cmpuint(b.added, ==, 3);
    g_assert_cmpuint(b.removed, ==, 1);

    /* reconnect after a withdrawal while down: d2 goes at SYNCED, d3 is not
     * announced anew (same description) */
    Relay *r = relay_new(&a, &b, FALSE);
    relay_cut(r);
    test_run_for(30);
    gw_link_withdraw(a.link, "d2");
    Relay *r2 = relay_new(&a, &b, FALSE);
    test_wait(side_is_up, &b, "b up again");
    test_run_for(50);
    g_assert_cmpuint(b.resumed, >=, 1);
    g_assert_false(g_hash_table_contains(b.devices, "d2"));
    g_assert_true(g_hash_table_contains(b.devices, "d3"));
    g_assert_cmpuint(g_hash_table_size(b.devices), ==, 1);
    g_assert_cmpuint(b.added, ==, 3);

    GwLinkStats stats;
    gw_link_get_stats(b.link, &stats);
    g_assert_cmpuint(stats.peer_devices, ==, 1);
    g_assert_true(stats.up);
    side_clear(&a);
    side_clear(&b);
    relay_free(r);
    relay_free(r2);
}

/* ---- Streams ---------------------------------------------------------------- */

static void
test_open_close(void)
{
    Side a, b;
    Opened o, p, q;
    AcceptedWait wb = {&b, 1}, wa = {&a, 1};
    guint8 buf[5];

    side_init(&a, "a", 0, 0);
    side_init(&b, "b", 0, 0);
    sides_connect(&a, &b);

    /* a opens on b; bytes both ways; a closes */
    opened_start(&o, &a, "dev");
    test_wait(opened_is_open, &o, "OPENED");
    g_assert_cmpuint(o.opened, ==, 1);
    test_wait(accepted_count, &wb, "b accepted");
    GSocket *b_end = g_ptr_array_index(b.accepted, 0);
    test_write_all(o.end, "hello", 5);
    test_read_exact(b_end, buf, 5);
    g_assert_cmpmem(buf, 5, "hello", 5);
    test_write_all(b_end, "world", 5);
    test_read_exact(o.end, buf, 5);
    g_assert_cmpmem(buf, 5, "world", 5);
    gw_link_stream_close(o.stream, "done");
    o.stream = NULL;
    test_wait(test_socket_eof, b_end, "b's end closed");
    g_assert_cmpuint(o.closed, ==, 0);

    /* b opens on a; a's test end closes: b's stream closes with a reason */
    opened_start(&p, &b, "other");
    test_wait(opened_is_open, &p, "OPENED");
    test_wait(accepted_count, &wa, "a accepted");
    GSocket *a_end = g_ptr_array_index(a.accepted, 0);
    test_write_all(a_end, "bye", 3);
    g_socket_close(a_end, NULL);
    test_read_exact(p.end, buf, 3);
    g_assert_cmpmem(buf, 3, "bye", 3);
    test_wait(opened_is_closed, &p, "b's stream closed");
    g_assert_cmpstr(p.reason, ==, "the local end closed");
    test_wait(test_socket_eof, p.end, "b's end closed");

    /* refusal with a reason */
    opened_start(&q, &a, "missing");
    test_wait(opened_is_closed, &q, "refused");
    g_assert_cmpuint(q.opened, ==, 0);
    g_assert_cmpstr(q.reason, ==, "no device missing here");

    GwLinkStats stats;
    test_run_for(20);
    gw_link_get_stats(a.link, &stats);
    g_assert_cmpuint(stats.streams, ==, 0);
    opened_clear(&o);
    opened_clear(&p);
    opened_clear(&q);
    side_clear(&a);
    side_clear(&b);
}

/* A direct stream (no local socket): what its owner's callbacks saw. */
typedef struct {
    GwLinkStream *stream;
    GByteArray *got; /* read from the stream, also inside closed() */
    guint readable, writable, closed;
    gchar *reason;
    gboolean read_end; /* gw_link_stream_read() said -1 inside closed() */
} Direct;

static void
direct_take(Direct *d)
{
    guint8 buf[4096];
    gssize n;

    while ((n = gw_link_stream_read(d->stream, buf, sizeof(buf))) > 0)
        g_byte_array_append(d->got, buf, (guint)n);
    if (n < 0)
        d->read_end = TRUE;
}

static void
direct_readable(GwLinkStream *stream, gpointer data)
{
    Direct *d = data;
    d->readable++;
    direct_take(d);
}

static void
direct_writable(GwLinkStream *stream, gpointer data)
{
    ((Direct *)data)->writable++;
}

static void
direct_closed(GwLinkStream *stream, const gchar *reason, gpointer data)
{
    Direct *d = data;
    d->closed++;
    d->reason = g_strdup(reason);
    /* what the peer sent before its end is still there to read */
    direct_take(d);
    g_assert_cmpint(gw_link_stream_write(stream, (const guint8 *)"x", 1), ==, -1);
    d->stream = NULL;
}

static gboolean
direct_has(gpointer data)
{
    Direct *d = data;
    return d->got->len >= 5;
}

static gboolean
direct_is_closed(gpointer data)
{
    return ((Direct *)data)->closed > 0;
}

static gboolean
direct_is_writable(gpointer data)
{
    return ((Direct *)data)->writable > 0;
}

static const GwLinkStreamCallbacks direct_callbacks = {
    .closed = direct_closed,
    .readable = direct_readable,
    .writable = direct_writable,
};

/* The owner of a direct stream reads and writes it: bytes both ways, the
 * window bounds what write() takes and writable() says when it takes more,
 * DATA written before a close reaches the peer before the end, and the
 * peer's last bytes and its reason reach the owner. */
static void
test_direct(void)
{
    Side a, b;
    Direct d = {0}, e = {0};
    AcceptedWait wb = {&b, 1}, wb2 = {&b, 2};
    g_autofree guint8 *big = g_malloc(GW_LINK_WINDOW);
    guint8 buf[8];
    gsize taken = 0;

    side_init(&a, "a", 0, 0);
    side_init(&b, "b", 0, 0);
    sides_connect(&a, &b);
    d.got = g_byte_array_new();
    e.got = g_byte_array_new();

    /* written before OPENED: sent once the peer took the stream */
    d.stream = gw_link_open_direct(a.link, "dev", &direct_callbacks, &d);
    g_assert_cmpint(gw_link_stream_write(d.stream, (const guint8 *)"hello", 5), ==, 5);
    gw_link_stream_flush(d.stream);
    test_wait(accepted_count, &wb, "b accepted");
    GSocket *b_end = g_ptr_array_index(b.accepted, 0);
    test_read_exact(b_end, buf, 5);
    g_assert_cmpmem(buf, 5, "hello", 5);
    test_write_all(b_end, "world", 5);
    test_wait(direct_has, &d, "a read");
    g_assert_cmpmem(d.got->data, d.got->len, "world", 5);
    g_assert_cmpuint(d.readable, >=, 1);

    /* the window: b does not read, so write() stops taking bytes once a
     * window is unacknowledged (beyond what b's socket buffer absorbed) */
    gboolean full = FALSE;
    memset(big, 0x5a, GW_LINK_WINDOW);
    for (guint i = 0; i < 200 && !full; i++) {
        gssize n = gw_link_stream_write(d.stream, big, GW_LINK_WINDOW);
        gsize tx, rx;
        g_assert_cmpint(n, >=, 0);
        full = (gsize)n < GW_LINK_WINDOW;
        taken += (gsize)n;
        gw_link_stream_flush(d.stream);
        test_run_for(5);
        gw_link_debug_buffered(a.link, &tx, &rx);
        g_assert_cmpuint(tx, <=, GW_LINK_WINDOW);
    }
    g_assert_true(full);
    g_assert_cmpuint(taken, >=, GW_LINK_WINDOW);
    g_assert_cmpuint(d.writable, ==, 0);
    /* b reads all of it: CREDIT comes back, writable() follows */
    guint8 *sink = g_malloc(taken);
    test_read_exact(b_end, sink, taken);
    for (gsize i = 0; i < taken; i++)
        g_assert_cmpuint(sink[i], ==, 0x5a);
    g_free(sink);
    test_wait(direct_is_writable, &d, "writable");
    g_assert_cmpint(gw_link_stream_write(d.stream, big, 4096), ==, 4096);
    gw_link_stream_flush(d.stream);
    guint8 *rest = g_malloc(4096);
    test_read_exact(b_end, rest, 4096);
    g_free(rest);

    /* the peer's last bytes, then its end: read inside closed() */
    g_byte_array_set_size(d.got, 0);
    test_write_all(b_end, "bye!!", 5);
    g_socket_close(b_end, NULL);
    test_wait(direct_is_closed, &d, "a's stream closed");
    g_assert_cmpmem(d.got->data, d.got->len, "bye!!", 5);
    g_assert_true(d.read_end);
    g_assert_cmpstr(d.reason, ==, "the local end closed");

    /* DATA written just before a close goes before the CLOSE */
    e.stream = gw_link_open_direct(a.link, "dev2", &direct_callbacks, &e);
    test_wait(accepted_count, &wb2, "b accepted again");
    GSocket *b_end2 = g_ptr_array_index(b.accepted, 1);
    test_run_for(20);
    g_assert_cmpint(gw_link_stream_write(e.stream, (const guint8 *)"last!", 5), ==, 5);
    gw_link_stream_close(e.stream, "done");
    e.stream = NULL;
    test_read_exact(b_end2, buf, 5);
    g_assert_cmpmem(buf, 5, "last!", 5);
    test_wait(test_socket_eof, b_end2, "b's end closed");
    g_assert_cmpuint(e.closed, ==, 0);

    g_byte_array_unref(d.got);
    g_byte_array_unref(e.got);
    g_free(d.reason);
    side_clear(&a);
    side_clear(&b);
}

/* Flushes of direct streams inside a GwFdWatch callback (a proxy's QEMU
 * socket was ready) are written once that dispatch is done, the frames of
 * every stream together; outside a dispatch a flush writes at once. */
typedef struct {
    Direct *d[2];
    GwLink *link;
    guint64 bytes_out_in_cb; /* the link's bytes_out after both flushes */
    guint64 bytes_out_before;
    guint calls;
} Batch;

static void
batch_ready(int fd, GIOCondition revents, gpointer data)
{
    Batch *batch = data;
    GwLinkStats stats;
    char c;

    g_assert_cmpint(read(fd, &c, 1), ==, 1);
    batch->calls++;
    gw_link_get_stats(batch->link, &stats);
    batch->bytes_out_before = stats.bytes_out;
    g_assert_cmpint(gw_link_stream_write(batch->d[0]->stream, (const guint8 *)"one", 3), ==, 3);
    gw_link_stream_flush(batch->d[0]->stream);
    g_assert_cmpint(gw_link_stream_write(batch->d[1]->stream, (const guint8 *)"two", 3), ==, 3);
    gw_link_stream_flush(batch->d[1]->stream);
    gw_link_get_stats(batch->link, &stats);
    batch->bytes_out_in_cb = stats.bytes_out;
}

static void
test_flush_batched(void)
{
    Side a, b;
    Direct d = {0}, e = {0};
    AcceptedWait wb2 = {&b, 2};
    Batch batch = {.d = {&d, &e}};
    GwLinkStats before, after;
    GwFdWatch *watch;
    guint8 buf[3];
    int fds[2];

    side_init(&a, "a", 0, 0);
    side_init(&b, "b", 0, 0);
    sides_connect(&a, &b);
    batch.link = a.link;
    d.got = g_byte_array_new();
    e.got = g_byte_array_new();
    d.stream = gw_link_open_direct(a.link, "dev", &direct_callbacks, &d);
    e.stream = gw_link_open_direct(a.link, "dev2", &direct_callbacks, &e);
    test_wait(accepted_count, &wb2, "b accepted both");
    test_run_for(20);

    /* outside a dispatch: written by the flush itself */
    gw_link_get_stats(a.link, &before);
    g_assert_cmpint(gw_link_stream_write(d.stream, (const guint8 *)"now", 3), ==, 3);
    gw_link_stream_flush(d.stream);
    gw_link_get_stats(a.link, &after);
    g_assert_cmpuint(after.bytes_out, >, before.bytes_out);
    test_read_exact(g_ptr_array_index(b.accepted, 0), buf, 3);
    g_assert_cmpmem(buf, 3, "now", 3);

    /* inside one: nothing written until the callbacks are done, then both
     * streams' frames in the same iteration */
    g_assert_cmpint(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds), ==, 0);
    watch = gw_fd_watch_new(NULL, "test-qemu", fds[0], G_IO_IN, batch_ready, &batch);
    g_assert_cmpint(write(fds[1], "x", 1), ==, 1);
    while (batch.calls == 0)
        g_main_context_iteration(NULL, TRUE);
    g_assert_cmpuint(batch.bytes_out_in_cb, ==, batch.bytes_out_before);
    gw_link_get_stats(a.link, &after);
    g_assert_cmpuint(after.bytes_out, >, batch.bytes_out_before);
    test_read_exact(g_ptr_array_index(b.accepted, 0), buf, 3);
    g_assert_cmpmem(buf, 3, "one", 3);
    test_read_exact(g_ptr_array_index(b.accepted, 1), buf, 3);
    g_assert_cmpmem(buf, 3, "two", 3);

    gw_fd_watch_free(watch);
    close(fds[0]);
    close(fds[1]);
    g_byte_array_unref(d.got);
    g_byte_array_unref(e.got);
    g_free(d.reason);
    g_free(e.reason);
    side_clear(&a);
    side_clear(&b);
}

static guint8
pattern(guint64 pos, guint seed)
{
    return (guint8)((pos * 2654435761u >> 7) + seed);
}

/* Pushes @total pattern bytes into @from and reads them from @to, reading
 * at most @read_per_tick per 1 ms tick when slowed; checks every byte and
 * the window after each iteration. */
typedef struct {
    GSocket *from, *to;
    guint64 total, written, read;
    guint seed;
} Flow;

static void
flow_step(Flow *f, gsize read_limit)
{
    guint8 buf[65536];
    if (f->written < f->total) {
        gsize n = (gsize)MIN(sizeof(buf), f->total - f->written);
        for (gsize i = 0; i < n; i++)
            buf[i] = pattern(f->written + i, f->seed);
        ssize_t w = send(g_socket_get_fd(f->from), buf, n, MSG_DONTWAIT | MSG_NOSIGNAL);
        if (w > 0)
            f->written += (guint64)w;
    }
    gsize want = MIN(sizeof(buf), read_limit);
    ssize_t r = recv(g_socket_get_fd(f->to), buf, want, MSG_DONTWAIT);
    for (ssize_t i = 0; i < r; i++) {
        if (buf[i] != pattern(f->read + (guint64)i, f->seed))
            g_error("byte %" G_GUINT64_FORMAT " differs", f->read + (guint64)i);
    }
    if (r > 0)
        f->read += (guint64)r;
}

static void
test_bulk_slow_reader(void)
{
    Side a, b;
    Opened o;
    AcceptedWait wb = {&b, 1};
    gint64 end = g_get_monotonic_time() + 60 * G_USEC_PER_SEC;
    gsize peak_tx = 0, peak_rx = 0;

    side_init(&a, "a", 0, 0);
    side_init(&b, "b", 0, 0);
    sides_connect(&a, &b);
    opened_start(&o, &a, "dev");
    test_wait(opened_is_open, &o, "OPENED");
    test_wait(accepted_count, &wb, "b accepted");

    Flow f = {.from = o.end,
              .to = g_ptr_array_index(b.accepted, 0),
              .total = 10 * 1024 * 1024,
              .seed = 1};
    GSource *tick = g_timeout_source_new(1);
    g_source_set_dummy_callback(tick);
    g_source_attach(tick, NULL);
    while (f.read < f.total) {
        gsize tx, rx;
        g_assert_cmpint(g_get_monotonic_time(), <, end);
        /* the reader takes 16 KiB a round: slower than the link */
        flow_step(&f, 16384);
        g_main_context_iteration(NULL, TRUE);
        gw_link_debug_buffered(a.link, &tx, &rx);
        g_assert_cmpuint(tx, <=, GW_LINK_WINDOW);
        peak_tx = MAX(peak_tx, tx);
        gw_link_debug_buffered(b.link, &tx, &rx);
        g_assert_cmpuint(rx, <=, GW_LINK_WINDOW);
        peak_rx = MAX(peak_rx, rx);
    }
    g_source_destroy(tick);
    g_source_unref(tick);
    g_assert_cmpuint(f.read, ==, f.total);
    /* the window was used: the sender did fill it */
    g_assert_cmpuint(peak_tx, >, GW_LINK_WINDOW / 2);
    g_test_message("peak buffered: sender %" G_GSIZE_FORMAT ", receiver %" G_GSIZE_FORMAT, peak_tx,
                   peak_rx);
    opened_clear(&o);
    side_clear(&a);
    side_clear(&b);
}

/* A small stream's round trips while a bulk stream fills the link. */
static void
test_interleave(void)
{
    Side a, b;
    Opened bulk, small;
    AcceptedWait wb = {&b, 2};
    guint8 buf[65536];
    guint64 worst = 0;

    side_init(&a, "a", 0, 0);
    side_init(&b, "b", 0, 0);
    Relay *r = relay_new(&a, &b, TRUE);
    test_wait(side_is_up, &a, "a up");
    opened_start(&bulk, &a, "bulk");
    test_wait(opened_is_open, &bulk, "OPENED");
    opened_start(&small, &a, "small");
    test_wait(opened_is_open, &small, "OPENED");
    test_wait(accepted_count, &wb, "b accepted both");
    GSocket *bulk_b = g_ptr_array_index(b.accepted, 0);
    GSocket *small_b = g_ptr_array_index(b.accepted, 1);
    r->bulk_stream = 1;
    r->watch_stream = 2;
    memset(buf, 0x5a, sizeof(buf));

    for (guint round = 0; round < 50; round++) {
        /* bulk going for a while first */
        for (guint i = 0; i < 20; i++) {
            (void)send(g_socket_get_fd(bulk.end), buf, sizeof(buf), MSG_DONTWAIT | MSG_NOSIGNAL);
            (void)recv(g_socket_get_fd(bulk_b), buf, sizeof(buf), MSG_DONTWAIT);
            g_main_context_iteration(NULL, TRUE);
        }
        guint64 before = r->data_bytes[1];
        r->seen = FALSE;
        test_write_all(small.end, "ping", 4);
        guint8 ping[4];
        gsize got = 0;
        gint64 end = g_get_monotonic_time() + TEST_TIMEOUT_US;
        while (got < 4) {
            (void)send(g_socket_get_fd(bulk.end), buf, sizeof(buf), MSG_DONTWAIT | MSG_NOSIGNAL);
            (void)recv(g_socket_get_fd(bulk_b), buf, sizeof(buf), MSG_DONTWAIT);
            ssize_t n = recv(g_socket_get_fd(small_b), ping + got, 4 - got, MSG_DONTWAIT);
            if (n > 0)
                got += (gsize)n;
            g_assert_cmpint(g_get_monotonic_time(), <, end);
            g_main_context_iteration(NULL, TRUE);
        }
        g_assert_cmpmem(ping, 4, "ping", 4);
        g_assert_true(r->seen);
        worst = MAX(worst, r->seen_at - before);
        test_write_all(small_b, "pong", 4);
        test_read_exact(small.end, ping, 4);
        g_assert_cmpmem(ping, 4, "pong", 4);
    }
    g_test_message("most bulk bytes ahead of a ping on the wire: %" G_GUINT64_FORMAT, worst);
    g_assert_cmpuint(r->data_bytes[1], >, 10 * GW_LINK_WINDOW);
    /* a few frames (the link's output buffer, the socket's), not a window */
    g_assert_cmpuint(worst, <=, 6 * GW_LINK_MAX_DATA);
    opened_clear(&bulk);
    opened_clear(&small);
    side_clear(&a);
    side_clear(&b);
    relay_free(r);
}

/* ---- Resume, grace, restart, keepalive ------------------------------------ */

static void
test_resume(void)
{
    Side a, b;
    Opened o;
    AcceptedWait wb = {&b, 1};

    side_init(&a, "a", 5000, 0);
    side_init(&b, "b", 5000, 0);
    Relay *r = relay_new(&a, &b, FALSE);
    test_wait(side_is_up, &a, "a up");
    opened_start(&o, &a, "dev");
    test_wait(opened_is_open, &o, "OPENED");
    test_wait(accepted_count, &wb, "b accepted");
    GSocket *b_end = g_ptr_array_index(b.accepted, 0);
    Flow ab = {.from = o.end, .to = b_end, .total = 4 * 1024 * 1024, .seed = 2};
    Flow ba = {.from = b_end, .to = o.end, .total = 4 * 1024 * 1024, .seed = 3};
    GSource *tick = g_timeout_source_new(1);
    g_source_set_dummy_callback(tick);
    g_source_attach(tick, NULL);
    gint64 end = g_get_monotonic_time() + 60 * G_USEC_PER_SEC;
    guint cuts = 0;
    Relay *old = NULL;

    while (ab.read < ab.total || ba.read < ba.total) {
        g_assert_cmpint(g_get_monotonic_time(), <, end);
        flow_step(&ab, 65536);
        flow_step(&ba, 65536);
        g_main_context_iteration(NULL, TRUE);
        /* cut at 1 and 2.5 MiB, reconnect after a short pause */
        if ((cuts == 0 && ab.read > 1024 * 1024) || (cuts == 1 && ab.read > 2560 * 1024)) {
            cuts++;
            relay_cut(r);
            test_run_for(30);
            g_assert_false(gw_link_is_up(a.link));
            if (old != NULL)
                relay_free(old);
            old = r;
            r = relay_new(&a, &b, FALSE);
        }
    }
    g_source_destroy(tick);
    g_source_unref(tick);
    g_assert_cmpuint(cuts, ==, 2);
    g_assert_cmpuint(ab.read, ==, ab.total);
    g_assert_cmpuint(ba.read, ==, ba.total);
    g_assert_cmpuint(o.closed, ==, 0);
    g_assert_cmpuint(a.resumed, ==, 2);
    g_assert_cmpuint(b.resumed, ==, 2);
    GwLinkStats stats;
    gw_link_get_stats(a.link, &stats);
    g_assert_cmpuint(stats.connects, ==, 3);
    g_assert_cmpuint(stats.resumed, ==, 2);
    g_assert_cmpuint(stats.streams, ==, 1);
    opened_clear(&o);
    side_clear(&a);
    side_clear(&b);
    relay_free(r);
    relay_free(old);
}

static gboolean
side_no_devices(gpointer data)
{
    return g_hash_table_size(((Side *)data)->devices) == 0;
}

static void
test_grace_expires(void)
{
    Side a, b;
    Opened o;
    AcceptedWait wb = {&b, 1};
    g_autoptr(PolicyDevice) d1 = test_device("one");

    side_init(&a, "a", 200, 0);
    side_init(&b, "b", 200, 0);
    gw_link_announce(b.link, "d1", d1);
    Relay *r = relay_new(&a, &b, FALSE);
    test_wait(side_is_up, &a, "a up");
    opened_start(&o, &a, "d1");
    test_wait(opened_is_open, &o, "OPENED");
    test_wait(accepted_count, &wb, "b accepted");
    g_assert_true(g_hash_table_contains(a.devices, "d1"));
    relay_cut(r);
    test_wait(opened_is_closed, &o, "closed past the grace");
    g_assert_nonnull(strstr(o.reason, "grace"));
    test_wait(side_no_devices, &a, "a's peer devices removed");
    test_wait(test_socket_eof, g_ptr_array_index(b.accepted, 0), "b's end closed");
    g_assert_cmpuint(a.downs, ==, 1);
    opened_clear(&o);
    side_clear(&a);
    side_clear(&b);
    relay_free(r);
}

static void
test_peer_restart(void)
{
    Side a, b, a2;
    Opened o;
    AcceptedWait wa = {&a, 1};
    g_autoptr(PolicyDevice) d1 = test_device("one");

    side_init(&a, "a", 5000, 0);
    side_init(&b, "b", 5000, 0);
    gw_link_announce(a.link, "d1", d1);
    Relay *r = relay_new(&a, &b, FALSE);
    test_wait(side_is_up, &b, "b up");
    opened_start(&o, &b, "d1");
    test_wait(opened_is_open, &o, "OPENED");
    test_wait(accepted_count, &wa, "a accepted");
    relay_cut(r);
    test_run_for(30);
    g_assert_cmpuint(o.closed, ==, 0);

    /* a "restarts": a new link, a new instance */
    side_init(&a2, "a", 5000, 0);
    Relay *r2 = relay_new(&a2, &b, FALSE);
    test_wait(opened_is_closed, &o, "closed at the restart");
    g_assert_nonnull(strstr(o.reason, "restarted"));
    test_wait(side_is_up, &b, "b up");
    g_assert_cmpuint(b.resumed, ==, 0);
    /* a2 announces nothing: d1 went at the restart */
    test_run_for(30);
    g_assert_false(g_hash_table_contains(b.devices, "d1"));
    g_assert_cmpuint(b.removed, ==, 1);
    opened_clear(&o);
    side_clear(&a);
    side_clear(&a2);
    side_clear(&b);
    relay_free(r);
    relay_free(r2);
}

static gboolean
side_is_down(gpointer data)
{
    return ((Side *)data)->downs > 0;
}

static void
test_keepalive(void)
{
    Side a, b;

    side_init(&a, "a", 5000, 100);
    side_init(&b, "b", 5000, 100);
    Relay *r = relay_new(&a, &b, FALSE);
    test_wait(side_is_up, &a, "a up");
    test_wait(side_is_up, &b, "b up");
    /* pings keep an idle link up */
    test_run_for(600);
    g_assert_cmpuint(a.downs, ==, 0);
    GwLinkStats stats;
    gw_link_get_stats(a.link, &stats);
    g_assert_cmpint(stats.rtt_us, >=, 0);

    gint64 start = g_get_monotonic_time();
    r->stalled = TRUE;
    test_wait(side_is_down, &a, "a down");
    gint64 took = (g_get_monotonic_time() - start) / 1000;
    g_assert_cmpint(took, >=, 150);
    g_assert_cmpint(took, <, 2000);
    g_assert_nonnull(strstr(a.down_reason, "nothing received"));
    side_clear(&a);
    side_clear(&b);
    relay_free(r);
}

/* ---- Refusal and protocol errors ----------------------------------------- */

static gboolean
side_was_refused(gpointer data)
{
    return ((Side *)data)->refused > 0 && ((Side *)data)->downs > 0;
}

static void
test_refuse(void)
{
    Side a;
    GSocket *sa, *sb;

    side_init(&a, "a", 0, 0);
    test_socketpair(&sa, &sb);
    g_autoptr(GIOStream) ca = test_connection(sa);
    g_autoptr(GIOStream) cb = test_connection(sb);
    gw_link_attach(a.link, ca);
    gw_link_refuse(cb, "certificate expired\n\x01", 1000);
    test_wait(side_was_refused, &a, "refused");
    g_assert_cmpstr(a.refused_reason, ==, "certificate expired??");
    g_assert_false(gw_link_is_up(a.link));
    g_object_unref(sa);
    g_object_unref(sb);
    side_clear(&a);
}

/* A raw peer: the test writes frames itself. */
typedef struct {
    Side side;
    GSocket *peer; /* the test's end */
    GIOStream *conn;
} Raw;

static void
raw_start(Raw *raw)
{
    GSocket *ours;
    g_autoptr(GByteArray) hello = g_byte_array_new();
    g_autoptr(PolicyDevice) d = test_device("x");

    side_init(&raw->side, "raw-peer", 0, 0);
    gw_link_announce(raw->side.link, "dev", d);
    test_socketpair(&ours, &raw->peer);
    raw->conn = test_connection(ours);
    g_object_unref(ours);
    gw_link_attach(raw->side.link, raw->conn);
    gw_link_wire_put_hello(hello, "0123456789abcdef");
    test_write_all(raw->peer, hello->data, hello->len);
    test_wait(side_is_up, &raw->side, "up");
}

static void
raw_send(Raw *raw, GByteArray *frames)
{
    test_write_all(raw->peer, frames->data, frames->len);
}

/* Drains what the link sends, for a while. */
static void
raw_drain(Raw *raw, guint ms)
{
    gint64 end = g_get_monotonic_time() + (gint64)ms * 1000;
    guint8 buf[65536];
    while (g_get_monotonic_time() < end) {
        (void)recv(g_socket_get_fd(raw->peer), buf, sizeof(buf), MSG_DONTWAIT);
        g_main_context_iteration(NULL, FALSE);
    }
}

static void
raw_expect_error(Raw *raw, const gchar *problem)
{
    gint64 end = g_get_monotonic_time() + TEST_TIMEOUT_US;
    guint8 buf[65536];
    while (raw->side.downs == 0) {
        (void)recv(g_socket_get_fd(raw->peer), buf, sizeof(buf), MSG_DONTWAIT);
        g_main_context_iteration(NULL, FALSE);
        g_assert_cmpint(g_get_monotonic_time(), <, end);
    }
    g_assert_nonnull(strstr(raw->side.down_reason, "protocol error"));
    g_assert_nonnull(strstr(raw->side.down_reason, problem));
    g_autofree gchar *line = g_strdup_printf("link to raw-peer: connection lost: protocol error");
    g_assert_true(test_log_has(line));
    g_assert_true(test_log_has(problem));
    g_assert_false(gw_link_is_up(raw->side.link));
}

static void
raw_clear(Raw *raw)
{
    side_clear(&raw->side);
    g_clear_object(&raw->peer);
    g_clear_object(&raw->conn);
}

typedef struct {
    const gchar *name;
    const gchar *problem;
    void (*frames)(GByteArray *out);
} ProtocolCase;

static void
frames_data_beyond_window(GByteArray *out)
{
    guint8 data[GW_LINK_MAX_DATA] = {0};
    g_assert_true(gw_link_wire_put_open(out, 7, "dev", NULL));
    /* the local socket takes some (credited), then the window is exceeded */
    for (guint i = 0; i < 4 * GW_LINK_WINDOW / GW_LINK_MAX_DATA; i++)
        gw_link_wire_put_data(out, GW_LINK_WIRE_FLAG_OPENER, 7, data, sizeof(data));
}

static void
frames_unknown_stream(GByteArray *out)
{
    gw_link_wire_put_data(out, GW_LINK_WIRE_FLAG_OPENER, 99, (const guint8 *)"x", 1);
}

static void
frames_bad_json(GByteArray *out)
{
    gw_link_wire_put_header(out, GW_LINK_FRAME_DEVICE_ADD, 0, 5, 0);
    g_byte_array_append(out, (const guint8 *)"{nope", 5);
}

static void
frames_missing_member(GByteArray *out)
{
    gw_link_wire_put_header(out, GW_LINK_FRAME_DEVICE_REMOVE, 0, 9, 0);
    g_byte_array_append(out, (const guint8 *)"{\"id\":1}", 8);
    g_byte_array_append(out, (const guint8 *)" ", 1);
}

static void
frames_too_many_devices(GByteArray *out)
{
    g_autoptr(PolicyDevice) d = test_device("many");
    g_autofree gchar *json = gw_link_wire_device_json(d);
    for (guint i = 0; i <= GW_LINK_MAX_DEVICES; i++) {
        g_autofree gchar *id = g_strdup_printf("d%u", i);
        g_assert_true(gw_link_wire_put_device_add(out, id, json, NULL));
    }
}

static void
frames_unknown_type(GByteArray *out)
{
    gw_link_wire_put_header(out, 42, 0, 0, 0);
}

static void
frames_bad_length(GByteArray *out)
{
    gw_link_wire_put_header(out, GW_LINK_FRAME_CREDIT, 0, 3, 1);
    g_byte_array_append(out, (const guint8 *)"abc", 3);
}

static const ProtocolCase protocol_cases[] = {
    {"data-beyond-window", "DATA beyond the window on stream 7", frames_data_beyond_window},
    {"unknown-stream", "DATA on unknown stream 99", frames_unknown_stream},
    {"bad-json", "DEVICE_ADD: bad JSON", frames_bad_json},
    {"missing-member", "DEVICE_REMOVE: member \"id\" missing or not a string",
     frames_missing_member},
    {"too-many-devices", "more than 16384 devices", frames_too_many_devices},
    {"unknown-type", "unknown frame type 42", frames_unknown_type},
    {"bad-length", "CREDIT: payload of 3 bytes, must be 8", frames_bad_length},
};

static void
test_protocol_error(gconstpointer data)
{
    const ProtocolCase *c = data;
    Raw raw = {0};
    g_autoptr(GByteArray) out = g_byte_array_new();

    raw_start(&raw);
    raw_drain(&raw, 20);
    c->frames(out);
    raw_send(&raw, out);
    raw_expect_error(&raw, c->problem);
    raw_clear(&raw);
}

/* An OPEN's device id with control characters comes
 * out printable: it reaches logs and refusal reasons. */
static void
test_open_id_printable(void)
{
    g_autoptr(GByteArray) out = g_byte_array_new();
    g_autoptr(GError) error = NULL;
    g_autofree gchar *device = NULL;
    GwLinkDecoder decoder;
    GwLinkFrame frame;
    gsize used;

    g_assert_true(gw_link_wire_put_open(out, 3, "dev\n\001x\ty", &error));
    g_assert_no_error(error);
    gw_link_decoder_init(&decoder);
    g_assert_cmpint(gw_link_decoder_feed(&decoder, out->data, out->len, &used, &frame, &error), ==,
                    GW_LINK_DECODE_FRAME);
    g_assert_true(gw_link_wire_parse_open(&frame, &device, &error));
    g_assert_no_error(error);
    g_assert_cmpstr(device, ==, "dev??x?y");
    gw_link_decoder_clear(&decoder);
}

int
main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    test_log = g_ptr_array_new_with_free_func(g_free);
    g_log_set_handler("usbgw-link", G_LOG_LEVEL_MESSAGE | G_LOG_LEVEL_INFO | G_LOG_LEVEL_DEBUG,
                      test_log_handler, NULL);

    g_test_add_func("/link/open-id-printable", test_open_id_printable);
    g_test_add_func("/link/directory", test_directory);
    g_test_add_func("/link/open-close", test_open_close);
    g_test_add_func("/link/direct", test_direct);
    g_test_add_func("/link/flush-batched", test_flush_batched);
    g_test_add_func("/link/bulk-slow-reader", test_bulk_slow_reader);
    g_test_add_func("/link/interleave", test_interleave);
    g_test_add_func("/link/resume", test_resume);
    g_test_add_func("/link/grace-expires", test_grace_expires);
    g_test_add_func("/link/peer-restart", test_peer_restart);
    g_test_add_func("/link/keepalive", test_keepalive);
    g_test_add_func("/link/refuse", test_refuse);
    for (guint i = 0; i < G_N_ELEMENTS(protocol_cases); i++) {
        g_autofree gchar *path = g_strdup_printf("/link/protocol-error/%s", protocol_cases[i].name);
        g_test_add_data_func(path, &protocol_cases[i], test_protocol_error);
    }
    int rc = g_test_run();
    g_ptr_array_unref(test_log);
    return rc;
}
