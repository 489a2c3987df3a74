/* GwFdWatch on a socketpair: the condition changes in place, condition 0
 * takes the fd out of the poll set (a hung-up peer does not make the
 * context spin), HUP reaches the callback only when asked for, a prepare
 * function can dispatch the watch, a condition changed in the callback
 * applies from the next poll, and the callback may free its watch or
 * another ready one (which then gets no call). The watches of a context
 * share one epoll fd: two watches may name the same fd, the epoll fd goes
 * with the last watch, and a context of another thread gets its own. A
 * watch asked to run after a dispatch runs once, after the others. */
#include <dirent.h>
#include <sys/socket.h>
#include <unistd.h>

#include "gw-fd-watch.h"

typedef struct {
    guint calls;
    GIOCondition revents; /* of the last call */
    gboolean free_in_callback;
    GwFdWatch *watch;
    gboolean prepare_ready; /* what the prepare function returns */
    guint prepares;
    GIOCondition then; /* nonzero: the callback sets this condition */
} Seen;

static void
seen_ready(int fd, GIOCondition revents, gpointer user_data)
{
    Seen *seen = user_data;

    seen->calls++;
    seen->revents = revents;
    if (seen->then != 0) {
        gw_fd_watch_set_condition(seen->watch, seen->then);
        seen->then = 0;
    }
    if (seen->free_in_callback)
        g_clear_pointer(&seen->watch, gw_fd_watch_free);
}

static gboolean
seen_prepare(gpointer user_data)
{
    Seen *seen = user_data;

    seen->prepares++;
    return seen->prepare_ready;
}

/* Runs what is ready on the default context, without blocking. */
static void
drain(void)
{
    for (guint i = 0; i < 100 && g_main_context_iteration(NULL, FALSE); i++)
        ;
}

static void
make_pair(int fds[2])
{
    g_assert_cmpint(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0, fds), ==, 0);
}

static void
test_condition(void)
{
    Seen seen = {0};
    int fds[2];

    make_pair(fds);
    seen.watch = gw_fd_watch_new(NULL, "test", fds[0], G_IO_IN, seen_ready, &seen);
    drain();
    g_assert_cmpuint(seen.calls, ==, 0);
    g_assert_cmpint(write(fds[1], "x", 1), ==, 1);
    drain();
    g_assert_cmpuint(seen.calls, >, 0);
    g_assert_cmpint(seen.revents, ==, G_IO_IN);

    /* not watched: the unread byte reports nothing */
    gw_fd_watch_set_condition(seen.watch, 0);
    g_assert_cmpint(gw_fd_watch_get_condition(seen.watch), ==, 0);
    seen.calls = 0;
    drain();
    g_assert_cmpuint(seen.calls, ==, 0);

    /* the same watch again */
    gw_fd_watch_set_condition(seen.watch, G_IO_IN | G_IO_OUT);
    drain();
    g_assert_cmpuint(seen.calls, >, 0);
    g_assert_cmpint(seen.revents, ==, G_IO_IN | G_IO_OUT);
    g_clear_pointer(&seen.watch, gw_fd_watch_free);
    close(fds[0]);
    close(fds[1]);
}

/* A change between non-zero conditions, made from the watch's own
 * callback, applies from the next poll (it wakes nothing). */
static void
test_change_in_callback(void)
{
    Seen seen = {.then = G_IO_OUT};
    int fds[2];

    make_pair(fds);
    seen.watch = gw_fd_watch_new(NULL, "test", fds[0], G_IO_IN, seen_ready, &seen);
    g_assert_cmpint(write(fds[1], "x", 1), ==, 1);
    g_assert_true(g_main_context_iteration(NULL, FALSE));
    g_assert_cmpuint(seen.calls, ==, 1);
    g_assert_cmpint(seen.revents, ==, G_IO_IN);
    g_assert_cmpint(gw_fd_watch_get_condition(seen.watch), ==, G_IO_OUT);
    /* the unread byte no longer counts, the free buffer space does */
    g_assert_true(g_main_context_iteration(NULL, FALSE));
    g_assert_cmpuint(seen.calls, ==, 2);
    g_assert_cmpint(seen.revents, ==, G_IO_OUT);
    g_clear_pointer(&seen.watch, gw_fd_watch_free);
    close(fds[0]);
    close(fds[1]);
}

static void
test_hang_up(void)
{
    Seen seen = {0};
    int fds[2];

    make_pair(fds);
    close(fds[1]);
    /* poll() reports HUP for any events; with condition 0 the fd is not
     * polled, so nothing is ready */
    seen.watch = gw_fd_watch_new(NULL, "test", fds[0], 0, seen_ready, &seen);
    g_assert_false(g_main_context_iteration(NULL, FALSE));
    g_assert_cmpuint(seen.calls, ==, 0);

    gw_fd_watch_set_condition(seen.watch, G_IO_HUP | G_IO_ERR);
    drain();
    g_assert_cmpuint(seen.calls, >, 0);
    g_assert_true(seen.revents & G_IO_HUP);
    g_assert_false(seen.revents & G_IO_IN); /* not asked for */
    g_clear_pointer(&seen.watch, gw_fd_watch_free);
    close(fds[0]);
}

static void
test_prepare(void)
{
    Seen seen = {0};
    int fds[2];

    make_pair(fds);
    seen.watch = gw_fd_watch_new(NULL, "test", fds[0], G_IO_IN, seen_ready, &seen);
    gw_fd_watch_set_prepare(seen.watch, seen_prepare);
    drain();
    g_assert_cmpuint(seen.prepares, >, 0);
    g_assert_cmpuint(seen.calls, ==, 0);

    seen.prepare_ready = TRUE;
    g_assert_true(g_main_context_iteration(NULL, FALSE));
    g_assert_cmpuint(seen.calls, ==, 1);
    g_assert_cmpint(seen.revents, ==, 0);
    seen.prepare_ready = FALSE;
    g_clear_pointer(&seen.watch, gw_fd_watch_free);
    close(fds[0]);
    close(fds[1]);
}

static void
test_free_in_callback(void)
{
    Seen seen = {.free_in_callback = TRUE};
    int fds[2];

    make_pair(fds);
    seen.watch = gw_fd_watch_new(NULL, "test", fds[0], G_IO_OUT, seen_ready, &seen);
    drain();
    g_assert_cmpuint(seen.calls, ==, 1);
    g_assert_null(seen.watch);
    close(fds[0]);
    close(fds[1]);
}

static guint
count_fds(void)
{
    DIR *dir = opendir("/proc/self/fd");
    guint n = 0;

    g_assert_nonnull(dir);
    while (readdir(dir) != NULL)
        n++;
    closedir(dir);
    return n;
}

/* Each of two watches frees the other from its callback. */
typedef struct _Rival Rival;
struct _Rival {
    GwFdWatch *watch;
    Rival *other;
    guint calls;
};

static void
rival_ready(int fd, GIOCondition revents, gpointer user_data)
{
    Rival *rival = user_data;

    g_assert_cmpint(revents, ==, G_IO_OUT);
    rival->calls++;
    g_clear_pointer(&rival->other->watch, gw_fd_watch_free);
}

/* Both are ready in the same iteration: the first to run frees the other,
 * which gets no call. */
static void
test_free_other_in_callback(void)
{
    Rival a = {0}, b = {0};
    int fds_a[2], fds_b[2];

    make_pair(fds_a);
    make_pair(fds_b);
    a.other = &b;
    b.other = &a;
    a.watch = gw_fd_watch_new(NULL, "a", fds_a[0], G_IO_OUT, rival_ready, &a);
    b.watch = gw_fd_watch_new(NULL, "b", fds_b[0], G_IO_OUT, rival_ready, &b);
    g_assert_true(g_main_context_iteration(NULL, FALSE));
    g_assert_cmpuint(a.calls + b.calls, ==, 1);
    g_assert_true((a.watch == NULL) != (b.watch == NULL));
    drain();
    g_assert_cmpuint(a.calls + b.calls, >, 1); /* the survivor goes on */
    g_assert_true((a.watch == NULL) != (b.watch == NULL));
    g_clear_pointer(&a.watch, gw_fd_watch_free);
    g_clear_pointer(&b.watch, gw_fd_watch_free);
    close(fds_a[0]);
    close(fds_a[1]);
    close(fds_b[0]);
    close(fds_b[1]);
}

/* Two watches on one fd, each with its own condition. */
static void
test_same_fd(void)
{
    Seen in = {0}, out = {0};
    int fds[2];

    make_pair(fds);
    in.watch = gw_fd_watch_new(NULL, "in", fds[0], G_IO_IN, seen_ready, &in);
    out.watch = gw_fd_watch_new(NULL, "out", fds[0], G_IO_OUT, seen_ready, &out);
    g_assert_true(g_main_context_iteration(NULL, FALSE));
    g_assert_cmpuint(in.calls, ==, 0);
    g_assert_cmpuint(out.calls, ==, 1);
    g_assert_cmpint(out.revents, ==, G_IO_OUT);

    gw_fd_watch_set_condition(out.watch, 0);
    g_assert_cmpint(write(fds[1], "x", 1), ==, 1);
    out.calls = 0;
    g_assert_true(g_main_context_iteration(NULL, FALSE));
    g_assert_cmpuint(in.calls, ==, 1);
    g_assert_cmpint(in.revents, ==, G_IO_IN);
    g_assert_cmpuint(out.calls, ==, 0);
    g_clear_pointer(&in.watch, gw_fd_watch_free);
    g_clear_pointer(&out.watch, gw_fd_watch_free);
    close(fds[0]);
    close(fds[1]);
}

/* The first watch of a context opens the epoll fd, the last closes it. */
static void
test_shared_fd_lifetime(void)
{
    guint before = count_fds();
    Seen a = {0}, b = {0};
    int fds[2];

    make_pair(fds);
    a.watch = gw_fd_watch_new(NULL, "a", fds[0], G_IO_OUT, seen_ready, &a);
    g_assert_cmpuint(count_fds(), ==, before + 3);
    b.watch = gw_fd_watch_new(NULL, "b", fds[1], G_IO_OUT, seen_ready, &b);
    g_assert_cmpuint(count_fds(), ==, before + 3);
    g_clear_pointer(&a.watch, gw_fd_watch_free);
    g_assert_cmpuint(count_fds(), ==, before + 3);
    /* the last one freed from its callback */
    b.free_in_callback = TRUE;
    drain();
    g_assert_cmpuint(b.calls, ==, 1);
    g_assert_null(b.watch);
    g_assert_cmpuint(count_fds(), ==, before + 2);
    close(fds[0]);
    close(fds[1]);
    g_assert_cmpuint(count_fds(), ==, before);
}

/* A watch created on another thread's context runs its callback there,
 * and the default context does not see it. */
typedef struct {
    int fd;
    GThread *ran_on;
} OtherThread;

static void
other_ready(int fd, GIOCondition revents, gpointer user_data)
{
    OtherThread *other = user_data;

    g_assert_cmpint(revents, ==, G_IO_IN);
    other->ran_on = g_thread_self();
}

static gpointer
other_thread(gpointer data)
{
    OtherThread *other = data;
    GMainContext *context = g_main_context_new();
    GwFdWatch *watch;

    g_main_context_push_thread_default(context);
    watch = gw_fd_watch_new(context, "other", other->fd, G_IO_IN, other_ready, other);
    while (other->ran_on == NULL)
        g_main_context_iteration(context, TRUE);
    gw_fd_watch_free(watch);
    g_main_context_pop_thread_default(context);
    g_main_context_unref(context);
    return NULL;
}

static void
test_other_context(void)
{
    OtherThread other = {0};
    Seen seen = {0};
    int fds[2];
    GThread *thread;

    make_pair(fds);
    other.fd = fds[0];
    seen.watch = gw_fd_watch_new(NULL, "default", fds[1], G_IO_IN, seen_ready, &seen);
    thread = g_thread_new("other", other_thread, &other);
    g_assert_cmpint(write(fds[1], "x", 1), ==, 1);
    g_thread_join(thread);
    g_assert_true(other.ran_on == thread);
    drain();
    g_assert_cmpuint(seen.calls, ==, 0);
    g_clear_pointer(&seen.watch, gw_fd_watch_free);
    close(fds[0]);
    close(fds[1]);
}

/* A context freed before its watches: the watches can still be changed
 * and freed, and the epoll fd goes with the last. */
static void
test_context_freed_first(void)
{
    guint before = count_fds();
    GMainContext *context = g_main_context_new();
    Seen seen = {0};
    int fds[2];

    make_pair(fds);
    seen.watch = gw_fd_watch_new(context, "orphan", fds[0], G_IO_IN, seen_ready, &seen);
    g_main_context_unref(context);
    gw_fd_watch_set_condition(seen.watch, G_IO_OUT);
    g_assert_cmpuint(count_fds(), ==, before + 3);
    g_clear_pointer(&seen.watch, gw_fd_watch_free);
    g_assert_cmpuint(count_fds(), ==, before + 2);
    g_assert_cmpuint(seen.calls, ==, 0);
    close(fds[0]);
    close(fds[1]);
}

/* Two readable watches each ask a third, idle one to run after the
 * dispatch: it runs once, with revents 0, after both of them and in the
 * same iteration. Outside a dispatch the call is refused; a watch freed
 * after it was asked for gets no call. */
typedef struct {
    GwFdWatch *after;
    guint calls;
    guint after_calls_seen; /* the after watch's calls when this one ran */
    Seen *after_seen;
    gboolean free_after; /* frees the after watch once it asked */
} Asker;

static void
asker_ready(int fd, GIOCondition revents, gpointer user_data)
{
    Asker *asker = user_data;
    char c;

    asker->calls++;
    asker->after_calls_seen = asker->after_seen->calls;
    g_assert_cmpint(read(fd, &c, 1), ==, 1);
    g_assert_true(gw_fd_watch_call_after_dispatch(asker->after));
    g_assert_true(gw_fd_watch_call_after_dispatch(asker->after));
    if (asker->free_after) {
        g_clear_pointer(&asker->after_seen->watch, gw_fd_watch_free);
        asker->after = NULL;
    }
}

static void
test_call_after_dispatch(void)
{
    Seen after = {0};
    Asker a = {0}, b = {0};
    int fa[2], fb[2], fc[2];
    GwFdWatch *wa, *wb;

    make_pair(fa);
    make_pair(fb);
    make_pair(fc);
    /* watched for input that never comes */
    after.watch = gw_fd_watch_new(NULL, "after", fc[0], G_IO_IN, seen_ready, &after);
    a = (Asker){.after = after.watch, .after_seen = &after};
    b = (Asker){.after = after.watch, .after_seen = &after};
    wa = gw_fd_watch_new(NULL, "a", fa[0], G_IO_IN, asker_ready, &a);
    wb = gw_fd_watch_new(NULL, "b", fb[0], G_IO_IN, asker_ready, &b);
    drain();
    g_assert_cmpuint(after.calls, ==, 0);

    g_assert_cmpint(write(fa[1], "x", 1), ==, 1);
    g_assert_cmpint(write(fb[1], "y", 1), ==, 1);
    g_assert_true(g_main_context_iteration(NULL, TRUE));
    g_assert_cmpuint(a.calls, ==, 1);
    g_assert_cmpuint(b.calls, ==, 1);
    g_assert_cmpuint(a.after_calls_seen, ==, 0);
    g_assert_cmpuint(b.after_calls_seen, ==, 0);
    g_assert_cmpuint(after.calls, ==, 1);
    g_assert_cmpint(after.revents, ==, 0);
    drain();
    g_assert_cmpuint(after.calls, ==, 1);

    /* outside a dispatch: refused, the caller does the work itself */
    g_assert_false(gw_fd_watch_call_after_dispatch(after.watch));
    drain();
    g_assert_cmpuint(after.calls, ==, 1);

    /* asked, and freed by a later callback of the same dispatch: no call */
    a.free_after = TRUE;
    g_assert_cmpint(write(fa[1], "x", 1), ==, 1);
    g_assert_true(g_main_context_iteration(NULL, TRUE));
    g_assert_null(after.watch);
    g_assert_cmpuint(after.calls, ==, 1);

    gw_fd_watch_free(wa);
    gw_fd_watch_free(wb);
    for (guint i = 0; i < 2; i++) {
        close(fa[i]);
        close(fb[i]);
        close(fc[i]);
    }
}

int
main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    g_test_add_func("/gw-fd-watch/condition", test_condition);
    g_test_add_func("/gw-fd-watch/change-in-callback", test_change_in_callback);
    g_test_add_func("/gw-fd-watch/hang-up", test_hang_up);
    g_test_add_func("/gw-fd-watch/prepare", test_prepare);
    g_test_add_func("/gw-fd-watch/free-in-callback", test_free_in_callback);
    g_test_add_func("/gw-fd-watch/free-other-in-callback", test_free_other_in_callback);
    g_test_add_func("/gw-fd-watch/same-fd", test_same_fd);
    g_test_add_func("/gw-fd-watch/shared-fd-lifetime", test_shared_fd_lifetime);
    g_test_add_func("/gw-fd-watch/other-context", test_other_context);
    g_test_add_func("/gw-fd-watch/context-freed-first", test_context_freed_first);
    g_test_add_func("/gw-fd-watch/call-after-dispatch", test_call_after_dispatch);
    return g_test_run();
}
