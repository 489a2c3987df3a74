/* GwEtcd (gateway/cluster/gw-etcd.h) against a real etcd: one member on
 * 127.0.0.1 for most cases, three for the member killed in the middle of
 * a run of puts. Each member's data directory is in a temporary directory;
 * the members are killed at the end, at exit, and, through
 * PR_SET_PDEATHSIG, when this process dies in any other way (an assertion,
 * meson's timeout).
 *
 * Skipped only when no etcd binary is installed (Debian: etcd-server; the
 * compaction case also wants etcdctl from etcd-client). */
#include <signal.h>
#include <string.h>

#include "test-etcd-members.h"

/* The lease TTL of the lease cases (etcd's minimum with the timings below
 * is 1 s). */
#define TEST_LEASE_TTL_S 2
/* Races of two clients creating the same key. */
#define TEST_RACES 200
/* Puts of the failover case, and after which one a member is killed. */
#define TEST_FAILOVER_PUTS 300
#define TEST_FAILOVER_KILL 60

static TestCluster *single; /* the one-member cluster most cases share */

/* The shared one-member cluster (started on first use), or NULL with the
 * case skipped when etcd is not installed. */
static TestCluster *
test_single(void)
{
    if (etcd_path == NULL) {
        g_test_skip("no etcd binary (Debian: etcd-server)");
        return NULL;
    }
    if (single == NULL)
        single = test_cluster_start(1);
    return single;
}

static GwEtcd *
test_single_client(void)
{
    TestCluster *cluster = test_single();
    const gchar *endpoints[] = {cluster != NULL ? test_url(cluster, 0) : NULL, NULL};
    return cluster != NULL ? test_client(endpoints) : NULL;
}

/* ---- synchronous helpers over the async API ---- */

static gint64
test_put(GwEtcd *etcd, const gchar *key, GBytes *value, gint64 lease)
{
    g_autoptr(GAsyncResult) result = NULL;
    g_autoptr(GError) error = NULL;
    gint64 revision = 0;

    gw_etcd_put_async(etcd, key, value, lease, NULL, test_got_result, &result);
    g_assert_true(gw_etcd_put_finish(etcd, test_wait(&result), &revision, &error));
    g_assert_no_error(error);
    g_assert_cmpint(revision, >, 0);
    return revision;
}

static gint64
test_put_string(GwEtcd *etcd, const gchar *key, const gchar *value, gint64 lease)
{
    g_autoptr(GBytes) bytes = g_bytes_new(value, strlen(value));
    return test_put(etcd, key, bytes, lease);
}

static void
test_assert_value(GwEtcdKv *kv, const gchar *key, const gchar *value)
{
    g_assert_cmpstr(kv->key, ==, key);
    g_assert_cmpuint(kv->key_len, ==, strlen(key));
    g_assert_cmpmem(g_bytes_get_data(kv->value, NULL), g_bytes_get_size(kv->value), value,
                    strlen(value));
}

/* ---- cases ---- */

/* A binary value (every byte value, NUL included) comes back as put, with
 * the revisions the puts returned. */
static void
test_put_range(void)
{
    g_autoptr(GwEtcd) etcd = test_single_client();
    guint8 raw[256];
    g_autoptr(GBytes) value = NULL;
    g_autoptr(GPtrArray) kvs = NULL;
    gint64 first, second, read_at = 0;

    if (etcd == NULL)
        return;
    for (guint i = 0; i < sizeof(raw); i++)
        raw[i] = (guint8)(255 - i);
    value = g_bytes_new(raw, sizeof(raw));
    first = test_put(etcd, "/t/rt/k", value, 0);
    kvs = test_range(etcd, "/t/rt/k", FALSE, 0, &read_at, NULL);
    g_assert_cmpuint(kvs->len, ==, 1);
    GwEtcdKv *kv = g_ptr_array_index(kvs, 0);
    g_assert_cmpstr(kv->key, ==, "/t/rt/k");
    g_assert_true(g_bytes_equal(kv->value, value));
    g_assert_cmpint(kv->create_revision, ==, first);
    g_assert_cmpint(kv->mod_revision, ==, first);
    g_assert_cmpint(kv->version, ==, 1);
    g_assert_cmpint(kv->lease, ==, 0);
    g_assert_cmpint(read_at, ==, first);

    second = test_put_string(etcd, "/t/rt/k", "", 0);
    g_assert_cmpint(second, >, first);
    g_clear_pointer(&kvs, g_ptr_array_unref);
    kvs = test_range(etcd, "/t/rt/k", FALSE, 0, NULL, NULL);
    kv = g_ptr_array_index(kvs, 0);
    g_assert_cmpuint(g_bytes_get_size(kv->value), ==, 0);
    g_assert_cmpint(kv->create_revision, ==, first);
    g_assert_cmpint(kv->mod_revision, ==, second);
    g_assert_cmpint(kv->version, ==, 2);

    g_clear_pointer(&kvs, g_ptr_array_unref);
    kvs = test_range(etcd, "/t/rt/missing", FALSE, 0, NULL, NULL);
    g_assert_cmpuint(kvs->len, ==, 0);
}

/* A prefix range returns its keys in order and no neighbour's; a limit
 * cuts it and says so; a prefix delete removes them all. */
static void
test_prefix(void)
{
    g_autoptr(GwEtcd) etcd = test_single_client();
    g_autoptr(GPtrArray) kvs = NULL;
    g_autoptr(GAsyncResult) result = NULL;
    g_autoptr(GError) error = NULL;
    gboolean more = TRUE;
    gint64 deleted = 0;

    if (etcd == NULL)
        return;
    test_put_string(etcd, "/t/pfx/c", "3", 0);
    test_put_string(etcd, "/t/pfx/a", "1", 0);
    test_put_string(etcd, "/t/pfx/b", "2", 0);
    test_put_string(etcd, "/t/pfy", "neighbour", 0);
    test_put_string(etcd, "/t/pfx", "the prefix itself, without the slash", 0);

    kvs = test_range(etcd, "/t/pfx/", TRUE, 0, NULL, &more);
    g_assert_cmpuint(kvs->len, ==, 3);
    g_assert_false(more);
    test_assert_value(g_ptr_array_index(kvs, 0), "/t/pfx/a", "1");
    test_assert_value(g_ptr_array_index(kvs, 1), "/t/pfx/b", "2");
    test_assert_value(g_ptr_array_index(kvs, 2), "/t/pfx/c", "3");

    g_clear_pointer(&kvs, g_ptr_array_unref);
    kvs = test_range(etcd, "/t/pfx/", TRUE, 2, NULL, &more);
    g_assert_cmpuint(kvs->len, ==, 2);
    g_assert_true(more);
    test_assert_value(g_ptr_array_index(kvs, 1), "/t/pfx/b", "2");

    gw_etcd_delete_async(etcd, "/t/pfx/", TRUE, NULL, test_got_result, &result);
    g_assert_true(gw_etcd_delete_finish(etcd, test_wait(&result), &deleted, NULL, &error));
    g_assert_no_error(error);
    g_assert_cmpint(deleted, ==, 3);
    g_clear_pointer(&kvs, g_ptr_array_unref);
    kvs = test_range(etcd, "/t/pf", TRUE, 0, NULL, NULL);
    g_assert_cmpuint(kvs->len, ==, 2);
    test_assert_value(g_ptr_array_index(kvs, 0), "/t/pfx", "the prefix itself, without the slash");
    test_assert_value(g_ptr_array_index(kvs, 1), "/t/pfy", "neighbour");
}

/* A key put with a lease is gone once the TTL ran out; a keepalive of the
 * expired lease says so. */
static void
test_lease_expires(void)
{
    g_autoptr(GwEtcd) etcd = test_single_client();
    g_autoptr(GAsyncResult) result = NULL;
    g_autoptr(GError) error = NULL;
    gint64 lease, ttl = -1;
    gint64 granted_at;
    gint64 gone_after_ms = -1;

    if (etcd == NULL)
        return;
    lease = test_grant(etcd, TEST_LEASE_TTL_S);
    granted_at = g_get_monotonic_time();
    test_put_string(etcd, "/t/lease/k", "v", lease);
    {
        g_autoptr(GPtrArray) kvs = test_range(etcd, "/t/lease/k", FALSE, 0, NULL, NULL);
        g_assert_cmpuint(kvs->len, ==, 1);
        g_assert_cmpint(((GwEtcdKv *)g_ptr_array_index(kvs, 0))->lease, ==, lease);
    }
    /* the one-shot keepalive gives the TTL back */
    gw_etcd_lease_keepalive_async(etcd, lease, NULL, test_got_result, &result);
    g_assert_true(gw_etcd_lease_keepalive_finish(etcd, test_wait(&result), &ttl, &error));
    g_assert_no_error(error);
    g_assert_cmpint(ttl, ==, TEST_LEASE_TTL_S);
    granted_at = g_get_monotonic_time();

    while (gone_after_ms < 0) {
        g_autoptr(GPtrArray) kvs = test_range(etcd, "/t/lease/k", FALSE, 0, NULL, NULL);
        gint64 ms = (g_get_monotonic_time() - granted_at) / 1000;
        if (kvs->len == 0)
            gone_after_ms = ms;
        /* etcd checks its leases every 500 ms, on a loaded machine much
         * later: this bound only ends a wait for a lease that never goes */
        g_assert_cmpint(ms, <, (TEST_LEASE_TTL_S + 30) * 1000);
        test_sleep_running(100);
    }
    /* not before the TTL (etcd expires leases on its own clock: a little
     * slack) */
    g_assert_cmpint(gone_after_ms, >=, TEST_LEASE_TTL_S * 1000 - 200);

    g_clear_object(&result);
    gw_etcd_lease_keepalive_async(etcd, lease, NULL, test_got_result, &result);
    g_assert_false(gw_etcd_lease_keepalive_finish(etcd, test_wait(&result), &ttl, &error));
    g_assert_error(error, GW_ETCD_ERROR, GW_ETCD_ERROR_LEASE_NOT_FOUND);
    g_assert_nonnull(strstr(error->message, "etcd lease keepalive at http://127.0.0.1:"));
}

static void
test_lease_lost_cb(GwEtcdLeaseKeeper *keeper, const GError *error, gpointer user_data)
{
    *(GError **)user_data = g_error_copy(error);
}

/* A keeper keeps the lease (and its key) alive past several TTLs; a
 * revoke deletes the key at once, and the keeper reports the loss. */
static void
test_lease_keeper(void)
{
    g_autoptr(GwEtcd) etcd = test_single_client();
    g_autoptr(GAsyncResult) result = NULL;
    g_autoptr(GError) error = NULL;
    g_autoptr(GError) lost = NULL;
    g_autoptr(GwEtcdLeaseKeeper) keeper = NULL;
    gint64 lease;

    if (etcd == NULL)
        return;
    lease = test_grant(etcd, TEST_LEASE_TTL_S);
    test_put_string(etcd, "/t/keeper/k", "alive", lease);
    keeper = gw_etcd_lease_keeper_new(etcd, lease, TEST_LEASE_TTL_S, test_lease_lost_cb, &lost);
    test_sleep_running(TEST_LEASE_TTL_S * 3 * 1000);
    g_assert_null(lost);
    g_assert_cmpuint(gw_etcd_lease_keeper_get_renewals(keeper), >=, 7);
    {
        g_autoptr(GPtrArray) kvs = test_range(etcd, "/t/keeper/k", FALSE, 0, NULL, NULL);
        g_assert_cmpuint(kvs->len, ==, 1);
        test_assert_value(g_ptr_array_index(kvs, 0), "/t/keeper/k", "alive");
    }

    gw_etcd_lease_revoke_async(etcd, lease, NULL, test_got_result, &result);
    g_assert_true(gw_etcd_lease_revoke_finish(etcd, test_wait(&result), &error));
    g_assert_no_error(error);
    {
        g_autoptr(GPtrArray) kvs = test_range(etcd, "/t/keeper/k", FALSE, 0, NULL, NULL);
        g_assert_cmpuint(kvs->len, ==, 0);
    }
    while (lost == NULL)
        g_main_context_iteration(NULL, TRUE);
    g_assert_error(lost, GW_ETCD_ERROR, GW_ETCD_ERROR_LEASE_NOT_FOUND);
}

/* The keeper takes its lease as lost at 9/10 of the TTL after the send
 * of its last renewal, on a timer of its own: when the member stops
 * answering (SIGSTOP), the loss comes no later than 0.9 TTL after the
 * stop, before etcd could expire the lease (a TTL after it received that
 * renewal); and a grant whose request went long ago counts from then. */
static void
test_lease_keeper_deadline(void)
{
    const gint64 ttl = 3;
    g_autoptr(GwEtcd) etcd = NULL;
    g_autoptr(GError) lost = NULL;
    g_autoptr(GwEtcdLeaseKeeper) keeper = NULL;
    TestCluster *cluster;
    TestMember *member;
    const gchar *endpoints[2] = {NULL, NULL};
    gint64 stopped_us, lost_ms, lease;

    if (etcd_path == NULL) {
        g_test_skip("no etcd binary");
        return;
    }
    cluster = test_cluster_start(1);
    member = g_ptr_array_index(cluster->members, 0);
    endpoints[0] = test_url(cluster, 0);
    etcd = test_client(endpoints);

    /* a grant sent 2.5 s ago: 0.2 s of its 2.7 s are left */
    lease = test_grant(etcd, ttl);
    keeper = gw_etcd_lease_keeper_new(etcd, lease, ttl, test_lease_lost_cb, &lost);
    stopped_us = g_get_monotonic_time();
    gw_etcd_lease_keeper_set_granted_at(keeper, stopped_us - 2500 * 1000);
    while (lost == NULL)
        g_main_context_iteration(NULL, TRUE);
    lost_ms = (g_get_monotonic_time() - stopped_us) / 1000;
    g_test_message("an old grant: lost after %" G_GINT64_FORMAT " ms", lost_ms);
    g_assert_cmpint(lost_ms, <=, 600);
    g_assert_error(lost, GW_ETCD_ERROR, GW_ETCD_ERROR_LEASE_NOT_FOUND);
    g_clear_pointer(&keeper, gw_etcd_lease_keeper_free);
    g_clear_error(&lost);

    /* renewals, then the member stops answering */
    lease = test_grant(etcd, ttl);
    keeper = gw_etcd_lease_keeper_new(etcd, lease, ttl, test_lease_lost_cb, &lost);
    test_sleep_running(2 * ttl * 1000);
    g_assert_null(lost);
    g_assert_cmpuint(gw_etcd_lease_keeper_get_renewals(keeper), >=, 4);
    g_subprocess_send_signal(member->process, SIGSTOP);
    stopped_us = g_get_monotonic_time();
    while (lost == NULL)
        g_main_context_iteration(NULL, TRUE);
    lost_ms = (g_get_monotonic_time() - stopped_us) / 1000;
    g_subprocess_send_signal(member->process, SIGCONT);
    g_test_message("member stopped: lost after %" G_GINT64_FORMAT " ms: %s", lost_ms,
                   lost->message);
    g_assert_error(lost, GW_ETCD_ERROR, GW_ETCD_ERROR_LEASE_NOT_FOUND);
    /* the last renewal was sent before the stop: 0.9 TTL after it at the
     * latest, with a little slack for the main loop */
    g_assert_cmpint(lost_ms, <=, ttl * 900 + 300);
    g_clear_pointer(&keeper, gw_etcd_lease_keeper_free);
    g_clear_object(&etcd);
    test_cluster_stop(cluster);
}

typedef struct {
    GwEtcd *etcd;
    const gchar *who;
    gboolean done;
    gboolean won;
} TestRacer;

static void
test_race_done(GObject *source, GAsyncResult *result, gpointer user_data)
{
    TestRacer *racer = user_data;
    g_autoptr(GError) error = NULL;

    g_assert_true(gw_etcd_txn_finish(GW_ETCD(source), result, &racer->won, NULL, &error));
    g_assert_no_error(error);
    racer->done = TRUE;
}

static gboolean
test_txn_run(GwEtcd *etcd, GwEtcdTxn *txn)
{
    g_autoptr(GAsyncResult) result = NULL;
    g_autoptr(GError) error = NULL;
    gboolean succeeded = FALSE;

    gw_etcd_txn_async(etcd, txn, NULL, test_got_result, &result);
    g_assert_true(gw_etcd_txn_finish(etcd, test_wait(&result), &succeeded, NULL, &error));
    g_assert_no_error(error);
    return succeeded;
}

/* Two clients create the same key at once, TEST_RACES times: exactly one
 * wins each race, and the key holds the winner's value; a second create
 * fails. Then compares on mod_revision and value, and failure ops. */
static void
test_txn(void)
{
    TestCluster *cluster = test_single();
    const gchar *endpoints[] = {cluster != NULL ? test_url(cluster, 0) : NULL, NULL};
    g_autoptr(GwEtcd) a = NULL;
    g_autoptr(GwEtcd) b = NULL;
    guint wins_a = 0, wins_b = 0;

    if (cluster == NULL)
        return;
    a = test_client(endpoints);
    b = test_client(endpoints);
    for (guint i = 0; i < TEST_RACES; i++) {
        g_autofree gchar *key = g_strdup_printf("/t/race/%u", i);
        g_autoptr(GBytes) value_a = g_bytes_new_static("A", 1);
        g_autoptr(GBytes) value_b = g_bytes_new_static("B", 1);
        g_autoptr(GwEtcdTxn) txn_a = gw_etcd_txn_new();
        g_autoptr(GwEtcdTxn) txn_b = gw_etcd_txn_new();
        TestRacer racer_a = {a, "A", FALSE, FALSE};
        TestRacer racer_b = {b, "B", FALSE, FALSE};

        gw_etcd_txn_if_absent(txn_a, key);
        gw_etcd_txn_put(txn_a, TRUE, key, value_a, 0);
        gw_etcd_txn_if_absent(txn_b, key);
        gw_etcd_txn_put(txn_b, TRUE, key, value_b, 0);
        /* every other race B sends first */
        if (i % 2 == 0) {
            gw_etcd_txn_async(a, txn_a, NULL, test_race_done, &racer_a);
            gw_etcd_txn_async(b, txn_b, NULL, test_race_done, &racer_b);
        } else {
            gw_etcd_txn_async(b, txn_b, NULL, test_race_done, &racer_b);
            gw_etcd_txn_async(a, txn_a, NULL, test_race_done, &racer_a);
        }
        while (!racer_a.done || !racer_b.done)
            g_main_context_iteration(NULL, TRUE);
        g_assert_true(racer_a.won != racer_b.won);
        wins_a += racer_a.won;
        wins_b += racer_b.won;
        g_autoptr(GPtrArray) kvs = test_range(a, key, FALSE, 0, NULL, NULL);
        g_assert_cmpuint(kvs->len, ==, 1);
        test_assert_value(g_ptr_array_index(kvs, 0), key, racer_a.won ? "A" : "B");
        /* the loser's create, again: still fails */
        g_assert_false(test_txn_run(racer_a.won ? b : a, racer_a.won ? txn_b : txn_a));
    }
    g_assert_cmpuint(wins_a + wins_b, ==, TEST_RACES);
    g_test_message("races: A won %u, B won %u", wins_a, wins_b);

    /* compare-and-swap on mod_revision; a stale one runs the failure ops */
    gint64 rev = test_put_string(a, "/t/cas", "one", 0);
    g_autoptr(GBytes) two = g_bytes_new_static("two", 3);
    g_autoptr(GBytes) one = g_bytes_new_static("one", 3);
    g_autoptr(GwEtcdTxn) cas = gw_etcd_txn_new();
    gw_etcd_txn_if_mod_revision(cas, "/t/cas", rev);
    gw_etcd_txn_put(cas, TRUE, "/t/cas", two, 0);
    gw_etcd_txn_put(cas, FALSE, "/t/cas-stale", one, 0);
    g_assert_true(test_txn_run(a, cas));
    g_assert_false(test_txn_run(a, cas));
    g_autoptr(GPtrArray) kvs = test_range(a, "/t/cas", TRUE, 0, NULL, NULL);
    g_assert_cmpuint(kvs->len, ==, 2);
    test_assert_value(g_ptr_array_index(kvs, 0), "/t/cas", "two");
    test_assert_value(g_ptr_array_index(kvs, 1), "/t/cas-stale", "one");

    /* compare on the value; delete ops */
    g_autoptr(GwEtcdTxn) by_value = gw_etcd_txn_new();
    gw_etcd_txn_if_value(by_value, "/t/cas", one);
    gw_etcd_txn_delete(by_value, FALSE, "/t/cas-stale");
    g_assert_false(test_txn_run(a, by_value));
    g_autoptr(GwEtcdTxn) by_value2 = gw_etcd_txn_new();
    gw_etcd_txn_if_value(by_value2, "/t/cas", two);
    gw_etcd_txn_delete(by_value2, TRUE, "/t/cas");
    g_assert_true(test_txn_run(a, by_value2));
    g_clear_pointer(&kvs, g_ptr_array_unref);
    kvs = test_range(a, "/t/cas", TRUE, 0, NULL, NULL);
    g_assert_cmpuint(kvs->len, ==, 0);
}

typedef struct {
    GPtrArray *events; /* GwEtcdEvent copies as strings "PUT key value rev" */
    GError *error;
} TestWatched;

static void
test_watch_cb(GwEtcdWatch *watch, GPtrArray *events, const GError *error, gpointer user_data)
{
    TestWatched *watched = user_data;

    if (error != NULL) {
        g_assert_null(events);
        g_assert_null(watched->error);
        watched->error = g_error_copy(error);
        return;
    }
    g_assert_cmpuint(events->len, >, 0);
    for (guint i = 0; i < events->len; i++) {
        GwEtcdEvent *event = g_ptr_array_index(events, i);
        gsize len = 0;
        const gchar *value = g_bytes_get_data(event->kv->value, &len);
        g_ptr_array_add(watched->events,
                        g_strdup_printf("%s %s %.*s %" G_GINT64_FORMAT,
                                        event->type == GW_ETCD_EVENT_PUT ? "PUT" : "DELETE",
                                        event->kv->key, (int)len, value != NULL ? value : "",
                                        event->kv->mod_revision));
    }
}

/* A watch from the revision after a range sees the puts and deletes that
 * follow, in order, with the revisions the writes returned, and none of
 * a neighbouring prefix. A watch from a compacted revision ends with
 * GW_ETCD_ERROR_COMPACTED. */
static void
test_watch(void)
{
    g_autoptr(GwEtcd) etcd = test_single_client();
    TestWatched watched = {g_ptr_array_new_with_free_func(g_free), NULL};
    g_autoptr(GwEtcdWatch) watch = NULL;
    g_autoptr(GPtrArray) kvs = NULL;
    g_autoptr(GAsyncResult) result = NULL;
    g_autoptr(GError) error = NULL;
    gint64 start = 0, r1, r2, r3, r4;
    g_autofree gchar *want1 = NULL, *want2 = NULL, *want3 = NULL, *want4 = NULL;

    if (etcd == NULL)
        return;
    kvs = test_range(etcd, "/t/watch/", TRUE, 0, &start, NULL);
    watch = gw_etcd_watch_new(etcd, "/t/watch/", start + 1, test_watch_cb, &watched);
    r1 = test_put_string(etcd, "/t/watch/a", "1", 0);
    test_put_string(etcd, "/t/watchers", "not mine", 0);
    r2 = test_put_string(etcd, "/t/watch/b", "2", 0);
    gw_etcd_delete_async(etcd, "/t/watch/a", FALSE, NULL, test_got_result, &result);
    g_assert_true(gw_etcd_delete_finish(etcd, test_wait(&result), NULL, &r3, &error));
    g_assert_no_error(error);
    r4 = test_put_string(etcd, "/t/watch/b", "22", 0);
    while (watched.events->len < 4 && watched.error == NULL)
        g_main_context_iteration(NULL, TRUE);
    g_assert_no_error(watched.error);
    g_assert_true(gw_etcd_watch_is_created(watch));
    want1 = g_strdup_printf("PUT /t/watch/a 1 %" G_GINT64_FORMAT, r1);
    want2 = g_strdup_printf("PUT /t/watch/b 2 %" G_GINT64_FORMAT, r2);
    want3 = g_strdup_printf("DELETE /t/watch/a  %" G_GINT64_FORMAT, r3);
    want4 = g_strdup_printf("PUT /t/watch/b 22 %" G_GINT64_FORMAT, r4);
    g_assert_cmpuint(watched.events->len, ==, 4);
    g_assert_cmpstr(g_ptr_array_index(watched.events, 0), ==, want1);
    g_assert_cmpstr(g_ptr_array_index(watched.events, 1), ==, want2);
    g_assert_cmpstr(g_ptr_array_index(watched.events, 2), ==, want3);
    g_assert_cmpstr(g_ptr_array_index(watched.events, 3), ==, want4);
    g_clear_pointer(&watch, gw_etcd_watch_free);

    /* compaction past the start revision */
    if (etcdctl_path == NULL) {
        g_test_message("no etcdctl: compaction not checked");
    } else {
        g_autofree gchar *rev = g_strdup_printf("%" G_GINT64_FORMAT, r4);
        g_autofree gchar *out = NULL;
        gint status = -1;
        const gchar *argv[] = {etcdctl_path, "--endpoints", test_url(test_single(), 0),
                               "compact",    rev,           NULL};
        gchar **envp = g_environ_setenv(g_get_environ(), "ETCDCTL_API", "3", TRUE);
        g_assert_true(g_spawn_sync(NULL, (gchar **)argv, envp, G_SPAWN_STDERR_TO_DEV_NULL, NULL,
                                   NULL, &out, NULL, &status, &error));
        g_strfreev(envp);
        g_assert_no_error(error);
        g_assert_cmpint(status, ==, 0);
        g_ptr_array_set_size(watched.events, 0);
        watch = gw_etcd_watch_new(etcd, "/t/watch/", start + 1, test_watch_cb, &watched);
        while (watched.error == NULL)
            g_main_context_iteration(NULL, TRUE);
        g_assert_error(watched.error, GW_ETCD_ERROR, GW_ETCD_ERROR_COMPACTED);
        g_assert_nonnull(strstr(watched.error->message, "etcd watch of \"/t/watch/\" at http://"));
        g_assert_cmpuint(watched.events->len, ==, 0);
    }
    g_clear_error(&watched.error);
    g_ptr_array_unref(watched.events);
}

/* A member killed (SIGKILL) while a client puts in a loop: no put fails,
 * the client moves on to another endpoint, every key is there afterwards,
 * and a watch that streamed from the killed member resumes on another one
 * without losing or repeating an event. */
static void
test_failover(void)
{
    TestCluster *cluster = NULL;
    g_autoptr(GwEtcd) etcd = NULL;
    g_autoptr(GwEtcd) watcher = NULL;
    g_autoptr(GwEtcdWatch) watch = NULL;
    TestWatched watched = {g_ptr_array_new_with_free_func(g_free), NULL};
    g_autoptr(GPtrArray) kvs = NULL;
    gint64 start = 0;
    g_autofree gchar *killed = NULL;

    if (etcd_path == NULL) {
        g_test_skip("no etcd binary (Debian: etcd-server)");
        return;
    }
    cluster = test_cluster_start(3);
    {
        const gchar *endpoints[] = {test_url(cluster, 0), test_url(cluster, 1),
                                    test_url(cluster, 2), NULL};
        etcd = test_client(endpoints);
        watcher = test_client(endpoints);
    }
    g_ptr_array_unref(test_range(etcd, "/t/fo/", TRUE, 0, &start, NULL));
    watch = gw_etcd_watch_new(watcher, "/t/fo/", start + 1, test_watch_cb, &watched);
    for (guint i = 0; i < TEST_FAILOVER_PUTS; i++) {
        g_autofree gchar *key = g_strdup_printf("/t/fo/%04u", i);
        g_autofree gchar *value = g_strdup_printf("value %u", i);
        g_autoptr(GBytes) bytes = g_bytes_new(value, strlen(value));
        g_autoptr(GAsyncResult) result = NULL;
        g_autoptr(GError) error = NULL;

        gw_etcd_put_async(etcd, key, bytes, 0, NULL, test_got_result, &result);
        if (i == TEST_FAILOVER_KILL) {
            /* the member both clients use now, with this put on its way */
            killed = g_strdup(gw_etcd_get_endpoint(etcd));
            g_assert_cmpstr(gw_etcd_get_endpoint(watcher), ==, killed);
            for (guint m = 0; m < cluster->members->len; m++) {
                TestMember *member = g_ptr_array_index(cluster->members, m);
                if (g_strcmp0(member->client_url, killed) == 0)
                    test_member_kill(member);
            }
            g_test_message("killed the member at %s during put %u", killed, i);
        }
        g_assert_true(gw_etcd_put_finish(etcd, test_wait(&result), NULL, &error));
        g_assert_no_error(error);
    }
    g_assert_nonnull(killed);
    g_assert_cmpstr(gw_etcd_get_endpoint(etcd), !=, killed);
    /* the killed member failed, another answered since */
    g_assert_null(gw_etcd_get_failure(etcd));

    kvs = test_range(etcd, "/t/fo/", TRUE, 0, NULL, NULL);
    g_assert_cmpuint(kvs->len, ==, TEST_FAILOVER_PUTS);
    for (guint i = 0; i < TEST_FAILOVER_PUTS; i++) {
        g_autofree gchar *key = g_strdup_printf("/t/fo/%04u", i);
        g_autofree gchar *value = g_strdup_printf("value %u", i);
        test_assert_value(g_ptr_array_index(kvs, i), key, value);
    }
    while (watched.events->len < TEST_FAILOVER_PUTS && watched.error == NULL)
        g_main_context_iteration(NULL, TRUE);
    g_assert_no_error(watched.error);
    g_assert_cmpuint(watched.events->len, ==, TEST_FAILOVER_PUTS);
    for (guint i = 0; i < TEST_FAILOVER_PUTS; i++) {
        GwEtcdKv *kv = g_ptr_array_index(kvs, i);
        g_autofree gchar *want =
            g_strdup_printf("PUT %s value %u %" G_GINT64_FORMAT, kv->key, i, kv->mod_revision);
        g_assert_cmpstr(g_ptr_array_index(watched.events, i), ==, want);
    }
    g_assert_null(gw_etcd_get_failure(watcher));
    g_clear_pointer(&watch, gw_etcd_watch_free);
    g_ptr_array_unref(watched.events);
    test_cluster_stop(cluster);
}

/* A bad endpoint URL is refused at _new(); an endpoint where nothing
 * listens fails with its URL named; a revoke of an unknown lease carries
 * etcd's message. */
static void
test_errors(void)
{
    const gchar *bad[] = {"ftp://127.0.0.1:1", NULL};
    const gchar *none[] = {NULL};
    g_autoptr(GError) error = NULL;
    g_autoptr(GwEtcd) nothing = NULL;
    g_autoptr(GAsyncResult) result = NULL;
    g_autofree gchar *closed = g_strdup_printf("http://127.0.0.1:%u", test_free_port());
    const gchar *closed_list[] = {closed, NULL};

    g_assert_null(gw_etcd_new(bad, &error));
    g_assert_error(error, GW_ETCD_ERROR, GW_ETCD_ERROR_INVALID);
    g_assert_nonnull(strstr(error->message, "ftp://127.0.0.1:1"));
    g_clear_error(&error);
    g_assert_null(gw_etcd_new(none, &error));
    g_assert_error(error, GW_ETCD_ERROR, GW_ETCD_ERROR_INVALID);
    g_clear_error(&error);

    nothing = test_client(closed_list);
    g_assert_null(gw_etcd_get_failure(nothing));
    gw_etcd_put_async(nothing, "/k", NULL, 0, NULL, test_got_result, &result);
    g_assert_false(gw_etcd_put_finish(nothing, test_wait(&result), NULL, &error));
    g_assert_error(error, GW_ETCD_ERROR, GW_ETCD_ERROR_UNREACHABLE);
    g_assert_nonnull(strstr(error->message, "etcd put: no endpoint answered"));
    g_assert_nonnull(strstr(error->message, closed));
    /* no endpoint answered since: the client says which failed and why */
    g_assert_true(g_str_has_prefix(gw_etcd_get_failure(nothing), closed));
    g_clear_error(&error);
    g_clear_object(&result);

    g_autoptr(GwEtcd) etcd = test_single_client();
    if (etcd == NULL)
        return;
    gw_etcd_lease_revoke_async(etcd, 12345, NULL, test_got_result, &result);
    g_assert_false(gw_etcd_lease_revoke_finish(etcd, test_wait(&result), &error));
    /* etcd's own refusal is an answer, not an endpoint's failure */
    g_assert_null(gw_etcd_get_failure(etcd));
    g_assert_error(error, GW_ETCD_ERROR, GW_ETCD_ERROR_LEASE_NOT_FOUND);
    g_assert_nonnull(strstr(error->message, "requested lease not found"));
    g_assert_nonnull(strstr(error->message, test_url(test_single(), 0)));
}

/* An endpoint that answers, but not like etcd: each error names the
 * operation, the endpoint and what is wrong. The fake server is a plain
 * socket service in a thread: it reads a request (headers, then the body
 * by its Content-Length) and answers with fake_status and fake_answer. */
static const gchar *volatile fake_answer;
static volatile guint fake_status;
static volatile gint fake_unavailable; /* answer this many requests first with 503 */
static volatile gint fake_requests;    /* requests read */

static gboolean
test_fake_run(GThreadedSocketService *service, GSocketConnection *connection, GObject *source,
              gpointer user_data)
{
    GInputStream *in = g_io_stream_get_input_stream(G_IO_STREAM(connection));
    GOutputStream *out = g_io_stream_get_output_stream(G_IO_STREAM(connection));
    g_autoptr(GDataInputStream) lines = g_data_input_stream_new(in);
    g_autofree gchar *reply = NULL;
    guint64 length = 0;

    g_data_input_stream_set_newline_type(lines, G_DATA_STREAM_NEWLINE_TYPE_ANY);
    g_filter_input_stream_set_close_base_stream(G_FILTER_INPUT_STREAM(lines), FALSE);
    for (;;) {
        g_autofree gchar *line = g_data_input_stream_read_line(lines, NULL, NULL, NULL);
        if (line == NULL)
            return FALSE;
        if (line[0] == '\0')
            break;
        if (g_ascii_strncasecmp(line, "Content-Length:", 15) == 0)
            length = g_ascii_strtoull(line + 15, NULL, 10);
    }
    while (length-- > 0)
        (void)g_data_input_stream_read_byte(lines, NULL, NULL);
    g_atomic_int_inc(&fake_requests);
    if (g_atomic_int_add(&fake_unavailable, -1) > 0)
        reply = g_strdup("HTTP/1.1 503 Unavailable\r\nContent-Length: 0\r\n"
                         "Connection: close\r\n\r\n");
    else
        reply = g_strdup_printf("HTTP/1.1 %u Fake\r\nContent-Type: application/json\r\n"
                                "Content-Length: %zu\r\nConnection: close\r\n\r\n%s",
                                fake_status, strlen(fake_answer), fake_answer);
    g_output_stream_write_all(out, reply, strlen(reply), NULL, NULL, NULL);
    g_io_stream_close(G_IO_STREAM(connection), NULL, NULL);
    return TRUE;
}

/* The fake server on a free port of 127.0.0.1, and its URL in @url. */
static GSocketService *
test_fake_start(gchar **url)
{
    GSocketService *service = g_threaded_socket_service_new(1);
    g_autoptr(GError) error = NULL;
    guint16 port;

    port = g_socket_listener_add_any_inet_port(G_SOCKET_LISTENER(service), NULL, &error);
    g_assert_no_error(error);
    g_signal_connect(service, "run", G_CALLBACK(test_fake_run), NULL);
    g_socket_service_start(service);
    *url = g_strdup_printf("http://127.0.0.1:%u", port);
    return service;
}

static void
test_fake_stop(GSocketService *service)
{
    g_socket_service_stop(service);
    g_socket_listener_close(G_SOCKET_LISTENER(service));
    g_object_unref(service);
}

/* Two keepalives in a row fail (503, as from a member without a leader):
 * the keeper sends again after a tenth of the TTL, not at the next tick,
 * and keeps the lease; at TTL/3 ticks the third would come after 9/10 of
 * the TTL, too late. */
static void
test_lease_keeper_retry(void)
{
    const gint64 ttl = 3;
    g_autoptr(GwEtcd) etcd = NULL;
    g_autoptr(GError) lost = NULL;
    g_autoptr(GwEtcdLeaseKeeper) keeper = NULL;
    g_autofree gchar *url = NULL;
    GSocketService *service = test_fake_start(&url);
    const gchar *endpoints[] = {url, NULL};

    fake_status = 200;
    fake_answer = "{\"result\":{\"header\":{\"revision\":\"1\"},\"ID\":\"7\",\"TTL\":\"3\"}}";
    g_atomic_int_set(&fake_requests, 0);
    g_atomic_int_set(&fake_unavailable, 2);
    etcd = test_client(endpoints);
    keeper = gw_etcd_lease_keeper_new(etcd, 7, ttl, test_lease_lost_cb, &lost);
    test_sleep_running(ttl * 1000 + 500);
    g_test_message("%d keepalives answered, %u renewals", g_atomic_int_get(&fake_requests),
                   gw_etcd_lease_keeper_get_renewals(keeper));
    if (lost != NULL)
        g_test_message("lost: %s", lost->message);
    g_assert_null(lost);
    g_assert_cmpint(g_atomic_int_get(&fake_unavailable), <=, 0);
    g_assert_cmpuint(gw_etcd_lease_keeper_get_renewals(keeper), >=, 2);
    g_clear_pointer(&keeper, gw_etcd_lease_keeper_free);
    g_clear_object(&etcd);
    test_fake_stop(service);
}

typedef struct {
    GError **lost;
    gboolean ran;
    gboolean lost_before;
} TestPausedIo;

static gboolean
test_paused_io(gpointer user_data)
{
    TestPausedIo *io = user_data;
    io->ran = TRUE;
    io->lost_before = *io->lost != NULL;
    return G_SOURCE_REMOVE;
}

/* A process paused past its lease's deadline (the main loop does not run:
 * a SIGSTOP, a frozen VM) learns of the loss before it dispatches any I/O
 * of default priority, even I/O that was ready first. */
static void
test_lease_keeper_paused(void)
{
    g_autoptr(GwEtcd) etcd = NULL;
    g_autoptr(GError) lost = NULL;
    g_autoptr(GwEtcdLeaseKeeper) keeper = NULL;
    g_autofree gchar *url = NULL;
    GSocketService *service = test_fake_start(&url);
    const gchar *endpoints[] = {url, NULL};
    TestPausedIo io = {&lost, FALSE, FALSE};
    g_autoptr(GSource) source = g_timeout_source_new(100);

    fake_status = 200;
    fake_answer = "{\"result\":{\"header\":{\"revision\":\"1\"},\"ID\":\"7\",\"TTL\":\"1\"}}";
    g_atomic_int_set(&fake_unavailable, 0);
    etcd = test_client(endpoints);
    /* the I/O: attached before the keeper, so first among equals */
    g_source_set_callback(source, test_paused_io, &io, NULL);
    g_source_attach(source, NULL);
    keeper = gw_etcd_lease_keeper_new(etcd, 7, 1, test_lease_lost_cb, &lost);
    g_usleep(1500 * 1000); /* paused past 9/10 of the 1 s TTL */
    while (!io.ran)
        g_main_context_iteration(NULL, TRUE);
    g_assert_true(io.lost_before);
    g_assert_error(lost, GW_ETCD_ERROR, GW_ETCD_ERROR_LEASE_NOT_FOUND);
    g_test_message("lost: %s", lost->message);
    g_source_destroy(source);
    g_clear_pointer(&keeper, gw_etcd_lease_keeper_free);
    g_clear_object(&etcd);
    test_fake_stop(service);
}

static void
test_bad_answers(void)
{
    static const struct {
        const gchar *name;
        guint status;
        const gchar *answer;
        GwEtcdError code;
        const gchar *want;
    } cases[] = {
        {"not JSON", 200, "<html>", GW_ETCD_ERROR_PROTOCOL, "bad JSON"},
        {"empty", 200, "", GW_ETCD_ERROR_PROTOCOL, "bad JSON: the answer is empty"},
        {"not an object", 200, "[1]", GW_ETCD_ERROR_PROTOCOL, "not a JSON object"},
        {"no header", 200, "{}", GW_ETCD_ERROR_PROTOCOL, "member \"header\" missing"},
        {"revision not a number", 200, "{\"header\":{\"revision\":\"x\"}}", GW_ETCD_ERROR_PROTOCOL,
         "member \"revision\" is not an integer"},
        {"etcd's error", 400, "{\"error\":\"e\",\"message\":\"bad thing\",\"code\":3}",
         GW_ETCD_ERROR_SERVER, "HTTP 400: etcd error (code 3): bad thing"},
        {"plain 404", 404, "nothing here", GW_ETCD_ERROR_HTTP, "HTTP 404"},
    };
    g_autoptr(GError) error = NULL;
    g_autoptr(GwEtcd) etcd = NULL;
    g_autofree gchar *url = NULL;
    GSocketService *service = test_fake_start(&url);

    {
        const gchar *endpoints[] = {url, NULL};
        etcd = test_client(endpoints);
    }
    for (guint i = 0; i < G_N_ELEMENTS(cases); i++) {
        g_autoptr(GAsyncResult) result = NULL;
        g_autofree gchar *prefix = g_strdup_printf("etcd put at %s: ", url);
        g_test_message("%s", cases[i].name);
        fake_status = cases[i].status;
        fake_answer = cases[i].answer;
        gw_etcd_put_async(etcd, "/k", NULL, 0, NULL, test_got_result, &result);
        g_assert_false(gw_etcd_put_finish(etcd, test_wait(&result), NULL, &error));
        g_assert_error(error, GW_ETCD_ERROR, (gint)cases[i].code);
        g_assert_true(g_str_has_prefix(error->message, prefix));
        g_assert_nonnull(strstr(error->message, cases[i].want));
        g_clear_error(&error);
    }
    g_clear_object(&etcd);
    test_fake_stop(service);
}

/* ---- HTTPS with client certificates ---- */

/* Puts over https, and after which one a member is killed. */
#define TEST_TLS_PUTS 60
#define TEST_TLS_KILL 20
/* The kill may take the leader: an election (500 ms here) and the
 * failover fit in 9/10 of this TTL with room for a loaded machine. */
#define TEST_TLS_LEASE_TTL_S 3

static TestCluster *tls_single; /* one https member (certificate from the cluster's CA) */

/* The shared https member, or NULL with the case skipped when etcd or
 * openssl is not installed. */
static TestCluster *
test_tls_single(void)
{
    if (etcd_path == NULL || !test_tls_available()) {
        g_test_skip("no etcd binary (Debian: etcd-server) or no openssl");
        return NULL;
    }
    if (tls_single == NULL)
        tls_single = test_cluster_start_tls(1, "member");
    return tls_single;
}

/* put, range, txn, watch and a lease keeper over https with a client
 * certificate, on three members of which the one in use is killed: the
 * puts and the keeper go on on another member, the watch resumes there
 * without losing or repeating an event. */
static void
test_tls_cluster(void)
{
    TestCluster *cluster;
    g_autoptr(GwEtcd) etcd = NULL;
    g_autoptr(GwEtcdWatch) watch = NULL;
    g_autoptr(GwEtcdLeaseKeeper) keeper = NULL;
    g_autoptr(GError) lost = NULL;
    TestWatched watched = {g_ptr_array_new_with_free_func(g_free), NULL};
    g_autoptr(GPtrArray) kvs = NULL;
    g_autofree gchar *killed = NULL;
    gint64 start = 0, lease;

    if (etcd_path == NULL || !test_tls_available()) {
        g_test_skip("no etcd binary (Debian: etcd-server) or no openssl");
        g_ptr_array_unref(watched.events);
        return;
    }
    cluster = test_cluster_start_tls(3, "member");
    {
        const gchar *endpoints[] = {test_url(cluster, 0), test_url(cluster, 1),
                                    test_url(cluster, 2), NULL};
        g_assert_true(g_str_has_prefix(endpoints[0], "https://127.0.0.1:"));
        etcd = test_tls_client(cluster, endpoints, "client", "ca");
    }
    g_ptr_array_unref(test_range(etcd, "/t/tls/", TRUE, 0, &start, NULL));
    watch = gw_etcd_watch_new(etcd, "/t/tls/", start + 1, test_watch_cb, &watched);
    lease = test_grant(etcd, TEST_TLS_LEASE_TTL_S);
    test_put_string(etcd, "/t/tls-leased", "alive", lease);
    keeper = gw_etcd_lease_keeper_new(etcd, lease, TEST_TLS_LEASE_TTL_S, test_lease_lost_cb, &lost);
    for (guint i = 0; i < TEST_TLS_PUTS; i++) {
        g_autofree gchar *key = g_strdup_printf("/t/tls/%04u", i);
        g_autofree gchar *value = g_strdup_printf("value %u", i);

        if (i == TEST_TLS_KILL) {
            killed = g_strdup(gw_etcd_get_endpoint(etcd));
            for (guint m = 0; m < cluster->members->len; m++) {
                TestMember *member = g_ptr_array_index(cluster->members, m);
                if (g_strcmp0(member->client_url, killed) == 0)
                    test_member_kill(member);
            }
            g_test_message("killed the member at %s before put %u", killed, i);
        }
        test_put_string(etcd, key, value, 0);
    }
    g_assert_cmpstr(gw_etcd_get_endpoint(etcd), !=, killed);

    /* a create-if-absent: once it wins, once it does not */
    g_autoptr(GBytes) mine = g_bytes_new_static("mine", 4);
    g_autoptr(GwEtcdTxn) txn = gw_etcd_txn_new();
    gw_etcd_txn_if_absent(txn, "/t/tls/txn");
    gw_etcd_txn_put(txn, TRUE, "/t/tls/txn", mine, 0);
    g_assert_true(test_txn_run(etcd, txn));
    g_assert_false(test_txn_run(etcd, txn));

    kvs = test_range(etcd, "/t/tls/", TRUE, 0, NULL, NULL);
    g_assert_cmpuint(kvs->len, ==, TEST_TLS_PUTS + 1);
    for (guint i = 0; i < TEST_TLS_PUTS; i++) {
        g_autofree gchar *key = g_strdup_printf("/t/tls/%04u", i);
        g_autofree gchar *value = g_strdup_printf("value %u", i);
        test_assert_value(g_ptr_array_index(kvs, i), key, value);
    }
    test_assert_value(g_ptr_array_index(kvs, TEST_TLS_PUTS), "/t/tls/txn", "mine");

    while (watched.events->len < TEST_TLS_PUTS + 1 && watched.error == NULL)
        g_main_context_iteration(NULL, TRUE);
    g_assert_no_error(watched.error);
    g_assert_cmpuint(watched.events->len, ==, TEST_TLS_PUTS + 1);
    for (guint i = 0; i < TEST_TLS_PUTS; i++) {
        GwEtcdKv *kv = g_ptr_array_index(kvs, i);
        g_autofree gchar *want =
            g_strdup_printf("PUT %s value %u %" G_GINT64_FORMAT, kv->key, i, kv->mod_revision);
        g_assert_cmpstr(g_ptr_array_index(watched.events, i), ==, want);
    }

    /* the keeper held the lease across the kill, for more than its TTL */
    test_sleep_running(TEST_TLS_LEASE_TTL_S * 1000 + 500);
    g_assert_null(lost);
    g_assert_cmpuint(gw_etcd_lease_keeper_get_renewals(keeper), >=, 2);
    {
        g_autoptr(GPtrArray) leased = test_range(etcd, "/t/tls-leased", FALSE, 0, NULL, NULL);
        g_assert_cmpuint(leased->len, ==, 1);
        g_assert_cmpint(((GwEtcdKv *)g_ptr_array_index(leased, 0))->lease, ==, lease);
    }
    g_clear_pointer(&keeper, gw_etcd_lease_keeper_free);
    g_clear_pointer(&watch, gw_etcd_watch_free);
    g_ptr_array_unref(watched.events);
    test_cluster_stop(cluster);
}

/* A put over https that must fail: the error, checked to name the
 * operation and the endpoint, is returned. */
static GError *
test_tls_put_fails(GwEtcd *etcd, const gchar *url)
{
    g_autoptr(GAsyncResult) result = NULL;
    g_autofree gchar *at = g_strdup_printf("at %s: ", url);
    GError *error = NULL;

    gw_etcd_put_async(etcd, "/t/tls-refused", NULL, 0, NULL, test_got_result, &result);
    g_assert_false(gw_etcd_put_finish(etcd, test_wait(&result), NULL, &error));
    g_assert_error(error, GW_ETCD_ERROR, GW_ETCD_ERROR_UNREACHABLE);
    g_assert_true(g_str_has_prefix(error->message, "etcd put: no endpoint answered (1 tried)"));
    g_assert_nonnull(strstr(error->message, at));
    g_test_message("%s", error->message);
    return error;
}

/* What etcd refuses and what the client refuses: no client certificate,
 * one from another CA, a member certificate from a CA the client does
 * not trust (the system's CAs, or a rogue member's), one that does not
 * name the host dialed. Nothing reaches etcd. */
static void
test_tls_refused(void)
{
    TestCluster *cluster = test_tls_single();
    TestCluster *rogue = NULL;
    const gchar *url = cluster != NULL ? test_url(cluster, 0) : NULL;
    const gchar *endpoints[] = {url, NULL};
    g_autofree gchar *by_name = NULL;

    if (cluster == NULL)
        return;
    /* sanity: the good client is served */
    {
        g_autoptr(GwEtcd) good = test_tls_client(cluster, endpoints, "client", "ca");
        test_put_string(good, "/t/tls-ok", "yes", 0);
    }
    /* etcd refuses the handshake of a client without a certificate, and
     * of one whose certificate another CA issued */
    {
        g_autoptr(GwEtcd) anonymous = test_tls_client(cluster, endpoints, NULL, "ca");
        g_autoptr(GError) error = test_tls_put_fails(anonymous, url);
        g_assert_nonnull(strstr(error->message, "TLS: "));
        g_assert_nonnull(strstr(error->message, "no client certificate configured"));
    }
    {
        g_autoptr(GwEtcd) foreign = test_tls_client(cluster, endpoints, "foreign", "ca");
        /* with TLS 1.3 etcd checks the certificate after the client's
         * side of the handshake: the TLS alert or a reset, whichever the
         * client reads first */
        g_autoptr(GError) error = test_tls_put_fails(foreign, url);
        g_test_message("refused: %s", error->message);
    }
    /* none of those puts reached etcd */
    {
        g_autoptr(GwEtcd) good = test_tls_client(cluster, endpoints, "client", "ca");
        g_autoptr(GPtrArray) kvs = test_range(good, "/t/tls-refused", FALSE, 0, NULL, NULL);
        g_assert_cmpuint(kvs->len, ==, 0);
    }
    /* the member's certificate is not trusted by the system's CAs */
    {
        g_autoptr(GwEtcd) system_cas = test_tls_client(cluster, endpoints, "client", NULL);
        g_autoptr(GError) error = test_tls_put_fails(system_cas, url);
        g_assert_nonnull(strstr(
            error->message, "the member's certificate was refused: not issued by a trusted CA"));
    }
    /* a certificate for 127.0.0.1 reached as localhost */
    by_name = g_strdup_printf("https://localhost:%s", strrchr(url, ':') + 1);
    {
        const gchar *named[] = {by_name, NULL};
        g_autoptr(GwEtcd) etcd = test_tls_client(cluster, named, "client", "ca");
        g_autoptr(GError) error = test_tls_put_fails(etcd, by_name);
        g_assert_nonnull(
            strstr(error->message,
                   "the member's certificate was refused: does not name the member's host"));
    }
    /* a member whose certificate another CA issued: put and watch fail */
    rogue = test_cluster_start_tls(1, "rogue");
    {
        const gchar *rogue_endpoints[] = {test_url(rogue, 0), NULL};
        g_autoptr(GwEtcd) etcd = test_tls_client(rogue, rogue_endpoints, "client", "ca");
        g_autoptr(GError) error = test_tls_put_fails(etcd, test_url(rogue, 0));
        TestWatched watched = {g_ptr_array_new_with_free_func(g_free), NULL};
        g_autoptr(GwEtcdWatch) watch = NULL;

        g_assert_nonnull(strstr(
            error->message, "the member's certificate was refused: not issued by a trusted CA"));
        watch = gw_etcd_watch_new(etcd, "/t/", 1, test_watch_cb, &watched);
        while (watched.error == NULL)
            g_main_context_iteration(NULL, TRUE);
        g_assert_error(watched.error, GW_ETCD_ERROR, GW_ETCD_ERROR_UNREACHABLE);
        g_assert_nonnull(strstr(watched.error->message, test_url(rogue, 0)));
        g_assert_nonnull(
            strstr(watched.error->message,
                   "the member's certificate was refused: not issued by a trusted CA"));
        g_assert_cmpuint(watched.events->len, ==, 0);
        g_clear_error(&watched.error);
        g_ptr_array_unref(watched.events);
    }
    test_cluster_stop(rogue);
}

/* gw_etcd_set_tls() names the file it cannot use. */
typedef struct {
    const gchar *name;
    const gchar *cert, *key, *ca; /* the files given */
    const gchar *named;           /* the one the error names */
    const gchar *want;            /* how the error starts */
} TestTlsFileCase;

static void
test_tls_files(void)
{
    TestCluster *cluster = test_tls_single();
    const gchar *endpoints[] = {cluster != NULL ? test_url(cluster, 0) : NULL, NULL};
    g_autofree gchar *cert = NULL, *key = NULL, *ca = NULL, *missing = NULL, *garbage = NULL;
    g_autoptr(GError) error = NULL;
    g_autoptr(GwEtcd) etcd = NULL;

    if (cluster == NULL)
        return;
    cert = test_cert_file(cluster, "client-cert");
    key = test_cert_file(cluster, "client-key");
    ca = test_cert_file(cluster, "ca-cert");
    missing = g_build_filename(cluster->dir, "no-such-file.pem", NULL);
    garbage = g_build_filename(cluster->dir, "garbage.pem", NULL);
    g_assert_true(g_file_set_contents(garbage, "not PEM\n", -1, NULL));
    const TestTlsFileCase cases[] = {
        {"no certificate file", missing, key, ca, missing, "etcd client certificate"},
        {"no key file", cert, missing, ca, missing, "etcd client key"},
        {"no CA file", cert, key, missing, missing, "etcd CA file"},
        {"no certificate in the CA file", cert, key, garbage, garbage, "etcd CA file"},
        {"no key in the key file", cert, garbage, ca, garbage, "etcd client certificate"},
        {"a key without a certificate", NULL, key, ca, key, "etcd client key"},
    };
    etcd = test_client(endpoints);
    for (guint i = 0; i < G_N_ELEMENTS(cases); i++) {
        g_test_message("%s", cases[i].name);
        g_assert_false(gw_etcd_set_tls(etcd, cases[i].cert, cases[i].key, cases[i].ca, &error));
        g_assert_error(error, GW_ETCD_ERROR, GW_ETCD_ERROR_INVALID);
        g_test_message("%s", error->message);
        g_assert_true(g_str_has_prefix(error->message, cases[i].want));
        g_assert_nonnull(strstr(error->message, cases[i].named));
        g_clear_error(&error);
    }
    /* after the failures, good files work */
    g_assert_true(gw_etcd_set_tls(etcd, cert, key, ca, &error));
    g_assert_no_error(error);
    test_put_string(etcd, "/t/tls-files", "ok", 0);
}

int
main(int argc, char **argv)
{
    int ret;

    g_test_init(&argc, &argv, NULL);
    test_etcd_setup();

    g_test_add_func("/etcd/errors", test_errors);
    g_test_add_func("/etcd/bad-answers", test_bad_answers);
    g_test_add_func("/etcd/lease-keeper-retry", test_lease_keeper_retry);
    g_test_add_func("/etcd/lease-keeper-paused", test_lease_keeper_paused);
    g_test_add_func("/etcd/put-range", test_put_range);
    g_test_add_func("/etcd/prefix", test_prefix);
    g_test_add_func("/etcd/lease-expires", test_lease_expires);
    g_test_add_func("/etcd/lease-keeper", test_lease_keeper);
    g_test_add_func("/etcd/lease-keeper-deadline", test_lease_keeper_deadline);
    g_test_add_func("/etcd/txn", test_txn);
    g_test_add_func("/etcd/watch", test_watch);
    g_test_add_func("/etcd/failover", test_failover);
    g_test_add_func("/etcd/tls/cluster", test_tls_cluster);
    g_test_add_func("/etcd/tls/refused", test_tls_refused);
    g_test_add_func("/etcd/tls/files", test_tls_files);
    ret = g_test_run();

    if (single != NULL)
        test_cluster_stop(single);
    if (tls_single != NULL)
        test_cluster_stop(tls_single);
    test_etcd_teardown();
    return ret;
}
