/* What the inventory's tests share: they run as usbgw-sim's COMMAND
 * (meson does: `usbgw-sim --plug KEY --control PATH -- TEST`, with PATH in
 * USBGW_TEST_SIM_CONTROL) and plug and unplug keys through its control
 * socket, and they wait on the default main context. */
#pragma once

#include <glib.h>

/* Bound on every wait. */
#define INVENTORY_TEST_TIMEOUT_MS 10000

/* TRUE (the test is skipped) when not run under usbgw-sim. */
gboolean inventory_test_skip_without_sim(void);
/* Sends one usbgw-sim command ("plug hid") and asserts its "ok". */
void inventory_test_sim_command(const gchar *command);
/* Runs the default context until *@counter is not 0 (or the timeout). */
void inventory_test_run_until_nonzero(const guint *counter);
/* Runs everything ready on the default context. */
void inventory_test_drain(void);
