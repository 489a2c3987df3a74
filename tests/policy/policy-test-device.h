/* Devices for policy tests, written the way a table reads best:
 *
 *   "0529:0001 class=ff:00:00 if=ff:00:00 port=1-1 product='HASP HL 3.25'"
 *
 * Words after the id are key=value (shell quoting for spaces): class,
 * if (comma-separated CC:SS:PP), serial, product, manufacturer, port, hash,
 * bcd. Malformed specs are test bugs and abort the test. */
#pragma once

#include "policy.h"

PolicyDevice *policy_test_device_new(const gchar *spec);
