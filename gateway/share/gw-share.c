/* Shares: a SPICE worker, one VM socket per channel, a proxy per lending. */
#include "gw-share.h"

#include <errno.h>
#include <string.h>
#include <glib-unix.h>
#include <sys/random.h>
#include <glib/gstdio.h>

#include "gw-log.h"
#include "gw-proxy.h"
#include "sw-frame.h"
#include "gw-vm-socket.h"
#include "gw-vm-handover.h"

/* Random bytes in a ticket; base64url makes 32 characters of them
 * (spice-server takes up to 60). */
#define GW_SHARE_TICKET_BYTES 24
#define GW_SHARE_MS_PER_S     1000

typedef struct {
    GwShare *share; /* not owned */
    guint index;
    gchar *path;               /* owned: the VM socket */
    GwVmListener *service;     /* owned: listens on @path */
    GSocketConnection *qemu;   /* owned, nullable: QEMU waiting for a device */
    guint qemu_watch;          /* HUP watch on an idle @qemu */
    GwSpiceStream *client;     /* owned, nullable: a client waiting for QEMU */
    GwProxy *proxy;            /* owned, nullable: relaying */
    GwSpiceStream *relayed;    /* the proxy's client stream (the proxy owns it) */
    PolicyDevice *lent;        /* owned, nullable: what QEMU has from the client */
    gchar *rule;               /* owned, nullable: the rule the last check named */
    gboolean check_denied;     /* the last refusal was the check's, already reported */
    gchar *lender;             /* owned, nullable: address of the client that lent @lent */
    gboolean open;             /* a client holds this channel */
    pid_t qemu_pid;            /* the waiting QEMU's, then the proxy's QEMU's; 0: unknown */
    pid_t migration_pid;       /* a pending migration destination's */
    GwVmMigratedPids migrated; /* the QEMUs the channel migrated away from */
} GwShareSlot;

struct _GwShare {
    gchar *vm;
    gchar *user;
    gchar *ticket;
    guint16 port;
    guint ttl_s;
    gint64 expires_unix; /* wall clock, seconds */
    gchar *expires_iso;
    guint expiry_id;
    gboolean used;                  /* a client logged in once */
    const GwVmSocketAccess *access; /* borrowed */
    guint max_life_s;
    gint64 ends_unix;      /* wall clock, seconds: the used share ends (0 unused) */
    guint life_id;         /* timeout ending it then */
    gchar *client_address; /* owned, nullable: the last client that logged in */
    gboolean client_in;    /* it has not left */
    GwSpiceWorker *worker;
    GwShareSlot *slots;
    guint n_slots;
    gchar **paths; /* owned, NULL-terminated: the slots' paths */
    guint ended_id;
    gchar *ended_reason;
    GwShareCallbacks callbacks;
    gpointer user_data;
};

static gboolean
gw_share_report_ended(gpointer data)
{
    GwShare *share = data;

    share->ended_id = 0;
    share->callbacks.ended(share, share->ended_reason, share->user_data);
    return G_SOURCE_REMOVE;
}

static void
gw_share_end(GwShare *share, const gchar *reason)
{
    if (share->ended_id != 0 || share->ended_reason != NULL)
        return;
    share->ended_reason = g_strdup(reason);
    share->ended_id = g_idle_add(gw_share_report_ended, share);
}

static gchar *
gw_share_make_ticket(GError **error)
{
    guint8 bytes[GW_SHARE_TICKET_BYTES];
    gchar *ticket;

    if (getrandom(bytes, sizeof(bytes), 0) != (ssize_t)sizeof(bytes)) {
        g_set_error(error, G_IO_ERROR, g_io_error_from_errno(errno),
                    "cannot make a ticket: getrandom: %s", g_strerror(errno));
        return NULL;
    }
    ticket = g_base64_encode(bytes, sizeof(bytes));
    explicit_bzero(bytes, sizeof(bytes));
    g_strdelimit(ticket, "+", '-');
    g_strdelimit(ticket, "/", '_');
    return ticket;
}

/* Whether a client is connected: it holds some channel. */
static gboolean
gw_share_has_client(GwShare *share)
{
    for (guint i = 0; i < share->n_slots; i++)
        if (share->slots[i].open)
            return TRUE;
    return FALSE;
}

/* Seconds until a used share ends (at least 1: 0 means "never" to the
 * worker; the share's own timeout ends it; at most what a millisecond
 * timeout holds, ~49 days, beyond the largest share-max-life). */
static guint
gw_share_life_left(GwShare *share)
{
    gint64 left = share->ends_unix - g_get_real_time() / G_USEC_PER_SEC;

    return (guint)CLAMP(left, 1, G_MAXUINT / GW_SHARE_MS_PER_S);
}

/* ---- the proxy of one lending --------------------------------------------- */

static gboolean
gw_share_proxy_check(GwProxy *proxy, const PolicyDevice *device, gchar **reason, gpointer user_data)
{
    GwShareSlot *slot = user_data;
    GwShare *share = slot->share;
    g_autofree gchar *rule = NULL;
    g_autofree gchar *why = NULL;
    gboolean allowed = share->callbacks.check(share, device, &rule, &why, share->user_data);

    g_free(slot->rule);
    slot->rule = g_strdup(rule);
    slot->check_denied = !allowed;
    if (!allowed) {
        share->callbacks.event(share, "deny", device, rule, why, share->client_address,
                               share->user_data);
        *reason = g_steal_pointer(&why);
    }
    return allowed;
}

static void gw_share_slot_handover(GwProxy *proxy, GwPeerHandoverResult result, const gchar *detail,
                                   gpointer user_data);

/* The session ends denied: a refusal of the check was reported there; one
 * of the proxy's own (what QEMU read of the lent device contradicted the
 * device as checked) is reported here, with the proxy's reason. */
static void
gw_share_proxy_denied(GwProxy *proxy, const PolicyDevice *device, const gchar *reason,
                      gpointer user_data)
{
    GwShareSlot *slot = user_data;
    GwShare *share = slot->share;

    if (slot->check_denied)
        return;
    /* the client lending now: the lend the proxy denied was not recorded */
    share->callbacks.event(share, "deny", device, slot->rule, reason, share->client_address,
                           share->user_data);
}

static void
gw_share_proxy_connected(GwProxy *proxy, const PolicyDevice *device, gpointer user_data)
{
    GwShareSlot *slot = user_data;
    GwShare *share = slot->share;

    g_clear_pointer(&slot->lent, policy_device_free);
    slot->lent = policy_device_copy(device);
    g_free(slot->lender);
    slot->lender = g_strdup(share->client_address);
    share->callbacks.event(share, "lend", device, slot->rule, slot->path, slot->lender,
                           share->user_data);
}

static void
gw_share_proxy_closed(GwProxy *proxy, GwProxyEnd end, const gchar *reason, gpointer user_data)
{
    GwShareSlot *slot = user_data;
    GwShare *share = slot->share;

    gw_log_device(G_LOG_LEVEL_MESSAGE, NULL, share->vm, NULL,
                  "share vm \"%s\" channel %u: session ended (%s%s%s)", share->vm, slot->index,
                  gw_proxy_end_to_string(end), reason != NULL ? ": " : "",
                  reason != NULL ? reason : "");
    if (slot->lent != NULL) {
        share->callbacks.event(share, "return", slot->lent, NULL, gw_proxy_end_to_string(end),
                               slot->lender, share->user_data);
        g_clear_pointer(&slot->lent, policy_device_free);
    }
    g_clear_pointer(&slot->proxy, gw_proxy_free);
    slot->relayed = NULL;
    if (share->callbacks.qemu_left != NULL)
        share->callbacks.qemu_left(share, share->user_data);
    /* a refused device's channel stays idle until the client closes it
     * (GwSpiceWorker drops what it sends) */
    if (end == GW_PROXY_END_DENIED)
        return;
    /* QEMU went (VM stopped, chardev closed) or a side misbehaved: the
     * client's usbredir stream cannot start over on the same channel, so
     * the client logs in again and lends its devices afresh */
    if (end != GW_PROXY_END_CLIENT_CLOSED && gw_share_has_client(share) && share->worker != NULL)
        gw_spice_worker_set_ticket(share->worker, share->ticket, gw_share_life_left(share), TRUE);
}

static void
gw_share_slot_try_start(GwShareSlot *slot)
{
    static const GwProxyCallbacks callbacks = {
        .check = gw_share_proxy_check,
        .denied = gw_share_proxy_denied,
        .connected = gw_share_proxy_connected,
        .closed = gw_share_proxy_closed,
    };
    GwShare *share = slot->share;
    g_autoptr(GError) error = NULL;
    g_autofree gchar *label = NULL;

    if (slot->proxy != NULL || slot->client == NULL || slot->qemu == NULL)
        return;
    g_clear_handle_id(&slot->qemu_watch, g_source_remove);
    label = g_strdup_printf("share vm \"%s\" user \"%s\" channel %u", share->vm, share->user,
                            slot->index);
    /* the proxy holds the client's stream and QEMU's socket now (and
     * closes both if it cannot start) */
    slot->relayed = g_steal_pointer(&slot->client);
    slot->proxy = gw_proxy_new_with_transport(&gw_spice_stream_transport, slot->relayed,
                                              g_socket_connection_get_socket(slot->qemu), label,
                                              &callbacks, slot, &error);
    if (slot->proxy != NULL) {
        gw_proxy_set_journal_fields(slot->proxy, NULL, slot->share->vm);
        gw_proxy_set_handover_func(slot->proxy, gw_share_slot_handover, slot);
    }
    g_clear_object(&slot->qemu);
    if (slot->proxy == NULL) {
        slot->relayed = NULL;
        g_warning("%s: %s", label, error->message);
        return;
    }
    g_message("%s: relaying to %s", label, slot->path);
    /* what the client sent while QEMU was awaited */
    gw_proxy_transport_ready(slot->proxy, G_IO_IN);
}

/* The client's stream has bytes, room or its end: its proxy, if it has
 * one yet, takes them (a waiting stream keeps them until then). */
static void
gw_share_stream_ready(GwSpiceStream *stream, GIOCondition condition, gpointer user_data)
{
    GwShareSlot *slot = user_data;

    if (slot->proxy != NULL && slot->relayed == stream)
        gw_proxy_transport_ready(slot->proxy, condition);
}

/* ---- the QEMU side ------------------------------------------------------ */

static gboolean
gw_share_qemu_hup(gint fd, GIOCondition condition, gpointer data)
{
    GwShareSlot *slot = data;

    slot->qemu_watch = 0;
    gw_log_device(G_LOG_LEVEL_MESSAGE, NULL, slot->share->vm, NULL,
                  "share vm \"%s\" channel %u: QEMU left %s", slot->share->vm, slot->index,
                  slot->path);
    g_clear_object(&slot->qemu);
    if (slot->share->callbacks.qemu_left != NULL)
        slot->share->callbacks.qemu_left(slot->share, slot->share->user_data);
    return G_SOURCE_REMOVE;
}

/* The proxy's migration destination took over, or was dropped. */
static void
gw_share_slot_handover(GwProxy *proxy, GwPeerHandoverResult result, const gchar *detail,
                       gpointer user_data)
{
    GwShareSlot *slot = user_data;
    g_autofree gchar *who =
        g_strdup_printf("share vm \"%s\" channel %u", slot->share->vm, slot->index);

    gw_vm_socket_handover_ended(slot->share->access, &slot->migrated, &slot->qemu_pid,
                                slot->migration_pid, who, NULL, slot->share->vm, slot->path, result,
                                detail);
}

static void
gw_share_incoming(GSocketConnection *connection, gpointer user_data)
{
    GwShareSlot *slot = user_data;
    GSocket *socket = g_socket_connection_get_socket(connection);
    pid_t pid = gw_vm_socket_peer_pid(connection);
    g_autoptr(GError) error = NULL;
    const gchar *why = "one peer per channel";

    if (!gw_vm_socket_peer_allowed(slot->share->access, connection, slot->share->vm, NULL,
                                   slot->path)) {
        g_io_stream_close(G_IO_STREAM(connection), NULL, NULL);
        return;
    }
    if (gw_vm_migrated_pids_has(&slot->migrated, pid)) {
        why = "a QEMU the channel migrated away from";
    } else if (slot->proxy != NULL && slot->qemu == NULL) {
        /* QEMU holds the lent device: a live migration's destination */
        if (gw_proxy_add_destination(slot->proxy, socket, &error)) {
            slot->migration_pid = pid;
            gw_log_device(G_LOG_LEVEL_MESSAGE, NULL, slot->share->vm, GW_LOG_ID_SESSION,
                          "share vm \"%s\" channel %u: a migration destination connected on %s; "
                          "it takes over once its VM runs",
                          slot->share->vm, slot->index, slot->path);
            return;
        }
        why = error->message;
    }
    if (slot->qemu != NULL || slot->proxy != NULL ||
        gw_vm_migrated_pids_has(&slot->migrated, pid)) {
        gw_log_device(G_LOG_LEVEL_WARNING, NULL, slot->share->vm, GW_LOG_ID_PEER_REFUSED,
                      "share vm \"%s\": refused a second peer on %s (%s)", slot->share->vm,
                      slot->path, why);
        g_io_stream_close(G_IO_STREAM(connection), NULL, NULL);
        return;
    }
    slot->qemu = g_object_ref(connection);
    slot->qemu_pid = pid;
    gw_log_device(G_LOG_LEVEL_INFO, NULL, slot->share->vm, NULL,
                  "share vm \"%s\" channel %u: QEMU connected on %s", slot->share->vm, slot->index,
                  slot->path);
    if (slot->client != NULL) {
        gw_share_slot_try_start(slot);
        return;
    }
    /* QEMU's hello waits unread until a client comes; only a hang-up is
     * noticed meanwhile */
    slot->qemu_watch =
        g_unix_fd_add(g_socket_get_fd(socket), G_IO_HUP | G_IO_ERR, gw_share_qemu_hup, slot);
}

/* ---- the worker --------------------------------------------------------- */

static gboolean
gw_share_life_over(gpointer data)
{
    GwShare *share = data;
    g_autofree gchar *why = g_strdup_printf(
        "share-max-life: %u s since the first login are over (a new share: usbgwctl share %s)",
        share->max_life_s, share->vm);

    share->life_id = 0;
    gw_share_end(share, why);
    return G_SOURCE_REMOVE;
}

/* The used share ends at ends_unix. */
static void
gw_share_start_life(GwShare *share)
{
    g_clear_handle_id(&share->life_id, g_source_remove);
    /* milliseconds: g_timeout_add_seconds() may fire up to a second early */
    share->life_id =
        g_timeout_add(gw_share_life_left(share) * GW_SHARE_MS_PER_S, gw_share_life_over, share);
}

/* The first login (or, from a worker that does not report logins, the
 * first channel opened): the ticket now lasts until share-max-life, so
 * that the client may come back after a network loss. */
static void
gw_share_mark_used(GwShare *share)
{
    if (share->used)
        return;
    share->used = TRUE;
    g_clear_handle_id(&share->expiry_id, g_source_remove);
    share->ends_unix = g_get_real_time() / G_USEC_PER_SEC + share->max_life_s;
    gw_share_start_life(share);
    gw_spice_worker_set_ticket(share->worker, share->ticket, gw_share_life_left(share), FALSE);
    if (share->callbacks.used != NULL)
        share->callbacks.used(share, share->user_data);
}

static void
gw_share_client(GwSpiceWorker *worker, guint event, const gchar *address, gpointer user_data)
{
    GwShare *share = user_data;
    g_autofree gchar *reason = NULL;

    switch (event) {
    case SW_CLIENT_LOGIN:
        gw_share_mark_used(share);
        g_free(share->client_address);
        share->client_address = g_strdup(address);
        share->client_in = TRUE;
        gw_log_device(G_LOG_LEVEL_MESSAGE, NULL, share->vm, NULL,
                      "share vm \"%s\" user \"%s\": client %s logged in", share->vm, share->user,
                      address);
        break;
    case SW_CLIENT_LEFT:
        share->client_in = FALSE;
        gw_log_device(G_LOG_LEVEL_MESSAGE, NULL, share->vm, NULL,
                      "share vm \"%s\" user \"%s\": client %s left; the ticket is accepted again "
                      "(reconnect)",
                      share->vm, share->user, address);
        break;
    default: /* SW_CLIENT_REFUSED */
        reason = g_strdup_printf(
            "SPICE login from %s refused: client %s holds the share (one "
            "client per share; a fresh ticket: usbgwctl share %s)",
            address, share->client_address != NULL ? share->client_address : "?", share->vm);
        gw_log_device(G_LOG_LEVEL_MESSAGE, NULL, share->vm, NULL, "share vm \"%s\" user \"%s\": %s",
                      share->vm, share->user, reason);
        share->callbacks.event(share, "deny", NULL, NULL, reason, address, share->user_data);
        break;
    }
}

static void
gw_share_worker_ready(GwSpiceWorker *worker, gpointer user_data)
{
    GwShare *share = user_data;

    gw_log_device(G_LOG_LEVEL_MESSAGE, NULL, share->vm, NULL,
                  "share vm \"%s\" user \"%s\": SPICE listening on port %u", share->vm, share->user,
                  share->port);
    gw_spice_worker_set_ticket(worker, share->ticket,
                               share->used ? gw_share_life_left(share) : share->ttl_s, FALSE);
}

static void
gw_share_channel_opened(GwSpiceWorker *worker, guint channel, GwSpiceStream *client,
                        gpointer user_data)
{
    GwShare *share = user_data;
    GwShareSlot *slot = &share->slots[channel];

    gw_share_mark_used(share);
    slot->open = TRUE;
    gw_log_device(G_LOG_LEVEL_MESSAGE, NULL, share->vm, NULL,
                  "share vm \"%s\" user \"%s\": client opened channel %u", share->vm, share->user,
                  channel);
    g_clear_pointer(&slot->client, gw_spice_stream_close);
    slot->client = client;
    gw_spice_stream_set_ready_func(client, gw_share_stream_ready, slot);
    if (slot->qemu == NULL)
        gw_log_device(G_LOG_LEVEL_MESSAGE, NULL, share->vm, NULL,
                      "share vm \"%s\" channel %u: waiting for QEMU on %s", share->vm, channel,
                      slot->path);
    gw_share_slot_try_start(slot);
}

static void
gw_share_channel_closed(GwSpiceWorker *worker, guint channel, gpointer user_data)
{
    GwShare *share = user_data;
    GwShareSlot *slot = &share->slots[channel];

    gw_log_device(G_LOG_LEVEL_MESSAGE, NULL, share->vm, NULL,
                  "share vm \"%s\" user \"%s\": client closed channel %u", share->vm, share->user,
                  channel);
    /* a proxy sees the end on its own stream */
    g_clear_pointer(&slot->client, gw_spice_stream_close);
    slot->open = FALSE;
}

static void
gw_share_worker_exited(GwSpiceWorker *worker, const gchar *reason, gpointer user_data)
{
    GwShare *share = user_data;
    g_autofree gchar *why = g_strdup_printf("SPICE worker: %s", reason);

    gw_log_device(G_LOG_LEVEL_WARNING, NULL, share->vm, NULL, "share vm \"%s\": %s", share->vm,
                  why);
    gw_share_end(share, why);
}

static gboolean
gw_share_expired(gpointer data)
{
    GwShare *share = data;

    share->expiry_id = 0;
    gw_share_end(share, "the ticket was not used in time");
    return G_SOURCE_REMOVE;
}

/* The unused ticket ends the share after ttl_s. */
static void
gw_share_start_expiry(GwShare *share)
{
    g_autoptr(GDateTime) now = g_date_time_new_now_utc();
    g_autoptr(GDateTime) expires = g_date_time_add_seconds(now, share->ttl_s);

    share->expires_unix = g_date_time_to_unix(expires);
    g_free(share->expires_iso);
    share->expires_iso = g_date_time_format_iso8601(expires);
    g_clear_handle_id(&share->expiry_id, g_source_remove);
    share->expiry_id = g_timeout_add_seconds(share->ttl_s, gw_share_expired, share);
}

/* ---- public ------------------------------------------------------------- */

GwShare *
gw_share_new(const GwShareOptions *options, const GwShareCallbacks *callbacks, gpointer user_data,
             GError **error)
{
    static const GwSpiceWorkerCallbacks worker_callbacks = {
        .ready = gw_share_worker_ready,
        .channel_opened = gw_share_channel_opened,
        .channel_closed = gw_share_channel_closed,
        .client = gw_share_client,
        .exited = gw_share_worker_exited,
    };
    g_autoptr(GwShare) share = g_new0(GwShare, 1);

    share->vm = g_strdup(options->vm);
    share->user = g_strdup(options->user);
    share->port = options->worker.port;
    share->ttl_s = options->ttl_s;
    share->access = options->access;
    share->callbacks = *callbacks;
    share->user_data = user_data;
    share->used = options->used;
    share->max_life_s = options->max_life_s;
    share->ends_unix = options->used ? options->ends_unix : 0;
    share->ticket =
        options->ticket != NULL ? g_strdup(options->ticket) : gw_share_make_ticket(error);
    if (share->ticket == NULL)
        return NULL;
    share->n_slots = options->worker.channels;
    share->slots = g_new0(GwShareSlot, share->n_slots);
    share->paths = g_new0(gchar *, share->n_slots + 1);
    for (guint i = 0; i < share->n_slots; i++) {
        GwShareSlot *slot = &share->slots[i];
        g_autofree gchar *file = g_strdup_printf("share%u.sock", i);

        slot->share = share;
        slot->index = i;
        slot->path = g_build_filename(options->socket_dir, file, NULL);
        share->paths[i] = g_strdup(slot->path);
        slot->service =
            gw_vm_socket_listen(options->access, slot->path, gw_share_incoming, slot, error);
        if (slot->service == NULL)
            return NULL;
    }
    share->worker = gw_spice_worker_new(&options->worker, &worker_callbacks, share, error);
    if (share->worker == NULL)
        return NULL;
    if (!share->used)
        gw_share_start_expiry(share);
    else
        gw_share_start_life(share);
    return g_steal_pointer(&share);
}

gboolean
gw_share_renew(GwShare *share, const gchar *user, guint ttl_s, GError **error)
{
    gchar *ticket = gw_share_make_ticket(error);

    if (ticket == NULL)
        return FALSE;
    explicit_bzero(share->ticket, strlen(share->ticket));
    g_free(share->ticket);
    share->ticket = ticket;
    g_free(share->user);
    share->user = g_strdup(user);
    share->ttl_s = ttl_s;
    share->used = FALSE;
    share->ends_unix = 0;
    g_clear_handle_id(&share->life_id, g_source_remove);
    gw_share_start_expiry(share);
    /* the old client is dropped and cannot log in again */
    if (gw_spice_worker_is_ready(share->worker))
        gw_spice_worker_set_ticket(share->worker, share->ticket, share->ttl_s, TRUE);
    return TRUE;
}

const gchar *
gw_share_get_vm(GwShare *share)
{
    return share->vm;
}

const gchar *
gw_share_get_user(GwShare *share)
{
    return share->user;
}

const gchar *
gw_share_get_ticket(GwShare *share)
{
    return share->ticket;
}

guint16
gw_share_get_port(GwShare *share)
{
    return share->port;
}

gint64
gw_share_get_expires_unix(GwShare *share)
{
    return share->used ? 0 : share->expires_unix;
}

gint64
gw_share_get_ends_unix(GwShare *share)
{
    return share->used ? share->ends_unix : 0;
}

const gchar *
gw_share_get_client_address(GwShare *share)
{
    return share->client_address;
}

const gchar *const *
gw_share_get_socket_paths(GwShare *share)
{
    return (const gchar *const *)share->paths;
}

gboolean
gw_share_socket_has_qemu(GwShare *share, const gchar *path)
{
    for (guint i = 0; i < share->n_slots; i++)
        if (g_strcmp0(share->slots[i].path, path) == 0)
            return share->slots[i].qemu != NULL || share->slots[i].proxy != NULL;
    return FALSE;
}

JsonNode *
gw_share_to_json(GwShare *share)
{
    g_autoptr(JsonBuilder) builder = json_builder_new();
    g_autoptr(GPtrArray) lent = gw_share_list_lent(share);
    const gchar *state;

    state = gw_share_has_client(share)                ? "connected"
            : share->used                             ? "waiting for the client to come back"
            : gw_spice_worker_is_ready(share->worker) ? "waiting for the client"
                                                      : "starting";
    json_builder_begin_object(builder);
    json_builder_set_member_name(builder, "vm");
    json_builder_add_string_value(builder, share->vm);
    json_builder_set_member_name(builder, "user");
    json_builder_add_string_value(builder, share->user);
    json_builder_set_member_name(builder, "port");
    json_builder_add_int_value(builder, share->port);
    json_builder_set_member_name(builder, "channels");
    json_builder_add_int_value(builder, share->n_slots);
    json_builder_set_member_name(builder, "state");
    json_builder_add_string_value(builder, state);
    json_builder_set_member_name(builder, "expires");
    if (share->used)
        json_builder_add_null_value(builder);
    else
        json_builder_add_string_value(builder, share->expires_iso);
    json_builder_set_member_name(builder, "ends");
    if (share->used) {
        g_autoptr(GDateTime) ends = g_date_time_new_from_unix_utc(share->ends_unix);
        g_autofree gchar *iso = ends != NULL ? g_date_time_format_iso8601(ends) : NULL;
        json_builder_add_string_value(builder, iso);
    } else {
        json_builder_add_null_value(builder);
    }
    json_builder_set_member_name(builder, "client");
    if (share->client_in)
        json_builder_add_string_value(builder, share->client_address);
    else
        json_builder_add_null_value(builder);
    json_builder_set_member_name(builder, "devices");
    json_builder_begin_array(builder);
    for (guint i = 0; i < lent->len; i++) {
        g_autofree gchar *what = policy_device_describe(g_ptr_array_index(lent, i));
        json_builder_add_string_value(builder, what);
    }
    json_builder_end_array(builder);
    json_builder_end_object(builder);
    return json_builder_get_root(builder);
}

GPtrArray *
gw_share_list_lent(GwShare *share)
{
    GPtrArray *lent = g_ptr_array_new();

    for (guint i = 0; i < share->n_slots; i++)
        if (share->slots[i].lent != NULL)
            g_ptr_array_add(lent, share->slots[i].lent);
    return lent;
}

/* Calls back nobody: whatever the owner records about the end (the lent
 * devices' "return") it does before, with gw_share_list_lent(). */
void
gw_share_free(GwShare *share)
{
    if (share == NULL)
        return;
    g_clear_handle_id(&share->ended_id, g_source_remove);
    g_clear_handle_id(&share->expiry_id, g_source_remove);
    g_clear_handle_id(&share->life_id, g_source_remove);
    /* the worker first: no callback of it may see half-freed slots */
    g_clear_pointer(&share->worker, gw_spice_worker_free);
    for (guint i = 0; share->slots != NULL && i < share->n_slots; i++) {
        GwShareSlot *slot = &share->slots[i];

        g_clear_pointer(&slot->proxy, gw_proxy_free);
        slot->relayed = NULL;
        g_clear_pointer(&slot->lent, policy_device_free);
        g_clear_handle_id(&slot->qemu_watch, g_source_remove);
        if (slot->qemu != NULL)
            g_io_stream_close(G_IO_STREAM(slot->qemu), NULL, NULL);
        g_clear_object(&slot->qemu);
        g_clear_pointer(&slot->client, gw_spice_stream_close);
        if (slot->service != NULL) {
            g_clear_pointer(&slot->service, gw_vm_listener_free);
            g_unlink(slot->path);
        }
        g_free(slot->path);
        g_free(slot->rule);
        g_free(slot->lender);
    }
    if (share->ticket != NULL)
        explicit_bzero(share->ticket, strlen(share->ticket));
    g_free(share->slots);
    g_strfreev(share->paths);
    g_free(share->vm);
    g_free(share->user);
    g_free(share->ticket);
    g_free(share->expires_iso);
    g_free(share->ended_reason);
    g_free(share->client_address);
    g_free(share);
}
