/* usbgwd's libvirt client: one connection (reconnected with backoff),
 * domain lifecycle and device-removed events, the list of running domains
 * with their live unix <redirdev> sources, and hot-plug / unplug of
 * `<redirdev bus='usb' type='unix'>` elements.
 *
 * Threading (docs/threading.md, section "libvirt"):
 *
 * - main: the thread that iterates g_main_context_default() (usbgwd's main
 *   loop). Every gw_libvirt_* function is called there, and every handler
 *   and every GAsyncReadyCallback runs there (on the context given to
 *   gw_libvirt_new(), normally that same default context), each from its
 *   own idle source, never re-entrantly from inside a gw_libvirt_* call.
 *   The main thread never makes a libvirt API call that can block (the
 *   first connection to a freshly started libvirtd takes ~7.5 s).
 * - libvirt's events also run on the main thread: since libvirt 6.1
 *   virEventRegisterDefaultImpl() is GLib-based and puts its socket watches
 *   and timers (remote driver I/O, keepalive, event queue flush) on
 *   g_main_context_default(). So there is deliberately NO thread running
 *   virEventRunDefaultImpl(): that function only iterates the default main
 *   context, and a second thread doing so would dispatch the daemon's own
 *   sockets and timers off the main thread. libvirt's lifecycle,
 *   device-removed and close callbacks only copy what they need (name,
 *   UUID, alias) and queue an idle source; they call nothing else. The
 *   default main context must therefore be iterated for events, keepalive
 *   and loss detection to work (usbgwd's main loop does).
 * - "usbgw-lv-work" (one per GwLibvirt): makes every blocking libvirt call
 *   of this module, one job at a time, in the order the main thread asked
 *   for them: connect (virConnectOpen, keepalive, close callback, event
 *   registration), list, attach, detach, and the final close. Serializing
 *   keeps an attach and a later detach of the same socket in order.
 *
 * Lifetimes: gw_libvirt_free() stops the handlers at once (nothing is
 * called after it returns except pending GAsyncReadyCallbacks, below),
 * fails queued jobs with G_IO_ERROR_CANCELLED, lets the worker finish the
 * job it is running, deregisters the events, closes the connection and
 * joins the worker (waiting at most GW_LIBVIRT_STOP_TIMEOUT_MS; a worker
 * stuck in a libvirt call after that is left to finish on its own and
 * holds its own references). Every async operation completes exactly once,
 * as in GIO: its callback may run after gw_libvirt_free(), and the _finish
 * functions never dereference @lv (NULL is fine), so calling them then is
 * safe.
 *
 * Cancellation: a GCancellable cancelled before the worker starts the job
 * completes it with G_IO_ERROR_CANCELLED and nothing is done; a job that
 * already ran reports what it really did (an attach that happened is not
 * reported as cancelled).
 *
 * Connection: gw_libvirt_start() connects in the background. A failed
 * attempt is retried after GW_LIBVIRT_BACKOFF_INITIAL_MS, doubling up to
 * GW_LIBVIRT_BACKOFF_MAX_MS. Loss is noticed by libvirt's close callback
 * (socket EOF, keepalive timeout: GW_LIBVIRT_KEEPALIVE_INTERVAL_S x
 * GW_LIBVIRT_KEEPALIVE_COUNT) or by a failed call on a dead connection;
 * then handlers->connected(FALSE) runs and reconnection starts again at the
 * initial delay. Operations requested while disconnected fail at once with
 * GW_LIBVIRT_ERROR_NOT_CONNECTED; callers re-sync on connected(TRUE) with
 * gw_libvirt_list_running_async().
 *
 * libvirt's default error printing to stderr is replaced, process-wide,
 * with g_debug() output; errors reach callers as GErrors naming the VM and
 * the operation. */
#pragma once

#include <gio/gio.h>

G_BEGIN_DECLS

/* First retry delay after a failed connect or a lost connection. */
#define GW_LIBVIRT_BACKOFF_INITIAL_MS 500
/* The retry delay doubles after each failure up to this. */
#define GW_LIBVIRT_BACKOFF_MAX_MS 30000
/* libvirt keepalive: a probe every INTERVAL seconds; the connection is
 * declared dead after COUNT unanswered probes (remote URIs only). */
#define GW_LIBVIRT_KEEPALIVE_INTERVAL_S 5
#define GW_LIBVIRT_KEEPALIVE_COUNT      3
/* How long gw_libvirt_free() waits for the worker to finish its current
 * libvirt call before leaving it behind. */
#define GW_LIBVIRT_STOP_TIMEOUT_MS 10000
/* After virDomainDetachDeviceAlias (which returns once QEMU was asked),
 * the worker re-reads the live XML until the redirdev is gone: this often,
 * at most this many times. USB unplug in QEMU is immediate, so the first
 * or second look normally sees it gone. */
#define GW_LIBVIRT_DETACH_POLL_INTERVAL_MS 50
#define GW_LIBVIRT_DETACH_POLL_COUNT       40
/* Prefix libvirt requires for an alias chosen by the user ("user alias"):
 * libvirt keeps such an alias instead of generating one. */
#define GW_LIBVIRT_USER_ALIAS_PREFIX "ua-"

#define GW_LIBVIRT_ERROR (gw_libvirt_error_quark())
GQuark gw_libvirt_error_quark(void);

typedef enum {
    GW_LIBVIRT_ERROR_NOT_CONNECTED,    /* no libvirt connection right now */
    GW_LIBVIRT_ERROR_NO_DOMAIN,        /* no domain with that UUID */
    GW_LIBVIRT_ERROR_NOT_RUNNING,      /* the domain exists but is not running */
    GW_LIBVIRT_ERROR_NOT_SUPPORTED,    /* the driver cannot do it (e.g. test:///) */
    GW_LIBVIRT_ERROR_INVALID_ARGUMENT, /* bad alias, path or UUID from the caller */
    GW_LIBVIRT_ERROR_FAILED,           /* any other libvirt failure */
} GwLibvirtError;

typedef struct _GwLibvirt GwLibvirt;

/* A running domain as gw_libvirt_list_running_finish() reports it. */
typedef struct {
    gchar *name;               /* owned */
    gchar *uuid;               /* owned: canonical lower-case string form */
    GPtrArray *redirdev_paths; /* owned, of gchar*: source paths of the live
                                * <redirdev type='unix'> elements */
} GwLibvirtDomain;

void gw_libvirt_domain_free(GwLibvirtDomain *domain);
G_DEFINE_AUTOPTR_CLEANUP_FUNC(GwLibvirtDomain, gw_libvirt_domain_free)

/* All run on the main context; any member may be NULL. @name and @uuid
 * are only valid during the call. */
typedef struct {
    /* TRUE after every successful (re)connect, FALSE when a connection that
     * was up is lost (not after each failed attempt). */
    void (*connected)(gboolean up, gpointer user_data);
    /* VIR_DOMAIN_EVENT_STARTED (boot, restore, incoming migration, …). */
    void (*domain_started)(const gchar *name, const gchar *uuid, gpointer user_data);
    /* VIR_DOMAIN_EVENT_STOPPED (shutdown, destroy, crash, migrated away, …). */
    void (*domain_stopped)(const gchar *name, const gchar *uuid, gpointer user_data);
    /* VIR_DOMAIN_EVENT_ID_DEVICE_REMOVED: a device left the running domain,
     * whoever detached it (usbgwd, virsh, the guest). */
    void (*device_removed)(const gchar *name, const gchar *uuid, const gchar *alias,
                           gpointer user_data);
} GwLibvirtHandlers;

/* Snapshot for status output. */
typedef struct {
    gboolean connected;
    guint failed_attempts; /* connect attempts failed since the last success */
    guint retry_delay_ms;  /* delay before the pending retry; 0 if none pending */
    gchar *last_error;     /* owned, nullable: why the last attempt failed */
} GwLibvirtStatus;

void gw_libvirt_status_clear(GwLibvirtStatus *status);

/* Registers libvirt's default event implementation and silences libvirt's
 * stderr error printing (both once per process) and starts the worker
 * thread. Does not connect. @uri: e.g. "qemu:///system"; @context: where
 * handlers and async results run (NULL: the default main context). */
GwLibvirt *gw_libvirt_new(const gchar *uri, GMainContext *context) G_GNUC_WARN_UNUSED_RESULT;
/* Copies *@handlers. Call before gw_libvirt_start(). */
void gw_libvirt_set_handlers(GwLibvirt *lv, const GwLibvirtHandlers *handlers, gpointer user_data);
/* Starts connecting in the background (see "Connection" above). */
void gw_libvirt_start(GwLibvirt *lv);
gboolean gw_libvirt_is_connected(GwLibvirt *lv);
const gchar *gw_libvirt_get_uri(GwLibvirt *lv);
void gw_libvirt_get_status(GwLibvirt *lv, GwLibvirtStatus *status);

/* Lists active domains with the unix source paths of their live redirdevs
 * (virConnectListAllDomains + live XML of each, parsed with GMarkup). A
 * domain that stops during the listing is left out. Result: a GPtrArray of
 * GwLibvirtDomain* owning its elements. */
void gw_libvirt_list_running_async(GwLibvirt *lv, GCancellable *cancellable,
                                   GAsyncReadyCallback callback, gpointer user_data);
GPtrArray *gw_libvirt_list_running_finish(GwLibvirt *lv, GAsyncResult *result,
                                          GError **error) G_GNUC_WARN_UNUSED_RESULT;

/* Hot-plugs (VIR_DOMAIN_AFFECT_LIVE only, nothing persistent)
 *   <redirdev bus='usb' type='unix'><source mode='connect' path=PATH>
 *   <reconnect enabled='yes' timeout='2'/></source><alias name=ALIAS/>
 *   </redirdev>
 * into the running domain @uuid. @alias must be "ua-" followed by letters,
 * digits, '-' or '_' (checked before anything is queued). If a live redirdev
 * already has @socket_path as its source, nothing is attached and the
 * result is success. */
void gw_libvirt_attach_redirdev_async(GwLibvirt *lv, const gchar *uuid, const gchar *socket_path,
                                      const gchar *alias, GCancellable *cancellable,
                                      GAsyncReadyCallback callback, gpointer user_data);
gboolean gw_libvirt_attach_redirdev_finish(GwLibvirt *lv, GAsyncResult *result,
                                           GError **error) G_GNUC_WARN_UNUSED_RESULT;

/* Unplugs the live redirdev of domain @uuid whose source is @socket_path
 * (found by parsing the live XML; removed with virDomainDetachDeviceAlias,
 * then the worker re-reads the live XML until it is gone, at most
 * GW_LIBVIRT_DETACH_POLL_COUNT x GW_LIBVIRT_DETACH_POLL_INTERVAL_MS; if it
 * is still there then, success is reported with a warning logged: libvirt
 * accepted the removal and device_removed follows). "Not attached" — no
 * such redirdev, domain not running or unknown — is success. */
void gw_libvirt_detach_redirdev_async(GwLibvirt *lv, const gchar *uuid, const gchar *socket_path,
                                      GCancellable *cancellable, GAsyncReadyCallback callback,
                                      gpointer user_data);
gboolean gw_libvirt_detach_redirdev_finish(GwLibvirt *lv, GAsyncResult *result,
                                           GError **error) G_GNUC_WARN_UNUSED_RESULT;

/* See "Lifetimes" above. NULL is ignored. */
void gw_libvirt_free(GwLibvirt *lv);
G_DEFINE_AUTOPTR_CLEANUP_FUNC(GwLibvirt, gw_libvirt_free)

/* Exposed for unit tests and fuzzing: the unix source paths (and aliases,
 * "" where the element has none) of the <redirdev type='unix'> elements
 * under <domain><devices> in a domain XML document. */
gboolean gw_libvirt_parse_redirdevs(const gchar *xml, GPtrArray *paths, GPtrArray *aliases,
                                    GError **error) G_GNUC_WARN_UNUSED_RESULT;

G_END_DECLS
