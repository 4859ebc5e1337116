//! `qdrant2pg generate`: fill any Qdrant with a synthetic collection, for benchmarks and demos.
//!
//! Through the ordinary gRPC API, in parallel batches: dense vectors (unnamed or named),
//! sparse and multi vectors, integer ids (sequential, or sparse and skewed: dense blocks far
//! apart), UUIDs or both, and payloads of a chosen size that carry every COPY/JSON hazard
//! (`|`, `\`, newlines, tabs, quotes, `\N`, non-ASCII). Values come from a seeded generator, so
//! the same flags give the same collection.

use std::collections::HashMap;
use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering};

use anyhow::Context;
use qdrant_client::qdrant::{
    self as pb, CreateCollection, PointStruct, SparseVectorConfig, SparseVectorParams, Value,
    VectorParams, VectorParamsMap, VectorsConfig, vectors_config,
};

use crate::config::qdrant::{Connection, QdrantArgs, QdrantSection};
use crate::point_id::PointKey;
use crate::progress::{OutputArgs, Ui};
use crate::source::qdrant::QdrantReader;

/// How the generated ids are laid out.
#[derive(Clone, Copy, Debug, clap::ValueEnum)]
pub enum IdKind {
    /// 0, 1, 2, …
    Sequential,
    /// Integers in dense blocks 2^40 apart, with gaps inside blocks: a skewed id space.
    Sparse,
    /// Random UUIDs.
    Uuid,
    /// Every other point an integer, the rest UUIDs.
    Mixed,
}

/// Qdrant's distances, as flag values.
#[derive(Clone, Copy, Debug, clap::ValueEnum)]
pub enum DistanceArg {
    Cosine,
    Euclid,
    Dot,
    Manhattan,
}

/// `qdrant2pg generate` flags.
#[derive(Debug, clap::Args)]
pub struct GenerateArgs {
    #[command(flatten)]
    pub qdrant: QdrantArgs,
    /// The collection to create (it must not exist).
    #[arg(long, value_name = "NAME")]
    pub collection: String,
    #[arg(long, default_value_t = 100_000, value_name = "N")]
    pub points: u64,
    /// Dimension of each dense vector.
    #[arg(long, default_value_t = 768, value_name = "N")]
    pub dim: u64,
    #[arg(long, value_enum, default_value_t = DistanceArg::Cosine)]
    pub distance: DistanceArg,
    /// Named dense vectors (repeatable); none: one unnamed vector.
    #[arg(long = "vector", value_name = "NAME")]
    pub vectors: Vec<String>,
    /// A sparse vector (repeatable), present on two points out of three.
    #[arg(long = "sparse", value_name = "NAME")]
    pub sparse: Vec<String>,
    /// A multivector of 1–4 rows of `dim / 8` values (repeatable).
    #[arg(long = "multi", value_name = "NAME")]
    pub multi: Vec<String>,
    #[arg(long, value_enum, default_value_t = IdKind::Sequential)]
    pub ids: IdKind,
    /// Approximate payload size per point, in bytes.
    #[arg(long, default_value_t = 200, value_name = "BYTES")]
    pub payload_bytes: usize,
    /// Points per upsert request.
    #[arg(long, default_value_t = 256, value_name = "N")]
    pub batch: u64,
    /// Concurrent upsert connections.
    #[arg(long, default_value_t = 4, value_name = "N")]
    pub parallel: usize,
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// Shards of the new collection.
    #[arg(long, default_value_t = 1, value_name = "N")]
    pub shards: u32,
    /// The collection's HNSW `m`; 0 builds no graph, so a benchmark's server spends no CPU on
    /// indexing while it is measured. Default: the server's.
    #[arg(long, value_name = "M")]
    pub hnsw_m: Option<u64>,
}

/// splitmix64: a tiny, good, seedable generator — the values only need to look like data.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Roughly normal, sd ≈ 0.05, like embedding components (sum of uniforms).
    fn component(&mut self) -> f32 {
        let sum: f64 = (0..4)
            .map(|_| (self.next() >> 11) as f64 / (1u64 << 53) as f64)
            .sum();
        ((sum - 2.0) * 0.0866) as f32
    }
}

fn id_of(kind: IdKind, i: u64, seed: u64) -> PointKey {
    let uuid = |i: u64| {
        let mut rng = Rng(seed ^ i.wrapping_mul(0x2545_f491_4f6c_dd1d));
        PointKey::Uuid(
            (u128::from(rng.next()) << 64 | u128::from(rng.next())) & !(0xf << 76) | (0x4 << 76),
        )
    };
    match kind {
        IdKind::Sequential => PointKey::Num(i),
        IdKind::Sparse => PointKey::Num(((i / 1000) << 40) | ((i % 1000) * 3)),
        IdKind::Uuid => uuid(i),
        IdKind::Mixed if i.is_multiple_of(2) => PointKey::Num(i),
        IdKind::Mixed => uuid(i),
    }
}

const HAZARDS: [&str; 8] = [
    "|",
    "\\",
    "\n",
    "\r\n",
    "\t",
    "\"quoted\"",
    "\\N",
    "ünï 中文 🚀",
];

fn payload(rng: &mut Rng, i: u64, bytes: usize) -> HashMap<String, Value> {
    let mut text = String::with_capacity(bytes);
    while text.len() < bytes.saturating_sub(40) {
        let r = rng.next();
        if r.is_multiple_of(7) {
            text.push_str(HAZARDS[(r >> 8) as usize % HAZARDS.len()]);
        } else {
            text.push((b'a' + (r >> 16) as u8 % 26) as char);
            if r.is_multiple_of(5) {
                text.push(' ');
            }
        }
    }
    HashMap::from([
        ("i".to_owned(), Value::from(i as i64)),
        ("score".to_owned(), Value::from(rng.component() as f64)),
        ("even".to_owned(), Value::from(i.is_multiple_of(2))),
        ("text".to_owned(), Value::from(text)),
    ])
}

fn dense(data: Vec<f32>) -> pb::Vector {
    pb::Vector {
        vector: Some(pb::vector::Vector::Dense(pb::DenseVector { data })),
        ..Default::default()
    }
}

fn point(args: &GenerateArgs, i: u64) -> PointStruct {
    let mut rng = Rng(args.seed ^ i.wrapping_mul(0x9e37_79b9_7f4a_7c15));
    let mut values = |n: u64| (0..n).map(|_| rng.component()).collect::<Vec<f32>>();
    let mut named: HashMap<String, pb::Vector> = HashMap::new();
    let unnamed = args.vectors.is_empty() && args.sparse.is_empty() && args.multi.is_empty();
    let single = unnamed.then(|| dense(values(args.dim)));
    for name in &args.vectors {
        named.insert(name.clone(), dense(values(args.dim)));
    }
    let mut rng = Rng(args.seed ^ i.rotate_left(17));
    for name in &args.multi {
        let rows = 1 + rng.next() % 4;
        let width = (args.dim / 8).max(1);
        let vectors = (0..rows)
            .map(|_| pb::DenseVector {
                data: (0..width).map(|_| rng.component()).collect(),
            })
            .collect();
        named.insert(
            name.clone(),
            pb::Vector {
                vector: Some(pb::vector::Vector::MultiDense(pb::MultiDenseVector {
                    vectors,
                })),
                ..Default::default()
            },
        );
    }
    for name in &args.sparse {
        if i % 3 == 2 {
            continue;
        }
        let mut indices: Vec<u32> = (0..1 + rng.next() % 16)
            .map(|_| (rng.next() % 30_000) as u32)
            .collect();
        indices.sort_unstable();
        indices.dedup();
        let values = indices
            .iter()
            .map(|_| rng.component().abs() + 0.01)
            .collect();
        named.insert(
            name.clone(),
            pb::Vector {
                vector: Some(pb::vector::Vector::Sparse(pb::SparseVector {
                    values,
                    indices,
                })),
                ..Default::default()
            },
        );
    }
    let vectors = match single {
        Some(v) => pb::Vectors {
            vectors_options: Some(pb::vectors::VectorsOptions::Vector(v)),
        },
        None => pb::Vectors {
            vectors_options: Some(pb::vectors::VectorsOptions::Vectors(pb::NamedVectors {
                vectors: named,
            })),
        },
    };
    PointStruct {
        id: Some(id_of(args.ids, i, args.seed).to_proto()),
        vectors: Some(vectors),
        payload: payload(&mut rng, i, args.payload_bytes),
    }
}

fn create_request(args: &GenerateArgs) -> CreateCollection {
    let distance = match args.distance {
        DistanceArg::Cosine => pb::Distance::Cosine,
        DistanceArg::Euclid => pb::Distance::Euclid,
        DistanceArg::Dot => pb::Distance::Dot,
        DistanceArg::Manhattan => pb::Distance::Manhattan,
    } as i32;
    let params = |size| VectorParams {
        size,
        distance,
        ..Default::default()
    };
    let unnamed = args.vectors.is_empty() && args.sparse.is_empty() && args.multi.is_empty();
    let config = if unnamed {
        vectors_config::Config::Params(params(args.dim))
    } else {
        let mut map: HashMap<String, VectorParams> = args
            .vectors
            .iter()
            .map(|n| (n.clone(), params(args.dim)))
            .collect();
        for name in &args.multi {
            let mut p = params((args.dim / 8).max(1));
            p.multivector_config = Some(pb::MultiVectorConfig {
                comparator: pb::MultiVectorComparator::MaxSim as i32,
            });
            map.insert(name.clone(), p);
        }
        vectors_config::Config::ParamsMap(VectorParamsMap { map })
    };
    CreateCollection {
        collection_name: args.collection.clone(),
        vectors_config: Some(VectorsConfig {
            config: Some(config),
        }),
        sparse_vectors_config: (!args.sparse.is_empty()).then(|| SparseVectorConfig {
            map: args
                .sparse
                .iter()
                .map(|n| (n.clone(), SparseVectorParams::default()))
                .collect(),
        }),
        shard_number: Some(args.shards.max(1)),
        hnsw_config: args.hnsw_m.map(|m| pb::HnswConfigDiff {
            m: Some(m),
            ..Default::default()
        }),
        ..Default::default()
    }
}

pub fn run(args: GenerateArgs, output: &OutputArgs) -> anyhow::Result<ExitCode> {
    let ui = Ui::new(output);
    let connection = Connection::resolve(&args.qdrant, &QdrantSection::default(), None)?;
    let reader = QdrantReader::connect(&connection, Default::default())?;
    reader
        .create_collection(create_request(&args))
        .with_context(|| format!("creating collection {:?}", args.collection))?;
    let task = ui.task(&args.collection, Some(args.points));
    let next = AtomicU64::new(0);
    let batch = args.batch.max(1);
    let errors = std::sync::Mutex::new(Vec::new());
    std::thread::scope(|s| {
        for _ in 0..args.parallel.max(1) {
            s.spawn(|| {
                let result = (|| -> anyhow::Result<()> {
                    let writer = QdrantReader::connect(&connection, Default::default())?;
                    loop {
                        let start = next.fetch_add(batch, Ordering::Relaxed);
                        if start >= args.points {
                            return Ok(());
                        }
                        let end = (start + batch).min(args.points);
                        let points: Vec<PointStruct> =
                            (start..end).map(|i| point(&args, i)).collect();
                        writer.upsert(&args.collection, points)?;
                        task.add(end - start, 0);
                    }
                })();
                if let Err(e) = result {
                    next.store(u64::MAX / 2, Ordering::Relaxed);
                    errors.lock().unwrap_or_else(|p| p.into_inner()).push(e);
                }
            });
        }
    });
    if let Some(err) = errors
        .into_inner()
        .unwrap_or_else(|p| p.into_inner())
        .into_iter()
        .next()
    {
        task.finish("FAILED");
        return Err(err.context(format!("generating collection {:?}", args.collection)));
    }
    task.finish("ok");
    ui.finish("generate", output)?;
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_follow_their_kind_and_are_distinct() {
        let mut seen = std::collections::HashSet::new();
        for kind in [
            IdKind::Sequential,
            IdKind::Sparse,
            IdKind::Uuid,
            IdKind::Mixed,
        ] {
            seen.clear();
            for i in 0..5000 {
                assert!(seen.insert(id_of(kind, i, 7)), "{kind:?} repeats at {i}");
            }
        }
        assert_eq!(id_of(IdKind::Sparse, 1001, 0), PointKey::Num((1 << 40) | 3));
        assert!(matches!(id_of(IdKind::Mixed, 3, 0), PointKey::Uuid(_)));
    }

    #[test]
    fn components_look_like_embeddings() {
        let mut rng = Rng(1);
        let values: Vec<f32> = (0..10_000).map(|_| rng.component()).collect();
        let mean = values.iter().sum::<f32>() / values.len() as f32;
        let sd =
            (values.iter().map(|v| (v - mean).powi(2)).sum::<f32>() / values.len() as f32).sqrt();
        assert!(
            mean.abs() < 0.005 && (0.03..0.07).contains(&sd),
            "mean {mean} sd {sd}"
        );
    }
}
