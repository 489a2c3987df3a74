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
 * descriptor as the device sends them. What the device is asked is bounded
 * in time and in requests (gw-device.c): a device that does not answer in
 * time is described without its strings and hash. */
PolicyDevice *gw_device_describe(libusb_device *device, GError **error) G_GNUC_WARN_UNUSED_RESULT;

/* The identity by which a device is recognized when it comes back:
 * "VID:PID#SERIAL" for devices with a serial (any port), else
 * "VID:PID@PORT" (identical serial-less keys differ only by port). */
gchar *gw_device_identity(const PolicyDevice *device) G_GNUC_WARN_UNUSED_RESULT;

/* The identity as a file name: [A-Za-z0-9._-] only, e.g. "0529-0001-at-1-1". */
gchar *gw_device_slot_name(const PolicyDevice *device) G_GNUC_WARN_UNUSED_RESULT;

/* Bytes of a configuration descriptor's header that give its total length. */
#define GW_DEVICE_CONFIG_HEADER_LEN 4

/* The text of a string descriptor as the device sent it (@len bytes, not
 * trusted): UTF-16LE within bLength, each unit that is not printable ASCII
 * as '?'. NULL if it is not a string descriptor. Pure. */
gchar *gw_device_parse_string_descriptor(const guint8 *desc, gsize len) G_GNUC_WARN_UNUSED_RESULT;
/* wTotalLength of a configuration descriptor's first @len bytes; 0 if they
 * are not one or it is shorter than the descriptor's own bLength. Pure. */
guint gw_device_config_total_length(const guint8 *header, gsize len);

/* "1-1.4" from bus number and port numbers. */
gchar *gw_device_port_path(libusb_device *device) G_GNUC_WARN_UNUSED_RESULT;

G_END_DECLS
