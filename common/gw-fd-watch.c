/* GwFdWatch: one GSource on one fd, its condition changed in place. */
#include "gw-fd-watch.h"

struct _GwFdWatch {
    GSource source; /* first: the GSource allocation is the watch */
    /* Polled through g_source_add_poll() while the condition is not 0. The
     * context reads pollfd.events at each poll, so a new non-zero condition
     * is written there and applies from the next poll without waking the
     * context (g_source_modify_unix_fd() wakes it on every call: with
     * spice-server switching its sockets' masks around each write, that
     * was an eventfd write and one more poll() per message). */
    GPollFD pollfd;
    gboolean polled; /* pollfd is in the source's poll set */
    GIOCondition condition;
    GwFdWatchFunc func;
    GwFdWatchPrepareFunc prepare; /* nullable */
    gpointer user_data;
    gboolean ready; /* prepare asked for a dispatch */
};

static gboolean
gw_fd_watch_source_prepare(GSource *source, gint *timeout)
{
    GwFdWatch *watch = (GwFdWatch *)source;

    *timeout = -1;
    watch->ready = watch->prepare != NULL && watch->prepare(watch->user_data);
    return watch->ready;
}

static GIOCondition
gw_fd_watch_revents(GwFdWatch *watch)
{
    return watch->polled ? (GIOCondition)watch->pollfd.revents & watch->condition : 0;
}

static gboolean
gw_fd_watch_source_check(GSource *source)
{
    GwFdWatch *watch = (GwFdWatch *)source;

    return watch->ready || gw_fd_watch_revents(watch) != 0;
}

static gboolean
gw_fd_watch_source_dispatch(GSource *source, GSourceFunc callback, gpointer user_data)
{
    GwFdWatch *watch = (GwFdWatch *)source;
    GIOCondition revents = gw_fd_watch_revents(watch);
    gboolean ready = watch->ready;

    watch->ready = FALSE;
    /* the callback may free the watch: nothing of it is touched after */
    if (revents != 0 || ready)
        watch->func(watch->pollfd.fd, revents, watch->user_data);
    return G_SOURCE_CONTINUE;
}

static GSourceFuncs gw_fd_watch_source_funcs = {
    .prepare = gw_fd_watch_source_prepare,
    .check = gw_fd_watch_source_check,
    .dispatch = gw_fd_watch_source_dispatch,
};

GwFdWatch *
gw_fd_watch_new(GMainContext *context, const gchar *name, int fd, GIOCondition condition,
                GwFdWatchFunc func, gpointer user_data)
{
    GSource *source = g_source_new(&gw_fd_watch_source_funcs, sizeof(GwFdWatch));
    GwFdWatch *watch = (GwFdWatch *)source;

    watch->pollfd.fd = fd;
    watch->func = func;
    watch->user_data = user_data;
    gw_fd_watch_set_condition(watch, condition);
    g_source_set_name(source, name);
    /* GLib takes a source that may not recurse out of the poll set for its
     * dispatch and puts it back after, and each of those two steps wakes the
     * context: two eventfd writes and one more poll() per dispatch. A watch
     * is never dispatched recursively (no nested main loop runs its
     * context from a watch's callback), so it need not be blocked. */
    g_source_set_can_recurse(source, TRUE);
    g_source_attach(source, context);
    return watch;
}

void
gw_fd_watch_set_prepare(GwFdWatch *watch, GwFdWatchPrepareFunc prepare)
{
    watch->prepare = prepare;
}

void
gw_fd_watch_set_condition(GwFdWatch *watch, GIOCondition condition)
{
    if (condition == watch->condition)
        return;
    watch->condition = condition;
    watch->pollfd.events = (gushort)condition;
    /* adding or removing the fd wakes the context; a change between
     * non-zero conditions only takes effect at the next poll */
    if (condition == 0 && watch->polled) {
        g_source_remove_poll(&watch->source, &watch->pollfd);
        watch->polled = FALSE;
    } else if (condition != 0 && !watch->polled) {
        g_source_add_poll(&watch->source, &watch->pollfd);
        watch->polled = TRUE;
    }
}

GIOCondition
gw_fd_watch_get_condition(GwFdWatch *watch)
{
    return watch->condition;
}

void
gw_fd_watch_free(GwFdWatch *watch)
{
    if (watch == NULL)
        return;
    g_source_destroy(&watch->source);
    g_source_unref(&watch->source);
}
