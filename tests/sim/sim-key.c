#include "sim-key.h"

#include <string.h>

#define SIM_KEY_EP0_MAX_PACKET 64
#define SIM_KEY_MAX_POWER_2MA  50 /* 100 mA, bus powered */
#define SIM_KEY_LANGID_EN_US   0x0409

enum {
    SIM_KEY_STRING_MANUFACTURER = 1,
    SIM_KEY_STRING_PRODUCT,
    SIM_KEY_STRING_SERIAL,
};

/* HID class (HID 1.11, 7.1-7.2): not in linux/usb/ch9.h. */
#define SIM_KEY_DT_HID          0x21
#define SIM_KEY_DT_HID_REPORT   0x22
#define SIM_KEY_HID_SET_REPORT  0x09
#define SIM_KEY_HID_GET_IDLE    0x02
#define SIM_KEY_HID_SET_IDLE    0x0a
#define SIM_KEY_HID_OUTPUT_ID_0 0x0200 /* wValue: report type output, id 0 */

/* One vendor-defined collection: a 16-byte input and a 16-byte output
 * report, no report IDs. */
static const guint8 sim_key_hid_report_desc[] = {
    0x06, 0x00, 0xff, /* Usage Page (Vendor 0xFF00) */
    0x09, 0x01,       /* Usage (1) */
    0xa1, 0x01,       /* Collection (Application) */
    0x15, 0x00,       /*   Logical Minimum (0) */
    0x26, 0xff, 0x00, /*   Logical Maximum (255) */
    0x75, 0x08,       /*   Report Size (8) */
    0x95, 0x10,       /*   Report Count (16) */
    0x09, 0x02,       /*   Usage (2) */
    0x81, 0x02,       /*   Input (Data, Var, Abs) */
    0x09, 0x03,       /*   Usage (3) */
    0x91, 0x02,       /*   Output (Data, Var, Abs) */
    0xc0,             /* End Collection */
};

/* clang-format off */
static const guint8 sim_key_hid_desc[] = {
    9, SIM_KEY_DT_HID,
    0x11, 0x01, /* bcdHID 1.11 */
    0,          /* bCountryCode */
    1, SIM_KEY_DT_HID_REPORT, sizeof(sim_key_hid_report_desc), 0,
};
/* clang-format on */

typedef struct {
    guint8 address;
    guint8 type; /* USB_ENDPOINT_XFER_* */
    guint16 max_packet;
    guint8 interval;
} SimKeyEndpoint;

/* What a kind of key looks like on the bus; the model adds the identity. */
typedef struct {
    guint8 device_class;
    guint8 interface_class;
    guint8 interface_subclass;
    guint8 interface_protocol;
    guint speed_mbps;
    guint n_endpoints;
    SimKeyEndpoint endpoints[2];
} SimKeyShape;

static const SimKeyShape sim_key_shapes[] = {
    [SIM_KEY_KIND_VENDOR] =
        {
            .device_class = USB_CLASS_VENDOR_SPEC,
            .interface_class = USB_CLASS_VENDOR_SPEC,
            .speed_mbps = 12,
        },
    /* wMaxPacketSize 64 makes the 16-byte report a short packet, which ends
     * the transfer whatever buffer size the host polls with. */
    [SIM_KEY_KIND_HID] =
        {
            .interface_class = USB_CLASS_HID,
            .speed_mbps = 12,
            .n_endpoints = 1,
            .endpoints = {{USB_DIR_IN | 1, USB_ENDPOINT_XFER_INT, 64, 1}},
        },
    [SIM_KEY_KIND_STORAGE] =
        {
            .interface_class = USB_CLASS_MASS_STORAGE,
            .interface_subclass = 0x06, /* SCSI transparent */
            .interface_protocol = 0x50, /* bulk-only */
            .speed_mbps = 480,
            .n_endpoints = 2,
            .endpoints = {{USB_DIR_IN | 1, USB_ENDPOINT_XFER_BULK, 512, 0},
                          {USB_DIR_OUT | 2, USB_ENDPOINT_XFER_BULK, 512, 0}},
        },
};

static const SimKeyModel sim_key_model_table[] = {
    {
        .name = "hasp",
        .kind = SIM_KEY_KIND_VENDOR,
        .vendor_id = 0x0529,
        .product_id = 0x0001,
        .bcd_device = 0x0100,
        .manufacturer = "usbgw sim",
        .product = "HASP-like key",
        .port = "1-1",
        .secret = {0x5a, 0x17, 0xc0, 0xde, 0x0b, 0xad, 0xf0, 0x0d, 0x11, 0x22, 0x33, 0x44, 0x55,
                   0x66, 0x77, 0x88},
    },
    {
        .name = "hasp2",
        .kind = SIM_KEY_KIND_VENDOR,
        .vendor_id = 0x0529,
        .product_id = 0x0001,
        .bcd_device = 0x0100,
        .manufacturer = "usbgw sim",
        .product = "HASP-like key",
        .port = "1-2",
        .secret = {0xc0, 0xff, 0xee, 0x00, 0xde, 0xad, 0xbe, 0xef, 0x8b, 0xad, 0xf0, 0x0d, 0x13,
                   0x57, 0x9b, 0xdf},
    },
    {
        .name = "hid",
        .kind = SIM_KEY_KIND_HID,
        .vendor_id = 0x064f,
        .product_id = 0x2af9,
        .bcd_device = 0x0100,
        .manufacturer = "usbgw sim",
        .product = "HID-like key",
        .serial = "3-1234567",
        .port = "1-3.1",
        .secret = {0x0f, 0x1e, 0x2d, 0x3c, 0x4b, 0x5a, 0x69, 0x78, 0x87, 0x96, 0xa5, 0xb4, 0xc3,
                   0xd2, 0xe1, 0xf0},
    },
    {
        /* a HID key whose interrupt IN endpoint never runs dry: a peer that
         * starts interrupt receiving and stops reading makes the gateway
         * queue data for it without pause */
        .name = "hid-stream",
        .kind = SIM_KEY_KIND_HID,
        .vendor_id = 0x064f,
        .product_id = 0x2afa,
        .bcd_device = 0x0100,
        .manufacturer = "usbgw sim",
        .product = "HID-like streaming key",
        .serial = "3-7654321",
        .port = "1-3.3",
        .secret = {0x1f, 0x2e, 0x3d, 0x4c, 0x5b, 0x6a, 0x79, 0x88, 0x97, 0xa6, 0xb5, 0xc4, 0xd3,
                   0xe2, 0xf1, 0x00},
        .streams = TRUE,
    },
    {
        /* the HID key's twin: another key with the same serial (clones, or
         * a vendor that gives every unit one string) */
        .name = "hid-twin",
        .kind = SIM_KEY_KIND_HID,
        .vendor_id = 0x064f,
        .product_id = 0x2af9,
        .bcd_device = 0x0100,
        .manufacturer = "usbgw sim",
        .product = "HID-like key",
        .serial = "3-1234567",
        .port = "1-3.4",
        .secret = {0x2f, 0x3e, 0x4d, 0x5c, 0x6b, 0x7a, 0x89, 0x98, 0xa7, 0xb6, 0xc5, 0xd4, 0xe3,
                   0xf2, 0x01, 0x10},
    },
    {
        /* a key that never answers a string request */
        .name = "mute",
        .kind = SIM_KEY_KIND_VENDOR,
        .vendor_id = 0x0529,
        .product_id = 0x0002,
        .bcd_device = 0x0100,
        .manufacturer = "usbgw sim",
        .product = "Mute key",
        .serial = "MUTE0001",
        .port = "1-3.5",
        .secret = {0x6d, 0x75, 0x74, 0x65, 0x6d, 0x75, 0x74, 0x65, 0x6d, 0x75, 0x74, 0x65, 0x6d,
                   0x75, 0x74, 0x65},
        .mute_strings = TRUE,
    },
    {
        /* a serial-less key behind the hub at 1-3: a port path with a '.' */
        .name = "hasp-hub",
        .kind = SIM_KEY_KIND_VENDOR,
        .vendor_id = 0x0529,
        .product_id = 0x0001,
        .bcd_device = 0x0100,
        .manufacturer = "usbgw sim",
        .product = "HASP-like key",
        .port = "1-3.2",
        .secret = {0x21, 0x43, 0x65, 0x87, 0xa9, 0xcb, 0xed, 0x0f, 0x12, 0x34, 0x56, 0x78, 0x9a,
                   0xbc, 0xde, 0xf0},
    },
    {
        .name = "stick",
        .kind = SIM_KEY_KIND_STORAGE,
        .vendor_id = 0x0781,
        .product_id = 0x5567,
        .bcd_device = 0x0100,
        .manufacturer = "usbgw sim",
        .product = "Mass storage stick",
        .serial = "4C530001",
        .port = "1-4",
        .secret = {0x73, 0x74, 0x69, 0x63, 0x6b, 0x2d, 0x6e, 0x6f, 0x2d, 0x70, 0x72, 0x6f, 0x74,
                   0x6f, 0x21, 0x21},
    },
};

struct _SimKey {
    const SimKeyModel *model;
    const SimKeyShape *shape;
    guint8 secret[USBGW_KEY_LEN];
    GBytes *device_desc; /* owned */
    GBytes *config_desc; /* owned */
    guint8 configuration;
    gboolean have_response; /* vendor: a challenge came, response[] is valid */
    gboolean report_queued; /* HID: response[] waits for an interrupt IN URB */
    guint8 response[USBGW_KEY_LEN];
    guint32 reports; /* streaming HID: reports sent, the running count */
};

const SimKeyModel *
sim_key_models(gsize *n_models)
{
    *n_models = G_N_ELEMENTS(sim_key_model_table);
    return sim_key_model_table;
}

guint
sim_key_model_speed_mbps(const SimKeyModel *model)
{
    return sim_key_shapes[model->kind].speed_mbps;
}

static GBytes *
sim_key_build_device_desc(const SimKeyModel *model, const SimKeyShape *shape)
{
    struct usb_device_descriptor desc = {
        .bLength = USB_DT_DEVICE_SIZE,
        .bDescriptorType = USB_DT_DEVICE,
        .bcdUSB = GUINT16_TO_LE(0x0200),
        .bDeviceClass = shape->device_class,
        .bMaxPacketSize0 = SIM_KEY_EP0_MAX_PACKET,
        .idVendor = GUINT16_TO_LE(model->vendor_id),
        .idProduct = GUINT16_TO_LE(model->product_id),
        .bcdDevice = GUINT16_TO_LE(model->bcd_device),
        .iManufacturer = SIM_KEY_STRING_MANUFACTURER,
        .iProduct = SIM_KEY_STRING_PRODUCT,
        .iSerialNumber = model->serial != NULL ? SIM_KEY_STRING_SERIAL : 0,
        .bNumConfigurations = 1,
    };
    return g_bytes_new(&desc, USB_DT_DEVICE_SIZE);
}

static GBytes *
sim_key_build_config_desc(const SimKeyShape *shape)
{
    g_autoptr(GByteArray) buf = g_byte_array_new();
    struct usb_config_descriptor config = {
        .bLength = USB_DT_CONFIG_SIZE,
        .bDescriptorType = USB_DT_CONFIG,
        .bNumInterfaces = 1,
        .bConfigurationValue = 1,
        .bmAttributes = USB_CONFIG_ATT_ONE,
        .bMaxPower = SIM_KEY_MAX_POWER_2MA,
    };
    struct usb_interface_descriptor intf = {
        .bLength = USB_DT_INTERFACE_SIZE,
        .bDescriptorType = USB_DT_INTERFACE,
        .bNumEndpoints = (guint8)shape->n_endpoints,
        .bInterfaceClass = shape->interface_class,
        .bInterfaceSubClass = shape->interface_subclass,
        .bInterfaceProtocol = shape->interface_protocol,
    };

    g_byte_array_append(buf, (const guint8 *)&config, USB_DT_CONFIG_SIZE);
    g_byte_array_append(buf, (const guint8 *)&intf, USB_DT_INTERFACE_SIZE);
    if (shape->interface_class == USB_CLASS_HID)
        g_byte_array_append(buf, sim_key_hid_desc, sizeof(sim_key_hid_desc));
    for (guint i = 0; i < shape->n_endpoints; i++) {
        struct usb_endpoint_descriptor ep = {
            .bLength = USB_DT_ENDPOINT_SIZE,
            .bDescriptorType = USB_DT_ENDPOINT,
            .bEndpointAddress = shape->endpoints[i].address,
            .bmAttributes = shape->endpoints[i].type,
            .wMaxPacketSize = GUINT16_TO_LE(shape->endpoints[i].max_packet),
            .bInterval = shape->endpoints[i].interval,
        };
        g_byte_array_append(buf, (const guint8 *)&ep, USB_DT_ENDPOINT_SIZE);
    }
    guint16 total = GUINT16_TO_LE((guint16)buf->len);
    memcpy(buf->data + offsetof(struct usb_config_descriptor, wTotalLength), &total, sizeof(total));
    return g_byte_array_free_to_bytes(g_steal_pointer(&buf));
}

SimKey *
sim_key_new(const SimKeyModel *model, const guint8 secret[USBGW_KEY_LEN])
{
    SimKey *self = g_new0(SimKey, 1);
    self->model = model;
    self->shape = &sim_key_shapes[model->kind];
    memcpy(self->secret, secret, USBGW_KEY_LEN);
    self->device_desc = sim_key_build_device_desc(model, self->shape);
    self->config_desc = sim_key_build_config_desc(self->shape);
    self->configuration = 1; /* the kernel configures new devices */
    return self;
}

void
sim_key_free(SimKey *self)
{
    if (self == NULL)
        return;
    g_bytes_unref(self->device_desc);
    g_bytes_unref(self->config_desc);
    g_free(self);
}

const SimKeyModel *
sim_key_get_model(SimKey *self)
{
    return self->model;
}

GBytes *
sim_key_get_descriptors(SimKey *self)
{
    g_autoptr(GByteArray) buf = g_byte_array_new();
    gsize len;
    const guint8 *data = g_bytes_get_data(self->device_desc, &len);
    g_byte_array_append(buf, data, (guint)len);
    data = g_bytes_get_data(self->config_desc, &len);
    g_byte_array_append(buf, data, (guint)len);
    return g_byte_array_free_to_bytes(g_steal_pointer(&buf));
}

guint
sim_key_get_n_interfaces(SimKey *self)
{
    return 1;
}

gboolean
sim_key_lookup_endpoint(SimKey *self, guint8 address, guint8 *type)
{
    for (guint i = 0; i < self->shape->n_endpoints; i++) {
        if (self->shape->endpoints[i].address == address) {
            *type = self->shape->endpoints[i].type;
            return TRUE;
        }
    }
    return FALSE;
}

gboolean
sim_key_set_configuration(SimKey *self, guint value)
{
    if (value > 1)
        return FALSE;
    self->configuration = (guint8)value;
    return TRUE;
}

void
sim_key_reset(SimKey *self)
{
    self->have_response = FALSE;
    self->report_queued = FALSE;
}

/* Copies what fits of a reply into the host's buffer. */
static SimKeyXfer
sim_key_reply(guint8 *data, gsize *len, const void *reply, gsize reply_len)
{
    *len = MIN(*len, reply_len);
    memcpy(data, reply, *len);
    return SIM_KEY_XFER_DONE;
}

static SimKeyXfer
sim_key_reply_bytes(guint8 *data, gsize *len, GBytes *bytes)
{
    gsize reply_len;
    const guint8 *reply = g_bytes_get_data(bytes, &reply_len);
    return sim_key_reply(data, len, reply, reply_len);
}

static SimKeyXfer
sim_key_reply_string(SimKey *self, guint8 index, guint8 *data, gsize *len)
{
    const char *text = NULL;
    guint8 desc[2 + 2 * 126]; /* bLength is one byte: at most 126 UTF-16 units */
    gsize n = 0;

    if (index == 0) {
        guint16 langid = GUINT16_TO_LE(SIM_KEY_LANGID_EN_US);
        memcpy(desc + 2, &langid, sizeof(langid));
        n = 1;
    } else {
        if (index == SIM_KEY_STRING_MANUFACTURER)
            text = self->model->manufacturer;
        else if (index == SIM_KEY_STRING_PRODUCT)
            text = self->model->product;
        else if (index == SIM_KEY_STRING_SERIAL)
            text = self->model->serial;
        if (text == NULL)
            return SIM_KEY_XFER_STALL;
        /* The model strings are ASCII, so UTF-16LE is the byte plus a zero. */
        for (; text[n] != '\0' && n < 126; n++) {
            desc[2 + 2 * n] = (guint8)text[n];
            desc[3 + 2 * n] = 0;
        }
    }
    desc[0] = (guint8)(2 + 2 * n);
    desc[1] = USB_DT_STRING;
    return sim_key_reply(data, len, desc, desc[0]);
}

static SimKeyXfer
sim_key_get_descriptor(SimKey *self, const struct usb_ctrlrequest *setup, guint8 *data, gsize *len)
{
    guint8 type = GUINT16_FROM_LE(setup->wValue) >> 8;
    guint8 index = GUINT16_FROM_LE(setup->wValue) & 0xff;
    guint8 recipient = setup->bRequestType & USB_RECIP_MASK;

    if (recipient == USB_RECIP_INTERFACE) {
        if (self->shape->interface_class != USB_CLASS_HID || GUINT16_FROM_LE(setup->wIndex) != 0)
            return SIM_KEY_XFER_STALL;
        if (type == SIM_KEY_DT_HID_REPORT)
            return sim_key_reply(data, len, sim_key_hid_report_desc,
                                 sizeof(sim_key_hid_report_desc));
        if (type == SIM_KEY_DT_HID)
            return sim_key_reply(data, len, sim_key_hid_desc, sizeof(sim_key_hid_desc));
        return SIM_KEY_XFER_STALL;
    }
    if (recipient != USB_RECIP_DEVICE)
        return SIM_KEY_XFER_STALL;

    switch (type) {
    case USB_DT_DEVICE:
        return sim_key_reply_bytes(data, len, self->device_desc);
    case USB_DT_CONFIG:
        if (index != 0)
            return SIM_KEY_XFER_STALL;
        return sim_key_reply_bytes(data, len, self->config_desc);
    case USB_DT_STRING:
        if (self->model->mute_strings)
            return SIM_KEY_XFER_PENDING;
        return sim_key_reply_string(self, index, data, len);
    case USB_DT_DEVICE_QUALIFIER: {
        /* Only a high-speed capable device has one; full-speed ones STALL. */
        if (self->shape->speed_mbps < 480)
            return SIM_KEY_XFER_STALL;
        struct usb_qualifier_descriptor qual = {
            .bLength = sizeof(qual),
            .bDescriptorType = USB_DT_DEVICE_QUALIFIER,
            .bcdUSB = GUINT16_TO_LE(0x0200),
            .bDeviceClass = self->shape->device_class,
            .bMaxPacketSize0 = SIM_KEY_EP0_MAX_PACKET,
            .bNumConfigurations = 1,
        };
        return sim_key_reply(data, len, &qual, sizeof(qual));
    }
    default:
        return SIM_KEY_XFER_STALL;
    }
}

/* Whether wIndex names something this key has, for the request's recipient. */
static gboolean
sim_key_recipient_exists(SimKey *self, const struct usb_ctrlrequest *setup)
{
    guint16 index = GUINT16_FROM_LE(setup->wIndex);
    guint8 type;

    switch (setup->bRequestType & USB_RECIP_MASK) {
    case USB_RECIP_DEVICE:
        return TRUE;
    case USB_RECIP_INTERFACE:
        return index < sim_key_get_n_interfaces(self);
    case USB_RECIP_ENDPOINT:
        return (index & 0xff) == 0 || (index & 0xff) == USB_DIR_IN ||
               sim_key_lookup_endpoint(self, index & 0xff, &type);
    default:
        return FALSE;
    }
}

static SimKeyXfer
sim_key_standard_request(SimKey *self, const struct usb_ctrlrequest *setup, guint8 *data,
                         gsize *len)
{
    gboolean in = (setup->bRequestType & USB_DIR_IN) != 0;
    guint16 value = GUINT16_FROM_LE(setup->wValue);
    const guint8 zero[2] = {0, 0};

    if (!sim_key_recipient_exists(self, setup))
        return SIM_KEY_XFER_STALL;

    switch (setup->bRequest) {
    case USB_REQ_GET_DESCRIPTOR:
        return in ? sim_key_get_descriptor(self, setup, data, len) : SIM_KEY_XFER_STALL;
    case USB_REQ_GET_STATUS:
        /* bus powered, no remote wakeup, no halted endpoint */
        return in ? sim_key_reply(data, len, zero, 2) : SIM_KEY_XFER_STALL;
    case USB_REQ_CLEAR_FEATURE:
    case USB_REQ_SET_FEATURE:
        /* Nothing here ever halts or wakes, so there is no state to change. */
        *len = 0;
        return in ? SIM_KEY_XFER_STALL : SIM_KEY_XFER_DONE;
    case USB_REQ_GET_CONFIGURATION:
        return in ? sim_key_reply(data, len, &self->configuration, 1) : SIM_KEY_XFER_STALL;
    case USB_REQ_SET_CONFIGURATION:
        *len = 0;
        return !in && sim_key_set_configuration(self, value) ? SIM_KEY_XFER_DONE
                                                             : SIM_KEY_XFER_STALL;
    case USB_REQ_GET_INTERFACE:
        return in ? sim_key_reply(data, len, zero, 1) : SIM_KEY_XFER_STALL;
    case USB_REQ_SET_INTERFACE:
        *len = 0;
        return !in && value == 0 ? SIM_KEY_XFER_DONE : SIM_KEY_XFER_STALL;
    default:
        return SIM_KEY_XFER_STALL;
    }
}

static SimKeyXfer
sim_key_hid_request(SimKey *self, const struct usb_ctrlrequest *setup, guint8 *data, gsize *len)
{
    gboolean in = (setup->bRequestType & USB_DIR_IN) != 0;
    const guint8 idle = 0;

    if ((setup->bRequestType & USB_RECIP_MASK) != USB_RECIP_INTERFACE ||
        GUINT16_FROM_LE(setup->wIndex) != 0)
        return SIM_KEY_XFER_STALL;

    switch (setup->bRequest) {
    case SIM_KEY_HID_SET_REPORT:
        if (in || GUINT16_FROM_LE(setup->wValue) != SIM_KEY_HID_OUTPUT_ID_0 ||
            *len != USBGW_KEY_LEN)
            return SIM_KEY_XFER_STALL;
        usbgw_key_compute(self->secret, data, self->response);
        self->report_queued = TRUE;
        return SIM_KEY_XFER_DONE;
    case SIM_KEY_HID_SET_IDLE:
        *len = 0;
        return in ? SIM_KEY_XFER_STALL : SIM_KEY_XFER_DONE;
    case SIM_KEY_HID_GET_IDLE:
        return in ? sim_key_reply(data, len, &idle, 1) : SIM_KEY_XFER_STALL;
    default:
        /* GET_REPORT, and the boot protocol requests a non-boot device refuses */
        return SIM_KEY_XFER_STALL;
    }
}

static SimKeyXfer
sim_key_vendor_request(SimKey *self, const struct usb_ctrlrequest *setup, guint8 *data, gsize *len)
{
    if ((setup->bRequestType & USB_RECIP_MASK) != USB_RECIP_DEVICE)
        return SIM_KEY_XFER_STALL;

    if (setup->bRequestType & USB_DIR_IN) {
        if (setup->bRequest != USBGW_KEY_REQ_RESPONSE || !self->have_response)
            return SIM_KEY_XFER_STALL;
        return sim_key_reply(data, len, self->response, USBGW_KEY_LEN);
    }
    if (setup->bRequest != USBGW_KEY_REQ_CHALLENGE || *len != USBGW_KEY_LEN)
        return SIM_KEY_XFER_STALL;
    usbgw_key_compute(self->secret, data, self->response);
    self->have_response = TRUE;
    return SIM_KEY_XFER_DONE;
}

SimKeyXfer
sim_key_control(SimKey *self, const struct usb_ctrlrequest *setup, guint8 *data, gsize *len)
{
    switch (setup->bRequestType & USB_TYPE_MASK) {
    case USB_TYPE_STANDARD:
        return sim_key_standard_request(self, setup, data, len);
    case USB_TYPE_CLASS:
        if (self->model->kind == SIM_KEY_KIND_HID)
            return sim_key_hid_request(self, setup, data, len);
        return SIM_KEY_XFER_STALL;
    case USB_TYPE_VENDOR:
        if (self->model->kind == SIM_KEY_KIND_VENDOR)
            return sim_key_vendor_request(self, setup, data, len);
        return SIM_KEY_XFER_STALL;
    default:
        return SIM_KEY_XFER_STALL;
    }
}

SimKeyXfer
sim_key_transfer(SimKey *self, guint8 endpoint, guint8 *data, gsize *len)
{
    guint8 type;

    if (!sim_key_lookup_endpoint(self, endpoint, &type))
        return SIM_KEY_XFER_STALL;
    if ((endpoint & USB_DIR_IN) == 0)
        return SIM_KEY_XFER_DONE; /* storage OUT: accepted and dropped */
    if (self->model->kind == SIM_KEY_KIND_HID && self->model->streams && !self->report_queued) {
        guint8 report[USBGW_KEY_LEN] = {0};
        guint32 count = GUINT32_TO_LE(++self->reports);
        memcpy(report, &count, sizeof(count));
        return sim_key_reply(data, len, report, sizeof(report));
    }
    if (self->model->kind != SIM_KEY_KIND_HID || !self->report_queued)
        return SIM_KEY_XFER_PENDING; /* NAK until there is something to say */
    self->report_queued = FALSE;
    return sim_key_reply(data, len, self->response, USBGW_KEY_LEN);
}
