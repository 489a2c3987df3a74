#!/bin/bash
# usbgw's Cockpit page in a real cockpit-ws, driven by headless Chromium:
# usbgwd runs on simulated keys (usbgw-sim), cockpit-ws serves the page
# from the source tree without a login (--local-session), its bridge runs
# the build's usbgwctl, and test-page.mjs (playwright-core) clicks through
# the page and checks what usbgwd then says.
#
#   test-cockpit.sh USBGWD USBGW_SIM USBGWCTL PAGE_DIR LOG_DIR
#
# A second cockpit-ws runs as nobody, for the page of a user usbgwd refuses.
#
# PAGE_DIR is the package (cockpit/ of the source tree); screenshots and the
# logs go to LOG_DIR. Skips (77) when cockpit-ws, chromium or node is
# missing; playwright-core comes from `npm ci` here (tools/install-deps.sh).
set -euo pipefail
[ -n "${USBGW_TEST_TRACE:-}" ] && set -x

usbgwd=$1 sim=$2 usbgwctl_bin=$3 page_dir=$4 log_dir=$5
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=../sim/usbgwd-test.sh
. "$here/../sim/usbgwd-test.sh"
COCKPIT_WS=${COCKPIT_WS:-/usr/lib/cockpit/cockpit-ws}
# how long cockpit-ws, usbgwd and the whole browser run may take
START_TIMEOUT_S=30
BROWSER_TIMEOUT_S=240

skip() {
    echo "SKIP: $*"
    exit 77
}

if [ -z "${USBGW_TEST_INNER:-}" ]; then
    [ -x "$COCKPIT_WS" ] || skip "$COCKPIT_WS missing (Debian package cockpit-ws)"
    command -v cockpit-bridge >/dev/null || skip "cockpit-bridge missing (Debian package cockpit-bridge)"
    command -v chromium >/dev/null || skip "chromium missing (Debian package chromium)"
    command -v node >/dev/null || skip "node missing (Debian package nodejs)"
    if [ ! -d "$here/node_modules/playwright-core" ]; then
        echo "FAIL: $here/node_modules/playwright-core is missing: run tools/install-deps.sh (npm ci in tests/cockpit)" >&2
        exit 1
    fi
    mkdir -p "$log_dir"
    rm -f "$log_dir"/*.png "$log_dir"/*.log
    work=$(mktemp -d /tmp/usbgw-cockpit-test.XXXXXX)
    trap 'rm -rf "$work"' EXIT
    export USBGW_TEST_INNER=$work
    status=0
    "$sim" --plug hasp --plug hasp2 --plug hid --plug stick --control "$work/sim.sock" \
        -- bash "$0" "$@" || status=$?
    cp "$work/usbgwd.log" "$log_dir/usbgwd.log" 2>/dev/null || true
    cp "$work/cockpit-ws.log" "$log_dir/cockpit-ws.log" 2>/dev/null || true
    cp "$work/cockpit-ws-nobody.log" "$log_dir/cockpit-ws-nobody.log" 2>/dev/null || true
    if [ $status -ne 0 ]; then
        for log in usbgwd cockpit-ws cockpit-ws-nobody; do
            [ -f "$log_dir/$log.log" ] && { echo "--- $log log"; tail -50 "$log_dir/$log.log"; }
        done
    fi
    exit $status
fi

work=$USBGW_TEST_INNER
gw_pid='' ws_pid='' ws_nobody_pid=''
cleanup() {
    local pid
    for pid in "$ws_pid" "$ws_nobody_pid" "$gw_pid"; do
        [ -z "$pid" ] || kill "$pid" 2>/dev/null || true
    done
    for pid in "$ws_pid" "$ws_nobody_pid" "$gw_pid"; do
        [ -z "$pid" ] || wait "$pid" 2>/dev/null || true
    done
}
trap cleanup EXIT

fail() {
    echo "FAIL: $*" >&2
    exit 1
}

# usbgwctl finds the socket as the bridge's usbgwctl will: $USBGWCTL_SOCKET
export USBGWCTL_SOCKET=$work/control.sock
usbgwctl() { "$usbgwctl_bin" "$@"; }

# Waits up to START_TIMEOUT_S for COMMAND… to succeed.
wait_until() { # WHAT COMMAND…
    local what=$1 deadline=$((SECONDS + START_TIMEOUT_S))
    shift
    until "$@" >/dev/null 2>&1; do
        [ $SECONDS -lt $deadline ] || fail "$what: not within ${START_TIMEOUT_S}s"
        sleep 0.1
    done
}

# The VMs start as usbgw-hook would report them (no libvirt here); the hook
# command is root's, as this test is.
hook_started() { # VM
    python3 - "$USBGWCTL_SOCKET" "$1" <<'PY' || fail "hook started $1 refused"
import json, socket, sys
s = socket.socket(socket.AF_UNIX)
s.settimeout(10)
s.connect(sys.argv[1])
s.sendall((json.dumps({"command": "hook", "domain": sys.argv[2],
                       "uuid": "8c1f0a2e-5d2b-4c1e-9a57-%012d" % len(sys.argv[2]),
                       "op": "started", "sub_op": "begin"}) + "\n").encode())
reply = json.loads(s.makefile().readline())
sys.exit(0 if reply.get("ok") else 1)
PY
}

holder_is() { # ID VM
    usbgwctl list --json | python3 -c 'import json,sys; d={x["id"]: x for x in json.load(sys.stdin)["devices"]}; sys.exit(0 if d[sys.argv[1]]["vm"] == sys.argv[2] else 1)' "$1" "$2"
}

cat > "$work/usbgw.policy" <<'POLICY'
deny with-interface 08:*:*
assign id 0529:0001 via-port "1-1" to vm "test-vm"
pool "cad" vms "cad-*"
assign id 0529:0001 via-port "1-2" to pool "cad"
assign id 064f:2af9 to pool "cad"
POLICY
# (the pool line is no rule of its own: 4 rules)
gw_test_conf "$work" "vm-pid-file=$work/pids/{vm}.pid"
mkdir -m 755 "$work/pids"

"$usbgwd" --foreground --policy "$work/usbgw.policy" --rundir "$work/run" \
    --config "$work/usbgwd.conf" >> "$work/usbgwd.log" 2>&1 &
gw_pid=$!
wait_until "usbgwd binding the key to test-vm" holder_is 0529:0001@1-1 test-vm
hook_started test-vm
hook_started cad-01
wait_until "the pool's lease for cad-01" holder_is 0529:0001@1-2 cad-01

# The package, as cockpit-ws finds packages: DIR/share/cockpit/NAME
mkdir -p "$work/pkgroot/share/cockpit"
ln -s "$(cd "$page_dir" && pwd)" "$work/pkgroot/share/cockpit/usbgw"
# cockpit-ws on PORT, its bridge running as the user it runs as; the bridge
# inherits this environment: the build's usbgwctl comes first in PATH, and it
# finds the test's usbgwd through $USBGWCTL_SOCKET
start_ws() { # PORT LOG [WRAPPER…]
    local port=$1 log=$2
    shift 2
    XDG_DATA_DIRS="$work/pkgroot/share:/usr/share" \
        PATH="$(cd "$(dirname "$usbgwctl_bin")" && pwd):$PATH" \
        "$@" "$COCKPIT_WS" --no-tls --local-session=cockpit-bridge --port "$port" --address 127.0.0.1 \
        > "$log" 2>&1 &
}
port=$(gw_test_free_port)
start_ws "$port" "$work/cockpit-ws.log"
ws_pid=$!
# the same page for a user who may not administer usbgwd (not root, not in
# group usbgw): nobody, whose usbgwctl reaches the socket (usbgwd's control
# socket is 0666; its directory here is opened to others) and is refused
chmod 755 "$work"
nobody_port=$(gw_test_free_port)
mkdir -m 700 "$work/nobody-home" && chown 65534:65534 "$work/nobody-home"
start_ws "$nobody_port" "$work/cockpit-ws-nobody.log" \
    setpriv --reuid=65534 --regid=65534 --clear-groups env HOME="$work/nobody-home" XDG_RUNTIME_DIR="$work/nobody-home"
ws_nobody_pid=$!
for p in "$port" "$nobody_port"; do
    wait_until "cockpit-ws serving the page on port $p" \
        curl -sf --max-time 5 -o /dev/null "http://127.0.0.1:$p/cockpit/@localhost/usbgw/manifest.json"
done

timeout "$BROWSER_TIMEOUT_S" node "$here/test-page.mjs" "http://127.0.0.1:$port" "$log_dir" \
    "$usbgwctl_bin" "$gw_pid" "http://127.0.0.1:$nobody_port" ||
    fail "the page test failed (screenshots in $log_dir)"
# the page stopped usbgwd (SIGTERM): it must have exited cleanly
wait "$gw_pid" || fail "usbgwd exited with status $? on SIGTERM"
gw_pid=''
