/* Shares (SPICE ingress, data path C) wired to the daemon: the registry
 * (gateway/share/gw-share-registry.c) asks the binder for VMs and the
 * policy, the plugger for sockets and redirdevs; its events go to the
 * audit trail and the state file. Also the share, unshare and shares
 * commands. */
#include "gw-daemon-private.h"

#include "gw-json.h"
#include "gw-users.h"

static const gchar *
gw_daemon_share_vm_uuid(const gchar *vm, gpointer user_data)
{
    GwDaemon *daemon = user_data;
    return gw_binder_get_vm_uuid(daemon->binder, vm);
}

static Policy *
gw_daemon_share_policy(gpointer user_data)
{
    GwDaemon *daemon = user_data;
    return gw_binder_get_policy(daemon->binder);
}

static gchar *
gw_daemon_share_socket_dir(const gchar *vm, gpointer user_data)
{
    GwDaemon *daemon = user_data;
    return gw_redirdev_plugger_vm_dir(daemon->plugger, vm);
}

static void
gw_daemon_share_plug(const gchar *vm, const gchar *path, guint index, gboolean replug,
                     gpointer user_data)
{
    GwDaemon *daemon = user_data;
    gw_redirdev_plugger_plug_share(daemon->plugger, vm, gw_binder_get_vm_uuid(daemon->binder, vm),
                                   path, index, replug);
}

static void
gw_daemon_share_unplug(const gchar *vm, const gchar *path, gpointer user_data)
{
    GwDaemon *daemon = user_data;
    gw_redirdev_plugger_unplug(daemon->plugger, vm, gw_binder_get_vm_uuid(daemon->binder, vm),
                               path);
}

static void
gw_daemon_share_event(GwShareRegistryEvent event, GwShare *share, const gchar *actor,
                      const gchar *reason, const PolicyDevice *device, const gchar *rule,
                      gpointer user_data)
{
    static const GwAuditKind kinds[] = {
        [GW_SHARE_REGISTRY_SHARE] = GW_AUDIT_SHARE,
        [GW_SHARE_REGISTRY_UNSHARE] = GW_AUDIT_UNSHARE,
        [GW_SHARE_REGISTRY_LEND] = GW_AUDIT_LEND,
        [GW_SHARE_REGISTRY_DENY] = GW_AUDIT_DENY,
        [GW_SHARE_REGISTRY_RETURN] = GW_AUDIT_RETURN,
    };
    GwDaemon *daemon = user_data;
    const gchar *vm = gw_share_get_vm(share);
    GwAuditEvent record = {
        .event = kinds[event],
        .device = device,
        .vm = vm,
        .vm_uuid = gw_binder_get_vm_uuid(daemon->binder, vm),
        .rule = rule,
        .actor = actor,
        .reason = reason,
    };
    gw_daemon_record(daemon, &record);
}

static void
gw_daemon_share_changed(gpointer user_data)
{
    gw_daemon_save_state(user_data);
}

static const GwShareRegistryOps gw_daemon_share_ops = {
    .vm_uuid = gw_daemon_share_vm_uuid,
    .policy = gw_daemon_share_policy,
    .socket_dir = gw_daemon_share_socket_dir,
    .plug = gw_daemon_share_plug,
    .unplug = gw_daemon_share_unplug,
    .event = gw_daemon_share_event,
    .changed = gw_daemon_share_changed,
};

void
gw_daemon_start_shares(GwDaemon *daemon)
{
    const GwConfig *config = &daemon->config;
    GwShareRegistryConfig shares = {
        .port_base = config->spice_port_base,
        .ports = config->spice_ports,
        .max_life_s = config->share_max_life,
        .access = &daemon->socket_access,
        .worker =
            {
                .program = config->spice_worker,
                .address = config->spice_address,
                .channels = config->spice_channels,
                .user = geteuid() == 0 ? config->spice_user : NULL,
                .uid_first = geteuid() == 0 ? config->spice_uid_first : 0,
                .uid_last = geteuid() == 0 ? config->spice_uid_last : 0,
                .tls_cert = config->spice_tls_cert,
                .tls_key = config->spice_tls_key,
                .tls_ca = config->spice_tls_ca,
            },
    };
    /* a ref: starting a share saves the state, which replaces the array */
    g_autoptr(GPtrArray) saved = g_ptr_array_ref(gw_state_store_get_shares(daemon->state));

    daemon->shares = gw_share_registry_new(&shares, &gw_daemon_share_ops, daemon);
    for (guint i = 0; i < saved->len; i++) {
        const GwStateShare *entry = g_ptr_array_index(saved, i);
        (void)gw_share_registry_restore(daemon->shares, entry->vm, entry->user, entry->ticket,
                                        entry->port, entry->expires, entry->ends);
    }
}

void
gw_daemon_save_shares(GwDaemon *daemon)
{
    g_autoptr(GPtrArray) entries =
        g_ptr_array_new_with_free_func((GDestroyNotify)gw_state_share_free);
    g_autoptr(GPtrArray) shares = NULL;

    if (daemon->shares == NULL)
        return;
    shares = gw_share_registry_list(daemon->shares);
    for (guint i = 0; i < shares->len; i++) {
        GwShare *share = g_ptr_array_index(shares, i);
        GwStateShare *entry = g_new0(GwStateShare, 1);
        entry->vm = g_strdup(gw_share_get_vm(share));
        entry->user = g_strdup(gw_share_get_user(share));
        entry->ticket = g_strdup(gw_share_get_ticket(share));
        entry->port = gw_share_get_port(share);
        entry->expires = gw_share_get_expires_unix(share);
        entry->ends = gw_share_get_ends_unix(share);
        g_ptr_array_add(entries, entry);
    }
    gw_state_store_set_shares(daemon->state, entries);
}

JsonNode *
gw_daemon_cmd_share(GwDaemon *daemon, JsonObject *request, const GwControlPeer *peer,
                    const gchar *actor)
{
    const GwConfig *config = &daemon->config;
    JsonNode *error_reply = NULL;
    const gchar *vm = gw_daemon_string_arg(request, "vm", &error_reply);
    g_autofree gchar *user = NULL;
    g_autofree gchar *uri = NULL;
    g_autoptr(GError) error = NULL;
    const gchar *host;
    JsonNode *node;
    gint64 ttl = config->share_ttl;
    gboolean renewed;
    GwShare *share;
    JsonObject *obj;

    if (vm == NULL)
        return error_reply;
    if (config->spice_port_base == 0)
        return gw_control_reply_error("not-configured",
                                      "SPICE ingress is off: set spice-port-base in usbgwd.conf");
    if (!policy_vm_name_is_valid(vm))
        return gw_control_reply_error("bad-request", "\"%s\" is not a VM name", vm);
    node = json_object_get_member(request, "user");
    if (node != NULL && !JSON_NODE_HOLDS_NULL(node)) {
        if (json_node_get_value_type(node) != G_TYPE_STRING ||
            json_node_get_string(node)[0] == '\0')
            return gw_control_reply_error("bad-request", "\"user\" must be a non-empty string");
        user = g_strdup(json_node_get_string(node));
    } else {
        user = gw_users_name_of(peer->uid);
        if (user == NULL)
            return gw_control_reply_error("bad-request", "uid %u has no user name: pass \"user\"",
                                          (guint)peer->uid);
    }
    node = json_object_get_member(request, "ttl");
    if (node != NULL && !JSON_NODE_HOLDS_NULL(node)) {
        if (json_node_get_value_type(node) != G_TYPE_INT64 || json_node_get_int(node) < 1 ||
            json_node_get_int(node) > GW_SHARE_MAX_TTL)
            return gw_control_reply_error("bad-request", "\"ttl\" must be seconds, 1 to %u",
                                          GW_SHARE_MAX_TTL);
        ttl = json_node_get_int(node);
    }
    share = gw_share_registry_share(daemon->shares, vm, user, (guint)ttl, actor, &renewed, &error);
    if (share == NULL)
        return gw_control_reply_error(
            g_error_matches(error, GW_SHARE_REGISTRY_ERROR, GW_SHARE_REGISTRY_ERROR_BUSY)
                ? "busy"
                : "internal",
            "%s", error->message);
    host = config->spice_host != NULL ? config->spice_host : g_get_host_name();
    uri = g_strdup_printf("%s://%s:%u", config->spice_tls_cert != NULL ? "spice+tls" : "spice",
                          host, (guint)gw_share_get_port(share));
    node = gw_share_to_json(share);
    obj = json_node_get_object(node);
    json_object_set_string_member(obj, "uri", uri);
    json_object_set_string_member(obj, "ticket", gw_share_get_ticket(share));
    json_object_set_string_member(obj, "host", host);
    json_object_set_boolean_member(obj, "tls", config->spice_tls_cert != NULL);
    if (config->spice_tls_ca != NULL)
        json_object_set_string_member(obj, "tls_ca", config->spice_tls_ca);
    return gw_control_reply_ok(node);
}

JsonNode *
gw_daemon_cmd_unshare(GwDaemon *daemon, JsonObject *request, const gchar *actor)
{
    JsonNode *error_reply = NULL;
    const gchar *vm = gw_daemon_string_arg(request, "vm", &error_reply);
    g_autoptr(JsonObject) obj = json_object_new();

    if (vm == NULL)
        return error_reply;
    if (!gw_share_registry_unshare(daemon->shares, vm, actor, "revoked by an admin"))
        return gw_control_reply_error("not-found", "vm \"%s\" has no share (usbgwctl shares)", vm);
    json_object_set_string_member(obj, "vm", vm);
    return gw_control_reply_ok(gw_json_node_take_object(g_steal_pointer(&obj)));
}

JsonNode *
gw_daemon_cmd_shares(GwDaemon *daemon)
{
    g_autoptr(JsonArray) array = json_array_new();
    g_autoptr(JsonObject) obj = json_object_new();
    g_autoptr(GPtrArray) shares = gw_share_registry_list(daemon->shares);

    for (guint i = 0; i < shares->len; i++)
        json_array_add_element(array, gw_share_to_json(g_ptr_array_index(shares, i)));
    json_object_set_array_member(obj, "shares", g_steal_pointer(&array));
    return gw_control_reply_ok(gw_json_node_take_object(g_steal_pointer(&obj)));
}
