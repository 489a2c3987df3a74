/* gw-address.c: the "ADDRESS:PORT" form of the listen keys. */
#include "gw-address.h"

#include <string.h>

GSocketAddress *
gw_address_parse_listen(const gchar *text, GError **error)
{
    const gchar *colon = text != NULL ? strrchr(text, ':') : NULL;
    g_autofree gchar *host = NULL;
    g_autoptr(GInetAddress) inet = NULL;
    guint64 port = 0;

    if (colon != NULL) {
        host = g_strndup(text, colon - text);
        if (host[0] == '[' && g_str_has_suffix(host, "]")) {
            gchar *bare = g_strndup(host + 1, strlen(host) - 2);
            g_free(host);
            host = bare;
        }
        inet = g_inet_address_new_from_string(host);
    }
    if (inet == NULL || !g_ascii_string_to_unsigned(colon + 1, 10, 1, G_MAXUINT16, &port, NULL)) {
        g_set_error(error, G_IO_ERROR, G_IO_ERROR_INVALID_ARGUMENT,
                    "expected an IP address and a port (ADDRESS:PORT, [IPv6]:PORT), not '%s'",
                    text != NULL ? text : "");
        return NULL;
    }
    return g_inet_socket_address_new(inet, (guint16)port);
}
