#!/usr/bin/env bash
# The whole job on an embedded default, on a fresh machine of this kind:
#
#   scripts/demo.sh
#
# Builds the release binary; starts a genuine Qdrant where scripts/install-test-deps.sh installed
# one (else the in-repo server on Qdrant's engine) and a throwaway PostgreSQL 15 on loopback — or
# uses QDRANT_URL / DEMO_DSN when set; loads a sample collection
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
source scripts/lib.sh
trap cleanup EXIT
step() { printf '\n==> %s\n' "$*"; }

# DEMO_PROFILE=dev runs a debug build (quicker to build, slower to run).
step "building (${DEMO_PROFILE:-release})"
build_qdrant2pg "${DEMO_PROFILE:-release}"

if [ -z "${QDRANT_URL:-}" ]; then
    step "starting Qdrant"
    start_qdrant "$bin"
    QDRANT_URL=$qdrant_url
    echo "Qdrant: $qdrant_server"
fi
echo "Qdrant: $QDRANT_URL"

if [ -z "${DEMO_DSN:-}" ]; then
    step "starting a throwaway PostgreSQL 15"
    [ "$(id -u)" = 0 ] && chown postgres "$work"
    start_postgres "$work/pg"
    DEMO_DSN=$dsn
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
