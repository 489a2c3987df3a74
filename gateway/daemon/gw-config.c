/* Configuration file reading. */
#include "gw-config.h"

#include <string.h>
#include <gio/gio.h>

#include "gw-control.h"
#include "policy.h"

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
    {"socket-user", G_STRUCT_OFFSET(GwConfig, socket_user), NULL, TRUE},
    {"socket-group", G_STRUCT_OFFSET(GwConfig, socket_group), NULL, TRUE},
    {"vm-pid-file", G_STRUCT_OFFSET(GwConfig, vm_pid_file), GW_DEFAULT_VM_PID_FILE, FALSE},
    {"spice-address", G_STRUCT_OFFSET(GwConfig, spice_address), "127.0.0.1", FALSE},
    {"spice-host", G_STRUCT_OFFSET(GwConfig, spice_host), NULL, TRUE},
    {"spice-worker", G_STRUCT_OFFSET(GwConfig, spice_worker), GW_CONFIG_SPICE_WORKER, FALSE},
    {"spice-user", G_STRUCT_OFFSET(GwConfig, spice_user), "nobody", FALSE},
    {"spice-uid-range", G_STRUCT_OFFSET(GwConfig, spice_uid_range), GW_CONFIG_SPICE_UID_RANGE,
     TRUE},
    {"spice-tls-cert", G_STRUCT_OFFSET(GwConfig, spice_tls_cert), NULL, TRUE},
    {"spice-tls-key", G_STRUCT_OFFSET(GwConfig, spice_tls_key), NULL, TRUE},
    {"spice-tls-ca", G_STRUCT_OFFSET(GwConfig, spice_tls_ca), NULL, TRUE},
    {"link-listen", G_STRUCT_OFFSET(GwConfig, link_listen), NULL, TRUE},
    {"link-cert", G_STRUCT_OFFSET(GwConfig, link_cert), NULL, TRUE},
    {"link-key", G_STRUCT_OFFSET(GwConfig, link_key), NULL, TRUE},
    {"link-ca", G_STRUCT_OFFSET(GwConfig, link_ca), NULL, TRUE},
    {"link-peers", G_STRUCT_OFFSET(GwConfig, link_peers), NULL, TRUE},
    {"migration-peers", G_STRUCT_OFFSET(GwConfig, migration_peers), NULL, TRUE},
    {"metrics-listen", G_STRUCT_OFFSET(GwConfig, metrics_listen), NULL, TRUE},
    {"cluster-etcd", G_STRUCT_OFFSET(GwConfig, cluster_etcd), NULL, TRUE},
    {"cluster-etcd-cert", G_STRUCT_OFFSET(GwConfig, cluster_etcd_cert), NULL, TRUE},
    {"cluster-etcd-key", G_STRUCT_OFFSET(GwConfig, cluster_etcd_key), NULL, TRUE},
    {"cluster-etcd-ca", G_STRUCT_OFFSET(GwConfig, cluster_etcd_ca), NULL, TRUE},
    {"cluster-address", G_STRUCT_OFFSET(GwConfig, cluster_address), NULL, TRUE},
};

typedef struct {
    const gchar *key;
    gsize offset; /* of the guint in GwConfig */
    guint fallback;
    guint min, max;
    const gchar *expected;
} GwConfigNumber;

static const GwConfigNumber gw_config_numbers[] = {
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
    {"share-max-life", G_STRUCT_OFFSET(GwConfig, share_max_life), 12 * 3600, 1, 30 * 24 * 3600,
     "seconds a share lasts after its first use, 1 to 2592000"},
    {"link-grace", G_STRUCT_OFFSET(GwConfig, link_grace), 10, 1, 3600,
     "seconds a lost link is hidden from the guests, 1 to 3600"},
    {"link-reattach-interval", G_STRUCT_OFFSET(GwConfig, link_reattach_interval), 30, 0, 3600,
     "seconds between an imported device's session lost with its link and the next, 0 to 3600"},
    {"cluster-ttl", G_STRUCT_OFFSET(GwConfig, cluster_ttl), 10, 2, 300,
     "seconds of the gateway's etcd lease, 2 to 300"},
};

/* vm-peer-check values, in GwVmPeerCheck order. */
static const gchar *const gw_config_peer_checks[] = {
    [GW_VM_PEER_CHECK_PID_FILE] = "pid-file",
    [GW_VM_PEER_CHECK_UID] = "uid",
};

static gboolean
gw_config_parse_peer_check(GwConfig *config, const gchar *path, const gchar *value, GError **error)
{
    for (guint i = 0; i < G_N_ELEMENTS(gw_config_peer_checks); i++) {
        if (g_strcmp0(value, gw_config_peer_checks[i]) == 0) {
            config->vm_peer_check = (GwVmPeerCheck)i;
            return TRUE;
        }
    }
    g_set_error(error, G_KEY_FILE_ERROR, G_KEY_FILE_ERROR_INVALID_VALUE,
                "%s: [%s] vm-peer-check=%s: expected pid-file (the VM's QEMU only) or uid "
                "(any process of socket-user)",
                path, GW_CONFIG_GROUP, value);
    return FALSE;
}

typedef struct {
    const gchar *key;
    gsize offset; /* of the gboolean in GwConfig */
    gboolean fallback;
} GwConfigSwitch;

static const GwConfigSwitch gw_config_switches[] = {
    {"spice-allow-plain-network", G_STRUCT_OFFSET(GwConfig, spice_allow_plain_network), FALSE},
    {"add-usb-controller", G_STRUCT_OFFSET(GwConfig, add_usb_controller), FALSE},
};

/* Whether @address (spice-address: an IP address or a host name) only
 * listens on this host: a loopback IP address or "localhost". */
static gboolean
gw_config_address_is_loopback(const gchar *address)
{
    g_autoptr(GInetAddress) inet = g_inet_address_new_from_string(address);

    if (inet == NULL)
        return g_ascii_strcasecmp(address, "localhost") == 0;
    return g_inet_address_get_is_loopback(inet);
}

/* The raw TCP listener per device (tcp-address, tcp-port-base,
 * tcp-insecure) is gone: devices cross hosts over gateway links. A file
 * that still turns it on is refused, so the admin learns why the port
 * stays closed; its "off" values (the old shipped file) only warn. */
static gboolean
gw_config_removed_tcp(const gchar *path, const gchar *key, const gchar *value, GError **error)
{
    if (g_strcmp0(key, "tcp-port-base") == 0 && g_strcmp0(value, "0") != 0) {
        g_set_error(error, G_KEY_FILE_ERROR, G_KEY_FILE_ERROR_INVALID_VALUE,
                    "%s: [%s] tcp-port-base=%s: the raw TCP listener was removed; devices "
                    "cross hosts over gateway links (link-listen, link-peers: docs/links.md)",
                    path, GW_CONFIG_GROUP, value);
        return FALSE;
    }
    g_warning("%s: [%s] %s is no longer used (the raw TCP listener was removed; see link-listen)",
              path, GW_CONFIG_GROUP, key);
    return TRUE;
}

static void
gw_config_peer_free(gpointer data)
{
    GwConfigPeer *peer = data;

    g_free(peer->name);
    g_free(peer->address);
    g_free(peer);
}

/* link-peers=NAME@HOST:PORT;… and the certificates links need. */
static gboolean
gw_config_check_links(GwConfig *config, const gchar *path, GError **error)
{
    g_auto(GStrv) entries = NULL;

    g_clear_pointer(&config->peers, g_ptr_array_unref);
    config->peers = g_ptr_array_new_with_free_func(gw_config_peer_free);
    if (config->link_listen == NULL && config->link_peers == NULL)
        return TRUE;
    if (config->link_cert == NULL || config->link_key == NULL || config->link_ca == NULL) {
        g_set_error(error, G_KEY_FILE_ERROR, G_KEY_FILE_ERROR_INVALID_VALUE,
                    "%s: [%s] gateway links (link-listen, link-peers) need link-cert, link-key "
                    "and link-ca",
                    path, GW_CONFIG_GROUP);
        return FALSE;
    }
    if (config->link_listen != NULL && strrchr(config->link_listen, ':') == NULL) {
        g_set_error(error, G_KEY_FILE_ERROR, G_KEY_FILE_ERROR_INVALID_VALUE,
                    "%s: [%s] link-listen=%s: expected ADDRESS:PORT", path, GW_CONFIG_GROUP,
                    config->link_listen);
        return FALSE;
    }
    entries = g_strsplit(config->link_peers != NULL ? config->link_peers : "", ";", -1);
    for (guint i = 0; entries[i] != NULL; i++) {
        g_autofree gchar *entry = g_strstrip(g_strdup(entries[i]));
        const gchar *at = strchr(entry, '@');
        g_autofree gchar *name = NULL;
        GwConfigPeer *peer;

        if (entry[0] == '\0')
            continue;
        name = at != NULL ? g_strndup(entry, at - entry) : NULL;
        if (at == NULL || !policy_gateway_name_is_valid(name) || strrchr(at + 1, ':') == NULL ||
            at[1] == ':') {
            g_set_error(error, G_KEY_FILE_ERROR, G_KEY_FILE_ERROR_INVALID_VALUE,
                        "%s: [%s] link-peers: '%s': expected NAME@HOST:PORT (NAME: letters, "
                        "digits, '.', '_', '-', at most 64)",
                        path, GW_CONFIG_GROUP, entry);
            return FALSE;
        }
        for (guint k = 0; k < config->peers->len; k++) {
            if (g_strcmp0(((GwConfigPeer *)config->peers->pdata[k])->name, name) == 0) {
                g_set_error(error, G_KEY_FILE_ERROR, G_KEY_FILE_ERROR_INVALID_VALUE,
                            "%s: [%s] link-peers: gateway '%s' is listed twice", path,
                            GW_CONFIG_GROUP, name);
                return FALSE;
            }
        }
        peer = g_new0(GwConfigPeer, 1);
        peer->name = g_steal_pointer(&name);
        peer->address = g_strdup(at + 1);
        g_ptr_array_add(config->peers, peer);
    }
    return TRUE;
}

/* cluster-etcd=URL,… and what cluster mode needs: links (the gateway's
 * name is its link certificate's; other gateways dial its link-listen),
 * the address others dial, both halves of a client certificate. */
static gboolean
gw_config_check_cluster(GwConfig *config, const gchar *path, GError **error)
{
    g_auto(GStrv) urls = NULL;
    const gchar *host_end;

    if (config->cluster_etcd == NULL)
        return TRUE;
    urls = g_strsplit(config->cluster_etcd, ",", -1);
    for (guint i = 0; urls[i] != NULL; i++) {
        const gchar *url = g_strstrip(urls[i]);
        if (!g_str_has_prefix(url, "https://") && !g_str_has_prefix(url, "http://")) {
            g_set_error(error, G_KEY_FILE_ERROR, G_KEY_FILE_ERROR_INVALID_VALUE,
                        "%s: [%s] cluster-etcd: '%s': expected https://HOST:PORT (or http://)",
                        path, GW_CONFIG_GROUP, url);
            return FALSE;
        }
    }
    if (config->link_listen == NULL) {
        g_set_error(error, G_KEY_FILE_ERROR, G_KEY_FILE_ERROR_INVALID_VALUE,
                    "%s: [%s] cluster-etcd needs gateway links: link-listen, link-cert, link-key "
                    "and link-ca",
                    path, GW_CONFIG_GROUP);
        return FALSE;
    }
    if ((config->cluster_etcd_cert == NULL) != (config->cluster_etcd_key == NULL)) {
        g_set_error(error, G_KEY_FILE_ERROR, G_KEY_FILE_ERROR_INVALID_VALUE,
                    "%s: [%s] cluster-etcd-cert and cluster-etcd-key go together", path,
                    GW_CONFIG_GROUP);
        return FALSE;
    }
    if (config->cluster_address == NULL) {
        /* link-listen is the address others dial unless it is a wildcard */
        host_end = strrchr(config->link_listen, ':');
        if (host_end == config->link_listen || g_str_has_prefix(config->link_listen, "0.0.0.0:") ||
            g_str_has_prefix(config->link_listen, "[::]:") ||
            g_str_has_prefix(config->link_listen, "*:")) {
            g_set_error(error, G_KEY_FILE_ERROR, G_KEY_FILE_ERROR_INVALID_VALUE,
                        "%s: [%s] link-listen=%s listens on every address: set cluster-address "
                        "to the HOST:PORT other gateways dial",
                        path, GW_CONFIG_GROUP, config->link_listen);
            return FALSE;
        }
        config->cluster_address = g_strdup(config->link_listen);
    } else if (strrchr(config->cluster_address, ':') == NULL || config->cluster_address[0] == ':') {
        g_set_error(error, G_KEY_FILE_ERROR, G_KEY_FILE_ERROR_INVALID_VALUE,
                    "%s: [%s] cluster-address=%s: expected HOST:PORT", path, GW_CONFIG_GROUP,
                    config->cluster_address);
        return FALSE;
    }
    return TRUE;
}

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
    config->vm_peer_check = GW_VM_PEER_CHECK_PID_FILE;
    for (guint i = 0; i < G_N_ELEMENTS(gw_config_switches); i++)
        G_STRUCT_MEMBER(gboolean, config, gw_config_switches[i].offset) =
            gw_config_switches[i].fallback;
    if (!g_key_file_load_from_file(keyfile, path, G_KEY_FILE_NONE, &local_error)) {
        if (g_error_matches(local_error, G_FILE_ERROR, G_FILE_ERROR_NOENT))
            return gw_config_check_links(config, path, error) &&
                   gw_config_check_cluster(config, path, error) &&
                   gw_config_parse_uid_range(config, path, error);
        g_set_error(error, local_error->domain, local_error->code, "%s: %s", path,
                    local_error->message);
        return FALSE;
    }
    keys = g_key_file_get_keys(keyfile, GW_CONFIG_GROUP, NULL, NULL);
    for (guint i = 0; keys != NULL && keys[i] != NULL; i++) {
        g_autoptr(GError) value_error = NULL;
        g_autofree gchar *value =
            g_key_file_get_string(keyfile, GW_CONFIG_GROUP, keys[i], &value_error);
        gboolean known = FALSE;

        if (value == NULL) {
            /* a bad escape or invalid UTF-8: never fall back to the default */
            g_set_error(error, G_KEY_FILE_ERROR, G_KEY_FILE_ERROR_INVALID_VALUE, "%s: [%s] %s: %s",
                        path, GW_CONFIG_GROUP, keys[i], value_error->message);
            return FALSE;
        }
        if (g_str_has_prefix(keys[i], "tcp-")) {
            if (!gw_config_removed_tcp(path, keys[i], value, error))
                return FALSE;
            continue;
        }
        if (g_strcmp0(keys[i], "vm-peer-check") == 0) {
            if (!gw_config_parse_peer_check(config, path, value, error))
                return FALSE;
            continue;
        }
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
        for (guint k = 0; k < G_N_ELEMENTS(gw_config_switches); k++) {
            const GwConfigSwitch *entry = &gw_config_switches[k];
            g_autoptr(GError) bool_error = NULL;
            gboolean on;
            if (value == NULL || g_strcmp0(keys[i], entry->key) != 0)
                continue;
            known = TRUE;
            on = g_key_file_get_boolean(keyfile, GW_CONFIG_GROUP, entry->key, &bool_error);
            if (bool_error != NULL) {
                g_set_error(error, G_KEY_FILE_ERROR, G_KEY_FILE_ERROR_INVALID_VALUE,
                            "%s: [%s] %s=%s: expected true or false", path, GW_CONFIG_GROUP,
                            entry->key, value);
                return FALSE;
            }
            G_STRUCT_MEMBER(gboolean, config, entry->offset) = on;
        }
        if (!known)
            g_warning("%s: unknown key '%s' in [%s] ignored", path, keys[i], GW_CONFIG_GROUP);
    }
    if (!g_path_is_absolute(config->vm_pid_file) ||
        strstr(config->vm_pid_file, GW_VM_SOCKET_PID_FILE_VM) == NULL) {
        g_set_error(error, G_KEY_FILE_ERROR, G_KEY_FILE_ERROR_INVALID_VALUE,
                    "%s: [%s] vm-pid-file=%s: expected an absolute path with %s for the VM's "
                    "name (libvirt: %s)",
                    path, GW_CONFIG_GROUP, config->vm_pid_file, GW_VM_SOCKET_PID_FILE_VM,
                    GW_DEFAULT_VM_PID_FILE);
        return FALSE;
    }
    if ((config->spice_tls_cert != NULL) != (config->spice_tls_key != NULL) ||
        (config->spice_tls_cert != NULL) != (config->spice_tls_ca != NULL)) {
        g_set_error(error, G_KEY_FILE_ERROR, G_KEY_FILE_ERROR_INVALID_VALUE,
                    "%s: [%s] spice-tls-cert, spice-tls-key and spice-tls-ca go together "
                    "(set all three for TLS, or none)",
                    path, GW_CONFIG_GROUP);
        return FALSE;
    }
    if (!gw_config_check_links(config, path, error) ||
        !gw_config_check_cluster(config, path, error))
        return FALSE;
    if (config->spice_port_base != 0 && config->spice_tls_cert == NULL &&
        !config->spice_allow_plain_network &&
        !gw_config_address_is_loopback(config->spice_address)) {
        g_set_error(error, G_KEY_FILE_ERROR, G_KEY_FILE_ERROR_INVALID_VALUE,
                    "%s: [%s] spice-address=%s is not a loopback address and shares have no TLS: "
                    "tickets and lent devices would cross the network in clear; set "
                    "spice-tls-cert, spice-tls-key and spice-tls-ca (or "
                    "spice-allow-plain-network=true to accept that)",
                    path, GW_CONFIG_GROUP, config->spice_address);
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
    dest->vm_peer_check = src->vm_peer_check;
    for (guint i = 0; i < G_N_ELEMENTS(gw_config_switches); i++)
        G_STRUCT_MEMBER(gboolean, dest, gw_config_switches[i].offset) =
            G_STRUCT_MEMBER(gboolean, (GwConfig *)src, gw_config_switches[i].offset);
    dest->spice_uid_first = src->spice_uid_first;
    dest->spice_uid_last = src->spice_uid_last;
    dest->peers = g_ptr_array_new_with_free_func(gw_config_peer_free);
    for (guint i = 0; src->peers != NULL && i < src->peers->len; i++) {
        const GwConfigPeer *from = src->peers->pdata[i];
        GwConfigPeer *peer = g_new0(GwConfigPeer, 1);
        peer->name = g_strdup(from->name);
        peer->address = g_strdup(from->address);
        g_ptr_array_add(dest->peers, peer);
    }
}

void
gw_config_clear(GwConfig *config)
{
    for (guint i = 0; i < G_N_ELEMENTS(gw_config_strings); i++)
        g_clear_pointer(gw_config_slot(config, &gw_config_strings[i]), g_free);
    g_clear_pointer(&config->peers, g_ptr_array_unref);
}
