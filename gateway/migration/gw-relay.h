/* GwRelay: a migrated VM's QEMU on this host, relayed to the gateway that
 * keeps its device session (the anchor; docs/migration.md, "Across
 * hosts"). QEMU's chardev connected to the socket usbgwd bound for the
 * incoming migration; its bytes go unparsed both ways over a gateway link
 * stream (gw-relay-wire.h), and the anchor is told how many of the bytes
 * it sent QEMU has read: every GW_HANDOVER_SAMPLE_MS while some wait, before
 * each of QEMU's writes is forwarded, and when the anchor asks (a
 * handover on its side needs the exact count).
 *
 * The anchor is the first migration peer that accepts the stream (the
 * owner's open() is asked for one peer after the other); it names the
 * VM's socket by "migrate:VM/FILE".
 *
 * Threading: main thread only; callbacks from I/O callbacks. */
#pragma once

#include <gio/gio.h>

#include "gw-link.h"

G_BEGIN_DECLS

/* The link stream id prefix of a relay stream. */
#define GW_RELAY_STREAM_PREFIX GW_LINK_MIGRATION_STREAM_PREFIX

typedef struct _GwRelay GwRelay;

typedef struct {
    /* Required. Opens a direct stream with @id to the @attempt'th
     * migration peer (0, 1, …), with @cb and @cb_data; NULL when no peer
     * is left. */
    GwLinkStream *(*open)(const gchar *id, guint attempt, const GwLinkStreamCallbacks *cb,
                          gpointer cb_data, gpointer user_data);
    /* Optional. The anchor @anchor says the VM's QEMU here holds the device
     * now (@in, the VM came from @other) or that the VM went on to @other. */
    void (*migrated)(GwRelay *relay, gboolean in, const gchar *anchor, const gchar *other,
                     gpointer user_data);
    /* Required. The relay ended (@reason): QEMU's connection and the stream
     * are closed. Free it from here or later. */
    void (*closed)(GwRelay *relay, const gchar *reason, gpointer user_data);
} GwRelayFuncs;

/* Relays @qemu (a reference is taken), @vm's QEMU on its socket file
 * @file. @funcs is borrowed for the relay's life. */
GwRelay *gw_relay_new(GSocketConnection *qemu, const gchar *vm, const gchar *file,
                      const GwRelayFuncs *funcs, gpointer user_data);
void gw_relay_free(GwRelay *relay);
G_DEFINE_AUTOPTR_CLEANUP_FUNC(GwRelay, gw_relay_free)

const gchar *gw_relay_get_vm(GwRelay *relay);
/* The anchor's gateway, NULL until one accepted. */
const gchar *gw_relay_get_anchor(GwRelay *relay);
/* Whether the anchor said the VM's QEMU here holds the device. */
gboolean gw_relay_holds_device(GwRelay *relay);
/* Whether the VM may still be here: its QEMU is connected and the anchor
 * did not say it went on. */
gboolean gw_relay_is_current(GwRelay *relay);

/* "migrate:VM/FILE"; FALSE unless @id is one with a VM name and a file
 * name usbgwd could serve (the caller checks the VM name's rules). */
gboolean gw_relay_parse_stream_id(const gchar *id, gchar **vm, gchar **file);

G_END_DECLS
