/* The anchor's end of a migration relay stream (gateway/migration/
 * gw-relay-anchor.c) between two GwLinks in one process: the test plays
 * the relay (raw records on a direct stream) and the VM socket's owner (a
 * unix listener the anchor end connects to). Checked: what the owner
 * writes reaches the relay, and counts as unread until the relay reports
 * it read (gw_handover_peer_unread() on the owner's socket), at most
 * GW_RELAY_ANCHOR_WINDOW ahead of the reports; a settle asks the relay and
 * ends only once what it sent before its answer is in the owner's socket;
 * GONE makes the count final and the owner sees the end; a handover's end
 * names the gateways and tells the relay. Attacks: a count beyond what was
 * sent, a count going back, a record only the relay may receive and
 * unknown flags are refused, naming the problem, and the stream closed. */
#include <errno.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <glib/gstdio.h>

#include "gw-handover-relay.h"
#include "gw-handover.h"
#include "gw-link.h"
#include "gw-relay-anchor.h"
#include "gw-relay-wire.h"

#define TEST_TIMEOUT_US (20 * G_USEC_PER_SEC)

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

typedef struct {
    gchar *dir;
    gchar *path;   /* the VM socket */
    int listen_fd; /* the owner's listener */
    int owner_fd;  /* the owner's end of the anchor's connection, -1 until accepted */
    GwLink *a;     /* the anchor's gateway */
    GwLink *b;     /* the relay's gateway (the test) */
    GwRelayAnchor *anchor;
    gchar *anchor_closed; /* its reason, once closed */
    GwLinkStream *stream; /* the test's (relay) end; NULL once closed */
    gchar *stream_closed; /* its reason */
    GwRelayDecoder *decoder;
    GByteArray *data;  /* DATA payloads the relay got */
    GPtrArray *events; /* other records, as text */
} Rig;

static void
anchor_closed(GwRelayAnchor *anchor, const gchar *reason, gpointer data)
{
    Rig *rig = data;
    rig->anchor_closed = g_strdup(reason);
}

static gboolean
a_open_direct(GwLink *link, GwLinkStream *stream, const gchar *id, gchar **reason, gpointer data)
{
    Rig *rig = data;
    g_autoptr(GError) error = NULL;

    g_assert_null(rig->anchor);
    rig->anchor = gw_relay_anchor_new(stream, "hv-a", gw_link_get_peer(link), "test-vm", rig->path,
                                      anchor_closed, rig, &error);
    g_assert_no_error(error);
    return TRUE;
}

static GSocket *
refuse_open(GwLink *link, const gchar *id, gchar **reason, gpointer data)
{
    *reason = g_strdup("no socket streams here");
    return NULL;
}

static void
relay_readable(GwLinkStream *stream, gpointer data)
{
    Rig *rig = data;
    guint8 buf[4096];
    gssize n;

    while ((n = gw_link_stream_read(stream, buf, sizeof(buf))) > 0) {
        for (gsize pos = 0; pos < (gsize)n;) {
            g_autoptr(GError) error = NULL;
            GwRelayRecord record;
            gsize used;
            GwRelayDecodeResult result = gw_relay_decoder_feed(
                rig->decoder, buf + pos, (gsize)n - pos, &used, &record, &error);
            g_assert_no_error(error);
            pos += used;
            if (result != GW_RELAY_DECODE_RECORD)
                continue;
            if (record.type == GW_RELAY_RECORD_DATA) {
                g_byte_array_append(rig->data, record.payload, record.length);
            } else if (record.type == GW_RELAY_RECORD_QUERY) {
                g_ptr_array_add(rig->events, g_strdup("QUERY"));
            } else {
                g_autofree gchar *name = gw_relay_record_name_text(&record);
                g_ptr_array_add(rig->events,
                                g_strdup_printf("%s %s", gw_relay_record_name(record.type), name));
            }
        }
    }
}

static void
relay_writable(GwLinkStream *stream, gpointer data)
{
}

static void
relay_closed(GwLinkStream *stream, const gchar *reason, gpointer data)
{
    Rig *rig = data;
    rig->stream = NULL;
    rig->stream_closed = g_strdup(reason);
}

static gboolean
owner_accepted(gpointer data)
{
    Rig *rig = data;
    if (rig->owner_fd < 0)
        rig->owner_fd = accept4(rig->listen_fd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);
    return rig->owner_fd >= 0;
}

static void
rig_init(Rig *rig)
{
    static const GwLinkCallbacks a_cb = {.open = refuse_open, .open_direct = a_open_direct};
    static const GwLinkCallbacks b_cb = {.open = refuse_open};
    static const GwLinkStreamCallbacks relay_cb = {
        .closed = relay_closed,
        .readable = relay_readable,
        .writable = relay_writable,
    };
    struct sockaddr_un addr = {.sun_family = AF_UNIX};
    GwLinkConfig config = {0};
    int fds[2];

    memset(rig, 0, sizeof(*rig));
    rig->owner_fd = -1;
    rig->dir = g_dir_make_tmp("usbgw-relay-anchor-XXXXXX", NULL);
    rig->path = g_build_filename(rig->dir, "slot.sock", NULL);
    g_strlcpy(addr.sun_path, rig->path, sizeof(addr.sun_path));
    rig->listen_fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    g_assert_cmpint(bind(rig->listen_fd, (struct sockaddr *)&addr, sizeof(addr)), ==, 0);
    g_assert_cmpint(listen(rig->listen_fd, 4), ==, 0);
    rig->decoder = gw_relay_decoder_new(GW_RELAY_END_RELAY);
    rig->data = g_byte_array_new();
    rig->events = g_ptr_array_new_with_free_func(g_free);

    rig->a = gw_link_new("hv-b", &config, &a_cb, rig);
    rig->b = gw_link_new("hv-a", &config, &b_cb, rig);
    g_assert_cmpint(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds), ==, 0);
    for (guint i = 0; i < 2; i++) {
        g_autoptr(GSocket) socket = g_socket_new_from_fd(fds[i], NULL);
        g_autoptr(GSocketConnection) connection =
            g_socket_connection_factory_create_connection(socket);
        gw_link_attach(i == 0 ? rig->a : rig->b, G_IO_STREAM(connection));
    }
    rig->stream = gw_link_open_direct(rig->b, "migrate:test-vm/slot.sock", &relay_cb, rig);
    test_wait(owner_accepted, rig, "the anchor's connection to the VM socket");
    g_assert_nonnull(rig->anchor);
}

static void
rig_clear(Rig *rig)
{
    g_clear_pointer(&rig->anchor, gw_relay_anchor_free);
    if (rig->stream != NULL)
        gw_link_stream_close(rig->stream, "test over");
    gw_link_free(rig->b);
    gw_link_free(rig->a);
    if (rig->owner_fd >= 0)
        close(rig->owner_fd);
    close(rig->listen_fd);
    g_unlink(rig->path);
    g_rmdir(rig->dir);
    gw_relay_decoder_free(rig->decoder);
    g_byte_array_unref(rig->data);
    g_ptr_array_unref(rig->events);
    g_free(rig->anchor_closed);
    g_free(rig->stream_closed);
    g_free(rig->path);
    g_free(rig->dir);
}

/* The relay sends records. */
static void
relay_send(Rig *rig, GByteArray *records)
{
    g_assert_cmpint(gw_link_stream_write(rig->stream, records->data, records->len), ==,
                    records->len);
    gw_link_stream_flush(rig->stream);
}

static void
relay_send_count(Rig *rig, GwRelayRecordType type, guint64 value)
{
    g_autoptr(GByteArray) out = g_byte_array_new();
    gw_relay_wire_put_u64(out, type, value);
    relay_send(rig, out);
}

/* The owner writes @len bytes of @byte (as many as its socket takes). */
static gsize
owner_write(Rig *rig, guint8 byte, gsize len)
{
    g_autofree guint8 *buf = g_malloc(len);
    ssize_t n;

    memset(buf, byte, len);
    n = send(rig->owner_fd, buf, len, MSG_DONTWAIT | MSG_NOSIGNAL);
    g_assert_cmpint(n, >, 0);
    return (gsize)n;
}

static guint64
owner_unread(Rig *rig)
{
    g_autoptr(GError) error = NULL;
    guint64 unread = G_MAXUINT64;

    g_assert_true(gw_handover_peer_unread(rig->owner_fd, &unread, &error));
    g_assert_no_error(error);
    return unread;
}

typedef struct {
    Rig *rig;
    guint64 want;
} Want;

static gboolean
relay_got(gpointer data)
{
    Want *w = data;
    return w->rig->data->len >= w->want;
}

static gboolean
unread_is(gpointer data)
{
    Want *w = data;
    return owner_unread(w->rig) == w->want;
}

static gboolean
stream_is_closed(gpointer data)
{
    Rig *rig = data;
    return rig->stream == NULL;
}

static gboolean
events_has(gpointer data)
{
    Rig *rig = ((gpointer *)data)[0];
    const gchar *event = ((gpointer *)data)[1];
    for (guint i = 0; i < rig->events->len; i++)
        if (g_strcmp0(g_ptr_array_index(rig->events, i), event) == 0)
            return TRUE;
    return FALSE;
}

static void
wait_event(Rig *rig, const gchar *event)
{
    gpointer args[2] = {rig, (gpointer)event};
    test_wait(events_has, args, event);
}

static void
test_counts(void)
{
    Rig rig;
    Want w = {&rig, 100};
    g_autoptr(GByteArray) out = g_byte_array_new();
    guint8 got[16];

    rig_init(&rig);
    /* a pending destination on another host: the VM is about to leave */
    g_assert_true(gw_relay_anchor_vm_is_away("test-vm"));
    g_assert_null(gw_relay_anchor_vm_host("test-vm"));
    g_assert_cmpuint(owner_write(&rig, 'x', 100), ==, 100);
    test_wait(relay_got, &w, "the owner's 100 bytes at the relay");
    g_assert_cmpuint(rig.data->len, ==, 100);
    /* forwarded, but not read by the relay's QEMU yet */
    g_assert_cmpuint(owner_unread(&rig), ==, 100);
    relay_send_count(&rig, GW_RELAY_RECORD_CONSUMED, 60);
    w.want = 40;
    test_wait(unread_is, &w, "40 bytes unread");
    /* the relay's QEMU writes */
    gw_relay_wire_put_data(out, (const guint8 *)"hello", 5);
    relay_send(&rig, out);
    while (recv(rig.owner_fd, got, sizeof(got), MSG_DONTWAIT | MSG_PEEK) < 5)
        g_main_context_iteration(NULL, TRUE);
    g_assert_cmpint(recv(rig.owner_fd, got, sizeof(got), MSG_DONTWAIT), ==, 5);
    g_assert_cmpmem(got, 5, "hello", 5);
    g_assert_null(rig.anchor_closed);
    rig_clear(&rig);
}

static void
settled_cb(gpointer data)
{
    Rig *rig = data;
    guint8 got[16];

    /* what the relay sent before its answer is in the owner's socket */
    g_assert_cmpint(recv(rig->owner_fd, got, sizeof(got), MSG_DONTWAIT | MSG_PEEK), ==, 4);
    g_assert_cmpmem(got, 4, "last", 4);
    g_ptr_array_add(rig->events, g_strdup("settled"));
}

static void
test_settle(void)
{
    Rig rig;
    Want w = {&rig, 10};
    g_autoptr(GByteArray) out = g_byte_array_new();

    rig_init(&rig);
    owner_write(&rig, 'y', 10);
    test_wait(relay_got, &w, "the owner's bytes at the relay");
    g_assert_true(gw_handover_settle_peer(rig.owner_fd, settled_cb, &rig));
    wait_event(&rig, "QUERY");
    test_run_for(20);
    g_assert_false(events_has((gpointer[]){&rig, "settled"}));
    gw_relay_wire_put_data(out, (const guint8 *)"last", 4);
    gw_relay_wire_put_u64(out, GW_RELAY_RECORD_ANSWER, 10);
    relay_send(&rig, out);
    wait_event(&rig, "settled");
    g_assert_cmpuint(owner_unread(&rig), ==, 0);
    /* a local socket has nothing to settle */
    {
        int fds[2];
        g_assert_cmpint(socketpair(AF_UNIX, SOCK_STREAM, 0, fds), ==, 0);
        g_assert_false(gw_handover_settle_peer(fds[0], settled_cb, &rig));
        close(fds[0]);
        close(fds[1]);
    }
    rig_clear(&rig);
}

static void
test_gone_and_records(void)
{
    Rig rig;
    Want w = {&rig, 30};
    g_autoptr(GByteArray) out = g_byte_array_new();
    g_autofree gchar *from = NULL;
    g_autofree gchar *to = NULL;
    guint8 got[64];

    rig_init(&rig);
    /* the relay's QEMU took over from a QEMU of the anchor's host */
    gw_relay_anchor_handover_ended(rig.path, TRUE, TRUE, FALSE, &from, &to);
    g_assert_null(from);
    g_assert_cmpstr(to, ==, "hv-b");
    wait_event(&rig, "MIGRATED_IN hv-a");
    g_assert_true(gw_relay_anchor_is_peer(rig.anchor));
    g_assert_true(gw_relay_anchor_vm_is_away("test-vm"));
    g_assert_cmpstr(gw_relay_anchor_vm_host("test-vm"), ==, "hv-b");
    g_assert_false(gw_relay_anchor_vm_is_away("other-vm"));
    g_assert_null(gw_relay_anchor_vm_host("other-vm"));

    owner_write(&rig, 'z', 30);
    test_wait(relay_got, &w, "the owner's bytes at the relay");
    relay_send_count(&rig, GW_RELAY_RECORD_CONSUMED, 20);
    gw_relay_wire_put_empty(out, GW_RELAY_RECORD_GONE);
    relay_send(&rig, out);
    /* the owner sees its peer's end, and can still count what it missed */
    while (recv(rig.owner_fd, got, sizeof(got), MSG_DONTWAIT) != 0)
        g_main_context_iteration(NULL, TRUE);
    g_assert_cmpuint(owner_unread(&rig), ==, 10);
    /* a final count: nothing to ask */
    g_assert_false(gw_handover_settle_peer(rig.owner_fd, settled_cb, &rig));

    /* the VM came back to the anchor's host */
    g_clear_pointer(&from, g_free);
    g_clear_pointer(&to, g_free);
    gw_relay_anchor_handover_ended(rig.path, TRUE, FALSE, TRUE, &from, &to);
    g_assert_cmpstr(from, ==, "hv-b");
    g_assert_null(to);
    wait_event(&rig, "MIGRATED_OUT hv-a");
    g_assert_false(gw_relay_anchor_vm_is_away("test-vm"));
    g_assert_null(gw_relay_anchor_vm_host("test-vm"));
    /* the owner lets go: the anchor ends and closes the stream */
    close(rig.owner_fd);
    rig.owner_fd = -1;
    test_wait(stream_is_closed, &rig, "the stream closed");
    g_assert_nonnull(rig.anchor_closed);
    rig_clear(&rig);
}

typedef struct {
    const gchar *name;
    guint64 first;  /* a CONSUMED sent first (0: none) */
    guint64 second; /* the bad one */
    const guint8 *raw;
    gsize raw_len;
    const gchar *reason;
} Attack;

static void
test_attack(gconstpointer data)
{
    const Attack *attack = data;
    Rig rig;
    Want w = {&rig, 50};
    /* the anchor warns about the attack: expected here */
    GLogLevelFlags fatal = g_log_set_always_fatal(G_LOG_FATAL_MASK);

    rig_init(&rig);
    owner_write(&rig, 'a', 50);
    test_wait(relay_got, &w, "the owner's bytes at the relay");
    if (attack->first != 0)
        relay_send_count(&rig, GW_RELAY_RECORD_CONSUMED, attack->first);
    if (attack->raw != NULL) {
        g_autoptr(GByteArray) out = g_byte_array_new();
        g_byte_array_append(out, attack->raw, (guint)attack->raw_len);
        relay_send(&rig, out);
    } else {
        relay_send_count(&rig, GW_RELAY_RECORD_CONSUMED, attack->second);
    }
    test_wait(stream_is_closed, &rig, "the anchor closing the stream");
    if (strstr(rig.stream_closed, attack->reason) == NULL)
        g_error("closed with \"%s\", not \"%s\"", rig.stream_closed, attack->reason);
    g_assert_nonnull(rig.anchor_closed);
    rig_clear(&rig);
    g_log_set_always_fatal(fatal);
}

static void
test_window(void)
{
    Rig rig;
    Want w = {&rig, GW_RELAY_ANCHOR_WINDOW};
    gsize written = 0;
    int sndbuf = 1024 * 1024;

    rig_init(&rig);
    setsockopt(rig.owner_fd, SOL_SOCKET, SO_SNDBUF, &sndbuf, sizeof(sndbuf));
    while (written < 3 * GW_RELAY_ANCHOR_WINDOW) {
        ssize_t n = send(rig.owner_fd, (guint8[4096]){0}, 4096, MSG_DONTWAIT | MSG_NOSIGNAL);
        if (n < 0 && errno == EAGAIN) {
            g_main_context_iteration(NULL, FALSE);
            if (rig.data->len >= GW_RELAY_ANCHOR_WINDOW)
                break;
            continue;
        }
        g_assert_cmpint(n, >, 0);
        written += (gsize)n;
    }
    test_wait(relay_got, &w, "a window's worth at the relay");
    test_run_for(50);
    /* no more than the window ahead of the reports */
    g_assert_cmpuint(rig.data->len, ==, GW_RELAY_ANCHOR_WINDOW);
    g_assert_cmpuint(owner_unread(&rig), ==, written);
    relay_send_count(&rig, GW_RELAY_RECORD_CONSUMED, GW_RELAY_ANCHOR_WINDOW);
    w.want = MIN(written, 2 * GW_RELAY_ANCHOR_WINDOW);
    test_wait(relay_got, &w, "the next window at the relay");
    g_assert_cmpuint(owner_unread(&rig), ==, written - GW_RELAY_ANCHOR_WINDOW);
    rig_clear(&rig);
}

int
main(int argc, char **argv)
{
    static const guint8 query[] = {GW_RELAY_RECORD_QUERY, 0, 0, 0};
    static const guint8 flags[] = {GW_RELAY_RECORD_DATA, 4, 0, 1, 'x'};
    static const Attack attacks[] = {
        {"count-beyond-sent", 0, 51, NULL, 0, "says 51 bytes read, but 50 were sent"},
        {"count-going-back", 40, 30, NULL, 0, "says 30 bytes read, but 50 were sent and 40"},
        {"relay-only-record", 0, 0, query, sizeof(query),
         "QUERY is not a record the anchor receives"},
        {"flags", 0, 0, flags, sizeof(flags), "DATA has flags 0x04"},
    };

    g_test_init(&argc, &argv, NULL);
    g_test_add_func("/relay-anchor/counts", test_counts);
    g_test_add_func("/relay-anchor/settle", test_settle);
    g_test_add_func("/relay-anchor/gone-and-records", test_gone_and_records);
    g_test_add_func("/relay-anchor/window", test_window);
    for (guint i = 0; i < G_N_ELEMENTS(attacks); i++) {
        g_autofree gchar *path = g_strdup_printf("/relay-anchor/attack/%s", attacks[i].name);
        g_test_add_data_func(path, &attacks[i], test_attack);
    }
    return g_test_run();
}
