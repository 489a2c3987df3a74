/* GwLink's directory: the devices we export to the peer (announce,
 * withdraw, the sync after each HELLO: every DEVICE_ADD, then SYNCED) and
 * the devices the peer exports to us (its DEVICE_ADD, DEVICE_REMOVE and
 * SYNCED; the device_added, device_removed and synced callbacks). See
 * gw-link.h for the contract, gw-link-private.h for the structs. */
#include "gw-link.h"

#include <string.h>

#include "gw-link-private.h"
#include "gw-link-wire.h"

void
gw_link_export_free(gpointer data)
{
    GwLinkExport *e = data;
    g_free(e->id);
    g_free(e->device_json);
    g_free(e);
}

void
gw_link_peer_device_free(gpointer data)
{
    GwLinkPeerDevice *d = data;
    if (d->device != NULL)
        policy_device_free(d->device);
    g_free(d->json);
    g_free(d);
}

/* Removes every device the peer announced (device_removed for each). */
void
gw_link_remove_peer_devices(GwLink *link, gboolean unseen_only)
{
    g_autoptr(GPtrArray) ids = g_ptr_array_new_with_free_func(g_free);
    GHashTableIter iter;
    gpointer key, value;

    g_hash_table_iter_init(&iter, link->peer_devices);
    while (g_hash_table_iter_next(&iter, &key, &value)) {
        GwLinkPeerDevice *d = value;
        if (!unseen_only || !d->seen)
            g_ptr_array_add(ids, g_strdup(key));
    }
    for (guint i = 0; i < ids->len && !link->freed; i++) {
        const gchar *id = g_ptr_array_index(ids, i);
        if (!g_hash_table_remove(link->peer_devices, id))
            continue;
        link->stats.peer_devices = g_hash_table_size(link->peer_devices);
        if (link->cb.device_removed != NULL)
            link->cb.device_removed(link, id, link->user_data);
    }
}

/* ---- The sync: ours to the peer, the peer's to us ------------------------- */

/* The peer's HELLO came: our directory goes out in full, then SYNCED; the
 * peer's is synced anew (what it does not announce again goes). */
void
gw_link_directory_start_sync(GwLink *link)
{
    GHashTableIter iter;
    gpointer value;

    /* our directory, in full, then SYNCED */
    g_hash_table_iter_init(&iter, link->exports);
    while (g_hash_table_iter_next(&iter, NULL, &value)) {
        GwLinkExport *e = value;
        e->pending = TRUE;
        g_queue_push_tail_link(&link->pending, &e->pending_node);
    }
    link->synced_pending = TRUE;
    /* the peer's directory: what it does not announce again goes */
    g_hash_table_iter_init(&iter, link->peer_devices);
    while (g_hash_table_iter_next(&iter, NULL, &value))
        ((GwLinkPeerDevice *)value)->seen = FALSE;
    link->syncing = TRUE;
}

/* The connection ended: our sync stops (the next HELLO starts it over). */
void
gw_link_directory_stop_sync(GwLink *link)
{
    while (link->pending.head != NULL) {
        GwLinkExport *e = link->pending.head->data;
        g_queue_unlink(&link->pending, &e->pending_node);
        e->pending = FALSE;
    }
    link->synced_pending = FALSE;
}

/* Queues DEVICE_ADDs of the running sync (when nothing else waits), then
 * SYNCED. */
void
gw_link_fill_directory(GwLink *link)
{
    GwLinkExport *e;

    while (link->ctl->len < GW_LINK_OUT_LOW && (e = g_queue_peek_head(&link->pending)) != NULL) {
        g_autoptr(GError) error = NULL;
        g_queue_unlink(&link->pending, &e->pending_node);
        e->pending = FALSE;
        if (!gw_link_wire_put_device_add(link->ctl, e->id, e->device_json, &error))
            g_message("link to %s: device %s not announced: %s", link->peer, e->id, error->message);
    }
    if (link->pending.length == 0 && link->synced_pending) {
        gw_link_wire_put_synced(link->ctl);
        link->synced_pending = FALSE;
    }
}

/* ---- The peer's directory frames ----------------------------------------- */

void
gw_link_on_device_add(GwLink *link, const GwLinkFrame *frame)
{
    g_autoptr(GError) error = NULL;
    g_autofree gchar *id = NULL;
    g_autofree gchar *json = NULL;
    g_autoptr(PolicyDevice) device = NULL;
    GwLinkPeerDevice *d;

    if (!gw_link_wire_parse_device_add(frame, &id, &device, &json, &error)) {
        gw_link_protocol_error(link, error->message);
        return;
    }
    d = g_hash_table_lookup(link->peer_devices, id);
    if (d == NULL) {
        if (g_hash_table_size(link->peer_devices) >= GW_LINK_MAX_DEVICES) {
            g_autofree gchar *problem =
                g_strdup_printf("DEVICE_ADD: more than %u devices announced", GW_LINK_MAX_DEVICES);
            gw_link_protocol_error(link, problem);
            return;
        }
        d = g_new0(GwLinkPeerDevice, 1);
        g_hash_table_insert(link->peer_devices, g_strdup(id), d);
        link->stats.peer_devices = g_hash_table_size(link->peer_devices);
    } else if (strcmp(d->json, json) == 0) {
        d->seen = TRUE;
        return;
    }
    d->seen = TRUE;
    g_clear_pointer(&d->device, policy_device_free);
    g_free(d->json);
    d->device = g_steal_pointer(&device);
    d->json = g_steal_pointer(&json);
    if (link->cb.device_added != NULL)
        link->cb.device_added(link, id, d->device, link->user_data);
}

void
gw_link_on_device_remove(GwLink *link, const GwLinkFrame *frame)
{
    g_autoptr(GError) error = NULL;
    g_autofree gchar *id = NULL;

    if (!gw_link_wire_parse_device_remove(frame, &id, &error)) {
        gw_link_protocol_error(link, error->message);
        return;
    }
    if (!g_hash_table_remove(link->peer_devices, id))
        return;
    link->stats.peer_devices = g_hash_table_size(link->peer_devices);
    if (link->cb.device_removed != NULL)
        link->cb.device_removed(link, id, link->user_data);
}

void
gw_link_on_synced(GwLink *link, const GwLinkFrame *frame)
{
    g_autoptr(GError) error = NULL;

    if (!gw_link_wire_parse_synced(frame, &error)) {
        gw_link_protocol_error(link, error->message);
        return;
    }
    if (!link->syncing)
        return;
    link->syncing = FALSE;
    gw_link_remove_peer_devices(link, TRUE);
    if (!link->freed && link->cb.synced != NULL)
        link->cb.synced(link, g_hash_table_size(link->peer_devices), link->user_data);
}

/* ---- Public API ---------------------------------------------------------- */

void
gw_link_announce(GwLink *link, const gchar *id, const PolicyDevice *device)
{
    GwLinkExport *e;

    g_return_if_fail(link != NULL && id != NULL && device != NULL);
    e = g_hash_table_lookup(link->exports, id);
    if (e == NULL) {
        e = g_new0(GwLinkExport, 1);
        e->id = g_strdup(id);
        e->pending_node.data = e;
        g_hash_table_insert(link->exports, e->id, e);
    }
    g_free(e->device_json);
    e->device_json = gw_link_wire_device_json(device);
    if (gw_link_connected(link) && !e->pending) {
        e->pending = TRUE;
        g_queue_push_tail_link(&link->pending, &e->pending_node);
        gw_link_kick(link);
    }
}

void
gw_link_withdraw(GwLink *link, const gchar *id)
{
    GwLinkExport *e;

    g_return_if_fail(link != NULL && id != NULL);
    e = g_hash_table_lookup(link->exports, id);
    if (e == NULL)
        return;
    if (e->pending)
        g_queue_unlink(&link->pending, &e->pending_node);
    if (gw_link_connected(link)) {
        g_autoptr(GError) error = NULL;
        if (gw_link_wire_put_device_remove(link->ctl, id, &error))
            gw_link_kick(link);
    }
    g_hash_table_remove(link->exports, id);
}
