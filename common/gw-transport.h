/* GwTransport: a byte stream that is not a socket, as the validating
 * proxy's client side (gw-proxy.h) and a usbredirhost session's peer
 * (gw-session.h) use it: a gateway link's direct stream (gw-link.h has
 * the functions over one). Plain function pointers over an opaque @data
 * the owner keeps alive while the user holds the transport; the user
 * calls them on its own thread only (usbgwd's main thread) and learns of
 * bytes or room from the owner (gw_proxy_transport_ready(),
 * gw_session_transport_ready()), never by polling. */
#pragma once

#include <glib.h>

G_BEGIN_DECLS

typedef struct {
    /* Required. Up to @count bytes from the other end: the count, 0 when
     * none wait now, -1 when the other end is gone. */
    gssize (*read)(gpointer data, guint8 *buf, gsize count);
    /* Required. Queues up to @count bytes for the other end: the count
     * taken (0: full; the owner tells G_IO_OUT when it takes more), -1
     * when the other end is gone. */
    gssize (*write)(gpointer data, const guint8 *buf, gsize count);
    /* Optional. What was queued goes out now (after each batch). */
    void (*flush)(gpointer data);
    /* Optional. The user is done with the transport: no call follows. */
    void (*close)(gpointer data);
} GwTransport;

G_END_DECLS
