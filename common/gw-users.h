/* Users and groups (NSS: files, LDAP, sssd …) for usbgwd, in one place.
 * An NSS lookup may block for as long as a directory server takes, so
 * what runs per event goes to a thread (gw_users_lookup_async); the
 * synchronous calls are for start-up and for admin commands.
 *
 * Threading: every function may be called from any thread; the async
 * callback runs on the caller's thread-default main context. */
#pragma once

#include <gio/gio.h>

G_BEGIN_DECLS

/* What NSS knows of a user. */
typedef struct {
    gchar *name; /* owned */
    uid_t uid;
    gid_t gid;      /* primary group */
    gchar **groups; /* owned, NULL-terminated: names of every group (primary too) */
} GwUser;

void gw_user_free(GwUser *user);
G_DEFINE_AUTOPTR_CLEANUP_FUNC(GwUser, gw_user_free)

/* NULL with G_IO_ERROR_NOT_FOUND when NSS does not know @name. */
GwUser *gw_users_lookup(const gchar *name, GError **error) G_GNUC_WARN_UNUSED_RESULT;
/* The same in a worker thread. */
void gw_users_lookup_async(const gchar *name, GCancellable *cancellable,
                           GAsyncReadyCallback callback, gpointer user_data);
GwUser *gw_users_lookup_finish(GAsyncResult *result, GError **error) G_GNUC_WARN_UNUSED_RESULT;

/* The name of @uid, or NULL. */
gchar *gw_users_name_of(uid_t uid) G_GNUC_WARN_UNUSED_RESULT;
/* The id of group @name; FALSE with G_IO_ERROR_NOT_FOUND. */
gboolean gw_users_group_id(const gchar *name, gid_t *gid, GError **error) G_GNUC_WARN_UNUSED_RESULT;

G_END_DECLS
