/* Inventory and policy on arrival: which present device is served on which
 * attachment socket. */
#include "gw-daemon.h"

#include <gio/gio.h>
#include <string.h>

#include "gw-attachment.h"
#include "gw-device.h"
#include "gw-usb.h"

#define GW_DAEMON_DEFAULT_POLICY      "/etc/usbgw/usbgw.policy"
#define GW_DAEMON_DEFAULT_RUNDIR      "/run/usbgw"
#define GW_DAEMON_CONFIG_GROUP        "usbgwd"
#define GW_DAEMON_DEFAULT_TCP_ADDRESS "127.0.0.1"

typedef struct {
    PolicyDevice *desc;       /* owned */
    gchar *identity;          /* owned */
    GwAttachment *attachment; /* borrowed from GwDaemon.attachments, nullable */
} GwDaemonDevice;

struct _GwDaemon {
    GwDaemonConfig config;
    GwUsb *usb;              /* owned */
    Policy *policy;          /* owned */
    GHashTable *devices;     /* libusb_device* (owned ref) → GwDaemonDevice */
    GHashTable *attachments; /* "<vm>/<slot>" → GwAttachment */
    guint next_tcp_port;     /* the next attachment's TCP port, 0 when TCP is off */
};

gboolean
gw_daemon_config_load(GwDaemonConfig *config, const gchar *path, GError **error)
{
    g_autoptr(GKeyFile) keyfile = g_key_file_new();
    g_autoptr(GError) local_error = NULL;
    g_auto(GStrv) keys = NULL;

    config->policy_path = g_strdup(GW_DAEMON_DEFAULT_POLICY);
    config->rundir = g_strdup(GW_DAEMON_DEFAULT_RUNDIR);
    config->tcp_address = g_strdup(GW_DAEMON_DEFAULT_TCP_ADDRESS);
    if (!g_key_file_load_from_file(keyfile, path, G_KEY_FILE_NONE, &local_error)) {
        if (g_error_matches(local_error, G_FILE_ERROR, G_FILE_ERROR_NOENT))
            return TRUE;
        g_set_error(error, local_error->domain, local_error->code, "%s: %s", path,
                    local_error->message);
        return FALSE;
    }
    keys = g_key_file_get_keys(keyfile, GW_DAEMON_CONFIG_GROUP, NULL, NULL);
    for (guint i = 0; keys != NULL && keys[i] != NULL; i++) {
        g_autofree gchar *value =
            g_key_file_get_string(keyfile, GW_DAEMON_CONFIG_GROUP, keys[i], NULL);
        if (g_strcmp0(keys[i], "policy") == 0) {
            g_free(config->policy_path);
            config->policy_path = g_steal_pointer(&value);
        } else if (g_strcmp0(keys[i], "rundir") == 0) {
            g_free(config->rundir);
            config->rundir = g_steal_pointer(&value);
        } else if (g_strcmp0(keys[i], "tcp-address") == 0) {
            g_free(config->tcp_address);
            config->tcp_address = g_steal_pointer(&value);
        } else if (g_strcmp0(keys[i], "tcp-port-base") == 0) {
            guint64 port = 0;
            if (!g_ascii_string_to_unsigned(value, 10, 0, G_MAXUINT16, &port, NULL)) {
                g_set_error(error, G_KEY_FILE_ERROR, G_KEY_FILE_ERROR_INVALID_VALUE,
                            "%s: [%s] tcp-port-base=%s: expected a port number (0 = no TCP)", path,
                            GW_DAEMON_CONFIG_GROUP, value);
                return FALSE;
            }
            config->tcp_port_base = (guint16)port;
        } else
            g_warning("%s: unknown key '%s' in [%s] ignored", path, keys[i],
                      GW_DAEMON_CONFIG_GROUP);
    }
    return TRUE;
}

void
gw_daemon_config_clear(GwDaemonConfig *config)
{
    g_clear_pointer(&config->policy_path, g_free);
    g_clear_pointer(&config->rundir, g_free);
    g_clear_pointer(&config->tcp_address, g_free);
}

static void
gw_daemon_device_free(gpointer data)
{
    GwDaemonDevice *entry = data;
    policy_device_free(entry->desc);
    g_free(entry->identity);
    g_free(entry);
}

/* Literal VM names and UUIDs name a VM now; globs and pools need libvirt
 * to say which VM runs (not wired yet), so they get no socket here. */
static gchar *
gw_daemon_target_dir(const PolicyDecision *decision)
{
    switch (decision->target_kind) {
    case POLICY_TARGET_VM:
        if (strpbrk(decision->target, "*?/") != NULL || decision->target[0] == '.')
            return NULL;
        return g_strdup(decision->target);
    case POLICY_TARGET_VM_UUID:
        return g_strdup(decision->target);
    case POLICY_TARGET_POOL:
    case POLICY_TARGET_NONE:
        break;
    }
    return NULL;
}

static void
gw_daemon_device_arrived(GwDaemon *daemon, libusb_device *device)
{
    g_autoptr(GError) error = NULL;
    g_autoptr(PolicyDevice) desc = gw_device_describe(device, &error);
    PolicyDecision decision;
    GwDaemonDevice *entry;
    g_autofree gchar *vm_dir = NULL;
    g_autofree gchar *slot = NULL;
    g_autofree gchar *key = NULL;
    GwAttachment *attachment;

    if (desc == NULL) {
        g_autofree gchar *port = gw_device_port_path(device);
        g_warning("device at %s ignored: %s", port, error->message);
        return;
    }
    entry = g_new0(GwDaemonDevice, 1);
    entry->identity = gw_device_identity(desc);
    entry->desc = policy_device_copy(desc);
    g_hash_table_replace(daemon->devices, libusb_ref_device(device), entry);

    policy_decide(daemon->policy, POLICY_ORIGIN_HOST, desc, NULL, &decision);
    switch (decision.verdict) {
    case POLICY_VERDICT_NONE:
        g_info("%s arrived: no rule, left to the host", entry->identity);
        return;
    case POLICY_VERDICT_DENY:
        g_message("%s arrived: denied by %s:%u, left to the host", entry->identity, decision.file,
                  decision.line);
        return;
    case POLICY_VERDICT_SHARE:
        return;
    case POLICY_VERDICT_ASSIGN:
        break;
    }
    vm_dir = gw_daemon_target_dir(&decision);
    if (vm_dir == NULL) {
        g_message("%s arrived: assigned to %s \"%s\" by %s:%u; waits for that VM to run",
                  entry->identity, policy_target_kind_to_string(decision.target_kind),
                  decision.target, decision.file, decision.line);
        return;
    }
    slot = gw_device_slot_name(desc);
    key = g_build_filename(vm_dir, slot, NULL);
    attachment = g_hash_table_lookup(daemon->attachments, key);
    if (attachment == NULL) {
        g_autofree gchar *path = NULL;
        g_autofree gchar *file = g_strconcat(slot, ".sock", NULL);
        path = g_build_filename(daemon->config.rundir, "vm", vm_dir, file, NULL);
        gboolean tcp = daemon->next_tcp_port != 0 && daemon->next_tcp_port <= G_MAXUINT16;
        attachment = gw_attachment_new(gw_usb_get_context(daemon->usb), entry->identity, path,
                                       tcp ? daemon->config.tcp_address : NULL,
                                       (guint16)daemon->next_tcp_port, &error);
        if (attachment == NULL) {
            g_warning("%s: %s", entry->identity, error->message);
            return;
        }
        g_hash_table_insert(daemon->attachments, g_steal_pointer(&key), attachment);
        if (tcp)
            daemon->next_tcp_port++;
    }
    entry->attachment = attachment;
    if (!gw_attachment_set_device(attachment, device, &error)) {
        g_warning("%s", error->message);
        return;
    }
    g_message("%s arrived: assigned to vm \"%s\" by %s:%u, served on %s", entry->identity,
              decision.target, decision.file, decision.line,
              gw_attachment_get_socket_path(attachment));
}

static void
gw_daemon_device_left(GwDaemon *daemon, libusb_device *device)
{
    GwDaemonDevice *entry = g_hash_table_lookup(daemon->devices, device);
    if (entry == NULL)
        return;
    g_message("%s left", entry->identity);
    if (entry->attachment != NULL)
        gw_attachment_device_left(entry->attachment);
    g_hash_table_remove(daemon->devices, device);
}

static void
gw_daemon_hotplug(libusb_device *device, gboolean arrived, gpointer user_data)
{
    GwDaemon *daemon = user_data;
    if (arrived)
        gw_daemon_device_arrived(daemon, device);
    else
        gw_daemon_device_left(daemon, device);
    libusb_unref_device(device);
}

GwDaemon *
gw_daemon_new(const GwDaemonConfig *config, GError **error)
{
    g_autoptr(GwDaemon) daemon = g_new0(GwDaemon, 1);

    daemon->config.policy_path = g_strdup(config->policy_path);
    daemon->config.rundir = g_strdup(config->rundir);
    daemon->config.tcp_address = g_strdup(config->tcp_address);
    daemon->config.tcp_port_base = config->tcp_port_base;
    daemon->next_tcp_port = config->tcp_port_base;
    daemon->devices = g_hash_table_new_full(
        g_direct_hash, g_direct_equal, (GDestroyNotify)libusb_unref_device, gw_daemon_device_free);
    daemon->attachments =
        g_hash_table_new_full(g_str_hash, g_str_equal, g_free, (GDestroyNotify)gw_attachment_free);
    daemon->usb = gw_usb_new(g_main_context_default(), error);
    if (daemon->usb == NULL)
        return NULL;
    return g_steal_pointer(&daemon);
}

gboolean
gw_daemon_start(GwDaemon *daemon, GError **error)
{
    g_autoptr(GPtrArray) diagnostics = NULL;

    daemon->policy = policy_load_file(daemon->config.policy_path, &diagnostics, error);
    if (daemon->policy == NULL) {
        for (guint i = 0; diagnostics != NULL && i < diagnostics->len; i++) {
            g_autofree gchar *text = policy_diagnostic_format(g_ptr_array_index(diagnostics, i));
            g_printerr("%s\n", text);
        }
        return FALSE;
    }
    g_message("policy %s: %u rules", daemon->config.policy_path,
              policy_get_rule_count(daemon->policy));
    return gw_usb_start(daemon->usb, gw_daemon_hotplug, daemon, error);
}

void
gw_daemon_free(GwDaemon *daemon)
{
    if (daemon == NULL)
        return;
    /* attachments first: they hold device handles of the usb context */
    g_clear_pointer(&daemon->attachments, g_hash_table_unref);
    g_clear_pointer(&daemon->devices, g_hash_table_unref);
    g_clear_pointer(&daemon->usb, gw_usb_free);
    g_clear_pointer(&daemon->policy, policy_unref);
    gw_daemon_config_clear(&daemon->config);
    g_free(daemon);
}
