#!/bin/bash
# A compromised dongle server cannot present a keyboard: a fake exporter
# (usbgw-fake-exporter) announces a vendor-class key over a real TLS link
# and then presents something else on the stream; the importing usbgwd's
# validating proxy refuses it before QEMU (the usbredir test peer in its
# role) sees a device, and says why in its log and audit trail. The
# honest case first, so the refusals are not the fake's own failure.
#
#   test-compromised-exporter.sh USBGWD USBGW_SIM TEST_PEER USBGWCTL FAKE_EXPORTER MAKE_CERTS
set -euo pipefail

# shellcheck source=../sim/usbgwd-test.sh
. "$(dirname "$0")/../sim/usbgwd-test.sh"

usbgwd=$1 sim=$2 peer=$3 usbgwctl_bin=$4 fake=$5 make_certs=$6
SECRET=000102030405060708090a0b0c0d0e0f
CHALLENGE=00112233445566778899aabbccddeeff
ID=dongles1/0529:0001@9-9

fail() {
    echo "FAIL: $*" >&2
    exit 1
}

if [ -z "${USBGW_TEST_INNER:-}" ]; then
    work=$(mktemp -d /tmp/usbgw-compromised.XXXXXX)
    trap 'rm -rf "$work"' EXIT
    export USBGW_TEST_INNER=$work
    status=0
    # usbgwd runs under a usbgw-sim without keys: libusb sees only its hubs
    "$sim" --control "$work/sim.sock" -- bash "$0" "$@" || status=$?
    if [ $status -ne 0 ]; then
        for f in usbgwd.log fake.log audit.log; do
            [ -f "$work/$f" ] && { echo "--- $f"; tail -n 80 "$work/$f"; }
        done
    fi
    exit $status
fi

work=$USBGW_TEST_INNER
gw_pid='' fake_pid=''
trap 'for p in $gw_pid $fake_pid; do kill $p 2>/dev/null || true; done' EXIT
bash "$make_certs" "$work/certs" dongles1 hv1 > "$work/certs.log" 2>&1 ||
    { cat "$work/certs.log"; fail "make-certs.sh"; }
port=$(gw_test_free_port)
gw_test_conf "$work" vm-peer-check=uid "link-peers=dongles1@127.0.0.1:$port" \
    "link-cert=$work/certs/hv1-cert.pem" "link-key=$work/certs/hv1-key.pem" \
    "link-ca=$work/certs/ca-cert.pem" link-reattach-interval=0
echo 'assign id 0529:0001 on gateway "dongles1" to vm "test-vm"' > "$work/policy"

ctl() { "$usbgwctl_bin" --socket "$work/control.sock" "$@"; }
socket_of() {
    ctl --json list 2>/dev/null | python3 -c '
import json, sys
for d in json.load(sys.stdin)["devices"]:
    if d["id"] == sys.argv[1] and d.get("socket"):
        print(d["socket"])' "$ID"
}

# run PRESENT: the fake exporter presenting PRESENT (announcing the key),
# usbgwd importing it; prints the test peer's output on the key's socket
run() {
    : > "$work/usbgwd.log"
    audit_lines=$(cat "$work/audit.log" 2>/dev/null | wc -l)
    "$fake" --listen "127.0.0.1:$port" --cert "$work/certs/dongles1-cert.pem" \
        --key "$work/certs/dongles1-key.pem" --ca "$work/certs/ca-cert.pem" \
        --announce 0529:0001:ff --present "$1" --secret $SECRET > "$work/fake.log" 2>&1 &
    fake_pid=$!
    for _ in $(seq 100); do grep -q READY "$work/fake.log" && break; sleep 0.05; done
    "$usbgwd" --foreground --policy "$work/policy" --rundir "$work/run" \
        --config "$work/usbgwd.conf" >> "$work/usbgwd.log" 2>&1 &
    gw_pid=$!
    sock=''
    for _ in $(seq 200); do
        sock=$(socket_of || true)
        [ -n "$sock" ] && break
        kill -0 $gw_pid 2>/dev/null || fail "usbgwd exited"
        sleep 0.05
    done
    [ -n "$sock" ] || fail "usbgwd did not import $ID: $(ctl list)"
    "$peer" --timeout 10 "$sock" "${@:2}" 2>&1 || true
    # a refusal is recorded once the proxy has closed both sides: let
    # usbgwd get there before it is stopped
    for _ in $(seq 100); do
        grep -q '"event":"deny"' <(tail -n +$((audit_lines + 1)) "$work/audit.log" 2>/dev/null) && break
        [ "$1" = 0529:0001:ff ] && break
        sleep 0.05
    done
    kill $gw_pid && wait $gw_pid || fail "usbgwd exited with status $? on SIGTERM"
    kill $fake_pid && wait $fake_pid || true
    gw_pid='' fake_pid=''
}

# the honest exporter: the key answers through the link
out=$(run 0529:0001:ff connect challenge $CHALLENGE expect $SECRET)
grep -q '^MATCH$' <<<"$out" || fail "the honest key did not answer: $out"
grep -q "^OPEN 0529:0001@9-9" "$work/fake.log" || fail "the importer never opened the key"
echo "honest exporter: the key answered through the link"

# a keyboard (HID class) behind the key's announcement, then another
# vendor's device: never a device_connect to QEMU, the stream refused
for present in 0529:0001:03 046d:c31c:ff; do
    lines=$(wc -l < "$work/audit.log")
    out=$(run "$present" connect)
    ! grep -q '^CONNECT' <<<"$out" || fail "QEMU got the device the exporter presented as $present: $out"
    grep -q "gateway dongles1 presents .* but announced 0529:0001" "$work/usbgwd.log" ||
        fail "usbgwd does not say what was presented instead of the announcement ($present)"
    tail -n +$((lines + 1)) "$work/audit.log" | python3 -c '
import json, sys
want = sys.argv[1]
for line in sys.stdin:
    e = json.loads(line)
    if e.get("event") == "deny" and e.get("device") == want and "announced" in e.get("reason", ""):
        print("audit:", e["reason"])
        sys.exit(0)
sys.exit(1)' "$ID" || fail "no deny of $ID in the audit log for $present"
    echo "exporter presenting $present: refused"
done
echo "PASS: compromised-exporter"
