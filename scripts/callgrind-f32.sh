#!/usr/bin/env bash
# Instructions per float of each f32 writer in the row path (our own, src/encode/float.rs;
# zmij; ryu), counted by callgrind, which gives the same count whatever else the machine runs.
# The encode bench binary (release) writes ROWS rows of 768 floats with each writer
# (`F32_CALLGRIND`, see benches/encode.rs); a run with 0 rows, the same binary and data, is
# subtracted.
#
#   scripts/callgrind-f32.sh [ROWS]    default: 1000
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

rows=${1:-1000}
bench=$(cargo bench --bench encode --no-run --message-format=json 2>/dev/null |
    python3 -c 'import json, sys
for line in sys.stdin:
    m = json.loads(line)
    if m.get("reason") == "compiler-artifact" and m.get("executable") and "bench" in m["target"]["kind"]:
        print(m["executable"])')
work=$(mktemp -d /tmp/callgrind-f32.XXXXXX)
trap 'rm -rf "$work"' EXIT

# instructions of one run
count() {
    F32_CALLGRIND="$1:$2" valgrind --tool=callgrind --callgrind-out-file="$work/out" "$bench" \
        >/dev/null 2>"$work/log"
    sed -n 's/.*Collected : \([0-9]*\).*/\1/p' "$work/log"
}

echo "| writer | instructions per float |"
echo "|---|---|"
for writer in qdrant2pg zmij ryu; do
    base=$(count "$writer" 0)
    total=$(count "$writer" "$rows")
    python3 -c "print(f'| $writer | {($total - $base) / ($rows * 768):.1f} |')"
done
