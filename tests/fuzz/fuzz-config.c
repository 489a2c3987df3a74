/* libFuzzer target for usbgwd.conf (gateway/daemon/gw-config.c): any bytes
 * as the config file must give either a config or an error that names the
 * file, never a crash, a leak or a critical. When gw_config_load()
 * succeeds:
 *
 *   - every key of [usbgwd] it knows has the file's value: a value the
 *     file holds is never dropped for the default (GKeyFile is the
 *     oracle: the harness reads the same bytes with it);
 *   - numbers are within their documented ranges;
 *   - strings that may not be empty are set; TLS is all three or none.
 *
 * Run the fuzzer (clang), as tests/fuzz/fuzz-policy.c says, with
 * tests/fuzz/corpus/config as the seed corpus and -dict=tests/fuzz/config.dict. */
#include <glib/gstdio.h>
#include <stdint.h>
#include <string.h>

#include "gw-config.h"

#include "fuzz-common.h"

#define FUZZ_GROUP "usbgwd"

/* Where each string key lands, NULL for number keys. */
typedef struct {
    const gchar *key;
    gsize offset;
    gboolean nullable; /* empty in the file means none */
} FuzzStringKey;

static const FuzzStringKey fuzz_strings[] = {
    {"policy", G_STRUCT_OFFSET(GwConfig, policy_path), FALSE},
    {"rundir", G_STRUCT_OFFSET(GwConfig, rundir), FALSE},
    {"control-socket", G_STRUCT_OFFSET(GwConfig, control_socket), FALSE},
    {"state", G_STRUCT_OFFSET(GwConfig, state_path), FALSE},
    {"audit-log", G_STRUCT_OFFSET(GwConfig, audit_log), TRUE},
    {"libvirt-uri", G_STRUCT_OFFSET(GwConfig, libvirt_uri), TRUE},
    {"socket-user", G_STRUCT_OFFSET(GwConfig, socket_user), TRUE},
    {"socket-group", G_STRUCT_OFFSET(GwConfig, socket_group), TRUE},
    {"spice-address", G_STRUCT_OFFSET(GwConfig, spice_address), FALSE},
    {"spice-host", G_STRUCT_OFFSET(GwConfig, spice_host), TRUE},
    {"spice-worker", G_STRUCT_OFFSET(GwConfig, spice_worker), FALSE},
    {"spice-user", G_STRUCT_OFFSET(GwConfig, spice_user), FALSE},
    {"spice-tls-cert", G_STRUCT_OFFSET(GwConfig, spice_tls_cert), TRUE},
    {"spice-tls-key", G_STRUCT_OFFSET(GwConfig, spice_tls_key), TRUE},
    {"spice-tls-ca", G_STRUCT_OFFSET(GwConfig, spice_tls_ca), TRUE},
    {"link-listen", G_STRUCT_OFFSET(GwConfig, link_listen), TRUE},
    {"link-cert", G_STRUCT_OFFSET(GwConfig, link_cert), TRUE},
    {"link-key", G_STRUCT_OFFSET(GwConfig, link_key), TRUE},
    {"link-ca", G_STRUCT_OFFSET(GwConfig, link_ca), TRUE},
    {"link-peers", G_STRUCT_OFFSET(GwConfig, link_peers), TRUE},
};

typedef struct {
    const gchar *key;
    gsize offset;
    guint min, max;
} FuzzNumberKey;

static const FuzzNumberKey fuzz_numbers[] = {
    {"spice-port-base", G_STRUCT_OFFSET(GwConfig, spice_port_base), 0, G_MAXUINT16},
    {"spice-ports", G_STRUCT_OFFSET(GwConfig, spice_ports), 1, 1024},
    {"spice-channels", G_STRUCT_OFFSET(GwConfig, spice_channels), 1, 32},
    {"share-ttl", G_STRUCT_OFFSET(GwConfig, share_ttl), 1, 7 * 24 * 3600},
    {"control-max-clients", G_STRUCT_OFFSET(GwConfig, control_max_clients), 1, 1024},
    {"control-max-per-user", G_STRUCT_OFFSET(GwConfig, control_max_per_user), 1, 1024},
    {"control-idle-timeout", G_STRUCT_OFFSET(GwConfig, control_idle_timeout), 1, 3600},
    {"link-grace", G_STRUCT_OFFSET(GwConfig, link_grace), 1, 3600},
    {"link-reattach-interval", G_STRUCT_OFFSET(GwConfig, link_reattach_interval), 0, 3600},
};

/* Warnings (unknown keys) are expected; a critical is a finding. */
static void
fuzz_log(const gchar *domain, GLogLevelFlags level, const gchar *message, gpointer user_data)
{
    FUZZ_CHECK((level & (G_LOG_LEVEL_CRITICAL | G_LOG_LEVEL_ERROR)) == 0);
}

static gchar *fuzz_dir = NULL;

static void
fuzz_cleanup(void)
{
    fuzz_remove_tree(fuzz_dir);
}

static const gchar *
fuzz_path(void)
{
    static gchar *path = NULL;

    if (path == NULL) {
        g_autoptr(GError) error = NULL;
        fuzz_dir = g_dir_make_tmp("fuzz-config-XXXXXX", &error);
        if (fuzz_dir == NULL) {
            g_printerr("fuzz-config: %s\n", error->message);
            abort();
        }
        atexit(fuzz_cleanup);
        path = g_build_filename(fuzz_dir, "usbgwd.conf", NULL);
        g_log_set_default_handler(fuzz_log, NULL);
    }
    return path;
}

static void
fuzz_check_loaded(GwConfig *config, GKeyFile *oracle)
{
    for (guint i = 0; i < G_N_ELEMENTS(fuzz_strings); i++) {
        const FuzzStringKey *entry = &fuzz_strings[i];
        const gchar *got = G_STRUCT_MEMBER(gchar *, config, entry->offset);
        g_autofree gchar *want = NULL;

        if (!entry->nullable)
            FUZZ_CHECK(got != NULL && got[0] != '\0');
        if (got != NULL)
            FUZZ_CHECK(g_utf8_validate(got, -1, NULL));
        if (!g_key_file_has_key(oracle, FUZZ_GROUP, entry->key, NULL))
            continue;
        /* the file sets it: its value, never the default instead */
        want = g_key_file_get_string(oracle, FUZZ_GROUP, entry->key, NULL);
        FUZZ_CHECK(want != NULL);
        FUZZ_CHECK(g_strcmp0(got, want[0] != '\0' ? want : NULL) == 0);
    }
    for (guint i = 0; i < G_N_ELEMENTS(fuzz_numbers); i++) {
        const FuzzNumberKey *entry = &fuzz_numbers[i];
        guint got = G_STRUCT_MEMBER(guint, config, entry->offset);
        g_autofree gchar *want = NULL;

        FUZZ_CHECK(got >= entry->min && got <= entry->max);
        if (!g_key_file_has_key(oracle, FUZZ_GROUP, entry->key, NULL))
            continue;
        want = g_key_file_get_string(oracle, FUZZ_GROUP, entry->key, NULL);
        FUZZ_CHECK(want != NULL);
        FUZZ_CHECK(g_ascii_strtoull(want, NULL, 10) == got);
    }
    FUZZ_CHECK((config->spice_tls_cert == NULL) == (config->spice_tls_key == NULL));
    FUZZ_CHECK((config->spice_tls_cert == NULL) == (config->spice_tls_ca == NULL));
    /* links on: certificates given; every peer a name and an address */
    FUZZ_CHECK(config->peers != NULL);
    if (config->link_listen != NULL || config->link_peers != NULL)
        FUZZ_CHECK(config->link_cert != NULL && config->link_key != NULL &&
                   config->link_ca != NULL);
    for (guint i = 0; i < config->peers->len; i++) {
        const GwConfigPeer *peer = config->peers->pdata[i];
        FUZZ_CHECK(peer->name[0] != '\0' && strchr(peer->address, ':') != NULL);
    }
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const gchar *path = fuzz_path();
    g_autoptr(GKeyFile) oracle = g_key_file_new();
    g_autoptr(GError) error = NULL;
    GwConfig config = {0};
    gboolean parsed;

    if (!g_file_set_contents(path, (const gchar *)data, (gssize)size, &error)) {
        g_printerr("fuzz-config: %s\n", error->message);
        abort();
    }
    parsed = g_key_file_load_from_data(oracle, (const gchar *)data, size, G_KEY_FILE_NONE, NULL);
    if (gw_config_load(&config, path, &error)) {
        FUZZ_CHECK(error == NULL);
        /* what GKeyFile cannot read is not a config */
        FUZZ_CHECK(parsed);
        fuzz_check_loaded(&config, oracle);
    } else {
        FUZZ_CHECK(error != NULL);
        /* the error names the file */
        FUZZ_CHECK(g_str_has_prefix(error->message, path));
    }
    gw_config_clear(&config);
    return 0;
}
