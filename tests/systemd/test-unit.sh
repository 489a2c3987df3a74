#!/bin/bash
# usbgwd's systemd unit, as built (data/usbgwd.service):
#   - `systemd-analyze verify` accepts it (with ExecStart/ExecReload pointed
#     at this build's binaries and the man pages it names on MANPATH);
#   - `systemd-analyze security --offline` rates its exposure at or below
#     USBGW_UNIT_MAX_EXPOSURE (tenths: 30 = 3.0) and prints the table;
#   - it is Type=notify when usbgwd was built with sd_notify, and usbgwd
#     then sends READY=1 on NOTIFY_SOCKET only once its control socket
#     answers (checked against the real daemon under simulated keys).
#
#   test-unit.sh UNIT USBGWD USBGWCTL USBGW_SIM MANDIR
set -euo pipefail

# shellcheck source=../sim/usbgwd-test.sh
. "$(dirname "$0")/../sim/usbgwd-test.sh"

unit=$1 usbgwd=$(realpath "$2") usbgwctl=$(realpath "$3") sim=$4 mandir=$5
max_exposure=${USBGW_UNIT_MAX_EXPOSURE:-30}

fail() {
    echo "FAIL: $*" >&2
    exit 1
}

if ! command -v systemd-analyze >/dev/null; then
    echo "SKIP: systemd-analyze (package systemd) missing"
    exit 77
fi
work=$(mktemp -d /tmp/usbgw-unit.XXXXXX)
trap 'rm -rf "$work"' EXIT

# verify: the unit as installed, but with this build's programs
mkdir -p "$work/man/man1" "$work/man/man5" "$work/man/man8"
for page in "$mandir"/*.[158]; do
    cp "$page" "$work/man/man${page##*.}/"
done
sed -e "s|^ExecStart=[^ ]*|ExecStart=$usbgwd|" -e "s|^ExecReload=[^ ]*|ExecReload=$usbgwctl|" \
    "$unit" > "$work/usbgwd.service"
out=$(MANPATH=$work/man systemd-analyze verify "$work/usbgwd.service" 2>&1) ||
    fail "systemd-analyze verify: $out"
[ -z "$out" ] || fail "systemd-analyze verify warns: $out"
echo "systemd-analyze verify: clean"

# security: the exposure table and its overall level
out=$(systemd-analyze security --offline=true "$work/usbgwd.service" 2>&1) || true
echo "$out"
level=$(sed -n 's/.*Overall exposure level for usbgwd.service: \([0-9.]*\).*/\1/p' <<<"$out")
[ -n "$level" ] || fail "systemd-analyze security printed no overall level"
tenths=$(python3 -c "print(round(float('$level') * 10))")
[ "$tenths" -le "$max_exposure" ] ||
    fail "exposure level $level is above $((max_exposure / 10)).$((max_exposure % 10))"
for setting in 'ProtectProc=invisible' 'PrivateIPC=yes' 'NoNewPrivileges=yes' 'LimitNOFILE=' 'TasksMax=' 'MemoryMax='; do
    grep -q "^$setting" "$unit" || fail "the unit lacks $setting"
done
if grep -q '^CapabilityBoundingSet=.*\(CAP_SYS_ADMIN\|CAP_DAC_OVERRIDE\)' "$unit"; then
    fail "the unit grants CAP_SYS_ADMIN or CAP_DAC_OVERRIDE"
fi

# readiness: Type=notify only when usbgwd speaks sd_notify
# (not `ldd | grep -q`: under pipefail grep -q closing early fails the pipe)
if [[ "$(ldd "$usbgwd")" != *libsystemd* ]]; then
    grep -q '^Type=simple' "$unit" || fail "usbgwd has no sd_notify, yet the unit is not Type=simple"
    echo "usbgwd built without libsystemd: Type=simple, readiness not checked"
    exit 0
fi
grep -q '^Type=notify' "$unit" || fail "usbgwd speaks sd_notify, yet the unit is not Type=notify"
gw_test_conf "$work"
printf 'assign id 0529:0001 to vm "test-vm"\n' > "$work/policy"
# the notify socket's reader runs under usbgw-sim with usbgwd: at READY=1
# it asks the control socket at once, so "ready" must mean "answers"
"$sim" --plug hasp -- python3 - "$work" "$usbgwd" "$usbgwctl" <<'PY'
import os, socket, subprocess, sys
work, usbgwd, usbgwctl = sys.argv[1:]
path = os.path.join(work, "notify.sock")
notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
notify.bind(path)
notify.settimeout(30)
env = dict(os.environ, NOTIFY_SOCKET=path)
log = open(os.path.join(work, "usbgwd.log"), "w")
daemon = subprocess.Popen([usbgwd, "--foreground", "--config", os.path.join(work, "usbgwd.conf"),
                           "--policy", os.path.join(work, "policy"), "--rundir", os.path.join(work, "run")],
                          env=env, stdout=log, stderr=subprocess.STDOUT)
try:
    messages = []
    while not any(b"READY=1" in m for m in messages):
        messages.append(notify.recv(4096))
    status = subprocess.run([usbgwctl, "--socket", os.path.join(work, "control.sock"), "status"],
                            capture_output=True, text=True)
    if status.returncode != 0:
        sys.exit("FAIL: READY=1 came before the control socket answered: " + status.stderr)
    print("READY=1 received; usbgwctl status answered at once")
    daemon.terminate()
    while not any(b"STOPPING=1" in m for m in messages):
        messages.append(notify.recv(4096))
    if daemon.wait(30) != 0:
        log.flush()
        sys.exit("FAIL: usbgwd exited with %d on SIGTERM; its log:\n%s"
                 % (daemon.returncode, open(os.path.join(work, "usbgwd.log")).read()))
    print("STOPPING=1 received on SIGTERM; notifications:", [m.decode() for m in messages])
finally:
    if daemon.poll() is None:
        daemon.kill()
PY
