/* libFuzzer target for the cluster directory's entries (gateway/cluster/
 * gw-cluster-registry-entry.c): the keys and values under /usbgw/ that
 * anyone who can write to etcd controls. The input is split at its first
 * newline: the part before is a key, the rest a value. The key goes
 * through gw_cluster_registry_parse_key() (with its NUL bytes), the value
 * through both value parsers.
 *
 * Never a crash, a leak, a sanitizer report or a warning; and the
 * invariants: a failing parser sets an error in GW_CLUSTER_REGISTRY_ERROR
 * whose message has no control characters (it is logged);
 * a device key parsed is exactly the key built again from its gateway and
 * id (one id, one key); a gateway name and an id parsed pass their
 * checks; an address parsed passes its check; a description parsed
 * survives a round trip through its value unchanged.
 *
 * Run the fuzzer (clang):
 *
 *   CC=clang meson setup /tmp/buildfuzz -Dfuzzing=true -Db_sanitize=address,undefined \
 *       -Db_lundef=false
 *   ninja -C /tmp/buildfuzz tests/fuzz/fuzz-cluster-registry
 *   mkdir -p /tmp/fuzz-cluster-registry-corpus
 *   /tmp/buildfuzz/tests/fuzz/fuzz-cluster-registry /tmp/fuzz-cluster-registry-corpus \
 *       tests/fuzz/corpus/cluster-registry -max_total_time=300
 *
 * A crash leaves crash-<sha1>: fix it and copy it to
 * tests/fuzz/corpus/cluster-registry/; fuzz-cluster-registry-replay
 * replays the corpus in every build. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "gw-cluster-registry-entry.h"

#include "fuzz-common.h"

static void
fuzz_key(const gchar *key, gsize len)
{
    g_autoptr(GError) error = NULL;
    g_autofree gchar *gateway = NULL;
    g_autofree gchar *id = NULL;
    GwClusterRegistryKeyKind kind;

    if (!gw_cluster_registry_parse_key(key, len, &kind, &gateway, &id, &error)) {
        FUZZ_CHECK(error != NULL && error->domain == GW_CLUSTER_REGISTRY_ERROR);
        FUZZ_CHECK(fuzz_is_printable(error->message));
        FUZZ_CHECK(gateway == NULL && id == NULL);
        return;
    }
    switch (kind) {
    case GW_CLUSTER_REGISTRY_KEY_OTHER:
        FUZZ_CHECK(gateway == NULL && id == NULL);
        break;
    case GW_CLUSTER_REGISTRY_KEY_GATEWAY: {
        g_autofree gchar *again = gw_cluster_registry_gateway_key(gateway);
        FUZZ_CHECK(gw_cluster_registry_check_name(gateway, NULL));
        FUZZ_CHECK(strlen(again) == len && memcmp(again, key, len) == 0);
        break;
    }
    case GW_CLUSTER_REGISTRY_KEY_DEVICE: {
        g_autofree gchar *again = gw_cluster_registry_device_key(gateway, id);
        FUZZ_CHECK(gw_cluster_registry_check_name(gateway, NULL));
        FUZZ_CHECK(gw_cluster_registry_check_id(id, NULL));
        FUZZ_CHECK(strlen(again) == len && memcmp(again, key, len) == 0);
        break;
    }
    }
}

static void
fuzz_value(const gchar *data, gsize len)
{
    g_autoptr(GError) error = NULL;
    g_autofree gchar *address = NULL;
    g_autoptr(PolicyDevice) device = NULL;

    if (gw_cluster_registry_parse_gateway_value(data, len, &address, &error)) {
        FUZZ_CHECK(address == NULL || gw_cluster_registry_check_address(address, NULL));
    } else {
        FUZZ_CHECK(error != NULL && error->domain == GW_CLUSTER_REGISTRY_ERROR);
        FUZZ_CHECK(fuzz_is_printable(error->message));
        FUZZ_CHECK(address == NULL);
    }
    g_clear_error(&error);
    device = gw_cluster_registry_parse_device_value(data, len, &error);
    if (device != NULL) {
        g_autoptr(GBytes) value = gw_cluster_registry_device_value(device);
        gsize value_len = 0;
        const gchar *value_data = g_bytes_get_data(value, &value_len);
        g_autoptr(PolicyDevice) back =
            gw_cluster_registry_parse_device_value(value_data, value_len, NULL);
        FUZZ_CHECK(back != NULL && gw_cluster_registry_device_equal(device, back));
    } else {
        FUZZ_CHECK(error != NULL && error->domain == GW_CLUSTER_REGISTRY_ERROR);
        FUZZ_CHECK(fuzz_is_printable(error->message));
    }
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static gboolean initialized;
    const gchar *text = (const gchar *)data;
    const gchar *newline = memchr(text, '\n', size);
    gsize key_len = newline != NULL ? (gsize)(newline - text) : size;
    g_autofree gchar *key = g_malloc(key_len + 1);

    if (!initialized) {
        g_log_set_default_handler(fuzz_log_handler, NULL);
        initialized = TRUE;
    }
    /* the whole key, NUL bytes included, as etcd would give it */
    memcpy(key, text, key_len);
    key[key_len] = '\0';
    fuzz_key(key, key_len);
    if (newline != NULL)
        fuzz_value(newline + 1, size - key_len - 1);
    return 0;
}
