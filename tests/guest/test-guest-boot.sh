#!/bin/bash
# meson test "guest-boot": smoke test of the end-to-end test guest.
#
#   test-guest-boot.sh BUILDDIR
#
# Builds the guest (cached in BUILDDIR/guest), boots it with an emulated
# usb-tablet (0627:0001) and checks that the probe lists the tablet and,
# asked to probe it as a key, reports a clean USBGW-ERROR (a tablet is no
# key). Prints build and boot timings. Exit 77 (skip) without QEMU or the
# tools the build needs; a failed download is a failure.
set -euo pipefail
shopt -s lastpipe

me=test-guest-boot
[[ $# -eq 1 ]] || {
    echo "usage: $0 BUILDDIR" >&2
    exit 2
}
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd -P)
out=$1/guest
log=$1/guest-boot.log
qemu=${USBGW_GUEST_QEMU:-qemu-system-x86_64}
for tool in "$qemu" apt-get dpkg-deb cpio gcc; do
    if ! command -v "$tool" >/dev/null; then
        echo "$me: SKIP: $tool not found (Debian: qemu-system-x86 cpio gcc libc6-dev)"
        exit 77
    fi
done

secs() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.1f s", b - a }'; }

t0=$EPOCHREALTIME
"$here/build-guest.sh" "$out"
build_time=$(secs "$t0" "$EPOCHREALTIME")

# One boot: list everything, and probe the tablet as if it were a key.
# The tablet is found via usbgw.dev before the listing: 1 s of settling is plenty.
export USBGW_GUEST_APPEND="usbgw.list=1 usbgw.settle=1 usbgw.dev=0627:0001"
USBGW_GUEST_APPEND+=" usbgw.challenge=000102030405060708090a0b0c0d0e0f"
ready=- done_=-
: >"$log"
t0=$EPOCHREALTIME
set +e
"$here/run-guest.sh" "$out" -device usb-tablet,bus=xhci.0 </dev/null 2>&1 |
    while IFS= read -r line; do
        line=${line//$'\r'/}
        printf '%s\n' "$line" >>"$log"
        case $line in
        *USBGW-GUEST-READY*) ready=$(secs "$t0" "$EPOCHREALTIME") ;;
        *USBGW-PROBE-DONE*) done_=$(secs "$t0" "$EPOCHREALTIME") ;;
        esac
    done
rc=${PIPESTATUS[0]}
set -e
total=$(secs "$t0" "$EPOCHREALTIME")

grep -a 'USBGW-' "$log" || true
echo "$me: timings: build $build_time; QEMU start -> USBGW-GUEST-READY $ready," \
    "-> USBGW-PROBE-DONE $done_, -> QEMU exit $total"

fail=()
[[ $rc -eq 0 ]] || fail+=("run-guest.sh exited with $rc")
grep -aq 'USBGW-GUEST-READY' "$log" || fail+=("no USBGW-GUEST-READY")
grep -aq 'USBGW-DEVICE 0627:0001 ' "$log" || fail+=("the tablet 0627:0001 was not listed")
grep -aq 'USBGW-ERROR 0627:0001 ' "$log" || fail+=("no USBGW-ERROR for the tablet probed as a key")
grep -aq 'USBGW-ANSWER' "$log" && fail+=("a tablet answered like a key")
grep -aq 'USBGW-PROBE-DONE' "$log" || fail+=("no USBGW-PROBE-DONE (probe crashed or hung?)")
if [[ ${#fail[@]} -gt 0 ]]; then
    echo "$me: FAIL: ${fail[*]}; full console ($log):"
    cat -v "$log"
    exit 1
fi
echo "$me: PASS"
