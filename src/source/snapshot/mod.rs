//! Qdrant collection snapshots as a source: export, plan and verify with no Qdrant running.
//!
//! A collection snapshot is a tar (often gzipped) with `config.json`, `payload_index.json`,
//! `version.info` and one folder per shard. It is streamed once: shard files go straight into a
//! scratch directory, each shard is restored in place by the real engine (`qdrant-edge`, which
//! unpacks every segment archive and deletes it as it goes) and loaded. Nothing is re-tarred, so
//! the scratch disk holds the snapshot's unpacked size about once, plus one unpacked segment. The
//! scratch directory is removed when the [`reader::SnapshotSet`] is dropped.
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
//! Opening is [`archive`]'s. Reading is [`reader`]'s: pages come from the engine's shards
//! (`source::edge`), so they are what a Qdrant server holding these shards would send over gRPC.

pub mod archive;
pub mod reader;

/// The snapshot files a command reads instead of a server, and where they are unpacked.
#[derive(Clone, Debug, Default)]
pub struct SnapshotFiles {
    /// Snapshot files, or folders of them.
    pub paths: Vec<PathBuf>,
    /// Where they are unpacked (in a subdirectory removed afterwards); default: the system
    /// temp dir.
    pub scratch: Option<PathBuf>,
}

use std::io;
use std::path::PathBuf;

use qdrant_edge::OperationError;

use crate::source::edge::EdgeError;

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
