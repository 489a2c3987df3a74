/* What the daemon's own files share: gw-daemon.c (wiring, inventory and
 * libvirt events, teardown), gw-daemon-serve.c (the binder's intents),
 * gw-daemon-commands.c (the control socket's command table) and
 * gw-daemon-shares.c (shares wired to the rest). Nothing outside
 * gateway/daemon/ includes it. Main thread only. */
#pragma once

#include <json-glib/json-glib.h>

#include "gw-attachment.h"
#include "gw-audit.h"
#include "gw-binder.h"
#include "gw-config.h"
#include "gw-control.h"
#include "gw-daemon.h"
#include "gw-import.h"
#include "gw-inventory.h"
#include "gw-libvirt.h"
#include "gw-links.h"
#include "gw-redirdev-plugger.h"
#include "gw-share-registry.h"
#include "gw-state-store.h"

G_BEGIN_DECLS

/* How a bound device is served: its attachment (a device of this host) or
 * its import (another gateway's), and what libvirt was told. */
typedef struct {
    GwAttachment *attachment; /* owned, nullable: exists once claimed */
    GwImport *import;         /* owned, nullable: another gateway's device bound to a VM */
    gchar *export_peer;       /* owned, nullable: the gateway our device is exported to now */
    gchar *audited_vm;        /* owned, nullable: the VM an "attach" was recorded for */
} GwDaemonServed;

struct _GwDaemon {
    GwConfig config;
    GwInventory *inventory;        /* owned */
    GwBinder *binder;              /* owned */
    GwControl *control;            /* owned */
    GwAudit *audit;                /* owned */
    GwStateStore *state;           /* owned */
    GwBinderState *saved_bindings; /* owned, nullable: the bindings last given to @state */
    GwLibvirt *libvirt;            /* owned, nullable: no libvirt configured */
    GwRedirdevPlugger *plugger;    /* owned: socket paths, aliases, redirdev plugging */
    GHashTable *served;            /* device id (owned) → GwDaemonServed (owned) */
    GwShareRegistry *shares;       /* owned: at most one share per VM */
    gchar *started;                /* owned: ISO 8601 */
    gchar *hook_last_call;         /* owned, nullable */
    GCancellable *cancellable;     /* owned: cancelled when the daemon goes */
    GwVmSocketAccess
        socket_access;      /* who may use the VM sockets; attachments and shares borrow it */
    GwLinks *links;         /* owned, nullable: no gateway links configured */
    GHashTable *exported;   /* id → description text: our devices in the directory */
    Policy *export_policy;  /* borrowed, only compared: the policy @exported was made with */
    GHashTable *vm_libvirt; /* VM name (owned) → GwDaemonVmLibvirt (owned): running VMs */
    struct _GwMetricsHttp *metrics_http; /* owned, nullable: metrics-listen */
    guint metrics_collector;             /* the scrape-time gauges' collector, 0: none */
    GPtrArray *relay_anchors;  /* owned GwRelayAnchor: relays of VMs that left, device here */
    GHashTable *relay_sockets; /* path → GwDaemonRelaySocket (owned): incoming migrations */
    struct _GwDaemonCluster *cluster; /* owned, nullable: no cluster-etcd */
};

/* Cluster mode (gw-daemon-cluster.c, docs/cluster.md). */
typedef struct _GwDaemonCluster GwDaemonCluster;
/* Starts it when usbgwd.conf has cluster-etcd (after the links). */
gboolean gw_daemon_start_cluster(GwDaemon *daemon, GError **error) G_GNUC_WARN_UNUSED_RESULT;
void gw_daemon_cluster_free(GwDaemonCluster *cluster);
/* The directory our exportable devices go to: the cluster's (links and
 * etcd), the links' alone, or NULL without links. */
GwDirectory *gw_daemon_directory(GwDaemon *daemon);
/* A binding of pool key @id to @vm is served only once this gateway holds
 * the key's cluster lease: TRUE when it must wait (it is asked for now;
 * gw_daemon_serve_bind() runs when it is held). */
gboolean gw_daemon_cluster_wait(GwDaemon *daemon, const gchar *id, const gchar *vm);
/* @id is no longer bound to @vm: its cluster lease goes back. */
void gw_daemon_cluster_unbound(GwDaemon *daemon, const gchar *id, const gchar *vm);
/* usbgwctl status's "cluster" object. */
void gw_daemon_cluster_to_json(GwDaemon *daemon, JsonBuilder *builder);
/* Whether @id's binding waits for its cluster lease. */
gboolean gw_daemon_cluster_waits(GwDaemon *daemon, const gchar *id);
/* usbgwctl list: where @id's cluster lease stands, NULL when nothing. */
const gchar *gw_daemon_cluster_device_note(GwDaemon *daemon, const gchar *id);
typedef struct {
    gboolean enabled, up;
    guint64 lease_losses;
    guint gateways, devices, held, waiting;
} GwDaemonClusterCounts;
void gw_daemon_cluster_counts(GwDaemon *daemon, GwDaemonClusterCounts *counts);

/* Live migration across hosts (gw-daemon-migrate.c). */
typedef struct _GwDaemonRelaySocket GwDaemonRelaySocket;
void gw_daemon_migrate_init(GwDaemon *daemon);
void gw_daemon_migrate_clear(GwDaemon *daemon);
/* GwVmSocketMigrated: a handover on a VM socket ended; the audit record. */
void gw_daemon_migrated(const gchar *vm, const gchar *device_id, const gchar *path, gboolean done,
                        const gchar *detail, const gchar *from, const gchar *to,
                        gpointer user_data);
/* A peer opens a relay stream ("migrate:VM/FILE") to a VM socket served
 * here: FALSE with *@reason to refuse. */
gboolean gw_daemon_relay_open(GwDaemon *daemon, GwLink *link, GwLinkStream *stream, const gchar *id,
                              gchar **reason);
/* The hook's migrate op: binds @vm's @sockets (their file names, under our
 * rundir) for the incoming QEMU, unless served here already. */
guint gw_daemon_migrate_prepare(GwDaemon *daemon, const gchar *vm, const gchar *uuid,
                                JsonArray *sockets, GError **error);
/* @vm stopped here: its prepared sockets and relays go. */
void gw_daemon_migrate_vm_stopped(GwDaemon *daemon, const gchar *vm);
/* Whether @vm's device here is served to its QEMU on another host. */
gboolean gw_daemon_vm_is_away(GwDaemon *daemon, const gchar *vm);
/* usbgwctl vms: "host" (the gateway whose relay serves @name's QEMU) in
 * @vm, when it runs on another host. */
void gw_daemon_migrate_vm_json(GwDaemon *daemon, const gchar *name, JsonObject *vm);
/* usbgwctl vms: one entry per VM relayed here (not in @listed, the VMs
 * with devices here) appended to @array: state "relayed" (its device is
 * on "anchor") or "migrating" (its QEMU waits to take the device over). */
void gw_daemon_migrate_relayed_json(GwDaemon *daemon, GPtrArray *listed, JsonArray *array);

/* What libvirt said of a running VM beyond its name: its metadata and USB
 * bus (gw_daemon_vm_inspected), for usbgwctl vms. */
typedef struct {
    gchar *usb_bus;        /* owned, nullable: none */
    gchar *usb_fix;        /* owned, nullable: what add-usb-controller did */
    gchar *metadata_error; /* owned, nullable: its usbgw metadata was refused */
} GwDaemonVmLibvirt;

/* A running VM's metadata and USB bus, as libvirt reported them. */
void gw_daemon_vm_inspected(GwDaemon *daemon, const GwLibvirtDomain *domain, const gchar *actor);

gchar *gw_daemon_now(void) G_GNUC_WARN_UNUSED_RESULT;

/* Serving (gw-daemon-serve.c). */
extern const GwBinderOps gw_daemon_binder_ops;
/* Serves @id to @vm (the binder bound it): claim, socket, libvirt. */
gboolean gw_daemon_serve_bind(GwDaemon *daemon, const gchar *id, const gchar *vm,
                              const gchar *actor);
void gw_daemon_served_free(gpointer data);
/* libvirt plugged a device in (or refused): GwRedirdevPlugged. */
void gw_daemon_plugged(const gchar *id, const gchar *vm, const GError *error, gpointer user_data);
/* Whether QEMU is connected to one of usbgwd's sockets: GwRedirdevHasPeer. */
gboolean gw_daemon_path_has_peer(const gchar *path, gpointer user_data);
/* "file:line" of a decision, NULL when no rule decided. */
gchar *gw_daemon_rule_of(const PolicyDecision *decision) G_GNUC_WARN_UNUSED_RESULT;
GwDaemonServed *gw_daemon_lookup_served(GwDaemon *daemon, const gchar *id);

/* One audit record, also sent to the control socket's subscribers. */
void gw_daemon_record(GwDaemon *daemon, const GwAuditEvent *record);
/* The audit record of a host device's event; @id, @vm, @reason nullable. */
void gw_daemon_audit(GwDaemon *daemon, GwAuditKind event, const gchar *id, const gchar *vm,
                     const gchar *actor, const gchar *reason);
/* Writes what the last event changed to the state file (one write). */
void gw_daemon_save_state(GwDaemon *daemon);

/* Makes libvirt plug the device's socket into the running VM @vm. */
void gw_daemon_libvirt_attach(GwDaemon *daemon, const gchar *id, const gchar *vm);
/* The socket a served device has, local or imported; NULL if none. */
const gchar *gw_daemon_served_socket(GwDaemonServed *served);

/* Gateway links (gw-daemon-links.c). */
/* Starts the links when usbgwd.conf has any (link-listen, link-peers). */
gboolean gw_daemon_start_links(GwDaemon *daemon, GError **error) G_GNUC_WARN_UNUSED_RESULT;
/* The directory learns which of our devices are exportable now; called
 * after every event (gw_daemon_save_state()). */
void gw_daemon_sync_exports(GwDaemon *daemon);
/* Whether @id is another gateway's device. */
gboolean gw_daemon_is_remote(GwDaemon *daemon, const gchar *id);
/* The binder's intents for another gateway's device. */
gboolean gw_daemon_import_bind(GwDaemon *daemon, const gchar *id, const gchar *vm,
                               const gchar *actor);
void gw_daemon_import_unbind(GwDaemon *daemon, const gchar *id, const gchar *vm, gboolean detach);
/* The socket slot name of a device (local or imported). */
gchar *gw_daemon_slot_name(GwDaemon *daemon, GwInventoryDevice *inv) G_GNUC_WARN_UNUSED_RESULT;

/* Metrics (gw-daemon-metrics.c): the scrape-time collector and the
 * listener of metrics-listen (a bind error is logged, usbgwd goes on). */
gboolean gw_daemon_start_metrics(GwDaemon *daemon, GError **error) G_GNUC_WARN_UNUSED_RESULT;
void gw_daemon_stop_metrics(GwDaemon *daemon);
/* The exposition text (usbgwctl metrics). */
gchar *gw_daemon_metrics_text(GwDaemon *daemon) G_GNUC_WARN_UNUSED_RESULT;

/* Commands (gw-daemon-commands.c). */
/* The state `usbgwctl list` shows for a device (and usbgw_devices). */
const gchar *gw_daemon_device_state(GwDaemon *daemon, GwInventoryDevice *inv,
                                    const GwBinderDevice *dev);
JsonNode *gw_daemon_control_handler(JsonObject *request, const GwControlPeer *peer,
                                    gpointer user_data);
void gw_daemon_vm_started(GwDaemon *daemon, const gchar *name, const gchar *uuid,
                          const gchar *actor);
void gw_daemon_vm_stopped(GwDaemon *daemon, const gchar *name, const gchar *actor);
const gchar *gw_daemon_string_arg(JsonObject *request, const gchar *name, JsonNode **error_reply);

/* Shares (gw-daemon-shares.c). */
/* Longest share ticket lifetime a request may ask for, seconds. */
#define GW_SHARE_MAX_TTL (7 * 24 * 3600)
/* Creates the share registry and restores the saved shares. */
void gw_daemon_start_shares(GwDaemon *daemon);
void gw_daemon_save_shares(GwDaemon *daemon);
JsonNode *gw_daemon_cmd_share(GwDaemon *daemon, JsonObject *request, const GwControlPeer *peer,
                              const gchar *actor);
JsonNode *gw_daemon_cmd_unshare(GwDaemon *daemon, JsonObject *request, const gchar *actor);
JsonNode *gw_daemon_cmd_shares(GwDaemon *daemon);

G_END_DECLS
