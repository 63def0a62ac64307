#!/usr/bin/env bash
# Measure the kernel-tmpfs baseline: mount a fresh tmpfs, run pjdfstest.sh,
# fsx.sh and stress-ng.sh on it, time each, unmount (always, via trap).
#
#   usage: scripts/tmpfs-baseline.sh [--update-baseline]
#
# With --update-baseline, rewrites scripts/pjdfstest.tmpfs-baseline.txt from
# the pjdfstest failures seen on kernel tmpfs.  Timings and results go to
# $RESULTS_DIR/tmpfs-baseline.txt.  Env: FSX_OPS (100000), STRESS_SECONDS (60),
# REF_MNT (/tmp/ref-tmpfs), plus each script's own knobs.
set -euo pipefail

usage() {
    echo "usage: $0 [--update-baseline]" >&2
    exit 2
}
UPDATE=0
case "${1:-}" in
    "") ;;
    --update-baseline) UPDATE=1 ;;
    *) usage ;;
esac
[ "$#" -le 1 ] || usage

HERE=$(cd "$(dirname "$0")" && pwd)
PATH="$PATH:${CARGO_HOME:-$HOME/.cargo}/bin"
export RESULTS_DIR=${RESULTS_DIR:-/tmp/rtmpfs-results}
REF_MNT=${REF_MNT:-/tmp/ref-tmpfs}
FSX_OPS=${FSX_OPS:-100000}
STRESS_SECONDS=${STRESS_SECONDS:-60}
SUMMARY="$RESULTS_DIR/tmpfs-baseline.txt"

[ "$(id -u)" -eq 0 ] || { echo "tmpfs-baseline.sh: must run as root" >&2; exit 2; }
mkdir -p "$RESULTS_DIR" "$REF_MNT"
if mountpoint -q "$REF_MNT"; then
    echo "tmpfs-baseline.sh: $REF_MNT is already a mount point; refusing" >&2
    exit 2
fi

MOUNTED=0
cleanup() {
    local rc=$?
    cd /
    if [ "$MOUNTED" = 1 ]; then
        umount "$REF_MNT" || { sleep 2; umount "$REF_MNT"; } || umount -l "$REF_MNT" || true
    fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

mount -t tmpfs -o size=2G rtmpfs_ref "$REF_MNT"
MOUNTED=1

: >"$SUMMARY"
note() { printf '%s\n' "$*" | tee -a "$SUMMARY" >&2; }
note "kernel $(uname -r), $(nproc) cpus, tmpfs size=2G at $REF_MNT, $(date -u +%FT%TZ)"

overall=0
timed() { # name cmd... ; records exit status and wall time
    local name=$1 t0 t1 rc=0
    shift
    t0=$(date +%s.%N)
    "$@" || rc=$?
    t1=$(date +%s.%N)
    note "$(printf '%-10s exit %d  wall %6.1fs' "$name" "$rc" "$(echo "$t1 - $t0" | bc)")"
    [ "$rc" -eq 0 ] || overall=1
    return 0
}

timed pjdfstest sh -c '"$1/pjdfstest.sh" "$2" tmpfs >"$3"' _ "$HERE" "$REF_MNT" "$RESULTS_DIR/pjdfstest-tmpfs.stdout"
note "pjdfstest failures on kernel tmpfs: $(wc -l <"$RESULTS_DIR/pjdfstest-tmpfs.stdout")"
sed 's/^/  /' "$RESULTS_DIR/pjdfstest-tmpfs.stdout" | tee -a "$SUMMARY" >&2
timed fsx "$HERE/fsx.sh" "$REF_MNT" "$FSX_OPS"
timed stress-ng "$HERE/stress-ng.sh" "$REF_MNT" "$STRESS_SECONDS"

if [ "$UPDATE" = 1 ]; then
    {
        echo "# pjdfstest $(pjdfstest --version 2>/dev/null | awk '{print $2}') failures on Linux kernel tmpfs ($(uname -r)),"
        echo "# from scripts/tmpfs-baseline.sh --update-baseline.  One test name per line;"
        echo "# '#' starts a comment.  Tests listed here may fail on rtmpfs too."
        cat "$RESULTS_DIR/pjdfstest-tmpfs.stdout"
    } >"$HERE/pjdfstest.tmpfs-baseline.txt"
    note "wrote $HERE/pjdfstest.tmpfs-baseline.txt"
fi
note "summary in $SUMMARY"
exit "$overall"
