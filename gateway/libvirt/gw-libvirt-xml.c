/* Domain XML: the unix redirdevs of a live domain, and the aliases usbgwd
 * may give. GMarkup, no libvirt call: fuzzed and unit-tested alone. */
#include "gw-libvirt-private.h"

#include <string.h>

/* ---- XML ---------------------------------------------------------------- */

/* Element depths in a domain document. */
enum {
    GW_LIBVIRT_DEPTH_DOMAIN = 1,
    GW_LIBVIRT_DEPTH_DEVICES = 2,
    GW_LIBVIRT_DEPTH_DEVICE = 3,
    GW_LIBVIRT_DEPTH_DEVICE_CHILD = 4,
};

typedef struct {
    GPtrArray *paths;     /* not owned */
    GPtrArray *aliases;   /* not owned, nullable */
    guint depth;          /* of the element being read; 0 outside the root */
    gboolean in_domain;   /* the root element is <domain> */
    gboolean in_devices;  /* inside <domain><devices> */
    gboolean in_redirdev; /* inside a <redirdev type='unix'> there */
    gchar *path;          /* owned, nullable: its <source path> */
    gchar *alias;         /* owned, nullable: its <alias name> */
} GwLibvirtXmlParse;

static const gchar *
gw_libvirt_xml_attr(const gchar **names, const gchar **values, const gchar *wanted)
{
    for (guint i = 0; names[i] != NULL; i++) {
        if (g_str_equal(names[i], wanted))
            return values[i];
    }
    return NULL;
}

static void
gw_libvirt_xml_start(GMarkupParseContext *context, const gchar *element, const gchar **names,
                     const gchar **values, gpointer user_data, GError **error)
{
    GwLibvirtXmlParse *parse = user_data;
    const gchar *value;

    parse->depth++;
    switch (parse->depth) {
    case GW_LIBVIRT_DEPTH_DOMAIN:
        parse->in_domain = g_str_equal(element, "domain");
        break;
    case GW_LIBVIRT_DEPTH_DEVICES:
        parse->in_devices = parse->in_domain && g_str_equal(element, "devices");
        break;
    case GW_LIBVIRT_DEPTH_DEVICE:
        value = gw_libvirt_xml_attr(names, values, "type");
        parse->in_redirdev =
            parse->in_devices && g_str_equal(element, "redirdev") && g_strcmp0(value, "unix") == 0;
        break;
    case GW_LIBVIRT_DEPTH_DEVICE_CHILD:
        if (!parse->in_redirdev)
            break;
        if (g_str_equal(element, "source") &&
            (value = gw_libvirt_xml_attr(names, values, "path")) != NULL) {
            g_free(parse->path);
            parse->path = g_strdup(value);
        } else if (g_str_equal(element, "alias") &&
                   (value = gw_libvirt_xml_attr(names, values, "name")) != NULL) {
            g_free(parse->alias);
            parse->alias = g_strdup(value);
        }
        break;
    default:
        break;
    }
}

static void
gw_libvirt_xml_end(GMarkupParseContext *context, const gchar *element, gpointer user_data,
                   GError **error)
{
    GwLibvirtXmlParse *parse = user_data;

    switch (parse->depth) {
    case GW_LIBVIRT_DEPTH_DEVICES:
        parse->in_devices = FALSE;
        break;
    case GW_LIBVIRT_DEPTH_DEVICE:
        if (parse->in_redirdev && parse->path != NULL) {
            g_ptr_array_add(parse->paths, g_steal_pointer(&parse->path));
            if (parse->aliases != NULL)
                g_ptr_array_add(parse->aliases, parse->alias != NULL
                                                    ? g_steal_pointer(&parse->alias)
                                                    : g_strdup(""));
        }
        g_clear_pointer(&parse->path, g_free);
        g_clear_pointer(&parse->alias, g_free);
        parse->in_redirdev = FALSE;
        break;
    default:
        break;
    }
    parse->depth--;
}

gboolean
gw_libvirt_parse_redirdevs(const gchar *xml, GPtrArray *paths, GPtrArray *aliases, GError **error)
{
    static const GMarkupParser parser = {
        .start_element = gw_libvirt_xml_start,
        .end_element = gw_libvirt_xml_end,
    };
    GwLibvirtXmlParse parse = {.paths = paths, .aliases = aliases};
    g_autoptr(GMarkupParseContext) context = g_markup_parse_context_new(&parser, 0, &parse, NULL);
    gboolean ok = g_markup_parse_context_parse(context, xml, -1, error) &&
                  g_markup_parse_context_end_parse(context, error);

    g_free(parse.path);
    g_free(parse.alias);
    if (ok && !parse.in_domain) {
        g_set_error_literal(error, G_MARKUP_ERROR, G_MARKUP_ERROR_INVALID_CONTENT,
                            "the document is not a <domain>");
        return FALSE;
    }
    return ok;
}

gboolean
gw_libvirt_alias_is_valid(const gchar *alias)
{
    const gchar *rest;

    if (alias == NULL || !g_str_has_prefix(alias, GW_LIBVIRT_USER_ALIAS_PREFIX))
        return FALSE;
    rest = alias + strlen(GW_LIBVIRT_USER_ALIAS_PREFIX);
    if (*rest == '\0')
        return FALSE;
    for (; *rest != '\0'; rest++) {
        if (!g_ascii_isalnum(*rest) && *rest != '-' && *rest != '_')
            return FALSE;
    }
    return TRUE;
}
