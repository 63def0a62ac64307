#!/usr/bin/env bash
# Mount rtmpfs in the background for scripts and CI, and take it down again.
#
#   scripts/mount-rtmpfs.sh MOUNTPOINT [OPTIONS]   mount (OPTIONS as for -o), wait until live,
#                                                  print the daemon's pid on stdout
#   scripts/mount-rtmpfs.sh --umount MOUNTPOINT    unmount, wait for the daemon to exit
#
# The binary is $RTMPFS_BIN, else target/release/rtmpfs, else target/debug/rtmpfs.
# The daemon's stderr goes to $RESULTS_DIR/rtmpfs-daemon-<name>.log (RESULTS_DIR default
# /tmp/rtmpfs-results). Waits are bounded (RTMPFS_MOUNT_TIMEOUT seconds, default 20).
set -euo pipefail
cd "$(dirname "$0")/.."
TIMEOUT=${RTMPFS_MOUNT_TIMEOUT:-20}
# How often to look for the mount, in seconds (benchmarks that time a mount set 0.01).
POLL=${RTMPFS_MOUNT_POLL:-0.1}
RESULTS_DIR=${RESULTS_DIR:-/tmp/rtmpfs-results}
usage() { echo "usage: $0 MOUNTPOINT [OPTIONS] | $0 --umount MOUNTPOINT" >&2; exit 2; }
[ $# -ge 1 ] || usage

daemon_pid() { # mountpoint -> pid of the rtmpfs serving it, if any
    local mp=$1 p
    for p in $(pgrep -x rtmpfs || true); do
        if tr '\0' '\n' <"/proc/$p/cmdline" 2>/dev/null | grep -qxF "$mp"; then
            echo "$p"
            return 0
        fi
    done
    return 1
}

if [ "$1" = --umount ]; then
    [ $# -eq 2 ] || usage
    mp=$(cd "$2" && pwd -P)
    pid=$(daemon_pid "$mp" || true)
    umount "$mp" 2>/dev/null || fusermount3 -u "$mp" 2>/dev/null || umount -l "$mp"
    if [ -n "$pid" ]; then
        for _ in $(seq $((TIMEOUT * 10))); do
            kill -0 "$pid" 2>/dev/null || exit 0
            sleep 0.1
        done
        echo "mount-rtmpfs.sh: daemon $pid did not exit after unmount" >&2
        exit 1
    fi
    exit 0
fi

[ $# -le 2 ] || usage
mp=$(cd "$1" && pwd -P)
opts=${2:-}
bin=${RTMPFS_BIN:-}
if [ -z "$bin" ]; then
    if [ -x target/release/rtmpfs ]; then bin=target/release/rtmpfs; else bin=target/debug/rtmpfs; fi
fi
[ -x "$bin" ] || { echo "mount-rtmpfs.sh: no rtmpfs binary ($bin); cargo build --release" >&2; exit 1; }
mkdir -p "$RESULTS_DIR"
log="$RESULTS_DIR/rtmpfs-daemon-$(basename "$mp").log"
args=("$mp")
[ -n "$opts" ] && args+=(-o "$opts")
setsid "$bin" "${args[@]}" </dev/null >/dev/null 2>"$log" &
pid=$!
deadline=$((SECONDS + TIMEOUT))
while [ "$SECONDS" -lt "$deadline" ]; do
    if findmnt -n -M "$mp" -t fuse.rtmpfs >/dev/null 2>&1; then
        echo "$pid"
        exit 0
    fi
    if ! kill -0 "$pid" 2>/dev/null; then
        echo "mount-rtmpfs.sh: rtmpfs exited: $(cat "$log")" >&2
        exit 1
    fi
    sleep "$POLL"
done
kill "$pid" 2>/dev/null || true
echo "mount-rtmpfs.sh: $mp not mounted after ${TIMEOUT}s" >&2
exit 1
