/* GwBinder: who gets which device. It holds the policy's decision for
 * every device usbgwd has seen, the VMs that run, the pool leases, the
 * admins' assignments and releases, and from these decides which device is
 * bound to which VM.
 *
 * Pure: it depends on policy/ only. Events come in as calls
 * (gw_binder_device_arrived(), gw_binder_vm_started(), …); what must happen
 * goes out as intents through GwBinderOps (claim, bind, unbind, unclaim)
 * and audit-worthy events. It does no I/O, so tests feed it events and
 * read the bindings (tests/binding).
 *
 * Rules it keeps:
 *   - a device is bound to a VM only if an admin assigned it there, or the
 *     policy's decision gives it to that VM (a literal VM name or UUID, a
 *     VM-name glob, or a lease of the pool it belongs to);
 *   - a pool key is leased to at most one VM, and a VM leases at most one
 *     key of a pool;
 *   - a released key is neither bound nor leased until it is replugged;
 *   - a device the policy exports (EXPORT: served to other gateways over
 *     links) stays claimed and is never bound to a VM by the policy;
 *   - after a restart (gw_binder_restore() with gw_binder_save()'s
 *     snapshot, then the devices and running VMs reported again in any
 *     order, then gw_binder_settle()) every binding is what it was.
 *
 * Threading: one caller at a time (usbgwd: the main thread). The ops are
 * called synchronously from inside the call that caused them.
 *
 * Ownership: device descriptions are copied; the ops' string arguments
 * are borrowed for the duration of the call. */
#pragma once

#include <glib.h>

#include "policy.h"

G_BEGIN_DECLS

typedef struct _GwBinder GwBinder;

/* What the audit trail records of the binder's decisions. */
typedef enum {
    GW_BINDER_EVENT_DENY,    /* a device a deny rule matches arrived */
    GW_BINDER_EVENT_ASSIGN,  /* an admin assigned a device to a VM */
    GW_BINDER_EVENT_RELEASE, /* an admin handed a claimed device back to the host */
    GW_BINDER_EVENT_DETACH,  /* a device was unbound from its VM */
    GW_BINDER_EVENT_KEPT,    /* its VM stopped; the device keeps its socket for the next start */
    GW_BINDER_EVENT_WISH_DENIED, /* a VM's metadata asked for what the policy does not allow */
} GwBinderEvent;

/* Where a VM's wish (its libvirt metadata, gw_binder_set_wishes()) stands. */
typedef enum {
    GW_BINDER_WISH_WAITING, /* allowed; no device for it yet (none free, none present) */
    GW_BINDER_WISH_GRANTED, /* a device is bound to the VM for it */
    GW_BINDER_WISH_DENIED,  /* the policy does not allow it */
} GwBinderWishState;

/* One wish of a VM and where it stands. Read-only outside gw-binder.c;
 * valid until the next call into the binder. */
typedef struct {
    PolicyWish *wish;        /* owned */
    GwBinderWishState state; /* for a running VM; WAITING until it runs */
    gchar *reason;           /* owned, nullable: why (the rule, what is missing) */
    gchar *device;           /* owned, nullable: the device bound for it (GRANTED) */
} GwBinderWish;

const gchar *gw_binder_wish_state_to_string(GwBinderWishState state);

/* A device as the binder knows it. Read-only outside gw-binder.c; valid
 * until the next call into the binder. */
typedef struct {
    gchar *id;               /* identity (gw_device_identity) */
    PolicyDevice *desc;      /* as last seen */
    gboolean present;        /* plugged in now */
    PolicyDecision decision; /* for the current policy */
    gchar *vm;               /* nullable: bound to this VM */
    gchar *manual_vm;        /* nullable: usbgwctl assign */
    gboolean released;       /* usbgwctl release: the policy is ignored until a replug */
    gboolean claimed;        /* held by usbgwd (claim or bind succeeded, no unclaim since) */
} GwBinderDevice;

typedef struct {
    /* Claim the present device @id now, so the host binds no driver to it.
     * FALSE: it cannot be claimed (the callee logs why); it is not served. */
    gboolean (*claim)(const gchar *id, gpointer user_data);
    /* Hand @id back to the host. Returns whether it was claimed. */
    gboolean (*unclaim)(const gchar *id, gpointer user_data);
    /* Serve @id to @vm (claiming it first if it is present). Idempotent:
     * when it is served to @vm already, make sure the running VM has it
     * plugged. FALSE: it cannot be served; the binding is not made. */
    gboolean (*bind)(const gchar *id, const gchar *vm, const gchar *actor, gpointer user_data);
    /* Stop serving @id to @vm; @detach: also unplug it from the running VM
     * (the VM still runs). */
    void (*unbind)(const gchar *id, const gchar *vm, gboolean detach, gpointer user_data);
    /* An audit-worthy decision; @vm, @actor and @reason are nullable. */
    void (*event)(GwBinderEvent event, const gchar *id, const gchar *vm, const gchar *actor,
                  const gchar *reason, gpointer user_data);
} GwBinderOps;

/* What outlives a restart (usbgwd keeps it in its state file): maps of
 * device identity → VM name, and the set of released identities. */
typedef struct {
    GHashTable *assignments; /* id → vm: usbgwctl assign */
    GHashTable *released;    /* id → id: usbgwctl release */
    GHashTable *leases;      /* id → vm: pool leases and VM-name-glob bindings */
} GwBinderState;

GwBinderState *gw_binder_state_new(void);
gboolean gw_binder_state_equal(const GwBinderState *a, const GwBinderState *b);
void gw_binder_state_free(GwBinderState *state);
G_DEFINE_AUTOPTR_CLEANUP_FUNC(GwBinderState, gw_binder_state_free)

/* @policy: a new reference is taken. @ops and @user_data outlive the binder. */
GwBinder *gw_binder_new(Policy *policy, const GwBinderOps *ops, gpointer user_data);
void gw_binder_free(GwBinder *binder);
G_DEFINE_AUTOPTR_CLEANUP_FUNC(GwBinder, gw_binder_free)

Policy *gw_binder_get_policy(GwBinder *binder);

/* Before any event: the state saved by an earlier usbgwd. Until
 * gw_binder_settle(), a pool key or glob device leased to a VM that has
 * not been reported running yet is kept for that VM. */
void gw_binder_restore(GwBinder *binder, const GwBinderState *saved);
/* Every VM that runs has been reported (libvirt's reconcile is done, or
 * there is no libvirt): saved leases no longer hold keys back. They are
 * still honoured when their VM starts and the key is free. */
void gw_binder_settle(GwBinder *binder);
/* The state to save: assignments, releases and leases, including those of
 * devices not seen since the restore. */
GwBinderState *gw_binder_save(GwBinder *binder) G_GNUC_WARN_UNUSED_RESULT;

/* A device arrived (or was present at start); @desc is copied. */
void gw_binder_device_arrived(GwBinder *binder, const gchar *id, const PolicyDevice *desc);
/* It left: its binding and socket stay (a replug resumes), a release ends. */
void gw_binder_device_left(GwBinder *binder, const gchar *id);

/* A VM runs / stopped; @actor names who said so (hook, libvirt, reconcile). */
void gw_binder_vm_started(GwBinder *binder, const gchar *name, const gchar *uuid,
                          const gchar *actor);
void gw_binder_vm_stopped(GwBinder *binder, const gchar *name, const gchar *actor);
/* The VM's UUID (lower case) while it runs, else NULL. */
const gchar *gw_binder_get_vm_uuid(GwBinder *binder, const gchar *name);
gboolean gw_binder_vm_is_running(GwBinder *binder, const gchar *name);
/* Names of the running VMs, in the order they started (borrowed strings). */
GPtrArray *gw_binder_list_vms(GwBinder *binder) G_GNUC_WARN_UNUSED_RESULT;

/* What VM @name asks for in its own metadata (PolicyWish, copied; NULL or
 * empty: nothing). The policy has the last word: a device or pool key is
 * bound for a wish only if an `allow metadata` rule allows it; a wish it
 * does not allow is logged and reported (GW_BINDER_EVENT_WISH_DENIED)
 * once per VM start or change of the wishes. May come before or after the
 * VM is reported running; a running VM's devices it no longer asks for
 * are unbound. The wishes are forgotten when the VM stops. */
void gw_binder_set_wishes(GwBinder *binder, const gchar *name, const GPtrArray *wishes,
                          const gchar *actor);
/* The VM's wishes (GwBinderWish, borrowed), or NULL when it has none. */
GPtrArray *gw_binder_get_wishes(GwBinder *binder, const gchar *name);

/* usbgwctl assign: @id is served to @vm from now on, whatever the policy
 * says. FALSE when it cannot be served (it stays assigned). */
gboolean gw_binder_assign(GwBinder *binder, const gchar *id, const gchar *vm, const gchar *actor);
/* usbgwctl release: unbound, handed back to the host, out of its pool
 * until replugged. */
void gw_binder_release(GwBinder *binder, const gchar *id, const gchar *actor);
/* Cluster mode: pool key @id is held in the cluster for another VM
 * (@holder says by whom, e.g. "gateway hv-b for vm web2"), or no longer
 * (@holder NULL). While it is held elsewhere it is out of its pool here:
 * unbound from the VM it was leased to (which may take another key), and
 * leased to no VM. May name a device not seen yet. Devices not in a pool
 * by the policy are not affected. */
void gw_binder_set_elsewhere(GwBinder *binder, const gchar *id, const gchar *holder,
                             const gchar *actor);
/* Who holds @id elsewhere in the cluster, or NULL. */
const gchar *gw_binder_get_elsewhere(GwBinder *binder, const gchar *id);
/* A new policy (a new reference is taken): every device decided again;
 * bindings the new policy no longer gives are undone, new ones made. */
void gw_binder_set_policy(GwBinder *binder, Policy *policy, const gchar *actor);

/* Whether every `required` rule for @name can be met by a present device;
 * FALSE with the first unmet rule in @unmet (its strings borrow from the
 * policy). */
gboolean gw_binder_check_requirements(GwBinder *binder, const gchar *name, const gchar *uuid,
                                      PolicyRequirement *unmet);
/* How many of the `required` rules for @name no present device meets (the
 * same test); @n_required (nullable) gets how many there are. */
guint gw_binder_count_unmet_requirements(GwBinder *binder, const gchar *name, const gchar *uuid,
                                         guint *n_required);

const GwBinderDevice *gw_binder_lookup(GwBinder *binder, const gchar *id);
/* Every device seen, in identity order (borrowed). */
GPtrArray *gw_binder_list_devices(GwBinder *binder) G_GNUC_WARN_UNUSED_RESULT;

G_END_DECLS
