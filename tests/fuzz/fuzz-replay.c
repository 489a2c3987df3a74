/* Replays inputs through LLVMFuzzerTestOneInput without libFuzzer, so every
 * build (gcc included) runs the fuzz target over the stored corpus:
 *
 *   fuzz-policy-replay DIR_OR_FILE…
 *
 * Directories are walked recursively, in name order. Exits 1 when an
 * argument cannot be read or names no input at all (a wrong path would
 * otherwise pass silently). */
#include <glib.h>
#include <stdint.h>
#include <stdlib.h>

#include "fuzz-common.h"

static gint
fuzz_replay_compare_names(gconstpointer a, gconstpointer b)
{
    return g_strcmp0(*(const gchar *const *)a, *(const gchar *const *)b);
}

static gboolean
fuzz_replay_path(const gchar *path, guint *count)
{
    g_autoptr(GError) error = NULL;

    if (g_file_test(path, G_FILE_TEST_IS_DIR)) {
        g_autoptr(GDir) dir = g_dir_open(path, 0, &error);
        g_autoptr(GPtrArray) names = g_ptr_array_new_with_free_func(g_free);
        const gchar *name;
        gboolean ok = TRUE;

        if (dir == NULL) {
            g_printerr("fuzz-replay: %s\n", error->message);
            return FALSE;
        }
        while ((name = g_dir_read_name(dir)) != NULL)
            g_ptr_array_add(names, g_strdup(name));
        g_ptr_array_sort(names, fuzz_replay_compare_names);
        for (guint i = 0; i < names->len; i++) {
            g_autofree gchar *child = g_build_filename(path, g_ptr_array_index(names, i), NULL);
            ok = fuzz_replay_path(child, count) && ok;
        }
        return ok;
    }

    g_autofree gchar *data = NULL;
    gsize len = 0;
    if (!g_file_get_contents(path, &data, &len, &error)) {
        g_printerr("fuzz-replay: %s\n", error->message);
        return FALSE;
    }
    g_print("%s (%" G_GSIZE_FORMAT " bytes)\n", path, len);
    (void)LLVMFuzzerTestOneInput((const uint8_t *)data, len);
    (*count)++;
    return TRUE;
}

int
main(int argc, char **argv)
{
    guint count = 0;
    gboolean ok = TRUE;

    if (argc < 2) {
        g_printerr("Usage: %s DIR_OR_FILE…\n", argv[0]);
        return EXIT_FAILURE;
    }
    for (gint i = 1; i < argc; i++)
        ok = fuzz_replay_path(argv[i], &count) && ok;
    g_print("replayed %u input%s\n", count, count == 1 ? "" : "s");
    return ok && count > 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
