/* GwClusterRegistry (gateway/cluster/gw-cluster-registry.h) against a real
 * etcd cluster of three members on 127.0.0.1 (test-etcd-members.h). Each
 * simulated gateway has its own GwEtcd (listing the members in its own
 * order), lease, keeper and registry, and keeps the view its events build
 * (gateway -> address, gateway/id -> description) to compare with the
 * registry's own counts.
 *
 * Cases: the entries' keys and values (names, ids, escaping, bad values);
 * two gateways seeing each other's gateways and devices (a publish before
 * start written at start, descriptions round-tripping, a withdraw, a
 * change, a revoked lease reported within a second, a new lease
 * re-registering everything, an id with "/", "%" and non-ASCII); a member
 * killed while devices are published (no event lost); bad keys and values
 * written straight into etcd (skipped with a warning naming the key).
 *
 * Skipped only when no etcd binary is installed (Debian: etcd-server). */
#include <signal.h>
#include <string.h>

#include "gw-cluster-registry.h"
#include "test-etcd-members.h"

/* The lease TTL of the gateways (a keeper renews every third of it). */
#define TEST_GATEWAY_TTL_S 10
/* How long a change may take to reach the other gateway's view. */
#define TEST_CONVERGE_MS 1000
/* How long a start (lease, registration, first read) may take. */
#define TEST_START_MS 10000
/* Devices published while a member is killed. */
#define TEST_KILL_DEVICES 40

static TestCluster *cluster; /* three members, started in main() */

/* ---- simulated gateways and the views their events build ---- */

typedef struct {
    gchar *name;
    GwEtcd *etcd; /* owned */
    gint64 lease;
    GwEtcdLeaseKeeper *keeper;   /* owned, nullable */
    GwClusterRegistry *registry; /* owned */
    GHashTable *gateways;        /* name -> address ("" for none), from the events */
    GHashTable *devices;         /* "G ID" -> PolicyDevice, from the events */
    guint found, lost, up, gone; /* events so far */
    gint64 last_lost_us;         /* when the last device_lost came */
    gint64 last_gone_us;         /* when the last gateway_gone came */
} TestGw;

static gchar *
test_device_key(const gchar *gateway, const gchar *id)
{
    return g_strconcat(gateway, " ", id, NULL);
}

static void
test_on_up(const gchar *gateway, const gchar *address, gpointer user_data)
{
    TestGw *gw = user_data;

    gw->up++;
    g_hash_table_replace(gw->gateways, g_strdup(gateway), g_strdup(address ? address : ""));
}

static void
test_on_gone(const gchar *gateway, gpointer user_data)
{
    TestGw *gw = user_data;
    g_autofree gchar *prefix = g_strconcat(gateway, " ", NULL);
    GHashTableIter iter;
    gpointer key;

    gw->gone++;
    gw->last_gone_us = g_get_monotonic_time();
    g_assert_true(g_hash_table_remove(gw->gateways, gateway));
    /* its devices were reported lost before */
    g_hash_table_iter_init(&iter, gw->devices);
    while (g_hash_table_iter_next(&iter, &key, NULL))
        g_assert_false(g_str_has_prefix(key, prefix));
}

static void
test_on_found(const gchar *gateway, const gchar *id, const PolicyDevice *device, gpointer user_data)
{
    TestGw *gw = user_data;

    gw->found++;
    /* a gateway is up before its devices are found */
    g_assert_true(g_hash_table_contains(gw->gateways, gateway));
    g_hash_table_replace(gw->devices, test_device_key(gateway, id), policy_device_copy(device));
}

static void
test_on_lost(const gchar *gateway, const gchar *id, gpointer user_data)
{
    TestGw *gw = user_data;
    g_autofree gchar *key = test_device_key(gateway, id);

    gw->lost++;
    gw->last_lost_us = g_get_monotonic_time();
    g_assert_true(g_hash_table_remove(gw->devices, key));
}

static const GwClusterRegistryEvents test_events = {
    .gateway_up = test_on_up,
    .gateway_gone = test_on_gone,
    .device_found = test_on_found,
    .device_lost = test_on_lost,
};

/* Gateway @name at @address; its client lists the members from @first. */
static TestGw *
test_gw_new(const gchar *name, const gchar *address, guint first)
{
    TestGw *gw = g_new0(TestGw, 1);
    const gchar *endpoints[4] = {NULL};
    g_autoptr(GError) error = NULL;

    for (guint i = 0; i < cluster->members->len; i++)
        endpoints[i] = test_url(cluster, (first + i) % cluster->members->len);
    gw->name = g_strdup(name);
    gw->etcd = test_client(endpoints);
    gw->gateways = g_hash_table_new_full(g_str_hash, g_str_equal, g_free, g_free);
    gw->devices =
        g_hash_table_new_full(g_str_hash, g_str_equal, g_free, (GDestroyNotify)policy_device_free);
    gw->registry = gw_cluster_registry_new(gw->etcd, name, address, &test_events, gw, &error);
    g_assert_no_error(error);
    g_assert_nonnull(gw->registry);
    return gw;
}

/* A new lease with a keeper, and start(). */
static void
test_gw_start(TestGw *gw)
{
    g_clear_pointer(&gw->keeper, gw_etcd_lease_keeper_free);
    gw->lease = test_grant(gw->etcd, TEST_GATEWAY_TTL_S);
    gw->keeper = gw_etcd_lease_keeper_new(gw->etcd, gw->lease, TEST_GATEWAY_TTL_S, NULL, NULL);
    gw_cluster_registry_start(gw->registry, gw->lease);
}

static void
test_gw_free(TestGw *gw)
{
    g_clear_pointer(&gw->keeper, gw_etcd_lease_keeper_free);
    g_clear_pointer(&gw->registry, gw_cluster_registry_free);
    g_clear_object(&gw->etcd);
    g_hash_table_unref(gw->gateways);
    g_hash_table_unref(gw->devices);
    g_free(gw->name);
    g_free(gw);
}

static void
test_revoke(TestGw *gw)
{
    g_autoptr(GAsyncResult) result = NULL;
    g_autoptr(GError) error = NULL;

    gw_etcd_lease_revoke_async(gw->etcd, gw->lease, NULL, test_got_result, &result);
    g_assert_true(gw_etcd_lease_revoke_finish(gw->etcd, test_wait(&result), &error));
    g_assert_no_error(error);
}

static void
test_put(GwEtcd *etcd, const gchar *key, const gchar *value)
{
    g_autoptr(GAsyncResult) result = NULL;
    g_autoptr(GError) error = NULL;
    g_autoptr(GBytes) bytes = g_bytes_new(value, strlen(value));

    gw_etcd_put_async(etcd, key, bytes, 0, NULL, test_got_result, &result);
    g_assert_true(gw_etcd_put_finish(etcd, test_wait(&result), NULL, &error));
    g_assert_no_error(error);
}

typedef gboolean (*TestCondition)(gpointer data);

/* Runs the main context until @condition holds; fails after @ms. */
static void
test_until(TestCondition condition, gpointer data, guint ms, const gchar *what)
{
    gint64 deadline = g_get_monotonic_time() + (gint64)ms * 1000;

    while (!condition(data)) {
        if (g_get_monotonic_time() > deadline)
            g_error("not within %u ms: %s", ms, what);
        test_sleep_running(5);
    }
}

typedef struct {
    TestGw *gw;
    guint gateways;
    guint devices;
} TestCounts;

/* @gw's view (events and the registry's counts alike) holds @gateways
 * gateways and @devices devices. */
static gboolean
test_has_counts(gpointer data)
{
    TestCounts *want = data;
    TestGw *gw = want->gw;

    return g_hash_table_size(gw->gateways) == want->gateways &&
           g_hash_table_size(gw->devices) == want->devices &&
           gw_cluster_registry_count_gateways(gw->registry) == want->gateways &&
           gw_cluster_registry_count_devices(gw->registry) == want->devices;
}

static void
test_until_counts(TestGw *gw, guint gateways, guint devices, guint ms)
{
    TestCounts want = {gw, gateways, devices};
    g_autofree gchar *what =
        g_strdup_printf("gateway %s sees %u gateways and %u devices (has %u "
                        "and %u)",
                        gw->name, gateways, devices, g_hash_table_size(gw->gateways),
                        g_hash_table_size(gw->devices));
    test_until(test_has_counts, &want, ms, what);
}

static gboolean
test_is_written(gpointer data)
{
    return gw_cluster_registry_is_written(data);
}

static const PolicyDevice *
test_seen(TestGw *gw, const gchar *gateway, const gchar *id)
{
    g_autofree gchar *key = test_device_key(gateway, id);
    return g_hash_table_lookup(gw->devices, key);
}

static PolicyDevice *
test_make_device(guint16 vid, guint16 pid, const gchar *serial)
{
    PolicyDevice *device = policy_device_new(vid, pid);

    device->serial = g_strdup(serial);
    device->product = g_strdup("HASP HL 3.25");
    device->manufacturer = g_strdup("SafeNet Inc.");
    device->port = g_strdup("1-1.4");
    device->bcd_device = 0x0325;
    policy_device_add_interface(device, 0xff, 0x00, 0x00);
    policy_device_add_interface(device, 0x03, 0x01, 0x02);
    return device;
}

static void
test_assert_device(const PolicyDevice *got, const PolicyDevice *want)
{
    g_assert_nonnull(got);
    g_assert_cmphex(got->vendor_id, ==, want->vendor_id);
    g_assert_cmphex(got->product_id, ==, want->product_id);
    g_assert_cmpstr(got->serial, ==, want->serial);
    g_assert_cmpstr(got->product, ==, want->product);
    g_assert_cmpstr(got->manufacturer, ==, want->manufacturer);
    g_assert_cmpuint(got->interfaces->len, ==, want->interfaces->len);
    for (guint i = 0; i < want->interfaces->len; i++) {
        const PolicyInterface *a = &g_array_index(got->interfaces, PolicyInterface, i);
        const PolicyInterface *b = &g_array_index(want->interfaces, PolicyInterface, i);
        g_assert_cmphex(a->klass, ==, b->klass);
        g_assert_cmphex(a->subclass, ==, b->subclass);
        g_assert_cmphex(a->protocol, ==, b->protocol);
    }
    g_assert_true(gw_cluster_registry_device_equal(got, want));
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

/* Keys and values alone: names, ids, escaping both ways, and keys and
 * values that are refused. */
static void
test_entries(void)
{
    static const struct {
        const gchar *name;
        const gchar *key;
        gboolean ok;
        GwClusterRegistryKeyKind kind;
        const gchar *gateway;
        const gchar *id;
    } keys[] = {
        {.name = "gateway",
         .key = "/usbgw/gateways/gw-1.a:b",
         .ok = TRUE,
         .kind = GW_CLUSTER_REGISTRY_KEY_GATEWAY,
         .gateway = "gw-1.a:b"},
        {.name = "device",
         .key = "/usbgw/devices/g1/1-1.4",
         .ok = TRUE,
         .kind = GW_CLUSTER_REGISTRY_KEY_DEVICE,
         .gateway = "g1",
         .id = "1-1.4"},
        {.name = "escaped",
         .key = "/usbgw/devices/g1/a%2Fb%25c%C3%A9 d",
         .ok = TRUE,
         .kind = GW_CLUSTER_REGISTRY_KEY_DEVICE,
         .gateway = "g1",
         .id = "a/b%cé d"},
        {.name = "pool",
         .key = "/usbgw/pools/p/d",
         .ok = TRUE,
         .kind = GW_CLUSTER_REGISTRY_KEY_OTHER},
        {.name = "two slashes", .key = "/usbgw/devices/g1/a/b", .ok = FALSE},
        {.name = "no id", .key = "/usbgw/devices/g1", .ok = FALSE},
        {.name = "empty id", .key = "/usbgw/devices/g1/", .ok = FALSE},
        {.name = "lower-case escape", .key = "/usbgw/devices/g1/a%2fb", .ok = FALSE},
        {.name = "needless escape", .key = "/usbgw/devices/g1/%41", .ok = FALSE},
        {.name = "raw non-ASCII", .key = "/usbgw/devices/g1/\xc3\xa9", .ok = FALSE},
        {.name = "bad escape", .key = "/usbgw/devices/g1/a%4", .ok = FALSE},
        {.name = "control character", .key = "/usbgw/devices/g1/a\tb", .ok = FALSE},
        {.name = "escaped control", .key = "/usbgw/devices/g1/a%0A", .ok = FALSE},
        {.name = "escaped NUL", .key = "/usbgw/devices/g1/a%00", .ok = FALSE},
        {.name = "bad UTF-8", .key = "/usbgw/devices/g1/%C3", .ok = FALSE},
        {.name = "bad gateway", .key = "/usbgw/devices/g 1/x", .ok = FALSE},
        {.name = "empty gateway", .key = "/usbgw/gateways/", .ok = FALSE},
        {.name = "gateway with slash", .key = "/usbgw/gateways/a/b", .ok = FALSE},
    };
    static const struct {
        const gchar *value;
        gboolean ok;
        const gchar *address;
    } gateway_values[] = {
        {"{\"address\": \"10.0.0.1:7000\", \"version\": \"1\"}", TRUE, "10.0.0.1:7000"},
        {"{\"address\": \"[fe80::1]:7000\"}", TRUE, "[fe80::1]:7000"},
        {"{\"address\": \"gw.example:7000\"}", TRUE, "gw.example:7000"},
        {"{\"address\": null}", TRUE, NULL},
        {"{}", FALSE, NULL},
        {"{\"address\": 7}", FALSE, NULL},
        {"{\"address\": \"host\"}", FALSE, NULL},
        {"{\"address\": \"host:0\"}", FALSE, NULL},
        {"{\"address\": \"host:70000\"}", FALSE, NULL},
        {"{\"address\": \"a b:1\"}", FALSE, NULL},
        {"[1]", FALSE, NULL},
        {"not json", FALSE, NULL},
    };
    g_autoptr(PolicyDevice) device = test_make_device(0x0529, 0x0001, "S/1%é");
    g_autoptr(GBytes) value = gw_cluster_registry_device_value(device);
    g_autoptr(PolicyDevice) back = NULL;
    g_autoptr(GError) error = NULL;
    g_autofree gchar *big = NULL;
    g_autofree gchar *key = NULL;
    gsize len = 0;
    const gchar *data;

    for (guint i = 0; i < G_N_ELEMENTS(keys); i++) {
        g_autofree gchar *gateway = NULL;
        g_autofree gchar *id = NULL;
        g_autoptr(GError) local = NULL;
        GwClusterRegistryKeyKind kind;
        gboolean ok = gw_cluster_registry_parse_key(keys[i].key, strlen(keys[i].key), &kind,
                                                    &gateway, &id, &local);

        g_test_message("key %s: %s", keys[i].name, local != NULL ? local->message : "ok");
        g_assert_true(ok == keys[i].ok);
        if (!ok) {
            g_assert_error(local, GW_CLUSTER_REGISTRY_ERROR, GW_CLUSTER_REGISTRY_ERROR_BAD_ENTRY);
            continue;
        }
        g_assert_cmpint(kind, ==, keys[i].kind);
        g_assert_cmpstr(gateway, ==, keys[i].gateway);
        g_assert_cmpstr(id, ==, keys[i].id);
        if (kind == GW_CLUSTER_REGISTRY_KEY_DEVICE) {
            g_autofree gchar *again = gw_cluster_registry_device_key(gateway, id);
            g_assert_cmpstr(again, ==, keys[i].key);
        }
    }
    /* a key with a NUL byte inside */
    {
        g_autofree gchar *gateway = NULL;
        g_autofree gchar *id = NULL;
        GwClusterRegistryKeyKind kind;
        const gchar with_nul[] = "/usbgw/devices/g1/a\0b";
        g_assert_false(gw_cluster_registry_parse_key(with_nul, sizeof(with_nul) - 1, &kind,
                                                     &gateway, &id, NULL));
    }
    for (guint i = 0; i < G_N_ELEMENTS(gateway_values); i++) {
        g_autofree gchar *address = NULL;
        g_autoptr(GError) local = NULL;
        gboolean ok = gw_cluster_registry_parse_gateway_value(
            gateway_values[i].value, strlen(gateway_values[i].value), &address, &local);

        g_test_message("gateway value %s: %s", gateway_values[i].value,
                       local != NULL ? local->message : "ok");
        g_assert_true(ok == gateway_values[i].ok);
        g_assert_cmpstr(address, ==, gateway_values[i].address);
    }

    /* names and ids given by the caller */
    g_assert_true(gw_cluster_registry_check_name("gw-1.a:b_2", NULL));
    g_assert_false(gw_cluster_registry_check_name("a/b", &error));
    g_assert_error(error, GW_CLUSTER_REGISTRY_ERROR, GW_CLUSTER_REGISTRY_ERROR_INVALID);
    g_clear_error(&error);
    g_assert_false(gw_cluster_registry_check_name("", NULL));
    big = g_strnfill(GW_CLUSTER_REGISTRY_MAX_NAME + 1, 'a');
    g_assert_false(gw_cluster_registry_check_name(big, NULL));
    g_clear_pointer(&big, g_free);
    big = g_strnfill(GW_CLUSTER_REGISTRY_MAX_ID + 1, 'a');
    g_assert_false(gw_cluster_registry_check_id(big, NULL));
    g_assert_false(gw_cluster_registry_check_id("a\nb", NULL));
    g_assert_true(gw_cluster_registry_check_id("1-1.4 \"HASP\" é/%", NULL));
    key = gw_cluster_registry_device_key("g1", "1-1.4 é/%");
    g_assert_cmpstr(key, ==, "/usbgw/devices/g1/1-1.4 %C3%A9%2F%25");

    /* a description's round trip, and values refused */
    data = g_bytes_get_data(value, &len);
    back = gw_cluster_registry_parse_device_value(data, len, &error);
    g_assert_no_error(error);
    test_assert_device(back, device);
    g_assert_null(gw_cluster_registry_parse_device_value("{\"vid\": \"05\"}", 13, &error));
    g_assert_error(error, GW_CLUSTER_REGISTRY_ERROR, GW_CLUSTER_REGISTRY_ERROR_BAD_ENTRY);
    g_clear_error(&error);
    g_clear_pointer(&big, g_free);
    big = g_strnfill(GW_CLUSTER_REGISTRY_MAX_VALUE + 1, ' ');
    g_assert_null(gw_cluster_registry_parse_device_value(big, strlen(big), &error));
    g_assert_error(error, GW_CLUSTER_REGISTRY_ERROR, GW_CLUSTER_REGISTRY_ERROR_TOO_LARGE);
    g_clear_error(&error);

    /* bad arguments of new() */
    g_assert_null(gw_cluster_registry_new(NULL, "a/b", NULL, NULL, NULL, &error));
    g_assert_error(error, GW_CLUSTER_REGISTRY_ERROR, GW_CLUSTER_REGISTRY_ERROR_INVALID);
    g_clear_error(&error);
}

/* Two gateways: each sees the other (and itself); a publish before start
 * is written at start; descriptions round-trip; withdraw, change, a revoked
 * lease and a new one; an escaped id; the status JSON. */
static void
test_two_gateways(void)
{
    g_autoptr(PolicyDevice) d1 = test_make_device(0x0529, 0x0001, "A1");
    g_autoptr(PolicyDevice) d1b = test_make_device(0x0529, 0x0001, "A1-changed");
    g_autoptr(PolicyDevice) d2 = test_make_device(0x0529, 0x0002, "B1");
    g_autoptr(PolicyDevice) odd = test_make_device(0x04b9, 0x0300, "é/%");
    const gchar *odd_id = "1-2 key/é%41";
    g_autoptr(JsonBuilder) builder = json_builder_new();
    g_autoptr(JsonGenerator) generator = json_generator_new();
    g_autoptr(JsonNode) root = NULL;
    g_autofree gchar *json = NULL;
    g_autoptr(GPtrArray) kvs = NULL;
    g_autofree gchar *odd_key = NULL;
    TestGw *a, *b;
    gint64 revoked_us;
    guint lost_before, gone_before, found_before;

    if (test_skip_without_etcd())
        return;
    a = test_gw_new("gw-a", "127.0.0.1:7001", 0);
    b = test_gw_new("gw-b", NULL, 1);

    /* published before start: written at start */
    gw_cluster_registry_publish(a->registry, "1-1", d1);
    g_assert_false(gw_cluster_registry_is_synced(a->registry));
    test_gw_start(a);
    test_gw_start(b);
    gw_cluster_registry_publish(b->registry, "2-1", d2);
    test_until_counts(a, 2, 2, TEST_START_MS);
    test_until_counts(b, 2, 2, TEST_START_MS);
    g_assert_true(gw_cluster_registry_is_synced(a->registry));
    g_assert_true(gw_cluster_registry_is_synced(b->registry));
    g_assert_null(gw_cluster_registry_get_error(a->registry));
    g_assert_cmpstr(g_hash_table_lookup(b->gateways, "gw-a"), ==, "127.0.0.1:7001");
    g_assert_cmpstr(g_hash_table_lookup(a->gateways, "gw-b"), ==, "");
    test_assert_device(test_seen(b, "gw-a", "1-1"), d1);
    test_assert_device(test_seen(a, "gw-b", "2-1"), d2);
    test_assert_device(test_seen(a, "gw-a", "1-1"), d1);
    test_assert_device(gw_cluster_registry_lookup(b->registry, "gw-a", "1-1"), d1);
    g_assert_cmpuint(b->found, ==, 2);

    /* the keys as etcd holds them, under the leases */
    kvs = test_range(a->etcd, "/usbgw/", TRUE, 0, NULL, NULL);
    g_assert_cmpuint(kvs->len, ==, 4);
    g_assert_cmpstr(((GwEtcdKv *)kvs->pdata[0])->key, ==, "/usbgw/devices/gw-a/1-1");
    g_assert_cmpint(((GwEtcdKv *)kvs->pdata[0])->lease, ==, a->lease);
    g_assert_cmpstr(((GwEtcdKv *)kvs->pdata[2])->key, ==, "/usbgw/gateways/gw-a");
    g_assert_cmpint(((GwEtcdKv *)kvs->pdata[3])->lease, ==, b->lease);
    g_clear_pointer(&kvs, g_ptr_array_unref);

    /* withdraw: lost on the other; a publish of the same changes nothing */
    gw_cluster_registry_withdraw(a->registry, "1-1");
    test_until_counts(b, 2, 1, TEST_CONVERGE_MS);
    g_assert_cmpuint(b->lost, ==, 1);
    g_assert_null(test_seen(b, "gw-a", "1-1"));
    gw_cluster_registry_publish(b->registry, "2-1", d2);

    /* published again, then changed: found each time, the new description */
    gw_cluster_registry_publish(a->registry, "1-1", d1);
    test_until_counts(b, 2, 2, TEST_CONVERGE_MS);
    found_before = b->found;
    gw_cluster_registry_publish(a->registry, "1-1", d1b);
    while (b->found == found_before)
        test_sleep_running(5);
    test_assert_device(test_seen(b, "gw-a", "1-1"), d1b);
    g_assert_cmpuint(b->found, ==, found_before + 1);

    /* an id with "/", "%" and non-ASCII */
    gw_cluster_registry_publish(a->registry, odd_id, odd);
    test_until_counts(b, 2, 3, TEST_CONVERGE_MS);
    test_assert_device(test_seen(b, "gw-a", odd_id), odd);
    odd_key = gw_cluster_registry_device_key("gw-a", odd_id);
    g_assert_cmpstr(odd_key, ==, "/usbgw/devices/gw-a/1-2 key%2F%C3%A9%2541");
    kvs = test_range(b->etcd, odd_key, FALSE, 0, NULL, NULL);
    g_assert_cmpuint(kvs->len, ==, 1);
    g_clear_pointer(&kvs, g_ptr_array_unref);

    /* the status */
    json_builder_begin_object(builder);
    gw_cluster_registry_to_json(b->registry, builder);
    json_builder_end_object(builder);
    root = json_builder_get_root(builder);
    json_generator_set_root(generator, root);
    json = json_generator_to_data(generator, NULL);
    g_assert_cmpstr(json, ==,
                    "{\"gateways\":[{\"name\":\"gw-a\",\"address\":\"127.0.0.1:7001\","
                    "\"devices\":2},{\"name\":\"gw-b\",\"address\":null,\"devices\":1}],"
                    "\"devices\":3,\"synced\":true,\"error\":null}");

    /* a revoked lease: its devices lost, then the gateway gone, within a second */
    lost_before = b->lost;
    gone_before = b->gone;
    gw_cluster_registry_lease_lost(a->registry);
    revoked_us = g_get_monotonic_time();
    test_revoke(a);
    test_until_counts(b, 1, 1, TEST_CONVERGE_MS);
    g_assert_cmpuint(b->lost, ==, lost_before + 2);
    g_assert_cmpuint(b->gone, ==, gone_before + 1);
    g_assert_cmpint(b->last_gone_us - revoked_us, <, TEST_CONVERGE_MS * 1000);
    g_assert_cmpint(b->last_lost_us, <=, b->last_gone_us);
    g_assert_false(g_hash_table_contains(b->gateways, "gw-a"));
    /* a's own view says the same */
    test_until_counts(a, 1, 1, TEST_CONVERGE_MS);
    /* lost: nothing written, the wanted set kept */
    gw_cluster_registry_withdraw(a->registry, odd_id);
    test_sleep_running(200);
    g_assert_cmpuint(gw_cluster_registry_count_gateways(b->registry), ==, 1);

    /* a new lease: the registration and the devices wanted now, again */
    test_gw_start(a);
    test_until_counts(b, 2, 2, TEST_CONVERGE_MS);
    test_assert_device(test_seen(b, "gw-a", "1-1"), d1b);
    g_assert_null(test_seen(b, "gw-a", odd_id));
    test_until(test_is_written, a->registry, TEST_CONVERGE_MS, "gateway a's writes done");
    kvs = test_range(b->etcd, "/usbgw/devices/gw-a/", TRUE, 0, NULL, NULL);
    g_assert_cmpuint(kvs->len, ==, 1);
    g_assert_cmpint(((GwEtcdKv *)kvs->pdata[0])->lease, ==, a->lease);
    g_clear_pointer(&kvs, g_ptr_array_unref);

    test_revoke(a);
    test_revoke(b);
    test_gw_free(a);
    test_gw_free(b);
}

typedef struct {
    TestGw *gw;
    guint n;
} TestMany;

static gboolean
test_has_many(gpointer data)
{
    TestMany *many = data;
    return g_hash_table_size(many->gw->devices) == many->n;
}

/* A member killed while gateway a publishes devices: b, whose client goes
 * to that member first, sees every one of them; nothing is lost. */
static void
test_member_killed(void)
{
    g_autoptr(PolicyDevice) device = test_make_device(0x0529, 0x0001, "K");
    TestCluster *own;
    TestCluster *saved = cluster;
    TestMany many;
    TestGw *a, *b;

    if (test_skip_without_etcd())
        return;
    /* a cluster of its own: one member dies */
    own = test_cluster_start(3);
    cluster = own;
    a = test_gw_new("gw-a", "127.0.0.1:7001", 1);
    b = test_gw_new("gw-b", "127.0.0.1:7002", 0);
    test_gw_start(a);
    test_gw_start(b);
    test_until_counts(b, 2, 0, TEST_START_MS);
    for (guint i = 0; i < TEST_KILL_DEVICES; i++) {
        g_autofree gchar *id = g_strdup_printf("1-%u", i);
        g_free(device->serial);
        device->serial = g_strdup_printf("K%u", i);
        gw_cluster_registry_publish(a->registry, id, device);
        if (i == TEST_KILL_DEVICES / 2)
            test_member_kill(g_ptr_array_index(own->members, 0));
        test_sleep_running(20);
    }
    many.gw = b;
    many.n = TEST_KILL_DEVICES;
    test_until(test_has_many, &many, TEST_START_MS, "every device seen after the kill");
    for (guint i = 0; i < TEST_KILL_DEVICES; i++) {
        g_autofree gchar *id = g_strdup_printf("1-%u", i);
        g_autofree gchar *serial = g_strdup_printf("K%u", i);
        const PolicyDevice *seen = test_seen(b, "gw-a", id);
        g_assert_nonnull(seen);
        g_assert_cmpstr(seen->serial, ==, serial);
    }
    g_assert_cmpuint(b->lost, ==, 0);
    g_assert_cmpuint(b->gone, ==, 0);
    g_assert_cmpuint(b->found, ==, TEST_KILL_DEVICES);
    test_gw_free(a);
    test_gw_free(b);
    cluster = saved;
    test_cluster_stop(own);
}

static void
test_log_warning(const gchar *domain, GLogLevelFlags level, const gchar *message,
                 gpointer user_data)
{
    g_ptr_array_add(user_data, g_strdup(message));
}

static gboolean
test_warning_not_fatal(const gchar *domain, GLogLevelFlags level, const gchar *message,
                       gpointer user_data)
{
    return !(g_strcmp0(domain, "usbgw-cluster") == 0 && strstr(message, "skipped") != NULL);
}

static guint
test_count_matching(GPtrArray *messages, const gchar *pattern)
{
    guint n = 0;

    for (guint i = 0; i < messages->len; i++)
        n += g_pattern_match_simple(pattern, messages->pdata[i]);
    return n;
}

/* b's watch breaks while its member is stopped, and the revisions it
 * missed are compacted: b reads everything again and reports exactly the
 * differences (one device lost, one new, one changed; the unchanged one
 * not again). */
static void
test_compacted(void)
{
    g_autoptr(PolicyDevice) device = test_make_device(0x0529, 0x0001, "C");
    g_autoptr(PolicyDevice) changed = test_make_device(0x0529, 0x0001, "C-changed");
    g_autoptr(GPtrArray) kvs = NULL;
    g_autoptr(GError) error = NULL;
    g_autofree gchar *rev = NULL;
    g_autofree gchar *out = NULL;
    TestCluster *saved = cluster;
    TestMember *stopped;
    TestCluster *own;
    TestGw *a, *b;
    gint64 revision = 0;
    gint status = -1;
    guint found_before, lost_before, gone_before;

    if (test_skip_without_etcd())
        return;
    if (etcdctl_path == NULL) {
        g_test_skip("no etcdctl (Debian: etcd-client)");
        return;
    }
    own = test_cluster_start(3);
    cluster = own;
    a = test_gw_new("gw-a", "127.0.0.1:7001", 1);
    b = test_gw_new("gw-b", "127.0.0.1:7002", 0);
    gw_cluster_registry_publish(a->registry, "same", device);
    gw_cluster_registry_publish(a->registry, "goes", device);
    gw_cluster_registry_publish(a->registry, "changes", device);
    test_gw_start(a);
    test_gw_start(b);
    test_until_counts(b, 2, 3, TEST_START_MS);

    /* b's member stops answering; a changes its devices meanwhile */
    stopped = g_ptr_array_index(own->members, 0);
    g_subprocess_send_signal(stopped->process, SIGSTOP);
    found_before = b->found;
    lost_before = b->lost;
    gone_before = b->gone;
    gw_cluster_registry_withdraw(a->registry, "goes");
    gw_cluster_registry_publish(a->registry, "new", device);
    gw_cluster_registry_publish(a->registry, "changes", changed);
    test_until(test_is_written, a->registry, TEST_START_MS, "gateway a's writes done");
    kvs = test_range(a->etcd, "/usbgw/", TRUE, 0, &revision, NULL);
    rev = g_strdup_printf("%" G_GINT64_FORMAT, revision);
    {
        const gchar *argv[] = {etcdctl_path, "--endpoints", test_url(own, 1), "compact", rev, NULL};
        gchar **envp = g_environ_setenv(g_get_environ(), "ETCDCTL_API", "3", TRUE);
        g_assert_true(g_spawn_sync(NULL, (gchar **)argv, envp, G_SPAWN_STDERR_TO_DEV_NULL, NULL,
                                   NULL, &out, NULL, &status, &error));
        g_strfreev(envp);
        g_assert_no_error(error);
        g_assert_cmpint(status, ==, 0);
    }
    g_assert_cmpuint(b->found, ==, found_before);
    /* the member goes: b's watch starts again on another, from a compacted revision */
    test_member_kill(stopped);
    test_until_counts(b, 2, 3, TEST_START_MS);
    while (b->found < found_before + 2)
        test_sleep_running(5);
    test_sleep_running(200);
    g_assert_cmpuint(b->found, ==, found_before + 2);
    g_assert_cmpuint(b->lost, ==, lost_before + 1);
    g_assert_cmpuint(b->gone, ==, gone_before);
    g_assert_null(test_seen(b, "gw-a", "goes"));
    test_assert_device(test_seen(b, "gw-a", "new"), device);
    test_assert_device(test_seen(b, "gw-a", "changes"), changed);
    test_assert_device(test_seen(b, "gw-a", "same"), device);
    test_gw_free(a);
    test_gw_free(b);
    cluster = saved;
    test_cluster_stop(own);
}

typedef struct {
    GwClusterRegistry *registry; /* freed by its first device_found */
    guint events;
} TestSelfFree;

static void
test_free_on_found(const gchar *gateway, const gchar *id, const PolicyDevice *device,
                   gpointer user_data)
{
    TestSelfFree *self = user_data;

    self->events++;
    g_clear_pointer(&self->registry, gw_cluster_registry_free);
}

static gboolean
test_self_freed(gpointer data)
{
    return ((TestSelfFree *)data)->registry == NULL;
}

/* Many devices published before start are written in transactions of
 * GW_CLUSTER_REGISTRY_TXN_OPS: 150 devices are 1 + 3 revisions. A
 * registry freed by its own event handler gets no more events. */
static void
test_batched(void)
{
    static const GwClusterRegistryEvents free_events = {.device_found = test_free_on_found};
    g_autoptr(PolicyDevice) device = test_make_device(0x0529, 0x0001, "B");
    TestSelfFree self = {NULL, 0};
    g_autoptr(GError) error = NULL;
    g_autoptr(GPtrArray) kvs = NULL;
    gint64 before = 0, after = 0;
    TestGw *a, *b;

    if (test_skip_without_etcd())
        return;
    a = test_gw_new("gw-a", "127.0.0.1:7001", 0);
    b = test_gw_new("gw-b", NULL, 1);
    test_gw_start(b);
    test_until_counts(b, 1, 0, TEST_START_MS);
    self.registry = gw_cluster_registry_new(b->etcd, "gw-c", NULL, &free_events, &self, &error);
    g_assert_no_error(error);
    gw_cluster_registry_start(self.registry, b->lease);
    test_until(test_is_written, self.registry, TEST_START_MS, "gateway c registered");
    g_clear_pointer(&kvs, g_ptr_array_unref);
    kvs = test_range(b->etcd, "/usbgw/none", FALSE, 0, &before, NULL);
    for (guint i = 0; i < 150; i++) {
        g_autofree gchar *id = g_strdup_printf("1-%u", i);
        gw_cluster_registry_publish(a->registry, id, device);
    }
    test_gw_start(a);
    test_until_counts(b, 3, 150, TEST_START_MS);
    g_clear_pointer(&kvs, g_ptr_array_unref);
    kvs = test_range(b->etcd, "/usbgw/none", FALSE, 0, &after, NULL);
    g_assert_cmpint(after - before, ==,
                    1 + (150 + GW_CLUSTER_REGISTRY_TXN_OPS - 1) / GW_CLUSTER_REGISTRY_TXN_OPS);
    test_until(test_self_freed, &self, TEST_START_MS, "gateway c freed by its handler");
    test_sleep_running(200);
    g_assert_cmpuint(self.events, ==, 1);
    test_revoke(a);
    test_revoke(b);
    test_gw_free(a);
    test_gw_free(b);
}

/* Keys and values written into etcd by hand: each bad one is skipped with
 * one warning naming the key, per registry; the good ones stay. */
static void
test_bad_entries(void)
{
    g_autoptr(PolicyDevice) device = test_make_device(0x0529, 0x0001, "G");
    g_autoptr(GBytes) good = gw_cluster_registry_device_value(device);
    g_autofree gchar *good_text = g_strndup(g_bytes_get_data(good, NULL), g_bytes_get_size(good));
    g_autofree gchar *big = NULL;
    g_autoptr(GPtrArray) warnings = g_ptr_array_new_with_free_func(g_free);
    guint handler;
    TestGw *a, *b;

    if (test_skip_without_etcd())
        return;
    a = test_gw_new("gw-a", "127.0.0.1:7001", 2);
    b = test_gw_new("gw-b", NULL, 0);
    test_gw_start(a);
    test_gw_start(b);
    gw_cluster_registry_publish(a->registry, "good", device);
    test_until_counts(b, 2, 1, TEST_START_MS);

    /* a gateway registered by hand (no lease), with a good device */
    test_put(b->etcd, "/usbgw/gateways/gw-hand", "{\"address\": \"10.1.1.1:7000\"}");
    test_put(b->etcd, "/usbgw/devices/gw-hand/d1", good_text);
    test_until_counts(b, 3, 2, TEST_CONVERGE_MS);

    /* each registry warns once per bad key (in any order: two watches) */
    handler = g_log_set_handler("usbgw-cluster", G_LOG_LEVEL_WARNING | G_LOG_FLAG_FATAL,
                                test_log_warning, warnings);
    g_test_log_set_fatal_handler(test_warning_not_fatal, NULL);
    test_put(b->etcd, "/usbgw/devices/gw-hand/d1", "{\"vid\": \"zz\"}");
    test_put(b->etcd, "/usbgw/devices/gw-hand/a/b", good_text);
    big = g_strnfill(GW_CLUSTER_REGISTRY_MAX_VALUE + 10, ' ');
    test_put(b->etcd, "/usbgw/devices/gw-hand/big", big);
    test_put(b->etcd, "/usbgw/gateways/gw-bad", "{\"address\": 12}");
    /* a key that is not the directory's is left alone */
    test_put(b->etcd, "/usbgw/pools/p/d", "{\"gateway\": \"gw-a\", \"vm\": \"v\"}");
    /* the bad d1 is no longer a device: lost */
    test_until_counts(b, 3, 1, TEST_CONVERGE_MS);
    test_until_counts(a, 3, 1, TEST_CONVERGE_MS);
    test_sleep_running(300);
    g_log_remove_handler("usbgw-cluster", handler);
    g_test_log_set_fatal_handler(NULL, NULL);
    for (guint i = 0; i < warnings->len; i++)
        g_test_message("warning: %s", (const gchar *)warnings->pdata[i]);
    g_assert_cmpuint(warnings->len, ==, 8);
    g_assert_cmpuint(
        test_count_matching(warnings, "*\"/usbgw/devices/gw-hand/d1\"*skipped*value.vid*"), ==, 2);
    g_assert_cmpuint(test_count_matching(warnings, "*\"/usbgw/devices/gw-hand/a/b\"*skipped*"), ==,
                     2);
    g_assert_cmpuint(
        test_count_matching(warnings, "*\"/usbgw/devices/gw-hand/big\"*skipped*over 65536*"), ==,
        2);
    g_assert_cmpuint(test_count_matching(warnings, "*\"/usbgw/gateways/gw-bad\"*skipped*address*"),
                     ==, 2);
    test_assert_device(test_seen(b, "gw-a", "good"), device);
    g_assert_null(test_seen(b, "gw-hand", "d1"));

    /* fixed: found again; the hand-made registration deleted: gone */
    test_put(b->etcd, "/usbgw/devices/gw-hand/d1", good_text);
    test_until_counts(b, 3, 2, TEST_CONVERGE_MS);
    {
        g_autoptr(GAsyncResult) result = NULL;
        g_autoptr(GError) error = NULL;
        gw_etcd_delete_async(b->etcd, "/usbgw/gateways/gw-hand", FALSE, NULL, test_got_result,
                             &result);
        g_assert_true(gw_etcd_delete_finish(b->etcd, test_wait(&result), NULL, NULL, &error));
    }
    test_until_counts(b, 2, 1, TEST_CONVERGE_MS);
    g_assert_null(gw_cluster_registry_get_error(b->registry));
    test_revoke(a);
    test_revoke(b);
    test_gw_free(a);
    test_gw_free(b);
    {
        g_autoptr(GAsyncResult) result = NULL;
        g_autoptr(GError) error = NULL;
        GwEtcd *etcd = test_client((const gchar *const[]){test_url(cluster, 0), NULL});
        gw_etcd_delete_async(etcd, "/usbgw/", TRUE, NULL, test_got_result, &result);
        g_assert_true(gw_etcd_delete_finish(etcd, test_wait(&result), NULL, NULL, &error));
        g_object_unref(etcd);
    }
}

/* etcd unreachable: publish and start still return at once, the error
 * says why, nothing is synced; freeing with operations in flight is safe. */
static void
test_unreachable(void)
{
    g_autoptr(PolicyDevice) device = test_make_device(0x0529, 0x0001, "U");
    g_autofree gchar *url = g_strdup_printf("http://127.0.0.1:%u", test_free_port());
    const gchar *endpoints[] = {url, NULL};
    g_autoptr(GwEtcd) etcd = test_client(endpoints);
    g_autoptr(GError) error = NULL;
    g_autoptr(GwClusterRegistry) registry =
        gw_cluster_registry_new(etcd, "gw-u", NULL, &test_events, NULL, &error);

    g_assert_no_error(error);
    gw_cluster_registry_publish(registry, "d", device);
    gw_cluster_registry_start(registry, 42);
    while (gw_cluster_registry_get_error(registry) == NULL)
        g_main_context_iteration(NULL, TRUE);
    g_test_message("error: %s", gw_cluster_registry_get_error(registry));
    g_assert_nonnull(strstr(gw_cluster_registry_get_error(registry), "etcd"));
    g_assert_false(gw_cluster_registry_is_synced(registry));
    g_assert_false(gw_cluster_registry_is_written(registry));
    g_assert_cmpuint(gw_cluster_registry_count_devices(registry), ==, 0);
}

int
main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);

    g_test_add_func("/cluster-registry/entries", test_entries);
    g_test_add_func("/cluster-registry/two-gateways", test_two_gateways);
    g_test_add_func("/cluster-registry/batched", test_batched);
    g_test_add_func("/cluster-registry/bad-entries", test_bad_entries);
    g_test_add_func("/cluster-registry/member-killed", test_member_killed);
    g_test_add_func("/cluster-registry/compacted", test_compacted);
    g_test_add_func("/cluster-registry/unreachable", test_unreachable);
    return test_etcd_run(3, &cluster);
}
