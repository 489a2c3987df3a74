/* libvirt connection, events and redirdev hot-plug, off the main thread.
 * Who runs what is written at the top of gw-libvirt.h. */
#include "gw-libvirt.h"

#include <libvirt/libvirt.h>
#include <libvirt/virterror.h>
#include <stdlib.h>
#include <string.h>

G_DEFINE_QUARK(usbgw_libvirt_error, gw_libvirt_error)

G_DEFINE_AUTOPTR_CLEANUP_FUNC(virDomain, virDomainFree)

/* Reconnect timeout QEMU gets in the hot-plugged <source>: QEMU retries
 * the socket this often (seconds) while nobody listens. */
#define GW_LIBVIRT_REDIRDEV_RECONNECT_S 2

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

/* ---- types -------------------------------------------------------------- */

typedef enum {
    GW_LIBVIRT_JOB_CONNECT,
    GW_LIBVIRT_JOB_LIST,
    GW_LIBVIRT_JOB_ATTACH,
    GW_LIBVIRT_JOB_DETACH,
    GW_LIBVIRT_JOB_QUIT,
} GwLibvirtJobKind;

/* What libvirt's callbacks get as opaque: the GwLibvirt and which
 * connection they belong to. Atomic refcounted: one reference per
 * registration. */
typedef struct {
    GwLibvirt *lv; /* owned ref */
    guint generation;
} GwLibvirtLink;

typedef struct {
    GwLibvirtJobKind kind;
    GTask *task;  /* owned, nullable (CONNECT and QUIT have none) */
    gchar *uuid;  /* owned, nullable */
    gchar *path;  /* owned, nullable */
    gchar *alias; /* owned, nullable */
} GwLibvirtJob;

struct _GwLibvirt {
    /* Immutable after gw_libvirt_new(); any thread. */
    gchar *uri;            /* owned */
    GMainContext *context; /* owned ref */
    GAsyncQueue *jobs;     /* owned ref, of GwLibvirtJob*: main → worker */
    GThread *worker;       /* owned, nullable after free */

    /* Main thread only. */
    GwLibvirtHandlers handlers;
    gpointer user_data;
    gboolean started;
    gboolean freed;        /* gw_libvirt_free() ran: call nothing any more */
    gboolean connected;    /* as last reported to the handlers */
    guint generation;      /* of the connection that is up */
    guint backoff_ms;      /* delay for the next retry */
    guint retry_delay_ms;  /* delay of the pending retry, 0 if none */
    guint failed_attempts; /* since the last success */
    GSource *retry_source; /* owned ref, nullable */
    gchar *last_error;     /* owned, nullable */

    /* Worker thread → free(). */
    gint stopping;    /* atomic */
    GMutex done_lock; /* protects worker_done */
    GCond done_cond;
    gboolean worker_done;

    /* Worker thread only. */
    virConnectPtr conn;    /* owned, nullable */
    guint conn_generation; /* counts successful connects */
    gboolean loss_posted;  /* EV_LOST sent for this connection */
    int lifecycle_id;      /* -1 if not registered */
    int removed_id;        /* -1 if not registered */
    /* The close callback's opaque (owned ref, nullable). libvirt gets no
     * free callback for it: drivers without close callbacks (test:///)
     * accept the registration and would never call one. */
    GwLibvirtLink *close_link;
};

typedef enum {
    GW_LIBVIRT_EVENT_CONNECTED,
    GW_LIBVIRT_EVENT_CONNECT_FAILED,
    GW_LIBVIRT_EVENT_LOST,
    GW_LIBVIRT_EVENT_STARTED,
    GW_LIBVIRT_EVENT_STOPPED,
    GW_LIBVIRT_EVENT_DEVICE_REMOVED,
} GwLibvirtEventKind;

/* One notification from the worker or from libvirt's callbacks to the
 * main thread, carried by an idle source. */
typedef struct {
    GwLibvirt *lv; /* owned ref */
    GwLibvirtEventKind kind;
    guint generation;  /* CONNECTED, LOST */
    gchar *name;       /* owned, nullable: VM name */
    gchar *uuid;       /* owned, nullable */
    gchar *text;       /* owned, nullable: alias (DEVICE_REMOVED) or error message */
    gint64 elapsed_us; /* CONNECTED, CONNECT_FAILED: duration of the attempt */
} GwLibvirtEvent;

/* ---- small helpers ------------------------------------------------------ */

static GwLibvirt *
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

static void
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

static void
gw_libvirt_link_release(void *opaque)
{
    g_atomic_rc_box_release_full(opaque, gw_libvirt_link_clear);
}

static void
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
static GwLibvirtError
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
static int
gw_libvirt_last_error_number(void)
{
    virErrorPtr last = virGetLastError();
    return last != NULL ? last->code : VIR_ERR_OK;
}

static const gchar *
gw_libvirt_last_error_message(void)
{
    virErrorPtr last = virGetLastError();
    return last != NULL && last->message != NULL ? last->message : "unknown libvirt error";
}

static const gchar *
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
static void
gw_libvirt_post(GwLibvirt *lv, GwLibvirtEvent *event)
{
    g_autoptr(GSource) source = g_idle_source_new();

    event->lv = gw_libvirt_ref(lv);
    g_source_set_priority(source, G_PRIORITY_DEFAULT);
    g_source_set_callback(source, gw_libvirt_event_dispatch, event, gw_libvirt_event_free);
    g_source_attach(source, lv->context);
}

static GwLibvirtEvent *
gw_libvirt_event_new(GwLibvirtEventKind kind)
{
    GwLibvirtEvent *event = g_new0(GwLibvirtEvent, 1);
    event->kind = kind;
    return event;
}

/* ---- XML ---------------------------------------------------------------- */

/* Element depths in a domain document. */
enum {
    GW_LIBVIRT_DEPTH_DOMAIN = 1,
    GW_LIBVIRT_DEPTH_DEVICES = 2,
    GW_LIBVIRT_DEPTH_DEVICE = 3,
    GW_LIBVIRT_DEPTH_DEVICE_CHILD = 4,
};

typedef struct {
    GPtrArray *paths;     /* not owned */
    GPtrArray *aliases;   /* not owned, nullable */
    guint depth;          /* of the element being read; 0 outside the root */
    gboolean in_domain;   /* the root element is <domain> */
    gboolean in_devices;  /* inside <domain><devices> */
    gboolean in_redirdev; /* inside a <redirdev type='unix'> there */
    gchar *path;          /* owned, nullable: its <source path> */
    gchar *alias;         /* owned, nullable: its <alias name> */
} GwLibvirtXmlParse;

static const gchar *
gw_libvirt_xml_attr(const gchar **names, const gchar **values, const gchar *wanted)
{
    for (guint i = 0; names[i] != NULL; i++) {
        if (g_str_equal(names[i], wanted))
            return values[i];
    }
    return NULL;
}

static void
gw_libvirt_xml_start(GMarkupParseContext *context, const gchar *element, const gchar **names,
                     const gchar **values, gpointer user_data, GError **error)
{
    GwLibvirtXmlParse *parse = user_data;
    const gchar *value;

    parse->depth++;
    switch (parse->depth) {
    case GW_LIBVIRT_DEPTH_DOMAIN:
        parse->in_domain = g_str_equal(element, "domain");
        break;
    case GW_LIBVIRT_DEPTH_DEVICES:
        parse->in_devices = parse->in_domain && g_str_equal(element, "devices");
        break;
    case GW_LIBVIRT_DEPTH_DEVICE:
        value = gw_libvirt_xml_attr(names, values, "type");
        parse->in_redirdev =
            parse->in_devices && g_str_equal(element, "redirdev") && g_strcmp0(value, "unix") == 0;
        break;
    case GW_LIBVIRT_DEPTH_DEVICE_CHILD:
        if (!parse->in_redirdev)
            break;
        if (g_str_equal(element, "source") &&
            (value = gw_libvirt_xml_attr(names, values, "path")) != NULL) {
            g_free(parse->path);
            parse->path = g_strdup(value);
        } else if (g_str_equal(element, "alias") &&
                   (value = gw_libvirt_xml_attr(names, values, "name")) != NULL) {
            g_free(parse->alias);
            parse->alias = g_strdup(value);
        }
        break;
    default:
        break;
    }
}

static void
gw_libvirt_xml_end(GMarkupParseContext *context, const gchar *element, gpointer user_data,
                   GError **error)
{
    GwLibvirtXmlParse *parse = user_data;

    switch (parse->depth) {
    case GW_LIBVIRT_DEPTH_DEVICES:
        parse->in_devices = FALSE;
        break;
    case GW_LIBVIRT_DEPTH_DEVICE:
        if (parse->in_redirdev && parse->path != NULL) {
            g_ptr_array_add(parse->paths, g_steal_pointer(&parse->path));
            if (parse->aliases != NULL)
                g_ptr_array_add(parse->aliases, parse->alias != NULL
                                                    ? g_steal_pointer(&parse->alias)
                                                    : g_strdup(""));
        }
        g_clear_pointer(&parse->path, g_free);
        g_clear_pointer(&parse->alias, g_free);
        parse->in_redirdev = FALSE;
        break;
    default:
        break;
    }
    parse->depth--;
}

gboolean
gw_libvirt_parse_redirdevs(const gchar *xml, GPtrArray *paths, GPtrArray *aliases, GError **error)
{
    static const GMarkupParser parser = {
        .start_element = gw_libvirt_xml_start,
        .end_element = gw_libvirt_xml_end,
    };
    GwLibvirtXmlParse parse = {.paths = paths, .aliases = aliases};
    g_autoptr(GMarkupParseContext) context = g_markup_parse_context_new(&parser, 0, &parse, NULL);
    gboolean ok = g_markup_parse_context_parse(context, xml, -1, error) &&
                  g_markup_parse_context_end_parse(context, error);

    g_free(parse.path);
    g_free(parse.alias);
    if (ok && !parse.in_domain) {
        g_set_error_literal(error, G_MARKUP_ERROR, G_MARKUP_ERROR_INVALID_CONTENT,
                            "the document is not a <domain>");
        return FALSE;
    }
    return ok;
}

static gboolean
gw_libvirt_alias_is_valid(const gchar *alias)
{
    const gchar *rest;

    if (alias == NULL || !g_str_has_prefix(alias, GW_LIBVIRT_USER_ALIAS_PREFIX))
        return FALSE;
    rest = alias + strlen(GW_LIBVIRT_USER_ALIAS_PREFIX);
    if (*rest == '\0')
        return FALSE;
    for (; *rest != '\0'; rest++) {
        if (!g_ascii_isalnum(*rest) && *rest != '-' && *rest != '_')
            return FALSE;
    }
    return TRUE;
}

/* ---- libvirt callbacks ------------------------------------------------------
 * Run by libvirt's event implementation, i.e. from a source on
 * g_main_context_default(): they copy and queue, nothing else. */

static void
gw_libvirt_post_domain(GwLibvirtLink *link, GwLibvirtEventKind kind, virDomainPtr dom,
                       const gchar *alias)
{
    GwLibvirtEvent *event = gw_libvirt_event_new(kind);
    char uuid[VIR_UUID_STRING_BUFLEN] = "";

    /* Both read the domain object's own fields: no RPC from here. */
    if (virDomainGetUUIDString(dom, uuid) < 0)
        uuid[0] = '\0';
    event->name = g_strdup(virDomainGetName(dom));
    event->uuid = g_strdup(uuid);
    event->text = g_strdup(alias);
    gw_libvirt_post(link->lv, event);
}

static int
gw_libvirt_lifecycle_cb(virConnectPtr conn, virDomainPtr dom, int what, int detail, void *opaque)
{
    switch ((virDomainEventType)what) {
    case VIR_DOMAIN_EVENT_STARTED:
        gw_libvirt_post_domain(opaque, GW_LIBVIRT_EVENT_STARTED, dom, NULL);
        break;
    case VIR_DOMAIN_EVENT_STOPPED:
        gw_libvirt_post_domain(opaque, GW_LIBVIRT_EVENT_STOPPED, dom, NULL);
        break;
    case VIR_DOMAIN_EVENT_DEFINED:
    case VIR_DOMAIN_EVENT_UNDEFINED:
    case VIR_DOMAIN_EVENT_SUSPENDED:
    case VIR_DOMAIN_EVENT_RESUMED:
    case VIR_DOMAIN_EVENT_SHUTDOWN:
    case VIR_DOMAIN_EVENT_PMSUSPENDED:
    case VIR_DOMAIN_EVENT_CRASHED:
#ifdef VIR_ENUM_SENTINELS
    case VIR_DOMAIN_EVENT_LAST:
#endif
        break;
    }
    return 0;
}

static void
gw_libvirt_device_removed_cb(virConnectPtr conn, virDomainPtr dom, const char *alias, void *opaque)
{
    gw_libvirt_post_domain(opaque, GW_LIBVIRT_EVENT_DEVICE_REMOVED, dom, alias);
}

static void
gw_libvirt_close_cb(virConnectPtr conn, int reason, void *opaque)
{
    GwLibvirtLink *link = opaque;
    GwLibvirtEvent *event = gw_libvirt_event_new(GW_LIBVIRT_EVENT_LOST);

    event->generation = link->generation;
    event->text = g_strdup(gw_libvirt_close_reason(reason));
    gw_libvirt_post(link->lv, event);
}

/* ---- worker thread ------------------------------------------------------- */

static void
gw_libvirt_worker_disconnect(GwLibvirt *lv)
{
    int refs;

    if (lv->conn == NULL)
        return;
    /* Each removal calls libvirt's free callback, dropping a link ref. On a
     * dead connection the remote part fails, the local removal does not. */
    if (lv->lifecycle_id >= 0 && virConnectDomainEventDeregisterAny(lv->conn, lv->lifecycle_id) < 0)
        g_debug("cannot deregister lifecycle events: %s", gw_libvirt_last_error_message());
    if (lv->removed_id >= 0 && virConnectDomainEventDeregisterAny(lv->conn, lv->removed_id) < 0)
        g_debug("cannot deregister device-removed events: %s", gw_libvirt_last_error_message());
    /* Once this returns the close callback is not running and will not be
     * called (libvirt runs it under the lock this takes). It fails harmlessly
     * if the callback already fired: libvirt forgets it after one call. */
    if (lv->close_link != NULL &&
        virConnectUnregisterCloseCallback(lv->conn, gw_libvirt_close_cb) < 0)
        g_debug("cannot unregister the close callback: %s", gw_libvirt_last_error_message());
    lv->lifecycle_id = -1;
    lv->removed_id = -1;
    refs = virConnectClose(lv->conn);
    if (refs != 0)
        g_debug("libvirt connection still has %d references after close", refs);
    lv->conn = NULL;
    g_clear_pointer(&lv->close_link, gw_libvirt_link_release);
}

/* Registers a domain event for the current connection; the link ref it
 * takes is dropped by libvirt's free callback (or here on failure: libvirt
 * does not call it for a failed registration). */
static int
gw_libvirt_worker_register(GwLibvirt *lv, GwLibvirtLink *link, int event_id,
                           virConnectDomainEventGenericCallback cb)
{
    int id = virConnectDomainEventRegisterAny(
        lv->conn, NULL, event_id, cb, g_atomic_rc_box_acquire(link), gw_libvirt_link_release);
    if (id < 0)
        gw_libvirt_link_release(link);
    return id;
}

/* Registration helpers need a generic callback type; the cast through
 * void (*)(void) is the one C allows without -Wcast-function-type. */
#define GW_LIBVIRT_EVENT_CB(cb) ((virConnectDomainEventGenericCallback)(void (*)(void))(cb))

static void
gw_libvirt_worker_connect(GwLibvirt *lv)
{
    GwLibvirtEvent *event;
    GwLibvirtLink *link;
    gint64 start = g_get_monotonic_time();
    g_autofree gchar *failure = NULL;

    gw_libvirt_worker_disconnect(lv);
    lv->conn = virConnectOpen(lv->uri);
    if (lv->conn == NULL) {
        failure = g_strdup_printf("cannot connect to libvirt at %s: %s", lv->uri,
                                  gw_libvirt_last_error_message());
    } else {
        /* Remote URIs only: local drivers (test:///) say "unsupported". */
        if (virConnectSetKeepAlive(lv->conn, GW_LIBVIRT_KEEPALIVE_INTERVAL_S,
                                   GW_LIBVIRT_KEEPALIVE_COUNT) < 0)
            g_debug("no keepalive on %s: %s", lv->uri, gw_libvirt_last_error_message());

        link = g_atomic_rc_box_new0(GwLibvirtLink);
        link->lv = gw_libvirt_ref(lv);
        link->generation = ++lv->conn_generation;
        lv->loss_posted = FALSE;

        if (virConnectRegisterCloseCallback(lv->conn, gw_libvirt_close_cb, link, NULL) < 0)
            g_debug("no close callback on %s: %s", lv->uri, gw_libvirt_last_error_message());
        else
            lv->close_link = g_atomic_rc_box_acquire(link);
        lv->lifecycle_id = gw_libvirt_worker_register(lv, link, VIR_DOMAIN_EVENT_ID_LIFECYCLE,
                                                      GW_LIBVIRT_EVENT_CB(gw_libvirt_lifecycle_cb));
        if (lv->lifecycle_id < 0)
            failure = g_strdup_printf("cannot subscribe to domain lifecycle events on %s: %s",
                                      lv->uri, gw_libvirt_last_error_message());
        if (failure == NULL) {
            lv->removed_id =
                gw_libvirt_worker_register(lv, link, VIR_DOMAIN_EVENT_ID_DEVICE_REMOVED,
                                           GW_LIBVIRT_EVENT_CB(gw_libvirt_device_removed_cb));
            if (lv->removed_id < 0)
                failure = g_strdup_printf("cannot subscribe to device-removed events on %s: %s",
                                          lv->uri, gw_libvirt_last_error_message());
        }
        gw_libvirt_link_release(link);
        if (failure != NULL)
            gw_libvirt_worker_disconnect(lv);
    }

    if (failure != NULL) {
        event = gw_libvirt_event_new(GW_LIBVIRT_EVENT_CONNECT_FAILED);
        event->text = g_steal_pointer(&failure);
    } else {
        event = gw_libvirt_event_new(GW_LIBVIRT_EVENT_CONNECTED);
        event->generation = lv->conn_generation;
    }
    event->elapsed_us = g_get_monotonic_time() - start;
    gw_libvirt_post(lv, event);
}

/* After a failed call: if the connection died under it, tell the main
 * thread (once per connection; the close callback may say so too). */
static gboolean
gw_libvirt_worker_check_alive(GwLibvirt *lv)
{
    GwLibvirtEvent *event;

    if (lv->conn == NULL)
        return FALSE;
    if (virConnectIsAlive(lv->conn) != 0)
        return TRUE;
    if (!lv->loss_posted) {
        lv->loss_posted = TRUE;
        event = gw_libvirt_event_new(GW_LIBVIRT_EVENT_LOST);
        event->generation = lv->conn_generation;
        event->text = g_strdup("a call failed on a dead connection");
        gw_libvirt_post(lv, event);
    }
    return FALSE;
}

/* Sets @error from libvirt's last error, prefixed by @what; reports
 * NOT_CONNECTED if the connection turned out dead. */
static gboolean
gw_libvirt_worker_fail(GwLibvirt *lv, GError **error, const gchar *what)
{
    int code = gw_libvirt_last_error_number();
    g_autofree gchar *message = g_strdup(gw_libvirt_last_error_message());

    if (!gw_libvirt_worker_check_alive(lv)) {
        g_set_error(error, GW_LIBVIRT_ERROR, GW_LIBVIRT_ERROR_NOT_CONNECTED,
                    "%s: connection to libvirt at %s lost (%s)", what, lv->uri, message);
        return FALSE;
    }
    g_set_error(error, GW_LIBVIRT_ERROR, gw_libvirt_error_code(code), "%s: %s", what, message);
    return FALSE;
}

static gboolean
gw_libvirt_worker_require_conn(GwLibvirt *lv, GError **error, const gchar *what)
{
    if (lv->conn != NULL && virConnectIsAlive(lv->conn) == 1)
        return TRUE;
    g_set_error(error, GW_LIBVIRT_ERROR, GW_LIBVIRT_ERROR_NOT_CONNECTED,
                "%s: not connected to libvirt at %s", what, lv->uri);
    return FALSE;
}

/* Live XML of @dom parsed into source paths and aliases. */
static gboolean
gw_libvirt_worker_redirdevs(GwLibvirt *lv, virDomainPtr dom, const gchar *what, GPtrArray *paths,
                            GPtrArray *aliases, GError **error)
{
    g_autofree gchar *xml = virDomainGetXMLDesc(dom, 0);
    g_autoptr(GError) parse_error = NULL;

    if (xml == NULL)
        return gw_libvirt_worker_fail(lv, error, what);
    if (!gw_libvirt_parse_redirdevs(xml, paths, aliases, &parse_error)) {
        g_set_error(error, GW_LIBVIRT_ERROR, GW_LIBVIRT_ERROR_FAILED,
                    "%s: cannot parse the live domain XML: %s", what, parse_error->message);
        return FALSE;
    }
    return TRUE;
}

static gboolean
gw_libvirt_paths_find(GPtrArray *paths, const gchar *path, guint *index)
{
    return g_ptr_array_find_with_equal_func(paths, path, g_str_equal, index);
}

static GPtrArray *
gw_libvirt_worker_list(GwLibvirt *lv, GError **error)
{
    const gchar *what = "cannot list running VMs";
    g_autoptr(GPtrArray) result =
        g_ptr_array_new_with_free_func((GDestroyNotify)gw_libvirt_domain_free);
    virDomainPtr *domains = NULL;
    int count;
    gboolean ok = TRUE;

    if (!gw_libvirt_worker_require_conn(lv, error, what))
        return NULL;
    count = virConnectListAllDomains(lv->conn, &domains, VIR_CONNECT_LIST_DOMAINS_ACTIVE);
    if (count < 0) {
        gw_libvirt_worker_fail(lv, error, what);
        return NULL;
    }
    for (int i = 0; i < count; i++) {
        g_autoptr(virDomain) dom = domains[i];
        g_autoptr(GwLibvirtDomain) entry = g_new0(GwLibvirtDomain, 1);
        g_autoptr(GError) local_error = NULL;
        g_autofree gchar *read_what = NULL;
        char uuid[VIR_UUID_STRING_BUFLEN] = "";

        if (!ok)
            continue; /* only frees the rest */
        if (virDomainGetUUIDString(dom, uuid) < 0)
            uuid[0] = '\0';
        entry->name = g_strdup(virDomainGetName(dom));
        entry->uuid = g_strdup(uuid);
        entry->redirdev_paths = g_ptr_array_new_with_free_func(g_free);
        read_what =
            g_strdup_printf("cannot read the live XML of VM '%s' (%s)", entry->name, entry->uuid);
        if (!gw_libvirt_worker_redirdevs(lv, dom, read_what, entry->redirdev_paths, NULL,
                                         &local_error)) {
            /* Stopped or undefined since the listing: not running, skip. */
            if (virDomainIsActive(dom) == 0 ||
                g_error_matches(local_error, GW_LIBVIRT_ERROR, GW_LIBVIRT_ERROR_NO_DOMAIN))
                continue;
            g_propagate_error(error, g_steal_pointer(&local_error));
            ok = FALSE;
            continue;
        }
        g_ptr_array_add(result, g_steal_pointer(&entry));
    }
    free(domains);
    return ok ? g_steal_pointer(&result) : NULL;
}

/* Looks up the domain @uuid; @name_out gets "'name' (uuid)" for messages. */
static virDomainPtr
gw_libvirt_worker_lookup(GwLibvirt *lv, const gchar *uuid, const gchar *what, gchar **name_out,
                         GError **error)
{
    virDomainPtr dom;

    *name_out = g_strdup_printf("VM %s", uuid);
    if (!gw_libvirt_worker_require_conn(lv, error, what))
        return NULL;
    dom = virDomainLookupByUUIDString(lv->conn, uuid);
    if (dom == NULL) {
        g_autofree gchar *prefix = g_strdup_printf("%s %s", what, *name_out);
        gw_libvirt_worker_fail(lv, error, prefix);
        return NULL;
    }
    g_free(*name_out);
    *name_out = g_strdup_printf("VM '%s' (%s)", virDomainGetName(dom), uuid);
    return dom;
}

static gboolean
gw_libvirt_worker_attach(GwLibvirt *lv, GwLibvirtJob *job, GError **error)
{
    g_autofree gchar *vm = NULL;
    g_autofree gchar *what = g_strdup_printf("cannot attach USB redirection '%s' to", job->path);
    g_autoptr(virDomain) dom = gw_libvirt_worker_lookup(lv, job->uuid, what, &vm, error);
    g_autoptr(GPtrArray) paths = g_ptr_array_new_with_free_func(g_free);
    g_autofree gchar *xml = NULL;
    g_autofree gchar *full = NULL;
    gint64 start;

    if (dom == NULL)
        return FALSE;
    full = g_strdup_printf("%s %s", what, vm);
    if (virDomainIsActive(dom) == 0) {
        g_set_error(error, GW_LIBVIRT_ERROR, GW_LIBVIRT_ERROR_NOT_RUNNING, "%s: it is not running",
                    full);
        return FALSE;
    }
    if (!gw_libvirt_worker_redirdevs(lv, dom, full, paths, NULL, error))
        return FALSE;
    if (gw_libvirt_paths_find(paths, job->path, NULL)) {
        g_debug("%s already has a redirdev on %s", vm, job->path);
        return TRUE;
    }
    xml = g_markup_printf_escaped("<redirdev bus='usb' type='unix'>"
                                  "<source mode='connect' path='%s'>"
                                  "<reconnect enabled='yes' timeout='%d'/>"
                                  "</source>"
                                  "<alias name='%s'/>"
                                  "</redirdev>",
                                  job->path, GW_LIBVIRT_REDIRDEV_RECONNECT_S, job->alias);
    start = g_get_monotonic_time();
    if (virDomainAttachDeviceFlags(dom, xml, VIR_DOMAIN_AFFECT_LIVE) < 0)
        return gw_libvirt_worker_fail(lv, error, full);
    g_debug("attached %s to %s as %s in %.3f s", job->path, vm, job->alias,
            (g_get_monotonic_time() - start) / (gdouble)G_USEC_PER_SEC);
    return TRUE;
}

/* Waits (bounded) until @path has left the live XML of @dom. */
static void
gw_libvirt_worker_wait_removed(GwLibvirt *lv, virDomainPtr dom, const gchar *vm, const gchar *path)
{
    for (guint i = 0; i < GW_LIBVIRT_DETACH_POLL_COUNT; i++) {
        g_autoptr(GPtrArray) paths = g_ptr_array_new_with_free_func(g_free);
        g_autoptr(GError) error = NULL;

        if (!gw_libvirt_worker_redirdevs(lv, dom, "checking the unplug", paths, NULL, &error) ||
            !gw_libvirt_paths_find(paths, path, NULL))
            return; /* gone (or the VM is: same outcome) */
        g_usleep(GW_LIBVIRT_DETACH_POLL_INTERVAL_MS * G_TIME_SPAN_MILLISECOND);
    }
    g_warning("%s: the redirdev on %s is still present %d ms after the unplug request; libvirt "
              "will report its removal later",
              vm, path, GW_LIBVIRT_DETACH_POLL_COUNT * GW_LIBVIRT_DETACH_POLL_INTERVAL_MS);
}

static gboolean
gw_libvirt_worker_detach(GwLibvirt *lv, GwLibvirtJob *job, GError **error)
{
    g_autofree gchar *vm = NULL;
    g_autofree gchar *what = g_strdup_printf("cannot detach USB redirection '%s' from", job->path);
    g_autoptr(GError) local_error = NULL;
    g_autoptr(virDomain) dom = gw_libvirt_worker_lookup(lv, job->uuid, what, &vm, &local_error);
    g_autoptr(GPtrArray) paths = g_ptr_array_new_with_free_func(g_free);
    g_autoptr(GPtrArray) aliases = g_ptr_array_new_with_free_func(g_free);
    g_autofree gchar *full = NULL;
    const gchar *alias;
    guint index;
    int rc;

    if (dom == NULL) {
        if (!g_error_matches(local_error, GW_LIBVIRT_ERROR, GW_LIBVIRT_ERROR_NO_DOMAIN)) {
            g_propagate_error(error, g_steal_pointer(&local_error));
            return FALSE;
        }
        g_debug("detach of %s: %s is not defined, so nothing is attached", job->path, vm);
        return TRUE;
    }
    full = g_strdup_printf("%s %s", what, vm);
    if (virDomainIsActive(dom) == 0)
        return TRUE;
    if (!gw_libvirt_worker_redirdevs(lv, dom, full, paths, aliases, &local_error)) {
        if (virDomainIsActive(dom) == 0)
            return TRUE; /* stopped meanwhile */
        g_propagate_error(error, g_steal_pointer(&local_error));
        return FALSE;
    }
    if (!gw_libvirt_paths_find(paths, job->path, &index)) {
        g_debug("detach of %s: not attached to %s", job->path, vm);
        return TRUE;
    }
    alias = g_ptr_array_index(aliases, index);
    if (*alias != '\0') {
        rc = virDomainDetachDeviceAlias(dom, alias, VIR_DOMAIN_AFFECT_LIVE);
    } else {
        /* Running domains get an alias for every device; this is for
         * drivers that do not set one. */
        g_autofree gchar *xml =
            g_markup_printf_escaped("<redirdev bus='usb' type='unix'>"
                                    "<source mode='connect' path='%s'/></redirdev>",
                                    job->path);
        rc = virDomainDetachDeviceFlags(dom, xml, VIR_DOMAIN_AFFECT_LIVE);
    }
    if (rc < 0) {
        /* Someone else removed it between our look and the request. */
        if (gw_libvirt_last_error_number() == VIR_ERR_DEVICE_MISSING)
            return TRUE;
        return gw_libvirt_worker_fail(lv, error, full);
    }
    gw_libvirt_worker_wait_removed(lv, dom, vm, job->path);
    return TRUE;
}

static void
gw_libvirt_worker_run(GwLibvirt *lv, GwLibvirtJob *job)
{
    GError *error = NULL;
    GPtrArray *list;

    switch (job->kind) {
    case GW_LIBVIRT_JOB_CONNECT:
        gw_libvirt_worker_connect(lv);
        return;
    case GW_LIBVIRT_JOB_LIST:
        list = gw_libvirt_worker_list(lv, &error);
        if (list != NULL)
            g_task_return_pointer(job->task, list, (GDestroyNotify)g_ptr_array_unref);
        else
            g_task_return_error(job->task, error);
        return;
    case GW_LIBVIRT_JOB_ATTACH:
        if (gw_libvirt_worker_attach(lv, job, &error))
            g_task_return_boolean(job->task, TRUE);
        else
            g_task_return_error(job->task, error);
        return;
    case GW_LIBVIRT_JOB_DETACH:
        if (gw_libvirt_worker_detach(lv, job, &error))
            g_task_return_boolean(job->task, TRUE);
        else
            g_task_return_error(job->task, error);
        return;
    case GW_LIBVIRT_JOB_QUIT:
        return;
    }
}

/* A job that will not run: its task (if any) completes with CANCELLED. */
static void
gw_libvirt_job_cancel(GwLibvirtJob *job, const gchar *why)
{
    if (job->task != NULL)
        g_task_return_new_error(job->task, G_IO_ERROR, G_IO_ERROR_CANCELLED, "%s", why);
}

static gpointer
gw_libvirt_worker_thread(gpointer data)
{
    GwLibvirt *lv = data; /* a reference of its own */
    GwLibvirtJob *job;

    for (;;) {
        job = g_async_queue_pop(lv->jobs);
        if (job->kind == GW_LIBVIRT_JOB_QUIT) {
            gw_libvirt_job_free(job);
            break;
        }
        if (g_atomic_int_get(&lv->stopping))
            gw_libvirt_job_cancel(job, "the libvirt client is shutting down");
        else if (job->task == NULL || !g_task_return_error_if_cancelled(job->task))
            gw_libvirt_worker_run(lv, job); /* else: cancelled before it started */
        gw_libvirt_job_free(job);
    }
    gw_libvirt_worker_disconnect(lv);
    while ((job = g_async_queue_try_pop(lv->jobs)) != NULL) {
        gw_libvirt_job_cancel(job, "the libvirt client is shutting down");
        gw_libvirt_job_free(job);
    }

    g_mutex_lock(&lv->done_lock);
    lv->worker_done = TRUE;
    g_cond_signal(&lv->done_cond);
    g_mutex_unlock(&lv->done_lock);
    gw_libvirt_unref(lv);
    return NULL;
}

/* ---- main thread -------------------------------------------------------- */

static void
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

static gboolean
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
