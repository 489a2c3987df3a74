/* What usbgw-hook reads from usbgwd's configuration file (GKeyFile,
 * /etc/usbgw/usbgwd.conf, see data/usbgwd.conf):
 *
 *   [usbgwd]
 *   control-socket=/run/usbgw/control.sock   # where usbgwd listens
 *   policy=/etc/usbgw/usbgw.policy           # read only when usbgwd is down
 *   [hook]
 *   timeout-ms=2000                          # bound on the whole hook run
 *
 * Other keys belong to usbgwd and are ignored here. The hook runs with
 * libvirt's stripped environment, so nothing comes from environment
 * variables. */
#pragma once

#include <glib.h>

#include "gw-defaults.h"

G_BEGIN_DECLS

#define HOOK_CONFIG_DEFAULT_PATH           GW_DEFAULT_CONFIG_PATH
#define HOOK_CONFIG_DEFAULT_CONTROL_SOCKET GW_DEFAULT_CONTROL_SOCKET
#define HOOK_CONFIG_DEFAULT_POLICY         GW_DEFAULT_POLICY_PATH
/* libvirt waits for its hooks with no limit of its own while it holds the
 * domain: the hook must bound itself. */
#define HOOK_CONFIG_DEFAULT_TIMEOUT_MS 2000
#define HOOK_CONFIG_MIN_TIMEOUT_MS     1
#define HOOK_CONFIG_MAX_TIMEOUT_MS     60000

typedef struct {
    gchar *control_socket; /* owned */
    gchar *policy_path;    /* owned */
    guint timeout_ms;
} HookConfig;

/* Fills @config from the file at @path. A missing file is not an error
 * (every key has a default). @config is usable whatever the result: on a
 * file that cannot be read or parsed it keeps the defaults, on a bad value
 * it keeps that key's default, and FALSE with @error says what was
 * ignored. Free with hook_config_clear(). */
gboolean hook_config_load(HookConfig *config, const gchar *path,
                          GError **error) G_GNUC_WARN_UNUSED_RESULT;
void hook_config_clear(HookConfig *config);
G_DEFINE_AUTO_CLEANUP_CLEAR_FUNC(HookConfig, hook_config_clear)

G_END_DECLS
