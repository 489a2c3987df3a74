/* The certificates of the gateway-link tests: tests/link/make-certs.sh
 * (its path in LINK_MAKE_CERTS) run into a new temporary directory.
 *
 * Threading: the test's main thread. Ownership: the directory's path is
 * the caller's; link_test_certs_remove() deletes the directory. */
#pragma once

#include <glib.h>

G_BEGIN_DECLS

/* Makes the CA, a certificate per name of @names (NULL-terminated) and
 * the fixed bad ones; NULL (with a message) when LINK_MAKE_CERTS is not
 * set. A failing script fails the test. */
gchar *link_test_certs_make(const gchar *prefix, const gchar *const *names);
/* Removes @dir and everything in it. */
void link_test_certs_remove(const gchar *dir);

G_END_DECLS
