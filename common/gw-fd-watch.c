/* GwFdWatch: the watches of a context share one GSource polling one epoll
 * fd, so an iteration of the context costs poll() on one fd and a walk of
 * the watches that are ready, whatever the number of watches. */
#include "gw-fd-watch.h"

#include <errno.h>
#include <fcntl.h>
#include <sys/epoll.h>
#include <unistd.h>

/* Events taken from the epoll fd per dispatch; more stay ready
 * (level-triggered) and come at the next iteration. */
#define GW_FD_WATCH_BATCH 256

typedef struct _GwFdWatchLoop GwFdWatchLoop;

struct _GwFdWatch {
    GwFdWatchLoop *loop;
    gchar *name;
    int fd;         /* the owner's */
    int epoll_fd;   /* what is in the epoll set: fd, or a dup of it when
                     * another watch of the context has fd already */
    gboolean added; /* epoll_fd is in the epoll set */
    GIOCondition condition;
    GwFdWatchFunc func;
    GwFdWatchPrepareFunc prepare; /* nullable */
    gpointer user_data;
    GList prepare_link; /* in loop->prepared while prepare is set */
    gboolean ready;     /* prepare asked for a dispatch */
    gboolean freed;     /* freed during a dispatch, released after it */
};

/* The shared source of one context: its one GPollFD is the epoll fd. */
struct _GwFdWatchLoop {
    GSource source; /* first: the GSource allocation is the loop */
    GMainContext *context;
    int epfd;
    GPollFD pollfd;
    guint watches;     /* not freed */
    GQueue prepared;   /* GwFdWatch with a prepare function */
    GPtrArray *ready;  /* GwFdWatch whose prepare returned TRUE, or called after */
    GPtrArray *spare;  /* the other ready array, swapped in by each dispatch */
    guint dispatching; /* depth of dispatch */
    GPtrArray *freed;  /* GwFdWatch freed while dispatching */
};

/* Each context's loop; the loops themselves are used by their context's
 * thread alone. */
static GMutex gw_fd_watch_loops_lock;
static GHashTable *gw_fd_watch_loops; /* GMainContext* -> GwFdWatchLoop* */

/* GIOCondition bits and their epoll events. HUP and ERR are reported
 * whatever is asked, as by poll(). */
static const struct {
    GIOCondition condition;
    guint32 events;
} gw_fd_watch_events[] = {
    {G_IO_IN, EPOLLIN},   {G_IO_OUT, EPOLLOUT}, {G_IO_PRI, EPOLLPRI},
    {G_IO_HUP, EPOLLHUP}, {G_IO_ERR, EPOLLERR},
};

static guint32
gw_fd_watch_to_epoll(GIOCondition condition)
{
    guint32 events = 0;

    for (gsize i = 0; i < G_N_ELEMENTS(gw_fd_watch_events); i++) {
        if (condition & gw_fd_watch_events[i].condition)
            events |= gw_fd_watch_events[i].events;
    }
    return events & ~(guint32)(EPOLLHUP | EPOLLERR);
}

static GIOCondition
gw_fd_watch_from_epoll(guint32 events)
{
    GIOCondition condition = 0;

    for (gsize i = 0; i < G_N_ELEMENTS(gw_fd_watch_events); i++) {
        if (events & gw_fd_watch_events[i].events)
            condition |= gw_fd_watch_events[i].condition;
    }
    return condition;
}

static void
gw_fd_watch_release(GwFdWatch *watch)
{
    if (watch->epoll_fd != watch->fd)
        close(watch->epoll_fd);
    g_source_unref(&watch->loop->source);
    g_free(watch->name);
    g_free(watch);
}

static gboolean
gw_fd_watch_loop_prepare(GSource *source, gint *timeout)
{
    GwFdWatchLoop *loop = (GwFdWatchLoop *)source;

    *timeout = -1;
    for (GList *l = loop->prepared.head, *next; l != NULL; l = next) {
        GwFdWatch *watch = l->data;

        next = l->next;
        if (!watch->ready && watch->prepare(watch->user_data)) {
            watch->ready = TRUE;
            g_ptr_array_add(loop->ready, watch);
        }
    }
    return loop->ready->len > 0;
}

static gboolean
gw_fd_watch_loop_check(GSource *source)
{
    GwFdWatchLoop *loop = (GwFdWatchLoop *)source;

    return loop->ready->len > 0 || (loop->pollfd.revents & G_IO_IN);
}

/* Calls @watch's callback with what epoll reported (@events, within the
 * condition it has now) or because its prepare function asked. */
static void
gw_fd_watch_run(GwFdWatch *watch, GIOCondition events)
{
    GIOCondition revents = events & watch->condition;
    gboolean ready = watch->ready;

    if (watch->freed)
        return;
    watch->ready = FALSE;
    if (revents != 0 || ready)
        watch->func(watch->fd, revents, watch->user_data);
}

static void gw_fd_watch_loop_destroy(GwFdWatchLoop *loop);

static gboolean
gw_fd_watch_loop_dispatch(GSource *source, GSourceFunc callback, gpointer user_data)
{
    GwFdWatchLoop *loop = (GwFdWatchLoop *)source;
    struct epoll_event events[GW_FD_WATCH_BATCH];
    GPtrArray *ready = loop->ready;
    int n = 0;

    /* watches freed by a callback stay allocated (marked) until every
     * callback of the batch ran; a nested dispatch finds no spare array */
    loop->dispatching++;
    loop->ready = loop->spare != NULL ? loop->spare : g_ptr_array_new();
    loop->spare = NULL;
    if (loop->pollfd.revents & G_IO_IN) {
        n = epoll_wait(loop->epfd, events, GW_FD_WATCH_BATCH, 0);
        if (n < 0 && errno != EINTR)
            g_warning("epoll_wait: %s", g_strerror(errno));
    }
    for (int i = 0; i < n; i++)
        gw_fd_watch_run(events[i].data.ptr, gw_fd_watch_from_epoll(events[i].events));
    /* those whose prepare asked and epoll did not report, then those the
     * callbacks asked to run after them (which may ask again: one more
     * round) */
    for (;;) {
        GPtrArray *next;

        for (guint i = 0; i < ready->len; i++)
            gw_fd_watch_run(ready->pdata[i], 0);
        g_ptr_array_set_size(ready, 0);
        if (loop->dispatching > 1 || loop->ready->len == 0)
            break;
        next = loop->ready;
        loop->ready = ready;
        ready = next;
    }
    if (loop->spare == NULL)
        loop->spare = ready;
    else
        g_ptr_array_unref(ready);
    if (--loop->dispatching == 0) {
        for (guint i = 0; i < loop->freed->len; i++)
            gw_fd_watch_release(loop->freed->pdata[i]);
        g_ptr_array_set_size(loop->freed, 0);
        if (loop->watches == 0)
            gw_fd_watch_loop_destroy(loop);
    }
    return G_SOURCE_CONTINUE;
}

static void
gw_fd_watch_loop_finalize(GSource *source)
{
    GwFdWatchLoop *loop = (GwFdWatchLoop *)source;

    g_mutex_lock(&gw_fd_watch_loops_lock);
    if (gw_fd_watch_loops != NULL && g_hash_table_lookup(gw_fd_watch_loops, loop->context) == loop)
        g_hash_table_remove(gw_fd_watch_loops, loop->context);
    g_mutex_unlock(&gw_fd_watch_loops_lock);
    close(loop->epfd);
    g_ptr_array_unref(loop->ready);
    g_clear_pointer(&loop->spare, g_ptr_array_unref);
    g_ptr_array_unref(loop->freed);
}

static GSourceFuncs gw_fd_watch_loop_funcs = {
    .prepare = gw_fd_watch_loop_prepare,
    .check = gw_fd_watch_loop_check,
    .dispatch = gw_fd_watch_loop_dispatch,
    .finalize = gw_fd_watch_loop_finalize,
};

/* Takes the loop out of the table (a watch created after gets a new one)
 * and destroys its source. */
static void
gw_fd_watch_loop_destroy(GwFdWatchLoop *loop)
{
    g_mutex_lock(&gw_fd_watch_loops_lock);
    if (g_hash_table_lookup(gw_fd_watch_loops, loop->context) == loop)
        g_hash_table_remove(gw_fd_watch_loops, loop->context);
    g_mutex_unlock(&gw_fd_watch_loops_lock);
    g_source_destroy(&loop->source);
    g_source_unref(&loop->source);
}

/* The loop of @context, created on first use. */
static GwFdWatchLoop *
gw_fd_watch_loop_get(GMainContext *context)
{
    GwFdWatchLoop *loop;
    int epfd;

    if (context == NULL)
        context = g_main_context_default();
    g_mutex_lock(&gw_fd_watch_loops_lock);
    if (gw_fd_watch_loops == NULL)
        gw_fd_watch_loops = g_hash_table_new(NULL, NULL);
    loop = g_hash_table_lookup(gw_fd_watch_loops, context);
    g_mutex_unlock(&gw_fd_watch_loops_lock);
    /* a destroyed one belonged to a context freed before its watches,
     * whose address this one has now */
    if (loop != NULL && !g_source_is_destroyed(&loop->source))
        return loop;

    epfd = epoll_create1(EPOLL_CLOEXEC);
    if (epfd < 0)
        g_error("epoll_create1: %s", g_strerror(errno));
    loop = (GwFdWatchLoop *)g_source_new(&gw_fd_watch_loop_funcs, sizeof(GwFdWatchLoop));
    loop->context = context;
    loop->epfd = epfd;
    loop->pollfd.fd = epfd;
    loop->pollfd.events = G_IO_IN;
    loop->ready = g_ptr_array_new();
    loop->spare = g_ptr_array_new();
    loop->freed = g_ptr_array_new();
    g_source_set_name(&loop->source, "usbgw-fd-watch");
    g_source_add_poll(&loop->source, &loop->pollfd);
    /* a callback that runs a nested main loop of another context is fine;
     * one of this context is not (see the header) but must not block the
     * epoll fd for every other watch */
    g_source_set_can_recurse(&loop->source, TRUE);
    g_source_attach(&loop->source, context);
    g_mutex_lock(&gw_fd_watch_loops_lock);
    g_hash_table_replace(gw_fd_watch_loops, context, loop);
    g_mutex_unlock(&gw_fd_watch_loops_lock);
    return loop;
}

GwFdWatch *
gw_fd_watch_new(GMainContext *context, const gchar *name, int fd, GIOCondition condition,
                GwFdWatchFunc func, gpointer user_data)
{
    GwFdWatch *watch = g_new0(GwFdWatch, 1);

    /* each watch holds a reference: the loop outlives a context freed
     * before the watches */
    watch->loop = gw_fd_watch_loop_get(context);
    g_source_ref(&watch->loop->source);
    watch->loop->watches++;
    watch->name = g_strdup(name);
    watch->fd = fd;
    watch->epoll_fd = fd;
    watch->func = func;
    watch->user_data = user_data;
    watch->prepare_link.data = watch;
    gw_fd_watch_set_condition(watch, condition);
    return watch;
}

void
gw_fd_watch_set_prepare(GwFdWatch *watch, GwFdWatchPrepareFunc prepare)
{
    GwFdWatchLoop *loop = watch->loop;

    if (prepare != NULL && watch->prepare == NULL)
        g_queue_push_tail_link(&loop->prepared, &watch->prepare_link);
    else if (prepare == NULL && watch->prepare != NULL)
        g_queue_unlink(&loop->prepared, &watch->prepare_link);
    watch->prepare = prepare;
}

/* Puts @watch's fd in the epoll set; an fd the set has already (a second
 * watch on it) goes in as a dup, which epoll tells apart. */
static void
gw_fd_watch_add(GwFdWatch *watch, struct epoll_event *event)
{
    int epfd = watch->loop->epfd;

    if (epoll_ctl(epfd, EPOLL_CTL_ADD, watch->epoll_fd, event) == 0) {
        watch->added = TRUE;
        return;
    }
    if (errno == EEXIST && watch->epoll_fd == watch->fd) {
        int copy = fcntl(watch->fd, F_DUPFD_CLOEXEC, 0);

        if (copy >= 0) {
            watch->epoll_fd = copy;
            if (epoll_ctl(epfd, EPOLL_CTL_ADD, copy, event) == 0) {
                watch->added = TRUE;
                return;
            }
        }
    }
    g_warning("%s: cannot watch fd %d: %s", watch->name, watch->fd, g_strerror(errno));
}

void
gw_fd_watch_set_condition(GwFdWatch *watch, GIOCondition condition)
{
    struct epoll_event event = {.data.ptr = watch};

    if (condition == watch->condition)
        return;
    watch->condition = condition;
    /* condition 0 takes the fd out: epoll would report HUP and ERR anyway */
    if (condition == 0) {
        if (watch->added && epoll_ctl(watch->loop->epfd, EPOLL_CTL_DEL, watch->epoll_fd, NULL) < 0)
            g_warning("%s: cannot unwatch fd %d: %s", watch->name, watch->fd, g_strerror(errno));
        watch->added = FALSE;
        return;
    }
    event.events = gw_fd_watch_to_epoll(condition);
    if (!watch->added)
        gw_fd_watch_add(watch, &event);
    else if (epoll_ctl(watch->loop->epfd, EPOLL_CTL_MOD, watch->epoll_fd, &event) < 0)
        g_warning("%s: cannot watch fd %d: %s", watch->name, watch->fd, g_strerror(errno));
}

GIOCondition
gw_fd_watch_get_condition(GwFdWatch *watch)
{
    return watch->condition;
}

gboolean
gw_fd_watch_call_after_dispatch(GwFdWatch *watch)
{
    if (watch->loop->dispatching == 0 || watch->freed)
        return FALSE;
    if (!watch->ready) {
        watch->ready = TRUE;
        g_ptr_array_add(watch->loop->ready, watch);
    }
    return TRUE;
}

void
gw_fd_watch_free(GwFdWatch *watch)
{
    GwFdWatchLoop *loop;

    if (watch == NULL)
        return;
    loop = watch->loop;
    gw_fd_watch_set_condition(watch, 0);
    gw_fd_watch_set_prepare(watch, NULL);
    if (watch->ready) {
        g_ptr_array_remove_fast(loop->ready, watch);
        watch->ready = FALSE;
    }
    loop->watches--;
    if (loop->dispatching > 0) {
        /* an event of this batch may still name it */
        watch->freed = TRUE;
        g_ptr_array_add(loop->freed, watch);
        return;
    }
    if (loop->watches == 0)
        gw_fd_watch_loop_destroy(loop);
    gw_fd_watch_release(watch);
}
