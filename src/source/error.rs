//! How reading a source fails: one error type for the server's calls and the snapshots', so the
//! cursors and the commands tell a failure of one collection from one of the whole source
//! ([`SourceError::concerns_every_collection`]).

use tonic::{Code, Status};

use crate::point_id::{PointIdError, PointKey};
use crate::source::rest::RestError;
use crate::source::snapshot::SnapshotError;
use crate::source::wire::PayloadTooDeep;

/// A Qdrant request failed.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    #[error("cannot reach Qdrant: {hint}")]
    Unreachable {
        hint: String,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    #[error(
        "Qdrant at {url} rejected the request as unauthenticated: check --api-key, \
         QDRANT_API_KEY or qdrant.api_key"
    )]
    Unauthenticated { url: String },
    #[error("collection {collection:?} does not exist in Qdrant at {url}")]
    CollectionNotFound { collection: String, url: String },
    #[error("{operation} of collection {collection:?} failed after {attempts} attempt(s)")]
    Request {
        collection: String,
        operation: &'static str,
        attempts: u32,
        #[source]
        source: Box<Status>,
    },
    #[error("collection {collection:?}: a scroll page holds a bad point id")]
    BadId {
        collection: String,
        #[source]
        source: PointIdError,
    },
    #[error(
        "collection {collection:?}: point {id} cannot be read over gRPC (the server fails on it); \
         read it from a snapshot with --snapshot"
    )]
    UnreadablePoint {
        collection: String,
        id: PointKey,
        #[source]
        source: Box<Status>,
    },
    #[error("collection {collection:?}: {source}")]
    TooDeep {
        collection: String,
        #[source]
        source: PayloadTooDeep,
    },
    #[error(transparent)]
    Rest(#[from] RestError),
    #[error(
        "collection {collection:?}: point {point} holds a payload number between 2^63 and 2^64, \
         which Qdrant's gRPC API sends only as the nearest double, and its exact value could not \
         be read: {why}; fix the REST address (--rest-url), or pass --allow-rounded-integers to \
         write such numbers as gRPC sends them"
    )]
    Inexact {
        collection: String,
        point: PointKey,
        why: String,
    },
    #[error("collection {collection:?}: the server broke the scroll protocol: {detail}")]
    Protocol { collection: String, detail: String },
    #[error(transparent)]
    Snapshot(#[from] Box<SnapshotError>),
    #[error("cannot start the gRPC runtime")]
    Runtime(#[source] std::io::Error),
}

impl SourceError {
    /// Whether the failure is the server's or the connection's, not one collection's: every
    /// other collection would fail the same way.
    pub fn concerns_every_collection(&self) -> bool {
        matches!(
            self,
            SourceError::Unreachable { .. }
                | SourceError::Unauthenticated { .. }
                | SourceError::Runtime(_)
        )
    }

    /// A request the server (or the client's decoder) failed with `Internal`.
    pub fn is_internal(&self) -> bool {
        matches!(self, SourceError::Request { source, .. } if source.code() == Code::Internal)
    }
}

impl From<SnapshotError> for SourceError {
    fn from(error: SnapshotError) -> Self {
        SourceError::Snapshot(Box::new(error))
    }
}
