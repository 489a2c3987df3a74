#include "policy-test-device.h"

#include <stdio.h>
#include <string.h>

static void
policy_test_parse_triple(const gchar *text, guint8 out[3])
{
    guint a, b, c;
    gchar tail;

    if (sscanf(text, "%2x:%2x:%2x%c", &a, &b, &c, &tail) != 3)
        g_error("bad class triple \"%s\" in test device spec", text);
    out[0] = (guint8)a;
    out[1] = (guint8)b;
    out[2] = (guint8)c;
}

PolicyDevice *
policy_test_device_new(const gchar *spec)
{
    g_auto(GStrv) argv = NULL;
    g_autoptr(GError) error = NULL;
    g_autoptr(PolicyDevice) device = NULL;
    guint vid, pid;
    gchar tail;

    if (!g_shell_parse_argv(spec, NULL, &argv, &error))
        g_error("test device spec \"%s\": %s", spec, error->message);
    if (sscanf(argv[0], "%4x:%4x%c", &vid, &pid, &tail) != 2)
        g_error("test device spec \"%s\": bad id", spec);
    device = policy_device_new((guint16)vid, (guint16)pid);
    for (guint i = 1; argv[i] != NULL; i++) {
        const gchar *eq = strchr(argv[i], '=');
        g_autofree gchar *key = NULL;
        const gchar *value;
        guint8 triple[3];

        if (eq == NULL)
            g_error("test device spec \"%s\": \"%s\" is not key=value", spec, argv[i]);
        key = g_strndup(argv[i], (gsize)(eq - argv[i]));
        value = eq + 1;
        if (g_str_equal(key, "class")) {
            policy_test_parse_triple(value, triple);
            device->device_class = triple[0];
            device->device_subclass = triple[1];
            device->device_protocol = triple[2];
        } else if (g_str_equal(key, "if")) {
            g_auto(GStrv) ifaces = g_strsplit(value, ",", -1);
            for (guint k = 0; ifaces[k] != NULL; k++) {
                policy_test_parse_triple(ifaces[k], triple);
                policy_device_add_interface(device, triple[0], triple[1], triple[2]);
            }
        } else if (g_str_equal(key, "serial")) {
            device->serial = g_strdup(value);
        } else if (g_str_equal(key, "product")) {
            device->product = g_strdup(value);
        } else if (g_str_equal(key, "manufacturer")) {
            device->manufacturer = g_strdup(value);
        } else if (g_str_equal(key, "port")) {
            device->port = g_strdup(value);
        } else if (g_str_equal(key, "hash")) {
            device->hash = g_strdup(value);
        } else if (g_str_equal(key, "gateway")) {
            device->gateway = g_strdup(value);
        } else if (g_str_equal(key, "bcd")) {
            device->bcd_device = (guint16)g_ascii_strtoull(value, NULL, 16);
        } else {
            g_error("test device spec \"%s\": unknown key \"%s\"", spec, key);
        }
    }
    return g_steal_pointer(&device);
}
