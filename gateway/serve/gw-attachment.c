/* Attachments: a listening socket, the claimed device and the session of
 * the one connected peer. */
#include "gw-attachment.h"

#include <errno.h>
#include <unistd.h>
#include <netinet/in.h>
#include <gio/gunixsocketaddress.h>
#include <glib/gstdio.h>

#include "gw-log.h"
#include "gw-session.h"
#include "gw-usb.h"
#include "gw-usbgw-metrics.h"
#include "gw-vm-socket.h"
#include "gw-vm-handover.h"

/* A device another process holds (busy) is offered again this often, this
 * many times, before the peer is left without it. */
#define GW_ATTACHMENT_OFFER_RETRY_MS 500
#define GW_ATTACHMENT_OFFER_RETRIES  20
/* Interfaces beyond this are not claimed (USB allows 32 per config). */
#define GW_ATTACHMENT_MAX_INTERFACES 32

struct _GwAttachment {
    gchar *identity;              /* owned */
    gchar *socket_path;           /* owned, nullable: while bound */
    libusb_context *usb;          /* borrowed */
    GwVmListener *service;        /* owned, nullable: listening only while bound to a VM */
    libusb_device *device;        /* owned ref, nullable: present device */
    libusb_device_handle *handle; /* owned, nullable: held while no peer has it */
    guint32 detached;             /* interfaces whose kernel driver we detached */
    guint n_interfaces;
    GSocketConnection *peer;           /* owned, nullable */
    GSocketConnection *migration_peer; /* owned, nullable: a pending migration destination */
    pid_t peer_pid;            /* the peer's, 0: unknown (read when it connected: a closed socket
                                  has no credentials) */
    pid_t migration_pid;       /* the pending destination's */
    GwVmMigratedPids migrated; /* the last migrations' source QEMUs */
    GwSession *session;        /* owned, nullable */
    guint peer_count;
    GwAttachmentPeerEnded peer_ended; /* nullable */
    gpointer peer_ended_data;
    guint offer_retry_id; /* GSource id, 0 when no retry is pending */
    guint offer_retries;
    const GwVmSocketAccess *access; /* borrowed: who may connect */
    gchar *vm;                      /* owned, nullable: while bound */
    gint64 bound_at;                /* monotonic µs of the bind: the attach's duration */
    gboolean attach_counted;        /* this binding's first session was counted */
};

/* Logs @format about the attachment's device and VM (gw-log.h). */
#define gw_attachment_log(attachment, level, message_id, ...)                                      \
    gw_log_device((level), (attachment)->identity, (attachment)->vm, (message_id), __VA_ARGS__)

/* Before gw_attachment_set_access(): root only. */
static const GwVmSocketAccess gw_attachment_root_only = {
    .uid = (uid_t)-1,
    .gid = (gid_t)-1,
    .check = GW_VM_PEER_CHECK_UID,
};

/* Opens the device, detaches kernel drivers and claims every interface, so
 * the host never binds it while the VM is not using it. */
static gboolean
gw_attachment_claim(GwAttachment *attachment, GError **error)
{
    struct libusb_config_descriptor *config = NULL;
    int rc;

    if (attachment->handle != NULL || attachment->device == NULL)
        return TRUE;
    rc = libusb_open(attachment->device, &attachment->handle);
    if (rc != LIBUSB_SUCCESS) {
        g_autofree gchar *what = g_strdup_printf("%s: cannot open", attachment->identity);
        return gw_usb_set_error(error, rc, what);
    }
    attachment->n_interfaces = 0;
    /* the active configuration's interfaces; when the device reads as
     * unconfigured for a moment (sysfs' bConfigurationValue is empty
     * while a reset or a configuration change settles, as after a peer's
     * session), the first configuration's: claiming nothing would leave
     * the device to the host */
    rc = libusb_get_active_config_descriptor(attachment->device, &config);
    if (rc != LIBUSB_SUCCESS) {
        g_debug("%s: no active configuration (%s); claiming the first one's interfaces",
                attachment->identity, libusb_strerror(rc));
        rc = libusb_get_config_descriptor(attachment->device, 0, &config);
    }
    if (rc == LIBUSB_SUCCESS) {
        attachment->n_interfaces = MIN(config->bNumInterfaces, GW_ATTACHMENT_MAX_INTERFACES);
        libusb_free_config_descriptor(config);
    }
    for (guint i = 0; i < attachment->n_interfaces; i++) {
        if (libusb_kernel_driver_active(attachment->handle, (int)i) == 1) {
            rc = libusb_detach_kernel_driver(attachment->handle, (int)i);
            if (rc == LIBUSB_SUCCESS)
                attachment->detached |= 1u << i;
            else
                gw_attachment_log(attachment, G_LOG_LEVEL_WARNING, NULL,
                                  "%s: cannot detach the kernel driver of interface %u: %s",
                                  attachment->identity, i, libusb_strerror(rc));
        }
        rc = libusb_claim_interface(attachment->handle, (int)i);
        if (rc != LIBUSB_SUCCESS)
            gw_attachment_log(attachment, G_LOG_LEVEL_WARNING, NULL,
                              "%s: cannot claim interface %u: %s", attachment->identity, i,
                              libusb_strerror(rc));
    }
    gw_attachment_log(attachment, G_LOG_LEVEL_MESSAGE, NULL, "%s: claimed (%u interfaces)",
                      attachment->identity, attachment->n_interfaces);
    return TRUE;
}

/* Hands the device back to the host: interfaces released, the kernel
 * drivers we detached attached again. */
static void
gw_attachment_unclaim(GwAttachment *attachment)
{
    if (attachment->handle == NULL)
        return;
    for (guint i = 0; i < attachment->n_interfaces; i++) {
        libusb_release_interface(attachment->handle, (int)i);
        if (attachment->detached & (1u << i))
            libusb_attach_kernel_driver(attachment->handle, (int)i);
    }
    attachment->detached = 0;
    libusb_close(attachment->handle);
    attachment->handle = NULL;
    gw_attachment_log(attachment, G_LOG_LEVEL_MESSAGE, NULL, "%s: handed back to the host",
                      attachment->identity);
}

/* Gives the held handle to the session; usbredirhost owns it from here. */
static void gw_attachment_offer(GwAttachment *attachment);

static gboolean
gw_attachment_offer_retry(gpointer data)
{
    GwAttachment *attachment = data;
    g_autoptr(GError) error = NULL;

    attachment->offer_retry_id = 0;
    if (attachment->session == NULL || attachment->device == NULL)
        return G_SOURCE_REMOVE;
    if (!gw_attachment_claim(attachment, &error)) {
        gw_attachment_log(attachment, G_LOG_LEVEL_WARNING, NULL, "%s", error->message);
        return G_SOURCE_REMOVE;
    }
    gw_attachment_offer(attachment);
    return G_SOURCE_REMOVE;
}

static void
gw_attachment_offer(GwAttachment *attachment)
{
    g_autoptr(GError) error = NULL;

    if (attachment->session == NULL || attachment->handle == NULL)
        return;
    /* usbredirhost closes the handle when it fails */
    if (gw_session_set_device(attachment->session, g_steal_pointer(&attachment->handle), &error)) {
        attachment->offer_retries = 0;
        gw_attachment_log(attachment, G_LOG_LEVEL_INFO, NULL, "%s: device offered to the peer",
                          attachment->identity);
        return;
    }
    if (attachment->offer_retries >= GW_ATTACHMENT_OFFER_RETRIES) {
        gw_attachment_log(attachment, G_LOG_LEVEL_WARNING, NULL, "%s (gave up after %u tries)",
                          error->message, attachment->offer_retries);
        return;
    }
    attachment->offer_retries++;
    gw_attachment_log(attachment, G_LOG_LEVEL_MESSAGE, NULL, "%s; trying again in %d ms",
                      error->message, GW_ATTACHMENT_OFFER_RETRY_MS);
    attachment->offer_retry_id =
        g_timeout_add(GW_ATTACHMENT_OFFER_RETRY_MS, gw_attachment_offer_retry, attachment);
}

static void
gw_attachment_end_session(GwAttachment *attachment)
{
    g_clear_handle_id(&attachment->offer_retry_id, g_source_remove);
    attachment->offer_retries = 0;
    g_clear_pointer(&attachment->session, gw_session_free);
    g_clear_object(&attachment->migration_peer); /* the session closed it */
    if (attachment->peer != NULL) {
        g_io_stream_close(G_IO_STREAM(attachment->peer), NULL, NULL);
        g_clear_object(&attachment->peer);
    }
}

static void
gw_attachment_session_closed(GwSession *session, const gchar *reason, gpointer user_data)
{
    GwAttachment *attachment = user_data;
    g_autoptr(GError) error = NULL;
    /* @reason is the session's, freed with it below */
    g_autofree gchar *why = g_strdup(reason);

    gw_attachment_log(attachment, G_LOG_LEVEL_MESSAGE, NULL, "%s: peer session ended: %s",
                      attachment->identity, why);
    gw_attachment_end_session(attachment);
    /* usbredirhost closed the handle: claim again for the next peer */
    if (!gw_attachment_claim(attachment, &error))
        gw_attachment_log(attachment, G_LOG_LEVEL_WARNING, NULL, "%s", error->message);
    if (attachment->peer_ended != NULL)
        attachment->peer_ended(attachment, why, attachment->peer_ended_data);
}

/* Starts a session for @connection or on @transport, the one peer (see
 * the header). */
static gboolean
gw_attachment_start_session(GwAttachment *attachment, GSocketConnection *connection,
                            const GwTransport *transport, gpointer transport_data,
                            const gchar *where, GError **error)
{
    g_autofree gchar *label = NULL;

    if (attachment->session != NULL) {
        g_set_error(error, G_IO_ERROR, G_IO_ERROR_BUSY,
                    "%s: refused a second peer %s (one peer per device)", attachment->identity,
                    where);
        return FALSE;
    }
    label = g_strdup_printf("%s#%u", attachment->identity, ++attachment->peer_count);
    if (connection != NULL)
        attachment->session = gw_session_new(
            attachment->usb, g_socket_connection_get_socket(connection), label,
            attachment->identity, attachment->vm, gw_attachment_session_closed, attachment, error);
    else
        attachment->session = gw_session_new_with_transport(
            attachment->usb, transport, transport_data, label, attachment->identity, attachment->vm,
            gw_attachment_session_closed, attachment, error);
    if (attachment->session == NULL)
        return FALSE;
    if (connection != NULL) {
        attachment->peer = g_object_ref(connection);
        attachment->peer_pid = gw_vm_socket_peer_pid(connection);
    }
    if (attachment->vm != NULL) {
        /* a VM's QEMU: the attach of this binding, timed once */
        gw_attachment_log(attachment, G_LOG_LEVEL_MESSAGE, GW_LOG_ID_SESSION,
                          "%s: peer connected %s", attachment->identity, where);
        gw_usbgw_metrics_attach(GW_USBGW_ATTACH_OK,
                                attachment->attach_counted
                                    ? -1
                                    : (gdouble)(g_get_monotonic_time() - attachment->bound_at) /
                                          G_USEC_PER_SEC);
        attachment->attach_counted = TRUE;
    } else {
        gw_attachment_log(attachment, G_LOG_LEVEL_MESSAGE, NULL, "%s: peer connected %s",
                          attachment->identity, where);
    }
    gw_attachment_offer(attachment);
    return TRUE;
}

/* The session's migration destination took over, or was dropped. */
static void
gw_attachment_handover(GwSession *session, GwPeerHandoverResult what, const gchar *detail,
                       gpointer user_data)
{
    GwAttachment *attachment = user_data;

    if (what == GW_PEER_HANDOVER_DONE) {
        /* the session closed the source's socket */
        g_clear_object(&attachment->peer);
        attachment->peer = g_steal_pointer(&attachment->migration_peer);
    } else {
        g_clear_object(&attachment->migration_peer);
    }
    gw_vm_socket_handover_ended(attachment->access, &attachment->migrated, &attachment->peer_pid,
                                attachment->migration_pid, attachment->identity,
                                attachment->identity, attachment->vm, attachment->socket_path, what,
                                detail);
}

/* A second connection while a VM's QEMU is the peer: a live migration's
 * destination, held until it writes, if it may use the socket and no
 * other destination is pending. */
static void
gw_attachment_second_peer(GwAttachment *attachment, GSocketConnection *connection)
{
    g_autoptr(GError) error = NULL;

    pid_t pid = gw_vm_socket_peer_pid(connection);

    if (attachment->vm == NULL || attachment->peer == NULL) {
        g_set_error(&error, G_IO_ERROR, G_IO_ERROR_BUSY, "one peer per device");
    } else if (gw_vm_migrated_pids_has(&attachment->migrated, pid)) {
        g_set_error(&error, G_IO_ERROR, G_IO_ERROR_BUSY,
                    "pid %d is the QEMU the device migrated away from", (int)pid);
    } else if (gw_session_add_destination(attachment->session,
                                          g_socket_connection_get_socket(connection), &error)) {
        attachment->migration_peer = g_object_ref(connection);
        attachment->migration_pid = pid;
        gw_session_set_handover_func(attachment->session, gw_attachment_handover, attachment);
        gw_attachment_log(attachment, G_LOG_LEVEL_MESSAGE, GW_LOG_ID_SESSION,
                          "%s: a migration destination connected on %s; it takes over once its "
                          "VM runs",
                          attachment->identity, attachment->socket_path);
        return;
    }
    gw_attachment_log(attachment, G_LOG_LEVEL_WARNING, GW_LOG_ID_PEER_REFUSED,
                      "%s: refused a second peer on %s (%s)", attachment->identity,
                      attachment->socket_path, error->message);
    gw_usbgw_metrics_attach(GW_USBGW_ATTACH_REFUSED, -1);
    g_io_stream_close(G_IO_STREAM(connection), NULL, NULL);
}

static void
gw_attachment_incoming(GSocketConnection *connection, gpointer user_data)
{
    GwAttachment *attachment = user_data;
    g_autoptr(GError) error = NULL;
    g_autofree gchar *where = g_strdup_printf("on %s", attachment->socket_path);

    if (!gw_vm_socket_peer_allowed(attachment->access, connection, attachment->vm,
                                   attachment->identity, attachment->socket_path)) {
        gw_usbgw_metrics_attach(GW_USBGW_ATTACH_REFUSED, -1);
        g_io_stream_close(G_IO_STREAM(connection), NULL, NULL);
        return;
    }
    if (attachment->session != NULL) {
        gw_attachment_second_peer(attachment, connection);
        return;
    }
    if (gw_vm_migrated_pids_has(&attachment->migrated, gw_vm_socket_peer_pid(connection))) {
        gw_attachment_log(attachment, G_LOG_LEVEL_MESSAGE, GW_LOG_ID_PEER_REFUSED,
                          "%s: refused a peer on %s: it is a QEMU the device migrated away from",
                          attachment->identity, attachment->socket_path);
        gw_usbgw_metrics_attach(GW_USBGW_ATTACH_REFUSED, -1);
        g_io_stream_close(G_IO_STREAM(connection), NULL, NULL);
        return;
    }
    if (!gw_attachment_start_session(attachment, connection, NULL, NULL, where, &error)) {
        gw_attachment_log(attachment, G_LOG_LEVEL_WARNING, NULL, "%s", error->message);
        gw_usbgw_metrics_attach(GW_USBGW_ATTACH_FAILED, -1);
        g_io_stream_close(G_IO_STREAM(connection), NULL, NULL);
    }
}

gboolean
gw_attachment_serve_peer(GwAttachment *attachment, GSocketConnection *connection,
                         const gchar *where, GError **error)
{
    g_return_val_if_fail(attachment->service == NULL, FALSE);
    return gw_attachment_start_session(attachment, connection, NULL, NULL, where, error);
}

gboolean
gw_attachment_serve_transport(GwAttachment *attachment, const GwTransport *transport,
                              gpointer transport_data, const gchar *where, GError **error)
{
    g_return_val_if_fail(attachment->service == NULL, FALSE);
    return gw_attachment_start_session(attachment, NULL, transport, transport_data, where, error);
}

void
gw_attachment_transport_ready(GwAttachment *attachment, GIOCondition condition)
{
    if (attachment->session != NULL)
        gw_session_transport_ready(attachment->session, condition);
}

void
gw_attachment_set_peer_ended(GwAttachment *attachment, GwAttachmentPeerEnded ended,
                             gpointer user_data)
{
    attachment->peer_ended = ended;
    attachment->peer_ended_data = user_data;
}

void
gw_attachment_end_peer(GwAttachment *attachment)
{
    g_autoptr(GError) error = NULL;

    if (attachment->session == NULL)
        return;
    gw_attachment_end_session(attachment);
    if (!gw_attachment_claim(attachment, &error))
        gw_attachment_log(attachment, G_LOG_LEVEL_WARNING, NULL, "%s", error->message);
}

GwAttachment *
gw_attachment_new(libusb_context *usb, const gchar *identity)
{
    GwAttachment *attachment = g_new0(GwAttachment, 1);
    attachment->identity = g_strdup(identity);
    attachment->usb = usb;
    attachment->access = &gw_attachment_root_only;
    return attachment;
}

void
gw_attachment_set_access(GwAttachment *attachment, const GwVmSocketAccess *access)
{
    attachment->access = access;
}

gboolean
gw_attachment_bind(GwAttachment *attachment, const gchar *vm, const gchar *socket_path,
                   GError **error)
{
    if (g_strcmp0(attachment->socket_path, socket_path) == 0)
        return TRUE;
    gw_attachment_unbind(attachment);
    attachment->service = gw_vm_socket_listen(attachment->access, socket_path,
                                              gw_attachment_incoming, attachment, error);
    if (attachment->service == NULL)
        return FALSE;
    attachment->socket_path = g_strdup(socket_path);
    attachment->vm = g_strdup(vm);
    attachment->bound_at = g_get_monotonic_time();
    attachment->attach_counted = FALSE;
    return TRUE;
}

void
gw_attachment_unbind(GwAttachment *attachment)
{
    if (attachment->service == NULL)
        return;
    g_clear_pointer(&attachment->service, gw_vm_listener_free);
    g_unlink(attachment->socket_path);
    g_clear_pointer(&attachment->socket_path, g_free);
    g_clear_pointer(&attachment->vm, g_free);
    /* usbredirhost closes the handle: the device stays claimed */
    gw_attachment_end_peer(attachment);
}

gboolean
gw_attachment_set_device(GwAttachment *attachment, libusb_device *device, GError **error)
{
    if (attachment->device != device) {
        gw_attachment_device_left(attachment);
        attachment->device = libusb_ref_device(device);
    }
    if (attachment->session != NULL && gw_session_has_device(attachment->session))
        return TRUE;
    if (!gw_attachment_claim(attachment, error))
        return FALSE;
    gw_attachment_offer(attachment);
    return TRUE;
}

void
gw_attachment_device_left(GwAttachment *attachment)
{
    if (attachment->device == NULL)
        return;
    if (attachment->session != NULL && gw_session_has_device(attachment->session))
        gw_session_clear_device(attachment->session);
    if (attachment->handle != NULL) {
        libusb_close(attachment->handle);
        attachment->handle = NULL;
        attachment->detached = 0;
    }
    g_clear_pointer(&attachment->device, libusb_unref_device);
}

const gchar *
gw_attachment_get_socket_path(GwAttachment *attachment)
{
    return attachment->socket_path;
}

gboolean
gw_attachment_has_peer(GwAttachment *attachment)
{
    return attachment->session != NULL;
}

gboolean
gw_attachment_is_migrating(GwAttachment *attachment)
{
    return attachment->session != NULL && gw_session_is_migrating(attachment->session);
}

void
gw_attachment_free(GwAttachment *attachment)
{
    if (attachment == NULL)
        return;
    if (attachment->service != NULL) {
        gw_vm_listener_free(attachment->service);
        g_unlink(attachment->socket_path);
    }
    gw_attachment_end_session(attachment);
    /* A session's usbredirhost closed the handle without reattaching the
     * drivers we had detached: open once more to give them back. */
    if (attachment->handle == NULL && attachment->device != NULL && attachment->detached != 0 &&
        libusb_open(attachment->device, &attachment->handle) != LIBUSB_SUCCESS)
        attachment->handle = NULL;
    gw_attachment_unclaim(attachment);
    g_clear_pointer(&attachment->device, libusb_unref_device);
    g_free(attachment->identity);
    g_free(attachment->socket_path);
    g_free(attachment->vm);
    g_free(attachment);
}
