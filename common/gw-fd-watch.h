/* GwFdWatch: a watch on one fd whose condition can change without
 * re-creating anything (as libvirt's virEventGLibHandleAdd/Update). The
 * one place that knows how usbgw's sockets sit in a GLib main context:
 * usbredirhost sessions (gw-session.c), the validating proxy (one watch
 * per side, gw-proxy.c), usbgwd's end of a SPICE worker and its channel
 * sockets (gw-spice.c), and the worker's socketpair and spice-server's
 * watches (spice/sw-link.c, spice/sw-core.c).
 *
 * Cost. The watches of a context share one GSource, created with the
 * first watch and destroyed with the last, which polls one epoll fd
 * (level-triggered, so it reports what poll() would): a main-loop
 * iteration costs one fd in the context's poll() and the callbacks of the
 * watches that are ready, whatever the number of watches. Only prepare
 * functions are called on every iteration (see Prepare).
 *
 * Condition. The callback gets what poll() reported for the fd, within the
 * watch's condition: HUP and ERR reach it only when the condition names
 * them (poll() reports them whatever is asked; a watch that should see a
 * hang-up while it neither reads nor writes watches G_IO_HUP | G_IO_ERR).
 * Condition 0 takes the fd out of the epoll set altogether: epoll would
 * report HUP and ERR even for no events, and the watch would then be
 * dispatched on every iteration, starving every lower-priority source.
 * Setting the condition it has already costs nothing; a change is one
 * epoll_ctl() and no wake-up: it applies from the context's next poll
 * (also for the callbacks still to run in the current dispatch, which see
 * only what the condition they have then names). Only the context's own
 * thread may change it.
 *
 * Dispatch. The watch stays in the epoll set while its callback runs (the
 * shared GSource may recurse): GLib would otherwise take the epoll fd out
 * and put it back around each dispatch, waking the context twice. So no
 * nested main loop may run the watch's context from inside its callback.
 * A callback may free any watch of the context, its own too: a freed
 * watch gets no call from the rest of the dispatch.
 *
 * Prepare. Optional: a function the watch calls before each poll of its
 * context, for a condition that depends on state changed where the owner
 * cannot set the condition (another thread, which then wakes the context
 * with g_main_context_wakeup()). It may set the condition; returning TRUE
 * dispatches the watch at once, with revents 0. Every iteration calls
 * every prepare function of the context, so a watch should have one only
 * while it needs it (set and clear it as the state changes). A prepare
 * function may set its watch's condition, nothing else of any watch.
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
 * names the watch in warnings (an fd epoll cannot watch). */
GwFdWatch *gw_fd_watch_new(GMainContext *context, const gchar *name, int fd, GIOCondition condition,
                           GwFdWatchFunc func, gpointer user_data) G_GNUC_WARN_UNUSED_RESULT;
/* Sets (or with NULL clears) the prepare function; it gets the watch's
 * user_data. */
void gw_fd_watch_set_prepare(GwFdWatch *watch, GwFdWatchPrepareFunc prepare);
/* What the fd is watched for from the next poll on; 0 stops watching. */
void gw_fd_watch_set_condition(GwFdWatch *watch, GIOCondition condition);
GIOCondition gw_fd_watch_get_condition(GwFdWatch *watch);
/* Inside a dispatch of the watch's context (from any watch's callback):
 * calls the watch's callback once with revents 0 after the callbacks of
 * that dispatch (those of every watch epoll reported ready in it) and
 * returns TRUE; several calls make one call. Outside a dispatch it does
 * nothing and returns FALSE: the caller does the work now. For work that
 * is cheaper done once per wake-up than once per callback: a link writes
 * the frames every ready session queued as one TLS record. */
gboolean gw_fd_watch_call_after_dispatch(GwFdWatch *watch);
/* Detaches and frees the watch; safe from its own callback. */
void gw_fd_watch_free(GwFdWatch *watch);

G_DEFINE_AUTOPTR_CLEANUP_FUNC(GwFdWatch, gw_fd_watch_free)

G_END_DECLS
