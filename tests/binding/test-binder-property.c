/* GwBinder's invariants under random policies and random event sequences.
 *
 *   test-binder-property [--cases N] [--seed S] [--events N]
 *
 * Each case draws, from seed S + case number, a set of devices (identical
 * pool keys, keys with serials, a stick), three policies (pools with VM
 * globs, fixed VMs, VM-name globs, UUID targets, deny, export and allow
 * metadata rules) and a sequence of events: device arrive/leave/replug, VM
 * start/stop, a VM's metadata wishes, policy reload, usbgwctl
 * assign/release, usbgwd restart. After every event the
 * invariants of gw-binder.h are checked (binder_harness_check): no device
 * bound to a VM that neither the policy nor an admin gives it, no pool key
 * held by two VMs, no VM holding two keys of one pool, no released key
 * bound, no exported device left unclaimed, and the binder's intents
 * agree with what it reports. A restart
 * must give back the same saved state and the same bindings.
 *
 * A failing case is shortened (events dropped while it still fails) and
 * printed with its seed, its policies and the short sequence, which
 * test-binder's script language replays. */
#include <stdlib.h>
#include <string.h>

#include "binder-harness.h"

static const gchar *const device_specs[] = {
    "0529:0001@1-1", "0529:0001@1-2", "0529:0001@1-1.4",  "0529:0002@1-3",
    "0529:0002@1-5", "0529:0001#S7",  "0781:5567@1-6/08",
};
static const gchar *const vm_names[] = {"vm-1", "vm-2", "vm-3", "vm-4", "cad-1", "cad-2"};
static const gchar *const vm_globs[] = {"vm-*", "vm-?", "cad-*", "*-1", "vm-2", "*"};
/* what a VM's metadata may ask for (binder-harness.h's wish SPECS) */
static const gchar *const wish_specs[] = {
    "pool=p0", "pool=p1", "id=0529:0002", "id=0529:0001#S7", "pool=p0,id=0529:0001", "-",
};

typedef struct {
    gchar *policies[4]; /* NULL-terminated */
    GPtrArray *events;  /* script lines */
} PropertyCase;

static void
property_case_clear(PropertyCase *c)
{
    for (guint i = 0; i < G_N_ELEMENTS(c->policies); i++)
        g_clear_pointer(&c->policies[i], g_free);
    g_clear_pointer(&c->events, g_ptr_array_unref);
}

static const gchar *
pick(GRand *rand, const gchar *const *items, guint n)
{
    return items[g_rand_int_range(rand, 0, (gint32)n)];
}

#define PICK(rand, items) pick(rand, items, G_N_ELEMENTS(items))

static gchar *
random_policy(GRand *rand)
{
    GString *text = g_string_new(NULL);
    guint pools = (guint)g_rand_int_range(rand, 0, 3);
    guint rules = (guint)g_rand_int_range(rand, 1, 5);

    for (guint p = 0; p < pools; p++)
        g_string_append_printf(text, "pool \"p%u\" vms \"%s\"\n", p, PICK(rand, vm_globs));
    for (guint r = 0; r < rules; r++) {
        guint pid = (guint)g_rand_int_range(rand, 1, 3);
        switch (g_rand_int_range(rand, 0, pools > 0 ? 10 : 7)) {
        case 0:
            g_string_append_printf(text, "assign id 0529:%04x via-port \"1-1*\" to vm \"%s\"\n",
                                   pid, PICK(rand, vm_names));
            break;
        case 1:
            g_string_append_printf(text, "assign id 0529:%04x to vm \"%s\"\n", pid,
                                   PICK(rand, vm_globs));
            break;
        case 2:
            g_string_append_printf(text, "assign id 0529:0001 serial \"S7\" to vm-uuid \"%s\"\n",
                                   binder_harness_vm_uuid(PICK(rand, vm_names)));
            break;
        case 3:
            g_string_append(text, g_rand_boolean(rand) ? "deny via-port \"1-2\"\n"
                                                       : "deny with-interface 08:*:*\n");
            break;
        case 4:
            g_string_append_printf(text, "assign id *:* to vm \"%s\"\n", PICK(rand, vm_names));
            break;
        case 5:
            /* served to gateway links: claimed, bound to no VM */
            g_string_append_printf(text, "export id 0529:%04x to gateway \"hv-*\"\n", pid);
            break;
        case 6:
            /* a VM that asks for the key gets it */
            g_string_append_printf(text, "allow metadata id 0529:%04x for vm \"%s\"\n", pid,
                                   PICK(rand, vm_globs));
            break;
        case 7:
            /* a VM that asks joins the pool */
            g_string_append_printf(text, "allow metadata pool \"p%u\" for vm \"%s\"\n",
                                   (guint)g_rand_int_range(rand, 0, (gint32)pools),
                                   PICK(rand, vm_globs));
            break;
        default:
            g_string_append_printf(text, "assign id 0529:%04x to pool \"p%u\"\n", pid,
                                   (guint)g_rand_int_range(rand, 0, (gint32)pools));
            break;
        }
    }
    return g_string_free(text, FALSE);
}

static void
random_case(PropertyCase *c, guint32 seed, guint max_events)
{
    g_autoptr(GRand) rand = g_rand_new_with_seed(seed);
    g_autoptr(GPtrArray) devices = g_ptr_array_new();
    guint n_events = (guint)g_rand_int_range(rand, 5, (gint32)max_events + 1);

    for (guint i = 0; i < G_N_ELEMENTS(device_specs); i++)
        if (g_rand_int_range(rand, 0, 3) != 0)
            g_ptr_array_add(devices, (gpointer)device_specs[i]);
    if (devices->len == 0)
        g_ptr_array_add(devices, (gpointer)device_specs[0]);
    for (guint i = 0; i < 3; i++)
        c->policies[i] = random_policy(rand);
    c->events = g_ptr_array_new_with_free_func(g_free);
    for (guint i = 0; i < n_events; i++) {
        const gchar *dev = pick(rand, (const gchar *const *)devices->pdata, devices->len);
        const gchar *vm = PICK(rand, vm_names);
        gchar *line;
        switch (g_rand_int_range(rand, 0, 18)) {
        case 0:
        case 1:
        case 2:
            line = g_strdup_printf("arrive %s", dev);
            break;
        case 3:
        case 4:
            line = g_strdup_printf("leave %s", dev);
            break;
        case 5:
        case 6:
        case 7:
            line = g_strdup_printf("start %s", vm);
            break;
        case 8:
        case 9:
            line = g_strdup_printf("stop %s", vm);
            break;
        case 10:
            line = g_strdup_printf("assign %s %s", dev, vm);
            break;
        case 11:
            line = g_strdup_printf("release %s", dev);
            break;
        case 12:
        case 13:
            line = g_strdup_printf("reload %d", g_rand_int_range(rand, 0, 3));
            break;
        case 14:
            /* the cluster: another gateway holds the key, or let it go */
            line =
                g_strdup_printf("elsewhere %s %s", dev, g_rand_boolean(rand) ? "hv-x/vm-9" : "-");
            break;
        case 16:
        case 17:
            line = g_strdup_printf("wish %s %s", vm, PICK(rand, wish_specs));
            break;
        default:
            line = g_strdup_printf("restart %u", g_rand_int(rand) | 1);
            break;
        }
        g_ptr_array_add(c->events, line);
    }
}

/* Whether every device bound before a restart is present: a device that is
 * unplugged while usbgwd restarts is unknown to the new process (the state
 * file has no description of it), so its VM's binding cannot come back. */
static gboolean
restart_comparable(BinderHarness *harness)
{
    g_autoptr(GPtrArray) devices = gw_binder_list_devices(harness->binder);
    for (guint i = 0; i < devices->len; i++) {
        const GwBinderDevice *dev = g_ptr_array_index(devices, i);
        if (dev->vm != NULL && !dev->present)
            return FALSE;
        if (!dev->present && dev->decision.target_kind == POLICY_TARGET_POOL)
            return FALSE; /* an absent pool key: after the restart it is no member */
    }
    return TRUE;
}

static void
append_map(GString *out, const gchar *name, GHashTable *map)
{
    g_autoptr(GList) keys = g_list_sort(g_hash_table_get_keys(map), (GCompareFunc)strcmp);
    g_string_append_printf(out, "%s{", name);
    for (GList *l = keys; l != NULL; l = l->next) {
        const gchar *value = g_hash_table_lookup(map, l->data);
        g_string_append_printf(out, " %s=%s", (const gchar *)l->data, value != NULL ? value : "");
    }
    g_string_append(out, " } ");
}

static gchar *
state_text(const GwBinderState *state)
{
    GString *out = g_string_new(NULL);
    append_map(out, "assignments", state->assignments);
    append_map(out, "released", state->released);
    append_map(out, "leases", state->leases);
    return g_string_free(out, FALSE);
}

/* Bindings of the present devices. */
static gchar *
present_bindings(BinderHarness *harness)
{
    g_autoptr(GPtrArray) devices = gw_binder_list_devices(harness->binder);
    GString *out = g_string_new(NULL);
    for (guint i = 0; i < devices->len; i++) {
        const GwBinderDevice *dev = g_ptr_array_index(devices, i);
        if (dev->present)
            g_string_append_printf(out, "%s=%s ", dev->id, dev->vm != NULL ? dev->vm : "-");
    }
    return g_string_free(out, FALSE);
}

/* Runs @events on a fresh binder; NULL when every invariant held, else
 * what broke and after which event. */
static gchar *
run_events(const PropertyCase *c, GPtrArray *events)
{
    g_autoptr(BinderHarness) harness = binder_harness_new((const gchar *const *)c->policies);

    for (guint i = 0; i < events->len; i++) {
        const gchar *line = g_ptr_array_index(events, i);
        g_autoptr(GError) error = NULL;
        g_autofree gchar *broken = NULL;
        g_autoptr(GwBinderState) before = NULL;
        g_autofree gchar *bindings_before = NULL;
        gboolean restart = g_str_has_prefix(line, "restart");
        gboolean comparable = restart && restart_comparable(harness);

        if (comparable) {
            before = gw_binder_save(harness->binder);
            bindings_before = present_bindings(harness);
        }
        if (!binder_harness_run(harness, line, &error))
            return g_strdup_printf("event %u '%s': %s", i, line, error->message);
        broken = binder_harness_check(harness);
        if (broken != NULL)
            return g_strdup_printf("after event %u '%s': %s", i, line, broken);
        if (comparable) {
            g_autoptr(GwBinderState) after = gw_binder_save(harness->binder);
            g_autofree gchar *bindings_after = present_bindings(harness);
            if (!gw_binder_state_equal(before, after)) {
                g_autofree gchar *a = state_text(before);
                g_autofree gchar *b = state_text(after);
                return g_strdup_printf("after event %u '%s': the saved state %s became %s", i, line,
                                       a, b);
            }
            if (g_strcmp0(bindings_before, bindings_after) != 0)
                return g_strdup_printf("after event %u '%s': bindings %s became %s", i, line,
                                       bindings_before, bindings_after);
        }
    }
    return NULL;
}

static gpointer
copy_line(gconstpointer line, gpointer user_data)
{
    return g_strdup(line);
}

/* Drops events while the case still fails. */
static GPtrArray *
shorten(const PropertyCase *c)
{
    GPtrArray *events = g_ptr_array_copy(c->events, copy_line, NULL);
    gboolean changed = TRUE;

    g_ptr_array_set_free_func(events, g_free);
    while (changed) {
        changed = FALSE;
        for (guint i = events->len; i > 0; i--) {
            g_autoptr(GPtrArray) shorter = g_ptr_array_copy(events, copy_line, NULL);
            g_autofree gchar *broken = NULL;
            g_ptr_array_set_free_func(shorter, g_free);
            g_ptr_array_remove_index(shorter, i - 1);
            broken = run_events(c, shorter);
            if (broken != NULL) {
                g_ptr_array_unref(events);
                events = g_steal_pointer(&shorter);
                changed = TRUE;
            }
        }
    }
    return events;
}

int
main(int argc, char **argv)
{
    guint64 cases = 100000;
    guint64 seed = 20261204;
    guint64 max_events = 60;
    GOptionEntry entries[] = {
        {"cases", 0, 0, G_OPTION_ARG_INT64, &cases, "Cases to run (default 100000)", "N"},
        {"seed", 0, 0, G_OPTION_ARG_INT64, &seed, "First case's seed (default 20261204)", "S"},
        {"events", 0, 0, G_OPTION_ARG_INT64, &max_events, "Most events per case (default 60)", "N"},
        G_OPTION_ENTRY_NULL,
    };
    g_autoptr(GOptionContext) context = g_option_context_new("- GwBinder property test");
    g_autoptr(GError) error = NULL;
    guint64 events_run = 0;
    gint64 started = g_get_monotonic_time();

    g_option_context_add_main_entries(context, entries, NULL);
    if (!g_option_context_parse(context, &argc, &argv, &error)) {
        g_printerr("%s\n", error->message);
        return 2;
    }
    binder_harness_quiet_logs();
    g_print("test-binder-property: %" G_GUINT64_FORMAT " cases from seed %" G_GUINT64_FORMAT
            ", up to %" G_GUINT64_FORMAT " events each\n",
            cases, seed, max_events);
    for (guint64 n = 0; n < cases; n++) {
        PropertyCase c = {0};
        g_autofree gchar *broken = NULL;
        guint32 case_seed = (guint32)(seed + n);

        random_case(&c, case_seed, (guint)max_events);
        events_run += c.events->len;
        broken = run_events(&c, c.events);
        if (broken != NULL) {
            g_autoptr(GPtrArray) short_events = shorten(&c);
            g_autofree gchar *short_broken = run_events(&c, short_events);
            g_print("FAILED: case %" G_GUINT64_FORMAT " (seed %u): %s\n", n, case_seed, broken);
            for (guint i = 0; c.policies[i] != NULL; i++)
                g_print("policy %u:\n%s", i, c.policies[i]);
            g_print("shortest failing sequence (%u of %u events): %s\n", short_events->len,
                    c.events->len, short_broken);
            for (guint i = 0; i < short_events->len; i++)
                g_print("  %s\n", (const gchar *)g_ptr_array_index(short_events, i));
            g_print("replay: test-binder-property --seed %u --cases 1 --events %" G_GUINT64_FORMAT
                    "\n",
                    case_seed, max_events);
            property_case_clear(&c);
            return 1;
        }
        property_case_clear(&c);
    }
    g_print("test-binder-property: %" G_GUINT64_FORMAT " cases, %" G_GUINT64_FORMAT
            " events, seed %" G_GUINT64_FORMAT ": every invariant held (%.1f s)\n",
            cases, events_run, seed, (g_get_monotonic_time() - started) / 1e6);
    return 0;
}
