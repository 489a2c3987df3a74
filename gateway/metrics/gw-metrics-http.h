/* GwMetricsHttp: the optional HTTP listener Prometheus scrapes
 * (usbgwd.conf metrics-listen=ADDRESS:PORT). libsoup's SoupServer parses
 * the requests; this unit accepts the connections itself so that it can
 * bound them. It is network input into a root daemon, so:
 *   - only GET and HEAD of /metrics are answered (200, the exposition);
 *     another path is 404, another method 405 (with Allow), a request with
 *     a body 413, all decided once the headers are read, before any body;
 *   - request headers are bounded by libsoup (100 KiB, then the connection
 *     is closed), and there are no request bodies;
 *   - at most GW_METRICS_HTTP_MAX_CONNECTIONS connections at once (more
 *     are closed at accept); a connection that has not sent a whole request
 *     GW_METRICS_HTTP_TIMEOUT_S after it was accepted or after its last
 *     answer, or whose answer is not taken within that time, is closed;
 *   - everything runs on the main context, asynchronously: rendering the
 *     text is a walk over in-memory state, writing it is SoupServer's
 *     non-blocking I/O.
 *
 * Threading: main thread only (the thread-default context at _new()).
 * Ownership: @metrics is borrowed and must outlive the listener. */
#pragma once

#include <gio/gio.h>

#include "gw-metrics.h"

G_BEGIN_DECLS

#define GW_METRICS_HTTP_MAX_CONNECTIONS 8
#define GW_METRICS_HTTP_TIMEOUT_S       10
/* The one path served. */
#define GW_METRICS_HTTP_PATH "/metrics"

typedef struct _GwMetricsHttp GwMetricsHttp;

/* Listens on @address (the parsed metrics-listen). Fails when it cannot
 * bind; the error says where. */
GwMetricsHttp *gw_metrics_http_new(GwMetrics *metrics, GSocketAddress *address,
                                   GError **error) G_GNUC_WARN_UNUSED_RESULT;
/* The port bound (for a listen address with port 0: tests). */
guint16 gw_metrics_http_get_port(GwMetricsHttp *http);
/* Connections open now. */
guint gw_metrics_http_get_connections(GwMetricsHttp *http);
/* Stops listening and closes every connection. */
void gw_metrics_http_free(GwMetricsHttp *http);
G_DEFINE_AUTOPTR_CLEANUP_FUNC(GwMetricsHttp, gw_metrics_http_free)

G_END_DECLS
