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
} TestCluster;

/* Found by test_etcd_setup(); NULL when not installed. */
extern gchar *etcd_path;
extern gchar *etcdctl_path;
/* Every member process started (killed at exit). */
extern GPtrArray *all_processes;

/* Finds the binaries and arranges the kill at exit; teardown kills what
 * is left and frees. */
void test_etcd_setup(void);
void test_etcd_teardown(void);

guint16 test_free_port(void);
void test_kill_all(void);
void test_member_kill(TestMember *member);
/* @n members forming one cluster, each answering when this returns. */
TestCluster *test_cluster_start(guint n);
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
