#!/usr/bin/env bash
# Benchmark rtmpfs against kernel tmpfs with compare.sh of the shared benchmark kit (interleaved rounds,
# medians of per-round ratios), once per rtmpfs option set.
#
#   usage: scripts/mount-bench.sh [ROUNDS] [OPTIONS...]
#     ROUNDS   rounds per comparison (default 3)
#     OPTIONS  one rtmpfs -o string per comparison (default: "threads=1" "threads=2" "threads=3")
#
# Uses target/release/rtmpfs (or $RTMPFS_BIN), mounts both file systems with size=4G under
# /tmp/rtmpfs-bench, writes raw results and summaries to $RESULTS_DIR/bench-<options>.{raw,txt}
# (RESULTS_DIR default /tmp/rtmpfs-results), and unmounts everything at the end.
# compare.sh is taken from $COMPARE (default ../shared/bench/compare.sh relative to the repo).
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=${1:-3}
shift || true
[ $# -gt 0 ] || set -- threads=1 threads=2 threads=3
COMPARE=${COMPARE:-$(cd .. && pwd)/shared/bench/compare.sh}
[ -x "$COMPARE" ] || {
    echo "mount-bench.sh: no compare.sh at $COMPARE: it comes with the shared benchmark kit, not with this repository; set COMPARE=/path/to/compare.sh" >&2
    exit 2
}
export RTMPFS_BIN=${RTMPFS_BIN:-$PWD/target/release/rtmpfs}
RESULTS_DIR=${RESULTS_DIR:-/tmp/rtmpfs-results}
mkdir -p "$RESULTS_DIR"
BASE=/tmp/rtmpfs-bench
REF=$BASE/tmpfs
MNT=$BASE/rtmpfs
mkdir -p "$REF" "$MNT"
cleanup() {
    scripts/mount-rtmpfs.sh --umount "$MNT" 2>/dev/null || true
    umount "$REF" 2>/dev/null || true
}
trap cleanup EXIT
mountpoint -q "$REF" || mount -t tmpfs -o size=4G rtmpfs_bench_ref "$REF"
for opts in "$@"; do
    tag=$(echo "$opts" | tr ',=' '_-')
    pid=$(scripts/mount-rtmpfs.sh "$MNT" "size=4G,$opts")
    echo "# rtmpfs -o size=4G,$opts (pid $pid) vs kernel tmpfs size=4G, $ROUNDS rounds" >&2
    COMPARE_A_LABEL=tmpfs COMPARE_B_LABEL=rtmpfs COMPARE_B_PID=$pid \
        COMPARE_OUT="$RESULTS_DIR/bench-$tag.raw" \
        "$COMPARE" "$REF" "$MNT" "$ROUNDS" | tee "$RESULTS_DIR/bench-$tag.txt"
    scripts/mount-rtmpfs.sh --umount "$MNT"
done
