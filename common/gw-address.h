/* gw-address.h: the "ADDRESS:PORT" form of usbgwd.conf's listen keys
 * (link-listen, metrics-listen). Pure; any thread. */
#pragma once

#include <gio/gio.h>

G_BEGIN_DECLS

/* Parses "ADDRESS:PORT", IPv6 as "[ADDRESS]:PORT", port 1 to 65535, into a
 * new GInetSocketAddress. Host names are refused: a listener binds an
 * address. The error quotes @text; callers prefix the key's name. */
GSocketAddress *gw_address_parse_listen(const gchar *text,
                                        GError **error) G_GNUC_WARN_UNUSED_RESULT;

G_END_DECLS
