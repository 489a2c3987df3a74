/* The etcd v3 JSON gateway's wire, without any I/O: request bodies built,
 * answers parsed, a watch stream cut into lines.
 *
 * etcd's JSON gateway (grpc-gateway) writes 64-bit integers as strings
 * ("revision":"7"), leaves out members whose value is zero, false or empty
 * (a put event has no "type", an empty value no "value"), and encodes
 * keys and values in base64. A unary error is an object with "error",
 * "message" and "code" (the gRPC code) sent with an HTTP status other than
 * 200; inside a stream (watch, keepalive) it is {"error": {"grpc_code",
 * "http_code", "message", "http_status"}}, and each answer is wrapped in
 * {"result": …}.
 *
 * The parsers take what a member sent and either return typed values or
 * fail with an error saying what is wrong (bad JSON, nesting deeper than
 * GW_ETCD_MAX_JSON_DEPTH, a member missing or of the wrong type, bad
 * base64). The caller prefixes the operation and the endpoint.
 *
 * Ownership: results are the caller's; JsonObjects are borrowed from the
 * JsonNode the caller holds. No threads, no global state. */
#pragma once

#include <json-glib/json-glib.h>

#include "gw-etcd.h"

G_BEGIN_DECLS

/* A copy of @text (from an etcd answer, or an error that quotes one) fit
 * for a log line: invalid UTF-8 made valid, control characters '?'. */
gchar *gw_etcd_json_printable(const gchar *text) G_GNUC_WARN_UNUSED_RESULT;

/* gRPC status codes etcd sends that this client acts on. */
#define GW_ETCD_GRPC_NOT_FOUND   5
#define GW_ETCD_GRPC_UNAVAILABLE 14

/* Request bodies (JSON text, owned by the caller). */
gchar *gw_etcd_json_lease_grant_request(gint64 ttl_s);
gchar *gw_etcd_json_lease_id_request(gint64 lease_id);
gchar *gw_etcd_json_put_request(const gchar *key, GBytes *value, gint64 lease_id);
gchar *gw_etcd_json_range_request(const gchar *key, gboolean prefix, gint64 limit);
gchar *gw_etcd_json_delete_request(const gchar *key, gboolean prefix);
gchar *gw_etcd_json_txn_request(const GwEtcdTxn *txn);
gchar *gw_etcd_json_watch_request(const gchar *prefix, gint64 start_revision);

/* @data as JSON whose root is an object (depth bounded). When the object
 * is etcd's error answer (unary or in a stream), fails with
 * GW_ETCD_ERROR_SERVER (GW_ETCD_ERROR_LEASE_NOT_FOUND for a missing lease)
 * carrying etcd's message, and sets @grpc_code (nullable; -1 when none). */
JsonNode *gw_etcd_json_parse(const gchar *data, gsize len, gint *grpc_code,
                             GError **error) G_GNUC_WARN_UNUSED_RESULT;

/* The answers, from the root object gw_etcd_json_parse() returned. */
gboolean gw_etcd_json_parse_lease_grant(JsonObject *root, gint64 *lease_id, gint64 *ttl_s,
                                        GError **error);
/* A TTL of 0 or less (etcd leaves it out) is GW_ETCD_ERROR_LEASE_NOT_FOUND. */
gboolean gw_etcd_json_parse_keepalive(JsonObject *root, gint64 *ttl_s, GError **error);
/* The header's revision (every answer has a header). */
gboolean gw_etcd_json_parse_header(JsonObject *root, gint64 *revision, GError **error);
GPtrArray *gw_etcd_json_parse_range(JsonObject *root, gint64 *revision, gboolean *more,
                                    GError **error);
gboolean gw_etcd_json_parse_delete(JsonObject *root, gint64 *deleted, gint64 *revision,
                                   GError **error);
gboolean gw_etcd_json_parse_txn(JsonObject *root, gboolean *succeeded, gint64 *revision,
                                GError **error);

/* One line of a watch stream. */
typedef struct {
    gint64 revision; /* the header's */
    gboolean created;
    gboolean canceled;
    gint64 compact_revision;
    gchar *cancel_reason; /* owned, nullable */
    GPtrArray *events;    /* owned; GwEtcdEvent, in etcd's order */
} GwEtcdWatchResponse;

gboolean gw_etcd_json_parse_watch(JsonObject *root, GwEtcdWatchResponse *out, GError **error);
void gw_etcd_watch_response_clear(GwEtcdWatchResponse *response);

/* A stream's bytes cut at '\n' into lines, none longer than @max: the
 * bytes of an unfinished line are held (at most @max), whole lines are
 * queued until popped. */
typedef struct {
    GByteArray *partial; /* owned */
    GQueue lines;        /* owned GBytes */
    gsize max;
} GwEtcdLineBuffer;

void gw_etcd_line_buffer_init(GwEtcdLineBuffer *buffer, gsize max);
void gw_etcd_line_buffer_clear(GwEtcdLineBuffer *buffer);
/* Takes @len bytes; fails (GW_ETCD_ERROR_TOO_LARGE) when a line grows
 * past the bound. Empty lines are dropped. */
gboolean gw_etcd_line_buffer_push(GwEtcdLineBuffer *buffer, const guint8 *data, gsize len,
                                  GError **error);
/* The oldest whole line (without its '\n'), or NULL. */
GBytes *gw_etcd_line_buffer_pop(GwEtcdLineBuffer *buffer) G_GNUC_WARN_UNUSED_RESULT;

G_END_DECLS
