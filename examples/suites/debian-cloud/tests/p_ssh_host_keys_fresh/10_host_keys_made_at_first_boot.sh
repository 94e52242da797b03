#!/bin/bash
# No SSH host key was baked into the image: every key was made during this boot (cloud-init
# makes them at first boot). imagekit also compares the keys of two machines of the image.
boot=$(t_BootTime)
n=0
for k in /etc/ssh/ssh_host_*_key; do
    [ -f "$k" ] || continue
    n=$((n + 1))
    made=$(stat -c %Y "$k")
    t_Log "$k made $(( made - boot )) s after boot: $(ssh-keygen -lf "$k.pub")"
    [ "$made" -ge "$boot" ] || t_Fail "$k predates this boot: it came with the image"
done
[ "$n" -gt 0 ] || t_Fail "no SSH host key"
