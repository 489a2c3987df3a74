/* Device descriptions from libusb. Every value comes from the device and
 * is treated as untrusted: lengths are checked, strings are sanitized. */
#include "gw-device.h"

#include "gw-usb.h"

/* Longest string descriptor kept (USB caps them at 126 UTF-16 units). */
#define GW_DEVICE_STRING_MAX 256

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

static gchar *
gw_device_read_string(libusb_device_handle *handle, guint8 index)
{
    guchar buf[GW_DEVICE_STRING_MAX];
    int n;

    if (index == 0 || handle == NULL)
        return NULL;
    n = libusb_get_string_descriptor_ascii(handle, index, buf, sizeof(buf) - 1);
    if (n < 0)
        return NULL;
    buf[n] = '\0';
    /* keep what a policy can quote and a terminal can show */
    for (int i = 0; i < n; i++) {
        if (!g_ascii_isprint(buf[i]))
            buf[i] = '?';
    }
    return g_strndup((const gchar *)buf, (gsize)n);
}

static gchar *
gw_device_hash(libusb_device_handle *handle, const struct libusb_device_descriptor *desc)
{
    g_autoptr(GChecksum) sum = g_checksum_new(G_CHECKSUM_SHA256);
    guint8 digest[32];
    gsize digest_len = sizeof(digest);
    guint8 raw[18];
    int n;

    if (handle == NULL)
        return NULL;
    n = libusb_get_descriptor(handle, LIBUSB_DT_DEVICE, 0, raw, sizeof(raw));
    if (n != (int)sizeof(raw))
        return NULL;
    g_checksum_update(sum, raw, sizeof(raw));
    for (guint8 i = 0; i < desc->bNumConfigurations; i++) {
        guint8 header[4];
        guint total;
        g_autofree guint8 *config = NULL;

        if (libusb_get_descriptor(handle, LIBUSB_DT_CONFIG, i, header, sizeof(header)) !=
            (int)sizeof(header))
            return NULL;
        total = (guint)header[2] | (guint)header[3] << 8;
        if (total < sizeof(header))
            return NULL;
        config = g_malloc(total);
        n = libusb_get_descriptor(handle, LIBUSB_DT_CONFIG, i, config, (int)total);
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
    out->manufacturer = gw_device_read_string(handle, desc.iManufacturer);
    out->product = gw_device_read_string(handle, desc.iProduct);
    out->serial = gw_device_read_string(handle, desc.iSerialNumber);
    out->hash = gw_device_hash(handle, &desc);
    libusb_close(handle);
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
