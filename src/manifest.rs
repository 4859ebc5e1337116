//! The export manifest: the only record of which files exist and are complete.
//!
//! A data file counts only once it is listed here; the manifest itself is replaced atomically
//! (temporary file, fsync, rename, fsync of the directory). Import trusts nothing else: a file on
//! disk that the manifest does not list does not exist, and a listed file whose size or checksum
//! differs is an error naming that file.
//!
//! Each file covers a half-open id range: every point of the collection in `[lo, hi)` is in that
//! file and no other, which is what lets a re-run resume by planning only the uncovered ranges.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::layout::{DataFacts, Layout, VectorSyntax};
use crate::point_id::KeyRange;

/// The manifest's file name inside `OUTPUT/<collection>/`.
pub const MANIFEST_FILE: &str = "manifest.json";
/// Identifies the format; bumped on incompatible change.
pub const MANIFEST_FORMAT: &str = "qdrant2pg-export/1";

/// One complete data file.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct FileEntry {
    /// File name relative to the collection directory, e.g. `0000000000.csv`.
    pub name: String,
    /// Data rows, not counting the header line.
    pub rows: u64,
    /// Size of the whole file, header included.
    pub bytes: u64,
    /// xxh3-64 of the whole file, as 16 hex digits.
    pub xxh3: String,
    /// The ids this file covers: every point in this range is in this file.
    pub range: KeyRange,
    /// Facts about the rows of this file (id kinds, sparse index widths).
    pub facts: DataFacts,
}

/// The manifest of one exported collection.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    pub format: String,
    pub collection: String,
    pub layout: Layout,
    pub vector_syntax: VectorSyntax,
    /// The column delimiter of the data files (always `|`, as the guide writes).
    pub delimiter: char,
    /// Every data file starts with a header line naming the columns.
    pub header: bool,
    /// Exact point count of the collection when the export started.
    pub points_count: Option<u64>,
    pub files: Vec<FileEntry>,
    /// True once every id range has been read and `create_table.sql` written.
    pub complete: bool,
    /// Set when this directory holds one part of a partitioned export (`export --partition`):
    /// which part, and the ids it covers. Absent in whole exports (and older manifests).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub partition: Option<Partition>,
}

/// One part of a partitioned export: part `index` of `count`, covering the ids `range`. The
/// parts of one export tile the whole id order, so together they hold every point once.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Partition {
    pub index: u32,
    pub count: u32,
    pub range: KeyRange,
}

impl Partition {
    /// The part's directory inside the collection's: `part-I-of-N`.
    pub fn dir_name(index: u32, count: u32) -> String {
        format!("part-{index}-of-{count}")
    }

    /// `(I, N)` of a `part-I-of-N` directory name.
    pub fn parse_dir_name(name: &str) -> Option<(u32, u32)> {
        let (index, count) = name.strip_prefix("part-")?.split_once("-of-")?;
        let (index, count) = (index.parse().ok()?, count.parse().ok()?);
        (index < count).then_some((index, count))
    }
}

/// Reading or writing a manifest failed.
#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    #[error("cannot read manifest {path}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("manifest {path} is not valid: {detail}")]
    Invalid { path: PathBuf, detail: String },
    #[error("cannot write manifest {path}")]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

impl Manifest {
    pub fn new(collection: &str, layout: Layout, vector_syntax: VectorSyntax) -> Self {
        Manifest {
            format: MANIFEST_FORMAT.to_owned(),
            collection: collection.to_owned(),
            layout,
            vector_syntax,
            delimiter: '|',
            header: true,
            points_count: None,
            files: Vec::new(),
            complete: false,
            partition: None,
        }
    }

    /// Reads `dir/manifest.json`; `Ok(None)` when there is none.
    pub fn load(dir: &Path) -> Result<Option<Manifest>, ManifestError> {
        let path = dir.join(MANIFEST_FILE);
        let bytes = match fs::read(&path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(source) => return Err(ManifestError::Read { path, source }),
        };
        let manifest: Manifest =
            serde_json::from_slice(&bytes).map_err(|e| ManifestError::Invalid {
                path: path.clone(),
                detail: e.to_string(),
            })?;
        if manifest.format != MANIFEST_FORMAT {
            return Err(ManifestError::Invalid {
                path,
                detail: format!("format {:?}, expected {MANIFEST_FORMAT:?}", manifest.format),
            });
        }
        Ok(Some(manifest))
    }

    /// Replaces `dir/manifest.json` atomically.
    pub fn store(&self, dir: &Path) -> Result<(), ManifestError> {
        let path = dir.join(MANIFEST_FILE);
        let mut bytes = serde_json::to_vec_pretty(self).map_err(|e| ManifestError::Invalid {
            path: path.clone(),
            detail: e.to_string(),
        })?;
        bytes.push(b'\n');
        write_atomically(&path, &bytes).map_err(|source| ManifestError::Write { path, source })
    }

    /// The facts of every file, merged.
    pub fn facts(&self) -> DataFacts {
        let mut facts = DataFacts::for_layout(&self.layout);
        for file in &self.files {
            facts.merge(&file.facts);
        }
        facts
    }

    /// Total rows over all files.
    pub fn rows(&self) -> u64 {
        self.files.iter().map(|f| f.rows).sum()
    }
}

/// Writes `bytes` to `path` so that readers see the old content or the new, never a mix:
/// temporary sibling, fsync, rename, fsync of the directory.
pub fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let tmp = temporary_name(path);
    {
        let mut file = fs::File::create(&tmp)?;
        file.write_all(bytes)?;
        file.sync_all()?;
    }
    fs::rename(&tmp, path)?;
    sync_dir(path.parent().unwrap_or(Path::new(".")))
}

/// The temporary name a file is written under before it is complete: a hidden sibling ending
/// in `.tmp`, which no reader (the guide's `*.csv` glob included) picks up.
pub fn temporary_name(path: &Path) -> PathBuf {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy())
        .unwrap_or_default();
    path.with_file_name(format!(".{name}.tmp"))
}

/// fsyncs a directory so that a rename in it is durable.
pub fn sync_dir(dir: &Path) -> std::io::Result<()> {
    fs::File::open(dir)?.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::layout::PayloadType;
    use crate::point_id::PointKey;

    #[test]
    fn store_then_load_round_trips() {
        let dir = tempfile::tempdir().unwrap();
        let mut manifest = Manifest::new(
            "c",
            Layout::new(vec![], PayloadType::Json),
            VectorSyntax::Array,
        );
        manifest.files.push(FileEntry {
            name: "0000000000.csv".into(),
            rows: 3,
            bytes: 42,
            xxh3: "00ff00ff00ff00ff".into(),
            range: KeyRange::new(PointKey::Num(0), Some(PointKey::Uuid(5))),
            facts: DataFacts::default(),
        });
        manifest.store(dir.path()).unwrap();
        assert_eq!(Manifest::load(dir.path()).unwrap(), Some(manifest));
        assert!(!temporary_name(&dir.path().join(MANIFEST_FILE)).exists());
    }

    #[test]
    fn part_directory_names_round_trip() {
        assert_eq!(Partition::dir_name(3, 7), "part-3-of-7");
        assert_eq!(Partition::parse_dir_name("part-3-of-7"), Some((3, 7)));
        assert_eq!(Partition::parse_dir_name("part-7-of-7"), None);
        assert_eq!(Partition::parse_dir_name("part-x-of-7"), None);
        assert_eq!(Partition::parse_dir_name("0000000000.csv"), None);
    }

    #[test]
    fn missing_manifest_is_none_and_garbage_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(Manifest::load(dir.path()).unwrap(), None);
        fs::write(dir.path().join(MANIFEST_FILE), b"{").unwrap();
        let err = Manifest::load(dir.path()).unwrap_err().to_string();
        assert!(err.contains("manifest.json"), "{err}");
    }
}
