#!/usr/bin/env bash
# Run every test of rtmpfs: lint, unit/integration/model/differential tests (in-process and on
# real mounts), shuttle schedule exploration, then the external suites on a live FUSE mount
# compared with kernel tmpfs on the same machine. Needs root and /dev/fuse (CI has both).
#
# Environment: RTMPFS_FSX_OPS (default 100000), RTMPFS_STRESS_SECS (default 60),
#              RTMPFS_SKIP_EXTERNAL=1 to stop after the cargo tests (local iteration only).
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TERM_COLOR=never
results=${RESULTS_DIR:-/tmp/rtmpfs-results}
mkdir -p "$results"
passed=0
failed=0
failures=()

step() { # step NAME CMD...: run, count, keep going
    local name=$1
    shift
    echo "=== $name: $*"
    local start=$SECONDS
    if "$@"; then
        passed=$((passed + 1))
        echo "=== $name: ok ($((SECONDS - start)) s)"
    else
        failed=$((failed + 1))
        failures+=("$name")
        echo "=== $name: FAILED ($((SECONDS - start)) s)"
    fi
}

step install-tools scripts/install-test-tools.sh
step fmt cargo fmt --all -- --check
step clippy cargo clippy --workspace --all-targets --locked -- -D warnings
# The engine built for shuttle (its model-checked locks) is code too.
step clippy-shuttle cargo clippy -p rtmpfs-core --all-targets --locked --features shuttle -- -D warnings
# The written record is part of the build: every crate's docs, private items included, with no
# broken intra-doc link or other rustdoc warning (the fuser fork's too).
step doc env RUSTDOCFLAGS="-D warnings" cargo doc --workspace --no-deps --document-private-items --locked
step cargo-test cargo test --workspace --locked
# The mount tests again over FUSE-over-io_uring: the shared test helper mounts with io_uring=on
# and holds fuse.enable_uring at Y, restoring the value it found (tests/common/mod.rs).
step cargo-test-io-uring env RTMPFS_TEST_TRANSPORT=io_uring cargo test -p rtmpfs-cli --locked \
    --test lifecycle --test self_mmap --test setid --test swap_stall --test faults --test parity \
    --test fork_features --test round_trips --test mmap_errors
step shuttle cargo test -p rtmpfs-core --locked --features shuttle shuttle
step build-release cargo build --release --locked --workspace

if [ "${RTMPFS_SKIP_EXTERNAL:-0}" != 1 ]; then
    step external-suites scripts/external-suites.sh
fi

echo
if [ ${#failures[@]} -gt 0 ]; then
    echo "failed steps: ${failures[*]}"
fi
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
