# shellcheck shell=bash
# shellcheck disable=SC2034 # the LV_* results are for the caller
# libvirt-rig.sh: a real system libvirtd (qemu:///system) for usbgw's tests
# and demo, on a Debian 12 host without libvirt-daemon-system (whose
# systemd-sysv would replace init): libvirtd and virtlogd started by hand.
#
#   . tests/libvirt/libvirt-rig.sh
#   lv_prereqs || exit 77              # prints why not (not root, no libvirtd…)
#   trap lv_teardown EXIT
#   lv_setup HOOK                      # HOOK becomes qemu.d/50-usbgw
#   name=$(lv_new_name smoke)
#   lv_define_guest "$name" "$(lv_new_uuid)" GUEST_DIR "usbgw.list=1"
#   lv_start "$name"
#   lv_wait_console "$name" '^USBGW-GUEST-READY$' 60
#
# Every function returns non-zero with a message on stderr ("libvirt-rig:
# …") when it fails; none exits the caller, so it works with or without
# set -e. Run as root (it writes /etc/libvirt and starts daemons).
#
# Sharing the host. One rig session at a time: lv_setup writes its owner
# (PID and start time) into LV_STATE_DIR/state and waits up to
# LV_LOCK_TIMEOUT s while another live session owns it (the flock on
# LV_LOCK only guards that hand-over, so no child process inherits a lock).
# Everything a session changes is written down there as it happens, and
# lv_teardown undoes exactly that. A session that died without tearing down
# (SIGKILL) leaves its state behind with a dead owner; the next lv_setup
# undoes it first, stopping the daemons that session started (checked by
# PID and start time).
# Someone may also run a libvirtd by hand. In this mount view (same /run or
# /etc/libvirt), lv_setup reuses it when it already runs HOOK (the installed
# 50-usbgw has HOOK's bytes and is older than the daemon, which discovers
# hooks when it starts), and fails otherwise, naming the daemon: it never
# stops a daemon it did not start. A libvirtd in another mount namespace
# with its own /run and /etc/libvirt (unshare -m plus bind mounts) shares
# nothing with the rig and is left out of account.
#
# Settings (set before lv_setup):
#   LV_PREFIX         what every domain name starts with (default usbgw-test-)
#   LV_LOG_DIR        where guest console logs and domain XML go; kept. By
#                     default a fresh directory, removed by lv_teardown.
#   LV_START_TIMEOUT  seconds for libvirtd to answer (default 90; on the rig
#                     ~8 s when libvirt probes QEMU's capabilities, ~0.2 s
#                     once /var/cache/libvirt/qemu/capabilities has them)
#   LV_LOCK_TIMEOUT   seconds to wait for another rig session (default 300)
#   LV_VIRSH_TIMEOUT  hard limit of each virsh call (default 60)
# Results:
#   LV_REUSED         1 when lv_setup reuses a running libvirtd, else 0
#   LV_TIME_DAEMONS   seconds to start virtlogd + libvirtd ("-" when reused)
#   LV_TIME_READY     seconds from then to the first answer of virsh version
#   LV_TIME_START     seconds the last lv_start took (virsh start)
#   LV_TIME_ATTACH    seconds the last lv_attach_redirdev took

LV_URI=qemu:///system
: "${LV_PREFIX:=usbgw-test-}" # every domain name starts so (the demo may pick its own)
LV_HOOK_DEST=/etc/libvirt/hooks/qemu.d/50-usbgw
LV_QEMU_CONF=/etc/libvirt/qemu.conf
LV_STATE_DIR=/run/usbgw-libvirt-rig
LV_LOCK=/run/usbgw-libvirt-rig.lock
: "${LV_START_TIMEOUT:=90}" "${LV_LOCK_TIMEOUT:=300}" "${LV_VIRSH_TIMEOUT:=60}"
LV_REUSED=0 LV_TIME_DAEMONS=- LV_TIME_READY=- LV_TIME_START=- LV_TIME_ATTACH=-

# What works on a host without systemd as init: QEMU as root with no confinement and no
# cgroups (init is not systemd), its stdio logged to plain files.
lv__qemu_conf='# Written by usbgw tests/libvirt/libvirt-rig.sh; restored on teardown.
user = "root"
group = "root"
security_driver = "none"
dynamic_ownership = 0
stdio_handler = "file"
cgroup_controllers = [ ]
'

lv__owned=0 lv__log_dir_owned='' lv__holder='' lv__leftover=()

lv__say() { echo "libvirt-rig: $*" >&2; }
lv__err() {
    echo "libvirt-rig: error: $*" >&2
    return 1
}
lv__secs() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", b - a }'; }
lv__record() { echo "$*" >>"$LV_STATE_DIR/state"; }

# --- processes -----------------------------------------------------------------
# lv__starttime PID: the process's start time (clock ticks after boot).
lv__starttime() {
    local stat
    stat=$(cat "/proc/$1/stat" 2>/dev/null) || return 1
    stat=${stat##*) } # the fields after "(comm) ", from field 3 (state) on
    # shellcheck disable=SC2086 # split on purpose
    set -- $stat
    [[ $1 != [ZX] ]] || return 1 # a zombie is gone already
    echo "${20}"                 # field 22
}
# lv__alive PID [STARTTIME]: the process runs (and is the one that started then).
lv__alive() {
    local st
    st=$(lv__starttime "$1") || return 1
    [[ -z ${2:-} || $st == "$2" ]]
}
# lv__shares_view PID: the process sees our /run or our /etc/libvirt (it
# is not isolated in a mount namespace of its own).
lv__shares_view() {
    local d
    for d in /run /etc/libvirt; do
        [[ -e $d && $(stat -Lc %d:%i "/proc/$1/root$d" 2>/dev/null) == "$(stat -Lc %d:%i "$d")" ]] &&
            return 0
    done
    return 1
}
# lv_pids NAME: the live processes with that exact name that share our view
# of /run or /etc/libvirt (zombies linger for a moment on this rig: PID 1
# reaps them late).
lv_pids() {
    local pid
    for pid in $(pgrep -x "$1" || true); do
        if lv__alive "$pid" && lv__shares_view "$pid"; then
            echo "$pid"
        fi
    done
}
# lv__since_epoch PID: when the process started, in seconds since the epoch.
lv__since_epoch() {
    local st btime hz
    st=$(lv__starttime "$1") || return 1
    btime=$(awk '$1 == "btime" { print $2 }' /proc/stat)
    hz=$(getconf CLK_TCK)
    echo $((btime + st / hz))
}
# lv__stop PID STARTTIME NAME: SIGTERM, then SIGKILL after 15 s; only that process.
lv__stop() {
    local pid=$1 st=$2 name=$3 i
    lv__alive "$pid" "$st" || return 0
    kill -TERM "$pid" 2>/dev/null || return 0
    for ((i = 0; i < 150; i++)); do
        lv__alive "$pid" "$st" || return 0
        sleep 0.1
    done
    lv__say "$name (pid $pid) ignored SIGTERM for 15 s: SIGKILL"
    kill -KILL "$pid" 2>/dev/null || true
}

# lv__start_daemon NAME: NAME --daemon; prints its PID. The daemons fork
# and return once started (having closed their stdio).
lv__start_daemon() {
    local name=$1 out pid i
    if ! out=$("$name" --daemon </dev/null 2>&1); then
        lv__err "'$name --daemon' failed: ${out:-no message}"
        return 1
    fi
    for ((i = 0; i < 50; i++)); do
        pid=$(cat "/run/$name.pid" 2>/dev/null || true)
        if [[ -n $pid ]] && lv__alive "$pid" && [[ $(cat "/proc/$pid/comm") == "$name" ]]; then
            echo "$pid"
            return 0
        fi
        sleep 0.1
    done
    lv__err "'$name --daemon' returned but no $name runs with the PID in /run/$name.pid${out:+: $out}"
}

# --- virsh ---------------------------------------------------------------------
# lv_virsh ARGS…: virsh on qemu:///system, bounded by LV_VIRSH_TIMEOUT.
lv_virsh() {
    timeout -k 5 "$LV_VIRSH_TIMEOUT" virsh -q -c "$LV_URI" "$@"
}

lv__wait_ready() { # [PID STARTTIME of the libvirtd to watch]
    local end=$((SECONDS + LV_START_TIMEOUT)) out
    until out=$(lv_virsh version 2>&1); do
        if [[ -n ${1:-} ]] && ! lv__alive "$1" "$2"; then
            lv__err "libvirtd (pid $1) exited before it answered: $out"
            return 1
        fi
        if ((SECONDS >= end)); then
            lv__err "libvirtd did not answer 'virsh -c $LV_URI version' within" \
                "${LV_START_TIMEOUT} s: $out"
            return 1
        fi
        sleep 0.2
    done
}

# lv__forget_domain NAME: destroy and undefine it, if it exists.
lv__forget_domain() {
    local state out
    state=$(lv_virsh domstate "$1" 2>/dev/null) || return 0 # no such domain
    if [[ $state != "shut off" ]] && ! out=$(lv_virsh destroy "$1" 2>&1); then
        lv__say "cannot destroy domain $1: $out"
    fi
    if ! out=$(lv_virsh undefine "$1" 2>&1); then
        lv__say "cannot undefine domain $1: $out"
        return 1
    fi
}

# --- state file ----------------------------------------------------------------
# Lines, in the order things happened:
#   owner PID START               the shell that ran lv_setup (first line)
#   virtlogd|libvirtd PID START   a daemon this session started
#   qemu-conf absent|saved        qemu.conf written (the original: none / saved copy)
#   hook-dir DIR                  a directory lv_setup created for the hook
#   hook absent|saved             50-usbgw installed (the original: none / saved copy)
#   domain NAME                   a domain lv_define_guest defined
#   log-dir DIR                   the default LV_LOG_DIR, removed at the end
# lv__undo undoes them: domains first (while libvirtd runs), then daemons,
# then files. Returns non-zero when something could not be undone. With
# --carry, domains it cannot remove (no libvirtd answers: say the session's
# libvirtd died) are not a failure but go to lv__leftover, for the next
# session to remove once its libvirtd runs.
lv__undo() {
    local state=$LV_STATE_DIR/state key a b rc=0 i carry=${1:-}
    [[ -f $state ]] || return 0
    local -a domains=() daemons=() hook_dirs=() log_dirs=()
    local qemu_conf='' hook=''
    while read -r key a b; do
        case $key in
        owner) ;;
        domain) domains+=("$a") ;;
        libvirtd | virtlogd) daemons=("$key $a $b" "${daemons[@]}") ;; # reverse order
        qemu-conf) qemu_conf=$a ;;
        hook) hook=$a ;;
        hook-dir) hook_dirs=("$a" "${hook_dirs[@]}") ;;
        log-dir) log_dirs+=("$a") ;;
        esac
    done <"$state"

    local -a unremoved=()
    if ((${#domains[@]})) && ! lv_virsh version >/dev/null 2>&1; then
        unremoved=("${domains[@]}")
    else
        for a in "${domains[@]}"; do
            lv__forget_domain "$a" || unremoved+=("$a")
        done
    fi
    if ((${#unremoved[@]})); then
        if [[ $carry == --carry ]]; then
            lv__say "cannot remove domains ${unremoved[*]} now: once libvirtd runs"
            lv__leftover+=("${unremoved[@]}")
        else
            lv__say "cannot remove domains ${unremoved[*]}"
            rc=1
        fi
    fi
    for i in "${daemons[@]}"; do
        read -r key a b <<<"$i"
        lv__stop "$a" "$b" "$key"
        if lv__alive "$a" "$b"; then
            lv__say "$key (pid $a) does not stop"
            rc=1
        fi
    done
    case $hook in
    absent) rm -f "$LV_HOOK_DEST" ;;
    saved) cp -p "$LV_STATE_DIR/hook.orig" "$LV_HOOK_DEST" || rc=1 ;;
    esac
    for a in "${hook_dirs[@]}"; do
        rmdir "$a" 2>/dev/null || true # only if nobody put anything there since
    done
    case $qemu_conf in
    absent) rm -f "$LV_QEMU_CONF" ;;
    saved) cp -p "$LV_STATE_DIR/qemu.conf.orig" "$LV_QEMU_CONF" || rc=1 ;;
    esac
    for a in "${log_dirs[@]}"; do
        rm -rf "$a"
    done
    if ((rc == 0)); then
        rm -rf "$LV_STATE_DIR"
    else
        lv__say "left $LV_STATE_DIR/state for the next lv_setup to retry"
    fi
    return "$rc"
}

# --- setup and teardown --------------------------------------------------------
# lv_prereqs: 0 when the rig can run here; otherwise prints why not (for a
# test's exit 77) and returns 1.
lv_prereqs() {
    local tool
    if [[ $EUID -ne 0 ]]; then
        echo "not root (the libvirt rig starts a system libvirtd)"
        return 1
    fi
    for tool in libvirtd virtlogd virsh qemu-system-x86_64 pgrep flock timeout; do
        if ! command -v "$tool" >/dev/null; then
            echo "$tool not found (Debian: libvirt-daemon libvirt-daemon-driver-qemu" \
                "libvirt-clients qemu-system-x86 procps; NOT libvirt-daemon-system)"
            return 1
        fi
    done
    if ! compgen -G '/usr/lib*/libvirt/connection-driver/libvirt_driver_qemu.so' >/dev/null &&
        ! compgen -G '/usr/lib/*/libvirt/connection-driver/libvirt_driver_qemu.so' >/dev/null; then
        echo "libvirt's QEMU driver is not installed (Debian: libvirt-daemon-driver-qemu)"
        return 1
    fi
}

# lv_setup HOOK: a libvirtd that answers on qemu:///system and runs HOOK
# (an executable) as /etc/libvirt/hooks/qemu.d/50-usbgw. Starts virtlogd and
# libvirtd (after writing qemu.conf and the hook) unless libvirtd already
# runs; reuses a running libvirtd only if it runs this very HOOK. Sets
# LV_REUSED, LV_TIME_DAEMONS, LV_TIME_READY, LV_LOG_DIR.
lv_setup() {
    local hook=${1:-} pids
    [[ $# -eq 1 && -n $hook ]] || {
        lv__err "usage: lv_setup HOOK"
        return 1
    }
    [[ -f $hook && -x $hook ]] || {
        lv__err "hook $hook is not an executable file"
        return 1
    }
    ((!lv__owned)) || {
        lv__err "lv_setup called twice without lv_teardown"
        return 1
    }
    local why
    why=$(lv_prereqs) || {
        lv__err "$why"
        return 1
    }
    lv__acquire || return 1
    if [[ -z ${LV_LOG_DIR:-} ]]; then
        LV_LOG_DIR=$(mktemp -d "${TMPDIR:-/tmp}/usbgw-libvirt-rig.XXXXXX")
        lv__log_dir_owned=1
        lv__record log-dir "$LV_LOG_DIR"
    fi
    mkdir -p "$LV_LOG_DIR"

    if [[ -n $(lv_pids virtqemud) ]]; then
        lv__fail_setup "virtqemud (pid $(lv_pids virtqemud | paste -sd,)) runs: qemu:///system" \
            "is then not ours to drive; this rig uses the monolithic libvirtd"
        return 1
    fi
    pids=$(lv_pids libvirtd)
    if [[ -n $pids ]]; then
        lv__reuse "$hook" "$pids" || return 1
    else
        lv__start "$hook" || return 1
    fi
    # Domains a dead session could not remove (its libvirtd was gone).
    local name
    for name in "${lv__leftover[@]}"; do
        lv__forget_domain "$name" || true # recorded: teardown tries again
    done
    lv__leftover=()
}

# lv__acquire: make this shell the owner of the rig session, waiting while
# another live session owns it and undoing what a dead one left behind.
lv__acquire() {
    local end=$((SECONDS + LV_LOCK_TIMEOUT)) fd rc said=''
    while :; do
        exec {fd}>>"$LV_LOCK"
        if ! flock -w 120 "$fd"; then
            exec {fd}>&-
            lv__err "cannot lock $LV_LOCK for 120 s"
            return 1
        fi
        rc=0
        lv__claim || rc=$?
        exec {fd}>&-
        case $rc in
        0)
            lv__owned=1
            return 0
            ;;
        1) return 1 ;;
        esac
        if ((SECONDS >= end)); then
            lv__err "the rig session of pid $lv__holder still runs after ${LV_LOCK_TIMEOUT} s" \
                "(LV_LOCK_TIMEOUT)"
            return 1
        fi
        [[ -n $said ]] || lv__say "waiting up to ${LV_LOCK_TIMEOUT} s for the rig session of" \
            "pid $lv__holder to end"
        said=1
        sleep 0.5
    done
}

# lv__claim (with LV_LOCK held): 0 when the session is ours now, 2 when a
# live session owns it (its PID in lv__holder), 1 on error.
lv__claim() {
    local state=$LV_STATE_DIR/state me=$BASHPID pid='' st=''
    lv__leftover=()
    if [[ -f $state ]]; then
        read -r pid st < <(awk '$1 == "owner" { print $2, $3; exit }' "$state") || true
        lv__holder=${pid:-?}
        if [[ $pid != "$me" ]] && lv__alive "${pid:-0}" "$st"; then
            return 2
        fi
        lv__say "undoing what the rig session of pid ${pid:-?} left behind ($state)"
        lv__undo --carry || {
            lv__err "cannot undo the earlier rig session; see $state"
            return 1
        }
    fi
    if ! mkdir -p "$LV_STATE_DIR" || ! echo "owner $me $(lv__starttime "$me")" >"$state"; then
        lv__err "cannot write $state"
        return 1
    fi
    local name
    for name in "${lv__leftover[@]}"; do
        lv__record domain "$name"
    done
}

# Undo what this setup did so far, give the session up, report.
lv__fail_setup() {
    lv__undo || true
    lv__owned=0
    lv__err "$@"
}

lv__reuse() {
    local hook=$1 pids=$2 pid since
    if [[ $pids == *[![:digit:]]* ]]; then
        lv__fail_setup "several libvirtd processes run (pids $(paste -sd, <<<"$pids"));" \
            "not ours to sort out"
        return 1
    fi
    pid=$pids
    since=$(lv__since_epoch "$pid") || since=0
    if [[ ! -f $LV_HOOK_DEST ]] || ! cmp -s "$hook" "$LV_HOOK_DEST"; then
        local what="another program than"
        [[ -f $LV_HOOK_DEST ]] || what="missing, not"
        lv__fail_setup "libvirtd (pid $pid) is already running, not started by this rig," \
            "and $LV_HOOK_DEST is $what $hook. Stop that libvirtd (or install the hook and" \
            "restart it), then run again. This rig never stops a daemon it did not start."
        return 1
    fi
    if (($(stat -c %Z "$LV_HOOK_DEST") > since)); then
        lv__fail_setup "libvirtd (pid $pid) is already running, but $LV_HOOK_DEST changed after" \
            "it started, and libvirtd only discovers hooks when it starts: restart that" \
            "libvirtd, then run again."
        return 1
    fi
    lv__say "reusing libvirtd (pid $pid): it already runs $hook as $LV_HOOK_DEST"
    LV_REUSED=1
    local t0=$EPOCHREALTIME
    if ! lv__wait_ready; then
        lv__fail_setup "the running libvirtd (pid $pid) does not answer"
        return 1
    fi
    LV_TIME_READY=$(lv__secs "$t0" "$EPOCHREALTIME")
}

lv__start() {
    local hook=$1 dir d pid st t0 t1
    # Directories and the QEMU user libvirt wants even when QEMU runs as root.
    mkdir -p /var/log/libvirt/qemu /var/lib/libvirt/qemu /var/cache/libvirt/qemu /run/libvirt ||
        {
            lv__fail_setup "cannot create libvirt's directories"
            return 1
        }
    getent group libvirt-qemu >/dev/null || groupadd -r libvirt-qemu || {
        lv__fail_setup "cannot create group libvirt-qemu"
        return 1
    }
    getent passwd libvirt-qemu >/dev/null ||
        useradd -r -g libvirt-qemu -d /var/lib/libvirt -s /usr/sbin/nologin libvirt-qemu || {
        lv__fail_setup "cannot create user libvirt-qemu"
        return 1
    }

    if [[ -f $LV_QEMU_CONF ]]; then
        if ! cp -p "$LV_QEMU_CONF" "$LV_STATE_DIR/qemu.conf.orig"; then
            lv__fail_setup "cannot save $LV_QEMU_CONF"
            return 1
        fi
        lv__record qemu-conf saved
    else
        lv__record qemu-conf absent
    fi
    if ! printf '%s' "$lv__qemu_conf" >"$LV_QEMU_CONF"; then
        lv__fail_setup "cannot write $LV_QEMU_CONF"
        return 1
    fi

    # The hook must be in place before libvirtd starts: it looks for hooks then.
    dir=${LV_HOOK_DEST%/*}
    for d in "${dir%/*}" "$dir"; do
        [[ ! -d $d ]] || continue
        if ! mkdir "$d"; then
            lv__fail_setup "cannot create $d"
            return 1
        fi
        lv__record hook-dir "$d"
    done
    if [[ -e $LV_HOOK_DEST ]]; then
        if ! cp -p "$LV_HOOK_DEST" "$LV_STATE_DIR/hook.orig"; then
            lv__fail_setup "cannot save $LV_HOOK_DEST"
            return 1
        fi
        lv__record hook saved
    else
        lv__record hook absent
    fi
    if ! install -m 0755 "$hook" "$LV_HOOK_DEST"; then
        lv__fail_setup "cannot install $hook as $LV_HOOK_DEST"
        return 1
    fi

    t0=$EPOCHREALTIME
    if [[ -z $(lv_pids virtlogd) ]]; then
        pid=$(lv__start_daemon virtlogd) || {
            lv__fail_setup "cannot start virtlogd"
            return 1
        }
        lv__record virtlogd "$pid" "$(lv__starttime "$pid")"
    fi
    pid=$(lv__start_daemon libvirtd) || {
        lv__fail_setup "cannot start libvirtd (did someone start one just now?)"
        return 1
    }
    st=$(lv__starttime "$pid")
    lv__record libvirtd "$pid" "$st"
    t1=$EPOCHREALTIME
    LV_TIME_DAEMONS=$(lv__secs "$t0" "$t1")
    if ! lv__wait_ready "$pid" "$st"; then
        lv__fail_setup "the libvirtd this rig started (pid $pid) does not answer"
        return 1
    fi
    LV_TIME_READY=$(lv__secs "$t1" "$EPOCHREALTIME")
    lv__say "libvirtd (pid $pid) answers: daemons started in ${LV_TIME_DAEMONS} s," \
        "first answer ${LV_TIME_READY} s later"
}

# lv_teardown: undo everything this session did (domains it defined, the
# daemons it started, the hook and qemu.conf it installed, restoring the
# originals), and give the session up. Safe to call twice or without setup;
# meant for an EXIT trap. Returns non-zero if something could not be undone
# (the next lv_setup retries).
lv_teardown() {
    local rc=0
    ((lv__owned)) || return 0
    lv__undo || rc=1
    lv__owned=0
    if [[ -n $lv__log_dir_owned ]]; then
        LV_LOG_DIR='' lv__log_dir_owned=''
    fi
    return "$rc"
}

# --- guests --------------------------------------------------------------------
# lv_new_name TAG: a fresh domain name, LV_PREFIX TAG-<pid>-<random>.
lv_new_name() { echo "${LV_PREFIX}${1:-guest}-$$-$RANDOM"; }
lv_new_uuid() { cat /proc/sys/kernel/random/uuid; }

lv__xml_escape() {
    local s=$1
    # Quoted replacements: bash 5.2 expands an unquoted & to the match.
    s=${s//'&'/'&amp;'}
    s=${s//'<'/'&lt;'}
    s=${s//'>'/'&gt;'}
    s=${s//"'"/'&apos;'}
    s=${s//'"'/'&quot;'}
    printf '%s' "$s"
}

# lv_console NAME: the file the guest's serial console is logged to.
lv_console() { echo "$LV_LOG_DIR/$1.console"; }

# lv_guest_xml NAME UUID GUEST_DIR APPEND CONSOLE [DEVICES_XML]: print the
# domain XML of the tiny test guest built by tests/guest/build-guest.sh in
# GUEST_DIR: domain type qemu (TCG: KVM does not work on the rig), q35,
# LV_GUEST_MEM_MIB MiB (default 512), 1 vCPU, direct kernel boot (vmlinux
# when present: PVH, faster; else vmlinuz) with initrd.img and
# "console=ttyS0 quiet panic=-1 APPEND", ACPI (virsh shutdown works), a
# qemu-xhci controller, the serial console logged to the file CONSOLE
# (truncated by QEMU at each start; appended to with LV_CONSOLE_APPEND=1,
# as a migration's destination must), no disk, no network, plus
# DEVICES_XML inside <devices>. Needs no libvirtd.
lv_guest_xml() {
    local name=$1 uuid=$2 dir=$3 append=$4 console=$5 devices=${6-} kernel console_append=''
    if ! dir=$(cd "$dir" 2>/dev/null && pwd -P) || [[ ! -s $dir/initrd.img ]]; then
        lv__err "no guest in '$3' (want initrd.img and vmlinux or vmlinuz from build-guest.sh)"
        return 1
    fi
    kernel=$dir/vmlinux
    [[ -s $kernel ]] || kernel=$dir/vmlinuz
    [[ -s $kernel ]] || {
        lv__err "no vmlinux or vmlinuz in $dir"
        return 1
    }
    [[ ${LV_CONSOLE_APPEND:-0} != 1 ]] || console_append=" append='on'"
    cat <<EOF
<domain type='qemu'>
  <name>$name</name>
  <uuid>$uuid</uuid>
  <memory unit='MiB'>${LV_GUEST_MEM_MIB:-512}</memory>
  <vcpu>1</vcpu>
  <os>
    <type arch='x86_64' machine='q35'>hvm</type>
    <kernel>$(lv__xml_escape "$kernel")</kernel>
    <initrd>$(lv__xml_escape "$dir/initrd.img")</initrd>
    <cmdline>$(lv__xml_escape "console=ttyS0 quiet panic=-1 $append")</cmdline>
  </os>
  <features>
    <acpi/>
  </features>
  <on_poweroff>destroy</on_poweroff>
  <on_reboot>destroy</on_reboot>
  <on_crash>destroy</on_crash>
  <devices>
    <controller type='usb' model='qemu-xhci'/>
    <serial type='file'>
      <source path='$(lv__xml_escape "$console")'$console_append/>
      <target port='0'/>
    </serial>
    <memballoon model='none'/>
$devices
  </devices>
</domain>
EOF
}

# lv_define_guest NAME UUID GUEST_DIR APPEND [DEVICES_XML]: define (not
# start) the tiny test guest of lv_guest_xml, its console logged to
# $(lv_console NAME) (truncated at each start). NAME must start with
# LV_PREFIX. lv_teardown undefines it.
lv_define_guest() {
    local name=${1:-} uuid=${2:-} dir=${3:-} append=${4-} devices=${5-} xml text out
    [[ $# -eq 4 || $# -eq 5 ]] || {
        lv__err "usage: lv_define_guest NAME UUID GUEST_DIR APPEND [DEVICES_XML]"
        return 1
    }
    ((lv__owned)) || {
        lv__err "lv_define_guest before lv_setup"
        return 1
    }
    [[ $name =~ ^${LV_PREFIX}[A-Za-z0-9_.+-]+$ ]] || {
        lv__err "domain name '$name' must be ${LV_PREFIX}<letters, digits, _.+->"
        return 1
    }
    [[ $uuid =~ ^[0-9a-fA-F]{8}-([0-9a-fA-F]{4}-){3}[0-9a-fA-F]{12}$ ]] || {
        lv__err "'$uuid' is not a UUID"
        return 1
    }
    text=$(lv_guest_xml "$name" "$uuid" "$dir" "$append" "$(lv_console "$name")" "$devices") ||
        return 1
    if lv_virsh domstate "$name" >/dev/null 2>&1; then
        lv__err "a domain named $name exists already"
        return 1
    fi
    xml=$LV_LOG_DIR/$name.xml
    : >"$(lv_console "$name")"
    printf '%s\n' "$text" >"$xml"
    # Record first: a define that fails half-way is cleaned up all the same.
    lv__record domain "$name"
    out=$(lv_virsh define "$xml" 2>&1) || {
        lv__err "virsh define $xml failed: $out"
        return 1
    }
}

# lv_start NAME: virsh start; sets LV_TIME_START.
lv_start() {
    local t0=$EPOCHREALTIME out
    out=$(lv_virsh start "$1" 2>&1) || {
        lv__err "virsh start $1 failed: $out"
        return 1
    }
    LV_TIME_START=$(lv__secs "$t0" "$EPOCHREALTIME")
}

# lv_redirdev_xml SOCK [RECONNECT_S]: a usb redirdev connecting to the unix
# socket SOCK, with <reconnect timeout=RECONNECT_S> (default 2; 0: none).
# Reconnect works only for redirdevs in the domain XML at start (QEMU gets
# reconnect=N: the domain starts while nobody listens yet, and QEMU comes
# back after the listener restarts). libvirt 9.0 drops it on hot-plug: its
# QMP chardev-add says "reconnect":0 although the live XML shows
# <reconnect>, so the attach fails unless SOCK already listens, and QEMU
# never reconnects once that listener closes.
lv_redirdev_xml() {
    local reconnect=${2:-2}
    echo "<redirdev bus='usb' type='unix'>"
    echo "  <source mode='connect' path='$(lv__xml_escape "$1")'>"
    ((reconnect == 0)) || echo "    <reconnect enabled='yes' timeout='$reconnect'/>"
    echo "  </source>"
    echo "</redirdev>"
}

# lv_attach_redirdev NAME SOCK [RECONNECT_S]: hot-plug that redirdev
# (attach-device --live); sets LV_TIME_ATTACH.
lv_attach_redirdev() {
    local xml out t0
    xml=$(mktemp "$LV_LOG_DIR/redirdev.XXXXXX.xml") || return 1
    lv_redirdev_xml "$2" "${3:-2}" >"$xml"
    t0=$EPOCHREALTIME
    out=$(lv_virsh attach-device "$1" "$xml" --live 2>&1) || {
        lv__err "virsh attach-device $1 $xml --live failed: $out"
        return 1
    }
    LV_TIME_ATTACH=$(lv__secs "$t0" "$EPOCHREALTIME")
}

# lv_wait_file FILE PATTERN TIMEOUT: wait until a line of FILE (carriage
# returns removed) matches the extended regex PATTERN.
lv_wait_file() {
    local file=$1 pattern=$2 end=$((SECONDS + $3))
    until [[ -f $file ]] && grep -Eq "$pattern" <<<"$(tr -d '\r' <"$file")"; do
        if ((SECONDS >= end)); then
            lv__err "no line matching /$pattern/ in $file within $3 s"
            return 1
        fi
        sleep 0.1
    done
}

# lv_wait_console NAME PATTERN TIMEOUT: the same on NAME's console; fails
# early when the domain stops.
lv_wait_console() {
    local name=$1 pattern=$2 end=$((SECONDS + $3)) next_check=$SECONDS state
    local file
    file=$(lv_console "$name")
    until grep -Eq "$pattern" <<<"$(tr -d '\r' <"$file" 2>/dev/null)"; do
        if ((SECONDS >= end)); then
            state=$(lv_virsh domstate "$name" 2>&1 || true)
            lv__err "no line matching /$pattern/ on the console of $name within $3 s" \
                "(domain: $state; console: $file)"
            return 1
        fi
        if ((SECONDS >= next_check)); then
            state=$(lv_virsh domstate "$name" 2>&1 || true)
            if [[ $state != running ]]; then
                # One last look: the line may have come just before the end.
                grep -Eq "$pattern" <<<"$(tr -d '\r' <"$file" 2>/dev/null)" && return 0
                lv__err "$name is '$state', and its console has no line matching /$pattern/" \
                    "(console: $file)"
                return 1
            fi
            next_check=$((SECONDS + 1))
        fi
        sleep 0.1
    done
}
