/* Shared by the benches (ctrl-rtt-bench, rss-bench, share-rtt-bench,
 * proxy-bench): a usbredir peer in QEMU's role (tests/usbredir-peer), the
 * usbgw-sim control socket, child processes, /proc figures, statistics,
 * the "bench …" lines and a timed target. Single-threaded: every call from
 * the bench's main thread. */
#pragma once

#include <glib.h>
#include <sys/types.h>

#include "../tests/sim/key-protocol.h"
#include "usbredir-fake-key.h"
#include "usbredir-peer.h"

/* ---- time */

gint64 bench_now_ns(void);

/* ---- the peer: a UsbredirPeer in QEMU's role on a connected stream socket */

/* Takes @fd. Sends the usbredir hello at once; @label names the peer in
 * errors. Free it with usbredir_peer_free(). */
UsbredirPeer *bench_peer_new(int fd, const gchar *label);
/* Serves the sockets until every device is connected (device_connect and
 * interface_info) or @timeout_us passes. */
gboolean bench_peers_wait_connected(UsbredirPeer *const *peers, guint n_peers, gint64 timeout_us,
                                    GError **error);
gboolean bench_peer_wait_connected(UsbredirPeer *peer, gint64 timeout_us, GError **error);

/* One op: vendor control OUT USBGW_KEY_REQ_CHALLENGE with @challenge, then
 * vendor control IN USBGW_KEY_REQ_RESPONSE into @response. @op_ns gets the
 * time from sending the OUT to receiving the IN's reply, @in_ns that of the
 * IN alone. Fails on a non-success status, a short reply, a closed
 * connection or after @timeout_us. */
gboolean bench_peer_challenge(UsbredirPeer *peer, const guint8 challenge[USBGW_KEY_LEN],
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
/* bench_child_stop() on *@pid if it is running, with a warning naming
 * @name unless it exited with status 0; sets *@pid to 0. */
void bench_child_stop_warn(GPid *pid, const gchar *name);

/* A /proc/PID/status field in kB ("VmRSS", "VmHWM"); 0 if absent. */
guint64 bench_proc_status_kib(GPid pid, const gchar *field);

/* ---- statistics over doubles */

/* An empty GArray of gdouble. */
GArray *bench_new_doubles(void);

/* Nearest-rank percentile, @p in [0, 100]; sorts @values. */
gdouble bench_percentile(GArray *values, gdouble p);
gdouble bench_median(GArray *values);
void bench_min_max(GArray *values, gdouble *min, gdouble *max);

typedef enum {
    BENCH_RATIO,      /* a[i] / b[i], 0 where b[i] is 0 */
    BENCH_DIFFERENCE, /* a[i] - b[i] */
} BenchPairwise;

/* Per round (index), over the rounds both arrays have. */
GArray *bench_pairwise(GArray *a, GArray *b, BenchPairwise op);

/* Prints the line the notes and tools read:
 * "bench NAME: VALUE UNIT (baseline BASE BASE_VALUE UNIT, ratio R) rounds:
 * median M, min-max A-B; ratio median RM, min-max RA-RB". Sorts
 * @round_values and @round_ratios. */
void bench_print_compared(const gchar *name, const gchar *unit, gdouble value, const gchar *base,
                          gdouble base_value, gdouble ratio, GArray *round_values,
                          GArray *round_ratios);

/* The 1-minute load average (/proc/loadavg), -1 if unknown. */
gdouble bench_loadavg(void);
/* "rig: umockdev simulated device (…), N cores (nproc), load L0 at start,
 * L1 at end (1-min loadavg)": the machine is shared, so the load says how
 * quiet it was. */
void bench_print_rig(const gchar *detail, gdouble load_at_start);

/* ---- a timed target: one QEMU-role peer on one simulated key, and its
 * round-trip figures (ctrl-rtt-bench, share-rtt-bench) */

typedef struct {
    const gchar *name;
    gchar *key;  /* owned: usbgw-sim's name for it */
    gchar *port; /* owned: "1-2" */
    guint devnum;
    guint8 secret[USBGW_KEY_LEN];
    UsbredirPeer *peer;   /* owned, nullable */
    GArray *op_us;        /* owned: every timed op, OUT + IN */
    GArray *in_us;        /* owned: the IN transfer of every timed op */
    GArray *round_p50;    /* owned: per round, of the ops */
    GArray *round_p99;    /* owned */
    GArray *round_p999;   /* owned */
    GArray *round_in_p50; /* owned: per round, of the INs */
    GArray *round_ops;    /* owned: ops/s per round */
    gdouble busy_s;       /* wall time of the timed rounds */
    guint verified;       /* responses checked */
} BenchTarget;

/* @name is not copied; @key is. */
void bench_target_init(BenchTarget *t, const gchar *name, const gchar *key);
void bench_target_clear(BenchTarget *t);
/* The key's port, device number and secret from usbgw-sim; fails if the
 * key is not plugged. */
gboolean bench_target_find_key(BenchTarget *t, const gchar *sim_control, GError **error);
/* Runs @n ops (bench_peer_challenge, random challenges from @rand) and
 * appends their times in µs to @op_us and @in_us. Every response must be
 * the key function under t's secret; the first one ever (t->verified 0)
 * must also not be that of any other of the run's @n_keyed targets in
 * @keyed (@t may be among them), so each target provably talks to its own
 * key. */
gboolean bench_target_run_ops(BenchTarget *t, BenchTarget *const *keyed, guint n_keyed, GRand *rand,
                              guint n, gint64 timeout_us, GArray *op_us, GArray *in_us,
                              GError **error);
/* Adds one timed round (the ops of bench_target_run_ops, over @elapsed_s). */
void bench_target_add_round(BenchTarget *t, GArray *op_us, GArray *in_us, gdouble elapsed_s);
/* "NAME (key K at P): N ops timed, N responses checked; p50 …, N ops/s"
 * then @tail and a newline. */
void bench_target_print(BenchTarget *t, const gchar *tail);

typedef enum {
    BENCH_FIGURE_P50,
    BENCH_FIGURE_P99,
    BENCH_FIGURE_P999,
    BENCH_FIGURE_IN_P50,
} BenchFigure;

/* bench_print_compared() of @figure for @cand against @base: the pooled
 * percentile, per-round figures and ratios; if @added, @cand's figure minus
 * @base's (the time the candidate adds). */
void bench_target_compare(const gchar *name, BenchTarget *cand, BenchTarget *base,
                          BenchFigure figure, gboolean added);
/* The same for the ops/s over the timed rounds. */
void bench_target_compare_ops(const gchar *name, BenchTarget *cand, BenchTarget *base);

/* ---- gateway links (link-rtt-bench, imported-sessions-bench) */

/* Runs `bash @script @dir NAME…` (tests/link/make-certs.sh) for the
 * space-separated @names and waits for it; fails with its output. */
gboolean bench_make_certs(const gchar *script, const gchar *dir, const gchar *names,
                          GError **error);
/* Writes @dir/usbgwd.conf (control socket, state and audit log in @dir, no
 * libvirt, then @config_lines) and @dir/policy (@policy_text), and starts
 * @usbgwd on them with its run dir @dir/run and its log @dir/usbgwd.log. */
gboolean bench_usbgwd_start(const gchar *usbgwd, const gchar *dir, const gchar *config_lines,
                            const gchar *policy_text, GPid *pid, GError **error);
/* The device sockets usbgwd made for @vm under @dir/run, sorted, once
 * there are at least @n (NULL-terminated; g_strfreev). */
gchar **bench_vm_sockets(const gchar *dir, const gchar *vm, guint n, gint64 timeout_us,
                         GError **error);
/* utime + stime of a process in clock ticks (/proc/PID/stat); 0 if gone. */
guint64 bench_proc_cpu_ticks(GPid pid);

/* ---- a fake key at the protocol level (proxy-bench, link-exporter):
 * tests/usbredir-peer/usbredir-fake-key.h, initialized by
 * usbredir_fake_key_init(); its secret, for checking answers: */
extern const guint8 bench_fake_key_secret[USBGW_KEY_LEN];
