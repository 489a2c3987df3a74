/* The unix sockets QEMU connects to, under <rundir>/vm/<vm>/: created with
 * mode 0600 in a 0700 directory, both given to QEMU's user, and only that
 * user (or root) may connect. Used by attachments (host devices) and
 * shares (lent devices). Main thread. */
#pragma once

#include <gio/gio.h>

G_BEGIN_DECLS

/* A stopped GSocketService listening on @path (an old socket file there is
 * replaced); the caller connects "incoming" and starts it. @uid/@gid
 * (uid_t)-1 / (gid_t)-1: leave root's. */
GSocketService *gw_vm_socket_listen(const gchar *path, uid_t uid, gid_t gid,
                                    GError **error) G_GNUC_WARN_UNUSED_RESULT;
/* Whether the unix peer of @connection may use a socket given to @owner:
 * root, or @owner itself. Non-unix connections are not judged here (TRUE);
 * a refused peer is logged with @what and @path. */
gboolean gw_vm_socket_peer_allowed(GSocketConnection *connection, uid_t owner, const gchar *what,
                                   const gchar *path);

G_END_DECLS
