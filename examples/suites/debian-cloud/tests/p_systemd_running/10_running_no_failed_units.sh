#!/bin/bash
# The system reached `running`: every unit started, none failed.
state=$(timeout 240 systemctl is-system-running --wait 2>&1)
failed=$(systemctl --failed --no-legend --plain)
t_Log "system state: $state"
if [ -n "$failed" ]; then
    echo "failed units:"; echo "$failed"
    for u in $(echo "$failed" | awk '{print $1}'); do
        echo "--- journal of $u"; journalctl -b -u "$u" --no-pager -n 20
    done
    t_Fail "units failed"
fi
[ "$state" = running ] || t_Fail "the system is $state, not running"
