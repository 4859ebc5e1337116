//! A collection's `config.json`, as a snapshot holds it, and the `CollectionInfo` a server would
//! answer for it.

use std::collections::BTreeMap;

use qdrant_client::qdrant::{self as grpc, vectors_config};
use qdrant_edge::{
    Distance, EdgeShard, HnswIndexConfig, Modifier, MultiVectorConfig, PayloadSchemaType,
    VectorStorageDatatype,
};
use serde::{Deserialize, Serialize};

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
