/* GwImport: a device of another gateway served to one of this host's VMs
 * (data path D, docs/links.md). It owns the VM's socket for the device
 * (gw-vm-socket.h: the same directory, mode and peer check as a local
 * device's), and while the VM's QEMU is connected, one stream of the
 * gateway link to the exporter, relayed through the validating proxy
 * (gw-proxy.h), so what the exporter sends is checked like a lent device:
 * a compromised dongle server cannot present a keyboard.
 *
 *   QEMU --unix socket--> GwImport --GwProxy--> GwLinkStream (direct) --> exporter
 *
 * Sessions: one per QEMU connection. A link lost for less than its grace
 * is invisible here (the stream resumes inside GwLink). A session that
 * ends for any reason but QEMU's own (the link lost past its grace, the
 * exporter's device unplugged or refused, the proxy's check) ends with
 * device_disconnect to QEMU and its socket closed (QEMU's chardev
 * reconnects); the next session starts no sooner than @reattach_ms after
 * that end — some license keys lock themselves out after fast reconnects.
 *
 * Threading: main thread only. Callbacks run from the proxy's or the
 * link's callbacks, never from inside a gw_import_*() call; the owner may
 * free the import from ended().
 */
#pragma once

#include <gio/gio.h>

#include "gw-link.h"
#include "gw-vm-socket.h"
#include "policy.h"

G_BEGIN_DECLS

typedef struct _GwImport GwImport;

typedef struct {
    /* Required. Whether the device the exporter presents may reach the VM
     * (the proxy's check, gw-proxy.h); *@reason (g_strdup'd) on FALSE. */
    gboolean (*check)(GwImport *import, const PolicyDevice *device, gchar **reason,
                      gpointer user_data);
    /* Optional. QEMU got the device. */
    void (*attached)(GwImport *import, const PolicyDevice *device, gpointer user_data);
    /* Optional. QEMU lost the device for a reason other than its own
     * (@reason for logs and the audit), or @refused: the check refused
     * it. */
    void (*detached)(GwImport *import, const gchar *reason, gboolean refused, gpointer user_data);
} GwImportCallbacks;

/* Serves the peer's device @remote_id (@link, borrowed: it must outlive
 * the import) as @id to @vm on @socket_path. @access is borrowed and must
 * outlive the import. @cb is copied. */
GwImport *gw_import_new(GwLink *link, const gchar *remote_id, const gchar *id, const gchar *vm,
                        const gchar *socket_path, const GwVmSocketAccess *access, guint reattach_ms,
                        const GwImportCallbacks *cb, gpointer user_data,
                        GError **error) G_GNUC_WARN_UNUSED_RESULT;
/* Ends the session (device_disconnect to QEMU, the stream closed) and
 * removes the socket; no callback runs after this. */
void gw_import_free(GwImport *import);
G_DEFINE_AUTOPTR_CLEANUP_FUNC(GwImport, gw_import_free)

const gchar *gw_import_get_id(GwImport *import);
const gchar *gw_import_get_vm(GwImport *import);
const gchar *gw_import_get_socket_path(GwImport *import);
/* Whether QEMU has the device now. */
/* Whether a live migration's destination waits to take QEMU's place. */
gboolean gw_import_is_migrating(GwImport *import);
gboolean gw_import_is_attached(GwImport *import);
G_END_DECLS
