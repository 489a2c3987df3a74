#!/bin/bash
# usbgwd against simulated dongles (umockdev, driven by usbgw-sim) and the
# usbredir test peer playing QEMU. One scenario per run:
#
#   test-usbgwd.sh SCENARIO USBGWD USBGW_SIM TEST_PEER SIM_CLIENT [GUEST_DIR]
#
# The script re-runs itself under usbgw-sim, which owns the simulated keys
# and serves their usbdevfs ioctls to the daemon (a child process).
set -euo pipefail

scenario=$1 usbgwd=$2 sim=$3 peer=$4 sim_client=$5 guest_dir=${6:-}
here=$(cd "$(dirname "$0")" && pwd)

# Secrets the keys use in these tests: the peer and the guest answers are
# checked against them.
HASP_SECRET=000102030405060708090a0b0c0d0e0f
HID_SECRET=f0e1d2c3b4a5968778695a4b3c2d1e0f
CHALLENGE=00112233445566778899aabbccddeeff

if [ -z "${USBGW_TEST_INNER:-}" ]; then
    work=$(mktemp -d /tmp/usbgwd-test.XXXXXX)
    trap 'rm -rf "$work"' EXIT
    export USBGW_TEST_INNER=$work
    status=0
    "$sim" --secret "hasp=$HASP_SECRET" --secret "hid=$HID_SECRET" \
        --plug hasp --plug hid --plug stick --control "$work/sim.sock" \
        -- bash "$0" "$@" || status=$?
    if [ $status -ne 0 ] && [ -f "$work/usbgwd.log" ]; then
        echo "--- usbgwd log"
        cat "$work/usbgwd.log"
    fi
    exit $status
fi

work=$USBGW_TEST_INNER
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
    python3 - "$work/sim.sock" "$1" <<'PY'
import socket, sys
s = socket.socket(socket.AF_UNIX)
s.connect(sys.argv[1])
s.sendall((sys.argv[2] + "\n").encode())
reply = b""
while not reply.endswith(b"\n") or not (reply.splitlines()[-1].startswith(b"ok") or reply.splitlines()[-1].startswith(b"error")):
    chunk = s.recv(4096)
    if not chunk:
        break
    reply += chunk
print(reply.decode().strip())
sys.exit(0 if reply.splitlines()[-1].startswith(b"ok") else 1)
PY
}

start_usbgwd() {
    "$usbgwd" --foreground --policy "$work/policy" --rundir "$rundir" \
        --config "$work/usbgwd.conf" >> "$work/usbgwd.log" 2>&1 &
    gw_pid=$!
    for _ in $(seq 100); do
        [ -S "$sock" ] && return 0
        kill -0 $gw_pid 2>/dev/null || fail "usbgwd exited at start"
        sleep 0.05
    done
    fail "usbgwd did not create $sock"
}

stop_usbgwd() {
    kill -TERM $gw_pid
    wait $gw_pid || fail "usbgwd exited with status $? on SIGTERM"
}

wait_for() { # FILE PATTERN
    for _ in $(seq 200); do
        grep -q "$2" "$1" 2>/dev/null && return 0
        sleep 0.05
    done
    fail "no '$2' in $1"
}

# TCP listeners on a free loopback port range (the HID key gets the next port)
tcp_port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
if [ "$scenario" = tcp ]; then
    printf '[usbgwd]\ntcp-address=127.0.0.1\ntcp-port-base=%s\n' "$tcp_port" > "$work/usbgwd.conf"
fi

start_usbgwd
case $scenario in
tcp)
    port=$(sed -n 's/.*0529:0001@1-1: also served on TCP 127.0.0.1:\([0-9]*\).*/\1/p' "$work/usbgwd.log")
    [ -n "$port" ] || fail "no TCP listener logged for the key"
    out=$("$peer" "tcp:127.0.0.1:$port" connect challenge $CHALLENGE expect $HASP_SECRET) || fail "tcp peer: $out"
    grep -q '^MATCH$' <<<"$out" || fail "no correct answer over TCP"
    # one peer per device, whatever the transport
    "$peer" "$sock" connect sleep 2000 > "$work/peer1.out" &
    p1=$!
    wait_for "$work/peer1.out" '^CONNECT'
    out=$("$peer" --timeout 5 "tcp:127.0.0.1:$port" closed) || fail "second peer over TCP not closed"
    wait $p1 || fail "unix peer failed"
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
