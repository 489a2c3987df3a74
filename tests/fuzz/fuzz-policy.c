/* libFuzzer target for the policy language: any byte string handed to
 * policy_load_data() must give either a policy or a clean rejection with
 * diagnostics, never a crash, a leak or a broken invariant; a policy that
 * loads must decide, lease and compile to a usbredirfilter string that
 * usbredirfilter parses back.
 *
 * Run the fuzzer (libFuzzer needs clang); new inputs go to the first
 * directory, so give it a scratch one and the stored corpus second:
 *
 *   CC=clang meson setup build-fuzz -Dfuzzing=true -Db_sanitize=address,undefined \
 *       -Db_lundef=false
 *   ninja -C build-fuzz tests/fuzz/fuzz-policy
 *   mkdir -p /tmp/fuzz-policy-corpus
 *   build-fuzz/tests/fuzz/fuzz-policy /tmp/fuzz-policy-corpus tests/fuzz/corpus/policy \
 *       -dict=tests/fuzz/policy.dict -max_total_time=600
 *
 * A crash leaves crash-<sha1> in the current directory: fix it, copy it to
 * tests/fuzz/corpus/policy/ under a telling name, and every build's
 * `meson test` (fuzz-policy-replay) replays it from then on. */
#include <stdint.h>
#include <string.h>
#include <usbredirfilter.h>

#include "policy-private.h"

#include "fuzz-common.h"

#define FUZZ_FILENAME "fuzz.rules"

static GPtrArray *
fuzz_devices(void)
{
    static GPtrArray *devices = NULL;
    PolicyDevice *device;

    if (devices != NULL)
        return devices;
    devices = g_ptr_array_new_with_free_func((GDestroyNotify)policy_device_free);

    /* HASP HL key without serial */
    device = policy_device_new(0x0529, 0x0001);
    device->device_class = 0xff;
    device->product = g_strdup("HASP HL 3.25");
    device->port = g_strdup("1-1");
    policy_device_add_interface(device, 0xff, 0x00, 0x00);
    g_ptr_array_add(devices, device);

    /* the same key on another port */
    device = policy_device_copy(device);
    g_free(device->port);
    device->port = g_strdup("1-2");
    g_ptr_array_add(devices, device);

    /* CodeMeter stick (HID class interface) */
    device = policy_device_new(0x064f, 0x2af9);
    device->product = g_strdup("CodeMeter-Stick");
    device->serial = g_strdup("3-1234567");
    device->port = g_strdup("1-3.2");
    device->hash = g_strdup("0a1b2c3d");
    policy_device_add_interface(device, 0x03, 0x00, 0x00);
    g_ptr_array_add(devices, device);

    /* mass storage */
    device = policy_device_new(0x0781, 0x5567);
    device->serial = g_strdup("4C530001");
    device->port = g_strdup("1-4");
    policy_device_add_interface(device, 0x08, 0x06, 0x50);
    g_ptr_array_add(devices, device);

    /* composite boot keyboard */
    device = policy_device_new(0x046d, 0xc31c);
    device->product = g_strdup("USB Keyboard");
    device->port = g_strdup("1-5");
    policy_device_add_interface(device, 0x03, 0x01, 0x01);
    policy_device_add_interface(device, 0x03, 0x00, 0x00);
    g_ptr_array_add(devices, device);

    /* smart-card key, odd strings */
    device = policy_device_new(0x096e, 0x0006);
    device->product = g_strdup("");
    device->serial = g_strdup("");
    device->manufacturer = g_strdup("Caf\xc3\xa9");
    device->port = g_strdup("2-1.4.3");
    policy_device_add_interface(device, 0x0b, 0x00, 0x00);
    g_ptr_array_add(devices, device);

    /* no interfaces, nothing known */
    device = policy_device_new(0xffff, 0x0000);
    g_ptr_array_add(devices, device);

    /* HASP HL keys imported from two gateways, in the same port */
    device = policy_device_copy(g_ptr_array_index(devices, 0));
    device->gateway = g_strdup("dongles1");
    g_ptr_array_add(devices, device);
    device = policy_device_copy(device);
    g_free(device->gateway);
    device->gateway = g_strdup("hv-01.example");
    g_ptr_array_add(devices, device);
    return devices;
}

static void
fuzz_check_rejection(const gchar *data, gsize size, GPtrArray *diagnostics, const GError *error)
{
    const PolicyDiagnostic *first;
    g_autofree gchar *prefix = NULL;

    FUZZ_CHECK(error != NULL);
    FUZZ_CHECK(error->domain == POLICY_ERROR);
    if (size > POLICY_MAX_TEXT_SIZE) {
        FUZZ_CHECK(error->code == POLICY_ERROR_TOO_LARGE);
        return;
    }
    FUZZ_CHECK(error->code == POLICY_ERROR_PARSE);
    FUZZ_CHECK(diagnostics != NULL && diagnostics->len > 0);
    first = g_ptr_array_index(diagnostics, 0);
    prefix = g_strdup_printf(FUZZ_FILENAME ":%u:%u: ", first->line, first->column);
    FUZZ_CHECK(g_str_has_prefix(error->message, prefix));

    for (guint i = 0; i < diagnostics->len; i++) {
        const PolicyDiagnostic *diag = g_ptr_array_index(diagnostics, i);
        g_autofree gchar *text = policy_diagnostic_format(diag);
        const gchar *nl1, *nl2;

        FUZZ_CHECK(diag->line >= 1);
        FUZZ_CHECK(diag->column >= 1);
        /* a column may point one past the end of the line (end of line),
         * never further */
        FUZZ_CHECK(diag->column <= strlen(diag->line_text) + 1 || memchr(data, '\0', size) != NULL);
        FUZZ_CHECK(diag->message != NULL && diag->message[0] != '\0');
        /* sorted by line, then column */
        if (i > 0) {
            const PolicyDiagnostic *prev = g_ptr_array_index(diagnostics, i - 1);
            FUZZ_CHECK(prev->line < diag->line ||
                       (prev->line == diag->line && prev->column <= diag->column));
        }
        /* exactly three lines: location and message, source line, caret */
        nl1 = strchr(text, '\n');
        FUZZ_CHECK(nl1 != NULL);
        nl2 = strchr(nl1 + 1, '\n');
        FUZZ_CHECK(nl2 != NULL);
        FUZZ_CHECK(strchr(nl2 + 1, '\n') == NULL);
        FUZZ_CHECK(g_str_has_suffix(text, "^"));
    }
}

static void
fuzz_check_filter(const Policy *policy, const gchar *vm_name, const gchar *vm_uuid)
{
    g_autoptr(GPtrArray) notes = NULL;
    g_autoptr(GError) error = NULL;
    g_autofree gchar *filter = NULL;
    struct usbredirfilter_rule *rules = NULL;
    int count = 0;

    filter = policy_compile_usbredirfilter(policy, vm_name, vm_uuid, &notes, &error);
    FUZZ_CHECK(filter != NULL);
    FUZZ_CHECK(notes != NULL);
    FUZZ_CHECK(usbredirfilter_string_to_rules(filter, ",", "|", &rules, &count) == 0);
    FUZZ_CHECK(count >= 1);
    /* the last rule denies whatever no rule allowed */
    FUZZ_CHECK(rules[count - 1].allow == 0 && rules[count - 1].vendor_id == -1 &&
               rules[count - 1].device_class == -1);
    usbredirfilter_free(rules);
}

/* What an importing gateway is told: an export rule decides only for this
 * host's devices and a gateway its glob matches. Asked for no gateway, the
 * first matching rule is that of any gateway or an earlier export rule, so
 * a decision other than EXPORT is the same for every gateway. */
static void
fuzz_check_exports(const Policy *policy, const PolicyDevice *device, const PolicyDecision *host)
{
    static const gchar *const gateways[] = {"hv-01", "hv-01.example", "dongles1", "a", NULL};

    for (guint g = 0; g < G_N_ELEMENTS(gateways); g++) {
        PolicyDecision decision;
        gboolean exported = policy_exports_to(policy, device, gateways[g], &decision);

        FUZZ_CHECK(exported == (decision.verdict == POLICY_VERDICT_EXPORT));
        FUZZ_CHECK(!policy_decision_is_for_vm(policy, &decision, "cad-01", NULL) ||
                   decision.verdict == POLICY_VERDICT_ASSIGN);
        if (exported) {
            const PolicyRule *rule = g_ptr_array_index(policy->rules, decision.rule_index);
            FUZZ_CHECK(device->gateway == NULL);
            FUZZ_CHECK(rule->action == POLICY_ACTION_EXPORT);
            FUZZ_CHECK(decision.target_kind == POLICY_TARGET_GATEWAY && !decision.required);
            FUZZ_CHECK(gateways[g] == NULL || policy_glob_match(&rule->target, gateways[g]));
            FUZZ_CHECK(host->verdict == POLICY_VERDICT_EXPORT);
            FUZZ_CHECK(host->rule_index <= decision.rule_index);
        }
        if (host->verdict != POLICY_VERDICT_EXPORT)
            FUZZ_CHECK(decision.verdict == host->verdict && decision.line == host->line);
        if (gateways[g] == NULL)
            FUZZ_CHECK(decision.verdict == host->verdict && decision.line == host->line);
    }
}

static void
fuzz_check_policy(Policy *policy, GPtrArray *diagnostics, const GError *error)
{
    static const gchar *const groups[] = {"engineering", "cad", NULL};
    const PolicyContext share_ctx = {.vm_name = "ws-alice",
                                     .vm_uuid = "8C1F0A2E-5D2B-4C1E-9A57-3F6B1E2D4C5A",
                                     .user = "alice",
                                     .groups = groups};
    GPtrArray *devices = fuzz_devices();
    g_autoptr(PolicyPools) pools = policy_pools_new(policy);
    GHashTableIter iter;
    gpointer name;

    FUZZ_CHECK(error == NULL);
    FUZZ_CHECK(diagnostics != NULL && diagnostics->len == 0);
    FUZZ_CHECK(policy_get_rule_count(policy) == policy->rules->len);

    for (guint i = 0; i < devices->len; i++) {
        const PolicyDevice *device = g_ptr_array_index(devices, i);
        PolicyDecision host, share;

        policy_decide(policy, POLICY_ORIGIN_HOST, device, NULL, &host);
        FUZZ_CHECK(host.verdict != POLICY_VERDICT_SHARE);
        if (host.verdict == POLICY_VERDICT_NONE) {
            FUZZ_CHECK(host.file == NULL && host.line == 0);
        } else {
            const PolicyRule *rule = g_ptr_array_index(policy->rules, host.rule_index);
            FUZZ_CHECK(host.rule_index < policy->rules->len);
            FUZZ_CHECK(host.line == rule->line && host.file != NULL);
            FUZZ_CHECK(policy_rule_match_device(rule, device));
        }
        fuzz_check_exports(policy, device, &host);
        if (host.verdict == POLICY_VERDICT_ASSIGN && host.target_kind == POLICY_TARGET_POOL) {
            g_autoptr(GError) pool_error = NULL;
            g_autofree gchar *key = policy_device_describe(device);
            FUZZ_CHECK(policy_pools_add_device(pools, host.target, key, &pool_error));
        }
        (void)policy_decision_is_for_vm(policy, &host, "cad-01", NULL);
        (void)policy_decision_is_for_vm(policy, &host, NULL, share_ctx.vm_uuid);

        policy_decide(policy, POLICY_ORIGIN_SHARE, device, &share_ctx, &share);
        FUZZ_CHECK(share.verdict == POLICY_VERDICT_SHARE || share.verdict == POLICY_VERDICT_DENY);
        if (share.verdict == POLICY_VERDICT_SHARE)
            FUZZ_CHECK(
                policy_decision_is_for_vm(policy, &share, share_ctx.vm_name, share_ctx.vm_uuid));
        policy_decide(policy, POLICY_ORIGIN_SHARE, device, NULL, &share);
        FUZZ_CHECK(share.verdict == POLICY_VERDICT_DENY);
    }

    /* every pool hands out its devices one per VM, then is exhausted */
    g_hash_table_iter_init(&iter, policy->pools);
    while (g_hash_table_iter_next(&iter, &name, NULL)) {
        const gchar *vms[] = {"cad-01", "cad-02", "cad-03", "ws-alice"};
        for (guint i = 0; i < G_N_ELEMENTS(vms); i++) {
            g_autoptr(GError) pool_error = NULL;
            const gchar *key = policy_pools_acquire(pools, name, vms[i], &pool_error);
            FUZZ_CHECK((key == NULL) != (pool_error == NULL));
            if (key != NULL)
                FUZZ_CHECK(g_strcmp0(policy_pools_lookup_holder(pools, key), vms[i]) == 0);
        }
        policy_pools_remove_device(pools, "0529:0001 port 1-1");
        (void)policy_pools_release_vm(pools, "cad-02");
    }

    fuzz_check_filter(policy, NULL, NULL);
    fuzz_check_filter(policy, "cad-01", NULL);
    fuzz_check_filter(policy, "ws-alice", share_ctx.vm_uuid);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    g_autoptr(GPtrArray) diagnostics = NULL;
    g_autoptr(GError) error = NULL;
    g_autoptr(Policy) policy = NULL;

    policy = policy_load_data((const gchar *)data, size, FUZZ_FILENAME, &diagnostics, &error);
    if (policy == NULL)
        fuzz_check_rejection((const gchar *)data, size, diagnostics, error);
    else
        fuzz_check_policy(policy, diagnostics, error);
    return 0;
}
