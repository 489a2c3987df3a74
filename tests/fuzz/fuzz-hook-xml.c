/* libFuzzer target for usbgw-hook's domain XML parser: any byte string
 * handed to hook_domain_parse() must give either a name, UUID and socket
 * list (or a clean one-line sockets_error and no sockets) or one clean
 * one-line error, never a crash, a leak, a GLib warning or a broken
 * invariant; every socket path must keep the bounds hook-domain.h states; a
 * domain that parses must parse again, to the same sockets or
 * sockets_error, with its own name as libvirt's argv name, fail with
 * NAME_MISMATCH under another, and become a one-line control request that
 * JSON reads back to the same name, UUID and (for "migrate" only)
 * sockets.
 *
 * Run the fuzzer (libFuzzer needs clang); new inputs go to the first
 * directory, so give it a scratch one and the stored corpus second:
 *
 *   CC=clang meson setup build-fuzz -Dfuzzing=true -Db_sanitize=address,undefined \
 *       -Db_lundef=false
 *   ninja -C build-fuzz tests/fuzz/fuzz-hook-xml
 *   mkdir -p /tmp/fuzz-hook-xml-corpus
 *   build-fuzz/tests/fuzz/fuzz-hook-xml /tmp/fuzz-hook-xml-corpus tests/fuzz/corpus/hook-xml \
 *       -dict=tests/fuzz/hook-xml.dict -max_total_time=600
 *
 * A crash leaves crash-<sha1> in the current directory: fix it, copy it to
 * tests/fuzz/corpus/hook-xml/ under a telling name, and every build's
 * `meson test` (fuzz-hook-xml-replay) replays it from then on. */
#include <json-glib/json-glib.h>
#include <stdint.h>
#include <string.h>

#include "hook-control.h"
#include "hook-domain.h"

#include "fuzz-common.h"

static void
fuzz_check_error(const GError *error)
{
    FUZZ_CHECK(error != NULL);
    FUZZ_CHECK(error->domain == HOOK_DOMAIN_ERROR);
    FUZZ_CHECK(error->message != NULL && error->message[0] != '\0');
    FUZZ_CHECK(strchr(error->message, '\n') == NULL);
    FUZZ_CHECK(g_utf8_validate(error->message, -1, NULL));
}

static void
fuzz_check_request(const HookDomain *domain, const gchar *op)
{
    g_autofree gchar *request = hook_control_build_request(domain, op, "begin");
    g_autoptr(JsonParser) parser = json_parser_new();
    JsonObject *object;
    JsonNode *sockets;

    FUZZ_CHECK(strchr(request, '\n') == NULL);
    FUZZ_CHECK(strlen(request) < HOOK_CONTROL_MAX_LINE);
    FUZZ_CHECK(json_parser_load_from_data(parser, request, -1, NULL));
    FUZZ_CHECK(JSON_NODE_HOLDS_OBJECT(json_parser_get_root(parser)));
    object = json_node_get_object(json_parser_get_root(parser));
    FUZZ_CHECK(g_strcmp0(json_object_get_string_member(object, "domain"), domain->name) == 0);
    FUZZ_CHECK(g_strcmp0(json_object_get_string_member(object, "uuid"), domain->uuid) == 0);

    sockets = json_object_get_member(object, "sockets");
    if (strcmp(op, "migrate") != 0) {
        FUZZ_CHECK(sockets == NULL);
        return;
    }
    FUZZ_CHECK(sockets != NULL && JSON_NODE_HOLDS_ARRAY(sockets));
    FUZZ_CHECK(json_array_get_length(json_node_get_array(sockets)) ==
               g_strv_length(domain->sockets));
    for (guint i = 0; domain->sockets[i] != NULL; i++) {
        JsonNode *path = json_array_get_element(json_node_get_array(sockets), i);
        FUZZ_CHECK(json_node_get_value_type(path) == G_TYPE_STRING);
        FUZZ_CHECK(strcmp(json_node_get_string(path), domain->sockets[i]) == 0);
    }
}

static void
fuzz_check_sockets(const HookDomain *domain)
{
    FUZZ_CHECK(domain->sockets != NULL);
    if (domain->sockets_error != NULL) {
        fuzz_check_error(domain->sockets_error);
        FUZZ_CHECK(domain->sockets_error->code == HOOK_DOMAIN_ERROR_BAD_SOCKET ||
                   domain->sockets_error->code == HOOK_DOMAIN_ERROR_TOO_MANY_SOCKETS ||
                   domain->sockets_error->code == HOOK_DOMAIN_ERROR_DUPLICATE ||
                   domain->sockets_error->code == HOOK_DOMAIN_ERROR_SYNTAX);
        FUZZ_CHECK(domain->sockets[0] == NULL);
    }
    FUZZ_CHECK(g_strv_length(domain->sockets) <= HOOK_DOMAIN_MAX_SOCKETS);
    for (gchar **path = domain->sockets; *path != NULL; path++) {
        g_auto(GStrv) parts = g_strsplit(*path, "/", -1);

        FUZZ_CHECK((*path)[0] == '/');
        FUZZ_CHECK(strlen(*path) <= HOOK_DOMAIN_MAX_SOCKET_PATH);
        FUZZ_CHECK(g_utf8_validate(*path, -1, NULL));
        FUZZ_CHECK(!g_strv_contains((const gchar *const *)parts, ".."));
    }
}

static void
fuzz_check_domain(const gchar *xml, gsize size, const HookDomain *domain)
{
    g_autoptr(HookDomain) again = NULL;
    g_autoptr(HookDomain) other = NULL;
    g_autoptr(GError) error = NULL;
    g_autofree gchar *other_name = NULL;

    FUZZ_CHECK(domain->name != NULL && domain->name[0] != '\0');
    FUZZ_CHECK(g_utf8_validate(domain->name, -1, NULL));
    FUZZ_CHECK(domain->uuid != NULL && g_uuid_string_is_valid(domain->uuid));
    for (const gchar *p = domain->uuid; *p != '\0'; p++)
        FUZZ_CHECK(!g_ascii_isupper(*p));
    fuzz_check_sockets(domain);

    /* what libvirt passes in argv is the XML's name */
    again = hook_domain_parse(xml, size, domain->name, &error);
    FUZZ_CHECK(again != NULL && error == NULL);
    FUZZ_CHECK(strcmp(again->name, domain->name) == 0);
    FUZZ_CHECK(strcmp(again->uuid, domain->uuid) == 0);
    FUZZ_CHECK(
        g_strv_equal((const gchar *const *)again->sockets, (const gchar *const *)domain->sockets));
    FUZZ_CHECK((again->sockets_error == NULL) == (domain->sockets_error == NULL));
    if (domain->sockets_error != NULL) {
        FUZZ_CHECK(again->sockets_error->code == domain->sockets_error->code);
        FUZZ_CHECK(strcmp(again->sockets_error->message, domain->sockets_error->message) == 0);
    }

    other_name = g_strconcat(domain->name, "-other", NULL);
    other = hook_domain_parse(xml, size, other_name, &error);
    FUZZ_CHECK(other == NULL);
    fuzz_check_error(error);
    FUZZ_CHECK(error->code == HOOK_DOMAIN_ERROR_NAME_MISMATCH);

    fuzz_check_request(domain, "prepare");
    fuzz_check_request(domain, "migrate");
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    g_autoptr(GError) error = NULL;
    g_autoptr(HookDomain) domain = NULL;

    /* the parser logs nothing: a GLib warning is a GError set twice */
    g_log_set_always_fatal(G_LOG_FATAL_MASK | G_LOG_LEVEL_WARNING | G_LOG_LEVEL_CRITICAL);
    domain = hook_domain_parse((const gchar *)data, size, NULL, &error);
    if (domain == NULL)
        fuzz_check_error(error);
    else
        fuzz_check_domain((const gchar *)data, size, domain);
    return 0;
}
