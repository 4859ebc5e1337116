//! gRPC vectors for the tests that write collections through Qdrant's API.

use qdrant_client::qdrant as grpc;

use super::rng::Rng;

pub fn dense(data: Vec<f32>) -> grpc::Vector {
    grpc::Vector {
        vector: Some(grpc::vector::Vector::Dense(grpc::DenseVector { data })),
        ..Default::default()
    }
}

/// A sparse vector on `indices` (sorted and deduplicated here), with a positive value each.
pub fn sparse(rng: &mut Rng, mut indices: Vec<u32>) -> grpc::Vector {
    indices.sort_unstable();
    indices.dedup();
    let values = indices.iter().map(|_| rng.unit().abs() + 0.01).collect();
    grpc::Vector {
        vector: Some(grpc::vector::Vector::Sparse(grpc::SparseVector {
            indices,
            values,
        })),
        ..Default::default()
    }
}
