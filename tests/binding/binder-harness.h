/* A GwBinder under test: its intents (claim, bind, unbind, unclaim) kept
 * in a model of what usbgwd would serve, and a script language for event
 * sequences, shared by the table-driven tests and the property test.
 *
 *   arrive ID        a device (ID = VID:PID@PORT or VID:PID#SERIAL) arrives
 *   leave ID         it leaves
 *   start VM         a VM runs (its UUID is the harness's for that name), with
 *                    the wishes its metadata has (wish)
 *   stop VM
 *   assign ID VM     usbgwctl assign
 *   release ID       usbgwctl release
 *   reload N         the harness's policy number N becomes the policy
 *   settle           every running VM has been reported
 *   fail-bind VM     binds to VM fail from now on (a socket that cannot be made)
 *   wish VM SPECS    the VM's metadata asks for SPECS: pool=NAME, id=VID:PID or
 *                    id=VID:PID#SERIAL, comma-separated; "-" for nothing. The
 *                    binder learns it now if the VM runs, else at its start
 *   elsewhere ID WHO the cluster says another gateway holds ID's pool key
 *                    (WHO, no spaces), or that it is free again (WHO "-")
 */
#pragma once

#include "gw-binder.h"

G_BEGIN_DECLS

typedef struct {
    GwBinder *binder;      /* owned */
    GPtrArray *policies;   /* Policy (owned): reload N picks one; 0 is the first policy */
    GHashTable *served;    /* id → VM: what the intents have made usbgwd serve */
    GHashTable *claimed;   /* id set: claimed by usbgwd */
    GHashTable *present;   /* id → PolicyDevice: plugged in now */
    GHashTable *fail_vms;  /* VM names whose binds fail */
    GHashTable *wishes;    /* VM → its wish SPECS as the script gave them */
    GHashTable *elsewhere; /* id → holder: what the cluster says (told again after a restart) */
    GString *log;          /* the intents, one per line: "bind ID VM", "unbind ID VM", … */
    gchar *error;          /* the first inconsistency the intents showed, or NULL */
} BinderHarness;

/* @policies: policy texts (NULL-terminated); a text that does not parse
 * is a test failure (g_error). */
BinderHarness *binder_harness_new(const gchar *const *policies);
void binder_harness_free(BinderHarness *harness);
G_DEFINE_AUTOPTR_CLEANUP_FUNC(BinderHarness, binder_harness_free)

/* A device description for an ID (VID:PID@PORT or VID:PID#SERIAL, with an
 * optional "/CC" interface class; default ff). */
PolicyDevice *binder_harness_device(const gchar *spec) G_GNUC_WARN_UNUSED_RESULT;
const gchar *binder_harness_vm_uuid(const gchar *vm);

/* Runs one script line; FALSE with @error for a line it cannot read. */
gboolean binder_harness_run(BinderHarness *harness, const gchar *line, GError **error);

/* A usbgwd restart: the binder's saved state goes to a new binder with the
 * same policy; the devices present and the VMs running are reported again
 * in the order of @order_seed (0: as they are listed), then it settles. */
void binder_harness_restart(BinderHarness *harness, guint32 order_seed);

/* "ID=VM ID=- …" for every device the binder knows, in identity order. */
gchar *binder_harness_bindings(BinderHarness *harness) G_GNUC_WARN_UNUSED_RESULT;

/* The invariants (gw-binder.h); NULL when they hold, else what broke. */
gchar *binder_harness_check(BinderHarness *harness) G_GNUC_WARN_UNUSED_RESULT;

/* Silences the binder's g_message/g_info lines (tests print only failures). */
void binder_harness_quiet_logs(void);

G_END_DECLS
