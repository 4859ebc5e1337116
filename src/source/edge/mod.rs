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
//! The snapshot files themselves (unpacking, checksums, versions) are `source::snapshot`'s. The
//! files here: ids and errors (this one), [`convert`] (engine records → gRPC), [`shard`] (scroll
//! and count over shards), [`config_file`] (`config.json` and its gRPC form). The other
//! direction, gRPC requests into the engine, serves only the tests' in-process server and lives
//! with it (`tests/support/edge_qdrant.rs`).

pub mod config_file;
pub mod convert;
pub mod shard;

use qdrant_edge::external::uuid::Uuid;
use qdrant_edge::{OperationError, PointId as EdgeId};

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

#[cfg(test)]
mod tests {
    use super::*;

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
}
