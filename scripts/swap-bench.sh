#!/usr/bin/env bash
# Swap tier through the mount: a working set 4x the RAM budget read back sequentially (1 MiB)
# and at random (4 KiB, O_DIRECT so that every read reaches the daemon), beside the same reads
# of a plain file on the same host disk with O_DIRECT (the swap device's own limit), with swap
# encryption on and off, in one run; and the daemon's RSS against `memory`.
#
#   scripts/swap-bench.sh [SWAP_DIR] [MEMORY_MIB] [ROUNDS]
#       SWAP_DIR    where the swap files and the plain file live (default /var/tmp: a real disk)
#       MEMORY_MIB  the RAM budget (default 128); the file is 4x that
#       ROUNDS      interleaved rounds; medians are reported (default 3)
#   RAND_SECONDS  seconds per random-read measurement (default 10)
#   FILE_MIB      the working set (default 4 x MEMORY_MIB)
#
# Prints one line per measurement and a summary with ratios; exit 0 unless the harness failed.
# Needs root (drop_caches, mount), fio, and target/release/rtmpfs (or $RTMPFS_BIN).
set -euo pipefail
cd "$(dirname "$0")/.."
DIR=${1:-/var/tmp}
MEM=${2:-128}
ROUNDS=${3:-3}
RAND_SECONDS=${RAND_SECONDS:-10}
FILE_MIB=${FILE_MIB:-$((4 * MEM))}
export RTMPFS_BIN=${RTMPFS_BIN:-target/release/rtmpfs}
[ -x "$RTMPFS_BIN" ] || { echo "swap-bench.sh: build first: cargo build --release" >&2; exit 2; }
command -v fio >/dev/null || { echo "swap-bench.sh: fio is not installed" >&2; exit 2; }
[ -d "$DIR" ] || { echo "swap-bench.sh: $DIR is not a directory" >&2; exit 2; }

WORK=$(mktemp -d /tmp/swap-bench.XXXXXX)
PLAIN="$DIR/swap-bench-plain.$$"
MOUNTS=()
cleanup() {
    for m in "${MOUNTS[@]}"; do scripts/mount-rtmpfs.sh --umount "$m" >/dev/null 2>&1 || true; done
    rm -rf "$WORK" "$PLAIN"
}
trap cleanup EXIT

drop_caches() { sync; echo 3 >/proc/sys/vm/drop_caches; }
rss_kib() { awk '/^VmRSS:/{print $2}' "/proc/$1/status"; }
# Sequential read of $1 in 1 MiB blocks with O_DIRECT: MB/s.
seq_read() { dd if="$1" of=/dev/null bs=1M iflag=direct 2>&1 | awk '/copied/{print $(NF-1) * ($NF == "GB/s" ? 1000 : 1)}'; }
# Random 4 KiB O_DIRECT reads of $1 for RAND_SECONDS: IOPS.
rand_read() {
    fio --name=r --filename="$1" --rw=randread --bs=4k --direct=1 --ioengine=psync --iodepth=1 \
        --time_based --runtime="$RAND_SECONDS" --size="${FILE_MIB}m" --randrepeat=0 \
        --output-format=terse --terse-version=3 2>/dev/null | awk -F';' '{print $8}'
}
median() { sort -n | awk '{a[NR]=$1} END{if (NR%2) print a[(NR+1)/2]; else print (a[NR/2]+a[NR/2+1])/2}'; }

echo "# swap-bench: file ${FILE_MIB} MiB, memory=${MEM}m, swap dir $DIR ($(df --output=source "$DIR" | tail -1)), $ROUNDS rounds"
echo "# preparing the plain file (random bytes, ${FILE_MIB} MiB)"
head -c $((FILE_MIB << 20)) /dev/urandom >"$PLAIN"

declare -A SEQ RAND
for round in $(seq "$ROUNDS"); do
    for variant in plain enc noenc; do
        if [ "$variant" = plain ]; then
            drop_caches
            s=$(seq_read "$PLAIN")
            drop_caches
            r=$(rand_read "$PLAIN")
        else
            enc=$([ "$variant" = enc ] && echo 1 || echo 0)
            mp="$WORK/$variant"
            mkdir -p "$mp"
            pid=$(scripts/mount-rtmpfs.sh "$mp" "size=$((8 * FILE_MIB))m,memory=${MEM}m,swap=$DIR,swap_encrypt=$enc")
            MOUNTS+=("$mp")
            rss_idle=$(rss_kib "$pid")
            dd if="$PLAIN" of="$mp/f" bs=1M iflag=direct conv=fsync status=none
            rss_written=$(rss_kib "$pid")
            drop_caches
            s=$(seq_read "$mp/f")
            rss_seq=$(rss_kib "$pid")
            cmp -s "$PLAIN" "$mp/f" || { echo "swap-bench.sh: data read back differs ($variant)" >&2; exit 1; }
            drop_caches
            r=$(rand_read "$mp/f")
            rss_rand=$(rss_kib "$pid")
            rm "$mp/f"
            sleep 3  # free memory goes back to the kernel within ~2 s
            rss_deleted=$(rss_kib "$pid")
            echo "round $round $variant rss_kib idle=$rss_idle written=$rss_written after_seq=$rss_seq after_rand=$rss_rand after_delete=$rss_deleted"
            "$RTMPFS_BIN" status --raw "$mp" | grep -E '^(evictions|clean_evictions|swap_ins|page_pool_ram_bytes) ' | tr '\n' ' '
            echo
            scripts/mount-rtmpfs.sh --umount "$mp"
            MOUNTS=()
        fi
        echo "round $round $variant seq_MBps=$s rand4k_iops=$r"
        SEQ[$variant]+="$s "
        RAND[$variant]+="$r "
    done
done

m() { tr ' ' '\n' <<<"$1" | grep -v '^$' | median; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN{printf "%.2f", (b > 0 ? a / b : 0)}'; }
ps=$(m "${SEQ[plain]}"); pr=$(m "${RAND[plain]}")
es=$(m "${SEQ[enc]}"); er=$(m "${RAND[enc]}")
ns=$(m "${SEQ[noenc]}"); nr=$(m "${RAND[noenc]}")
echo
echo "| medians of $ROUNDS | seq 1 MiB MB/s | vs plain O_DIRECT | random 4 KiB IOPS | vs plain O_DIRECT |"
echo "| --- | ---: | ---: | ---: | ---: |"
echo "| plain file, O_DIRECT | $ps | 1.00 | $pr | 1.00 |"
echo "| rtmpfs, swap encrypted | $es | $(ratio "$es" "$ps") | $er | $(ratio "$er" "$pr") |"
echo "| rtmpfs, swap plain | $ns | $(ratio "$ns" "$ps") | $nr | $(ratio "$nr" "$pr") |"
echo "encryption cost on sequential reads: $(awk -v e="$es" -v n="$ns" 'BEGIN{printf "%.1f%%", (n > 0 ? (1 - e / n) * 100 : 0)}')"
