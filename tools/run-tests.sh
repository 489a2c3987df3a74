#!/bin/bash
# The test command: installs what is missing, builds, runs the whole suite
# and ends with "N passed, N failed[, N skipped]".
#
#   tools/run-tests.sh [--werror] [--sanitize] [--builddir DIR] [-- MESON-TEST-ARGS…]
#
# --sanitize builds with AddressSanitizer + UndefinedBehaviorSanitizer.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
builddir=
werror=false
sanitize=false
while [ $# -gt 0 ]; do
    case "$1" in
    --werror) werror=true ;;
    --sanitize) sanitize=true ;;
    --builddir) builddir=$2; shift ;;
    --) shift; break ;;
    *) echo "usage: $0 [--werror] [--sanitize] [--builddir DIR] [-- MESON-TEST-ARGS…]" >&2; exit 2 ;;
    esac
    shift
done
if [ -z "$builddir" ]; then
    builddir=$root/build
    $sanitize && builddir=$root/build-sanitize
fi

"$root/tools/install-deps.sh"

setup_args=(-Dwerror="$werror")
if $sanitize; then
    setup_args+=(-Db_sanitize=address,undefined -Dbuildtype=debug)
    # The simulated dongles preload libumockdev-preload ahead of the ASan
    # runtime; that order is expected here.
    export ASAN_OPTIONS=verify_asan_link_order=0:detect_leaks=1:halt_on_error=1:abort_on_error=1
    export UBSAN_OPTIONS=halt_on_error=1:abort_on_error=1:print_stacktrace=1
    # leaks of the test rig's own libraries, not usbgw's (tests/lsan.supp)
    export LSAN_OPTIONS=suppressions=$root/tests/lsan.supp:print_suppressions=0
fi
if [ -f "$builddir/build.ninja" ]; then
    meson configure "$builddir" "${setup_args[@]}" >/dev/null
else
    meson setup "$builddir" "$root" "${setup_args[@]}"
fi
ninja -C "$builddir"

# usbgw-sim sends the simulated keys' uevents as unix datagrams, and
# umockdev aborts the simulator when a receiver's queue is full. A booted
# Debian host has systemd's 512 queued datagrams per socket; a bare
# container has the kernel's default of 10, which hotplug churn fills.
qlen=/proc/sys/net/unix/max_dgram_qlen
if [ -w "$qlen" ] && [ "$(cat "$qlen")" -lt 512 ]; then
    echo "run-tests: net.unix.max_dgram_qlen $(cat "$qlen") -> 512 (as systemd sets it)"
    echo 512 > "$qlen"
fi

status=0
meson test -C "$builddir" --print-errorlogs "$@" || status=$?

python3 - "$builddir/meson-logs/testlog.json" <<'PY'
import json, sys
counts = {"passed": 0, "failed": 0, "skipped": 0}
with open(sys.argv[1]) as log:
    for line in log:
        result = json.loads(line)["result"]
        if result in ("OK", "EXPECTEDFAIL"):
            counts["passed"] += 1
        elif result == "SKIP":
            counts["skipped"] += 1
        else:
            counts["failed"] += 1
line = f"{counts['passed']} passed, {counts['failed']} failed"
if counts["skipped"]:
    line += f", {counts['skipped']} skipped"
print(line)
PY
exit $status
