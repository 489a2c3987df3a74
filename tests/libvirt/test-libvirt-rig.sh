#!/bin/bash
# meson test "libvirt-rig": smoke test of the libvirt rig (libvirt-rig.sh)
# with a real system libvirtd, QEMU (TCG) and the tiny test guest.
#
#   test-libvirt-rig.sh GUEST_DIR WORK_DIR
#
# Sets the rig up with record-hook.sh as qemu.d/50-usbgw, defines and starts
# a guest (usbgw.list=1, in loop mode so that it stays up), and checks:
#   - the hook ran for prepare/start/started with the domain's UUID;
#   - the guest console shows USBGW-GUEST-READY and a first listing;
#   - a redirdev hot-plugged with virsh attach-device --live makes QEMU
#     connect to a socket a Python listener owns, and QEMU's first packet
#     is usb_redir_hello (type 0);
#   - virsh destroy runs the hook for stopped/release;
#   - teardown leaves the host as it found it.
# Prints timings. Exit 77 when not root or libvirtd/QEMU/the guest's build
# tools are missing. GUEST_DIR is build-guest.sh's output directory (shared
# with the other guest tests); logs go to WORK_DIR/libvirt-rig-logs.
set -euo pipefail

me=test-libvirt-rig
[[ $# -eq 2 ]] || {
    echo "usage: $0 GUEST_DIR WORK_DIR" >&2
    exit 2
}
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd -P)
guest_dir=$1
logs=$2/libvirt-rig-logs
hook=$here/record-hook.sh
hook_log=/run/usbgw-test-hook-record.log # written by record-hook.sh

# shellcheck source-path=SCRIPTDIR source=libvirt-rig.sh
. "$here/libvirt-rig.sh"
if ! why=$(lv_prereqs); then
    echo "$me: SKIP: $why"
    exit 77
fi
for tool in python3 apt-get dpkg-deb cpio gcc; do
    if ! command -v "$tool" >/dev/null; then
        echo "$me: SKIP: $tool not found (Debian: python3 cpio gcc libc6-dev)"
        exit 77
    fi
done
grep -q "^log=$hook_log\$" "$hook" || {
    echo "$me: $hook does not write $hook_log" >&2
    exit 2
}

secs() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", b - a }'; }
name='' listeners=()
fail() {
    echo "$me: FAIL: $*"
    if [[ -n $name ]]; then
        echo "--- console ($(lv_console "$name")):"
        tr -d '\r' <"$(lv_console "$name")" || true
        echo "--- hook calls for $name ($hook_log):"
        grep -F "$name " "$hook_log" || true
    fi
    for f in "$logs"/listener*.out; do
        [[ ! -f $f ]] || { echo "--- $f:" && cat "$f"; }
    done
    exit 1
}
cleanup() {
    local pid
    for pid in "${listeners[@]}"; do
        kill "$pid" 2>/dev/null || true
    done
    lv_teardown || echo "$me: the rig's teardown was incomplete (see above)"
}
trap cleanup EXIT
# hook_calls: the hook's lines for our domain, "OP SUBOP EXTRA uuid=…".
hook_calls() { grep -F "$name " "$hook_log" 2>/dev/null | sed "s/^$name //" || true; }
# listen N: a listener on $logs/redirN.sock, output in $logs/listenerN.out
listen() {
    python3 "$here/usbredir-listener.py" "$logs/redir$1.sock" >"$logs/listener$1.out" 2>&1 &
    listeners+=($!)
    lv_wait_file "$logs/listener$1.out" '^LISTENING ' 10 || fail "listener $1 did not start"
}
# check_hello N: QEMU's first packet on socket N was usb_redir_hello
check_hello() {
    local hello
    lv_wait_file "$logs/listener$1.out" '^HELLO ' 10 || fail "QEMU sent nothing on socket $1"
    hello=$(grep '^HELLO ' "$logs/listener$1.out")
    [[ $hello =~ ^HELLO\ type=0\ length=[0-9]+\ version=qemu_usb-redir_guest ]] ||
        fail "QEMU's first packet on socket $1 is not usb_redir_hello: $hello"
    echo "$me: socket $1: $hello"
}
now() { echo "$EPOCHREALTIME"; }

rm -rf "$logs"
mkdir -p "$logs"
t0=$(now)
"$here/../guest/build-guest.sh" "$guest_dir" >"$logs/guest-build.log" 2>&1 || {
    cat "$logs/guest-build.log"
    fail "the guest build failed"
}
build_time=$(secs "$t0" "$(now)")

# What teardown must leave as it found it.
fingerprint() {
    local f
    for f in "$LV_QEMU_CONF" "$LV_HOOK_DEST"; do
        if [[ -e $f ]]; then sha256sum "$f"; else echo "absent $f"; fi
    done
}
before=$(fingerprint)

export LV_LOG_DIR=$logs
lv_setup "$hook" || fail "the rig's setup failed (message above)"
if ((LV_REUSED)); then
    echo "$me: reusing a running libvirtd that already runs $hook"
fi

# --- start: hook calls, guest console ---------------------------------------
name=$(lv_new_name rig)
uuid=$(lv_new_uuid)
lv_define_guest "$name" "$uuid" "$guest_dir" "usbgw.list=1 usbgw.loop=1" ||
    fail "cannot define the guest"
t0=$(now)
lv_start "$name" || fail "cannot start $name"
lv_wait_console "$name" '^USBGW-GUEST-READY$' 60 || fail "the guest did not come up"
ready_time=$(secs "$t0" "$(now)")
lv_wait_console "$name" '^USBGW-ROUND-END 1$' 60 || fail "the guest's first round did not end"
grep -Eq '^USBGW-DEVICE 1d6b:0002 ' <<<"$(tr -d '\r' <"$(lv_console "$name")")" ||
    fail "the guest did not list its xHCI root hub"

lv_wait_file "$hook_log" "^$name started begin - uuid=$uuid\$" 10 ||
    fail "no 'started begin' hook call"
want=$(printf '%s\n' "prepare begin - uuid=$uuid" "start begin - uuid=$uuid" \
    "started begin - uuid=$uuid")
[[ $(hook_calls) == "$want" ]] ||
    fail "hook calls at start are not prepare, start, started with UUID $uuid: $(hook_calls)"

# --- hot-plug: QEMU connects to our socket and says hello --------------------
listen 0
t0=$(now)
lv_attach_redirdev "$name" "$logs/redir0.sock" 2 || fail "attach-device failed"
lv_wait_file "$logs/listener0.out" '^CONNECTED ' 10 || fail "QEMU did not connect to socket 0"
# The listener stamps the accept (epoch seconds).
connect_time=$(secs "$t0" "$(sed -n 's/^CONNECTED //p' "$logs/listener0.out")")
attach_time=$LV_TIME_ATTACH
check_hello 0
grep -Fq "path='$logs/redir0.sock'" <<<"$(lv_virsh dumpxml "$name")" ||
    fail "the live domain XML has no redirdev on socket 0"

# --- destroy: the hook hears stopped and release ------------------------------
t0=$(now)
lv_virsh destroy "$name" >/dev/null || fail "virsh destroy failed"
destroy_time=$(secs "$t0" "$(now)")
lv_wait_file "$hook_log" "^$name release end - uuid=$uuid\$" 10 ||
    fail "no 'release end' hook call after destroy"
want+=$(printf '\n%s' "stopped end - uuid=$uuid" "release end - uuid=$uuid")
[[ $(hook_calls) == "$want" ]] ||
    fail "hook calls after destroy are not stopped, release with UUID $uuid: $(hook_calls)"
lv_wait_file "$logs/listener0.out" '^CLOSED$' 10 || fail "socket 0 still open after destroy"

# --- teardown -----------------------------------------------------------------
reused=$LV_REUSED
t0=$(now)
lv_teardown || fail "the rig's teardown was incomplete"
teardown_time=$(secs "$t0" "$(now)")
[[ $(fingerprint) == "$before" ]] ||
    fail "teardown did not restore qemu.conf and the hook: before: $before; after: $(fingerprint)"
if ((reused)); then
    ! lv_virsh domstate "$name" >/dev/null 2>&1 || fail "teardown left domain $name defined"
else
    [[ -z $(lv_pids libvirtd) ]] || fail "teardown left the libvirtd it started running"
fi

echo "$me: hook calls: $(hook_calls | cut -d' ' -f1-2 | paste -sd, | sed 's/,/, /g'), all with $uuid"
echo "$me: timings: guest build $build_time s; virtlogd+libvirtd start ${LV_TIME_DAEMONS} s;" \
    "first virsh answer ${LV_TIME_READY} s; virsh start ${LV_TIME_START} s;" \
    "start -> USBGW-GUEST-READY $ready_time s; attach-device $attach_time s;" \
    "attach start -> QEMU connected $connect_time s;" \
    "destroy $destroy_time s; teardown $teardown_time s"
echo "$me: PASS"
