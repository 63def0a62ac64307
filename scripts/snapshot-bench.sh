#!/usr/bin/env bash
# Snapshot and restore against tar (issue 13, "Speed"), in one run: a tree of real files (default
# the cargo registry sources) copied into a kernel tmpfs and into an rtmpfs mount, then
#   save:    tar -cf OUT/tree.tar -C TMPFS .        against  rtmpfs snapshot MNT OUT/tree.img
#   restore: tar -xf OUT/tree.tar -C TMPFS2         against  rtmpfs MNT2 -o restore=OUT/tree.img
#            (until mounted)
# each followed by `sync` (the output on the same disk, OUT), and the longest pause of a writer
# doing 4 KiB writes into the mount (timing each) while the snapshot runs.
#
#   scripts/snapshot-bench.sh [TREE] [OUT_DIR]
#       TREE     the tree to copy (default ~/.cargo/registry/src)
#       OUT_DIR  where the archive and the image go (default /var/tmp: a real disk)
#
# Needs root (mount), python3, and target/release/rtmpfs (or $RTMPFS_BIN). Not a test: figures.
set -euo pipefail
cd "$(dirname "$0")/.."
TREE=${1:-$HOME/.cargo/registry/src}
OUT=${2:-/var/tmp}
export RTMPFS_BIN=${RTMPFS_BIN:-target/release/rtmpfs}
[ -x "$RTMPFS_BIN" ] || { echo "snapshot-bench.sh: build first: cargo build --release" >&2; exit 2; }
[ -d "$TREE" ] || { echo "snapshot-bench.sh: $TREE is not a directory" >&2; exit 2; }

WORK=$(mktemp -d /tmp/snapshot-bench.XXXXXX)
MOUNTS=()
TMPFS=()
cleanup() {
    for m in "${MOUNTS[@]}"; do scripts/mount-rtmpfs.sh --umount "$m" >/dev/null 2>&1 || true; done
    for t in "${TMPFS[@]}"; do umount "$t" 2>/dev/null || umount -l "$t" || true; done
    rm -rf "$WORK" "$OUT/snapshot-bench.$$.tar" "$OUT/snapshot-bench.$$.img"
}
trap cleanup EXIT
now() { date +%s.%N; }
secs() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.3f", b - a }'; }

mkdir -p "$WORK/tmpfs" "$WORK/tmpfs2" "$WORK/mnt" "$WORK/mnt2"
mount -t tmpfs -o size=4g tmpfs "$WORK/tmpfs"; TMPFS+=("$WORK/tmpfs")
mount -t tmpfs -o size=4g tmpfs "$WORK/tmpfs2"; TMPFS+=("$WORK/tmpfs2")
scripts/mount-rtmpfs.sh "$WORK/mnt" size=4g >/dev/null; MOUNTS+=("$WORK/mnt")
cp -a "$TREE/." "$WORK/tmpfs/"
cp -a "$TREE/." "$WORK/mnt/"
FILES=$(find "$WORK/tmpfs" -type f | wc -l)
MIB=$(du -sm "$WORK/tmpfs" | cut -f1)
echo "tree: $TREE, $FILES files, $MIB MiB"

TAR="$OUT/snapshot-bench.$$.tar"
IMG="$OUT/snapshot-bench.$$.img"
sync
t0=$(now); tar -cf "$TAR" -C "$WORK/tmpfs" .; sync; t1=$(now)
TAR_SAVE=$(secs "$t0" "$t1")

# A writer in the mount, timing every 4 KiB write, until told to stop.
python3 - "$WORK/mnt/writer" "$WORK/stop" "$WORK/pause" <<'EOF' &
import os, sys, time
path, stop, out = sys.argv[1:4]
fd = os.open(path, os.O_CREAT | os.O_WRONLY, 0o644)
page, worst, n = b"x" * 4096, 0.0, 0
while not os.path.exists(stop):
    t = time.monotonic()
    os.pwrite(fd, page, (n % 256) * 4096)
    worst = max(worst, time.monotonic() - t)
    n += 1
    time.sleep(0.0005)
open(out, "w").write(f"{worst * 1000:.1f} ms over {n} writes\n")
EOF
WRITER=$!
until [ -e "$WORK/mnt/writer" ]; do sleep 0.05; done
sleep 0.3
t0=$(now); "$RTMPFS_BIN" snapshot "$WORK/mnt" "$IMG" >"$WORK/snap.out"; sync; t1=$(now)
SNAP_SAVE=$(secs "$t0" "$t1")
sleep 0.2; touch "$WORK/stop"; wait "$WRITER"
PAUSE=$(cat "$WORK/pause")

sync; echo 3 >/proc/sys/vm/drop_caches
t0=$(now); tar -xf "$TAR" -C "$WORK/tmpfs2"; sync; t1=$(now)
TAR_RESTORE=$(secs "$t0" "$t1")
sync; echo 3 >/proc/sys/vm/drop_caches
t0=$(now); RTMPFS_MOUNT_POLL=0.01 scripts/mount-rtmpfs.sh "$WORK/mnt2" "restore=$IMG" >/dev/null; t1=$(now); MOUNTS+=("$WORK/mnt2")
SNAP_RESTORE=$(secs "$t0" "$t1")
GOT=$(find "$WORK/mnt2" -type f | wc -l)
[ "$GOT" -eq "$((FILES + 1))" ] || { echo "snapshot-bench.sh: restored tree has $GOT files, not $((FILES + 1))" >&2; exit 1; }

echo "save:    tar -cf $TAR_SAVE s ($(du -m "$TAR" | cut -f1) MiB)   rtmpfs snapshot $SNAP_SAVE s ($(du -m "$IMG" | cut -f1) MiB): $(awk -v a="$TAR_SAVE" -v b="$SNAP_SAVE" 'BEGIN{printf "%.2fx", a/b}')"
echo "restore: tar -xf $TAR_RESTORE s   restore= $SNAP_RESTORE s: $(awk -v a="$TAR_RESTORE" -v b="$SNAP_RESTORE" 'BEGIN{printf "%.2fx", a/b}')"
echo "writer's longest 4 KiB write during the snapshot: $PAUSE"
echo "daemon: $(cat "$WORK/snap.out")"
