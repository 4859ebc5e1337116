#!/usr/bin/env bash
# What a `sync` pass costs, against a genuine Qdrant (release build):
#
#   scripts/bench-sync.sh [POINTS [DIM [ROUNDS]]]      default: 100000 768 2
#
# One collection (`generate --hnsw-m 0`) migrated into PostgreSQL 18 + pgvector (as the cutover
# has it) with its HNSW index built by `index`. Then, ROUNDS times, for each share of the points
# changed between passes — 0 %, 0.1 %, 1 % and 10 % (of those: 80 % vectors overwritten, 10 %
# new points, 10 % deleted, through Qdrant's REST API) — one `sync` pass, then `verify --full` of
# the synced table (the baseline: a pass is verify's read plus the repair). Once per round, the
# other way to catch up: `migrate --if-exists replace` + `index` of the same table. Prints
# medians and ratios measured in the same run, seconds and CPU-seconds per 100k points counted
# over every process (qdrant2pg, Qdrant, PostgreSQL's backends), and the load average.
# PostgreSQL runs with fsync on (its default), as real servers do.
# Environment, for other shapes of the same measurement:
#   SYNC_DIALECT=pgvector|postgres   the table's dialect (postgres: real[] columns, no vector
#                                    index to maintain; `index` then builds the id and payload
#                                    indexes only)
#   SYNC_SHARES="0 0.001 …"          the shares changed before each pass
#   SYNC_REMIGRATE=0                 skips the re-migrate + index baseline (its column reads -)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

points=${1:-100000}
dim=${2:-768}
rounds=${3:-2}
work=$(mktemp -d /tmp/qdrant2pg-bench-sync.XXXXXX)
chmod 755 "$work"
pids=()
source scripts/lib.sh
trap cleanup EXIT

build_qdrant2pg "${BENCH_PROFILE:-release}"
genuine=${QDRANT_BIN:-$PWD/target/test-servers/qdrant}
[ -x "$genuine" ] || { echo "no genuine Qdrant at $genuine (scripts/install-test-deps.sh)" >&2; exit 1; }
start_genuine_qdrant "$genuine" "$work/qdrant"
[ "$(id -u)" = 0 ] && chown -R postgres "$work"
PG_BIN=$PWD/target/test-servers/pg18/bin start_postgres "$work/pg" fsync=on
psql_ -c "CREATE EXTENSION IF NOT EXISTS vector" >/dev/null

"$q2p" --quiet generate --url "$qdrant_url" --collection big --points "$points" --dim "$dim" \
    --hnsw-m 0 >/dev/null
for _ in $(seq 1200); do
    status=$(curl -sf "$qdrant_rest/collections/big" | python3 -c 'import json,sys; print(json.load(sys.stdin)["result"]["status"])')
    [ "$status" = green ] && break
    sleep 0.5
done

dialect=${SYNC_DIALECT:-pgvector}
common=(--url "$qdrant_url" --rest-url "$qdrant_rest" --dsn "$dsn" --collection big --quiet)
"$q2p" migrate "${common[@]}" --dialect "$dialect" >/dev/null
"$q2p" index "${common[@]}" >/dev/null

# CPU-seconds of every process but ours so far: Qdrant's, and PostgreSQL's (the postmaster and
# its backends, living and exited; scripts/lib.sh).
server_cpu() { python3 -c "print(($(cpu_of "$qdrant_pid") + $(cpu_of_pg)) / $clk_tck)"; }
# run NAME CMD...: the command's wall seconds and the CPU-seconds of every process it cost,
# appended to $work/NAME.
run() {
    local name=$1 before after
    shift
    before=$(server_cpu)
    /usr/bin/time -f '%e %U %S' -o "$work/time" "$@" >"$work/out" 2>"$work/err" || {
        local code=$?
        # sync exits 1 when a point changed again during its pass; nothing writes here meanwhile.
        [ "$name" != "${name#sync}" ] && [ $code = 1 ] || { cat "$work/err" >&2; exit 1; }
    }
    after=$(server_cpu)
    read -r wall user sys <"$work/time"
    python3 -c "print($wall, $user + $sys + $after - $before)" >>"$work/$name"
}
# change SHARE ROUND: overwrites, adds and deletes SHARE of the points through REST.
change() {
    python3 - "$qdrant_rest" "$points" "$dim" "$1" "$2" <<'EOF'
import json, random, sys, urllib.request
rest, points, dim, share, round_ = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4]), int(sys.argv[5])
n = int(points * share)
rng = random.Random(round_ * 1000 + n)
def call(method, path, body):
    req = urllib.request.Request(rest + path, data=json.dumps(body).encode(), method=method,
                                 headers={"content-type": "application/json"})
    urllib.request.urlopen(req).read()
ids = rng.sample(range(points), n)
overwrite, delete = ids[: n * 8 // 10], ids[n * 8 // 10 : n * 9 // 10]
new = [points * 10 + round_ * points + i for i in range(n - len(overwrite) - len(delete))]
upserts = [{"id": i, "vector": [rng.gauss(0, 0.05) for _ in range(dim)], "payload": {"changed": round_}}
           for i in overwrite + new]
for k in range(0, len(upserts), 500):
    call("PUT", "/collections/big/points?wait=true", {"points": upserts[k:k + 500]})
if delete:
    call("POST", "/collections/big/points/delete?wait=true", {"points": delete})
EOF
}

read -r -a shares <<<"${SYNC_SHARES:-0 0.001 0.01 0.1}"
for round in $(seq "$rounds"); do
    for share in "${shares[@]}"; do
        change "$share" "$round"
        run "sync_$share" "$q2p" sync "${common[@]}" --dialect "$dialect" --report-json "$work/sync.json"
        python3 -c 'import json,sys; print(sum(p["repair_seconds"] for p in json.load(open(sys.argv[1]))["passes"]))' \
            "$work/sync.json" >>"$work/repair_$share"
        run "verify_$share" "$q2p" verify "${common[@]}" --full
    done
    [ "${SYNC_REMIGRATE:-1}" = 0 ] || run remigrate sh -c "'$q2p' migrate $(printf '%q ' "${common[@]}") --dialect $dialect \
        --if-exists replace --run round$round >/dev/null && '$q2p' index $(printf '%q ' "${common[@]}") >/dev/null"
    echo "round $round done ($(cut -d' ' -f1-3 /proc/loadavg))" >&2
done

median() { python3 -c "import statistics,sys; print(statistics.median(float(l.split()[$1]) for l in open(sys.argv[1])))" "$2"; }
per100k() { python3 -c "print(f'{$1 * 100000 / $points:.2f}')"; }
ratio() { python3 -c "print(f'{$1 / $2:.2f}')"; }
echo "genuine Qdrant $(curl -sf "$qdrant_rest/" | python3 -c 'import json,sys; print(json.load(sys.stdin)["version"])'); PostgreSQL 18.1 + pgvector (fsync on), tables in dialect $dialect; $points points x $dim; $rounds round(s), medians; load at the end: $(cut -d' ' -f1-3 /proc/loadavg)"
echo
echo "| changed | sync pass, s | of it repairing, s | verify --full, s | pass ÷ verify | CPU-s/100k pass | CPU-s/100k verify | re-migrate + index ÷ pass |"
echo "|---|---|---|---|---|---|---|---|"
remigrate=-
[ -s "$work/remigrate" ] && remigrate=$(median 0 "$work/remigrate")
for share in "${shares[@]}"; do
    s=$(median 0 "$work/sync_$share")
    v=$(median 0 "$work/verify_$share")
    printf '| %s %% | %.2f | %.2f | %.2f | %s | %s | %s | %s |\n' \
        "$(python3 -c "print($share * 100)")" "$s" "$(median 0 "$work/repair_$share")" "$v" "$(ratio "$s" "$v")" \
        "$(per100k "$(median 1 "$work/sync_$share")")" "$(per100k "$(median 1 "$work/verify_$share")")" \
        "$([ "$remigrate" = - ] && echo - || ratio "$remigrate" "$s")"
done
echo
[ "$remigrate" = - ] || echo "re-migrate (--if-exists replace) + index: $(printf '%.2f' "$remigrate") s, $(per100k "$(median 1 "$work/remigrate")") CPU-s/100k"
