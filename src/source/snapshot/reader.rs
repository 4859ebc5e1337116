//! A set of opened snapshots as a source: the calls a server answers (describe, count, scroll,
//! get by id), answered from the shards in-process, and one [`PageReader`] per cursor thread
//! over the same loaded shards.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use qdrant_client::qdrant::{CollectionInfo, RetrievedPoint};

use crate::payload::ExactPayloads;
use qdrant_edge::{WithPayloadInterface, WithVector};

use crate::point_id::PointKey;
use crate::source::edge::{self, EdgeError};
use crate::source::error::SourceError;
use crate::source::page::PageReader;
use crate::source::page::{Fetch, ScrollPage};

use super::archive::{CollectionSnapshot, name_files, snapshot_files};
use super::{SnapshotError, SnapshotFiles};

/// One collection read from its snapshot.
struct SnapshotCollection {
    file: PathBuf,
    snapshot: CollectionSnapshot,
    info: CollectionInfo,
}

/// Every snapshot of a run, opened, and the scratch directory they live in.
pub struct SnapshotSet {
    /// By collection name. Declared before `scratch`: the shards close before it is removed.
    collections: BTreeMap<String, SnapshotCollection>,
    /// Held for its `Drop`, which removes the unpacked shards.
    _scratch: tempfile::TempDir,
}

impl SnapshotSet {
    /// Opens the snapshots `files` names, keeping only the `wanted` collections (all if empty).
    /// Unpacks under `files.scratch`, else the system temp dir: not beside the output, where a
    /// run killed before its clean-up would leave a folder that import takes for a collection.
    pub fn open(files: &SnapshotFiles, wanted: &[String]) -> Result<SnapshotSet, SnapshotError> {
        let base = files.scratch.clone().unwrap_or_else(std::env::temp_dir);
        let files = name_files(snapshot_files(&files.paths)?, wanted)?;
        let scratch_err = |source| SnapshotError::Scratch {
            scratch: base.clone(),
            source,
        };
        std::fs::create_dir_all(&base).map_err(scratch_err)?;
        let scratch = tempfile::Builder::new()
            .prefix(".qdrant2pg-snapshots-")
            .tempdir_in(&base)
            .map_err(scratch_err)?;
        let mut collections = BTreeMap::new();
        for (i, (name, file)) in files.into_iter().enumerate() {
            let snapshot = CollectionSnapshot::open(&file, &scratch.path().join(i.to_string()))?;
            let info = edge::config_file::collection_info(&snapshot.config, &snapshot.shards);
            collections.insert(
                name,
                SnapshotCollection {
                    file,
                    snapshot,
                    info,
                },
            );
        }
        Ok(SnapshotSet {
            collections,
            _scratch: scratch,
        })
    }

    /// The collections, sorted.
    pub fn names(&self) -> Vec<String> {
        self.collections.keys().cloned().collect()
    }

    /// The snapshot file a collection was read from.
    pub fn file_of(&self, name: &str) -> Result<&Path, SnapshotError> {
        Ok(&self.collection(name)?.file)
    }

    fn collection(&self, name: &str) -> Result<&SnapshotCollection, SnapshotError> {
        self.collections
            .get(name)
            .ok_or_else(|| SnapshotError::NoSuchCollection {
                collection: name.to_owned(),
                available: self.names().join(", "),
            })
    }

    fn read_error(name: &str) -> impl FnOnce(EdgeError) -> SnapshotError + '_ {
        move |source| SnapshotError::Read {
            collection: name.to_owned(),
            source: Box::new(source),
        }
    }

    /// The collection as a server's `GetCollectionInfo` would describe it.
    pub fn collection_info(&self, name: &str) -> Result<CollectionInfo, SnapshotError> {
        Ok(self.collection(name)?.info.clone())
    }

    pub fn count_exact(&self, name: &str) -> Result<u64, SnapshotError> {
        edge::shard::count_shards(&self.collection(name)?.snapshot.shards)
            .map_err(Self::read_error(name))
    }

    /// One page from `offset` (inclusive), as the server's scroll returns it. A point whose
    /// payload the engine cannot read fails the page naming that point.
    pub fn scroll(
        &self,
        name: &str,
        offset: PointKey,
        limit: u32,
        fetch: Fetch,
    ) -> Result<ScrollPage, SnapshotError> {
        let everything = fetch == Fetch::Everything;
        let shards = &self.collection(name)?.snapshot.shards;
        let read = |with: bool, limit: usize| {
            edge::guarded(|| {
                let page = edge::shard::scroll_shards(
                    shards,
                    Some(offset),
                    limit,
                    &WithPayloadInterface::Bool(with),
                    &WithVector::Bool(with),
                )?;
                let (points, exact) = edge::convert::records_to_points(page.records)?;
                Ok(ScrollPage {
                    points,
                    exact,
                    next: page.next_offset,
                })
            })
        };
        let limit = limit.max(1) as usize;
        match read(everything, limit) {
            Err(EdgeError::Panicked(why)) if everything => {
                // Ids alone do not touch payloads: find the point that does.
                let ids = read(false, limit).map_err(Self::read_error(name))?;
                let keys: Vec<PointKey> = ids
                    .points
                    .iter()
                    .filter_map(|p| PointKey::from_proto(p.id.as_ref()).ok())
                    .collect();
                let unreadable = keys.into_iter().find(|key| {
                    matches!(
                        self.get_points(name, &[*key]),
                        Err(SnapshotError::Read { ref source, .. })
                            if matches!(**source, EdgeError::Panicked(_))
                    )
                });
                Err(Self::read_error(name)(match unreadable {
                    Some(key) => EdgeError::BadPoint {
                        id: key.to_string(),
                        reason: format!(
                            "the Qdrant engine cannot read its payload ({why}); a payload nested \
                             deeper than 127 levels, more than Qdrant itself can store, is one \
                             cause"
                        ),
                    },
                    None => EdgeError::Panicked(why),
                }))
            }
            page => page.map_err(Self::read_error(name)),
        }
    }

    pub fn first_at_or_after(
        &self,
        name: &str,
        key: PointKey,
    ) -> Result<Option<PointKey>, SnapshotError> {
        let page = edge::shard::scroll_shards(
            &self.collection(name)?.snapshot.shards,
            Some(key),
            1,
            &WithPayloadInterface::Bool(false),
            &WithVector::Bool(false),
        )
        .map_err(Self::read_error(name))?;
        Ok(page.records.first().map(|r| edge::key_from_edge(r.id)))
    }

    /// The points with these ids, in the order asked; missing ids are left out.
    pub fn get_points(
        &self,
        name: &str,
        ids: &[PointKey],
    ) -> Result<(Vec<RetrievedPoint>, ExactPayloads), SnapshotError> {
        let collection = self.collection(name)?;
        let edge_ids: Vec<_> = ids.iter().map(|k| edge::key_to_edge(*k)).collect();
        edge::guarded(|| {
            let mut found = HashMap::new();
            for (shard_id, shard) in collection.snapshot.shards.iter().enumerate() {
                let records = shard
                    .retrieve(
                        &edge_ids,
                        Some(WithPayloadInterface::Bool(true)),
                        Some(WithVector::Bool(true)),
                    )
                    .map_err(|source| EdgeError::Engine {
                        action: format!("retrieve points from shard {shard_id}"),
                        source,
                    })?;
                found.extend(records.into_iter().map(|r| (edge::key_from_edge(r.id), r)));
            }
            let records = ids.iter().filter_map(|k| found.remove(k)).collect();
            edge::convert::records_to_points(records)
        })
        .map_err(Self::read_error(name))
    }
}

/// A cursor's reader over a [`SnapshotSet`]: every cursor reads the same loaded shards.
pub struct SnapshotReader(pub Arc<SnapshotSet>);

impl PageReader for SnapshotReader {
    fn scroll(
        &self,
        collection: &str,
        offset: PointKey,
        limit: u32,
        fetch: Fetch,
    ) -> Result<ScrollPage, SourceError> {
        Ok(self.0.scroll(collection, offset, limit, fetch)?)
    }

    fn first_at_or_after(
        &self,
        collection: &str,
        key: PointKey,
    ) -> Result<Option<PointKey>, SourceError> {
        Ok(self.0.first_at_or_after(collection, key)?)
    }
}
