/* PolicyPools: leases of a pool's identical devices to its VMs, step by
 * step. Each scenario is a table of steps with the answer each must give. */
#include <string.h>

#include "policy-private.h"
#include "policy-test-device.h"

#define POOLS_POLICY                                                                               \
    "pool \"hasp-cad\" vms \"cad-0?\"\n"                                                           \
    "pool \"erp\" vms \"erp-*\"\n"                                                                 \
    "pool \"spare\" vms \"*\"\n"                                                                   \
    "assign id 0529:0001 to pool \"hasp-cad\"\n"                                                   \
    "assign id 064f:2af9 to pool \"erp\"\n"                                                        \
    "assign id 096e:* to pool \"spare\"\n"

typedef enum {
    STEP_END,
    STEP_ADD,     /* pool, device key → ok or error */
    STEP_REMOVE,  /* device key */
    STEP_ACQUIRE, /* pool, vm → device key or error */
    STEP_RELEASE, /* vm → number of leases ended */
    STEP_HOLDER,  /* device key → vm or NULL */
} StepOp;

#define NO_ERROR (-1)

typedef struct {
    StepOp op;
    const gchar *a;
    const gchar *b;
    const gchar *want; /* ACQUIRE: key; RELEASE: count; HOLDER: vm (NULL: none) */
    gint error;        /* PolicyError, or NO_ERROR */
    const gchar *message;
} PoolStep;

#define ADD(pool, key)                                                                             \
    {                                                                                              \
        STEP_ADD, pool, key, NULL, NO_ERROR, NULL                                                  \
    }
#define ADD_FAILS(pool, key, code, msg)                                                            \
    {                                                                                              \
        STEP_ADD, pool, key, NULL, code, msg                                                       \
    }
#define REMOVE(key)                                                                                \
    {                                                                                              \
        STEP_REMOVE, key, NULL, NULL, NO_ERROR, NULL                                               \
    }
#define ACQUIRE(pool, vm, key)                                                                     \
    {                                                                                              \
        STEP_ACQUIRE, pool, vm, key, NO_ERROR, NULL                                                \
    }
#define ACQUIRE_FAILS(pool, vm, code, msg)                                                         \
    {                                                                                              \
        STEP_ACQUIRE, pool, vm, NULL, code, msg                                                    \
    }
#define RELEASE(vm, count)                                                                         \
    {                                                                                              \
        STEP_RELEASE, vm, NULL, count, NO_ERROR, NULL                                              \
    }
#define HOLDER(key, vm)                                                                            \
    {                                                                                              \
        STEP_HOLDER, key, NULL, vm, NO_ERROR, NULL                                                 \
    }
#define END                                                                                        \
    {                                                                                              \
        STEP_END, NULL, NULL, NULL, NO_ERROR, NULL                                                 \
    }

typedef struct {
    const gchar *name;
    const PoolStep *steps;
} PoolScenario;

/* The example of the design: 3 identical HASP keys, 5 CAD VMs. */
static const PoolStep three_keys_five_vms[] = {
    /* keys show up in any order; leases follow port order */
    ADD("hasp-cad", "1-3.1"),
    ADD("hasp-cad", "1-1"),
    ADD("hasp-cad", "1-2"),
    ACQUIRE("hasp-cad", "cad-01", "1-1"),
    ACQUIRE("hasp-cad", "cad-02", "1-2"),
    ACQUIRE("hasp-cad", "cad-03", "1-3.1"),
    ACQUIRE_FAILS("hasp-cad", "cad-04", POLICY_ERROR_EXHAUSTED,
                  "every device of pool \"hasp-cad\" is in use (3 present)"),
    ACQUIRE_FAILS("hasp-cad", "cad-05", POLICY_ERROR_EXHAUSTED, "(3 present)"),
    /* a VM asking again keeps its key */
    ACQUIRE("hasp-cad", "cad-02", "1-2"),
    HOLDER("1-1", "cad-01"),
    HOLDER("1-2", "cad-02"),
    HOLDER("1-3.1", "cad-03"),
    /* cad-02 stops: its key goes to the next VM that starts */
    RELEASE("cad-02", "1"),
    HOLDER("1-2", NULL),
    ACQUIRE("hasp-cad", "cad-04", "1-2"),
    ACQUIRE_FAILS("hasp-cad", "cad-05", POLICY_ERROR_EXHAUSTED, "(3 present)"),
    RELEASE("cad-01", "1"),
    ACQUIRE("hasp-cad", "cad-05", "1-1"),
    HOLDER("1-1", "cad-05"),
    /* a key is unplugged: its lease ends, the pool is one smaller */
    REMOVE("1-3.1"),
    HOLDER("1-3.1", NULL),
    ACQUIRE_FAILS("hasp-cad", "cad-03", POLICY_ERROR_EXHAUSTED, "(2 present)"),
    /* plugged back, it is free again */
    ADD("hasp-cad", "1-3.1"),
    HOLDER("1-3.1", NULL),
    ACQUIRE("hasp-cad", "cad-03", "1-3.1"),
    /* everyone stops */
    RELEASE("cad-03", "1"),
    RELEASE("cad-04", "1"),
    RELEASE("cad-05", "1"),
    RELEASE("cad-05", "0"),
    ACQUIRE("hasp-cad", "cad-01", "1-1"),
    END,
};

/* Key order is byte order (strcmp), not numeric order. */
static const PoolStep key_byte_order[] = {
    ADD("hasp-cad", "1-2"),
    ADD("hasp-cad", "1-10"),
    ACQUIRE("hasp-cad", "cad-01", "1-10"),
    ACQUIRE("hasp-cad", "cad-02", "1-2"),
    END,
};

static const PoolStep errors[] = {
    ADD_FAILS("nope", "1-1", POLICY_ERROR_NOT_FOUND, "pool \"nope\" is not defined in p.rules"),
    ACQUIRE_FAILS("nope", "cad-01", POLICY_ERROR_NOT_FOUND,
                  "pool \"nope\" is not defined in p.rules"),
    ACQUIRE_FAILS("hasp-cad", "erp-01", POLICY_ERROR_NOT_ALLOWED,
                  "VM \"erp-01\" is not a member of pool \"hasp-cad\" (vms \"cad-0?\", p.rules:1)"),
    ACQUIRE_FAILS("hasp-cad", "cad-010", POLICY_ERROR_NOT_ALLOWED, "not a member"),
    ACQUIRE_FAILS("erp", "erp-01", POLICY_ERROR_EXHAUSTED,
                  "pool \"erp\" has no device here to lease (none present and free to take)"),
    /* a device belongs to one pool */
    ADD("hasp-cad", "1-1"),
    ADD_FAILS("erp", "1-1", POLICY_ERROR_NOT_ALLOWED,
              "device 1-1 is already a member of pool \"hasp-cad\""),
    /* adding it again to the same pool changes nothing */
    ADD("hasp-cad", "1-1"),
    ACQUIRE("hasp-cad", "cad-01", "1-1"),
    ACQUIRE_FAILS("hasp-cad", "cad-02", POLICY_ERROR_EXHAUSTED, "(1 present)"),
    /* unknown keys are ignored */
    REMOVE("9-9"),
    HOLDER("9-9", NULL),
    RELEASE("nobody", "0"),
    HOLDER("1-1", "cad-01"),
    END,
};

/* Pools are independent; releasing a VM ends its leases in all of them. */
static const PoolStep two_pools[] = {
    ADD("hasp-cad", "1-1"),
    ADD("spare", "2-1"),
    ADD("spare", "2-2"),
    ACQUIRE("hasp-cad", "cad-01", "1-1"),
    ACQUIRE("spare", "cad-01", "2-1"),
    ACQUIRE("spare", "erp-01", "2-2"),
    RELEASE("cad-01", "2"),
    HOLDER("1-1", NULL),
    HOLDER("2-1", NULL),
    HOLDER("2-2", "erp-01"),
    /* a removed device leaves its pool, so it may join another */
    REMOVE("2-1"),
    ADD("hasp-cad", "2-1"),
    ACQUIRE("hasp-cad", "cad-01", "1-1"),
    ACQUIRE("hasp-cad", "cad-02", "2-1"),
    END,
};

/* Removing the device a VM holds lets it lease another one. */
static const PoolStep remove_leased[] = {
    ADD("hasp-cad", "1-1"),
    ADD("hasp-cad", "1-2"),
    ACQUIRE("hasp-cad", "cad-01", "1-1"),
    REMOVE("1-1"),
    ACQUIRE("hasp-cad", "cad-01", "1-2"),
    ACQUIRE_FAILS("hasp-cad", "cad-02", POLICY_ERROR_EXHAUSTED, "(1 present)"),
    REMOVE("1-2"),
    ACQUIRE_FAILS("hasp-cad", "cad-01", POLICY_ERROR_EXHAUSTED, "has no device here to lease"),
    RELEASE("cad-01", "0"),
    END,
};

static const PoolScenario scenarios[] = {
    {"three-keys-five-vms", three_keys_five_vms},
    {"key-byte-order", key_byte_order},
    {"errors", errors},
    {"two-pools", two_pools},
    {"remove-leased", remove_leased},
};

static Policy *
pools_policy_new(void)
{
    g_autoptr(GError) error = NULL;
    Policy *policy = policy_load_data(POOLS_POLICY, strlen(POOLS_POLICY), "p.rules", NULL, &error);
    g_assert_no_error(error);
    return policy;
}

static void
run_step(PolicyPools *pools, const PoolStep *step, guint index)
{
    g_autoptr(GError) error = NULL;
    const gchar *got = NULL;
    g_autofree gchar *count = NULL;

    g_test_message("step %u", index);
    switch (step->op) {
    case STEP_ADD:
        g_assert_cmpint(policy_pools_add_device(pools, step->a, step->b, &error), ==,
                        step->error == NO_ERROR);
        break;
    case STEP_REMOVE:
        policy_pools_remove_device(pools, step->a);
        break;
    case STEP_ACQUIRE:
        got = policy_pools_acquire(pools, step->a, step->b, &error);
        g_assert_cmpstr(got, ==, step->want);
        break;
    case STEP_RELEASE:
        count = g_strdup_printf("%u", policy_pools_release_vm(pools, step->a));
        g_assert_cmpstr(count, ==, step->want);
        break;
    case STEP_HOLDER:
        g_assert_cmpstr(policy_pools_lookup_holder(pools, step->a), ==, step->want);
        break;
    case STEP_END:
        g_assert_not_reached();
    }
    if (step->error == NO_ERROR) {
        g_assert_no_error(error);
    } else {
        g_assert_error(error, POLICY_ERROR, step->error);
        if (strstr(error->message, step->message) == NULL)
            g_error("step %u: \"%s\" lacks \"%s\"", index, error->message, step->message);
    }
}

static void
test_scenario(gconstpointer data)
{
    const PoolScenario *scenario = data;
    g_autoptr(Policy) policy = pools_policy_new();
    g_autoptr(PolicyPools) pools = policy_pools_new(policy);

    for (guint i = 0; scenario->steps[i].op != STEP_END; i++)
        run_step(pools, &scenario->steps[i], i);
}

/* Whatever order the keys show up in, the same VMs get the same keys. */
static void
test_insertion_order(void)
{
    static const gchar *const keys[] = {"1-1", "1-2", "1-3.1"};
    static const guint orders[][3] = {{0, 1, 2}, {0, 2, 1}, {1, 0, 2},
                                      {1, 2, 0}, {2, 0, 1}, {2, 1, 0}};
    g_autoptr(Policy) policy = pools_policy_new();

    for (guint o = 0; o < G_N_ELEMENTS(orders); o++) {
        g_autoptr(PolicyPools) pools = policy_pools_new(policy);
        for (guint k = 0; k < 3; k++)
            g_assert_true(policy_pools_add_device(pools, "hasp-cad", keys[orders[o][k]], NULL));
        g_assert_cmpstr(policy_pools_acquire(pools, "hasp-cad", "cad-05", NULL), ==, "1-1");
        g_assert_cmpstr(policy_pools_acquire(pools, "hasp-cad", "cad-01", NULL), ==, "1-2");
        g_assert_cmpstr(policy_pools_acquire(pools, "hasp-cad", "cad-03", NULL), ==, "1-3.1");
        g_assert_cmpuint(policy_pools_release_vm(pools, "cad-01"), ==, 1);
        g_assert_cmpstr(policy_pools_acquire(pools, "hasp-cad", "cad-02", NULL), ==, "1-2");
    }
}

/* The pools keep their policy alive. */
static void
test_pools_own_policy(void)
{
    Policy *policy = pools_policy_new();
    g_autoptr(PolicyPools) pools = policy_pools_new(policy);

    policy_unref(policy);
    g_assert_true(policy_pools_add_device(pools, "hasp-cad", "1-1", NULL));
    g_assert_cmpstr(policy_pools_acquire(pools, "hasp-cad", "cad-01", NULL), ==, "1-1");
    policy_pools_free(NULL);
}

/* policy_pools_acquire_key: restoring a lease from before a restart. */
static void
test_acquire_key(void)
{
    g_autoptr(Policy) policy = pools_policy_new();
    g_autoptr(PolicyPools) pools = policy_pools_new(policy);
    g_autoptr(GError) error = NULL;

    g_assert_true(policy_pools_add_device(pools, "hasp-cad", "1-1", NULL));
    g_assert_true(policy_pools_add_device(pools, "hasp-cad", "1-2", NULL));
    /* the second key, although the first is free */
    g_assert_true(policy_pools_acquire_key(pools, "hasp-cad", "cad-01", "1-2", &error));
    g_assert_no_error(error);
    g_assert_cmpstr(policy_pools_lookup_holder(pools, "1-2"), ==, "cad-01");
    g_assert_null(policy_pools_lookup_holder(pools, "1-1"));
    /* idempotent; the VM's next acquire returns the same key */
    g_assert_true(policy_pools_acquire_key(pools, "hasp-cad", "cad-01", "1-2", NULL));
    g_assert_cmpstr(policy_pools_acquire(pools, "hasp-cad", "cad-01", NULL), ==, "1-2");
    /* held by another VM */
    g_assert_false(policy_pools_acquire_key(pools, "hasp-cad", "cad-02", "1-2", &error));
    g_assert_error(error, POLICY_ERROR, POLICY_ERROR_EXHAUSTED);
    g_clear_error(&error);
    /* a VM holds one key per pool */
    g_assert_false(policy_pools_acquire_key(pools, "hasp-cad", "cad-01", "1-1", &error));
    g_assert_error(error, POLICY_ERROR, POLICY_ERROR_NOT_ALLOWED);
    g_clear_error(&error);
    /* not a member, not a pool VM, unknown pool */
    g_assert_false(policy_pools_acquire_key(pools, "hasp-cad", "cad-02", "9-9", &error));
    g_assert_error(error, POLICY_ERROR, POLICY_ERROR_NOT_FOUND);
    g_clear_error(&error);
    g_assert_false(policy_pools_acquire_key(pools, "hasp-cad", "erp-01", "1-1", &error));
    g_assert_error(error, POLICY_ERROR, POLICY_ERROR_NOT_ALLOWED);
    g_clear_error(&error);
    g_assert_false(policy_pools_acquire_key(pools, "nope", "cad-02", "1-1", &error));
    g_assert_error(error, POLICY_ERROR, POLICY_ERROR_NOT_FOUND);
}

/* A hypervisor's pool fed by two dongle servers: each gateway's keys are
 * assigned to the pool by its own rule, keyed by gateway and port (the
 * ports of two gateways can be the same), and leased one per VM across
 * gateways. */
#define GATEWAYS_POLICY                                                                            \
    "pool \"cad\" vms \"cad-*\"\n"                                                                 \
    "assign id 0529:0001 on gateway \"dongles1\" to pool \"cad\"\n"                                \
    "assign id 0529:0001 on gateway \"dongles2\" to pool \"cad\"\n"

static void
test_pool_across_gateways(void)
{
    static const struct {
        const gchar *device;
        const gchar *key; /* NULL: the policy keeps it out of the pool */
    } devices[] = {
        {"0529:0001 port=1-2 gateway=dongles2", "dongles2/1-2"},
        {"0529:0001 port=1-1 gateway=dongles1", "dongles1/1-1"},
        {"0529:0001 port=1-1 gateway=dongles2", "dongles2/1-1"},
        {"0529:0001 port=1-1 gateway=dongles3", NULL},
        {"0529:0001 port=1-1", NULL},
    };
    g_autoptr(GError) error = NULL;
    g_autoptr(Policy) policy =
        policy_load_data(GATEWAYS_POLICY, strlen(GATEWAYS_POLICY), "g.rules", NULL, &error);
    g_autoptr(PolicyPools) pools = NULL;

    g_assert_no_error(error);
    pools = policy_pools_new(policy);
    for (guint i = 0; i < G_N_ELEMENTS(devices); i++) {
        g_autoptr(PolicyDevice) device = policy_test_device_new(devices[i].device);
        PolicyDecision decision;

        policy_decide(policy, POLICY_ORIGIN_HOST, device, NULL, &decision);
        if (devices[i].key == NULL) {
            g_assert_cmpint(decision.verdict, ==, POLICY_VERDICT_NONE);
            continue;
        }
        g_assert_cmpint(decision.verdict, ==, POLICY_VERDICT_ASSIGN);
        g_assert_cmpint(decision.target_kind, ==, POLICY_TARGET_POOL);
        g_assert_cmpstr(decision.target, ==, "cad");
        g_assert_cmpuint(decision.line, ==, g_str_has_prefix(devices[i].key, "dongles1") ? 2 : 3);
        g_assert_true(policy_pools_add_device(pools, decision.target, devices[i].key, &error));
        g_assert_no_error(error);
    }
    /* first free key in key order, whichever gateway it is on */
    g_assert_cmpstr(policy_pools_acquire(pools, "cad", "cad-01", NULL), ==, "dongles1/1-1");
    g_assert_cmpstr(policy_pools_acquire(pools, "cad", "cad-02", NULL), ==, "dongles2/1-1");
    g_assert_cmpstr(policy_pools_acquire(pools, "cad", "cad-03", NULL), ==, "dongles2/1-2");
    g_assert_null(policy_pools_acquire(pools, "cad", "cad-04", &error));
    g_assert_error(error, POLICY_ERROR, POLICY_ERROR_EXHAUSTED);
    g_clear_error(&error);
    /* dongles1 goes away: its key's lease ends, and cad-04 gets nothing
     * until a key comes back */
    policy_pools_remove_device(pools, "dongles1/1-1");
    g_assert_null(policy_pools_acquire(pools, "cad", "cad-04", NULL));
    g_assert_true(policy_pools_add_device(pools, "cad", "dongles1/1-1", NULL));
    g_assert_cmpstr(policy_pools_acquire(pools, "cad", "cad-04", NULL), ==, "dongles1/1-1");
    g_assert_cmpstr(policy_pools_lookup_holder(pools, "dongles2/1-1"), ==, "cad-02");
}

int
main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    for (guint i = 0; i < G_N_ELEMENTS(scenarios); i++) {
        g_autofree gchar *path = g_strdup_printf("/policy/pools/%s", scenarios[i].name);
        g_test_add_data_func(path, &scenarios[i], test_scenario);
    }
    g_test_add_func("/policy/pools/insertion-order", test_insertion_order);
    g_test_add_func("/policy/pools/own-policy", test_pools_own_policy);
    g_test_add_func("/policy/pools/acquire-key", test_acquire_key);
    g_test_add_func("/policy/pools/across-gateways", test_pool_across_gateways);
    return g_test_run();
}
