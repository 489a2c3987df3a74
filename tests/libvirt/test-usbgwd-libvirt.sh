#!/bin/bash
# usbgwd with a real libvirtd: the qemu.d hook, automatic attach, restart,
# veto and pools, checked by the guest's own answer to the key's challenge.
#
#   test-usbgwd-libvirt.sh SCENARIO GUEST_DIR WORK_DIR USBGWD USBGWCTL HOOK USBGW_SIM PEER
#
# Scenarios:
#   attach    virsh start → the hook says started → usbgwd hot-plugs the
#             key's redirdev → the guest answers the challenge with the
#             key's secret; a detach by someone else is recorded; virsh
#             destroy → detached, audit lines present
#   restart   kill -9 usbgwd while the VM runs; a new usbgwd re-plugs the
#             key and the guest answers again
#   required  a `required` rule whose key is absent: virsh start fails with
#             usbgwd's reason
#   pool      2 identical keys, 3 VMs of a pool: the third starts without a
#             key and gets one when another VM stops
#   hub       a serial-less key behind a hub (port 1-3.2): attached, and
#             its redirdev removed by someone else is recorded (the alias
#             of a port path with '.' used to go unmatched)
#   share     usbgwctl share → usbgwd hot-plugs the share's redirdevs;
#             usbgw-share lends the key over SPICE → the guest answers;
#             the lender stops and comes back → usbgwd re-plugs the
#             redirdev (libvirt's chardev does not reconnect) → the guest
#             answers again; virsh destroy ends the share (audit); a share
#             made while the VM is off is plugged in when it starts
#             (needs USBGW_SPICE_WORKER and USBGW_SHARE: the programs)
#   metadata  the VM asks for a key of a pool in its own libvirt metadata
#             (virsh metadata); an allow metadata rule grants it → the guest
#             answers; usbgwctl vms shows the wish granted. Then the VM's
#             metadata asks for a pool no rule allows (virsh metadata --live,
#             libvirt's metadata-change event): the wish is denied (log,
#             audit, usbgwctl vms) and the key it no longer asks for leaves
#   usb-none  a VM whose only USB controller is model='none': usbgwd says
#             it has no USB bus (log, audit, usbgwctl vms), the attach is
#             refused with that reason, and add-usb-controller=true puts a
#             qemu-xhci controller into its persistent definition; after a
#             restart of the VM the guest answers
#   opennebula  opennebula/deploy (the KVM driver's deploy wrapper) turns
#             the VM template's USBGW_POOL into usbgw metadata in an
#             OpenNebula-shaped deployment file of domain one-<ID>; the
#             domain is created from it (virsh create, as OpenNebula's
#             deploy does) → usbgwd attaches a pool key → the guest answers
#             (needs USBGW_ONE_DEPLOY: the wrapper)
#
# The simulated keys (usbgw-sim) live in a helper process; usbgwd gets its
# environment (UMOCKDEV_DIR, the preload), libvirtd and virsh do not.
# Exits 77 (skip) where the rig cannot run (not root, no libvirtd/QEMU).
set -euo pipefail

me=test-usbgwd-libvirt
# OpenNebula names its domains one-<ID>
[[ ${1:-} == opennebula ]] && LV_PREFIX=one-
[[ $# -eq 8 ]] || {
    echo "usage: $0 SCENARIO GUEST_DIR WORK_DIR USBGWD USBGWCTL HOOK USBGW_SIM PEER" >&2
    exit 2
}
scenario=$1 guest_dir=$2
# absolute: libvirtd runs the hook with cwd /
usbgwd=$(realpath "$4") usbgwctl_bin=$(realpath "$5") hook_bin=$(realpath "$6")
sim=$(realpath "$7") peer=$(realpath "$8")
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd -P)
work=$3/usbgwd-libvirt-$scenario
# Fixed paths: the hook wrapper stays byte-identical between runs, so a
# running libvirtd that already has it can be reused by the rig.
gw=/run/usbgw-test
HASP_SECRET=000102030405060708090a0b0c0d0e0f
HASP2_SECRET=101112131415161718191a1b1c1d1e1f
HUB_SECRET=202122232425262728292a2b2c2d2e2f
CHALLENGE=00112233445566778899aabbccddeeff

# shellcheck source-path=SCRIPTDIR source=libvirt-rig.sh
. "$here/libvirt-rig.sh"
if ! why=$(lv_prereqs); then
    echo "$me: SKIP: $why"
    exit 77
fi

now() { echo "$EPOCHREALTIME"; }
secs() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", b - a }'; }
names=() sim_pid='' gw_pid='' transient=''
fail() {
    echo "$me: FAIL: $*"
    for n in "${names[@]}"; do
        echo "--- console of $n:"
        tr -d '\r' <"$(lv_console "$n")" 2>/dev/null | grep -a 'USBGW' | tail -n 20 || true
    done
    # how each usbgwd run started (a restart's first claims), then the end
    echo "--- usbgwd log, the first 40 lines of each start:"
    grep -v 'cannot find handle' "$work/usbgwd.log" 2>/dev/null |
        awk '/usbgwd-Message: .*: policy .*rules/ { n = 0 } n++ < 40' || true
    echo "--- usbgwd log, the last 60 lines:"
    grep -v 'cannot find handle' "$work/usbgwd.log" 2>/dev/null | tail -n 60 || true
    exit 1
}
cleanup() {
    # a domain made with virsh create is the rig's to forget neither
    [[ -z $transient ]] || lv_virsh destroy "$transient" >/dev/null 2>&1 || true
    [[ -z $gw_pid ]] || kill "$gw_pid" 2>/dev/null || true
    [[ -z $sim_pid ]] || kill "$sim_pid" 2>/dev/null || true
    wait 2>/dev/null || true
    lv_teardown || echo "$me: the rig's teardown was incomplete (see above)"
}
trap cleanup EXIT

rm -rf "$work" "$gw"
mkdir -p "$work" "$gw"
bash "$here/../guest/build-guest.sh" "$guest_dir" >"$work/guest-build.log" 2>&1 ||
    { cat "$work/guest-build.log"; fail "the guest build failed"; }

cat >"$gw/usbgwd.conf" <<EOF
[usbgwd]
policy=$gw/policy
rundir=$gw/run
control-socket=$gw/control.sock
state=$gw/state.json
audit-log=$gw/audit.log
libvirt-uri=qemu:///system
EOF
# libvirt runs the hook with four arguments; the wrapper points it at the
# test's configuration (usbgw-hook takes --config only with six).
cat >"$gw/hook" <<EOF
#!/bin/sh
exec "$hook_bin" --config "$gw/usbgwd.conf" "\$@"
EOF
chmod 755 "$gw/hook"

export LV_LOG_DIR=$work/lv
lv_setup "$gw/hook" || fail "the rig's setup failed (message above)"

# The keys: hasp (1-1) and hasp2 (1-2), identical but for their secrets.
start_sim() {
    "$sim" --secret "hasp=$HASP_SECRET" --secret "hasp2=$HASP2_SECRET" --secret "hasp-hub=$HUB_SECRET" \
        --plug hasp --plug hasp2 $sim_extra \
        --control "$work/sim.sock" -- \
        sh -c 'env | grep -E "^(UMOCKDEV_DIR|LD_PRELOAD)=" >"$0.tmp" && mv "$0.tmp" "$0" && exec sleep 100000' \
        "$work/sim.env" >"$work/sim.log" 2>&1 &
    sim_pid=$!
    lv_wait_file "$work/sim.env" 'UMOCKDEV_DIR' 20 || fail "the simulator did not start"
}

start_usbgwd() {
    # shellcheck disable=SC2046
    env $(cat "$work/sim.env") "$usbgwd" --foreground --debug --config "$gw/usbgwd.conf" \
        >>"$work/usbgwd.log" 2>&1 &
    gw_pid=$!
    lv_wait_file "$work/usbgwd.log" 'libvirt qemu:///system connected' 30 ||
        fail "usbgwd did not connect to libvirt"
}

usbgwctl() { "$usbgwctl_bin" --socket "$gw/control.sock" "$@"; }

# define_vm NAME: the tiny guest asks every 2 s for the key's answer
define_vm() {
    names+=("$1")
    lv_define_guest "$1" "$(lv_new_uuid)" "$guest_dir" \
        "usbgw.dev=0529:0001 usbgw.challenge=$CHALLENGE usbgw.loop=2 usbgw.wait=60" ||
        fail "cannot define $1"
}

# answers NAME: the distinct answers the guest got so far
# Whole answers only: the guest may be writing the last line as it is read.
answers() {
    tr -d '\r' <"$(lv_console "$1")" |
        sed -n 's/^USBGW-ANSWER 0529:0001 .*response=\([0-9a-f]\{32\}\)$/\1/p' | sort -u
}

hasp_answer=$("$peer" --key-answer $HASP_SECRET $CHALLENGE)
hasp2_answer=$("$peer" --key-answer $HASP2_SECRET $CHALLENGE)
hub_answer=$("$peer" --key-answer $HUB_SECRET $CHALLENGE)
sim_extra=
[[ $scenario == hub ]] && sim_extra='--plug hasp-hub'
start_sim

case $scenario in
attach)
    name=$(lv_new_name attach)
    printf 'deny with-interface 08:*:*\nassign id 0529:0001 via-port "1-1" to vm "%s"\n' "$name" >"$gw/policy"
    start_usbgwd
    define_vm "$name"
    t0=$(now)
    lv_start "$name" || fail "cannot start $name"
    lv_wait_console "$name" '^USBGW-ANSWER 0529:0001 ' 120 || fail "the guest got no answer"
    t_answer=$(secs "$t0" "$(now)")
    [[ $(answers "$name") == "$hasp_answer" ]] ||
        fail "the guest's answer '$(answers "$name")' is not the key's ($hasp_answer)"
    # started hook → QEMU connected (usbgwd's own timestamps)
    t_hook=$(sed -n "s/^usbgw[a-z-]*-Message: \([0-9:.]*\): hook: vm \"$name\" started.*/\1/p" "$work/usbgwd.log" | head -n 1)
    t_peer=$(sed -n 's/^usbgw[a-z-]*-Message: \([0-9:.]*\): 0529:0001@1-1: peer connected.*/\1/p' "$work/usbgwd.log" | head -n 1)
    [[ -n $t_hook && -n $t_peer ]] || fail "no hook or peer line in usbgwd's log"
    hook_to_peer=$(python3 -c 'import sys
def s(t):
    h, m, x = t.split(":"); return int(h) * 3600 + int(m) * 60 + float(x)
print("%.3f" % (s(sys.argv[2]) - s(sys.argv[1])))' "$t_hook" "$t_peer")
    echo "$me: virsh start → guest answer: $t_answer s; started hook → QEMU connected: $hook_to_peer s"
    usbgwctl list | grep -Eq "^0529:0001@1-1 +attached +$name " || fail "list does not show the key attached"
    usbgwctl vms | grep -q "^$name " || fail "vms does not show $name"
    # someone unplugs it behind usbgwd's back: noticed and recorded
    lv_virsh detach-device-alias "$name" ua-usbgw-0529-0001-at-1-1 --live >/dev/null ||
        fail "virsh detach-device-alias failed"
    lv_wait_file "$gw/audit.log" '"event":"detach".*"reason":"redirdev removed outside usbgwd"' 20 ||
        fail "a detach by someone else was not recorded"
    lv_virsh destroy "$name" >/dev/null || fail "virsh destroy failed"
    lv_wait_file "$work/usbgwd.log" "vm \"$name\" stopped" 20 || fail "usbgwd did not see the stop"
    lv_wait_file "$work/usbgwd.log" '0529:0001@1-1: peer session ended' 20 || fail "the session did not end"
    grep -q "\"event\":\"attach\".*\"device\":\"0529:0001@1-1\".*\"vm\":\"$name\",\"uuid\":\"[0-9a-f-]*\"" "$gw/audit.log" ||
        fail "audit: no attach line with the VM and its UUID"
    grep -q "\"event\":\"detach\".*\"vm\":\"$name\"" "$gw/audit.log" || fail "audit: no detach line"
    usbgwctl list | grep -Eq '^0529:0001@1-1 +(bound|claimed) ' || fail "the key is not kept for its VM"
    ;;
restart)
    name=$(lv_new_name restart)
    printf 'assign id 0529:0001 via-port "1-1" to vm "%s"\n' "$name" >"$gw/policy"
    start_usbgwd
    define_vm "$name"
    lv_start "$name" || fail "cannot start $name"
    lv_wait_console "$name" '^USBGW-ANSWER 0529:0001 ' 120 || fail "the guest got no answer"
    kill -9 "$gw_pid"
    wait "$gw_pid" 2>/dev/null || true
    lv_wait_console "$name" '^USBGW-ERROR 0529:0001 ' 30 || fail "the guest still sees the key after kill -9"
    before=$(tr -d '\r' <"$(lv_console "$name")" | grep -c '^USBGW-ANSWER 0529:0001 ' || true)
    t0=$(now)
    start_usbgwd
    for _ in $(seq 300); do
        after=$(tr -d '\r' <"$(lv_console "$name")" | grep -c '^USBGW-ANSWER 0529:0001 ' || true)
        ((after > before)) && break
        sleep 0.1
    done
    ((after > before)) || fail "the key did not come back to the guest after the restart"
    echo "$me: usbgwd restart → guest answers again: $(secs "$t0" "$(now)") s"
    [[ $(answers "$name") == "$hasp_answer" ]] || fail "wrong answer after the restart: $(answers "$name")"
    grep -q 're-plugging' "$work/usbgwd.log" || fail "usbgwd did not re-plug the stale redirdev"
    ;;
hub)
    name=$(lv_new_name hub)
    printf 'assign id 0529:0001 via-port "1-3.2" to vm "%s"\n' "$name" >"$gw/policy"
    start_usbgwd
    define_vm "$name"
    lv_start "$name" || fail "cannot start $name"
    lv_wait_console "$name" '^USBGW-ANSWER 0529:0001 ' 120 || fail "the guest got no answer"
    [[ $(answers "$name") == "$hub_answer" ]] ||
        fail "the guest's answer '$(answers "$name")' is not the hub key's ($hub_answer)"
    alias=$(lv_virsh dumpxml "$name" | sed -n "s/.*<alias name='\(ua-usbgw-0529-0001-at-1-3_2[^']*\)'.*/\1/p" | head -n 1)
    [[ -n $alias ]] || fail "no redirdev alias for the key at 1-3.2 in the live XML"
    echo "$me: the key at 1-3.2 is attached as $alias"
    lv_virsh detach-device-alias "$name" "$alias" --live >/dev/null || fail "virsh detach-device-alias failed"
    lv_wait_file "$gw/audit.log" '"event":"detach","device":"0529:0001@1-3.2".*"reason":"redirdev removed outside usbgwd"' 20 ||
        fail "the removal of the hub key's redirdev was not recorded"
    lv_virsh destroy "$name" >/dev/null || fail "virsh destroy failed"
    ;;
required)
    name=$(lv_new_name required)
    printf 'assign id 1234:5678 to vm "%s" required\n' "$name" >"$gw/policy"
    start_usbgwd
    define_vm "$name"
    out=$(lv_virsh start "$name" 2>&1) && fail "the VM started without its required key"
    echo "$me: virsh start said: $out"
    grep -q 'requires a USB device' <<<"$out" || fail "virsh start does not show usbgwd's reason"
    grep -q '"event":"veto"' "$gw/audit.log" || fail "audit: no veto line"
    ;;
pool)
    a=$(lv_new_name pool-a) b=$(lv_new_name pool-b) c=$(lv_new_name pool-c)
    printf 'pool "p" vms "%spool-*"\nassign id 0529:0001 to pool "p"\n' "$LV_PREFIX" >"$gw/policy"
    start_usbgwd
    define_vm "$a"
    define_vm "$b"
    define_vm "$c"
    lv_start "$a" || fail "cannot start $a"
    lv_wait_console "$a" '^USBGW-ANSWER 0529:0001 ' 120 || fail "$a got no key"
    lv_start "$b" || fail "cannot start $b"
    lv_wait_console "$b" '^USBGW-ANSWER 0529:0001 ' 120 || fail "$b got no key"
    [[ "$(answers "$a") $(answers "$b")" == "$hasp_answer $hasp2_answer" ]] ||
        fail "the first VM should hold the first key (1-1), the second the other: $(answers "$a") / $(answers "$b")"
    lv_start "$c" || fail "the third VM did not start without a key"
    lv_wait_console "$c" '^USBGW-ROUND-END 2$' 120 || fail "$c's probe did not run"
    [[ -z $(answers "$c") ]] || fail "$c got a key although both are in use"
    lv_virsh destroy "$a" >/dev/null || fail "virsh destroy $a failed"
    lv_wait_console "$c" '^USBGW-ANSWER 0529:0001 ' 60 || fail "$c did not get the key $a gave back"
    [[ $(answers "$c") == "$hasp_answer" ]] || fail "$c's answer is not the returned key's"
    echo "$me: pool: $a and $b got a key each, $c got $a's when $a stopped"
    ;;
share)
    [[ -x ${USBGW_SPICE_WORKER:-} && -x ${USBGW_SHARE:-} ]] || {
        echo "$me: SKIP: built without the SPICE worker or usbgw-share"
        exit 77
    }
    name=$(lv_new_name share)
    printf 'deny with-interface 08:*:*\nshare id 0529:0001 user "alice" to vm "%s"\n' "$name" >"$gw/policy"
    spice_port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
    printf 'spice-port-base=%s\nspice-ports=1\nspice-channels=1\nspice-host=127.0.0.1\nspice-worker=%s\n' \
        "$spice_port" "$(realpath "$USBGW_SPICE_WORKER")" >>"$gw/usbgwd.conf"
    start_usbgwd
    define_vm "$name"
    lv_start "$name" || fail "cannot start $name"
    lv_wait_file "$work/usbgwd.log" "vm \"$name\" runs" 30 || fail "usbgwd did not see $name start"
    usbgwctl share "$name" --user alice --json >"$work/share.json" || fail "usbgwctl share failed"
    python3 -c 'import json, sys; print(json.load(open(sys.argv[1]))["ticket"])' "$work/share.json" >"$work/ticket"
    chmod 600 "$work/ticket"
    lv_wait_file "$work/usbgwd.log" "QEMU connected on $gw/run/vm/$name/share0.sock" 60 ||
        fail "libvirt did not plug the share's redirdev"
    lend() { # N: usbgw-share under the simulator's environment
        # shellcheck disable=SC2046
        env $(cat "$work/sim.env") SPICE_USB_ACL_BINARY="$here/../spice/fake-acl-helper.sh" \
            "$USBGW_SHARE" "spice://127.0.0.1:$spice_port" --ticket-file "$work/ticket" \
            --device 0529:0001 >"$work/share$1.log" 2>&1 &
        share_pid=$!
    }
    count() { tr -d '\r' <"$(lv_console "$name")" | grep -c '^USBGW-ANSWER 0529:0001 .*response=[0-9a-f]\{32\}$' || true; }
    t0=$(now)
    lend 1
    lv_wait_console "$name" '^USBGW-ANSWER 0529:0001 ' 60 || { cat "$work/share1.log"; fail "the guest got no answer from the lent key"; }
    echo "$me: usbgw-share started → guest answer: $(secs "$t0" "$(now)") s"
    # both simulated keys are 0529:0001; one channel takes one of them
    known() { for a in $(answers "$name"); do [[ $a == "$hasp_answer" || $a == "$hasp2_answer" ]] || return 1; done; }
    known || fail "the guest's answer is neither key's: $(answers "$name")"
    kill -TERM $share_pid
    wait $share_pid || fail "usbgw-share exited $? on SIGTERM"
    lv_wait_file "$gw/audit.log" '"event":"return"' 20 || fail "audit: no return line"
    lv_wait_file "$work/usbgwd.log" "QEMU connected on $gw/run/vm/$name/share0.sock" 60 || fail "no QEMU"
    # QEMU's chardev closed with the lending: usbgwd plugs a fresh redirdev
    for _ in $(seq 200); do
        (($(grep -c "QEMU connected on $gw/run/vm/$name/share0.sock" "$work/usbgwd.log") >= 2)) && break
        sleep 0.1
    done
    (($(grep -c "QEMU connected on $gw/run/vm/$name/share0.sock" "$work/usbgwd.log") >= 2)) ||
        fail "usbgwd did not re-plug the share's redirdev after the lending ended"
    before=$(count)
    lend 2
    for _ in $(seq 600); do
        (($(count) > before)) && break
        sleep 0.1
    done
    (($(count) > before)) || { cat "$work/share2.log"; fail "the key lent again did not reach the guest"; }
    known || fail "wrong answer after lending again: $(answers "$name")"
    echo "$me: lent, returned, re-plugged, lent again: the guest answered both times"
    lv_virsh destroy "$name" >/dev/null || fail "virsh destroy failed"
    lv_wait_file "$gw/audit.log" '"event":"unshare".*"reason":"vm stopped"' 20 || fail "audit: the share did not end with the VM"
    kill -TERM $share_pid 2>/dev/null || true
    wait $share_pid 2>/dev/null || true
    # a share made while the VM is off: plugged in when the VM starts
    usbgwctl share "$name" --user alice --json >"$work/share.json" || fail "usbgwctl share (VM off) failed"
    python3 -c 'import json, sys; print(json.load(open(sys.argv[1]))["ticket"])' "$work/share.json" >"$work/ticket"
    spice_port=$(python3 -c 'import json, sys; print(json.load(open(sys.argv[1]))["port"])' "$work/share.json")
    plugged=$(grep -c "QEMU connected on $gw/run/vm/$name/share0.sock" "$work/usbgwd.log")
    lv_start "$name" || fail "cannot start $name again"
    for _ in $(seq 300); do
        (($(grep -c "QEMU connected on $gw/run/vm/$name/share0.sock" "$work/usbgwd.log") > plugged)) && break
        sleep 0.1
    done
    (($(grep -c "QEMU connected on $gw/run/vm/$name/share0.sock" "$work/usbgwd.log") > plugged)) ||
        fail "the share made while the VM was off was not plugged in when it started"
    before=$(count)
    lend 3
    for _ in $(seq 600); do
        (($(count) > before)) && break
        sleep 0.1
    done
    (($(count) > before)) || { cat "$work/share3.log"; fail "the key lent to the restarted VM did not reach the guest"; }
    known || fail "wrong answer in the restarted VM: $(answers "$name")"
    echo "$me: a share made while the VM was off was plugged in at its start; the guest answered"
    kill -TERM $share_pid
    wait $share_pid || fail "usbgw-share exited $? on SIGTERM"
    ;;
metadata)
    name=$(lv_new_name meta)
    ns=http://usbgw.org/xmlns/usbgw/1.0
    # the pool's own VM glob names no VM of the test: only a wish joins it
    printf 'deny with-interface 08:*:*\npool "cad" vms "nobody-*"\nassign id 0529:0001 via-port "1-1" to pool "cad"\nallow metadata pool "cad" for vm "%smeta-*"\n' \
        "$LV_PREFIX" >"$gw/policy"
    start_usbgwd
    define_vm "$name"
    lv_virsh metadata "$name" "$ns" --key usbgw --config \
        --set '<devices><device pool="cad"/></devices>' >/dev/null || fail "virsh metadata --config failed"
    lv_start "$name" || fail "cannot start $name"
    lv_wait_console "$name" '^USBGW-ANSWER 0529:0001 ' 120 || fail "the guest that asked in its metadata got no answer"
    [[ $(answers "$name") == "$hasp_answer" ]] || fail "the guest's answer '$(answers "$name")' is not the key's"
    usbgwctl vms >"$work/vms.txt"
    grep -q "^ *wish pool \"cad\": granted (0529:0001@1-1)" "$work/vms.txt" ||
        { cat "$work/vms.txt"; fail "usbgwctl vms does not show the wish granted"; }
    grep -Eq "^$name +[0-9a-f-]+ +qemu-xhci +0529:0001@1-1" "$work/vms.txt" ||
        { cat "$work/vms.txt"; fail "usbgwctl vms does not show the USB bus and the key"; }
    # now it asks for a pool no rule lets it join: denied, and the key goes
    lv_virsh metadata "$name" "$ns" --key usbgw --live \
        --set '<devices><device pool="other"/></devices>' >/dev/null || fail "virsh metadata --live failed"
    lv_wait_file "$work/usbgwd.log" "vm \"$name\": metadata wish pool \"other\" denied: no 'allow metadata pool \"other\"' rule" 20 ||
        fail "usbgwd did not log the denied wish"
    lv_wait_file "$gw/audit.log" "\"event\":\"wish-denied\".*\"vm\":\"$name\"" 20 || fail "audit: no wish-denied line"
    lv_wait_file "$work/usbgwd.log" "0529:0001@1-1: unbound from vm \"$name\" \\(the VM's metadata no longer asks for it\\)" 20 ||
        fail "the key the VM no longer asks for was not unbound"
    usbgwctl vms | grep -q "^ *wish pool \"other\": denied" || fail "usbgwctl vms does not show the wish denied"
    echo "$me: metadata: a pool wish granted (the guest answered), a wish no rule allows denied"
    ;;
usb-none)
    name=$(lv_new_name nousb)
    printf 'assign id 0529:0001 via-port "1-1" to vm "%s"\n' "$name" >"$gw/policy"
    echo 'add-usb-controller=true' >>"$gw/usbgwd.conf"
    start_usbgwd
    define_vm "$name"
    # the domain's only USB controller becomes model='none': no USB bus
    lv_virsh dumpxml --inactive "$name" | python3 -c '
import re, sys
xml = sys.stdin.read()
xml, n = re.subn(r"<controller type=.usb.[^>]*?(/>|>.*?</controller>)",
                 "<controller type=\"usb\" index=\"0\" model=\"none\"/>", xml, count=1, flags=re.S)
assert n == 1
sys.stdout.write(xml)' >"$work/nousb.xml" || fail "cannot edit the domain XML"
    lv_virsh define "$work/nousb.xml" >/dev/null || fail "virsh define of the model=none domain failed"
    lv_start "$name" || fail "cannot start $name"
    lv_wait_file "$work/usbgwd.log" "vm \"$name\" has no USB controller a usb-redir device can be plugged into" 30 ||
        fail "usbgwd did not say the VM has no USB bus"
    lv_wait_file "$gw/audit.log" "\"event\":\"no-usb-bus\".*\"vm\":\"$name\"" 20 || fail "audit: no no-usb-bus line"
    lv_wait_file "$gw/audit.log" "\"event\":\"attach-failed\".*\"vm\":\"$name\".*no USB bus" 20 ||
        fail "audit: the refused attach does not say why"
    lv_wait_file "$gw/audit.log" "\"event\":\"usb-controller-added\".*\"vm\":\"$name\"" 20 ||
        fail "audit: no usb-controller-added line"
    usbgwctl vms >"$work/vms.txt"
    grep -Eq "^$name +[0-9a-f-]+ +NONE " "$work/vms.txt" || { cat "$work/vms.txt"; fail "usbgwctl vms does not show NONE"; }
    grep -q "usb controller: added <controller type='usb' model='qemu-xhci'/>" "$work/vms.txt" ||
        { cat "$work/vms.txt"; fail "usbgwctl vms does not show the added controller"; }
    lv_virsh dumpxml --inactive "$name" | grep -q "<controller type='usb' index='0' model='qemu-xhci'" ||
        fail "the persistent definition has no qemu-xhci controller"
    lv_virsh dumpxml "$name" | grep -q "<controller type='usb' index='0' model='none'" ||
        fail "the running domain changed (it should at its next start only)"
    # the next start has the bus: the key reaches the guest
    lv_virsh destroy "$name" >/dev/null || fail "virsh destroy failed"
    lv_wait_file "$work/usbgwd.log" "vm \"$name\" stopped" 20 || fail "usbgwd did not see the stop"
    lv_start "$name" || fail "cannot start $name again"
    lv_wait_console "$name" '^USBGW-ANSWER 0529:0001 ' 120 || fail "the guest got no answer after the restart"
    [[ $(answers "$name") == "$hasp_answer" ]] || fail "wrong answer: $(answers "$name")"
    echo "$me: usb-none: reported, a qemu-xhci controller added for the next start, then the guest answered"
    ;;
opennebula)
    [[ -x ${USBGW_ONE_DEPLOY:-} ]] || {
        echo "$me: SKIP: no USBGW_ONE_DEPLOY (opennebula/deploy)"
        exit 77
    }
    vmid=$((70000 + RANDOM))
    name=one-$vmid
    printf 'pool "cad" vms "cad-*"\nassign id 0529:0001 via-port "1-1" to pool "cad"\nallow metadata pool "cad" for vm "one-*"\n' >"$gw/policy"
    start_usbgwd
    # OpenNebula's KVM driver: the remotes directory with the wrapper as
    # deploy and the driver's own script beside it (here a stand-in that
    # does what it does with the domain: store it, virsh create)
    remotes=$work/remotes/vmm/kvm
    mkdir -p "$remotes"
    cp "$USBGW_ONE_DEPLOY" "$remotes/deploy"
    cat >"$remotes/deploy.one" <<'EOS'
#!/bin/bash
cat >"$1" && virsh --connect qemu:///system create "$1" >/dev/null &&
    virsh --connect qemu:///system domuuid "$(sed -n 's:.*<name>\(.*\)</name>.*:\1:p' "$1" | head -n 1)"
EOS
    chmod 755 "$remotes/deploy" "$remotes/deploy.one"
    vm_dir=$work/datastores/0/$vmid
    mkdir -p "$vm_dir"
    # what the driver writes before deploy: the VM (vm.xml) ...
    cat >"$vm_dir/vm.xml" <<EOS
<VM><ID>$vmid</ID><UID>0</UID><GID>0</GID><UNAME>oneadmin</UNAME><GNAME>oneadmin</GNAME><NAME>cad-desktop</NAME>
<TEMPLATE><CPU><![CDATA[1]]></CPU><MEMORY><![CDATA[512]]></MEMORY><VMID><![CDATA[$vmid]]></VMID></TEMPLATE>
<USER_TEMPLATE><USBGW_POOL><![CDATA[cad]]></USBGW_POOL><LOGO><![CDATA[images/logos/linux.png]]></LOGO></USER_TEMPLATE>
<HISTORY_RECORDS/></VM>
EOS
    # ... and the deployment file on stdin, shaped as OpenNebula writes it
    # (its own <metadata>, the tiny guest's kernel in place of the disks)
    kernel=$guest_dir/vmlinux
    [[ -s $kernel ]] || kernel=$guest_dir/vmlinuz
    : >"$(lv_console "$name")"
    cat >"$work/deployment.0" <<EOS
<domain type='qemu' xmlns:qemu='http://libvirt.org/schemas/domain/qemu/1.0'>
	<name>$name</name>
	<vcpu><![CDATA[1]]></vcpu>
	<cputune>
		<shares>1024</shares>
	</cputune>
	<memory>524288</memory>
	<os>
		<type arch='x86_64' machine='q35'>hvm</type>
		<kernel><![CDATA[$kernel]]></kernel>
		<initrd><![CDATA[$guest_dir/initrd.img]]></initrd>
		<cmdline><![CDATA[console=ttyS0 quiet panic=-1 usbgw.dev=0529:0001 usbgw.challenge=$CHALLENGE usbgw.loop=2 usbgw.wait=60]]></cmdline>
	</os>
	<on_poweroff>destroy</on_poweroff>
	<on_reboot>destroy</on_reboot>
	<devices>
		<serial type='file'>
			<source path='$(lv_console "$name")'/>
			<target port='0'/>
		</serial>
		<memballoon model='none'/>
	</devices>
	<features>
		<acpi/>
	</features>
	<metadata>
		<one:vm xmlns:one="http://opennebula.org/xmlns/libvirt/1.0">
			<one:system_datastore><![CDATA[$work/datastores/0/$vmid]]></one:system_datastore>
			<one:name><![CDATA[cad-desktop]]></one:name>
			<one:uname><![CDATA[oneadmin]]></one:uname>
			<one:uid>0</one:uid>
			<one:gname><![CDATA[oneadmin]]></one:gname>
			<one:gid>0</one:gid>
			<one:opennebula_version>6.8.0</one:opennebula_version>
			<one:stime>$(date +%s)</one:stime>
			<one:deployment_time>$(date +%s)</one:deployment_time>
		</one:vm>
	</metadata>
</domain>
EOS
    names+=("$name")
    transient=$name
    "$remotes/deploy" "$vm_dir/deployment.0" localhost <"$work/deployment.0" >"$work/deploy.out" 2>"$work/deploy.err" ||
        { cat "$work/deploy.err"; fail "the deploy wrapper failed"; }
    grep -Eq '^[0-9a-f-]{36}$' "$work/deploy.out" || fail "deploy printed no UUID: $(cat "$work/deploy.out")"
    lv_virsh metadata "$name" http://usbgw.org/xmlns/usbgw/1.0 | grep -q 'pool="cad"' ||
        fail "the domain has no usbgw metadata"
    lv_virsh metadata "$name" http://opennebula.org/xmlns/libvirt/1.0 | grep -q 'cad-desktop' ||
        fail "OpenNebula's own metadata was lost"
    lv_wait_console "$name" '^USBGW-ANSWER 0529:0001 ' 120 || fail "the OpenNebula VM got no answer"
    [[ $(answers "$name") == "$hasp_answer" ]] || fail "wrong answer: $(answers "$name")"
    usbgwctl vms | grep -q "^ *wish pool \"cad\": granted (0529:0001@1-1)" || fail "usbgwctl vms does not show the wish"
    echo "$me: opennebula: USBGW_POOL=cad → usbgw metadata → $name got the pool's key, the guest answered"
    ;;
*)
    fail "unknown scenario $scenario"
    ;;
esac
echo "$me: PASS: $scenario"
