/* The unix sockets QEMU connects to, under <rundir>/vm/<vm>/, and who may
 * use them (the trust model is in docs/architecture.md, "VM sockets").
 *
 * Files: every directory usbgwd writes in stays root's. <rundir>/vm is
 * 0711; <rundir>/vm/<vm> is root:QEMU's group 0710 (QEMU may traverse it,
 * never create, rename or remove in it); a socket is created 0600 (its
 * mode set on the fd before bind(), so it never appears more open) and
 * then given QEMU's group, 0660, with calls that do not follow symbolic
 * links. A VM directory an older usbgwd gave to QEMU's user is taken back
 * through its descriptor. Without QEMU's group: 0700 and 0600, root only.
 *
 * Peers: root, or a process of QEMU's user that is the VM's QEMU: its
 * SO_PEERCRED pid is the one in the VM's pid file (libvirt writes
 * /run/libvirt/qemu/<vm>.pid as root), read at each accept. With
 * GW_VM_PEER_CHECK_UID any process of QEMU's user is taken (the admin's
 * explicit choice). A refused peer is logged and reported to @refused.
 *
 * Threading: main thread only (the pid file is a few bytes on a local
 * file system, read on the main loop). */
#pragma once

#include <gio/gio.h>

G_BEGIN_DECLS

/* Which peer of QEMU's user is taken as the VM's QEMU. */
typedef enum {
    GW_VM_PEER_CHECK_PID_FILE, /* the process whose pid is in the VM's pid file */
    GW_VM_PEER_CHECK_UID,      /* any process of QEMU's user */
} GwVmPeerCheck;

/* The longest pid file read (digits and a newline). */
#define GW_VM_SOCKET_PID_FILE_MAX 32
/* What stands for the VM's name in a pid file pattern. */
#define GW_VM_SOCKET_PID_FILE_VM "{vm}"

/* A peer was refused on @path (@vm's socket; @device_id NULL for a share
 * socket): @actor says who it was ("peer uid=N pid=P"), @reason why. */
typedef void (*GwVmSocketRefused)(const gchar *vm, const gchar *device_id, const gchar *path,
                                  const gchar *actor, const gchar *reason, gpointer user_data);

/* A live migration's handover on @vm's socket @path ended: @done TRUE
 * when the destination took over, FALSE when it was dropped (the source
 * stays); @detail says how (bytes drained and re-sent) or why. @from and
 * @to: the gateways whose QEMU was the source and the destination, NULL
 * for a QEMU on this host (a relayed one is on another,
 * gw-relay-anchor.h). */
typedef void (*GwVmSocketMigrated)(const gchar *vm, const gchar *device_id, const gchar *path,
                                   gboolean done, const gchar *detail, const gchar *from,
                                   const gchar *to, gpointer user_data);

/* Owned by the daemon; attachments and shares borrow it for as long as
 * they live. */
typedef struct {
    uid_t uid; /* QEMU's user; (uid_t)-1: only root may connect */
    gid_t gid; /* QEMU's group: may traverse the VM directory and connect; (gid_t)-1: none */
    GwVmPeerCheck check;
    gchar *pid_file;           /* owned, nullable with GW_VM_PEER_CHECK_UID: a pattern with {vm} */
    GwVmSocketRefused refused; /* nullable */
    GwVmSocketMigrated migrated; /* nullable */
    gpointer user_data;
} GwVmSocketAccess;

/* Frees what @access owns (not @access itself). */
void gw_vm_socket_access_clear(GwVmSocketAccess *access);

/* A listener on @path (<rundir>/vm/<vm>/<file>; a stale socket there is
 * removed) that calls @incoming with each connection accepted, on the
 * thread-default main context (one GwFdWatch: no GSource of its own, so
 * thousands of listeners cost no poll() or source walk per main-loop
 * iteration). @incoming takes a reference on the connection if it keeps
 * it; it may free the listener. <rundir>/vm must be usbgwd's (it is
 * created when missing); the VM directory is created or taken back. Fails,
 * naming the path, if a directory is a symbolic link or not usbgwd's, or
 * if what bind() made is not usbgwd's socket. */
typedef struct _GwVmListener GwVmListener;
typedef void (*GwVmListenerIncoming)(GSocketConnection *connection, gpointer user_data);
GwVmListener *gw_vm_socket_listen(const GwVmSocketAccess *access, const gchar *path,
                                  GwVmListenerIncoming incoming, gpointer user_data,
                                  GError **error) G_GNUC_WARN_UNUSED_RESULT;
/* Stops accepting and closes the listening socket; the file stays (the
 * owner removes it). */
void gw_vm_listener_free(GwVmListener *listener);
G_DEFINE_AUTOPTR_CLEANUP_FUNC(GwVmListener, gw_vm_listener_free)

/* Whether the unix peer of @connection may use @vm's socket @path (see
 * above). Non-unix connections are not judged here (TRUE). */
gboolean gw_vm_socket_peer_allowed(const GwVmSocketAccess *access, GSocketConnection *connection,
                                   const gchar *vm, const gchar *device_id, const gchar *path);
/* @pattern with @vm for {vm}; NULL (with @error) when @vm cannot be part of
 * a file name ("/", "." or ".."). */
gchar *gw_vm_socket_pid_file_path(const gchar *pattern, const gchar *vm,
                                  GError **error) G_GNUC_WARN_UNUSED_RESULT;
/* Reads a pid file without following symbolic links anywhere in @path:
 * a regular file of root's (or usbgwd's user), writable by nobody else,
 * at most GW_VM_SOCKET_PID_FILE_MAX bytes: decimal digits and at most one
 * newline, a pid above 1. */
gboolean gw_vm_socket_read_pid(const gchar *path, pid_t *pid,
                               GError **error) G_GNUC_WARN_UNUSED_RESULT;

G_END_DECLS
