#!/bin/bash
# meson test "netns-rig": the multi-host rig of netns-rig.sh works.
#
#   test-netns-rig.sh
#
# Two hosts, a and b, on the rig's switch:
#   - each answers the other's ping, and its own loopback is up;
#   - one TCP connection from a to b carries data;
#   - rig_cut a: a ping fails and data written on the connection meanwhile
#     does not reach b;
#   - rig_restore a: the SAME connection (b accepted exactly one) delivers
#     what was written during the cut (TCP retransmission), then more;
#   - rig_cleanup leaves none of the run's namespaces behind.
# Exit 77 when not root, `ip netns` does not work or python3 is missing.
set -euo pipefail

me=test-netns-rig
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd -P)
# shellcheck source-path=SCRIPTDIR source=netns-rig.sh
. "$here/netns-rig.sh"
if ! why=$(rig_available); then
    echo "$me: SKIP: $why"
    exit 77
fi
command -v python3 >/dev/null || {
    echo "$me: SKIP: python3 not found"
    exit 77
}

fail() {
    echo "$me: FAIL: $*" >&2
    exit 1
}

work=$(mktemp -d "${TMPDIR:-/tmp}/usbgw-netns-rig.XXXXXX")
rig_on_exit 'rm -rf "$work"'

rig_host a 1 || fail "rig_host a"
rig_host b 2 || fail "rig_host b"
ip_a=$(rig_ip a) ip_b=$(rig_ip b)
echo "$me: run $RIG_RUN: a=$ip_a ($(rig_ns a)), b=$ip_b ($(rig_ns b))"
[[ $ip_a == "10.77.$RIG_RUN.1" && $ip_b == "10.77.$RIG_RUN.2" ]] || fail "addresses $ip_a $ip_b"

# --- ping both ways, and loopback ----------------------------------------
rig_ping a "$ip_b" || fail "a cannot ping b"
rig_ping b "$ip_a" || fail "b cannot ping a"
rig_ping a 127.0.0.1 || fail "a's loopback is down"
rig_ping b 127.0.0.1 || fail "b's loopback is down"
# the hosts are apart from the machine's own network
! ip -o addr show | grep -q "10\.77\.$RIG_RUN\." || fail "the rig's addresses leaked into the root namespace"

# --- one TCP connection across the switch ---------------------------------
# b: accepts connections, logs each accept and appends what it receives to
# b.data as it comes
rig_exec b python3 -c '
import socket, sys
srv = socket.socket()
srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
srv.bind((sys.argv[1], 7000))
srv.listen(4)
print("listening", flush=True)
while True:
    conn, peer = srv.accept()
    print("accepted", peer[0], flush=True)
    with open(sys.argv[2], "ab", buffering=0) as out:
        while True:
            chunk = conn.recv(65536)
            if not chunk:
                break
            out.write(chunk)
    print("closed", flush=True)
' "$ip_b" "$work/b.data" > "$work/server.log" 2>&1 &
for _ in $(seq 100); do
    grep -q '^listening' "$work/server.log" && break
    sleep 0.05
done
grep -q '^listening' "$work/server.log" || fail "server: $(cat "$work/server.log")"

# a: one connection; each line read from the FIFO is sent on it; any error
# on that socket ends the client with a failure (no reconnecting)
mkfifo "$work/cmds"
rig_exec a python3 -c '
import socket, sys
s = socket.create_connection((sys.argv[1], 7000), timeout=5)
s.settimeout(None)
print("connected", s.getsockname()[1], flush=True)
for line in open(sys.argv[2], "rb"):
    s.sendall(line)
    print("sent", line.decode().strip(), flush=True)
s.shutdown(socket.SHUT_WR)
s.close()
print("done", flush=True)
' "$ip_b" "$work/cmds" > "$work/client.log" 2>&1 &
client=$!
exec 3> "$work/cmds"

# wait_data PATTERN SECONDS: b has received a line matching PATTERN
wait_data() {
    local end=$((SECONDS + $2))
    until grep -q "$1" "$work/b.data" 2>/dev/null; do
        ((SECONDS < end)) || return 1
        sleep 0.05
    done
}

echo before >&3
wait_data '^before$' 5 || fail "the connection did not carry data: $(cat "$work/client.log")"

t0=$EPOCHREALTIME
rig_cut a || fail "rig_cut a"
! rig_ping b "$ip_a" 1 2>/dev/null || fail "b still reaches a after the cut"
echo during-the-cut >&3
sleep 3
grep -q '^sent during-the-cut' "$work/client.log" || fail "the client could not write during the cut"
! grep -q during "$work/b.data" || fail "data passed during the cut"
kill -0 "$client" 2>/dev/null || fail "the client's connection broke during the cut: $(cat "$work/client.log")"

rig_restore a || fail "rig_restore a"
t1=$EPOCHREALTIME
rig_ping a "$ip_b" 5 || fail "a cannot ping b after the restore"
# the retransmission timer has backed off to a few seconds by now
wait_data '^during-the-cut$' 30 || fail "what was sent during the cut never arrived"
t2=$EPOCHREALTIME
echo after >&3
exec 3>&-
wait "$client" || fail "client: $(cat "$work/client.log")"
wait_data '^after$' 5 || fail "data after the restore did not arrive"
[ "$(cat "$work/b.data")" = $'before\nduring-the-cut\nafter' ] ||
    fail "b received: $(cat "$work/b.data")"
[ "$(grep -c '^accepted' "$work/server.log")" -eq 1 ] ||
    fail "not one connection: $(cat "$work/server.log")"
echo "$me: one TCP connection; the cut's data arrived $(awk -v a="$t1" -v b="$t2" 'BEGIN { printf "%.1f", b - a }') s" \
    "after the restore (cut for $(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.1f", b - a }') s)"

# --- cleanup leaves nothing ------------------------------------------------
run=$RIG_RUN
rig_cleanup
left=$(ip netns list | awk -v p="usbgw$run-" 'index($1, p) == 1 { print $1 }')
[ -z "$left" ] || fail "namespaces left behind: $left"
[ ! -e "$RIG_CLAIMS/$run" ] || fail "claim $RIG_CLAIMS/$run left behind"
echo "$me: PASS"
