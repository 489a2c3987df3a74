/* usbgw-hook's configuration: see hook-config.h. */
#include "hook-config.h"

#define HOOK_CONFIG_GROUP_USBGWD "usbgwd"
#define HOOK_CONFIG_GROUP_HOOK   "hook"

/* Replaces *@value with the [@group] @key path from @keyfile when it is set
 * and absolute. */
static gboolean
hook_config_get_path(GKeyFile *keyfile, const gchar *path, const gchar *group, const gchar *key,
                     gchar **value, GError **error)
{
    g_autofree gchar *text = g_key_file_get_string(keyfile, group, key, NULL);

    if (text == NULL)
        return TRUE;
    if (!g_path_is_absolute(text)) {
        g_set_error(error, G_KEY_FILE_ERROR, G_KEY_FILE_ERROR_INVALID_VALUE,
                    "%s: [%s] %s=%s: expected an absolute path; using %s", path, group, key, text,
                    *value);
        return FALSE;
    }
    g_free(*value);
    *value = g_steal_pointer(&text);
    return TRUE;
}

static gboolean
hook_config_get_timeout(GKeyFile *keyfile, const gchar *path, guint *timeout_ms, GError **error)
{
    g_autofree gchar *text =
        g_key_file_get_string(keyfile, HOOK_CONFIG_GROUP_HOOK, "timeout-ms", NULL);
    guint64 value = 0;

    if (text == NULL)
        return TRUE;
    if (!g_ascii_string_to_unsigned(text, 10, HOOK_CONFIG_MIN_TIMEOUT_MS,
                                    HOOK_CONFIG_MAX_TIMEOUT_MS, &value, NULL)) {
        g_set_error(error, G_KEY_FILE_ERROR, G_KEY_FILE_ERROR_INVALID_VALUE,
                    "%s: [%s] timeout-ms=%s: expected milliseconds, %d to %d; using %u", path,
                    HOOK_CONFIG_GROUP_HOOK, text, HOOK_CONFIG_MIN_TIMEOUT_MS,
                    HOOK_CONFIG_MAX_TIMEOUT_MS, *timeout_ms);
        return FALSE;
    }
    *timeout_ms = (guint)value;
    return TRUE;
}

gboolean
hook_config_load(HookConfig *config, const gchar *path, GError **error)
{
    g_autoptr(GKeyFile) keyfile = g_key_file_new();
    g_autoptr(GError) local_error = NULL;
    gboolean ok = TRUE;

    config->control_socket = g_strdup(HOOK_CONFIG_DEFAULT_CONTROL_SOCKET);
    config->policy_path = g_strdup(HOOK_CONFIG_DEFAULT_POLICY);
    config->timeout_ms = HOOK_CONFIG_DEFAULT_TIMEOUT_MS;

    if (!g_key_file_load_from_file(keyfile, path, G_KEY_FILE_NONE, &local_error)) {
        if (g_error_matches(local_error, G_FILE_ERROR, G_FILE_ERROR_NOENT))
            return TRUE;
        g_set_error(error, local_error->domain, local_error->code, "%s: %s; using the defaults",
                    path, local_error->message);
        return FALSE;
    }
    /* read every key even after a bad one; report the first bad one */
    ok = hook_config_get_path(keyfile, path, HOOK_CONFIG_GROUP_USBGWD, "control-socket",
                              &config->control_socket, error) &&
         ok;
    ok = hook_config_get_path(keyfile, path, HOOK_CONFIG_GROUP_USBGWD, "policy",
                              &config->policy_path, ok ? error : NULL) &&
         ok;
    ok = hook_config_get_timeout(keyfile, path, &config->timeout_ms, ok ? error : NULL) && ok;
    return ok;
}

void
hook_config_clear(HookConfig *config)
{
    g_clear_pointer(&config->control_socket, g_free);
    g_clear_pointer(&config->policy_path, g_free);
}
