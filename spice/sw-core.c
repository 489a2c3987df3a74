/* sw-core: spice-server's SpiceCoreInterface on a GLib main context. */
#include "sw-core.h"

struct SwFdWatch {
    GSource source; /* first: the GSource allocation is the watch */
    gpointer tag;   /* from g_source_add_unix_fd(), NULL while condition is 0 */
    GIOCondition condition;
    SwFdWatchFunc func;
    gpointer user_data;
    int fd;
};

static gboolean
sw_fd_watch_dispatch(GSource *source, GSourceFunc callback, gpointer user_data)
{
    SwFdWatch *watch = (SwFdWatch *)source;
    GIOCondition revents;

    if (watch->tag == NULL)
        return G_SOURCE_CONTINUE;
    revents = g_source_query_unix_fd(source, watch->tag) & watch->condition;
    if (revents != 0)
        watch->func(watch->fd, revents, watch->user_data);
    return G_SOURCE_CONTINUE;
}

static GSourceFuncs sw_fd_watch_funcs = {
    .dispatch = sw_fd_watch_dispatch,
};

SwFdWatch *
sw_fd_watch_new(GMainContext *context, int fd, GIOCondition condition, SwFdWatchFunc func,
                gpointer user_data)
{
    GSource *source = g_source_new(&sw_fd_watch_funcs, sizeof(SwFdWatch));
    SwFdWatch *watch = (SwFdWatch *)source;

    watch->fd = fd;
    watch->func = func;
    watch->user_data = user_data;
    sw_fd_watch_set_condition(watch, condition);
    g_source_set_name(source, "usbgw-spice-worker fd");
    g_source_attach(source, context);
    return watch;
}

/* poll() reports HUP and ERR even for an fd polled with no events, and
 * GLib then dispatches the source on every iteration, starving every
 * lower-priority source: an fd with nothing to wait for is taken out of
 * the poll set instead. */
void
sw_fd_watch_set_condition(SwFdWatch *watch, GIOCondition condition)
{
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

void
sw_fd_watch_free(SwFdWatch *watch)
{
    if (watch == NULL)
        return;
    g_source_destroy(&watch->source);
    g_source_unref(&watch->source);
}

/* The core's one context; spice-server's callbacks carry no user data. */
static GMainContext *sw_core_context;

struct SpiceTimer {
    GSource *source; /* owned, nullable: armed */
    SpiceTimerFunc func;
    void *opaque;
};

struct SpiceWatch {
    SwFdWatch *fd_watch; /* owned */
    SpiceWatchFunc func;
    void *opaque;
};

static SpiceTimer *
sw_core_timer_add(SpiceTimerFunc func, void *opaque)
{
    SpiceTimer *timer = g_new0(SpiceTimer, 1);

    timer->func = func;
    timer->opaque = opaque;
    return timer;
}

static void
sw_core_timer_cancel(SpiceTimer *timer)
{
    if (timer->source == NULL)
        return;
    g_source_destroy(timer->source);
    g_clear_pointer(&timer->source, g_source_unref);
}

static gboolean
sw_core_timer_fired(gpointer user_data)
{
    SpiceTimer *timer = user_data;

    /* One-shot: disarm before calling, the callback may re-arm or free. */
    g_clear_pointer(&timer->source, g_source_unref);
    timer->func(timer->opaque);
    return G_SOURCE_REMOVE;
}

static void
sw_core_timer_start(SpiceTimer *timer, uint32_t ms)
{
    sw_core_timer_cancel(timer);
    timer->source = g_timeout_source_new(ms);
    g_source_set_callback(timer->source, sw_core_timer_fired, timer, NULL);
    g_source_set_name(timer->source, "spice-server timer");
    g_source_attach(timer->source, sw_core_context);
}

static void
sw_core_timer_remove(SpiceTimer *timer)
{
    sw_core_timer_cancel(timer);
    g_free(timer);
}

static GIOCondition
sw_core_mask_to_condition(int event_mask)
{
    GIOCondition condition = 0;

    if (event_mask & SPICE_WATCH_EVENT_READ)
        condition |= G_IO_IN | G_IO_HUP | G_IO_ERR;
    if (event_mask & SPICE_WATCH_EVENT_WRITE)
        condition |= G_IO_OUT | G_IO_ERR;
    return condition;
}

static void
sw_core_watch_ready(int fd, GIOCondition revents, gpointer user_data)
{
    SpiceWatch *watch = user_data;
    int events = 0;

    /* HUP and ERR are reported as readable (and ERR as writable): the
     * read or write then returns the error to spice-server. */
    if (revents & (G_IO_IN | G_IO_HUP | G_IO_ERR))
        events |= SPICE_WATCH_EVENT_READ;
    if (revents & (G_IO_OUT | G_IO_ERR))
        events |= SPICE_WATCH_EVENT_WRITE;
    watch->func(fd, events, watch->opaque);
}

static SpiceWatch *
sw_core_watch_add(int fd, int event_mask, SpiceWatchFunc func, void *opaque)
{
    SpiceWatch *watch = g_new0(SpiceWatch, 1);

    watch->func = func;
    watch->opaque = opaque;
    watch->fd_watch = sw_fd_watch_new(sw_core_context, fd, sw_core_mask_to_condition(event_mask),
                                      sw_core_watch_ready, watch);
    return watch;
}

static void
sw_core_watch_update_mask(SpiceWatch *watch, int event_mask)
{
    sw_fd_watch_set_condition(watch->fd_watch, sw_core_mask_to_condition(event_mask));
}

static void
sw_core_watch_remove(SpiceWatch *watch)
{
    sw_fd_watch_free(watch->fd_watch);
    g_free(watch);
}

static const char *
sw_core_channel_event_name(int event)
{
    switch (event) {
    case SPICE_CHANNEL_EVENT_CONNECTED:
        return "connected";
    case SPICE_CHANNEL_EVENT_INITIALIZED:
        return "initialized";
    case SPICE_CHANNEL_EVENT_DISCONNECTED:
        return "disconnected";
    default:
        return "unknown";
    }
}

static void
sw_core_channel_event(int event, SpiceChannelEventInfo *info)
{
    /* Only logged: usbgwd learns about channels from the char devices'
     * state callbacks, which carry our channel index. */
    g_debug("spice channel type %d id %d connection %d %s%s", info->type, info->id,
            info->connection_id, sw_core_channel_event_name(event),
            (info->flags & SPICE_CHANNEL_EVENT_FLAG_TLS) ? " (TLS)" : "");
}

static SpiceCoreInterface sw_core_interface = {
    .base =
        {
            .type = SPICE_INTERFACE_CORE,
            .description = "usbgw-spice-worker GLib core",
            .major_version = SPICE_INTERFACE_CORE_MAJOR,
            .minor_version = SPICE_INTERFACE_CORE_MINOR,
        },
    .timer_add = sw_core_timer_add,
    .timer_start = sw_core_timer_start,
    .timer_cancel = sw_core_timer_cancel,
    .timer_remove = sw_core_timer_remove,
    .watch_add = sw_core_watch_add,
    .watch_update_mask = sw_core_watch_update_mask,
    .watch_remove = sw_core_watch_remove,
    .channel_event = sw_core_channel_event,
};

SpiceCoreInterface *
sw_core_get(GMainContext *context)
{
    sw_core_context = context;
    return &sw_core_interface;
}
