/* The records of a migration relay stream. */
#include "gw-relay-wire.h"

#include <gio/gio.h>
#include <string.h>

#include "gw-link-wire.h"

static const gchar *const gw_relay_record_names[] = {
    [GW_RELAY_RECORD_DATA] = "DATA",
    [GW_RELAY_RECORD_CONSUMED] = "CONSUMED",
    [GW_RELAY_RECORD_QUERY] = "QUERY",
    [GW_RELAY_RECORD_ANSWER] = "ANSWER",
    [GW_RELAY_RECORD_MIGRATED_IN] = "MIGRATED_IN",
    [GW_RELAY_RECORD_MIGRATED_OUT] = "MIGRATED_OUT",
    [GW_RELAY_RECORD_GONE] = "GONE",
};

const gchar *
gw_relay_record_name(guint type)
{
    static GPrivate unknown = G_PRIVATE_INIT(g_free);
    gchar *text;

    if (type < G_N_ELEMENTS(gw_relay_record_names) && gw_relay_record_names[type] != NULL)
        return gw_relay_record_names[type];
    text = g_strdup_printf("record type %u", type);
    g_private_replace(&unknown, text);
    return text;
}

/* Whether @end may receive a record of @type, and the lengths it allows. */
static gboolean
gw_relay_record_allowed(GwRelayEnd end, guint type, guint *min, guint *max)
{
    switch (type) {
    case GW_RELAY_RECORD_DATA:
        *min = 1;
        *max = GW_RELAY_WIRE_MAX_DATA;
        return TRUE;
    case GW_RELAY_RECORD_CONSUMED:
    case GW_RELAY_RECORD_ANSWER:
        *min = *max = 8;
        return end == GW_RELAY_END_ANCHOR;
    case GW_RELAY_RECORD_QUERY:
        *min = *max = 0;
        return end == GW_RELAY_END_RELAY;
    case GW_RELAY_RECORD_GONE:
        *min = *max = 0;
        return end == GW_RELAY_END_ANCHOR;
    case GW_RELAY_RECORD_MIGRATED_IN:
    case GW_RELAY_RECORD_MIGRATED_OUT:
        *min = 1;
        *max = GW_RELAY_WIRE_MAX_NAME;
        return end == GW_RELAY_END_RELAY;
    default:
        return FALSE;
    }
}

GwRelayDecoder *
gw_relay_decoder_new(GwRelayEnd end)
{
    GwRelayDecoder *decoder = g_new0(GwRelayDecoder, 1);

    decoder->end = end;
    return decoder;
}

void
gw_relay_decoder_free(GwRelayDecoder *decoder)
{
    g_free(decoder);
}

/* The header is whole: check it. */
static gboolean
gw_relay_decoder_check_header(GwRelayDecoder *decoder, GError **error)
{
    GwRelayRecord *record = &decoder->record;
    guint8 flags = decoder->header[1];
    guint min, max;

    record->type = decoder->header[0];
    record->length = (guint16)((decoder->header[2] << 8) | decoder->header[3]);
    if (!gw_relay_record_allowed(decoder->end, record->type, &min, &max)) {
        g_set_error(error, G_IO_ERROR, G_IO_ERROR_INVALID_DATA,
                    "migration relay stream: %s is not a record the %s receives",
                    gw_relay_record_name(record->type),
                    decoder->end == GW_RELAY_END_ANCHOR ? "anchor" : "relay");
        return FALSE;
    }
    if (flags != 0) {
        g_set_error(error, G_IO_ERROR, G_IO_ERROR_INVALID_DATA,
                    "migration relay stream: %s has flags 0x%02x (none are defined)",
                    gw_relay_record_name(record->type), flags);
        return FALSE;
    }
    if (record->length < min || record->length > max) {
        g_set_error(error, G_IO_ERROR, G_IO_ERROR_INVALID_DATA,
                    "migration relay stream: %s of %u bytes (it has %u to %u)",
                    gw_relay_record_name(record->type), record->length, min, max);
        return FALSE;
    }
    return TRUE;
}

GwRelayDecodeResult
gw_relay_decoder_feed(GwRelayDecoder *decoder, const guint8 *data, gsize len, gsize *consumed,
                      GwRelayRecord *record, GError **error)
{
    gsize used = 0;

    *consumed = 0;
    if (decoder->failed) {
        g_set_error_literal(error, G_IO_ERROR, G_IO_ERROR_INVALID_DATA,
                            "migration relay stream: decoding stopped at an earlier error");
        return GW_RELAY_DECODE_ERROR;
    }
    if (decoder->header_got < GW_RELAY_WIRE_HEADER_LEN) {
        gsize take = MIN(len, GW_RELAY_WIRE_HEADER_LEN - decoder->header_got);
        memcpy(decoder->header + decoder->header_got, data, take);
        decoder->header_got += take;
        used += take;
        if (decoder->header_got < GW_RELAY_WIRE_HEADER_LEN) {
            *consumed = used;
            return GW_RELAY_DECODE_MORE;
        }
        if (!gw_relay_decoder_check_header(decoder, error)) {
            decoder->failed = TRUE;
            *consumed = used;
            return GW_RELAY_DECODE_ERROR;
        }
        decoder->payload_got = 0;
    }
    if (decoder->payload_got == 0 && len - used >= decoder->record.length) {
        /* the whole payload is in @data: borrow it */
        *record = decoder->record;
        record->payload = data + used;
        *consumed = used + decoder->record.length;
        decoder->header_got = 0;
        return GW_RELAY_DECODE_RECORD;
    }
    {
        gsize take = MIN(len - used, (gsize)decoder->record.length - decoder->payload_got);
        memcpy(decoder->payload + decoder->payload_got, data + used, take);
        decoder->payload_got += take;
        used += take;
    }
    *consumed = used;
    if (decoder->payload_got < decoder->record.length)
        return GW_RELAY_DECODE_MORE;
    *record = decoder->record;
    record->payload = decoder->payload;
    decoder->header_got = 0;
    decoder->payload_got = 0;
    return GW_RELAY_DECODE_RECORD;
}

guint64
gw_relay_record_u64(const GwRelayRecord *record)
{
    guint64 value = 0;

    for (guint i = 0; i < 8 && i < record->length; i++)
        value = (value << 8) | record->payload[i];
    return value;
}

gchar *
gw_relay_record_name_text(const GwRelayRecord *record)
{
    g_autofree gchar *raw = g_strndup((const gchar *)record->payload, record->length);

    return gw_link_wire_sanitize(raw, GW_RELAY_WIRE_MAX_NAME);
}

static void
gw_relay_wire_put_header(GByteArray *out, GwRelayRecordType type, guint16 length)
{
    guint8 header[GW_RELAY_WIRE_HEADER_LEN] = {type, 0, (guint8)(length >> 8),
                                               (guint8)(length & 0xff)};

    g_byte_array_append(out, header, sizeof(header));
}

void
gw_relay_wire_put_data(GByteArray *out, const guint8 *data, gsize len)
{
    g_return_if_fail(len > 0 && len <= GW_RELAY_WIRE_MAX_DATA);
    gw_relay_wire_put_header(out, GW_RELAY_RECORD_DATA, (guint16)len);
    g_byte_array_append(out, data, (guint)len);
}

void
gw_relay_wire_put_u64(GByteArray *out, GwRelayRecordType type, guint64 value)
{
    guint8 payload[8];

    for (guint i = 0; i < 8; i++)
        payload[i] = (guint8)(value >> (56 - 8 * i));
    gw_relay_wire_put_header(out, type, sizeof(payload));
    g_byte_array_append(out, payload, sizeof(payload));
}

void
gw_relay_wire_put_empty(GByteArray *out, GwRelayRecordType type)
{
    gw_relay_wire_put_header(out, type, 0);
}

void
gw_relay_wire_put_name(GByteArray *out, GwRelayRecordType type, const gchar *name)
{
    gsize len = MIN(strlen(name), GW_RELAY_WIRE_MAX_NAME);

    /* an empty name would not decode: the anchor always has one */
    if (len == 0) {
        name = "?";
        len = 1;
    }
    gw_relay_wire_put_header(out, type, (guint16)len);
    g_byte_array_append(out, (const guint8 *)name, (guint)len);
}
