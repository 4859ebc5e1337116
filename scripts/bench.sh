#!/usr/bin/env bash
# The benchmark harness: every figure is a ratio against a baseline measured in the same run, on
# the same servers, so a shared and noisy machine still gives comparable numbers.
#
#   scripts/bench.sh [POINTS [DIM [SHAPE]]]      default: 100000 768 plain
#
# SHAPE: plain (one unnamed vector, integer ids) or rich (named + sparse + multi, mixed ids), or
# scale: plain collections of POINTS/10 and POINTS, and only migrate and verify --full on each
# (the scale row), with what the server did meanwhile (checkpoints, WAL, the page cache).
# Environment:
#   BENCH_FSYNC=on|off     PostgreSQL's fsync (default on, as every real server; off hides the
#                          cost of each commit's WAL flush). Printed beside every table.
#   BENCH_BASELINE=BIN     another qdrant2pg build (say, the last release): its export, import,
#                          migrate and verify --full run interleaved with this build's, and
#                          the table compares our own CPU per 100k points.
#   BENCH_SECTIONS=a,b     only these parts (export, guide, import, migrate, ceiling,
#                          storage, job, rss, bytes; the baseline's and the CPU table always).
#   BENCH_GUIDE=0          skips the guide's export.py (run once: it takes about a minute per
#                          100k x 768; its Python libraries are installed into
#                          target/bench/guide-venv the first time, see scripts/lib.sh).
# Starts a genuine Qdrant (target/test-servers/qdrant, or $QDRANT_BIN; see
# scripts/install-test-deps.sh) where one is installed, else the in-repo server on Qdrant's engine
# (and says which), and a throwaway PostgreSQL 15; generates the collection through the Qdrant
# API, then measures:
#   export vs the raw-scroll ceiling (same cursors, pages decoded then discarded), at 1, 2 and 4
#   cursors and at the default settings, interleaved, best of two; export vs the guide's
#   export.py;
#   import vs PostgreSQL's own server-side COPY FROM 'file' on the same files, same parallelism;
#   migrate (binary COPY) vs export + import, at 1, 2 and 4 connections;
#   migrate at the default settings vs server-side COPY FROM 'file' (FORMAT binary) of the same
#   rows on as many backends as migrate has connections, interleaved;
#   migrate's default commits (no wait for each, one durable commit at the end) vs
#   --durable-each-commit, interleaved;
#   migrate into the default layout (float arrays EXTERNAL) vs PostgreSQL's default storage;
#   the job as users live it, at the default settings: migrate, verify --full (no index on id),
#   index; verify's rows/s against migrate's, and the whole job against export + import;
#   peak RSS of export, import, migrate and verify --full at POINTS/10 and POINTS;
#   bytes per point on disk against the guide's format;
#   CPU-seconds per 100k points of every stage, split into the command's own process, Qdrant and
#   PostgreSQL (every backend and background process), counted from /proc (see scripts/lib.sh).
# A CHECKPOINT precedes every measured command, so no command pays for the one before's dirty
# pages. Prints markdown tables and writes target/bench/results.json.
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
fsync=${BENCH_FSYNC:-on}
start_postgres "$work/pg" "fsync=$fsync"

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

# measure STAGE CMD...: runs CMD (stdout discarded, stderr to a log shown on failure) after a
# CHECKPOINT, prints its wall seconds, and appends "STAGE wall client qdrant postgres points"
# (points: $STAGE_POINTS where the stage moved another count than POINTS; seconds;
# client = CMD's own CPU, user + system, its threads and children included, from getrusage
# through /usr/bin/time; qdrant and postgres from /proc, see cpu_of) to $work/cpu.tsv.
cpu_tsv=$work/cpu.tsv
# want SECTION: whether BENCH_SECTIONS (comma-separated; default all) names it.
want() { [ -z "${BENCH_SECTIONS:-}" ] || [[ ",$BENCH_SECTIONS," == *",$1,"* ]]; }
measure() {
    local stage=$1 q0 p0 q1 p1 wall user sys
    shift
    psql_ -c CHECKPOINT >/dev/null
    q0=$(cpu_of "$qdrant_pid")
    p0=$(cpu_of_pg)
    /usr/bin/time -f '%e %U %S' -o "$work/time" "$@" >/dev/null 2>"$work/stderr" || { cat "$work/stderr" >&2; return 1; }
    q1=$(cpu_of "$qdrant_pid")
    p1=$(cpu_of_pg)
    read -r wall user sys < <(tail -n1 "$work/time")
    python3 -c "import sys; print(sys.argv[1], $wall, round($user + $sys, 2), ($q1 - $q0) / $clk_tck, ($p1 - $p0) / $clk_tck, ${STAGE_POINTS:-$points}, sep='\t')" "$stage" >>"$cpu_tsv"
    echo "$wall"
}
# timed [STAGE=…] qdrant2pg …: a measured qdrant2pg command, quiet (warnings, such as index's
# "plain PostgreSQL has no vector index", go to the log, not the table).
timed() { measure "${STAGE:-unlabelled}" "$@" --quiet; }
rss_kb() { /usr/bin/time -f %M "$@" --quiet >/dev/null 2>"$work/rss" || true; tail -n1 "$work/rss"; }
rate() { python3 -c "print(round($1 / $2))"; }
ratio() { python3 -c "print(f'{$1 / $2:.2f}')"; }
results=()
row() { printf '| %s | %s | %s | %s |\n' "$@"; results+=("$(printf '{"measure": "%s", "value": "%s", "baseline": "%s", "ratio": "%s"}' "$@")"); }
# STAGE's measurements, each per 100k of its own points, medians: "runs wall client qdrant
# postgres" (seconds).
stage_per_100k() {
    python3 - "$cpu_tsv" "$1" <<'PY'
import statistics, sys
rows = [l.rstrip("\n").split("\t") for l in open(sys.argv[1])]
got = [[float(v) * 100000 / int(r[5]) for v in r[1:5]] for r in rows if r[0] == sys.argv[2]]
print(len(got), *(f"{statistics.median(c[i] for c in got):.2f}" for i in range(4)))
PY
}
# median CPU seconds per 100k points of STAGE's measurements: client qdrant postgres all
cpu_per_100k() {
    local runs wall client qdrant postgres
    read -r runs wall client qdrant postgres <<<"$(stage_per_100k "$1")"
    echo "$client $qdrant $postgres $(python3 -c "print(f'{$client + $qdrant + $postgres:.2f}')")"
}

echo "Qdrant: $server; PostgreSQL 15 (fsync=$fsync); $points points x $dim ($shape); $(nproc) cores; load at start: $(cut -d' ' -f1-3 /proc/loadavg)"
echo
echo "| measure | qdrant2pg | baseline | ratio |"
echo "|---|---|---|---|"

if [ "$shape" = scale ]; then
    source scripts/bench-scale.sh
else

if want export; then
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
        ceiling=$(STAGE="scroll only, cursors $c" timed "$q2p" export --url "$url" --collection big --output "$work/scroll" "${flags[@]}" --scroll-only --restart)
        export_s=$(STAGE="export, cursors $c" timed "$q2p" export --url "$url" --collection big --output "$work/export-$c" "${flags[@]}")
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
fi

if want guide; then
# Export against the guide's export.py, run once as the guide says (its YAML, its libraries,
# qdrant-client over REST, scroll pages of 1000), into a directory of its own.
if [ "${BENCH_GUIDE:-1}" != 0 ] && [ -n "${qdrant_rest:-}" ] && want export; then
    guide_venv
    mkdir -p "$work/guide/output"
    guide_script export.py >"$work/guide/export.py"
    rest_port=${qdrant_rest##*:}
    printf 'qdrant:\n  host: 127.0.0.1\n  port: %s\nexport:\n  collections: [big]\n  max_line_in_file: 40000\n  output_path: ./output\n' "$rest_port" >"$work/guide/qdrant2csv.yaml"
    guide_s=$(cd "$work/guide" && measure "the guide's export.py" "$OLDPWD/$guide_python" export.py)
    rm -rf "$work/guide/output"
    row "export, default settings, points/s, best of 2 (baseline: the guide's export.py, once)" "$(rate "$points" "${best_export[default]}")" "$(rate "$points" "$guide_s")" "$(ratio "$guide_s" "${best_export[default]}")"
fi
fi

if want import; then
# Import against server-side COPY FROM 'file' of the same files, same parallelism.
for j in 1 2 4; do
    psql_ -c "DROP TABLE IF EXISTS big, $bookkeeping" >/dev/null
    import_s=$(STAGE="import, connections $j" timed "$q2p" import --dsn "$dsn" --data "$work/export-4" --collection big -j "$j")
    psql_ -c "TRUNCATE big" >/dev/null
    server_s=$(measure "server-side COPY text, backends $j" bash -c "ls '$files'/*.csv | xargs -P $j -I{} psql -X -q -h 127.0.0.1 -p $port -U postgres -d postgres -c \"COPY big FROM '{}' WITH (DELIMITER '|', HEADER)\"")
    row "import, $j connection(s), rows/s (baseline: server-side COPY FROM file)" "$(rate "$points" "$import_s")" "$(rate "$points" "$server_s")" "$(ratio "$server_s" "$import_s")"
done
fi

if want migrate; then
# Migrate against export + import, at 1, 2 and 4 connections (and as many cursors).
for j in 1 2 4; do
    psql_ -c "DROP SCHEMA IF EXISTS m CASCADE; DROP SCHEMA IF EXISTS f CASCADE" >/dev/null
    migrate_s=$(STAGE="migrate, connections $j" timed "$q2p" migrate --url "$url" --dsn "$dsn" --schema m --collection big -j "$j" --cursors "$j")
    export_s=$(timed "$q2p" export --url "$url" --collection big --output "$work/e2" --cursors "$j" --restart)
    import_s=$(timed "$q2p" import --dsn "$dsn" --schema f --data "$work/e2" --collection big -j "$j")
    both=$(python3 -c "print($export_s + $import_s)")
    row "migrate, $j connection(s), rows/s (baseline: export + import)" "$(rate "$points" "$migrate_s")" "$(rate "$points" "$both")" "$(ratio "$both" "$migrate_s")"
done
fi

if want ceiling; then
# Migrate at the default settings against PostgreSQL's own ingest of the same rows:
# server-side COPY FROM 'file' (FORMAT binary), the table's rows cut into as many files as
# migrate has connections (2) and loaded by as many backends at once, into a table like
# migrate's (same storage); three rounds interleaved, medians. Then migrate's default commits
# against --durable-each-commit, interleaved the same way.
if ! want migrate; then
    psql_ -c "DROP SCHEMA IF EXISTS m CASCADE" >/dev/null
    "$q2p" --quiet migrate --url "$url" --dsn "$dsn" --schema m --collection big >/dev/null
fi
psql_ -c "DROP SCHEMA IF EXISTS c CASCADE; CREATE SCHEMA c; CREATE TABLE c.big (LIKE m.big INCLUDING ALL)" >/dev/null
for k in 0 1; do
    psql_ -c "COPY (SELECT * FROM m.big WHERE id % 2 = $k) TO '$work/binary-$k' (FORMAT binary)" >/dev/null
done
migrate_rounds=()
ceiling_rounds=()
each_rounds=()
for round in 1 2 3; do
    psql_ -c "DROP SCHEMA IF EXISTS d CASCADE" >/dev/null
    migrate_rounds+=("$(STAGE="migrate, default settings" timed "$q2p" migrate --url "$url" --dsn "$dsn" --schema d --collection big)")
    psql_ -c "TRUNCATE c.big" >/dev/null
    ceiling_rounds+=("$(measure "server-side COPY binary, backends 2" bash -c "printf '%s\n' '$work/binary-0' '$work/binary-1' | xargs -P 2 -I{} psql -X -q -h 127.0.0.1 -p $port -U postgres -d postgres -c \"COPY c.big FROM '{}' (FORMAT binary)\"")")
    psql_ -c "DROP SCHEMA IF EXISTS e CASCADE" >/dev/null
    each_rounds+=("$(STAGE="migrate, --durable-each-commit" timed "$q2p" migrate --url "$url" --dsn "$dsn" --schema e --collection big --durable-each-commit)")
done
median() { python3 -c "import statistics, sys; print(statistics.median(map(float, sys.argv[1:])))" "$@"; }
migrate_med=$(median "${migrate_rounds[@]}")
ceiling_med=$(median "${ceiling_rounds[@]}")
each_med=$(median "${each_rounds[@]}")
row "migrate, default settings, rows/s, median of 3 (baseline: server-side COPY binary from files, 2 backends)" "$(rate "$points" "$migrate_med")" "$(rate "$points" "$ceiling_med")" "$(ratio "$ceiling_med" "$migrate_med")"
row "migrate, default commits, rows/s, median of 3 (baseline: --durable-each-commit)" "$(rate "$points" "$migrate_med")" "$(rate "$points" "$each_med")" "$(ratio "$each_med" "$migrate_med")"
fi

if want storage; then
# Storage of the vector column: the default layout (EXTERNAL) against PostgreSQL's default
# (EXTENDED, which tries to compress every vector), same migrate, interleaved, twice each.
external=0
extended=0
for round in 1 2; do
    for storage in external default; do
        psql_ -c "DROP SCHEMA IF EXISTS s CASCADE" >/dev/null
        s_=$(STAGE="migrate, --vector-storage $storage" timed "$q2p" migrate --url "$url" --dsn "$dsn" --schema s --collection big --vector-storage "$storage")
        if [ "$storage" = external ]; then external=$(python3 -c "print($external + $s_)"); else extended=$(python3 -c "print($extended + $s_)"); fi
    done
done
row "migrate into the default layout (EXTERNAL vectors), rows/s (baseline: --vector-storage default, EXTENDED)" "$(rate $((points * 2)) "$external")" "$(rate $((points * 2)) "$extended")" "$(ratio "$extended" "$external")"
fi

if want job; then
# The job as users live it, default settings: migrate, verify --full, index. verify reads the
# table before any index exists (it needs none); the baseline is the unverified file pipeline.
psql_ -c "DROP SCHEMA IF EXISTS job CASCADE; DROP SCHEMA IF EXISTS f CASCADE" >/dev/null
migrate_s=$(STAGE="migrate, default settings" timed "$q2p" migrate --url "$url" --dsn "$dsn" --schema job --collection big)
verify_s=$(STAGE="verify --full, default settings" timed "$q2p" verify --full --url "$url" --dsn "$dsn" --schema job --collection big)
index_s=$(STAGE="index, default settings" timed "$q2p" index --url "$url" --dsn "$dsn" --schema job --collection big)
export_s=$(STAGE="export, cursors default" timed "$q2p" export --url "$url" --collection big --output "$work/e3")
import_s=$(STAGE="import, default settings" timed "$q2p" import --dsn "$dsn" --schema f --data "$work/e3" --collection big)
job=$(python3 -c "print(round($migrate_s + $verify_s + $index_s, 2))")
both=$(python3 -c "print(round($export_s + $import_s, 2))")
row "verify --full, rows/s (baseline: migrate, same table, no index on id)" "$(rate "$points" "$verify_s")" "$(rate "$points" "$migrate_s")" "$(ratio "$migrate_s" "$verify_s")"
row "migrate + verify --full + index, s (baseline: export + import, unverified)" "$job" "$both" "$(ratio "$both" "$job")"
fi

# Another build's own CPU per stage, interleaved with this build's, two rounds each.
if [ -n "${BENCH_BASELINE:-}" ]; then
    base=$(realpath "$BENCH_BASELINE")
    for round in 1 2; do
        for build in this baseline; do
            b=$q2p
            [ "$build" = baseline ] && b=$base
            rm -rf "$work/ab"
            psql_ -c "DROP SCHEMA IF EXISTS ab CASCADE; DROP SCHEMA IF EXISTS abi CASCADE" >/dev/null
            STAGE="$build: export" timed "$b" export --url "$url" --collection big --output "$work/ab" >/dev/null
            STAGE="$build: import" timed "$b" import --dsn "$dsn" --schema abi --data "$work/ab" --collection big >/dev/null
            STAGE="$build: migrate" timed "$b" migrate --url "$url" --dsn "$dsn" --schema ab --collection big >/dev/null
            STAGE="$build: verify --full" timed "$b" verify --full --url "$url" --dsn "$dsn" --schema ab --collection big >/dev/null
        done
    done
    rm -rf "$work/ab"
    for stage in export import migrate "verify --full"; do
        read -r ours _ <<<"$(cpu_per_100k "this: $stage")"
        read -r theirs _ <<<"$(cpu_per_100k "baseline: $stage")"
        row "$stage, our CPU-s per 100k points, median of 2 (baseline: $(basename "$base"))" "$ours" "$theirs" "$(ratio "$theirs" "$ours")"
    done
fi

if want rss; then
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
fi

if want bytes; then
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
fi


fi

# CPU-seconds per 100k points of every measured stage: medians over its measurements.
echo
echo "CPU-seconds per 100k points (fsync=$fsync; client: the measured command's own process)"
echo
echo "| stage | runs | wall s per 100k | client | Qdrant | PostgreSQL | all |"
echo "|---|---|---|---|---|---|---|"
cut -f1 "$cpu_tsv" | awk '!seen[$0]++' | while read -r stage; do
    [ "$stage" = unlabelled ] && continue
    read -r runs wall client qdrant postgres <<<"$(stage_per_100k "$stage")"
    printf '| %s | %s | %s | %s | %s | %s | %s |\n' "$stage" "$runs" "$wall" "$client" "$qdrant" "$postgres" \
        "$(python3 -c "print(f'{$client + $qdrant + $postgres:.2f}')")"
done
cp "$cpu_tsv" "$out/cpu.tsv"

{
    printf '{"points": %s, "dim": %s, "shape": "%s", "machine": "%s cores", "qdrant": "%s", "fsync": "%s", "results": [' "$points" "$dim" "$shape" "$(nproc)" "$server" "$fsync"
    (IFS=,; printf '%s' "${results[*]}")
    printf ']}\n'
} >"$out/results.json"
echo
echo "load at the end: $(cut -d' ' -f1-3 /proc/loadavg)"
echo "written: $out/results.json and $out/cpu.tsv"
