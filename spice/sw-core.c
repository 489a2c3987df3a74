/* sw-core: spice-server's SpiceCoreInterface on a GLib main context. */
#include "sw-core.h"

#include "gw-fd-watch.h"

/* The core's one context; spice-server's callbacks carry no user data. */
static GMainContext *sw_core_context;
static SwCoreChannelEventFunc sw_core_event_func;
static gpointer sw_core_event_data;
/* Between sw_core_hold_watches() and sw_core_release_watches(): the
 * watches whose mask changed meanwhile (SpiceWatch *, not owned). */
static gboolean sw_core_holding;
static GPtrArray *sw_core_held;

struct SpiceTimer {
    GSource *source; /* owned, nullable: armed */
    SpiceTimerFunc func;
    void *opaque;
};

struct SpiceWatch {
    GwFdWatch *fd_watch; /* owned */
    int event_mask;      /* spice-server's, SPICE_WATCH_EVENT_* */
    gboolean held;       /* in sw_core_held: the fd watch lags behind @event_mask */
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
    watch->event_mask = event_mask;
    watch->fd_watch =
        gw_fd_watch_new(sw_core_context, "spice-server watch", fd,
                        sw_core_mask_to_condition(event_mask), sw_core_watch_ready, watch);
    return watch;
}

static void
sw_core_watch_update_mask(SpiceWatch *watch, int event_mask)
{
    watch->event_mask = event_mask;
    if (sw_core_holding) {
        if (!watch->held) {
            watch->held = TRUE;
            g_ptr_array_add(sw_core_held, watch);
        }
        return;
    }
    gw_fd_watch_set_condition(watch->fd_watch, sw_core_mask_to_condition(event_mask));
}

static void
sw_core_watch_remove(SpiceWatch *watch)
{
    if (watch->held)
        g_ptr_array_remove_fast(sw_core_held, watch);
    gw_fd_watch_free(watch->fd_watch);
    g_free(watch);
}

void
sw_core_hold_watches(void)
{
    g_return_if_fail(!sw_core_holding);
    if (sw_core_held == NULL)
        sw_core_held = g_ptr_array_new();
    sw_core_holding = TRUE;
}

void
sw_core_release_watches(void)
{
    g_return_if_fail(sw_core_holding);
    sw_core_holding = FALSE;
    for (guint i = 0; i < sw_core_held->len; i++) {
        SpiceWatch *watch = g_ptr_array_index(sw_core_held, i);

        watch->held = FALSE;
        gw_fd_watch_set_condition(watch->fd_watch, sw_core_mask_to_condition(watch->event_mask));
    }
    g_ptr_array_set_size(sw_core_held, 0);
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
    g_debug("spice channel type %d id %d connection %d %s%s", info->type, info->id,
            info->connection_id, sw_core_channel_event_name(event),
            (info->flags & SPICE_CHANNEL_EVENT_FLAG_TLS) ? " (TLS)" : "");
    if (sw_core_event_func != NULL)
        sw_core_event_func(event, info, sw_core_event_data);
}

void
sw_core_set_channel_event_func(SwCoreChannelEventFunc func, gpointer user_data)
{
    sw_core_event_func = func;
    sw_core_event_data = user_data;
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
