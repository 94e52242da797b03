#!/bin/sh
# The demo's smoke suite, run in the booted guest over SSH: ./runtests.sh SCENARIO
set -eu
case "${1:-}" in
ssh) echo "logged in as $(id -un) on $(hostname)" ;;
network) ip -4 addr show eth0 | grep -q 'inet ' && echo "eth0 has an address" ;;
disk) test -b /dev/vda && echo "the image's disk is attached as /dev/vda" ;;
*) echo "unknown scenario: ${1:-}" >&2; exit 2 ;;
esac
