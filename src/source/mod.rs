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
use crate::source::qdrant::QdrantReader;
use crate::source::rest::RestState;
use crate::source::snapshot::SnapshotFiles;
use crate::source::snapshot::reader::{SnapshotReader, SnapshotSet};

/// Ids per page when a sample scrolls every id: ids alone make a small page (tens of bytes
/// each). The genuine Qdrant 1.18.3 on the test machine scrolled 20,000 ids in 0.12 s in pages
/// of 1,000 and of 10,000 alike; the larger page keeps round trips few on a remote server.
const ID_PAGE: u32 = 10_000;

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

    /// `n` ids of points that exist, sorted — every point when there are no more than `n`
    /// (`total`: how many the collection has). Drawn from the points themselves, never from
    /// the id space, where clustered or sparse ids would leave most probes empty: Qdrant's own
    /// random sample where there is a server and fewer are asked than exist; otherwise every
    /// id is scrolled (ids only) and every `total / n`-th kept, in id order.
    pub fn sample_keys(
        &self,
        collection: &str,
        total: u64,
        n: usize,
    ) -> Result<Vec<PointKey>, SourceError> {
        let wanted = n as u64;
        let mut keys = match self {
            _ if wanted == 0 => Vec::new(),
            Source::Qdrant { reader, .. } if wanted < total => {
                reader.random_keys(collection, wanted)?
            }
            _ => self.every_nth_key(collection, total, wanted)?,
        };
        keys.sort();
        keys.dedup();
        Ok(keys)
    }

    /// The ids at ranks `(i + 1/2) · total / n` in id order (every id when `n >= total`),
    /// read by scrolling ids only.
    fn every_nth_key(
        &self,
        collection: &str,
        total: u64,
        n: u64,
    ) -> Result<Vec<PointKey>, SourceError> {
        if n == 0 {
            return Ok(Vec::new());
        }
        let step = (total as f64 / n as f64).max(1.0);
        let mut next_pick = 0usize;
        let pick_rank = |i: usize| ((i as f64 + 0.5) * step) as u64;
        let mut keys = Vec::new();
        let mut rank = 0u64;
        let mut offset = Some(PointKey::MIN);
        while let Some(at) = offset {
            let page = self.scroll(collection, at, ID_PAGE, Fetch::IdsOnly)?;
            for point in &page.points {
                if n >= total || rank == pick_rank(next_pick) {
                    let key = PointKey::from_proto(point.id.as_ref()).map_err(|source| {
                        SourceError::BadId {
                            collection: collection.to_owned(),
                            source,
                        }
                    })?;
                    keys.push(key);
                    next_pick += 1;
                }
                rank += 1;
            }
            if keys.len() as u64 >= n {
                break;
            }
            offset = page.next;
        }
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
