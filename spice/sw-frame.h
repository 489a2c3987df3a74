/* Wire format between usbgwd and usbgw-spice-worker on their socketpair.
 *
 * Every message is one frame: an 8-byte header, then `length` payload
 * bytes.
 *
 *   offset size  field
 *   0      4     length   payload bytes, little-endian, <= SW_FRAME_MAX_PAYLOAD
 *   4      1     type     SwFrameType
 *   5      1     channel  usbredir channel index, 0 .. channels-1
 *                         (0 for READY and TICKET)
 *   6      2     reserved must be 0
 *
 * The payload of DATA is opaque usbredir bytes: the worker never parses
 * them, usbgwd's validating proxy does. Both ends are trusted by each other
 * (usbgwd spawned the worker), but a malformed frame is still reported as
 * an error naming the field, never an abort. See spice/README.md for the
 * order of frames and the rules after a channel closes. */
#pragma once

#include <gio/gio.h>

#define SW_FRAME_HEADER_SIZE 8
/* Largest payload of one frame; a longer write is split into several DATA
 * frames. 64 KiB is the size of spice-server's own char device buffers. */
#define SW_FRAME_MAX_PAYLOAD (64 * 1024)
/* Version sent in READY; bump on any incompatible change of this file. */
#define SW_FRAME_VERSION 2
/* Highest number of usbredir channels one worker offers (channel is a byte
 * in the header; spice clients rarely have more than a handful). */
#define SW_FRAME_MAX_CHANNELS 32
/* spice-server's limit for a ticket (SPICE_MAX_PASSWORD_LENGTH). */
#define SW_FRAME_MAX_TICKET 60
/* Longest client address in a CLIENT frame: "[IPv6%scope]:port" fits. */
#define SW_FRAME_MAX_ADDRESS 80

/* What a CLIENT frame reports (its first payload byte). */
typedef enum {
    SW_CLIENT_LOGIN = 1,   /* a client's main channel linked: it holds the share */
    SW_CLIENT_LEFT = 2,    /* that client's main channel closed */
    SW_CLIENT_REFUSED = 3, /* a connection closed unlinked while a client held the share */
} SwClientEvent;

typedef enum {
    /* worker -> usbgwd, once, after the port is bound and privileges are
     * dropped. Payload: u32 LE SW_FRAME_VERSION, u32 LE channel count. */
    SW_FRAME_READY = 1,
    /* usbgwd -> worker, any time: sets (or replaces) the SPICE ticket.
     * Payload: u32 LE lifetime in seconds (0 = never expires), then the
     * ticket bytes (1..SW_FRAME_MAX_TICKET, no NUL). */
    SW_FRAME_TICKET = 2,
    /* worker -> usbgwd: a SPICE client opened usbredir channel `channel`.
     * Empty payload. usbgwd must now send its usbredir hello (the client's
     * usbredirhost waits for it). */
    SW_FRAME_OPEN = 3,
    /* worker -> usbgwd: the client closed channel `channel`; the worker
     * drops every DATA for it from now on until usbgwd answers with
     * CLOSE for the same channel (usbgwd -> worker: "the old session is
     * gone, what follows is for the next client"). Empty payload. */
    SW_FRAME_CLOSE = 4,
    /* both directions: usbredir bytes of channel `channel`. */
    SW_FRAME_DATA = 5,
    /* usbgwd -> worker: like TICKET (same payload), and the connected
     * client, if any, is disconnected; it must log in with the new ticket
     * (usbgwd uses it to make a client start over, or to revoke a share). */
    SW_FRAME_DISCONNECT = 6,
    /* worker -> usbgwd, channel 0: who uses the share. Payload: u8
     * SwClientEvent, then the client's address as spice-server saw its
     * socket ("IP:port", "[IPv6]:port"; 1..SW_FRAME_MAX_ADDRESS printable
     * ASCII bytes, no NUL). One client per share: while a client is
     * logged in (LOGIN, not yet LEFT) the worker withdraws the ticket from
     * spice-server once that client's channels are linked, so a second
     * login is refused (REFUSED names it); after LEFT the ticket is
     * accepted again (the client reconnecting after a network loss). */
    SW_FRAME_CLIENT = 7,
} SwFrameType;
#define SW_FRAME_TYPE_LAST SW_FRAME_CLIENT

typedef struct {
    guint32 length;
    guint8 type; /* SwFrameType, checked by sw_frame_header_unpack() */
    guint8 channel;
} SwFrameHeader;

static inline void
sw_frame_header_pack(guint8 out[SW_FRAME_HEADER_SIZE], SwFrameType type, guint channel,
                     guint32 length)
{
    out[0] = length & 0xff;
    out[1] = (length >> 8) & 0xff;
    out[2] = (length >> 16) & 0xff;
    out[3] = (length >> 24) & 0xff;
    out[4] = (guint8)type;
    out[5] = (guint8)channel;
    out[6] = 0;
    out[7] = 0;
}

/* Checks the fields that do not depend on the receiver's state (type known,
 * length bounded, reserved zero); the channel range is the caller's. */
static inline gboolean
sw_frame_header_unpack(const guint8 in[SW_FRAME_HEADER_SIZE], SwFrameHeader *header, GError **error)
{
    header->length =
        (guint32)in[0] | (guint32)in[1] << 8 | (guint32)in[2] << 16 | (guint32)in[3] << 24;
    header->type = in[4];
    header->channel = in[5];
    if (header->type < SW_FRAME_READY || header->type > SW_FRAME_TYPE_LAST) {
        g_set_error(error, G_IO_ERROR, G_IO_ERROR_INVALID_DATA, "frame type %u is unknown",
                    header->type);
        return FALSE;
    }
    if (header->length > SW_FRAME_MAX_PAYLOAD) {
        g_set_error(error, G_IO_ERROR, G_IO_ERROR_INVALID_DATA, "frame length %u exceeds %u bytes",
                    header->length, SW_FRAME_MAX_PAYLOAD);
        return FALSE;
    }
    if (in[6] != 0 || in[7] != 0) {
        g_set_error(error, G_IO_ERROR, G_IO_ERROR_INVALID_DATA,
                    "frame reserved bytes are %02x%02x, must be 0", in[6], in[7]);
        return FALSE;
    }
    return TRUE;
}

static inline guint32
sw_frame_get_u32(const guint8 *p)
{
    return (guint32)p[0] | (guint32)p[1] << 8 | (guint32)p[2] << 16 | (guint32)p[3] << 24;
}

static inline void
sw_frame_put_u32(guint8 *p, guint32 value)
{
    p[0] = value & 0xff;
    p[1] = (value >> 8) & 0xff;
    p[2] = (value >> 16) & 0xff;
    p[3] = (value >> 24) & 0xff;
}
