/* `usbgwctl pools`: the pools as usbgwd's device list shows them. A device
 * the policy gives to a pool carries `"target": "pool \"NAME\""` in `list`
 * (docs/control.md); its `vm` is the VM holding its lease, or null while
 * it is free. A key assigned by hand (usbgwctl assign) has left its pool.
 *
 * Threading: plain functions on the caller's thread; results are owned by
 * the caller. */
#pragma once

#include <json-glib/json-glib.h>

G_BEGIN_DECLS

/* {"pools": [{"name", "keys", "used", "free", "devices": [{"id", "vm",
 * "state"}…]}…]}, sorted by pool name, each pool's devices by id. Devices
 * that are in no pool, or that are not objects, are left out; @devices may
 * be NULL. */
JsonObject *usbgwctl_pools_from_devices(JsonArray *devices) G_GNUC_WARN_UNUSED_RESULT;
/* The table: POOL KEYS FREE USED HOLDERS. */
void usbgwctl_pools_print(JsonObject *pools);

G_END_DECLS
