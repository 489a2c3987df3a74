/* A policy as one line per rule and pool, for table-driven tests that
 * compare what was parsed with what was meant:
 *
 *   L3 assign id=0529:0001 serial="" -> vm="cad-01" required
 *   pool hasp-cad vms~"cad-*" L1
 *
 * '=' marks a literal string, '~' a glob; matchers come in a fixed order
 * (id, serial, name, via-port, if, class, hash, user, group), pools last,
 * sorted by name. */
#pragma once

#include "policy-private.h"

gchar *policy_test_summary(const Policy *policy);
