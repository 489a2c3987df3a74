/* usbgwd's persistent state (/var/lib/usbgw/state.json): what cannot be
 * derived from the policy and the inventory — manual assignments, pool
 * leases and shares (with their tickets: the file is mode 0600). Written atomically (write, fsync,
 * rename) on every change, so a kill -9 at any moment leaves the previous or the new state, never a
 * mix. */
#pragma once

#include <json-glib/json-glib.h>

G_BEGIN_DECLS

/* Schema version written to and required from the file. */
#define GW_STATE_VERSION 1

/* Reads the state; a missing file gives an empty object. A file that is
 * not valid state is moved aside to PATH.corrupt-TIME with a warning and
 * an empty state returned: the daemon must start. */
JsonObject *gw_state_load(const gchar *path) G_GNUC_WARN_UNUSED_RESULT;
gboolean gw_state_save(const gchar *path, JsonObject *state,
                       GError **error) G_GNUC_WARN_UNUSED_RESULT;

G_END_DECLS
