#!/usr/bin/env bash
# The compressed tier's speed (issue 14, "Speed"): a benchmark, never a timed test.
#
#   1. In process (crates/rtmpfs-core/examples/compress_bench.rs), on three data sets of MIB MiB
#      each (the cargo registry sources of this machine as files, generated text logs, random
#      bytes), with memory= a quarter of the data and an encrypted O_DIRECT swap file in
#      $SWAPDIR, for compress=off, lz4 and zstd: the data held before the first swap write, the
#      write throughput, and the median time of a random 4 KiB read served by the pool, by the
#      swap file and by RAM. COMPRESS_MAX_PCT (default the engine's 25) sets the pool's cap.
#   2. Through the mount (root and /dev/fuse only): the source tree copied onto a mount whose
#      memory= is a quarter of it, then, after dropping the host's caches, `grep -r` over it and
#      `tar -c` of it, for compress=off, lz4 and zstd (with COMPRESS_MAX_PCT, compress_max= too).
#
#   usage: scripts/compress-bench.sh [MIB]          (MIB default 256)
#   env:   SRC (default $CARGO_HOME/registry/src), SWAPDIR (default /var/tmp),
#          SKIP_MOUNT=1 (only part 1), SKIP_ENGINE=1 (only part 2)
# Figures and the command that made them: docs/benchmarks.md, "The compressed tier".
set -euo pipefail
cd "$(dirname "$0")/.."
MIB=${1:-256}
SRC=${SRC:-${CARGO_HOME:-$HOME/.cargo}/registry/src}
SWAPDIR=${SWAPDIR:-/var/tmp}
[ -d "$SRC" ] || { echo "compress-bench.sh: no source tree at $SRC (set SRC)" >&2; exit 2; }

echo "# compress-bench: $MIB MiB per data set, source tree $SRC, swap in $SWAPDIR ($(df --output=source "$SWAPDIR" | tail -1)), $(nproc) cores"
if [ "${SKIP_ENGINE:-0}" != 1 ]; then
    cargo build --release -q -p rtmpfs-core --example compress_bench
    for set in "src:$SRC" logs random; do
        target/release/examples/compress_bench "$set" "$MIB" "$SWAPDIR"
    done
fi

[ "${SKIP_MOUNT:-0}" = 1 ] && exit 0
if [ "$(id -u)" -ne 0 ] || [ ! -e /dev/fuse ]; then
    echo "# through the mount: skipped (needs root and /dev/fuse)"
    exit 0
fi
cargo build --release -q -p rtmpfs-cli
export RTMPFS_BIN=$PWD/target/release/rtmpfs
mp=$(mktemp -d /tmp/rtmpfs-cbench.XXXXXX)
trap 'scripts/mount-rtmpfs.sh --umount "$mp" >/dev/null 2>&1 || true; rmdir "$mp"' EXIT
tree_kib=$(du -sk "$SRC" | cut -f1)
mem_kib=$((tree_kib / 4))
seconds() { local t0 t1; t0=$(date +%s.%N); "$@" >/dev/null 2>&1 || true; t1=$(date +%s.%N); echo "$t1 - $t0" | bc; }
for c in off lz4 zstd; do
    cap=""
    [ "$c" != off ] && [ -n "${COMPRESS_MAX_PCT:-}" ] && cap=",compress_max=${COMPRESS_MAX_PCT}%"
    scripts/mount-rtmpfs.sh "$mp" "size=$((tree_kib * 3))k,memory=${mem_kib}k,compress=$c$cap,swap=$SWAPDIR" >/dev/null
    cp_s=$(seconds cp -a "$SRC/." "$mp/")
    sync
    echo 3 >/proc/sys/vm/drop_caches
    grep_s=$(seconds grep -r -c "zzq_rtmpfs_never_found" "$mp")
    echo 3 >/proc/sys/vm/drop_caches
    tar_s=$(seconds sh -c "tar -cf - -C '$mp' . | cat >/dev/null")
    raw=$("$RTMPFS_BIN" status --raw "$mp")
    get() { echo "$raw" | awk -v k="$1" '$1 == k { print $2 }'; }
    echo "mount compress=$c$cap tree_mib=$((tree_kib / 1024)) memory_mib=$((mem_kib / 1024)) cp_s=$cp_s grep_s=$grep_s tar_s=$tar_s" \
        "swapped_pages=$(get swapped_pages) compressed_pages=$(get compressed_pages) zero_pages=$(get zero_pages)" \
        "pool_bytes=$(get pool_bytes) pool_hits=$(get pool_hits) swap_ins=$(get swap_ins)"
    scripts/mount-rtmpfs.sh --umount "$mp" >/dev/null
done
