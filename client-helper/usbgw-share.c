/* usbgw-share: lends local USB devices to a VM through a SPICE endpoint
 * of the gateway (usbgw-spice-worker) or any SPICE server with usbredir
 * channels.
 *
 *   usbgw-share spice://HOST:PORT --ticket-file F
 *               (--device VID:PID | --device SERIAL | --filter USBREDIRFILTER)
 *
 * Headless: spice-client-glib without GTK or a display channel. Prints one
 * line per state change on stdout, reconnects after a lost connection with
 * exponential backoff never faster than --min-interval, and releases the
 * devices on SIGINT/SIGTERM.
 *
 * Threading: one GLib main loop; spice-gtk runs its libusb event thread
 * itself and calls us back on the main loop. */
#include <glib-unix.h>
#include <libusb.h>
#include <spice-client.h>
#include <stdio.h>
#include <string.h>

#include "share-backoff.h"
#include "share-match.h"

#define SHARE_EXIT_FAILURE 1
#define SHARE_EXIT_USAGE   2
/* The server refused the ticket: retrying with it cannot help. */
#define SHARE_EXIT_AUTH 3

/* How long we wait for spice-gtk to give the devices back and close the
 * session on SIGINT/SIGTERM before exiting anyway. */
#define SHARE_STOP_GRACE_MS 3000
/* How long we wait for a session to report "disconnected" after we asked
 * for it, before dropping it anyway. */
#define SHARE_DISCONNECT_GRACE_MS 2000

typedef enum {
    SHARE_STATE_CONNECTING,
    SHARE_STATE_CONNECTED,
    SHARE_STATE_DISCONNECTING, /* then SHARE_STATE_WAITING */
    SHARE_STATE_WAITING,       /* for the retry timer */
    SHARE_STATE_STOPPING,
} ShareState;

typedef struct {
    GMainLoop *loop; /* owned */
    char *uri;       /* owned */
    char *ticket_file;
    char *ca_file;     /* nullable */
    ShareMatch *match; /* owned */
    ShareBackoff backoff;

    SpiceSession *session;          /* owned, nullable */
    SpiceUsbDeviceManager *manager; /* owned, nullable: the session's */
    GCancellable *cancellable;      /* owned, nullable: the session's requests */
    GPtrArray *held;                /* owned: SpiceUsbDevice, redirecting or asked to */
    ShareState state;
    guint attempt;
    gint64 connected_at; /* monotonic µs, 0 while not connected */
    guint timer_id;      /* retry, disconnect grace or stop grace */
    guint releasing;     /* disconnect_device_async calls pending at stop */
    gboolean said_waiting;
    int exit_status;
} ShareApp;

static void share_app_connect(ShareApp *app);
static void share_app_redirect(ShareApp *app);

G_GNUC_PRINTF(1, 2)
static void
share_say(const char *format, ...)
{
    g_autofree char *line = NULL;
    va_list args;

    va_start(args, format);
    line = g_strdup_vprintf(format, args);
    va_end(args);
    g_print("usbgw-share: %s\n", line);
    fflush(stdout);
}

static char *
share_device_name(SpiceUsbDevice *device)
{
    return spice_usb_device_get_description(device, "%s %s %s at %d-%d");
}

static void
share_device_free(gpointer device)
{
    g_boxed_free(SPICE_TYPE_USB_DEVICE, device);
}

static gboolean
share_app_holds(ShareApp *app, SpiceUsbDevice *device, guint *index)
{
    return g_ptr_array_find(app->held, device, index);
}

/* Drops the session and everything that belongs to it. */
static void
share_app_drop_session(ShareApp *app)
{
    if (app->cancellable != NULL)
        g_cancellable_cancel(app->cancellable);
    g_clear_object(&app->cancellable);
    if (app->manager != NULL)
        g_signal_handlers_disconnect_by_data(app->manager, app);
    if (app->session != NULL)
        g_signal_handlers_disconnect_by_data(app->session, app);
    g_ptr_array_set_size(app->held, 0);
    g_clear_object(&app->manager);
    g_clear_object(&app->session);
    app->connected_at = 0;
    app->said_waiting = FALSE;
}

static gboolean
share_app_retry(gpointer user_data)
{
    ShareApp *app = user_data;

    app->timer_id = 0;
    share_app_connect(app);
    return G_SOURCE_REMOVE;
}

/* The session is gone (or we gave up waiting): wait, then try again. */
static void
share_app_schedule_retry(ShareApp *app)
{
    gint64 up_s =
        app->connected_at != 0 ? (g_get_monotonic_time() - app->connected_at) / G_USEC_PER_SEC : 0;
    guint delay_s;

    share_app_drop_session(app);
    g_clear_handle_id(&app->timer_id, g_source_remove);
    delay_s = share_backoff_next(&app->backoff, up_s);
    app->state = SHARE_STATE_WAITING;
    share_say("reconnecting in %u s", delay_s);
    /* Not g_timeout_add_seconds(): it rounds to whole seconds and may fire
     * up to a second early, which would break the minimum interval. */
    app->timer_id = g_timeout_add(delay_s * 1000, share_app_retry, app);
}

static gboolean
share_app_disconnect_grace(gpointer user_data)
{
    ShareApp *app = user_data;

    app->timer_id = 0;
    g_debug("session did not report disconnected in time; dropping it");
    if (app->state == SHARE_STATE_STOPPING)
        g_main_loop_quit(app->loop);
    else
        share_app_schedule_retry(app);
    return G_SOURCE_REMOVE;
}

static void
share_app_on_session_disconnected(SpiceSession *session, gpointer user_data)
{
    ShareApp *app = user_data;

    if (app->state == SHARE_STATE_STOPPING) {
        g_main_loop_quit(app->loop);
        return;
    }
    if (app->state == SHARE_STATE_DISCONNECTING)
        share_app_schedule_retry(app);
}

/* The connection failed or was lost: close the session, then retry. */
static void
share_app_lost(ShareApp *app)
{
    if (app->state != SHARE_STATE_CONNECTING && app->state != SHARE_STATE_CONNECTED)
        return;
    app->state = SHARE_STATE_DISCONNECTING;
    g_clear_handle_id(&app->timer_id, g_source_remove);
    app->timer_id = g_timeout_add(SHARE_DISCONNECT_GRACE_MS, share_app_disconnect_grace, app);
    spice_session_disconnect(app->session);
}

static const char *
share_channel_error(SpiceChannel *channel, const char *fallback)
{
    const GError *error = spice_channel_get_error(channel);

    return error != NULL ? error->message : fallback;
}

static void
share_app_on_main_event(SpiceChannel *channel, SpiceChannelEvent event, gpointer user_data)
{
    ShareApp *app = user_data;

    switch (event) {
    case SPICE_CHANNEL_OPENED:
        app->state = SHARE_STATE_CONNECTED;
        app->connected_at = g_get_monotonic_time();
        share_say("connected to %s", app->uri);
        break;
    case SPICE_CHANNEL_SWITCHING:
        break;
    case SPICE_CHANNEL_CLOSED:
        share_say("disconnected from %s", app->uri);
        share_app_lost(app);
        break;
    case SPICE_CHANNEL_ERROR_AUTH:
        share_say("auth error: %s refused the ticket from %s (%s)", app->uri, app->ticket_file,
                  share_channel_error(channel, "authentication failed"));
        app->exit_status = SHARE_EXIT_AUTH;
        app->state = SHARE_STATE_STOPPING;
        g_clear_handle_id(&app->timer_id, g_source_remove);
        app->timer_id = g_timeout_add(SHARE_STOP_GRACE_MS, share_app_disconnect_grace, app);
        spice_session_disconnect(app->session);
        break;
    case SPICE_CHANNEL_ERROR_CONNECT:
    case SPICE_CHANNEL_ERROR_TLS:
    case SPICE_CHANNEL_ERROR_LINK:
    case SPICE_CHANNEL_ERROR_IO:
        share_say("disconnected from %s: %s", app->uri,
                  share_channel_error(channel, event == SPICE_CHANNEL_ERROR_CONNECT
                                                   ? "cannot connect"
                                               : event == SPICE_CHANNEL_ERROR_TLS  ? "TLS error"
                                               : event == SPICE_CHANNEL_ERROR_LINK ? "link error"
                                                                                   : "I/O error"));
        share_app_lost(app);
        break;
    case SPICE_CHANNEL_NONE:
        break;
    }
}

static void
share_app_on_usbredir_event(SpiceChannel *channel, SpiceChannelEvent event, gpointer user_data)
{
    ShareApp *app = user_data;
    int id = 0;

    g_object_get(channel, "channel-id", &id, NULL);
    if (event == SPICE_CHANNEL_OPENED) {
        g_debug("usbredir channel %d opened", id);
        if (app->state == SHARE_STATE_CONNECTED)
            share_app_redirect(app);
    } else if (event >= SPICE_CHANNEL_CLOSED && app->state == SHARE_STATE_CONNECTED) {
        share_say("usbredir channel %d closed: %s", id,
                  share_channel_error(channel, "closed by the server"));
    }
}

static void
share_app_on_channel_new(SpiceSession *session, SpiceChannel *channel, gpointer user_data)
{
    if (SPICE_IS_MAIN_CHANNEL(channel))
        g_signal_connect(channel, "channel-event", G_CALLBACK(share_app_on_main_event), user_data);
    else if (SPICE_IS_USBREDIR_CHANNEL(channel))
        g_signal_connect(channel, "channel-event", G_CALLBACK(share_app_on_usbredir_event),
                         user_data);
}

typedef struct {
    ShareApp *app;          /* not owned */
    SpiceUsbDevice *device; /* owned */
} ShareRequest;

static void
share_request_free(ShareRequest *request)
{
    g_boxed_free(SPICE_TYPE_USB_DEVICE, request->device);
    g_free(request);
}

static void
share_app_connect_done(GObject *source, GAsyncResult *result, gpointer user_data)
{
    ShareRequest *request = user_data;
    ShareApp *app = request->app;
    g_autoptr(GError) error = NULL;
    g_autofree char *name = share_device_name(request->device);
    gboolean ok = spice_usb_device_manager_connect_device_finish(SPICE_USB_DEVICE_MANAGER(source),
                                                                 result, &error);
    guint index;

    if (ok) {
        share_say("redirecting %s", name);
    } else if (!g_error_matches(error, G_IO_ERROR, G_IO_ERROR_CANCELLED)) {
        share_say("cannot redirect %s: %s", name, error->message);
        if (SPICE_USB_DEVICE_MANAGER(source) == app->manager &&
            share_app_holds(app, request->device, &index))
            g_ptr_array_remove_index(app->held, index);
    }
    share_request_free(request);
}

/* Asks spice-gtk to redirect every matching device not yet held. */
static void
share_app_redirect(ShareApp *app)
{
    g_autoptr(GPtrArray) devices = NULL;
    const char *filter = share_match_get_filter(app->match);
    gboolean any = FALSE;

    if (app->manager == NULL)
        return;
    devices = filter != NULL
                  ? spice_usb_device_manager_get_devices_with_filter(app->manager, filter)
                  : spice_usb_device_manager_get_devices(app->manager);
    for (guint i = 0; i < devices->len; i++) {
        SpiceUsbDevice *device = g_ptr_array_index(devices, i);
        g_autoptr(GError) error = NULL;
        g_autofree char *name = NULL;
        ShareRequest *request;

        if (!share_match_device(app->match,
                                (libusb_device *)spice_usb_device_get_libusb_device(device)))
            continue;
        any = TRUE;
        if (share_app_holds(app, device, NULL) ||
            spice_usb_device_manager_is_device_connected(app->manager, device))
            continue;
        name = share_device_name(device);
        if (!spice_usb_device_manager_can_redirect_device(app->manager, device, &error)) {
            share_say("cannot redirect %s: %s", name, error->message);
            continue;
        }
        g_ptr_array_add(app->held, g_boxed_copy(SPICE_TYPE_USB_DEVICE, device));
        request = g_new0(ShareRequest, 1);
        request->app = app;
        request->device = g_boxed_copy(SPICE_TYPE_USB_DEVICE, device);
        spice_usb_device_manager_connect_device_async(app->manager, device, app->cancellable,
                                                      share_app_connect_done, request);
    }
    if (!any && app->held->len == 0 && !app->said_waiting) {
        share_say("waiting for a device matching %s", share_match_describe(app->match));
        app->said_waiting = TRUE;
    }
}

static void
share_app_on_device_added(SpiceUsbDeviceManager *manager, SpiceUsbDevice *device,
                          gpointer user_data)
{
    ShareApp *app = user_data;

    if (app->state == SHARE_STATE_CONNECTED)
        share_app_redirect(app);
}

static void
share_app_on_device_removed(SpiceUsbDeviceManager *manager, SpiceUsbDevice *device,
                            gpointer user_data)
{
    ShareApp *app = user_data;
    guint index;

    if (share_app_holds(app, device, &index)) {
        g_autofree char *name = share_device_name(device);

        share_say("device lost %s", name);
        g_ptr_array_remove_index(app->held, index);
        app->said_waiting = FALSE;
    }
}

static void
share_app_on_device_error(SpiceUsbDeviceManager *manager, SpiceUsbDevice *device, GError *error,
                          gpointer user_data)
{
    ShareApp *app = user_data;
    g_autofree char *name = share_device_name(device);
    guint index;

    share_say("device error %s: %s", name, error != NULL ? error->message : "unknown");
    if (share_app_holds(app, device, &index))
        g_ptr_array_remove_index(app->held, index);
}

static char *
share_read_ticket(const char *path, GError **error)
{
    g_autofree char *contents = NULL;
    gsize length = 0;

    if (!g_file_get_contents(path, &contents, &length, error))
        return NULL;
    while (length > 0 && (contents[length - 1] == '\n' || contents[length - 1] == '\r'))
        contents[--length] = '\0';
    if (length == 0 || strlen(contents) != length) {
        g_set_error(error, G_IO_ERROR, G_IO_ERROR_INVALID_DATA,
                    "%s: the ticket must be one non-empty line of text", path);
        return NULL;
    }
    return g_steal_pointer(&contents);
}

static void
share_app_fail(ShareApp *app, const GError *error)
{
    share_say("error: %s", error->message);
    app->exit_status = SHARE_EXIT_FAILURE;
    share_app_drop_session(app);
    g_main_loop_quit(app->loop);
}

static void
share_app_connect(ShareApp *app)
{
    g_autoptr(GError) error = NULL;
    g_autofree char *ticket = NULL;

    /* Read each time: whoever hands out tickets may have replaced it. */
    ticket = share_read_ticket(app->ticket_file, &error);
    if (ticket == NULL) {
        share_app_fail(app, error);
        return;
    }
    app->attempt++;
    app->state = SHARE_STATE_CONNECTING;
    app->session = spice_session_new();
    app->cancellable = g_cancellable_new();
    g_object_set(app->session, "uri", app->uri, "password", ticket, "enable-audio", FALSE,
                 "enable-usbredir", TRUE, NULL);
    explicit_bzero(ticket, strlen(ticket));
    if (app->ca_file != NULL)
        g_object_set(app->session, "ca-file", app->ca_file, NULL);
    /* Before connecting, or the usbredir channels find no manager. */
    app->manager = spice_usb_device_manager_get(app->session, &error);
    if (app->manager == NULL) {
        share_app_fail(app, error);
        return;
    }
    g_object_ref(app->manager);
    g_signal_connect(app->manager, "device-added", G_CALLBACK(share_app_on_device_added), app);
    g_signal_connect(app->manager, "device-removed", G_CALLBACK(share_app_on_device_removed), app);
    g_signal_connect(app->manager, "device-error", G_CALLBACK(share_app_on_device_error), app);
    g_signal_connect(app->session, "channel-new", G_CALLBACK(share_app_on_channel_new), app);
    g_signal_connect(app->session, "disconnected", G_CALLBACK(share_app_on_session_disconnected),
                     app);
    share_say("connecting to %s (attempt %u)", app->uri, app->attempt);
    if (!spice_session_connect(app->session)) {
        share_say("disconnected from %s: cannot start the connection", app->uri);
        share_app_schedule_retry(app);
    }
}

static void
share_app_release_done(GObject *source, GAsyncResult *result, gpointer user_data)
{
    ShareRequest *request = user_data;
    ShareApp *app = request->app;
    g_autoptr(GError) error = NULL;
    g_autofree char *name = share_device_name(request->device);

    if (spice_usb_device_manager_disconnect_device_finish(SPICE_USB_DEVICE_MANAGER(source), result,
                                                          &error))
        share_say("released %s", name);
    else
        share_say("releasing %s: %s", name, error->message);
    share_request_free(request);
    if (--app->releasing == 0 && app->session != NULL)
        spice_session_disconnect(app->session);
}

static gboolean
share_app_on_signal(gpointer user_data)
{
    ShareApp *app = user_data;

    if (app->state == SHARE_STATE_STOPPING)
        return G_SOURCE_CONTINUE;
    share_say("stopping");
    app->state = SHARE_STATE_STOPPING;
    g_clear_handle_id(&app->timer_id, g_source_remove);
    if (app->session == NULL) {
        g_main_loop_quit(app->loop);
        return G_SOURCE_CONTINUE;
    }
    app->timer_id = g_timeout_add(SHARE_STOP_GRACE_MS, share_app_disconnect_grace, app);
    /* Give the devices back to the host first, then close the session. */
    for (guint i = 0; i < app->held->len; i++) {
        SpiceUsbDevice *device = g_ptr_array_index(app->held, i);
        ShareRequest *request;

        if (!spice_usb_device_manager_is_device_connected(app->manager, device))
            continue;
        request = g_new0(ShareRequest, 1);
        request->app = app;
        request->device = g_boxed_copy(SPICE_TYPE_USB_DEVICE, device);
        app->releasing++;
        spice_usb_device_manager_disconnect_device_async(app->manager, device, NULL,
                                                         share_app_release_done, request);
    }
    if (app->releasing == 0)
        spice_session_disconnect(app->session);
    return G_SOURCE_CONTINUE;
}

int
main(int argc, char **argv)
{
    g_autoptr(GOptionContext) context = NULL;
    g_autoptr(GError) error = NULL;
    g_auto(GStrv) devices = NULL;
    g_autofree char *filter = NULL;
    g_autofree char *ticket_file = NULL;
    g_autofree char *ca_file = NULL;
    int min_interval = SHARE_DEFAULT_MIN_INTERVAL_S;
    gboolean debug = FALSE;
    gboolean version = FALSE;
    ShareApp app = {0};
    const GOptionEntry entries[] = {
        {"ticket-file", 0, 0, G_OPTION_ARG_FILENAME, &ticket_file,
         "Read the SPICE ticket (password) from FILE", "FILE"},
        /* an array only so that a second --device is refused, not
         * silently taken instead of the first */
        {"device", 0, 0, G_OPTION_ARG_STRING_ARRAY, &devices,
         "Lend the device with this VID:PID (hex) or serial number (once; for more devices "
         "use --filter)",
         "ID"},
        {"filter", 0, 0, G_OPTION_ARG_STRING, &filter,
         "Lend devices matching a usbredir filter (class,vid,pid,version,allow|...)", "FILTER"},
        {"min-interval", 0, 0, G_OPTION_ARG_INT, &min_interval,
         "Never try to connect more often than every S seconds (default 30)", "S"},
        {"ca-file", 0, 0, G_OPTION_ARG_FILENAME, &ca_file, "CA certificate for spice+tls:// URIs",
         "FILE"},
        {"debug", 0, 0, G_OPTION_ARG_NONE, &debug, "Print spice-gtk debug messages", NULL},
        {"version", 0, 0, G_OPTION_ARG_NONE, &version, "Print the version and exit", NULL},
        G_OPTION_ENTRY_NULL,
    };
    guint n_devices;

    context = g_option_context_new("spice://HOST:PORT - lend local USB devices over SPICE");
    g_option_context_add_main_entries(context, entries, NULL);
    if (!g_option_context_parse(context, &argc, &argv, &error)) {
        g_printerr("usbgw-share: %s\n", error->message);
        return SHARE_EXIT_USAGE;
    }
    if (version) {
        g_print("usbgw-share %s\n", PACKAGE_VERSION);
        return 0;
    }
    n_devices = devices != NULL ? g_strv_length(devices) : 0;
    if (n_devices > 1) {
        g_printerr("usbgw-share: --device is taken once; to lend several devices, give a "
                   "--filter that matches them\n");
        return SHARE_EXIT_USAGE;
    }
    if (argc != 2 || ticket_file == NULL || (n_devices == 0) == (filter == NULL) ||
        min_interval < 1) {
        g_printerr("usbgw-share: usage: usbgw-share spice://HOST:PORT --ticket-file F "
                   "(--device VID:PID | --device SERIAL | --filter USBREDIRFILTER) "
                   "[--min-interval S (>= 1)]\n");
        return SHARE_EXIT_USAGE;
    }
    app.match = n_devices == 1 ? share_match_new_device(devices[0], &error)
                               : share_match_new_filter(filter, &error);
    if (app.match == NULL) {
        g_printerr("usbgw-share: %s\n", error->message);
        return SHARE_EXIT_USAGE;
    }
    if (debug)
        spice_util_set_debug(TRUE);

    app.loop = g_main_loop_new(NULL, FALSE);
    app.uri = g_strdup(argv[1]);
    app.ticket_file = ticket_file;
    app.ca_file = ca_file;
    app.held = g_ptr_array_new_with_free_func(share_device_free);
    share_backoff_init(&app.backoff, (guint)min_interval);
    g_unix_signal_add(SIGINT, share_app_on_signal, &app);
    g_unix_signal_add(SIGTERM, share_app_on_signal, &app);

    share_app_connect(&app);
    if (app.exit_status == 0 || app.session != NULL)
        g_main_loop_run(app.loop);

    share_app_drop_session(&app);
    g_clear_handle_id(&app.timer_id, g_source_remove);
    g_ptr_array_unref(app.held);
    share_match_free(app.match);
    g_free(app.uri);
    g_main_loop_unref(app.loop);
    share_say("exiting");
    return app.exit_status;
}
