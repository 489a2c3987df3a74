/* The records of a migration relay stream (gateway/migration/gw-relay-wire.c):
 * what one end encodes the other decodes, in pieces of any size; what an
 * end must not receive, bad flags, lengths and types are errors that name
 * the record, and decoding stops at the first. */
#include <string.h>

#include "gw-relay-wire.h"

/* Decodes @bytes for @end in pieces of @piece bytes; the records' types,
 * u64s or payload lengths into @got as text. */
static GwRelayDecodeResult
decode_all(GwRelayEnd end, GByteArray *bytes, gsize piece, GString *got, GError **error)
{
    g_autoptr(GwRelayDecoder) decoder = gw_relay_decoder_new(end);

    for (gsize pos = 0; pos < bytes->len;) {
        gsize len = MIN(piece, bytes->len - pos), done = 0;
        while (done < len) {
            GwRelayRecord record;
            gsize used;
            GwRelayDecodeResult result = gw_relay_decoder_feed(decoder, bytes->data + pos + done,
                                                               len - done, &used, &record, error);
            done += used;
            if (result == GW_RELAY_DECODE_ERROR)
                return result;
            if (result == GW_RELAY_DECODE_MORE)
                continue;
            g_string_append_printf(got, "%s", gw_relay_record_name(record.type));
            if (record.type == GW_RELAY_RECORD_CONSUMED || record.type == GW_RELAY_RECORD_ANSWER)
                g_string_append_printf(got, "=%" G_GUINT64_FORMAT, gw_relay_record_u64(&record));
            else if (record.type == GW_RELAY_RECORD_MIGRATED_IN ||
                     record.type == GW_RELAY_RECORD_MIGRATED_OUT) {
                g_autofree gchar *name = gw_relay_record_name_text(&record);
                g_string_append_printf(got, "=%s", name);
            } else if (record.type == GW_RELAY_RECORD_DATA)
                g_string_append_printf(got, "=%u:%c", record.length, record.payload[0]);
            g_string_append_c(got, ' ');
        }
        pos += len;
    }
    return GW_RELAY_DECODE_MORE;
}

static void
test_round_trip(void)
{
    g_autoptr(GByteArray) to_anchor = g_byte_array_new();
    g_autoptr(GByteArray) to_relay = g_byte_array_new();
    guint8 big[GW_RELAY_WIRE_MAX_DATA];
    const gsize pieces[] = {1, 3, 4, 5, 4096, 100000};

    memset(big, 'b', sizeof(big));
    gw_relay_wire_put_data(to_anchor, (const guint8 *)"q", 1);
    gw_relay_wire_put_u64(to_anchor, GW_RELAY_RECORD_CONSUMED, 1);
    gw_relay_wire_put_u64(to_anchor, GW_RELAY_RECORD_ANSWER,
                          G_GUINT64_CONSTANT(0x0102030405060708));
    gw_relay_wire_put_data(to_anchor, big, sizeof(big));
    gw_relay_wire_put_empty(to_anchor, GW_RELAY_RECORD_GONE);
    gw_relay_wire_put_data(to_relay, (const guint8 *)"a", 1);
    gw_relay_wire_put_empty(to_relay, GW_RELAY_RECORD_QUERY);
    gw_relay_wire_put_name(to_relay, GW_RELAY_RECORD_MIGRATED_IN, "hv-a");
    gw_relay_wire_put_name(to_relay, GW_RELAY_RECORD_MIGRATED_OUT, "hv-b");
    for (guint i = 0; i < G_N_ELEMENTS(pieces); i++) {
        g_autoptr(GString) got = g_string_new(NULL);
        g_autoptr(GString) got_relay = g_string_new(NULL);
        g_autoptr(GError) error = NULL;

        g_assert_cmpint(decode_all(GW_RELAY_END_ANCHOR, to_anchor, pieces[i], got, &error), ==,
                        GW_RELAY_DECODE_MORE);
        g_assert_no_error(error);
        g_assert_cmpstr(got->str, ==,
                        "DATA=1:q CONSUMED=1 ANSWER=72623859790382856 DATA=16384:b GONE ");
        g_assert_cmpint(decode_all(GW_RELAY_END_RELAY, to_relay, pieces[i], got_relay, &error), ==,
                        GW_RELAY_DECODE_MORE);
        g_assert_no_error(error);
        g_assert_cmpstr(got_relay->str, ==, "DATA=1:a QUERY MIGRATED_IN=hv-a MIGRATED_OUT=hv-b ");
    }
}

typedef struct {
    GwRelayEnd end;
    guint8 bytes[8];
    gsize len;
    const gchar *message; /* part of the error */
} BadCase;

static void
test_bad(void)
{
    static const BadCase cases[] = {
        /* what only the other end receives */
        {GW_RELAY_END_ANCHOR, {3, 0, 0, 0}, 4, "QUERY is not a record the anchor receives"},
        {GW_RELAY_END_RELAY, {2, 0, 0, 8}, 4, "CONSUMED is not a record the relay receives"},
        {GW_RELAY_END_RELAY, {9, 0, 0, 0}, 4, "record type 9 is not a record"},
        {GW_RELAY_END_RELAY, {1, 1, 0, 1}, 4, "DATA has flags 0x01"},
        {GW_RELAY_END_RELAY, {1, 0, 0, 0}, 4, "DATA of 0 bytes (it has 1 to 16384)"},
        {GW_RELAY_END_RELAY, {1, 0, 0x40, 1}, 4, "DATA of 16385 bytes"},
        {GW_RELAY_END_ANCHOR, {4, 0, 0, 7}, 4, "ANSWER of 7 bytes (it has 8 to 8)"},
        {GW_RELAY_END_RELAY, {5, 0, 0, 0}, 4, "MIGRATED_IN of 0 bytes"},
        {GW_RELAY_END_RELAY, {3, 0, 0, 1}, 4, "QUERY of 1 bytes"},
        {GW_RELAY_END_RELAY, {7, 0, 0, 0}, 4, "GONE is not a record the relay receives"},
        {GW_RELAY_END_ANCHOR, {7, 0, 0, 2}, 4, "GONE of 2 bytes"},
    };

    for (guint i = 0; i < G_N_ELEMENTS(cases); i++) {
        g_autoptr(GwRelayDecoder) decoder = gw_relay_decoder_new(cases[i].end);
        g_autoptr(GError) error = NULL;
        GwRelayRecord record;
        gsize used;

        g_assert_cmpint(
            gw_relay_decoder_feed(decoder, cases[i].bytes, cases[i].len, &used, &record, &error),
            ==, GW_RELAY_DECODE_ERROR);
        g_assert_nonnull(error);
        if (strstr(error->message, cases[i].message) == NULL)
            g_error("case %u: \"%s\" does not say \"%s\"", i, error->message, cases[i].message);
        g_assert_true(g_str_has_prefix(error->message, "migration relay stream: "));
        /* nothing more is decoded after an error */
        g_clear_error(&error);
        g_assert_cmpint(
            gw_relay_decoder_feed(decoder, (const guint8 *)"\3\0\0\0", 4, &used, &record, &error),
            ==, GW_RELAY_DECODE_ERROR);
    }
}

static void
test_name_sanitized(void)
{
    g_autoptr(GByteArray) bytes = g_byte_array_new();
    g_autoptr(GString) got = g_string_new(NULL);
    g_autofree gchar *long_name = g_strnfill(400, 'n');
    g_autoptr(GError) error = NULL;

    /* control characters and invalid UTF-8 become '?' */
    g_byte_array_append(bytes, (const guint8 *)"\5\0\0\5hv\1\377a", 9);
    /* a long name is cut to GW_RELAY_WIRE_MAX_NAME */
    gw_relay_wire_put_name(bytes, GW_RELAY_RECORD_MIGRATED_OUT, long_name);
    g_assert_cmpint(decode_all(GW_RELAY_END_RELAY, bytes, 7, got, &error), ==,
                    GW_RELAY_DECODE_MORE);
    g_assert_no_error(error);
    g_assert_true(g_str_has_prefix(got->str, "MIGRATED_IN=hv??a MIGRATED_OUT=nnn"));
    g_assert_cmpuint(strlen(got->str), ==,
                     strlen("MIGRATED_IN=hv??a MIGRATED_OUT= ") + GW_RELAY_WIRE_MAX_NAME);
}

int
main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    g_test_add_func("/relay-wire/round-trip", test_round_trip);
    g_test_add_func("/relay-wire/bad", test_bad);
    g_test_add_func("/relay-wire/name-sanitized", test_name_sanitized);
    return g_test_run();
}
