/* sw-core: spice-server's SpiceCoreInterface on a GLib main context, and
 * the fd watch the worker's socketpair uses too.
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

/* A watch on one fd whose condition can change without re-creating it. */
typedef struct SwFdWatch SwFdWatch;
typedef void (*SwFdWatchFunc)(int fd, GIOCondition revents, gpointer user_data);

SwFdWatch *sw_fd_watch_new(GMainContext *context, int fd, GIOCondition condition,
                           SwFdWatchFunc func, gpointer user_data);
/* Only events in `condition` reach the callback; 0 stops watching. */
void sw_fd_watch_set_condition(SwFdWatch *watch, GIOCondition condition);
/* Safe to call from the watch's own callback. */
void sw_fd_watch_free(SwFdWatch *watch);

G_DEFINE_AUTOPTR_CLEANUP_FUNC(SwFdWatch, sw_fd_watch_free)
