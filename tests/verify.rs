//! `qdrant2pg verify` after export + import, on real servers: identical data verifies, and any
//! changed value, missing or extra row is found and named; samples compare as many points as
//! asked, whatever the id layout.

use qdrant_client::qdrant as grpc;

use crate::support::cli::{assert_ok, describe, qdrant2pg};
use crate::support::flows::{client, export_import, fixture_server, runtime, upsert};
use crate::support::pg::{PgCluster, TestDb};
use crate::support::qdrant::QdrantServer;

fn verify(server: &QdrantServer, db: &TestDb, extra: &[&str]) -> std::process::Output {
    let (url, dsn) = (server.url(), db.dsn());
    let mut args = vec!["verify", "--url", &url, "--dsn", &dsn, "--quiet"];
    args.extend_from_slice(extra);
    qdrant2pg(&args)
}

#[test]
fn exported_and_imported_fixtures_verify_and_every_change_is_named() {
    let server = fixture_server();
    let db = PgCluster::pg15().create_database();
    let out = tempfile::tempdir().expect("tempdir");
    export_import(&server, &db, out.path(), "postgres");
    for mode in [&["--full"][..], &["--sample", "50"][..], &[][..]] {
        let result = verify(&server, &db, mode);
        assert_ok(&result);
        let text = String::from_utf8_lossy(&result.stdout);
        assert_eq!(
            text.matches("identical").count(),
            3,
            "{}",
            describe(&result)
        );
    }

    let mut client = db.client();
    client
        .batch_execute(
            "UPDATE fx_single SET vector[2] = vector[2] + 1e-6 WHERE id = 3;
             UPDATE fx_single SET payload = '{\"title\": \"changed\"}' WHERE id = 6;
             DELETE FROM fx_sharded WHERE id = '1';
             INSERT INTO fx_rich (id, payload) VALUES ('00000000-0000-0000-0000-000000000001', '{}');
             UPDATE fx_rich SET bm25_values = NULL WHERE id = (SELECT id FROM fx_rich WHERE bm25_values IS NOT NULL ORDER BY id LIMIT 1);",
        )
        .expect("corrupt the tables");
    let result = verify(&server, &db, &["--full"]);
    assert_eq!(result.status.code(), Some(1), "{}", describe(&result));
    let text = String::from_utf8_lossy(&result.stdout);
    for needle in [
        "id 3: vector \"vector\" differs first at element 1",
        "id 6: payload differs",
        "id 1: missing from the table",
        "id 00000000-0000-0000-0000-000000000001: in the table but not in Qdrant",
        "vector \"bm25\": the table holds a malformed value",
        "count: Qdrant has 600 points, the table 599 rows",
    ] {
        assert!(
            text.contains(needle),
            "verify output lacks {needle:?}:\n{}",
            describe(&result)
        );
    }
    // Values are never printed: the changed title does not appear.
    assert!(!text.contains("changed"), "{text}");
}

#[test]
fn pgvector_tables_verify_bit_exact() {
    let server = fixture_server();
    let db = PgCluster::pg18_vector().create_database();
    let out = tempfile::tempdir().expect("tempdir");
    export_import(&server, &db, out.path(), "pgvector");
    let result = verify(&server, &db, &["--full"]);
    assert_ok(&result);
    assert_eq!(
        String::from_utf8_lossy(&result.stdout)
            .matches("identical")
            .count(),
        3,
        "{}",
        describe(&result)
    );
}

#[test]
fn full_verify_names_every_difference_whatever_the_parts_cursors_and_pages() {
    let server = fixture_server();
    let db = PgCluster::pg15().create_database();
    let out = tempfile::tempdir().expect("tempdir");
    export_import(&server, &db, out.path(), "postgres");
    db.client()
        .batch_execute(
            "UPDATE fx_single SET vector[16] = 12345.5 WHERE id = 3;
             INSERT INTO fx_single SELECT * FROM fx_single WHERE id = 9;
             UPDATE fx_single SET payload = NULL WHERE id = 12;
             DELETE FROM fx_single WHERE id = 15;
             INSERT INTO fx_single (id, vector, payload) VALUES (16, '{}', '{}');",
        )
        .expect("corrupt the table");
    let expected = [
        "  - id 3: vector \"vector\" differs first at element 15\n",
        "  - id 9: 2 rows in the table\n",
        "  - id 12: payload differs (NULL in the table)\n",
        "  - id 15: missing from the table\n",
        "  - id 16: in the table but not in Qdrant\n",
    ]
    .concat();
    // One plain scan (what servers without TID range scans get), table parts read by several
    // connections, tiny pages over one cursor, and the defaults: the same differences, in id
    // order, after the count.
    for extra in [
        &["--table-parts", "1"][..],
        &[
            "--table-parts",
            "5",
            "-j",
            "3",
            "--cursors",
            "1",
            "--page-size",
            "7",
        ],
        &["--cursors", "3", "--page-size", "16", "--encoders", "1"],
    ] {
        let args = [&["--full", "--collection", "fx_single"][..], extra].concat();
        let result = verify(&server, &db, &args);
        assert_eq!(result.status.code(), Some(1), "{}", describe(&result));
        let text = String::from_utf8_lossy(&result.stdout);
        assert!(
            text.contains(&format!(
                "DIFFERENT\n  - count: Qdrant has 300 points, the table 301 rows\n{expected}"
            )),
            "{extra:?}: {}",
            describe(&result)
        );
    }
}

#[test]
fn payload_numbers_compare_as_the_column_type_keeps_them() {
    let server = QdrantServer::start();
    let url = server.url();
    assert_ok(&qdrant2pg(&[
        "generate",
        "--url",
        &url,
        "--collection",
        "numbers",
        "--points",
        "1",
        "--dim",
        "2",
        "--quiet",
    ]));
    // Over REST, as a user's data arrives: an integer above i64::MAX (which gRPC then carries as
    // the nearest double), a float with an integral value, -0.0, and an integer beyond 2^53.
    // REST is not read back (no --rest-url): both commands accept gRPC's doubles explicitly.
    let payload = serde_json::json!({
        "max": u64::MAX, "one": 1.0, "zero": -0.0, "big": 9_007_199_254_740_994u64,
    });
    let serde_json::Value::Object(payload) = payload else {
        unreachable!()
    };
    let point = qdrant_client::qdrant::PointStruct {
        id: Some(0.into()),
        vectors: Some(vec![0.5f32, 1.5].into()),
        payload: Default::default(),
    };
    server.upsert_json("numbers", point, payload);
    let db = PgCluster::pg15().create_database();
    let dsn = db.dsn();
    let mut client = db.client();
    for (schema, payload_type) in [("j", "json"), ("b", "jsonb")] {
        assert_ok(&qdrant2pg(&[
            "migrate",
            "--url",
            &url,
            "--dsn",
            &dsn,
            "--schema",
            schema,
            "--payload-type",
            payload_type,
            "--allow-rounded-integers",
            "--quiet",
        ]));
        let cases = [
            // What the loaders wrote.
            (None, None),
            // The exact integer is not the double gRPC sent, in either column type.
            (
                Some(
                    r#"{"max": 18446744073709551615, "one": 1.0, "zero": -0.0, "big": 9007199254740994}"#,
                ),
                Some(r#"["max"]"#),
            ),
            // 1 = 1.0 and 0 = -0.0 (a double holds both exactly); above 2^53 a json integer is
            // not a float, while jsonb keeps no such kind.
            (
                Some(
                    r#"{"max": 1.8446744073709552e19, "one": 1, "zero": 0, "big": 9007199254740994.0}"#,
                ),
                (payload_type == "json").then_some(r#"["big"]"#),
            ),
        ];
        for (payload, differs) in cases {
            if let Some(payload) = payload {
                client
                    .execute(
                        &format!("UPDATE {schema}.numbers SET payload = $1::text::{payload_type}"),
                        &[&payload],
                    )
                    .expect("set the payload");
            }
            let result = verify(
                &server,
                &db,
                &["--full", "--schema", schema, "--allow-rounded-integers"],
            );
            let text = String::from_utf8_lossy(&result.stdout);
            match differs {
                None => assert_ok(&result),
                Some(keys) => assert!(
                    text.contains(&format!("id 0: payload differs (keys {keys})")),
                    "{payload_type} {payload:?}: {}",
                    describe(&result)
                ),
            }
        }
    }
}

/// Verifies `collection` with `--sample sample --search 100` and a JSON report: the output,
/// its stdout, and the number of queries the search ran.
fn sample_and_search(
    server: &QdrantServer,
    db: &TestDb,
    collection: &str,
    sample: usize,
) -> (std::process::Output, String, u64) {
    let report = tempfile::NamedTempFile::new().expect("report");
    let sample = sample.to_string();
    let result = verify(
        server,
        db,
        &[
            "--collection",
            collection,
            "--sample",
            &sample,
            "--search",
            "100",
            "--report-json",
            report.path().to_str().expect("utf-8"),
        ],
    );
    let json: serde_json::Value =
        serde_json::from_slice(&std::fs::read(report.path()).expect("report"))
            .unwrap_or_else(|e| panic!("{e}: {}", describe(&result)));
    let queries = json["search"][0]["queries"].as_u64().unwrap_or(0);
    let stdout = String::from_utf8_lossy(&result.stdout).into_owned();
    (result, stdout, queries)
}

#[test]
fn samples_and_searches_use_as_many_points_as_asked_whatever_the_id_layout() {
    let server = QdrantServer::start();
    let url = server.url();
    // Clustered: 15,000 ids below 2^16, 4,990 near 4.6·10^18, 10 just above 2^62 — where ids
    // spread over the id space mostly do not exist.
    let rt = runtime();
    let client = client(&server);
    rt.block_on(client.create_collection(grpc::CreateCollection {
        collection_name: "clustered".into(),
        vectors_config: Some(grpc::VectorsConfig {
            config: Some(grpc::vectors_config::Config::Params(grpc::VectorParams {
                size: 8,
                distance: grpc::Distance::Cosine as i32,
                ..Default::default()
            })),
        }),
        ..Default::default()
    }))
    .expect("create collection");
    let far = 1u64 << 62;
    let ids: Vec<u64> = (0..15_000u64)
        .map(|i| i * 4)
        .chain((0..4_990).map(|i| 4_600_000_000_000_000_000 + i * 7))
        .chain((0..10).map(|i| far + i))
        .collect();
    for chunk in ids.chunks(1000) {
        let points = chunk
            .iter()
            .map(|&id| grpc::PointStruct {
                id: Some(id.into()),
                vectors: Some(
                    (0..8)
                        .map(|d| ((id.wrapping_mul(2654435761) >> (d * 3)) % 1000) as f32 + 1.0)
                        .collect::<Vec<f32>>()
                        .into(),
                ),
                payload: Default::default(),
            })
            .collect();
        upsert(&rt, &client, "clustered", points);
    }
    for ids in ["sparse", "uuid", "mixed"] {
        assert_ok(&qdrant2pg(&[
            "generate",
            "--url",
            &url,
            "--collection",
            ids,
            "--ids",
            ids,
            "--points",
            "3000",
            "--dim",
            "8",
            "--payload-bytes",
            "20",
            "--quiet",
        ]));
    }
    let db = PgCluster::pg18_vector().create_database();
    let dsn = db.dsn();
    for command in ["migrate", "index"] {
        let mut args = vec![command, "--url", &url, "--dsn", &dsn, "--quiet"];
        if command == "migrate" {
            args.extend(["--dialect", "pgvector"]);
        }
        assert_ok(&qdrant2pg(&args));
    }

    for collection in ["clustered", "sparse", "uuid", "mixed"] {
        let (result, stdout, queries) = sample_and_search(&server, &db, collection, 1000);
        assert_ok(&result);
        assert!(
            stdout.contains(&format!("{collection}: "))
                && stdout.contains("1000 compared (sample): identical"),
            "{collection}: {}",
            describe(&result)
        );
        assert_eq!(queries, 100, "{collection}: {}", describe(&result));
    }

    // A sample can hit any row: one damaged among the ten far ids is found when every point
    // is asked for, and one row in ten damaged is found by a sample of 1000.
    let mut pg = db.client();
    pg.execute(
        "UPDATE clustered SET payload = '{\"damaged\": true}' WHERE id = $1",
        &[&((far + 3) as i64)],
    )
    .expect("damage a row");
    let (result, stdout, _) = sample_and_search(&server, &db, "clustered", 50_000);
    assert_eq!(result.status.code(), Some(1), "{}", describe(&result));
    assert!(
        stdout.contains("20000 compared (sample): DIFFERENT")
            && stdout.contains(&format!("id {}: payload differs", far + 3)),
        "{}",
        describe(&result)
    );
    for collection in ["sparse", "uuid", "mixed"] {
        pg.batch_execute(&format!(
            "UPDATE {collection} SET payload = '{{\"damaged\": true}}' \
             WHERE abs(hashtext(id::text)) % 10 = 0"
        ))
        .expect("damage rows");
        let (result, stdout, _) = sample_and_search(&server, &db, collection, 1000);
        assert_eq!(result.status.code(), Some(1), "{}", describe(&result));
        assert!(
            stdout.contains("1000 compared (sample): DIFFERENT"),
            "{collection}: {}",
            describe(&result)
        );
    }
}
