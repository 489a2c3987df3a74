/* What the tests of GwLink look at inside a link (not for the daemon).
 * Threading and ownership as gw-link.h. */
#pragma once

#include "gw-link.h"

G_BEGIN_DECLS

/* The largest number of bytes any one stream of @link holds now: *@max_tx
 * read from a local socket and not yet acknowledged by the peer (the
 * retransmit buffer), *@max_rx received and not yet written to the local
 * socket. Both are bounded by GW_LINK_WINDOW. */
void gw_link_debug_buffered(GwLink *link, gsize *max_tx, gsize *max_rx);

G_END_DECLS
