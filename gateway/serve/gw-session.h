/* One usbredir session: a usbredirhost instance speaking to one connected
 * peer (QEMU's usb-redir, or a test peer) over a stream socket, or over a
 * GwTransport (a gateway link's stream, wired by the daemon), serving at
 * most one device at a time. The socket outlives device replugs: a device
 * that leaves sends device_disconnect, one that comes back device_connect.
 *
 * Bounded per peer (gw-session.c): a peer that sent no hello within
 * GW_SESSION_HELLO_TIMEOUT_S is closed (GwSessionClosedFunc), so its device
 * is free for the next peer; a peer that does not read its answers is not
 * read either, and usbredirhost drops stream data it does not take.
 *
 * Threading (docs/threading.md): create, feed and free a session on the
 * main thread. usbredirhost's transfer callbacks run on the usb thread and
 * write to the socket from there (writes are serialized by usbredirhost's
 * GMutex-backed locks); what cannot be written at once is flushed from the
 * main loop when the socket is writable. A transport is used on the main
 * thread only: output queued on the usb thread wakes the main loop, which
 * writes it. */
#pragma once

#include "gw-peer-handover.h"
#include <gio/gio.h>
#include <libusb.h>

#include "gw-transport.h"

G_BEGIN_DECLS

typedef struct _GwSession GwSession;

/* The peer went away or broke the protocol. Called on the main thread,
 * never from inside a gw_session_* call; the owner frees the session. */
typedef void (*GwSessionClosedFunc)(GwSession *session, const gchar *reason, gpointer user_data);

/* Starts the session (sends usbredir hello). @socket must be connected;
 * it is made non-blocking. @label names the session in logs, @device_id
 * and @vm (both nullable) are their journal fields (gw-log.h). Its bytes
 * and usbredirhost's errors are counted in usbgwd's metrics
 * (gw-usbgw-metrics.h). */
GwSession *gw_session_new(libusb_context *usb, GSocket *socket, const gchar *label,
                          const gchar *device_id, const gchar *vm, GwSessionClosedFunc closed,
                          gpointer user_data, GError **error) G_GNUC_WARN_UNUSED_RESULT;

/* As gw_session_new() with the peer on @transport (gw-transport.h; copied,
 * @transport_data its argument), used on the main thread only: what
 * usbredirhost queues on the usb thread is written from the main loop,
 * woken for it. The session closes the transport when it is freed; on
 * failure the caller keeps it. */
GwSession *gw_session_new_with_transport(libusb_context *usb, const GwTransport *transport,
                                         gpointer transport_data, const gchar *label,
                                         const gchar *device_id, const gchar *vm,
                                         GwSessionClosedFunc closed, gpointer user_data,
                                         GError **error) G_GNUC_WARN_UNUSED_RESULT;
/* The transport's owner: G_IO_IN, bytes came (G_IO_HUP: the end, read()
 * says so); G_IO_OUT, write() takes bytes again. Handled at once. */
void gw_session_transport_ready(GwSession *session, GIOCondition condition);
/* Takes ownership of @handle (closed on failure too) and offers the
 * device to the peer (interface_info, ep_info, device_connect). On
 * failure @error is in GW_USBREDIR_ERROR (gw-usbredir-error.h). */
gboolean gw_session_set_device(GwSession *session, libusb_device_handle *handle,
                               GError **error) G_GNUC_WARN_UNUSED_RESULT;
/* A live migration on this host (docs/migration.md). A session on a
 * socket may hold a second connection, the migration destination's QEMU:
 * it is not read (QEMU neither reads nor writes while its VM is not
 * running, and its parser starts without hello from the source's state).
 * The destination takes over once its VM runs — it writes, or it reads the
 * bytes the stopped source did not read, copied to it (see
 * GW_HANDOVER_STALL_MS) — or when the source hangs up: what the source
 * sent is read, the bytes written to it that it did not read are sent to
 * the destination (a ring of the last bytes written; the kernel's count of
 * the source's unread bytes), and the destination is the peer from then
 * on, the source closed. A destination that closes before it takes over
 * is dropped and nothing changes; one that starts with a usbredir hello is
 * a new peer, not a destination, and is dropped too. */
/* Told on the main thread from the session's I/O callbacks how a
 * handover ended (DONE, DROPPED, REFUSED; FAILED closes the session);
 * @detail says what happened (bytes drained and re-sent, or why it was
 * dropped). The session must not be freed from here. */
typedef void (*GwSessionHandoverFunc)(GwSession *session, GwPeerHandoverResult what,
                                      const gchar *detail, gpointer user_data);
void gw_session_set_handover_func(GwSession *session, GwSessionHandoverFunc handover,
                                  gpointer user_data);
/* Holds @socket (connected; a reference is taken, and the session closes
 * it) as the migration destination. Fails on a transport, while closing,
 * when a destination is pending already, or when the kernel cannot count
 * the peer's unread bytes (socket diagnostics). */
gboolean gw_session_add_destination(GwSession *session, GSocket *socket,
                                    GError **error) G_GNUC_WARN_UNUSED_RESULT;
/* Whether a migration destination is pending. */
gboolean gw_session_is_migrating(GwSession *session);
/* Sends device_disconnect and closes the device handle, if any. */
void gw_session_clear_device(GwSession *session);
gboolean gw_session_has_device(GwSession *session);
const gchar *gw_session_get_label(GwSession *session);
void gw_session_free(GwSession *session);

G_DEFINE_AUTOPTR_CLEANUP_FUNC(GwSession, gw_session_free)

G_END_DECLS
