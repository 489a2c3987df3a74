/* A simulated license key at the protocol level. */
#include "usbredir-fake-key.h"

#include <string.h>

void
usbredir_fake_key_init(UsbredirFakeKey *key)
{
    memset(key, 0, sizeof(*key));
    key->vendor = 0x0529;
    key->product = 0x0001;
    key->device_class = 0xff;
    for (guint i = 0; i < USBGW_KEY_LEN; i++)
        key->secret[i] = (guint8)i;
}

static void
usbredir_fake_key_hello(UsbredirPeer *peer, const struct usb_redir_hello_header *hello,
                        gpointer user_data)
{
    UsbredirFakeKey *key = user_data;

    if (key->announced)
        return;
    key->announced = TRUE;
    usbredir_peer_announce_device(peer, key->vendor, key->product, key->device_class);
}

static void
usbredir_fake_key_control(UsbredirPeer *peer, const UsbredirPeerControl *control,
                          gpointer user_data)
{
    UsbredirFakeKey *key = user_data;
    struct usbredirparser *parser = usbredir_peer_get_parser(peer);
    struct usb_redir_control_packet_header answer = control->header;
    guint8 response[USBGW_KEY_LEN];

    answer.status = usb_redir_success;
    if (!(control->header.endpoint & 0x80)) {
        if (control->header.request == USBGW_KEY_REQ_CHALLENGE && control->length == USBGW_KEY_LEN)
            memcpy(key->challenge, control->data, USBGW_KEY_LEN);
        usbredirparser_send_control_packet(parser, control->id, &answer, NULL, 0);
        return;
    }
    usbgw_key_compute(key->secret, key->challenge, response);
    answer.length = MIN(control->header.length, USBGW_KEY_LEN);
    usbredirparser_send_control_packet(parser, control->id, &answer, response, answer.length);
}

static const UsbredirPeerEvents usbredir_fake_key_events = {
    .hello = usbredir_fake_key_hello,
    .control_packet = usbredir_fake_key_control,
};

static void
usbredir_fake_key_config(UsbredirPeerConfig *config, const gchar *version)
{
    *config = (UsbredirPeerConfig){
        .role = USBREDIR_PEER_HOST,
        .version = version,
        .label = "fake key",
        .caps = USBREDIR_PEER_CAP_FILTER | USBREDIR_PEER_CAP_DEVICE_DISCONNECT_ACK,
        .log_level = usbredirparser_error,
    };
}

UsbredirPeer *
usbredir_fake_key_peer_new(int fd, UsbredirFakeKey *key, const gchar *version)
{
    UsbredirPeerConfig config;

    usbredir_fake_key_config(&config, version);
    return usbredir_peer_new(fd, &config, &usbredir_fake_key_events, key);
}

UsbredirPeer *
usbredir_fake_key_peer_new_buffered(UsbredirFakeKey *key, const gchar *version,
                                    UsbredirPeerSendFunc send)
{
    UsbredirPeerConfig config;

    usbredir_fake_key_config(&config, version);
    return usbredir_peer_new_buffered(&config, send, &usbredir_fake_key_events, key);
}
