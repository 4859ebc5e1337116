//! Qdrant collection snapshots as a source: export, plan and verify with no Qdrant running.
//!
//! A collection snapshot is a tar (often gzipped) with `config.json`, `payload_index.json`,
//! `version.info` and one folder per shard. It is streamed once: shard files go straight into a
//! scratch directory, each shard is restored in place by the real engine (`qdrant-edge`, which
//! unpacks every segment archive and deletes it as it goes) and loaded. Nothing is re-tarred, so
//! the scratch disk holds the snapshot's unpacked size about once, plus one unpacked segment. The
//! scratch directory is removed when the [`SnapshotSet`] is dropped.
//!
//! - **Names.** `config.json` holds no collection name. Qdrant names a collection snapshot
//!   `<collection>-<peer id>-<YYYY-MM-DD-HH-MM-SS>.snapshot`; the name is the file name up to
//!   that suffix, else the file name up to `.snapshot` (`fx_single.snapshot.gz` → `fx_single`).
//!   With exactly one snapshot, one `--collection NAME` names it instead.
//! - **Checksums.** Qdrant writes `<file>.snapshot.checksum` (SHA-256, hex) beside each snapshot.
//!   When `<file>.checksum` exists it is checked against the bytes of the file; for a gzipped
//!   `x.snapshot.gz`, a `x.snapshot.checksum` is checked against the unzipped tar. The hash is
//!   taken while the file is streamed, so checking costs no second read.
//! - **Versions.** `version.info` holds the storage format of Qdrant's collection layer (`0.4.2`
//!   for Qdrant 1.18.3), not the Qdrant release; each segment carries its own format version,
//!   which is what the engine checks. A shard the engine cannot restore or load is reported with
//!   the formats found in the snapshot and the ones this build reads.
//!
//! Reading: pages come from [`edge::scroll_shards`], so they are what a Qdrant server holding
//! these shards would send over gRPC, converted by the same code the test server uses.

use std::cell::RefCell;
use std::collections::{BTreeMap, HashMap};
use std::fs::File;
use std::io::{self, BufReader, Read};
use std::path::{Component, Path, PathBuf};
use std::rc::Rc;
use std::sync::Arc;

use qdrant_client::qdrant::{CollectionInfo, RetrievedPoint};

use crate::payload::ExactPayloads;
use qdrant_edge::{EdgeShard, OperationError, WithPayloadInterface, WithVector};
use rayon::prelude::*;
use sha2::{Digest, Sha256};

use crate::point_id::PointKey;
use crate::source::cursor::PageReader;
use crate::source::edge::{self, CollectionConfigFile, EdgeError};
use crate::source::qdrant::{Fetch, ScrollPage, SourceError};

/// The engine that reads snapshots in this build.
pub const ENGINE: &str = "qdrant-edge 0.7.2";
/// The newest segment format that engine reads (its `SegmentVersion`); it migrates 0.3 and up.
pub const ENGINE_SEGMENT_FORMATS: &str = "0.3.0 to 0.6.0";
/// What the snapshot source is tested with.
pub const TESTED_WITH: &str = "Qdrant 1.18.3 (collection format 0.4.2, segment format 0.6.0)";

/// What went wrong with a snapshot.
#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    #[error("cannot read snapshot {path}")]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error(
        "the scratch directory {scratch} ran out of space while unpacking {path}: it needs about \
         the snapshot's unpacked size free; pass --scratch DIR on a larger disk"
    )]
    ScratchFull {
        path: PathBuf,
        scratch: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("cannot use the scratch directory {scratch}")]
    Scratch {
        scratch: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("snapshot {path} is not a Qdrant collection snapshot: {reason}")]
    Layout { path: PathBuf, reason: String },
    #[error("cannot parse {file} in snapshot {path}")]
    Config {
        path: PathBuf,
        file: &'static str,
        #[source]
        source: serde_json::Error,
    },
    #[error("cannot read the checksum file {checksum}")]
    ChecksumFile {
        checksum: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("{checksum} does not hold a SHA-256 checksum (64 hex digits)")]
    ChecksumFormat { checksum: PathBuf },
    #[error("snapshot {path} is damaged: its SHA-256 is {actual}, but {checksum} says {expected}")]
    ChecksumMismatch {
        path: PathBuf,
        checksum: PathBuf,
        expected: String,
        actual: String,
    },
    #[error(
        "the Qdrant engine in this build ({ENGINE}, segment formats {ENGINE_SEGMENT_FORMATS}; \
         tested with snapshots of {TESTED_WITH}) cannot {action} of snapshot {path}, which holds \
         collection format {collection_format} and segment format(s) {segment_formats}"
    )]
    Unreadable {
        path: PathBuf,
        action: String,
        collection_format: String,
        segment_formats: String,
        #[source]
        source: Box<OperationError>,
    },
    #[error("{path} holds no *.snapshot or *.snapshot.gz file")]
    EmptyFolder { path: PathBuf },
    #[error("{path} is not a snapshot file name (expected NAME.snapshot or NAME.snapshot.gz)")]
    FileName { path: PathBuf },
    #[error(
        "snapshots {first} and {second} both hold collection {collection:?}; pass them in \
         separate runs"
    )]
    DuplicateName {
        collection: String,
        first: PathBuf,
        second: PathBuf,
    },
    #[error("no snapshot holds collection {collection:?} (the snapshots hold: {available})")]
    NoSuchCollection {
        collection: String,
        available: String,
    },
    #[error("reading collection {collection:?} from its snapshot")]
    Read {
        collection: String,
        #[source]
        source: Box<EdgeError>,
    },
}

impl From<SnapshotError> for SourceError {
    fn from(error: SnapshotError) -> Self {
        SourceError::Snapshot(Box::new(error))
    }
}

/// Flags that read snapshots instead of a server.
#[derive(Clone, Debug, Default, clap::Args)]
pub struct SnapshotArgs {
    /// Read a Qdrant collection snapshot (NAME.snapshot, or gzipped NAME.snapshot.gz) instead of
    /// a server: repeatable, or a folder of snapshots. Replaces --url. The collection's name is
    /// the file name up to Qdrant's `-<peer id>-<date>.snapshot` suffix, else up to `.snapshot`;
    /// with one snapshot, `--collection NAME` names it.
    #[arg(long = "snapshot", value_name = "FILE|DIR")]
    pub snapshots: Vec<PathBuf>,
    /// Where snapshots are unpacked, in a subdirectory removed afterwards. It needs about the
    /// snapshots' unpacked size free. Default: the system temp dir (TMPDIR).
    #[arg(long, value_name = "DIR")]
    pub scratch: Option<PathBuf>,
}

impl SnapshotArgs {
    pub fn given(&self) -> bool {
        !self.snapshots.is_empty()
    }
}

// ---------------------------------------------------------------------------------------------
// Which files, which collections

/// The collection a snapshot file holds, by Qdrant's naming; `None` if it is no snapshot name.
pub fn collection_of_file(path: &Path) -> Option<String> {
    let file = path.file_name()?.to_str()?;
    let stem = file
        .strip_suffix(".gz")
        .unwrap_or(file)
        .strip_suffix(".snapshot")?;
    // `<collection>-<peer id>-<YYYY>-<MM>-<DD>-<HH>-<MM>-<SS>`, split from the right.
    let parts: Vec<&str> = stem.rsplitn(8, '-').collect();
    let digits = |s: &str, len: Option<usize>| {
        !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) && len.is_none_or(|n| s.len() == n)
    };
    let qdrant_named = parts.len() == 8
        && !parts[7].is_empty()
        && parts[..5].iter().all(|p| digits(p, Some(2)))
        && digits(parts[5], Some(4))
        && digits(parts[6], None);
    let name = if qdrant_named { parts[7] } else { stem };
    (!name.is_empty()).then(|| name.to_owned())
}

/// The snapshot files the arguments name: files as given, folders expanded to their
/// `*.snapshot` and `*.snapshot.gz` files in name order.
fn snapshot_files(args: &[PathBuf]) -> Result<Vec<PathBuf>, SnapshotError> {
    let mut files = Vec::new();
    for path in args {
        if !path.is_dir() {
            files.push(path.clone());
            continue;
        }
        let io_err = |source| SnapshotError::Io {
            path: path.clone(),
            source,
        };
        let mut found = Vec::new();
        for entry in std::fs::read_dir(path).map_err(io_err)? {
            let entry = entry.map_err(io_err)?.path();
            let name = entry.file_name().and_then(|n| n.to_str()).unwrap_or("");
            if entry.is_file() && (name.ends_with(".snapshot") || name.ends_with(".snapshot.gz")) {
                found.push(entry);
            }
        }
        if found.is_empty() {
            return Err(SnapshotError::EmptyFolder { path: path.clone() });
        }
        found.sort();
        files.extend(found);
    }
    Ok(files)
}

/// Each wanted collection with its file. `wanted` empty means every snapshot given.
fn name_files(
    files: Vec<PathBuf>,
    wanted: &[String],
) -> Result<Vec<(String, PathBuf)>, SnapshotError> {
    if let ([file], [name]) = (files.as_slice(), wanted) {
        return Ok(vec![(name.clone(), file.clone())]);
    }
    let mut by_name: BTreeMap<String, PathBuf> = BTreeMap::new();
    for file in files {
        let name = collection_of_file(&file)
            .ok_or_else(|| SnapshotError::FileName { path: file.clone() })?;
        if let Some(first) = by_name.get(&name) {
            return Err(SnapshotError::DuplicateName {
                collection: name,
                first: first.clone(),
                second: file,
            });
        }
        by_name.insert(name, file);
    }
    if wanted.is_empty() {
        return Ok(by_name.into_iter().collect());
    }
    wanted
        .iter()
        .map(|name| match by_name.get(name) {
            Some(file) => Ok((name.clone(), file.clone())),
            None => Err(SnapshotError::NoSuchCollection {
                collection: name.clone(),
                available: by_name.keys().cloned().collect::<Vec<_>>().join(", "),
            }),
        })
        .collect()
}

// ---------------------------------------------------------------------------------------------
// Opening one snapshot

/// A collection snapshot opened with the engine: its configuration and one shard per folder.
#[derive(Debug)]
pub struct CollectionSnapshot {
    pub config: CollectionConfigFile,
    /// `version.info`, when present: the storage format of Qdrant's collection layer (`0.4.2`
    /// for Qdrant 1.18.3), not the Qdrant release that wrote the snapshot.
    pub storage_version: Option<String>,
    /// Shards in shard-id order.
    pub shards: Vec<EdgeShard>,
}

/// The first path component of a tar entry, `.` segments skipped.
fn top_component(path: &Path) -> Option<&str> {
    path.components().find_map(|c| match c {
        Component::Normal(name) => name.to_str(),
        _ => None,
    })
}

/// Feeds every byte read into a SHA-256 shared with whoever checks it at the end.
struct Hashing<R> {
    inner: R,
    hasher: Option<Rc<RefCell<Sha256>>>,
}

impl<R: Read> Read for Hashing<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        if let Some(hasher) = &self.hasher {
            hasher.borrow_mut().update(&buf[..n]);
        }
        Ok(n)
    }
}

/// The checksum to check a snapshot against, and whether it covers the unzipped tar.
struct ExpectedSum {
    file: PathBuf,
    hex: String,
    of_unzipped: bool,
}

/// `<file>.checksum`, else for `x.snapshot.gz` a `x.snapshot.checksum` (of the unzipped tar).
fn expected_checksum(snapshot: &Path, gzipped: bool) -> Result<Option<ExpectedSum>, SnapshotError> {
    let beside = |name: &Path| {
        let mut os = name.as_os_str().to_owned();
        os.push(".checksum");
        PathBuf::from(os)
    };
    let mut candidates = vec![(beside(snapshot), false)];
    if gzipped && snapshot.extension().is_some_and(|e| e == "gz") {
        candidates.push((beside(&snapshot.with_extension("")), true));
    }
    for (file, of_unzipped) in candidates {
        let text = match std::fs::read_to_string(&file) {
            Ok(text) => text,
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(source) => {
                return Err(SnapshotError::ChecksumFile {
                    checksum: file,
                    source,
                });
            }
        };
        // `sha256sum` writes `<hex>  <file>`; Qdrant writes the hex alone.
        let hex = text
            .split_whitespace()
            .next()
            .unwrap_or("")
            .to_ascii_lowercase();
        if hex.len() != 64 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(SnapshotError::ChecksumFormat { checksum: file });
        }
        return Ok(Some(ExpectedSum {
            file,
            hex,
            of_unzipped,
        }));
    }
    Ok(None)
}

fn to_hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut hex = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        hex.push(char::from(DIGITS[usize::from(b >> 4)]));
        hex.push(char::from(DIGITS[usize::from(b & 15)]));
    }
    hex
}

/// What the tar stream held besides the shard folders, which went to `scratch`.
#[derive(Default)]
struct Streamed {
    config_json: Option<String>,
    version: Option<String>,
    shard_ids: Vec<u32>,
}

impl CollectionSnapshot {
    /// Stream `snapshot` (a `.snapshot` tar, gzipped or not) into `scratch`, checking its
    /// checksum file if there is one, then restore and load every shard. `scratch` must be
    /// empty or absent; the shards live there afterwards.
    pub fn open(snapshot: &Path, scratch: &Path) -> Result<Self, SnapshotError> {
        let io_err = |source: io::Error| unpack_error(snapshot, scratch, source);
        let mut probe = File::open(snapshot).map_err(io_err)?;
        let mut head = [0u8; 2];
        let gzipped = probe.read(&mut head).map_err(io_err)? == 2 && head == [0x1f, 0x8b];
        drop(probe);
        let expected = expected_checksum(snapshot, gzipped)?;
        std::fs::create_dir_all(scratch).map_err(|source| SnapshotError::Scratch {
            scratch: scratch.into(),
            source,
        })?;

        let hasher = expected
            .as_ref()
            .map(|_| Rc::new(RefCell::new(Sha256::new())));
        let file_hasher = hasher
            .clone()
            .filter(|_| !expected.as_ref().is_some_and(|e| e.of_unzipped));
        let tar_hasher = hasher
            .clone()
            .filter(|_| expected.as_ref().is_some_and(|e| e.of_unzipped));
        let file = BufReader::new(Hashing {
            inner: File::open(snapshot).map_err(io_err)?,
            hasher: file_hasher,
        });
        let streamed = if gzipped {
            let tar = Hashing {
                inner: flate2::read::GzDecoder::new(file),
                hasher: tar_hasher,
            };
            let mut archive = tar::Archive::new(tar);
            let streamed = stream_entries(&mut archive, snapshot, scratch)?;
            // Read to the end, so the hash covers every byte and not only the tar's records.
            let mut rest = archive.into_inner();
            io::copy(&mut rest, &mut io::sink()).map_err(io_err)?;
            io::copy(&mut rest.inner.into_inner(), &mut io::sink()).map_err(io_err)?;
            streamed
        } else {
            let mut archive = tar::Archive::new(file);
            let streamed = stream_entries(&mut archive, snapshot, scratch)?;
            io::copy(&mut archive.into_inner(), &mut io::sink()).map_err(io_err)?;
            streamed
        };
        if let (Some(expected), Some(hasher)) = (expected, hasher) {
            let actual = to_hex(&hasher.borrow_mut().clone().finalize());
            if actual != expected.hex {
                return Err(SnapshotError::ChecksumMismatch {
                    path: snapshot.into(),
                    checksum: expected.file,
                    expected: expected.hex,
                    actual,
                });
            }
        }

        let config_json = streamed.config_json.ok_or_else(|| SnapshotError::Layout {
            path: snapshot.into(),
            reason: "config.json is missing".into(),
        })?;
        let config: CollectionConfigFile =
            serde_json::from_str(&config_json).map_err(|source| SnapshotError::Config {
                path: snapshot.into(),
                file: "config.json",
                source,
            })?;
        let mut shard_ids = streamed.shard_ids;
        if shard_ids.is_empty() {
            return Err(SnapshotError::Layout {
                path: snapshot.into(),
                reason: "it holds no shard folder".into(),
            });
        }
        shard_ids.sort_unstable();
        let version = streamed.version;
        let shards = shard_ids
            .par_iter()
            .map(|id| restore_shard(snapshot, scratch, *id, version.as_deref()))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(CollectionSnapshot {
            config,
            storage_version: version,
            shards,
        })
    }
}

/// An I/O error while unpacking: a full scratch disk says so, anything else is a read error.
fn unpack_error(snapshot: &Path, scratch: &Path, source: io::Error) -> SnapshotError {
    if source.kind() == io::ErrorKind::StorageFull {
        SnapshotError::ScratchFull {
            path: snapshot.into(),
            scratch: scratch.into(),
            source,
        }
    } else {
        SnapshotError::Io {
            path: snapshot.into(),
            source,
        }
    }
}

/// Unpacks shard folders into `scratch` and keeps the small files the source needs.
fn stream_entries<R: Read>(
    archive: &mut tar::Archive<R>,
    snapshot: &Path,
    scratch: &Path,
) -> Result<Streamed, SnapshotError> {
    let io_err = |source: io::Error| unpack_error(snapshot, scratch, source);
    let mut streamed = Streamed::default();
    let mut first = true;
    for entry in archive.entries().map_err(io_err)? {
        // A first record that does not parse: not a tar at all, rather than a damaged one.
        let mut entry = match entry {
            Err(_) if first => {
                return Err(SnapshotError::Layout {
                    path: snapshot.into(),
                    reason: "it is not a tar archive (gzipped or not)".into(),
                });
            }
            entry => entry.map_err(io_err)?,
        };
        first = false;
        let path = entry.path().map_err(io_err)?.into_owned();
        let Some(top) = top_component(&path) else {
            continue;
        };
        match top {
            "config.json" => {
                let mut text = String::new();
                entry.read_to_string(&mut text).map_err(io_err)?;
                streamed.config_json = Some(text);
            }
            "version.info" => {
                let mut text = String::new();
                entry.read_to_string(&mut text).map_err(io_err)?;
                streamed.version = Some(text.trim().to_owned());
            }
            shard if shard.parse::<u32>().is_ok() => {
                if !matches!(
                    entry.header().entry_type(),
                    tar::EntryType::Regular | tar::EntryType::Directory | tar::EntryType::GNUSparse
                ) {
                    return Err(SnapshotError::Layout {
                        path: snapshot.into(),
                        reason: format!("{} is not a plain file or folder", path.display()),
                    });
                }
                if let Ok(id) = shard.parse::<u32>()
                    && !streamed.shard_ids.contains(&id)
                {
                    streamed.shard_ids.push(id);
                }
                entry.unpack_in(scratch).map_err(io_err)?;
            }
            // payload_index.json, shard_key_mapping.json: the payload indexes are read from
            // the segments themselves, and custom shard keys do not change the points.
            _ => {}
        }
    }
    Ok(streamed)
}

/// Restore one streamed shard folder in place and load it. The engine's restore untars an
/// archive and then unpacks every segment archive it finds; the folder is already untarred, so it
/// is handed an empty archive.
fn restore_shard(
    snapshot: &Path,
    scratch: &Path,
    id: u32,
    version: Option<&str>,
) -> Result<EdgeShard, SnapshotError> {
    let dir = scratch.join(id.to_string());
    let empty = scratch.join(format!(".{id}.empty.tar"));
    let io_err = |source: io::Error| unpack_error(snapshot, scratch, source);
    tar::Builder::new(File::create(&empty).map_err(io_err)?)
        .into_inner()
        .map_err(io_err)?;
    let unreadable = |action: String, source: OperationError| SnapshotError::Unreadable {
        path: snapshot.into(),
        action,
        collection_format: version.unwrap_or("(no version.info)").to_owned(),
        segment_formats: segment_formats(&dir),
        source: Box::new(source),
    };
    EdgeShard::unpack_snapshot(&empty, &dir)
        .map_err(|source| unreadable(format!("restore shard {id}"), source))?;
    std::fs::remove_file(&empty).map_err(io_err)?;
    EdgeShard::load(&dir, None).map_err(|source| unreadable(format!("load shard {id}"), source))
}

/// The format versions of a restored shard's segments, for an error message: each segment
/// folder's `version.info`, or the one inside a segment archive not yet unpacked.
fn segment_formats(shard: &Path) -> String {
    let mut found = std::collections::BTreeSet::new();
    let Ok(entries) = std::fs::read_dir(shard.join("segments")) else {
        return "(none found)".into();
    };
    for entry in entries.flatten() {
        let path = entry.path();
        let version = if path.is_dir() {
            std::fs::read_to_string(path.join("version.info")).ok()
        } else {
            archived_segment_version(&path)
        };
        if let Some(v) = version {
            found.insert(v.trim().to_owned());
        }
    }
    if found.is_empty() {
        "(none found)".into()
    } else {
        found.into_iter().collect::<Vec<_>>().join(", ")
    }
}

/// `snapshot/files/version.info` inside a segment archive.
fn archived_segment_version(archive: &Path) -> Option<String> {
    let mut tar = tar::Archive::new(File::open(archive).ok()?);
    for entry in tar.entries().ok()? {
        let mut entry = entry.ok()?;
        if entry.path().ok()?.ends_with("files/version.info") {
            let mut text = String::new();
            entry.read_to_string(&mut text).ok()?;
            return Some(text);
        }
    }
    None
}

// ---------------------------------------------------------------------------------------------
// A set of snapshots as a source

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
    /// Opens the snapshots `args` names, keeping only the `wanted` collections (all if empty).
    /// Unpacks under `args.scratch`, else the system temp dir: not beside the output, where a
    /// run killed before its clean-up would leave a folder that import takes for a collection.
    pub fn open(args: &SnapshotArgs, wanted: &[String]) -> Result<SnapshotSet, SnapshotError> {
        let files = name_files(snapshot_files(&args.snapshots)?, wanted)?;
        let base = args.scratch.clone().unwrap_or_else(std::env::temp_dir);
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
            let info = edge::collection_info(&snapshot.config, &snapshot.shards);
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
        edge::count_shards(&self.collection(name)?.snapshot.shards).map_err(Self::read_error(name))
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
                let page = edge::scroll_shards(
                    shards,
                    Some(offset),
                    limit,
                    &WithPayloadInterface::Bool(with),
                    &WithVector::Bool(with),
                )?;
                let (points, exact) = edge::records_to_points(page.records)?;
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
        let page = edge::scroll_shards(
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
            edge::records_to_points(records)
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

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture(name: &str) -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures/qdrant-1.18.3")
            .join(name)
    }

    #[test]
    fn names_follow_qdrant_snapshot_file_names() {
        let name = |f: &str| collection_of_file(Path::new(f));
        assert_eq!(
            name("/x/my-docs-5366148277355045-2024-01-10-10-40-21.snapshot").as_deref(),
            Some("my-docs")
        );
        assert_eq!(
            name("a_b-1-2026-11-25-21-53-07.snapshot.gz").as_deref(),
            Some("a_b")
        );
        assert_eq!(name("fx_single.snapshot.gz").as_deref(), Some("fx_single"));
        // Not Qdrant's date suffix: the whole stem is the name.
        assert_eq!(
            name("docs-2024-01-10.snapshot").as_deref(),
            Some("docs-2024-01-10")
        );
        assert_eq!(name("docs.tar"), None);
        assert_eq!(name(".snapshot"), None);
    }

    #[test]
    fn one_snapshot_takes_the_collection_flag_several_are_named_by_file() {
        let files = vec![PathBuf::from("a.snapshot"), PathBuf::from("b.snapshot.gz")];
        let named = name_files(files.clone(), &[]).unwrap();
        assert_eq!(named[0].0, "a");
        assert_eq!(named[1].0, "b");
        let picked = name_files(files.clone(), &["b".into()]).unwrap();
        assert_eq!(picked, vec![("b".to_owned(), files[1].clone())]);
        let err = name_files(files.clone(), &["c".into()]).unwrap_err();
        assert!(
            matches!(&err, SnapshotError::NoSuchCollection { available, .. } if available == "a, b"),
            "{err:?}"
        );
        let renamed = name_files(vec![files[0].clone()], &["docs".into()]).unwrap();
        assert_eq!(renamed[0].0, "docs");
        let twice = vec![
            PathBuf::from("x/a.snapshot"),
            PathBuf::from("a-1-2024-01-10-10-40-21.snapshot"),
        ];
        assert!(matches!(
            name_files(twice, &[]),
            Err(SnapshotError::DuplicateName { .. })
        ));
    }

    #[test]
    fn a_full_disk_is_named_as_such() {
        let full = io::Error::from(io::ErrorKind::StorageFull);
        let err = unpack_error(Path::new("s.snapshot"), Path::new("/scratch"), full);
        assert!(err.to_string().contains("ran out of space"), "{err}");
        assert!(err.to_string().contains("--scratch"), "{err}");
    }

    #[test]
    fn a_real_sharded_snapshot_opens_shard_by_shard() {
        let scratch = tempfile::tempdir().unwrap();
        let snapshot =
            CollectionSnapshot::open(&fixture("fx_sharded.snapshot.gz"), scratch.path()).unwrap();
        assert_eq!(snapshot.storage_version.as_deref(), Some("0.4.2"));
        assert_eq!(snapshot.config.params.shard_number, 3);
        let counts: Vec<u64> = snapshot
            .shards
            .iter()
            .map(|s| edge::count_shards(std::slice::from_ref(s)).unwrap())
            .collect();
        // The split the README of the fixtures records for the real server's three shards.
        assert_eq!(counts, vec![192, 214, 194]);
        // No segment archive is left behind once the shards are restored.
        let leftovers: Vec<_> = std::fs::read_dir(scratch.path().join("0/segments"))
            .unwrap()
            .filter_map(|e| e.ok())
            .filter(|e| e.path().extension().is_some_and(|x| x == "tar"))
            .collect();
        assert!(leftovers.is_empty(), "{leftovers:?}");
        assert_eq!(segment_formats(&scratch.path().join("0")), "0.6.0");

        // Merged pages walk the shards in one id order, with no point twice, and a full page
        // holds the same points as an ids-only one.
        let mut seen = Vec::new();
        let mut offset = None;
        loop {
            let everything = edge::scroll_shards(
                &snapshot.shards,
                offset,
                50,
                &WithPayloadInterface::Bool(true),
                &WithVector::Bool(true),
            )
            .unwrap();
            let ids = edge::scroll_shards(
                &snapshot.shards,
                offset,
                50,
                &WithPayloadInterface::Bool(false),
                &WithVector::Bool(false),
            )
            .unwrap();
            let full: Vec<_> = everything.records.iter().map(|r| r.id).collect();
            let bare: Vec<_> = ids.records.iter().map(|r| r.id).collect();
            assert_eq!(full, bare);
            assert_eq!(everything.next_offset, ids.next_offset);
            assert!(everything.records.iter().all(|r| r.vector.is_some()));
            seen.extend(everything.records.iter().map(|r| edge::key_from_edge(r.id)));
            match everything.next_offset {
                Some(next) => offset = Some(next),
                None => break,
            }
        }
        assert_eq!(seen.len(), 600);
        assert!(seen.windows(2).all(|w| w[0] < w[1]));
    }

    #[test]
    fn what_is_not_a_collection_snapshot_is_refused_with_its_reason() {
        let dir = tempfile::tempdir().unwrap();
        let plain = dir.path().join("plain.snapshot");
        std::fs::write(
            &plain,
            b"not a tar at all, just some bytes that are long enough",
        )
        .unwrap();
        let err = CollectionSnapshot::open(&plain, &dir.path().join("a")).unwrap_err();
        assert!(
            matches!(&err, SnapshotError::Layout { reason, .. } if reason.contains("not a tar")),
            "{err:?}"
        );

        // A tar with a shard folder but no config.json.
        let no_config = dir.path().join("no_config.snapshot");
        let mut tar = tar::Builder::new(File::create(&no_config).unwrap());
        let mut header = tar::Header::new_gnu();
        header.set_entry_type(tar::EntryType::Directory);
        header.set_size(0);
        header.set_mode(0o755);
        tar.append_data(&mut header, "0/segments/", io::empty())
            .unwrap();
        tar.into_inner().unwrap();
        let err = CollectionSnapshot::open(&no_config, &dir.path().join("b")).unwrap_err();
        assert!(
            matches!(&err, SnapshotError::Layout { reason, .. } if reason.contains("config.json")),
            "{err:?}"
        );
    }
}
