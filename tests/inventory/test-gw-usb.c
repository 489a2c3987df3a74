/* GwUsb on simulated keys (tests/sim): hotplug reaches the main context,
 * and gw_usb_free() drops the events still queued there without running
 * them and without iterating the main context (so none of the owner's
 * other sources runs inside the free).
 *
 * Run as usbgw-sim's COMMAND (meson does): `usbgw-sim --plug hasp
 * --control PATH -- test-gw-usb`, with PATH in USBGW_TEST_SIM_CONTROL for
 * the plug and unplug commands. */
#include <gio/gio.h>
#include <gio/gunixsocketaddress.h>

#include "gw-usb.h"
#include "inventory-test.h"

/* the simulated HID key (tests/sim/sim-key.c), plugged and unplugged here */
#define TEST_HID_NAME "hid"
#define TEST_HID_VID  0x064f
#define TEST_HID_PID  0x2af9

typedef struct {
    guint calls;
    guint hid_arrived;
    guint hid_left;
} Seen;

static void
seen_hotplug(libusb_device *device, gboolean arrived, gpointer user_data)
{
    Seen *seen = user_data;
    struct libusb_device_descriptor descriptor;

    seen->calls++;
    if (libusb_get_device_descriptor(device, &descriptor) == LIBUSB_SUCCESS &&
        descriptor.idVendor == TEST_HID_VID && descriptor.idProduct == TEST_HID_PID) {
        if (arrived)
            seen->hid_arrived++;
        else
            seen->hid_left++;
    }
    libusb_unref_device(device);
}

static gboolean
count_cb(gpointer data)
{
    (*(guint *)data)++;
    return G_SOURCE_REMOVE;
}

/* A started GwUsb whose start-up events (present devices) ran. */
static GwUsb *
started_usb(Seen *seen)
{
    g_autoptr(GError) error = NULL;
    g_autoptr(GwUsb) usb = gw_usb_new(g_main_context_default(), &error);

    g_assert_no_error(error);
    g_assert_true(gw_usb_start(usb, seen_hotplug, seen, &error));
    g_assert_no_error(error);
    inventory_test_drain();
    g_assert_cmpuint(seen->calls, >, 0); /* hasp and the hubs */
    return g_steal_pointer(&usb);
}

/* Waits until something is ready on the default context, without running
 * it. */
static void
wait_pending(void)
{
    gint64 deadline = g_get_monotonic_time() + INVENTORY_TEST_TIMEOUT_MS * G_TIME_SPAN_MILLISECOND;

    while (!g_main_context_pending(NULL)) {
        g_assert_cmpint(g_get_monotonic_time(), <, deadline);
        g_usleep(10 * G_TIME_SPAN_MILLISECOND);
    }
}

/* Frees @usb with its events still queued and an idle of "the owner"
 * ready too: neither may run, in the free or after it. */
static void
free_with_events_queued(GwUsb *usb, Seen *seen)
{
    guint calls = seen->calls;
    guint owner_idle = 0;

    g_idle_add(count_cb, &owner_idle);
    gw_usb_free(usb);
    g_assert_cmpuint(owner_idle, ==, 0); /* gw_usb_free iterated the main context */
    g_assert_cmpuint(seen->calls, ==, calls);
    inventory_test_drain();
    g_assert_cmpuint(owner_idle, ==, 1);
    g_assert_cmpuint(seen->calls, ==, calls); /* a queued event ran after the free */
}

/* A key plugged in while GwUsb runs: "arrived" on the main context; pulled
 * out: "left". */
static void
test_hotplug_delivered(void)
{
    Seen seen = {0};
    g_autoptr(GwUsb) usb = NULL;

    if (inventory_test_skip_without_sim())
        return;
    usb = started_usb(&seen);
    inventory_test_sim_command("plug " TEST_HID_NAME);
    inventory_test_run_until_nonzero(&seen.hid_arrived);
    g_assert_cmpuint(seen.hid_arrived, ==, 1);
    inventory_test_sim_command("unplug " TEST_HID_NAME);
    inventory_test_run_until_nonzero(&seen.hid_left);
    g_assert_cmpuint(seen.hid_left, ==, 1);
}

/* The start-up scan queues one event per present device; freed before
 * they ran. */
static void
test_free_drops_startup_events(void)
{
    Seen seen = {0};
    g_autoptr(GError) error = NULL;
    GwUsb *usb;

    if (inventory_test_skip_without_sim())
        return;
    usb = gw_usb_new(g_main_context_default(), &error);
    g_assert_no_error(error);
    g_assert_true(gw_usb_start(usb, seen_hotplug, &seen, &error));
    g_assert_no_error(error);
    g_assert_true(g_main_context_pending(NULL)); /* queued, not run */
    free_with_events_queued(usb, &seen);
    g_assert_cmpuint(seen.calls, ==, 0);
}

/* An event the usb thread queued while running; freed before it ran. */
static void
test_free_drops_hotplug_event(void)
{
    Seen seen = {0};
    GwUsb *usb;

    if (inventory_test_skip_without_sim())
        return;
    usb = started_usb(&seen);
    inventory_test_sim_command("plug " TEST_HID_NAME);
    wait_pending(); /* the usb thread queued the arrival */
    free_with_events_queued(usb, &seen);
    g_assert_cmpuint(seen.hid_arrived, ==, 0);
    inventory_test_sim_command("unplug " TEST_HID_NAME);
}

int
main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    g_test_add_func("/gw-usb/hotplug/delivered", test_hotplug_delivered);
    g_test_add_func("/gw-usb/free/drops-startup-events", test_free_drops_startup_events);
    g_test_add_func("/gw-usb/free/drops-hotplug-event", test_free_drops_hotplug_event);
    return g_test_run();
}
