/* Matching devices against rules and answering decisions. Hot path: a
 * decision walks the rules in order, so every matcher rejects cheaply (ids
 * first, globs precompiled). */
#include "policy-private.h"

#include <string.h>

void
policy_glob_init(PolicyGlob *glob, const gchar *text)
{
    glob->text = g_strdup(text);
    glob->glob = strpbrk(text, "*?") != NULL ? g_pattern_spec_new(text) : NULL;
}

void
policy_glob_clear(PolicyGlob *glob)
{
    g_clear_pointer(&glob->text, g_free);
    g_clear_pointer(&glob->glob, g_pattern_spec_free);
}

gboolean
policy_glob_is_literal(const PolicyGlob *glob)
{
    return glob->glob == NULL;
}

gboolean
policy_glob_match(const PolicyGlob *glob, const gchar *value)
{
    if (value == NULL)
        return FALSE;
    if (glob->glob == NULL)
        return strcmp(glob->text, value) == 0;
    return g_pattern_spec_match_string(glob->glob, value);
}

gboolean
policy_class_pattern_match(const PolicyClassPattern *pattern, guint8 klass, guint8 subclass,
                           guint8 protocol)
{
    return (pattern->klass < 0 || pattern->klass == klass) &&
           (pattern->subclass < 0 || pattern->subclass == subclass) &&
           (pattern->protocol < 0 || pattern->protocol == protocol);
}

static gboolean
policy_interface_matches_any(const GArray *patterns, const PolicyInterface *iface)
{
    for (guint i = 0; i < patterns->len; i++) {
        const PolicyClassPattern *p = &g_array_index(patterns, PolicyClassPattern, i);
        if (policy_class_pattern_match(p, iface->klass, iface->subclass, iface->protocol))
            return TRUE;
    }
    return FALSE;
}

static gboolean
policy_pattern_matches_some_interface(const PolicyClassPattern *pattern, const GArray *interfaces)
{
    for (guint i = 0; i < interfaces->len; i++) {
        const PolicyInterface *iface = &g_array_index(interfaces, PolicyInterface, i);
        if (policy_class_pattern_match(pattern, iface->klass, iface->subclass, iface->protocol))
            return TRUE;
    }
    return FALSE;
}

static gboolean
policy_rule_match_interfaces(const PolicyRule *rule, const GArray *interfaces)
{
    switch (rule->interface_op) {
    case POLICY_SET_ONE_OF:
    case POLICY_SET_NONE_OF:
        for (guint i = 0; i < interfaces->len; i++) {
            if (policy_interface_matches_any(rule->interfaces,
                                             &g_array_index(interfaces, PolicyInterface, i)))
                return rule->interface_op == POLICY_SET_ONE_OF;
        }
        return rule->interface_op == POLICY_SET_NONE_OF;
    case POLICY_SET_ALL_OF:
        for (guint i = 0; i < rule->interfaces->len; i++) {
            if (!policy_pattern_matches_some_interface(
                    &g_array_index(rule->interfaces, PolicyClassPattern, i), interfaces))
                return FALSE;
        }
        return TRUE;
    case POLICY_SET_MATCH_ALL:
        if (interfaces->len == 0)
            return FALSE;
        for (guint i = 0; i < interfaces->len; i++) {
            if (!policy_interface_matches_any(rule->interfaces,
                                              &g_array_index(interfaces, PolicyInterface, i)))
                return FALSE;
        }
        return TRUE;
    }
    return FALSE;
}

gboolean
policy_rule_match_device(const PolicyRule *rule, const PolicyDevice *device)
{
    if (rule->vendor_id >= 0 && rule->vendor_id != device->vendor_id)
        return FALSE;
    if (rule->product_id >= 0 && rule->product_id != device->product_id)
        return FALSE;
    if (rule->matchers & POLICY_MATCH_CLASS &&
        !policy_class_pattern_match(&rule->device_class, device->device_class,
                                    device->device_subclass, device->device_protocol))
        return FALSE;
    if (rule->matchers & POLICY_MATCH_SERIAL) {
        /* serial "" stands for "has no serial", as many HASP keys do */
        const gchar *serial = device->serial != NULL ? device->serial : "";
        if (!policy_glob_match(&rule->serial, serial))
            return FALSE;
    }
    if (rule->matchers & POLICY_MATCH_NAME && !policy_glob_match(&rule->name, device->product))
        return FALSE;
    if (rule->matchers & POLICY_MATCH_PORT && !policy_glob_match(&rule->port, device->port))
        return FALSE;
    if (rule->matchers & POLICY_MATCH_HASH && g_strcmp0(rule->hash, device->hash) != 0)
        return FALSE;
    if (rule->matchers & POLICY_MATCH_INTERFACE &&
        !policy_rule_match_interfaces(rule, device->interfaces))
        return FALSE;
    /* without `on gateway` a rule matches a device wherever it is */
    if (rule->matchers & POLICY_MATCH_GATEWAY &&
        !policy_glob_match(&rule->gateway, device->gateway))
        return FALSE;
    return TRUE;
}

static const PolicyPool *
policy_lookup_pool(const Policy *policy, const gchar *name)
{
    return g_hash_table_lookup(policy->pools, name);
}

gboolean
policy_rule_target_is_for_vm(const Policy *policy, const PolicyRule *rule, const gchar *vm_name,
                             const gchar *vm_uuid)
{
    switch (rule->target_kind) {
    case POLICY_TARGET_VM:
        return policy_glob_match(&rule->target, vm_name);
    case POLICY_TARGET_VM_UUID:
        return vm_uuid != NULL && g_ascii_strcasecmp(rule->target.text, vm_uuid) == 0;
    case POLICY_TARGET_POOL: {
        const PolicyPool *pool = policy_lookup_pool(policy, rule->target.text);
        return pool != NULL && policy_glob_match(&pool->vms, vm_name);
    }
    case POLICY_TARGET_GATEWAY:
    case POLICY_TARGET_NONE:
        break;
    }
    return FALSE;
}

static gboolean
policy_rule_match_principal(const PolicyRule *rule, const PolicyContext *ctx)
{
    if (rule->user != NULL && g_strcmp0(rule->user, ctx->user) != 0)
        return FALSE;
    if (rule->group != NULL && (ctx->groups == NULL || !g_strv_contains(ctx->groups, rule->group)))
        return FALSE;
    return TRUE;
}

static void
policy_decision_set(PolicyDecision *decision, const Policy *policy, const PolicyRule *rule,
                    guint index)
{
    switch (rule->action) {
    case POLICY_ACTION_ASSIGN:
        decision->verdict = POLICY_VERDICT_ASSIGN;
        break;
    case POLICY_ACTION_SHARE:
        decision->verdict = POLICY_VERDICT_SHARE;
        break;
    case POLICY_ACTION_DENY:
        decision->verdict = POLICY_VERDICT_DENY;
        break;
    case POLICY_ACTION_EXPORT:
        decision->verdict = POLICY_VERDICT_EXPORT;
        break;
    case POLICY_ACTION_ALLOW_METADATA:
        decision->verdict = POLICY_VERDICT_METADATA;
        break;
    }
    decision->target_kind = rule->target_kind;
    decision->target = rule->target.text;
    decision->required = rule->required;
    decision->file = policy->filename;
    decision->line = rule->line;
    decision->rule_index = index;
}

void
policy_decide(const Policy *policy, PolicyOrigin origin, const PolicyDevice *device,
              const PolicyContext *ctx, PolicyDecision *decision)
{
    static const PolicyContext empty = {0};

    if (ctx == NULL)
        ctx = &empty;
    memset(decision, 0, sizeof(*decision));
    decision->verdict = origin == POLICY_ORIGIN_SHARE ? POLICY_VERDICT_DENY : POLICY_VERDICT_NONE;

    for (guint i = 0; i < policy->rules->len; i++) {
        const PolicyRule *rule = g_ptr_array_index(policy->rules, i);

        if (origin == POLICY_ORIGIN_HOST && rule->action == POLICY_ACTION_SHARE)
            continue;
        if (origin == POLICY_ORIGIN_SHARE &&
            (rule->action == POLICY_ACTION_ASSIGN || rule->action == POLICY_ACTION_EXPORT ||
             rule->action == POLICY_ACTION_ALLOW_METADATA))
            continue;
        /* a pool wish rule says which VMs may join a pool, not who gets a
         * device: the pool's assign rules decide that */
        if (rule->metadata_pool != NULL)
            continue;
        /* only this host's own devices are exported, and only to the
         * gateways the glob names (any, when no gateway is asked about) */
        if (rule->action == POLICY_ACTION_EXPORT &&
            (device->gateway != NULL ||
             (ctx->gateway != NULL && !policy_glob_match(&rule->target, ctx->gateway))))
            continue;
        /* a lent device's serial, name, port and hash are unknown: "no
         * serial" (serial "") must not match it, nor anything a caller
         * filled in from the client's word */
        if (origin == POLICY_ORIGIN_SHARE && (rule->matchers & POLICY_MATCH_CLAIMED))
            continue;
        if (!policy_rule_match_device(rule, device))
            continue;
        if (rule->action == POLICY_ACTION_SHARE &&
            (!policy_rule_match_principal(rule, ctx) ||
             !policy_rule_target_is_for_vm(policy, rule, ctx->vm_name, ctx->vm_uuid)))
            continue;
        policy_decision_set(decision, policy, rule, i);
        return;
    }
}

gboolean
policy_exports_to(const Policy *policy, const PolicyDevice *device, const gchar *gateway,
                  PolicyDecision *decision)
{
    PolicyContext ctx = {.gateway = gateway};
    PolicyDecision local;

    if (decision == NULL)
        decision = &local;
    policy_decide(policy, POLICY_ORIGIN_HOST, device, &ctx, decision);
    return decision->verdict == POLICY_VERDICT_EXPORT;
}

gboolean
policy_decision_is_for_vm(const Policy *policy, const PolicyDecision *decision,
                          const gchar *vm_name, const gchar *vm_uuid)
{
    const PolicyRule *rule;

    if (decision->verdict != POLICY_VERDICT_ASSIGN && decision->verdict != POLICY_VERDICT_SHARE &&
        decision->verdict != POLICY_VERDICT_METADATA)
        return FALSE;
    if (decision->rule_index >= policy->rules->len)
        return FALSE;
    rule = g_ptr_array_index(policy->rules, decision->rule_index);
    return policy_rule_target_is_for_vm(policy, rule, vm_name, vm_uuid);
}

GArray *
policy_get_requirements(const Policy *policy, const gchar *vm_name, const gchar *vm_uuid)
{
    GArray *out = g_array_new(FALSE, TRUE, sizeof(PolicyRequirement));
    for (guint i = 0; i < policy->rules->len; i++) {
        const PolicyRule *rule = g_ptr_array_index(policy->rules, i);
        PolicyRequirement req = {.rule_index = i,
                                 .file = policy->filename,
                                 .line = rule->line,
                                 .target_kind = rule->target_kind,
                                 .target = rule->target.text};
        if (rule->action != POLICY_ACTION_ASSIGN || !rule->required ||
            !policy_rule_target_is_for_vm(policy, rule, vm_name, vm_uuid))
            continue;
        g_array_append_val(out, req);
    }
    return out;
}

gboolean
policy_requirement_is_met_by(const Policy *policy, const PolicyRequirement *req,
                             const PolicyDevice *device)
{
    PolicyDecision decision;
    policy_decide(policy, POLICY_ORIGIN_HOST, device, NULL, &decision);
    return decision.verdict == POLICY_VERDICT_ASSIGN && decision.rule_index == req->rule_index;
}

const gchar *
policy_verdict_to_string(PolicyVerdict verdict)
{
    switch (verdict) {
    case POLICY_VERDICT_NONE:
        return "none";
    case POLICY_VERDICT_ASSIGN:
        return "assign";
    case POLICY_VERDICT_SHARE:
        return "share";
    case POLICY_VERDICT_DENY:
        return "deny";
    case POLICY_VERDICT_EXPORT:
        return "export";
    case POLICY_VERDICT_METADATA:
        return "allow-metadata";
    }
    return "unknown";
}

const gchar *
policy_target_kind_to_string(PolicyTargetKind kind)
{
    switch (kind) {
    case POLICY_TARGET_NONE:
        return "none";
    case POLICY_TARGET_VM:
        return "vm";
    case POLICY_TARGET_VM_UUID:
        return "vm-uuid";
    case POLICY_TARGET_POOL:
        return "pool";
    case POLICY_TARGET_GATEWAY:
        return "gateway";
    }
    return "unknown";
}

gboolean
policy_vm_name_is_valid(const gchar *name)
{
    return name != NULL && name[0] != '\0' && name[0] != '.' && strchr(name, '/') == NULL &&
           strlen(name) <= POLICY_VM_NAME_MAX;
}

/* ---- wishes ----------------------------------------------------------------- */

PolicyWish *
policy_wish_new_pool(const gchar *pool)
{
    PolicyWish *wish = g_new0(PolicyWish, 1);
    wish->pool = g_strdup(pool);
    wish->vendor_id = -1;
    wish->product_id = -1;
    return wish;
}

PolicyWish *
policy_wish_new_device(const gchar *id, const gchar *serial)
{
    g_autoptr(PolicyWish) wish = g_new0(PolicyWish, 1);

    if (id == NULL || !policy_parse_id(id, &wish->vendor_id, &wish->product_id) ||
        wish->vendor_id < 0)
        return NULL;
    wish->serial = g_strdup(serial);
    return g_steal_pointer(&wish);
}

PolicyWish *
policy_wish_copy(const PolicyWish *wish)
{
    PolicyWish *copy = g_memdup2(wish, sizeof(*wish));
    copy->pool = g_strdup(wish->pool);
    copy->serial = g_strdup(wish->serial);
    return copy;
}

void
policy_wish_free(PolicyWish *wish)
{
    if (wish == NULL)
        return;
    g_free(wish->pool);
    g_free(wish->serial);
    g_free(wish);
}

gboolean
policy_wish_equal(const PolicyWish *a, const PolicyWish *b)
{
    return g_strcmp0(a->pool, b->pool) == 0 && a->vendor_id == b->vendor_id &&
           a->product_id == b->product_id && g_strcmp0(a->serial, b->serial) == 0;
}

gchar *
policy_wish_describe(const PolicyWish *wish)
{
    GString *out = g_string_new(NULL);
    g_autofree gchar *vendor = NULL;
    g_autofree gchar *product = NULL;

    if (wish->pool != NULL) {
        g_string_append_printf(out, "pool \"%s\"", wish->pool);
        return g_string_free(out, FALSE);
    }
    vendor = wish->vendor_id >= 0 ? g_strdup_printf("%04x", (guint)wish->vendor_id) : g_strdup("*");
    product =
        wish->product_id >= 0 ? g_strdup_printf("%04x", (guint)wish->product_id) : g_strdup("*");
    g_string_append_printf(out, "id %s:%s", vendor, product);
    if (wish->serial != NULL)
        g_string_append_printf(out, " serial \"%s\"", wish->serial);
    return g_string_free(out, FALSE);
}

gboolean
policy_wish_matches_device(const PolicyWish *wish, const PolicyDevice *device)
{
    if (wish->pool != NULL)
        return FALSE;
    if (wish->vendor_id >= 0 && wish->vendor_id != device->vendor_id)
        return FALSE;
    if (wish->product_id >= 0 && wish->product_id != device->product_id)
        return FALSE;
    return wish->serial == NULL || g_strcmp0(wish->serial, device->serial) == 0;
}

gboolean
policy_metadata_allows_pool(const Policy *policy, const gchar *pool, const gchar *vm_name,
                            const gchar *vm_uuid, PolicyDecision *decision)
{
    for (guint i = 0; i < policy->rules->len; i++) {
        const PolicyRule *rule = g_ptr_array_index(policy->rules, i);
        if (rule->metadata_pool == NULL || g_strcmp0(rule->metadata_pool, pool) != 0 ||
            !policy_rule_target_is_for_vm(policy, rule, vm_name, vm_uuid))
            continue;
        if (decision != NULL) {
            memset(decision, 0, sizeof(*decision));
            policy_decision_set(decision, policy, rule, i);
        }
        return TRUE;
    }
    return FALSE;
}

gboolean
policy_metadata_names_vm(const Policy *policy, const gchar *vm_name, const gchar *vm_uuid)
{
    for (guint i = 0; i < policy->rules->len; i++) {
        const PolicyRule *rule = g_ptr_array_index(policy->rules, i);
        if (rule->action == POLICY_ACTION_ALLOW_METADATA &&
            policy_rule_target_is_for_vm(policy, rule, vm_name, vm_uuid))
            return TRUE;
    }
    return FALSE;
}
