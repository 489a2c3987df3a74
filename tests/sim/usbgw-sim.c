/* usbgw-sim: simulated USB license keys for tests and demos.
 *
 * Owns a umockdev testbed, serves the keys' usbfs nodes, and takes
 * commands (plug, unplug, list, secret, quit) one per line on stdin and on
 * an optional unix socket. Processes started as its COMMAND, or under
 * umockdev-wrapper with its UMOCKDEV_DIR, see the keys through libusb. */
#include <errno.h>
#include <gio/gio.h>
#include <gio/gunixinputstream.h>
#include <gio/gunixoutputstream.h>
#include <glib-unix.h>
#include <glib/gstdio.h>
#include <signal.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "sim-bed.h"

#define SIM_APP_EXIT_FAILURE 1
#define SIM_APP_EXIT_USAGE   2
/* Set while re-executing under umockdev-wrapper, so that a wrapper which
 * fails to preload cannot make us loop. */
#define SIM_APP_REEXEC_ENV "USBGW_SIM_REEXEC"

typedef struct {
    SimBed *bed;             /* owned */
    GMainLoop *loop;         /* owned */
    GSocketService *service; /* owned, nullable: --control */
    GPid child;              /* 0 when there is none (any more) */
    int exit_status;
    gboolean quitting;
} SimApp;

/* One command channel: stdin/stdout, or one control socket connection.
 * Lines are read one at a time and each reply is written before the next
 * line is read, so replies keep the order of the commands. */
typedef struct {
    SimApp *app;           /* not owned */
    GIOStream *connection; /* owned, nullable: keeps a socket open */
    GDataInputStream *in;  /* owned */
    GOutputStream *out;    /* owned */
    GString *reply;        /* owned: being written */
    gboolean quit_after_reply;
    gboolean quit_at_eof; /* stdin without COMMAND */
} SimConsole;

static void sim_console_read_next(SimConsole *console);

static void
sim_console_free(SimConsole *console)
{
    g_clear_object(&console->in);
    g_clear_object(&console->out);
    g_clear_object(&console->connection);
    g_string_free(console->reply, TRUE);
    g_free(console);
}

static void
sim_app_quit(SimApp *app)
{
    if (app->child == 0) {
        g_main_loop_quit(app->loop);
        return;
    }
    /* We exit with the child's status once it is gone. */
    if (!app->quitting)
        kill(app->child, SIGTERM);
    app->quitting = TRUE;
}

static void
sim_app_help(GString *reply)
{
    g_string_append(reply, "plug NAME      plug the key in (NAME as in 'list')\n"
                           "unplug NAME    pull the key out\n"
                           "list           NAME STATE VID:PID DEVPATH BUS/DEV SECRET per key\n"
                           "secret NAME    the key's secret, as hex\n"
                           "quit           stop usbgw-sim (and its COMMAND)\n");
}

/* Runs one command line and appends its reply: any lines, then one line
 * "ok[ detail]" or "error: reason". */
static void
sim_app_run_command(SimApp *app, const char *line, GString *reply, gboolean *quit)
{
    g_auto(GStrv) words = g_strsplit_set(line, " \t", -1);
    g_autoptr(GPtrArray) argv = g_ptr_array_new();
    g_autoptr(GError) error = NULL;
    g_autofree char *detail = NULL;
    gboolean ok = FALSE;

    for (char **w = words; *w != NULL; w++) {
        if (**w != '\0')
            g_ptr_array_add(argv, *w);
    }
    const char *cmd = argv->len > 0 ? argv->pdata[0] : "";
    const char *name = argv->len == 2 ? argv->pdata[1] : NULL;
    gboolean takes_name =
        g_str_equal(cmd, "plug") || g_str_equal(cmd, "unplug") || g_str_equal(cmd, "secret");
    gboolean known = takes_name || g_str_equal(cmd, "list") || g_str_equal(cmd, "help") ||
                     g_str_equal(cmd, "quit");

    if (!known) {
        g_set_error(&error, G_IO_ERROR, G_IO_ERROR_NOT_SUPPORTED,
                    "unknown command '%s' (try: plug, unplug, list, secret, quit, help)", cmd);
    } else if (argv->len != (takes_name ? 2u : 1u)) {
        g_set_error(&error, G_IO_ERROR, G_IO_ERROR_INVALID_ARGUMENT, "usage: %s%s", cmd,
                    takes_name ? " NAME" : "");
    } else if (g_str_equal(cmd, "plug")) {
        ok = sim_bed_plug(app->bed, name, &error);
    } else if (g_str_equal(cmd, "unplug")) {
        ok = sim_bed_unplug(app->bed, name, &error);
    } else if (g_str_equal(cmd, "secret")) {
        detail = sim_bed_get_secret(app->bed, name, &error);
        ok = detail != NULL;
    } else if (g_str_equal(cmd, "list")) {
        sim_bed_list(app->bed, reply);
        ok = TRUE;
    } else if (g_str_equal(cmd, "help")) {
        sim_app_help(reply);
        ok = TRUE;
    } else {
        *quit = TRUE;
        ok = TRUE;
    }

    if (ok)
        g_string_append_printf(reply, "ok%s%s\n", detail != NULL ? " " : "",
                               detail != NULL ? detail : "");
    else
        g_string_append_printf(reply, "error: %s\n", error->message);
}

/* The channel is done: EOF, an I/O error, or "quit". */
static void
sim_console_close(SimConsole *console, gboolean quit)
{
    if (quit)
        sim_app_quit(console->app);
    sim_console_free(console);
}

static void
sim_console_written(GObject *source, GAsyncResult *result, gpointer user_data)
{
    SimConsole *console = user_data;
    g_autoptr(GError) error = NULL;

    if (!g_output_stream_write_all_finish(G_OUTPUT_STREAM(source), result, NULL, &error)) {
        g_debug("cannot write reply: %s", error->message);
        sim_console_close(console, console->quit_at_eof);
        return;
    }
    if (console->quit_after_reply) {
        sim_console_close(console, TRUE);
        return;
    }
    sim_console_read_next(console);
}

static void
sim_console_got_line(GObject *source, GAsyncResult *result, gpointer user_data)
{
    SimConsole *console = user_data;
    g_autoptr(GError) error = NULL;
    g_autofree char *line =
        g_data_input_stream_read_line_finish(G_DATA_INPUT_STREAM(source), result, NULL, &error);

    if (line == NULL) {
        if (error != NULL)
            g_debug("cannot read command: %s", error->message);
        sim_console_close(console, console->quit_at_eof);
        return;
    }
    g_strstrip(line);
    if (line[0] == '\0' || line[0] == '#') {
        sim_console_read_next(console);
        return;
    }

    g_string_truncate(console->reply, 0);
    if (!g_utf8_validate(line, -1, NULL))
        g_string_append(console->reply, "error: command is not UTF-8\n");
    else
        sim_app_run_command(console->app, line, console->reply, &console->quit_after_reply);
    g_output_stream_write_all_async(console->out, console->reply->str, console->reply->len,
                                    G_PRIORITY_DEFAULT, NULL, sim_console_written, console);
}

static void
sim_console_read_next(SimConsole *console)
{
    g_data_input_stream_read_line_async(console->in, G_PRIORITY_DEFAULT, NULL, sim_console_got_line,
                                        console);
}

static void
sim_console_start(SimApp *app, GIOStream *connection, GInputStream *in, GOutputStream *out,
                  gboolean quit_at_eof)
{
    SimConsole *console = g_new0(SimConsole, 1);
    console->app = app;
    console->connection = connection != NULL ? g_object_ref(connection) : NULL;
    console->in = g_data_input_stream_new(in);
    console->out = g_object_ref(out);
    console->reply = g_string_new(NULL);
    console->quit_at_eof = quit_at_eof;
    sim_console_read_next(console);
}

static gboolean
sim_app_incoming(GSocketService *service, GSocketConnection *connection, GObject *source,
                 gpointer user_data)
{
    GIOStream *stream = G_IO_STREAM(connection);
    sim_console_start(user_data, stream, g_io_stream_get_input_stream(stream),
                      g_io_stream_get_output_stream(stream), FALSE);
    return TRUE;
}

static gboolean
sim_app_listen(SimApp *app, const char *path, GError **error)
{
    g_autoptr(GSocketAddress) address = g_unix_socket_address_new(path);
    GStatBuf st;

    /* A socket left behind by a killed run would make bind() fail. */
    if (g_lstat(path, &st) == 0 && S_ISSOCK(st.st_mode))
        (void)g_unlink(path);
    app->service = g_socket_service_new();
    if (!g_socket_listener_add_address(G_SOCKET_LISTENER(app->service), address,
                                       G_SOCKET_TYPE_STREAM, G_SOCKET_PROTOCOL_DEFAULT, NULL, NULL,
                                       error)) {
        g_prefix_error(error, "--control %s: ", path);
        return FALSE;
    }
    g_signal_connect(app->service, "incoming", G_CALLBACK(sim_app_incoming), app);
    g_socket_service_start(app->service);
    return TRUE;
}

static void
sim_app_child_exited(GPid pid, int wait_status, gpointer user_data)
{
    SimApp *app = user_data;

    if (WIFEXITED(wait_status))
        app->exit_status = WEXITSTATUS(wait_status);
    else if (WIFSIGNALED(wait_status))
        app->exit_status = 128 + WTERMSIG(wait_status);
    else
        app->exit_status = SIM_APP_EXIT_FAILURE;
    g_spawn_close_pid(pid);
    app->child = 0;
    g_main_loop_quit(app->loop);
}

static gboolean
sim_app_spawn(SimApp *app, char **command, GError **error)
{
    /* The child gets our stdin (it may be a shell); commands then come over
     * --control. It inherits UMOCKDEV_DIR and LD_PRELOAD from our environment. */
    if (!g_spawn_async(NULL, command, NULL,
                       G_SPAWN_SEARCH_PATH | G_SPAWN_DO_NOT_REAP_CHILD |
                           G_SPAWN_CHILD_INHERITS_STDIN,
                       NULL, NULL, &app->child, error)) {
        g_prefix_error(error, "cannot start %s: ", command[0]);
        return FALSE;
    }
    g_child_watch_add(app->child, sim_app_child_exited, app);
    return TRUE;
}

static gboolean
sim_app_on_signal(gpointer user_data)
{
    sim_app_quit(user_data);
    return G_SOURCE_CONTINUE;
}

/* Children find the devices only through the umockdev preload, and we
 * want it in our own process too (umockdev then sends "add" uevents
 * itself), so callers need not remember umockdev-wrapper. Returns only on
 * failure, or when already under the preload. */
static gboolean
sim_app_ensure_preload(char **argv, GError **error)
{
    const char *preload = g_getenv("LD_PRELOAD");

    if (preload != NULL && strstr(preload, "libumockdev-preload") != NULL) {
        g_unsetenv(SIM_APP_REEXEC_ENV);
        return TRUE;
    }
    if (g_getenv(SIM_APP_REEXEC_ENV) != NULL) {
        g_set_error(error, G_IO_ERROR, G_IO_ERROR_FAILED,
                    "umockdev-wrapper did not preload libumockdev-preload.so");
        return FALSE;
    }
    g_autofree char *wrapper = g_find_program_in_path("umockdev-wrapper");
    if (wrapper == NULL) {
        g_set_error(error, G_IO_ERROR, G_IO_ERROR_NOT_FOUND,
                    "umockdev-wrapper is not in PATH (Debian package umockdev)");
        return FALSE;
    }
    g_autofree char *self = g_file_read_link("/proc/self/exe", error);
    if (self == NULL)
        return FALSE;

    g_autoptr(GPtrArray) args = g_ptr_array_new();
    g_ptr_array_add(args, wrapper);
    g_ptr_array_add(args, self);
    for (int i = 1; argv[i] != NULL; i++)
        g_ptr_array_add(args, argv[i]);
    g_ptr_array_add(args, NULL);
    g_setenv(SIM_APP_REEXEC_ENV, "1", TRUE);
    execv(wrapper, (char **)args->pdata);
    g_set_error(error, G_IO_ERROR, g_io_error_from_errno(errno), "cannot execute %s: %s", wrapper,
                g_strerror(errno));
    return FALSE;
}

/* --secret NAME=HEX */
static gboolean
sim_app_set_secret(SimApp *app, const char *arg, GError **error)
{
    g_auto(GStrv) parts = g_strsplit(arg, "=", 2);

    if (parts[0] == NULL || parts[1] == NULL) {
        g_set_error(error, G_IO_ERROR, G_IO_ERROR_INVALID_ARGUMENT,
                    "--secret %s: expected NAME=32HEXDIGITS", arg);
        return FALSE;
    }
    return sim_bed_set_secret(app->bed, parts[0], parts[1], error);
}

static gboolean
sim_app_setup(SimApp *app, char **plugs, char **secrets, const char *control, char **command,
              GError **error)
{
    app->bed = sim_bed_new(error);
    if (app->bed == NULL)
        return FALSE;
    for (char **s = secrets; s != NULL && *s != NULL; s++) {
        if (!sim_app_set_secret(app, *s, error))
            return FALSE;
    }
    for (char **p = plugs; p != NULL && *p != NULL; p++) {
        if (!sim_bed_plug(app->bed, *p, error)) {
            g_prefix_error(error, "--plug %s: ", *p);
            return FALSE;
        }
    }
    if (control != NULL && !sim_app_listen(app, control, error))
        return FALSE;

    g_unix_signal_add(SIGTERM, sim_app_on_signal, app);
    g_unix_signal_add(SIGINT, sim_app_on_signal, app);
    g_unix_signal_add(SIGHUP, sim_app_on_signal, app);

    if (command != NULL)
        return sim_app_spawn(app, command, error);

    g_autoptr(GInputStream) in = g_unix_input_stream_new(STDIN_FILENO, FALSE);
    g_autoptr(GOutputStream) out = g_unix_output_stream_new(STDOUT_FILENO, FALSE);
    sim_console_start(app, NULL, in, out, TRUE);
    return TRUE;
}

int
main(int argc, char **argv)
{
    g_auto(GStrv) plugs = NULL;
    g_auto(GStrv) secrets = NULL;
    g_autofree char *control = NULL;
    g_autoptr(GError) error = NULL;
    const GOptionEntry entries[] = {
        {"plug", 0, 0, G_OPTION_ARG_STRING_ARRAY, &plugs, "Key present at start", "NAME"},
        {"secret", 0, 0, G_OPTION_ARG_STRING_ARRAY, &secrets, "Key secret instead of the default",
         "NAME=HEX"},
        {"control", 0, 0, G_OPTION_ARG_FILENAME, &control, "Also take commands on this unix socket",
         "PATH"},
        G_OPTION_ENTRY_NULL,
    };
    g_autoptr(GOptionContext) context = g_option_context_new("[-- COMMAND [ARG...]]");
    SimApp app = {0};

    if (!sim_app_ensure_preload(argv, &error)) {
        g_printerr("usbgw-sim: %s\n", error->message);
        return SIM_APP_EXIT_FAILURE;
    }

    g_option_context_add_main_entries(context, entries, NULL);
    g_option_context_set_summary(context,
                                 "Simulated USB license keys on a umockdev bus.\n"
                                 "Keys: hasp, hasp2 (0529:0001), hid (064f:2af9), hid-stream "
                                 "(064f:2afa, interrupt data without pause), stick "
                                 "(0781:5567).\n"
                                 "With COMMAND: runs it and exits with its status; else runs "
                                 "until stdin closes.");
    g_option_context_set_description(context, "Commands, one per line on stdin (without COMMAND)"
                                              " and on --control:\n"
                                              "  plug NAME, unplug NAME, list, secret NAME, "
                                              "quit, help\n"
                                              "Each answers 'ok[ ...]' or 'error: ...' as its last "
                                              "line.\n");
    /* Split at the first "--" ourselves: GLib keeps or drops it depending
     * on what follows, and must not parse COMMAND's options. */
    int split = 1;
    while (split < argc && !g_str_equal(argv[split], "--"))
        split++;
    char **command = split + 1 < argc ? argv + split + 1 : NULL;
    g_auto(GStrv) options = g_new0(char *, split + 1);
    for (int i = 0; i < split; i++)
        options[i] = g_strdup(argv[i]);
    if (!g_option_context_parse_strv(context, &options, &error)) {
        g_printerr("usbgw-sim: %s\n", error->message);
        return SIM_APP_EXIT_USAGE;
    }
    if (options[1] != NULL || (split < argc && command == NULL)) {
        g_printerr("usbgw-sim: %s: put COMMAND after --\n",
                   options[1] != NULL ? options[1] : "missing COMMAND");
        return SIM_APP_EXIT_USAGE;
    }

    app.loop = g_main_loop_new(NULL, FALSE);
    if (sim_app_setup(&app, plugs, secrets, control, command, &error))
        g_main_loop_run(app.loop);
    else {
        g_printerr("usbgw-sim: %s\n", error->message);
        app.exit_status = SIM_APP_EXIT_FAILURE;
    }

    if (app.service != NULL) {
        g_socket_service_stop(app.service);
        g_socket_listener_close(G_SOCKET_LISTENER(app.service));
        g_clear_object(&app.service);
        (void)g_unlink(control);
    }
    sim_bed_free(app.bed);
    g_main_loop_unref(app.loop);
    return app.exit_status;
}
