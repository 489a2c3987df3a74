/* GwInventory: the USB devices usbgwd has seen, by identity and by libusb
 * device. It owns the libusb context (GwUsb), turns hotplug into
 * "arrived"/"left" of an identity — a replugged device is the same entry,
 * with a new libusb device — and finds a device by the forms usbgwctl
 * accepts. Devices that left stay listed (absent) with their last
 * description. Two present devices never share an identity: a device
 * whose serial a present device at another port already has is known as
 * "VID:PID#SERIAL@PORT" (logged as a warning).
 *
 * Threading: main thread only; the callbacks run on the main context given
 * to gw_inventory_new(). Ownership: entries live until the inventory is
 * freed; pointers into them are valid until then. */
#pragma once

#include <glib.h>
#include <libusb.h>

#include "policy.h"

G_BEGIN_DECLS

#define GW_INVENTORY_ERROR (gw_inventory_error_quark())
GQuark gw_inventory_error_quark(void);

typedef enum {
    GW_INVENTORY_ERROR_NOT_FOUND,  /* no device is named so */
    GW_INVENTORY_ERROR_NOT_UNIQUE, /* more than one device is named so */
} GwInventoryError;

/* Read-only outside gw-inventory.c. */
typedef struct {
    gchar *id;          /* identity (gw_device_identity) */
    PolicyDevice *desc; /* as last seen */
    libusb_device *usb; /* nullable: absent */
    gchar *since;       /* ISO 8601 time of the last change (gw_inventory_touch) */
    /* a device of another gateway (gw_inventory_set_remote()): @usb is
     * always NULL, desc->gateway names the gateway */
    gboolean remote;
    gboolean remote_present; /* that gateway exports it to us now */
} GwInventoryDevice;

typedef struct {
    /* @device arrived, or was present at start, or came back. */
    void (*arrived)(GwInventoryDevice *device, gpointer user_data);
    /* @device left; its entry stays with usb NULL. */
    void (*left)(GwInventoryDevice *device, gpointer user_data);
} GwInventoryCallbacks;

typedef struct _GwInventory GwInventory;

GwInventory *gw_inventory_new(GMainContext *context, GError **error) G_GNUC_WARN_UNUSED_RESULT;
/* Registers for hotplug and reports every present device. @callbacks and
 * @user_data outlive the inventory. */
gboolean gw_inventory_start(GwInventory *inventory, const GwInventoryCallbacks *callbacks,
                            gpointer user_data, GError **error) G_GNUC_WARN_UNUSED_RESULT;
libusb_context *gw_inventory_get_context(GwInventory *inventory);

GwInventoryDevice *gw_inventory_lookup(GwInventory *inventory, const gchar *id);
/* The one device named by @ref: its identity, VID:PID, serial or port
 * path. NULL with GW_INVENTORY_ERROR_NOT_FOUND or _NOT_UNIQUE (the message
 * names the candidates). */
GwInventoryDevice *gw_inventory_find(GwInventory *inventory, const gchar *ref, GError **error);
/* Every device, present or not, in identity order (borrowed). */
GPtrArray *gw_inventory_list(GwInventory *inventory) G_GNUC_WARN_UNUSED_RESULT;
guint gw_inventory_get_count(GwInventory *inventory);
/* Whether the device is plugged in (here, or on its gateway). */
gboolean gw_inventory_device_is_present(const GwInventoryDevice *device);
/* A device another gateway exports to us (gateway links), listed and found
 * like a local one but never claimed here: @desc (copied) must name its
 * gateway; @present: exported now. No callback runs. Returns the entry.
 * An @id a local device has is refused (NULL). */
GwInventoryDevice *gw_inventory_set_remote(GwInventory *inventory, const gchar *id,
                                           const PolicyDevice *desc, gboolean present);
/* The device's state changed now (for "since"). */
void gw_inventory_touch(GwInventoryDevice *device);

/* From now on no callback runs: hotplug events already queued for the
 * main context are dropped. The first step of usbgwd's teardown. */
void gw_inventory_stop(GwInventory *inventory);
/* Stops hotplug and the libusb event thread. Every device handle must be
 * closed before (the attachments are freed first). */
void gw_inventory_free(GwInventory *inventory);
G_DEFINE_AUTOPTR_CLEANUP_FUNC(GwInventory, gw_inventory_free)

G_END_DECLS
