/* The lending client's side of the proxy: the client is a usbredir host
 * nobody trusts, so every packet it sends is checked (device, interfaces,
 * endpoints, answers to QEMU's requests) before QEMU sees it. */
#include "gw-proxy-private.h"

#include <string.h>

/* ---- Client side: validation ------------------------------------------- */

/* Every client packet: counts it; FALSE when it must be ignored (the
 * session ended, or it came before hello, which ends the session). */
static gboolean
gw_proxy_client_packet(GwProxy *proxy, const gchar *what)
{
    if (proxy->ended)
        return FALSE;
    proxy->client.packets_in++;
    if (!proxy->client.hello) {
        gw_proxy_client_violation(proxy, "%s before hello", what);
        return FALSE;
    }
    return TRUE;
}

/* Packets that only make sense while QEMU has the device. */
static gboolean
gw_proxy_client_device_packet(GwProxy *proxy, const gchar *what)
{
    if (!gw_proxy_client_packet(proxy, what))
        return FALSE;
    if (proxy->dev != GW_PROXY_DEV_IN_QEMU) {
        gw_proxy_client_violation(proxy, "%s while no device is connected", what);
        return FALSE;
    }
    return TRUE;
}

static gboolean
gw_proxy_check_interfaces(GwProxy *proxy, const struct usb_redir_interface_info_header *h)
{
    guint32 seen = 0;

    if (h->interface_count > GW_PROXY_MAX_INTERFACES) {
        gw_proxy_client_violation(proxy, "interface_info with %u interfaces (at most %d)",
                                  h->interface_count, GW_PROXY_MAX_INTERFACES);
        return FALSE;
    }
    for (guint32 i = 0; i < h->interface_count; i++) {
        /* interface numbers index a 32-bit set: 32 interfaces at most */
        guint8 number = h->interface[i];
        if (number >= GW_PROXY_MAX_INTERFACES || (seen & (1u << number))) {
            gw_proxy_client_violation(proxy, "interface_info lists interface %u %s", number,
                                      number >= GW_PROXY_MAX_INTERFACES ? "(out of range)"
                                                                        : "twice");
            return FALSE;
        }
        seen |= 1u << number;
    }
    return TRUE;
}

static gboolean
gw_proxy_has_interface(const struct usb_redir_interface_info_header *interfaces, guint8 number)
{
    for (guint32 i = 0; i < interfaces->interface_count; i++) {
        if (interfaces->interface[i] == number)
            return TRUE;
    }
    return FALSE;
}

static gboolean
gw_proxy_check_endpoints(GwProxy *proxy, const struct usb_redir_ep_info_header *h)
{
    for (guint i = 0; i < GW_PROXY_EP_COUNT; i++) {
        guint ep = (i & 0x10) << 3 | (i & 0x0f);
        guint8 type = h->type[i];

        if (i == GW_PROXY_EP0_OUT || i == GW_PROXY_EP0_IN) {
            if (type != usb_redir_type_control) {
                gw_proxy_client_violation(proxy, "ep_info: endpoint %02x is not control", ep);
                return FALSE;
            }
            continue;
        }
        switch (type) {
        case usb_redir_type_invalid:
            continue;
        case usb_redir_type_control:
        case usb_redir_type_iso:
        case usb_redir_type_bulk:
        case usb_redir_type_interrupt:
            break;
        default:
            gw_proxy_client_violation(proxy, "ep_info: endpoint %02x has type %u", ep, type);
            return FALSE;
        }
        if (!gw_proxy_has_interface(&proxy->interfaces, h->interface[i])) {
            gw_proxy_client_violation(proxy,
                                      "ep_info: endpoint %02x belongs to interface %u, which "
                                      "interface_info does not list",
                                      ep, h->interface[i]);
            return FALSE;
        }
        if (h->max_packet_size[i] > GW_PROXY_MAX_EP_PACKET_SIZE) {
            gw_proxy_client_violation(proxy, "ep_info: endpoint %02x max_packet_size %u", ep,
                                      h->max_packet_size[i]);
            return FALSE;
        }
        if (h->max_streams[i] > GW_PROXY_MAX_STREAMS ||
            (h->max_streams[i] != 0 && type != usb_redir_type_bulk)) {
            gw_proxy_client_violation(proxy, "ep_info: endpoint %02x max_streams %u", ep,
                                      h->max_streams[i]);
            return FALSE;
        }
    }
    return TRUE;
}

static guint8
gw_proxy_endpoint_type(GwProxy *proxy, guint8 ep)
{
    return proxy->endpoints.type[GW_PROXY_EP_INDEX(ep)];
}

/* A stream packet (iso/interrupt/buffered bulk data, stream status) must
 * name an endpoint of that type in the client's ep_info. */
static gboolean
gw_proxy_check_stream_endpoint(GwProxy *proxy, guint8 ep, guint8 type, const gchar *what)
{
    if (gw_proxy_endpoint_type(proxy, ep) != type) {
        gw_proxy_client_violation(
            proxy, "%s for endpoint %02x, which ep_info does not give that type", what, ep);
        return FALSE;
    }
    return TRUE;
}

static PolicyDevice *
gw_proxy_build_device(GwProxy *proxy, const struct usb_redir_interface_info_header *interfaces)
{
    PolicyDevice *device = policy_device_new(proxy->connect.vendor_id, proxy->connect.product_id);

    device->bcd_device = proxy->connect.device_version_bcd;
    device->device_class = proxy->connect.device_class;
    device->device_subclass = proxy->connect.device_subclass;
    device->device_protocol = proxy->connect.device_protocol;
    for (guint32 i = 0; i < interfaces->interface_count && i < GW_PROXY_MAX_INTERFACES; i++)
        policy_device_add_interface(device, interfaces->interface_class[i],
                                    interfaces->interface_subclass[i],
                                    interfaces->interface_protocol[i]);
    return device;
}

/* Ends the session: @device (taken) is denied for @reason. */
static void
gw_proxy_deny(GwProxy *proxy, PolicyDevice *device, const gchar *reason)
{
    g_autofree gchar *description = policy_device_describe(device);
    g_autofree gchar *message = g_strdup_printf("device %s denied: %s", description, reason);

    g_clear_pointer(&proxy->denied_device, policy_device_free);
    proxy->denied_device = device;
    gw_proxy_end(proxy, GW_PROXY_END_DENIED, message);
}

/* Asks the owner; on deny the session ends. */
static gboolean
gw_proxy_check_device(GwProxy *proxy, const struct usb_redir_interface_info_header *interfaces)
{
    g_autoptr(PolicyDevice) device = gw_proxy_build_device(proxy, interfaces);
    g_autofree gchar *description = policy_device_describe(device);
    g_autofree gchar *reason = NULL;

    if (proxy->cb.check(proxy, device, &reason, proxy->user_data)) {
        gw_proxy_log_device(proxy, G_LOG_LEVEL_INFO, NULL, "%s: device %s allowed", proxy->label,
                            description);
        return TRUE;
    }
    gw_proxy_deny(proxy, g_steal_pointer(&device),
                  reason != NULL ? reason : "refused by the check");
    return FALSE;
}

static void
gw_proxy_get_approved(GwProxy *proxy, GwProxyApproved *approved)
{
    approved->connect = &proxy->connect;
    approved->check_bcd =
        usbredirparser_peer_has_cap(proxy->client.parser, usb_redir_cap_connect_device_version);
    approved->interfaces = &proxy->approved_interfaces;
    approved->endpoints = &proxy->approved_endpoints;
}

/* What QEMU reads of the device must agree with what was approved; the
 * device as approved is denied otherwise. */
static gboolean
gw_proxy_check_descriptor_answer(GwProxy *proxy, const GwProxyPending *pending, const guint8 *data,
                                 int data_len)
{
    GwProxyApproved approved;
    g_autoptr(GError) error = NULL;

    gw_proxy_get_approved(proxy, &approved);
    if (gw_proxy_descriptor_check(&approved, &pending->control, data, (gsize)MAX(data_len, 0),
                                  &error))
        return TRUE;
    gw_proxy_deny(proxy, gw_proxy_build_device(proxy, &proxy->approved_interfaces), error->message);
    return FALSE;
}

static void
gw_proxy_count_to_qemu(GwProxy *proxy)
{
    proxy->qemu.packets_out++;
}

void
gw_proxy_count_to_client(GwProxy *proxy)
{
    proxy->client.packets_out++;
}

/* Sends the held device to QEMU once it is allowed, QEMU said hello and
 * acknowledged the previous device's disconnect. */
void
gw_proxy_try_forward(GwProxy *proxy)
{
    if (proxy->ended || proxy->dev != GW_PROXY_DEV_ALLOWED || !proxy->qemu.hello ||
        proxy->qemu_awaiting_ack)
        return;
    usbredirparser_send_interface_info(proxy->qemu.parser, &proxy->interfaces);
    usbredirparser_send_ep_info(proxy->qemu.parser, &proxy->endpoints);
    usbredirparser_send_device_connect(proxy->qemu.parser, &proxy->connect);
    proxy->qemu.packets_out += 3;
    proxy->dev = GW_PROXY_DEV_IN_QEMU;
    g_clear_pointer(&proxy->connected_device, policy_device_free);
    proxy->connected_device = gw_proxy_build_device(proxy, &proxy->interfaces);
    gw_proxy_notify_later(proxy);
}

/* ---- Client side: callbacks (the client is a usbredir host) ------------ */

static void
gw_proxy_client_hello(void *priv, struct usb_redir_hello_header *h)
{
    GwProxy *proxy = priv;
    gchar version[sizeof(h->version) + 1] = {0};
    g_autofree gchar *escaped = NULL;

    if (proxy->ended)
        return;
    proxy->client.packets_in++;
    memcpy(version, h->version, sizeof(h->version));
    escaped = g_strescape(version, NULL);
    gw_proxy_log_device(proxy, G_LOG_LEVEL_INFO, NULL, "%s: client is \"%s\"", proxy->label,
                        escaped);
    proxy->client.hello = TRUE;
    gw_proxy_init_qemu(proxy);
}

static void
gw_proxy_client_interface_info(void *priv, struct usb_redir_interface_info_header *h)
{
    GwProxy *proxy = priv;

    if (!gw_proxy_client_packet(proxy, "interface_info") || !gw_proxy_check_interfaces(proxy, h))
        return;
    switch (proxy->dev) {
    case GW_PROXY_DEV_NONE:
        proxy->interfaces = *h;
        proxy->dev = GW_PROXY_DEV_INTERFACES;
        break;
    case GW_PROXY_DEV_INTERFACES:
    case GW_PROXY_DEV_ENDPOINTS:
    case GW_PROXY_DEV_ALLOWED:
        gw_proxy_client_violation(proxy, "interface_info twice before QEMU got the device");
        break;
    case GW_PROXY_DEV_IN_QEMU: {
        /* a new configuration or alternate setting: only approved
         * interfaces with their approved classes, and the device must
         * still pass with them */
        GwProxyApproved approved;
        g_autoptr(GError) error = NULL;
        gw_proxy_get_approved(proxy, &approved);
        if (!gw_proxy_interfaces_check_approved(&approved, h, &error)) {
            gw_proxy_deny(proxy, gw_proxy_build_device(proxy, &proxy->approved_interfaces),
                          error->message);
            return;
        }
        if (!gw_proxy_check_device(proxy, h))
            return;
        proxy->interfaces = *h;
        usbredirparser_send_interface_info(proxy->qemu.parser, &proxy->interfaces);
        gw_proxy_count_to_qemu(proxy);
        break;
    }
    }
}

static void
gw_proxy_client_ep_info(void *priv, struct usb_redir_ep_info_header *h)
{
    GwProxy *proxy = priv;
    struct usb_redir_ep_info_header ep = *h;

    if (!gw_proxy_client_packet(proxy, "ep_info"))
        return;
    /* fields the client's capabilities leave out are not sent: do not
     * relay what the parser left in them */
    if (!usbredirparser_peer_has_cap(proxy->client.parser, usb_redir_cap_ep_info_max_packet_size))
        memset(ep.max_packet_size, 0, sizeof(ep.max_packet_size));
    if (!usbredirparser_peer_has_cap(proxy->client.parser, usb_redir_cap_bulk_streams))
        memset(ep.max_streams, 0, sizeof(ep.max_streams));
    switch (proxy->dev) {
    case GW_PROXY_DEV_NONE:
        gw_proxy_client_violation(proxy, "ep_info before interface_info");
        return;
    case GW_PROXY_DEV_ENDPOINTS:
    case GW_PROXY_DEV_ALLOWED:
        gw_proxy_client_violation(proxy, "ep_info twice before QEMU got the device");
        return;
    case GW_PROXY_DEV_INTERFACES:
    case GW_PROXY_DEV_IN_QEMU:
        break;
    }
    if (!gw_proxy_check_endpoints(proxy, &ep))
        return;
    proxy->endpoints = ep;
    if (proxy->dev == GW_PROXY_DEV_INTERFACES) {
        proxy->dev = GW_PROXY_DEV_ENDPOINTS;
        return;
    }
    usbredirparser_send_ep_info(proxy->qemu.parser, &proxy->endpoints);
    gw_proxy_count_to_qemu(proxy);
}

static void
gw_proxy_client_device_connect(void *priv, struct usb_redir_device_connect_header *h)
{
    GwProxy *proxy = priv;

    if (!gw_proxy_client_packet(proxy, "device_connect"))
        return;
    switch (proxy->dev) {
    case GW_PROXY_DEV_NONE:
    case GW_PROXY_DEV_INTERFACES:
        gw_proxy_client_violation(proxy, "device_connect before interface_info and ep_info");
        return;
    case GW_PROXY_DEV_ALLOWED:
    case GW_PROXY_DEV_IN_QEMU:
        gw_proxy_client_violation(proxy, "device_connect twice");
        return;
    case GW_PROXY_DEV_ENDPOINTS:
        break;
    }
    switch (h->speed) {
    case usb_redir_speed_low:
    case usb_redir_speed_full:
    case usb_redir_speed_high:
    case usb_redir_speed_super:
    case usb_redir_speed_unknown:
        break;
    default:
        gw_proxy_client_violation(proxy, "device_connect with speed %u", h->speed);
        return;
    }
    proxy->connect = *h;
    if (!usbredirparser_peer_has_cap(proxy->client.parser, usb_redir_cap_connect_device_version))
        proxy->connect.device_version_bcd = 0;
    if (!gw_proxy_check_device(proxy, &proxy->interfaces))
        return;
    proxy->approved_interfaces = proxy->interfaces;
    proxy->approved_endpoints = proxy->endpoints;
    proxy->dev = GW_PROXY_DEV_ALLOWED;
    gw_proxy_try_forward(proxy);
}

static void
gw_proxy_client_device_disconnect(void *priv)
{
    GwProxy *proxy = priv;

    if (!gw_proxy_client_packet(proxy, "device_disconnect"))
        return;
    /* usbredirparser acknowledges to the client itself, right after this
     * callback; a next device waits for QEMU's acknowledgement instead
     * (gw_proxy_try_forward) */
    if (proxy->dev == GW_PROXY_DEV_IN_QEMU) {
        usbredirparser_send_device_disconnect(proxy->qemu.parser);
        gw_proxy_count_to_qemu(proxy);
        gw_proxy_pending_make_stale(proxy);
        gw_proxy_log_device(proxy, G_LOG_LEVEL_INFO, NULL, "%s: the client's device left",
                            proxy->label);
        if (usbredirparser_peer_has_cap(proxy->qemu.parser, usb_redir_cap_device_disconnect_ack))
            proxy->qemu_awaiting_ack = TRUE;
    }
    proxy->dev = GW_PROXY_DEV_NONE;
    memset(&proxy->interfaces, 0, sizeof(proxy->interfaces));
    memset(&proxy->endpoints, 0, sizeof(proxy->endpoints));
    memset(&proxy->approved_interfaces, 0, sizeof(proxy->approved_interfaces));
    memset(&proxy->approved_endpoints, 0, sizeof(proxy->approved_endpoints));
    memset(proxy->bulk_receiving_bytes, 0, sizeof(proxy->bulk_receiving_bytes));
}

#define GW_PROXY_CLIENT_STATUS(name, header, what)                                                 \
    static void gw_proxy_client_##name(void *priv, uint64_t id, struct header *h)                  \
    {                                                                                              \
        GwProxy *proxy = priv;                                                                     \
        GwProxyPending pending;                                                                    \
        if (!gw_proxy_client_packet(proxy, what) ||                                                \
            !gw_proxy_take_answer(proxy, id, usb_redir_##name, -1, what, &pending))                \
            return;                                                                                \
        usbredirparser_send_##name(proxy->qemu.parser, pending.qemu_id, h);                        \
        gw_proxy_count_to_qemu(proxy);                                                             \
    }
GW_PROXY_CLIENT_STATUS(configuration_status, usb_redir_configuration_status_header,
                       "configuration_status")
GW_PROXY_CLIENT_STATUS(alt_setting_status, usb_redir_alt_setting_status_header,
                       "alt_setting_status")
GW_PROXY_CLIENT_STATUS(bulk_streams_status, usb_redir_bulk_streams_status_header,
                       "bulk_streams_status")

#define GW_PROXY_CLIENT_STREAM_STATUS(name, header, what, type)                                    \
    static void gw_proxy_client_##name(void *priv, uint64_t id, struct header *h)                  \
    {                                                                                              \
        GwProxy *proxy = priv;                                                                     \
        uint64_t qemu_id = id;                                                                     \
        gboolean stale = FALSE;                                                                    \
        if (!gw_proxy_client_packet(proxy, what))                                                  \
            return;                                                                                \
        if (gw_proxy_try_take_stream_answer(proxy, id, usb_redir_##name, h->endpoint, &qemu_id,    \
                                            &stale) &&                                             \
            stale)                                                                                 \
            return;                                                                                \
        if (proxy->dev != GW_PROXY_DEV_IN_QEMU) {                                                  \
            gw_proxy_client_violation(proxy, "%s while no device is connected", what);             \
            return;                                                                                \
        }                                                                                          \
        if (!gw_proxy_check_stream_endpoint(proxy, h->endpoint, type, what))                       \
            return;                                                                                \
        usbredirparser_send_##name(proxy->qemu.parser, qemu_id, h);                                \
        gw_proxy_count_to_qemu(proxy);                                                             \
    }
GW_PROXY_CLIENT_STREAM_STATUS(iso_stream_status, usb_redir_iso_stream_status_header,
                              "iso_stream_status", usb_redir_type_iso)
GW_PROXY_CLIENT_STREAM_STATUS(interrupt_receiving_status,
                              usb_redir_interrupt_receiving_status_header,
                              "interrupt_receiving_status", usb_redir_type_interrupt)
GW_PROXY_CLIENT_STREAM_STATUS(bulk_receiving_status, usb_redir_bulk_receiving_status_header,
                              "bulk_receiving_status", usb_redir_type_bulk)

static void
gw_proxy_client_filter_filter(void *priv, struct usbredirfilter_rule *rules, int rules_count)
{
    GwProxy *proxy = priv;

    if (gw_proxy_client_packet(proxy, "filter_filter"))
        g_debug("%s: the client's filter (%d rules) is not relayed", proxy->label, rules_count);
    usbredirfilter_free(rules);
}

/* An answer's data must not exceed what was asked for. */
static gboolean
gw_proxy_check_answer_length(GwProxy *proxy, const GwProxyPending *pending, guint32 length,
                             const gchar *what)
{
    if (length > pending->length) {
        gw_proxy_client_violation(proxy, "%s answer of %u bytes, %u were asked for", what, length,
                                  pending->length);
        return FALSE;
    }
    return TRUE;
}

static void
gw_proxy_client_control_packet(void *priv, uint64_t id, struct usb_redir_control_packet_header *h,
                               uint8_t *data, int data_len)
{
    GwProxy *proxy = priv;
    GwProxyPending pending;

    if (gw_proxy_client_packet(proxy, "control packet") &&
        gw_proxy_take_answer(proxy, id, usb_redir_control_packet, h->endpoint, "control packet",
                             &pending) &&
        gw_proxy_check_answer_length(proxy, &pending, h->length, "control packet") &&
        (!pending.check_descriptor ||
         gw_proxy_check_descriptor_answer(proxy, &pending, data, data_len))) {
        usbredirparser_send_control_packet(proxy->qemu.parser, pending.qemu_id, h, data, data_len);
        gw_proxy_count_to_qemu(proxy);
    }
    usbredirparser_free_packet_data(proxy->client.parser, data);
}

guint32
gw_proxy_bulk_length(struct usbredirparser *parser, const struct usb_redir_bulk_packet_header *h)
{
    /* the parser clears length_high unless both sides have the cap */
    return (guint32)h->length_high << 16 | h->length;
}

static void
gw_proxy_client_bulk_packet(void *priv, uint64_t id, struct usb_redir_bulk_packet_header *h,
                            uint8_t *data, int data_len)
{
    GwProxy *proxy = priv;
    GwProxyPending pending;

    if (gw_proxy_client_packet(proxy, "bulk packet") &&
        gw_proxy_take_answer(proxy, id, usb_redir_bulk_packet, h->endpoint, "bulk packet",
                             &pending) &&
        gw_proxy_check_answer_length(proxy, &pending, gw_proxy_bulk_length(proxy->client.parser, h),
                                     "bulk packet")) {
        if (h->stream_id != pending.stream_id) {
            gw_proxy_client_violation(proxy, "bulk answer for stream %u, asked on stream %u",
                                      h->stream_id, pending.stream_id);
        } else {
            usbredirparser_send_bulk_packet(proxy->qemu.parser, pending.qemu_id, h, data, data_len);
            gw_proxy_count_to_qemu(proxy);
        }
    }
    usbredirparser_free_packet_data(proxy->client.parser, data);
}

static void
gw_proxy_client_interrupt_packet(void *priv, uint64_t id,
                                 struct usb_redir_interrupt_packet_header *h, uint8_t *data,
                                 int data_len)
{
    GwProxy *proxy = priv;
    GwProxyPending pending;
    uint64_t qemu_id = id;

    if (!gw_proxy_client_device_packet(proxy, "interrupt packet"))
        goto done;
    if (h->endpoint & 0x80) {
        /* interrupt receiving: data the device sent */
        if (!gw_proxy_check_stream_endpoint(proxy, h->endpoint, usb_redir_type_interrupt,
                                            "interrupt packet"))
            goto done;
        if (data_len > GW_PROXY_MAX_EP_PACKET_SIZE) {
            gw_proxy_client_violation(proxy, "interrupt packet of %d bytes", data_len);
            goto done;
        }
    } else {
        if (!gw_proxy_take_answer(proxy, id, usb_redir_interrupt_packet, h->endpoint,
                                  "interrupt packet", &pending) ||
            !gw_proxy_check_answer_length(proxy, &pending, h->length, "interrupt packet"))
            goto done;
        qemu_id = pending.qemu_id;
    }
    usbredirparser_send_interrupt_packet(proxy->qemu.parser, qemu_id, h, data, data_len);
    gw_proxy_count_to_qemu(proxy);
done:
    usbredirparser_free_packet_data(proxy->client.parser, data);
}

static void
gw_proxy_client_iso_packet(void *priv, uint64_t id, struct usb_redir_iso_packet_header *h,
                           uint8_t *data, int data_len)
{
    GwProxy *proxy = priv;

    /* the parser only lets IN iso packets come from a host */
    if (gw_proxy_client_device_packet(proxy, "iso packet") &&
        gw_proxy_check_stream_endpoint(proxy, h->endpoint, usb_redir_type_iso, "iso packet")) {
        if (data_len > GW_PROXY_MAX_EP_PACKET_SIZE) {
            gw_proxy_client_violation(proxy, "iso packet of %d bytes", data_len);
        } else {
            usbredirparser_send_iso_packet(proxy->qemu.parser, id, h, data, data_len);
            gw_proxy_count_to_qemu(proxy);
        }
    }
    usbredirparser_free_packet_data(proxy->client.parser, data);
}

static void
gw_proxy_client_buffered_bulk_packet(void *priv, uint64_t id,
                                     struct usb_redir_buffered_bulk_packet_header *h, uint8_t *data,
                                     int data_len)
{
    GwProxy *proxy = priv;

    if (gw_proxy_client_device_packet(proxy, "buffered bulk packet") &&
        gw_proxy_check_stream_endpoint(proxy, h->endpoint, usb_redir_type_bulk,
                                       "buffered bulk packet")) {
        guint32 limit = proxy->bulk_receiving_bytes[GW_PROXY_EP_INDEX(h->endpoint)];
        if (limit == 0) {
            gw_proxy_client_violation(proxy,
                                      "buffered bulk packet on endpoint %02x, where QEMU never "
                                      "started bulk receiving",
                                      h->endpoint);
        } else if (h->length > limit) {
            gw_proxy_client_violation(proxy, "buffered bulk packet of %u bytes (at most %u)",
                                      h->length, limit);
        } else {
            usbredirparser_send_buffered_bulk_packet(proxy->qemu.parser, id, h, data, data_len);
            gw_proxy_count_to_qemu(proxy);
        }
    }
    usbredirparser_free_packet_data(proxy->client.parser, data);
}

/* ---- The client's parser ---- */

struct usbredirparser *
gw_proxy_client_parser_new(GwProxy *proxy)
{
    struct usbredirparser *p = usbredirparser_create();

    if (p == NULL)
        return NULL;
    p->priv = proxy;
    p->log_func = gw_proxy_client_log_cb;
    p->read_func = gw_proxy_client_read_cb;
    p->write_func = gw_proxy_client_write_cb;
    p->hello_func = gw_proxy_client_hello;
    p->device_connect_func = gw_proxy_client_device_connect;
    p->device_disconnect_func = gw_proxy_client_device_disconnect;
    p->interface_info_func = gw_proxy_client_interface_info;
    p->ep_info_func = gw_proxy_client_ep_info;
    p->configuration_status_func = gw_proxy_client_configuration_status;
    p->alt_setting_status_func = gw_proxy_client_alt_setting_status;
    p->iso_stream_status_func = gw_proxy_client_iso_stream_status;
    p->interrupt_receiving_status_func = gw_proxy_client_interrupt_receiving_status;
    p->bulk_streams_status_func = gw_proxy_client_bulk_streams_status;
    p->bulk_receiving_status_func = gw_proxy_client_bulk_receiving_status;
    p->filter_filter_func = gw_proxy_client_filter_filter;
    p->control_packet_func = gw_proxy_client_control_packet;
    p->bulk_packet_func = gw_proxy_client_bulk_packet;
    p->iso_packet_func = gw_proxy_client_iso_packet;
    p->interrupt_packet_func = gw_proxy_client_interrupt_packet;
    p->buffered_bulk_packet_func = gw_proxy_client_buffered_bulk_packet;
    /* host-bound types: the parser refuses them from a host */
    p->reset_func = gw_proxy_unexpected;
    p->set_configuration_func = gw_proxy_unexpected_set_configuration;
    p->get_configuration_func = gw_proxy_unexpected_id;
    p->set_alt_setting_func = gw_proxy_unexpected_set_alt_setting;
    p->get_alt_setting_func = gw_proxy_unexpected_get_alt_setting;
    p->start_iso_stream_func = gw_proxy_unexpected_start_iso_stream;
    p->stop_iso_stream_func = gw_proxy_unexpected_stop_iso_stream;
    p->start_interrupt_receiving_func = gw_proxy_unexpected_start_interrupt_receiving;
    p->stop_interrupt_receiving_func = gw_proxy_unexpected_stop_interrupt_receiving;
    p->alloc_bulk_streams_func = gw_proxy_unexpected_alloc_bulk_streams;
    p->free_bulk_streams_func = gw_proxy_unexpected_free_bulk_streams;
    p->cancel_data_packet_func = gw_proxy_unexpected_id;
    p->filter_reject_func = gw_proxy_unexpected;
    p->device_disconnect_ack_func = gw_proxy_unexpected;
    p->start_bulk_receiving_func = gw_proxy_unexpected_start_bulk_receiving;
    p->stop_bulk_receiving_func = gw_proxy_unexpected_stop_bulk_receiving;
    return p;
}
