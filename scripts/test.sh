#!/usr/bin/env bash
# The one command that passes the tests, on a fresh machine of the kind CI uses (Rust toolchain,
# Debian's PostgreSQL 15, Python with pip, the package registries): it fetches the test servers,
# then runs every check CI runs, in the order that fails fastest.
#
#   scripts/test.sh
#
# Tests run as root (as CI does) or as any user; servers then run as `postgres` or that user.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

step() { printf '\n==> %s\n' "$*"; }
started=$SECONDS

step "test servers: PostgreSQL 18 + pgvector (scripts/install-test-deps.sh)"
scripts/install-test-deps.sh

step "cargo fmt --check"
cargo fmt --check

# --all-targets type-checks the benches too: CI does not also build them in release mode
# (`cargo bench --no-run`: 5–6 of its 38 minutes from a clean clone, 2026-12-06).
step "cargo clippy --all-targets -- -D warnings"
cargo clippy --all-targets -- -D warnings

step "cargo test (unit tests, then integration tests against PostgreSQL 15 and 18 + pgvector)"
cargo test

step "all checks passed in $((SECONDS - started))s"
