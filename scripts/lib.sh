# What the scripts share (sourced, not run): free ports, a genuine Qdrant (or the in-repo one) and
# a throwaway PostgreSQL 15, started the way the tests start them. A script sets `work` (its
# temporary directory) and `pids=()` before sourcing this; the servers started here are added to
# `pids`, and `cleanup` (its EXIT trap) stops them all and removes `work`.

pg_bin=/usr/lib/postgresql/15/bin
# What qdrant2pg keeps in a schema beside the tables it loads: the ledger and the shared run.
# A benchmark that loads the same thing again into the same schema drops them with the table, or
# the next command would find the run finished and load nothing.
bookkeeping="qdrant2pg_ledger, qdrant2pg_run, qdrant2pg_units, qdrant2pg_workers"

# Runs a command as the `postgres` user when root (PostgreSQL refuses to run as root).
as_pg() { if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }

free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# build_qdrant2pg PROFILE: builds qdrant2pg and the in-repo Qdrant server (the same targets in
# every script, so they share one set of compiled dependencies) in PROFILE (release, or dev to
# check a harness quickly; figures come from release). Sets bin (the build's directory) and q2p.
build_qdrant2pg() {
    if [ "$1" = release ]; then
        cargo build --release --quiet --bin qdrant2pg --example qdrant_server
        bin=target/release
    else
        cargo build --quiet --bin qdrant2pg --example qdrant_server
        bin=target/debug
    fi
    q2p=$PWD/$bin/qdrant2pg
}

# start_genuine_qdrant BIN DIR: the genuine Qdrant at BIN, started as
# tests/support/genuine_qdrant.rs starts it (settings by environment, loopback, storage and log
# in DIR), ready once /readyz answers. Sets qdrant_pid (the server's own pid, through `exec`, so
# the cleanup stops the server), qdrant_rest (REST base URL) and qdrant_url (gRPC URL).
start_genuine_qdrant() {
    local bin dir http grpc
    bin=$(realpath "$1")
    dir=$2
    http=$(free_port)
    grpc=$(free_port)
    mkdir -p "$dir"
    (cd "$dir" && exec env QDRANT__SERVICE__HOST=127.0.0.1 QDRANT__SERVICE__HTTP_PORT="$http" \
        QDRANT__SERVICE__GRPC_PORT="$grpc" QDRANT__STORAGE__STORAGE_PATH="$dir/storage" \
        QDRANT__STORAGE__SNAPSHOTS_PATH="$dir/snapshots" QDRANT__TELEMETRY_DISABLED=true \
        "$bin" >"$dir/log" 2>&1) &
    qdrant_pid=$!
    pids+=("$qdrant_pid")
    qdrant_rest=http://127.0.0.1:$http
    qdrant_url=http://127.0.0.1:$grpc
    for _ in $(seq 600); do
        curl -sf "$qdrant_rest/readyz" >/dev/null 2>&1 && return 0
        sleep 0.1
    done
    cat "$dir/log" >&2
    echo "the genuine Qdrant at $bin did not become ready" >&2
    return 1
}

# start_qdrant BIN_DIR: the genuine Qdrant where one is installed (target/test-servers/qdrant,
# or $QDRANT_BIN; see scripts/install-test-deps.sh), else the in-repo server on Qdrant's engine
# (BIN_DIR/examples/qdrant_server), so figures always say which. Sets qdrant_url, qdrant_server
# (which one, in words) and, for the genuine one, qdrant_rest.
start_qdrant() {
    local genuine=${QDRANT_BIN:-$PWD/target/test-servers/qdrant}
    if [ -x "$genuine" ]; then
        start_genuine_qdrant "$genuine" "$work/qdrant"
        qdrant_server="genuine Qdrant $(curl -sf "$qdrant_rest/" | python3 -c 'import json,sys; print(json.load(sys.stdin)["version"])')"
        return 0
    fi
    mkfifo "$work/qdrant.stdin"
    "$1/examples/qdrant_server" <"$work/qdrant.stdin" >"$work/qdrant.url" &
    pids+=($!)
    exec 3>"$work/qdrant.stdin" # holds the server's stdin open; closing it stops the server
    for _ in $(seq 100); do [ -s "$work/qdrant.url" ] && break; sleep 0.1; done
    qdrant_url=$(head -n1 "$work/qdrant.url")
    qdrant_server="the in-repo Qdrant server (qdrant-edge; no genuine Qdrant at $genuine)"
}

# start_postgres DIR [SETTING=VALUE...]: a throwaway PostgreSQL 15 cluster (or the one in
# $PG_BIN, e.g. target/test-servers/pg18/bin, PostgreSQL 18 + pgvector) in DIR on a free port,
# fsync off (for every run alike) plus the settings given (`fsync=on` turns it back on), trust
# auth on loopback. Sets pg_data, port and dsn; psql_ runs psql against it. The caller's cleanup
# runs stop_postgres.
start_postgres() {
    if [ -n "${PG_BIN:-}" ]; then
        pg_bin=$PG_BIN
        export LD_LIBRARY_PATH=$PG_BIN/../lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
    fi
    pg_data=$1
    shift
    local settings=(-c listen_addresses=127.0.0.1 -c fsync=off -c max_wal_size=4GB)
    for setting in "$@"; do settings+=(-c "$setting"); done
    mkdir -p "$pg_data"
    [ "$(id -u)" = 0 ] && chown -R postgres "$pg_data"
    as_pg "$pg_bin/initdb" -D "$pg_data" -A trust -U postgres >/dev/null
    port=$(free_port)
    as_pg "$pg_bin/pg_ctl" -D "$pg_data" -l "$pg_data/log" -w \
        -o "-p $port -k $pg_data ${settings[*]}" start >/dev/null
    dsn="host=127.0.0.1 port=$port user=postgres dbname=postgres"
    export PGOPTIONS='-c client_min_messages=warning'
}

psql_() { psql -X -q -t -A -h 127.0.0.1 -p "$port" -U postgres -d postgres "$@"; }

stop_postgres() {
    [ -n "${pg_data:-}" ] && as_pg "$pg_bin/pg_ctl" -D "$pg_data" -m immediate stop >/dev/null 2>&1
    return 0
}

# Stops every server in `pids` (and waits for it) and the PostgreSQL cluster, then removes the
# work directory: the scripts' EXIT trap, or the first part of theirs.
cleanup() {
    for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
    for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
    stop_postgres
    rm -rf "$work"
}

# CPU accounting, in clock ticks (sysconf CLK_TCK) since each process started, read from /proc:
#   cpu_of PID          the process, all its threads (utime + stime), e.g. Qdrant;
#   cpu_of_pg           the PostgreSQL cluster: the postmaster, its live children (backends,
#                       checkpointer, WAL writer, autovacuum) and every child it has reaped
#                       (cutime + cstime: a backend's whole CPU lands there when its session
#                       ends). The difference of two readings is exact: a child live at the
#                       first and gone at the second is counted in full at the second, less
#                       what the first already counted.
# Our own process is measured with /usr/bin/time (getrusage of the child, threads included).
clk_tck=$(getconf CLK_TCK)
cpu_of() {
    python3 -c '
import sys
f = open(f"/proc/{sys.argv[1]}/stat").read().rsplit(")", 1)[1].split()
print(int(f[11]) + int(f[12]))' "$1"
}
cpu_of_pg() {
    python3 -c '
import os, sys
root = int(sys.argv[1])
def stat(pid):
    return open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
f = stat(root)
total = int(f[11]) + int(f[12]) + int(f[13]) + int(f[14])
for pid in os.listdir("/proc"):
    if not pid.isdigit():
        continue
    try:
        g = stat(pid)
    except OSError:
        continue
    if int(g[1]) == root:
        total += int(g[11]) + int(g[12])
print(total)' "$(head -n1 "$pg_data/postmaster.pid")"
}

# The guide's Python scripts, as its text prints them (../shared/seeds/, the guide's page):
#   guide_script NAME    prints NAME (export.py or import.py) from the guide's text, dedented;
#   guide_venv           a virtualenv with the libraries the guide names, made in
#                        target/bench/guide-venv the first time; sets guide_python. The guide
#                        pins qdrant-client 1.6.0, which cannot read a current server's
#                        collection info (pydantic refuses Qdrant 1.18's fields), so the
#                        client is the newest, 1.20.
guide_text=../shared/seeds/000_d14a018e1416c7ef.txt
guide_script() {
    python3 - "$guide_text" "$1" <<'PY'
import sys, textwrap
lines = open(sys.argv[1]).read().splitlines()
start = next(i for i, l in enumerate(lines) if f"The {sys.argv[2]} script contains the following content:" in l)
body = []
for line in lines[start + 1:]:
    if line.strip() and not line.startswith("       "):
        break
    body.append(line)
print(textwrap.dedent("\n".join(body)).strip("\n"))
PY
}
guide_venv() {
    local venv=target/bench/guide-venv
    if [ ! -x "$venv/bin/python" ] || ! "$venv/bin/python" -c 'import importlib.metadata as m, psycopg2, yaml, tqdm; assert m.version("qdrant-client") == "1.20.0"' 2>/dev/null; then
        python3 -m venv "$venv"
        "$venv/bin/pip" install --quiet qdrant-client==1.20.0 psycopg2-binary pyyaml tqdm
    fi
    guide_python=$venv/bin/python
}
