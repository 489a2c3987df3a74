#!/bin/bash
# Installs every Debian 12 package usbgw needs to build, test and run its
# demo. Idempotent: when everything is already installed it returns at once
# without touching apt. Run as root.
set -euo pipefail

packages=(
    # build
    meson ninja-build pkg-config gcc clang libc6-dev
    libglib2.0-dev libjson-glib-dev libusb-1.0-0-dev
    libusbredirparser-dev libusbredirhost-dev libvirt-dev libspice-server-dev
    libspice-client-glib-2.0-dev
    # the SPICE worker's seccomp allowlist (spice/sw-confine.c): it parses
    # network input and must not open files, connect or fork
    libseccomp-dev
    # sd_notify() for the Type=notify unit
    libsystemd-dev
    # GIO's TLS backend (GnuTLS) for bench/link-wire-bench, the design input
    # of gateway links (path D); until now it came only through libsoup-3.0-0
    glib-networking
    # gateway links check that a key belongs to its certificate with GnuTLS
    libgnutls28-dev
    # usbgwd's Prometheus listener (gateway/metrics/gw-metrics-http.c);
    # tests: prometheus_client's parser and a real Prometheus scraping it
    libsoup-3.0-dev python3-prometheus-client prometheus
    # the cluster directory's tests run a real etcd (tests/cluster); etcdctl
    # to inspect it and to compact in the watch test
    etcd-server etcd-client
    # usbgwctl's bash completion: its install directory (pkg-config) and
    # its test
    bash-completion
    # the Debian packages (debian/, tests/packaging)
    debhelper dpkg-dev lintian
    # tests: simulated dongles, the tiny QEMU guest, baselines, fuzzing,
    # test helpers (python3 scripts, pgrep, setpriv)
    umockdev libumockdev-dev qemu-system-x86 busybox-static cpio
    usbredirect libclang-rt-14-dev python3 procps util-linux openssl
    # systemd-analyze verify/security on the unit (not systemd-sysv: init stays)
    systemd
    # a stock SPICE client (remote-viewer) lending a key, on a virtual X server
    virt-viewer xvfb
    # libvirt without libvirt-daemon-system (that one replaces init)
    libvirt-daemon libvirt-daemon-driver-qemu libvirt-clients
    # the Cockpit page's test (tests/cockpit): cockpit-ws serving the page,
    # headless Chromium driven by playwright-core (npm, below)
    cockpit-ws cockpit-bridge cockpit-system chromium
)
# node and npm from Debian, unless a node is there already (another vendor's
# nodejs brings its own npm, which Debian's npm would conflict with)
command -v node >/dev/null || packages+=(nodejs)
command -v npm >/dev/null || packages+=(npm)

missing=()
for pkg in "${packages[@]}"; do
    status=$(dpkg-query -W -f='${db:Status-Status}' "$pkg" 2>/dev/null || true)
    [ "$status" = installed ] || missing+=("$pkg")
done
if [ ${#missing[@]} -gt 0 ]; then
    if [ "$(id -u)" -ne 0 ]; then
        echo "install-deps: missing packages: ${missing[*]}" >&2
        echo "install-deps: run as root to install them" >&2
        exit 1
    fi
    echo "install-deps: installing ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -q
    apt-get install -y -q --no-install-recommends "${missing[@]}"
fi

# playwright-core for tests/cockpit, as its package-lock.json pins it: npm ci
# only when node_modules was not made from this very lock file
cockpit_tests=$(cd "$(dirname "$0")/../tests/cockpit" && pwd)
stamp=$cockpit_tests/node_modules/.installed-from-package-lock.json
if ! cmp -s "$cockpit_tests/package-lock.json" "$stamp"; then
    echo "install-deps: npm ci in tests/cockpit"
    (cd "$cockpit_tests" && npm ci --no-audit --no-fund --loglevel=error)
    cp "$cockpit_tests/package-lock.json" "$stamp"
fi
