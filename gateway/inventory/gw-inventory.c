/* The inventory: hotplug → identities, lookup, find. See gw-inventory.h. */
#include "gw-inventory.h"

#include <string.h>

#include "gw-device.h"
#include "gw-usb.h"

/* clang-format off */
G_DEFINE_QUARK(usbgw-inventory-error-quark, gw_inventory_error)
/* clang-format on */

struct _GwInventory {
    GwUsb *usb;                            /* owned */
    GHashTable *devices;                   /* id → GwInventoryDevice (owned) */
    GHashTable *by_usb;                    /* libusb_device* → GwInventoryDevice (borrowed) */
    const GwInventoryCallbacks *callbacks; /* borrowed */
    gpointer user_data;
    gboolean stopped; /* gw_inventory_stop(): events are dropped */
};

static void
gw_inventory_device_free(gpointer data)
{
    GwInventoryDevice *dev = data;
    if (dev->usb != NULL)
        libusb_unref_device(dev->usb);
    policy_device_free(dev->desc);
    g_free(dev->id);
    g_free(dev->since);
    g_free(dev);
}

void
gw_inventory_touch(GwInventoryDevice *device)
{
    g_autoptr(GDateTime) now = g_date_time_new_now_utc();
    g_free(device->since);
    device->since = g_date_time_format_iso8601(now);
}

GwInventory *
gw_inventory_new(GMainContext *context, GError **error)
{
    g_autoptr(GwUsb) usb = gw_usb_new(context, error);
    GwInventory *inventory;

    if (usb == NULL)
        return NULL;
    inventory = g_new0(GwInventory, 1);
    inventory->usb = g_steal_pointer(&usb);
    inventory->devices =
        g_hash_table_new_full(g_str_hash, g_str_equal, NULL, gw_inventory_device_free);
    inventory->by_usb = g_hash_table_new(g_direct_hash, g_direct_equal);
    return inventory;
}

void
gw_inventory_free(GwInventory *inventory)
{
    if (inventory == NULL)
        return;
    /* the event thread first: no hotplug reaches the tables below */
    g_clear_pointer(&inventory->usb, gw_usb_free);
    g_hash_table_unref(inventory->by_usb);
    g_hash_table_unref(inventory->devices);
    g_free(inventory);
}

libusb_context *
gw_inventory_get_context(GwInventory *inventory)
{
    return gw_usb_get_context(inventory->usb);
}

static void
gw_inventory_arrived(GwInventory *inventory, libusb_device *usb)
{
    g_autoptr(GError) error = NULL;
    g_autoptr(PolicyDevice) desc = gw_device_describe(usb, &error);
    g_autofree gchar *id = NULL;
    GwInventoryDevice *dev;

    if (desc == NULL) {
        g_autofree gchar *port = gw_device_port_path(usb);
        g_warning("device at %s ignored: %s", port, error->message);
        return;
    }
    id = gw_device_identity(desc);
    dev = g_hash_table_lookup(inventory->devices, id);
    if (dev == NULL) {
        dev = g_new0(GwInventoryDevice, 1);
        dev->id = g_steal_pointer(&id);
        g_hash_table_insert(inventory->devices, dev->id, dev);
    } else if (dev->usb != NULL) {
        g_hash_table_remove(inventory->by_usb, dev->usb);
        g_clear_pointer(&dev->usb, libusb_unref_device);
    }
    policy_device_free(dev->desc);
    dev->desc = g_steal_pointer(&desc);
    dev->usb = libusb_ref_device(usb);
    g_hash_table_insert(inventory->by_usb, dev->usb, dev);
    gw_inventory_touch(dev);
    inventory->callbacks->arrived(dev, inventory->user_data);
}

static void
gw_inventory_left(GwInventory *inventory, libusb_device *usb)
{
    GwInventoryDevice *dev = g_hash_table_lookup(inventory->by_usb, usb);

    if (dev == NULL)
        return;
    g_message("%s left", dev->id);
    g_hash_table_remove(inventory->by_usb, usb);
    g_clear_pointer(&dev->usb, libusb_unref_device);
    gw_inventory_touch(dev);
    inventory->callbacks->left(dev, inventory->user_data);
}

void
gw_inventory_stop(GwInventory *inventory)
{
    inventory->stopped = TRUE;
}

static void
gw_inventory_hotplug(libusb_device *device, gboolean arrived, gpointer user_data)
{
    GwInventory *inventory = user_data;

    if (inventory->stopped) {
        /* usbgwd is going: nobody is left to tell */
    } else if (arrived) {
        gw_inventory_arrived(inventory, device);
    } else {
        gw_inventory_left(inventory, device);
    }
    libusb_unref_device(device);
}

gboolean
gw_inventory_start(GwInventory *inventory, const GwInventoryCallbacks *callbacks,
                   gpointer user_data, GError **error)
{
    inventory->callbacks = callbacks;
    inventory->user_data = user_data;
    return gw_usb_start(inventory->usb, gw_inventory_hotplug, inventory, error);
}

GwInventoryDevice *
gw_inventory_lookup(GwInventory *inventory, const gchar *id)
{
    return g_hash_table_lookup(inventory->devices, id);
}

guint
gw_inventory_get_count(GwInventory *inventory)
{
    return g_hash_table_size(inventory->devices);
}

static gint
gw_inventory_compare(gconstpointer a, gconstpointer b)
{
    return strcmp((*(GwInventoryDevice *const *)a)->id, (*(GwInventoryDevice *const *)b)->id);
}

GPtrArray *
gw_inventory_list(GwInventory *inventory)
{
    GPtrArray *out = g_ptr_array_new();
    GHashTableIter iter;
    gpointer value;

    g_hash_table_iter_init(&iter, inventory->devices);
    while (g_hash_table_iter_next(&iter, NULL, &value))
        g_ptr_array_add(out, value);
    g_ptr_array_sort(out, gw_inventory_compare);
    return out;
}

GwInventoryDevice *
gw_inventory_find(GwInventory *inventory, const gchar *ref, GError **error)
{
    g_autoptr(GPtrArray) devices = gw_inventory_list(inventory);
    g_autoptr(GPtrArray) matches = g_ptr_array_new();
    g_autoptr(GString) names = g_string_new(NULL);
    GwInventoryDevice *exact = g_hash_table_lookup(inventory->devices, ref);

    if (exact != NULL)
        return exact;
    for (guint i = 0; i < devices->len; i++) {
        GwInventoryDevice *dev = g_ptr_array_index(devices, i);
        g_autofree gchar *vidpid =
            g_strdup_printf("%04x:%04x", dev->desc->vendor_id, dev->desc->product_id);
        if (g_ascii_strcasecmp(vidpid, ref) == 0 || g_strcmp0(dev->desc->serial, ref) == 0 ||
            g_strcmp0(dev->desc->port, ref) == 0)
            g_ptr_array_add(matches, dev);
    }
    if (matches->len == 1)
        return g_ptr_array_index(matches, 0);
    if (matches->len == 0) {
        g_set_error(error, GW_INVENTORY_ERROR, GW_INVENTORY_ERROR_NOT_FOUND,
                    "no device '%s': name one by the id, VID:PID, serial or port that "
                    "'usbgwctl list' shows",
                    ref);
        return NULL;
    }
    for (guint i = 0; i < matches->len; i++)
        g_string_append_printf(names, "%s%s", i > 0 ? ", " : "",
                               ((GwInventoryDevice *)g_ptr_array_index(matches, i))->id);
    g_set_error(error, GW_INVENTORY_ERROR, GW_INVENTORY_ERROR_NOT_UNIQUE,
                "'%s' names %u devices (%s): use its id", ref, matches->len, names->str);
    return NULL;
}
