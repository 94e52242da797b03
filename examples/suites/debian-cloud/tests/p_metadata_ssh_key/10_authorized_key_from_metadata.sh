#!/bin/bash
# Every SSH key the user data gave is authorized for the login user.
# The user data as the datasource gave it (root only), and the metadata's own keys, if any.
keys=$( { cat /var/lib/cloud/instance/user-data.txt; t_InstanceData v1 public_ssh_keys; } 2>/dev/null \
    | grep -Eo '(ssh|ecdsa)-[a-z0-9-]+ [A-Za-z0-9+/=]+' | sort -u)
[ -n "$keys" ] || t_Fail "the user data has no SSH key"
home=$(getent passwd "$(id -un)" | cut -d: -f6)
while read -r type blob; do
    grep -qF "$type $blob" "$home/.ssh/authorized_keys" || t_Fail "key $type ${blob:0:16}… is not in $home/.ssh/authorized_keys"
    t_Log "authorized: $type ${blob:0:16}…"
done <<< "$keys"
