#!/bin/bash
# Gateway links across hosts: two usbgwd instances, each in a network
# namespace of the rig (netns-rig.sh), one exporting a simulated key to the
# other over a TLS link, and the tiny QEMU guest on the importer checking
# the key's answer. One scenario per run:
#
#   test-links.sh SCENARIO USBGWD USBGW_SIM TEST_PEER USBGWCTL GUEST_DIR [MAKE_CERTS]
#
# Hosts: "dongles1" (10.77.<run>.1) runs usbgw-sim with the key and usbgwd
# with link-listen and an export rule, no libvirt; "hv1" (10.77.<run>.2) runs
# usbgwd with link-peers=dongles1@… and an assign rule for the imported key,
# no libvirt, on an empty usbgw-sim of its own (no local devices), and the
# guest, whose usb-redir chardev connects to hv1's socket for the key.
#
# Scenarios:
#   cross-host        the key answers in the guest on hv1; list, status and
#                     audit on both sides say where it comes from
#   refused-no-cert   hv1 dials without a certificate,
#   refused-other-ca  with one from another CA,
#   refused-expired   with an expired one: dongles1 refuses, both logs give
#                     the same reason, hv1's status says "refused"
#   refused-export    dongles1 exports nothing to hv1: both sides say so
#   cut-short         hv1's cable is pulled for 5 s while the guest probes
#                     in a loop: no unplug in the guest, no wrong answer
#   cut-long          link-grace=10, link-reattach-interval=20, a 30 s cut:
#                     the guest sees the key leave and come back >= 20 s later
#   kill-exporter     kill -9 usbgwd on dongles1 (kill-importer: on hv1) and
#                     restart it: the guest answers again, state.json and the
#                     audit log keep every earlier record
#   harness           no link: the guest on hv1 uses a key dongles1 serves to
#                     a local VM (a unix socket crosses namespaces); checks
#                     this script's own machinery (both gateways, the guest
#                     once and in a loop, a cut, kill -9 and restart, the
#                     record checks) with any usbgwd
#
# Certificates come from MAKE_CERTS (default: tests/link/make-certs.sh):
# `make-certs.sh DIR NAME…` writes DIR/ca-cert.pem, DIR/NAME-cert.pem and
# -key.pem, DIR/other-ca-cert.pem, DIR/foreign-cert.pem (the other CA's)
# and DIR/expired-cert.pem (the link CA's, expired), with their keys.
#
# Exit 77 (skip) when not root, without `ip netns`, python3, QEMU (for the
# scenarios with a guest) or the certificate script, and when usbgwd does
# not know gateway links (its config parser calls link-listen an unknown key).
set -euo pipefail
[ -n "${USBGW_TEST_TRACE:-}" ] && set -x

[ $# -ge 6 ] || {
    echo "usage: $0 SCENARIO USBGWD USBGW_SIM TEST_PEER USBGWCTL GUEST_DIR [MAKE_CERTS]" >&2
    exit 2
}
scenario=$1 usbgwd=$2 sim=$3 peer=$4 usbgwctl_bin=$5 guest_dir=$6
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd -P)
me="test-links $scenario"

# The key's secret: the guest's answer is checked against it.
HASP_SECRET=000102030405060708090a0b0c0d0e0f
CHALLENGE=00112233445566778899aabbccddeeff
KEY=0529:0001@1-1        # the key's identity on dongles1
IMPORTED=dongles1/$KEY   # and on hv1
LINK_PORT=7575

case $scenario in
cross-host | replug | cut-short | cut-long | kill-exporter | kill-importer | harness) with_guest=1 ;;
refused-no-cert | refused-other-ca | refused-expired | refused-export) with_guest=0 ;;
*)
    echo "$me: unknown scenario" >&2
    exit 2
    ;;
esac

fail() {
    echo "FAIL: $*" >&2
    exit 1
}
skip() {
    echo "SKIP: $*"
    exit 77
}

# write_conf DIR LINES…: DIR/usbgwd.conf, everything in DIR, no libvirt,
# and LINES
write_conf() {
    local dir=$1
    shift
    mkdir -p "$dir/pids"
    {
        echo '[usbgwd]'
        echo "control-socket=$dir/control.sock"
        echo "state=$dir/state.json"
        echo "audit-log=$dir/audit.log"
        echo 'libvirt-uri='
        echo "vm-pid-file=$dir/pids/{vm}.pid"
        printf '%s\n' "$@"
    } > "$dir/usbgwd.conf"
}

# --- outer run: prerequisites, then the rest under usbgw-sim ---------------
if [ -z "${USBGW_LINKS_INNER:-}" ]; then
    # shellcheck source-path=SCRIPTDIR source=netns-rig.sh
    . "$here/netns-rig.sh"
    why=$(rig_available) || skip "$why"
    command -v python3 >/dev/null || skip "python3 not found"
    certs_tool=${7:-}
    if [ "$scenario" = harness ]; then
        certs_tool=-
    elif [ -z "$certs_tool" ]; then
        for c in "$here/make-certs.sh" "$here/../link/make-certs.sh"; do
            [ -f "$c" ] && certs_tool=$c && break
        done
    fi
    [ "$certs_tool" = - ] || { [ -n "$certs_tool" ] && [ -f "$certs_tool" ]; } ||
        skip "no make-certs.sh (looked beside this script and in tests/link/)"
    if [ $with_guest = 1 ]; then
        command -v qemu-system-x86_64 >/dev/null || skip "qemu-system-x86_64 not found"
    fi

    # Does this usbgwd know gateway links? Its config parser warns "unknown
    # key 'link-listen' in [usbgwd] ignored" when it does not; one that
    # knows the key starts, or stops at the missing certificates: either way
    # no such warning.
    [ "$scenario" = harness ] && links_probe=0 || links_probe=1
    probe=$(mktemp -d /tmp/usbgw-links-probe.XXXXXX)
    write_conf "$probe" "link-listen=127.0.0.1:$LINK_PORT"
    : > "$probe/policy"
    # a network namespace of its own: the port is free, nothing is reachable
    unshare --net timeout -k 2 10 "$usbgwd" --foreground --policy "$probe/policy" \
        --rundir "$probe/run" --config "$probe/usbgwd.conf" > "$probe/log" 2>&1 &
    probe_pid=$!
    for _ in $(seq $((100 * links_probe))); do
        grep -q "unknown key 'link-listen'" "$probe/log" && break
        kill -0 $probe_pid 2>/dev/null || break
        "$usbgwctl_bin" --socket "$probe/control.sock" status > /dev/null 2>&1 && break
        sleep 0.05
    done
    kill -TERM $probe_pid 2>/dev/null || true
    wait $probe_pid 2>/dev/null || true
    if grep -q "unknown key 'link-listen'" "$probe/log"; then
        rm -rf "$probe"
        skip "usbgwd has no gateway links"
    fi
    rm -rf "$probe"

    work=$(mktemp -d /tmp/usbgw-links.XXXXXX)
    trap 'rm -rf "$work"' EXIT
    export USBGW_LINKS_INNER=$work USBGW_LINKS_CERTS_TOOL=$certs_tool
    status=0
    "$sim" --secret "hasp=$HASP_SECRET" --plug hasp --control "$work/sim.sock" \
        -- bash "$0" "$@" || status=$?
    if [ $status -ne 0 ] && [ $status -ne 77 ]; then
        for f in dongles1/usbgwd.log dongles1/audit.log hv1/usbgwd.log hv1/audit.log console.log; do
            [ -f "$work/$f" ] || continue
            echo "--- $f"
            tr -d '\r' < "$work/$f" | tail -n 200
        done
    fi
    exit $status
fi

# --- inner run: under usbgw-sim, which owns the key ------------------------
work=$USBGW_LINKS_INNER
certs=$work/certs
# shellcheck source-path=SCRIPTDIR source=netns-rig.sh
. "$here/netns-rig.sh"
rig_host dongles1 1 || fail "rig_host dongles1"
rig_host hv1 2 || fail "rig_host hv1"
ip_a=$(rig_ip dongles1)
echo "$me: rig run $RIG_RUN: dongles1 $ip_a, hv1 $(rig_ip hv1)"

# hv1 must not see dongles1's simulated key as a local device: its
# processes run without this sim's umockdev preload (hv1's usbgwd gets a
# usbgw-sim of its own without keys: only its hubs)
clean_preload=$(tr ':' '\n' <<<"${LD_PRELOAD:-}" | grep -v 'libumockdev-preload' | paste -sd: -)
clean_env=(env -u UMOCKDEV_DIR -u USBGW_SIM_REEXEC "LD_PRELOAD=$clean_preload")

if [ "$scenario" != harness ]; then
    bash "$USBGW_LINKS_CERTS_TOOL" "$certs" dongles1 hv1 > "$work/certs.log" 2>&1 ||
        { cat "$work/certs.log"; fail "make-certs.sh $certs dongles1 hv1"; }
    for f in ca-cert.pem dongles1-cert.pem dongles1-key.pem hv1-cert.pem hv1-key.pem \
        other-ca-cert.pem foreign-cert.pem foreign-key.pem expired-cert.pem expired-key.pem; do
        [ -s "$certs/$f" ] || fail "make-certs.sh wrote no $certs/$f"
    done
fi

# --- configuration ---------------------------------------------------------

export_to='hv*'
[ "$scenario" = refused-export ] && export_to='hv-other-*'
write_conf "$work/dongles1" "link-listen=$ip_a:$LINK_PORT" "link-cert=$certs/dongles1-cert.pem" \
    "link-key=$certs/dongles1-key.pem" "link-ca=$certs/ca-cert.pem"
printf 'export id 0529:* to gateway "%s"\n' "$export_to" > "$work/dongles1/policy"

b_cred=("link-cert=$certs/hv1-cert.pem" "link-key=$certs/hv1-key.pem" "link-ca=$certs/ca-cert.pem")
case $scenario in
refused-no-cert) b_cred=("link-ca=$certs/ca-cert.pem") ;;
# a gateway of another cluster: its certificate and CA are the other CA's
refused-other-ca) b_cred=("link-cert=$certs/foreign-cert.pem" "link-key=$certs/foreign-key.pem"
    "link-ca=$certs/other-ca-cert.pem") ;;
refused-expired) b_cred=("link-cert=$certs/expired-cert.pem" "link-key=$certs/expired-key.pem"
    "link-ca=$certs/ca-cert.pem") ;;
esac
b_timing=()
case $scenario in
cut-long) b_timing=(link-grace=10 link-reattach-interval=20) ;;
kill-exporter | kill-importer) b_timing=(link-grace=5 link-reattach-interval=2) ;;
esac
write_conf "$work/hv1" "link-peers=dongles1@$ip_a:$LINK_PORT" \
    ${b_cred[@]+"${b_cred[@]}"} ${b_timing[@]+"${b_timing[@]}"}
echo 'assign id 0529:0001 on gateway "dongles1" to vm "test-vm"' > "$work/hv1/policy"
if [ "$scenario" = harness ]; then
    write_conf "$work/dongles1"
    echo 'assign id 0529:0001 to vm "test-vm"' > "$work/dongles1/policy"
    write_conf "$work/hv1"
    : > "$work/hv1/policy"
fi

# --- helpers -----------------------------------------------------------------
ctl() { # HOST ARGS…: usbgwctl against HOST's usbgwd
    "$usbgwctl_bin" --socket "$work/$1/control.sock" "${@:2}"
}

# jget EXPR: evaluates the Python expression EXPR over the JSON document d
# read from stdin; prints strings as they are, anything else as JSON
jget() {
    python3 -c '
import json, sys
d = json.load(sys.stdin)
r = eval(sys.argv[1])
print(r if isinstance(r, str) else json.dumps(r))' "$1"
}

# link HOST PEER FIELD: FIELD of HOST's link to PEER in `usbgwctl --json
# status` ("none" when there is no such link, "null" for a null member)
link() {
    ctl "$1" --json status 2>/dev/null |
        jget "next((l.get('$3') for l in d.get('links') or [] if l.get('peer') == '$2'), 'none')" 2>/dev/null
}

# imported FIELD: FIELD of hv1's device from dongles1 in `usbgwctl --json
# list` ("none" without one)
imported() {
    ctl hv1 --json list 2>/dev/null |
        jget "next((x.get('$1') for x in d['devices'] if x.get('gateway') == 'dongles1'), 'none')" 2>/dev/null
}

# wait_until SECONDS WHAT CMD…: polls CMD until it succeeds
wait_until() {
    local end=$((SECONDS + $1)) what=$2 limit=$1
    shift 2
    until "$@"; do
        ((SECONDS < end)) || fail "$what: not within $limit s"
        sleep 0.2
    done
}
link_is() { [ "$(link "$1" "$2" state)" = "$3" ]; }
has_imported() { [ "$(imported id)" = "$IMPORTED" ]; }
a_lists_key() { ctl dongles1 --json list 2>/dev/null | jget "[x['id'] for x in d['devices']]" 2>/dev/null | grep -q "\"$KEY\""; }

# audit HOST PYTHON-CONDITION [ARG]: prints HOST's audit records (one JSON
# per line) for which the condition over e (and arg) holds
audit() {
    python3 -c '
import json, sys
arg = sys.argv[3] if len(sys.argv) > 3 else None
for line in open(sys.argv[1]):
    e = json.loads(line)
    if eval(sys.argv[2]):
        print(line, end="")' "$work/$1/audit.log" "${@:2}"
}
# audited HOST PYTHON-CONDITION [ARG]: HOST's audit log has such a record
audited() { [ -n "$(audit "$@" 2>/dev/null)" ]; }

# start_gw HOST: starts HOST's usbgwd (dongles1: under this script's sim,
# which has the key; hv1: under an empty sim of its own) in HOST's
# namespace; gw_pid[HOST] is usbgwd's pid. Ready when it answers on its
# control socket (dongles1: and lists the key).
declare -A gw_pid=() gw_job=()
start_gw() {
    local host=$1 dir=$work/$1 run_gw
    run_gw=(sh -c 'echo $$ > "$0" && exec "$@"' "$dir/pid" "$usbgwd" --foreground
        --policy "$dir/policy" --rundir "$dir/run" --config "$dir/usbgwd.conf")
    rm -f "$dir/pid"
    # gw_job: the background job (a subshell around rig_exec); it exits
    # with usbgwd's status (hv1: the empty sim passes it on)
    if [ "$host" = dongles1 ]; then
        rig_exec "$host" "${run_gw[@]}" >> "$dir/usbgwd.log" 2>&1 &
    else
        rig_exec "$host" "${clean_env[@]}" "$sim" --control "$dir/sim.sock" -- "${run_gw[@]}" \
            >> "$dir/usbgwd.log" 2>&1 &
    fi
    gw_job[$host]=$!
    for _ in $(seq 200); do
        [ -s "$dir/pid" ] && break
        sleep 0.05
    done
    [ -s "$dir/pid" ] || fail "$host: usbgwd did not start"
    gw_pid[$host]=$(cat "$dir/pid")
    for _ in $(seq 200); do
        if ctl "$host" status > /dev/null 2>&1 && { [ "$host" != dongles1 ] || a_lists_key; }; then
            return 0
        fi
        kill -0 "${gw_pid[$host]}" 2>/dev/null || fail "$host: usbgwd exited at start"
        sleep 0.05
    done
    fail "$host: usbgwd not ready within 10 s"
}

# stop_gw HOST: SIGTERM, and usbgwd must exit 0
stop_gw() {
    local host=$1 rc=0
    kill -TERM "${gw_pid[$host]}"
    wait "${gw_job[$host]}" || rc=$?
    [ $rc -eq 0 ] || fail "$host: usbgwd exited with status $rc on SIGTERM"
    gw_pid[$host]=''
}

# kill_gw HOST: kill -9 usbgwd
kill_gw() {
    local host=$1
    kill -KILL "${gw_pid[$host]}"
    wait "${gw_job[$host]}" 2>/dev/null || true
    gw_pid[$host]=''
}

# sim_cmd COMMAND: to dongles1's usbgw-sim (plug/unplug its key)
sim_cmd() {
    python3 "$here/../sim/sim-cmd.py" "$work/sim.sock" "$1"
}

# log_has HOST FIXED-STRING
log_has() { grep -qF -- "$2" "$work/$1/usbgwd.log"; }

# --- the guest on hv1 ----------------------------------------------------------
console=$work/console.log
qemu_job=''
answer=$("$peer" --key-answer $HASP_SECRET $CHALLENGE)
if [ $with_guest = 1 ]; then
    bash "$here/../guest/build-guest.sh" "$guest_dir" > "$work/guest-build.log" 2>&1 ||
        { cat "$work/guest-build.log"; fail "guest build"; }
fi

# guest APPEND CHARDEV-OPTIONS [background]: boots the guest in hv1 with a
# usb-redir chardev on the key's socket there (or on $guest_sock);
# foreground: waits for it
guest_sock=''
guest() {
    local sock=$guest_sock
    [ -n "$sock" ] || sock=$(imported socket)
    [ -n "$sock" ] && [ "$sock" != none ] && [ "$sock" != null ] ||
        fail "hv1 lists no socket for $IMPORTED: $(ctl hv1 --json list)"
    : > "$console"
    if [ "${3:-}" = background ]; then
        rig_exec hv1 "${clean_env[@]}" USBGW_GUEST_APPEND="$1" USBGW_GUEST_TIMEOUT=900 \
            bash "$here/../guest/run-guest.sh" "$guest_dir" \
            -chardev "socket,id=ur0,path=$sock$2" -device usb-redir,chardev=ur0,bus=xhci.0 \
            -monitor "unix:$work/monitor.sock,server=on,wait=off" < /dev/null > "$console" 2>&1 &
        qemu_job=$!
    else
        rig_exec hv1 "${clean_env[@]}" USBGW_GUEST_APPEND="$1" \
            bash "$here/../guest/run-guest.sh" "$guest_dir" \
            -chardev "socket,id=ur0,path=$sock$2" -device usb-redir,chardev=ur0,bus=xhci.0 \
            < /dev/null > "$console" 2>&1 || fail "the guest failed (status $?)"
    fi
}

# guest_shutdown: ACPI power-off of the looping guest, QEMU must exit 0
guest_shutdown() {
    local rc=0
    python3 "$here/../guest/qemu-hmp.py" "$work/monitor.sock" system_powerdown > /dev/null ||
        fail "system_powerdown"
    for _ in $(seq 300); do
        kill -0 "$qemu_job" 2>/dev/null || break
        sleep 0.1
    done
    kill -0 "$qemu_job" 2>/dev/null && fail "the guest ignored the ACPI shutdown"
    wait "$qemu_job" || rc=$?
    qemu_job=''
    [ $rc -eq 0 ] || fail "QEMU exited with status $rc"
}

# rounds: one line per complete round of the looping probe for the key:
# "N ok", "N wrong RESPONSE", "N gone REASON" (not found, or present but
# not configured: the key left or is re-enumerating) or "N error REASON"
rounds() {
    python3 - "$console" "$answer" <<'PY'
import re, sys
text = open(sys.argv[1], "rb").read().decode(errors="replace").replace("\r", "")
want = sys.argv[2]
for m in re.finditer(r"^USBGW-ROUND (\d+)\n(.*?)^USBGW-ROUND-END \1$", text, re.S | re.M):
    n, body = m.group(1), m.group(2)
    a = re.search(r"^USBGW-ANSWER 0529:0001 .*response=([0-9a-f]+)$", body, re.M)
    e = re.search(r"^USBGW-ERROR 0529:0001 (.*)$", body, re.M)
    if a:
        print(n, "ok" if a.group(1) == want else "wrong " + a.group(1))
    elif e and re.match(r"(not found|present but not configured)", e.group(1)):
        print(n, "gone", e.group(1))
    elif e:
        print(n, "error", e.group(1))
    else:
        print(n, "error no line for the key")
PY
}
last_round() { rounds | tail -n1 | awk '{ print $1 + 0 }'; }
# count KIND [AFTER]: rounds of KIND numbered above AFTER
count() { rounds | awk -v k="$1" -v a="${2:-0}" '$1 > a && $2 == k' | wc -l; }
# first ROUND-KIND AFTER: the first round of that kind above AFTER, or empty
first() { rounds | awk -v k="$1" -v a="$2" '$1 > a && $2 == k { print $1; exit }'; }
ok_after() { [ "$(count ok "$1")" -ge "${2:-1}" ]; }
gone_after() { [ -n "$(first gone "$1")" ]; }

# ts ISO-TIME: seconds since the epoch
ts() { python3 -c 'import datetime, sys; print(datetime.datetime.fromisoformat(sys.argv[1].replace("Z", "+00:00")).timestamp())' "$1"; }

# snapshot HOST: keeps HOST's state.json and audit log as they are now
snapshot() {
    cp "$work/$1/state.json" "$work/$1/state.before" 2>/dev/null || echo '{}' > "$work/$1/state.before"
    cp "$work/$1/audit.log" "$work/$1/audit.before"
}
# kept HOST: every record of the snapshot is still there: the audit log
# begins with the old one and grew; state.json has every member (and, for
# objects, every key) the old one had
kept() {
    local host=$1 dir=$work/$1 old_lines new_lines
    old_lines=$(wc -l < "$dir/audit.before")
    new_lines=$(wc -l < "$dir/audit.log")
    [ "$new_lines" -gt "$old_lines" ] || fail "$host: the audit log did not grow ($old_lines -> $new_lines lines)"
    cmp -s "$dir/audit.before" <(head -c "$(stat -c %s "$dir/audit.before")" "$dir/audit.log") ||
        fail "$host: the audit log lost or changed earlier records"
    python3 - "$dir/state.before" "$dir/state.json" <<'PY' || fail "$host: state.json lost records"
import json, sys
old, new = (json.load(open(p)) for p in sys.argv[1:3])
def lost(o, n, path):
    if isinstance(o, dict) and isinstance(n, dict):
        for k in o:
            if k not in n:
                yield path + "/" + k
            else:
                yield from lost(o[k], n[k], path + "/" + k)
    elif isinstance(o, list) and isinstance(n, list) and len(n) < len(o):
        yield path + " (%d -> %d entries)" % (len(o), len(n))
missing = list(lost(old, new, ""))
if missing:
    print("missing:", ", ".join(missing), file=sys.stderr)
    print("before:", json.dumps(old), file=sys.stderr)
    print("after:", json.dumps(new), file=sys.stderr)
    sys.exit(1)
PY
    echo "$me: $host kept its records: audit $old_lines -> $new_lines lines, state.json a superset"
}

loop="usbgw.loop=1 usbgw.dev=0529:0001 usbgw.challenge=$CHALLENGE"

# --- both gateways up, the link up -------------------------------------------
start_gw dongles1
case $scenario in
refused-no-cert | refused-expired)
    # usbgwd itself never dials with no or an expired certificate of its
    # own: it says which and does not start
    rc=0
    rig_exec hv1 "${clean_env[@]}" timeout 20 "$usbgwd" --foreground --policy "$work/hv1/policy" \
        --rundir "$work/hv1/run" --config "$work/hv1/usbgwd.conf" > "$work/hv1/usbgwd.log" 2>&1 || rc=$?
    [ $rc -ne 0 ] && [ $rc -ne 124 ] || fail "hv1's usbgwd started (status $rc) with a bad certificate of its own"
    case $scenario in
    refused-no-cert) grep -q 'need link-cert, link-key and link-ca' "$work/hv1/usbgwd.log" ||
        fail "hv1 does not say its certificate is missing: $(cat "$work/hv1/usbgwd.log")" ;;
    refused-expired) grep -q 'expired' "$work/hv1/usbgwd.log" ||
        fail "hv1 does not say its certificate expired: $(cat "$work/hv1/usbgwd.log")" ;;
    esac
    echo "$me: hv1 refused to start: $(grep -m1 -E 'link-cert|expired' "$work/hv1/usbgwd.log")"
    ;;
*) start_gw hv1 ;;
esac

case $scenario in
harness)
    # the key as dongles1 serves it to its own "test-vm"; hv1 has nothing
    guest_sock=$(ctl dongles1 --json list | jget "next(x['socket'] for x in d['devices'] if x['id'] == '$KEY')")
    # (an empty usbgw-sim still has its hubs)
    [ "$(ctl hv1 --json list | jget "len([x for x in d['devices'] if x['id'].startswith('0529:')])")" = 0 ] ||
        fail "hv1 has a key of its own: $(ctl hv1 list)"
    audited dongles1 "e.get('event') == 'attach' and e.get('device') == arg" "$KEY" ||
        fail "no attach of $KEY in dongles1's audit log"
    guest "usbgw.dev=0529:0001 usbgw.challenge=$CHALLENGE" ''
    got=$(tr -d '\r' < "$console" | sed -n 's/^USBGW-ANSWER 0529:0001 .*response=//p')
    [ "$got" = "$answer" ] || { tr -d '\r' < "$console"; fail "the guest's answer '$got', the secret's '$answer'"; }
    echo "$me: the guest in hv1 answered $got through dongles1's socket"
    guest "$loop" ',reconnect=1' background
    wait_until 90 "two right answers in the guest" ok_after 0 2
    rig_cut hv1
    ! rig_ping hv1 "$ip_a" 1 2>/dev/null || fail "hv1 reaches dongles1 during the cut"
    rig_restore hv1
    rig_ping hv1 "$ip_a" 5 || fail "hv1 does not reach dongles1 after the restore"
    snapshot dongles1
    r_kill=$(last_round)
    kill_gw dongles1
    sleep 1
    start_gw dongles1
    wait_until 60 "the key answering in the guest again" ok_after $((r_kill + 1))
    echo "$me: after kill -9 and restart the guest answers again; rounds:$(rounds | awk -v a="$r_kill" '$1 > a { printf " %s", $2 }')"
    [ "$(count wrong)" -eq 0 ] || fail "wrong answers: $(rounds | grep wrong)"
    kept dongles1
    guest_shutdown
    stop_gw hv1
    stop_gw dongles1
    echo "PASS: $scenario"
    exit 0
    ;;
refused-export) ;;
refused-no-cert | refused-expired | refused-other-ca)
    # dongles1 refuses the dialer and names the reason in its log and audit
    # trail; the dialer learns the same reason (REFUSE over TLS) or, for a
    # gateway of another cluster, refuses dongles1 in turn
    if [ "$scenario" = refused-other-ca ]; then
        wait_until 30 "hv1 logs that dongles1's certificate is not from its CA" \
            grep -Eq 'link dongles1: .*not issued by the link CA' "$work/hv1/usbgwd.log"
        wait_until 10 "hv1's status shows the link down" link_is hv1 dongles1 down
        grep -q 'not issued by the link CA' <<<"$(link hv1 dongles1 reason)" ||
            fail "hv1's status gives the reason '$(link hv1 dongles1 reason)'"
        wait_until 30 "dongles1 logs the refusal" \
            grep -Eq 'link from [^ ]+: refused: certificate not issued by the link CA' "$work/dongles1/usbgwd.log"
        reason='certificate not issued by the link CA'
        echo "$me: each refused the other: $reason"
    else
        # the dialer is a plain TLS client from hv1 (usbgwd never dials
        # without a valid certificate of its own: hv1 did not start)
        client_cert=() expect=
        [ "$scenario" = refused-expired ] && client_cert=("$certs/expired-cert.pem" "$certs/expired-key.pem")
        out=$(rig_exec hv1 python3 - "$ip_a" "$LINK_PORT" "$certs/ca-cert.pem" "${client_cert[@]}" <<'PY'
import json, socket, ssl, struct, sys
host, port, ca = sys.argv[1], int(sys.argv[2]), sys.argv[3]
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
ctx.check_hostname = False
ctx.load_verify_locations(ca)
if len(sys.argv) > 5:
    ctx.load_cert_chain(sys.argv[4], sys.argv[5])
with socket.create_connection((host, port), timeout=10) as raw:
    with ctx.wrap_socket(raw) as tls:
        data = b""
        while True:
            chunk = tls.recv(65536)
            if not chunk:
                break
            data += chunk
            while len(data) >= 8:
                kind, flags, length, stream = struct.unpack(">BBHI", data[:8])
                if len(data) < 8 + length:
                    break
                payload, data = data[8:8 + length], data[8 + length:]
                if kind == 2:
                    print(json.loads(payload)["reason"])
                    sys.exit(0)
print("no REFUSE frame", file=sys.stderr)
sys.exit(1)
PY
) || fail "the TLS client got no refusal: $out"
        reason=$out
        echo "$me: the client was refused: $reason"
        wait_until 30 "dongles1 logs the refusal" log_has dongles1 "refused: $reason"
        case $scenario in
        refused-no-cert) [ "$reason" = "no client certificate" ] || fail "the reason is '$reason'" ;;
        refused-expired) grep -q '^certificate expired on ' <<<"$reason" || fail "the reason is '$reason'" ;;
        esac
    fi
    audited dongles1 "e.get('event') == 'link-refused' and e.get('reason') == arg" "$reason" ||
        fail "no link-refused with the reason in dongles1's audit log"
    [ "$(link dongles1 hv1 state)" = none ] || [ "$(link dongles1 hv1 state)" != up ] ||
        fail "dongles1 has a link from hv1 up"
    if [ "$scenario" = refused-other-ca ]; then
        for _ in $(seq 25); do
            [ "$(ctl hv1 --json list | jget "len([x for x in d['devices'] if x.get('gateway')])")" = 0 ] ||
                fail "hv1 lists an imported device: $(ctl hv1 --json list)"
            sleep 0.2
        done
        stop_gw hv1
    fi
    stop_gw dongles1
    echo "PASS: $scenario"
    exit 0
    ;;
esac

wait_until 30 "hv1's link to dongles1 up" link_is hv1 dongles1 up
wait_until 10 "dongles1's link from hv1 up" link_is dongles1 hv1 up
[ "$(link hv1 dongles1 dialed)" = true ] || fail "hv1's link: dialed is $(link hv1 dongles1 dialed)"
[ "$(link dongles1 hv1 dialed)" = false ] || fail "dongles1's link: dialed is $(link dongles1 hv1 dialed)"
[ "$(link hv1 dongles1 address)" = "$ip_a:$LINK_PORT" ] || fail "hv1's link address: $(link hv1 dongles1 address)"
[ "$(ctl hv1 --json status | jget "d.get('gateway')")" = hv1 ] || fail "hv1's status: gateway is not hv1"
[ "$(ctl dongles1 --json status | jget "d.get('gateway')")" = dongles1 ] || fail "dongles1's status: gateway is not dongles1"
ctl hv1 status | grep -q '^link dongles1 up' || fail "plain usbgwctl status: no 'link dongles1 up' line: $(ctl hv1 status)"

if [ "$scenario" = refused-export ]; then
    # the link is fine, but nothing is for hv1: it must say so, not hang
    for _ in $(seq 25); do
        ! has_imported || fail "hv1 lists $IMPORTED although dongles1 exports nothing to it"
        sleep 0.2
    done
    [ "$(link dongles1 hv1 exported)" = 0 ] || fail "dongles1 says it exports $(link dongles1 hv1 exported) to hv1"
    [ "$(link hv1 dongles1 peer_devices)" = 0 ] || fail "hv1 says dongles1 offers $(link hv1 dongles1 peer_devices)"
    grep -q 'link hv1: the policy exports no device to it' "$work/dongles1/usbgwd.log" ||
        fail "dongles1's log does not say that it exports nothing to hv1"
    wait_until 10 "hv1's log saying that dongles1 exports nothing to it" \
        log_has hv1 'link dongles1: it exports no device to us'
    # and where it does export, both say how much
    ! grep -q 'link dongles1: it exports 1 device to us' "$work/hv1/usbgwd.log" ||
        fail "hv1 counted a device dongles1 does not export to it"
    a_lists_key || fail "dongles1 lost its key"
    stop_gw hv1
    stop_gw dongles1
    echo "PASS: $scenario"
    exit 0
fi

wait_until 30 "hv1 lists $IMPORTED" has_imported
[ "$(imported gateway)" = dongles1 ] || fail "hv1's $IMPORTED: gateway is $(imported gateway)"
[ "$(imported vm)" = test-vm ] || fail "hv1's $IMPORTED: vm is $(imported vm)"
[ "$(link dongles1 hv1 exported)" -ge 1 ] || fail "dongles1 exports $(link dongles1 hv1 exported) devices to hv1"
[ "$(link hv1 dongles1 peer_devices)" -ge 1 ] || fail "hv1 sees $(link hv1 dongles1 peer_devices) devices of dongles1"
audited hv1 "e.get('event') == 'attach' and e.get('device') == arg and e.get('gateway') == 'dongles1'" "$IMPORTED" ||
    fail "no attach of $IMPORTED with gateway dongles1 in hv1's audit log"

sock_before=$(imported socket)
case $scenario in
cross-host)
    log_has hv1 'link dongles1: it exports 1 device to us' || fail "hv1's log does not count dongles1's export"
    log_has dongles1 'link hv1: 1 device exported to it' || fail "dongles1's log does not count its export to hv1"
    t0=$EPOCHREALTIME
    guest "usbgw.dev=0529:0001 usbgw.challenge=$CHALLENGE" ''
    got=$(tr -d '\r' < "$console" | sed -n 's/^USBGW-ANSWER 0529:0001 .*response=//p')
    [ "$got" = "$answer" ] || { tr -d '\r' < "$console"; fail "the guest's answer '$got', the secret's '$answer'"; }
    echo "$me: the guest on hv1 answered $got as computed from the secret" \
        "(QEMU start to answer $(awk -v a="$t0" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.1f", b - a }') s)"
    wait_until 10 "export-open of $KEY to hv1 in dongles1's audit log" audited dongles1 \
        "e.get('event') == 'export-open' and e.get('device') == arg and e.get('peer') == 'hv1'" "$KEY"
    [ "$(link hv1 dongles1 state)" = up ] && [ "$(link dongles1 hv1 state)" = up ] || fail "a link is not up after the guest"
    wait_until 10 "export-close of $KEY in dongles1's audit log once the guest is gone" audited dongles1 \
        "e.get('event') == 'export-close' and e.get('device') == arg" "$KEY"
    audited dongles1 "e.get('event') == 'link-up' and e.get('peer') == 'hv1'" || fail "no link-up in dongles1's audit log"
    audited hv1 "e.get('event') == 'link-up' and e.get('peer') == 'dongles1'" || fail "no link-up in hv1's audit log"
    log_has hv1 'link dongles1: ' || fail "hv1's log has no 'link dongles1:' line"
    log_has dongles1 'link hv1: ' || fail "dongles1's log has no 'link hv1:' line"
    ;;
replug)
    # the key pulled out of dongles1 and put back: the guest on hv1 sees
    # it leave and come back, on the same socket, the link untouched
    guest "$loop" ',reconnect=1' background
    wait_until 90 "two right answers in the guest" ok_after 0 2
    r_out=$(last_round)
    sim_cmd "unplug hasp" || fail "unplug hasp"
    wait_until 30 "the key leaving the guest" gone_after "$r_out"
    r_gone=$(first gone "$r_out")
    wait_until 10 "hv1 listing the key absent" eval '[ "$(imported state)" = absent ]'
    sim_cmd "plug hasp" || fail "plug hasp"
    wait_until 60 "the key answering in the guest again" ok_after "$r_gone"
    echo "$me: unplugged after round $r_out, gone in round $r_gone, answering again in round $(first ok "$r_gone")"
    [ "$(count wrong)" -eq 0 ] || fail "wrong answers: $(rounds | grep wrong)"
    [ "$(link hv1 dongles1 connects)" = 1 ] || fail "the link reconnected ($(link hv1 dongles1 connects) connects)"
    [ "$(imported socket)" = "$sock_before" ] || fail "the key's socket changed: $(imported socket)"
    guest_shutdown
    ;;
cut-short)
    guest "$loop" ',reconnect=1' background
    wait_until 90 "three right answers in the guest" ok_after 0 3
    before=$(count ok)
    r_cut=$(last_round)
    t0=$EPOCHREALTIME
    rig_cut hv1
    states=''
    while awk -v a="$t0" -v b="$EPOCHREALTIME" 'BEGIN { exit !(b - a < 5) }'; do
        states+=" $(link hv1 dongles1 state)"
        sleep 0.5
    done
    rig_restore hv1
    echo "$me: hv1's link during the 5 s cut:$states"
    grep -Eq 'connecting|down' <<<"$states" || fail "hv1 never noticed the cut (states:$states)"
    wait_until 30 "hv1's link up again" link_is hv1 dongles1 up
    r_up=$(last_round)
    wait_until 60 "five right answers after the link came back" ok_after $((r_up + 1)) 5
    r_end=$(last_round)
    rounds > "$work/rounds"
    wrong=$(count wrong) gone=$(count gone) after=$(count ok $((r_up + 1)))
    bad_after=$(awk -v a=$((r_up + 1)) '$1 > a && $2 != "ok"' "$work/rounds")
    echo "$me: rounds 1-$r_end: $before right before the cut (round $r_cut), $after after round $((r_up + 1));" \
        "wrong $wrong, unplugged $gone; during the cut: $(awk -v a="$r_cut" -v b=$((r_up + 1)) '$1 > a && $1 <= b { printf " %s", $2 }' "$work/rounds")"
    [ "$before" -gt 0 ] || fail "no right answer before the cut"
    [ "$after" -gt 0 ] || fail "no right answer after the cut"
    [ "$wrong" -eq 0 ] || fail "$wrong wrong answers: $(grep wrong "$work/rounds")"
    [ "$gone" -eq 0 ] || fail "the guest saw the key leave: $(grep gone "$work/rounds")"
    [ -z "$bad_after" ] || fail "rounds after the link came back failed: $bad_after"
    ! grep -aq 'USB disconnect' "$console" || fail "the guest's kernel logged a USB disconnect"
    ! audited hv1 "e.get('event') == 'detach' and e.get('device') == arg" "$IMPORTED" ||
        fail "hv1 audited a detach of $IMPORTED for a 5 s cut"
    guest_shutdown
    ;;
cut-long)
    guest "$loop" ',reconnect=1' background
    wait_until 90 "two right answers in the guest" ok_after 0 2
    r_cut=$(last_round)
    t_cut=$EPOCHREALTIME
    rig_cut hv1
    # grace (10 s) after the loss is noticed (3 s): the guest sees the key go
    wait_until 25 "the key leaving the guest" gone_after "$r_cut"
    t_gone=$EPOCHREALTIME
    r_gone=$(first gone "$r_cut")
    echo "$me: the key left the guest $(awk -v a="$t_cut" -v b="$t_gone" 'BEGIN { printf "%.1f", b - a }') s after the cut (round $r_gone)"
    while awk -v a="$t_cut" -v b="$EPOCHREALTIME" 'BEGIN { exit !(b - a < 30) }'; do sleep 0.2; done
    rig_restore hv1
    t_restore=$EPOCHREALTIME
    wait_until 30 "hv1's link up again" link_is hv1 dongles1 up
    wait_until 90 "the key answering in the guest again" ok_after "$r_gone"
    t_back=$EPOCHREALTIME
    r_back=$(first ok "$r_gone")
    console_gap=$(awk -v a="$t_gone" -v b="$t_back" 'BEGIN { printf "%.1f", b - a }')
    # the audit log's times are exact: the detach at the end of the grace,
    # the attach no sooner than link-reattach-interval after it
    audited hv1 "e.get('event') == 'detach' and e.get('device') == arg" "$IMPORTED" ||
        fail "no detach of $IMPORTED in hv1's audit log"
    detach_time=$(audit hv1 "e.get('event') == 'detach' and e.get('device') == arg" "$IMPORTED" | tail -n1 | jget "d['time']")
    attach_time=$(audit hv1 "e.get('event') == 'attach' and e.get('device') == arg" "$IMPORTED" | tail -n1 | jget "d['time']")
    audit_gap=$(awk -v a="$(ts "$detach_time")" -v b="$(ts "$attach_time")" 'BEGIN { printf "%.1f", b - a }')
    echo "$me: unplug round $r_gone, answers again in round $r_back," \
        "$(awk -v a="$t_restore" -v b="$t_back" 'BEGIN { printf "%.1f", b - a }') s after the restore;" \
        "detach -> attach in hv1's audit: $audit_gap s; in the guest: $console_gap s"
    awk -v g="$audit_gap" 'BEGIN { exit !(g >= 20) }' ||
        fail "re-attached $audit_gap s after the detach (link-reattach-interval=20)"
    # the console is polled round by round: up to a round (1 s) each way
    awk -v g="$console_gap" 'BEGIN { exit !(g >= 18) }' ||
        fail "the guest had the key back $console_gap s after it left (link-reattach-interval=20)"
    [ "$(count wrong)" -eq 0 ] || fail "wrong answers: $(rounds | grep wrong)"
    guest_shutdown
    ;;
kill-exporter | kill-importer)
    victim=dongles1
    [ "$scenario" = kill-importer ] && victim=hv1
    guest "$loop" ',reconnect=1' background
    wait_until 90 "two right answers in the guest" ok_after 0 2
    wait_until 10 "export-open in dongles1's audit log" audited dongles1 "e.get('event') == 'export-open'"
    snapshot "$victim"
    r_kill=$(last_round)
    t0=$EPOCHREALTIME
    kill_gw "$victim"
    echo "$me: killed usbgwd on $victim (kill -9) after round $r_kill"
    sleep 2
    start_gw "$victim"
    wait_until 60 "hv1's link up again" link_is hv1 dongles1 up
    wait_until 30 "hv1 lists $IMPORTED again" has_imported
    r_restart=$(last_round)
    wait_until 120 "the key answering in the guest again" ok_after "$r_restart"
    echo "$me: the guest answers again in round $(first ok "$r_restart")," \
        "$(awk -v a="$t0" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.1f", b - a }') s after the kill;" \
        "rounds:$(rounds | awk -v a="$r_kill" '$1 > a { printf " %s", $2 }')"
    [ "$(count wrong)" -eq 0 ] || fail "wrong answers: $(rounds | grep wrong)"
    kept "$victim"
    guest_shutdown
    ;;
esac

stop_gw hv1
stop_gw dongles1
echo "PASS: $scenario"
