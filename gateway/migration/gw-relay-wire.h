/* The records of a migration relay stream (docs/migration.md, "Across
 * hosts"): a gateway link stream between the gateway that keeps a VM's
 * device session (the anchor) and a gateway whose QEMU the VM migrated to
 * (the relay). It carries QEMU's usbredir bytes both ways, unparsed, and
 * what the anchor's handover needs to know of the relay's QEMU: how many
 * of the bytes sent to it QEMU has read.
 *
 * A record is a 4-byte header (u8 type, u8 flags = 0, u16 payload length,
 * big-endian) and its payload:
 *
 *   DATA          both ways   1..GW_RELAY_WIRE_MAX_DATA bytes of usbredir
 *   CONSUMED      relay       u64: of the DATA bytes the anchor sent, how
 *                             many the relay's QEMU has read
 *   QUERY         anchor      empty: send an ANSWER now
 *   ANSWER        relay       u64 as CONSUMED, counted after the relay
 *                             read what its QEMU had written (those bytes
 *                             come first)
 *   MIGRATED_IN   anchor      a gateway name: the relay's QEMU holds the
 *                             device now; the VM came from that gateway
 *   MIGRATED_OUT  anchor      a gateway name: the VM went on to it
 *   GONE          relay       empty: the relay's QEMU closed its connection;
 *                             no more DATA or counts come, the stream stays
 *                             open for the anchor's last records
 *
 * GwRelayDecoder takes the stream's bytes in pieces of any size and
 * returns whole records, after checking the type (and its direction), the
 * flags and the length the type allows; every error names the record and
 * what is wrong. No I/O, no threads, no global state. */
#pragma once

#include <glib.h>

G_BEGIN_DECLS

#define GW_RELAY_WIRE_HEADER_LEN 4
/* Largest DATA payload. */
#define GW_RELAY_WIRE_MAX_DATA 16384
/* Longest gateway name in MIGRATED_IN and MIGRATED_OUT. */
#define GW_RELAY_WIRE_MAX_NAME 255

typedef enum {
    GW_RELAY_RECORD_DATA = 1,
    GW_RELAY_RECORD_CONSUMED = 2,
    GW_RELAY_RECORD_QUERY = 3,
    GW_RELAY_RECORD_ANSWER = 4,
    GW_RELAY_RECORD_MIGRATED_IN = 5,
    GW_RELAY_RECORD_MIGRATED_OUT = 6,
    GW_RELAY_RECORD_GONE = 7,
} GwRelayRecordType;

/* Which end decodes: each accepts only the records the other end sends. */
typedef enum {
    GW_RELAY_END_ANCHOR,
    GW_RELAY_END_RELAY,
} GwRelayEnd;

typedef struct {
    guint8 type;
    guint16 length;
    const guint8 *payload; /* borrowed: length bytes */
} GwRelayRecord;

typedef struct {
    GwRelayEnd end;
    guint8 header[GW_RELAY_WIRE_HEADER_LEN];
    guint header_got;
    guint8 payload[GW_RELAY_WIRE_MAX_DATA]; /* a record split across feeds */
    guint payload_got;
    GwRelayRecord record; /* the record being read */
    gboolean failed;      /* an error was returned: nothing more is decoded */
} GwRelayDecoder;

typedef enum {
    GW_RELAY_DECODE_MORE,   /* every byte consumed, no whole record yet */
    GW_RELAY_DECODE_RECORD, /* *record is a whole record */
    GW_RELAY_DECODE_ERROR,  /* the bytes break the format */
} GwRelayDecodeResult;

/* "DATA", "CONSUMED", …; "record type N" for an unknown one (valid until
 * the next call on the thread). */
const gchar *gw_relay_record_name(guint type);

/* A decoder for the records that reach @end. */
GwRelayDecoder *gw_relay_decoder_new(GwRelayEnd end);
void gw_relay_decoder_free(GwRelayDecoder *decoder);
G_DEFINE_AUTOPTR_CLEANUP_FUNC(GwRelayDecoder, gw_relay_decoder_free)

/* Decodes from @data (@len bytes); *@consumed says how many were used.
 * Call again with the rest after a RECORD. A record's payload borrows
 * from @data or from the decoder until the next call. */
GwRelayDecodeResult gw_relay_decoder_feed(GwRelayDecoder *decoder, const guint8 *data, gsize len,
                                          gsize *consumed, GwRelayRecord *record, GError **error);

/* CONSUMED and ANSWER: the count (the decoder checked the length). */
guint64 gw_relay_record_u64(const GwRelayRecord *record);
/* MIGRATED_IN and MIGRATED_OUT: the gateway name, made printable. */
gchar *gw_relay_record_name_text(const GwRelayRecord *record) G_GNUC_WARN_UNUSED_RESULT;

/* Encoders: append one whole record to @out. */
/* @len: 1..GW_RELAY_WIRE_MAX_DATA */
void gw_relay_wire_put_data(GByteArray *out, const guint8 *data, gsize len);
/* CONSUMED or ANSWER */
void gw_relay_wire_put_u64(GByteArray *out, GwRelayRecordType type, guint64 value);
/* QUERY or GONE */
void gw_relay_wire_put_empty(GByteArray *out, GwRelayRecordType type);
/* MIGRATED_IN or MIGRATED_OUT; @name is cut to GW_RELAY_WIRE_MAX_NAME. */
void gw_relay_wire_put_name(GByteArray *out, GwRelayRecordType type, const gchar *name);

G_END_DECLS
