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

#include "policy.h"

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
/* usbgw's namespace in a domain's <metadata> (docs/policy.md, "Metadata"),
 * and the prefix usbgw's own tools write it with. */
#define GW_LIBVIRT_METADATA_NS     "http://usbgw.org/xmlns/usbgw/1.0"
#define GW_LIBVIRT_METADATA_PREFIX "usbgw"
/* Bounds on what usbgwd reads of it: the element's size, its <device>
 * children, the bytes of one attribute value. */
#define GW_LIBVIRT_METADATA_MAX_BYTES  16384
#define GW_LIBVIRT_METADATA_MAX_WISHES 32
#define GW_LIBVIRT_METADATA_MAX_VALUE  255
/* The USB controller usbgwd adds to a definition without one
 * (add-usb-controller=true): xHCI takes USB 1, 2 and 3 devices. */
#define GW_LIBVIRT_USB_CONTROLLER_MODEL "qemu-xhci"

#define GW_LIBVIRT_ERROR (gw_libvirt_error_quark())
GQuark gw_libvirt_error_quark(void);

typedef enum {
    GW_LIBVIRT_ERROR_NOT_CONNECTED,    /* no libvirt connection right now */
    GW_LIBVIRT_ERROR_NO_DOMAIN,        /* no domain with that UUID */
    GW_LIBVIRT_ERROR_NOT_RUNNING,      /* the domain exists but is not running */
    GW_LIBVIRT_ERROR_NOT_SUPPORTED,    /* the driver cannot do it (e.g. test:///) */
    GW_LIBVIRT_ERROR_INVALID_ARGUMENT, /* bad alias, path or UUID from the caller */
    GW_LIBVIRT_ERROR_NO_USB_BUS,       /* the domain has no USB controller to plug into */
    GW_LIBVIRT_ERROR_FAILED,           /* any other libvirt failure */
} GwLibvirtError;

typedef struct _GwLibvirt GwLibvirt;

/* A running domain as gw_libvirt_list_running_finish() and the
 * domain_inspected handler report it. */
typedef struct {
    gchar *name;               /* owned */
    gchar *uuid;               /* owned: canonical lower-case string form */
    GPtrArray *redirdev_paths; /* owned, of gchar*: source paths of the live
                                * <redirdev type='unix'> elements */
    /* Its usbgw metadata: the wishes (owned, of PolicyWish*; empty when it
     * has none), or why they could not be read (owned, nullable: names the
     * VM and the element; the wishes are then empty). */
    GPtrArray *wishes;
    gchar *wishes_error;
    /* Its live USB bus: gw_libvirt_usb_bus() of its live XML, NULL when it
     * has none (<controller type='usb' model='none'/>). */
    gchar *usb_bus;
    /* With add-usb-controller and no USB bus: what was done to the
     * persistent definition (owned, nullable), and whether it worked. */
    gchar *usb_fix;
    gboolean usb_fixed;
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
    /* After a domain started or its usbgw metadata changed
     * (VIR_DOMAIN_EVENT_ID_METADATA_CHANGE in GW_LIBVIRT_METADATA_NS): its
     * wishes and USB bus as read from the running domain. */
    void (*domain_inspected)(const GwLibvirtDomain *domain, gpointer user_data);
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
/* add-usb-controller: when a running domain has no USB bus, add a
 * GW_LIBVIRT_USB_CONTROLLER_MODEL controller to its persistent definition
 * (virDomainDefineXML of the edited inactive XML; effective at its next
 * start). Call before gw_libvirt_start(). */
void gw_libvirt_set_add_usb_controller(GwLibvirt *lv, gboolean add);
/* Starts connecting in the background (see "Connection" above). */
void gw_libvirt_start(GwLibvirt *lv);
gboolean gw_libvirt_is_connected(GwLibvirt *lv);
const gchar *gw_libvirt_get_uri(GwLibvirt *lv);
void gw_libvirt_get_status(GwLibvirt *lv, GwLibvirtStatus *status);

/* Lists active domains with the unix source paths of their live redirdevs,
 * their usbgw metadata and USB bus (virConnectListAllDomains + live XML
 * and metadata of each, parsed with GMarkup). A
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
 * into the running domain @uuid; GW_LIBVIRT_ERROR_NO_USB_BUS when its live
 * XML has no USB controller to take it. @alias must be "ua-" followed by letters,
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
/* The same, and the model of each <controller type='usb'> ("" when it has
 * none) into @usb_models; every array is nullable. */
gboolean gw_libvirt_parse_domain(const gchar *xml, GPtrArray *paths, GPtrArray *aliases,
                                 GPtrArray *usb_models, GError **error) G_GNUC_WARN_UNUSED_RESULT;
/* The model of the first controller of @usb_models a usb-redir device can
 * be plugged into ("default" for one without a model, "unlisted" when
 * there is no USB controller element: libvirt's QEMU driver always lists
 * them, so that is another driver's domain), or NULL: only model='none'. */
const gchar *gw_libvirt_usb_bus(const GPtrArray *usb_models);
/* @xml (a domain definition without a USB bus) with its
 * <controller type='usb' model='none'/> replaced by a
 * GW_LIBVIRT_USB_CONTROLLER_MODEL one (or one added when it has no USB
 * controller element). NULL with @error when it has a USB bus already or
 * cannot be edited. */
gchar *gw_libvirt_add_usb_controller(const gchar *xml, GError **error) G_GNUC_WARN_UNUSED_RESULT;
/* usbgw's metadata element as virDomainGetMetadata() returns it (@len
 * bytes, -1: NUL-terminated) into @wishes (PolicyWish*, appended only when
 * all of it is valid). Strict: at most GW_LIBVIRT_METADATA_MAX_BYTES and
 * GW_LIBVIRT_METADATA_MAX_WISHES <device> elements, known attributes only;
 * @error names the element and attribute at fault. */
gboolean gw_libvirt_parse_metadata(const gchar *xml, gssize len, GPtrArray *wishes,
                                   GError **error) G_GNUC_WARN_UNUSED_RESULT;

G_END_DECLS
