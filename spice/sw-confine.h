/* sw-confine: what usbgw-spice-worker may still do once it serves the
 * network (spice/README.md, "Confinement").
 *
 * The worker binds its ports and reads its TLS key and ticket first, then
 * confines itself in two steps:
 *
 *   1. sw_confine_network(): a new, empty network namespace. Sockets that
 *      are already bound and listening stay in the old one and keep
 *      working; nothing created later can reach any network. Needs
 *      CAP_SYS_ADMIN and a single-threaded process (a namespace is per
 *      thread: threads started before would stay outside).
 *   2. sw_confine_process(): the worker's own uid and gid (no
 *      supplementary groups), rlimits (no new processes or threads, no
 *      core, few fds, bounded memory), PR_SET_NO_NEW_PRIVS,
 *      PR_SET_DUMPABLE 0, then a seccomp allowlist on every thread
 *      (TSYNC). Call it after the last thread was started.
 *
 * The same code confines tests/spice/test-sw-confine, which then attacks
 * from inside. Threading: call from the main thread, before the main loop
 * runs; nothing here is reentrant. */
#pragma once

#include <glib.h>
#include <sys/types.h>

/* Highest file descriptor + 1 the worker may have: its own (stdio, the
 * socketpair, the listening sockets, GLib's and spice-server's wakeup
 * fds, about 16) plus, per SPICE client, its main channel and one socket
 * per usbredir channel (at most 32), for two clients while one replaces
 * the other. */
#define SW_CONFINE_MAX_FDS 128
/* Address space and data segment of a confined worker (not in sanitizer
 * builds: ASan reserves terabytes of shadow memory). A worker takes a few
 * MiB; GLib's second thread reserves a 64 MiB malloc arena and an 8 MiB
 * stack, spice-server buffers up to a few MiB per channel. */
#define SW_CONFINE_MAX_AS   (1024UL * 1024 * 1024)
#define SW_CONFINE_MAX_DATA (512UL * 1024 * 1024)

typedef struct {
    gboolean switch_ids; /* FALSE: keep the current uid and gid (not root) */
    uid_t uid;
    gid_t gid;
    const char *name; /* for messages: the user's name or "uid N" */
} SwConfineIds;

/* Moves the calling process into a new network namespace. FALSE with
 * @error when the kernel refuses (no CAP_SYS_ADMIN, namespaces restricted,
 * or more than one thread). */
gboolean sw_confine_network(GError **error) G_GNUC_WARN_UNUSED_RESULT;

/* Switches to @ids (when set), sets the rlimits and prctl flags and loads
 * the seccomp filter on all threads. FALSE with @error if any step failed:
 * the caller must then exit, the process is half confined. */
gboolean sw_confine_process(const SwConfineIds *ids, GError **error) G_GNUC_WARN_UNUSED_RESULT;

/* TRUE in builds with AddressSanitizer, whose runtime needs a few more
 * system calls (spice/README.md). */
gboolean sw_confine_is_sanitizer_build(void);
