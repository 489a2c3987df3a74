/* TLS for gateway links: this gateway's certificate and key, the
 * cluster's CA, mutual authentication, and the gateway name a certificate
 * carries (docs/links.md, "Certificates").
 *
 * A gateway's name is the Common Name of its certificate's subject; it
 * must be a valid gateway name (policy_gateway_name_is_valid()). Both ends
 * check the other's certificate against the CA file only (never the
 * system's trust store), its validity period, and its name: the acceptor
 * learns the dialer's name from its certificate, the dialer checks that the
 * acceptor's certificate names the peer it meant to reach.
 *
 * The acceptor requests a client certificate but completes the handshake
 * without one (or with a bad one), so that it can tell the dialer why it is
 * refused over the TLS connection (gw_link_refuse()) instead of failing
 * the handshake with an alert that says nothing.
 *
 * Threading: main thread; all I/O is asynchronous.
 */
#pragma once

#include <gio/gio.h>

G_BEGIN_DECLS

typedef struct _GwLinkTls GwLinkTls;

/* Loads our certificate (PEM, with its chain if any), its key and the CA
 * file (relative paths from the current directory). Fails naming the file
 * when one cannot be read or parsed, when the key is not the
 * certificate's, when our certificate does not chain to the CA, is expired
 * or not yet valid, or carries no valid gateway name. The files are read
 * now; connections use the CA file's database (the CA file is read again
 * per connection by GnuTLS), never the system's trust store. */
GwLinkTls *gw_link_tls_new(const gchar *cert_file, const gchar *key_file, const gchar *ca_file,
                           GError **error) G_GNUC_WARN_UNUSED_RESULT;
void gw_link_tls_free(GwLinkTls *tls);
G_DEFINE_AUTOPTR_CLEANUP_FUNC(GwLinkTls, gw_link_tls_free)
/* Our gateway name (our certificate's). */
const gchar *gw_link_tls_get_name(GwLinkTls *tls);

/* Server side, on a connection a listener accepted: the TLS handshake
 * within @timeout_ms. */
void gw_link_tls_accept_async(GwLinkTls *tls, GSocketConnection *connection, guint timeout_ms,
                              GCancellable *cancellable, GAsyncReadyCallback callback,
                              gpointer user_data);
/* Returns the TLS stream when the handshake completed, else NULL with
 * @error (nothing can be told to the peer; G_IO_ERROR_TIMED_OUT when the
 * timeout passed, the message naming the peer's address). With a stream
 * (the caller's): *@peer_name (the caller's) is
 * the dialer's verified gateway name, or NULL and *@refusal says why the
 * dialer is not taken ("no client certificate", "certificate not issued by
 * the link CA", "certificate expired on …", "certificate not valid before
 * …", "certificate names no valid gateway") — the caller refuses it with
 * gw_link_refuse(). */
GIOStream *gw_link_tls_accept_finish(GwLinkTls *tls, GAsyncResult *result, gchar **peer_name,
                                     GError **refusal, GError **error) G_GNUC_WARN_UNUSED_RESULT;

/* Client side: connects to @address ("host:port", IPv6 as "[addr]:port")
 * and runs the TLS handshake, all within @timeout_ms; the acceptor's
 * certificate must chain to the CA, be valid now and name @peer (host
 * names and IP addresses in it are not checked). The finish returns the
 * TLS stream (the caller's) or NULL with an error naming @peer and
 * @address (G_IO_ERROR_TIMED_OUT when the timeout passed,
 * G_TLS_ERROR_BAD_CERTIFICATE when the acceptor is refused). */
void gw_link_tls_connect_async(GwLinkTls *tls, const gchar *address, const gchar *peer,
                               guint timeout_ms, GCancellable *cancellable,
                               GAsyncReadyCallback callback, gpointer user_data);
GIOStream *gw_link_tls_connect_finish(GwLinkTls *tls, GAsyncResult *result,
                                      GError **error) G_GNUC_WARN_UNUSED_RESULT;

G_END_DECLS
