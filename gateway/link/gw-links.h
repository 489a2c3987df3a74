/* GwLinks: this gateway's links (docs/links.md). It listens for other
 * gateways (link-listen), dials the static peers (link-peers) and those
 * added at run time (gw_links_add_peer(): cluster mode) with a backoff, authenticates both directions with gw-link-tls.h, keeps one
 * GwLink per peer gateway for as long as usbgwd runs, and is the static
 * GwDirectory: our published devices are announced on every link whose
 * peer may import them, a peer's announcements are the devices it exports
 * to us.
 *
 * Two gateways that list each other in link-peers would each dial: the
 * one whose name sorts first dials, the other refuses that peer's dials
 * ("dialed by …") and keeps the link the first one made.
 *
 * Threading: main thread only; callbacks run from I/O callbacks, never
 * from inside a gw_links_*() call.
 */
#pragma once

#include <gio/gio.h>
#include <json-glib/json-glib.h>

#include "gw-directory.h"
#include "gw-link-tls.h"
#include "gw-link.h"

G_BEGIN_DECLS

/* Links accepted from gateways not in link-peers, at most. */
#define GW_LINKS_MAX_PEERS 256
/* Backoff between dials of a static or added peer. */
#define GW_LINKS_DIAL_FIRST_MS 500
#define GW_LINKS_DIAL_MAX_MS   10000
/* A TLS handshake and its checks, at most. */
#define GW_LINKS_HANDSHAKE_MS 10000

typedef struct _GwLinks GwLinks;

/* What the audit trail records of links. */
typedef enum {
    GW_LINKS_EVENT_UP,      /* a link's connection is up */
    GW_LINKS_EVENT_DOWN,    /* it was lost (streams wait for the grace) */
    GW_LINKS_EVENT_REFUSED, /* a peer was refused, or refused us */
} GwLinksEvent;

typedef struct {
    /* Required. A peer opens @stream, a direct stream, on our device @id:
     * take it or refuse with *@reason (gw-link.h, GwLinkCallbacks.open_direct). */
    gboolean (*open_direct)(GwLinks *links, GwLink *link, GwLinkStream *stream, const gchar *id,
                            gchar **reason, gpointer user_data);
    /* Optional. For the audit: @peer (a name, or "ADDRESS" for a refused
     * dialer without one), @reason nullable. */
    void (*event)(GwLinks *links, GwLinksEvent event, const gchar *peer, const gchar *address,
                  const gchar *reason, gpointer user_data);
} GwLinksCallbacks;

typedef struct {
    gchar *name;    /* the gateway's name, its certificate's */
    gchar *address; /* "HOST:PORT" */
} GwLinksPeer;

/* @tls is taken. @listen: "ADDRESS:PORT" or NULL. @peers: GwLinksPeer
 * (borrowed for the call). @events are the directory's (borrowed until
 * free). Fails when the listener cannot bind. */
GwLinks *gw_links_new(GwLinkTls *tls, const gchar *listen, const GwLinksPeer *peers, guint n_peers,
                      const GwLinkConfig *config, const GwLinksCallbacks *cb,
                      const GwDirectoryEvents *events, gpointer user_data,
                      GError **error) G_GNUC_WARN_UNUSED_RESULT;
void gw_links_free(GwLinks *links);

/* Peers that come and go (usbgwd's cluster mode: the gateways registered
 * in etcd). Dial @name at @address from now on: a new peer, or a new
 * address for a known one (the next dial goes there; a dial of the old
 * address or the backoff after one is given up and the new address
 * dialed at once). An added peer is a static peer but for the sort rule,
 * which it follows strictly: only the gateway whose name sorts first
 * dials, the other waits to be dialed (and refuses none of its dials).
 * Adding ourselves is ignored; a name that is not a gateway name, or a
 * peer past GW_LINKS_MAX_PEERS, is not added (a warning says so). */
void gw_links_add_peer(GwLinks *links, const gchar *name, const gchar *address);
/* @name is gone for good (its registration expired): no more dials of
 * it, its connection closed now, and, from an idle callback soon after
 * (not after the grace), its streams end as after the grace and its
 * devices are reported lost through the directory events. A link it
 * makes later is an unlisted peer's (accepted, up to GW_LINKS_MAX_PEERS).
 * Unknown names are ignored. */
void gw_links_remove_peer(GwLinks *links, const gchar *name);
G_DEFINE_AUTOPTR_CLEANUP_FUNC(GwLinks, gw_links_free)

/* The static directory these links make (owned by @links). */
GwDirectory *gw_links_get_directory(GwLinks *links);
/* Our gateway name. */
const gchar *gw_links_get_name(GwLinks *links);
/* The link to @peer, NULL if none was ever made or configured. */
GwLink *gw_links_lookup(GwLinks *links, const gchar *peer);
/* Every peer's link, by peer name (borrowed; the array is the caller's). */
GPtrArray *gw_links_list(GwLinks *links) G_GNUC_WARN_UNUSED_RESULT;
/* {"gateway": name, "links": [ … ]} members for usbgwctl status: one
 * object per peer (docs/control.md). */
void gw_links_to_json(GwLinks *links, JsonBuilder *builder);

G_END_DECLS
