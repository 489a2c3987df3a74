/* The audit trail: one JSON line per attach, detach, deny, veto, release,
 * assign, share and refused-peer event, for admins ("which VM held license key X on that day"),
 * plus the same event as a structured log entry (USBGW_* journal fields). Debug logging stays out
 * of it. Main thread. */
#pragma once

#include <json-glib/json-glib.h>

#include "policy.h"

G_BEGIN_DECLS

typedef struct _GwAudit GwAudit;

/* What happened; gw_audit_kind_to_string() gives the "event" field. */
typedef enum {
    GW_AUDIT_ATTACH,          /* a device reached its VM */
    GW_AUDIT_ATTACH_FAILED,   /* libvirt refused to plug it in */
    GW_AUDIT_DETACH,          /* it left its VM */
    GW_AUDIT_DENY,            /* a deny rule refused a device */
    GW_AUDIT_VETO,            /* a VM may not start: a required device is missing */
    GW_AUDIT_RELEASE,         /* an admin handed a device back to the host */
    GW_AUDIT_ASSIGN,          /* an admin assigned a device */
    GW_AUDIT_POLICY_RELOADED, /* the policy was reloaded */
    GW_AUDIT_SHARE,           /* a share started (or was restored) */
    GW_AUDIT_UNSHARE,         /* a share ended */
    GW_AUDIT_LEND,            /* a client lent a device through a share */
    GW_AUDIT_RETURN,          /* the lent device went back */
    GW_AUDIT_PEER_REFUSED,    /* a process that is not the VM's QEMU connected to its socket */
    GW_AUDIT_LINK_UP,         /* a gateway link's connection came up */
    GW_AUDIT_LINK_DOWN,       /* it was lost (sessions wait for link-grace) */
    GW_AUDIT_LINK_REFUSED,    /* a gateway was refused, or refused this one */
    GW_AUDIT_EXPORT_OPEN,     /* another gateway opened one of our devices */
    GW_AUDIT_EXPORT_CLOSE,    /* that session ended */
    GW_AUDIT_WISH_DENIED,     /* a VM's metadata asked for what the policy does not allow */
    GW_AUDIT_NO_USB_BUS,      /* a VM has no USB controller a redirdev can be plugged into */
    GW_AUDIT_USB_CONTROLLER,  /* usbgwd added one to the VM's persistent definition */
    GW_AUDIT_MIGRATE,         /* a live migration's destination QEMU took the session over */
    GW_AUDIT_MIGRATE_FAILED,  /* the destination left before it took over: the source stays */
    GW_AUDIT_MIGRATE_OUT,     /* the VM went on to another host (from, to: the gateways) */
    GW_AUDIT_MIGRATE_IN,      /* the VM came from another host (from, to: the gateways) */
    GW_AUDIT_CLUSTER_HOLD,    /* the gateway took a pool key's cluster lease for a VM */
    GW_AUDIT_CLUSTER_RELEASE, /* it gave the lease back */
    GW_AUDIT_CLUSTER_LOST,    /* its etcd lease was lost: it stopped lending the key */
} GwAuditKind;

const gchar *gw_audit_kind_to_string(GwAuditKind kind);

typedef struct {
    GwAuditKind event;
    const gchar *device_id;     /* nullable */
    const PolicyDevice *device; /* nullable: adds vid, pid, serial, port */
    const gchar *vm;            /* nullable */
    const gchar *vm_uuid;       /* nullable */
    const gchar *rule;          /* nullable: "file:line" */
    const gchar *actor;         /* policy, hook, libvirt, usbgwctl uid=N, usbgwd */
    const gchar *reason;        /* nullable */
    const gchar *peer;          /* nullable: the other gateway of a link event or export */
    const gchar *address;       /* nullable: that gateway's address */
    const gchar *from;          /* nullable: a migration's source gateway */
    const gchar *to;            /* nullable: its destination gateway */
    const gchar *pool;          /* nullable: a cluster lease's pool */
    gint64 revision;            /* 0: none; a cluster lease's etcd revision */
} GwAuditEvent;

/* @path NULL: structured log only. The file is opened for appending
 * (created 0640) and each record is written with one write(). It is never
 * opened through a symlink, and must be a regular file of usbgwd's own
 * user with one name: its directory may be writable by others. */
GwAudit *gw_audit_new(const gchar *path, GError **error) G_GNUC_WARN_UNUSED_RESULT;
/* Opens the path again (after logrotate moved the file; usbgwd does it on
 * SIGHUP), with gw_audit_new's checks. On error the file already open
 * stays in use, so no record is lost. */
gboolean gw_audit_reopen(GwAudit *audit, GError **error) G_GNUC_WARN_UNUSED_RESULT;
/* Records the event; returns it as a JSON object (with "time") for the
 * control socket's subscribers. */
JsonNode *gw_audit_record(GwAudit *audit, const GwAuditEvent *event) G_GNUC_WARN_UNUSED_RESULT;
void gw_audit_free(GwAudit *audit);

G_DEFINE_AUTOPTR_CLEANUP_FUNC(GwAudit, gw_audit_free)

G_END_DECLS
