#!/bin/sh
# The demo pipeline's "image builder": writes a small raw disk image to $IMAGEKIT_OUTPUT.
# A real local builder would run kiwi-ng, mkosi or diskimage-builder here with the same variables:
# IMAGEKIT_NAME, IMAGEKIT_VERSION, IMAGEKIT_RELEASE, IMAGEKIT_ARCH, IMAGEKIT_FORMAT, IMAGEKIT_OUTPUT.
set -eu
echo "building $IMAGEKIT_NAME-$IMAGEKIT_VERSION-$IMAGEKIT_RELEASE for $IMAGEKIT_ARCH as $IMAGEKIT_FORMAT"
truncate -s 8M "$IMAGEKIT_OUTPUT"
printf 'imagekit demo image %s %s %s\n' "$IMAGEKIT_NAME" "$IMAGEKIT_VERSION" "$IMAGEKIT_ARCH" |
    dd of="$IMAGEKIT_OUTPUT" conv=notrunc status=none
