/* gw-proxy-descriptors.c alone, table-driven: each case is QEMU's
 * GET_DESCRIPTOR request, the client's answer (hex) and whether the proxy
 * lets QEMU have it (want NULL) or what the refusal must say. The approved
 * device: 0529:0001 class ff bcdDevice 0100; interface 0 ff:00:00 with
 * interrupt IN 0x81 and bulk OUT 0x02, interface 1 03:00:00 (HID, not a
 * boot device) with interrupt IN 0x83 — or ("vendor only") interface 0
 * alone. */
#include <string.h>

#include <gio/gio.h>

#include "gw-proxy-descriptors.h"
#include "sim-hex.h"

#define DEV   0x80 /* IN, standard, to the device */
#define IFACE 0x81 /* IN, standard, to an interface */

typedef struct {
    const gchar *name;
    guint8 requesttype;
    guint8 type;
    guint8 index;
    guint16 windex;
    guint16 asked;
    const gchar *answer; /* hex */
    const gchar *want;   /* NULL: passes; else a part of the refusal */
    gboolean vendor_only;
} DescriptorCase;

/* header, interface 0 (alt 0) with 0x81 and 0x02, interface 1 with 0x83 */
#define CONFIG_HEADER_2 "09 02 39 00 02 01 00 80 32"
#define IFACE0          " 09 04 00 00 02 ff 00 00 00"
#define EP81            " 07 05 81 03 40 00 0a"
#define EP02            " 07 05 02 02 40 00 00"
#define IFACE1          " 09 04 01 00 01 03 00 00 00"
#define HID1            " 09 21 11 01 00 01 22 22 00"
#define EP83            " 07 05 83 03 40 00 01"
#define CONFIG_HONEST   CONFIG_HEADER_2 IFACE0 EP81 EP02 IFACE1 HID1 EP83

static const DescriptorCase cases[] = {
    /* device descriptor */
    {"device-honest", DEV, 1, 0, 0, 64, "12 01 00 02 ff 00 00 40 29 05 01 00 00 01 01 02 03 01",
     NULL, FALSE},
    {"device-first-8", DEV, 1, 0, 0, 8, "12 01 00 02 ff 00 00 40", NULL, FALSE},
    {"device-first-8-wrong-class", DEV, 1, 0, 0, 8, "12 01 00 02 03 00 00 40", "class 03:00:00",
     FALSE},
    {"device-other-vendor", DEV, 1, 0, 0, 18,
     "12 01 00 02 ff 00 00 40 6d 04 01 00 00 01 01 02 03 01", "046d:0001", FALSE},
    {"device-other-bcd", DEV, 1, 0, 0, 18, "12 01 00 02 ff 00 00 40 29 05 01 00 00 02 01 02 03 01",
     "bcdDevice 0200", FALSE},
    {"device-bad-blength", DEV, 1, 0, 0, 64,
     "20 01 00 02 ff 00 00 40 29 05 01 00 00 01 01 02 03 01", "bLength 32", FALSE},
    {"device-bad-type", DEV, 1, 0, 0, 18, "12 02 00 02 ff 00 00 40 29 05 01 00 00 01 01 02 03 01",
     "type 0x02", FALSE},
    {"device-truncated", DEV, 1, 0, 0, 64, "12 01 00 02 ff 00 00 40 29 05", "truncated", FALSE},
    {"device-longer-than-18", DEV, 1, 0, 0, 64,
     "12 01 00 02 ff 00 00 40 29 05 01 00 00 01 01 02 03 01 00 00", "longer than the 18", FALSE},
    {"longer-than-asked", DEV, 1, 0, 0, 4, "12 01 00 02 ff", "5 bytes, 4 asked for", FALSE},
    {"empty-answer", DEV, 1, 0, 0, 18, "", NULL, FALSE},
    /* configuration descriptor */
    {"config-honest", DEV, 2, 0, 0, 255, CONFIG_HONEST, NULL, FALSE},
    {"config-header", DEV, 2, 0, 0, 9, CONFIG_HEADER_2, NULL, FALSE},
    {"config-first-4", DEV, 2, 0, 0, 4, "09 02 30 00", NULL, FALSE},
    {"config-first-2-of-9", DEV, 2, 0, 0, 9, "09 02", "truncated", FALSE},
    {"config-cut-by-asked", DEV, 2, 0, 0, 14, "09 02 30 00 02 01 00 80 32 09 04 00 00 02", NULL,
     FALSE},
    {"config-cut-short", DEV, 2, 0, 0, 255, CONFIG_HEADER_2 IFACE0 EP81, "truncated", FALSE},
    {"config-longer-than-total", DEV, 2, 0, 0, 255, "09 02 09 00 00 01 00 80 32 09 04",
     "longer than the 9", FALSE},
    {"config-total-below-blength", DEV, 2, 0, 0, 255, "09 02 04 00", "wTotalLength 4", FALSE},
    {"config-short-blength", DEV, 2, 0, 0, 255, "05 02 05 00 01", "bLength 5", FALSE},
    {"config-too-many-interfaces", DEV, 2, 0, 0, 255, "09 02 09 00 03 01 00 80 32", "3 interfaces",
     FALSE},
    {"config-zero-length-descriptor", DEV, 2, 0, 0, 255, "09 02 0d 00 01 01 00 80 32 00 04 00 00",
     "a descriptor of 0 bytes", FALSE},
    {"config-stray-byte", DEV, 2, 0, 0, 255, "09 02 0a 00 01 01 00 80 32 09", "stray byte", FALSE},
    {"config-unapproved-interface", DEV, 2, 0, 0, 255,
     "09 02 12 00 01 01 00 80 32 09 04 05 00 00 ff 00 00 00", "interface 5", FALSE},
    {"config-boot-keyboard", DEV, 2, 0, 0, 255,
     "09 02 12 00 01 01 00 80 32 09 04 01 00 01 03 01 01 00", "class 03:01:01", FALSE},
    {"config-short-interface", DEV, 2, 0, 0, 255, "09 02 10 00 01 01 00 80 32 07 04 00 00 01 ff 00",
     "interface descriptor of 7 bytes", FALSE},
    {"config-alt-same-class", DEV, 2, 0, 0, 255,
     "09 02 29 00 01 01 00 80 32" IFACE0 EP81 " 09 04 00 01 01 ff 00 00 00 07 05 81 02 40 00 00",
     NULL, FALSE},
    {"config-alt-other-class", DEV, 2, 0, 0, 255,
     "09 02 22 00 01 01 00 80 32" IFACE0 EP81 " 09 04 00 01 00 0e 01 00 00", "alternate setting 1",
     FALSE},
    {"config-endpoint-other-interface", DEV, 2, 0, 0, 255,
     "09 02 19 00 02 01 00 80 32 09 04 01 00 01 03 00 00 00" EP81, "endpoint 81 in interface 1",
     FALSE},
    {"config-endpoint-other-type", DEV, 2, 0, 0, 255,
     "09 02 19 00 01 01 00 80 32" IFACE0 " 07 05 81 02 40 00 00",
     "endpoint 81 bulk, ep_info interrupt", FALSE},
    {"config-endpoint-outside-interface", DEV, 2, 0, 0, 255, "09 02 10 00 01 01 00 80 32" EP81,
     "outside an interface", FALSE},
    {"config-endpoint-zero", DEV, 2, 0, 0, 255,
     "09 02 19 00 01 01 00 80 32" IFACE0 " 07 05 80 00 40 00 00", "endpoint 80", FALSE},
    {"config-endpoint-reserved-bits", DEV, 2, 0, 0, 255,
     "09 02 19 00 01 01 00 80 32" IFACE0 " 07 05 31 03 40 00 0a", "endpoint 31", FALSE},
    {"config-short-endpoint", DEV, 2, 0, 0, 255,
     "09 02 17 00 01 01 00 80 32" IFACE0 " 05 05 81 03 40", "endpoint descriptor of 5 bytes",
     FALSE},
    {"config-hid-in-vendor-interface", DEV, 2, 0, 0, 255, "09 02 1b 00 01 01 00 80 32" IFACE0 HID1,
     "HID descriptor in interface 0", FALSE},
    {"config-hid-outside-interface", DEV, 2, 0, 0, 255, "09 02 12 00 01 01 00 80 32" HID1,
     "outside an interface", FALSE},
    {"config-class-specific-passes", DEV, 2, 0, 0, 255,
     "09 02 17 00 01 01 00 80 32" IFACE0 " 05 24 00 10 01", NULL, FALSE},
    {"other-speed-boot-keyboard", DEV, 7, 0, 0, 255,
     "09 07 12 00 01 01 00 80 32 09 04 00 00 01 03 01 01 00", "other-speed configuration", FALSE},
    {"other-speed-bad-type", DEV, 7, 0, 0, 255, "09 02 09 00 01 01 00 80 32", "type 0x02", FALSE},
    /* strings */
    {"string-langids", DEV, 3, 0, 0, 255, "04 03 09 04", NULL, FALSE},
    {"string-serial", DEV, 3, 3, 0x0409, 255, "08 03 41 00 31 00 42 00", NULL, FALSE},
    {"string-first-2", DEV, 3, 3, 0x0409, 2, "08 03", NULL, FALSE},
    {"string-truncated", DEV, 3, 3, 0x0409, 255, "08 03 41 00", "truncated", FALSE},
    {"string-longer", DEV, 3, 3, 0x0409, 255, "04 03 41 00 31 00", "longer than the 4", FALSE},
    {"string-blength-1", DEV, 3, 3, 0x0409, 255, "01", "bLength 1", FALSE},
    {"string-bad-type", DEV, 3, 3, 0x0409, 255, "04 04 41 00", "type 0x04", FALSE},
    /* HID class descriptors asked for directly */
    {"hid-report-of-hid-interface", IFACE, 0x22, 0, 1, 34, "06 d0 f1 09 01 a1 01 c0", NULL, FALSE},
    {"hid-report-of-vendor-interface", IFACE, 0x22, 0, 0, 63, "05 01 09 06 a1 01 c0",
     "interface 0, approved as ff:00:00", FALSE},
    {"hid-report-of-unknown-interface", IFACE, 0x22, 0, 7, 63, "05 01 09 06 a1 01 c0",
     "interface 7", FALSE},
    {"hid-report-of-device-with-hid", DEV, 0x22, 0, 0, 63, "05 01 09 02 a1 01 c0", NULL, FALSE},
    {"hid-report-of-device-without-hid", DEV, 0x22, 0, 0, 63, "05 01 09 06 a1 01 c0",
     "no interface approved as HID", TRUE},
    {"hid-descriptor", IFACE, 0x21, 0, 1, 9, "09 21 11 01 00 01 22 22 00", NULL, FALSE},
    {"hid-descriptor-short", IFACE, 0x21, 0, 1, 9, "03 21 11", "bLength 3", FALSE},
    {"hid-descriptor-bad-type", IFACE, 0x21, 0, 1, 9, "09 22 11 01 00 01 22 22 00", "type 0x22",
     FALSE},
    {"hid-physical-of-vendor-interface", IFACE, 0x23, 0, 0, 9, "09 23 00", "HID physical", FALSE},
    /* not checked */
    {"bos-passes", DEV, 0x0f, 0, 0, 5, "05 0f 05 00 00", NULL, FALSE},
};

static struct usb_redir_device_connect_header connect = {
    .speed = usb_redir_speed_full,
    .device_class = 0xff,
    .vendor_id = 0x0529,
    .product_id = 0x0001,
    .device_version_bcd = 0x0100,
};

static void
approved_init(GwProxyApproved *approved, struct usb_redir_interface_info_header *interfaces,
              struct usb_redir_ep_info_header *endpoints, gboolean vendor_only)
{
    memset(interfaces, 0, sizeof(*interfaces));
    interfaces->interface_count = vendor_only ? 1 : 2;
    interfaces->interface[0] = 0;
    interfaces->interface_class[0] = 0xff;
    interfaces->interface[1] = 1;
    interfaces->interface_class[1] = 0x03;
    memset(endpoints, 0, sizeof(*endpoints));
    memset(endpoints->type, usb_redir_type_invalid, sizeof(endpoints->type));
    endpoints->type[0] = endpoints->type[16] = usb_redir_type_control;
    endpoints->type[17] = usb_redir_type_interrupt; /* 0x81 */
    endpoints->type[2] = usb_redir_type_bulk;       /* 0x02 */
    if (!vendor_only) {
        endpoints->type[19] = usb_redir_type_interrupt; /* 0x83 */
        endpoints->interface[19] = 1;
    }
    approved->connect = &connect;
    approved->check_bcd = TRUE;
    approved->interfaces = interfaces;
    approved->endpoints = endpoints;
}

/* "12 01 00 02" -> bytes */
static GByteArray *
hex_bytes(const gchar *hex)
{
    g_autoptr(GError) error = NULL;
    GByteArray *out = sim_hex_decode_spaced(hex, &error);

    g_assert_no_error(error);
    return out;
}

static void
test_descriptor_case(gconstpointer data)
{
    const DescriptorCase *c = data;
    struct usb_redir_interface_info_header interfaces;
    struct usb_redir_ep_info_header endpoints;
    GwProxyApproved approved;
    struct usb_redir_control_packet_header request = {
        .endpoint = 0x80,
        .request = GW_USB_REQUEST_GET_DESCRIPTOR,
        .requesttype = c->requesttype,
        .value = (guint16)(c->type << 8 | c->index),
        .index = c->windex,
        .length = c->asked,
    };
    g_autoptr(GByteArray) answer = hex_bytes(c->answer);
    /* an exact-size copy, so that ASan sees any read past the answer */
    g_autofree guint8 *bytes = g_memdup2(answer->data, answer->len);
    g_autoptr(GError) error = NULL;
    gboolean ok;

    approved_init(&approved, &interfaces, &endpoints, c->vendor_only);
    g_assert_true(gw_proxy_descriptor_is_checked(request.requesttype, request.request));
    ok = gw_proxy_descriptor_check(&approved, &request, bytes, answer->len, &error);
    if (c->want == NULL) {
        g_assert_no_error(error);
        g_assert_true(ok);
        return;
    }
    g_assert_false(ok);
    g_assert_error(error, G_IO_ERROR, G_IO_ERROR_INVALID_DATA);
    g_test_message("%s", error->message);
    if (strstr(error->message, c->want) == NULL)
        g_error("\"%s\" does not say \"%s\"", error->message, c->want);
}

static void
test_is_checked(void)
{
    g_assert_true(gw_proxy_descriptor_is_checked(0x80, 6));
    g_assert_true(gw_proxy_descriptor_is_checked(0x81, 6));
    g_assert_true(gw_proxy_descriptor_is_checked(0x00, 6));  /* the direction bit is not trusted */
    g_assert_false(gw_proxy_descriptor_is_checked(0xc0, 6)); /* vendor */
    g_assert_false(gw_proxy_descriptor_is_checked(0xa1, 6)); /* class */
    g_assert_false(gw_proxy_descriptor_is_checked(0x82, 6)); /* to an endpoint */
    g_assert_false(gw_proxy_descriptor_is_checked(0x80, 0)); /* GET_STATUS */
}

static void
test_interfaces_approved(void)
{
    struct usb_redir_interface_info_header interfaces, now;
    struct usb_redir_ep_info_header endpoints;
    GwProxyApproved approved;
    g_autoptr(GError) error = NULL;

    approved_init(&approved, &interfaces, &endpoints, FALSE);
    /* the same, a subset, none (configuration 0) */
    g_assert_true(gw_proxy_interfaces_check_approved(&approved, &interfaces, &error));
    memset(&now, 0, sizeof(now));
    g_assert_true(gw_proxy_interfaces_check_approved(&approved, &now, &error));
    now.interface_count = 1;
    now.interface[0] = 1;
    now.interface_class[0] = 0x03;
    g_assert_true(gw_proxy_interfaces_check_approved(&approved, &now, &error));
    g_assert_no_error(error);
    /* interface 1 turns into a boot keyboard */
    now.interface_subclass[0] = 0x01;
    now.interface_protocol[0] = 0x01;
    g_assert_false(gw_proxy_interfaces_check_approved(&approved, &now, &error));
    g_assert_nonnull(strstr(error->message, "interface 1 class 03:01:01, approved 03:00:00"));
    g_clear_error(&error);
    /* an interface nobody approved */
    now.interface[0] = 2;
    g_assert_false(gw_proxy_interfaces_check_approved(&approved, &now, &error));
    g_assert_nonnull(strstr(error->message, "interface 2"));
}

int
main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    for (gsize i = 0; i < G_N_ELEMENTS(cases); i++) {
        g_autofree gchar *path = g_strdup_printf("/proxy-descriptors/%s", cases[i].name);
        g_test_add_data_func(path, &cases[i], test_descriptor_case);
    }
    g_test_add_func("/proxy-descriptors/is-checked", test_is_checked);
    g_test_add_func("/proxy-descriptors/interfaces-approved", test_interfaces_approved);
    return g_test_run();
}
