/* usbgwd's cluster mode as usbgwctl and the metrics see it: the status's
 * "cluster" object, a device's cluster note and state, the counts. */
#include "gw-daemon-cluster-private.h"

#include <string.h>

static const gchar *
gw_daemon_hold_state_to_string(GwDaemonHoldState state)
{
    switch (state) {
    case GW_DAEMON_HOLD_WAITING:
        return "waiting";
    case GW_DAEMON_HOLD_HELD:
        return "held";
    case GW_DAEMON_HOLD_RELEASING:
        return "releasing";
    }
    return "unknown";
}

static void
gw_daemon_cluster_hold_json(JsonBuilder *builder, const gchar *pool, const gchar *device,
                            const gchar *vm, const gchar *state, const gchar *reason)
{
    json_builder_begin_object(builder);
    json_builder_set_member_name(builder, "pool");
    json_builder_add_string_value(builder, pool);
    json_builder_set_member_name(builder, "device");
    if (device != NULL)
        json_builder_add_string_value(builder, device);
    else
        json_builder_add_null_value(builder);
    json_builder_set_member_name(builder, "vm");
    json_builder_add_string_value(builder, vm);
    json_builder_set_member_name(builder, "state");
    json_builder_add_string_value(builder, state);
    json_builder_set_member_name(builder, "reason");
    if (reason != NULL)
        json_builder_add_string_value(builder, reason);
    else
        json_builder_add_null_value(builder);
    json_builder_end_object(builder);
}

/* Running VMs of a pool that hold none of its keys here and ask for none
 * now (every key is held elsewhere, or taken): one "waiting" entry each,
 * the reason naming every key's holder. */
static void
gw_daemon_cluster_waiting_vms_json(GwDaemon *daemon, JsonBuilder *builder)
{
    GwDaemonCluster *cluster = daemon->cluster;
    Policy *policy = gw_binder_get_policy(daemon->binder);
    g_autoptr(GPtrArray) devices = gw_binder_list_devices(daemon->binder);
    g_autoptr(GPtrArray) vms = gw_binder_list_vms(daemon->binder);
    g_autoptr(GHashTable) done = g_hash_table_new(g_str_hash, g_str_equal);

    for (guint i = 0; i < devices->len; i++) {
        const GwBinderDevice *first = g_ptr_array_index(devices, i);
        const gchar *pool = first->decision.target;
        g_autoptr(GString) keys = NULL;

        if (first->decision.verdict != POLICY_VERDICT_ASSIGN ||
            first->decision.target_kind != POLICY_TARGET_POOL || pool == NULL ||
            g_hash_table_contains(done, pool))
            continue;
        g_hash_table_add(done, (gpointer)pool);
        for (guint v = 0; v < vms->len; v++) {
            const gchar *vm = g_ptr_array_index(vms, v);
            gboolean has = FALSE;
            GHashTableIter iter;
            gpointer value;

            if (!policy_decision_is_for_vm(policy, &first->decision, vm,
                                           gw_binder_get_vm_uuid(daemon->binder, vm)))
                continue;
            for (guint k = 0; k < devices->len && !has; k++) {
                const GwBinderDevice *dev = g_ptr_array_index(devices, k);
                has = g_strcmp0(dev->decision.target, pool) == 0 && g_strcmp0(dev->vm, vm) == 0;
            }
            g_hash_table_iter_init(&iter, cluster->holds);
            while (!has && g_hash_table_iter_next(&iter, NULL, &value)) {
                const GwDaemonHold *hold = value;
                has = g_strcmp0(hold->pool, pool) == 0 && g_strcmp0(hold->vm, vm) == 0 &&
                      hold->wanted;
            }
            if (has)
                continue;
            if (keys == NULL) {
                keys = g_string_new(NULL);
                for (guint k = 0; k < devices->len; k++) {
                    const GwBinderDevice *dev = g_ptr_array_index(devices, k);
                    const gchar *holder = gw_binder_get_elsewhere(daemon->binder, dev->id);
                    if (g_strcmp0(dev->decision.target, pool) != 0 ||
                        dev->decision.target_kind != POLICY_TARGET_POOL)
                        continue;
                    g_string_append_printf(keys, "%s%s: ", keys->len > 0 ? ", " : "", dev->id);
                    if (holder != NULL)
                        g_string_append(keys, holder);
                    else if (dev->vm != NULL)
                        g_string_append_printf(keys, "vm %s here", dev->vm);
                    else if (!dev->present)
                        g_string_append(keys, "absent");
                    else
                        g_string_append(keys, "free");
                }
                g_string_prepend(keys, "no key of the pool is free (");
                g_string_append(keys, ")");
            }
            gw_daemon_cluster_hold_json(builder, pool, NULL, vm, "waiting", keys->str);
        }
    }
}

void
gw_daemon_cluster_to_json(GwDaemon *daemon, JsonBuilder *builder)
{
    GwDaemonCluster *cluster = daemon->cluster;
    const gchar *why = gw_daemon_cluster_current_error(cluster);
    g_auto(GStrv) urls = NULL;
    g_autoptr(GList) ids = NULL;

    json_builder_begin_object(builder);
    gw_cluster_registry_to_json(cluster->registry, builder);
    json_builder_set_member_name(builder, "etcd");
    json_builder_begin_array(builder);
    urls = g_strsplit(daemon->config.cluster_etcd, ",", -1);
    for (guint i = 0; urls[i] != NULL; i++)
        json_builder_add_string_value(builder, g_strstrip(urls[i]));
    json_builder_end_array(builder);
    json_builder_set_member_name(builder, "gateway");
    json_builder_add_string_value(builder, cluster->gateway);
    json_builder_set_member_name(builder, "state");
    json_builder_add_string_value(builder, gw_daemon_cluster_current_state(cluster));
    /* the last etcd problem, while it matters */
    json_builder_set_member_name(builder, "error");
    if (why != NULL)
        json_builder_add_string_value(builder, why);
    else
        json_builder_add_null_value(builder);
    json_builder_set_member_name(builder, "lease");
    json_builder_add_int_value(builder, cluster->lease);
    json_builder_set_member_name(builder, "ttl");
    json_builder_add_int_value(builder, daemon->config.cluster_ttl);
    json_builder_set_member_name(builder, "lease_losses");
    json_builder_add_int_value(builder, (gint64)cluster->lease_losses);
    json_builder_set_member_name(builder, "holds");
    json_builder_begin_array(builder);
    ids = g_list_sort(g_hash_table_get_keys(cluster->holds), (GCompareFunc)strcmp);
    for (GList *l = ids; l != NULL; l = l->next) {
        const GwDaemonHold *hold = g_hash_table_lookup(cluster->holds, l->data);
        if (hold->state == GW_DAEMON_HOLD_WAITING && !hold->wanted)
            continue;
        gw_daemon_cluster_hold_json(builder, hold->pool, hold->id,
                                    hold->held_vm != NULL ? hold->held_vm : hold->vm,
                                    gw_daemon_hold_state_to_string(hold->state),
                                    hold->state == GW_DAEMON_HOLD_WAITING ? hold->reason : NULL);
    }
    gw_daemon_cluster_waiting_vms_json(daemon, builder);
    json_builder_end_array(builder);
    json_builder_end_object(builder);
}

gboolean
gw_daemon_cluster_waits(GwDaemon *daemon, const gchar *id)
{
    GwDaemonHold *hold;

    if (daemon->cluster == NULL)
        return FALSE;
    hold = g_hash_table_lookup(daemon->cluster->holds, id);
    return hold != NULL && hold->wanted && hold->state != GW_DAEMON_HOLD_HELD;
}

const gchar *
gw_daemon_cluster_device_note(GwDaemon *daemon, const gchar *id)
{
    GwDaemonHold *hold;

    if (daemon->cluster == NULL)
        return NULL;
    hold = g_hash_table_lookup(daemon->cluster->holds, id);
    if (hold != NULL && hold->state == GW_DAEMON_HOLD_WAITING && hold->wanted)
        return hold->reason;
    if (hold != NULL && hold->state == GW_DAEMON_HOLD_HELD)
        return "held here";
    return gw_binder_get_elsewhere(daemon->binder, id);
}

void
gw_daemon_cluster_counts(GwDaemon *daemon, GwDaemonClusterCounts *counts)
{
    GwDaemonCluster *cluster = daemon->cluster;
    GHashTableIter iter;
    gpointer value;

    memset(counts, 0, sizeof(*counts));
    if (cluster == NULL)
        return;
    counts->enabled = TRUE;
    counts->up = g_strcmp0(gw_daemon_cluster_current_state(cluster), "up") == 0;
    counts->lease_losses = cluster->lease_losses;
    counts->gateways = gw_cluster_registry_count_gateways(cluster->registry);
    counts->devices = gw_cluster_registry_count_devices(cluster->registry);
    g_hash_table_iter_init(&iter, cluster->holds);
    while (g_hash_table_iter_next(&iter, NULL, &value)) {
        const GwDaemonHold *hold = value;
        counts->held += hold->state == GW_DAEMON_HOLD_HELD;
        counts->waiting += hold->state == GW_DAEMON_HOLD_WAITING && hold->wanted;
    }
}
