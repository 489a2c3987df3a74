/* gw-usbredir-error: every usbredirhost read and write result and every
 * usbredirproto.h status maps to its own GError code and a clear message;
 * codes usbredir may add later map to GW_USBREDIR_ERROR_UNKNOWN with the
 * number. Then a GwSession over a socketpair, to see the session close
 * with those messages. */
#include <poll.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>
#include <usbredirhost.h>

#include "gw-session.h"
#include "gw-usbgw-metrics.h"
#include "gw-usbredir-error.h"

#define TEST_TIMEOUT_MS 5000

typedef enum {
    MAP_READ,   /* gw_usbredir_read_result_to_error */
    MAP_WRITE,  /* gw_usbredir_write_result_to_error */
    MAP_STATUS, /* gw_usbredir_status_to_error */
} MapKind;

typedef struct {
    const gchar *name;
    MapKind kind;
    int input;
    gboolean want_ok;
    GwUsbredirError want_code;
    const gchar *want_message;
} MapCase;

static const MapCase map_cases[] = {
    {.name = "read-ok", .kind = MAP_READ, .input = 0, .want_ok = TRUE},
    {.name = "read-io-error",
     .kind = MAP_READ,
     .input = usbredirhost_read_io_error,
     .want_code = GW_USBREDIR_ERROR_PEER_CLOSED,
     .want_message = "peer closed the connection"},
    {.name = "read-parse-error",
     .kind = MAP_READ,
     .input = usbredirhost_read_parse_error,
     .want_code = GW_USBREDIR_ERROR_PROTOCOL,
     .want_message = "peer sent malformed usbredir data"},
    {.name = "read-device-rejected",
     .kind = MAP_READ,
     .input = usbredirhost_read_device_rejected,
     .want_code = GW_USBREDIR_ERROR_DEVICE_REJECTED,
     .want_message = "peer rejected the device (its filter refused it)"},
    {.name = "read-device-lost",
     .kind = MAP_READ,
     .input = usbredirhost_read_device_lost,
     .want_code = GW_USBREDIR_ERROR_DEVICE_LOST,
     .want_message = "device lost"},
    {.name = "read-unknown-negative",
     .kind = MAP_READ,
     .input = -5,
     .want_code = GW_USBREDIR_ERROR_UNKNOWN,
     .want_message = "unknown usbredirhost read result -5"},
    {.name = "read-unknown-positive",
     .kind = MAP_READ,
     .input = 1,
     .want_code = GW_USBREDIR_ERROR_UNKNOWN,
     .want_message = "unknown usbredirhost read result 1"},
    {.name = "write-ok", .kind = MAP_WRITE, .input = 0, .want_ok = TRUE},
    {.name = "write-io-error",
     .kind = MAP_WRITE,
     .input = usbredirhost_write_io_error,
     .want_code = GW_USBREDIR_ERROR_WRITE,
     .want_message = "write to peer failed"},
    {.name = "write-unknown",
     .kind = MAP_WRITE,
     .input = -2,
     .want_code = GW_USBREDIR_ERROR_UNKNOWN,
     .want_message = "unknown usbredirhost write result -2"},
    {.name = "status-success", .kind = MAP_STATUS, .input = usb_redir_success, .want_ok = TRUE},
    {.name = "status-cancelled",
     .kind = MAP_STATUS,
     .input = usb_redir_cancelled,
     .want_code = GW_USBREDIR_ERROR_CANCELLED,
     .want_message = "cancelled"},
    {.name = "status-inval",
     .kind = MAP_STATUS,
     .input = usb_redir_inval,
     .want_code = GW_USBREDIR_ERROR_INVALID,
     .want_message = "invalid request"},
    {.name = "status-ioerror",
     .kind = MAP_STATUS,
     .input = usb_redir_ioerror,
     .want_code = GW_USBREDIR_ERROR_DEVICE_IO,
     .want_message = "USB I/O error"},
    {.name = "status-stall",
     .kind = MAP_STATUS,
     .input = usb_redir_stall,
     .want_code = GW_USBREDIR_ERROR_STALL,
     .want_message = "the device stalled"},
    {.name = "status-timeout",
     .kind = MAP_STATUS,
     .input = usb_redir_timeout,
     .want_code = GW_USBREDIR_ERROR_TIMEOUT,
     .want_message = "the device did not answer in time"},
    {.name = "status-babble",
     .kind = MAP_STATUS,
     .input = usb_redir_babble,
     .want_code = GW_USBREDIR_ERROR_BABBLE,
     .want_message = "the device sent more than was asked for (babble)"},
    {.name = "status-unknown",
     .kind = MAP_STATUS,
     .input = usb_redir_babble + 1,
     .want_code = GW_USBREDIR_ERROR_UNKNOWN,
     .want_message = "unknown usbredir status 7"},
    {.name = "status-unknown-negative",
     .kind = MAP_STATUS,
     .input = -1,
     .want_code = GW_USBREDIR_ERROR_UNKNOWN,
     .want_message = "unknown usbredir status -1"},
};

static void
test_map(gconstpointer data)
{
    const MapCase *c = data;
    g_autoptr(GError) error = NULL;
    gboolean ok = FALSE;

    switch (c->kind) {
    case MAP_READ:
        ok = gw_usbredir_read_result_to_error(c->input, &error);
        break;
    case MAP_WRITE:
        ok = gw_usbredir_write_result_to_error(c->input, &error);
        break;
    case MAP_STATUS:
        ok = gw_usbredir_status_to_error(c->input, &error);
        break;
    }
    if (c->want_ok) {
        g_assert_no_error(error);
        g_assert_true(ok);
        return;
    }
    g_assert_false(ok);
    g_assert_error(error, GW_USBREDIR_ERROR, (gint)c->want_code);
    g_assert_cmpstr(error->message, ==, c->want_message);
}

/* The mappings accept a NULL GError, as every GError function does. */
static void
test_map_null_error(void)
{
    g_assert_false(gw_usbredir_read_result_to_error(usbredirhost_read_parse_error, NULL));
    g_assert_false(gw_usbredir_write_result_to_error(usbredirhost_write_io_error, NULL));
    g_assert_false(gw_usbredir_status_to_error(usb_redir_stall, NULL));
}

/* Each code of the domain is what some status maps to: a code nothing
 * produces, or a case missing from the table, shows up here. */
static void
test_map_covers_domain(void)
{
    for (gint code = GW_USBREDIR_ERROR_PEER_CLOSED; code <= GW_USBREDIR_ERROR_UNKNOWN; code++) {
        gboolean found = FALSE;
        for (gsize i = 0; i < G_N_ELEMENTS(map_cases) && !found; i++)
            found = !map_cases[i].want_ok && (gint)map_cases[i].want_code == code;
        if (!found)
            g_test_fail_printf("no case maps to GwUsbredirError %d", code);
    }
}

/* ---- a GwSession closes with the mapped message --------------------------- */

typedef struct {
    gboolean closed;
    gchar *reason;
} SessionHarness;

static void
session_closed(GwSession *session, const gchar *reason, gpointer user_data)
{
    SessionHarness *h = user_data;

    h->closed = TRUE;
    h->reason = g_strdup(reason);
}

static gboolean
session_timeout(gpointer data)
{
    *(gboolean *)data = TRUE;
    return G_SOURCE_REMOVE;
}

/* Starts a session on one end of a socketpair, lets @peer_action act on
 * the other end, and returns the reason the session closed with. */
static gchar *
session_close_reason(void (*peer_action)(int fd))
{
    g_autoptr(GError) error = NULL;
    g_autoptr(GSocket) socket = NULL;
    g_autoptr(GwSession) session = NULL;
    SessionHarness h = {0};
    libusb_context *usb = NULL;
    gboolean timed_out = FALSE;
    guint timeout_id;
    int fds[2];

    if (libusb_init(&usb) != LIBUSB_SUCCESS) {
        g_test_skip("libusb_init failed");
        return NULL;
    }
    g_assert_cmpint(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds), ==, 0);
    socket = g_socket_new_from_fd(fds[0], &error);
    g_assert_no_error(error);
    session = gw_session_new(usb, socket, "test-session", NULL, NULL, session_closed, &h, &error);
    g_assert_no_error(error);
    g_assert_nonnull(session);
    peer_action(fds[1]);
    timeout_id = g_timeout_add(TEST_TIMEOUT_MS, session_timeout, &timed_out);
    while (!h.closed && !timed_out)
        g_main_context_iteration(NULL, TRUE);
    if (!timed_out)
        g_source_remove(timeout_id);
    g_assert_true(h.closed);
    g_assert_nonnull(h.reason);
    g_clear_pointer(&session, gw_session_free);
    close(fds[1]);
    libusb_exit(usb);
    return h.reason;
}

static void
peer_send_garbage(int fd)
{
    /* a 12-byte usbredir header: packet type 0x7fffffff, length 0, id 0 */
    static const guint8 header[12] = {0xff, 0xff, 0xff, 0x7f};

    g_assert_cmpint(send(fd, header, sizeof(header), MSG_NOSIGNAL), ==, (ssize_t)sizeof(header));
}

/* Waits for the session's hello, then closes the peer's sending side: the
 * session reads EOF while its own writes still succeed. */
static void
peer_hang_up(int fd)
{
    struct pollfd pfd = {.fd = fd, .events = POLLIN};
    gint64 deadline = g_get_monotonic_time() + TEST_TIMEOUT_MS * G_TIME_SPAN_MILLISECOND;
    guint8 buffer[4096];

    while (poll(&pfd, 1, 0) == 0 && g_get_monotonic_time() < deadline)
        g_main_context_iteration(NULL, FALSE);
    g_assert_cmpint(recv(fd, buffer, sizeof(buffer), MSG_DONTWAIT), >, 0);
    shutdown(fd, SHUT_WR);
}

/* The session's warnings are structured (gw-log.h): they reach the
 * writer, not g_test_expect_message()'s handler. Kept here. */
static GPtrArray *serve_warnings;

static GLogWriterOutput
test_log_writer(GLogLevelFlags level, const GLogField *fields, gsize n_fields, gpointer user_data)
{
    const gchar *domain = NULL;
    const gchar *message = NULL;

    for (gsize i = 0; i < n_fields; i++) {
        if (g_strcmp0(fields[i].key, "GLIB_DOMAIN") == 0)
            domain = fields[i].value;
        else if (g_strcmp0(fields[i].key, "MESSAGE") == 0)
            message = fields[i].value;
    }
    if (g_strcmp0(domain, "usbgw-serve") == 0 && (level & G_LOG_LEVEL_WARNING) && message != NULL) {
        g_ptr_array_add(serve_warnings, g_strdup(message));
        return G_LOG_WRITER_HANDLED;
    }
    return g_log_writer_default(level, fields, n_fields, user_data);
}

static void
test_session_parse_error(void)
{
    g_autofree gchar *reason = NULL;
    GwMetricFamily *errors = gw_usbgw_metrics_families()->transfer_errors;
    gdouble errors_before = gw_metric_series_get(gw_metric_family_single(errors));
    gboolean logged = FALSE;

    /* usbredirparser's own complaint, which the session logs and counts */
    g_ptr_array_set_size(serve_warnings, 0);
    reason = session_close_reason(peer_send_garbage);
    for (guint i = 0; i < serve_warnings->len; i++)
        logged |=
            strstr(g_ptr_array_index(serve_warnings, i), "invalid usb-redir packet type") != NULL;
    if (reason != NULL) {
        g_assert_true(logged);
        g_assert_cmpfloat(gw_metric_series_get(gw_metric_family_single(errors)), >, errors_before);
    }

    if (reason != NULL) /* NULL: skipped */
        g_assert_cmpstr(reason, ==, "peer sent malformed usbredir data");
}

static void
test_session_peer_closed(void)
{
    g_autofree gchar *reason = session_close_reason(peer_hang_up);

    if (reason != NULL) /* NULL: skipped */
        g_assert_cmpstr(reason, ==, "peer closed the connection");
}

int
main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    serve_warnings = g_ptr_array_new_with_free_func(g_free);
    g_log_set_writer_func(test_log_writer, NULL, NULL);
    for (gsize i = 0; i < G_N_ELEMENTS(map_cases); i++) {
        g_autofree gchar *path = g_strdup_printf("/usbredir-error/map/%s", map_cases[i].name);
        g_test_add_data_func(path, &map_cases[i], test_map);
    }
    g_test_add_func("/usbredir-error/map/null-error", test_map_null_error);
    g_test_add_func("/usbredir-error/map/covers-domain", test_map_covers_domain);
    g_test_add_func("/usbredir-error/session/parse-error", test_session_parse_error);
    g_test_add_func("/usbredir-error/session/peer-closed", test_session_peer_closed);
    return g_test_run();
}
