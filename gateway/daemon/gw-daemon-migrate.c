/* Live migration across hosts (docs/migration.md, "Across hosts"): the
 * anchor ends of relay streams other gateways open to the VM sockets
 * served here, the relays of this host's migrated-in QEMUs, the sockets
 * prepared for them, and the audit records of migrations. */
#include <string.h>

#include <glib/gstdio.h>

#include "gw-daemon-private.h"
#include "gw-log.h"
#include "gw-relay-anchor.h"
#include "gw-relay.h"
#include "gw-vm-handover.h"

/* A socket bound for an incoming migration's QEMU: its chardev connects
 * at start-up, and its bytes are relayed to the gateway that holds the
 * device. */
struct _GwDaemonRelaySocket {
    GwDaemon *daemon; /* borrowed */
    gchar *vm;
    gchar *uuid;
    gchar *file;
    gchar *path;
    GwVmListener *listener;    /* owned */
    GwRelay *relay;            /* owned, nullable: no QEMU connected */
    pid_t relay_pid;           /* its QEMU's */
    GwVmMigratedPids migrated; /* the QEMUs here the VM migrated away from */
};

/* This gateway's name in the records ("this host" without links). */
static const gchar *
gw_daemon_self(GwDaemon *daemon)
{
    return daemon->links != NULL ? gw_links_get_name(daemon->links) : "this host";
}

/* Whether @gateway is one of migration-peers. */
static gboolean
gw_daemon_is_migration_peer(GwDaemon *daemon, const gchar *gateway)
{
    g_auto(GStrv) names = NULL;

    if (daemon->config.migration_peers == NULL)
        return FALSE;
    names = g_strsplit_set(daemon->config.migration_peers, ",; ", -1);
    return g_strv_contains((const gchar *const *)names, gateway);
}

void
gw_daemon_migrated(const gchar *vm, const gchar *device_id, const gchar *path, gboolean done,
                   const gchar *detail, const gchar *from, const gchar *to, gpointer user_data)
{
    GwDaemon *daemon = user_data;
    g_autofree gchar *why = g_strdup_printf("%s: %s", path, detail);
    GwAuditKind kind = GW_AUDIT_MIGRATE;
    GwAuditEvent record = {
        .device_id = device_id,
        .vm = vm,
        .vm_uuid = vm != NULL ? gw_binder_get_vm_uuid(daemon->binder, vm) : NULL,
        .actor = "usbgwd",
        .reason = why,
    };

    if (!done)
        kind = GW_AUDIT_MIGRATE_FAILED;
    else if (from == NULL && to != NULL)
        kind = GW_AUDIT_MIGRATE_OUT;
    else if (from != NULL && to == NULL)
        kind = GW_AUDIT_MIGRATE_IN;
    record.event = kind;
    if (from != NULL || to != NULL) {
        record.from = from != NULL ? from : gw_daemon_self(daemon);
        record.to = to != NULL ? to : gw_daemon_self(daemon);
        record.peer = from != NULL ? from : to;
    }
    gw_daemon_record(daemon, &record);
}

/* ---- the anchor: relays of VMs that left with their device here ---------- */

static gboolean
gw_daemon_anchor_free_idle(gpointer data)
{
    gw_relay_anchor_free(data);
    return G_SOURCE_REMOVE;
}

static void
gw_daemon_anchor_closed(GwRelayAnchor *anchor, const gchar *reason, gpointer user_data)
{
    GwDaemon *daemon = user_data;
    guint index;

    /* freed from an idle: this runs inside its own callbacks */
    if (g_ptr_array_find(daemon->relay_anchors, anchor, &index))
        g_ptr_array_steal_index(daemon->relay_anchors, index);
    g_idle_add(gw_daemon_anchor_free_idle, anchor);
}

static gboolean gw_daemon_relay_accept(GwDaemon *daemon, GwLink *link, GwLinkStream *stream,
                                       const gchar *id, gchar **reason);

gboolean
gw_daemon_relay_open(GwDaemon *daemon, GwLink *link, GwLinkStream *stream, const gchar *id,
                     gchar **reason)
{
    if (gw_daemon_relay_accept(daemon, link, stream, id, reason))
        return TRUE;
    /* the anchor's admin sees who tried, and why not */
    g_message("link %s: refused a migration relay (%s): %s", gw_link_get_peer(link), id, *reason);
    return FALSE;
}

static gboolean
gw_daemon_relay_accept(GwDaemon *daemon, GwLink *link, GwLinkStream *stream, const gchar *id,
                       gchar **reason)
{
    const gchar *peer = gw_link_get_peer(link);
    g_autofree gchar *vm = NULL;
    g_autofree gchar *file = NULL;
    g_autofree gchar *path = NULL;
    g_autoptr(GError) error = NULL;
    GwRelayAnchor *anchor;

    if (!gw_daemon_is_migration_peer(daemon, peer)) {
        *reason = g_strdup_printf("gateway %s is not a migration peer of %s", peer,
                                  gw_daemon_self(daemon));
        return FALSE;
    }
    if (!gw_relay_parse_stream_id(id, &vm, &file) || !policy_vm_name_is_valid(vm)) {
        *reason = g_strdup("not a VM socket usbgwd could serve");
        return FALSE;
    }
    path = g_build_filename(daemon->config.rundir, "vm", vm, file, NULL);
    if (!gw_daemon_path_has_peer(path, daemon)) {
        *reason = g_strdup_printf("no QEMU of VM \"%s\" holds %s on %s", vm, file,
                                  gw_daemon_self(daemon));
        return FALSE;
    }
    anchor = gw_relay_anchor_new(stream, gw_daemon_self(daemon), peer, vm, path,
                                 gw_daemon_anchor_closed, daemon, &error);
    if (anchor == NULL) {
        *reason = g_strdup(error->message);
        return FALSE;
    }
    g_ptr_array_add(daemon->relay_anchors, anchor);
    return TRUE;
}

gboolean
gw_daemon_vm_is_away(GwDaemon *daemon, const gchar *vm)
{
    return gw_relay_anchor_vm_is_away(vm);
}

void
gw_daemon_migrate_vm_json(GwDaemon *daemon, const gchar *name, JsonObject *vm)
{
    const gchar *host = gw_relay_anchor_vm_host(name);

    if (host == NULL)
        return;
    json_object_set_string_member(vm, "state", "elsewhere");
    json_object_set_string_member(vm, "host", host);
}

void
gw_daemon_migrate_relayed_json(GwDaemon *daemon, GPtrArray *listed, JsonArray *array)
{
    g_autoptr(GHashTable) seen = g_hash_table_new(g_str_hash, g_str_equal);
    GHashTableIter iter;
    gpointer value;

    for (guint i = 0; listed != NULL && i < listed->len; i++)
        g_hash_table_add(seen, g_ptr_array_index(listed, i));
    g_hash_table_iter_init(&iter, daemon->relay_sockets);
    while (g_hash_table_iter_next(&iter, NULL, &value)) {
        GwDaemonRelaySocket *rs = value;
        JsonObject *vm;
        JsonArray *sockets;

        if (rs->relay == NULL || !gw_relay_is_current(rs->relay) ||
            g_hash_table_contains(seen, rs->vm))
            continue;
        g_hash_table_add(seen, rs->vm);
        vm = json_object_new();
        json_object_set_string_member(vm, "name", rs->vm);
        json_object_set_string_member(vm, "uuid", rs->uuid);
        json_object_set_string_member(vm, "state",
                                      gw_relay_holds_device(rs->relay) ? "relayed" : "migrating");
        if (gw_relay_get_anchor(rs->relay) != NULL)
            json_object_set_string_member(vm, "anchor", gw_relay_get_anchor(rs->relay));
        json_object_set_array_member(vm, "devices", json_array_new());
        sockets = json_array_new();
        json_array_add_string_element(sockets, rs->path);
        json_object_set_array_member(vm, "sockets", sockets);
        json_array_add_object_element(array, vm);
    }
}

/* ---- the relays: VMs that came here, their device elsewhere -------------- */

static GwLinkStream *
gw_daemon_relay_open_stream(const gchar *id, guint attempt, const GwLinkStreamCallbacks *cb,
                            gpointer cb_data, gpointer user_data)
{
    GwDaemonRelaySocket *rs = user_data;
    GwDaemon *daemon = rs->daemon;
    g_auto(GStrv) names = NULL;
    guint n = 0;

    if (daemon->links == NULL || daemon->config.migration_peers == NULL)
        return NULL;
    names = g_strsplit_set(daemon->config.migration_peers, ",; ", -1);
    for (guint i = 0; names[i] != NULL; i++) {
        GwLink *link;
        if (names[i][0] == '\0' || n++ < attempt)
            continue;
        link = gw_links_lookup(daemon->links, names[i]);
        if (link == NULL) {
            g_warning("migration peer %s has no gateway link (link-peers, or a link it made)",
                      names[i]);
            continue;
        }
        return gw_link_open_direct(link, id, cb, cb_data);
    }
    return NULL;
}

static void
gw_daemon_relay_migrated(GwRelay *relay, gboolean in, const gchar *anchor, const gchar *other,
                         gpointer user_data)
{
    GwDaemonRelaySocket *rs = user_data;
    GwDaemon *daemon = rs->daemon;
    g_autofree gchar *why =
        g_strdup_printf("%s: the device stays on gateway %s, relayed", rs->path, anchor);

    /* its chardev connects again until it is stopped: not a new QEMU */
    if (!in)
        gw_vm_migrated_pids_add(&rs->migrated, rs->relay_pid);
    GwAuditEvent record = {
        .event = in ? GW_AUDIT_MIGRATE_IN : GW_AUDIT_MIGRATE_OUT,
        .vm = rs->vm,
        .vm_uuid = rs->uuid,
        .actor = "usbgwd",
        .reason = why,
        .peer = other,
        .from = in ? other : gw_daemon_self(daemon),
        .to = in ? gw_daemon_self(daemon) : other,
    };

    gw_daemon_record(daemon, &record);
}

static gboolean
gw_daemon_relay_free_idle(gpointer data)
{
    gw_relay_free(data);
    return G_SOURCE_REMOVE;
}

static void
gw_daemon_relay_closed(GwRelay *relay, const gchar *reason, gpointer user_data)
{
    GwDaemonRelaySocket *rs = user_data;

    if (rs->relay == relay)
        rs->relay = NULL;
    g_idle_add(gw_daemon_relay_free_idle, relay);
}

static const GwRelayFuncs gw_daemon_relay_funcs = {
    .open = gw_daemon_relay_open_stream,
    .migrated = gw_daemon_relay_migrated,
    .closed = gw_daemon_relay_closed,
};

static void
gw_daemon_relay_incoming(GSocketConnection *connection, gpointer user_data)
{
    GwDaemonRelaySocket *rs = user_data;

    if (!gw_vm_socket_peer_allowed(&rs->daemon->socket_access, connection, rs->vm, NULL,
                                   rs->path)) {
        g_io_stream_close(G_IO_STREAM(connection), NULL, NULL);
        return;
    }
    if (gw_vm_migrated_pids_has(&rs->migrated, gw_vm_socket_peer_pid(connection))) {
        gw_log_device(G_LOG_LEVEL_MESSAGE, NULL, rs->vm, GW_LOG_ID_PEER_REFUSED,
                      "refused a peer on %s: it is a QEMU the VM migrated away from", rs->path);
        g_io_stream_close(G_IO_STREAM(connection), NULL, NULL);
        return;
    }
    if (rs->relay != NULL) {
        gw_log_device(G_LOG_LEVEL_WARNING, NULL, rs->vm, GW_LOG_ID_PEER_REFUSED,
                      "refused a second peer on %s (a migrated QEMU is relayed from it)", rs->path);
        g_io_stream_close(G_IO_STREAM(connection), NULL, NULL);
        return;
    }
    gw_log_device(G_LOG_LEVEL_MESSAGE, NULL, rs->vm, NULL,
                  "a migrating QEMU connected on %s; relaying it to the gateway that holds the "
                  "device",
                  rs->path);
    rs->relay_pid = gw_vm_socket_peer_pid(connection);
    rs->relay = gw_relay_new(connection, rs->vm, rs->file, &gw_daemon_relay_funcs, rs);
}

static void
gw_daemon_relay_socket_free(gpointer data)
{
    GwDaemonRelaySocket *rs = data;

    gw_vm_listener_free(rs->listener);
    if (rs->listener != NULL)
        g_unlink(rs->path);
    g_clear_pointer(&rs->relay, gw_relay_free);
    g_free(rs->vm);
    g_free(rs->uuid);
    g_free(rs->file);
    g_free(rs->path);
    g_free(rs);
}

/* The file name of a socket path libvirt's XML names: the slot, which
 * names the device the same way on every host. */
static gchar *
gw_daemon_socket_file(const gchar *path, GError **error)
{
    g_autofree gchar *file = g_path_get_basename(path);
    g_autofree gchar *id = g_strconcat(GW_RELAY_STREAM_PREFIX, "x/", file, NULL);
    g_autofree gchar *vm = NULL;
    g_autofree gchar *checked = NULL;

    if (!g_path_is_absolute(path) || !gw_relay_parse_stream_id(id, &vm, &checked)) {
        g_set_error(error, G_IO_ERROR, G_IO_ERROR_INVALID_ARGUMENT,
                    "\"%s\" is not a usbgw VM socket (an absolute path to NAME.sock)", path);
        return NULL;
    }
    return g_steal_pointer(&file);
}

guint
gw_daemon_migrate_prepare(GwDaemon *daemon, const gchar *vm, const gchar *uuid, JsonArray *sockets,
                          GError **error)
{
    guint prepared = 0;

    for (guint i = 0; sockets != NULL && i < json_array_get_length(sockets); i++) {
        JsonNode *node = json_array_get_element(sockets, i);
        const gchar *given =
            JSON_NODE_HOLDS_VALUE(node) && json_node_get_value_type(node) == G_TYPE_STRING
                ? json_node_get_string(node)
                : NULL;
        g_autofree gchar *file = NULL;
        g_autofree gchar *path = NULL;
        GwDaemonRelaySocket *rs;

        if (given == NULL) {
            g_set_error(error, G_IO_ERROR, G_IO_ERROR_INVALID_ARGUMENT,
                        "\"sockets\"[%u] is not a string", i);
            return prepared;
        }
        file = gw_daemon_socket_file(given, error);
        if (file == NULL)
            return prepared;
        path = g_build_filename(daemon->config.rundir, "vm", vm, file, NULL);
        /* the device is here (it stays, or the VM comes back to it), or a
         * socket waits already */
        if (gw_daemon_path_has_peer(path, daemon) ||
            g_hash_table_contains(daemon->relay_sockets, path))
            continue;
        rs = g_new0(GwDaemonRelaySocket, 1);
        rs->daemon = daemon;
        rs->vm = g_strdup(vm);
        rs->uuid = g_strdup(uuid);
        rs->file = g_strdup(file);
        rs->path = g_strdup(path);
        rs->listener =
            gw_vm_socket_listen(&daemon->socket_access, path, gw_daemon_relay_incoming, rs, error);
        if (rs->listener == NULL) {
            gw_daemon_relay_socket_free(rs);
            return prepared;
        }
        g_hash_table_insert(daemon->relay_sockets, g_strdup(path), rs);
        gw_log_device(G_LOG_LEVEL_MESSAGE, NULL, vm, NULL,
                      "incoming migration of VM \"%s\": %s bound for its QEMU", vm, path);
        prepared++;
    }
    return prepared;
}

void
gw_daemon_migrate_vm_stopped(GwDaemon *daemon, const gchar *vm)
{
    GHashTableIter iter;
    gpointer value;

    g_hash_table_iter_init(&iter, daemon->relay_sockets);
    while (g_hash_table_iter_next(&iter, NULL, &value)) {
        GwDaemonRelaySocket *rs = value;
        if (g_strcmp0(rs->vm, vm) == 0)
            g_hash_table_iter_remove(&iter);
    }
}

void
gw_daemon_migrate_init(GwDaemon *daemon)
{
    daemon->relay_anchors = g_ptr_array_new_with_free_func((GDestroyNotify)gw_relay_anchor_free);
    daemon->relay_sockets =
        g_hash_table_new_full(g_str_hash, g_str_equal, g_free, gw_daemon_relay_socket_free);
}

void
gw_daemon_migrate_clear(GwDaemon *daemon)
{
    g_clear_pointer(&daemon->relay_sockets, g_hash_table_unref);
    g_clear_pointer(&daemon->relay_anchors, g_ptr_array_unref);
}
