/* `usbgwctl status`'s cluster lines. */
#include "usbgwctl-cluster.h"

#include "gw-json.h"

static const gchar *
usbgwctl_cluster_text(JsonObject *obj, const gchar *member)
{
    const gchar *text = gw_json_get_string(obj, member);
    return text != NULL ? text : "-";
}

void
usbgwctl_cluster_print(JsonObject *cluster)
{
    JsonArray *holds;
    const gchar *error;

    if (cluster == NULL) {
        g_print("cluster: off (no cluster-etcd in usbgwd.conf)\n");
        return;
    }
    error = gw_json_get_string(cluster, "error");
    g_print("cluster: %s as %s, lease %" G_GINT64_FORMAT " (TTL %" G_GINT64_FORMAT
            " s, lost %" G_GINT64_FORMAT " times), %" G_GINT64_FORMAT " gateways, %" G_GINT64_FORMAT
            " devices%s%s\n",
            usbgwctl_cluster_text(cluster, "state"), usbgwctl_cluster_text(cluster, "gateway"),
            gw_json_get_int(cluster, "lease", 0), gw_json_get_int(cluster, "ttl", 0),
            gw_json_get_int(cluster, "lease_losses", 0), gw_json_get_int(cluster, "gateways", 0),
            gw_json_get_int(cluster, "devices", 0), error != NULL ? ": " : "",
            error != NULL ? error : "");
    holds = gw_json_get_array(cluster, "holds");
    for (guint i = 0; holds != NULL && i < json_array_get_length(holds); i++) {
        JsonNode *node = json_array_get_element(holds, i);
        JsonObject *hold = JSON_NODE_HOLDS_OBJECT(node) ? json_node_get_object(node) : NULL;
        const gchar *reason;

        if (hold == NULL)
            continue;
        reason = gw_json_get_string(hold, "reason");
        g_print("pool %s: %s %s for vm %s%s%s\n", usbgwctl_cluster_text(hold, "pool"),
                usbgwctl_cluster_text(hold, "device"), usbgwctl_cluster_text(hold, "state"),
                usbgwctl_cluster_text(hold, "vm"), reason != NULL ? ": " : "",
                reason != NULL ? reason : "");
    }
}
