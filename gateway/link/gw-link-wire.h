/* The gateway link's wire (docs/links.md, "Wire"): frames and the JSON
 * messages they carry, encoded and decoded without any I/O.
 *
 * A frame is an 8-byte header (u8 type, u8 flags, u16 payload length, u32
 * stream, big-endian) and its payload. GwLinkDecoder takes the bytes of a
 * connection in pieces of any size and returns whole frames, after
 * checking everything the header alone decides: a known type, flags, the
 * stream (0 for link-level messages, not 0 for stream messages) and the
 * payload length the type allows. The message parsers check a payload:
 * JSON that json-glib parses, an object with the members the message
 * needs, of the right types. Every error names the frame type and what is
 * wrong with it.
 *
 * The encoders append whole frames to a GByteArray.
 *
 * Ownership: a decoder is a plain struct (init/clear); a frame it returns
 * borrows the payload until the next call. No threads, no global state. */
#pragma once

#include <gio/gio.h>

#include "policy.h"

G_BEGIN_DECLS

#define GW_LINK_WIRE_ERROR (gw_link_wire_error_quark())
GQuark gw_link_wire_error_quark(void);

typedef enum {
    GW_LINK_WIRE_ERROR_PROTOCOL,  /* the peer broke the wire format */
    GW_LINK_WIRE_ERROR_TOO_LARGE, /* a message of ours would not fit in a frame */
} GwLinkWireError;

#define GW_LINK_WIRE_HEADER_LEN 8
/* Largest payload a frame can carry (u16 length). */
#define GW_LINK_WIRE_MAX_PAYLOAD 65535
/* Largest DATA payload (GW_LINK_MAX_DATA in gw-link.h). */
#define GW_LINK_WIRE_MAX_DATA 16384
/* Flag bit 0: the stream was opened by the sender of the frame. */
#define GW_LINK_WIRE_FLAG_OPENER 0x01
/* Length of a HELLO instance: 16 lower-case hex digits. */
#define GW_LINK_WIRE_INSTANCE_LEN 16
/* Reasons we send are cut to this many bytes (at a character boundary). */
#define GW_LINK_WIRE_MAX_REASON 1024

typedef enum {
    GW_LINK_FRAME_HELLO = 1,
    GW_LINK_FRAME_REFUSE = 2,
    GW_LINK_FRAME_DEVICE_ADD = 3,
    GW_LINK_FRAME_DEVICE_REMOVE = 4,
    GW_LINK_FRAME_SYNCED = 5,
    GW_LINK_FRAME_OPEN = 6,
    GW_LINK_FRAME_OPENED = 7,
    GW_LINK_FRAME_CLOSE = 8,
    GW_LINK_FRAME_DATA = 9,
    GW_LINK_FRAME_CREDIT = 10,
    GW_LINK_FRAME_RESUME = 11,
    GW_LINK_FRAME_PING = 12,
    GW_LINK_FRAME_PONG = 13,
} GwLinkFrameType;

/* "HELLO", "DATA", …; "frame type N" for an unknown one (static or
 * thread-local storage: use before the next call). */
const gchar *gw_link_frame_type_name(guint type);

typedef struct {
    guint8 type;
    guint8 flags;
    guint16 length;
    guint32 stream;
    const guint8 *payload; /* borrowed: length bytes */
} GwLinkFrame;

typedef struct {
    guint8 header[GW_LINK_WIRE_HEADER_LEN];
    guint header_got;
    guint8 *payload; /* owned, nullable: a frame split across feeds */
    guint payload_got;
    GwLinkFrame frame; /* the header of the frame being read */
    gboolean failed;   /* an error was returned: nothing more is decoded */
} GwLinkDecoder;

typedef enum {
    GW_LINK_DECODE_MORE,  /* every byte consumed, no whole frame yet */
    GW_LINK_DECODE_FRAME, /* *frame is a whole frame */
    GW_LINK_DECODE_ERROR, /* the bytes break the wire format */
} GwLinkDecodeResult;

void gw_link_decoder_init(GwLinkDecoder *decoder);
/* Frees a split frame's buffer; the decoder can be used again. */
void gw_link_decoder_clear(GwLinkDecoder *decoder);
/* Decodes from @data (@len bytes); *@consumed says how many were used.
 * Call again with the rest after a FRAME. A frame's payload borrows from
 * @data or from the decoder until the next call. */
GwLinkDecodeResult gw_link_decoder_feed(GwLinkDecoder *decoder, const guint8 *data, gsize len,
                                        gsize *consumed, GwLinkFrame *frame, GError **error);

/* ---- Message payloads ------------------------------------------------- */

/* HELLO: version 1 and the instance (16 lower-case hex digits). */
gboolean gw_link_wire_parse_hello(const GwLinkFrame *frame, gchar **instance,
                                  GError **error) G_GNUC_WARN_UNUSED_RESULT;
/* REFUSE and CLOSE: the reason, made printable (control characters and
 * invalid UTF-8 replaced, cut to GW_LINK_WIRE_MAX_REASON bytes). */
gboolean gw_link_wire_parse_reason(const GwLinkFrame *frame, gchar **reason,
                                   GError **error) G_GNUC_WARN_UNUSED_RESULT;
/* DEVICE_ADD: the id and the description; *@device_json is the canonical
 * JSON form of the description (to tell a changed one). */
gboolean gw_link_wire_parse_device_add(const GwLinkFrame *frame, gchar **id, PolicyDevice **device,
                                       gchar **device_json,
                                       GError **error) G_GNUC_WARN_UNUSED_RESULT;
/* DEVICE_REMOVE: the id. */
gboolean gw_link_wire_parse_device_remove(const GwLinkFrame *frame, gchar **id,
                                          GError **error) G_GNUC_WARN_UNUSED_RESULT;
/* SYNCED: a JSON object. */
gboolean gw_link_wire_parse_synced(const GwLinkFrame *frame,
                                   GError **error) G_GNUC_WARN_UNUSED_RESULT;
/* OPEN: the device id, made printable (control characters and invalid
 * UTF-8 replaced by '?'). */
gboolean gw_link_wire_parse_open(const GwLinkFrame *frame, gchar **device,
                                 GError **error) G_GNUC_WARN_UNUSED_RESULT;
/* CREDIT and RESUME: the u64 (the decoder checked the length). */
guint64 gw_link_wire_parse_u64(const GwLinkFrame *frame);

/* A printable copy of @text: control characters and invalid UTF-8 become
 * '?', at most @max bytes. */
gchar *gw_link_wire_sanitize(const gchar *text, gsize max) G_GNUC_WARN_UNUSED_RESULT;
/* The canonical JSON text of a device description. */
gchar *gw_link_wire_device_json(const PolicyDevice *device) G_GNUC_WARN_UNUSED_RESULT;

/* ---- Encoders: append one whole frame to @out ------------------------- */

void gw_link_wire_put_header(GByteArray *out, GwLinkFrameType type, guint8 flags, guint16 length,
                             guint32 stream);
void gw_link_wire_put_hello(GByteArray *out, const gchar *instance);
void gw_link_wire_put_refuse(GByteArray *out, const gchar *reason);
/* @device_json: gw_link_wire_device_json()'s text. FALSE (nothing
 * appended) when the message exceeds a frame. */
gboolean gw_link_wire_put_device_add(GByteArray *out, const gchar *id, const gchar *device_json,
                                     GError **error) G_GNUC_WARN_UNUSED_RESULT;
gboolean gw_link_wire_put_device_remove(GByteArray *out, const gchar *id,
                                        GError **error) G_GNUC_WARN_UNUSED_RESULT;
void gw_link_wire_put_synced(GByteArray *out);
gboolean gw_link_wire_put_open(GByteArray *out, guint32 stream, const gchar *device,
                               GError **error) G_GNUC_WARN_UNUSED_RESULT;
void gw_link_wire_put_opened(GByteArray *out, guint8 flags, guint32 stream);
void gw_link_wire_put_close(GByteArray *out, guint8 flags, guint32 stream, const gchar *reason);
/* @len: 1..GW_LINK_WIRE_MAX_DATA */
void gw_link_wire_put_data(GByteArray *out, guint8 flags, guint32 stream, const guint8 *data,
                           gsize len);
void gw_link_wire_put_u64(GByteArray *out, GwLinkFrameType type, guint8 flags, guint32 stream,
                          guint64 value);
void gw_link_wire_put_ping(GByteArray *out, GwLinkFrameType type, const guint8 payload[8]);

G_END_DECLS
