#!/bin/bash
# Live migration of a libvirt domain with a usbgw key between two hosts,
# each with its own libvirtd: the guest keeps answering the key.
#
#   test-libvirt-migration.sh GUEST_DIR WORK_DIR USBGWD USBGWCTL HOOK USBGW_SIM PEER
#
# Each host ("hv-a", "hv-b") is a network namespace (a veth pair between
# them, 10.78.<run>.1 and .2) and a private mount and UTS namespace. In it
# a fresh tmpfs is /run, and /run/libvirt, /run/usbgw, /etc/libvirt,
# /var/lib/libvirt, /var/cache/libvirt and /var/log/libvirt are bind mounts
# of the host's own directories under a work folder. So both hosts use the
# same run dir /run/usbgw, as real hosts do, and nothing of the root mount
# namespace's libvirt is touched. Each host runs its own virtlogd, libvirtd
# (its own host_uuid) with usbgw-hook installed as qemu.d/50-usbgw before it
# starts, and its own usbgwd on its libvirtd (libvirt-uri=qemu:///system);
# hv-a listens for gateway links, hv-b links to it (TLS, certificates from
# tests/link/make-certs.sh), each names the other in migration-peers.
#
# hv-a's usbgwd serves usbgw-sim's simulated key to the VM (the tiny guest,
# its probe answering the key's challenge every LOOP_MS). The VM starts on
# hv-a: the started hook makes usbgwd hot-plug the redirdev. Then MIGRATIONS
# live migrations back and forth (virsh migrate --live from the source
# host's namespaces to the other host's libvirtd, over its unix socket,
# with the migration stream over TCP between the namespaces). libvirt on
# the destination runs the hook with "migrate begin", the destination's
# usbgwd binds the VM's socket in its /run/usbgw and relays it to hv-a,
# which hands the key over.
#
# Asserted: after each migration the domain runs on the destination and
# no longer on the source, and the guest gives new answers; every answer
# is the one computed from the key's secret; no round reports an error
# once the key was there; the key keeps its bus, device number and port
# (it never enumerated again); hv-a keeps the key bound when libvirt says
# the VM stopped on it ("stopped here but runs on another host"); each
# host audits as many migrate-out and migrate-in records as it should,
# each naming hv-a and hv-b. Prints each migration's time and the longest
# gap between two answers around it.
#
# Exit 77 (skip): not root, no libvirtd/virtlogd/virsh/QEMU, no unshare,
# nsenter or ip, or network namespaces do not work.
# Env: USBGW_LVMIG_MIGRATIONS (default 4), USBGW_SIM_REAP_DELAY_MS (the
# simulated key holds each answer this long, so more migrations stop the
# source with an answer on its way), USBGW_TEST_KEEP=1 (keep the hosts'
# folders: daemons' logs, consoles).
set -euo pipefail

me=test-libvirt-migration
[[ $# -eq 7 ]] || {
    echo "usage: $0 GUEST_DIR WORK_DIR USBGWD USBGWCTL HOOK USBGW_SIM PEER" >&2
    exit 2
}
skip() {
    echo "$me: SKIP: $*"
    exit 77
}
[[ $EUID -eq 0 ]] || skip "not root (the hosts are namespaces, each with a system libvirtd)"
for tool in libvirtd virtlogd virsh qemu-system-x86_64 unshare nsenter ip timeout; do
    command -v "$tool" >/dev/null || skip "$tool not found (Debian: libvirt-daemon" \
        "libvirt-daemon-driver-qemu libvirt-clients qemu-system-x86 util-linux iproute2)"
done
compgen -G '/usr/lib*/libvirt/connection-driver/libvirt_driver_qemu.so' >/dev/null ||
    compgen -G '/usr/lib/*/libvirt/connection-driver/libvirt_driver_qemu.so' >/dev/null ||
    skip "libvirt's QEMU driver is not installed (Debian: libvirt-daemon-driver-qemu)"
for dir in /etc/libvirt /var/lib/libvirt /var/cache/libvirt /var/log/libvirt; do
    # mount points only: this test never creates anything there
    [[ -d $dir ]] || skip "$dir does not exist (it is mounted over in each host)"
done
getent passwd libvirt-qemu >/dev/null || skip "no user libvirt-qemu (libvirtd wants it" \
    "even when QEMU runs as root; tests/libvirt/libvirt-rig.sh creates it)"
ip netns list >/dev/null 2>&1 || skip "'ip netns' does not work: $(ip netns list 2>&1)"

guest_dir=$1
usbgwd=$(realpath "$3") usbgwctl_bin=$(realpath "$4") hook_bin=$(realpath "$5")
sim=$(realpath "$6") peer=$(realpath "$7")
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd -P)
# lv_guest_xml only: this test starts its own libvirtds, in its own mount
# namespaces, and never the rig's
# shellcheck source-path=SCRIPTDIR source=libvirt-rig.sh
. "$here/libvirt-rig.sh"
work=$(realpath -m "$2")/libvirt-migration
HASP_SECRET=000102030405060708090a0b0c0d0e0f
CHALLENGE=00112233445566778899aabbccddeeff
MIGRATIONS=${USBGW_LVMIG_MIGRATIONS:-4}
LOOP_MS=200
LINK_PORT=7576
# new answers the guest must give on each host before the next migration
ANSWERS_BETWEEN=3
CLAIMS=/run/usbgw-libvirt-hosts
SIDES=(a b)
declare -A ns=() addr=() home=() holder=() gwname=([a]=hv-a [b]=hv-b)
run='' hosts_dir='' sim_pid='' stamper_pid='' vm='' records=''

now() { echo "$EPOCHREALTIME"; }
secs() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", b - a }'; }

# --- namespaces ----------------------------------------------------------------
# The run number (subnet and namespace names) is claimed by mkdir of
# CLAIMS/<run>, with the owner's PID and the hosts' folder in it; a claim
# whose owner died (SIGKILL) is swept by the next run: what runs in its
# namespaces is killed (which ends their mount namespaces too), the
# namespaces are deleted, its folder removed.
ns_name() { echo "usbgwlv$1$2"; }

# empty_netns NS…: kill what runs in the network namespaces (TERM, then KILL
# 3 s later) and delete them. Every process of a host runs in its network
# namespace, so this ends its mount namespace as well.
empty_netns() {
    local n pids i
    for ((i = 0; i < 30; i++)); do
        pids=''
        for n in "$@"; do
            pids+=" $(ip netns pids "$n" 2>/dev/null | tr '\n' ' ')"
        done
        [[ -n ${pids// /} ]] || break
        # shellcheck disable=SC2086 # a list of PIDs
        if ((i == 0)); then kill -TERM $pids 2>/dev/null || true; fi
        # shellcheck disable=SC2086
        if ((i == 20)); then kill -KILL $pids 2>/dev/null || true; fi
        sleep 0.15
    done
    for n in "$@"; do
        ip netns del "$n" 2>/dev/null || true
    done
}

sweep_stale() {
    local claim owner dir r
    for claim in "$CLAIMS"/*; do
        [[ -d $claim ]] || continue
        owner=$(sed -n 1p "$claim/owner" 2>/dev/null || true)
        if [[ -z $owner ]]; then
            # being made right now, or its owner died at once: stale after a minute
            (($(date +%s) - $(stat -c %Y "$claim") > 60)) || continue
        elif kill -0 "$owner" 2>/dev/null; then
            continue
        fi
        r=${claim##*/}
        echo "$me: removing what run $r (pid ${owner:-?}) left behind"
        empty_netns "$(ns_name "$r" a)" "$(ns_name "$r" b)"
        dir=$(sed -n 2p "$claim/owner" 2>/dev/null || true)
        [[ $dir != /tmp/usbgw-lvmig.* ]] || rm -rf "$dir"
        rm -rf "$claim"
    done
}

claim_run() {
    local r n start=$(($$ % 254))
    mkdir -p "$CLAIMS"
    sweep_stale
    for ((n = 0; n < 254; n++)); do
        r=$(((start + n) % 254 + 1))
        mkdir "$CLAIMS/$r" 2>/dev/null || continue
        printf '%s\n%s\n' "$$" "$hosts_dir" >"$CLAIMS/$r/owner"
        run=$r
        return 0
    done
    fail "no free run number under $CLAIMS"
}

# The hosts' folders: short paths (unix socket paths have 108 bytes).
make_hosts() {
    local s d n=1
    hosts_dir=$(mktemp -d /tmp/usbgw-lvmig.XXXXXX)
    claim_run
    for s in "${SIDES[@]}"; do
        ns[$s]=$(ns_name "$run" "$s")
        addr[$s]=10.78.$run.$n
        home[$s]=$hosts_dir/$s
        n=$((n + 1))
        for d in run-libvirt usbgw-run etc-libvirt/hooks/qemu.d lib-libvirt/qemu cache-libvirt/qemu \
            log-libvirt/qemu; do
            mkdir -p "${home[$s]}/$d"
        done
    done
    for s in "${SIDES[@]}"; do
        ip netns add "${ns[$s]}" || fail "ip netns add ${ns[$s]} failed"
        ip -n "${ns[$s]}" link set lo up || fail "lo up in ${ns[$s]} failed"
    done
    ip -n "${ns[a]}" link add eth0 type veth peer name eth0 netns "${ns[b]}" ||
        fail "cannot make the veth pair between ${ns[a]} and ${ns[b]}"
    for s in "${SIDES[@]}"; do
        ip -n "${ns[$s]}" addr add "${addr[$s]}/24" dev eth0 || fail "ip addr add in ${ns[$s]} failed"
        ip -n "${ns[$s]}" link set eth0 up || fail "eth0 up in ${ns[$s]} failed"
    done
}

# start_holder SIDE: a process that makes the host's mount and UTS
# namespace (inside its network namespace) and stays; everything of the
# host is started in its namespaces (hx). Propagation is private, so no
# mount made here is seen outside.
start_holder() {
    local s=$1 h=${home[$1]} i
    # shellcheck disable=SC2016 # expanded by the holder's shell
    nsenter --net="/run/netns/${ns[$s]}" -- unshare --mount --uts --propagation private -- \
        bash -c '
set -e
h=$1
mount -t tmpfs -o mode=0755 usbgw-host-run /run
mkdir -p /run/libvirt /run/usbgw
mount --bind "$h/run-libvirt" /run/libvirt
mount --bind "$h/usbgw-run" /run/usbgw
mount --bind "$h/etc-libvirt" /etc/libvirt
mount --bind "$h/lib-libvirt" /var/lib/libvirt
mount --bind "$h/cache-libvirt" /var/cache/libvirt
mount --bind "$h/log-libvirt" /var/log/libvirt
hostname "$2"
echo ready >"$h/holder.ready"
exec sleep infinity' usbgw-host "$h" "${gwname[$s]}" >"$h/holder.log" 2>&1 &
    holder[$s]=$!
    for ((i = 0; i < 100; i++)); do
        [[ -f $h/holder.ready ]] && return 0
        kill -0 "${holder[$s]}" 2>/dev/null || break
        sleep 0.05
    done
    fail "the namespaces of ${gwname[$s]} were not made: $(cat "$h/holder.log")"
}

# hx SIDE CMD…: run CMD in that host's namespaces.
hx() {
    local s=$1
    shift
    nsenter -t "${holder[$s]}" --mount --net --uts -- "$@"
}
# hvirsh SIDE ARGS…: virsh on that host's libvirtd.
hvirsh() {
    local s=$1
    shift
    hx "$s" timeout -k 5 120 virsh -q -c qemu:///system "$@"
}

cleanup() {
    local rc=$? s
    trap - EXIT
    [[ -z $stamper_pid ]] || kill "$stamper_pid" 2>/dev/null || true
    if [[ -n $sim_pid ]]; then
        pkill -TERM -P "$sim_pid" 2>/dev/null || true # its sleep
        kill "$sim_pid" 2>/dev/null || true
    fi
    if [[ -n $run ]]; then
        # daemons, QEMUs, usbgwds, the holders: all in the namespaces
        empty_netns "${ns[a]}" "${ns[b]}"
        rm -rf "${CLAIMS:?}/$run"
    fi
    wait 2>/dev/null || true
    if [[ -n $hosts_dir ]]; then
        if [[ -n ${USBGW_TEST_KEEP:-} ]]; then
            echo "$me: kept $hosts_dir"
        else
            # the logs stay in the work folder
            for s in "${SIDES[@]}"; do
                mkdir -p "$work/$s"
                cp -p "${home[$s]}"/*.log "${home[$s]}"/*.conf "$work/$s/" 2>/dev/null || true
                cp -pr "${home[$s]}/log-libvirt/qemu" "$work/$s/qemu-logs" 2>/dev/null || true
            done
            cp -p "$hosts_dir"/*.log "$work/" 2>/dev/null || true
            rm -rf "$hosts_dir"
        fi
    fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 143' TERM INT

fail() {
    echo "$me: FAIL: $*"
    local s
    if [[ -n $hosts_dir && -f $hosts_dir/console.log ]]; then
        echo "--- the guest's console, last 30 lines:"
        tr -d '\r' <"$hosts_dir/console.log" | tail -n 30 || true
    fi
    for s in "${SIDES[@]}"; do
        [[ -n ${home[$s]:-} ]] || continue
        echo "--- ${gwname[$s]}: usbgwd log, last 40 lines:"
        grep -av 'cannot find handle' "${home[$s]}/usbgwd.log" 2>/dev/null | tail -n 40 || true
        echo "--- ${gwname[$s]}: libvirtd log, last 20 lines:"
        tail -n 20 "${home[$s]}/libvirtd.log" 2>/dev/null || true
        echo "--- ${gwname[$s]}: QEMU's log (libvirt's), last 12 lines:"
        tail -n 12 "${home[$s]}/log-libvirt/qemu/$vm.log" 2>/dev/null || true
        echo "--- ${gwname[$s]}: hook calls:"
        cat "${home[$s]}/hook-calls.log" 2>/dev/null || true
    done
    exit 1
}

# wait_file FILE PATTERN TIMEOUT: until a line of FILE matches the ERE.
wait_file() {
    local end=$((SECONDS + $3))
    until [[ -f $1 ]] && tr -d '\r' <"$1" | grep -aEq "$2"; do
        ((SECONDS < end)) || return 1
        sleep 0.1
    done
}

# --- a host's daemons ----------------------------------------------------------
# configure_host SIDE: libvirtd.conf, qemu.conf, the hook, usbgwd.conf.
configure_host() {
    local s=$1 h=${home[$1]}
    cat >"$h/etc-libvirt/libvirtd.conf" <<EOF
# this host's own identity: libvirt refuses a migration to the same host_uuid
host_uuid = "$(cat /proc/sys/kernel/random/uuid)"
auth_unix_ro = "none"
auth_unix_rw = "none"
EOF
    # the rig's qemu.conf: what works on a host without systemd as init
    printf '%s' "$lv__qemu_conf" >"$h/etc-libvirt/qemu.conf"
    # the hook must be there before libvirtd starts; it logs each call
    cat >"$h/etc-libvirt/hooks/qemu.d/50-usbgw" <<EOF
#!/bin/sh
echo "\$(date +%T.%N) \$*" >>"$h/hook-calls.log"
exec "$hook_bin" --config "$h/usbgwd.conf" "\$@"
EOF
    chmod 755 "$h/etc-libvirt/hooks/qemu.d/50-usbgw"
    {
        echo "[usbgwd]"
        echo "policy=$h/policy"
        echo "rundir=/run/usbgw"
        echo "control-socket=$h/control.sock"
        echo "state=$h/state.json"
        echo "audit-log=$h/audit.log"
        echo "libvirt-uri=qemu:///system"
        echo "link-cert=$hosts_dir/certs/${gwname[$s]}-cert.pem"
        echo "link-key=$hosts_dir/certs/${gwname[$s]}-key.pem"
        echo "link-ca=$hosts_dir/certs/ca-cert.pem"
        if [[ $s == a ]]; then
            echo "link-listen=${addr[a]}:$LINK_PORT"
            echo "migration-peers=hv-b"
        else
            echo "link-peers=hv-a@${addr[a]}:$LINK_PORT"
            echo "link-reattach-interval=0"
            echo "migration-peers=hv-a"
        fi
    } >"$h/usbgwd.conf"
}

# start_libvirt SIDE: virtlogd and libvirtd in the foreground, in the
# host's namespaces; waits for virsh's first answer.
start_libvirt() {
    local s=$1 h=${home[$1]} t0 end out
    hx "$s" virtlogd >"$h/virtlogd.log" 2>&1 &
    hx "$s" libvirtd >"$h/libvirtd.log" 2>&1 &
    echo $! >"$h/libvirtd.pid"
    t0=$(now)
    end=$((SECONDS + 90))
    until out=$(hvirsh "$s" version 2>&1); do
        kill -0 "$(cat "$h/libvirtd.pid")" 2>/dev/null ||
            fail "${gwname[$s]}'s libvirtd exited: $(tail -n 20 "$h/libvirtd.log")"
        ((SECONDS < end)) || fail "${gwname[$s]}'s libvirtd did not answer within 90 s: $out"
        sleep 0.2
    done
    echo "$me: ${gwname[$s]}: libvirtd answers after $(secs "$t0" "$(now)") s"
}

# start_usbgwd SIDE [ENV…]: usbgwd in the host's namespaces on its libvirtd.
start_usbgwd() {
    local s=$1 h=${home[$1]}
    shift
    hx "$s" env "$@" "$usbgwd" --foreground --debug --config "$h/usbgwd.conf" >>"$h/usbgwd.log" 2>&1 &
    wait_file "$h/usbgwd.log" 'libvirt qemu:///system connected' 30 ||
        fail "${gwname[$s]}'s usbgwd did not connect to its libvirtd"
}

# usbgwctl SIDE ARGS…: usbgwctl on that host's usbgwd.
usbgwctl() {
    local s=$1
    shift
    "$usbgwctl_bin" --socket "${home[$s]}/control.sock" "$@"
}

# --- the guest -----------------------------------------------------------------
console() { tr -d '\r' <"$hosts_dir/console.log" 2>/dev/null; }
answer_count() { console | grep -ac '^USBGW-ANSWER 0529:0001 ' || true; }

# define_vm NAME: libvirt-rig.sh's tiny guest in 128 MiB, its probe asking
# the key every LOOP_MS; its console appends to one file on every host (the
# destination's QEMU must not truncate it).
define_vm() {
    local out
    : >"$hosts_dir/console.log"
    LV_GUEST_MEM_MIB=128 LV_CONSOLE_APPEND=1 lv_guest_xml "$1" "$(cat /proc/sys/kernel/random/uuid)" \
        "$guest_dir" "usbgw.dev=0529:0001 usbgw.challenge=$CHALLENGE usbgw.loop_ms=$LOOP_MS usbgw.wait=60" \
        "$hosts_dir/console.log" >"$hosts_dir/vm.xml" || fail "no domain XML (message above)"
    out=$(hvirsh a define "$hosts_dir/vm.xml" 2>&1) || fail "virsh define on hv-a failed: $out"
}

# wait_answers N TIMEOUT: until the guest gave N answers in all.
wait_answers() {
    local end=$((SECONDS + $2))
    until (($(answer_count) >= $1)); do
        ((SECONDS < end)) || return 1
        sleep 0.1
    done
}

# domstate SIDE: the VM's state on that host ("-" when it has no such domain).
domstate() { hvirsh "$1" domstate "$vm" 2>/dev/null || echo -; }

# --- the test ------------------------------------------------------------------
rm -rf "$work"
mkdir -p "$work"
bash "$here/../guest/build-guest.sh" "$guest_dir" >"$work/guest-build.log" 2>&1 ||
    { cat "$work/guest-build.log"; fail "the guest build failed"; }
guest_dir=$(cd "$guest_dir" && pwd -P)
hasp_answer=$("$peer" --key-answer $HASP_SECRET $CHALLENGE)

make_hosts
echo "$me: hosts: hv-a ${ns[a]} ${addr[a]}, hv-b ${ns[b]} ${addr[b]}, folders in $hosts_dir"
bash "$here/../link/make-certs.sh" "$hosts_dir/certs" hv-a hv-b >"$hosts_dir/certs.log" 2>&1 ||
    fail "make-certs.sh failed: $(cat "$hosts_dir/certs.log")"
vm=usbgw-lvmig-$$
for s in "${SIDES[@]}"; do
    configure_host "$s"
    start_holder "$s"
done
printf 'assign id 0529:0001 to vm "%s"\n' "$vm" >"${home[a]}/policy"
echo "# no rule: hv-b relays the VM's socket to hv-a" >"${home[b]}/policy"
# both at once: each probes QEMU's capabilities first (~8 s)
start_libvirt a &
started_a=$!
start_libvirt b &
started_b=$!
wait "$started_a" || fail "hv-a's libvirtd did not start (message above)"
wait "$started_b" || fail "hv-b's libvirtd did not start (message above)"

# the simulated key: a helper process owns it; hv-a's usbgwd gets its
# environment (UMOCKDEV_DIR, the preload), nothing else does. It runs in
# hv-a's namespaces, as does every process of the test but this shell, so
# a run killed with SIGKILL leaves nothing the next run's sweep misses.
# shellcheck disable=SC2016 # expanded by sh
hx a "$sim" --secret "hasp=$HASP_SECRET" --plug hasp --control "$hosts_dir/sim.sock" -- \
    sh -c 'env | grep -E "^(UMOCKDEV_DIR|LD_PRELOAD)=" >"$0.tmp" && mv "$0.tmp" "$0" && exec sleep 100000' \
    "$hosts_dir/sim.env" >"$hosts_dir/sim.log" 2>&1 &
sim_pid=$!
wait_file "$hosts_dir/sim.env" UMOCKDEV_DIR 20 || fail "the simulator did not start"
# shellcheck disable=SC2046 # VAR=VALUE words
start_usbgwd a $(cat "$hosts_dir/sim.env")
start_usbgwd b
wait_file "${home[b]}/usbgwd.log" 'link hv-a: up\b' 30 || fail "hv-b's link to hv-a is not up"

define_vm "$vm"
# the console's lines with the host's time when they came (the file has none)
hx a python3 -u -c '
import sys, time
f = open(sys.argv[1], "rb")
buf = b""
while True:
    chunk = f.read()
    if not chunk:
        time.sleep(0.02)
        continue
    t = time.time()
    *lines, buf = (buf + chunk).split(b"\n")
    for line in lines:
        print("%.3f %s" % (t, line.decode(errors="replace").replace("\r", "")))
' "$hosts_dir/console.log" >"$hosts_dir/console-times.log" 2>&1 &
stamper_pid=$!
t0=$(now)
out=$(hvirsh a start "$vm" 2>&1) || fail "virsh start on hv-a failed: $out"
wait_answers 1 120 || fail "the guest on hv-a got no answer"
echo "$me: virsh start on hv-a → first answer: $(secs "$t0" "$(now)") s"
wait_answers $((1 + ANSWERS_BETWEEN)) 30 || fail "the guest on hv-a stopped answering"

src=a dst=b
for ((i = 1; i <= MIGRATIONS; i++)); do
    before=$(answer_count)
    sock_path=${home[$dst]}/run-libvirt/libvirt-sock
    t0=$(now)
    out=$(hx "$src" timeout -k 5 180 virsh -c qemu:///system migrate --live --verbose "$vm" \
        "qemu+unix:///system?socket=$sock_path" --migrateuri "tcp://${addr[$dst]}" 2>&1) ||
        fail "migration $i ${gwname[$src]} → ${gwname[$dst]} failed: $out"
    t1=$(now)
    t_mig=$(secs "$t0" "$t1")
    echo "$i $t0 $t1" >>"$hosts_dir/migrations.txt"
    state_dst=$(domstate "$dst") state_src=$(domstate "$src")
    [[ $state_dst == running ]] || fail "after migration $i the VM is '$state_dst' on ${gwname[$dst]}"
    [[ $state_src != running && $state_src != paused ]] ||
        fail "after migration $i the VM is still '$state_src' on ${gwname[$src]}"
    wait_answers $((before + ANSWERS_BETWEEN)) 60 ||
        fail "after migration $i (${gwname[$src]} → ${gwname[$dst]}) the guest gave" \
            "$(($(answer_count) - before)) new answers in 60 s, want $ANSWERS_BETWEEN"
    echo "$me: migration $i: ${gwname[$src]} → ${gwname[$dst]} in $t_mig s (virsh migrate)," \
        "the guest answers on ${gwname[$dst]}"
    # hv-a keeps the key attached to the VM wherever it runs; the
    # destination's usbgwd knows the VM
    usbgwctl a list | grep -Eq "^0529:0001@1-1 +attached +$vm " ||
        fail "after migration $i hv-a does not show the key attached to $vm:" \
            "$(usbgwctl a list 2>&1)"
    usbgwctl "$dst" vms | grep -q "^$vm " ||
        fail "after migration $i ${gwname[$dst]} does not show $vm: $(usbgwctl "$dst" vms 2>&1)"
    tmp=$src src=$dst dst=$tmp
done

# --- what the guest saw --------------------------------------------------------
console >"$work/console.txt"
errors=$(awk '/^USBGW-ANSWER 0529:0001 / { seen = 1 } seen && /^USBGW-ERROR/' "$work/console.txt")
[[ -z $errors ]] || fail "errors after the key was there: $(head -n 5 <<<"$errors")"
answers=$(sed -n 's/^USBGW-ANSWER 0529:0001 .*response=//p' "$work/console.txt" | sort -u)
[[ $answers == "$hasp_answer" ]] || fail "answers '$answers' are not the key's ($hasp_answer)"
where=$(sed -n 's/^USBGW-ANSWER 0529:0001 serial=[^ ]* \(port=.* devnum=[0-9]*\) .*/\1/p' \
    "$work/console.txt" | sort -u)
[[ $(wc -l <<<"$where") -eq 1 ]] || fail "the key enumerated again: $(paste -sd';' <<<"$where")"
echo "$me: $(answer_count) answers, all the key's, one enumeration ($where), no error"

# the longest gap between two answers that overlaps each migration
awk 'NR == FNR { start[$1] = $2; end[$1] = $3; n = $1; next }
    $2 == "USBGW-ANSWER" { if (last) for (i = 1; i <= n; i++)
            if (last < end[i] && $1 > start[i] && $1 - last > gap[i]) gap[i] = $1 - last
        last = $1 }
    END { for (i = 1; i <= n; i++) printf "%s%.2f", (i > 1 ? ", " : ""), gap[i]; print "" }' \
    "$hosts_dir/migrations.txt" "$hosts_dir/console-times.log" >"$work/gaps.txt"
echo "$me: longest gap between answers across each migration (s; the probe asks every" \
    "$LOOP_MS ms): $(cat "$work/gaps.txt")"

# --- what QEMU said --------------------------------------------------------------
# usb-redir's only expected complaint: an answer re-sent to a destination
# that did not hold the transfer (docs/migration.md)
for s in "${SIDES[@]}"; do
    log=${home[$s]}/log-libvirt/qemu/$vm.log
    bad=$(grep -a 'usb-redir' "$log" | grep -av '^-device\|could not find packet with id' || true)
    [[ -z $bad ]] || fail "${gwname[$s]}'s QEMU: $(head -n 5 <<<"$bad")"
done

# --- what the gateways recorded ------------------------------------------------
grep -aq "vm \"$vm\" stopped here but runs on another host" "${home[a]}/usbgwd.log" ||
    fail "hv-a did not keep the key bound when the VM stopped on it"
# audit_records SIDE EVENT COUNT: that host has COUNT records of EVENT
# (in $records)
audit_records() {
    local n
    records=$(grep -a "\"event\":\"$2\"" "${home[$1]}/audit.log" || true)
    n=$(grep -c . <<<"$records" || true)
    ((n == $3)) || fail "${gwname[$1]}: $n '$2' audit records, want $3: $records"
}
# audit_check SIDE EVENT COUNT: the same, each record naming both gateways
audit_check() {
    local line
    audit_records "$@"
    while read -r line; do
        [[ -z $line || ($line == *'"hv-a"'* && $line == *'"hv-b"'*) ]] ||
            fail "${gwname[$1]}: a '$2' record that does not name hv-a and hv-b: $line"
    done <<<"$records"
}
# plugged in once, when the VM first started; never unplugged on the way
audit_records a attach 1
audit_records a detach 0
out_a=$(((MIGRATIONS + 1) / 2)) in_a=$((MIGRATIONS / 2))
audit_check a migrate-out "$out_a"
audit_check a migrate-in "$in_a"
audit_check b migrate-in "$out_a"
audit_check b migrate-out "$in_a"
echo "$me: bytes re-sent to the destination at each handover (hv-a's records):" \
    "$(sed -n 's/.*"event":"migrate-\(in\|out\)".*, \([0-9]*\) bytes re-sent .*(\([0-9]*\) answers.*/\2 (\3 answers)/p' \
        "${home[a]}/audit.log" | paste -sd, | sed 's/,/, /g')"
echo "$me: audit: hv-a $out_a migrate-out + $in_a migrate-in, hv-b $out_a migrate-in + $in_a migrate-out"

hvirsh "$src" destroy "$vm" >/dev/null || fail "virsh destroy on ${gwname[$src]} failed"
echo "$me: PASS"
