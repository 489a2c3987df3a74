/* Hex strings for secrets, challenges and responses ("00ff…", lower case on
 * output, either case on input): usbgw-sim, usbgw-sim-client, usbgw-test-peer
 * and the benches. */
#pragma once

#include <glib.h>

char *sim_hex_encode(const guint8 *data, gsize len) G_GNUC_WARN_UNUSED_RESULT;

/* Decodes exactly @len bytes: @hex must have 2 * @len hex digits, no more. */
gboolean sim_hex_decode(const char *hex, guint8 *out, gsize len,
                        GError **error) G_GNUC_WARN_UNUSED_RESULT;

/* Bytes from hex digits that may be grouped by spaces ("12 01 00 02"), as
 * test tables write descriptors; NULL with @error on anything else. */
GByteArray *sim_hex_decode_spaced(const char *hex, GError **error) G_GNUC_WARN_UNUSED_RESULT;
