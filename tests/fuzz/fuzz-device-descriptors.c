/* libFuzzer target for what usbgwd parses of a new device's descriptors
 * itself (gateway/inventory/gw-device.c): a string descriptor (the
 * device's manufacturer, product and serial, which policies match and
 * usbgwctl shows) and a configuration descriptor's header (its total
 * length, which sizes the next read). libusb parses the rest. The first
 * input byte picks the parser; the others are what the device sent.
 *
 * Invariants: a string is NULL or printable ASCII, one character per
 * UTF-16 unit within both bLength and the bytes received; a total length
 * is 0 unless the header is one, and then what its bytes say (0 when that
 * is less than the descriptor's own length).
 *
 * Run the fuzzer as fuzz-policy.c says, with this target and
 * tests/fuzz/corpus/device-descriptors. */
#include <string.h>

#include "gw-device.h"

#include "fuzz-common.h"

static void
fuzz_string(const guint8 *desc, gsize len)
{
    g_autofree gchar *text = gw_device_parse_string_descriptor(desc, len);
    gsize units;

    if (text == NULL) {
        FUZZ_CHECK(len < 2 || desc[1] != 0x03 || desc[0] < 2);
        return;
    }
    FUZZ_CHECK(len >= 2 && desc[1] == 0x03);
    units = (MIN((gsize)desc[0], len) - 2) / 2;
    FUZZ_CHECK(strlen(text) == units);
    for (gsize i = 0; i < units; i++)
        FUZZ_CHECK(g_ascii_isprint(text[i]));
}

static void
fuzz_config_header(const guint8 *header, gsize len)
{
    guint total = gw_device_config_total_length(header, len);

    guint said;

    if (len < GW_DEVICE_CONFIG_HEADER_LEN || header[1] != 0x02 ||
        header[0] < GW_DEVICE_CONFIG_HEADER_LEN) {
        FUZZ_CHECK(total == 0);
        return;
    }
    said = (guint)header[2] | (guint)header[3] << 8;
    FUZZ_CHECK(total == (said >= header[0] ? said : 0));
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    /* a copy exactly as long as the input, so that ASan sees overreads */
    g_autofree guint8 *bytes = NULL;

    if (size < 1)
        return 0;
    bytes = g_memdup2(data + 1, size - 1);
    if (data[0] & 1)
        fuzz_config_header(bytes, size - 1);
    else
        fuzz_string(bytes, size - 1);
    return 0;
}
