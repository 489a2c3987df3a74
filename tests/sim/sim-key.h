/* The simulated license keys as USB devices: their identity, descriptors
 * and what their endpoints answer (key-protocol.h).
 *
 * Pure device behaviour: no I/O, no locking. A SimKey is one plugged-in
 * instance (its protocol state starts fresh on every plug); whoever serves
 * it (sim-usbfs.c) serialises the calls. */
#pragma once

#include <glib.h>
#include <linux/usb/ch9.h>

#include "key-protocol.h"

typedef enum {
    SIM_KEY_KIND_VENDOR,  /* HASP-like: vendor control requests */
    SIM_KEY_KIND_HID,     /* SET_REPORT challenge, interrupt IN response */
    SIM_KEY_KIND_STORAGE, /* mass storage that only enumerates */
} SimKeyKind;

/* A key the harness can plug: one row of a static table. */
typedef struct {
    const char *name; /* as on the command line */
    SimKeyKind kind;
    guint16 vendor_id;
    guint16 product_id;
    guint16 bcd_device;
    const char *manufacturer;
    const char *product;
    const char *serial;           /* nullable: no iSerialNumber */
    const char *port;             /* sysfs name on bus 1, "1-3.1" */
    guint8 secret[USBGW_KEY_LEN]; /* default secret */
    /* HID only: the interrupt IN endpoint always has a report (a running
     * count when no challenge's response waits), as a device that reports
     * continuously; a host polling it gets data at once, every time. */
    gboolean streams;
    /* Never answers a GET_DESCRIPTOR for a string: the control transfer
     * stays pending (NAKed) until the host gives up and cancels it, as a
     * broken or hostile device may do. */
    gboolean mute_strings;
} SimKeyModel;

/* Outcome of a transfer, as the host controller would report it. */
typedef enum {
    SIM_KEY_XFER_DONE,
    SIM_KEY_XFER_PENDING, /* no data yet: the URB waits (NAKed by the device) */
    SIM_KEY_XFER_STALL,
} SimKeyXfer;

const SimKeyModel *sim_key_models(gsize *n_models);
guint sim_key_model_speed_mbps(const SimKeyModel *model);

typedef struct _SimKey SimKey;

SimKey *sim_key_new(const SimKeyModel *model, const guint8 secret[USBGW_KEY_LEN]);
void sim_key_free(SimKey *self);
G_DEFINE_AUTOPTR_CLEANUP_FUNC(SimKey, sim_key_free)

const SimKeyModel *sim_key_get_model(SimKey *self);
/* Device descriptor followed by the configuration: sysfs "descriptors". */
GBytes *sim_key_get_descriptors(SimKey *self);
guint sim_key_get_n_interfaces(SimKey *self);
/* FALSE if the key has no such endpoint; @type gets USB_ENDPOINT_XFER_*. */
gboolean sim_key_lookup_endpoint(SimKey *self, guint8 address, guint8 *type);
gboolean sim_key_set_configuration(SimKey *self, guint value);
/* Bus reset: the key forgets any challenge. */
void sim_key_reset(SimKey *self);

/* A control transfer on EP0. @data holds wLength bytes: the OUT data, or
 * room for the IN reply. @len is wLength on entry and the number of bytes
 * transferred on return. */
SimKeyXfer sim_key_control(SimKey *self, const struct usb_ctrlrequest *setup, guint8 *data,
                           gsize *len);
/* A bulk or interrupt transfer; @len as for sim_key_control(). PENDING
 * leaves @data untouched: retry after the next control transfer. */
SimKeyXfer sim_key_transfer(SimKey *self, guint8 endpoint, guint8 *data, gsize *len);
