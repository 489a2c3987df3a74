/* Real etcd members for the tests of gateway/cluster (test-etcd-members.h). */
#include <glib/gstdio.h>
#include <signal.h>
#include <sys/prctl.h>

#include "test-etcd-members.h"

/* Seconds a member has to answer after it was started. */
#define TEST_START_TIMEOUT_S 30

gchar *etcd_path;
gchar *etcdctl_path;
GPtrArray *all_processes;

/* ---- running etcd ---- */

/* In the child: killed with this process, whatever ends it. */
static void
test_child_setup(gpointer data)
{
    prctl(PR_SET_PDEATHSIG, SIGKILL);
}

void
test_kill_all(void)
{
    for (guint i = 0; all_processes != NULL && i < all_processes->len; i++) {
        GSubprocess *process = g_ptr_array_index(all_processes, i);
        g_subprocess_send_signal(process, SIGKILL);
    }
}

void
test_member_kill(TestMember *member)
{
    if (member->process == NULL)
        return;
    g_subprocess_send_signal(member->process, SIGKILL);
    g_assert_true(g_subprocess_wait(member->process, NULL, NULL));
    g_clear_object(&member->process);
}

GwEtcd *
test_client(const gchar *const *endpoints)
{
    g_autoptr(GError) error = NULL;
    GwEtcd *etcd = gw_etcd_new(endpoints, &error);
    g_assert_no_error(error);
    return etcd;
}

void
test_got_result(GObject *source, GAsyncResult *result, gpointer user_data)
{
    *(GAsyncResult **)user_data = g_object_ref(result);
}

GAsyncResult *
test_wait(GAsyncResult **slot)
{
    while (*slot == NULL)
        g_main_context_iteration(NULL, TRUE);
    return *slot;
}

gboolean
test_tls_available(void)
{
    g_autofree gchar *openssl = g_find_program_in_path("openssl");
    const gchar *script = g_getenv("ETCD_MAKE_CERTS");

    return openssl != NULL && script != NULL && g_file_test(script, G_FILE_TEST_IS_REGULAR);
}

gchar *
test_cert_file(TestCluster *cluster, const gchar *name)
{
    g_autofree gchar *file = g_strdup_printf("%s.pem", name);
    return g_build_filename(cluster->certs, file, NULL);
}

GwEtcd *
test_tls_client(TestCluster *cluster, const gchar *const *endpoints, const gchar *cert,
                const gchar *ca)
{
    g_autoptr(GwEtcd) etcd = test_client(endpoints);
    g_autoptr(GError) error = NULL;
    g_autofree gchar *cert_name = cert != NULL ? g_strdup_printf("%s-cert", cert) : NULL;
    g_autofree gchar *key_name = cert != NULL ? g_strdup_printf("%s-key", cert) : NULL;
    g_autofree gchar *ca_name = ca != NULL ? g_strdup_printf("%s-cert", ca) : NULL;
    g_autofree gchar *cert_file = cert != NULL ? test_cert_file(cluster, cert_name) : NULL;
    g_autofree gchar *key_file = cert != NULL ? test_cert_file(cluster, key_name) : NULL;
    g_autofree gchar *ca_file = ca != NULL ? test_cert_file(cluster, ca_name) : NULL;

    g_assert_true(gw_etcd_set_tls(etcd, cert_file, key_file, ca_file, &error));
    g_assert_no_error(error);
    return g_steal_pointer(&etcd);
}

/* Waits until @url answers a range (any answer of etcd's); over https
 * with the cluster's client certificate, trusting the CA that signed the
 * members' certificates. */
static void
test_wait_answering(TestCluster *cluster, const gchar *url)
{
    const gchar *endpoints[] = {url, NULL};
    g_autoptr(GwEtcd) etcd =
        cluster->certs == NULL
            ? test_client(endpoints)
            : test_tls_client(cluster, endpoints, "client",
                              g_strcmp0(cluster->member_cert, "rogue") == 0 ? "other-ca" : "ca");
    gint64 deadline = g_get_monotonic_time() + TEST_START_TIMEOUT_S * G_USEC_PER_SEC;

    for (;;) {
        g_autoptr(GAsyncResult) result = NULL;
        g_autoptr(GError) error = NULL;
        g_autoptr(GPtrArray) kvs = NULL;

        gw_etcd_range_async(etcd, "/health-probe", FALSE, 0, NULL, test_got_result, &result);
        kvs = gw_etcd_range_finish(etcd, test_wait(&result), NULL, NULL, &error);
        if (kvs != NULL)
            return;
        if (g_get_monotonic_time() > deadline)
            g_error("etcd at %s did not answer within %d s: %s", url, TEST_START_TIMEOUT_S,
                    error->message);
        g_usleep(100 * 1000);
    }
}

/* Makes the certificates of a TLS cluster in its directory. */
static void
test_make_certs(TestCluster *cluster)
{
    const gchar *argv[] = {g_getenv("ETCD_MAKE_CERTS"), NULL, NULL};
    g_autoptr(GError) error = NULL;
    g_autofree gchar *err = NULL;
    gint status = -1;

    cluster->certs = g_build_filename(cluster->dir, "certs", NULL);
    argv[1] = cluster->certs;
    g_assert_true(g_spawn_sync(NULL, (gchar **)argv, NULL, G_SPAWN_STDOUT_TO_DEV_NULL, NULL, NULL,
                               NULL, &err, &status, &error));
    g_assert_no_error(error);
    if (!g_spawn_check_wait_status(status, NULL))
        g_error("%s failed: %s", argv[0], err);
}

/* Starts the members; over https with @member_cert when not NULL. */
static TestCluster *
test_cluster_start_full(guint n, const gchar *member_cert)
{
    TestCluster *cluster = g_new0(TestCluster, 1);
    g_autoptr(GString) initial = g_string_new(NULL);
    g_autoptr(GError) error = NULL;
    g_autofree gchar *token = NULL;

    cluster->dir = g_dir_make_tmp("test-gw-etcd-XXXXXX", &error);
    g_assert_no_error(error);
    token = g_path_get_basename(cluster->dir);
    if (member_cert != NULL) {
        cluster->member_cert = g_strdup(member_cert);
        test_make_certs(cluster);
    }
    cluster->members = g_ptr_array_new();
    for (guint i = 0; i < n; i++) {
        TestMember *member = g_new0(TestMember, 1);
        member->name = g_strdup_printf("n%u", i + 1);
        member->client_url = g_strdup_printf(
            "%s://127.0.0.1:%u", member_cert != NULL ? "https" : "http", test_free_port());
        member->peer_url = g_strdup_printf("http://127.0.0.1:%u", test_free_port());
        g_string_append_printf(initial, "%s%s=%s", i > 0 ? "," : "", member->name,
                               member->peer_url);
        g_ptr_array_add(cluster->members, member);
    }
    for (guint i = 0; i < n; i++) {
        TestMember *member = g_ptr_array_index(cluster->members, i);
        g_autoptr(GSubprocessLauncher) launcher =
            g_subprocess_launcher_new(G_SUBPROCESS_FLAGS_STDIN_INHERIT);
        g_autofree gchar *data_dir = g_build_filename(cluster->dir, member->name, NULL);
        g_autofree gchar *log = g_strdup_printf("%s/%s.log", cluster->dir, member->name);
        g_autoptr(GStrvBuilder) args = g_strv_builder_new();
        g_auto(GStrv) argv = NULL;

        g_subprocess_launcher_set_stderr_file_path(launcher, log);
        g_subprocess_launcher_set_stdout_file_path(launcher, log);
        g_subprocess_launcher_set_child_setup(launcher, test_child_setup, NULL, NULL);
        /* short heartbeats and elections: a killed leader is replaced in
         * well under a second */
        const gchar *common[] = {etcd_path,
                                 "--name",
                                 member->name,
                                 "--data-dir",
                                 data_dir,
                                 "--listen-client-urls",
                                 member->client_url,
                                 "--advertise-client-urls",
                                 member->client_url,
                                 "--listen-peer-urls",
                                 member->peer_url,
                                 "--initial-advertise-peer-urls",
                                 member->peer_url,
                                 "--initial-cluster",
                                 initial->str,
                                 "--initial-cluster-state",
                                 "new",
                                 "--initial-cluster-token",
                                 token,
                                 "--heartbeat-interval",
                                 "50",
                                 "--election-timeout",
                                 "500",
                                 NULL};
        g_strv_builder_addv(args, common);
        if (member_cert != NULL) {
            g_autofree gchar *cert_name = g_strdup_printf("%s-cert", member_cert);
            g_autofree gchar *key_name = g_strdup_printf("%s-key", member_cert);
            g_autofree gchar *cert = test_cert_file(cluster, cert_name);
            g_autofree gchar *key = test_cert_file(cluster, key_name);
            /* a rogue member's own gateway dials it with the rogue
             * certificate: it trusts both CAs */
            g_autofree gchar *ca = test_cert_file(
                cluster, g_strcmp0(member_cert, "rogue") == 0 ? "both-ca-cert" : "ca-cert");
            const gchar *tls[] = {"--cert-file",       cert, "--key-file",         key,
                                  "--trusted-ca-file", ca,   "--client-cert-auth", NULL};
            g_strv_builder_addv(args, tls);
        }
        argv = g_strv_builder_end(args);
        member->process =
            g_subprocess_launcher_spawnv(launcher, (const gchar *const *)argv, &error);
        g_assert_no_error(error);
        g_ptr_array_add(all_processes, g_object_ref(member->process));
    }
    for (guint i = 0; i < n; i++) {
        TestMember *member = g_ptr_array_index(cluster->members, i);
        test_wait_answering(cluster, member->client_url);
    }
    return cluster;
}

TestCluster *
test_cluster_start(guint n)
{
    return test_cluster_start_full(n, NULL);
}

TestCluster *
test_cluster_start_tls(guint n, const gchar *member_cert)
{
    return test_cluster_start_full(n, member_cert);
}

static void
test_remove_tree(const gchar *path)
{
    GDir *dir = g_file_test(path, G_FILE_TEST_IS_SYMLINK) ? NULL : g_dir_open(path, 0, NULL);
    const gchar *name;

    while (dir != NULL && (name = g_dir_read_name(dir)) != NULL) {
        g_autofree gchar *child = g_build_filename(path, name, NULL);
        test_remove_tree(child);
    }
    if (dir != NULL)
        g_dir_close(dir);
    g_remove(path);
}

void
test_cluster_stop(TestCluster *cluster)
{
    for (guint i = 0; i < cluster->members->len; i++) {
        TestMember *member = g_ptr_array_index(cluster->members, i);
        test_member_kill(member);
        g_free(member->name);
        g_free(member->client_url);
        g_free(member->peer_url);
        g_free(member);
    }
    g_ptr_array_unref(cluster->members);
    test_remove_tree(cluster->dir);
    g_free(cluster->dir);
    g_free(cluster->certs);
    g_free(cluster->member_cert);
    g_free(cluster);
}

const gchar *
test_url(TestCluster *cluster, guint i)
{
    return ((TestMember *)g_ptr_array_index(cluster->members, i))->client_url;
}
GPtrArray *
test_range(GwEtcd *etcd, const gchar *key, gboolean prefix, gint64 limit, gint64 *revision,
           gboolean *more)
{
    g_autoptr(GAsyncResult) result = NULL;
    g_autoptr(GError) error = NULL;
    GPtrArray *kvs;

    gw_etcd_range_async(etcd, key, prefix, limit, NULL, test_got_result, &result);
    kvs = gw_etcd_range_finish(etcd, test_wait(&result), revision, more, &error);
    g_assert_no_error(error);
    g_assert_nonnull(kvs);
    return kvs;
}

gint64
test_grant(GwEtcd *etcd, gint64 ttl)
{
    g_autoptr(GAsyncResult) result = NULL;
    g_autoptr(GError) error = NULL;
    gint64 id = 0;
    gint64 granted = 0;

    gw_etcd_lease_grant_async(etcd, ttl, NULL, test_got_result, &result);
    g_assert_true(gw_etcd_lease_grant_finish(etcd, test_wait(&result), &id, &granted, &error));
    g_assert_no_error(error);
    g_assert_cmpint(id, !=, 0);
    g_assert_cmpint(granted, ==, ttl);
    return id;
}

static gboolean
test_set_flag(gpointer user_data)
{
    *(gboolean *)user_data = TRUE;
    return G_SOURCE_REMOVE;
}

/* Sleeps @ms with the main context running (keepers, watches). */
void
test_sleep_running(guint ms)
{
    gboolean done = FALSE;

    g_timeout_add(ms, test_set_flag, &done);
    while (!done)
        g_main_context_iteration(NULL, TRUE);
}

void
test_etcd_setup(void)
{
    etcd_path = g_find_program_in_path("etcd");
    etcdctl_path = g_find_program_in_path("etcdctl");
    all_processes = g_ptr_array_new_with_free_func(g_object_unref);
    atexit(test_kill_all);
    /* GLib's idle pool threads (TLS handshakes, the fake endpoints) end 15 s
     * after their last task; one ending while LeakSanitizer stops the
     * world at exit crashes its tracer ("Tracer caught signal 11", seen
     * once after every case of test-gw-etcd had passed). They stay. */
    g_thread_pool_set_max_idle_time(0);
}

void
test_etcd_teardown(void)
{
    test_kill_all();
    g_clear_pointer(&all_processes, g_ptr_array_unref);
    g_clear_pointer(&etcd_path, g_free);
    g_clear_pointer(&etcdctl_path, g_free);
}

int
test_etcd_run(guint n, TestCluster **cluster)
{
    int ret;

    test_etcd_setup();
    if (etcd_path != NULL)
        *cluster = test_cluster_start(n);
    ret = g_test_run();
    g_clear_pointer(cluster, test_cluster_stop);
    test_etcd_teardown();
    return ret;
}
