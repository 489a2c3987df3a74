/* Shared by the gateway benches (ctrl-rtt-bench, rss-bench): a usbredir
 * peer in QEMU's role, the usbgw-sim control socket, child processes,
 * /proc figures and statistics. Single-threaded: every call from the
 * bench's main thread. */
#pragma once

#include <glib.h>
#include <sys/types.h>

#include "../tests/sim/key-protocol.h"

/* ---- time */

gint64 bench_now_ns(void);

/* ---- the peer: usbredirparser over a connected stream socket */

typedef struct _BenchPeer BenchPeer;

/* Takes @fd (made non-blocking). Sends the usbredir hello at once. */
BenchPeer *bench_peer_new(int fd, const gchar *label);
void bench_peer_free(BenchPeer *peer);
G_DEFINE_AUTOPTR_CLEANUP_FUNC(BenchPeer, bench_peer_free)

const gchar *bench_peer_get_label(BenchPeer *peer);
/* device_connect and interface_info came, and no device_disconnect since */
gboolean bench_peer_is_connected(BenchPeer *peer);
/* Serves the socket until the device is connected or @timeout_us passes. */
gboolean bench_peer_wait_connected(BenchPeer *peer, gint64 timeout_us, GError **error);
/* Serves every peer's socket for up to @timeout_us, or until all of them
 * are connected if @until_connected. FALSE if a connection closed. */
gboolean bench_peers_serve(BenchPeer **peers, guint n_peers, gint64 timeout_us,
                           gboolean until_connected, GError **error);

/* One op: vendor control OUT USBGW_KEY_REQ_CHALLENGE with @challenge, then
 * vendor control IN USBGW_KEY_REQ_RESPONSE into @response. @op_ns gets the
 * time from sending the OUT to receiving the IN's reply, @in_ns that of the
 * IN alone. Fails on a non-success status, a short reply, a closed
 * connection or after @timeout_us. */
gboolean bench_peer_challenge(BenchPeer *peer, const guint8 challenge[USBGW_KEY_LEN],
                              guint8 response[USBGW_KEY_LEN], gint64 *op_ns, gint64 *in_ns,
                              gint64 timeout_us, GError **error);

/* ---- sockets */

/* Connects to a unix socket, retrying until it exists or @timeout_us passes. */
int bench_connect_unix(const gchar *path, gint64 timeout_us, GError **error);
/* Connects to 127.0.0.1:@port with TCP_NODELAY, retrying until @timeout_us. */
int bench_connect_tcp(guint16 port, gint64 timeout_us, GError **error);
/* A TCP port on 127.0.0.1 that was free a moment ago. */
guint16 bench_free_tcp_port(GError **error);

/* ---- usbgw-sim's control socket */

/* Runs one command; returns the reply without its final "ok" line. */
gchar *bench_sim_command(const gchar *control, const gchar *command, GError **error);
/* From "list" and "secret": the key's port path ("1-2"), bus and device
 * number (0 when unplugged) and secret. Any out argument may be NULL. */
gboolean bench_sim_key_info(const gchar *control, const gchar *name, gchar **port, guint *bus,
                            guint *devnum, guint8 secret[USBGW_KEY_LEN], GError **error);

/* ---- child processes */

/* Starts @argv with stdin from /dev/null and stdout and stderr appended
 * to @log_path; the caller reaps it (bench_child_stop). */
gboolean bench_child_spawn(const gchar *const *argv, const gchar *log_path, GPid *pid,
                           GError **error);
/* Still running (not reaped)? */
gboolean bench_child_alive(GPid pid);
/* SIGCONT, SIGTERM, waits up to 5 s, then SIGKILL. Returns the wait status
 * (-1 if it had to be killed). */
int bench_child_stop(GPid pid);

/* A /proc/PID/status field in kB ("VmRSS", "VmHWM"); 0 if absent. */
guint64 bench_proc_status_kib(GPid pid, const gchar *field);

/* ---- statistics over doubles */

/* Nearest-rank percentile, @p in [0, 100]; sorts @values. */
gdouble bench_percentile(GArray *values, gdouble p);
gdouble bench_median(GArray *values);
void bench_min_max(GArray *values, gdouble *min, gdouble *max);

/* The 1-minute load average (/proc/loadavg), -1 if unknown. */
gdouble bench_loadavg(void);
/* "rig: umockdev simulated device (…), N cores (nproc), load L0 at start,
 * L1 at end (1-min loadavg)": the machine is shared, so the load says how
 * quiet it was. */
void bench_print_rig(const gchar *detail, gdouble load_at_start);
