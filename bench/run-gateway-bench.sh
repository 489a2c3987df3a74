#!/bin/bash
# Runs a gateway bench under simulated keys, as tests/gateway/test-usbgwd.sh
# runs its tests: usbgw-bench-sim owns the umockdev bus and serves the keys'
# usbfs ioctls, and the bench is its child (so it, usbgwd and usbredirect,
# which it starts itself, all see the keys through libusb).
#
#   run-gateway-bench.sh ctrl|rss|share|link USBGW_BENCH_SIM BENCH USBGWD [BENCH OPTION…]
#
#   ctrl  ctrl-rtt-bench: keys hasp (1-1, usbgwd), hasp2 (1-2, in-process
#         usbredirhost) and key1 (1-5, usbredirect: the first 0529:0001 key
#         libusb lists there) plugged at start
#   rss   rss-bench: the bench plugs key1…key49 itself (once; usbgwd and
#         usbredirect take turns on them)
#   share share-rtt-bench: keys hasp (1-1, usbgwd's host path) and hasp2
#         (1-2, lent by usbgw-share through usbgwd's SPICE ingress); needs
#         --usbgwctl, --spice-worker, --usbgw-share and --acl-helper
#
# e.g. from the source root, after ninja -C build:
#   bench/run-gateway-bench.sh ctrl build/bench/usbgw-bench-sim \
#       build/bench/ctrl-rtt-bench build/gateway/usbgwd --rounds 7
# or: meson test -C build --benchmark gateway-ctrl-rtt gateway-rss -v
#   bench/run-gateway-bench.sh share build/bench/usbgw-bench-sim \
#       build/bench/share-rtt-bench build/gateway/usbgwd \
#       --usbgwctl build/cli/usbgwctl \
#       --spice-worker build/spice/usbgw-spice-worker \
#       --usbgw-share build/client-helper/usbgw-share \
#       --acl-helper tests/spice/fake-acl-helper.sh
# or: meson test -C build --benchmark gateway-share-rtt -v
#
# USBREDIRECT (default: usbredirect from PATH) picks the baseline binary
# of ctrl and rss; KEEP_BENCH_DIR=1 keeps the work directory (policy,
# usbgwd.log, usbgwd-host-path.log, usbredirect.log, usbgw-share.log).
set -euo pipefail

if [ $# -lt 4 ]; then
    sed -n '2,32p' "$0" >&2
    exit 2
fi
mode=$1 sim=$2 bench=$3 usbgwd=$4
shift 4

case $mode in
ctrl) plugs=(--plug hasp --plug hasp2 --plug key1) ;;
rss) plugs=() ;;
share | link) plugs=(--plug hasp --plug hasp2) ;;
*)
    echo "run-gateway-bench.sh: unknown mode '$mode' (ctrl, rss, share or link)" >&2
    exit 2
    ;;
esac

if [ "$mode" = ctrl ] || [ "$mode" = rss ]; then
    usbredirect=${USBREDIRECT:-$(command -v usbredirect || true)}
    if [ -z "$usbredirect" ]; then
        echo "run-gateway-bench.sh: usbredirect not found: measuring without that baseline" >&2
        set -- --no-usbredirect "$@"
        usbredirect=usbredirect
    fi
    set -- --usbredirect "$usbredirect" "$@"
fi

work=$(mktemp -d /tmp/usbgw-bench.XXXXXX)
if [ -z "${KEEP_BENCH_DIR:-}" ]; then
    trap 'rm -rf "$work"' EXIT
else
    echo "work directory: $work" >&2
fi
# share: usbgwd runs the SPICE worker as "nobody" when we are root
if [ "$mode" = share ]; then
    chmod 755 "$work"
fi

status=0
USBGW_BENCH_SIM_KEYS=${USBGW_BENCH_SIM_KEYS:-100} \
    "$sim" ${plugs[@]+"${plugs[@]}"} --control "$work/sim.sock" -- \
    "$bench" --sim-control "$work/sim.sock" --usbgwd "$usbgwd" --workdir "$work" "$@" ||
    status=$?
if [ $status -ne 0 ]; then
    for log in "$work/usbgwd.log" "$work/usbgwd-host-path.log" "$work/usbredirect.log" \
        "$work/usbgw-share.log" "$work"/*/usbgwd.log; do
        if [ -s "$log" ]; then
            echo "--- ${log#"$work"/} (last 40 lines)"
            tail -n 40 "$log"
        fi
    done
fi
exit $status
