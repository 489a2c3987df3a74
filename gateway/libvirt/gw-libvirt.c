/* libvirt connection, events and redirdev hot-plug: the client on the
 * main thread. The blocking calls run in gw-libvirt-worker.c. Who runs
 * what is written at the top of gw-libvirt.h. */
#include "gw-libvirt-private.h"

#include <stdlib.h>
#include <string.h>

G_DEFINE_QUARK(usbgw_libvirt_error, gw_libvirt_error)

/* ---- process-wide setup ------------------------------------------------- */

static void
gw_libvirt_error_func(void *user_data, virErrorPtr error)
{
    /* Replaces libvirt's default handler, which prints every error to
     * stderr; the failing call's caller reports the error itself. */
    if (error != NULL && error->message != NULL)
        g_debug("libvirt: %s", error->message);
}

static void
gw_libvirt_global_init(void)
{
    static gsize initialized = 0;

    if (!g_once_init_enter(&initialized))
        return;
    virSetErrorFunc(NULL, gw_libvirt_error_func);
    if (virInitialize() < 0)
        g_warning("cannot initialize libvirt");
    /* Once per process: a second registration would replace the
     * implementation under callbacks already registered with the first.
     * Since libvirt 6.1 the default implementation is GLib's: its watches
     * and timers are sources on g_main_context_default(), dispatched by
     * whichever thread iterates that context (usbgwd's main loop). No
     * thread of ours runs virEventRunDefaultImpl(): it only iterates that
     * same default context, so it would dispatch the daemon's own sockets
     * and timers off the main thread. */
    if (virEventRegisterDefaultImpl() < 0)
        g_warning("cannot register libvirt's default event implementation");
    g_once_init_leave(&initialized, 1);
}

/* ---- small helpers ------------------------------------------------------ */

GwLibvirt *
gw_libvirt_ref(GwLibvirt *lv)
{
    return g_atomic_rc_box_acquire(lv);
}

static void
gw_libvirt_clear(gpointer data)
{
    GwLibvirt *lv = data;

    /* The last reference can go on any thread: touch nothing but memory. */
    g_free(lv->uri);
    g_free(lv->last_error);
    g_async_queue_unref(lv->jobs);
    g_main_context_unref(lv->context);
    g_mutex_clear(&lv->done_lock);
    g_cond_clear(&lv->done_cond);
}

void
gw_libvirt_unref(GwLibvirt *lv)
{
    g_atomic_rc_box_release_full(lv, gw_libvirt_clear);
}

static void
gw_libvirt_link_clear(gpointer data)
{
    GwLibvirtLink *link = data;
    gw_libvirt_unref(link->lv);
}

void
gw_libvirt_link_release(void *opaque)
{
    g_atomic_rc_box_release_full(opaque, gw_libvirt_link_clear);
}

void
gw_libvirt_job_free(GwLibvirtJob *job)
{
    g_clear_object(&job->task);
    g_free(job->uuid);
    g_free(job->path);
    g_free(job->alias);
    g_free(job);
}

static void
gw_libvirt_event_free(gpointer data)
{
    GwLibvirtEvent *event = data;
    gw_libvirt_unref(event->lv);
    g_free(event->name);
    g_free(event->uuid);
    g_free(event->text);
    gw_libvirt_domain_free(event->domain);
    g_free(event);
}

void
gw_libvirt_domain_free(GwLibvirtDomain *domain)
{
    if (domain == NULL)
        return;
    g_free(domain->name);
    g_free(domain->uuid);
    g_clear_pointer(&domain->redirdev_paths, g_ptr_array_unref);
    g_clear_pointer(&domain->wishes, g_ptr_array_unref);
    g_free(domain->wishes_error);
    g_free(domain->usb_bus);
    g_free(domain->usb_fix);
    g_free(domain);
}

void
gw_libvirt_status_clear(GwLibvirtStatus *status)
{
    g_clear_pointer(&status->last_error, g_free);
}

/* Maps the codes callers act on; virErrorNumber has 100+ values and grows
 * with every libvirt release, so everything else is GW_LIBVIRT_ERROR_FAILED
 * with libvirt's message. */
GwLibvirtError
gw_libvirt_error_code(int code)
{
    switch (code) {
    case VIR_ERR_NO_DOMAIN:
        return GW_LIBVIRT_ERROR_NO_DOMAIN;
    case VIR_ERR_NO_SUPPORT:
    case VIR_ERR_OPERATION_UNSUPPORTED:
    case VIR_ERR_ARGUMENT_UNSUPPORTED:
    case VIR_ERR_CONFIG_UNSUPPORTED:
        return GW_LIBVIRT_ERROR_NOT_SUPPORTED;
    case VIR_ERR_NO_CONNECT:
    case VIR_ERR_INVALID_CONN:
        return GW_LIBVIRT_ERROR_NOT_CONNECTED;
    case VIR_ERR_INVALID_ARG:
        return GW_LIBVIRT_ERROR_INVALID_ARGUMENT;
    default:
        return GW_LIBVIRT_ERROR_FAILED;
    }
}

/* libvirt keeps the last error per thread: read it right after the failed
 * call, on the thread that made it. */
int
gw_libvirt_last_error_number(void)
{
    virErrorPtr last = virGetLastError();
    return last != NULL ? last->code : VIR_ERR_OK;
}

const gchar *
gw_libvirt_last_error_message(void)
{
    virErrorPtr last = virGetLastError();
    return last != NULL && last->message != NULL ? last->message : "unknown libvirt error";
}

const gchar *
gw_libvirt_close_reason(int reason)
{
    switch ((virConnectCloseReason)reason) {
    case VIR_CONNECT_CLOSE_REASON_ERROR:
        return "I/O error";
    case VIR_CONNECT_CLOSE_REASON_EOF:
        return "libvirtd closed the connection";
    case VIR_CONNECT_CLOSE_REASON_KEEPALIVE:
        return "keepalive timeout";
    case VIR_CONNECT_CLOSE_REASON_CLIENT:
        return "closed by usbgwd";
#ifdef VIR_ENUM_SENTINELS
    case VIR_CONNECT_CLOSE_REASON_LAST:
        break;
#endif
    }
    return "unknown reason";
}

static gboolean gw_libvirt_event_dispatch(gpointer data);

/* Any thread: queues @event for the main thread and takes ownership. */
void
gw_libvirt_post(GwLibvirt *lv, GwLibvirtEvent *event)
{
    g_autoptr(GSource) source = g_idle_source_new();

    event->lv = gw_libvirt_ref(lv);
    g_source_set_priority(source, G_PRIORITY_DEFAULT);
    g_source_set_callback(source, gw_libvirt_event_dispatch, event, gw_libvirt_event_free);
    g_source_attach(source, lv->context);
}

GwLibvirtEvent *
gw_libvirt_event_new(GwLibvirtEventKind kind)
{
    GwLibvirtEvent *event = g_new0(GwLibvirtEvent, 1);
    event->kind = kind;
    return event;
}

/* ---- main thread -------------------------------------------------------- */

void
gw_libvirt_push(GwLibvirt *lv, GwLibvirtJobKind kind, GTask *task, const gchar *uuid,
                const gchar *path, const gchar *alias)
{
    GwLibvirtJob *job = g_new0(GwLibvirtJob, 1);

    job->kind = kind;
    job->task = task;
    job->uuid = g_strdup(uuid);
    job->path = g_strdup(path);
    job->alias = g_strdup(alias);
    g_async_queue_push(lv->jobs, job);
}

static void gw_libvirt_schedule_retry(GwLibvirt *lv);

static gboolean
gw_libvirt_retry_cb(gpointer data)
{
    GwLibvirt *lv = data;

    g_clear_pointer(&lv->retry_source, g_source_unref);
    lv->retry_delay_ms = 0;
    gw_libvirt_push(lv, GW_LIBVIRT_JOB_CONNECT, NULL, NULL, NULL, NULL);
    return G_SOURCE_REMOVE;
}

static void
gw_libvirt_schedule_retry(GwLibvirt *lv)
{
    if (lv->retry_source != NULL)
        return;
    lv->retry_delay_ms = lv->backoff_ms;
    lv->backoff_ms = MIN(lv->backoff_ms * 2, GW_LIBVIRT_BACKOFF_MAX_MS);
    /* The source dies in gw_libvirt_free(), on this thread, before @lv. */
    lv->retry_source = g_timeout_source_new(lv->retry_delay_ms);
    g_source_set_callback(lv->retry_source, gw_libvirt_retry_cb, lv, NULL);
    g_source_attach(lv->retry_source, lv->context);
}

static void
gw_libvirt_on_connected(GwLibvirt *lv, GwLibvirtEvent *event)
{
    g_message("connected to libvirt at %s in %.2f s", lv->uri,
              event->elapsed_us / (gdouble)G_USEC_PER_SEC);
    lv->connected = TRUE;
    lv->generation = event->generation;
    lv->failed_attempts = 0;
    lv->backoff_ms = GW_LIBVIRT_BACKOFF_INITIAL_MS;
    g_clear_pointer(&lv->last_error, g_free);
    if (lv->handlers.connected != NULL)
        lv->handlers.connected(TRUE, lv->user_data);
}

static void
gw_libvirt_on_connect_failed(GwLibvirt *lv, GwLibvirtEvent *event)
{
    /* Say it when it starts failing or fails differently, not every 30 s. */
    gboolean repeated = g_strcmp0(lv->last_error, event->text) == 0;

    lv->failed_attempts++;
    g_free(lv->last_error);
    lv->last_error = g_strdup(event->text);
    gw_libvirt_schedule_retry(lv);
    if (repeated)
        g_debug("%s (attempt %u); retrying in %.1f s", event->text, lv->failed_attempts,
                lv->retry_delay_ms / 1000.0);
    else
        g_warning("%s; retrying in %.1f s", event->text, lv->retry_delay_ms / 1000.0);
}

static void
gw_libvirt_on_lost(GwLibvirt *lv, GwLibvirtEvent *event)
{
    if (!lv->connected || event->generation != lv->generation)
        return; /* an older connection, or already handled */
    g_warning("lost the connection to libvirt at %s (%s); reconnecting", lv->uri, event->text);
    lv->connected = FALSE;
    lv->backoff_ms = GW_LIBVIRT_BACKOFF_INITIAL_MS;
    gw_libvirt_schedule_retry(lv);
    if (lv->handlers.connected != NULL)
        lv->handlers.connected(FALSE, lv->user_data);
}

gboolean
gw_libvirt_event_dispatch(gpointer data)
{
    GwLibvirtEvent *event = data;
    GwLibvirt *lv = event->lv;
    const GwLibvirtHandlers *h = &lv->handlers;

    if (lv->freed)
        return G_SOURCE_REMOVE;
    /* Each case calls at most one handler, last: a handler may free @lv
     * (the event's reference keeps the memory until we return). */
    switch (event->kind) {
    case GW_LIBVIRT_EVENT_CONNECTED:
        gw_libvirt_on_connected(lv, event);
        break;
    case GW_LIBVIRT_EVENT_CONNECT_FAILED:
        gw_libvirt_on_connect_failed(lv, event);
        break;
    case GW_LIBVIRT_EVENT_LOST:
        gw_libvirt_on_lost(lv, event);
        break;
    case GW_LIBVIRT_EVENT_STARTED:
        /* its metadata and USB bus follow as domain_inspected */
        gw_libvirt_push(lv, GW_LIBVIRT_JOB_INSPECT, NULL, event->uuid, NULL, NULL);
        if (h->domain_started != NULL)
            h->domain_started(event->name, event->uuid, lv->user_data);
        break;
    case GW_LIBVIRT_EVENT_STOPPED:
        if (h->domain_stopped != NULL)
            h->domain_stopped(event->name, event->uuid, lv->user_data);
        break;
    case GW_LIBVIRT_EVENT_DEVICE_REMOVED:
        if (h->device_removed != NULL)
            h->device_removed(event->name, event->uuid, event->text, lv->user_data);
        break;
    case GW_LIBVIRT_EVENT_METADATA:
        gw_libvirt_push(lv, GW_LIBVIRT_JOB_INSPECT, NULL, event->uuid, NULL, NULL);
        break;
    case GW_LIBVIRT_EVENT_INSPECTED:
        if (h->domain_inspected != NULL)
            h->domain_inspected(event->domain, lv->user_data);
        break;
    }
    return G_SOURCE_REMOVE;
}

GwLibvirt *
gw_libvirt_new(const gchar *uri, GMainContext *context)
{
    GwLibvirt *lv = g_atomic_rc_box_new0(GwLibvirt);

    gw_libvirt_global_init();
    lv->uri = g_strdup(uri);
    lv->context = g_main_context_ref(context != NULL ? context : g_main_context_default());
    lv->jobs = g_async_queue_new();
    lv->backoff_ms = GW_LIBVIRT_BACKOFF_INITIAL_MS;
    lv->lifecycle_id = -1;
    lv->removed_id = -1;
    lv->metadata_id = -1;
    g_mutex_init(&lv->done_lock);
    g_cond_init(&lv->done_cond);
    lv->worker = g_thread_new("usbgw-lv-work", gw_libvirt_worker_thread, gw_libvirt_ref(lv));
    return lv;
}

void
gw_libvirt_set_handlers(GwLibvirt *lv, const GwLibvirtHandlers *handlers, gpointer user_data)
{
    lv->handlers = *handlers;
    lv->user_data = user_data;
}

void
gw_libvirt_set_add_usb_controller(GwLibvirt *lv, gboolean add)
{
    g_atomic_int_set(&lv->add_usb_controller, add ? 1 : 0);
}

void
gw_libvirt_start(GwLibvirt *lv)
{
    if (lv->started)
        return;
    lv->started = TRUE;
    gw_libvirt_push(lv, GW_LIBVIRT_JOB_CONNECT, NULL, NULL, NULL, NULL);
}

gboolean
gw_libvirt_is_connected(GwLibvirt *lv)
{
    return lv->connected;
}

const gchar *
gw_libvirt_get_uri(GwLibvirt *lv)
{
    return lv->uri;
}

void
gw_libvirt_get_status(GwLibvirt *lv, GwLibvirtStatus *status)
{
    status->connected = lv->connected;
    status->failed_attempts = lv->failed_attempts;
    status->retry_delay_ms = lv->retry_delay_ms;
    status->last_error = g_strdup(lv->last_error);
}

/* A task whose callback runs on @lv's context, whatever the caller's
 * thread-default context is. */
static GTask *
gw_libvirt_task_new(GwLibvirt *lv, GCancellable *cancellable, GAsyncReadyCallback callback,
                    gpointer user_data, gpointer tag)
{
    GTask *task;

    g_main_context_push_thread_default(lv->context);
    task = g_task_new(NULL, cancellable, callback, user_data);
    g_main_context_pop_thread_default(lv->context);
    g_task_set_source_tag(task, tag);
    /* A job that ran reports what it did even if cancelled meanwhile: an
     * attach that happened must not look like one that did not. */
    g_task_set_check_cancellable(task, FALSE);
    return task;
}

void
gw_libvirt_list_running_async(GwLibvirt *lv, GCancellable *cancellable,
                              GAsyncReadyCallback callback, gpointer user_data)
{
    GTask *task =
        gw_libvirt_task_new(lv, cancellable, callback, user_data, gw_libvirt_list_running_async);
    gw_libvirt_push(lv, GW_LIBVIRT_JOB_LIST, task, NULL, NULL, NULL);
}

GPtrArray *
gw_libvirt_list_running_finish(GwLibvirt *lv, GAsyncResult *result, GError **error)
{
    g_return_val_if_fail(g_task_is_valid(result, NULL), NULL);
    return g_task_propagate_pointer(G_TASK(result), error);
}

void
gw_libvirt_attach_redirdev_async(GwLibvirt *lv, const gchar *uuid, const gchar *socket_path,
                                 const gchar *alias, GCancellable *cancellable,
                                 GAsyncReadyCallback callback, gpointer user_data)
{
    g_autoptr(GTask) task = NULL;

    g_return_if_fail(uuid != NULL && socket_path != NULL);
    task =
        gw_libvirt_task_new(lv, cancellable, callback, user_data, gw_libvirt_attach_redirdev_async);
    if (!gw_libvirt_alias_is_valid(alias)) {
        g_task_return_new_error(task, GW_LIBVIRT_ERROR, GW_LIBVIRT_ERROR_INVALID_ARGUMENT,
                                "cannot attach USB redirection '%s' to VM %s: alias '%s' is not "
                                "'%s' followed by letters, digits, '-' or '_'",
                                socket_path, uuid, alias, GW_LIBVIRT_USER_ALIAS_PREFIX);
        return;
    }
    if (!g_path_is_absolute(socket_path)) {
        g_task_return_new_error(task, GW_LIBVIRT_ERROR, GW_LIBVIRT_ERROR_INVALID_ARGUMENT,
                                "cannot attach USB redirection '%s' to VM %s: the socket path "
                                "is not absolute",
                                socket_path, uuid);
        return;
    }
    gw_libvirt_push(lv, GW_LIBVIRT_JOB_ATTACH, g_steal_pointer(&task), uuid, socket_path, alias);
}

gboolean
gw_libvirt_attach_redirdev_finish(GwLibvirt *lv, GAsyncResult *result, GError **error)
{
    g_return_val_if_fail(g_task_is_valid(result, NULL), FALSE);
    return g_task_propagate_boolean(G_TASK(result), error);
}

void
gw_libvirt_detach_redirdev_async(GwLibvirt *lv, const gchar *uuid, const gchar *socket_path,
                                 GCancellable *cancellable, GAsyncReadyCallback callback,
                                 gpointer user_data)
{
    GTask *task;

    g_return_if_fail(uuid != NULL && socket_path != NULL);
    task =
        gw_libvirt_task_new(lv, cancellable, callback, user_data, gw_libvirt_detach_redirdev_async);
    gw_libvirt_push(lv, GW_LIBVIRT_JOB_DETACH, task, uuid, socket_path, NULL);
}

gboolean
gw_libvirt_detach_redirdev_finish(GwLibvirt *lv, GAsyncResult *result, GError **error)
{
    g_return_val_if_fail(g_task_is_valid(result, NULL), FALSE);
    return g_task_propagate_boolean(G_TASK(result), error);
}

void
gw_libvirt_free(GwLibvirt *lv)
{
    GwLibvirtJob *quit;
    gint64 deadline;
    gboolean done;

    if (lv == NULL)
        return;
    lv->freed = TRUE;
    if (lv->retry_source != NULL) {
        g_source_destroy(lv->retry_source);
        g_clear_pointer(&lv->retry_source, g_source_unref);
    }

    /* Quit goes first; the worker then fails what is still queued. */
    g_atomic_int_set(&lv->stopping, 1);
    quit = g_new0(GwLibvirtJob, 1);
    quit->kind = GW_LIBVIRT_JOB_QUIT;
    g_async_queue_push_front(lv->jobs, quit);

    deadline = g_get_monotonic_time() + GW_LIBVIRT_STOP_TIMEOUT_MS * G_TIME_SPAN_MILLISECOND;
    g_mutex_lock(&lv->done_lock);
    while (!lv->worker_done && g_cond_wait_until(&lv->done_cond, &lv->done_lock, deadline))
        ;
    done = lv->worker_done;
    g_mutex_unlock(&lv->done_lock);
    if (done) {
        g_thread_join(lv->worker);
    } else {
        g_warning("the libvirt worker is still inside a call to %s after %d ms; leaving it to "
                  "finish on its own",
                  lv->uri, GW_LIBVIRT_STOP_TIMEOUT_MS);
        g_thread_unref(lv->worker);
    }
    lv->worker = NULL;
    gw_libvirt_unref(lv);
}
