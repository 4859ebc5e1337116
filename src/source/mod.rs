//! Sources: where points come from — Qdrant over gRPC, or a snapshot on disk — and the
//! machinery that reads them in parallel: the id-range planner and the cursors.
//!
//! [`Source`] is what the commands hold: the same calls answered by a server or by snapshot
//! files, and one [`PageReader`] per cursor thread (a gRPC connection each, or a handle on the
//! shards every cursor shares).

pub mod cursor;
pub mod edge;
pub mod error;
pub mod export_dir;
pub mod page;
pub mod parallel;
pub mod plan;
pub mod qdrant;
pub mod rest;
pub mod schema;
pub mod snapshot;
pub mod wire;

use std::path::Path;
use std::sync::Arc;

use qdrant_client::qdrant::{CollectionInfo, RetrievedPoint};

use crate::config::qdrant::{Connection, QdrantArgs, QdrantSection};
use crate::payload::ExactPayloads;
use crate::point_id::PointKey;
use crate::source::error::SourceError;
use crate::source::page::{Fetch, PageReader, ScrollPage};
use crate::source::plan::IdSpan;
use crate::source::qdrant::QdrantReader;
use crate::source::rest::RestState;
use crate::source::snapshot::SnapshotFiles;
use crate::source::snapshot::reader::{SnapshotReader, SnapshotSet};

/// Whether an error is the server's or the connection's rather than one collection's: a run
/// stops on it instead of going on with the other collections.
pub fn concerns_every_collection(error: &anyhow::Error) -> bool {
    error.chain().any(|cause| {
        cause
            .downcast_ref::<SourceError>()
            .is_some_and(SourceError::concerns_every_collection)
    })
}

/// A Qdrant server, or collection snapshots read without one.
pub enum Source {
    Qdrant {
        connection: Connection,
        /// For the command's own calls; cursors open their own. Boxed: a client with its
        /// runtime is far larger than the other variant.
        reader: Box<QdrantReader>,
        /// Whether the REST API failed, shared by every reader.
        rest: Arc<RestState>,
    },
    Snapshots(Arc<SnapshotSet>),
}

impl Source {
    /// Snapshots when `--snapshot` is given (keeping the `wanted` collections, all if empty),
    /// else the server the flags and the YAML's `qdrant:` section point at.
    pub fn open(
        qdrant: &QdrantArgs,
        section: &QdrantSection,
        config_file: Option<&Path>,
        snapshots: &SnapshotFiles,
        wanted: &[String],
    ) -> anyhow::Result<Source> {
        if !snapshots.paths.is_empty() {
            let set = SnapshotSet::open(snapshots, wanted)?;
            return Ok(Source::Snapshots(Arc::new(set)));
        }
        let connection = Connection::resolve(qdrant, section, config_file)?;
        let rest = Arc::new(RestState::default());
        let reader = QdrantReader::connect(&connection, Arc::clone(&rest))?;
        Ok(Source::Qdrant {
            connection,
            reader: Box::new(reader),
            rest,
        })
    }

    /// Every collection's name, sorted.
    pub fn list_collections(&self) -> Result<Vec<String>, SourceError> {
        match self {
            Source::Qdrant { reader, .. } => reader.list_collections(),
            Source::Snapshots(set) => Ok(set.names()),
        }
    }

    /// The collections asked for, or every collection when none is named.
    pub fn collections(&self, wanted: &[String]) -> Result<Vec<String>, SourceError> {
        if wanted.is_empty() {
            self.list_collections()
        } else {
            Ok(wanted.to_vec())
        }
    }

    pub fn collection_info(&self, collection: &str) -> Result<CollectionInfo, SourceError> {
        match self {
            Source::Qdrant { reader, .. } => reader.collection_info(collection),
            Source::Snapshots(set) => Ok(set.collection_info(collection)?),
        }
    }

    pub fn count_exact(&self, collection: &str) -> Result<u64, SourceError> {
        match self {
            Source::Qdrant { reader, .. } => reader.count_exact(collection),
            Source::Snapshots(set) => Ok(set.count_exact(collection)?),
        }
    }

    /// The points with these ids, with their exact payloads; missing ids are left out.
    pub fn get_points(
        &self,
        collection: &str,
        ids: &[PointKey],
    ) -> Result<(Vec<RetrievedPoint>, ExactPayloads), SourceError> {
        match self {
            Source::Qdrant { reader, .. } => reader.get_points(collection, ids),
            Source::Snapshots(set) => Ok(set.get_points(collection, ids)?),
        }
    }

    /// Up to `n` ids of points spread evenly over where the ids lie (`span`), sorted.
    pub fn keys_spread(
        &self,
        collection: &str,
        span: &IdSpan,
        n: usize,
    ) -> Result<Vec<PointKey>, SourceError> {
        let mut keys = Vec::new();
        for probe in span.spread(n) {
            if let Some(key) = self.first_at_or_after(collection, probe)? {
                keys.push(key);
            }
        }
        keys.sort();
        keys.dedup();
        keys.truncate(n);
        Ok(keys)
    }

    /// The server, where there is one (a search needs Qdrant's own index).
    pub fn server(&self) -> Option<&QdrantReader> {
        match self {
            Source::Qdrant { reader, .. } => Some(reader),
            Source::Snapshots(_) => None,
        }
    }

    /// A reader for one more thread: its own connection, or the shared shards.
    pub fn open_reader(&self) -> anyhow::Result<Box<dyn PageReader>> {
        Ok(match self {
            Source::Qdrant {
                connection, rest, ..
            } => Box::new(QdrantReader::connect(connection, Arc::clone(rest))?),
            Source::Snapshots(set) => Box::new(SnapshotReader(Arc::clone(set))),
        })
    }

    /// Why payloads that gRPC bends could not be read exactly, if they could not: the REST
    /// API's failure. Snapshots read every payload exactly.
    pub fn inexact_because(&self) -> Option<String> {
        match self {
            Source::Qdrant { rest, .. } => rest.failure().map(str::to_owned),
            Source::Snapshots(_) => None,
        }
    }
}

impl PageReader for Source {
    fn scroll(
        &self,
        collection: &str,
        offset: PointKey,
        limit: u32,
        fetch: Fetch,
    ) -> Result<ScrollPage, SourceError> {
        match self {
            Source::Qdrant { reader, .. } => reader.scroll(collection, offset, limit, fetch),
            Source::Snapshots(set) => Ok(set.scroll(collection, offset, limit, fetch)?),
        }
    }

    fn first_at_or_after(
        &self,
        collection: &str,
        key: PointKey,
    ) -> Result<Option<PointKey>, SourceError> {
        match self {
            Source::Qdrant { reader, .. } => reader.first_at_or_after(collection, key),
            Source::Snapshots(set) => Ok(set.first_at_or_after(collection, key)?),
        }
    }
}
