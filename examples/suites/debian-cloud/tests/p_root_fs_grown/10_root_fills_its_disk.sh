#!/bin/bash
# The root filesystem grew to the disk it booted on (growpart, then resize2fs).
dev=$(findmnt -no SOURCE /)
disk=/dev/$(lsblk -no PKNAME "$dev")
disk_bytes=$(lsblk -bdno SIZE "$disk")
part_bytes=$(lsblk -bdno SIZE "$dev")
fs_bytes=$(( $(stat -f -c '%b * %S' / ) ))
t_Log "disk $disk $disk_bytes B, root partition $dev $part_bytes B, filesystem $fs_bytes B"
# The partitions before the root's (the boot partition) and ext4's own metadata stay out.
[ $(( part_bytes * 100 / disk_bytes )) -ge 90 ] || t_Fail "the root partition was not grown to the disk"
[ $(( fs_bytes * 100 / part_bytes )) -ge 90 ] || t_Fail "the root filesystem was not grown to its partition"
