/* Gateway links wired to the rest of usbgwd (docs/links.md): our
 * exportable devices published in the directory, a peer's streams served
 * by our attachments (export), and other gateways' devices listed in the
 * inventory, decided by the binder like local ones and served to VMs
 * through GwImport (import). */
#include "gw-daemon-private.h"
#include "gw-relay.h"

#include <errno.h>
#include <string.h>
#include <sys/socket.h>

#include "gw-device.h"
#include "gw-log.h"

/* Longest device identity a peer may announce. */
#define GW_DAEMON_REMOTE_ID_MAX 256

/* "GATEWAY/ID": another gateway's device as this one knows it. */
static gchar *
gw_daemon_remote_key(const gchar *gateway, const gchar *id)
{
    return g_strdup_printf("%s/%s", gateway, id);
}

gboolean
gw_daemon_is_remote(GwDaemon *daemon, const gchar *id)
{
    GwInventoryDevice *inv = gw_inventory_lookup(daemon->inventory, id);

    return inv != NULL && inv->remote;
}

gchar *
gw_daemon_slot_name(GwDaemon *daemon, GwInventoryDevice *inv)
{
    g_autofree gchar *slot = gw_device_slot_name(inv->desc);

    /* one VM may hold keys of two gateways plugged at the same port */
    if (inv->remote)
        return g_strdup_printf("%s-%s", inv->desc->gateway, slot);
    return g_steal_pointer(&slot);
}

/* ---- export --------------------------------------------------------------- */

/* Whether our device may go to a peer now: the policy exports it there and
 * nothing of this host holds it. */
static gboolean
gw_daemon_exportable(GwDaemon *daemon, const GwBinderDevice *dev)
{
    return dev != NULL && dev->present && dev->vm == NULL && dev->manual_vm == NULL &&
           !dev->released && dev->desc->gateway == NULL &&
           dev->decision.verdict == POLICY_VERDICT_EXPORT;
}

void
gw_daemon_sync_exports(GwDaemon *daemon)
{
    GwDirectory *directory;
    g_autoptr(GPtrArray) devices = NULL;
    g_autoptr(GHashTable) now = NULL;
    GHashTableIter iter;
    gpointer key;

    directory = gw_daemon_directory(daemon);
    if (directory == NULL)
        return;
    devices = gw_binder_list_devices(daemon->binder);
    now = g_hash_table_new(g_str_hash, g_str_equal);
    for (guint i = 0; i < devices->len; i++) {
        const GwBinderDevice *dev = g_ptr_array_index(devices, i);
        g_autofree gchar *text = NULL;
        const gchar *before;

        if (!gw_daemon_exportable(daemon, dev))
            continue;
        g_hash_table_add(now, dev->id);
        text = policy_device_describe(dev->desc);
        before = g_hash_table_lookup(daemon->exported, dev->id);
        if (g_strcmp0(before, text) == 0)
            continue;
        g_hash_table_replace(daemon->exported, g_strdup(dev->id), g_steal_pointer(&text));
        gw_directory_publish(directory, dev->id, dev->desc);
    }
    g_hash_table_iter_init(&iter, daemon->exported);
    while (g_hash_table_iter_next(&iter, &key, NULL)) {
        if (g_hash_table_contains(now, key))
            continue;
        gw_directory_withdraw(directory, key);
        g_hash_table_iter_remove(&iter);
    }
    /* a new policy may export the same devices to other gateways */
    if (daemon->export_policy != gw_binder_get_policy(daemon->binder)) {
        daemon->export_policy = gw_binder_get_policy(daemon->binder);
        gw_directory_refresh(directory);
    }
}

static gboolean
gw_daemon_may_export(const gchar *id, const PolicyDevice *device, const gchar *gateway,
                     gpointer user_data)
{
    GwDaemon *daemon = user_data;
    PolicyDecision decision;

    return policy_exports_to(gw_binder_get_policy(daemon->binder), device, gateway, &decision);
}

static void
gw_daemon_export_ended(GwAttachment *attachment, const gchar *reason, gpointer user_data)
{
    GwDaemon *daemon = user_data;
    GHashTableIter iter;
    gpointer key, value;

    g_hash_table_iter_init(&iter, daemon->served);
    while (g_hash_table_iter_next(&iter, &key, &value)) {
        GwDaemonServed *served = value;
        g_autofree gchar *peer = NULL;

        if (served->attachment != attachment || served->export_peer == NULL)
            continue;
        peer = g_steal_pointer(&served->export_peer);
        gw_log_device(G_LOG_LEVEL_MESSAGE, key, NULL, NULL,
                      "%s: no longer exported to gateway %s: %s", (const gchar *)key, peer, reason);
        {
            const GwBinderDevice *dev = gw_binder_lookup(daemon->binder, key);
            GwAuditEvent record = {
                .event = GW_AUDIT_EXPORT_CLOSE,
                .device_id = key,
                .device = dev != NULL ? dev->desc : NULL,
                .actor = "link",
                .reason = reason,
                .peer = peer,
            };
            gw_daemon_record(daemon, &record);
        }
        return;
    }
}

/* An exported device's session on the link's direct stream (no
 * socketpair between them). Freed with the session (its transport's
 * close), which closes the stream if it is still open. */
typedef struct {
    GwLinkStream *stream;     /* first (the transport's slot); nullable: until the stream ended */
    GwAttachment *attachment; /* borrowed: outlives its session */
} GwDaemonExport;

static void
gw_daemon_export_close(gpointer data)
{
    /* @data is &e->stream, the struct's first member */
    GwDaemonExport *e = data;
    if (e->stream != NULL)
        gw_link_stream_close(e->stream, "the local end closed");
    g_free(e);
}

static void
gw_daemon_export_readable(GwLinkStream *stream, gpointer user_data)
{
    GwDaemonExport *e = user_data;
    gw_attachment_transport_ready(e->attachment, G_IO_IN);
}

static void
gw_daemon_export_writable(GwLinkStream *stream, gpointer user_data)
{
    GwDaemonExport *e = user_data;
    gw_attachment_transport_ready(e->attachment, G_IO_OUT);
}

/* The importer closed the stream, or the link stayed down past its grace:
 * the session reads what came before and then the end (its peer hung up). */
static void
gw_daemon_export_stream_closed(GwLinkStream *stream, const gchar *reason, gpointer user_data)
{
    GwDaemonExport *e = user_data;
    gw_attachment_transport_ready(e->attachment, G_IO_IN | G_IO_HUP);
    e->stream = NULL;
}

/* A peer opens our device @id: the device's attachment serves it on the
 * link's stream. */
static gboolean
gw_daemon_export_open(GwLinks *links, GwLink *link, GwLinkStream *stream, const gchar *id,
                      gchar **reason, gpointer user_data)
{
    static const GwTransport transport = {
        .read = gw_link_stream_slot_read,
        .write = gw_link_stream_slot_write,
        .flush = gw_link_stream_slot_flush,
        .close = gw_daemon_export_close,
    };
    static const GwLinkStreamCallbacks stream_callbacks = {
        .closed = gw_daemon_export_stream_closed,
        .readable = gw_daemon_export_readable,
        .writable = gw_daemon_export_writable,
    };
    GwDaemon *daemon = user_data;
    const gchar *peer = gw_link_get_peer(link);
    const GwBinderDevice *dev = NULL;
    GwDaemonServed *served = g_hash_table_lookup(daemon->served, id);
    PolicyDecision decision;
    g_autoptr(GError) error = NULL;
    g_autofree gchar *where = NULL;
    GwDaemonExport *e;

    /* a VM that migrated to the peer's host, its device kept here */
    if (g_str_has_prefix(id, GW_RELAY_STREAM_PREFIX))
        return gw_daemon_relay_open(daemon, link, stream, id, reason);
    dev = gw_binder_lookup(daemon->binder, id);
    if (!gw_daemon_exportable(daemon, dev) ||
        !policy_exports_to(gw_binder_get_policy(daemon->binder), dev->desc, peer, &decision)) {
        *reason = g_strdup_printf("%s is not exported to gateway %s now", id, peer);
        return FALSE;
    }
    if (served == NULL || served->attachment == NULL) {
        *reason = g_strdup_printf("%s is not claimed on %s", id, gw_links_get_name(links));
        return FALSE;
    }
    if (served->export_peer != NULL || gw_attachment_has_peer(served->attachment)) {
        *reason = g_strdup_printf("%s is in use by gateway %s", id,
                                  served->export_peer != NULL ? served->export_peer : "?");
        return FALSE;
    }
    e = g_new0(GwDaemonExport, 1);
    e->stream = stream;
    e->attachment = served->attachment;
    gw_link_stream_set_callbacks(stream, &stream_callbacks, e);
    where = g_strdup_printf("from gateway %s", peer);
    gw_attachment_set_peer_ended(served->attachment, gw_daemon_export_ended, daemon);
    if (!gw_attachment_serve_transport(served->attachment, &transport, &e->stream, where, &error)) {
        *reason = g_strdup(error->message);
        g_free(e);
        return FALSE;
    }
    served->export_peer = g_strdup(peer);
    {
        g_autofree gchar *rule = gw_daemon_rule_of(&decision);
        GwAuditEvent record = {
            .event = GW_AUDIT_EXPORT_OPEN,
            .device_id = id,
            .device = dev->desc,
            .rule = rule,
            .actor = "link",
            .peer = peer,
        };
        gw_daemon_record(daemon, &record);
    }
    return TRUE;
}

/* ---- import --------------------------------------------------------------- */

/* A device id a peer may announce: printable, no '/', bounded. */
static gboolean
gw_daemon_remote_id_is_valid(const gchar *id)
{
    gsize len = strlen(id);

    if (len == 0 || len > GW_DAEMON_REMOTE_ID_MAX || !g_utf8_validate(id, -1, NULL))
        return FALSE;
    for (const gchar *p = id; *p != '\0'; p++) {
        if (*p == '/' || g_ascii_iscntrl(*p))
            return FALSE;
    }
    return TRUE;
}

static void
gw_daemon_remote_found(const gchar *gateway, const gchar *id, const PolicyDevice *device,
                       gpointer user_data)
{
    GwDaemon *daemon = user_data;
    g_autofree gchar *key = NULL;
    g_autoptr(PolicyDevice) desc = NULL;
    GwInventoryDevice *inv;

    if (!gw_daemon_remote_id_is_valid(id)) {
        g_warning("link %s: ignored a device with an unusable id", gateway);
        return;
    }
    key = gw_daemon_remote_key(gateway, id);
    desc = policy_device_copy(device);
    g_free(desc->gateway);
    desc->gateway = g_strdup(gateway);
    /* where it sits on its gateway is that gateway's business; here the
     * gateway's name is its place */
    inv = gw_inventory_set_remote(daemon->inventory, key, desc, TRUE);
    if (inv == NULL)
        return;
    gw_log_device(G_LOG_LEVEL_MESSAGE, key, NULL, NULL, "%s: exported to us by gateway %s", key,
                  gateway);
    gw_binder_device_arrived(daemon->binder, key, inv->desc);
    gw_daemon_save_state(daemon);
}

static void
gw_daemon_remote_lost(const gchar *gateway, const gchar *id, gpointer user_data)
{
    GwDaemon *daemon = user_data;
    g_autofree gchar *key = gw_daemon_remote_key(gateway, id);
    GwInventoryDevice *inv = gw_inventory_lookup(daemon->inventory, key);

    if (inv == NULL || !inv->remote || !inv->remote_present)
        return;
    gw_log_device(G_LOG_LEVEL_MESSAGE, key, NULL, NULL, "%s: gateway %s no longer exports it", key,
                  gateway);
    gw_inventory_set_remote(daemon->inventory, key, inv->desc, FALSE);
    gw_binder_device_left(daemon->binder, key);
    gw_daemon_save_state(daemon);
}

/* "VID:PID class CC interfaces CC:SS:PP …": what the check compares. */
static gchar *
gw_daemon_describe_shape(const PolicyDevice *device)
{
    GString *text = g_string_new(NULL);

    g_string_append_printf(text, "%04x:%04x class %02x interfaces", device->vendor_id,
                           device->product_id, device->device_class);
    for (guint i = 0; i < device->interfaces->len; i++) {
        const PolicyInterface *itf = &g_array_index(device->interfaces, PolicyInterface, i);
        g_string_append_printf(text, " %02x:%02x:%02x", itf->klass, itf->subclass, itf->protocol);
    }
    if (device->interfaces->len == 0)
        g_string_append(text, " none");
    return g_string_free(text, FALSE);
}

/* The device QEMU is about to get must be the one the gateway announced
 * and the policy still gives to the VM (gw-import.h). */
static gboolean
gw_daemon_import_check(GwImport *import, const PolicyDevice *device, gchar **reason,
                       gpointer user_data)
{
    GwDaemon *daemon = user_data;
    const gchar *id = gw_import_get_id(import);
    const gchar *vm = gw_import_get_vm(import);
    GwInventoryDevice *inv = gw_inventory_lookup(daemon->inventory, id);
    const GwBinderDevice *dev = gw_binder_lookup(daemon->binder, id);
    Policy *policy = gw_binder_get_policy(daemon->binder);
    g_autoptr(PolicyDevice) presented = NULL;
    g_autofree gchar *said = NULL;
    g_autofree gchar *shown = NULL;
    PolicyDecision decision;

    if (inv == NULL || dev == NULL || !inv->remote) {
        *reason = g_strdup_printf("%s is no longer known", id);
        return FALSE;
    }
    /* what it presents must be what it announced (the policy decided on
     * that): VID:PID, device class and every interface's class */
    presented = policy_device_copy(device);
    g_free(presented->manufacturer);
    presented->manufacturer = g_strdup(inv->desc->manufacturer);
    g_free(presented->product);
    presented->product = g_strdup(inv->desc->product);
    g_free(presented->serial);
    presented->serial = g_strdup(inv->desc->serial);
    g_free(presented->port);
    presented->port = g_strdup(inv->desc->port);
    g_free(presented->hash);
    presented->hash = g_strdup(inv->desc->hash);
    g_free(presented->gateway);
    presented->gateway = g_strdup(inv->desc->gateway);
    if (device->vendor_id != inv->desc->vendor_id || device->product_id != inv->desc->product_id ||
        device->device_class != inv->desc->device_class ||
        device->interfaces->len != inv->desc->interfaces->len ||
        (device->interfaces->len > 0 &&
         memcmp(device->interfaces->data, inv->desc->interfaces->data,
                device->interfaces->len * sizeof(PolicyInterface)) != 0)) {
        said = gw_daemon_describe_shape(inv->desc);
        shown = gw_daemon_describe_shape(device);
        *reason = g_strdup_printf("gateway %s presents %s but announced %s", inv->desc->gateway,
                                  shown, said);
        return FALSE;
    }
    shown = policy_device_describe(presented);
    policy_decide(policy, POLICY_ORIGIN_HOST, presented, NULL, &decision);
    if (decision.verdict == POLICY_VERDICT_DENY) {
        *reason = g_strdup_printf("%s is denied by %s:%u", shown, decision.file, decision.line);
        return FALSE;
    }
    if (g_strcmp0(dev->manual_vm, vm) == 0)
        return TRUE;
    if (decision.verdict != POLICY_VERDICT_ASSIGN ||
        !policy_decision_is_for_vm(policy, &decision, vm,
                                   gw_binder_get_vm_uuid(daemon->binder, vm))) {
        *reason = g_strdup_printf("the policy does not give %s to vm \"%s\"", shown, vm);
        return FALSE;
    }
    return TRUE;
}

static void
gw_daemon_import_attached(GwImport *import, const PolicyDevice *device, gpointer user_data)
{
    GwDaemon *daemon = user_data;
    const gchar *id = gw_import_get_id(import);
    GwDaemonServed *served = g_hash_table_lookup(daemon->served, id);

    /* recorded at the bind (no libvirt) or when libvirt plugged it in;
     * again here only after a detach */
    if (served == NULL || g_strcmp0(served->audited_vm, gw_import_get_vm(import)) == 0)
        return;
    g_free(served->audited_vm);
    served->audited_vm = g_strdup(gw_import_get_vm(import));
    gw_daemon_audit(daemon, GW_AUDIT_ATTACH, id, gw_import_get_vm(import), "link",
                    gw_import_get_socket_path(import));
}

static void
gw_daemon_import_detached(GwImport *import, const gchar *reason, gboolean refused,
                          gpointer user_data)
{
    GwDaemon *daemon = user_data;
    const gchar *id = gw_import_get_id(import);
    GwDaemonServed *served = g_hash_table_lookup(daemon->served, id);

    gw_daemon_audit(daemon, refused ? GW_AUDIT_DENY : GW_AUDIT_DETACH, id, gw_import_get_vm(import),
                    "link", reason);
    if (served != NULL)
        g_clear_pointer(&served->audited_vm, g_free);
}

gboolean
gw_daemon_import_bind(GwDaemon *daemon, const gchar *id, const gchar *vm, const gchar *actor)
{
    static const GwImportCallbacks callbacks = {
        .check = gw_daemon_import_check,
        .attached = gw_daemon_import_attached,
        .detached = gw_daemon_import_detached,
    };
    GwInventoryDevice *inv = gw_inventory_lookup(daemon->inventory, id);
    GwDaemonServed *served = gw_daemon_lookup_served(daemon, id);
    const gchar *slash = strchr(id, '/');
    g_autofree gchar *gateway = NULL;
    g_autofree gchar *slot_name = NULL;
    g_autofree gchar *path = NULL;
    g_autoptr(GError) error = NULL;
    GwLink *link;

    g_return_val_if_fail(inv != NULL && slash != NULL, FALSE);
    if (served->import != NULL && g_strcmp0(gw_import_get_vm(served->import), vm) == 0) {
        gw_daemon_libvirt_attach(daemon, id, vm);
        return TRUE;
    }
    g_clear_pointer(&served->import, gw_import_free);
    gateway = g_strndup(id, slash - id);
    link = daemon->links != NULL ? gw_links_lookup(daemon->links, gateway) : NULL;
    if (link == NULL) {
        gw_log_device(G_LOG_LEVEL_WARNING, id, vm, NULL, "%s: no link to gateway %s", id, gateway);
        return FALSE;
    }
    slot_name = gw_daemon_slot_name(daemon, inv);
    path = gw_redirdev_plugger_device_socket(daemon->plugger, vm, id, slot_name);
    served->import =
        gw_import_new(link, slash + 1, id, vm, path, &daemon->socket_access,
                      daemon->config.link_reattach_interval * 1000, &callbacks, daemon, &error);
    if (served->import == NULL) {
        gw_log_device(G_LOG_LEVEL_WARNING, id, vm, NULL, "%s: %s", id, error->message);
        return FALSE;
    }
    gw_inventory_touch(inv);
    gw_log_device(G_LOG_LEVEL_MESSAGE, id, vm, NULL,
                  "%s: bound to vm \"%s\", served on %s (from gateway %s)", id, vm, path, gateway);
    /* as for a device of this host: with libvirt, "attach" is recorded once
     * libvirt plugged it in */
    if (daemon->libvirt == NULL) {
        g_free(served->audited_vm);
        served->audited_vm = g_strdup(vm);
        gw_daemon_audit(daemon, GW_AUDIT_ATTACH, id, vm, actor, path);
    }
    gw_daemon_libvirt_attach(daemon, id, vm);
    return TRUE;
}

void
gw_daemon_import_unbind(GwDaemon *daemon, const gchar *id, const gchar *vm, gboolean detach)
{
    GwDaemonServed *served = gw_daemon_lookup_served(daemon, id);
    GwInventoryDevice *inv = gw_inventory_lookup(daemon->inventory, id);
    const gchar *path = gw_daemon_served_socket(served);

    if (detach && path != NULL)
        gw_redirdev_plugger_unplug(daemon->plugger, vm, gw_binder_get_vm_uuid(daemon->binder, vm),
                                   path);
    g_clear_pointer(&served->import, gw_import_free);
    g_clear_pointer(&served->audited_vm, g_free);
    if (inv != NULL)
        gw_inventory_touch(inv);
}

/* ---- the links ------------------------------------------------------------ */

static void
gw_daemon_link_event(GwLinks *links, GwLinksEvent event, const gchar *peer, const gchar *address,
                     const gchar *reason, gpointer user_data)
{
    GwDaemon *daemon = user_data;
    GwAuditEvent record = {
        .actor = "link",
        .reason = reason,
        .peer = peer,
        .address = address,
    };

    switch (event) {
    case GW_LINKS_EVENT_UP:
        record.event = GW_AUDIT_LINK_UP;
        break;
    case GW_LINKS_EVENT_DOWN:
        record.event = GW_AUDIT_LINK_DOWN;
        break;
    case GW_LINKS_EVENT_REFUSED:
        record.event = GW_AUDIT_LINK_REFUSED;
        break;
    }
    gw_daemon_record(daemon, &record);
}

gboolean
gw_daemon_start_links(GwDaemon *daemon, GError **error)
{
    static const GwLinksCallbacks callbacks = {
        .open_direct = gw_daemon_export_open,
        .event = gw_daemon_link_event,
    };
    static const GwDirectoryEvents events = {
        .may_export = gw_daemon_may_export,
        .found = gw_daemon_remote_found,
        .lost = gw_daemon_remote_lost,
    };
    const GwConfig *config = &daemon->config;
    g_autoptr(GwLinkTls) tls = NULL;
    g_autofree GwLinksPeer *peers = NULL;
    GwLinkConfig link_config = {
        .grace_ms = config->link_grace * 1000,
    };

    daemon->exported = g_hash_table_new_full(g_str_hash, g_str_equal, g_free, g_free);
    if (config->link_listen == NULL && (config->peers == NULL || config->peers->len == 0))
        return TRUE;
    tls = gw_link_tls_new(config->link_cert, config->link_key, config->link_ca, error);
    if (tls == NULL)
        return FALSE;
    peers = g_new0(GwLinksPeer, config->peers->len + 1);
    for (guint i = 0; i < config->peers->len; i++) {
        const GwConfigPeer *peer = config->peers->pdata[i];
        peers[i].name = peer->name;
        peers[i].address = peer->address;
    }
    daemon->links =
        gw_links_new(g_steal_pointer(&tls), config->link_listen, peers, config->peers->len,
                     &link_config, &callbacks, &events, daemon, error);
    if (daemon->links == NULL)
        return FALSE;
    g_message("gateway %s: %u static peers%s%s", gw_links_get_name(daemon->links),
              config->peers->len, config->link_listen != NULL ? ", listening on " : "",
              config->link_listen != NULL ? config->link_listen : "");
    return TRUE;
}
