#!/bin/bash
# The cluster mode across hosts (docs/cluster.md, "Tests across hosts"):
# builds the hosts with netns-rig.sh, then runs one scenario of
# cluster-hosts.py in the observer host "t", which reaches every other host
# over the rig's bridge:
#
#   test-cluster-hosts.sh SCENARIO USBGWD USBGW_SIM TEST_PEER USBGWCTL GUEST_DIR
#
# Hosts (10.77.<run>.N): e1, e2, e3 (.21-.23, one etcd member each), d1 and
# d2 (.31, .32, dongle servers), hv-a, hv-b, hv-c (.41-.43, hypervisors),
# t (.9, the test itself: checks etcd, drives the gateways).
#
# Exit 77 (skip) without root, `ip netns`, python3, openssl or etcd, without
# QEMU or the guest image (scenarios with guests); the Python side skips the
# cluster scenarios when usbgwd has no cluster mode.
set -euo pipefail
[ -n "${USBGW_TEST_TRACE:-}" ] && set -x

[ $# -eq 6 ] || {
    echo "usage: $0 SCENARIO USBGWD USBGW_SIM TEST_PEER USBGWCTL GUEST_DIR" >&2
    exit 2
}
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd -P)

skip() {
    echo "SKIP: $*"
    exit 77
}

# shellcheck source-path=SCRIPTDIR source=../links/netns-rig.sh
. "$here/../links/netns-rig.sh"
why=$(rig_available) || skip "$why"
for tool in python3 openssl etcd; do
    command -v $tool >/dev/null || skip "$tool not found"
done

scenario=$1 guest_dir=$6
# the guest image is built (and its packages downloaded) here: the rig's
# hosts have no route out
if [ "$scenario" != soak ]; then
    command -v qemu-system-x86_64 >/dev/null || skip "qemu-system-x86_64 not found"
    build_log=$(mktemp /tmp/usbgw-cluster-hosts-guest.XXXXXX)
    if ! bash "$here/../guest/build-guest.sh" "$guest_dir" > "$build_log" 2>&1; then
        tail -n 20 "$build_log"
        rm -f "$build_log"
        skip "no guest image: build-guest.sh failed"
    fi
    rm -f "$build_log"
fi

hosts=(t:9 e1:21 e2:22 e3:23 d1:31 d2:32 hv-a:41 hv-b:42 hv-c:43)
described=()
for entry in "${hosts[@]}"; do
    name=${entry%%:*}
    rig_host "$name" "${entry##*:}" || { echo "FAIL: rig_host $name" >&2; exit 1; }
    described+=("$name=$(rig_ns "$name")=$(rig_ip "$name")")
done
echo "cluster-hosts: rig run $RIG_RUN: ${described[*]}"

# the rig's EXIT trap removes the namespaces (and what runs in them) after
# the scenario, whatever its status
status=0
USBGW_CLUSTER_HOSTS="${described[*]}" rig_exec t python3 "$here/cluster-hosts.py" "$@" ||
    status=$?
exit $status
