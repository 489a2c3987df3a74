#!/usr/bin/python3
"""OpenNebula host probe (im/kvm-probes.d/host/system/): which usbgw pools
have a key on this host, for SCHED_REQUIREMENTS.

Prints USBGW_POOLS="cad,hasp" (the pools the policy puts a present key of
this host or of an imported gateway into) and USBGW_FREE_POOLS="cad" (those
with a key no VM holds now), from `usbgwctl list --json`. The probe's user
(oneadmin) must be allowed to ask usbgwd: a member of group usbgw. Without
usbgwd it prints nothing and succeeds, so the host stays monitored.
"""

import json
import re
import subprocess
import sys

USBGWCTL = "usbgwctl"
POOL_RE = re.compile(r'^pool "(.*)"$')


def main():
    try:
        out = subprocess.run([USBGWCTL, "list", "--json"], capture_output=True, timeout=10,
                             check=True).stdout
        devices = json.loads(out)["devices"]
    except (OSError, subprocess.SubprocessError, ValueError, KeyError, TypeError):
        return 0
    pools, free = set(), set()
    for device in devices:
        match = POOL_RE.match(str(device.get("target", "")))
        if match is None or device.get("state") == "absent":
            continue
        pools.add(match.group(1))
        if device.get("vm") is None:
            free.add(match.group(1))
    # values go into OpenNebula's template syntax: no quote may end them
    def clean(names):
        return ",".join(sorted(n.replace('"', "") for n in names))
    print(f'USBGW_POOLS="{clean(pools)}"')
    print(f'USBGW_FREE_POOLS="{clean(free)}"')
    return 0


if __name__ == "__main__":
    sys.exit(main())
