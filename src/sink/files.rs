//! Rotating export files: encoded pages → `NNNNNNNNNN.csv` files of at most `max_line_in_file`
//! rows, each recorded in the manifest once it is complete.
//!
//! Pages of one range may be encoded out of order by different threads; each range has a small
//! reorder buffer (bounded by the pages in flight) and its own open file, so ranges write in
//! parallel and every file holds one contiguous run of ids. A file is written under a hidden
//! temporary name, fsynced, renamed, and only then added to the manifest, which is stored
//! atomically at most once per [`MANIFEST_INTERVAL`] and at the end: a crash loses at most the
//! files of the last interval, which a re-run deletes and reads again.

use std::collections::{BTreeMap, HashMap};
use std::fs::{self, File};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use xxhash_rust::xxh3::Xxh3;

use crate::layout::DataFacts;
use crate::manifest::{FileEntry, Manifest, ManifestError, sync_dir, temporary_name};
use crate::point_id::{KeyRange, PointKey};
use crate::progress::Task;

/// How often the manifest is rewritten while an export runs. Rewriting it costs O(files); once a
/// second keeps that negligible even at tens of thousands of files, and bounds what a crash can
/// lose to about a second of work.
const MANIFEST_INTERVAL: Duration = Duration::from_secs(1);

/// One page after encoding: COPY text rows back to back, with where each row ends.
#[derive(Debug, Default)]
pub struct EncodedPage {
    pub range_id: u64,
    pub seq: u64,
    pub last: bool,
    /// The ids this page accounts for (see `cursor::PageBatch::covered`).
    pub covered: KeyRange,
    pub bytes: Vec<u8>,
    /// `bytes[row_ends[i-1]..row_ends[i]]` is row `i`, newline included.
    pub row_ends: Vec<usize>,
    /// The id of each row.
    pub keys: Vec<PointKey>,
    pub facts: DataFacts,
}

/// Writing a file failed.
#[derive(Debug, thiserror::Error)]
pub enum SinkError {
    #[error("cannot write {path}")]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Manifest(#[from] ManifestError),
}

/// The files of one collection being exported.
pub struct CollectionFiles {
    dir: PathBuf,
    header: Vec<u8>,
    max_rows: u64,
    next_number: AtomicU64,
    book: Mutex<Book>,
    ranges: Mutex<HashMap<u64, Arc<Mutex<RangeFiles>>>>,
    task: Arc<Task>,
}

struct Book {
    manifest: Manifest,
    stored: Instant,
    dirty: bool,
}

#[derive(Default)]
struct RangeFiles {
    next_seq: u64,
    pending: BTreeMap<u64, EncodedPage>,
    open: Option<OpenFile>,
    /// Where the next file starts: the end of the previous one, or the range's start.
    next_lo: Option<PointKey>,
}

struct OpenFile {
    name: String,
    tmp: PathBuf,
    file: File,
    rows: u64,
    bytes: u64,
    hash: Xxh3,
    lo: PointKey,
    facts: DataFacts,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl CollectionFiles {
    /// `manifest` lists the files already complete (resume); new files are numbered after them.
    pub fn new(
        dir: &Path,
        manifest: Manifest,
        header: Vec<u8>,
        max_rows: u64,
        task: Arc<Task>,
    ) -> CollectionFiles {
        let next_number = manifest
            .files
            .iter()
            .filter_map(|f| {
                f.name
                    .strip_suffix(".csv")
                    .and_then(|n| n.parse::<u64>().ok())
            })
            .max()
            .map_or(0, |n| n + 1);
        CollectionFiles {
            dir: dir.to_owned(),
            header,
            max_rows: max_rows.max(1),
            next_number: AtomicU64::new(next_number),
            book: Mutex::new(Book {
                manifest,
                stored: Instant::now(),
                dirty: false,
            }),
            ranges: Mutex::new(HashMap::new()),
            task,
        }
    }

    /// Takes one encoded page; writes it (and any pages it unblocks) in range order.
    pub fn accept(&self, page: EncodedPage) -> Result<(), SinkError> {
        let range = {
            let mut ranges = lock(&self.ranges);
            Arc::clone(ranges.entry(page.range_id).or_default())
        };
        let mut range = lock(&range);
        let range_id = page.range_id;
        range.pending.insert(page.seq, page);
        let mut finished = false;
        while let Some(page) = {
            let seq = range.next_seq;
            range.pending.remove(&seq)
        } {
            range.next_seq += 1;
            finished |= page.last;
            self.write_page(&mut range, page)?;
        }
        if finished {
            lock(&self.ranges).remove(&range_id);
        }
        Ok(())
    }

    fn write_page(&self, range: &mut RangeFiles, page: EncodedPage) -> Result<(), SinkError> {
        if page.seq == 0 {
            range.next_lo = Some(page.covered.lo);
        }
        let rows = page.row_ends.len();
        let mut row = 0;
        while row < rows {
            if range.open.is_none() {
                let lo = range.next_lo.unwrap_or(page.keys[row]);
                range.open = Some(self.open_file(lo)?);
            }
            let Some(open) = range.open.as_mut() else {
                unreachable!("opened above")
            };
            let take = ((self.max_rows - open.rows) as usize).min(rows - row);
            let start = if row == 0 { 0 } else { page.row_ends[row - 1] };
            let end = page.row_ends[row + take - 1];
            let tmp = open.tmp.clone();
            write_all(&mut open.file, &page.bytes[start..end], &tmp)?;
            open.hash.update(&page.bytes[start..end]);
            open.rows += take as u64;
            open.bytes += (end - start) as u64;
            open.facts.merge(&page.facts);
            self.task.add(take as u64, (end - start) as u64);
            row += take;
            if open.rows == self.max_rows {
                // Full: it ends where the next row (or, at the page's end, the next page) starts.
                let hi = if row < rows {
                    Some(page.keys[row])
                } else {
                    page.covered.hi
                };
                self.close_file(range, hi)?;
            }
        }
        if page.last && range.open.is_some() {
            self.close_file(range, page.covered.hi)?;
        }
        Ok(())
    }

    fn open_file(&self, lo: PointKey) -> Result<OpenFile, SinkError> {
        let number = self.next_number.fetch_add(1, Ordering::Relaxed);
        let name = format!("{number:010}.csv");
        let tmp = temporary_name(&self.dir.join(&name));
        let mut file = File::create(&tmp).map_err(|source| SinkError::Write {
            path: tmp.clone(),
            source,
        })?;
        write_all(&mut file, &self.header, &tmp)?;
        let mut hash = Xxh3::new();
        hash.update(&self.header);
        Ok(OpenFile {
            name,
            tmp,
            file,
            rows: 0,
            bytes: self.header.len() as u64,
            hash,
            lo,
            facts: DataFacts::default(),
        })
    }

    /// fsync, rename into place, then record in the manifest.
    fn close_file(&self, range: &mut RangeFiles, hi: Option<PointKey>) -> Result<(), SinkError> {
        let Some(open) = range.open.take() else {
            return Ok(());
        };
        let path = self.dir.join(&open.name);
        let fail = |source| SinkError::Write {
            path: path.clone(),
            source,
        };
        open.file.sync_all().map_err(fail)?;
        drop(open.file);
        fs::rename(&open.tmp, &path).map_err(fail)?;
        sync_dir(&self.dir).map_err(fail)?;
        range.next_lo = hi;
        self.task.add_file();
        let entry = FileEntry {
            name: open.name,
            rows: open.rows,
            bytes: open.bytes,
            xxh3: format!("{:016x}", open.hash.digest()),
            range: KeyRange::new(open.lo, hi),
            facts: open.facts,
        };
        let mut book = lock(&self.book);
        book.manifest.files.push(entry);
        book.dirty = true;
        if book.stored.elapsed() >= MANIFEST_INTERVAL {
            self.store(&mut book)?;
        }
        Ok(())
    }

    fn store(&self, book: &mut Book) -> Result<(), SinkError> {
        book.manifest.files.sort_by(|a, b| a.name.cmp(&b.name));
        book.manifest.store(&self.dir)?;
        book.stored = Instant::now();
        book.dirty = false;
        Ok(())
    }

    /// Stores the manifest now (at the end, or before reporting an error).
    pub fn flush(&self) -> Result<(), SinkError> {
        let mut book = lock(&self.book);
        if book.dirty {
            self.store(&mut book)
        } else {
            Ok(())
        }
    }

    /// The manifest as it stands.
    pub fn manifest(&self) -> Manifest {
        lock(&self.book).manifest.clone()
    }

    /// Marks the export complete and stores the manifest.
    pub fn complete(&self) -> Result<Manifest, SinkError> {
        let mut book = lock(&self.book);
        book.manifest.complete = true;
        self.store(&mut book)?;
        Ok(book.manifest.clone())
    }
}

fn write_all(file: &mut File, bytes: &[u8], path: &Path) -> Result<(), SinkError> {
    file.write_all(bytes).map_err(|source| SinkError::Write {
        path: path.to_owned(),
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::layout::VectorSyntax;
    use crate::layout::{Layout, PayloadType};
    use crate::progress::{OutputArgs, Ui};

    fn page(
        range_id: u64,
        seq: u64,
        ids: std::ops::Range<u64>,
        hi: Option<u64>,
        last: bool,
    ) -> EncodedPage {
        let mut page = EncodedPage {
            range_id,
            seq,
            last,
            ..Default::default()
        };
        for id in ids.clone() {
            page.bytes
                .extend_from_slice(format!("{id}|{{}}\n").as_bytes());
            page.row_ends.push(page.bytes.len());
            page.keys.push(PointKey::Num(id));
        }
        page.covered = KeyRange::new(PointKey::Num(ids.start), hi.map(PointKey::Num));
        page
    }

    #[test]
    fn rotates_at_exactly_max_rows_and_records_ranges() {
        let dir = tempfile::tempdir().unwrap();
        let ui = Ui::new(&OutputArgs {
            quiet: true,
            verbose: false,
            report_json: None,
        });
        let manifest = Manifest::new(
            "c",
            Layout::new(vec![], PayloadType::Json),
            VectorSyntax::Array,
        );
        let files = CollectionFiles::new(
            dir.path(),
            manifest,
            b"id|payload\n".to_vec(),
            4,
            ui.task("c", None),
        );
        // Out of order: seq 1 arrives first and waits for seq 0.
        files.accept(page(0, 1, 5..9, Some(9), false)).unwrap();
        assert!(files.manifest().files.is_empty());
        files.accept(page(0, 0, 0..5, Some(5), false)).unwrap();
        files.accept(page(0, 2, 9..10, None, true)).unwrap();
        let manifest = files.complete().unwrap();
        let summary: Vec<(u64, KeyRange)> =
            manifest.files.iter().map(|f| (f.rows, f.range)).collect();
        let r = |lo, hi: Option<u64>| KeyRange::new(PointKey::Num(lo), hi.map(PointKey::Num));
        assert_eq!(
            summary,
            vec![(4, r(0, Some(4))), (4, r(4, Some(8))), (2, r(8, None))]
        );
        let first = fs::read_to_string(dir.path().join("0000000000.csv")).unwrap();
        assert_eq!(first, "id|payload\n0|{}\n1|{}\n2|{}\n3|{}\n");
        let stored = Manifest::load(dir.path()).unwrap().unwrap();
        assert!(stored.complete);
        assert_eq!(stored.rows(), 10);
        for f in &stored.files {
            let bytes = fs::read(dir.path().join(&f.name)).unwrap();
            assert_eq!(bytes.len() as u64, f.bytes);
            assert_eq!(
                format!("{:016x}", xxhash_rust::xxh3::xxh3_64(&bytes)),
                f.xxh3
            );
        }
        let leftovers: Vec<_> = fs::read_dir(dir.path())
            .unwrap()
            .filter_map(|e| e.ok())
            .filter(|e| e.file_name().to_string_lossy().ends_with(".tmp"))
            .collect();
        assert!(leftovers.is_empty());
    }

    #[test]
    fn a_file_full_at_a_page_end_ends_where_the_next_page_starts() {
        let dir = tempfile::tempdir().unwrap();
        let ui = Ui::new(&OutputArgs {
            quiet: true,
            verbose: false,
            report_json: None,
        });
        let manifest = Manifest::new(
            "c",
            Layout::new(vec![], PayloadType::Json),
            VectorSyntax::Array,
        );
        let files = CollectionFiles::new(dir.path(), manifest, Vec::new(), 3, ui.task("c", None));
        files.accept(page(7, 0, 10..13, Some(20), false)).unwrap();
        files.accept(page(7, 1, 20..21, Some(30), true)).unwrap();
        let ranges: Vec<KeyRange> = files
            .complete()
            .unwrap()
            .files
            .iter()
            .map(|f| f.range)
            .collect();
        let r = |lo, hi| KeyRange::new(PointKey::Num(lo), Some(PointKey::Num(hi)));
        assert_eq!(ranges, vec![r(10, 20), r(20, 30)]);
    }
}
