//! The test Qdrant against the ground truth: snapshots written by a genuine Qdrant 1.18.3 and
//! that server's own REST scroll of every point (`tests/fixtures/qdrant-1.18.3/`). Every other
//! integration test trusts this server, so here it is checked through the real `qdrant-client`:
//! order, ids, vectors bit for bit, payload JSON with integer and double kept apart, paging
//! (`offset` inclusive, `next_page_offset` the first id of the next page), counts and the
//! collection description. Then the write path: points upserted through the client come back
//! exactly, and the server behaves like the real one on errors, keys and restarts.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::io::{BufRead, BufReader};
use std::path::PathBuf;

use crate::support::exact_json::parse_json_exactly;
use qdrant_client::qdrant::{
    self as grpc, vector_output, vectors_config, vectors_output, with_payload_selector,
    with_vectors_selector,
};
use qdrant_client::{Qdrant, QdrantError};
use qdrant2pg::point_id::PointKey;
use qdrant2pg::source::edge::convert::json_to_grpc;
use serde_json::Value as Json;

use crate::support::edge_qdrant::{EdgeQdrant as QdrantServer, grpc_to_json};
use crate::support::flows::{client_at, runtime, upsert};

fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/qdrant-1.18.3")
}

/// A vector as compared here: f32 bits, so -0.0, NaN payloads and rounding all count.
#[derive(Debug, PartialEq, Eq)]
enum Bits {
    Dense(Vec<u32>),
    Multi(Vec<Vec<u32>>),
    Sparse(Vec<u32>, Vec<u32>),
}

fn bits(values: &[f32]) -> Vec<u32> {
    values.iter().map(|v| v.to_bits()).collect()
}

/// A ground-truth vector from the REST JSON (f32 printed shortest, so text -> f32 is exact).
fn json_bits(value: &Json) -> Bits {
    let floats = |v: &Json| -> Vec<u32> {
        v.as_array()
            .expect("an array of numbers")
            .iter()
            .map(|x| (x.as_f64().expect("a number") as f32).to_bits())
            .collect()
    };
    match value {
        Json::Object(sparse) => Bits::Sparse(
            sparse["indices"]
                .as_array()
                .expect("indices")
                .iter()
                .map(|i| i.as_u64().unwrap() as u32)
                .collect(),
            floats(&sparse["values"]),
        ),
        Json::Array(items) if items.first().is_some_and(Json::is_array) => {
            Bits::Multi(items.iter().map(floats).collect())
        }
        other => Bits::Dense(floats(other)),
    }
}

fn output_bits(vector: &grpc::VectorOutput) -> Bits {
    match vector.vector.as_ref().expect("the vector oneof is set") {
        vector_output::Vector::Dense(d) => Bits::Dense(bits(&d.data)),
        vector_output::Vector::MultiDense(m) => {
            Bits::Multi(m.vectors.iter().map(|v| bits(&v.data)).collect())
        }
        vector_output::Vector::Sparse(s) => Bits::Sparse(s.indices.clone(), bits(&s.values)),
    }
}

/// Vectors by name; the unnamed vector is named "".
fn ground_vectors(vector: &Json) -> BTreeMap<String, Bits> {
    match vector {
        Json::Object(named) => named
            .iter()
            .map(|(k, v)| (k.clone(), json_bits(v)))
            .collect(),
        unnamed => BTreeMap::from([(String::new(), json_bits(unnamed))]),
    }
}

fn served_vectors(vectors: &grpc::VectorsOutput) -> BTreeMap<String, Bits> {
    match vectors.vectors_options.as_ref().expect("vectors") {
        vectors_output::VectorsOptions::Vector(v) => {
            BTreeMap::from([(String::new(), output_bits(v))])
        }
        vectors_output::VectorsOptions::Vectors(named) => named
            .vectors
            .iter()
            .map(|(k, v)| (k.clone(), output_bits(v)))
            .collect(),
    }
}

fn key_of_json(id: &Json) -> PointKey {
    match id {
        Json::Number(n) => PointKey::Num(n.as_u64().expect("an unsigned id")),
        Json::String(s) => PointKey::Uuid(uuid::Uuid::parse_str(s).expect("a UUID id").as_u128()),
        other => panic!("id {other} is neither an integer nor a UUID"),
    }
}

fn key_of(point: &grpc::RetrievedPoint) -> PointKey {
    PointKey::from_proto(point.id.as_ref()).expect("a valid id")
}

fn payload_json(payload: &HashMap<String, grpc::Value>) -> Json {
    Json::Object(
        payload
            .iter()
            .map(|(k, v)| (k.clone(), grpc_to_json(v.clone()).expect("JSON")))
            .collect(),
    )
}

struct GroundPoint {
    key: PointKey,
    vectors: BTreeMap<String, Bits>,
    payload: Json,
}

fn ground_truth(name: &str) -> Vec<GroundPoint> {
    let file =
        std::fs::File::open(fixtures().join(format!("{name}.points.jsonl.gz"))).expect("fixture");
    BufReader::new(flate2::read::GzDecoder::new(file))
        .lines()
        .map(|line| {
            let point: Json = parse_json_exactly(&line.expect("a line")).expect("a JSON line");
            GroundPoint {
                key: key_of_json(&point["id"]),
                vectors: ground_vectors(&point["vector"]),
                payload: point["payload"].clone(),
            }
        })
        .collect()
}

fn scroll_request(name: &str, offset: Option<PointKey>, limit: u32) -> grpc::ScrollPoints {
    grpc::ScrollPoints {
        collection_name: name.into(),
        offset: offset.map(PointKey::to_proto),
        limit: Some(limit),
        with_payload: Some(grpc::WithPayloadSelector {
            selector_options: Some(with_payload_selector::SelectorOptions::Enable(true)),
        }),
        with_vectors: Some(grpc::WithVectorsSelector {
            selector_options: Some(with_vectors_selector::SelectorOptions::Enable(true)),
        }),
        ..Default::default()
    }
}

/// Scroll everything in pages of `limit`, checking the paging contract on the way.
fn scroll_all(
    rt: &tokio::runtime::Runtime,
    client: &Qdrant,
    name: &str,
    limit: u32,
) -> Vec<grpc::RetrievedPoint> {
    let mut points = Vec::new();
    let mut offset = None;
    loop {
        let page = rt
            .block_on(client.scroll(scroll_request(name, offset, limit)))
            .expect("scroll");
        assert!(
            page.result.len() <= limit as usize,
            "a page longer than its limit"
        );
        if let Some(expected_first) = offset {
            assert_eq!(
                page.result.first().map(key_of),
                Some(expected_first),
                "offset is inclusive"
            );
        }
        let next = page
            .next_page_offset
            .as_ref()
            .map(|id| PointKey::from_proto(Some(id)).expect("an id"));
        if next.is_some() {
            assert_eq!(
                page.result.len(),
                limit as usize,
                "only the last page may be short"
            );
        }
        points.extend(page.result);
        match next {
            Some(next) => offset = Some(next),
            None => return points,
        }
    }
}

fn check_fixture(name: &str) {
    let server = QdrantServer::start();
    server.load_snapshot(name, &fixtures().join(format!("{name}.snapshot.gz")));
    let rt = runtime();
    let client = client_at(&server.url());
    let truth = ground_truth(name);

    let served = scroll_all(&rt, &client, name, 7);
    let served_keys: Vec<_> = served.iter().map(key_of).collect();
    let truth_keys: Vec<_> = truth.iter().map(|p| p.key).collect();
    assert_eq!(served_keys, truth_keys, "{name}: ids or their order differ");
    for (got, want) in served.iter().zip(&truth) {
        let vectors = served_vectors(got.vectors.as_ref().expect("vectors were asked for"));
        assert_eq!(vectors, want.vectors, "{name}: vectors of {:?}", want.key);
        assert_eq!(
            payload_json(&got.payload),
            want.payload,
            "{name}: payload of {:?}",
            want.key
        );
    }

    // next_page_offset is the first id of the next page, whatever the page size.
    let page = rt
        .block_on(client.scroll(scroll_request(name, Some(truth_keys[10]), 5)))
        .expect("scroll");
    let page_keys: Vec<_> = page.result.iter().map(key_of).collect();
    assert_eq!(page_keys, truth_keys[10..15]);
    assert_eq!(page.next_page_offset, Some(truth_keys[15].to_proto()));
    let last = rt
        .block_on(client.scroll(scroll_request(name, truth_keys.last().copied(), 5)))
        .expect("scroll");
    assert_eq!((last.result.len(), last.next_page_offset), (1, None));

    let count = rt
        .block_on(client.count(grpc::CountPoints {
            collection_name: name.into(),
            exact: Some(true),
            ..Default::default()
        }))
        .expect("count");
    assert_eq!(
        count.result.map(|r| r.count),
        Some(truth.len() as u64),
        "{name}: exact count"
    );

    check_info(&rt, &client, name);
}

/// The collection description against the server's own `GET /collections/NAME`.
fn check_info(rt: &tokio::runtime::Runtime, client: &Qdrant, name: &str) {
    let text = std::fs::read_to_string(fixtures().join(format!("{name}.info.json"))).expect("info");
    let want: Json = serde_json::from_str(&text).expect("info JSON");
    let info = rt
        .block_on(client.collection_info(grpc::GetCollectionInfoRequest {
            collection_name: name.into(),
        }))
        .expect("collection info")
        .result
        .expect("a result");
    assert_eq!(
        info.points_count,
        want["points_count"].as_u64(),
        "{name}: points_count"
    );

    let config = info.config.expect("config");
    let params = config.params.expect("params");
    let want_params = &want["config"]["params"];
    assert_eq!(
        Some(u64::from(params.shard_number)),
        want_params["shard_number"].as_u64()
    );

    let distance = |d: i32| {
        grpc::Distance::try_from(d)
            .expect("a distance")
            .as_str_name()
            .to_owned()
    };
    let vector_json = |p: &grpc::VectorParams| {
        let mut v = serde_json::json!({ "size": p.size, "distance": distance(p.distance) });
        if let Some(datatype) = p.datatype {
            let name = grpc::Datatype::try_from(datatype)
                .expect("a datatype")
                .as_str_name()
                .to_lowercase();
            v["datatype"] = Json::String(name);
        }
        if p.multivector_config.is_some() {
            v["multivector_config"] = serde_json::json!({ "comparator": "max_sim" });
        }
        v
    };
    let served_vectors = match params
        .vectors_config
        .and_then(|v| v.config)
        .expect("vectors config")
    {
        vectors_config::Config::Params(p) => vector_json(&p),
        vectors_config::Config::ParamsMap(map) => Json::Object(
            map.map
                .iter()
                .map(|(k, p)| (k.clone(), vector_json(p)))
                .collect(),
        ),
    };
    assert_eq!(
        served_vectors, want_params["vectors"],
        "{name}: vectors config"
    );

    let served_sparse: BTreeMap<String, Json> = params
        .sparse_vectors_config
        .map(|s| s.map)
        .unwrap_or_default()
        .into_iter()
        .map(|(k, p)| {
            let modifier = p.modifier.map(|m| {
                grpc::Modifier::try_from(m)
                    .expect("a modifier")
                    .as_str_name()
                    .to_lowercase()
            });
            (
                k,
                modifier.map_or_else(
                    || serde_json::json!({}),
                    |m| serde_json::json!({ "modifier": m }),
                ),
            )
        })
        .collect();
    let want_sparse: BTreeMap<String, Json> = want_params["sparse_vectors"]
        .as_object()
        .map(|m| m.clone().into_iter().collect())
        .unwrap_or_default();
    assert_eq!(served_sparse, want_sparse, "{name}: sparse vectors config");

    let hnsw = config.hnsw_config.expect("hnsw");
    let want_hnsw = &want["config"]["hnsw_config"];
    #[allow(deprecated)]
    let served_hnsw = serde_json::json!({
        "m": hnsw.m, "ef_construct": hnsw.ef_construct,
        "full_scan_threshold": hnsw.full_scan_threshold,
        "max_indexing_threads": hnsw.max_indexing_threads, "on_disk": hnsw.on_disk,
    });
    assert_eq!(&served_hnsw, want_hnsw, "{name}: hnsw config");

    let served_schema: BTreeMap<String, Json> = info
        .payload_schema
        .iter()
        .map(|(k, s)| {
            let data_type = grpc::PayloadSchemaType::try_from(s.data_type)
                .expect("a type")
                .as_str_name()
                .to_lowercase();
            (
                k.clone(),
                serde_json::json!({ "data_type": data_type, "points": s.points }),
            )
        })
        .collect();
    let want_schema: BTreeMap<String, Json> = want["payload_schema"]
        .as_object()
        .expect("schema")
        .clone()
        .into_iter()
        .collect();
    assert_eq!(served_schema, want_schema, "{name}: payload schema");
}

#[test]
fn fx_single_matches_the_real_server() {
    check_fixture("fx_single");
}

#[test]
fn fx_rich_matches_the_real_server() {
    check_fixture("fx_rich");
}

#[test]
fn fx_sharded_matches_the_real_server() {
    check_fixture("fx_sharded");
}

// ---------------------------------------------------------------------------------------------
// The write path

fn dense(data: Vec<f32>) -> grpc::Vector {
    grpc::Vector {
        vector: Some(grpc::vector::Vector::Dense(grpc::DenseVector { data })),
        ..Default::default()
    }
}

fn multi(rows: Vec<Vec<f32>>) -> grpc::Vector {
    let vectors = rows
        .into_iter()
        .map(|data| grpc::DenseVector { data })
        .collect();
    grpc::Vector {
        vector: Some(grpc::vector::Vector::MultiDense(grpc::MultiDenseVector {
            vectors,
        })),
        ..Default::default()
    }
}

fn sparse(indices: Vec<u32>, values: Vec<f32>) -> grpc::Vector {
    grpc::Vector {
        vector: Some(grpc::vector::Vector::Sparse(grpc::SparseVector {
            values,
            indices,
        })),
        ..Default::default()
    }
}

fn named(vectors: Vec<(&str, grpc::Vector)>) -> grpc::Vectors {
    grpc::Vectors {
        vectors_options: Some(grpc::vectors::VectorsOptions::Vectors(grpc::NamedVectors {
            vectors: vectors
                .into_iter()
                .map(|(k, v)| (k.to_owned(), v))
                .collect(),
        })),
    }
}

fn vector_params(size: u64, distance: grpc::Distance) -> grpc::VectorParams {
    grpc::VectorParams {
        size,
        distance: distance as i32,
        ..Default::default()
    }
}

fn create_rich(rt: &tokio::runtime::Runtime, client: &Qdrant, name: &str, shards: u32) {
    let mut colbert = vector_params(2, grpc::Distance::Euclid);
    colbert.multivector_config = Some(grpc::MultiVectorConfig {
        comparator: grpc::MultiVectorComparator::MaxSim as i32,
    });
    let mut half = vector_params(3, grpc::Distance::Dot);
    half.datatype = Some(grpc::Datatype::Float16 as i32);
    let map = HashMap::from([
        ("text".to_owned(), vector_params(4, grpc::Distance::Dot)),
        ("colbert".to_owned(), colbert),
        ("half".to_owned(), half),
    ]);
    let sparse_map = HashMap::from([(
        "bm25".to_owned(),
        grpc::SparseVectorParams {
            modifier: Some(grpc::Modifier::Idf as i32),
            ..Default::default()
        },
    )]);
    rt.block_on(client.create_collection(grpc::CreateCollection {
        collection_name: name.into(),
        vectors_config: Some(grpc::VectorsConfig {
            config: Some(vectors_config::Config::ParamsMap(grpc::VectorParamsMap {
                map,
            })),
        }),
        sparse_vectors_config: Some(grpc::SparseVectorConfig { map: sparse_map }),
        shard_number: Some(shards),
        hnsw_config: Some(grpc::HnswConfigDiff {
            m: Some(32),
            ..Default::default()
        }),
        ..Default::default()
    }))
    .expect("create collection");
}

/// Points with mixed ids: some lack the sparse or the multi vector; payloads mix kinds.
fn rich_points() -> Vec<grpc::PointStruct> {
    let uuids = [
        "ffffffff-0000-4000-8000-000000000000",
        "00000000-0000-4000-8000-000000000001",
        "7f000000-0000-4000-8000-0000000000aa",
    ];
    let ids: Vec<PointKey> = [5u64, u64::MAX, 0, 42]
        .into_iter()
        .map(PointKey::Num)
        .chain(
            uuids
                .iter()
                .map(|u| PointKey::Uuid(uuid::Uuid::parse_str(u).unwrap().as_u128())),
        )
        .collect();
    ids.into_iter()
        .enumerate()
        .map(|(i, key)| {
            let f = i as f32;
            let mut vectors = vec![
                ("text", dense(vec![f + 0.1, -0.0, f32::MIN_POSITIVE, 1e-40])),
                ("half", dense(vec![0.5, -2.0, f + 0.25])),
            ];
            if i % 2 == 0 {
                vectors.push((
                    "colbert",
                    multi(vec![vec![f, 1.0], vec![2.0, -f], vec![0.125, 3.5]]),
                ));
            }
            if i % 3 != 0 {
                vectors.push((
                    "bm25",
                    sparse(vec![7, 3, 1000 + i as u32], vec![0.5, f, 2.25]),
                ));
            }
            let payload: Json = serde_json::json!({
                "i": i, "neg": -(i as i64), "big": u64::MAX, "one_float": 1.0, "f": 0.1 + f as f64,
                "s": "a|b\\c\nd\u{0}é😀", "nested": {"list": [1, 2.5, null, true, {"x": "y"}]},
            });
            let payload = match payload {
                Json::Object(map) => map.into_iter().map(|(k, v)| (k, json_to_grpc(v))).collect(),
                _ => unreachable!("the payload is an object"),
            };
            grpc::PointStruct {
                id: Some(key.to_proto()),
                payload,
                vectors: Some(named(vectors)),
            }
        })
        .collect()
}

fn input_bits(vector: &grpc::Vector) -> Bits {
    match vector.vector.as_ref().expect("oneof") {
        grpc::vector::Vector::Dense(d) => Bits::Dense(bits(&d.data)),
        grpc::vector::Vector::MultiDense(m) => {
            Bits::Multi(m.vectors.iter().map(|v| bits(&v.data)).collect())
        }
        grpc::vector::Vector::Sparse(s) => {
            // Stored sparse vectors come back sorted by index.
            let mut pairs: Vec<_> = s
                .indices
                .iter()
                .copied()
                .zip(s.values.iter().copied())
                .collect();
            pairs.sort_by_key(|p| p.0);
            Bits::Sparse(
                pairs.iter().map(|p| p.0).collect(),
                pairs.iter().map(|p| p.1.to_bits()).collect(),
            )
        }
        _ => panic!("not a stored vector kind"),
    }
}

#[test]
fn upserted_points_come_back_exactly_in_qdrant_order() {
    for shards in [1, 3] {
        let server = QdrantServer::start();
        let rt = runtime();
        let client = client_at(&server.url());
        let name = format!("rich_{shards}");
        create_rich(&rt, &client, &name, shards);
        let points = rich_points();
        upsert(&rt, &client, &name, points.clone());

        let served = scroll_all(&rt, &client, &name, 3);
        let mut want: Vec<_> = points
            .iter()
            .map(|p| PointKey::from_proto(p.id.as_ref()).unwrap())
            .collect();
        want.sort();
        assert_eq!(
            served.iter().map(key_of).collect::<Vec<_>>(),
            want,
            "integers first, then UUIDs by bytes"
        );

        for got in &served {
            let sent = points
                .iter()
                .find(|p| p.id == got.id)
                .expect("a sent point");
            let Some(grpc::vectors::VectorsOptions::Vectors(sent_vectors)) =
                &sent.vectors.as_ref().unwrap().vectors_options
            else {
                unreachable!("sent as named vectors")
            };
            // The float16 values chosen are exact in half precision, so they too come back as sent.
            let expected: BTreeMap<String, Bits> = sent_vectors
                .vectors
                .iter()
                .map(|(k, v)| (k.clone(), input_bits(v)))
                .collect();
            assert_eq!(
                served_vectors(got.vectors.as_ref().unwrap()),
                expected,
                "vectors of {:?}",
                got.id
            );
            let sent_payload = payload_json(&sent.payload);
            assert_eq!(
                payload_json(&got.payload),
                sent_payload,
                "payload of {:?}",
                got.id
            );
            let kind = |k: &str| got.payload[k].kind.clone();
            assert!(matches!(
                kind("i"),
                Some(grpc::value::Kind::IntegerValue(_))
            ));
            assert!(matches!(
                kind("one_float"),
                Some(grpc::value::Kind::DoubleValue(_))
            ));
            assert!(
                matches!(kind("big"), Some(grpc::value::Kind::DoubleValue(_))),
                "u64 beyond i64 is a double"
            );
        }

        let ids = vec![
            PointKey::Num(42).to_proto(),
            PointKey::Num(7).to_proto(),
            PointKey::Num(0).to_proto(),
        ];
        let got = rt
            .block_on(client.get_points(grpc::GetPoints {
                collection_name: name.clone(),
                ids,
                ..Default::default()
            }))
            .expect("get");
        let got_ids: Vec<_> = got.result.iter().map(key_of).collect();
        assert_eq!(
            got_ids,
            vec![PointKey::Num(42), PointKey::Num(0)],
            "missing ids are skipped"
        );
        assert!(
            got.result
                .iter()
                .all(|p| p.vectors.is_none() && !p.payload.is_empty()),
            "Get defaults"
        );

        let info = rt
            .block_on(client.collection_info(grpc::GetCollectionInfoRequest {
                collection_name: name.clone(),
            }))
            .expect("info")
            .result
            .expect("a result");
        let params = info
            .config
            .as_ref()
            .and_then(|c| c.params.clone())
            .expect("params");
        assert_eq!(params.shard_number, shards);
        assert_eq!(
            info.config.and_then(|c| c.hnsw_config).and_then(|h| h.m),
            Some(32)
        );
        assert_eq!(info.points_count, Some(points.len() as u64));
    }
}

#[test]
fn errors_keys_and_restarts_behave_like_the_real_server() {
    let rt = runtime();
    let mut server = QdrantServer::start_with_api_key("s3cret");
    let keyless = client_at(&server.url());
    let err = rt
        .block_on(keyless.list_collections())
        .expect_err("no key must be refused");
    let QdrantError::ResponseError { status } = err else {
        panic!("not a gRPC error: {err}")
    };
    assert_eq!(status.code(), tonic::Code::Unauthenticated);
    let wrong = Qdrant::from_url(&server.url())
        .api_key("guess")
        .skip_compatibility_check()
        .build()
        .unwrap();
    let err = rt
        .block_on(wrong.list_collections())
        .expect_err("a wrong key must be refused");
    let QdrantError::ResponseError { status } = err else {
        panic!("not a gRPC error: {err}")
    };
    assert_eq!(
        (status.code(), status.message()),
        (tonic::Code::Unauthenticated, "Invalid API key or JWT")
    );

    let keyed = Qdrant::from_url(&server.url())
        .api_key("s3cret")
        .skip_compatibility_check()
        .build()
        .unwrap();
    let err = rt
        .block_on(keyed.collection_info(grpc::GetCollectionInfoRequest {
            collection_name: "nope".into(),
        }))
        .expect_err("unknown collection");
    let QdrantError::ResponseError { status } = err else {
        panic!("not a gRPC error: {err}")
    };
    assert_eq!(status.code(), tonic::Code::NotFound);
    assert_eq!(
        status.message(),
        "Not found: Collection `nope` doesn't exist!"
    );

    create_rich(&rt, &keyed, "kept", 2);
    upsert(&rt, &keyed, "kept", rich_points());
    let url = server.url();
    server.stop();
    assert!(
        rt.block_on(keyed.health_check()).is_err(),
        "a stopped server answers nothing"
    );
    server.restart();
    assert_eq!(server.url(), url, "same port after a restart");
    let again = Qdrant::from_url(&url)
        .api_key("s3cret")
        .skip_compatibility_check()
        .build()
        .unwrap();
    let count = rt
        .block_on(again.count(grpc::CountPoints {
            collection_name: "kept".into(),
            exact: Some(true),
            ..Default::default()
        }))
        .expect("count after restart");
    assert_eq!(
        count.result.map(|r| r.count),
        Some(rich_points().len() as u64)
    );

    let names: BTreeSet<_> = rt
        .block_on(again.list_collections())
        .expect("list")
        .collections
        .into_iter()
        .map(|c| c.name)
        .collect();
    assert_eq!(names, BTreeSet::from(["kept".to_owned()]));
    let filtered = grpc::ScrollPoints {
        filter: Some(grpc::Filter::default()),
        ..scroll_request("kept", None, 3)
    };
    let err = rt
        .block_on(again.scroll(filtered))
        .expect_err("filters are not served");
    let QdrantError::ResponseError { status } = err else {
        panic!("not a gRPC error: {err}")
    };
    assert_eq!(status.code(), tonic::Code::Unimplemented);
    assert!(
        rt.block_on(again.delete_collection(grpc::DeleteCollection {
            collection_name: "kept".into(),
            timeout: None
        }))
        .is_ok()
    );
    assert!(
        !rt.block_on(again.collection_exists(grpc::CollectionExistsRequest {
            collection_name: "kept".into()
        }))
        .unwrap()
    );
}

/// The volume other tests push through the server: 100k points of 768-d, upserted in batches
/// and scrolled back in pages of 1,000. Run with `cargo test --test main scale -- --ignored
/// --nocapture` to see the rates.
#[test]
#[ignore = "about a minute on 2 cores; run by hand for the figures"]
fn scale_100k_x_768_round_trips() {
    const POINTS: u64 = 100_000;
    const DIM: usize = 768;
    const BATCH: u64 = 1_000;
    let server = QdrantServer::start();
    let rt = runtime();
    let client = client_at(&server.url());
    rt.block_on(client.create_collection(grpc::CreateCollection {
        collection_name: "scale".into(),
        vectors_config: Some(grpc::VectorsConfig {
            config: Some(vectors_config::Config::Params(vector_params(
                DIM as u64,
                grpc::Distance::Dot,
            ))),
        }),
        ..Default::default()
    }))
    .expect("create");
    let vector =
        |id: u64| -> Vec<f32> { (0..DIM).map(|j| (id as f32) + j as f32 / 1024.0).collect() };

    let start = std::time::Instant::now();
    for first in (0..POINTS).step_by(BATCH as usize) {
        let points = (first..first + BATCH)
            .map(|id| grpc::PointStruct {
                id: Some(PointKey::Num(id).to_proto()),
                payload: HashMap::from([("id".to_owned(), json_to_grpc(Json::from(id)))]),
                vectors: Some(grpc::Vectors {
                    vectors_options: Some(grpc::vectors::VectorsOptions::Vector(dense(vector(id)))),
                }),
            })
            .collect();
        upsert(&rt, &client, "scale", points);
    }
    let upserted = start.elapsed();

    let start = std::time::Instant::now();
    let mut seen = 0u64;
    let mut offset = None;
    loop {
        let page = rt
            .block_on(client.scroll(scroll_request("scale", offset, 1_000)))
            .expect("scroll");
        for point in &page.result {
            assert_eq!(key_of(point), PointKey::Num(seen), "scroll order");
            let vectors = served_vectors(point.vectors.as_ref().expect("vectors"));
            assert_eq!(
                vectors[""],
                Bits::Dense(bits(&vector(seen))),
                "vector of {seen}"
            );
            seen += 1;
        }
        match page.next_page_offset {
            Some(next) => offset = Some(PointKey::from_proto(Some(&next)).expect("an id")),
            None => break,
        }
    }
    let scrolled = start.elapsed();
    assert_eq!(seen, POINTS);
    eprintln!(
        "{POINTS} x {DIM}: upsert {:.1} s ({:.0} points/s), scroll {:.1} s ({:.0} points/s)",
        upserted.as_secs_f64(),
        POINTS as f64 / upserted.as_secs_f64(),
        scrolled.as_secs_f64(),
        POINTS as f64 / scrolled.as_secs_f64(),
    );
}
