#!/bin/bash
# Boot the usbgw test guest built by build-guest.sh; its console goes to stdout.
#
#   run-guest.sh OUTDIR [extra qemu args…]
#
# The guest gets an xHCI controller with id "xhci": attach devices with e.g.
#   -device usb-tablet,bus=xhci.0
#   -chardev socket,id=ur0,path=SOCK -device usb-redir,chardev=ur0,bus=xhci.0
# and tell the probe what to do through the kernel command line, e.g.
#   USBGW_GUEST_APPEND="usbgw.dev=0529:0001 usbgw.challenge=<32 hex>"
# The guest powers off when the probe is done (never in its loop mode,
# usbgw.loop=SECONDS) and on an ACPI shutdown request: add
#   -monitor unix:SOCK,server=on,wait=off
# and run qemu-hmp.py SOCK system_powerdown (device_del/device_add work too).
#
# Env:
#   USBGW_GUEST_APPEND   extra kernel parameters: usbgw.* for the probe (see
#                        usbgw-guest-probe.c); usbgw.debug=1 keeps kernel
#                        messages on the console and traces /init
#   USBGW_GUEST_TIMEOUT  hard limit in seconds (default 120); exit status 124
#   USBGW_GUEST_KVM=1    use KVM instead of TCG (KVM is broken on the test rig)
#   USBGW_GUEST_QEMU     QEMU binary (default qemu-system-x86_64)
#   USBGW_GUEST_PVH=0    boot OUTDIR/vmlinuz even when OUTDIR/vmlinux exists
#   USBGW_GUEST_MEM      guest memory in MiB (default 512; less migrates faster)
set -euo pipefail

me=run-guest.sh
[[ $# -ge 1 ]] || {
    echo "usage: $me OUTDIR [extra qemu args…]" >&2
    exit 2
}
dir=$1
shift
for f in vmlinuz initrd.img; do
    [[ -s $dir/$f ]] || {
        echo "$me: $dir/$f missing; run build-guest.sh $dir first" >&2
        exit 2
    }
done
qemu=${USBGW_GUEST_QEMU:-qemu-system-x86_64}
# vmlinux (PVH entry, uncompressed) saves the ~3 s the kernel spends
# decompressing itself under TCG; vmlinuz is the same kernel as a bzImage.
kernel=$dir/vmlinuz
[[ ${USBGW_GUEST_PVH:-1} == 0 || ! -s $dir/vmlinux ]] || kernel=$dir/vmlinux
limit=${USBGW_GUEST_TIMEOUT:-120}
mem=${USBGW_GUEST_MEM:-512}
accel=(-accel tcg)
[[ ${USBGW_GUEST_KVM:-0} != 1 ]] || accel=(-accel kvm -cpu host)

# --foreground: QEMU keeps the terminal (if any) and is still killed at the
# limit; without it, a QEMU in a background process group would stop on tty
# input. -k: a QEMU that ignores SIGTERM gets SIGKILL 5 s later.
rc=0
timeout --foreground -k 5 "$limit" "$qemu" "${accel[@]}" -machine q35 -m "$mem" \
    -nographic -no-reboot -nic none \
    -kernel "$kernel" -initrd "$dir/initrd.img" \
    -append "console=ttyS0 quiet panic=-1 ${USBGW_GUEST_APPEND:-}" \
    -device qemu-xhci,id=xhci "$@" || rc=$?
if [[ $rc -eq 124 || $rc -eq 137 ]]; then
    echo "$me: guest killed after the ${limit} s limit (USBGW_GUEST_TIMEOUT)" >&2
fi
exit "$rc"
