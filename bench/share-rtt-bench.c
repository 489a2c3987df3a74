/* share-rtt-bench: vendor control-transfer round trips on the
 * workstation-lending path (data path C, docs/architecture.md) against
 * usbgwd's host path, in one usbgwd, on identical simulated keys (like
 * ctrl-rtt, for the SPICE ingress).
 *
 * Usage (the driver starts usbgw-bench-sim with keys hasp and hasp2 and
 * this program as its child, which then starts usbgwd and usbgw-share):
 *
 *   bench/run-gateway-bench.sh share build/bench/usbgw-bench-sim \
 *       build/bench/share-rtt-bench build/gateway/usbgwd \
 *       --usbgwctl build/cli/usbgwctl \
 *       --spice-worker build/spice/usbgw-spice-worker \
 *       --usbgw-share build/client-helper/usbgw-share \
 *       --acl-helper tests/spice/fake-acl-helper.sh [OPTION…]
 *   meson test -C build --benchmark gateway-share-rtt -v
 *
 * Options: --rounds N (7, at least 5), --ops N (1000 timed ops per target
 * and round), --warmup N (200 per target), --no-quiesce, --one-usbgwd.
 *
 * One op = vendor control OUT 0x01 with a random 16-byte challenge, then
 * vendor control IN 0x02 reading the 16-byte response (key-protocol.h),
 * sent by the same usbredirparser peer (QEMU's role) to two targets, each
 * served by a usbgwd of its own (the same binary; --one-usbgwd: one serves
 * both):
 *
 *   share      key "hasp2" (port 1-2), lent by usbgw-share (spice-gtk's
 *              usbredirhost, libusb) over SPICE on loopback TCP to
 *              usbgw-spice-worker, framed over its socketpair to usbgwd,
 *              whose validating proxy (gw-proxy.c) relays to the peer on
 *              <rundir>/vm/bench-vm/share0.sock. Policy: a share rule for
 *              0529:0001, user "alice"; spice-channels=1.
 *   host path  key "hasp" (port 1-1), claimed by (the host path's)
 *              usbgwd through an assign rule with via-port and served by
 *              its own usbredirhost on
 *              <rundir>/vm/bench-vm/0529-0001-at-1-1.sock (ctrl-rtt-bench's
 *              "usbgwd" target).
 *
 * Which key usbgw-share lends: `--device 0529:0001` matches both keys;
 * spice-gtk lists the higher device number (hasp2) first and, with one
 * usbredir channel, redirects only that one ("no free USB channels" for
 * the other, which usbgwd holds claimed anyway). Every response is checked
 * against the key function under the expected key's secret, and the first
 * one of each target against the other key's too, so the run fails rather
 * than measure the wrong key.
 *
 * Rounds run A B, B A, … Under umockdev every libusb event loop with an
 * open key spins (umockdev's emulated node always polls writable), each
 * turn a round trip to usbgw-bench-sim, which serves all of them: a
 * spinning loop of the other target slows this one's transfers (on the
 * 2-core rig, by ~0.25 ms per transfer). So unless --no-quiesce, the
 * other target's spinner is stopped (SIGSTOP) while one target is
 * measured: usbgw-share (the lent key's loop) during the host path, the
 * host path's usbgwd (the host key's loop) during the share. With
 * --one-usbgwd that usbgwd serves both targets and cannot be stopped: the
 * share is then measured against the host key's spinning and the host
 * path without the lent key's, which made the share look ~0.5 ms slower
 * per op than it is. CPU per op is from /proc/PID/stat (utime+stime) over
 * each target's timed windows. */
#include <errno.h>
#include <json-glib/json-glib.h>
#include <signal.h>
#include <string.h>
#include <unistd.h>

#include <gio/gio.h>

#include "bench-common.h"

#define SHARE_OP_TIMEOUT_US (5 * G_USEC_PER_SEC)
#define SHARE_CONNECT_US    (20 * G_USEC_PER_SEC)
/* usbgw-share's SPICE login, channel setup and redirection */
#define SHARE_LEND_US          (40 * G_USEC_PER_SEC)
#define SHARE_ROUND_WARMUP_OPS 20 /* untimed, after a target is resumed */
#define SHARE_VM               "bench-vm"
#define SHARE_USER             "alice"
#define SHARE_WORKER_COMM      "usbgw-spice-wor" /* /proc comm: 15 characters */

/* The processes whose CPU the report gives per op. */
typedef enum {
    PROC_USBGWD, /* serves the share (and the host path with --one-usbgwd) */
    PROC_WORKER,
    PROC_SHARE,
    PROC_HOST_USBGWD, /* serves the host path; 0 with --one-usbgwd */
    N_PROCS,
} ProcId;

static const gchar *const proc_names[N_PROCS] = {"usbgwd", "usbgw-spice-worker", "usbgw-share",
                                                 "host-path usbgwd"};

typedef enum {
    TARGET_SHARE,
    TARGET_HOST,
    N_TARGETS,
} TargetId;

typedef struct {
    BenchTarget common;
    guint64 cpu_ticks[N_PROCS]; /* over the timed loops */
} Target;

typedef struct {
    Target targets[N_TARGETS];
    BenchTarget *keyed[N_TARGETS]; /* all of them */
    GPid pids[N_PROCS];            /* 0: not running (the worker is usbgwd's child) */
    gboolean quiesce;
    gboolean one_usbgwd; /* one usbgwd serves both targets */
    GRand *rand;         /* owned */
} Bench;

/* utime + stime of @pid in clock ticks, 0 if unknown. */
static guint64
share_proc_cpu_ticks(GPid pid)
{
    g_autofree gchar *path = g_strdup_printf("/proc/%d/stat", (int)pid);
    g_autofree gchar *text = NULL;
    g_auto(GStrv) fields = NULL;
    const gchar *end;

    if (pid <= 0 || !g_file_get_contents(path, &text, NULL, NULL))
        return 0;
    end = strrchr(text, ')'); /* after "pid (comm)": state is field 3 */
    if (end == NULL)
        return 0;
    fields = g_strsplit(end + 2, " ", -1);
    if (g_strv_length(fields) < 13)
        return 0;
    /* fields 14 and 15 of proc(5) */
    return g_ascii_strtoull(fields[11], NULL, 10) + g_ascii_strtoull(fields[12], NULL, 10);
}

/* usbgwd's child usbgw-spice-worker, 0 if not found. */
static GPid
share_find_worker(GPid usbgwd)
{
    g_autofree gchar *dir = g_strdup_printf("/proc/%d/task", (int)usbgwd);
    g_autoptr(GDir) tasks = g_dir_open(dir, 0, NULL);
    const gchar *tid;

    while (tasks != NULL && (tid = g_dir_read_name(tasks)) != NULL) {
        g_autofree gchar *path = g_build_filename(dir, tid, "children", NULL);
        g_autofree gchar *text = NULL;
        g_auto(GStrv) pids = NULL;

        if (!g_file_get_contents(path, &text, NULL, NULL))
            continue;
        pids = g_strsplit(g_strstrip(text), " ", -1);
        for (gchar **p = pids; *p != NULL && **p != '\0'; p++) {
            g_autofree gchar *comm_path = g_strdup_printf("/proc/%s/comm", *p);
            g_autofree gchar *comm = NULL;
            if (g_file_get_contents(comm_path, &comm, NULL, NULL) &&
                g_str_equal(g_strstrip(comm), SHARE_WORKER_COMM))
                return (GPid)g_ascii_strtoll(*p, NULL, 10);
        }
    }
    return 0;
}

/* Stops (@measuring) or resumes the other target's spinning libusb loop. */
static void
share_quiesce(Bench *bench, Target *t, gboolean measuring)
{
    GPid other =
        t == &bench->targets[TARGET_HOST] ? bench->pids[PROC_SHARE] : bench->pids[PROC_HOST_USBGWD];

    if (bench->quiesce && other > 0)
        kill(other, measuring ? SIGSTOP : SIGCONT);
}

/* Runs @n ops; records them unless @record is FALSE (warm-up). */
static gboolean
target_run(Bench *bench, Target *t, guint n, gboolean record, GError **error)
{
    g_autoptr(GArray) op_us = bench_new_doubles();
    g_autoptr(GArray) in_us = bench_new_doubles();
    guint64 cpu_start[N_PROCS];
    gint64 start;

    for (guint p = 0; p < N_PROCS; p++)
        cpu_start[p] = share_proc_cpu_ticks(bench->pids[p]);
    start = bench_now_ns();
    if (!bench_target_run_ops(&t->common, bench->keyed, N_TARGETS, bench->rand, n,
                              SHARE_OP_TIMEOUT_US, op_us, in_us, error))
        return FALSE;
    if (record) {
        gdouble elapsed_s = (bench_now_ns() - start) / 1e9;
        for (guint p = 0; p < N_PROCS; p++)
            t->cpu_ticks[p] += share_proc_cpu_ticks(bench->pids[p]) - cpu_start[p];
        bench_target_add_round(&t->common, op_us, in_us, elapsed_s);
    }
    return TRUE;
}

/* ---- the rig */

typedef struct {
    const gchar *usbgwd;
    const gchar *usbgwctl;
    const gchar *worker;
    const gchar *share;
    const gchar *workdir;
} SharePrograms;

/* Where one usbgwd keeps its files: the work directory itself for the
 * share's (or the only) usbgwd, "host/" in it for the host path's. */
static gchar *
share_usbgwd_dir(const SharePrograms *progs, gboolean host_only)
{
    return host_only ? g_build_filename(progs->workdir, "host", NULL) : g_strdup(progs->workdir);
}

/* Starts a usbgwd serving the host path (@host), the share (@share) or
 * both. */
static gboolean
start_usbgwd(Bench *bench, const SharePrograms *progs, gboolean host, gboolean share,
             GError **error)
{
    Target *host_target = &bench->targets[TARGET_HOST];
    g_autofree gchar *dir = share_usbgwd_dir(progs, host && !share);
    g_autofree gchar *policy = g_build_filename(dir, "share.policy", NULL);
    g_autofree gchar *config = g_build_filename(dir, "usbgwd.conf", NULL);
    g_autofree gchar *rundir = g_build_filename(dir, "run", NULL);
    g_autofree gchar *control = g_build_filename(dir, "control.sock", NULL);
    g_autofree gchar *log = g_build_filename(
        progs->workdir, host && !share ? "usbgwd-host-path.log" : "usbgwd.log", NULL);
    g_autoptr(GString) policy_text = NULL;
    g_autofree gchar *config_text = NULL;
    guint16 spice_port = bench_free_tcp_port(error);
    const gchar *argv[] = {progs->usbgwd, "--foreground", "--policy", policy, "--rundir",
                           rundir,        "--config",     config,     NULL};
    GPid *pid = &bench->pids[host && !share ? PROC_HOST_USBGWD : PROC_USBGWD];
    int fd;

    if (spice_port == 0)
        return FALSE;
    if (g_mkdir_with_parents(dir, 0755) != 0) {
        g_set_error(error, G_IO_ERROR, g_io_error_from_errno(errno), "%s: %s", dir,
                    g_strerror(errno));
        return FALSE;
    }
    /* host devices follow assign/deny rules only, lent ones share/deny
     * rules only (policy_decide's origin): the two lines do not overlap */
    policy_text = g_string_new("# share-rtt-bench\n");
    if (host)
        g_string_append_printf(policy_text,
                               "# the key at %s is usbgwd's (host path)\n"
                               "assign id 0529:0001 via-port \"%s\" to vm \"" SHARE_VM "\"\n",
                               host_target->common.port, host_target->common.port);
    if (share)
        g_string_append(policy_text,
                        "# alice may lend 0529:0001 keys\n"
                        "share id 0529:0001 user \"" SHARE_USER "\" to vm \"" SHARE_VM "\"\n");
    config_text = g_strdup_printf("[usbgwd]\n"
                                  "control-socket=%s\n"
                                  "state=%s/state.json\n"
                                  "audit-log=%s/audit.log\n"
                                  "libvirt-uri=\n"
                                  "spice-port-base=%u\n"
                                  "spice-ports=1\n"
                                  "spice-channels=1\n"
                                  "spice-host=127.0.0.1\n"
                                  "spice-worker=%s\n",
                                  control, dir, dir, spice_port, progs->worker);
    if (!g_file_set_contents(policy, policy_text->str, -1, error) ||
        !g_file_set_contents(config, config_text, -1, error))
        return FALSE;
    if (!bench_child_spawn(argv, log, pid, error))
        return FALSE;
    /* usbgwd is ready once its control socket answers */
    fd = bench_connect_unix(control, SHARE_CONNECT_US, error);
    if (fd < 0)
        return FALSE;
    close(fd);
    return TRUE;
}

static gboolean
start_host_path(Bench *bench, const SharePrograms *progs, GError **error)
{
    Target *t = &bench->targets[TARGET_HOST];
    g_autofree gchar *dir = share_usbgwd_dir(progs, !bench->one_usbgwd);
    g_autofree gchar *file = g_strdup_printf("0529-0001-at-%s.sock", t->common.port);
    g_autofree gchar *sock = g_build_filename(dir, "run", "vm", SHARE_VM, file, NULL);
    int fd = bench_connect_unix(sock, SHARE_CONNECT_US, error);

    if (fd < 0)
        return FALSE;
    t->common.peer = bench_peer_new(fd, "usbgwd host-path peer");
    return bench_peer_wait_connected(t->common.peer, SHARE_CONNECT_US, error);
}

/* `usbgwctl share`: the URI and the ticket. */
static gboolean
make_share(const SharePrograms *progs, gchar **uri, gchar **ticket, GError **error)
{
    g_autofree gchar *control = g_build_filename(progs->workdir, "control.sock", NULL);
    const gchar *argv[] = {progs->usbgwctl, "--socket", control,  "share", SHARE_VM,
                           "--user",        SHARE_USER, "--json", NULL};
    g_autofree gchar *out = NULL;
    g_autofree gchar *err = NULL;
    g_autoptr(JsonParser) parser = json_parser_new();
    JsonNode *root;
    JsonObject *obj;
    gint status;

    if (!g_spawn_sync(NULL, (gchar **)argv, NULL, G_SPAWN_SEARCH_PATH, NULL, NULL, &out, &err,
                      &status, error))
        return FALSE;
    if (!g_spawn_check_wait_status(status, error)) {
        g_prefix_error(error, "usbgwctl share: %s: ", g_strstrip(err));
        return FALSE;
    }
    if (!json_parser_load_from_data(parser, out, -1, error)) {
        g_prefix_error(error, "usbgwctl share --json: ");
        return FALSE;
    }
    root = json_parser_get_root(parser);
    obj = root != NULL && JSON_NODE_HOLDS_OBJECT(root) ? json_node_get_object(root) : NULL;
    if (obj == NULL || json_object_get_string_member_with_default(obj, "uri", NULL) == NULL ||
        json_object_get_string_member_with_default(obj, "ticket", NULL) == NULL) {
        g_set_error(error, G_IO_ERROR, G_IO_ERROR_INVALID_DATA,
                    "usbgwctl share --json: no uri and ticket in: %s", out);
        return FALSE;
    }
    *uri = g_strdup(json_object_get_string_member(obj, "uri"));
    *ticket = g_strdup(json_object_get_string_member(obj, "ticket"));
    return TRUE;
}

/* The QEMU-role peer waits on share0.sock first (usbgwd pairs it with the
 * client's channel when that opens), then usbgw-share logs in and lends. */
static gboolean
start_share_path(Bench *bench, const SharePrograms *progs, GError **error)
{
    Target *t = &bench->targets[TARGET_SHARE];
    g_autofree gchar *sock =
        g_build_filename(progs->workdir, "run", "vm", SHARE_VM, "share0.sock", NULL);
    g_autofree gchar *ticket_file = g_build_filename(progs->workdir, "ticket", NULL);
    g_autofree gchar *log = g_build_filename(progs->workdir, "usbgw-share.log", NULL);
    g_autofree gchar *uri = NULL;
    g_autofree gchar *ticket = NULL;
    g_autofree gchar *ticket_line = NULL;
    int fd;

    if (!make_share(progs, &uri, &ticket, error))
        return FALSE;
    fd = bench_connect_unix(sock, SHARE_CONNECT_US, error);
    if (fd < 0)
        return FALSE;
    t->common.peer = bench_peer_new(fd, "share peer");
    ticket_line = g_strconcat(ticket, "\n", NULL);
    if (!g_file_set_contents_full(ticket_file, ticket_line, -1, G_FILE_SET_CONTENTS_CONSISTENT,
                                  0600, error))
        return FALSE;
    {
        const gchar *argv[] = {progs->share, uri, "--ticket-file", ticket_file, "--device",
                               "0529:0001",  NULL};
        if (!bench_child_spawn(argv, log, &bench->pids[PROC_SHARE], error))
            return FALSE;
    }
    if (!bench_peer_wait_connected(t->common.peer, SHARE_LEND_US, error))
        return FALSE;
    bench->pids[PROC_WORKER] = share_find_worker(bench->pids[PROC_USBGWD]);
    return TRUE;
}

static void
stop_children(Bench *bench)
{
    /* usbgw-share first: it gives the key back, then usbgwd ends the
     * share and its worker */
    for (gint p = N_PROCS - 1; p >= 0; p--) {
        if (p == PROC_WORKER)
            continue;
        if (bench->pids[p] > 0)
            kill(bench->pids[p], SIGCONT); /* a quiesced one hears its SIGTERM */
        bench_child_stop_warn(&bench->pids[p], proc_names[p]);
    }
}

/* ---- output */

static void
share_report(Target *cand, Target *base)
{
    BenchTarget *c = &cand->common, *b = &base->common;

    bench_target_compare("share-rtt-p50", c, b, BENCH_FIGURE_P50, FALSE);
    bench_target_compare("share-rtt-added-p50", c, b, BENCH_FIGURE_P50, TRUE);
    bench_target_compare("share-rtt-p99", c, b, BENCH_FIGURE_P99, FALSE);
    bench_target_compare("share-rtt-added-p99", c, b, BENCH_FIGURE_P99, TRUE);
    bench_target_compare("share-rtt-p99.9", c, b, BENCH_FIGURE_P999, FALSE);
    bench_target_compare_ops("share-ops", c, b);
}

static void
share_report_target(Bench *bench, Target *t)
{
    glong hz = sysconf(_SC_CLK_TCK);
    g_autoptr(GString) tail = g_string_new("; CPU per op: ");
    gsize empty = tail->len;

    for (guint p = 0; p < N_PROCS; p++) {
        if (bench->pids[p] <= 0 || hz <= 0)
            continue;
        g_string_append_printf(tail, "%s%s %.0f us", tail->len > empty ? ", " : "", proc_names[p],
                               t->cpu_ticks[p] * 1e6 / hz / MAX(t->common.op_us->len, 1));
    }
    bench_target_print(&t->common, tail->str);
}

int
main(int argc, char **argv)
{
    g_autofree gchar *sim_control = NULL;
    g_autofree gchar *usbgwd = NULL;
    g_autofree gchar *usbgwctl = NULL;
    g_autofree gchar *worker = NULL;
    g_autofree gchar *share = NULL;
    g_autofree gchar *acl_helper = NULL;
    g_autofree gchar *workdir = NULL;
    g_autofree gchar *host_key = g_strdup("hasp");
    g_autofree gchar *share_key = g_strdup("hasp2");
    gint rounds = 7, ops = 1000, warmup = 200;
    gboolean no_quiesce = FALSE;
    gboolean one_usbgwd = FALSE;
    const GOptionEntry entries[] = {
        {"sim-control", 0, 0, G_OPTION_ARG_FILENAME, &sim_control, "usbgw-sim control socket",
         "PATH"},
        {"usbgwd", 0, 0, G_OPTION_ARG_FILENAME, &usbgwd, "usbgwd to run", "PATH"},
        {"usbgwctl", 0, 0, G_OPTION_ARG_FILENAME, &usbgwctl, "usbgwctl (makes the share)", "PATH"},
        {"spice-worker", 0, 0, G_OPTION_ARG_FILENAME, &worker, "usbgw-spice-worker for usbgwd",
         "PATH"},
        {"usbgw-share", 0, 0, G_OPTION_ARG_FILENAME, &share, "usbgw-share (the lender)", "PATH"},
        {"acl-helper", 0, 0, G_OPTION_ARG_FILENAME, &acl_helper,
         "SPICE_USB_ACL_BINARY for usbgw-share (tests/spice/fake-acl-helper.sh)", "PATH"},
        {"workdir", 0, 0, G_OPTION_ARG_FILENAME, &workdir, "Policy, rundir and logs", "DIR"},
        {"host-key", 0, 0, G_OPTION_ARG_STRING, &host_key, "Key for usbgwd's host path (hasp)",
         "NAME"},
        {"share-key", 0, 0, G_OPTION_ARG_STRING, &share_key,
         "Key usbgw-share is expected to lend (hasp2)", "NAME"},
        {"rounds", 0, 0, G_OPTION_ARG_INT, &rounds, "Rounds (7, at least 5)", "N"},
        {"ops", 0, 0, G_OPTION_ARG_INT, &ops, "Timed ops per target and round (1000)", "N"},
        {"warmup", 0, 0, G_OPTION_ARG_INT, &warmup, "Warm-up ops per target (200)", "N"},
        {"no-quiesce", 0, 0, G_OPTION_ARG_NONE, &no_quiesce,
         "Keep the other target's spinning libusb loop running while one is measured", NULL},
        {"one-usbgwd", 0, 0, G_OPTION_ARG_NONE, &one_usbgwd,
         "One usbgwd serves both targets (its host key's loop then spins during the share)", NULL},
        G_OPTION_ENTRY_NULL,
    };
    g_autoptr(GOptionContext) context = g_option_context_new(
        "— control round trips: lent through SPICE (path C) vs usbgwd's host path");
    g_autoptr(GError) error = NULL;
    Bench bench = {0};
    Target *lent = &bench.targets[TARGET_SHARE];
    Target *host = &bench.targets[TARGET_HOST];
    SharePrograms progs;
    gdouble load_at_start;
    int status = 1;

    g_option_context_add_main_entries(context, entries, NULL);
    if (!g_option_context_parse(context, &argc, &argv, &error)) {
        g_printerr("share-rtt-bench: %s\n", error->message);
        return 2;
    }
    if (sim_control == NULL || usbgwd == NULL || usbgwctl == NULL || worker == NULL ||
        share == NULL || acl_helper == NULL || workdir == NULL) {
        g_printerr("share-rtt-bench: --sim-control, --usbgwd, --usbgwctl, --spice-worker, "
                   "--usbgw-share, --acl-helper and --workdir are required (run it through "
                   "bench/run-gateway-bench.sh share)\n");
        return 2;
    }
    progs = (SharePrograms){usbgwd, usbgwctl, worker, share, workdir};
    /* spice-gtk asks this helper for access to the key; the real one asks
     * polkit, which is not running here */
    g_setenv("SPICE_USB_ACL_BINARY", acl_helper, TRUE);
    rounds = MAX(rounds, 5);
    ops = MAX(ops, 1);
    load_at_start = bench_loadavg();
    bench.quiesce = !no_quiesce;
    bench.one_usbgwd = one_usbgwd;
    bench.rand = g_rand_new_with_seed(20261124);

    bench_target_init(&lent->common, "share", share_key);
    bench_target_init(&host->common, "usbgwd-host-path", host_key);
    for (guint i = 0; i < N_TARGETS; i++) {
        bench.keyed[i] = &bench.targets[i].common;
        if (!bench_target_find_key(bench.keyed[i], sim_control, &error))
            goto out;
    }

    if (!start_usbgwd(&bench, &progs, TRUE, bench.one_usbgwd, &error) ||
        (!bench.one_usbgwd && !start_usbgwd(&bench, &progs, FALSE, TRUE, &error)) ||
        !start_host_path(&bench, &progs, &error) || !start_share_path(&bench, &progs, &error))
        goto out;

    for (guint i = 0; i < N_TARGETS; i++) {
        Target *t = &bench.targets[i];
        share_quiesce(&bench, t, TRUE);
        if (!target_run(&bench, t, (guint)warmup, FALSE, &error))
            goto out;
        share_quiesce(&bench, t, FALSE);
    }
    /* rounds: A B, B A, … */
    for (gint r = 0; r < rounds; r++) {
        for (guint k = 0; k < N_TARGETS; k++) {
            Target *t = &bench.targets[(r + k) % N_TARGETS];
            share_quiesce(&bench, t, TRUE);
            if (!target_run(&bench, t, SHARE_ROUND_WARMUP_OPS, FALSE, &error) ||
                !target_run(&bench, t, (guint)ops, TRUE, &error)) {
                share_quiesce(&bench, t, FALSE);
                goto out;
            }
            share_quiesce(&bench, t, FALSE);
        }
    }

    {
        g_autofree gchar *rig = g_strdup_printf(
            "usbgw-bench-sim keys, identical 0529:0001 vendor keys: %s@%s lent by usbgw-share "
            "(spice-gtk usbredirhost) -> SPICE over loopback TCP -> usbgw-spice-worker -> "
            "usbgwd's validating proxy -> share0.sock; %s@%s -> usbgwd's usbredirhost -> "
            "its VM socket; %s",
            lent->common.key, lent->common.port, host->common.key, host->common.port,
            bench.one_usbgwd ? "one usbgwd serves both" : "a usbgwd (same binary) for each");
        bench_print_rig(rig, load_at_start);
    }
    g_print("method: op = vendor OUT 0x01 (16-byte challenge) + vendor IN 0x02 (16-byte "
            "response) from a QEMU-role usbredir peer, response checked; %d rounds x %d timed ops "
            "per target, interleaved (A B, B A, ...), after %d warm-up ops (+%d per round); %s; "
            "CPU per op over the timed loops\n",
            rounds, ops, warmup, SHARE_ROUND_WARMUP_OPS,
            !bench.quiesce ? "every process runs all the time (--no-quiesce)"
            : bench.one_usbgwd
                ? "usbgw-share stopped (SIGSTOP) while the host path is measured"
                : "usbgw-share stopped (SIGSTOP) while the host path is measured, the host "
                  "path's usbgwd while the share is");
    for (guint i = 0; i < N_TARGETS; i++)
        share_report_target(&bench, &bench.targets[i]);
    share_report(lent, host);
    status = 0;

out:
    if (error != NULL)
        g_printerr("share-rtt-bench: %s\n", error->message);
    /* nothing serves the peers from here on */
    for (guint i = 0; i < N_TARGETS; i++)
        g_clear_pointer(&bench.targets[i].common.peer, usbredir_peer_free);
    stop_children(&bench);
    for (guint i = 0; i < N_TARGETS; i++)
        bench_target_clear(&bench.targets[i].common);
    g_rand_free(bench.rand);
    return status;
}
