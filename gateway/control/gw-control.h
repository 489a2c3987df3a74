/* The control socket: newline-delimited JSON requests from usbgwctl and
 * usbgw-hook, one reply per request, plus event subscriptions (protocol in
 * docs/control.md). This module does transport, framing, peer credentials,
 * connection limits and idle timeouts; what a command does is the
 * handler's business. Main thread. */
#pragma once

#include <gio/gio.h>
#include <json-glib/json-glib.h>

#include "gw-defaults.h"

G_BEGIN_DECLS

/* A request line longer than this is refused and the connection closed. */
#define GW_CONTROL_MAX_LINE GW_CONTROL_MAX_REQUEST
/* The admin group: its members may send every command. */
#define GW_CONTROL_ADMIN_GROUP "usbgw"

/* Connection limits (docs/control.md, "Limits"). Connections are counted
 * in three pools, so that no pool can crowd out another: users outside the
 * admin group (config keys control-max-clients, control-max-per-user),
 * members of the admin group, and root (the hook, usbgwctl as root). A
 * connection over its pool's limit gets a "busy" error line and is
 * closed. */
#define GW_CONTROL_DEFAULT_MAX_CLIENTS  64
#define GW_CONTROL_DEFAULT_MAX_PER_USER 8
/* Connections of non-root admin group members, together. */
#define GW_CONTROL_MAX_ADMIN_CLIENTS 32
/* Connections of uid 0, together. */
#define GW_CONTROL_MAX_ROOT_CLIENTS 32
/* Seconds a connection may go without sending a complete request line
 * (config key control-idle-timeout); then it gets a "timeout" error line
 * and is closed. Subscribers are exempt once subscribed. */
#define GW_CONTROL_DEFAULT_IDLE_TIMEOUT 10

typedef struct {
    guint max_clients;  /* connections of users outside the admin group, together */
    guint max_per_user; /* connections of one such uid */
    guint idle_timeout; /* seconds */
} GwControlLimits;

typedef struct {
    uid_t uid;
    gid_t gid; /* SO_PEERCRED's */
    pid_t pid;
    /* uid 0, or the admin group is the peer's gid or one of its
     * supplementary groups when it connected (SO_PEERGROUPS): the
     * process's real groups, not what NSS lists for its user name */
    gboolean admin;
} GwControlPeer;

/* Handles one well-formed request object; returns the whole reply object
 * (gw_control_reply_ok/error build them). Must not block. */
typedef JsonNode *(*GwControlHandler)(JsonObject *request, const GwControlPeer *peer,
                                      gpointer user_data);

typedef struct _GwControl GwControl;

/* @limits NULL: the defaults. The admin group's id is looked up here,
 * once (a group created later counts after a restart). */
GwControl *gw_control_new(const gchar *socket_path, const GwControlLimits *limits,
                          GwControlHandler handler, gpointer user_data,
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
