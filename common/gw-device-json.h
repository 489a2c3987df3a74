/* The JSON form of a device description: the device list `usbgwctl policy
 * check --devices` reads, and (later) what the daemon reports. Schema in
 * docs/policy.md ("Device lists"). */
#pragma once

#include <json-glib/json-glib.h>

#include "policy.h"

G_BEGIN_DECLS

/* Every problem is reported as "WHERE.field: what is wrong". */
PolicyDevice *gw_device_from_json(JsonNode *node, const gchar *where,
                                  GError **error) G_GNUC_WARN_UNUSED_RESULT;
void gw_device_to_json(const PolicyDevice *device, JsonBuilder *builder);
/* Reads {"devices": [...]} or a bare array; returns PolicyDevice elements. */
GPtrArray *gw_device_list_load(const gchar *path, GError **error) G_GNUC_WARN_UNUSED_RESULT;
GPtrArray *gw_device_list_load_data(const gchar *data, gssize len, const gchar *name,
                                    GError **error) G_GNUC_WARN_UNUSED_RESULT;

G_END_DECLS
