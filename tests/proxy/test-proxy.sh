#!/bin/bash
# GwProxy end to end: Debian's usbredirect lends a simulated key (usbgw-sim)
# over TCP to usbgw-proxy-relay, which validates it against a policy and
# relays it to the QEMU-role test peer on a unix socket. One scenario a run:
#
#   test-proxy.sh SCENARIO RELAY USBGW_SIM TEST_PEER SIM_CLIENT
#
#   lend           the key answers the peer's challenge through the proxy
#   deny           a mass-storage stick is refused; the peer never sees CONNECT
#   garbage        a client sending garbage ends its session; the relay serves
#                  the next client
#   client-killed  usbredirect killed mid-transfer: the peer sees
#                  device_disconnect, the relay serves the next client
set -euo pipefail
[ -n "${USBGW_TEST_TRACE:-}" ] && set -x

scenario=$1 relay=$2 sim=$3 peer=$4 sim_client=$5

HASP_SECRET=000102030405060708090a0b0c0d0e0f
CHALLENGE=00112233445566778899aabbccddeeff

if [ -z "${USBGW_TEST_INNER:-}" ]; then
    work=$(mktemp -d /tmp/usbgw-proxy-test.XXXXXX)
    trap 'rm -rf "$work"' EXIT
    export USBGW_TEST_INNER=$work
    status=0
    "$sim" --secret "hasp=$HASP_SECRET" --plug hasp --plug stick --control "$work/sim.sock" \
        -- bash "$0" "$@" || status=$?
    if [ $status -ne 0 ]; then
        for f in relay.out relay.err usbredirect.log; do
            [ -f "$work/$f" ] && { echo "--- $f"; cat "$work/$f"; }
        done
    fi
    exit $status
fi

work=$USBGW_TEST_INNER
qsock=$work/qemu.sock
cat > "$work/policy" <<'POLICY'
deny with-interface 08:*:*
share id 0529:0001 user "alice" to vm "test-vm"
share id 0781:5567 user "alice" to vm "test-vm"
POLICY

fail() {
    echo "FAIL: $*" >&2
    exit 1
}

wait_for() { # FILE PATTERN
    for _ in $(seq 200); do
        grep -q "$2" "$1" 2>/dev/null && return 0
        sleep 0.05
    done
    fail "no '$2' in $1"
}

"$relay" --policy "$work/policy" --user alice --vm test-vm --qemu "$qsock" \
    --client-tcp 127.0.0.1:0 > "$work/relay.out" 2> "$work/relay.err" &
relay_pid=$!
usbredirect_pid=
cleanup() {
    if [ -n "$usbredirect_pid" ]; then kill "$usbredirect_pid" 2>/dev/null || true; fi
    kill "$relay_pid" 2>/dev/null || true
    wait 2>/dev/null || true
}
trap cleanup EXIT
wait_for "$work/relay.out" '^LISTEN client tcp:'
port=$(sed -n 's/^LISTEN client tcp:127.0.0.1:\([0-9]*\)$/\1/p' "$work/relay.out")

lend() { # VID:PID
    usbredirect --device "$1" --to "127.0.0.1:$port" >> "$work/usbredirect.log" 2>&1 &
    usbredirect_pid=$!
}

relay_alive() {
    kill -0 "$relay_pid" 2>/dev/null || fail "the relay died"
}

# The key through the proxy: the peer's challenge gets the key's answer.
serve_key() { # SESSION
    lend 0529:0001
    out=$("$peer" --timeout 10 "$qsock" connect challenge $CHALLENGE expect $HASP_SECRET) ||
        fail "peer through the proxy: $out"
    echo "$out"
    grep -q '^CONNECT 0529:0001' <<< "$out" || fail "no CONNECT 0529:0001: $out"
    grep -q '^MATCH$' <<< "$out" || fail "no MATCH: $out"
    grep -q "^DECISION $1 allow 0529:0001" "$work/relay.out" || fail "no allow decision logged"
    grep -q "^CONNECTED $1 0529:0001" "$work/relay.out" || fail "no CONNECTED logged"
    # the peer hung up: the session ends, usbredirect loses its connection
    wait_for "$work/relay.out" "^END $1 qemu-closed "
    grep "^END $1 " "$work/relay.out"
    grep -q "^END $1 .* packets c>q [1-9][0-9]* q>c [1-9]" "$work/relay.out" ||
        fail "session $1: packets not counted"
    wait "$usbredirect_pid" 2>/dev/null || true
    usbredirect_pid=
}

case $scenario in
lend)
    serve_key 1
    relay_alive
    serve_key 2
    ;;
deny)
    lend 0781:5567
    out=$("$peer" --timeout 10 "$qsock" closed) || fail "peer not closed: $out"
    echo "$out"
    grep -q CONNECT <<< "$out" && fail "the peer saw the refused stick: $out"
    wait_for "$work/relay.out" '^DENIED 1 '
    grep -q '^DECISION 1 deny 0781:5567' "$work/relay.out" || fail "no deny decision logged"
    grep -q '^END 1 denied ' "$work/relay.out" || fail "session 1 did not end as denied"
    grep '^DENIED 1 ' "$work/relay.out"
    # the client is gone and the relay serves the key next
    wait "$usbredirect_pid" 2>/dev/null || true; usbredirect_pid=
    relay_alive
    serve_key 2
    ;;
garbage)
    "$peer" --timeout 10 "$qsock" closed > "$work/peer1.out" &
    peer1=$!
    python3 - "$port" <<'PY'
import socket, sys, time
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])))
s.sendall(b"\xff\xff\xff\xff\x00\x00\x10\x00" + b"\x00" * 56)
s.settimeout(5)
try:
    while s.recv(4096):
        pass
except OSError:
    pass
PY
    wait "$peer1" || fail "the QEMU side was not closed after the garbage"
    grep -q CONNECT "$work/peer1.out" && fail "garbage reached QEMU as a device"
    wait_for "$work/relay.out" '^END 1 client-protocol '
    grep '^END 1 ' "$work/relay.out"
    relay_alive
    serve_key 2
    ;;
client-killed)
    lend 0529:0001
    "$peer" --timeout 15 "$qsock" connect challenge $CHALLENGE expect $HASP_SECRET \
        hammer $HASP_SECRET > "$work/peer1.out" &
    peer1=$!
    wait_for "$work/peer1.out" '^MATCH$'
    sleep 0.3
    kill -9 "$usbredirect_pid"
    wait "$usbredirect_pid" 2>/dev/null || true; usbredirect_pid=
    wait "$peer1" || fail "the peer did not see the device leave: $(cat "$work/peer1.out")"
    cat "$work/peer1.out"
    grep -q '^HAMMER [1-9][0-9]* answers$' "$work/peer1.out" || fail "no answers before the kill"
    wait_for "$work/relay.out" '^END 1 client-closed '
    relay_alive
    # the kernel drops a killed process's claims at once; the simulator
    # does not always learn that the process is gone (umockdev), so give
    # the next client a freshly plugged key
    "$sim_client" ctl "$work/sim.sock" unplug hasp >/dev/null || fail "sim: unplug"
    "$sim_client" ctl "$work/sim.sock" plug hasp >/dev/null || fail "sim: plug"
    serve_key 2
    ;;
*)
    fail "unknown scenario $scenario"
    ;;
esac
# the relay stops cleanly (sanitizer builds: no report, no leak)
kill -TERM "$relay_pid"
relay_status=0
wait "$relay_pid" || relay_status=$?
[ $relay_status -eq 0 ] || fail "the relay exited with status $relay_status"
if grep -E 'ERROR: (Address|Leak)Sanitizer|runtime error:' "$work/relay.err"; then
    fail "sanitizer report from the relay"
fi
echo "PASS: $scenario"
