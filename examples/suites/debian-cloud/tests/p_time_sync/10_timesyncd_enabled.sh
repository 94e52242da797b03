#!/bin/bash
# Time synchronisation is enabled and running (whether an NTP server answers depends on the
# network, not the image).
systemctl is-enabled --quiet systemd-timesyncd || t_Fail "systemd-timesyncd is not enabled"
systemctl is-active --quiet systemd-timesyncd || t_Fail "systemd-timesyncd is not running"
[ "$(timedatectl show -p NTP --value)" = yes ] || t_Fail "timedatectl says NTP is off"
t_Log "$(timedatectl show -p NTP -p NTPSynchronized | tr '\n' ' ')"
