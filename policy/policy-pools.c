/* Leases of a pool's identical devices to the VMs that match the pool. */
#include "policy-private.h"

#include <string.h>

struct _PolicyPools {
    Policy *policy;      /* owned ref */
    GHashTable *members; /* pool name (borrowed from policy) → GPtrArray of device keys, sorted */
    GHashTable *device_pool; /* device key (owned) → pool name (borrowed from policy) */
    GHashTable *holders;     /* device key (borrowed from device_pool) → VM name (owned) */
    /* VMs in pools by their allowed wish: VM name (owned) → set of pool names (owned) */
    GHashTable *wish_members;
};

PolicyPools *
policy_pools_new(Policy *policy)
{
    PolicyPools *pools = g_new0(PolicyPools, 1);
    pools->policy = policy_ref(policy);
    pools->members =
        g_hash_table_new_full(g_str_hash, g_str_equal, NULL, (GDestroyNotify)g_ptr_array_unref);
    pools->device_pool = g_hash_table_new_full(g_str_hash, g_str_equal, g_free, NULL);
    pools->holders = g_hash_table_new_full(g_str_hash, g_str_equal, NULL, g_free);
    pools->wish_members =
        g_hash_table_new_full(g_str_hash, g_str_equal, g_free, (GDestroyNotify)g_hash_table_unref);
    return pools;
}

void
policy_pools_free(PolicyPools *pools)
{
    if (pools == NULL)
        return;
    g_hash_table_unref(pools->holders);
    g_hash_table_unref(pools->wish_members);
    g_hash_table_unref(pools->members);
    g_hash_table_unref(pools->device_pool);
    policy_unref(pools->policy);
    g_free(pools);
}

static gint
policy_pools_compare_keys(gconstpointer a, gconstpointer b)
{
    return strcmp(*(const gchar *const *)a, *(const gchar *const *)b);
}

/* The pool's VM glob matches @vm_name, or its wish made it a member. */
static gboolean
policy_pools_is_member(PolicyPools *pools, const PolicyPool *p, const gchar *vm_name)
{
    GHashTable *wished;

    if (policy_glob_match(&p->vms, vm_name))
        return TRUE;
    wished = g_hash_table_lookup(pools->wish_members, vm_name);
    return wished != NULL && g_hash_table_contains(wished, p->name);
}

void
policy_pools_set_member(PolicyPools *pools, const gchar *pool, const gchar *vm_name,
                        gboolean member)
{
    GHashTable *wished = g_hash_table_lookup(pools->wish_members, vm_name);

    if (member && wished == NULL) {
        wished = g_hash_table_new_full(g_str_hash, g_str_equal, g_free, NULL);
        g_hash_table_insert(pools->wish_members, g_strdup(vm_name), wished);
    }
    if (member)
        g_hash_table_add(wished, g_strdup(pool));
    else if (wished != NULL)
        g_hash_table_remove(wished, pool);
}

static const PolicyPool *
policy_pools_lookup(PolicyPools *pools, const gchar *pool, GError **error)
{
    const PolicyPool *p = g_hash_table_lookup(pools->policy->pools, pool);
    if (p == NULL)
        g_set_error(error, POLICY_ERROR, POLICY_ERROR_NOT_FOUND, "pool \"%s\" is not defined in %s",
                    pool, pools->policy->filename);
    return p;
}

gboolean
policy_pools_add_device(PolicyPools *pools, const gchar *pool, const gchar *device_key,
                        GError **error)
{
    const PolicyPool *p = policy_pools_lookup(pools, pool, error);
    const gchar *current;
    GPtrArray *members;
    gchar *key;

    if (p == NULL)
        return FALSE;
    current = g_hash_table_lookup(pools->device_pool, device_key);
    if (current != NULL) {
        if (g_strcmp0(current, p->name) == 0)
            return TRUE;
        g_set_error(error, POLICY_ERROR, POLICY_ERROR_NOT_ALLOWED,
                    "device %s is already a member of pool \"%s\"", device_key, current);
        return FALSE;
    }
    members = g_hash_table_lookup(pools->members, p->name);
    if (members == NULL) {
        members = g_ptr_array_new();
        g_hash_table_insert(pools->members, p->name, members);
    }
    key = g_strdup(device_key);
    g_hash_table_insert(pools->device_pool, key, p->name);
    g_ptr_array_add(members, key);
    g_ptr_array_sort(members, policy_pools_compare_keys);
    return TRUE;
}

void
policy_pools_remove_device(PolicyPools *pools, const gchar *device_key)
{
    gpointer key = NULL;
    gpointer pool = NULL;
    GPtrArray *members;

    if (!g_hash_table_lookup_extended(pools->device_pool, device_key, &key, &pool))
        return;
    g_hash_table_remove(pools->holders, key);
    members = g_hash_table_lookup(pools->members, pool);
    if (members != NULL)
        g_ptr_array_remove(members, key);
    g_hash_table_remove(pools->device_pool, device_key);
}

const gchar *
policy_pools_acquire(PolicyPools *pools, const gchar *pool, const gchar *vm_name, GError **error)
{
    const PolicyPool *p = policy_pools_lookup(pools, pool, error);
    GPtrArray *members;
    const gchar *free_key = NULL;

    if (p == NULL)
        return NULL;
    if (!policy_pools_is_member(pools, p, vm_name)) {
        g_set_error(error, POLICY_ERROR, POLICY_ERROR_NOT_ALLOWED,
                    "VM \"%s\" is not a member of pool \"%s\" (vms \"%s\", %s:%u)", vm_name,
                    p->name, p->vms.text, pools->policy->filename, p->line);
        return NULL;
    }
    members = g_hash_table_lookup(pools->members, p->name);
    for (guint i = 0; members != NULL && i < members->len; i++) {
        const gchar *key = g_ptr_array_index(members, i);
        const gchar *holder = g_hash_table_lookup(pools->holders, key);
        if (holder == NULL && free_key == NULL)
            free_key = key;
        if (g_strcmp0(holder, vm_name) == 0)
            return key;
    }
    if (free_key == NULL && (members == NULL || members->len == 0)) {
        /* absent, released, assigned by an admin or held in the cluster */
        g_set_error(error, POLICY_ERROR, POLICY_ERROR_EXHAUSTED,
                    "pool \"%s\" has no device here to lease (none present and free to take)",
                    p->name);
        return NULL;
    }
    if (free_key == NULL) {
        g_set_error(error, POLICY_ERROR, POLICY_ERROR_EXHAUSTED,
                    "every device of pool \"%s\" is in use (%u present)", p->name, members->len);
        return NULL;
    }
    g_hash_table_insert(pools->holders, (gpointer)free_key, g_strdup(vm_name));
    return free_key;
}

gboolean
policy_pools_acquire_key(PolicyPools *pools, const gchar *pool, const gchar *vm_name,
                         const gchar *device_key, GError **error)
{
    const PolicyPool *p = policy_pools_lookup(pools, pool, error);
    GPtrArray *members;
    gpointer key = NULL;
    gpointer member_pool = NULL;
    const gchar *holder;

    if (p == NULL)
        return FALSE;
    if (!policy_pools_is_member(pools, p, vm_name)) {
        g_set_error(error, POLICY_ERROR, POLICY_ERROR_NOT_ALLOWED,
                    "VM \"%s\" is not a member of pool \"%s\"", vm_name, p->name);
        return FALSE;
    }
    if (!g_hash_table_lookup_extended(pools->device_pool, device_key, &key, &member_pool) ||
        g_strcmp0(member_pool, p->name) != 0) {
        g_set_error(error, POLICY_ERROR, POLICY_ERROR_NOT_FOUND,
                    "device %s is not a member of pool \"%s\"", device_key, p->name);
        return FALSE;
    }
    holder = g_hash_table_lookup(pools->holders, key);
    if (g_strcmp0(holder, vm_name) == 0)
        return TRUE;
    if (holder != NULL) {
        g_set_error(error, POLICY_ERROR, POLICY_ERROR_EXHAUSTED, "device %s is held by VM \"%s\"",
                    device_key, holder);
        return FALSE;
    }
    members = g_hash_table_lookup(pools->members, p->name);
    for (guint i = 0; members != NULL && i < members->len; i++) {
        if (g_strcmp0(g_hash_table_lookup(pools->holders, g_ptr_array_index(members, i)),
                      vm_name) == 0) {
            g_set_error(error, POLICY_ERROR, POLICY_ERROR_NOT_ALLOWED,
                        "VM \"%s\" already holds device %s of pool \"%s\"", vm_name,
                        (const gchar *)g_ptr_array_index(members, i), p->name);
            return FALSE;
        }
    }
    g_hash_table_insert(pools->holders, key, g_strdup(vm_name));
    return TRUE;
}

guint
policy_pools_release_vm(PolicyPools *pools, const gchar *vm_name)
{
    GHashTableIter iter;
    gpointer holder;
    guint released = 0;

    g_hash_table_remove(pools->wish_members, vm_name);
    g_hash_table_iter_init(&iter, pools->holders);
    while (g_hash_table_iter_next(&iter, NULL, &holder)) {
        if (g_strcmp0(holder, vm_name) == 0) {
            g_hash_table_iter_remove(&iter);
            released++;
        }
    }
    return released;
}

const gchar *
policy_pools_lookup_holder(PolicyPools *pools, const gchar *device_key)
{
    return g_hash_table_lookup(pools->holders, device_key);
}
