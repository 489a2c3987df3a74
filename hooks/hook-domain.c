/* Reading libvirt's domain XML: see hook-domain.h. */
#include "hook-domain.h"

#include <errno.h>
#include <string.h>
#include <unistd.h>

/* Bytes read from stdin at a time. */
#define HOOK_DOMAIN_READ_CHUNK (64 * 1024)
/* Values quoted in messages are cut to this many characters. */
#define HOOK_DOMAIN_QUOTE_MAX_CHARS 64

G_DEFINE_QUARK(usbgw_hook_domain_error, hook_domain_error)

/* Set by a callback once <name>, <uuid> and <devices> (or </domain>, or a
 * socket problem) are all complete: not an error, just the way to make
 * GMarkup stop. */
static GQuark
hook_domain_done_quark(void)
{
    return g_quark_from_static_string("usbgw-hook-domain-done");
}

typedef enum {
    HOOK_DOMAIN_FIELD_NONE,
    HOOK_DOMAIN_FIELD_NAME,
    HOOK_DOMAIN_FIELD_UUID,
} HookDomainField;

typedef struct {
    guint depth;           /* elements open */
    HookDomainField field; /* the top-level field open now */
    GString *text;         /* owned: the open field's text so far */
    gchar *name;           /* owned, nullable */
    gchar *uuid;           /* owned, nullable: as written */
    gboolean in_devices;   /* <domain><devices> is open */
    gboolean devices_done; /* <domain><devices> has closed */
    gboolean root_done;    /* </domain> has closed: no more devices can come */
    /* a <devices><redirdev bus='usb' type='unix'> is open and none of its
     * <source> children has given a path yet */
    gboolean in_unix_redirdev;
    GPtrArray *sockets; /* owned: gchar*, the checked socket paths so far */
    /* owned, nullable: the first socket problem; once set no more sockets
     * are collected */
    GError *sockets_error;
    GError *markup_error; /* owned, nullable: the first error GMarkup reported */
} HookDomainParser;

void
hook_domain_free(HookDomain *domain)
{
    if (domain == NULL)
        return;
    g_free(domain->name);
    g_free(domain->uuid);
    g_strfreev(domain->sockets);
    g_clear_error(&domain->sockets_error);
    g_free(domain);
}

GBytes *
hook_domain_read_fd(gint fd, gsize max_size, gint64 deadline, GError **error)
{
    g_autoptr(GByteArray) data = g_byte_array_new();

    for (;;) {
        GPollFD pfd = {.fd = fd, .events = G_IO_IN};
        gint64 remaining_us = deadline - g_get_monotonic_time();
        gsize want;
        gssize got;
        gint ready;

        if (remaining_us <= 0) {
            g_set_error(error, HOOK_DOMAIN_ERROR, HOOK_DOMAIN_ERROR_TIMEOUT,
                        "the domain XML on stdin did not end in time (%u bytes read)", data->len);
            return NULL;
        }
        /* round up so that a last fraction of a millisecond is waited too */
        ready = g_poll(&pfd, 1, (gint)MIN((remaining_us + 999) / 1000, G_MAXINT));
        if (ready < 0) {
            int saved = errno;
            if (saved == EINTR)
                continue;
            g_set_error(error, HOOK_DOMAIN_ERROR, HOOK_DOMAIN_ERROR_READ,
                        "cannot read the domain XML on stdin: %s", g_strerror(saved));
            return NULL;
        }
        if (ready == 0)
            continue; /* the deadline check above ends the loop */

        /* read one byte past the limit to tell "exactly the limit" from "more" */
        want = MIN(HOOK_DOMAIN_READ_CHUNK, max_size + 1 - data->len);
        g_byte_array_set_size(data, data->len + want);
        got = read(fd, data->data + data->len - want, want);
        if (got < 0) {
            int saved = errno;
            g_byte_array_set_size(data, data->len - want);
            if (saved == EINTR || saved == EAGAIN)
                continue;
            g_set_error(error, HOOK_DOMAIN_ERROR, HOOK_DOMAIN_ERROR_READ,
                        "cannot read the domain XML on stdin: %s", g_strerror(saved));
            return NULL;
        }
        g_byte_array_set_size(data, data->len - want + (gsize)got);
        if (data->len > max_size) {
            g_set_error(error, HOOK_DOMAIN_ERROR, HOOK_DOMAIN_ERROR_TOO_LARGE,
                        "the domain XML on stdin is larger than %" G_GSIZE_FORMAT " bytes: refused",
                        max_size);
            return NULL;
        }
        if (got == 0)
            return g_byte_array_free_to_bytes(g_steal_pointer(&data));
    }
}

/* A value for a message: valid UTF-8, cut to HOOK_DOMAIN_QUOTE_MAX_CHARS
 * characters. */
static gchar *
hook_domain_quote(const gchar *text)
{
    g_autofree gchar *valid = g_utf8_make_valid(text, -1);
    g_autofree gchar *head = NULL;

    if (g_utf8_strlen(valid, -1) <= HOOK_DOMAIN_QUOTE_MAX_CHARS)
        return g_strdup_printf("\"%s\"", valid);
    head = g_utf8_substring(valid, 0, HOOK_DOMAIN_QUOTE_MAX_CHARS);
    return g_strdup_printf("\"%s...\"", head);
}

static const gchar *
hook_domain_field_tag(HookDomainField field)
{
    switch (field) {
    case HOOK_DOMAIN_FIELD_NAME:
        return "name";
    case HOOK_DOMAIN_FIELD_UUID:
        return "uuid";
    case HOOK_DOMAIN_FIELD_NONE:
        break;
    }
    return "?";
}

/* The value of attribute @name, or NULL. */
static const gchar *
hook_domain_attribute(const gchar **names, const gchar **values, const gchar *name)
{
    for (guint i = 0; names[i] != NULL; i++) {
        if (strcmp(names[i], name) == 0)
            return values[i];
    }
    return NULL;
}

/* Whether a <redirdev> is a usb-redir unix socket. libvirt writes bus='usb'
 * always and takes a missing bus for usb, as here. */
static gboolean
hook_domain_redirdev_is_unix(const gchar **names, const gchar **values)
{
    const gchar *bus = hook_domain_attribute(names, values, "bus");

    return (bus == NULL || strcmp(bus, "usb") == 0) &&
           g_strcmp0(hook_domain_attribute(names, values, "type"), "unix") == 0;
}

/* Whether @path has a ".." component: such a path is not where it reads,
 * and the destination's usbgwd is told only plain paths. */
static gboolean
hook_domain_path_climbs(const gchar *path)
{
    g_auto(GStrv) parts = g_strsplit(path, "/", -1);

    return g_strv_contains((const gchar *const *)parts, "..");
}

static gboolean
hook_domain_bad_socket(GError **error, const gchar *path, const gchar *problem)
{
    g_autofree gchar *quoted = hook_domain_quote(path);

    g_set_error(error, HOOK_DOMAIN_ERROR, HOOK_DOMAIN_ERROR_BAD_SOCKET,
                "<redirdev type='unix'> socket path %s %s", quoted, problem);
    return FALSE;
}

/* A <source> of an open unix <redirdev>: the first with a path and
 * mode='connect' (libvirt's default) gives the socket; a redirdev whose
 * QEMU listens itself (mode='bind') has nothing for usbgwd to bind. A bad
 * path sets @error. */
static gboolean
hook_domain_take_source(HookDomainParser *parser, const gchar **names, const gchar **values,
                        GError **error)
{
    const gchar *mode = hook_domain_attribute(names, values, "mode");
    const gchar *path = hook_domain_attribute(names, values, "path");
    gsize len;

    if (path == NULL || (mode != NULL && strcmp(mode, "connect") != 0))
        return TRUE;
    parser->in_unix_redirdev = FALSE;
    len = strlen(path);
    /* GMarkup has checked the document; a path is UTF-8 all the same */
    if (!g_utf8_validate(path, (gssize)len, NULL))
        return hook_domain_bad_socket(error, path, "is not UTF-8");
    if (path[0] != '/')
        return hook_domain_bad_socket(error, path, "is not absolute");
    if (len > HOOK_DOMAIN_MAX_SOCKET_PATH) {
        g_autofree gchar *problem = g_strdup_printf(
            "is %" G_GSIZE_FORMAT " bytes long, more than the %d a unix socket path can hold", len,
            HOOK_DOMAIN_MAX_SOCKET_PATH);
        return hook_domain_bad_socket(error, path, problem);
    }
    if (hook_domain_path_climbs(path))
        return hook_domain_bad_socket(error, path, "has a \"..\" component");
    if (parser->sockets->len == HOOK_DOMAIN_MAX_SOCKETS) {
        g_set_error(error, HOOK_DOMAIN_ERROR, HOOK_DOMAIN_ERROR_TOO_MANY_SOCKETS,
                    "<domain><devices> has more than %d usb-redir unix sockets "
                    "(<redirdev type='unix'>)",
                    HOOK_DOMAIN_MAX_SOCKETS);
        return FALSE;
    }
    g_ptr_array_add(parser->sockets, g_strdup(path));
    return TRUE;
}

/* Whether GMarkup can stop: the name and the UUID are read, and so are the
 * sockets (or the domain ended without <devices>), or there is a socket
 * problem and no socket matters any more. */
static gboolean
hook_domain_complete(const HookDomainParser *parser)
{
    return parser->name != NULL && parser->uuid != NULL &&
           (parser->devices_done || parser->root_done || parser->sockets_error != NULL);
}

static void
hook_domain_stop_if_complete(const HookDomainParser *parser, GError **error)
{
    if (hook_domain_complete(parser))
        g_set_error_literal(error, hook_domain_done_quark(), 0, "done");
}

/* Keeps @problem (taken) as the domain's sockets_error, prefixed like the
 * errors GMarkup reports, and stops collecting sockets: a socket problem
 * does not fail the parse, only the ops that need the sockets refuse it. */
static void
hook_domain_record_socket_problem(HookDomainParser *parser, GMarkupParseContext *context,
                                  GError *problem)
{
    gint line = 0;
    gint column = 0;

    g_markup_parse_context_get_position(context, &line, &column);
    g_prefix_error(&problem, "domain XML: line %d char %d: ", line, column);
    parser->sockets_error = problem;
    parser->in_devices = FALSE;
    parser->in_unix_redirdev = FALSE;
}

static void
hook_domain_start_element(GMarkupParseContext *context, const gchar *element_name,
                          const gchar **attribute_names, const gchar **attribute_values,
                          gpointer user_data, GError **error)
{
    HookDomainParser *parser = user_data;

    if (parser->markup_error != NULL)
        return;
    if (parser->depth == 0 && g_strcmp0(element_name, "domain") != 0) {
        g_set_error(error, HOOK_DOMAIN_ERROR, HOOK_DOMAIN_ERROR_NOT_DOMAIN,
                    "the root element is <%s>, expected <domain>", element_name);
        return;
    }
    if (parser->field != HOOK_DOMAIN_FIELD_NONE) {
        g_set_error(error, HOOK_DOMAIN_ERROR,
                    parser->field == HOOK_DOMAIN_FIELD_NAME ? HOOK_DOMAIN_ERROR_BAD_NAME
                                                            : HOOK_DOMAIN_ERROR_BAD_UUID,
                    "<domain><%s> holds an element <%s>, expected only text",
                    hook_domain_field_tag(parser->field), element_name);
        return;
    }
    if (parser->depth == 1) {
        gboolean devices = g_strcmp0(element_name, "devices") == 0;

        if (g_strcmp0(element_name, "name") == 0)
            parser->field = HOOK_DOMAIN_FIELD_NAME;
        else if (g_strcmp0(element_name, "uuid") == 0)
            parser->field = HOOK_DOMAIN_FIELD_UUID;
        if ((parser->field == HOOK_DOMAIN_FIELD_NAME && parser->name != NULL) ||
            (parser->field == HOOK_DOMAIN_FIELD_UUID && parser->uuid != NULL)) {
            g_set_error(error, HOOK_DOMAIN_ERROR, HOOK_DOMAIN_ERROR_DUPLICATE,
                        "<domain> has a second <%s>", element_name);
            return;
        }
        if (devices && parser->devices_done && parser->sockets_error == NULL) {
            /* which of them are the VM's devices is unclear: a socket problem */
            hook_domain_record_socket_problem(
                parser, context,
                g_error_new(HOOK_DOMAIN_ERROR, HOOK_DOMAIN_ERROR_DUPLICATE,
                            "<domain> has a second <%s>", element_name));
        }
        parser->in_devices = devices && parser->sockets_error == NULL;
        g_string_truncate(parser->text, 0);
    } else if (parser->depth == 2 && parser->in_devices) {
        parser->in_unix_redirdev = g_strcmp0(element_name, "redirdev") == 0 &&
                                   hook_domain_redirdev_is_unix(attribute_names, attribute_values);
    } else if (parser->depth == 3 && parser->in_unix_redirdev &&
               g_strcmp0(element_name, "source") == 0) {
        /* in_unix_redirdev is never set once there is a sockets_error */
        GError *problem = NULL;

        if (!hook_domain_take_source(parser, attribute_names, attribute_values, &problem))
            hook_domain_record_socket_problem(parser, context, problem);
    }
    parser->depth++;
    hook_domain_stop_if_complete(parser, error);
}

static void
hook_domain_end_element(GMarkupParseContext *context, const gchar *element_name, gpointer user_data,
                        GError **error)
{
    HookDomainParser *parser = user_data;

    if (parser->markup_error != NULL)
        return;
    parser->depth--;
    if (parser->depth == 2 && parser->in_devices) {
        /* a child of <devices> closed: a redirdev ends here */
        parser->in_unix_redirdev = FALSE;
        return;
    }
    if (parser->depth == 0) {
        parser->root_done = TRUE;
        hook_domain_stop_if_complete(parser, error);
        return;
    }
    if (parser->depth != 1)
        return;
    if (g_strcmp0(element_name, "devices") == 0) {
        parser->in_devices = FALSE;
        parser->devices_done = TRUE;
    } else if (parser->field == HOOK_DOMAIN_FIELD_NAME) {
        parser->name = g_strdup(parser->text->str);
    } else if (parser->field == HOOK_DOMAIN_FIELD_UUID) {
        parser->uuid = g_strdup(parser->text->str);
    }
    parser->field = HOOK_DOMAIN_FIELD_NONE;
    hook_domain_stop_if_complete(parser, error);
}

static void
hook_domain_text(GMarkupParseContext *context, const gchar *text, gsize text_len,
                 gpointer user_data, GError **error)
{
    HookDomainParser *parser = user_data;

    if (parser->markup_error == NULL && parser->field != HOOK_DOMAIN_FIELD_NONE)
        g_string_append_len(parser->text, text, (gssize)text_len);
}

/* GMarkup reports every error here first, its own and the callbacks'.
 * The first is kept, and the callbacks do nothing once there is one:
 * GMarkup (GLib 2.74 at least) sets an error for invalid UTF-8 in a
 * CDATA section yet goes on parsing, so a later error of its or ours would
 * land on the first (a GLib warning) if the parse had a GError to fill. */
static void
hook_domain_markup_error(GMarkupParseContext *context, GError *error, gpointer user_data)
{
    HookDomainParser *parser = user_data;

    if (parser->markup_error == NULL)
        parser->markup_error = g_error_copy(error);
}

static const GMarkupParser hook_domain_markup = {
    .start_element = hook_domain_start_element,
    .end_element = hook_domain_end_element,
    .text = hook_domain_text,
    .error = hook_domain_markup_error,
};

/* Runs GMarkup over @xml until <name>, <uuid> and <devices> are all read or
 * the document ends. Sets @error, a HOOK_DOMAIN_ERROR, when the document
 * is unusable. */
static gboolean
hook_domain_run_markup(HookDomainParser *parser, const gchar *xml, gsize len, GError **error)
{
    g_autoptr(GMarkupParseContext) context = NULL;
    g_autoptr(GError) local_error = NULL;
    /* GMarkup silently cuts text at a NUL byte ("vm\0x" would read as "vm"):
     * it gets the bytes before the first NUL only, and a document that needs
     * more is refused. */
    const gchar *nul = memchr(xml, '\0', len);
    gsize parse_len = nul != NULL ? (gsize)(nul - xml) : len;

    /* GMarkup takes a gssize */
    if (parse_len > G_MAXSSIZE) {
        g_set_error(error, HOOK_DOMAIN_ERROR, HOOK_DOMAIN_ERROR_TOO_LARGE,
                    "the domain XML is larger than %" G_GSIZE_FORMAT " bytes: refused",
                    (gsize)G_MAXSSIZE);
        return FALSE;
    }
    context = g_markup_parse_context_new(
        &hook_domain_markup, G_MARKUP_TREAT_CDATA_AS_TEXT | G_MARKUP_PREFIX_ERROR_POSITION, parser,
        NULL);
    /* errors arrive through hook_domain_markup_error() (see there) */
    g_markup_parse_context_parse(context, xml, (gssize)parse_len, NULL);
    if (parser->markup_error == NULL && nul != NULL) {
        g_set_error(error, HOOK_DOMAIN_ERROR, HOOK_DOMAIN_ERROR_SYNTAX,
                    "domain XML is not well-formed: a NUL byte at offset %" G_GSIZE_FORMAT,
                    parse_len);
        return FALSE;
    }
    if (parser->markup_error == NULL)
        g_markup_parse_context_end_parse(context, NULL);
    if (parser->markup_error == NULL)
        return TRUE;
    local_error = g_steal_pointer(&parser->markup_error);
    if (local_error->domain == hook_domain_done_quark())
        return TRUE;
    if (local_error->domain == HOOK_DOMAIN_ERROR) {
        g_propagate_prefixed_error(error, g_steal_pointer(&local_error), "domain XML: ");
        return FALSE;
    }
    g_set_error(error, HOOK_DOMAIN_ERROR, HOOK_DOMAIN_ERROR_SYNTAX,
                "domain XML is not well-formed: %s", local_error->message);
    return FALSE;
}

/* hook_domain_run_markup(), but a problem found once the name and the UUID
 * are read only costs the sockets: it becomes the sockets_error (unless
 * there is one already) and the parse succeeds. Only the ops that need the
 * sockets depend on what follows the two fields. */
static gboolean
hook_domain_run_parser(HookDomainParser *parser, const gchar *xml, gsize len, GError **error)
{
    g_autoptr(GError) local_error = NULL;

    if (hook_domain_run_markup(parser, xml, len, &local_error))
        return TRUE;
    if (parser->name == NULL || parser->uuid == NULL) {
        g_propagate_error(error, g_steal_pointer(&local_error));
        return FALSE;
    }
    if (parser->sockets_error == NULL)
        parser->sockets_error = g_steal_pointer(&local_error);
    return TRUE;
}

static HookDomain *
hook_domain_parse_checked(const gchar *xml, gsize len, const gchar *argv_name, GError **error)
{
    HookDomainParser parser = {
        .text = g_string_new(NULL),
        .sockets = g_ptr_array_new_with_free_func(g_free),
    };
    g_autoptr(HookDomain) domain = g_new0(HookDomain, 1);
    gboolean ok = hook_domain_run_parser(&parser, xml, len, error);

    g_string_free(parser.text, TRUE);
    g_clear_error(&parser.markup_error);
    domain->name = parser.name;
    domain->uuid = parser.uuid;
    domain->sockets_error = parser.sockets_error;
    /* with a socket problem the paths read before it are no use either */
    if (domain->sockets_error != NULL)
        g_ptr_array_set_size(parser.sockets, 0);
    g_ptr_array_add(parser.sockets, NULL);
    domain->sockets = (gchar **)g_ptr_array_free(parser.sockets, FALSE);
    if (!ok)
        return NULL;

    if (domain->name == NULL) {
        g_set_error_literal(error, HOOK_DOMAIN_ERROR, HOOK_DOMAIN_ERROR_NO_NAME,
                            "domain XML has no <domain><name>");
        return NULL;
    }
    if (domain->name[0] == '\0') {
        g_set_error_literal(error, HOOK_DOMAIN_ERROR, HOOK_DOMAIN_ERROR_BAD_NAME,
                            "domain XML: <domain><name> is empty");
        return NULL;
    }
    if (domain->uuid == NULL) {
        g_autofree gchar *quoted = hook_domain_quote(domain->name);
        g_set_error(error, HOOK_DOMAIN_ERROR, HOOK_DOMAIN_ERROR_NO_UUID,
                    "domain XML of %s has no <domain><uuid>", quoted);
        return NULL;
    }
    /* libvirt writes the UUID alone; tolerate the whitespace XML allows */
    g_strstrip(domain->uuid);
    if (!g_uuid_string_is_valid(domain->uuid)) {
        g_autofree gchar *quoted = hook_domain_quote(domain->uuid);
        g_set_error(error, HOOK_DOMAIN_ERROR, HOOK_DOMAIN_ERROR_BAD_UUID,
                    "domain XML: <domain><uuid> %s is not a UUID "
                    "(expected 8-4-4-4-12 hex digits)",
                    quoted);
        return NULL;
    }
    for (gchar *p = domain->uuid; *p != '\0'; p++)
        *p = g_ascii_tolower(*p);
    if (argv_name != NULL && strcmp(domain->name, argv_name) != 0) {
        g_autofree gchar *xml_quoted = hook_domain_quote(domain->name);
        g_autofree gchar *argv_quoted = hook_domain_quote(argv_name);
        g_set_error(error, HOOK_DOMAIN_ERROR, HOOK_DOMAIN_ERROR_NAME_MISMATCH,
                    "domain XML names the VM %s but libvirt called the hook for %s", xml_quoted,
                    argv_quoted);
        return NULL;
    }
    return g_steal_pointer(&domain);
}

/* Every message is one line of valid UTF-8, whatever bytes GMarkup or a
 * value quoted (a name may hold &#10;). */
static void
hook_domain_error_to_one_line(GError *error)
{
    gchar *text = g_utf8_make_valid(error->message, -1);

    for (gchar *p = text; *p != '\0'; p++) {
        if ((guchar)*p < 0x20 || *p == 0x7f)
            *p = ' ';
    }
    g_free(error->message);
    error->message = text;
}

HookDomain *
hook_domain_parse(const gchar *xml, gsize len, const gchar *argv_name, GError **error)
{
    g_autoptr(GError) local_error = NULL;
    HookDomain *domain = hook_domain_parse_checked(xml, len, argv_name, &local_error);

    if (domain != NULL) {
        if (domain->sockets_error != NULL)
            hook_domain_error_to_one_line(domain->sockets_error);
        return domain;
    }
    hook_domain_error_to_one_line(local_error);
    g_propagate_error(error, g_steal_pointer(&local_error));
    return NULL;
}
