/* GwClusterPool (gateway/cluster/gw-cluster-pool.h) against a real etcd
 * cluster of three members on 127.0.0.1 (test-etcd-members.h). Each
 * simulated gateway has its own GwEtcd, its own etcd lease and a keeper;
 * their clients list the members in different orders, so the gateways'
 * requests go to different members.
 *
 * Cases: three gateways racing for a pool of two keys; a lost lease (one
 * revoked under a keeper, one expired under none); bad names, bad entries
 * and an unreachable etcd; and a soak of TEST_SOAK_OPS acquires and
 * releases in flight at once, checked afterwards against etcd's history of
 * the pool (no key ever put while it existed: no double lease; every put
 * and delete one the test saw succeed, at the revision it was told).
 *
 * Skipped only when no etcd binary is installed (Debian: etcd-server). */
#include <json-glib/json-glib.h>
#include <string.h>

#include "gw-cluster-pool.h"
#include "test-etcd-members.h"

/* The lease TTL of the gateways (a keeper renews every third of it). */
#define TEST_GATEWAY_TTL_S 10
/* The TTL of the leases the lost-lease case lets go. */
#define TEST_SHORT_TTL_S 2
/* The soak: simulated gateways, operations each keeps in flight, keys in
 * the pool, operations in all, and the chance (percent) that a gateway
 * holding keys releases one rather than asks for another. */
#define TEST_SOAK_GATEWAYS        6
#define TEST_SOAK_IN_FLIGHT       4
#define TEST_SOAK_KEYS            8
#define TEST_SOAK_OPS             10000
#define TEST_SOAK_RELEASE_PERCENT 50
/* Written after the soak: the history watch (on the pool's prefix without
 * its slash) ends there; outside the pool itself. */
#define TEST_SOAK_END GW_CLUSTER_POOL_PREFIX "soak~end"

static TestCluster *cluster; /* three members, started in main() */

/* ---- simulated gateways ---- */

typedef struct {
    gchar *name;
    GwEtcd *etcd; /* owned */
    gint64 lease;
    GwEtcdLeaseKeeper *keeper; /* owned, nullable */
    GwClusterPool *pool;       /* owned */
    GError *lost;              /* owned, nullable: the keeper's report */
    GPtrArray *lost_holds;     /* owned, nullable: what lease_lost() returned */
} TestGateway;

static void
test_gateway_lost(GwEtcdLeaseKeeper *keeper, const GError *error, gpointer user_data)
{
    TestGateway *gateway = user_data;

    g_assert_null(gateway->lost);
    gateway->lost = g_error_copy(error);
    gateway->lost_holds = gw_cluster_pool_lease_lost(gateway->pool, error);
}

/* Gateway @name with a lease of @ttl s, kept alive when @keep; its client
 * lists the members starting at member @first. */
static TestGateway *
test_gateway_new(const gchar *name, guint first, gint64 ttl, gboolean keep)
{
    TestGateway *gateway = g_new0(TestGateway, 1);
    const gchar *endpoints[4] = {NULL};
    g_autoptr(GError) error = NULL;

    for (guint i = 0; i < cluster->members->len; i++)
        endpoints[i] = test_url(cluster, (first + i) % cluster->members->len);
    gateway->name = g_strdup(name);
    gateway->etcd = test_client(endpoints);
    gateway->lease = test_grant(gateway->etcd, ttl);
    if (keep)
        gateway->keeper = gw_etcd_lease_keeper_new(gateway->etcd, gateway->lease, ttl,
                                                   test_gateway_lost, gateway);
    gateway->pool = gw_cluster_pool_new(gateway->etcd, name, gateway->lease, &error);
    g_assert_no_error(error);
    g_assert_nonnull(gateway->pool);
    return gateway;
}

static void
test_gateway_free(TestGateway *gateway)
{
    g_clear_pointer(&gateway->keeper, gw_etcd_lease_keeper_free);
    g_clear_pointer(&gateway->pool, gw_cluster_pool_free);
    g_clear_object(&gateway->etcd);
    g_clear_error(&gateway->lost);
    g_clear_pointer(&gateway->lost_holds, g_ptr_array_unref);
    g_free(gateway->name);
    g_free(gateway);
}
G_DEFINE_AUTOPTR_CLEANUP_FUNC(TestGateway, test_gateway_free)

static void
test_revoke(TestGateway *gateway)
{
    g_autoptr(GAsyncResult) result = NULL;
    g_autoptr(GError) error = NULL;

    gw_etcd_lease_revoke_async(gateway->etcd, gateway->lease, NULL, test_got_result, &result);
    g_assert_true(gw_etcd_lease_revoke_finish(gateway->etcd, test_wait(&result), &error));
    g_assert_no_error(error);
}

/* ---- synchronous pool calls ---- */

static GwClusterPoolHold *
test_acquire(TestGateway *gateway, const gchar *pool_name, const gchar *const *devices,
             const gchar *vm, GError **error)
{
    g_autoptr(GAsyncResult) result = NULL;

    gw_cluster_pool_acquire_async(gateway->pool, pool_name, devices, vm, NULL, test_got_result,
                                  &result);
    return gw_cluster_pool_acquire_finish(gateway->pool, test_wait(&result), error);
}

static gboolean
test_release(TestGateway *gateway, const gchar *pool_name, const gchar *device, GError **error)
{
    g_autoptr(GAsyncResult) result = NULL;
    gint64 revision = 0;
    gboolean ok;

    gw_cluster_pool_release_async(gateway->pool, pool_name, device, NULL, test_got_result, &result);
    ok = gw_cluster_pool_release_finish(gateway->pool, test_wait(&result), &revision, error);
    g_assert_true(ok == (revision > 0));
    return ok;
}

static GPtrArray *
test_query(TestGateway *gateway, const gchar *pool_name, GError **error)
{
    g_autoptr(GAsyncResult) result = NULL;

    gw_cluster_pool_query_async(gateway->pool, pool_name, NULL, test_got_result, &result);
    return gw_cluster_pool_query_finish(gateway->pool, test_wait(&result), NULL, error);
}

static void
test_assert_hold(const GwClusterPoolHold *hold, const gchar *pool_name, const gchar *device,
                 TestGateway *gateway, const gchar *vm)
{
    g_assert_nonnull(hold);
    g_assert_cmpstr(hold->pool, ==, pool_name);
    g_assert_cmpstr(hold->device, ==, device);
    g_assert_cmpstr(hold->gateway, ==, gateway->name);
    g_assert_cmpstr(hold->vm, ==, vm);
    g_assert_cmpint(hold->lease, ==, gateway->lease);
    g_assert_cmpint(hold->revision, >, 0);
}

static gboolean
test_skip_without_etcd(void)
{
    if (cluster != NULL)
        return FALSE;
    g_test_skip("no etcd binary (Debian: etcd-server)");
    return TRUE;
}

/* ---- cases ---- */

typedef struct {
    GwClusterPool *pool;
    GwClusterPoolHold *hold;
    GError *error;
    gboolean done;
} TestAsk;

static void
test_ask_done(GObject *source, GAsyncResult *result, gpointer user_data)
{
    TestAsk *ask = user_data;

    ask->hold = gw_cluster_pool_acquire_finish(ask->pool, result, &ask->error);
    ask->done = TRUE;
}

/* Three gateways ask at once for a key of a pool of two, for VMs v1..v3:
 * exactly two hold distinct keys, the third is told every key is held and
 * by whom; etcd shows the two holds. One releases; the third then gets
 * that key. */
static void
test_two_keys(void)
{
    const gchar *devices[] = {"d1", "d2", NULL};
    const gchar *vms[] = {"v1", "v2", "v3"};
    TestGateway *gateways[3];
    TestAsk asks[3] = {{0}};
    guint won = 0, refused = 0, loser = 0;
    g_autoptr(GError) error = NULL;

    if (test_skip_without_etcd())
        return;
    for (guint i = 0; i < 3; i++) {
        g_autofree gchar *name = g_strdup_printf("g%u", i + 1);
        gateways[i] = test_gateway_new(name, i, TEST_GATEWAY_TTL_S, TRUE);
    }
    for (guint i = 0; i < 3; i++) {
        asks[i].pool = gateways[i]->pool;
        gw_cluster_pool_acquire_async(gateways[i]->pool, "two", devices, vms[i], NULL,
                                      test_ask_done, &asks[i]);
    }
    while (!asks[0].done || !asks[1].done || !asks[2].done)
        g_main_context_iteration(NULL, TRUE);
    for (guint i = 0; i < 3; i++) {
        if (asks[i].hold != NULL) {
            won++;
            g_assert_no_error(asks[i].error);
            test_assert_hold(asks[i].hold, "two", asks[i].hold->device, gateways[i], vms[i]);
        } else {
            refused++;
            loser = i;
            g_assert_error(asks[i].error, GW_CLUSTER_POOL_ERROR, GW_CLUSTER_POOL_ERROR_ALL_HELD);
        }
    }
    g_assert_cmpuint(won, ==, 2);
    g_assert_cmpuint(refused, ==, 1);
    {
        /* a holds d1, b holds d2 */
        guint a = (loser + 1) % 3, b = (loser + 2) % 3;
        g_autofree gchar *want = NULL;
        g_autoptr(GPtrArray) holds = NULL;

        if (strcmp(asks[a].hold->device, "d1") != 0) {
            a = b;
            b = (loser + 1) % 3;
        }
        const GwClusterPoolHold *ha = asks[a].hold, *hb = asks[b].hold;
        g_assert_cmpstr(ha->device, ==, "d1");
        g_assert_cmpstr(hb->device, ==, "d2");
        want = g_strdup_printf("pool two: all 2 keys are held (by d1: %s for %s, d2: %s for %s)",
                               gateways[a]->name, vms[a], gateways[b]->name, vms[b]);
        g_assert_cmpstr(asks[loser].error->message, ==, want);

        /* who holds what, from etcd, from the loser's side */
        holds = test_query(gateways[loser], "two", &error);
        g_assert_no_error(error);
        g_assert_cmpuint(holds->len, ==, 2);
        test_assert_hold(g_ptr_array_index(holds, 0), "two", "d1", gateways[a], vms[a]);
        test_assert_hold(g_ptr_array_index(holds, 1), "two", "d2", gateways[b], vms[b]);
        g_assert_cmpint(((GwClusterPoolHold *)g_ptr_array_index(holds, 0))->revision, ==,
                        ha->revision);
        g_assert_cmpint(((GwClusterPoolHold *)g_ptr_array_index(holds, 1))->revision, ==,
                        hb->revision);

        /* every pool: only this one has keys now */
        g_clear_pointer(&holds, g_ptr_array_unref);
        holds = test_query(gateways[loser], NULL, &error);
        g_assert_no_error(error);
        g_assert_cmpuint(holds->len, ==, 2);
        test_assert_hold(g_ptr_array_index(holds, 0), "two", "d1", gateways[a], vms[a]);

        /* the holder of d1 lets it go; releasing again is refused */
        g_assert_true(test_release(gateways[a], "two", "d1", &error));
        g_assert_no_error(error);
        g_assert_false(test_release(gateways[a], "two", "d1", &error));
        g_assert_error(error, GW_CLUSTER_POOL_ERROR, GW_CLUSTER_POOL_ERROR_NOT_HELD);
        g_clear_error(&error);
        {
            g_autoptr(GPtrArray) held = gw_cluster_pool_get_held(gateways[a]->pool);
            g_assert_cmpuint(held->len, ==, 0);
        }

        /* the third asks again and gets d1 */
        g_autoptr(GwClusterPoolHold) again =
            test_acquire(gateways[loser], "two", devices, vms[loser], &error);
        g_assert_no_error(error);
        test_assert_hold(again, "two", "d1", gateways[loser], vms[loser]);
        g_assert_cmpint(again->revision, >, hb->revision);
        g_autoptr(GPtrArray) held = gw_cluster_pool_get_held(gateways[loser]->pool);
        g_assert_cmpuint(held->len, ==, 1);
        test_assert_hold(g_ptr_array_index(held, 0), "two", "d1", gateways[loser], vms[loser]);
    }
    for (guint i = 0; i < 3; i++) {
        g_assert_null(gateways[i]->lost);
        test_revoke(gateways[i]);
        gw_cluster_pool_hold_free(asks[i].hold);
        g_clear_error(&asks[i].error);
    }
    for (guint i = 0; i < 3; i++)
        test_gateway_free(gateways[i]);
}

/* A gateway whose lease is revoked: its keeper reports the loss, the pool
 * drops its holds and says which, its key is free for another, and it
 * acquires nothing more. A gateway whose lease expired unnoticed (no
 * keeper): its key is taken by another, and its late release leaves the
 * other's key alone. */
static void
test_lease_lost(void)
{
    const gchar *k1[] = {"k1", NULL};
    const gchar *k2[] = {"k2", NULL};
    g_autoptr(TestGateway) x = NULL;
    g_autoptr(TestGateway) y = NULL;
    g_autoptr(TestGateway) w = NULL;
    g_autoptr(GError) error = NULL;
    g_autoptr(GwClusterPoolHold) hx = NULL;
    g_autoptr(GwClusterPoolHold) hw = NULL;
    g_autoptr(GwClusterPoolHold) hy1 = NULL;
    g_autoptr(GwClusterPoolHold) hy2 = NULL;
    g_autoptr(GwClusterPoolHold) none = NULL;
    g_autoptr(GPtrArray) holds = NULL;
    gint64 expired_at;

    if (test_skip_without_etcd())
        return;
    x = test_gateway_new("x", 0, TEST_SHORT_TTL_S, TRUE);
    y = test_gateway_new("y", 1, TEST_GATEWAY_TTL_S, TRUE);
    w = test_gateway_new("w", 2, TEST_SHORT_TTL_S, FALSE);

    hx = test_acquire(x, "lost", k1, "vx", &error);
    g_assert_no_error(error);
    test_assert_hold(hx, "lost", "k1", x, "vx");
    hw = test_acquire(w, "lost", k2, "vw", &error);
    g_assert_no_error(error);
    expired_at = g_get_monotonic_time() + TEST_SHORT_TTL_S * G_USEC_PER_SEC;
    none = test_acquire(y, "lost", k1, "vy", &error);
    g_assert_null(none);
    g_assert_error(error, GW_CLUSTER_POOL_ERROR, GW_CLUSTER_POOL_ERROR_ALL_HELD);
    g_assert_cmpstr(error->message, ==, "pool lost: all 1 keys are held (by k1: x for vx)");
    g_clear_error(&error);

    /* x's lease revoked: its keeper notices at its next keepalive */
    test_revoke(x);
    while (x->lost == NULL)
        g_main_context_iteration(NULL, TRUE);
    g_assert_error(x->lost, GW_ETCD_ERROR, GW_ETCD_ERROR_LEASE_NOT_FOUND);
    g_assert_cmpuint(x->lost_holds->len, ==, 1);
    test_assert_hold(g_ptr_array_index(x->lost_holds, 0), "lost", "k1", x, "vx");
    holds = gw_cluster_pool_get_held(x->pool);
    g_assert_cmpuint(holds->len, ==, 0);
    g_clear_pointer(&holds, g_ptr_array_unref);

    hy1 = test_acquire(y, "lost", k1, "vy", &error);
    g_assert_no_error(error);
    test_assert_hold(hy1, "lost", "k1", y, "vy");
    none = test_acquire(x, "lost", k2, "vx2", &error);
    g_assert_null(none);
    g_assert_error(error, GW_CLUSTER_POOL_ERROR, GW_CLUSTER_POOL_ERROR_LEASE_LOST);
    g_assert_true(g_str_has_prefix(error->message, "pool lost: gateway x lost its etcd lease "));
    g_clear_error(&error);
    g_assert_false(test_release(x, "lost", "k1", &error));
    g_assert_error(error, GW_CLUSTER_POOL_ERROR, GW_CLUSTER_POOL_ERROR_NOT_HELD);
    g_clear_error(&error);

    /* w's lease expires (nobody renews it): k2 is free after the TTL */
    while (g_get_monotonic_time() < expired_at + G_USEC_PER_SEC / 2)
        test_sleep_running(100);
    for (;;) {
        hy2 = test_acquire(y, "lost", k2, "vy2", &error);
        if (hy2 != NULL)
            break;
        /* etcd expires leases on its own clock: a little slack */
        g_assert_error(error, GW_CLUSTER_POOL_ERROR, GW_CLUSTER_POOL_ERROR_ALL_HELD);
        g_assert_cmpint(g_get_monotonic_time(), <, expired_at + 3 * G_USEC_PER_SEC);
        g_clear_error(&error);
        test_sleep_running(100);
    }
    test_assert_hold(hy2, "lost", "k2", y, "vy2");
    /* w still believes it holds k2: its release must not delete y's key */
    g_assert_false(test_release(w, "lost", "k2", &error));
    g_assert_error(error, GW_CLUSTER_POOL_ERROR, GW_CLUSTER_POOL_ERROR_NOT_HELD);
    g_assert_nonnull(strstr(error->message, "pool lost, device k2: no longer held by gateway w"));
    g_clear_error(&error);
    holds = test_query(y, "lost", &error);
    g_assert_no_error(error);
    g_assert_cmpuint(holds->len, ==, 2);
    test_assert_hold(g_ptr_array_index(holds, 0), "lost", "k1", y, "vy");
    test_assert_hold(g_ptr_array_index(holds, 1), "lost", "k2", y, "vy2");
    g_assert_cmpint(((GwClusterPoolHold *)g_ptr_array_index(holds, 1))->revision, ==,
                    hy2->revision);
    g_assert_null(y->lost);
    test_revoke(y);
}

/* Bad names are refused naming them; a pool key someone else wrote badly
 * is named by the query, and shown as unreadable in a refusal; an etcd
 * that does not answer is an etcd error naming the pool and device. */
/* Any device id becomes a device name and back; names that are no escape
 * are refused. */
static void
test_device_names(void)
{
    const struct {
        const gchar *id, *name;
    } cases[] = {
        {"0529:0001@1-1", "0529:0001@1-1"},
        {"d1/0529:0001#S 7", "d1%2F0529:0001#S%207"},
        {"50%/x", "50%25%2Fx"},
        {"caf\xc3\xa9", "caf%C3%A9"},
    };
    const gchar *const bad[] = {"%", "%4", "%zz", "a%00b"};

    for (guint i = 0; i < G_N_ELEMENTS(cases); i++) {
        g_autofree gchar *name = gw_cluster_pool_device_name(cases[i].id);
        g_autofree gchar *id = gw_cluster_pool_device_id(name);
        g_assert_cmpstr(name, ==, cases[i].name);
        g_assert_cmpstr(id, ==, cases[i].id);
    }
    for (guint i = 0; i < G_N_ELEMENTS(bad); i++) {
        g_autofree gchar *id = gw_cluster_pool_device_id(bad[i]);
        g_assert_null(id);
    }
}

static void
test_errors(void)
{
    static const struct {
        const gchar *name;
        const gchar *pool;
        const gchar *device;
        const gchar *vm;
        const gchar *want;
    } cases[] = {
        {"slash in pool", "a/b", "d", "v", "pool name \"a/b\": byte 2 is not a letter"},
        {"empty pool", "", "d", "v", "pool name \"\": must be 1 to 128 bytes"},
        {"space in device", "p", "d 1", "v", "pool p: device name \"d 1\": byte 2 is not"},
        {"empty VM", "p", "d", "", "pool p: VM name: must be 1 to 128 bytes of UTF-8"},
    };
    g_autoptr(TestGateway) g = NULL;
    g_autoptr(GError) error = NULL;
    g_autoptr(GPtrArray) holds = NULL;
    g_autoptr(GwClusterPoolHold) none = NULL;
    g_autofree gchar *closed = g_strdup_printf("http://127.0.0.1:%u", test_free_port());
    const gchar *closed_list[] = {closed, NULL};
    const gchar *xs[] = {"x", NULL};

    if (test_skip_without_etcd())
        return;
    g = test_gateway_new("g", 0, TEST_GATEWAY_TTL_S, TRUE);
    for (guint i = 0; i < G_N_ELEMENTS(cases); i++) {
        const gchar *devices[] = {cases[i].device, NULL};
        g_autoptr(GwClusterPoolHold) hold = NULL;
        g_test_message("%s", cases[i].name);
        hold = test_acquire(g, cases[i].pool, devices, cases[i].vm, &error);
        g_assert_null(hold);
        g_assert_error(error, GW_CLUSTER_POOL_ERROR, GW_CLUSTER_POOL_ERROR_INVALID);
        g_assert_true(g_str_has_prefix(error->message, cases[i].want));
        g_clear_error(&error);
    }
    g_assert_null(gw_cluster_pool_new(g->etcd, "", g->lease, &error));
    g_assert_error(error, GW_CLUSTER_POOL_ERROR, GW_CLUSTER_POOL_ERROR_INVALID);
    g_clear_error(&error);

    /* a value that is not ours */
    {
        g_autoptr(GAsyncResult) result = NULL;
        g_autoptr(GBytes) junk = g_bytes_new_static("{\"gateway\":7}", 13);
        gw_etcd_put_async(g->etcd, GW_CLUSTER_POOL_PREFIX "bad/x", junk, 0, NULL, test_got_result,
                          &result);
        g_assert_true(gw_etcd_put_finish(g->etcd, test_wait(&result), NULL, &error));
        g_assert_no_error(error);
    }
    holds = test_query(g, "bad", &error);
    g_assert_null(holds);
    g_assert_error(error, GW_CLUSTER_POOL_ERROR, GW_CLUSTER_POOL_ERROR_BAD_ENTRY);
    g_assert_cmpstr(error->message, ==,
                    "pool key \"/usbgw/pools/bad/x\": member \"gateway\" missing or not a string");
    g_clear_error(&error);
    none = test_acquire(g, "bad", xs, "v", &error);
    g_assert_null(none);
    g_assert_error(error, GW_CLUSTER_POOL_ERROR, GW_CLUSTER_POOL_ERROR_ALL_HELD);
    g_assert_cmpstr(error->message, ==, "pool bad: all 1 keys are held (by x: unreadable value)");
    g_clear_error(&error);

    /* etcd unreachable: the same gateway's pool on a closed port */
    {
        g_autoptr(GwEtcd) nowhere = test_client(closed_list);
        g_autoptr(GwClusterPool) pool = gw_cluster_pool_new(nowhere, "g", g->lease, &error);
        g_autoptr(GAsyncResult) result = NULL;
        g_autoptr(GwClusterPoolHold) hold = NULL;

        g_assert_no_error(error);
        gw_cluster_pool_acquire_async(pool, "p", xs, "v", NULL, test_got_result, &result);
        hold = gw_cluster_pool_acquire_finish(pool, test_wait(&result), &error);
        g_assert_null(hold);
        g_assert_error(error, GW_ETCD_ERROR, GW_ETCD_ERROR_UNREACHABLE);
        g_assert_true(g_str_has_prefix(error->message, "pool p: etcd range: no endpoint answered"));
        g_assert_nonnull(strstr(error->message, closed));
    }
    test_revoke(g);
}

/* ---- the soak ---- */

typedef struct {
    gint64 revision;
    gboolean put; /* else a delete */
    guint device;
    guint gateway; /* of a put */
    guint vm;      /* of a put */
} TestRecord;

typedef struct _TestSoak TestSoak;

typedef struct {
    TestSoak *soak;
    TestGateway *gateway;
    guint index;
    GArray *idle; /* guint: devices held and not being released */
    guint in_flight;
} TestSoakGateway;

struct _TestSoak {
    TestSoakGateway gateways[TEST_SOAK_GATEWAYS];
    gchar *devices[TEST_SOAK_KEYS + 1];
    GArray *records; /* TestRecord */
    guint started;
    guint completed;
    guint in_flight;
    guint max_in_flight;
    guint acquires;
    guint won;
    guint refused;
    guint releases;
    guint next_vm;
};

typedef struct {
    TestSoakGateway *sg;
    guint device; /* of a release */
    guint vm;     /* of an acquire */
} TestSoakOp;

static void test_soak_start(TestSoakGateway *sg);

static guint
test_soak_device_index(TestSoak *soak, const gchar *device)
{
    for (guint i = 0; i < TEST_SOAK_KEYS; i++) {
        if (strcmp(soak->devices[i], device) == 0)
            return i;
    }
    g_assert_not_reached();
}

static void
test_soak_op_done(TestSoakOp *op)
{
    TestSoakGateway *sg = op->sg;

    sg->in_flight--;
    sg->soak->in_flight--;
    sg->soak->completed++;
    g_free(op);
    while (sg->in_flight < TEST_SOAK_IN_FLIGHT && sg->soak->started < TEST_SOAK_OPS)
        test_soak_start(sg);
}

static void
test_soak_acquired(GObject *source, GAsyncResult *result, gpointer user_data)
{
    TestSoakOp *op = user_data;
    TestSoakGateway *sg = op->sg;
    g_autoptr(GError) error = NULL;
    g_autoptr(GwClusterPoolHold) hold =
        gw_cluster_pool_acquire_finish(sg->gateway->pool, result, &error);

    if (hold == NULL) {
        g_assert_error(error, GW_CLUSTER_POOL_ERROR, GW_CLUSTER_POOL_ERROR_ALL_HELD);
        sg->soak->refused++;
    } else {
        TestRecord record = {hold->revision, TRUE, test_soak_device_index(sg->soak, hold->device),
                             sg->index, op->vm};
        g_autofree gchar *vm = g_strdup_printf("vm%u", op->vm);

        g_assert_cmpstr(hold->vm, ==, vm);
        g_assert_cmpint(hold->lease, ==, sg->gateway->lease);
        g_array_append_val(sg->soak->records, record);
        g_array_append_val(sg->idle, record.device);
        sg->soak->won++;
    }
    test_soak_op_done(op);
}

static void
test_soak_released(GObject *source, GAsyncResult *result, gpointer user_data)
{
    TestSoakOp *op = user_data;
    TestSoakGateway *sg = op->sg;
    g_autoptr(GError) error = NULL;
    gint64 revision = 0;

    g_assert_true(gw_cluster_pool_release_finish(sg->gateway->pool, result, &revision, &error));
    g_assert_no_error(error);
    {
        TestRecord record = {revision, FALSE, op->device, sg->index, 0};
        g_array_append_val(sg->soak->records, record);
    }
    test_soak_op_done(op);
}

/* One more operation on @sg: a release of one of its idle keys, or an
 * acquire for a new VM with the candidates in a random order. */
static void
test_soak_start(TestSoakGateway *sg)
{
    TestSoak *soak = sg->soak;
    TestSoakOp *op = g_new0(TestSoakOp, 1);

    op->sg = sg;
    sg->in_flight++;
    soak->in_flight++;
    soak->max_in_flight = MAX(soak->max_in_flight, soak->in_flight);
    soak->started++;
    if (sg->idle->len > 0 && (guint)g_test_rand_int_range(0, 100) < TEST_SOAK_RELEASE_PERCENT) {
        guint at = (guint)g_test_rand_int_range(0, (gint)sg->idle->len);
        op->device = g_array_index(sg->idle, guint, at);
        g_array_remove_index_fast(sg->idle, at);
        soak->releases++;
        gw_cluster_pool_release_async(sg->gateway->pool, "soak", soak->devices[op->device], NULL,
                                      test_soak_released, op);
    } else {
        const gchar *order[TEST_SOAK_KEYS + 1];
        g_autofree gchar *vm = NULL;

        for (guint i = 0; i <= TEST_SOAK_KEYS; i++)
            order[i] = soak->devices[i];
        for (guint i = TEST_SOAK_KEYS - 1; i > 0; i--) {
            guint j = (guint)g_test_rand_int_range(0, (gint)i + 1);
            const gchar *t = order[i];
            order[i] = order[j];
            order[j] = t;
        }
        op->vm = soak->next_vm++;
        vm = g_strdup_printf("vm%u", op->vm);
        soak->acquires++;
        gw_cluster_pool_acquire_async(sg->gateway->pool, "soak", order, vm, NULL,
                                      test_soak_acquired, op);
    }
}

typedef struct {
    GPtrArray *events; /* GwEtcdEvent copies */
    gboolean ended;    /* the end marker was seen */
    GError *error;
} TestHistory;

static void
test_history_cb(GwEtcdWatch *watch, GPtrArray *events, const GError *error, gpointer user_data)
{
    TestHistory *history = user_data;

    if (error != NULL) {
        history->error = g_error_copy(error);
        return;
    }
    for (guint i = 0; i < events->len && !history->ended; i++) {
        GwEtcdEvent *event = g_ptr_array_index(events, i);
        GwEtcdEvent *copy;

        if (strcmp(event->kv->key, TEST_SOAK_END) == 0) {
            history->ended = TRUE;
            break;
        }
        copy = g_new0(GwEtcdEvent, 1);
        copy->type = event->type;
        copy->kv = g_new0(GwEtcdKv, 1);
        copy->kv->key = g_strdup(event->kv->key);
        copy->kv->key_len = event->kv->key_len;
        copy->kv->value = g_bytes_ref(event->kv->value);
        copy->kv->mod_revision = event->kv->mod_revision;
        copy->kv->lease = event->kv->lease;
        g_ptr_array_add(history->events, copy);
    }
}

static gint
test_record_cmp(gconstpointer a, gconstpointer b)
{
    gint64 ra = ((const TestRecord *)a)->revision, rb = ((const TestRecord *)b)->revision;
    return ra < rb ? -1 : ra > rb;
}

/* The pool's value read back: gateway and VM. */
static void
test_parse_value(GBytes *value, gchar **gateway, gchar **vm)
{
    gsize len = 0;
    const gchar *data = g_bytes_get_data(value, &len);
    g_autofree gchar *text = g_strndup(data, len);
    g_autoptr(GError) error = NULL;
    g_autoptr(JsonNode) root = json_from_string(text, &error);
    JsonObject *object;

    g_assert_no_error(error);
    g_assert_true(JSON_NODE_HOLDS_OBJECT(root));
    object = json_node_get_object(root);
    *gateway = g_strdup(json_object_get_string_member(object, "gateway"));
    *vm = g_strdup(json_object_get_string_member(object, "vm"));
}

/* TEST_SOAK_GATEWAYS gateways, each with TEST_SOAK_IN_FLIGHT operations
 * in flight at all times, acquire and release keys of one pool of
 * TEST_SOAK_KEYS at random until TEST_SOAK_OPS operations are done. Then
 * etcd's history of the pool, from revision 1, is replayed: no put on a
 * key that exists (a double lease), no delete of a free key, and every
 * event is one of the test's successful acquires or releases, at the same
 * revision, with the same gateway and VM, and nothing else. The members
 * never compact (etcd's default), so the history is whole. */
static void
test_soak(void)
{
    TestSoak soak = {0};
    g_autoptr(GHashTable) holder = g_hash_table_new_full(g_str_hash, g_str_equal, g_free, NULL);
    TestHistory history = {g_ptr_array_new_with_free_func((GDestroyNotify)gw_etcd_event_free),
                           FALSE, NULL};
    g_autoptr(GwEtcdWatch) watch = NULL;
    guint doubles = 0, free_deletes = 0, held = 0, max_held = 0;
    gint64 started_us, ops_us, check_us;

    if (test_skip_without_etcd())
        return;
    soak.records = g_array_new(FALSE, FALSE, sizeof(TestRecord));
    for (guint i = 0; i < TEST_SOAK_KEYS; i++)
        soak.devices[i] = g_strdup_printf("s%u", i);
    for (guint i = 0; i < TEST_SOAK_GATEWAYS; i++) {
        g_autofree gchar *name = g_strdup_printf("gw%u", i);
        soak.gateways[i].soak = &soak;
        soak.gateways[i].index = i;
        soak.gateways[i].gateway = test_gateway_new(name, i, TEST_GATEWAY_TTL_S, TRUE);
        soak.gateways[i].idle = g_array_new(FALSE, FALSE, sizeof(guint));
    }

    /* one debug line per operation would be most of the run's time */
    g_log_set_debug_enabled(FALSE);
    started_us = g_get_monotonic_time();
    for (guint n = 0; n < TEST_SOAK_IN_FLIGHT; n++) {
        for (guint i = 0; i < TEST_SOAK_GATEWAYS; i++)
            test_soak_start(&soak.gateways[i]);
    }
    while (soak.completed < TEST_SOAK_OPS)
        g_main_context_iteration(NULL, TRUE);
    ops_us = g_get_monotonic_time() - started_us;
    g_assert_cmpuint(soak.in_flight, ==, 0);
    g_assert_cmpuint(soak.acquires + soak.releases, ==, TEST_SOAK_OPS);
    g_assert_cmpuint(soak.won + soak.refused, ==, soak.acquires);
    g_assert_cmpuint(soak.records->len, ==, soak.won + soak.releases);

    /* the end marker, then the history up to it */
    {
        TestGateway *g = soak.gateways[0].gateway;
        g_autoptr(GAsyncResult) result = NULL;
        g_autoptr(GError) error = NULL;
        g_autoptr(GBytes) end = g_bytes_new_static("end", 3);
        gw_etcd_put_async(g->etcd, TEST_SOAK_END, end, 0, NULL, test_got_result, &result);
        g_assert_true(gw_etcd_put_finish(g->etcd, test_wait(&result), NULL, &error));
        g_assert_no_error(error);
        watch =
            gw_etcd_watch_new(g->etcd, GW_CLUSTER_POOL_PREFIX "soak", 1, test_history_cb, &history);
    }
    while (!history.ended && history.error == NULL)
        g_main_context_iteration(NULL, TRUE);
    g_assert_no_error(history.error);
    g_clear_pointer(&watch, gw_etcd_watch_free);

    /* replay */
    g_array_sort(soak.records, test_record_cmp);
    g_assert_cmpuint(history.events->len, ==, soak.records->len);
    for (guint i = 0; i < history.events->len; i++) {
        GwEtcdEvent *event = g_ptr_array_index(history.events, i);
        TestRecord *record = &g_array_index(soak.records, TestRecord, i);
        g_autofree gchar *key =
            g_strdup_printf(GW_CLUSTER_POOL_PREFIX "soak/%s", soak.devices[record->device]);
        gboolean exists = g_hash_table_contains(holder, event->kv->key);

        if (event->type == GW_ETCD_EVENT_PUT) {
            g_autofree gchar *gateway = NULL;
            g_autofree gchar *vm = NULL;
            g_autofree gchar *want_vm = g_strdup_printf("vm%u", record->vm);

            doubles += exists;
            g_hash_table_add(holder, g_strdup(event->kv->key));
            held = g_hash_table_size(holder);
            max_held = MAX(max_held, held);
            test_parse_value(event->kv->value, &gateway, &vm);
            g_assert_true(record->put);
            g_assert_cmpstr(gateway, ==, soak.gateways[record->gateway].gateway->name);
            g_assert_cmpstr(vm, ==, want_vm);
            g_assert_cmpint(event->kv->lease, ==, soak.gateways[record->gateway].gateway->lease);
        } else {
            free_deletes += !exists;
            g_hash_table_remove(holder, event->kv->key);
            g_assert_false(record->put);
        }
        g_assert_cmpint(event->kv->mod_revision, ==, record->revision);
        g_assert_cmpstr(event->kv->key, ==, key);
    }
    g_assert_cmpuint(doubles, ==, 0);
    g_assert_cmpuint(free_deletes, ==, 0);
    g_assert_cmpuint(max_held, <=, TEST_SOAK_KEYS);
    check_us = g_get_monotonic_time() - started_us - ops_us;

    /* what etcd holds now is what the gateways think they hold */
    {
        g_autoptr(GError) error = NULL;
        g_autoptr(GPtrArray) holds = test_query(soak.gateways[0].gateway, "soak", &error);
        guint believed = 0;

        g_assert_no_error(error);
        for (guint i = 0; i < TEST_SOAK_GATEWAYS; i++) {
            g_autoptr(GPtrArray) mine = gw_cluster_pool_get_held(soak.gateways[i].gateway->pool);
            g_assert_cmpuint(mine->len, ==, soak.gateways[i].idle->len);
            believed += mine->len;
        }
        g_assert_cmpuint(holds->len, ==, held);
        g_assert_cmpuint(believed, ==, held);
    }

    g_test_message("soak: %u operations (%u acquires: %u won, %u refused as all held; %u "
                   "releases) by %u gateways, %u in flight at most, a pool of %u keys of which "
                   "%u held at once at most; %u history events replayed, 0 double leases; "
                   "%.1f s of operations (%.0f per second), %.1f s to check",
                   TEST_SOAK_OPS, soak.acquires, soak.won, soak.refused, soak.releases,
                   TEST_SOAK_GATEWAYS, soak.max_in_flight, TEST_SOAK_KEYS, max_held,
                   history.events->len, ops_us / 1e6, TEST_SOAK_OPS / (ops_us / 1e6),
                   check_us / 1e6);

    for (guint i = 0; i < TEST_SOAK_GATEWAYS; i++) {
        g_assert_null(soak.gateways[i].gateway->lost);
        test_revoke(soak.gateways[i].gateway);
        test_gateway_free(soak.gateways[i].gateway);
        g_array_unref(soak.gateways[i].idle);
    }
    for (guint i = 0; i < TEST_SOAK_KEYS; i++)
        g_free(soak.devices[i]);
    g_array_unref(soak.records);
    g_ptr_array_unref(history.events);
}

int
main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);

    g_test_add_func("/cluster-pool/device-names", test_device_names);
    g_test_add_func("/cluster-pool/two-keys", test_two_keys);
    g_test_add_func("/cluster-pool/lease-lost", test_lease_lost);
    g_test_add_func("/cluster-pool/errors", test_errors);
    g_test_add_func("/cluster-pool/soak", test_soak);
    return test_etcd_run(3, &cluster);
}
