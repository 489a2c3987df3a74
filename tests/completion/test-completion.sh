#!/bin/bash
# usbgwctl's bash completion against a running usbgwd:
#
#   test-completion.sh USBGWCTL USBGWD USBGW_SIM COMPLETION_FILE
#
# The script re-runs itself under usbgw-sim (two simulated keys), starts
# usbgwd without libvirt, tells it by a hook call that a VM runs, then
# sources bash-completion and the completion file and checks COMPREPLY:
# commands, options, the device ids `usbgwctl list --json` has, the VM
# names `usbgwctl vms --json` has, and nothing (and no noise) when usbgwd
# cannot be reached.
set -euo pipefail

# shellcheck source=../sim/usbgwd-test.sh
. "$(dirname "$0")/../sim/usbgwd-test.sh"

usbgwctl_bin=$1 usbgwd=$2 sim=$3 completion=$4

bash_completion=/usr/share/bash-completion/bash_completion
if [ ! -r "$bash_completion" ]; then
    echo "SKIP: bash-completion is not installed ($bash_completion)"
    exit 77
fi

if [ -z "${USBGW_TEST_INNER:-}" ]; then
    work=$(mktemp -d /tmp/usbgw-completion.XXXXXX)
    trap 'rm -rf "$work"' EXIT
    export USBGW_TEST_INNER=$work
    status=0
    "$sim" --plug hasp --plug hid --control "$work/sim.sock" -- bash "$0" "$@" || status=$?
    if [ $status -ne 0 ] && [ -f "$work/usbgwd.log" ]; then
        echo "--- usbgwd log"
        cat "$work/usbgwd.log"
    fi
    exit $status
fi

work=$USBGW_TEST_INNER
gw_pid=''
trap '[ -z "$gw_pid" ] || kill "$gw_pid" 2>/dev/null || true' EXIT

fail() {
    echo "FAIL: $*" >&2
    exit 1
}

sock=$work/control.sock
cat > "$work/policy" <<'POLICY'
assign id 0529:0001 to vm "test-vm"
POLICY
gw_test_conf "$work" "vm-pid-file=$work/{vm}.pid"
"$usbgwd" --foreground --policy "$work/policy" --rundir "$work/run" --config "$work/usbgwd.conf" \
    >> "$work/usbgwd.log" 2>&1 &
gw_pid=$!
for _ in $(seq 100); do
    "$usbgwctl_bin" --socket "$sock" list 2>/dev/null | grep -q '^0529:0001@1-1 ' && break
    kill -0 "$gw_pid" 2>/dev/null || fail "usbgwd exited at start"
    sleep 0.05
done

# libvirt's hook says the VM runs (the hook command is root's)
python3 - "$sock" <<'PY'
import json, socket, sys
s = socket.socket(socket.AF_UNIX)
s.connect(sys.argv[1])
s.sendall(json.dumps({"command": "hook", "domain": "test-vm",
                      "uuid": "8c1f0a2e-5d2b-4c1e-9a57-3f6b1e2d4c5a",
                      "op": "started", "sub_op": "begin"}).encode() + b"\n")
reply = json.loads(s.makefile().readline())
if not reply.get("ok"):
    sys.exit("hook started refused: %r" % reply)
PY

# What the completion must offer, read from usbgwd with a JSON parser
want_ids=$("$usbgwctl_bin" --socket "$sock" list --json |
    python3 -c 'import json, sys; print(" ".join(sorted(d["id"] for d in json.load(sys.stdin)["devices"])))')
want_vms=$("$usbgwctl_bin" --socket "$sock" vms --json |
    python3 -c 'import json, sys; print(" ".join(sorted(v["name"] for v in json.load(sys.stdin)["vms"])))')
[[ " $want_ids " == *" 0529:0001@1-1 "* ]] || fail "usbgwd does not list the HASP key: $want_ids"
[[ $(wc -w <<<"$want_ids") -ge 2 ]] || fail "usbgwd lists fewer than two keys: $want_ids"
[ "$want_vms" = test-vm ] || fail "usbgwd's running VMs: '$want_vms', expected test-vm"

# complete WORD… : the sorted COMPREPLY for a command line whose last word
# is being completed, split into words as readline splits them (a ':' is a
# word of its own)
complete_line() {
    bash --norc --noprofile -c '
        source "$1" || exit 1
        source "$2" || exit 1
        shift 2
        COMP_WORDS=("$@")
        COMP_CWORD=$(($# - 1))
        # the line as typed: no blanks around a ":" word
        COMP_LINE=$1
        prev=$1
        for word in "${@:2}"; do
            if [ "$word" = : ] || [ "$prev" = : ]; then
                COMP_LINE+=$word
            else
                COMP_LINE+=" $word"
            fi
            prev=$word
        done
        COMP_POINT=${#COMP_LINE}
        COMPREPLY=()
        _usbgwctl usbgwctl "${COMP_WORDS[COMP_CWORD]}" "${COMP_WORDS[COMP_CWORD - 1]}"
        printf "%s\n" "${COMPREPLY[@]}" | sort | tr "\n" " " | sed "s/ $//"
    ' complete "$bash_completion" "$completion" "$@"
}

check() { # WANT WORD…
    local want=$1 got
    shift
    got=$(complete_line "$@" 2>"$work/stderr") || fail "completing '$*' failed: $(cat "$work/stderr")"
    [ "$got" = "$want" ] || fail "completing '$*': got '$got', expected '$want'"
    [ ! -s "$work/stderr" ] || fail "completing '$*' printed: $(cat "$work/stderr")"
    echo "ok: '$*' -> '$got'"
}

u=$usbgwctl_bin
# commands and options
check "assign events list policy release share shares status unshare vms" "$u" ""
check "share shares status" "$u" s
check "check filter reload" "$u" policy ""
check "--json --socket" "$u" --socket "$sock" release --
check "--json --socket --ttl --user --vv" "$u" share --
check "--devices --gateway --group --json --user --vm --vm-uuid" "$u" policy check --
# device ids and VM names from the running usbgwd
check "$want_ids" "$u" --socket "$sock" assign ""
check "0529:0001@1-1" "$u" --socket "$sock" release 0529
check "0001@1-1" "$u" --socket "$sock" release 0529 : 0
check "test-vm" "$u" --socket "$sock" assign 0529:0001@1-1 ""
check "test-vm" "$u" --socket "$sock" share t
check "test-vm" "$u" --socket "$sock" policy check --vm ""
check "" "$u" --socket "$sock" release 0529:0001@1-1 ""
# usbgwd not reachable: nothing, quietly
check "" "$u" --socket "$work/nothing.sock" assign ""
check "" "$u" --socket "$work/nothing.sock" share ""

kill -TERM "$gw_pid"
wait "$gw_pid" || fail "usbgwd exited with status $? on SIGTERM"
gw_pid=''
echo "PASS"
