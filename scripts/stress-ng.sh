#!/usr/bin/env bash
# Run stress-ng's filesystem stressors, all at once (one instance each, so
# they contend on the same fs concurrently), in a fresh directory on
# MOUNTPOINT, for SECONDS, with --verify.  A `timeout` wrapper turns a hang
# into a failure.
#
#   usage: scripts/stress-ng.sh MOUNTPOINT [SECONDS]      (SECONDS default 60)
#
# Output: $RESULTS_DIR/stress-ng-TAG.log (log), stress-ng-TAG.yaml (metrics),
#         stress-ng-TAG.out (stdout/stderr), TAG = basename of MOUNTPOINT.
# Exit: 0 pass; 1 stress-ng reported failures (exit 2..7 or "fail:" lines);
#       2 usage/harness error or hang (timeout).
#
# Environment knobs:
#   RESULTS_DIR          default /tmp/rtmpfs-results
#   STRESS_NG_EXCLUDE    space/comma-separated stressors to drop (e.g. ones a
#                        FUSE fs cannot support: "chattr inode-flags")
#   STRESS_NG_ONLY       run only these stressors (space/comma-separated)
#   STRESS_NG_EXTRA      extra raw stress-ng arguments (word-split), e.g.
#                        "--klog-check" or "--io-uring 1"
#   STRESS_NG_GRACE      extra seconds allowed for start-up and clean-up
#                        before the run counts as hung (default 120)
#
# Stressors used (all create their files under --temp-path):
#   data:      hdd iomix seek(+punch) readahead revio aio aiol sync-file
#              fallocate fpunch fsize copy-file sendfile
#   mmap:      mmap (file-backed, --mmap-file) msync
#   names:     dir dirdeep dirmany dentry filename link symlink rename
#              mknod touch open chdir
#   metadata:  access chmod chown utime xattr chattr file-ioctl
#   locks:     fcntl flock lockf locka lockofd lease
#   notify:    dnotify inotify
# Excluded, and why:
#   fiemap     FS_IOC_FIEMAP is not implemented by tmpfs (stressor skips).
#   verity     fs-verity is not supported by tmpfs (stressor skips).
#   io-uring   fails on kernel tmpfs AND ext4 with stress-ng 0.15.06 on kernel 6.18
#              (IORING_OP_STATX completes with ENOENT): tool/kernel mismatch,
#              not a filesystem property.
#   inode-flags  same FS_IOC_[GS]ETFLAGS coverage as chattr, but its threads
#              spin on the ioctl and starve every other stressor on 2 cores
#              (7 of 20 CPU-seconds in a 10 s run, 0 bogo ops counted).
#   io         only calls sync(2): system-wide, touches no file in temp-path.
#   getdent handle fstat fanotify
#              walk or watch /proc, /dev, /sys or whole mounts, not temp-path.
#   bind-mount binderfs procfs rawdev ioprio dup eventfd
#              need block devices / binder / mount namespaces, or are not
#              filesystem tests at all.
set -euo pipefail

usage() {
    echo "usage: $0 MOUNTPOINT [SECONDS]" >&2
    exit 2
}
[ "$#" -ge 1 ] && [ "$#" -le 2 ] || usage
MOUNTPOINT=$1
DURATION=${2:-60}
[ -d "$MOUNTPOINT" ] || { echo "stress-ng.sh: $MOUNTPOINT is not a directory" >&2; usage; }
case $DURATION in '' | *[!0-9]* | 0) echo "stress-ng.sh: SECONDS must be a positive integer" >&2; usage ;; esac

RESULTS_DIR=${RESULTS_DIR:-/tmp/rtmpfs-results}
STRESS_NG_EXCLUDE=${STRESS_NG_EXCLUDE:-}
STRESS_NG_ONLY=${STRESS_NG_ONLY:-}
STRESS_NG_GRACE=${STRESS_NG_GRACE:-120}
STRESS_NG_EXTRA=${STRESS_NG_EXTRA:-}

log() { printf 'stress-ng.sh: %s\n' "$*" >&2; }
command -v stress-ng >/dev/null || { log "stress-ng not installed (run scripts/install-test-tools.sh)"; exit 2; }

# name and per-stressor options.  Sizes are capped so that everything together
# stays well under ~1 GiB of file data (kernel tmpfs is mounted size=2G; a
# FUSE tmpfs keeps it in RAM too).
STRESSORS=(
    "hdd --hdd-bytes 128M"
    "iomix --iomix-bytes 64M"
    "seek --seek-size 16M --seek-punch"
    "readahead --readahead-bytes 64M"
    "revio --revio-bytes 64M"
    "aio"
    "aiol"
    "sync-file --sync-file-bytes 64M"
    "fallocate --fallocate-bytes 64M"
    "fpunch"
    "fsize"
    "copy-file --copy-file-bytes 128M"
    "sendfile"
    "mmap --mmap-file --mmap-bytes 32M"
    "msync --msync-bytes 16M"
    "dir"
    "dirdeep --dirdeep-inodes 50000"
    "dirmany"
    "dentry"
    "filename"
    "link"
    "symlink"
    "rename"
    "mknod"
    "touch"
    "open"
    "chdir"
    "access"
    "chmod"
    "chown"
    "utime"
    "xattr"
    "chattr"
    "file-ioctl"
    "fcntl"
    "flock"
    "lockf"
    "locka"
    "lockofd"
    "lease"
    "dnotify"
    "inotify"
)

in_list() { # word list
    case " ${2//,/ } " in *" $1 "*) return 0 ;; esac
    return 1
}

args=()
names=()
for entry in "${STRESSORS[@]}"; do
    # shellcheck disable=SC2086 # split "name opts..."
    set -- $entry
    name=$1
    shift
    if [ -n "$STRESS_NG_ONLY" ] && ! in_list "$name" "$STRESS_NG_ONLY"; then continue; fi
    if in_list "$name" "$STRESS_NG_EXCLUDE"; then continue; fi
    names+=("$name")
    args+=("--$name" 1 "$@")
done
# shellcheck disable=SC2206 # STRESS_NG_EXTRA is a word list
[ -z "$STRESS_NG_EXTRA" ] || args+=($STRESS_NG_EXTRA)
[ "${#args[@]}" -gt 0 ] || { log "no stressors selected"; exit 2; }

mkdir -p "$RESULTS_DIR"
# Per-mount file names, so runs on different mounts do not clobber each other.
TAG=$(basename "$MOUNTPOINT")
LOG="$RESULTS_DIR/stress-ng-$TAG.log"
YAML="$RESULTS_DIR/stress-ng-$TAG.yaml"
OUTF="$RESULTS_DIR/stress-ng-$TAG.out"
rm -f "$LOG" "$YAML" "$OUTF"

WORK=""
SPID=""
cleanup() {
    local rc=$?
    if [ -n "$SPID" ]; then
        # timeout forwards TERM to stress-ng's whole process group.
        kill -TERM "$SPID" 2>/dev/null || true
        wait "$SPID" 2>/dev/null || true
    fi
    if [ -n "$WORK" ] && [ -d "$WORK" ]; then
        rm -rf "$WORK" || log "warning: could not remove $WORK"
    fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

WORK=$(mktemp -d "$MOUNTPOINT/stress-ng.XXXXXX")
chmod 0777 "$WORK"
limit=$((DURATION + STRESS_NG_GRACE))
log "stress-ng $(stress-ng --version | awk '{print $3}') on $WORK: ${#names[@]} stressors for ${DURATION}s (hang limit ${limit}s): ${names[*]}"

start=$(date +%s)
rc=0
# In the background + wait, so that INT/TERM reach the trap at once.
timeout --kill-after=30 "$limit" \
    stress-ng --temp-path "$WORK" --timeout "${DURATION}s" --verify \
    --no-rand-seed --metrics-brief --times --oomable \
    --log-file "$LOG" --yaml "$YAML" "${args[@]}" >"$OUTF" 2>&1 </dev/null &
SPID=$!
wait "$SPID" || rc=$?
SPID=""
end=$(date +%s)

# "fail:" lines are stressor failures (verification errors, unexpected errno).
fails=$(grep -hE '(^|[[:space:]])fail:' "$OUTF" "$LOG" 2>/dev/null | sort -u || true)
# Stressors that decided the fs lacks a feature skip themselves with an
# "info: ... skipping" line; a pass with skips is still a pass, but say so.
summary=$(grep -hiE 'skipping|not supported|untrustworthy' "$LOG" 2>/dev/null | sed 's/.*: *\[[0-9]*\] *//' || true)

log "stress-ng exit $rc after $((end - start))s"
[ -z "$summary" ] || printf '%s\n' "$summary" | sed 's/^/  note: /' >&2
if [ "$rc" -eq 124 ] || [ "$rc" -eq 137 ]; then
    log "FAIL: HANG: stress-ng still running ${limit}s after start; see $LOG"
    # Show which stressor processes were stuck, if any survived.
    ps -eo pid,stat,wchan:32,args | grep '[s]tress-ng ' | grep -v 'stress-ng\.sh' >&2 || true
    exit 2
fi
if [ "$rc" -ne 0 ] || [ -n "$fails" ]; then
    log "FAIL (stress-ng exit $rc: 1=harness error, 2=stressor failed, 3=no resources, 4=not implemented, 5=killed by signal, 6=bad exit, 7=bad metrics)"
    [ -z "$fails" ] || printf '%s\n' "$fails" | head -n 50 >&2
    tail -n 20 "$OUTF" >&2
    exit 1
fi
log "PASS (${#names[@]} stressors, ${DURATION}s)"
exit 0
