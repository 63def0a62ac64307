#!/usr/bin/env bash
# request-counts.sh [RTMPFS_BIN] [MOUNT_OPTIONS]
#
# FUSE requests per step of the shared benchmark kit's workloads.sh (the same steps, commands and tree,
# copied here so this script needs nothing outside the repository),
# counted with `rtmpfs status --raw` before and after each step on a fresh rtmpfs mount. Counts are
# deterministic up to the kernel's cache state (the page cache is dropped before the run, as
# workloads.sh does); they are not timings. Prints one line per step: the total and each
# request kind that occurred.
#
# Environment: WORKLOAD_TREE, WORKLOAD_TAR as for workloads.sh.
set -uo pipefail
BIN=${1:-target/release/rtmpfs}
OPTS=${2:-size=4g}
TREE=${WORKLOAD_TREE:-$HOME/.cargo/registry/src}
TAR=${WORKLOAD_TAR:-/tmp/workload-tree.tar}
[ -x "$BIN" ] || { echo "request-counts.sh: no rtmpfs binary at $BIN" >&2; exit 2; }
if [ ! -s "$TAR" ]; then
	[ -d "$TREE" ] || { echo "request-counts.sh: no source tree at $TREE (set WORKLOAD_TREE)" >&2; exit 2; }
	tar -C "$TREE" -cf "$TAR" . || exit 2
fi
MNT=$(mktemp -d /tmp/request-counts.XXXXXX)
"$BIN" "$MNT" -o "$OPTS" 2>"$MNT.log" &
DAEMON=$!
cleanup() {
	umount "$MNT" 2>/dev/null || umount -l "$MNT" 2>/dev/null
	wait "$DAEMON" 2>/dev/null
	rmdir "$MNT" 2>/dev/null
	rm -f "$MNT.log" "$MNT.before" "$MNT.after"
}
trap cleanup EXIT
for _ in $(seq 50); do
	grep -q " $MNT " /proc/mounts && break
	sleep 0.1
done
grep -q " $MNT " /proc/mounts || { echo "request-counts.sh: mount failed: $(cat "$MNT.log")" >&2; exit 1; }

KINDS="lookup forget getattr setattr create remove rename open release read write flush readdir readdirplus getxattr xattr other"
snapshot() { "$BIN" status --raw "$MNT" > "$1"; }
step() { # NAME CMD...
	local name=$1; shift
	snapshot "$MNT.before"
	"$@" >/dev/null 2>&1 || echo "# step $name exited $?" >&2
	snapshot "$MNT.after"
	python3 - "$name" "$MNT.before" "$MNT.after" $KINDS <<'PY'
import sys
name, before, after, kinds = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4:]
def read(p):
    return {k: int(v) for k, v in (l.split() for l in open(p) if len(l.split()) == 2 and l.split()[1].isdigit())}
b, a = read(before), read(after)
d = {k: a.get(k, 0) - b.get(k, 0) for k in kinds}
parts = " ".join(f"{k}={v}" for k, v in d.items() if v)
# Not a request: the caller's credentials read from /proc (adapter::caller), counted apart.
creds = f" credential_reads={a['credential_reads'] - b['credential_reads']}" if "credential_reads" in a else ""
print(f"{name:15} total={sum(d.values()):<8} {parts}{creds}")
PY
}

w=$MNT/workload
mkdir -p "$w"
sync; echo 3 > /proc/sys/vm/drop_caches 2>/dev/null
step untar tar -C "$w" -xf "$TAR"
step git_add_commit sh -c "cd '$w' && git init -q && git add -A && git -c user.name=w -c user.email=w@w -c gc.auto=0 -c maintenance.auto=false commit -qm tree"
step git_status sh -c "cd '$w' && git status --porcelain && git status --porcelain && git status --porcelain"
step grep_r grep -r -c -e 'unsafe fn' "$w"
step find_stat sh -c "find '$w' -type f -printf '%s %m %T@\n' | wc -l"
step compile_py python3 -m compileall -q -j 2 "$w"
step tar_c sh -c "tar -C '$w' -cf - . | wc -c"
step cp_tree cp -a "$w" "$w.copy"
step rm_rf rm -rf "$w" "$w.copy"
