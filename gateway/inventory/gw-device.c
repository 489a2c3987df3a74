/* Device descriptions from libusb. Every value comes from the device and
 * is treated as untrusted: lengths are checked, strings are sanitized. */
#include "gw-device.h"

#include "gw-usb.h"

/* Longest string descriptor read (bLength is one byte). */
#define GW_DEVICE_STRING_MAX 255
/* Reading a new device's strings and descriptors, in all: a device that
 * answers slowly or never cannot hold the describer (and every device
 * plugged after it) longer than this. */
#define GW_DEVICE_DESCRIBE_BUDGET_MS 2000
/* One request of those. */
#define GW_DEVICE_REQUEST_TIMEOUT_MS 500
/* Requests in all (strings, device, configurations): with the budget, a
 * bound on what a device that answers fast but endlessly can ask for. */
#define GW_DEVICE_MAX_REQUESTS 32
/* Configurations hashed; a device claiming more gets no hash. */
#define GW_DEVICE_MAX_CONFIGS 8

gchar *
gw_device_port_path(libusb_device *device)
{
    guint8 ports[8];
    int n = libusb_get_port_numbers(device, ports, G_N_ELEMENTS(ports));
    GString *path = g_string_new(NULL);

    g_string_append_printf(path, "%u", libusb_get_bus_number(device));
    for (int i = 0; i < n; i++)
        g_string_append_printf(path, "%c%u", i == 0 ? '-' : '.', ports[i]);
    if (n <= 0)
        g_string_append(path, "-0"); /* a root hub */
    return g_string_free(path, FALSE);
}

/* A deadline for reading one device's strings and descriptors. */
typedef struct {
    gint64 deadline;  /* monotonic µs */
    gboolean expired; /* a request found no time left, or timed out */
    guint n_requests; /* made so far */
} GwDeviceBudget;

/* One GET_DESCRIPTOR, bounded by the request timeout and by what is left
 * of @budget. Returns the bytes read or a libusb error. */
static int
gw_device_get_descriptor(libusb_device_handle *handle, GwDeviceBudget *budget, guint8 type,
                         guint8 index, guint16 langid, guint8 *buf, guint16 len)
{
    gint64 left_ms = (budget->deadline - g_get_monotonic_time()) / 1000;
    int rc;

    if (left_ms <= 0 || budget->n_requests >= GW_DEVICE_MAX_REQUESTS) {
        budget->expired = TRUE;
        return LIBUSB_ERROR_TIMEOUT;
    }
    budget->n_requests++;
    rc = libusb_control_transfer(handle, LIBUSB_ENDPOINT_IN, LIBUSB_REQUEST_GET_DESCRIPTOR,
                                 (guint16)(type << 8 | index), langid, buf, len,
                                 (unsigned int)MIN(left_ms, GW_DEVICE_REQUEST_TIMEOUT_MS));
    if (rc == LIBUSB_ERROR_TIMEOUT)
        budget->expired = TRUE;
    return rc;
}

gchar *
gw_device_parse_string_descriptor(const guint8 *desc, gsize len)
{
    GString *text;
    gsize end;

    /* bLength, bDescriptorType, then UTF-16LE code units; a device may
     * send fewer bytes than bLength says, or more (only bLength counts) */
    if (len < 2 || desc[1] != LIBUSB_DT_STRING || desc[0] < 2)
        return NULL;
    end = MIN((gsize)desc[0], len);
    text = g_string_new(NULL);
    for (gsize i = 2; i + 1 < end; i += 2) {
        guint16 unit = (guint16)(desc[i] | desc[i + 1] << 8);
        /* keep what a policy can quote and a terminal can show */
        g_string_append_c(text, unit < 0x80 && g_ascii_isprint((gchar)unit) ? (gchar)unit : '?');
    }
    return g_string_free(text, FALSE);
}

/* The first language the device offers, or 0. */
static guint16
gw_device_read_langid(libusb_device_handle *handle, GwDeviceBudget *budget)
{
    guint8 buf[GW_DEVICE_STRING_MAX];
    int n = gw_device_get_descriptor(handle, budget, LIBUSB_DT_STRING, 0, 0, buf, sizeof(buf));

    if (n < 4 || buf[1] != LIBUSB_DT_STRING || buf[0] < 4)
        return 0;
    return (guint16)(buf[2] | buf[3] << 8);
}

static gchar *
gw_device_read_string(libusb_device_handle *handle, GwDeviceBudget *budget, guint16 langid,
                      guint8 index)
{
    guint8 buf[GW_DEVICE_STRING_MAX];
    int n;

    if (index == 0 || langid == 0)
        return NULL;
    n = gw_device_get_descriptor(handle, budget, LIBUSB_DT_STRING, index, langid, buf, sizeof(buf));
    if (n < 0)
        return NULL;
    return gw_device_parse_string_descriptor(buf, (gsize)n);
}

guint
gw_device_config_total_length(const guint8 *header, gsize len)
{
    guint total;

    if (len < GW_DEVICE_CONFIG_HEADER_LEN || header[1] != LIBUSB_DT_CONFIG ||
        header[0] < GW_DEVICE_CONFIG_HEADER_LEN)
        return 0;
    total = (guint)header[2] | (guint)header[3] << 8;
    /* the whole is at least the configuration descriptor itself */
    return total >= header[0] ? total : 0;
}

static gchar *
gw_device_hash(libusb_device_handle *handle, GwDeviceBudget *budget,
               const struct libusb_device_descriptor *desc)
{
    g_autoptr(GChecksum) sum = g_checksum_new(G_CHECKSUM_SHA256);
    guint8 digest[32];
    gsize digest_len = sizeof(digest);
    guint8 raw[LIBUSB_DT_DEVICE_SIZE];
    int n;

    /* a real device has one or two configurations; more is not hashed */
    if (desc->bNumConfigurations > GW_DEVICE_MAX_CONFIGS)
        return NULL;
    n = gw_device_get_descriptor(handle, budget, LIBUSB_DT_DEVICE, 0, 0, raw, sizeof(raw));
    if (n != (int)sizeof(raw))
        return NULL;
    g_checksum_update(sum, raw, sizeof(raw));
    for (guint8 i = 0; i < desc->bNumConfigurations; i++) {
        guint8 header[GW_DEVICE_CONFIG_HEADER_LEN];
        guint total;
        g_autofree guint8 *config = NULL;

        n = gw_device_get_descriptor(handle, budget, LIBUSB_DT_CONFIG, i, 0, header,
                                     sizeof(header));
        total =
            n == (int)sizeof(header) ? gw_device_config_total_length(header, sizeof(header)) : 0;
        if (total == 0)
            return NULL;
        config = g_malloc(total);
        n = gw_device_get_descriptor(handle, budget, LIBUSB_DT_CONFIG, i, 0, config,
                                     (guint16)total);
        if (n < 0)
            return NULL;
        g_checksum_update(sum, config, (gsize)n);
    }
    g_checksum_get_digest(sum, digest, &digest_len);
    return g_base64_encode(digest, digest_len);
}

PolicyDevice *
gw_device_describe(libusb_device *device, GError **error)
{
    struct libusb_device_descriptor desc;
    struct libusb_config_descriptor *config = NULL;
    libusb_device_handle *handle = NULL;
    g_autoptr(PolicyDevice) out = NULL;
    GwDeviceBudget budget = {0};
    guint16 langid = 0;
    int rc = libusb_get_device_descriptor(device, &desc);

    if (rc != LIBUSB_SUCCESS) {
        gw_usb_set_error(error, rc, "cannot read the device descriptor");
        return NULL;
    }
    out = policy_device_new(desc.idVendor, desc.idProduct);
    out->bcd_device = desc.bcdDevice;
    out->device_class = desc.bDeviceClass;
    out->device_subclass = desc.bDeviceSubClass;
    out->device_protocol = desc.bDeviceProtocol;
    out->port = gw_device_port_path(device);

    /* Interfaces of the active configuration, else the first one. */
    rc = libusb_get_active_config_descriptor(device, &config);
    if (rc != LIBUSB_SUCCESS)
        rc = libusb_get_config_descriptor(device, 0, &config);
    if (rc == LIBUSB_SUCCESS) {
        for (guint8 i = 0; i < config->bNumInterfaces; i++) {
            const struct libusb_interface *iface = &config->interface[i];
            for (int alt = 0; alt < iface->num_altsetting; alt++) {
                const struct libusb_interface_descriptor *d = &iface->altsetting[alt];
                policy_device_add_interface(out, d->bInterfaceClass, d->bInterfaceSubClass,
                                            d->bInterfaceProtocol);
            }
        }
        libusb_free_config_descriptor(config);
    }

    /* Strings and the hash need the device open; without access the
     * description lacks them and rules matching them do not match. */
    rc = libusb_open(device, &handle);
    if (rc != LIBUSB_SUCCESS) {
        g_debug("%04x:%04x at %s: cannot open to read strings: %s", desc.idVendor, desc.idProduct,
                out->port, libusb_strerror(rc));
        return g_steal_pointer(&out);
    }
    budget.deadline =
        g_get_monotonic_time() + GW_DEVICE_DESCRIBE_BUDGET_MS * G_TIME_SPAN_MILLISECOND;
    if (desc.iManufacturer != 0 || desc.iProduct != 0 || desc.iSerialNumber != 0)
        langid = gw_device_read_langid(handle, &budget);
    out->manufacturer = gw_device_read_string(handle, &budget, langid, desc.iManufacturer);
    out->product = gw_device_read_string(handle, &budget, langid, desc.iProduct);
    out->serial = gw_device_read_string(handle, &budget, langid, desc.iSerialNumber);
    out->hash = gw_device_hash(handle, &budget, &desc);
    libusb_close(handle);
    if (budget.expired)
        g_message("%04x:%04x at %s: does not answer in time; described without what it did not "
                  "say in %u ms (strings, descriptor hash)",
                  desc.idVendor, desc.idProduct, out->port, GW_DEVICE_DESCRIBE_BUDGET_MS);
    return g_steal_pointer(&out);
}

gchar *
gw_device_identity(const PolicyDevice *device)
{
    if (device->serial != NULL && device->serial[0] != '\0')
        return g_strdup_printf("%04x:%04x#%s", device->vendor_id, device->product_id,
                               device->serial);
    return g_strdup_printf("%04x:%04x@%s", device->vendor_id, device->product_id,
                           device->port != NULL ? device->port : "?");
}

gchar *
gw_device_slot_name(const PolicyDevice *device)
{
    gboolean serial = device->serial != NULL && device->serial[0] != '\0';
    g_autofree gchar *name = g_strdup_printf(
        "%04x-%04x-%s-%s", device->vendor_id, device->product_id, serial ? "sn" : "at",
        serial ? device->serial : (device->port != NULL ? device->port : "unknown"));
    return g_strcanon(g_steal_pointer(&name),
                      "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-", '_');
}
