/* usbgw-hook's one exchange with usbgwd's control socket (docs/control.md):
 * one request line {"command":"hook",…}, one reply line, both within a
 * deadline. Blocking, single-threaded: the hook does nothing else. */
#pragma once

#include <glib.h>

#include "gw-defaults.h"

#include "hook-domain.h"

G_BEGIN_DECLS

#define HOOK_CONTROL_ERROR (hook_control_error_quark())
GQuark hook_control_error_quark(void);

typedef enum {
    HOOK_CONTROL_ERROR_UNREACHABLE, /* no usbgwd listening: missing socket, refused, … */
    HOOK_CONTROL_ERROR_TIMEOUT,     /* the deadline passed before the reply line */
    HOOK_CONTROL_ERROR_IO,          /* the connection failed after connecting */
    HOOK_CONTROL_ERROR_PROTOCOL,    /* the reply is not a reply (docs/control.md) */
    HOOK_CONTROL_ERROR_TOO_LARGE,   /* the request would exceed HOOK_CONTROL_MAX_LINE */
} HookControlError;

/* usbgwd refuses request lines longer than this; the hook reads replies up
 * to the same length. */
#define HOOK_CONTROL_MAX_LINE GW_CONTROL_MAX_REQUEST

/* A reply: ok, or an error code and message from usbgwd. */
typedef struct {
    gboolean ok;
    gchar *code;    /* owned, nullable: set when !ok ("veto", "internal", …) */
    gchar *message; /* owned, nullable: set when !ok, may be "" */
} HookReply;

void hook_reply_clear(HookReply *reply);
G_DEFINE_AUTO_CLEANUP_CLEAR_FUNC(HookReply, hook_reply_clear)

/* {"command":"hook","domain":…,"uuid":…,"op":…,"sub_op":…}, one line
 * without its newline. For @op "migrate" it also carries "sockets": the
 * array of @domain's usb-redir socket paths (empty when @domain->sockets is
 * NULL or empty), which the destination's usbgwd binds before QEMU starts.
 * HOOK_DOMAIN_MAX_SOCKETS of the longest paths take at most 41,280 bytes
 * even with every byte escaped (\u00XX), within HOOK_CONTROL_MAX_LINE. */
gchar *hook_control_build_request(const HookDomain *domain, const gchar *op,
                                  const gchar *sub_op) G_GNUC_WARN_UNUSED_RESULT;

/* Parses one reply line (without its newline) into @reply. */
gboolean hook_control_parse_reply(const gchar *line, gsize len, HookReply *reply,
                                  GError **error) G_GNUC_WARN_UNUSED_RESULT;

/* Connects to the unix socket @socket_path, sends @request and a newline,
 * reads one reply line and parses it into @reply, all before @deadline
 * (g_get_monotonic_time() microseconds). TRUE when a reply was read, ok
 * or not. */
gboolean hook_control_call(const gchar *socket_path, const gchar *request, gint64 deadline,
                           HookReply *reply, GError **error) G_GNUC_WARN_UNUSED_RESULT;

G_END_DECLS
