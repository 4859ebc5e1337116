//! `verify --search`: a migrated collection answers nearest-neighbour searches as Qdrant does.
//!
//! 10,000 points of 128-d vectors, one named vector per Qdrant distance (Cosine, Dot, Euclid,
//! Manhattan), a float16 one that becomes `halfvec`, and a sparse one, loaded into Qdrant through
//! its gRPC API, migrated into PostgreSQL 18 + pgvector, indexed by `qdrant2pg index` (HNSW with
//! the collection's own m and ef_construct), then searched: recall@10 against Qdrant's exact
//! search must reach 0.95 for every vector, and a table whose vectors were changed must fail.

use std::collections::HashMap;

use qdrant_client::qdrant::{self as grpc, vectors_config};
use serde_json::Value as Json;

use crate::support::cli::{assert_ok, describe, qdrant2pg};
use crate::support::flows::{client, runtime, upsert};
use crate::support::pg::{PgCluster, TestDb};
use crate::support::qdrant::QdrantServer;

const POINTS: u64 = 10_000;
const DIM: usize = 128;
/// Clusters the dense vectors gather around, as embeddings do.
const CENTRES: usize = 64;
/// Sparse vectors, as a text model makes them: `SPARSE_ENTRIES` words, most from the point's
/// topic (`TOPIC_WORDS` words of a `VOCABULARY`), a few from anywhere.
const SPARSE_ENTRIES: usize = 32;
const TOPIC_WORDS: u64 = 48;
const VOCABULARY: u64 = 5_000;
const COLLECTION: &str = "knn";
/// The dense vectors and the distance each is searched by.
const DENSE: [(&str, grpc::Distance, grpc::Datatype); 5] = [
    ("cos", grpc::Distance::Cosine, grpc::Datatype::Float32),
    ("dot", grpc::Distance::Dot, grpc::Datatype::Float32),
    ("l2", grpc::Distance::Euclid, grpc::Datatype::Float32),
    ("l1", grpc::Distance::Manhattan, grpc::Datatype::Float32),
    ("half", grpc::Distance::Euclid, grpc::Datatype::Float16),
];

/// splitmix64: the same data on every run.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in [-1, 1).
    fn unit(&mut self) -> f32 {
        (self.next() >> 40) as f32 / (1u64 << 23) as f32 - 1.0
    }
}

fn dense(data: Vec<f32>) -> grpc::Vector {
    grpc::Vector {
        vector: Some(grpc::vector::Vector::Dense(grpc::DenseVector { data })),
        ..Default::default()
    }
}

/// The collection: every vector kind `verify --search` can measure, with HNSW m=24,
/// ef_construct=120 so the index parameters can be seen to carry over.
fn load(server: &QdrantServer) {
    let rt = runtime();
    let client = client(server);
    let params = |distance: grpc::Distance, datatype: grpc::Datatype| grpc::VectorParams {
        size: DIM as u64,
        distance: distance as i32,
        datatype: Some(datatype as i32),
        ..Default::default()
    };
    rt.block_on(
        client.create_collection(grpc::CreateCollection {
            collection_name: COLLECTION.into(),
            vectors_config: Some(grpc::VectorsConfig {
                config: Some(vectors_config::Config::ParamsMap(grpc::VectorParamsMap {
                    map: DENSE
                        .iter()
                        .map(|(name, distance, datatype)| {
                            (name.to_string(), params(*distance, *datatype))
                        })
                        .collect(),
                })),
            }),
            sparse_vectors_config: Some(grpc::SparseVectorConfig {
                map: HashMap::from([("words".to_owned(), grpc::SparseVectorParams::default())]),
            }),
            hnsw_config: Some(grpc::HnswConfigDiff {
                m: Some(24),
                ef_construct: Some(120),
                ..Default::default()
            }),
            ..Default::default()
        }),
    )
    .expect("create collection");
    let mut rng = Rng(7);
    let centres: Vec<Vec<f32>> = (0..CENTRES)
        .map(|_| (0..DIM).map(|_| rng.unit()).collect())
        .collect();
    for chunk in (0..POINTS).collect::<Vec<_>>().chunks(500) {
        let points = chunk
            .iter()
            .map(|&id| {
                let mut vectors: HashMap<String, grpc::Vector> = DENSE
                    .iter()
                    .map(|(name, ..)| {
                        let centre = &centres[(rng.next() % CENTRES as u64) as usize];
                        let data = centre.iter().map(|c| c + 0.35 * rng.unit()).collect();
                        (name.to_string(), dense(data))
                    })
                    .collect();
                let topic = rng.next() % CENTRES as u64;
                let mut indices: Vec<u32> = (0..SPARSE_ENTRIES)
                    .map(|i| {
                        let word = if i % 4 == 3 {
                            rng.next() % VOCABULARY
                        } else {
                            (topic * TOPIC_WORDS + rng.next() % TOPIC_WORDS) % VOCABULARY
                        };
                        word as u32
                    })
                    .collect();
                indices.sort_unstable();
                indices.dedup();
                let values = indices.iter().map(|_| rng.unit().abs() + 0.01).collect();
                vectors.insert(
                    "words".to_owned(),
                    grpc::Vector {
                        vector: Some(grpc::vector::Vector::Sparse(grpc::SparseVector {
                            indices,
                            values,
                        })),
                        ..Default::default()
                    },
                );
                grpc::PointStruct {
                    id: Some(id.into()),
                    vectors: Some(grpc::Vectors {
                        vectors_options: Some(grpc::vectors::VectorsOptions::Vectors(
                            grpc::NamedVectors { vectors },
                        )),
                    }),
                    payload: HashMap::new(),
                }
            })
            .collect();
        upsert(&rt, &client, COLLECTION, points);
    }
}

/// `verify --search 200 --top 10` with a JSON report: the exit status, stdout, and recall per
/// vector.
fn verify_search(server: &QdrantServer, db: &TestDb) -> (bool, String, HashMap<String, f64>) {
    let report = tempfile::NamedTempFile::new().expect("report file");
    let (url, dsn) = (server.url(), db.dsn());
    let out = qdrant2pg(&[
        "verify",
        "--url",
        &url,
        "--dsn",
        &dsn,
        "--search",
        "200",
        "--top",
        "10",
        "--quiet",
        "--report-json",
        report.path().to_str().expect("utf-8"),
    ]);
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let json: Json = serde_json::from_slice(&std::fs::read(report.path()).expect("report"))
        .unwrap_or_else(|e| panic!("report: {e}\n{}", describe(&out)));
    let recalls = json["search"]
        .as_array()
        .unwrap_or_else(|| panic!("no search in the report\n{}", describe(&out)))
        .iter()
        .filter_map(|s| Some((s["vector"].as_str()?.to_owned(), s["recall"].as_f64()?)))
        .collect();
    (out.status.success(), stdout, recalls)
}

#[test]
fn searches_answer_as_qdrant_does_for_every_distance_and_fail_on_changed_vectors() {
    let server = QdrantServer::start();
    load(&server);
    let db = PgCluster::pg18_vector().create_database();
    let (url, dsn) = (server.url(), db.dsn());
    assert_ok(&qdrant2pg(&[
        "migrate",
        "--url",
        &url,
        "--dsn",
        &dsn,
        "--dialect",
        "pgvector",
        "--halfvec",
        "float16",
        "--quiet",
    ]));
    assert_ok(&qdrant2pg(&[
        "index", "--url", &url, "--dsn", &dsn, "--quiet",
    ]));
    let definitions: Vec<String> = db
        .client()
        .query(
            "SELECT indexdef FROM pg_indexes WHERE tablename = $1 AND indexdef LIKE '%hnsw%'",
            &[&COLLECTION],
        )
        .expect("pg_indexes")
        .iter()
        .map(|r| r.get(0))
        .collect();
    // Dense vectors carry the collection's HNSW settings; Qdrant indexes sparse vectors with
    // an inverted index, which has none, so pgvector's defaults serve there.
    for (opclass, collection_settings) in [
        ("vector_cosine_ops", true),
        ("vector_ip_ops", true),
        ("vector_l2_ops", true),
        ("vector_l1_ops", true),
        ("halfvec_l2_ops", true),
        ("sparsevec_ip_ops", false),
    ] {
        let index = definitions
            .iter()
            .find(|d| d.contains(opclass))
            .unwrap_or_else(|| panic!("no {opclass} index in {definitions:#?}"));
        assert_eq!(
            index.contains("m='24'") && index.contains("ef_construction='120'"),
            collection_settings,
            "the collection's HNSW settings: {index}"
        );
    }

    let (passed, stdout, recalls) = verify_search(&server, &db);
    eprintln!("recall@10 against Qdrant's exact search, 200 queries: {recalls:?}");
    assert!(passed, "{stdout}");
    for vector in ["cos", "dot", "l2", "l1", "half", "words"] {
        let recall = recalls
            .get(vector)
            .unwrap_or_else(|| panic!("{vector} not measured:\n{stdout}"));
        assert!(*recall >= 0.95, "{vector}: recall@10 {recall}\n{stdout}");
    }

    // Half the Euclid vectors replaced by other vectors of the same shape: the table no longer
    // answers Euclid searches as Qdrant does, and verify says which vector.
    db.client()
        .batch_execute(&format!("UPDATE {COLLECTION} SET l2 = l1 WHERE id % 2 = 0"))
        .expect("change vectors");
    let (passed, stdout, recalls) = verify_search(&server, &db);
    assert!(!passed, "{stdout}");
    assert!(recalls["l2"] < 0.95, "{recalls:?}");
    assert!(
        stdout
            .lines()
            .any(|l| l.contains("search \"l2\"") && l.contains("BELOW --min-recall")),
        "{stdout}"
    );
    assert!(recalls["cos"] >= 0.95, "{recalls:?}");
}
