/* NSS lookups with the reentrant calls. See gw-users.h. */
#include "gw-users.h"

#include <errno.h>
#include <grp.h>
#include <pwd.h>
#include <unistd.h>

/* Buffer for getpwnam_r/getgrgid_r; doubled on ERANGE up to the limit. */
#define GW_USERS_BUFFER_START 1024
#define GW_USERS_BUFFER_MAX   (1024 * 1024)
/* Most groups asked of getgrouplist at once; grown when a user has more. */
#define GW_USERS_GROUPS_START 64

void
gw_user_free(GwUser *user)
{
    if (user == NULL)
        return;
    g_free(user->name);
    g_strfreev(user->groups);
    g_free(user);
}

static gchar *
gw_users_group_name(gid_t gid)
{
    gsize size = GW_USERS_BUFFER_START;
    for (;;) {
        g_autofree gchar *buffer = g_malloc(size);
        struct group group, *found = NULL;
        int rc = getgrgid_r(gid, &group, buffer, size, &found);
        if (rc == ERANGE && size < GW_USERS_BUFFER_MAX) {
            size *= 2;
            continue;
        }
        return rc == 0 && found != NULL ? g_strdup(found->gr_name) : NULL;
    }
}

GwUser *
gw_users_lookup(const gchar *name, GError **error)
{
    gsize size = GW_USERS_BUFFER_START;
    g_autofree gid_t *gids = NULL;
    g_autoptr(GPtrArray) names = NULL;
    int count = GW_USERS_GROUPS_START;
    GwUser *user;

    for (;;) {
        g_autofree gchar *buffer = g_malloc(size);
        struct passwd pw, *found = NULL;
        int rc = getpwnam_r(name, &pw, buffer, size, &found);
        if (rc == ERANGE && size < GW_USERS_BUFFER_MAX) {
            size *= 2;
            continue;
        }
        if (rc != 0 || found == NULL) {
            g_set_error(error, G_IO_ERROR, G_IO_ERROR_NOT_FOUND, "user '%s' is not known here%s%s",
                        name, rc != 0 ? ": " : "", rc != 0 ? g_strerror(rc) : "");
            return NULL;
        }
        user = g_new0(GwUser, 1);
        user->name = g_strdup(found->pw_name);
        user->uid = found->pw_uid;
        user->gid = found->pw_gid;
        break;
    }
    gids = g_new(gid_t, count);
    if (getgrouplist(name, user->gid, gids, &count) < 0) {
        gids = g_renew(gid_t, gids, count);
        if (getgrouplist(name, user->gid, gids, &count) < 0)
            count = 0;
    }
    names = g_ptr_array_new();
    for (int i = 0; i < count; i++) {
        gchar *group = gw_users_group_name(gids[i]);
        if (group != NULL)
            g_ptr_array_add(names, group);
    }
    g_ptr_array_add(names, NULL);
    user->groups = (gchar **)g_ptr_array_free(g_steal_pointer(&names), FALSE);
    return user;
}

static void
gw_users_lookup_thread(GTask *task, gpointer source, gpointer task_data, GCancellable *cancellable)
{
    GError *error = NULL;
    GwUser *user = gw_users_lookup(task_data, &error);
    if (user == NULL)
        g_task_return_error(task, error);
    else
        g_task_return_pointer(task, user, (GDestroyNotify)gw_user_free);
}

void
gw_users_lookup_async(const gchar *name, GCancellable *cancellable, GAsyncReadyCallback callback,
                      gpointer user_data)
{
    g_autoptr(GTask) task = g_task_new(NULL, cancellable, callback, user_data);
    g_task_set_source_tag(task, gw_users_lookup_async);
    g_task_set_task_data(task, g_strdup(name), g_free);
    g_task_run_in_thread(task, gw_users_lookup_thread);
}

GwUser *
gw_users_lookup_finish(GAsyncResult *result, GError **error)
{
    return g_task_propagate_pointer(G_TASK(result), error);
}

gchar *
gw_users_name_of(uid_t uid)
{
    gsize size = GW_USERS_BUFFER_START;
    for (;;) {
        g_autofree gchar *buffer = g_malloc(size);
        struct passwd pw, *found = NULL;
        int rc = getpwuid_r(uid, &pw, buffer, size, &found);
        if (rc == ERANGE && size < GW_USERS_BUFFER_MAX) {
            size *= 2;
            continue;
        }
        return rc == 0 && found != NULL ? g_strdup(found->pw_name) : NULL;
    }
}

gboolean
gw_users_group_id(const gchar *name, gid_t *gid, GError **error)
{
    gsize size = GW_USERS_BUFFER_START;
    for (;;) {
        g_autofree gchar *buffer = g_malloc(size);
        struct group group, *found = NULL;
        int rc = getgrnam_r(name, &group, buffer, size, &found);
        if (rc == ERANGE && size < GW_USERS_BUFFER_MAX) {
            size *= 2;
            continue;
        }
        if (rc != 0 || found == NULL) {
            g_set_error(error, G_IO_ERROR, G_IO_ERROR_NOT_FOUND, "group '%s' is not known here",
                        name);
            return FALSE;
        }
        *gid = found->gr_gid;
        return TRUE;
    }
}
