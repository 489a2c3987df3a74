/* Shares by VM (SPICE ingress, data path C): at most one GwShare per VM,
 * SPICE ports handed out in turn, the policy's share rules for lent
 * devices, redirdev plugging of share sockets, restore after a restart,
 * and the share/unshare/shares commands. */
#include "gw-daemon-private.h"

#include <grp.h>
#include <pwd.h>
#include <string.h>

/* The share's event names (gw-share.h) as audit kinds. */
static GwAuditKind
gw_daemon_share_kind(const gchar *event)
{
    if (g_strcmp0(event, "deny") == 0)
        return GW_AUDIT_DENY;
    if (g_strcmp0(event, "lend") == 0)
        return GW_AUDIT_LEND;
    return GW_AUDIT_RETURN;
}

gboolean
gw_daemon_shares_have_qemu(GwDaemon *daemon, const gchar *path)
{
    GHashTableIter iter;
    gpointer value;

    g_hash_table_iter_init(&iter, daemon->shares);
    while (g_hash_table_iter_next(&iter, NULL, &value))
        if (gw_share_socket_has_qemu(value, path))
            return TRUE;
    return FALSE;
}

void
gw_daemon_save_shares(GwDaemon *daemon)
{
    g_autoptr(GPtrArray) entries =
        g_ptr_array_new_with_free_func((GDestroyNotify)gw_state_share_free);
    GHashTableIter iter;
    gpointer value;

    if (daemon->shares == NULL)
        return;
    g_hash_table_iter_init(&iter, daemon->shares);
    while (g_hash_table_iter_next(&iter, NULL, &value)) {
        GwStateShare *entry = g_new0(GwStateShare, 1);
        entry->vm = g_strdup(gw_share_get_vm(value));
        entry->user = g_strdup(gw_share_get_user(value));
        entry->ticket = g_strdup(gw_share_get_ticket(value));
        entry->port = gw_share_get_port(value);
        entry->expires = gw_share_get_expires_unix(value);
        g_ptr_array_add(entries, entry);
    }
    gw_state_store_set_shares(daemon->state, entries);
}

/* The lending user's groups, for share rules that name a group; NULL when
 * the user is not known on this host. */
static gchar **
gw_daemon_user_groups(const gchar *user)
{
    struct passwd *pw = getpwnam(user);
    g_autofree gid_t *gids = NULL;
    GPtrArray *names;
    int count = 64;

    if (pw == NULL)
        return NULL;
    gids = g_new(gid_t, count);
    if (getgrouplist(user, pw->pw_gid, gids, &count) < 0) {
        gids = g_renew(gid_t, gids, count);
        if (getgrouplist(user, pw->pw_gid, gids, &count) < 0)
            return NULL;
    }
    names = g_ptr_array_new();
    for (int i = 0; i < count; i++) {
        struct group *gr = getgrgid(gids[i]);
        if (gr != NULL)
            g_ptr_array_add(names, g_strdup(gr->gr_name));
    }
    g_ptr_array_add(names, NULL);
    return (gchar **)g_ptr_array_free(names, FALSE);
}

static gboolean
gw_daemon_share_check(GwShare *share, const PolicyDevice *device, gchar **rule, gchar **reason,
                      gpointer user_data)
{
    GwDaemon *daemon = user_data;
    const gchar *vm = gw_share_get_vm(share);
    const gchar *uuid = gw_binder_get_vm_uuid(daemon->binder, vm);
    g_auto(GStrv) groups = gw_daemon_user_groups(gw_share_get_user(share));
    PolicyContext ctx = {
        .vm_name = vm,
        .vm_uuid = uuid,
        .user = gw_share_get_user(share),
        .groups = (const gchar *const *)groups,
    };
    PolicyDecision decision;
    g_autofree gchar *what = policy_device_describe(device);

    policy_decide(gw_binder_get_policy(daemon->binder), POLICY_ORIGIN_SHARE, device, &ctx,
                  &decision);
    *rule = gw_daemon_rule_of(&decision);
    if (decision.verdict == POLICY_VERDICT_SHARE)
        return TRUE;
    if (decision.file != NULL)
        *reason =
            g_strdup_printf("%s: user \"%s\" may not lend it to vm \"%s\" (%s rule at %s)", what,
                            ctx.user, vm, policy_verdict_to_string(decision.verdict), *rule);
    else
        *reason = g_strdup_printf("%s: no share rule lets user \"%s\" lend it to vm \"%s\"", what,
                                  ctx.user, vm);
    return FALSE;
}

/* The audit record of a share's event; @device (lent or refused) and
 * @rule are nullable. */
static void
gw_daemon_share_audit(GwDaemon *daemon, GwAuditKind event, GwShare *share, const gchar *actor,
                      const gchar *reason, const PolicyDevice *device, const gchar *rule)
{
    const gchar *uuid = gw_binder_get_vm_uuid(daemon->binder, gw_share_get_vm(share));
    GwAuditEvent record = {
        .event = event,
        .device = device,
        .vm = gw_share_get_vm(share),
        .vm_uuid = uuid,
        .rule = rule,
        .actor = actor,
        .reason = reason,
    };
    gw_daemon_record(daemon, &record);
}

static void
gw_daemon_share_event(GwShare *share, const gchar *event, const PolicyDevice *device,
                      const gchar *rule, const gchar *reason, gpointer user_data)
{
    const gchar *vm = gw_share_get_vm(share);
    const gchar *user = gw_share_get_user(share);
    g_autofree gchar *actor = g_strdup_printf("share user=%s", user);
    g_autofree gchar *what = device != NULL ? policy_device_describe(device) : NULL;

    if (g_strcmp0(event, "deny") == 0)
        g_message("vm \"%s\": refused %s lent by user \"%s\": %s", vm, what, user, reason);
    else
        g_message("vm \"%s\": %s %s (user \"%s\"%s%s)", vm,
                  g_strcmp0(event, "lend") == 0 ? "got the lent device" : "gave back", what, user,
                  rule != NULL ? ", rule " : "", rule != NULL ? rule : "");
    gw_daemon_share_audit(user_data, gw_daemon_share_kind(event), share, actor, reason, device,
                          rule);
}

static void
gw_daemon_share_attach_done(GObject *source, GAsyncResult *result, gpointer user_data)
{
    g_autoptr(GError) error = NULL;
    g_autofree gchar *what = user_data;

    if (!gw_libvirt_attach_redirdev_finish(NULL, result, &error) &&
        !g_error_matches(error, G_IO_ERROR, G_IO_ERROR_CANCELLED))
        g_warning("%s: libvirt attach failed: %s", what, error->message);
}

/* Plugs the share's VM sockets into the running VM (libvirt only); a
 * socket whose QEMU is connected already is left alone. With @replug the
 * redirdevs are unplugged first (their QEMU chardev closed for good). */
void
gw_daemon_share_plug(GwDaemon *daemon, GwShare *share, gboolean replug)
{
    const gchar *vm = gw_share_get_vm(share);
    const gchar *uuid = gw_binder_get_vm_uuid(daemon->binder, vm);
    const gchar *const *paths = gw_share_get_socket_paths(share);

    if (daemon->libvirt == NULL || uuid == NULL || !gw_libvirt_is_connected(daemon->libvirt))
        return;
    for (guint i = 0; paths[i] != NULL; i++) {
        g_autofree gchar *alias = g_strdup_printf(GW_DAEMON_ALIAS_PREFIX "share%u", i);
        if (gw_share_socket_has_qemu(share, paths[i]))
            continue;
        if (replug)
            gw_libvirt_detach_redirdev_async(daemon->libvirt, uuid, paths[i], NULL,
                                             gw_daemon_detach_done,
                                             g_strdup_printf("%s ← vm %s", paths[i], vm));
        gw_libvirt_attach_redirdev_async(daemon->libvirt, uuid, paths[i], alias,
                                         daemon->cancellable, gw_daemon_share_attach_done,
                                         g_strdup_printf("%s → vm %s", paths[i], vm));
    }
}

static void
gw_daemon_share_qemu_left(GwShare *share, gpointer user_data)
{
    /* libvirt's hot-plugged chardevs do not reconnect: plug anew */
    gw_daemon_share_plug(user_data, share, TRUE);
}

/* Ends a share: the client is dropped, its devices leave the VM. */
void
gw_daemon_unshare(GwDaemon *daemon, const gchar *vm, const gchar *actor, const gchar *reason)
{
    GwShare *share = g_hash_table_lookup(daemon->shares, vm);
    const gchar *uuid = gw_binder_get_vm_uuid(daemon->binder, vm);
    const gchar *const *paths;

    if (share == NULL)
        return;
    g_message("share vm \"%s\" user \"%s\" ended: %s", vm, gw_share_get_user(share), reason);
    gw_daemon_share_audit(daemon, GW_AUDIT_UNSHARE, share, actor, reason, NULL, NULL);
    paths = gw_share_get_socket_paths(share);
    for (guint i = 0; daemon->libvirt != NULL && uuid != NULL && paths[i] != NULL; i++)
        gw_libvirt_detach_redirdev_async(daemon->libvirt, uuid, paths[i], NULL,
                                         gw_daemon_detach_done,
                                         g_strdup_printf("%s ← vm %s", paths[i], vm));
    g_hash_table_remove(daemon->shares, vm);
    gw_daemon_save_state(daemon);
}

static void
gw_daemon_share_ended(GwShare *share, const gchar *reason, gpointer user_data)
{
    g_autofree gchar *vm = g_strdup(gw_share_get_vm(share));
    gw_daemon_unshare(user_data, vm, "usbgwd", reason);
}

static gboolean
gw_daemon_spice_port_used(GwDaemon *daemon, guint port)
{
    GHashTableIter iter;
    gpointer value;

    g_hash_table_iter_init(&iter, daemon->shares);
    while (g_hash_table_iter_next(&iter, NULL, &value))
        if (gw_share_get_port(value) == port)
            return TRUE;
    return FALSE;
}

/* A SPICE port no share uses, 0 when all are taken. Ports are handed out
 * in turn, so a new share does not race the worker of one that just ended
 * for its port. */
static guint16
gw_daemon_free_spice_port(GwDaemon *daemon)
{
    guint base = daemon->config.spice_port_base;
    guint count = MIN(daemon->config.spice_ports, G_MAXUINT16 + 1u - base);

    for (guint i = 0; i < count; i++) {
        guint port = base + (daemon->next_spice_port + i) % count;
        if (!gw_daemon_spice_port_used(daemon, port)) {
            daemon->next_spice_port = (port - base + 1) % count;
            return (guint16)port;
        }
    }
    return 0;
}

static void
gw_daemon_share_used(GwShare *share, gpointer user_data)
{
    gw_daemon_save_state(user_data);
}

/* Starts a share (a new one, or one saved before a restart: @ticket and
 * @port given). */
static GwShare *
gw_daemon_start_share(GwDaemon *daemon, const gchar *vm, const gchar *user, guint ttl_s,
                      const gchar *ticket, guint16 port, gboolean used, GError **error)
{
    static const GwShareCallbacks callbacks = {
        .check = gw_daemon_share_check,
        .event = gw_daemon_share_event,
        .used = gw_daemon_share_used,
        .qemu_left = gw_daemon_share_qemu_left,
        .ended = gw_daemon_share_ended,
    };
    g_autofree gchar *dir = g_build_filename(daemon->config.rundir, "vm", vm, NULL);
    GwShareOptions options = {0};
    GwShare *share;

    options.vm = vm;
    options.user = user;
    options.ttl_s = ttl_s;
    options.ticket = ticket;
    options.used = used;
    options.socket_dir = dir;
    options.socket_uid = daemon->socket_uid;
    options.socket_gid = daemon->socket_gid;
    options.worker.port = port;
    options.worker.program = daemon->config.spice_worker;
    options.worker.address = daemon->config.spice_address;
    options.worker.channels = daemon->config.spice_channels;
    options.worker.user = geteuid() == 0 ? daemon->config.spice_user : NULL;
    options.worker.tls_cert = daemon->config.spice_tls_cert;
    options.worker.tls_key = daemon->config.spice_tls_key;
    options.worker.tls_ca = daemon->config.spice_tls_ca;
    share = gw_share_new(&options, &callbacks, daemon, error);
    if (share == NULL)
        return NULL;
    g_hash_table_insert(daemon->shares, (gpointer)gw_share_get_vm(share), share);
    gw_daemon_share_plug(daemon, share, FALSE);
    gw_daemon_save_state(daemon);
    return share;
}

/* Shares saved before a restart come back with their ticket and port, so
 * a lending client reconnects as after a network loss. */
void
gw_daemon_restore_shares(GwDaemon *daemon)
{
    /* a ref: starting a share saves the state, which replaces the array */
    g_autoptr(GPtrArray) saved = g_ptr_array_ref(gw_state_store_get_shares(daemon->state));
    gint64 now = g_get_real_time() / G_USEC_PER_SEC;

    for (guint i = 0; i < saved->len; i++) {
        const GwStateShare *entry = g_ptr_array_index(saved, i);
        const gchar *vm = entry->vm;
        gint64 port = entry->port;
        gint64 expires = entry->expires;
        g_autoptr(GError) error = NULL;

        if (daemon->config.spice_port_base == 0) {
            g_warning("share of vm \"%s\" not restored: SPICE ingress is off now", vm);
            continue;
        }
        if (entry->user == NULL || entry->ticket == NULL || entry->ticket[0] == '\0' ||
            strlen(entry->ticket) > 60 || !policy_vm_name_is_valid(vm) ||
            port < daemon->config.spice_port_base ||
            port >= (gint64)daemon->config.spice_port_base + daemon->config.spice_ports ||
            expires < 0) {
            g_warning("share of vm \"%s\" not restored: its saved entry is malformed or its "
                      "port is outside spice-port-base/spice-ports",
                      vm);
            continue;
        }
        if (expires != 0 && expires <= now) {
            g_message("share of vm \"%s\" not restored: its ticket expired unused", vm);
            continue;
        }
        if (g_hash_table_contains(daemon->shares, vm) ||
            gw_daemon_spice_port_used(daemon, (guint)port))
            continue;
        if (gw_daemon_start_share(daemon, vm, entry->user,
                                  expires != 0 ? (guint)(expires - now) : 0, entry->ticket,
                                  (guint16)port, expires == 0, &error) == NULL) {
            g_warning("share of vm \"%s\" not restored: %s", vm, error->message);
            continue;
        }
        g_message("share vm \"%s\" user \"%s\" restored on SPICE port %u", vm, entry->user,
                  (guint)port);
        gw_daemon_share_audit(daemon, GW_AUDIT_SHARE, g_hash_table_lookup(daemon->shares, vm),
                              "usbgwd (restored from the state file)", entry->user, NULL, NULL);
    }
}

JsonNode *
gw_daemon_cmd_share(GwDaemon *daemon, JsonObject *request, const GwControlPeer *peer,
                    const gchar *actor)
{
    JsonNode *error_reply = NULL;
    const gchar *vm = gw_daemon_string_arg(request, "vm", &error_reply);
    g_autofree gchar *user = NULL;
    g_autofree gchar *uri = NULL;
    g_autoptr(GError) error = NULL;
    const gchar *host;
    JsonNode *node;
    gint64 ttl = daemon->config.share_ttl;
    guint16 port;
    GwShare *share;
    JsonObject *obj;

    if (vm == NULL)
        return error_reply;
    if (daemon->config.spice_port_base == 0)
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
        struct passwd *pw = getpwuid(peer->uid);
        if (pw == NULL)
            return gw_control_reply_error("bad-request", "uid %u has no user name: pass \"user\"",
                                          (guint)peer->uid);
        user = g_strdup(pw->pw_name);
    }
    node = json_object_get_member(request, "ttl");
    if (node != NULL && !JSON_NODE_HOLDS_NULL(node)) {
        if (json_node_get_value_type(node) != G_TYPE_INT64 || json_node_get_int(node) < 1 ||
            json_node_get_int(node) > 7 * 24 * 3600)
            return gw_control_reply_error("bad-request", "\"ttl\" must be seconds, 1 to 604800");
        ttl = json_node_get_int(node);
    }
    share = g_hash_table_lookup(daemon->shares, vm);
    if (share != NULL) {
        /* a new share for the VM replaces the old one: same endpoint, new
         * ticket, the old client dropped */
        g_autofree gchar *old_user = g_strdup(gw_share_get_user(share));
        if (!gw_share_renew(share, user, (guint)ttl, &error))
            return gw_control_reply_error("internal", "cannot renew the share of vm \"%s\": %s", vm,
                                          error->message);
        gw_daemon_share_audit(daemon, GW_AUDIT_UNSHARE, share, actor, "replaced by a new share",
                              NULL, NULL);
        g_message("share vm \"%s\" user \"%s\" replaced by a new share", vm, old_user);
        port = gw_share_get_port(share);
        gw_daemon_save_state(daemon);
    } else {
        port = gw_daemon_free_spice_port(daemon);
        if (port == 0)
            return gw_control_reply_error("busy",
                                          "all %u SPICE ports from %u are in use by shares "
                                          "(usbgwctl shares; raise spice-ports)",
                                          daemon->config.spice_ports,
                                          daemon->config.spice_port_base);
        share = gw_daemon_start_share(daemon, vm, user, (guint)ttl, NULL, port, FALSE, &error);
        if (share == NULL)
            return gw_control_reply_error("internal", "cannot start the share for vm \"%s\": %s",
                                          vm, error->message);
    }
    g_message("share vm \"%s\" user \"%s\": SPICE port %u, ticket valid %" G_GINT64_FORMAT
              " s for the first login (%s)",
              vm, user, port, ttl, actor);
    gw_daemon_share_audit(daemon, GW_AUDIT_SHARE, share, actor, user, NULL, NULL);

    host = daemon->config.spice_host != NULL ? daemon->config.spice_host : g_get_host_name();
    uri = g_strdup_printf(
        "%s://%s:%u", daemon->config.spice_tls_cert != NULL ? "spice+tls" : "spice", host, port);
    node = gw_share_to_json(share);
    obj = json_node_get_object(node);
    json_object_set_string_member(obj, "uri", uri);
    json_object_set_string_member(obj, "ticket", gw_share_get_ticket(share));
    json_object_set_string_member(obj, "host", host);
    json_object_set_boolean_member(obj, "tls", daemon->config.spice_tls_cert != NULL);
    if (daemon->config.spice_tls_ca != NULL)
        json_object_set_string_member(obj, "tls_ca", daemon->config.spice_tls_ca);
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
    if (!g_hash_table_contains(daemon->shares, vm))
        return gw_control_reply_error("not-found", "vm \"%s\" has no share (usbgwctl shares)", vm);
    gw_daemon_unshare(daemon, vm, actor, "revoked by an admin");
    json_object_set_string_member(obj, "vm", vm);
    return gw_control_reply_ok(json_node_init_object(json_node_alloc(), g_steal_pointer(&obj)));
}

JsonNode *
gw_daemon_cmd_shares(GwDaemon *daemon)
{
    g_autoptr(JsonArray) array = json_array_new();
    g_autoptr(JsonObject) obj = json_object_new();
    g_autoptr(GList) vms = g_hash_table_get_keys(daemon->shares);

    vms = g_list_sort(vms, (GCompareFunc)g_strcmp0);
    for (GList *l = vms; l != NULL; l = l->next)
        json_array_add_element(array,
                               gw_share_to_json(g_hash_table_lookup(daemon->shares, l->data)));
    json_object_set_array_member(obj, "shares", g_steal_pointer(&array));
    return gw_control_reply_ok(json_node_init_object(json_node_alloc(), g_steal_pointer(&obj)));
}
