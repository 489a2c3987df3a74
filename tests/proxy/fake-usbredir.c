/* A protocol-level usbredir end; see fake-usbredir.h. */
#include "fake-usbredir.h"

#include <errno.h>
#include <sys/socket.h>
#include <unistd.h>
#include <usbredirfilter.h>

static int
fake_usbredir_read(void *priv, uint8_t *data, int count)
{
    FakeUsbredir *fake = priv;
    ssize_t n = recv(fake->fd, data, (size_t)count, MSG_DONTWAIT);
    if (n > 0)
        return (int)n;
    if (n < 0 && (errno == EAGAIN || errno == EINTR))
        return 0;
    fake->closed = TRUE;
    return -1;
}

static int
fake_usbredir_write(void *priv, uint8_t *data, int count)
{
    FakeUsbredir *fake = priv;
    ssize_t n = send(fake->fd, data, (size_t)count, MSG_DONTWAIT | MSG_NOSIGNAL);
    if (n >= 0)
        return (int)n;
    if (errno == EAGAIN || errno == EINTR)
        return 0;
    fake->closed = TRUE;
    return -1;
}

/* ---- callbacks that drop their packet */

static void
fake_usbredir_ignore_log(void *priv, int level, const char *msg)
{
}

static void
fake_usbredir_ignore_void(void *priv)
{
}

static void
fake_usbredir_ignore_id(void *priv, uint64_t id)
{
}

static void
fake_usbredir_ignore_filter(void *priv, struct usbredirfilter_rule *rules, int count)
{
    usbredirfilter_free(rules);
}

#define FAKE_USBREDIR_IGNORE(name, header)                                                         \
    static void fake_usbredir_ignore_##name(void *priv, struct header *h)                          \
    {                                                                                              \
    }
FAKE_USBREDIR_IGNORE(hello, usb_redir_hello_header)
FAKE_USBREDIR_IGNORE(device_connect, usb_redir_device_connect_header)
FAKE_USBREDIR_IGNORE(interface_info, usb_redir_interface_info_header)
FAKE_USBREDIR_IGNORE(ep_info, usb_redir_ep_info_header)

#define FAKE_USBREDIR_IGNORE_ID(name, header)                                                      \
    static void fake_usbredir_ignore_##name(void *priv, uint64_t id, struct header *h)             \
    {                                                                                              \
    }
FAKE_USBREDIR_IGNORE_ID(set_configuration, usb_redir_set_configuration_header)
FAKE_USBREDIR_IGNORE_ID(configuration_status, usb_redir_configuration_status_header)
FAKE_USBREDIR_IGNORE_ID(set_alt_setting, usb_redir_set_alt_setting_header)
FAKE_USBREDIR_IGNORE_ID(get_alt_setting, usb_redir_get_alt_setting_header)
FAKE_USBREDIR_IGNORE_ID(alt_setting_status, usb_redir_alt_setting_status_header)
FAKE_USBREDIR_IGNORE_ID(start_iso_stream, usb_redir_start_iso_stream_header)
FAKE_USBREDIR_IGNORE_ID(stop_iso_stream, usb_redir_stop_iso_stream_header)
FAKE_USBREDIR_IGNORE_ID(iso_stream_status, usb_redir_iso_stream_status_header)
FAKE_USBREDIR_IGNORE_ID(start_interrupt_receiving, usb_redir_start_interrupt_receiving_header)
FAKE_USBREDIR_IGNORE_ID(stop_interrupt_receiving, usb_redir_stop_interrupt_receiving_header)
FAKE_USBREDIR_IGNORE_ID(interrupt_receiving_status, usb_redir_interrupt_receiving_status_header)
FAKE_USBREDIR_IGNORE_ID(alloc_bulk_streams, usb_redir_alloc_bulk_streams_header)
FAKE_USBREDIR_IGNORE_ID(free_bulk_streams, usb_redir_free_bulk_streams_header)
FAKE_USBREDIR_IGNORE_ID(bulk_streams_status, usb_redir_bulk_streams_status_header)
FAKE_USBREDIR_IGNORE_ID(start_bulk_receiving, usb_redir_start_bulk_receiving_header)
FAKE_USBREDIR_IGNORE_ID(stop_bulk_receiving, usb_redir_stop_bulk_receiving_header)
FAKE_USBREDIR_IGNORE_ID(bulk_receiving_status, usb_redir_bulk_receiving_status_header)

#define FAKE_USBREDIR_IGNORE_DATA(name, header)                                                    \
    static void fake_usbredir_ignore_##name(void *priv, uint64_t id, struct header *h,             \
                                            uint8_t *data, int data_len)                           \
    {                                                                                              \
        FakeUsbredir *fake = priv;                                                                 \
        usbredirparser_free_packet_data(fake->parser, data);                                       \
    }
FAKE_USBREDIR_IGNORE_DATA(control_packet, usb_redir_control_packet_header)
FAKE_USBREDIR_IGNORE_DATA(bulk_packet, usb_redir_bulk_packet_header)
FAKE_USBREDIR_IGNORE_DATA(iso_packet, usb_redir_iso_packet_header)
FAKE_USBREDIR_IGNORE_DATA(interrupt_packet, usb_redir_interrupt_packet_header)
FAKE_USBREDIR_IGNORE_DATA(buffered_bulk_packet, usb_redir_buffered_bulk_packet_header)

void
fake_usbredir_create(FakeUsbredir *fake, int fd)
{
    struct usbredirparser *p = usbredirparser_create();

    fake->fd = fd;
    fake->closed = FALSE;
    fake->parser = p;
    p->priv = fake;
    p->log_func = fake_usbredir_ignore_log;
    p->read_func = fake_usbredir_read;
    p->write_func = fake_usbredir_write;
    p->hello_func = fake_usbredir_ignore_hello;
    p->device_connect_func = fake_usbredir_ignore_device_connect;
    p->device_disconnect_func = fake_usbredir_ignore_void;
    p->interface_info_func = fake_usbredir_ignore_interface_info;
    p->ep_info_func = fake_usbredir_ignore_ep_info;
    p->reset_func = fake_usbredir_ignore_void;
    p->set_configuration_func = fake_usbredir_ignore_set_configuration;
    p->get_configuration_func = fake_usbredir_ignore_id;
    p->configuration_status_func = fake_usbredir_ignore_configuration_status;
    p->set_alt_setting_func = fake_usbredir_ignore_set_alt_setting;
    p->get_alt_setting_func = fake_usbredir_ignore_get_alt_setting;
    p->alt_setting_status_func = fake_usbredir_ignore_alt_setting_status;
    p->start_iso_stream_func = fake_usbredir_ignore_start_iso_stream;
    p->stop_iso_stream_func = fake_usbredir_ignore_stop_iso_stream;
    p->iso_stream_status_func = fake_usbredir_ignore_iso_stream_status;
    p->start_interrupt_receiving_func = fake_usbredir_ignore_start_interrupt_receiving;
    p->stop_interrupt_receiving_func = fake_usbredir_ignore_stop_interrupt_receiving;
    p->interrupt_receiving_status_func = fake_usbredir_ignore_interrupt_receiving_status;
    p->alloc_bulk_streams_func = fake_usbredir_ignore_alloc_bulk_streams;
    p->free_bulk_streams_func = fake_usbredir_ignore_free_bulk_streams;
    p->bulk_streams_status_func = fake_usbredir_ignore_bulk_streams_status;
    p->cancel_data_packet_func = fake_usbredir_ignore_id;
    p->filter_reject_func = fake_usbredir_ignore_void;
    p->filter_filter_func = fake_usbredir_ignore_filter;
    p->device_disconnect_ack_func = fake_usbredir_ignore_void;
    p->start_bulk_receiving_func = fake_usbredir_ignore_start_bulk_receiving;
    p->stop_bulk_receiving_func = fake_usbredir_ignore_stop_bulk_receiving;
    p->bulk_receiving_status_func = fake_usbredir_ignore_bulk_receiving_status;
    p->control_packet_func = fake_usbredir_ignore_control_packet;
    p->bulk_packet_func = fake_usbredir_ignore_bulk_packet;
    p->iso_packet_func = fake_usbredir_ignore_iso_packet;
    p->interrupt_packet_func = fake_usbredir_ignore_interrupt_packet;
    p->buffered_bulk_packet_func = fake_usbredir_ignore_buffered_bulk_packet;
}

void
fake_usbredir_init(FakeUsbredir *fake, const gchar *version, FakeUsbredirFlags flags)
{
    uint32_t caps[USB_REDIR_CAPS_SIZE] = {0};

    usbredirparser_caps_set_cap(caps, usb_redir_cap_connect_device_version);
    usbredirparser_caps_set_cap(caps, usb_redir_cap_filter);
    usbredirparser_caps_set_cap(caps, usb_redir_cap_device_disconnect_ack);
    usbredirparser_caps_set_cap(caps, usb_redir_cap_ep_info_max_packet_size);
    usbredirparser_caps_set_cap(caps, usb_redir_cap_64bits_ids);
    usbredirparser_caps_set_cap(caps, usb_redir_cap_32bits_bulk_length);
    if (flags & FAKE_USBREDIR_BULK_RECEIVING)
        usbredirparser_caps_set_cap(caps, usb_redir_cap_bulk_receiving);
    usbredirparser_init(fake->parser, version, caps, USB_REDIR_CAPS_SIZE,
                        (flags & FAKE_USBREDIR_USB_HOST) ? usbredirparser_fl_usb_host : 0);
}

void
fake_usbredir_clear(FakeUsbredir *fake)
{
    g_clear_pointer(&fake->parser, usbredirparser_destroy);
    if (fake->fd >= 0)
        close(fake->fd);
    fake->fd = -1;
}
