#!/bin/bash
# DNS works: a resolver is configured and the image's own package mirror resolves.
grep -q '^nameserver' /etc/resolv.conf || t_Fail "no nameserver in /etc/resolv.conf"
host=$(grep -rhoE 'https?://[^/ ]+' /etc/apt/sources.list /etc/apt/sources.list.d/ 2>/dev/null | head -1 | sed -E 's#https?://##; s#:.*##')
[ -n "$host" ] || t_Fail "no mirror in the apt sources to resolve"
[[ "$host" =~ ^[0-9.]+$ || "$host" == \[* ]] && t_Fail "the mirror is an address ($host): there is no name to resolve"
answer=$(getent ahostsv4 "$host" | head -1)
[ -n "$answer" ] || t_Fail "$host does not resolve through $(grep '^nameserver' /etc/resolv.conf | head -1)"
t_Log "$host -> $answer"
