/* A live migration of the proxy's QEMU side: the destination QEMU takes
 * the source's place with the stream to QEMU unbroken (GwPeerHandover,
 * docs/migration.md). The client's side, the proxy's checks and its
 * pending requests stay as they are. */
#include "gw-proxy-private.h"

#include <errno.h>
#include <sys/socket.h>

void
gw_proxy_migration_init(GwProxy *proxy)
{
    g_mutex_init(&proxy->migration.lock);
    /* from the first byte: the proxy's hello to QEMU */
    proxy->migration.stream = gw_handover_stream_new();
}

/* Frees the handover under the lock (the writer takes it too). */
static void
gw_proxy_migration_free_handover(GwProxy *proxy)
{
    GwPeerHandover *handover;

    g_mutex_lock(&proxy->migration.lock);
    handover = g_steal_pointer(&proxy->migration.handover);
    g_mutex_unlock(&proxy->migration.lock);
    gw_peer_handover_free(handover);
}

void
gw_proxy_migration_abandon(GwProxy *proxy)
{
    gw_proxy_migration_free_handover(proxy);
}

void
gw_proxy_migration_clear(GwProxy *proxy)
{
    gw_proxy_migration_free_handover(proxy);
    g_clear_pointer(&proxy->migration.stream, gw_handover_stream_free);
    g_clear_pointer(&proxy->migration.resend, g_bytes_unref);
    g_mutex_clear(&proxy->migration.lock);
}

int
gw_proxy_migration_flush_resend(GwProxy *proxy)
{
    GwProxyMigration *migration = &proxy->migration;
    GwProxySide *side = &proxy->qemu;
    gsize size;
    const guint8 *data;

    if (migration->resend == NULL)
        return 1;
    data = g_bytes_get_data(migration->resend, &size);
    while (migration->resend_offset < size) {
        ssize_t n = send(side->fd, data + migration->resend_offset, size - migration->resend_offset,
                         MSG_DONTWAIT | MSG_NOSIGNAL);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            return 0;
        if (n < 0)
            return -1;
        side->bytes_out += (guint64)n;
        migration->resend_offset += (gsize)n;
    }
    g_clear_pointer(&migration->resend, g_bytes_unref);
    migration->resend_offset = 0;
    return 1;
}

void
gw_proxy_migration_written(GwProxy *proxy, guint64 offset, const guint8 *data, gsize len)
{
    g_mutex_lock(&proxy->migration.lock);
    gw_handover_stream_append(proxy->migration.stream, offset, data, len);
    if (proxy->migration.handover != NULL)
        gw_peer_handover_written_locked(proxy->migration.handover, data, len);
    g_mutex_unlock(&proxy->migration.lock);
}

void
gw_proxy_migration_before_read(GwProxy *proxy)
{
    if (proxy->migration.handover != NULL && !proxy->migration.draining)
        gw_peer_handover_before_read(proxy->migration.handover);
}

gboolean
gw_proxy_migration_after_read(GwProxy *proxy, gssize got)
{
    if (proxy->migration.handover == NULL)
        return FALSE;
    gw_peer_handover_after_read(proxy->migration.handover, got);
    return got < 0;
}

gboolean
gw_proxy_migration_draining(GwProxy *proxy)
{
    return proxy->migration.draining;
}

void
gw_proxy_migration_qemu_hello(GwProxy *proxy)
{
    g_mutex_lock(&proxy->migration.lock);
    gw_handover_stream_set_ids64(
        proxy->migration.stream,
        usbredirparser_peer_has_cap(proxy->qemu.parser, usb_redir_cap_64bits_ids) &&
            usbredirparser_have_cap(proxy->qemu.parser, usb_redir_cap_64bits_ids));
    g_mutex_unlock(&proxy->migration.lock);
}

gboolean
gw_proxy_migration_source_gone(GwProxy *proxy)
{
    if (proxy->migration.handover == NULL)
        return FALSE;
    gw_peer_handover_source_gone(proxy->migration.handover);
    return TRUE;
}

/* GwPeerHandover's drain: what the source QEMU sent, parsed to its end
 * and relayed to the client. */
static gboolean
gw_proxy_migration_drain(gpointer owner, guint64 *drained)
{
    GwProxy *proxy = owner;
    GwProxySide *side = &proxy->qemu;
    guint64 before = side->bytes_in;

    if (!gw_peer_handover_source_ended(proxy->migration.handover)) {
        int rc;

        proxy->migration.draining = TRUE;
        side->in_empty = FALSE;
        rc = usbredirparser_do_read(side->parser);
        proxy->migration.draining = FALSE;
        if (!proxy->ended && (side->stream_error != NULL || rc == usbredirparser_read_parse_error))
            gw_proxy_fail(proxy, GW_PROXY_END_QEMU_PROTOCOL, "%s",
                          side->stream_error != NULL ? side->stream_error
                                                     : "malformed usbredir data from QEMU");
    }
    if (proxy->ended)
        return FALSE;
    gw_proxy_side_flush(&proxy->client);
    *drained = side->bytes_in - before;
    return !proxy->ended;
}

/* The destination is QEMU from now on: its re-sent bytes go first, the
 * source's socket is closed. */
static void
gw_proxy_migration_switch_locked(gpointer owner, GSocket *destination, GBytes *resend)
{
    GwProxy *proxy = owner;
    GwProxySide *side = &proxy->qemu;

    g_clear_pointer(&side->watch, gw_fd_watch_free);
    g_socket_close(side->socket, NULL);
    g_object_unref(side->socket);
    side->socket = destination;
    side->fd = g_socket_get_fd(destination);
    g_socket_set_blocking(destination, FALSE);
    /* the source was read to its end: nothing of it is left */
    g_clear_pointer(&side->held, g_free);
    side->in = NULL;
    side->in_len = 0;
    side->in_empty = FALSE;
    side->eof = FALSE;
    proxy->migration.resend = resend;
    proxy->migration.resend_offset = 0;
    if (gw_proxy_migration_flush_resend(proxy) < 0)
        side->eof = TRUE; /* the next write fails and ends the session */
    gw_proxy_side_rewatch(side);
}

static void
gw_proxy_migration_finished(gpointer owner, GwPeerHandoverResult result, const gchar *detail)
{
    GwProxy *proxy = owner;

    gw_proxy_migration_free_handover(proxy);
    if (result == GW_PEER_HANDOVER_FAILED) {
        gw_proxy_fail(proxy, GW_PROXY_END_QEMU_CLOSED, "%s", detail);
        return;
    }
    if (proxy->migration.func != NULL)
        proxy->migration.func(proxy, result, detail, proxy->migration.func_data);
}

static const GwPeerHandoverFuncs gw_proxy_migration_funcs = {
    .drain = gw_proxy_migration_drain,
    .switch_peer_locked = gw_proxy_migration_switch_locked,
    .finished = gw_proxy_migration_finished,
};

gboolean
gw_proxy_add_destination(GwProxy *proxy, GSocket *destination, GError **error)
{
    GwProxyMigration *migration = &proxy->migration;

    if (proxy->ended || proxy->qemu.fd < 0) {
        g_set_error(error, G_IO_ERROR, G_IO_ERROR_CLOSED, "%s: the session ended", proxy->label);
        return FALSE;
    }
    if (!proxy->qemu.hello) {
        g_set_error(error, G_IO_ERROR, G_IO_ERROR_NOT_INITIALIZED,
                    "%s: QEMU has not started the protocol yet", proxy->label);
        return FALSE;
    }
    if (migration->handover != NULL) {
        g_set_error(error, G_IO_ERROR, G_IO_ERROR_BUSY,
                    "%s: a migration handover is pending already", proxy->label);
        return FALSE;
    }
    if (migration->resend != NULL) {
        g_set_error(error, G_IO_ERROR, G_IO_ERROR_BUSY,
                    "%s: the last migration's destination has not taken its bytes yet",
                    proxy->label);
        return FALSE;
    }
    g_mutex_lock(&migration->lock);
    migration->handover =
        gw_peer_handover_new(proxy->qemu.fd, proxy->qemu.bytes_out, &migration->lock,
                             migration->stream, destination, proxy->context, proxy->label,
                             proxy->device_id, proxy->vm, &gw_proxy_migration_funcs, proxy, error);
    g_mutex_unlock(&migration->lock);
    return migration->handover != NULL;
}

gboolean
gw_proxy_is_migrating(GwProxy *proxy)
{
    return proxy->migration.handover != NULL;
}

void
gw_proxy_set_handover_func(GwProxy *proxy, GwProxyHandoverFunc func, gpointer user_data)
{
    proxy->migration.func = func;
    proxy->migration.func_data = user_data;
}
