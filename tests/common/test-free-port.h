/* A free TCP port on 127.0.0.1 for tests that start servers: the kernel
 * picks one for a socket bound to port 0, which is then closed (another
 * process could take it meanwhile; on a test machine that is rare).
 *
 * Threading: any thread. No state. */
#pragma once

#include <gio/gio.h>

G_BEGIN_DECLS

guint16 test_free_port(void);

G_END_DECLS
