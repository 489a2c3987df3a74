/* GwStateStore: usbgwd's persistent state (/var/lib/usbgw/state.json) —
 * what cannot be derived from the policy, the inventory and libvirt:
 * admins' assignments and releases, pool and glob leases, and shares (with
 * their tickets: the file is mode 0600). Nobody else sees the JSON schema.
 *
 * Changes are collected in memory (a setter marks the store dirty; callers
 * set only what changed) and written by gw_state_store_flush(), once per
 * event however many changes it made: write, fsync, rename, so a
 * kill -9 at any moment leaves the previous or the new state, never a mix.
 *
 * Threading: main thread only. */
#pragma once

#include <glib.h>

G_BEGIN_DECLS

/* Schema version written to and required from the file. */
#define GW_STATE_VERSION 1

typedef struct _GwStateStore GwStateStore;

/* A saved share as the file holds it; the reader checks it (a hand-edited
 * or damaged entry has NULL strings or out-of-range numbers). */
typedef struct {
    gchar *vm;      /* owned */
    gchar *user;    /* owned, nullable */
    gchar *ticket;  /* owned, nullable */
    gint64 port;    /* 0 when missing */
    gint64 expires; /* unix seconds; 0: used (lasts while the share does); -1 when missing */
    gint64 ends;    /* unix seconds a used share ends (share-max-life); 0 unused or missing */
} GwStateShare;

void gw_state_share_free(GwStateShare *share);
G_DEFINE_AUTOPTR_CLEANUP_FUNC(GwStateShare, gw_state_share_free)

/* Reads @path; a missing file gives an empty state. A file that is not
 * valid state (not a JSON object, "version" not the integer
 * GW_STATE_VERSION) is moved aside to PATH.corrupt-TIME with a warning and
 * an empty state used: the daemon must start. In a valid file, a section
 * that is not an object and a map entry that is not a VM name are skipped,
 * each with a warning naming the file; everything else is loaded. */
GwStateStore *gw_state_store_open(const gchar *path) G_GNUC_WARN_UNUSED_RESULT;
void gw_state_store_free(GwStateStore *store);
G_DEFINE_AUTOPTR_CLEANUP_FUNC(GwStateStore, gw_state_store_free)

/* Device identity → VM name (released: identity → NULL). The returned
 * tables are borrowed; the setters copy. */
GHashTable *gw_state_store_get_assignments(GwStateStore *store);
GHashTable *gw_state_store_get_released(GwStateStore *store);
GHashTable *gw_state_store_get_leases(GwStateStore *store);
void gw_state_store_set_assignments(GwStateStore *store, GHashTable *assignments);
void gw_state_store_set_released(GwStateStore *store, GHashTable *released);
void gw_state_store_set_leases(GwStateStore *store, GHashTable *leases);

/* The saved shares, in VM-name order (GwStateShare, borrowed). */
GPtrArray *gw_state_store_get_shares(GwStateStore *store);
/* Replaces the saved shares (GwStateShare; copied). */
void gw_state_store_set_shares(GwStateStore *store, GPtrArray *shares);

/* Writes the state if anything changed since the last write. */
gboolean gw_state_store_flush(GwStateStore *store, GError **error) G_GNUC_WARN_UNUSED_RESULT;

G_END_DECLS
