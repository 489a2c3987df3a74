/* Socket paths, aliases and redirdev plugging. See gw-redirdev-plugger.h. */
#include "gw-redirdev-plugger.h"

#include <string.h>

#include "gw-log.h"

/* Hex digits of the identity's SHA-256 appended to a lossy name. */
#define GW_REDIRDEV_HASH_LEN 8

#define GW_REDIRDEV_ALIAS_CHARS "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_"

struct _GwRedirdevPlugger {
    gchar *rundir;             /* owned */
    gchar *vm_root;            /* owned: <rundir>/vm/ */
    GwLibvirt *libvirt;        /* borrowed, nullable */
    GwRedirdevPlugged plugged; /* nullable */
    gpointer user_data;
    GCancellable *cancellable; /* owned: cancelled when the plugger goes */
    GHashTable *aliases;       /* "vm\nalias" (owned) → device id (owned) */
};

static gchar *
gw_redirdev_hash(const gchar *text)
{
    g_autofree gchar *sum = g_compute_checksum_for_string(G_CHECKSUM_SHA256, text, -1);
    return g_strndup(sum, GW_REDIRDEV_HASH_LEN);
}

gchar *
gw_redirdev_slot(const gchar *id, const gchar *slot_name)
{
    /* the identity survives as a file name only if nothing was replaced:
     * "VID:PID#SERIAL" / "VID:PID@PORT" become "vid-pid-sn-SERIAL" /
     * "vid-pid-at-PORT", so compare what follows the separators */
    const gchar *tail = strpbrk(id, "#@");
    const gchar *slot_tail = strlen(slot_name) > 13 ? slot_name + 13 : "";
    g_autofree gchar *hash = NULL;

    if (tail != NULL && strcmp(tail + 1, slot_tail) == 0)
        return g_strdup(slot_name);
    hash = gw_redirdev_hash(id);
    return g_strdup_printf("%s-%s", slot_name, hash);
}

gchar *
gw_redirdev_alias(const gchar *slot)
{
    g_autofree gchar *alias = g_strconcat(GW_REDIRDEV_ALIAS_PREFIX, slot, NULL);
    g_autofree gchar *canon = g_strcanon(g_strdup(alias), GW_REDIRDEV_ALIAS_CHARS, '_');
    g_autofree gchar *hash = NULL;

    if (strcmp(canon, alias) == 0)
        return g_steal_pointer(&canon);
    /* "1-1.4" and "1-1_4" must not meet */
    hash = gw_redirdev_hash(slot);
    return g_strdup_printf("%s-%s", canon, hash);
}

GwRedirdevPlugger *
gw_redirdev_plugger_new(const gchar *rundir, GwLibvirt *libvirt, GwRedirdevPlugged plugged,
                        gpointer user_data)
{
    GwRedirdevPlugger *plugger = g_new0(GwRedirdevPlugger, 1);
    plugger->rundir = g_strdup(rundir);
    plugger->vm_root = g_build_filename(rundir, "vm", "", NULL);
    plugger->libvirt = libvirt;
    plugger->plugged = plugged;
    plugger->user_data = user_data;
    plugger->cancellable = g_cancellable_new();
    plugger->aliases = g_hash_table_new_full(g_str_hash, g_str_equal, g_free, g_free);
    return plugger;
}

void
gw_redirdev_plugger_free(GwRedirdevPlugger *plugger)
{
    if (plugger == NULL)
        return;
    g_cancellable_cancel(plugger->cancellable);
    g_object_unref(plugger->cancellable);
    g_hash_table_unref(plugger->aliases);
    g_free(plugger->rundir);
    g_free(plugger->vm_root);
    g_free(plugger);
}

gchar *
gw_redirdev_plugger_vm_dir(GwRedirdevPlugger *plugger, const gchar *vm)
{
    return g_build_filename(plugger->rundir, "vm", vm, NULL);
}

gchar *
gw_redirdev_plugger_device_socket(GwRedirdevPlugger *plugger, const gchar *vm, const gchar *id,
                                  const gchar *slot_name)
{
    g_autofree gchar *slot = gw_redirdev_slot(id, slot_name);
    g_autofree gchar *file = g_strconcat(slot, ".sock", NULL);
    return g_build_filename(plugger->rundir, "vm", vm, file, NULL);
}

gboolean
gw_redirdev_plugger_is_ours(GwRedirdevPlugger *plugger, const gchar *path)
{
    return g_str_has_prefix(path, plugger->vm_root);
}

gboolean
gw_redirdev_plugger_can_plug(GwRedirdevPlugger *plugger)
{
    return plugger->libvirt != NULL && gw_libvirt_is_connected(plugger->libvirt);
}

typedef struct {
    GwRedirdevPlugger *plugger; /* only used while not cancelled */
    GCancellable *cancellable;  /* owned ref */
    gchar *id;                  /* nullable: a share's socket */
    gchar *vm;
    gchar *what; /* "PATH → vm VM", for the log */
} GwRedirdevOp;

static GwRedirdevOp *
gw_redirdev_op_new(GwRedirdevPlugger *plugger, const gchar *id, const gchar *vm, const gchar *what)
{
    GwRedirdevOp *op = g_new0(GwRedirdevOp, 1);
    op->plugger = plugger;
    op->cancellable = g_object_ref(plugger->cancellable);
    op->id = g_strdup(id);
    op->vm = g_strdup(vm);
    op->what = g_strdup(what);
    return op;
}

static void
gw_redirdev_op_free(GwRedirdevOp *op)
{
    g_object_unref(op->cancellable);
    g_free(op->id);
    g_free(op->vm);
    g_free(op->what);
    g_free(op);
}

G_DEFINE_AUTOPTR_CLEANUP_FUNC(GwRedirdevOp, gw_redirdev_op_free)

static void
gw_redirdev_plug_done(GObject *source, GAsyncResult *result, gpointer user_data)
{
    g_autoptr(GwRedirdevOp) op = user_data;
    g_autoptr(GError) error = NULL;
    gboolean ok = gw_libvirt_attach_redirdev_finish(NULL, result, &error);

    if (g_cancellable_is_cancelled(op->cancellable))
        return;
    if (!ok)
        gw_log_device(G_LOG_LEVEL_WARNING, op->id, op->vm, NULL, "%s: libvirt attach failed: %s",
                      op->what, error->message);
    if (op->id != NULL && op->plugger->plugged != NULL)
        op->plugger->plugged(op->id, op->vm, ok ? NULL : error, op->plugger->user_data);
}

static void
gw_redirdev_unplug_done(GObject *source, GAsyncResult *result, gpointer user_data)
{
    g_autoptr(GwRedirdevOp) op = user_data;
    g_autoptr(GError) error = NULL;

    if (!gw_libvirt_detach_redirdev_finish(NULL, result, &error))
        gw_log_device(G_LOG_LEVEL_WARNING, op->id, op->vm, NULL, "%s: libvirt detach failed: %s",
                      op->what, error->message);
}

static void
gw_redirdev_plug(GwRedirdevPlugger *plugger, const gchar *id, const gchar *vm, const gchar *uuid,
                 const gchar *path, const gchar *alias)
{
    g_autofree gchar *what = g_strdup_printf("%s → vm %s", id != NULL ? id : path, vm);
    GwRedirdevOp *op = gw_redirdev_op_new(plugger, id, vm, what);

    gw_libvirt_attach_redirdev_async(plugger->libvirt, uuid, path, alias, NULL,
                                     gw_redirdev_plug_done, op);
}

void
gw_redirdev_plugger_plug_device(GwRedirdevPlugger *plugger, const gchar *id, const gchar *slot_name,
                                const gchar *vm, const gchar *uuid, const gchar *path)
{
    g_autofree gchar *slot = NULL;
    g_autofree gchar *alias = NULL;

    slot = gw_redirdev_slot(id, slot_name);
    alias = gw_redirdev_alias(slot);
    g_hash_table_insert(plugger->aliases, g_strdup_printf("%s\n%s", vm, alias), g_strdup(id));
    if (gw_redirdev_plugger_can_plug(plugger) && uuid != NULL)
        gw_redirdev_plug(plugger, id, vm, uuid, path, alias);
}

void
gw_redirdev_plugger_plug_share(GwRedirdevPlugger *plugger, const gchar *vm, const gchar *uuid,
                               const gchar *path, guint index, gboolean replug)
{
    g_autofree gchar *alias = g_strdup_printf(GW_REDIRDEV_ALIAS_PREFIX "share%u", index);

    if (!gw_redirdev_plugger_can_plug(plugger) || uuid == NULL)
        return;
    if (replug)
        gw_redirdev_plugger_unplug(plugger, vm, uuid, path);
    gw_redirdev_plug(plugger, NULL, vm, uuid, path, alias);
}

void
gw_redirdev_plugger_unplug(GwRedirdevPlugger *plugger, const gchar *vm, const gchar *uuid,
                           const gchar *path)
{
    g_autofree gchar *what = g_strdup_printf("%s ← vm %s", path, vm);

    if (plugger->libvirt == NULL || uuid == NULL)
        return;
    gw_libvirt_detach_redirdev_async(plugger->libvirt, uuid, path, NULL, gw_redirdev_unplug_done,
                                     gw_redirdev_op_new(plugger, NULL, vm, what));
}

void
gw_redirdev_plugger_unplug_stale(GwRedirdevPlugger *plugger, const GwLibvirtDomain *domain,
                                 GwRedirdevHasPeer has_peer, gpointer user_data)
{
    for (guint i = 0; i < domain->redirdev_paths->len; i++) {
        const gchar *path = g_ptr_array_index(domain->redirdev_paths, i);
        if (!gw_redirdev_plugger_is_ours(plugger, path) || has_peer(path, user_data))
            continue;
        gw_log_device(G_LOG_LEVEL_MESSAGE, NULL, domain->name, NULL,
                      "vm \"%s\": re-plugging %s (its QEMU is not connected)", domain->name, path);
        gw_redirdev_plugger_unplug(plugger, domain->name, domain->uuid, path);
    }
}

const gchar *
gw_redirdev_plugger_lookup_alias(GwRedirdevPlugger *plugger, const gchar *vm, const gchar *alias)
{
    g_autofree gchar *key = g_strdup_printf("%s\n%s", vm, alias);
    return g_hash_table_lookup(plugger->aliases, key);
}
