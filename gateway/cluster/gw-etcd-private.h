/* What the files of GwEtcd share (gw-etcd.c: the client, its endpoints
 * and the unary operations; gw-etcd-watch.c: watches; gw-etcd-keeper.c:
 * lease keepers). Same thread and ownership rules as gw-etcd.h. */
#pragma once

#include <libsoup/soup.h>

#include "gw-etcd.h"

G_BEGIN_DECLS

/* The context everything of @etcd runs on (the thread-default one at
 * gw_etcd_new()). Borrowed. */
GMainContext *gw_etcd_get_context(GwEtcd *etcd);
/* The session for watch streams: no I/O timeout, since a watch is idle
 * as long as nothing changes. Borrowed. */
SoupSession *gw_etcd_get_stream_session(GwEtcd *etcd);
guint gw_etcd_get_n_endpoints(GwEtcd *etcd);
/* The endpoint tried first (the last that answered), and its URL. */
guint gw_etcd_get_current(GwEtcd *etcd);
const gchar *gw_etcd_get_endpoint_at(GwEtcd *etcd, guint index);
/* @index failed (@error says why): the next operation starts at the one
 * after it, and gw_etcd_get_failure() says so until an endpoint answers. */
void gw_etcd_endpoint_failed(GwEtcd *etcd, guint index, const GError *error);
/* @index answered: the next operation starts there. */
void gw_etcd_endpoint_answered(GwEtcd *etcd, guint index);

/* Sets on @msg what every request carries: our client certificate (if
 * any) and the handler that records why a member's certificate was
 * refused. */
void gw_etcd_prepare_message(GwEtcd *etcd, SoupMessage *msg);
/* @error (taken) from sending @msg, or, when the member's certificate was
 * refused, an error saying what was wrong with it (or, for a TLS error
 * without a client certificate configured, saying that). */
GError *gw_etcd_explain_failure(GwEtcd *etcd, SoupMessage *msg, GError *error);

G_END_DECLS
