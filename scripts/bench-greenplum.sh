#!/usr/bin/env bash
# The MPP load paths into a genuine Greenplum 6, side by side in one run: every figure is a ratio
# against a baseline measured in the same run, on the same servers, interleaved and repeated, so
# a shared and noisy machine still gives comparable numbers.
#
#   scripts/bench-greenplum.sh [POINTS [DIM [REPEATS]]]      default: 50000 768 2
#
# Starts the genuine Qdrant (target/test-servers/qdrant) and a throwaway Greenplum 6.24.3
# (target/test-servers/greenplum: coordinator + 2 segments on loopback, fsync off for every run
# alike), generates the collection through the Qdrant API and exports it once (--dialect adbpg),
# then loads the same rows into the same table, TRUNCATEd between runs, by:
#   import -j N           qdrant2pg: COPY text through the coordinator, N connections;
#   import --via gpfdist  qdrant2pg: the segments pull each file from the connection's gpfdist;
#   COPY text, N psql     the same files through the coordinator with psql, N sessions at once;
#   COPY binary, N psql   the same rows as N binary COPY files, N sessions at once;
#   gpfdist, N psql       the segments pull the files from one gpfdist through external tables,
#                         N INSERT ... SELECT at once over disjoint sets of files;
# for N in 1, 2, 4. Each (N, path) is timed REPEATS times, the paths interleaved; the table shows
# the best of the repeats (the least disturbed by other load). Prints a markdown table and writes
# target/bench/greenplum.json.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

points=${1:-50000}
dim=${2:-768}
repeats=${3:-2}
out=target/bench
mkdir -p "$out"
gp=${QDRANT2PG_GREENPLUM:-target/test-servers/greenplum}
gp=$(cd "$gp" && pwd)
qdrant_bin=${QDRANT_BIN:-target/test-servers/qdrant}
work=$(mktemp -d /tmp/qdrant2pg-bench-gp.XXXXXX)
chmod 755 "$work"
pids=()
source scripts/lib.sh
stop_all() {
    [ -d "$work/gp" ] && "$gp/cluster.sh" stop "$gp" "$work/gp" || true
    cleanup
}
trap stop_all EXIT

cargo build --release --quiet --bin qdrant2pg
q2p=$PWD/target/release/qdrant2pg
start_genuine_qdrant "$qdrant_bin" "$work/qdrant"
url=$qdrant_url

# Greenplum: three consecutive free ports, fsync off, restarted to take it.
while :; do
    port=$((20000 + RANDOM % 40000))
    python3 -c "import socket
for p in range($port, $port + 3): socket.socket().bind(('127.0.0.1', p))" 2>/dev/null && break
done
[ "$(id -u)" = 0 ] && chown postgres "$work"
"$gp/cluster.sh" create "$gp" "$work/gp" "$port" >/dev/null 2>&1
for instance in coord seg0 seg1; do
    echo "fsync = off" >>"$work/gp/$instance/postgresql.conf"
done
"$gp/cluster.sh" stop "$gp" "$work/gp"
"$gp/cluster.sh" start "$gp" "$work/gp" "$port"
dsn="host=127.0.0.1 port=$port user=postgres dbname=postgres"
export LD_LIBRARY_PATH=$gp/lib PGOPTIONS='-c client_min_messages=warning'
psql_() { "$gp/bin/psql" -X -q -t -A -h 127.0.0.1 -p "$port" -U postgres -d postgres "$@"; }

"$q2p" --quiet generate --url "$url" --collection big --points "$points" --dim "$dim" >/dev/null
"$q2p" --quiet export --url "$url" --collection big --output "$work/export" --dialect adbpg >/dev/null
chmod -R a+rX "$work/export"
files=("$work"/export/big/*.csv)
psql_ -f "$work/export/big/create_table.sql" >/dev/null

# Every N-th file hard-linked into a directory per session, for gpfdist.
for n in 1 2 4; do
    for i in "${!files[@]}"; do
        mkdir -p "$work/split-$n-$((i % n))"
        ln "${files[$i]}" "$work/split-$n-$((i % n))/"
    done
done
gpfdist_port=$(free_port)
"$gp/bin/gpfdist" -d "$work" -p "$gpfdist_port" -m 1048576 -l "$work/gpfdist.log" >/dev/null 2>&1 &
pids+=($!)
sleep 1
columns=$(sed -n '/^CREATE TABLE/,/^)/p' "$work/export/big/create_table.sql" | sed '1d;$d' | tr -d '\n')

# Binary COPY files of the same rows, one per session, for each N (the table is loaded once).
"$q2p" --quiet import --dsn "$dsn" --data "$work/export" --dialect adbpg -j 2 --if-exists append >/dev/null
for n in 1 2 4; do
    for k in $(seq 0 $((n - 1))); do
        psql_ -c "\\copy (SELECT * FROM big WHERE id % $n = $k) TO '$work/bin-$n-$k' WITH (FORMAT binary)"
    done
done

seconds_since() { python3 -c "import time; print(time.time() - $1)"; }
now() { python3 -c 'import time; print(time.time())'; }
reset() { psql_ -c "TRUNCATE big; DROP TABLE IF EXISTS $bookkeeping" >/dev/null; }
load_import() {
    local json=$work/r.json
    "$q2p" import --dsn "$dsn" --data "$work/export" --dialect adbpg -j "$1" --if-exists append \
        --quiet --report-json "$json" "${@:2}" >/dev/null
    python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["seconds"])' "$json"
}
load_import_gpfdist() { load_import "$1" --via gpfdist --gpfdist "$gp/bin/gpfdist"; }
load_copy_text() {
    local start; start=$(now)
    printf '%s\n' "${files[@]}" | xargs -P "$1" -I{} sh -c \
        "tail -n +2 {} | \"$gp/bin/psql\" -X -q -h 127.0.0.1 -p $port -U postgres -d postgres \
         -c \"COPY big FROM STDIN DELIMITER '|'\""
    seconds_since "$start"
}
load_copy_binary() {
    local start; start=$(now)
    seq 0 $(($1 - 1)) | xargs -P "$1" -I{} sh -c \
        "\"$gp/bin/psql\" -X -q -h 127.0.0.1 -p $port -U postgres -d postgres \
         -c \"COPY big FROM STDIN (FORMAT binary)\" <$work/bin-$1-{}"
    seconds_since "$start"
}
load_gpfdist() {
    local start sessions=(); start=$(now)
    # N external tables, each over its own directory of files, loaded by N sessions at once (an
    # external table may name no more gpfdist URLs than there are segments, so one pattern each).
    for k in $(seq 0 $(($1 - 1))); do
        psql_ -c "CREATE READABLE EXTERNAL TEMP TABLE ext ($columns)
                  LOCATION ('gpfdist://127.0.0.1:$gpfdist_port/split-$1-$k/*.csv')
                  FORMAT 'TEXT' (HEADER DELIMITER '|'); INSERT INTO big SELECT * FROM ext" &
        sessions+=($!)
    done
    wait "${sessions[@]}"
    seconds_since "$start"
}

declare -A best
for round in $(seq "$repeats"); do
    for n in 1 2 4; do
        for path in import import_gpfdist copy_text copy_binary gpfdist; do
            reset
            s=$(load_"$path" "$n")
            rows=$(psql_ -c "SELECT count(*) FROM big")
            [ "$rows" = "$points" ] || { echo "$path -j $n loaded $rows rows, not $points" >&2; exit 1; }
            key=$path-$n
            if [ -z "${best[$key]:-}" ] || python3 -c "import sys; sys.exit(not $s < ${best[$key]})"; then
                best[$key]=$s
            fi
        done
    done
done

rate() { python3 -c "print(round($points / $1))"; }
ratio() { python3 -c "print(f'{$1 / $2:.2f}')"; }
results=()
row() { printf '| %s | %s | %s | %s |\n' "$@"; results+=("$(printf '{"measure": "%s", "value": "%s", "baseline": "%s", "ratio": "%s"}' "$@")"); }
echo "| measure | rows/s | baseline rows/s | ratio |"
echo "|---|---|---|---|"
for n in 1 2 4; do
    text=${best[copy_text-$n]}
    import=${best[import-$n]}
    row "import -j $n: COPY text via the coordinator (baseline: psql COPY text, $n sessions)" \
        "$(rate "$import")" "$(rate "$text")" "$(ratio "$text" "$import")"
    row "import --via gpfdist -j $n: segments pull (baseline: import -j $n)" \
        "$(rate "${best[import_gpfdist-$n]}")" "$(rate "$import")" "$(ratio "$import" "${best[import_gpfdist-$n]}")"
    row "psql: gpfdist, $n INSERT ... SELECT (baseline: psql COPY text, $n sessions)" \
        "$(rate "${best[gpfdist-$n]}")" "$(rate "$text")" "$(ratio "$text" "${best[gpfdist-$n]}")"
    row "psql: COPY binary via the coordinator, $n sessions (baseline: psql COPY text, $n sessions)" \
        "$(rate "${best[copy_binary-$n]}")" "$(rate "$text")" "$(ratio "$text" "${best[copy_binary-$n]}")"
done
{
    printf '{"points": %s, "dim": %s, "repeats": %s, "machine": "%s cores", "load": "%s", "results": [' \
        "$points" "$dim" "$repeats" "$(nproc)" "$(cut -d' ' -f1-3 /proc/loadavg)"
    (IFS=,; printf '%s' "${results[*]}")
    printf ']}\n'
} >"$out/greenplum.json"
echo
echo "load average at the end: $(cut -d' ' -f1-3 /proc/loadavg)"
echo "written: $out/greenplum.json"
