//! Hostile payloads, loaded through the Qdrant client API into the test server, then moved by
//! export + import and by migrate: each must round-trip exactly (`verify --full`, and the
//! payload column read back and compared value by value with what was sent, signs of zeros and
//! number kinds included) or fail loudly, naming the point.
//!
//! What gRPC cannot carry is loaded the way Qdrant's REST API would store it
//! ([`QdrantServer::upsert_json`]): integers above `i64::MAX`, and nesting deeper than prost's
//! recursion limit lets a gRPC message hold.

use qdrant_client::qdrant as grpc;
use qdrant2pg::postgres::compare::json_identical;
use qdrant2pg::source::edge::json_to_grpc;
use serde_json::{Map, Value as Json, json};

use crate::support::cli::{assert_ok, describe, qdrant2pg};
use crate::support::flows::{client, export_import, runtime};
use crate::support::pg::{PgCluster, TestDb};
use crate::support::qdrant::QdrantServer;

const COLLECTION: &str = "hostile";
/// The deepest object nesting a gRPC payload can hold: prost's recursion limit (100 messages)
/// spends three per JSON level (Value, Struct, map entry), after the request's own.
const GRPC_MAX_DEPTH: usize = 32;
/// The id of the point whose payload holds `\u0000`, which `jsonb` refuses.
const NUL_POINT: u64 = 3;

/// `{"k": {"k": … "leaf" …}}`, `depth` objects deep.
fn nested(depth: usize) -> Json {
    (0..depth).fold(json!("leaf"), |inner, _| json!({ "k": inner }))
}

/// The corpus, one point per hazard family, keyed by point id.
fn corpus() -> Vec<(u64, Map<String, Json>)> {
    let hazards = "\u{2028}\u{2029}\\|\r\n\t\"/\u{1}\u{1f}é😀";
    let object = |value: Json| match value {
        Json::Object(map) => map,
        _ => unreachable!("an object literal"),
    };
    vec![
        (
            1,
            object(json!({
                "deep": nested(GRPC_MAX_DEPTH - 1),
                "arrays": (0..GRPC_MAX_DEPTH - 2).fold(json!([1]), |inner, _| json!([inner])),
            })),
        ),
        (
            2,
            object(json!({ "huge": hazards.repeat(3 * 1024 * 1024 / hazards.len()) })),
        ),
        (
            NUL_POINT,
            object(json!({ "nul": "a\u{0}b", "k\u{0}": "key with NUL" })),
        ),
        (
            4,
            object(json!({
                "line separators": "a\u{2028}b\u{2029}c",
                "backslashes": "\\ \\\\ \\N \\u0000 \\n",
                "pipes": "|a||b|",
                "crlf": "a\r\nb\rc\n",
                "tabs": "\ta\t",
                "k\u{2028}\u{2029}": 1,
                "k|": 2,
                "k\\": 3,
                "k\r\n\t": 4,
                "": "empty key",
            })),
        ),
        (
            5,
            object(json!({
                "max": 1e308,
                "min subnormal": 5e-324,
                "negative zero": -0.0,
                "i64 min": i64::MIN,
                "i64 max": i64::MAX,
                "tenth": 0.1,
                "one float": 1.0,
                "mixed": [1, 1.5, -0.0, "x", null, true, false],
            })),
        ),
        (
            6,
            object(json!({ "object": {}, "array": [], "nested": [{}, [], {"a": []}] })),
        ),
        (7, Map::new()),
    ]
}

fn vector(id: u64) -> grpc::Vectors {
    vec![id as f32, -0.5].into()
}

fn create_collection(server: &QdrantServer, name: &str) {
    runtime()
        .block_on(client(server).create_collection(grpc::CreateCollection {
            collection_name: name.into(),
            vectors_config: Some(grpc::VectorsConfig {
                config: Some(grpc::vectors_config::Config::Params(grpc::VectorParams {
                    size: 2,
                    distance: grpc::Distance::Euclid as i32,
                    ..Default::default()
                })),
            }),
            ..Default::default()
        }))
        .expect("create collection");
}

/// The corpus, upserted over gRPC with the real client.
fn load_corpus(server: &QdrantServer) {
    create_collection(server, COLLECTION);
    let points = corpus()
        .into_iter()
        .map(|(id, payload)| grpc::PointStruct {
            id: Some(id.into()),
            vectors: Some(vector(id)),
            payload: payload
                .into_iter()
                .map(|(k, v)| (k, json_to_grpc(v)))
                .collect(),
        })
        .collect();
    runtime()
        .block_on(client(server).upsert_points(grpc::UpsertPoints {
            collection_name: COLLECTION.into(),
            wait: Some(true),
            points,
            ..Default::default()
        }))
        .expect("upsert the corpus");
}

/// A point with no payload, for [`QdrantServer::upsert_json`].
fn bare_point(id: u64) -> grpc::PointStruct {
    grpc::PointStruct {
        id: Some(id.into()),
        vectors: Some(vector(id)),
        payload: Default::default(),
    }
}

/// Reads every payload of `table` back and compares it with `expected`, point by point.
fn assert_payloads(db: &TestDb, table: &str, expected: &[(u64, Map<String, Json>)]) {
    let rows = db
        .client()
        .query(
            &format!("SELECT id, payload::text FROM {table} ORDER BY id"),
            &[],
        )
        .expect("read the payloads back");
    assert_eq!(rows.len(), expected.len(), "rows of {table}");
    for (row, (id, sent)) in rows.iter().zip(expected) {
        assert_eq!(row.get::<_, i64>(0), *id as i64, "ids of {table}");
        let text: String = row.get(1);
        let stored: Json = serde_json::from_str(&text)
            .unwrap_or_else(|e| panic!("{table} id {id}: payload is not JSON: {e}"));
        let sent = Json::Object(sent.clone());
        assert!(
            json_identical(&stored, &sent),
            "{table} id {id}: the payload changed on the way"
        );
    }
}

fn verify_full(server: &QdrantServer, db: &TestDb, extra: &[&str]) {
    let (url, dsn) = (server.url(), db.dsn());
    let mut args = vec!["verify", "--url", &url, "--dsn", &dsn, "--full", "--quiet"];
    args.extend_from_slice(extra);
    let out = qdrant2pg(&args);
    assert_ok(&out);
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("identical"),
        "{}",
        describe(&out)
    );
}

#[test]
fn hostile_payloads_round_trip_exactly_through_export_import_and_migrate() {
    let server = QdrantServer::start();
    load_corpus(&server);
    let expected = corpus();

    let db = PgCluster::pg15().create_database();
    let out = tempfile::tempdir().expect("tempdir");
    export_import(&server, &db, out.path(), "postgres");
    verify_full(&server, &db, &[]);
    assert_payloads(&db, COLLECTION, &expected);

    let other = PgCluster::pg15().create_database();
    let (url, dsn) = (server.url(), other.dsn());
    let migrated = qdrant2pg(&[
        "migrate",
        "--url",
        &url,
        "--dsn",
        &dsn,
        "--schema",
        "elsewhere",
        "--quiet",
    ]);
    assert_ok(&migrated);
    verify_full(&server, &other, &["--schema", "elsewhere"]);
    assert_payloads(&other, &format!("elsewhere.{COLLECTION}"), &expected);
}

#[test]
fn a_nul_character_with_a_jsonb_payload_column_is_an_error_naming_the_point() {
    let server = QdrantServer::start();
    load_corpus(&server);
    let db = PgCluster::pg15().create_database();
    let out = tempfile::tempdir().expect("tempdir");
    let (url, dsn) = (server.url(), db.dsn());
    let output = out.path().to_str().expect("utf-8");
    let needle = format!("point {NUL_POINT}: the payload holds a \\u0000 character");
    for args in [
        &["export", "--url", &url, "--output", output][..],
        &["migrate", "--url", &url, "--dsn", &dsn][..],
    ] {
        let run = qdrant2pg(&[args, &["--payload-type", "jsonb", "--quiet"]].concat());
        assert!(!run.status.success(), "{}", describe(&run));
        assert!(
            String::from_utf8_lossy(&run.stderr).contains(&needle),
            "{}",
            describe(&run)
        );
    }
}

/// `upsert_json` for a payload given as a JSON object literal.
fn upsert_rest(server: &QdrantServer, collection: &str, id: u64, payload: Json) {
    let Json::Object(payload) = payload else {
        panic!("a payload is a JSON object")
    };
    server.upsert_json(collection, bare_point(id), payload);
}

/// Writes `collection` as a snapshot in `dir` and returns its path.
fn snapshot(server: &QdrantServer, collection: &str, dir: &std::path::Path) -> String {
    let path = dir.join(format!("{collection}.snapshot"));
    server.write_snapshot(collection, &path);
    path.to_str().expect("utf-8").to_owned()
}

#[test]
fn integers_beyond_i64_arrive_as_qdrants_doubles_with_one_warning_naming_the_point() {
    let server = QdrantServer::start();
    create_collection(&server, "big");
    // Stored as REST would store them: u64s that gRPC's int64 cannot carry.
    upsert_rest(
        &server,
        "big",
        1,
        json!({ "max": u64::MAX, "edge": 1u64 << 63 }),
    );
    upsert_rest(&server, "big", 2, json!({ "also": u64::MAX - 1 }));
    upsert_rest(
        &server,
        "big",
        3,
        json!({ "i64": i64::MAX, "float": 1e19 / 8.0 }),
    );
    let tmp = tempfile::tempdir().expect("tempdir");
    let url = server.url();
    // Points 1 and 2 qualify; `migrate` names the first its pages show it.
    let warnings =
        [1, 2].map(|id| format!("big: point {id}'s payload holds a number between 2^63 and 2^64"));
    let assert_warns_once = |run: &std::process::Output| {
        assert_ok(run);
        let stderr = String::from_utf8_lossy(&run.stderr);
        assert_eq!(
            stderr.matches("between 2^63 and 2^64").count(),
            1,
            "{}",
            describe(run)
        );
        assert!(
            warnings.iter().any(|w| stderr.contains(w)),
            "{}",
            describe(run)
        );
        assert!(
            !stderr.contains("18446744073709551615"),
            "{}",
            describe(run)
        );
    };

    // What Qdrant's gRPC sends, and so what lands in PostgreSQL: the nearest doubles.
    let bent = json!({ "max": u64::MAX as f64, "edge": (1u64 << 63) as f64 });
    let db = PgCluster::pg15().create_database();
    let out = tmp.path().join("grpc");
    let output = out.to_str().expect("utf-8");
    let exported = qdrant2pg(&["export", "--url", &url, "--output", output, "--quiet"]);
    assert_warns_once(&exported);
    assert_ok(&qdrant2pg(&[
        "import",
        "--dsn",
        &db.dsn(),
        "--data",
        output,
        "--quiet",
    ]));
    verify_full(&server, &db, &[]);
    let first = |db: &TestDb| -> Json {
        let text: String = db
            .client()
            .query_one("SELECT payload::text FROM big WHERE id = 1", &[])
            .expect("point 1")
            .get(0);
        serde_json::from_str(&text).expect("JSON")
    };
    assert!(json_identical(&first(&db), &bent), "{}", first(&db));

    let migrated_db = PgCluster::pg15().create_database();
    let dsn = migrated_db.dsn();
    assert_warns_once(&qdrant2pg(&[
        "migrate", "--url", &url, "--dsn", &dsn, "--quiet",
    ]));
    assert!(json_identical(&first(&migrated_db), &bent));

    // The snapshot reader converts payloads as the server does: the same doubles, the same
    // warning.
    let snap = snapshot(&server, "big", tmp.path());
    let out = tmp.path().join("snap");
    let output = out.to_str().expect("utf-8");
    assert_warns_once(&qdrant2pg(&[
        "export",
        "--snapshot",
        &snap,
        "--output",
        output,
        "--quiet",
    ]));
}

#[test]
fn payloads_nested_deeper_than_grpc_carries_fail_naming_the_point_and_read_from_snapshots() {
    let server = QdrantServer::start();
    create_collection(&server, "deep");
    let deep = json!({ "deep": nested(100) });
    upsert_rest(&server, "deep", 1, deep.clone());
    let tmp = tempfile::tempdir().expect("tempdir");
    let url = server.url();

    // prost, on both ends of Qdrant's gRPC, refuses messages nested past 100 levels: the
    // point that cannot be read is named.
    let out = tmp.path().join("grpc");
    let output = out.to_str().expect("utf-8");
    let failed = qdrant2pg(&["export", "--url", &url, "--output", output, "--quiet"]);
    assert!(!failed.status.success(), "{}", describe(&failed));
    let stderr = String::from_utf8_lossy(&failed.stderr);
    assert!(
        stderr.contains("collection \"deep\": point 1 cannot be read over gRPC")
            && stderr.contains("recursion limit reached"),
        "{}",
        describe(&failed)
    );

    // A snapshot has no such limit: the payload arrives whole.
    let snap = snapshot(&server, "deep", tmp.path());
    let db = PgCluster::pg15().create_database();
    let dsn = db.dsn();
    assert_ok(&qdrant2pg(&[
        "migrate",
        "--snapshot",
        &snap,
        "--dsn",
        &dsn,
        "--quiet",
    ]));
    let verified = qdrant2pg(&[
        "verify",
        "--snapshot",
        &snap,
        "--dsn",
        &dsn,
        "--full",
        "--quiet",
    ]);
    assert_ok(&verified);
    let Json::Object(deep) = deep else {
        unreachable!()
    };
    assert_payloads(&db, "deep", &[(1, deep)]);
}
