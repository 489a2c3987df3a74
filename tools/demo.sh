#!/bin/bash
# The main job, for now: check the shipped example policy against a shipped
# sample device list and print each device's decision. (Once the gateway can
# attach a simulated dongle to a real VM, this becomes that demo.)
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
builddir=$root/build

"$root/tools/install-deps.sh"
if [ ! -f "$builddir/build.ninja" ]; then
    meson setup "$builddir" "$root" >/dev/null
fi
ninja -C "$builddir" >/dev/null

cd "$root"
echo "== The example policy (data/usbgw.policy):"
grep -v '^#' data/usbgw.policy | grep -v '^$' | sed 's/^/   /'
echo
echo "== Who gets each device of data/sample-devices.json when VM cad-02 starts:"
"$builddir/gateway/usbgwctl" policy check data/usbgw.policy \
    --devices data/sample-devices.json --vm cad-02
echo
echo "== What QEMU's own usb-redir filter for cad-02 would be:"
"$builddir/gateway/usbgwctl" policy filter data/usbgw.policy --vm cad-02
