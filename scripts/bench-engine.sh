#!/usr/bin/env bash
# Engine benchmarks: rtmpfs-core in process beside the same work done with system calls on a kernel
# tmpfs (mounted by the bench itself when run as root; /dev/shm otherwise), with a summary table
# of ratios against the targets of issue 2. See docs/benchmarks-engine.md.
#
# Usage: scripts/bench-engine.sh [criterion args...]   e.g. a filter: scripts/bench-engine.sh stat
#
# Environment:
#   RTMPFS_BENCH_MAX_LOAD   warn when the 1-minute load average is above this (default 1.0)
#   RTMPFS_BENCH_WAIT       seconds to wait for the load to fall below it first (default 0)
#   RTMPFS_BENCH_ROUNDS     paired rounds (default 11); RTMPFS_BENCH_ROUND_MS (default 30)
#   RESULTS_DIR             where the log and summary go (default /tmp/rtmpfs-results)
# Timings are never asserted: the exit status only says whether the bench ran.
set -euo pipefail
cd "$(dirname "$0")/.."

results=${RESULTS_DIR:-/tmp/rtmpfs-results}
mkdir -p "$results"
stamp=$(date +%Y%m%d-%H%M%S)
log="$results/bench-engine-$stamp.log"
summary="$results/bench-engine-$stamp.md"

# The bench mounts its kernel tmpfs under this directory; whatever is left mounted there when
# the bench dies by a signal it could not catch (SIGKILL) is unmounted here.
tmpdir=$(mktemp -d /tmp/rtmpfs-bench-engine.XXXXXX)
cleanup() {
    local m
    for m in $(awk -v d="$tmpdir/" 'index($2, d) == 1 { print $2 }' /proc/self/mounts); do
        umount "$m" 2>/dev/null || umount -l "$m" || true
    done
    rm -rf "$tmpdir"
}
trap cleanup EXIT

load1() { cut -d' ' -f1 /proc/loadavg; }
max_load=${RTMPFS_BENCH_MAX_LOAD:-1.0}
wait_s=${RTMPFS_BENCH_WAIT:-0}
deadline=$((SECONDS + wait_s))
while awk -v l="$(load1)" -v m="$max_load" 'BEGIN { exit !(l > m) }' && [ $SECONDS -lt $deadline ]; do
    sleep 5
done
echo "uptime before: $(uptime)"
if awk -v l="$(load1)" -v m="$max_load" 'BEGIN { exit !(l > m) }'; then
    echo "WARNING: 1-minute load $(load1) > $max_load: other work shares the $(nproc) CPUs;" \
        "figures (above all 2-thread scaling) will be low and noisy"
fi
if [ "$(id -u)" != 0 ]; then
    echo "NOTE: not root: the kernel side will run on /dev/shm instead of a tmpfs of its own"
fi

# Build first, so that compiling does not overlap the measurement.
cargo bench -p rtmpfs-core --bench engine --no-run

echo "command: cargo bench -p rtmpfs-core --bench engine -- $*"
RTMPFS_BENCH_TMPDIR=$tmpdir RTMPFS_BENCH_SUMMARY=$summary \
    cargo bench -p rtmpfs-core --bench engine -- "$@" 2>&1 | tee "$log"
echo "uptime after: $(uptime)"
echo "log: $log"
echo "summary: $summary"
