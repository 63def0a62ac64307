#!/usr/bin/env bash
# The external suites on a live rtmpfs mount, with kernel tmpfs as the oracle in the same run:
#   1. pjdfstest on a fresh kernel tmpfs and on rtmpfs: every test that passes on tmpfs must pass
#      on rtmpfs (scripts/pjdfstest.exclude lists allowed exceptions, each with a reason);
#   2. fsx, every operation type, 2 files at once, $RTMPFS_FSX_OPS operations each;
#   3. stress-ng filesystem stressors for $RTMPFS_STRESS_SECS seconds;
#   4. fsx again on a mount whose RAM budget is a tenth of the files' size (memory=), so that
#      eviction and swap-in never stop.
# Needs root, /dev/fuse and a release build (scripts/test-all.sh builds it). Every mount made
# here is unmounted on exit, failure or not.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$PATH:${CARGO_HOME:-$HOME/.cargo}/bin"
export RESULTS_DIR=${RESULTS_DIR:-/tmp/rtmpfs-results}
FSX_OPS=${RTMPFS_FSX_OPS:-100000}
SWAP_FSX_OPS=${RTMPFS_SWAP_FSX_OPS:-30000}
STRESS_SECS=${RTMPFS_STRESS_SECS:-60}
export RTMPFS_BIN=${RTMPFS_BIN:-$PWD/target/release/rtmpfs}

[ "$(id -u)" -eq 0 ] || { echo "external-suites.sh: must run as root" >&2; exit 2; }
[ -x "$RTMPFS_BIN" ] || { echo "external-suites.sh: no $RTMPFS_BIN (cargo build --release)" >&2; exit 2; }
mkdir -p "$RESULTS_DIR"
work=$(mktemp -d /tmp/rtmpfs-ext.XXXXXX)
# pjdfstest switches to unprivileged users, who must be able to reach the mount points.
chmod 755 "$work"
ref=$work/ref
rt=$work/rt
mkdir -p "$ref" "$rt"
cleanup() {
    mountpoint -q "$ref" && umount "$ref"
    mountpoint -q "$rt" && scripts/mount-rtmpfs.sh --umount "$rt"
    rmdir "$ref" "$rt" "$work" 2>/dev/null || true
}
trap cleanup EXIT

failed=0
fail() {
    echo "external-suites: FAILED: $*"
    failed=$((failed + 1))
}

echo "--- pjdfstest on kernel tmpfs (the oracle)"
mount -t tmpfs -o size=2G rtmpfs_ext_ref "$ref"
rc=0
scripts/pjdfstest.sh "$ref" tmpfs >"$work/tmpfs.fails" || rc=$?
umount "$ref"
[ "$rc" -le 1 ] || fail "pjdfstest harness error on kernel tmpfs (rc $rc)"
echo "kernel tmpfs fails $(wc -l <"$work/tmpfs.fails") tests"

echo "--- pjdfstest on rtmpfs"
scripts/mount-rtmpfs.sh "$rt" size=2G >/dev/null
rc=0
scripts/pjdfstest.sh "$rt" rtmpfs >"$work/rtmpfs.fails" || rc=$?
if [ "$rc" -gt 1 ]; then
    fail "pjdfstest harness error on rtmpfs (rc $rc)"
elif ! scripts/compare-pjdfstest.sh "$work/tmpfs.fails" "$work/rtmpfs.fails"; then
    fail "pjdfstest: rtmpfs fails tests that pass on kernel tmpfs"
else
    echo "pjdfstest: every test passing on kernel tmpfs passes on rtmpfs"
fi

echo "--- fsx, $FSX_OPS ops on 2 files"
scripts/fsx.sh "$rt" "$FSX_OPS" || fail "fsx"

echo "--- stress-ng, $STRESS_SECS s"
scripts/stress-ng.sh "$rt" "$STRESS_SECS" || fail "stress-ng"
scripts/mount-rtmpfs.sh --umount "$rt"

echo "--- fsx under a RAM budget a tenth of the files (memory=48k for 2 x 256 KiB files), $SWAP_FSX_OPS ops"
scripts/mount-rtmpfs.sh "$rt" "size=64m,memory=48k,swap=/var/tmp" >/dev/null
scripts/fsx.sh "$rt" "$SWAP_FSX_OPS" || fail "fsx with memory=48k"
rtmpfs_stats=$("$RTMPFS_BIN" --stats "$rt" 2>&1 || true)
echo "$rtmpfs_stats"
scripts/mount-rtmpfs.sh --umount "$rt"

if [ "$failed" -gt 0 ]; then
    echo "external-suites: $failed suite(s) failed"
    exit 1
fi
echo "external-suites: all passed"
