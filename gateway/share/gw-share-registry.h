/* GwShareRegistry: the shares usbgwd runs, at most one per VM — SPICE
 * ports handed out in turn, new shares and renewals, the policy's share
 * rules for every lent device, restore after a restart, and the lending
 * users' groups (looked up in a thread when a share starts, so the check
 * of a lent device does no NSS call on the main loop).
 *
 * What it does not own goes through GwShareRegistryOps: the VM's UUID and
 * the policy (the binder's), plugging share sockets into the VM (the
 * redirdev plugger), the audit trail and saving the state.
 *
 * Threading: main thread only. Ownership: the registry owns its GwShares;
 * pointers to them are valid until the share ends (ops->event with
 * GW_SHARE_REGISTRY_UNSHARE is the last use). */
#pragma once

#include "gw-share.h"

G_BEGIN_DECLS

#define GW_SHARE_REGISTRY_ERROR (gw_share_registry_error_quark())
GQuark gw_share_registry_error_quark(void);

typedef enum {
    GW_SHARE_REGISTRY_ERROR_OFF,    /* SPICE ingress is not configured */
    GW_SHARE_REGISTRY_ERROR_BUSY,   /* every SPICE port is in use */
    GW_SHARE_REGISTRY_ERROR_FAILED, /* the worker or the sockets could not start */
} GwShareRegistryError;

typedef enum {
    GW_SHARE_REGISTRY_SHARE,   /* a share started, was renewed or restored */
    GW_SHARE_REGISTRY_UNSHARE, /* it ended (or was replaced by a renewal) */
    GW_SHARE_REGISTRY_LEND,    /* QEMU got a lent device */
    GW_SHARE_REGISTRY_DENY,    /* a lent device was refused */
    GW_SHARE_REGISTRY_RETURN,  /* the lent device left the VM */
} GwShareRegistryEvent;

typedef struct _GwShareRegistry GwShareRegistry;

typedef struct {
    guint port_base;                /* 0: SPICE ingress is off */
    guint ports;                    /* ports base … base+ports-1 */
    guint max_life_s;               /* a share ends this long after its first use */
    const GwVmSocketAccess *access; /* borrowed, outlives the registry: the VM sockets */
    GwSpiceWorkerOptions worker;    /* copied; .port is the registry's */
} GwShareRegistryConfig;

typedef struct {
    /* The VM's UUID while it runs, else NULL. */
    const gchar *(*vm_uuid)(const gchar *vm, gpointer user_data);
    /* The policy whose share rules decide (borrowed for the call). */
    Policy *(*policy)(gpointer user_data);
    /* Where @vm's sockets live (g_free'd by the registry). */
    gchar *(*socket_dir)(const gchar *vm, gpointer user_data);
    /* Plug socket number @index of the share into its running VM; with
     * @replug unplug it first. Unplug: take it out. */
    void (*plug)(const gchar *vm, const gchar *path, guint index, gboolean replug,
                 gpointer user_data);
    void (*unplug)(const gchar *vm, const gchar *path, gpointer user_data);
    /* For the audit trail; @device, @rule and @reason are nullable. */
    void (*event)(GwShareRegistryEvent event, GwShare *share, const gchar *actor,
                  const gchar *reason, const PolicyDevice *device, const gchar *rule,
                  gpointer user_data);
    /* A share started, ended or was first used: save the state. */
    void (*changed)(gpointer user_data);
} GwShareRegistryOps;

GwShareRegistry *gw_share_registry_new(const GwShareRegistryConfig *config,
                                       const GwShareRegistryOps *ops, gpointer user_data);
/* Ends every share without events and without unplugging (the VMs keep
 * their redirdevs for a restarted usbgwd). */
void gw_share_registry_free(GwShareRegistry *registry);
G_DEFINE_AUTOPTR_CLEANUP_FUNC(GwShareRegistry, gw_share_registry_free)

/* A new share for @vm, or the running one renewed (same port, fresh
 * ticket, the old client dropped; *@renewed set). */
GwShare *gw_share_registry_share(GwShareRegistry *registry, const gchar *vm, const gchar *user,
                                 guint ttl_s, const gchar *actor, gboolean *renewed,
                                 GError **error);
/* Ends @vm's share; FALSE when it has none. */
gboolean gw_share_registry_unshare(GwShareRegistry *registry, const gchar *vm, const gchar *actor,
                                   const gchar *reason);
/* A share saved before a restart: checked (a malformed or expired entry
 * is logged and skipped) and started with its ticket and port, so a
 * lending client reconnects as after a network loss. @expires: unix
 * seconds, 0 used, -1 missing; @ends: unix seconds a used share ends
 * (0: missing, then max_life_s from now). */
gboolean gw_share_registry_restore(GwShareRegistry *registry, const gchar *vm, const gchar *user,
                                   const gchar *ticket, gint64 port, gint64 expires, gint64 ends);
/* @vm started: plug its share's sockets in. */
void gw_share_registry_vm_started(GwShareRegistry *registry, const gchar *vm);

GwShare *gw_share_registry_lookup(GwShareRegistry *registry, const gchar *vm);
/* Every share, by VM name (borrowed). */
GPtrArray *gw_share_registry_list(GwShareRegistry *registry) G_GNUC_WARN_UNUSED_RESULT;
guint gw_share_registry_get_count(GwShareRegistry *registry);
/* Whether QEMU is connected to the share socket @path. */
gboolean gw_share_registry_has_qemu(GwShareRegistry *registry, const gchar *path);

G_END_DECLS
