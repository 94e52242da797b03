#!/bin/bash
# The kernel writes to the serial console, and a login prompt is there: what a cloud's
# console log shows and its serial console reaches.
grep -Eq '(^| )console=ttyS0' /proc/cmdline || t_Fail "no console=ttyS0 on the kernel command line: $(cat /proc/cmdline)"
systemctl is-active --quiet serial-getty@ttyS0.service || t_Fail "no getty on ttyS0"
t_Log "$(cat /proc/cmdline)"
