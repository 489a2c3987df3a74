/* Compiling rules to a usbredirfilter string for QEMU's <redirfilter>: a
 * second, coarser line of defence in QEMU itself. usbredirfilter knows
 * class, vendor, product and version, and checks the device class and each
 * interface class in separate passes; everything else is reported. */
#include "policy-private.h"

#include <usbredirfilter.h>

static void policy_filter_note(GPtrArray *notes, const Policy *policy, const PolicyRule *rule,
                               const gchar *format, ...) G_GNUC_PRINTF(4, 5);

static void
policy_filter_note(GPtrArray *notes, const Policy *policy, const PolicyRule *rule,
                   const gchar *format, ...)
{
    va_list args;
    g_autofree gchar *message = NULL;

    va_start(args, format);
    message = g_strdup_vprintf(format, args);
    va_end(args);
    g_ptr_array_add(notes, g_strdup_printf("%s:%u: %s", policy->filename, rule->line, message));
}

/* Matchers beyond ids that usbredirfilter cannot express, as "serial,
 * via-port". Interfaces and class count as expressible only for deny rules
 * with one-of class-only patterns. */
static gchar *
policy_filter_inexpressible(const PolicyRule *rule, gboolean deny)
{
    static const PolicyMatchFlags never = POLICY_MATCH_SERIAL | POLICY_MATCH_NAME |
                                          POLICY_MATCH_PORT | POLICY_MATCH_HASH |
                                          POLICY_MATCH_GATEWAY;
    g_autoptr(GString) out = g_string_new(NULL);
    PolicyMatchFlags flags = rule->matchers & never;

    if (rule->matchers & POLICY_MATCH_CLASS) {
        /* usbredirfilter's class also matches interface classes: wider */
        flags |= POLICY_MATCH_CLASS;
    }
    if (rule->matchers & POLICY_MATCH_INTERFACE) {
        gboolean simple = deny && rule->interface_op == POLICY_SET_ONE_OF;
        for (guint i = 0; simple && i < rule->interfaces->len; i++) {
            const PolicyClassPattern *p = &g_array_index(rule->interfaces, PolicyClassPattern, i);
            simple = p->subclass < 0 && p->protocol < 0;
        }
        if (!simple)
            flags |= POLICY_MATCH_INTERFACE;
    }
    for (guint bit = 1; bit <= POLICY_MATCH_LAST; bit <<= 1) {
        if (flags & bit) {
            if (out->len > 0)
                g_string_append(out, ", ");
            g_string_append(out, policy_matcher_name(bit));
        }
    }
    return out->len > 0 ? g_string_free(g_steal_pointer(&out), FALSE) : NULL;
}

static void
policy_filter_add(GArray *rules, gint klass, gint vendor_id, gint product_id, gboolean allow)
{
    struct usbredirfilter_rule r = {
        .device_class = klass,
        .vendor_id = vendor_id,
        .product_id = product_id,
        .device_version_bcd = -1,
        .allow = allow ? 1 : 0,
    };
    g_array_append_val(rules, r);
}

gchar *
policy_compile_usbredirfilter(const Policy *policy, const gchar *vm_name, const gchar *vm_uuid,
                              GPtrArray **notes, GError **error)
{
    g_autoptr(GArray) rules = g_array_new(FALSE, FALSE, sizeof(struct usbredirfilter_rule));
    g_autoptr(GPtrArray) found = g_ptr_array_new_with_free_func(g_free);
    gboolean any_vm = vm_name == NULL && vm_uuid == NULL;
    char *text;
    gchar *result;

    for (guint i = 0; i < policy->rules->len; i++) {
        const PolicyRule *rule = g_ptr_array_index(policy->rules, i);
        gboolean deny = rule->action == POLICY_ACTION_DENY;
        g_autofree gchar *inexpressible = NULL;

        /* an export rule gives a device to other gateways, never to a VM:
         * it has no place in a VM's filter */
        if (rule->action == POLICY_ACTION_EXPORT)
            continue;
        /* a pool wish rule names no device (the pool's assign rules do,
         * and they are in the filter of the pool's VMs); a VM that joins
         * the pool by its wish needs the pool's ids in its own filter */
        if (rule->metadata_pool != NULL)
            continue;
        if (!deny && !any_vm && !policy_rule_target_is_for_vm(policy, rule, vm_name, vm_uuid))
            continue;
        inexpressible = policy_filter_inexpressible(rule, deny);
        if (deny) {
            if (inexpressible != NULL) {
                policy_filter_note(found, policy, rule,
                                   "deny rule left out of the filter: usbredirfilter cannot "
                                   "express %s, and a wider deny could block allowed devices",
                                   inexpressible);
                continue;
            }
            if (rule->matchers & POLICY_MATCH_INTERFACE) {
                for (guint k = 0; k < rule->interfaces->len; k++) {
                    const PolicyClassPattern *p =
                        &g_array_index(rule->interfaces, PolicyClassPattern, k);
                    policy_filter_add(rules, p->klass, rule->vendor_id, rule->product_id, FALSE);
                    if (p->klass == 0x03 || p->klass < 0)
                        policy_filter_note(found, policy, rule,
                                           "QEMU skips 03:00:00 (non-boot HID) interfaces of "
                                           "composite devices when it applies this filter: "
                                           "there only usbgwd enforces this deny");
                }
            } else {
                policy_filter_add(rules, -1, rule->vendor_id, rule->product_id, FALSE);
            }
            continue;
        }
        /* An allow keeps only the ids: a class in usbredirfilter must hold
         * in every pass, which would refuse composite devices the rule
         * allows. Wider is safe here: usbgwd enforces the exact rule. */
        if (inexpressible != NULL)
            policy_filter_note(found, policy, rule,
                               "allow widened to %s in the filter: usbredirfilter cannot express "
                               "%s (usbgwd still enforces the exact rule)",
                               rule->vendor_id < 0 ? "any device" : "its vendor/product id",
                               inexpressible);
        policy_filter_add(rules, -1, rule->vendor_id, rule->product_id, TRUE);
    }
    /* Say "deny the rest" explicitly: QEMU treats an empty filter as none. */
    policy_filter_add(rules, -1, -1, -1, FALSE);

    if (usbredirfilter_verify((const struct usbredirfilter_rule *)rules->data, (int)rules->len) !=
        0) {
        g_set_error(error, POLICY_ERROR, POLICY_ERROR_PARSE,
                    "%s: usbredirfilter rejected the compiled rules", policy->filename);
        return NULL;
    }
    text = usbredirfilter_rules_to_string((const struct usbredirfilter_rule *)rules->data,
                                          (int)rules->len, ",", "|");
    if (text == NULL) {
        g_set_error(error, POLICY_ERROR, POLICY_ERROR_PARSE,
                    "%s: usbredirfilter could not write the compiled rules", policy->filename);
        return NULL;
    }
    result = g_strdup(text);
    usbredirfilter_free(text);
    if (notes != NULL)
        *notes = g_steal_pointer(&found);
    return result;
}
