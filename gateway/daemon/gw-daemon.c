/* The daemon's core: devices by identity, the VMs that run, which device
 * is bound to which VM, and everything that changes that binding (device
 * arrival and departure, VM start and stop from the hook or libvirt's
 * events, usbgwctl assign/release, policy reload). */
#include "gw-daemon.h"

#include <gio/gio.h>
#include <grp.h>
#include <pwd.h>
#include <string.h>

#include "gw-attachment.h"
#include "gw-audit.h"
#include "gw-control.h"
#include "gw-device-json.h"
#include "gw-json.h"
#include "gw-device.h"
#include "gw-libvirt.h"
#include "gw-share.h"
#include "gw-state.h"
#include "gw-usb.h"

/* Prefix of the libvirt aliases of the redirdevs usbgwd attaches. */
#define GW_DAEMON_ALIAS_PREFIX "ua-usbgw-"

typedef struct {
    gchar *id;                /* owned: identity (gw_device_identity) */
    PolicyDevice *desc;       /* owned: as last seen */
    libusb_device *usb;       /* owned ref, nullable: present */
    PolicyDecision decision;  /* for daemon->policy; recomputed on reload */
    gchar *vm;                /* owned, nullable: the VM it is bound to */
    gchar *manual_vm;         /* owned, nullable: usbgwctl assign (persisted) */
    gboolean released;        /* usbgwctl release: policy ignored until replugged */
    GwAttachment *attachment; /* owned, nullable: exists once claimed */
    guint16 tcp_port;         /* 0 until a TCP port was given to it */
    gchar *since;             /* owned: ISO 8601 time of the last change */
    gchar *audited_vm;        /* owned, nullable: the VM an "attach" was recorded for */
} GwDaemonDevice;

typedef struct {
    gchar *name; /* owned */
    gchar *uuid; /* owned, nullable */
} GwDaemonVm;

struct _GwDaemon {
    GwConfig config;
    GwUsb *usb;                /* owned */
    Policy *policy;            /* owned */
    PolicyPools *pools;        /* owned */
    GwControl *control;        /* owned */
    GwAudit *audit;            /* owned */
    GwLibvirt *libvirt;        /* owned, nullable: no libvirt configured */
    GHashTable *devices;       /* id → GwDaemonDevice */
    GHashTable *by_usb;        /* libusb_device* → id (borrowed from devices) */
    GHashTable *vms;           /* name → GwDaemonVm: the VMs that run */
    GHashTable *shares;        /* VM name → GwShare: at most one share per VM */
    JsonObject *saved;         /* owned: state as loaded, applied as devices arrive */
    guint next_tcp_port;       /* 0 when TCP is off */
    guint next_spice_port;     /* offset from spice_port_base to try first */
    gchar *started;            /* owned: ISO 8601 */
    gchar *hook_last_call;     /* owned, nullable */
    GCancellable *cancellable; /* owned: cancelled when the daemon goes */
    uid_t socket_uid;          /* (uid_t)-1: root only */
    gid_t socket_gid;
};

static void gw_daemon_share_plug(GwDaemon *daemon, GwShare *share, gboolean replug);
static void gw_daemon_unshare(GwDaemon *daemon, const gchar *vm, const gchar *actor,
                              const gchar *reason);

static gchar *
gw_daemon_now(void)
{
    g_autoptr(GDateTime) now = g_date_time_new_now_utc();
    return g_date_time_format_iso8601(now);
}

static void
gw_daemon_device_free(gpointer data)
{
    GwDaemonDevice *dev = data;
    gw_attachment_free(dev->attachment);
    if (dev->usb != NULL)
        libusb_unref_device(dev->usb);
    policy_device_free(dev->desc);
    g_free(dev->id);
    g_free(dev->vm);
    g_free(dev->manual_vm);
    g_free(dev->since);
    g_free(dev->audited_vm);
    g_free(dev);
}

static void
gw_daemon_vm_free(gpointer data)
{
    GwDaemonVm *vm = data;
    g_free(vm->name);
    g_free(vm->uuid);
    g_free(vm);
}

static void
gw_daemon_touch(GwDaemonDevice *dev)
{
    g_free(dev->since);
    dev->since = gw_daemon_now();
}

static gchar *
gw_daemon_rule_of(const PolicyDecision *decision)
{
    return decision->file != NULL ? g_strdup_printf("%s:%u", decision->file, decision->line) : NULL;
}

/* One audit record, also sent to the control socket's subscribers. */
static void
gw_daemon_record(GwDaemon *daemon, const GwAuditEvent *record)
{
    g_autoptr(JsonNode) node = gw_audit_record(daemon->audit, record);
    gw_control_broadcast(daemon->control, node);
}

/* The audit record of a host device's event. */
static void
gw_daemon_audit(GwDaemon *daemon, const gchar *event, GwDaemonDevice *dev, const gchar *vm,
                const gchar *actor, const gchar *reason)
{
    GwDaemonVm *v = vm != NULL ? g_hash_table_lookup(daemon->vms, vm) : NULL;
    g_autofree gchar *rule = dev != NULL ? gw_daemon_rule_of(&dev->decision) : NULL;
    GwAuditEvent record = {
        .event = event,
        .device_id = dev != NULL ? dev->id : NULL,
        .device = dev != NULL ? dev->desc : NULL,
        .vm = vm,
        .vm_uuid = v != NULL ? v->uuid : NULL,
        .rule = dev != NULL && dev->manual_vm == NULL ? rule : NULL,
        .actor = actor,
        .reason = reason,
    };
    gw_daemon_record(daemon, &record);
}

/* ---- state ------------------------------------------------------------------ */

static const gchar *
gw_daemon_saved_string(GwDaemon *daemon, const gchar *group, const gchar *id)
{
    return gw_json_get_string(gw_json_get_object(daemon->saved, group), id);
}

static void
gw_daemon_save_state(GwDaemon *daemon)
{
    g_autoptr(JsonObject) state = json_object_new();
    g_autoptr(JsonObject) assignments = json_object_new();
    g_autoptr(JsonObject) released = json_object_new();
    g_autoptr(JsonObject) leases = json_object_new();
    g_autoptr(GError) error = NULL;
    GHashTableIter iter;
    gpointer value;

    g_hash_table_iter_init(&iter, daemon->devices);
    while (g_hash_table_iter_next(&iter, NULL, &value)) {
        GwDaemonDevice *dev = value;
        if (dev->manual_vm != NULL)
            json_object_set_string_member(assignments, dev->id, dev->manual_vm);
        if (dev->released)
            json_object_set_boolean_member(released, dev->id, TRUE);
        if (dev->vm != NULL && dev->decision.target_kind == POLICY_TARGET_POOL &&
            dev->manual_vm == NULL) {
            json_object_set_string_member(leases, dev->id, dev->vm);
        } else if (dev->vm == NULL && !dev->released && dev->manual_vm == NULL) {
            /* a lease whose VM has not come back since the restart */
            const gchar *hint = gw_daemon_saved_string(daemon, "leases", dev->id);
            if (hint != NULL)
                json_object_set_string_member(leases, dev->id, hint);
        }
    }
    /* entries for devices not seen since the restart stay */
    if (daemon->saved != NULL) {
        const gchar *groups[] = {"assignments", "released", "leases"};
        JsonObject *targets[] = {assignments, released, leases};
        for (guint g = 0; g < G_N_ELEMENTS(groups); g++) {
            JsonObject *old = gw_json_get_object(daemon->saved, groups[g]);
            g_autoptr(GList) members = old != NULL ? json_object_get_members(old) : NULL;
            for (GList *l = members; l != NULL; l = l->next) {
                if (!g_hash_table_contains(daemon->devices, l->data))
                    json_object_set_member(targets[g], l->data,
                                           json_node_copy(json_object_get_member(old, l->data)));
            }
        }
    }
    json_object_set_object_member(state, "assignments", g_steal_pointer(&assignments));
    json_object_set_object_member(state, "released", g_steal_pointer(&released));
    json_object_set_object_member(state, "leases", g_steal_pointer(&leases));
    /* shares: a restarted usbgwd takes its clients back (the file is
     * root's alone: it holds the tickets) */
    if (daemon->shares != NULL) {
        g_autoptr(JsonObject) shares = json_object_new();
        g_hash_table_iter_init(&iter, daemon->shares);
        while (g_hash_table_iter_next(&iter, NULL, &value)) {
            g_autoptr(JsonObject) entry = json_object_new();
            json_object_set_string_member(entry, "user", gw_share_get_user(value));
            json_object_set_string_member(entry, "ticket", gw_share_get_ticket(value));
            json_object_set_int_member(entry, "port", gw_share_get_port(value));
            json_object_set_int_member(entry, "expires", gw_share_get_expires_unix(value));
            json_object_set_object_member(shares, gw_share_get_vm(value), g_steal_pointer(&entry));
        }
        json_object_set_object_member(state, "shares", g_steal_pointer(&shares));
    }
    if (!gw_state_save(daemon->config.state_path, state, &error))
        g_warning("cannot save state: %s", error->message);
}

/* ---- binding devices to VMs ------------------------------------------------- */

typedef struct {
    GCancellable *cancellable; /* owned ref: cancelled when the daemon goes */
    GwDaemon *daemon;          /* only used while not cancelled */
    gchar *id;
    gchar *vm;
} GwDaemonAttachOp;

static void
gw_daemon_attach_op_free(GwDaemonAttachOp *op)
{
    g_object_unref(op->cancellable);
    g_free(op->id);
    g_free(op->vm);
    g_free(op);
}

G_DEFINE_AUTOPTR_CLEANUP_FUNC(GwDaemonAttachOp, gw_daemon_attach_op_free)

static void
gw_daemon_attach_done(GObject *source, GAsyncResult *result, gpointer user_data)
{
    g_autoptr(GError) error = NULL;
    g_autoptr(GwDaemonAttachOp) op = user_data;
    gboolean ok = gw_libvirt_attach_redirdev_finish(NULL, result, &error);
    GwDaemonDevice *dev;

    if (g_cancellable_is_cancelled(op->cancellable))
        return;
    dev = g_hash_table_lookup(op->daemon->devices, op->id);
    if (!ok) {
        g_warning("%s → vm %s: libvirt attach failed: %s", op->id, op->vm, error->message);
        if (dev != NULL)
            gw_daemon_audit(op->daemon, "attach-failed", dev, op->vm, "libvirt", error->message);
        return;
    }
    if (dev == NULL || g_strcmp0(dev->vm, op->vm) != 0 || g_strcmp0(dev->audited_vm, op->vm) == 0)
        return;
    g_free(dev->audited_vm);
    dev->audited_vm = g_strdup(op->vm);
    g_message("%s → vm %s: attached through libvirt", op->id, op->vm);
    gw_daemon_audit(op->daemon, "attach", dev, op->vm, "libvirt",
                    gw_attachment_get_socket_path(dev->attachment));
}

/* Makes libvirt plug the device's socket into the running VM, if both are
 * known; QEMU then connects and the device appears in the guest. */
static void
gw_daemon_libvirt_attach(GwDaemon *daemon, GwDaemonDevice *dev)
{
    GwDaemonVm *vm = dev->vm != NULL ? g_hash_table_lookup(daemon->vms, dev->vm) : NULL;
    const gchar *path =
        dev->attachment != NULL ? gw_attachment_get_socket_path(dev->attachment) : NULL;
    g_autofree gchar *slot = NULL;
    g_autofree gchar *alias = NULL;
    GwDaemonAttachOp *op;

    if (daemon->libvirt == NULL || vm == NULL || vm->uuid == NULL || path == NULL ||
        !gw_libvirt_is_connected(daemon->libvirt))
        return;
    slot = gw_device_slot_name(dev->desc);
    alias = g_strconcat(GW_DAEMON_ALIAS_PREFIX, slot, NULL);
    g_strcanon(alias, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_", '_');
    op = g_new0(GwDaemonAttachOp, 1);
    op->cancellable = g_object_ref(daemon->cancellable);
    op->daemon = daemon;
    op->id = g_strdup(dev->id);
    op->vm = g_strdup(vm->name);
    gw_libvirt_attach_redirdev_async(daemon->libvirt, vm->uuid, path, alias, NULL,
                                     gw_daemon_attach_done, op);
}

static void
gw_daemon_detach_done(GObject *source, GAsyncResult *result, gpointer user_data)
{
    g_autoptr(GError) error = NULL;
    g_autofree gchar *what = user_data;
    if (!gw_libvirt_detach_redirdev_finish(NULL, result, &error))
        g_warning("%s: libvirt detach failed: %s", what, error->message);
}

/* Serves the device to @vm on <rundir>/vm/<vm>/<slot>.sock; claims it
 * first if needed. */
static gboolean
gw_daemon_bind(GwDaemon *daemon, GwDaemonDevice *dev, const gchar *vm, const gchar *actor)
{
    g_autoptr(GError) error = NULL;
    g_autofree gchar *slot = gw_device_slot_name(dev->desc);
    g_autofree gchar *file = g_strconcat(slot, ".sock", NULL);
    g_autofree gchar *path = NULL;
    gboolean tcp;

    if (strchr(vm, '/') != NULL || vm[0] == '.' || vm[0] == '\0') {
        g_warning("%s: VM name '%s' cannot name a socket directory", dev->id, vm);
        return FALSE;
    }
    if (g_strcmp0(dev->vm, vm) == 0 && dev->attachment != NULL &&
        gw_attachment_get_socket_path(dev->attachment) != NULL) {
        gw_daemon_libvirt_attach(daemon, dev);
        return TRUE;
    }
    if (dev->attachment == NULL)
        dev->attachment = gw_attachment_new(gw_usb_get_context(daemon->usb), dev->id);
    gw_attachment_set_access(dev->attachment, daemon->socket_uid, daemon->socket_gid);
    if (dev->usb != NULL && !gw_attachment_set_device(dev->attachment, dev->usb, &error)) {
        g_warning("%s", error->message);
        g_clear_error(&error);
    }
    if (dev->tcp_port == 0 && daemon->next_tcp_port != 0 && daemon->next_tcp_port <= G_MAXUINT16)
        dev->tcp_port = (guint16)daemon->next_tcp_port++;
    tcp = dev->tcp_port != 0;
    path = g_build_filename(daemon->config.rundir, "vm", vm, file, NULL);
    if (!gw_attachment_bind(dev->attachment, path, tcp ? daemon->config.tcp_address : NULL,
                            dev->tcp_port, &error)) {
        g_warning("%s: %s", dev->id, error->message);
        return FALSE;
    }
    g_free(dev->vm);
    dev->vm = g_strdup(vm);
    gw_daemon_touch(dev);
    g_message("%s: bound to vm \"%s\", served on %s", dev->id, vm, path);
    /* with libvirt, "attach" is recorded once libvirt plugged it in */
    if (daemon->libvirt == NULL) {
        g_free(dev->audited_vm);
        dev->audited_vm = g_strdup(vm);
        gw_daemon_audit(daemon, "attach", dev, vm, actor, path);
    }
    gw_daemon_libvirt_attach(daemon, dev);
    return TRUE;
}

static void
gw_daemon_unbind(GwDaemon *daemon, GwDaemonDevice *dev, const gchar *actor, const gchar *reason,
                 gboolean detach_from_vm)
{
    g_autofree gchar *vm = g_steal_pointer(&dev->vm);
    GwDaemonVm *v = vm != NULL ? g_hash_table_lookup(daemon->vms, vm) : NULL;

    if (vm == NULL)
        return;
    if (detach_from_vm && daemon->libvirt != NULL && v != NULL && v->uuid != NULL &&
        dev->attachment != NULL && gw_attachment_get_socket_path(dev->attachment) != NULL)
        gw_libvirt_detach_redirdev_async(
            daemon->libvirt, v->uuid, gw_attachment_get_socket_path(dev->attachment), NULL,
            gw_daemon_detach_done, g_strdup_printf("%s ← vm %s", dev->id, vm));
    if (dev->attachment != NULL)
        gw_attachment_unbind(dev->attachment);
    g_clear_pointer(&dev->audited_vm, g_free);
    gw_daemon_touch(dev);
    g_message("%s: unbound from vm \"%s\" (%s)", dev->id, vm, reason);
    gw_daemon_audit(daemon, "detach", dev, vm, actor, reason);
}

/* A literal VM name target (not a glob): the socket can exist before the
 * VM runs, so a VM started by hand finds it. */
static const gchar *
gw_daemon_fixed_vm(GwDaemon *daemon, GwDaemonDevice *dev)
{
    if (dev->manual_vm != NULL)
        return dev->manual_vm;
    if (dev->released || dev->decision.verdict != POLICY_VERDICT_ASSIGN)
        return NULL;
    if (dev->decision.target_kind == POLICY_TARGET_VM &&
        strpbrk(dev->decision.target, "*?") == NULL)
        return dev->decision.target;
    if (dev->decision.target_kind == POLICY_TARGET_VM_UUID) {
        GHashTableIter iter;
        gpointer value;
        g_hash_table_iter_init(&iter, daemon->vms);
        while (g_hash_table_iter_next(&iter, NULL, &value)) {
            GwDaemonVm *vm = value;
            if (vm->uuid != NULL && g_ascii_strcasecmp(vm->uuid, dev->decision.target) == 0)
                return vm->name;
        }
    }
    return NULL;
}

static gint
gw_daemon_compare_devices(gconstpointer a, gconstpointer b)
{
    const GwDaemonDevice *x = *(GwDaemonDevice *const *)a;
    const GwDaemonDevice *y = *(GwDaemonDevice *const *)b;
    return strcmp(x->id, y->id);
}

/* Devices in identity order: every "first free" choice is deterministic. */
static GPtrArray *
gw_daemon_sorted_devices(GwDaemon *daemon)
{
    GPtrArray *out = g_ptr_array_new();
    GHashTableIter iter;
    gpointer value;
    g_hash_table_iter_init(&iter, daemon->devices);
    while (g_hash_table_iter_next(&iter, NULL, &value))
        g_ptr_array_add(out, value);
    g_ptr_array_sort(out, gw_daemon_compare_devices);
    return out;
}

/* The key @vm held before a restart (state.json), if it is free: leased
 * again, so a VM keeps its license key across usbgwd restarts. */
static void
gw_daemon_restore_lease(GwDaemon *daemon, const gchar *pool, GwDaemonVm *vm)
{
    JsonObject *leases = gw_json_get_object(daemon->saved, "leases");
    g_autoptr(GList) ids = leases != NULL ? json_object_get_members(leases) : NULL;

    for (GList *l = ids; l != NULL; l = l->next) {
        g_autoptr(GError) error = NULL;
        GwDaemonDevice *dev = g_hash_table_lookup(daemon->devices, l->data);
        if (g_strcmp0(gw_json_get_string(leases, l->data), vm->name) != 0 || dev == NULL ||
            dev->released || dev->manual_vm != NULL)
            continue;
        if (policy_pools_acquire_key(daemon->pools, pool, vm->name, l->data, &error))
            return;
        g_debug("vm \"%s\": earlier lease of %s not restored: %s", vm->name, (const gchar *)l->data,
                error->message);
    }
}

/* Gives @vm (running) every device the policy or an admin gives it. */
static void
gw_daemon_offer_vm(GwDaemon *daemon, GwDaemonVm *vm, const gchar *actor)
{
    g_autoptr(GPtrArray) devices = gw_daemon_sorted_devices(daemon);
    g_autoptr(GHashTable) pools_done = g_hash_table_new(g_str_hash, g_str_equal);

    for (guint i = 0; i < devices->len; i++) {
        GwDaemonDevice *dev = g_ptr_array_index(devices, i);
        const gchar *fixed = gw_daemon_fixed_vm(daemon, dev);

        if (dev->vm != NULL && g_strcmp0(dev->vm, vm->name) != 0)
            continue;
        if (fixed != NULL) {
            if (g_strcmp0(fixed, vm->name) == 0)
                gw_daemon_bind(daemon, dev, vm->name, actor);
            continue;
        }
        if (dev->manual_vm != NULL || dev->released ||
            dev->decision.verdict != POLICY_VERDICT_ASSIGN ||
            !policy_decision_is_for_vm(daemon->policy, &dev->decision, vm->name, vm->uuid))
            continue;
        if (dev->decision.target_kind == POLICY_TARGET_POOL) {
            g_autoptr(GError) error = NULL;
            const gchar *pool = dev->decision.target;
            const gchar *key;
            GwDaemonDevice *leased;
            if (g_hash_table_contains(pools_done, pool))
                continue;
            g_hash_table_add(pools_done, (gpointer)pool);
            gw_daemon_restore_lease(daemon, pool, vm);
            key = policy_pools_acquire(daemon->pools, pool, vm->name, &error);
            if (key == NULL) {
                g_message("vm \"%s\": no device from pool \"%s\": %s", vm->name, pool,
                          error->message);
                continue;
            }
            leased = g_hash_table_lookup(daemon->devices, key);
            if (leased != NULL && !leased->released && leased->manual_vm == NULL)
                gw_daemon_bind(daemon, leased, vm->name, actor);
            continue;
        }
        /* a VM-name glob: the first running VM that matches takes it */
        gw_daemon_bind(daemon, dev, vm->name, actor);
    }
}

static void
gw_daemon_offer_all(GwDaemon *daemon, const gchar *actor)
{
    g_autoptr(GList) vms = g_hash_table_get_values(daemon->vms);
    for (GList *l = vms; l != NULL; l = l->next)
        gw_daemon_offer_vm(daemon, l->data, actor);
}

static void
gw_daemon_vm_started(GwDaemon *daemon, const gchar *name, const gchar *uuid, const gchar *actor)
{
    GwDaemonVm *vm = g_hash_table_lookup(daemon->vms, name);

    if (vm == NULL) {
        vm = g_new0(GwDaemonVm, 1);
        vm->name = g_strdup(name);
        g_hash_table_insert(daemon->vms, vm->name, vm);
        g_message("vm \"%s\" runs (%s)", name, actor);
    }
    if (uuid != NULL && g_strcmp0(vm->uuid, uuid) != 0) {
        g_free(vm->uuid);
        vm->uuid = g_ascii_strdown(uuid, -1);
    }
    gw_daemon_offer_vm(daemon, vm, actor);
    if (g_hash_table_contains(daemon->shares, name))
        gw_daemon_share_plug(daemon, g_hash_table_lookup(daemon->shares, name), FALSE);
    gw_daemon_save_state(daemon);
}

/* A VM that stopped gives its keys back for good: drop its saved leases. */
static void
gw_daemon_forget_leases(GwDaemon *daemon, const gchar *name)
{
    JsonObject *leases = gw_json_get_object(daemon->saved, "leases");
    g_autoptr(GList) ids = leases != NULL ? json_object_get_members(leases) : NULL;

    for (GList *l = ids; l != NULL; l = l->next) {
        if (g_strcmp0(gw_json_get_string(leases, l->data), name) == 0)
            json_object_remove_member(leases, l->data);
    }
}

static void
gw_daemon_vm_stopped(GwDaemon *daemon, const gchar *name, const gchar *actor)
{
    g_autoptr(GPtrArray) devices = NULL;

    if (!g_hash_table_contains(daemon->vms, name))
        return;
    g_message("vm \"%s\" stopped (%s)", name, actor);
    gw_daemon_unshare(daemon, name, actor, "vm stopped");
    devices = gw_daemon_sorted_devices(daemon);
    for (guint i = 0; i < devices->len; i++) {
        GwDaemonDevice *dev = g_ptr_array_index(devices, i);
        if (g_strcmp0(dev->vm, name) != 0)
            continue;
        /* a device with a fixed VM keeps its socket for the next start */
        if (g_strcmp0(gw_daemon_fixed_vm(daemon, dev), name) == 0) {
            gw_daemon_audit(daemon, "detach", dev, name, actor, "vm stopped; socket kept");
            g_clear_pointer(&dev->audited_vm, g_free);
            continue;
        }
        gw_daemon_unbind(daemon, dev, actor, "vm stopped", FALSE);
    }
    policy_pools_release_vm(daemon->pools, name);
    gw_daemon_forget_leases(daemon, name);
    g_hash_table_remove(daemon->vms, name);
    /* what the stopped VM gave back may be waited for by another */
    gw_daemon_offer_all(daemon, actor);
    gw_daemon_save_state(daemon);
}

/* ---- inventory -------------------------------------------------------------- */

static void
gw_daemon_decide(GwDaemon *daemon, GwDaemonDevice *dev)
{
    g_autoptr(GError) error = NULL;

    policy_decide(daemon->policy, POLICY_ORIGIN_HOST, dev->desc, NULL, &dev->decision);
    /* an admin's assign or release takes the device out of its pool */
    if (dev->manual_vm == NULL && !dev->released &&
        dev->decision.verdict == POLICY_VERDICT_ASSIGN &&
        dev->decision.target_kind == POLICY_TARGET_POOL &&
        !policy_pools_add_device(daemon->pools, dev->decision.target, dev->id, &error))
        g_warning("%s: %s", dev->id, error->message);
}

static void
gw_daemon_device_arrived(GwDaemon *daemon, libusb_device *usb)
{
    g_autoptr(GError) error = NULL;
    g_autoptr(PolicyDevice) desc = gw_device_describe(usb, &error);
    g_autofree gchar *id = NULL;
    g_autofree gchar *rule = NULL;
    GwDaemonDevice *dev;
    const gchar *fixed;

    if (desc == NULL) {
        g_autofree gchar *port = gw_device_port_path(usb);
        g_warning("device at %s ignored: %s", port, error->message);
        return;
    }
    id = gw_device_identity(desc);
    dev = g_hash_table_lookup(daemon->devices, id);
    if (dev == NULL) {
        dev = g_new0(GwDaemonDevice, 1);
        dev->id = g_strdup(id);
        dev->manual_vm = g_strdup(gw_daemon_saved_string(daemon, "assignments", id));
        g_hash_table_insert(daemon->devices, dev->id, dev);
    } else if (dev->usb != NULL) {
        g_hash_table_remove(daemon->by_usb, dev->usb);
        g_clear_pointer(&dev->usb, libusb_unref_device);
    }
    policy_device_free(dev->desc);
    dev->desc = g_steal_pointer(&desc);
    dev->usb = libusb_ref_device(usb);
    g_hash_table_insert(daemon->by_usb, dev->usb, dev->id);
    gw_daemon_touch(dev);
    gw_daemon_decide(daemon, dev);
    rule = gw_daemon_rule_of(&dev->decision);

    if (dev->manual_vm == NULL) {
        switch (dev->decision.verdict) {
        case POLICY_VERDICT_NONE:
        case POLICY_VERDICT_SHARE:
            g_info("%s arrived: no rule, left to the host", dev->id);
            return;
        case POLICY_VERDICT_DENY:
            g_message("%s arrived: denied by %s, left to the host", dev->id, rule);
            gw_daemon_audit(daemon, "deny", dev, NULL, "policy", "a deny rule matched");
            return;
        case POLICY_VERDICT_ASSIGN:
            break;
        }
    }
    if (dev->released) {
        g_message("%s arrived: released by an admin, left to the host", dev->id);
        return;
    }
    /* claim at once, so the host never binds a driver to it */
    if (dev->attachment == NULL)
        dev->attachment = gw_attachment_new(gw_usb_get_context(daemon->usb), dev->id);
    if (!gw_attachment_set_device(dev->attachment, dev->usb, &error)) {
        g_warning("%s", error->message);
        return;
    }
    g_message("%s arrived: assigned to %s \"%s\" by %s", dev->id,
              dev->manual_vm != NULL ? "vm"
                                     : policy_target_kind_to_string(dev->decision.target_kind),
              dev->manual_vm != NULL ? dev->manual_vm : dev->decision.target,
              dev->manual_vm != NULL ? "usbgwctl assign" : rule);
    if (dev->vm != NULL) {
        /* replugged: the socket stayed, the peer gets device_connect */
        gw_daemon_libvirt_attach(daemon, dev);
        return;
    }
    fixed = gw_daemon_fixed_vm(daemon, dev);
    if (fixed != NULL) {
        gw_daemon_bind(daemon, dev, fixed, "policy");
    } else if (dev->decision.target_kind == POLICY_TARGET_POOL) {
        const gchar *leased_to = gw_daemon_saved_string(daemon, "leases", dev->id);
        GwDaemonVm *vm = leased_to != NULL ? g_hash_table_lookup(daemon->vms, leased_to) : NULL;
        /* a lease from before a restart: give the same key back to that VM */
        if (vm != NULL &&
            policy_pools_acquire(daemon->pools, dev->decision.target, vm->name, NULL) != NULL)
            gw_daemon_offer_vm(daemon, vm, "state");
        else
            gw_daemon_offer_all(daemon, "policy");
    } else {
        gw_daemon_offer_all(daemon, "policy");
    }
    gw_daemon_save_state(daemon);
}

static void
gw_daemon_device_left(GwDaemon *daemon, libusb_device *usb)
{
    const gchar *id = g_hash_table_lookup(daemon->by_usb, usb);
    GwDaemonDevice *dev = id != NULL ? g_hash_table_lookup(daemon->devices, id) : NULL;

    if (dev == NULL)
        return;
    g_message("%s left", dev->id);
    if (dev->attachment != NULL)
        gw_attachment_device_left(dev->attachment);
    g_hash_table_remove(daemon->by_usb, usb);
    g_clear_pointer(&dev->usb, libusb_unref_device);
    gw_daemon_touch(dev);
    /* a released device follows the policy again once it is replugged */
    dev->released = FALSE;
}

static void
gw_daemon_hotplug(libusb_device *device, gboolean arrived, gpointer user_data)
{
    GwDaemon *daemon = user_data;
    if (arrived)
        gw_daemon_device_arrived(daemon, device);
    else
        gw_daemon_device_left(daemon, device);
    libusb_unref_device(device);
}

/* ---- libvirt ---------------------------------------------------------------- */

static gboolean
gw_daemon_path_has_peer(GwDaemon *daemon, const gchar *path)
{
    GHashTableIter iter;
    gpointer value;
    g_hash_table_iter_init(&iter, daemon->devices);
    while (g_hash_table_iter_next(&iter, NULL, &value)) {
        GwDaemonDevice *dev = value;
        if (dev->attachment != NULL &&
            g_strcmp0(gw_attachment_get_socket_path(dev->attachment), path) == 0)
            return gw_attachment_has_peer(dev->attachment);
    }
    g_hash_table_iter_init(&iter, daemon->shares);
    while (g_hash_table_iter_next(&iter, NULL, &value))
        if (gw_share_socket_has_qemu(value, path))
            return TRUE;
    return FALSE;
}

/* A redirdev of ours whose QEMU is not connected (usbgwd restarted: the
 * socket went away). libvirt 9.0 hot-plugs chardevs without <reconnect>,
 * so QEMU never comes back by itself: unplug it here; binding the device
 * again plugs a fresh one (the worker keeps the two in order). */
static void
gw_daemon_reattach_stale(GwDaemon *daemon, GwLibvirtDomain *domain)
{
    g_autofree gchar *ours = g_build_filename(daemon->config.rundir, "vm", "", NULL);

    for (guint i = 0; i < domain->redirdev_paths->len; i++) {
        const gchar *path = g_ptr_array_index(domain->redirdev_paths, i);
        if (!g_str_has_prefix(path, ours) || gw_daemon_path_has_peer(daemon, path))
            continue;
        g_message("vm \"%s\": re-plugging %s (its QEMU is not connected)", domain->name, path);
        gw_libvirt_detach_redirdev_async(daemon->libvirt, domain->uuid, path, NULL,
                                         gw_daemon_detach_done,
                                         g_strdup_printf("stale %s ← vm %s", path, domain->name));
    }
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
    g_autoptr(GList) known = NULL;

    if (domains == NULL) {
        if (!g_error_matches(error, G_IO_ERROR, G_IO_ERROR_CANCELLED))
            g_warning("cannot list running VMs: %s", error->message);
        return;
    }
    for (guint i = 0; i < domains->len; i++) {
        GwLibvirtDomain *domain = g_ptr_array_index(domains, i);
        g_hash_table_add(running, domain->name);
        gw_daemon_reattach_stale(daemon, domain);
        gw_daemon_vm_started(daemon, domain->name, domain->uuid, "reconcile");
    }
    known = g_hash_table_get_keys(daemon->vms);
    for (GList *l = known; l != NULL; l = l->next) {
        if (!g_hash_table_contains(running, l->data)) {
            g_autofree gchar *name = g_strdup(l->data);
            gw_daemon_vm_stopped(daemon, name, "reconcile");
        }
    }
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
}

static void
gw_daemon_libvirt_stopped(const gchar *name, const gchar *uuid, gpointer user_data)
{
    gw_daemon_vm_stopped(user_data, name, "libvirt");
}

static void
gw_daemon_libvirt_removed(const gchar *name, const gchar *uuid, const gchar *alias,
                          gpointer user_data)
{
    GwDaemon *daemon = user_data;
    GHashTableIter iter;
    gpointer value;

    if (!g_str_has_prefix(alias, GW_DAEMON_ALIAS_PREFIX))
        return;
    g_hash_table_iter_init(&iter, daemon->devices);
    while (g_hash_table_iter_next(&iter, NULL, &value)) {
        GwDaemonDevice *dev = value;
        g_autofree gchar *slot = NULL;
        if (g_strcmp0(dev->vm, name) != 0)
            continue;
        slot = gw_device_slot_name(dev->desc);
        if (g_str_has_suffix(alias, slot)) {
            g_message("%s: its redirdev was removed from vm \"%s\" by someone else", dev->id, name);
            gw_daemon_audit(daemon, "detach", dev, name, "libvirt",
                            "redirdev removed outside usbgwd");
        }
    }
}

/* ---- control commands ------------------------------------------------------- */

static const gchar *
gw_daemon_device_state(GwDaemonDevice *dev)
{
    if (dev->usb == NULL)
        return "absent";
    if (dev->vm != NULL && dev->attachment != NULL && gw_attachment_has_peer(dev->attachment))
        return "attached";
    if (dev->vm != NULL)
        return "bound";
    if (dev->attachment != NULL)
        return "claimed";
    if (dev->manual_vm == NULL && dev->decision.verdict == POLICY_VERDICT_DENY)
        return "denied";
    return "present";
}

static JsonNode *
gw_daemon_device_json(GwDaemonDevice *dev)
{
    g_autoptr(JsonBuilder) builder = json_builder_new();
    g_autoptr(JsonNode) node = NULL;
    g_autofree gchar *rule = gw_daemon_rule_of(&dev->decision);
    JsonObject *obj;

    gw_device_to_json(dev->desc, builder);
    node = json_builder_get_root(builder);
    obj = json_node_get_object(node);
    json_object_set_string_member(obj, "id", dev->id);
    json_object_set_string_member(obj, "state", gw_daemon_device_state(dev));
    json_object_set_string_member(
        obj, "verdict",
        dev->manual_vm != NULL ? "assign" : policy_verdict_to_string(dev->decision.verdict));
    if (dev->vm != NULL)
        json_object_set_string_member(obj, "vm", dev->vm);
    else
        json_object_set_null_member(obj, "vm");
    if (dev->manual_vm != NULL)
        json_object_set_string_member(obj, "assigned_by", "usbgwctl");
    if (dev->attachment != NULL && gw_attachment_get_socket_path(dev->attachment) != NULL)
        json_object_set_string_member(obj, "socket",
                                      gw_attachment_get_socket_path(dev->attachment));
    if (dev->decision.target != NULL && dev->manual_vm == NULL) {
        g_autofree gchar *target =
            g_strdup_printf("%s \"%s\"", policy_target_kind_to_string(dev->decision.target_kind),
                            dev->decision.target);
        json_object_set_string_member(obj, "target", target);
    }
    if (rule != NULL)
        json_object_set_string_member(obj, "rule", rule);
    json_object_set_string_member(obj, "since", dev->since);
    return g_steal_pointer(&node);
}

/* Finds the one device named by an id, VID:PID, serial or port path. */
static GwDaemonDevice *
gw_daemon_find_device(GwDaemon *daemon, const gchar *ref, JsonNode **error_reply)
{
    g_autoptr(GPtrArray) matches = g_ptr_array_new();
    g_autoptr(GPtrArray) devices = gw_daemon_sorted_devices(daemon);
    g_autoptr(GString) names = g_string_new(NULL);

    for (guint i = 0; i < devices->len; i++) {
        GwDaemonDevice *dev = g_ptr_array_index(devices, i);
        g_autofree gchar *vidpid =
            g_strdup_printf("%04x:%04x", dev->desc->vendor_id, dev->desc->product_id);
        if (g_strcmp0(dev->id, ref) == 0) {
            return dev;
        }
        if (g_ascii_strcasecmp(vidpid, ref) == 0 || g_strcmp0(dev->desc->serial, ref) == 0 ||
            g_strcmp0(dev->desc->port, ref) == 0)
            g_ptr_array_add(matches, dev);
    }
    if (matches->len == 1)
        return g_ptr_array_index(matches, 0);
    if (matches->len == 0) {
        *error_reply = gw_control_reply_error(
            "not-found",
            "no device '%s': name one by the id, VID:PID, serial or port that "
            "'usbgwctl list' shows",
            ref);
        return NULL;
    }
    for (guint i = 0; i < matches->len; i++)
        g_string_append_printf(names, "%s%s", i > 0 ? ", " : "",
                               ((GwDaemonDevice *)g_ptr_array_index(matches, i))->id);
    *error_reply = gw_control_reply_error("conflict", "'%s' names %u devices (%s): use its id", ref,
                                          matches->len, names->str);
    return NULL;
}

static const gchar *
gw_daemon_string_arg(JsonObject *request, const gchar *name, JsonNode **error_reply)
{
    JsonNode *node = json_object_get_member(request, name);
    if (node == NULL || json_node_get_value_type(node) != G_TYPE_STRING ||
        json_node_get_string(node)[0] == '\0') {
        *error_reply =
            gw_control_reply_error("bad-request", "\"%s\" must be a non-empty string", name);
        return NULL;
    }
    return json_node_get_string(node);
}

static JsonNode *
gw_daemon_cmd_status(GwDaemon *daemon)
{
    g_autoptr(JsonObject) obj = json_object_new();
    g_autoptr(JsonObject) policy = json_object_new();
    g_autoptr(JsonObject) libvirt = json_object_new();
    g_autoptr(JsonObject) hook = json_object_new();
    guint bound = 0;
    GHashTableIter iter;
    gpointer value;

    g_hash_table_iter_init(&iter, daemon->devices);
    while (g_hash_table_iter_next(&iter, NULL, &value))
        bound += ((GwDaemonDevice *)value)->vm != NULL;
    json_object_set_string_member(obj, "version", PACKAGE_VERSION);
    json_object_set_string_member(obj, "started", daemon->started);
    json_object_set_string_member(policy, "path", daemon->config.policy_path);
    json_object_set_int_member(policy, "rules", policy_get_rule_count(daemon->policy));
    json_object_set_object_member(obj, "policy", g_steal_pointer(&policy));
    json_object_set_int_member(obj, "devices", g_hash_table_size(daemon->devices));
    json_object_set_int_member(obj, "attachments", bound);
    json_object_set_int_member(obj, "vms", g_hash_table_size(daemon->vms));
    json_object_set_int_member(obj, "shares", g_hash_table_size(daemon->shares));
    if (daemon->libvirt != NULL) {
        GwLibvirtStatus st = {0};
        gw_libvirt_get_status(daemon->libvirt, &st);
        json_object_set_string_member(libvirt, "uri", gw_libvirt_get_uri(daemon->libvirt));
        json_object_set_boolean_member(libvirt, "connected", st.connected);
        if (st.last_error != NULL)
            json_object_set_string_member(libvirt, "last_error", st.last_error);
        gw_libvirt_status_clear(&st);
    } else {
        json_object_set_null_member(libvirt, "uri");
        json_object_set_boolean_member(libvirt, "connected", FALSE);
    }
    json_object_set_object_member(obj, "libvirt", g_steal_pointer(&libvirt));
    if (daemon->hook_last_call != NULL)
        json_object_set_string_member(hook, "last_call", daemon->hook_last_call);
    else
        json_object_set_null_member(hook, "last_call");
    json_object_set_object_member(obj, "hook", g_steal_pointer(&hook));
    return gw_control_reply_ok(json_node_init_object(json_node_alloc(), obj));
}

static JsonNode *
gw_daemon_cmd_list(GwDaemon *daemon)
{
    g_autoptr(GPtrArray) devices = gw_daemon_sorted_devices(daemon);
    g_autoptr(JsonArray) array = json_array_new();
    g_autoptr(JsonObject) obj = json_object_new();

    for (guint i = 0; i < devices->len; i++)
        json_array_add_element(array, gw_daemon_device_json(g_ptr_array_index(devices, i)));
    json_object_set_array_member(obj, "devices", g_steal_pointer(&array));
    return gw_control_reply_ok(json_node_init_object(json_node_alloc(), obj));
}

static JsonNode *
gw_daemon_cmd_vms(GwDaemon *daemon)
{
    g_autoptr(JsonArray) array = json_array_new();
    g_autoptr(JsonObject) obj = json_object_new();
    g_autoptr(GList) vms = g_hash_table_get_values(daemon->vms);
    g_autoptr(GPtrArray) devices = gw_daemon_sorted_devices(daemon);

    for (GList *l = vms; l != NULL; l = l->next) {
        GwDaemonVm *vm = l->data;
        g_autoptr(JsonObject) v = json_object_new();
        g_autoptr(JsonArray) ids = json_array_new();
        for (guint i = 0; i < devices->len; i++) {
            GwDaemonDevice *dev = g_ptr_array_index(devices, i);
            if (g_strcmp0(dev->vm, vm->name) == 0)
                json_array_add_string_element(ids, dev->id);
        }
        json_object_set_string_member(v, "name", vm->name);
        if (vm->uuid != NULL)
            json_object_set_string_member(v, "uuid", vm->uuid);
        else
            json_object_set_null_member(v, "uuid");
        json_object_set_string_member(v, "state", "running");
        json_object_set_array_member(v, "devices", g_steal_pointer(&ids));
        json_array_add_object_element(array, g_steal_pointer(&v));
    }
    json_object_set_array_member(obj, "vms", g_steal_pointer(&array));
    return gw_control_reply_ok(json_node_init_object(json_node_alloc(), obj));
}

static JsonNode *
gw_daemon_cmd_assign(GwDaemon *daemon, JsonObject *request, const gchar *actor)
{
    JsonNode *error_reply = NULL;
    const gchar *ref = gw_daemon_string_arg(request, "device", &error_reply);
    const gchar *vm = ref != NULL ? gw_daemon_string_arg(request, "vm", &error_reply) : NULL;
    GwDaemonDevice *dev;

    if (vm == NULL)
        return error_reply;
    if (strchr(vm, '/') != NULL || vm[0] == '.')
        return gw_control_reply_error("bad-request", "\"%s\" is not a VM name", vm);
    dev = gw_daemon_find_device(daemon, ref, &error_reply);
    if (dev == NULL)
        return error_reply;
    if (dev->vm != NULL && g_strcmp0(dev->vm, vm) != 0)
        gw_daemon_unbind(daemon, dev, actor, "reassigned by an admin", TRUE);
    g_free(dev->manual_vm);
    dev->manual_vm = g_strdup(vm);
    dev->released = FALSE;
    policy_pools_remove_device(daemon->pools, dev->id);
    gw_daemon_audit(daemon, "assign", dev, vm, actor, NULL);
    if (!gw_daemon_bind(daemon, dev, vm, actor)) {
        gw_daemon_save_state(daemon);
        return gw_control_reply_error("internal", "%s: cannot serve the device (see the log)",
                                      dev->id);
    }
    gw_daemon_save_state(daemon);
    return gw_control_reply_ok(gw_daemon_device_json(dev));
}

static JsonNode *
gw_daemon_cmd_release(GwDaemon *daemon, JsonObject *request, const gchar *actor)
{
    JsonNode *error_reply = NULL;
    const gchar *ref = gw_daemon_string_arg(request, "device", &error_reply);
    GwDaemonDevice *dev;

    if (ref == NULL)
        return error_reply;
    dev = gw_daemon_find_device(daemon, ref, &error_reply);
    if (dev == NULL)
        return error_reply;
    gw_daemon_unbind(daemon, dev, actor, "released by an admin", TRUE);
    g_clear_pointer(&dev->manual_vm, g_free);
    dev->released = TRUE;
    /* out of its pool too, until it is replugged */
    policy_pools_remove_device(daemon->pools, dev->id);
    if (dev->attachment != NULL) {
        g_clear_pointer(&dev->attachment, gw_attachment_free);
        gw_daemon_audit(daemon, "release", dev, NULL, actor, "handed back to the host");
    }
    gw_daemon_touch(dev);
    gw_daemon_save_state(daemon);
    return gw_control_reply_ok(gw_daemon_device_json(dev));
}

static JsonNode *
gw_daemon_cmd_policy_reload(GwDaemon *daemon, const gchar *actor)
{
    g_autoptr(GPtrArray) diagnostics = NULL;
    g_autoptr(GError) error = NULL;
    g_autoptr(Policy) policy = policy_load_file(daemon->config.policy_path, &diagnostics, &error);
    g_autoptr(GPtrArray) devices = NULL;
    g_autoptr(JsonObject) obj = json_object_new();

    if (policy == NULL) {
        g_autoptr(JsonArray) diags = json_array_new();
        JsonNode *reply =
            gw_control_reply_error("bad-request", "%s; the running policy stays", error->message);
        for (guint i = 0; diagnostics != NULL && i < diagnostics->len; i++) {
            g_autofree gchar *text = policy_diagnostic_format(g_ptr_array_index(diagnostics, i));
            json_array_add_string_element(diags, text);
        }
        json_object_set_array_member(
            json_object_get_object_member(json_node_get_object(reply), "error"), "diagnostics",
            g_steal_pointer(&diags));
        return reply;
    }
    /* swap, then re-decide every device: a device whose new decision no
     * longer gives it to its VM is unbound, new assignments are served */
    g_clear_pointer(&daemon->pools, policy_pools_free);
    policy_unref(daemon->policy);
    daemon->policy = g_steal_pointer(&policy);
    daemon->pools = policy_pools_new(daemon->policy);
    devices = gw_daemon_sorted_devices(daemon);
    for (guint i = 0; i < devices->len; i++) {
        GwDaemonDevice *dev = g_ptr_array_index(devices, i);
        GwDaemonVm *vm;
        gw_daemon_decide(daemon, dev);
        if (dev->vm == NULL || dev->manual_vm != NULL)
            continue;
        vm = g_hash_table_lookup(daemon->vms, dev->vm);
        if (dev->decision.verdict != POLICY_VERDICT_ASSIGN ||
            !policy_decision_is_for_vm(daemon->policy, &dev->decision, dev->vm,
                                       vm != NULL ? vm->uuid : NULL)) {
            gw_daemon_unbind(daemon, dev, actor, "the reloaded policy no longer gives it", TRUE);
            if (dev->decision.verdict != POLICY_VERDICT_ASSIGN)
                g_clear_pointer(&dev->attachment, gw_attachment_free);
        } else if (dev->decision.target_kind == POLICY_TARGET_POOL &&
                   policy_pools_acquire(daemon->pools, dev->decision.target, dev->vm, NULL) ==
                       NULL) {
            gw_daemon_unbind(daemon, dev, actor, "pool changed", TRUE);
        }
    }
    for (guint i = 0; i < devices->len; i++) {
        GwDaemonDevice *dev = g_ptr_array_index(devices, i);
        const gchar *fixed = gw_daemon_fixed_vm(daemon, dev);
        if (dev->usb != NULL && dev->decision.verdict == POLICY_VERDICT_ASSIGN &&
            dev->attachment == NULL) {
            dev->attachment = gw_attachment_new(gw_usb_get_context(daemon->usb), dev->id);
            if (!gw_attachment_set_device(dev->attachment, dev->usb, &error)) {
                g_warning("%s", error->message);
                g_clear_error(&error);
            }
        }
        if (fixed != NULL && dev->vm == NULL)
            gw_daemon_bind(daemon, dev, fixed, actor);
    }
    gw_daemon_offer_all(daemon, actor);
    gw_daemon_save_state(daemon);
    g_message("policy %s reloaded: %u rules", daemon->config.policy_path,
              policy_get_rule_count(daemon->policy));
    gw_daemon_audit(daemon, "policy-reloaded", NULL, NULL, actor, daemon->config.policy_path);
    json_object_set_string_member(obj, "path", daemon->config.policy_path);
    json_object_set_int_member(obj, "rules", policy_get_rule_count(daemon->policy));
    return gw_control_reply_ok(json_node_init_object(json_node_alloc(), obj));
}

/* prepare: a VM with a `required` rule must not start without a device. */
static JsonNode *
gw_daemon_check_requirements(GwDaemon *daemon, const gchar *name, const gchar *uuid)
{
    g_autoptr(GArray) reqs = policy_get_requirements(daemon->policy, name, uuid);
    g_autoptr(GPtrArray) devices = gw_daemon_sorted_devices(daemon);

    for (guint r = 0; r < reqs->len; r++) {
        const PolicyRequirement *req = &g_array_index(reqs, PolicyRequirement, r);
        gboolean met = FALSE;
        g_autofree gchar *reason = NULL;
        for (guint i = 0; i < devices->len && !met; i++) {
            GwDaemonDevice *dev = g_ptr_array_index(devices, i);
            met = dev->usb != NULL && !dev->released && dev->manual_vm == NULL &&
                  (dev->vm == NULL || g_strcmp0(dev->vm, name) == 0) &&
                  policy_requirement_is_met_by(daemon->policy, req, dev->desc);
        }
        if (met)
            continue;
        reason = g_strdup_printf("usbgw: VM \"%s\" requires a USB device (%s:%u) and none is "
                                 "present",
                                 name, req->file, req->line);
        gw_daemon_audit(daemon, "veto", NULL, name, "hook", reason);
        return gw_control_reply_error("veto", "%s", reason);
    }
    return NULL;
}

static JsonNode *
gw_daemon_cmd_hook(GwDaemon *daemon, JsonObject *request)
{
    JsonNode *error_reply = NULL;
    const gchar *name = gw_daemon_string_arg(request, "domain", &error_reply);
    const gchar *uuid = name != NULL ? gw_daemon_string_arg(request, "uuid", &error_reply) : NULL;
    const gchar *op = uuid != NULL ? gw_daemon_string_arg(request, "op", &error_reply) : NULL;

    if (op == NULL)
        return error_reply;
    if (!g_uuid_string_is_valid(uuid))
        return gw_control_reply_error("bad-request", "\"uuid\" is not a UUID");
    g_free(daemon->hook_last_call);
    daemon->hook_last_call = gw_daemon_now();
    g_message("hook: vm \"%s\" %s", name, op);
    if (g_strcmp0(op, "prepare") == 0 || g_strcmp0(op, "migrate") == 0) {
        JsonNode *veto = gw_daemon_check_requirements(daemon, name, uuid);
        if (veto != NULL)
            return veto;
    } else if (g_strcmp0(op, "started") == 0) {
        gw_daemon_vm_started(daemon, name, uuid, "hook");
    } else if (g_strcmp0(op, "stopped") == 0 || g_strcmp0(op, "release") == 0) {
        gw_daemon_vm_stopped(daemon, name, "hook");
    }
    return gw_control_reply_ok(NULL);
}

/* ---- shares (SPICE ingress) ------------------------------------------------ */

/* The lending user's groups, for share rules that name a group; NULL when
 * the user is not known on this host. */
static gchar **
gw_daemon_user_groups(const gchar *user)
{
    struct passwd *pw = getpwnam(user);
    g_autofree gid_t *gids = NULL;
    GPtrArray *names;
    int count = 64;

    if (pw == NULL)
        return NULL;
    gids = g_new(gid_t, count);
    if (getgrouplist(user, pw->pw_gid, gids, &count) < 0) {
        gids = g_renew(gid_t, gids, count);
        if (getgrouplist(user, pw->pw_gid, gids, &count) < 0)
            return NULL;
    }
    names = g_ptr_array_new();
    for (int i = 0; i < count; i++) {
        struct group *gr = getgrgid(gids[i]);
        if (gr != NULL)
            g_ptr_array_add(names, g_strdup(gr->gr_name));
    }
    g_ptr_array_add(names, NULL);
    return (gchar **)g_ptr_array_free(names, FALSE);
}

static gboolean
gw_daemon_share_check(GwShare *share, const PolicyDevice *device, gchar **rule, gchar **reason,
                      gpointer user_data)
{
    GwDaemon *daemon = user_data;
    const gchar *vm = gw_share_get_vm(share);
    GwDaemonVm *v = g_hash_table_lookup(daemon->vms, vm);
    g_auto(GStrv) groups = gw_daemon_user_groups(gw_share_get_user(share));
    PolicyContext ctx = {
        .vm_name = vm,
        .vm_uuid = v != NULL ? v->uuid : NULL,
        .user = gw_share_get_user(share),
        .groups = (const gchar *const *)groups,
    };
    PolicyDecision decision;
    g_autofree gchar *what = policy_device_describe(device);

    policy_decide(daemon->policy, POLICY_ORIGIN_SHARE, device, &ctx, &decision);
    *rule = gw_daemon_rule_of(&decision);
    if (decision.verdict == POLICY_VERDICT_SHARE)
        return TRUE;
    if (decision.file != NULL)
        *reason =
            g_strdup_printf("%s: user \"%s\" may not lend it to vm \"%s\" (%s rule at %s)", what,
                            ctx.user, vm, policy_verdict_to_string(decision.verdict), *rule);
    else
        *reason = g_strdup_printf("%s: no share rule lets user \"%s\" lend it to vm \"%s\"", what,
                                  ctx.user, vm);
    return FALSE;
}

/* The audit record of a share's event; @device (lent or refused) and
 * @rule are nullable. */
static void
gw_daemon_share_audit(GwDaemon *daemon, const gchar *event, GwShare *share, const gchar *actor,
                      const gchar *reason, const PolicyDevice *device, const gchar *rule)
{
    GwDaemonVm *v = g_hash_table_lookup(daemon->vms, gw_share_get_vm(share));
    GwAuditEvent record = {
        .event = event,
        .device = device,
        .vm = gw_share_get_vm(share),
        .vm_uuid = v != NULL ? v->uuid : NULL,
        .rule = rule,
        .actor = actor,
        .reason = reason,
    };
    gw_daemon_record(daemon, &record);
}

static void
gw_daemon_share_event(GwShare *share, const gchar *event, const PolicyDevice *device,
                      const gchar *rule, const gchar *reason, gpointer user_data)
{
    const gchar *vm = gw_share_get_vm(share);
    const gchar *user = gw_share_get_user(share);
    g_autofree gchar *actor = g_strdup_printf("share user=%s", user);
    g_autofree gchar *what = device != NULL ? policy_device_describe(device) : NULL;

    if (g_strcmp0(event, "deny") == 0)
        g_message("vm \"%s\": refused %s lent by user \"%s\": %s", vm, what, user, reason);
    else
        g_message("vm \"%s\": %s %s (user \"%s\"%s%s)", vm,
                  g_strcmp0(event, "lend") == 0 ? "got the lent device" : "gave back", what, user,
                  rule != NULL ? ", rule " : "", rule != NULL ? rule : "");
    gw_daemon_share_audit(user_data, event, share, actor, reason, device, rule);
}

static void
gw_daemon_share_attach_done(GObject *source, GAsyncResult *result, gpointer user_data)
{
    g_autoptr(GError) error = NULL;
    g_autofree gchar *what = user_data;

    if (!gw_libvirt_attach_redirdev_finish(NULL, result, &error) &&
        !g_error_matches(error, G_IO_ERROR, G_IO_ERROR_CANCELLED))
        g_warning("%s: libvirt attach failed: %s", what, error->message);
}

/* Plugs the share's VM sockets into the running VM (libvirt only); a
 * socket whose QEMU is connected already is left alone. With @replug the
 * redirdevs are unplugged first (their QEMU chardev closed for good). */
static void
gw_daemon_share_plug(GwDaemon *daemon, GwShare *share, gboolean replug)
{
    GwDaemonVm *vm = g_hash_table_lookup(daemon->vms, gw_share_get_vm(share));
    const gchar *const *paths = gw_share_get_socket_paths(share);

    if (daemon->libvirt == NULL || vm == NULL || vm->uuid == NULL ||
        !gw_libvirt_is_connected(daemon->libvirt))
        return;
    for (guint i = 0; paths[i] != NULL; i++) {
        g_autofree gchar *alias = g_strdup_printf(GW_DAEMON_ALIAS_PREFIX "share%u", i);
        if (gw_share_socket_has_qemu(share, paths[i]))
            continue;
        if (replug)
            gw_libvirt_detach_redirdev_async(daemon->libvirt, vm->uuid, paths[i], NULL,
                                             gw_daemon_detach_done,
                                             g_strdup_printf("%s ← vm %s", paths[i], vm->name));
        gw_libvirt_attach_redirdev_async(daemon->libvirt, vm->uuid, paths[i], alias,
                                         daemon->cancellable, gw_daemon_share_attach_done,
                                         g_strdup_printf("%s → vm %s", paths[i], vm->name));
    }
}

static void
gw_daemon_share_qemu_left(GwShare *share, gpointer user_data)
{
    /* libvirt's hot-plugged chardevs do not reconnect: plug anew */
    gw_daemon_share_plug(user_data, share, TRUE);
}

/* Ends a share: the client is dropped, its devices leave the VM. */
static void
gw_daemon_unshare(GwDaemon *daemon, const gchar *vm, const gchar *actor, const gchar *reason)
{
    GwShare *share = g_hash_table_lookup(daemon->shares, vm);
    GwDaemonVm *v = g_hash_table_lookup(daemon->vms, vm);
    const gchar *const *paths;

    if (share == NULL)
        return;
    g_message("share vm \"%s\" user \"%s\" ended: %s", vm, gw_share_get_user(share), reason);
    gw_daemon_share_audit(daemon, "unshare", share, actor, reason, NULL, NULL);
    paths = gw_share_get_socket_paths(share);
    for (guint i = 0; daemon->libvirt != NULL && v != NULL && v->uuid != NULL && paths[i] != NULL;
         i++)
        gw_libvirt_detach_redirdev_async(daemon->libvirt, v->uuid, paths[i], NULL,
                                         gw_daemon_detach_done,
                                         g_strdup_printf("%s ← vm %s", paths[i], vm));
    g_hash_table_remove(daemon->shares, vm);
    gw_daemon_save_state(daemon);
}

static void
gw_daemon_share_ended(GwShare *share, const gchar *reason, gpointer user_data)
{
    g_autofree gchar *vm = g_strdup(gw_share_get_vm(share));
    gw_daemon_unshare(user_data, vm, "usbgwd", reason);
}

static gboolean
gw_daemon_spice_port_used(GwDaemon *daemon, guint port)
{
    GHashTableIter iter;
    gpointer value;

    g_hash_table_iter_init(&iter, daemon->shares);
    while (g_hash_table_iter_next(&iter, NULL, &value))
        if (gw_share_get_port(value) == port)
            return TRUE;
    return FALSE;
}

/* A SPICE port no share uses, 0 when all are taken. Ports are handed out
 * in turn, so a new share does not race the worker of one that just ended
 * for its port. */
static guint16
gw_daemon_free_spice_port(GwDaemon *daemon)
{
    guint base = daemon->config.spice_port_base;
    guint count = MIN(daemon->config.spice_ports, G_MAXUINT16 + 1u - base);

    for (guint i = 0; i < count; i++) {
        guint port = base + (daemon->next_spice_port + i) % count;
        if (!gw_daemon_spice_port_used(daemon, port)) {
            daemon->next_spice_port = (port - base + 1) % count;
            return (guint16)port;
        }
    }
    return 0;
}

static void
gw_daemon_share_used(GwShare *share, gpointer user_data)
{
    gw_daemon_save_state(user_data);
}

/* Starts a share (a new one, or one saved before a restart: @ticket and
 * @port given). */
static GwShare *
gw_daemon_start_share(GwDaemon *daemon, const gchar *vm, const gchar *user, guint ttl_s,
                      const gchar *ticket, guint16 port, gboolean used, GError **error)
{
    static const GwShareCallbacks callbacks = {
        .check = gw_daemon_share_check,
        .event = gw_daemon_share_event,
        .used = gw_daemon_share_used,
        .qemu_left = gw_daemon_share_qemu_left,
        .ended = gw_daemon_share_ended,
    };
    g_autofree gchar *dir = g_build_filename(daemon->config.rundir, "vm", vm, NULL);
    GwShareOptions options = {0};
    GwShare *share;

    options.vm = vm;
    options.user = user;
    options.ttl_s = ttl_s;
    options.ticket = ticket;
    options.used = used;
    options.socket_dir = dir;
    options.socket_uid = daemon->socket_uid;
    options.socket_gid = daemon->socket_gid;
    options.worker.port = port;
    options.worker.program = daemon->config.spice_worker;
    options.worker.address = daemon->config.spice_address;
    options.worker.channels = daemon->config.spice_channels;
    options.worker.user = geteuid() == 0 ? daemon->config.spice_user : NULL;
    options.worker.tls_cert = daemon->config.spice_tls_cert;
    options.worker.tls_key = daemon->config.spice_tls_key;
    options.worker.tls_ca = daemon->config.spice_tls_ca;
    share = gw_share_new(&options, &callbacks, daemon, error);
    if (share == NULL)
        return NULL;
    g_hash_table_insert(daemon->shares, (gpointer)gw_share_get_vm(share), share);
    gw_daemon_share_plug(daemon, share, FALSE);
    gw_daemon_save_state(daemon);
    return share;
}

/* Shares saved before a restart come back with their ticket and port, so
 * a lending client reconnects as after a network loss. */
static void
gw_daemon_restore_shares(GwDaemon *daemon)
{
    JsonObject *saved = gw_json_get_object(daemon->saved, "shares");
    g_autoptr(GList) vms = saved != NULL ? json_object_get_members(saved) : NULL;
    gint64 now = g_get_real_time() / G_USEC_PER_SEC;

    for (GList *l = vms; l != NULL; l = l->next) {
        const gchar *vm = l->data;
        JsonObject *entry = gw_json_get_object(saved, vm);
        const gchar *user = gw_json_get_string(entry, "user");
        const gchar *ticket = gw_json_get_string(entry, "ticket");
        gint64 port = entry != NULL ? json_object_get_int_member_with_default(entry, "port", 0) : 0;
        gint64 expires =
            entry != NULL ? json_object_get_int_member_with_default(entry, "expires", -1) : -1;
        g_autoptr(GError) error = NULL;

        if (daemon->config.spice_port_base == 0) {
            g_warning("share of vm \"%s\" not restored: SPICE ingress is off now", vm);
            continue;
        }
        if (user == NULL || ticket == NULL || ticket[0] == '\0' || strlen(ticket) > 60 ||
            strchr(vm, '/') != NULL || vm[0] == '.' || port < daemon->config.spice_port_base ||
            port >= (gint64)daemon->config.spice_port_base + daemon->config.spice_ports ||
            expires < 0) {
            g_warning("share of vm \"%s\" not restored: its saved entry is malformed or its "
                      "port is outside spice-port-base/spice-ports",
                      vm);
            continue;
        }
        if (expires != 0 && expires <= now) {
            g_message("share of vm \"%s\" not restored: its ticket expired unused", vm);
            continue;
        }
        if (g_hash_table_contains(daemon->shares, vm) ||
            gw_daemon_spice_port_used(daemon, (guint)port))
            continue;
        if (gw_daemon_start_share(daemon, vm, user, expires != 0 ? (guint)(expires - now) : 0,
                                  ticket, (guint16)port, expires == 0, &error) == NULL) {
            g_warning("share of vm \"%s\" not restored: %s", vm, error->message);
            continue;
        }
        g_message("share vm \"%s\" user \"%s\" restored on SPICE port %u", vm, user, (guint)port);
        gw_daemon_share_audit(daemon, "share", g_hash_table_lookup(daemon->shares, vm),
                              "usbgwd (restored from the state file)", user, NULL, NULL);
    }
}

static JsonNode *
gw_daemon_cmd_share(GwDaemon *daemon, JsonObject *request, const GwControlPeer *peer,
                    const gchar *actor)
{
    JsonNode *error_reply = NULL;
    const gchar *vm = gw_daemon_string_arg(request, "vm", &error_reply);
    g_autofree gchar *user = NULL;
    g_autofree gchar *uri = NULL;
    g_autoptr(GError) error = NULL;
    const gchar *host;
    JsonNode *node;
    gint64 ttl = daemon->config.share_ttl;
    guint16 port;
    GwShare *share;
    JsonObject *obj;

    if (vm == NULL)
        return error_reply;
    if (daemon->config.spice_port_base == 0)
        return gw_control_reply_error("not-configured",
                                      "SPICE ingress is off: set spice-port-base in usbgwd.conf");
    if (strchr(vm, '/') != NULL || vm[0] == '.')
        return gw_control_reply_error("bad-request", "\"%s\" is not a VM name", vm);
    node = json_object_get_member(request, "user");
    if (node != NULL && !JSON_NODE_HOLDS_NULL(node)) {
        if (json_node_get_value_type(node) != G_TYPE_STRING ||
            json_node_get_string(node)[0] == '\0')
            return gw_control_reply_error("bad-request", "\"user\" must be a non-empty string");
        user = g_strdup(json_node_get_string(node));
    } else {
        struct passwd *pw = getpwuid(peer->uid);
        if (pw == NULL)
            return gw_control_reply_error("bad-request", "uid %u has no user name: pass \"user\"",
                                          (guint)peer->uid);
        user = g_strdup(pw->pw_name);
    }
    node = json_object_get_member(request, "ttl");
    if (node != NULL && !JSON_NODE_HOLDS_NULL(node)) {
        if (json_node_get_value_type(node) != G_TYPE_INT64 || json_node_get_int(node) < 1 ||
            json_node_get_int(node) > 7 * 24 * 3600)
            return gw_control_reply_error("bad-request", "\"ttl\" must be seconds, 1 to 604800");
        ttl = json_node_get_int(node);
    }
    share = g_hash_table_lookup(daemon->shares, vm);
    if (share != NULL) {
        /* a new share for the VM replaces the old one: same endpoint, new
         * ticket, the old client dropped */
        g_autofree gchar *old_user = g_strdup(gw_share_get_user(share));
        if (!gw_share_renew(share, user, (guint)ttl, &error))
            return gw_control_reply_error("internal", "cannot renew the share of vm \"%s\": %s", vm,
                                          error->message);
        gw_daemon_share_audit(daemon, "unshare", share, actor, "replaced by a new share", NULL,
                              NULL);
        g_message("share vm \"%s\" user \"%s\" replaced by a new share", vm, old_user);
        port = gw_share_get_port(share);
        gw_daemon_save_state(daemon);
    } else {
        port = gw_daemon_free_spice_port(daemon);
        if (port == 0)
            return gw_control_reply_error("busy",
                                          "all %u SPICE ports from %u are in use by shares "
                                          "(usbgwctl shares; raise spice-ports)",
                                          daemon->config.spice_ports,
                                          daemon->config.spice_port_base);
        share = gw_daemon_start_share(daemon, vm, user, (guint)ttl, NULL, port, FALSE, &error);
        if (share == NULL)
            return gw_control_reply_error("internal", "cannot start the share for vm \"%s\": %s",
                                          vm, error->message);
    }
    g_message("share vm \"%s\" user \"%s\": SPICE port %u, ticket valid %" G_GINT64_FORMAT
              " s for the first login (%s)",
              vm, user, port, ttl, actor);
    gw_daemon_share_audit(daemon, "share", share, actor, user, NULL, NULL);

    host = daemon->config.spice_host != NULL ? daemon->config.spice_host : g_get_host_name();
    uri = g_strdup_printf(
        "%s://%s:%u", daemon->config.spice_tls_cert != NULL ? "spice+tls" : "spice", host, port);
    node = gw_share_to_json(share);
    obj = json_node_get_object(node);
    json_object_set_string_member(obj, "uri", uri);
    json_object_set_string_member(obj, "ticket", gw_share_get_ticket(share));
    json_object_set_string_member(obj, "host", host);
    json_object_set_boolean_member(obj, "tls", daemon->config.spice_tls_cert != NULL);
    if (daemon->config.spice_tls_ca != NULL)
        json_object_set_string_member(obj, "tls_ca", daemon->config.spice_tls_ca);
    return gw_control_reply_ok(node);
}

static JsonNode *
gw_daemon_cmd_unshare(GwDaemon *daemon, JsonObject *request, const gchar *actor)
{
    JsonNode *error_reply = NULL;
    const gchar *vm = gw_daemon_string_arg(request, "vm", &error_reply);
    g_autoptr(JsonObject) obj = json_object_new();

    if (vm == NULL)
        return error_reply;
    if (!g_hash_table_contains(daemon->shares, vm))
        return gw_control_reply_error("not-found", "vm \"%s\" has no share (usbgwctl shares)", vm);
    gw_daemon_unshare(daemon, vm, actor, "revoked by an admin");
    json_object_set_string_member(obj, "vm", vm);
    return gw_control_reply_ok(json_node_init_object(json_node_alloc(), g_steal_pointer(&obj)));
}

static JsonNode *
gw_daemon_cmd_shares(GwDaemon *daemon)
{
    g_autoptr(JsonArray) array = json_array_new();
    g_autoptr(JsonObject) obj = json_object_new();
    g_autoptr(GList) vms = g_hash_table_get_keys(daemon->shares);

    vms = g_list_sort(vms, (GCompareFunc)g_strcmp0);
    for (GList *l = vms; l != NULL; l = l->next)
        json_array_add_element(array,
                               gw_share_to_json(g_hash_table_lookup(daemon->shares, l->data)));
    json_object_set_array_member(obj, "shares", g_steal_pointer(&array));
    return gw_control_reply_ok(json_node_init_object(json_node_alloc(), g_steal_pointer(&obj)));
}

static JsonNode *
gw_daemon_control_handler(JsonObject *request, const GwControlPeer *peer, gpointer user_data)
{
    GwDaemon *daemon = user_data;
    const gchar *command = json_object_get_string_member(request, "command");
    g_autofree gchar *actor = g_strdup_printf("usbgwctl uid=%u", (guint)peer->uid);

    if (g_strcmp0(command, "status") == 0)
        return gw_daemon_cmd_status(daemon);
    if (g_strcmp0(command, "hook") == 0) {
        if (peer->uid != 0)
            return gw_control_reply_error("permission-denied",
                                          "hook messages are accepted from root only");
        return gw_daemon_cmd_hook(daemon, request);
    }
    if (!peer->admin)
        return gw_control_reply_error("permission-denied",
                                      "uid %u may not use '%s': run as root or as a member of "
                                      "group usbgw",
                                      (guint)peer->uid, command);
    if (g_strcmp0(command, "list") == 0)
        return gw_daemon_cmd_list(daemon);
    if (g_strcmp0(command, "vms") == 0)
        return gw_daemon_cmd_vms(daemon);
    if (g_strcmp0(command, "assign") == 0)
        return gw_daemon_cmd_assign(daemon, request, actor);
    if (g_strcmp0(command, "release") == 0)
        return gw_daemon_cmd_release(daemon, request, actor);
    if (g_strcmp0(command, "policy-reload") == 0)
        return gw_daemon_cmd_policy_reload(daemon, actor);
    if (g_strcmp0(command, "share") == 0)
        return gw_daemon_cmd_share(daemon, request, peer, actor);
    if (g_strcmp0(command, "unshare") == 0)
        return gw_daemon_cmd_unshare(daemon, request, actor);
    if (g_strcmp0(command, "shares") == 0)
        return gw_daemon_cmd_shares(daemon);
    if (g_strcmp0(command, "subscribe") == 0) {
        g_autoptr(JsonObject) obj = json_object_new();
        JsonNode *reply;
        json_object_set_boolean_member(obj, "subscribed", TRUE);
        reply = gw_control_reply_ok(json_node_init_object(json_node_alloc(), obj));
        gw_control_reply_set_subscribe(reply);
        return reply;
    }
    return gw_control_reply_error("unknown-command",
                                  "unknown command '%s' (status, list, vms, assign, release, "
                                  "policy-reload, share, unshare, shares, subscribe, hook)",
                                  command);
}

/* ---- life cycle ------------------------------------------------------------- */

GwDaemon *
gw_daemon_new(const GwConfig *config, GError **error)
{
    g_autoptr(GwDaemon) daemon = g_new0(GwDaemon, 1);

    gw_config_copy(&daemon->config, config);
    daemon->devices = g_hash_table_new_full(g_str_hash, g_str_equal, NULL, gw_daemon_device_free);
    daemon->by_usb = g_hash_table_new(g_direct_hash, g_direct_equal);
    daemon->vms = g_hash_table_new_full(g_str_hash, g_str_equal, NULL, gw_daemon_vm_free);
    daemon->shares =
        g_hash_table_new_full(g_str_hash, g_str_equal, NULL, (GDestroyNotify)gw_share_free);
    daemon->next_tcp_port = config->tcp_port_base;
    daemon->started = gw_daemon_now();
    daemon->cancellable = g_cancellable_new();
    daemon->usb = gw_usb_new(g_main_context_default(), error);
    if (daemon->usb == NULL)
        return NULL;
    return g_steal_pointer(&daemon);
}

/* socket-user / socket-group: names to ids, once, at start. */
static gboolean
gw_daemon_resolve_access(GwDaemon *daemon, GError **error)
{
    daemon->socket_uid = (uid_t)-1;
    daemon->socket_gid = (gid_t)-1;
    if (daemon->config.socket_user != NULL) {
        struct passwd *pw = getpwnam(daemon->config.socket_user);
        if (pw == NULL) {
            g_set_error(error, G_IO_ERROR, G_IO_ERROR_NOT_FOUND,
                        "socket-user '%s' is not a user on this host", daemon->config.socket_user);
            return FALSE;
        }
        daemon->socket_uid = pw->pw_uid;
        daemon->socket_gid = pw->pw_gid;
    }
    if (daemon->config.socket_group != NULL) {
        struct group *gr = getgrnam(daemon->config.socket_group);
        if (gr == NULL) {
            g_set_error(error, G_IO_ERROR, G_IO_ERROR_NOT_FOUND,
                        "socket-group '%s' is not a group on this host",
                        daemon->config.socket_group);
            return FALSE;
        }
        daemon->socket_gid = gr->gr_gid;
    }
    return TRUE;
}

gboolean
gw_daemon_start(GwDaemon *daemon, GError **error)
{
    g_autoptr(GPtrArray) diagnostics = NULL;

    if (!gw_daemon_resolve_access(daemon, error))
        return FALSE;

    daemon->policy = policy_load_file(daemon->config.policy_path, &diagnostics, error);
    if (daemon->policy == NULL) {
        for (guint i = 0; diagnostics != NULL && i < diagnostics->len; i++) {
            g_autofree gchar *text = policy_diagnostic_format(g_ptr_array_index(diagnostics, i));
            g_printerr("%s\n", text);
        }
        return FALSE;
    }
    daemon->pools = policy_pools_new(daemon->policy);
    g_message("policy %s: %u rules", daemon->config.policy_path,
              policy_get_rule_count(daemon->policy));
    daemon->saved = gw_state_load(daemon->config.state_path);
    daemon->audit = gw_audit_new(daemon->config.audit_log, error);
    if (daemon->audit == NULL)
        return FALSE;
    daemon->control =
        gw_control_new(daemon->config.control_socket, gw_daemon_control_handler, daemon, error);
    if (daemon->control == NULL)
        return FALSE;
    gw_daemon_restore_shares(daemon);
    if (daemon->config.libvirt_uri != NULL) {
        const GwLibvirtHandlers handlers = {
            .connected = gw_daemon_libvirt_connected,
            .domain_started = gw_daemon_libvirt_started,
            .domain_stopped = gw_daemon_libvirt_stopped,
            .device_removed = gw_daemon_libvirt_removed,
        };
        daemon->libvirt = gw_libvirt_new(daemon->config.libvirt_uri, g_main_context_default());
        gw_libvirt_set_handlers(daemon->libvirt, &handlers, daemon);
        gw_libvirt_start(daemon->libvirt);
    }
    return gw_usb_start(daemon->usb, gw_daemon_hotplug, daemon, error);
}

void
gw_daemon_free(GwDaemon *daemon)
{
    if (daemon == NULL)
        return;
    g_cancellable_cancel(daemon->cancellable);
    g_clear_pointer(&daemon->libvirt, gw_libvirt_free);
    /* shares before the control socket and audit their ends use */
    g_clear_pointer(&daemon->shares, g_hash_table_unref);
    g_clear_pointer(&daemon->control, gw_control_free);
    /* devices (with their attachments) before the usb context they use */
    g_clear_pointer(&daemon->by_usb, g_hash_table_unref);
    g_clear_pointer(&daemon->devices, g_hash_table_unref);
    g_clear_pointer(&daemon->vms, g_hash_table_unref);
    g_clear_pointer(&daemon->usb, gw_usb_free);
    g_clear_pointer(&daemon->pools, policy_pools_free);
    g_clear_pointer(&daemon->policy, policy_unref);
    g_clear_pointer(&daemon->audit, gw_audit_free);
    g_clear_pointer(&daemon->saved, json_object_unref);
    g_clear_object(&daemon->cancellable);
    g_free(daemon->started);
    g_free(daemon->hook_last_call);
    gw_config_clear(&daemon->config);
    g_free(daemon);
}
