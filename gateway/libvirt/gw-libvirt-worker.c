/* The libvirt worker thread: every blocking libvirt call, one job at a
 * time in request order, and libvirt's own callbacks, which only post
 * events to the main thread. See gw-libvirt.h for the contract. */
#include "gw-libvirt-private.h"

#include <stdlib.h>
#include <string.h>

#include "gw-log.h"

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
gw_libvirt_metadata_cb(virConnectPtr conn, virDomainPtr dom, int type, const char *nsuri,
                       void *opaque)
{
    /* only usbgw's element: a change of <title> or another tool's
     * namespace says nothing to usbgwd */
    if (type == VIR_DOMAIN_METADATA_ELEMENT && g_strcmp0(nsuri, GW_LIBVIRT_METADATA_NS) == 0)
        gw_libvirt_post_domain(opaque, GW_LIBVIRT_EVENT_METADATA, dom, NULL);
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
    if (lv->metadata_id >= 0 && virConnectDomainEventDeregisterAny(lv->conn, lv->metadata_id) < 0)
        g_debug("cannot deregister metadata-change events: %s", gw_libvirt_last_error_message());
    /* Once this returns the close callback is not running and will not be
     * called (libvirt runs it under the lock this takes). It fails harmlessly
     * if the callback already fired: libvirt forgets it after one call. */
    if (lv->close_link != NULL &&
        virConnectUnregisterCloseCallback(lv->conn, gw_libvirt_close_cb) < 0)
        g_debug("cannot unregister the close callback: %s", gw_libvirt_last_error_message());
    lv->lifecycle_id = -1;
    lv->removed_id = -1;
    lv->metadata_id = -1;
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
        if (failure == NULL) {
            /* libvirt before 3.0 has no such event: wishes are then read
             * when a VM starts only */
            lv->metadata_id =
                gw_libvirt_worker_register(lv, link, VIR_DOMAIN_EVENT_ID_METADATA_CHANGE,
                                           GW_LIBVIRT_EVENT_CB(gw_libvirt_metadata_cb));
            if (lv->metadata_id < 0)
                g_warning("no metadata-change events on %s (%s): a VM's usbgw metadata is read "
                          "when it starts only",
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

/* Live XML of @dom parsed into source paths, aliases and USB controller
 * models (@usb_models nullable). */
static gboolean
gw_libvirt_worker_redirdevs(GwLibvirt *lv, virDomainPtr dom, const gchar *what, GPtrArray *paths,
                            GPtrArray *aliases, GPtrArray *usb_models, GError **error)
{
    g_autofree gchar *xml = virDomainGetXMLDesc(dom, 0);
    g_autoptr(GError) parse_error = NULL;

    if (xml == NULL)
        return gw_libvirt_worker_fail(lv, error, what);
    if (!gw_libvirt_parse_domain(xml, paths, aliases, usb_models, &parse_error)) {
        g_set_error(error, GW_LIBVIRT_ERROR, GW_LIBVIRT_ERROR_FAILED,
                    "%s: cannot parse the live domain XML: %s", what, parse_error->message);
        return FALSE;
    }
    return TRUE;
}

/* The usbgw metadata of the running @dom into @entry's wishes (or
 * wishes_error). */
static void
gw_libvirt_worker_read_wishes(GwLibvirt *lv, virDomainPtr dom, GwLibvirtDomain *entry)
{
    g_autofree gchar *xml = virDomainGetMetadata(dom, VIR_DOMAIN_METADATA_ELEMENT,
                                                 GW_LIBVIRT_METADATA_NS, VIR_DOMAIN_AFFECT_LIVE);
    g_autoptr(GError) error = NULL;

    if (xml == NULL) {
        if (gw_libvirt_last_error_number() != VIR_ERR_NO_DOMAIN_METADATA)
            entry->wishes_error =
                g_strdup_printf("VM '%s': cannot read its usbgw metadata (%s): %s", entry->name,
                                GW_LIBVIRT_METADATA_NS, gw_libvirt_last_error_message());
        return;
    }
    if (!gw_libvirt_parse_metadata(xml, -1, entry->wishes, &error))
        entry->wishes_error = g_strdup_printf("VM '%s': usbgw metadata (%s) refused: %s",
                                              entry->name, GW_LIBVIRT_METADATA_NS, error->message);
}

/* add-usb-controller: the persistent definition of @dom (which has no
 * USB bus now) gets one, effective at its next start. */
static void
gw_libvirt_worker_add_usb_controller(GwLibvirt *lv, virDomainPtr dom, GwLibvirtDomain *entry)
{
    g_autofree gchar *xml = NULL;
    g_autofree gchar *edited = NULL;
    g_autoptr(GError) error = NULL;
    g_autoptr(virDomain) defined = NULL;

    if (virDomainIsPersistent(dom) != 1) {
        entry->usb_fix = g_strdup("not added: the domain is transient (it has no persistent "
                                  "definition to add a USB controller to)");
        return;
    }
    xml = virDomainGetXMLDesc(dom, VIR_DOMAIN_XML_INACTIVE | VIR_DOMAIN_XML_SECURE);
    if (xml == NULL) {
        entry->usb_fix = g_strdup_printf("not added: cannot read the persistent definition: %s",
                                         gw_libvirt_last_error_message());
        return;
    }
    edited = gw_libvirt_add_usb_controller(xml, &error);
    if (edited == NULL) {
        if (g_error_matches(error, G_IO_ERROR, G_IO_ERROR_EXISTS)) {
            /* added before (by usbgwd or an admin), not running yet */
            entry->usb_fixed = TRUE;
            entry->usb_fix = g_strdup_printf("the persistent definition has one already (%s): "
                                             "effective at the next start",
                                             error->message);
            return;
        }
        entry->usb_fix = g_strdup_printf("not added: %s", error->message);
        return;
    }
    defined = virDomainDefineXML(lv->conn, edited);
    if (defined == NULL) {
        entry->usb_fix = g_strdup_printf("not added: libvirt refused the edited definition: %s",
                                         gw_libvirt_last_error_message());
        return;
    }
    entry->usb_fixed = TRUE;
    entry->usb_fix = g_strdup("added <controller type='usb' model='" GW_LIBVIRT_USB_CONTROLLER_MODEL
                              "'/> to the persistent definition: effective at the next start");
}

/* Fills @entry (name and UUID set) from the running @dom: live redirdevs,
 * USB bus, metadata; with add-usb-controller, fixes a missing USB bus in
 * the persistent definition. */
static gboolean
gw_libvirt_worker_inspect(GwLibvirt *lv, virDomainPtr dom, GwLibvirtDomain *entry, GError **error)
{
    g_autoptr(GPtrArray) usb_models = g_ptr_array_new_with_free_func(g_free);
    g_autofree gchar *what =
        g_strdup_printf("cannot read the live XML of VM '%s' (%s)", entry->name, entry->uuid);

    entry->redirdev_paths = g_ptr_array_new_with_free_func(g_free);
    entry->wishes = g_ptr_array_new_with_free_func((GDestroyNotify)policy_wish_free);
    if (!gw_libvirt_worker_redirdevs(lv, dom, what, entry->redirdev_paths, NULL, usb_models, error))
        return FALSE;
    entry->usb_bus = g_strdup(gw_libvirt_usb_bus(usb_models));
    if (entry->usb_bus == NULL && g_atomic_int_get(&lv->add_usb_controller))
        gw_libvirt_worker_add_usb_controller(lv, dom, entry);
    gw_libvirt_worker_read_wishes(lv, dom, entry);
    return TRUE;
}

static GwLibvirtDomain *
gw_libvirt_domain_new(virDomainPtr dom)
{
    GwLibvirtDomain *entry = g_new0(GwLibvirtDomain, 1);
    char uuid[VIR_UUID_STRING_BUFLEN] = "";

    if (virDomainGetUUIDString(dom, uuid) < 0)
        uuid[0] = '\0';
    entry->name = g_strdup(virDomainGetName(dom));
    entry->uuid = g_strdup(uuid);
    return entry;
}

/* JOB_INSPECT: a domain that started or whose metadata changed, read and
 * posted as EVENT_INSPECTED (nothing when it no longer runs). */
static void
gw_libvirt_worker_inspect_job(GwLibvirt *lv, GwLibvirtJob *job)
{
    g_autoptr(GError) error = NULL;
    g_autoptr(virDomain) dom = NULL;
    g_autoptr(GwLibvirtDomain) entry = NULL;
    GwLibvirtEvent *event;

    if (lv->conn == NULL || job->uuid == NULL)
        return;
    dom = virDomainLookupByUUIDString(lv->conn, job->uuid);
    if (dom == NULL || virDomainIsActive(dom) != 1)
        return; /* gone or stopped: its stop event says so */
    entry = gw_libvirt_domain_new(dom);
    if (!gw_libvirt_worker_inspect(lv, dom, entry, &error)) {
        if (virDomainIsActive(dom) == 1)
            g_warning("%s", error->message);
        return;
    }
    event = gw_libvirt_event_new(GW_LIBVIRT_EVENT_INSPECTED);
    event->name = g_strdup(entry->name);
    event->uuid = g_strdup(entry->uuid);
    event->domain = g_steal_pointer(&entry);
    gw_libvirt_post(lv, event);
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
        g_autoptr(GwLibvirtDomain) entry = NULL;
        g_autoptr(GError) local_error = NULL;

        if (!ok)
            continue; /* only frees the rest */
        entry = gw_libvirt_domain_new(dom);
        if (!gw_libvirt_worker_inspect(lv, dom, entry, &local_error)) {
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
    g_autoptr(GPtrArray) usb_models = g_ptr_array_new_with_free_func(g_free);
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
    if (!gw_libvirt_worker_redirdevs(lv, dom, full, paths, NULL, usb_models, error))
        return FALSE;
    if (gw_libvirt_paths_find(paths, job->path, NULL)) {
        g_debug("%s already has a redirdev on %s", vm, job->path);
        return TRUE;
    }
    if (gw_libvirt_usb_bus(usb_models) == NULL) {
        /* QEMU would refuse the usb-redir device ("no USB bus"): say why */
        g_set_error(error, GW_LIBVIRT_ERROR, GW_LIBVIRT_ERROR_NO_USB_BUS,
                    "%s: it has no USB bus (<controller type='usb' model='none'/>), and a "
                    "usb-redir device needs one; add a USB controller, e.g. <controller "
                    "type='usb' model='qemu-xhci'/> (usbgwd.conf add-usb-controller=true does it "
                    "for the next start)",
                    full);
        return FALSE;
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

        if (!gw_libvirt_worker_redirdevs(lv, dom, "checking the unplug", paths, NULL, NULL,
                                         &error) ||
            !gw_libvirt_paths_find(paths, path, NULL))
            return; /* gone (or the VM is: same outcome) */
        g_usleep(GW_LIBVIRT_DETACH_POLL_INTERVAL_MS * G_TIME_SPAN_MILLISECOND);
    }
    gw_log_device(G_LOG_LEVEL_WARNING, NULL, vm, NULL,
                  "%s: the redirdev on %s is still present %d ms after the unplug request; "
                  "libvirt will report its removal later",
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
    if (!gw_libvirt_worker_redirdevs(lv, dom, full, paths, aliases, NULL, &local_error)) {
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
    case GW_LIBVIRT_JOB_INSPECT:
        gw_libvirt_worker_inspect_job(lv, job);
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

gpointer
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
