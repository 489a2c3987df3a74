/* usbgwctl: the admin's command line. `policy check` and `policy filter`
 * work offline on a policy file; every other command (status, list, vms,
 * assign, release, events, share, unshare, shares, policy reload) is a
 * request to usbgwd over its control socket (gw-control-client.c,
 * docs/control.md). */
#include <gio/gio.h>
#include <json-glib/json-glib.h>
#include <locale.h>
#include <stdio.h>
#include <string.h>

#include "gw-control-client.h"
#include "gw-defaults.h"
#include "gw-device-json.h"
#include "gw-json.h"
#include "policy.h"
#include "usbgwctl-cluster.h"
#include "usbgwctl-pools.h"

#define USBGWCTL_CONFIG         GW_DEFAULT_CONFIG_PATH
#define USBGWCTL_DEFAULT_SOCKET GW_DEFAULT_CONTROL_SOCKET
#define USBGWCTL_SOCKET_ENV     "USBGWCTL_SOCKET"

/* Exit codes (usbgwctl --help). */
enum {
    USBGWCTL_EXIT_OK = 0,
    USBGWCTL_EXIT_FAILURE = 1, /* bad arguments, unreadable or invalid device list */
    USBGWCTL_EXIT_INVALID = 2, /* the policy is invalid */
};

typedef struct {
    gboolean json;
    gchar *vm_name;
    gchar *vm_uuid;
    gchar *user;
    gchar **groups;
    gchar *gateway;
    gchar *devices;
} UsbgwctlPolicyOptions;

static void
usbgwctl_print_diagnostics(GPtrArray *diagnostics)
{
    for (guint i = 0; diagnostics != NULL && i < diagnostics->len; i++) {
        g_autofree gchar *text = policy_diagnostic_format(g_ptr_array_index(diagnostics, i));
        g_printerr("%s\n", text);
    }
}

static void
usbgwctl_print_json(JsonBuilder *builder)
{
    g_autoptr(JsonGenerator) generator = json_generator_new();
    g_autoptr(JsonNode) root = json_builder_get_root(builder);
    g_autofree gchar *text = NULL;

    json_generator_set_root(generator, root);
    json_generator_set_pretty(generator, TRUE);
    text = json_generator_to_data(generator, NULL);
    g_print("%s\n", text);
}

/* A policy on standard input ("-") is named so in messages. */
#define USBGWCTL_STDIN_NAME "<stdin>"

/* Reads standard input, at most one byte more than a policy may have
 * (policy_load_data then names it too large): memory stays bounded. */
static gchar *
usbgwctl_read_stdin(gsize *len, GError **error)
{
    g_autoptr(GByteArray) data = g_byte_array_new();
    guint8 chunk[4096];
    size_t n;

    while (data->len <= POLICY_MAX_TEXT_SIZE &&
           (n = fread(chunk, 1, MIN(sizeof(chunk), POLICY_MAX_TEXT_SIZE + 1 - data->len), stdin)) >
               0)
        g_byte_array_append(data, chunk, (guint)n);
    if (ferror(stdin)) {
        g_set_error(error, G_FILE_ERROR, G_FILE_ERROR_IO, "cannot read the policy from %s",
                    USBGWCTL_STDIN_NAME);
        return NULL;
    }
    *len = data->len;
    g_byte_array_append(data, (const guint8 *)"", 1);
    return (gchar *)g_byte_array_free(g_steal_pointer(&data), FALSE);
}

/* A JSON string member; JSON text must be UTF-8, so a rule line with
 * invalid bytes has them replaced by U+FFFD. */
static void
usbgwctl_add_utf8_member(JsonBuilder *builder, const gchar *member, const gchar *value)
{
    g_autofree gchar *valid = g_utf8_make_valid(value != NULL ? value : "", -1);

    json_builder_set_member_name(builder, member);
    json_builder_add_string_value(builder, valid);
}

/* {"policy": PATH, "valid": false, "errors": [{"file", "line", "column",
 * "message", "text"}…]}: each diagnostic with its place (column in bytes,
 * as in the text form), for programs such as the Cockpit page. */
static void
usbgwctl_print_diagnostics_json(const gchar *path, GPtrArray *diagnostics)
{
    g_autoptr(JsonBuilder) builder = json_builder_new();

    json_builder_begin_object(builder);
    usbgwctl_add_utf8_member(builder, "policy", path);
    json_builder_set_member_name(builder, "valid");
    json_builder_add_boolean_value(builder, FALSE);
    json_builder_set_member_name(builder, "errors");
    json_builder_begin_array(builder);
    for (guint i = 0; i < diagnostics->len; i++) {
        const PolicyDiagnostic *diag = g_ptr_array_index(diagnostics, i);
        json_builder_begin_object(builder);
        usbgwctl_add_utf8_member(builder, "file", diag->file);
        json_builder_set_member_name(builder, "line");
        json_builder_add_int_value(builder, diag->line);
        json_builder_set_member_name(builder, "column");
        json_builder_add_int_value(builder, diag->column);
        usbgwctl_add_utf8_member(builder, "message", diag->message);
        usbgwctl_add_utf8_member(builder, "text", diag->line_text);
        json_builder_end_object(builder);
    }
    json_builder_end_array(builder);
    json_builder_end_object(builder);
    usbgwctl_print_json(builder);
}

/* Loads the policy at @path ("-": standard input). An invalid one is
 * reported on stderr, and with @json also as JSON on stdout. */
static Policy *
usbgwctl_load_policy(const gchar *path, gboolean json, gint *exit_code)
{
    g_autoptr(GPtrArray) diagnostics = NULL;
    g_autoptr(GError) error = NULL;
    g_autofree gchar *data = NULL;
    gsize len = 0;
    Policy *policy = NULL;

    if (g_strcmp0(path, "-") == 0) {
        path = USBGWCTL_STDIN_NAME;
        data = usbgwctl_read_stdin(&len, &error);
        if (data != NULL)
            policy = policy_load_data(data, len, path, &diagnostics, &error);
    } else
        policy = policy_load_file(path, &diagnostics, &error);

    if (policy == NULL) {
        if (diagnostics != NULL && diagnostics->len > 0) {
            if (json)
                usbgwctl_print_diagnostics_json(path, diagnostics);
            else
                usbgwctl_print_diagnostics(diagnostics);
            g_printerr("%s: %u error%s, policy rejected\n", path, diagnostics->len,
                       diagnostics->len == 1 ? "" : "s");
        } else {
            g_printerr("usbgwctl: %s\n", error->message);
        }
        *exit_code = g_error_matches(error, POLICY_ERROR, POLICY_ERROR_PARSE) ||
                             g_error_matches(error, POLICY_ERROR, POLICY_ERROR_TOO_LARGE)
                         ? USBGWCTL_EXIT_INVALID
                         : USBGWCTL_EXIT_FAILURE;
    }
    return policy;
}

static gchar *
usbgwctl_describe_target(const PolicyDecision *decision)
{
    if (decision->target == NULL)
        return g_strdup("-");
    return g_strdup_printf("%s \"%s\"%s", policy_target_kind_to_string(decision->target_kind),
                           decision->target, decision->required ? " required" : "");
}

static gchar *
usbgwctl_describe_rule(const PolicyDecision *decision)
{
    if (decision->file == NULL)
        return g_strdup("(no rule)");
    return g_strdup_printf("%s:%u", decision->file, decision->line);
}

/* Key a pool lease by port path when there is one (identical keys differ
 * only there; a pool may hold keys of several gateways, whose ports can be
 * the same), else by the device's description. */
static gchar *
usbgwctl_device_key(const PolicyDevice *device)
{
    if (device->port == NULL)
        return policy_device_describe(device);
    if (device->gateway != NULL)
        return g_strdup_printf("%s/%s", device->gateway, device->port);
    return g_strdup(device->port);
}

static gint
usbgwctl_policy_check(const gchar *path, UsbgwctlPolicyOptions *opts)
{
    g_autoptr(Policy) policy = NULL;
    g_autoptr(GPtrArray) devices = NULL;
    g_autoptr(GError) error = NULL;
    g_autoptr(PolicyPools) pools = NULL;
    g_autoptr(GArray) decisions = g_array_new(FALSE, TRUE, sizeof(PolicyDecision));
    g_autoptr(GPtrArray) for_vm = g_ptr_array_new_with_free_func(g_free);
    const gchar *const *groups = (const gchar *const *)opts->groups;
    PolicyContext ctx = {.vm_name = opts->vm_name,
                         .vm_uuid = opts->vm_uuid,
                         .user = opts->user,
                         .groups = groups,
                         .gateway = opts->gateway};
    PolicyOrigin origin =
        opts->user != NULL || opts->groups != NULL ? POLICY_ORIGIN_SHARE : POLICY_ORIGIN_HOST;
    const gchar *leased = NULL;
    gint exit_code = USBGWCTL_EXIT_OK;

    policy = usbgwctl_load_policy(path, opts->json, &exit_code);
    if (policy == NULL)
        return exit_code;
    if (g_strcmp0(path, "-") == 0)
        path = USBGWCTL_STDIN_NAME;
    if (opts->devices == NULL) {
        if (opts->json) {
            g_autoptr(JsonBuilder) builder = json_builder_new();
            json_builder_begin_object(builder);
            json_builder_set_member_name(builder, "policy");
            json_builder_add_string_value(builder, path);
            json_builder_set_member_name(builder, "valid");
            json_builder_add_boolean_value(builder, TRUE);
            json_builder_set_member_name(builder, "rules");
            json_builder_add_int_value(builder, policy_get_rule_count(policy));
            json_builder_end_object(builder);
            usbgwctl_print_json(builder);
        } else
            g_print("%s: valid, %u rule%s\n", path, policy_get_rule_count(policy),
                    policy_get_rule_count(policy) == 1 ? "" : "s");
        return USBGWCTL_EXIT_OK;
    }
    if (opts->gateway != NULL && !policy_gateway_name_is_valid(opts->gateway)) {
        g_printerr("usbgwctl: --gateway \"%s\" is not a gateway name (a letter or digit, then "
                   "letters, digits, '.', '_' or '-'; at most %d bytes)\n",
                   opts->gateway, POLICY_GATEWAY_NAME_MAX);
        return USBGWCTL_EXIT_FAILURE;
    }
    if (origin == POLICY_ORIGIN_SHARE && opts->gateway != NULL) {
        g_printerr("usbgwctl: --gateway asks which of this host's devices a gateway may import; "
                   "--user/--group ask about lent devices: give one or the other\n");
        return USBGWCTL_EXIT_FAILURE;
    }
    if (origin == POLICY_ORIGIN_SHARE && opts->vm_name == NULL && opts->vm_uuid == NULL) {
        g_printerr("usbgwctl: --user/--group ask whether a user may lend devices to a VM; "
                   "name the VM with --vm or --vm-uuid\n");
        return USBGWCTL_EXIT_FAILURE;
    }
    devices = gw_device_list_load(opts->devices, &error);
    if (devices == NULL) {
        g_printerr("usbgwctl: %s\n", error->message);
        return USBGWCTL_EXIT_FAILURE;
    }

    /* Decide every device, then let pools hand out keys as usbgwd would
     * when --vm starts. */
    pools = policy_pools_new(policy);
    g_array_set_size(decisions, devices->len);
    for (guint i = 0; i < devices->len; i++) {
        PolicyDecision *decision = &g_array_index(decisions, PolicyDecision, i);
        policy_decide(policy, origin, g_ptr_array_index(devices, i), &ctx, decision);
        if (decision->verdict == POLICY_VERDICT_ASSIGN &&
            decision->target_kind == POLICY_TARGET_POOL) {
            g_autofree gchar *key = usbgwctl_device_key(g_ptr_array_index(devices, i));
            if (!policy_pools_add_device(pools, decision->target, key, &error)) {
                g_printerr("usbgwctl: %s\n", error->message);
                g_clear_error(&error);
            }
        }
    }
    for (guint i = 0; i < devices->len; i++) {
        const PolicyDecision *decision = &g_array_index(decisions, PolicyDecision, i);
        const gchar *answer = NULL;
        if (opts->vm_name != NULL || opts->vm_uuid != NULL) {
            answer = policy_decision_is_for_vm(policy, decision, opts->vm_name, opts->vm_uuid)
                         ? "yes"
                         : "no";
            /* an allow metadata rule gives it only to a VM that asks */
            if (decision->verdict == POLICY_VERDICT_METADATA && g_strcmp0(answer, "yes") == 0)
                answer = "if it asks (metadata)";
            if (g_strcmp0(answer, "yes") == 0 && decision->target_kind == POLICY_TARGET_POOL) {
                g_autofree gchar *key = usbgwctl_device_key(g_ptr_array_index(devices, i));
                if (leased == NULL)
                    leased = policy_pools_acquire(pools, decision->target, opts->vm_name, NULL);
                answer = g_strcmp0(leased, key) == 0 ? "yes (pool lease)" : "no (pool spare)";
            }
        }
        g_ptr_array_add(for_vm, g_strdup(answer));
    }

    if (opts->json) {
        g_autoptr(JsonBuilder) builder = json_builder_new();

        json_builder_begin_object(builder);
        json_builder_set_member_name(builder, "policy");
        json_builder_add_string_value(builder, path);
        json_builder_set_member_name(builder, "decisions");
        json_builder_begin_array(builder);
        for (guint i = 0; i < devices->len; i++) {
            const PolicyDecision *decision = &g_array_index(decisions, PolicyDecision, i);
            json_builder_begin_object(builder);
            json_builder_set_member_name(builder, "device");
            gw_device_to_json(g_ptr_array_index(devices, i), builder);
            json_builder_set_member_name(builder, "verdict");
            json_builder_add_string_value(builder, policy_verdict_to_string(decision->verdict));
            if (decision->target != NULL) {
                json_builder_set_member_name(builder, "target_kind");
                json_builder_add_string_value(builder,
                                              policy_target_kind_to_string(decision->target_kind));
                json_builder_set_member_name(builder, "target");
                json_builder_add_string_value(builder, decision->target);
                json_builder_set_member_name(builder, "required");
                json_builder_add_boolean_value(builder, decision->required);
            }
            if (decision->file != NULL) {
                json_builder_set_member_name(builder, "rule");
                json_builder_begin_object(builder);
                json_builder_set_member_name(builder, "file");
                json_builder_add_string_value(builder, decision->file);
                json_builder_set_member_name(builder, "line");
                json_builder_add_int_value(builder, decision->line);
                json_builder_end_object(builder);
            }
            if (g_ptr_array_index(for_vm, i) != NULL) {
                json_builder_set_member_name(builder, "for_vm");
                json_builder_add_boolean_value(
                    builder, g_str_has_prefix(g_ptr_array_index(for_vm, i), "yes"));
            }
            json_builder_end_object(builder);
        }
        json_builder_end_array(builder);
        json_builder_end_object(builder);
        usbgwctl_print_json(builder);
        return USBGWCTL_EXIT_OK;
    }

    g_print("%s: valid, %u rule%s; %u device%s\n", path, policy_get_rule_count(policy),
            policy_get_rule_count(policy) == 1 ? "" : "s", devices->len,
            devices->len == 1 ? "" : "s");
    g_print("%-40s %-7s %-28s %-20s%s\n", "DEVICE", "VERDICT", "TARGET", "RULE",
            opts->vm_name != NULL || opts->vm_uuid != NULL ? " FOR-VM" : "");
    for (guint i = 0; i < devices->len; i++) {
        const PolicyDecision *decision = &g_array_index(decisions, PolicyDecision, i);
        g_autofree gchar *device = policy_device_describe(g_ptr_array_index(devices, i));
        g_autofree gchar *target = usbgwctl_describe_target(decision);
        g_autofree gchar *rule = usbgwctl_describe_rule(decision);
        const gchar *answer = g_ptr_array_index(for_vm, i);
        g_print("%-40s %-7s %-28s %-20s%s%s\n", device, policy_verdict_to_string(decision->verdict),
                target, rule, answer != NULL ? " " : "", answer != NULL ? answer : "");
    }
    return USBGWCTL_EXIT_OK;
}

static gint
usbgwctl_policy_filter(const gchar *path, UsbgwctlPolicyOptions *opts)
{
    g_autoptr(Policy) policy = NULL;
    g_autoptr(GPtrArray) notes = NULL;
    g_autoptr(GError) error = NULL;
    g_autofree gchar *filter = NULL;
    gint exit_code = USBGWCTL_EXIT_OK;

    policy = usbgwctl_load_policy(path, FALSE, &exit_code);
    if (policy == NULL)
        return exit_code;
    filter = policy_compile_usbredirfilter(policy, opts->vm_name, opts->vm_uuid, &notes, &error);
    if (filter == NULL) {
        g_printerr("usbgwctl: %s\n", error->message);
        return USBGWCTL_EXIT_FAILURE;
    }
    g_print("%s\n", filter);
    for (guint i = 0; i < notes->len; i++)
        g_printerr("note: %s\n", (const gchar *)g_ptr_array_index(notes, i));
    return USBGWCTL_EXIT_OK;
}

static gint
usbgwctl_policy(gint argc, gchar **argv)
{
    UsbgwctlPolicyOptions opts = {0};
    const GOptionEntry entries[] = {
        {"devices", 'd', 0, G_OPTION_ARG_FILENAME, &opts.devices,
         "Decide for each device of this JSON list", "FILE.json"},
        {"vm", 0, 0, G_OPTION_ARG_STRING, &opts.vm_name, "Say which devices go to this VM", "NAME"},
        {"vm-uuid", 0, 0, G_OPTION_ARG_STRING, &opts.vm_uuid, "The VM's UUID", "UUID"},
        {"user", 0, 0, G_OPTION_ARG_STRING, &opts.user,
         "Decide as if USER lent the devices (share rules)", "USER"},
        {"group", 0, 0, G_OPTION_ARG_STRING_ARRAY, &opts.groups, "A group of the lending user",
         "GROUP"},
        {"gateway", 0, 0, G_OPTION_ARG_STRING, &opts.gateway,
         "Decide exports for this importing gateway (export rules)", "NAME"},
        {"json", 0, 0, G_OPTION_ARG_NONE, &opts.json, "Print JSON", NULL},
        G_OPTION_ENTRY_NULL,
    };
    g_autoptr(GOptionContext) context =
        g_option_context_new("check|filter FILE — check a policy ('-': read it from standard "
                             "input), or compile it to a usbredirfilter string");
    g_autoptr(GError) error = NULL;
    gint exit_code;

    g_option_context_add_main_entries(context, entries, NULL);
    g_option_context_set_summary(
        context, "Exit status: 0 valid, 2 invalid policy (errors on stderr), 1 other errors.");
    if (!g_option_context_parse(context, &argc, &argv, &error)) {
        g_printerr("usbgwctl policy: %s\n", error->message);
        return USBGWCTL_EXIT_FAILURE;
    }
    if (argc != 3 || (g_strcmp0(argv[1], "check") != 0 && g_strcmp0(argv[1], "filter") != 0)) {
        g_autofree gchar *help = g_option_context_get_help(context, TRUE, NULL);
        g_printerr("%s", help);
        return USBGWCTL_EXIT_FAILURE;
    }
    if (g_strcmp0(argv[1], "check") == 0)
        exit_code = usbgwctl_policy_check(argv[2], &opts);
    else
        exit_code = usbgwctl_policy_filter(argv[2], &opts);
    g_free(opts.devices);
    g_free(opts.vm_name);
    g_free(opts.vm_uuid);
    g_free(opts.user);
    g_strfreev(opts.groups);
    g_free(opts.gateway);
    return exit_code;
}

/* ---- commands that talk to usbgwd ------------------------------------------- */

typedef struct {
    gboolean json;
    gchar *socket_path;
    gchar *user; /* share */
    gchar *ttl;  /* share */
    gchar *vv;   /* share: write a virt-viewer connection file */
} UsbgwctlRemoteOptions;

/* A virt-viewer connection file for the share (remote-viewer FILE): the
 * ticket is in it, so it is created 0600 and remote-viewer deletes it once
 * read. */
static gboolean
usbgwctl_write_vv(const gchar *path, JsonObject *share, GError **error)
{
    g_autoptr(GKeyFile) vv = g_key_file_new();
    g_autofree gchar *title =
        g_strdup_printf("usbgw: lend a device to %s", json_object_get_string_member(share, "vm"));
    g_autofree gchar *text = NULL;
    gboolean tls = json_object_get_boolean_member_with_default(share, "tls", FALSE);
    const gchar *ca_path = json_object_get_string_member_with_default(share, "tls_ca", NULL);
    gsize length = 0;

    g_key_file_set_string(vv, "virt-viewer", "type", "spice");
    g_key_file_set_string(vv, "virt-viewer", "host", json_object_get_string_member(share, "host"));
    g_key_file_set_int64(vv, "virt-viewer", tls ? "tls-port" : "port",
                         json_object_get_int_member(share, "port"));
    g_key_file_set_string(vv, "virt-viewer", "password",
                          json_object_get_string_member(share, "ticket"));
    g_key_file_set_string(vv, "virt-viewer", "title", title);
    g_key_file_set_integer(vv, "virt-viewer", "enable-usbredir", 1);
    g_key_file_set_integer(vv, "virt-viewer", "delete-this-file", 1);
    if (tls && ca_path != NULL) {
        g_autofree gchar *ca = NULL;
        if (!g_file_get_contents(ca_path, &ca, NULL, error)) {
            g_prefix_error(error, "the CA for the .vv file: ");
            return FALSE;
        }
        g_key_file_set_string(vv, "virt-viewer", "ca", ca); /* newlines become \n */
    }
    text = g_key_file_to_data(vv, &length, NULL);
    return g_file_set_contents_full(path, text, (gssize)length, G_FILE_SET_CONTENTS_CONSISTENT,
                                    0600, error);
}

/* "90", "90s", "10m", "2h", "1d" → seconds; 0 when malformed. */
static gint64
usbgwctl_parse_duration(const gchar *text)
{
    gchar *end = NULL;
    guint64 value;
    gint64 unit = 1;

    if (text == NULL || !g_ascii_isdigit(text[0]))
        return 0;
    value = g_ascii_strtoull(text, &end, 10);
    if (g_strcmp0(end, "m") == 0)
        unit = 60;
    else if (g_strcmp0(end, "h") == 0)
        unit = 3600;
    else if (g_strcmp0(end, "d") == 0)
        unit = 86400;
    else if (*end != '\0' && g_strcmp0(end, "s") != 0)
        return 0;
    if (value == 0 || value > G_MAXINT32 / (guint64)unit)
        return 0;
    return (gint64)value * unit;
}

/* The control socket: --socket, else $USBGWCTL_SOCKET (for programs that
 * run usbgwctl for their user, like the Cockpit page, and their tests),
 * else the config's control-socket, else the default. */
static gchar *
usbgwctl_socket_path(const gchar *override)
{
    g_autoptr(GKeyFile) keyfile = g_key_file_new();
    const gchar *env = g_getenv(USBGWCTL_SOCKET_ENV);
    gchar *path;

    if (override != NULL)
        return g_strdup(override);
    if (env != NULL && env[0] != '\0')
        return g_strdup(env);
    if (g_key_file_load_from_file(keyfile, USBGWCTL_CONFIG, G_KEY_FILE_NONE, NULL)) {
        path = g_key_file_get_string(keyfile, "usbgwd", "control-socket", NULL);
        if (path != NULL && path[0] != '\0')
            return path;
        g_free(path);
    }
    return g_strdup(USBGWCTL_DEFAULT_SOCKET);
}

static void
usbgwctl_print_object(JsonObject *obj)
{
    g_autoptr(JsonGenerator) generator = json_generator_new();
    g_autoptr(JsonNode) node = json_node_init_object(json_node_alloc(), obj);
    g_autofree gchar *text = NULL;

    json_generator_set_root(generator, node);
    json_generator_set_pretty(generator, TRUE);
    text = json_generator_to_data(generator, NULL);
    g_print("%s\n", text);
}

static const gchar *
usbgwctl_str(JsonObject *obj, const gchar *member)
{
    JsonNode *node = json_object_get_member(obj, member);
    if (node == NULL || json_node_get_value_type(node) != G_TYPE_STRING)
        return "-";
    return json_node_get_string(node);
}

/* Sends one command; on an error reply prints it and returns NULL. */
static JsonObject *
usbgwctl_call(const UsbgwctlRemoteOptions *opts, const gchar *command, JsonObject *args,
              GwControlClient **keep, gint *exit_code)
{
    g_autofree gchar *path = usbgwctl_socket_path(opts->socket_path);
    g_autoptr(GError) error = NULL;
    g_autoptr(GwControlClient) client = gw_control_client_connect(path, &error);
    g_autoptr(JsonObject) reply = NULL;
    JsonObject *err;

    *exit_code = USBGWCTL_EXIT_FAILURE;
    if (client == NULL) {
        g_printerr("usbgwctl: %s\n", error->message);
        return NULL;
    }
    reply = gw_control_client_call(client, command, args, &error);
    if (reply == NULL) {
        g_printerr("usbgwctl: %s\n", error->message);
        return NULL;
    }
    if (!json_object_get_boolean_member_with_default(reply, "ok", FALSE)) {
        err = gw_json_get_object(reply, "error");
        if (opts->json) {
            usbgwctl_print_object(reply);
        } else if (err != NULL) {
            JsonArray *diags = gw_json_get_array(err, "diagnostics");
            for (guint i = 0; diags != NULL && i < json_array_get_length(diags); i++)
                g_printerr("%s\n", json_array_get_string_element(diags, i));
            g_printerr("usbgwctl: %s\n", usbgwctl_str(err, "message"));
        }
        if (err != NULL && g_strcmp0(usbgwctl_str(err, "code"), "bad-request") == 0 &&
            g_strcmp0(command, "policy-reload") == 0)
            *exit_code = USBGWCTL_EXIT_INVALID;
        return NULL;
    }
    *exit_code = USBGWCTL_EXIT_OK;
    if (keep != NULL)
        *keep = g_steal_pointer(&client);
    return json_object_ref(json_object_get_object_member(reply, "result"));
}

/* vms: the VM's USB bus column: the controller model, "NONE" when it has
 * no USB bus (devices cannot be attached), "-" when libvirt did not say. */
static const gchar *
usbgwctl_vm_usb_bus(JsonObject *vm)
{
    JsonNode *node = json_object_get_member(vm, "usb_bus");
    if (node != NULL && JSON_NODE_HOLDS_NULL(node))
        return "NONE";
    return usbgwctl_str(vm, "usb_bus");
}

/* vms: lines under a VM for its metadata wishes, a refused metadata
 * element and what add-usb-controller did. */
static void
usbgwctl_print_vm_notes(JsonObject *vm)
{
    JsonArray *wishes =
        json_object_has_member(vm, "wishes") ? json_object_get_array_member(vm, "wishes") : NULL;

    if (json_object_has_member(vm, "metadata_error"))
        g_print("    metadata: %s\n", usbgwctl_str(vm, "metadata_error"));
    for (guint i = 0; wishes != NULL && i < json_array_get_length(wishes); i++) {
        JsonObject *wish = json_array_get_object_element(wishes, i);
        g_print("    wish %s: %s", usbgwctl_str(wish, "wish"), usbgwctl_str(wish, "state"));
        if (json_object_has_member(wish, "device"))
            g_print(" (%s)", usbgwctl_str(wish, "device"));
        if (json_object_has_member(wish, "reason"))
            g_print(": %s", usbgwctl_str(wish, "reason"));
        g_print("\n");
    }
    if (json_object_has_member(vm, "usb_fix"))
        g_print("    usb controller: %s\n", usbgwctl_str(vm, "usb_fix"));
}

static void
usbgwctl_print_devices(JsonArray *devices)
{
    g_print("%-28s %-9s %-16s %-22s %s\n", "ID", "STATE", "VM", "SINCE", "PRODUCT / RULE");
    for (guint i = 0; i < json_array_get_length(devices); i++) {
        JsonObject *dev = json_array_get_object_element(devices, i);
        const gchar *rule = usbgwctl_str(dev, "rule");
        g_print("%-28s %-9s %-16s %-22s %s%s%s\n", usbgwctl_str(dev, "id"),
                usbgwctl_str(dev, "state"), usbgwctl_str(dev, "vm"), usbgwctl_str(dev, "since"),
                usbgwctl_str(dev, "product"), g_strcmp0(rule, "-") != 0 ? " / " : "",
                g_strcmp0(rule, "-") != 0 ? rule : "");
    }
}

/* "gateway NAME" and one line per link of `status`. */
static void
usbgwctl_print_links(JsonObject *status)
{
    JsonArray *links = json_object_has_member(status, "links")
                           ? json_object_get_array_member(status, "links")
                           : NULL;

    if (links == NULL || g_strcmp0(usbgwctl_str(status, "gateway"), "-") == 0) {
        g_print("links:   none (no link-listen or link-peers in usbgwd.conf)\n");
        return;
    }
    g_print("gateway: %s, %u links\n", usbgwctl_str(status, "gateway"),
            json_array_get_length(links));
    for (guint i = 0; i < json_array_get_length(links); i++) {
        JsonObject *link = json_array_get_object_element(links, i);
        gint64 rtt = json_object_get_int_member_with_default(link, "rtt_us", -1);
        g_autofree gchar *rtt_text =
            rtt >= 0 ? g_strdup_printf(", rtt %" G_GINT64_FORMAT " us", rtt) : g_strdup("");
        const gchar *reason = usbgwctl_str(link, "reason");

        g_print("link %s %s (%s %s): %" G_GINT64_FORMAT " devices from it, %" G_GINT64_FORMAT
                " exported to it, %" G_GINT64_FORMAT " sessions%s%s%s\n",
                usbgwctl_str(link, "peer"), usbgwctl_str(link, "state"),
                json_object_get_boolean_member_with_default(link, "dialed", FALSE) ? "dials"
                                                                                   : "from",
                usbgwctl_str(link, "address"),
                json_object_get_int_member_with_default(link, "peer_devices", 0),
                json_object_get_int_member_with_default(link, "exported", 0),
                json_object_get_int_member_with_default(link, "streams", 0), rtt_text,
                g_strcmp0(reason, "-") != 0 ? ": " : "", g_strcmp0(reason, "-") != 0 ? reason : "");
    }
}

static gint
usbgwctl_remote(const gchar *command, gint argc, gchar **argv)
{
    UsbgwctlRemoteOptions opts = {0};
    const GOptionEntry entries[] = {
        {"json", 0, 0, G_OPTION_ARG_NONE, &opts.json, "Print JSON", NULL},
        {"socket", 0, 0, G_OPTION_ARG_FILENAME, &opts.socket_path,
         "usbgwd's control socket (default: $" USBGWCTL_SOCKET_ENV
         ", else control-socket in " USBGWCTL_CONFIG ", else " USBGWCTL_DEFAULT_SOCKET ")",
         "PATH"},
        G_OPTION_ENTRY_NULL,
    };
    const GOptionEntry share_entries[] = {
        {"user", 0, 0, G_OPTION_ARG_STRING, &opts.user,
         "The user who lends (share rules name users; default: you)", "USER"},
        {"ttl", 0, 0, G_OPTION_ARG_STRING, &opts.ttl,
         "How long the ticket waits for its first use: 90s, 10m, 2h (default: share-ttl of "
         "usbgwd.conf)",
         "TIME"},
        {"vv", 0, 0, G_OPTION_ARG_FILENAME, &opts.vv,
         "Also write a virt-viewer file for remote-viewer (mode 0600, with the ticket)", "FILE"},
        G_OPTION_ENTRY_NULL,
    };
    g_autoptr(GOptionContext) context = g_option_context_new(NULL);
    g_autoptr(GError) error = NULL;
    g_autoptr(JsonObject) args = json_object_new();
    g_autoptr(JsonObject) result = NULL;
    g_autoptr(GwControlClient) client = NULL;
    g_autofree gchar *vv_path = NULL;
    const gchar *wire = command;
    guint want_args = 0;
    gint exit_code = USBGWCTL_EXIT_OK;

    g_option_context_add_main_entries(context, entries, NULL);
    if (g_strcmp0(command, "share") == 0)
        g_option_context_add_main_entries(context, share_entries, NULL);
    if (!g_option_context_parse(context, &argc, &argv, &error)) {
        g_printerr("usbgwctl %s: %s\n", command, error->message);
        g_free(opts.socket_path);
        return USBGWCTL_EXIT_FAILURE;
    }
    vv_path = g_steal_pointer(&opts.vv);
    /* "--" ends the options (GOption leaves it in place), so that a VM
     * name may start with '-' */
    if (argc >= 2 && g_strcmp0(argv[1], "--") == 0) {
        memmove(argv + 1, argv + 2, (gsize)(argc - 2) * sizeof(gchar *));
        argc--;
    }
    if (g_strcmp0(command, "share") == 0 || g_strcmp0(command, "unshare") == 0) {
        gint64 ttl = opts.ttl != NULL ? usbgwctl_parse_duration(opts.ttl) : 0;
        g_autofree gchar *user = g_steal_pointer(&opts.user);
        g_autofree gchar *ttl_text = g_steal_pointer(&opts.ttl);
        if (argc != 2) {
            g_printerr("usbgwctl %s: expected VM (a VM name)\n", command);
            g_free(opts.socket_path);
            return USBGWCTL_EXIT_FAILURE;
        }
        if (ttl_text != NULL && ttl == 0) {
            g_printerr("usbgwctl share: --ttl %s: expected a time like 90s, 10m or 2h\n", ttl_text);
            g_free(opts.socket_path);
            return USBGWCTL_EXIT_FAILURE;
        }
        json_object_set_string_member(args, "vm", argv[1]);
        if (user != NULL)
            json_object_set_string_member(args, "user", user);
        if (ttl != 0)
            json_object_set_int_member(args, "ttl", ttl);
        want_args = 1;
    } else if (g_strcmp0(command, "assign") == 0)
        want_args = 2;
    else if (g_strcmp0(command, "release") == 0)
        want_args = 1;
    else if (g_strcmp0(command, "events") == 0)
        wire = "subscribe";
    else if (g_strcmp0(command, "pools") == 0)
        wire = "list"; /* the pools are the devices' pool targets */
    if ((guint)argc != want_args + 1) {
        g_printerr("usbgwctl %s: expected %s\n", command,
                   want_args == 2   ? "DEVICE VM (DEVICE: an id, VID:PID, serial or port from "
                                      "'usbgwctl list')"
                   : want_args == 1 ? "DEVICE (an id, VID:PID, serial or port from 'usbgwctl "
                                      "list')"
                                    : "no arguments");
        g_free(opts.socket_path);
        return USBGWCTL_EXIT_FAILURE;
    }
    if (want_args >= 1 && !json_object_has_member(args, "vm"))
        json_object_set_string_member(args, "device", argv[1]);
    if (want_args == 2)
        json_object_set_string_member(args, "vm", argv[2]);

    result = usbgwctl_call(&opts, wire, args, g_strcmp0(wire, "subscribe") == 0 ? &client : NULL,
                           &exit_code);
    if (result == NULL) {
        g_free(opts.socket_path);
        return exit_code;
    }
    if (client != NULL) {
        /* events: one line each until usbgwd goes or we are interrupted */
        for (;;) {
            g_autoptr(JsonObject) event = gw_control_client_read(client, &error);
            if (event == NULL) {
                g_printerr("usbgwctl: %s\n", error->message);
                break;
            }
            if (opts.json) {
                g_autoptr(JsonGenerator) generator = json_generator_new();
                g_autoptr(JsonNode) node = json_node_init_object(json_node_alloc(), event);
                g_autofree gchar *text = NULL;
                json_generator_set_root(generator, node);
                text = json_generator_to_data(generator, NULL);
                g_print("%s\n", text);
            } else {
                g_print("%s %-8s %s%s%s%s%s\n", usbgwctl_str(event, "time"),
                        usbgwctl_str(event, "event"), usbgwctl_str(event, "device"),
                        json_object_has_member(event, "vm") ? " vm " : "",
                        json_object_has_member(event, "vm") ? usbgwctl_str(event, "vm") : "",
                        json_object_has_member(event, "reason") ? ": " : "",
                        json_object_has_member(event, "reason") ? usbgwctl_str(event, "reason")
                                                                : "");
            }
            /* each event as it comes, also into a pipe (the Cockpit page) */
            fflush(stdout);
        }
        g_free(opts.socket_path);
        return USBGWCTL_EXIT_FAILURE;
    }
    g_free(opts.socket_path);
    if (vv_path != NULL) {
        if (!usbgwctl_write_vv(vv_path, result, &error)) {
            g_printerr("usbgwctl share: %s\n", error->message);
            return USBGWCTL_EXIT_FAILURE;
        }
    }
    if (g_strcmp0(command, "pools") == 0) {
        g_autoptr(JsonObject) pools =
            usbgwctl_pools_from_devices(gw_json_get_array(result, "devices"));
        if (opts.json)
            usbgwctl_print_object(pools);
        else
            usbgwctl_pools_print(pools);
        return USBGWCTL_EXIT_OK;
    }
    if (opts.json) {
        usbgwctl_print_object(result);
        return USBGWCTL_EXIT_OK;
    }
    if (g_strcmp0(command, "list") == 0) {
        usbgwctl_print_devices(json_object_get_array_member(result, "devices"));
    } else if (g_strcmp0(command, "vms") == 0) {
        JsonArray *vms = json_object_get_array_member(result, "vms");
        g_print("%-20s %-36s %-10s %s\n", "VM", "UUID", "USB-BUS", "DEVICES");
        for (guint i = 0; i < json_array_get_length(vms); i++) {
            JsonObject *vm = json_array_get_object_element(vms, i);
            JsonArray *ids = json_object_get_array_member(vm, "devices");
            g_autoptr(GString) list = g_string_new(NULL);
            for (guint k = 0; k < json_array_get_length(ids); k++)
                g_string_append_printf(list, "%s%s", k > 0 ? ", " : "",
                                       json_array_get_string_element(ids, k));
            g_print("%-20s %-36s %-10s %s\n", usbgwctl_str(vm, "name"), usbgwctl_str(vm, "uuid"),
                    usbgwctl_vm_usb_bus(vm), list->len > 0 ? list->str : "-");
            if (g_strcmp0(usbgwctl_str(vm, "state"), "migrating") == 0)
                g_print("    migrating: a destination QEMU waits to take its devices over\n");
            else if (g_strcmp0(usbgwctl_str(vm, "state"), "elsewhere") == 0)
                g_print("    runs on gateway %s's host: its devices are relayed there\n",
                        usbgwctl_str(vm, "host"));
            else if (g_strcmp0(usbgwctl_str(vm, "state"), "relayed") == 0)
                g_print("    relayed: its devices are on gateway %s\n", usbgwctl_str(vm, "anchor"));
            usbgwctl_print_vm_notes(vm);
        }
    } else if (g_strcmp0(command, "status") == 0) {
        JsonObject *policy = json_object_get_object_member(result, "policy");
        JsonObject *libvirt = json_object_get_object_member(result, "libvirt");
        JsonObject *hook = json_object_get_object_member(result, "hook");
        g_print("usbgwd %s, running since %s\n", usbgwctl_str(result, "version"),
                usbgwctl_str(result, "started"));
        g_print("policy:  %s (%" G_GINT64_FORMAT " rules)\n", usbgwctl_str(policy, "path"),
                json_object_get_int_member(policy, "rules"));
        g_print("devices: %" G_GINT64_FORMAT ", served to VMs: %" G_GINT64_FORMAT
                ", running VMs: %" G_GINT64_FORMAT ", shares: %" G_GINT64_FORMAT "\n",
                json_object_get_int_member(result, "devices"),
                json_object_get_int_member(result, "attachments"),
                json_object_get_int_member(result, "vms"),
                json_object_get_int_member_with_default(result, "shares", 0));
        g_print("libvirt: %s, %s%s%s\n", usbgwctl_str(libvirt, "uri"),
                json_object_get_boolean_member(libvirt, "connected") ? "connected"
                                                                     : "not connected",
                json_object_has_member(libvirt, "last_error") ? ": " : "",
                json_object_has_member(libvirt, "last_error") ? usbgwctl_str(libvirt, "last_error")
                                                              : "");
        if (g_strcmp0(usbgwctl_str(hook, "last_call"), "-") == 0)
            g_print("hook:    not called since usbgwd started (installed? libvirtd restarted "
                    "after installing it?)\n");
        else
            g_print("hook:    last called %s\n", usbgwctl_str(hook, "last_call"));
        usbgwctl_print_links(result);
        usbgwctl_cluster_print(gw_json_get_object(result, "cluster"));
    } else if (g_strcmp0(command, "share") == 0) {
        g_print("vm \"%s\" may now get devices lent by user \"%s\"\n", usbgwctl_str(result, "vm"),
                usbgwctl_str(result, "user"));
        g_print("uri:     %s\n", usbgwctl_str(result, "uri"));
        g_print("ticket:  %s\n", usbgwctl_str(result, "ticket"));
        g_print("expires: %s unless used (then it lasts until 'usbgwctl unshare %s' or the VM "
                "stops)\n",
                usbgwctl_str(result, "expires"), usbgwctl_str(result, "vm"));
        g_print("lend with: usbgw-share %s --ticket-file FILE --device VID:PID%s\n",
                usbgwctl_str(result, "uri"),
                json_object_get_boolean_member_with_default(result, "tls", FALSE)
                    ? " --ca-file CA.pem"
                    : "");
        g_print("       or: remote-viewer %s (password: the ticket, or use --vv FILE), then "
                "share the device\n",
                usbgwctl_str(result, "uri"));
    } else if (g_strcmp0(command, "unshare") == 0) {
        g_print("share of vm \"%s\" ended\n", usbgwctl_str(result, "vm"));
    } else if (g_strcmp0(command, "shares") == 0) {
        JsonArray *shares = json_object_get_array_member(result, "shares");
        g_print("%-20s %-12s %-6s %-36s %s\n", "VM", "USER", "PORT", "STATE", "DEVICES");
        for (guint i = 0; shares != NULL && i < json_array_get_length(shares); i++) {
            JsonObject *share = json_array_get_object_element(shares, i);
            JsonArray *devices = json_object_get_array_member(share, "devices");
            g_autoptr(GString) list = g_string_new(NULL);
            for (guint k = 0; devices != NULL && k < json_array_get_length(devices); k++)
                g_string_append_printf(list, "%s%s", k > 0 ? ", " : "",
                                       json_array_get_string_element(devices, k));
            g_print("%-20s %-12s %-6" G_GINT64_FORMAT " %-36s %s\n", usbgwctl_str(share, "vm"),
                    usbgwctl_str(share, "user"), json_object_get_int_member(share, "port"),
                    usbgwctl_str(share, "state"), list->len > 0 ? list->str : "-");
        }
    } else if (g_strcmp0(command, "metrics") == 0) {
        /* the exposition as usbgwd rendered it, every line ended */
        g_print("%s", usbgwctl_str(result, "text"));
    } else if (g_strcmp0(command, "policy-reload") == 0) {
        g_print("policy %s reloaded: %" G_GINT64_FORMAT " rules\n", usbgwctl_str(result, "path"),
                json_object_get_int_member(result, "rules"));
    } else {
        g_autoptr(JsonArray) one = json_array_new();
        json_array_add_object_element(one, json_object_ref(result));
        usbgwctl_print_devices(one);
    }
    return USBGWCTL_EXIT_OK;
}

static const gchar *const usbgwctl_remote_commands[] = {"status",  "list",    "vms",    "pools",
                                                        "assign",  "release", "events", "share",
                                                        "unshare", "shares",  "metrics"};

static void
usbgwctl_usage(void)
{
    g_printerr("Usage: usbgwctl COMMAND [ARGS…]\n\n"
               "Commands:\n"
               "  policy check FILE [--devices FILE.json] [--vm NAME] [--gateway NAME] [--json]\n"
               "                     check a policy (FILE '-': standard input); with a device\n"
               "                     list, print each decision\n"
               "  policy filter FILE [--vm NAME]\n"
               "                     compile the policy to a usbredirfilter string\n"
               "  policy reload      make usbgwd re-read its policy (a bad one is refused)\n"
               "  status             usbgwd, policy, libvirt and hook state\n"
               "  list               devices: id, state, VM, since\n"
               "  vms                running VMs and their devices\n"
               "  pools              pools: their keys, which are free, which VM holds the others\n"
               "  assign DEVICE VM   give a device to a VM (kept across restarts)\n"
               "  release DEVICE     take a device back and hand it to the host\n"
               "  events             follow usbgwd's events\n"
               "  share VM [--user USER] [--ttl 10m] [--vv FILE]\n"
               "                     let USER lend workstation devices to VM over SPICE: prints\n"
               "                     a spice:// URI and a one-share ticket\n"
               "  unshare VM         end VM's share (the lent devices leave the VM)\n"
               "  shares             the shares: user, port, state, lent devices\n"
               "  metrics            usbgwd's metrics as Prometheus text (docs/metrics.md)\n\n"
               "Commands that talk to usbgwd take --json and --socket PATH (default:\n"
               "$" USBGWCTL_SOCKET_ENV ", else control-socket in " USBGWCTL_CONFIG ").\n"
               "'usbgwctl --version' prints the version.\n"
               "Run 'usbgwctl policy --help' for the policy options.\n");
}

int
main(int argc, char **argv)
{
    setlocale(LC_ALL, "");
    /* global options may come before the command: move the command first */
    for (gint i = 1; i < argc; i++) {
        if (g_strcmp0(argv[i], "--socket") == 0) {
            i++;
            continue;
        }
        if (argv[i][0] != '-') {
            gchar *command = argv[i];
            memmove(argv + 2, argv + 1, (gsize)(i - 1) * sizeof(gchar *));
            argv[1] = command;
            break;
        }
    }
    if (argc == 2 && g_strcmp0(argv[1], "--version") == 0) {
        g_print("usbgwctl %s\n", PACKAGE_VERSION);
        return USBGWCTL_EXIT_OK;
    }
    if (argc < 2 || g_strcmp0(argv[1], "--help") == 0 || g_strcmp0(argv[1], "-h") == 0) {
        usbgwctl_usage();
        return argc < 2 ? USBGWCTL_EXIT_FAILURE : USBGWCTL_EXIT_OK;
    }
    if (g_strcmp0(argv[1], "policy") == 0) {
        /* "policy reload" talks to usbgwd; check/filter work offline */
        for (gint i = 2; i < argc; i++) {
            if (g_strcmp0(argv[i], "reload") == 0 && g_strcmp0(argv[i - 1], "--socket") != 0) {
                memmove(argv + i, argv + i + 1, (gsize)(argc - i - 1) * sizeof(gchar *));
                return usbgwctl_remote("policy-reload", argc - 2, argv + 1);
            }
        }
    }
    if (g_strcmp0(argv[1], "policy") == 0)
        return usbgwctl_policy(argc - 1, argv + 1);
    for (guint i = 0; i < G_N_ELEMENTS(usbgwctl_remote_commands); i++) {
        if (g_strcmp0(argv[1], usbgwctl_remote_commands[i]) == 0)
            return usbgwctl_remote(argv[1], argc - 1, argv + 1);
    }
    g_printerr("usbgwctl: unknown command '%s'\n", argv[1]);
    usbgwctl_usage();
    return USBGWCTL_EXIT_FAILURE;
}
