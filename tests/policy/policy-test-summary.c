#include "policy-test-summary.h"

static void
summary_hex(GString *out, gint value, gint digits)
{
    if (value < 0)
        g_string_append_c(out, '*');
    else
        g_string_append_printf(out, "%0*x", digits, (guint)value);
}

static void
summary_class(GString *out, const PolicyClassPattern *p)
{
    summary_hex(out, p->klass, 2);
    g_string_append_c(out, ':');
    summary_hex(out, p->subclass, 2);
    g_string_append_c(out, ':');
    summary_hex(out, p->protocol, 2);
}

static void
summary_glob(GString *out, const gchar *key, const PolicyGlob *glob)
{
    g_autofree gchar *escaped = g_strescape(glob->text, NULL);
    g_string_append_printf(out, " %s%s\"%s\"", key, policy_glob_is_literal(glob) ? "=" : "~",
                           escaped);
}

static void
summary_string(GString *out, const gchar *key, const gchar *value)
{
    g_autofree gchar *escaped = g_strescape(value, NULL);
    g_string_append_printf(out, " %s=\"%s\"", key, escaped);
}

static const gchar *
summary_action(PolicyAction action)
{
    switch (action) {
    case POLICY_ACTION_ASSIGN:
        return "assign";
    case POLICY_ACTION_DENY:
        return "deny";
    case POLICY_ACTION_SHARE:
        return "share";
    case POLICY_ACTION_EXPORT:
        return "export";
    case POLICY_ACTION_ALLOW_METADATA:
        return "allow-metadata";
    }
    return "?";
}

static const gchar *
summary_set_op(PolicySetOp op)
{
    switch (op) {
    case POLICY_SET_ONE_OF:
        return "one-of";
    case POLICY_SET_ALL_OF:
        return "all-of";
    case POLICY_SET_NONE_OF:
        return "none-of";
    case POLICY_SET_MATCH_ALL:
        return "match-all";
    }
    return "?";
}

static gint
summary_compare_pools(gconstpointer a, gconstpointer b)
{
    const PolicyPool *pa = *(const PolicyPool *const *)a;
    const PolicyPool *pb = *(const PolicyPool *const *)b;
    return g_strcmp0(pa->name, pb->name);
}

gchar *
policy_test_summary(const Policy *policy)
{
    GString *out = g_string_new(NULL);
    g_autoptr(GPtrArray) pools = g_ptr_array_new();
    GHashTableIter iter;
    gpointer pool;

    g_hash_table_iter_init(&iter, policy->pools);
    while (g_hash_table_iter_next(&iter, NULL, &pool))
        g_ptr_array_add(pools, pool);

    for (guint i = 0; i < policy->rules->len; i++) {
        const PolicyRule *rule = g_ptr_array_index(policy->rules, i);

        if (out->len > 0)
            g_string_append_c(out, '\n');
        g_string_append_printf(out, "L%u %s", rule->line, summary_action(rule->action));
        if (rule->matchers & POLICY_MATCH_ID) {
            g_string_append(out, " id=");
            summary_hex(out, rule->vendor_id, 4);
            g_string_append_c(out, ':');
            summary_hex(out, rule->product_id, 4);
        }
        if (rule->matchers & POLICY_MATCH_SERIAL)
            summary_glob(out, "serial", &rule->serial);
        if (rule->matchers & POLICY_MATCH_NAME)
            summary_glob(out, "name", &rule->name);
        if (rule->matchers & POLICY_MATCH_PORT)
            summary_glob(out, "via-port", &rule->port);
        if (rule->matchers & POLICY_MATCH_INTERFACE) {
            g_string_append_printf(out, " if=%s{", summary_set_op(rule->interface_op));
            for (guint k = 0; k < rule->interfaces->len; k++) {
                if (k > 0)
                    g_string_append_c(out, ',');
                summary_class(out, &g_array_index(rule->interfaces, PolicyClassPattern, k));
            }
            g_string_append_c(out, '}');
        }
        if (rule->matchers & POLICY_MATCH_CLASS) {
            g_string_append(out, " class=");
            summary_class(out, &rule->device_class);
        }
        if (rule->matchers & POLICY_MATCH_HASH)
            summary_string(out, "hash", rule->hash);
        if (rule->matchers & POLICY_MATCH_USER)
            summary_string(out, "user", rule->user);
        if (rule->matchers & POLICY_MATCH_GROUP)
            summary_string(out, "group", rule->group);
        if (rule->matchers & POLICY_MATCH_GATEWAY)
            summary_glob(out, "on-gateway", &rule->gateway);
        if (rule->metadata_pool != NULL)
            summary_string(out, "pool", rule->metadata_pool);
        if (rule->target_kind != POLICY_TARGET_NONE) {
            g_string_append(out, " ->");
            summary_glob(out, policy_target_kind_to_string(rule->target_kind), &rule->target);
        }
        if (rule->required)
            g_string_append(out, " required");
    }
    g_ptr_array_sort(pools, summary_compare_pools);
    for (guint i = 0; i < pools->len; i++) {
        const PolicyPool *p = g_ptr_array_index(pools, i);
        g_autofree gchar *escaped = g_strescape(p->vms.text, NULL);
        if (out->len > 0)
            g_string_append_c(out, '\n');
        g_string_append_printf(out, "pool %s vms%s\"%s\" L%u", p->name,
                               policy_glob_is_literal(&p->vms) ? "=" : "~", escaped, p->line);
    }
    return g_string_free(out, FALSE);
}
