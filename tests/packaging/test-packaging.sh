#!/bin/bash
# The Debian packages, built and installed without touching the host:
#
#   test-packaging.sh SOURCE_DIR
#
# 1. Copies the source tree (the files git knows, committed or not, else
#    everything but build directories) into a temporary directory and runs
#    dpkg-buildpackage -us -uc -b there (nocheck, two jobs).
# 2. Runs lintian on the .changes: any error fails the test.
# 3. Installs the packages into a throwaway root: in new mount and pid
#    namespaces, an overlay with / as its lower layer and a tmpfs as its
#    upper one, fresh /proc, /run and /tmp, the host's /dev and /sys; dpkg
#    installs the .debs there (every dependency is on the host already).
#    In it: usbgwd, usbgwctl, the hook, usbgw-share and the SPICE worker
#    print the project's version, `usbgwctl policy check` accepts the
#    shipped example policy, group usbgw exists as a system group,
#    usbgwd.service is enabled, the files are where they belong; then a
#    purge removes them again.
# 4. Checks that the host is as before where installing would change it:
#    every path the packages ship or their scripts make, the group usbgw,
#    the packages' dpkg status.
#
# Skips (77) when not root or without unshare or overlayfs.
set -euo pipefail

fail() {
    echo "FAIL: $*" >&2
    exit 1
}

# --- inside the namespaces: the throwaway root -----------------------------
if [ -n "${USBGW_PACKAGING_INNER:-}" ]; then
    work=$USBGW_PACKAGING_INNER
    root=$work/root
    mkdir -p "$work/overlay" "$root"
    # a mount made here stays here (unshare makes the tree private) and
    # goes away with the last process of the namespace
    mount -t tmpfs -o mode=0755 usbgw-upper "$work/overlay" ||
        { echo "SKIP: cannot mount a tmpfs in a mount namespace"; exit 77; }
    mkdir "$work/overlay/upper" "$work/overlay/work"
    mount -t overlay usbgw-root \
        -o "lowerdir=/,upperdir=$work/overlay/upper,workdir=$work/overlay/work" "$root" ||
        { echo "SKIP: cannot mount an overlay on /"; exit 77; }
    [ "${USBGW_PACKAGING_PROBE:-}" = 1 ] && exit 0
    mount -t proc proc "$root/proc"
    mount --rbind /dev "$root/dev"
    mount --rbind /sys "$root/sys"
    # not the host's: no daemon's socket (systemd, D-Bus) is reachable
    mount -t tmpfs -o mode=0755 usbgw-run "$root/run"
    mount -t tmpfs -o mode=1777 usbgw-tmp "$root/tmp"
    mkdir "$root/tmp/debs"
    mount --bind -o ro "$work/debs" "$root/tmp/debs"
    # no service is started from a maintainer script in here
    printf '#!/bin/sh\nexit 101\n' > "$root/usr/sbin/policy-rc.d"
    chmod 755 "$root/usr/sbin/policy-rc.d"
    # a fresh host has no hook yet: the libvirt test rig's copy (tests/libvirt)
    # would make dpkg ask about a conffile it did not install
    rm -f "$root/etc/libvirt/hooks/qemu.d/50-usbgw"

    in_root() {
        chroot "$root" env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin LC_ALL=C.UTF-8 \
            DEBIAN_FRONTEND=noninteractive "$@"
    }
    version=$(cat "$work/version")
    debs=()
    for deb in "$work/debs"/*.deb; do
        debs+=("/tmp/debs/$(basename "$deb")")
    done

    # dpkg, not apt: nothing may be fetched (apt-get --no-download refuses
    # local .debs); every dependency is on the host already
    in_root dpkg -i "${debs[@]}" > "$work/install.log" 2>&1 ||
        { cat "$work/install.log"; fail "dpkg -i failed (a dependency missing on the host?)"; }
    grep -q 'systemctl restart libvirtd' "$work/install.log" ||
        { cat "$work/install.log"; fail "postinst did not say to restart libvirtd"; }
    echo "ok: installed ${debs[*]}"

    check_version() { # NAME PATH
        local out
        out=$(in_root "$2" --version) || fail "$2 --version failed"
        [ "$out" = "$1 $version" ] || fail "$2 --version: '$out', expected '$1 $version'"
        echo "ok: $out"
    }
    check_version usbgwd /usr/sbin/usbgwd
    check_version usbgwctl /usr/bin/usbgwctl
    check_version usbgw-hook /etc/libvirt/hooks/qemu.d/50-usbgw
    check_version usbgw-spice-worker /usr/libexec/usbgw-spice-worker
    check_version usbgw-share /usr/bin/usbgw-share

    out=$(in_root usbgwctl policy check /etc/usbgw/usbgw.policy 2>&1) ||
        fail "usbgwctl policy check on the shipped policy: $out"
    echo "ok: usbgwctl policy check /etc/usbgw/usbgw.policy: ${out//$'\n'/; }"

    group=$(in_root getent group usbgw) || fail "no group usbgw"
    gid=$(cut -d: -f3 <<<"$group")
    [ "$gid" -lt 1000 ] || fail "group usbgw is not a system group: $group"
    echo "ok: group $group"

    [ "$(readlink "$root/etc/systemd/system/multi-user.target.wants/usbgwd.service")" = \
        /lib/systemd/system/usbgwd.service ] || fail "usbgwd.service is not enabled"
    state=$(in_root systemctl is-enabled usbgwd.service 2>/dev/null || true)
    [ "$state" = enabled ] || fail "systemctl is-enabled usbgwd.service: '$state'"
    echo "ok: usbgwd.service $state"

    for file in /usr/share/bash-completion/completions/usbgwctl /etc/logrotate.d/usbgw \
        /usr/lib/tmpfiles.d/usbgw.conf /etc/usbgw/usbgwd.conf \
        /usr/share/man/man1/usbgwctl.1.gz /usr/share/man/man1/usbgw-share.1.gz \
        /usr/share/man/man5/usbgw.policy.5.gz /usr/share/man/man8/usbgwd.8.gz \
        /usr/share/man/man8/usbgw-hook.8.gz /usr/share/man/man8/usbgw-spice-worker.8.gz; do
        [ -f "$root$file" ] || fail "not installed: $file"
    done
    [ -d "$root/var/lib/usbgw" ] || fail "tmpfiles did not make /var/lib/usbgw"
    if [ -e "$work/debs/cockpit-usbgw_${version}_all.deb" ]; then
        [ -f "$root/usr/share/cockpit/usbgw/manifest.json" ] ||
            fail "cockpit-usbgw has no /usr/share/cockpit/usbgw/manifest.json"
        echo "ok: the Cockpit page is in /usr/share/cockpit/usbgw"
    fi
    for file in deploy usbgw-pools.py; do
        [ -x "$root/usr/share/usbgw/opennebula/$file" ] ||
            fail "usbgw-opennebula has no executable /usr/share/usbgw/opennebula/$file"
    done
    in_root python3 -m py_compile /usr/share/usbgw/opennebula/deploy \
        /usr/share/usbgw/opennebula/usbgw-pools.py ||
        fail "the OpenNebula scripts do not compile with the installed python3"
    echo "ok: files in place"

    packages=()
    for deb in "$work/debs"/*.deb; do
        packages+=("$(dpkg-deb -f "$deb" Package)")
    done
    in_root dpkg --purge "${packages[@]}" > "$work/purge.log" 2>&1 ||
        { cat "$work/purge.log"; fail "dpkg --purge failed"; }
    for file in /usr/sbin/usbgwd /etc/libvirt/hooks/qemu.d/50-usbgw /etc/usbgw \
        /etc/systemd/system/multi-user.target.wants/usbgwd.service /var/lib/usbgw; do
        [ ! -e "$root$file" ] || fail "still there after purge: $file"
    done
    echo "ok: purged ${packages[*]}"
    exit 0
fi

# --- on the host ------------------------------------------------------------
src=$1

if [ "$(id -u)" -ne 0 ]; then
    echo "SKIP: needs root (mount and pid namespaces, an overlay on /)"
    exit 77
fi
command -v unshare >/dev/null || { echo "SKIP: no unshare"; exit 77; }
for tool in dpkg-buildpackage dh lintian chroot cpio; do
    command -v "$tool" >/dev/null || fail "$tool is missing (tools/install-deps.sh installs it)"
done

work=$(mktemp -d /tmp/usbgw-packaging.XXXXXX)
trap 'rm -rf "$work"' EXIT

# the namespaces and the overlay, tried before the long build
rc=0
USBGW_PACKAGING_INNER=$work/probe USBGW_PACKAGING_PROBE=1 \
    unshare --mount --pid --fork --propagation private bash "$0" 2>"$work/probe.err" || rc=$?
if [ $rc -ne 0 ]; then
    echo "SKIP: no mount and pid namespaces or no overlay on / ($(head -c 300 "$work/probe.err"))"
    exit 77
fi


# 1. the source tree, copied
mkdir "$work/src" "$work/src/usbgw" "$work/debs"
if git -C "$src" rev-parse --is-inside-work-tree >/dev/null 2>&1; then
    (
        cd "$src"
        git ls-files -z --cached --others --exclude-standard |
            while IFS= read -r -d '' file; do
                # a file deleted but not yet committed is not copied
                [ -e "$file" ] && printf '%s\0' "$file"
            done | cpio -0 -pdm --quiet "$work/src/usbgw"
    )
else
    tar -C "$src" --exclude='./build*' --exclude='./_build*' --exclude=./.git -cf - . |
        tar -C "$work/src/usbgw" -xf -
fi
[ -f "$work/src/usbgw/debian/control" ] || fail "no debian/control in the copy of $src"
meson_version=$(sed -n "s/^ *version *: *'\([^']*\)'.*/\1/p" "$src/meson.build" | head -n 1)
package_version=$(cd "$work/src/usbgw" && dpkg-parsechangelog -S Version)
[ "$meson_version" = "$package_version" ] ||
    fail "debian/changelog says $package_version, meson.build $meson_version"
echo "$meson_version" > "$work/version"

# 2. the packages
start=$(date +%s)
if ! (cd "$work/src/usbgw" &&
    DEB_BUILD_OPTIONS="nocheck parallel=2" dpkg-buildpackage -us -uc -b) > "$work/build.log" 2>&1; then
    tail -n 60 "$work/build.log"
    fail "dpkg-buildpackage failed"
fi
echo "ok: built in $(($(date +%s) - start)) s"
# lintian as root says so on stderr; its findings are on stdout
rc=0
lintian --fail-on error "$work/src"/*.changes > "$work/lintian.log" 2>"$work/lintian.err" || rc=$?
cat "$work/lintian.log"
[ $rc -eq 0 ] || fail "lintian: exit $rc ($(grep -c '^E:' "$work/lintian.log") errors) $(cat "$work/lintian.err")"
echo "ok: lintian: $(grep -c '^E:' "$work/lintian.log") errors, $(grep -c '^W:' "$work/lintian.log") warnings"

mv "$work/src"/*.deb "$work/debs/"
# the debug symbols are not installed
rm -f "$work/debs"/*-dbgsym_*.deb
for deb in "$work/debs"/*.deb; do
    echo "    $(basename "$deb") $(stat -c %s "$deb") bytes"
done
for package in usbgw usbgw-share; do
    [ -e "$work/debs/${package}_${meson_version}_$(dpkg --print-architecture).deb" ] ||
        fail "package $package was not built"
done

# What installing them would change on the host, recorded before: each
# path the packages ship (a file's type, mode, owner and checksum, a
# directory's type and mode), the paths the maintainer scripts make, the
# group usbgw and the packages' dpkg status. Narrow on purpose: other
# work on this machine may install packages or add users meanwhile.
host_state() {
    local path deb
    {
        for deb in "$work/debs"/*.deb; do
            dpkg-deb --fsys-tarfile "$deb" | tar -t | sed 's|^\.||; s|/$||'
        done
        printf '%s\n' /etc/systemd/system/multi-user.target.wants/usbgwd.service \
            /var/lib/systemd/deb-systemd-helper-enabled/usbgwd.service.dsh-also \
            /var/lib/systemd/deb-systemd-helper-enabled/multi-user.target.wants/usbgwd.service \
            /var/lib/usbgw /var/log/usbgw /run/usbgw /usr/sbin/policy-rc.d
    } | grep -v '^$' | sort -u | while IFS= read -r path; do
        if [ -L "$path" ]; then
            echo "$path link $(readlink "$path")"
        elif [ -d "$path" ]; then
            echo "$path dir $(stat -c '%a %U:%G' "$path")"
        elif [ -e "$path" ]; then
            echo "$path file $(stat -c '%a %U:%G' "$path") $(md5sum < "$path")"
        else
            echo "$path absent"
        fi
    done
    echo "group usbgw: $(getent group usbgw || echo none)"
    echo "packages: $(dpkg-query -W -f='${Package} ${db:Status-Status}\n' usbgw usbgw-share \
        cockpit-usbgw usbgw-opennebula 2>/dev/null || true)"
}
host_state > "$work/host-before"

# 3. installed into the throwaway root
rc=0
USBGW_PACKAGING_INNER=$work unshare --mount --pid --fork --propagation private bash "$0" || rc=$?
[ $rc -eq 0 ] || fail "in the throwaway root (exit $rc)"

# 4. the host as it was
host_state > "$work/host-after"
diff -u "$work/host-before" "$work/host-after" || fail "the host changed"
echo "ok: the host is unchanged"
echo "PASS"
