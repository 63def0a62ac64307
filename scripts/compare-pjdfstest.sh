#!/usr/bin/env bash
# Gate pjdfstest results against a baseline.
#
#   usage: scripts/compare-pjdfstest.sh BASELINE_FILE FAILS_FILE
#
# BASELINE_FILE: test names allowed to fail (one per line; e.g.
#   scripts/pjdfstest.tmpfs-baseline.txt, the failures of kernel tmpfs).
# FAILS_FILE: test names that failed (stdout of scripts/pjdfstest.sh).
# Also allowed: names listed in scripts/pjdfstest.exclude (next to this script,
#   or $PJDFSTEST_EXCLUDE), lines "testname  # reason".
# In all three files blank lines and text after '#' are ignored.
# Exit 0 if every failing test is in the baseline or the exclude list,
#      1 otherwise (the new failures are printed), 2 on usage error.
# Baseline tests that now pass are reported (informational, exit unaffected).
set -euo pipefail

usage() {
    echo "usage: $0 BASELINE_FILE FAILS_FILE" >&2
    exit 2
}
[ "$#" -eq 2 ] || usage
BASELINE=$1
FAILS=$2
[ -f "$BASELINE" ] || { echo "compare-pjdfstest.sh: no such file: $BASELINE" >&2; usage; }
[ -f "$FAILS" ] || { echo "compare-pjdfstest.sh: no such file: $FAILS" >&2; usage; }
EXCLUDE=${PJDFSTEST_EXCLUDE:-$(dirname "$0")/pjdfstest.exclude}

names() { # file -> sorted unique test names
    sed -e 's/#.*//' -e 's/^[[:space:]]*//' -e 's/[[:space:]].*//' "$1" |
        grep -v '^$' | LC_ALL=C sort -u || true
}

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
names "$BASELINE" >"$tmp/allowed"
if [ -f "$EXCLUDE" ]; then
    names "$EXCLUDE" >>"$tmp/allowed"
fi
LC_ALL=C sort -u -o "$tmp/allowed" "$tmp/allowed"
names "$FAILS" >"$tmp/fails"

LC_ALL=C comm -23 "$tmp/fails" "$tmp/allowed" >"$tmp/new"
names "$BASELINE" | LC_ALL=C comm -23 - "$tmp/fails" >"$tmp/fixed"

nf=$(wc -l <"$tmp/fails")
if [ -s "$tmp/fixed" ]; then
    echo "compare-pjdfstest: $(wc -l <"$tmp/fixed") baseline failure(s) now pass:"
    sed 's/^/  fixed: /' "$tmp/fixed"
fi
if [ -s "$tmp/new" ]; then
    echo "compare-pjdfstest: $(wc -l <"$tmp/new") NEW failure(s) not in $BASELINE${EXCLUDE:+ or $EXCLUDE}:"
    sed 's/^/  NEW: /' "$tmp/new"
    exit 1
fi
echo "compare-pjdfstest: OK ($nf failure(s), all allowed)"
