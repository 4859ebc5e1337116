#!/usr/bin/env bash
# The whole job on an embedded default, on a fresh machine of this kind:
#
#   scripts/demo.sh
#
# Builds the release binary; starts the in-repo Qdrant server (the real engine) and a throwaway
# PostgreSQL 15 on loopback — or uses QDRANT_URL / DEMO_DSN when set; loads a sample collection
# through the Qdrant API (named, sparse and multi vectors, integer and UUID ids, payloads full of
# COPY/JSON hazards); runs `migrate`, then `export` + `import`, `verify --full` and `index`;
# prints each step's throughput table; cleans up. DEMO_POINTS and DEMO_DIM size the sample.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

points=${DEMO_POINTS:-20000}
dim=${DEMO_DIM:-256}
work=$(mktemp -d /tmp/qdrant2pg-demo.XXXXXX)
chmod 755 "$work"
pids=()
cleanup() {
    for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
    if [ -n "${pg_data:-}" ]; then as_pg "$pg_bin/pg_ctl" -D "$pg_data" -m immediate stop >/dev/null 2>&1 || true; fi
    rm -rf "$work"
}
trap cleanup EXIT
step() { printf '\n==> %s\n' "$*"; }

# DEMO_PROFILE=dev runs a debug build (quicker to build, slower to run).
if [ "${DEMO_PROFILE:-release}" = release ]; then
    step "building (release)"
    cargo build --release --quiet --bin qdrant2pg --example qdrant_server
    bin=target/release
else
    step "building (dev)"
    cargo build --quiet --bin qdrant2pg --example qdrant_server
    bin=target/debug
fi
q2p=$bin/qdrant2pg

if [ -z "${QDRANT_URL:-}" ]; then
    step "starting the in-repo Qdrant server"
    mkfifo "$work/qdrant.stdin"
    "$bin/examples/qdrant_server" <"$work/qdrant.stdin" >"$work/qdrant.url" &
    pids+=($!)
    exec 3>"$work/qdrant.stdin"   # holds the server's stdin open; closing it stops the server
    for _ in $(seq 100); do [ -s "$work/qdrant.url" ] && break; sleep 0.1; done
    QDRANT_URL=$(head -n1 "$work/qdrant.url")
fi
echo "Qdrant: $QDRANT_URL"

pg_bin=/usr/lib/postgresql/15/bin
as_pg() { if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }
if [ -z "${DEMO_DSN:-}" ]; then
    step "starting a throwaway PostgreSQL 15"
    pg_data=$work/pg
    mkdir -p "$pg_data"
    [ "$(id -u)" = 0 ] && chown postgres "$pg_data" "$work"
    as_pg "$pg_bin/initdb" -D "$pg_data" -A trust -U postgres >/dev/null
    port=$((20000 + RANDOM % 20000))
    as_pg "$pg_bin/pg_ctl" -D "$pg_data" -l "$pg_data/log" -w \
        -o "-p $port -k $pg_data -c listen_addresses=127.0.0.1 -c fsync=off" start >/dev/null
    DEMO_DSN="host=127.0.0.1 port=$port user=postgres dbname=postgres"
fi
echo "PostgreSQL: ${DEMO_DSN%%password=*}"

step "loading the sample collection 'demo' ($points points) through the Qdrant API"
"$q2p" generate --url "$QDRANT_URL" --collection demo --points "$points" --dim "$dim" \
    --vector text --vector image --sparse keywords --multi colbert --ids mixed --payload-bytes 300

step "migrate: Qdrant -> PostgreSQL directly (binary COPY, schema 'migrated')"
"$q2p" migrate --url "$QDRANT_URL" --dsn "$DEMO_DSN" --schema migrated --collection demo

step "export -> files, then import (schema 'via_files')"
"$q2p" export --url "$QDRANT_URL" --collection demo --output "$work/export"
"$q2p" import --dsn "$DEMO_DSN" --schema via_files --data "$work/export"

step "verify --full, both tables"
"$q2p" verify --url "$QDRANT_URL" --dsn "$DEMO_DSN" --schema migrated --collection demo --full
"$q2p" verify --url "$QDRANT_URL" --dsn "$DEMO_DSN" --schema via_files --collection demo --full

step "index (payload and id indexes; vector indexes need pgvector or AnalyticDB)"
"$q2p" index --url "$QDRANT_URL" --dsn "$DEMO_DSN" --schema migrated --collection demo

step "done"
