# The scale row of scripts/bench.sh (sourced by it for SHAPE `scale`, with its servers, its
# `small` (POINTS/10) and `big` (POINTS) collections and its functions): migrate and
# verify --full of each at the default settings, and Qdrant's scroll alone, each measured with
# every process's CPU. Beside them what grows with the collection on either side: our
# bookkeeping (units of the run, ledger rows, claims) and the server's work (checkpoints,
# buffers written by checkpoints and by backends, WAL bytes), so a slowdown at size can be told
# apart: ours if our CPU per point grows, the server's if its own does.

# One line of server facts: checkpoints, buffers written by checkpoints and by backends, WAL
# position (bytes), the kernel's page cache (KiB).
server_facts() {
    psql_ -F ' ' -c "SELECT checkpoints_timed + checkpoints_req, buffers_checkpoint, buffers_backend, pg_current_wal_lsn() - '0/0' FROM pg_stat_bgwriter" | tr '\n' ' '
    awk '/^Cached:/ {print $2}' /proc/meminfo
}
declare -A scale_rate scale_verify scale_scroll scale_facts scale_book
for name in small big; do
    n=$points
    [ "$name" = small ] && n=$((points / 10))
    psql_ -c "DROP SCHEMA IF EXISTS sc CASCADE" >/dev/null
    scroll_s=$(STAGE="scroll only, $name" STAGE_POINTS=$n timed "$q2p" export --url "$url" --collection "$name" --output "$work/scroll" --scroll-only --restart)
    read -r c0 bc0 bb0 w0 _ <<<"$(server_facts)"
    migrate_s=$(STAGE="migrate, $name" STAGE_POINTS=$n timed "$q2p" migrate --url "$url" --dsn "$dsn" --schema sc --collection "$name")
    read -r c1 bc1 bb1 w1 cached <<<"$(server_facts)"
    verify_s=$(STAGE="verify --full, $name" STAGE_POINTS=$n timed "$q2p" verify --full --url "$url" --dsn "$dsn" --schema sc --collection "$name")
    scale_rate[$name]=$(rate "$n" "$migrate_s")
    scale_verify[$name]=$(rate "$n" "$verify_s")
    scale_scroll[$name]=$(rate "$n" "$scroll_s")
    scale_facts[$name]="checkpoints $((c1 - c0)), checkpoint buffers $((bc1 - bc0)), backend buffers $((bb1 - bb0)), WAL $(((w1 - w0) / 1048576)) MiB, page cache after $((cached / 1048576)) GiB"
    scale_book[$name]=$(psql_ -F ' ' -c "SELECT (SELECT count(*) FROM sc.qdrant2pg_units), (SELECT coalesce(sum(claims), 0) FROM sc.qdrant2pg_units), (SELECT count(*) FROM sc.qdrant2pg_ledger), pg_size_pretty(pg_total_relation_size('sc.$name'))")
done
row "migrate, points/s at $points (baseline: $((points / 10)))" "${scale_rate[big]}" "${scale_rate[small]}" "$(ratio "${scale_rate[big]}" "${scale_rate[small]}")"
row "verify --full, points/s at $points (baseline: $((points / 10)))" "${scale_verify[big]}" "${scale_verify[small]}" "$(ratio "${scale_verify[big]}" "${scale_verify[small]}")"
row "scroll only (Qdrant), points/s at $points (baseline: $((points / 10)))" "${scale_scroll[big]}" "${scale_scroll[small]}" "$(ratio "${scale_scroll[big]}" "${scale_scroll[small]}")"
for stage in migrate "verify --full"; do
    read -r c_big q_big p_big _ <<<"$(cpu_per_100k "$stage, big")"
    read -r c_small q_small p_small _ <<<"$(cpu_per_100k "$stage, small")"
    row "$stage, our CPU-s per 100k points at $points (baseline: $((points / 10)))" "$c_big" "$c_small" "$(ratio "$c_big" "$c_small")"
    row "$stage, Qdrant's CPU-s per 100k points at $points (baseline: $((points / 10)))" "$q_big" "$q_small" "$(ratio "$q_big" "$q_small")"
    row "$stage, PostgreSQL's CPU-s per 100k points at $points (baseline: $((points / 10)))" "$p_big" "$p_small" "$(ratio "$p_big" "$p_small")"
done
echo
for name in small big; do
    read -r units claims ledger size <<<"${scale_book[$name]}"
    echo "$name: migrate's run: $units units, $claims claims, $ledger ledger rows, table $size; server during migrate: ${scale_facts[$name]}"
done
