//! `qdrant2pg index` on real servers: payload indexes on PostgreSQL 15; HNSW indexes on
//! PostgreSQL 18 + pgvector that nearest-neighbour queries use, with recall checked by `verify
//! --search` against Qdrant's exact search (`tests/search.rs` measures it at scale).

use qdrant2pg::postgres::ident::quote_literal;

use crate::support::cli::{assert_ok, describe, qdrant2pg};
use crate::support::flows::{export_import, fixture_server};
use crate::support::pg::{PgCluster, TestDb};

fn index(url: &str, db: &TestDb, extra: &[&str]) -> std::process::Output {
    let dsn = db.dsn();
    let mut args = vec!["index", "--url", url, "--dsn", &dsn, "--quiet"];
    args.extend_from_slice(extra);
    qdrant2pg(&args)
}

fn indexes(db: &TestDb, table: &str) -> Vec<String> {
    db.client()
        .query(
            "SELECT indexdef FROM pg_indexes WHERE tablename = $1 ORDER BY indexname",
            &[&table],
        )
        .expect("pg_indexes")
        .iter()
        .map(|r| r.get(0))
        .collect()
}

#[test]
fn payload_indexes_on_postgres_15_and_dry_run_changes_nothing() {
    let server = fixture_server();
    let db = PgCluster::pg15().create_database();
    let out = tempfile::tempdir().expect("tempdir");
    export_import(&server, &db, out.path(), "postgres");
    let dry = index(
        &server.url(),
        &db,
        &["--collection", "fx_single", "--dry-run"],
    );
    assert_ok(&dry);
    assert!(
        String::from_utf8_lossy(&dry.stdout)
            .contains("CREATE UNIQUE INDEX IF NOT EXISTS fx_single_id_idx"),
        "{}",
        describe(&dry)
    );
    assert!(indexes(&db, "fx_single").is_empty());

    let built = index(&server.url(), &db, &["--collection", "fx_single"]);
    assert_ok(&built);
    assert!(
        String::from_utf8_lossy(&built.stderr).contains("plain PostgreSQL has no vector index"),
        "{}",
        describe(&built)
    );
    let defs = indexes(&db, "fx_single").join("\n");
    for needle in [
        "UNIQUE INDEX fx_single_id_idx",
        "fx_single_payload_title_idx",
        "fx_single_payload_n_idx",
    ] {
        assert!(defs.contains(needle), "{needle} missing from:\n{defs}");
    }
    // The guarded integer index serves a typed lookup.
    let mut client = db.client();
    client
        .batch_execute("SET enable_seqscan = off")
        .expect("set");
    let plan: Vec<String> = client
        .query(
            r"EXPLAIN SELECT id FROM fx_single WHERE (CASE WHEN json_typeof((CASE WHEN strpos(payload::text, '\u0000') = 0 THEN payload END)->'n') = 'number' THEN ((CASE WHEN strpos(payload::text, '\u0000') = 0 THEN payload END)->>'n')::numeric END) = 42",
            &[],
        )
        .expect("explain")
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert!(
        plan.join("\n").contains("fx_single_payload_n_idx"),
        "{plan:?}"
    );
    // Re-running builds nothing new and succeeds.
    assert_ok(&index(&server.url(), &db, &["--collection", "fx_single"]));
}

#[test]
fn hnsw_indexes_on_pgvector_serve_queries_with_high_recall() {
    let server = fixture_server();
    let db = PgCluster::pg18_vector().create_database();
    let out = tempfile::tempdir().expect("tempdir");
    export_import(&server, &db, out.path(), "pgvector");
    let dry = index(&server.url(), &db, &["--dry-run"]);
    assert_ok(&dry);
    let sql = String::from_utf8_lossy(&dry.stdout);
    for needle in [
        "USING hnsw (text vector_ip_ops) WITH (m = 16, ef_construction = 100)",
        "USING hnsw (bm25 sparsevec_ip_ops)",
        "fx_single_vector_idx ON public.fx_single USING hnsw (vector vector_cosine_ops) WITH (m = 24, ef_construction = 150)",
        "USING hnsw (vector vector_l1_ops)",
        "USING hnsw (image vector_l2_ops)",
    ] {
        assert!(sql.contains(needle), "{needle} missing from:\n{sql}");
    }
    assert!(
        String::from_utf8_lossy(&dry.stderr).contains("colbert"),
        "multivector skip not reported: {}",
        describe(&dry)
    );
    // --m and --ef-construction replace the collection's settings in every vector index, the
    // sparse one's (pgvector's defaults otherwise) too.
    let larger = index(
        &server.url(),
        &db,
        &["--dry-run", "--m", "32", "--ef-construction", "200"],
    );
    assert_ok(&larger);
    let sql = String::from_utf8_lossy(&larger.stdout);
    for needle in [
        "USING hnsw (text vector_ip_ops) WITH (m = 32, ef_construction = 200)",
        "USING hnsw (bm25 sparsevec_ip_ops) WITH (m = 32, ef_construction = 200)",
    ] {
        assert!(sql.contains(needle), "{needle} missing from:\n{sql}");
    }
    let built = index(&server.url(), &db, &[]);
    assert_ok(&built);
    let single = indexes(&db, "fx_single").join("\n");
    assert!(
        single.contains("vector_cosine_ops") && single.contains("m='24'"),
        "{single}"
    );
    // Searches through the indexes (verify checks the planner uses each) answer as Qdrant's
    // exact search does; the vectors pgvector cannot rank as Qdrant does are named, with why.
    let (url, dsn) = (server.url(), db.dsn());
    let searched = qdrant2pg(&[
        "verify", "--url", &url, "--dsn", &dsn, "--search", "60", "--quiet",
    ]);
    assert_ok(&searched);
    let report = String::from_utf8_lossy(&searched.stdout);
    for needle in [
        "search \"vector\" (hnsw fx_single_vector_idx, vector_cosine_ops, m=24, \
         ef_construction=150), 60 queries: recall@10 1.000 against Qdrant's exact search",
        "search \"text\" (hnsw fx_rich_text_idx, vector_ip_ops, m=16, ef_construction=100)",
        "search \"image\" (hnsw fx_rich_image_idx, vector_l2_ops",
        "search \"vector\" (hnsw fx_sharded_vector_idx, vector_l1_ops",
        "search \"colbert\": skipped — pgvector has no operator that ranks a multivector",
        "search \"bm25\": skipped — Qdrant scores it with the IDF modifier",
    ] {
        assert!(report.contains(needle), "{needle} missing from:\n{report}");
    }

    // The user's own query vectors, alone: one for fx_single's unnamed vector, one for
    // fx_rich's "text"; a malformed line is named by file and line.
    let dir = tempfile::tempdir().expect("tempdir");
    let queries = dir.path().join("queries.jsonl");
    std::fs::write(
        &queries,
        format!(
            "{}\n\n{}\n",
            serde_json::json!({"collection": "fx_single", "query": vec![0.25f32; 16]}),
            serde_json::json!({"collection": "fx_rich", "using": "text", "query": [1, 0, -1, 0.5, 2, 0, 0, 1]}),
        ),
    )
    .expect("queries file");
    let own = qdrant2pg(&[
        "verify",
        "--url",
        &url,
        "--dsn",
        &dsn,
        "--queries",
        queries.to_str().expect("utf-8"),
        "--collection",
        "fx_single",
        "--collection",
        "fx_rich",
        "--quiet",
    ]);
    assert_ok(&own);
    let report = String::from_utf8_lossy(&own.stdout);
    for needle in [
        "search \"vector\" (hnsw fx_single_vector_idx, vector_cosine_ops, m=24, ef_construction=150), 1 queries: recall@10 1.000 against Qdrant's exact search at ef_search 40 — the smallest of the ladder reaching 0.95; Qdrant's own HNSW 1.000, overlap with it 1.000",
        "search \"text\" (hnsw fx_rich_text_idx, vector_ip_ops, m=16, ef_construction=100), 1 queries: recall@10 1.000 against Qdrant's exact search at ef_search 40",
    ] {
        assert!(report.contains(needle), "{needle} missing from:\n{report}");
    }
    std::fs::write(&queries, "{\"query\": [1]}\n{\"query\": \"text\"}\n").expect("bad file");
    let bad = qdrant2pg(&[
        "verify",
        "--url",
        &url,
        "--dsn",
        &dsn,
        "--queries",
        queries.to_str().expect("utf-8"),
        "--quiet",
    ]);
    assert_eq!(bad.status.code(), Some(1), "{}", describe(&bad));
    assert!(
        String::from_utf8_lossy(&bad.stderr).contains("queries.jsonl:2:"),
        "{}",
        describe(&bad)
    );
}

/// Every session qdrant2pg opens sets `standard_conforming_strings = on`: where the database turns
/// it off, the payload indexes' `'\u0000'` guard still reaches the server as written (off, it
/// would read `'u0000'`).
#[test]
fn index_guards_read_as_written_where_the_database_turns_standard_strings_off() {
    let server = fixture_server();
    let db = PgCluster::pg15().create_database();
    db.client()
        .batch_execute(&format!(
            "ALTER DATABASE \"{}\" SET standard_conforming_strings = off",
            db.name
        ))
        .expect("alter database");
    let out = tempfile::tempdir().expect("tempdir");
    export_import(&server, &db, out.path(), "postgres");
    assert_ok(&index(&server.url(), &db, &["--collection", "fx_single"]));
    let title = indexes(&db, "fx_single")
        .into_iter()
        .find(|def| def.contains("fx_single_payload_title_idx"))
        .expect("the title index");
    assert!(title.contains("\\u0000"), "{title}");
}

/// Payload keys reach the index SQL as literals: whatever they hold, the server reads back the
/// very key, with `standard_conforming_strings` on or off.
#[test]
fn quoted_literals_read_back_exactly_under_either_string_setting() {
    let db = PgCluster::pg15().create_database();
    let mut client = db.client();
    let keys = [
        "plain",
        "it's",
        r"a\'); SELECT 1; --",
        r"\",
        r"\\'",
        "ü \n\t",
    ];
    for setting in ["on", "off"] {
        client
            .batch_execute(&format!("SET standard_conforming_strings = {setting}"))
            .expect("set standard_conforming_strings");
        for key in keys {
            let sql = format!("SELECT {}::text", quote_literal(key));
            let read: String = client
                .simple_query(&sql)
                .ok()
                .and_then(|rows| {
                    rows.into_iter().find_map(|m| match m {
                        postgres::SimpleQueryMessage::Row(row) => row.get(0).map(str::to_owned),
                        _ => None,
                    })
                })
                .unwrap_or_else(|| {
                    panic!("{sql} failed with standard_conforming_strings {setting}")
                });
            assert_eq!(read, key, "standard_conforming_strings {setting}");
        }
    }
}
