/* sw-core: spice-server's SpiceCoreInterface on a GLib main context (its
 * fd watches are GwFdWatches, common/gw-fd-watch.h, as the worker's
 * socketpair's are).
 *
 * Threading: everything runs on the thread that iterates the context
 * passed to sw_core_get(). spice-server calls the core from that thread
 * only as long as no QXL (display) instance is added, which the worker
 * never does. */
#pragma once

#include <glib.h>
#include <spice.h>

/* The core to pass to spice_server_init(). spice-server keeps the pointer,
 * so it is static; `context` (NULL = the default context) is where timers
 * and watches are attached. Call once. */
SpiceCoreInterface *sw_core_get(GMainContext *context);

/* spice-server's channel events (SPICE_CHANNEL_EVENT_*): CONNECTED when a
 * connection is accepted (info has the peer's address, no channel yet),
 * INITIALIZED once its link is done (ticket accepted; info has the
 * channel type and connection_id), DISCONNECTED when it closes, linked or
 * not. @info stays the same pointer for one connection and is freed
 * after DISCONNECTED. */
typedef void (*SwCoreChannelEventFunc)(int event, SpiceChannelEventInfo *info, gpointer user_data);
/* Where the events go (besides a debug line); call before spice_server_init(). */
void sw_core_set_channel_event_func(SwCoreChannelEventFunc func, gpointer user_data);

/* Between sw_core_hold_watches() and sw_core_release_watches(), the
 * watches spice-server changes keep what they had with the context's
 * poller and take their last mask at the release (one epoll_ctl() at most
 * per watch, none when the mask comes back to what it was). For calls
 * into spice-server that run to completion without a poll in between,
 * such as spice_server_char_device_wakeup(): spice-server marks a
 * client's socket writable for the message it sends there and unmarks it
 * once the message is out, two system calls for nothing. No poll runs in
 * between, so no callback sees a held mask. Not nested. */
void sw_core_hold_watches(void);
void sw_core_release_watches(void);
