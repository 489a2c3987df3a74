#!/bin/bash
# The main job: a simulated license key reaches a real VM through usbgwd.
#
# 1. checks the example policy against a sample device list;
# 2. plugs three simulated USB devices (umockdev): a HASP-like key, a
#    CodeMeter-like HID key and a USB stick;
# 3. starts usbgwd with the example policy: it claims what the policy
#    assigns and refuses the stick;
# 4. boots a tiny Linux VM in QEMU whose usb-redir device connects to the
#    key's socket; the guest runs the key's challenge–response;
# 5. checks the guest's answer against the key's secret, and cleans up.
#
# Run as root on Debian 12. Installs what it needs and builds first.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
builddir=${USBGW_BUILDDIR:-$root/build}
KEY_SECRET=5a17c0de0badf00d1122334455667788
CHALLENGE=$(od -An -N16 -tx1 /dev/urandom | tr -d ' \n')

say() { printf '\n== %s\n' "$*"; }

if [ -z "${USBGW_DEMO_INNER:-}" ]; then
    "$root/tools/install-deps.sh"
    if [ ! -f "$builddir/build.ninja" ]; then
        meson setup "$builddir" "$root" >/dev/null
    fi
    ninja -C "$builddir" >/dev/null

    say "The example policy (data/usbgw.policy):"
    grep -v '^#' "$root/data/usbgw.policy" | grep -v '^$' | sed 's/^/   /'
    say "What it decides for a sample inventory (usbgwctl policy check):"
    "$builddir/gateway/usbgwctl" policy check "$root/data/usbgw.policy" \
        --devices "$root/data/sample-devices.json"

    say "Building the tiny VM (Debian kernel + busybox; cached after the first run)"
    bash "$root/tests/guest/build-guest.sh" "$builddir/tests/guest/guest" | tail -n 1

    work=$(mktemp -d /tmp/usbgw-demo.XXXXXX)
    trap 'rm -rf "$work"' EXIT
    say "Plugging simulated devices: a HASP-like key (port 1-1, no serial), a HID key, a USB stick"
    USBGW_DEMO_INNER=$work CHALLENGE=$CHALLENGE \
        "$builddir/tests/sim/usbgw-sim" --secret "hasp=$KEY_SECRET" \
        --plug hasp --plug hid --plug stick -- bash "$0"
    exit $?
fi

# Inside usbgw-sim: the simulated devices are on the (emulated) USB bus.
work=$USBGW_DEMO_INNER
rundir=$work/run
sock=$rundir/vm/build-01/0529-0001-at-1-1.sock
gwlog=$work/usbgwd.log

say "Starting usbgwd with the example policy"
cat > "$work/usbgwd.conf" <<CONF
[usbgwd]
control-socket=$work/control.sock
state=$work/state.json
audit-log=$work/audit.log
libvirt-uri=
CONF
"$builddir/gateway/usbgwd" --foreground --policy "$root/data/usbgw.policy" \
    --rundir "$rundir" --config "$work/usbgwd.conf" > "$gwlog" 2>&1 &
gw=$!
cleanup() {
    kill "$gw" 2>/dev/null && wait "$gw" 2>/dev/null
    return 0
}
trap cleanup EXIT
for _ in $(seq 100); do [ -S "$sock" ] && break; sleep 0.05; done
[ -S "$sock" ] || { cat "$gwlog"; echo "demo: usbgwd did not serve the key" >&2; exit 1; }
sed -n 's/^usbgwd-Message: [0-9:.]*: /   usbgwd: /p' "$gwlog"

say "Starting the VM \"build-01\" with a usb-redir device on the key's socket"
echo "   QEMU (TCG) -device qemu-xhci -chardev socket,path=$sock -device usb-redir"
echo "   the guest is asked to send the challenge $CHALLENGE"
start=$(date +%s.%N)
USBGW_GUEST_APPEND="usbgw.dev=0529:0001 usbgw.challenge=$CHALLENGE" \
    bash "$root/tests/guest/run-guest.sh" "$builddir/tests/guest/guest" \
    -chardev "socket,id=key0,path=$sock" -device usb-redir,chardev=key0,bus=xhci.0 \
    > "$work/console.log" 2>&1 || { cat "$work/console.log"; exit 1; }
took=$(awk "BEGIN { printf \"%.1f\", $(date +%s.%N) - $start }")
grep -a 'peer connected\|peer session ended' "$gwlog" | sed 's/^usbgwd-Message: [0-9:.]*: /   usbgwd: /'

say "The guest's own console line:"
line=$(grep -a '^USBGW-ANSWER 0529:0001' "$work/console.log" | tr -d '\r' || true)
echo "   $line"
answer=${line##*response=}
expected=$("$builddir/tests/peer/usbgw-test-peer" --key-answer "$KEY_SECRET" "$CHALLENGE")
if [ -n "$line" ] && [ "$answer" = "$expected" ]; then
    say "The VM read the key: its answer is the one only this key's secret gives ($took s from QEMU start)"
else
    say "FAILED: the guest answered '${answer:-nothing}', the key would say $expected"
    exit 1
fi
