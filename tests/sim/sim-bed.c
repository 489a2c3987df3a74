#include "sim-bed.h"

#include <gio/gio.h>
#include <umockdev.h>

#include "sim-hex.h"
#include "sim-key.h"
#include "sim-usbfs.h"

#define SIM_BED_BUSNUM     1
#define SIM_BED_USB_MAJOR  189 /* usb_device char major */
#define SIM_BED_MAX_DEVNUM 127
#define SIM_BED_HCD_PATH   "/devices/pci0000:00/0000:00:14.0"

/* The hubs: present from the start, never opened, so they need no ioctl
 * handler; libusb only needs them to resolve "1-3.1" into ports 3, 1. */
typedef struct {
    const char *port;
    guint devnum;
    const char *manufacturer;
    const char *product;
    const char *serial;
    const char *descriptors; /* hex: device + configuration */
} SimBedHub;

static const SimBedHub sim_bed_hubs[] = {
    {"usb1", 1, "Linux 6.1.0 xhci-hcd", "xHCI Host Controller", "0000:00:14.0",
     /* 1d6b:0002, class 9, one interrupt IN endpoint */
     "12010002090001406b1d020001060302010109021900010100e0000904000001090000000705810304000c"},
    {"1-3", 2, NULL, "USB2.0 Hub", NULL,
     /* 05e3:0608 */
     "1201000209000140e305080660600001000109021900010100e0320904000001090000000705810301000c"},
};

typedef struct {
    const SimKeyModel *model;
    guint8 secret[USBGW_KEY_LEN];
    char *syspath;   /* owned: /sys/devices/…/usb1/1-3/1-3.1 */
    SimUsbfs *usbfs; /* owned, nullable: NULL while unplugged */
    guint devnum;    /* 0 while unplugged */
} SimSlot;

struct _SimBed {
    UMockdevTestbed *testbed; /* owned */
    SimSlot *slots;           /* owned, one per key model */
    gsize n_slots;
    guint next_devnum;
    /* devnum → SimUsbfs (owned): the nodes of unplugged keys, still served
     * (every ioctl fails with ENODEV) until their device number is taken
     * again; see sim_bed_unplug() */
    GHashTable *retired;
};

/* "1-3.1" → SIM_BED_HCD_PATH/usb1/1-3/1-3.1; "usb1" → …/usb1 */
static char *
sim_bed_sysfs_path(const char *port)
{
    g_autoptr(GString) path = g_string_new(SIM_BED_HCD_PATH);
    const char *dash = strchr(port, '-');

    g_string_append_printf(path, "/usb%u", SIM_BED_BUSNUM);
    if (dash == NULL)
        return g_string_free(g_steal_pointer(&path), FALSE);
    for (const char *p = dash; *p != '\0'; p++) {
        if (*p == '.')
            g_string_append_printf(path, "/%.*s", (int)(p - port), port);
    }
    g_string_append_printf(path, "/%s", port);
    return g_string_free(g_steal_pointer(&path), FALSE);
}

/* The umockdev description of a device as the kernel would show it: the
 * identity comes from the descriptors, so the two always agree. */
static char *
sim_bed_device_text(const char *port, guint devnum, GBytes *descriptors, guint speed_mbps,
                    const char *manufacturer, const char *product, const char *serial,
                    guint maxchild)
{
    gsize len;
    const guint8 *d = g_bytes_get_data(descriptors, &len);
    const guint8 *config = d + USB_DT_DEVICE_SIZE;
    guint vid = d[8] | d[9] << 8, pid = d[10] | d[11] << 8, bcd = d[12] | d[13] << 8;
    guint minor = (SIM_BED_BUSNUM - 1) * 128 + devnum - 1;
    const char *dash = strchr(port, '-');
    g_autofree char *hex = sim_hex_encode(d, len);
    g_autofree char *sysfs = sim_bed_sysfs_path(port);
    GString *text = g_string_new(NULL);

    g_string_append_printf(text, "P: %s\nN: bus/usb/%03u/%03u\n", sysfs, SIM_BED_BUSNUM, devnum);
    g_string_append_printf(text,
                           "E: SUBSYSTEM=usb\nE: DEVTYPE=usb_device\nE: DRIVER=usb\n"
                           "E: DEVNAME=/dev/bus/usb/%03u/%03u\nE: BUSNUM=%03u\nE: DEVNUM=%03u\n"
                           "E: MAJOR=%u\nE: MINOR=%u\nE: PRODUCT=%x/%x/%x\nE: TYPE=%u/%u/%u\n"
                           "E: ID_VENDOR_ID=%04x\nE: ID_MODEL_ID=%04x\n",
                           SIM_BED_BUSNUM, devnum, SIM_BED_BUSNUM, devnum, SIM_BED_USB_MAJOR, minor,
                           vid, pid, bcd, d[4], d[5], d[6], vid, pid);
    if (serial != NULL)
        g_string_append_printf(text, "E: ID_SERIAL_SHORT=%s\n", serial);
    /* sysfs attribute values end in a newline, as the kernel's do */
    g_string_append_printf(text,
                           "A: busnum=%u\\n\nA: devnum=%u\\n\nA: devpath=%s\\n\n"
                           "A: idVendor=%04x\\n\nA: idProduct=%04x\\n\nA: bcdDevice=%04x\\n\n"
                           "A: bDeviceClass=%02x\\n\nA: bDeviceSubClass=%02x\\n\n"
                           "A: bDeviceProtocol=%02x\\n\nA: bMaxPacketSize0=%u\\n\n"
                           "A: bNumConfigurations=%u\\n\nA: bNumInterfaces=%2u\\n\n"
                           "A: bConfigurationValue=%u\\n\nA: bmAttributes=%02x\\n\n"
                           "A: bMaxPower=%umA\\n\nA: speed=%u\\n\nA: version= 2.00\\n\n"
                           "A: maxchild=%u\\n\nA: authorized=1\\n\nA: removable=%s\\n\n"
                           "A: dev=%u:%u\\n\n",
                           SIM_BED_BUSNUM, devnum, dash != NULL ? dash + 1 : "0", vid, pid, bcd,
                           d[4], d[5], d[6], d[7], d[17], config[4], config[5], config[7],
                           config[8] * 2u, speed_mbps, maxchild,
                           dash != NULL ? "removable" : "unknown", SIM_BED_USB_MAJOR, minor);
    if (manufacturer != NULL)
        g_string_append_printf(text, "A: manufacturer=%s\\n\n", manufacturer);
    if (product != NULL)
        g_string_append_printf(text, "A: product=%s\\n\n", product);
    if (serial != NULL)
        g_string_append_printf(text, "A: serial=%s\\n\n", serial);
    g_string_append_printf(text, "H: descriptors=%s\n", hex);
    return g_string_free(text, FALSE);
}

static gboolean
sim_bed_add_hubs(SimBed *self, GError **error)
{
    for (gsize i = 0; i < G_N_ELEMENTS(sim_bed_hubs); i++) {
        const SimBedHub *hub = &sim_bed_hubs[i];
        gsize len = strlen(hub->descriptors) / 2;
        g_autofree guint8 *desc = g_malloc(len);
        if (!sim_hex_decode(hub->descriptors, desc, len, error))
            return FALSE;
        g_autoptr(GBytes) bytes = g_bytes_new_take(g_steal_pointer(&desc), len);
        g_autofree char *text = sim_bed_device_text(
            hub->port, hub->devnum, bytes, 480, hub->manufacturer, hub->product, hub->serial, 4);
        if (!umockdev_testbed_add_from_string(self->testbed, text, error))
            return FALSE;
    }
    return TRUE;
}

SimBed *
sim_bed_new(GError **error)
{
    g_autoptr(SimBed) self = g_new0(SimBed, 1);
    const SimKeyModel *models = sim_key_models(&self->n_slots);

    self->testbed = umockdev_testbed_new();
    self->next_devnum = G_N_ELEMENTS(sim_bed_hubs) + 1;
    self->retired = g_hash_table_new_full(g_direct_hash, g_direct_equal, NULL, g_object_unref);
    self->slots = g_new0(SimSlot, self->n_slots);
    for (gsize i = 0; i < self->n_slots; i++) {
        g_autofree char *path = sim_bed_sysfs_path(models[i].port);
        self->slots[i].model = &models[i];
        memcpy(self->slots[i].secret, models[i].secret, USBGW_KEY_LEN);
        self->slots[i].syspath = g_strconcat("/sys", path, NULL);
    }
    if (!sim_bed_add_hubs(self, error))
        return NULL;
    return g_steal_pointer(&self);
}

void
sim_bed_free(SimBed *self)
{
    if (self == NULL)
        return;
    for (gsize i = 0; self->slots != NULL && i < self->n_slots; i++) {
        g_clear_object(&self->slots[i].usbfs);
        g_free(self->slots[i].syspath);
    }
    g_free(self->slots);
    g_clear_pointer(&self->retired, g_hash_table_unref);
    /* removes the testbed directory and unsets UMOCKDEV_DIR */
    g_clear_object(&self->testbed);
    g_free(self);
}

static SimSlot *
sim_bed_lookup(SimBed *self, const char *name, GError **error)
{
    g_autoptr(GString) known = g_string_new(NULL);

    for (gsize i = 0; i < self->n_slots; i++) {
        if (g_strcmp0(self->slots[i].model->name, name) == 0)
            return &self->slots[i];
        g_string_append_printf(known, "%s%s", i > 0 ? ", " : "", self->slots[i].model->name);
    }
    g_set_error(error, G_IO_ERROR, G_IO_ERROR_NOT_FOUND, "unknown key '%s' (known: %s)", name,
                known->str);
    return NULL;
}

gboolean
sim_bed_set_secret(SimBed *self, const char *name, const char *hex, GError **error)
{
    SimSlot *slot = sim_bed_lookup(self, name, error);
    guint8 secret[USBGW_KEY_LEN];

    if (slot == NULL)
        return FALSE;
    if (!sim_hex_decode(hex, secret, USBGW_KEY_LEN, error)) {
        g_prefix_error(error, "secret for %s: ", name);
        return FALSE;
    }
    memcpy(slot->secret, secret, USBGW_KEY_LEN);
    return TRUE;
}

char *
sim_bed_get_secret(SimBed *self, const char *name, GError **error)
{
    SimSlot *slot = sim_bed_lookup(self, name, error);
    return slot != NULL ? sim_hex_encode(slot->secret, USBGW_KEY_LEN) : NULL;
}

static gboolean
sim_bed_devnum_in_use(SimBed *self, guint devnum)
{
    for (gsize i = 0; i < G_N_ELEMENTS(sim_bed_hubs); i++) {
        if (sim_bed_hubs[i].devnum == devnum)
            return TRUE;
    }
    for (gsize i = 0; i < self->n_slots; i++) {
        if (self->slots[i].devnum == devnum)
            return TRUE;
    }
    return FALSE;
}

/* Like the kernel: the next free number after the last one given, so a
 * replugged key comes back under a new node. 0 if the bus is full. */
/* Stops serving the node of an unplugged key whose device number is taken
 * again (a whole round of the bus's numbers after its unplug). */
static void
sim_bed_end_retired(SimBed *self, guint devnum)
{
    g_autofree char *node = g_strdup_printf("/dev/bus/usb/%03u/%03u", SIM_BED_BUSNUM, devnum);
    g_autoptr(GError) error = NULL;

    if (!g_hash_table_contains(self->retired, GUINT_TO_POINTER(devnum)))
        return;
    if (!umockdev_testbed_detach_ioctl(self->testbed, node, &error))
        g_warning("%s: %s", node, error->message);
    g_hash_table_remove(self->retired, GUINT_TO_POINTER(devnum));
}

static guint
sim_bed_alloc_devnum(SimBed *self)
{
    for (guint tries = 0; tries < SIM_BED_MAX_DEVNUM; tries++) {
        guint devnum = self->next_devnum;
        self->next_devnum = devnum % SIM_BED_MAX_DEVNUM + 1;
        if (!sim_bed_devnum_in_use(self, devnum)) {
            sim_bed_end_retired(self, devnum);
            return devnum;
        }
    }
    return 0;
}

gboolean
sim_bed_plug(SimBed *self, const char *name, GError **error)
{
    SimSlot *slot = sim_bed_lookup(self, name, error);
    if (slot == NULL)
        return FALSE;
    if (slot->usbfs != NULL) {
        g_set_error(error, G_IO_ERROR, G_IO_ERROR_EXISTS, "%s is already plugged", name);
        return FALSE;
    }
    guint devnum = sim_bed_alloc_devnum(self);
    if (devnum == 0) {
        g_set_error(error, G_IO_ERROR, G_IO_ERROR_NO_SPACE, "bus %u has no free device number",
                    SIM_BED_BUSNUM);
        return FALSE;
    }

    const SimKeyModel *model = slot->model;
    g_autoptr(SimKey) key = sim_key_new(model, slot->secret);
    g_autoptr(GBytes) descriptors = sim_key_get_descriptors(key);
    g_autofree char *text =
        sim_bed_device_text(model->port, devnum, descriptors, sim_key_model_speed_mbps(model),
                            model->manufacturer, model->product, model->serial, 0);
    g_autofree char *node = g_strdup_printf("/dev/bus/usb/%03u/%03u", SIM_BED_BUSNUM, devnum);
    g_autoptr(SimUsbfs) usbfs = sim_usbfs_new(g_steal_pointer(&key), devnum);

    /* The handler goes first: a client woken by "add" must find the node served. */
    if (!umockdev_testbed_attach_ioctl(self->testbed, node, UMOCKDEV_IOCTL_BASE(usbfs), error))
        return FALSE;
    if (!umockdev_testbed_add_from_string(self->testbed, text, error)) {
        (void)umockdev_testbed_detach_ioctl(self->testbed, node, NULL);
        return FALSE;
    }
    /* umockdev 0.17 sends "add" itself only when this process runs under its
     * preload; usbgw-sim normally does (it re-executes itself so). */
    if (!umockdev_in_mock_environment())
        umockdev_testbed_uevent(self->testbed, slot->syspath, "add");
    slot->usbfs = g_steal_pointer(&usbfs);
    slot->devnum = devnum;
    g_debug("plugged %s at %s as %s", name, model->port, node);
    return TRUE;
}

gboolean
sim_bed_unplug(SimBed *self, const char *name, GError **error)
{
    SimSlot *slot = sim_bed_lookup(self, name, error);

    if (slot == NULL)
        return FALSE;
    if (slot->usbfs == NULL) {
        g_set_error(error, G_IO_ERROR, G_IO_ERROR_NOT_CONNECTED, "%s is not plugged", name);
        return FALSE;
    }
    /* As in the kernel: URBs die first, then "remove" goes out. The event
     * carries the uevent file, so it must precede removing the device. */
    sim_usbfs_disconnect(slot->usbfs);
    umockdev_testbed_uevent(self->testbed, slot->syspath, "remove");
    umockdev_testbed_remove_device(self->testbed, slot->syspath);
    /* The node stays served, every ioctl failing with ENODEV as the
     * kernel's does for a file of an unplugged device: detaching the
     * handler now would cut the connection of a client that still has the
     * node open, and umockdev's preload aborts that client on the next
     * ioctl ("Error communicating with ioctl socket, errno: 104"). */
    g_hash_table_replace(self->retired, GUINT_TO_POINTER(slot->devnum),
                         g_steal_pointer(&slot->usbfs));
    slot->devnum = 0;
    g_debug("unplugged %s from %s", name, slot->model->port);
    return TRUE;
}

void
sim_bed_list(SimBed *self, GString *out)
{
    for (gsize i = 0; i < self->n_slots; i++) {
        const SimSlot *slot = &self->slots[i];
        g_autofree char *secret = sim_hex_encode(slot->secret, USBGW_KEY_LEN);
        g_autofree char *busdev = slot->devnum != 0
                                      ? g_strdup_printf("%03u/%03u", SIM_BED_BUSNUM, slot->devnum)
                                      : g_strdup("-");
        g_string_append_printf(out, "%s %s %04x:%04x %s %s %s\n", slot->model->name,
                               slot->devnum != 0 ? "plugged" : "unplugged", slot->model->vendor_id,
                               slot->model->product_id, slot->model->port, busdev, secret);
    }
}
