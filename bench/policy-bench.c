/* policy-bench: time for one policy decision with 1,000 rules over 1,000
 * devices (DESIGN target: <= 100 µs). Rounds are interleaved with a 10-rule
 * policy so the output also shows how decision time scales with rules.
 *
 *   build/bench/policy-bench [--rounds N]
 */
#include <glib.h>
#include <stdio.h>
#include <string.h>

#include "policy.h"

#define BENCH_RULES       1000
#define BENCH_DEVICES     1000
#define BENCH_SMALL_RULES 10

/* A realistic mix: most rules pin a vendor/product (and often a serial or
 * port), some deny by interface class, a few are broad. The devices are
 * chosen so that most fall through most rules: the costly case. */
static gchar *
bench_make_policy(guint rules)
{
    GString *text = g_string_new("pool \"p\" vms \"vm-*\"\n");
    for (guint i = 0; i < rules; i++) {
        switch (i % 6) {
        case 0:
            g_string_append_printf(text, "assign id %04x:%04x serial \"S%u\" to vm \"vm-%u\"\n",
                                   0x1000 + i, 0x0001 + i, i, i);
            break;
        case 1:
            g_string_append_printf(text, "assign id %04x:* via-port \"1-%u.*\" to pool \"p\"\n",
                                   0x1000 + i, i % 12);
            break;
        case 2:
            g_string_append_printf(text, "deny id %04x:%04x with-interface { 08:*:* 03:01:* }\n",
                                   0x2000 + i, i);
            break;
        case 3:
            g_string_append_printf(text, "assign name \"Key-%u*\" to vm \"vm-%u\" required\n", i,
                                   i);
            break;
        case 4:
            g_string_append_printf(text,
                                   "assign id %04x:%04x with-interface all-of { ff:*:* 03:00:00 } "
                                   "to vm-uuid \"8c1f0a2e-5d2b-4c1e-9a57-%012x\"\n",
                                   0x3000 + i, i, i);
            break;
        default:
            g_string_append_printf(text, "assign hash \"h%u\" to vm \"vm-%u\"\n", i, i);
            break;
        }
    }
    return g_string_free(text, FALSE);
}

static GPtrArray *
bench_make_devices(void)
{
    GPtrArray *devices = g_ptr_array_new_with_free_func((GDestroyNotify)policy_device_free);
    GRand *rand = g_rand_new_with_seed(42);
    for (guint i = 0; i < BENCH_DEVICES; i++) {
        PolicyDevice *device =
            policy_device_new((guint16)g_rand_int_range(rand, 0x0400, 0x4000), (guint16)i);
        device->serial = i % 3 == 0 ? g_strdup_printf("S%u", i) : NULL;
        device->product = g_strdup_printf("Product %u", i);
        device->port = g_strdup_printf("1-%u.%u", i % 8, i % 4);
        device->hash = g_strdup_printf("x%u", i);
        policy_device_add_interface(device, i % 2 ? 0xff : 0x03, 0, 0);
        g_ptr_array_add(devices, device);
    }
    g_rand_free(rand);
    return devices;
}

/* Mean µs per decision over all devices. */
static gdouble
bench_round(const Policy *policy, GPtrArray *devices, guint *assigned)
{
    PolicyDecision decision;
    gint64 start = g_get_monotonic_time();
    for (guint i = 0; i < devices->len; i++) {
        policy_decide(policy, POLICY_ORIGIN_HOST, g_ptr_array_index(devices, i), NULL, &decision);
        *assigned += decision.verdict == POLICY_VERDICT_ASSIGN;
    }
    return (gdouble)(g_get_monotonic_time() - start) / devices->len;
}

static gint
bench_compare(gconstpointer a, gconstpointer b)
{
    gdouble x = *(const gdouble *)a, y = *(const gdouble *)b;
    return x < y ? -1 : x > y;
}

static Policy *
bench_load(guint rules)
{
    g_autofree gchar *text = bench_make_policy(rules);
    g_autoptr(GError) error = NULL;
    Policy *policy = policy_load_data(text, strlen(text), "bench.rules", NULL, &error);
    if (policy == NULL)
        g_printerr("policy-bench: generated policy rejected: %s\n", error->message);
    return policy;
}

int
main(int argc, char **argv)
{
    gint rounds = 15;
    const GOptionEntry entries[] = {
        {"rounds", 'r', 0, G_OPTION_ARG_INT, &rounds, "Rounds (at least 5)", "N"},
        G_OPTION_ENTRY_NULL,
    };
    g_autoptr(GOptionContext) context = g_option_context_new("— policy decision benchmark");
    g_autoptr(GError) error = NULL;
    g_autoptr(Policy) big = NULL;
    g_autoptr(Policy) small = NULL;
    g_autoptr(GPtrArray) devices = NULL;
    g_autoptr(GArray) big_times = g_array_new(FALSE, FALSE, sizeof(gdouble));
    g_autoptr(GArray) small_times = g_array_new(FALSE, FALSE, sizeof(gdouble));
    guint assigned = 0;
    gint64 load_start;
    gdouble load_ms, big_median, small_median;

    g_option_context_add_main_entries(context, entries, NULL);
    if (!g_option_context_parse(context, &argc, &argv, &error)) {
        g_printerr("policy-bench: %s\n", error->message);
        return 1;
    }
    rounds = MAX(rounds, 5);

    load_start = g_get_monotonic_time();
    big = bench_load(BENCH_RULES);
    load_ms = (g_get_monotonic_time() - load_start) / 1000.0;
    small = bench_load(BENCH_SMALL_RULES);
    if (big == NULL || small == NULL)
        return 1;
    devices = bench_make_devices();

    /* warm-up, then interleave the two policies */
    bench_round(big, devices, &assigned);
    bench_round(small, devices, &assigned);
    for (gint r = 0; r < rounds; r++) {
        gdouble t = bench_round(big, devices, &assigned);
        g_array_append_val(big_times, t);
        t = bench_round(small, devices, &assigned);
        g_array_append_val(small_times, t);
    }
    g_array_sort(big_times, bench_compare);
    g_array_sort(small_times, bench_compare);
    big_median = g_array_index(big_times, gdouble, big_times->len / 2);
    small_median = g_array_index(small_times, gdouble, small_times->len / 2);

    g_print("rig: protocol-free (policy library only), %u cores, %d rounds\n",
            g_get_num_processors(), rounds);
    g_print("bench policy-decision: %.2f us per decision at %u rules x %u devices "
            "(rounds %.2f-%.2f; baseline %u rules %.3f us, ratio %.1f)\n",
            big_median, BENCH_RULES, BENCH_DEVICES, g_array_index(big_times, gdouble, 0),
            g_array_index(big_times, gdouble, big_times->len - 1), BENCH_SMALL_RULES, small_median,
            small_median > 0 ? big_median / small_median : 0.0);
    g_print("bench policy-load: %.2f ms for %u rules\n", load_ms, BENCH_RULES);
    g_print("bench policy-decision-target: %s (<= 100 us)\n",
            big_median <= 100.0 ? "met" : "MISSED");
    /* keep the decisions observable so the loop is not optimized away */
    g_print("(%u assign decisions)\n", assigned);
    return 0;
}
