#!/usr/bin/env bash
# What exact payloads cost export, against a genuine Qdrant (REST re-reads need its REST API):
#
#   scripts/bench-exact.sh [POINTS [DIM [ROUNDS]]]      default: 20000 768 5
#
# Two collections made by `generate` with the same seed: `plain`, and `wide`, where 1 % of the
# points (every 100th id, so nearly every page) also hold the integer 2^64−1, which gRPC bends
# and qdrant2pg therefore reads again over REST. Measured in one run, interleaved, ROUNDS times:
#   wide: export as shipped (REST re-reads) against the same export with the REST API
#         unreachable (--rest-url to a closed port: one refused attempt, then none);
#   plain: export as shipped against the same binary with REST unreachable (no page needs
#         REST, so both must match) and, with BASELINE=path/to/qdrant2pg (a build without exact
#         payloads), against that build;
# and counts the REST calls the server logged during the plain exports (must be 0) and the
# wide ones, with the time it spent answering them (a figure the machine's load bends less).
# Prints medians (points/s) and ratios, with the load average beside them.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

points=${1:-20000}
dim=${2:-768}
rounds=${3:-5}
qdrant=${QDRANT_BIN:-$PWD/target/test-servers/qdrant}
[ -x "$qdrant" ] || { echo "no genuine Qdrant at $qdrant (scripts/install-test-deps.sh)" >&2; exit 1; }
cargo build --release --quiet --bin qdrant2pg
q2p=$PWD/target/release/qdrant2pg
work=$(mktemp -d /tmp/qdrant2pg-bench-exact.XXXXXX)
pids=()
source scripts/lib.sh
trap cleanup EXIT

start_genuine_qdrant "$qdrant" "$work/qdrant"
rest=$qdrant_rest
url=$qdrant_url

for c in plain wide; do
    "$q2p" generate --url "$url" --collection "$c" --points "$points" --dim "$dim" --seed 7 \
        --quiet >/dev/null
    # No HNSW build competing with the exports for the CPU.
    curl -sf -X PATCH "$rest/collections/$c" -H 'content-type: application/json' \
        -d '{"optimizers_config":{"indexing_threshold":0}}' >/dev/null
done
ids=$(seq -s, 0 100 $((points - 1)))
curl -sf -X POST "$rest/collections/wide/points/payload?wait=true" \
    -H 'content-type: application/json' \
    -d "{\"points\":[$ids],\"payload\":{\"big\":18446744073709551615}}" >/dev/null
for c in plain wide; do
    for _ in $(seq 600); do
        curl -sf "$rest/collections/$c" | grep -q '"status":"green"' && break
        sleep 0.5
    done
done

# Seconds one export takes: BIN COLLECTION EXTRA…
run() {
    local bin=$1 c=$2
    shift 2
    local start end
    start=$(date +%s.%N)
    "$bin" export --url "$url" --collection "$c" --output "$work/out" --restart --quiet "$@" \
        >/dev/null 2>"$work/stderr" || { cat "$work/stderr" >&2; exit 1; }
    end=$(date +%s.%N)
    echo "$end - $start" | bc
}
rest_calls() { grep -c "POST /collections/$1/points HTTP" "$work/qdrant/log" || true; }
# Seconds the server spent answering them (the last field of its access log line).
rest_seconds() {
    grep "POST /collections/$1/points HTTP" "$work/qdrant/log" | awk '{s += $NF} END {printf "%.3f", s}'
}
median() { sort -n | awk '{a[NR]=$1} END {print (NR % 2) ? a[(NR+1)/2] : (a[NR/2] + a[NR/2+1]) / 2}'; }

# Without REST the wide export must be told to accept gRPC's doubles, or it fails (the default).
no_rest=(--rest-url http://127.0.0.1:1 --retries 1 --allow-rounded-integers)
declare -A times
plain_calls_before=$(rest_calls plain)
wide_calls_before=$(rest_calls wide)
for round in $(seq "$rounds"); do
    times[plain]+="$(run "$q2p" plain --rest-url "$rest") "
    times[plain_norest]+="$(run "$q2p" plain "${no_rest[@]}") "
    if [ -n "${BASELINE:-}" ]; then
        times[plain_baseline]+="$(run "$BASELINE" plain) "
    fi
    times[wide]+="$(run "$q2p" wide --rest-url "$rest") "
    times[wide_norest]+="$(run "$q2p" wide "${no_rest[@]}") "
    echo "round $round done ($(cut -d' ' -f1-3 /proc/loadavg))" >&2
done
plain_calls=$(($(rest_calls plain) - plain_calls_before))
wide_calls=$(($(rest_calls wide) - wide_calls_before))
wide_seconds=$(rest_seconds wide)

rate() { echo "${times[$1]}" | tr ' ' '\n' | grep . | median | awk -v n="$points" '{printf "%.0f", n / $1}'; }
ratio() { awk -v a="$(rate "$1")" -v b="$(rate "$2")" 'BEGIN {printf "%.2f", a / b}'; }
echo "export of $points x $dim, $rounds rounds interleaved, medians; load $(cut -d' ' -f1-3 /proc/loadavg)"
echo "| collection | as shipped, points/s | baseline | baseline, points/s | ratio |"
echo "|---|---|---|---|---|"
echo "| 1 % of points hold 2^64-1 | $(rate wide) | REST unreachable | $(rate wide_norest) | $(ratio wide wide_norest) |"
echo "| none hold such values | $(rate plain) | REST unreachable | $(rate plain_norest) | $(ratio plain plain_norest) |"
if [ -n "${BASELINE:-}" ]; then
    echo "| none hold such values | $(rate plain) | $BASELINE | $(rate plain_baseline) | $(ratio plain plain_baseline) |"
fi
echo "REST calls logged by Qdrant: plain $plain_calls over $((rounds * 2)) exports, wide $wide_calls over $rounds exports with REST, answered in $wide_seconds s in all"
