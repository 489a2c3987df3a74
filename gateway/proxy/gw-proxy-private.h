/* What the proxy's files share: gw-proxy.c (sockets, parsers, the fd
 * watches, the public API), gw-proxy-client.c (the lending client's side:
 * every packet checked before QEMU sees it), gw-proxy-qemu.c (QEMU's
 * side), gw-proxy-pending.c (QEMU's requests awaiting answers) and
 * gw-proxy-migration.c (QEMU's side handed to a migration's destination).
 * Nothing outside gateway/proxy/ includes it. Main thread only. */
#pragma once

#include <usbredirfilter.h>
#include <usbredirparser.h>

#include "gw-fd-watch.h"
#include "gw-handover-stream.h"
#include "gw-log.h"
#include "gw-peer-handover.h"
#include "gw-proxy-descriptors.h"
#include "gw-proxy.h"

G_BEGIN_DECLS

#define GW_PROXY_VERSION "usbgw-proxy"
/* Bytes one recv() takes from a socket at most (the thread's read
 * buffer); a parser asking for more gets them straight from the socket. */
#define GW_PROXY_READ_CHUNK (64 * 1024)
/* usbredir's endpoint index: OUT endpoints 0-15, IN endpoints 16-31. */
#define GW_PROXY_EP_INDEX(ep) ((((ep)&0x80) >> 3) | ((ep)&0x0f))
#define GW_PROXY_EP_COUNT     32
#define GW_PROXY_EP0_OUT      0
#define GW_PROXY_EP0_IN       16
/* usbredir's interface_info holds at most this many interfaces. */
#define GW_PROXY_MAX_INTERFACES 32
/* USB 3 allows 2^16 streams per endpoint. */
#define GW_PROXY_MAX_STREAMS 65536

typedef enum {
    GW_PROXY_DEV_NONE,       /* the client offers no device */
    GW_PROXY_DEV_INTERFACES, /* interface_info held */
    GW_PROXY_DEV_ENDPOINTS,  /* interface_info and ep_info held */
    GW_PROXY_DEV_ALLOWED,    /* device_connect came and was allowed; waiting for QEMU */
    GW_PROXY_DEV_IN_QEMU,    /* relayed to QEMU */
} GwProxyDevState;

typedef struct {
    GwProxy *proxy;        /* back pointer */
    const gchar *name;     /* "client" or "QEMU" */
    GSocket *socket;       /* owned ref, nullable: a transport side has none */
    int fd;                /* borrowed from socket; -1 once closed (and on a transport) */
    GwTransport transport; /* the client on a transport: transport.read set */
    gpointer transport_data;
    gboolean transport_open;       /* the transport is in use (until the session ends) */
    gboolean transport_readable;   /* told G_IO_IN and not read empty since */
    struct usbredirparser *parser; /* owned */
    gboolean initialized;          /* usbredirparser_init() done (our hello queued) */
    gboolean hello;                /* the peer's hello came */
    gboolean blocked;              /* not read: the other side's output is over the limit */
    gboolean eof;                  /* the peer closed or a socket error */
    /* The peer's packet framing, followed byte by byte as the parser reads
     * (it reads exactly one header, type header and data at a time): a
     * length over GW_PROXY_MAX_PACKET_LEN ends the session before the
     * parser allocates a buffer for it. */
    guint8 frame_header[16];
    guint frame_header_len;  /* 12 or 16, fixed at the header's first byte */
    guint frame_header_got;  /* header bytes seen */
    guint64 frame_body_left; /* type header + data bytes still to come */
    gchar *stream_error;     /* owned, nullable: why the framing was refused */
    /* Bytes read from the socket that the parser has not taken yet. One
     * recv() takes what the socket holds into the thread's read buffer
     * and the parser is served from there, instead of one recv() per
     * header, type header and data part. @in points into that buffer
     * during a dispatch; bytes the parser left when it stopped
     * (backpressure) move to @held, at most GW_PROXY_READ_CHUNK. */
    const guint8 *in;  /* borrowed: the next byte for the parser */
    gsize in_len;      /* bytes at @in */
    guint8 *held;      /* owned, nullable: what @in points into between dispatches */
    gboolean in_empty; /* the socket had no more when last read in this dispatch */
    GwFdWatch *watch;  /* owned, nullable: on @fd until the session ends */
    guint64 bytes_in;
    guint64 bytes_out;
    guint64 packets_in;
    guint64 packets_out;
} GwProxySide;

/* A live migration of QEMU's side (gw-proxy-migration.c,
 * docs/migration.md): QEMU's connection moves to the destination QEMU's
 * with the proxy's state and the stream to QEMU unbroken. */
typedef struct {
    GMutex lock;              /* the handover's contract (the proxy is single-threaded) */
    GwHandoverStream *stream; /* owned: the packets written to QEMU */
    GwPeerHandover *handover; /* owned, nullable: while a destination is pending */
    GBytes *resend;           /* owned, nullable: bytes the destination gets first */
    gsize resend_offset;
    gboolean draining; /* reading the source QEMU to its end, past backpressure */
    GwProxyHandoverFunc func;
    gpointer func_data;
} GwProxyMigration;

/* A request from QEMU awaiting the client's answer. */
typedef struct {
    guint64 client_id; /* key of GwProxy.pending */
    guint64 qemu_id;   /* key of GwProxy.pending_by_qemu */
    guint32 answer;    /* the usb_redir_* packet type that answers it */
    gint endpoint;     /* -1: none */
    guint32 length;    /* data packets: the length asked for */
    guint32 stream_id; /* bulk packets */
    gboolean stale;    /* the device left: drop the answer */
    /* a GET_DESCRIPTOR whose answer is checked (gw-proxy-descriptors.h) */
    gboolean check_descriptor;
    struct usb_redir_control_packet_header control; /* QEMU's request, when checked */
} GwProxyPending;

struct _GwProxy {
    gchar *label;     /* owned */
    gchar *device_id; /* owned, nullable: the journal's USBGW_DEVICE */
    gchar *vm;        /* owned, nullable: the journal's USBGW_VM */
    GwProxyCallbacks cb;
    gpointer user_data;
    GMainContext *context;  /* owned ref */
    GSource *notify_source; /* owned, nullable: a pending idle notification */
    GwProxySide client;
    GwProxySide qemu;

    GwProxyDevState dev;
    struct usb_redir_interface_info_header interfaces; /* validated copy */
    struct usb_redir_ep_info_header endpoints;         /* validated copy */
    struct usb_redir_device_connect_header connect;    /* validated copy */
    /* what the check allowed at device_connect: QEMU's descriptor reads and
     * later interface_info are held against it (gw-proxy-descriptors.h) */
    struct usb_redir_interface_info_header approved_interfaces;
    struct usb_redir_ep_info_header approved_endpoints;
    guint32 bulk_receiving_bytes[GW_PROXY_EP_COUNT]; /* per IN endpoint, 0: never started */
    gboolean qemu_awaiting_ack; /* device_disconnect sent to QEMU, no ack yet */

    GHashTable *pending;         /* guint64 client id -> GwProxyPending, owned */
    GHashTable *pending_by_qemu; /* guint64 QEMU id -> GwProxyPending, borrowed */
    guint64 next_client_id;

    PolicyDevice *connected_device; /* owned, nullable: connected() to report */
    PolicyDevice *denied_device;    /* owned, nullable */
    gboolean ended;
    gboolean end_notified;
    GwProxyEnd end;
    gchar *end_reason; /* owned, nullable */
    GwProxyMigration migration;
};

/* A message about the session, with its journal fields (gw-log.h). */
#define gw_proxy_log_device(proxy, level, message_id, ...)                                         \
    gw_log_device((level), (proxy)->device_id, (proxy)->vm, (message_id), __VA_ARGS__)

/* gw-proxy.c */
void gw_proxy_fail(GwProxy *proxy, GwProxyEnd end, const gchar *format, ...) G_GNUC_PRINTF(3, 4);
void gw_proxy_notify_later(GwProxy *proxy);
int gw_proxy_client_read_cb(void *priv, uint8_t *data, int count);
int gw_proxy_client_write_cb(void *priv, uint8_t *data, int count);
int gw_proxy_qemu_read_cb(void *priv, uint8_t *data, int count);
int gw_proxy_qemu_write_cb(void *priv, uint8_t *data, int count);
void gw_proxy_client_log_cb(void *priv, int level, const char *msg);
void gw_proxy_qemu_log_cb(void *priv, int level, const char *msg);
void gw_proxy_end(GwProxy *proxy, GwProxyEnd end, const gchar *reason);
void gw_proxy_init_qemu(GwProxy *proxy);
#define gw_proxy_client_violation(proxy, ...)                                                      \
    gw_proxy_fail(proxy, GW_PROXY_END_CLIENT_PROTOCOL, __VA_ARGS__)
void gw_proxy_side_flush(GwProxySide *side);
void gw_proxy_side_rewatch(GwProxySide *side);

/* gw-proxy-pending.c */
void gw_proxy_pending_make_stale(GwProxy *proxy);
gboolean gw_proxy_qemu_request(GwProxy *proxy, uint64_t qemu_id, guint32 answer, gint endpoint,
                               guint32 length, guint32 stream_id, uint64_t *client_id);
void gw_proxy_pending_check_descriptor(GwProxy *proxy, uint64_t client_id,
                                       const struct usb_redir_control_packet_header *request);
gboolean gw_proxy_take_answer(GwProxy *proxy, uint64_t id, guint32 answer, gint endpoint,
                              const gchar *what, GwProxyPending *out);
gboolean gw_proxy_try_take_stream_answer(GwProxy *proxy, uint64_t id, guint32 answer, gint endpoint,
                                         uint64_t *qemu_id, gboolean *stale);

/* gw-proxy-migration.c */
void gw_proxy_migration_init(GwProxy *proxy);
void gw_proxy_migration_clear(GwProxy *proxy);
/* Ends a pending handover (its destination closed): the session ends. */
void gw_proxy_migration_abandon(GwProxy *proxy);
/* The re-sent bytes go first: 1 none left, 0 some wait (socket full),
 * -1 the write failed. */
int gw_proxy_migration_flush_resend(GwProxy *proxy);
/* @len bytes were written to QEMU at stream offset @offset. */
void gw_proxy_migration_written(GwProxy *proxy, guint64 offset, const guint8 *data, gsize len);
void gw_proxy_migration_before_read(GwProxy *proxy);
/* What QEMU's side read: bytes, 0, or -1 at its end. TRUE when the end
 * belongs to a migration's source (the session goes on). */
gboolean gw_proxy_migration_after_read(GwProxy *proxy, gssize got);
/* QEMU's side ended or hung up: TRUE when a destination takes over. */
gboolean gw_proxy_migration_source_gone(GwProxy *proxy);
gboolean gw_proxy_migration_draining(GwProxy *proxy);
/* QEMU's hello came: the stream learns its packet header size. */
void gw_proxy_migration_qemu_hello(GwProxy *proxy);

/* gw-proxy-client.c: the client parser's callbacks */
void gw_proxy_count_to_client(GwProxy *proxy);
void gw_proxy_try_forward(GwProxy *proxy);
guint32 gw_proxy_bulk_length(struct usbredirparser *parser,
                             const struct usb_redir_bulk_packet_header *h);
struct usbredirparser *gw_proxy_client_parser_new(GwProxy *proxy);

/* gw-proxy-qemu.c: QEMU's parser's callbacks */
/* Packet types a side can never send, with an id and a header: each has a
 * gw_proxy_unexpected_NAME() that ends the session. */
#define GW_PROXY_UNEXPECTED_PACKETS(X)                                                             \
    X(set_configuration, usb_redir_set_configuration_header)                                       \
    X(configuration_status, usb_redir_configuration_status_header)                                 \
    X(set_alt_setting, usb_redir_set_alt_setting_header)                                           \
    X(get_alt_setting, usb_redir_get_alt_setting_header)                                           \
    X(alt_setting_status, usb_redir_alt_setting_status_header)                                     \
    X(start_iso_stream, usb_redir_start_iso_stream_header)                                         \
    X(stop_iso_stream, usb_redir_stop_iso_stream_header)                                           \
    X(iso_stream_status, usb_redir_iso_stream_status_header)                                       \
    X(start_interrupt_receiving, usb_redir_start_interrupt_receiving_header)                       \
    X(stop_interrupt_receiving, usb_redir_stop_interrupt_receiving_header)                         \
    X(interrupt_receiving_status, usb_redir_interrupt_receiving_status_header)                     \
    X(alloc_bulk_streams, usb_redir_alloc_bulk_streams_header)                                     \
    X(free_bulk_streams, usb_redir_free_bulk_streams_header)                                       \
    X(bulk_streams_status, usb_redir_bulk_streams_status_header)                                   \
    X(start_bulk_receiving, usb_redir_start_bulk_receiving_header)                                 \
    X(stop_bulk_receiving, usb_redir_stop_bulk_receiving_header)                                   \
    X(bulk_receiving_status, usb_redir_bulk_receiving_status_header)
#define GW_PROXY_DECLARE_UNEXPECTED(name, header)                                                  \
    void gw_proxy_unexpected_##name(void *priv, uint64_t id, struct header *h);
GW_PROXY_UNEXPECTED_PACKETS(GW_PROXY_DECLARE_UNEXPECTED)
void gw_proxy_unexpected(void *priv);
void gw_proxy_unexpected_id(void *priv, uint64_t id);
struct usbredirparser *gw_proxy_qemu_parser_new(GwProxy *proxy);

G_END_DECLS
