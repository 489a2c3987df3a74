/* The control socket's commands (docs/control.md): one table of
 * {name, who may call, handler}; the transport is gateway/control. */
#include "gw-daemon-private.h"

#include "gw-device-json.h"
#include "gw-json.h"
#include "gw-log.h"
#include "gw-metrics.h"

typedef enum {
    GW_CALLER_ANYONE, /* any local user (read-only, no secrets) */
    GW_CALLER_ROOT,   /* uid 0 only: the libvirt hook */
    GW_CALLER_ADMIN,  /* root or a member of group usbgw */
} GwCaller;

typedef struct {
    GwDaemon *daemon;
    JsonObject *request;
    const GwControlPeer *peer;
    const gchar *actor; /* "usbgwctl uid=N" */
} GwCommandCall;

typedef struct {
    const gchar *name;
    GwCaller caller;
    JsonNode *(*handler)(const GwCommandCall *call);
} GwCommand;

const gchar *
gw_daemon_string_arg(JsonObject *request, const gchar *name, JsonNode **error_reply)
{
    JsonNode *node = json_object_get_member(request, name);
    if (node == NULL || json_node_get_value_type(node) != G_TYPE_STRING ||
        json_node_get_string(node)[0] == '\0') {
        *error_reply =
            gw_control_reply_error("bad-request", "\"%s\" must be a non-empty string", name);
        return NULL;
    }
    return json_node_get_string(node);
}

static JsonNode *
gw_reply_object(JsonObject *obj) /* adopted */
{
    return gw_control_reply_ok(gw_json_node_take_object(obj));
}

/* ---- devices ---------------------------------------------------------------- */

/* A live migration's destination waits to take the device's session
 * over (a local one, or an imported one's proxy). */
static gboolean
gw_daemon_served_is_migrating(GwDaemonServed *served)
{
    if (served == NULL)
        return FALSE;
    if (served->attachment != NULL && gw_attachment_is_migrating(served->attachment))
        return TRUE;
    return served->import != NULL && gw_import_is_migrating(served->import);
}

const gchar *
gw_daemon_device_state(GwDaemon *daemon, GwInventoryDevice *inv, const GwBinderDevice *dev)
{
    GwDaemonServed *served = g_hash_table_lookup(daemon->served, inv->id);
    GwAttachment *attachment = served != NULL ? served->attachment : NULL;

    if (!gw_inventory_device_is_present(inv))
        return "absent";
    if (dev != NULL && dev->vm != NULL && gw_daemon_served_is_migrating(served))
        return "migrating";
    if (dev != NULL && dev->vm != NULL && gw_daemon_cluster_waits(daemon, inv->id))
        return "waiting";
    if (dev != NULL && dev->vm != NULL && attachment != NULL && gw_attachment_has_peer(attachment))
        return "attached";
    if (dev != NULL && dev->vm != NULL && served != NULL && served->import != NULL &&
        gw_import_is_attached(served->import))
        return "attached";
    if (served != NULL && served->export_peer != NULL)
        return "exported";
    if (dev != NULL && dev->vm != NULL)
        return "bound";
    if (attachment != NULL)
        return "claimed";
    if (dev != NULL && dev->manual_vm == NULL && dev->decision.verdict == POLICY_VERDICT_DENY)
        return "denied";
    return "present";
}

static JsonNode *
gw_daemon_device_json(GwDaemon *daemon, GwInventoryDevice *inv)
{
    const GwBinderDevice *dev = gw_binder_lookup(daemon->binder, inv->id);
    GwDaemonServed *served = g_hash_table_lookup(daemon->served, inv->id);
    g_autoptr(JsonBuilder) builder = json_builder_new();
    g_autoptr(JsonNode) node = NULL;
    g_autofree gchar *rule = dev != NULL ? gw_daemon_rule_of(&dev->decision) : NULL;
    const gchar *socket = gw_daemon_served_socket(served);
    JsonObject *obj;

    gw_device_to_json(inv->desc, builder);
    node = json_builder_get_root(builder);
    obj = json_node_get_object(node);
    json_object_set_string_member(obj, "id", inv->id);
    json_object_set_string_member(obj, "state", gw_daemon_device_state(daemon, inv, dev));
    json_object_set_string_member(obj, "verdict",
                                  dev == NULL ? "none"
                                  : dev->manual_vm != NULL
                                      ? "assign"
                                      : policy_verdict_to_string(dev->decision.verdict));
    if (dev != NULL && dev->vm != NULL)
        json_object_set_string_member(obj, "vm", dev->vm);
    else
        json_object_set_null_member(obj, "vm");
    if (dev != NULL && dev->manual_vm != NULL)
        json_object_set_string_member(obj, "assigned_by", "usbgwctl");
    if (socket != NULL)
        json_object_set_string_member(obj, "socket", socket);
    /* where it sits: this host (null) or another gateway */
    if (inv->desc->gateway != NULL)
        json_object_set_string_member(obj, "gateway", inv->desc->gateway);
    else
        json_object_set_null_member(obj, "gateway");
    if (served != NULL && served->export_peer != NULL)
        json_object_set_string_member(obj, "exported_to", served->export_peer);
    if (dev != NULL && dev->decision.target != NULL && dev->manual_vm == NULL) {
        g_autofree gchar *target =
            g_strdup_printf("%s \"%s\"", policy_target_kind_to_string(dev->decision.target_kind),
                            dev->decision.target);
        json_object_set_string_member(obj, "target", target);
    }
    if (rule != NULL)
        json_object_set_string_member(obj, "rule", rule);
    /* cluster mode: where its pool key's cluster lease stands */
    if (gw_daemon_cluster_device_note(daemon, inv->id) != NULL)
        json_object_set_string_member(obj, "cluster",
                                      gw_daemon_cluster_device_note(daemon, inv->id));
    json_object_set_string_member(obj, "since", inv->since);
    return g_steal_pointer(&node);
}

/* The one device named by @ref, or NULL with the reply. */
static GwInventoryDevice *
gw_daemon_find_device(GwDaemon *daemon, const gchar *ref, JsonNode **error_reply)
{
    g_autoptr(GError) error = NULL;
    GwInventoryDevice *inv;

    inv = gw_inventory_find(daemon->inventory, ref, &error);
    if (inv == NULL)
        *error_reply = gw_control_reply_error(
            g_error_matches(error, GW_INVENTORY_ERROR, GW_INVENTORY_ERROR_NOT_UNIQUE) ? "conflict"
                                                                                      : "not-found",
            "%s", error->message);
    return inv;
}

static JsonNode *
gw_cmd_status(const GwCommandCall *call)
{
    GwDaemon *daemon = call->daemon;
    Policy *policy = gw_binder_get_policy(daemon->binder);
    g_autoptr(JsonObject) obj = json_object_new();
    g_autoptr(JsonObject) policy_obj = json_object_new();
    g_autoptr(JsonObject) libvirt = json_object_new();
    g_autoptr(JsonObject) hook = json_object_new();
    g_autoptr(GPtrArray) devices = gw_binder_list_devices(daemon->binder);
    g_autoptr(GPtrArray) vms = gw_binder_list_vms(daemon->binder);
    guint bound = 0;

    for (guint i = 0; i < devices->len; i++)
        bound += ((const GwBinderDevice *)g_ptr_array_index(devices, i))->vm != NULL;
    json_object_set_string_member(obj, "version", PACKAGE_VERSION);
    json_object_set_string_member(obj, "started", daemon->started);
    json_object_set_string_member(policy_obj, "path", daemon->config.policy_path);
    json_object_set_int_member(policy_obj, "rules", policy_get_rule_count(policy));
    json_object_set_object_member(obj, "policy", g_steal_pointer(&policy_obj));
    json_object_set_int_member(obj, "devices", gw_inventory_get_count(daemon->inventory));
    json_object_set_int_member(obj, "attachments", bound);
    json_object_set_int_member(obj, "vms", vms->len);
    json_object_set_int_member(
        obj, "shares", daemon->shares != NULL ? gw_share_registry_get_count(daemon->shares) : 0);
    if (daemon->libvirt != NULL) {
        GwLibvirtStatus st = {0};
        gw_libvirt_get_status(daemon->libvirt, &st);
        json_object_set_string_member(libvirt, "uri", gw_libvirt_get_uri(daemon->libvirt));
        json_object_set_boolean_member(libvirt, "connected", st.connected);
        if (st.last_error != NULL)
            json_object_set_string_member(libvirt, "last_error", st.last_error);
        gw_libvirt_status_clear(&st);
    } else {
        json_object_set_null_member(libvirt, "uri");
        json_object_set_boolean_member(libvirt, "connected", FALSE);
    }
    json_object_set_object_member(obj, "libvirt", g_steal_pointer(&libvirt));
    if (daemon->hook_last_call != NULL)
        json_object_set_string_member(hook, "last_call", daemon->hook_last_call);
    else
        json_object_set_null_member(hook, "last_call");
    json_object_set_object_member(obj, "hook", g_steal_pointer(&hook));
    if (daemon->links != NULL) {
        g_autoptr(JsonBuilder) builder = json_builder_new();
        g_autoptr(JsonNode) links = NULL;
        JsonObjectIter iter;
        const gchar *name;
        JsonNode *member;

        json_builder_begin_object(builder);
        gw_links_to_json(daemon->links, builder);
        json_builder_end_object(builder);
        links = json_builder_get_root(builder);
        json_object_iter_init(&iter, json_node_get_object(links));
        while (json_object_iter_next(&iter, &name, &member))
            json_object_set_member(obj, name, json_node_copy(member));
    } else {
        json_object_set_null_member(obj, "gateway");
        json_object_set_array_member(obj, "links", json_array_new());
    }
    if (daemon->cluster != NULL) {
        g_autoptr(JsonBuilder) builder = json_builder_new();
        gw_daemon_cluster_to_json(daemon, builder);
        json_object_set_member(obj, "cluster", json_builder_get_root(builder));
    } else {
        json_object_set_null_member(obj, "cluster");
    }
    return gw_reply_object(g_steal_pointer(&obj));
}

static JsonNode *
gw_cmd_list(const GwCommandCall *call)
{
    g_autoptr(GPtrArray) devices = gw_inventory_list(call->daemon->inventory);
    g_autoptr(JsonArray) array = json_array_new();
    g_autoptr(JsonObject) obj = json_object_new();

    for (guint i = 0; i < devices->len; i++)
        json_array_add_element(array,
                               gw_daemon_device_json(call->daemon, g_ptr_array_index(devices, i)));
    json_object_set_array_member(obj, "devices", g_steal_pointer(&array));
    return gw_reply_object(g_steal_pointer(&obj));
}

/* What libvirt and the VM's metadata add to a VM in vms: its USB bus
 * ("usb_bus": the controller model, null: none; absent without libvirt's
 * word), what add-usb-controller did, its metadata wishes and where each
 * stands. */
static void
gw_cmd_vm_libvirt(GwDaemon *daemon, const gchar *name, JsonObject *vm)
{
    GwDaemonVmLibvirt *info = g_hash_table_lookup(daemon->vm_libvirt, name);
    GPtrArray *items = gw_binder_get_wishes(daemon->binder, name);
    g_autoptr(JsonArray) wishes = json_array_new();

    if (info != NULL) {
        if (info->usb_bus != NULL)
            json_object_set_string_member(vm, "usb_bus", info->usb_bus);
        else
            json_object_set_null_member(vm, "usb_bus");
        if (info->usb_fix != NULL)
            json_object_set_string_member(vm, "usb_fix", info->usb_fix);
        if (info->metadata_error != NULL)
            json_object_set_string_member(vm, "metadata_error", info->metadata_error);
    }
    for (guint i = 0; items != NULL && i < items->len; i++) {
        const GwBinderWish *item = g_ptr_array_index(items, i);
        g_autoptr(JsonObject) wish = json_object_new();
        g_autofree gchar *what = policy_wish_describe(item->wish);
        json_object_set_string_member(wish, "wish", what);
        json_object_set_string_member(wish, "state", gw_binder_wish_state_to_string(item->state));
        if (item->device != NULL)
            json_object_set_string_member(wish, "device", item->device);
        if (item->reason != NULL)
            json_object_set_string_member(wish, "reason", item->reason);
        json_array_add_object_element(wishes, g_steal_pointer(&wish));
    }
    json_object_set_array_member(vm, "wishes", g_steal_pointer(&wishes));
}

static JsonNode *
gw_cmd_vms(const GwCommandCall *call)
{
    GwBinder *binder = call->daemon->binder;
    g_autoptr(JsonArray) array = json_array_new();
    g_autoptr(JsonObject) obj = json_object_new();
    g_autoptr(GPtrArray) vms = gw_binder_list_vms(binder);
    g_autoptr(GPtrArray) devices = gw_binder_list_devices(binder);

    for (guint v = 0; v < vms->len; v++) {
        const gchar *name = g_ptr_array_index(vms, v);
        const gchar *uuid = gw_binder_get_vm_uuid(binder, name);
        g_autoptr(JsonObject) vm = json_object_new();
        g_autoptr(JsonArray) ids = json_array_new();
        gboolean migrating = FALSE;
        for (guint i = 0; i < devices->len; i++) {
            const GwBinderDevice *dev = g_ptr_array_index(devices, i);
            GwDaemonServed *served = g_hash_table_lookup(call->daemon->served, dev->id);
            if (g_strcmp0(dev->vm, name) != 0)
                continue;
            json_array_add_string_element(ids, dev->id);
            /* a live migration's destination waits to take a session over */
            if (gw_daemon_served_is_migrating(served))
                migrating = TRUE;
        }
        json_object_set_string_member(vm, "name", name);
        if (uuid != NULL)
            json_object_set_string_member(vm, "uuid", uuid);
        else
            json_object_set_null_member(vm, "uuid");
        json_object_set_string_member(vm, "state", migrating ? "migrating" : "running");
        json_object_set_array_member(vm, "devices", g_steal_pointer(&ids));
        gw_cmd_vm_libvirt(call->daemon, name, vm);
        /* it runs on another host, its device still served from here */
        gw_daemon_migrate_vm_json(call->daemon, name, vm);
        json_array_add_object_element(array, g_steal_pointer(&vm));
    }
    /* VMs that came here with their device elsewhere */
    gw_daemon_migrate_relayed_json(call->daemon, vms, array);
    json_object_set_array_member(obj, "vms", g_steal_pointer(&array));
    return gw_reply_object(g_steal_pointer(&obj));
}

static JsonNode *
gw_cmd_assign(const GwCommandCall *call)
{
    GwDaemon *daemon = call->daemon;
    JsonNode *error_reply = NULL;
    const gchar *ref = gw_daemon_string_arg(call->request, "device", &error_reply);
    const gchar *vm = ref != NULL ? gw_daemon_string_arg(call->request, "vm", &error_reply) : NULL;
    GwInventoryDevice *inv;
    gboolean ok;

    if (vm == NULL)
        return error_reply;
    if (!policy_vm_name_is_valid(vm))
        return gw_control_reply_error("bad-request", "\"%s\" is not a VM name", vm);
    inv = gw_daemon_find_device(daemon, ref, &error_reply);
    if (inv == NULL)
        return error_reply;
    ok = gw_binder_assign(daemon->binder, inv->id, vm, call->actor);
    gw_daemon_save_state(daemon);
    if (!ok)
        return gw_control_reply_error("internal", "%s: cannot serve the device (see the log)",
                                      inv->id);
    return gw_control_reply_ok(gw_daemon_device_json(daemon, inv));
}

static JsonNode *
gw_cmd_release(const GwCommandCall *call)
{
    GwDaemon *daemon = call->daemon;
    JsonNode *error_reply = NULL;
    const gchar *ref = gw_daemon_string_arg(call->request, "device", &error_reply);
    GwInventoryDevice *inv = ref != NULL ? gw_daemon_find_device(daemon, ref, &error_reply) : NULL;

    if (inv == NULL)
        return error_reply;
    gw_binder_release(daemon->binder, inv->id, call->actor);
    gw_daemon_save_state(daemon);
    return gw_control_reply_ok(gw_daemon_device_json(daemon, inv));
}

static JsonNode *
gw_cmd_policy_reload(const GwCommandCall *call)
{
    GwDaemon *daemon = call->daemon;
    const gchar *path = daemon->config.policy_path;
    g_autoptr(GPtrArray) diagnostics = NULL;
    g_autoptr(GError) error = NULL;
    g_autoptr(Policy) policy = policy_load_file(path, &diagnostics, &error);
    g_autoptr(JsonObject) obj = json_object_new();

    if (policy == NULL) {
        g_autoptr(JsonArray) diags = json_array_new();
        JsonNode *reply =
            gw_control_reply_error("bad-request", "%s; the running policy stays", error->message);
        for (guint i = 0; diagnostics != NULL && i < diagnostics->len; i++) {
            g_autofree gchar *text = policy_diagnostic_format(g_ptr_array_index(diagnostics, i));
            json_array_add_string_element(diags, text);
        }
        json_object_set_array_member(
            json_object_get_object_member(json_node_get_object(reply), "error"), "diagnostics",
            g_steal_pointer(&diags));
        return reply;
    }
    gw_binder_set_policy(daemon->binder, policy, call->actor);
    gw_daemon_save_state(daemon);
    g_message("policy %s reloaded: %u rules", path, policy_get_rule_count(policy));
    gw_daemon_audit(daemon, GW_AUDIT_POLICY_RELOADED, NULL, NULL, call->actor, path);
    json_object_set_string_member(obj, "path", path);
    json_object_set_int_member(obj, "rules", policy_get_rule_count(policy));
    return gw_reply_object(g_steal_pointer(&obj));
}

static JsonNode *
gw_cmd_hook(const GwCommandCall *call)
{
    GwDaemon *daemon = call->daemon;
    JsonNode *error_reply = NULL;
    const gchar *name = gw_daemon_string_arg(call->request, "domain", &error_reply);
    const gchar *uuid =
        name != NULL ? gw_daemon_string_arg(call->request, "uuid", &error_reply) : NULL;
    const gchar *op = uuid != NULL ? gw_daemon_string_arg(call->request, "op", &error_reply) : NULL;
    PolicyRequirement unmet;
    gboolean brings_devices = FALSE;

    if (op == NULL)
        return error_reply;
    if (!g_uuid_string_is_valid(uuid))
        return gw_control_reply_error("bad-request", "\"uuid\" is not a UUID");
    /* the name becomes a directory under <rundir>/vm: the same rule as
     * assign and share */
    if (!policy_vm_name_is_valid(name))
        return gw_control_reply_error("bad-request",
                                      "\"domain\" is not a VM name usbgwd can serve");
    g_free(daemon->hook_last_call);
    daemon->hook_last_call = gw_daemon_now();
    gw_log_device(G_LOG_LEVEL_MESSAGE, NULL, name, NULL, "hook: vm \"%s\" %s", name, op);
    if (g_strcmp0(op, "migrate") == 0 && json_object_has_member(call->request, "sockets")) {
        /* an incoming migration: its QEMU connects to these at start-up */
        JsonNode *sockets = json_object_get_member(call->request, "sockets");
        g_autoptr(GError) error = NULL;
        if (!JSON_NODE_HOLDS_ARRAY(sockets))
            return gw_control_reply_error("bad-request", "\"sockets\" is not an array");
        gw_daemon_migrate_prepare(daemon, name, uuid, json_node_get_array(sockets), &error);
        if (error != NULL)
            return gw_control_reply_error("bad-request", "%s", error->message);
        /* its devices come with it, relayed from the gateway that holds them */
        brings_devices = json_array_get_length(json_node_get_array(sockets)) > 0;
    }
    if (g_strcmp0(op, "prepare") == 0 || (g_strcmp0(op, "migrate") == 0 && !brings_devices)) {
        /* a VM with a `required` rule must not start without a device */
        if (!gw_binder_check_requirements(daemon->binder, name, uuid, &unmet)) {
            g_autofree gchar *reason =
                g_strdup_printf("usbgw: VM \"%s\" requires a USB device (%s:%u) and none is "
                                "present",
                                name, unmet.file, unmet.line);
            gw_daemon_audit(daemon, GW_AUDIT_VETO, NULL, name, "hook", reason);
            return gw_control_reply_error("veto", "%s", reason);
        }
    } else if (g_strcmp0(op, "started") == 0) {
        gw_daemon_vm_started(daemon, name, uuid, "hook");
    } else if (g_strcmp0(op, "stopped") == 0 || g_strcmp0(op, "release") == 0) {
        gw_daemon_vm_stopped(daemon, name, "hook");
    }
    gw_daemon_save_state(daemon);
    return gw_control_reply_ok(NULL);
}

static JsonNode *
gw_cmd_share(const GwCommandCall *call)
{
    return gw_daemon_cmd_share(call->daemon, call->request, call->peer, call->actor);
}

static JsonNode *
gw_cmd_unshare(const GwCommandCall *call)
{
    return gw_daemon_cmd_unshare(call->daemon, call->request, call->actor);
}

static JsonNode *
gw_cmd_shares(const GwCommandCall *call)
{
    return gw_daemon_cmd_shares(call->daemon);
}

/* The Prometheus exposition (docs/metrics.md), for admins as `list`. */
static JsonNode *
gw_cmd_metrics(const GwCommandCall *call)
{
    g_autoptr(JsonObject) obj = json_object_new();
    g_autofree gchar *text = gw_daemon_metrics_text(call->daemon);

    json_object_set_string_member(obj, "content_type", GW_METRICS_CONTENT_TYPE);
    json_object_set_string_member(obj, "text", text);
    return gw_reply_object(g_steal_pointer(&obj));
}

static JsonNode *
gw_cmd_subscribe(const GwCommandCall *call)
{
    g_autoptr(JsonObject) obj = json_object_new();
    JsonNode *reply;

    json_object_set_boolean_member(obj, "subscribed", TRUE);
    reply = gw_reply_object(g_steal_pointer(&obj));
    gw_control_reply_set_subscribe(reply);
    return reply;
}

static const GwCommand gw_commands[] = {
    {"status", GW_CALLER_ANYONE, gw_cmd_status},
    {"list", GW_CALLER_ADMIN, gw_cmd_list},
    {"vms", GW_CALLER_ADMIN, gw_cmd_vms},
    {"assign", GW_CALLER_ADMIN, gw_cmd_assign},
    {"release", GW_CALLER_ADMIN, gw_cmd_release},
    {"policy-reload", GW_CALLER_ADMIN, gw_cmd_policy_reload},
    {"share", GW_CALLER_ADMIN, gw_cmd_share},
    {"unshare", GW_CALLER_ADMIN, gw_cmd_unshare},
    {"shares", GW_CALLER_ADMIN, gw_cmd_shares},
    {"metrics", GW_CALLER_ADMIN, gw_cmd_metrics},
    {"subscribe", GW_CALLER_ADMIN, gw_cmd_subscribe},
    {"hook", GW_CALLER_ROOT, gw_cmd_hook},
};

JsonNode *
gw_daemon_control_handler(JsonObject *request, const GwControlPeer *peer, gpointer user_data)
{
    const gchar *name = json_object_get_string_member(request, "command");
    g_autofree gchar *actor = g_strdup_printf("usbgwctl uid=%u", (guint)peer->uid);
    GwCommandCall call = {user_data, request, peer, actor};
    g_autoptr(GString) names = g_string_new(NULL);

    for (guint i = 0; i < G_N_ELEMENTS(gw_commands); i++) {
        const GwCommand *command = &gw_commands[i];
        if (g_strcmp0(command->name, name) != 0)
            continue;
        switch (command->caller) {
        case GW_CALLER_ANYONE:
            break;
        case GW_CALLER_ROOT:
            if (peer->uid != 0)
                return gw_control_reply_error("permission-denied",
                                              "%s messages are accepted from root only", name);
            break;
        case GW_CALLER_ADMIN:
            if (!peer->admin)
                return gw_control_reply_error("permission-denied",
                                              "uid %u may not use '%s': run as root or as a "
                                              "member of group usbgw",
                                              (guint)peer->uid, name);
            break;
        }
        return command->handler(&call);
    }
    for (guint i = 0; i < G_N_ELEMENTS(gw_commands); i++)
        g_string_append_printf(names, "%s%s", i > 0 ? ", " : "", gw_commands[i].name);
    return gw_control_reply_error("unknown-command", "unknown command '%s' (%s)", name, names->str);
}
