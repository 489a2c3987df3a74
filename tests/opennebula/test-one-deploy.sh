#!/bin/bash
# opennebula/deploy (the KVM driver's deploy wrapper) without OpenNebula or
# libvirt: the VM template's USBGW_POOL / USBGW_DEVICE become usbgw
# metadata in OpenNebula-shaped deployment files, the rest of the file is
# left byte for byte, bad values stop the deploy with the attribute named,
# and the wrapper hands the edited domain and its arguments to deploy.one.
#
# Also the host probe (opennebula/usbgw-pools.py) on a usbgwctl that
# answers with a device list.
#
#   test-one-deploy.sh DEPLOY WORK_DIR
set -euo pipefail

me=test-one-deploy
deploy=$(realpath "$1")
work=$2/one-deploy
rm -rf "$work"
mkdir -p "$work"
fail() {
    echo "$me: FAIL: $*"
    exit 1
}

# vm_xml FILE USER_TEMPLATE_ATTRIBUTES: a VM as the driver writes vm.xml
vm_xml() {
    cat >"$1" <<EOS
<VM><ID>42</ID><UID>0</UID><NAME>cad-desktop</NAME><TEMPLATE><CPU><![CDATA[1]]></CPU></TEMPLATE>
<USER_TEMPLATE>$2</USER_TEMPLATE></VM>
EOS
}

# The deployment file as OpenNebula's KVM driver writes it: tabs, single
# quotes on disk sources (its deploy script rewrites them with sed), CDATA,
# its own <metadata>.
cat >"$work/one.xml" <<'EOS'
<domain type='kvm' xmlns:qemu='http://libvirt.org/schemas/domain/qemu/1.0'>
	<name>one-42</name>
	<vcpu><![CDATA[1]]></vcpu>
	<memory>1048576</memory>
	<devices>
		<emulator><![CDATA[/usr/bin/qemu-system-x86_64]]></emulator>
		<disk type='file' device='disk'>
			<source file='/var/lib/one//datastores/0/42/disk.0'/>
			<target dev='vda' bus='virtio'/>
		</disk>
	</devices>
	<metadata>
		<one:vm xmlns:one="http://opennebula.org/xmlns/libvirt/1.0">
			<one:system_datastore><![CDATA[/var/lib/one//datastores/0/42]]></one:system_datastore>
			<one:name><![CDATA[a name with </metadata> in it]]></one:name>
		</one:vm>
	</metadata>
</domain>
EOS
# (the element's own lines: a tab, then the tag)
sed $'/^\t<metadata>$/,/^\t<\\/metadata>$/d' "$work/one.xml" >"$work/no-metadata.xml"
sed 's|<memory>1048576</memory>|&<metadata/>|' "$work/no-metadata.xml" >"$work/empty-metadata.xml"

# usbgw_devices FILE: the <device> elements of its usbgw metadata, one per
# line as "pool=…" / "id=… serial=…"; the other metadata kept
usbgw_devices() {
    python3 - "$1" <<'EOS'
import sys, xml.etree.ElementTree as ET
ns = "{http://usbgw.org/xmlns/usbgw/1.0}"
root = ET.parse(sys.argv[1]).getroot()
assert root.tag == "domain"
for d in root.findall(f"metadata/{ns}devices/{ns}device"):
    print(" ".join(f"{k}={v}" for k, v in sorted(d.attrib.items())))
EOS
}

# 1. pool and devices into OpenNebula's own <metadata>
vm_xml "$work/vm.xml" '<USBGW_POOL><![CDATA[cad]]></USBGW_POOL><USBGW_DEVICE><![CDATA[0529:0001, 096E:0006/FT0123]]></USBGW_DEVICE>'
"$deploy" --dry-run "$work/vm.xml" <"$work/one.xml" >"$work/out.xml" || fail "the dry run failed"
[[ $(usbgw_devices "$work/out.xml") == $'pool=cad\nid=0529:0001\nid=096e:0006 serial=FT0123' ]] ||
    fail "wrong devices: $(usbgw_devices "$work/out.xml")"
grep -q "<source file='/var/lib/one//datastores/0/42/disk.0'/>" "$work/out.xml" ||
    fail "the disk source lost its form (OpenNebula's deploy rewrites it with sed)"
grep -q 'a name with </metadata> in it' "$work/out.xml" || fail "OpenNebula's metadata changed"
# only lines were added
[[ $(diff "$work/one.xml" "$work/out.xml" | grep -c '^<') == 0 ]] || fail "lines of the deployment file changed"
echo "$me: into OpenNebula's <metadata>: ok"

# 2. no <metadata>, an empty one
for f in no-metadata empty-metadata; do
    "$deploy" --dry-run "$work/vm.xml" <"$work/$f.xml" >"$work/out-$f.xml" || fail "$f: the dry run failed"
    got=$(usbgw_devices "$work/out-$f.xml")
    [[ ${got%%$'\n'*} == "pool=cad" ]] || fail "$f: no pool wish: $got"
done
echo "$me: without <metadata>, with <metadata/>: ok"

# 3. no attributes, no vm.xml: the file is handed on unchanged
vm_xml "$work/plain.xml" '<LOGO><![CDATA[images/logos/linux.png]]></LOGO>'
"$deploy" --dry-run "$work/plain.xml" <"$work/one.xml" | cmp -s - "$work/one.xml" ||
    fail "a VM without usbgw attributes was changed"
"$deploy" --dry-run "$work/absent/vm.xml" <"$work/one.xml" 2>"$work/err" | cmp -s - "$work/one.xml" ||
    fail "a VM without vm.xml was changed"
grep -q "usbgw: no $work/absent/vm.xml: deployed without usbgw metadata" "$work/err" || fail "no note on the missing vm.xml"
echo "$me: nothing asked, nothing changed: ok"

# 4. bad values: the deploy stops, naming the attribute
bad() { # ATTRIBUTES EXPECTED_MESSAGE
    vm_xml "$work/bad.xml" "$1"
    if "$deploy" --dry-run "$work/bad.xml" <"$work/one.xml" >/dev/null 2>"$work/err"; then
        fail "accepted: $1"
    fi
    grep -qF "$2" "$work/err" || fail "for $1: '$(cat "$work/err")' lacks '$2'"
}
bad '<USBGW_DEVICE>05g9:0001</USBGW_DEVICE>' "usbgw: USBGW_DEVICE: '05g9:0001' is not VID:PID[/SERIAL]"
bad '<USBGW_DEVICE>*:*</USBGW_DEVICE>' "USBGW_DEVICE: '*:*' is not VID:PID"
bad "<USBGW_POOL>$(printf 'p%.0s' {1..256})</USBGW_POOL>" "USBGW_POOL: 'ppp"
bad '<USBGW_POOL>a&#127;b</USBGW_POOL>' "has a control character"
bad "<USBGW_POOL>$(printf 'p%s,' {1..33})</USBGW_POOL>" "more than 32 USBGW_POOL and USBGW_DEVICE values"
bad '<USBGW_POOL>cad' "cannot read the VM template"
vm_xml "$work/vm2.xml" '<USBGW_POOL>cad</USBGW_POOL>'
# (out.xml has usbgw metadata from case 1)
"$deploy" --dry-run "$work/vm2.xml" <"$work/out.xml" >/dev/null 2>"$work/err" && fail "usbgw metadata twice"
grep -q "has usbgw metadata already" "$work/err" || fail "no message for usbgw metadata twice"
echo "$me: bad values refused: ok"

# 5. the wrapper: deploy.one beside it gets the edited domain on stdin and
# the driver's arguments; its output and status are the action's
remotes=$work/remotes
mkdir -p "$remotes" "$work/ds/42"
cp "$deploy" "$remotes/deploy"
cat >"$remotes/deploy.one" <<EOS
#!/bin/bash
cat >"$work/handed.xml"
echo "\$@" >"$work/handed.args"
echo 6695eb01-f6a4-8304-79aa-97f2502e193f
exit \${ONE_STUB_STATUS:-0}
EOS
chmod 755 "$remotes/deploy" "$remotes/deploy.one"
cp "$work/vm.xml" "$work/ds/42/vm.xml"
out=$("$remotes/deploy" "$work/ds/42/deployment.0" node1 <"$work/one.xml" 2>"$work/err") || fail "the wrapper failed: $(cat "$work/err")"
[[ $out == 6695eb01-f6a4-8304-79aa-97f2502e193f ]] || fail "deploy.one's output was not passed on: $out"
[[ $(cat "$work/handed.args") == "$work/ds/42/deployment.0 node1" ]] || fail "wrong arguments: $(cat "$work/handed.args")"
cmp -s "$work/handed.xml" "$work/out.xml" || fail "deploy.one did not get the edited domain"
grep -q 'usbgw: metadata pool="cad"' "$work/err" || fail "the VM log does not say what was added"
ONE_STUB_STATUS=3 "$remotes/deploy" "$work/ds/42/deployment.0" node1 <"$work/one.xml" >/dev/null 2>&1 && fail "deploy.one's failure was lost"
echo "$me: the wrapper hands on to deploy.one: ok"
# 6. the host probe: pools with a present key, and those with a free one
probe=$(dirname "$deploy")/usbgw-pools.py
mkdir -p "$work/bin"
cat >"$work/bin/usbgwctl" <<'EOS'
#!/bin/sh
[ "$1 $2" = "list --json" ] || exit 2
cat <<'JSON'
{"devices": [
 {"id": "0529:0001@1-1", "state": "attached", "vm": "one-7", "target": "pool \"cad\""},
 {"id": "0529:0001@1-2", "state": "claimed", "vm": null, "target": "pool \"hasp\""},
 {"id": "0529:0001@1-3", "state": "absent", "vm": null, "target": "pool \"gone\""},
 {"id": "064f:2af9@1-4", "state": "bound", "vm": "erp-01", "target": "vm \"erp-01\""}]}
JSON
EOS
chmod 755 "$work/bin/usbgwctl"
[[ $(PATH=$work/bin:$PATH "$probe") == $'USBGW_POOLS="cad,hasp"\nUSBGW_FREE_POOLS="hasp"' ]] ||
    fail "the probe said: $(PATH=$work/bin:$PATH "$probe")"
printf '#!/bin/sh\nexit 1\n' >"$work/bin/usbgwctl"
[[ -z $(PATH=$work/bin:$PATH "$probe") ]] || fail "the probe printed something without usbgwd"
echo "$me: the host probe: ok"
echo "$me: PASS"
