/* GwEtcd: an asynchronous client of etcd's v3 JSON gateway (grpc-gateway
 * over HTTP or HTTPS, etcd 3.4 and later), for usbgwd's cluster mode
 * (docs/cluster.md, "The etcd client").
 *
 * What it speaks: POST of a JSON body to /v3/lease/grant, /v3/lease/
 * keepalive, /v3/lease/revoke, /v3/kv/put, /v3/kv/range, /v3/kv/deleterange,
 * /v3/kv/txn, and the streaming /v3/watch (one JSON object per line, one
 * per event batch). Keys and values are base64 on the wire; this API takes
 * and gives raw bytes: keys as NUL-terminated strings, values as GBytes
 * (binary-safe). etcd's 64-bit integers (revisions, lease ids) are gint64.
 *
 * Endpoints: a list of base URLs (the members' client URLs). An operation
 * goes to the endpoint that answered last; when the connection fails (no
 * connection, a connection lost before the whole answer, a timeout) or the
 * member answers "unavailable" (HTTP 503, gRPC code 14: no leader, leader
 * changed), the same request goes to the next endpoint, each endpoint once
 * per operation. Only when none answered does the operation fail
 * (GW_ETCD_ERROR_UNREACHABLE, with the last endpoint's error). A put or
 * txn whose answer was lost may have been applied by the member that went
 * away; a retried txn then reports the outcome of its second run.
 *
 * Errors: every error of an operation starts with "etcd OP at ENDPOINT: "
 * and says what went wrong: the HTTP status, etcd's own message from its
 * JSON error answer, or which JSON member was missing or of the wrong
 * type. A bad answer never crashes nor aborts (the parser is fuzzed,
 * tests/fuzz/fuzz-etcd-json.c).
 *
 * Bounds: a unary answer larger than GW_ETCD_MAX_RESPONSE, one watch line
 * (one event batch) larger than GW_ETCD_MAX_LINE and JSON nested deeper
 * than GW_ETCD_MAX_JSON_DEPTH are errors (GW_ETCD_ERROR_TOO_LARGE,
 * GW_ETCD_ERROR_PROTOCOL), never unbounded growth.
 *
 * Threading: everything runs on the thread-default main context of the
 * thread that called gw_etcd_new(), and every function must be called from
 * that thread. Callbacks run there too, never from inside the call that
 * started the operation.
 *
 * Ownership: GwEtcd is a GObject; every operation in flight holds a
 * reference, so dropping yours while operations run is safe (cancel them
 * with their GCancellable to end them early). Results returned by the
 * _finish() functions are owned by the caller. A GwEtcdWatch and a
 * GwEtcdLeaseKeeper hold a reference on their GwEtcd; their callbacks are
 * never called after their _free(). */
#pragma once

#include <gio/gio.h>

G_BEGIN_DECLS

#define GW_ETCD_ERROR (gw_etcd_error_quark())
GQuark gw_etcd_error_quark(void);

typedef enum {
    GW_ETCD_ERROR_UNREACHABLE,     /* no endpoint answered (the last one's error is named) */
    GW_ETCD_ERROR_HTTP,            /* an HTTP status other than 200 without etcd's error JSON */
    GW_ETCD_ERROR_SERVER,          /* etcd answered with an error (its message is given) */
    GW_ETCD_ERROR_PROTOCOL,        /* bad JSON, a member missing or of the wrong type */
    GW_ETCD_ERROR_TOO_LARGE,       /* an answer or watch line over its bound */
    GW_ETCD_ERROR_LEASE_NOT_FOUND, /* the lease expired or was revoked */
    GW_ETCD_ERROR_COMPACTED,       /* a watch's start revision was compacted away */
    GW_ETCD_ERROR_WATCH_CANCELED,  /* etcd cancelled a watch (its reason is given) */
    GW_ETCD_ERROR_INVALID,         /* a bad argument: endpoint URL, empty key, TTL */
} GwEtcdError;

/* Largest unary answer read (a range answer with many keys is the big one:
 * use a limit). */
#define GW_ETCD_MAX_RESPONSE (16 * 1024 * 1024)
/* Largest line of a watch stream: one event batch. */
#define GW_ETCD_MAX_LINE (4 * 1024 * 1024)
/* Deepest JSON nesting accepted (etcd's answers nest 4 deep). */
#define GW_ETCD_MAX_JSON_DEPTH 32
/* Seconds a unary operation waits on one endpoint before it moves to the
 * next (libsoup's I/O timeout). */
#define GW_ETCD_TIMEOUT_S 5
/* A lease keeper sends a keepalive every TTL / GW_ETCD_KEEPALIVE_PER_TTL:
 * two may fail (or a member may be slow to elect a leader) before the
 * lease is at risk. */
#define GW_ETCD_KEEPALIVE_PER_TTL 3

/* One key-value pair as etcd holds it. For a delete event only key and
 * mod_revision (the revision of the delete) are set. */
typedef struct {
    gchar *key;    /* owned; the raw key bytes, NUL-terminated */
    gsize key_len; /* bytes in key, without the NUL */
    GBytes *value; /* owned; never NULL (empty when etcd sent none) */
    gint64 create_revision;
    gint64 mod_revision;
    gint64 version;
    gint64 lease; /* 0: no lease */
} GwEtcdKv;

void gw_etcd_kv_free(GwEtcdKv *kv);
G_DEFINE_AUTOPTR_CLEANUP_FUNC(GwEtcdKv, gw_etcd_kv_free)

typedef enum {
    GW_ETCD_EVENT_PUT,
    GW_ETCD_EVENT_DELETE,
} GwEtcdEventType;

typedef struct {
    GwEtcdEventType type;
    GwEtcdKv *kv; /* owned */
} GwEtcdEvent;

void gw_etcd_event_free(GwEtcdEvent *event);
G_DEFINE_AUTOPTR_CLEANUP_FUNC(GwEtcdEvent, gw_etcd_event_free)

#define GW_TYPE_ETCD (gw_etcd_get_type())
G_DECLARE_FINAL_TYPE(GwEtcd, gw_etcd, GW, ETCD, GObject)

/* A client of the members at @endpoints (base URLs, http:// or https://,
 * e.g. "http://127.0.0.1:2379"). Fails (GW_ETCD_ERROR_INVALID) when the
 * list is empty or a URL is not an absolute http(s) URL; the error names
 * it. Nothing is connected before the first operation. */
GwEtcd *gw_etcd_new(const gchar *const *endpoints, GError **error) G_GNUC_WARN_UNUSED_RESULT;
/* TLS for https:// members: use @cert_file (PEM) with its key @key_file
 * (PEM; NULL: the key is in @cert_file) as our client certificate, and
 * trust only the CAs of @ca_file (PEM) for the members' certificates.
 * Either may be NULL: no client certificate, or the system's CAs. A
 * member's certificate must chain to a trusted CA, be valid now and name
 * the endpoint's host (an IP address in the URL needs it as an IP
 * subjectAltName); one that does not is never accepted: the endpoint
 * fails with an error saying what was wrong ("the member's certificate
 * was refused: not issued by a trusted CA") and the next is tried. Fails
 * (GW_ETCD_ERROR_INVALID) naming the file that cannot be read or holds no
 * certificate or key. Call before the first operation. */
gboolean gw_etcd_set_tls(GwEtcd *etcd, const gchar *cert_file, const gchar *key_file,
                         const gchar *ca_file, GError **error) G_GNUC_WARN_UNUSED_RESULT;
/* The endpoint the next operation goes to first (the one that answered
 * last). Borrowed. */
const gchar *gw_etcd_get_endpoint(GwEtcd *etcd);
/* Why the last endpoint that failed did ("URL: message": no answer in
 * time, refused, unavailable; not etcd's own refusals), while no endpoint
 * has answered since; NULL when one has. Any operation or watch counts.
 * Borrowed until the next operation's end. */
const gchar *gw_etcd_get_failure(GwEtcd *etcd);

/* Leases. @ttl_s: seconds, > 0. */
void gw_etcd_lease_grant_async(GwEtcd *etcd, gint64 ttl_s, GCancellable *cancellable,
                               GAsyncReadyCallback callback, gpointer user_data);
/* The new lease's id and the TTL etcd granted (@ttl_s nullable). */
gboolean gw_etcd_lease_grant_finish(GwEtcd *etcd, GAsyncResult *result, gint64 *lease_id,
                                    gint64 *ttl_s, GError **error) G_GNUC_WARN_UNUSED_RESULT;
/* One keepalive of @lease_id: its TTL starts again. */
void gw_etcd_lease_keepalive_async(GwEtcd *etcd, gint64 lease_id, GCancellable *cancellable,
                                   GAsyncReadyCallback callback, gpointer user_data);
/* The lease's remaining TTL (nullable). A lease that expired or was
 * revoked is GW_ETCD_ERROR_LEASE_NOT_FOUND. */
gboolean gw_etcd_lease_keepalive_finish(GwEtcd *etcd, GAsyncResult *result, gint64 *ttl_s,
                                        GError **error) G_GNUC_WARN_UNUSED_RESULT;
/* Revokes @lease_id: the keys attached to it are deleted. */
void gw_etcd_lease_revoke_async(GwEtcd *etcd, gint64 lease_id, GCancellable *cancellable,
                                GAsyncReadyCallback callback, gpointer user_data);
gboolean gw_etcd_lease_revoke_finish(GwEtcd *etcd, GAsyncResult *result,
                                     GError **error) G_GNUC_WARN_UNUSED_RESULT;

/* Puts @key = @value (borrowed), attached to @lease_id (0: none). */
void gw_etcd_put_async(GwEtcd *etcd, const gchar *key, GBytes *value, gint64 lease_id,
                       GCancellable *cancellable, GAsyncReadyCallback callback, gpointer user_data);
/* @revision (nullable): the store's revision after the put. */
gboolean gw_etcd_put_finish(GwEtcd *etcd, GAsyncResult *result, gint64 *revision,
                            GError **error) G_GNUC_WARN_UNUSED_RESULT;

/* Reads @key, or every key starting with @key when @prefix, in key order,
 * at most @limit of them (0: no limit; mind GW_ETCD_MAX_RESPONSE). */
void gw_etcd_range_async(GwEtcd *etcd, const gchar *key, gboolean prefix, gint64 limit,
                         GCancellable *cancellable, GAsyncReadyCallback callback,
                         gpointer user_data);
/* The pairs (GwEtcdKv, owned by the array), @revision (nullable) the
 * store's revision they were read at (a watch from revision + 1 misses
 * nothing), @more (nullable) whether the limit left some out. */
GPtrArray *gw_etcd_range_finish(GwEtcd *etcd, GAsyncResult *result, gint64 *revision,
                                gboolean *more, GError **error) G_GNUC_WARN_UNUSED_RESULT;

/* Deletes @key, or every key starting with @key when @prefix. */
void gw_etcd_delete_async(GwEtcd *etcd, const gchar *key, gboolean prefix,
                          GCancellable *cancellable, GAsyncReadyCallback callback,
                          gpointer user_data);
/* @deleted (nullable): how many keys went; @revision (nullable). */
gboolean gw_etcd_delete_finish(GwEtcd *etcd, GAsyncResult *result, gint64 *deleted,
                               gint64 *revision, GError **error) G_GNUC_WARN_UNUSED_RESULT;

/* A transaction: if every compare holds, the success ops run, otherwise
 * the failure ops, atomically. Built with the calls below, then run with
 * gw_etcd_txn_async(). A plain struct: new/free, one owner. */
typedef struct _GwEtcdTxn GwEtcdTxn;

GwEtcdTxn *gw_etcd_txn_new(void);
void gw_etcd_txn_free(GwEtcdTxn *txn);
G_DEFINE_AUTOPTR_CLEANUP_FUNC(GwEtcdTxn, gw_etcd_txn_free)
/* Compare: @key does not exist (create_revision == 0). */
void gw_etcd_txn_if_absent(GwEtcdTxn *txn, const gchar *key);
/* Compare: @key's mod_revision == @revision. */
void gw_etcd_txn_if_mod_revision(GwEtcdTxn *txn, const gchar *key, gint64 revision);
/* Compare: @key's value == @value (borrowed). */
void gw_etcd_txn_if_value(GwEtcdTxn *txn, const gchar *key, GBytes *value);
/* An op of the success branch (@on_success) or the failure branch. */
void gw_etcd_txn_put(GwEtcdTxn *txn, gboolean on_success, const gchar *key, GBytes *value,
                     gint64 lease_id);
void gw_etcd_txn_delete(GwEtcdTxn *txn, gboolean on_success, const gchar *key);

/* Runs @txn (borrowed: its request is built before this returns). */
void gw_etcd_txn_async(GwEtcd *etcd, const GwEtcdTxn *txn, GCancellable *cancellable,
                       GAsyncReadyCallback callback, gpointer user_data);
/* TRUE when etcd ran the transaction; then @succeeded says whether the
 * compares held (the success branch ran), @revision (nullable) the store's
 * revision after it. */
gboolean gw_etcd_txn_finish(GwEtcd *etcd, GAsyncResult *result, gboolean *succeeded,
                            gint64 *revision, GError **error) G_GNUC_WARN_UNUSED_RESULT;

/* A watch on every key starting with a prefix, from a revision on.
 * Events come in etcd's order, one call per batch etcd sent. When the
 * stream breaks (a member went away), the watch starts again on the next
 * endpoint from the revision after the last event delivered, so no event
 * is lost or repeated. It ends, with one last call carrying @error, when
 * every endpoint failed in a row, when etcd cancels it (the start revision
 * was compacted: GW_ETCD_ERROR_COMPACTED, or another reason:
 * GW_ETCD_ERROR_WATCH_CANCELED) or on a bad stream (PROTOCOL, TOO_LARGE).
 * @events (GwEtcdEvent, borrowed for the call) is NULL in that last call. */
typedef struct _GwEtcdWatch GwEtcdWatch;
typedef void (*GwEtcdWatchFunc)(GwEtcdWatch *watch, GPtrArray *events, const GError *error,
                                gpointer user_data);

/* Starts watching @prefix (every key when empty) from @start_revision
 * (> 0; the revision of a range plus one). */
GwEtcdWatch *gw_etcd_watch_new(GwEtcd *etcd, const gchar *prefix, gint64 start_revision,
                               GwEtcdWatchFunc func, gpointer user_data);
/* Whether etcd confirmed the watch on the current stream. */
gboolean gw_etcd_watch_is_created(GwEtcdWatch *watch);
/* Stops the watch (the stream is closed) and frees it. */
void gw_etcd_watch_free(GwEtcdWatch *watch);
G_DEFINE_AUTOPTR_CLEANUP_FUNC(GwEtcdWatch, gw_etcd_watch_free)

/* Keeps a lease alive: a keepalive every TTL/3 (GW_ETCD_KEEPALIVE_PER_TTL),
 * each going from endpoint to endpoint like any operation, and one TTL/10
 * after a keepalive that failed. The loss is found at G_PRIORITY_HIGH, so
 * a process paused past the deadline learns of it before it dispatches
 * anything of default priority. @lost is called once, and the keeper
 * stops, when etcd says the lease is gone or when 9/10 of the TTL passed since the send of the
 * last keepalive that succeeded (etcd unreachable: the lease must be taken as lost before etcd
 * may expire it); @error says which.
 */
typedef struct _GwEtcdLeaseKeeper GwEtcdLeaseKeeper;
typedef void (*GwEtcdLeaseLostFunc)(GwEtcdLeaseKeeper *keeper, const GError *error,
                                    gpointer user_data);

/* @ttl_s: the TTL granted (> 0). The first keepalive goes after TTL/3. */
GwEtcdLeaseKeeper *gw_etcd_lease_keeper_new(GwEtcd *etcd, gint64 lease_id, gint64 ttl_s,
                                            GwEtcdLeaseLostFunc lost, gpointer user_data);
/* The grant's request was sent at @sent_us (g_get_monotonic_time()): the
 * lease's life counts from then, not from the keeper's creation (a slow
 * grant answer would otherwise make the keeper trust the lease too long).
 * Call right after gw_etcd_lease_keeper_new(). */
void gw_etcd_lease_keeper_set_granted_at(GwEtcdLeaseKeeper *keeper, gint64 sent_us);
/* The send time (g_get_monotonic_time()) of the last keepalive that
 * succeeded, or of the grant. */
gint64 gw_etcd_lease_keeper_get_renewed_at(GwEtcdLeaseKeeper *keeper);
/* Keepalives that succeeded so far. */
guint gw_etcd_lease_keeper_get_renewals(GwEtcdLeaseKeeper *keeper);
/* Stops the keepalives (the lease is left to expire; revoke it to end it
 * at once) and frees the keeper. */
void gw_etcd_lease_keeper_free(GwEtcdLeaseKeeper *keeper);
G_DEFINE_AUTOPTR_CLEANUP_FUNC(GwEtcdLeaseKeeper, gw_etcd_lease_keeper_free)

G_END_DECLS
