//! Points and layouts for the encoders' unit tests, built the way a server sends them.

use std::collections::HashMap;

use qdrant_client::qdrant::vector_output::Vector;
use qdrant_client::qdrant::vectors_output::VectorsOptions;
use qdrant_client::qdrant::{
    DenseVector, NamedVectorsOutput, RetrievedPoint, SparseIndices, SparseVector, Value,
    VectorOutput, VectorsOutput,
};

use crate::layout::{Datatype, Layout, PayloadType, VectorShape, VectorSpec};
use crate::point_id::PointKey;

pub fn spec(name: &str, shape: VectorShape, dim: Option<u64>) -> VectorSpec {
    VectorSpec {
        name: name.into(),
        shape,
        dim,
        datatype: Datatype::Float32,
        distance: None,
        hnsw: None,
    }
}

pub fn layout(vectors: Vec<VectorSpec>) -> Layout {
    Layout::new(vectors, PayloadType::Json)
}

/// A point with `vectors`; a single vector named "" is sent as the unnamed vector.
pub fn point(key: PointKey, vectors: Vec<(&str, VectorOutput)>) -> RetrievedPoint {
    let options = match vectors.as_slice() {
        [] => None,
        [("", _)] => vectors
            .into_iter()
            .next()
            .map(|(_, v)| VectorsOptions::Vector(v)),
        _ => Some(VectorsOptions::Vectors(NamedVectorsOutput {
            vectors: vectors
                .into_iter()
                .map(|(k, v)| (k.to_owned(), v))
                .collect(),
        })),
    };
    RetrievedPoint {
        id: Some(key.to_proto()),
        vectors: options.map(|o| VectorsOutput {
            vectors_options: Some(o),
        }),
        ..Default::default()
    }
}

pub fn with_payload(mut point: RetrievedPoint, strings: Vec<(&str, &str)>) -> RetrievedPoint {
    point.payload = strings
        .into_iter()
        .map(|(k, v)| (k.to_owned(), Value::from(v.to_owned())))
        .collect::<HashMap<_, _>>();
    point
}

/// A dense vector as Qdrant ≥ 1.16 sends it.
pub fn dense(data: Vec<f32>) -> VectorOutput {
    VectorOutput {
        vector: Some(Vector::Dense(DenseVector { data })),
        ..Default::default()
    }
}

/// A sparse vector as Qdrant ≥ 1.16 sends it.
pub fn sparse(indices: Vec<u32>, values: Vec<f32>) -> VectorOutput {
    VectorOutput {
        vector: Some(Vector::Sparse(SparseVector { values, indices })),
        ..Default::default()
    }
}

/// A vector in the deprecated fields older servers fill: flat data, sparse indices, and the
/// row count of a multivector.
#[allow(deprecated)]
pub fn old_style(data: Vec<f32>, indices: Option<Vec<u32>>, rows: Option<u32>) -> VectorOutput {
    VectorOutput {
        data,
        indices: indices.map(|data| SparseIndices { data }),
        vectors_count: rows,
        vector: None,
    }
}

/// A multivector in the deprecated flat form.
pub fn multi_flat(data: Vec<f32>, rows: u32) -> VectorOutput {
    old_style(data, None, Some(rows))
}

// The exact JSON reader and comparison the integration tests use too: one copy, in
// `tests/support`, compiled into this crate's unit tests as well (`qdrant2pg::` names this
// crate from inside it; see lib.rs).
#[path = "../../tests/support/exact_json.rs"]
mod exact_json;
pub use exact_json::{json_identical, parse_json_exactly};
