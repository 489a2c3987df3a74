/* Sockets for QEMU: permissions and peer checks. */
#include "gw-vm-socket.h"

#include <errno.h>
#include <unistd.h>
#include <gio/gunixsocketaddress.h>
#include <glib/gstdio.h>

GSocketService *
gw_vm_socket_listen(const gchar *path, uid_t uid, gid_t gid, GError **error)
{
    g_autoptr(GSocketService) service = NULL;
    g_autofree gchar *dir = g_path_get_dirname(path);
    g_autoptr(GSocketAddress) address = NULL;

    /* <rundir>/vm may be traversed (0711); the VM's own directory is
     * closed (0700) and given to QEMU's user below */
    if (g_mkdir_with_parents(dir, 0711) != 0 || g_chmod(dir, 0700) != 0) {
        int saved = errno;
        g_set_error(error, G_IO_ERROR, g_io_error_from_errno(saved), "cannot create %s: %s", dir,
                    g_strerror(saved));
        return NULL;
    }
    /* a socket left by a killed daemon would make bind fail */
    g_unlink(path);
    service = g_socket_service_new();
    g_socket_service_stop(service);
    address = g_unix_socket_address_new(path);
    if (!g_socket_listener_add_address(G_SOCKET_LISTENER(service), address, G_SOCKET_TYPE_STREAM,
                                       G_SOCKET_PROTOCOL_DEFAULT, NULL, NULL, error)) {
        g_prefix_error(error, "cannot listen on %s: ", path);
        return NULL;
    }
    if (g_chmod(path, 0600) != 0)
        g_warning("cannot chmod %s: %s", path, g_strerror(errno));
    /* QEMU runs as its own user: give it the socket and the way to it */
    if ((uid != (uid_t)-1 || gid != (gid_t)-1) &&
        (chown(path, uid, gid) != 0 || chown(dir, uid, gid) != 0)) {
        int saved = errno;
        g_set_error(error, G_IO_ERROR, g_io_error_from_errno(saved),
                    "cannot give %s to uid %d gid %d: %s", path, (int)uid, (int)gid,
                    g_strerror(saved));
        g_unlink(path);
        return NULL;
    }
    return g_steal_pointer(&service);
}

gboolean
gw_vm_socket_peer_allowed(GSocketConnection *connection, uid_t owner, const gchar *what,
                          const gchar *path)
{
    GSocket *socket = g_socket_connection_get_socket(connection);
    g_autoptr(GCredentials) creds = NULL;
    uid_t uid;

    if (g_socket_get_family(socket) != G_SOCKET_FAMILY_UNIX)
        return TRUE;
    creds = g_socket_get_credentials(socket, NULL);
    uid = creds != NULL ? g_credentials_get_unix_user(creds, NULL) : (uid_t)-1;
    if (uid == 0 || (owner != (uid_t)-1 && uid == owner))
        return TRUE;
    g_warning("%s: refused a peer with uid %d on %s (only QEMU's user may connect)", what, (int)uid,
              path);
    return FALSE;
}
