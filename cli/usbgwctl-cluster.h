/* `usbgwctl status` in cluster mode: the lines its "cluster" object
 * (docs/cluster.md) prints as.
 *
 * Threading: plain functions on the caller's thread. */
#pragma once

#include <json-glib/json-glib.h>

G_BEGIN_DECLS

/* "cluster: …" and one line per hold (held, waiting with the reason);
 * "cluster: off" when @cluster is NULL (usbgwd runs without cluster-etcd). */
void usbgwctl_cluster_print(JsonObject *cluster);

G_END_DECLS
