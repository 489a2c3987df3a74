#!/bin/sh
# A trivial libvirt qemu hook for the rig's smoke test (test-libvirt-rig.sh):
# appends one line per call, "DOMAIN OP SUBOP EXTRA uuid=<uuid from the
# domain XML on stdin>", to a fixed file (libvirtd gives hooks no useful
# environment). A fixed file keeps this script byte-identical between runs,
# so a libvirtd that already runs it can be reused (libvirt-rig.sh).
log=/run/usbgw-test-hook-record.log
xml=$(cat) # read all of stdin: libvirtd writes the whole XML
uuid=$(printf '%s\n' "$xml" | sed -n 's:.*<uuid>\([^<]*\)</uuid>.*:\1:p' | head -n 1)
echo "$* uuid=${uuid:--}" >>"$log"
exit 0
