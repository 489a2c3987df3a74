#!/bin/bash
# usbgwd's metrics and journal fields, end to end on simulated dongles
# (usbgw-sim) with the usbredir test peer in QEMU's role. One scenario per
# run:
#
#   test-metrics.sh SCENARIO USBGWD USBGW_SIM TEST_PEER USBGWCTL
#
#   exposition  usbgwctl metrics and the HTTP listener, parsed with
#               prometheus_client's parser, values checked after an attach;
#               the listener's refusals (404, 405, 413, connections over
#               the limit) and a bind error naming metrics-listen
#   prometheus  a real Prometheus server scrapes usbgwd; its query API
#               returns the attach once the peer connected
#   journal     usbgwd's stderr is a stand-in journal (journal-receiver.py
#               in a private mount namespace): the attach, session and
#               deny records carry USBGW_DEVICE, USBGW_VM and MESSAGE_ID
set -euo pipefail
[ -n "${USBGW_TEST_TRACE:-}" ] && set -x

scenario=$1 usbgwd=$2 sim=$3 peer=$4 usbgwctl_bin=$5
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=../sim/usbgwd-test.sh
. "$here/../sim/usbgwd-test.sh"
HASP_SECRET=000102030405060708090a0b0c0d0e0f
CHALLENGE=00112233445566778899aabbccddeeff
# Debian's python3-prometheus-client is for Debian's python3
py=/usr/bin/python3
[ -x "$py" ] || py=python3

if [ "$scenario" = prometheus ] && ! [ -x /usr/bin/prometheus ]; then
    echo "SKIP: /usr/bin/prometheus is not installed (Debian package prometheus)"
    exit 77
fi
if [ "$scenario" = journal ]; then
    [ "$(id -u)" -eq 0 ] || { echo "SKIP: the journal scenario mounts a tmpfs: needs root"; exit 77; }
    command -v unshare >/dev/null || { echo "SKIP: unshare (util-linux) missing"; exit 77; }
fi

if [ -z "${USBGW_TEST_INNER:-}" ]; then
    work=$(mktemp -d /tmp/usbgw-metrics-test.XXXXXX)
    trap 'rm -rf "$work"' EXIT
    export USBGW_TEST_INNER=$work
    status=0
    "$sim" --secret "hasp=$HASP_SECRET" --plug hasp --plug stick --control "$work/sim.sock" \
        -- bash "$0" "$@" || status=$?
    if [ $status -ne 0 ]; then
        for f in usbgwd.log prometheus.log; do
            [ -f "$work/$f" ] && { echo "--- $f"; tail -50 "$work/$f"; }
        done
    fi
    exit $status
fi

work=$USBGW_TEST_INNER
gw_pid=''
prom_pid=''
cleanup() {
    [ -z "$gw_pid" ] || kill "$gw_pid" 2>/dev/null || true
    [ -z "$prom_pid" ] || kill "$prom_pid" 2>/dev/null || true
    wait 2>/dev/null || true
}
trap cleanup EXIT
rundir=$work/run
sock=$rundir/vm/test-vm/0529-0001-at-1-1.sock
cat > "$work/policy" <<'POLICY'
deny with-interface 08:*:*
assign id 0529:0001 to vm "test-vm"
POLICY

fail() {
    echo "FAIL: $*" >&2
    exit 1
}

usbgwctl() {
    "$usbgwctl_bin" --socket "$work/control.sock" "$@"
}


metrics_port=$(gw_test_free_port)
gw_test_conf "$work" "metrics-listen=127.0.0.1:$metrics_port"

if [ "$scenario" = exposition ]; then
    # QEMU's user may reach the socket; with no pid file for the VM, a
    # process of it is not the VM's QEMU and is refused
    printf 'socket-user=nobody\nvm-pid-file=%s/pids/{vm}.pid\n' "$work" >> "$work/usbgwd.conf"
    mkdir -m 755 "$work/pids"
    chmod 755 "$work"
fi
# usbgwd_cmd: how usbgwd is started (the journal scenario wraps it)
usbgwd_cmd=("$usbgwd" --foreground --policy "$work/policy" --rundir "$rundir" --config "$work/usbgwd.conf")

start_usbgwd() {
    "${usbgwd_cmd[@]}" >> "$work/usbgwd.log" 2>&1 &
    gw_pid=$!
    for _ in $(seq 200); do
        if usbgwctl list 2>/dev/null | grep -Eq '^0529:0001@1-1 .* bound '; then
            return 0
        fi
        kill -0 $gw_pid 2>/dev/null || fail "usbgwd exited at start"
        sleep 0.05
    done
    fail "usbgwd did not serve the key on $sock"
}

stop_usbgwd() {
    kill -TERM $gw_pid
    wait $gw_pid || fail "usbgwd exited with status $? on SIGTERM"
    gw_pid=''
}

attach() {
    out=$("$peer" "$sock" connect challenge $CHALLENGE expect $HASP_SECRET) || fail "peer: $out"
    grep -q '^MATCH$' <<<"$out" || fail "the peer did not get the key's answer: $out"
}

# check_exposition FILE: parses FILE with prometheus_client and checks
# the values an attach by policy leaves
check_exposition() {
    "$py" - "$1" <<'PY'
import sys
from prometheus_client.parser import text_string_to_metric_families

text = open(sys.argv[1]).read()
families = {f.name: f for f in text_string_to_metric_families(text)}
def sample(name, **labels):
    for family in families.values():
        for s in family.samples:
            if s.name == name and all(s.labels.get(k) == v for k, v in labels.items()):
                return s.value
    sys.exit("no sample %s%r in the exposition" % (name, labels))
def want(name, value, **labels):
    got = sample(name, **labels)
    if got != value:
        sys.exit("%s%r is %r, want %r" % (name, labels, got, value))
# prometheus_client names counters without _total
types = {"usbgw_attach": "counter", "usbgw_attach_duration_seconds": "histogram",
         "usbgw_devices": "gauge", "usbgw_redir_bytes": "counter", "usbgw_sessions": "gauge",
         "usbgw_transfer_errors": "counter", "usbgw_device_reenumerations": "counter",
         "usbgw_pool_keys": "gauge", "usbgw_shares": "gauge", "usbgw_build_info": "gauge",
         "usbgw_required_missing": "gauge"}
for name, kind in types.items():
    if name not in families:
        sys.exit("no family %s" % name)
    if families[name].type != kind:
        sys.exit("%s is a %s, want %s" % (name, families[name].type, kind))
want("usbgw_attach_total", 1, result="ok")
want("usbgw_attach_total", 0, result="refused")
want("usbgw_attach_total", 0, result="failed")
want("usbgw_attach_duration_seconds_count", 1)
want("usbgw_attach_duration_seconds_bucket", 1, le="+Inf")
# the key (bound, its session over) and the denied stick
want("usbgw_devices", 1, state="bound")
want("usbgw_devices", 1, state="denied")
want("usbgw_devices", 0, state="attached")
want("usbgw_sessions", 0)
want("usbgw_shares", 0)
want("usbgw_transfer_errors_total", 0)
for direction in ("to_peer", "from_peer"):
    if not sample("usbgw_redir_bytes_total", direction=direction) > 0:
        sys.exit("no usbredir bytes %s" % direction)
if len(families["usbgw_build_info"].samples) != 1:
    sys.exit("usbgw_build_info has %d samples" % len(families["usbgw_build_info"].samples))
print("exposition ok: %d families" % len(families))
PY
}

http_get() { # PATH [METHOD] [BODY]: "STATUS|CONTENT-TYPE|ALLOW" to http.status, the body on stderr
    python3 - "$metrics_port" "$@" > "$work/http.status" <<'PY'
import http.client, sys
port, path = int(sys.argv[1]), sys.argv[2]
method = sys.argv[3] if len(sys.argv) > 3 else "GET"
body = sys.argv[4].encode() if len(sys.argv) > 4 else None
c = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
c.request(method, path, body=body)
r = c.getresponse()
data = r.read()
sys.stdout.write("%d|%s|%s\n" % (r.status, r.getheader("Content-Type"), r.getheader("Allow") or "-"))
sys.stderr.write(data.decode(errors="replace"))
PY
}

case $scenario in
exposition)
    # a port something else holds: usbgwd says which key, and serves on
    python3 -c 'import socket, time, sys
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("127.0.0.1", int(sys.argv[1]))); s.listen(1); open(sys.argv[2], "w").close()
time.sleep(30)' "$metrics_port" "$work/held" &
    holder=$!
    for _ in $(seq 100); do
        [ -e "$work/held" ] && break
        sleep 0.05
    done
    start_usbgwd
    grep -q "metrics-listen=127.0.0.1:$metrics_port: cannot listen" "$work/usbgwd.log" ||
        fail "no log line naming metrics-listen for the bind error"
    stop_usbgwd
    kill $holder
    wait $holder 2>/dev/null || true

    start_usbgwd
    grep -q "metrics: Prometheus text on http://127.0.0.1:$metrics_port/metrics" "$work/usbgwd.log" ||
        fail "no listening line"
    attach
    usbgwctl metrics > "$work/ctl.txt" || fail "usbgwctl metrics"
    check_exposition "$work/ctl.txt" || fail "usbgwctl metrics: wrong exposition"
    http_get /metrics 2> "$work/http.txt"
    IFS="|" read -r status ctype _ < "$work/http.status"
    [ "$status" = 200 ] || fail "GET /metrics gave $status"
    [[ "$ctype" == "text/plain; version=0.0.4"* ]] || fail "content type $ctype"
    check_exposition "$work/http.txt" || fail "HTTP: wrong exposition"
    http_get /metrics HEAD 2>/dev/null
    IFS="|" read -r status _ < "$work/http.status"
    [ "$status" = 200 ] || fail "HEAD /metrics gave $status"
    http_get /other 2>/dev/null
    IFS="|" read -r status _ < "$work/http.status"
    [ "$status" = 404 ] || fail "GET /other gave $status, want 404"
    http_get /metrics POST x 2>/dev/null
    IFS="|" read -r status _ allow < "$work/http.status"
    [ "$status" = 405 ] || fail "POST gave $status, want 405"
    [ "$allow" = "GET, HEAD" ] || fail "405 with Allow: $allow, want GET, HEAD"
    http_get /metrics GET "a body" 2>/dev/null
    IFS="|" read -r status _ < "$work/http.status"
    [ "$status" = 413 ] || fail "GET with a body gave $status, want 413"
    # connections over the limit are closed at once; the ones held are
    # closed after the timeout; a scrape works again afterwards
    python3 - "$metrics_port" <<'PY' || fail "connection limit"
import socket, sys, time
port = int(sys.argv[1])
held = [socket.create_connection(("127.0.0.1", port)) for _ in range(8)]
time.sleep(0.3)
extra = socket.create_connection(("127.0.0.1", port))
extra.settimeout(5)
if extra.recv(1) != b"":
    sys.exit("a ninth connection was not closed")
start = time.time()
held[0].settimeout(20)
if held[0].recv(1) != b"":
    sys.exit("an idle connection got data")
waited = time.time() - start
if waited > 15:
    sys.exit("an idle connection stayed %.1f s" % waited)
print("idle connection closed after %.1f s" % waited)
PY
    http_get /metrics 2>/dev/null
    IFS="|" read -r status _ < "$work/http.status"
    [ "$status" = 200 ] || fail "GET /metrics after the idle ones gave $status"
    # a refused peer: nobody, QEMU's user, but not the VM's QEMU
    out=$(setpriv --reuid=65534 --regid=65534 --clear-groups "$peer" --timeout 5 "$sock" closed 2>&1) || true
    for _ in $(seq 100); do
        usbgwctl metrics | grep -q '^usbgw_attach_total{result="refused"} 1$' && break
        sleep 0.05
    done
    usbgwctl metrics | grep -q '^usbgw_attach_total{result="refused"} 1$' ||
        fail "the refused peer was not counted: $out"
    stop_usbgwd
    echo "PASS: $scenario"
    ;;
prometheus)
    start_usbgwd
    prom_port=$(gw_test_free_port)
    mkdir "$work/prom-data"
    cat > "$work/prometheus.yml" <<YML
global:
  scrape_interval: 1s
  evaluation_interval: 1s
scrape_configs:
  - job_name: usbgwd
    static_configs:
      - targets: ['127.0.0.1:$metrics_port']
YML
    /usr/bin/prometheus --config.file="$work/prometheus.yml" --storage.tsdb.path="$work/prom-data" \
        --web.listen-address="127.0.0.1:$prom_port" > "$work/prometheus.log" 2>&1 &
    prom_pid=$!
    query='usbgw_attach_total{result="ok"}'
    ask() { # prints the query's value, or nothing
        python3 - "$prom_port" "$query" <<'PY'
import json, sys, urllib.parse, urllib.request
url = "http://127.0.0.1:%s/api/v1/query?query=%s" % (sys.argv[1], urllib.parse.quote(sys.argv[2]))
try:
    with urllib.request.urlopen(url, timeout=5) as r:
        answer = json.load(r)
except OSError:
    sys.exit(0)
if answer.get("status") == "success" and answer["data"]["result"]:
    print(answer["data"]["result"][0]["value"][1])
PY
    }
    # Prometheus scrapes the attach count before the attach: 0
    for _ in $(seq 300); do
        [ "$(ask)" = 0 ] && break
        kill -0 $prom_pid 2>/dev/null || fail "prometheus exited"
        sleep 0.1
    done
    [ "$(ask)" = 0 ] || fail "prometheus never saw usbgwd's attach count"
    attach
    value=''
    for _ in $(seq 300); do
        value=$(ask)
        [ "$value" = 1 ] && break
        sleep 0.1
    done
    echo "query: GET http://127.0.0.1:$prom_port/api/v1/query?query=$query -> ${value:-nothing}"
    [ "$value" = 1 ] || fail "prometheus reports $query = ${value:-nothing}, want 1"
    stop_usbgwd
    echo "PASS: $scenario"
    ;;
journal)
    # usbgwd in a mount namespace whose /run/systemd/journal is a stand-in
    # journal; its stderr is connected there, so GLib sends it records
    usbgwd_cmd=(unshare --mount --propagation private sh -c '
        mount -t tmpfs tmpfs /run/systemd && mkdir /run/systemd/journal &&
        receiver=$1 && shift && exec "$0" "$receiver" /run/systemd/journal "$@"' \
        "$py" "$here/journal-receiver.py"
        "$work/records.jsonl" "$work/stream.log" -- "${usbgwd_cmd[@]}")
    start_usbgwd
    attach
    stop_usbgwd
    "$py" - "$work/records.jsonl" <<'PY' || fail "journal records"
import json, sys
records = [json.loads(line) for line in open(sys.argv[1])]
ATTACH = "e7f29cd9c2a049b3b5ebf690ff77db8b"
DENY = "9ff45390515c4b7daa4ce48312dee6bf"
SESSION = "f1488283b50d4273ae1fa2ce10fdc2b6"
def find(message_id):
    found = [r for r in records if r.get("MESSAGE_ID") == message_id]
    if not found:
        sys.exit("no record with MESSAGE_ID=%s among %d" % (message_id, len(records)))
    return found[0]
attach = find(ATTACH)
if attach.get("USBGW_DEVICE") != "0529:0001@1-1" or attach.get("USBGW_VM") != "test-vm":
    sys.exit("attach record: %r" % attach)
session = find(SESSION)
if session.get("USBGW_DEVICE") != "0529:0001@1-1" or session.get("USBGW_VM") != "test-vm":
    sys.exit("session record: %r" % session)
deny = find(DENY)
if not deny.get("USBGW_DEVICE", "").startswith("0781:5567") or "USBGW_VM" in deny:
    sys.exit("deny record: %r" % deny)
# every message naming the key carries its field
for r in records:
    if "0529:0001@1-1" in r.get("MESSAGE", "") and r.get("USBGW_DEVICE") != "0529:0001@1-1":
        sys.exit("a message about the key without USBGW_DEVICE: %r" % r)
    if r.get("PRIORITY") is None or r.get("GLIB_DOMAIN") is None:
        sys.exit("a record without PRIORITY or GLIB_DOMAIN: %r" % r)
print("journal ok: %d records; attach %s, session %s, deny %s" %
      (len(records), attach["MESSAGE"], session["MESSAGE"], deny["MESSAGE"]))
PY
    echo "PASS: $scenario"
    ;;
*)
    fail "unknown scenario $scenario"
    ;;
esac
