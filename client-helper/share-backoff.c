/* share-backoff: when usbgw-share may try the next connection. */
#include "share-backoff.h"

void
share_backoff_init(ShareBackoff *backoff, guint min_s)
{
    backoff->min_s = MAX(min_s, 1);
    backoff->current_s = backoff->min_s;
}

guint
share_backoff_next(ShareBackoff *backoff, gint64 connected_for_s)
{
    guint ceiling = MAX(backoff->min_s, SHARE_MAX_INTERVAL_S);
    guint delay;

    if (connected_for_s >= SHARE_STABLE_CONNECTION_S)
        backoff->current_s = backoff->min_s;
    delay = backoff->current_s;
    if (backoff->current_s > ceiling / SHARE_BACKOFF_FACTOR)
        backoff->current_s = ceiling;
    else
        backoff->current_s *= SHARE_BACKOFF_FACTOR;
    return delay;
}
