/* libFuzzer target for the records of a migration relay stream
 * (gateway/migration/gw-relay-wire.c): the input is what the other end of
 * a relay stream sends. Its first byte picks the end that decodes (even:
 * the anchor, odd: the relay) and the size of the pieces the rest is fed
 * in; decoding stops at the first error, as the ends do.
 *
 * Never a crash, a leak, a sanitizer report or a broken invariant: a
 * record the decoder returns is one its end may receive, with the length
 * its type allows; every byte is consumed or an error is returned; after
 * an error nothing more is decoded.
 *
 * Run the fuzzer (clang):
 *
 *   CC=clang meson setup /tmp/buildfuzz -Dfuzzing=true -Db_sanitize=address,undefined \
 *       -Db_lundef=false
 *   ninja -C /tmp/buildfuzz tests/fuzz/fuzz-relay-wire
 *   mkdir -p /tmp/fuzz-relay-wire-corpus
 *   /tmp/buildfuzz/tests/fuzz/fuzz-relay-wire /tmp/fuzz-relay-wire-corpus \
 *       tests/fuzz/corpus/relay-wire -max_len=40000 -max_total_time=120
 *
 * A crash leaves crash-<sha1>: fix it and copy it to
 * tests/fuzz/corpus/relay-wire/; fuzz-relay-wire-replay replays the corpus
 * in every build. */
#include <stdint.h>
#include <stdlib.h>

#include "gw-relay-wire.h"

#include "fuzz-common.h"

static void
fuzz_check(GwRelayEnd end, const GwRelayRecord *record)
{
    g_autofree gchar *name = NULL;

    switch (record->type) {
    case GW_RELAY_RECORD_DATA:
        FUZZ_CHECK(record->length >= 1);
        FUZZ_CHECK(record->length <= GW_RELAY_WIRE_MAX_DATA);
        break;
    case GW_RELAY_RECORD_CONSUMED:
    case GW_RELAY_RECORD_ANSWER:
        FUZZ_CHECK(end == GW_RELAY_END_ANCHOR);
        FUZZ_CHECK(record->length == 8);
        (void)gw_relay_record_u64(record);
        break;
    case GW_RELAY_RECORD_QUERY:
        FUZZ_CHECK(end == GW_RELAY_END_RELAY);
        FUZZ_CHECK(record->length == 0);
        break;
    case GW_RELAY_RECORD_GONE:
        FUZZ_CHECK(end == GW_RELAY_END_ANCHOR);
        FUZZ_CHECK(record->length == 0);
        break;
    case GW_RELAY_RECORD_MIGRATED_IN:
    case GW_RELAY_RECORD_MIGRATED_OUT:
        FUZZ_CHECK(end == GW_RELAY_END_RELAY);
        name = gw_relay_record_name_text(record);
        FUZZ_CHECK(g_utf8_validate(name, -1, NULL));
        break;
    default:
        FUZZ_CHECK(!"a record type the decoder lets through");
    }
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    GwRelayEnd end;
    gsize piece, pos = 1;
    g_autoptr(GwRelayDecoder) decoder = NULL;

    if (size < 1)
        return 0;
    end = (data[0] & 1) ? GW_RELAY_END_RELAY : GW_RELAY_END_ANCHOR;
    piece = 1 + (data[0] >> 1) * 97;
    decoder = gw_relay_decoder_new(end);
    while (pos < size) {
        gsize len = MIN(piece, size - pos), used_all = 0;
        const uint8_t *chunk = data + pos;
        while (used_all < len) {
            g_autoptr(GError) error = NULL;
            GwRelayRecord record;
            gsize used = 0;
            GwRelayDecodeResult result = gw_relay_decoder_feed(
                decoder, chunk + used_all, len - used_all, &used, &record, &error);
            used_all += used;
            if (result == GW_RELAY_DECODE_ERROR) {
                FUZZ_CHECK(error != NULL);
                /* nothing more after an error */
                g_clear_error(&error);
                FUZZ_CHECK(gw_relay_decoder_feed(decoder, chunk, len, &used, &record, &error) ==
                           GW_RELAY_DECODE_ERROR);
                return 0;
            }
            FUZZ_CHECK(error == NULL);
            if (result == GW_RELAY_DECODE_RECORD)
                fuzz_check(end, &record);
            else
                FUZZ_CHECK(used_all == len);
        }
        pos += len;
    }
    return 0;
}
