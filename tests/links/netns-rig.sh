# shellcheck shell=bash
# A bash library for tests that need several "hosts" on one machine: each
# host is its own network namespace, plugged into a bridge that lives in a
# "switch" namespace of its own, all on 10.77.<run>.0/24. Source it; needs
# root and iproute2 (`ip netns`).
#
#   rig_init                 claim a run number (RIG_RUN), create the switch;
#                            rig_host calls it when needed
#   rig_host NAME N|ADDR     a host NAME at 10.77.<run>.N (or the full ADDR),
#                            loopback and eth0 up
#   rig_exec NAME CMD…       run CMD inside NAME's namespace (exec, so $! of a
#                            background rig_exec is CMD's pid)
#   rig_ip NAME              NAME's address
#   rig_ns NAME              NAME's namespace (for `ip -n`)
#   rig_cut NAME             pull NAME's cable: eth0 down on the host's side;
#                            TCP connections stay half-open, unnoticed by
#                            either end until a timeout of their own
#   rig_restore NAME         plug it back (eth0 up, its subnet route back)
#   rig_ping NAME ADDR [SECONDS]
#                            one ICMP echo from NAME to ADDR, answered within
#                            SECONDS (default 2); python3, raw socket (the
#                            image has no ping)
#   rig_on_exit CMD          run CMD (eval'd) before the rig goes away at exit
#   rig_cleanup              kill what still runs in the rig's namespaces (by
#                            pid, all started by this run), delete them
#
# Every run picks a free run number (1..254) by creating a claim directory
# under /run/usbgw-netns-rig (mkdir is atomic), so parallel runs get
# distinct namespace names (usbgw<run>-<name>) and subnets. The claim holds
# the owner's pid: a later run removes the namespaces of a run whose owner
# died without cleaning up (SIGKILL), and kills what that run left in them.
# rig_init installs an EXIT trap (and INT/TERM traps that exit) which runs
# the rig_on_exit commands, then rig_cleanup; callers that need an EXIT trap
# of their own register it with rig_on_exit instead of calling trap.

RIG_CLAIMS=${RIG_CLAIMS:-/run/usbgw-netns-rig}
RIG_RUN=''
RIG_SWITCH=''
RIG_HOSTS=()
RIG_EXIT_CMDS=()
declare -A RIG_ADDR=()

_rig_die() {
    echo "netns-rig: $*" >&2
    return 1
}

# rig_available: prints why the rig cannot work here and fails, or succeeds.
rig_available() {
    if [ "$(id -u)" -ne 0 ]; then
        echo "network namespaces need root (uid $(id -u))"
        return 1
    fi
    if ! command -v ip >/dev/null; then
        echo "no 'ip' (iproute2)"
        return 1
    fi
    if ! ip netns list >/dev/null 2>&1; then
        echo "'ip netns' does not work: $(ip netns list 2>&1 | head -n1)"
        return 1
    fi
    return 0
}

# Removes the namespaces and claim of every earlier run whose owner is gone.
_rig_sweep_stale() {
    local claim run owner ns pids=()
    for claim in "$RIG_CLAIMS"/*; do
        [ -d "$claim" ] || continue
        run=${claim##*/}
        owner=$(cat "$claim/owner" 2>/dev/null || true)
        if [ -z "$owner" ]; then
            # being set up right now, or its owner died in the first
            # instant: only a minute-old claim without owner is stale
            [ -n "$(find "$claim" -maxdepth 0 -mmin +1 2>/dev/null)" ] || continue
        elif kill -0 "$owner" 2>/dev/null; then
            continue
        fi
        for ns in $(ip netns list | awk -v p="usbgw$run-" 'index($1, p) == 1 { print $1 }'); do
            # what that run left running in there (by pid)
            mapfile -t pids < <(ip netns pids "$ns" 2>/dev/null)
            [ ${#pids[@]} -eq 0 ] || kill -KILL "${pids[@]}" 2>/dev/null || true
            ip netns del "$ns" 2>/dev/null || true
        done
        rm -rf "$claim"
    done
}

_rig_on_exit() {
    local status=$? cmd
    trap - EXIT INT TERM
    for cmd in "${RIG_EXIT_CMDS[@]}"; do
        eval "$cmd" || true
    done
    rig_cleanup
    exit "$status"
}

rig_on_exit() {
    RIG_EXIT_CMDS+=("$*")
}

rig_init() {
    local start n
    [ -z "$RIG_RUN" ] || return 0
    mkdir -p "$RIG_CLAIMS" || _rig_die "cannot create $RIG_CLAIMS" || return 1
    _rig_sweep_stale
    start=$(($$ % 254))
    for ((n = 0; n < 254; n++)); do
        RIG_RUN=$(((start + n) % 254 + 1))
        if mkdir "$RIG_CLAIMS/$RIG_RUN" 2>/dev/null; then
            echo $$ > "$RIG_CLAIMS/$RIG_RUN/owner"
            break
        fi
        RIG_RUN=''
    done
    [ -n "$RIG_RUN" ] || _rig_die "no free run number under $RIG_CLAIMS" || return 1
    trap _rig_on_exit EXIT
    trap 'exit 130' INT
    trap 'exit 143' TERM
    RIG_SWITCH=usbgw$RIG_RUN-switch
    ip netns add "$RIG_SWITCH" || _rig_die "ip netns add $RIG_SWITCH failed" || return 1
    ip -n "$RIG_SWITCH" link set lo up &&
        ip -n "$RIG_SWITCH" link add br0 type bridge &&
        ip -n "$RIG_SWITCH" link set br0 up ||
        _rig_die "cannot set up the bridge in $RIG_SWITCH" || return 1
}

rig_ns() {
    echo "usbgw$RIG_RUN-$1"
}

rig_ip() {
    [ -n "${RIG_ADDR[$1]:-}" ] || _rig_die "no host '$1'" || return 1
    echo "${RIG_ADDR[$1]}"
}

rig_host() {
    local name=$1 addr=$2 ns port
    [[ $name =~ ^[A-Za-z0-9][A-Za-z0-9_.-]{0,30}$ ]] || _rig_die "bad host name '$name'" || return 1
    rig_init || return 1
    [ -z "${RIG_ADDR[$name]:-}" ] || _rig_die "host '$name' exists" || return 1
    [[ $addr == *.* ]] || addr=10.77.$RIG_RUN.$addr
    ns=$(rig_ns "$name")
    # the switch's end of the cable: p<index>, short enough for IFNAMSIZ
    port=p${#RIG_HOSTS[@]}
    ip netns add "$ns" || _rig_die "ip netns add $ns failed" || return 1
    RIG_HOSTS+=("$name")
    RIG_ADDR[$name]=$addr
    ip -n "$ns" link set lo up &&
        ip -n "$RIG_SWITCH" link add "$port" type veth peer name eth0 netns "$ns" &&
        ip -n "$RIG_SWITCH" link set "$port" master br0 &&
        ip -n "$RIG_SWITCH" link set "$port" up &&
        ip -n "$ns" addr add "$addr/24" dev eth0 &&
        ip -n "$ns" link set eth0 up ||
        _rig_die "cannot wire host '$name' ($addr)" || return 1
}

rig_exec() {
    local name=$1
    local exec_in
    shift
    [ -n "${RIG_ADDR[$name]:-}" ] || _rig_die "no host '$name'" || return 1
    if command -v nsenter >/dev/null; then
        # only the network namespace: the mounts (/sys, /run) stay the
        # caller's, which umockdev's redirected /sys needs
        exec_in=(nsenter "--net=/run/netns/$(rig_ns "$name")" --)
    else
        exec_in=(ip netns exec "$(rig_ns "$name")")
    fi
    "${exec_in[@]}" "$@"
}

rig_ping() {
    local name=$1 addr=$2 wait=${3:-2}
    rig_exec "$name" python3 -c '
import os, socket, struct, sys, time
addr, wait = sys.argv[1], float(sys.argv[2])
def checksum(b):
    s = sum(struct.unpack("!%dH" % (len(b) // 2), b))
    s = (s >> 16) + (s & 0xffff)
    return ~(s + (s >> 16)) & 0xffff
ident = os.getpid() & 0xffff
body = b"usbgw-netns-rig!"
head = struct.pack("!BBHHH", 8, 0, 0, ident, 1)
packet = struct.pack("!BBHHH", 8, 0, checksum(head + body), ident, 1) + body
s = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
try:
    s.sendto(packet, (addr, 0))
except OSError as e:
    sys.exit("ping %s: %s" % (addr, e.strerror))
end = time.monotonic() + wait
while time.monotonic() < end:
    s.settimeout(max(end - time.monotonic(), 0.01))
    try:
        data, src = s.recvfrom(2048)
    except socket.timeout:
        break
    ihl = (data[0] & 0x0f) * 4
    kind, _, _, rid, seq = struct.unpack("!BBHHH", data[ihl:ihl + 8])
    if kind == 0 and rid == ident and src[0] == addr:
        sys.exit(0)
sys.exit("ping %s: no answer within %g s" % (addr, wait))
' "$addr" "$wait"
}

rig_cut() {
    [ -n "${RIG_ADDR[$1]:-}" ] || _rig_die "no host '$1'" || return 1
    ip -n "$(rig_ns "$1")" link set eth0 down
}

rig_restore() {
    local ns addr
    [ -n "${RIG_ADDR[$1]:-}" ] || _rig_die "no host '$1'" || return 1
    ns=$(rig_ns "$1")
    addr=${RIG_ADDR[$1]}
    ip -n "$ns" link set eth0 up || return 1
    # the kernel puts the subnet route back on link up; make sure of it
    ip -n "$ns" route replace "${addr%.*}.0/24" dev eth0 src "$addr" || return 1
    for _ in $(seq 50); do
        ip -n "$ns" link show eth0 | grep -q LOWER_UP && return 0
        sleep 0.02
    done
    _rig_die "host '$1': eth0 has no carrier after restore"
}

rig_cleanup() {
    local name ns pids=() all=()
    [ -n "$RIG_RUN" ] || return 0
    for name in "${RIG_HOSTS[@]}"; do
        all+=("$(rig_ns "$name")")
    done
    all+=("$RIG_SWITCH")
    # processes this run left inside its hosts
    for ns in "${all[@]}"; do
        mapfile -t pids < <(ip netns pids "$ns" 2>/dev/null)
        [ ${#pids[@]} -eq 0 ] || kill -TERM "${pids[@]}" 2>/dev/null || true
    done
    for ns in "${all[@]}"; do
        for _ in $(seq 20); do
            [ -n "$(ip netns pids "$ns" 2>/dev/null || true)" ] || break
            sleep 0.05
        done
        mapfile -t pids < <(ip netns pids "$ns" 2>/dev/null)
        [ ${#pids[@]} -eq 0 ] || kill -KILL "${pids[@]}" 2>/dev/null || true
        ip netns del "$ns" 2>/dev/null || true
    done
    rm -rf "${RIG_CLAIMS:?}/$RIG_RUN"
    RIG_HOSTS=()
    RIG_ADDR=()
    RIG_RUN=''
}
