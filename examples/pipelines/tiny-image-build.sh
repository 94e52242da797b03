#!/bin/sh
# The QEMU demo's "image builder": the tiny guest's disk (dev/build-tiny-guest) as the image.
set -eu
guest="${IMAGEKIT_TINY_GUEST:-/tmp/imagekit-peers/guest}"
[ -f "$guest/disk.qcow2" ] || { echo "no tiny guest in $guest: run dev/build-tiny-guest" >&2; exit 1; }
echo "building $IMAGEKIT_NAME-$IMAGEKIT_VERSION-$IMAGEKIT_RELEASE ($IMAGEKIT_ARCH, $IMAGEKIT_FORMAT)"
cp "$guest/disk.qcow2" "$IMAGEKIT_OUTPUT"
