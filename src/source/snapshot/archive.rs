//! Snapshot files: which collection each holds (by Qdrant's naming), and opening one — streamed
//! once into the scratch directory, its checksum checked on the way, its shards restored and
//! loaded by the engine.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::fs::File;
use std::io::{self, BufReader, Read};
use std::path::{Component, Path, PathBuf};
use std::rc::Rc;

use qdrant_edge::{EdgeShard, OperationError};
use rayon::prelude::*;
use sha2::{Digest, Sha256};

use crate::source::edge::config_file::CollectionConfigFile;

use super::SnapshotError;

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
pub(super) fn snapshot_files(args: &[PathBuf]) -> Result<Vec<PathBuf>, SnapshotError> {
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
pub(super) fn name_files(
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

#[cfg(test)]
mod tests {
    use qdrant_edge::{WithPayloadInterface, WithVector};

    use super::*;
    use crate::source::edge;

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
            .map(|s| edge::shard::count_shards(std::slice::from_ref(s)).unwrap())
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
            let everything = edge::shard::scroll_shards(
                &snapshot.shards,
                offset,
                50,
                &WithPayloadInterface::Bool(true),
                &WithVector::Bool(true),
            )
            .unwrap();
            let ids = edge::shard::scroll_shards(
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
