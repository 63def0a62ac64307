#!/usr/bin/env bash
# How much RAM the rtmpfs daemon takes beyond its budget: mount a release rtmpfs with a RAM budget,
# run ../shared/bench/workloads.sh against it and a kernel tmpfs side by side, sample the daemon's
# VmRSS every 100 ms, and print the peak RSS, the kernel's high-water mark (VmHWM), the RSS once
# the tree is removed, the bound memory + 5% + 40 MiB, and the time against kernel tmpfs.
#
#   usage: scripts/rss-bench.sh [MEMORY] [ROUNDS] [EXTRA_OPTIONS]
#     MEMORY         the memory= option (default 64m)
#     ROUNDS         workloads.sh rounds (default 1)
#     EXTRA_OPTIONS  more rtmpfs -o options, comma-separated (default none)
#
# Uses target/release/rtmpfs (or $RTMPFS_BIN), mounts under a private /tmp/rtmpfs-rss.PID, and
# unmounts everything at the end, also on failure. Needs root (the mounts, drop_caches).
# The workload script is $WORKLOADS (default ../shared/bench/workloads.sh relative to the repo).
set -euo pipefail
cd "$(dirname "$0")/.."
MEMORY=${1:-64m}
ROUNDS=${2:-1}
EXTRA=${3:-}
WORKLOADS=${WORKLOADS:-$(cd .. && pwd)/shared/bench/workloads.sh}
[ -x "$WORKLOADS" ] || { echo "rss-bench.sh: $WORKLOADS not found (set WORKLOADS)" >&2; exit 2; }
export RTMPFS_BIN=${RTMPFS_BIN:-$PWD/target/release/rtmpfs}
[ -x "$RTMPFS_BIN" ] || { echo "rss-bench.sh: no $RTMPFS_BIN; cargo build --release --locked" >&2; exit 2; }
BASE=/tmp/rtmpfs-rss.$$
REF=$BASE/tmpfs
MNT=$BASE/rtmpfs
SAMPLES=$BASE.samples
mkdir -p "$REF" "$MNT"
sampler=
cleanup() {
    [ -n "$sampler" ] && kill "$sampler" 2>/dev/null
    scripts/mount-rtmpfs.sh --umount "$MNT" 2>/dev/null || true
    umount "$REF" 2>/dev/null || true
    rmdir "$MNT" "$REF" "$BASE" 2>/dev/null || true
    rm -f "$SAMPLES"
}
trap cleanup EXIT
mount -t tmpfs -o size=4G rtmpfs_rss_ref "$REF"
opts="size=4G,memory=$MEMORY${EXTRA:+,$EXTRA}"
pid=$(scripts/mount-rtmpfs.sh "$MNT" "$opts")
echo "# rtmpfs -o $opts (pid $pid, $RTMPFS_BIN) vs kernel tmpfs, $ROUNDS round(s)" >&2
# One line per 100 ms: VmRSS in KiB.
(
    while kill -0 "$pid" 2>/dev/null; do
        awk '/^VmRSS:/ {print $2}' "/proc/$pid/status" 2>/dev/null || true
        sleep 0.1
    done
) >"$SAMPLES" &
sampler=$!
start_kib=$(awk '/^VmRSS:/ {print $2}' "/proc/$pid/status")
COMPARE_A_LABEL=tmpfs COMPARE_B_LABEL=rtmpfs "$WORKLOADS" "$REF" "$MNT" "$ROUNDS"
# workloads.sh removes its tree as its last step; give the housekeeping a few seconds.
sleep 5
after_kib=$(awk '/^VmRSS:/ {print $2}' "/proc/$pid/status")
hwm_kib=$(awk '/^VmHWM:/ {print $2}' "/proc/$pid/status")
kill "$sampler" 2>/dev/null || true
wait "$sampler" 2>/dev/null || true
sampler=
peak_kib=$(sort -n "$SAMPLES" | tail -1)
stats=$("$RTMPFS_BIN" status --raw "$MNT" 2>/dev/null || true)
mem_bytes=$(echo "$stats" | awk '$1 == "memory_limit_pages" {print $2 * 4096}')
if [ -z "$mem_bytes" ]; then
    # Without the budget the bound means nothing: say so rather than compare against 0.
    echo "rss-bench.sh: no memory_limit_pages in \`rtmpfs status --raw $MNT\`" >&2
    exit 1
fi
python3 - "$start_kib" "$peak_kib" "$hwm_kib" "$after_kib" "$mem_bytes" <<'PY'
import sys
start, peak, hwm, after, mem = (int(x) for x in sys.argv[1:6])
mib = lambda kib: kib / 1024
bound = mem / 1048576 * 1.05 + 40
print(f"rss_start_mib {mib(start):.1f}")
print(f"rss_peak_mib {mib(peak):.1f}   (sampled every 100 ms)")
print(f"rss_hwm_mib {mib(hwm):.1f}   (VmHWM)")
print(f"rss_after_rm_mib {mib(after):.1f}")
print(f"bound_mib {bound:.1f}   (memory {mem / 1048576:.0f} MiB + 5% + 40 MiB): "
      + ("within" if mib(hwm) <= bound else "EXCEEDED"))
PY
echo "# the engine's figures after the run:"
echo "$stats" | grep -E '^(charged_pages|resident_pages|frames_in_use|memory_heap_pages|inodes|metadata_bytes|heap_|page_pool_|buffer|accounted|evictions|poisoned_pages)' || true
