/* What GwClusterPool's parts share of its keys and values
 * (gw-cluster-pool-key.c, no I/O; the public part is in gw-cluster-pool.h).
 * Not for use outside gateway/cluster and its tests. */
#pragma once

#include <json-glib/json-glib.h>

#include "gw-cluster-pool.h"

G_BEGIN_DECLS

/* A pool name (@what "pool") or device name (@what "device"): one
 * component of an etcd key; INVALID naming it otherwise. */
gboolean gw_cluster_pool_check_component(const gchar *what, const gchar *name, GError **error);
/* A gateway or VM name (@what says which): it goes into the JSON value. */
gboolean gw_cluster_pool_check_text(const gchar *what, const gchar *name, GError **error);
/* The etcd key of device @device of pool @pool_name (both checked). */
gchar *gw_cluster_pool_key(const gchar *pool_name, const gchar *device) G_GNUC_WARN_UNUSED_RESULT;
/* A pool key's value: {"gateway": @gateway, "vm": @vm}. */
GBytes *gw_cluster_pool_value(const gchar *gateway, const gchar *vm) G_GNUC_WARN_UNUSED_RESULT;
GwClusterPoolHold *
gw_cluster_pool_hold_copy(const GwClusterPoolHold *hold) G_GNUC_WARN_UNUSED_RESULT;

G_END_DECLS
