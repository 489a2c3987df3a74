/* share-match: which local USB devices usbgw-share lends. */
#include "share-match.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <usbredirfilter.h>

/* Longest string descriptor we read for a serial number. */
#define SHARE_MATCH_SERIAL_MAX 256

struct ShareMatch {
    char *description; /* owned: the user's words */
    char *filter;      /* owned, nullable: usbredirfilter string */
    char *serial;      /* owned, nullable */
};

void
share_match_free(ShareMatch *match)
{
    if (match == NULL)
        return;
    g_free(match->description);
    g_free(match->filter);
    g_free(match->serial);
    g_free(match);
}

static gboolean
share_match_check_filter(const char *filter, GError **error)
{
    struct usbredirfilter_rule *rules = NULL;
    int count = 0;
    int ret = usbredirfilter_string_to_rules(filter, ",", "|", &rules, &count);

    if (ret != 0) {
        g_set_error(error, G_IO_ERROR, G_IO_ERROR_INVALID_ARGUMENT,
                    "filter \"%s\" is not a usbredir filter (%s)", filter,
                    ret == -ENOMEM ? "out of memory" : "syntax or value out of range");
        return FALSE;
    }
    usbredirfilter_free(rules);
    if (count == 0) {
        g_set_error(error, G_IO_ERROR, G_IO_ERROR_INVALID_ARGUMENT, "filter \"%s\" has no rules",
                    filter);
        return FALSE;
    }
    return TRUE;
}

static gboolean
share_match_parse_hex16(const char *text, gsize length, guint16 *value)
{
    char buffer[5];
    char *end = NULL;
    gulong parsed;

    if (length == 0 || length > 4)
        return FALSE;
    memcpy(buffer, text, length);
    buffer[length] = '\0';
    for (gsize i = 0; i < length; i++) {
        if (!g_ascii_isxdigit(buffer[i]))
            return FALSE;
    }
    parsed = strtoul(buffer, &end, 16);
    if (*end != '\0' || parsed > G_MAXUINT16)
        return FALSE;
    *value = (guint16)parsed;
    return TRUE;
}

ShareMatch *
share_match_new_device(const char *arg, GError **error)
{
    g_autoptr(ShareMatch) match = g_new0(ShareMatch, 1);
    const char *colon = strchr(arg, ':');
    guint16 vid, pid;

    if (*arg == '\0') {
        g_set_error(error, G_IO_ERROR, G_IO_ERROR_INVALID_ARGUMENT,
                    "--device needs VID:PID or a serial number");
        return NULL;
    }
    match->description = g_strdup(arg);
    if (colon != NULL && share_match_parse_hex16(arg, (gsize)(colon - arg), &vid) &&
        share_match_parse_hex16(colon + 1, strlen(colon + 1), &pid)) {
        /* class,vendor,product,version,allow; anything else is refused */
        match->filter = g_strdup_printf("-1,0x%04x,0x%04x,-1,1|-1,-1,-1,-1,0", vid, pid);
    } else if (colon != NULL && strchr(colon + 1, ':') == NULL && strlen(arg) <= 9) {
        g_set_error(error, G_IO_ERROR, G_IO_ERROR_INVALID_ARGUMENT,
                    "--device %s: VID:PID takes 1 to 4 hex digits on each side", arg);
        return NULL;
    } else {
        match->serial = g_strdup(arg);
    }
    return g_steal_pointer(&match);
}

ShareMatch *
share_match_new_filter(const char *filter, GError **error)
{
    g_autoptr(ShareMatch) match = g_new0(ShareMatch, 1);

    if (!share_match_check_filter(filter, error))
        return NULL;
    match->description = g_strdup(filter);
    match->filter = g_strdup(filter);
    return g_steal_pointer(&match);
}

const char *
share_match_get_filter(const ShareMatch *match)
{
    return match->filter;
}

const char *
share_match_describe(const ShareMatch *match)
{
    return match->description;
}

gboolean
share_match_device(const ShareMatch *match, libusb_device *device)
{
    struct libusb_device_descriptor descriptor;
    libusb_device_handle *handle = NULL;
    unsigned char serial[SHARE_MATCH_SERIAL_MAX];
    int length;

    if (match->serial == NULL)
        return TRUE;
    if (device == NULL || libusb_get_device_descriptor(device, &descriptor) != 0 ||
        descriptor.iSerialNumber == 0)
        return FALSE;
    if (libusb_open(device, &handle) != 0)
        return FALSE;
    length = libusb_get_string_descriptor_ascii(handle, descriptor.iSerialNumber, serial,
                                                sizeof(serial));
    libusb_close(handle);
    return length > 0 && (gsize)length == strlen(match->serial) &&
           memcmp(serial, match->serial, (gsize)length) == 0;
}
