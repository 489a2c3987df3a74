#!/bin/sh
# Stands in for spice-gtk's setuid spice-client-glib-usb-acl-helper (which
# asks polkit) in tests: spice-gtk writes "BUS DEV", waits for SUCCESS and
# keeps our stdin open while it uses the device.
read -r bus dev || exit 1
echo SUCCESS
cat >/dev/null
