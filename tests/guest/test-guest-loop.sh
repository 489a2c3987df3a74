#!/bin/bash
# meson test "guest-loop": the probe's loop mode and the guest's ACPI shutdown.
#
#   test-guest-loop.sh BUILDDIR
#
# Boot 1 (usbgw.loop=1, unbounded): an emulated usb-tablet (0627:0001) is
# listed and probed every round; it is unplugged (device_del) and must be
# reported "not found" by a later round, plugged back (device_add) and must
# be listed and probed again; then an ACPI shutdown (system_powerdown) must
# power the guest off cleanly (USBGW-GUEST-ACPI-POWEROFF, QEMU exits 0).
# Boot 2 (usbgw.loop=1 usbgw.rounds=2): exactly two rounds, USBGW-PROBE-DONE,
# and the guest stays up (loop mode never powers off by itself) until the
# ACPI shutdown. Prints timings. Exit 77 (skip) without QEMU, python3 or the
# tools the guest build needs.
set -euo pipefail

me=test-guest-loop
[[ $# -eq 1 ]] || {
    echo "usage: $0 BUILDDIR" >&2
    exit 2
}
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd -P)
out=$1/guest
qemu=${USBGW_GUEST_QEMU:-qemu-system-x86_64}
for tool in "$qemu" python3 apt-get dpkg-deb cpio gcc; do
    if ! command -v "$tool" >/dev/null; then
        echo "$me: SKIP: $tool not found (Debian: qemu-system-x86 python3 cpio gcc libc6-dev)"
        exit 77
    fi
done

work=$(mktemp -d "${TMPDIR:-/tmp}/usbgw-guest-loop.XXXXXX")
qemu_pid=
cleanup() {
    if [[ -n $qemu_pid ]] && kill -0 "$qemu_pid" 2>/dev/null; then
        kill "$qemu_pid" 2>/dev/null || true
        wait "$qemu_pid" 2>/dev/null || true
    fi
    rm -rf "$work"
}
trap cleanup EXIT

secs() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.1f s", b - a }'; }
fail() {
    echo "$me: FAIL: $*"
    if [[ -n ${console:-} && -f $console ]]; then
        echo "--- console ($console):"
        console_text
    fi
    exit 1
}
hmp() { python3 "$here/qemu-hmp.py" "$work/monitor.sock" "$@" >/dev/null; }

# boot NAME APPEND: start the guest in the background with a tablet and a
# monitor; its console goes to $console.
boot() {
    console=$work/$1.log
    : >"$console"
    USBGW_GUEST_APPEND=$2 USBGW_GUEST_TIMEOUT=120 "$here/run-guest.sh" "$out" \
        -device usb-tablet,bus=xhci.0,id=tab \
        -monitor "unix:$work/monitor.sock,server=on,wait=off" </dev/null >"$console" 2>&1 &
    qemu_pid=$!
}
# The console without carriage returns. Matching goes through here-strings,
# not pipes: with pipefail, "producer | grep -q" can fail on SIGPIPE.
console_text() { tr -d '\r' <"$console"; }
# console_has PATTERN: an extended regex matches a console line.
console_has() { grep -Eq "$1" <<<"$(console_text)"; }
# wait_console PATTERN SECONDS
wait_console() {
    local end=$((SECONDS + $2))
    until console_has "$1"; do
        kill -0 "$qemu_pid" 2>/dev/null || fail "QEMU exited while waiting for /$1/"
        ((SECONDS < end)) || fail "no /$1/ on the console within $2 s"
        sleep 0.1
    done
}
last_round() { sed -n 's/^USBGW-ROUND-END \([0-9]*\)$/\1/p' <<<"$(console_text)" | tail -n1; }
# round N: the lines of round N, without its markers
round() {
    awk -v n="$1" '$0 == "USBGW-ROUND " n { on = 1; next }
        $0 == "USBGW-ROUND-END " n { exit }
        on' <<<"$(console_text)"
}
# round_has N PATTERN
round_has() { grep -Eq "$2" <<<"$(round "$1")"; }
# wait_round_where PATTERN AFTER SECONDS: sets $found to the first complete
# round after round AFTER with a line matching PATTERN.
wait_round_where() {
    local end=$((SECONDS + $3))
    found=$(($2 + 1))
    while :; do
        if console_has "^USBGW-ROUND-END $found\$"; then
            ! round_has "$found" "$1" || return 0
            found=$((found + 1))
            continue
        fi
        kill -0 "$qemu_pid" 2>/dev/null || fail "QEMU exited while waiting for a round with /$1/"
        ((SECONDS < end)) || fail "no round after $2 with /$1/ within $3 s"
        sleep 0.1
    done
}
# acpi_shutdown: system_powerdown, and QEMU must exit 0 on its own, soon.
acpi_shutdown() {
    local t0=$EPOCHREALTIME rc=0 end=$((SECONDS + 30))
    hmp system_powerdown || fail "system_powerdown failed"
    while kill -0 "$qemu_pid" 2>/dev/null; do
        ((SECONDS < end)) || fail "the guest ignored the ACPI shutdown for 30 s"
        sleep 0.05
    done
    wait "$qemu_pid" || rc=$?
    qemu_pid=
    powerdown_time=$(secs "$t0" "$EPOCHREALTIME")
    [[ $rc -eq 0 ]] || fail "QEMU exited with $rc after the ACPI shutdown"
    console_has '^USBGW-GUEST-ACPI-POWEROFF$' || fail "no USBGW-GUEST-ACPI-POWEROFF on the console"
}

t0=$EPOCHREALTIME
"$here/build-guest.sh" "$out"
build_time=$(secs "$t0" "$EPOCHREALTIME")

# --- boot 1: the tablet leaves and comes back while the probe loops ---------
key="usbgw.dev=0627:0001 usbgw.challenge=000102030405060708090a0b0c0d0e0f"
tablet='^USBGW-DEVICE 0627:0001 '
t0=$EPOCHREALTIME
boot loop "usbgw.loop=1 usbgw.list=1 usbgw.settle=1 $key"
wait_console '^USBGW-ROUND-END 2$' 60
ready_time=$(secs "$t0" "$EPOCHREALTIME")
for n in 1 2; do
    round_has "$n" "$tablet" || fail "round $n did not list the tablet"
    round_has "$n" '^USBGW-ERROR 0627:0001 (challenge|response) ' ||
        fail "round $n did not probe the tablet (want a failed challenge or response transfer)"
done
t1=$EPOCHREALTIME
hmp "device_del tab" || fail "device_del failed"
wait_round_where '^USBGW-ERROR 0627:0001 not found$' "$(last_round)" 20
gone=$found gone_time=$(secs "$t1" "$EPOCHREALTIME")
! round_has "$gone" "$tablet" || fail "round $gone lists the unplugged tablet"
t1=$EPOCHREALTIME
hmp "device_add usb-tablet,bus=xhci.0,id=tab" || fail "device_add failed"
wait_round_where "$tablet" "$gone" 20
back=$found back_time=$(secs "$t1" "$EPOCHREALTIME")
round_has "$back" '^USBGW-ERROR 0627:0001 (challenge|response) ' ||
    fail "round $back lists the tablet again but did not probe it"
acpi_shutdown
loop_powerdown=$powerdown_time
! console_has '^USBGW-PROBE-DONE$' || fail "unbounded loop mode printed USBGW-PROBE-DONE"
# Every round has its markers and one answer line for the one key.
rounds=$(last_round)
for ((n = 1; n <= rounds; n++)); do
    [[ $(grep -Ec '^USBGW-(ANSWER|ERROR) 0627:0001 ' <<<"$(round "$n")") -eq 1 ]] ||
        fail "round $n has not exactly one ANSWER/ERROR line for the key"
done
echo "$me: boot 1: $rounds rounds; tablet gone in round $gone, back in round $back"

# --- boot 2: usbgw.rounds bounds the loop; the guest then waits -------------
boot bounded "usbgw.loop=1 usbgw.rounds=2 $key"
wait_console '^USBGW-PROBE-DONE$' 60
sleep 2 # time for a third round or a poweroff, neither of which may come
console_has '^USBGW-ROUND-END 2$' || fail "no round 2 before USBGW-PROBE-DONE"
! console_has '^USBGW-ROUND 3$' || fail "a third round despite usbgw.rounds=2"
kill -0 "$qemu_pid" 2>/dev/null || fail "the guest powered off by itself in loop mode"
acpi_shutdown

grep -a 'USBGW-' "$work/loop.log" | tr -d '\r'
echo "$me: timings: build $build_time; QEMU start -> round 2 done $ready_time;" \
    "device_del -> 'not found' round $gone_time; device_add -> listed again $back_time;" \
    "ACPI shutdown -> QEMU exit $loop_powerdown (looping), $powerdown_time (after the rounds)"
echo "$me: PASS"
