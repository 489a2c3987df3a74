/* GwEtcd (gw-etcd.h): the client, its endpoints, and the unary operations
 * (one POST, one JSON answer), each a GTask that moves to the next
 * endpoint when the one it tried did not answer. */
#include <string.h>

#include "gw-etcd-json.h"
#include "gw-etcd-private.h"

/* Bytes asked for per read of an answer. */
#define GW_ETCD_READ_CHUNK 65536
/* Connections per member for unary operations, and for watches (one
 * stream each). */
#define GW_ETCD_MAX_CONNS         8
#define GW_ETCD_MAX_WATCH_STREAMS 64

struct _GwEtcd {
    GObject parent;
    GPtrArray *endpoints;         /* owned gchar*: base URLs without a trailing '/' */
    guint current;                /* the endpoint tried first */
    GMainContext *context;        /* owned ref */
    SoupSession *session;         /* owned: unary operations */
    SoupSession *stream_session;  /* owned: watches */
    GTlsCertificate *client_cert; /* owned, nullable: ours, for https:// members */
    gint64 failed_us;             /* monotonic: an endpoint's last failure */
    gint64 answered_us;           /* monotonic: an endpoint's last answer */
    gchar *failure;               /* owned, nullable: the last failure, with its endpoint */
};

G_DEFINE_TYPE(GwEtcd, gw_etcd, G_TYPE_OBJECT)

static void
gw_etcd_finalize(GObject *object)
{
    GwEtcd *etcd = GW_ETCD(object);

    g_clear_object(&etcd->session);
    g_clear_object(&etcd->stream_session);
    g_clear_object(&etcd->client_cert);
    g_clear_pointer(&etcd->endpoints, g_ptr_array_unref);
    g_clear_pointer(&etcd->failure, g_free);
    g_clear_pointer(&etcd->context, g_main_context_unref);
    G_OBJECT_CLASS(gw_etcd_parent_class)->finalize(object);
}

static void
gw_etcd_class_init(GwEtcdClass *klass)
{
    G_OBJECT_CLASS(klass)->finalize = gw_etcd_finalize;
}

static void
gw_etcd_init(GwEtcd *etcd)
{
}

/* @url as a base URL (no trailing '/'), or an error naming it. */
static gchar *
gw_etcd_check_endpoint(const gchar *url, GError **error)
{
    g_autoptr(GUri) uri = NULL;
    g_autoptr(GError) local = NULL;
    const gchar *scheme;
    gsize len;

    uri = g_uri_parse(url, G_URI_FLAGS_NONE, &local);
    if (uri == NULL) {
        g_set_error(error, GW_ETCD_ERROR, GW_ETCD_ERROR_INVALID, "etcd endpoint \"%s\": %s", url,
                    local->message);
        return NULL;
    }
    scheme = g_uri_get_scheme(uri);
    if ((g_strcmp0(scheme, "http") != 0 && g_strcmp0(scheme, "https") != 0) ||
        g_uri_get_host(uri) == NULL || g_uri_get_host(uri)[0] == '\0' ||
        g_uri_get_query(uri) != NULL || g_uri_get_fragment(uri) != NULL) {
        g_set_error(error, GW_ETCD_ERROR, GW_ETCD_ERROR_INVALID,
                    "etcd endpoint \"%s\": not an http:// or https:// URL of a host", url);
        return NULL;
    }
    len = strlen(url);
    while (len > 0 && url[len - 1] == '/')
        len--;
    return g_strndup(url, len);
}

GwEtcd *
gw_etcd_new(const gchar *const *endpoints, GError **error)
{
    g_autoptr(GwEtcd) etcd = g_object_new(GW_TYPE_ETCD, NULL);

    etcd->endpoints = g_ptr_array_new_with_free_func(g_free);
    for (guint i = 0; endpoints != NULL && endpoints[i] != NULL; i++) {
        gchar *url = gw_etcd_check_endpoint(endpoints[i], error);
        if (url == NULL)
            return NULL;
        g_ptr_array_add(etcd->endpoints, url);
    }
    if (etcd->endpoints->len == 0) {
        g_set_error_literal(error, GW_ETCD_ERROR, GW_ETCD_ERROR_INVALID, "etcd: no endpoint given");
        return NULL;
    }
    etcd->context = g_main_context_ref_thread_default();
    /* The members are reached directly: no proxy from the environment or
     * the desktop's settings (libproxy) is asked. */
    etcd->session = soup_session_new_with_options(
        "proxy-resolver", NULL, "timeout", GW_ETCD_TIMEOUT_S, "max-conns-per-host",
        GW_ETCD_MAX_CONNS, "user-agent", "usbgw/" PACKAGE_VERSION, NULL);
    etcd->stream_session = soup_session_new_with_options(
        "proxy-resolver", NULL, "timeout", 0, "max-conns",
        GW_ETCD_MAX_WATCH_STREAMS * (gint)etcd->endpoints->len, "max-conns-per-host",
        GW_ETCD_MAX_WATCH_STREAMS, "user-agent", "usbgw/" PACKAGE_VERSION, NULL);
    return g_steal_pointer(&etcd);
}

/* ---- TLS: our client certificate, the members' CA ---- */

/* A message's data: the GTlsCertificateFlags of the member certificate
 * refused while connecting it. */
#define GW_ETCD_TLS_ERRORS_KEY "usbgw-etcd-tls-errors"

/* Whether @path can be read, or an error naming it as @what. */
static gboolean
gw_etcd_check_readable(const gchar *what, const gchar *path, GError **error)
{
    g_autoptr(GError) local = NULL;
    g_autofree gchar *contents = NULL;

    if (!g_file_get_contents(path, &contents, NULL, &local)) {
        g_set_error(error, GW_ETCD_ERROR, GW_ETCD_ERROR_INVALID, "etcd %s %s: %s", what, path,
                    local->message);
        return FALSE;
    }
    return TRUE;
}

/* The CAs of @ca_file as a database (GIO's file database wants an
 * absolute path), or an error naming the file. */
static GTlsDatabase *
gw_etcd_load_ca(const gchar *ca_file, GError **error)
{
    g_autofree gchar *path = g_canonicalize_filename(ca_file, NULL);
    g_autoptr(GError) local = NULL;
    g_autolist(GTlsCertificate) cas = NULL;
    GTlsDatabase *database;

    if (!gw_etcd_check_readable("CA file", ca_file, error))
        return NULL;
    cas = g_tls_certificate_list_new_from_file(path, &local);
    if (cas == NULL) {
        g_set_error(error, GW_ETCD_ERROR, GW_ETCD_ERROR_INVALID, "etcd CA file %s: %s", ca_file,
                    local != NULL ? local->message : "no PEM certificate in it");
        return NULL;
    }
    database = g_tls_file_database_new(path, &local);
    if (database == NULL) {
        g_set_error(error, GW_ETCD_ERROR, GW_ETCD_ERROR_INVALID, "etcd CA file %s: %s", ca_file,
                    local->message);
        return NULL;
    }
    return database;
}

gboolean
gw_etcd_set_tls(GwEtcd *etcd, const gchar *cert_file, const gchar *key_file, const gchar *ca_file,
                GError **error)
{
    g_autoptr(GTlsCertificate) cert = NULL;
    g_autoptr(GTlsDatabase) database = NULL;
    g_autoptr(GError) local = NULL;

    if (cert_file == NULL && key_file != NULL) {
        g_set_error(error, GW_ETCD_ERROR, GW_ETCD_ERROR_INVALID,
                    "etcd client key %s: given without a client certificate", key_file);
        return FALSE;
    }
    if (cert_file != NULL) {
        if (key_file == NULL)
            key_file = cert_file;
        if (!gw_etcd_check_readable("client certificate", cert_file, error) ||
            !gw_etcd_check_readable("client key", key_file, error))
            return FALSE;
        cert = g_tls_certificate_new_from_files(cert_file, key_file, &local);
        if (cert == NULL) {
            g_set_error(error, GW_ETCD_ERROR, GW_ETCD_ERROR_INVALID,
                        "etcd client certificate %s with key %s: %s", cert_file, key_file,
                        local->message);
            return FALSE;
        }
    }
    if (ca_file != NULL) {
        database = gw_etcd_load_ca(ca_file, error);
        if (database == NULL)
            return FALSE;
        g_object_set(etcd->session, "tls-database", database, NULL);
        g_object_set(etcd->stream_session, "tls-database", database, NULL);
    }
    g_set_object(&etcd->client_cert, cert);
    return TRUE;
}

/* The server certificate's problems as found while connecting @msg;
 * returning FALSE refuses the certificate (the message fails). */
static gboolean
gw_etcd_reject_certificate(SoupMessage *msg, GTlsCertificate *certificate,
                           GTlsCertificateFlags errors, gpointer user_data)
{
    g_object_set_data(G_OBJECT(msg), GW_ETCD_TLS_ERRORS_KEY, GUINT_TO_POINTER(errors));
    return FALSE;
}

/* Before a TLS handshake: offer HTTP/1.1 alone. etcd would pick HTTP/2,
 * whose client in libsoup 3.2 mishandles reused connections; HTTP/1.1
 * also keeps https:// members to the same connection limits as http://
 * ones (one request or watch per connection). */
static void
gw_etcd_network_event(SoupMessage *msg, GSocketClientEvent event, GIOStream *connection,
                      gpointer user_data)
{
    static const gchar *const http1[] = {"http/1.1", NULL};

    if (event == G_SOCKET_CLIENT_TLS_HANDSHAKING && G_IS_TLS_CONNECTION(connection))
        g_tls_connection_set_advertised_protocols(G_TLS_CONNECTION(connection), http1);
}

void
gw_etcd_prepare_message(GwEtcd *etcd, SoupMessage *msg)
{
    if (etcd->client_cert != NULL)
        soup_message_set_tls_client_certificate(msg, etcd->client_cert);
    g_signal_connect(msg, "accept-certificate", G_CALLBACK(gw_etcd_reject_certificate), NULL);
    g_signal_connect(msg, "network-event", G_CALLBACK(gw_etcd_network_event), NULL);
}

GError *
gw_etcd_explain_failure(GwEtcd *etcd, SoupMessage *msg, GError *error)
{
    static const struct {
        GTlsCertificateFlags flag;
        const gchar *what;
    } problems[] = {
        {G_TLS_CERTIFICATE_UNKNOWN_CA, "not issued by a trusted CA"},
        {G_TLS_CERTIFICATE_BAD_IDENTITY, "does not name the member's host"},
        {G_TLS_CERTIFICATE_NOT_ACTIVATED, "not valid yet"},
        {G_TLS_CERTIFICATE_EXPIRED, "expired"},
        {G_TLS_CERTIFICATE_REVOKED, "revoked"},
        {G_TLS_CERTIFICATE_INSECURE, "uses an insecure algorithm"},
        {G_TLS_CERTIFICATE_GENERIC_ERROR, "unusable"},
    };
    guint errors = msg != NULL
                       ? GPOINTER_TO_UINT(g_object_get_data(G_OBJECT(msg), GW_ETCD_TLS_ERRORS_KEY))
                       : 0;
    g_autoptr(GString) why = NULL;
    GError *explained;

    if (errors == 0 && (g_error_matches(error, G_TLS_ERROR, G_TLS_ERROR_MISC) ||
                        g_error_matches(error, G_TLS_ERROR, G_TLS_ERROR_HANDSHAKE) ||
                        g_error_matches(error, G_TLS_ERROR, G_TLS_ERROR_CERTIFICATE_REQUIRED))) {
        /* a member that refuses our certificate (or its absence) ends
         * the handshake with an alert that does not always say so */
        explained = g_error_new(G_TLS_ERROR, error->code, "TLS: %s (%s)", error->message,
                                etcd->client_cert == NULL
                                    ? "this client has no client certificate configured"
                                    : "the member may not accept this client's certificate");
        g_error_free(error);
        return explained;
    }
    if (errors == 0)
        return error;
    why = g_string_new(NULL);
    for (guint i = 0; i < G_N_ELEMENTS(problems); i++) {
        if (errors & problems[i].flag)
            g_string_append_printf(why, "%s%s", why->len > 0 ? ", " : "", problems[i].what);
    }
    if (why->len == 0)
        g_string_append_printf(why, "verification flags 0x%x", errors);
    explained =
        g_error_new(G_TLS_ERROR, G_TLS_ERROR_BAD_CERTIFICATE,
                    "TLS: the member's certificate was refused: %s (%s)", why->str, error->message);
    g_error_free(error);
    return explained;
}

const gchar *
gw_etcd_get_endpoint(GwEtcd *etcd)
{
    return g_ptr_array_index(etcd->endpoints, etcd->current);
}

GMainContext *
gw_etcd_get_context(GwEtcd *etcd)
{
    return etcd->context;
}

SoupSession *
gw_etcd_get_stream_session(GwEtcd *etcd)
{
    return etcd->stream_session;
}

guint
gw_etcd_get_n_endpoints(GwEtcd *etcd)
{
    return etcd->endpoints->len;
}

guint
gw_etcd_get_current(GwEtcd *etcd)
{
    return etcd->current;
}

const gchar *
gw_etcd_get_endpoint_at(GwEtcd *etcd, guint index)
{
    return g_ptr_array_index(etcd->endpoints, index % etcd->endpoints->len);
}

void
gw_etcd_endpoint_failed(GwEtcd *etcd, guint index, const GError *error)
{
    if (etcd->current == index)
        etcd->current = (index + 1) % etcd->endpoints->len;
    etcd->failed_us = g_get_monotonic_time();
    g_free(etcd->failure);
    etcd->failure = g_strdup_printf("%s: %s", gw_etcd_get_endpoint_at(etcd, index), error->message);
}

void
gw_etcd_endpoint_answered(GwEtcd *etcd, guint index)
{
    etcd->current = index % etcd->endpoints->len;
    etcd->answered_us = g_get_monotonic_time();
}

const gchar *
gw_etcd_get_failure(GwEtcd *etcd)
{
    return etcd->failure != NULL && etcd->failed_us >= etcd->answered_us ? etcd->failure : NULL;
}

/* ---- one unary call, endpoint after endpoint ---- */

typedef struct {
    const gchar *op;      /* static: "put", "range", … */
    const gchar *path;    /* static: "/v3/kv/put", … */
    GBytes *body;         /* owned */
    guint index;          /* the endpoint tried now */
    guint tried;          /* endpoints tried so far */
    SoupMessage *msg;     /* owned, nullable */
    GInputStream *stream; /* owned, nullable: the answer being read */
    GByteArray *answer;   /* owned */
    GError *last_error;   /* owned, nullable: why the last endpoint failed */
} GwEtcdCall;

static void
gw_etcd_call_free(GwEtcdCall *call)
{
    g_bytes_unref(call->body);
    g_clear_object(&call->msg);
    g_clear_object(&call->stream);
    g_byte_array_unref(call->answer);
    g_clear_error(&call->last_error);
    g_free(call);
}

static void gw_etcd_call_try(GTask *task);

static const gchar *
gw_etcd_call_endpoint(GTask *task)
{
    GwEtcdCall *call = g_task_get_task_data(task);
    return gw_etcd_get_endpoint_at(g_task_get_source_object(task), call->index);
}

/* Ends @task with @error (taken), prefixed with the operation and the
 * endpoint. */
static void
gw_etcd_call_fail(GTask *task, GError *error)
{
    GwEtcdCall *call = g_task_get_task_data(task);
    g_prefix_error(&error, "etcd %s at %s: ", call->op, gw_etcd_call_endpoint(task));
    g_task_return_error(task, error);
    g_object_unref(task);
}

/* The endpoint tried did not answer (@error, taken): the next one, or the
 * end when every endpoint was tried. */
static void
gw_etcd_call_next(GTask *task, GError *error)
{
    GwEtcdCall *call = g_task_get_task_data(task);
    GwEtcd *etcd = g_task_get_source_object(task);

    if (g_error_matches(error, G_IO_ERROR, G_IO_ERROR_CANCELLED)) {
        gw_etcd_call_fail(task, error);
        return;
    }
    g_debug("etcd %s at %s: %s; trying the next endpoint", call->op, gw_etcd_call_endpoint(task),
            error->message);
    gw_etcd_endpoint_failed(etcd, call->index, error);
    g_clear_error(&call->last_error);
    call->last_error = error;
    g_clear_object(&call->msg);
    g_clear_object(&call->stream);
    g_byte_array_set_size(call->answer, 0);
    call->tried++;
    if (call->tried >= gw_etcd_get_n_endpoints(etcd)) {
        g_task_return_new_error(task, GW_ETCD_ERROR, GW_ETCD_ERROR_UNREACHABLE,
                                "etcd %s: no endpoint answered (%u tried); last, at %s: %s",
                                call->op, call->tried, gw_etcd_call_endpoint(task),
                                call->last_error->message);
        g_object_unref(task);
        return;
    }
    call->index = (call->index + 1) % gw_etcd_get_n_endpoints(etcd);
    gw_etcd_call_try(task);
}

/* The whole answer is read: a JSON object, etcd's error, or another
 * endpoint to try when this member is unavailable. */
static void
gw_etcd_call_answered(GTask *task)
{
    GwEtcdCall *call = g_task_get_task_data(task);
    guint status = soup_message_get_status(call->msg);
    g_autoptr(GError) error = NULL;
    gint grpc_code = -1;
    JsonNode *root;

    root = gw_etcd_json_parse((const gchar *)call->answer->data, call->answer->len, &grpc_code,
                              &error);
    if (root != NULL && status == SOUP_STATUS_OK) {
        gw_etcd_endpoint_answered(g_task_get_source_object(task), call->index);
        g_task_return_pointer(task, root, (GDestroyNotify)json_node_unref);
        g_object_unref(task);
        return;
    }
    g_clear_pointer(&root, json_node_unref);
    /* a member without a leader, or one that lost it while answering */
    if (grpc_code == GW_ETCD_GRPC_UNAVAILABLE || status == SOUP_STATUS_SERVICE_UNAVAILABLE) {
        GError *next = g_error_new(GW_ETCD_ERROR, GW_ETCD_ERROR_SERVER, "HTTP %u: %s", status,
                                   error != NULL ? error->message : "unavailable");
        gw_etcd_call_next(task, next);
        return;
    }
    if (status != SOUP_STATUS_OK) {
        /* etcd's own error answer says more than the status */
        if (error != NULL &&
            (error->code == GW_ETCD_ERROR_SERVER || error->code == GW_ETCD_ERROR_LEASE_NOT_FOUND)) {
            g_prefix_error(&error, "HTTP %u: ", status);
            gw_etcd_call_fail(task, g_steal_pointer(&error));
        } else {
            gw_etcd_call_fail(task,
                              g_error_new(GW_ETCD_ERROR, GW_ETCD_ERROR_HTTP, "HTTP %u %s", status,
                                          soup_status_get_phrase(status) != NULL
                                              ? soup_status_get_phrase(status)
                                              : ""));
        }
        return;
    }
    gw_etcd_call_fail(task, g_steal_pointer(&error));
}

static void
gw_etcd_call_read_cb(GObject *source, GAsyncResult *result, gpointer user_data)
{
    GTask *task = user_data;
    GwEtcdCall *call = g_task_get_task_data(task);
    GError *error = NULL;
    g_autoptr(GBytes) bytes =
        g_input_stream_read_bytes_finish(G_INPUT_STREAM(source), result, &error);

    if (bytes == NULL) {
        /* the connection went away in the middle of the answer */
        gw_etcd_call_next(task, error);
        return;
    }
    if (g_bytes_get_size(bytes) == 0) {
        gw_etcd_call_answered(task);
        return;
    }
    if (call->answer->len + g_bytes_get_size(bytes) > GW_ETCD_MAX_RESPONSE) {
        gw_etcd_call_fail(task, g_error_new(GW_ETCD_ERROR, GW_ETCD_ERROR_TOO_LARGE,
                                            "answer larger than %d bytes", GW_ETCD_MAX_RESPONSE));
        return;
    }
    g_byte_array_append(call->answer, g_bytes_get_data(bytes, NULL),
                        (guint)g_bytes_get_size(bytes));
    g_input_stream_read_bytes_async(call->stream, GW_ETCD_READ_CHUNK, G_PRIORITY_DEFAULT,
                                    g_task_get_cancellable(task), gw_etcd_call_read_cb, task);
}

static void
gw_etcd_call_sent_cb(GObject *source, GAsyncResult *result, gpointer user_data)
{
    GTask *task = user_data;
    GwEtcdCall *call = g_task_get_task_data(task);
    GError *error = NULL;
    goffset length;

    call->stream = soup_session_send_finish(SOUP_SESSION(source), result, &error);
    if (call->stream == NULL) {
        gw_etcd_call_next(
            task, gw_etcd_explain_failure(g_task_get_source_object(task), call->msg, error));
        return;
    }
    length = soup_message_headers_get_content_length(soup_message_get_response_headers(call->msg));
    if (length > GW_ETCD_MAX_RESPONSE) {
        gw_etcd_call_fail(task, g_error_new(GW_ETCD_ERROR, GW_ETCD_ERROR_TOO_LARGE,
                                            "answer of %" G_GOFFSET_FORMAT " bytes, larger than %d",
                                            length, GW_ETCD_MAX_RESPONSE));
        return;
    }
    g_input_stream_read_bytes_async(call->stream, GW_ETCD_READ_CHUNK, G_PRIORITY_DEFAULT,
                                    g_task_get_cancellable(task), gw_etcd_call_read_cb, task);
}

static void
gw_etcd_call_try(GTask *task)
{
    GwEtcdCall *call = g_task_get_task_data(task);
    GwEtcd *etcd = g_task_get_source_object(task);
    g_autofree gchar *url = g_strconcat(gw_etcd_call_endpoint(task), call->path, NULL);

    call->msg = soup_message_new(SOUP_METHOD_POST, url);
    if (call->msg == NULL) {
        gw_etcd_call_fail(task, g_error_new(GW_ETCD_ERROR, GW_ETCD_ERROR_INVALID,
                                            "cannot make a request of \"%s\"", url));
        return;
    }
    gw_etcd_prepare_message(etcd, call->msg);
    soup_message_set_request_body_from_bytes(call->msg, "application/json", call->body);
    soup_session_send_async(etcd->session, call->msg, G_PRIORITY_DEFAULT,
                            g_task_get_cancellable(task), gw_etcd_call_sent_cb, task);
}

/* Starts @op: POST of @body (taken) to @path, answer as a JsonNode. */
static void
gw_etcd_call(GwEtcd *etcd, const gchar *op, const gchar *path, gchar *body,
             GCancellable *cancellable, GAsyncReadyCallback callback, gpointer user_data,
             gpointer source_tag)
{
    GTask *task = g_task_new(etcd, cancellable, callback, user_data);
    GwEtcdCall *call = g_new0(GwEtcdCall, 1);

    g_task_set_source_tag(task, source_tag);
    call->op = op;
    call->path = path;
    call->body = g_bytes_new_take(body, strlen(body));
    call->index = etcd->current;
    call->answer = g_byte_array_new();
    g_task_set_task_data(task, call, (GDestroyNotify)gw_etcd_call_free);
    gw_etcd_call_try(task);
}

/* The answer's root object, or the call's error. @call_out: the call, to
 * name it in a parse error. */
static JsonNode *
gw_etcd_call_finish(GwEtcd *etcd, GAsyncResult *result, gpointer source_tag, GwEtcdCall **call_out,
                    GError **error)
{
    g_return_val_if_fail(g_task_is_valid(result, etcd), NULL);
    g_return_val_if_fail(g_task_get_source_tag(G_TASK(result)) == source_tag, NULL);
    *call_out = g_task_get_task_data(G_TASK(result));
    return g_task_propagate_pointer(G_TASK(result), error);
}

/* A parse error of @call's answer, named. */
static gboolean
gw_etcd_parse_failed(GwEtcd *etcd, GwEtcdCall *call, GError **error)
{
    g_prefix_error(error, "etcd %s at %s: ", call->op, gw_etcd_get_endpoint_at(etcd, call->index));
    return FALSE;
}

/* An invalid argument, reported like an operation's error. */
static void
gw_etcd_invalid(GwEtcd *etcd, const gchar *op, GAsyncReadyCallback callback, gpointer user_data,
                gpointer source_tag, const gchar *what)
{
    GTask *task = g_task_new(etcd, NULL, callback, user_data);
    GwEtcdCall *call = g_new0(GwEtcdCall, 1);

    call->op = op;
    call->body = g_bytes_new(NULL, 0);
    call->answer = g_byte_array_new();
    g_task_set_task_data(task, call, (GDestroyNotify)gw_etcd_call_free);
    g_task_set_source_tag(task, source_tag);
    g_task_return_new_error(task, GW_ETCD_ERROR, GW_ETCD_ERROR_INVALID, "etcd %s: %s", op, what);
    g_object_unref(task);
}

/* ---- the operations ---- */

void
gw_etcd_lease_grant_async(GwEtcd *etcd, gint64 ttl_s, GCancellable *cancellable,
                          GAsyncReadyCallback callback, gpointer user_data)
{
    if (ttl_s <= 0) {
        gw_etcd_invalid(etcd, "lease grant", callback, user_data, gw_etcd_lease_grant_async,
                        "the TTL must be positive");
        return;
    }
    gw_etcd_call(etcd, "lease grant", "/v3/lease/grant", gw_etcd_json_lease_grant_request(ttl_s),
                 cancellable, callback, user_data, gw_etcd_lease_grant_async);
}

gboolean
gw_etcd_lease_grant_finish(GwEtcd *etcd, GAsyncResult *result, gint64 *lease_id, gint64 *ttl_s,
                           GError **error)
{
    GwEtcdCall *call;
    g_autoptr(JsonNode) root =
        gw_etcd_call_finish(etcd, result, gw_etcd_lease_grant_async, &call, error);
    gint64 ttl = 0;

    if (root == NULL)
        return FALSE;
    if (!gw_etcd_json_parse_lease_grant(json_node_get_object(root), lease_id, &ttl, error))
        return gw_etcd_parse_failed(etcd, call, error);
    if (ttl_s != NULL)
        *ttl_s = ttl;
    return TRUE;
}

void
gw_etcd_lease_keepalive_async(GwEtcd *etcd, gint64 lease_id, GCancellable *cancellable,
                              GAsyncReadyCallback callback, gpointer user_data)
{
    gw_etcd_call(etcd, "lease keepalive", "/v3/lease/keepalive",
                 gw_etcd_json_lease_id_request(lease_id), cancellable, callback, user_data,
                 gw_etcd_lease_keepalive_async);
}

gboolean
gw_etcd_lease_keepalive_finish(GwEtcd *etcd, GAsyncResult *result, gint64 *ttl_s, GError **error)
{
    GwEtcdCall *call;
    g_autoptr(JsonNode) root =
        gw_etcd_call_finish(etcd, result, gw_etcd_lease_keepalive_async, &call, error);
    gint64 ttl = 0;

    if (root == NULL)
        return FALSE;
    if (!gw_etcd_json_parse_keepalive(json_node_get_object(root), &ttl, error))
        return gw_etcd_parse_failed(etcd, call, error);
    if (ttl_s != NULL)
        *ttl_s = ttl;
    return TRUE;
}

void
gw_etcd_lease_revoke_async(GwEtcd *etcd, gint64 lease_id, GCancellable *cancellable,
                           GAsyncReadyCallback callback, gpointer user_data)
{
    gw_etcd_call(etcd, "lease revoke", "/v3/lease/revoke", gw_etcd_json_lease_id_request(lease_id),
                 cancellable, callback, user_data, gw_etcd_lease_revoke_async);
}

gboolean
gw_etcd_lease_revoke_finish(GwEtcd *etcd, GAsyncResult *result, GError **error)
{
    GwEtcdCall *call;
    g_autoptr(JsonNode) root =
        gw_etcd_call_finish(etcd, result, gw_etcd_lease_revoke_async, &call, error);
    gint64 revision = 0;

    if (root == NULL)
        return FALSE;
    if (!gw_etcd_json_parse_header(json_node_get_object(root), &revision, error))
        return gw_etcd_parse_failed(etcd, call, error);
    return TRUE;
}

void
gw_etcd_put_async(GwEtcd *etcd, const gchar *key, GBytes *value, gint64 lease_id,
                  GCancellable *cancellable, GAsyncReadyCallback callback, gpointer user_data)
{
    if (key == NULL || key[0] == '\0') {
        gw_etcd_invalid(etcd, "put", callback, user_data, gw_etcd_put_async, "empty key");
        return;
    }
    gw_etcd_call(etcd, "put", "/v3/kv/put", gw_etcd_json_put_request(key, value, lease_id),
                 cancellable, callback, user_data, gw_etcd_put_async);
}

gboolean
gw_etcd_put_finish(GwEtcd *etcd, GAsyncResult *result, gint64 *revision, GError **error)
{
    GwEtcdCall *call;
    g_autoptr(JsonNode) root = gw_etcd_call_finish(etcd, result, gw_etcd_put_async, &call, error);
    gint64 rev = 0;

    if (root == NULL)
        return FALSE;
    if (!gw_etcd_json_parse_header(json_node_get_object(root), &rev, error))
        return gw_etcd_parse_failed(etcd, call, error);
    if (revision != NULL)
        *revision = rev;
    return TRUE;
}

void
gw_etcd_range_async(GwEtcd *etcd, const gchar *key, gboolean prefix, gint64 limit,
                    GCancellable *cancellable, GAsyncReadyCallback callback, gpointer user_data)
{
    if (key == NULL || (key[0] == '\0' && !prefix)) {
        gw_etcd_invalid(etcd, "range", callback, user_data, gw_etcd_range_async, "empty key");
        return;
    }
    gw_etcd_call(etcd, "range", "/v3/kv/range", gw_etcd_json_range_request(key, prefix, limit),
                 cancellable, callback, user_data, gw_etcd_range_async);
}

GPtrArray *
gw_etcd_range_finish(GwEtcd *etcd, GAsyncResult *result, gint64 *revision, gboolean *more,
                     GError **error)
{
    GwEtcdCall *call;
    g_autoptr(JsonNode) root = gw_etcd_call_finish(etcd, result, gw_etcd_range_async, &call, error);
    gint64 rev = 0;
    gboolean more_kvs = FALSE;
    GPtrArray *kvs;

    if (root == NULL)
        return NULL;
    kvs = gw_etcd_json_parse_range(json_node_get_object(root), &rev, &more_kvs, error);
    if (kvs == NULL) {
        gw_etcd_parse_failed(etcd, call, error);
        return NULL;
    }
    if (revision != NULL)
        *revision = rev;
    if (more != NULL)
        *more = more_kvs;
    return kvs;
}

void
gw_etcd_delete_async(GwEtcd *etcd, const gchar *key, gboolean prefix, GCancellable *cancellable,
                     GAsyncReadyCallback callback, gpointer user_data)
{
    if (key == NULL || (key[0] == '\0' && !prefix)) {
        gw_etcd_invalid(etcd, "delete", callback, user_data, gw_etcd_delete_async, "empty key");
        return;
    }
    gw_etcd_call(etcd, "delete", "/v3/kv/deleterange", gw_etcd_json_delete_request(key, prefix),
                 cancellable, callback, user_data, gw_etcd_delete_async);
}

gboolean
gw_etcd_delete_finish(GwEtcd *etcd, GAsyncResult *result, gint64 *deleted, gint64 *revision,
                      GError **error)
{
    GwEtcdCall *call;
    g_autoptr(JsonNode) root =
        gw_etcd_call_finish(etcd, result, gw_etcd_delete_async, &call, error);
    gint64 rev = 0;
    gint64 count = 0;

    if (root == NULL)
        return FALSE;
    if (!gw_etcd_json_parse_delete(json_node_get_object(root), &count, &rev, error))
        return gw_etcd_parse_failed(etcd, call, error);
    if (deleted != NULL)
        *deleted = count;
    if (revision != NULL)
        *revision = rev;
    return TRUE;
}

void
gw_etcd_txn_async(GwEtcd *etcd, const GwEtcdTxn *txn, GCancellable *cancellable,
                  GAsyncReadyCallback callback, gpointer user_data)
{
    gw_etcd_call(etcd, "txn", "/v3/kv/txn", gw_etcd_json_txn_request(txn), cancellable, callback,
                 user_data, gw_etcd_txn_async);
}

gboolean
gw_etcd_txn_finish(GwEtcd *etcd, GAsyncResult *result, gboolean *succeeded, gint64 *revision,
                   GError **error)
{
    GwEtcdCall *call;
    g_autoptr(JsonNode) root = gw_etcd_call_finish(etcd, result, gw_etcd_txn_async, &call, error);
    gint64 rev = 0;
    gboolean ok = FALSE;

    if (root == NULL)
        return FALSE;
    if (!gw_etcd_json_parse_txn(json_node_get_object(root), &ok, &rev, error))
        return gw_etcd_parse_failed(etcd, call, error);
    if (succeeded != NULL)
        *succeeded = ok;
    if (revision != NULL)
        *revision = rev;
    return TRUE;
}
