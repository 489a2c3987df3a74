/* The proxy's pending requests: what QEMU asked (under the id the proxy
 * gave it towards the client) and what must answer it, so that every
 * answer of the client is checked against a request. */
#include "gw-proxy-private.h"

static void
gw_proxy_pending_remove(GwProxy *proxy, GwProxyPending *pending)
{
    if (g_hash_table_lookup(proxy->pending_by_qemu, &pending->qemu_id) == pending)
        g_hash_table_remove(proxy->pending_by_qemu, &pending->qemu_id);
    g_hash_table_remove(proxy->pending, &pending->client_id); /* frees it */
}

/* The device left: QEMU forgets its requests, answers still on their way
 * from the client are dropped when they come. */
void
gw_proxy_pending_make_stale(GwProxy *proxy)
{
    GHashTableIter iter;
    gpointer value;

    g_hash_table_remove_all(proxy->pending_by_qemu);
    g_hash_table_iter_init(&iter, proxy->pending);
    while (g_hash_table_iter_next(&iter, NULL, &value))
        ((GwProxyPending *)value)->stale = TRUE;
}

/* Records a request from QEMU; returns FALSE when QEMU does not have the
 * device (the request is dropped) or the session ended. */
gboolean
gw_proxy_qemu_request(GwProxy *proxy, uint64_t qemu_id, guint32 answer, gint endpoint,
                      guint32 length, guint32 stream_id, uint64_t *client_id)
{
    GwProxyPending *pending;
    guint64 id;

    if (proxy->ended)
        return FALSE;
    if (proxy->dev != GW_PROXY_DEV_IN_QEMU || proxy->qemu_awaiting_ack) {
        g_debug("%s: request from QEMU without a device, dropped", proxy->label);
        return FALSE;
    }
    /* the read side stops at GW_PROXY_MAX_PENDING; one packet in parsing may
     * still complete */
    if (g_hash_table_size(proxy->pending) > GW_PROXY_MAX_PENDING) {
        gw_proxy_fail(proxy, GW_PROXY_END_QEMU_PROTOCOL, "more than %d requests outstanding",
                      GW_PROXY_MAX_PENDING);
        return FALSE;
    }
    do {
        id = proxy->next_client_id++;
        if (!usbredirparser_peer_has_cap(proxy->client.parser, usb_redir_cap_64bits_ids))
            id &= G_MAXUINT32;
    } while (g_hash_table_contains(proxy->pending, &id));

    pending = g_new0(GwProxyPending, 1);
    pending->client_id = id;
    pending->qemu_id = qemu_id;
    pending->answer = answer;
    pending->endpoint = endpoint;
    pending->length = length;
    pending->stream_id = stream_id;
    g_hash_table_insert(proxy->pending, &pending->client_id, pending);
    g_hash_table_replace(proxy->pending_by_qemu, &pending->qemu_id, pending);
    *client_id = id;
    return TRUE;
}

/* The answer to this recorded control request is a descriptor to check. */
void
gw_proxy_pending_check_descriptor(GwProxy *proxy, uint64_t client_id,
                                  const struct usb_redir_control_packet_header *request)
{
    GwProxyPending *pending = g_hash_table_lookup(proxy->pending, &client_id);

    if (pending == NULL)
        return;
    pending->check_descriptor = TRUE;
    pending->control = *request;
}

/* The request a client answer refers to. Returns TRUE with *out filled (and
 * the request forgotten) when the answer is to be relayed; FALSE when it is
 * dropped (a request of a device that left) or is a protocol violation
 * (the session ended). */
gboolean
gw_proxy_take_answer(GwProxy *proxy, uint64_t id, guint32 answer, gint endpoint, const gchar *what,
                     GwProxyPending *out)
{
    GwProxyPending *pending = g_hash_table_lookup(proxy->pending, &id);

    if (pending == NULL || pending->answer != answer) {
        gw_proxy_client_violation(proxy, "%s with id %" G_GUINT64_FORMAT " answers no request",
                                  what, id);
        return FALSE;
    }
    if (pending->endpoint != endpoint) {
        gw_proxy_client_violation(proxy,
                                  "%s with id %" G_GUINT64_FORMAT
                                  " is for endpoint %02x, the request was for %02x",
                                  what, id, (guint)endpoint, (guint)pending->endpoint);
        return FALSE;
    }
    *out = *pending;
    gw_proxy_pending_remove(proxy, pending);
    return !out->stale;
}

/* Stream statuses may answer a start/stop request or come on their own
 * (a stream that failed): TRUE and *qemu_id when @id is a request's. */
gboolean
gw_proxy_try_take_stream_answer(GwProxy *proxy, uint64_t id, guint32 answer, gint endpoint,
                                uint64_t *qemu_id, gboolean *stale)
{
    GwProxyPending *pending = g_hash_table_lookup(proxy->pending, &id);

    if (pending == NULL || pending->answer != answer || pending->endpoint != endpoint)
        return FALSE;
    *qemu_id = pending->qemu_id;
    *stale = pending->stale;
    gw_proxy_pending_remove(proxy, pending);
    return TRUE;
}
