/* Checks of the descriptors a lending client shows QEMU: see
 * gw-proxy-descriptors.h for the rules. Every read of @data is bounded by
 * @length: the bytes come from the network. */
#include "gw-proxy-descriptors.h"

#include <gio/gio.h>

/* bmRequestType: direction, type (standard 0), recipient */
#define GW_USB_RT_TYPE_MASK       0x60
#define GW_USB_RT_RECIPIENT_MASK  0x1f
#define GW_USB_RT_RECIPIENT_DEV   0x00
#define GW_USB_RT_RECIPIENT_IFACE 0x01
/* the shortest descriptor: bLength, bDescriptorType */
#define GW_USB_DESCRIPTOR_HEADER 2
#define GW_USB_INTERFACE_SIZE    9
#define GW_USB_ENDPOINT_SIZE     7
#define GW_USB_HID_SIZE_MIN      6
/* wTotalLength of a configuration descriptor is at bytes 2-3 */
#define GW_USB_CONFIG_TOTAL_END 4
#define GW_USB_ENDPOINT_NUMBER  0x0f
#define GW_USB_ENDPOINT_DIR_IN  0x80
#define GW_USB_TRANSFER_TYPE    0x03
/* usbredir's endpoint index: OUT 0-15, IN 16-31 */
#define GW_USB_EP_INDEX(ep) ((((ep)&0x80) >> 3) | ((ep)&0x0f))

G_GNUC_PRINTF(2, 3)
static gboolean
gw_proxy_descriptor_fail(GError **error, const gchar *format, ...)
{
    va_list args;
    g_autofree gchar *message = NULL;

    va_start(args, format);
    message = g_strdup_vprintf(format, args);
    va_end(args);
    g_set_error_literal(error, G_IO_ERROR, G_IO_ERROR_INVALID_DATA, message);
    return FALSE;
}

static guint16
gw_usb_le16(const guint8 *p)
{
    return (guint16)(p[0] | p[1] << 8);
}

static const gchar *
gw_usb_transfer_type_name(guint8 type)
{
    switch (type) {
    case usb_redir_type_control:
        return "control";
    case usb_redir_type_iso:
        return "isochronous";
    case usb_redir_type_bulk:
        return "bulk";
    case usb_redir_type_interrupt:
        return "interrupt";
    default:
        return "invalid";
    }
}

static const gchar *
gw_usb_descriptor_name(guint8 type)
{
    switch (type) {
    case GW_USB_DT_DEVICE:
        return "device descriptor";
    case GW_USB_DT_CONFIG:
        return "configuration descriptor";
    case GW_USB_DT_STRING:
        return "string descriptor";
    case GW_USB_DT_OTHER_SPEED_CONFIG:
        return "other-speed configuration descriptor";
    case GW_USB_DT_HID:
        return "HID descriptor";
    case GW_USB_DT_HID_REPORT:
        return "HID report descriptor";
    case GW_USB_DT_HID_PHYSICAL:
        return "HID physical descriptor";
    default:
        return "descriptor";
    }
}

gboolean
gw_proxy_descriptor_is_checked(guint8 requesttype, guint8 request)
{
    guint8 recipient = requesttype & GW_USB_RT_RECIPIENT_MASK;

    /* no look at the direction bit: GET_DESCRIPTOR is IN whatever a
     * request says, and any answer with data is checked */
    return request == GW_USB_REQUEST_GET_DESCRIPTOR && (requesttype & GW_USB_RT_TYPE_MASK) == 0 &&
           (recipient == GW_USB_RT_RECIPIENT_DEV || recipient == GW_USB_RT_RECIPIENT_IFACE);
}

/* The approved interface_info slot of interface @number, or -1. */
static gint
gw_proxy_approved_slot(const struct usb_redir_interface_info_header *interfaces, guint8 number)
{
    guint32 count = MIN(interfaces->interface_count, G_N_ELEMENTS(interfaces->interface));

    for (guint32 i = 0; i < count; i++) {
        if (interfaces->interface[i] == number)
            return (gint)i;
    }
    return -1;
}

static gboolean
gw_proxy_approved_has_hid(const struct usb_redir_interface_info_header *interfaces)
{
    guint32 count = MIN(interfaces->interface_count, G_N_ELEMENTS(interfaces->interface));

    for (guint32 i = 0; i < count; i++) {
        if (interfaces->interface_class[i] == GW_USB_CLASS_HID)
            return TRUE;
    }
    return FALSE;
}

/* A descriptor that states its own length (@stated) must come whole, or
 * as much of it as was asked for. */
static gboolean
gw_proxy_check_answer_size(const gchar *what, gsize length, guint asked, guint stated,
                           GError **error)
{
    guint want = MIN(asked, stated);

    if (length > stated)
        return gw_proxy_descriptor_fail(
            error, "%s answer of %" G_GSIZE_FORMAT " bytes is longer than the %u it says it has",
            what, length, stated);
    if (length < want)
        return gw_proxy_descriptor_fail(error,
                                        "malformed %s: truncated to %" G_GSIZE_FORMAT
                                        " bytes (%u asked for, it says it has %u)",
                                        what, length, asked, stated);
    return TRUE;
}

static gboolean
gw_proxy_check_device_descriptor(const GwProxyApproved *approved, const guint8 *d, gsize length,
                                 guint asked, GError **error)
{
    const struct usb_redir_device_connect_header *c = approved->connect;
    /* offsets in the device descriptor (USB 2.0 table 9-8) */
    enum { CLASS = 4, SUBCLASS = 5, PROTOCOL = 6, VENDOR = 8, PRODUCT = 10, BCD = 12 };
    guint8 klass = c->device_class, subclass = c->device_subclass, protocol = c->device_protocol;
    guint16 vendor = c->vendor_id, product = c->product_id, bcd = c->device_version_bcd;

    if (d[0] != GW_USB_DEVICE_DESCRIPTOR_SIZE)
        return gw_proxy_descriptor_fail(error, "malformed device descriptor: bLength %u (not %d)",
                                        d[0], GW_USB_DEVICE_DESCRIPTOR_SIZE);
    if (!gw_proxy_check_answer_size("device descriptor", length, asked,
                                    GW_USB_DEVICE_DESCRIPTOR_SIZE, error))
        return FALSE;
    if (length > 1 && d[1] != GW_USB_DT_DEVICE)
        return gw_proxy_descriptor_fail(error, "malformed device descriptor: type 0x%02x", d[1]);
    /* compare what the answer holds (QEMU may ask for 8 bytes) */
    if (length > CLASS)
        klass = d[CLASS];
    if (length > SUBCLASS)
        subclass = d[SUBCLASS];
    if (length > PROTOCOL)
        protocol = d[PROTOCOL];
    if (length > VENDOR + 1)
        vendor = gw_usb_le16(d + VENDOR);
    if (length > PRODUCT + 1)
        product = gw_usb_le16(d + PRODUCT);
    if (approved->check_bcd && length > BCD + 1)
        bcd = gw_usb_le16(d + BCD);
    if (klass != c->device_class || subclass != c->device_subclass ||
        protocol != c->device_protocol || vendor != c->vendor_id || product != c->product_id ||
        bcd != c->device_version_bcd)
        return gw_proxy_descriptor_fail(
            error,
            "the device descriptor says %04x:%04x class %02x:%02x:%02x bcdDevice %04x, "
            "device_connect said %04x:%04x class %02x:%02x:%02x bcdDevice %04x",
            vendor, product, klass, subclass, protocol, bcd, c->vendor_id, c->product_id,
            c->device_class, c->device_subclass, c->device_protocol, c->device_version_bcd);
    return TRUE;
}

/* Where the walk through a configuration is. */
typedef struct {
    const GwProxyApproved *approved;
    const gchar *what; /* "configuration descriptor" */
    gint slot;         /* approved slot of the current interface, -1 before one */
    guint8 number;     /* the current interface's number */
    guint8 alt;        /* and alternate setting */
} GwProxyConfigWalk;

static gboolean
gw_proxy_check_interface(GwProxyConfigWalk *walk, const guint8 *d, guint8 bLength, GError **error)
{
    const struct usb_redir_interface_info_header *ok = walk->approved->interfaces;
    /* offsets in the interface descriptor (USB 2.0 table 9-12) */
    enum { NUMBER = 2, ALT = 3, CLASS = 5, SUBCLASS = 6, PROTOCOL = 7 };
    gint slot;

    if (bLength < GW_USB_INTERFACE_SIZE)
        return gw_proxy_descriptor_fail(error, "malformed %s: an interface descriptor of %u bytes",
                                        walk->what, bLength);
    slot = gw_proxy_approved_slot(ok, d[NUMBER]);
    if (slot < 0)
        return gw_proxy_descriptor_fail(
            error, "the %s describes interface %u, which interface_info did not list", walk->what,
            d[NUMBER]);
    if (d[CLASS] != ok->interface_class[slot] || d[SUBCLASS] != ok->interface_subclass[slot] ||
        d[PROTOCOL] != ok->interface_protocol[slot])
        return gw_proxy_descriptor_fail(
            error,
            "the %s gives interface %u alternate setting %u class %02x:%02x:%02x, "
            "interface_info approved %02x:%02x:%02x",
            walk->what, d[NUMBER], d[ALT], d[CLASS], d[SUBCLASS], d[PROTOCOL],
            ok->interface_class[slot], ok->interface_subclass[slot], ok->interface_protocol[slot]);
    walk->slot = slot;
    walk->number = d[NUMBER];
    walk->alt = d[ALT];
    return TRUE;
}

static gboolean
gw_proxy_check_endpoint(GwProxyConfigWalk *walk, const guint8 *d, guint8 bLength, GError **error)
{
    const struct usb_redir_ep_info_header *ep = walk->approved->endpoints;
    /* offsets in the endpoint descriptor (USB 2.0 table 9-13) */
    enum { ADDRESS = 2, ATTRIBUTES = 3 };
    guint8 address, type, index;

    if (bLength < GW_USB_ENDPOINT_SIZE)
        return gw_proxy_descriptor_fail(error, "malformed %s: an endpoint descriptor of %u bytes",
                                        walk->what, bLength);
    address = d[ADDRESS];
    if (walk->slot < 0 || (address & GW_USB_ENDPOINT_NUMBER) == 0 ||
        (address & ~(GW_USB_ENDPOINT_DIR_IN | GW_USB_ENDPOINT_NUMBER)) != 0)
        return gw_proxy_descriptor_fail(
            error, "malformed %s: endpoint %02x %s", walk->what, address,
            walk->slot < 0 ? "outside an interface" : "is not a valid endpoint address");
    type = d[ATTRIBUTES] & GW_USB_TRANSFER_TYPE;
    index = GW_USB_EP_INDEX(address);
    if (ep->type[index] == usb_redir_type_invalid)
        return TRUE; /* another alternate setting's (usbredirhost lists alt 0's) */
    if (ep->interface[index] != walk->number)
        return gw_proxy_descriptor_fail(
            error, "the %s puts endpoint %02x in interface %u, ep_info in interface %u", walk->what,
            address, walk->number, ep->interface[index]);
    if (walk->alt == 0 && ep->type[index] != type)
        return gw_proxy_descriptor_fail(error, "the %s makes endpoint %02x %s, ep_info %s",
                                        walk->what, address, gw_usb_transfer_type_name(type),
                                        gw_usb_transfer_type_name(ep->type[index]));
    return TRUE;
}

static gboolean
gw_proxy_check_hid_in_config(GwProxyConfigWalk *walk, guint8 type, GError **error)
{
    const struct usb_redir_interface_info_header *ok = walk->approved->interfaces;

    if (walk->slot < 0)
        return gw_proxy_descriptor_fail(error, "malformed %s: a %s outside an interface",
                                        walk->what, gw_usb_descriptor_name(type));
    if (ok->interface_class[walk->slot] != GW_USB_CLASS_HID)
        return gw_proxy_descriptor_fail(
            error, "the %s has a %s in interface %u, approved as %02x:%02x:%02x (not HID)",
            walk->what, gw_usb_descriptor_name(type), walk->number, ok->interface_class[walk->slot],
            ok->interface_subclass[walk->slot], ok->interface_protocol[walk->slot]);
    return TRUE;
}

static gboolean
gw_proxy_check_config_descriptor(const GwProxyApproved *approved, guint8 type, const guint8 *d,
                                 gsize length, guint asked, GError **error)
{
    GwProxyConfigWalk walk = {
        .approved = approved, .what = gw_usb_descriptor_name(type), .slot = -1};
    /* offset of bNumInterfaces (USB 2.0 table 9-10) */
    enum { NUM_INTERFACES = 4 };
    guint total;
    gsize offset;

    if (d[0] < GW_USB_CONFIG_DESCRIPTOR_SIZE)
        return gw_proxy_descriptor_fail(error, "malformed %s: bLength %u (at least %d)", walk.what,
                                        d[0], GW_USB_CONFIG_DESCRIPTOR_SIZE);
    if (length > 1 && d[1] != type)
        return gw_proxy_descriptor_fail(error, "malformed %s: type 0x%02x", walk.what, d[1]);
    if (length < GW_USB_CONFIG_TOTAL_END) {
        /* no wTotalLength yet: only a short read may be this short */
        return length == asked ||
               gw_proxy_descriptor_fail(
                   error, "malformed %s: truncated to %" G_GSIZE_FORMAT " bytes (%u asked for)",
                   walk.what, length, asked);
    }
    total = gw_usb_le16(d + 2);
    if (total < d[0])
        return gw_proxy_descriptor_fail(error, "malformed %s: wTotalLength %u < bLength %u",
                                        walk.what, total, d[0]);
    if (!gw_proxy_check_answer_size(walk.what, length, asked, total, error))
        return FALSE;
    if (length > NUM_INTERFACES && d[NUM_INTERFACES] > approved->interfaces->interface_count)
        return gw_proxy_descriptor_fail(
            error, "the %s has %u interfaces, interface_info approved %u", walk.what,
            d[NUM_INTERFACES], approved->interfaces->interface_count);

    /* the descriptors after the header; @length <= @total from here */
    for (offset = d[0]; offset < length;) {
        const guint8 *p = d + offset;
        gsize left = length - offset;
        guint8 bLength, bType;

        if (left < GW_USB_DESCRIPTOR_HEADER) {
            if (length < total)
                break; /* cut by the length asked for */
            return gw_proxy_descriptor_fail(
                error, "malformed %s: a stray byte at offset %" G_GSIZE_FORMAT, walk.what, offset);
        }
        bLength = p[0];
        bType = p[1];
        if (bLength < GW_USB_DESCRIPTOR_HEADER)
            return gw_proxy_descriptor_fail(error,
                                            "malformed %s: a descriptor of %u bytes at offset "
                                            "%" G_GSIZE_FORMAT,
                                            walk.what, bLength, offset);
        if (bLength > left) {
            if (length < total)
                break; /* cut by the length asked for: checked when read whole */
            return gw_proxy_descriptor_fail(
                error,
                "malformed %s: the descriptor at offset %" G_GSIZE_FORMAT
                " (%u bytes) runs past wTotalLength %u",
                walk.what, offset, bLength, total);
        }
        switch (bType) {
        case GW_USB_DT_INTERFACE:
            if (!gw_proxy_check_interface(&walk, p, bLength, error))
                return FALSE;
            break;
        case GW_USB_DT_ENDPOINT:
            if (!gw_proxy_check_endpoint(&walk, p, bLength, error))
                return FALSE;
            break;
        case GW_USB_DT_HID:
        case GW_USB_DT_HID_REPORT:
        case GW_USB_DT_HID_PHYSICAL:
            if (!gw_proxy_check_hid_in_config(&walk, bType, error))
                return FALSE;
            break;
        default:
            break; /* class-specific and association descriptors */
        }
        offset += bLength;
    }
    return TRUE;
}

static gboolean
gw_proxy_check_string_descriptor(const guint8 *d, gsize length, guint asked, GError **error)
{
    if (d[0] < GW_USB_DESCRIPTOR_HEADER)
        return gw_proxy_descriptor_fail(error, "malformed string descriptor: bLength %u", d[0]);
    if (length > 1 && d[1] != GW_USB_DT_STRING)
        return gw_proxy_descriptor_fail(error, "malformed string descriptor: type 0x%02x", d[1]);
    return gw_proxy_check_answer_size("string descriptor", length, asked, d[0], error);
}

/* HID descriptors asked for directly: of a HID interface only. */
static gboolean
gw_proxy_check_hid_request(const GwProxyApproved *approved,
                           const struct usb_redir_control_packet_header *request, guint8 type,
                           const guint8 *d, gsize length, GError **error)
{
    const struct usb_redir_interface_info_header *ok = approved->interfaces;
    const gchar *what = gw_usb_descriptor_name(type);

    if ((request->requesttype & GW_USB_RT_RECIPIENT_MASK) == GW_USB_RT_RECIPIENT_IFACE) {
        guint8 number = request->index & 0xff;
        gint slot = gw_proxy_approved_slot(ok, number);
        if (slot < 0)
            return gw_proxy_descriptor_fail(
                error, "a %s answered for interface %u, which interface_info did not list", what,
                number);
        if (ok->interface_class[slot] != GW_USB_CLASS_HID)
            return gw_proxy_descriptor_fail(
                error, "a %s answered for interface %u, approved as %02x:%02x:%02x (not HID)", what,
                number, ok->interface_class[slot], ok->interface_subclass[slot],
                ok->interface_protocol[slot]);
    } else if (!gw_proxy_approved_has_hid(ok)) {
        return gw_proxy_descriptor_fail(
            error, "a %s answered for the device, which has no interface approved as HID", what);
    }
    if (type != GW_USB_DT_HID)
        return TRUE; /* report descriptors state no length of their own */
    if (d[0] < GW_USB_HID_SIZE_MIN)
        return gw_proxy_descriptor_fail(error, "malformed HID descriptor: bLength %u", d[0]);
    if (length > 1 && d[1] != GW_USB_DT_HID)
        return gw_proxy_descriptor_fail(error, "malformed HID descriptor: type 0x%02x", d[1]);
    return gw_proxy_check_answer_size(what, length, request->length, d[0], error);
}

gboolean
gw_proxy_descriptor_check(const GwProxyApproved *approved,
                          const struct usb_redir_control_packet_header *request, const guint8 *data,
                          gsize length, GError **error)
{
    guint8 type = request->value >> 8;

    if (length == 0)
        return TRUE;
    if (length > request->length)
        return gw_proxy_descriptor_fail(error,
                                        "%s answer of %" G_GSIZE_FORMAT " bytes, %u asked for",
                                        gw_usb_descriptor_name(type), length, request->length);
    switch (type) {
    case GW_USB_DT_DEVICE:
        return gw_proxy_check_device_descriptor(approved, data, length, request->length, error);
    case GW_USB_DT_CONFIG:
    case GW_USB_DT_OTHER_SPEED_CONFIG:
        return gw_proxy_check_config_descriptor(approved, type, data, length, request->length,
                                                error);
    case GW_USB_DT_STRING:
        return gw_proxy_check_string_descriptor(data, length, request->length, error);
    case GW_USB_DT_HID:
    case GW_USB_DT_HID_REPORT:
    case GW_USB_DT_HID_PHYSICAL:
        return gw_proxy_check_hid_request(approved, request, type, data, length, error);
    default:
        return TRUE;
    }
}

gboolean
gw_proxy_interfaces_check_approved(const GwProxyApproved *approved,
                                   const struct usb_redir_interface_info_header *now,
                                   GError **error)
{
    const struct usb_redir_interface_info_header *ok = approved->interfaces;
    guint32 count = MIN(now->interface_count, G_N_ELEMENTS(now->interface));

    for (guint32 i = 0; i < count; i++) {
        gint slot = gw_proxy_approved_slot(ok, now->interface[i]);
        if (slot < 0)
            return gw_proxy_descriptor_fail(
                error, "interface_info now lists interface %u, which was not approved",
                now->interface[i]);
        if (now->interface_class[i] != ok->interface_class[slot] ||
            now->interface_subclass[i] != ok->interface_subclass[slot] ||
            now->interface_protocol[i] != ok->interface_protocol[slot])
            return gw_proxy_descriptor_fail(error,
                                            "interface_info now gives interface %u class "
                                            "%02x:%02x:%02x, approved %02x:%02x:%02x",
                                            now->interface[i], now->interface_class[i],
                                            now->interface_subclass[i], now->interface_protocol[i],
                                            ok->interface_class[slot], ok->interface_subclass[slot],
                                            ok->interface_protocol[slot]);
    }
    return TRUE;
}
