#!/bin/sh
# sim-keys: usbgw-sim's keys as real libusb in another process sees them.
#
#   test-sim.sh USBGW_SIM USBGW_SIM_CLIENT
#
# The script runs usbgw-sim, which runs the script again as its COMMAND
# (SIM_TEST_INNER=1) for the checks that need the keys. Expected responses
# are computed by the client from the secret the check names
# (--expect-secret), never taken from the harness.
set -u

SIM=$1
CLIENT=$2
CHALLENGE=00112233445566778899aabbccddeeff
HID_SECRET=feedfacecafebeef0011223344556677 # overrides the default
FAILED=0

pass() { echo "ok - $1"; }
fail() { echo "FAIL - $1"; FAILED=1; }

# check DESCRIPTION WANTED_EXIT_STATUS COMMAND...: output goes to $OUT
check() {
    desc=$1 want=$2
    shift 2
    OUT=$("$@" 2>"$TMP/stderr")
    rc=$?
    if [ "$rc" = "$want" ]; then
        pass "$desc"
    else
        fail "$desc: exit $rc, wanted $want: $*"
        sed 's/^/    /' "$TMP/stderr"
    fi
}

# expect DESCRIPTION PATTERN: $OUT must contain a line matching PATTERN
expect() {
    if printf '%s\n' "$OUT" | grep -q -- "$2"; then
        pass "$1"
    else
        fail "$1: no line matches '$2' in:"
        printf '%s\n' "$OUT" | sed 's/^/    /'
    fi
}

ms_since() { echo $((($(date +%s%N) - $1) / 1000000)); }

ctl() { "$CLIENT" ctl "$SIM_TEST_CTL" "$@"; }
# a hotplug waiter prints "waiting" once registered; plugging before that
# races with libusb's own start-up scan
wait_registered() {
    for _ in $(seq 200); do
        grep -q '^waiting$' "$1" 2>/dev/null && return 0
        sleep 0.05
    done
    fail "hotplug waiter did not start: $(cat "$1")"
}

inner() {
    TMP=$SIM_TEST_TMP

    check "list over the control socket" 0 ctl list
    expect "hasp listed" '^hasp plugged 0529:0001 1-1 001/[0-9]* [0-9a-f]\{32\}$'
    expect "hasp2 listed" '^hasp2 plugged 0529:0001 1-2 '
    expect "hid listed with its --secret" "^hid plugged 064f:2af9 1-3.1 001/[0-9]* $HID_SECRET\$"
    expect "stick listed" '^stick plugged 0781:5567 1-4 '
    expect "list ends in ok" '^ok$'
    hasp_listed=$(printf '%s\n' "$OUT" | awk '$1 == "hasp" { print $6 }')

    check "secret hasp" 0 ctl secret hasp
    HASP_SECRET=${OUT#ok }
    [ "$HASP_SECRET" = "$hasp_listed" ] && pass "secret agrees with list" ||
        fail "secret '$HASP_SECRET' vs list '$hasp_listed'"
    check "secret hasp2" 0 ctl secret hasp2
    HASP2_SECRET=${OUT#ok }

    check "libusb enumerates the bus" 0 "$CLIENT" list
    expect "root hub" '^1d6b:0002 usb1 001/001 09 '
    expect "hub for 1-3.1" '^05e3:0608 1-3 001/002 09 '
    expect "hasp: no iSerial, vendor interface" '^0529:0001 1-1 001/[0-9]* ff ff:00:00 - "HASP-like key"$'
    expect "hid descriptors and strings" '^064f:2af9 1-3.1 001/[0-9]* 00 03:00:00 3-1234567 "HID-like key"$'
    expect "stick descriptors and strings" '^0781:5567 1-4 001/[0-9]* 00 08:06:50 4C530001 "Mass storage stick"$'

    check "hasp STALLs without a challenge" 3 "$CLIENT" 0529:0001 --port 1-1 response
    check "hasp answers per its secret" 0 \
        "$CLIENT" 0529:0001 --port 1-1 challenge $CHALLENGE --expect-secret "$HASP_SECRET"
    hasp_response=$OUT
    check "hasp2 answers per its secret" 0 \
        "$CLIENT" 0529:0001 --port 1-2 challenge $CHALLENGE --expect-secret "$HASP2_SECRET"
    [ -n "$hasp_response" ] && [ "$OUT" != "$hasp_response" ] &&
        pass "hasp and hasp2 answer differently" || fail "hasp and hasp2 both say '$OUT'"
    check "hasp2 does not answer per hasp's secret" 1 \
        "$CLIENT" 0529:0001 --port 1-2 challenge $CHALLENGE --expect-secret "$HASP_SECRET"
    check "identical keys need --port" 1 "$CLIENT" 0529:0001 challenge $CHALLENGE

    check "hid: interrupt IN waits while there is no challenge" 4 \
        "$CLIENT" 064f:2af9 response --timeout 300
    check "hid answers per the --secret given" 0 \
        "$CLIENT" 064f:2af9 challenge $CHALLENGE --expect-secret $HID_SECRET

    "$CLIENT" wait-leave 0529:0001 --port 1-2 >"$TMP/leave" 2>&1 &
    waiter=$!
    wait_registered "$TMP/leave"
    check "unplug hasp2" 0 ctl unplug hasp2
    wait $waiter && pass "libusb sees hasp2 leave" || { fail "hasp2 leave"; cat "$TMP/leave"; }
    check "list after unplug" 0 ctl list
    expect "hasp2 unplugged" '^hasp2 unplugged 0529:0001 1-2 - '
    check "gone key: no device" 5 "$CLIENT" 0529:0001 --port 1-2 response
    check "unplug twice" 1 ctl unplug hasp2
    expect "error says why" '^error: hasp2 is not plugged$'

    "$CLIENT" wait-arrive 0529:0001 --port 1-2 >"$TMP/arrive" 2>&1 &
    waiter=$!
    wait_registered "$TMP/arrive"
    check "plug hasp2" 0 ctl plug hasp2
    wait $waiter && pass "libusb sees hasp2 arrive" || { fail "hasp2 arrive"; cat "$TMP/arrive"; }
    check "replugged key forgot the challenge" 3 "$CLIENT" 0529:0001 --port 1-2 response
    check "replugged key answers" 0 \
        "$CLIENT" 0529:0001 --port 1-2 challenge $CHALLENGE --expect-secret "$HASP2_SECRET"

    start=$(date +%s%N)
    "$CLIENT" 064f:2af9 response --timeout 10000 >"$TMP/inflight" 2>&1 &
    waiter=$!
    sleep 0.5
    check "unplug hid with an interrupt URB in flight" 0 ctl unplug hid
    wait $waiter
    rc=$?
    elapsed=$(ms_since "$start")
    [ $rc = 5 ] && [ "$elapsed" -lt 5000 ] && pass "in-flight URB fails with no device (${elapsed} ms)" ||
        { fail "in-flight URB: exit $rc after $elapsed ms"; cat "$TMP/inflight"; }
    check "plug hid again" 0 ctl plug hid
    check "hid is back" 0 "$CLIENT" wait-arrive 064f:2af9

    check "plug an unknown key" 1 ctl plug nosuch
    expect "unknown key named" "^error: unknown key 'nosuch'"
    check "plug a plugged key" 1 ctl plug hasp
    expect "already plugged" '^error: hasp is already plugged$'
    check "unknown command" 1 ctl frobnicate now
    expect "unknown command named" "^error: unknown command 'frobnicate'"
    check "missing name" 1 ctl unplug
    expect "usage" '^error: usage: unplug NAME$'
    check "still serving after errors" 0 ctl secret stick
    expect "secret is hex" '^ok [0-9a-f]\{32\}$'

    exit $FAILED
}

# A holder killed in the middle of its claim (the simulator answers claims
# after USBGW_SIM_CLAIM_STALL_MS): its claim goes with it, as the kernel
# drops a dead process's claims, and the next client gets the interface.
inner_dead_holder() {
    TMP=$SIM_TEST_TMP
    "$CLIENT" 0529:0001 hold 100 >"$TMP/holder" 2>&1 &
    holder=$!
    sleep 0.7
    kill -KILL $holder
    wait $holder 2>/dev/null
    sleep 1.5 # the stalled answer has gone to the dead holder
    check "a dead holder's claim is dropped" 0 "$CLIENT" 0529:0001 claim
    expect "claimed after the holder died" '^claimed$'
    exit $FAILED
}

case ${SIM_TEST_INNER:-} in
1) inner ;;
dead-holder) inner_dead_holder ;;
esac

TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
unset LD_PRELOAD UMOCKDEV_DIR # usbgw-sim must set up umockdev itself

SIM_TEST_INNER=1 SIM_TEST_TMP=$TMP SIM_TEST_CTL=$TMP/control \
    "$SIM" --plug hasp --plug hasp2 --plug hid --plug stick --secret hid=$HID_SECRET \
    --control "$TMP/control" -- "$0" "$SIM" "$CLIENT"
[ $? = 0 ] && pass "checks under usbgw-sim" || fail "checks under usbgw-sim"

USBGW_SIM_CLAIM_STALL_MS=1000 SIM_TEST_INNER=dead-holder SIM_TEST_TMP=$TMP \
    "$SIM" --plug hasp -- "$0" "$SIM" "$CLIENT" 2>"$TMP/sim.log"
[ $? = 0 ] && pass "a dead holder's claim under usbgw-sim" || fail "a dead holder's claim under usbgw-sim"
grep -q 'claimed by a client that hung up; taken over' "$TMP/sim.log" &&
    pass "the holder died in the middle of its claim" ||
    fail "the holder was not killed in the middle of its claim: $(cat "$TMP/sim.log")"

OUT=$(printf 'list\nsecret stick\nbogus\nplug\n\nquit\nlist\n' | "$SIM" --plug stick 2>"$TMP/stderr")
[ $? = 0 ] && pass "stdin session exits 0" || fail "stdin session"
expect "stdin: list" '^stick plugged 0781:5567 1-4 001/003 '
expect "stdin: secret" '^ok 737469636b2d6e6f2d70726f746f2121$'
expect "stdin: unknown command" "^error: unknown command 'bogus'"
[ "$(printf '%s\n' "$OUT" | grep -c '^ok')" = 3 ] && pass "stdin: quit answers, then nothing more" ||
    fail "stdin: expected 3 ok lines in: $OUT"
check "stdin EOF ends usbgw-sim" 0 "$SIM" </dev/null
check "COMMAND's exit status is usbgw-sim's" 7 "$SIM" -- sh -c 'exit 7'
check "COMMAND runs under umockdev" 0 "$SIM" -- sh -c \
    'test -d "$UMOCKDEV_DIR" && case "$LD_PRELOAD" in *libumockdev-preload*) ;; *) exit 1;; esac'
check "bad --secret" 1 "$SIM" --secret hasp=xyz -- true
check "bad --plug" 1 "$SIM" --plug nosuch -- true
check "argument without --" 2 "$SIM" true

exit $FAILED
