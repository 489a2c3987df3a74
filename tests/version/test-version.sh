#!/bin/bash
# Every program prints "PROGRAM VERSION" for --version, exits 0 and prints
# nothing else:
#
#   test-version.sh VERSION NAME=PATH…
set -euo pipefail

version=$1
shift
status=0
for program in "$@"; do
    name=${program%%=*} path=${program#*=}
    rc=0
    out=$("$path" --version 2>&1) || rc=$?
    if [ $rc -ne 0 ]; then
        echo "FAIL: $name --version exited with $rc: $out"
        status=1
    elif [ "$out" != "$name $version" ]; then
        echo "FAIL: $name --version printed '$out', expected '$name $version'"
        status=1
    else
        echo "ok: $out"
    fi
done
exit $status
