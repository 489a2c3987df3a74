/* The usbfs node (/dev/bus/usb/BBB/DDD) of one plugged SimKey, emulated as
 * a umockdev ioctl handler: libusb in any process of the testbed talks to
 * it as it would to the kernel.
 *
 * Threads: umockdev runs the ioctl handler in its testbed worker thread;
 * sim_usbfs_disconnect() is for the main thread. The object locks its own
 * state. umockdev keeps a reference for every client that has the node open,
 * so the object outlives the unplug until the last client closes it. */
#pragma once

#include <umockdev.h>

#include "sim-key.h"

#define SIM_TYPE_USBFS (sim_usbfs_get_type())
G_DECLARE_FINAL_TYPE(SimUsbfs, sim_usbfs, SIM, USBFS, UMockdevIoctlBase)

/* Takes ownership of @key. */
SimUsbfs *sim_usbfs_new(SimKey *key, guint devnum);

/* The device was unplugged: URBs in flight complete with -ENODEV, reaping
 * drains what completed and then fails with ENODEV, every other ioctl fails
 * with ENODEV. */
void sim_usbfs_disconnect(SimUsbfs *self);
