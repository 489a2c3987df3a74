/* A protocol-level usbredir end for the GwProxy tests (test-gw-proxy), its
 * fuzzer (fuzz-proxy) and proxy-bench: a usbredirparser on one end of a
 * socketpair, in the lending client's role (a usbredirhost) or in QEMU's.
 *
 * fake_usbredir_create() sets every callback to one that drops its packet
 * (freeing packet data and filter rules); the user sets its own callbacks on
 * fake->parser, then calls fake_usbredir_init(). The parser's priv is the
 * FakeUsbredir: embed it as the first member of the user's own struct, and
 * a callback may cast priv to that struct.
 *
 * No locks are set on the parser: one thread at a time drives it. */
#pragma once

#include <glib.h>
#include <usbredirparser.h>

typedef struct {
    int fd;                        /* owned; sends and receives do not block */
    struct usbredirparser *parser; /* owned */
    gboolean closed;               /* a read or write failed, or the other end closed */
} FakeUsbredir;

typedef enum {
    FAKE_USBREDIR_NONE = 0,
    FAKE_USBREDIR_USB_HOST = 1 << 0,       /* the device side (usbredirparser_fl_usb_host) */
    FAKE_USBREDIR_BULK_RECEIVING = 1 << 1, /* announce usb_redir_cap_bulk_receiving too */
} FakeUsbredirFlags;

/* Takes @fd; fake->parser reads and writes it, every other callback drops
 * its packet and the log is silent. */
void fake_usbredir_create(FakeUsbredir *fake, int fd);
/* Queues the hello as @version, with the capabilities QEMU and usbredirhost
 * both announce that GwProxy cares about (connect_device_version, filter,
 * device_disconnect_ack, ep_info_max_packet_size, 64bits_ids,
 * 32bits_bulk_length) and those @flags add. */
void fake_usbredir_init(FakeUsbredir *fake, const gchar *version, FakeUsbredirFlags flags);
/* Destroys the parser and closes the socket. */
void fake_usbredir_clear(FakeUsbredir *fake);
