//! `qdrant2pg index` on real servers: payload indexes on PostgreSQL 15; HNSW indexes on
//! PostgreSQL 18 + pgvector that nearest-neighbour queries use, with recall checked against an
//! exact search over the source vectors.

use std::io::{BufRead, BufReader};

use qdrant2pg::postgres::compare::parse_json_exactly;
use qdrant2pg::postgres::ident::quote_literal;
use serde_json::Value as Json;

use crate::support::cli::{assert_ok, describe, qdrant2pg};
use crate::support::flows::{export_import, fixture_server, fixtures_dir};
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

/// fx_single's points (16-d, Cosine) from the real server's ground truth.
fn ground_vectors() -> Vec<(u64, Vec<f32>)> {
    let file =
        std::fs::File::open(fixtures_dir().join("fx_single.points.jsonl.gz")).expect("fixture");
    BufReader::new(flate2::read::GzDecoder::new(file))
        .lines()
        .map(|line| {
            let p: Json = parse_json_exactly(&line.expect("line")).expect("json");
            let v = p["vector"]
                .as_array()
                .expect("vector")
                .iter()
                .map(|x| x.as_f64().expect("f") as f32)
                .collect();
            (p["id"].as_u64().expect("id"), v)
        })
        .collect()
}

fn cosine_distance(a: &[f32], b: &[f32]) -> f64 {
    let dot: f64 = a
        .iter()
        .zip(b)
        .map(|(x, y)| f64::from(*x) * f64::from(*y))
        .sum();
    let na: f64 = a.iter().map(|x| f64::from(*x).powi(2)).sum::<f64>().sqrt();
    let nb: f64 = b.iter().map(|x| f64::from(*x).powi(2)).sum::<f64>().sqrt();
    1.0 - dot / (na * nb)
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
    let built = index(&server.url(), &db, &[]);
    assert_ok(&built);
    let single = indexes(&db, "fx_single").join("\n");
    assert!(
        single.contains("vector_cosine_ops") && single.contains("m='24'"),
        "{single}"
    );
    // Nearest neighbours through the index against an exact search over the source vectors.
    let points = ground_vectors();
    let mut client = db.client();
    client
        .batch_execute("SET enable_seqscan = off; SET hnsw.ef_search = 100")
        .expect("settings");
    let mut found = 0;
    let mut total = 0;
    for (_, query) in points.iter().step_by(15) {
        let text = format!(
            "[{}]",
            query
                .iter()
                .map(|v| v.to_string())
                .collect::<Vec<_>>()
                .join(",")
        );
        let mut exact: Vec<(f64, u64)> = points
            .iter()
            .map(|(id, v)| (cosine_distance(query, v), *id))
            .collect();
        exact.sort_by(|a, b| a.0.total_cmp(&b.0));
        let truth: Vec<u64> = exact.iter().take(10).map(|e| e.1).collect();
        let sql = "SELECT id FROM fx_single ORDER BY vector <=> $1::text::vector LIMIT 10";
        let got: Vec<i64> = client
            .query(sql, &[&text])
            .expect("knn")
            .iter()
            .map(|r| r.get(0))
            .collect();
        found += got
            .iter()
            .filter(|id| truth.contains(&(**id as u64)))
            .count();
        total += truth.len();
    }
    let recall = found as f64 / total as f64;
    assert!(recall >= 0.95, "recall@10 {recall:.3}");
    let plan: Vec<String> = client
        .query("EXPLAIN SELECT id FROM fx_single ORDER BY vector <=> (SELECT vector FROM fx_single LIMIT 1) LIMIT 10", &[])
        .expect("explain")
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert!(plan.join("\n").contains("fx_single_vector_idx"), "{plan:?}");
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
