//! `verify --search`: a migrated collection answers nearest-neighbour searches as Qdrant does,
//! and verify says what the application needs for that.
//!
//! Against a genuine Qdrant 1.18.3 and PostgreSQL 18 + pgvector 0.8.5, through `migrate` and
//! `index` as a user runs them:
//! - 10,000 points of 128-d vectors, one named vector per Qdrant distance (Cosine, Dot, Euclid,
//!   Manhattan), a float16 one that becomes `halfvec`, and a sparse one, indexed with the
//!   collection's own m and ef_construct: recall@10 against Qdrant's exact search reaches 0.95
//!   for every vector, and a table whose vectors were changed fails;
//! - 5,000 points whose vectors need more than pgvector's default `ef_search`, or a larger graph
//!   than the collection's settings give, with payload filters keeping 1 %, 10 %, 50 % and none
//!   of the points: the ef_search each needs is found and said, both engines are timed, a larger
//!   graph is measured and its advice works, filtered searches reach the recall asked for (and
//!   a filter keeping nothing returns nothing), and damaged vectors fail at every rung.

use std::collections::HashMap;

use qdrant_client::qdrant::{self as grpc, vectors_config};
use serde_json::Value as Json;

use crate::support::cli::{assert_ok, describe, qdrant2pg};
use crate::support::flows::{client, client_at, runtime, upsert};
use crate::support::pg::{PgCluster, TestDb};
use crate::support::qdrant::QdrantServer;
use crate::support::rng::Rng;
use crate::support::vectors::{dense, sparse};

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
            // Graphs for these 10,000 points too (each vector's 5 MB is under Qdrant's default
            // threshold of 10,000 KB, below which it searches in full), so that Qdrant's side
            // of the latency is its HNSW search.
            optimizers_config: Some(grpc::OptimizersConfigDiff {
                indexing_threshold: Some(100),
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
                let indices: Vec<u32> = (0..SPARSE_ENTRIES)
                    .map(|i| {
                        let word = if i % 4 == 3 {
                            rng.next() % VOCABULARY
                        } else {
                            (topic * TOPIC_WORDS + rng.next() % TOPIC_WORDS) % VOCABULARY
                        };
                        word as u32
                    })
                    .collect();
                vectors.insert("words".to_owned(), sparse(&mut rng, indices));
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
    // Every dense vector and the sparse one of every point.
    wait_for_graphs(&rt, &client, COLLECTION, POINTS * (DENSE.len() as u64 + 1));
}

/// Waits until Qdrant has indexed `vectors` vectors of `collection` (in graphs, or inverted
/// indexes for sparse vectors) and its status is green: its own search is then the one an
/// application of that size gets.
fn wait_for_graphs(
    rt: &tokio::runtime::Runtime,
    client: &qdrant_client::Qdrant,
    collection: &str,
    vectors: u64,
) {
    let started = std::time::Instant::now();
    loop {
        let info = rt
            .block_on(client.collection_info(collection))
            .expect("collection info")
            .result
            .expect("a collection");
        let green = info.status == grpc::CollectionStatus::Green as i32;
        if green && info.indexed_vectors_count.unwrap_or(0) >= vectors {
            return;
        }
        assert!(
            started.elapsed() < std::time::Duration::from_secs(600),
            "Qdrant did not finish indexing: {info:?}"
        );
        std::thread::sleep(std::time::Duration::from_millis(500));
    }
}

/// `verify --search 200 --top 10 extra…` with a JSON report: the exit status, stdout, and
/// recall per vector.
fn verify_search(
    server: &QdrantServer,
    db: &TestDb,
    extra: &[&str],
) -> (bool, String, HashMap<String, f64>) {
    let (out, json) = verify_json(
        server,
        db,
        &[&["--search", "200", "--top", "10"], extra].concat(),
    );
    print_measured(&json);
    let recalls = searches(&json, &out)
        .filter_map(|s| Some((s["vector"].as_str()?.to_owned(), s["recall"].as_f64()?)))
        .collect();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        recalls,
    )
}

/// `verify --quiet args…` with a JSON report: the output and the report.
fn verify_json(server: &QdrantServer, db: &TestDb, args: &[&str]) -> (std::process::Output, Json) {
    let report = tempfile::NamedTempFile::new().expect("report file");
    let (url, dsn) = (server.url(), db.dsn());
    let mut all = vec![
        "verify",
        "--url",
        &url,
        "--dsn",
        &dsn,
        "--quiet",
        "--report-json",
    ];
    all.push(report.path().to_str().expect("utf-8"));
    all.extend_from_slice(args);
    let out = qdrant2pg(&all);
    let json: Json = serde_json::from_slice(&std::fs::read(report.path()).expect("report"))
        .unwrap_or_else(|e| panic!("report: {e}\n{}", describe(&out)));
    (out, json)
}

/// Prints what a report measured, one line per vector and filter, for docs/verification.md.
fn print_measured(json: &Json) {
    let latency = |l: &Json| {
        format!(
            "p50 {:.2} ms, p95 {:.2} ms, {:.0} QPS",
            l["p50_ms"].as_f64().unwrap_or(0.0),
            l["p95_ms"].as_f64().unwrap_or(0.0),
            l["qps"].as_f64().unwrap_or(0.0)
        )
    };
    for s in json["search"].as_array().into_iter().flatten() {
        eprintln!(
            "measured {}: recall@10 {:.3} at ef_search {} ({} queries); PostgreSQL {}; Qdrant \
             (own recall {:.3}) {} ({} clients)",
            s["vector"].as_str().unwrap_or("?"),
            s["recall"].as_f64().unwrap_or(0.0),
            s["setting"]["ef_search"],
            s["queries"],
            latency(&s["latency"]["postgres"]),
            s["qdrant_recall"].as_f64().unwrap_or(0.0),
            latency(&s["latency"]["qdrant"]),
            s["latency"]["postgres"]["clients"],
        );
        let measured = s["filters"].as_array().into_iter().flatten();
        for f in measured.filter(|f| f["skipped"].is_null()) {
            eprintln!(
                "measured {} filter {:.0} %: recall@10 {:.3} at iterative_scan {}, ef_search {}",
                s["vector"].as_str().unwrap_or("?"),
                f["share"].as_f64().unwrap_or(0.0) * 100.0,
                f["recall"].as_f64().unwrap_or(0.0),
                f["setting"]["iterative_scan"].as_str().unwrap_or("?"),
                f["setting"]["ef_search"],
            );
        }
    }
}

/// The report's search entries.
fn searches<'a>(json: &'a Json, out: &std::process::Output) -> impl Iterator<Item = &'a Json> {
    json["search"]
        .as_array()
        .unwrap_or_else(|| panic!("no search in the report\n{}", describe(out)))
        .iter()
}

/// The report's entry for `vector`.
fn search_of<'a>(json: &'a Json, out: &std::process::Output, vector: &str) -> &'a Json {
    searches(json, out)
        .find(|s| s["vector"] == vector)
        .unwrap_or_else(|| panic!("{vector} not in the report\n{}", describe(out)))
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

    let (passed, stdout, recalls) = verify_search(&server, &db, &[]);
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
    // At one ef_search, as before --ef-search auto (the ladder and a larger graph on damaged
    // vectors are tested below, on a smaller table).
    let (passed, stdout, recalls) = verify_search(&server, &db, &["--ef-search", "200"]);
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

/// The collection of the ef_search tests: 5,000 points, payloads that filters keep 1 %, 10 % and
/// 50 % of, and three vectors — `steep` (64-d uniform, HNSW m=4: pgvector needs more than its
/// default ef_search for recall 0.95), `thin` (64-d clustered, m=2: no ef_search is enough, a
/// larger graph is), and `words` (sparse: 1–16 random words of 4,000).
const EF_COLLECTION: &str = "knn_ef";
const EF_POINTS: u64 = 5_000;
const EF_DIM: usize = 64;

fn load_ef(server: &QdrantServer) {
    let rt = runtime();
    let client = client_at(&server.url());
    let params = |distance: grpc::Distance, m: u64| grpc::VectorParams {
        size: EF_DIM as u64,
        distance: distance as i32,
        hnsw_config: Some(grpc::HnswConfigDiff {
            m: Some(m),
            ef_construct: Some(100),
            ..Default::default()
        }),
        ..Default::default()
    };
    rt.block_on(client.create_collection(grpc::CreateCollection {
        collection_name: EF_COLLECTION.into(),
        vectors_config: Some(grpc::VectorsConfig {
            config: Some(vectors_config::Config::ParamsMap(grpc::VectorParamsMap {
                map: HashMap::from([
                    ("steep".to_owned(), params(grpc::Distance::Cosine, 4)),
                    ("thin".to_owned(), params(grpc::Distance::Euclid, 2)),
                ]),
            })),
        }),
        sparse_vectors_config: Some(grpc::SparseVectorConfig {
            map: HashMap::from([("words".to_owned(), grpc::SparseVectorParams::default())]),
        }),
        ..Default::default()
    }))
    .expect("create collection");
    for (field, kind) in [
        ("kw", grpc::FieldType::Keyword),
        ("num", grpc::FieldType::Integer),
        ("flag", grpc::FieldType::Bool),
    ] {
        rt.block_on(client.create_field_index(grpc::CreateFieldIndexCollection {
            collection_name: EF_COLLECTION.into(),
            wait: Some(true),
            field_name: field.into(),
            field_type: Some(kind as i32),
            ..Default::default()
        }))
        .expect("payload index");
    }
    let mut rng = Rng(11);
    let centres: Vec<Vec<f32>> = (0..CENTRES)
        .map(|_| (0..EF_DIM).map(|_| rng.unit()).collect())
        .collect();
    for chunk in (0..EF_POINTS).collect::<Vec<_>>().chunks(500) {
        let points = chunk
            .iter()
            .map(|&id| {
                // Uniform in the cube: hard for a graph of 4 links per node. Clustered: easy
                // for 4 links, while 2 leave clusters unreachable at any ef_search (on this
                // machine m=2 measured recall@10 0.77 at ef_search 1000, m=4 0.999 at 40).
                let steep = dense((0..EF_DIM).map(|_| rng.unit()).collect());
                let centre = &centres[(rng.next() % CENTRES as u64) as usize];
                let thin = dense(centre.iter().map(|c| c + 0.35 * rng.unit()).collect());
                let mut vectors =
                    HashMap::from([("steep".to_owned(), steep), ("thin".to_owned(), thin)]);
                let words = 1 + rng.next() % 16;
                let indices: Vec<u32> = (0..words).map(|_| (rng.next() % 4_000) as u32).collect();
                vectors.insert("words".to_owned(), sparse(&mut rng, indices));
                let payload = HashMap::from([
                    ("kw".to_owned(), grpc::Value::from(format!("k{}", id % 100))),
                    ("num".to_owned(), grpc::Value::from((id % 100) as i64)),
                    ("flag".to_owned(), grpc::Value::from(id % 2 == 0)),
                ]);
                grpc::PointStruct {
                    id: Some(id.into()),
                    vectors: Some(grpc::Vectors {
                        vectors_options: Some(grpc::vectors::VectorsOptions::Vectors(
                            grpc::NamedVectors { vectors },
                        )),
                    }),
                    payload,
                }
            })
            .collect();
        upsert(&rt, &client, EF_COLLECTION, points);
    }
}

/// Filters keeping 1 %, 10 %, 50 % and none of the points, and one with no SQL form.
const FILTERS: &str = r#"{"must": [{"key": "kw", "match": {"value": "k7"}}]}
{"must": [{"key": "num", "range": {"lt": 10}}]}
{"must": [{"key": "flag", "match": {"value": true}}]}
{"must": [{"key": "kw", "match": {"value": "nobody"}}]}
{"must": [{"key": "kw", "geo_radius": {"center": {"lon": 0, "lat": 0}, "radius": 1}}]}
"#;

/// The recalls of a report entry's ladder (or a trial's rungs).
fn recalls(rungs: &Json) -> Vec<f64> {
    rungs
        .as_array()
        .map(|r| r.iter().filter_map(|r| r["recall"].as_f64()).collect())
        .unwrap_or_default()
}

#[test]
fn the_ef_search_each_vector_needs_is_found_timed_and_set_and_filters_keep_their_recall() {
    let server = QdrantServer::start();
    load_ef(&server);
    let db = PgCluster::pg18_vector().create_database();
    let (url, dsn) = (server.url(), db.dsn());
    for command in ["migrate", "index"] {
        let mut args = vec![command, "--url", &url, "--dsn", &dsn, "--quiet"];
        if command == "migrate" {
            args.extend(["--dialect", "pgvector"]);
        }
        assert_ok(&qdrant2pg(&args));
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let filters = dir.path().join("filters.jsonl");
    std::fs::write(&filters, FILTERS).expect("write filters");
    let filter_arg = filters.to_str().expect("utf-8");

    // At the defaults: --ef-search auto, -j 2.
    let (out, json) = verify_json(&server, &db, &["--search", "100", "--filter", filter_arg]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    eprintln!("{stdout}");
    print_measured(&json);
    assert_eq!(
        out.status.code(),
        Some(1),
        "thin misses at every rung\n{}",
        describe(&out)
    );

    // `steep` needs more than pgvector's default, and the smallest rung that reaches is found.
    let steep = search_of(&json, &out, "steep");
    let ladder = recalls(&steep["ladder"]);
    let (last, before) = ladder.split_last().expect("rungs");
    assert!(*last >= 0.95 && !before.is_empty(), "{ladder:?}");
    assert!(before.iter().all(|r| *r < 0.95), "{ladder:?}");
    assert_eq!(steep["reached"], true);
    let ef_search = steep["setting"]["ef_search"].as_u64().expect("ef_search");
    assert!(ef_search > 40, "{steep}");
    assert!(
        stdout.contains(&format!(
            "at ef_search {ef_search} — the smallest of the ladder"
        )),
        "{stdout}"
    );
    // Both engines timed on the same queries.
    for engine in ["postgres", "qdrant"] {
        let latency = &steep["latency"][engine];
        let (p50, p95) = (latency["p50_ms"].as_f64(), latency["p95_ms"].as_f64());
        assert!(
            p50.is_some_and(|p| p > 0.0) && p95 >= p50,
            "{engine}: {latency}"
        );
        assert!(
            latency["qps"].as_f64().is_some_and(|q| q > 0.0),
            "{latency}"
        );
        assert_eq!(latency["clients"], 2, "-j 2 by default");
        assert_eq!(latency["queries"], 100);
    }
    assert!(
        stdout.contains("latency, 100 queries: PostgreSQL at ef_search"),
        "{stdout}"
    );

    // Each filter: counted alike on both sides, the setting that reaches 0.95 found; the one
    // keeping nothing returns nothing; the one with no SQL form named and skipped.
    for vector in ["steep", "words"] {
        let filtered = search_of(&json, &out, vector)["filters"]
            .as_array()
            .expect("filters")
            .clone();
        assert_eq!(filtered.len(), 5, "{filtered:#?}");
        for (f, share) in filtered.iter().zip([0.01, 0.10, 0.50, 0.0]) {
            assert_eq!(f["qdrant_points"], f["postgres_points"], "{f}");
            assert_eq!(f["share"].as_f64(), Some(share), "{f}");
            assert_eq!(f["passed"], true, "{vector}: {f}");
            assert!(f["recall"].as_f64().is_some_and(|r| r >= 0.95), "{f}");
            assert!(f["setting"]["ef_search"].is_u64(), "{f}");
        }
        assert_eq!(
            filtered[3]["returned"], 0,
            "nothing in Qdrant, nothing in PostgreSQL"
        );
        assert!(
            filtered[4]["skipped"]
                .as_str()
                .is_some_and(|why| why.contains("\"geo_radius\" on \"kw\"")),
            "{}",
            filtered[4]
        );
    }
    assert!(
        stdout.contains("filters.jsonl:4 keeps 0.0 % of the points (0 in Qdrant, 0 in PostgreSQL)"),
        "{stdout}"
    );
    assert!(
        stdout.contains("filters.jsonl:5: skipped — \"geo_radius\""),
        "{stdout}"
    );

    // `thin` misses at every rung; a larger graph, built on a copy, reaches it, and says how.
    let thin = search_of(&json, &out, "thin");
    let ladder = recalls(&thin["ladder"]);
    assert_eq!(ladder.len(), 10, "every rung, 40 to 1000: {ladder:?}");
    assert!(ladder.iter().all(|r| *r < 0.95), "{ladder:?}");
    let trial = thin["larger_index"]
        .as_array()
        .and_then(|t| t.iter().find(|t| t["reached"] == true))
        .unwrap_or_else(|| panic!("no larger graph reached it: {thin}"));
    let (m, ef) = (trial["m"].to_string(), trial["ef_construction"].to_string());
    assert!(
        stdout.contains(&format!(
            "DROP INDEX public.knn_ef_thin_idx; qdrant2pg index --collection knn_ef --m {m} \
             --ef-construction {ef}"
        )),
        "{stdout}"
    );
    assert!(stdout.contains("SET hnsw.ef_search = "), "{stdout}");
    assert!(
        stdout.contains("ALTER ROLE postgres SET hnsw.ef_search = "),
        "{stdout}"
    );
    assert!(
        stdout.contains(&format!("ALTER DATABASE {} SET hnsw.ef_search = ", db.name)),
        "{stdout}"
    );

    // The advice, followed, works: `thin` reaches 0.95 at some rung and the run passes.
    db.client()
        .batch_execute("DROP INDEX public.knn_ef_thin_idx")
        .expect("drop the index");
    let index = qdrant2pg(&[
        "index",
        "--url",
        &url,
        "--dsn",
        &dsn,
        "--collection",
        EF_COLLECTION,
        "--m",
        &m,
        "--ef-construction",
        &ef,
        "--quiet",
    ]);
    assert_ok(&index);
    let (out, json) = verify_json(&server, &db, &["--search", "100"]);
    assert_ok(&out);
    let thin = search_of(&json, &out, "thin");
    assert_eq!(thin["hnsw"]["m"].to_string(), m, "{thin}");
    assert_eq!(thin["reached"], true, "{thin}");

    // A fixed --ef-search keeps to that value: one rung, below 0.95 for `steep`.
    let (out, json) = verify_json(&server, &db, &["--search", "100", "--ef-search", "40"]);
    assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
    let steep = search_of(&json, &out, "steep");
    assert_eq!(recalls(&steep["ladder"]).len(), 1, "{steep}");
    assert!(
        String::from_utf8_lossy(&out.stdout)
            .contains("at ef_search 40 — BELOW --min-recall 0.95 (--ef-search auto finds"),
        "{}",
        describe(&out)
    );

    // Damaged vectors fail at every rung, and a larger graph does not hide it.
    db.client()
        .batch_execute(&format!(
            "UPDATE {EF_COLLECTION} t SET steep = o.steep FROM {EF_COLLECTION} o \
             WHERE o.id = (t.id + 2500) % 5000 AND t.id % 2 = 0"
        ))
        .expect("damage vectors");
    let (out, json) = verify_json(&server, &db, &["--search", "100", "--sample", "0"]);
    assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
    let steep = search_of(&json, &out, "steep");
    let ladder = recalls(&steep["ladder"]);
    assert_eq!(ladder.len(), 10, "{ladder:?}");
    assert!(ladder.iter().all(|r| *r < 0.95), "{ladder:?}");
    let trials = steep["larger_index"].as_array().expect("trials");
    assert!(
        !trials.is_empty() && trials.iter().all(|t| t["reached"] == false),
        "{steep}"
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("a larger graph does not reach it either"),
        "{stdout}"
    );
    assert!(
        stdout.contains("LOW RECALL"),
        "the summary says what happened: {stdout}"
    );
}
