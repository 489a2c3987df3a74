/* link-rtt-bench: vendor control-transfer round trips through a gateway
 * link (TLS on loopback) against the same kind of key on the local path,
 * both served by one exporting usbgwd in the same run (figure link-rtt).
 *
 * Usage (the driver starts usbgw-bench-sim with keys hasp at 1-1 and hasp2
 * at 1-2 and this program as its child, which starts both usbgwd itself):
 *
 *   bench/run-gateway-bench.sh link build/bench/usbgw-bench-sim \
 *       build/bench/link-rtt-bench build/gateway/usbgwd \
 *       --make-certs tests/link/make-certs.sh [OPTION…]
 *   meson test -C build --benchmark gateway-link-rtt -v
 *
 * Options: --rounds N (7, at least 5), --ops N (1000 timed ops per target
 * and round), --warmup N (200 per target).
 *
 *   link   key "hasp" (1-1): the exporter usbgwd ("dongles1", link-listen
 *          on 127.0.0.1) claims it for an export rule; the importer usbgwd
 *          ("hv1", link-peers=dongles1@127.0.0.1:PORT) imports it and
 *          serves it to vm "bench" through its validating proxy; the peer
 *          (QEMU's role) connects to the importer's socket for it:
 *            peer -> importer (GwImport, GwProxy) -> TLS link -> exporter
 *            (attachment, usbredirhost) -> key
 *   local  key "hasp2" (1-2): the same exporter usbgwd serves it to its
 *          own vm "bench" (assign via-port); the peer connects to the
 *          exporter's socket for it: peer -> exporter -> key.
 *
 * Both keys are identical 0529:0001 simulated keys (secrets differ, and
 * every response is checked against its key's secret). Both sessions live
 * in the one exporter all the time, so its main loop (which spins under
 * umockdev while a peer is connected, RIG-NOTES.md) costs both paths the
 * same; the importer has no USB device open. Rounds alternate the order
 * (link local, local link, …). An op is vendor OUT 0x01 (16-byte
 * challenge) then vendor IN 0x02 (16-byte response); the IN alone is one
 * control round trip. The figures: p50, p99, p99.9 of both, the time the
 * link adds (link minus local) and the ratio. */

#include <gio/gio.h>

#include "bench-common.h"

#define LINK_OP_TIMEOUT_US    (5 * G_USEC_PER_SEC)
#define LINK_CONNECT_US       (30 * G_USEC_PER_SEC)
#define LINK_ROUND_WARMUP_OPS 20 /* untimed, at the start of each round */
#define LINK_VM               "bench"
#define LINK_EXPORTER         "dongles1"
#define LINK_IMPORTER         "hv1"

typedef struct {
    gchar *dir; /* owned: config, policy, run dir, log */
    GPid pid;
} Gateway;

static gboolean
gateway_start(Gateway *gw, const gchar *usbgwd, const gchar *workdir, const gchar *name,
              const gchar *config_lines, const gchar *policy_text, GError **error)
{
    gw->dir = g_build_filename(workdir, name, NULL);
    return bench_usbgwd_start(usbgwd, gw->dir, config_lines, policy_text, &gw->pid, error);
}

static void
gateway_clear(Gateway *gw, const gchar *name)
{
    bench_child_stop_warn(&gw->pid, name);
    g_clear_pointer(&gw->dir, g_free);
}

/* The one device socket usbgwd made for LINK_VM under @gwdir. */
static gchar *
find_vm_socket(const gchar *gwdir, GError **error)
{
    g_auto(GStrv) socks = bench_vm_sockets(gwdir, LINK_VM, 1, LINK_CONNECT_US, error);

    return socks != NULL ? g_strdup(socks[0]) : NULL;
}

static gboolean
connect_target(BenchTarget *t, const gchar *sock, GError **error)
{
    int fd = bench_connect_unix(sock, LINK_CONNECT_US, error);

    if (fd < 0)
        return FALSE;
    t->peer = bench_peer_new(fd, t->name);
    return bench_peer_wait_connected(t->peer, LINK_CONNECT_US, error);
}

static gboolean
target_run(BenchTarget *t, BenchTarget *const *keyed, GRand *rand, guint n, gboolean record,
           GError **error)
{
    g_autoptr(GArray) op_us = bench_new_doubles();
    g_autoptr(GArray) in_us = bench_new_doubles();
    gint64 start = bench_now_ns();

    if (!bench_target_run_ops(t, keyed, 2, rand, n, LINK_OP_TIMEOUT_US, op_us, in_us, error))
        return FALSE;
    if (record)
        bench_target_add_round(t, op_us, in_us, (bench_now_ns() - start) / 1e9);
    return TRUE;
}

int
main(int argc, char **argv)
{
    g_autofree gchar *sim_control = NULL, *usbgwd = NULL, *workdir = NULL, *make_certs = NULL;
    gint rounds = 7, ops = 1000, warmup = 200;
    const GOptionEntry entries[] = {
        {"sim-control", 0, 0, G_OPTION_ARG_FILENAME, &sim_control, "usbgw-sim control socket",
         "PATH"},
        {"usbgwd", 0, 0, G_OPTION_ARG_FILENAME, &usbgwd, "usbgwd to run (both gateways)", "PATH"},
        {"workdir", 0, 0, G_OPTION_ARG_FILENAME, &workdir, "Certificates, configs and logs", "DIR"},
        {"make-certs", 0, 0, G_OPTION_ARG_FILENAME, &make_certs, "tests/link/make-certs.sh",
         "PATH"},
        {"rounds", 0, 0, G_OPTION_ARG_INT, &rounds, "Rounds (7, at least 5)", "N"},
        {"ops", 0, 0, G_OPTION_ARG_INT, &ops, "Timed ops per target and round (1000)", "N"},
        {"warmup", 0, 0, G_OPTION_ARG_INT, &warmup, "Warm-up ops per target (200)", "N"},
        G_OPTION_ENTRY_NULL,
    };
    g_autoptr(GOptionContext) context =
        g_option_context_new("— control round trips through a gateway link vs the local path");
    g_autoptr(GError) error = NULL;
    g_autofree gchar *certs = NULL, *exp_extra = NULL, *imp_extra = NULL, *exp_policy = NULL;
    g_autofree gchar *link_sock = NULL, *local_sock = NULL;
    Gateway exporter = {0}, importer = {0};
    BenchTarget link = {0}, local = {0};
    BenchTarget *keyed[2] = {&link, &local};
    GRand *rand = g_rand_new_with_seed(20261205);
    gdouble load_at_start;
    guint16 port;
    int status = 1;

    g_option_context_add_main_entries(context, entries, NULL);
    if (!g_option_context_parse(context, &argc, &argv, &error)) {
        g_printerr("link-rtt-bench: %s\n", error->message);
        return 2;
    }
    if (sim_control == NULL || usbgwd == NULL || workdir == NULL || make_certs == NULL) {
        g_printerr("link-rtt-bench: --sim-control, --usbgwd, --workdir and --make-certs are "
                   "required (run it through bench/run-gateway-bench.sh link)\n");
        return 2;
    }
    rounds = MAX(rounds, 5);
    ops = MAX(ops, 1);
    load_at_start = bench_loadavg();
    bench_target_init(&link, "link", "hasp");
    bench_target_init(&local, "local", "hasp2");
    if (!bench_target_find_key(&link, sim_control, &error) ||
        !bench_target_find_key(&local, sim_control, &error))
        goto out;

    /* certificates for both gateways */
    certs = g_build_filename(workdir, "certs", NULL);
    if (!bench_make_certs(make_certs, certs, LINK_EXPORTER " " LINK_IMPORTER, &error))
        goto out;
    port = bench_free_tcp_port(&error);
    if (port == 0)
        goto out;

    exp_extra = g_strdup_printf("link-listen=127.0.0.1:%u\nlink-cert=%s/" LINK_EXPORTER
                                "-cert.pem\nlink-key=%s/" LINK_EXPORTER
                                "-key.pem\nlink-ca=%s/ca-cert.pem\n",
                                port, certs, certs, certs);
    exp_policy = g_strdup_printf("# link-rtt-bench: the key at %s is exported, the one at %s is "
                                 "served here\n"
                                 "export id 0529:0001 via-port \"%s\" to gateway \"hv*\"\n"
                                 "assign id 0529:0001 via-port \"%s\" to vm \"" LINK_VM "\"\n",
                                 link.port, local.port, link.port, local.port);
    imp_extra =
        g_strdup_printf("link-peers=" LINK_EXPORTER "@127.0.0.1:%u\nlink-cert=%s/" LINK_IMPORTER
                        "-cert.pem\nlink-key=%s/" LINK_IMPORTER
                        "-key.pem\nlink-ca=%s/ca-cert.pem\nlink-reattach-interval=0\n",
                        port, certs, certs, certs);
    if (!gateway_start(&exporter, usbgwd, workdir, LINK_EXPORTER, exp_extra, exp_policy, &error) ||
        !gateway_start(
            &importer, usbgwd, workdir, LINK_IMPORTER, imp_extra,
            "assign id 0529:0001 on gateway \"" LINK_EXPORTER "\" to vm \"" LINK_VM "\"\n", &error))
        goto out;
    local_sock = find_vm_socket(exporter.dir, &error);
    if (local_sock == NULL || !connect_target(&local, local_sock, &error))
        goto out;
    link_sock = find_vm_socket(importer.dir, &error);
    if (link_sock == NULL || !connect_target(&link, link_sock, &error))
        goto out;

    if (!target_run(&link, keyed, rand, (guint)warmup, FALSE, &error) ||
        !target_run(&local, keyed, rand, (guint)warmup, FALSE, &error))
        goto out;
    for (gint r = 0; r < rounds; r++) {
        for (guint k = 0; k < 2; k++) {
            BenchTarget *t = keyed[(r + k) % 2];
            if (!target_run(t, keyed, rand, LINK_ROUND_WARMUP_OPS, FALSE, &error) ||
                !target_run(t, keyed, rand, (guint)ops, TRUE, &error))
                goto out;
        }
    }

    {
        g_autofree gchar *rig = g_strdup_printf(
            "usbgw-bench-sim keys, identical 0529:0001 vendor keys: %s@%s exported by usbgwd "
            "\"" LINK_EXPORTER "\" over a TLS link on 127.0.0.1 to usbgwd \"" LINK_IMPORTER
            "\", %s@%s served by the same exporter on its local VM socket",
            link.key, link.port, local.key, local.port);
        bench_print_rig(rig, load_at_start);
    }
    g_print("method: op = vendor OUT 0x01 (16-byte challenge) + vendor IN 0x02 (16-byte "
            "response), response checked; %d rounds x %d timed ops per target, interleaved "
            "(alternating order), after %d warm-up ops (+%d per round); link-rtt-in-* is the "
            "IN alone (one control round trip)\n",
            rounds, ops, warmup, LINK_ROUND_WARMUP_OPS);
    bench_target_print(&link, "");
    bench_target_print(&local, "");
    bench_target_compare("link-rtt-p50", &link, &local, BENCH_FIGURE_P50, FALSE);
    bench_target_compare("link-rtt-p99", &link, &local, BENCH_FIGURE_P99, FALSE);
    bench_target_compare("link-rtt-p99.9", &link, &local, BENCH_FIGURE_P999, FALSE);
    bench_target_compare("link-rtt-added-p50", &link, &local, BENCH_FIGURE_P50, TRUE);
    bench_target_compare("link-rtt-added-p99", &link, &local, BENCH_FIGURE_P99, TRUE);
    bench_target_compare("link-rtt-in-p50", &link, &local, BENCH_FIGURE_IN_P50, FALSE);
    bench_target_compare("link-rtt-in-added-p50", &link, &local, BENCH_FIGURE_IN_P50, TRUE);
    bench_target_compare_ops("link-ops", &link, &local);
    status = 0;

out:
    if (error != NULL)
        g_printerr("link-rtt-bench: %s\n", error->message);
    g_clear_pointer(&link.peer, usbredir_peer_free);
    g_clear_pointer(&local.peer, usbredir_peer_free);
    gateway_clear(&importer, "usbgwd " LINK_IMPORTER);
    gateway_clear(&exporter, "usbgwd " LINK_EXPORTER);
    bench_target_clear(&link);
    bench_target_clear(&local);
    g_rand_free(rand);
    return status;
}
