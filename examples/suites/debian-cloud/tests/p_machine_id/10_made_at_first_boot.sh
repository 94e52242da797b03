#!/bin/bash
# The image carried no machine-id: systemd made one at this first boot, so clones differ.
id=$(cat /etc/machine-id)
echo "$id" | grep -Eqx '[0-9a-f]{32}' || t_Fail "/etc/machine-id is not a machine id: $id"
said=$(journalctl -b -q --no-pager -t systemd | grep -i 'machine.id')
echo "$said"
echo "$said" | grep -q 'Initializing machine ID from' \
    || t_Fail "systemd did not make the machine id at this boot: the image carries one"
t_Log "machine-id $id, made at first boot"
