/* This gateway's links: listener, dialers, one GwLink per peer, and the
 * static directory. */
#include "gw-links.h"

#include "gw-address.h"

#include <string.h>

typedef enum {
    GW_LINKS_STATE_CONNECTING, /* dialing, or waiting for the peer to dial */
    GW_LINKS_STATE_UP,
    GW_LINKS_STATE_DOWN,
    GW_LINKS_STATE_REFUSED,
} GwLinksState;

static const gchar *const gw_links_state_names[] = {
    [GW_LINKS_STATE_CONNECTING] = "connecting",
    [GW_LINKS_STATE_UP] = "up",
    [GW_LINKS_STATE_DOWN] = "down",
    [GW_LINKS_STATE_REFUSED] = "refused",
};

typedef struct {
    GwLinks *links; /* not owned */
    gchar *name;
    gchar *address;   /* nullable: where it listens (static and added peers) */
    gboolean dials;   /* we dial it: a static peer, or an added one whose name sorts after ours */
    gchar *seen_from; /* nullable: the address its last accepted link came from */
    GwLink *link;     /* owned */
    GwLinksState state;
    gchar *reason;      /* nullable: why it is down or refused */
    GCancellable *dial; /* nullable: a dial in progress */
    guint dial_id;      /* timeout for the next dial */
    guint backoff_ms;
    GHashTable *announced; /* id → id: our devices announced to it */
} GwLinksPeerState;

struct _GwLinks {
    GwDirectory directory; /* first: the static directory */
    GwLinkTls *tls;
    GSocketService *service;
    GCancellable *cancellable; /* handshakes of accepted connections */
    GHashTable *peers;         /* name → GwLinksPeerState */
    GPtrArray *removed;        /* GwLinksPeerState removed, until their link expired */
    GHashTable *published;     /* id → PolicyDevice: our exportable devices */
    GwLinkConfig config;
    GwLinksCallbacks callbacks;
    GwDirectoryEvents events;
    gpointer user_data;
};

static void gw_links_dial(GwLinksPeerState *peer);

static void
gw_links_event(GwLinks *links, GwLinksEvent event, const gchar *peer, const gchar *address,
               const gchar *reason)
{
    if (links->callbacks.event != NULL)
        links->callbacks.event(links, event, peer, address, reason, links->user_data);
}

static void
gw_links_set_state(GwLinksPeerState *peer, GwLinksState state, const gchar *reason)
{
    peer->state = state;
    g_free(peer->reason);
    peer->reason = g_strdup(reason);
}

/* ---- the static directory ------------------------------------------------ */

/* Announces @id to @peer or withdraws it, as the policy says now. */
static void
gw_links_offer(GwLinks *links, GwLinksPeerState *peer, const gchar *id, const PolicyDevice *device)
{
    gboolean allowed =
        device != NULL && links->events.may_export(id, device, peer->name, links->user_data);

    if (allowed) {
        gw_link_announce(peer->link, id, device);
        g_hash_table_replace(peer->announced, g_strdup(id), g_strdup(id));
    } else if (g_hash_table_remove(peer->announced, id)) {
        gw_link_withdraw(peer->link, id);
    }
}

static void
gw_links_publish(GwDirectory *directory, const gchar *id, const PolicyDevice *device)
{
    GwLinks *links = (GwLinks *)directory;
    GHashTableIter iter;
    gpointer value;

    g_hash_table_replace(links->published, g_strdup(id), policy_device_copy(device));
    g_hash_table_iter_init(&iter, links->peers);
    while (g_hash_table_iter_next(&iter, NULL, &value))
        gw_links_offer(links, value, id, device);
}

static void
gw_links_withdraw(GwDirectory *directory, const gchar *id)
{
    GwLinks *links = (GwLinks *)directory;
    GHashTableIter iter;
    gpointer value;

    g_hash_table_remove(links->published, id);
    g_hash_table_iter_init(&iter, links->peers);
    while (g_hash_table_iter_next(&iter, NULL, &value))
        gw_links_offer(links, value, id, NULL);
}

/* Every published device offered to @peer again. */
static void
gw_links_offer_all(GwLinks *links, GwLinksPeerState *peer)
{
    GHashTableIter iter;
    gpointer key, value;
    g_autoptr(GPtrArray) gone = g_ptr_array_new_with_free_func(g_free);

    g_hash_table_iter_init(&iter, links->published);
    while (g_hash_table_iter_next(&iter, &key, &value))
        gw_links_offer(links, peer, key, value);
    /* announced but no longer published */
    g_hash_table_iter_init(&iter, peer->announced);
    while (g_hash_table_iter_next(&iter, &key, NULL)) {
        if (!g_hash_table_contains(links->published, key))
            g_ptr_array_add(gone, g_strdup(key));
    }
    for (guint i = 0; i < gone->len; i++)
        gw_links_offer(links, peer, gone->pdata[i], NULL);
}

static void
gw_links_refresh(GwDirectory *directory)
{
    GwLinks *links = (GwLinks *)directory;
    GHashTableIter iter;
    gpointer value;

    g_hash_table_iter_init(&iter, links->peers);
    while (g_hash_table_iter_next(&iter, NULL, &value))
        gw_links_offer_all(links, value);
}

static const GwDirectoryOps gw_links_directory_ops = {
    .publish = gw_links_publish,
    .withdraw = gw_links_withdraw,
    .refresh = gw_links_refresh,
};

/* ---- one link's callbacks ------------------------------------------------ */

static void
gw_links_link_up(GwLink *link, gboolean resumed, gpointer user_data)
{
    GwLinksPeerState *peer = user_data;

    peer->backoff_ms = 0;
    gw_links_set_state(peer, GW_LINKS_STATE_UP, NULL);
    g_message("link %s: up%s", peer->name, resumed ? " (its sessions resumed)" : "");
    gw_links_event(peer->links, GW_LINKS_EVENT_UP, peer->name,
                   peer->address != NULL ? peer->address : peer->seen_from,
                   resumed ? "resumed" : NULL);
    if (g_hash_table_size(peer->announced) == 0)
        g_message("link %s: the policy exports no device to it", peer->name);
    else
        g_message("link %s: %u device%s exported to it", peer->name,
                  g_hash_table_size(peer->announced),
                  g_hash_table_size(peer->announced) == 1 ? "" : "s");
}

static void
gw_links_link_down(GwLink *link, const gchar *reason, gpointer user_data)
{
    GwLinksPeerState *peer = user_data;

    if (peer->state == GW_LINKS_STATE_UP) {
        g_message("link %s: down: %s", peer->name, reason);
        gw_links_event(peer->links, GW_LINKS_EVENT_DOWN, peer->name,
                       peer->address != NULL ? peer->address : peer->seen_from, reason);
    }
    if (peer->state != GW_LINKS_STATE_REFUSED)
        gw_links_set_state(peer, GW_LINKS_STATE_DOWN, reason);
    if (peer->dials && peer->dial == NULL && peer->dial_id == 0)
        gw_links_dial(peer);
}

static void
gw_links_link_refused(GwLink *link, const gchar *reason, gpointer user_data)
{
    GwLinksPeerState *peer = user_data;
    g_autofree gchar *why = g_strdup_printf("refused by the peer: %s", reason);

    g_warning("link %s: %s", peer->name, why);
    gw_links_set_state(peer, GW_LINKS_STATE_REFUSED, why);
    gw_links_event(peer->links, GW_LINKS_EVENT_REFUSED, peer->name, peer->address, why);
}

static void
gw_links_device_added(GwLink *link, const gchar *id, const PolicyDevice *device, gpointer user_data)
{
    GwLinksPeerState *peer = user_data;

    peer->links->events.found(peer->name, id, device, peer->links->user_data);
}

static void
gw_links_device_removed(GwLink *link, const gchar *id, gpointer user_data)
{
    GwLinksPeerState *peer = user_data;

    peer->links->events.lost(peer->name, id, peer->links->user_data);
}

static void
gw_links_synced(GwLink *link, guint devices, gpointer user_data)
{
    GwLinksPeerState *peer = user_data;

    if (devices == 0)
        g_message("link %s: it exports no device to us", peer->name);
    else
        g_message("link %s: it exports %u device%s to us", peer->name, devices,
                  devices == 1 ? "" : "s");
}

static gboolean
gw_links_open_direct(GwLink *link, GwLinkStream *stream, const gchar *id, gchar **reason,
                     gpointer user_data)
{
    GwLinksPeerState *peer = user_data;
    GwLinks *links = peer->links;

    /* a migration relay names a VM's socket, not a device: the owner
     * decides whether this peer may open one */
    if (!g_hash_table_contains(peer->announced, id) &&
        !g_str_has_prefix(id, GW_LINK_MIGRATION_STREAM_PREFIX)) {
        *reason = g_strdup_printf("device %s is not exported to gateway %s", id, peer->name);
        g_message("link %s: refused to open %s: %s", peer->name, id, *reason);
        return FALSE;
    }
    return links->callbacks.open_direct(links, link, stream, id, reason, links->user_data);
}

static void gw_links_link_expired(GwLink *link, gpointer user_data);

/* A new peer; @address nullable (an accepted peer), @dials: we dial it. */
static GwLinksPeerState *
gw_links_peer_new(GwLinks *links, const gchar *name, const gchar *address, gboolean dials)
{
    static const GwLinkCallbacks callbacks = {
        .up = gw_links_link_up,
        .down = gw_links_link_down,
        .refused = gw_links_link_refused,
        .device_added = gw_links_device_added,
        .device_removed = gw_links_device_removed,
        .synced = gw_links_synced,
        .open_direct = gw_links_open_direct,
        .expired = gw_links_link_expired,
    };
    GwLinksPeerState *peer = g_new0(GwLinksPeerState, 1);

    peer->links = links;
    peer->name = g_strdup(name);
    peer->address = g_strdup(address);
    peer->dials = dials;
    peer->state = GW_LINKS_STATE_CONNECTING;
    peer->announced = g_hash_table_new_full(g_str_hash, g_str_equal, g_free, g_free);
    peer->link = gw_link_new(name, &links->config, &callbacks, peer);
    g_hash_table_insert(links->peers, peer->name, peer);
    return peer;
}

/* No more dials of @peer: the one in progress is cancelled, the next
 * one not scheduled. */
static void
gw_links_peer_stop_dialing(GwLinksPeerState *peer)
{
    if (peer->dial != NULL) {
        g_cancellable_cancel(peer->dial);
        g_clear_object(&peer->dial);
    }
    g_clear_handle_id(&peer->dial_id, g_source_remove);
}

static void
gw_links_peer_free(gpointer data)
{
    GwLinksPeerState *peer = data;

    gw_links_peer_stop_dialing(peer);
    g_clear_pointer(&peer->link, gw_link_free);
    g_hash_table_unref(peer->announced);
    g_free(peer->name);
    g_free(peer->address);
    g_free(peer->seen_from);
    g_free(peer->reason);
    g_free(peer);
}

/* ---- dialing -------------------------------------------------------------- */

static gboolean
gw_links_dial_due(gpointer data)
{
    GwLinksPeerState *peer = data;

    peer->dial_id = 0;
    gw_links_dial(peer);
    return G_SOURCE_REMOVE;
}

static void
gw_links_dial_later(GwLinksPeerState *peer)
{
    peer->backoff_ms = peer->backoff_ms == 0 ? GW_LINKS_DIAL_FIRST_MS
                                             : MIN(peer->backoff_ms * 2, GW_LINKS_DIAL_MAX_MS);
    peer->dial_id = g_timeout_add(peer->backoff_ms, gw_links_dial_due, peer);
}

static void
gw_links_dialed(GObject *source, GAsyncResult *result, gpointer user_data)
{
    GwLinksPeerState *peer = user_data;
    g_autoptr(GError) error = NULL;
    g_autoptr(GIOStream) stream = NULL;

    stream = gw_link_tls_connect_finish((GwLinkTls *)source, result, &error);
    if (g_error_matches(error, G_IO_ERROR, G_IO_ERROR_CANCELLED))
        return; /* @peer may be gone */
    g_clear_object(&peer->dial);
    if (stream == NULL) {
        g_debug("link %s: %s", peer->name, error->message);
        /* say it once per state change, not at every retry */
        if (peer->state != GW_LINKS_STATE_DOWN || g_strcmp0(peer->reason, error->message) != 0)
            g_warning("link %s: %s", peer->name, error->message);
        if (peer->state != GW_LINKS_STATE_REFUSED)
            gw_links_set_state(peer, GW_LINKS_STATE_DOWN, error->message);
        gw_links_dial_later(peer);
        return;
    }
    g_info("link %s: connected to %s", peer->name, peer->address);
    gw_link_attach(peer->link, stream);
}

static void
gw_links_dial(GwLinksPeerState *peer)
{
    if (gw_link_is_up(peer->link) || peer->dial != NULL)
        return;
    if (peer->state == GW_LINKS_STATE_REFUSED) {
        /* a refusal (a certificate problem, a policy) is not fixed by
         * dialing faster: wait the longest backoff */
        peer->backoff_ms = GW_LINKS_DIAL_MAX_MS / 2;
    }
    peer->dial = g_cancellable_new();
    g_debug("link %s: dialing %s", peer->name, peer->address);
    gw_link_tls_connect_async(peer->links->tls, peer->address, peer->name, GW_LINKS_HANDSHAKE_MS,
                              peer->dial, gw_links_dialed, peer);
}

/* ---- accepting ------------------------------------------------------------ */

typedef struct {
    GwLinks *links;
    gchar *address;
} GwLinksAccept;

static void
gw_links_accepted(GObject *source, GAsyncResult *result, gpointer user_data)
{
    GwLinksAccept *accept = user_data;
    GwLinks *links = accept->links;
    g_autoptr(GError) error = NULL;
    g_autoptr(GError) refusal = NULL;
    g_autofree gchar *name = NULL;
    g_autofree gchar *address = g_steal_pointer(&accept->address);
    g_autoptr(GIOStream) stream = NULL;
    GwLinksPeerState *peer;

    g_free(accept);
    stream = gw_link_tls_accept_finish((GwLinkTls *)source, result, &name, &refusal, &error);
    if (g_error_matches(error, G_IO_ERROR, G_IO_ERROR_CANCELLED))
        return; /* @links may be gone */
    if (stream == NULL) {
        g_warning("link from %s: %s", address, error->message);
        return;
    }
    peer = name != NULL ? g_hash_table_lookup(links->peers, name) : NULL;
    if (refusal == NULL && peer == NULL && g_hash_table_size(links->peers) >= GW_LINKS_MAX_PEERS)
        refusal = g_error_new(G_IO_ERROR, G_IO_ERROR_PERMISSION_DENIED,
                              "too many gateways (%u) are linked to %s", GW_LINKS_MAX_PEERS,
                              gw_link_tls_get_name(links->tls));
    if (refusal == NULL && g_strcmp0(name, gw_link_tls_get_name(links->tls)) == 0)
        refusal = g_error_new(G_IO_ERROR, G_IO_ERROR_PERMISSION_DENIED,
                              "the certificate names this gateway itself (%s)", name);
    if (refusal == NULL && peer != NULL && peer->dials &&
        g_strcmp0(gw_link_tls_get_name(links->tls), name) < 0)
        refusal = g_error_new(G_IO_ERROR, G_IO_ERROR_PERMISSION_DENIED,
                              "%s dials %s itself (both list each other in link-peers; the name "
                              "that sorts first dials)",
                              gw_link_tls_get_name(links->tls), name);
    if (refusal != NULL) {
        g_warning("link from %s%s%s%s: refused: %s", address, name != NULL ? " (" : "",
                  name != NULL ? name : "", name != NULL ? ")" : "", refusal->message);
        gw_links_event(links, GW_LINKS_EVENT_REFUSED, name != NULL ? name : address, address,
                       refusal->message);
        gw_link_refuse(stream, refusal->message, 1000);
        return;
    }
    if (peer == NULL)
        peer = gw_links_peer_new(links, name, NULL, FALSE);
    g_free(peer->seen_from);
    peer->seen_from = g_strdup(address);
    g_info("link %s: accepted from %s", name, address);
    gw_link_attach(peer->link, stream);
    /* what it may import: sent after its HELLO by the link */
    gw_links_offer_all(links, peer);
}

static gboolean
gw_links_incoming(GSocketService *service, GSocketConnection *connection, GObject *source,
                  gpointer user_data)
{
    GwLinks *links = user_data;
    GwLinksAccept *accept = g_new0(GwLinksAccept, 1);
    g_autoptr(GSocketAddress) remote = g_socket_connection_get_remote_address(connection, NULL);

    accept->links = links;
    if (remote != NULL && G_IS_INET_SOCKET_ADDRESS(remote)) {
        g_autofree gchar *ip = g_inet_address_to_string(
            g_inet_socket_address_get_address(G_INET_SOCKET_ADDRESS(remote)));
        accept->address = g_strdup_printf(
            "%s:%u", ip, g_inet_socket_address_get_port(G_INET_SOCKET_ADDRESS(remote)));
    } else {
        accept->address = g_strdup("?");
    }
    gw_link_tls_accept_async(links->tls, connection, GW_LINKS_HANDSHAKE_MS, links->cancellable,
                             gw_links_accepted, accept);
    return TRUE;
}

GwLinks *
gw_links_new(GwLinkTls *tls, const gchar *listen, const GwLinksPeer *peers, guint n_peers,
             const GwLinkConfig *config, const GwLinksCallbacks *cb,
             const GwDirectoryEvents *events, gpointer user_data, GError **error)
{
    g_autoptr(GwLinkTls) owned_tls = tls;
    g_autoptr(GSocketService) service = NULL;
    GwLinks *links;

    g_return_val_if_fail(cb != NULL && cb->open_direct != NULL, NULL);
    g_return_val_if_fail(events != NULL && events->may_export != NULL && events->found != NULL &&
                             events->lost != NULL,
                         NULL);
    if (listen != NULL) {
        g_autoptr(GSocketAddress) address = gw_address_parse_listen(listen, error);
        if (address == NULL) {
            g_prefix_error(error, "link-listen=%s: ", listen);
            return NULL;
        }
        service = g_socket_service_new();
        if (!g_socket_listener_add_address(G_SOCKET_LISTENER(service), address,
                                           G_SOCKET_TYPE_STREAM, G_SOCKET_PROTOCOL_TCP, NULL, NULL,
                                           error)) {
            g_prefix_error(error, "link-listen=%s: ", listen);
            return NULL;
        }
    }
    links = g_new0(GwLinks, 1);
    links->directory.ops = &gw_links_directory_ops;
    links->tls = g_steal_pointer(&owned_tls);
    links->cancellable = g_cancellable_new();
    links->peers = g_hash_table_new_full(g_str_hash, g_str_equal, NULL, gw_links_peer_free);
    links->removed = g_ptr_array_new_with_free_func(gw_links_peer_free);
    links->published =
        g_hash_table_new_full(g_str_hash, g_str_equal, g_free, (GDestroyNotify)policy_device_free);
    links->config = *config;
    links->callbacks = *cb;
    links->events = *events;
    links->user_data = user_data;
    for (guint i = 0; i < n_peers; i++)
        gw_links_peer_new(links, peers[i].name, peers[i].address, TRUE);
    if (service != NULL) {
        g_signal_connect(service, "incoming", G_CALLBACK(gw_links_incoming), links);
        g_socket_service_start(service);
        links->service = g_steal_pointer(&service);
        g_message("links: %s listening on %s", gw_link_tls_get_name(links->tls), listen);
    }
    for (guint i = 0; i < n_peers; i++)
        gw_links_dial(g_hash_table_lookup(links->peers, peers[i].name));
    return links;
}

/* ---- peers that come and go ----------------------------------------------- */

void
gw_links_add_peer(GwLinks *links, const gchar *name, const gchar *address)
{
    const gchar *self = gw_link_tls_get_name(links->tls);
    GwLinksPeerState *peer;
    gboolean dials;

    g_return_if_fail(name != NULL && address != NULL);
    if (strcmp(name, self) == 0)
        return;
    if (!policy_gateway_name_is_valid(name)) {
        g_warning("links: peer \"%s\" at %s not added: not a valid gateway name", name, address);
        return;
    }
    /* the name that sorts first dials, the other waits to be dialed */
    dials = strcmp(self, name) < 0;
    peer = g_hash_table_lookup(links->peers, name);
    if (peer == NULL) {
        if (g_hash_table_size(links->peers) >= GW_LINKS_MAX_PEERS) {
            g_warning("links: peer %s at %s not added: %s has %u peers already", name, address,
                      self, GW_LINKS_MAX_PEERS);
            return;
        }
        peer = gw_links_peer_new(links, name, address, dials);
        /* what it may import, announced once the link is up */
        gw_links_offer_all(links, peer);
        g_message("link %s: added at %s (%s)", name, address,
                  dials ? "dialed from here" : "it dials here");
        if (dials)
            gw_links_dial(peer);
        return;
    }
    if (g_strcmp0(peer->address, address) == 0 && peer->dials == dials)
        return;
    g_message("link %s: now at %s (%s)", name, address,
              dials ? "dialed from here" : "it dials here");
    g_free(peer->address);
    peer->address = g_strdup(address);
    peer->dials = dials;
    if (!dials) {
        gw_links_peer_stop_dialing(peer);
        return;
    }
    if (gw_link_is_up(peer->link))
        return; /* the next dial goes to the new address */
    /* a dial to the old address, or the backoff after one, is no longer
     * of use: dial the new one now */
    gw_links_peer_stop_dialing(peer);
    peer->backoff_ms = 0;
    gw_links_dial(peer);
}

/* A removed peer's link ended (its streams and devices): the audit
 * hears the link went down if it was up, and the peer is freed. */
static void
gw_links_link_expired(GwLink *link, gpointer user_data)
{
    GwLinksPeerState *peer = user_data;

    if (peer->state == GW_LINKS_STATE_UP)
        gw_links_event(peer->links, GW_LINKS_EVENT_DOWN, peer->name,
                       peer->address != NULL ? peer->address : peer->seen_from,
                       "removed: the gateway is gone");
    g_ptr_array_remove_fast(peer->links->removed, peer);
}

void
gw_links_remove_peer(GwLinks *links, const gchar *name)
{
    GwLinksPeerState *peer = g_hash_table_lookup(links->peers, name);
    g_autofree gchar *reason = NULL;

    if (peer == NULL)
        return;
    g_hash_table_steal(links->peers, name);
    gw_links_peer_stop_dialing(peer);
    reason = g_strdup_printf("the gateway %s is gone (removed from the peers)", name);
    g_message("link %s: removed%s", name, peer->state == GW_LINKS_STATE_UP ? " (it was up)" : "");
    /* its streams end and its devices are lost from an idle callback
     * soon after, then gw_links_link_expired() frees it */
    g_ptr_array_add(links->removed, peer);
    gw_link_expire(peer->link, reason);
}

void
gw_links_free(GwLinks *links)
{
    if (links == NULL)
        return;
    g_cancellable_cancel(links->cancellable);
    if (links->service != NULL) {
        g_socket_service_stop(links->service);
        g_socket_listener_close(G_SOCKET_LISTENER(links->service));
        g_signal_handlers_disconnect_by_data(links->service, links);
        g_clear_object(&links->service);
    }
    g_hash_table_unref(links->peers);
    g_ptr_array_unref(links->removed);
    g_hash_table_unref(links->published);
    g_clear_object(&links->cancellable);
    gw_link_tls_free(links->tls);
    g_free(links);
}

GwDirectory *
gw_links_get_directory(GwLinks *links)
{
    return &links->directory;
}

const gchar *
gw_links_get_name(GwLinks *links)
{
    return gw_link_tls_get_name(links->tls);
}

GwLink *
gw_links_lookup(GwLinks *links, const gchar *peer)
{
    GwLinksPeerState *state = g_hash_table_lookup(links->peers, peer);

    return state != NULL ? state->link : NULL;
}

static gint
gw_links_compare_names(gconstpointer a, gconstpointer b)
{
    return g_strcmp0(*(const gchar *const *)a, *(const gchar *const *)b);
}

GPtrArray *
gw_links_list(GwLinks *links)
{
    g_autofree gpointer *names = NULL;
    GPtrArray *list;
    guint n = 0;

    names = g_hash_table_get_keys_as_array(links->peers, &n);
    qsort(names, n, sizeof(gpointer), gw_links_compare_names);
    list = g_ptr_array_sized_new(n);
    for (guint i = 0; i < n; i++) {
        GwLinksPeerState *peer = g_hash_table_lookup(links->peers, names[i]);
        g_ptr_array_add(list, peer->link);
    }
    return list;
}

void
gw_links_to_json(GwLinks *links, JsonBuilder *builder)
{
    g_autofree gpointer *names = NULL;
    guint n = 0;

    json_builder_set_member_name(builder, "gateway");
    json_builder_add_string_value(builder, gw_link_tls_get_name(links->tls));
    json_builder_set_member_name(builder, "links");
    json_builder_begin_array(builder);
    names = g_hash_table_get_keys_as_array(links->peers, &n);
    qsort(names, n, sizeof(gpointer), gw_links_compare_names);
    for (guint i = 0; i < n; i++) {
        GwLinksPeerState *peer = g_hash_table_lookup(links->peers, names[i]);
        GwLinkStats stats;

        gw_link_get_stats(peer->link, &stats);
        json_builder_begin_object(builder);
        json_builder_set_member_name(builder, "peer");
        json_builder_add_string_value(builder, peer->name);
        json_builder_set_member_name(builder, "state");
        json_builder_add_string_value(builder, gw_links_state_names[peer->state]);
        json_builder_set_member_name(builder, "address");
        if (peer->address != NULL || peer->seen_from != NULL)
            json_builder_add_string_value(builder,
                                          peer->address != NULL ? peer->address : peer->seen_from);
        else
            json_builder_add_null_value(builder);
        json_builder_set_member_name(builder, "dialed");
        json_builder_add_boolean_value(builder, peer->dials);
        json_builder_set_member_name(builder, "streams");
        json_builder_add_int_value(builder, stats.streams);
        json_builder_set_member_name(builder, "peer_devices");
        json_builder_add_int_value(builder, stats.peer_devices);
        json_builder_set_member_name(builder, "exported");
        json_builder_add_int_value(builder, g_hash_table_size(peer->announced));
        json_builder_set_member_name(builder, "reason");
        if (peer->reason != NULL)
            json_builder_add_string_value(builder, peer->reason);
        else
            json_builder_add_null_value(builder);
        json_builder_set_member_name(builder, "rtt_us");
        json_builder_add_int_value(builder, stats.rtt_us);
        json_builder_set_member_name(builder, "connects");
        json_builder_add_int_value(builder, (gint64)stats.connects);
        json_builder_set_member_name(builder, "resumed");
        json_builder_add_int_value(builder, (gint64)stats.resumed);
        json_builder_end_object(builder);
    }
    json_builder_end_array(builder);
}
