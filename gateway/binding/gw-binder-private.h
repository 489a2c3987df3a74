/* What the parts of GwBinder share (gw-binder.c: devices, VMs, binding
 * and the events; gw-binder-offer.c: what a running VM is offered, its
 * metadata wishes and pool keys; gw-binder-state.c: the state kept across
 * restarts). Not for use outside them. */
#pragma once

#include "gw-binder.h"

typedef struct {
    gchar *name; /* owned */
    gchar *uuid; /* owned, nullable; lower case */
} GwBinderVm;

struct _GwBinder {
    Policy *policy;         /* owned ref */
    PolicyPools *pools;     /* owned */
    const GwBinderOps *ops; /* borrowed */
    gpointer user_data;
    GHashTable *devices;   /* id → GwBinderDevice (owned) */
    GHashTable *vms;       /* name → GwBinderVm (owned) */
    GPtrArray *vm_order;   /* GwBinderVm (borrowed from vms), in start order */
    GwBinderState *saved;  /* owned: restored state; leases dropped as their VM stops */
    GHashTable *wishes;    /* VM name (owned) → GPtrArray of GwBinderWish (owned) */
    gboolean settled;      /* every running VM has been reported since the restore */
    GHashTable *elsewhere; /* id (owned) → holder (owned): pool keys held in the cluster */
};

/* gw-binder.c */
/* "file:line" of the rule behind @decision, NULL when no rule decided. */
gchar *gw_binder_rule_of(const PolicyDecision *decision);
void gw_binder_event(GwBinder *binder, GwBinderEvent event, GwBinderDevice *dev, const gchar *vm,
                     const gchar *actor, const gchar *reason);
const gchar *gw_binder_fixed_vm(GwBinder *binder, GwBinderDevice *dev);
gboolean gw_binder_bind(GwBinder *binder, GwBinderDevice *dev, const gchar *vm, const gchar *actor);
gboolean gw_binder_is_reserved(GwBinder *binder, GwBinderDevice *dev, const gchar *vm);

/* gw-binder-offer.c */
void gw_binder_wish_free(gpointer data);
/* Whether the policy gives @dev to the VM @vm_name (@vm_uuid nullable). */
gboolean gw_binder_gives(GwBinder *binder, GwBinderDevice *dev, const gchar *vm_name,
                         const gchar *vm_uuid);
void gw_binder_sync_pool_wishes(GwBinder *binder, GwBinderVm *vm);
void gw_binder_pool_drop(GwBinder *binder, GwBinderDevice *dev);
void gw_binder_offer_vm(GwBinder *binder, GwBinderVm *vm, const gchar *actor);
/* Offers every running VM, in start order, what the policy gives it. */
void gw_binder_offer_all(GwBinder *binder, const gchar *actor);
