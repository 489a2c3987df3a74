/* policy_decide() and policy_decision_is_for_vm(): which rule decides for
 * which device, on host and share origins. */
#include <string.h>

#include "policy-private.h"
#include "policy-test-device.h"

#define UUID       "8c1f0a2e-5d2b-4c1e-9a57-3f6b1e2d4c5a"
#define UUID_UPPER "8C1F0A2E-5D2B-4C1E-9A57-3F6B1E2D4C5A"
#define UUID_OTHER "00000000-0000-4000-8000-000000000001"

/* Devices of the sample inventory (data/sample-devices.json) and a few
 * composite ones. */
#define HASP              "0529:0001 class=ff:00:00 if=ff:00:00 port=1-1 product='HASP HL 3.25'"
#define HASP_SERIAL       HASP " serial=A1B2"
#define HASP_EMPTY_SERIAL HASP " serial="
#define CODEMETER                                                                                  \
    "064f:2af9 if=03:00:00 serial=3-1234567 port=1-3.2 product=CodeMeter-Stick hash=0a1b2c3d"
#define STICK         "0781:5567 if=08:06:50 serial=4C530001 port=1-4 product='Cruzer Blade'"
#define KEYBOARD      "046d:c31c if=03:01:01,03:00:00 port=1-5 product='USB Keyboard'"
#define SMARTCARD     "096e:0006 if=0b:00:00 serial=FT0123 port=1-6 product=ePass2003"
#define COMPOSITE     "1234:5678 if=03:00:00,ff:00:00 port=2-1"
#define NO_INTERFACES "1234:0001"
#define WEBCAM        "1234:9999 class=ef:02:01 if=0e:01:00,0e:02:00,01:01:00 port=2-3"
/* the same HASP key type, imported from two dongle servers */
#define HASP_DONGLES1 HASP " gateway=dongles1"
#define HASP_DONGLES2 HASP " gateway=dongles2"

/* a dongle server's policy: exports to hypervisors, keeps one key */
#define EXPORT_HV "export id 0529:* to gateway \"hv-*\""

typedef struct {
    const gchar *name;
    const gchar *policy;
    PolicyOrigin origin;
    const gchar *device;
    const gchar *vm;
    const gchar *uuid;
    const gchar *user;
    const gchar *groups;  /* comma-separated */
    const gchar *want;    /* decision_to_string() */
    const gchar *gateway; /* the context's importing gateway */
} DecideCase;

/* "assign vm=\"cad-01\" required @m.rules:2", "deny @m.rules:1", "none". */
static gchar *
decision_to_string(const PolicyDecision *d)
{
    GString *out = g_string_new(policy_verdict_to_string(d->verdict));
    if (d->target != NULL)
        g_string_append_printf(out, " %s=\"%s\"", policy_target_kind_to_string(d->target_kind),
                               d->target);
    if (d->required)
        g_string_append(out, " required");
    if (d->file != NULL)
        g_string_append_printf(out, " @%s:%u", d->file, d->line);
    return g_string_free(out, FALSE);
}

#define HOST  POLICY_ORIGIN_HOST
#define SHARE POLICY_ORIGIN_SHARE

#define META_POLICY                                                                                \
    "deny id 0529:0002\n"                                                                          \
    "pool \"cad\" vms \"cad-*\"\n"                                                                 \
    "allow metadata pool \"cad\" for vm \"one-*\"\n"                                               \
    "allow metadata id 0529:* for vm \"win-*\"\n"                                                  \
    "assign id 0529:0001 to pool \"cad\""

static const DecideCase decide_cases[] = {
    /* allow metadata: the device form decides like an assign to a glob,
     * in rule order; the pool form decides no device */
    {"metadata-device", META_POLICY, HOST, HASP, .want = "allow-metadata vm=\"win-*\" @m.rules:4"},
    {"metadata-after-deny", META_POLICY, HOST, "0529:0002 port=1-2", .want = "deny @m.rules:1"},
    {"metadata-pool-decides-nothing",
     "pool \"cad\" vms \"x\"\nallow metadata pool \"cad\" for vm \"one-*\"", HOST, HASP,
     .want = "none"},
    {"metadata-not-for-shares", "allow metadata id 0529:* for vm \"v\"", SHARE, HASP, .vm = "v",
     .user = "alice", .want = "deny"},
    {"metadata-after-assign",
     "assign id 0529:0001 to vm \"a\"\nallow metadata id 0529:* for vm \"b\"", HOST, HASP,
     .want = "assign vm=\"a\" @m.rules:1"},
    /* id */
    {"id-exact", "assign id 0529:0001 to vm \"cad-01\"", HOST, HASP,
     .want = "assign vm=\"cad-01\" @m.rules:1"},
    {"id-other-product", "assign id 0529:0002 to vm \"cad-01\"", HOST, HASP, .want = "none"},
    {"id-vendor-wildcard", "assign id 0529:* to vm \"v\"", HOST, HASP,
     .want = "assign vm=\"v\" @m.rules:1"},
    {"id-vendor-wildcard-other-vendor", "assign id 0528:* to vm \"v\"", HOST, HASP, .want = "none"},
    {"id-any", "deny id *:*", HOST, KEYBOARD, .want = "deny @m.rules:1"},
    /* serial */
    {"serial-empty-matches-no-serial", "assign id 0529:0001 serial \"\" to vm \"cad-01\" required",
     HOST, HASP, .want = "assign vm=\"cad-01\" required @m.rules:1"},
    {"serial-empty-matches-empty-serial", "assign serial \"\" to vm \"x\"", HOST, HASP_EMPTY_SERIAL,
     .want = "assign vm=\"x\" @m.rules:1"},
    {"serial-empty-skips-serial", "assign serial \"\" to vm \"a\"\nassign id 0529:0001 to vm \"b\"",
     HOST, HASP_SERIAL, .want = "assign vm=\"b\" @m.rules:2"},
    {"serial-exact", "assign id 064f:2af9 serial \"3-1234567\" to vm \"erp-01\"", HOST, CODEMETER,
     .want = "assign vm=\"erp-01\" @m.rules:1"},
    {"serial-exact-is-not-prefix", "assign serial \"3-123456\" to vm \"erp-01\"", HOST, CODEMETER,
     .want = "none"},
    {"serial-glob", "assign serial \"3-*\" to vm \"erp-01\"", HOST, CODEMETER,
     .want = "assign vm=\"erp-01\" @m.rules:1"},
    {"serial-glob-needs-serial", "assign serial \"A*\" to vm \"x\"", HOST, HASP, .want = "none"},
    {"serial-star-matches-no-serial", "assign serial \"*\" to vm \"x\"", HOST, HASP,
     .want = "assign vm=\"x\" @m.rules:1"},
    /* name: the product string */
    {"name-glob", "assign name \"HASP*\" to vm \"x\"", HOST, HASP,
     .want = "assign vm=\"x\" @m.rules:1"},
    {"name-question-mark", "assign name \"?ASP HL 3.2?\" to vm \"x\"", HOST, HASP,
     .want = "assign vm=\"x\" @m.rules:1"},
    {"name-literal-exact", "assign name \"HASP HL\" to vm \"x\"", HOST, HASP, .want = "none"},
    {"name-is-not-manufacturer", "assign name \"SafeNet*\" to vm \"x\"", HOST,
     HASP " manufacturer='SafeNet Inc.'", .want = "none"},
    {"name-without-product", "assign name \"*\" to vm \"x\"", HOST, NO_INTERFACES, .want = "none"},
    /* via-port */
    {"via-port-exact", "assign via-port \"1-1\" to vm \"x\"", HOST, HASP,
     .want = "assign vm=\"x\" @m.rules:1"},
    {"via-port-literal-is-not-prefix", "assign via-port 1-1 to vm \"x\"", HOST,
     "0529:0001 port=1-1.4", .want = "none"},
    {"via-port-glob", "assign via-port \"1-*\" to vm \"x\"", HOST, CODEMETER,
     .want = "assign vm=\"x\" @m.rules:1"},
    {"via-port-glob-other-bus", "assign via-port \"1-*\" to vm \"x\"", HOST, COMPOSITE,
     .want = "none"},
    {"via-port-without-port", "assign via-port \"*\" to vm \"x\"", HOST, NO_INTERFACES,
     .want = "none"},
    /* class: the device class, not the interfaces */
    {"class-device", "assign class ff to vm \"x\"", HOST, HASP,
     .want = "assign vm=\"x\" @m.rules:1"},
    {"class-ignores-interfaces", "deny class 08", HOST, STICK, .want = "none"},
    {"class-full-triple", "deny class ef:02:01", HOST, WEBCAM, .want = "deny @m.rules:1"},
    {"class-protocol-differs", "deny class ef:02:00", HOST, WEBCAM, .want = "none"},
    /* hash */
    {"hash-equal", "assign hash \"0a1b2c3d\" to vm \"x\"", HOST, CODEMETER,
     .want = "assign vm=\"x\" @m.rules:1"},
    {"hash-differs", "assign hash \"0a1b2c3e\" to vm \"x\"", HOST, CODEMETER, .want = "none"},
    {"hash-device-without-hash", "assign hash \"0a1b2c3d\" to vm \"x\"", HOST, HASP,
     .want = "none"},
    /* with-interface, one-of (the default) */
    {"interface-boot-keyboard", "deny with-interface 03:01:01", HOST, KEYBOARD,
     .want = "deny @m.rules:1"},
    {"interface-second-interface", "deny with-interface 03:00:00", HOST, KEYBOARD,
     .want = "deny @m.rules:1"},
    {"interface-protocol-wildcard", "deny with-interface 03:01:*", HOST, KEYBOARD,
     .want = "deny @m.rules:1"},
    {"interface-non-boot-hid-is-not-keyboard", "deny with-interface 03:01:01", HOST, CODEMETER,
     .want = "none"},
    {"one-of-set", "deny with-interface { 08:*:* 03:01:01 }", HOST, STICK,
     .want = "deny @m.rules:1"},
    {"one-of-explicit-no-match", "deny with-interface one-of { 08:*:* 0b:*:* }", HOST, COMPOSITE,
     .want = "none"},
    {"one-of-no-interfaces", "deny with-interface *:*:*", HOST, NO_INTERFACES, .want = "none"},
    /* all-of: every pattern found on some interface */
    {"all-of-composite", "assign with-interface all-of { 03:00:00 ff:00:00 } to vm \"c\"", HOST,
     COMPOSITE, .want = "assign vm=\"c\" @m.rules:1"},
    {"all-of-missing-one", "assign with-interface all-of { 03:00:00 ff:00:00 } to vm \"c\"", HOST,
     HASP, .want = "none"},
    {"all-of-one-interface-many-patterns",
     "assign with-interface all-of { 03:*:* 03:01:01 } to vm \"c\"", HOST, "1111:2222 if=03:01:01",
     .want = "assign vm=\"c\" @m.rules:1"},
    /* none-of: no interface matches any pattern */
    {"none-of-clean", "assign with-interface none-of { 08:*:* 0e:*:* } to vm \"n\"", HOST, HASP,
     .want = "assign vm=\"n\" @m.rules:1"},
    {"none-of-hit", "assign with-interface none-of { 08:*:* 0e:*:* } to vm \"n\"", HOST, WEBCAM,
     .want = "none"},
    {"none-of-no-interfaces", "assign with-interface none-of { 08:*:* } to vm \"n\"", HOST,
     NO_INTERFACES, .want = "assign vm=\"n\" @m.rules:1"},
    /* match-all: every interface matches some pattern */
    {"match-all-composite", "assign with-interface match-all { ff:*:* 03:*:* } to vm \"m\"", HOST,
     COMPOSITE, .want = "assign vm=\"m\" @m.rules:1"},
    {"match-all-one-stray", "assign with-interface match-all { 0e:*:* } to vm \"m\"", HOST, WEBCAM,
     .want = "none"},
    {"match-all-no-interfaces", "assign with-interface match-all { *:*:* } to vm \"m\"", HOST,
     NO_INTERFACES, .want = "none"},
    /* all matchers of a rule must hold */
    {"matchers-and",
     "assign id 0529:0001 serial \"A1B2\" via-port 1-1 to vm \"a\"\nassign id 0529:0001 to vm "
     "\"b\"",
     HOST, HASP, .want = "assign vm=\"b\" @m.rules:2"},
    {"matchers-and-all-hold", "assign id 0529:0001 serial \"A1B2\" via-port 1-1 to vm \"a\"", HOST,
     HASP_SERIAL, .want = "assign vm=\"a\" @m.rules:1"},
    /* order */
    {"first-match-wins", "assign id 0529:* to vm \"first\"\nassign id 0529:0001 to vm \"second\"",
     HOST, HASP, .want = "assign vm=\"first\" @m.rules:1"},
    {"deny-before-assign", "deny with-interface 08:*:*\nassign id *:* to vm \"all\"", HOST, STICK,
     .want = "deny @m.rules:1"},
    {"deny-before-assign-other-device", "deny with-interface 08:*:*\nassign id *:* to vm \"all\"",
     HOST, HASP, .want = "assign vm=\"all\" @m.rules:2"},
    {"assign-before-deny", "assign id 0781:5567 to vm \"backup\"\ndeny with-interface 08:*:*", HOST,
     STICK, .want = "assign vm=\"backup\" @m.rules:1"},
    {"line-numbers-count-comments", "# one\n\n# three\ndeny with-interface 08:*:* # four", HOST,
     STICK, .want = "deny @m.rules:4"},
    {"pool-target",
     "pool \"hasp-cad\" vms \"cad-*\"\nassign id 0529:0001 to pool \"hasp-cad\" optional", HOST,
     HASP, .want = "assign pool=\"hasp-cad\" @m.rules:2"},
    {"vm-uuid-target-lower-case", "assign via-port 1-6 to vm-uuid \"" UUID_UPPER "\" required",
     HOST, SMARTCARD, .want = "assign vm-uuid=\"" UUID "\" required @m.rules:1"},
    {"host-skips-share-rules", "share id *:* user \"alice\" to vm \"ws-alice\"", HOST, SMARTCARD,
     .want = "none"},
    {"empty-policy-host", "", HOST, HASP, .want = "none"},
    /* share origin: share and deny rules; no match means deny */
    {"share-user", "share id 096e:* user \"alice\" to vm \"ws-alice\"", SHARE, SMARTCARD,
     "ws-alice", NULL, "alice", NULL, "share vm=\"ws-alice\" @m.rules:1", NULL},
    {"share-other-user", "share id 096e:* user \"alice\" to vm \"ws-alice\"", SHARE, SMARTCARD,
     "ws-alice", NULL, "bob", NULL, "deny", NULL},
    {"share-no-context", "share id 096e:* user \"alice\" to vm \"ws-alice\"", SHARE, SMARTCARD,
     .want = "deny"},
    {"share-other-vm", "share id 096e:* user \"alice\" to vm \"ws-alice\"", SHARE, SMARTCARD,
     "ws-bob", NULL, "alice", NULL, "deny", NULL},
    {"share-device-mismatch", "share id 096e:* user \"alice\" to vm \"ws-alice\"", SHARE, HASP,
     "ws-alice", NULL, "alice", NULL, "deny", NULL},
    {"share-group-in-list", "share with-interface 0b:*:* group \"engineering\" to vm \"ws-*\"",
     SHARE, SMARTCARD, "ws-carol", NULL, "carol", "users,engineering,cad",
     "share vm=\"ws-*\" @m.rules:1", NULL},
    {"share-group-not-in-list", "share group \"engineering\" to vm \"ws-*\"", SHARE, SMARTCARD,
     "ws-carol", NULL, "carol", "users,cad", "deny", NULL},
    {"share-group-no-groups", "share group \"engineering\" to vm \"ws-*\"", SHARE, SMARTCARD,
     "ws-carol", NULL, "carol", NULL, "deny", NULL},
    {"share-group-is-not-user", "share group \"alice\" to vm \"ws-*\"", SHARE, SMARTCARD,
     "ws-alice", NULL, "alice", NULL, "deny", NULL},
    {"share-user-and-group-both-needed", "share user \"bob\" group \"cad\" to vm \"ws-bob\"", SHARE,
     CODEMETER, "ws-bob", NULL, "bob", "users", "deny", NULL},
    {"share-user-and-group-hold", "share user \"bob\" group \"cad\" to vm \"ws-bob\" required",
     SHARE, CODEMETER, "ws-bob", NULL, "bob", "users,cad",
     "share vm=\"ws-bob\" required @m.rules:1", NULL},
    {"share-vm-uuid-any-case", "share user \"bob\" to vm-uuid \"" UUID "\"", SHARE, CODEMETER, NULL,
     UUID_UPPER, "bob", NULL, "share vm-uuid=\"" UUID "\" @m.rules:1", NULL},
    {"share-vm-uuid-needs-uuid", "share user \"bob\" to vm-uuid \"" UUID "\"", SHARE, CODEMETER,
     "ws-bob", NULL, "bob", NULL, "deny", NULL},
    {"share-vm-uuid-other", "share user \"bob\" to vm-uuid \"" UUID "\"", SHARE, CODEMETER, NULL,
     UUID_OTHER, "bob", NULL, "deny", NULL},
    {"share-deny-first", "deny with-interface 08:*:*\nshare user \"alice\" to vm \"ws-alice\"",
     SHARE, STICK, "ws-alice", NULL, "alice", NULL, "deny @m.rules:1", NULL},
    /* a lent device's serial is unknown (only its client could claim one):
     * serial "" must not take it for "has none", nor name/via-port/hash
     * match what a caller filled in */
    {"share-deny-serial-empty-skips-lent-device",
     "deny serial \"\"\nshare id 0529:0001 user \"alice\" to vm \"ws-alice\"", SHARE, HASP,
     "ws-alice", NULL, "alice", NULL, "share vm=\"ws-alice\" @m.rules:2", NULL},
    {"share-deny-name-skips-lent-device",
     "deny name \"HASP*\"\nshare id 0529:0001 user \"alice\" to vm \"ws-alice\"", SHARE, HASP,
     "ws-alice", NULL, "alice", NULL, "share vm=\"ws-alice\" @m.rules:2", NULL},
    {"host-deny-serial-empty-still-holds", "deny serial \"\"", HOST, HASP,
     .want = "deny @m.rules:1"},
    {"share-skips-assign-rules", "assign id *:* to vm \"ws-alice\"", SHARE, SMARTCARD, "ws-alice",
     NULL, "alice", NULL, "deny", NULL},
    {"share-skips-rule-for-other-vm",
     "share user \"alice\" to vm \"ws-bob\"\nshare user \"alice\" to vm \"ws-alice\" optional",
     SHARE, SMARTCARD, "ws-alice", NULL, "alice", NULL, "share vm=\"ws-alice\" @m.rules:2", NULL},
    {"empty-policy-share", "", SHARE, SMARTCARD, "ws-alice", NULL, "alice", NULL, "deny", NULL},
    /* export: without an importing gateway, the device matchers alone
     * decide ("is it exported to anyone?") */
    {"export-no-context", EXPORT_HV, HOST, HASP, .want = "export gateway=\"hv-*\" @m.rules:1"},
    {"export-other-device", EXPORT_HV, HOST, CODEMETER, .want = "none"},
    {"export-context-without-gateway", EXPORT_HV, HOST, HASP, "cad-01", NULL, NULL, NULL,
     "export gateway=\"hv-*\" @m.rules:1", NULL},
    {"export-gateway-matches", EXPORT_HV, HOST, HASP, .want = "export gateway=\"hv-*\" @m.rules:1",
     .gateway = "hv-01"},
    {"export-gateway-does-not-match", EXPORT_HV, HOST, HASP, .want = "none", .gateway = "dongles2"},
    {"export-glob-is-anchored", EXPORT_HV, HOST, HASP, .want = "none", .gateway = "old-hv-01"},
    {"export-literal-gateway", "export id 0529:* to gateway hv-01", HOST, HASP,
     .want = "export gateway=\"hv-01\" @m.rules:1", .gateway = "hv-01"},
    {"export-literal-is-not-prefix", "export id 0529:* to gateway hv-01", HOST, HASP,
     .want = "none", .gateway = "hv-010"},
    {"export-question-mark", "export to gateway \"hv-0?\"", HOST, HASP,
     .want = "export gateway=\"hv-0?\" @m.rules:1", .gateway = "hv-07"},
    {"export-question-mark-one-char", "export to gateway \"hv-0?\"", HOST, HASP, .want = "none",
     .gateway = "hv-007"},
    {"export-gateway-case-sensitive", EXPORT_HV, HOST, HASP, .want = "none", .gateway = "HV-01"},
    /* an export rule the asking gateway does not match lets later rules
     * decide */
    {"export-other-gateway-falls-through", EXPORT_HV "\nassign id 0529:0001 to vm \"cad-01\"", HOST,
     HASP, .want = "assign vm=\"cad-01\" @m.rules:2", .gateway = "ws-01"},
    {"export-second-rule-for-other-gateways",
     EXPORT_HV "\nexport id 0529:0001 to gateway \"lab-*\"", HOST, HASP,
     .want = "export gateway=\"lab-*\" @m.rules:2", .gateway = "lab-3"},
    /* export rules never decide for imported devices */
    {"export-skips-imported-device", EXPORT_HV, HOST, HASP_DONGLES1, .want = "none"},
    {"export-skips-imported-device-for-gateway", EXPORT_HV, HOST, HASP_DONGLES1, .want = "none",
     .gateway = "hv-01"},
    {"export-everything-skips-imported-device", "export to gateway \"*\"", HOST, HASP_DONGLES1,
     .want = "none", .gateway = "hv-01"},
    /* first match wins across assign, deny and export */
    {"assign-before-export", "assign id 0529:0001 to vm \"cad-01\"\n" EXPORT_HV, HOST, HASP,
     .want = "assign vm=\"cad-01\" @m.rules:1", .gateway = "hv-01"},
    {"assign-before-export-no-context", "assign id 0529:0001 to vm \"cad-01\"\n" EXPORT_HV, HOST,
     HASP, .want = "assign vm=\"cad-01\" @m.rules:1"},
    {"assign-other-port-before-export",
     "assign id 0529:0001 via-port 1-2 to vm \"cad-01\"\n" EXPORT_HV, HOST, HASP,
     .want = "export gateway=\"hv-*\" @m.rules:2", .gateway = "hv-01"},
    {"deny-before-export", "deny id 0529:*\n" EXPORT_HV, HOST, HASP, .want = "deny @m.rules:1",
     .gateway = "hv-01"},
    {"export-before-deny", EXPORT_HV "\ndeny id 0529:*", HOST, HASP,
     .want = "export gateway=\"hv-*\" @m.rules:1", .gateway = "hv-01"},
    {"export-before-assign", EXPORT_HV "\nassign id 0529:0001 to vm \"cad-01\"", HOST, HASP,
     .want = "export gateway=\"hv-*\" @m.rules:1"},
    {"export-before-assign-imported-device", EXPORT_HV "\nassign id 0529:0001 to vm \"cad-01\"",
     HOST, HASP_DONGLES1, .want = "assign vm=\"cad-01\" @m.rules:2"},
    {"export-optional-is-not-required", "export id 0529:* to gateway \"hv-*\" optional", HOST, HASP,
     .want = "export gateway=\"hv-*\" @m.rules:1"},
    /* share origin: export rules never decide for a lent device */
    {"share-skips-export-rules",
     "export id *:* to gateway \"*\"\nshare user \"alice\" to vm \"ws-alice\"", SHARE, SMARTCARD,
     "ws-alice", NULL, "alice", NULL, "share vm=\"ws-alice\" @m.rules:2", "hv-01"},
    {"share-export-only-denies", "export id *:* to gateway \"*\"", SHARE, SMARTCARD, "ws-alice",
     NULL, "alice", NULL, "deny", NULL},
    /* on gateway: devices imported from a gateway the glob names */
    {"on-gateway-literal", "assign on gateway \"dongles1\" to vm \"cad-01\"", HOST, HASP_DONGLES1,
     .want = "assign vm=\"cad-01\" @m.rules:1"},
    {"on-gateway-other-gateway", "assign on gateway \"dongles1\" to vm \"cad-01\"", HOST,
     HASP_DONGLES2, .want = "none"},
    {"on-gateway-glob", "assign on gateway \"dongles*\" to vm \"cad-01\"", HOST, HASP_DONGLES2,
     .want = "assign vm=\"cad-01\" @m.rules:1"},
    {"on-gateway-skips-local-device", "assign on gateway \"*\" to vm \"cad-01\"", HOST, HASP,
     .want = "none"},
    {"on-gateway-and-other-matchers",
     "assign id 0529:0001 via-port 1-2 on gateway dongles1 to vm \"a\"\n"
     "assign id 0529:0001 on gateway dongles1 to vm \"b\"",
     HOST, HASP_DONGLES1, .want = "assign vm=\"b\" @m.rules:2"},
    {"on-gateway-ignores-context-gateway", "assign on gateway \"dongles1\" to vm \"cad-01\"", HOST,
     HASP_DONGLES1, .want = "assign vm=\"cad-01\" @m.rules:1", .gateway = "hv-01"},
    /* a rule without on gateway matches devices wherever they are */
    {"no-on-gateway-matches-imported", "assign id 0529:0001 to vm \"cad-01\"", HOST, HASP_DONGLES1,
     .want = "assign vm=\"cad-01\" @m.rules:1"},
    {"no-on-gateway-matches-local", "assign id 0529:0001 to vm \"cad-01\"", HOST, HASP,
     .want = "assign vm=\"cad-01\" @m.rules:1"},
    {"deny-on-gateway", "deny on gateway \"untrusted-*\"\nassign id *:* to vm \"all\"", HOST,
     HASP " gateway=untrusted-1", .want = "deny @m.rules:1"},
    {"deny-on-gateway-skips-local", "deny on gateway \"untrusted-*\"\nassign id *:* to vm \"all\"",
     HOST, HASP, .want = "assign vm=\"all\" @m.rules:2"},
    {"deny-on-gateway-skips-lent", "deny on gateway \"*\"\nshare user \"alice\" to vm \"ws-alice\"",
     SHARE, SMARTCARD, "ws-alice", NULL, "alice", NULL, "share vm=\"ws-alice\" @m.rules:2", NULL},
};

static void
test_decide_case(gconstpointer data)
{
    const DecideCase *c = data;
    g_autoptr(GError) error = NULL;
    g_autoptr(Policy) policy =
        policy_load_data(c->policy, strlen(c->policy), "m.rules", NULL, &error);
    g_autoptr(PolicyDevice) device = policy_test_device_new(c->device);
    g_auto(GStrv) groups = c->groups != NULL ? g_strsplit(c->groups, ",", -1) : NULL;
    PolicyContext ctx = {.vm_name = c->vm,
                         .vm_uuid = c->uuid,
                         .user = c->user,
                         .groups = (const gchar *const *)groups,
                         .gateway = c->gateway};
    gboolean no_ctx = c->vm == NULL && c->uuid == NULL && c->user == NULL && c->groups == NULL &&
                      c->gateway == NULL;
    PolicyDecision decision;
    g_autofree gchar *got = NULL;

    g_assert_no_error(error);
    memset(&decision, 0xa5, sizeof(decision));
    policy_decide(policy, c->origin, device, no_ctx ? NULL : &ctx, &decision);
    got = decision_to_string(&decision);
    g_assert_cmpstr(got, ==, c->want);
    /* the deciding rule is the one named */
    if (decision.file != NULL) {
        const PolicyRule *rule = g_ptr_array_index(policy->rules, decision.rule_index);
        g_assert_true(decision.file == policy_get_filename(policy));
        g_assert_cmpuint(rule->line, ==, decision.line);
        g_assert_true(policy_rule_match_device(rule, device));
    } else {
        g_assert_cmpuint(decision.line, ==, 0);
        g_assert_null(decision.target);
    }
}

/* ---- policy_decision_is_for_vm() ------------------------------------------- */

typedef struct {
    const gchar *name;
    const gchar *policy;
    const gchar *vm;
    const gchar *uuid;
    gboolean want;
} ForVmCase;

#define POOL_POLICY "pool \"hasp-cad\" vms \"cad-*\"\nassign id 0529:0001 to pool \"hasp-cad\""

static const ForVmCase for_vm_cases[] = {
    {"vm-literal", "assign id *:* to vm \"cad-01\"", "cad-01", NULL, TRUE},
    {"vm-literal-other", "assign id *:* to vm \"cad-01\"", "cad-02", NULL, FALSE},
    {"vm-literal-is-case-sensitive", "assign id *:* to vm \"cad-01\"", "CAD-01", NULL, FALSE},
    {"vm-no-name", "assign id *:* to vm \"cad-01\"", NULL, UUID, FALSE},
    {"vm-glob-star", "assign id *:* to vm \"cad-*\"", "cad-7", NULL, TRUE},
    {"vm-glob-star-other", "assign id *:* to vm \"cad-*\"", "build-01", NULL, FALSE},
    {"vm-glob-question", "assign id *:* to vm \"cad-0?\"", "cad-05", NULL, TRUE},
    {"vm-glob-question-one-char", "assign id *:* to vm \"cad-0?\"", "cad-011", NULL, FALSE},
    {"vm-uuid-same-case", "assign id *:* to vm-uuid \"" UUID "\"", NULL, UUID, TRUE},
    {"vm-uuid-upper-case", "assign id *:* to vm-uuid \"" UUID "\"", "any", UUID_UPPER, TRUE},
    {"vm-uuid-upper-in-rule", "assign id *:* to vm-uuid \"" UUID_UPPER "\"", NULL, UUID, TRUE},
    {"vm-uuid-other", "assign id *:* to vm-uuid \"" UUID "\"", NULL, UUID_OTHER, FALSE},
    {"vm-uuid-name-only", "assign id *:* to vm-uuid \"" UUID "\"", UUID, NULL, FALSE},
    {"pool-member", POOL_POLICY, "cad-03", NULL, TRUE},
    {"pool-non-member", POOL_POLICY, "erp-01", NULL, FALSE},
    {"pool-needs-name", POOL_POLICY, NULL, UUID, FALSE},
    {"deny-is-for-nobody", "deny id *:*", "cad-01", UUID, FALSE},
    {"none-is-for-nobody", "assign id dead:beef to vm \"*\"", "cad-01", NULL, FALSE},
    {"export-is-for-nobody", "export id *:* to gateway \"*\"", "cad-01", UUID, FALSE},
};

static void
test_for_vm_case(gconstpointer data)
{
    const ForVmCase *c = data;
    g_autoptr(Policy) policy =
        policy_load_data(c->policy, strlen(c->policy), "v.rules", NULL, NULL);
    g_autoptr(PolicyDevice) device = policy_test_device_new(HASP);
    PolicyDecision decision;

    g_assert_nonnull(policy);
    policy_decide(policy, POLICY_ORIGIN_HOST, device, NULL, &decision);
    g_assert_cmpint(policy_decision_is_for_vm(policy, &decision, c->vm, c->uuid), ==, c->want);
}

/* A share decision is for the VM it was decided for. */
static void
test_for_vm_share(void)
{
    const gchar *text = "share user \"alice\" to vm \"ws-*\"";
    g_autoptr(Policy) policy = policy_load_data(text, strlen(text), "s.rules", NULL, NULL);
    g_autoptr(PolicyDevice) device = policy_test_device_new(SMARTCARD);
    PolicyContext ctx = {.vm_name = "ws-alice", .user = "alice"};
    PolicyDecision decision;

    policy_decide(policy, POLICY_ORIGIN_SHARE, device, &ctx, &decision);
    g_assert_cmpint(decision.verdict, ==, POLICY_VERDICT_SHARE);
    g_assert_true(policy_decision_is_for_vm(policy, &decision, "ws-alice", NULL));
    g_assert_true(policy_decision_is_for_vm(policy, &decision, "ws-bob", NULL));
    g_assert_false(policy_decision_is_for_vm(policy, &decision, "cad-01", NULL));
}

/* A decision whose rule index is out of range (from another policy) is for
 * no VM rather than a crash. */
static void
test_for_vm_foreign_decision(void)
{
    g_autoptr(Policy) policy = policy_load_data("deny", 4, "f.rules", NULL, NULL);
    PolicyDecision decision = {.verdict = POLICY_VERDICT_ASSIGN, .rule_index = 5};
    g_assert_false(policy_decision_is_for_vm(policy, &decision, "cad-01", NULL));
}

/* ---- policy_exports_to() ---------------------------------------------------- */

typedef struct {
    const gchar *name;
    const gchar *device;
    const gchar *gateway; /* the importing gateway, nullable */
    gboolean want;
    const gchar *want_decision; /* decision_to_string() */
} ExportsCase;

#define EXPORTS_POLICY                                                                             \
    "deny id 0529:0002\n"                                                                          \
    "assign id 0529:0001 via-port 1-9 to vm \"build-01\"\n"                                        \
    "export id 0529:* to gateway \"hv-*\"\n"                                                       \
    "assign id 0529:* to vm \"cad-01\"\n"

static const ExportsCase exports_cases[] = {
    {"to-matching-gateway", HASP, "hv-01", TRUE, "export gateway=\"hv-*\" @x.rules:3"},
    {"to-anyone", HASP, NULL, TRUE, "export gateway=\"hv-*\" @x.rules:3"},
    {"not-to-other-gateway", HASP, "ws-01", FALSE, "assign vm=\"cad-01\" @x.rules:4"},
    {"assigned-first", "0529:0001 port=1-9", "hv-01", FALSE, "assign vm=\"build-01\" @x.rules:2"},
    {"denied-first", "0529:0002 port=1-2", "hv-01", FALSE, "deny @x.rules:1"},
    {"imported-device", HASP_DONGLES1, "hv-01", FALSE, "assign vm=\"cad-01\" @x.rules:4"},
    {"no-rule", CODEMETER, "hv-01", FALSE, "none"},
};

static void
test_exports_case(gconstpointer data)
{
    const ExportsCase *c = data;
    g_autoptr(GError) error = NULL;
    g_autoptr(Policy) policy =
        policy_load_data(EXPORTS_POLICY, strlen(EXPORTS_POLICY), "x.rules", NULL, &error);
    g_autoptr(PolicyDevice) device = policy_test_device_new(c->device);
    PolicyDecision decision;
    g_autofree gchar *got = NULL;

    g_assert_no_error(error);
    memset(&decision, 0xa5, sizeof(decision));
    g_assert_cmpint(policy_exports_to(policy, device, c->gateway, &decision), ==, c->want);
    got = decision_to_string(&decision);
    g_assert_cmpstr(got, ==, c->want_decision);
    /* the decision is optional */
    g_assert_cmpint(policy_exports_to(policy, device, c->gateway, NULL), ==, c->want);
}

typedef struct {
    const gchar *name;
    gint value;
    const gchar *want;
} NameCase;

static const NameCase verdict_names[] = {
    {"none", POLICY_VERDICT_NONE, "none"},       {"assign", POLICY_VERDICT_ASSIGN, "assign"},
    {"share", POLICY_VERDICT_SHARE, "share"},    {"deny", POLICY_VERDICT_DENY, "deny"},
    {"export", POLICY_VERDICT_EXPORT, "export"}, {"out-of-range", 42, "unknown"},
};

static const NameCase target_names[] = {
    {"none", POLICY_TARGET_NONE, "none"},          {"vm", POLICY_TARGET_VM, "vm"},
    {"vm-uuid", POLICY_TARGET_VM_UUID, "vm-uuid"}, {"pool", POLICY_TARGET_POOL, "pool"},
    {"gateway", POLICY_TARGET_GATEWAY, "gateway"}, {"out-of-range", 42, "unknown"},
};

/* policy_metadata_allows_pool, policy_metadata_names_vm and the wishes */
static void
test_metadata(void)
{
    g_autoptr(GError) error = NULL;
    g_autoptr(Policy) policy =
        policy_load_data(META_POLICY, strlen(META_POLICY), "m.rules", NULL, &error);
    g_autoptr(PolicyDevice) hasp = policy_test_device_new(HASP);
    g_autoptr(PolicyDevice) serial = policy_test_device_new(HASP_SERIAL);
    g_autoptr(PolicyWish) pool = policy_wish_new_pool("cad");
    g_autoptr(PolicyWish) id = policy_wish_new_device("0529:0001", NULL);
    g_autoptr(PolicyWish) vendor = policy_wish_new_device("0529:*", NULL);
    g_autoptr(PolicyWish) with_serial = policy_wish_new_device("0529:0001", "nope");
    g_autoptr(PolicyWish) copy = NULL;
    g_autofree gchar *described = NULL;
    PolicyDecision decision;

    g_assert_no_error(error);
    g_assert_true(policy_metadata_allows_pool(policy, "cad", "one-7", NULL, &decision));
    g_assert_cmpuint(decision.line, ==, 3);
    g_assert_cmpint(decision.verdict, ==, POLICY_VERDICT_METADATA);
    g_assert_false(policy_metadata_allows_pool(policy, "cad", "win-7", NULL, NULL));
    g_assert_false(policy_metadata_allows_pool(policy, "other", "one-7", NULL, NULL));
    g_assert_true(policy_metadata_names_vm(policy, "one-1", NULL));
    g_assert_true(policy_metadata_names_vm(policy, "win-1", NULL));
    g_assert_false(policy_metadata_names_vm(policy, "cad-1", NULL));

    g_assert_true(policy_wish_matches_device(id, hasp));
    g_assert_true(policy_wish_matches_device(vendor, hasp));
    g_assert_false(policy_wish_matches_device(pool, hasp));
    g_assert_false(policy_wish_matches_device(with_serial, hasp));
    g_assert_false(policy_wish_matches_device(with_serial, serial));
    g_assert_null(policy_wish_new_device("*:*", NULL));
    g_assert_null(policy_wish_new_device("0529", NULL));
    g_assert_null(policy_wish_new_device(NULL, NULL));
    described = policy_wish_describe(with_serial);
    g_assert_cmpstr(described, ==, "id 0529:0001 serial \"nope\"");
    g_clear_pointer(&described, g_free);
    described = policy_wish_describe(pool);
    g_assert_cmpstr(described, ==, "pool \"cad\"");
    copy = policy_wish_copy(with_serial);
    g_assert_true(policy_wish_equal(copy, with_serial));
    g_assert_false(policy_wish_equal(copy, id));
    g_assert_false(policy_wish_equal(pool, id));
}

static void
test_names(void)
{
    for (guint i = 0; i < G_N_ELEMENTS(verdict_names); i++)
        g_assert_cmpstr(policy_verdict_to_string((PolicyVerdict)verdict_names[i].value), ==,
                        verdict_names[i].want);
    for (guint i = 0; i < G_N_ELEMENTS(target_names); i++)
        g_assert_cmpstr(policy_target_kind_to_string((PolicyTargetKind)target_names[i].value), ==,
                        target_names[i].want);
}

typedef struct {
    const gchar *name;
    const gchar *device;
    const gchar *want;
} DescribeCase;

static const DescribeCase describe_cases[] = {
    {"id-only", NO_INTERFACES, "1234:0001"},
    {"port", HASP, "0529:0001 port 1-1"},
    {"empty-serial-left-out", HASP_EMPTY_SERIAL, "0529:0001 port 1-1"},
    {"serial-and-port", CODEMETER, "064f:2af9 serial \"3-1234567\" port 1-3.2"},
    {"serial-escaped", "0001:0002 serial='a\"b'", "0001:0002 serial \"a\\\"b\""},
    {"gateway", HASP_DONGLES1, "0529:0001 port 1-1 on gateway \"dongles1\""},
    {"gateway-without-port", "1234:0001 gateway=hv-01.example",
     "1234:0001 on gateway \"hv-01.example\""},
};

static void
test_describe_case(gconstpointer data)
{
    const DescribeCase *c = data;
    g_autoptr(PolicyDevice) device = policy_test_device_new(c->device);
    g_autoptr(PolicyDevice) copy = policy_device_copy(device);
    g_autofree gchar *got = policy_device_describe(device);
    g_autofree gchar *got_copy = policy_device_describe(copy);

    g_assert_cmpstr(got, ==, c->want);
    g_assert_cmpstr(got_copy, ==, c->want);
    g_assert_cmpstr(copy->gateway, ==, device->gateway);
    g_assert_true(copy->gateway == NULL || copy->gateway != device->gateway);
    g_assert_cmpuint(copy->interfaces->len, ==, device->interfaces->len);
    g_assert_true(copy->interfaces != device->interfaces);
}

/* policy_get_requirements / policy_requirement_is_met_by: what prepare
 * checks before a VM may start. */
typedef struct {
    const gchar *name;
    const gchar *vm;
    const gchar *uuid;
    const gchar *want_lines; /* the required rules' lines, comma separated */
    const gchar *device;     /* nullable: a device to test against the first one */
    gboolean met;
} RequirementCase;

#define REQ_POLICY                                                                                 \
    "deny with-interface 08:*:*\n"                                                                 \
    "assign id 0529:0001 via-port \"1-1\" to vm \"build-01\" required\n"                           \
    "assign id 0529:0001 to vm \"build-01\"\n"                                                     \
    "pool \"p\" vms \"cad-*\"\n"                                                                   \
    "assign id 0529:* to pool \"p\" required\n"                                                    \
    "assign id 0781:5567 to vm \"lab\" required\n"                                                 \
    "assign id 096e:* to vm-uuid \"" UUID "\" required\n"

static const RequirementCase requirement_cases[] = {
    {"literal-met", "build-01", NULL, "2", HASP, TRUE},
    {"literal-other-port", "build-01", NULL, "2", "0529:0001 if=ff:00:00 port=1-2", FALSE},
    {"optional-not-listed", "build-02", NULL, "", NULL, FALSE},
    {"pool-member", "cad-07", NULL, "5", "0529:0002 if=ff:00:00 port=1-2", TRUE},
    /* rule 3 gives every other 0529:0001 to build-01 before the pool rule */
    {"pool-earlier-rule-wins", "cad-07", NULL, "5", "0529:0001 if=ff:00:00 port=1-2", FALSE},
    {"denied-first", "lab", NULL, "6", STICK, FALSE},
    {"uuid-any-case", "anything", UUID_UPPER, "7", SMARTCARD, TRUE},
    {"uuid-other", "anything", UUID_OTHER, "", NULL, FALSE},
};

static void
test_requirement_case(gconstpointer data)
{
    const RequirementCase *c = data;
    g_autoptr(GError) error = NULL;
    g_autoptr(Policy) policy =
        policy_load_data(REQ_POLICY, strlen(REQ_POLICY), "r.rules", NULL, &error);
    g_autoptr(GArray) reqs = NULL;
    g_autoptr(GString) lines = g_string_new(NULL);

    g_assert_no_error(error);
    reqs = policy_get_requirements(policy, c->vm, c->uuid);
    for (guint i = 0; i < reqs->len; i++) {
        const PolicyRequirement *req = &g_array_index(reqs, PolicyRequirement, i);
        g_assert_cmpstr(req->file, ==, "r.rules");
        g_string_append_printf(lines, "%s%u", i > 0 ? "," : "", req->line);
    }
    g_assert_cmpstr(lines->str, ==, c->want_lines);
    if (c->device != NULL) {
        g_autoptr(PolicyDevice) device = policy_test_device_new(c->device);
        g_assert_cmpuint(reqs->len, >, 0);
        g_assert_cmpint(policy_requirement_is_met_by(
                            policy, &g_array_index(reqs, PolicyRequirement, 0), device),
                        ==, c->met);
    }
}

int
main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    for (guint i = 0; i < G_N_ELEMENTS(decide_cases); i++) {
        g_autofree gchar *path = g_strdup_printf("/policy/match/decide/%s", decide_cases[i].name);
        g_test_add_data_func(path, &decide_cases[i], test_decide_case);
    }
    for (guint i = 0; i < G_N_ELEMENTS(for_vm_cases); i++) {
        g_autofree gchar *path = g_strdup_printf("/policy/match/for-vm/%s", for_vm_cases[i].name);
        g_test_add_data_func(path, &for_vm_cases[i], test_for_vm_case);
    }
    for (guint i = 0; i < G_N_ELEMENTS(describe_cases); i++) {
        g_autofree gchar *path =
            g_strdup_printf("/policy/match/describe/%s", describe_cases[i].name);
        g_test_add_data_func(path, &describe_cases[i], test_describe_case);
    }
    for (guint i = 0; i < G_N_ELEMENTS(exports_cases); i++) {
        g_autofree gchar *path =
            g_strdup_printf("/policy/match/exports-to/%s", exports_cases[i].name);
        g_test_add_data_func(path, &exports_cases[i], test_exports_case);
    }
    g_test_add_func("/policy/match/for-vm/share", test_for_vm_share);
    g_test_add_func("/policy/match/for-vm/foreign-decision", test_for_vm_foreign_decision);
    g_test_add_func("/policy/match/names", test_names);
    g_test_add_func("/policy/match/metadata", test_metadata);
    for (guint i = 0; i < G_N_ELEMENTS(requirement_cases); i++) {
        g_autofree gchar *path =
            g_strdup_printf("/policy/match/requirements/%s", requirement_cases[i].name);
        g_test_add_data_func(path, &requirement_cases[i], test_requirement_case);
    }
    return g_test_run();
}
