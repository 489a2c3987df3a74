/* QEMU's side of the proxy: QEMU is the usbredir guest; its requests are
 * remembered so that the client's answers can be checked against them. */
#include "gw-proxy-private.h"

#include <string.h>

/* ---- QEMU side: callbacks (QEMU is a usbredir guest) -------------------- */

static gboolean
gw_proxy_qemu_packet(GwProxy *proxy)
{
    if (proxy->ended)
        return FALSE;
    proxy->qemu.packets_in++;
    return TRUE;
}

static void
gw_proxy_qemu_hello(void *priv, struct usb_redir_hello_header *h)
{
    GwProxy *proxy = priv;

    if (!gw_proxy_qemu_packet(proxy))
        return;
    proxy->qemu.hello = TRUE;
    gw_proxy_migration_qemu_hello(proxy);
    gw_proxy_try_forward(proxy);
}

/* Relays a request with an id, recording what must answer it. */
#define GW_PROXY_QEMU_REQUEST(name, header, answer, endpoint_expr)                                 \
    static void gw_proxy_qemu_##name(void *priv, uint64_t id, struct header *h)                    \
    {                                                                                              \
        GwProxy *proxy = priv;                                                                     \
        uint64_t client_id;                                                                        \
        if (!gw_proxy_qemu_packet(proxy) ||                                                        \
            !gw_proxy_qemu_request(proxy, id, answer, endpoint_expr, 0, 0, &client_id))            \
            return;                                                                                \
        usbredirparser_send_##name(proxy->client.parser, client_id, h);                            \
        gw_proxy_count_to_client(proxy);                                                           \
    }
GW_PROXY_QEMU_REQUEST(set_configuration, usb_redir_set_configuration_header,
                      usb_redir_configuration_status, -1)
GW_PROXY_QEMU_REQUEST(set_alt_setting, usb_redir_set_alt_setting_header,
                      usb_redir_alt_setting_status, -1)
GW_PROXY_QEMU_REQUEST(get_alt_setting, usb_redir_get_alt_setting_header,
                      usb_redir_alt_setting_status, -1)
GW_PROXY_QEMU_REQUEST(start_iso_stream, usb_redir_start_iso_stream_header,
                      usb_redir_iso_stream_status, h->endpoint)
GW_PROXY_QEMU_REQUEST(stop_iso_stream, usb_redir_stop_iso_stream_header,
                      usb_redir_iso_stream_status, h->endpoint)
GW_PROXY_QEMU_REQUEST(start_interrupt_receiving, usb_redir_start_interrupt_receiving_header,
                      usb_redir_interrupt_receiving_status, h->endpoint)
GW_PROXY_QEMU_REQUEST(stop_interrupt_receiving, usb_redir_stop_interrupt_receiving_header,
                      usb_redir_interrupt_receiving_status, h->endpoint)
GW_PROXY_QEMU_REQUEST(alloc_bulk_streams, usb_redir_alloc_bulk_streams_header,
                      usb_redir_bulk_streams_status, -1)
GW_PROXY_QEMU_REQUEST(free_bulk_streams, usb_redir_free_bulk_streams_header,
                      usb_redir_bulk_streams_status, -1)
GW_PROXY_QEMU_REQUEST(stop_bulk_receiving, usb_redir_stop_bulk_receiving_header,
                      usb_redir_bulk_receiving_status, h->endpoint)

static void
gw_proxy_qemu_get_configuration(void *priv, uint64_t id)
{
    GwProxy *proxy = priv;
    uint64_t client_id;

    if (!gw_proxy_qemu_packet(proxy) ||
        !gw_proxy_qemu_request(proxy, id, usb_redir_configuration_status, -1, 0, 0, &client_id))
        return;
    usbredirparser_send_get_configuration(proxy->client.parser, client_id);
    gw_proxy_count_to_client(proxy);
}

static void
gw_proxy_qemu_start_bulk_receiving(void *priv, uint64_t id,
                                   struct usb_redir_start_bulk_receiving_header *h)
{
    GwProxy *proxy = priv;
    uint64_t client_id;

    if (!gw_proxy_qemu_packet(proxy))
        return;
    if (h->bytes_per_transfer == 0 || h->bytes_per_transfer > GW_PROXY_MAX_DATA_LEN) {
        gw_proxy_fail(proxy, GW_PROXY_END_QEMU_PROTOCOL,
                      "start_bulk_receiving with %u bytes per transfer (at most %d)",
                      h->bytes_per_transfer, GW_PROXY_MAX_DATA_LEN);
        return;
    }
    if (!gw_proxy_qemu_request(proxy, id, usb_redir_bulk_receiving_status, h->endpoint, 0, 0,
                               &client_id))
        return;
    proxy->bulk_receiving_bytes[GW_PROXY_EP_INDEX(h->endpoint)] = h->bytes_per_transfer;
    usbredirparser_send_start_bulk_receiving(proxy->client.parser, client_id, h);
    gw_proxy_count_to_client(proxy);
}

static void
gw_proxy_qemu_cancel_data_packet(void *priv, uint64_t id)
{
    GwProxy *proxy = priv;
    GwProxyPending *pending;

    if (!gw_proxy_qemu_packet(proxy))
        return;
    pending = g_hash_table_lookup(proxy->pending_by_qemu, &id);
    if (pending == NULL) /* answered already */
        return;
    usbredirparser_send_cancel_data_packet(proxy->client.parser, pending->client_id);
    gw_proxy_count_to_client(proxy);
}

static void
gw_proxy_qemu_reset(void *priv)
{
    GwProxy *proxy = priv;

    if (!gw_proxy_qemu_packet(proxy) || proxy->dev != GW_PROXY_DEV_IN_QEMU ||
        proxy->qemu_awaiting_ack)
        return;
    usbredirparser_send_reset(proxy->client.parser);
    gw_proxy_count_to_client(proxy);
}

static void
gw_proxy_qemu_filter_reject(void *priv)
{
    GwProxy *proxy = priv;

    if (!gw_proxy_qemu_packet(proxy))
        return;
    gw_proxy_log_device(proxy, G_LOG_LEVEL_MESSAGE, NULL, "%s: QEMU's filter rejects the device",
                        proxy->label);
    if (usbredirparser_peer_has_cap(proxy->client.parser, usb_redir_cap_filter)) {
        usbredirparser_send_filter_reject(proxy->client.parser);
        gw_proxy_count_to_client(proxy);
    }
}

static void
gw_proxy_qemu_filter_filter(void *priv, struct usbredirfilter_rule *rules, int rules_count)
{
    GwProxy *proxy = priv;

    if (gw_proxy_qemu_packet(proxy) &&
        usbredirparser_peer_has_cap(proxy->client.parser, usb_redir_cap_filter)) {
        usbredirparser_send_filter_filter(proxy->client.parser, rules, rules_count);
        gw_proxy_count_to_client(proxy);
    }
    usbredirfilter_free(rules);
}

static void
gw_proxy_qemu_device_disconnect_ack(void *priv)
{
    GwProxy *proxy = priv;

    if (!gw_proxy_qemu_packet(proxy))
        return;
    if (!proxy->qemu_awaiting_ack) {
        g_debug("%s: device_disconnect_ack from QEMU without a disconnect", proxy->label);
        return;
    }
    proxy->qemu_awaiting_ack = FALSE;
    gw_proxy_try_forward(proxy);
}

static void
gw_proxy_qemu_control_packet(void *priv, uint64_t id, struct usb_redir_control_packet_header *h,
                             uint8_t *data, int data_len)
{
    GwProxy *proxy = priv;
    uint64_t client_id;

    if (gw_proxy_qemu_packet(proxy) &&
        gw_proxy_qemu_request(proxy, id, usb_redir_control_packet, h->endpoint, h->length, 0,
                              &client_id)) {
        if (gw_proxy_descriptor_is_checked(h->requesttype, h->request))
            gw_proxy_pending_check_descriptor(proxy, client_id, h);
        usbredirparser_send_control_packet(proxy->client.parser, client_id, h, data, data_len);
        gw_proxy_count_to_client(proxy);
    }
    usbredirparser_free_packet_data(proxy->qemu.parser, data);
}

static void
gw_proxy_qemu_bulk_packet(void *priv, uint64_t id, struct usb_redir_bulk_packet_header *h,
                          uint8_t *data, int data_len)
{
    GwProxy *proxy = priv;
    guint32 length = gw_proxy_bulk_length(proxy->qemu.parser, h);
    uint64_t client_id;

    if (!gw_proxy_qemu_packet(proxy))
        goto done;
    if (length > GW_PROXY_MAX_DATA_LEN) {
        gw_proxy_fail(proxy, GW_PROXY_END_QEMU_PROTOCOL, "bulk packet of %u bytes (at most %d)",
                      length, GW_PROXY_MAX_DATA_LEN);
        goto done;
    }
    if (gw_proxy_qemu_request(proxy, id, usb_redir_bulk_packet, h->endpoint, length, h->stream_id,
                              &client_id)) {
        usbredirparser_send_bulk_packet(proxy->client.parser, client_id, h, data, data_len);
        gw_proxy_count_to_client(proxy);
    }
done:
    usbredirparser_free_packet_data(proxy->qemu.parser, data);
}

static void
gw_proxy_qemu_interrupt_packet(void *priv, uint64_t id, struct usb_redir_interrupt_packet_header *h,
                               uint8_t *data, int data_len)
{
    GwProxy *proxy = priv;
    uint64_t client_id;

    /* from a guest the parser only lets OUT interrupt packets through */
    if (gw_proxy_qemu_packet(proxy) &&
        gw_proxy_qemu_request(proxy, id, usb_redir_interrupt_packet, h->endpoint, h->length, 0,
                              &client_id)) {
        usbredirparser_send_interrupt_packet(proxy->client.parser, client_id, h, data, data_len);
        gw_proxy_count_to_client(proxy);
    }
    usbredirparser_free_packet_data(proxy->qemu.parser, data);
}

static void
gw_proxy_qemu_iso_packet(void *priv, uint64_t id, struct usb_redir_iso_packet_header *h,
                         uint8_t *data, int data_len)
{
    GwProxy *proxy = priv;

    /* iso OUT data: no answer, ids are QEMU's own stream counter */
    if (gw_proxy_qemu_packet(proxy) && proxy->dev == GW_PROXY_DEV_IN_QEMU &&
        !proxy->qemu_awaiting_ack) {
        usbredirparser_send_iso_packet(proxy->client.parser, id, h, data, data_len);
        gw_proxy_count_to_client(proxy);
    }
    usbredirparser_free_packet_data(proxy->qemu.parser, data);
}

/* ---- Packets a side can never send --------------------------------------- */

/* usbredirparser rejects packet types sent in the wrong direction before
 * it calls back; these bodies only exist because it calls every callback
 * unchecked. */
void
gw_proxy_unexpected(void *priv)
{
    GwProxy *proxy = priv;
    gw_proxy_fail(proxy, GW_PROXY_END_CLIENT_PROTOCOL, "packet in the wrong direction");
}

void
gw_proxy_unexpected_id(void *priv, uint64_t id)
{
    gw_proxy_unexpected(priv);
}

#define GW_PROXY_DEFINE_UNEXPECTED(name, header)                                                   \
    void gw_proxy_unexpected_##name(void *priv, uint64_t id, struct header *h)                     \
    {                                                                                              \
        gw_proxy_unexpected(priv);                                                                 \
    }
GW_PROXY_UNEXPECTED_PACKETS(GW_PROXY_DEFINE_UNEXPECTED)

static void
gw_proxy_unexpected_connect(void *priv, struct usb_redir_device_connect_header *h)
{
    gw_proxy_unexpected(priv);
}

static void
gw_proxy_unexpected_interface_info(void *priv, struct usb_redir_interface_info_header *h)
{
    gw_proxy_unexpected(priv);
}

static void
gw_proxy_unexpected_ep_info(void *priv, struct usb_redir_ep_info_header *h)
{
    gw_proxy_unexpected(priv);
}

static void
gw_proxy_unexpected_buffered_bulk(void *priv, uint64_t id,
                                  struct usb_redir_buffered_bulk_packet_header *h, uint8_t *data,
                                  int data_len)
{
    GwProxy *proxy = priv;
    usbredirparser_free_packet_data(proxy->qemu.parser, data);
    gw_proxy_unexpected(priv);
}

/* ---- QEMU's parser ---- */

struct usbredirparser *
gw_proxy_qemu_parser_new(GwProxy *proxy)
{
    struct usbredirparser *p = usbredirparser_create();

    if (p == NULL)
        return NULL;
    p->priv = proxy;
    p->log_func = gw_proxy_qemu_log_cb;
    p->read_func = gw_proxy_qemu_read_cb;
    p->write_func = gw_proxy_qemu_write_cb;
    p->hello_func = gw_proxy_qemu_hello;
    p->reset_func = gw_proxy_qemu_reset;
    p->set_configuration_func = gw_proxy_qemu_set_configuration;
    p->get_configuration_func = gw_proxy_qemu_get_configuration;
    p->set_alt_setting_func = gw_proxy_qemu_set_alt_setting;
    p->get_alt_setting_func = gw_proxy_qemu_get_alt_setting;
    p->start_iso_stream_func = gw_proxy_qemu_start_iso_stream;
    p->stop_iso_stream_func = gw_proxy_qemu_stop_iso_stream;
    p->start_interrupt_receiving_func = gw_proxy_qemu_start_interrupt_receiving;
    p->stop_interrupt_receiving_func = gw_proxy_qemu_stop_interrupt_receiving;
    p->alloc_bulk_streams_func = gw_proxy_qemu_alloc_bulk_streams;
    p->free_bulk_streams_func = gw_proxy_qemu_free_bulk_streams;
    p->cancel_data_packet_func = gw_proxy_qemu_cancel_data_packet;
    p->filter_reject_func = gw_proxy_qemu_filter_reject;
    p->filter_filter_func = gw_proxy_qemu_filter_filter;
    p->device_disconnect_ack_func = gw_proxy_qemu_device_disconnect_ack;
    p->start_bulk_receiving_func = gw_proxy_qemu_start_bulk_receiving;
    p->stop_bulk_receiving_func = gw_proxy_qemu_stop_bulk_receiving;
    p->control_packet_func = gw_proxy_qemu_control_packet;
    p->bulk_packet_func = gw_proxy_qemu_bulk_packet;
    p->iso_packet_func = gw_proxy_qemu_iso_packet;
    p->interrupt_packet_func = gw_proxy_qemu_interrupt_packet;
    /* guest-bound types: the parser refuses them from a guest */
    p->device_connect_func = gw_proxy_unexpected_connect;
    p->device_disconnect_func = gw_proxy_unexpected;
    p->interface_info_func = gw_proxy_unexpected_interface_info;
    p->ep_info_func = gw_proxy_unexpected_ep_info;
    p->configuration_status_func = gw_proxy_unexpected_configuration_status;
    p->alt_setting_status_func = gw_proxy_unexpected_alt_setting_status;
    p->iso_stream_status_func = gw_proxy_unexpected_iso_stream_status;
    p->interrupt_receiving_status_func = gw_proxy_unexpected_interrupt_receiving_status;
    p->bulk_streams_status_func = gw_proxy_unexpected_bulk_streams_status;
    p->bulk_receiving_status_func = gw_proxy_unexpected_bulk_receiving_status;
    p->buffered_bulk_packet_func = gw_proxy_unexpected_buffered_bulk;
    return p;
}
