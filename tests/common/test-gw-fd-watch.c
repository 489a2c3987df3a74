/* GwFdWatch on a socketpair: the condition changes in place, condition 0
 * takes the fd out of the poll set (a hung-up peer does not make the
 * context spin), HUP reaches the callback only when asked for, a prepare
 * function can dispatch the watch, a condition changed in the callback
 * applies from the next poll, and the callback may free its watch. */
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

int
main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    g_test_add_func("/gw-fd-watch/condition", test_condition);
    g_test_add_func("/gw-fd-watch/change-in-callback", test_change_in_callback);
    g_test_add_func("/gw-fd-watch/hang-up", test_hang_up);
    g_test_add_func("/gw-fd-watch/prepare", test_prepare);
    g_test_add_func("/gw-fd-watch/free-in-callback", test_free_in_callback);
    return g_test_run();
}
