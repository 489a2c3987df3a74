/* What every fuzz target here shares: the libFuzzer entry point (also
 * called by fuzz-replay.c) and the invariant check. */
#pragma once

#include <glib.h>
#include <glib/gstdio.h>
#include <stdint.h>
#include <stdlib.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* A broken invariant is a finding: abort so the fuzzer keeps the input. */
#define FUZZ_CHECK(cond)                                                                           \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            g_printerr("%s:%d: invariant broken: %s\n", __FILE__, __LINE__, #cond);                \
            abort();                                                                               \
        }                                                                                          \
    } while (0)

/* A GLogFunc for g_log_set_default_handler(): a warning, a critical or an
 * error is a finding (printed, then abort); other messages are dropped. */
static inline void
fuzz_log_handler(const gchar *domain, GLogLevelFlags level, const gchar *message, gpointer data)
{
    (void)data;
    if (level & (G_LOG_LEVEL_CRITICAL | G_LOG_LEVEL_ERROR | G_LOG_LEVEL_WARNING)) {
        g_printerr("%s: %s\n", domain, message);
        abort();
    }
}

/* Whether @text is valid UTF-8 without control characters: an error
 * message or a name that reaches logs as it is. */
static inline gboolean
fuzz_is_printable(const gchar *text)
{
    for (const guchar *p = (const guchar *)text; *p != '\0'; p++) {
        if (*p < 0x20 || *p == 0x7f)
            return FALSE;
    }
    return g_utf8_validate(text, -1, NULL);
}

/* Removes @path and, for a directory, everything below it: the scratch
 * directories the harnesses that need files make (called at exit). */
static inline void
fuzz_remove_tree(const gchar *path)
{
    GDir *dir = g_file_test(path, G_FILE_TEST_IS_SYMLINK) ? NULL : g_dir_open(path, 0, NULL);
    const gchar *name;

    while (dir != NULL && (name = g_dir_read_name(dir)) != NULL) {
        gchar *child = g_build_filename(path, name, NULL);
        fuzz_remove_tree(child);
        g_free(child);
    }
    if (dir != NULL)
        g_dir_close(dir);
    g_remove(path);
}
