/* GwRelayAnchor: the anchor's end of a migration relay stream
 * (docs/migration.md, "Across hosts"). A VM whose device session lives on
 * this gateway (the anchor) migrated, or is migrating, to a host whose
 * usbgwd relays its QEMU's usbredir bytes over a gateway link. Here the
 * relay stands in for that QEMU: the anchor end connects to the VM's
 * socket like a QEMU would (usbgwd's own connections may use every VM
 * socket), so the socket's owner (a usbredirhost session, or the
 * validating proxy of an imported or lent device) takes it as a migration
 * destination and hands over to it, or from it, with the code it has for
 * a local QEMU.
 *
 * What it forwards is counted until the relay reports that its QEMU read
 * it (gw-handover-relay.h), so a handover on the socket knows what the
 * remote QEMU did not read; at most GW_RELAY_ANCHOR_WINDOW bytes are
 * forwarded ahead of those reports.
 *
 * The anchors on one socket are known by path: the one pending as a
 * destination and the one that is the peer. gw_relay_anchor_handover_ended()
 * tells them how a handover on the socket ended, names the gateways on
 * both sides for the records, and tells the relays (MIGRATED_IN and
 * MIGRATED_OUT).
 *
 * Threading: main thread only. The stream is the anchor's from
 * gw_relay_anchor_new() on; closed() runs once, from I/O callbacks. */
#pragma once

#include <gio/gio.h>

#include "gw-link.h"

G_BEGIN_DECLS

/* Bytes forwarded to the relay's QEMU and not yet reported read, at most. */
#define GW_RELAY_ANCHOR_WINDOW (128 * 1024)

typedef struct _GwRelayAnchor GwRelayAnchor;

/* The anchor ended (@reason for the log): the stream and its socket are
 * closed. Free it from here or later. */
typedef void (*GwRelayAnchorClosed)(GwRelayAnchor *anchor, const gchar *reason, gpointer user_data);

/* Takes @stream (a direct stream gateway @gateway opened for @vm's socket
 * @path; @self is this gateway's name) and connects to @path. Fails, naming why, when nothing
 * listens there or a relay is already pending on it; the caller then refuses the stream. */
GwRelayAnchor *gw_relay_anchor_new(GwLinkStream *stream, const gchar *self, const gchar *gateway,
                                   const gchar *vm, const gchar *path, GwRelayAnchorClosed closed,
                                   gpointer user_data, GError **error);
void gw_relay_anchor_free(GwRelayAnchor *anchor);
G_DEFINE_AUTOPTR_CLEANUP_FUNC(GwRelayAnchor, gw_relay_anchor_free)

const gchar *gw_relay_anchor_get_gateway(GwRelayAnchor *anchor);
const gchar *gw_relay_anchor_get_vm(GwRelayAnchor *anchor);
/* Whether it is the peer of its socket's owner (the VM runs there). */
gboolean gw_relay_anchor_is_peer(GwRelayAnchor *anchor);

/* Whether @vm's device on this gateway is served to a QEMU on another host
 * now, or is about to be (a relay is the peer of one of its sockets, or
 * waits as a migration's destination: the source's end hands over). */
gboolean gw_relay_anchor_vm_is_away(const gchar *vm);
/* The gateway whose relay is the peer of one of @vm's sockets, NULL when
 * none is (borrowed). */
const gchar *gw_relay_anchor_vm_host(const gchar *vm);

/* A handover on the socket @path ended (@done: the destination took over).
 * @local_source and @local_destination: whether each side was a local QEMU
 * (else the relay on that path). Sets *@from and *@to to the gateways of
 * the source and the destination (newly allocated; NULL for this one) and
 * tells the relays. */
void gw_relay_anchor_handover_ended(const gchar *path, gboolean done, gboolean local_source,
                                    gboolean local_destination, gchar **from, gchar **to);

G_END_DECLS
