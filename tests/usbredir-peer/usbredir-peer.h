/* usbredir-peer: the one usbredir peer of the tests and benches, a
 * usbredirparser with its I/O, its callbacks and the state tests wait on.
 *
 * Users: tests/peer (usbgw-test-peer, QEMU's role against usbgwd),
 * tests/proxy (test-gw-proxy: a lending client and QEMU around GwProxy),
 * tests/fuzz (fuzz-proxy's QEMU), tests/spice (spice-test-peer: usbgwd's
 * end of each of a SPICE worker's channels) and bench/ (the QEMU-role peer
 * of every gateway bench, proxy-bench's fake device).
 *
 * Role. A peer plays one end of a usbredir stream:
 *   - USBREDIR_PEER_GUEST: QEMU's usb-redir (or usbgwd's end towards a
 *     lending client). It receives device_connect, interface_info, ep_info
 *     and answers, and asks for transfers (usbredir_peer_control()).
 *   - USBREDIR_PEER_HOST: the device side (usbredirhost's role,
 *     usbredirparser_fl_usb_host). It announces a device and answers what
 *     the guest asks for, with usbredirparser_send_*() on
 *     usbredir_peer_get_parser() from its events.
 * Both queue their hello in usbredir_peer_new*() and write it at once.
 *
 * Transport. Either
 *   - a connected stream socket (usbredir_peer_new()): the peer owns the
 *     fd from then on and closes it in usbredir_peer_free(). Every recv()
 *     and send() is MSG_DONTWAIT, so the socket's blocking mode does not
 *     matter and is left alone. The fd is only lent out
 *     (usbredir_peer_get_fd()) for bytes that are not usbredir (a test's
 *     garbage) and shutdown(). Driven by usbredir_peer_io() (one
 *     non-blocking pass, for callers that run their own loop) or
 *     usbredir_peer_run_until() / usbredir_peer_serve_all() (poll until a
 *     condition, a close or a deadline);
 *   - no socket (usbredir_peer_new_buffered()): the caller hands in what
 *     came (usbredir_peer_feed()) and gets what the peer writes through
 *     its UsbredirPeerSendFunc, e.g. to frame it.
 *
 * Events. The peer sets every usbredirparser callback: the UsbredirPeerEvents
 * a caller gives are called after the peer has updated its own state; every
 * other packet is dropped (its data and filter rules freed). Do not set
 * callbacks or priv on the parser.
 *
 * Errors are the stream's: G_IO_ERROR_CONNECTION_CLOSED (the other end
 * closed, or a read or write failed), G_IO_ERROR_NOT_CONNECTED (the device
 * went away while a control transfer waited), G_IO_ERROR_TIMED_OUT,
 * G_IO_ERROR_INVALID_DATA (a packet did not parse), G_IO_ERROR_FAILED
 * (an answer for another id); each message starts with the peer's label.
 *
 * Threading. No locks are set on the parser: one thread at a time calls
 * into a peer, and its events run on that thread, inside the call that
 * read the packet. A peer may be made on one thread and then handed to
 * usbredir_peer_thread_start(), which serves it on a thread of its own
 * (proxy-bench's fake device); after that only usbredir_peer_thread_stop()
 * touches it. Deadlines are g_get_monotonic_time() values; G_MAXINT64
 * waits for ever. */
#pragma once

#include <gio/gio.h>
#include <usbredirparser.h>

/* The most a poll in usbredir_peer_serve_all() waits before it looks at
 * its condition again: a condition that changes on another thread (a stop
 * flag) is seen within this. */
#define USBREDIR_PEER_POLL_MS 100
/* Bytes of a control packet's data the peer keeps. */
#define USBREDIR_PEER_CONTROL_DATA_MAX 256

typedef struct _UsbredirPeer UsbredirPeer;

typedef enum {
    USBREDIR_PEER_GUEST, /* QEMU's role */
    USBREDIR_PEER_HOST,  /* the device side (usbredirparser_fl_usb_host) */
} UsbredirPeerRole;

/* The hello always announces connect_device_version,
 * ep_info_max_packet_size, 64bits_ids and 32bits_bulk_length (what QEMU
 * 7.2 and usbredirhost both announce); these add to it. */
typedef enum {
    USBREDIR_PEER_CAPS_DEFAULT = 0,
    USBREDIR_PEER_CAP_FILTER = 1 << 0,
    USBREDIR_PEER_CAP_DEVICE_DISCONNECT_ACK = 1 << 1,
    USBREDIR_PEER_CAP_BULK_RECEIVING = 1 << 2,
} UsbredirPeerCaps;

typedef struct {
    UsbredirPeerRole role;
    const gchar *version; /* the hello's version string; copied by the parser */
    const gchar *label;   /* nullable (then @version): names the peer in log lines and errors */
    UsbredirPeerCaps caps;
    /* usbredirparser's own messages up to this level (usbredirparser_error,
     * usbredirparser_warning, …) go to stderr as "LABEL: usbredir: MSG";
     * usbredirparser_none (0): none */
    int log_level;
} UsbredirPeerConfig;

/* The last control packet that came: at a guest an answer, at a host a
 * request. */
typedef struct {
    guint64 id;
    struct usb_redir_control_packet_header header; /* header.status: an answer's status */
    gint length; /* bytes in @data: what came, cut at USBREDIR_PEER_CONTROL_DATA_MAX */
    guint8 data[USBREDIR_PEER_CONTROL_DATA_MAX];
} UsbredirPeerControl;

/* Every member is nullable. Headers and data are lent for the call. */
typedef struct {
    void (*hello)(UsbredirPeer *peer, const struct usb_redir_hello_header *hello,
                  gpointer user_data);
    void (*device_connect)(UsbredirPeer *peer,
                           const struct usb_redir_device_connect_header *device_connect,
                           gpointer user_data);
    void (*device_disconnect)(UsbredirPeer *peer, gpointer user_data);
    void (*interface_info)(UsbredirPeer *peer,
                           const struct usb_redir_interface_info_header *interface_info,
                           gpointer user_data);
    void (*ep_info)(UsbredirPeer *peer, const struct usb_redir_ep_info_header *ep_info,
                    gpointer user_data);
    void (*filter_reject)(UsbredirPeer *peer, gpointer user_data);
    void (*device_disconnect_ack)(UsbredirPeer *peer, gpointer user_data);
    /* @control is usbredir_peer_get_control() */
    void (*control_packet)(UsbredirPeer *peer, const UsbredirPeerControl *control,
                           gpointer user_data);
    void (*interrupt_packet)(UsbredirPeer *peer, guint64 id,
                             const struct usb_redir_interrupt_packet_header *header,
                             const guint8 *data, gint length, gpointer user_data);
} UsbredirPeerEvents;

/* A buffered peer's output: all @length bytes must be taken. */
typedef void (*UsbredirPeerSendFunc)(UsbredirPeer *peer, const guint8 *data, gsize length,
                                     gpointer user_data);

/* What usbredir_peer_serve_all() waits for, asked of each peer. */
typedef gboolean (*UsbredirPeerDoneFunc)(UsbredirPeer *peer);

/* Takes @fd, a connected stream socket. @events (nullable) is copied;
 * @user_data goes to every event. */
G_GNUC_WARN_UNUSED_RESULT
UsbredirPeer *usbredir_peer_new(int fd, const UsbredirPeerConfig *config,
                                const UsbredirPeerEvents *events, gpointer user_data);
/* A peer without a socket: usbredir_peer_feed() in, @send out. */
G_GNUC_WARN_UNUSED_RESULT
UsbredirPeer *usbredir_peer_new_buffered(const UsbredirPeerConfig *config,
                                         UsbredirPeerSendFunc send,
                                         const UsbredirPeerEvents *events, gpointer user_data);
/* Destroys the parser and closes the socket. */
void usbredir_peer_free(UsbredirPeer *peer);
G_DEFINE_AUTOPTR_CLEANUP_FUNC(UsbredirPeer, usbredir_peer_free)

/* For usbredirparser_send_*() and usbredirparser_peer_has_cap(). */
struct usbredirparser *usbredir_peer_get_parser(UsbredirPeer *peer);
/* The socket, still the peer's; -1 for a buffered peer. */
int usbredir_peer_get_fd(UsbredirPeer *peer);
const gchar *usbredir_peer_get_label(UsbredirPeer *peer);
gpointer usbredir_peer_get_user_data(UsbredirPeer *peer);
const UsbredirPeerControl *usbredir_peer_get_control(UsbredirPeer *peer);

/* The other end's hello came. */
gboolean usbredir_peer_has_hello(UsbredirPeer *peer);
/* device_connect and interface_info came, and no device_disconnect since. */
gboolean usbredir_peer_is_connected(UsbredirPeer *peer);
/* device_disconnect came, and no device_connect since. */
gboolean usbredir_peer_is_disconnected(UsbredirPeer *peer);
/* The other end closed, or a read or write failed. */
gboolean usbredir_peer_is_closed(UsbredirPeer *peer);

/* A host's announcement of a simple device: interface_info with one
 * interface of @device_class, ep_info with ep0 only (control, 64 bytes),
 * device_connect (full speed, @device_class, @vendor:@product, bcd
 * 0x0100). Queued; call it once the guest's hello came (e.g. from the
 * hello event), as usbredirparser_send_device_connect() wants. */
void usbredir_peer_announce_device(UsbredirPeer *peer, guint16 vendor, guint16 product,
                                   guint8 device_class);

/* ---- a peer on a socket */

/* One pass that never blocks: writes what is queued, parses what the
 * socket holds, writes what that queued. A packet that does not parse is
 * skipped, as usbredirparser does (callers of this check what arrived).
 * It goes on reading after a close: the last packets may still be there.
 * FALSE once the peer is closed. */
gboolean usbredir_peer_io(UsbredirPeer *peer);
/* Writes what is queued, without reading. FALSE once the peer is closed. */
gboolean usbredir_peer_flush(UsbredirPeer *peer);

/* Polls the peers' sockets, writing and parsing, until @done holds for
 * every peer, one closes, a packet does not parse or @deadline passes
 * (G_IO_ERROR_TIMED_OUT). @done is asked before anything else, also right
 * after a close, so "closed" or a device_disconnect that came with it
 * counts. With @done NULL it serves until @deadline and then returns
 * TRUE. */
G_GNUC_WARN_UNUSED_RESULT
gboolean usbredir_peer_serve_all(UsbredirPeer *const *peers, guint n_peers,
                                 UsbredirPeerDoneFunc done, gint64 deadline, GError **error);
/* usbredir_peer_serve_all() of one peer. */
G_GNUC_WARN_UNUSED_RESULT
gboolean usbredir_peer_run_until(UsbredirPeer *peer, UsbredirPeerDoneFunc done, gint64 deadline,
                                 GError **error);

/* A guest's control transfer: @requesttype (bit 7 set: IN, @length bytes
 * asked for; else OUT with @length bytes of @data) and @request on ep0,
 * with the next id, then serves the socket until its answer. TRUE when it
 * came, whatever its status: usbredir_peer_get_control() has it. FALSE on
 * a device_disconnect, a close, the deadline or an answer for another id. */
G_GNUC_WARN_UNUSED_RESULT
gboolean usbredir_peer_control(UsbredirPeer *peer, guint8 requesttype, guint8 request,
                               const guint8 *data, guint16 length, gint64 deadline, GError **error);

/* ---- a peer served on a thread of its own (a fake device beside the
 * caller's loop) */

typedef struct _UsbredirPeerThread UsbredirPeerThread;

/* Takes @peer (on a socket) and serves it on a new thread named @name
 * until usbredir_peer_thread_stop() or until the other end closes. From
 * here on only that thread calls into @peer: its events run there. */
G_GNUC_WARN_UNUSED_RESULT
UsbredirPeerThread *usbredir_peer_thread_start(UsbredirPeer *peer, const gchar *name);
/* Asks the thread to stop (it sees that within USBREDIR_PEER_POLL_MS),
 * joins it and frees the peer and @thread. FALSE, with the error, if the
 * serving ended otherwise than by the stop or a close. */
G_GNUC_WARN_UNUSED_RESULT
gboolean usbredir_peer_thread_stop(UsbredirPeerThread *thread, GError **error);

/* ---- a buffered peer */

/* Parses @data (with what an earlier call left) and hands what the events
 * queued to the send function. FALSE if a packet did not parse; the bytes
 * after it wait for the next call. */
G_GNUC_WARN_UNUSED_RESULT
gboolean usbredir_peer_feed(UsbredirPeer *peer, const guint8 *data, gsize length, GError **error);
