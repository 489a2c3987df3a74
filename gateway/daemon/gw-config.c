/* Configuration file reading. */
#include "gw-config.h"

#include <gio/gio.h>

#include "gw-control.h"

#define GW_CONFIG_GROUP "usbgwd"

typedef struct {
    const gchar *key;
    gsize offset; /* of the gchar* in GwConfig */
    const gchar *fallback;
    gboolean empty_means_none;
} GwConfigString;

static const GwConfigString gw_config_strings[] = {
    {"policy", G_STRUCT_OFFSET(GwConfig, policy_path), GW_DEFAULT_POLICY_PATH, FALSE},
    {"rundir", G_STRUCT_OFFSET(GwConfig, rundir), GW_DEFAULT_RUNDIR, FALSE},
    {"control-socket", G_STRUCT_OFFSET(GwConfig, control_socket), GW_DEFAULT_CONTROL_SOCKET, FALSE},
    {"state", G_STRUCT_OFFSET(GwConfig, state_path), GW_DEFAULT_STATE_PATH, FALSE},
    {"audit-log", G_STRUCT_OFFSET(GwConfig, audit_log), GW_DEFAULT_AUDIT_LOG, TRUE},
    {"libvirt-uri", G_STRUCT_OFFSET(GwConfig, libvirt_uri), "qemu:///system", TRUE},
    {"tcp-address", G_STRUCT_OFFSET(GwConfig, tcp_address), "127.0.0.1", FALSE},
    {"socket-user", G_STRUCT_OFFSET(GwConfig, socket_user), NULL, TRUE},
    {"socket-group", G_STRUCT_OFFSET(GwConfig, socket_group), NULL, TRUE},
    {"spice-address", G_STRUCT_OFFSET(GwConfig, spice_address), "127.0.0.1", FALSE},
    {"spice-host", G_STRUCT_OFFSET(GwConfig, spice_host), NULL, TRUE},
    {"spice-worker", G_STRUCT_OFFSET(GwConfig, spice_worker), GW_CONFIG_SPICE_WORKER, FALSE},
    {"spice-user", G_STRUCT_OFFSET(GwConfig, spice_user), "nobody", FALSE},
    {"spice-uid-range", G_STRUCT_OFFSET(GwConfig, spice_uid_range), GW_CONFIG_SPICE_UID_RANGE,
     TRUE},
    {"spice-tls-cert", G_STRUCT_OFFSET(GwConfig, spice_tls_cert), NULL, TRUE},
    {"spice-tls-key", G_STRUCT_OFFSET(GwConfig, spice_tls_key), NULL, TRUE},
    {"spice-tls-ca", G_STRUCT_OFFSET(GwConfig, spice_tls_ca), NULL, TRUE},
};

typedef struct {
    const gchar *key;
    gsize offset; /* of the guint in GwConfig */
    guint fallback;
    guint min, max;
    const gchar *expected;
} GwConfigNumber;

static const GwConfigNumber gw_config_numbers[] = {
    {"tcp-port-base", G_STRUCT_OFFSET(GwConfig, tcp_port_base), 0, 0, G_MAXUINT16,
     "a port number (0 = no TCP)"},
    {"spice-port-base", G_STRUCT_OFFSET(GwConfig, spice_port_base), 0, 0, G_MAXUINT16,
     "a port number (0 = no SPICE ingress)"},
    {"spice-ports", G_STRUCT_OFFSET(GwConfig, spice_ports), 16, 1, 1024,
     "how many ports shares may use, 1 to 1024"},
    {"spice-channels", G_STRUCT_OFFSET(GwConfig, spice_channels), 4, 1, 32,
     "devices one client may lend at once, 1 to 32"},
    {"share-ttl", G_STRUCT_OFFSET(GwConfig, share_ttl), 600, 1, 7 * 24 * 3600,
     "seconds a share's ticket waits for its first use, 1 to 604800"},
    {"control-max-clients", G_STRUCT_OFFSET(GwConfig, control_max_clients),
     GW_CONTROL_DEFAULT_MAX_CLIENTS, 1, 1024,
     "connections of users outside group " GW_CONTROL_ADMIN_GROUP ", 1 to 1024"},
    {"control-max-per-user", G_STRUCT_OFFSET(GwConfig, control_max_per_user),
     GW_CONTROL_DEFAULT_MAX_PER_USER, 1, 1024, "connections of one such user, 1 to 1024"},
    {"control-idle-timeout", G_STRUCT_OFFSET(GwConfig, control_idle_timeout),
     GW_CONTROL_DEFAULT_IDLE_TIMEOUT, 1, 3600,
     "seconds a control connection may go without a complete request, 1 to 3600"},
};

/* (uid_t)-1 means "unchanged" to setuid(); 0 is root. */
#define GW_CONFIG_UID_MAX 4294967294U

/* spice-uid-range=START-END, 1 <= START <= END <= 4294967294. */
static gboolean
gw_config_parse_uid_range(GwConfig *config, const gchar *path, GError **error)
{
    g_auto(GStrv) parts = NULL;
    guint64 first = 0, last = 0;

    config->spice_uid_first = config->spice_uid_last = 0;
    if (config->spice_uid_range == NULL)
        return TRUE;
    parts = g_strsplit(config->spice_uid_range, "-", 3);
    if (g_strv_length(parts) != 2 ||
        !g_ascii_string_to_unsigned(parts[0], 10, 1, GW_CONFIG_UID_MAX, &first, NULL) ||
        !g_ascii_string_to_unsigned(parts[1], 10, first, GW_CONFIG_UID_MAX, &last, NULL)) {
        g_set_error(error, G_KEY_FILE_ERROR, G_KEY_FILE_ERROR_INVALID_VALUE,
                    "%s: [%s] spice-uid-range=%s: expected START-END, 1 <= START <= END <= %u",
                    path, GW_CONFIG_GROUP, config->spice_uid_range, GW_CONFIG_UID_MAX);
        return FALSE;
    }
    config->spice_uid_first = (guint)first;
    config->spice_uid_last = (guint)last;
    return TRUE;
}

static gchar **
gw_config_slot(GwConfig *config, const GwConfigString *entry)
{
    return G_STRUCT_MEMBER_P(config, entry->offset);
}

gboolean
gw_config_load(GwConfig *config, const gchar *path, GError **error)
{
    g_autoptr(GKeyFile) keyfile = g_key_file_new();
    g_autoptr(GError) local_error = NULL;
    g_auto(GStrv) keys = NULL;

    for (guint i = 0; i < G_N_ELEMENTS(gw_config_strings); i++)
        *gw_config_slot(config, &gw_config_strings[i]) = g_strdup(gw_config_strings[i].fallback);
    for (guint i = 0; i < G_N_ELEMENTS(gw_config_numbers); i++)
        G_STRUCT_MEMBER(guint, config, gw_config_numbers[i].offset) = gw_config_numbers[i].fallback;
    if (!g_key_file_load_from_file(keyfile, path, G_KEY_FILE_NONE, &local_error)) {
        if (g_error_matches(local_error, G_FILE_ERROR, G_FILE_ERROR_NOENT))
            return gw_config_parse_uid_range(config, path, error);
        g_set_error(error, local_error->domain, local_error->code, "%s: %s", path,
                    local_error->message);
        return FALSE;
    }
    keys = g_key_file_get_keys(keyfile, GW_CONFIG_GROUP, NULL, NULL);
    for (guint i = 0; keys != NULL && keys[i] != NULL; i++) {
        g_autofree gchar *value = g_key_file_get_string(keyfile, GW_CONFIG_GROUP, keys[i], NULL);
        gboolean known = FALSE;

        if (value == NULL)
            continue;
        for (guint k = 0; k < G_N_ELEMENTS(gw_config_strings); k++) {
            const GwConfigString *entry = &gw_config_strings[k];
            gchar **slot = gw_config_slot(config, entry);
            if (g_strcmp0(keys[i], entry->key) != 0)
                continue;
            known = TRUE;
            if (value[0] == '\0' && !entry->empty_means_none) {
                g_set_error(error, G_KEY_FILE_ERROR, G_KEY_FILE_ERROR_INVALID_VALUE,
                            "%s: [%s] %s must not be empty", path, GW_CONFIG_GROUP, entry->key);
                return FALSE;
            }
            g_free(*slot);
            *slot = value[0] != '\0' ? g_steal_pointer(&value) : NULL;
        }
        for (guint k = 0; k < G_N_ELEMENTS(gw_config_numbers); k++) {
            const GwConfigNumber *entry = &gw_config_numbers[k];
            guint64 number = 0;
            if (value == NULL || g_strcmp0(keys[i], entry->key) != 0)
                continue;
            known = TRUE;
            if (!g_ascii_string_to_unsigned(value, 10, entry->min, entry->max, &number, NULL)) {
                g_set_error(error, G_KEY_FILE_ERROR, G_KEY_FILE_ERROR_INVALID_VALUE,
                            "%s: [%s] %s=%s: expected %s", path, GW_CONFIG_GROUP, entry->key, value,
                            entry->expected);
                return FALSE;
            }
            G_STRUCT_MEMBER(guint, config, entry->offset) = (guint)number;
        }
        if (!known)
            g_warning("%s: unknown key '%s' in [%s] ignored", path, keys[i], GW_CONFIG_GROUP);
    }
    if ((config->spice_tls_cert != NULL) != (config->spice_tls_key != NULL) ||
        (config->spice_tls_cert != NULL) != (config->spice_tls_ca != NULL)) {
        g_set_error(error, G_KEY_FILE_ERROR, G_KEY_FILE_ERROR_INVALID_VALUE,
                    "%s: [%s] spice-tls-cert, spice-tls-key and spice-tls-ca go together "
                    "(set all three for TLS, or none)",
                    path, GW_CONFIG_GROUP);
        return FALSE;
    }
    return gw_config_parse_uid_range(config, path, error);
}

void
gw_config_copy(GwConfig *dest, const GwConfig *src)
{
    for (guint i = 0; i < G_N_ELEMENTS(gw_config_strings); i++)
        *gw_config_slot(dest, &gw_config_strings[i]) =
            g_strdup(*gw_config_slot((GwConfig *)src, &gw_config_strings[i]));
    for (guint i = 0; i < G_N_ELEMENTS(gw_config_numbers); i++)
        G_STRUCT_MEMBER(guint, dest, gw_config_numbers[i].offset) =
            G_STRUCT_MEMBER(guint, (GwConfig *)src, gw_config_numbers[i].offset);
    dest->spice_uid_first = src->spice_uid_first;
    dest->spice_uid_last = src->spice_uid_last;
}

void
gw_config_clear(GwConfig *config)
{
    for (guint i = 0; i < G_N_ELEMENTS(gw_config_strings); i++)
        g_clear_pointer(gw_config_slot(config, &gw_config_strings[i]), g_free);
}
