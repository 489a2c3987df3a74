/* hook_config_load(): defaults, the keys the hook reads from usbgwd.conf,
 * and that a bad file or value costs only that value. */
#include <glib/gstdio.h>
#include <string.h>

#include "hook-config.h"

typedef struct {
    const gchar *name;
    const gchar *text; /* NULL: no file at all */
    gboolean want_ok;
    const gchar *want_socket;
    const gchar *want_policy;
    guint want_timeout_ms;
    const gchar *want_text; /* a part of the error message when !want_ok */
} ConfigCase;

#define DEF_SOCKET  HOOK_CONFIG_DEFAULT_CONTROL_SOCKET
#define DEF_POLICY  HOOK_CONFIG_DEFAULT_POLICY
#define DEF_TIMEOUT HOOK_CONFIG_DEFAULT_TIMEOUT_MS

static const ConfigCase config_cases[] = {
    {.name = "missing-file",
     .text = NULL,
     .want_ok = TRUE,
     .want_socket = DEF_SOCKET,
     .want_policy = DEF_POLICY,
     .want_timeout_ms = DEF_TIMEOUT},
    {.name = "empty-file",
     .text = "",
     .want_ok = TRUE,
     .want_socket = DEF_SOCKET,
     .want_policy = DEF_POLICY,
     .want_timeout_ms = DEF_TIMEOUT},
    {.name = "all-keys",
     .text = "[usbgwd]\ncontrol-socket=/tmp/x/c.sock\npolicy=/tmp/x/p.policy\n"
             "rundir=/run/elsewhere\nlink-grace=5\n[hook]\ntimeout-ms=750\n",
     .want_ok = TRUE,
     .want_socket = "/tmp/x/c.sock",
     .want_policy = "/tmp/x/p.policy",
     .want_timeout_ms = 750},
    {.name = "unknown-keys-and-groups-ignored",
     .text = "[usbgwd]\nfuture-key=1\n[hook]\nother=2\n[elsewhere]\ntimeout-ms=1\n",
     .want_ok = TRUE,
     .want_socket = DEF_SOCKET,
     .want_policy = DEF_POLICY,
     .want_timeout_ms = DEF_TIMEOUT},
    {.name = "timeout-bounds",
     .text = "[hook]\ntimeout-ms=60000\n",
     .want_ok = TRUE,
     .want_socket = DEF_SOCKET,
     .want_policy = DEF_POLICY,
     .want_timeout_ms = 60000},
    {.name = "timeout-not-a-number",
     .text = "[usbgwd]\ncontrol-socket=/tmp/c.sock\n[hook]\ntimeout-ms=2s\n",
     .want_ok = FALSE,
     .want_socket = "/tmp/c.sock",
     .want_policy = DEF_POLICY,
     .want_timeout_ms = DEF_TIMEOUT,
     .want_text = "[hook] timeout-ms=2s: expected milliseconds, 1 to 60000; using 2000"},
    {.name = "timeout-zero",
     .text = "[hook]\ntimeout-ms=0\n",
     .want_ok = FALSE,
     .want_socket = DEF_SOCKET,
     .want_policy = DEF_POLICY,
     .want_timeout_ms = DEF_TIMEOUT,
     .want_text = "timeout-ms=0"},
    {.name = "timeout-too-long",
     .text = "[hook]\ntimeout-ms=60001\n",
     .want_ok = FALSE,
     .want_socket = DEF_SOCKET,
     .want_policy = DEF_POLICY,
     .want_timeout_ms = DEF_TIMEOUT,
     .want_text = "timeout-ms=60001"},
    {.name = "timeout-negative",
     .text = "[hook]\ntimeout-ms=-5\n",
     .want_ok = FALSE,
     .want_socket = DEF_SOCKET,
     .want_policy = DEF_POLICY,
     .want_timeout_ms = DEF_TIMEOUT,
     .want_text = "timeout-ms=-5"},
    {.name = "relative-socket",
     .text = "[usbgwd]\ncontrol-socket=control.sock\npolicy=/tmp/p\n[hook]\ntimeout-ms=10\n",
     .want_ok = FALSE,
     .want_socket = DEF_SOCKET,
     .want_policy = "/tmp/p",
     .want_timeout_ms = 10,
     .want_text = "[usbgwd] control-socket=control.sock: expected an absolute path; using "
                  "/run/usbgw/control.sock"},
    {.name = "empty-policy",
     .text = "[usbgwd]\npolicy=\n",
     .want_ok = FALSE,
     .want_socket = DEF_SOCKET,
     .want_policy = DEF_POLICY,
     .want_timeout_ms = DEF_TIMEOUT,
     .want_text = "[usbgwd] policy=: expected an absolute path"},
    {.name = "not-a-keyfile",
     .text = "control-socket=/tmp/c.sock\n",
     .want_ok = FALSE,
     .want_socket = DEF_SOCKET,
     .want_policy = DEF_POLICY,
     .want_timeout_ms = DEF_TIMEOUT,
     .want_text = "using the defaults"},
    {.name = "binary",
     .text = "\x7f"
             "ELF\x01\x02\xff\xfe",
     .want_ok = FALSE,
     .want_socket = DEF_SOCKET,
     .want_policy = DEF_POLICY,
     .want_timeout_ms = DEF_TIMEOUT,
     .want_text = "using the defaults"},
};

static void
test_config_case(gconstpointer data)
{
    const ConfigCase *c = data;
    g_autoptr(GError) error = NULL;
    g_auto(HookConfig) config = {0};
    g_autofree gchar *dir = g_dir_make_tmp("hook-config-XXXXXX", &error);
    g_autofree gchar *path = g_build_filename(dir, "usbgwd.conf", NULL);
    gboolean ok;

    g_assert_no_error(error);
    if (c->text != NULL) {
        g_file_set_contents(path, c->text, -1, &error);
        g_assert_no_error(error);
    }
    ok = hook_config_load(&config, path, &error);
    g_assert_cmpint(ok, ==, c->want_ok);
    g_assert_cmpstr(config.control_socket, ==, c->want_socket);
    g_assert_cmpstr(config.policy_path, ==, c->want_policy);
    g_assert_cmpuint(config.timeout_ms, ==, c->want_timeout_ms);
    if (ok) {
        g_assert_no_error(error);
    } else {
        g_assert_nonnull(error);
        g_assert_true(g_str_has_prefix(error->message, path));
        if (strstr(error->message, c->want_text) == NULL)
            g_error("%s: message \"%s\" lacks \"%s\"", c->name, error->message, c->want_text);
    }
    g_unlink(path);
    g_rmdir(dir);
}

/* The example configuration the project ships loads cleanly. */
static void
test_config_shipped_example(void)
{
    g_autoptr(GError) error = NULL;
    g_auto(HookConfig) config = {0};
    g_autofree gchar *path =
        g_test_build_filename(G_TEST_DIST, "..", "..", "data", "usbgwd.conf", NULL);

    g_assert_true(g_file_test(path, G_FILE_TEST_IS_REGULAR));
    g_assert_true(hook_config_load(&config, path, &error));
    g_assert_no_error(error);
    g_assert_cmpstr(config.policy_path, ==, "/etc/usbgw/usbgw.policy");
}

int
main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    for (guint i = 0; i < G_N_ELEMENTS(config_cases); i++) {
        g_autofree gchar *path = g_strdup_printf("/hook/config/%s", config_cases[i].name);
        g_test_add_data_func(path, &config_cases[i], test_config_case);
    }
    g_test_add_func("/hook/config/shipped-example", test_config_shipped_example);
    return g_test_run();
}
