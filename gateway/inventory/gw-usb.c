/* libusb context, event thread and hotplug forwarding. */
#include "gw-usb.h"

/* the quark's name has dashes, which clang-format would space out */
/* clang-format off */
G_DEFINE_QUARK(usbgw-usb-error-quark, gw_usb_error)
/* clang-format on */

/* How long the event thread blocks in libusb before checking its stop flag
 * (libusb_interrupt_event_handler wakes it earlier on stop). */
#define GW_USB_EVENT_TIMEOUT_MS 1000

struct _GwUsb {
    libusb_context *ctx;   /* owned */
    GMainContext *context; /* owned ref: where hotplug callbacks run */
    GThread *thread;       /* owned, nullable */
    gint stop;             /* atomic */
    GMutex lock;           /* guards pending: the usb thread adds, the main thread removes */
    GQueue pending;        /* GSource refs: hotplug events queued on @context, not yet run */
    gboolean hotplug_registered;
    libusb_hotplug_callback_handle hotplug_handle;
    GwUsbHotplugFunc func;
    gpointer user_data;
};

gboolean
gw_usb_set_error(GError **error, int rc, const gchar *what)
{
    GwUsbError code = GW_USB_ERROR_OTHER;

    switch ((enum libusb_error)rc) {
    case LIBUSB_SUCCESS:
        return TRUE;
    case LIBUSB_ERROR_IO:
        code = GW_USB_ERROR_IO;
        break;
    case LIBUSB_ERROR_INVALID_PARAM:
        code = GW_USB_ERROR_INVALID;
        break;
    case LIBUSB_ERROR_ACCESS:
        code = GW_USB_ERROR_ACCESS;
        break;
    case LIBUSB_ERROR_NO_DEVICE:
        code = GW_USB_ERROR_NO_DEVICE;
        break;
    case LIBUSB_ERROR_NOT_FOUND:
        code = GW_USB_ERROR_NOT_FOUND;
        break;
    case LIBUSB_ERROR_BUSY:
        code = GW_USB_ERROR_BUSY;
        break;
    case LIBUSB_ERROR_TIMEOUT:
        code = GW_USB_ERROR_TIMEOUT;
        break;
    case LIBUSB_ERROR_OVERFLOW:
        code = GW_USB_ERROR_OVERFLOW;
        break;
    case LIBUSB_ERROR_PIPE:
        code = GW_USB_ERROR_PIPE;
        break;
    case LIBUSB_ERROR_INTERRUPTED:
        code = GW_USB_ERROR_INTERRUPTED;
        break;
    case LIBUSB_ERROR_NO_MEM:
        code = GW_USB_ERROR_NO_MEMORY;
        break;
    case LIBUSB_ERROR_NOT_SUPPORTED:
        code = GW_USB_ERROR_NOT_SUPPORTED;
        break;
    case LIBUSB_ERROR_OTHER:
        code = GW_USB_ERROR_OTHER;
        break;
    }
    g_set_error(error, GW_USB_ERROR, code, "%s: %s", what, libusb_strerror(rc));
    return FALSE;
}

typedef struct {
    GwUsb *usb;
    libusb_device *device; /* owned ref */
    gboolean arrived;
    GSource *source; /* the idle that carries the event; its ref is in usb->pending */
} GwUsbEvent;

static void
gw_usb_event_free(gpointer data)
{
    GwUsbEvent *event = data;
    libusb_unref_device(event->device);
    g_free(event);
}

static gboolean
gw_usb_event_dispatch(gpointer data)
{
    GwUsbEvent *event = data;
    GwUsb *usb = event->usb;

    /* no longer gw_usb_free()'s to drop; GLib holds the source while it
     * runs, and @usb is not touched after the call (it may free @usb) */
    g_mutex_lock(&usb->lock);
    g_queue_remove(&usb->pending, event->source);
    g_mutex_unlock(&usb->lock);
    g_source_unref(event->source);
    usb->func(libusb_ref_device(event->device), event->arrived, usb->user_data);
    return G_SOURCE_REMOVE;
}

static int LIBUSB_CALL
gw_usb_hotplug_cb(libusb_context *ctx, libusb_device *device, libusb_hotplug_event what,
                  void *user_data)
{
    GwUsb *usb = user_data;
    GwUsbEvent *event = g_new0(GwUsbEvent, 1);
    g_autoptr(GSource) source = g_idle_source_new();

    /* Always queue, never call through: during registration libusb calls
     * this on the registering thread, where reentering the daemon is not
     * safe. */
    event->usb = usb;
    event->device = libusb_ref_device(device);
    event->arrived = what == LIBUSB_HOTPLUG_EVENT_DEVICE_ARRIVED;
    event->source = source;
    g_source_set_priority(source, G_PRIORITY_DEFAULT);
    g_source_set_name(source, "usbgw-usb-hotplug");
    g_source_set_callback(source, gw_usb_event_dispatch, event, gw_usb_event_free);
    /* listed before it can run, so that the dispatch finds it */
    g_mutex_lock(&usb->lock);
    g_queue_push_tail(&usb->pending, g_source_ref(source));
    g_source_attach(source, usb->context);
    g_mutex_unlock(&usb->lock);
    return 0;
}

static gpointer
gw_usb_event_thread(gpointer data)
{
    GwUsb *usb = data;
    struct timeval tv = {.tv_sec = GW_USB_EVENT_TIMEOUT_MS / 1000,
                         .tv_usec = (GW_USB_EVENT_TIMEOUT_MS % 1000) * 1000};

    while (!g_atomic_int_get(&usb->stop)) {
        int rc = libusb_handle_events_timeout_completed(usb->ctx, &tv, &usb->stop);
        if (rc != LIBUSB_SUCCESS && rc != LIBUSB_ERROR_INTERRUPTED)
            /* umockdev-emulated nodes report spurious poll errors; real
             * failures show up on the transfers themselves */
            g_debug("libusb event handling: %s", libusb_strerror(rc));
    }
    return NULL;
}

/* libusb repeats some errors on every event-loop iteration (a stale fd
 * under emulation, a device in a bad state): say each message a few times,
 * then only every GW_USB_LOG_REPEAT_EVERY-th time, with a count. */
#define GW_USB_LOG_FIRST        3
#define GW_USB_LOG_REPEAT_EVERY 1000
#define GW_USB_LOG_MAX_TRACKED  256

static GMutex gw_usb_log_lock;
static GHashTable *gw_usb_log_seen; /* message → count, guarded by the lock */

static guint
gw_usb_log_count(const gchar *text)
{
    g_autoptr(GMutexLocker) locker G_GNUC_UNUSED = g_mutex_locker_new(&gw_usb_log_lock);
    guint count;

    if (gw_usb_log_seen == NULL)
        gw_usb_log_seen = g_hash_table_new_full(g_str_hash, g_str_equal, g_free, NULL);
    if (g_hash_table_size(gw_usb_log_seen) >= GW_USB_LOG_MAX_TRACKED)
        g_hash_table_remove_all(gw_usb_log_seen);
    count = GPOINTER_TO_UINT(g_hash_table_lookup(gw_usb_log_seen, text)) + 1;
    g_hash_table_replace(gw_usb_log_seen, g_strdup(text), GUINT_TO_POINTER(count));
    return count;
}

static void
gw_usb_log_cb(libusb_context *ctx, enum libusb_log_level level, const char *message)
{
    g_autofree gchar *text = g_strchomp(g_strdup(message));
    guint count;

    switch (level) {
    case LIBUSB_LOG_LEVEL_ERROR:
    case LIBUSB_LOG_LEVEL_WARNING:
        count = gw_usb_log_count(text);
        if (count <= GW_USB_LOG_FIRST)
            g_message("libusb: %s", text);
        else if (count % GW_USB_LOG_REPEAT_EVERY == 0)
            g_message("libusb: %s (%u times)", text, count);
        else
            g_debug("libusb: %s", text);
        break;
    case LIBUSB_LOG_LEVEL_NONE:
    case LIBUSB_LOG_LEVEL_INFO:
    case LIBUSB_LOG_LEVEL_DEBUG:
        g_debug("libusb: %s", text);
        break;
    }
}

GwUsb *
gw_usb_new(GMainContext *context, GError **error)
{
    GwUsb *usb = g_new0(GwUsb, 1);
    int rc = libusb_init(&usb->ctx);

    if (rc != LIBUSB_SUCCESS) {
        gw_usb_set_error(error, rc, "cannot initialize libusb");
        g_free(usb);
        return NULL;
    }
    /* global too: libusb would print to stderr otherwise */
    libusb_set_log_cb(NULL, gw_usb_log_cb, LIBUSB_LOG_CB_GLOBAL);
    libusb_set_log_cb(usb->ctx, gw_usb_log_cb, LIBUSB_LOG_CB_CONTEXT);
    usb->context = g_main_context_ref(context);
    g_mutex_init(&usb->lock);
    g_queue_init(&usb->pending);
    return usb;
}

gboolean
gw_usb_start(GwUsb *usb, GwUsbHotplugFunc func, gpointer user_data, GError **error)
{
    int rc;

    usb->func = func;
    usb->user_data = user_data;
    if (!libusb_has_capability(LIBUSB_CAP_HAS_HOTPLUG)) {
        g_set_error(error, GW_USB_ERROR, GW_USB_ERROR_NOT_SUPPORTED,
                    "libusb has no hotplug support on this system");
        return FALSE;
    }
    /* ENUMERATE reports present devices through the same callback, so the
     * initial scan and later arrivals take one path. */
    rc = libusb_hotplug_register_callback(
        usb->ctx, LIBUSB_HOTPLUG_EVENT_DEVICE_ARRIVED | LIBUSB_HOTPLUG_EVENT_DEVICE_LEFT,
        LIBUSB_HOTPLUG_ENUMERATE, LIBUSB_HOTPLUG_MATCH_ANY, LIBUSB_HOTPLUG_MATCH_ANY,
        LIBUSB_HOTPLUG_MATCH_ANY, gw_usb_hotplug_cb, usb, &usb->hotplug_handle);
    if (rc != LIBUSB_SUCCESS)
        return gw_usb_set_error(error, rc, "cannot register for USB hotplug");
    usb->hotplug_registered = TRUE;
    usb->thread = g_thread_try_new("usbgw-usb", gw_usb_event_thread, usb, error);
    return usb->thread != NULL;
}

libusb_context *
gw_usb_get_context(GwUsb *usb)
{
    return usb->ctx;
}

void
gw_usb_free(GwUsb *usb)
{
    if (usb == NULL)
        return;
    if (usb->hotplug_registered)
        libusb_hotplug_deregister_callback(usb->ctx, usb->hotplug_handle);
    g_atomic_int_set(&usb->stop, 1);
    if (usb->thread != NULL) {
        libusb_interrupt_event_handler(usb->ctx);
        g_thread_join(usb->thread);
    }
    /* No hotplug callback runs any more. Events still queued hold device
     * refs and point here: destroy them (their destroy notify drops the
     * device ref) before the libusb context goes. No main context is
     * iterated: the owner's other sources must not run inside a free. */
    for (GSource *source; (source = g_queue_pop_head(&usb->pending)) != NULL;) {
        g_source_destroy(source);
        g_source_unref(source);
    }
    g_mutex_clear(&usb->lock);
    libusb_exit(usb->ctx);
    g_main_context_unref(usb->context);
    g_free(usb);
}
