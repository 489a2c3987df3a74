/* GwBinder's offers (gw-binder.h): what a running VM gets. The devices
 * the policy gives it, one key of each pool it may use (the key it held
 * before a restart first), and where each of its metadata wishes stands. */
#include "gw-binder-private.h"

#include "gw-log.h"

#include <string.h>

void
gw_binder_wish_free(gpointer data)
{
    GwBinderWish *item = data;
    policy_wish_free(item->wish);
    g_free(item->reason);
    g_free(item->device);
    g_free(item);
}

const gchar *
gw_binder_wish_state_to_string(GwBinderWishState state)
{
    switch (state) {
    case GW_BINDER_WISH_WAITING:
        return "waiting";
    case GW_BINDER_WISH_GRANTED:
        return "granted";
    case GW_BINDER_WISH_DENIED:
        return "denied";
    }
    return "unknown";
}

GPtrArray *
gw_binder_get_wishes(GwBinder *binder, const gchar *name)
{
    return g_hash_table_lookup(binder->wishes, name);
}

/* Whether @vm_name asks for @desc by a device wish. */
static gboolean
gw_binder_vm_wishes_device(GwBinder *binder, const gchar *vm_name, const PolicyDevice *desc)
{
    GPtrArray *items = gw_binder_get_wishes(binder, vm_name);

    for (guint i = 0; items != NULL && i < items->len; i++) {
        const GwBinderWish *item = g_ptr_array_index(items, i);
        if (policy_wish_matches_device(item->wish, desc))
            return TRUE;
    }
    return FALSE;
}

/* Whether @vm_name asks for a key of @pool and the policy lets it join. */
static gboolean
gw_binder_vm_joins_pool(GwBinder *binder, const gchar *vm_name, const gchar *vm_uuid,
                        const gchar *pool)
{
    GPtrArray *items = gw_binder_get_wishes(binder, vm_name);

    for (guint i = 0; items != NULL && i < items->len; i++) {
        const GwBinderWish *item = g_ptr_array_index(items, i);
        if (g_strcmp0(item->wish->pool, pool) == 0)
            return policy_metadata_allows_pool(binder->policy, pool, vm_name, vm_uuid, NULL);
    }
    return FALSE;
}

/* Whether the policy's decision for @dev gives it to @vm_name: an assign
 * rule for the VM (or a pool it is in by name or by an allowed wish), or
 * an allow metadata rule for the VM when the VM asks for the device. */
gboolean
gw_binder_gives(GwBinder *binder, GwBinderDevice *dev, const gchar *vm_name, const gchar *vm_uuid)
{
    switch (dev->decision.verdict) {
    case POLICY_VERDICT_ASSIGN:
        if (policy_decision_is_for_vm(binder->policy, &dev->decision, vm_name, vm_uuid))
            return TRUE;
        return dev->decision.target_kind == POLICY_TARGET_POOL &&
               gw_binder_vm_joins_pool(binder, vm_name, vm_uuid, dev->decision.target);
    case POLICY_VERDICT_METADATA:
        return dev->desc != NULL &&
               policy_decision_is_for_vm(binder->policy, &dev->decision, vm_name, vm_uuid) &&
               gw_binder_vm_wishes_device(binder, vm_name, dev->desc);
    case POLICY_VERDICT_NONE:
    case POLICY_VERDICT_SHARE:
    case POLICY_VERDICT_DENY:
    case POLICY_VERDICT_EXPORT:
        break;
    }
    return FALSE;
}

/* The pools @vm joins by its allowed wishes, told to the pool leases. */
void
gw_binder_sync_pool_wishes(GwBinder *binder, GwBinderVm *vm)
{
    GPtrArray *items = gw_binder_get_wishes(binder, vm->name);

    for (guint i = 0; items != NULL && i < items->len; i++) {
        const GwBinderWish *item = g_ptr_array_index(items, i);
        if (item->wish->pool != NULL)
            policy_pools_set_member(binder->pools, item->wish->pool, vm->name,
                                    policy_metadata_allows_pool(binder->policy, item->wish->pool,
                                                                vm->name, vm->uuid, NULL));
    }
}

/* The pool key @vm holds, or a free one leased to it now: the key it held
 * before a restart first, then the first free key in identity order. */
static GwBinderDevice *
gw_binder_pool_acquire(GwBinder *binder, const gchar *pool, GwBinderVm *vm)
{
    g_autoptr(GPtrArray) devices = gw_binder_list_devices(binder);
    g_autoptr(GError) error = NULL;
    const gchar *key;

    for (guint i = 0; i < devices->len; i++) {
        GwBinderDevice *dev = g_ptr_array_index(devices, i);
        if (dev->decision.target_kind == POLICY_TARGET_POOL &&
            g_strcmp0(dev->decision.target, pool) == 0 &&
            g_strcmp0(policy_pools_lookup_holder(binder->pools, dev->id), vm->name) == 0)
            return dev;
    }
    for (guint i = 0; i < devices->len; i++) {
        GwBinderDevice *dev = g_ptr_array_index(devices, i);
        g_autoptr(GError) restore_error = NULL;
        if (g_strcmp0(g_hash_table_lookup(binder->saved->leases, dev->id), vm->name) != 0 ||
            dev->released || dev->manual_vm != NULL || dev->vm != NULL)
            continue;
        if (policy_pools_acquire_key(binder->pools, pool, vm->name, dev->id, &restore_error))
            return dev;
        g_debug("vm \"%s\": earlier lease of %s not restored: %s", vm->name, dev->id,
                restore_error->message);
    }
    if (!binder->settled) {
        /* it held a device before the restart that has not been seen yet:
         * wait for it rather than take another key */
        GHashTableIter iter;
        gpointer id, holder;
        g_hash_table_iter_init(&iter, binder->saved->leases);
        while (g_hash_table_iter_next(&iter, &id, &holder)) {
            if (g_strcmp0(holder, vm->name) == 0 && !g_hash_table_contains(binder->devices, id))
                return NULL;
        }
        /* first free key that no VM yet to be reported holds from before */
        for (guint i = 0; i < devices->len; i++) {
            GwBinderDevice *dev = g_ptr_array_index(devices, i);
            if (dev->released || dev->manual_vm != NULL || dev->vm != NULL ||
                policy_pools_lookup_holder(binder->pools, dev->id) != NULL ||
                gw_binder_is_reserved(binder, dev, vm->name))
                continue;
            if (policy_pools_acquire_key(binder->pools, pool, vm->name, dev->id, NULL))
                return dev;
        }
        gw_log_device(G_LOG_LEVEL_MESSAGE, NULL, vm->name, NULL,
                      "vm \"%s\": no device from pool \"%s\" yet (the free ones are kept for VMs "
                      "that held them before usbgwd restarted)",
                      vm->name, pool);
        return NULL;
    }
    key = policy_pools_acquire(binder->pools, pool, vm->name, &error);
    if (key == NULL) {
        gw_log_device(G_LOG_LEVEL_MESSAGE, NULL, vm->name, NULL,
                      "vm \"%s\": no device from pool \"%s\": %s", vm->name, pool, error->message);
        return NULL;
    }
    return g_hash_table_lookup(binder->devices, key);
}

/* Ends the lease of one pool key (a bind that failed). */
void
gw_binder_pool_drop(GwBinder *binder, GwBinderDevice *dev)
{
    g_autoptr(GError) error = NULL;
    policy_pools_remove_device(binder->pools, dev->id);
    if (!g_hash_table_contains(binder->elsewhere, dev->id) &&
        !policy_pools_add_device(binder->pools, dev->decision.target, dev->id, &error))
        gw_log_device(G_LOG_LEVEL_WARNING, dev->id, dev->vm, NULL, "%s: %s", dev->id,
                      error->message);
}

/* Sets where one wish of the running @vm stands, after the devices were
 * offered to it. */
static void
gw_binder_judge_wish(GwBinder *binder, GwBinderVm *vm, GwBinderWish *item, GPtrArray *devices)
{
    const PolicyWish *wish = item->wish;
    g_autofree gchar *what = policy_wish_describe(wish);
    GwBinderDevice *wanted = NULL;
    GwBinderDevice *refused = NULL;
    PolicyDecision rule;

    g_clear_pointer(&item->reason, g_free);
    g_clear_pointer(&item->device, g_free);
    if (wish->pool != NULL) {
        if (!policy_metadata_allows_pool(binder->policy, wish->pool, vm->name, vm->uuid, &rule)) {
            item->state = GW_BINDER_WISH_DENIED;
            item->reason =
                g_strdup_printf("no 'allow metadata pool \"%s\"' rule for vm \"%s\" in %s",
                                wish->pool, vm->name, policy_get_filename(binder->policy));
            return;
        }
        for (guint i = 0; i < devices->len; i++) {
            GwBinderDevice *dev = g_ptr_array_index(devices, i);
            if (g_strcmp0(dev->vm, vm->name) == 0 &&
                dev->decision.verdict == POLICY_VERDICT_ASSIGN &&
                dev->decision.target_kind == POLICY_TARGET_POOL &&
                g_strcmp0(dev->decision.target, wish->pool) == 0) {
                item->state = GW_BINDER_WISH_GRANTED;
                item->device = g_strdup(dev->id);
                item->reason = g_strdup_printf("allowed by %s:%u", rule.file, rule.line);
                return;
            }
        }
        item->state = GW_BINDER_WISH_WAITING;
        item->reason = g_strdup_printf("allowed by %s:%u; no free key of pool \"%s\"", rule.file,
                                       rule.line, wish->pool);
        return;
    }
    for (guint i = 0; i < devices->len; i++) {
        GwBinderDevice *dev = g_ptr_array_index(devices, i);
        if (!dev->present || dev->desc == NULL || !policy_wish_matches_device(wish, dev->desc))
            continue;
        if (g_strcmp0(dev->vm, vm->name) == 0) {
            item->state = GW_BINDER_WISH_GRANTED;
            item->device = g_strdup(dev->id);
            item->reason =
                g_strdup_printf("allowed by %s:%u", dev->decision.file, dev->decision.line);
            return;
        }
        if (dev->manual_vm == NULL && dev->decision.verdict == POLICY_VERDICT_METADATA &&
            policy_decision_is_for_vm(binder->policy, &dev->decision, vm->name, vm->uuid)) {
            if (wanted == NULL)
                wanted = dev;
        } else if (refused == NULL) {
            refused = dev;
        }
    }
    if (wanted != NULL) {
        item->state = GW_BINDER_WISH_WAITING;
        item->reason =
            wanted->vm != NULL
                ? g_strdup_printf("allowed; %s is in use by vm \"%s\"", wanted->id, wanted->vm)
                : g_strdup_printf("allowed; %s cannot be served now", wanted->id);
        return;
    }
    if (refused != NULL) {
        g_autofree gchar *rule_of = gw_binder_rule_of(&refused->decision);
        item->state = GW_BINDER_WISH_DENIED;
        item->reason =
            refused->manual_vm != NULL ? g_strdup_printf("%s is assigned to vm \"%s\" by an admin",
                                                         refused->id, refused->manual_vm)
            : rule_of != NULL
                ? g_strdup_printf("%s is decided by %s (%s), not by an 'allow metadata' rule for "
                                  "vm \"%s\"",
                                  refused->id, rule_of,
                                  policy_verdict_to_string(refused->decision.verdict), vm->name)
                : g_strdup_printf("no 'allow metadata' rule for vm \"%s\" matches %s", vm->name,
                                  refused->id);
        return;
    }
    if (!policy_metadata_names_vm(binder->policy, vm->name, vm->uuid)) {
        item->state = GW_BINDER_WISH_DENIED;
        item->reason = g_strdup_printf("no 'allow metadata' rule for vm \"%s\" in %s", vm->name,
                                       policy_get_filename(binder->policy));
        return;
    }
    item->state = GW_BINDER_WISH_WAITING;
    item->reason = g_strdup_printf("no device %s is present", what);
}

/* Where the wishes of the running @vm stand; a wish newly denied is
 * logged and reported once. */
static void
gw_binder_judge_wishes(GwBinder *binder, GwBinderVm *vm, const gchar *actor)
{
    GPtrArray *items = gw_binder_get_wishes(binder, vm->name);
    g_autoptr(GPtrArray) devices = NULL;

    if (items == NULL)
        return;
    devices = gw_binder_list_devices(binder);
    for (guint i = 0; i < items->len; i++) {
        GwBinderWish *item = g_ptr_array_index(items, i);
        GwBinderWishState before = item->state;
        g_autofree gchar *what = policy_wish_describe(item->wish);

        gw_binder_judge_wish(binder, vm, item, devices);
        if (item->state == GW_BINDER_WISH_DENIED && before != GW_BINDER_WISH_DENIED) {
            g_autofree gchar *reason =
                g_strdup_printf("metadata wish %s denied: %s", what, item->reason);
            g_message("vm \"%s\": %s", vm->name, reason);
            binder->ops->event(GW_BINDER_EVENT_WISH_DENIED, NULL, vm->name, actor, reason,
                               binder->user_data);
        }
    }
}

/* Gives @vm (running) every device the policy or an admin gives it. */
void
gw_binder_offer_vm(GwBinder *binder, GwBinderVm *vm, const gchar *actor)
{
    g_autoptr(GPtrArray) devices = gw_binder_list_devices(binder);
    g_autoptr(GHashTable) pools_done = g_hash_table_new(g_str_hash, g_str_equal);

    gw_binder_sync_pool_wishes(binder, vm);
    for (guint i = 0; i < devices->len; i++) {
        GwBinderDevice *dev = g_ptr_array_index(devices, i);
        const gchar *fixed = gw_binder_fixed_vm(binder, dev);

        if (dev->vm != NULL && g_strcmp0(dev->vm, vm->name) != 0)
            continue;
        if (fixed != NULL) {
            if (g_strcmp0(fixed, vm->name) == 0)
                gw_binder_bind(binder, dev, vm->name, actor);
            continue;
        }
        if (dev->manual_vm != NULL || dev->released ||
            !gw_binder_gives(binder, dev, vm->name, vm->uuid))
            continue;
        if (dev->decision.target_kind == POLICY_TARGET_POOL) {
            const gchar *pool = dev->decision.target;
            GwBinderDevice *leased;
            if (g_hash_table_contains(pools_done, pool))
                continue;
            g_hash_table_add(pools_done, (gpointer)pool);
            leased = gw_binder_pool_acquire(binder, pool, vm);
            if (leased != NULL && !leased->released && leased->manual_vm == NULL &&
                !gw_binder_bind(binder, leased, vm->name, actor))
                gw_binder_pool_drop(binder, leased);
            continue;
        }
        /* a VM-name glob, or a device a VM asked for: the first running
         * VM that matches takes it */
        if (dev->vm == NULL && gw_binder_is_reserved(binder, dev, vm->name))
            continue;
        gw_binder_bind(binder, dev, vm->name, actor);
    }
    gw_binder_judge_wishes(binder, vm, actor);
}

void
gw_binder_offer_all(GwBinder *binder, const gchar *actor)
{
    /* a copy: binding never changes the VM table, but stay safe */
    g_autoptr(GPtrArray) vms = g_ptr_array_copy(binder->vm_order, NULL, NULL);
    for (guint i = 0; i < vms->len; i++)
        gw_binder_offer_vm(binder, g_ptr_array_index(vms, i), actor);
}
