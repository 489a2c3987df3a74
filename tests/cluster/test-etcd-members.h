/* Real etcd members for the tests of gateway/cluster: started on
 * 127.0.0.1 (free ports, data in a temporary directory, short heartbeats
 * and elections), killed at the end, at exit, and, through
 * PR_SET_PDEATHSIG, when the test process dies in any other way (an
 * assertion, meson's timeout). Members run with etcd's default of no
 * automatic compaction, so a test can read a prefix's whole history.
 *
 * Also synchronous helpers over GwEtcd's async API that spin the thread-
 * default main context until their answer came, asserting success.
 *
 * Threading: the test's main thread only. Ownership: a TestCluster is the
 * caller's until test_cluster_stop(). */
#pragma once

#include "gw-etcd.h"
#include "test-free-port.h"

G_BEGIN_DECLS

typedef struct {
    gchar *name;
    gchar *client_url;
    gchar *peer_url;
    GSubprocess *process; /* nullable: killed */
} TestMember;

typedef struct {
    gchar *dir;
    GPtrArray *members; /* TestMember */
    gchar *certs;       /* nullable: make-etcd-certs.sh's files when the members serve https */
    gchar *member_cert; /* nullable: which of them the members serve ("member" or "rogue") */
} TestCluster;

/* Found by test_etcd_setup(); NULL when not installed. */
extern gchar *etcd_path;
extern gchar *etcdctl_path;
/* Every member process started (killed at exit). */
extern GPtrArray *all_processes;

/* Finds the binaries, arranges the kill at exit and keeps GLib's idle
 * pool threads (none ends while the sanitizers check at exit); teardown
 * kills what is left and frees. */
void test_etcd_setup(void);
void test_etcd_teardown(void);

/* Runs the tests added (g_test_run()) with a cluster of @n members in
 * *@cluster (NULL when etcd is not installed: the tests skip), then stops
 * it; set up and torn down around. g_test_init() was called. */
int test_etcd_run(guint n, TestCluster **cluster);

void test_kill_all(void);
void test_member_kill(TestMember *member);
/* @n members forming one cluster, each answering when this returns. */
TestCluster *test_cluster_start(guint n);
/* Whether members can serve https (openssl and tests/cluster/make-etcd-
 * certs.sh, whose path comes in ETCD_MAKE_CERTS, are there). */
gboolean test_tls_available(void);
/* The same over https: the certificates of make-etcd-certs.sh, made in
 * the cluster's directory; the members serve @member_cert ("member": from
 * the cluster's CA; "rogue": from another CA) on https client URLs (peer
 * URLs stay http) and take only clients with a certificate from the
 * cluster's CA (--client-cert-auth). */
TestCluster *test_cluster_start_tls(guint n, const gchar *member_cert);
/* The file @name ("client-cert", "ca-cert", …) of a TLS cluster's
 * certificates. */
gchar *test_cert_file(TestCluster *cluster, const gchar *name);
/* A client of @endpoints with the TLS files of @cluster named by
 * @cert and @ca ("client", "ca", …; NULL: none). */
GwEtcd *test_tls_client(TestCluster *cluster, const gchar *const *endpoints, const gchar *cert,
                        const gchar *ca);
void test_cluster_stop(TestCluster *cluster);
const gchar *test_url(TestCluster *cluster, guint i);

GwEtcd *test_client(const gchar *const *endpoints);
/* A GAsyncReadyCallback storing a ref on the result in *(GAsyncResult **)
 * @user_data; test_wait() spins the main context until it is there. */
void test_got_result(GObject *source, GAsyncResult *result, gpointer user_data);
GAsyncResult *test_wait(GAsyncResult **slot);
GPtrArray *test_range(GwEtcd *etcd, const gchar *key, gboolean prefix, gint64 limit,
                      gint64 *revision, gboolean *more);
/* A lease of @ttl seconds (asserts etcd granted that TTL). */
gint64 test_grant(GwEtcd *etcd, gint64 ttl);
/* Sleeps @ms with the main context running (keepers, watches). */
void test_sleep_running(guint ms);

G_END_DECLS
