/* Extra keys for usbgw-bench-sim, the bench build of usbgw-sim.
 *
 * usbgw-bench-sim is usbgw-sim compiled from the unchanged tests/sim
 * sources, except that sim-bed.c is built with
 * -Dsim_key_models=bench_sim_key_models: the bed then takes its key table
 * from here. The table is usbgw-sim's own (hasp, hasp2, hid, stick, as in
 * the tests) followed by USBGW_BENCH_SIM_KEYS (default 100) more copies of
 * the hasp model — same ids, descriptors and strings — named key1, key2, …
 * on ports 1-5, 1-6, … of the root hub, each with its own secret. They are
 * plugged with --plug keyN or "plug keyN" on the control socket, as any key.
 *
 * Bus 1 has 127 device numbers; the two hubs take two, so at most
 * BENCH_SIM_MAX_KEYS extra keys exist (and at most 125 keys are plugged at
 * once). */
#include <stdlib.h>
#include <string.h>

#include "../tests/sim/sim-key.h"

#define BENCH_SIM_DEFAULT_KEYS 100
#define BENCH_SIM_MAX_KEYS     121
#define BENCH_SIM_FIRST_PORT   5 /* hasp, hasp2, the hub and stick use 1 to 4 */

const SimKeyModel *bench_sim_key_models(gsize *n_models);

const SimKeyModel *
bench_sim_key_models(gsize *n_models)
{
    static SimKeyModel *table; /* built once, lives as long as the process */
    static gsize n_table;

    if (table == NULL) {
        gsize n_base;
        const SimKeyModel *base = sim_key_models(&n_base);
        const SimKeyModel *hasp = NULL;
        const char *env = g_getenv("USBGW_BENCH_SIM_KEYS");
        guint extra = env != NULL ? (guint)g_ascii_strtoull(env, NULL, 10) : BENCH_SIM_DEFAULT_KEYS;

        extra = MIN(extra, BENCH_SIM_MAX_KEYS);
        for (gsize i = 0; i < n_base; i++) {
            if (g_strcmp0(base[i].name, "hasp") == 0)
                hasp = &base[i];
        }
        g_assert(hasp != NULL);
        table = g_new0(SimKeyModel, n_base + extra);
        memcpy(table, base, n_base * sizeof(*base));
        for (guint i = 0; i < extra; i++) {
            SimKeyModel *model = &table[n_base + i];
            *model = *hasp;
            model->name = g_strdup_printf("key%u", i + 1);
            model->port = g_strdup_printf("1-%u", BENCH_SIM_FIRST_PORT + i);
            for (guint j = 0; j < USBGW_KEY_LEN; j++)
                model->secret[j] = (guint8)(hasp->secret[j] ^ (37u * (i + 1) + 11u * j));
        }
        n_table = n_base + extra;
    }
    *n_models = n_table;
    return table;
}
