/* usbgw-sim-client: the tests' libusb client for usbgw-sim keys.
 *
 *   usbgw-sim-client VID:PID [--port DEVPATH] challenge HEX32 [--expect-secret HEX32]
 *   usbgw-sim-client VID:PID [--port DEVPATH] response [--timeout MS]
 *   usbgw-sim-client wait-arrive|wait-leave VID:PID [--port DEVPATH] [--timeout MS]
 *   usbgw-sim-client list
 *   usbgw-sim-client ctl SOCKET COMMAND [ARG]
 *
 * The key protocol (vendor control or HID) follows the class of the
 * device's first interface. "response" reads without a challenge first.
 * Exit status: see SimClientError. */
#include <stdio.h>
#include <gio/gio.h>
#include <gio/gunixsocketaddress.h>
#include <libusb.h>
#include <string.h>

#include "key-protocol.h"
#include "sim-hex.h"

#define SIM_CLIENT_TRANSFER_TIMEOUT_MS 2000
#define SIM_CLIENT_WAIT_TIMEOUT_MS     5000
#define SIM_CLIENT_CTL_TIMEOUT_S       10
#define SIM_CLIENT_POLL_MS             100 /* longest nap between libusb event checks */
#define SIM_CLIENT_HID_SET_REPORT      0x09
#define SIM_CLIENT_HID_OUTPUT_ID_0     0x0200

/* The codes are the exit statuses. */
typedef enum {
    SIM_CLIENT_ERROR_FAILED = 1,
    SIM_CLIENT_ERROR_USAGE = 2,
    SIM_CLIENT_ERROR_STALL = 3,
    SIM_CLIENT_ERROR_TIMEOUT = 4,
    SIM_CLIENT_ERROR_NO_DEVICE = 5,
    SIM_CLIENT_ERROR_BUSY = 6,
} SimClientError;

#define SIM_CLIENT_ERROR (sim_client_error_quark())

static GQuark
sim_client_error_quark(void)
{
    return g_quark_from_static_string("usbgw-sim-client-error");
}

typedef struct {
    guint16 vid;
    guint16 pid;
    const char *port; /* nullable: any */
} SimClientMatch;

static gboolean
sim_client_check(int rc, const char *what, GError **error)
{
    SimClientError code = SIM_CLIENT_ERROR_FAILED;

    if (rc >= 0)
        return TRUE;
    switch ((enum libusb_error)rc) {
    case LIBUSB_ERROR_BUSY:
        code = SIM_CLIENT_ERROR_BUSY;
        break;
    case LIBUSB_ERROR_PIPE:
        code = SIM_CLIENT_ERROR_STALL;
        break;
    case LIBUSB_ERROR_TIMEOUT:
        code = SIM_CLIENT_ERROR_TIMEOUT;
        break;
    case LIBUSB_ERROR_NO_DEVICE:
    case LIBUSB_ERROR_NOT_FOUND:
        code = SIM_CLIENT_ERROR_NO_DEVICE;
        break;
    case LIBUSB_SUCCESS:
    case LIBUSB_ERROR_IO:
    case LIBUSB_ERROR_INVALID_PARAM:
    case LIBUSB_ERROR_ACCESS:
    case LIBUSB_ERROR_OVERFLOW:
    case LIBUSB_ERROR_INTERRUPTED:
    case LIBUSB_ERROR_NO_MEM:
    case LIBUSB_ERROR_NOT_SUPPORTED:
    case LIBUSB_ERROR_OTHER:
        code = SIM_CLIENT_ERROR_FAILED;
        break;
    }
    g_set_error(error, SIM_CLIENT_ERROR, code, "%s: %s", what, libusb_strerror(rc));
    return FALSE;
}

static gboolean
sim_client_check_transfer(enum libusb_transfer_status status, GError **error)
{
    switch (status) {
    case LIBUSB_TRANSFER_COMPLETED:
        return TRUE;
    case LIBUSB_TRANSFER_STALL:
        return sim_client_check(LIBUSB_ERROR_PIPE, "interrupt IN", error);
    case LIBUSB_TRANSFER_TIMED_OUT:
        return sim_client_check(LIBUSB_ERROR_TIMEOUT, "interrupt IN", error);
    case LIBUSB_TRANSFER_NO_DEVICE:
        return sim_client_check(LIBUSB_ERROR_NO_DEVICE, "interrupt IN", error);
    case LIBUSB_TRANSFER_ERROR:
    case LIBUSB_TRANSFER_CANCELLED:
    case LIBUSB_TRANSFER_OVERFLOW:
        break;
    }
    return sim_client_check(LIBUSB_ERROR_IO, "interrupt IN", error);
}

/* "1-3.1" for bus 1, ports 3 and 1; "usb1" for the root hub. */
static char *
sim_client_port_path(libusb_device *dev)
{
    uint8_t ports[8];
    int n = libusb_get_port_numbers(dev, ports, sizeof(ports));
    GString *path = g_string_new(NULL);

    if (n <= 0) {
        g_string_printf(path, "usb%u", libusb_get_bus_number(dev));
        return g_string_free(path, FALSE);
    }
    g_string_printf(path, "%u", libusb_get_bus_number(dev));
    for (int i = 0; i < n; i++)
        g_string_append_printf(path, "%c%u", i == 0 ? '-' : '.', ports[i]);
    return g_string_free(path, FALSE);
}

static gboolean
sim_client_matches(libusb_device *dev, const SimClientMatch *match)
{
    struct libusb_device_descriptor desc;

    if (libusb_get_device_descriptor(dev, &desc) != 0 || desc.idVendor != match->vid ||
        desc.idProduct != match->pid)
        return FALSE;
    if (match->port == NULL)
        return TRUE;
    g_autofree char *port = sim_client_port_path(dev);
    return g_str_equal(port, match->port);
}

static gboolean
sim_client_parse_id(const char *text, SimClientMatch *match, GError **error)
{
    g_auto(GStrv) parts = g_strsplit(text, ":", 2);
    guint64 vid, pid;

    if (parts[0] == NULL || parts[1] == NULL ||
        !g_ascii_string_to_unsigned(parts[0], 16, 0, 0xffff, &vid, NULL) ||
        !g_ascii_string_to_unsigned(parts[1], 16, 0, 0xffff, &pid, NULL)) {
        g_set_error(error, SIM_CLIENT_ERROR, SIM_CLIENT_ERROR_USAGE,
                    "'%s': expected VID:PID in hex, e.g. 0529:0001", text);
        return FALSE;
    }
    match->vid = (guint16)vid;
    match->pid = (guint16)pid;
    return TRUE;
}

static libusb_device_handle *
sim_client_open(libusb_context *ctx, const SimClientMatch *match, GError **error)
{
    libusb_device **list = NULL;
    libusb_device *found = NULL;
    libusb_device_handle *handle = NULL;
    g_autoptr(GString) ports = g_string_new(NULL);
    guint n_found = 0;
    ssize_t n = libusb_get_device_list(ctx, &list);

    if (!sim_client_check((int)n, "listing devices", error))
        return NULL;
    for (ssize_t i = 0; i < n; i++) {
        if (!sim_client_matches(list[i], match))
            continue;
        g_autofree char *port = sim_client_port_path(list[i]);
        g_string_append_printf(ports, "%s%s", n_found > 0 ? ", " : "", port);
        found = list[i];
        n_found++;
    }
    if (n_found == 1) {
        g_autofree char *what = g_strdup_printf("opening %04x:%04x", match->vid, match->pid);
        if (sim_client_check(libusb_open(found, &handle), what, error))
            g_assert(handle != NULL);
    } else if (n_found == 0) {
        g_set_error(error, SIM_CLIENT_ERROR, SIM_CLIENT_ERROR_NO_DEVICE, "no device %04x:%04x%s%s",
                    match->vid, match->pid, match->port ? " at " : "",
                    match->port ? match->port : "");
    } else {
        g_set_error(error, SIM_CLIENT_ERROR, SIM_CLIENT_ERROR_FAILED,
                    "%u devices are %04x:%04x; choose one with --port (%s)", n_found, match->vid,
                    match->pid, ports->str);
    }
    libusb_free_device_list(list, TRUE);
    return handle;
}

typedef struct {
    guint8 interface_class;
    guint8 interrupt_in; /* 0: none */
    guint16 interrupt_in_size;
} SimClientKeyInfo;

static gboolean
sim_client_key_info(libusb_device_handle *handle, SimClientKeyInfo *info, GError **error)
{
    struct libusb_config_descriptor *config = NULL;

    if (!sim_client_check(libusb_get_active_config_descriptor(libusb_get_device(handle), &config),
                          "reading the configuration", error))
        return FALSE;
    memset(info, 0, sizeof(*info));
    if (config->bNumInterfaces > 0 && config->interface[0].num_altsetting > 0) {
        const struct libusb_interface_descriptor *intf = &config->interface[0].altsetting[0];
        info->interface_class = intf->bInterfaceClass;
        for (int i = 0; i < intf->bNumEndpoints; i++) {
            const struct libusb_endpoint_descriptor *ep = &intf->endpoint[i];
            if ((ep->bmAttributes & LIBUSB_TRANSFER_TYPE_MASK) == LIBUSB_TRANSFER_TYPE_INTERRUPT &&
                (ep->bEndpointAddress & LIBUSB_ENDPOINT_IN) && info->interrupt_in == 0) {
                info->interrupt_in = ep->bEndpointAddress;
                info->interrupt_in_size = ep->wMaxPacketSize;
            }
        }
    }
    libusb_free_config_descriptor(config);
    if (info->interface_class == LIBUSB_CLASS_HID && info->interrupt_in == 0) {
        g_set_error(error, SIM_CLIENT_ERROR, SIM_CLIENT_ERROR_FAILED,
                    "HID interface without an interrupt IN endpoint");
        return FALSE;
    }
    if (info->interface_class != LIBUSB_CLASS_HID &&
        info->interface_class != LIBUSB_CLASS_VENDOR_SPEC) {
        g_set_error(error, SIM_CLIENT_ERROR, SIM_CLIENT_ERROR_FAILED,
                    "interface class 0x%02x is not a key (vendor 0xff or HID 0x03)",
                    info->interface_class);
        return FALSE;
    }
    return TRUE;
}

static gboolean
sim_client_check_len(int rc, const char *what, GError **error)
{
    if (!sim_client_check(rc, what, error))
        return FALSE;
    if (rc != USBGW_KEY_LEN) {
        g_set_error(error, SIM_CLIENT_ERROR, SIM_CLIENT_ERROR_FAILED, "%s: %d bytes instead of %d",
                    what, rc, USBGW_KEY_LEN);
        return FALSE;
    }
    return TRUE;
}

static gboolean
sim_client_vendor_exchange(libusb_device_handle *handle, const guint8 *challenge,
                           guint8 response[USBGW_KEY_LEN], GError **error)
{
    if (challenge != NULL &&
        !sim_client_check_len(
            libusb_control_transfer(
                handle, LIBUSB_ENDPOINT_OUT | LIBUSB_REQUEST_TYPE_VENDOR | LIBUSB_RECIPIENT_DEVICE,
                USBGW_KEY_REQ_CHALLENGE, 0, 0, (guint8 *)challenge, USBGW_KEY_LEN,
                SIM_CLIENT_TRANSFER_TIMEOUT_MS),
            "vendor challenge", error))
        return FALSE;
    return sim_client_check_len(
        libusb_control_transfer(
            handle, LIBUSB_ENDPOINT_IN | LIBUSB_REQUEST_TYPE_VENDOR | LIBUSB_RECIPIENT_DEVICE,
            USBGW_KEY_REQ_RESPONSE, 0, 0, response, USBGW_KEY_LEN, SIM_CLIENT_TRANSFER_TIMEOUT_MS),
        "vendor response", error);
}

static void LIBUSB_CALL
sim_client_transfer_done(struct libusb_transfer *transfer)
{
    *(gboolean *)transfer->user_data = TRUE;
}

/* HID: the interrupt IN URB goes out first and waits, as a host polling
 * the key would; SET_REPORT then makes the key answer it. */
static gboolean
sim_client_hid_exchange(libusb_context *ctx, libusb_device_handle *handle,
                        const SimClientKeyInfo *info, const guint8 *challenge, guint timeout_ms,
                        guint8 response[USBGW_KEY_LEN], GError **error)
{
    g_autofree guint8 *report = g_malloc0(MAX(info->interrupt_in_size, USBGW_KEY_LEN));
    struct libusb_transfer *transfer = libusb_alloc_transfer(0);
    gboolean done = FALSE;
    gboolean ok = FALSE;

    libusb_set_auto_detach_kernel_driver(handle, 1);
    if (!sim_client_check(libusb_claim_interface(handle, 0), "claiming interface 0", error)) {
        libusb_free_transfer(transfer);
        return FALSE;
    }
    libusb_fill_interrupt_transfer(transfer, handle, info->interrupt_in, report,
                                   MAX(info->interrupt_in_size, USBGW_KEY_LEN),
                                   sim_client_transfer_done, &done, timeout_ms);
    if (sim_client_check(libusb_submit_transfer(transfer), "submitting interrupt IN", error)) {
        ok = challenge == NULL ||
             sim_client_check_len(
                 libusb_control_transfer(
                     handle,
                     LIBUSB_ENDPOINT_OUT | LIBUSB_REQUEST_TYPE_CLASS | LIBUSB_RECIPIENT_INTERFACE,
                     SIM_CLIENT_HID_SET_REPORT, SIM_CLIENT_HID_OUTPUT_ID_0, 0, (guint8 *)challenge,
                     USBGW_KEY_LEN, SIM_CLIENT_TRANSFER_TIMEOUT_MS),
                 "SET_REPORT", error);
        if (!ok)
            libusb_cancel_transfer(transfer);
        /* libusb enforces the transfer's own timeout */
        while (!done)
            libusb_handle_events_completed(ctx, &done);
        if (ok) {
            ok = sim_client_check_transfer(transfer->status, error) &&
                 sim_client_check_len(transfer->actual_length, "interrupt IN", error);
            if (ok)
                memcpy(response, report, USBGW_KEY_LEN);
        }
    }
    libusb_free_transfer(transfer);
    libusb_release_interface(handle, 0);
    return ok;
}

static gboolean
sim_client_exchange(libusb_context *ctx, const SimClientMatch *match, const guint8 *challenge,
                    guint timeout_ms, guint8 response[USBGW_KEY_LEN], GError **error)
{
    SimClientKeyInfo info;
    libusb_device_handle *handle = sim_client_open(ctx, match, error);
    gboolean ok;

    if (handle == NULL)
        return FALSE;
    ok = sim_client_key_info(handle, &info, error);
    if (ok && info.interface_class == LIBUSB_CLASS_HID)
        ok = sim_client_hid_exchange(ctx, handle, &info, challenge, timeout_ms, response, error);
    else if (ok)
        ok = sim_client_vendor_exchange(handle, challenge, response, error);
    libusb_close(handle);
    return ok;
}

typedef struct {
    const SimClientMatch *match;
    int present;
} SimClientWatch;

static int LIBUSB_CALL
sim_client_hotplug(libusb_context *ctx, libusb_device *dev, libusb_hotplug_event event,
                   void *user_data)
{
    SimClientWatch *watch = user_data;

    if (sim_client_matches(dev, watch->match))
        watch->present += event == LIBUSB_HOTPLUG_EVENT_DEVICE_ARRIVED ? 1 : -1;
    return 0;
}

/* Waits until a matching device is there (@arrive) or none is. */
static gboolean
sim_client_wait(libusb_context *ctx, const SimClientMatch *match, gboolean arrive, guint timeout_ms,
                GError **error)
{
    SimClientWatch watch = {match, 0};
    libusb_hotplug_callback_handle cb;
    gint64 deadline = g_get_monotonic_time() + (gint64)timeout_ms * 1000;

    if (!libusb_has_capability(LIBUSB_CAP_HAS_HOTPLUG)) {
        g_set_error(error, SIM_CLIENT_ERROR, SIM_CLIENT_ERROR_FAILED, "libusb has no hotplug");
        return FALSE;
    }
    /* ENUMERATE counts the devices already there, so no event is missed
     * between the caller's plug command and our start. */
    if (!sim_client_check(
            libusb_hotplug_register_callback(
                ctx, LIBUSB_HOTPLUG_EVENT_DEVICE_ARRIVED | LIBUSB_HOTPLUG_EVENT_DEVICE_LEFT,
                LIBUSB_HOTPLUG_ENUMERATE, match->vid, match->pid, LIBUSB_HOTPLUG_MATCH_ANY,
                sim_client_hotplug, &watch, &cb),
            "registering for hotplug", error))
        return FALSE;
    /* tell a script it may now plug or unplug: nothing can be missed */
    printf("waiting\n");
    fflush(stdout);
    while ((watch.present > 0) != arrive) {
        gint64 left = deadline - g_get_monotonic_time();
        if (left <= 0)
            break;
        struct timeval tv = {0, (suseconds_t)MIN(left, SIM_CLIENT_POLL_MS * 1000)};
        libusb_handle_events_timeout_completed(ctx, &tv, NULL);
    }
    libusb_hotplug_deregister_callback(ctx, cb);
    if ((watch.present > 0) != arrive) {
        g_set_error(error, SIM_CLIENT_ERROR, SIM_CLIENT_ERROR_TIMEOUT,
                    "%04x:%04x%s%s did not %s within %u ms", match->vid, match->pid,
                    match->port ? " at " : "", match->port ? match->port : "",
                    arrive ? "arrive" : "leave", timeout_ms);
        return FALSE;
    }
    return TRUE;
}

static char *
sim_client_string(libusb_device_handle *handle, guint8 index)
{
    unsigned char text[256];

    if (index == 0)
        return g_strdup("-");
    int n = libusb_get_string_descriptor_ascii(handle, index, text, sizeof(text));
    return n >= 0 ? g_strndup((const char *)text, (gsize)n)
                  : g_strdup_printf("<%s>", libusb_strerror(n));
}

/* One line per device: VID:PID PORT BUS/DEV CLASS(:IFCLASS:SUB:PROTO) SERIAL "PRODUCT".
 * The strings are read from the devices, through control transfers. */
static gboolean
sim_client_list(libusb_context *ctx, GError **error)
{
    libusb_device **list = NULL;
    ssize_t n = libusb_get_device_list(ctx, &list);

    if (!sim_client_check((int)n, "listing devices", error))
        return FALSE;
    for (ssize_t i = 0; i < n; i++) {
        struct libusb_device_descriptor desc;
        struct libusb_config_descriptor *config = NULL;
        libusb_device_handle *handle = NULL;
        g_autofree char *port = sim_client_port_path(list[i]);
        g_autofree char *serial = NULL;
        g_autofree char *product = NULL;
        g_autofree char *ifclass = g_strdup("-");

        if (libusb_get_device_descriptor(list[i], &desc) != 0)
            continue;
        if (libusb_get_active_config_descriptor(list[i], &config) == 0) {
            if (config->bNumInterfaces > 0 && config->interface[0].num_altsetting > 0) {
                const struct libusb_interface_descriptor *intf =
                    &config->interface[0].altsetting[0];
                g_free(ifclass);
                ifclass = g_strdup_printf("%02x:%02x:%02x", intf->bInterfaceClass,
                                          intf->bInterfaceSubClass, intf->bInterfaceProtocol);
            }
            libusb_free_config_descriptor(config);
        }
        /* hubs have no ioctl handler in usbgw-sim: don't open them */
        if (desc.bDeviceClass != LIBUSB_CLASS_HUB && libusb_open(list[i], &handle) == 0) {
            serial = sim_client_string(handle, desc.iSerialNumber);
            product = sim_client_string(handle, desc.iProduct);
            libusb_close(handle);
        }
        g_print("%04x:%04x %s %03u/%03u %02x %s %s \"%s\"\n", desc.idVendor, desc.idProduct, port,
                libusb_get_bus_number(list[i]), libusb_get_device_address(list[i]),
                desc.bDeviceClass, ifclass, serial ? serial : "?", product ? product : "?");
    }
    libusb_free_device_list(list, TRUE);
    return TRUE;
}

/* Sends one command to usbgw-sim's control socket and prints the reply;
 * fails if the reply is an error. */
static gboolean
sim_client_ctl(const char *path, char **words, GError **error)
{
    g_autoptr(GSocketClient) client = g_socket_client_new();
    g_autoptr(GSocketAddress) address = g_unix_socket_address_new(path);
    g_autofree char *joined = g_strjoinv(" ", words);
    g_autofree char *line = g_strconcat(joined, "\n", NULL);

    g_socket_client_set_timeout(client, SIM_CLIENT_CTL_TIMEOUT_S);
    g_autoptr(GSocketConnection) connection =
        g_socket_client_connect(client, G_SOCKET_CONNECTABLE(address), NULL, error);
    if (connection == NULL)
        return FALSE;
    GIOStream *stream = G_IO_STREAM(connection);
    if (!g_output_stream_write_all(g_io_stream_get_output_stream(stream), line, strlen(line), NULL,
                                   NULL, error))
        return FALSE;
    g_autoptr(GDataInputStream) in = g_data_input_stream_new(g_io_stream_get_input_stream(stream));
    for (;;) {
        g_autoptr(GError) read_error = NULL;
        g_autofree char *reply = g_data_input_stream_read_line(in, NULL, NULL, &read_error);
        if (reply == NULL) {
            g_set_error(error, SIM_CLIENT_ERROR, SIM_CLIENT_ERROR_FAILED,
                        "%s: no complete reply to '%s': %s", path, joined,
                        read_error ? read_error->message : "connection closed");
            return FALSE;
        }
        g_print("%s\n", reply);
        if (g_str_equal(reply, "ok") || g_str_has_prefix(reply, "ok "))
            return TRUE;
        if (g_str_has_prefix(reply, "error: ")) {
            g_set_error(error, SIM_CLIENT_ERROR, SIM_CLIENT_ERROR_FAILED, "%s: %s", joined,
                        reply + 7);
            return FALSE;
        }
    }
}

static gboolean
sim_client_usage(GError **error, const char *why)
{
    g_set_error(error, SIM_CLIENT_ERROR, SIM_CLIENT_ERROR_USAGE, "%s (see --help)", why);
    return FALSE;
}

typedef struct {
    char *port;
    char *expect_secret;
    int timeout_ms;
} SimClientOptions;

static gboolean
sim_client_challenge(libusb_context *ctx, const SimClientMatch *match, const char *hex,
                     const SimClientOptions *opts, GError **error)
{
    guint8 challenge[USBGW_KEY_LEN], response[USBGW_KEY_LEN];
    guint8 secret[USBGW_KEY_LEN], expected[USBGW_KEY_LEN];
    g_autoptr(GError) hex_error = NULL;

    if (!sim_hex_decode(hex, challenge, USBGW_KEY_LEN, &hex_error) ||
        (opts->expect_secret != NULL &&
         !sim_hex_decode(opts->expect_secret, secret, USBGW_KEY_LEN, &hex_error)))
        return sim_client_usage(error, hex_error->message);
    if (!sim_client_exchange(ctx, match, challenge, (guint)opts->timeout_ms, response, error))
        return FALSE;
    g_autofree char *text = sim_hex_encode(response, USBGW_KEY_LEN);
    g_print("%s\n", text);
    if (opts->expect_secret == NULL)
        return TRUE;
    usbgw_key_compute(secret, challenge, expected);
    if (memcmp(expected, response, USBGW_KEY_LEN) != 0) {
        g_autofree char *want = sim_hex_encode(expected, USBGW_KEY_LEN);
        g_set_error(error, SIM_CLIENT_ERROR, SIM_CLIENT_ERROR_FAILED,
                    "response %s, but secret %s gives %s", text, opts->expect_secret, want);
        return FALSE;
    }
    return TRUE;
}

/* Claims interface 0 and lets it go: tells whether another process (the
 * gateway) holds the key claimed. */
static gboolean
sim_client_claim(libusb_context *ctx, const SimClientMatch *match, guint hold_ms, GError **error)
{
    libusb_device_handle *handle = sim_client_open(ctx, match, error);
    gboolean ok;

    if (handle == NULL)
        return FALSE;
    ok = sim_client_check(libusb_claim_interface(handle, 0), "claiming interface 0", error);
    if (ok) {
        g_print("claimed\n");
        /* "hold": keep it busy for another program for a while */
        if (hold_ms > 0)
            g_usleep((gulong)hold_ms * 1000);
        libusb_release_interface(handle, 0);
    }
    libusb_close(handle);
    return ok;
}

static gboolean
sim_client_run(libusb_context *ctx, char **args, const SimClientOptions *opts, GError **error)
{
    SimClientMatch match = {0, 0, opts->port};
    guint8 response[USBGW_KEY_LEN];
    guint n = g_strv_length(args);

    if (n == 0)
        return sim_client_usage(error, "missing command");
    if (g_str_equal(args[0], "list"))
        return n == 1 ? sim_client_list(ctx, error)
                      : sim_client_usage(error, "list takes no argument");
    if (g_str_equal(args[0], "wait-arrive") || g_str_equal(args[0], "wait-leave")) {
        if (n != 2)
            return sim_client_usage(error, "usage: wait-arrive|wait-leave VID:PID");
        return sim_client_parse_id(args[1], &match, error) &&
               sim_client_wait(ctx, &match, g_str_equal(args[0], "wait-arrive"),
                               (guint)opts->timeout_ms, error);
    }
    if (!sim_client_parse_id(args[0], &match, error))
        return FALSE;
    if (n == 2 && g_str_equal(args[1], "claim"))
        return sim_client_claim(ctx, &match, 0, error);
    if (n == 3 && g_str_equal(args[1], "hold"))
        return sim_client_claim(ctx, &match, (guint)g_ascii_strtoull(args[2], NULL, 10), error);
    if (n == 3 && g_str_equal(args[1], "challenge"))
        return sim_client_challenge(ctx, &match, args[2], opts, error);
    if (n == 2 && g_str_equal(args[1], "response")) {
        if (!sim_client_exchange(ctx, &match, NULL, (guint)opts->timeout_ms, response, error))
            return FALSE;
        g_autofree char *text = sim_hex_encode(response, USBGW_KEY_LEN);
        g_print("%s\n", text);
        return TRUE;
    }
    return sim_client_usage(error, "expected: VID:PID challenge HEX32 | VID:PID response");
}

int
main(int argc, char **argv)
{
    SimClientOptions opts = {NULL, NULL, -1};
    const GOptionEntry entries[] = {
        {"port", 0, 0, G_OPTION_ARG_STRING, &opts.port, "Only the device at this port path",
         "DEVPATH"},
        {"expect-secret", 0, 0, G_OPTION_ARG_STRING, &opts.expect_secret,
         "challenge: fail unless the response is the one this secret gives", "HEX32"},
        {"timeout", 0, 0, G_OPTION_ARG_INT, &opts.timeout_ms,
         "wait-*: how long to wait; response/challenge: interrupt IN timeout", "MS"},
        G_OPTION_ENTRY_NULL,
    };
    g_autoptr(GOptionContext) context = g_option_context_new(
        "VID:PID challenge HEX32 | VID:PID response | VID:PID claim | VID:PID hold MS | "
        "wait-arrive VID:PID | "
        "wait-leave VID:PID "
        "| list | ctl SOCKET COMMAND [ARG]");
    g_autoptr(GError) error = NULL;
    libusb_context *ctx = NULL;
    gboolean ok;

    g_option_context_add_main_entries(context, entries, NULL);
    g_option_context_set_summary(context,
                                 "Talks to usbgw-sim's keys through libusb.\n"
                                 "Exit status: 0 ok, 1 failure, 2 usage, 3 STALL, "
                                 "4 timeout, 5 no such device, 6 busy (claimed by another).");
    if (!g_option_context_parse(context, &argc, &argv, &error)) {
        g_printerr("usbgw-sim-client: %s\n", error->message);
        return SIM_CLIENT_ERROR_USAGE;
    }
    if (opts.timeout_ms < 0) {
        opts.timeout_ms = g_str_has_prefix(argc > 1 ? argv[1] : "", "wait-")
                              ? SIM_CLIENT_WAIT_TIMEOUT_MS
                              : SIM_CLIENT_TRANSFER_TIMEOUT_MS;
    }

    if (argc > 1 && g_str_equal(argv[1], "ctl"))
        ok = argc >= 4 ? sim_client_ctl(argv[2], argv + 3, &error)
                       : sim_client_usage(&error, "usage: ctl SOCKET COMMAND [ARG]");
    else
        ok = sim_client_check(libusb_init(&ctx), "libusb_init", &error) &&
             sim_client_run(ctx, argv + 1, &opts, &error);
    if (ctx != NULL)
        libusb_exit(ctx);
    g_free(opts.port);
    g_free(opts.expect_secret);
    if (!ok) {
        g_printerr("usbgw-sim-client: %s\n", error->message);
        return error->domain == SIM_CLIENT_ERROR ? error->code : SIM_CLIENT_ERROR_FAILED;
    }
    return 0;
}
