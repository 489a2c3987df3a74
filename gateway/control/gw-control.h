/* The control socket: newline-delimited JSON requests from usbgwctl and
 * usbgw-hook, one reply per request, plus event subscriptions (protocol in
 * docs/control.md). This module does transport, framing, limits and peer
 * credentials; what a command does is the handler's business. Main thread. */
#pragma once

#include <gio/gio.h>
#include <json-glib/json-glib.h>

#include "gw-defaults.h"

G_BEGIN_DECLS

/* A request line longer than this is refused and the connection closed. */
#define GW_CONTROL_MAX_LINE GW_CONTROL_MAX_REQUEST
/* Connections at once; more are refused at accept. */
#define GW_CONTROL_MAX_CLIENTS 64

typedef struct {
    uid_t uid;
    pid_t pid;
    gboolean admin; /* uid 0 or a member of group "usbgw" */
} GwControlPeer;

/* Handles one well-formed request object; returns the whole reply object
 * (gw_control_reply_ok/error build them). Must not block. */
typedef JsonNode *(*GwControlHandler)(JsonObject *request, const GwControlPeer *peer,
                                      gpointer user_data);

typedef struct _GwControl GwControl;

GwControl *gw_control_new(const gchar *socket_path, GwControlHandler handler, gpointer user_data,
                          GError **error) G_GNUC_WARN_UNUSED_RESULT;
/* Sends an event line to every subscribed connection. */
void gw_control_broadcast(GwControl *control, JsonNode *event);
void gw_control_free(GwControl *control);

G_DEFINE_AUTOPTR_CLEANUP_FUNC(GwControl, gw_control_free)

/* Reply helpers: the result is adopted (may be NULL for {}). */
JsonNode *gw_control_reply_ok(JsonNode *result);
JsonNode *gw_control_reply_error(const gchar *code, const gchar *format, ...) G_GNUC_PRINTF(2, 3);
/* Marks a reply: after it is sent, the connection receives events. */
void gw_control_reply_set_subscribe(JsonNode *reply);

G_END_DECLS
