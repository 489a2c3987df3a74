# shellcheck shell=bash
# usbgwd-test.sh: what the end-to-end scripts that run usbgwd without
# libvirt (on usbgw-sim's keys) share. Source it:
#
#   . "$(dirname "$0")/../sim/usbgwd-test.sh"
#   gw_test_conf "$work" "vm-pid-file=$work/pids/{vm}.pid"
#   port=$(gw_test_free_port)

# gw_test_conf WORK [KEY=VALUE…]: writes WORK/usbgwd.conf for a usbgwd
# without libvirt whose control socket (WORK/control.sock), state and audit
# log are in WORK, then the given keys, one per line
gw_test_conf() {
    local work=$1
    shift
    {
        echo '[usbgwd]'
        echo "control-socket=$work/control.sock"
        echo "state=$work/state.json"
        echo "audit-log=$work/audit.log"
        echo 'libvirt-uri='
        [ $# -eq 0 ] || printf '%s\n' "$@"
    } > "$work/usbgwd.conf"
}

# gw_test_free_port: a TCP port that is free on 127.0.0.1 now
gw_test_free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}
