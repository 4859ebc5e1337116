//! The genuine-Qdrant tier: what only a genuine Qdrant 1.18.3 can show.
//!
//! Every other test module runs against the genuine server too where it is installed
//! (`support::qdrant`); the tests here need its REST API or its own behaviour and are skipped,
//! with one line, where it is not.

use std::io::{BufRead, BufReader};

use crate::support::exact_json::parse_json_exactly;
use qdrant_client::qdrant::{self as grpc, vectors_config};
use qdrant2pg::point_id::PointKey;
use qdrant2pg::source::edge::convert::json_to_grpc;
use serde_json::{Value as Json, json};

use crate::support::cli::{assert_ok, describe, qdrant2pg};
use crate::support::flows::{FIXTURES, fixtures_dir, runtime, upsert};
use crate::support::genuine_qdrant::encode;
use crate::support::pg::PgCluster;
use crate::support::qdrant::QdrantServer;

/// Every point of `collection` as the server's REST scroll returns it, in its order.
pub fn rest_scroll(server: &QdrantServer, collection: &str) -> Vec<Json> {
    let genuine = server.as_genuine().expect("a genuine server");
    let mut points = Vec::new();
    let mut offset = Json::Null;
    loop {
        let page = genuine.rest(
            "POST",
            &format!("/collections/{}/points/scroll", encode(collection)),
            Some(&json!({
                "limit": 256,
                "offset": offset,
                "with_payload": true,
                "with_vector": true,
            })),
        );
        points.extend(page["points"].as_array().expect("points").iter().cloned());
        offset = page["next_page_offset"].clone();
        if offset.is_null() {
            return points;
        }
    }
}

/// The harness itself: a fixture snapshot uploaded to the genuine server serves exactly the
/// points the server that made it recorded (tests/fixtures), so every test that loads fixtures
/// starts from the recorded truth.
#[test]
fn uploaded_fixtures_serve_the_recorded_points() {
    let Some(server) = QdrantServer::genuine() else {
        return;
    };
    for name in FIXTURES {
        server.load_snapshot(name, &fixtures_dir().join(format!("{name}.snapshot.gz")));
        let truth: Vec<Json> = BufReader::new(flate2::read::GzDecoder::new(
            std::fs::File::open(fixtures_dir().join(format!("{name}.points.jsonl.gz")))
                .expect("fixture"),
        ))
        .lines()
        .map(|line| parse_json_exactly(&line.expect("a line")).expect("JSON"))
        .collect();
        let served = rest_scroll(&server, name);
        assert_eq!(served.len(), truth.len(), "{name}: points");
        for (served, truth) in served.iter().zip(&truth) {
            assert_eq!(served["id"], truth["id"], "{name}: order");
            assert_eq!(
                served["vector"], truth["vector"],
                "{name}: vectors of {}",
                truth["id"]
            );
            assert_eq!(
                served["payload"], truth["payload"],
                "{name}: payload of {}",
                truth["id"]
            );
        }
    }
}

const API_KEY: &str = "genuine-tier-key";

/// One collection per data shape of the README's mapping table, each with hazard payloads,
/// loaded through the gRPC API of a genuine server that requires an API key.
fn load_shapes(server: &QdrantServer) -> Vec<&'static str> {
    let rt = runtime();
    let client = qdrant_client::Qdrant::from_url(&server.url())
        .api_key(API_KEY)
        .skip_compatibility_check()
        .build()
        .expect("a client");
    let dense =
        |size: u64, distance: grpc::Distance, datatype: grpc::Datatype| grpc::VectorParams {
            size,
            distance: distance as i32,
            datatype: Some(datatype as i32),
            ..Default::default()
        };
    let named = |pairs: Vec<(&str, grpc::VectorParams)>| grpc::VectorsConfig {
        config: Some(vectors_config::Config::ParamsMap(grpc::VectorParamsMap {
            map: pairs.into_iter().map(|(n, p)| (n.to_owned(), p)).collect(),
        })),
    };
    let unnamed = |p: grpc::VectorParams| grpc::VectorsConfig {
        config: Some(vectors_config::Config::Params(p)),
    };
    let f32_ = grpc::Datatype::Float32;
    // (collection, vectors, with a sparse vector, shards, the id of point i)
    type Shape = (
        &'static str,
        grpc::VectorsConfig,
        bool,
        u32,
        fn(u64) -> PointKey,
    );
    let shapes: Vec<Shape> = vec![
        (
            "ints",
            unnamed(dense(8, grpc::Distance::Cosine, f32_)),
            false,
            1,
            |i| PointKey::Num(i * 7),
        ),
        (
            "uuids",
            named(vec![
                ("a", dense(6, grpc::Distance::Dot, f32_)),
                ("b b", dense(4, grpc::Distance::Euclid, f32_)),
            ]),
            false,
            1,
            |i| {
                PointKey::Uuid(
                    u128::from(i).wrapping_mul(0x9E37_79B9_7F4A_7C15_F39C_C060_5CED_C835),
                )
            },
        ),
        (
            "mixed",
            unnamed(dense(5, grpc::Distance::Manhattan, f32_)),
            false,
            2,
            |i| {
                if i % 2 == 0 {
                    PointKey::Num(i)
                } else {
                    PointKey::Uuid(u128::from(i) << 64 | 0xAB)
                }
            },
        ),
        (
            "wide",
            unnamed(dense(3, grpc::Distance::Euclid, f32_)),
            false,
            1,
            |i| PointKey::Num(u64::MAX - i * 1_000_003),
        ),
        (
            "kinds",
            named(vec![
                (
                    "h",
                    dense(6, grpc::Distance::Euclid, grpc::Datatype::Float16),
                ),
                ("u", dense(6, grpc::Distance::Euclid, grpc::Datatype::Uint8)),
                (
                    "m",
                    grpc::VectorParams {
                        multivector_config: Some(grpc::MultiVectorConfig {
                            comparator: grpc::MultiVectorComparator::MaxSim as i32,
                        }),
                        ..dense(3, grpc::Distance::Cosine, f32_)
                    },
                ),
            ]),
            true,
            1,
            PointKey::Num,
        ),
    ];
    let mut names = Vec::new();
    for (name, vectors, sparse, shards, id) in shapes {
        rt.block_on(client.create_collection(grpc::CreateCollection {
            collection_name: name.into(),
            vectors_config: Some(vectors.clone()),
            sparse_vectors_config: sparse.then(|| grpc::SparseVectorConfig {
                map: [("s".to_owned(), grpc::SparseVectorParams::default())].into(),
            }),
            shard_number: Some(shards),
            ..Default::default()
        }))
        .expect("create collection");
        let points = (0..240u64)
            .map(|i| {
                let values = |n: usize| -> Vec<f32> {
                    (0..n)
                        .map(|j| ((i * 31 + j as u64 * 17) % 97) as f32 * 0.25 - 9.0)
                        .collect()
                };
                let uint8 = |n: usize| -> Vec<f32> {
                    (0..n).map(|j| ((i + j as u64) % 256) as f32).collect()
                };
                let vector = |data: Vec<f32>| grpc::Vector {
                    vector: Some(grpc::vector::Vector::Dense(grpc::DenseVector { data })),
                    ..Default::default()
                };
                let mut map = std::collections::HashMap::new();
                match vectors.config.as_ref().expect("config") {
                    vectors_config::Config::Params(p) => {
                        map.insert(String::new(), vector(values(p.size as usize)));
                    }
                    vectors_config::Config::ParamsMap(m) => {
                        for (vname, p) in &m.map {
                            // Some points lack some named vectors.
                            if i % 5 == 4 && vname != "a" {
                                continue;
                            }
                            let v = match vname.as_str() {
                                "u" => vector(uint8(p.size as usize)),
                                "m" => grpc::Vector {
                                    vector: Some(grpc::vector::Vector::MultiDense(
                                        grpc::MultiDenseVector {
                                            vectors: (0..1 + i % 3)
                                                .map(|r| grpc::DenseVector {
                                                    data: values(3)
                                                        .iter()
                                                        .map(|v| v + r as f32)
                                                        .collect(),
                                                })
                                                .collect(),
                                        },
                                    )),
                                    ..Default::default()
                                },
                                _ => vector(values(p.size as usize)),
                            };
                            map.insert(vname.clone(), v);
                        }
                    }
                }
                if sparse && i % 3 != 0 {
                    map.insert(
                        "s".to_owned(),
                        grpc::Vector {
                            vector: Some(grpc::vector::Vector::Sparse(grpc::SparseVector {
                                indices: vec![(i % 11) as u32, 100 + i as u32, 70_000],
                                values: vec![0.5, -1.25, i as f32],
                            })),
                            ..Default::default()
                        },
                    );
                }
                let vectors = if map.len() == 1 && map.contains_key("") {
                    grpc::Vectors {
                        vectors_options: Some(grpc::vectors::VectorsOptions::Vector(
                            map.remove("").expect("unnamed"),
                        )),
                    }
                } else {
                    grpc::Vectors {
                        vectors_options: Some(grpc::vectors::VectorsOptions::Vectors(
                            grpc::NamedVectors { vectors: map },
                        )),
                    }
                };
                let payload = json!({
                    "n": i,
                    "text": format!("a|b\\c\nd\t\"é😀\u{2028} {i}"),
                    "nested": {"list": [i, 0.5, null, true, {"k|\\": "v"}]},
                    "f": -0.0,
                });
                grpc::PointStruct {
                    id: Some(id(i).to_proto()),
                    vectors: Some(vectors),
                    payload: payload
                        .as_object()
                        .expect("an object")
                        .iter()
                        .map(|(k, v)| (k.clone(), json_to_grpc(v.clone())))
                        .collect(),
                }
            })
            .collect();
        upsert(&rt, &client, name, points);
        names.push(name);
    }
    names
}

/// Every shape through every flow against a genuine server that requires an API key: export →
/// import and migrate (plain arrays and pgvector), `verify --full` identical, `plan`, and
/// `--snapshot` of snapshots the server itself made exporting exactly what the live export does.
#[test]
fn every_shape_through_every_flow_with_an_api_key() {
    let Some(server) = QdrantServer::genuine_with(Some(API_KEY)) else {
        return;
    };
    let names = load_shapes(&server);
    let url = server.url();
    let key = ["--api-key", API_KEY];
    let work = tempfile::tempdir().expect("tempdir");
    let path = |p: &std::path::Path| p.to_str().expect("utf-8").to_owned();

    let plan = qdrant2pg(&[&["plan", "--url", &url][..], &key].concat());
    assert_ok(&plan);
    let text = String::from_utf8_lossy(&plan.stdout);
    for needle in [
        "collection ints",
        "id column:        id bigint",
        "id column:        id uuid",
        "id column:        id text",
        "id column:        id numeric(20,0)",
        "vector h            dense, size 6, float16",
        "vector u            dense, size 6, uint8",
        "vector m            multivector",
        "vector s            sparse",
    ] {
        assert!(text.contains(needle), "plan lacks {needle:?}:\n{text}");
    }

    // One live export per vector syntax: arrays (postgres, adbpg) and pgvector's types.
    let live = work.path().join("postgres");
    let common = [
        "--cursors",
        "1",
        "--encoders",
        "1",
        "--max-lines",
        "100",
        "--quiet",
    ];
    for dialect in ["postgres", "pgvector"] {
        let out = work.path().join(dialect);
        let args = [
            "export",
            "--url",
            &url,
            "--output",
            &path(&out),
            "--dialect",
            dialect,
        ];
        assert_ok(&qdrant2pg(&[&args[..], &key, &common].concat()));
    }
    let snapshots = work.path().join("snapshots");
    std::fs::create_dir(&snapshots).expect("mkdir");
    for name in &names {
        server.write_snapshot(name, &snapshots.join(format!("{name}.snapshot")));
    }
    let offline = work.path().join("offline");
    assert_ok(&qdrant2pg(
        &[
            &[
                "export",
                "--snapshot",
                &path(&snapshots),
                "--output",
                &path(&offline),
            ][..],
            &common,
        ]
        .concat(),
    ));
    for name in &names {
        assert_eq!(
            data_rows(&live.join(name)),
            data_rows(&offline.join(name)),
            "{name}: the snapshot the server made exports other rows than the live export"
        );
    }

    for (cluster, dialect) in [
        (PgCluster::pg15(), "postgres"),
        (PgCluster::pg18_vector(), "pgvector"),
    ] {
        let db = cluster.create_database();
        let dsn = db.dsn();
        assert_ok(&qdrant2pg(&[
            "import",
            "--dsn",
            &dsn,
            "--data",
            &path(&work.path().join(dialect)),
            "--schema",
            "imported",
            "--dialect",
            dialect,
            "--quiet",
        ]));
        assert_ok(&qdrant2pg(
            &[
                &[
                    "migrate",
                    "--url",
                    &url,
                    "--dsn",
                    &dsn,
                    "--schema",
                    "migrated",
                    "--dialect",
                    dialect,
                ][..],
                &key,
                &["--quiet"],
            ]
            .concat(),
        ));
        for schema in ["imported", "migrated"] {
            let out = qdrant2pg(
                &[
                    &[
                        "verify", "--url", &url, "--dsn", &dsn, "--schema", schema, "--full",
                        "--quiet",
                    ][..],
                    &key,
                ]
                .concat(),
            );
            assert_ok(&out);
            assert_eq!(
                String::from_utf8_lossy(&out.stdout)
                    .matches("identical")
                    .count(),
                names.len(),
                "{dialect} {schema}: {}",
                describe(&out)
            );
        }
    }
}

/// The data rows of one collection's export, sorted: what two exports cut into files alike
/// must share, byte for byte.
fn data_rows(dir: &std::path::Path) -> Vec<Vec<u8>> {
    let mut rows = Vec::new();
    for entry in std::fs::read_dir(dir).expect("an export directory") {
        let path = entry.expect("entry").path();
        if path.extension().is_some_and(|e| e == "csv") {
            let bytes = std::fs::read(&path).expect("read");
            rows.extend(
                bytes
                    .split(|b| *b == b'\n')
                    .skip(1)
                    .filter(|l| !l.is_empty())
                    .map(<[u8]>::to_vec),
            );
        }
    }
    rows.sort();
    rows
}
