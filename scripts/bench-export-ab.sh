#!/usr/bin/env bash
# Two builds of qdrant2pg exporting the same collection, interleaved A B A B …: the user CPU
# seconds of our process for each export (getrusage, through /usr/bin/time), and B's over A's
# per round. CPU rather than wall time, so the figure holds on a shared, noisy machine; for
# comparing a change to the encoder (src/encode/float.rs measured its float writers with it).
#
#   scripts/bench-export-ab.sh BIN_A BIN_B [ROUNDS [POINTS [DIM]]]    default: 3 100000 768
#
# Build each binary with `cargo build --release --bin qdrant2pg` and copy it aside. Starts the
# genuine Qdrant where one is installed (scripts/install-test-deps.sh), else the in-repo server
# (and says which), generates the collection (no HNSW graph, settled to green), exports it once
# untimed to warm the server, then ROUNDS rounds. Each export's files are removed before the
# next, so every run writes to the same empty disk.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

a=$(realpath "$1")
b=$(realpath "$2")
rounds=${3:-3}
points=${4:-100000}
dim=${5:-768}
work=$(mktemp -d /tmp/qdrant2pg-ab.XXXXXX)
pids=()
source scripts/lib.sh
trap cleanup EXIT

[ -x "${QDRANT_BIN:-target/test-servers/qdrant}" ] ||
    cargo build --release --quiet --example qdrant_server
start_qdrant target/release
"$a" --quiet generate --url "$qdrant_url" --collection ab --points "$points" --dim "$dim" \
    --hnsw-m 0 >/dev/null
if [ -n "${qdrant_rest:-}" ]; then
    for _ in $(seq 1200); do
        status=$(curl -sf "$qdrant_rest/collections/ab" | python3 -c 'import json,sys; print(json.load(sys.stdin)["result"]["status"])')
        [ "$status" = green ] && break
        sleep 0.5
    done
fi

# user CPU seconds, then wall seconds, of one export
export_cpu() {
    rm -rf "$work/out"
    /usr/bin/time -f '%U %e' -o "$work/time" "$1" --quiet export --url "$qdrant_url" \
        --collection ab --output "$work/out" >/dev/null
    rm -rf "$work/out"
    cat "$work/time"
}

export_cpu "$a" >/dev/null
echo "Qdrant: $qdrant_server; $points points x $dim; load at start: $(cut -d' ' -f1-3 /proc/loadavg)"
echo "A: $a"
echo "B: $b"
echo
echo "| round | A user s | B user s | B/A user | A wall s | B wall s |"
echo "|---|---|---|---|---|---|"
ratios=()
for round in $(seq "$rounds"); do
    read -r ua wa < <(export_cpu "$a")
    read -r ub wb < <(export_cpu "$b")
    r=$(python3 -c "print(f'{$ub / $ua:.3f}')")
    ratios+=("$r")
    echo "| $round | $ua | $ub | $r | $wa | $wb |"
done
python3 -c "import sys; r = sorted(map(float, sys.argv[1:])); print(f'B/A user CPU: {r[0]:.3f}–{r[-1]:.3f} over {len(r)} rounds, median {r[len(r) // 2]:.3f}')" "${ratios[@]}"
