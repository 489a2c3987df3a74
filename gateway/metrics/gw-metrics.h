/* GwMetrics: a registry of metric families (counters, gauges, histograms)
 * and their rendering as Prometheus text exposition (format 0.0.4, the
 * `text/plain; version=0.0.4` body: HELP and TYPE lines, one sample per
 * line, label values escaped). Pure: no I/O; the HTTP listener
 * (gw-metrics-http.h) and usbgwd's `metrics` command only serve the text.
 *
 * A family has a name, a help text, a type and fixed label names; its
 * series are made at first use, one per tuple of label values. Label
 * values must not come from an unbounded set (no device ids, serial
 * numbers or transfers): every value is one series for as long as the
 * registry lives.
 *
 * Two ways to keep a value:
 *   - incremented where the event happens: gw_metric_series_add() (a
 *     counter) and gw_metric_series_observe() (a histogram);
 *   - computed when the text is rendered: a collector
 *     (gw_metrics_add_collector()) clears its families and sets every
 *     series from state kept elsewhere (gauges, and counters whose total
 *     another object keeps).
 *
 * Threading: any thread may add to a counter (lock-free) or observe a
 * histogram (the registry's lock); families, series and collectors are
 * made, cleared and rendered under the registry's lock, and collectors
 * run on the thread that renders (usbgwd: the main thread).
 *
 * Ownership: the registry owns its families and series; pointers to them
 * stay valid until gw_metrics_free(), except the series of a family a
 * collector clears (its own, which nobody else holds). */
#pragma once

#include <glib.h>

G_BEGIN_DECLS

typedef enum {
    GW_METRIC_COUNTER,
    GW_METRIC_GAUGE,
    GW_METRIC_HISTOGRAM,
} GwMetricType;

typedef struct _GwMetrics GwMetrics;
typedef struct _GwMetricFamily GwMetricFamily;
typedef struct _GwMetricSeries GwMetricSeries;

/* Called by gw_metrics_render() before the text is made, in the order the
 * collectors were added, with the registry's lock held: it may clear and
 * set series, not add families or collectors. */
typedef void (*GwMetricsCollectFunc)(GwMetrics *metrics, gpointer user_data);

GwMetrics *gw_metrics_new(void) G_GNUC_WARN_UNUSED_RESULT;
void gw_metrics_free(GwMetrics *metrics);
G_DEFINE_AUTOPTR_CLEANUP_FUNC(GwMetrics, gw_metrics_free)

/* A new family, rendered in the order families were added. @name is a
 * Prometheus metric name ([a-zA-Z_:][a-zA-Z0-9_:]*, a counter's ending in
 * _total); @label_names (NULL-terminated, nullable for none) label names
 * ([a-zA-Z_][a-zA-Z0-9_]*, "le" only by histograms); both are the
 * program's own, so a bad one is a programming error (NULL, critical). A
 * name already added returns that family. */
GwMetricFamily *gw_metrics_add_family(GwMetrics *metrics, GwMetricType type, const gchar *name,
                                      const gchar *help, const gchar *const *label_names);
/* A histogram family: @bounds are the buckets' upper bounds, increasing
 * and finite (the +Inf bucket is implicit). */
GwMetricFamily *gw_metrics_add_histogram(GwMetrics *metrics, const gchar *name, const gchar *help,
                                         const gchar *const *label_names, const gdouble *bounds,
                                         guint n_bounds);
GwMetricFamily *gw_metrics_lookup(GwMetrics *metrics, const gchar *name);

/* The series of @family with these label values (as many as it has label
 * names; any UTF-8 text, escaped when rendered), made at first use. */
GwMetricSeries *gw_metric_family_series(GwMetricFamily *family, const gchar *const *label_values);
/* The series of a family without labels. */
GwMetricSeries *gw_metric_family_single(GwMetricFamily *family);
/* Drops every series of @family (a collector, before setting them anew). */
void gw_metric_family_clear(GwMetricFamily *family);

/* A counter grows by @n; any thread, lock-free. */
void gw_metric_series_add(GwMetricSeries *series, guint64 n);
/* A gauge's value, or the total of a counter kept elsewhere (a collector:
 * a counter must not go down while its source lives). */
void gw_metric_series_set(GwMetricSeries *series, gdouble value);
/* A histogram observes @value (seconds, bytes…): the buckets whose bound
 * is >= @value, the sum and the count grow. */
void gw_metric_series_observe(GwMetricSeries *series, gdouble value);
/* A counter's total or a gauge's value (tests). */
gdouble gw_metric_series_get(GwMetricSeries *series);

/* Adds a collector; returns its id for gw_metrics_remove_collector(). */
guint gw_metrics_add_collector(GwMetrics *metrics, GwMetricsCollectFunc collect,
                               gpointer user_data);
void gw_metrics_remove_collector(GwMetrics *metrics, guint id);

/* Runs the collectors and returns the exposition text (UTF-8, '\n' line
 * ends, the last line ended). */
gchar *gw_metrics_render(GwMetrics *metrics) G_GNUC_WARN_UNUSED_RESULT;

/* The content type of gw_metrics_render()'s text. */
#define GW_METRICS_CONTENT_TYPE "text/plain; version=0.0.4; charset=utf-8"

G_END_DECLS
