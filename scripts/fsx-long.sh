#!/usr/bin/env bash
# The long fsx run done before resolving (not in CI): NUM_OPS operations on each of 2 files at
# once, on one rtmpfs mount, as consecutive segments of SEGMENT_OPS (fsx 0.3.2 leaks one mmap per
# mapread, so one process cannot run much beyond ~350k operations: see scripts/fsx.sh), each a
# fresh pair of fsx processes with its own seeds, every operation type enabled, unaligned.
#
#   scripts/fsx-long.sh [OPTIONS] [NUM_OPS] [SEGMENT_OPS]
#       OPTIONS      rtmpfs -o options (default "size=1g"; e.g. "memory=48k" for the swap run:
#                    a tenth of the 2 x 256 KiB files)
#       NUM_OPS      operations per file in total (default 1000000)
#       SEGMENT_OPS  per segment (default 100000)
#   FSX_SEED_BASE  seed of the first segment (default 7000001); segment i uses BASE + 1000 i
#
# Prints one line per segment and a summary; with a RAM budget, the swap figures from
# `rtmpfs status --raw` after each segment. Exit 0 if every segment passed.
set -euo pipefail
cd "$(dirname "$0")/.."
OPTS=${1:-size=1g}
NUM_OPS=${2:-1000000}
SEG=${3:-100000}
BASE=${FSX_SEED_BASE:-7000001}
export RTMPFS_BIN=${RTMPFS_BIN:-target/release/rtmpfs}
[ -x "$RTMPFS_BIN" ] || { echo "fsx-long.sh: build first: cargo build --release" >&2; exit 2; }
MNT=$(mktemp -d /tmp/fsx-long.XXXXXX)
export RESULTS_DIR=${RESULTS_DIR:-/tmp/rtmpfs-results}/fsx-long-$(basename "$MNT")
mkdir -p "$RESULTS_DIR"
cleanup() {
    scripts/mount-rtmpfs.sh --umount "$MNT" >/dev/null 2>&1 || true
    rmdir "$MNT" 2>/dev/null || true
}
trap cleanup EXIT
pid=$(scripts/mount-rtmpfs.sh "$MNT" "$OPTS")
echo "# fsx-long: $NUM_OPS ops per file (2 files at once) in segments of $SEG, -o $OPTS, commit $(git rev-parse --short HEAD), daemon $pid"
segments=$(((NUM_OPS + SEG - 1) / SEG))
failed=0 done_ops=0 start=$(date +%s)
for i in $(seq 0 $((segments - 1))); do
    ops=$((NUM_OPS - done_ops < SEG ? NUM_OPS - done_ops : SEG))
    seed=$((BASE + 1000 * i))
    t0=$(date +%s)
    if FSX_SEED=$seed FSX_TIMEOUT=3600 scripts/fsx.sh "$MNT" "$ops" >"$RESULTS_DIR/seg$i.log" 2>&1; then
        verdict=PASS
    else
        verdict=FAIL
        failed=$((failed + 1))
    fi
    done_ops=$((done_ops + ops))
    stats=$("$RTMPFS_BIN" status --raw "$MNT" 2>/dev/null | awk '$1 ~ /^(evictions|clean_evictions|swap_ins|readahead_swap_ins|poisoned_pages|swap_read_errors|swap_write_errors)$/ {printf "%s=%s ", $1, $2}')
    echo "segment $((i + 1))/$segments seeds $seed,$((seed + 1)) ops $ops x2: $verdict in $(($(date +%s) - t0)) s ${stats}"
    [ "$verdict" = PASS ] || tail -n 20 "$RESULTS_DIR/seg$i.log"
done
kill -0 "$pid" 2>/dev/null || { echo "fsx-long.sh: the daemon died" >&2; failed=$((failed + 1)); }
echo "# total: $done_ops ops per file, $((2 * done_ops)) ops, $failed failed segments, $(($(date +%s) - start)) s; logs in $RESULTS_DIR"
[ "$failed" -eq 0 ]
