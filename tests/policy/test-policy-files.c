/* usbgwctl on files: every rule file of tests/data/policy/good passes
 * `usbgwctl policy check` (exit 0), every one of bad/ fails (exit 2) with
 * FILE:LINE:COL where its "# expect: LINE:COL" comment says and a caret
 * under that column; device lists give the decisions the library gives;
 * bad device lists name the field at fault (exit 1); `policy filter`
 * prints the filter and its notes.
 *
 *   test-policy-files [--tap] USBGWCTL TESTS_DATA_DIR PROJECT_DATA_DIR */
#include <gio/gio.h>
#include <json-glib/json-glib.h>
#include <stdio.h>
#include <string.h>

#include "gw-device-json.h"
#include "policy.h"

static const gchar *usbgwctl;
static const gchar *tests_data_dir;   /* tests/data */
static const gchar *project_data_dir; /* data */

typedef struct {
    gint status;
    gchar *out;
    gchar *err;
} RunResult;

static void
run_result_free(RunResult *r)
{
    g_free(r->out);
    g_free(r->err);
    g_free(r);
}

G_DEFINE_AUTOPTR_CLEANUP_FUNC(RunResult, run_result_free)

/* Runs usbgwctl with @first and the following arguments (@args), @input
 * (if not NULL) on its standard input. */
static RunResult *
run_usbgwctl_va(GBytes *input, const gchar *first, va_list args)
{
    g_autoptr(GPtrArray) argv = g_ptr_array_new();
    g_autoptr(GSubprocess) proc = NULL;
    g_autoptr(GBytes) out = NULL;
    g_autoptr(GBytes) err = NULL;
    g_autoptr(GError) error = NULL;
    RunResult *r = g_new0(RunResult, 1);

    g_ptr_array_add(argv, (gpointer)usbgwctl);
    for (const gchar *arg = first; arg != NULL; arg = va_arg(args, const gchar *))
        g_ptr_array_add(argv, (gpointer)arg);
    g_ptr_array_add(argv, NULL);

    proc = g_subprocess_newv((const gchar *const *)argv->pdata,
                             G_SUBPROCESS_FLAGS_STDOUT_PIPE | G_SUBPROCESS_FLAGS_STDERR_PIPE |
                                 (input != NULL ? G_SUBPROCESS_FLAGS_STDIN_PIPE : 0),
                             &error);
    g_assert_no_error(error);
    g_assert_true(g_subprocess_communicate(proc, input, NULL, &out, &err, &error));
    g_assert_no_error(error);
    g_assert_true(g_subprocess_get_if_exited(proc));
    r->status = g_subprocess_get_exit_status(proc);
    r->out = g_bytes_get_size(out) > 0
                 ? g_strndup(g_bytes_get_data(out, NULL), g_bytes_get_size(out))
                 : g_strdup("");
    r->err = g_bytes_get_size(err) > 0
                 ? g_strndup(g_bytes_get_data(err, NULL), g_bytes_get_size(err))
                 : g_strdup("");
    return r;
}

/* Runs usbgwctl with @first and the following NULL-terminated arguments. */
static RunResult *run_usbgwctl(const gchar *first, ...) G_GNUC_NULL_TERMINATED;

static RunResult *
run_usbgwctl(const gchar *first, ...)
{
    va_list args;
    RunResult *r;

    va_start(args, first);
    r = run_usbgwctl_va(NULL, first, args);
    va_end(args);
    return r;
}

/* The same with @input on usbgwctl's standard input. */
static RunResult *run_usbgwctl_input(GBytes *input, const gchar *first, ...) G_GNUC_NULL_TERMINATED;

static RunResult *
run_usbgwctl_input(GBytes *input, const gchar *first, ...)
{
    va_list args;
    RunResult *r;

    va_start(args, first);
    r = run_usbgwctl_va(input, first, args);
    va_end(args);
    return r;
}

/* The object `policy check --json` printed, for @policy; owned by @parser. */
static JsonObject *
load_check_json(JsonParser *parser, const gchar *json, const gchar *policy)
{
    g_autoptr(GError) error = NULL;
    JsonObject *root;

    g_assert_true(json_parser_load_from_data(parser, json, -1, &error));
    g_assert_no_error(error);
    root = json_node_get_object(json_parser_get_root(parser));
    g_assert_cmpstr(json_object_get_string_member(root, "policy"), ==, policy);
    return root;
}

/* `policy check --json` of an invalid policy: {"policy": @name, "valid":
 * false, "errors": […]} with every diagnostic the library gives, in order. */
static void
assert_json_errors(const gchar *json, const gchar *name, GPtrArray *diagnostics)
{
    g_autoptr(JsonParser) parser = json_parser_new();
    JsonObject *root = load_check_json(parser, json, name);
    JsonArray *errors;

    g_assert_false(json_object_get_boolean_member(root, "valid"));
    errors = json_object_get_array_member(root, "errors");
    g_assert_cmpuint(json_array_get_length(errors), ==, diagnostics->len);
    for (guint i = 0; i < diagnostics->len; i++) {
        const PolicyDiagnostic *diag = g_ptr_array_index(diagnostics, i);
        JsonObject *e = json_array_get_object_element(errors, i);
        g_autofree gchar *text = g_utf8_make_valid(diag->line_text, -1);

        g_assert_cmpstr(json_object_get_string_member(e, "file"), ==, name);
        g_assert_cmpint(json_object_get_int_member(e, "line"), ==, diag->line);
        g_assert_cmpint(json_object_get_int_member(e, "column"), ==, diag->column);
        g_assert_cmpstr(json_object_get_string_member(e, "message"), ==, diag->message);
        /* JSON text is UTF-8: invalid bytes of the line become U+FFFD */
        g_assert_cmpstr(json_object_get_string_member(e, "text"), ==, text);
    }
}

static gchar *
example_policy(void)
{
    return g_build_filename(project_data_dir, "usbgw.policy", NULL);
}

static gchar *
sample_devices(void)
{
    return g_build_filename(project_data_dir, "sample-devices.json", NULL);
}

static void
assert_contains(const gchar *haystack, const gchar *needle)
{
    if (strstr(haystack, needle) == NULL)
        g_error("\"%s\" lacks \"%s\"", haystack, needle);
}

/* ---- rule files ------------------------------------------------------------ */

static void
test_good_file(gconstpointer data)
{
    const gchar *path = data;
    g_autoptr(GError) error = NULL;
    g_autoptr(Policy) policy = policy_load_file(path, NULL, &error);
    g_autoptr(RunResult) r = run_usbgwctl("policy", "check", path, NULL);
    g_autofree gchar *want = NULL;
    guint n;

    g_assert_no_error(error);
    n = policy_get_rule_count(policy);
    want = g_strdup_printf("%s: valid, %u rule%s\n", path, n, n == 1 ? "" : "s");
    g_assert_cmpstr(r->err, ==, "");
    g_assert_cmpstr(r->out, ==, want);
    g_assert_cmpint(r->status, ==, 0);
}

/* Number of characters (not UTF-8 continuation bytes) in the first @len
 * bytes of @text. */
static guint
display_width(const gchar *text, gsize len)
{
    guint width = 0;
    for (gsize i = 0; i < len && text[i] != '\0'; i++) {
        if (((guchar)text[i] & 0xc0) != 0x80)
            width++;
    }
    return width;
}

static void
test_bad_file(gconstpointer data)
{
    const gchar *path = data;
    g_autofree gchar *contents = NULL;
    gsize len = 0;
    guint line = 0, column = 0;
    g_autoptr(GError) error = NULL;
    g_autoptr(GPtrArray) diagnostics = NULL;
    g_autoptr(Policy) policy = NULL;
    g_autoptr(RunResult) r = NULL;
    g_auto(GStrv) src_lines = NULL;
    g_auto(GStrv) err_lines = NULL;
    g_autofree gchar *prefix = NULL;
    g_autofree gchar *summary = NULL;
    const PolicyDiagnostic *first;
    const gchar *src;
    const gchar *caret;
    gsize src_len;
    guint nerr;

    /* the file says where its first error is */
    g_assert_true(g_file_get_contents(path, &contents, &len, &error));
    if (sscanf(contents, "# expect: %u:%u", &line, &column) != 2)
        g_error("%s: the first line must be '# expect: LINE:COL'", path);

    /* the library agrees, and the CLI prints what the library found */
    policy = policy_load_file(path, &diagnostics, &error);
    g_assert_null(policy);
    g_assert_error(error, POLICY_ERROR, POLICY_ERROR_PARSE);
    first = g_ptr_array_index(diagnostics, 0);
    g_assert_cmpuint(first->line, ==, line);
    g_assert_cmpuint(first->column, ==, column);

    r = run_usbgwctl("policy", "check", path, NULL);
    g_assert_cmpint(r->status, ==, 2);
    g_assert_cmpstr(r->out, ==, "");
    err_lines = g_strsplit(r->err, "\n", -1);
    g_assert_cmpuint(g_strv_length(err_lines), ==, 3 * diagnostics->len + 2);
    prefix = g_strdup_printf("%s:%u:%u: error: %s", path, line, column, first->message);
    g_assert_cmpstr(err_lines[0], ==, prefix);

    /* the source line, then the caret under the column (tabs kept so that
     * it lines up in a terminal) */
    src_lines = g_strsplit(contents, "\n", -1);
    src = src_lines[line - 1];
    src_len = strlen(src);
    if (src_len > 0 && src[src_len - 1] == '\r')
        src_len--;
    g_assert_true(g_str_has_prefix(err_lines[1], "    "));
    g_assert_true(g_str_has_prefix(err_lines[2], "    "));
    caret = err_lines[2] + 4;
    g_assert_cmpuint(strlen(caret), ==, display_width(src, MIN(column - 1, src_len)) + 1);
    g_assert_cmpint(caret[strlen(caret) - 1], ==, '^');
    for (guint i = 0, k = 0; i + 1 < column && i < src_len && src[i] != '\0'; i++) {
        if (((guchar)src[i] & 0xc0) == 0x80)
            continue;
        g_assert_cmpint(caret[k], ==, src[i] == '\t' ? '\t' : ' ');
        k++;
    }

    nerr = diagnostics->len;
    summary = g_strdup_printf("%s: %u error%s, policy rejected", path, nerr, nerr == 1 ? "" : "s");
    g_assert_cmpstr(err_lines[3 * nerr], ==, summary);
    g_assert_cmpstr(err_lines[3 * nerr + 1], ==, "");

    /* --json: every diagnostic with its line and column on stdout, the
     * summary on stderr, the same exit status */
    {
        g_autoptr(RunResult) j = run_usbgwctl("policy", "check", "--json", path, NULL);
        g_autofree gchar *summary_line = g_strdup_printf("%s\n", summary);
        g_assert_cmpint(j->status, ==, 2);
        g_assert_cmpstr(j->err, ==, summary_line);
        assert_json_errors(j->out, path, diagnostics);
    }
}

/* ---- device lists ---------------------------------------------------------- */

/* The decision table's lines: a heading, a header, then one row per
 * device matching @rows (regexes), in list order. */
static GStrv
assert_table_rows(const gchar *out, const gchar *const *rows, guint n)
{
    GStrv lines = g_strsplit(out, "\n", -1);

    g_assert_cmpuint(g_strv_length(lines), ==, 2 + n + 1);
    for (guint i = 0; i < n; i++) {
        if (!g_regex_match_simple(rows[i], lines[2 + i], 0, 0))
            g_error("row %u \"%s\" does not match /%s/", i, lines[2 + i], rows[i]);
    }
    return lines;
}

/* The table: one row per device, in list order. */
static void
test_devices_table(void)
{
    g_autofree gchar *policy = example_policy();
    g_autofree gchar *devices = sample_devices();
    g_autoptr(RunResult) r = run_usbgwctl("policy", "check", policy, "--devices", devices, NULL);
    g_auto(GStrv) lines = NULL;
    g_autofree gchar *head = g_strdup_printf("%s: valid, 8 rules; 7 devices", policy);
    const gchar *rows[] = {
        "^0529:0001 port 1-1 +assign +vm \"build-01\" required +\\S+/usbgw.policy:12$",
        "^0529:0001 port 1-2 +assign +pool \"hasp-cad\" +\\S+/usbgw.policy:13$",
        "^0529:0001 port 1-3.1 +assign +pool \"hasp-cad\" +\\S+/usbgw.policy:13$",
        "^064f:2af9 serial \"3-1234567\" port 1-3.2 +assign +vm \"erp-01\" +\\S+/usbgw.policy:16$",
        "^0781:5567 serial \"4C530001\" port 1-4 +deny +- +\\S+/usbgw.policy:6 *$",
        "^046d:c31c port 1-5 +deny +- +\\S+/usbgw.policy:7 *$",
        "^096e:0006 serial \"FT0123\" port 1-6 +none +- +\\(no rule\\) *$",
    };

    g_assert_cmpint(r->status, ==, 0);
    g_assert_cmpstr(r->err, ==, "");
    lines = assert_table_rows(r->out, rows, G_N_ELEMENTS(rows));
    g_assert_cmpstr(lines[0], ==, head);
    g_assert_true(g_regex_match_simple("^DEVICE +VERDICT +TARGET +RULE *$", lines[1], 0, 0));
}

/* With --vm, the pool hands cad-01 the first free key in port order: 1-1
 * is build-01's, so 1-2. */
static void
test_devices_table_for_vm(void)
{
    g_autofree gchar *policy = example_policy();
    g_autofree gchar *devices = sample_devices();
    g_autoptr(RunResult) r =
        run_usbgwctl("policy", "check", policy, "--devices", devices, "--vm", "cad-01", NULL);
    g_auto(GStrv) lines = NULL;
    const gchar *for_vm[] = {" no", " yes (pool lease)", " no (pool spare)", " no", " no", " no",
                             " no"};

    g_assert_cmpint(r->status, ==, 0);
    lines = g_strsplit(r->out, "\n", -1);
    g_assert_true(g_str_has_suffix(lines[1], "RULE                 FOR-VM"));
    for (guint i = 0; i < G_N_ELEMENTS(for_vm); i++) {
        if (!g_str_has_suffix(lines[2 + i], for_vm[i]))
            g_error("row %u \"%s\" does not end in \"%s\"", i, lines[2 + i], for_vm[i]);
    }
}

typedef struct {
    const gchar *port;
    const gchar *verdict;
    const gchar *target_kind; /* NULL: no target */
    const gchar *target;
    gboolean required;
    gint line;   /* 0: no rule */
    gint for_vm; /* -1: absent */
} JsonWant;

static void
assert_json_decisions(const gchar *json, const gchar *policy, const JsonWant *want, guint n)
{
    g_autoptr(JsonParser) parser = json_parser_new();
    JsonObject *root = load_check_json(parser, json, policy);
    JsonArray *decisions;

    decisions = json_object_get_array_member(root, "decisions");
    g_assert_cmpuint(json_array_get_length(decisions), ==, n);
    for (guint i = 0; i < n; i++) {
        JsonObject *d = json_array_get_object_element(decisions, i);
        JsonObject *device = json_object_get_object_member(d, "device");

        g_test_message("decision %u", i);
        g_assert_cmpstr(json_object_get_string_member(device, "port"), ==, want[i].port);
        g_assert_cmpstr(json_object_get_string_member(d, "verdict"), ==, want[i].verdict);
        g_assert_cmpint(json_object_has_member(d, "target"), ==, want[i].target != NULL);
        if (want[i].target != NULL) {
            g_assert_cmpstr(json_object_get_string_member(d, "target_kind"), ==,
                            want[i].target_kind);
            g_assert_cmpstr(json_object_get_string_member(d, "target"), ==, want[i].target);
            g_assert_cmpint(json_object_get_boolean_member(d, "required"), ==, want[i].required);
        }
        g_assert_cmpint(json_object_has_member(d, "rule"), ==, want[i].line > 0);
        if (want[i].line > 0) {
            JsonObject *rule = json_object_get_object_member(d, "rule");
            g_assert_cmpstr(json_object_get_string_member(rule, "file"), ==, policy);
            g_assert_cmpint(json_object_get_int_member(rule, "line"), ==, want[i].line);
        }
        g_assert_cmpint(json_object_has_member(d, "for_vm"), ==, want[i].for_vm >= 0);
        if (want[i].for_vm >= 0)
            g_assert_cmpint(json_object_get_boolean_member(d, "for_vm"), ==, want[i].for_vm);
    }
}

static void
test_devices_json_for_vm(void)
{
    g_autofree gchar *policy = example_policy();
    g_autofree gchar *devices = sample_devices();
    g_autoptr(RunResult) r = run_usbgwctl("policy", "check", policy, "--devices", devices, "--vm",
                                          "cad-01", "--json", NULL);
    const JsonWant want[] = {
        {"1-1", "assign", "vm", "build-01", TRUE, 12, FALSE},
        {"1-2", "assign", "pool", "hasp-cad", FALSE, 13, TRUE},
        {"1-3.1", "assign", "pool", "hasp-cad", FALSE, 13, FALSE},
        {"1-3.2", "assign", "vm", "erp-01", FALSE, 16, FALSE},
        {"1-4", "deny", NULL, NULL, FALSE, 6, FALSE},
        {"1-5", "deny", NULL, NULL, FALSE, 7, FALSE},
        {"1-6", "none", NULL, NULL, FALSE, 0, FALSE},
    };

    g_assert_cmpint(r->status, ==, 0);
    g_assert_cmpstr(r->err, ==, "");
    assert_json_decisions(r->out, policy, want, G_N_ELEMENTS(want));
}

static void
test_devices_json_vm_uuid(void)
{
    g_autofree gchar *policy = example_policy();
    g_autofree gchar *devices = sample_devices();
    g_autoptr(RunResult) r =
        run_usbgwctl("policy", "check", policy, "--devices", devices, "--vm-uuid",
                     "8C1F0A2E-5D2B-4C1E-9A57-3F6B1E2D4C5A", "--json", NULL);
    /* the front port's stick is denied before the lab rule is reached */
    const JsonWant want[] = {
        {"1-1", "assign", "vm", "build-01", TRUE, 12, FALSE},
        {"1-2", "assign", "pool", "hasp-cad", FALSE, 13, FALSE},
        {"1-3.1", "assign", "pool", "hasp-cad", FALSE, 13, FALSE},
        {"1-3.2", "assign", "vm", "erp-01", FALSE, 16, FALSE},
        {"1-4", "deny", NULL, NULL, FALSE, 6, FALSE},
        {"1-5", "deny", NULL, NULL, FALSE, 7, FALSE},
        {"1-6", "none", NULL, NULL, FALSE, 0, FALSE},
    };

    g_assert_cmpint(r->status, ==, 0);
    assert_json_decisions(r->out, policy, want, G_N_ELEMENTS(want));
}

static void
test_devices_json_share(void)
{
    g_autofree gchar *policy = example_policy();
    g_autofree gchar *devices = sample_devices();
    g_autoptr(RunResult) alice =
        run_usbgwctl("policy", "check", policy, "--devices", devices, "--user", "alice", "--vm",
                     "ws-alice", "--json", NULL);
    g_autoptr(RunResult) carol =
        run_usbgwctl("policy", "check", policy, "--devices", devices, "--user", "carol", "--group",
                     "users", "--group", "engineering", "--vm", "ws-carol", "--json", NULL);
    g_autoptr(RunResult) dave = run_usbgwctl("policy", "check", policy, "--devices", devices,
                                             "--user", "dave", "--vm", "ws-dave", "--json", NULL);
    JsonWant want[] = {
        {"1-1", "deny", NULL, NULL, FALSE, 0, FALSE},
        {"1-2", "deny", NULL, NULL, FALSE, 0, FALSE},
        {"1-3.1", "deny", NULL, NULL, FALSE, 0, FALSE},
        {"1-3.2", "deny", NULL, NULL, FALSE, 0, FALSE},
        {"1-4", "deny", NULL, NULL, FALSE, 6, FALSE},
        {"1-5", "deny", NULL, NULL, FALSE, 7, FALSE},
        {"1-6", "share", "vm", "ws-alice", FALSE, 22, TRUE},
    };

    g_assert_cmpint(alice->status, ==, 0);
    assert_json_decisions(alice->out, policy, want, G_N_ELEMENTS(want));
    g_assert_cmpint(carol->status, ==, 0);
    want[6] = (JsonWant){"1-6", "share", "vm", "ws-*", FALSE, 23, TRUE};
    assert_json_decisions(carol->out, policy, want, G_N_ELEMENTS(want));
    g_assert_cmpint(dave->status, ==, 0);
    want[6] = (JsonWant){"1-6", "deny", NULL, NULL, FALSE, 0, FALSE};
    assert_json_decisions(dave->out, policy, want, G_N_ELEMENTS(want));
}

/* The CLI's JSON says what the library decides for the same list. */
static void
test_devices_json_matches_library(void)
{
    g_autofree gchar *path = example_policy();
    g_autofree gchar *devices_path = sample_devices();
    g_autoptr(RunResult) r =
        run_usbgwctl("policy", "check", path, "--devices", devices_path, "--json", NULL);
    g_autoptr(GError) error = NULL;
    g_autoptr(Policy) policy = policy_load_file(path, NULL, &error);
    g_autoptr(GPtrArray) devices = gw_device_list_load(devices_path, &error);
    g_autoptr(JsonParser) parser = json_parser_new();
    JsonArray *decisions;

    g_assert_no_error(error);
    g_assert_cmpuint(devices->len, ==, 7);
    g_assert_true(json_parser_load_from_data(parser, r->out, -1, &error));
    decisions = json_object_get_array_member(json_node_get_object(json_parser_get_root(parser)),
                                             "decisions");
    g_assert_cmpuint(json_array_get_length(decisions), ==, devices->len);
    for (guint i = 0; i < devices->len; i++) {
        JsonObject *d = json_array_get_object_element(decisions, i);
        PolicyDecision decision;

        policy_decide(policy, POLICY_ORIGIN_HOST, g_ptr_array_index(devices, i), NULL, &decision);
        g_assert_cmpstr(json_object_get_string_member(d, "verdict"), ==,
                        policy_verdict_to_string(decision.verdict));
        if (decision.file != NULL)
            g_assert_cmpint(
                json_object_get_int_member(json_object_get_object_member(d, "rule"), "line"), ==,
                decision.line);
        else
            g_assert_false(json_object_has_member(d, "rule"));
    }
}

static void
test_share_needs_vm(void)
{
    g_autofree gchar *policy = example_policy();
    g_autofree gchar *devices = sample_devices();
    g_autoptr(RunResult) r =
        run_usbgwctl("policy", "check", policy, "--devices", devices, "--user", "alice", NULL);

    g_assert_cmpint(r->status, ==, 1);
    g_assert_cmpstr(r->out, ==, "");
    assert_contains(r->err, "name the VM with --vm or --vm-uuid");
}

typedef struct {
    const gchar *file;
    const gchar *message;
} BadDevicesCase;

static const BadDevicesCase bad_devices_cases[] = {
    {"bad-malformed.json", "Parse error"},
    {"bad-root.json", "expected {\"devices\": [ … ]} or an array of devices"},
    {"bad-device-not-object.json", "devices[0]: expected an object"},
    {"bad-vid-missing.json", "devices[0]: 'vid' is missing"},
    {"bad-vid-not-hex.json", "devices[1].vid: expected a string of 4 hex digits"},
    {"bad-pid-number.json", "devices[0].pid: expected a string of 4 hex digits"},
    {"bad-pid-short.json", "devices[0].pid: expected a string of 4 hex digits"},
    {"bad-bcd-device.json", "devices[0].bcd_device: expected a string of 4 hex digits"},
    {"bad-serial-number.json", "devices[1].serial: expected a string"},
    {"bad-port-array.json", "devices[0].port: expected a string"},
    {"bad-class-short.json", "devices[0].class: expected \"CC:SS:PP\" in hex"},
    {"bad-interfaces-not-array.json", "devices[0].interfaces: expected an array"},
    {"bad-interface-hex.json", "devices[0].interfaces[1]: expected \"CC:SS:PP\" in hex"},
    {"bad-gateway-name.json",
     "devices[1].gateway: expected a gateway name (a letter or digit, then letters, digits, '.', "
     "'_' or '-'; at most 64 bytes)"},
    {"bad-gateway-array.json", "devices[0].gateway: expected a string"},
};

static void
test_bad_devices(gconstpointer data)
{
    const BadDevicesCase *c = data;
    g_autofree gchar *policy = example_policy();
    g_autofree gchar *devices = g_build_filename(tests_data_dir, "devices", c->file, NULL);
    g_autoptr(RunResult) r = run_usbgwctl("policy", "check", policy, "--devices", devices, NULL);
    g_autofree gchar *prefix = g_strdup_printf("usbgwctl: %s: ", devices);

    g_assert_cmpint(r->status, ==, 1);
    g_assert_cmpstr(r->out, ==, "");
    g_assert_true(g_str_has_prefix(r->err, prefix));
    assert_contains(r->err, c->message);
    /* one line, no crash report */
    g_assert_cmpuint(strlen(r->err), ==, (gsize)(strchr(r->err, '\n') - r->err) + 1);
}

/* Every bad-*.json of tests/data/devices has a case above. */
static void
test_bad_devices_all_listed(void)
{
    g_autofree gchar *dir_path = g_build_filename(tests_data_dir, "devices", NULL);
    g_autoptr(GDir) dir = g_dir_open(dir_path, 0, NULL);
    const gchar *name;
    guint seen = 0;

    g_assert_nonnull(dir);
    while ((name = g_dir_read_name(dir)) != NULL) {
        gboolean listed = FALSE;
        if (!g_str_has_prefix(name, "bad-"))
            continue;
        for (guint i = 0; i < G_N_ELEMENTS(bad_devices_cases); i++)
            listed = listed || g_str_equal(bad_devices_cases[i].file, name);
        if (!listed)
            g_error("%s has no case in bad_devices_cases", name);
        seen++;
    }
    g_assert_cmpuint(seen, ==, G_N_ELEMENTS(bad_devices_cases));
}

static void
test_missing_devices_file(void)
{
    g_autofree gchar *policy = example_policy();
    g_autoptr(RunResult) r =
        run_usbgwctl("policy", "check", policy, "--devices", "/nonexistent/devices.json", NULL);
    g_assert_cmpint(r->status, ==, 1);
    assert_contains(r->err, "devices.json");
}

/* ---- devices on gateways, export decisions -------------------------------------- */

static gchar *
gateways_policy(void)
{
    return g_build_filename(tests_data_dir, "policy", "good", "gateways.rules", NULL);
}

static gchar *
gateway_devices(void)
{
    return g_build_filename(tests_data_dir, "devices", "gateway-devices.json", NULL);
}

/* Imported devices say where they are; export decisions print their
 * gateway glob; a pool holds keys of two gateways in the same port. */
static void
test_gateway_devices_table(void)
{
    g_autofree gchar *policy = gateways_policy();
    g_autofree gchar *devices = gateway_devices();
    g_autoptr(RunResult) r =
        run_usbgwctl("policy", "check", policy, "--devices", devices, "--vm", "cad-02", NULL);
    g_auto(GStrv) lines = NULL;
    const gchar *rows[] = {
        "^0529:0001 port 1-1 +assign +vm \"build-01\" +\\S+/gateways.rules:7 no$",
        "^0529:0001 port 1-2 +export +gateway \"hv-\\*\" +\\S+/gateways.rules:8 no$",
        "^064f:2af9 serial \"3-1234567\" port 1-3 +export +gateway \"hv-01.example\" "
        "+\\S+/gateways.rules:9 no$",
        "^0529:0001 port 2-1 on gateway \"dongles1\" +assign +pool \"cad\" "
        "+\\S+/gateways.rules:13 yes \\(pool lease\\)$",
        "^0529:0001 port 2-1 on gateway \"dongles2\" +assign +pool \"cad\" "
        "+\\S+/gateways.rules:14 no \\(pool spare\\)$",
        /* a rule without on gateway takes imported devices too */
        "^0529:0001 port 1-1 on gateway \"dongles2\" +assign +vm \"build-01\" "
        "+\\S+/gateways.rules:7 no$",
        "^0781:5567 port 1-4 on gateway \"untrusted-7\" +deny +- +\\S+/gateways.rules:15 no$",
    };

    g_assert_cmpint(r->status, ==, 0);
    g_assert_cmpstr(r->err, ==, "");
    lines = assert_table_rows(r->out, rows, G_N_ELEMENTS(rows));
    g_assert_true(g_str_has_suffix(lines[1], "RULE                 FOR-VM"));
}

typedef struct {
    const gchar *gateway; /* the device's, NULL for this host's */
    const gchar *verdict;
    const gchar *target_kind; /* NULL: no target */
    const gchar *target;
    gint line; /* 0: no rule */
} GatewayWant;

static void
assert_gateway_decisions(const gchar *json, const GatewayWant *want, guint n)
{
    g_autoptr(JsonParser) parser = json_parser_new();
    g_autoptr(GError) error = NULL;
    JsonArray *decisions;

    g_assert_true(json_parser_load_from_data(parser, json, -1, &error));
    g_assert_no_error(error);
    decisions = json_object_get_array_member(json_node_get_object(json_parser_get_root(parser)),
                                             "decisions");
    g_assert_cmpuint(json_array_get_length(decisions), ==, n);
    for (guint i = 0; i < n; i++) {
        JsonObject *d = json_array_get_object_element(decisions, i);
        JsonObject *device = json_object_get_object_member(d, "device");

        g_test_message("decision %u", i);
        g_assert_cmpstr(json_object_get_string_member_with_default(device, "gateway", NULL), ==,
                        want[i].gateway);
        g_assert_cmpstr(json_object_get_string_member(d, "verdict"), ==, want[i].verdict);
        g_assert_cmpstr(json_object_get_string_member_with_default(d, "target_kind", NULL), ==,
                        want[i].target_kind);
        g_assert_cmpstr(json_object_get_string_member_with_default(d, "target", NULL), ==,
                        want[i].target);
        g_assert_cmpint(json_object_has_member(d, "rule"), ==, want[i].line > 0);
        if (want[i].line > 0)
            g_assert_cmpint(
                json_object_get_int_member(json_object_get_object_member(d, "rule"), "line"), ==,
                want[i].line);
    }
}

/* --gateway: export rules decide for that importing gateway only; a
 * device no export rule offers to it falls to the later rules. */
static void
test_gateway_devices_json(void)
{
    g_autofree gchar *policy = gateways_policy();
    g_autofree gchar *devices = gateway_devices();
    g_autoptr(RunResult) any =
        run_usbgwctl("policy", "check", policy, "--devices", devices, "--json", NULL);
    g_autoptr(RunResult) hv = run_usbgwctl("policy", "check", policy, "--devices", devices,
                                           "--gateway", "hv-01.example", "--json", NULL);
    g_autoptr(RunResult) ws = run_usbgwctl("policy", "check", policy, "--devices", devices,
                                           "--gateway", "ws-01", "--json", NULL);
    GatewayWant want[] = {
        {NULL, "assign", "vm", "build-01", 7},
        {NULL, "export", "gateway", "hv-*", 8},
        {NULL, "export", "gateway", "hv-01.example", 9},
        {"dongles1", "assign", "pool", "cad", 13},
        {"dongles2", "assign", "pool", "cad", 14},
        {"dongles2", "assign", "vm", "build-01", 7},
        {"untrusted-7", "deny", NULL, NULL, 15},
    };

    g_assert_cmpint(any->status, ==, 0);
    assert_gateway_decisions(any->out, want, G_N_ELEMENTS(want));
    g_assert_cmpint(hv->status, ==, 0);
    assert_gateway_decisions(hv->out, want, G_N_ELEMENTS(want));
    g_assert_cmpint(ws->status, ==, 0);
    want[1] = (GatewayWant){NULL, "none", NULL, NULL, 0};
    want[2] = (GatewayWant){NULL, "none", NULL, NULL, 0};
    assert_gateway_decisions(ws->out, want, G_N_ELEMENTS(want));
}

/* The CLI's export answers are the library's policy_exports_to(). */
static void
test_gateway_json_matches_library(void)
{
    const gchar *const gateways[] = {"hv-7", "hv-01.example", "ws-01"};
    g_autofree gchar *path = gateways_policy();
    g_autofree gchar *devices_path = gateway_devices();
    g_autoptr(GError) error = NULL;
    g_autoptr(Policy) policy = policy_load_file(path, NULL, &error);
    g_autoptr(GPtrArray) devices = gw_device_list_load(devices_path, &error);

    g_assert_no_error(error);
    for (guint g = 0; g < G_N_ELEMENTS(gateways); g++) {
        g_autoptr(RunResult) r = run_usbgwctl("policy", "check", path, "--devices", devices_path,
                                              "--gateway", gateways[g], "--json", NULL);
        g_autoptr(JsonParser) parser = json_parser_new();
        JsonArray *decisions;

        g_assert_true(json_parser_load_from_data(parser, r->out, -1, &error));
        decisions = json_object_get_array_member(json_node_get_object(json_parser_get_root(parser)),
                                                 "decisions");
        g_assert_cmpuint(json_array_get_length(decisions), ==, devices->len);
        for (guint i = 0; i < devices->len; i++) {
            JsonObject *d = json_array_get_object_element(decisions, i);
            PolicyDecision decision;
            gboolean exported =
                policy_exports_to(policy, g_ptr_array_index(devices, i), gateways[g], &decision);

            g_assert_cmpstr(json_object_get_string_member(d, "verdict"), ==,
                            policy_verdict_to_string(decision.verdict));
            g_assert_cmpint(exported, ==,
                            g_str_equal(json_object_get_string_member(d, "verdict"), "export"));
        }
    }
}

static void
test_gateway_option_errors(void)
{
    g_autofree gchar *policy = gateways_policy();
    g_autofree gchar *devices = gateway_devices();
    g_autoptr(RunResult) bad =
        run_usbgwctl("policy", "check", policy, "--devices", devices, "--gateway", "hv 01", NULL);
    g_autoptr(RunResult) with_user =
        run_usbgwctl("policy", "check", policy, "--devices", devices, "--gateway", "hv-01",
                     "--user", "alice", "--vm", "ws-alice", NULL);

    g_assert_cmpint(bad->status, ==, 1);
    g_assert_cmpstr(bad->out, ==, "");
    g_assert_cmpstr(bad->err, ==,
                    "usbgwctl: --gateway \"hv 01\" is not a gateway name (a letter or digit, then "
                    "letters, digits, '.', '_' or '-'; at most 64 bytes)\n");
    g_assert_cmpint(with_user->status, ==, 1);
    g_assert_cmpstr(with_user->out, ==, "");
    assert_contains(with_user->err, "give one or the other");
}

/* The example policy's commented gateway examples are valid rules: the
 * policy with them uncommented loads, and they decide as their comments
 * say. */
static void
test_example_gateway_comments(void)
{
    g_autofree gchar *path = example_policy();
    g_autofree gchar *text = NULL;
    g_autoptr(GString) uncommented = g_string_new(NULL);
    g_auto(GStrv) lines = NULL;
    g_autoptr(GError) error = NULL;
    g_autoptr(Policy) policy = NULL;
    g_autoptr(PolicyDevice) local = policy_device_new(0x0529, 0x0002);
    g_autoptr(PolicyDevice) imported = policy_device_new(0x064f, 0x1234);
    PolicyDecision decision;
    guint found = 0;
    guint last_export = 0, last_assign = 0;

    g_assert_true(g_file_get_contents(path, &text, NULL, &error));
    lines = g_strsplit(text, "\n", -1);
    for (guint i = 0; lines[i] != NULL; i++) {
        const gchar *line = lines[i];
        if (g_str_has_prefix(line, "#export ")) {
            last_export = i + 1;
            line++;
            found++;
        } else if (g_str_has_prefix(line, "#assign ")) {
            last_assign = i + 1;
            line++;
            found++;
        }
        g_string_append_printf(uncommented, "%s\n", line);
    }
    g_assert_cmpuint(found, ==, 2);
    policy = policy_load_data(uncommented->str, uncommented->len, "uncommented", NULL, &error);
    g_assert_no_error(error);
    g_assert_cmpuint(policy_get_rule_count(policy), ==, 8 + found);

    /* another SafeNet key of this host is offered to hypervisors only; a
     * HASP HL key is still assigned here (an earlier rule) */
    g_assert_true(policy_exports_to(policy, local, "hv-01", &decision));
    g_assert_cmpuint(decision.line, ==, last_export);
    g_assert_false(policy_exports_to(policy, local, "ws-01", &decision));
    local->product_id = 0x0001;
    g_assert_false(policy_exports_to(policy, local, "hv-01", &decision));
    g_assert_cmpint(decision.verdict, ==, POLICY_VERDICT_ASSIGN);
    /* a CodeMeter key from dongles1 goes to erp-01, one from elsewhere
     * to nobody */
    imported->gateway = g_strdup("dongles1");
    policy_decide(policy, POLICY_ORIGIN_HOST, imported, NULL, &decision);
    g_assert_cmpint(decision.verdict, ==, POLICY_VERDICT_ASSIGN);
    g_assert_cmpuint(decision.line, ==, last_assign);
    g_assert_cmpstr(decision.target, ==, "erp-01");
    g_free(imported->gateway);
    imported->gateway = g_strdup("dongles2");
    policy_decide(policy, POLICY_ORIGIN_HOST, imported, NULL, &decision);
    g_assert_cmpint(decision.verdict, ==, POLICY_VERDICT_NONE);
}

/* ---- the policy itself ------------------------------------------------------ */

static void
test_check_json_without_devices(void)
{
    g_autofree gchar *policy = example_policy();
    g_autoptr(RunResult) r = run_usbgwctl("policy", "check", policy, "--json", NULL);
    g_autoptr(JsonParser) parser = json_parser_new();
    g_autoptr(GError) error = NULL;
    JsonObject *root;

    g_assert_cmpint(r->status, ==, 0);
    g_assert_true(json_parser_load_from_data(parser, r->out, -1, &error));
    root = json_node_get_object(json_parser_get_root(parser));
    g_assert_cmpstr(json_object_get_string_member(root, "policy"), ==, policy);
    g_assert_true(json_object_get_boolean_member(root, "valid"));
    g_assert_cmpint(json_object_get_int_member(root, "rules"), ==, 8);
}

/* `policy check -` reads the policy from standard input and names it
 * "<stdin>": a good one is valid, a bad one gets the library's
 * diagnostics, one larger than a policy may be is refused as too large. */
static void
test_check_stdin(void)
{
    g_autofree gchar *good_path = example_policy();
    g_autofree gchar *good = NULL;
    g_autoptr(GBytes) good_input = NULL;
    const gchar *bad = "# two problems\nassign id 0529:0001 to vm \"a\"\nassign id zzzz to vm "
                       "\"x\"\ndeny with-interface 08:*\n";
    g_autoptr(GBytes) bad_input = g_bytes_new_static(bad, strlen(bad));
    g_autoptr(GPtrArray) diagnostics = NULL;
    g_autoptr(GError) error = NULL;
    g_autoptr(GError) bad_error = NULL;
    g_autoptr(Policy) library =
        policy_load_data(bad, strlen(bad), "<stdin>", &diagnostics, &bad_error);
    gsize big_len = 4 * 1024 * 1024 + 16;
    g_autoptr(GBytes) big = g_bytes_new_take(g_strnfill(big_len, '#'), big_len);
    g_autoptr(RunResult) r = NULL;
    g_autoptr(RunResult) b = NULL;
    g_autoptr(RunResult) text = NULL;
    g_autoptr(RunResult) large = NULL;
    g_autoptr(Policy) policy = NULL;
    g_autofree gchar *want = NULL;

    g_assert_true(g_file_get_contents(good_path, &good, NULL, NULL));
    good_input = g_bytes_new(good, strlen(good));
    policy = policy_load_file(good_path, NULL, &error);
    g_assert_no_error(error);
    r = run_usbgwctl_input(good_input, "policy", "check", "-", NULL);
    want = g_strdup_printf("<stdin>: valid, %u rules\n", policy_get_rule_count(policy));
    g_assert_cmpstr(r->out, ==, want);
    g_assert_cmpint(r->status, ==, 0);

    g_assert_null(library);
    g_assert_cmpuint(diagnostics->len, ==, 2);
    b = run_usbgwctl_input(bad_input, "policy", "check", "--json", "-", NULL);
    g_assert_cmpint(b->status, ==, 2);
    assert_json_errors(b->out, "<stdin>", diagnostics);
    text = run_usbgwctl_input(bad_input, "policy", "check", "-", NULL);
    g_assert_cmpint(text->status, ==, 2);
    g_assert_true(g_str_has_prefix(text->err, "<stdin>:3:11: error: "));

    large = run_usbgwctl_input(big, "policy", "check", "--json", "-", NULL);
    g_assert_cmpint(large->status, ==, 2);
    g_assert_cmpstr(large->out, ==, "");
    assert_contains(large->err, "more than the 4194304 allowed");
}

static void
test_check_directory(void)
{
    g_autoptr(RunResult) r = run_usbgwctl("policy", "check", tests_data_dir, NULL);
    g_autofree gchar *want =
        g_strdup_printf("usbgwctl: cannot read policy %s: not a regular file\n", tests_data_dir);
    g_assert_cmpint(r->status, ==, 1);
    g_assert_cmpstr(r->err, ==, want);
}

static void
test_check_missing(void)
{
    g_autoptr(RunResult) r = run_usbgwctl("policy", "check", "/nonexistent/x.rules", NULL);
    g_assert_cmpint(r->status, ==, 1);
    assert_contains(r->err, "usbgwctl: cannot read policy /nonexistent/x.rules: ");
}

static void
test_usage_errors(void)
{
    g_autoptr(RunResult) verb = run_usbgwctl("policy", "frobnicate", "x", NULL);
    g_autoptr(RunResult) command = run_usbgwctl("frobnicate", NULL);
    g_assert_cmpint(verb->status, ==, 1);
    g_assert_cmpint(command->status, ==, 1);
    assert_contains(command->err, "unknown command 'frobnicate'");
}

/* ---- usbgwctl policy filter --------------------------------------------------- */

static void
test_filter_for_vm(void)
{
    g_autofree gchar *policy = example_policy();
    g_autoptr(RunResult) r = run_usbgwctl("policy", "filter", policy, "--vm", "erp-01", NULL);
    g_autofree gchar *notes = g_strdup_printf(
        "note: %s:7: deny rule left out of the filter: usbredirfilter cannot express "
        "with-interface, and a wider deny could block allowed devices\n"
        "note: %s:16: allow widened to its vendor/product id in the filter: usbredirfilter cannot "
        "express serial (usbgwd still enforces the exact rule)\n",
        policy, policy);

    g_assert_cmpint(r->status, ==, 0);
    g_assert_cmpstr(r->out, ==, "0x08,-1,-1,-1,0|-1,0x064f,0x2af9,-1,1|-1,-1,-1,-1,0\n");
    g_assert_cmpstr(r->err, ==, notes);
}

static void
test_filter_all_vms(void)
{
    g_autofree gchar *policy = example_policy();
    g_autoptr(RunResult) r = run_usbgwctl("policy", "filter", policy, NULL);
    g_auto(GStrv) notes = NULL;

    g_assert_cmpint(r->status, ==, 0);
    g_assert_cmpstr(r->out, ==,
                    "0x08,-1,-1,-1,0|-1,0x0529,0x0001,-1,1|-1,0x0529,0x0001,-1,1|"
                    "-1,0x064f,0x2af9,-1,1|-1,-1,-1,-1,1|-1,0x096e,-1,-1,1|-1,-1,-1,-1,1|"
                    "-1,-1,-1,-1,0\n");
    notes = g_strsplit(r->err, "\n", -1);
    g_assert_cmpuint(g_strv_length(notes), ==, 7);
}

static void
test_filter_exact_policy(void)
{
    g_autofree gchar *policy =
        g_build_filename(tests_data_dir, "policy", "good", "hasp-hl-no-serial.rules", NULL);
    g_autoptr(RunResult) r = run_usbgwctl("policy", "filter", policy, "--vm", "cad-02", NULL);
    g_assert_cmpint(r->status, ==, 0);
    g_assert_cmpstr(r->out, ==, "-1,-1,-1,-1,0\n");
    g_assert_cmpstr(r->err, ==, "");
}

static void
test_filter_bad_policy(void)
{
    g_autofree gchar *policy =
        g_build_filename(tests_data_dir, "policy", "bad", "duplicate-pool.rules", NULL);
    g_autoptr(RunResult) r = run_usbgwctl("policy", "filter", policy, NULL);
    g_autofree gchar *want =
        g_strdup_printf("%s:4:6: error: pool \"cad\" is already defined at line 3", policy);
    g_assert_cmpint(r->status, ==, 2);
    g_assert_cmpstr(r->out, ==, "");
    g_assert_true(g_str_has_prefix(r->err, want));
}

/* ---- main ------------------------------------------------------------------------ */

static void
add_file_tests(GPtrArray *keep, const gchar *kind, GTestDataFunc func)
{
    g_autofree gchar *dir_path = g_build_filename(tests_data_dir, "policy", kind, NULL);
    g_autoptr(GError) error = NULL;
    g_autoptr(GDir) dir = g_dir_open(dir_path, 0, &error);
    g_autoptr(GPtrArray) names = g_ptr_array_new_with_free_func(g_free);
    const gchar *name;

    g_assert_no_error(error);
    while ((name = g_dir_read_name(dir)) != NULL) {
        if (g_str_has_suffix(name, ".rules"))
            g_ptr_array_add(names, g_strdup(name));
    }
    g_assert_cmpuint(names->len, >=, 8);
    for (guint i = 0; i < names->len; i++) {
        const gchar *file = g_ptr_array_index(names, i);
        gchar *path = g_build_filename(dir_path, file, NULL);
        g_autofree gchar *test_path = g_strdup_printf("/policy/files/%s/%s", kind, file);
        g_ptr_array_add(keep, path);
        g_test_add_data_func(test_path, path, func);
    }
}

int
main(int argc, char **argv)
{
    g_autoptr(GPtrArray) keep = g_ptr_array_new_with_free_func(g_free);

    g_test_init(&argc, &argv, NULL);
    if (argc != 4) {
        g_printerr("Usage: %s [--tap] USBGWCTL TESTS_DATA_DIR PROJECT_DATA_DIR\n", argv[0]);
        return 1;
    }
    usbgwctl = argv[1];
    tests_data_dir = argv[2];
    project_data_dir = argv[3];

    add_file_tests(keep, "good", test_good_file);
    add_file_tests(keep, "bad", test_bad_file);
    g_test_add_func("/policy/files/devices/table", test_devices_table);
    g_test_add_func("/policy/files/devices/table-for-vm", test_devices_table_for_vm);
    g_test_add_func("/policy/files/devices/json-for-vm", test_devices_json_for_vm);
    g_test_add_func("/policy/files/devices/json-vm-uuid", test_devices_json_vm_uuid);
    g_test_add_func("/policy/files/devices/json-share", test_devices_json_share);
    g_test_add_func("/policy/files/devices/json-matches-library",
                    test_devices_json_matches_library);
    g_test_add_func("/policy/files/devices/share-needs-vm", test_share_needs_vm);
    for (guint i = 0; i < G_N_ELEMENTS(bad_devices_cases); i++) {
        g_autofree gchar *path =
            g_strdup_printf("/policy/files/devices/%s", bad_devices_cases[i].file);
        g_test_add_data_func(path, &bad_devices_cases[i], test_bad_devices);
    }
    g_test_add_func("/policy/files/devices/bad-all-listed", test_bad_devices_all_listed);
    g_test_add_func("/policy/files/gateways/table", test_gateway_devices_table);
    g_test_add_func("/policy/files/gateways/json", test_gateway_devices_json);
    g_test_add_func("/policy/files/gateways/json-matches-library",
                    test_gateway_json_matches_library);
    g_test_add_func("/policy/files/gateways/option-errors", test_gateway_option_errors);
    g_test_add_func("/policy/files/gateways/example-comments", test_example_gateway_comments);
    g_test_add_func("/policy/files/devices/missing", test_missing_devices_file);
    g_test_add_func("/policy/files/check/json", test_check_json_without_devices);
    g_test_add_func("/policy/files/check/directory", test_check_directory);
    g_test_add_func("/policy/files/check/stdin", test_check_stdin);
    g_test_add_func("/policy/files/check/missing", test_check_missing);
    g_test_add_func("/policy/files/usage", test_usage_errors);
    g_test_add_func("/policy/files/filter/for-vm", test_filter_for_vm);
    g_test_add_func("/policy/files/filter/all-vms", test_filter_all_vms);
    g_test_add_func("/policy/files/filter/exact-policy", test_filter_exact_policy);
    g_test_add_func("/policy/files/filter/bad-policy", test_filter_bad_policy);
    return g_test_run();
}
