/* An imported device: the VM's socket, a link stream, the proxy between. */
#include "gw-import.h"

#include <errno.h>
#include <string.h>
#include <sys/socket.h>
#include <glib-unix.h>
#include <glib/gstdio.h>

#include "gw-log.h"
#include "gw-proxy.h"
#include "gw-usbgw-metrics.h"
#include "gw-vm-handover.h"

struct _GwImport {
    GwLink *link; /* borrowed */
    gchar *remote_id;
    gchar *id;
    gchar *vm;
    gchar *socket_path;
    const GwVmSocketAccess *access; /* borrowed */
    guint reattach_ms;
    GwVmListener *service;
    GSocketConnection *qemu;   /* owned, nullable: QEMU waiting for a session */
    guint qemu_watch;          /* HUP watch on a waiting @qemu */
    GwLinkStream *stream;      /* nullable: the session's stream */
    gchar *stream_end;         /* owned, nullable: why the stream ended, for the proxy's end */
    GwProxy *proxy;            /* owned, nullable: the session's proxy */
    pid_t qemu_pid;            /* the waiting QEMU's, then the proxy's QEMU's; 0: unknown */
    pid_t migration_pid;       /* a pending migration destination's */
    GwVmMigratedPids migrated; /* the QEMUs the device migrated away from */
    gboolean attached;         /* QEMU has the device */
    gint64 not_before;         /* monotonic µs: no session starts before */
    guint start_id;            /* timeout starting the session at not_before */
    guint sessions;
    gint64 bound_at;         /* monotonic µs of gw_import_new(): the attach's duration */
    gboolean attach_counted; /* the first session was counted (usbgw_attach_total) */
    GwImportCallbacks callbacks;
    gpointer user_data;
};

/* Logs @format about the imported device and its VM (gw-log.h). */
#define gw_import_log(import, level, message_id, ...)                                              \
    gw_log_device((level), (import)->id, (import)->vm, (message_id), __VA_ARGS__)

static void gw_import_try_start(GwImport *import);
static void gw_import_handover(GwProxy *proxy, GwPeerHandoverResult result, const gchar *detail,
                               gpointer user_data);

/* Ends the session: the proxy (device_disconnect to QEMU, its socket
 * closed) and the stream. */
static void
gw_import_end_session(GwImport *import, const gchar *why)
{
    g_clear_pointer(&import->proxy, gw_proxy_free);
    if (import->stream != NULL) {
        gw_link_stream_close(import->stream, why);
        import->stream = NULL;
    }
    import->attached = FALSE;
}

static void
gw_import_detached(GwImport *import, const gchar *reason, gboolean refused, gboolean by_qemu)
{
    gboolean was_attached = import->attached;

    gw_import_end_session(import, reason);
    /* a session the exporter's side ended: the next waits (license keys
     * that lock themselves out after fast reconnects) */
    if (!by_qemu)
        import->not_before = g_get_monotonic_time() + (gint64)import->reattach_ms * 1000;
    /* QEMU leaving (the VM stopped, its chardev closed) is not an unplug */
    if (((was_attached && !by_qemu) || refused) && import->callbacks.detached != NULL)
        import->callbacks.detached(import, reason, refused, import->user_data);
}

/* ---- the proxy ---------------------------------------------------------- */

static gboolean
gw_import_proxy_check(GwProxy *proxy, const PolicyDevice *device, gchar **reason,
                      gpointer user_data)
{
    GwImport *import = user_data;

    return import->callbacks.check(import, device, reason, import->user_data);
}

static void
gw_import_proxy_connected(GwProxy *proxy, const PolicyDevice *device, gpointer user_data)
{
    GwImport *import = user_data;

    import->attached = TRUE;
    gw_usbgw_metrics_attach(GW_USBGW_ATTACH_OK,
                            import->attach_counted
                                ? -1
                                : (gdouble)(g_get_monotonic_time() - import->bound_at) /
                                      G_USEC_PER_SEC);
    import->attach_counted = TRUE;
    gw_import_log(import, G_LOG_LEVEL_MESSAGE, GW_LOG_ID_SESSION,
                  "%s: attached to vm \"%s\" from gateway %s", import->id, import->vm,
                  gw_link_get_peer(import->link));
    if (import->callbacks.attached != NULL)
        import->callbacks.attached(import, device, import->user_data);
}

static void
gw_import_proxy_closed(GwProxy *proxy, GwProxyEnd end, const gchar *reason, gpointer user_data)
{
    GwImport *import = user_data;
    g_autofree gchar *why = NULL;

    /* the stream's end says more than "the client closed" */
    if (end == GW_PROXY_END_CLIENT_CLOSED && import->stream_end != NULL)
        why = g_steal_pointer(&import->stream_end);
    else
        why = g_strdup_printf("%s%s%s", gw_proxy_end_to_string(end), reason != NULL ? ": " : "",
                              reason != NULL ? reason : "");
    g_clear_pointer(&import->stream_end, g_free);
    gw_import_log(import, G_LOG_LEVEL_MESSAGE, NULL, "%s: session with vm \"%s\" ended (%s)",
                  import->id, import->vm, why);
    gw_import_detached(import, why, end == GW_PROXY_END_DENIED,
                       end == GW_PROXY_END_QEMU_CLOSED || end == GW_PROXY_END_QEMU_PROTOCOL);
}

/* ---- the stream --------------------------------------------------------- */

static void
gw_import_stream_opened(GwLinkStream *stream, gpointer user_data)
{
    GwImport *import = user_data;

    gw_import_log(import, G_LOG_LEVEL_INFO, NULL, "%s: gateway %s opened the device", import->id,
                  gw_link_get_peer(import->link));
}

static void
gw_import_stream_closed(GwLinkStream *stream, const gchar *reason, gpointer user_data)
{
    GwImport *import = user_data;
    g_autofree gchar *why = g_strdup_printf("gateway %s: %s", gw_link_get_peer(import->link),
                                            reason != NULL ? reason : "stream closed");

    /* the proxy takes what the exporter sent before the end, then reads
     * the end, after whatever it still had to say (its own reason, a
     * denial, comes first); this one is kept for it */
    gw_import_log(import, G_LOG_LEVEL_MESSAGE, NULL, "%s: %s", import->id, why);
    g_free(import->stream_end);
    import->stream_end = g_steal_pointer(&why);
    if (import->proxy != NULL)
        gw_proxy_transport_ready(import->proxy, G_IO_IN | G_IO_HUP);
    import->stream = NULL;
    if (import->proxy == NULL)
        g_clear_pointer(&import->stream_end, g_free);
}

static void
gw_import_stream_readable(GwLinkStream *stream, gpointer user_data)
{
    GwImport *import = user_data;

    if (import->proxy != NULL)
        gw_proxy_transport_ready(import->proxy, G_IO_IN);
}

static void
gw_import_stream_writable(GwLinkStream *stream, gpointer user_data)
{
    GwImport *import = user_data;

    if (import->proxy != NULL)
        gw_proxy_transport_ready(import->proxy, G_IO_OUT);
}

static gboolean
gw_import_start_due(gpointer data)
{
    GwImport *import = data;

    import->start_id = 0;
    gw_import_try_start(import);
    return G_SOURCE_REMOVE;
}

/* A session when QEMU waits and the reattach interval is over. */
static void
gw_import_try_start(GwImport *import)
{
    static const GwProxyCallbacks proxy_callbacks = {
        .check = gw_import_proxy_check,
        .connected = gw_import_proxy_connected,
        .closed = gw_import_proxy_closed,
    };
    static const GwLinkStreamCallbacks stream_callbacks = {
        .opened = gw_import_stream_opened,
        .closed = gw_import_stream_closed,
        .readable = gw_import_stream_readable,
        .writable = gw_import_stream_writable,
    };
    /* the session ends (and closes the stream with its reason) in
     * gw_import_proxy_closed(): no close here */
    static const GwTransport transport = {
        .read = gw_link_stream_slot_read,
        .write = gw_link_stream_slot_write,
        .flush = gw_link_stream_slot_flush,
    };
    gint64 now = g_get_monotonic_time();
    g_autoptr(GError) error = NULL;
    g_autofree gchar *label = NULL;

    if (import->qemu == NULL || import->proxy != NULL || import->start_id != 0)
        return;
    if (now < import->not_before) {
        guint wait_ms = (guint)((import->not_before - now + 999) / 1000);
        gw_import_log(import, G_LOG_LEVEL_MESSAGE, NULL,
                      "%s: next session in %u ms (link-reattach-interval)", import->id, wait_ms);
        import->start_id = g_timeout_add(wait_ms, gw_import_start_due, import);
        return;
    }
    g_clear_handle_id(&import->qemu_watch, g_source_remove);
    label = g_strdup_printf("%s#%u (vm \"%s\", gateway %s)", import->id, ++import->sessions,
                            import->vm, gw_link_get_peer(import->link));
    /* the stream first: the proxy writes its hello to it at once */
    import->stream =
        gw_link_open_direct(import->link, import->remote_id, &stream_callbacks, import);
    import->proxy = gw_proxy_new_with_transport(&transport, &import->stream,
                                                g_socket_connection_get_socket(import->qemu), label,
                                                &proxy_callbacks, import, &error);
    if (import->proxy != NULL) {
        gw_proxy_set_journal_fields(import->proxy, import->id, import->vm);
        gw_proxy_set_handover_func(import->proxy, gw_import_handover, import);
    }
    /* the proxy holds QEMU's socket now */
    g_clear_object(&import->qemu);
    if (import->proxy == NULL) {
        gw_usbgw_metrics_attach(GW_USBGW_ATTACH_FAILED, -1);
        gw_import_log(import, G_LOG_LEVEL_WARNING, NULL, "%s: %s", label, error->message);
        gw_link_stream_close(import->stream, "the importer could not start a session");
        import->stream = NULL;
        return;
    }
    gw_import_log(import, G_LOG_LEVEL_MESSAGE, NULL, "%s: session opened", label);
}

/* ---- QEMU's socket ------------------------------------------------------ */

/* The proxy's migration destination took over, or was dropped. */
static void
gw_import_handover(GwProxy *proxy, GwPeerHandoverResult result, const gchar *detail,
                   gpointer user_data)
{
    GwImport *import = user_data;

    gw_vm_socket_handover_ended(import->access, &import->migrated, &import->qemu_pid,
                                import->migration_pid, import->id, import->id, import->vm,
                                import->socket_path, result, detail);
}

static gboolean
gw_import_qemu_hup(gint fd, GIOCondition condition, gpointer data)
{
    GwImport *import = data;

    import->qemu_watch = 0;
    g_clear_handle_id(&import->start_id, g_source_remove);
    gw_import_log(import, G_LOG_LEVEL_MESSAGE, NULL, "%s: QEMU left %s before its session",
                  import->id, import->socket_path);
    g_clear_object(&import->qemu);
    return G_SOURCE_REMOVE;
}

static void
gw_import_refuse(GwImport *import, GSocketConnection *connection, const gchar *why)
{
    gw_usbgw_metrics_attach(GW_USBGW_ATTACH_REFUSED, -1);
    gw_import_log(import, G_LOG_LEVEL_WARNING, GW_LOG_ID_PEER_REFUSED,
                  "%s: refused a peer on %s (%s)", import->id, import->socket_path, why);
    g_io_stream_close(G_IO_STREAM(connection), NULL, NULL);
}

static void
gw_import_incoming(GSocketConnection *connection, gpointer user_data)
{
    GwImport *import = user_data;
    GSocket *socket = g_socket_connection_get_socket(connection);
    pid_t pid = gw_vm_socket_peer_pid(connection);
    g_autoptr(GError) error = NULL;

    if (!gw_vm_socket_peer_allowed(import->access, connection, import->vm, import->id,
                                   import->socket_path)) {
        gw_usbgw_metrics_attach(GW_USBGW_ATTACH_REFUSED, -1);
        g_io_stream_close(G_IO_STREAM(connection), NULL, NULL);
        return;
    }
    if (gw_vm_migrated_pids_has(&import->migrated, pid)) {
        gw_import_refuse(import, connection, "a QEMU the device migrated away from");
        return;
    }
    if (import->proxy != NULL && import->qemu == NULL) {
        /* QEMU holds the device: a live migration's destination */
        if (gw_proxy_add_destination(import->proxy, socket, &error)) {
            import->migration_pid = pid;
            gw_import_log(import, G_LOG_LEVEL_MESSAGE, GW_LOG_ID_SESSION,
                          "%s: a migration destination connected on %s; it takes over once its "
                          "VM runs",
                          import->id, import->socket_path);
            return;
        }
        gw_import_refuse(import, connection, error->message);
        return;
    }
    if (import->qemu != NULL || import->proxy != NULL) {
        gw_usbgw_metrics_attach(GW_USBGW_ATTACH_REFUSED, -1);
        gw_import_log(import, G_LOG_LEVEL_WARNING, GW_LOG_ID_PEER_REFUSED,
                      "%s: refused a second peer on %s (one peer per device)", import->id,
                      import->socket_path);
        g_io_stream_close(G_IO_STREAM(connection), NULL, NULL);
        return;
    }
    import->qemu = g_object_ref(connection);
    import->qemu_pid = pid;
    gw_import_log(import, G_LOG_LEVEL_MESSAGE, NULL, "%s: peer connected on %s", import->id,
                  import->socket_path);
    /* QEMU's hello waits unread until the session starts; only a hang-up
     * is noticed meanwhile */
    import->qemu_watch =
        g_unix_fd_add(g_socket_get_fd(socket), G_IO_HUP | G_IO_ERR, gw_import_qemu_hup, import);
    gw_import_try_start(import);
}

GwImport *
gw_import_new(GwLink *link, const gchar *remote_id, const gchar *id, const gchar *vm,
              const gchar *socket_path, const GwVmSocketAccess *access, guint reattach_ms,
              const GwImportCallbacks *cb, gpointer user_data, GError **error)
{
    GwImport *import;

    g_return_val_if_fail(cb != NULL && cb->check != NULL, NULL);
    import = g_new0(GwImport, 1);
    import->link = link;
    import->remote_id = g_strdup(remote_id);
    import->id = g_strdup(id);
    import->vm = g_strdup(vm);
    import->bound_at = g_get_monotonic_time();
    import->socket_path = g_strdup(socket_path);
    import->access = access;
    import->reattach_ms = reattach_ms;
    import->callbacks = *cb;
    import->user_data = user_data;
    import->service = gw_vm_socket_listen(access, socket_path, gw_import_incoming, import, error);
    if (import->service == NULL) {
        g_free(import->remote_id);
        g_free(import->id);
        g_free(import->vm);
        g_free(import->socket_path);
        g_free(import);
        return NULL;
    }
    return import;
}

void
gw_import_free(GwImport *import)
{
    if (import == NULL)
        return;
    gw_import_end_session(import, "no longer imported");
    g_clear_handle_id(&import->qemu_watch, g_source_remove);
    g_clear_handle_id(&import->start_id, g_source_remove);
    g_clear_object(&import->qemu);
    g_clear_pointer(&import->service, gw_vm_listener_free);
    g_unlink(import->socket_path);
    g_free(import->stream_end);
    g_free(import->remote_id);
    g_free(import->id);
    g_free(import->vm);
    g_free(import->socket_path);
    g_free(import);
}

const gchar *
gw_import_get_id(GwImport *import)
{
    return import->id;
}

const gchar *
gw_import_get_vm(GwImport *import)
{
    return import->vm;
}

const gchar *
gw_import_get_socket_path(GwImport *import)
{
    return import->socket_path;
}

gboolean
gw_import_is_migrating(GwImport *import)
{
    return import->proxy != NULL && gw_proxy_is_migrating(import->proxy);
}

gboolean
gw_import_is_attached(GwImport *import)
{
    return import->attached;
}
