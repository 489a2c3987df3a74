/* Hex strings for secrets, challenges and responses ("00ff…", lower case on
 * output, either case on input): usbgw-sim, usbgw-sim-client, usbgw-test-peer
 * and the benches. */
#pragma once

#include <glib.h>

char *sim_hex_encode(const guint8 *data, gsize len) G_GNUC_WARN_UNUSED_RESULT;

/* Decodes exactly @len bytes: @hex must have 2 * @len hex digits, no more. */
gboolean sim_hex_decode(const char *hex, guint8 *out, gsize len,
                        GError **error) G_GNUC_WARN_UNUSED_RESULT;
