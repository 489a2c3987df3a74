/* Sockets for QEMU: directories, modes, owners and peer checks. See
 * gw-vm-socket.h. */
#include "gw-vm-socket.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <unistd.h>
#include <linux/openat2.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <gio/gunixsocketaddress.h>
#include <glib/gstdio.h>

#include "gw-log.h"

#include "gw-fd-watch.h"

/* <rundir>/vm: anyone may pass, only root lists or writes. */
#define GW_VM_SOCKET_ROOT_MODE 0711
/* <rundir>/vm/<vm>: root's; QEMU's group may pass (without one: root only). */
#define GW_VM_SOCKET_DIR_MODE_GROUP 0710
#define GW_VM_SOCKET_DIR_MODE_ROOT  0700
/* The socket as bind() creates it, then with QEMU's group. */
#define GW_VM_SOCKET_MODE_ROOT  0600
#define GW_VM_SOCKET_MODE_GROUP 0660

void
gw_vm_socket_access_clear(GwVmSocketAccess *access)
{
    g_clear_pointer(&access->pid_file, g_free);
}

static gboolean gw_vm_socket_set_errno(GError **error, int saved, const gchar *format, ...)
    G_GNUC_PRINTF(3, 4);

static gboolean
gw_vm_socket_set_errno(GError **error, int saved, const gchar *format, ...)
{
    va_list args;
    g_autofree gchar *what = NULL;

    va_start(args, format);
    what = g_strdup_vprintf(format, args);
    va_end(args);
    g_set_error(error, G_IO_ERROR, g_io_error_from_errno(saved), "%s: %s", what, g_strerror(saved));
    return FALSE;
}

/* Opens the directory @name (relative to @at_fd; @shown in messages)
 * without following a link in its last component, and stats it. */
static int
gw_vm_socket_open_dir(int at_fd, const gchar *name, const gchar *shown, struct stat *st,
                      GError **error)
{
    int fd = openat(at_fd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);

    if (fd < 0) {
        gw_vm_socket_set_errno(error, errno, "cannot open %s (a directory, not a symbolic link)",
                               shown);
        return -1;
    }
    if (fstat(fd, st) != 0) {
        gw_vm_socket_set_errno(error, errno, "cannot stat %s", shown);
        close(fd);
        return -1;
    }
    return fd;
}

/* Opens <rundir>/vm, creating it (and <rundir>) when missing. It must be
 * usbgwd's and writable by nobody else: whoever could write in it could
 * put any directory in place of a VM's. */
static int
gw_vm_socket_open_root(const gchar *root, GError **error)
{
    struct stat st;
    int fd;

    if (g_mkdir_with_parents(root, GW_VM_SOCKET_ROOT_MODE) != 0) {
        gw_vm_socket_set_errno(error, errno, "cannot create %s", root);
        return -1;
    }
    fd = gw_vm_socket_open_dir(AT_FDCWD, root, root, &st, error);
    if (fd >= 0 && (st.st_uid != geteuid() || (st.st_mode & (S_IWGRP | S_IWOTH)) != 0)) {
        g_set_error(error, G_IO_ERROR, G_IO_ERROR_PERMISSION_DENIED,
                    "%s belongs to uid %d with mode %03o: it must be usbgwd's (uid %d) and "
                    "writable by nobody else; remove it and let usbgwd create it",
                    root, (int)st.st_uid, (unsigned)(st.st_mode & 07777), (int)geteuid());
        close(fd);
        return -1;
    }
    return fd;
}

/* Opens (creating it when missing) the VM directory @name under @root_fd
 * without following a link, and makes it usbgwd's with @gid and @mode
 * through its descriptor — also when an older usbgwd had given it to
 * QEMU's user. */
static int
gw_vm_socket_open_vm_dir(int root_fd, const gchar *dir, const gchar *name, gid_t gid, mode_t mode,
                         GError **error)
{
    struct stat st;
    int fd;

    if (mkdirat(root_fd, name, GW_VM_SOCKET_DIR_MODE_ROOT) != 0 && errno != EEXIST) {
        gw_vm_socket_set_errno(error, errno, "cannot create %s", dir);
        return -1;
    }
    fd = gw_vm_socket_open_dir(root_fd, name, dir, &st, error);
    if (fd < 0)
        return -1;
    if (st.st_uid != geteuid() || st.st_gid != gid) {
        if (st.st_uid != geteuid())
            g_message("%s belonged to uid %d: taken back (directories usbgwd writes in stay "
                      "its own)",
                      dir, (int)st.st_uid);
        if (fchown(fd, geteuid(), gid) != 0) {
            gw_vm_socket_set_errno(error, errno, "cannot give %s to uid %d gid %d", dir,
                                   (int)geteuid(), (int)gid);
            close(fd);
            return -1;
        }
    }
    if ((st.st_mode & 07777) != mode && fchmod(fd, mode) != 0) {
        gw_vm_socket_set_errno(error, errno, "cannot chmod %s", dir);
        close(fd);
        return -1;
    }
    return fd;
}

/* Binds a listening socket to @path (whose file is @file in @dir_fd) with
 * its mode set before it appears, then checks that what is there is the
 * socket usbgwd made and gives it QEMU's group without following links. */
static GSocket *
gw_vm_socket_bind(const GwVmSocketAccess *access, int dir_fd, const gchar *path, const gchar *file,
                  GError **error)
{
    g_autoptr(GSocket) socket = NULL;
    g_autoptr(GSocketAddress) address = g_unix_socket_address_new(path);
    struct stat st;
    int rc;

    /* a socket left by a killed daemon would make bind fail; unlinkat
     * removes a link, never its target */
    if (unlinkat(dir_fd, file, 0) != 0 && errno != ENOENT) {
        gw_vm_socket_set_errno(error, errno, "cannot remove the stale %s", path);
        return NULL;
    }
    socket =
        g_socket_new(G_SOCKET_FAMILY_UNIX, G_SOCKET_TYPE_STREAM, G_SOCKET_PROTOCOL_DEFAULT, error);
    if (socket == NULL)
        return NULL;
    /* Linux creates the socket file with the fd's mode (less the umask) */
    if (fchmod(g_socket_get_fd(socket), GW_VM_SOCKET_MODE_ROOT) != 0) {
        gw_vm_socket_set_errno(error, errno, "cannot set the mode of the socket for %s", path);
        return NULL;
    }
    if (!g_socket_bind(socket, address, FALSE, error))
        return NULL;
    /* only usbgwd writes in @dir_fd, so what is there now is the socket
     * bind() made — unless a path on the way was not what usbgwd checked */
    rc = fstatat(dir_fd, file, &st, AT_SYMLINK_NOFOLLOW);
    if (rc != 0 || !S_ISSOCK(st.st_mode) || st.st_uid != geteuid()) {
        gboolean link = rc == 0 && S_ISLNK(st.st_mode);
        g_set_error(error, G_IO_ERROR, G_IO_ERROR_PERMISSION_DENIED,
                    "%s is not the socket usbgwd bound (%s): refused, nothing chmod'ed", path,
                    link ? "a symbolic link was put in its place" : "something else is there");
        if (link)
            unlinkat(dir_fd, file, 0);
        return NULL;
    }
    if (access->gid != (gid_t)-1 &&
        (fchownat(dir_fd, file, (uid_t)-1, access->gid, AT_SYMLINK_NOFOLLOW) != 0 ||
         fchmodat(dir_fd, file, GW_VM_SOCKET_MODE_GROUP, AT_SYMLINK_NOFOLLOW) != 0)) {
        gw_vm_socket_set_errno(error, errno, "cannot give %s to gid %d", path, (int)access->gid);
        unlinkat(dir_fd, file, 0);
        return NULL;
    }
    if (!g_socket_listen(socket, error)) {
        unlinkat(dir_fd, file, 0);
        return NULL;
    }
    return g_steal_pointer(&socket);
}

struct _GwVmListener {
    GSocket *socket; /* owned: listening */
    GwFdWatch *watch;
    GwVmListenerIncoming incoming;
    gpointer user_data;
};

/* One connection per call: a level-triggered watch calls again while
 * more wait, and @incoming may free the listener. */
static void
gw_vm_listener_ready(int fd, GIOCondition revents, gpointer user_data)
{
    GwVmListener *listener = user_data;
    g_autoptr(GError) error = NULL;
    g_autoptr(GSocket) client = g_socket_accept(listener->socket, NULL, &error);
    g_autoptr(GSocketConnection) connection = NULL;

    if (client == NULL) {
        if (!g_error_matches(error, G_IO_ERROR, G_IO_ERROR_WOULD_BLOCK))
            g_warning("accept: %s", error->message);
        return;
    }
    connection = g_socket_connection_factory_create_connection(client);
    listener->incoming(connection, listener->user_data);
}

void
gw_vm_listener_free(GwVmListener *listener)
{
    if (listener == NULL)
        return;
    gw_fd_watch_free(listener->watch);
    g_socket_close(listener->socket, NULL);
    g_object_unref(listener->socket);
    g_free(listener);
}

GwVmListener *
gw_vm_socket_listen(const GwVmSocketAccess *access, const gchar *path,
                    GwVmListenerIncoming incoming, gpointer user_data, GError **error)
{
    g_autoptr(GSocket) socket = NULL;
    GwVmListener *listener;
    g_autofree gchar *dir = g_path_get_dirname(path);
    g_autofree gchar *root = g_path_get_dirname(dir);
    g_autofree gchar *name = g_path_get_basename(dir);
    g_autofree gchar *file = g_path_get_basename(path);
    gboolean group = access->gid != (gid_t)-1;
    int root_fd, dir_fd;

    if (!g_path_is_absolute(path) || strcmp(name, "..") == 0 || strcmp(name, ".") == 0 ||
        strcmp(file, "..") == 0 || strcmp(file, ".") == 0) {
        g_set_error(error, G_IO_ERROR, G_IO_ERROR_INVALID_ARGUMENT,
                    "%s is not <rundir>/vm/<vm>/<file>", path);
        return NULL;
    }
    root_fd = gw_vm_socket_open_root(root, error);
    if (root_fd < 0)
        return NULL;
    dir_fd = gw_vm_socket_open_vm_dir(
        root_fd, dir, name, group ? access->gid : getegid(),
        group ? GW_VM_SOCKET_DIR_MODE_GROUP : GW_VM_SOCKET_DIR_MODE_ROOT, error);
    close(root_fd);
    if (dir_fd < 0)
        return NULL;
    socket = gw_vm_socket_bind(access, dir_fd, path, file, error);
    close(dir_fd);
    if (socket == NULL) {
        g_prefix_error(error, "cannot listen on %s: ", path);
        return NULL;
    }
    g_socket_set_blocking(socket, FALSE);
    listener = g_new0(GwVmListener, 1);
    listener->socket = g_steal_pointer(&socket);
    listener->incoming = incoming;
    listener->user_data = user_data;
    listener->watch =
        gw_fd_watch_new(g_main_context_get_thread_default(), "usbgw-vm-socket",
                        g_socket_get_fd(listener->socket), G_IO_IN, gw_vm_listener_ready, listener);
    return listener;
}

/* ---- the VM's QEMU --------------------------------------------------------- */

gchar *
gw_vm_socket_pid_file_path(const gchar *pattern, const gchar *vm, GError **error)
{
    g_auto(GStrv) parts = NULL;

    if (vm[0] == '\0' || strchr(vm, '/') != NULL || strcmp(vm, ".") == 0 || strcmp(vm, "..") == 0) {
        g_set_error(error, G_IO_ERROR, G_IO_ERROR_INVALID_ARGUMENT,
                    "vm name \"%s\" cannot be part of a pid file name", vm);
        return NULL;
    }
    parts = g_strsplit(pattern, GW_VM_SOCKET_PID_FILE_VM, -1);
    return g_strjoinv(vm, parts);
}

/* open() that follows no symbolic link in any component of @path
 * (openat2 RESOLVE_NO_SYMLINKS, Linux 5.6; before that only the last
 * component is checked). */
static int
gw_vm_socket_open_nofollow(const gchar *path)
{
    struct open_how how = {
        .flags = O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_NOCTTY | O_CLOEXEC,
        .resolve = RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS,
    };
    long fd = syscall(SYS_openat2, AT_FDCWD, path, &how, sizeof(how));

    if (fd < 0 && errno == ENOSYS)
        return open(path, (int)how.flags);
    return (int)fd;
}

gboolean
gw_vm_socket_read_pid(const gchar *path, pid_t *pid, GError **error)
{
    gchar buf[GW_VM_SOCKET_PID_FILE_MAX + 1];
    struct stat st;
    ssize_t n;
    gsize digits;
    guint64 value = 0;
    int fd, saved;

    fd = gw_vm_socket_open_nofollow(path);
    if (fd < 0) {
        saved = errno;
        return gw_vm_socket_set_errno(error, saved,
                                      saved == ELOOP ? "cannot read %s (no symbolic links allowed "
                                                       "on the way)"
                                                     : "cannot read %s",
                                      path);
    }
    if (fstat(fd, &st) != 0) {
        saved = errno;
        close(fd);
        return gw_vm_socket_set_errno(error, saved, "cannot stat %s", path);
    }
    if (!S_ISREG(st.st_mode) || (st.st_uid != 0 && st.st_uid != geteuid()) ||
        (st.st_mode & (S_IWGRP | S_IWOTH)) != 0) {
        close(fd);
        g_set_error(error, G_IO_ERROR, G_IO_ERROR_PERMISSION_DENIED,
                    "%s is not a pid file to trust (a regular file of root's that nobody else "
                    "may write; it is uid %d mode %06o)",
                    path, (int)st.st_uid, (unsigned)st.st_mode);
        return FALSE;
    }
    n = read(fd, buf, sizeof(buf));
    saved = errno;
    close(fd);
    if (n < 0)
        return gw_vm_socket_set_errno(error, saved, "cannot read %s", path);
    if ((gsize)n > GW_VM_SOCKET_PID_FILE_MAX) {
        g_set_error(error, G_IO_ERROR, G_IO_ERROR_INVALID_DATA,
                    "%s: longer than %d bytes, not a pid file", path, GW_VM_SOCKET_PID_FILE_MAX);
        return FALSE;
    }
    for (digits = 0; digits < (gsize)n && g_ascii_isdigit(buf[digits]); digits++)
        value = MIN(value * 10 + (guint64)(buf[digits] - '0'), (guint64)G_MAXINT32 + 1);
    if (digits == 0 || !(digits == (gsize)n || (digits + 1 == (gsize)n && buf[digits] == '\n')) ||
        value <= 1 || value > G_MAXINT32) {
        g_set_error(error, G_IO_ERROR, G_IO_ERROR_INVALID_DATA,
                    "%s: not a pid (want decimal digits and one newline)", path);
        return FALSE;
    }
    *pid = (pid_t)value;
    return TRUE;
}

/* Why the peer of QEMU's user with @peer_pid is not @vm's QEMU, or NULL
 * when it is. */
static gchar *
gw_vm_socket_not_the_vm(const GwVmSocketAccess *access, const gchar *vm, pid_t peer_pid)
{
    g_autoptr(GError) error = NULL;
    g_autofree gchar *pid_file = NULL;
    pid_t pid = 0;

    if (access->check == GW_VM_PEER_CHECK_UID)
        return NULL;
    if (access->pid_file == NULL)
        return g_strdup("no pid file is configured (vm-pid-file)");
    pid_file = gw_vm_socket_pid_file_path(access->pid_file, vm, &error);
    if (pid_file == NULL || !gw_vm_socket_read_pid(pid_file, &pid, &error))
        return g_strdup_printf("cannot tell vm \"%s\"'s QEMU: %s", vm, error->message);
    if (pid != peer_pid)
        return g_strdup_printf("not vm \"%s\"'s QEMU (pid %d in %s)", vm, (int)pid, pid_file);
    return NULL;
}

gboolean
gw_vm_socket_peer_allowed(const GwVmSocketAccess *access, GSocketConnection *connection,
                          const gchar *vm, const gchar *device_id, const gchar *path)
{
    GSocket *socket = g_socket_connection_get_socket(connection);
    g_autoptr(GCredentials) creds = NULL;
    g_autofree gchar *reason = NULL;
    g_autofree gchar *actor = NULL;
    uid_t uid;
    pid_t pid;

    if (g_socket_get_family(socket) != G_SOCKET_FAMILY_UNIX)
        return TRUE;
    creds = g_socket_get_credentials(socket, NULL);
    uid = creds != NULL ? g_credentials_get_unix_user(creds, NULL) : (uid_t)-1;
    pid = creds != NULL ? g_credentials_get_unix_pid(creds, NULL) : -1;
    /* root, or usbgwd itself: a migration relay's anchor end
     * (gw-relay-anchor.h) stands in for a QEMU on another host */
    if (uid == 0 || (pid == getpid() && uid == geteuid()))
        return TRUE;
    if (access->uid == (uid_t)-1 || uid != access->uid)
        reason = g_strdup("only QEMU's user may connect");
    else
        reason = gw_vm_socket_not_the_vm(access, vm, pid);
    if (reason == NULL)
        return TRUE;
    gw_log_device(G_LOG_LEVEL_WARNING, device_id, vm, GW_LOG_ID_PEER_REFUSED,
                  "%s: refused a peer with uid %d pid %d on %s: %s",
                  device_id != NULL ? device_id : vm, (int)uid, (int)pid, path, reason);
    actor = g_strdup_printf("peer uid=%d pid=%d", (int)uid, (int)pid);
    if (access->refused != NULL)
        access->refused(vm, device_id, path, actor, reason, access->user_data);
    return FALSE;
}
