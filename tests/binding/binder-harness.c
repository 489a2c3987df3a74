/* The GwBinder harness: a model of usbgwd's serving, fed by the binder's
 * intents, and a line script of events. See binder-harness.h. */
#include "binder-harness.h"

#include <gio/gio.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const gchar *const vm_uuids[][2] = {
    {"vm-1", "00000000-0000-4000-8000-000000000001"},
    {"vm-2", "00000000-0000-4000-8000-000000000002"},
    {"vm-3", "00000000-0000-4000-8000-000000000003"},
    {"vm-4", "00000000-0000-4000-8000-000000000004"},
    {"cad-1", "00000000-0000-4000-8000-0000000000c1"},
    {"cad-2", "00000000-0000-4000-8000-0000000000c2"},
};

const gchar *
binder_harness_vm_uuid(const gchar *vm)
{
    for (guint i = 0; i < G_N_ELEMENTS(vm_uuids); i++)
        if (g_strcmp0(vm_uuids[i][0], vm) == 0)
            return vm_uuids[i][1];
    return NULL;
}

PolicyDevice *
binder_harness_device(const gchar *spec)
{
    g_autofree gchar *text = g_strdup(spec);
    gchar *klass = strchr(text, '/');
    gchar *port = strchr(text, '@');
    gchar *serial = strchr(text, '#');
    guint vid = 0, pid = 0;
    PolicyDevice *device;

    if (klass != NULL)
        *klass++ = '\0';
    if (port != NULL)
        *port++ = '\0';
    if (serial != NULL)
        *serial++ = '\0';
    if (sscanf(text, "%x:%x", &vid, &pid) != 2)
        g_error("harness: bad device '%s'", spec);
    device = policy_device_new((guint16)vid, (guint16)pid);
    device->port = g_strdup(port != NULL ? port : "1-9");
    device->serial = g_strdup(serial);
    policy_device_add_interface(device, klass != NULL ? (guint8)strtoul(klass, NULL, 16) : 0xff, 0,
                                0);
    return device;
}

static void harness_fail(BinderHarness *harness, const gchar *format, ...) G_GNUC_PRINTF(2, 3);

static void
harness_fail(BinderHarness *harness, const gchar *format, ...)
{
    va_list args;
    if (harness->error != NULL)
        return;
    va_start(args, format);
    harness->error = g_strdup_vprintf(format, args);
    va_end(args);
}

static gboolean
harness_claim(const gchar *id, gpointer user_data)
{
    BinderHarness *harness = user_data;
    if (!g_hash_table_contains(harness->present, id))
        harness_fail(harness, "claim of %s, which is not present", id);
    g_hash_table_add(harness->claimed, g_strdup(id));
    g_string_append_printf(harness->log, "claim %s\n", id);
    return TRUE;
}

static gboolean
harness_unclaim(const gchar *id, gpointer user_data)
{
    BinderHarness *harness = user_data;
    if (g_hash_table_contains(harness->served, id))
        harness_fail(harness, "unclaim of %s while it is served", id);
    g_string_append_printf(harness->log, "unclaim %s\n", id);
    return g_hash_table_remove(harness->claimed, id);
}

static gboolean
harness_bind(const gchar *id, const gchar *vm, const gchar *actor, gpointer user_data)
{
    BinderHarness *harness = user_data;
    const gchar *now = g_hash_table_lookup(harness->served, id);

    if (g_hash_table_contains(harness->fail_vms, vm)) {
        g_string_append_printf(harness->log, "bind %s %s failed\n", id, vm);
        return FALSE;
    }
    if (now != NULL && g_strcmp0(now, vm) != 0)
        harness_fail(harness, "bind of %s to %s while it is served to %s", id, vm, now);
    g_hash_table_insert(harness->served, g_strdup(id), g_strdup(vm));
    g_hash_table_add(harness->claimed, g_strdup(id));
    g_string_append_printf(harness->log, "bind %s %s\n", id, vm);
    return TRUE;
}

static void
harness_unbind(const gchar *id, const gchar *vm, gboolean detach, gpointer user_data)
{
    BinderHarness *harness = user_data;
    if (g_strcmp0(g_hash_table_lookup(harness->served, id), vm) != 0)
        harness_fail(harness, "unbind of %s from %s, which it is not served to", id, vm);
    g_hash_table_remove(harness->served, id);
    g_string_append_printf(harness->log, "unbind %s %s\n", id, vm);
}

static void
harness_event(GwBinderEvent event, const gchar *id, const gchar *vm, const gchar *actor,
              const gchar *reason, gpointer user_data)
{
    static const gchar *const names[] = {"deny",   "assign", "release",
                                         "detach", "kept",   "wish-denied"};
    BinderHarness *harness = user_data;
    g_string_append_printf(harness->log, "event %s %s%s%s\n", names[event], id != NULL ? id : "-",
                           vm != NULL ? " " : "", vm != NULL ? vm : "");
}

static const GwBinderOps harness_ops = {
    .claim = harness_claim,
    .unclaim = harness_unclaim,
    .bind = harness_bind,
    .unbind = harness_unbind,
    .event = harness_event,
};

BinderHarness *
binder_harness_new(const gchar *const *policies)
{
    BinderHarness *harness = g_new0(BinderHarness, 1);

    harness->policies = g_ptr_array_new_with_free_func((GDestroyNotify)policy_unref);
    for (guint i = 0; policies[i] != NULL; i++) {
        g_autoptr(GError) error = NULL;
        g_autoptr(GPtrArray) diagnostics = NULL;
        Policy *policy =
            policy_load_data(policies[i], strlen(policies[i]), "test.policy", &diagnostics, &error);
        if (policy == NULL)
            g_error("harness: policy %u does not parse: %s\n%s", i, error->message, policies[i]);
        g_ptr_array_add(harness->policies, policy);
    }
    harness->served = g_hash_table_new_full(g_str_hash, g_str_equal, g_free, g_free);
    harness->claimed = g_hash_table_new_full(g_str_hash, g_str_equal, g_free, NULL);
    harness->present =
        g_hash_table_new_full(g_str_hash, g_str_equal, g_free, (GDestroyNotify)policy_device_free);
    harness->fail_vms = g_hash_table_new_full(g_str_hash, g_str_equal, g_free, NULL);
    harness->wishes = g_hash_table_new_full(g_str_hash, g_str_equal, g_free, g_free);
    harness->elsewhere = g_hash_table_new_full(g_str_hash, g_str_equal, g_free, g_free);
    harness->log = g_string_new(NULL);
    harness->binder = gw_binder_new(g_ptr_array_index(harness->policies, 0), &harness_ops, harness);
    return harness;
}

void
binder_harness_free(BinderHarness *harness)
{
    if (harness == NULL)
        return;
    gw_binder_free(harness->binder);
    g_ptr_array_unref(harness->policies);
    g_hash_table_unref(harness->served);
    g_hash_table_unref(harness->claimed);
    g_hash_table_unref(harness->present);
    g_hash_table_unref(harness->fail_vms);
    g_hash_table_unref(harness->wishes);
    g_hash_table_unref(harness->elsewhere);
    g_string_free(harness->log, TRUE);
    g_free(harness->error);
    g_free(harness);
}

/* "pool=p,id=0529:0001,id=0529:0001#SERIAL" ("-": none) as PolicyWish. */
static GPtrArray *
harness_parse_wishes(const gchar *spec)
{
    g_autoptr(GPtrArray) wishes = g_ptr_array_new_with_free_func((GDestroyNotify)policy_wish_free);
    g_auto(GStrv) items = g_strsplit(spec, ",", -1);

    for (guint i = 0; g_strcmp0(spec, "-") != 0 && items[i] != NULL; i++) {
        PolicyWish *wish = NULL;
        if (g_str_has_prefix(items[i], "pool=")) {
            wish = policy_wish_new_pool(items[i] + strlen("pool="));
        } else if (g_str_has_prefix(items[i], "id=")) {
            g_auto(GStrv) parts = g_strsplit(items[i] + strlen("id="), "#", 2);
            wish = policy_wish_new_device(parts[0], parts[1]);
        }
        if (wish == NULL)
            return NULL;
        g_ptr_array_add(wishes, wish);
    }
    return g_steal_pointer(&wishes);
}

gboolean
binder_harness_run(BinderHarness *harness, const gchar *line, GError **error)
{
    g_auto(GStrv) words = g_strsplit(line, " ", -1);
    guint n = g_strv_length(words);
    const gchar *verb = n > 0 ? words[0] : "";
    GwBinder *binder = harness->binder;

    if (g_strcmp0(verb, "arrive") == 0 && n == 2) {
        PolicyDevice *device = binder_harness_device(words[1]);
        g_hash_table_insert(harness->present, g_strdup(words[1]), device);
        gw_binder_device_arrived(binder, words[1], device);
    } else if (g_strcmp0(verb, "leave") == 0 && n == 2) {
        if (!g_hash_table_remove(harness->present, words[1]))
            return TRUE;
        gw_binder_device_left(binder, words[1]);
    } else if (g_strcmp0(verb, "start") == 0 && n == 2) {
        /* usbgwd reads a starting VM's metadata from libvirt */
        const gchar *spec = g_hash_table_lookup(harness->wishes, words[1]);
        g_autoptr(GPtrArray) wishes = spec != NULL ? harness_parse_wishes(spec) : NULL;
        if (wishes != NULL)
            gw_binder_set_wishes(binder, words[1], wishes, "test");
        gw_binder_vm_started(binder, words[1], binder_harness_vm_uuid(words[1]), "test");
    } else if (g_strcmp0(verb, "stop") == 0 && n == 2) {
        gw_binder_vm_stopped(binder, words[1], "test");
    } else if (g_strcmp0(verb, "wish") == 0 && n == 3) {
        g_autoptr(GPtrArray) wishes = harness_parse_wishes(words[2]);
        if (wishes == NULL) {
            g_set_error(error, G_IO_ERROR, G_IO_ERROR_INVALID_ARGUMENT, "bad wishes in '%s'", line);
            return FALSE;
        }
        /* the VM's metadata: usbgwd learns a change while the VM runs (libvirt's
         * event), else when it starts */
        g_hash_table_insert(harness->wishes, g_strdup(words[1]), g_strdup(words[2]));
        if (gw_binder_vm_is_running(binder, words[1]))
            gw_binder_set_wishes(binder, words[1], wishes, "test");
    } else if (g_strcmp0(verb, "assign") == 0 && n == 3) {
        if (gw_binder_lookup(binder, words[1]) != NULL)
            (void)gw_binder_assign(binder, words[1], words[2], "test");
    } else if (g_strcmp0(verb, "release") == 0 && n == 2) {
        if (gw_binder_lookup(binder, words[1]) != NULL)
            gw_binder_release(binder, words[1], "test");
    } else if (g_strcmp0(verb, "reload") == 0 && n == 2) {
        guint index = (guint)g_ascii_strtoull(words[1], NULL, 10);
        if (index >= harness->policies->len) {
            g_set_error(error, G_IO_ERROR, G_IO_ERROR_INVALID_ARGUMENT, "no policy %u", index);
            return FALSE;
        }
        gw_binder_set_policy(binder, g_ptr_array_index(harness->policies, index), "test");
    } else if (g_strcmp0(verb, "settle") == 0 && n == 1) {
        gw_binder_settle(binder);
    } else if (g_strcmp0(verb, "restart") == 0 && n <= 2) {
        binder_harness_restart(harness, n == 2 ? (guint32)g_ascii_strtoull(words[1], NULL, 10) : 0);
    } else if (g_strcmp0(verb, "elsewhere") == 0 && n == 3) {
        if (g_strcmp0(words[2], "-") != 0)
            g_hash_table_insert(harness->elsewhere, g_strdup(words[1]), g_strdup(words[2]));
        else
            g_hash_table_remove(harness->elsewhere, words[1]);
        gw_binder_set_elsewhere(binder, words[1], g_strcmp0(words[2], "-") != 0 ? words[2] : NULL,
                                "test");
    } else if (g_strcmp0(verb, "fail-bind") == 0 && n == 2) {
        g_hash_table_add(harness->fail_vms, g_strdup(words[1]));
    } else {
        g_set_error(error, G_IO_ERROR, G_IO_ERROR_INVALID_ARGUMENT, "cannot read '%s'", line);
        return FALSE;
    }
    return TRUE;
}

static void
harness_shuffle(GPtrArray *array, GRand *rand)
{
    for (guint i = array->len; i > 1; i--) {
        guint j = (guint)g_rand_int_range(rand, 0, (gint32)i);
        gpointer tmp = array->pdata[i - 1];
        array->pdata[i - 1] = array->pdata[j];
        array->pdata[j] = tmp;
    }
}

void
binder_harness_restart(BinderHarness *harness, guint32 order_seed)
{
    g_autoptr(GwBinderState) saved = gw_binder_save(harness->binder);
    g_autoptr(GPtrArray) vms = gw_binder_list_vms(harness->binder);
    g_autoptr(GPtrArray) events = g_ptr_array_new_with_free_func(g_free);
    g_autoptr(GList) ids = g_hash_table_get_keys(harness->present);
    Policy *policy = policy_ref(gw_binder_get_policy(harness->binder));
    g_autoptr(GRand) rand = g_rand_new_with_seed(order_seed);

    /* "start" gives the VM's wishes first, as libvirt's listing does */
    for (guint i = 0; i < vms->len; i++)
        g_ptr_array_add(events, g_strdup_printf("start %s", (const gchar *)vms->pdata[i]));
    ids = g_list_sort(ids, (GCompareFunc)strcmp);
    for (GList *l = ids; l != NULL; l = l->next)
        g_ptr_array_add(events, g_strdup_printf("arrive %s", (const gchar *)l->data));
    if (order_seed != 0)
        harness_shuffle(events, rand);

    /* a new process: nothing is served, nothing claimed */
    gw_binder_free(harness->binder);
    g_hash_table_remove_all(harness->served);
    g_hash_table_remove_all(harness->claimed);
    g_hash_table_remove_all(harness->present);
    harness->binder = gw_binder_new(policy, &harness_ops, harness);
    policy_unref(policy);
    /* the cluster's holds come first: usbgwd reads them before it serves */
    {
        GHashTableIter iter;
        gpointer id, holder;
        g_hash_table_iter_init(&iter, harness->elsewhere);
        while (g_hash_table_iter_next(&iter, &id, &holder))
            gw_binder_set_elsewhere(harness->binder, id, holder, "test");
    }
    gw_binder_restore(harness->binder, saved);
    for (guint i = 0; i < events->len; i++)
        (void)binder_harness_run(harness, events->pdata[i], NULL);
    gw_binder_settle(harness->binder);
}

gchar *
binder_harness_bindings(BinderHarness *harness)
{
    g_autoptr(GPtrArray) devices = gw_binder_list_devices(harness->binder);
    GString *out = g_string_new(NULL);

    for (guint i = 0; i < devices->len; i++) {
        const GwBinderDevice *dev = g_ptr_array_index(devices, i);
        g_string_append_printf(out, "%s%s=%s", i > 0 ? " " : "", dev->id,
                               dev->vm != NULL ? dev->vm : "-");
    }
    return g_string_free(out, FALSE);
}

/* Whether the policy gives @dev to @vm by a wish of the VM's (the
 * harness's own reading of the wishes, not the binder's). */
static gboolean
harness_wish_gives(BinderHarness *harness, Policy *policy, const GwBinderDevice *dev,
                   const gchar *vm)
{
    g_autoptr(GPtrArray) wishes = NULL;
    const gchar *spec = g_hash_table_lookup(harness->wishes, vm);

    if (spec == NULL || !gw_binder_vm_is_running(harness->binder, vm))
        return FALSE;
    wishes = harness_parse_wishes(spec);
    for (guint i = 0; wishes != NULL && i < wishes->len; i++) {
        const PolicyWish *wish = g_ptr_array_index(wishes, i);
        if (dev->decision.verdict == POLICY_VERDICT_METADATA &&
            policy_decision_is_for_vm(policy, &dev->decision, vm, binder_harness_vm_uuid(vm)) &&
            policy_wish_matches_device(wish, dev->desc))
            return TRUE;
        if (dev->decision.verdict == POLICY_VERDICT_ASSIGN &&
            dev->decision.target_kind == POLICY_TARGET_POOL &&
            g_strcmp0(wish->pool, dev->decision.target) == 0 &&
            policy_metadata_allows_pool(policy, wish->pool, vm, binder_harness_vm_uuid(vm), NULL))
            return TRUE;
    }
    return FALSE;
}

gchar *
binder_harness_check(BinderHarness *harness)
{
    g_autoptr(GPtrArray) devices = gw_binder_list_devices(harness->binder);
    g_autoptr(GHashTable) pool_holders =
        g_hash_table_new_full(g_str_hash, g_str_equal, g_free, NULL);
    Policy *policy = gw_binder_get_policy(harness->binder);

    if (harness->error != NULL)
        return g_strdup(harness->error);
    for (guint i = 0; i < devices->len; i++) {
        const GwBinderDevice *dev = g_ptr_array_index(devices, i);
        const gchar *served = g_hash_table_lookup(harness->served, dev->id);

        if (g_strcmp0(served, dev->vm) != 0)
            return g_strdup_printf("%s: the binder says vm %s, its intents made it served to %s",
                                   dev->id, dev->vm != NULL ? dev->vm : "-",
                                   served != NULL ? served : "-");
        /* an exported device is held for the gateway links that serve it */
        if (dev->present && !dev->released && dev->manual_vm == NULL &&
            dev->decision.verdict == POLICY_VERDICT_EXPORT &&
            !g_hash_table_contains(harness->claimed, dev->id))
            return g_strdup_printf("%s: exported by the policy, yet not claimed", dev->id);
        if (dev->vm == NULL)
            continue;
        if (dev->released)
            return g_strdup_printf("%s: released, yet bound to %s", dev->id, dev->vm);
        if (g_strcmp0(dev->manual_vm, dev->vm) == 0)
            continue;
        if (dev->manual_vm != NULL)
            return g_strdup_printf("%s: assigned to %s by an admin, bound to %s", dev->id,
                                   dev->manual_vm, dev->vm);
        if ((dev->decision.verdict != POLICY_VERDICT_ASSIGN ||
             !policy_decision_is_for_vm(policy, &dev->decision, dev->vm,
                                        binder_harness_vm_uuid(dev->vm))) &&
            !harness_wish_gives(harness, policy, dev, dev->vm))
            return g_strdup_printf("%s: bound to %s, which neither the policy nor an admin "
                                   "gives it",
                                   dev->id, dev->vm);
        if (!gw_binder_vm_is_running(harness->binder, dev->vm) &&
            !(dev->decision.target_kind == POLICY_TARGET_VM &&
              g_strcmp0(dev->decision.target, dev->vm) == 0))
            return g_strdup_printf("%s: bound to %s, which does not run, by a %s rule", dev->id,
                                   dev->vm,
                                   policy_target_kind_to_string(dev->decision.target_kind));
        if (dev->decision.target_kind == POLICY_TARGET_POOL &&
            gw_binder_get_elsewhere(harness->binder, dev->id) != NULL)
            return g_strdup_printf("%s: held elsewhere in the cluster (%s), yet bound to %s",
                                   dev->id, gw_binder_get_elsewhere(harness->binder, dev->id),
                                   dev->vm);
        if (dev->decision.target_kind == POLICY_TARGET_POOL) {
            g_autofree gchar *key = g_strdup_printf("%s\n%s", dev->decision.target, dev->vm);
            const gchar *other = g_hash_table_lookup(pool_holders, key);
            if (other != NULL)
                return g_strdup_printf("vm %s holds two keys of pool %s: %s and %s", dev->vm,
                                       dev->decision.target, other, dev->id);
            g_hash_table_insert(pool_holders, g_steal_pointer(&key), dev->id);
        }
    }
    return NULL;
}

static void
harness_log_drop(const gchar *domain, GLogLevelFlags level, const gchar *message,
                 gpointer user_data)
{
}

/* The binder's device and VM messages are structured (gw-log.h): they
 * reach the writer, not g_log_set_handler()'s handlers. */
static GLogWriterOutput
harness_log_writer(GLogLevelFlags level, const GLogField *fields, gsize n_fields,
                   gpointer user_data)
{
    for (gsize i = 0; i < n_fields; i++) {
        if (g_strcmp0(fields[i].key, "GLIB_DOMAIN") == 0 &&
            g_strcmp0(fields[i].value, "usbgw-binding") == 0 &&
            (level & (G_LOG_LEVEL_MESSAGE | G_LOG_LEVEL_INFO | G_LOG_LEVEL_DEBUG)))
            return G_LOG_WRITER_HANDLED;
    }
    return g_log_writer_default(level, fields, n_fields, user_data);
}

void
binder_harness_quiet_logs(void)
{
    g_log_set_writer_func(harness_log_writer, NULL, NULL);
    g_log_set_handler("usbgw-binding", G_LOG_LEVEL_MESSAGE | G_LOG_LEVEL_INFO | G_LOG_LEVEL_DEBUG,
                      harness_log_drop, NULL);
}
