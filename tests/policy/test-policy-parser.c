/* policy_load_data()/policy_load_file(): what every rule parses to, where
 * every bad rule is reported (line, column, message), how diagnostics are
 * printed, and the limits. */
#include <errno.h>
#include <glib/gstdio.h>
#include <string.h>
#include <unistd.h>

#include "policy-private.h"
#include "policy-test-summary.h"

#define UUID       "8c1f0a2e-5d2b-4c1e-9a57-3f6b1e2d4c5a"
#define UUID_UPPER "8C1F0A2E-5D2B-4C1E-9A57-3F6B1E2D4C5A"
/* a gateway name of the longest length allowed, and one byte more */
#define G64 "g123456789012345678901234567890123456789012345678901234567890123"
#define G65 G64 "4"

/* ---- good rules: what they parse to --------------------------------------- */

typedef struct {
    const gchar *name;
    const gchar *input;
    const gchar *want; /* policy_test_summary() */
} GoodCase;

static const GoodCase good_cases[] = {
    {.name = "hasp-without-serial",
     .input = "assign id 0529:0001 serial \"\" to vm \"cad-01\" required",
     .want = "L1 assign id=0529:0001 serial=\"\" -> vm=\"cad-01\" required"},
    {.name = "codemeter-serial",
     .input = "assign id 064f:2af9 serial \"3-1234567\" to vm \"erp-01\"",
     .want = "L1 assign id=064f:2af9 serial=\"3-1234567\" -> vm=\"erp-01\""},
    {.name = "smartcard-vm-uuid-lowercased",
     .input = "assign id 096e:0006 serial \"FT0123\" with-interface 0b:*:* to vm-uuid \"" UUID_UPPER
              "\" required",
     .want = "L1 assign id=096e:0006 serial=\"FT0123\" if=one-of{0b:*:*} -> vm-uuid=\"" UUID
             "\" required"},
    {.name = "pool",
     .input = "pool \"hasp-cad\" vms \"cad-*\"\nassign id 0529:0001 to pool \"hasp-cad\"",
     .want = "L2 assign id=0529:0001 -> pool=\"hasp-cad\"\npool hasp-cad vms~\"cad-*\" L1"},
    {.name = "pool-defined-after-use",
     .input = "assign id 0529:0001 to pool \"late\"\n\npool \"late\" vms \"cad-0?\"",
     .want = "L1 assign id=0529:0001 -> pool=\"late\"\npool late vms~\"cad-0?\" L3"},
    {.name = "pool-literal-vms-and-keyword-name",
     .input = "pool \"assign\" vms \"only-me\"",
     .want = "pool assign vms=\"only-me\" L1"},
    {.name = "deny-mass-storage",
     .input = "deny with-interface 08:*:*\ndeny with-interface 03:01:01",
     .want = "L1 deny if=one-of{08:*:*}\nL2 deny if=one-of{03:01:01}"},
    {.name = "deny-everything", .input = "deny", .want = "L1 deny"},
    {.name = "allow-metadata-pool",
     .input = "pool \"cad\" vms \"cad-*\"\nallow metadata pool \"cad\" for vm \"one-*\"",
     .want = "L2 allow-metadata pool=\"cad\" -> vm~\"one-*\"\npool cad vms~\"cad-*\" L1"},
    {.name = "allow-metadata-device",
     .input = "allow metadata id 0529:* on gateway \"d*\" for vm \"win-*\"\n"
              "allow metadata id 096e:0006 serial \"FT*\" for vm-uuid \"" UUID_UPPER "\"",
     .want = "L1 allow-metadata id=0529:* on-gateway~\"d*\" -> vm~\"win-*\"\n"
             "L2 allow-metadata id=096e:0006 serial~\"FT*\" -> vm-uuid=\"" UUID "\""},
    {.name = "allow-metadata-pool-defined-later",
     .input = "allow metadata pool \"p\" for vm x\npool \"p\" vms \"y\"",
     .want = "L1 allow-metadata pool=\"p\" -> vm=\"x\"\npool p vms=\"y\" L2"},
    {.name = "assign-everything", .input = "assign to vm \"x\"", .want = "L1 assign -> vm=\"x\""},
    {.name = "id-vendor-wildcard", .input = "deny id 0781:*", .want = "L1 deny id=0781:*"},
    {.name = "id-any", .input = "deny id *:*", .want = "L1 deny id=*:*"},
    {.name = "id-case-and-short", .input = "deny id 0A89:fF", .want = "L1 deny id=0a89:00ff"},
    {.name = "class-short", .input = "deny class 08", .want = "L1 deny class=08:*:*"},
    {.name = "class-wildcards", .input = "deny class 0e:01:*", .want = "L1 deny class=0e:01:*"},
    {.name = "class-any", .input = "deny class *:*:*", .want = "L1 deny class=*:*:*"},
    {.name = "name-glob",
     .input = "assign name \"HASP ?L*\" to vm \"x\"",
     .want = "L1 assign name~\"HASP ?L*\" -> vm=\"x\""},
    {.name = "via-port-bare-word",
     .input = "assign via-port 1-1.4 to vm x",
     .want = "L1 assign via-port=\"1-1.4\" -> vm=\"x\""},
    {.name = "via-port-glob",
     .input = "assign via-port \"2-*\" to vm-uuid \"" UUID "\" optional",
     .want = "L1 assign via-port~\"2-*\" -> vm-uuid=\"" UUID "\""},
    {.name = "hash",
     .input = "assign hash \"0a1b2c3d\" to vm \"x\"",
     .want = "L1 assign hash=\"0a1b2c3d\" -> vm=\"x\""},
    {.name = "serial-glob-and-bare",
     .input = "deny serial A1*\ndeny serial B2",
     .want = "L1 deny serial~\"A1*\"\nL2 deny serial=\"B2\""},
    {.name = "set-one-of-braced",
     .input = "deny with-interface { 08:*:* 03:01:01 03:01:02 }",
     .want = "L1 deny if=one-of{08:*:*,03:01:01,03:01:02}"},
    {.name = "set-one-of-explicit",
     .input = "deny with-interface one-of {08:*:*}",
     .want = "L1 deny if=one-of{08:*:*}"},
    {.name = "set-all-of",
     .input = "assign with-interface all-of { 03:00:00 ff:00:00 } to vm \"c\"",
     .want = "L1 assign if=all-of{03:00:00,ff:00:00} -> vm=\"c\""},
    {.name = "set-none-of",
     .input = "assign id 1234:* with-interface none-of { 08:*:* 0e:*:* } to vm \"c\"",
     .want = "L1 assign id=1234:* if=none-of{08:*:*,0e:*:*} -> vm=\"c\""},
    {.name = "set-match-all",
     .input = "assign with-interface match-all { 0b:*:* ff:*:* } to vm \"c\"",
     .want = "L1 assign if=match-all{0b:*:*,ff:*:*} -> vm=\"c\""},
    {.name = "share-user",
     .input = "share id 096e:* with-interface 0b:*:* user \"alice\" to vm \"ws-alice\"",
     .want = "L1 share id=096e:* if=one-of{0b:*:*} user=\"alice\" -> vm=\"ws-alice\""},
    {.name = "share-group-glob-target",
     .input = "share with-interface 0b:*:* group \"engineering\" to vm \"ws-*\"",
     .want = "L1 share if=one-of{0b:*:*} group=\"engineering\" -> vm~\"ws-*\""},
    {.name = "share-user-and-group-uuid",
     .input = "share group \"cad\" user \"bob\" to vm-uuid \"" UUID "\" required",
     .want = "L1 share user=\"bob\" group=\"cad\" -> vm-uuid=\"" UUID "\" required"},
    {.name = "matchers-in-any-order",
     .input = "assign hash h serial \"x\" class ff name n via-port 1-1 id 0529:0001 to vm v",
     .want = "L1 assign id=0529:0001 serial=\"x\" name=\"n\" via-port=\"1-1\" class=ff:*:* "
             "hash=\"h\" -> vm=\"v\""},
    {.name = "escapes-in-values",
     .input = "assign name \"a\\\"b\\\\c\\td\\x41\" to vm \"x\\ny\"",
     .want = "L1 assign name=\"a\\\"b\\\\c\\tdA\" -> vm=\"x\\ny\""},
    {.name = "utf8-value",
     .input = "assign name \"Caf\xc3\xa9\" to vm \"x\"",
     .want = "L1 assign name=\"Caf\\303\\251\" -> vm=\"x\""},
    {.name = "comments-and-blank-lines-keep-line-numbers",
     .input = "# head\n\n   # indented\ndeny id 0781:* # trailing\n\t\ndeny serial \"#1\"",
     .want = "L4 deny id=0781:*\nL6 deny serial=\"#1\""},
    {.name = "crlf",
     .input = "deny id 0781:*\r\nassign id 0529:0001 to vm \"x\" required\r\n",
     .want = "L1 deny id=0781:*\nL2 assign id=0529:0001 -> vm=\"x\" required"},
    {.name = "tabs", .input = "\tdeny\tid\t0781:*\t", .want = "L1 deny id=0781:*"},
    {.name = "no-final-newline-and-trailing-newlines", .input = "deny\n\n\n", .want = "L1 deny"},
    /* export rules and the on gateway matcher */
    {.name = "export-dongle-server",
     .input = "export id 0529:* to gateway \"hv-*\"",
     .want = "L1 export id=0529:* -> gateway~\"hv-*\""},
    {.name = "export-host-matchers-and-optional",
     .input = "export id 0529:0001 serial \"A1\" via-port 1-1 to gateway hv-01.example optional",
     .want = "L1 export id=0529:0001 serial=\"A1\" via-port=\"1-1\" -> "
             "gateway=\"hv-01.example\""},
    {.name = "export-everything",
     .input = "export to gateway \"*\"",
     .want = "L1 export -> gateway~\"*\""},
    {.name = "export-longest-gateway-glob",
     .input = "export to gateway \"" G64 "\"",
     .want = "L1 export -> gateway=\"" G64 "\""},
    {.name = "on-gateway-hypervisor",
     .input = "pool \"cad\" vms \"cad-*\"\nassign id 0529:0001 on gateway \"dongles1\" to pool "
              "\"cad\"",
     .want = "L2 assign id=0529:0001 on-gateway=\"dongles1\" -> pool=\"cad\"\n"
             "pool cad vms~\"cad-*\" L1"},
    {.name = "on-gateway-pool-of-several-gateways",
     .input = "assign id 0529:0001 on gateway dongles1 to pool \"cad\"\n"
              "assign on gateway \"dongles?\" id 0529:0001 to pool \"cad\"\n"
              "pool \"cad\" vms \"cad-*\"",
     .want = "L1 assign id=0529:0001 on-gateway=\"dongles1\" -> pool=\"cad\"\n"
             "L2 assign id=0529:0001 on-gateway~\"dongles?\" -> pool=\"cad\"\n"
             "pool cad vms~\"cad-*\" L3"},
    {.name = "on-gateway-deny-glob",
     .input = "deny on gateway lab-?.example",
     .want = "L1 deny on-gateway~\"lab-?.example\""},
    {.name = "export-and-assign-keywords-as-names",
     .input = "assign on gateway \"export\" to vm \"gateway\"",
     .want = "L1 assign on-gateway=\"export\" -> vm=\"gateway\""},
    {.name = "empty", .input = "", .want = ""},
    {.name = "only-comments", .input = "# nothing\n#\n", .want = ""},
};

static void
test_good_case(gconstpointer data)
{
    const GoodCase *c = data;
    g_autoptr(GPtrArray) diagnostics = NULL;
    g_autoptr(GError) error = NULL;
    g_autoptr(Policy) policy =
        policy_load_data(c->input, strlen(c->input), "t.rules", &diagnostics, &error);
    g_autofree gchar *got = NULL;

    g_assert_no_error(error);
    g_assert_nonnull(policy);
    g_assert_nonnull(diagnostics);
    g_assert_cmpuint(diagnostics->len, ==, 0);
    got = policy_test_summary(policy);
    g_assert_cmpstr(got, ==, c->want);
    g_assert_cmpstr(policy_get_filename(policy), ==, "t.rules");
    g_assert_cmpuint(policy_get_rule_count(policy), ==, policy->rules->len);
}

/* ---- bad rules: where the first problem is reported ------------------------ */

typedef struct {
    const gchar *name;
    const gchar *input;
    guint line;
    guint column;
    const gchar *message; /* substring of the first diagnostic's message */
    guint count;          /* number of diagnostics */
} BadCase;

/* Positional, so that one case reads as one line. */
#define BAD(name, input, line, column, message)                                                    \
    {                                                                                              \
        name, input, line, column, message, 1                                                      \
    }
#define BAD_N(name, input, line, column, message, count)                                           \
    {                                                                                              \
        name, input, line, column, message, count                                                  \
    }

#define EXPECT_INTERFACE "expected an interface pattern like 08:*:* or 03:01:01"

static const BadCase bad_cases[] = {
    /* rule keyword */
    BAD("unknown-action", "permit id 0529:0001 to vm \"x\"", 1, 1,
        "expected a rule: assign, deny, share, export, allow or pool, got 'permit'"),
    /* allow metadata */
    BAD("allow-without-metadata", "allow id 0529:0001 for vm \"x\"", 1, 7,
        "expected 'metadata' (allow metadata pool \"NAME\" for vm \"GLOB\", or allow metadata "
        "MATCHERS for vm \"GLOB\"), got 'id'"),
    BAD("allow-metadata-nothing", "allow metadata for vm \"x\"", 1, 16,
        "an allow metadata rule needs pool \"NAME\" or a matcher (write id *:* to let the VMs ask "
        "for any device)"),
    BAD("allow-metadata-eol", "allow metadata", 1, 15, "needs pool \"NAME\" or a matcher"),
    BAD("allow-metadata-to", "allow metadata id 0529:* to vm \"x\"", 1, 26,
        "expected a matcher (id, serial, name, via-port, with-interface, class, hash, on "
        "gateway) or 'for', got 'to'"),
    BAD("allow-metadata-pool-undefined", "allow metadata pool \"cad\" for vm \"one-*\"", 1, 21,
        "pool \"cad\" is not defined (add: pool \"cad\" vms \"GLOB\")"),
    BAD("allow-metadata-pool-matchers",
        "pool \"cad\" vms \"x\"\nallow metadata pool \"cad\" id 0529:* for vm \"y\"", 2, 27,
        "expected 'for' (a pool wish takes no matchers: the pool's assign rules say which "
        "devices are in it), got 'id'"),
    BAD("allow-metadata-pool-target", "allow metadata id 0529:* for pool \"cad\"", 1, 30,
        "expected a target: vm \"NAME\" or vm-uuid \"UUID\", got 'pool'"),
    BAD("allow-metadata-gateway-target", "allow metadata id 0529:* for gateway \"g\"", 1, 30,
        "'to gateway' belongs to export rules: allow metadata rules give a device to a VM"),
    BAD("allow-metadata-required", "allow metadata id 0529:* for vm \"x\" required", 1, 37,
        "expected end of line (a VM's wish is never required: it asks for itself), got "
        "'required'"),
    BAD("allow-metadata-user", "allow metadata user \"alice\" for vm \"x\"", 1, 16,
        "'user' belongs to share rules"),
    BAD("allow-metadata-empty-pool", "allow metadata pool \"\" for vm \"x\"", 1, 21,
        "the pool name is empty"),
    BAD("allow-metadata-bad-uuid", "allow metadata id 0529:* for vm-uuid \"nope\"", 1, 38,
        "'nope' is not a UUID"),
    BAD("string-as-action", "\"assign\" to vm \"x\"", 1, 1, "got string \"assign\""),
    BAD("brace-as-action", "  {", 1, 3, "got '{'"),
    BAD("keyword-is-case-sensitive", "Assign to vm \"x\"", 1, 1, "got 'Assign'"),
    /* id */
    BAD("id-missing", "assign id", 1, 10,
        "expected VID:PID like 0529:0001, 0529:* or *:*, got end of line"),
    BAD("id-missing-before-comment", "deny id   # nothing", 1, 8, "got end of line"),
    BAD("id-without-colon", "deny id 0529", 1, 9, "got '0529'"),
    BAD("id-five-digits", "deny id 05290:0001", 1, 9, "VID:PID"),
    BAD("id-not-hex", "deny id 05g9:0001", 1, 9, "VID:PID"),
    BAD("id-product-without-vendor", "deny id *:0001", 1, 9, "got '*:0001'"),
    BAD("id-three-parts", "deny id 0529:0001:1", 1, 9, "VID:PID"),
    BAD("id-empty-vendor", "deny id :0001", 1, 9, "VID:PID"),
    BAD("id-quoted", "deny id \"0529:0001\"", 1, 9, "got string \"0529:0001\""),
    /* class */
    BAD("class-one-digit", "deny class 8", 1, 12,
        "expected a device class like 08 or 0e:01:*, got '8'"),
    BAD("class-two-parts", "deny class 08:06", 1, 12, "expected a device class"),
    BAD("class-subclass-without-class", "deny class *:06:*", 1, 12, "expected a device class"),
    BAD("class-protocol-without-subclass", "deny class 08:*:50", 1, 12, "expected a device class"),
    BAD("class-three-digits", "deny class 123", 1, 12, "got '123'"),
    /* with-interface */
    BAD("interface-lone-class", "deny with-interface 08", 1, 21,
        EXPECT_INTERFACE " or a '{ … }' set, got '08'"),
    BAD("interface-empty-set", "deny with-interface { }", 1, 23, "empty interface set"),
    BAD("interface-unclosed-set", "deny with-interface { 08:*:*", 1, 29,
        EXPECT_INTERFACE " or '}', got end of line"),
    BAD("interface-string-in-set", "deny with-interface { \"08:*:*\" }", 1, 23,
        "got string \"08:*:*\""),
    BAD("interface-bad-pattern-in-set", "deny with-interface { 08:*:* 3:01:01 }", 1, 30,
        "got '3:01:01'"),
    BAD("interface-op-without-brace", "deny with-interface none-of 08:*:*", 1, 29,
        "expected '{' after the set operator, got '08:*:*'"),
    BAD("interface-op-at-eol", "deny with-interface all-of", 1, 27,
        "expected '{' after the set operator, got end of line"),
    BAD("interface-unknown-op", "deny with-interface any-of { 08:*:* }", 1, 21, "got 'any-of'"),
    /* string matchers */
    BAD("matcher-twice", "deny id 0529:* serial \"\" id 0529:0001", 1, 26,
        "'id' given twice in one rule"),
    BAD("interface-twice", "deny with-interface 08:*:* with-interface 03:*:*", 1, 28,
        "'with-interface' given twice"),
    BAD("name-empty", "deny name \"\"", 1, 11, "'name' needs a non-empty value"),
    BAD("via-port-empty", "deny via-port \"\"", 1, 15, "'via-port' needs a non-empty value"),
    BAD("hash-empty", "deny hash \"\"", 1, 11, "'hash' needs a non-empty value"),
    BAD("name-missing", "deny name", 1, 10, "expected a quoted string, got end of line"),
    BAD("via-port-brace", "deny via-port {", 1, 15, "expected a port path like \"1-1.4\", got '{'"),
    BAD("unknown-matcher", "assign vendor 0529 to vm \"x\"", 1, 8,
        "expected a matcher (id, serial, name, via-port, with-interface, class, hash, on gateway) "
        "or 'to', got 'vendor'"),
    /* user and group */
    BAD("user-in-deny", "deny user \"alice\"", 1, 6,
        "'user' belongs to share rules (a workstation user lends a device); deny rules match "
        "devices only"),
    BAD("group-in-assign", "assign id 096e:* group \"cad\" to vm \"x\"", 1, 18,
        "'group' belongs to share rules"),
    BAD("share-without-principal", "share id 096e:* to vm \"x\"", 1, 17,
        "a share rule needs user \"NAME\" or group \"NAME\" (who may lend)"),
    BAD("share-without-principal-at-eol", "share id 096e:*", 1, 16, "a share rule needs user"),
    BAD("share-to-pool", "share user \"a\" to pool \"p\"\npool \"p\" vms \"*\"", 1, 19,
        "expected a target: vm \"NAME\" or vm-uuid \"UUID\", got 'pool'"),
    BAD("share-user-empty", "share user \"\" to vm \"x\"", 1, 12, "'user' needs a non-empty value"),
    /* a lent device's serial, name, port and hash are only what its client
     * claims: share rules cannot use them */
    BAD("share-serial-empty", "share id 0529:0001 serial \"\" user \"a\" to vm \"x\"", 1, 20,
        "'serial' cannot apply to share rules"),
    BAD("share-serial", "share user \"a\" serial \"A1B2\" to vm \"x\"", 1, 16,
        "'serial' cannot apply to share rules"),
    BAD("share-name", "share name \"HASP*\" user \"a\" to vm \"x\"", 1, 7,
        "'name' cannot apply to share rules"),
    BAD("share-via-port", "share via-port 1-1 user \"a\" to vm \"x\"", 1, 7,
        "'via-port' cannot apply to share rules"),
    BAD("share-hash", "share hash \"0a1b\" user \"a\" to vm \"x\"", 1, 7,
        "'hash' cannot apply to share rules"),
    BAD("share-unknown-word", "share user \"a\" vm \"x\"", 1, 16,
        "expected a matcher, user, group or 'to', got 'vm'"),
    /* targets */
    BAD("assign-without-to", "assign id 0529:0001", 1, 20, "or 'to', got end of line"),
    BAD("target-missing", "assign to", 1, 10,
        "expected a target: vm \"NAME\", vm-uuid \"UUID\" or pool \"NAME\", got end of line"),
    BAD("target-unknown-kind", "assign to host \"x\"", 1, 11, "got 'host'"),
    BAD("target-name-missing", "assign to vm", 1, 13, "expected a quoted name, got end of line"),
    BAD("target-empty", "assign to vm \"\"", 1, 14, "the target name is empty"),
    BAD("vm-uuid-short", "assign to vm-uuid \"8c1f0a2e\"", 1, 19,
        "'8c1f0a2e' is not a UUID (like " UUID ")"),
    BAD("vm-uuid-braced", "assign to vm-uuid \"{" UUID "}\"", 1, 19, "is not a UUID"),
    BAD("vm-uuid-glob", "assign to vm-uuid \"8c1f0a2e-*\"", 1, 19, "is not a UUID"),
    /* flags */
    BAD("flag-unknown", "assign to vm \"x\" always", 1, 18,
        "expected 'required', 'optional' or end of line, got 'always'"),
    BAD("flag-twice", "assign to vm \"x\" required optional", 1, 27,
        "only one of 'required' and 'optional' may be given"),
    BAD("deny-with-target", "deny id 0529:0001 to vm \"x\"", 1, 19,
        "expected a matcher (id, serial, name, via-port, with-interface, class, hash, on gateway) "
        "or end of line, got 'to'"),
    BAD("deny-with-flag", "deny required", 1, 6, "got 'required'"),
    /* pools */
    BAD("pool-without-name", "pool", 1, 5, "expected a quoted pool name, got end of line"),
    BAD("pool-empty-name", "pool \"\" vms \"x\"", 1, 6, "the pool name is empty"),
    BAD("pool-without-vms", "pool \"p\"", 1, 9,
        "expected 'vms' and a VM name glob, got end of line"),
    BAD("pool-empty-vms", "pool \"p\" vms \"\"", 1, 14, "the VM name glob is empty"),
    BAD("pool-trailing-word", "pool \"p\" vms \"x\" required", 1, 18,
        "expected end of line after the pool definition, got 'required'"),
    BAD("pool-duplicate", "pool \"p\" vms \"a-*\"\n\npool \"p\" vms \"b-*\"", 3, 6,
        "pool \"p\" is already defined at line 1"),
    BAD("pool-undefined", "assign to pool \"nope\"", 1, 16,
        "pool \"nope\" is not defined (add: pool \"nope\" vms \"GLOB\")"),
    BAD("pool-undefined-typo", "pool \"hasp-cad\" vms \"cad-*\"\nassign to pool \"hasp-cda\"", 2,
        16, "pool \"hasp-cda\" is not defined"),
    BAD_N("pool-undefined-twice", "assign to pool \"a\"\nassign to pool \"b\"", 1, 16,
          "pool \"a\" is not defined", 2),
    /* pool errors are found at the end but reported in line order */
    BAD_N("pool-undefined-before-syntax-error", "assign to pool \"a\"\nassign id x to vm \"y\"", 1,
          16, "pool \"a\" is not defined", 2),
    BAD_N("syntax-error-before-pool-undefined", "assign id x to vm \"y\"\nassign to pool \"a\"", 1,
          11, "got 'x'", 2),
    /* export rules: this host's devices, to gateways */
    BAD("export-required", "export id 0529:* to gateway \"hv-*\" required", 1, 36,
        "'required' cannot apply to export rules: it keeps a VM from starting without the "
        "device, and an export rule gives no VM a device"),
    BAD("export-to-vm", "export id 0529:* to vm \"cad-01\"", 1, 21,
        "expected a target: gateway \"GLOB\" (an export rule offers this host's devices to other "
        "gateways, not to VMs or pools), got 'vm'"),
    BAD("export-to-pool", "pool \"p\" vms \"*\"\nexport to pool \"p\"", 2, 11,
        "expected a target: gateway \"GLOB\""),
    BAD("export-target-missing", "export to", 1, 10,
        "expected a target: gateway \"GLOB\" (an export rule offers this host's devices to other "
        "gateways, not to VMs or pools), got end of line"),
    BAD("export-glob-missing", "export to gateway", 1, 18,
        "expected a quoted gateway name glob, got end of line"),
    BAD("export-glob-empty", "export to gateway \"\"", 1, 19,
        "\"\" is not a gateway name glob (letters, digits, '.', '_', '-' and the wildcards '*' "
        "and '?', at most 64 bytes)"),
    BAD("export-glob-slash", "export to gateway \"hv/1\"", 1, 19,
        "\"hv/1\" is not a gateway name glob"),
    BAD("export-glob-too-long", "export to gateway \"" G65 "\"", 1, 19,
        "is not a gateway name glob"),
    BAD("export-two-targets", "export to gateway \"a\" to gateway \"b\"", 1, 23,
        "a rule has one target (write one rule per target)"),
    BAD("export-on-gateway", "export id 0529:* on gateway \"dongles1\" to gateway \"hv-*\"", 1, 18,
        "'on gateway' cannot apply to export rules: they offer this host's own devices, and a "
        "device imported from another gateway is not exported again"),
    BAD("export-user", "export user \"alice\" to gateway \"hv-*\"", 1, 8,
        "'user' belongs to share rules (a workstation user lends a device); export rules match "
        "devices only"),
    BAD("export-without-to", "export id 0529:*", 1, 17,
        "expected a matcher (id, serial, name, via-port, with-interface, class, hash) or 'to', "
        "got end of line"),
    BAD("assign-to-gateway", "assign id 0529:0001 to gateway \"hv-1\"", 1, 24,
        "'to gateway' belongs to export rules: assign rules give a device to a VM on this host "
        "(to offer it to other gateways: export MATCHERS to gateway \"GLOB\")"),
    BAD("share-to-gateway", "share user \"a\" to gateway \"hv-1\"", 1, 19,
        "'to gateway' belongs to export rules: share rules give a device to a VM"),
    BAD("assign-two-targets", "assign to vm \"a\" to vm \"b\"", 1, 18, "a rule has one target"),
    /* on gateway */
    BAD("share-on-gateway", "share on gateway \"dongles1\" user \"a\" to vm \"x\"", 1, 7,
        "'on gateway' cannot apply to share rules: a lent device comes from a workstation "
        "user's client, not from a gateway"),
    BAD("on-without-gateway", "deny on \"dongles1\"", 1, 9,
        "expected 'gateway' after 'on' (on gateway \"GLOB\"), got string \"dongles1\""),
    BAD("on-at-end-of-line", "deny on", 1, 8, "expected 'gateway' after 'on'"),
    BAD("on-gateway-missing", "deny on gateway", 1, 16,
        "expected a quoted gateway name glob, got end of line"),
    BAD("on-gateway-empty", "deny on gateway \"\"", 1, 17, "\"\" is not a gateway name glob"),
    BAD("on-gateway-space", "assign on gateway \"dongle 1\" to vm \"x\"", 1, 19,
        "\"dongle 1\" is not a gateway name glob"),
    BAD("on-gateway-too-long", "deny on gateway \"" G65 "\"", 1, 17, "is not a gateway name glob"),
    BAD("on-gateway-twice", "deny on gateway a on gateway b", 1, 19,
        "'on gateway' given twice in one rule"),
    /* lexer errors surface with their columns */
    BAD("lexer-unknown-escape", "assign name \"a\\q\" to vm \"x\"", 1, 15, "unknown escape '\\q'"),
    BAD("lexer-unterminated", "assign to vm \"x", 1, 14, "unterminated string"),
    BAD("lexer-non-ascii", "deny name Café", 1, 14, "unexpected byte 0xc3"),
    BAD("lexer-x00", "deny serial \"\\x00\"", 1, 14, "\\x00 is not allowed"),
    /* whole texts */
    BAD("one-bad-line-among-good",
        "deny with-interface 08:*:*\nassign id 0529:0001 to vm \"a\"\nassign id 0529 to vm \"b\"\n"
        "assign id 064f:2af9 to vm \"c\"",
        3, 11, "got '0529'"),
    BAD_N("several-bad-lines",
          "deny\nassig id 0529:0001\nassign id 0529:0001 to vm \"ok\"\ndeny class 123\nshare to vm "
          "\"x\"",
          2, 1, "got 'assig'", 3),
    BAD("one-diagnostic-per-line", "assign id x id y to", 1, 11, "got 'x'"),
    BAD("error-on-crlf-line", "deny\r\nassign\r\ndeny\r\n", 2, 7, "got end of line"),
};

static void
test_bad_case(gconstpointer data)
{
    const BadCase *c = data;
    g_autoptr(GPtrArray) diagnostics = NULL;
    g_autoptr(GError) error = NULL;
    g_autoptr(Policy) policy =
        policy_load_data(c->input, strlen(c->input), "bad.rules", &diagnostics, &error);
    const PolicyDiagnostic *first;
    g_autofree gchar *where = NULL;

    g_assert_null(policy);
    g_assert_error(error, POLICY_ERROR, POLICY_ERROR_PARSE);
    g_assert_nonnull(diagnostics);
    g_assert_cmpuint(diagnostics->len, ==, c->count);
    first = g_ptr_array_index(diagnostics, 0);
    g_assert_cmpstr(first->file, ==, "bad.rules");
    g_assert_cmpuint(first->line, ==, c->line);
    g_assert_cmpuint(first->column, ==, c->column);
    if (strstr(first->message, c->message) == NULL)
        g_error("message \"%s\" lacks \"%s\"", first->message, c->message);
    /* the GError quotes the first diagnostic */
    where = g_strdup_printf("bad.rules:%u:%u: %s", c->line, c->column, first->message);
    g_assert_true(g_str_has_prefix(error->message, where));
}

/* ---- policy_diagnostic_format() ------------------------------------------- */

typedef struct {
    const gchar *name;
    const gchar *input;
    gsize len; /* 0: strlen */
    const gchar *want;
} FormatCase;

static const FormatCase format_cases[] = {
    {"caret-under-column", "deny id 0529", 0,
     "f.rules:1:9: error: expected VID:PID like 0529:0001, 0529:* or *:*, got '0529'\n"
     "    deny id 0529\n"
     "            ^"},
    {"caret-after-tabs", "\tdeny\tid\t0529", 0,
     "f.rules:1:10: error: expected VID:PID like 0529:0001, 0529:* or *:*, got '0529'\n"
     "    \tdeny\tid\t0529\n"
     "    \t    \t  \t^"},
    {"caret-at-end-of-line", "deny\nassign id   # why", 0,
     "f.rules:2:10: error: expected VID:PID like 0529:0001, 0529:* or *:*, got end of line\n"
     "    assign id   # why\n"
     "             ^"},
    {"caret-counts-characters-not-bytes", "assign name \"Café\" to vm \"x\" bogus", 0,
     "f.rules:1:31: error: expected 'required', 'optional' or end of line, got 'bogus'\n"
     "    assign name \"Café\" to vm \"x\" bogus\n"
     "                                 ^"},
    {"control-bytes-shown-as-question-marks", "deny\x01", 0,
     "f.rules:1:5: error: unexpected byte 0x01 (non-ASCII text belongs inside a quoted string)\n"
     "    deny?\n"
     "        ^"},
    {"crlf-line-shown-without-cr", "deny id 0529\r\n", 0,
     "f.rules:1:9: error: expected VID:PID like 0529:0001, 0529:* or *:*, got '0529'\n"
     "    deny id 0529\n"
     "            ^"},
    {"message-kept-on-one-line", "assign to vm-uuid \"a\\nb\"", 0,
     "f.rules:1:19: error: 'a?b' is not a UUID (like " UUID ")\n"
     "    assign to vm-uuid \"a\\nb\"\n"
     "                      ^"},
    {"nul-byte-ends-the-shown-line", "deny\0 x", 7,
     "f.rules:1:5: error: NUL byte in rule text\n"
     "    deny\n"
     "        ^"},
};

static void
test_format_case(gconstpointer data)
{
    const FormatCase *c = data;
    g_autoptr(GPtrArray) diagnostics = NULL;
    g_autoptr(GError) error = NULL;
    g_autoptr(Policy) policy = policy_load_data(c->input, c->len > 0 ? c->len : strlen(c->input),
                                                "f.rules", &diagnostics, &error);
    g_autofree gchar *got = NULL;

    g_assert_null(policy);
    g_assert_cmpuint(diagnostics->len, ==, 1);
    got = policy_diagnostic_format(g_ptr_array_index(diagnostics, 0));
    g_assert_cmpstr(got, ==, c->want);
}

/* A diagnostic built by hand: a column past the end stops at the end. */
static void
test_format_column_past_end(void)
{
    PolicyDiagnostic diag = {.file = (gchar *)"x.rules",
                             .line = 7,
                             .column = 40,
                             .message = (gchar *)"m",
                             .line_text = (gchar *)"abc"};
    g_autofree gchar *got = policy_diagnostic_format(&diag);
    g_assert_cmpstr(got, ==, "x.rules:7:40: error: m\n    abc\n       ^");
}

/* ---- errors, names and limits ---------------------------------------------- */

static void
test_error_counts_more_errors(void)
{
    const gchar *text = "bogus\ndeny id 1\ndeny class 1";
    g_autoptr(GError) error = NULL;
    g_autoptr(Policy) policy = policy_load_data(text, strlen(text), "c.rules", NULL, &error);

    g_assert_null(policy);
    g_assert_error(error, POLICY_ERROR, POLICY_ERROR_PARSE);
    g_assert_cmpstr(
        error->message, ==,
        "c.rules:1:1: expected a rule: assign, deny, share, export, allow or pool, got 'bogus' "
        "(and 2 more errors)");
}

static void
test_default_filename(void)
{
    g_autoptr(GError) error = NULL;
    g_autoptr(GPtrArray) diagnostics = NULL;
    g_autoptr(Policy) bad = policy_load_data("bogus", 5, NULL, &diagnostics, &error);
    g_autoptr(Policy) good = policy_load_data("deny", 4, NULL, NULL, NULL);

    g_assert_null(bad);
    g_assert_cmpstr(
        error->message, ==,
        "<policy>:1:1: expected a rule: assign, deny, share, export, allow or pool, got 'bogus'");
    g_assert_cmpstr(((PolicyDiagnostic *)g_ptr_array_index(diagnostics, 0))->file, ==, "<policy>");
    g_assert_cmpstr(policy_get_filename(good), ==, "<policy>");
}

static void
test_empty_texts(void)
{
    const struct {
        const gchar *data;
        gsize len;
    } texts[] = {{NULL, 0}, {"", 0}, {"\n\n\n", 3}, {"\r\n", 2}, {"   \t", 4}};

    for (guint i = 0; i < G_N_ELEMENTS(texts); i++) {
        g_autoptr(GPtrArray) diagnostics = NULL;
        g_autoptr(GError) error = NULL;
        g_autoptr(Policy) policy =
            policy_load_data(texts[i].data, texts[i].len, "e.rules", &diagnostics, &error);
        g_assert_no_error(error);
        g_assert_nonnull(policy);
        g_assert_cmpuint(policy_get_rule_count(policy), ==, 0);
        g_assert_cmpuint(diagnostics->len, ==, 0);
    }
}

/* POLICY_MAX_TEXT_SIZE bytes still load; one more is refused before
 * parsing. */
static void
test_size_limit(void)
{
    const gsize line_len = 64;
    g_autofree gchar *text = g_malloc(POLICY_MAX_TEXT_SIZE + 1);
    g_autoptr(GError) error = NULL;
    g_autoptr(GPtrArray) diagnostics = NULL;
    g_autoptr(Policy) policy = NULL;
    const PolicyRule *rule;

    for (gsize i = 0; i < POLICY_MAX_TEXT_SIZE; i += line_len) {
        memset(text + i, '#', line_len - 1);
        text[i + line_len - 1] = '\n';
    }
    /* the last line is a rule */
    memcpy(text + POLICY_MAX_TEXT_SIZE - line_len, "deny id 0781:*    ", 18);
    policy = policy_load_data(text, POLICY_MAX_TEXT_SIZE, "big.rules", NULL, &error);
    g_assert_no_error(error);
    g_assert_cmpuint(policy_get_rule_count(policy), ==, 1);
    rule = g_ptr_array_index(policy->rules, 0);
    g_assert_cmpuint(rule->line, ==, POLICY_MAX_TEXT_SIZE / line_len);
    g_clear_pointer(&policy, policy_unref);

    text[POLICY_MAX_TEXT_SIZE] = '\n';
    policy = policy_load_data(text, POLICY_MAX_TEXT_SIZE + 1, "big.rules", &diagnostics, &error);
    g_assert_null(policy);
    g_assert_error(error, POLICY_ERROR, POLICY_ERROR_TOO_LARGE);
    g_assert_cmpstr(error->message, ==,
                    "big.rules: policy is 4194305 bytes, more than the 4194304 allowed");
    g_assert_null(diagnostics);
}

/* A binary file fed by mistake gives at most 100 diagnostics. */
static void
test_diagnostics_capped(void)
{
    g_autoptr(GString) text = g_string_new(NULL);
    g_autoptr(GPtrArray) diagnostics = NULL;
    g_autoptr(GError) error = NULL;
    g_autoptr(Policy) policy = NULL;

    for (guint i = 0; i < 250; i++)
        g_string_append_printf(text, "bogus%u\n", i);
    /* a pool error past the cap is not added either */
    g_string_append(text, "assign to pool \"none\"\n");
    policy = policy_load_data(text->str, text->len, "cap.rules", &diagnostics, &error);
    g_assert_null(policy);
    g_assert_cmpuint(diagnostics->len, ==, 100);
    g_assert_cmpuint(((PolicyDiagnostic *)g_ptr_array_index(diagnostics, 99))->line, ==, 100);
    g_assert_true(g_str_has_suffix(error->message, "(and 99 more errors)"));
}

static void
test_ref_unref(void)
{
    Policy *policy = policy_load_data("deny", 4, "r.rules", NULL, NULL);
    g_assert_true(policy_ref(policy) == policy);
    policy_unref(policy);
    g_assert_cmpuint(policy_get_rule_count(policy), ==, 1);
    policy_unref(policy);
    policy_unref(NULL);
}

/* ---- policy_load_file() ---------------------------------------------------- */

static void
test_load_file_good(void)
{
    g_autofree gchar *path = g_test_build_filename(G_TEST_DIST, "..", "data", "policy", "good",
                                                   "pool-3-keys-5-vms.rules", NULL);
    g_autoptr(GPtrArray) diagnostics = NULL;
    g_autoptr(GError) error = NULL;
    g_autoptr(Policy) policy = policy_load_file(path, &diagnostics, &error);
    g_autofree gchar *summary = NULL;

    g_assert_no_error(error);
    g_assert_cmpstr(policy_get_filename(policy), ==, path);
    summary = policy_test_summary(policy);
    g_assert_cmpstr(summary, ==,
                    "L4 assign id=0529:0001 serial=\"\" -> pool=\"hasp-cad\"\n"
                    "pool hasp-cad vms~\"cad-0?\" L3");
}

static void
test_load_file_bad(void)
{
    g_autofree gchar *path = g_test_build_filename(G_TEST_DIST, "..", "data", "policy", "bad",
                                                   "undefined-pool.rules", NULL);
    g_autoptr(GPtrArray) diagnostics = NULL;
    g_autoptr(GError) error = NULL;
    g_autoptr(Policy) policy = policy_load_file(path, &diagnostics, &error);
    const PolicyDiagnostic *first;

    g_assert_null(policy);
    g_assert_error(error, POLICY_ERROR, POLICY_ERROR_PARSE);
    g_assert_cmpuint(diagnostics->len, ==, 1);
    first = g_ptr_array_index(diagnostics, 0);
    g_assert_cmpstr(first->file, ==, path);
    g_assert_cmpuint(first->line, ==, 4);
    g_assert_cmpuint(first->column, ==, 29);
    g_assert_cmpstr(first->line_text, ==, "assign id 0529:0001 to pool \"hasp-cda\"");
}

static void
test_load_file_directory(void)
{
    g_autofree gchar *dir = g_dir_make_tmp("policy-test-XXXXXX", NULL);
    g_autoptr(GPtrArray) diagnostics = NULL;
    g_autoptr(GError) error = NULL;
    g_autoptr(Policy) policy = policy_load_file(dir, &diagnostics, &error);
    g_autofree gchar *want = g_strdup_printf("cannot read policy %s: not a regular file", dir);

    g_assert_null(policy);
    g_assert_error(error, G_FILE_ERROR, G_FILE_ERROR_INVAL);
    g_assert_cmpstr(error->message, ==, want);
    g_assert_null(diagnostics);
    g_assert_cmpint(g_rmdir(dir), ==, 0);
}

static void
test_load_file_device_node(void)
{
    g_autoptr(GError) error = NULL;
    g_autoptr(Policy) policy = policy_load_file("/dev/zero", NULL, &error);

    g_assert_null(policy);
    g_assert_error(error, G_FILE_ERROR, G_FILE_ERROR_INVAL);
    g_assert_cmpstr(error->message, ==, "cannot read policy /dev/zero: not a regular file");
}

static void
test_load_file_missing(void)
{
    g_autofree gchar *dir = g_dir_make_tmp("policy-test-XXXXXX", NULL);
    g_autofree gchar *path = g_build_filename(dir, "missing.rules", NULL);
    g_autoptr(GError) error = NULL;
    g_autoptr(Policy) policy = policy_load_file(path, NULL, &error);
    g_autofree gchar *want = g_strdup_printf("cannot read policy %s: %s", path, g_strerror(ENOENT));

    g_assert_null(policy);
    g_assert_error(error, G_FILE_ERROR, G_FILE_ERROR_NOENT);
    g_assert_cmpstr(error->message, ==, want);
    g_assert_cmpint(g_rmdir(dir), ==, 0);
}

/* A huge file is refused by its size, before it is read. */
static void
test_load_file_too_large(void)
{
    g_autofree gchar *path = NULL;
    g_autoptr(GError) error = NULL;
    g_autoptr(Policy) policy = NULL;
    gint fd = g_file_open_tmp("policy-test-XXXXXX.rules", &path, &error);
    g_autofree gchar *want = NULL;

    g_assert_no_error(error);
    g_assert_cmpint(ftruncate(fd, (off_t)POLICY_MAX_TEXT_SIZE + 1), ==, 0);
    g_assert_true(g_close(fd, NULL));
    policy = policy_load_file(path, NULL, &error);
    g_assert_null(policy);
    g_assert_error(error, POLICY_ERROR, POLICY_ERROR_TOO_LARGE);
    want = g_strdup_printf("%s: policy is 4194305 bytes, more than the 4194304 allowed", path);
    g_assert_cmpstr(error->message, ==, want);
    g_assert_cmpint(g_unlink(path), ==, 0);
}

int
main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    for (guint i = 0; i < G_N_ELEMENTS(good_cases); i++) {
        g_autofree gchar *path = g_strdup_printf("/policy/parser/good/%s", good_cases[i].name);
        g_test_add_data_func(path, &good_cases[i], test_good_case);
    }
    for (guint i = 0; i < G_N_ELEMENTS(bad_cases); i++) {
        g_autofree gchar *path = g_strdup_printf("/policy/parser/bad/%s", bad_cases[i].name);
        g_test_add_data_func(path, &bad_cases[i], test_bad_case);
    }
    for (guint i = 0; i < G_N_ELEMENTS(format_cases); i++) {
        g_autofree gchar *path = g_strdup_printf("/policy/parser/format/%s", format_cases[i].name);
        g_test_add_data_func(path, &format_cases[i], test_format_case);
    }
    g_test_add_func("/policy/parser/format/column-past-end", test_format_column_past_end);
    g_test_add_func("/policy/parser/error-counts-more-errors", test_error_counts_more_errors);
    g_test_add_func("/policy/parser/default-filename", test_default_filename);
    g_test_add_func("/policy/parser/empty-texts", test_empty_texts);
    g_test_add_func("/policy/parser/size-limit", test_size_limit);
    g_test_add_func("/policy/parser/diagnostics-capped", test_diagnostics_capped);
    g_test_add_func("/policy/parser/ref-unref", test_ref_unref);
    g_test_add_func("/policy/parser/file/good", test_load_file_good);
    g_test_add_func("/policy/parser/file/bad", test_load_file_bad);
    g_test_add_func("/policy/parser/file/directory", test_load_file_directory);
    g_test_add_func("/policy/parser/file/device-node", test_load_file_device_node);
    g_test_add_func("/policy/parser/file/missing", test_load_file_missing);
    g_test_add_func("/policy/parser/file/too-large", test_load_file_too_large);
    return g_test_run();
}
