/* libFuzzer target for gw-proxy-descriptors.c alone: the checks of the
 * descriptors a lending client answers QEMU's GET_DESCRIPTOR with, fed
 * directly (fuzz-proxy reaches them only through whole usbredir
 * sessions). The input:
 *
 *   byte 0      bit 0: to interface (bmRequestType 0x81, else 0x80);
 *               bit 1: interface 1 approved as HID 03:00:00 (else only
 *               interface 0, ff:00:00); bit 2: bcdDevice announced
 *   byte 1      descriptor type (wValue high byte)
 *   byte 2      descriptor index (wValue low byte)
 *   byte 3      wIndex (interface number or language id low byte)
 *   bytes 4-5   wLength, little endian
 *   the rest    the client's answer (exactly that long, so ASan sees any
 *               read past it)
 *
 * Never a crash or a sanitizer report, and what passes holds the rules
 * that matter most: an answer no longer than asked; a device descriptor
 * with the approved ids and class; a HID report descriptor only of a HID
 * interface. A refusal is one G_IO_ERROR_INVALID_DATA line.
 *
 *   CC=clang meson setup /tmp/buildfuzz -Dfuzzing=true -Db_sanitize=address,undefined \
 *       -Db_lundef=false
 *   ninja -C /tmp/buildfuzz tests/fuzz/fuzz-proxy-descriptors
 *   mkdir -p /tmp/fuzz-descriptors-corpus
 *   /tmp/buildfuzz/tests/fuzz/fuzz-proxy-descriptors /tmp/fuzz-descriptors-corpus \
 *       tests/fuzz/corpus/proxy-descriptors -max_len=1024 -max_total_time=300
 *
 * fuzz-proxy-descriptors-replay replays tests/fuzz/corpus/proxy-descriptors
 * in every build. */
#include <gio/gio.h>
#include <stdint.h>
#include <string.h>

#include "gw-proxy-descriptors.h"

#include "fuzz-common.h"

#define FUZZ_HEADER      6
#define FUZZ_TO_IFACE    0x01
#define FUZZ_HID_IFACE   0x02
#define FUZZ_CHECK_BCD   0x04
#define FUZZ_HID_IFACE_N 1

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const struct usb_redir_device_connect_header connect = {
        .speed = usb_redir_speed_full,
        .device_class = 0xff,
        .vendor_id = 0x0529,
        .product_id = 0x0001,
        .device_version_bcd = 0x0100,
    };
    struct usb_redir_interface_info_header interfaces = {.interface_count = 1};
    struct usb_redir_ep_info_header endpoints;
    struct usb_redir_control_packet_header request = {.endpoint = 0x80,
                                                      .request = GW_USB_REQUEST_GET_DESCRIPTOR};
    GwProxyApproved approved = {
        .connect = &connect, .interfaces = &interfaces, .endpoints = &endpoints};
    g_autoptr(GError) error = NULL;
    const guint8 *answer;
    gsize length;
    guint8 type;

    if (size < FUZZ_HEADER)
        return 0;
    interfaces.interface_class[0] = 0xff;
    if (data[0] & FUZZ_HID_IFACE) {
        interfaces.interface_count = 2;
        interfaces.interface[1] = FUZZ_HID_IFACE_N;
        interfaces.interface_class[1] = GW_USB_CLASS_HID;
    }
    memset(&endpoints, 0, sizeof(endpoints));
    memset(endpoints.type, usb_redir_type_invalid, sizeof(endpoints.type));
    endpoints.type[0] = endpoints.type[16] = usb_redir_type_control;
    endpoints.type[17] = usb_redir_type_interrupt; /* 0x81, interface 0 */
    endpoints.type[2] = usb_redir_type_bulk;       /* 0x02, interface 0 */
    approved.check_bcd = (data[0] & FUZZ_CHECK_BCD) != 0;
    request.requesttype = data[0] & FUZZ_TO_IFACE ? 0x81 : 0x80;
    type = data[1];
    request.value = (guint16)(type << 8 | data[2]);
    request.index = data[3];
    request.length = (guint16)(data[4] | data[5] << 8);
    answer = data + FUZZ_HEADER;
    length = size - FUZZ_HEADER;

    FUZZ_CHECK(gw_proxy_descriptor_is_checked(request.requesttype, request.request));
    if (!gw_proxy_descriptor_check(&approved, &request, answer, length, &error)) {
        FUZZ_CHECK(g_error_matches(error, G_IO_ERROR, G_IO_ERROR_INVALID_DATA));
        FUZZ_CHECK(strchr(error->message, '\n') == NULL);
        return 0;
    }
    FUZZ_CHECK(error == NULL);
    FUZZ_CHECK(length <= request.length || length == 0);
    if (type == GW_USB_DT_DEVICE && length >= 12) {
        FUZZ_CHECK(answer[0] == GW_USB_DEVICE_DESCRIPTOR_SIZE && answer[1] == GW_USB_DT_DEVICE);
        FUZZ_CHECK(answer[4] == connect.device_class);
        FUZZ_CHECK((answer[8] | answer[9] << 8) == connect.vendor_id);
        FUZZ_CHECK((answer[10] | answer[11] << 8) == connect.product_id);
    }
    if (type == GW_USB_DT_HID_REPORT && length > 0 && (data[0] & FUZZ_TO_IFACE))
        FUZZ_CHECK((data[0] & FUZZ_HID_IFACE) && request.index == FUZZ_HID_IFACE_N);
    return 0;
}
