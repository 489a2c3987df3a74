/* usbgwd's core: the inventory of devices, policy decisions, which device
 * is bound to which VM, libvirt attach, state, audit and the control
 * socket's commands. Main thread only. */
#pragma once

#include <glib.h>

#include "gw-config.h"

G_BEGIN_DECLS

typedef struct _GwDaemon GwDaemon;

GwDaemon *gw_daemon_new(const GwConfig *config, GError **error) G_GNUC_WARN_UNUSED_RESULT;
/* Loads the policy and the saved state, opens the control socket and the
 * audit log, starts the inventory (initial scan + hotplug) and libvirt. */
gboolean gw_daemon_start(GwDaemon *daemon, GError **error) G_GNUC_WARN_UNUSED_RESULT;
/* Opens the audit log again (SIGHUP, after logrotate moved it); logs the
 * outcome. Before gw_daemon_start succeeded it does nothing. */
void gw_daemon_reopen_logs(GwDaemon *daemon);
/* Hands every device back to the host and removes the sockets. */
void gw_daemon_free(GwDaemon *daemon);

G_DEFINE_AUTOPTR_CLEANUP_FUNC(GwDaemon, gw_daemon_free)

G_END_DECLS
