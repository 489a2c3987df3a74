#!/bin/bash
# The main job: a simulated license key reaches a libvirt VM by policy.
#
# 1. plugs simulated USB devices (umockdev): a HASP-like key without a
#    serial number, and a USB stick the policy refuses;
# 2. starts usbgwd with a policy that gives the key to VM "usbgw-demo-cad";
#    it claims the key and refuses the stick;
# 3. starts a real libvirtd with usbgw's qemu.d hook, defines a tiny Linux
#    VM and runs `virsh start` — nobody edits the VM's XML;
# 4. the hook tells usbgwd, usbgwd hot-plugs the key's usb-redir device
#    through libvirt, and the guest runs the key's challenge–response;
# 5. checks the guest's answer against the key's secret, stops the VM and
#    cleans up everything it started.
#
# Run as root on Debian 12. Installs what it needs and builds first.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
builddir=${USBGW_BUILDDIR:-$root/build}
guest_dir=$builddir/tests/guest/guest
demo=/run/usbgw-demo
vm=usbgw-demo-cad
KEY_SECRET=5a17c0de0badf00d1122334455667788
CHALLENGE=$(od -An -N16 -tx1 /dev/urandom | tr -d ' \n')

say() { printf '\n== %s\n' "$*"; }
usbgwd_says() { # PATTERN: usbgwd's log lines matching it, shortened
    grep -a "$1" "$demo/usbgwd.log" | sed -E 's/^usbgw[a-z-]*-Message: [0-9:.]*: /   usbgwd: /' || true
}

if [ "$(id -u)" -ne 0 ]; then
    echo "demo: run as root (it starts libvirtd and a VM)" >&2
    exit 1
fi
"$root/tools/install-deps.sh"
if [ ! -f "$builddir/build.ninja" ]; then
    meson setup "$builddir" "$root" >/dev/null
fi
ninja -C "$builddir" >/dev/null

say "Building the tiny VM (Debian kernel + busybox; cached after the first run)"
bash "$root/tests/guest/build-guest.sh" "$guest_dir" | tail -n 1

# shellcheck source=../tests/libvirt/libvirt-rig.sh
. "$root/tests/libvirt/libvirt-rig.sh"
export LV_PREFIX=usbgw-demo- LV_LOG_DIR=$demo/libvirt
sim_pid='' gw_pid=''
cleanup() {
    [ -z "$gw_pid" ] || kill "$gw_pid" 2>/dev/null || true
    [ -z "$sim_pid" ] || kill "$sim_pid" 2>/dev/null || true
    wait 2>/dev/null || true
    lv_teardown >/dev/null 2>&1 || true
}
trap cleanup EXIT
rm -rf "$demo"
mkdir -p "$demo"

say "The policy usbgwd runs with:"
cat >"$demo/policy" <<EOF
deny with-interface 08:*:*
assign id 0529:0001 via-port "1-1" to vm "$vm" required
EOF
sed 's/^/   /' "$demo/policy"
cat >"$demo/usbgwd.conf" <<EOF
[usbgwd]
policy=$demo/policy
rundir=$demo/run
control-socket=$demo/control.sock
state=$demo/state.json
audit-log=$demo/audit.log
libvirt-uri=qemu:///system
EOF

say "Plugging simulated devices: a HASP-like key (port 1-1, no serial) and a USB stick"
"$builddir/tests/sim/usbgw-sim" --secret "hasp=$KEY_SECRET" --plug hasp --plug stick -- \
    sh -c 'env | grep -E "^(UMOCKDEV_DIR|LD_PRELOAD)=" >"$0.tmp" && mv "$0.tmp" "$0" && exec sleep 100000' \
    "$demo/sim.env" >"$demo/sim.log" 2>&1 &
sim_pid=$!
lv_wait_file "$demo/sim.env" UMOCKDEV_DIR 20

say "Starting libvirtd with usbgw's hook as /etc/libvirt/hooks/qemu.d/50-usbgw"
printf '#!/bin/sh\nexec "%s" --config "%s" "$@"\n' "$builddir/hooks/50-usbgw" "$demo/usbgwd.conf" \
    >"$demo/hook"
chmod 755 "$demo/hook"
lv_setup "$demo/hook"

say "Starting usbgwd"
# shellcheck disable=SC2046
env $(cat "$demo/sim.env") "$builddir/gateway/usbgwd" --foreground --config "$demo/usbgwd.conf" \
    >"$demo/usbgwd.log" 2>&1 &
gw_pid=$!
lv_wait_file "$demo/usbgwd.log" 'libvirt qemu:///system connected' 30
usbgwd_says 'arrived\|claimed\|bound to\|connected to libvirt'
"$builddir/cli/usbgwctl" --socket "$demo/control.sock" list | sed 's/^/   /'

say "Defining the VM \"$vm\" (no USB device in its XML) and running: virsh start $vm"
lv_define_guest "$vm" "$(lv_new_uuid)" "$guest_dir" \
    "usbgw.dev=0529:0001 usbgw.challenge=$CHALLENGE usbgw.loop=2"
start=$EPOCHREALTIME
lv_start "$vm"
echo "   VM started; the guest asks the key to answer challenge $CHALLENGE"
lv_wait_console "$vm" '^USBGW-ANSWER 0529:0001 ' 120
took=$(awk -v a="$start" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.1f", b - a }')
usbgwd_says 'hook: vm\|runs (hook)\|peer connected\|attached through libvirt'

say "The guest's own console line:"
line=$(tr -d '\r' <"$(lv_console "$vm")" | grep -a -m1 '^USBGW-ANSWER 0529:0001')
echo "   $line"
answer=${line##*response=}
expected=$("$builddir/tests/peer/usbgw-test-peer" --key-answer "$KEY_SECRET" "$CHALLENGE")

say "Stopping the VM: virsh shutdown $vm"
lv_virsh shutdown "$vm" >/dev/null
lv_wait_file "$demo/usbgwd.log" "vm \"$vm\" stopped" 60
usbgwd_says 'stopped\|session ended'
echo "   audit trail ($demo/audit.log):"
sed 's/^/   /' "$demo/audit.log"

if [ "$answer" = "$expected" ]; then
    say "The VM read the key: its answer is the one only this key's secret gives ($took s from virsh start)"
else
    say "FAILED: the guest answered '$answer', the key would say $expected"
    exit 1
fi
