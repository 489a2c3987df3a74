/* libFuzzer target for the pool leases' keys and values (gateway/cluster/
 * gw-cluster-pool-key.c): /usbgw/pools/POOL/DEVICE = {"gateway","vm"},
 * which anyone who can write to etcd controls and every gateway's pool
 * watch reads. The input is split at its first newline: the part before
 * is a key (with its NUL bytes, as etcd gives it), the rest its value.
 *
 * Never a crash, a leak, a sanitizer report or a warning; and the
 * invariants: gw_cluster_pool_parse_kv() fails with BAD_ENTRY in
 * GW_CLUSTER_POOL_ERROR and a message without control characters (it is
 * logged), or gives a hold whose pool, device, gateway and VM names pass
 * their checks (the gateway and VM without control characters), whose key is the one built again
 * from its pool and device, whose value built again parses to the same gateway and VM, and whose
 * names gw_cluster_pool_split_key() finds too; a key gw_cluster_pool_split_key() takes is the
 * prefix, the pool, "/" and the device; and any NUL-free string comes back from
 * gw_cluster_pool_device_id() of its gw_cluster_pool_device_name().
 *
 * Run the fuzzer (clang):
 *
 *   CC=clang meson setup /tmp/buildfuzz -Dfuzzing=true -Db_sanitize=address,undefined \
 *       -Db_lundef=false
 *   ninja -C /tmp/buildfuzz tests/fuzz/fuzz-cluster-pool
 *   mkdir -p /tmp/fuzz-cluster-pool-corpus
 *   /tmp/buildfuzz/tests/fuzz/fuzz-cluster-pool /tmp/fuzz-cluster-pool-corpus \
 *       tests/fuzz/corpus/cluster-pool -max_total_time=300
 *
 * A crash leaves crash-<sha1>: fix it and copy it to
 * tests/fuzz/corpus/cluster-pool/; fuzz-cluster-pool-replay replays the
 * corpus in every build. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "gw-cluster-pool-key.h"

#include "fuzz-common.h"

/* The hold read from @kv, checked against what it was read from. */
static void
fuzz_check_hold(const GwEtcdKv *kv, const GwClusterPoolHold *hold)
{
    g_autofree gchar *key = gw_cluster_pool_key(hold->pool, hold->device);
    g_autoptr(GBytes) value = gw_cluster_pool_value(hold->gateway, hold->vm);
    g_autofree gchar *pool_name = NULL;
    g_autofree gchar *device = NULL;
    g_autoptr(GwClusterPoolHold) back = NULL;
    GwEtcdKv again = *kv;

    FUZZ_CHECK(gw_cluster_pool_check_component("pool", hold->pool, NULL));
    FUZZ_CHECK(gw_cluster_pool_check_component("device", hold->device, NULL));
    FUZZ_CHECK(gw_cluster_pool_check_text("gateway", hold->gateway, NULL));
    FUZZ_CHECK(gw_cluster_pool_check_text("vm", hold->vm, NULL));
    FUZZ_CHECK(fuzz_is_printable(hold->gateway) && fuzz_is_printable(hold->vm));
    FUZZ_CHECK(hold->lease == kv->lease && hold->revision == kv->mod_revision);
    FUZZ_CHECK(strcmp(key, kv->key) == 0);
    FUZZ_CHECK(gw_cluster_pool_split_key(kv->key, &pool_name, &device));
    FUZZ_CHECK(strcmp(pool_name, hold->pool) == 0 && strcmp(device, hold->device) == 0);

    again.value = value;
    back = gw_cluster_pool_parse_kv(&again, NULL);
    FUZZ_CHECK(back != NULL);
    FUZZ_CHECK(strcmp(back->gateway, hold->gateway) == 0 && strcmp(back->vm, hold->vm) == 0);
}

static void
fuzz_key(const gchar *key, gsize len)
{
    g_autofree gchar *pool_name = NULL;
    g_autofree gchar *device = NULL;

    if (gw_cluster_pool_split_key(key, &pool_name, &device)) {
        g_autofree gchar *again = g_strconcat(GW_CLUSTER_POOL_PREFIX, pool_name, "/", device, NULL);
        FUZZ_CHECK(strcmp(again, key) == 0);
        FUZZ_CHECK(gw_cluster_pool_check_component("device", device, NULL));
    }
    {
        /* the key as far as its first NUL, as a device id */
        g_autofree gchar *name = gw_cluster_pool_device_name(key);
        g_autofree gchar *id = gw_cluster_pool_device_id(name);
        FUZZ_CHECK(id != NULL && strcmp(id, key) == 0);
        FUZZ_CHECK(strlen(name) <= 3 * strlen(key));
    }
    (void)len;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static gboolean initialized;
    const gchar *text = (const gchar *)data;
    const gchar *newline = memchr(text, '\n', size);
    gsize key_len = newline != NULL ? (gsize)(newline - text) : size;
    g_autoptr(GwEtcdKv) kv = g_new0(GwEtcdKv, 1);
    g_autoptr(GwClusterPoolHold) hold = NULL;
    g_autoptr(GError) error = NULL;

    if (!initialized) {
        g_log_set_default_handler(fuzz_log_handler, NULL);
        initialized = TRUE;
    }
    kv->key = g_malloc(key_len + 1);
    memcpy(kv->key, text, key_len);
    kv->key[key_len] = '\0';
    kv->key_len = key_len;
    kv->value =
        newline != NULL ? g_bytes_new(newline + 1, size - key_len - 1) : g_bytes_new_static("", 0);
    kv->lease = 7;
    kv->mod_revision = 42;

    fuzz_key(kv->key, key_len);
    hold = gw_cluster_pool_parse_kv(kv, &error);
    if (hold == NULL) {
        FUZZ_CHECK(error != NULL && error->domain == GW_CLUSTER_POOL_ERROR &&
                   error->code == GW_CLUSTER_POOL_ERROR_BAD_ENTRY);
        FUZZ_CHECK(fuzz_is_printable(error->message));
        return 0;
    }
    FUZZ_CHECK(error == NULL);
    fuzz_check_hold(kv, hold);
    return 0;
}
