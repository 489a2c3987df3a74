/* share-backoff: the reconnect delays of usbgw-share. */
#include "share-backoff.h"

typedef struct {
    const char *name;
    guint min_s;
    gint64 connected_for_s[6]; /* per lost connection, -1 ends */
    guint want[6];
} BackoffCase;

static const BackoffCase backoff_cases[] = {
    {.name = "doubles from the minimum",
     .min_s = 30,
     .connected_for_s = {0, 0, 0, 0, 0, -1},
     .want = {30, 60, 120, 240, 480}},
    {.name = "stops at the ceiling",
     .min_s = 300,
     .connected_for_s = {0, 0, 0, 0, -1},
     .want = {300, 600, 600, 600}},
    {.name = "a minimum above the ceiling wins",
     .min_s = 900,
     .connected_for_s = {0, 0, -1},
     .want = {900, 900}},
    {.name = "a stable connection starts over",
     .min_s = 2,
     .connected_for_s = {0, 10, SHARE_STABLE_CONNECTION_S, 0, -1},
     .want = {2, 4, 2, 4}},
    {.name = "zero minimum is one second",
     .min_s = 0,
     .connected_for_s = {0, 0, -1},
     .want = {1, 2}},
};

static void
test_backoff(gconstpointer data)
{
    const BackoffCase *c = data;
    ShareBackoff backoff;

    share_backoff_init(&backoff, c->min_s);
    for (guint i = 0; c->connected_for_s[i] >= 0; i++) {
        guint got = share_backoff_next(&backoff, c->connected_for_s[i]);

        g_assert_cmpuint(got, ==, c->want[i]);
        g_assert_cmpuint(got, >=, MAX(c->min_s, 1));
    }
}

int
main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    for (guint i = 0; i < G_N_ELEMENTS(backoff_cases); i++) {
        g_autofree char *path = g_strdup_printf("/share/backoff/%s", backoff_cases[i].name);

        g_test_add_data_func(path, &backoff_cases[i], test_backoff);
    }
    return g_test_run();
}
