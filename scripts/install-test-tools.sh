#!/usr/bin/env bash
# Install the external conformance/stress tools used by scripts/pjdfstest.sh,
# scripts/fsx.sh and scripts/stress-ng.sh.  Idempotent and non-interactive
# (safe under CI=true with no stdin).  Must run as root (apt, useradd).
#
#   usage: scripts/install-test-tools.sh
#
# Installs:
#   apt:   fuse3 stress-ng fio libacl1-dev (pjdfstest's exacl dep links -lacl); acl (setfacl/getfacl for tests/acl.rs)
#   cargo: pjdfstest, fsx (pinned, `cargo install --locked`)
#   users: `tests` (own group `tests`) as pjdfstest's second dummy user;
#          the first one is Debian's `nobody` (group `nogroup`).
set -euo pipefail

if [ "$#" -ne 0 ]; then
    echo "usage: $0" >&2
    exit 2
fi

# Versions verified against kernel tmpfs (see scripts/README-conformance.md).
PJDFSTEST_VERSION=0.2.2
FSX_VERSION=0.3.2
APT_PACKAGES=(fuse3 stress-ng fio libacl1-dev acl libarchive-tools)

log() { printf 'install-test-tools: %s\n' "$*" >&2; }

if [ "$(id -u)" -ne 0 ]; then
    log "must run as root"
    exit 1
fi

export DEBIAN_FRONTEND=noninteractive

# ---- apt packages ---------------------------------------------------------
missing=()
for p in "${APT_PACKAGES[@]}"; do
    if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed'; then
        missing+=("$p")
    fi
done
if [ "${#missing[@]}" -gt 0 ]; then
    log "apt-get install ${missing[*]}"
    apt-get update -q </dev/null
    apt-get install -y -q --no-install-recommends "${missing[@]}" </dev/null
else
    log "apt packages already installed: ${APT_PACKAGES[*]}"
fi

# ---- cargo crates ---------------------------------------------------------
if ! command -v cargo >/dev/null 2>&1 && [ -x "${CARGO_HOME:-$HOME/.cargo}/bin/cargo" ]; then
    PATH="${CARGO_HOME:-$HOME/.cargo}/bin:$PATH"
fi
if ! command -v cargo >/dev/null 2>&1; then
    log "cargo not found"
    exit 1
fi

installed_list=$(cargo install --list)
cargo_install() { # name version
    local name=$1 version=$2
    if printf '%s\n' "$installed_list" | grep -qx "$name v$version:"; then
        log "$name v$version already installed"
    else
        log "cargo install --locked $name --version $version"
        cargo install --locked --force "$name" --version "$version" </dev/null
    fi
}
cargo_install pjdfstest "$PJDFSTEST_VERSION"
cargo_install fsx "$FSX_VERSION"

# ---- dummy users for pjdfstest ---------------------------------------------
# pjdfstest switches to exactly two unprivileged user/group pairs
# ([dummy_auth] entries in its config; default: `nobody` and `tests`, each with
# its primary group).  Debian ships nobody:nogroup; create tests:tests.
if ! getent passwd nobody >/dev/null; then
    log "creating user nobody"
    getent group nogroup >/dev/null || groupadd --system nogroup
    useradd --system --no-create-home --home-dir /nonexistent \
        --shell /usr/sbin/nologin --gid nogroup nobody
fi
if ! getent group tests >/dev/null; then
    log "creating group tests"
    groupadd --system tests
fi
if ! getent passwd tests >/dev/null; then
    log "creating user tests"
    useradd --system --no-create-home --home-dir / \
        --shell /usr/sbin/nologin --gid tests \
        --comment "Dummy user for pjdfstest" tests
fi

log "done: pjdfstest $(command -v pjdfstest || echo '?'), fsx $(command -v fsx || echo '?'), stress-ng $(stress-ng --version 2>/dev/null | awk '{print $3}')"
