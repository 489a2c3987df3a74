/* A share (data path C, docs/architecture.md): one user may lend workstation devices to
 * one VM through SPICE, with a ticket usbgwd made for it.
 *
 *   SPICE client --ticket--> usbgw-spice-worker (GwSpiceWorker)
 *       channel i --> GwProxy (policy check) --> <rundir>/vm/<vm>/share<i>.sock
 *       --> QEMU usb-redir --> guest
 *
 * Each usbredir channel of the worker has its own VM socket; QEMU connects
 * to it (a redirdev libvirt plugged in, or a chardev given on QEMU's command
 * line) and waits. When the client opens the channel, a GwProxy relays
 * between the two and asks the owner's check (the policy's share rules)
 * before QEMU sees the device. When the proxy ends, both connections are
 * closed: QEMU reconnects (or is plugged anew), and if the end was not the
 * client's doing the client is dropped so that it logs in again and lends
 * the device afresh.
 *
 * Ticket: valid for @ttl_s until the first client logs in, then until
 * the share ends, @max_life_s after that first login (the share ends
 * then, reason "share-max-life"). One client at a time: while a client is
 * connected the worker refuses any other login with the ticket (usbgwd
 * records a "deny" naming both addresses); once it has left, the ticket
 * is accepted again, so the client reconnects after a network loss. A
 * client is replaced only through a fresh ticket (gw_share_renew()). A
 * share never used within @ttl_s ends by itself. Main thread only. */
#pragma once

#include <gio/gio.h>
#include <json-glib/json-glib.h>

#include "gw-spice.h"
#include "gw-vm-socket.h"
#include "policy.h"

G_BEGIN_DECLS

typedef struct _GwShare GwShare;

typedef struct {
    const gchar *vm;
    const gchar *user;       /* who lends: the policy's share rules name users */
    guint ttl_s;             /* time to first use (unused when @used) */
    const gchar *ticket;     /* nullable: a fresh random one (else restored) */
    gboolean used;           /* restored: a client logged in before */
    guint max_life_s;        /* the share ends this long after its first use */
    gint64 ends_unix;        /* restored and used: when it ends (unix seconds) */
    const gchar *socket_dir; /* <rundir>/vm/<vm> */
    /* borrowed, must outlive the share: who may connect to the VM
     * sockets (gw-vm-socket.h) */
    const GwVmSocketAccess *access;
    GwSpiceWorkerOptions worker;
} GwShareOptions;

typedef struct {
    /* Required: may @device go to the VM? TRUE to allow. On return *rule
     * is the deciding rule ("file:line", g_strdup'd or NULL) and, on FALSE,
     * *reason says why (g_strdup'd). */
    gboolean (*check)(GwShare *share, const PolicyDevice *device, gchar **rule, gchar **reason,
                      gpointer user_data);
    /* Required: something for the audit trail: "lend" (QEMU got the
     * device), "deny", "return" (the lent device left the VM while the
     * share lasts; gw_share_free() reports none), with the device as the
     * client described it (may be NULL for "return"; NULL for a "deny"
     * of a second client's login), and @client the address ("IP:port") of
     * the client concerned (nullable). */
    void (*event)(GwShare *share, const gchar *event, const PolicyDevice *device, const gchar *rule,
                  const gchar *reason, const gchar *client, gpointer user_data);
    /* Optional: the first client logged in (the ticket no longer expires). */
    void (*used)(GwShare *share, gpointer user_data);
    /* Optional: QEMU's connection to a VM socket closed (after each
     * lending, or QEMU went): a redirdev without reconnect needs plugging
     * anew. */
    void (*qemu_left)(GwShare *share, gpointer user_data);
    /* Required: the share is over (worker gone, or never used in time);
     * called from the main loop, the owner frees it. */
    void (*ended)(GwShare *share, const gchar *reason, gpointer user_data);
} GwShareCallbacks;

/* Creates the VM sockets, starts the worker and sets a fresh ticket. */
GwShare *gw_share_new(const GwShareOptions *options, const GwShareCallbacks *callbacks,
                      gpointer user_data, GError **error) G_GNUC_WARN_UNUSED_RESULT;
/* A new share in place of this one, on the same port: a fresh ticket for
 * @user, valid @ttl_s until first used; the connected client, if any, is
 * dropped (its lent devices leave the VM) and the old ticket is refused. */
gboolean gw_share_renew(GwShare *share, const gchar *user, guint ttl_s,
                        GError **error) G_GNUC_WARN_UNUSED_RESULT;
const gchar *gw_share_get_vm(GwShare *share);
const gchar *gw_share_get_user(GwShare *share);
const gchar *gw_share_get_ticket(GwShare *share);
guint16 gw_share_get_port(GwShare *share);
/* When the unused ticket expires (seconds since the epoch); 0 once used. */
gint64 gw_share_get_expires_unix(GwShare *share);
/* When the used share ends (share-max-life; seconds since the epoch); 0
 * while unused. */
gint64 gw_share_get_ends_unix(GwShare *share);
/* The address of the last client that logged in ("IP:port"), or NULL. */
const gchar *gw_share_get_client_address(GwShare *share);
/* The VM sockets (one per channel), for libvirt to plug into the VM. */
const gchar *const *gw_share_get_socket_paths(GwShare *share);
/* Whether QEMU is connected to this VM socket. */
gboolean gw_share_socket_has_qemu(GwShare *share, const gchar *path);
/* {vm, user, port, channels, state, expires, devices:[…]} for usbgwctl. */
JsonNode *gw_share_to_json(GwShare *share) G_GNUC_WARN_UNUSED_RESULT;
/* The devices QEMU has from the client now (the last "lend" of each
 * channel not yet returned), as const PolicyDevice *: a new array of
 * borrowed devices, valid until the main loop runs again or the share is
 * freed. An owner that ends a share with devices lent records their
 * "return" from this before gw_share_free(). */
GPtrArray *gw_share_list_lent(GwShare *share) G_GNUC_WARN_UNUSED_RESULT;
/* Ends the share now: the client is dropped, the lent devices leave the
 * VM, the sockets are removed, the worker exits. Calls no callback (no
 * "return" event for the devices lent: see gw_share_list_lent()). */
void gw_share_free(GwShare *share);

G_DEFINE_AUTOPTR_CLEANUP_FUNC(GwShare, gw_share_free)

G_END_DECLS
