/* A live migration on a VM socket, as its owners (attachments, imports,
 * shares) see it: the peer's pid, the QEMUs the socket migrated away from
 * (refused when their chardev connects again), and the end of a handover
 * logged and reported alike (docs/migration.md). Main thread only. */
#pragma once

#include <gio/gio.h>

#include "gw-peer-handover.h"
#include "gw-vm-socket.h"

G_BEGIN_DECLS

/* The pid of @connection's unix peer, 0 when unknown. Read it when the
 * peer connects: a closed socket has no credentials. */
pid_t gw_vm_socket_peer_pid(GSocketConnection *connection);

/* The QEMUs a device migrated away from on one socket: each lives on,
 * paused, until it is stopped, and its chardev (reconnect) connects
 * again; it must not become the peer nor the next destination. The last
 * GW_VM_MIGRATED_PIDS are kept. */
#define GW_VM_MIGRATED_PIDS 4
typedef struct {
    pid_t pids[GW_VM_MIGRATED_PIDS];
    guint next;
} GwVmMigratedPids;
void gw_vm_migrated_pids_add(GwVmMigratedPids *pids, pid_t pid);
gboolean gw_vm_migrated_pids_has(const GwVmMigratedPids *pids, pid_t pid);

/* A live migration's handover on @vm's socket @path ended (@result, with
 * @detail): once DONE, the source QEMU (*@peer_pid) goes into @pids and
 * *@peer_pid becomes @destination_pid. Logs it as @who's (with the
 * journal's @device_id and @vm) and tells @access->migrated; a REFUSED
 * destination counts as a refused attach. */
void gw_vm_socket_handover_ended(const GwVmSocketAccess *access, GwVmMigratedPids *pids,
                                 pid_t *peer_pid, pid_t destination_pid, const gchar *who,
                                 const gchar *device_id, const gchar *vm, const gchar *path,
                                 GwPeerHandoverResult result, const gchar *detail);

G_END_DECLS
