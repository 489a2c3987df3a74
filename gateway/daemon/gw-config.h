/* usbgwd's configuration: the [usbgwd] group of a GKeyFile
 * (/etc/usbgw/usbgwd.conf; every key documented in data/usbgwd.conf).
 *
 * Threading: main thread, at start; a loaded GwConfig is only read
 * afterwards (the daemon keeps its own copy). */
#pragma once

#include <glib.h>

#include "gw-defaults.h"
#include "gw-vm-socket.h"

#ifndef GW_CONFIG_SPICE_WORKER
#define GW_CONFIG_SPICE_WORKER "/usr/libexec/usbgw-spice-worker"
#endif

/* uids (and gids) for SPICE workers, one per running worker: above
 * systemd's container range (524288-1879048191), below its foreign range
 * (2147352576) and 2^31, in no distribution's user database. */
#define GW_CONFIG_SPICE_UID_RANGE "1879048192-1879049215"

G_BEGIN_DECLS

#define GW_CONFIG_DEFAULT_PATH GW_DEFAULT_CONFIG_PATH

typedef struct {
    gchar *policy_path;          /* owned */
    gchar *rundir;               /* owned: sockets live in <rundir>/vm/<vm>/<slot>.sock */
    gchar *control_socket;       /* owned */
    gchar *state_path;           /* owned */
    gchar *audit_log;            /* owned, nullable (empty in the file): structured log only */
    gchar *libvirt_uri;          /* owned, nullable (empty in the file): no libvirt */
    gchar *socket_user;          /* owned, nullable: QEMU's user, owner of attachment sockets */
    gchar *socket_group;         /* owned, nullable: QEMU's group */
    GwVmPeerCheck vm_peer_check; /* which peer of QEMU's user is the VM's QEMU */
    gchar *vm_pid_file;          /* owned: pattern with {vm}, for GW_VM_PEER_CHECK_PID_FILE */
    /* SPICE ingress (shares): off while spice_port_base is 0 */
    guint spice_port_base; /* shares get ports base … base+spice_ports-1 */
    guint spice_ports;
    guint spice_channels; /* usbredir channels per share */
    guint share_ttl;      /* seconds a ticket waits for its first use */
    guint share_max_life; /* seconds a share lasts after its first use */
    gchar *spice_address; /* owned: where the workers listen */
    gchar *spice_host;    /* owned, nullable: host name in share URIs (default: this host's) */
    gchar *spice_worker;  /* owned: the usbgw-spice-worker program */
    gchar *spice_user;    /* owned: the user workers run as without spice_uid_range */
    /* owned, nullable: "START-END", each worker gets its own uid and gid
     * from it (gw_spice_worker_new); NULL: every worker runs as spice_user */
    gchar *spice_uid_range;
    guint spice_uid_first; /* parsed from spice_uid_range; 0: none */
    guint spice_uid_last;
    /* owned, nullable: TLS for shares (all three or none); then TLS only */
    gchar *spice_tls_cert;
    gchar *spice_tls_key;
    gchar *spice_tls_ca;
    /* the control socket's limits (gw-control.h, docs/control.md) */
    guint control_max_clients;  /* connections of users outside group usbgw */
    guint control_max_per_user; /* connections of one such user */
    guint control_idle_timeout; /* seconds without a complete request line */
    /* a spice-address other than loopback without TLS (tickets and the
     * lent devices' traffic in clear): refused unless this is set */
    gboolean spice_allow_plain_network;
    /* a running VM without a USB bus gets a qemu-xhci controller in its
     * persistent definition (effective at its next start) */
    gboolean add_usb_controller;
    /* gateway links (docs/links.md); off while link_listen and link_peers
     * are both NULL; then cert, key and CA are required */
    gchar *link_listen; /* owned, nullable: "ADDRESS:PORT" to accept links on */
    gchar *link_cert;   /* owned, nullable: this gateway's certificate (its CN names it) */
    gchar *link_key;    /* owned, nullable */
    gchar *link_ca;     /* owned, nullable: the cluster's CA */
    gchar *link_peers;  /* owned, nullable: "NAME@HOST:PORT;…", the static peers we dial */
    GPtrArray *peers;   /* owned: GwConfigPeer, parsed from link_peers */
    guint link_grace;   /* seconds a lost link is hidden from the guests */
    /* seconds between an imported session lost with its link and the next */
    guint link_reattach_interval;
    /* owned, nullable: "NAME,NAME…", the link peers a VM may migrate to
     * and from with its device kept where it is (docs/migration.md) */
    gchar *migration_peers;
    /* owned, nullable: "ADDRESS:PORT" of the Prometheus listener
     * (docs/metrics.md); off when NULL */
    gchar *metrics_listen;
    /* cluster mode (docs/cluster.md): on when cluster_etcd is set; needs
     * gateway links (link-listen and its certificates) */
    gchar *cluster_etcd;      /* owned, nullable: "URL,URL…", etcd's client URLs */
    gchar *cluster_etcd_cert; /* owned, nullable: our etcd client certificate (PEM) */
    gchar *cluster_etcd_key;  /* owned, nullable: its key */
    gchar *cluster_etcd_ca;   /* owned, nullable: the CAs etcd's members are checked against */
    /* owned, nullable: "HOST:PORT" other gateways dial (default: link-listen,
     * unless it is a wildcard) */
    gchar *cluster_address;
    guint cluster_ttl; /* seconds of the gateway's etcd lease */
} GwConfig;

/* A static peer: a gateway this one dials. */
typedef struct {
    gchar *name;    /* the name its certificate must carry */
    gchar *address; /* "HOST:PORT" */
} GwConfigPeer;

/* Fills @config with the defaults, then the file's values; a missing file
 * leaves the defaults. Unknown keys are warnings; bad values (a number out
 * of range, a bad escape, invalid UTF-8) are errors naming file and key:
 * a value the file holds never falls back to the default. So are
 * SPICE ingress on a non-loopback spice-address without TLS (unless
 * spice-allow-plain-network=true), links without their certificates, a
 * link peer that is not NAME@HOST:PORT, and the removed raw TCP listener
 * (tcp-port-base other than 0). On FALSE the caller still clears
 * @config. */
gboolean gw_config_load(GwConfig *config, const gchar *path,
                        GError **error) G_GNUC_WARN_UNUSED_RESULT;
void gw_config_copy(GwConfig *dest, const GwConfig *src);
void gw_config_clear(GwConfig *config);

G_END_DECLS
