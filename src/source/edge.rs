//! The Qdrant engine in-process: `qdrant-edge` shards, read the way a Qdrant server reads them.
//!
//! Two sources share this module. Export straight from a snapshot file opens each shard of a
//! collection snapshot with the real engine, and the integration tests serve the same shards over
//! gRPC. Both must hand out exactly what a genuine Qdrant 1.18 server sends, so the conversions
//! here follow the server's own (`lib/api/src/conversions/{json,vectors}.rs`):
//!
//! - payload JSON becomes gRPC `Value`s with integers and doubles kept apart: a number that fits
//!   `i64` is an `IntegerValue`, anything else a `DoubleValue`;
//! - vectors go out in the `vector` oneof of `VectorOutput` (dense, sparse, multi-dense). Qdrant
//!   1.17 switched the server to that field and stopped filling the deprecated `data` /
//!   `indices` / `vectors_count` trio, so a reader that still looks there sees nothing, as it
//!   would against a real server;
//! - float16 and uint8 vectors are returned as the f32 the engine reconstructs, Cosine vectors
//!   as stored (normalised).
//!
//! Scrolling gives the server's collection-layer result: from the (inclusive) offset, the
//! `limit` smallest ids over all shards, and the `limit + 1`-th id as `next_page_offset`.
//! Shards hold disjoint ids, so a merge by id is exact. The server has every shard read
//! `limit + 1` whole points and drops the surplus; here the shards are first scrolled for ids
//! only, and then each reads in full just the points of its own that made the page. With `n`
//! shards that reads `limit` points' vectors and payloads instead of `n × (limit + 1)`, and the
//! result is the same.
//!
//! The snapshot files themselves (unpacking, checksums, versions) are `source::snapshot`'s.

use std::collections::{BTreeMap, HashMap};

use qdrant_client::qdrant::{
    self as grpc, point_id::PointIdOptions, value::Kind, vector_output, vectors_config,
    vectors_output, with_payload_selector, with_vectors_selector,
};
use qdrant_edge::external::uuid::Uuid;
use qdrant_edge::{
    CountRequest, Distance, EdgeShard, HnswIndexConfig, JsonPath, Modifier, MultiVectorConfig,
    OperationError, Payload, PayloadSchemaType, PayloadSelector, PayloadSelectorExclude,
    PayloadSelectorInclude, PointId as EdgeId, PointStructPersisted, Record, ScrollRequest, Vector,
    VectorInternal, VectorStorageDatatype, VectorStructInternal, VectorStructPersisted,
    WithPayloadInterface, WithVector,
};
use serde::{Deserialize, Serialize};

use crate::payload::{ExactJson, ExactPayloads, MAX_PAYLOAD_DEPTH, json_holds_wide_number};
use crate::point_id::{PointIdError, PointKey};

/// What went wrong between the engine and the gRPC types.
#[derive(Debug, thiserror::Error)]
pub enum EdgeError {
    #[error("the Qdrant engine failed to {action}")]
    Engine {
        action: String,
        #[source]
        source: OperationError,
    },
    #[error("point {id}: {reason}")]
    BadPoint { id: String, reason: String },
    #[error(transparent)]
    PointId(#[from] PointIdError),
    #[error("payload value cannot become JSON: {0}")]
    BadValue(String),
    #[error("the Qdrant engine failed (it panicked) reading points: {0}")]
    Panicked(String),
}

/// Runs an engine read, turning a panic inside the engine into [`EdgeError::Panicked`]. The
/// engine unwraps what it cannot parse in its own payload storage — JSON nested deeper than
/// serde_json's 128 levels, which no Qdrant writes but a snapshot from elsewhere may hold — and
/// one such point must fail its collection, not the process.
pub fn guarded<T>(read: impl FnOnce() -> Result<T, EdgeError>) -> Result<T, EdgeError> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(read)).unwrap_or_else(|panic| {
        let message = panic
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| panic.downcast_ref::<&str>().map(|s| (*s).to_owned()))
            .unwrap_or_default();
        Err(EdgeError::Panicked(message))
    })
}

// ---------------------------------------------------------------------------------------------
// Ids

/// The engine's id for a key in Qdrant's order.
pub fn key_to_edge(key: PointKey) -> EdgeId {
    match key {
        PointKey::Num(n) => EdgeId::NumId(n),
        PointKey::Uuid(u) => EdgeId::Uuid(Uuid::from_u128(u)),
    }
}

/// The key of an engine id; the two orders agree (integers first, UUIDs by their bytes).
pub fn key_from_edge(id: EdgeId) -> PointKey {
    match id {
        EdgeId::NumId(n) => PointKey::Num(n),
        EdgeId::Uuid(u) => PointKey::Uuid(u.as_u128()),
    }
}

// ---------------------------------------------------------------------------------------------
// Payload: JSON <-> gRPC Value, as the server converts it

/// A JSON value as the server puts it on the wire.
pub fn json_to_grpc(value: serde_json::Value) -> grpc::Value {
    let kind = match value {
        serde_json::Value::Null => Kind::NullValue(0),
        serde_json::Value::Bool(b) => Kind::BoolValue(b),
        serde_json::Value::Number(n) => match n.as_i64() {
            Some(i) => Kind::IntegerValue(i),
            // `as_f64` is `None` only for arbitrary-precision text beyond f64; JSON numbers that
            // reach the engine are finite, so the real server's `unwrap` never fires there.
            None => Kind::DoubleValue(n.as_f64().unwrap_or(f64::NAN)),
        },
        serde_json::Value::String(s) => Kind::StringValue(s),
        serde_json::Value::Array(items) => Kind::ListValue(grpc::ListValue {
            values: items.into_iter().map(json_to_grpc).collect(),
        }),
        serde_json::Value::Object(map) => Kind::StructValue(grpc::Struct {
            fields: map.into_iter().map(|(k, v)| (k, json_to_grpc(v))).collect(),
        }),
    };
    grpc::Value { kind: Some(kind) }
}

/// A point's payload as the server sends it.
pub fn payload_to_grpc(payload: Payload) -> HashMap<String, grpc::Value> {
    payload
        .0
        .into_iter()
        .map(|(k, v)| (k, json_to_grpc(v)))
        .collect()
}

/// A gRPC value as the server stores it: a value without a kind is `null`, a non-finite double
/// is refused (JSON has no NaN).
pub fn grpc_to_json(value: grpc::Value) -> Result<serde_json::Value, EdgeError> {
    Ok(match value.kind {
        None | Some(Kind::NullValue(_)) => serde_json::Value::Null,
        Some(Kind::BoolValue(b)) => serde_json::Value::Bool(b),
        Some(Kind::IntegerValue(i)) => serde_json::Value::Number(i.into()),
        Some(Kind::DoubleValue(d)) => serde_json::Number::from_f64(d)
            .map(serde_json::Value::Number)
            .ok_or_else(|| EdgeError::BadValue(format!("{d} is not a JSON number")))?,
        Some(Kind::StringValue(s)) => serde_json::Value::String(s),
        Some(Kind::ListValue(list)) => serde_json::Value::Array(
            list.values
                .into_iter()
                .map(grpc_to_json)
                .collect::<Result<_, _>>()?,
        ),
        Some(Kind::StructValue(s)) => serde_json::Value::Object(
            s.fields
                .into_iter()
                .map(|(k, v)| grpc_to_json(v).map(|v| (k, v)))
                .collect::<Result<_, _>>()?,
        ),
    })
}

// ---------------------------------------------------------------------------------------------
// Records -> gRPC

fn vector_to_grpc(vector: VectorInternal) -> grpc::VectorOutput {
    let vector = match vector {
        VectorInternal::Dense(data) => vector_output::Vector::Dense(grpc::DenseVector { data }),
        VectorInternal::Sparse(sparse) => vector_output::Vector::Sparse(grpc::SparseVector {
            values: sparse.values,
            indices: sparse.indices,
        }),
        VectorInternal::MultiDense(multi) => {
            let dim = multi.dim.max(1);
            vector_output::Vector::MultiDense(grpc::MultiDenseVector {
                vectors: multi
                    .flattened_vectors
                    .chunks(dim)
                    .map(|row| grpc::DenseVector { data: row.to_vec() })
                    .collect(),
            })
        }
    };
    grpc::VectorOutput {
        vector: Some(vector),
        ..Default::default()
    }
}

/// A point's vectors as the server sends them: the unnamed vector alone, or the named map.
pub fn vectors_to_grpc(vectors: VectorStructInternal) -> grpc::VectorsOutput {
    let options = match vectors {
        VectorStructInternal::Single(dense) => {
            vectors_output::VectorsOptions::Vector(vector_to_grpc(VectorInternal::Dense(dense)))
        }
        VectorStructInternal::MultiDense(multi) => vectors_output::VectorsOptions::Vector(
            vector_to_grpc(VectorInternal::MultiDense(multi)),
        ),
        VectorStructInternal::Named(named) => {
            vectors_output::VectorsOptions::Vectors(grpc::NamedVectorsOutput {
                vectors: named
                    .into_iter()
                    .map(|(k, v)| (k, vector_to_grpc(v)))
                    .collect(),
            })
        }
    };
    grpc::VectorsOutput {
        vectors_options: Some(options),
    }
}

/// Engine records as a reader takes them: each as the server's `RetrievedPoint`, and, where
/// that gRPC payload holds a double where bent u64 integers land (an integer above `i64::MAX`,
/// which [`payload_to_grpc`] sends as the nearest double as the server does, or a genuine
/// float there), the payload exact too — as the live source reads those again over REST.
pub fn records_to_points(
    records: Vec<Record>,
) -> Result<(Vec<grpc::RetrievedPoint>, ExactPayloads), EdgeError> {
    let mut exact = Vec::new();
    let mut points = Vec::with_capacity(records.len());
    for (i, record) in records.into_iter().enumerate() {
        if let Some(payload) = &record.payload
            && payload.0.values().any(json_holds_wide_number)
        {
            // serde_json writes numbers as Qdrant's REST API does: a u64 whole, floats in
            // their shortest form.
            let text = serde_json::to_string(&payload.0)
                .map_err(|e| EdgeError::BadValue(e.to_string()))?;
            let json = ExactJson::parse(&text, MAX_PAYLOAD_DEPTH)
                .map_err(|e| EdgeError::BadValue(e.to_string()))?;
            exact.push((i, json));
        }
        points.push(record_to_grpc(record));
    }
    Ok((points, ExactPayloads::new(exact)))
}

/// An engine record as the server's `RetrievedPoint`: payload always present (empty when not
/// asked for), vectors only when asked for.
pub fn record_to_grpc(record: Record) -> grpc::RetrievedPoint {
    grpc::RetrievedPoint {
        id: Some(key_from_edge(record.id).to_proto()),
        payload: record.payload.map(payload_to_grpc).unwrap_or_default(),
        vectors: record.vector.map(vectors_to_grpc),
        shard_key: None,
        order_value: None,
    }
}

// ---------------------------------------------------------------------------------------------
// gRPC points -> engine

fn bad_point(id: &grpc::PointId, reason: impl Into<String>) -> EdgeError {
    let id = match &id.point_id_options {
        Some(PointIdOptions::Num(n)) => n.to_string(),
        Some(PointIdOptions::Uuid(u)) => u.clone(),
        None => String::from("<none>"),
    };
    EdgeError::BadPoint {
        id,
        reason: reason.into(),
    }
}

/// One input vector, whichever of the two wire forms the client used (the `vector` oneof, or
/// the deprecated `data` + `indices` + `vectors_count`).
#[allow(deprecated)]
fn input_vector(id: &grpc::PointId, vector: grpc::Vector) -> Result<Vector, EdgeError> {
    use grpc::vector::Vector as In;
    let engine = |e: OperationError| bad_point(id, e.to_string());
    match vector.vector {
        Some(In::Dense(dense)) => Ok(Vector::new_dense(dense.data)),
        Some(In::Sparse(sparse)) => {
            Vector::new_sparse(sparse.indices, sparse.values).map_err(engine)
        }
        Some(In::MultiDense(multi)) => Vector::new_multi(
            multi
                .vectors
                .into_iter()
                .map(|v| v.data)
                .collect::<Vec<_>>(),
        )
        .map_err(engine),
        Some(In::Document(_) | In::Image(_) | In::Object(_)) => Err(bad_point(
            id,
            "inference inputs need a server with an embedding model",
        )),
        None => match (vector.indices, vector.vectors_count) {
            (Some(indices), _) => Vector::new_sparse(indices.data, vector.data).map_err(engine),
            (None, Some(0)) => Err(bad_point(id, "vectors_count must be greater than 0")),
            (None, Some(count)) => {
                let dim = vector.data.len() / count as usize;
                if dim == 0 || dim * count as usize != vector.data.len() {
                    return Err(bad_point(
                        id,
                        "multi-vector data is not divisible by its count",
                    ));
                }
                let rows = vector
                    .data
                    .chunks(dim)
                    .map(<[f32]>::to_vec)
                    .collect::<Vec<_>>();
                Vector::new_multi(rows).map_err(engine)
            }
            (None, None) => Ok(Vector::new_dense(vector.data)),
        },
    }
}

/// A client's `PointStruct` as the engine's upsert input. Payload numbers keep their kind.
pub fn point_to_edge(point: grpc::PointStruct) -> Result<PointStructPersisted, EdgeError> {
    let proto_id = point.id.clone().unwrap_or_default();
    let key = PointKey::from_proto(point.id.as_ref())?;
    let vectors = match point.vectors.and_then(|v| v.vectors_options) {
        None => return Err(bad_point(&proto_id, "no vectors given")),
        Some(grpc::vectors::VectorsOptions::Vector(vector)) => {
            match input_vector(&proto_id, vector)?.0 {
                VectorInternal::Dense(dense) => VectorStructInternal::Single(dense),
                VectorInternal::MultiDense(multi) => VectorStructInternal::MultiDense(multi),
                VectorInternal::Sparse(_) => {
                    return Err(bad_point(&proto_id, "a sparse vector must be named"));
                }
            }
        }
        Some(grpc::vectors::VectorsOptions::Vectors(named)) => VectorStructInternal::Named(
            named
                .vectors
                .into_iter()
                .map(|(name, v)| input_vector(&proto_id, v).map(|v| (name, v.0)))
                .collect::<Result<_, _>>()?,
        ),
    };
    let payload = point
        .payload
        .into_iter()
        .map(|(k, v)| grpc_to_json(v).map(|v| (k, v)))
        .collect::<Result<serde_json::Map<_, _>, _>>()
        .map_err(|e| bad_point(&proto_id, e.to_string()))?;
    Ok(PointStructPersisted {
        id: key_to_edge(key),
        vector: VectorStructPersisted::from(vectors),
        payload: Some(Payload(payload)),
    })
}

// ---------------------------------------------------------------------------------------------
// Selectors, scroll, count

/// What a request's `with_payload` asks for; absent means all of it, as on the server.
pub fn payload_selector(selector: Option<grpc::WithPayloadSelector>) -> WithPayloadInterface {
    let paths = |fields: Vec<String>| -> Vec<JsonPath> {
        fields
            .iter()
            .filter_map(|f| JsonPath::try_from(f.as_str()).ok())
            .collect()
    };
    match selector.and_then(|s| s.selector_options) {
        None => WithPayloadInterface::Bool(true),
        Some(with_payload_selector::SelectorOptions::Enable(on)) => WithPayloadInterface::Bool(on),
        Some(with_payload_selector::SelectorOptions::Include(inc)) => {
            WithPayloadInterface::Selector(PayloadSelector::Include(PayloadSelectorInclude {
                include: paths(inc.fields),
            }))
        }
        Some(with_payload_selector::SelectorOptions::Exclude(exc)) => {
            WithPayloadInterface::Selector(PayloadSelector::Exclude(PayloadSelectorExclude {
                exclude: paths(exc.fields),
            }))
        }
    }
}

/// What a request's `with_vectors` asks for; absent means none, as on the server.
pub fn vector_selector(selector: Option<grpc::WithVectorsSelector>) -> WithVector {
    match selector.and_then(|s| s.selector_options) {
        None => WithVector::Bool(false),
        Some(with_vectors_selector::SelectorOptions::Enable(on)) => WithVector::Bool(on),
        Some(with_vectors_selector::SelectorOptions::Include(names)) => {
            WithVector::Selector(names.names)
        }
    }
}

/// One page of a scroll in id order.
#[derive(Debug)]
pub struct ScrollPage {
    pub records: Vec<Record>,
    /// The first id of the next page, `None` on the last page.
    pub next_offset: Option<PointKey>,
}

/// Scroll a collection made of `shards` as the server's collection layer does.
pub fn scroll_shards(
    shards: &[EdgeShard],
    offset: Option<PointKey>,
    limit: usize,
    with_payload: &WithPayloadInterface,
    with_vector: &WithVector,
) -> Result<ScrollPage, EdgeError> {
    let ids_only = matches!(with_payload, WithPayloadInterface::Bool(false))
        && matches!(with_vector, WithVector::Bool(false));
    if shards.len() == 1 || ids_only {
        return merged_page(shards, offset, limit, with_payload, with_vector);
    }
    // Which shard's points make the page, from ids alone; then each shard reads its share,
    // which is exactly its first points from `offset`.
    let fetch = limit.saturating_add(1);
    let no_payload = WithPayloadInterface::Bool(false);
    let mut ids = Vec::new();
    for (shard_id, shard) in shards.iter().enumerate() {
        let page = scroll_shard(
            shard_id,
            shard,
            offset,
            fetch,
            &no_payload,
            &WithVector::Bool(false),
        )?;
        ids.extend(page.into_iter().map(|r| (r.id, shard_id)));
    }
    ids.sort_unstable();
    ids.dedup_by_key(|(id, _)| *id);
    ids.truncate(fetch);
    let next_offset = if ids.len() > limit {
        ids.pop().map(|(id, _)| key_from_edge(id))
    } else {
        None
    };
    let mut records = Vec::with_capacity(ids.len());
    for (shard_id, shard) in shards.iter().enumerate() {
        let share = ids.iter().filter(|(_, s)| *s == shard_id).count();
        if share > 0 {
            records.extend(scroll_shard(
                shard_id,
                shard,
                offset,
                share,
                with_payload,
                with_vector,
            )?);
        }
    }
    records.sort_unstable_by_key(|r| r.id);
    Ok(ScrollPage {
        records,
        next_offset,
    })
}

/// One shard's first `limit` points from `offset`, in id order.
fn scroll_shard(
    shard_id: usize,
    shard: &EdgeShard,
    offset: Option<PointKey>,
    limit: usize,
    with_payload: &WithPayloadInterface,
    with_vector: &WithVector,
) -> Result<Vec<Record>, EdgeError> {
    let request = ScrollRequest {
        offset: offset.map(key_to_edge),
        limit: Some(limit),
        filter: None,
        with_payload: Some(with_payload.clone()),
        with_vector: with_vector.clone(),
        order_by: None,
    };
    let (page, _) = shard.scroll(request).map_err(|source| EdgeError::Engine {
        action: format!("scroll shard {shard_id} from {offset:?}"),
        source,
    })?;
    Ok(page)
}

/// The shards' first `limit + 1` points from `offset`, merged by id.
fn merged_page(
    shards: &[EdgeShard],
    offset: Option<PointKey>,
    limit: usize,
    with_payload: &WithPayloadInterface,
    with_vector: &WithVector,
) -> Result<ScrollPage, EdgeError> {
    let fetch = limit.saturating_add(1);
    let mut records = Vec::new();
    for (shard_id, shard) in shards.iter().enumerate() {
        records.extend(scroll_shard(
            shard_id,
            shard,
            offset,
            fetch,
            with_payload,
            with_vector,
        )?);
    }
    records.sort_unstable_by_key(|r| r.id);
    records.dedup_by_key(|r| r.id);
    records.truncate(fetch);
    let next_offset = if records.len() > limit {
        records.pop().map(|r| key_from_edge(r.id))
    } else {
        None
    };
    Ok(ScrollPage {
        records,
        next_offset,
    })
}

/// Exact number of points over all shards.
pub fn count_shards(shards: &[EdgeShard]) -> Result<u64, EdgeError> {
    shards
        .iter()
        .enumerate()
        .try_fold(0u64, |total, (shard_id, shard)| {
            let request = CountRequest {
                filter: None,
                exact: true,
            };
            let n = shard.count(request).map_err(|source| EdgeError::Engine {
                action: format!("count shard {shard_id}"),
                source,
            })?;
            Ok(total + n as u64)
        })
}

// ---------------------------------------------------------------------------------------------
// Collection configuration (`config.json`) and its gRPC form

/// A collection's `config.json`, as Qdrant writes it into every collection snapshot. Fields the
/// migration does not use are not kept.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct CollectionConfigFile {
    pub params: CollectionParamsFile,
    pub hnsw_config: HnswIndexConfig,
    #[serde(default)]
    pub optimizer_config: Option<OptimizerConfigFile>,
    #[serde(default)]
    pub wal_config: Option<WalConfigFile>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct CollectionParamsFile {
    #[serde(default)]
    pub vectors: VectorsConfigFile,
    #[serde(default)]
    pub sparse_vectors: Option<BTreeMap<String, SparseVectorParamsFile>>,
    #[serde(default = "one")]
    pub shard_number: u32,
    #[serde(default = "one")]
    pub replication_factor: u32,
    #[serde(default = "one")]
    pub write_consistency_factor: u32,
    #[serde(default = "yes")]
    pub on_disk_payload: bool,
}

fn one() -> u32 {
    1
}

fn yes() -> bool {
    true
}

/// One unnamed dense vector, or named ones (possibly none, for sparse-only collections).
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(untagged)]
pub enum VectorsConfigFile {
    Single(VectorParamsFile),
    Multi(BTreeMap<String, VectorParamsFile>),
}

impl Default for VectorsConfigFile {
    fn default() -> Self {
        VectorsConfigFile::Multi(BTreeMap::new())
    }
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct VectorParamsFile {
    pub size: u64,
    pub distance: Distance,
    /// Per-vector HNSW overrides: only the fields set differ from the collection's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hnsw_config: Option<HnswDiffFile>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub on_disk: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub datatype: Option<VectorStorageDatatype>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub multivector_config: Option<MultiVectorConfig>,
}

#[derive(Clone, Copy, Debug, Default, Serialize, Deserialize)]
pub struct HnswDiffFile {
    pub m: Option<u64>,
    pub ef_construct: Option<u64>,
    pub full_scan_threshold: Option<u64>,
    pub max_indexing_threads: Option<u64>,
    pub on_disk: Option<bool>,
    pub payload_m: Option<u64>,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct SparseVectorParamsFile {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub index: Option<SparseIndexFile>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub modifier: Option<Modifier>,
}

#[derive(Clone, Copy, Debug, Default, Serialize, Deserialize)]
pub struct SparseIndexFile {
    pub full_scan_threshold: Option<u64>,
    pub on_disk: Option<bool>,
    pub datatype: Option<VectorStorageDatatype>,
}

#[derive(Clone, Copy, Debug, Serialize, Deserialize)]
pub struct OptimizerConfigFile {
    pub deleted_threshold: f64,
    pub vacuum_min_vector_number: u64,
    pub default_segment_number: u64,
    pub max_segment_size: Option<u64>,
    pub memmap_threshold: Option<u64>,
    pub indexing_threshold: Option<u64>,
    pub flush_interval_sec: u64,
    pub max_optimization_threads: Option<u64>,
}

#[derive(Clone, Copy, Debug, Serialize, Deserialize)]
pub struct WalConfigFile {
    pub wal_capacity_mb: u64,
    pub wal_segments_ahead: u64,
    #[serde(default = "one_u64")]
    pub wal_retain_closed: u64,
}

fn one_u64() -> u64 {
    1
}

fn distance_to_grpc(distance: Distance) -> grpc::Distance {
    match distance {
        Distance::Cosine => grpc::Distance::Cosine,
        Distance::Euclid => grpc::Distance::Euclid,
        Distance::Dot => grpc::Distance::Dot,
        Distance::Manhattan => grpc::Distance::Manhattan,
    }
}

fn datatype_to_grpc(datatype: VectorStorageDatatype) -> grpc::Datatype {
    match datatype {
        VectorStorageDatatype::Float32 => grpc::Datatype::Float32,
        VectorStorageDatatype::Float16 => grpc::Datatype::Float16,
        VectorStorageDatatype::Uint8 => grpc::Datatype::Uint8,
        VectorStorageDatatype::Turbo4 => grpc::Datatype::Turbo4,
    }
}

#[allow(deprecated)] // `on_disk` is deprecated in the proto, yet the server still fills it.
fn hnsw_diff_to_grpc(diff: HnswDiffFile) -> grpc::HnswConfigDiff {
    grpc::HnswConfigDiff {
        m: diff.m,
        ef_construct: diff.ef_construct,
        full_scan_threshold: diff.full_scan_threshold,
        max_indexing_threads: diff.max_indexing_threads,
        on_disk: diff.on_disk,
        payload_m: diff.payload_m,
        ..Default::default()
    }
}

#[allow(deprecated)]
fn vector_params_to_grpc(params: &VectorParamsFile) -> grpc::VectorParams {
    grpc::VectorParams {
        size: params.size,
        distance: distance_to_grpc(params.distance) as i32,
        hnsw_config: params.hnsw_config.map(hnsw_diff_to_grpc),
        quantization_config: None,
        on_disk: params.on_disk,
        datatype: params.datatype.map(|d| datatype_to_grpc(d) as i32),
        multivector_config: params.multivector_config.map(|_| grpc::MultiVectorConfig {
            comparator: grpc::MultiVectorComparator::MaxSim as i32,
        }),
        memory: None,
    }
}

#[allow(deprecated)]
fn sparse_params_to_grpc(params: &SparseVectorParamsFile) -> grpc::SparseVectorParams {
    grpc::SparseVectorParams {
        index: params.index.map(|index| grpc::SparseIndexConfig {
            full_scan_threshold: index.full_scan_threshold,
            on_disk: index.on_disk,
            datatype: index.datatype.map(|d| datatype_to_grpc(d) as i32),
            memory: None,
        }),
        modifier: params.modifier.map(|m| match m {
            Modifier::None => grpc::Modifier::None as i32,
            Modifier::Idf => grpc::Modifier::Idf as i32,
        }),
    }
}

impl CollectionConfigFile {
    /// The configuration as the server's `CollectionInfo.config` carries it.
    #[allow(deprecated)] // `on_disk_payload` and `on_disk` are deprecated but still sent.
    pub fn to_grpc(&self) -> grpc::CollectionConfig {
        let params = &self.params;
        let vectors = match &params.vectors {
            VectorsConfigFile::Single(p) => {
                vectors_config::Config::Params(vector_params_to_grpc(p))
            }
            VectorsConfigFile::Multi(map) => {
                vectors_config::Config::ParamsMap(grpc::VectorParamsMap {
                    map: map
                        .iter()
                        .map(|(k, p)| (k.clone(), vector_params_to_grpc(p)))
                        .collect(),
                })
            }
        };
        let hnsw = &self.hnsw_config;
        grpc::CollectionConfig {
            params: Some(grpc::CollectionParams {
                shard_number: params.shard_number,
                on_disk_payload: params.on_disk_payload,
                vectors_config: Some(grpc::VectorsConfig {
                    config: Some(vectors),
                }),
                replication_factor: Some(params.replication_factor),
                write_consistency_factor: Some(params.write_consistency_factor),
                sparse_vectors_config: params.sparse_vectors.as_ref().map(|map| {
                    grpc::SparseVectorConfig {
                        map: map
                            .iter()
                            .map(|(k, p)| (k.clone(), sparse_params_to_grpc(p)))
                            .collect(),
                    }
                }),
                ..Default::default()
            }),
            hnsw_config: Some(hnsw_diff_to_grpc(HnswDiffFile {
                m: Some(hnsw.m as u64),
                ef_construct: Some(hnsw.ef_construct as u64),
                full_scan_threshold: Some(hnsw.full_scan_threshold as u64),
                max_indexing_threads: Some(hnsw.max_indexing_threads as u64),
                on_disk: hnsw.on_disk,
                payload_m: hnsw.payload_m.map(|m| m as u64),
            })),
            optimizer_config: self.optimizer_config.map(|o| grpc::OptimizersConfigDiff {
                deleted_threshold: Some(o.deleted_threshold),
                vacuum_min_vector_number: Some(o.vacuum_min_vector_number),
                default_segment_number: Some(o.default_segment_number),
                max_segment_size: o.max_segment_size,
                memmap_threshold: o.memmap_threshold,
                indexing_threshold: o.indexing_threshold,
                flush_interval_sec: Some(o.flush_interval_sec),
                deprecated_max_optimization_threads: None,
                max_optimization_threads: Some(grpc::MaxOptimizationThreads {
                    variant: Some(match o.max_optimization_threads {
                        Some(n) => grpc::max_optimization_threads::Variant::Value(n),
                        None => grpc::max_optimization_threads::Variant::Setting(
                            grpc::max_optimization_threads::Setting::Auto as i32,
                        ),
                    }),
                }),
                prevent_unoptimized: None,
            }),
            wal_config: self.wal_config.map(|w| grpc::WalConfigDiff {
                wal_capacity_mb: Some(w.wal_capacity_mb),
                wal_segments_ahead: Some(w.wal_segments_ahead),
                wal_retain_closed: Some(w.wal_retain_closed),
            }),
            ..Default::default()
        }
    }
}

fn schema_type_to_grpc(data_type: PayloadSchemaType) -> grpc::PayloadSchemaType {
    match data_type {
        PayloadSchemaType::Keyword => grpc::PayloadSchemaType::Keyword,
        PayloadSchemaType::Integer => grpc::PayloadSchemaType::Integer,
        PayloadSchemaType::Float => grpc::PayloadSchemaType::Float,
        PayloadSchemaType::Geo => grpc::PayloadSchemaType::Geo,
        PayloadSchemaType::Text => grpc::PayloadSchemaType::Text,
        PayloadSchemaType::Bool => grpc::PayloadSchemaType::Bool,
        PayloadSchemaType::Datetime => grpc::PayloadSchemaType::Datetime,
        PayloadSchemaType::Uuid => grpc::PayloadSchemaType::Uuid,
    }
}

/// `CollectionInfo` for a collection of `shards` with `config`: counts, segments and payload
/// indexes come from the shards (summed, as the server sums its shards). Payload index
/// parameters beyond the data type are not reported.
pub fn collection_info(
    config: &CollectionConfigFile,
    shards: &[EdgeShard],
) -> grpc::CollectionInfo {
    let mut info = grpc::CollectionInfo {
        status: grpc::CollectionStatus::Green as i32,
        optimizer_status: Some(grpc::OptimizerStatus {
            ok: true,
            error: String::new(),
        }),
        config: Some(config.to_grpc()),
        points_count: Some(0),
        indexed_vectors_count: Some(0),
        ..Default::default()
    };
    for shard in shards {
        let shard_info = shard.info();
        info.segments_count += shard_info.segments_count as u64;
        info.points_count = info
            .points_count
            .map(|n| n + shard_info.points_count as u64);
        info.indexed_vectors_count = info
            .indexed_vectors_count
            .map(|n| n + shard_info.indexed_vectors_count as u64);
        for (key, index) in shard_info.payload_schema {
            let entry = info
                .payload_schema
                .entry(key.to_string())
                .or_insert_with(|| grpc::PayloadSchemaInfo {
                    data_type: schema_type_to_grpc(index.data_type) as i32,
                    params: None,
                    points: Some(0),
                });
            entry.points = entry.points.map(|n| n + index.points as u64);
        }
    }
    info
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_keep_their_kind_like_the_server() {
        let json: serde_json::Value =
            serde_json::from_str(r#"[1, -1, 1.0, 0.1, 18446744073709551615, 9223372036854775807]"#)
                .unwrap();
        let Some(Kind::ListValue(list)) = json_to_grpc(json).kind else {
            panic!("not a list")
        };
        let kinds: Vec<_> = list.values.into_iter().map(|v| v.kind.unwrap()).collect();
        assert_eq!(
            kinds,
            vec![
                Kind::IntegerValue(1),
                Kind::IntegerValue(-1),
                Kind::DoubleValue(1.0),
                Kind::DoubleValue(0.1),
                // Beyond i64: the server sends a double.
                Kind::DoubleValue(18446744073709551615.0),
                Kind::IntegerValue(i64::MAX),
            ]
        );
    }

    #[test]
    fn grpc_values_round_trip_and_nan_is_refused() {
        let json: serde_json::Value =
            serde_json::from_str(r#"{"a": null, "b": [true, "x\u0000y", {"c": -2}], "d": 2.5}"#)
                .unwrap();
        assert_eq!(grpc_to_json(json_to_grpc(json.clone())).unwrap(), json);
        assert!(
            grpc_to_json(grpc::Value {
                kind: Some(Kind::DoubleValue(f64::NAN))
            })
            .is_err()
        );
        assert_eq!(
            grpc_to_json(grpc::Value { kind: None }).unwrap(),
            serde_json::Value::Null
        );
    }

    #[test]
    fn vectors_use_the_oneof_only() {
        let out = vectors_to_grpc(VectorStructInternal::Named(HashMap::from([(
            "m".to_string(),
            Vector::new_multi(vec![vec![1.0, 2.0], vec![3.0, 4.0]])
                .unwrap()
                .0,
        )])));
        let Some(vectors_output::VectorsOptions::Vectors(named)) = out.vectors_options else {
            panic!("not named")
        };
        #[allow(deprecated)]
        let grpc::VectorOutput {
            data,
            indices,
            vectors_count,
            vector,
        } = named.vectors["m"].clone();
        assert!(data.is_empty() && indices.is_none() && vectors_count.is_none());
        let Some(vector_output::Vector::MultiDense(multi)) = vector else {
            panic!("not multi")
        };
        let rows: Vec<_> = multi.vectors.into_iter().map(|v| v.data).collect();
        assert_eq!(rows, vec![vec![1.0, 2.0], vec![3.0, 4.0]]);
    }

    #[test]
    fn ids_map_both_ways_in_the_same_order() {
        let keys = [
            PointKey::Num(0),
            PointKey::Num(u64::MAX),
            PointKey::Uuid(1),
            PointKey::Uuid(u128::MAX),
        ];
        let edge: Vec<_> = keys.iter().map(|k| key_to_edge(*k)).collect();
        assert!(edge.windows(2).all(|w| w[0] < w[1]));
        assert_eq!(
            edge.into_iter().map(key_from_edge).collect::<Vec<_>>(),
            keys
        );
    }

    #[test]
    #[allow(deprecated)]
    fn deprecated_input_forms_are_understood() {
        let id = PointKey::Num(7).to_proto();
        let multi = grpc::Vector {
            data: vec![1.0, 2.0, 3.0, 4.0, 5.0, 6.0],
            vectors_count: Some(3),
            ..Default::default()
        };
        let VectorInternal::MultiDense(m) = input_vector(&id, multi).unwrap().0 else {
            panic!("not multi")
        };
        assert_eq!(m.dim, 2);
        let bad = grpc::Vector {
            data: vec![1.0, 2.0, 3.0],
            vectors_count: Some(2),
            ..Default::default()
        };
        assert!(input_vector(&id, bad).is_err());
        let sparse = grpc::Vector {
            data: vec![0.5],
            indices: Some(grpc::SparseIndices { data: vec![9] }),
            ..Default::default()
        };
        assert!(matches!(
            input_vector(&id, sparse).unwrap().0,
            VectorInternal::Sparse(_)
        ));
    }

    #[test]
    fn config_json_of_a_real_snapshot_parses() {
        let text = r#"{"params":{"vectors":{"size":16,"distance":"Cosine"},"shard_number":1,"replication_factor":1,"write_consistency_factor":1,"on_disk_payload":true},"hnsw_config":{"m":24,"ef_construct":150,"full_scan_threshold":10000,"max_indexing_threads":0,"on_disk":false},"optimizer_config":{"deleted_threshold":0.2,"vacuum_min_vector_number":1000,"default_segment_number":0,"max_segment_size":null,"memmap_threshold":null,"indexing_threshold":10000,"flush_interval_sec":5,"max_optimization_threads":null,"prevent_unoptimized":null},"wal_config":{"wal_capacity_mb":32,"wal_segments_ahead":0,"wal_retain_closed":1},"quantization_config":null,"uuid":null}"#;
        let config: CollectionConfigFile = serde_json::from_str(text).unwrap();
        let grpc = config.to_grpc();
        let params = grpc.params.unwrap();
        let Some(vectors_config::Config::Params(v)) = params.vectors_config.unwrap().config else {
            panic!("not a single vector")
        };
        assert_eq!((v.size, v.distance), (16, grpc::Distance::Cosine as i32));
        assert_eq!(grpc.hnsw_config.unwrap().m, Some(24));
    }
}
