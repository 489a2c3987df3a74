/* How usbgwd serves a device: the binder's intents (claim, bind, unbind,
 * unclaim) carried out on attachments (gateway/serve) and libvirt
 * redirdevs (the plugger), and the "attach" audit once libvirt plugged a
 * device in. */
#include "gw-daemon-private.h"

#include "gw-device.h"
#include "gw-log.h"
#include "gw-usbgw-metrics.h"

void
gw_daemon_served_free(gpointer data)
{
    GwDaemonServed *served = data;
    gw_import_free(served->import);
    gw_attachment_free(served->attachment);
    g_free(served->export_peer);
    g_free(served->audited_vm);
    g_free(served);
}

const gchar *
gw_daemon_served_socket(GwDaemonServed *served)
{
    if (served == NULL)
        return NULL;
    if (served->import != NULL)
        return gw_import_get_socket_path(served->import);
    return served->attachment != NULL ? gw_attachment_get_socket_path(served->attachment) : NULL;
}

GwDaemonServed *
gw_daemon_lookup_served(GwDaemon *daemon, const gchar *id)
{
    GwDaemonServed *served = g_hash_table_lookup(daemon->served, id);
    if (served == NULL) {
        served = g_new0(GwDaemonServed, 1);
        g_hash_table_insert(daemon->served, g_strdup(id), served);
    }
    return served;
}

/* ---- redirdevs (libvirt) ---------------------------------------------------- */

/* libvirt plugged a device in (or refused): "attach" is recorded once. */
void
gw_daemon_plugged(const gchar *id, const gchar *vm, const GError *error, gpointer user_data)
{
    GwDaemon *daemon = user_data;
    const GwBinderDevice *dev = gw_binder_lookup(daemon->binder, id);
    GwDaemonServed *served = g_hash_table_lookup(daemon->served, id);

    if (error != NULL) {
        gw_usbgw_metrics_attach(GW_USBGW_ATTACH_FAILED, -1);
        if (dev != NULL)
            gw_daemon_audit(daemon, GW_AUDIT_ATTACH_FAILED, id, vm, "libvirt", error->message);
        return;
    }
    if (dev == NULL || served == NULL || g_strcmp0(dev->vm, vm) != 0 ||
        g_strcmp0(served->audited_vm, vm) == 0)
        return;
    g_free(served->audited_vm);
    served->audited_vm = g_strdup(vm);
    gw_log_device(G_LOG_LEVEL_MESSAGE, id, vm, NULL, "%s → vm %s: attached through libvirt", id,
                  vm);
    gw_daemon_audit(daemon, GW_AUDIT_ATTACH, id, vm, "libvirt", gw_daemon_served_socket(served));
}

/* Makes libvirt plug the device's socket into the running VM, if both are
 * known; QEMU then connects and the device appears in the guest. */
void
gw_daemon_libvirt_attach(GwDaemon *daemon, const gchar *id, const gchar *vm)
{
    GwInventoryDevice *inv = gw_inventory_lookup(daemon->inventory, id);
    GwDaemonServed *served = g_hash_table_lookup(daemon->served, id);
    const gchar *path = gw_daemon_served_socket(served);
    g_autofree gchar *slot_name = NULL;

    if (path == NULL || inv == NULL)
        return;
    slot_name = gw_daemon_slot_name(daemon, inv);
    gw_redirdev_plugger_plug_device(daemon->plugger, id, slot_name, vm,
                                    gw_binder_get_vm_uuid(daemon->binder, vm), path);
}

/* ---- the binder's intents --------------------------------------------------- */

static GwAttachment *
gw_daemon_attachment(GwDaemon *daemon, GwDaemonServed *served, const gchar *id)
{
    if (served->attachment == NULL)
        served->attachment = gw_attachment_new(gw_inventory_get_context(daemon->inventory), id);
    return served->attachment;
}

static gboolean
gw_daemon_op_claim(const gchar *id, gpointer user_data)
{
    GwDaemon *daemon = user_data;
    GwInventoryDevice *inv = gw_inventory_lookup(daemon->inventory, id);
    GwDaemonServed *served;
    g_autoptr(GError) error = NULL;

    /* another gateway's device: its exporter holds it */
    if (gw_daemon_is_remote(daemon, id))
        return TRUE;
    served = gw_daemon_lookup_served(daemon, id);
    if (inv == NULL || inv->usb == NULL)
        return FALSE;
    if (!gw_attachment_set_device(gw_daemon_attachment(daemon, served, id), inv->usb, &error)) {
        gw_log_device(G_LOG_LEVEL_WARNING, id, NULL, NULL, "%s", error->message);
        return FALSE;
    }
    return TRUE;
}

static gboolean
gw_daemon_op_unclaim(const gchar *id, gpointer user_data)
{
    GwDaemon *daemon = user_data;
    GwDaemonServed *served = g_hash_table_lookup(daemon->served, id);
    GwInventoryDevice *inv = gw_inventory_lookup(daemon->inventory, id);

    if (inv != NULL)
        gw_inventory_touch(inv);
    if (gw_daemon_is_remote(daemon, id)) {
        if (served != NULL)
            g_clear_pointer(&served->import, gw_import_free);
        return TRUE;
    }
    if (served == NULL || served->attachment == NULL)
        return FALSE;
    g_clear_pointer(&served->attachment, gw_attachment_free);
    return TRUE;
}

/* Serves the device on <rundir>/vm/<vm>/<slot>.sock; claims it first if
 * it is present. */
gboolean
gw_daemon_serve_bind(GwDaemon *daemon, const gchar *id, const gchar *vm, const gchar *actor)
{
    GwInventoryDevice *inv = gw_inventory_lookup(daemon->inventory, id);
    const GwBinderDevice *dev = gw_binder_lookup(daemon->binder, id);
    GwDaemonServed *served;
    g_autoptr(GError) error = NULL;
    g_autofree gchar *slot_name = NULL;
    g_autofree gchar *path = NULL;
    GwAttachment *attachment;

    if (gw_daemon_is_remote(daemon, id))
        return gw_daemon_import_bind(daemon, id, vm, actor);
    served = gw_daemon_lookup_served(daemon, id);
    g_return_val_if_fail(inv != NULL && dev != NULL, FALSE);
    if (g_strcmp0(dev->vm, vm) == 0 && served->attachment != NULL &&
        gw_attachment_get_socket_path(served->attachment) != NULL) {
        gw_daemon_libvirt_attach(daemon, id, vm);
        return TRUE;
    }
    attachment = gw_daemon_attachment(daemon, served, id);
    if (served->export_peer != NULL) {
        /* the VM comes first: another gateway's session on it ends */
        gw_log_device(G_LOG_LEVEL_MESSAGE, id, vm, NULL, "%s: taken from gateway %s for vm \"%s\"",
                      id, served->export_peer, vm);
        gw_attachment_end_peer(attachment);
        g_clear_pointer(&served->export_peer, g_free);
    }
    gw_attachment_set_access(attachment, &daemon->socket_access);
    if (inv->usb != NULL && !gw_attachment_set_device(attachment, inv->usb, &error)) {
        gw_log_device(G_LOG_LEVEL_WARNING, id, vm, NULL, "%s", error->message);
        g_clear_error(&error);
    }
    slot_name = gw_daemon_slot_name(daemon, inv);
    path = gw_redirdev_plugger_device_socket(daemon->plugger, vm, id, slot_name);
    if (!gw_attachment_bind(attachment, vm, path, &error)) {
        gw_log_device(G_LOG_LEVEL_WARNING, id, vm, NULL, "%s: %s", id, error->message);
        return FALSE;
    }
    gw_inventory_touch(inv);
    gw_log_device(G_LOG_LEVEL_MESSAGE, id, vm, NULL, "%s: bound to vm \"%s\", served on %s", id, vm,
                  path);
    /* with libvirt, "attach" is recorded once libvirt plugged it in */
    if (daemon->libvirt == NULL) {
        g_free(served->audited_vm);
        served->audited_vm = g_strdup(vm);
        gw_daemon_audit(daemon, GW_AUDIT_ATTACH, id, vm, actor, path);
    }
    gw_daemon_libvirt_attach(daemon, id, vm);
    return TRUE;
}

/* In cluster mode a pool key waits for its cluster lease first. */
static gboolean
gw_daemon_op_bind(const gchar *id, const gchar *vm, const gchar *actor, gpointer user_data)
{
    GwDaemon *daemon = user_data;

    if (gw_daemon_cluster_wait(daemon, id, vm))
        return TRUE;
    return gw_daemon_serve_bind(daemon, id, vm, actor);
}

static void
gw_daemon_op_unbind(const gchar *id, const gchar *vm, gboolean detach, gpointer user_data)
{
    GwDaemon *daemon = user_data;
    GwDaemonServed *served = gw_daemon_lookup_served(daemon, id);
    GwInventoryDevice *inv = gw_inventory_lookup(daemon->inventory, id);
    const gchar *uuid = gw_binder_get_vm_uuid(daemon->binder, vm);
    const gchar *path =
        served->attachment != NULL ? gw_attachment_get_socket_path(served->attachment) : NULL;

    gw_daemon_cluster_unbound(daemon, id, vm);
    if (gw_daemon_is_remote(daemon, id)) {
        gw_daemon_import_unbind(daemon, id, vm, detach);
        return;
    }
    if (detach && path != NULL)
        gw_redirdev_plugger_unplug(daemon->plugger, vm, uuid, path);
    if (served->attachment != NULL)
        gw_attachment_unbind(served->attachment);
    g_clear_pointer(&served->audited_vm, g_free);
    if (inv != NULL)
        gw_inventory_touch(inv);
}

static void
gw_daemon_op_event(GwBinderEvent event, const gchar *id, const gchar *vm, const gchar *actor,
                   const gchar *reason, gpointer user_data)
{
    GwDaemon *daemon = user_data;
    GwDaemonServed *served;

    switch (event) {
    case GW_BINDER_EVENT_DENY:
        gw_daemon_audit(daemon, GW_AUDIT_DENY, id, vm, actor, reason);
        break;
    case GW_BINDER_EVENT_ASSIGN:
        gw_daemon_audit(daemon, GW_AUDIT_ASSIGN, id, vm, actor, reason);
        break;
    case GW_BINDER_EVENT_RELEASE:
        gw_daemon_audit(daemon, GW_AUDIT_RELEASE, id, vm, actor, reason);
        break;
    case GW_BINDER_EVENT_DETACH:
        gw_daemon_audit(daemon, GW_AUDIT_DETACH, id, vm, actor, reason);
        break;
    case GW_BINDER_EVENT_WISH_DENIED:
        gw_daemon_audit(daemon, GW_AUDIT_WISH_DENIED, id, vm, actor, reason);
        break;
    case GW_BINDER_EVENT_KEPT:
        gw_daemon_audit(daemon, GW_AUDIT_DETACH, id, vm, actor, reason);
        served = g_hash_table_lookup(daemon->served, id);
        if (served != NULL)
            g_clear_pointer(&served->audited_vm, g_free);
        break;
    }
}

const GwBinderOps gw_daemon_binder_ops = {
    .claim = gw_daemon_op_claim,
    .unclaim = gw_daemon_op_unclaim,
    .bind = gw_daemon_op_bind,
    .unbind = gw_daemon_op_unbind,
    .event = gw_daemon_op_event,
};

gboolean
gw_daemon_path_has_peer(const gchar *path, gpointer user_data)
{
    GwDaemon *daemon = user_data;
    GHashTableIter iter;
    gpointer value;

    g_hash_table_iter_init(&iter, daemon->served);
    while (g_hash_table_iter_next(&iter, NULL, &value)) {
        GwDaemonServed *served = value;
        if (served->import != NULL &&
            g_strcmp0(gw_import_get_socket_path(served->import), path) == 0)
            return gw_import_is_attached(served->import);
        if (served->attachment != NULL &&
            g_strcmp0(gw_attachment_get_socket_path(served->attachment), path) == 0)
            return gw_attachment_has_peer(served->attachment);
    }
    return gw_share_registry_has_qemu(daemon->shares, path);
}
