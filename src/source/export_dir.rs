//! An export directory as import reads it: which collections and files exist, whether each file
//! is what the manifest says, and how to cut the part not yet loaded into batches.
//!
//! Two layouts load the same way: qdrant2pg's own (with `manifest.json`, which alone decides
//! which files exist — a file it does not list is ignored) and the guide's export.py output
//! (`create_table.sql` + `*.csv`, no manifest: every `*.csv` counts, rows are counted). The
//! parts of a partitioned export (`part-I-of-N/`, each with its own manifest) load as one
//! collection once they are shown to be all there and disjoint: every index from 0 to N−1
//! exactly once, their id ranges tiling the whole id order.
//!
//! A batch is a run of whole lines `[lo, hi)` of one file. Every raw `\n` in COPY text ends a
//! row (an embedded newline is written `\n` escaped), so lines can be cut on bytes alone. The
//! header line is never inside a batch: it is stripped here and COPY runs without `HEADER`. A
//! file is scanned once, sequentially: xxh3 over all of it (checked against the manifest),
//! its line count (checked against the manifest's rows), and its cut points with the file line
//! each batch starts at (to map a server error back to `file:line`).

use std::collections::BTreeMap;
use std::fs;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};

use xxhash_rust::xxh3::Xxh3;

use crate::manifest::{MANIFEST_FILE, Manifest, ManifestError, Partition};
use crate::point_id::PointKey;

/// The guide's DDL file name.
pub const CREATE_TABLE_FILE: &str = "create_table.sql";
/// Bytes read per call while scanning; large enough that syscalls and per-block hashing setup
/// vanish next to the memchr and xxh3 work (both run at several GB/s).
const SCAN_BLOCK: usize = 1 << 20;

/// Reading an export directory failed, or a file is not what the manifest says.
#[derive(Debug, thiserror::Error)]
pub enum ExportDirError {
    #[error("cannot read {path}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Manifest(#[from] ManifestError),
    #[error("{path}: {detail}")]
    Mismatch { path: PathBuf, detail: String },
    #[error(
        "{path} is not a qdrant2pg or guide export directory (no {MANIFEST_FILE}, no {CREATE_TABLE_FILE})"
    )]
    NotExport { path: PathBuf },
    #[error("collection {collection:?}: {detail}")]
    Parts { collection: String, detail: String },
    #[error("no directory for collection {collection:?} in {roots}")]
    NoCollection { collection: String, roots: String },
    #[error(
        "collection {collection:?} is exported more than once ({dirs}): pass only the --data \
         directories of one export"
    )]
    Twice { collection: String, dirs: String },
}

fn io_error(path: &Path) -> impl FnOnce(std::io::Error) -> ExportDirError + '_ {
    move |source| ExportDirError::Io {
        path: path.to_owned(),
        source,
    }
}

/// The collection directories found under some export directories.
#[derive(Debug, Default)]
pub struct FoundExports {
    /// Collections whose export is complete (or guide-style), by name.
    pub complete: Vec<ExportedCollection>,
    /// Collections whose manifest says the export is not complete: name and directory.
    pub incomplete: Vec<(String, PathBuf)>,
}

/// The collection directories under the export directories `roots` (only those named in
/// `only`, when any): a directory holding `manifest.json` or `create_table.sql` is a whole
/// export; one holding `part-I-of-N` directories holds parts of a partitioned one, which may be
/// spread over several roots and load as one collection.
pub fn find_collections(
    roots: &[PathBuf],
    only: &[String],
) -> Result<FoundExports, ExportDirError> {
    #[derive(Default)]
    struct Found {
        whole: Vec<PathBuf>,
        parts: Vec<PathBuf>,
    }
    let mut found: BTreeMap<String, Found> = BTreeMap::new();
    for root in roots {
        for entry in fs::read_dir(root).map_err(io_error(root))? {
            let entry = entry.map_err(io_error(root))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            let dir = entry.path();
            if !dir.is_dir() || !(only.is_empty() || only.contains(&name)) {
                continue;
            }
            let slot = found.entry(name).or_default();
            let parts = part_dirs(&dir)?;
            if parts.is_empty()
                || dir.join(MANIFEST_FILE).exists()
                || dir.join(CREATE_TABLE_FILE).exists()
            {
                slot.whole.push(dir);
            } else {
                slot.parts.extend(parts);
            }
        }
    }
    let shown = |dirs: &mut dyn Iterator<Item = &PathBuf>| {
        dirs.map(|d| d.display().to_string())
            .collect::<Vec<_>>()
            .join(", ")
    };
    if let Some(wanted) = only.iter().find(|w| !found.contains_key(*w)) {
        return Err(ExportDirError::NoCollection {
            collection: wanted.clone(),
            roots: shown(&mut roots.iter()),
        });
    }
    let mut exports = FoundExports::default();
    for (name, Found { whole, parts }) in found {
        let collection = match (whole.as_slice(), parts.is_empty()) {
            ([dir], true) => ExportedCollection::open(dir)?,
            ([], false) => ExportedCollection::from_parts(&name, &parts)?,
            _ => {
                return Err(ExportDirError::Twice {
                    collection: name,
                    dirs: shown(&mut whole.iter().chain(&parts)),
                });
            }
        };
        match &collection.manifest {
            Some(manifest) if !manifest.complete => {
                exports.incomplete.push((name, collection.dir));
            }
            _ => exports.complete.push(collection),
        }
    }
    Ok(exports)
}

/// The `part-I-of-N` directories inside a collection directory.
fn part_dirs(dir: &Path) -> Result<Vec<PathBuf>, ExportDirError> {
    let mut parts = Vec::new();
    for entry in fs::read_dir(dir).map_err(io_error(dir))? {
        let entry = entry.map_err(io_error(dir))?;
        let name = entry.file_name();
        if Partition::parse_dir_name(&name.to_string_lossy()).is_some() && entry.path().is_dir() {
            parts.push(entry.path());
        }
    }
    parts.sort();
    Ok(parts)
}

/// One collection directory.
#[derive(Debug)]
pub struct ExportedCollection {
    /// The directory name: the collection and the table name.
    pub name: String,
    pub dir: PathBuf,
    /// `None` for a guide-style directory.
    pub manifest: Option<Manifest>,
    pub files: Vec<DataFile>,
}

/// One data file and what it must contain.
#[derive(Clone, Debug)]
pub struct DataFile {
    /// File name inside the collection directory (the ledger's `source`).
    pub name: String,
    pub path: PathBuf,
    pub bytes: u64,
    /// From the manifest: data rows and xxh3 (hex). `None` for guide files.
    pub expected: Option<(u64, String)>,
    /// Whether the first line names the columns.
    pub header: bool,
    /// Columns when there is no header line (from the manifest's layout).
    pub columns: Vec<String>,
}

impl ExportedCollection {
    /// Reads one collection directory.
    pub fn open(dir: &Path) -> Result<ExportedCollection, ExportDirError> {
        let name = dir
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let manifest = Manifest::load(dir)?;
        let files = match &manifest {
            Some(m) => {
                let columns = m.layout.columns(m.vector_syntax);
                m.files
                    .iter()
                    .map(|f| DataFile {
                        name: f.name.clone(),
                        path: dir.join(&f.name),
                        bytes: f.bytes,
                        expected: Some((f.rows, f.xxh3.clone())),
                        header: m.header,
                        columns: columns.clone(),
                    })
                    .collect()
            }
            None => {
                if !dir.join(CREATE_TABLE_FILE).is_file() {
                    return Err(ExportDirError::NotExport {
                        path: dir.to_owned(),
                    });
                }
                let mut files = Vec::new();
                for entry in fs::read_dir(dir).map_err(io_error(dir))? {
                    let entry = entry.map_err(io_error(dir))?;
                    let file_name = entry.file_name().to_string_lossy().into_owned();
                    if !file_name.ends_with(".csv") || file_name.starts_with('.') {
                        continue;
                    }
                    let path = entry.path();
                    let bytes = entry.metadata().map_err(io_error(&path))?.len();
                    files.push(DataFile {
                        name: file_name,
                        path,
                        bytes,
                        expected: None,
                        header: true,
                        columns: Vec::new(),
                    });
                }
                files.sort_by(|a, b| a.name.cmp(&b.name));
                files
            }
        };
        Ok(ExportedCollection {
            name,
            dir: dir.to_owned(),
            manifest,
            files,
        })
    }

    /// The parts of a partitioned export (`part-I-of-N` directories, in any number of export
    /// directories) as one collection: its manifest merges theirs (files named
    /// `part-I-of-N/<file>`, facts merged), after checking that the parts are one export's,
    /// complete, all there and disjoint.
    pub fn from_parts(name: &str, dirs: &[PathBuf]) -> Result<ExportedCollection, ExportDirError> {
        let error = |detail: String| ExportDirError::Parts {
            collection: name.to_owned(),
            detail,
        };
        let mut parts = Vec::new();
        for dir in dirs {
            let manifest = Manifest::load(dir)?
                .ok_or_else(|| error(format!("{} holds no {MANIFEST_FILE}", dir.display())))?;
            let Some(partition) = manifest.partition else {
                return Err(error(format!(
                    "{} is not a part of a partitioned export (its manifest says so)",
                    dir.display()
                )));
            };
            if !manifest.complete {
                return Err(error(format!(
                    "part {} of {} in {} is not complete: run that part's export again to \
                     finish it",
                    partition.index,
                    partition.count,
                    dir.display()
                )));
            }
            parts.push((partition, dir.clone(), manifest));
        }
        parts.sort_by_key(|(p, dir, _)| (p.index, dir.clone()));
        let Some((first, first_dir, first_manifest)) = parts.first() else {
            return Err(error("no parts found".to_owned()));
        };
        for (partition, dir, manifest) in &parts {
            if partition.count != first.count {
                return Err(error(format!(
                    "{} is part {} of {} but {} is part {} of {}: parts of different exports",
                    first_dir.display(),
                    first.index,
                    first.count,
                    dir.display(),
                    partition.index,
                    partition.count
                )));
            }
            if manifest.layout != first_manifest.layout
                || manifest.vector_syntax != first_manifest.vector_syntax
                || manifest.collection != first_manifest.collection
            {
                return Err(error(format!(
                    "{} and {} hold different layouts: parts of different exports",
                    first_dir.display(),
                    dir.display()
                )));
            }
        }
        for pair in parts.windows(2) {
            if pair[0].0.index == pair[1].0.index {
                return Err(error(format!(
                    "part {} of {} appears twice: {} and {}",
                    pair[0].0.index,
                    first.count,
                    pair[0].1.display(),
                    pair[1].1.display()
                )));
            }
        }
        let missing: Vec<String> = (0..first.count)
            .filter(|i| !parts.iter().any(|(p, _, _)| p.index == *i))
            .map(|i| i.to_string())
            .collect();
        if !missing.is_empty() {
            return Err(error(format!(
                "part(s) {} of {} missing: export them, or pass every --data directory that \
                 holds one",
                missing.join(", "),
                first.count
            )));
        }
        let mut expected_lo = PointKey::MIN;
        for (partition, dir, _) in &parts {
            let range = partition.range;
            if range.lo != expected_lo {
                let how = if range.lo > expected_lo {
                    "leaves a gap"
                } else {
                    "overlaps"
                };
                return Err(error(format!(
                    "part {} of {} ({}) covers ids {range}, which {how} with the part before \
                     it: the parts come from exports of different data; export them all again",
                    partition.index,
                    partition.count,
                    dir.display()
                )));
            }
            match range.hi {
                Some(hi) => expected_lo = hi,
                None if partition.index + 1 == partition.count => {}
                None => {
                    return Err(error(format!(
                        "part {} of {} ({}) covers ids {range}, which overlaps every part after \
                         it: the parts come from exports of different data",
                        partition.index,
                        partition.count,
                        dir.display()
                    )));
                }
            }
        }
        if parts.last().is_some_and(|(p, _, _)| p.range.hi.is_some()) {
            return Err(error(
                "the last part does not reach the end of the id order: the parts come from \
                 exports of different data"
                    .to_owned(),
            ));
        }
        let mut merged = first_manifest.clone();
        merged.files.clear();
        merged.partition = None;
        merged.points_count = first_manifest
            .points_count
            .filter(|count| parts.iter().all(|(_, _, m)| m.points_count == Some(*count)));
        let mut files = Vec::new();
        let columns = merged.layout.columns(merged.vector_syntax);
        for (partition, dir, manifest) in &parts {
            let prefix = Partition::dir_name(partition.index, partition.count);
            for f in &manifest.files {
                let mut entry = f.clone();
                entry.name = format!("{prefix}/{}", f.name);
                files.push(DataFile {
                    name: entry.name.clone(),
                    path: dir.join(&f.name),
                    bytes: f.bytes,
                    expected: Some((f.rows, f.xxh3.clone())),
                    header: manifest.header,
                    columns: columns.clone(),
                });
                merged.files.push(entry);
            }
        }
        Ok(ExportedCollection {
            name: name.to_owned(),
            dir: first_dir.parent().unwrap_or(first_dir).to_owned(),
            manifest: Some(merged),
            files,
        })
    }

    /// A warning when the rows exported differ from the count Qdrant gave when the export
    /// started (parts cannot check it one by one: Qdrant counts no id range).
    pub fn count_warning(&self) -> Option<String> {
        let manifest = self.manifest.as_ref()?;
        let count = manifest.points_count?;
        (manifest.rows() != count).then(|| {
            format!(
                "{}: the export holds {} rows but Qdrant counted {count} points when it started \
                 (was the collection written to meanwhile?)",
                self.dir.display(),
                manifest.rows()
            )
        })
    }

    /// The guide's `create_table.sql`, for directories without a manifest.
    pub fn create_table_sql(&self) -> Result<String, ExportDirError> {
        let path = self.dir.join(CREATE_TABLE_FILE);
        fs::read_to_string(&path).map_err(io_error(&path))
    }
}

/// A run of whole lines of one file, ready to COPY.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Span {
    pub lo: u64,
    pub hi: u64,
    /// The file line (1-based, the header being line 1) at `lo`.
    pub first_line: u64,
    pub rows: u64,
}

/// A span of a file that is already in the target, with the xxh3 of its bytes as loaded.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Loaded {
    pub lo: u64,
    pub hi: u64,
    pub xxh3: String,
}

/// What one file needs loaded.
#[derive(Debug)]
pub struct ScannedFile {
    /// The COPY column list: the header's names, or the manifest's.
    pub columns: Vec<String>,
    /// Batches still to load, in file order.
    pub spans: Vec<Span>,
    /// xxh3 of the whole file (checked against the manifest's, where there is one).
    pub xxh3: String,
    /// Rows (data lines) in the whole file.
    pub rows: u64,
    /// Bytes of its longest line, newline included.
    pub longest_line: u64,
}

impl DataFile {
    /// Reads the header line: its byte length and the column names it holds.
    pub fn header(&self) -> Result<(u64, Vec<String>), ExportDirError> {
        if !self.header {
            return Ok((0, self.columns.clone()));
        }
        let file = fs::File::open(&self.path).map_err(io_error(&self.path))?;
        let mut line = Vec::new();
        BufReader::new(file)
            .read_until(b'\n', &mut line)
            .map_err(io_error(&self.path))?;
        let len = line.len() as u64;
        while line.last().is_some_and(|b| *b == b'\n' || *b == b'\r') {
            line.pop();
        }
        Ok((len, split_header(&line)))
    }

    /// Scans the whole file once: checks size, xxh3 and rows against the manifest, checks
    /// that the spans already `loaded` (sorted, line-aligned, as the ledger records them) still
    /// hold the bytes that were loaded — a file replaced since a partial load must not be
    /// resumed around — and cuts the rest into spans of about `batch_bytes`, each ending at a
    /// line end.
    pub fn scan(&self, loaded: &[Loaded], batch_bytes: u64) -> Result<ScannedFile, ExportDirError> {
        let (header_len, columns) = self.header()?;
        let ranges: Vec<_> = loaded.iter().map(|l| (l.lo, l.hi)).collect();
        let pending = complement(&ranges, header_len, self.bytes);
        let mut loaded_hashes: Vec<Xxh3> = loaded.iter().map(|_| Xxh3::new()).collect();
        let mut file = fs::File::open(&self.path).map_err(io_error(&self.path))?;
        let mut cutter = Cutter::new(pending, batch_bytes.max(1), header_len);
        let mut hasher = Xxh3::new();
        let mut block = vec![0u8; SCAN_BLOCK];
        let mut offset = 0u64;
        let mut line = 1u64;
        cutter.line_start(0, 1);
        loop {
            let n = match file.read(&mut block) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(io_error(&self.path)(e)),
            };
            hasher.update(&block[..n]);
            let end = offset + n as u64;
            for (l, h) in loaded.iter().zip(&mut loaded_hashes) {
                let (a, b) = (l.lo.max(offset), l.hi.min(end));
                if a < b {
                    h.update(&block[(a - offset) as usize..(b - offset) as usize]);
                }
            }
            for at in memchr::memchr_iter(b'\n', &block[..n]) {
                line += 1;
                cutter.line_start(offset + at as u64 + 1, line);
            }
            offset += n as u64;
        }
        let mismatch = |detail: String| ExportDirError::Mismatch {
            path: self.path.clone(),
            detail,
        };
        if offset != self.bytes {
            return Err(mismatch(format!(
                "{offset} bytes on disk, the manifest says {}: the file changed after export",
                self.bytes
            )));
        }
        for (l, h) in loaded.iter().zip(&loaded_hashes) {
            let actual = format!("{:016x}", h.digest());
            if actual != l.xxh3 {
                return Err(mismatch(format!(
                    "bytes {}..{} were loaded with xxh3 {}, they now read {actual}: the file \
                     changed since it was partly loaded; reload the table with --if-exists \
                     replace",
                    l.lo, l.hi, l.xxh3
                )));
            }
        }
        let rows = cutter.rows(offset);
        let actual = format!("{:016x}", hasher.digest());
        if let Some((expected_rows, xxh3)) = &self.expected {
            if &actual != xxh3 {
                return Err(mismatch(format!(
                    "checksum xxh3 {actual}, the manifest says {xxh3}: the file changed after \
                     export"
                )));
            }
            if rows != *expected_rows {
                return Err(mismatch(format!(
                    "{rows} rows, the manifest says {expected_rows}"
                )));
            }
        }
        let longest_line = cutter.longest_line.max(offset - cutter.last_start);
        Ok(ScannedFile {
            columns,
            spans: cutter.finish(offset),
            xxh3: actual,
            rows,
            longest_line,
        })
    }
}

/// Splits a COPY text header line on unescaped `|`, undoing COPY's escapes.
fn split_header(line: &[u8]) -> Vec<String> {
    let mut names = vec![Vec::new()];
    let mut bytes = line.iter();
    while let Some(&b) = bytes.next() {
        match b {
            b'\\' => {
                if let (Some(&next), Some(name)) = (bytes.next(), names.last_mut()) {
                    name.push(next);
                }
            }
            b'|' => names.push(Vec::new()),
            b => {
                if let Some(name) = names.last_mut() {
                    name.push(b);
                }
            }
        }
    }
    names
        .into_iter()
        .map(|n| String::from_utf8_lossy(&n).trim().to_owned())
        .collect()
}

/// The parts of `[lo, hi)` not covered by `loaded` (sorted by start).
fn complement(loaded: &[(u64, u64)], lo: u64, hi: u64) -> Vec<(u64, u64)> {
    let mut out = Vec::new();
    let mut at = lo;
    for &(a, b) in loaded {
        if a > at {
            out.push((at, a.min(hi)));
        }
        at = at.max(b);
    }
    if at < hi {
        out.push((at, hi));
    }
    out.retain(|(a, b)| a < b);
    out
}

/// Turns the line starts of a file, seen in order, into spans over the pending ranges, and
/// counts the data rows, in memory independent of the file's size.
struct Cutter {
    pending: Vec<(u64, u64)>,
    next: usize,
    batch_bytes: u64,
    open: Option<Span>,
    spans: Vec<Span>,
    /// Where the data rows start (after the header line).
    body: u64,
    /// Line starts at or after `body`.
    body_starts: u64,
    last_start: u64,
    /// Bytes of the longest line ended so far.
    longest_line: u64,
}

impl Cutter {
    fn new(pending: Vec<(u64, u64)>, batch_bytes: u64, body: u64) -> Cutter {
        Cutter {
            pending,
            next: 0,
            batch_bytes,
            open: None,
            spans: Vec::new(),
            body,
            body_starts: 0,
            last_start: 0,
            longest_line: 0,
        }
    }

    /// A line (file line number `line`) starts at byte `at`.
    fn line_start(&mut self, at: u64, line: u64) {
        self.longest_line = self.longest_line.max(at - self.last_start);
        self.last_start = at;
        if at >= self.body {
            self.body_starts += 1;
        }
        if let Some(open) = &mut self.open {
            let range_end = self.pending[self.next].1;
            if at >= range_end || at - open.lo >= self.batch_bytes {
                self.spans.push(Span {
                    hi: at.min(range_end),
                    ..*open
                });
                self.open = None;
                if at >= range_end {
                    self.next += 1;
                }
            }
        }
        if self.open.is_none()
            && let Some(&(lo, hi)) = self.pending.get(self.next)
            && at >= lo
            && at < hi
        {
            self.open = Some(Span {
                lo: at,
                hi,
                first_line: line,
                rows: 0,
            });
        }
        if let Some(open) = &mut self.open {
            open.rows += 1;
        }
    }

    /// Data rows of a file of `size` bytes: a line start at the very end (after a final
    /// newline) is no row.
    fn rows(&self, size: u64) -> u64 {
        self.body_starts - u64::from(self.last_start == size && size >= self.body)
    }

    /// The spans, closing the one still open when the file does not end with a newline.
    fn finish(mut self, size: u64) -> Vec<Span> {
        if let Some(open) = self.open.take() {
            self.spans.push(Span { hi: size, ..open });
        }
        self.spans
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(dir: &Path, body: &str, expected: Option<(u64, String)>) -> DataFile {
        let path = dir.join("0000000000.csv");
        fs::write(&path, body).unwrap();
        DataFile {
            name: "0000000000.csv".into(),
            path,
            bytes: body.len() as u64,
            expected,
            header: true,
            columns: Vec::new(),
        }
    }

    #[test]
    fn header_is_stripped_and_unescaped() {
        assert_eq!(
            split_header(b"id|a\\\\|b\\|c|payload"),
            ["id", "a\\", "b|c", "payload"]
        );
    }

    #[test]
    fn cuts_whole_lines_and_numbers_them() {
        let dir = tempfile::tempdir().unwrap();
        // Header 11 bytes, then rows of 5 bytes each.
        let f = file(
            dir.path(),
            "id|payload\n1|{}\n2|{}\n3|{}\n4|{}\n5|{}\n",
            None,
        );
        let scanned = f.scan(&[], 10).unwrap();
        assert_eq!(scanned.columns, ["id", "payload"]);
        assert_eq!((scanned.rows, scanned.longest_line), (5, 11));
        let whole = xxhash_rust::xxh3::xxh3_64(fs::read(&f.path).unwrap().as_slice());
        assert_eq!(scanned.xxh3, format!("{whole:016x}"));
        let spans: Vec<_> = scanned
            .spans
            .iter()
            .map(|s| (s.lo, s.hi, s.first_line, s.rows))
            .collect();
        assert_eq!(spans, [(11, 21, 2, 2), (21, 31, 4, 2), (31, 36, 6, 1)]);
        // Resume: the middle batch is in the ledger; a bigger batch size changes nothing.
        let middle = |body: &str| Loaded {
            lo: 21,
            hi: 31,
            xxh3: format!(
                "{:016x}",
                xxhash_rust::xxh3::xxh3_64(&body.as_bytes()[21..31])
            ),
        };
        let body = "id|payload\n1|{}\n2|{}\n3|{}\n4|{}\n5|{}\n";
        let scanned = f.scan(&[middle(body)], 1000).unwrap();
        let spans: Vec<_> = scanned
            .spans
            .iter()
            .map(|s| (s.lo, s.hi, s.first_line, s.rows))
            .collect();
        assert_eq!(spans, [(11, 21, 2, 2), (31, 36, 6, 1)]);
        let all = Loaded {
            lo: 11,
            hi: 36,
            ..middle(body)
        };
        let all = Loaded {
            xxh3: format!(
                "{:016x}",
                xxhash_rust::xxh3::xxh3_64(&body.as_bytes()[11..36])
            ),
            ..all
        };
        assert!(f.scan(&[all], 1).unwrap().spans.is_empty());
        // The same file rewritten with other rows: its loaded span no longer matches.
        let changed = file(
            f.path.parent().unwrap(),
            &body.replace("3|{}", "9|{}"),
            None,
        );
        let err = changed.scan(&[middle(body)], 1000).unwrap_err().to_string();
        assert!(err.contains("changed since it was partly loaded"), "{err}");
    }

    #[test]
    fn last_line_without_newline_counts_and_empty_file_has_no_batch() {
        let dir = tempfile::tempdir().unwrap();
        let f = file(dir.path(), "id|payload\n1|{}\n2|{}", None);
        let spans = f.scan(&[], 1 << 20).unwrap().spans;
        assert_eq!(
            spans,
            [Span {
                lo: 11,
                hi: 20,
                first_line: 2,
                rows: 2
            }]
        );
        let f = file(dir.path(), "id|payload\n", None);
        assert!(f.scan(&[], 1 << 20).unwrap().spans.is_empty());
    }

    #[test]
    fn manifest_mismatches_name_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let body = "id|payload\n1|{}\n";
        let good = format!("{:016x}", xxhash_rust::xxh3::xxh3_64(body.as_bytes()));
        assert!(
            file(dir.path(), body, Some((1, good.clone())))
                .scan(&[], 100)
                .is_ok()
        );
        let err = file(dir.path(), body, Some((2, good)))
            .scan(&[], 100)
            .unwrap_err();
        assert!(
            err.to_string()
                .contains("0000000000.csv: 1 rows, the manifest says 2"),
            "{err}"
        );
        let err = file(dir.path(), body, Some((1, "0".repeat(16))))
            .scan(&[], 100)
            .unwrap_err();
        assert!(err.to_string().contains("checksum"), "{err}");
        let mut short = file(dir.path(), body, None);
        short.bytes += 1;
        assert!(
            short
                .scan(&[], 100)
                .unwrap_err()
                .to_string()
                .contains("bytes on disk")
        );
    }

    #[test]
    fn complement_of_loaded_ranges() {
        assert_eq!(complement(&[], 10, 50), [(10, 50)]);
        assert_eq!(complement(&[(10, 20), (30, 50)], 10, 50), [(20, 30)]);
        assert_eq!(complement(&[(10, 50)], 10, 50), []);
    }
}
