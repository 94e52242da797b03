#!/bin/bash
# The package database is whole: no half-installed package, no broken dependency.
audit=$(dpkg --audit 2>&1)
[ -z "$audit" ] || { echo "$audit"; t_Fail "dpkg --audit found problems"; }
apt-get check -q || t_Fail "apt-get check failed"
broken=$(dpkg-query -W -f='${db:Status-Abbrev} ${Package}\n' | grep -v '^ii ' || true)
[ -z "$broken" ] || { echo "$broken"; t_Fail "packages not fully installed"; }
t_Log "$(dpkg-query -W | wc -l) packages installed, all configured"
