/* hook_control_build_request() and hook_control_parse_reply(): the request
 * line is exactly docs/control.md's "hook" command (with the VM's usb-redir
 * sockets for "migrate" only), and every reply line,
 * good or broken, gives a HookReply or a PROTOCOL error. The exchange over
 * a socket is tested with the real program (test-usbgw-hook.py). */
#include <json-glib/json-glib.h>
#include <string.h>

#include "hook-control.h"

#define UUID "8c1f0a2e-5d2b-4c1e-9a57-3f6b1e2d4c5a"

static JsonObject *
parse_object(const gchar *text)
{
    g_autoptr(JsonParser) parser = json_parser_new();
    g_autoptr(GError) error = NULL;

    json_parser_load_from_data(parser, text, -1, &error);
    g_assert_no_error(error);
    g_assert_true(JSON_NODE_HOLDS_OBJECT(json_parser_get_root(parser)));
    return json_object_ref(json_node_get_object(json_parser_get_root(parser)));
}

static void
assert_request(const gchar *name, const gchar *op, const gchar *sub_op, const gchar *want_op,
               const gchar *want_sub_op)
{
    HookDomain domain = {.name = (gchar *)name, .uuid = (gchar *)UUID};
    g_autofree gchar *request = hook_control_build_request(&domain, op, sub_op);
    g_autoptr(JsonObject) object = NULL;
    g_autoptr(GList) members = NULL;

    g_assert_null(strchr(request, '\n'));
    g_assert_null(strchr(request, '\r'));
    object = parse_object(request);
    members = json_object_get_members(object);
    /* no sockets: the domain has none, and only "migrate" would carry them */
    if (strcmp(op, "migrate") == 0) {
        g_assert_cmpuint(g_list_length(members), ==, 6);
        g_assert_cmpuint(json_array_get_length(json_object_get_array_member(object, "sockets")), ==,
                         0);
    } else {
        g_assert_cmpuint(g_list_length(members), ==, 5);
    }
    g_assert_cmpstr(json_object_get_string_member(object, "command"), ==, "hook");
    g_assert_cmpstr(json_object_get_string_member(object, "domain"), ==, name);
    g_assert_cmpstr(json_object_get_string_member(object, "uuid"), ==, UUID);
    g_assert_cmpstr(json_object_get_string_member(object, "op"), ==, want_op);
    g_assert_cmpstr(json_object_get_string_member(object, "sub_op"), ==, want_sub_op);
}

static void
test_request_plain(void)
{
    HookDomain domain = {.name = (gchar *)"cad-01", .uuid = (gchar *)UUID};
    g_autofree gchar *request = hook_control_build_request(&domain, "prepare", "begin");

    /* the exact bytes, so that the schema cannot drift unnoticed */
    g_assert_cmpstr(request, ==,
                    "{\"command\":\"hook\",\"domain\":\"cad-01\",\"uuid\":\"" UUID
                    "\",\"op\":\"prepare\",\"sub_op\":\"begin\"}");
    assert_request("cad-01", "prepare", "begin", "prepare", "begin");
}

/* A name with quotes, backslashes and a newline (XML allows &#10;) stays
 * one line and round-trips. */
static void
test_request_escapes(void)
{
    assert_request("a\"b\\c\nd\te\x01", "started", "begin", "started", "begin");
    assert_request("caf\xc3\xa9", "stopped", "end", "stopped", "end");
}

/* "migrate" lists the VM's sockets in order, escaped; an empty or absent
 * list is an empty array. */
static void
test_request_migrate_sockets(void)
{
    gchar *sockets[] = {(gchar *)"/run/usbgw/vm/a/0.sock", (gchar *)"/run/q\"uote\\d\n.sock", NULL};
    gchar *none[] = {NULL};
    HookDomain domain = {.name = (gchar *)"cad-01", .uuid = (gchar *)UUID, .sockets = sockets};
    g_autofree gchar *request = hook_control_build_request(&domain, "migrate", "begin");
    g_autofree gchar *empty = NULL;
    g_autofree gchar *absent = NULL;

    g_assert_cmpstr(request, ==,
                    "{\"command\":\"hook\",\"domain\":\"cad-01\",\"uuid\":\"" UUID
                    "\",\"op\":\"migrate\",\"sub_op\":\"begin\",\"sockets\":"
                    "[\"/run/usbgw/vm/a/0.sock\",\"/run/q\\\"uote\\\\d\\n.sock\"]}");
    domain.sockets = none;
    empty = hook_control_build_request(&domain, "migrate", "begin");
    g_assert_nonnull(g_strrstr(empty, ",\"sub_op\":\"begin\",\"sockets\":[]}"));
    domain.sockets = NULL;
    absent = hook_control_build_request(&domain, "migrate", "begin");
    g_assert_cmpstr(absent, ==, empty);
}

/* Only "migrate" carries sockets, whatever the domain has. */
static void
test_request_other_ops_without_sockets(void)
{
    const gchar *ops[] = {"prepare", "started",   "stopped",  "release",
                          "restore", "reconnect", "migrate ", "MIGRATE"};
    gchar *sockets[] = {(gchar *)"/run/usbgw/vm/a/0.sock", NULL};
    HookDomain domain = {.name = (gchar *)"vm1", .uuid = (gchar *)UUID, .sockets = sockets};

    for (guint i = 0; i < G_N_ELEMENTS(ops); i++) {
        g_autofree gchar *request = hook_control_build_request(&domain, ops[i], "begin");
        g_autoptr(JsonObject) object = parse_object(request);

        g_assert_false(json_object_has_member(object, "sockets"));
        g_assert_cmpstr(json_object_get_string_member(object, "op"), ==, ops[i]);
    }
}

/* The most sockets a domain may have, each as long as a path can be and
 * with every byte escaped, still fit usbgwd's line limit. */
static void
test_request_most_sockets_fit(void)
{
    g_autofree gchar *path = g_strnfill(HOOK_DOMAIN_MAX_SOCKET_PATH, '\001');
    gchar *sockets[HOOK_DOMAIN_MAX_SOCKETS + 1] = {NULL};
    HookDomain domain = {.name = (gchar *)"vm1", .uuid = (gchar *)UUID, .sockets = sockets};
    g_autofree gchar *request = NULL;
    g_autoptr(JsonObject) object = NULL;

    for (guint i = 0; i < HOOK_DOMAIN_MAX_SOCKETS; i++)
        sockets[i] = path;
    request = hook_control_build_request(&domain, "migrate", "begin");
    g_assert_cmpuint(strlen(request) + 1, <=, HOOK_CONTROL_MAX_LINE);
    object = parse_object(request);
    g_assert_cmpuint(json_array_get_length(json_object_get_array_member(object, "sockets")), ==,
                     HOOK_DOMAIN_MAX_SOCKETS);
}

/* argv bytes that are not UTF-8 become U+FFFD, never invalid JSON. */
static void
test_request_invalid_utf8_argv(void)
{
    assert_request("vm1", "migrate", "beg\xffin", "migrate", "beg\xef\xbf\xbdin");
}

typedef struct {
    const gchar *name;
    const gchar *line;
    gboolean want_ok;
    const gchar *want_code;    /* NULL: a PROTOCOL error is expected (unless want_ok) */
    const gchar *want_message; /* with want_code; or a part of the protocol error */
} ReplyCase;

static const ReplyCase reply_cases[] = {
    {.name = "ok", .line = "{\"ok\":true,\"result\":{}}", .want_ok = TRUE},
    {.name = "ok-with-id-and-extra",
     .line = "{\"id\":7,\"ok\":true,\"result\":{\"x\":[1,2]},\"more\":null}",
     .want_ok = TRUE},
    {.name = "ok-bare", .line = " {\"ok\" : true} ", .want_ok = TRUE},
    {.name = "veto",
     .line = "{\"ok\":false,\"error\":{\"code\":\"veto\",\"message\":\"VM cad-01 requires "
             "0529:0001 (policy /etc/usbgw/usbgw.policy:12), which is absent\"}}",
     .want_code = "veto",
     .want_message = "VM cad-01 requires 0529:0001 (policy /etc/usbgw/usbgw.policy:12), which is "
                     "absent"},
    {.name = "error-without-message",
     .line = "{\"ok\":false,\"error\":{\"code\":\"internal\"}}",
     .want_code = "internal",
     .want_message = ""},
    {.name = "error-message-escapes",
     .line = "{\"ok\":false,\"error\":{\"code\":\"veto\",\"message\":\"a\\nb \\u00e9\"}}",
     .want_code = "veto",
     .want_message = "a\nb \xc3\xa9"},
    {.name = "empty", .line = "", .want_message = "not"},
    {.name = "not-json", .line = "hello", .want_message = "not JSON"},
    {.name = "truncated", .line = "{\"ok\":tr", .want_message = "not JSON"},
    {.name = "array", .line = "[true]", .want_message = "not a JSON object"},
    {.name = "string", .line = "\"ok\"", .want_message = "not a JSON object"},
    {.name = "no-ok", .line = "{\"result\":{}}", .want_message = "no boolean \"ok\""},
    {.name = "ok-string", .line = "{\"ok\":\"true\"}", .want_message = "no boolean \"ok\""},
    {.name = "ok-number", .line = "{\"ok\":1}", .want_message = "no boolean \"ok\""},
    {.name = "ok-object", .line = "{\"ok\":{}}", .want_message = "no boolean \"ok\""},
    {.name = "false-without-error",
     .line = "{\"ok\":false}",
     .want_message = "no \"error\" object"},
    {.name = "error-not-object",
     .line = "{\"ok\":false,\"error\":\"veto\"}",
     .want_message = "no \"error\" object"},
    {.name = "error-without-code",
     .line = "{\"ok\":false,\"error\":{\"message\":\"m\"}}",
     .want_message = "no string \"error.code\""},
    {.name = "error-code-number",
     .line = "{\"ok\":false,\"error\":{\"code\":3,\"message\":\"m\"}}",
     .want_message = "no string \"error.code\""},
    {.name = "error-message-number",
     .line = "{\"ok\":false,\"error\":{\"code\":\"veto\",\"message\":[]}}",
     .want_message = "\"error.message\" is not a string"},
};

static void
test_reply_case(gconstpointer data)
{
    const ReplyCase *c = data;
    g_autoptr(GError) error = NULL;
    g_auto(HookReply) reply = {0};
    gboolean ok = hook_control_parse_reply(c->line, strlen(c->line), &reply, &error);

    if (c->want_ok || c->want_code != NULL) {
        g_assert_no_error(error);
        g_assert_true(ok);
        g_assert_cmpint(reply.ok, ==, c->want_ok);
        g_assert_cmpstr(reply.code, ==, c->want_code);
        g_assert_cmpstr(reply.message, ==, c->want_message);
        return;
    }
    g_assert_false(ok);
    g_assert_error(error, HOOK_CONTROL_ERROR, HOOK_CONTROL_ERROR_PROTOCOL);
    g_assert_null(strchr(error->message, '\n'));
    g_assert_false(reply.ok);
    g_assert_null(reply.code);
    g_assert_null(reply.message);
    if (strstr(error->message, c->want_message) == NULL)
        g_error("%s: message \"%s\" lacks \"%s\"", c->name, error->message, c->want_message);
}

static void
test_reply_too_long(void)
{
    g_autoptr(GString) line = g_string_new("{\"ok\":true,\"pad\":\"");
    g_autoptr(GError) error = NULL;
    g_auto(HookReply) reply = {0};

    while (line->len <= HOOK_CONTROL_MAX_LINE)
        g_string_append(line, "xxxxxxxxxxxxxxxx");
    g_string_append(line, "\"}");
    g_assert_false(hook_control_parse_reply(line->str, line->len, &reply, &error));
    g_assert_error(error, HOOK_CONTROL_ERROR, HOOK_CONTROL_ERROR_PROTOCOL);
    g_assert_nonnull(strstr(error->message, "longer than 64 KiB"));
}

/* The line need not be NUL-terminated: only @len bytes count. */
static void
test_reply_length_bounded(void)
{
    const gchar buffer[] = "{\"ok\":true}GARBAGE";
    g_autoptr(GError) error = NULL;
    g_auto(HookReply) reply = {0};

    g_assert_true(hook_control_parse_reply(buffer, strlen("{\"ok\":true}"), &reply, &error));
    g_assert_no_error(error);
    g_assert_true(reply.ok);
}

/* A request over usbgwd's line limit is refused before connecting. */
static void
test_call_request_too_large(void)
{
    g_autofree gchar *request = g_strnfill(HOOK_CONTROL_MAX_LINE, 'x');
    g_autoptr(GError) error = NULL;
    g_auto(HookReply) reply = {0};

    g_assert_false(hook_control_call("/nonexistent/usbgw.sock", request,
                                     g_get_monotonic_time() + G_TIME_SPAN_SECOND, &reply, &error));
    g_assert_error(error, HOOK_CONTROL_ERROR, HOOK_CONTROL_ERROR_TOO_LARGE);
}

static void
test_call_path_too_long(void)
{
    g_autofree gchar *name = g_strnfill(200, 's');
    g_autofree gchar *path = g_strconcat("/tmp/", name, NULL);
    g_autoptr(GError) error = NULL;
    g_auto(HookReply) reply = {0};

    g_assert_false(
        hook_control_call(path, "{}", g_get_monotonic_time() + G_TIME_SPAN_SECOND, &reply, &error));
    g_assert_error(error, HOOK_CONTROL_ERROR, HOOK_CONTROL_ERROR_UNREACHABLE);
    g_assert_true(g_str_has_prefix(error->message, path));
    g_assert_nonnull(strstr(error->message, "too long"));
}

int
main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    g_test_add_func("/hook/control/request/plain", test_request_plain);
    g_test_add_func("/hook/control/request/escapes", test_request_escapes);
    g_test_add_func("/hook/control/request/invalid-utf8-argv", test_request_invalid_utf8_argv);
    g_test_add_func("/hook/control/request/migrate-sockets", test_request_migrate_sockets);
    g_test_add_func("/hook/control/request/other-ops-without-sockets",
                    test_request_other_ops_without_sockets);
    g_test_add_func("/hook/control/request/most-sockets-fit", test_request_most_sockets_fit);
    for (guint i = 0; i < G_N_ELEMENTS(reply_cases); i++) {
        g_autofree gchar *path = g_strdup_printf("/hook/control/reply/%s", reply_cases[i].name);
        g_test_add_data_func(path, &reply_cases[i], test_reply_case);
    }
    g_test_add_func("/hook/control/reply/too-long", test_reply_too_long);
    g_test_add_func("/hook/control/reply/length-bounded", test_reply_length_bounded);
    g_test_add_func("/hook/control/call/request-too-large", test_call_request_too_large);
    g_test_add_func("/hook/control/call/path-too-long", test_call_path_too_long);
    return g_test_run();
}
