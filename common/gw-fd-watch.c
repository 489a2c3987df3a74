/* GwFdWatch: one GSource on one fd, its condition changed in place. */
#include "gw-fd-watch.h"

struct _GwFdWatch {
    GSource source; /* first: the GSource allocation is the watch */
    gpointer tag;   /* from g_source_add_unix_fd(), NULL while condition is 0 */
    GIOCondition condition;
    int fd; /* not owned */
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

static gboolean
gw_fd_watch_source_dispatch(GSource *source, GSourceFunc callback, gpointer user_data)
{
    GwFdWatch *watch = (GwFdWatch *)source;
    GIOCondition revents = 0;
    gboolean ready = watch->ready;

    watch->ready = FALSE;
    if (watch->tag != NULL)
        revents = g_source_query_unix_fd(source, watch->tag) & watch->condition;
    /* the callback may free the watch: nothing of it is touched after */
    if (revents != 0 || ready)
        watch->func(watch->fd, revents, watch->user_data);
    return G_SOURCE_CONTINUE;
}

static GSourceFuncs gw_fd_watch_source_funcs = {
    .prepare = gw_fd_watch_source_prepare,
    .dispatch = gw_fd_watch_source_dispatch,
};

GwFdWatch *
gw_fd_watch_new(GMainContext *context, const gchar *name, int fd, GIOCondition condition,
                GwFdWatchFunc func, gpointer user_data)
{
    GSource *source = g_source_new(&gw_fd_watch_source_funcs, sizeof(GwFdWatch));
    GwFdWatch *watch = (GwFdWatch *)source;

    watch->fd = fd;
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
    /* g_source_modify_unix_fd() wakes the context: only on a change
     * (the tag is NULL exactly while the condition is 0) */
    if (condition == watch->condition)
        return;
    watch->condition = condition;
    if (condition == 0 && watch->tag != NULL) {
        g_source_remove_unix_fd(&watch->source, watch->tag);
        watch->tag = NULL;
    } else if (condition != 0 && watch->tag == NULL) {
        watch->tag = g_source_add_unix_fd(&watch->source, watch->fd, condition);
    } else if (condition != 0) {
        g_source_modify_unix_fd(&watch->source, watch->tag, condition);
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
