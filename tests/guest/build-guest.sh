#!/bin/bash
# Build the tiny usbgw test guest: OUTDIR/vmlinuz + OUTDIR/initrd.img, and
# OUTDIR/vmlinux (the same kernel, uncompressed, PVH-bootable: much faster
# under TCG; run-guest.sh prefers it).
#
#   build-guest.sh OUTDIR
#
# The kernel and busybox are Debian's own packages (apt-get download + dpkg-deb
# -x: no initramfs-tools, no root needed). The initramfs holds busybox, the
# USB host modules (usb-common, usbcore, xhci-hcd, xhci-pci and their deps;
# deliberately no usbhid/usb-storage: the probe drives keys via usbdevfs),
# the ACPI power button modules (button, evdev) for busybox acpid, the static
# probe program and /init. The guest powers off when the probe is done (not
# in its loop mode) and on an ACPI shutdown request (virsh shutdown, QEMU's
# system_powerdown), after printing USBGW-GUEST-ACPI-POWEROFF. Downloads and
# extracts are cached in OUTDIR/cache; if OUTDIR/inputs records the same
# inputs (package versions, sources, this script) it returns at once.
#
# Env: USBGW_GUEST_KERNEL_PKG overrides the kernel package (default: what
# linux-image-amd64 depends on, i.e. linux-image-6.1.0-<ABI>-amd64).
set -euo pipefail
shopt -s inherit_errexit

me=build-guest.sh
die() {
    echo "$me: error: $*" >&2
    exit 1
}
# Nothing fails silently: name the line of any unexpected failure.
set -E
trap 'echo "$me: error: line $LINENO failed (exit $?)" >&2' ERR
[[ $# -eq 1 && -n $1 ]] || {
    echo "usage: $me OUTDIR" >&2
    exit 2
}
export LC_ALL=C
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd -P)
probe_src=$here/usbgw-guest-probe.c
proto_h=$here/../sim/key-protocol.h
mkdir -p "$1/cache"
out=$(cd "$1" && pwd)
cache=$out/cache
modules=(usb-common usbcore xhci-hcd xhci-pci button evdev)
forbidden='^(usbhid|usb_storage|uas|hid)$' # must never get into the guest
probe_cflags=(-static -O2 -std=c11 -Wall -Wextra -Werror -Wshadow -Wstrict-prototypes
    -Wmissing-prototypes -Wformat=2)

for tool in apt-cache apt-get dpkg dpkg-deb cpio gzip xz gcc objcopy readelf sha256sum flock; do
    command -v "$tool" >/dev/null || die "'$tool' not found (needs apt, dpkg, cpio, gcc, binutils)"
done
[[ -f $proto_h ]] || die "$proto_h is missing"

# Two builds into one OUTDIR (parallel test runs) would trample each other.
exec 9>"$cache/.lock"
flock 9

# Timing: one summary line at the end, with a breakdown when it was slow.
t_start=$EPOCHREALTIME t_last=$EPOCHREALTIME times=()
lap() {
    local t=$EPOCHREALTIME
    times+=("$1 $(awk -v a="$t_last" -v b="$t" 'BEGIN { printf "%.1f s", b - a }')")
    t_last=$t
}

# --- resolve the inputs ------------------------------------------------------
# This system's apt keeps no binary package cache, so every apt-cache call
# re-parses all lists (~0.7 s). One call, with a cache of our own (rebuilt
# by apt whenever the lists change), keeps the up-to-date check at ~0.2 s.
aptc=(apt-cache -o "Dir::Cache::pkgcache=$cache/apt-pkgcache.bin" -o Dir::Cache::srcpkgcache=)
show=$("${aptc[@]}" show --no-all-versions linux-image-amd64 busybox-static 2>/dev/null || true)
# field PACKAGE FIELD: from the stanzas in $show
field() {
    awk -v RS= -v pkg="Package: $1" -v key="$2: " '{
        n = split($0, line, "\n"); val = ""
        for (i = 1; i <= n; i++) if (index(line[i], key) == 1) val = substr(line[i], length(key) + 1)
        if (line[1] == pkg) { print val; exit }
    }' <<<"$show"
}
if [[ -n ${USBGW_GUEST_KERNEL_PKG:-} ]]; then
    kpkg=$USBGW_GUEST_KERNEL_PKG
else
    # The meta package names the current ABI: "linux-image-6.1.0-NN-amd64 (= VER)".
    read -r kpkg kver < <(field linux-image-amd64 Depends | sed 's/[,|]/\n/g' |
        sed -n 's/^ *\(linux-image-6\.1\.0-[0-9]*-amd64\)\( *(= *\([^)]*\))\)\{0,1\}.*/\1 \3/p' |
        head -n1) || true
    if [[ -z ${kpkg:-} ]]; then # no meta package: the highest ABI apt knows
        kpkg=$("${aptc[@]}" pkgnames linux-image-6.1.0- 2>/dev/null |
            grep -E '^linux-image-6\.1\.0-[0-9]+-amd64$' | sort -V | tail -n1) || true
    fi
    [[ -n $kpkg ]] || die "cannot find linux-image-amd64 or any linux-image-6.1.0-*-amd64" \
        "(run 'apt-get update', or set USBGW_GUEST_KERNEL_PKG)"
fi
if [[ -z ${kver:-} ]]; then # not pinned by the meta package: ask apt
    show+=$'\n\n'$("${aptc[@]}" show --no-all-versions "$kpkg" 2>/dev/null || true)
    kver=$(field "$kpkg" Version)
    [[ -n $kver ]] || die "apt knows no package $kpkg (run 'apt-get update')"
fi
bbver=$(field busybox-static Version)
[[ -n $bbver ]] || die "apt knows no busybox-static (run 'apt-get update')"

script_hash=$(sha256sum <"${BASH_SOURCE[0]}" | cut -c1-16)
probe_hash=$(cat "$probe_src" "$proto_h" <(gcc -dumpfullversion) <(echo "${probe_cflags[*]}") |
    sha256sum | cut -c1-16)
inputs="kernel=$kpkg=$kver busybox=$bbver probe=$probe_hash script=$script_hash"
if [[ -s $out/vmlinuz && -s $out/initrd.img && -f $out/inputs &&
    "$(cat "$out/inputs")" == "$inputs" ]]; then
    echo "$me: $out is up to date ($kpkg $kver)" >&2
    exit 0
fi
rm -f "$out/inputs" "$out"/*.tmp # OUTDIR is stale until the end
lap resolve

# --- downloads (cached per version) ------------------------------------------
arch=$(dpkg --print-architecture)
apt_opts=(-q)
# As root, apt drops to user _apt, which cannot write here: it warns and
# downloads unsandboxed anyway. Ask for that directly to keep output clean.
[[ $EUID -ne 0 ]] || apt_opts+=(-o APT::Sandbox::User=root)

# download PKG VERSION OLD_GLOB: sets $deb to the cached .deb, replacing
# older ones (OLD_GLOB, relative to the cache).
download() {
    local pkg=$1 ver=$2 old=$3
    deb=$cache/${pkg}_${ver//:/%3a}_$arch.deb
    [[ ! -s $deb ]] || return 0
    rm -rf "$cache/dl.tmp" && mkdir "$cache/dl.tmp"
    (cd "$cache/dl.tmp" && apt-get download "${apt_opts[@]}" "$pkg=$ver") >&2 ||
        die "cannot download $pkg=$ver with 'apt-get download' (apt's message is above;" \
            "is Debian's archive reachable? try 'apt-get update')"
    # shellcheck disable=SC2086 # $old is a glob
    (cd "$cache" && rm -f $old)
    mv "$cache/dl.tmp"/*.deb "$deb"
    rmdir "$cache/dl.tmp"
}

# --- kernel: vmlinuz + the module closure, decompressed ----------------------
# extract_pvh BZIMAGE OUT: the ELF vmlinux inside a bzImage, if it has a PVH
# entry point. QEMU boots such an ELF directly (-kernel vmlinux): that skips
# the in-guest xz decompression, ~3 s of the ~6 s a TCG boot takes here.
extract_pvh() {
    local bz=$1 sects poff plen
    sects=$(od -An -tu1 -j $((0x1f1)) -N1 "$bz")
    poff=$(od -An -tu4 -j $((0x248)) -N4 "$bz") # boot protocol >= 2.08
    plen=$(od -An -tu4 -j $((0x24c)) -N4 "$bz")
    # The payload ends with its uncompressed size (4 bytes): hence
    # --single-stream / trailing-garbage tolerant decompressors.
    dd if="$bz" iflag=skip_bytes,count_bytes skip=$(((sects + 1) * 512 + poff)) count="$plen" \
        bs=1M status=none | { xz -dc --single-stream 2>/dev/null || true; } >"$2"
    if ! readelf -n "$2" 2>/dev/null | grep -E 'note type: \(0x00000012\)|PHYS32_ENTRY' >/dev/null; then
        echo "$me: note: no PVH-bootable vmlinux in the kernel (not xz, or no PVH);" \
            "run-guest.sh will boot the slower bzImage" >&2
        rm -f "$2"
    fi
}
# The unpacked package is 400 MB; keep only what the guest uses, in
# $kext, keyed by package version and this script (which lists the modules).
kext=$cache/kernel_${kver//:/%3a}_$script_hash
if [[ ! -f $kext/load-order ]]; then
    download "$kpkg" "$kver" 'linux-image-*.deb'
    lap "kernel download"
    unp=$cache/unpack.tmp
    rm -rf "$unp" "$kext.tmp" "$cache"/kernel_*
    mkdir -p "$unp" "$kext.tmp"
    dpkg-deb -x "$deb" "$unp"
    lap "kernel unpack"
    moddirs=("$unp"/lib/modules/*/)
    [[ ${#moddirs[@]} -eq 1 && -d ${moddirs[0]} ]] || die "expected one lib/modules/<ver> in $kpkg"
    moddir=${moddirs[0]%/}
    cp "$unp/boot/vmlinuz-${moddir##*/}" "$kext.tmp/vmlinuz"
    extract_pvh "$kext.tmp/vmlinuz" "$kext.tmp/vmlinux"

    # Debian ships no modules.dep (depmod runs at install time) and the host
    # may lack kmod: read "depends=" from each module's .modinfo section.
    declare -A modpath=() state=()
    while IFS= read -r f; do
        n=${f##*/}
        n=${n%%.ko*}
        modpath[${n//-/_}]=$f
    done < <(find "$moddir/kernel" -name '*.ko' -o -name '*.ko.xz' -o -name '*.ko.zst' \
        -o -name '*.ko.gz')
    # busybox insmod may not handle compressed modules: store them plain.
    unpack_ko() {
        case $1 in
        *.ko.xz) xz -dc "$1" ;;
        *.ko.zst) zstd -qdc "$1" ;;
        *.ko.gz) gzip -dc "$1" ;;
        *) cat "$1" ;;
        esac
    }
    order=()
    add_module() { # depth-first: dependencies load first
        local name=${1//-/_} dep deps
        [[ ${state[$name]:-} == "done" ]] && return
        [[ ${state[$name]:-} != visiting ]] || die "module dependency cycle at $1"
        [[ -n ${modpath[$name]:-} ]] || die "module $1 not found in $kpkg"
        [[ ! $name =~ $forbidden ]] || die "module $1 would get into the guest; it must not"
        state[$name]=visiting
        unpack_ko "${modpath[$name]}" >"$kext.tmp/$name.ko"
        deps=$(objcopy -O binary --only-section=.modinfo "$kext.tmp/$name.ko" /dev/stdout |
            tr '\0' '\n' | sed -n 's/^depends=//p')
        for dep in ${deps//,/ }; do
            add_module "$dep"
        done
        state[$name]="done"
        order+=("$name")
    }
    for m in "${modules[@]}"; do
        add_module "$m"
    done
    printf '%s\n' "${order[@]}" >"$kext.tmp/load-order"
    rm -rf "$unp"
    mv "$kext.tmp" "$kext"
    lap "kernel extract (vmlinux, modules)"
fi

# --- busybox ------------------------------------------------------------------
busybox=$cache/busybox_${bbver//:/%3a}
if [[ ! -x $busybox ]]; then
    download busybox-static "$bbver" 'busybox-static_*.deb'
    rm -rf "$cache/bb.tmp" "$cache"/busybox_*
    mkdir "$cache/bb.tmp"
    dpkg-deb -x "$deb" "$cache/bb.tmp"
    mv "$cache/bb.tmp/bin/busybox" "$busybox"
    rm -rf "$cache/bb.tmp"
    lap busybox
fi

# --- probe: a guest binary, so built here rather than by meson ---------------
probe=$cache/usbgw-guest-probe-$probe_hash
if [[ ! -x $probe ]]; then
    rm -f "$cache"/usbgw-guest-probe-*
    gcc "${probe_cflags[@]}" -o "$probe.tmp" "$probe_src"
    mv "$probe.tmp" "$probe"
    lap probe
fi

# --- initramfs ----------------------------------------------------------------
stage=$cache/initramfs.tmp
rm -rf "$stage"
mkdir -p "$stage"/{bin,sbin,usr/bin,usr/sbin,proc,sys,dev,lib/modules,etc/acpi/PWRF,var/log,var/run}
cp "$busybox" "$stage/bin/busybox"
# The static busybox runs on the build host too: ask it for its applet paths.
"$busybox" --list-full | while IFS= read -r applet; do
    [[ $applet == bin/busybox || -e $stage/$applet ]] || ln -s /bin/busybox "$stage/$applet"
done
cp "$kext"/*.ko "$kext/load-order" "$stage/lib/modules/"
cp "$probe" "$stage/usbgw-guest-probe"
# busybox acpid maps the power button (KEY_POWER on /dev/input/event*) to
# /etc/acpi/PWRF/00000080, which it runs with its cwd in /etc/acpi.
cat >"$stage/etc/acpi/PWRF/00000080" <<'EOF'
#!/bin/sh
echo USBGW-GUEST-ACPI-POWEROFF >/dev/console
poweroff -f
EOF
chmod 755 "$stage/etc/acpi/PWRF/00000080"
cat >"$stage/init" <<'EOF'
#!/bin/sh
# PID 1 of the usbgw test guest: USB host drivers, probe, power off.
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev
# The initramfs has no /dev/console node (building it needs no root), so
# the kernel started us without stdio: attach it now that devtmpfs is up.
exec </dev/console >/dev/console 2>&1
echo # the firmware leaves the cursor mid-line: start ours on a fresh one
# Keep the console greppable: kernel messages only with usbgw.debug=1.
case " $(cat /proc/cmdline) " in
*" usbgw.debug=1 "*) set -x ;;
*) dmesg -n 1 ;;
esac
for m in $(cat /lib/modules/load-order); do
    insmod "/lib/modules/$m.ko" || echo "USBGW-ERROR - insmod $m failed"
done
# The power button (button.ko) reports through evdev: acpid turns an ACPI
# shutdown request into poweroff (etc/acpi/PWRF/00000080).
acpid || echo "USBGW-ERROR - acpid failed: ACPI shutdown will not power off"
# The probe returns when it is done, except in loop mode (usbgw.loop=…),
# where it runs until the VM is shut down.
/usbgw-guest-probe
poweroff -f
EOF
chmod 755 "$stage/init"
(cd "$stage" && find . -mindepth 1 | sort | cpio -o -H newc -R 0:0 --quiet) |
    gzip -6 -n >"$out/initrd.img.tmp"
mv "$out/initrd.img.tmp" "$out/initrd.img"
# Hard links: no copy of 66 MB. Nothing writes to these files in place.
rm -f "$out/vmlinuz" "$out/vmlinux"
for k in vmlinuz vmlinux; do
    [[ ! -f $kext/$k ]] || ln "$kext/$k" "$out/$k" 2>/dev/null || cp "$kext/$k" "$out/$k"
done
rm -rf "$stage"
echo "$inputs" >"$out/inputs"
lap initramfs

total=$(awk -v a="$t_start" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.1f", b - a }')
echo "$me: built $out ($kpkg $kver; modules: $(paste -sd" " "$kext/load-order")) in $total s" >&2
if awk -v t="$total" 'BEGIN { exit !(t >= 3) }'; then
    printf -v t '%s, ' "${times[@]}"
    echo "$me: time went to: ${t%, }" >&2
fi
