/* GwBinder, table-driven: policies and events in, bindings (and intents)
 * out. The script language is binder-harness.h's. */
#include <string.h>

#include "binder-harness.h"

#define K1    "0529:0001@1-1"
#define K2    "0529:0001@1-2"
#define K3    "0529:0001@1-1.4"
#define STICK "0781:5567@1-3/08"

#define POOL "pool \"p\" vms \"vm-*\"\nassign id 0529:0001 to pool \"p\"\n"
/* a dongle server's rule: usbgwd serves these keys to gateway links */
#define EXPORT "export id 0529:* to gateway \"hv-*\"\n"

typedef struct {
    const gchar *name;
    const gchar *policies[3];  /* policy 0 is loaded at start; reload N picks one */
    const gchar *script;       /* lines */
    const gchar *want;         /* binder_harness_bindings() at the end */
    const gchar *want_log;     /* nullable: lines the intent log must contain, in order */
    const gchar *not_in_log;   /* nullable: a line the log must not contain */
    const gchar *want_claimed; /* nullable: the ids usbgwd holds at the end, in identity order */
    /* nullable: the wishes of this VM at the end, "WISH=STATE[@DEVICE]; …" */
    const gchar *wishes_of;
    const gchar *want_wishes;
} BinderCase;

/* allow metadata: CAD keys in a pool one-* VMs may join by asking; SafeNet
 * keys the win-* VMs may ask for; 0529:0009 denied */
#define META                                                                                       \
    "deny id 0529:0009\n"                                                                          \
    "pool \"cad\" vms \"cad-*\"\n"                                                                 \
    "assign id 0529:0001 to pool \"cad\"\n"                                                        \
    "allow metadata pool \"cad\" for vm \"one-*\"\n"                                               \
    "allow metadata id 0529:* for vm \"win-*\"\n"
#define SAFENET    "0529:0002@2-1"
#define SAFENET_SN "0529:0003#S1"
#define DENIED     "0529:0009@2-9"

static const BinderCase cases[] = {
    {
        .name = "cluster-held-elsewhere-is-not-leased",
        .policies = {POOL},
        .script = "elsewhere " K1 " hv-b/vm-9\narrive " K1 "\narrive " K2 "\nstart vm-1\n"
                  "start vm-2",
        .want = K1 "=- " K2 "=vm-1",
        .not_in_log = "bind " K1,
    },
    {
        .name = "cluster-taken-away-gives-another-key",
        .policies = {POOL},
        .script = "arrive " K1 "\narrive " K2 "\nstart vm-1\nelsewhere " K1 " hv-b/vm-9",
        .want = K1 "=- " K2 "=vm-1",
        .want_log =
            "bind " K1 " vm-1\nunbind " K1 " vm-1\nevent detach " K1 " vm-1\nbind " K2 " vm-1\n",
    },
    {
        .name = "cluster-freed-key-goes-to-the-waiting-vm",
        .policies = {POOL},
        .script = "arrive " K1 "\nelsewhere " K1 " hv-b/vm-9\nstart vm-1\nelsewhere " K1 " -",
        .want = K1 "=vm-1",
        .want_log = "bind " K1 " vm-1\n",
    },
    {
        .name = "cluster-holder-changes-stay-out",
        .policies = {POOL},
        .script = "arrive " K1 "\nelsewhere " K1 " hv-b/vm-9\nstart vm-1\nelsewhere " K1
                  " hv-c/vm-3\nreload 0\nleave " K1 "\narrive " K1,
        .want = K1 "=-",
        .not_in_log = "bind " K1,
    },
    {
        .name = "cluster-does-not-touch-assignments",
        .policies = {"assign id 0529:0001 to vm \"vm-1\"\n"},
        .script = "arrive " K1 "\nstart vm-1\nelsewhere " K1 " hv-b/vm-9",
        .want = K1 "=vm-1",
        .not_in_log = "unbind",
    },
    {
        .name = "wish-pool-joins-the-pool",
        .policies = {META},
        .script = "arrive " K1 "\narrive " K2 "\nwish one-7 pool=cad\nstart one-7\nstart cad-1\n"
                  "start cad-2",
        .want = K1 "=one-7 " K2 "=cad-1",
        .wishes_of = "one-7",
        .want_wishes = "pool \"cad\"=granted@" K1,
    },
    {
        .name = "wish-pool-after-start",
        .policies = {META},
        .script = "arrive " K1 "\nstart one-7\nwish one-7 pool=cad",
        .want = K1 "=one-7",
        .want_log = "bind " K1 " one-7\n",
    },
    {
        .name = "wish-pool-denied-for-other-vms",
        .policies = {META},
        .script = "arrive " K1 "\nwish win-1 pool=cad\nstart win-1\narrive " K2,
        .want = K1 "=- " K2 "=-",
        .want_log = "event wish-denied - win-1\n",
        .not_in_log = "bind ",
        .wishes_of = "win-1",
        .want_wishes = "pool \"cad\"=denied",
    },
    {
        .name = "wish-pool-denied-once",
        .policies = {META},
        .script =
            "wish win-1 pool=cad\nstart win-1\narrive " K1 "\nwish win-1 pool=cad\narrive " K2,
        .want = K1 "=- " K2 "=-",
        .not_in_log = "event wish-denied - win-1\nclaim " K1 "\nevent wish-denied",
    },
    {
        .name = "wish-pool-waits-for-a-free-key",
        .policies = {META},
        .script = "arrive " K1 "\nstart cad-1\nwish one-2 pool=cad\nstart one-2\nstop cad-1",
        .want = K1 "=one-2",
        .wishes_of = "one-2",
        .want_wishes = "pool \"cad\"=granted@" K1,
    },
    {
        .name = "wish-pool-no-key-free",
        .policies = {META},
        .script = "arrive " K1 "\nstart cad-1\nwish one-2 pool=cad\nstart one-2",
        .want = K1 "=cad-1",
        .wishes_of = "one-2",
        .want_wishes = "pool \"cad\"=waiting",
    },
    {
        .name = "wish-device-by-id",
        .policies = {META},
        .script = "arrive " SAFENET "\nwish win-1 id=0529:0002\nstart win-1",
        .want = SAFENET "=win-1",
        .want_claimed = SAFENET,
        .wishes_of = "win-1",
        .want_wishes = "id 0529:0002=granted@" SAFENET,
    },
    {
        .name = "wish-device-claimed-but-unbound-without-a-wish",
        .policies = {META},
        .script = "arrive " SAFENET "\nstart win-1",
        .want = SAFENET "=-",
        .want_claimed = SAFENET,
    },
    {
        .name = "wish-device-by-serial",
        .policies = {META},
        .script = "arrive " SAFENET "\narrive " SAFENET_SN "\nwish win-1 id=0529:0003#S1\n"
                  "start win-1",
        .want = SAFENET "=- " SAFENET_SN "=win-1",
    },
    {
        .name = "wish-device-wrong-serial-waits",
        .policies = {META},
        .script = "arrive " SAFENET_SN "\nwish win-1 id=0529:0003#S2\nstart win-1",
        .want = SAFENET_SN "=-",
        .not_in_log = "event wish-denied",
        .wishes_of = "win-1",
        .want_wishes = "id 0529:0003 serial \"S2\"=waiting",
    },
    {
        .name = "wish-device-denied-by-a-rule-above",
        .policies = {META},
        .script = "arrive " DENIED "\nwish win-1 id=0529:0009\nstart win-1",
        .want = DENIED "=-",
        .want_log = "event wish-denied - win-1\n",
        .wishes_of = "win-1",
        .want_wishes = "id 0529:0009=denied",
    },
    {
        .name = "wish-device-of-a-pool-denied",
        .policies = {META},
        .script = "arrive " K1 "\nwish win-1 id=0529:0001\nstart win-1",
        .want = K1 "=-",
        .want_log = "event wish-denied - win-1\n",
    },
    {
        .name = "wish-device-not-allowed-for-the-vm",
        .policies = {META},
        .script = "arrive " SAFENET "\nwish one-1 id=0529:0002\nstart one-1",
        .want = SAFENET "=-",
        .want_log = "event wish-denied - one-1\n",
    },
    {
        .name = "wish-device-no-rule-names-the-vm",
        .policies = {META},
        .script = "wish vm-1 id=1234:5678\nstart vm-1",
        .want = "",
        .want_log = "event wish-denied - vm-1\n",
    },
    {
        .name = "wish-device-first-asking-vm-takes-it",
        .policies = {META},
        .script = "arrive " SAFENET "\nwish win-1 id=0529:0002\nwish win-2 id=0529:0002\n"
                  "start win-2\nstart win-1\nstop win-2",
        .want = SAFENET "=win-1",
        .want_log = "bind " SAFENET " win-2\nunbind " SAFENET " win-2\nevent detach " SAFENET
                    " win-2\nbind " SAFENET " win-1\n",
    },
    {
        .name = "wish-withdrawn-unbinds",
        .policies = {META},
        .script = "arrive " SAFENET "\narrive " K1 "\nwish win-1 id=0529:0002\nstart win-1\n"
                  "wish one-1 pool=cad\nstart one-1\nwish win-1 -\nwish one-1 -",
        .want = K1 "=- " SAFENET "=-",
        .want_log = "unbind " SAFENET " win-1\nevent detach " SAFENET " win-1\n",
        .not_in_log = "bind " SAFENET " win-1\nunbind " K1,
    },
    {
        .name = "wish-changed-keeps-what-it-still-asks-for",
        .policies = {META},
        .script = "arrive " K1 "\narrive " SAFENET "\nwish one-1 pool=cad\nstart one-1\n"
                  "wish one-1 pool=cad,id=0529:0002",
        .want = K1 "=one-1 " SAFENET "=-",
        .not_in_log = "unbind " K1,
    },
    {
        .name = "wish-read-again-at-start",
        .policies = {META},
        .script = "arrive " SAFENET "\nwish win-1 id=0529:0002\nstart win-1\nstop win-1\n"
                  "wish win-1 -\nstart win-1",
        .want = SAFENET "=-",
        .wishes_of = "win-1",
        .want_wishes = "",
    },
    {
        .name = "wish-survives-a-restart",
        .policies = {META},
        .script = "arrive " K1 "\narrive " SAFENET "\nwish one-1 pool=cad\nwish win-1 "
                  "id=0529:0002\nstart one-1\nstart win-1\nrestart 7",
        .want = K1 "=one-1 " SAFENET "=win-1",
    },
    {
        .name = "wish-reload-takes-the-permission-away",
        .policies = {META, "pool \"cad\" vms \"cad-*\"\nassign id 0529:0001 to pool \"cad\"\n"},
        .script = "arrive " K1 "\nwish one-1 pool=cad\nstart one-1\nreload 1\nstart cad-1",
        .want = K1 "=cad-1",
        .want_log = "unbind " K1 " one-1\n",
        .wishes_of = "one-1",
        .want_wishes = "pool \"cad\"=denied",
    },
    {
        .name = "fixed-vm-before-start",
        .policies = {"assign id 0529:0001 to vm \"vm-1\"\n"},
        .script = "arrive " K1,
        .want = K1 "=vm-1",
        .want_log = "claim " K1 "\nbind " K1 " vm-1\n",
    },
    {
        .name = "fixed-vm-keeps-socket-on-stop",
        .policies = {"assign id 0529:0001 to vm \"vm-1\"\n"},
        .script = "arrive " K1 "\nstart vm-1\nstop vm-1",
        .want = K1 "=vm-1",
        .want_log = "event kept " K1 " vm-1\n",
        .not_in_log = "unbind " K1 " vm-1",
    },
    {
        .name = "glob-first-running-vm",
        .policies = {"assign id 0529:0001 to vm \"cad-*\"\n"},
        .script = "arrive " K1 "\nstart vm-1\nstart cad-2\nstart cad-1",
        .want = K1 "=cad-2",
    },
    {
        .name = "glob-moves-when-its-vm-stops",
        .policies = {"assign id 0529:0001 to vm \"cad-*\"\n"},
        .script = "arrive " K1 "\nstart cad-2\nstart cad-1\nstop cad-2",
        .want = K1 "=cad-1",
        .want_log = "unbind " K1 " cad-2\nevent detach " K1 " cad-2\nbind " K1 " cad-1\n",
    },
    {
        .name = "glob-waits-for-a-vm",
        .policies = {"assign id 0529:0001 to vm \"cad-*\"\n"},
        .script = "arrive " K1 "\nstart vm-1",
        .want = K1 "=-",
        .want_log = "claim " K1 "\n",
    },
    {
        .name = "uuid-target",
        .policies = {"assign id 0529:0001 to vm-uuid \"00000000-0000-4000-8000-000000000002\"\n"},
        .script = "arrive " K1 "\nstart vm-1\nstart vm-2",
        .want = K1 "=vm-2",
    },
    {
        .name = "pool-first-free-in-identity-order",
        .policies = {POOL},
        .script = "arrive " K2 "\narrive " K1 "\nstart vm-1\nstart vm-2\nstart vm-3",
        .want = K1 "=vm-1 " K2 "=vm-2",
    },
    {
        .name = "pool-key-goes-to-the-waiting-vm",
        .policies = {POOL},
        .script = "arrive " K1 "\narrive " K2 "\nstart vm-1\nstart vm-2\nstart vm-3\nstop vm-1",
        .want = K1 "=vm-3 " K2 "=vm-2",
    },
    {
        .name = "pool-vm-not-a-member",
        .policies = {"pool \"p\" vms \"cad-*\"\nassign id 0529:0001 to pool \"p\"\n"},
        .script = "arrive " K1 "\nstart vm-1",
        .want = K1 "=-",
    },
    {
        .name = "pool-key-arriving-late",
        .policies = {POOL},
        .script = "start vm-1\nstart vm-2\narrive " K2,
        .want = K2 "=vm-1",
    },
    {
        .name = "deny",
        .policies = {"deny id 0529:0001\nassign id 0529:0001 to vm \"vm-1\"\n"},
        .script = "arrive " K1 "\nstart vm-1",
        .want = K1 "=-",
        .want_log = "event deny " K1 "\n",
        .not_in_log = "claim " K1,
    },
    {
        .name = "no-rule-left-to-the-host",
        .policies = {"assign id 0529:0001 to vm \"vm-1\"\n"},
        .script = "arrive " STICK "\nstart vm-1",
        .want = STICK "=-",
        .not_in_log = "claim " STICK,
    },
    {
        .name = "assign-overrides-the-policy-and-leaves-the-pool",
        .policies = {POOL},
        .script = "arrive " K1 "\narrive " K2 "\nassign " K1 " vm-4\nstart vm-1",
        .want = K1 "=vm-4 " K2 "=vm-1",
        .want_log = "event assign " K1 " vm-4\nbind " K1 " vm-4\n",
    },
    {
        .name = "assign-moves-a-bound-device",
        .policies = {"assign id 0529:0001 to vm \"vm-1\"\n"},
        .script = "arrive " K1 "\nstart vm-1\nassign " K1 " vm-2",
        .want = K1 "=vm-2",
        .want_log = "unbind " K1 " vm-1\nevent detach " K1 " vm-1\nevent assign " K1
                    " vm-2\nbind " K1 " vm-2\n",
    },
    {
        .name = "release-hands-back-and-leaves-the-pool",
        .policies = {POOL},
        .script = "arrive " K1 "\nstart vm-1\nrelease " K1 "\nstop vm-1\nstart vm-2",
        .want = K1 "=-",
        .want_log =
            "unbind " K1 " vm-1\nevent detach " K1 " vm-1\nunclaim " K1 "\nevent release " K1 "\n",
    },
    {
        .name = "released-key-follows-the-policy-after-a-replug",
        .policies = {POOL},
        .script = "arrive " K1 "\nrelease " K1 "\nleave " K1 "\narrive " K1 "\nstart vm-1",
        .want = K1 "=vm-1",
    },
    {
        .name = "replug-keeps-the-binding",
        .policies = {"assign id 0529:0001 to vm \"vm-1\"\n"},
        .script = "arrive " K3 "\nstart vm-1\nleave " K3 "\narrive " K3,
        .want = K3 "=vm-1",
        .want_log = "bind " K3 " vm-1\nclaim " K3 "\nbind " K3 " vm-1\n",
        .not_in_log = "unbind",
    },
    {
        /* the reload bug: vm-2 held the second key while the first was
         * free; a first-free lease on reload gave it the first one too */
        .name = "reload-never-gives-a-vm-two-keys-of-a-pool",
        .policies = {POOL},
        .script = "arrive " K1 "\narrive " K2 "\nstart vm-1\nstart vm-2\nstop vm-1\nreload 0",
        .want = K1 "=- " K2 "=vm-2",
        .not_in_log = "bind " K1 " vm-2",
    },
    {
        .name = "reload-drops-what-the-new-policy-no-longer-gives",
        .policies = {"assign id 0529:0001 to vm \"vm-1\"\n",
                     "assign id 0529:0002 to vm \"vm-1\"\n"},
        .script = "arrive " K1 "\nstart vm-1\nreload 1",
        .want = K1 "=-",
        .want_log = "unbind " K1 " vm-1\nevent detach " K1 " vm-1\nunclaim " K1 "\n",
    },
    {
        .name = "reload-moves-a-fixed-device",
        .policies = {"assign id 0529:0001 to vm \"vm-1\"\n",
                     "assign id 0529:0001 to vm \"vm-2\"\n"},
        .script = "arrive " K1 "\nstart vm-1\nreload 1",
        .want = K1 "=vm-2",
    },
    {
        .name = "reload-hands-back-an-unbound-pool-key-without-a-rule",
        .policies = {POOL, "assign id 0529:0002 to vm \"vm-1\"\n"},
        .script = "arrive " K1 "\nreload 1",
        .want = K1 "=-",
        .want_log = "claim " K1 "\nunclaim " K1 "\n",
    },
    {
        .name = "reload-keeps-a-release",
        .policies = {"assign id 0529:0001 to vm \"vm-1\"\n"},
        .script = "arrive " K1 "\nrelease " K1 "\nreload 0",
        .want = K1 "=-",
        .not_in_log = "event release " K1 "\nclaim",
    },
    {
        .name = "failed-bind-drops-the-lease",
        .policies = {POOL},
        .script = "arrive " K1 "\nfail-bind vm-1\nstart vm-1\nstart vm-2",
        .want = K1 "=vm-2",
        .want_log = "bind " K1 " vm-1 failed\nbind " K1 " vm-2\n",
    },
    {
        .name = "restart-keeps-pool-leases",
        .policies = {POOL},
        .script = "arrive " K1 "\narrive " K2 "\nstart vm-1\nstart vm-2\nstart vm-3\nstop vm-1\n"
                  "restart 7",
        .want = K1 "=vm-3 " K2 "=vm-2",
    },
    {
        /* vm-3 comes back first after the restart: it may not take the
         * key vm-2 held before */
        .name = "restart-keeps-keys-for-vms-not-reported-yet",
        .policies = {POOL},
        .script = "arrive " K1 "\narrive " K2 "\nstart vm-1\nstart vm-2\nstop vm-1\nstart vm-3\n"
                  "restart 1\nrestart 2\nrestart 3",
        .want = K1 "=vm-3 " K2 "=vm-2",
    },
    {
        .name = "restart-keeps-glob-bindings",
        .policies = {"assign id 0529:0001 to vm \"cad-*\"\n"},
        .script = "arrive " K1 "\nstart cad-2\nstart cad-1\nrestart 5",
        .want = K1 "=cad-2",
    },
    {
        .name = "restart-keeps-a-release",
        .policies = {"assign id 0529:0001 to vm \"vm-1\"\n"},
        .script = "arrive " K1 "\nrelease " K1 "\nrestart",
        .want = K1 "=-",
    },
    {
        .name = "restart-keeps-an-assignment",
        .policies = {POOL},
        .script = "arrive " K1 "\nassign " K1 " vm-4\nrestart",
        .want = K1 "=vm-4",
    },
    /* export: claimed at once like a device whose VM does not run, bound to
     * no VM (usbgwd serves it to gateway links) */
    {
        .name = "export-claims-and-binds-to-no-vm",
        .policies = {EXPORT},
        .script = "arrive " K1 "\nstart vm-1\nstart hv-1\nstop vm-1",
        .want = K1 "=-",
        .want_log = "claim " K1 "\n",
        .not_in_log = "bind " K1,
        .want_claimed = K1,
    },
    {
        .name = "export-like-a-glob-whose-vm-does-not-run",
        .policies = {EXPORT "assign id 0529:0001 to vm \"cad-*\"\n",
                     "assign id 0529:0001 to vm \"cad-*\"\n"},
        .script = "arrive " K1 "\nreload 1\nreload 0",
        .want = K1 "=-",
        .not_in_log = "unclaim " K1,
        .want_claimed = K1,
    },
    {
        .name = "assign-before-export-binds",
        .policies = {"assign id 0529:0001 via-port \"1-1\" to vm \"vm-1\"\n" EXPORT},
        .script = "arrive " K1 "\narrive " K2 "\nstart vm-1\nstart vm-2",
        .want = K1 "=vm-1 " K2 "=-",
        .want_log = "claim " K2 "\n",
        .not_in_log = "bind " K2,
        .want_claimed = K1 " " K2,
    },
    {
        .name = "export-before-assign-binds-nothing",
        .policies = {EXPORT "assign id 0529:0001 to vm \"vm-1\"\n"},
        .script = "arrive " K1 "\nstart vm-1",
        .want = K1 "=-",
        .not_in_log = "bind " K1,
        .want_claimed = K1,
    },
    {
        .name = "deny-before-export-leaves-it-to-the-host",
        .policies = {"deny via-port \"1-1\"\n" EXPORT},
        .script = "arrive " K1 "\narrive " K2,
        .want = K1 "=- " K2 "=-",
        .not_in_log = "claim " K1,
        .want_claimed = K2,
    },
    {
        .name = "reload-from-assign-to-export-unbinds-and-keeps-the-claim",
        .policies = {"assign id 0529:0001 to vm \"vm-1\"\n", EXPORT},
        .script = "arrive " K1 "\nstart vm-1\nreload 1",
        .want = K1 "=-",
        .want_log = "bind " K1 " vm-1\nunbind " K1 " vm-1\n",
        .not_in_log = "unclaim " K1,
        .want_claimed = K1,
    },
    {
        .name = "reload-to-export-claims",
        .policies = {"assign id 0529:0002 to vm \"vm-1\"\n", EXPORT},
        .script = "arrive " K1 "\nreload 1",
        .want = K1 "=-",
        .want_log = "claim " K1 "\n",
        .want_claimed = K1,
    },
    {
        .name = "reload-from-export-to-no-rule-unclaims",
        .policies = {EXPORT, "assign id 0529:0002 to vm \"vm-1\"\n"},
        .script = "arrive " K1 "\nreload 1",
        .want = K1 "=-",
        .want_log = "claim " K1 "\nunclaim " K1 "\n",
        .want_claimed = "",
    },
    {
        .name = "export-released-by-an-admin",
        .policies = {EXPORT},
        .script = "arrive " K1 "\nrelease " K1 "\nreload 0",
        .want = K1 "=-",
        .want_log = "claim " K1 "\nunclaim " K1 "\nevent release " K1,
        .want_claimed = "",
    },
    {
        .name = "export-assigned-by-an-admin",
        .policies = {EXPORT},
        .script = "arrive " K1 "\nassign " K1 " vm-2\nrestart",
        .want = K1 "=vm-2",
        .want_claimed = K1,
    },
    {
        .name = "restart-keeps-an-export-claimed",
        .policies = {EXPORT},
        .script = "arrive " K1 "\nstart vm-1\nrestart 3",
        .want = K1 "=-",
        .not_in_log = "bind " K1,
        .want_claimed = K1,
    },
};

static gint
compare_ids(gconstpointer a, gconstpointer b)
{
    return strcmp(*(const gchar *const *)a, *(const gchar *const *)b);
}

/* "ID ID …": the ids the harness says usbgwd holds, in identity order. */
static gchar *
claimed_ids(BinderHarness *harness)
{
    g_autoptr(GPtrArray) ids = g_ptr_array_new();
    GHashTableIter iter;
    gpointer id;

    g_hash_table_iter_init(&iter, harness->claimed);
    while (g_hash_table_iter_next(&iter, &id, NULL))
        g_ptr_array_add(ids, id);
    g_ptr_array_sort(ids, compare_ids);
    g_ptr_array_add(ids, NULL);
    return g_strjoinv(" ", (gchar **)ids->pdata);
}

/* "pool \"p\"=granted@ID; id 0529:0002=denied": where @vm's wishes stand */
static gchar *
wishes_of(BinderHarness *harness, const gchar *vm)
{
    GPtrArray *items = gw_binder_get_wishes(harness->binder, vm);
    GString *out = g_string_new(NULL);

    for (guint i = 0; items != NULL && i < items->len; i++) {
        const GwBinderWish *item = g_ptr_array_index(items, i);
        g_autofree gchar *what = policy_wish_describe(item->wish);
        g_string_append_printf(out, "%s%s=%s", i > 0 ? "; " : "", what,
                               gw_binder_wish_state_to_string(item->state));
        if (item->device != NULL)
            g_string_append_printf(out, "@%s", item->device);
        /* where a wish stands always says why */
        g_assert_nonnull(item->reason);
    }
    return g_string_free(out, FALSE);
}

static void
test_binder_case(gconstpointer data)
{
    const BinderCase *c = data;
    g_autoptr(BinderHarness) harness = binder_harness_new(c->policies);
    g_auto(GStrv) lines = g_strsplit(c->script, "\n", -1);
    g_autofree gchar *bindings = NULL;
    g_autofree gchar *broken = NULL;

    for (guint i = 0; lines[i] != NULL; i++) {
        g_autoptr(GError) error = NULL;
        if (!binder_harness_run(harness, lines[i], &error))
            g_error("%s: %s", c->name, error->message);
        broken = binder_harness_check(harness);
        if (broken != NULL)
            g_error("%s: after '%s': %s\nintents:\n%s", c->name, lines[i], broken,
                    harness->log->str);
    }
    bindings = binder_harness_bindings(harness);
    if (g_strcmp0(bindings, c->want) != 0)
        g_error("%s: bindings '%s', want '%s'\nintents:\n%s", c->name, bindings, c->want,
                harness->log->str);
    if (c->want_log != NULL && strstr(harness->log->str, c->want_log) == NULL)
        g_error("%s: the intents lack\n%s\nintents:\n%s", c->name, c->want_log, harness->log->str);
    if (c->not_in_log != NULL && strstr(harness->log->str, c->not_in_log) != NULL)
        g_error("%s: the intents have '%s'\nintents:\n%s", c->name, c->not_in_log,
                harness->log->str);
    if (c->wishes_of != NULL) {
        g_autofree gchar *wishes = wishes_of(harness, c->wishes_of);
        if (g_strcmp0(wishes, c->want_wishes) != 0)
            g_error("%s: wishes of %s '%s', want '%s'\nintents:\n%s", c->name, c->wishes_of, wishes,
                    c->want_wishes, harness->log->str);
    }
    if (c->want_claimed != NULL) {
        g_autofree gchar *claimed = claimed_ids(harness);
        if (g_strcmp0(claimed, c->want_claimed) != 0)
            g_error("%s: claimed '%s', want '%s'\nintents:\n%s", c->name, claimed, c->want_claimed,
                    harness->log->str);
    }
}

/* prepare: a required rule vetoes a start only while no device can meet it */
static void
test_binder_requirements(void)
{
    const gchar *policies[] = {"assign id 0529:0001 to vm \"vm-1\" required\n", NULL};
    g_autoptr(BinderHarness) harness = binder_harness_new(policies);
    PolicyRequirement unmet = {0};

    g_assert_false(gw_binder_check_requirements(harness->binder, "vm-1",
                                                binder_harness_vm_uuid("vm-1"), &unmet));
    g_assert_cmpuint(unmet.line, ==, 1);
    g_assert_true(gw_binder_check_requirements(harness->binder, "vm-2",
                                               binder_harness_vm_uuid("vm-2"), &unmet));
    g_assert_true(binder_harness_run(harness, "arrive " K1, NULL));
    g_assert_true(gw_binder_check_requirements(harness->binder, "vm-1",
                                               binder_harness_vm_uuid("vm-1"), &unmet));
    /* an admin took it elsewhere: the requirement is unmet again */
    g_assert_true(binder_harness_run(harness, "assign " K1 " vm-2", NULL));
    g_assert_false(gw_binder_check_requirements(harness->binder, "vm-1",
                                                binder_harness_vm_uuid("vm-1"), &unmet));
}

/* the saved state names what outlives a restart, and only that */
static void
test_binder_save(void)
{
    const gchar *policies[] = {POOL "assign id 0529:0002 to vm \"vm-3\"\n", NULL};
    g_autoptr(BinderHarness) harness = binder_harness_new(policies);
    g_autoptr(GwBinderState) state = NULL;
    const gchar *script[] = {"arrive " K1,           "arrive " K2, "arrive 0529:0002@1-5",
                             "arrive 0529:0001@1-6", "start vm-1", "assign " K2 " vm-4",
                             "release 0529:0001@1-6"};

    for (guint i = 0; i < G_N_ELEMENTS(script); i++)
        g_assert_true(binder_harness_run(harness, script[i], NULL));
    state = gw_binder_save(harness->binder);
    g_assert_cmpuint(g_hash_table_size(state->leases), ==, 1);
    g_assert_cmpstr(g_hash_table_lookup(state->leases, K1), ==, "vm-1");
    g_assert_cmpuint(g_hash_table_size(state->assignments), ==, 1);
    g_assert_cmpstr(g_hash_table_lookup(state->assignments, K2), ==, "vm-4");
    g_assert_cmpuint(g_hash_table_size(state->released), ==, 1);
    g_assert_true(g_hash_table_contains(state->released, "0529:0001@1-6"));
}

int
main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    binder_harness_quiet_logs();
    for (guint i = 0; i < G_N_ELEMENTS(cases); i++) {
        g_autofree gchar *path = g_strdup_printf("/binder/%s", cases[i].name);
        g_test_add_data_func(path, &cases[i], test_binder_case);
    }
    g_test_add_func("/binder/requirements", test_binder_requirements);
    g_test_add_func("/binder/save", test_binder_save);
    return g_test_run();
}
