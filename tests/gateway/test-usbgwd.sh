#!/bin/bash
# usbgwd against simulated dongles (umockdev, driven by usbgw-sim) and the
# usbredir test peer playing QEMU. One scenario per run:
#
#   test-usbgwd.sh SCENARIO USBGWD USBGW_SIM TEST_PEER SIM_CLIENT USBGWCTL [GUEST_DIR]
#
# The script re-runs itself under usbgw-sim, which owns the simulated keys
# and serves their usbdevfs ioctls to the daemon (a child process).
set -euo pipefail
[ -n "${USBGW_TEST_TRACE:-}" ] && set -x

scenario=$1 usbgwd=$2 sim=$3 peer=$4 sim_client=$5 usbgwctl_bin=$6 guest_dir=${7:-}
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=../sim/usbgwd-test.sh
. "$here/../sim/usbgwd-test.sh"

# Secrets the keys use in these tests: the peer and the guest answers are
# checked against them.
HASP_SECRET=000102030405060708090a0b0c0d0e0f
HID_SECRET=f0e1d2c3b4a5968778695a4b3c2d1e0f
CHALLENGE=00112233445566778899aabbccddeeff
# stall: how much usbgwd may grow for a peer that stops reading. Bounded,
# it grows ~0.1 MB (usbredirhost's 800 queued stream packets of the key's
# 16-byte reports, GW_SESSION_MAX_QUEUED_PACKETS answers); unbounded, the
# flooding peer's answers grew it by 0.5-0.8 MB a second (3.8 MB in 8 s).
STALL_MAX_GROWTH_KB=1024
STALL_FLOOD_REQUESTS=1000000
STALL_FLOOD_MS=8000
# The scenarios that bound usbgwd's VmRSS (stall, request-rss): under
# AddressSanitizer freed memory sits in a quarantine (RSS keeps growing
# with every allocation, bounded or not); without it, VmRSS shows what is
# live, redzones included
if { [ "${1:-}" = stall ] || [ "${1:-}" = request-rss ]; } &&
    [[ "$(ldd "$2" 2>/dev/null)" == *libasan* ]]; then
    export ASAN_OPTIONS="${ASAN_OPTIONS:+$ASAN_OPTIONS:}quarantine_size_mb=0:thread_local_quarantine_size_kb=0"
fi

if [ -z "${USBGW_TEST_INNER:-}" ]; then
    work=$(mktemp -d /tmp/usbgwd-test.XXXXXX)
    trap 'rm -rf "$work"' EXIT
    export USBGW_TEST_INNER=$work
    status=0
    extra_plugs=()
    [ "$scenario" = stall ] && extra_plugs=(--plug hid-stream)
    "$sim" --secret "hasp=$HASP_SECRET" --secret "hid=$HID_SECRET" \
        --plug hasp --plug hid --plug stick "${extra_plugs[@]}" --control "$work/sim.sock" \
        -- bash "$0" "$@" || status=$?
    if [ $status -ne 0 ] && [ -f "$work/usbgwd.log" ]; then
        echo "--- usbgwd log"
        cat "$work/usbgwd.log"
    fi
    exit $status
fi

work=$USBGW_TEST_INNER
gw_pid=''
# a failing check must not leave usbgwd running
trap '[ -z "$gw_pid" ] || kill "$gw_pid" 2>/dev/null || true' EXIT
rundir=$work/run
sock=$rundir/vm/test-vm/0529-0001-at-1-1.sock
cat > "$work/policy" <<'POLICY'
deny with-interface 08:*:*
assign id 0529:0001 to vm "test-vm"
assign id 064f:2af9 serial "3-1234567" to vm "test-vm"
POLICY

fail() {
    echo "FAIL: $*" >&2
    exit 1
}

sim_cmd() {
    python3 "$here/../sim/sim-cmd.py" "$work/sim.sock" "$1"
}

usbgwctl() {
    "$usbgwctl_bin" --socket "$work/control.sock" "$@"
}

# Sends raw bytes (python escapes allowed) to the control socket and prints
# the reply lines.
ctl_raw() {
    python3 - "$work/control.sock" "$1" <<'PY'
import socket, sys
s = socket.socket(socket.AF_UNIX)
s.connect(sys.argv[1])
s.sendall(eval(sys.argv[2]))
s.shutdown(socket.SHUT_WR)
data = b""
s.settimeout(5)
while True:
    chunk = s.recv(65536)
    if not chunk:
        break
    data += chunk
print(data.decode(errors="replace").strip())
PY
}

# what "usbgwd is ready" looks like in usbgwctl list
ready_pattern='^0529:0001@1-1 .* bound '

# a command usbgwd is started through (admin-groups: its own /etc/group;
# caps: exactly the systemd unit's capability bounding set)
gw_wrap=()
# an LD_PRELOAD library for usbgwd only (the symlink scenarios' shim)
gw_preload=''

start_usbgwd() {
    LD_PRELOAD="${gw_preload:+$gw_preload:}${LD_PRELOAD:-}" "${gw_wrap[@]}" "$usbgwd" --foreground --policy "$work/policy" --rundir "$rundir" \
        --config "$work/usbgwd.conf" >> "$work/usbgwd.log" 2>&1 &
    gw_pid=$!
    # ready when it answers on its control socket and serves the key
    for _ in $(seq 100); do
        if "$usbgwctl_bin" --socket "$work/control.sock" status >/dev/null 2>&1 &&
            "$usbgwctl_bin" --socket "$work/control.sock" list 2>/dev/null | grep -Eq "$ready_pattern"; then
            return 0
        fi
        kill -0 $gw_pid 2>/dev/null || fail "usbgwd exited at start"
        sleep 0.05
    done
    fail "usbgwd did not serve the key on $sock"
}

stop_usbgwd() {
    kill -TERM $gw_pid
    wait $gw_pid || fail "usbgwd exited with status $? on SIGTERM"
    gw_pid=''
}

# as_qemu VM CMD…: CMD as QEMU's user (nobody) and as VM's QEMU: root
# writes the pid CMD will run as to the VM's pid file first, as libvirtd
# does before QEMU starts
as_qemu() {
    local vm=$1
    shift
    sh -c 'echo $$ > "$0" && exec setpriv --reuid=65534 --regid=65534 --clear-groups "$@"' \
        "$work/pids/$vm.pid" "$@"
}

wait_for() { # FILE PATTERN
    for _ in $(seq 200); do
        grep -q "$2" "$1" 2>/dev/null && return 0
        sleep 0.05
    done
    fail "no '$2' in $1"
}

# TCP listeners on a free loopback port range (the HID key gets the next port)
# (both ports free when picked: tests running beside this one take ports too)
tcp_port=$(python3 -c '
import socket
for _ in range(100):
    a = socket.socket(); a.bind(("127.0.0.1", 0)); port = a.getsockname()[1]
    b = socket.socket()
    try:
        b.bind(("127.0.0.1", port + 1))
    except OSError:
        continue
    print(port)
    break')
gw_test_conf "$work" "vm-pid-file=$work/pids/{vm}.pid"
# where "libvirtd" (this script, as root) writes each VM's QEMU pid
mkdir -m 755 "$work/pids"
if [ "$scenario" = pool ]; then
    printf 'pool "p" vms "vm-*"\nassign id 0529:0001 to pool "p"\n' > "$work/policy"
    ready_pattern='^0529:0001@1-1 +claimed '
fi
if [ "$scenario" = stall ]; then
    echo 'assign id 064f:2afa serial "3-7654321" to vm "test-vm"' >> "$work/policy"
fi
if [ "$scenario" = access ] || [ "$scenario" = caps ] || [ "$scenario" = peer-pid ]; then
    printf 'socket-user=nobody\n' >> "$work/usbgwd.conf"
    chmod 755 "$work"
fi
if [ "$scenario" = caps ]; then
    command -v setpriv >/dev/null || { echo "SKIP: setpriv (util-linux) missing"; exit 77; }
    # CAP_CHOWN CAP_SETUID … from the unit, as setpriv's +chown,+setuid,…
    unit_caps=$(sed -n 's/^CapabilityBoundingSet=//p' "$here/../../data/usbgwd.service.in")
    [ -n "$unit_caps" ] || fail "no CapabilityBoundingSet in data/usbgwd.service.in"
    setpriv_caps=$(tr ' ' '\n' <<<"$unit_caps" | sed 's/^CAP_//' | tr 'A-Z' 'a-z' | sed 's/^/+/' | paste -sd, -)
    # root's permitted set after exec is the bounding set: nothing beyond it
    gw_wrap=(setpriv --bounding-set "-all,$setpriv_caps" --inh-caps -all --)
fi
if [ "$scenario" = admin-groups ]; then
    # usbgwd sees its own /etc/group (a private mount namespace): a group
    # usbgw that lists nobody, and no other member
    admin_gid=$(python3 -c 'import grp; used={g.gr_gid for g in grp.getgrall()}; print(next(g for g in range(4200, 60000) if g not in used))')
    grep -v '^usbgw:' /etc/group > "$work/group"
    echo "usbgw:x:$admin_gid:nobody" >> "$work/group"
    gw_wrap=(unshare --mount --propagation private sh -c 'mount --bind "$0" /etc/group && exec "$@"' "$work/group")
fi
if [ "$scenario" = audit-reopen ]; then
    # the audit log lives in a directory others may write to
    mkdir -m 1777 "$work/log"
    sed -i "s|^audit-log=.*|audit-log=$work/log/audit.log|" "$work/usbgwd.conf"
fi
if [ "$scenario" = symlink-race ] || [ "$scenario" = symlink-planted ]; then
    # QEMU's user (nobody) replaces a socket with a link to a file of
    # root's right after usbgwd's bind(): tests/serve/vm-socket-swap-shim.c
    [ -n "${USBGW_TEST_SWAP_SHIM:-}" ] || fail "USBGW_TEST_SWAP_SHIM is not set"
    printf 'socket-user=nobody\n' >> "$work/usbgwd.conf"
    chmod 755 "$work"
    target=$work/target # stands for state.json, /etc/shadow, a device node
    echo 'tickets of every share' > "$target"
    chmod 640 "$target"
    export USBGW_SWAP_TARGET=$target USBGW_SWAP_LOG=$work/swap.log
    if [ "$scenario" = symlink-race ]; then
        # every socket of the VM, as nobody: whichever bind comes second
        # finds the VM directory as it is after the first
        export USBGW_SWAP_MATCH=/vm/test-vm/ USBGW_SWAP_UID=65534 USBGW_SWAP_GID=65534
    else
        # the HID key's socket, as root: a path usbgwd did not check
        export USBGW_SWAP_MATCH=064f-2af9
    fi
    gw_preload=$USBGW_TEST_SWAP_SHIM
fi
if [ "$scenario" = tcp-removed ]; then
    # the raw TCP listener is gone: a file that still turns it on must stop
    # usbgwd with a reason (the admin would otherwise wait for a port that
    # never opens), and nothing may listen there
    printf 'tcp-address=127.0.0.1\ntcp-port-base=%s\ntcp-insecure=true\n' "$tcp_port" >> "$work/usbgwd.conf"
    rc=0
    timeout 20 "$usbgwd" --foreground --policy "$work/policy" --rundir "$rundir" \
        --config "$work/usbgwd.conf" > "$work/usbgwd.log" 2>&1 || rc=$?
    cat "$work/usbgwd.log"
    [ $rc -ne 0 ] && [ $rc -ne 124 ] || fail "usbgwd started (status $rc) with tcp-port-base"
    grep -q "tcp-port-base=$tcp_port: the raw TCP listener was removed.*gateway links" "$work/usbgwd.log" ||
        fail "the refusal does not say the TCP listener was removed"
    [ -e "$sock" ] && fail "usbgwd served the key although it refused to start"
    python3 -c 'import socket,sys; s=socket.socket(); sys.exit(0 if s.connect_ex(("127.0.0.1", int(sys.argv[1]))) != 0 else 1)' "$tcp_port" ||
        fail "something listens on the TCP port"
    # the old shipped file (listener off) only warns
    sed -i '/^tcp-/d' "$work/usbgwd.conf"
    printf 'tcp-address=127.0.0.1\ntcp-port-base=0\ntcp-insecure=false\n' >> "$work/usbgwd.conf"
    : > "$work/usbgwd.log"
    start_usbgwd
    grep -q "tcp-port-base is no longer used" "$work/usbgwd.log" || fail "no warning for tcp-port-base=0"
    stop_usbgwd
    echo "PASS: $scenario"
    exit 0
fi

start_usbgwd
case $scenario in
busy)
    # another program holds the key when the VM's QEMU connects: usbgwd
    # offers it again until it is free
    usbgwctl release 1-1 >/dev/null || fail "release"
    "$sim_client" 0529:0001 --port 1-1 hold 1500 > "$work/hold.out" 2>&1 &
    hold_pid=$!
    wait_for "$work/hold.out" '^claimed'
    usbgwctl assign 1-1 test-vm >/dev/null || fail "assign"
    out=$("$peer" --timeout 10 "$sock" connect challenge $CHALLENGE expect $HASP_SECRET) ||
        fail "the peer did not get the key once it was free: $out"
    wait $hold_pid || fail "the holder failed"
    grep -q 'trying again in' "$work/usbgwd.log" || fail "usbgwd did not retry the busy key"
    stop_usbgwd
    ;;
pool)
    # VMs start and stop as usbgw-hook reports them (no libvirt here)
    hook() { # OP VM
        ctl_raw "b'{\"command\":\"hook\",\"domain\":\"$2\",\"uuid\":\"8c1f0a2e-5d2b-4c1e-9a57-00000000000${2: -1}\",\"op\":\"$1\",\"sub_op\":\"begin\"}\n'" |
            grep -q '"ok" *: *true' || fail "hook $1 $2 refused"
    }
    holder() { usbgwctl list | awk -v id="$1" '$1 == id { print $3 }'; }
    sim_cmd "plug hasp2" >/dev/null || fail "sim: plug hasp2"
    for _ in $(seq 100); do [ "$(holder 0529:0001@1-2)" = - ] && break; sleep 0.05; done
    # usbgwctl pools: the pool's keys, free until a VM of it starts
    pools_are() { # EXPECTED (a python literal of name, keys, used, free, [(id, vm)…])
        usbgwctl pools --json | python3 -c 'import json,sys; p=json.load(sys.stdin)["pools"]; got=[(x["name"], x["keys"], x["used"], x["free"], [(d["id"], d["vm"]) for d in x["devices"]]) for x in p]; assert got == eval(sys.argv[1]), got' "$1"
    }
    pools_are '[("p", 2, 0, 2, [("0529:0001@1-1", None), ("0529:0001@1-2", None)])]' ||
        fail "pools: $(usbgwctl pools)"
    hook started vm-1
    hook started vm-2
    hook started vm-3
    [ "$(holder 0529:0001@1-1)" = vm-1 ] || fail "vm-1 did not get the first key: $(usbgwctl list)"
    [ "$(holder 0529:0001@1-2)" = vm-2 ] || fail "vm-2 did not get the second key: $(usbgwctl list)"
    out=$("$peer" "$rundir/vm/vm-2/0529-0001-at-1-2.sock" connect challenge $CHALLENGE) || fail "vm-2's key: $out"
    hook stopped vm-1
    [ "$(holder 0529:0001@1-1)" = vm-3 ] || fail "vm-3 did not get the key vm-1 returned: $(usbgwctl list)"
    pools_are '[("p", 2, 2, 0, [("0529:0001@1-1", "vm-3"), ("0529:0001@1-2", "vm-2")])]' ||
        fail "pools: $(usbgwctl pools)"
    usbgwctl pools | grep -Eq '^p +2 +0 +2 +0529:0001@1-1 → vm-3, 0529:0001@1-2 → vm-2$' ||
        fail "pools table: $(usbgwctl pools)"
    # kill -9: the leases come back as they were
    kill -9 $gw_pid
    wait $gw_pid 2>/dev/null || true
    python3 -c 'import json,sys; l=json.load(open(sys.argv[1]))["leases"]; assert l == {"0529:0001@1-1": "vm-3", "0529:0001@1-2": "vm-2"}, l' "$work/state.json" ||
        fail "state.json leases: $(cat "$work/state.json")"
    ready_pattern='^0529:0001@1-2 '
    start_usbgwd
    hook started vm-2
    hook started vm-3
    [ "$(holder 0529:0001@1-1)" = vm-3 ] && [ "$(holder 0529:0001@1-2)" = vm-2 ] ||
        fail "leases not restored: $(usbgwctl list)"
    # a released key leaves the pool until replugged
    usbgwctl release 1-2 >/dev/null || fail "release"
    hook stopped vm-3
    hook started vm-4
    [ "$(holder 0529:0001@1-1)" != - ] || fail "the free key was not leased"
    [ "$(holder 0529:0001@1-2)" = - ] || fail "a released key was leased again: $(usbgwctl list)"
    stop_usbgwd
    ;;
teardown)
    # SIGTERM while a key comes and goes: hotplug events still queued for
    # the main loop must not reach a daemon that is being taken apart
    # (usbgwd used to free its control socket first, then spin the main
    # loop with the USB thread live: a queued arrival audited into a freed
    # control socket)
    sim_cmd "plug hasp2" >/dev/null || fail "sim: plug hasp2"
    for round in $(seq 6); do
        # (the simulator's answers are awaited 10 s at most: a simulator
        # that stops answering fails the round instead of hanging the test)
        python3 - "$work/sim.sock" <<'PY' &
import socket, sys, time
s = socket.socket(socket.AF_UNIX)
s.settimeout(10)
s.connect(sys.argv[1])
f = s.makefile("rwb")
end = time.monotonic() + 1.0
while time.monotonic() < end:
    for cmd in (b"unplug hasp2\n", b"plug hasp2\n"):
        f.write(cmd)
        f.flush()
        while True:
            line = f.readline()
            if not line:
                sys.exit("the simulator closed its control socket")
            if line.startswith((b"ok", b"error")):
                break
PY
        churn=$!
        sleep "0.$((RANDOM % 9 + 1))"
        kill -TERM $gw_pid
        # usbgwd must be gone within 20 s of SIGTERM
        for _ in $(seq 200); do kill -0 $gw_pid 2>/dev/null || break; sleep 0.1; done
        if kill -0 $gw_pid 2>/dev/null; then
            command -v gdb >/dev/null &&
                gdb -p $gw_pid -batch -ex 'thread apply all bt 12' 2>/dev/null | grep -E '^(#|Thread)' >&2
            kill -KILL $gw_pid
            fail "round $round: usbgwd still runs 20 s after SIGTERM (its threads above)"
        fi
        wait $gw_pid || fail "round $round: usbgwd exited with status $? on SIGTERM during hotplug"
        gw_pid=''
        wait $churn || fail "round $round: the hotplug churn failed (the simulator, not usbgwd)"
        sim_cmd "plug hasp2" >/dev/null 2>&1 || true
        ! grep -q 'CRITICAL' "$work/usbgwd.log" || fail "round $round: a CRITICAL during teardown"
        start_usbgwd
    done
    stop_usbgwd
    ;;
access)
    command -v setpriv >/dev/null || { echo "SKIP: setpriv (util-linux) missing"; stop_usbgwd; exit 77; }
    # QEMU's group may connect; the socket and its directory stay root's
    [ "$(stat -c '%U %G %a' "$sock")" = "root nogroup 660" ] || fail "socket: $(stat -c '%U %G %a' "$sock")"
    [ "$(stat -c '%U %G %a' "$(dirname "$sock")")" = "root nogroup 710" ] || fail "VM dir: $(stat -c '%U %G %a' "$(dirname "$sock")")"
    out=$(as_qemu test-vm "$peer" "$sock" connect challenge $CHALLENGE expect $HASP_SECRET) ||
        fail "QEMU's user could not use the key: $out"
    # another user who got hold of the socket is refused by SO_PEERCRED
    chmod 666 "$sock"
    chmod 755 "$(dirname "$sock")"
    out=$(setpriv --reuid=1 --regid=1 --clear-groups "$peer" --timeout 5 "$sock" closed) ||
        fail "a foreign uid was not refused: $out"
    grep -q 'refused a peer with uid 1 ' "$work/usbgwd.log" || fail "no log line for the refused uid"
    stop_usbgwd
    ;;
caps)
    # usbgwd really runs with the unit's set, and serves QEMU's user with it
    want=$(python3 -c '
import sys
bits = {"CAP_CHOWN": 0, "CAP_KILL": 5, "CAP_SETGID": 6, "CAP_SETUID": 7}
mask = 0
for cap in sys.argv[1].split():
    if cap not in bits:
        sys.exit("caps: the test does not know " + cap + ": add its bit")
    mask |= 1 << bits[cap]
print("%016x" % mask)' "$unit_caps") || fail "$want"
    eff=$(awk '$1 == "CapEff:" { print $2 }' /proc/$gw_pid/status)
    bnd=$(awk '$1 == "CapBnd:" { print $2 }' /proc/$gw_pid/status)
    [ "$eff" = "$want" ] && [ "$bnd" = "$want" ] ||
        fail "usbgwd's capabilities: effective $eff, bounding $bnd; the unit's $unit_caps is $want"
    [ "$(stat -c '%U %G %a' "$sock")" = "root nogroup 660" ] || fail "socket: $(stat -c '%U %G %a' "$sock")"
    out=$(as_qemu test-vm "$peer" "$sock" connect challenge $CHALLENGE expect $HASP_SECRET) ||
        fail "with the unit's capabilities QEMU's user could not use the key: $out"
    # a release hands the key back and an assign claims it again
    usbgwctl release 1-1 >/dev/null || fail "release"
    usbgwctl assign 1-1 test-vm >/dev/null || fail "assign"
    out=$(as_qemu test-vm "$peer" --timeout 10 "$sock" connect challenge $CHALLENGE expect $HASP_SECRET) ||
        fail "after release and assign: $out"
    stop_usbgwd
    ;;
exhaust)
    # a local user holding idle connections
    # must lock out neither root (usbgwctl, the hook) nor other users
    command -v setpriv >/dev/null || { echo "SKIP: setpriv (util-linux) missing"; stop_usbgwd; exit 77; }
    chmod 755 "$work"
    as_nobody=(setpriv --reuid=65534 --regid=65534 --clear-groups)
    mkdir -m 1777 "$work/flood"
    "${as_nobody[@]}" /usr/bin/python3 "$here/control-flood.py" "$work/control.sock" "$work/flood/flood.json" 2000 &
    flood=$!
    for _ in $(seq 400); do [ -f "$work/flood/flood.json" ] && break; sleep 0.05; done
    [ -f "$work/flood/flood.json" ] || fail "the flood did not report"
    echo "nobody's connections: $(cat "$work/flood/flood.json")"
    out=$(timeout 5 "$usbgwctl_bin" --socket "$work/control.sock" status 2>&1) ||
        fail "root's usbgwctl status was locked out by nobody's idle connections: $out"
    grep -q 'policy: .*(3 rules)' <<<"$out" || fail "root's status: $out"
    uuid=8c1f0a2e-5d2b-4c1e-9a57-3f6b1e2d4c5a
    reply=$(timeout 5 python3 - "$work/control.sock" "$uuid" <<'PY'
import socket, sys
s = socket.socket(socket.AF_UNIX)
s.settimeout(4)
s.connect(sys.argv[1])
s.sendall(b'{"command":"hook","domain":"test-vm","uuid":"%s","op":"prepare","sub_op":"begin"}\n' % sys.argv[2].encode())
print(s.makefile("rb").readline().decode().strip())
PY
) || fail "the hook's request was locked out: $reply"
    grep -q '"ok" *: *true' <<<"$reply" || fail "the hook's request: $reply"
    # another unprivileged user still has its own slots
    out=$(timeout 5 setpriv --reuid=1 --regid=1 --clear-groups "$usbgwctl_bin" --socket "$work/control.sock" status 2>&1) ||
        fail "uid 1 was locked out by nobody: $out"
    # nobody kept its cap (default control-max-per-user=8), the rest were
    # refused with the reason
    python3 - "$work/flood/flood.json" <<'PY' || fail "nobody's connections beyond its cap: $(cat "$work/flood/flood.json")"
import json, sys
r = json.load(open(sys.argv[1]))
assert r["opened"] > 64, r
assert r["open"] == 8, r
assert r["closed"] == r["opened"] - 8, r
assert any('"code":"busy"' in x.replace(" ", "") and "uid 65534" in x and "control-max-per-user" in x
           for x in r["replies"]), r
PY
    out=$(timeout 5 "${as_nobody[@]}" "$usbgwctl_bin" --socket "$work/control.sock" status 2>&1) &&
        fail "nobody got a ninth connection: $out"
    grep -q 'connections open' <<<"$out" || fail "no clear reason for nobody's refused status: $out"
    grep -q 'refusing a connection from uid 65534' "$work/usbgwd.log" || fail "no log line for the refusal"
    kill $flood
    wait $flood 2>/dev/null || true
    # idle connections are closed after control-idle-timeout; a subscriber is not
    stop_usbgwd
    printf 'control-idle-timeout=1\n' >> "$work/usbgwd.conf"
    start_usbgwd
    "$usbgwctl_bin" --socket "$work/control.sock" events --json > "$work/events.out" 2>&1 &
    events_pid=$!
    "${as_nobody[@]}" /usr/bin/python3 "$here/control-flood.py" "$work/control.sock" "$work/flood/idle.json" 3 &
    flood=$!
    # a request trickled without its newline is idle too: bytes that are
    # not a complete line do not keep a connection
    partial=$(timeout 8 python3 - "$work/control.sock" <<'PY'
import socket, sys, time
s = socket.socket(socket.AF_UNIX)
s.connect(sys.argv[1])
s.settimeout(0.1)
start = time.monotonic()
data, eof = b"", False
for b in b'{"command":"status"' * 3:
    try:
        s.sendall(bytes([b]))
        chunk = s.recv(4096)
        if not chunk:
            eof = True
            break
        data += chunk
    except socket.timeout:
        pass
    except OSError:
        break
s.settimeout(2)
while not eof:
    try:
        chunk = s.recv(4096)
    except OSError:
        break
    eof = not chunk
    data += chunk
print("%.1f %s" % (time.monotonic() - start, data.decode().strip()))
PY
) || fail "a trickling client was not closed: $partial"
    t=${partial%% *}
    [ "${t%.*}" -lt 3 ] || fail "a trickling client kept its connection for $t s: $partial"
    echo "trickling client: $partial"
    grep -q '"code":"timeout"' <<<"${partial// /}" || fail "no timeout reply for the trickling client: $partial"
    for _ in $(seq 100); do [ -f "$work/flood/idle.json.idle" ] && break; sleep 0.05; done
    [ -f "$work/flood/idle.json.idle" ] || fail "nobody's idle connections were not closed: $(cat "$work/flood/idle.json" 2>/dev/null)"
    echo "idle connections: $(cat "$work/flood/idle.json.idle")"
    python3 - "$work/flood/idle.json.idle" <<'PY' || fail "idle close: $(cat "$work/flood/idle.json.idle")"
import json, sys
r = json.load(open(sys.argv[1]))
assert r["after"] < 4, r
assert any('"code":"timeout"' in x.replace(" ", "") and "control-idle-timeout" in x for x in r["replies"]), r
PY
    wait $flood || fail "the idle flood failed"
    # (one line per 10 s: the trickling client's may be the one logged)
    grep -q 'closing an idle connection (uid ' "$work/usbgwd.log" || fail "no log line for the idle close"
    sleep 1.5
    usbgwctl release 0529:0001 >/dev/null || fail "release"
    wait_for "$work/events.out" '"event":"release"'
    kill -0 $events_pid || fail "the subscriber was closed"
    kill $events_pid
    # a client that sends requests and never reads the replies: usbgwd
    # queues nothing, the socket buffer fills and the client is dropped
    rss() { awk '/^VmRSS/ { print $2 }' /proc/$gw_pid/status; }
    rss_before=$(rss)
    sent=$(timeout 20 "${as_nobody[@]}" /usr/bin/python3 - "$work/control.sock" <<'PY'
import socket, sys
s = socket.socket(socket.AF_UNIX)
s.connect(sys.argv[1])
sent = 0
try:
    for _ in range(20000):
        s.sendall(b'{"command":"status"}\n')
        sent += 1
except OSError:
    pass
print(sent)
PY
) || fail "the non-reading client hung"
    wait_for "$work/usbgwd.log" 'dropping a client (uid 65534)'
    rss_after=$(rss)
    echo "non-reading client: sent $sent requests; usbgwd RSS ${rss_before} -> ${rss_after} KiB"
    [ $((rss_after - rss_before)) -lt 4096 ] || fail "usbgwd grew by $((rss_after - rss_before)) KiB for a client that does not read"
    out=$(usbgwctl status) || fail "status after the non-reading client: $out"
    stop_usbgwd
    ;;
admin-groups)
    # point 10c: "admin" is the peer's groups at connect time (SO_PEERCRED's
    # gid, SO_PEERGROUPS), not what /etc/group says of its user name
    command -v setpriv >/dev/null || { echo "SKIP: setpriv (util-linux) missing"; stop_usbgwd; exit 77; }
    chmod 755 "$work"
    ctl_as() { # SETPRIV-ARGS… -- USBGWCTL-ARGS…
        local args=()
        while [ "$1" != -- ]; do args+=("$1"); shift; done
        shift
        setpriv "${args[@]}" "$usbgwctl_bin" --socket "$work/control.sock" "$@" 2>&1
    }
    out=$(ctl_as --reuid=1 --regid=1 --groups="$admin_gid" -- list) ||
        fail "a process with group usbgw in its supplementary groups is not admin: $out"
    grep -Eq '^0529:0001@1-1 +bound' <<<"$out" || fail "list: $out"
    out=$(ctl_as --reuid=1 --regid="$admin_gid" --clear-groups -- list) ||
        fail "a process whose gid is usbgw is not admin: $out"
    out=$(ctl_as --reuid=65534 --regid=65534 --clear-groups -- list) &&
        fail "nobody, listed in /etc/group's usbgw but without the group, was admin: $out"
    grep -q 'may not use .list.' <<<"$out" || fail "no clear permission error: $out"
    out=$(ctl_as --reuid=65534 --regid=65534 --groups="$admin_gid" -- list) ||
        fail "nobody with the group is not admin: $out"
    stop_usbgwd
    ;;
audit-reopen)
    # point 10d: SIGHUP reopens the audit log (logrotate), never through a
    # symlink planted in a directory others can write
    log=$work/log/audit.log
    [ "$(stat -c %a "$log")" = 640 ] || fail "audit log mode $(stat -c %a "$log")"
    mv "$log" "$log.1"
    kill -HUP $gw_pid
    wait_for "$work/usbgwd.log" "audit log $log reopened"
    kill -0 $gw_pid || fail "usbgwd died on SIGHUP"
    usbgwctl release 0529:0001 >/dev/null || fail "release"
    grep -q '"event":"release"' "$log" || fail "the new audit log lacks the release: $(cat "$log")"
    grep -q '"event":"release"' "$log.1" && fail "the rotated audit log got the release"
    [ "$(stat -c '%a %U' "$log")" = "640 root" ] || fail "new audit log: $(stat -c '%a %U' "$log")"
    # someone plants a symlink where the log was: the reopen refuses it
    # and usbgwd keeps writing to the file it has
    mv "$log" "$log.2"
    echo precious > "$work/target"
    ln -s "$work/target" "$log"
    kill -HUP $gw_pid
    wait_for "$work/usbgwd.log" "cannot open audit log $log: it is a symbolic link"
    kill -0 $gw_pid || fail "usbgwd died on SIGHUP"
    usbgwctl assign 1-1 test-vm >/dev/null || fail "assign"
    [ "$(cat "$work/target")" = precious ] || fail "usbgwd wrote through the planted symlink: $(cat "$work/target")"
    [ -L "$log" ] || fail "the symlink was replaced"
    grep -q '"event":"assign"' "$log.2" || fail "the audit record of the assign is lost"
    # a file another user planted there, and a FIFO (that would block
    # the open): refused too
    rm "$log"
    chmod 755 "$work"
    setpriv --reuid=65534 --regid=65534 --clear-groups touch "$log"
    kill -HUP $gw_pid
    wait_for "$work/usbgwd.log" "cannot open audit log $log: owned by another user"
    rm "$log"
    mkfifo "$log"
    kill -HUP $gw_pid
    wait_for "$work/usbgwd.log" "cannot open audit log $log: No such device or address"
    kill -0 $gw_pid || fail "usbgwd died on a FIFO"
    # once the path is clear, the next SIGHUP opens a fresh file
    rm "$log"
    kill -HUP $gw_pid
    for _ in $(seq 100); do [ "$(grep -c "audit log $log reopened" "$work/usbgwd.log")" -ge 2 ] && break; sleep 0.05; done
    usbgwctl release 1-1 >/dev/null || fail "release"
    grep -q '"event":"release"' "$log" || fail "no release in the fresh audit log"
    stop_usbgwd
    # the installed logrotate snippet rotates the default audit log and
    # signals usbgwd (its main process) with SIGHUP
    default_log=$(sed -n 's/^#define GW_DEFAULT_AUDIT_LOG *"\(.*\)"/\1/p' "$here/../../common/gw-defaults.h")
    grep -q "^$default_log {" "$here/../../data/usbgw.logrotate" || fail "logrotate does not name $default_log"
    grep -q 'kill-who=main --signal=HUP usbgwd.service' "$here/../../data/usbgw.logrotate" || fail "logrotate: no SIGHUP"
    ;;
symlink-race | symlink-planted)
    command -v setpriv >/dev/null || { echo "SKIP: setpriv (util-linux) missing"; stop_usbgwd; exit 77; }
    hid_sock=$rundir/vm/test-vm/064f-2af9-sn-3-1234567.sock
    cat "$work/swap.log"
    # whatever happened, the file of root's kept its owner, mode and bytes
    [ "$(stat -c '%U %G %a' "$target")" = "root root 640" ] ||
        fail "usbgwd followed the link: the target is now $(stat -c '%U %G %a' "$target")"
    [ "$(cat "$target")" = 'tickets of every share' ] || fail "the target's contents changed"
    # directories usbgwd writes in are root's: QEMU's group may only pass
    [ "$(stat -c '%U %G %a' "$(dirname "$sock")")" = "root nogroup 710" ] ||
        fail "VM dir: $(stat -c '%U %G %a' "$(dirname "$sock")")"
    setpriv --reuid=65534 --regid=65534 --clear-groups touch "$(dirname "$sock")/planted" 2>/dev/null &&
        fail "QEMU's user can create files in the VM directory"
    if [ "$scenario" = symlink-race ]; then
        grep -q '^not swapped .*: Permission denied$' "$work/swap.log" || fail "the shim did not try"
        grep -q '^swapped ' "$work/swap.log" && fail "QEMU's user replaced a socket"
        [ -S "$sock" ] && [ -S "$hid_sock" ] || fail "a socket is missing"
        [ "$(stat -c '%U %G %a' "$sock")" = "root nogroup 660" ] || fail "socket: $(stat -c '%U %G %a' "$sock")"
    else
        grep -q "^swapped $hid_sock\$" "$work/swap.log" || fail "the shim did not swap $hid_sock"
        grep -q "cannot listen on $hid_sock: .*not the socket usbgwd bound" "$work/usbgwd.log" ||
            fail "no clear refusal for the replaced socket"
        [ -L "$hid_sock" ] && fail "the planted link was left in place"
    fi
    out=$(as_qemu test-vm "$peer" "$sock" connect challenge $CHALLENGE expect $HASP_SECRET) ||
        fail "QEMU's user could not use the key: $out"
    stop_usbgwd
    [ "$(stat -c '%U %G %a' "$target")" = "root root 640" ] || fail "the target changed on stop"
    ;;
peer-pid)
    # every VM's QEMU runs as QEMU's user: another one (VM B's) must not get
    # VM A's key while A is not connected
    command -v setpriv >/dev/null || { echo "SKIP: setpriv (util-linux) missing"; stop_usbgwd; exit 77; }
    pid_file=$work/pids/test-vm.pid
    impostor() {
        setpriv --reuid=65534 --regid=65534 --clear-groups "$peer" --timeout 5 "$sock" closed
    }
    refused() { # REASON-PATTERN
        wait_for "$work/usbgwd.log" "0529:0001@1-1: refused a peer with uid 65534 pid [0-9]* on $sock: $1"
    }
    # no pid file: nobody is the VM's QEMU
    out=$(impostor) || fail "a process of QEMU's user was not refused without a pid file: $out"
    grep -q '^CLOSED$' <<<"$out" || fail "impostor: $out"
    grep -q CONNECT <<<"$out" && fail "the impostor saw the key"
    refused "cannot tell vm \"test-vm\"'s QEMU: cannot read $pid_file"
    # the VM's QEMU is another process
    echo $$ > "$pid_file"
    out=$(impostor) || fail "a process of QEMU's user that is not the VM's QEMU was not refused: $out"
    refused "not vm \"test-vm\"'s QEMU (pid $$ in $pid_file)"
    grep '"event":"peer-refused"' "$work/audit.log" | grep '"device":"0529:0001@1-1"' |
        grep '"vm":"test-vm"' | grep '"actor":"peer uid=65534 pid=' | grep -q "pid $$ in $pid_file" ||
        fail "no audit line for the refused peer: $(cat "$work/audit.log")"
    # a pid file QEMU's user could have written proves nothing
    chown 65534 "$pid_file"
    out=$(impostor) || fail "a pid file of QEMU's user was trusted: $out"
    refused "cannot tell vm \"test-vm\"'s QEMU: $pid_file is not a pid file to trust"
    # nor one reached through a symbolic link, nor one that is not a pid
    rm "$pid_file"
    echo $$ > "$work/other.pid"
    ln -s "$work/other.pid" "$pid_file"
    out=$(impostor) || fail "a pid file behind a symbolic link was followed: $out"
    refused "cannot tell vm \"test-vm\"'s QEMU: cannot read $pid_file (no symbolic links"
    rm "$pid_file"
    printf '%s junk\n' $$ > "$pid_file"
    out=$(impostor) || fail "a malformed pid file was taken: $out"
    refused "cannot tell vm \"test-vm\"'s QEMU: $pid_file: not a pid"
    # the VM's QEMU (its pid in the pid file) gets the key and its answer
    out=$(as_qemu test-vm "$peer" "$sock" connect challenge $CHALLENGE expect $HASP_SECRET) ||
        fail "the VM's QEMU was refused: $out"
    grep -q '^MATCH$' <<<"$out" || fail "the VM's QEMU got no correct answer: $out"
    stop_usbgwd
    # bad values are refused at start, naming the key
    for bad in 'vm-peer-check=nobody' 'vm-pid-file=relative/{vm}.pid' 'vm-pid-file=/run/no-vm.pid'; do
        { cat "$work/usbgwd.conf"; echo "$bad"; } > "$work/bad.conf"
        out=$("$usbgwd" --foreground --policy "$work/policy" --rundir "$work/bad-run" --config "$work/bad.conf" 2>&1) &&
            fail "usbgwd started with $bad"
        grep -q "bad.conf: \[usbgwd\] ${bad%%=*}=.*: expected" <<<"$out" || fail "no clear error for $bad: $out"
    done
    # vm-peer-check=uid keeps the old rule, when an admin says so
    printf 'vm-peer-check=uid\n' >> "$work/usbgwd.conf"
    rm -f "$pid_file"
    start_usbgwd
    out=$(setpriv --reuid=65534 --regid=65534 --clear-groups "$peer" "$sock" connect challenge $CHALLENGE expect $HASP_SECRET) ||
        fail "vm-peer-check=uid: QEMU's user was refused: $out"
    chmod 666 "$sock"
    chmod 755 "$(dirname "$sock")"
    out=$(setpriv --reuid=1 --regid=1 --clear-groups "$peer" --timeout 5 "$sock" closed) ||
        fail "vm-peer-check=uid: another user was not refused: $out"
    grep -q 'refused a peer with uid 1 pid [0-9]* on .*: only QEMU' "$work/usbgwd.log" ||
        fail "vm-peer-check=uid: no log line for the other user"
    stop_usbgwd
    ;;
control)
    out=$(usbgwctl status) || fail "status: $out"
    echo "$out"
    grep -q 'policy: .*(3 rules)' <<<"$out" || fail "status does not show the policy"
    grep -q 'hook:    not called' <<<"$out" || fail "status does not say the hook was not called"
    out=$(usbgwctl list)
    echo "$out"
    grep -Eq '^0529:0001@1-1 +bound +test-vm ' <<<"$out" || fail "list: the key is not bound to test-vm"
    grep -Eq '^0781:5567#4C530001 +denied ' <<<"$out" || fail "list: the stick is not denied"
    state=$(usbgwctl list --json | python3 -c 'import json,sys; d={x["id"]: x for x in json.load(sys.stdin)["devices"]}; print(d["0529:0001@1-1"]["state"], d["0529:0001@1-1"]["socket"].endswith("0529-0001-at-1-1.sock"), d["064f:2af9#3-1234567"]["serial"])')
    [ "$state" = "bound True 3-1234567" ] || fail "list --json: $state"
    # bad input gets an error reply, never a crash
    reply=$(ctl_raw 'b"nonsense\n"')
    grep -q '"code":"bad-request"' <<<"${reply// /}" || fail "malformed JSON: $reply"
    reply=$(ctl_raw 'b"[1,2]\n{\"command\": 5}\n{\"command\":\"frob\",\"id\":7}\n"')
    [ "$(grep -c '"ok" *: *false' <<<"$reply")" -eq 3 ] || fail "three bad requests: $reply"
    grep -q 'unknown-command' <<<"$reply" || fail "unknown command: $reply"
    grep -q '"id" *: *7' <<<"$reply" || fail "id not echoed: $reply"
    reply=$(ctl_raw 'b"{\"command\":\"" + b"x" * 70000 + b"\"}\n"')
    grep -q 'longer than' <<<"$reply" || fail "oversized request: $reply"
    reply=$(ctl_raw 'b"{\"command\":\"assign\",\"device\":\"nosuch\",\"vm\":\"v\"}\n{\"command\":\"assign\",\"device\":\"0529:0001\"}\n"')
    grep -q 'not-found' <<<"$reply" || fail "unknown device: $reply"
    grep -q '\\"vm\\" must be' <<<"$reply" || grep -q '"vm" must be' <<<"$reply" || grep -q 'vm.*must be a non-empty string' <<<"$reply" || fail "missing argument: $reply"
    kill -0 $gw_pid || fail "usbgwd died on bad requests"
    # not root, not in group usbgw: status only
    chmod 755 "$work"
    if command -v setpriv >/dev/null; then
        out=$(setpriv --reuid=65534 --regid=65534 --clear-groups "$usbgwctl_bin" --socket "$work/control.sock" list 2>&1) &&
            fail "an unprivileged user could list: $out"
        grep -q 'may not use .list.' <<<"$out" || fail "no clear permission error: $out"
        setpriv --reuid=65534 --regid=65534 --clear-groups "$usbgwctl_bin" --socket "$work/control.sock" status >/dev/null ||
            fail "an unprivileged user cannot read status"
    fi
    # events: subscribers see what happens
    usbgwctl events --json > "$work/events.out" 2>&1 &
    events_pid=$!
    sleep 0.3
    # release hands the key back to the host; assign moves it
    usbgwctl release 0529:0001 >/dev/null || fail "release"
    "$sim_client" 0529:0001 --port 1-1 claim >/dev/null || fail "released key not free for the host"
    [ -e "$sock" ] && fail "released key still has its socket"
    usbgwctl assign 1-1 other-vm >/dev/null || fail "assign"
    wait_for "$work/events.out" '"event":"assign"'
    kill $events_pid
    grep -q '"event":"release".*"device":"0529:0001@1-1"' "$work/events.out" ||
        fail "events: no release event: $(cat "$work/events.out")"
    [ -S "$rundir/vm/other-vm/0529-0001-at-1-1.sock" ] || fail "assign: no socket for other-vm"
    out=$("$peer" "$rundir/vm/other-vm/0529-0001-at-1-1.sock" connect challenge $CHALLENGE expect $HASP_SECRET) ||
        fail "peer on the assigned socket: $out"
    python3 -c 'import json,sys; s=json.load(open(sys.argv[1])); assert s["assignments"]["0529:0001@1-1"] == "other-vm", s' "$work/state.json" ||
        fail "state.json lacks the assignment"
    # a bad policy is refused and the running one stays
    echo 'assign id zzzz to vm "x"' > "$work/policy"
    out=$(usbgwctl policy reload 2>&1) && fail "a bad policy was accepted"
    grep -q 'policy:1:11: error' <<<"$out" || fail "reload did not show the error: $out"
    usbgwctl status | grep -q '(3 rules)' || fail "the running policy was lost"
    printf 'deny with-interface 08:*:*\nassign id 0529:0001 to vm "test-vm"\n' > "$work/policy"
    usbgwctl policy reload || fail "good policy refused"
    usbgwctl list | grep -Eq '^064f:2af9#3-1234567 +present ' || fail "reload did not release the HID key"
    out=$("$sim_client" 064f:2af9 claim 2>&1) || fail "the HID key is not free after reload: $out"
    # kill -9 at any moment: the assignment survives
    kill -9 $gw_pid
    wait $gw_pid 2>/dev/null || true
    sock=$rundir/vm/other-vm/0529-0001-at-1-1.sock
    start_usbgwd
    usbgwctl list | grep -Eq '^0529:0001@1-1 +bound +other-vm ' || fail "assignment lost across kill -9"
    # the audit trail says who did what
    cat "$work/audit.log"
    grep -q '"event":"deny".*"device":"0781:5567#4C530001"' "$work/audit.log" || fail "audit: no deny"
    grep -q '"event":"release".*"actor":"usbgwctl uid=0"' "$work/audit.log" || fail "audit: no release"
    grep -q '"event":"assign".*"vm":"other-vm".*"actor":"usbgwctl uid=0"' "$work/audit.log" || fail "audit: no assign"
    grep -q '"event":"attach".*"device":"0529:0001@1-1".*"vm":"test-vm".*"rule":".*policy:2"' "$work/audit.log" ||
        fail "audit: no attach with the rule"
    stop_usbgwd
    ;;
veto)
    printf 'assign id 0529:0001 to vm "test-vm" required\nassign id 1234:5678 to vm "need-vm" required\n' > "$work/policy"
    kill $gw_pid; wait $gw_pid || true
    start_usbgwd
    uuid=8c1f0a2e-5d2b-4c1e-9a57-3f6b1e2d4c5a
    reply=$(ctl_raw "b'{\"command\":\"hook\",\"domain\":\"need-vm\",\"uuid\":\"$uuid\",\"op\":\"prepare\",\"sub_op\":\"begin\"}\n'")
    grep -q '"code" *: *"veto"' <<<"$reply" || fail "no veto for a missing required key: $reply"
    grep -q 'requires a USB device (.*policy:2)' <<<"$reply" || fail "veto without the rule: $reply"
    reply=$(ctl_raw "b'{\"command\":\"hook\",\"domain\":\"test-vm\",\"uuid\":\"$uuid\",\"op\":\"prepare\",\"sub_op\":\"begin\"}\n'")
    grep -q '"ok" *: *true' <<<"$reply" || fail "veto although the key is there: $reply"
    grep -q '"event":"veto".*"vm":"need-vm"' "$work/audit.log" || fail "audit: no veto"
    usbgwctl status | grep -q 'hook:    last called' || fail "status does not show the hook call"
    # a name that would leave <rundir>/vm is refused, as assign and share refuse it
    reply=$(ctl_raw "b'{\"command\":\"hook\",\"domain\":\"../evil\",\"uuid\":\"$uuid\",\"op\":\"started\",\"sub_op\":\"begin\"}\n'")
    grep -q '"code" *: *"bad-request"' <<<"$reply" || fail "hook with domain ../evil: $reply"
    usbgwctl vms | grep -q 'evil' && fail "the VM ../evil was taken as running: $(usbgwctl vms)"
    stop_usbgwd
    ;;
stall)
    # a peer that stops reading must not make usbgwd grow without bound:
    # the streaming HID key has interrupt data on every poll
    ssock=$rundir/vm/test-vm/064f-2afa-sn-3-7654321.sock
    for _ in $(seq 100); do [ -S "$ssock" ] && break; sleep 0.05; done
    [ -S "$ssock" ] || fail "no socket for the streaming HID key"
    rss() { awk '/^VmRSS:/ { print $2 }' "/proc/$gw_pid/status"; }
    # runs the peer with STEPS, sampling usbgwd's VmRSS; sets growth (kB)
    stalled_peer() { # NAME STEPS…
        local name=$1 base max r p
        shift
        base=$(rss)
        max=$base
        "$peer" --timeout 30 "$ssock" "$@" > "$work/$name.out" 2>&1 &
        p=$!
        while kill -0 $p 2>/dev/null; do
            r=$(rss)
            [ "$r" -gt "$max" ] && max=$r
            sleep 0.1
        done
        wait $p || { cat "$work/$name.out"; fail "$name: the peer failed"; }
        cat "$work/$name.out"
        growth=$((max - base))
        echo "$name: usbgwd VmRSS $base kB before, at most $max kB while the peer stalled (+$growth kB)"
    }
    # 1: interrupt data for a reader that stopped (a paused QEMU)
    stalled_peer interrupt connect interrupt 0x81 stall 5000 drain 1000
    grep -q '^INTERRUPT 16$' "$work/interrupt.out" || fail "no interrupt data from the streaming key"
    [ $growth -lt $STALL_MAX_GROWTH_KB ] || fail "interrupt data for a stalled reader grew usbgwd by $growth kB"
    # bounded by usbredirhost dropping stream data beyond 800 queued packets
    grep -q 'buffered stream on endpoint 81, connection too slow, dropping packets' "$work/usbgwd.log" ||
        fail "usbredirhost did not drop interrupt data for the stalled reader"
    # 2: the same, and requests keep coming while nothing is read
    stalled_peer flood connect interrupt 0x81 flood $STALL_FLOOD_REQUESTS $STALL_FLOOD_MS stall 500 drain 2000
    [ $growth -lt $STALL_MAX_GROWTH_KB ] || fail "answers for a peer that does not read grew usbgwd by $growth kB"
    # the session survived and serves again once the peer reads
    grep -q '^DRAINED [1-9]' "$work/flood.out" || fail "the session did not recover"
    kill -0 $gw_pid || fail "usbgwd died"
    stop_usbgwd
    ;;
no-hello)
    # a peer that connects and says nothing (not even its hello) must not
    # hold the key: usbgwd drops it after its hello bound, and the next
    # peer gets the key
    start=$(date +%s%N)
    out=$("$peer" --timeout 20 --silent "$sock") || fail "a silent peer kept the key: $out"
    grep -q '^CLOSED$' <<<"$out" || fail "silent peer: $out"
    elapsed_ms=$((($(date +%s%N) - start) / 1000000))
    echo "the silent peer was dropped after $elapsed_ms ms"
    [ $elapsed_ms -lt 15000 ] || fail "the silent peer was dropped only after $elapsed_ms ms"
    grep -q 'peer session ended: peer sent no usbredir hello within [0-9]* s (0 bytes)' "$work/usbgwd.log" ||
        fail "no log line naming the missing hello"
    out=$("$peer" "$sock" connect challenge $CHALLENGE expect $HASP_SECRET) || fail "the next peer: $out"
    grep -q '^MATCH$' <<<"$out" || fail "the next peer did not get the key"
    stop_usbgwd
    ;;
serve)
    out=$("$peer" "$sock" connect challenge $CHALLENGE expect $HASP_SECRET)
    echo "$out"
    grep -q '^CONNECT 0529:0001 class ff:00:00' <<<"$out" || fail "no device_connect with the key's ids"
    grep -q '^INTERFACES ff:00:00$' <<<"$out" || fail "wrong interface info"
    grep -q '^MATCH$' <<<"$out" || fail "the answer is not the key's"
    # the HID key, identified by serial, has its own socket
    [ -S "$rundir/vm/test-vm/064f-2af9-sn-3-1234567.sock" ] || fail "no socket for the HID key"
    # the mass-storage stick is denied: no socket, left to the host
    ls "$rundir/vm/test-vm" | grep -q 0781 && fail "the denied stick got a socket"
    grep -q '0781:5567#4C530001 arrived: denied by .*policy:1, left to the host' "$work/usbgwd.log" ||
        fail "no deny line for the stick"
    grep -q '0781:5567.*claimed' "$work/usbgwd.log" && fail "the stick was claimed"
    # ask the device itself: the stick is free, the assigned key is held
    # (again: when the peer's session ended, usbredirhost closed its handle
    # and usbgwd claims the key anew; wait for that second claim)
    for _ in $(seq 200); do
        [ "$(grep -c '0529:0001@1-1: claimed' "$work/usbgwd.log")" -ge 2 ] && break
        sleep 0.05
    done
    "$sim_client" 0781:5567 claim >/dev/null || fail "the denied stick is not free for the host"
    rc=0
    "$sim_client" 0529:0001 --port 1-1 claim >/dev/null 2>&1 || rc=$?
    [ $rc -eq 6 ] || fail "the assigned key is not held by usbgwd (claim gave $rc, want 6 busy)"
    stop_usbgwd
    grep -q '0529:0001@1-1: handed back to the host' "$work/usbgwd.log" || fail "key not handed back on stop"
    [ -e "$sock" ] && fail "socket left behind after stop"
    "$sim_client" 0529:0001 --port 1-1 claim >/dev/null || fail "the key was not released on stop"
    ;;
second-peer)
    "$peer" "$sock" connect sleep 3000 challenge $CHALLENGE expect $HASP_SECRET > "$work/peer1.out" &
    p1=$!
    wait_for "$work/peer1.out" '^CONNECT'
    out=$("$peer" --timeout 5 "$sock" closed) || fail "the second peer was not closed"
    grep -q '^CLOSED$' <<<"$out" || fail "second peer: $out"
    grep -q 'CONNECT' <<<"$out" && fail "the second peer saw the device"
    wait $p1 || fail "the first peer failed after the second was refused"
    grep -q '^MATCH$' "$work/peer1.out" || fail "first peer lost its answer"
    grep -q 'refused a second peer' "$work/usbgwd.log" || fail "no log line for the refused peer"
    stop_usbgwd
    ;;
yank)
    # unplug while challenges are in flight, then plug the same key back
    "$peer" --timeout 30 "$sock" connect hammer $HASP_SECRET connect challenge $CHALLENGE \
        expect $HASP_SECRET > "$work/peer.out" &
    p=$!
    wait_for "$work/peer.out" '^CONNECT'
    sleep 0.5
    sim_cmd "unplug hasp" >/dev/null || fail "sim: unplug"
    wait_for "$work/peer.out" '^HAMMER'
    kill -0 $gw_pid || fail "usbgwd died on unplug"
    sim_cmd "plug hasp" >/dev/null || fail "sim: plug"
    wait $p || { cat "$work/peer.out"; fail "peer failed across the replug"; }
    cat "$work/peer.out"
    [ "$(grep -c '^CONNECT' "$work/peer.out")" -eq 2 ] || fail "no second device_connect after replug"
    grep -q '^MATCH$' "$work/peer.out" || fail "no correct answer after replug"
    stop_usbgwd
    ;;
garbage)
    out=$("$peer" "$sock" connect garbage closed) || fail "peer: $out"
    grep -q '^CLOSED$' <<<"$out" || fail "the gateway kept a session that sent garbage"
    grep 'peer session ended' "$work/usbgwd.log"
    grep -q 'peer session ended: peer sent malformed usbredir data' "$work/usbgwd.log" ||
        fail "no clear log line for the garbage"
    kill -0 $gw_pid || fail "usbgwd died on garbage"
    out=$("$peer" "$sock" connect challenge $CHALLENGE expect $HASP_SECRET) || fail "next peer: $out"
    grep -q '^MATCH$' <<<"$out" || fail "the next peer did not get the key"
    stop_usbgwd
    ;;
request-rss)
    # every reply must be freed: 20000 requests a non-admin user may send,
    # replies read, must not grow usbgwd (each reply object leaked one
    # reference to its result before: status, shares, unshare, and every
    # empty result)
    rss() { awk '/^VmRSS/ { print $2 }' /proc/$gw_pid/status; }
    chmod 755 "$work"
    usbgwctl status >/dev/null || fail "status"
    rss_before=$(rss)
    replies=$(timeout 60 setpriv --reuid=65534 --regid=65534 --clear-groups /usr/bin/python3 - "$work/control.sock" <<'PY'
import socket, sys
s = socket.socket(socket.AF_UNIX)
s.connect(sys.argv[1])
f = s.makefile("rb")
ok = 0
for _ in range(200):
    s.sendall(b'{"command":"status","id":1}\n' * 100)
    for _ in range(100):
        ok += b'"ok":true' in f.readline()
print(ok)
PY
) || fail "the requesting client failed"
    rss_after=$(rss)
    echo "20000 status requests ($replies ok); usbgwd RSS ${rss_before} -> ${rss_after} KiB"
    [ "$replies" -eq 20000 ] || fail "only $replies of 20000 status replies were ok"
    [ $((rss_after - rss_before)) -lt 2048 ] ||
        fail "usbgwd grew by $((rss_after - rss_before)) KiB for 20000 status requests"
    stop_usbgwd
    ;;
streams-no-device)
    # usbredirhost (0.13.0) asks libusb for bulk streams on its handle without
    # checking that it has a device: a peer asking while the key is unplugged
    # (the session lives on for the replug) must not take usbgwd down
    "$peer" --timeout 30 "$sock" connect disconnect streams connect challenge $CHALLENGE \
        expect $HASP_SECRET > "$work/peer.out" &
    p=$!
    wait_for "$work/peer.out" '^CONNECT'
    sim_cmd "unplug hasp" >/dev/null || fail "sim: unplug"
    wait_for "$work/peer.out" '^STREAMS'
    sleep 0.5
    kill -0 $gw_pid || fail "usbgwd died when a peer asked for bulk streams with no device"
    sim_cmd "plug hasp" >/dev/null || fail "sim: plug"
    wait $p || { cat "$work/peer.out"; fail "peer failed across the replug"; }
    grep -q '^MATCH$' "$work/peer.out" || fail "no correct answer after replug"
    stop_usbgwd
    ;;
peer-killed)
    "$peer" "$sock" connect sleep 60000 > "$work/peer1.out" &
    p1=$!
    wait_for "$work/peer1.out" '^CONNECT'
    kill -9 $p1
    wait $p1 2>/dev/null || true
    wait_for "$work/usbgwd.log" 'peer session ended'
    out=$("$peer" "$sock" connect challenge $CHALLENGE expect $HASP_SECRET) || fail "next peer: $out"
    grep -q '^MATCH$' <<<"$out" || fail "the next peer did not get the key"
    stop_usbgwd
    ;;
qemu)
    command -v qemu-system-x86_64 >/dev/null || { echo "SKIP: qemu-system-x86_64 missing"; stop_usbgwd; exit 77; }
    bash "$here/../guest/build-guest.sh" "$guest_dir" > "$work/guest-build.log" 2>&1 ||
        { cat "$work/guest-build.log"; fail "guest build"; }
    hasp_answer=$("$peer" --key-answer $HASP_SECRET $CHALLENGE)
    hid_answer=$("$peer" --key-answer $HID_SECRET $CHALLENGE)
    hid_sock=$rundir/vm/test-vm/064f-2af9-sn-3-1234567.sock
    boot() { # N DEVICES QEMU-ARGS…
        local n=$1 devices=$2
        shift 2
        USBGW_GUEST_APPEND="usbgw.dev=$devices usbgw.challenge=$CHALLENGE" \
            bash "$here/../guest/run-guest.sh" "$guest_dir" "$@" > "$work/console$n.log" 2>&1
    }
    answer_of() { # N VID:PID
        grep -a "^USBGW-ANSWER $2" "$work/console$1.log" | sed 's/.*response=//' | tr -d '\r'
    }
    # 1: both keys, vendor control and HID interrupt transfers through usbgwd
    start=$(date +%s.%N)
    boot 1 0529:0001,064f:2af9 \
        -chardev "socket,id=ur0,path=$sock" -device usb-redir,chardev=ur0,bus=xhci.0 \
        -chardev "socket,id=ur1,path=$hid_sock" -device usb-redir,chardev=ur1,bus=xhci.0 ||
        { cat "$work/console1.log"; fail "QEMU boot 1"; }
    echo "boot 1: guest answers in $(awk "BEGIN { printf \"%.1f\", $(date +%s.%N) - $start }") s"
    [ "$(answer_of 1 0529:0001)" = "$hasp_answer" ] || { cat "$work/console1.log"; fail "vendor key answer"; }
    [ "$(answer_of 1 064f:2af9)" = "$hid_answer" ] || { cat "$work/console1.log"; fail "HID key answer"; }
    echo "boot 1: vendor key $hasp_answer, HID key $hid_answer: both as computed from the secrets"
    # 2: QEMU killed while it holds the key
    sessions=$(grep -c 'peer connected' "$work/usbgwd.log")
    boot 2 0529:0001 -chardev "socket,id=ur0,path=$sock" -device usb-redir,chardev=ur0,bus=xhci.0 &
    qemu_job=$!
    for _ in $(seq 200); do
        [ "$(grep -c 'peer connected' "$work/usbgwd.log")" -gt "$sessions" ] && break
        sleep 0.05
    done
    pkill -9 -f "path=$sock" || fail "no QEMU to kill"
    wait $qemu_job 2>/dev/null || true
    wait_for "$work/usbgwd.log" 'peer session ended'
    kill -0 $gw_pid || fail "usbgwd died with QEMU"
    # 3: the next QEMU gets the key
    boot 3 0529:0001 -chardev "socket,id=ur0,path=$sock" -device usb-redir,chardev=ur0,bus=xhci.0 ||
        { cat "$work/console3.log"; fail "QEMU boot 3"; }
    [ "$(answer_of 3 0529:0001)" = "$hasp_answer" ] || { cat "$work/console3.log"; fail "answer after QEMU was killed"; }
    echo "boot 3 (after a QEMU was killed): $hasp_answer"
    stop_usbgwd
    ;;
*)
    fail "unknown scenario $scenario"
    ;;
esac
echo "PASS: $scenario"
