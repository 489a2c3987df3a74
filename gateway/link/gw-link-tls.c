/* GwLinkTls: GIO TLS (glib-networking) with our certificate, the link CA
 * and our own check of the peer's certificate (gw-link-tls.h).
 *
 * Both ends let GIO's handshake complete whatever the peer's certificate
 * (an accept-certificate handler that accepts), then verify it themselves
 * against the link CA with g_tls_database_verify_chain() and read the
 * gateway name from its subject. That way the acceptor can still tell a
 * refused dialer why, and both ends word their errors themselves.
 *
 * Every connection is given the link CA's database when it is constructed:
 * a GTlsConnection made first and given its database afterwards loads the
 * default (system) database for its credentials at construction, reading
 * the whole system CA bundle once per connection. */
#include "gw-link-tls.h"

#include "policy.h"

#include <string.h>

#include <gnutls/gnutls.h>
#include <netinet/in.h>
#include <netinet/tcp.h>

/* Longest excerpt of a peer's certificate subject quoted in a message. */
#define GW_LINK_TLS_QUOTE_MAX 80

struct _GwLinkTls {
    GTlsCertificate *cert; /* owned: ours, with its key */
    GTlsDatabase *ca;      /* owned: the link CA file's */
    gchar *name;           /* owned: our gateway name */
};

/* ---- certificates ----------------------------------------------------- */

/* @s as printable text for a message: escaped, cut to a bounded length. */
static gchar *
gw_link_tls_quote(const gchar *s)
{
    g_autofree gchar *cut = g_strndup(s, GW_LINK_TLS_QUOTE_MAX);
    g_autofree gchar *escaped = g_strescape(cut, NULL);

    return g_strdup_printf("\"%s\"%s", escaped, strlen(s) > GW_LINK_TLS_QUOTE_MAX ? "…" : "");
}

static gboolean
gw_link_tls_is_cn(const gchar *type, gsize len)
{
    return (len == 2 && g_ascii_strncasecmp(type, "CN", 2) == 0) ||
           (len == 7 && strncmp(type, "2.5.4.3", 7) == 0);
}

/* The gateway name in @dn, a subject as GIO gives it (RFC 4514: attributes
 * separated by ',' or '+', special characters escaped with '\'): the value
 * of its only CN, which must be a valid gateway name. Anything ambiguous
 * is refused: no CN or several, an escaped or hex-encoded CN. */
static gchar *
gw_link_tls_name_from_subject(const gchar *dn, GError **error)
{
    g_autofree gchar *cn = NULL;
    g_autofree gchar *quoted = NULL;
    gboolean cn_encoded = FALSE;
    guint n_cn = 0;
    const gchar *p = dn ? dn : "";

    while (*p) {
        const gchar *type = p, *eq = NULL;
        gboolean escaped = FALSE;

        for (; *p && *p != ',' && *p != '+'; p++) {
            if (*p == '\\') {
                escaped = TRUE;
                if (p[1])
                    p++;
            } else if (*p == '=' && !eq) {
                eq = p;
            }
        }
        if (eq && gw_link_tls_is_cn(type, eq - type)) {
            n_cn++;
            g_free(cn);
            cn = g_strndup(eq + 1, p - (eq + 1));
            cn_encoded = escaped || cn[0] == '#';
        }
        if (*p)
            p++;
    }
    quoted = gw_link_tls_quote(dn ? dn : "");
    if (n_cn == 0) {
        g_set_error(error, G_TLS_ERROR, G_TLS_ERROR_BAD_CERTIFICATE,
                    "certificate names no valid gateway: its subject %s has no CN", quoted);
        return NULL;
    }
    if (n_cn > 1) {
        g_set_error(error, G_TLS_ERROR, G_TLS_ERROR_BAD_CERTIFICATE,
                    "certificate names no valid gateway: its subject %s has %u CNs", quoted, n_cn);
        return NULL;
    }
    if (cn_encoded) {
        g_set_error(error, G_TLS_ERROR, G_TLS_ERROR_BAD_CERTIFICATE,
                    "certificate names no valid gateway: the CN in its subject %s is escaped or "
                    "encoded",
                    quoted);
        return NULL;
    }
    if (!policy_gateway_name_is_valid(cn)) {
        g_autofree gchar *qcn = gw_link_tls_quote(cn);

        g_set_error(error, G_TLS_ERROR, G_TLS_ERROR_BAD_CERTIFICATE,
                    "certificate names no valid gateway: CN %s is not a gateway name", qcn);
        return NULL;
    }
    return g_steal_pointer(&cn);
}

/* A certificate date for a message, or "an unknown date". */
static gchar *
gw_link_tls_date(GDateTime *when)
{
    if (!when)
        return g_strdup("an unknown date");
    return g_date_time_format(when, "%Y-%m-%d %H:%M:%S UTC");
}

/* @flags (not 0) of a verification of @cert as an error in the words of a
 * refusal; the most telling flag wins. */
static void
gw_link_tls_set_verify_error(GError **error, GTlsCertificate *cert, GTlsCertificateFlags flags)
{
    if (flags & G_TLS_CERTIFICATE_UNKNOWN_CA) {
        g_set_error_literal(error, G_TLS_ERROR, G_TLS_ERROR_BAD_CERTIFICATE,
                            "certificate not issued by the link CA");
    } else if (flags & G_TLS_CERTIFICATE_REVOKED) {
        g_set_error_literal(error, G_TLS_ERROR, G_TLS_ERROR_BAD_CERTIFICATE, "certificate revoked");
    } else if (flags & G_TLS_CERTIFICATE_EXPIRED) {
        g_autoptr(GDateTime) after = g_tls_certificate_get_not_valid_after(cert);
        g_autofree gchar *date = gw_link_tls_date(after);

        g_set_error(error, G_TLS_ERROR, G_TLS_ERROR_BAD_CERTIFICATE, "certificate expired on %s",
                    date);
    } else if (flags & G_TLS_CERTIFICATE_NOT_ACTIVATED) {
        g_autoptr(GDateTime) before = g_tls_certificate_get_not_valid_before(cert);
        g_autofree gchar *date = gw_link_tls_date(before);

        g_set_error(error, G_TLS_ERROR, G_TLS_ERROR_BAD_CERTIFICATE,
                    "certificate not valid before %s", date);
    } else if (flags & G_TLS_CERTIFICATE_INSECURE) {
        g_set_error_literal(error, G_TLS_ERROR, G_TLS_ERROR_BAD_CERTIFICATE,
                            "certificate uses an insecure algorithm");
    } else {
        /* GENERIC_ERROR: e.g. an extended key usage that does not allow
         * this side of TLS, or a broken chain. */
        g_set_error(error, G_TLS_ERROR, G_TLS_ERROR_BAD_CERTIFICATE,
                    "certificate not accepted by the link CA check (flags 0x%x)", (guint)flags);
    }
}

/* Verifies @cert against the link CA for @purpose (valid now, chained to
 * the CA, usable for that side of TLS) and returns its gateway name, or
 * NULL with @error in the words of a refusal. */
static gchar *
gw_link_tls_check(GTlsDatabase *ca, GTlsCertificate *cert, const gchar *purpose, GError **error)
{
    g_autoptr(GError) local = NULL;
    g_autofree gchar *dn = NULL;
    GTlsCertificateFlags flags;

    flags = g_tls_database_verify_chain(ca, cert, purpose, NULL, NULL, G_TLS_DATABASE_VERIFY_NONE,
                                        NULL, &local);
    if (local) {
        g_set_error(error, G_TLS_ERROR, G_TLS_ERROR_BAD_CERTIFICATE,
                    "certificate could not be verified: %s", local->message);
        return NULL;
    }
    if (flags) {
        gw_link_tls_set_verify_error(error, cert, flags);
        return NULL;
    }
    dn = g_tls_certificate_get_subject_name(cert);
    return gw_link_tls_name_from_subject(dn, error);
}

/* GIO keeps a key that does not belong to its certificate (a wrong key
 * would show only as failed handshakes on the peers); GnuTLS's credential
 * loader compares them. */
static gboolean
gw_link_tls_check_key(const gchar *cert_file, const gchar *key_file, GError **error)
{
    gnutls_certificate_credentials_t creds;
    int ret = gnutls_certificate_allocate_credentials(&creds);

    if (ret >= 0) {
        ret = gnutls_certificate_set_x509_key_file2(creds, cert_file, key_file, GNUTLS_X509_FMT_PEM,
                                                    NULL, 0);
        gnutls_certificate_free_credentials(creds);
    }
    if (ret == GNUTLS_E_CERTIFICATE_KEY_MISMATCH) {
        g_set_error(error, G_TLS_ERROR, G_TLS_ERROR_BAD_CERTIFICATE,
                    "%s: not the key of the certificate in %s", key_file, cert_file);
        return FALSE;
    }
    if (ret < 0) {
        g_set_error(error, G_TLS_ERROR, G_TLS_ERROR_BAD_CERTIFICATE, "%s with %s: %s", cert_file,
                    key_file, gnutls_strerror(ret));
        return FALSE;
    }
    return TRUE;
}

/* @local (taken), an error on @file, named: GLib's file errors name the
 * file already, GIO's parse errors do not. */
static void
gw_link_tls_file_error(GError **error, const gchar *file, GError *local)
{
    if (local->domain == G_FILE_ERROR) {
        g_propagate_error(error, local);
        return;
    }
    g_set_error(error, G_TLS_ERROR, G_TLS_ERROR_BAD_CERTIFICATE, "%s: %s", file, local->message);
    g_error_free(local);
}

/* Fails unless @file holds at least one PEM certificate. */
static gboolean
gw_link_tls_check_pem(const gchar *file, GError **error)
{
    g_autolist(GTlsCertificate) list = NULL;
    g_autoptr(GError) local = NULL;

    list = g_tls_certificate_list_new_from_file(file, &local);
    if (local) {
        gw_link_tls_file_error(error, file, g_steal_pointer(&local));
        return FALSE;
    }
    if (!list) {
        g_set_error(error, G_TLS_ERROR, G_TLS_ERROR_BAD_CERTIFICATE, "%s: holds no PEM certificate",
                    file);
        return FALSE;
    }
    return TRUE;
}

GwLinkTls *
gw_link_tls_new(const gchar *cert_file, const gchar *key_file, const gchar *ca_file, GError **error)
{
    g_autoptr(GwLinkTls) tls = g_new0(GwLinkTls, 1);
    g_autoptr(GError) local = NULL;
    g_autofree gchar *ca_path = NULL;
    static const gchar *const purposes[] = {G_TLS_DATABASE_PURPOSE_AUTHENTICATE_CLIENT,
                                            G_TLS_DATABASE_PURPOSE_AUTHENTICATE_SERVER};

    g_return_val_if_fail(cert_file && key_file && ca_file, NULL);

    if (!g_tls_backend_supports_tls(g_tls_backend_get_default())) {
        g_set_error_literal(error, G_TLS_ERROR, G_TLS_ERROR_UNAVAILABLE,
                            "no TLS support in GIO (is glib-networking installed?)");
        return NULL;
    }
    if (!gw_link_tls_check_pem(ca_file, error))
        return NULL;
    /* GTlsFileDatabase takes absolute paths only (a relative one gives a
     * database without anchors). */
    ca_path = g_canonicalize_filename(ca_file, NULL);
    tls->ca = g_tls_file_database_new(ca_path, &local);
    if (!tls->ca) {
        g_set_error(error, G_TLS_ERROR, G_TLS_ERROR_BAD_CERTIFICATE, "%s: %s", ca_file,
                    local->message);
        return NULL;
    }
    if (!gw_link_tls_check_pem(cert_file, error))
        return NULL;
    tls->cert = g_tls_certificate_new_from_files(cert_file, key_file, &local);
    if (!tls->cert) {
        /* The certificate parsed above: this is the key's. */
        gw_link_tls_file_error(error, key_file, g_steal_pointer(&local));
        return NULL;
    }
    if (!gw_link_tls_check_key(cert_file, key_file, error))
        return NULL;
    /* Our certificate serves both sides: accepting and dialing. */
    for (guint i = 0; i < G_N_ELEMENTS(purposes); i++) {
        g_autofree gchar *name = gw_link_tls_check(tls->ca, tls->cert, purposes[i], &local);

        if (!name) {
            g_set_error(error, G_TLS_ERROR, G_TLS_ERROR_BAD_CERTIFICATE, "%s: %s (link CA %s)",
                        cert_file, local->message, ca_file);
            return NULL;
        }
        g_free(tls->name);
        tls->name = g_steal_pointer(&name);
    }
    return g_steal_pointer(&tls);
}

void
gw_link_tls_free(GwLinkTls *tls)
{
    if (!tls)
        return;
    g_clear_object(&tls->cert);
    g_clear_object(&tls->ca);
    g_free(tls->name);
    g_free(tls);
}

const gchar *
gw_link_tls_get_name(GwLinkTls *tls)
{
    return tls->name;
}

/* ---- connections ------------------------------------------------------ */

/* One accept or connect: its own cancellable, cancelled by the timer or by
 * the caller's. Holds references to our certificate and the CA, so the
 * GwLinkTls may go while it runs. */
typedef struct {
    GTlsCertificate *cert;  /* owned */
    GTlsDatabase *ca;       /* owned */
    gchar *where;           /* owned: "link from ADDRESS" / "link to PEER at ADDRESS" */
    gchar *peer;            /* owned, nullable: the gateway a dialer means to reach */
    const gchar *stage;     /* what runs now, for messages */
    guint timeout_ms;       /* the whole operation's */
    gboolean timed_out;     /* the timer fired */
    GCancellable *cancel;   /* owned: given to every step */
    GCancellable *caller;   /* owned, nullable */
    gulong caller_handler;  /* on @caller, 0 if none */
    GSource *timer;         /* owned */
    GSocketConnection *tcp; /* owned, nullable: closed at the end unless handed over */
    GIOStream *stream;      /* owned, nullable: the TLS connection over @tcp */
} GwLinkTlsOp;

typedef struct {
    GIOStream *stream; /* owned */
    gchar *name;       /* owned, nullable */
    GError *refusal;   /* owned, nullable */
} GwLinkTlsAccepted;

static void
gw_link_tls_op_free(gpointer data)
{
    GwLinkTlsOp *op = data;

    if (op->caller_handler)
        g_cancellable_disconnect(op->caller, op->caller_handler);
    g_clear_object(&op->caller);
    g_source_destroy(op->timer);
    g_source_unref(op->timer);
    g_clear_object(&op->stream);
    if (op->tcp)
        g_socket_close(g_socket_connection_get_socket(op->tcp), NULL);
    g_clear_object(&op->tcp);
    g_clear_object(&op->cancel);
    g_clear_object(&op->cert);
    g_clear_object(&op->ca);
    g_free(op->where);
    g_free(op->peer);
    g_free(op);
}

static void
gw_link_tls_accepted_free(gpointer data)
{
    GwLinkTlsAccepted *a = data;

    g_clear_object(&a->stream);
    g_free(a->name);
    g_clear_error(&a->refusal);
    g_free(a);
}

static gboolean
gw_link_tls_op_timeout(gpointer data)
{
    GwLinkTlsOp *op = data;

    op->timed_out = TRUE;
    g_cancellable_cancel(op->cancel);
    return G_SOURCE_REMOVE;
}

static void
gw_link_tls_op_caller_cancelled(GCancellable *caller, gpointer data)
{
    GwLinkTlsOp *op = data;

    g_cancellable_cancel(op->cancel);
}

/* The operation of @task, its timer started on the thread-default main
 * context. */
static GwLinkTlsOp *
gw_link_tls_op_start(GTask *task, GwLinkTls *tls, guint timeout_ms, GCancellable *caller,
                     gchar *where)
{
    GwLinkTlsOp *op = g_new0(GwLinkTlsOp, 1);

    op->cert = g_object_ref(tls->cert);
    op->ca = g_object_ref(tls->ca);
    op->where = where;
    op->stage = "setup";
    op->timeout_ms = timeout_ms;
    op->cancel = g_cancellable_new();
    op->timer = g_timeout_source_new(timeout_ms);
    g_source_set_callback(op->timer, gw_link_tls_op_timeout, op, NULL);
    g_source_attach(op->timer, g_main_context_get_thread_default());
    g_task_set_task_data(task, op, gw_link_tls_op_free);
    if (caller) {
        op->caller = g_object_ref(caller);
        op->caller_handler =
            g_cancellable_connect(caller, G_CALLBACK(gw_link_tls_op_caller_cancelled), op, NULL);
    }
    return op;
}

/* Ends @task with @error (taken), reworded: the timer's cancellation
 * becomes a timeout, anything else names the operation and its stage. */
static void
gw_link_tls_op_fail(GTask *task, GError *error)
{
    GwLinkTlsOp *op = g_task_get_task_data(task);

    if (op->timed_out && g_error_matches(error, G_IO_ERROR, G_IO_ERROR_CANCELLED)) {
        g_task_return_new_error(task, G_IO_ERROR, G_IO_ERROR_TIMED_OUT,
                                "%s: no TLS connection within %u ms (%s did not finish)", op->where,
                                op->timeout_ms, op->stage);
        g_error_free(error);
        return;
    }
    if (!g_error_matches(error, G_IO_ERROR, G_IO_ERROR_CANCELLED))
        g_prefix_error(&error, "%s: %s failed: ", op->where, op->stage);
    g_task_return_error(task, error);
}

static gboolean
gw_link_tls_accept_any(GTlsConnection *conn, GTlsCertificate *peer, GTlsCertificateFlags errors,
                       gpointer user_data)
{
    /* The handshake completes whatever the peer's certificate: it is
     * verified afterwards (gw_link_tls_check()), see the top of this file. */
    return TRUE;
}

/* A TLS connection over op->tcp with our certificate and the link CA, the
 * database given at construction (see the top of this file). */
static gboolean
gw_link_tls_op_wrap(GwLinkTlsOp *op, gboolean server, GError **error)
{
    GTlsBackend *backend = g_tls_backend_get_default();
    gpointer conn;

    /* Best effort: link frames are small and latency matters more. */
    g_socket_set_option(g_socket_connection_get_socket(op->tcp), IPPROTO_TCP, TCP_NODELAY, 1, NULL);
    if (server)
        conn = g_initable_new(g_tls_backend_get_server_connection_type(backend), NULL, error,
                              "base-io-stream", op->tcp, "certificate", op->cert, "database",
                              op->ca, "authentication-mode", G_TLS_AUTHENTICATION_REQUESTED, NULL);
    else
        conn = g_initable_new(g_tls_backend_get_client_connection_type(backend), NULL, error,
                              "base-io-stream", op->tcp, "certificate", op->cert, "database",
                              op->ca, NULL);
    if (!conn)
        return FALSE;
    g_signal_connect(conn, "accept-certificate", G_CALLBACK(gw_link_tls_accept_any), NULL);
    op->stream = conn;
    op->stage = "TLS handshake";
    return TRUE;
}

static void
gw_link_tls_accept_handshaken(GObject *source, GAsyncResult *result, gpointer data)
{
    g_autoptr(GTask) task = data;
    GwLinkTlsOp *op = g_task_get_task_data(task);
    GwLinkTlsAccepted *a;
    GTlsCertificate *peer;
    GError *error = NULL;

    if (!g_tls_connection_handshake_finish(G_TLS_CONNECTION(source), result, &error)) {
        gw_link_tls_op_fail(task, error);
        return;
    }
    a = g_new0(GwLinkTlsAccepted, 1);
    peer = g_tls_connection_get_peer_certificate(G_TLS_CONNECTION(op->stream));
    if (!peer)
        g_set_error_literal(&a->refusal, G_TLS_ERROR, G_TLS_ERROR_CERTIFICATE_REQUIRED,
                            "no client certificate");
    else
        a->name = gw_link_tls_check(op->ca, peer, G_TLS_DATABASE_PURPOSE_AUTHENTICATE_CLIENT,
                                    &a->refusal);
    a->stream = g_steal_pointer(&op->stream);
    g_clear_object(&op->tcp); /* handed over, inside the stream */
    g_task_return_pointer(task, a, gw_link_tls_accepted_free);
}

void
gw_link_tls_accept_async(GwLinkTls *tls, GSocketConnection *connection, guint timeout_ms,
                         GCancellable *cancellable, GAsyncReadyCallback callback,
                         gpointer user_data)
{
    g_autoptr(GTask) task = g_task_new(NULL, cancellable, callback, user_data);
    g_autoptr(GSocketAddress) remote = NULL;
    g_autofree gchar *from = NULL;
    GwLinkTlsOp *op;
    GError *error = NULL;

    g_return_if_fail(tls && G_IS_SOCKET_CONNECTION(connection));

    g_task_set_source_tag(task, gw_link_tls_accept_async);
    remote = g_socket_connection_get_remote_address(connection, NULL);
    from = remote ? g_socket_connectable_to_string(G_SOCKET_CONNECTABLE(remote))
                  : g_strdup("an unknown address");
    op = gw_link_tls_op_start(task, tls, timeout_ms, cancellable,
                              g_strdup_printf("link from %s", from));
    op->tcp = g_object_ref(connection);
    if (!gw_link_tls_op_wrap(op, TRUE, &error)) {
        gw_link_tls_op_fail(task, error);
        return;
    }
    g_tls_connection_handshake_async(G_TLS_CONNECTION(op->stream), G_PRIORITY_DEFAULT, op->cancel,
                                     gw_link_tls_accept_handshaken, g_object_ref(task));
}

GIOStream *
gw_link_tls_accept_finish(GwLinkTls *tls, GAsyncResult *result, gchar **peer_name, GError **refusal,
                          GError **error)
{
    GwLinkTlsAccepted *a;
    GIOStream *stream;

    g_return_val_if_fail(g_task_is_valid(result, NULL), NULL);
    g_return_val_if_fail(g_task_get_source_tag(G_TASK(result)) == gw_link_tls_accept_async, NULL);
    g_return_val_if_fail(peer_name && refusal, NULL);

    *peer_name = NULL;
    a = g_task_propagate_pointer(G_TASK(result), error);
    if (!a)
        return NULL;
    *peer_name = g_steal_pointer(&a->name);
    if (a->refusal)
        g_propagate_error(refusal, g_steal_pointer(&a->refusal));
    stream = g_steal_pointer(&a->stream);
    gw_link_tls_accepted_free(a);
    return stream;
}

static void
gw_link_tls_connect_handshaken(GObject *source, GAsyncResult *result, gpointer data)
{
    g_autoptr(GTask) task = data;
    GwLinkTlsOp *op = g_task_get_task_data(task);
    g_autofree gchar *name = NULL;
    GTlsCertificate *peer;
    GError *error = NULL;

    if (!g_tls_connection_handshake_finish(G_TLS_CONNECTION(source), result, &error)) {
        gw_link_tls_op_fail(task, error);
        return;
    }
    peer = g_tls_connection_get_peer_certificate(G_TLS_CONNECTION(op->stream));
    if (!peer) {
        g_task_return_new_error(task, G_TLS_ERROR, G_TLS_ERROR_BAD_CERTIFICATE,
                                "%s: the acceptor sent no certificate", op->where);
        return;
    }
    name = gw_link_tls_check(op->ca, peer, G_TLS_DATABASE_PURPOSE_AUTHENTICATE_SERVER, &error);
    if (!name) {
        g_prefix_error(&error, "%s: acceptor refused: ", op->where);
        g_task_return_error(task, error);
        return;
    }
    if (strcmp(name, op->peer) != 0) {
        g_task_return_new_error(task, G_TLS_ERROR, G_TLS_ERROR_BAD_CERTIFICATE,
                                "%s: acceptor refused: its certificate names gateway \"%s\"",
                                op->where, name);
        return;
    }
    g_clear_object(&op->tcp); /* handed over, inside the stream */
    g_task_return_pointer(task, g_steal_pointer(&op->stream), g_object_unref);
}

static void
gw_link_tls_connected(GObject *source, GAsyncResult *result, gpointer data)
{
    g_autoptr(GTask) task = data;
    GwLinkTlsOp *op = g_task_get_task_data(task);
    GError *error = NULL;

    op->tcp = g_socket_client_connect_finish(G_SOCKET_CLIENT(source), result, &error);
    if (!op->tcp || !gw_link_tls_op_wrap(op, FALSE, &error)) {
        gw_link_tls_op_fail(task, error);
        return;
    }
    g_tls_connection_handshake_async(G_TLS_CONNECTION(op->stream), G_PRIORITY_DEFAULT, op->cancel,
                                     gw_link_tls_connect_handshaken, g_steal_pointer(&task));
}

void
gw_link_tls_connect_async(GwLinkTls *tls, const gchar *address, const gchar *peer, guint timeout_ms,
                          GCancellable *cancellable, GAsyncReadyCallback callback,
                          gpointer user_data)
{
    g_autoptr(GTask) task = g_task_new(NULL, cancellable, callback, user_data);
    g_autoptr(GSocketConnectable) connectable = NULL;
    g_autoptr(GSocketClient) client = NULL;
    g_autoptr(GError) local = NULL;
    GwLinkTlsOp *op;

    g_return_if_fail(tls && address && peer);

    g_task_set_source_tag(task, gw_link_tls_connect_async);
    op = gw_link_tls_op_start(task, tls, timeout_ms, cancellable,
                              g_strdup_printf("link to %s at %s", peer, address));
    op->peer = g_strdup(peer);
    if (!policy_gateway_name_is_valid(peer)) {
        g_task_return_new_error(task, G_IO_ERROR, G_IO_ERROR_INVALID_ARGUMENT,
                                "%s: \"%s\" is not a gateway name", op->where, peer);
        return;
    }
    connectable = g_network_address_parse(address, 0, &local);
    if (!connectable) {
        g_task_return_new_error(task, G_IO_ERROR, G_IO_ERROR_INVALID_ARGUMENT,
                                "%s: not a host:port address: %s", op->where, local->message);
        return;
    }
    if (g_network_address_get_port(G_NETWORK_ADDRESS(connectable)) == 0) {
        g_task_return_new_error(task, G_IO_ERROR, G_IO_ERROR_INVALID_ARGUMENT,
                                "%s: the address has no port", op->where);
        return;
    }
    client = g_socket_client_new();
    /* A direct connection: a gateway link is no web traffic to proxy. */
    g_socket_client_set_enable_proxy(client, FALSE);
    op->stage = "connecting";
    g_socket_client_connect_async(client, connectable, op->cancel, gw_link_tls_connected,
                                  g_steal_pointer(&task));
}

GIOStream *
gw_link_tls_connect_finish(GwLinkTls *tls, GAsyncResult *result, GError **error)
{
    g_return_val_if_fail(g_task_is_valid(result, NULL), NULL);
    g_return_val_if_fail(g_task_get_source_tag(G_TASK(result)) == gw_link_tls_connect_async, NULL);

    return g_task_propagate_pointer(G_TASK(result), error);
}
