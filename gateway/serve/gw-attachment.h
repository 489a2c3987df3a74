/* An attachment: one device identity given to one VM, exposed as a unix
 * socket that the VM's QEMU (usb-redir chardev) connects to. It outlives
 * the device (replug) and the peer (QEMU restart):
 *
 *   device present, no peer:  the attachment holds the device claimed
 *                             (kernel drivers detached, interfaces claimed)
 *   device present, peer:     the handle belongs to the peer's session
 *   device absent:            the socket stays; a peer waits for device_connect
 *
 * One peer at a time. While a VM's QEMU is the peer, a second connection
 * that may use the socket is held as a live migration's destination
 * (gw-session.h, docs/migration.md) and takes over when it first writes;
 * any other second connection is refused and logged. Main thread only. */
#pragma once

#include <gio/gio.h>
#include <libusb.h>

#include "gw-session.h"
#include "gw-vm-socket.h"

G_BEGIN_DECLS

typedef struct _GwAttachment GwAttachment;

/* An attachment for the device with this identity; nothing is claimed
 * or listened on until gw_attachment_set_device()/gw_attachment_bind(). */
GwAttachment *gw_attachment_new(libusb_context *usb, const gchar *identity);
/* Serves the device to @vm: listens on @socket_path (see gw-vm-socket.h
 * for its directory, mode and owner). Binding to another path unbinds
 * first. */
gboolean gw_attachment_bind(GwAttachment *attachment, const gchar *vm, const gchar *socket_path,
                            GError **error) G_GNUC_WARN_UNUSED_RESULT;
/* Serves the device to a peer that did not come through a VM socket: the
 * local end of a gateway link's stream (export). The attachment must not
 * be bound; @where names the peer in logs ("to gateway hv1"). Fails when
 * a peer is already served. */
gboolean gw_attachment_serve_peer(GwAttachment *attachment, GSocketConnection *connection,
                                  const gchar *where, GError **error) G_GNUC_WARN_UNUSED_RESULT;
/* As gw_attachment_serve_peer() with the peer on a transport
 * (gw-session.h) instead of a socket: a gateway link's direct stream. */
gboolean gw_attachment_serve_transport(GwAttachment *attachment, const GwTransport *transport,
                                       gpointer transport_data, const gchar *where,
                                       GError **error) G_GNUC_WARN_UNUSED_RESULT;
/* The transport's owner tells the peer's session (gw_session_transport_ready()). */
void gw_attachment_transport_ready(GwAttachment *attachment, GIOCondition condition);
/* Told when a peer's session ended by itself (the peer left, a protocol
 * error), not when the owner ended it; @reason for logs. Runs from the
 * session's I/O callback. */
typedef void (*GwAttachmentPeerEnded)(GwAttachment *attachment, const gchar *reason,
                                      gpointer user_data);
void gw_attachment_set_peer_ended(GwAttachment *attachment, GwAttachmentPeerEnded ended,
                                  gpointer user_data);
/* Ends the peer's session, if any; the device stays claimed. */
void gw_attachment_end_peer(GwAttachment *attachment);
/* Who may connect (gw-vm-socket.h): QEMU's user and group, how a peer is
 * recognized as the VM's QEMU. @access is borrowed and must outlive the
 * attachment; until this is called only root may connect. Applies to later
 * binds and accepts. */
void gw_attachment_set_access(GwAttachment *attachment, const GwVmSocketAccess *access);
/* Stops serving: closes the peer's session and the listener, removes the
 * socket. The device stays claimed (for the next VM of its pool). */
void gw_attachment_unbind(GwAttachment *attachment);
/* The device with this identity is present: claim it, and offer it to the
 * peer if one is connected. */
gboolean gw_attachment_set_device(GwAttachment *attachment, libusb_device *device,
                                  GError **error) G_GNUC_WARN_UNUSED_RESULT;
/* The device left: device_disconnect to the peer, handle closed. */
void gw_attachment_device_left(GwAttachment *attachment);
/* The socket while bound, else NULL. */
const gchar *gw_attachment_get_socket_path(GwAttachment *attachment);
gboolean gw_attachment_has_peer(GwAttachment *attachment);
/* Whether a migration destination waits to take over the peer's session. */
gboolean gw_attachment_is_migrating(GwAttachment *attachment);
/* Closes the peer's session, hands the device back to the host (kernel
 * drivers reattached) and removes the socket. */
void gw_attachment_free(GwAttachment *attachment);

G_DEFINE_AUTOPTR_CLEANUP_FUNC(GwAttachment, gw_attachment_free)

G_END_DECLS
