/* Domain XML: the unix redirdevs and USB controllers of a domain, the
 * aliases usbgwd may give, usbgw's metadata element (a VM's wishes) and the
 * USB controller usbgwd adds to a definition without one. GMarkup, no
 * libvirt call: fuzzed and unit-tested alone. */
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
    GPtrArray *paths;      /* not owned */
    GPtrArray *aliases;    /* not owned, nullable */
    GPtrArray *usb_models; /* not owned, nullable: model of each <controller type='usb'> */
    guint depth;           /* of the element being read; 0 outside the root */
    gboolean in_domain;    /* the root element is <domain> */
    gboolean in_devices;   /* inside <domain><devices> */
    gboolean in_redirdev;  /* inside a <redirdev type='unix'> there */
    gchar *path;           /* owned, nullable: its <source path> */
    gchar *alias;          /* owned, nullable: its <alias name> */
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
        if (parse->in_devices && parse->usb_models != NULL && g_str_equal(element, "controller") &&
            g_strcmp0(value, "usb") == 0) {
            const gchar *model = gw_libvirt_xml_attr(names, values, "model");
            g_ptr_array_add(parse->usb_models, g_strdup(model != NULL ? model : ""));
        }
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

/* GMarkup quotes a byte of a bad name in its message, which can cut a
 * multi-byte character: the message goes to logs, the audit trail and
 * JSON replies, so it is made valid UTF-8 here. */
static void
gw_libvirt_xml_error_make_valid(GError *error)
{
    if (error == NULL || g_utf8_validate(error->message, -1, NULL))
        return;
    g_autofree gchar *valid = g_utf8_make_valid(error->message, -1);
    g_free(error->message);
    error->message = g_steal_pointer(&valid);
}

gboolean
gw_libvirt_parse_redirdevs(const gchar *xml, GPtrArray *paths, GPtrArray *aliases, GError **error)
{
    return gw_libvirt_parse_domain(xml, paths, aliases, NULL, error);
}

gboolean
gw_libvirt_parse_domain(const gchar *xml, GPtrArray *paths, GPtrArray *aliases,
                        GPtrArray *usb_models, GError **error)
{
    static const GMarkupParser parser = {
        .start_element = gw_libvirt_xml_start,
        .end_element = gw_libvirt_xml_end,
    };
    g_autoptr(GPtrArray) unused = g_ptr_array_new_with_free_func(g_free);
    GwLibvirtXmlParse parse = {
        .paths = paths != NULL ? paths : unused, .aliases = aliases, .usb_models = usb_models};
    g_autoptr(GMarkupParseContext) context = g_markup_parse_context_new(&parser, 0, &parse, NULL);
    gboolean ok = g_markup_parse_context_parse(context, xml, -1, error) &&
                  g_markup_parse_context_end_parse(context, error);

    if (!ok && error != NULL)
        gw_libvirt_xml_error_make_valid(*error);
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

/* ---- USB controllers ---------------------------------------------------- */

const gchar *
gw_libvirt_usb_bus(const GPtrArray *usb_models)
{
    /* libvirt lists QEMU's USB controllers, the implicit one too; other
     * drivers may list none: then QEMU (or the driver) has the last word */
    if (usb_models->len == 0)
        return "unlisted";
    for (guint i = 0; i < usb_models->len; i++) {
        const gchar *model = g_ptr_array_index(usb_models, i);
        /* no model: the machine type's default controller */
        if (g_strcmp0(model, "none") != 0)
            return *model != '\0' ? model : "default";
    }
    return NULL;
}

/* The attributes of the start tag @tag ("<controller …>" or "…/>"), read
 * with GMarkup. */
typedef struct {
    gchar *type;
    gchar *model;
    gchar *index;
} GwLibvirtXmlController;

static void
gw_libvirt_xml_controller_clear(GwLibvirtXmlController *controller)
{
    g_free(controller->type);
    g_free(controller->model);
    g_free(controller->index);
}

G_DEFINE_AUTO_CLEANUP_CLEAR_FUNC(GwLibvirtXmlController, gw_libvirt_xml_controller_clear)

static void
gw_libvirt_xml_controller_start(GMarkupParseContext *context, const gchar *element,
                                const gchar **names, const gchar **values, gpointer user_data,
                                GError **error)
{
    GwLibvirtXmlController *controller = user_data;

    if (controller->type != NULL)
        return;
    controller->type = g_strdup(gw_libvirt_xml_attr(names, values, "type"));
    controller->model = g_strdup(gw_libvirt_xml_attr(names, values, "model"));
    controller->index = g_strdup(gw_libvirt_xml_attr(names, values, "index"));
}

static gboolean
gw_libvirt_xml_read_tag(const gchar *tag, gsize len, GwLibvirtXmlController *controller)
{
    static const GMarkupParser parser = {.start_element = gw_libvirt_xml_controller_start};
    g_autoptr(GMarkupParseContext) context =
        g_markup_parse_context_new(&parser, 0, controller, NULL);
    g_autofree gchar *text = NULL;

    if (len >= 2 && tag[len - 2] == '/')
        text = g_strndup(tag, len);
    else
        text = g_strdup_printf("%.*s</controller>", (int)len, tag);
    return g_markup_parse_context_parse(context, text, -1, NULL) &&
           g_markup_parse_context_end_parse(context, NULL);
}

gchar *
gw_libvirt_add_usb_controller(const gchar *xml, GError **error)
{
    g_autoptr(GPtrArray) models = g_ptr_array_new_with_free_func(g_free);
    g_autoptr(GRegex) tags = NULL;
    g_autoptr(GMatchInfo) match = NULL;
    g_autoptr(GString) out = NULL;
    g_autoptr(GError) parse_error = NULL;
    const gchar *devices;
    gint start = -1, end = -1;
    gboolean found = FALSE;

    if (!gw_libvirt_parse_domain(xml, NULL, NULL, models, &parse_error)) {
        g_set_error(error, G_MARKUP_ERROR, G_MARKUP_ERROR_INVALID_CONTENT,
                    "cannot read the domain XML: %s", parse_error->message);
        return NULL;
    }
    if (gw_libvirt_usb_bus(models) != NULL) {
        g_set_error(error, G_IO_ERROR, G_IO_ERROR_EXISTS,
                    "the definition has a USB controller already (%s)", gw_libvirt_usb_bus(models));
        return NULL;
    }
    out = g_string_new(xml);
    /* the <controller type='usb' model='none'/> libvirt writes: replaced,
     * keeping its index (a second USB controller next to it is refused) */
    tags = g_regex_new("<controller\\b[^>]*>", G_REGEX_OPTIMIZE, 0, NULL);
    /* from the domain's own <devices> on (libvirt writes it after
     * <metadata>, whose elements other tools choose) */
    devices = g_strrstr(xml, "<devices>");
    g_regex_match_full(tags, xml, -1, devices != NULL ? devices - xml : 0, 0, &match, NULL);
    while (!found && g_match_info_matches(match)) {
        g_auto(GwLibvirtXmlController) controller = {0};
        g_match_info_fetch_pos(match, 0, &start, &end);
        if (gw_libvirt_xml_read_tag(xml + start, (gsize)(end - start), &controller) &&
            g_strcmp0(controller.type, "usb") == 0) {
            found = TRUE;
            if (xml[end - 2] != '/') {
                const gchar *close = strstr(xml + end, "</controller>");
                if (close == NULL) {
                    g_set_error_literal(error, G_MARKUP_ERROR, G_MARKUP_ERROR_INVALID_CONTENT,
                                        "the USB controller element is not closed");
                    return NULL;
                }
                end = (gint)(close - xml) + (gint)strlen("</controller>");
            }
            g_string_erase(out, start, end - start);
            g_autofree gchar *element = g_markup_printf_escaped(
                "<controller type='usb' index='%s' model='" GW_LIBVIRT_USB_CONTROLLER_MODEL "'/>",
                controller.index != NULL ? controller.index : "0");
            g_string_insert(out, start, element);
        }
        g_match_info_next(match, NULL);
    }
    if (!found) {
        /* no USB controller element at all: one more device */
        const gchar *devices_end = g_strrstr(xml, "</devices>");
        if (devices_end == NULL) {
            g_set_error_literal(error, G_MARKUP_ERROR, G_MARKUP_ERROR_INVALID_CONTENT,
                                "the domain XML has no <devices> element");
            return NULL;
        }
        g_string_insert(out, devices_end - xml,
                        "  <controller type='usb' index='0' model='" GW_LIBVIRT_USB_CONTROLLER_MODEL
                        "'/>\n  ");
    }
    /* what libvirt will be given must say what was meant */
    g_ptr_array_set_size(models, 0);
    if (!gw_libvirt_parse_domain(out->str, NULL, NULL, models, &parse_error) ||
        g_strcmp0(gw_libvirt_usb_bus(models), GW_LIBVIRT_USB_CONTROLLER_MODEL) != 0) {
        g_set_error_literal(error, G_MARKUP_ERROR, G_MARKUP_ERROR_INVALID_CONTENT,
                            "the edited domain XML does not have the new USB controller");
        return NULL;
    }
    return g_string_free(g_steal_pointer(&out), FALSE);
}

/* ---- usbgw's metadata ------------------------------------------------------
 *   <usbgw:devices xmlns:usbgw="http://usbgw.org/xmlns/usbgw/1.0">
 *     <usbgw:device pool="cad"/>
 *     <usbgw:device id="0529:0001" serial="A1"/>
 *   </usbgw:devices>
 * libvirt hands over the element of its namespace with whatever prefix the
 * writer chose; the children must have the root's. */

typedef struct {
    GPtrArray *wishes; /* not owned: PolicyWish */
    guint depth;
    gchar *prefix; /* owned: the root's prefix with its ':', or "" */
    guint count;   /* <device> elements read */
} GwLibvirtMetaParse;

static gboolean
gw_libvirt_meta_is_xmlns(const gchar *name)
{
    return g_str_equal(name, "xmlns") || g_str_has_prefix(name, "xmlns:");
}

/* A value an attribute may have: non-empty, at most
 * GW_LIBVIRT_METADATA_MAX_VALUE bytes, no control characters. */
static gboolean
gw_libvirt_meta_value_is_valid(const gchar *value, GError **error, guint count, const gchar *name)
{
    gsize len = strlen(value);

    if (len == 0) {
        g_set_error(error, G_MARKUP_ERROR, G_MARKUP_ERROR_INVALID_CONTENT,
                    "<device> #%u: attribute '%s' is empty", count, name);
        return FALSE;
    }
    if (len > GW_LIBVIRT_METADATA_MAX_VALUE) {
        g_set_error(error, G_MARKUP_ERROR, G_MARKUP_ERROR_INVALID_CONTENT,
                    "<device> #%u: attribute '%s' has %zu bytes, more than %d", count, name, len,
                    GW_LIBVIRT_METADATA_MAX_VALUE);
        return FALSE;
    }
    for (const guchar *c = (const guchar *)value; *c != '\0'; c++) {
        if (*c < 0x20 || *c == 0x7f) {
            g_set_error(error, G_MARKUP_ERROR, G_MARKUP_ERROR_INVALID_CONTENT,
                        "<device> #%u: attribute '%s' has a control character", count, name);
            return FALSE;
        }
    }
    return TRUE;
}

static void
gw_libvirt_meta_device(GwLibvirtMetaParse *parse, const gchar **names, const gchar **values,
                       GError **error)
{
    const gchar *pool = NULL, *id = NULL, *serial = NULL;
    guint count = ++parse->count;
    PolicyWish *wish;

    if (count > GW_LIBVIRT_METADATA_MAX_WISHES) {
        g_set_error(error, G_MARKUP_ERROR, G_MARKUP_ERROR_INVALID_CONTENT,
                    "more than %d <device> elements", GW_LIBVIRT_METADATA_MAX_WISHES);
        return;
    }
    for (guint i = 0; names[i] != NULL; i++) {
        if (g_str_equal(names[i], "pool"))
            pool = values[i];
        else if (g_str_equal(names[i], "id"))
            id = values[i];
        else if (g_str_equal(names[i], "serial"))
            serial = values[i];
        else if (!gw_libvirt_meta_is_xmlns(names[i])) {
            g_set_error(error, G_MARKUP_ERROR, G_MARKUP_ERROR_UNKNOWN_ATTRIBUTE,
                        "<device> #%u: unknown attribute '%s' (pool, id or serial)", count,
                        names[i]);
            return;
        }
        if (!gw_libvirt_meta_is_xmlns(names[i]) &&
            !gw_libvirt_meta_value_is_valid(values[i], error, count, names[i]))
            return;
    }
    if ((pool == NULL) == (id == NULL)) {
        g_set_error(error, G_MARKUP_ERROR, G_MARKUP_ERROR_MISSING_ATTRIBUTE,
                    "<device> #%u: needs either pool=\"NAME\" or id=\"VID:PID\"", count);
        return;
    }
    if (pool != NULL && serial != NULL) {
        g_set_error(error, G_MARKUP_ERROR, G_MARKUP_ERROR_INVALID_CONTENT,
                    "<device> #%u: serial belongs with id, not with pool", count);
        return;
    }
    if (pool != NULL) {
        wish = policy_wish_new_pool(pool);
    } else {
        wish = policy_wish_new_device(id, serial);
        if (wish == NULL) {
            g_set_error(error, G_MARKUP_ERROR, G_MARKUP_ERROR_INVALID_CONTENT,
                        "<device> #%u: id \"%s\" is not VID:PID (like 0529:0001 or 0529:*)", count,
                        id);
            return;
        }
    }
    g_ptr_array_add(parse->wishes, wish);
}

static void
gw_libvirt_meta_start(GMarkupParseContext *context, const gchar *element, const gchar **names,
                      const gchar **values, gpointer user_data, GError **error)
{
    GwLibvirtMetaParse *parse = user_data;
    const gchar *colon = strchr(element, ':');
    const gchar *local = colon != NULL ? colon + 1 : element;

    parse->depth++;
    if (parse->depth == 1) {
        if (parse->prefix != NULL) {
            g_set_error(error, G_MARKUP_ERROR, G_MARKUP_ERROR_INVALID_CONTENT,
                        "<%s> after the <devices> element: one element only", element);
            return;
        }
        if (!g_str_equal(local, "devices")) {
            g_set_error(error, G_MARKUP_ERROR, G_MARKUP_ERROR_UNKNOWN_ELEMENT,
                        "the root element is <%s>, not <devices>", element);
            return;
        }
        parse->prefix = g_strndup(element, (gsize)(local - element));
        for (guint i = 0; names[i] != NULL; i++) {
            if (!gw_libvirt_meta_is_xmlns(names[i])) {
                g_set_error(error, G_MARKUP_ERROR, G_MARKUP_ERROR_UNKNOWN_ATTRIBUTE,
                            "<devices> takes no attribute '%s'", names[i]);
                return;
            }
        }
        return;
    }
    if (parse->depth > 2) {
        g_set_error(error, G_MARKUP_ERROR, G_MARKUP_ERROR_UNKNOWN_ELEMENT,
                    "<%s> inside <device> #%u: a device has attributes only", element,
                    parse->count);
        return;
    }
    if (!g_str_has_prefix(element, parse->prefix) || !g_str_equal(local, "device") ||
        (gsize)(local - element) != strlen(parse->prefix)) {
        g_set_error(error, G_MARKUP_ERROR, G_MARKUP_ERROR_UNKNOWN_ELEMENT,
                    "<%s> in <devices>: only <%sdevice> elements may be there", element,
                    parse->prefix);
        return;
    }
    gw_libvirt_meta_device(parse, names, values, error);
}

static void
gw_libvirt_meta_end(GMarkupParseContext *context, const gchar *element, gpointer user_data,
                    GError **error)
{
    GwLibvirtMetaParse *parse = user_data;
    parse->depth--;
}

static void
gw_libvirt_meta_text(GMarkupParseContext *context, const gchar *text, gsize len, gpointer user_data,
                     GError **error)
{
    for (gsize i = 0; i < len; i++) {
        if (!g_ascii_isspace(text[i])) {
            g_set_error_literal(error, G_MARKUP_ERROR, G_MARKUP_ERROR_INVALID_CONTENT,
                                "text is not allowed in usbgw's metadata (only elements)");
            return;
        }
    }
}

gboolean
gw_libvirt_parse_metadata(const gchar *xml, gssize len, GPtrArray *wishes, GError **error)
{
    static const GMarkupParser parser = {
        .start_element = gw_libvirt_meta_start,
        .end_element = gw_libvirt_meta_end,
        .text = gw_libvirt_meta_text,
    };
    g_autoptr(GPtrArray) read = g_ptr_array_new_with_free_func((GDestroyNotify)policy_wish_free);
    GwLibvirtMetaParse parse = {.wishes = read};
    g_autoptr(GMarkupParseContext) context = NULL;
    gsize size = len < 0 ? strlen(xml) : (gsize)len;
    gboolean ok;

    if (size > GW_LIBVIRT_METADATA_MAX_BYTES) {
        g_set_error(error, G_MARKUP_ERROR, G_MARKUP_ERROR_INVALID_CONTENT,
                    "%zu bytes, more than the %d allowed", size, GW_LIBVIRT_METADATA_MAX_BYTES);
        return FALSE;
    }
    if (!g_utf8_validate_len(xml, size, NULL)) {
        g_set_error_literal(error, G_MARKUP_ERROR, G_MARKUP_ERROR_BAD_UTF8, "not UTF-8");
        return FALSE;
    }
    context = g_markup_parse_context_new(&parser, G_MARKUP_PREFIX_ERROR_POSITION, &parse, NULL);
    ok = g_markup_parse_context_parse(context, xml, (gssize)size, error) &&
         g_markup_parse_context_end_parse(context, error);
    g_free(parse.prefix);
    if (!ok) {
        if (error != NULL)
            gw_libvirt_xml_error_make_valid(*error);
        return FALSE;
    }
    if (parse.prefix == NULL) {
        g_set_error_literal(error, G_MARKUP_ERROR, G_MARKUP_ERROR_EMPTY, "no <devices> element");
        return FALSE;
    }
    for (guint i = 0; i < read->len; i++)
        g_ptr_array_add(wishes, policy_wish_copy(g_ptr_array_index(read, i)));
    return TRUE;
}
