/* libFuzzer target for what usbgw-share (client-helper/) takes in. Its
 * own parsing is thin: the --device / --filter argument (share-match.c)
 * and the ticket file (one line, read in usbgw-share.c); everything a
 * server sends is parsed by spice-gtk (SPICE) and by usbredir's
 * usbredirhost (the usbredir stream of each usbredir channel). So the
 * input is two parts:
 *
 *   - the first line is the user's argument: "f" then a --filter string,
 *     or anything else as a --device argument. It must give a match or a
 *     clean error; a match's filter string (NULL for a serial) must be one
 *     that usbredirfilter parses back to at least one rule, ending with a
 *     deny-all for VID:PID, so spice-gtk never gets a filter it rejects;
 *   - the rest is what a malicious server sends into a usbredir channel
 *     before a device is lent: spice-gtk opens one usbredirhost per
 *     channel with no device (usbredirhost_open_full(…, NULL, …), flags
 *     usbredirhost_fl_write_cb_owns_buffer) and feeds it the channel's
 *     bytes. The harness does the same, in chunks, and answers nothing but
 *     what the host writes. usbredirhost returns only its documented
 *     codes, and never crashes or leaks. It did crash on alloc_bulk_streams
 *     and free_bulk_streams (corpus bad-alloc-streams-no-device.bin):
 *     usbgw-share, usbgwd and this target link common/gw-libusb-guard.c.
 *
 * What this cannot cover: spice-gtk's SPICE parsing and channel code (not
 * built here), and usbredirhost with a device bound (that needs a USB
 * device behind libusb; tests/sim's umockdev bed is a separate process
 * under a preload). usbredirhost and usbredirparser are the system
 * libraries, not built with coverage: libFuzzer sees only this file's and
 * share-match.c's edges, so for the server part this is mutation of the
 * seed corpus (well-formed usbredir streams) rather than coverage-guided
 * fuzzing. Upstream fuzzes usbredirparser and usbredirfilter on OSS-Fuzz.
 *
 * Run the fuzzer (clang), as tests/fuzz/fuzz-policy.c says, with
 * tests/fuzz/corpus/share-client as the seed corpus. */
#include <libusb.h>
#include <stdint.h>
#include <string.h>
#include <usbredirfilter.h>
#include <usbredirhost.h>

#include "share-match.h"

#include "fuzz-common.h"

/* Server bytes handed to usbredirhost per read call. */
#define FUZZ_CHUNK 61

typedef struct {
    struct usbredirhost *host;
    const uint8_t *data;
    size_t size;
    size_t offset;
    guint64 written;
} FuzzChannel;

static void
fuzz_check_match(const char *arg, gboolean is_filter)
{
    g_autoptr(GError) error = NULL;
    g_autoptr(ShareMatch) match =
        is_filter ? share_match_new_filter(arg, &error) : share_match_new_device(arg, &error);
    struct usbredirfilter_rule *rules = NULL;
    const char *filter;
    int count = 0;

    if (match == NULL) {
        FUZZ_CHECK(error != NULL && error->message[0] != '\0');
        return;
    }
    FUZZ_CHECK(error == NULL);
    FUZZ_CHECK(share_match_describe(match) != NULL);
    filter = share_match_get_filter(match);
    if (filter == NULL) {
        /* a serial number, compared as given */
        FUZZ_CHECK(!is_filter && arg[0] != '\0');
        return;
    }
    FUZZ_CHECK(usbredirfilter_string_to_rules(filter, ",", "|", &rules, &count) == 0);
    FUZZ_CHECK(count >= 1);
    if (!is_filter) {
        /* VID:PID: that device, nothing else */
        FUZZ_CHECK(count == 2);
        FUZZ_CHECK(rules[0].allow == 1 && rules[0].vendor_id >= 0 && rules[0].product_id >= 0);
        FUZZ_CHECK(rules[1].allow == 0 && rules[1].vendor_id == -1);
    }
    usbredirfilter_free(rules);
}

static void
fuzz_log(void *priv, int level, const char *msg)
{
}

static int
fuzz_read(void *priv, uint8_t *data, int count)
{
    FuzzChannel *channel = priv;
    size_t n = MIN((size_t)count, MIN(FUZZ_CHUNK, channel->size - channel->offset));

    memcpy(data, channel->data + channel->offset, n);
    channel->offset += n;
    return (int)n;
}

static int
fuzz_write(void *priv, uint8_t *data, int count)
{
    FuzzChannel *channel = priv;

    channel->written += (guint64)count;
    /* usbredirhost_fl_write_cb_owns_buffer: the buffer is ours */
    usbredirhost_free_write_buffer(channel->host, data);
    return count;
}

static libusb_context *
fuzz_usb(void)
{
    static libusb_context *ctx = NULL;

    if (ctx == NULL && libusb_init(&ctx) != 0) {
        g_printerr("fuzz-share-client: libusb_init failed\n");
        abort();
    }
    return ctx;
}

static void
fuzz_check_server(const uint8_t *data, size_t size)
{
    FuzzChannel channel = {.data = data, .size = size};

    channel.host = usbredirhost_open_full(
        fuzz_usb(), NULL, fuzz_log, fuzz_read, fuzz_write, NULL, NULL, NULL, NULL, NULL, &channel,
        "fuzz-spice-gtk", usbredirparser_none, usbredirhost_fl_write_cb_owns_buffer);
    FUZZ_CHECK(channel.host != NULL);
    while (channel.offset < size) {
        size_t before = channel.offset;
        int ret = usbredirhost_read_guest_data(channel.host);

        FUZZ_CHECK(
            ret == 0 || ret == usbredirhost_read_io_error || ret == usbredirhost_read_parse_error ||
            ret == usbredirhost_read_device_rejected || ret == usbredirhost_read_device_lost);
        if (usbredirhost_has_data_to_write(channel.host) > 0)
            FUZZ_CHECK(usbredirhost_write_guest_data(channel.host) == 0);
        /* spice-gtk ends the channel on a parse error */
        if (ret == usbredirhost_read_parse_error || channel.offset == before)
            break;
    }
    usbredirhost_close(channel.host);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const uint8_t *nl = memchr(data, '\n', size);
    size_t arg_len = nl != NULL ? (size_t)(nl - data) : size;
    g_autofree char *arg = g_strndup((const char *)data, arg_len);
    gboolean is_filter = arg[0] == 'f';

    fuzz_check_match(is_filter ? arg + 1 : arg, is_filter);
    if (nl != NULL)
        fuzz_check_server(nl + 1, size - arg_len - 1);
    return 0;
}
