/* libFuzzer target for the control socket's request handling: the input is
 * what a local client writes to usbgwd's control socket, one or more
 * request lines. It goes through the real path, transport
 * (gateway/control/gw-control.c: framing, limits, JSON parsing) and
 * command table (gateway/daemon/gw-daemon-commands.c and the handlers),
 * of a real GwDaemon that the harness starts once: a temporary directory
 * with a config, a policy, state.json, an audit log and the control
 * socket, no libvirt (libvirt-uri empty), no SPICE ingress, and libusb
 * with no devices (libusb_init needs no usbfs, so the inventory starts
 * empty; device commands answer not-found). The harness connects as
 * itself (root: every command, the hook's included), writes the input,
 * half-closes and reads until usbgwd closes. Never a crash, a leak, a
 * critical or a hang, and:
 *
 *   - every line usbgwd writes is a JSON object: a reply with "ok" true
 *     and a "result" object, or false and an "error" object with string
 *     "code" and "message", or (once subscribed) an audit event;
 *   - one reply per non-empty request line (framing: a line with a NUL
 *     byte gets one refusal and the connection ends);
 *   - the same lines given straight to the command table as a non-admin
 *     user get "ok" only for "status", and as a non-root admin never run
 *     "hook";
 *   - afterwards state.json is valid state and every audit line is JSON.
 *
 * Between inputs every VM the input started is stopped again, so that
 * each input starts from the same daemon.
 *
 * Run the fuzzer (clang), as tests/fuzz/fuzz-policy.c says, with
 * tests/fuzz/corpus/control as the seed corpus, -dict=tests/fuzz/control.dict
 * and -detect_leaks=0, and TMPDIR=/dev/shm (state.json is written with
 * fsync): the daemon lives across inputs and its heap changes size
 * (libFuzzer then runs LeakSanitizer after the input, over a large heap,
 * at 20 inputs a second instead of 1000). Leaks are LeakSanitizer's at
 * exit, in the sanitizer build's fuzz-control-replay. */
#include <errno.h>
#include <glib/gstdio.h>
#include <json-glib/json-glib.h>
#include <stdint.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "gw-daemon-private.h"

#include "fuzz-common.h"

/* Seconds one input may take before the harness calls it a hang. */
#define FUZZ_WATCHDOG_S 20
/* A non-root uid for the direct calls. */
#define FUZZ_OTHER_UID 4242

/* The policy the daemon runs: a pool, a required key, a deny, a share. */
static const gchar fuzz_policy[] = "pool \"hasp-cad\" vms \"cad-0?\"\n"
                                   "assign id 0529:0001 serial \"\" to pool \"hasp-cad\"\n"
                                   "assign id 096e:0006 to vm \"cad-01\" required\n"
                                   "deny id 0781:*\n"
                                   "share id 064f:2af9 user \"bob\" group \"cad\" to vm-uuid "
                                   "\"8c1f0a2e-5d2b-4c1e-9a57-3f6b1e2d4c5a\" required\n";

typedef struct {
    gchar *dir;         /* owned */
    gchar *socket_path; /* owned */
    gchar *state_path;  /* owned */
    gchar *audit_path;  /* owned */
    GwDaemon *daemon;   /* owned */
} FuzzEnv;

static FuzzEnv fuzz_env;

static GLogWriterOutput
fuzz_log_writer(GLogLevelFlags level, const GLogField *fields, gsize n_fields, gpointer user_data)
{
    if (level & (G_LOG_LEVEL_CRITICAL | G_LOG_LEVEL_ERROR)) {
        for (gsize i = 0; i < n_fields; i++)
            if (g_strcmp0(fields[i].key, "MESSAGE") == 0 && fields[i].length < 0)
                g_printerr("fuzz-control: %s\n", (const gchar *)fields[i].value);
        FUZZ_CHECK(!"critical logged");
    }
    return G_LOG_WRITER_HANDLED;
}

static void
fuzz_write(const gchar *path, const gchar *text)
{
    g_autoptr(GError) error = NULL;

    if (!g_file_set_contents(path, text, -1, &error)) {
        g_printerr("fuzz-control: %s\n", error->message);
        abort();
    }
}

static void
fuzz_cleanup(void)
{
    fuzz_remove_tree(fuzz_env.dir);
}

static FuzzEnv *
fuzz_setup(void)
{
    FuzzEnv *env = &fuzz_env;
    g_autoptr(GError) error = NULL;
    g_autofree gchar *policy_path = NULL;
    g_autofree gchar *config_path = NULL;
    g_autofree gchar *config_text = NULL;
    g_autofree gchar *rundir = NULL;
    GwConfig config = {0};

    if (env->daemon != NULL)
        return env;
    g_log_set_writer_func(fuzz_log_writer, NULL, NULL);
    env->dir = g_dir_make_tmp("fuzz-control-XXXXXX", &error);
    if (env->dir == NULL) {
        g_printerr("fuzz-control: %s\n", error->message);
        abort();
    }
    atexit(fuzz_cleanup);
    policy_path = g_build_filename(env->dir, "usbgw.policy", NULL);
    config_path = g_build_filename(env->dir, "usbgwd.conf", NULL);
    rundir = g_build_filename(env->dir, "run", NULL);
    env->socket_path = g_build_filename(rundir, "control.sock", NULL);
    env->state_path = g_build_filename(env->dir, "state.json", NULL);
    env->audit_path = g_build_filename(env->dir, "audit.log", NULL);
    fuzz_write(policy_path, fuzz_policy);
    config_text =
        g_strdup_printf("[usbgwd]\npolicy=%s\nrundir=%s\ncontrol-socket=%s\nstate=%s\n"
                        "audit-log=%s\nlibvirt-uri=\n",
                        policy_path, rundir, env->socket_path, env->state_path, env->audit_path);
    fuzz_write(config_path, config_text);
    if (!gw_config_load(&config, config_path, &error) ||
        (env->daemon = gw_daemon_new(&config, &error)) == NULL ||
        !gw_daemon_start(env->daemon, &error)) {
        g_printerr("fuzz-control: cannot start usbgwd: %s\n", error->message);
        abort();
    }
    gw_config_clear(&config);
    return env;
}

static gboolean
fuzz_watchdog(gpointer user_data)
{
    g_printerr("fuzz-control: no end of the connection within %d s\n", FUZZ_WATCHDOG_S);
    abort();
    return G_SOURCE_REMOVE;
}

/* Connects, writes @data, half-closes and returns everything usbgwd wrote
 * until it closed. */
static GString *
fuzz_exchange(FuzzEnv *env, const uint8_t *data, size_t size)
{
    struct sockaddr_un addr = {.sun_family = AF_UNIX};
    GString *out = g_string_new(NULL);
    gsize written = 0;
    guint watchdog;
    int fd;

    FUZZ_CHECK(strlen(env->socket_path) < sizeof(addr.sun_path));
    strcpy(addr.sun_path, env->socket_path);
    fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    FUZZ_CHECK(fd >= 0);
    FUZZ_CHECK(connect(fd, (struct sockaddr *)&addr, sizeof(addr)) == 0);
    watchdog = g_timeout_add_seconds(FUZZ_WATCHDOG_S, fuzz_watchdog, NULL);
    while (written < size) {
        ssize_t n = send(fd, data + written, size - written, MSG_NOSIGNAL);
        if (n > 0) {
            written += (gsize)n;
            continue;
        }
        /* usbgwd may close early (a NUL byte) */
        if (n < 0 && errno != EAGAIN && errno != EINTR)
            break;
        g_main_context_iteration(NULL, TRUE);
    }
    shutdown(fd, SHUT_WR);
    for (;;) {
        gchar buffer[4096];
        ssize_t n = recv(fd, buffer, sizeof(buffer), MSG_DONTWAIT);
        if (n > 0) {
            g_string_append_len(out, buffer, n);
            continue;
        }
        if (n == 0 || (errno != EAGAIN && errno != EINTR))
            break;
        g_main_context_iteration(NULL, TRUE);
    }
    g_source_remove(watchdog);
    close(fd);
    /* let usbgwd free the connection */
    while (g_main_context_iteration(NULL, FALSE))
        ;
    return out;
}

/* How many replies usbgwd owes @data: one per non-empty complete line, up
 * to and including the first with a NUL byte. */
static guint
fuzz_expected_replies(const uint8_t *data, size_t size)
{
    guint replies = 0;
    size_t start = 0;

    for (size_t i = 0; i < size; i++) {
        if (data[i] != '\n')
            continue;
        if (i > start) {
            replies++;
            if (memchr(data + start, '\0', i - start) != NULL)
                break;
        }
        start = i + 1;
    }
    return replies;
}

static void
fuzz_check_reply(JsonObject *reply)
{
    JsonNode *ok = json_object_get_member(reply, "ok");

    FUZZ_CHECK(ok != NULL && json_node_get_value_type(ok) == G_TYPE_BOOLEAN);
    FUZZ_CHECK(!json_object_has_member(reply, "__subscribe"));
    if (json_node_get_boolean(ok)) {
        JsonNode *result = json_object_get_member(reply, "result");
        FUZZ_CHECK(result != NULL && JSON_NODE_HOLDS_OBJECT(result));
    } else {
        JsonNode *error = json_object_get_member(reply, "error");
        JsonObject *obj;
        FUZZ_CHECK(error != NULL && JSON_NODE_HOLDS_OBJECT(error));
        obj = json_node_get_object(error);
        FUZZ_CHECK(json_object_has_member(obj, "code") &&
                   json_node_get_value_type(json_object_get_member(obj, "code")) == G_TYPE_STRING);
        FUZZ_CHECK(json_object_has_member(obj, "message") &&
                   json_node_get_value_type(json_object_get_member(obj, "message")) ==
                       G_TYPE_STRING);
    }
}

/* Every line a JSON object; returns the number of replies among them. */
static guint
fuzz_check_output(const GString *out)
{
    g_auto(GStrv) lines = NULL;
    guint replies = 0;

    if (out->len == 0)
        return 0;
    FUZZ_CHECK(out->str[out->len - 1] == '\n');
    FUZZ_CHECK(memchr(out->str, '\0', out->len) == NULL);
    lines = g_strsplit(out->str, "\n", -1);
    for (guint i = 0; lines[i] != NULL && lines[i][0] != '\0'; i++) {
        g_autoptr(JsonParser) parser = json_parser_new_immutable();
        JsonNode *root;
        JsonObject *obj;

        FUZZ_CHECK(json_parser_load_from_data(parser, lines[i], -1, NULL));
        root = json_parser_get_root(parser);
        FUZZ_CHECK(root != NULL && JSON_NODE_HOLDS_OBJECT(root));
        obj = json_node_get_object(root);
        if (json_object_has_member(obj, "ok")) {
            fuzz_check_reply(obj);
            replies++;
        } else {
            /* an audit event of a subscription */
            FUZZ_CHECK(json_object_has_member(obj, "event"));
        }
    }
    return replies;
}

/* A reply from the table itself: only "subscribe" carries the transport's
 * subscription mark, which the transport strips. */
static void
fuzz_check_direct_reply(JsonNode *reply, const gchar *name)
{
    JsonObject *obj;

    FUZZ_CHECK(reply != NULL && JSON_NODE_HOLDS_OBJECT(reply));
    obj = json_node_get_object(reply);
    if (json_object_has_member(obj, "__subscribe")) {
        FUZZ_CHECK(g_strcmp0(name, "subscribe") == 0);
        json_object_remove_member(obj, "__subscribe");
    }
    fuzz_check_reply(obj);
}

/* The command table without the transport, as other callers. */
static void
fuzz_check_direct(FuzzEnv *env, const gchar *line, gsize len)
{
    static const GwControlPeer user = {.uid = FUZZ_OTHER_UID, .gid = FUZZ_OTHER_UID};
    static const GwControlPeer admin = {
        .uid = FUZZ_OTHER_UID, .gid = FUZZ_OTHER_UID, .admin = TRUE};
    g_autoptr(JsonParser) parser = json_parser_new_immutable();
    g_autoptr(JsonNode) as_user = NULL;
    g_autoptr(JsonNode) as_admin = NULL;
    JsonObject *request;
    JsonNode *command;
    const gchar *name;

    if (memchr(line, '\0', len) != NULL ||
        !json_parser_load_from_data(parser, line, (gssize)len, NULL) ||
        json_parser_get_root(parser) == NULL ||
        !JSON_NODE_HOLDS_OBJECT(json_parser_get_root(parser)))
        return;
    request = json_node_get_object(json_parser_get_root(parser));
    command = json_object_get_member(request, "command");
    /* the transport refuses the rest before the table sees it */
    if (command == NULL || json_node_get_value_type(command) != G_TYPE_STRING)
        return;
    name = json_node_get_string(command);

    as_user = gw_daemon_control_handler(request, &user, env->daemon);
    fuzz_check_direct_reply(as_user, name);
    if (g_strcmp0(name, "status") != 0)
        FUZZ_CHECK(!json_object_get_boolean_member(json_node_get_object(as_user), "ok"));

    as_admin = gw_daemon_control_handler(request, &admin, env->daemon);
    fuzz_check_direct_reply(as_admin, name);
    if (g_strcmp0(name, "hook") == 0)
        FUZZ_CHECK(!json_object_get_boolean_member(json_node_get_object(as_admin), "ok"));
}

/* What usbgwd keeps is readable: state.json valid state, audit lines JSON. */
static void
fuzz_check_files(FuzzEnv *env)
{
    g_autofree gchar *state = NULL;
    g_autofree gchar *audit = NULL;
    gsize len = 0;

    if (g_file_get_contents(env->state_path, &state, &len, NULL)) {
        g_autoptr(JsonParser) parser = json_parser_new_immutable();
        JsonNode *root;
        FUZZ_CHECK(json_parser_load_from_data(parser, state, (gssize)len, NULL));
        root = json_parser_get_root(parser);
        FUZZ_CHECK(root != NULL && JSON_NODE_HOLDS_OBJECT(root));
        FUZZ_CHECK(json_object_has_member(json_node_get_object(root), "version"));
    }
    if (g_file_get_contents(env->audit_path, &audit, &len, NULL) && len > 0) {
        g_auto(GStrv) lines = g_strsplit(audit, "\n", -1);
        FUZZ_CHECK(audit[len - 1] == '\n');
        for (guint i = 0; lines[i] != NULL && lines[i][0] != '\0'; i++) {
            g_autoptr(JsonParser) parser = json_parser_new_immutable();
            FUZZ_CHECK(json_parser_load_from_data(parser, lines[i], -1, NULL));
        }
        /* the daemon appends (O_APPEND): truncating keeps it writing */
        FUZZ_CHECK(truncate(env->audit_path, 0) == 0);
    }
}

/* Back to the daemon every input starts from: no VM running. */
static void
fuzz_reset(FuzzEnv *env)
{
    g_autoptr(GPtrArray) vms = gw_binder_list_vms(env->daemon->binder);

    for (guint i = 0; i < vms->len; i++) {
        g_autofree gchar *name = g_strdup(g_ptr_array_index(vms, i));
        gw_daemon_vm_stopped(env->daemon, name, "fuzz");
    }
    gw_daemon_save_state(env->daemon);
    while (g_main_context_iteration(NULL, FALSE))
        ;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    FuzzEnv *env = fuzz_setup();
    g_autoptr(GString) out = fuzz_exchange(env, data, size);
    size_t start = 0;

    if (size <= GW_CONTROL_MAX_LINE)
        FUZZ_CHECK(fuzz_check_output(out) == fuzz_expected_replies(data, size));
    else
        (void)fuzz_check_output(out);
    fuzz_check_files(env);

    for (size_t i = 0; i < size; i++) {
        if (data[i] != '\n')
            continue;
        if (i > start)
            fuzz_check_direct(env, (const gchar *)data + start, i - start);
        start = i + 1;
    }
    fuzz_check_files(env);
    fuzz_reset(env);
    return 0;
}
