#!/usr/bin/env bash
# Proves the f32 formatter (src/encode/float.rs) over all 2^32 bit patterns: each one's text
# must parse back to the same bits (any NaN for NaN) both straight to f32 and through f64 then a
# cast (as PostgreSQL before 12, so Greenplum 6, reads `real`), and carry ryu's digits, i.e. be
# the shortest, nearest decimal — all but the one value read through f64 would bend. Sharded over every core with rayon; release mode, since a debug
# build would take hours.
set -euo pipefail
cd "$(dirname "$0")/.."
start=$(date +%s)
cargo test --release --lib encode::float::tests::every_f32_reads_back_and_is_shortest \
    -- --ignored --exact --nocapture
echo "all 2^32 f32 bit patterns checked in $(($(date +%s) - start)) s (build included) on $(nproc) cores"
