/* Atomic JSON state file. */
#include "gw-state.h"

#include <errno.h>
#include <gio/gio.h>
#include <glib/gstdio.h>

/* A state file larger than this is not ours. */
#define GW_STATE_MAX_SIZE (16 * 1024 * 1024)

static void
gw_state_set_aside(const gchar *path, const gchar *why)
{
    g_autoptr(GDateTime) now = g_date_time_new_now_utc();
    g_autofree gchar *stamp = g_date_time_format(now, "%Y%m%dT%H%M%S");
    g_autofree gchar *aside = g_strdup_printf("%s.corrupt-%s", path, stamp);

    g_warning("state %s: %s; moved to %s, starting with an empty state", path, why, aside);
    if (g_rename(path, aside) != 0)
        g_warning("cannot move %s aside: %s", path, g_strerror(errno));
}

JsonObject *
gw_state_load(const gchar *path)
{
    g_autofree gchar *data = NULL;
    gsize len = 0;
    g_autoptr(GError) error = NULL;
    g_autoptr(JsonParser) parser = json_parser_new_immutable();
    JsonNode *root;
    JsonObject *obj;

    if (!g_file_get_contents(path, &data, &len, &error)) {
        if (!g_error_matches(error, G_FILE_ERROR, G_FILE_ERROR_NOENT))
            g_warning("cannot read state %s: %s", path, error->message);
        return json_object_new();
    }
    if (len > GW_STATE_MAX_SIZE) {
        gw_state_set_aside(path, "too large");
        return json_object_new();
    }
    if (!json_parser_load_from_data(parser, data, (gssize)len, &error)) {
        gw_state_set_aside(path, error->message);
        return json_object_new();
    }
    root = json_parser_get_root(parser);
    if (root == NULL || !JSON_NODE_HOLDS_OBJECT(root)) {
        gw_state_set_aside(path, "not a JSON object");
        return json_object_new();
    }
    obj = json_node_get_object(root);
    if (json_object_get_int_member_with_default(obj, "version", 0) != GW_STATE_VERSION) {
        gw_state_set_aside(path, "unknown version");
        return json_object_new();
    }
    return json_object_ref(obj);
}

gboolean
gw_state_save(const gchar *path, JsonObject *state, GError **error)
{
    g_autoptr(JsonGenerator) generator = json_generator_new();
    g_autoptr(JsonNode) root = json_node_init_object(json_node_alloc(), state);
    g_autofree gchar *dir = g_path_get_dirname(path);
    g_autofree gchar *text = NULL;
    gsize len = 0;

    json_object_set_int_member(state, "version", GW_STATE_VERSION);
    json_generator_set_root(generator, root);
    json_generator_set_pretty(generator, TRUE);
    text = json_generator_to_data(generator, &len);
    if (g_mkdir_with_parents(dir, 0750) != 0) {
        int saved = errno;
        g_set_error(error, G_IO_ERROR, g_io_error_from_errno(saved), "cannot create %s: %s", dir,
                    g_strerror(saved));
        return FALSE;
    }
    return g_file_set_contents_full(path, text, (gssize)len,
                                    G_FILE_SET_CONTENTS_CONSISTENT | G_FILE_SET_CONTENTS_DURABLE,
                                    0600, error);
}
