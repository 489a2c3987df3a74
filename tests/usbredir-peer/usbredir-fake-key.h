/* A simulated license key at the protocol level: a usbredir peer in the
 * host role that announces one device and answers the key's
 * challenge-response (tests/sim/key-protocol.h) at once, with no libusb and
 * no umockdev. Used where usbgw must be measured or attacked without a
 * device behind it: proxy-bench, the link benches' exporter, and the
 * dishonest exporter of the link tests (which announces one device and
 * presents another).
 *
 * Threading: as usbredir-peer.h; the key's state is touched only from the
 * peer's events. */
#pragma once

#include "key-protocol.h"
#include "usbredir-peer.h"

typedef struct {
    /* what the peer presents: device_connect's VID:PID and class, one
     * interface of that class (usbredir_peer_announce_device()) */
    guint16 vendor;
    guint16 product;
    guint8 device_class;
    guint8 secret[USBGW_KEY_LEN]; /* the answers' secret */
    /* state */
    gboolean announced;
    guint8 challenge[USBGW_KEY_LEN];
} UsbredirFakeKey;

/* A key 0529:0001 of vendor class ff whose secret is 00 01 … 0f. */
void usbredir_fake_key_init(UsbredirFakeKey *key);
/* The peer on @fd (taken): it announces @key once the guest's hello came;
 * control OUT 0x01 stores a 16-byte challenge, IN 0x02 returns the key
 * function of it. @key (the caller's) must outlive the peer. */
UsbredirPeer *usbredir_fake_key_peer_new(int fd, UsbredirFakeKey *key,
                                         const gchar *version) G_GNUC_WARN_UNUSED_RESULT;
/* The same key without a socket (usbredir_peer_new_buffered()): bytes in
 * with usbredir_peer_feed(), out through @send, whose user_data is @key. */
UsbredirPeer *
usbredir_fake_key_peer_new_buffered(UsbredirFakeKey *key, const gchar *version,
                                    UsbredirPeerSendFunc send) G_GNUC_WARN_UNUSED_RESULT;
