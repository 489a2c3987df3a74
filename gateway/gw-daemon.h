/* usbgwd's core: the inventory of present devices, policy decisions on
 * arrival and the attachments that serve assigned devices. Main thread. */
#pragma once

#include <glib.h>

#include "policy.h"

G_BEGIN_DECLS

typedef struct {
    gchar *policy_path;    /* owned */
    gchar *rundir;         /* owned: sockets live in <rundir>/vm/<vm>/<slot>.sock */
    gchar *tcp_address;    /* owned: where TCP listeners bind */
    guint16 tcp_port_base; /* 0: no TCP; else attachments get ports base, base+1, … */
} GwDaemonConfig;

/* Reads the [usbgwd] group of a GKeyFile (keys in data/usbgwd.conf); a
 * missing file gives the defaults. Unknown keys are reported as warnings,
 * bad values as errors naming file, key and value. */
gboolean gw_daemon_config_load(GwDaemonConfig *config, const gchar *path,
                               GError **error) G_GNUC_WARN_UNUSED_RESULT;
void gw_daemon_config_clear(GwDaemonConfig *config);

typedef struct _GwDaemon GwDaemon;

GwDaemon *gw_daemon_new(const GwDaemonConfig *config, GError **error) G_GNUC_WARN_UNUSED_RESULT;
/* Loads the policy and starts the inventory (initial scan + hotplug). */
gboolean gw_daemon_start(GwDaemon *daemon, GError **error) G_GNUC_WARN_UNUSED_RESULT;
/* Hands every device back to the host and removes the sockets. */
void gw_daemon_free(GwDaemon *daemon);

G_DEFINE_AUTOPTR_CLEANUP_FUNC(GwDaemon, gw_daemon_free)

G_END_DECLS
