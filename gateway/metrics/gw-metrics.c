/* The metrics registry and its text exposition (gw-metrics.h). */
#include "gw-metrics.h"

#include <math.h>
#include <stdatomic.h>
#include <string.h>

struct _GwMetricSeries {
    GwMetricFamily *family; /* borrowed: the owner */
    gchar **label_values;   /* owned */
    gchar *key;             /* owned: label values joined, the sort and lookup key */
    _Atomic guint64 count;  /* counter: the total */
    gdouble value;          /* gauge, or a counter set by a collector */
    gboolean value_set;     /* @value is the counter's total */
    guint64 *bucket_counts; /* owned, histogram: per bucket (not cumulative), +Inf last */
    gdouble sum;            /* histogram */
    guint64 observations;   /* histogram */
};

struct _GwMetricFamily {
    GwMetrics *metrics; /* borrowed: the owner */
    GwMetricType type;
    gchar *name;         /* owned */
    gchar *help;         /* owned */
    gchar **label_names; /* owned, never NULL */
    guint n_labels;
    gdouble *bounds; /* owned, histogram: finite upper bounds, increasing */
    guint n_bounds;
    GHashTable *series; /* key → GwMetricSeries (owned) */
};

typedef struct {
    guint id;
    GwMetricsCollectFunc collect;
    gpointer user_data;
} GwMetricsCollector;

struct _GwMetrics {
    GRecMutex lock;       /* families, series, gauges, histograms, collectors */
    GPtrArray *families;  /* GwMetricFamily (owned), in the order added */
    GArray *collectors;   /* GwMetricsCollector */
    guint next_collector; /* ids from 1 */
};

static gboolean
gw_metrics_name_is_valid(const gchar *name, gboolean colons)
{
    if (name == NULL || name[0] == '\0' || g_ascii_isdigit(name[0]))
        return FALSE;
    for (const gchar *p = name; *p != '\0'; p++) {
        if (!g_ascii_isalnum(*p) && *p != '_' && !(colons && *p == ':'))
            return FALSE;
    }
    return TRUE;
}

static void
gw_metric_series_free(gpointer data)
{
    GwMetricSeries *series = data;
    g_strfreev(series->label_values);
    g_free(series->key);
    g_free(series->bucket_counts);
    g_free(series);
}

static void
gw_metric_family_free(gpointer data)
{
    GwMetricFamily *family = data;
    g_hash_table_unref(family->series);
    g_free(family->name);
    g_free(family->help);
    g_strfreev(family->label_names);
    g_free(family->bounds);
    g_free(family);
}

GwMetrics *
gw_metrics_new(void)
{
    GwMetrics *metrics = g_new0(GwMetrics, 1);
    g_rec_mutex_init(&metrics->lock);
    metrics->families = g_ptr_array_new_with_free_func(gw_metric_family_free);
    metrics->collectors = g_array_new(FALSE, FALSE, sizeof(GwMetricsCollector));
    metrics->next_collector = 1;
    return metrics;
}

void
gw_metrics_free(GwMetrics *metrics)
{
    if (metrics == NULL)
        return;
    g_ptr_array_unref(metrics->families);
    g_array_unref(metrics->collectors);
    g_rec_mutex_clear(&metrics->lock);
    g_free(metrics);
}

GwMetricFamily *
gw_metrics_lookup(GwMetrics *metrics, const gchar *name)
{
    GwMetricFamily *found = NULL;

    g_rec_mutex_lock(&metrics->lock);
    for (guint i = 0; i < metrics->families->len && found == NULL; i++) {
        GwMetricFamily *family = g_ptr_array_index(metrics->families, i);
        if (g_strcmp0(family->name, name) == 0)
            found = family;
    }
    g_rec_mutex_unlock(&metrics->lock);
    return found;
}

static GwMetricFamily *
gw_metrics_add(GwMetrics *metrics, GwMetricType type, const gchar *name, const gchar *help,
               const gchar *const *label_names, const gdouble *bounds, guint n_bounds)
{
    GwMetricFamily *family;
    guint n_labels = label_names != NULL ? g_strv_length((gchar **)label_names) : 0;

    g_return_val_if_fail(gw_metrics_name_is_valid(name, TRUE), NULL);
    g_return_val_if_fail(type != GW_METRIC_COUNTER || g_str_has_suffix(name, "_total"), NULL);
    for (guint i = 0; i < n_labels; i++) {
        g_return_val_if_fail(gw_metrics_name_is_valid(label_names[i], FALSE), NULL);
        g_return_val_if_fail(!g_str_has_prefix(label_names[i], "__"), NULL);
        g_return_val_if_fail(type != GW_METRIC_HISTOGRAM || g_strcmp0(label_names[i], "le") != 0,
                             NULL);
    }
    for (guint i = 0; i < n_bounds; i++)
        g_return_val_if_fail(isfinite(bounds[i]) && (i == 0 || bounds[i] > bounds[i - 1]), NULL);

    g_rec_mutex_lock(&metrics->lock);
    family = gw_metrics_lookup(metrics, name);
    if (family != NULL) {
        g_rec_mutex_unlock(&metrics->lock);
        return family;
    }
    family = g_new0(GwMetricFamily, 1);
    family->metrics = metrics;
    family->type = type;
    family->name = g_strdup(name);
    family->help = g_strdup(help != NULL ? help : "");
    family->label_names =
        label_names != NULL ? g_strdupv((gchar **)label_names) : g_new0(gchar *, 1);
    family->n_labels = n_labels;
    family->bounds = n_bounds > 0 ? g_memdup2(bounds, n_bounds * sizeof(gdouble)) : NULL;
    family->n_bounds = n_bounds;
    family->series = g_hash_table_new_full(g_str_hash, g_str_equal, NULL, gw_metric_series_free);
    g_ptr_array_add(metrics->families, family);
    g_rec_mutex_unlock(&metrics->lock);
    return family;
}

GwMetricFamily *
gw_metrics_add_family(GwMetrics *metrics, GwMetricType type, const gchar *name, const gchar *help,
                      const gchar *const *label_names)
{
    g_return_val_if_fail(type != GW_METRIC_HISTOGRAM, NULL);
    return gw_metrics_add(metrics, type, name, help, label_names, NULL, 0);
}

GwMetricFamily *
gw_metrics_add_histogram(GwMetrics *metrics, const gchar *name, const gchar *help,
                         const gchar *const *label_names, const gdouble *bounds, guint n_bounds)
{
    return gw_metrics_add(metrics, GW_METRIC_HISTOGRAM, name, help, label_names, bounds, n_bounds);
}

/* Label values joined by '\xff' (never in UTF-8): one key per tuple. */
static gchar *
gw_metrics_series_key(const gchar *const *values, guint n)
{
    GString *key = g_string_new(NULL);
    for (guint i = 0; i < n; i++) {
        if (i > 0)
            g_string_append_c(key, '\xff');
        g_string_append(key, values[i]);
    }
    return g_string_free(key, FALSE);
}

GwMetricSeries *
gw_metric_family_series(GwMetricFamily *family, const gchar *const *label_values)
{
    g_autofree gchar *key = NULL;
    GwMetricSeries *series;

    g_return_val_if_fail(family != NULL, NULL);
    for (guint i = 0; i < family->n_labels; i++)
        g_return_val_if_fail(label_values != NULL && label_values[i] != NULL, NULL);
    key = gw_metrics_series_key(label_values, family->n_labels);
    g_rec_mutex_lock(&family->metrics->lock);
    series = g_hash_table_lookup(family->series, key);
    if (series == NULL) {
        series = g_new0(GwMetricSeries, 1);
        series->family = family;
        series->label_values = g_new0(gchar *, family->n_labels + 1);
        for (guint i = 0; i < family->n_labels; i++)
            series->label_values[i] = g_strdup(label_values[i]);
        series->key = g_steal_pointer(&key);
        atomic_init(&series->count, 0);
        if (family->type == GW_METRIC_HISTOGRAM)
            series->bucket_counts = g_new0(guint64, family->n_bounds + 1);
        g_hash_table_insert(family->series, series->key, series);
    }
    g_rec_mutex_unlock(&family->metrics->lock);
    return series;
}

GwMetricSeries *
gw_metric_family_single(GwMetricFamily *family)
{
    g_return_val_if_fail(family != NULL && family->n_labels == 0, NULL);
    return gw_metric_family_series(family, NULL);
}

void
gw_metric_family_clear(GwMetricFamily *family)
{
    g_rec_mutex_lock(&family->metrics->lock);
    g_hash_table_remove_all(family->series);
    g_rec_mutex_unlock(&family->metrics->lock);
}

void
gw_metric_series_add(GwMetricSeries *series, guint64 n)
{
    atomic_fetch_add_explicit(&series->count, n, memory_order_relaxed);
}

void
gw_metric_series_set(GwMetricSeries *series, gdouble value)
{
    GwMetrics *metrics = series->family->metrics;

    g_rec_mutex_lock(&metrics->lock);
    series->value = value;
    series->value_set = TRUE;
    g_rec_mutex_unlock(&metrics->lock);
}

void
gw_metric_series_observe(GwMetricSeries *series, gdouble value)
{
    GwMetricFamily *family = series->family;
    guint bucket = family->n_bounds;

    g_return_if_fail(family->type == GW_METRIC_HISTOGRAM);
    for (guint i = 0; i < family->n_bounds; i++) {
        if (value <= family->bounds[i]) {
            bucket = i;
            break;
        }
    }
    g_rec_mutex_lock(&family->metrics->lock);
    series->bucket_counts[bucket]++;
    series->sum += value;
    series->observations++;
    g_rec_mutex_unlock(&family->metrics->lock);
}

gdouble
gw_metric_series_get(GwMetricSeries *series)
{
    GwMetrics *metrics = series->family->metrics;
    gdouble value;

    g_rec_mutex_lock(&metrics->lock);
    if (series->family->type == GW_METRIC_HISTOGRAM)
        value = (gdouble)series->observations;
    else if (series->value_set)
        value = series->value;
    else
        value = (gdouble)atomic_load_explicit(&series->count, memory_order_relaxed);
    g_rec_mutex_unlock(&metrics->lock);
    return value;
}

guint
gw_metrics_add_collector(GwMetrics *metrics, GwMetricsCollectFunc collect, gpointer user_data)
{
    GwMetricsCollector collector = {0, collect, user_data};

    g_rec_mutex_lock(&metrics->lock);
    collector.id = metrics->next_collector++;
    g_array_append_val(metrics->collectors, collector);
    g_rec_mutex_unlock(&metrics->lock);
    return collector.id;
}

void
gw_metrics_remove_collector(GwMetrics *metrics, guint id)
{
    g_rec_mutex_lock(&metrics->lock);
    for (guint i = 0; i < metrics->collectors->len; i++) {
        if (g_array_index(metrics->collectors, GwMetricsCollector, i).id == id) {
            g_array_remove_index(metrics->collectors, i);
            break;
        }
    }
    g_rec_mutex_unlock(&metrics->lock);
}

/* ---- text exposition -------------------------------------------------------- */

/* HELP text: backslash and line feed escaped. Label values: also the
 * double quote. */
static void
gw_metrics_append_escaped(GString *out, const gchar *text, gboolean quote)
{
    for (const gchar *p = text; *p != '\0'; p++) {
        if (*p == '\\')
            g_string_append(out, "\\\\");
        else if (*p == '\n')
            g_string_append(out, "\\n");
        else if (quote && *p == '"')
            g_string_append(out, "\\\"");
        else
            g_string_append_c(out, *p);
    }
}

/* A sample value as Prometheus reads it: integers without a fraction,
 * others in the shortest form that reads back the same, +Inf, -Inf, NaN. */
static void
gw_metrics_append_value(GString *out, gdouble value)
{
    gchar buf[G_ASCII_DTOSTR_BUF_SIZE];

    if (isnan(value)) {
        g_string_append(out, "NaN");
    } else if (isinf(value)) {
        g_string_append(out, value > 0 ? "+Inf" : "-Inf");
    } else if (value == floor(value) && fabs(value) < 1e15) {
        g_string_append_printf(out, "%.0f", value);
    } else {
        for (gint precision = 6; precision <= 17; precision++) {
            g_autofree gchar *format = g_strdup_printf("%%.%dg", precision);
            g_ascii_formatd(buf, sizeof(buf), format, value);
            if (g_ascii_strtod(buf, NULL) == value)
                break;
        }
        g_string_append(out, buf);
    }
}

/* name{a="x",b="y"[,le="…"]} */
static void
gw_metrics_append_sample_name(GString *out, const GwMetricFamily *family, const gchar *suffix,
                              const GwMetricSeries *series, const gchar *le)
{
    gboolean any = family->n_labels > 0 || le != NULL;

    g_string_append(out, family->name);
    g_string_append(out, suffix);
    if (!any)
        return;
    g_string_append_c(out, '{');
    for (guint i = 0; i < family->n_labels; i++) {
        g_string_append_printf(out, "%s%s=\"", i > 0 ? "," : "", family->label_names[i]);
        gw_metrics_append_escaped(out, series->label_values[i], TRUE);
        g_string_append_c(out, '"');
    }
    if (le != NULL)
        g_string_append_printf(out, "%sle=\"%s\"", family->n_labels > 0 ? "," : "", le);
    g_string_append_c(out, '}');
}

static void
gw_metrics_render_series(GString *out, const GwMetricFamily *family, const GwMetricSeries *series)
{
    guint64 cumulative = 0;

    switch (family->type) {
    case GW_METRIC_COUNTER:
    case GW_METRIC_GAUGE:
        gw_metrics_append_sample_name(out, family, "", series, NULL);
        g_string_append_c(out, ' ');
        if (series->value_set)
            gw_metrics_append_value(out, series->value);
        else
            g_string_append_printf(out, "%" G_GUINT64_FORMAT,
                                   (guint64)atomic_load_explicit(&((GwMetricSeries *)series)->count,
                                                                 memory_order_relaxed));
        g_string_append_c(out, '\n');
        break;
    case GW_METRIC_HISTOGRAM:
        for (guint i = 0; i <= family->n_bounds; i++) {
            g_autoptr(GString) le = g_string_new(NULL);
            cumulative += series->bucket_counts[i];
            if (i < family->n_bounds)
                gw_metrics_append_value(le, family->bounds[i]);
            else
                g_string_append(le, "+Inf");
            gw_metrics_append_sample_name(out, family, "_bucket", series, le->str);
            g_string_append_printf(out, " %" G_GUINT64_FORMAT "\n", cumulative);
        }
        gw_metrics_append_sample_name(out, family, "_sum", series, NULL);
        g_string_append_c(out, ' ');
        gw_metrics_append_value(out, series->sum);
        g_string_append_c(out, '\n');
        gw_metrics_append_sample_name(out, family, "_count", series, NULL);
        g_string_append_printf(out, " %" G_GUINT64_FORMAT "\n", series->observations);
        break;
    }
}

static gint
gw_metrics_compare_series(gconstpointer a, gconstpointer b)
{
    const GwMetricSeries *sa = *(GwMetricSeries *const *)a;
    const GwMetricSeries *sb = *(GwMetricSeries *const *)b;
    return strcmp(sa->key, sb->key);
}

static const gchar *const gw_metrics_type_names[] = {
    [GW_METRIC_COUNTER] = "counter",
    [GW_METRIC_GAUGE] = "gauge",
    [GW_METRIC_HISTOGRAM] = "histogram",
};

gchar *
gw_metrics_render(GwMetrics *metrics)
{
    GString *out = g_string_new(NULL);

    g_rec_mutex_lock(&metrics->lock);
    for (guint i = 0; i < metrics->collectors->len; i++) {
        GwMetricsCollector *collector = &g_array_index(metrics->collectors, GwMetricsCollector, i);
        collector->collect(metrics, collector->user_data);
    }
    for (guint f = 0; f < metrics->families->len; f++) {
        GwMetricFamily *family = g_ptr_array_index(metrics->families, f);
        g_autoptr(GPtrArray) series = g_ptr_array_new();
        GHashTableIter iter;
        gpointer value;

        g_string_append_printf(out, "# HELP %s ", family->name);
        gw_metrics_append_escaped(out, family->help, FALSE);
        g_string_append_printf(out, "\n# TYPE %s %s\n", family->name,
                               gw_metrics_type_names[family->type]);
        g_hash_table_iter_init(&iter, family->series);
        while (g_hash_table_iter_next(&iter, NULL, &value))
            g_ptr_array_add(series, value);
        g_ptr_array_sort(series, gw_metrics_compare_series);
        for (guint s = 0; s < series->len; s++)
            gw_metrics_render_series(out, family, g_ptr_array_index(series, s));
    }
    g_rec_mutex_unlock(&metrics->lock);
    return g_string_free(out, FALSE);
}
