/* Drives gw-libvirt by hand against a real libvirtd and prints what
 * happens, with timings:
 *
 *   gw-libvirt-try URI STEP…
 *     list                      list running domains and their redirdev paths
 *     attach UUID PATH ALIAS    hot-plug a unix redirdev
 *     detach UUID PATH          unplug it
 *     watch SECONDS             print events (and reconnects) for a while
 *
 * It connects first (waiting up to TRY_CONNECT_TIMEOUT_S), then runs the
 * steps in order; events are printed whenever they arrive. Exit status 1 if
 * a step failed. */
#include <stdlib.h>
#include <string.h>

#include "gw-libvirt.h"

#define TRY_CONNECT_TIMEOUT_S 60

static gint64 try_start;
static gboolean try_up;
static gboolean try_done;
static gboolean try_ok;

static void G_GNUC_PRINTF(1, 2) try_print(const gchar *format, ...)
{
    g_autofree gchar *text = NULL;
    g_autoptr(GDateTime) now = g_date_time_new_now_local();
    g_autofree gchar *wall = g_date_time_format(now, "%H:%M:%S.%f");
    va_list args;

    va_start(args, format);
    text = g_strdup_vprintf(format, args);
    va_end(args);
    /* wall clock to the millisecond, to line up with other logs */
    wall[strlen(wall) - 3] = '\0';
    g_print("[%s +%7.3f] %s\n", wall, (g_get_monotonic_time() - try_start) / 1e6, text);
}

static void
try_connected(gboolean up, gpointer user_data)
{
    try_up = up;
    try_print("connected(%s)", up ? "TRUE" : "FALSE");
}

static void
try_started(const gchar *name, const gchar *uuid, gpointer user_data)
{
    try_print("domain_started %s %s", name, uuid);
}

static void
try_stopped(const gchar *name, const gchar *uuid, gpointer user_data)
{
    try_print("domain_stopped %s %s", name, uuid);
}

static void
try_removed(const gchar *name, const gchar *uuid, const gchar *alias, gpointer user_data)
{
    try_print("device_removed %s %s %s", name, uuid, alias);
}

static gboolean
try_timeout(gpointer data)
{
    try_done = TRUE;
    return G_SOURCE_REMOVE;
}

static void
try_wait(guint seconds)
{
    try_done = FALSE;
    g_timeout_add_seconds(seconds, try_timeout, NULL);
    while (!try_done)
        g_main_context_iteration(NULL, TRUE);
}

typedef struct {
    gint64 start;
    GAsyncResult *result;
} TryCall;

static void
try_call_cb(GObject *source, GAsyncResult *result, gpointer user_data)
{
    TryCall *call = user_data;
    call->result = g_object_ref(result);
    try_done = TRUE;
}

static void
try_call_wait(TryCall *call)
{
    try_done = FALSE;
    while (!try_done)
        g_main_context_iteration(NULL, TRUE);
}

static gdouble
try_call_seconds(TryCall *call)
{
    return (g_get_monotonic_time() - call->start) / 1e6;
}

static void
try_list(GwLibvirt *lv)
{
    TryCall call = {.start = g_get_monotonic_time()};
    g_autoptr(GPtrArray) list = NULL;
    g_autoptr(GError) error = NULL;

    gw_libvirt_list_running_async(lv, NULL, try_call_cb, &call);
    try_call_wait(&call);
    list = gw_libvirt_list_running_finish(lv, call.result, &error);
    g_object_unref(call.result);
    if (list == NULL) {
        try_print("list failed after %.3f s: %s", try_call_seconds(&call), error->message);
        try_ok = FALSE;
        return;
    }
    try_print("list: %u running (%.3f s)", list->len, try_call_seconds(&call));
    for (guint i = 0; i < list->len; i++) {
        GwLibvirtDomain *domain = g_ptr_array_index(list, i);
        try_print("  %s %s: %u redirdev(s)", domain->name, domain->uuid,
                  domain->redirdev_paths->len);
        for (guint j = 0; j < domain->redirdev_paths->len; j++)
            try_print("    %s", (const gchar *)g_ptr_array_index(domain->redirdev_paths, j));
    }
}

static void
try_attach(GwLibvirt *lv, const gchar *uuid, const gchar *path, const gchar *alias)
{
    TryCall call = {.start = g_get_monotonic_time()};
    g_autoptr(GError) error = NULL;

    gw_libvirt_attach_redirdev_async(lv, uuid, path, alias, NULL, try_call_cb, &call);
    try_call_wait(&call);
    if (gw_libvirt_attach_redirdev_finish(lv, call.result, &error)) {
        try_print("attach %s as %s: ok (%.3f s)", path, alias, try_call_seconds(&call));
    } else {
        try_print("attach failed after %.3f s: %s", try_call_seconds(&call), error->message);
        try_ok = FALSE;
    }
    g_object_unref(call.result);
}

static void
try_detach(GwLibvirt *lv, const gchar *uuid, const gchar *path)
{
    TryCall call = {.start = g_get_monotonic_time()};
    g_autoptr(GError) error = NULL;

    gw_libvirt_detach_redirdev_async(lv, uuid, path, NULL, try_call_cb, &call);
    try_call_wait(&call);
    if (gw_libvirt_detach_redirdev_finish(lv, call.result, &error)) {
        try_print("detach %s: ok (%.3f s)", path, try_call_seconds(&call));
    } else {
        try_print("detach failed after %.3f s: %s", try_call_seconds(&call), error->message);
        try_ok = FALSE;
    }
    g_object_unref(call.result);
}

static gboolean
try_usage(void)
{
    g_printerr("usage: gw-libvirt-try URI [list | attach UUID PATH ALIAS | detach UUID PATH | "
               "watch SECONDS]...\n");
    return FALSE;
}

static gboolean
try_run(GwLibvirt *lv, int argc, char **argv)
{
    for (int i = 2; i < argc; i++) {
        const gchar *step = argv[i];

        if (g_str_equal(step, "list")) {
            try_list(lv);
        } else if (g_str_equal(step, "attach") && i + 3 < argc) {
            try_attach(lv, argv[i + 1], argv[i + 2], argv[i + 3]);
            i += 3;
        } else if (g_str_equal(step, "detach") && i + 2 < argc) {
            try_detach(lv, argv[i + 1], argv[i + 2]);
            i += 2;
        } else if (g_str_equal(step, "watch") && i + 1 < argc) {
            try_print("watching for %s s", argv[i + 1]);
            try_wait((guint)g_ascii_strtoull(argv[i + 1], NULL, 10));
            i += 1;
        } else {
            return try_usage();
        }
    }
    return TRUE;
}

int
main(int argc, char **argv)
{
    static const GwLibvirtHandlers handlers = {
        .connected = try_connected,
        .domain_started = try_started,
        .domain_stopped = try_stopped,
        .device_removed = try_removed,
    };
    g_autoptr(GwLibvirt) lv = NULL;
    guint timeout;
    gint64 freeing;

    if (argc < 2)
        return try_usage() ? EXIT_SUCCESS : EXIT_FAILURE;
    try_start = g_get_monotonic_time();
    try_ok = TRUE;
    lv = gw_libvirt_new(argv[1], NULL);
    gw_libvirt_set_handlers(lv, &handlers, NULL);
    gw_libvirt_start(lv);
    try_print("connecting to %s", argv[1]);
    timeout = g_timeout_add_seconds(TRY_CONNECT_TIMEOUT_S, try_timeout, NULL);
    try_done = FALSE;
    while (!try_up && !try_done)
        g_main_context_iteration(NULL, TRUE);
    if (!try_up) {
        try_print("not connected after %d s", TRY_CONNECT_TIMEOUT_S);
        return EXIT_FAILURE;
    }
    g_source_remove(timeout);
    if (!try_run(lv, argc, argv))
        return EXIT_FAILURE;
    freeing = g_get_monotonic_time();
    g_clear_pointer(&lv, gw_libvirt_free);
    try_print("freed in %.3f s", (g_get_monotonic_time() - freeing) / 1e6);
    return try_ok ? EXIT_SUCCESS : EXIT_FAILURE;
}
