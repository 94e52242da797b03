#!/bin/bash
# The Debian cloud image suite, in the layout of CentOS functional tests (t_functional):
# tests/0_lib/functions.sh is sourced first, then every executable file of every tests/p_*
# directory runs in order; the first failure stops the run with its exit status.
#   ./runtests.sh               every test
#   ./runtests.sh p_dns p_sudo  only these directories
# imagekit runs each directory as a test of its own (`layout = "t_functional"`).
set -u
cd "$(dirname "$0")"
export PASS=0 FAIL=1
. ./tests/0_lib/functions.sh
if [ $# -gt 0 ]; then dirs=("$@"); else dirs=(tests/p_*); fi
for d in "${dirs[@]}"; do
    d="tests/${d#tests/}"
    [ -d "$d" ] || { echo "no test directory $d" >&2; exit 2; }
    for f in "$d"/*; do
        [ -x "$f" ] || continue
        t_Log "running $f"
        "$f" || { rc=$?; t_Log "$f failed with exit status $rc"; exit "$rc"; }
    done
done
t_Log "all tests passed"
