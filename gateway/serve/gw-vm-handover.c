/* A live migration on a VM socket: pids and the end of a handover. */
#include "gw-vm-handover.h"

#include <unistd.h>

#include "gw-log.h"
#include "gw-relay-anchor.h"
#include "gw-usbgw-metrics.h"

pid_t
gw_vm_socket_peer_pid(GSocketConnection *connection)
{
    g_autoptr(GCredentials) credentials = NULL;
    pid_t pid;

    if (connection == NULL)
        return 0;
    credentials = g_socket_get_credentials(g_socket_connection_get_socket(connection), NULL);
    if (credentials == NULL)
        return 0;
    pid = g_credentials_get_unix_pid(credentials, NULL);
    return pid > 0 ? pid : 0;
}

void
gw_vm_migrated_pids_add(GwVmMigratedPids *pids, pid_t pid)
{
    /* usbgwd's own connections are migration relays, not QEMUs */
    if (pid == 0 || pid == getpid())
        return;
    pids->pids[pids->next] = pid;
    pids->next = (pids->next + 1) % GW_VM_MIGRATED_PIDS;
}

gboolean
gw_vm_migrated_pids_has(const GwVmMigratedPids *pids, pid_t pid)
{
    if (pid == 0 || pid == getpid())
        return FALSE;
    for (guint i = 0; i < GW_VM_MIGRATED_PIDS; i++)
        if (pids->pids[i] == pid)
            return TRUE;
    return FALSE;
}

void
gw_vm_socket_handover_ended(const GwVmSocketAccess *access, GwVmMigratedPids *pids, pid_t *peer_pid,
                            pid_t destination_pid, const gchar *who, const gchar *device_id,
                            const gchar *vm, const gchar *path, GwPeerHandoverResult result,
                            const gchar *detail)
{
    g_autofree gchar *from = NULL;
    g_autofree gchar *to = NULL;

    if (result == GW_PEER_HANDOVER_REFUSED) {
        gw_log_device(G_LOG_LEVEL_WARNING, device_id, vm, GW_LOG_ID_PEER_REFUSED,
                      "%s: refused a second peer on %s (it %s)", who, path, detail);
        gw_usbgw_metrics_attach(GW_USBGW_ATTACH_REFUSED, -1);
        return;
    }
    /* a relay's anchor end (usbgwd's own connection) stands for a QEMU on
     * the host that relays it */
    gw_relay_anchor_handover_ended(path, result == GW_PEER_HANDOVER_DONE, *peer_pid != getpid(),
                                   destination_pid != getpid(), &from, &to);
    if (result == GW_PEER_HANDOVER_DONE) {
        gw_vm_migrated_pids_add(pids, *peer_pid);
        *peer_pid = destination_pid;
    }
    gw_log_device(G_LOG_LEVEL_MESSAGE, device_id, vm, GW_LOG_ID_SESSION,
                  result == GW_PEER_HANDOVER_DONE
                      ? "%s: migrated on %s (from %s to %s): %s"
                      : "%s: migration on %s given up, the source stays: destination (%s to %s) "
                        "%s",
                  who, path, from != NULL ? from : "this host", to != NULL ? to : "this host",
                  detail);
    if (access->migrated != NULL)
        access->migrated(vm, device_id, path, result == GW_PEER_HANDOVER_DONE, detail, from, to,
                         access->user_data);
}
