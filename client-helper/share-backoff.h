/* share-backoff: when usbgw-share may try the next connection.
 *
 * Pure arithmetic, no clock: the caller passes how long the lost
 * connection lasted. The delay is counted from the moment the connection
 * was lost or the attempt failed, so two connection attempts are never
 * closer than the minimum interval. */
#pragma once

#include <glib.h>

/* CodeMeter (and some other) keys lock themselves out after rapid
 * re-enumeration, which every reconnect causes on the VM side: never try
 * more often than this by default. */
#define SHARE_DEFAULT_MIN_INTERVAL_S 30
/* The delay doubles after each short-lived attempt up to this ceiling. */
#define SHARE_MAX_INTERVAL_S 600
#define SHARE_BACKOFF_FACTOR 2
/* A connection that lasted this long counts as healthy: the next delay
 * starts over at the minimum. */
#define SHARE_STABLE_CONNECTION_S 300

typedef struct {
    guint min_s;     /* >= 1 */
    guint current_s; /* the next delay */
} ShareBackoff;

void share_backoff_init(ShareBackoff *backoff, guint min_s);
/* The delay in seconds before the next attempt, given how long the last
 * connection was up (0 if it never came up). */
guint share_backoff_next(ShareBackoff *backoff, gint64 connected_for_s);
