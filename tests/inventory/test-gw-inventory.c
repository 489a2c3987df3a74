/* GwInventory on simulated keys (tests/sim): what it makes of devices that
 * misbehave.
 *
 * - Twins: two keys with one serial ("hid" and "hid-twin") are two
 *   devices with distinct identities; the one that came second is known by
 *   its port too, and naming the serial alone is "not unique".
 * - A mute key (never answers a string request) is described within the
 *   inventory's time budget without its strings, the budget is logged, and
 *   a key plugged after it still arrives, after it.
 *
 * Run as usbgw-sim's COMMAND (meson does; see inventory-test.h). */
#include <gio/gio.h>

#include "gw-inventory.h"
#include "inventory-test.h"

#define TEST_HID_ID  "064f:2af9#3-1234567"
#define TEST_TWIN_ID "064f:2af9#3-1234567@1-3.4"
#define TEST_MUTE_ID "0529:0002@1-3.5"
#define TEST_HASP_ID "0529:0001@1-1"

typedef struct {
    GPtrArray *arrived; /* ids, in order (owned strings) */
    GPtrArray *left;
    guint n_arrived;
    guint n_left;
    const gchar *wait_for; /* the arrival that ends a wait */
    guint seen;            /* set once @wait_for arrived */
} Seen;

static void
seen_arrived(GwInventoryDevice *device, gpointer user_data)
{
    Seen *seen = user_data;
    g_ptr_array_add(seen->arrived, g_strdup(device->id));
    seen->n_arrived++;
    if (g_strcmp0(device->id, seen->wait_for) == 0)
        seen->seen = 1;
}

static void
seen_left(GwInventoryDevice *device, gpointer user_data)
{
    Seen *seen = user_data;
    g_ptr_array_add(seen->left, g_strdup(device->id));
    seen->n_left++;
}

static const GwInventoryCallbacks seen_callbacks = {
    .arrived = seen_arrived,
    .left = seen_left,
};

static void
seen_init(Seen *seen)
{
    seen->arrived = g_ptr_array_new_with_free_func(g_free);
    seen->left = g_ptr_array_new_with_free_func(g_free);
}

static void
seen_clear(Seen *seen)
{
    g_ptr_array_unref(seen->arrived);
    g_ptr_array_unref(seen->left);
}

static gboolean
seen_has(Seen *seen, const gchar *id)
{
    for (guint i = 0; i < seen->arrived->len; i++) {
        if (g_strcmp0(g_ptr_array_index(seen->arrived, i), id) == 0)
            return TRUE;
    }
    return FALSE;
}

/* Runs the main context until @id arrives (asserting it does). */
static void
wait_arrived(Seen *seen, const gchar *id)
{
    seen->wait_for = id;
    seen->seen = 0;
    for (guint i = 0; i < seen->arrived->len; i++) {
        if (g_strcmp0(g_ptr_array_index(seen->arrived, i), id) == 0)
            seen->seen = 1;
    }
    inventory_test_run_until_nonzero(&seen->seen);
    g_assert_cmpuint(seen->seen, ==, 1);
}

static GwInventory *
started_inventory(Seen *seen)
{
    g_autoptr(GError) error = NULL;
    g_autoptr(GwInventory) inventory = gw_inventory_new(g_main_context_default(), &error);

    g_assert_no_error(error);
    g_assert_true(gw_inventory_start(inventory, &seen_callbacks, seen, &error));
    g_assert_no_error(error);
    return g_steal_pointer(&inventory);
}

static void
test_twins(void)
{
    Seen seen = {0};
    g_autoptr(GwInventory) inventory = NULL;
    g_autoptr(GError) error = NULL;
    GwInventoryDevice *hid;
    GwInventoryDevice *twin;

    if (inventory_test_skip_without_sim())
        return;
    seen_init(&seen);
    inventory_test_sim_command("plug hid");
    inventory = started_inventory(&seen);
    wait_arrived(&seen, TEST_HID_ID);
    g_test_expect_message("usbgw-inventory", G_LOG_LEVEL_WARNING,
                          "*" TEST_HID_ID " at 1-3.4 has the serial of the device at 1-3.1*");
    inventory_test_sim_command("plug hid-twin");
    wait_arrived(&seen, TEST_TWIN_ID);
    g_test_assert_expected_messages();

    /* two devices, both present, each with its own description */
    hid = gw_inventory_lookup(inventory, TEST_HID_ID);
    twin = gw_inventory_lookup(inventory, TEST_TWIN_ID);
    g_assert_nonnull(hid);
    g_assert_nonnull(twin);
    g_assert_nonnull(hid->usb);
    g_assert_nonnull(twin->usb);
    g_assert_true(hid->usb != twin->usb);
    g_assert_cmpstr(hid->desc->port, ==, "1-3.1");
    g_assert_cmpstr(twin->desc->port, ==, "1-3.4");
    g_assert_cmpstr(twin->desc->serial, ==, "3-1234567");
    /* the serial names both: not unique; each id and port names one */
    g_assert_null(gw_inventory_find(inventory, "3-1234567", &error));
    g_assert_error(error, GW_INVENTORY_ERROR, GW_INVENTORY_ERROR_NOT_UNIQUE);
    g_assert_true(gw_inventory_find(inventory, "1-3.4", NULL) == twin);
    g_assert_true(gw_inventory_find(inventory, TEST_TWIN_ID, NULL) == twin);

    /* the twin leaves: the first stays present */
    inventory_test_sim_command("unplug hid-twin");
    inventory_test_run_until_nonzero(&seen.n_left);
    g_assert_cmpuint(seen.left->len, ==, 1);
    g_assert_cmpstr(g_ptr_array_index(seen.left, 0), ==, TEST_TWIN_ID);
    g_assert_nonnull(gw_inventory_lookup(inventory, TEST_HID_ID)->usb);
    g_assert_null(gw_inventory_lookup(inventory, TEST_TWIN_ID)->usb);
    inventory_test_sim_command("unplug hid");
    seen_clear(&seen);
}

static void
test_mute_key(void)
{
    Seen seen = {0};
    g_autoptr(GwInventory) inventory = NULL;
    GwInventoryDevice *mute;
    guint mute_at = G_MAXUINT;
    guint hasp2_at = G_MAXUINT;

    if (inventory_test_skip_without_sim())
        return;
    seen_init(&seen);
    inventory = started_inventory(&seen);
    wait_arrived(&seen, TEST_HASP_ID);
    g_test_expect_message("usbgw-inventory", G_LOG_LEVEL_MESSAGE,
                          "0529:0002 at 1-3.5: does not answer in time*");
    /* the mute key first: the describer is busy with it when hasp2 comes */
    inventory_test_sim_command("plug mute");
    inventory_test_sim_command("plug hasp2");
    wait_arrived(&seen, "0529:0001@1-2");
    wait_arrived(&seen, TEST_MUTE_ID);
    g_test_assert_expected_messages();

    /* described without what it would not say; what it did say is there */
    mute = gw_inventory_lookup(inventory, TEST_MUTE_ID);
    g_assert_nonnull(mute);
    g_assert_null(mute->desc->serial);
    g_assert_null(mute->desc->manufacturer);
    g_assert_null(mute->desc->product);
    g_assert_nonnull(mute->desc->hash);
    g_assert_cmpuint(mute->desc->vendor_id, ==, 0x0529);
    g_assert_cmpuint(mute->desc->product_id, ==, 0x0002);
    /* arrivals stay in order */
    for (guint i = 0; i < seen.arrived->len; i++) {
        if (g_strcmp0(g_ptr_array_index(seen.arrived, i), TEST_MUTE_ID) == 0)
            mute_at = i;
        if (g_strcmp0(g_ptr_array_index(seen.arrived, i), "0529:0001@1-2") == 0)
            hasp2_at = i;
    }
    g_assert_cmpuint(mute_at, <, hasp2_at);
    inventory_test_sim_command("unplug mute");
    inventory_test_sim_command("unplug hasp2");
    seen_clear(&seen);
}

static gboolean
quit_cb(gpointer data)
{
    *(guint *)data = 1;
    return G_SOURCE_REMOVE;
}

/* Freed while the describer is busy with the mute key and another key's
 * description waits behind it: the waiting job is freed too (the
 * sanitizer build's LeakSanitizer reports it otherwise). */
static void
test_free_with_jobs_queued(void)
{
    Seen seen = {0};
    g_autoptr(GwInventory) inventory = NULL;
    guint waited = 0;

    if (inventory_test_skip_without_sim())
        return;
    seen_init(&seen);
    inventory = started_inventory(&seen);
    wait_arrived(&seen, TEST_HASP_ID);
    inventory_test_sim_command("plug mute");
    inventory_test_sim_command("plug hasp2");
    /* the hotplug events run (two jobs queued); the mute key's strings
     * take the describer far longer than this */
    g_timeout_add(100, quit_cb, &waited);
    inventory_test_run_until_nonzero(&waited);
    g_assert_false(seen_has(&seen, TEST_MUTE_ID));
    g_assert_false(seen_has(&seen, "0529:0001@1-2"));
    g_clear_pointer(&inventory, gw_inventory_free);
    /* neither is told about, in the free or after */
    inventory_test_drain();
    g_assert_false(seen_has(&seen, TEST_MUTE_ID));
    g_assert_false(seen_has(&seen, "0529:0001@1-2"));
    inventory_test_sim_command("unplug mute");
    inventory_test_sim_command("unplug hasp2");
    seen_clear(&seen);
}

/* Another gateway's devices: listed and found beside the local ones,
 * present or not as that gateway says, never taking a local identity; a
 * device marked with its own description keeps it (it was once freed
 * before being copied). */
static void
test_remote(void)
{
    Seen seen = {0};
    g_autoptr(GwInventory) inventory = NULL;
    g_autoptr(GError) error = NULL;
    g_autoptr(PolicyDevice) desc = policy_device_new(0x0529, 0x0001);
    g_autoptr(GPtrArray) all = NULL;
    GwInventoryDevice *remote;

    if (inventory_test_skip_without_sim())
        return;
    seen_init(&seen);
    inventory = started_inventory(&seen);
    wait_arrived(&seen, "0529:0001@1-1");
    desc->serial = g_strdup("R1");
    desc->port = g_strdup("1-1");
    /* a description without its gateway is not another gateway's device */
    g_test_expect_message("usbgw-inventory", G_LOG_LEVEL_CRITICAL, "*gateway != NULL*");
    g_assert_null(gw_inventory_set_remote(inventory, "dongles1/0529:0001:R1", desc, TRUE));
    g_test_assert_expected_messages();
    desc->gateway = g_strdup("dongles1");
    /* a local identity is never taken over */
    g_assert_null(gw_inventory_set_remote(inventory, "0529:0001@1-1", desc, TRUE));
    g_assert_false(gw_inventory_lookup(inventory, "0529:0001@1-1")->remote);

    remote = gw_inventory_set_remote(inventory, "dongles1/0529:0001:R1", desc, TRUE);
    g_assert_nonnull(remote);
    g_assert_true(remote->remote);
    g_assert_null(remote->usb);
    g_assert_true(gw_inventory_device_is_present(remote));
    g_assert_cmpstr(remote->desc->gateway, ==, "dongles1");
    g_assert_true(gw_inventory_find(inventory, "R1", &error) == remote);
    g_assert_no_error(error);
    /* both the same VID:PID now: ambiguous, named by id */
    g_assert_null(gw_inventory_find(inventory, "0529:0001", &error));
    g_assert_error(error, GW_INVENTORY_ERROR, GW_INVENTORY_ERROR_NOT_UNIQUE);
    g_clear_error(&error);
    all = gw_inventory_list(inventory);
    g_assert_true(g_ptr_array_find(all, remote, NULL));

    /* withdrawn, with the entry's own description */
    g_assert_true(
        gw_inventory_set_remote(inventory, "dongles1/0529:0001:R1", remote->desc, FALSE) == remote);
    g_assert_false(gw_inventory_device_is_present(remote));
    g_assert_cmpstr(remote->desc->serial, ==, "R1");
    g_assert_cmpstr(remote->desc->gateway, ==, "dongles1");
    seen_clear(&seen);
}

int
main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    g_test_add_func("/gw-inventory/twins", test_twins);
    g_test_add_func("/gw-inventory/mute-key", test_mute_key);
    g_test_add_func("/gw-inventory/free-with-jobs-queued", test_free_with_jobs_queued);
    g_test_add_func("/gw-inventory/remote", test_remote);
    return g_test_run();
}
