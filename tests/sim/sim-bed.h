/* The umockdev testbed with the simulated USB bus: a root hub (usb1), an
 * external hub on port 3 (so that "1-3.1" is a real port path), and one slot
 * per key model, each plugged in or not.
 *
 * Main thread only. Creating the bed sets UMOCKDEV_DIR in the environment:
 * children spawned afterwards under the umockdev preload see its devices. */
#pragma once

#include <glib.h>

typedef struct _SimBed SimBed;

SimBed *sim_bed_new(GError **error) G_GNUC_WARN_UNUSED_RESULT;
void sim_bed_free(SimBed *self);
G_DEFINE_AUTOPTR_CLEANUP_FUNC(SimBed, sim_bed_free)

/* @hex: 32 hex digits. Takes effect at the key's next plug. */
gboolean sim_bed_set_secret(SimBed *self, const char *name, const char *hex,
                            GError **error) G_GNUC_WARN_UNUSED_RESULT;
char *sim_bed_get_secret(SimBed *self, const char *name, GError **error) G_GNUC_WARN_UNUSED_RESULT;

/* Adds the device (attributes, node, ioctl handler) and sends "add". */
gboolean sim_bed_plug(SimBed *self, const char *name, GError **error) G_GNUC_WARN_UNUSED_RESULT;
/* Sends "remove", fails the key's URBs in flight and removes the device. */
gboolean sim_bed_unplug(SimBed *self, const char *name, GError **error) G_GNUC_WARN_UNUSED_RESULT;

/* One line per key: NAME STATE VID:PID DEVPATH BUS/DEV SECRET
 * (BUS/DEV is "-" while unplugged). */
void sim_bed_list(SimBed *self, GString *out);
