/* GwBinder (gw-binder.h): who gets which device. Devices, VMs, the
 * binding itself and the events that change it (arrivals, VM starts and
 * stops, admins' assignments and releases, keys held elsewhere in the
 * cluster, policy reload). What a running VM is offered is
 * gw-binder-offer.c; the state kept across restarts gw-binder-state.c. */
#include "gw-binder-private.h"

#include "gw-log.h"

#include <string.h>

/* The one VM a device's assignment names (the journal's USBGW_VM): an
 * admin's, or a policy target that is a VM name rather than a glob or a
 * pool; NULL otherwise. */
static const gchar *
gw_binder_named_vm(const GwBinderDevice *dev)
{
    if (dev->manual_vm != NULL)
        return dev->manual_vm;
    if (dev->decision.target_kind == POLICY_TARGET_VM && dev->decision.target != NULL &&
        strpbrk(dev->decision.target, "*?[") == NULL)
        return dev->decision.target;
    return NULL;
}

static void
gw_binder_device_free(gpointer data)
{
    GwBinderDevice *dev = data;
    policy_device_free(dev->desc);
    g_free(dev->id);
    g_free(dev->vm);
    g_free(dev->manual_vm);
    g_free(dev);
}

static void
gw_binder_vm_free(gpointer data)
{
    GwBinderVm *vm = data;
    g_free(vm->name);
    g_free(vm->uuid);
    g_free(vm);
}

GwBinder *
gw_binder_new(Policy *policy, const GwBinderOps *ops, gpointer user_data)
{
    GwBinder *binder = g_new0(GwBinder, 1);
    binder->policy = policy_ref(policy);
    binder->pools = policy_pools_new(policy);
    binder->elsewhere = g_hash_table_new_full(g_str_hash, g_str_equal, g_free, g_free);
    binder->ops = ops;
    binder->user_data = user_data;
    binder->devices = g_hash_table_new_full(g_str_hash, g_str_equal, NULL, gw_binder_device_free);
    binder->vms = g_hash_table_new_full(g_str_hash, g_str_equal, NULL, gw_binder_vm_free);
    binder->vm_order = g_ptr_array_new();
    binder->saved = gw_binder_state_new();
    binder->wishes =
        g_hash_table_new_full(g_str_hash, g_str_equal, g_free, (GDestroyNotify)g_ptr_array_unref);
    return binder;
}

void
gw_binder_free(GwBinder *binder)
{
    if (binder == NULL)
        return;
    g_ptr_array_unref(binder->vm_order);
    g_hash_table_unref(binder->vms);
    g_hash_table_unref(binder->devices);
    g_hash_table_unref(binder->wishes);
    g_hash_table_unref(binder->elsewhere);
    gw_binder_state_free(binder->saved);
    policy_pools_free(binder->pools);
    policy_unref(binder->policy);
    g_free(binder);
}

Policy *
gw_binder_get_policy(GwBinder *binder)
{
    return binder->policy;
}

const GwBinderDevice *
gw_binder_lookup(GwBinder *binder, const gchar *id)
{
    return g_hash_table_lookup(binder->devices, id);
}

static gint
gw_binder_compare_devices(gconstpointer a, gconstpointer b)
{
    const GwBinderDevice *x = *(GwBinderDevice *const *)a;
    const GwBinderDevice *y = *(GwBinderDevice *const *)b;
    return strcmp(x->id, y->id);
}

/* In identity order, so every "first free" choice is deterministic. */
GPtrArray *
gw_binder_list_devices(GwBinder *binder)
{
    GPtrArray *out = g_ptr_array_new();
    GHashTableIter iter;
    gpointer value;

    g_hash_table_iter_init(&iter, binder->devices);
    while (g_hash_table_iter_next(&iter, NULL, &value))
        g_ptr_array_add(out, value);
    g_ptr_array_sort(out, gw_binder_compare_devices);
    return out;
}

const gchar *
gw_binder_get_vm_uuid(GwBinder *binder, const gchar *name)
{
    GwBinderVm *vm = g_hash_table_lookup(binder->vms, name);
    return vm != NULL ? vm->uuid : NULL;
}

gboolean
gw_binder_vm_is_running(GwBinder *binder, const gchar *name)
{
    return g_hash_table_contains(binder->vms, name);
}

GPtrArray *
gw_binder_list_vms(GwBinder *binder)
{
    GPtrArray *out = g_ptr_array_new();
    for (guint i = 0; i < binder->vm_order->len; i++)
        g_ptr_array_add(out, ((GwBinderVm *)g_ptr_array_index(binder->vm_order, i))->name);
    return out;
}

gchar *
gw_binder_rule_of(const PolicyDecision *decision)
{
    return decision->file != NULL ? g_strdup_printf("%s:%u", decision->file, decision->line) : NULL;
}

void
gw_binder_event(GwBinder *binder, GwBinderEvent event, GwBinderDevice *dev, const gchar *vm,
                const gchar *actor, const gchar *reason)
{
    binder->ops->event(event, dev != NULL ? dev->id : NULL, vm, actor, reason, binder->user_data);
}

/* A VM the device goes to whether or not it runs: an admin's assignment, a
 * literal VM name, or the UUID of a running VM. The socket can exist before
 * the VM runs, so a VM started by hand finds it. */
const gchar *
gw_binder_fixed_vm(GwBinder *binder, GwBinderDevice *dev)
{
    if (dev->manual_vm != NULL)
        return dev->manual_vm;
    if (dev->released || dev->decision.verdict != POLICY_VERDICT_ASSIGN)
        return NULL;
    if (dev->decision.target_kind == POLICY_TARGET_VM &&
        strpbrk(dev->decision.target, "*?") == NULL)
        return dev->decision.target;
    if (dev->decision.target_kind == POLICY_TARGET_VM_UUID) {
        for (guint i = 0; i < binder->vm_order->len; i++) {
            GwBinderVm *vm = g_ptr_array_index(binder->vm_order, i);
            if (vm->uuid != NULL && g_ascii_strcasecmp(vm->uuid, dev->decision.target) == 0)
                return vm->name;
        }
    }
    return NULL;
}

gboolean
gw_binder_bind(GwBinder *binder, GwBinderDevice *dev, const gchar *vm, const gchar *actor)
{
    if (!policy_vm_name_is_valid(vm)) {
        gw_log_device(G_LOG_LEVEL_WARNING, dev->id, vm, NULL,
                      "%s: VM name '%s' cannot name a socket directory", dev->id, vm);
        return FALSE;
    }
    if (!binder->ops->bind(dev->id, vm, actor, binder->user_data))
        return FALSE;
    dev->claimed = TRUE;
    /* a lease saved before a restart is used up: the binding is the truth
     * from now on */
    g_hash_table_remove(binder->saved->leases, dev->id);
    if (g_strcmp0(dev->vm, vm) != 0) {
        g_free(dev->vm);
        dev->vm = g_strdup(vm);
    }
    return TRUE;
}

static void
gw_binder_unbind(GwBinder *binder, GwBinderDevice *dev, const gchar *actor, const gchar *reason,
                 gboolean detach)
{
    g_autofree gchar *vm = g_steal_pointer(&dev->vm);

    if (vm == NULL)
        return;
    binder->ops->unbind(dev->id, vm, detach, binder->user_data);
    gw_log_device(G_LOG_LEVEL_MESSAGE, dev->id, vm, NULL, "%s: unbound from vm \"%s\" (%s)",
                  dev->id, vm, reason);
    gw_binder_event(binder, GW_BINDER_EVENT_DETACH, dev, vm, actor, reason);
}

static void
gw_binder_unclaim(GwBinder *binder, GwBinderDevice *dev, const gchar *actor)
{
    gboolean was_claimed = binder->ops->unclaim(dev->id, binder->user_data);
    dev->claimed = FALSE;
    if (was_claimed && actor != NULL)
        gw_binder_event(binder, GW_BINDER_EVENT_RELEASE, dev, NULL, actor,
                        "handed back to the host");
}

/* Whether the policy's decision keeps a device claimed by usbgwd: it goes
 * to a VM (assign), or usbgwd serves it to other gateways' links (export). */
static gboolean
gw_binder_decision_claims(const PolicyDecision *decision)
{
    switch (decision->verdict) {
    case POLICY_VERDICT_ASSIGN:
    case POLICY_VERDICT_EXPORT:
    case POLICY_VERDICT_METADATA:
        return TRUE;
    case POLICY_VERDICT_NONE:
    case POLICY_VERDICT_SHARE:
    case POLICY_VERDICT_DENY:
        break;
    }
    return FALSE;
}

static gboolean
gw_binder_claim(GwBinder *binder, GwBinderDevice *dev)
{
    if (!binder->ops->claim(dev->id, binder->user_data))
        return FALSE;
    dev->claimed = TRUE;
    return TRUE;
}

/* Until gw_binder_settle(), a saved lease keeps @dev for the VM that held
 * it before the restart: that VM may not have been reported running yet. */
gboolean
gw_binder_is_reserved(GwBinder *binder, GwBinderDevice *dev, const gchar *vm)
{
    const gchar *holder;

    if (binder->settled)
        return FALSE;
    holder = g_hash_table_lookup(binder->saved->leases, dev->id);
    return holder != NULL && g_strcmp0(holder, vm) != 0;
}

static void
gw_binder_decide(GwBinder *binder, GwBinderDevice *dev)
{
    g_autoptr(GError) error = NULL;

    policy_decide(binder->policy, POLICY_ORIGIN_HOST, dev->desc, NULL, &dev->decision);
    /* an admin's assign or release takes the device out of its pool, and
     * so does its key being held elsewhere in the cluster */
    if (dev->manual_vm == NULL && !dev->released &&
        !g_hash_table_contains(binder->elsewhere, dev->id) &&
        dev->decision.verdict == POLICY_VERDICT_ASSIGN &&
        dev->decision.target_kind == POLICY_TARGET_POOL &&
        !policy_pools_add_device(binder->pools, dev->decision.target, dev->id, &error))
        gw_log_device(G_LOG_LEVEL_WARNING, dev->id, NULL, NULL, "%s: %s", dev->id, error->message);
}

void
gw_binder_device_arrived(GwBinder *binder, const gchar *id, const PolicyDevice *desc)
{
    GwBinderDevice *dev = g_hash_table_lookup(binder->devices, id);
    g_autofree gchar *rule = NULL;
    g_autofree gchar *leased_to = NULL;
    const gchar *fixed;

    if (dev == NULL) {
        dev = g_new0(GwBinderDevice, 1);
        dev->id = g_strdup(id);
        dev->manual_vm = g_strdup(g_hash_table_lookup(binder->saved->assignments, id));
        dev->released = g_hash_table_contains(binder->saved->released, id);
        g_hash_table_insert(binder->devices, dev->id, dev);
    }
    policy_device_free(dev->desc);
    dev->desc = policy_device_copy(desc);
    dev->present = TRUE;
    gw_binder_decide(binder, dev);
    rule = gw_binder_rule_of(&dev->decision);

    if (dev->manual_vm == NULL) {
        switch (dev->decision.verdict) {
        case POLICY_VERDICT_NONE:
        case POLICY_VERDICT_SHARE:
            gw_log_device(G_LOG_LEVEL_INFO, dev->id, NULL, NULL,
                          "%s arrived: no rule, left to the host", dev->id);
            return;
        case POLICY_VERDICT_DENY:
            gw_log_device(G_LOG_LEVEL_MESSAGE, dev->id, NULL, NULL,
                          "%s arrived: denied by %s, left to the host", dev->id, rule);
            gw_binder_event(binder, GW_BINDER_EVENT_DENY, dev, NULL, "policy",
                            "a deny rule matched");
            return;
        case POLICY_VERDICT_ASSIGN:
        case POLICY_VERDICT_EXPORT:
        case POLICY_VERDICT_METADATA:
            break;
        }
    }
    if (dev->released) {
        gw_log_device(G_LOG_LEVEL_MESSAGE, dev->id, NULL, NULL,
                      "%s arrived: released by an admin, left to the host", dev->id);
        return;
    }
    /* claim at once, so the host never binds a driver to it */
    if (!gw_binder_claim(binder, dev))
        return;
    if (dev->manual_vm == NULL && dev->decision.verdict == POLICY_VERDICT_EXPORT) {
        /* no VM here gets it: usbgwd serves it to the gateway links the
         * export rule allows */
        gw_log_device(G_LOG_LEVEL_MESSAGE, dev->id, NULL, NULL,
                      "%s arrived: exported to gateway \"%s\" by %s, kept claimed", dev->id,
                      dev->decision.target, rule);
        return;
    }
    if (dev->manual_vm == NULL && dev->decision.verdict == POLICY_VERDICT_METADATA)
        gw_log_device(G_LOG_LEVEL_MESSAGE, dev->id, NULL, NULL,
                      "%s arrived: for the VMs %s \"%s\" that ask for it in their metadata (%s), "
                      "kept claimed",
                      dev->id, policy_target_kind_to_string(dev->decision.target_kind),
                      dev->decision.target, rule);
    else
        gw_log_device(
            G_LOG_LEVEL_MESSAGE, dev->id, gw_binder_named_vm(dev), NULL,
            "%s arrived: assigned to %s \"%s\" by %s", dev->id,
            dev->manual_vm != NULL ? "vm" : policy_target_kind_to_string(dev->decision.target_kind),
            dev->manual_vm != NULL ? dev->manual_vm : dev->decision.target,
            dev->manual_vm != NULL ? "usbgwctl assign" : rule);
    if (dev->vm != NULL) {
        /* replugged: the socket stayed, the peer gets device_connect */
        gw_binder_bind(binder, dev, dev->vm, "policy");
        return;
    }
    fixed = gw_binder_fixed_vm(binder, dev);
    if (fixed != NULL) {
        gw_binder_bind(binder, dev, fixed, "policy");
        return;
    }
    /* a lease from before a restart: the same device goes back to that VM */
    leased_to = g_strdup(g_hash_table_lookup(binder->saved->leases, dev->id));
    if (leased_to != NULL && g_hash_table_contains(binder->vms, leased_to) &&
        gw_binder_gives(binder, dev, leased_to, gw_binder_get_vm_uuid(binder, leased_to))) {
        if (dev->decision.target_kind != POLICY_TARGET_POOL) {
            if (gw_binder_bind(binder, dev, leased_to, "state"))
                return;
        } else if (policy_pools_acquire_key(binder->pools, dev->decision.target, leased_to, dev->id,
                                            NULL)) {
            if (gw_binder_bind(binder, dev, leased_to, "state"))
                return;
            gw_binder_pool_drop(binder, dev);
        }
        /* its VM runs and holds another: the saved lease cannot be had */
        g_hash_table_remove(binder->saved->leases, dev->id);
    }
    gw_binder_offer_all(binder, "policy");
}

void
gw_binder_device_left(GwBinder *binder, const gchar *id)
{
    GwBinderDevice *dev = g_hash_table_lookup(binder->devices, id);

    if (dev == NULL)
        return;
    dev->present = FALSE;
    /* a released device follows the policy again once it is replugged */
    dev->released = FALSE;
}

void
gw_binder_vm_started(GwBinder *binder, const gchar *name, const gchar *uuid, const gchar *actor)
{
    GwBinderVm *vm = g_hash_table_lookup(binder->vms, name);

    if (vm == NULL) {
        vm = g_new0(GwBinderVm, 1);
        vm->name = g_strdup(name);
        g_hash_table_insert(binder->vms, vm->name, vm);
        g_ptr_array_add(binder->vm_order, vm);
        gw_log_device(G_LOG_LEVEL_MESSAGE, NULL, name, NULL, "vm \"%s\" runs (%s)", name, actor);
    }
    if (uuid != NULL && g_ascii_strcasecmp(vm->uuid != NULL ? vm->uuid : "", uuid) != 0) {
        g_free(vm->uuid);
        vm->uuid = g_ascii_strdown(uuid, -1);
    }
    gw_binder_offer_vm(binder, vm, actor);
}

void
gw_binder_set_wishes(GwBinder *binder, const gchar *name, const GPtrArray *wishes,
                     const gchar *actor)
{
    GPtrArray *old = gw_binder_get_wishes(binder, name);
    GwBinderVm *vm = g_hash_table_lookup(binder->vms, name);
    g_autoptr(GPtrArray) items = g_ptr_array_new_with_free_func(gw_binder_wish_free);
    g_autoptr(GPtrArray) devices = NULL;
    guint count = wishes != NULL ? wishes->len : 0;
    gboolean same = old != NULL && old->len == count;

    for (guint i = 0; same && i < count; i++)
        same = policy_wish_equal(((GwBinderWish *)g_ptr_array_index(old, i))->wish,
                                 g_ptr_array_index(wishes, i));
    if (same || (old == NULL && count == 0))
        return; /* unchanged: a denial is not reported again */
    for (guint i = 0; i < count; i++) {
        GwBinderWish *item = g_new0(GwBinderWish, 1);
        item->wish = policy_wish_copy(g_ptr_array_index(wishes, i));
        g_ptr_array_add(items, item);
    }
    if (count > 0)
        g_hash_table_insert(binder->wishes, g_strdup(name), g_steal_pointer(&items));
    else
        g_hash_table_remove(binder->wishes, name);
    g_message("vm \"%s\": %u metadata wish%s (%s)", name, count, count == 1 ? "" : "es", actor);
    if (vm == NULL)
        return;
    /* what it no longer asks for goes back */
    policy_pools_release_vm(binder->pools, name);
    devices = gw_binder_list_devices(binder);
    for (guint i = 0; i < devices->len; i++) {
        GwBinderDevice *dev = g_ptr_array_index(devices, i);
        if (g_strcmp0(dev->vm, name) != 0 || dev->manual_vm != NULL ||
            g_strcmp0(gw_binder_fixed_vm(binder, dev), name) == 0)
            continue;
        if (gw_binder_gives(binder, dev, name, vm->uuid)) {
            /* keeps its pool key: the lease is taken again at once */
            if (dev->decision.target_kind == POLICY_TARGET_POOL) {
                gw_binder_sync_pool_wishes(binder, vm);
                if (policy_pools_acquire_key(binder->pools, dev->decision.target, name, dev->id,
                                             NULL))
                    continue;
            } else {
                continue;
            }
        }
        gw_binder_unbind(binder, dev, actor, "the VM's metadata no longer asks for it", TRUE);
    }
    gw_binder_offer_all(binder, actor);
}

/* A VM that stopped gives its keys back for good: its saved leases go. */
static void
gw_binder_forget_leases(GwBinder *binder, const gchar *name)
{
    GHashTableIter iter;
    gpointer value;

    g_hash_table_iter_init(&iter, binder->saved->leases);
    while (g_hash_table_iter_next(&iter, NULL, &value))
        if (g_strcmp0(value, name) == 0)
            g_hash_table_iter_remove(&iter);
}

void
gw_binder_vm_stopped(GwBinder *binder, const gchar *name, const gchar *actor)
{
    g_autoptr(GPtrArray) devices = NULL;
    GwBinderVm *vm = g_hash_table_lookup(binder->vms, name);

    /* its wishes are read again from its metadata when it starts */
    g_hash_table_remove(binder->wishes, name);
    if (vm == NULL)
        return;
    gw_log_device(G_LOG_LEVEL_MESSAGE, NULL, name, NULL, "vm \"%s\" stopped (%s)", name, actor);
    devices = gw_binder_list_devices(binder);
    for (guint i = 0; i < devices->len; i++) {
        GwBinderDevice *dev = g_ptr_array_index(devices, i);
        if (g_strcmp0(dev->vm, name) != 0)
            continue;
        /* a device given to this VM by name keeps its socket for the next
         * start (a UUID names the VM only while it runs) */
        if ((dev->manual_vm != NULL || dev->decision.target_kind != POLICY_TARGET_VM_UUID) &&
            g_strcmp0(gw_binder_fixed_vm(binder, dev), name) == 0) {
            gw_binder_event(binder, GW_BINDER_EVENT_KEPT, dev, name, actor,
                            "vm stopped; socket kept");
            continue;
        }
        gw_binder_unbind(binder, dev, actor, "vm stopped", FALSE);
    }
    policy_pools_release_vm(binder->pools, name);
    gw_binder_forget_leases(binder, name);
    g_ptr_array_remove(binder->vm_order, vm);
    g_hash_table_remove(binder->vms, name);
    /* what the stopped VM gave back may be waited for by another */
    gw_binder_offer_all(binder, actor);
}

gboolean
gw_binder_assign(GwBinder *binder, const gchar *id, const gchar *vm, const gchar *actor)
{
    GwBinderDevice *dev = g_hash_table_lookup(binder->devices, id);
    gboolean ok;

    g_return_val_if_fail(dev != NULL, FALSE);
    if (dev->vm != NULL && g_strcmp0(dev->vm, vm) != 0)
        gw_binder_unbind(binder, dev, actor, "reassigned by an admin", TRUE);
    g_free(dev->manual_vm);
    dev->manual_vm = g_strdup(vm);
    dev->released = FALSE;
    policy_pools_remove_device(binder->pools, dev->id);
    gw_binder_event(binder, GW_BINDER_EVENT_ASSIGN, dev, vm, actor, NULL);
    ok = gw_binder_bind(binder, dev, vm, actor);
    /* the VM that leased it may take another key of the pool */
    gw_binder_offer_all(binder, actor);
    return ok;
}

void
gw_binder_release(GwBinder *binder, const gchar *id, const gchar *actor)
{
    GwBinderDevice *dev = g_hash_table_lookup(binder->devices, id);

    g_return_if_fail(dev != NULL);
    gw_binder_unbind(binder, dev, actor, "released by an admin", TRUE);
    g_clear_pointer(&dev->manual_vm, g_free);
    dev->released = TRUE;
    /* out of its pool too, until it is replugged */
    policy_pools_remove_device(binder->pools, dev->id);
    gw_binder_unclaim(binder, dev, actor);
    /* the VM that leased it may take another key of the pool */
    gw_binder_offer_all(binder, actor);
}

void
gw_binder_set_elsewhere(GwBinder *binder, const gchar *id, const gchar *holder, const gchar *actor)
{
    GwBinderDevice *dev;
    g_autoptr(GError) error = NULL;

    if (g_strcmp0(g_hash_table_lookup(binder->elsewhere, id), holder) == 0)
        return;
    if (holder != NULL)
        g_hash_table_insert(binder->elsewhere, g_strdup(id), g_strdup(holder));
    else
        g_hash_table_remove(binder->elsewhere, id);
    dev = g_hash_table_lookup(binder->devices, id);
    if (dev == NULL || dev->manual_vm != NULL || dev->released ||
        dev->decision.verdict != POLICY_VERDICT_ASSIGN ||
        dev->decision.target_kind != POLICY_TARGET_POOL)
        return;
    if (holder != NULL) {
        g_autofree gchar *reason = g_strdup_printf("held in the cluster by %s", holder);
        if (dev->vm != NULL)
            gw_binder_unbind(binder, dev, actor, reason, TRUE);
        policy_pools_remove_device(binder->pools, dev->id);
        gw_log_device(G_LOG_LEVEL_INFO, dev->id, NULL, NULL, "%s: %s", dev->id, reason);
    } else if (!policy_pools_add_device(binder->pools, dev->decision.target, dev->id, &error)) {
        gw_log_device(G_LOG_LEVEL_WARNING, dev->id, NULL, NULL, "%s: %s", dev->id, error->message);
    }
    /* the VM that had it may take another key; a freed key may be waited for */
    gw_binder_offer_all(binder, actor);
}

const gchar *
gw_binder_get_elsewhere(GwBinder *binder, const gchar *id)
{
    return g_hash_table_lookup(binder->elsewhere, id);
}

void
gw_binder_set_policy(GwBinder *binder, Policy *policy, const gchar *actor)
{
    g_autoptr(GPtrArray) devices = gw_binder_list_devices(binder);

    /* swap, then decide every device again: a device whose new decision no
     * longer gives it to its VM is unbound, new assignments are served */
    policy_ref(policy);
    g_clear_pointer(&binder->pools, policy_pools_free);
    policy_unref(binder->policy);
    binder->policy = policy;
    binder->pools = policy_pools_new(policy);
    for (guint i = 0; i < binder->vm_order->len; i++)
        gw_binder_sync_pool_wishes(binder, g_ptr_array_index(binder->vm_order, i));
    for (guint i = 0; i < devices->len; i++) {
        GwBinderDevice *dev = g_ptr_array_index(devices, i);
        gw_binder_decide(binder, dev);
        if (dev->manual_vm != NULL)
            continue;
        if (dev->vm == NULL) {
            /* claimed for a pool or a glob the new policy no longer has */
            if (dev->claimed && !gw_binder_decision_claims(&dev->decision))
                gw_binder_unclaim(binder, dev, NULL);
            continue;
        }
        if (!gw_binder_gives(binder, dev, dev->vm, gw_binder_get_vm_uuid(binder, dev->vm))) {
            gw_binder_unbind(binder, dev, actor, "the reloaded policy no longer gives it", TRUE);
            if (!gw_binder_decision_claims(&dev->decision))
                gw_binder_unclaim(binder, dev, NULL);
        } else if (!g_hash_table_contains(binder->vms, dev->vm) &&
                   g_strcmp0(gw_binder_fixed_vm(binder, dev), dev->vm) != 0) {
            /* a glob or a pool gives devices to running VMs only */
            gw_binder_unbind(binder, dev, actor, "the reloaded policy gives it to a running VM",
                             TRUE);
        } else if (dev->decision.target_kind == POLICY_TARGET_POOL &&
                   !policy_pools_acquire_key(binder->pools, dev->decision.target, dev->vm, dev->id,
                                             NULL)) {
            /* the VM keeps this very key or none: a first-free lease here
             * could give it a second key of the pool */
            gw_binder_unbind(binder, dev, actor, "pool changed", TRUE);
        }
    }
    for (guint i = 0; i < devices->len; i++) {
        GwBinderDevice *dev = g_ptr_array_index(devices, i);
        const gchar *fixed = gw_binder_fixed_vm(binder, dev);
        if (dev->present && gw_binder_decision_claims(&dev->decision) && !dev->claimed &&
            !dev->released)
            gw_binder_claim(binder, dev);
        if (fixed != NULL && dev->vm == NULL)
            gw_binder_bind(binder, dev, fixed, actor);
    }
    gw_binder_offer_all(binder, actor);
}

/* Whether a present device meets @req for @name: not released, not an
 * admin's assignment elsewhere, free or bound to @name already. */
static gboolean
gw_binder_requirement_is_met(GwBinder *binder, GPtrArray *devices, const gchar *name,
                             const PolicyRequirement *req)
{
    for (guint i = 0; i < devices->len; i++) {
        GwBinderDevice *dev = g_ptr_array_index(devices, i);
        if (dev->present && !dev->released && dev->manual_vm == NULL &&
            (dev->vm == NULL || g_strcmp0(dev->vm, name) == 0) &&
            (dev->vm != NULL || !g_hash_table_contains(binder->elsewhere, dev->id)) &&
            policy_requirement_is_met_by(binder->policy, req, dev->desc))
            return TRUE;
    }
    return FALSE;
}

gboolean
gw_binder_check_requirements(GwBinder *binder, const gchar *name, const gchar *uuid,
                             PolicyRequirement *unmet)
{
    g_autoptr(GArray) reqs = policy_get_requirements(binder->policy, name, uuid);
    g_autoptr(GPtrArray) devices = gw_binder_list_devices(binder);

    for (guint r = 0; r < reqs->len; r++) {
        const PolicyRequirement *req = &g_array_index(reqs, PolicyRequirement, r);
        if (!gw_binder_requirement_is_met(binder, devices, name, req)) {
            *unmet = *req;
            return FALSE;
        }
    }
    return TRUE;
}

guint
gw_binder_count_unmet_requirements(GwBinder *binder, const gchar *name, const gchar *uuid,
                                   guint *n_required)
{
    g_autoptr(GArray) reqs = policy_get_requirements(binder->policy, name, uuid);
    g_autoptr(GPtrArray) devices = gw_binder_list_devices(binder);
    guint unmet = 0;

    for (guint r = 0; r < reqs->len; r++) {
        if (!gw_binder_requirement_is_met(binder, devices, name,
                                          &g_array_index(reqs, PolicyRequirement, r)))
            unmet++;
    }
    if (n_required != NULL)
        *n_required = reqs->len;
    return unmet;
}
