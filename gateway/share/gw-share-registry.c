/* Shares by VM, SPICE ports, share rules, restore. See gw-share-registry.h. */
#include "gw-share-registry.h"

#include <string.h>

#include "gw-log.h"
#include "gw-users.h"

/* clang-format off */
G_DEFINE_QUARK(usbgw-share-registry-error-quark, gw_share_registry_error)
/* clang-format on */

/* The longest ticket a saved share may have (usbgwd makes 32 characters). */
#define GW_SHARE_REGISTRY_MAX_TICKET 60

struct _GwShareRegistry {
    GwShareRegistryConfig config;  /* the worker's strings borrowed from the caller */
    const GwShareRegistryOps *ops; /* borrowed */
    gpointer user_data;
    GHashTable *shares;        /* VM name (borrowed from the share) → GwShare (owned) */
    GHashTable *groups;        /* user name (owned) → GStrv (owned): NSS answers */
    guint next_port;           /* offset from port_base to try first */
    GCancellable *cancellable; /* owned: cancelled when the registry goes */
};

static gchar *
gw_share_registry_rule_of(const PolicyDecision *decision)
{
    return decision->file != NULL ? g_strdup_printf("%s:%u", decision->file, decision->line) : NULL;
}

/* ---- the lending users' groups (NSS, in a thread) --------------------------- */

typedef struct {
    GwShareRegistry *registry; /* only used while not cancelled */
    gchar *user;
} GwGroupsLookup;

static void
gw_share_registry_groups_done(GObject *source, GAsyncResult *result, gpointer user_data)
{
    g_autofree GwGroupsLookup *lookup = user_data;
    g_autofree gchar *name = lookup->user;
    g_autoptr(GError) error = NULL;
    g_autoptr(GwUser) user = gw_users_lookup_finish(result, &error);

    if (g_error_matches(error, G_IO_ERROR, G_IO_ERROR_CANCELLED))
        return;
    if (user == NULL) {
        /* not known here: share rules naming a group do not match */
        g_debug("share user \"%s\": %s", name, error->message);
        g_hash_table_insert(lookup->registry->groups, g_strdup(name), g_new0(gchar *, 1));
        return;
    }
    g_hash_table_insert(lookup->registry->groups, g_strdup(name), g_steal_pointer(&user->groups));
}

/* Looks @user's groups up again (they may have changed since the last
 * share), in a thread. */
static void
gw_share_registry_refresh_groups(GwShareRegistry *registry, const gchar *user)
{
    GwGroupsLookup *lookup = g_new0(GwGroupsLookup, 1);
    lookup->registry = registry;
    lookup->user = g_strdup(user);
    gw_users_lookup_async(user, registry->cancellable, gw_share_registry_groups_done, lookup);
}

/* The groups of @user; NULL when unknown. A device lent before the lookup
 * a share started has finished waits for NSS here (the lookup takes
 * microseconds with local files, a SPICE login tens of milliseconds). */
static gchar **
gw_share_registry_groups(GwShareRegistry *registry, const gchar *user)
{
    gchar **groups = g_hash_table_lookup(registry->groups, user);
    g_autoptr(GwUser) found = NULL;

    if (groups != NULL)
        return g_strdupv(groups);
    found = gw_users_lookup(user, NULL);
    return found != NULL ? g_steal_pointer(&found->groups) : NULL;
}

/* ---- a share's callbacks ---------------------------------------------------- */

static gboolean
gw_share_registry_check(GwShare *share, const PolicyDevice *device, gchar **rule, gchar **reason,
                        gpointer user_data)
{
    GwShareRegistry *registry = user_data;
    const gchar *vm = gw_share_get_vm(share);
    g_auto(GStrv) groups = gw_share_registry_groups(registry, gw_share_get_user(share));
    PolicyContext ctx = {
        .vm_name = vm,
        .vm_uuid = registry->ops->vm_uuid(vm, registry->user_data),
        .user = gw_share_get_user(share),
        .groups = (const gchar *const *)groups,
    };
    PolicyDecision decision;
    g_autofree gchar *what = policy_device_describe(device);

    policy_decide(registry->ops->policy(registry->user_data), POLICY_ORIGIN_SHARE, device, &ctx,
                  &decision);
    *rule = gw_share_registry_rule_of(&decision);
    if (decision.verdict == POLICY_VERDICT_SHARE)
        return TRUE;
    if (decision.file != NULL)
        *reason =
            g_strdup_printf("%s: user \"%s\" may not lend it to vm \"%s\" (%s rule at %s)", what,
                            ctx.user, vm, policy_verdict_to_string(decision.verdict), *rule);
    else
        *reason = g_strdup_printf("%s: no share rule lets user \"%s\" lend it to vm \"%s\"", what,
                                  ctx.user, vm);
    return FALSE;
}

static void
gw_share_registry_event_cb(GwShare *share, const gchar *event, const PolicyDevice *device,
                           const gchar *rule, const gchar *reason, const gchar *client,
                           gpointer user_data)
{
    GwShareRegistry *registry = user_data;
    const gchar *vm = gw_share_get_vm(share);
    const gchar *user = gw_share_get_user(share);
    g_autofree gchar *actor = client != NULL
                                  ? g_strdup_printf("share user=%s client=%s", user, client)
                                  : g_strdup_printf("share user=%s", user);
    g_autofree gchar *what = device != NULL ? policy_device_describe(device) : NULL;
    GwShareRegistryEvent kind = GW_SHARE_REGISTRY_RETURN;

    if (g_strcmp0(event, "deny") == 0 && device == NULL) {
        kind = GW_SHARE_REGISTRY_DENY; /* a login, logged by the share */
    } else if (g_strcmp0(event, "deny") == 0) {
        kind = GW_SHARE_REGISTRY_DENY;
        gw_log_device(G_LOG_LEVEL_MESSAGE, NULL, vm, NULL,
                      "vm \"%s\": refused %s lent by user \"%s\": %s", vm, what, user, reason);
    } else {
        if (g_strcmp0(event, "lend") == 0)
            kind = GW_SHARE_REGISTRY_LEND;
        gw_log_device(G_LOG_LEVEL_MESSAGE, NULL, vm, NULL, "vm \"%s\": %s %s (user \"%s\"%s%s)", vm,
                      kind == GW_SHARE_REGISTRY_LEND ? "got the lent device" : "gave back", what,
                      user, rule != NULL ? ", rule " : "", rule != NULL ? rule : "");
    }
    registry->ops->event(kind, share, actor, reason, device, rule, registry->user_data);
}

/* Plugs the share's VM sockets into the running VM; a socket whose QEMU
 * is connected already is left alone. */
static void
gw_share_registry_plug(GwShareRegistry *registry, GwShare *share, gboolean replug)
{
    const gchar *const *paths = gw_share_get_socket_paths(share);

    for (guint i = 0; paths[i] != NULL; i++) {
        if (!gw_share_socket_has_qemu(share, paths[i]))
            registry->ops->plug(gw_share_get_vm(share), paths[i], i, replug, registry->user_data);
    }
}

static void
gw_share_registry_used(GwShare *share, gpointer user_data)
{
    GwShareRegistry *registry = user_data;
    registry->ops->changed(registry->user_data);
}

static void
gw_share_registry_qemu_left(GwShare *share, gpointer user_data)
{
    /* libvirt's hot-plugged chardevs do not reconnect: plug anew */
    gw_share_registry_plug(user_data, share, TRUE);
}

static void
gw_share_registry_ended(GwShare *share, const gchar *reason, gpointer user_data)
{
    g_autofree gchar *vm = g_strdup(gw_share_get_vm(share));
    gw_share_registry_unshare(user_data, vm, "usbgwd", reason);
}

/* ---- the registry ----------------------------------------------------------- */

GwShareRegistry *
gw_share_registry_new(const GwShareRegistryConfig *config, const GwShareRegistryOps *ops,
                      gpointer user_data)
{
    GwShareRegistry *registry = g_new0(GwShareRegistry, 1);
    registry->config = *config;
    registry->ops = ops;
    registry->user_data = user_data;
    registry->shares =
        g_hash_table_new_full(g_str_hash, g_str_equal, NULL, (GDestroyNotify)gw_share_free);
    registry->groups =
        g_hash_table_new_full(g_str_hash, g_str_equal, g_free, (GDestroyNotify)g_strfreev);
    registry->cancellable = g_cancellable_new();
    return registry;
}

void
gw_share_registry_free(GwShareRegistry *registry)
{
    if (registry == NULL)
        return;
    g_cancellable_cancel(registry->cancellable);
    g_object_unref(registry->cancellable);
    g_hash_table_unref(registry->shares);
    g_hash_table_unref(registry->groups);
    g_free(registry);
}

GwShare *
gw_share_registry_lookup(GwShareRegistry *registry, const gchar *vm)
{
    return g_hash_table_lookup(registry->shares, vm);
}

guint
gw_share_registry_get_count(GwShareRegistry *registry)
{
    return g_hash_table_size(registry->shares);
}

static gint
gw_share_registry_compare(gconstpointer a, gconstpointer b)
{
    return strcmp(gw_share_get_vm(*(GwShare *const *)a), gw_share_get_vm(*(GwShare *const *)b));
}

GPtrArray *
gw_share_registry_list(GwShareRegistry *registry)
{
    GPtrArray *out = g_ptr_array_new();
    GHashTableIter iter;
    gpointer value;

    g_hash_table_iter_init(&iter, registry->shares);
    while (g_hash_table_iter_next(&iter, NULL, &value))
        g_ptr_array_add(out, value);
    g_ptr_array_sort(out, gw_share_registry_compare);
    return out;
}

gboolean
gw_share_registry_has_qemu(GwShareRegistry *registry, const gchar *path)
{
    GHashTableIter iter;
    gpointer value;

    g_hash_table_iter_init(&iter, registry->shares);
    while (g_hash_table_iter_next(&iter, NULL, &value))
        if (gw_share_socket_has_qemu(value, path))
            return TRUE;
    return FALSE;
}

static gboolean
gw_share_registry_port_used(GwShareRegistry *registry, guint port)
{
    GHashTableIter iter;
    gpointer value;

    g_hash_table_iter_init(&iter, registry->shares);
    while (g_hash_table_iter_next(&iter, NULL, &value))
        if (gw_share_get_port(value) == port)
            return TRUE;
    return FALSE;
}

/* A SPICE port no share uses, 0 when all are taken. Ports are handed out
 * in turn, so a new share does not race the worker of one that just ended
 * for its port. */
static guint16
gw_share_registry_free_port(GwShareRegistry *registry)
{
    guint base = registry->config.port_base;
    guint count = MIN(registry->config.ports, G_MAXUINT16 + 1u - base);

    for (guint i = 0; i < count; i++) {
        guint port = base + (registry->next_port + i) % count;
        if (!gw_share_registry_port_used(registry, port)) {
            registry->next_port = (port - base + 1) % count;
            return (guint16)port;
        }
    }
    return 0;
}

/* Starts a share (a new one, or one saved before a restart: @ticket and
 * @port given). */
static GwShare *
gw_share_registry_start(GwShareRegistry *registry, const gchar *vm, const gchar *user, guint ttl_s,
                        const gchar *ticket, guint16 port, gboolean used, gint64 ends_unix,
                        GError **error)
{
    static const GwShareCallbacks callbacks = {
        .check = gw_share_registry_check,
        .event = gw_share_registry_event_cb,
        .used = gw_share_registry_used,
        .qemu_left = gw_share_registry_qemu_left,
        .ended = gw_share_registry_ended,
    };
    g_autofree gchar *dir = registry->ops->socket_dir(vm, registry->user_data);
    GwShareOptions options = {0};
    GwShare *share;

    options.vm = vm;
    options.user = user;
    options.ttl_s = ttl_s;
    options.ticket = ticket;
    options.used = used;
    options.max_life_s = registry->config.max_life_s;
    options.ends_unix = ends_unix;
    options.socket_dir = dir;
    options.access = registry->config.access;
    options.worker = registry->config.worker;
    options.worker.port = port;
    share = gw_share_new(&options, &callbacks, registry, error);
    if (share == NULL)
        return NULL;
    g_hash_table_insert(registry->shares, (gpointer)gw_share_get_vm(share), share);
    gw_share_registry_refresh_groups(registry, user);
    gw_share_registry_plug(registry, share, FALSE);
    registry->ops->changed(registry->user_data);
    return share;
}

GwShare *
gw_share_registry_share(GwShareRegistry *registry, const gchar *vm, const gchar *user, guint ttl_s,
                        const gchar *actor, gboolean *renewed, GError **error)
{
    GwShare *share = g_hash_table_lookup(registry->shares, vm);
    g_autoptr(GError) local_error = NULL;
    guint16 port;

    *renewed = FALSE;
    if (registry->config.port_base == 0) {
        g_set_error(error, GW_SHARE_REGISTRY_ERROR, GW_SHARE_REGISTRY_ERROR_OFF,
                    "SPICE ingress is off: set spice-port-base in usbgwd.conf");
        return NULL;
    }
    if (share != NULL) {
        /* a new share for the VM replaces the old one: same endpoint, new
         * ticket, the old client dropped */
        g_autofree gchar *old_user = g_strdup(gw_share_get_user(share));
        if (!gw_share_renew(share, user, ttl_s, &local_error)) {
            g_set_error(error, GW_SHARE_REGISTRY_ERROR, GW_SHARE_REGISTRY_ERROR_FAILED,
                        "cannot renew the share of vm \"%s\": %s", vm, local_error->message);
            return NULL;
        }
        registry->ops->event(GW_SHARE_REGISTRY_UNSHARE, share, actor, "replaced by a new share",
                             NULL, NULL, registry->user_data);
        gw_log_device(G_LOG_LEVEL_MESSAGE, NULL, vm, NULL,
                      "share vm \"%s\" user \"%s\" replaced by a new share", vm, old_user);
        gw_share_registry_refresh_groups(registry, user);
        registry->ops->changed(registry->user_data);
        *renewed = TRUE;
    } else {
        port = gw_share_registry_free_port(registry);
        if (port == 0) {
            g_set_error(error, GW_SHARE_REGISTRY_ERROR, GW_SHARE_REGISTRY_ERROR_BUSY,
                        "all %u SPICE ports from %u are in use by shares "
                        "(usbgwctl shares; raise spice-ports)",
                        registry->config.ports, registry->config.port_base);
            return NULL;
        }
        share =
            gw_share_registry_start(registry, vm, user, ttl_s, NULL, port, FALSE, 0, &local_error);
        if (share == NULL) {
            g_set_error(error, GW_SHARE_REGISTRY_ERROR, GW_SHARE_REGISTRY_ERROR_FAILED,
                        "cannot start the share for vm \"%s\": %s", vm, local_error->message);
            return NULL;
        }
    }
    gw_log_device(G_LOG_LEVEL_MESSAGE, NULL, vm, NULL,
                  "share vm \"%s\" user \"%s\": SPICE port %u, ticket valid %u s for the first "
                  "login (%s)",
                  vm, user, (guint)gw_share_get_port(share), ttl_s, actor);
    registry->ops->event(GW_SHARE_REGISTRY_SHARE, share, actor, user, NULL, NULL,
                         registry->user_data);
    return share;
}

gboolean
gw_share_registry_unshare(GwShareRegistry *registry, const gchar *vm, const gchar *actor,
                          const gchar *reason)
{
    GwShare *share = g_hash_table_lookup(registry->shares, vm);
    g_autoptr(GPtrArray) lent = NULL;
    const gchar *const *paths;

    if (share == NULL)
        return FALSE;
    gw_log_device(G_LOG_LEVEL_MESSAGE, NULL, vm, NULL, "share vm \"%s\" user \"%s\" ended: %s", vm,
                  gw_share_get_user(share), reason);
    registry->ops->event(GW_SHARE_REGISTRY_UNSHARE, share, actor, reason, NULL, NULL,
                         registry->user_data);
    paths = gw_share_get_socket_paths(share);
    for (guint i = 0; paths[i] != NULL; i++)
        registry->ops->unplug(vm, paths[i], registry->user_data);
    /* what the client lent leaves the VM with the share; gw_share_free()
     * reports nothing itself */
    lent = gw_share_list_lent(share);
    for (guint i = 0; i < lent->len; i++)
        gw_share_registry_event_cb(share, "return", g_ptr_array_index(lent, i), NULL, "share ended",
                                   gw_share_get_client_address(share), registry);
    g_clear_pointer(&lent, g_ptr_array_unref);
    g_hash_table_remove(registry->shares, vm);
    registry->ops->changed(registry->user_data);
    return TRUE;
}

gboolean
gw_share_registry_restore(GwShareRegistry *registry, const gchar *vm, const gchar *user,
                          const gchar *ticket, gint64 port, gint64 expires, gint64 ends)
{
    const GwShareRegistryConfig *config = &registry->config;
    gint64 now = g_get_real_time() / G_USEC_PER_SEC;
    g_autoptr(GError) error = NULL;

    if (config->port_base == 0) {
        gw_log_device(G_LOG_LEVEL_WARNING, NULL, vm, NULL,
                      "share of vm \"%s\" not restored: SPICE ingress is off now", vm);
        return FALSE;
    }
    if (user == NULL || ticket == NULL || ticket[0] == '\0' ||
        strlen(ticket) > GW_SHARE_REGISTRY_MAX_TICKET || !policy_vm_name_is_valid(vm) ||
        port < config->port_base || port >= (gint64)config->port_base + config->ports ||
        expires < 0 || ends < 0) {
        gw_log_device(G_LOG_LEVEL_WARNING, NULL, vm, NULL,
                      "share of vm \"%s\" not restored: its saved entry is malformed or its "
                      "port is outside spice-port-base/spice-ports",
                      vm);
        return FALSE;
    }
    if (expires != 0 && expires <= now) {
        gw_log_device(G_LOG_LEVEL_MESSAGE, NULL, vm, NULL,
                      "share of vm \"%s\" not restored: its ticket expired unused", vm);
        return FALSE;
    }
    if (expires == 0 && ends != 0 && ends <= now) {
        gw_log_device(G_LOG_LEVEL_MESSAGE, NULL, vm, NULL,
                      "share of vm \"%s\" not restored: its share-max-life is over", vm);
        return FALSE;
    }
    if (expires == 0 && ends == 0)
        ends = now + config->max_life_s; /* saved before share-max-life existed */
    if (g_hash_table_contains(registry->shares, vm) ||
        gw_share_registry_port_used(registry, (guint)port))
        return FALSE;
    if (gw_share_registry_start(registry, vm, user, expires != 0 ? (guint)(expires - now) : 0,
                                ticket, (guint16)port, expires == 0, ends, &error) == NULL) {
        gw_log_device(G_LOG_LEVEL_WARNING, NULL, vm, NULL, "share of vm \"%s\" not restored: %s",
                      vm, error->message);
        return FALSE;
    }
    gw_log_device(G_LOG_LEVEL_MESSAGE, NULL, vm, NULL,
                  "share vm \"%s\" user \"%s\" restored on SPICE port %u", vm, user, (guint)port);
    registry->ops->event(GW_SHARE_REGISTRY_SHARE, g_hash_table_lookup(registry->shares, vm),
                         "usbgwd (restored from the state file)", user, NULL, NULL,
                         registry->user_data);
    return TRUE;
}

void
gw_share_registry_vm_started(GwShareRegistry *registry, const gchar *vm)
{
    GwShare *share = g_hash_table_lookup(registry->shares, vm);
    if (share != NULL)
        gw_share_registry_plug(registry, share, FALSE);
}
