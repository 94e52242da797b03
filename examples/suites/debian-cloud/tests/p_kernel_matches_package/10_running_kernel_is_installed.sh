#!/bin/bash
# The running kernel is the installed package's: its modules and its image are on disk.
release=$(uname -r)
pkg=$(dpkg-query -W -f='${Package} ${Version} ${db:Status-Abbrev}\n' "linux-image-$release" 2>/dev/null)
t_Log "running $release, package: ${pkg:-none}"
echo "$pkg" | grep -q ' ii' || t_Fail "no installed package linux-image-$release"
[ -d "/lib/modules/$release/kernel" ] || t_Fail "no modules for $release"
dpkg -L "linux-image-$release" | grep -qx "/boot/vmlinuz-$release" || t_Fail "the package has no /boot/vmlinuz-$release"
# Where the bootloader reads the kernel from a partition of its own (SYSLINUX at /boot/syslinux),
# what it boots is the running kernel's image.
if mountpoint -q /boot/syslinux; then
    cmp -s /boot/syslinux/vmlinuz "/boot/vmlinuz-$release" || t_Fail "/boot/syslinux/vmlinuz is not /boot/vmlinuz-$release"
    t_Log "/boot/syslinux/vmlinuz is the installed $release"
fi
