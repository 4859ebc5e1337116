#!/usr/bin/env bash
# The benchmark harness: every figure is a ratio against a baseline measured in the same run, on
# the same servers, so a shared and noisy machine still gives comparable numbers.
#
#   scripts/bench.sh [POINTS [DIM [SHAPE]]]      default: 100000 768 plain
#
# SHAPE: plain (one unnamed vector, integer ids) or rich (named + sparse + multi, mixed ids).
# Starts a genuine Qdrant (target/test-servers/qdrant, or $QDRANT_BIN; see
# scripts/install-test-deps.sh) where one is installed, else the in-repo server on Qdrant's engine
# (and says which), and a throwaway PostgreSQL 15 (fsync off for every run alike); generates the
# collection through the Qdrant API, then measures:
#   export vs the raw-scroll ceiling (same cursors, pages decoded then discarded), at 1, 2 and 4
#   cursors and at the default settings, interleaved, best of two;
#   import vs PostgreSQL's own server-side COPY FROM 'file' on the same files, same parallelism;
#   migrate (binary COPY) vs export + import, at 1, 2 and 4 connections;
#   migrate into the default layout (float arrays EXTERNAL) vs PostgreSQL's default storage;
#   the job as users live it, at the default settings: migrate, verify --full (no index on id),
#   index; verify's rows/s against migrate's, and the whole job against export + import;
#   peak RSS of export, import, migrate and verify --full at POINTS/10 and POINTS;
#   bytes per point on disk against the guide's format.
# Prints a markdown table and writes target/bench/results.json.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

points=${1:-100000}
dim=${2:-768}
shape=${3:-plain}
out=target/bench
mkdir -p "$out"
work=$(mktemp -d /tmp/qdrant2pg-bench.XXXXXX)
chmod 755 "$work"
pids=()
source scripts/lib.sh
trap cleanup EXIT

# BENCH_PROFILE=dev checks the harness quickly on a debug build; figures come from release.
build_qdrant2pg "${BENCH_PROFILE:-release}"

start_qdrant "$bin"
url=$qdrant_url
server=$qdrant_server

[ "$(id -u)" = 0 ] && chown -R postgres "$work"
start_postgres "$work/pg"

gen_flags=(--dim "$dim")
[ "$shape" = rich ] && gen_flags+=(--vector text --sparse keywords --multi colbert --ids mixed)
# No HNSW graph (m = 0): a genuine server would otherwise spend both cores on building one for
# many minutes, under every figure. Scrolls do not use it. Then wait until the server's
# optimizers have settled the collections (status green).
gen_flags+=(--hnsw-m 0)
"$q2p" --quiet generate --url "$url" --collection big --points "$points" "${gen_flags[@]}" >/dev/null
"$q2p" --quiet generate --url "$url" --collection small --points $((points / 10)) "${gen_flags[@]}" >/dev/null
if [ -n "${qdrant_rest:-}" ]; then
    for name in big small; do
        for _ in $(seq 1200); do
            status=$(curl -sf "$qdrant_rest/collections/$name" | python3 -c 'import json,sys; print(json.load(sys.stdin)["result"]["status"])')
            [ "$status" = green ] && break
            sleep 0.5
        done
    done
fi

# seconds of a command, from its --report-json
# (warnings, such as index's "plain PostgreSQL has no vector index", go to a log, not the table)
timed() {
    local json=$work/r.json
    "$@" --quiet --report-json "$json" >/dev/null 2>"$work/stderr" || { cat "$work/stderr" >&2; return 1; }
    python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["seconds"])' "$json"
}
rss_kb() { /usr/bin/time -f %M "$@" --quiet >/dev/null 2>"$work/rss" || true; tail -n1 "$work/rss"; }
rate() { python3 -c "print(round($1 / $2))"; }
ratio() { python3 -c "print(f'{$1 / $2:.2f}')"; }
results=()
row() { printf '| %s | %s | %s | %s |\n' "$@"; results+=("$(printf '{"measure": "%s", "value": "%s", "baseline": "%s", "ratio": "%s"}' "$@")"); }

echo "Qdrant: $server; PostgreSQL 15; $points points x $dim ($shape); load at start: $(cut -d' ' -f1-3 /proc/loadavg)"
echo
echo "| measure | qdrant2pg | baseline | ratio |"
echo "|---|---|---|---|"

# Export against the raw-scroll ceiling, at 1, 2 and 4 cursors and at the default settings:
# two rounds with the settings interleaved, the best time of each kept, and only the last
# round's files left on disk (a row measured after gigabytes of earlier exports measured up to
# 1.4x slower than the same settings measured first).
declare -A best_export best_ceiling
for round in 1 2; do
    for c in 1 2 4 default; do
        flags=()
        [ "$c" = default ] || flags=(--cursors "$c")
        rm -rf "$work/export-$c"
        ceiling=$(timed "$q2p" export --url "$url" --collection big --output "$work/scroll" "${flags[@]}" --scroll-only --restart)
        export_s=$(timed "$q2p" export --url "$url" --collection big --output "$work/export-$c" "${flags[@]}")
        best_ceiling[$c]=$(python3 -c "print(min($ceiling, ${best_ceiling[$c]:-$ceiling}))")
        best_export[$c]=$(python3 -c "print(min($export_s, ${best_export[$c]:-$export_s}))")
    done
done
for c in 1 2 4 default; do
    what="$c cursor(s)"
    [ "$c" = default ] && what="default settings"
    row "export, $what, points/s, best of 2 (baseline: scroll only)" "$(rate "$points" "${best_export[$c]}")" "$(rate "$points" "${best_ceiling[$c]}")" "$(ratio "${best_ceiling[$c]}" "${best_export[$c]}")"
done
files=$work/export-4/big

# Import against server-side COPY FROM 'file' of the same files, same parallelism.
for j in 1 2 4; do
    psql_ -c "DROP TABLE IF EXISTS big, $bookkeeping" >/dev/null
    import_s=$(timed "$q2p" import --dsn "$dsn" --data "$work/export-4" --collection big -j "$j")
    psql_ -c "TRUNCATE big" >/dev/null
    start=$(date +%s.%N)
    ls "$files"/*.csv | xargs -P "$j" -I{} psql -X -q -h 127.0.0.1 -p "$port" -U postgres -d postgres \
        -c "COPY big FROM '{}' WITH (DELIMITER '|', HEADER)"
    server_s=$(python3 -c "import time; print(time.time() - $start)")
    row "import, $j connection(s), rows/s (baseline: server-side COPY FROM file)" "$(rate "$points" "$import_s")" "$(rate "$points" "$server_s")" "$(ratio "$server_s" "$import_s")"
done

# Migrate against export + import, at 1, 2 and 4 connections.
for j in 1 2 4; do
    psql_ -c "DROP SCHEMA IF EXISTS m CASCADE; DROP SCHEMA IF EXISTS f CASCADE" >/dev/null
    migrate_s=$(timed "$q2p" migrate --url "$url" --dsn "$dsn" --schema m --collection big -j "$j" --cursors "$j")
    export_s=$(timed "$q2p" export --url "$url" --collection big --output "$work/e2" --cursors "$j" --restart)
    import_s=$(timed "$q2p" import --dsn "$dsn" --schema f --data "$work/e2" --collection big -j "$j")
    both=$(python3 -c "print($export_s + $import_s)")
    row "migrate, $j connection(s), rows/s (baseline: export + import)" "$(rate "$points" "$migrate_s")" "$(rate "$points" "$both")" "$(ratio "$both" "$migrate_s")"
done

# Storage of the vector column: the default layout (EXTERNAL) against PostgreSQL's default
# (EXTENDED, which tries to compress every vector), same migrate, interleaved, twice each.
external=0
extended=0
for round in 1 2; do
    for storage in external default; do
        psql_ -c "DROP SCHEMA IF EXISTS s CASCADE" >/dev/null
        s_=$(timed "$q2p" migrate --url "$url" --dsn "$dsn" --schema s --collection big --vector-storage "$storage")
        if [ "$storage" = external ]; then external=$(python3 -c "print($external + $s_)"); else extended=$(python3 -c "print($extended + $s_)"); fi
    done
done
row "migrate into the default layout (EXTERNAL vectors), rows/s (baseline: --vector-storage default, EXTENDED)" "$(rate $((points * 2)) "$external")" "$(rate $((points * 2)) "$extended")" "$(ratio "$extended" "$external")"

# The job as users live it, default settings: migrate, verify --full, index. verify reads the
# table before any index exists (it needs none); the baseline is the unverified file pipeline.
psql_ -c "DROP SCHEMA IF EXISTS job CASCADE; DROP SCHEMA IF EXISTS f CASCADE" >/dev/null
migrate_s=$(timed "$q2p" migrate --url "$url" --dsn "$dsn" --schema job --collection big)
verify_s=$(timed "$q2p" verify --full --url "$url" --dsn "$dsn" --schema job --collection big)
index_s=$(timed "$q2p" index --url "$url" --dsn "$dsn" --schema job --collection big)
export_s=$(timed "$q2p" export --url "$url" --collection big --output "$work/e3")
import_s=$(timed "$q2p" import --dsn "$dsn" --schema f --data "$work/e3" --collection big)
job=$(python3 -c "print(round($migrate_s + $verify_s + $index_s, 2))")
both=$(python3 -c "print(round($export_s + $import_s, 2))")
row "verify --full, rows/s (baseline: migrate, same table, no index on id)" "$(rate "$points" "$verify_s")" "$(rate "$points" "$migrate_s")" "$(ratio "$migrate_s" "$verify_s")"
row "migrate + verify --full + index, s (baseline: export + import, unverified)" "$job" "$both" "$(ratio "$both" "$job")"

# Peak RSS of each command at two collection sizes.
psql_ -c "DROP SCHEMA IF EXISTS r CASCADE; DROP SCHEMA IF EXISTS ri CASCADE" >/dev/null
for name in small big; do
    e=$(rss_kb "$q2p" export --url "$url" --collection "$name" --output "$work/rss-$name" --restart)
    i=$(rss_kb "$q2p" import --dsn "$dsn" --schema ri --data "$work/rss-$name" --collection "$name" -j 2)
    m=$(rss_kb "$q2p" migrate --url "$url" --dsn "$dsn" --schema r --collection "$name" --if-exists replace)
    v=$(rss_kb "$q2p" verify --full --url "$url" --dsn "$dsn" --schema r --collection "$name")
    eval "rss_export_$name=$e; rss_import_$name=$i; rss_migrate_$name=$m; rss_verify_$name=$v"
done
for cmd in export import migrate verify; do
    big=$(eval echo "\$rss_${cmd}_big")
    small=$(eval echo "\$rss_${cmd}_small")
    row "peak RSS $cmd, KiB (baseline: 1/10 the points)" "$big" "$small" "$(ratio "$big" "$small")"
done

# Bytes per point against the guide's format: the same rows written as export.py writes them
# (each f32 widened to a Python float, str(), ", "-joined).
ours=$(cat "$files"/*.csv | wc -c)
guide=$(python3 - "$files" <<'PY'
import glob, struct, sys
total = 0
for path in glob.glob(sys.argv[1] + "/*.csv"):
    with open(path) as f:
        header = f.readline()
        total += len(header)
        columns = header.count("|") + 1
        for line in f:
            # Only the payload, the last field, can hold an (escaped) delimiter.
            fields = line.rstrip("\n").split("|", columns - 1)
            out = [fields[0]]
            for field in fields[1:-1]:
                if field.startswith("{") and not field.startswith("{{"):
                    vals = [struct.unpack("f", struct.pack("f", float(v)))[0] for v in field.strip("{}").split(",") if v]
                    out.append("{" + ", ".join(str(v) for v in vals) + "}")
                else:
                    out.append(field)
            out.append(fields[-1])
            total += len("|".join(out)) + 1
print(total)
PY
)
row "bytes per point on disk (baseline: the guide's format)" "$((ours / points))" "$((guide / points))" "$(ratio "$guide" "$ours")"

{
    printf '{"points": %s, "dim": %s, "shape": "%s", "machine": "%s cores", "qdrant": "%s", "results": [' "$points" "$dim" "$shape" "$(nproc)" "$server"
    (IFS=,; printf '%s' "${results[*]}")
    printf ']}\n'
} >"$out/results.json"
echo
echo "load at the end: $(cut -d' ' -f1-3 /proc/loadavg)"
echo "written: $out/results.json"
