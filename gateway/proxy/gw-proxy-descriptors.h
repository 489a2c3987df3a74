/* What QEMU reads of a lent device must agree with what the proxy approved.
 *
 * The proxy approves a lending client's device from device_connect,
 * interface_info and ep_info (gw-proxy.h). The guest, though, binds its
 * drivers from the descriptors QEMU reads with control GET_DESCRIPTOR
 * requests, and the client answers those. These checks hold each answer
 * against the approved device, so that a client cannot announce a vendor
 * class dongle and then describe a HID keyboard to the guest.
 *
 * Checked: standard GET_DESCRIPTOR requests to the device or to an
 * interface (gw_proxy_descriptor_is_checked()); nothing else (bulk,
 * interrupt, iso data and other control requests stay unparsed). An
 * answer with no data passes. The rules:
 *
 *   - every answer: no longer than asked for (the proxy checks this of every
 *     control answer), and exactly min(asked, the descriptor's own length)
 *     bytes where the descriptor states its length (bLength, wTotalLength);
 *   - device descriptor: bLength 18, type 1; bDeviceClass/SubClass/Protocol,
 *     idVendor, idProduct and bcdDevice (when the client announced it with
 *     connect_device_version) equal device_connect's;
 *   - configuration (and other-speed configuration) descriptor: a sound
 *     header (bLength >= 9, wTotalLength >= bLength) and a chain of
 *     descriptors each >= 2 bytes long and inside wTotalLength (a chain
 *     cut short only by the length asked for is fine: the rest is checked
 *     when QEMU reads it); bNumInterfaces at most the approved interface
 *     count; every interface descriptor, of every alternate setting, names
 *     an approved interface number and carries that interface's approved
 *     class:subclass:protocol; an endpoint descriptor follows an interface
 *     descriptor, is not endpoint 0, and, when ep_info lists its address,
 *     is in the interface ep_info put it in and (alternate setting 0, the
 *     one usbredirhost's ep_info describes) of ep_info's transfer type;
 *     a HID class descriptor (0x21-0x23) only inside an interface approved
 *     as HID (class 03);
 *   - string descriptor: bLength >= 2, type 3;
 *   - HID, HID report and HID physical descriptors (0x21-0x23) asked of an
 *     interface: only of an interface approved as HID (class 03); asked of
 *     the device: only when some approved interface is HID. A HID
 *     descriptor has bLength >= 6 and type 0x21;
 *   - other descriptor types pass (BOS, device qualifier, class-specific).
 *
 * Alternate settings: the approved interface_info holds each interface's
 * current alternate setting (usbredirhost puts every interface in
 * alternate setting 0 when it claims the device). A lent interface may
 * have other alternate settings only of the same class:subclass:protocol;
 * interface_info the client sends later (after SET_CONFIGURATION or
 * SET_INTERFACE, or unasked) may list only approved interface numbers with
 * their approved class triple (gw_proxy_interfaces_check_approved(); a
 * subset, so configuration 0 passes). So neither a descriptor nor a switch
 * of configuration or alternate setting brings an unapproved class to the
 * guest, whichever alternate QEMU asks for.
 *
 * Pure functions on untrusted bytes: no I/O, no state, any thread. */
#pragma once

#include <glib.h>
#include <usbredirproto.h>

G_BEGIN_DECLS

/* USB 2.0 chapter 9 and HID 1.11 7.1 */
#define GW_USB_REQUEST_GET_DESCRIPTOR 0x06
#define GW_USB_DT_DEVICE              0x01
#define GW_USB_DT_CONFIG              0x02
#define GW_USB_DT_STRING              0x03
#define GW_USB_DT_INTERFACE           0x04
#define GW_USB_DT_ENDPOINT            0x05
#define GW_USB_DT_OTHER_SPEED_CONFIG  0x07
#define GW_USB_DT_HID                 0x21
#define GW_USB_DT_HID_REPORT          0x22
#define GW_USB_DT_HID_PHYSICAL        0x23
#define GW_USB_DEVICE_DESCRIPTOR_SIZE 18
#define GW_USB_CONFIG_DESCRIPTOR_SIZE 9
#define GW_USB_CLASS_HID              0x03

/* What the proxy approved of a lent device; all borrowed. */
typedef struct {
    const struct usb_redir_device_connect_header *connect;
    gboolean check_bcd; /* the client announced bcdDevice (connect_device_version) */
    const struct usb_redir_interface_info_header *interfaces;
    const struct usb_redir_ep_info_header *endpoints;
} GwProxyApproved;

/* Whether the answer to a control request with these setup fields is
 * checked: a standard GET_DESCRIPTOR to the device or an interface
 * (whatever the direction bit says: the answer's data is checked). Cheap;
 * called on every control request from QEMU. */
gboolean gw_proxy_descriptor_is_checked(guint8 requesttype, guint8 request);

/* Checks the client's answer @data (@length bytes, what QEMU would get) to
 * QEMU's GET_DESCRIPTOR @request against @approved. FALSE with @error
 * (G_IO_ERROR_INVALID_DATA, a message naming the descriptor and what
 * contradicts the approved device) when QEMU must not see it. */
gboolean gw_proxy_descriptor_check(const GwProxyApproved *approved,
                                   const struct usb_redir_control_packet_header *request,
                                   const guint8 *data, gsize length,
                                   GError **error) G_GNUC_WARN_UNUSED_RESULT;

/* Checks interface_info the client sent while QEMU has the device: only
 * approved interface numbers, each with its approved class triple. */
gboolean gw_proxy_interfaces_check_approved(const GwProxyApproved *approved,
                                            const struct usb_redir_interface_info_header *now,
                                            GError **error) G_GNUC_WARN_UNUSED_RESULT;

G_END_DECLS
