/* GwBinder's state across restarts (gw-binder.h, GwBinderState): admins'
 * assignments and releases and the pool leases, saved and restored, and
 * the settling once every VM that runs has been reported. */
#include "gw-binder-private.h"

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
