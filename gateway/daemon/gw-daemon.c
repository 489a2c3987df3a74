/* usbgwd's wiring: the inventory's hotplug and libvirt's lifecycle events
 * go to the binder (gateway/binding), whose intents — claim, bind, unbind,
 * unclaim — gw-daemon-serve.c carries out on attachments (gateway/serve)
 * and libvirt redirdevs; the state store and the audit trail record the
 * outcome. Commands: gw-daemon-commands.c; shares: gw-daemon-shares.c.
 *
 * Teardown order (gw_daemon_free), each step before what it uses:
 *   1. the metrics listener and collector (no scrape reads what goes),
 *      cancel pending libvirt calls, stop hotplug delivery (no event can
 *      reach the daemon while it is taken apart);
 *   2. the redirdev plugger, libvirt (its threads), shares (workers and
 *      proxies; freeing them records nothing);
 *   3. the control socket (it spins the main context to close clients);
 *   4. attachments (they hold libusb handles), then the inventory (the
 *      libusb context and its event thread);
 *   5. binder, audit, state. */
#include "gw-daemon-private.h"

#include "gw-log.h"
#include "gw-redirdev-plugger.h"
#include "gw-users.h"

gchar *
gw_daemon_now(void)
{
    g_autoptr(GDateTime) now = g_date_time_new_now_utc();
    return g_date_time_format_iso8601(now);
}

gchar *
gw_daemon_rule_of(const PolicyDecision *decision)
{
    return decision->file != NULL ? g_strdup_printf("%s:%u", decision->file, decision->line) : NULL;
}

void
gw_daemon_record(GwDaemon *daemon, const GwAuditEvent *record)
{
    g_autoptr(JsonNode) node = gw_audit_record(daemon->audit, record);
    gw_control_broadcast(daemon->control, node);
}

void
gw_daemon_audit(GwDaemon *daemon, GwAuditKind event, const gchar *id, const gchar *vm,
                const gchar *actor, const gchar *reason)
{
    const GwBinderDevice *dev = id != NULL ? gw_binder_lookup(daemon->binder, id) : NULL;
    g_autofree gchar *rule = dev != NULL ? gw_daemon_rule_of(&dev->decision) : NULL;
    GwAuditEvent record = {
        .event = event,
        .device_id = id,
        .device = dev != NULL ? dev->desc : NULL,
        .vm = vm,
        .vm_uuid = vm != NULL ? gw_binder_get_vm_uuid(daemon->binder, vm) : NULL,
        .rule = dev != NULL && dev->manual_vm == NULL ? rule : NULL,
        .actor = actor,
        .reason = reason,
    };
    gw_daemon_record(daemon, &record);
}

void
gw_daemon_save_state(GwDaemon *daemon)
{
    g_autoptr(GwBinderState) bindings = gw_binder_save(daemon->binder);
    g_autoptr(GError) error = NULL;

    gw_daemon_sync_exports(daemon);
    if (daemon->saved_bindings == NULL ||
        !gw_binder_state_equal(bindings, daemon->saved_bindings)) {
        gw_state_store_set_assignments(daemon->state, bindings->assignments);
        gw_state_store_set_released(daemon->state, bindings->released);
        gw_state_store_set_leases(daemon->state, bindings->leases);
        gw_binder_state_free(daemon->saved_bindings);
        daemon->saved_bindings = g_steal_pointer(&bindings);
    }
    gw_daemon_save_shares(daemon);
    if (!gw_state_store_flush(daemon->state, &error))
        g_warning("cannot save state: %s", error->message);
}

/* ---- events ----------------------------------------------------------------- */

static void
gw_daemon_device_arrived(GwInventoryDevice *device, gpointer user_data)
{
    GwDaemon *daemon = user_data;
    gw_binder_device_arrived(daemon->binder, device->id, device->desc);
    gw_daemon_save_state(daemon);
}

static void
gw_daemon_device_left(GwInventoryDevice *device, gpointer user_data)
{
    GwDaemon *daemon = user_data;
    GwDaemonServed *served = g_hash_table_lookup(daemon->served, device->id);

    if (served != NULL && served->attachment != NULL)
        gw_attachment_device_left(served->attachment);
    gw_binder_device_left(daemon->binder, device->id);
    gw_daemon_save_state(daemon);
}

static const GwInventoryCallbacks gw_daemon_inventory_callbacks = {
    .arrived = gw_daemon_device_arrived,
    .left = gw_daemon_device_left,
};

static void
gw_daemon_vm_libvirt_free(gpointer data)
{
    GwDaemonVmLibvirt *info = data;
    g_free(info->usb_bus);
    g_free(info->usb_fix);
    g_free(info->metadata_error);
    g_free(info);
}

void
gw_daemon_vm_inspected(GwDaemon *daemon, const GwLibvirtDomain *domain, const gchar *actor)
{
    GwDaemonVmLibvirt *old = g_hash_table_lookup(daemon->vm_libvirt, domain->name);
    GwDaemonVmLibvirt *info = g_new0(GwDaemonVmLibvirt, 1);
    gboolean said =
        old != NULL && old->usb_bus == NULL && g_strcmp0(old->usb_fix, domain->usb_fix) == 0;

    info->usb_bus = g_strdup(domain->usb_bus);
    info->usb_fix = g_strdup(domain->usb_fix);
    info->metadata_error = g_strdup(domain->wishes_error);
    if (domain->wishes_error != NULL &&
        (old == NULL || g_strcmp0(old->metadata_error, domain->wishes_error) != 0)) {
        g_warning("%s", domain->wishes_error);
        gw_daemon_audit(daemon, GW_AUDIT_WISH_DENIED, NULL, domain->name, actor,
                        domain->wishes_error);
    }
    /* said once per start (and again when the fix changed) */
    if (domain->usb_bus == NULL && !said) {
        g_autofree gchar *why = g_strdup_printf(
            "vm \"%s\" has no USB controller a usb-redir device can be plugged into "
            "(<controller type='usb' model='none'/>): usbgwd cannot attach devices to it%s",
            domain->name,
            domain->usb_fix == NULL ? "; add one, or set add-usb-controller=true in usbgwd.conf"
                                    : "");
        g_warning("%s", why);
        gw_daemon_audit(daemon, GW_AUDIT_NO_USB_BUS, NULL, domain->name, actor, why);
        if (domain->usb_fix != NULL) {
            g_autofree gchar *fix = g_strdup_printf("vm \"%s\": %s", domain->name, domain->usb_fix);
            if (domain->usb_fixed)
                g_message("%s", fix);
            else
                g_warning("%s", fix);
            if (domain->usb_fixed && g_str_has_prefix(domain->usb_fix, "added"))
                gw_daemon_audit(daemon, GW_AUDIT_USB_CONTROLLER, NULL, domain->name, actor,
                                domain->usb_fix);
        }
    }
    g_hash_table_replace(daemon->vm_libvirt, g_strdup(domain->name), info);
    gw_binder_set_wishes(daemon->binder, domain->name, domain->wishes, actor);
}

void
gw_daemon_vm_started(GwDaemon *daemon, const gchar *name, const gchar *uuid, const gchar *actor)
{
    gw_binder_vm_started(daemon->binder, name, uuid, actor);
    gw_share_registry_vm_started(daemon->shares, name);
}

void
gw_daemon_vm_stopped(GwDaemon *daemon, const gchar *name, const gchar *actor)
{
    gw_daemon_migrate_vm_stopped(daemon, name);
    /* libvirt stops a VM that migrated away; its device stays here for
     * it, relayed to its new host */
    if (gw_daemon_vm_is_away(daemon, name)) {
        g_message("vm \"%s\" stopped here but runs on another host: its device stays bound", name);
        return;
    }
    if (!gw_binder_vm_is_running(daemon->binder, name))
        return;
    gw_share_registry_unshare(daemon->shares, name, actor, "vm stopped");
    gw_binder_vm_stopped(daemon->binder, name, actor);
    g_hash_table_remove(daemon->vm_libvirt, name);
}

static void
gw_daemon_reconcile_done(GObject *source, GAsyncResult *result, gpointer user_data)
{
    GwDaemon *daemon = user_data;
    g_autoptr(GError) error = NULL;
    /* _finish does not use its GwLibvirt: safe even after the daemon
     * freed it, and then the error is CANCELLED and @daemon is not used */
    g_autoptr(GPtrArray) domains = gw_libvirt_list_running_finish(NULL, result, &error);
    g_autoptr(GHashTable) running = g_hash_table_new(g_str_hash, g_str_equal);
    g_autoptr(GPtrArray) known = NULL;

    if (domains == NULL) {
        if (!g_error_matches(error, G_IO_ERROR, G_IO_ERROR_CANCELLED))
            g_warning("cannot list running VMs: %s", error->message);
        return;
    }
    for (guint i = 0; i < domains->len; i++) {
        GwLibvirtDomain *domain = g_ptr_array_index(domains, i);
        g_hash_table_add(running, domain->name);
        gw_redirdev_plugger_unplug_stale(daemon->plugger, domain, gw_daemon_path_has_peer, daemon);
        gw_daemon_vm_inspected(daemon, domain, "reconcile");
        gw_daemon_vm_started(daemon, domain->name, domain->uuid, "reconcile");
    }
    known = gw_binder_list_vms(daemon->binder);
    for (guint i = 0; i < known->len; i++) {
        g_autofree gchar *name = g_strdup(g_ptr_array_index(known, i));
        if (!g_hash_table_contains(running, name))
            gw_daemon_vm_stopped(daemon, name, "reconcile");
    }
    /* every running VM is known now: keys kept for VMs that did not come
     * back since the restart are free */
    gw_binder_settle(daemon->binder);
    gw_daemon_save_state(daemon);
}

static void
gw_daemon_libvirt_connected(gboolean up, gpointer user_data)
{
    GwDaemon *daemon = user_data;
    if (!up) {
        g_warning("libvirt connection lost; reconnecting");
        return;
    }
    g_message("libvirt %s connected; reconciling with running VMs",
              gw_libvirt_get_uri(daemon->libvirt));
    gw_libvirt_list_running_async(daemon->libvirt, daemon->cancellable, gw_daemon_reconcile_done,
                                  daemon);
}

static void
gw_daemon_libvirt_started(const gchar *name, const gchar *uuid, gpointer user_data)
{
    gw_daemon_vm_started(user_data, name, uuid, "libvirt");
    gw_daemon_save_state(user_data);
}

static void
gw_daemon_libvirt_inspected(const GwLibvirtDomain *domain, gpointer user_data)
{
    GwDaemon *daemon = user_data;

    /* it may have stopped since the worker read it: then its stop event
     * has come already */
    if (!gw_binder_vm_is_running(daemon->binder, domain->name))
        return;
    gw_daemon_vm_inspected(daemon, domain, "libvirt");
    gw_daemon_save_state(daemon);
}

static void
gw_daemon_libvirt_stopped(const gchar *name, const gchar *uuid, gpointer user_data)
{
    gw_daemon_vm_stopped(user_data, name, "libvirt");
    gw_daemon_save_state(user_data);
}

static void
gw_daemon_libvirt_removed(const gchar *name, const gchar *uuid, const gchar *alias,
                          gpointer user_data)
{
    GwDaemon *daemon = user_data;
    const gchar *id = gw_redirdev_plugger_lookup_alias(daemon->plugger, name, alias);
    const GwBinderDevice *dev = id != NULL ? gw_binder_lookup(daemon->binder, id) : NULL;

    if (dev == NULL || g_strcmp0(dev->vm, name) != 0)
        return;
    gw_log_device(G_LOG_LEVEL_MESSAGE, dev->id, name, NULL,
                  "%s: its redirdev was removed from vm \"%s\" by someone else", dev->id, name);
    gw_daemon_audit(daemon, GW_AUDIT_DETACH, dev->id, name, "libvirt",
                    "redirdev removed outside usbgwd");
}

/* ---- life cycle ------------------------------------------------------------- */

GwDaemon *
gw_daemon_new(const GwConfig *config, GError **error)
{
    g_autoptr(GwDaemon) daemon = g_new0(GwDaemon, 1);

    gw_config_copy(&daemon->config, config);
    daemon->served = g_hash_table_new_full(g_str_hash, g_str_equal, g_free, gw_daemon_served_free);
    gw_daemon_migrate_init(daemon);
    daemon->vm_libvirt =
        g_hash_table_new_full(g_str_hash, g_str_equal, g_free, gw_daemon_vm_libvirt_free);
    daemon->started = gw_daemon_now();
    daemon->socket_access.uid = (uid_t)-1;
    daemon->socket_access.gid = (gid_t)-1;
    daemon->cancellable = g_cancellable_new();
    daemon->inventory = gw_inventory_new(g_main_context_default(), error);
    if (daemon->inventory == NULL)
        return NULL;
    return g_steal_pointer(&daemon);
}

/* A process that is not the VM's QEMU tried a VM socket: GwVmSocketRefused. */
static void
gw_daemon_peer_refused(const gchar *vm, const gchar *device_id, const gchar *path,
                       const gchar *actor, const gchar *reason, gpointer user_data)
{
    GwDaemon *daemon = user_data;
    g_autofree gchar *why = g_strdup_printf("%s: %s", path, reason);

    gw_daemon_audit(daemon, GW_AUDIT_PEER_REFUSED, device_id, vm, actor, why);
}

/* socket-user / socket-group: names to ids, once, at start; with
 * vm-peer-check, who may use the VM sockets. */
static gboolean
gw_daemon_resolve_access(GwDaemon *daemon, GError **error)
{
    GwVmSocketAccess *access = &daemon->socket_access;
    g_autoptr(GError) local_error = NULL;

    access->uid = (uid_t)-1;
    access->gid = (gid_t)-1;
    access->check = daemon->config.vm_peer_check;
    access->pid_file = g_strdup(daemon->config.vm_pid_file);
    access->refused = gw_daemon_peer_refused;
    access->migrated = gw_daemon_migrated;
    access->user_data = daemon;
    if (daemon->config.socket_user != NULL) {
        g_autoptr(GwUser) user = gw_users_lookup(daemon->config.socket_user, &local_error);
        if (user == NULL) {
            g_set_error(error, G_IO_ERROR, G_IO_ERROR_NOT_FOUND,
                        "socket-user '%s' is not a user on this host", daemon->config.socket_user);
            return FALSE;
        }
        access->uid = user->uid;
        access->gid = user->gid;
    }
    if (daemon->config.socket_group != NULL &&
        !gw_users_group_id(daemon->config.socket_group, &access->gid, &local_error)) {
        g_set_error(error, G_IO_ERROR, G_IO_ERROR_NOT_FOUND,
                    "socket-group '%s' is not a group on this host", daemon->config.socket_group);
        return FALSE;
    }
    if (access->uid != (uid_t)-1)
        g_message("VM sockets: QEMU's user uid %d may connect, %s", (int)access->uid,
                  access->check == GW_VM_PEER_CHECK_UID
                      ? "any of its processes (vm-peer-check=uid)"
                      : "only the VM's own QEMU (its pid in vm-pid-file)");
    return TRUE;
}

gboolean
gw_daemon_start(GwDaemon *daemon, GError **error)
{
    g_autoptr(GPtrArray) diagnostics = NULL;
    g_autoptr(Policy) policy = NULL;
    GwBinderState saved;
    GwControlLimits limits;

    if (!gw_daemon_resolve_access(daemon, error))
        return FALSE;
    policy = policy_load_file(daemon->config.policy_path, &diagnostics, error);
    if (policy == NULL) {
        for (guint i = 0; diagnostics != NULL && i < diagnostics->len; i++) {
            g_autofree gchar *text = policy_diagnostic_format(g_ptr_array_index(diagnostics, i));
            g_printerr("%s\n", text);
        }
        return FALSE;
    }
    g_message("policy %s: %u rules", daemon->config.policy_path, policy_get_rule_count(policy));
    daemon->binder = gw_binder_new(policy, &gw_daemon_binder_ops, daemon);
    daemon->state = gw_state_store_open(daemon->config.state_path);
    saved.assignments = gw_state_store_get_assignments(daemon->state);
    saved.released = gw_state_store_get_released(daemon->state);
    saved.leases = gw_state_store_get_leases(daemon->state);
    gw_binder_restore(daemon->binder, &saved);
    daemon->audit = gw_audit_new(daemon->config.audit_log, error);
    if (daemon->audit == NULL)
        return FALSE;
    limits.max_clients = daemon->config.control_max_clients;
    limits.max_per_user = daemon->config.control_max_per_user;
    limits.idle_timeout = daemon->config.control_idle_timeout;
    daemon->control = gw_control_new(daemon->config.control_socket, &limits,
                                     gw_daemon_control_handler, daemon, error);
    if (daemon->control == NULL)
        return FALSE;
    if (daemon->config.libvirt_uri != NULL) {
        const GwLibvirtHandlers handlers = {
            .connected = gw_daemon_libvirt_connected,
            .domain_started = gw_daemon_libvirt_started,
            .domain_stopped = gw_daemon_libvirt_stopped,
            .device_removed = gw_daemon_libvirt_removed,
            .domain_inspected = gw_daemon_libvirt_inspected,
        };
        daemon->libvirt = gw_libvirt_new(daemon->config.libvirt_uri, g_main_context_default());
        gw_libvirt_set_handlers(daemon->libvirt, &handlers, daemon);
        gw_libvirt_set_add_usb_controller(daemon->libvirt, daemon->config.add_usb_controller);
    }
    daemon->plugger =
        gw_redirdev_plugger_new(daemon->config.rundir, daemon->libvirt, gw_daemon_plugged, daemon);
    gw_daemon_start_shares(daemon);
    if (!gw_daemon_start_links(daemon, error))
        return FALSE;
    if (!gw_daemon_start_cluster(daemon, error))
        return FALSE;
    if (!gw_daemon_start_metrics(daemon, error))
        return FALSE;
    if (daemon->libvirt != NULL)
        gw_libvirt_start(daemon->libvirt);
    else
        /* no libvirt tells which VMs run: only the hook does, as they start */
        gw_binder_settle(daemon->binder);
    return gw_inventory_start(daemon->inventory, &gw_daemon_inventory_callbacks, daemon, error);
}

void
gw_daemon_reopen_logs(GwDaemon *daemon)
{
    g_autoptr(GError) error = NULL;

    if (daemon->audit == NULL || daemon->config.audit_log == NULL)
        return;
    if (gw_audit_reopen(daemon->audit, &error))
        g_message("audit log %s reopened", daemon->config.audit_log);
    else
        g_warning("%s; still writing to the file opened before", error->message);
}

void
gw_daemon_free(GwDaemon *daemon)
{
    if (daemon == NULL)
        return;
    /* 1 (the cluster first: a clean stop revokes its lease, which runs
     * the main context a little while everything else still stands) */
    g_clear_pointer(&daemon->cluster, gw_daemon_cluster_free);
    gw_daemon_stop_metrics(daemon);
    g_cancellable_cancel(daemon->cancellable);
    if (daemon->inventory != NULL)
        gw_inventory_stop(daemon->inventory);
    /* 2 */
    g_clear_pointer(&daemon->plugger, gw_redirdev_plugger_free);
    g_clear_pointer(&daemon->libvirt, gw_libvirt_free);
    g_clear_pointer(&daemon->shares, gw_share_registry_free);
    /* 3 */
    gw_control_free(daemon->control);
    daemon->control = NULL;
    /* 4 */
    g_clear_pointer(&daemon->served, g_hash_table_unref);
    g_clear_pointer(&daemon->vm_libvirt, g_hash_table_unref);
    gw_daemon_migrate_clear(daemon);
    g_clear_pointer(&daemon->links, gw_links_free);
    g_clear_pointer(&daemon->exported, g_hash_table_unref);
    g_clear_pointer(&daemon->inventory, gw_inventory_free);
    /* 5 */
    g_clear_pointer(&daemon->binder, gw_binder_free);
    g_clear_pointer(&daemon->audit, gw_audit_free);
    g_clear_pointer(&daemon->state, gw_state_store_free);
    g_clear_pointer(&daemon->saved_bindings, gw_binder_state_free);
    g_clear_object(&daemon->cancellable);
    g_free(daemon->started);
    g_free(daemon->hook_last_call);
    gw_vm_socket_access_clear(&daemon->socket_access);
    gw_config_clear(&daemon->config);
    g_free(daemon);
}
