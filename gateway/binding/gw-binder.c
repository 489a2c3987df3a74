/* Who gets which device: decisions, fixed VMs, VM-name globs, pool leases,
 * admins' assignments and releases, policy reload. See gw-binder.h. */
#include "gw-binder.h"

#include "gw-log.h"

#include <string.h>

typedef struct {
    gchar *name; /* owned */
    gchar *uuid; /* owned, nullable; lower case */
} GwBinderVm;

struct _GwBinder {
    Policy *policy;         /* owned ref */
    PolicyPools *pools;     /* owned */
    const GwBinderOps *ops; /* borrowed */
    gpointer user_data;
    GHashTable *devices;   /* id → GwBinderDevice (owned) */
    GHashTable *vms;       /* name → GwBinderVm (owned) */
    GPtrArray *vm_order;   /* GwBinderVm (borrowed from vms), in start order */
    GwBinderState *saved;  /* owned: restored state; leases dropped as their VM stops */
    GHashTable *wishes;    /* VM name (owned) → GPtrArray of GwBinderWish (owned) */
    gboolean settled;      /* every running VM has been reported since the restore */
    GHashTable *elsewhere; /* id (owned) → holder (owned): pool keys held in the cluster */
};

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

/* ---- state ------------------------------------------------------------------ */

GwBinderState *
gw_binder_state_new(void)
{
    GwBinderState *state = g_new0(GwBinderState, 1);
    state->assignments = g_hash_table_new_full(g_str_hash, g_str_equal, g_free, g_free);
    state->released = g_hash_table_new_full(g_str_hash, g_str_equal, g_free, NULL);
    state->leases = g_hash_table_new_full(g_str_hash, g_str_equal, g_free, g_free);
    return state;
}

void
gw_binder_state_free(GwBinderState *state)
{
    if (state == NULL)
        return;
    g_hash_table_unref(state->assignments);
    g_hash_table_unref(state->released);
    g_hash_table_unref(state->leases);
    g_free(state);
}

static gboolean
gw_binder_map_equal(GHashTable *a, GHashTable *b)
{
    GHashTableIter iter;
    gpointer key, value;

    if (g_hash_table_size(a) != g_hash_table_size(b))
        return FALSE;
    g_hash_table_iter_init(&iter, a);
    while (g_hash_table_iter_next(&iter, &key, &value)) {
        gpointer other;
        if (!g_hash_table_lookup_extended(b, key, NULL, &other))
            return FALSE;
        if (value != NULL && other != NULL && g_strcmp0(value, other) != 0)
            return FALSE;
    }
    return TRUE;
}

gboolean
gw_binder_state_equal(const GwBinderState *a, const GwBinderState *b)
{
    return gw_binder_map_equal(a->assignments, b->assignments) &&
           gw_binder_map_equal(a->released, b->released) &&
           gw_binder_map_equal(a->leases, b->leases);
}

static void
gw_binder_map_copy(GHashTable *to, GHashTable *from)
{
    GHashTableIter iter;
    gpointer key, value;

    g_hash_table_iter_init(&iter, from);
    while (g_hash_table_iter_next(&iter, &key, &value))
        g_hash_table_insert(to, g_strdup(key), value != NULL ? g_strdup(value) : NULL);
}

/* ---- devices and VMs -------------------------------------------------------- */

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

static gchar *
gw_binder_rule_of(const PolicyDecision *decision)
{
    return decision->file != NULL ? g_strdup_printf("%s:%u", decision->file, decision->line) : NULL;
}

static void
gw_binder_event(GwBinder *binder, GwBinderEvent event, GwBinderDevice *dev, const gchar *vm,
                const gchar *actor, const gchar *reason)
{
    binder->ops->event(event, dev != NULL ? dev->id : NULL, vm, actor, reason, binder->user_data);
}

/* ---- binding ---------------------------------------------------------------- */

/* A VM the device goes to whether or not it runs: an admin's assignment, a
 * literal VM name, or the UUID of a running VM. The socket can exist before
 * the VM runs, so a VM started by hand finds it. */
static const gchar *
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

/* ---- wishes ----------------------------------------------------------------- */

static void
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
static gboolean
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
static void
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

static gboolean
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
static gboolean
gw_binder_is_reserved(GwBinder *binder, GwBinderDevice *dev, const gchar *vm)
{
    const gchar *holder;

    if (binder->settled)
        return FALSE;
    holder = g_hash_table_lookup(binder->saved->leases, dev->id);
    return holder != NULL && g_strcmp0(holder, vm) != 0;
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
static void
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
static void
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

static void
gw_binder_offer_all(GwBinder *binder, const gchar *actor)
{
    /* a copy: binding never changes the VM table, but stay safe */
    g_autoptr(GPtrArray) vms = g_ptr_array_copy(binder->vm_order, NULL, NULL);
    for (guint i = 0; i < vms->len; i++)
        gw_binder_offer_vm(binder, g_ptr_array_index(vms, i), actor);
}

/* ---- restore ---------------------------------------------------------------- */

void
gw_binder_restore(GwBinder *binder, const GwBinderState *saved)
{
    gw_binder_map_copy(binder->saved->assignments, saved->assignments);
    gw_binder_map_copy(binder->saved->released, saved->released);
    gw_binder_map_copy(binder->saved->leases, saved->leases);
}

void
gw_binder_settle(GwBinder *binder)
{
    GHashTableIter iter;
    gpointer holder;

    if (binder->settled)
        return;
    binder->settled = TRUE;
    /* a VM that came back has taken what it could: its saved leases are
     * used up (one on a device still unseen would pull that device away
     * from another VM's free pick later) */
    g_hash_table_iter_init(&iter, binder->saved->leases);
    while (g_hash_table_iter_next(&iter, NULL, &holder))
        if (g_hash_table_contains(binder->vms, holder))
            g_hash_table_iter_remove(&iter);
    /* keys kept for VMs that did not come back are free now */
    gw_binder_offer_all(binder, "reconcile");
}

GwBinderState *
gw_binder_save(GwBinder *binder)
{
    GwBinderState *state = gw_binder_state_new();
    const GwBinderState *saved = binder->saved;
    GHashTable *const from[] = {saved->assignments, saved->released, saved->leases};
    GHashTable *const to[] = {state->assignments, state->released, state->leases};
    GHashTableIter iter;
    gpointer key, value;

    g_hash_table_iter_init(&iter, binder->devices);
    while (g_hash_table_iter_next(&iter, NULL, &value)) {
        GwBinderDevice *dev = value;
        if (dev->manual_vm != NULL)
            g_hash_table_insert(state->assignments, g_strdup(dev->id), g_strdup(dev->manual_vm));
        if (dev->released)
            g_hash_table_insert(state->released, g_strdup(dev->id), NULL);
        if (dev->vm != NULL && dev->manual_vm == NULL && gw_binder_fixed_vm(binder, dev) == NULL) {
            g_hash_table_insert(state->leases, g_strdup(dev->id), g_strdup(dev->vm));
        } else if (dev->vm == NULL && !dev->released && dev->manual_vm == NULL) {
            /* a lease whose VM has not come back since the restart */
            const gchar *hint = g_hash_table_lookup(saved->leases, dev->id);
            if (hint != NULL)
                g_hash_table_insert(state->leases, g_strdup(dev->id), g_strdup(hint));
        }
    }
    /* entries of devices not seen since the restart stay */
    for (guint g = 0; g < G_N_ELEMENTS(from); g++) {
        g_hash_table_iter_init(&iter, from[g]);
        while (g_hash_table_iter_next(&iter, &key, &value))
            if (!g_hash_table_contains(binder->devices, key))
                g_hash_table_insert(to[g], g_strdup(key), value != NULL ? g_strdup(value) : NULL);
    }
    return state;
}

/* ---- events ----------------------------------------------------------------- */

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
