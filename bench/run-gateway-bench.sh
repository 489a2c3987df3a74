#!/bin/bash
# Runs a gateway bench under simulated keys, as tests/gateway/test-usbgwd.sh
# runs its tests: usbgw-bench-sim owns the umockdev bus and serves the keys'
# usbfs ioctls, and the bench is its child (so it, usbgwd and usbredirect,
# which it starts itself, all see the keys through libusb).
#
#   run-gateway-bench.sh ctrl|rss USBGW_BENCH_SIM BENCH USBGWD [BENCH OPTION…]
#
#   ctrl  ctrl-rtt-bench: keys hasp (1-1, usbgwd), hasp2 (1-2, in-process
#         usbredirhost) and key1 (1-5, usbredirect: the first 0529:0001 key
#         libusb lists there) plugged at start
#   rss   rss-bench: the bench plugs key1…key49 itself (once; usbgwd and
#         usbredirect take turns on them)
#
# e.g. from the source root, after ninja -C build:
#   bench/run-gateway-bench.sh ctrl build/bench/usbgw-bench-sim \
#       build/bench/ctrl-rtt-bench build/gateway/usbgwd --rounds 7
# or: meson test -C build --benchmark gateway-ctrl-rtt gateway-rss -v
#
# USBREDIRECT (default: usbredirect from PATH) picks the baseline binary;
# KEEP_BENCH_DIR=1 keeps the work directory (policy, usbgwd.log,
# usbredirect.log).
set -euo pipefail

if [ $# -lt 4 ]; then
    sed -n '2,22p' "$0" >&2
    exit 2
fi
mode=$1 sim=$2 bench=$3 usbgwd=$4
shift 4

case $mode in
ctrl) plugs=(--plug hasp --plug hasp2 --plug key1) ;;
rss) plugs=() ;;
*)
    echo "run-gateway-bench.sh: unknown mode '$mode' (ctrl or rss)" >&2
    exit 2
    ;;
esac

usbredirect=${USBREDIRECT:-$(command -v usbredirect || true)}
if [ -z "$usbredirect" ]; then
    echo "run-gateway-bench.sh: usbredirect not found: measuring without that baseline" >&2
    set -- --no-usbredirect "$@"
    usbredirect=usbredirect
fi

work=$(mktemp -d /tmp/usbgw-bench.XXXXXX)
if [ -z "${KEEP_BENCH_DIR:-}" ]; then
    trap 'rm -rf "$work"' EXIT
else
    echo "work directory: $work" >&2
fi

status=0
USBGW_BENCH_SIM_KEYS=${USBGW_BENCH_SIM_KEYS:-100} \
    "$sim" ${plugs[@]+"${plugs[@]}"} --control "$work/sim.sock" -- \
    "$bench" --sim-control "$work/sim.sock" --usbgwd "$usbgwd" --usbredirect "$usbredirect" \
    --workdir "$work" "$@" || status=$?
if [ $status -ne 0 ]; then
    for log in "$work/usbgwd.log" "$work/usbredirect.log"; do
        if [ -s "$log" ]; then
            echo "--- $(basename "$log") (last 40 lines)"
            tail -n 40 "$log"
        fi
    done
fi
exit $status
