/* GwFdWatch: one GSource on one fd whose condition can change without
 * re-creating the source (as libvirt's virEventGLibHandleAdd/Update). The
 * one place that knows how usbgw's sockets sit in a GLib main context:
 * usbredirhost sessions (gw-session.c), the validating proxy (one watch
 * per side, gw-proxy.c), usbgwd's end of a SPICE worker and its channel
 * sockets (gw-spice.c), and the worker's socketpair and spice-server's
 * watches (spice/sw-link.c, spice/sw-core.c).
 *
 * Condition. The callback gets what poll() reported for the fd, within the
 * watch's condition: HUP and ERR reach it only when the condition names
 * them (poll() reports them whatever is asked; a watch that should see a
 * hang-up while it neither reads nor writes watches G_IO_HUP | G_IO_ERR).
 * Condition 0 takes the fd out of the poll set altogether: poll() would
 * report HUP and ERR even for no events, and the source would then be
 * dispatched on every iteration, starving every lower-priority source.
 * Setting the condition it has already costs nothing, and a change from
 * one non-zero condition to another costs no wake-up either: it applies
 * from the context's next poll (which is why only the context's own
 * thread may change it). Only a change to or from 0 wakes the context. A
 * prepare function may set the condition on every iteration.
 *
 * Dispatch. The watch stays in the poll set while its callback runs (a
 * GSource that may recurse): GLib would otherwise take its fd out and put
 * it back around each dispatch, waking the context twice. So no nested
 * main loop may run the watch's context from inside its callback.
 *
 * Prepare. Optional: a function the watch calls before each poll of its
 * context, for a condition that depends on state changed where the owner
 * cannot set the condition (another thread, which then wakes the context
 * with g_main_context_wakeup()). It may set the condition; returning TRUE
 * dispatches the watch at once, with revents 0.
 *
 * Ownership: the watch does not own the fd (close it after freeing the
 * watch, or while the condition is 0). Threading: create, change and free
 * a watch on the thread that runs its context; the callbacks run there. */
#pragma once

#include <glib.h>

G_BEGIN_DECLS

typedef struct _GwFdWatch GwFdWatch;

/* @revents: what poll() reported, within the condition; 0 when the
 * prepare function asked for the call. */
typedef void (*GwFdWatchFunc)(int fd, GIOCondition revents, gpointer user_data);
/* Before each poll; TRUE: dispatch now. */
typedef gboolean (*GwFdWatchPrepareFunc)(gpointer user_data);

/* Attaches a watch on @fd to @context (NULL: the default context). @name
 * names its GSource (g_source_set_name). */
GwFdWatch *gw_fd_watch_new(GMainContext *context, const gchar *name, int fd, GIOCondition condition,
                           GwFdWatchFunc func, gpointer user_data) G_GNUC_WARN_UNUSED_RESULT;
/* Sets (or with NULL clears) the prepare function; it gets the watch's
 * user_data. */
void gw_fd_watch_set_prepare(GwFdWatch *watch, GwFdWatchPrepareFunc prepare);
/* What the fd is watched for from the next poll on; 0 stops watching. */
void gw_fd_watch_set_condition(GwFdWatch *watch, GIOCondition condition);
GIOCondition gw_fd_watch_get_condition(GwFdWatch *watch);
/* Detaches and frees the watch; safe from its own callback. */
void gw_fd_watch_free(GwFdWatch *watch);

G_DEFINE_AUTOPTR_CLEANUP_FUNC(GwFdWatch, gw_fd_watch_free)

G_END_DECLS
