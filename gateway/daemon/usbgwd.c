/* usbgwd: serves USB devices to VMs over usbredir, by policy. */
#include <gio/gio.h>
#include <glib-unix.h>
#include <locale.h>
#include <errno.h>
#include <unistd.h>

#if HAVE_LIBSYSTEMD
#include <systemd/sd-daemon.h>
#endif

#include "gw-daemon.h"

/* Tells the service manager (systemd's Type=notify, NOTIFY_SOCKET) how
 * usbgwd is doing: READY=1 once the control socket answers and hotplug
 * runs, STOPPING=1 when a signal asks it to go. Nothing without
 * NOTIFY_SOCKET or without libsystemd. */
static void
usbgwd_notify(const gchar *state)
{
#if HAVE_LIBSYSTEMD
    int rc = sd_notify(0, state);
    if (rc < 0)
        g_warning("cannot tell the service manager \"%s\": %s", state, g_strerror(-rc));
#endif
}

/* SIGHUP: logrotate moved the audit log (data/usbgw.logrotate). */
static gboolean
usbgwd_reopen_logs(gpointer data)
{
    gw_daemon_reopen_logs(data);
    return G_SOURCE_CONTINUE;
}

static gboolean
usbgwd_quit(gpointer data)
{
    g_message("stopping");
    usbgwd_notify("STOPPING=1");
    g_main_loop_quit(data);
    return G_SOURCE_CONTINUE;
}

int
main(int argc, char **argv)
{
    g_autofree gchar *config_path = NULL;
    g_autofree gchar *policy_path = NULL;
    g_autofree gchar *rundir = NULL;
    gboolean foreground = FALSE;
    gboolean debug = FALSE;
    gboolean version = FALSE;
    const GOptionEntry entries[] = {
        {"config", 'c', 0, G_OPTION_ARG_FILENAME, &config_path,
         "Configuration file (default " GW_CONFIG_DEFAULT_PATH ")", "FILE"},
        {"policy", 'p', 0, G_OPTION_ARG_FILENAME, &policy_path, "Policy file (overrides config)",
         "FILE"},
        {"rundir", 0, 0, G_OPTION_ARG_FILENAME, &rundir, "Runtime directory (overrides config)",
         "DIR"},
        {"foreground", 'f', 0, G_OPTION_ARG_NONE, &foreground, "Do not detach from the terminal",
         NULL},
        {"debug", 'd', 0, G_OPTION_ARG_NONE, &debug, "Log debug messages", NULL},
        {"version", 0, 0, G_OPTION_ARG_NONE, &version, "Print the version and exit", NULL},
        G_OPTION_ENTRY_NULL,
    };
    g_autoptr(GOptionContext) context = g_option_context_new("— USB dongle gateway daemon");
    g_autoptr(GError) error = NULL;
    g_autoptr(GwDaemon) gateway = NULL;
    g_autoptr(GMainLoop) loop = NULL;
    GwConfig config = {0};
    guint hup_source = 0;
    int status = 0;

    setlocale(LC_ALL, "");
    g_option_context_add_main_entries(context, entries, NULL);
    if (!g_option_context_parse(context, &argc, &argv, &error)) {
        g_printerr("usbgwd: %s\n", error->message);
        return 1;
    }
    if (version) {
        g_print("usbgwd %s\n", PACKAGE_VERSION);
        return 0;
    }
    if (debug)
        g_log_set_debug_enabled(TRUE);
    if (!gw_config_load(&config, config_path != NULL ? config_path : GW_CONFIG_DEFAULT_PATH,
                        &error)) {
        g_printerr("usbgwd: %s\n", error->message);
        gw_config_clear(&config);
        return 1;
    }
    if (policy_path != NULL) {
        g_free(config.policy_path);
        config.policy_path = g_steal_pointer(&policy_path);
    }
    if (rundir != NULL) {
        g_free(config.rundir);
        config.rundir = g_steal_pointer(&rundir);
    }
    if (!foreground && daemon(0, 0) != 0) {
        g_printerr("usbgwd: cannot detach: %s\n", g_strerror(errno));
        gw_config_clear(&config);
        return 1;
    }

    loop = g_main_loop_new(NULL, FALSE);
    g_unix_signal_add(SIGTERM, usbgwd_quit, loop);
    g_unix_signal_add(SIGINT, usbgwd_quit, loop);
    gateway = gw_daemon_new(&config, &error);
    if (gateway != NULL)
        hup_source = g_unix_signal_add(SIGHUP, usbgwd_reopen_logs, gateway);
    if (gateway == NULL || !gw_daemon_start(gateway, &error)) {
        g_printerr("usbgwd: %s\n", error->message);
        status = 1;
    } else {
        g_message("ready");
        usbgwd_notify("READY=1\nSTATUS=serving");
        g_main_loop_run(loop);
    }
    g_clear_handle_id(&hup_source, g_source_remove);
    g_clear_pointer(&gateway, gw_daemon_free);
    gw_config_clear(&config);
    return status;
}
