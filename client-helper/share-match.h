/* share-match: which local USB devices usbgw-share lends.
 *
 * `--device VID:PID`, `--device SERIAL` or `--filter USBREDIRFILTER`.
 * Vendor/product and filters become a usbredirfilter string (checked by
 * usbredirfilter itself) that spice-gtk applies; a serial number is
 * compared against the device's iSerialNumber string, which needs the
 * device opened for a moment (read access to its node). */
#pragma once

#include <gio/gio.h>
#include <libusb.h>

typedef struct ShareMatch ShareMatch;

/* `arg` is VID:PID (1-4 hex digits each) or else a serial number. */
ShareMatch *share_match_new_device(const char *arg, GError **error);
ShareMatch *share_match_new_filter(const char *filter, GError **error);
void share_match_free(ShareMatch *match);

/* The usbredirfilter string selecting candidates, or NULL for all
 * devices (serial matching). */
const char *share_match_get_filter(const ShareMatch *match);
/* Checks what the filter cannot (the serial); TRUE if there is nothing
 * more to check. */
gboolean share_match_device(const ShareMatch *match, libusb_device *device);
/* For messages: what the user asked for. */
const char *share_match_describe(const ShareMatch *match);

G_DEFINE_AUTOPTR_CLEANUP_FUNC(ShareMatch, share_match_free)
