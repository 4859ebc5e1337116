#!/usr/bin/env bash
# Shared runs: rows/s of one migration divided among P processes of C connections each, against
# one process with the same total connections, on one collection, measured in the same run.
#
#   scripts/bench-shared.sh [POINTS [DIM [ROUNDS]]]      default: 100000 768 3
#
# Starts the genuine Qdrant 1.18.3 (target/test-servers/qdrant, from scripts/install-test-deps.sh;
# QDRANT_BIN overrides it) and a throwaway PostgreSQL 15 (fsync off for every run alike),
# generates the collection through the Qdrant API, then, ROUNDS times and interleaved so that
# load from elsewhere falls on every shape alike:
#   1 process  x 4 connections   (the baseline)
#   2 processes x 2 connections
#   4 processes x 1 connection
# (cursors = connections), each into a fresh schema, timed from the first start to the last exit.
# Prints a markdown table (median rows/s per shape, its ratio to the baseline, the range of
# ratios over the rounds) and writes target/bench/shared.json. On a machine with fewer cores
# than connections this measures what sharing costs, not a speedup. Wall time on a shared machine
# is as noisy as its neighbours; so each run also counts the CPU seconds it cost — every
# qdrant2pg process, the PostgreSQL backends and the Qdrant server — which other load inflates
# far less, and the table gives that ratio too (baseline CPU / shape CPU: at or above 1.00,
# sharing cost no extra work).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

points=${1:-100000}
dim=${2:-768}
rounds=${3:-3}
shapes=("1 4" "2 2" "4 1")
out=target/bench
mkdir -p "$out"
work=$(mktemp -d /tmp/qdrant2pg-bench-shared.XXXXXX)
chmod 755 "$work"
pids=()
source scripts/lib.sh
trap cleanup EXIT

# BENCH_PROFILE=dev checks the harness quickly on a debug build; figures come from release.
build_qdrant2pg "${BENCH_PROFILE:-release}"

qdrant=${QDRANT_BIN:-$PWD/target/test-servers/qdrant}
[ -x "$qdrant" ] || { echo "no genuine Qdrant at $qdrant: run scripts/install-test-deps.sh" >&2; exit 1; }
start_genuine_qdrant "$qdrant" "$work/qdrant"
url=$qdrant_url

[ "$(id -u)" = 0 ] && chown -R postgres "$work"
start_postgres "$work/pg" max_connections=100

"$q2p" --quiet generate --url "$url" --collection big --points "$points" --dim "$dim" >/dev/null

postmaster=$(head -n1 "$pg_data/postmaster.pid")
ticks=$(getconf CLK_TCK)
# CPU seconds a server process and its reaped children (PostgreSQL's backends) have used so far.
cpu_of() { awk -v t="$ticks" '{ print ($14 + $15 + $16 + $17) / t }' "/proc/$1/stat"; }

# One shared run of P processes x C connections into schema S; prints its wall seconds and the
# CPU seconds it cost (clients, PostgreSQL, Qdrant).
run_shape() {
    local procs=$1 conns=$2 schema=$3 started ended
    psql_ -c "DROP SCHEMA IF EXISTS $schema CASCADE" >/dev/null
    local children=() cpu_before
    cpu_before=$(python3 -c "print($(cpu_of "$postmaster") + $(cpu_of "$qdrant_pid"))")
    rm -f "$work/$schema".*.cpu
    started=$(date +%s.%N)
    for i in $(seq "$procs"); do
        /usr/bin/time -f '%U %S' -o "$work/$schema.$i.cpu" "$q2p" --quiet migrate --url "$url" \
            --dsn "$dsn" --schema "$schema" --collection big -j "$conns" --cursors "$conns" \
            >"$work/$schema.$i.log" 2>&1 &
        children+=($!)
    done
    local failed=0
    for child in "${children[@]}"; do wait "$child" || failed=1; done
    ended=$(date +%s.%N)
    [ "$failed" = 0 ] || { cat "$work/$schema".*.log >&2; exit 1; }
    local rows clients servers
    rows=$(psql_ -c "SELECT count(*) FROM $schema.big")
    [ "$rows" = "$points" ] || { echo "$schema: $rows rows, expected $points" >&2; exit 1; }
    clients=$(cat "$work/$schema".*.cpu | awk '{ s += $1 + $2 } END { print s }')
    servers=$(python3 -c "print($(cpu_of "$postmaster") + $(cpu_of "$qdrant_pid") - $cpu_before)")
    python3 -c "print($ended - $started, $clients + $servers)"
}

declare -A seconds cpu
loads=()
for round in $(seq "$rounds"); do
    for shape in "${shapes[@]}"; do
        read -r procs conns <<<"$shape"
        read -r s c <<<"$(run_shape "$procs" "$conns" "s${procs}x${conns}")"
        seconds["$shape"]+="$s "
        cpu["$shape"]+="$c "
        load=$(cut -d' ' -f1 /proc/loadavg)
        loads+=("$load")
        echo "round $round: $procs x $conns: $s s wall, $c s CPU (load $load)" >&2
    done
done

python3 - "$points" "$dim" "$rounds" "$out/shared.json" "$(nproc)" "${loads[*]}" \
    "1 4=${seconds["1 4"]}=${cpu["1 4"]}" "2 2=${seconds["2 2"]}=${cpu["2 2"]}" \
    "4 1=${seconds["4 1"]}=${cpu["4 1"]}" <<'PY'
import json, statistics, sys
points, dim, rounds, path, cores = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), sys.argv[4], sys.argv[5]
loads = [float(l) for l in sys.argv[6].split()]
runs = {}
for arg in sys.argv[7:]:
    shape, times, cpus = arg.split("=")
    runs[shape] = ([float(t) for t in times.split()], [float(c) for c in cpus.split()])
base, base_cpu = runs["1 4"]
print(f"{rounds} rounds, 1-minute load {min(loads):.1f}-{max(loads):.1f} during the runs")
print()
print("| processes x connections | rows/s (median) | 1 x 4, rows/s | rows/s ratio (median, range) "
      "| CPU s per run (median) | CPU ratio (median, range) |")
print("|---|---|---|---|---|---|")
results = []
for shape, (times, cpus) in runs.items():
    procs, conns = shape.split()
    # Each round's ratios are taken against the baseline of the same round.
    ratios = [b / t for b, t in zip(base, times)]
    cpu_ratios = [b / c for b, c in zip(base_cpu, cpus)]
    row = {"processes": int(procs), "connections": int(conns),
           "rows_per_second": round(points / statistics.median(times)),
           "baseline_rows_per_second": round(points / statistics.median(base)),
           "ratio": round(statistics.median(ratios), 2), "ratio_min": round(min(ratios), 2),
           "ratio_max": round(max(ratios), 2), "cpu_seconds": round(statistics.median(cpus), 1),
           "cpu_ratio": round(statistics.median(cpu_ratios), 2),
           "cpu_ratio_min": round(min(cpu_ratios), 2), "cpu_ratio_max": round(max(cpu_ratios), 2),
           "seconds": times, "cpu": cpus}
    results.append(row)
    print(f"| {procs} x {conns} | {row['rows_per_second']} | {row['baseline_rows_per_second']} | "
          f"{row['ratio']:.2f} ({row['ratio_min']:.2f}-{row['ratio_max']:.2f}) | "
          f"{row['cpu_seconds']} | {row['cpu_ratio']:.2f} ({row['cpu_ratio_min']:.2f}-{row['cpu_ratio_max']:.2f}) |")
json.dump({"points": points, "dim": dim, "rounds": rounds, "machine": f"{cores} cores",
           "load": [min(loads), max(loads)], "source": "genuine Qdrant 1.18.3",
           "results": results}, open(path, "w"), indent=1)
print(f"\nwritten: {path}")
PY
