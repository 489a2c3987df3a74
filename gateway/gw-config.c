/* Configuration file reading. */
#include "gw-config.h"

#include <gio/gio.h>

#define GW_CONFIG_GROUP "usbgwd"

typedef struct {
    const gchar *key;
    gsize offset; /* of the gchar* in GwConfig */
    const gchar *fallback;
    gboolean empty_means_none;
} GwConfigString;

static const GwConfigString gw_config_strings[] = {
    {"policy", G_STRUCT_OFFSET(GwConfig, policy_path), "/etc/usbgw/usbgw.policy", FALSE},
    {"rundir", G_STRUCT_OFFSET(GwConfig, rundir), "/run/usbgw", FALSE},
    {"control-socket", G_STRUCT_OFFSET(GwConfig, control_socket), "/run/usbgw/control.sock", FALSE},
    {"state", G_STRUCT_OFFSET(GwConfig, state_path), "/var/lib/usbgw/state.json", FALSE},
    {"audit-log", G_STRUCT_OFFSET(GwConfig, audit_log), "/var/log/usbgw/audit.log", TRUE},
    {"libvirt-uri", G_STRUCT_OFFSET(GwConfig, libvirt_uri), "qemu:///system", TRUE},
    {"tcp-address", G_STRUCT_OFFSET(GwConfig, tcp_address), "127.0.0.1", FALSE},
    {"socket-user", G_STRUCT_OFFSET(GwConfig, socket_user), NULL, TRUE},
    {"socket-group", G_STRUCT_OFFSET(GwConfig, socket_group), NULL, TRUE},
};

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
    config->tcp_port_base = 0;
    if (!g_key_file_load_from_file(keyfile, path, G_KEY_FILE_NONE, &local_error)) {
        if (g_error_matches(local_error, G_FILE_ERROR, G_FILE_ERROR_NOENT))
            return TRUE;
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
        if (g_strcmp0(keys[i], "tcp-port-base") == 0) {
            guint64 port = 0;
            known = TRUE;
            if (!g_ascii_string_to_unsigned(value, 10, 0, G_MAXUINT16, &port, NULL)) {
                g_set_error(error, G_KEY_FILE_ERROR, G_KEY_FILE_ERROR_INVALID_VALUE,
                            "%s: [%s] tcp-port-base=%s: expected a port number (0 = no TCP)", path,
                            GW_CONFIG_GROUP, value);
                return FALSE;
            }
            config->tcp_port_base = (guint16)port;
        }
        if (!known)
            g_warning("%s: unknown key '%s' in [%s] ignored", path, keys[i], GW_CONFIG_GROUP);
    }
    return TRUE;
}

void
gw_config_copy(GwConfig *dest, const GwConfig *src)
{
    for (guint i = 0; i < G_N_ELEMENTS(gw_config_strings); i++)
        *gw_config_slot(dest, &gw_config_strings[i]) =
            g_strdup(*gw_config_slot((GwConfig *)src, &gw_config_strings[i]));
    dest->tcp_port_base = src->tcp_port_base;
}

void
gw_config_clear(GwConfig *config)
{
    for (guint i = 0; i < G_N_ELEMENTS(gw_config_strings); i++)
        g_clear_pointer(gw_config_slot(config, &gw_config_strings[i]), g_free);
}
