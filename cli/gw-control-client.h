/* The client side of the control socket (docs/control.md), for usbgwctl:
 * connect, send a request line, read reply or event lines. Blocking, with
 * a bound on line length.
 *
 * Threading: one GwControlClient per thread; calls block that thread. */
#pragma once

#include <gio/gio.h>
#include <json-glib/json-glib.h>

G_BEGIN_DECLS

typedef struct _GwControlClient GwControlClient;

GwControlClient *gw_control_client_connect(const gchar *socket_path,
                                           GError **error) G_GNUC_WARN_UNUSED_RESULT;
/* Sends {"command": COMMAND, …@args members} and returns the reply object. */
JsonObject *gw_control_client_call(GwControlClient *client, const gchar *command, JsonObject *args,
                                   GError **error) G_GNUC_WARN_UNUSED_RESULT;
/* Reads the next line (an event after "subscribe"); NULL at end or error. */
JsonObject *gw_control_client_read(GwControlClient *client,
                                   GError **error) G_GNUC_WARN_UNUSED_RESULT;
void gw_control_client_free(GwControlClient *client);

G_DEFINE_AUTOPTR_CLEANUP_FUNC(GwControlClient, gw_control_client_free)

G_END_DECLS
