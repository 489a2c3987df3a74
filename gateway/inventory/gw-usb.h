/* The libusb side of usbgwd: one libusb context, its event thread and
 * hotplug notifications delivered on the main context.
 *
 * Threading (docs/threading.md): libusb_handle_events runs on the "usb"
 * thread only; hotplug callbacks fire there and are forwarded to the GLib
 * main context given at creation, so GwUsbHotplugFunc always runs on the
 * main thread. Transfer callbacks of usbredirhost run on the usb thread. */
#pragma once

#include <glib.h>
#include <libusb.h>

G_BEGIN_DECLS

#define GW_USB_ERROR (gw_usb_error_quark())
GQuark gw_usb_error_quark(void);

/* One code per libusb_error, so callers can tell "gone" from "busy". */
typedef enum {
    GW_USB_ERROR_IO,
    GW_USB_ERROR_INVALID,
    GW_USB_ERROR_ACCESS,
    GW_USB_ERROR_NO_DEVICE,
    GW_USB_ERROR_NOT_FOUND,
    GW_USB_ERROR_BUSY,
    GW_USB_ERROR_TIMEOUT,
    GW_USB_ERROR_OVERFLOW,
    GW_USB_ERROR_PIPE,
    GW_USB_ERROR_INTERRUPTED,
    GW_USB_ERROR_NO_MEMORY,
    GW_USB_ERROR_NOT_SUPPORTED,
    GW_USB_ERROR_OTHER,
} GwUsbError;

/* Sets @error from a libusb return code, prefixed by @what. */
gboolean gw_usb_set_error(GError **error, int rc, const gchar *what);

typedef struct _GwUsb GwUsb;

/* @arrived TRUE: a device arrived (or was present at start);
 * FALSE: it left. @device is a new reference the callee may keep. */
typedef void (*GwUsbHotplugFunc)(libusb_device *device, gboolean arrived, gpointer user_data);

GwUsb *gw_usb_new(GMainContext *context, GError **error) G_GNUC_WARN_UNUSED_RESULT;
/* Registers for hotplug and reports every present device as arrived. */
gboolean gw_usb_start(GwUsb *usb, GwUsbHotplugFunc func, gpointer user_data,
                      GError **error) G_GNUC_WARN_UNUSED_RESULT;
libusb_context *gw_usb_get_context(GwUsb *usb);
/* Stops the event thread (atomic flag + libusb_interrupt_event_handler),
 * drops the hotplug events still queued on the main context (their
 * GwUsbHotplugFunc never runs) and frees the context. Iterates no main
 * context. Every device handle must be closed before. Main thread. */
void gw_usb_free(GwUsb *usb);

G_DEFINE_AUTOPTR_CLEANUP_FUNC(GwUsb, gw_usb_free)

G_END_DECLS
