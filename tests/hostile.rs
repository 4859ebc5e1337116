//! Hostile payloads, loaded through the Qdrant client API into the test server, then moved by
//! export + import and by migrate: each must round-trip exactly (`verify --full`, and the
//! payload column read back and compared value by value with what was sent, signs of zeros and
//! number kinds included) or fail loudly, naming the point.
//!
//! What gRPC cannot carry is loaded the way Qdrant's REST API would store it
//! ([`QdrantServer::upsert_json`]): integers above `i64::MAX`, and nesting deeper than a gRPC
//! upsert may be. Against the genuine server, every value must then arrive as its REST API
//! returns it, through export, migrate and snapshots, and `verify` must see any change.

use std::collections::BTreeMap;

use crate::support::exact_json::{json_identical, parse_json_exactly};
use qdrant_client::qdrant as grpc;
use qdrant2pg::source::edge::convert::json_to_grpc;
use serde_json::{Map, Value as Json, json};

use crate::support::cli::{assert_ok, describe, qdrant2pg};
use crate::support::edge_qdrant::EdgeQdrant;
use crate::support::flows::{client, export_import, runtime};
use crate::support::genuine_qdrant::GenuineQdrant;
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

/// Reads every payload of `table` back and compares it with `expected` (by id), value for
/// value and kind for kind (a `json` column).
fn assert_payloads(db: &TestDb, table: &str, expected: &BTreeMap<u64, Json>) {
    let rows = db
        .client()
        .query(
            &format!("SELECT id, payload::text FROM {table} ORDER BY id"),
            &[],
        )
        .expect("read the payloads back");
    assert_eq!(rows.len(), expected.len(), "rows of {table}");
    for row in &rows {
        let id = row.get::<_, i64>(0) as u64;
        let stored = parse_json_exactly(row.get(1))
            .unwrap_or_else(|e| panic!("{table} id {id}: payload is not JSON: {e}"));
        let want = expected
            .get(&id)
            .unwrap_or_else(|| panic!("{table} id {id}: not expected"));
        assert!(
            json_identical(&stored, want),
            "{table} id {id}: the payload changed on the way"
        );
    }
}

/// The corpus as [`assert_payloads`] expects it.
fn by_id(corpus: Vec<(u64, Map<String, Json>)>) -> BTreeMap<u64, Json> {
    corpus
        .into_iter()
        .map(|(id, payload)| (id, Json::Object(payload)))
        .collect()
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
    let expected = by_id(corpus());

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
fn integers_beyond_i64_without_rest_fail_their_collection_unless_rounding_is_allowed() {
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
    // No REST API where it is looked for: by default the collection fails, naming the point,
    // the address tried and where it came from, and the flag that accepts rounding; nothing of
    // it is written as complete.
    let unreachable = ["--rest-url", "http://127.0.0.1:1", "--retries", "1"];
    let refused_db = PgCluster::pg15().create_database();
    let refused_dsn = refused_db.dsn();
    let refused_out = tmp.path().join("refused");
    let refused_out = refused_out.to_str().expect("utf-8");
    let refusals = [
        [
            &["export", "--url", &url, "--quiet", "--output"][..],
            &[refused_out],
            &unreachable,
        ]
        .concat(),
        [
            &["migrate", "--url", &url, "--quiet", "--dsn", &refused_dsn][..],
            &unreachable,
        ]
        .concat(),
    ];
    for args in &refusals {
        let run = qdrant2pg(args);
        let stderr = String::from_utf8_lossy(&run.stderr);
        assert!(!run.status.success(), "{}", describe(&run));
        assert!(
            stderr.contains("point 1 holds a payload number between 2^63 and 2^64")
                && stderr.contains("REST API at http://127.0.0.1:1 (from --rest-url")
                && stderr.contains("--allow-rounded-integers")
                && !stderr.contains("18446744073709551615"),
            "{}",
            describe(&run)
        );
    }
    // With --allow-rounded-integers, the values gRPC bends stay bent, and say so.
    let no_rest = [
        "--rest-url",
        "http://127.0.0.1:1",
        "--retries",
        "1",
        "--allow-rounded-integers",
    ];
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
            warnings.iter().any(|w| stderr.contains(w))
                && stderr.contains("REST API at http://127.0.0.1:1")
                && stderr.contains("may hold rounded values"),
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
    let exported = qdrant2pg(
        &[
            &["export", "--url", &url, "--output", output, "--quiet"][..],
            &no_rest,
        ]
        .concat(),
    );
    assert_warns_once(&exported);
    assert_ok(&qdrant2pg(&[
        "import",
        "--dsn",
        &db.dsn(),
        "--data",
        output,
        "--quiet",
    ]));
    let first = |db: &TestDb| -> Json {
        let text: String = db
            .client()
            .query_one("SELECT payload::text FROM big WHERE id = 1", &[])
            .expect("point 1")
            .get(0);
        parse_json_exactly(&text).expect("JSON")
    };
    assert!(json_identical(&first(&db), &bent), "{}", first(&db));

    let migrated_db = PgCluster::pg15().create_database();
    let dsn = migrated_db.dsn();
    assert_warns_once(&qdrant2pg(
        &[
            &["migrate", "--url", &url, "--dsn", &dsn, "--quiet"][..],
            &no_rest,
        ]
        .concat(),
    ));
    assert!(json_identical(&first(&migrated_db), &bent));

    // A snapshot holds the payload JSON itself: the integers arrive whole, with no warning.
    let snap = snapshot(&server, "big", tmp.path());
    let snap_db = PgCluster::pg15().create_database();
    let migrated = qdrant2pg(&[
        "migrate",
        "--snapshot",
        &snap,
        "--dsn",
        &snap_db.dsn(),
        "--quiet",
    ]);
    assert_ok(&migrated);
    assert!(
        !String::from_utf8_lossy(&migrated.stderr).contains("2^63"),
        "{}",
        describe(&migrated)
    );
    let whole = json!({ "max": u64::MAX, "edge": 1u64 << 63 });
    assert!(
        json_identical(&first(&snap_db), &whole),
        "{}",
        first(&snap_db)
    );
}

/// `{"k": [{"k": [ … "leaf" … ]}]}`: `depth` levels, objects and arrays alternating.
fn nested_in_arrays(depth: usize) -> Json {
    (0..depth).fold(json!("leaf"), |inner, level| {
        if level % 2 == 0 {
            json!([inner])
        } else {
            json!({ "k": inner })
        }
    })
}

/// Finite doubles from random bits, every exponent and subnormals included, and as many from
/// [0, 1): what a payload of measurements holds. xorshift64*, so a failure replays.
fn random_doubles(count: usize) -> Vec<f64> {
    let mut state = 0x9e37_79b9_7f4a_7c15u64;
    let mut next = move || {
        state ^= state >> 12;
        state ^= state << 25;
        state ^= state >> 27;
        state.wrapping_mul(0x2545_f491_4f6c_dd1d)
    };
    let mut doubles = Vec::with_capacity(count);
    while doubles.len() < count {
        let bits = next();
        let d = if doubles.len() % 2 == 0 {
            f64::from_bits(bits)
        } else {
            (bits >> 11) as f64 / (1u64 << 53) as f64
        };
        if d.is_finite() {
            doubles.push(d);
        }
    }
    doubles
}

/// Every payload of `collection` as the REST API returns it, by id.
fn rest_payloads(genuine: &GenuineQdrant, collection: &str) -> BTreeMap<u64, Json> {
    let answer = genuine.rest(
        "POST",
        &format!("/collections/{collection}/points/scroll"),
        Some(&json!({ "limit": 100_000, "with_payload": true, "with_vector": false })),
    );
    answer["points"]
        .as_array()
        .expect("points")
        .iter()
        .map(|p| {
            (
                p["id"].as_u64().expect("an integer id"),
                p["payload"].clone(),
            )
        })
        .collect()
}

#[test]
fn every_value_arrives_as_the_rest_api_returns_it_through_every_path() {
    let Some(server) = QdrantServer::genuine() else {
        return;
    };
    let genuine = server.as_genuine().expect("genuine");
    let name = "exact";
    create_collection(&server, name);
    // 10k random doubles, upserted as binary doubles over gRPC: the server stores their
    // shortest text and serves what its own JSON reading makes of it, which is the truth.
    let doubles = random_doubles(10_000);
    let points: Vec<grpc::PointStruct> = doubles
        .chunks(10)
        .enumerate()
        .map(|(i, ten)| grpc::PointStruct {
            id: Some((100 + i as u64).into()),
            vectors: Some(vector(i as u64)),
            payload: ten
                .iter()
                .enumerate()
                .map(|(k, d)| (format!("d{k}"), grpc::Value::from(*d)))
                .collect(),
        })
        .collect();
    runtime()
        .block_on(client(&server).upsert_points(grpc::UpsertPoints {
            collection_name: name.into(),
            wait: Some(true),
            points,
            ..Default::default()
        }))
        .expect("upsert the doubles");
    // What gRPC cannot carry, on the first page: integers beyond i64 (and i64::MIN beside
    // them), floats where they land, and payloads nested deep, also inside arrays. An upsert
    // body nests a payload three levels down and Qdrant reads bodies at most 127 deep: 124 is
    // the deepest an upsert takes, 126 the deepest `set_payload` takes.
    let big = json!({
        "u64 max": u64::MAX,
        "2^63": 1u64 << 63,
        "i64 min": i64::MIN,
        "float 1e19": 1e19,
        "float 9.3e18": 9.3e18,
        "in a list": [u64::MAX - 1, 1e19, {"deeper": 1u64 << 63}],
    });
    upsert_rest(&server, name, 1, big);
    upsert_rest(&server, name, 2, json!({ "only a float": 1e19 }));
    upsert_rest(&server, name, 3, json!({ "deep": nested(39) }));
    upsert_rest(&server, name, 4, json!({ "deep": nested(63) }));
    upsert_rest(&server, name, 5, json!({ "deep": nested(123) }));
    upsert_rest(&server, name, 6, json!({ "arrays": nested_in_arrays(64) }));
    upsert_rest(&server, name, 7, json!({}));
    genuine.rest(
        "POST",
        &format!("/collections/{name}/points/payload?wait=true"),
        Some(&json!({ "points": [7], "payload": { "deepest": nested(125) } })),
    );
    let rest = rest_payloads(genuine, name);
    assert_eq!(rest.len(), 1007);
    // The server reads back the shortest text it stored of a double with serde_json's default
    // float reading, which is one ulp off for some: those must arrive as it serves them, from
    // a snapshot too (where a correctly rounded reading gave the double sent instead).
    let bent_by_the_server = doubles
        .iter()
        .enumerate()
        .filter(|(i, d)| {
            let served = &rest[&(100 + *i as u64 / 10)][&format!("d{}", i % 10)];
            served.as_f64().map(f64::to_bits) != Some(d.to_bits())
        })
        .count();
    assert!(bent_by_the_server > 100, "{bent_by_the_server}");
    assert_eq!(rest[&1]["u64 max"].as_u64(), Some(u64::MAX));
    assert!(rest[&2]["only a float"].is_f64());

    let tmp = tempfile::tempdir().expect("tempdir");
    let (url, rest_url) = (server.url(), genuine.rest_url());

    // export + import, the REST address by flag.
    let out = tmp.path().join("export");
    let output = out.to_str().expect("utf-8");
    let exported = qdrant2pg(&[
        "export",
        "--url",
        &url,
        "--rest-url",
        &rest_url,
        "--output",
        output,
        "--quiet",
    ]);
    assert_ok(&exported);
    assert!(
        !String::from_utf8_lossy(&exported.stderr).contains("warning"),
        "{}",
        describe(&exported)
    );
    let db = PgCluster::pg15().create_database();
    assert_ok(&qdrant2pg(&[
        "import",
        "--dsn",
        &db.dsn(),
        "--data",
        output,
        "--quiet",
    ]));
    assert_payloads(&db, name, &rest);

    // migrate, the REST address from the guide's YAML (`port`, beside `grpc_port`).
    let port = |url: &str| url.rsplit(':').next().expect("a port").to_owned();
    let yaml = tmp.path().join("qdrant2csv.yaml");
    std::fs::write(
        &yaml,
        format!(
            "qdrant:\n  host: '127.0.0.1'\n  port: {}\n  grpc_port: {}\n",
            port(&rest_url),
            port(&url)
        ),
    )
    .expect("write the YAML");
    let yaml = yaml.to_str().expect("utf-8");
    let migrated_db = PgCluster::pg15().create_database();
    assert_ok(&qdrant2pg(&[
        "migrate",
        "--source-config",
        yaml,
        "--dsn",
        &migrated_db.dsn(),
        "--quiet",
    ]));
    assert_payloads(&migrated_db, name, &rest);
    // jsonb keeps values, not spellings: verify compares them as such.
    assert_ok(&qdrant2pg(&[
        "migrate",
        "--source-config",
        yaml,
        "--dsn",
        &migrated_db.dsn(),
        "--schema",
        "b",
        "--payload-type",
        "jsonb",
        "--quiet",
    ]));
    verify_full(
        &server,
        &migrated_db,
        &["--rest-url", &rest_url, "--schema", "b"],
    );

    // A snapshot the server made, exported without the server.
    let snap = snapshot(&server, name, tmp.path());
    let out = tmp.path().join("snapshot");
    let output = out.to_str().expect("utf-8");
    assert_ok(&qdrant2pg(&[
        "export",
        "--snapshot",
        &snap,
        "--output",
        output,
        "--quiet",
    ]));
    let snap_db = PgCluster::pg15().create_database();
    assert_ok(&qdrant2pg(&[
        "import",
        "--dsn",
        &snap_db.dsn(),
        "--data",
        output,
        "--quiet",
    ]));
    assert_payloads(&snap_db, name, &rest);

    // verify --full: identical, and a value changed back to what gRPC alone would have
    // written, or a double moved by one unit in the last place, is found.
    verify_full(&server, &db, &["--rest-url", &rest_url]);
    let dsn = db.dsn();
    // The table holds the double the server serves, which may not be the one sent.
    let served = rest[&100]["d0"].as_f64().expect("a double");
    let nudged = f64::from_bits(served.to_bits() + 1);
    let text = |d: f64| format!("\"d0\":{}", ryu::Buffer::new().format(d));
    for (id, key, from, to) in [
        (
            1,
            "u64 max",
            r#""u64 max":18446744073709551615"#.to_owned(),
            r#""u64 max":1.8446744073709552e19"#.to_owned(),
        ),
        (
            2,
            "only a float",
            r#""only a float":1e19"#.to_owned(),
            r#""only a float":10000000000000000000"#.to_owned(),
        ),
        (100, "d0", text(served), text(nudged)),
    ] {
        let mut client = db.client();
        let changed = client
            .execute(
                "UPDATE exact SET payload = replace(payload::text, $1, $2)::json \
                 WHERE id = $3 AND strpos(payload::text, $1) > 0",
                &[&from, &to, &(id as i64)],
            )
            .expect("change one value");
        assert_eq!(changed, 1);
        let run = qdrant2pg(&[
            "verify",
            "--url",
            &url,
            "--rest-url",
            &rest_url,
            "--dsn",
            &dsn,
            "--full",
        ]);
        assert_eq!(run.status.code(), Some(1), "{}", describe(&run));
        let stdout = String::from_utf8_lossy(&run.stdout);
        assert!(
            stdout.contains(&format!("id {id}: payload differs (keys [\"{key}\"])")),
            "{}",
            describe(&run)
        );
        client
            .execute(
                "UPDATE exact SET payload = replace(payload::text, $1, $2)::json WHERE id = $3",
                &[&to, &from, &(id as i64)],
            )
            .expect("change it back");
    }
    verify_full(&server, &db, &["--rest-url", &rest_url]);
}

#[test]
fn a_snapshot_payload_deeper_than_qdrant_stores_fails_its_collection_naming_the_point() {
    // Only a server other than Qdrant can write such a snapshot: the in-process one can.
    let server = QdrantServer::InProcess(EdgeQdrant::start());
    for name in ["deep", "fine"] {
        create_collection(&server, name);
        for id in 1..=5 {
            upsert_rest(&server, name, id, json!({ "id": id }));
        }
    }
    upsert_rest(&server, "deep", 3, json!({ "deep": nested(200) }));
    let tmp = tempfile::tempdir().expect("tempdir");
    let snapshots = tmp.path().join("snapshots");
    std::fs::create_dir(&snapshots).expect("mkdir");
    for name in ["deep", "fine"] {
        snapshot(&server, name, &snapshots);
    }
    let out = tmp.path().join("out");
    let run = qdrant2pg(&[
        "export",
        "--snapshot",
        snapshots.to_str().expect("utf-8"),
        "--output",
        out.to_str().expect("utf-8"),
        "--quiet",
    ]);
    assert_eq!(run.status.code(), Some(1), "{}", describe(&run));
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(
        stderr.contains("1 of 2 collection(s) could not be exported completely")
            && stderr.contains("point 3: the Qdrant engine cannot read its payload"),
        "{}",
        describe(&run)
    );
    let manifest = |name: &str| {
        qdrant2pg::manifest::Manifest::load(&out.join(name))
            .expect("load")
            .expect("a manifest")
    };
    assert!(manifest("fine").complete && manifest("fine").rows() == 5);
    assert!(!manifest("deep").complete);
}
