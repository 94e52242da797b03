#!/bin/bash
# The root filesystem grew to the disk it booted on: its partition ends where the disk ends
# (growpart), and the filesystem fills the partition (resize2fs).
set -u
number() { [[ "$2" =~ ^[0-9]+$ ]] || t_Fail "could not read $1 (got '$2')"; }
dev=$(findmnt -no SOURCE /)
name=$(basename "$dev")
disk=$(lsblk -no PKNAME "$dev" | head -1)
[ -n "$disk" ] || t_Fail "/ is on $dev, which is not a partition of a disk"
disk_sectors=$(cat "/sys/block/$disk/size")
start=$(cat "/sys/block/$disk/$name/start")
part_sectors=$(cat "/sys/block/$disk/$name/size")
fs_bytes=$(( $(stat -f -c '%b * %S' /) ))
for v in disk_sectors start part_sectors fs_bytes; do number "$v" "${!v}"; done
end=$(( start + part_sectors ))
t_Log "disk $disk: $disk_sectors sectors; $dev: sectors $start to $end; filesystem $fs_bytes bytes"
# Partition tables keep at most a few MiB at the end (GPT's backup); 16 MiB is generous.
[ $(( disk_sectors - end )) -le 32768 ] || t_Fail "the root partition ends $(( (disk_sectors - end) / 2048 )) MiB before the disk does: it was not grown"
# ext4 keeps its own metadata out of the count.
[ $(( fs_bytes * 100 / (part_sectors * 512) )) -ge 90 ] || t_Fail "the root filesystem does not fill its partition"
