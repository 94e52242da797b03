#!/bin/bash
# The cloud user gets root through sudo without a password, and sudo complains of nothing.
user=$(t_CloudUser)
id "$user" >/dev/null 2>&1 || t_Fail "cloud-init made no user $user"
out=$(runuser -u "$user" -- sudo -n id -u 2>&1)
t_Log "sudo as $user: $out"
[ "$out" = 0 ] || t_Fail "sudo as $user did not give root cleanly: $out"
