#!/usr/bin/env bash
# Install rtmpfs and its mount(8) helper.
#
#   usage: scripts/install.sh [--prefix DIR] [--sbin DIR] [--no-build] [--uninstall]
#
# Installs   PREFIX/bin/rtmpfs               (default PREFIX /usr/local)
#            SBIN/mount.fuse.rtmpfs -> it      (default SBIN /sbin; mount(8) looks there)
# after `cargo build --release` (skip with --no-build; then target/release/rtmpfs must exist).
# The helper is the same binary: it acts as mount.fuse.rtmpfs when called by that name.
# Afterwards both work:
#   mount -t fuse.rtmpfs TAG /mnt/x -o size=1G
#   echo 'TAG /mnt/x fuse.rtmpfs size=1G,mode=1777 0 0' >> /etc/fstab; mount /mnt/x
set -euo pipefail
cd "$(dirname "$0")/.."
PREFIX=/usr/local
SBIN=/sbin
BUILD=1
UNINSTALL=0
while [ $# -gt 0 ]; do
    case $1 in
    --prefix) PREFIX=$2; shift 2 ;;
    --sbin) SBIN=$2; shift 2 ;;
    --no-build) BUILD=0; shift ;;
    --uninstall) UNINSTALL=1; shift ;;
    *) echo "usage: $0 [--prefix DIR] [--sbin DIR] [--no-build] [--uninstall]" >&2; exit 2 ;;
    esac
done
if [ "$UNINSTALL" = 1 ]; then
    rm -f "$SBIN/mount.fuse.rtmpfs" "$PREFIX/bin/rtmpfs"
    echo "removed $SBIN/mount.fuse.rtmpfs and $PREFIX/bin/rtmpfs"
    exit 0
fi
if [ "$BUILD" = 1 ]; then
    cargo build --release -p rtmpfs-cli
fi
[ -x target/release/rtmpfs ] || { echo "install.sh: target/release/rtmpfs missing (build first)" >&2; exit 1; }
install -D -m 0755 target/release/rtmpfs "$PREFIX/bin/rtmpfs"
mkdir -p "$SBIN"
ln -sfn "$PREFIX/bin/rtmpfs" "$SBIN/mount.fuse.rtmpfs"
echo "installed $PREFIX/bin/rtmpfs and $SBIN/mount.fuse.rtmpfs -> $PREFIX/bin/rtmpfs"
