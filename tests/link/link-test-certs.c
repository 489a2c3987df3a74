/* The certificates of the gateway-link tests (link-test-certs.h). */
#include "link-test-certs.h"

gchar *
link_test_certs_make(const gchar *prefix, const gchar *const *names)
{
    const gchar *script = g_getenv("LINK_MAKE_CERTS");
    g_autoptr(GError) error = NULL;
    g_autoptr(GPtrArray) args = g_ptr_array_new();
    g_autofree gchar *template = g_strdup_printf("%s-XXXXXX", prefix);
    gchar *dir;
    gint status;

    if (script == NULL) {
        g_printerr("LINK_MAKE_CERTS (tests/link/make-certs.sh) is not set\n");
        return NULL;
    }
    dir = g_dir_make_tmp(template, &error);
    g_assert_no_error(error);
    g_ptr_array_add(args, (gpointer) "bash");
    g_ptr_array_add(args, (gpointer)script);
    g_ptr_array_add(args, dir);
    for (guint i = 0; names[i] != NULL; i++)
        g_ptr_array_add(args, (gpointer)names[i]);
    g_ptr_array_add(args, NULL);
    g_spawn_sync(NULL, (gchar **)args->pdata, NULL, G_SPAWN_SEARCH_PATH, NULL, NULL, NULL, NULL,
                 &status, &error);
    g_assert_no_error(error);
    g_spawn_check_wait_status(status, &error);
    g_assert_no_error(error);
    return dir;
}

void
link_test_certs_remove(const gchar *dir)
{
    const gchar *args[] = {"rm", "-rf", dir, NULL};

    g_spawn_sync(NULL, (gchar **)args, NULL, G_SPAWN_SEARCH_PATH, NULL, NULL, NULL, NULL, NULL,
                 NULL);
}
