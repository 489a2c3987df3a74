/* GwMetrics' text exposition: names, HELP and TYPE lines, escaped label
 * values, values, histogram buckets (cumulative, +Inf, _sum, _count),
 * collectors, counters added from several threads; and usbgwd's families
 * (gw-usbgw-metrics.h). Each case compares the whole text. */
#include <glib.h>
#include <string.h>

#include "gw-metrics.h"
#include "gw-usbgw-metrics.h"

static void
test_counter_and_escaping(void)
{
    g_autoptr(GwMetrics) metrics = gw_metrics_new();
    static const gchar *const labels[] = {"vm", "direction", NULL};
    GwMetricFamily *family = gw_metrics_add_family(metrics, GW_METRIC_COUNTER, "t_bytes_total",
                                                   "Bytes \\ sent\nover lines", labels);
    g_autofree gchar *text = NULL;

    gw_metric_series_add(gw_metric_family_series(family, (const gchar *const[]){"b", "out"}), 7);
    gw_metric_series_add(
        gw_metric_family_series(family, (const gchar *const[]){"a \"q\" \\ x\ny", "in"}), 1);
    gw_metric_series_add(gw_metric_family_series(family, (const gchar *const[]){"b", "out"}), 5);
    text = gw_metrics_render(metrics);
    g_assert_cmpstr(text, ==,
                    "# HELP t_bytes_total Bytes \\\\ sent\\nover lines\n"
                    "# TYPE t_bytes_total counter\n"
                    "t_bytes_total{vm=\"a \\\"q\\\" \\\\ x\\ny\",direction=\"in\"} 1\n"
                    "t_bytes_total{vm=\"b\",direction=\"out\"} 12\n");
    /* the same name again is the same family */
    g_assert_true(gw_metrics_add_family(metrics, GW_METRIC_COUNTER, "t_bytes_total", "x", labels) ==
                  family);
    g_assert_true(gw_metrics_lookup(metrics, "t_bytes_total") == family);
    g_assert_null(gw_metrics_lookup(metrics, "nothing"));
}

static void
test_gauge_values(void)
{
    g_autoptr(GwMetrics) metrics = gw_metrics_new();
    GwMetricFamily *family =
        gw_metrics_add_family(metrics, GW_METRIC_GAUGE, "t_value", "Values", NULL);
    GwMetricFamily *empty =
        gw_metrics_add_family(metrics, GW_METRIC_GAUGE, "t_empty", "No series", NULL);
    GwMetricSeries *series = gw_metric_family_single(family);
    static const struct {
        gdouble value;
        const gchar *want;
    } cases[] = {
        {0, "0"},
        {3, "3"},
        {-2, "-2"},
        {0.25, "0.25"},
        {0.1, "0.1"},
        {1e20, "1e+20"},
        {1.0 / 0.0, "+Inf"},
        {-1.0 / 0.0, "-Inf"},
        {2.5e-7, "2.5e-07"},
        {123456.75, "123456.75"},
    };

    g_assert_nonnull(empty);
    for (guint i = 0; i < G_N_ELEMENTS(cases); i++) {
        g_autofree gchar *text = NULL;
        g_autofree gchar *want = NULL;

        gw_metric_series_set(series, cases[i].value);
        text = gw_metrics_render(metrics);
        want = g_strdup_printf("# HELP t_value Values\n# TYPE t_value gauge\nt_value %s\n"
                               "# HELP t_empty No series\n# TYPE t_empty gauge\n",
                               cases[i].want);
        g_assert_cmpstr(text, ==, want);
    }
}

static void
test_histogram(void)
{
    g_autoptr(GwMetrics) metrics = gw_metrics_new();
    static const gdouble bounds[] = {0.1, 0.5, 2};
    static const gchar *const labels[] = {"result", NULL};
    GwMetricFamily *family =
        gw_metrics_add_histogram(metrics, "t_seconds", "Durations", labels, bounds, 3);
    GwMetricSeries *ok = gw_metric_family_series(family, (const gchar *const[]){"ok"});
    g_autofree gchar *text = NULL;

    gw_metric_series_observe(ok, 0.05); /* first bucket */
    gw_metric_series_observe(ok, 0.1);  /* a bound is in its own bucket */
    gw_metric_series_observe(ok, 1.5);
    gw_metric_series_observe(ok, 60); /* only +Inf */
    gw_metric_family_series(family, (const gchar *const[]){"failed"});
    text = gw_metrics_render(metrics);
    g_assert_cmpstr(text, ==,
                    "# HELP t_seconds Durations\n"
                    "# TYPE t_seconds histogram\n"
                    "t_seconds_bucket{result=\"failed\",le=\"0.1\"} 0\n"
                    "t_seconds_bucket{result=\"failed\",le=\"0.5\"} 0\n"
                    "t_seconds_bucket{result=\"failed\",le=\"2\"} 0\n"
                    "t_seconds_bucket{result=\"failed\",le=\"+Inf\"} 0\n"
                    "t_seconds_sum{result=\"failed\"} 0\n"
                    "t_seconds_count{result=\"failed\"} 0\n"
                    "t_seconds_bucket{result=\"ok\",le=\"0.1\"} 2\n"
                    "t_seconds_bucket{result=\"ok\",le=\"0.5\"} 2\n"
                    "t_seconds_bucket{result=\"ok\",le=\"2\"} 3\n"
                    "t_seconds_bucket{result=\"ok\",le=\"+Inf\"} 4\n"
                    "t_seconds_sum{result=\"ok\"} 61.65\n"
                    "t_seconds_count{result=\"ok\"} 4\n");
    g_assert_cmpfloat(gw_metric_series_get(ok), ==, 4);
}

typedef struct {
    GwMetricFamily *family;
    guint calls;
} Collected;

static void
collect(GwMetrics *metrics, gpointer user_data)
{
    Collected *c = user_data;

    c->calls++;
    /* the set of series is rebuilt on every render: a VM that went is gone */
    gw_metric_family_clear(c->family);
    for (guint i = 0; i < (c->calls == 1 ? 2u : 1u); i++) {
        g_autofree gchar *vm = g_strdup_printf("vm%u", i);
        const gchar *values[] = {vm};
        gw_metric_series_set(gw_metric_family_series(c->family, values), c->calls * 10 + i);
    }
}

static void
test_collector(void)
{
    g_autoptr(GwMetrics) metrics = gw_metrics_new();
    static const gchar *const labels[] = {"vm", NULL};
    Collected c = {gw_metrics_add_family(metrics, GW_METRIC_GAUGE, "t_missing", "Missing", labels),
                   0};
    guint id = gw_metrics_add_collector(metrics, collect, &c);
    g_autofree gchar *first = gw_metrics_render(metrics);
    g_autofree gchar *second = gw_metrics_render(metrics);
    g_autofree gchar *third = NULL;

    g_assert_cmpstr(first, ==,
                    "# HELP t_missing Missing\n# TYPE t_missing gauge\n"
                    "t_missing{vm=\"vm0\"} 10\nt_missing{vm=\"vm1\"} 11\n");
    g_assert_cmpstr(second, ==,
                    "# HELP t_missing Missing\n# TYPE t_missing gauge\nt_missing{vm=\"vm0\"} 20\n");
    gw_metrics_remove_collector(metrics, id);
    third = gw_metrics_render(metrics);
    g_assert_cmpuint(c.calls, ==, 2);
    g_assert_cmpstr(third, ==, second);
}

#define THREADS 4
#define ADDS    100000

static gpointer
add_many(gpointer data)
{
    for (guint i = 0; i < ADDS; i++)
        gw_metric_series_add(data, 3);
    return NULL;
}

static void
test_threads(void)
{
    g_autoptr(GwMetrics) metrics = gw_metrics_new();
    GwMetricFamily *family =
        gw_metrics_add_family(metrics, GW_METRIC_COUNTER, "t_adds_total", "Adds", NULL);
    GwMetricSeries *series = gw_metric_family_single(family);
    GThread *threads[THREADS];
    g_autofree gchar *text = NULL;
    g_autofree gchar *want = NULL;

    for (guint i = 0; i < THREADS; i++)
        threads[i] = g_thread_new("adder", add_many, series);
    for (guint i = 0; i < THREADS; i++)
        g_thread_join(threads[i]);
    text = gw_metrics_render(metrics);
    want = g_strdup_printf("# HELP t_adds_total Adds\n# TYPE t_adds_total counter\n"
                           "t_adds_total %u\n",
                           THREADS * ADDS * 3);
    g_assert_cmpstr(text, ==, want);
}

static void
test_bad_names(void)
{
    g_autoptr(GwMetrics) metrics = gw_metrics_new();
    static const gchar *const bad_label[] = {"0x", NULL};
    static const gchar *const reserved[] = {"__name", NULL};
    static const gchar *const le[] = {"le", NULL};
    static const gdouble unsorted[] = {1, 0.5};

    /* the program's own names: a mistake is a critical, nothing added */
    g_test_expect_message("usbgw-metrics", G_LOG_LEVEL_CRITICAL, "*gw_metrics_name_is_valid*");
    g_assert_null(gw_metrics_add_family(metrics, GW_METRIC_GAUGE, "bad-name", "", NULL));
    g_test_expect_message("usbgw-metrics", G_LOG_LEVEL_CRITICAL, "*_total*");
    g_assert_null(gw_metrics_add_family(metrics, GW_METRIC_COUNTER, "t_count", "", NULL));
    g_test_expect_message("usbgw-metrics", G_LOG_LEVEL_CRITICAL, "*gw_metrics_name_is_valid*");
    g_assert_null(gw_metrics_add_family(metrics, GW_METRIC_GAUGE, "t_x", "", bad_label));
    g_test_expect_message("usbgw-metrics", G_LOG_LEVEL_CRITICAL, "*__*");
    g_assert_null(gw_metrics_add_family(metrics, GW_METRIC_GAUGE, "t_y", "", reserved));
    g_test_expect_message("usbgw-metrics", G_LOG_LEVEL_CRITICAL, "*le*");
    g_assert_null(gw_metrics_add_histogram(metrics, "t_h", "", le, unsorted, 0));
    g_test_expect_message("usbgw-metrics", G_LOG_LEVEL_CRITICAL, "*bounds*");
    g_assert_null(gw_metrics_add_histogram(metrics, "t_h", "", NULL, unsorted, 2));
    g_test_assert_expected_messages();
}

/* usbgwd's families: every name the docs promise, in one registry, with
 * the event counters where they belong. */
static void
test_usbgw_families(void)
{
    GwMetrics *metrics = gw_usbgw_metrics_get();
    static const gchar *const names[] = {
        "usbgw_build_info",
        "usbgw_devices",
        "usbgw_sessions",
        "usbgw_attach_total",
        "usbgw_attach_duration_seconds",
        "usbgw_redir_bytes_total",
        "usbgw_transfer_errors_total",
        "usbgw_device_reenumerations_total",
        "usbgw_required_missing",
        "usbgw_pool_keys",
        "usbgw_shares",
        "usbgw_link_up",
        "usbgw_link_bytes_total",
        "usbgw_link_connects_total",
        "usbgw_link_reconnects_total",
        "usbgw_link_streams",
    };
    g_autofree gchar *text = NULL;

    for (guint i = 0; i < G_N_ELEMENTS(names); i++)
        g_assert_nonnull(gw_metrics_lookup(metrics, names[i]));
    gw_usbgw_metrics_attach(GW_USBGW_ATTACH_OK, 0.3);
    gw_usbgw_metrics_attach(GW_USBGW_ATTACH_OK, -1); /* a later session: not timed */
    gw_usbgw_metrics_attach(GW_USBGW_ATTACH_REFUSED, -1);
    gw_usbgw_metrics_redir_bytes(GW_USBGW_TO_PEER, 100);
    gw_usbgw_metrics_redir_bytes(GW_USBGW_FROM_PEER, 40);
    gw_usbgw_metrics_transfer_error();
    gw_usbgw_metrics_reenumeration();
    text = gw_metrics_render(metrics);
    g_assert_nonnull(strstr(text, "usbgw_build_info{version=\"" PACKAGE_VERSION "\"} 1\n"));
    g_assert_nonnull(strstr(text, "usbgw_attach_total{result=\"ok\"} 2\n"));
    g_assert_nonnull(strstr(text, "usbgw_attach_total{result=\"refused\"} 1\n"));
    g_assert_nonnull(strstr(text, "usbgw_attach_total{result=\"failed\"} 0\n"));
    g_assert_nonnull(strstr(text, "usbgw_attach_duration_seconds_bucket{le=\"0.25\"} 0\n"));
    g_assert_nonnull(strstr(text, "usbgw_attach_duration_seconds_bucket{le=\"0.5\"} 1\n"));
    g_assert_nonnull(strstr(text, "usbgw_attach_duration_seconds_bucket{le=\"+Inf\"} 1\n"));
    g_assert_nonnull(strstr(text, "usbgw_attach_duration_seconds_sum 0.3\n"));
    g_assert_nonnull(strstr(text, "usbgw_attach_duration_seconds_count 1\n"));
    g_assert_nonnull(strstr(text, "usbgw_redir_bytes_total{direction=\"to_peer\"} 100\n"));
    g_assert_nonnull(strstr(text, "usbgw_redir_bytes_total{direction=\"from_peer\"} 40\n"));
    g_assert_nonnull(strstr(text, "usbgw_transfer_errors_total 1\n"));
    g_assert_nonnull(strstr(text, "usbgw_device_reenumerations_total 1\n"));
    g_assert_nonnull(strstr(text, "# TYPE usbgw_attach_duration_seconds histogram\n"));
}

int
main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    g_test_add_func("/metrics/counter-and-escaping", test_counter_and_escaping);
    g_test_add_func("/metrics/gauge-values", test_gauge_values);
    g_test_add_func("/metrics/histogram", test_histogram);
    g_test_add_func("/metrics/collector", test_collector);
    g_test_add_func("/metrics/threads", test_threads);
    g_test_add_func("/metrics/bad-names", test_bad_names);
    g_test_add_func("/metrics/usbgw-families", test_usbgw_families);
    return g_test_run();
}
