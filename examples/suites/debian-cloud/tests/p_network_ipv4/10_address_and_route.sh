#!/bin/bash
# DHCP gave an IPv4 address, and there is a default route through a gateway on its link.
route=$(ip -4 route show default)
[ -n "$route" ] || t_Fail "no IPv4 default route"
dev=$(echo "$route" | awk '{for (i = 1; i < NF; i++) if ($i == "dev") print $(i + 1); exit}')
gw=$(echo "$route" | awk '{print $3; exit}')
addr=$(ip -4 -o addr show dev "$dev" scope global | awk '{print $4}')
[ -n "$addr" ] || t_Fail "no global IPv4 address on $dev"
ip -4 route get "$gw" | grep -q "dev $dev" || t_Fail "the gateway $gw is not on $dev"
t_Log "$dev $addr via $gw"
