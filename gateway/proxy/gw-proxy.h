/* The validating usbredir proxy (data paths B and C, docs/architecture.md).
 *
 * A GwProxy relays one usbredir connection pair:
 *
 *   client (untrusted usbredir *host*: usbredirect, spice-gtk, usbgw-share)
 *       <-> [usbredirparser, guest role]  GwProxy  [usbredirparser, host role] <->
 *   QEMU's usb-redir (a usbredir *guest*)
 *
 * Every packet from either side is parsed by that side's usbredirparser and
 * re-emitted on the other side with the matching usbredirparser_send_*();
 * no byte is copied through unparsed.
 *
 * Relayed, client -> QEMU (after validation, see below):
 *   interface_info, ep_info, device_connect (held until the device is
 *   allowed), device_disconnect; configuration_status, alt_setting_status,
 *   bulk_streams_status (answers to a pending request); iso_stream_status,
 *   interrupt_receiving_status, bulk_receiving_status (answers, or
 *   unsolicited stream errors on a known endpoint of that type); control,
 *   bulk and interrupt-OUT packets (answers to a pending request); iso-IN,
 *   interrupt-IN and buffered bulk packets (stream data on a known endpoint
 *   of that type).
 * Relayed, QEMU -> client (only while QEMU has the device):
 *   set/get_configuration, set/get_alt_setting, start/stop_iso_stream,
 *   start/stop_interrupt_receiving, alloc/free_bulk_streams,
 *   start/stop_bulk_receiving, cancel_data_packet, reset, control, bulk,
 *   interrupt and iso-OUT packets; filter_filter and filter_reject.
 * Answered by the proxy itself, never relayed:
 *   hello (each side gets the proxy's own); device_disconnect_ack (the
 *   client's usbredirparser acknowledges a device_disconnect at once; QEMU's
 *   acknowledgement is awaited by the proxy: a next device from the client
 *   is held until it came, so QEMU never sees stale packets as the new
 *   device's).
 * Refused: filter_filter from the client is dropped (QEMU's own filter and
 *   the policy decide); every packet type the usbredir protocol does not
 *   allow in that direction is a parse error and ends the session.
 *
 * Ids: requests from QEMU get a proxy-chosen id on the client side (fits
 * 32 bits when the client lacks usb_redir_cap_64bits_ids) and are tracked
 * until answered; an answer whose id, type or endpoint matches no pending
 * request ends the session. QEMU gets its own ids back.
 *
 * Capabilities: the client is offered everything the proxy translates
 * (connect_device_version, filter, device_disconnect_ack,
 * ep_info_max_packet_size, 64bits_ids, 32bits_bulk_length, bulk_streams,
 * bulk_receiving). QEMU's hello is sent once the client's hello came, and
 * offers filter, device_disconnect_ack and 64bits_ids always (the proxy
 * translates), the others only if the client has them.
 *
 * Validation before anything of a device reaches QEMU: the client must send
 * hello first, then interface_info, ep_info, device_connect in that order
 * (as usbredirhost does); interface_count <= 32 and unique interface
 * numbers; each endpoint of ep_info has a valid type, belongs to a listed
 * interface (except control endpoint 0) and a bounded max_packet_size;
 * data lengths stay within GW_PROXY_MAX_DATA_LEN, an IN answer within what
 * was asked for. Then a PolicyDevice (vid/pid/bcd/class from
 * device_connect, interface classes from interface_info; no strings, no
 * port) goes to GwProxyCallbacks.check. A new interface_info while the
 * device is in QEMU (after set_configuration or set_alt_setting, or unasked)
 * may list only approved interfaces with their approved classes, and is
 * checked again.
 *
 * What QEMU reads: the client's answers to QEMU's standard GET_DESCRIPTOR
 * requests (device, configuration, string, HID class descriptors) are
 * parsed and must agree with the approved device_connect, interface_info
 * and ep_info (gw-proxy-descriptors.h has the rules, alternate settings
 * included); an answer that contradicts them, or is truncated or
 * malformed, never reaches QEMU: the device is denied as below. Only these
 * control answers are parsed, never bulk, interrupt or iso data.
 *
 * Denied device: nothing of it goes to QEMU; the client gets filter_reject
 * (when it has usb_redir_cap_filter, so a stock usbredirhost reports
 * "device rejected") and both connections are closed after an info log
 * line; callbacks denied() then closed(GW_PROXY_END_DENIED).
 * Malformed or out-of-order client input ends the session the same way
 * (GW_PROXY_END_CLIENT_PROTOCOL) and never reaches QEMU. When the session
 * ends for any reason but QEMU's own, and QEMU has the device, QEMU first
 * gets device_disconnect (best effort, without blocking).
 *
 * Buffering: each side's parser output is bounded: once the output queued
 * for one side exceeds GW_PROXY_MAX_BUFFERED bytes, the proxy stops reading
 * from the other side until it drains below GW_PROXY_RESUME_BUFFERED
 * (backpressure); the overshoot is at most one packet
 * (<= GW_PROXY_MAX_DATA_LEN). At most GW_PROXY_MAX_PENDING requests from
 * QEMU are outstanding; beyond that QEMU is not read until answers come.
 * A packet header announcing more than GW_PROXY_MAX_PACKET_LEN ends the
 * session before usbredirparser allocates a buffer for it. Each wake-up
 * takes what a socket holds with one recv() into a read buffer of the
 * thread (64 KiB) and the parser is served from there; what a stopped side
 * had already read (at most those 64 KiB) waits with it, so an idle proxy
 * holds no read buffer.
 *
 * Threading: create, use and free a GwProxy on one thread, the thread whose
 * thread-default GMainContext is current at gw_proxy_new() (the main thread
 * in usbgwd, docs/threading.md). All I/O is non-blocking, from one fd
 * watch per socket on that context (GwFdWatch, common/gw-fd-watch.h); a
 * socket is polled for G_IO_OUT only while output is pending, so an idle
 * proxy costs no CPU. A client on a transport (gw_proxy_new_with_transport())
 * has no watch: its owner calls gw_proxy_transport_ready(), and the proxy
 * reads it on by itself once backpressure on QEMU's side lifts. Callbacks run on that thread from
 * a fresh idle callback, never from inside a gw_proxy_* call; the owner
 * may free the proxy from closed().
 */
#pragma once

#include <gio/gio.h>

#include "gw-peer-handover.h"
#include "gw-transport.h"
#include "policy.h"

G_BEGIN_DECLS

/* Output queued for one side beyond which the other side is not read. */
#define GW_PROXY_MAX_BUFFERED (4 * 1024 * 1024)
/* Reading resumes once the queued output fell below this. */
#define GW_PROXY_RESUME_BUFFERED (1 * 1024 * 1024)
/* Largest data part of one packet the proxy relays (control, bulk,
 * buffered bulk); usbredir itself allows 128 MiB. */
#define GW_PROXY_MAX_DATA_LEN (4 * 1024 * 1024)
/* Largest packet (type header and data) the proxy reads from either side:
 * a header announcing more ends the session before any buffer is
 * allocated for it (usbredirparser itself would allocate up to 128 MiB). */
#define GW_PROXY_MAX_PACKET_LEN (GW_PROXY_MAX_DATA_LEN + 4096)
/* Largest max_packet_size of an endpoint, and largest iso/interrupt packet:
 * SuperSpeed 1024 bytes x 16 bursts x 3 (mult). */
#define GW_PROXY_MAX_EP_PACKET_SIZE 49152
/* Requests from QEMU awaiting an answer from the client. */
#define GW_PROXY_MAX_PENDING 4096

typedef struct _GwProxy GwProxy;

/* Why a session ended. */
typedef enum {
    GW_PROXY_END_CLIENT_CLOSED,   /* the client hung up or a socket error */
    GW_PROXY_END_QEMU_CLOSED,     /* QEMU hung up or a socket error */
    GW_PROXY_END_CLIENT_PROTOCOL, /* the client sent malformed or out-of-order data */
    GW_PROXY_END_QEMU_PROTOCOL,   /* QEMU sent malformed data */
    GW_PROXY_END_DENIED,          /* the check refused the client's device */
} GwProxyEnd;

typedef struct {
    guint64 client_bytes_in;    /* read from the client */
    guint64 client_bytes_out;   /* written to the client */
    guint64 qemu_bytes_in;      /* read from QEMU */
    guint64 qemu_bytes_out;     /* written to QEMU */
    guint64 client_packets_in;  /* parsed from the client */
    guint64 client_packets_out; /* queued for the client */
    guint64 qemu_packets_in;    /* parsed from QEMU */
    guint64 qemu_packets_out;   /* queued for QEMU */
    guint64 client_buffered;    /* now: bytes queued for the client */
    guint64 qemu_buffered;      /* now: bytes queued for QEMU */
    guint pending;              /* now: requests awaiting the client's answer */
} GwProxyStats;

typedef struct {
    /* Required. Decides whether the client's device may go to QEMU. Return
     * TRUE to allow; on FALSE set *reason (g_strdup'd, taken by the proxy)
     * to a message for logs. Called on the proxy's thread, possibly from
     * inside the proxy's I/O dispatch: it must not free the proxy (it
     * may block only as long as policy_decide() does). @device is borrowed
     * for the call. */
    gboolean (*check)(GwProxy *proxy, const PolicyDevice *device, gchar **reason,
                      gpointer user_data);
    /* Optional: the device was refused (just before closed()). */
    void (*denied)(GwProxy *proxy, const PolicyDevice *device, const gchar *reason,
                   gpointer user_data);
    /* Optional: QEMU got the device (device_connect relayed). */
    void (*connected)(GwProxy *proxy, const PolicyDevice *device, gpointer user_data);
    /* Required. The session ended: both sockets are closed. Called once,
     * from an idle callback; the owner may free the proxy here. */
    void (*closed)(GwProxy *proxy, GwProxyEnd end, const gchar *reason, gpointer user_data);
} GwProxyCallbacks;

/* Starts relaying between two connected stream sockets (unix or TCP), which
 * are made non-blocking; the proxy takes a reference on each and closes
 * them when the session ends. Sends the proxy's hello to the client at
 * once; QEMU's comes when the client's hello arrived. @label names the
 * session in logs. @cb is copied. */
GwProxy *gw_proxy_new(GSocket *client, GSocket *qemu, const gchar *label,
                      const GwProxyCallbacks *cb, gpointer user_data,
                      GError **error) G_GNUC_WARN_UNUSED_RESULT;
/* As gw_proxy_new() with the client side on @client (gw-transport.h;
 * copied, @client_data its argument; closed when the session ends)
 * instead of a socket. The proxy's hello to the client is written at
 * once. */
GwProxy *gw_proxy_new_with_transport(const GwTransport *client, gpointer client_data, GSocket *qemu,
                                     const gchar *label, const GwProxyCallbacks *cb,
                                     gpointer user_data, GError **error) G_GNUC_WARN_UNUSED_RESULT;
/* The owner of the client transport: G_IO_IN, bytes came (or G_IO_HUP:
 * its end is gone, read() says so); G_IO_OUT, write() takes bytes again.
 * Handles them at once; callbacks still come from an idle. */
void gw_proxy_transport_ready(GwProxy *proxy, GIOCondition condition);
/* Stops the session without notifying (no callback runs after this). */
void gw_proxy_free(GwProxy *proxy);
void gw_proxy_get_stats(GwProxy *proxy, GwProxyStats *stats);
/* Whether QEMU has the client's device now. */
gboolean gw_proxy_has_device(GwProxy *proxy);
const gchar *gw_proxy_end_to_string(GwProxyEnd end);

/* A live migration of QEMU's side (docs/migration.md): a second QEMU's
 * connection is held as the destination (a reference is taken) and takes
 * QEMU's place when its VM runs, the stream to QEMU going on byte-exactly;
 * the client's side and the proxy's checks stay as they are. Fails when
 * the session ended, QEMU has not sent its hello, a destination is
 * pending, or the kernel cannot count QEMU's unread bytes. @func (may be
 * NULL) is told on the proxy's thread how it ended (DONE, DROPPED,
 * REFUSED; FAILED ends the session). */
typedef void (*GwProxyHandoverFunc)(GwProxy *proxy, GwPeerHandoverResult result,
                                    const gchar *detail, gpointer user_data);
gboolean gw_proxy_add_destination(GwProxy *proxy, GSocket *destination, GError **error);
/* The device and VM the session's messages are about, for their journal
 * fields (USBGW_DEVICE, USBGW_VM; gw-log.h); either may be NULL. */
void gw_proxy_set_journal_fields(GwProxy *proxy, const gchar *device_id, const gchar *vm);
gboolean gw_proxy_is_migrating(GwProxy *proxy);
void gw_proxy_set_handover_func(GwProxy *proxy, GwProxyHandoverFunc func, gpointer user_data);

G_DEFINE_AUTOPTR_CLEANUP_FUNC(GwProxy, gw_proxy_free)

G_END_DECLS
