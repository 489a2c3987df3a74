/* usbgwd.conf's cluster settings (gw-config.c): what cluster mode needs is
 * checked at load, each refusal naming the file and the key; a good file
 * fills the settings, cluster-address from link-listen by default. */
#include <string.h>

#include <glib/gstdio.h>

#include "gw-config.h"

#define LINKS                                                                                      \
    "link-cert=/etc/usbgw/link/hv1.crt\n"                                                          \
    "link-key=/etc/usbgw/link/hv1.key\n"                                                           \
    "link-ca=/etc/usbgw/link/ca.crt\n"

typedef struct {
    const gchar *name;
    const gchar *text;       /* after [usbgwd] */
    const gchar *want_error; /* NULL: loads */
} ConfigCase;

static const ConfigCase cases[] = {
    {"no-links", "cluster-etcd=https://10.0.0.11:2379\n",
     "cluster-etcd needs gateway links: link-listen"},
    {"bad-url", "link-listen=10.0.0.1:7575\n" LINKS "cluster-etcd=https://a:2379, etcd:2379\n",
     "cluster-etcd: 'etcd:2379': expected https://HOST:PORT"},
    {"half-cert",
     "link-listen=10.0.0.1:7575\n" LINKS
     "cluster-etcd=https://a:2379\ncluster-etcd-cert=/etc/usbgw/etcd/client.crt\n",
     "cluster-etcd-cert and cluster-etcd-key go together"},
    {"wildcard", "link-listen=0.0.0.0:7575\n" LINKS "cluster-etcd=https://a:2379\n",
     "link-listen=0.0.0.0:7575 listens on every address: set cluster-address"},
    {"bad-address",
     "link-listen=0.0.0.0:7575\n" LINKS "cluster-etcd=https://a:2379\ncluster-address=hv1\n",
     "cluster-address=hv1: expected HOST:PORT"},
    {"ttl-too-short",
     "link-listen=10.0.0.1:7575\n" LINKS "cluster-etcd=https://a:2379\ncluster-ttl=1\n",
     "cluster-ttl"},
    {"good",
     "link-listen=10.0.0.1:7575\n" LINKS "cluster-etcd=https://a:2379,https://b:2379\n"
     "cluster-etcd-cert=/c.crt\ncluster-etcd-key=/c.key\ncluster-etcd-ca=/ca.crt\n",
     NULL},
};

static void
test_config_case(gconstpointer data)
{
    const ConfigCase *c = data;
    g_autofree gchar *dir = g_dir_make_tmp("usbgw-config-XXXXXX", NULL);
    g_autofree gchar *path = g_build_filename(dir, "usbgwd.conf", NULL);
    g_autofree gchar *text = g_strconcat("[usbgwd]\n", c->text, NULL);
    g_autoptr(GError) error = NULL;
    GwConfig config = {0};
    gboolean ok;

    g_assert_true(g_file_set_contents(path, text, -1, NULL));
    ok = gw_config_load(&config, path, &error);
    if (c->want_error != NULL) {
        g_assert_false(ok);
        g_assert_nonnull(error);
        g_test_message("%s", error->message);
        g_assert_true(g_str_has_prefix(error->message, path));
        g_assert_nonnull(strstr(error->message, c->want_error));
    } else {
        g_assert_no_error(error);
        g_assert_true(ok);
        g_assert_cmpstr(config.cluster_etcd, ==, "https://a:2379,https://b:2379");
        g_assert_cmpstr(config.cluster_etcd_cert, ==, "/c.crt");
        g_assert_cmpstr(config.cluster_etcd_key, ==, "/c.key");
        g_assert_cmpstr(config.cluster_etcd_ca, ==, "/ca.crt");
        /* the links' listener is the address others dial */
        g_assert_cmpstr(config.cluster_address, ==, "10.0.0.1:7575");
        g_assert_cmpuint(config.cluster_ttl, ==, 10);
    }
    gw_config_clear(&config);
    g_unlink(path);
    g_rmdir(dir);
}

int
main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    for (guint i = 0; i < G_N_ELEMENTS(cases); i++) {
        g_autofree gchar *name = g_strdup_printf("/config/cluster/%s", cases[i].name);
        g_test_add_data_func(name, &cases[i], test_config_case);
    }
    return g_test_run();
}
