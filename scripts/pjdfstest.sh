#!/usr/bin/env bash
# Run the Rust pjdfstest suite (crate `pjdfstest`, see install-test-tools.sh)
# as root in a fresh directory on MOUNTPOINT.
#
#   usage: scripts/pjdfstest.sh MOUNTPOINT [LABEL]
#
# Output:
#   stdout  sorted list of failing test names, one per line (machine readable;
#           feed it to scripts/compare-pjdfstest.sh)
#   $RESULTS_DIR/pjdfstest-LABEL.log    full pjdfstest output
#   $RESULTS_DIR/pjdfstest-LABEL.fails  same list as stdout
#   $RESULTS_DIR/pjdfstest-LABEL.toml   the generated config
# Exit: 0 no failures, 1 some tests failed (judge with compare-pjdfstest.sh),
#       2 usage/harness error (pjdfstest crashed, hung, or printed no summary).
#   CI idiom:  rc=0; scripts/pjdfstest.sh "$MNT" fuse >fails.txt || rc=$?
#              [ "$rc" -le 1 ] && scripts/compare-pjdfstest.sh \
#                  scripts/pjdfstest.tmpfs-baseline.txt fails.txt
#
# Environment knobs:
#   RESULTS_DIR              default /tmp/rtmpfs-results
#   PJDFSTEST_TIMEOUT        seconds before the run is killed (default 900)
#   PJDFSTEST_NAPTIME        seconds slept between timestamp-sensitive steps;
#                            must exceed the fs timestamp granularity (0.01)
#   PJDFSTEST_FEATURES       opt-in features (default: posix_fallocate
#                            rename_ctime utime_now utimensat; `pjdfstest -l`)
#   PJDFSTEST_ALLOW_REMOUNT  1 (default) lets the 13 EROFS tests run
#                            `mount -o remount,ro|rw MOUNTPOINT`; 0 skips them.
#                            Only honoured when MOUNTPOINT itself is a mount
#                            point.  On FUSE, mount(8) runs the
#                            /sbin/mount.fuse.<subtype> helper for a remount
#                            too; rtmpfs's helper handles it.
#   PJDFSTEST_SECONDARY_FS   directory on another fs for the EXDEV tests;
#                            default: a 16 MiB tmpfs mounted (and unmounted)
#                            by this script.
#   PJDFSTEST_PATTERNS       space-separated test-name filters (default: all)
set -euo pipefail

usage() {
    echo "usage: $0 MOUNTPOINT [LABEL]" >&2
    exit 2
}
[ "$#" -ge 1 ] && [ "$#" -le 2 ] || usage
MOUNTPOINT=$1
[ -d "$MOUNTPOINT" ] || { echo "pjdfstest.sh: $MOUNTPOINT is not a directory" >&2; usage; }
MOUNTPOINT=$(cd "$MOUNTPOINT" && pwd -P)
LABEL=${2:-$(basename "$MOUNTPOINT")}

RESULTS_DIR=${RESULTS_DIR:-/tmp/rtmpfs-results}
PJDFSTEST_TIMEOUT=${PJDFSTEST_TIMEOUT:-900}
PJDFSTEST_NAPTIME=${PJDFSTEST_NAPTIME:-0.01}
PJDFSTEST_FEATURES=${PJDFSTEST_FEATURES:-posix_fallocate rename_ctime utime_now utimensat}
PJDFSTEST_ALLOW_REMOUNT=${PJDFSTEST_ALLOW_REMOUNT:-1}
PJDFSTEST_SECONDARY_FS=${PJDFSTEST_SECONDARY_FS:-}
PJDFSTEST_PATTERNS=${PJDFSTEST_PATTERNS:-}

log() { printf 'pjdfstest.sh: %s\n' "$*" >&2; }

if [ "$(id -u)" -ne 0 ]; then
    log "must run as root (many tests switch users or need CAP_*)"
    exit 2
fi
PATH="$PATH:${CARGO_HOME:-$HOME/.cargo}/bin"
command -v pjdfstest >/dev/null || { log "pjdfstest not installed (run scripts/install-test-tools.sh)"; exit 2; }

mkdir -p "$RESULTS_DIR"
LOG="$RESULTS_DIR/pjdfstest-$LABEL.log"
FAILS="$RESULTS_DIR/pjdfstest-$LABEL.fails"
CONF="$RESULTS_DIR/pjdfstest-$LABEL.toml"

WORK=""
SECONDARY_MNT=""
cleanup() {
    local rc=$?
    # The EROFS tests remount ro and back; make sure we never leave it ro.
    if [ "${REMOUNT_OK:-0}" = 1 ] && findmnt -n -o OPTIONS --target "$MOUNTPOINT" | grep -qE '(^|,)ro(,|$)'; then
        mount -o remount,rw "$MOUNTPOINT" || true
    fi
    if [ -n "$WORK" ] && [ -d "$WORK" ]; then
        rm -rf "$WORK" || log "warning: could not remove $WORK"
    fi
    if [ -n "$SECONDARY_MNT" ]; then
        umount "$SECONDARY_MNT" || umount -l "$SECONDARY_MNT" || true
        rmdir "$SECONDARY_MNT" || true
    fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# EROFS tests remount the *mount point containing the test dir* read-only.
# Only allow that on a dedicated mount passed as MOUNTPOINT.
REMOUNT_OK=0
FSTYPE=$(findmnt -n -o FSTYPE --target "$MOUNTPOINT" || echo unknown)
if [ "$PJDFSTEST_ALLOW_REMOUNT" = 1 ]; then
    if mountpoint -q "$MOUNTPOINT" && [ "$MOUNTPOINT" != / ]; then
        REMOUNT_OK=1
    else
        log "$MOUNTPOINT is not a mount point: EROFS tests will be skipped"
    fi
fi

if [ -z "$PJDFSTEST_SECONDARY_FS" ]; then
    SECONDARY_MNT=$(mktemp -d /tmp/pjdfstest-secondary.XXXXXX)
    mount -t tmpfs -o size=16m,mode=0755 pjdfstest_secondary "$SECONDARY_MNT"
    PJDFSTEST_SECONDARY_FS=$SECONDARY_MNT
fi

WORK=$(mktemp -d "$MOUNTPOINT/pjdfstest.XXXXXX")
# pjdfstest makes its own temp dirs inside -p; tests that switch to the dummy
# users must be able to traverse -p itself.
chmod 0755 "$WORK"

user_group() { # user -> ["user", "primary group name"]
    local u=$1 gid
    gid=$(id -g "$u") || { log "user $u missing (run scripts/install-test-tools.sh)"; exit 2; }
    printf '["%s", "%s"]' "$u" "$(getent group "$gid" | cut -d: -f1)"
}
AUTH_ENTRIES="$(user_group nobody), $(user_group tests)"

write_conf() { # file allow_remount(true|false)
    {
        echo "# generated by scripts/pjdfstest.sh for $MOUNTPOINT"
        echo "[features]"
        for f in $PJDFSTEST_FEATURES; do echo "$f = {}"; done
        echo "secondary_fs = \"$PJDFSTEST_SECONDARY_FS\""
        echo
        echo "[settings]"
        echo "naptime = $PJDFSTEST_NAPTIME"
        echo "allow_remount = $2"
        echo
        echo "[dummy_auth]"
        echo "entries = [ $AUTH_ENTRIES ]"
    } >"$1"
}

run_pass() { # conf patterns...  (appends to $LOG; returns pjdfstest's status)
    local conf=$1
    shift
    (cd "$WORK" && NO_COLOR=1 CLICOLOR=0 RUST_BACKTRACE=0 \
        timeout --kill-after=30 "$PJDFSTEST_TIMEOUT" \
        pjdfstest -c "$conf" -p "$WORK" "$@") >>"$LOG" 2>&1 </dev/null
}

: >"$LOG"
log "running pjdfstest $(pjdfstest --version | awk '{print $2}') on $WORK ($FSTYPE, label $LABEL, log $LOG)"
start=$(date +%s)
rc=0
passes=1
if [ "$REMOUNT_OK" = 1 ] && [ -z "$PJDFSTEST_PATTERNS" ]; then
    passes=2
    # Two passes.  pjdfstest 0.2.2 leaks O_RDWR fds in
    # posix_fallocate::affected_only_create_flags (nix::fcntl::open returns a
    # RawFd that is never closed), after which `mount -o remount,ro` fails
    # with EBUSY on any fs, so *erofs* tests that run later in the same
    # process fail spuriously.  Run the EROFS tests first in their own
    # process, then everything else with remounts disabled (the EROFS tests
    # show as skipped there).
    write_conf "$CONF" true
    write_conf "$CONF.noremount" false
    echo "### pass 1: pjdfstest -c $CONF erofs" >>"$LOG"
    run_pass "$CONF" erofs || rc=$?
    if [ "$rc" -le 1 ]; then
        rc2=0
        echo "### pass 2: pjdfstest -c $CONF.noremount (all, EROFS skipped)" >>"$LOG"
        run_pass "$CONF.noremount" || rc2=$?
        [ "$rc2" -le "$rc" ] || rc=$rc2
    fi
else
    if [ "$REMOUNT_OK" = 1 ]; then write_conf "$CONF" true; else write_conf "$CONF" false; fi
    echo "### pjdfstest -c $CONF $PJDFSTEST_PATTERNS" >>"$LOG"
    # shellcheck disable=SC2086 # PJDFSTEST_PATTERNS is a word list
    run_pass "$CONF" $PJDFSTEST_PATTERNS || rc=$?
fi
end=$(date +%s)

# Strip any ANSI colour codes, then take "<name>   FAILED" / "PASSED UNEXPECTEDLY".
sed -e 's/\x1b\[[0-9;]*m//g' "$LOG" |
    awk '$NF == "FAILED" || / PASSED UNEXPECTEDLY$/ {print $1}' | LC_ALL=C sort -u >"$FAILS"
# One "Summary: F failed, S skipped, P passed, X expected failures, T total"
# line per completed pass (in pass 2 the EROFS tests count as skipped).
nsummary=$(sed -e 's/\x1b\[[0-9;]*m//g' "$LOG" | grep -c '^Summary: ' || true)
summary=$(sed -e 's/\x1b\[[0-9;]*m//g' "$LOG" | grep -E '^Summary: ' | tr '\n' ';' | sed 's/;$//' || true)

cat "$FAILS"
log "pjdfstest exit $rc after $((end - start))s; ${summary:-no summary line}"
if [ "$rc" -eq 124 ] || [ "$rc" -eq 137 ]; then
    log "TIMEOUT after ${PJDFSTEST_TIMEOUT}s (hang?); see $LOG"
    exit 2
fi
if [ "$nsummary" -ne "$passes" ]; then
    log "pjdfstest did not finish (crash?); see $LOG"
    tail -n 20 "$LOG" >&2
    exit 2
fi
if [ -s "$FAILS" ]; then
    log "$(wc -l <"$FAILS") failing test(s); list in $FAILS"
    exit 1
fi
exit 0
