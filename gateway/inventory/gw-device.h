/* A USB device as usbgwd knows it: its policy description and identity,
 * read from libusb descriptors.
 *
 * Threading: any thread, one call per device at a time. usbgwd calls
 * gw_device_describe() on the inventory's describer thread (it opens the
 * device and waits for it) and the naming functions on the main thread;
 * the naming functions are pure. */
#pragma once

#include <libusb.h>

#include "policy.h"

G_BEGIN_DECLS

/* Reads descriptors, strings (opening the device briefly; no interface is
 * claimed) and the port path of @device, and computes the descriptor hash:
 * base64 of SHA-256 over the device descriptor and every configuration
 * descriptor as the device sends them. */
PolicyDevice *gw_device_describe(libusb_device *device, GError **error) G_GNUC_WARN_UNUSED_RESULT;

/* The identity by which a device is recognized when it comes back:
 * "VID:PID#SERIAL" for devices with a serial (any port), else
 * "VID:PID@PORT" (identical serial-less keys differ only by port). */
gchar *gw_device_identity(const PolicyDevice *device) G_GNUC_WARN_UNUSED_RESULT;

/* The identity as a file name: [A-Za-z0-9._-] only, e.g. "0529-0001-at-1-1". */
gchar *gw_device_slot_name(const PolicyDevice *device) G_GNUC_WARN_UNUSED_RESULT;

/* "1-1.4" from bus number and port numbers. */
gchar *gw_device_port_path(libusb_device *device) G_GNUC_WARN_UNUSED_RESULT;

G_END_DECLS
