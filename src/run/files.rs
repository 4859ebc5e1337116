//! Import's units of a shared run: one file each. A claimer thread claims files one after
//! another, scans each (checksum and rows against the manifest, the spans the ledger already
//! holds, cut points) and feeds its batches into one bounded queue; `connections` loaders, one
//! connection each, load a batch at a time (`sink::file_batch`): its COPY or gpfdist INSERT,
//! its file's fence (is the file still this process's) and its ledger row in one transaction.
//! A file closes its unit once its last batch settles.
//!
//! A file whose data the table rejects is marked failed in the run; with `--on-error stop` no
//! process claims its table's files any more, with `skip-file` only that file is left. A
//! failure that is not the file's (the server gone) stops this process, and another run may
//! load the file.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crossbeam_channel::{Receiver, Sender, bounded};
use postgres::Transaction;

use crate::config::postgres::Target;
use crate::postgres::ledger::{Ledger, LedgerEntry};
use crate::progress::{Task, Ui};
use crate::run::member::Member;
use crate::run::store::UnitRow;
use crate::sink::copy::{
    CopyError, CopyFormat, CopyTarget, Fenced, LoadSettings, Loader, UnitFailure,
};
use crate::sink::file_batch::{FileBatch, WholeFile, WorkerGpfdist, describe_failure, load_batch};
use crate::sink::gpfdist::GpfdistSettings;
use crate::source::cursor::Lease;
use crate::source::export_dir::{DataFile, ExportedCollection, Loaded, Span};

/// Batches queued per connection. A batch in the queue is a descriptor (a file span), not
/// data, so the bound is not about memory: it keeps the claimer's scan (which reads each
/// file once to verify it) just ahead of the loaders, so a bad file stops a run early.
const QUEUED_PER_CONNECTION: usize = 2;
/// How long the claimer waits before asking again when every open file is held by a worker:
/// a file a dead worker held is taken over within about this.
const CLAIM_POLL: Duration = Duration::from_millis(500);

/// One table's share of the run.
pub struct TableJob {
    pub collection: ExportedCollection,
    /// `(column, SQL type)` of the table, for `--via gpfdist`'s external tables.
    pub columns: Vec<(String, String)>,
    pub task: Arc<Task>,
    /// A file of it failed here (with `--on-error stop`, the table stops).
    pub failed: AtomicBool,
}

/// One file this process claimed and is loading.
struct FileJob<'t> {
    table: &'t TableJob,
    file: DataFile,
    copy: CopyTarget,
    lease: Lease,
    batches_left: AtomicUsize,
    /// A batch failed (the file is marked failed) or the file went to another worker.
    given_up: AtomicBool,
}

impl FileJob<'_> {
    /// One batch settled: the last one closes the file's unit, unless the file was given up.
    fn batch_done(&self, shared: &FileRun<'_>) {
        if self.batches_left.fetch_sub(1, Ordering::AcqRel) != 1 {
            return;
        }
        if self.given_up.load(Ordering::Acquire) {
            if let Err(e) = shared.member.release(self.lease.unit) {
                shared.fail(format!("{}: {e:#}", self.file.path.display()));
            }
            return;
        }
        match shared.member.complete(self.lease) {
            Ok(_) => self.table.task.add_file(),
            Err(e) => shared.fail(format!("{}: {e:#}", self.file.path.display())),
        }
    }
}

struct Batch<'t> {
    file: Arc<FileJob<'t>>,
    span: Span,
    /// `--via gpfdist`: the span is the whole file, pulled by the segments.
    whole_file: Option<WholeFileScan>,
}

/// What a whole-file batch needs beyond its span.
struct WholeFileScan {
    /// xxh3 of the file, recorded in the ledger for the span `[0, size)`.
    xxh3: String,
    longest_line: u64,
}

/// How an import loads its files.
#[derive(Clone, Copy, Debug)]
pub struct FileLoading {
    /// Loading connections.
    pub connections: usize,
    /// Target size of one batch (one COPY, one transaction).
    pub batch_bytes: u64,
    /// A file whose data the server rejects stops its table (else only that file).
    pub stop_table_on_error: bool,
    pub load: LoadSettings,
}

/// One process's part in an import run: what its claimer and its loaders share.
pub struct FileRun<'a> {
    pub ui: &'a Ui,
    pub target: &'a Target,
    pub ledger: &'a Ledger,
    pub member: &'a Member,
    pub loading: FileLoading,
    /// Set with `--via gpfdist`.
    pub gpfdist: Option<GpfdistSettings>,
    /// Set when a failure that is not one file's stops the run.
    pub stop: AtomicBool,
    /// Every failure, as a line for the user.
    pub failures: Mutex<Vec<String>>,
}

impl FileRun<'_> {
    /// Loads every file of the run this process can claim, over `loading.connections`
    /// connections, until none is left or the run stops; failures are in [`failures`].
    ///
    /// [`failures`]: FileRun::failures
    pub fn load(&self, tables: &[Arc<TableJob>]) {
        let connections = self.loading.connections;
        let (tx, rx) = bounded::<Batch>(connections * QUEUED_PER_CONNECTION);
        std::thread::scope(|s| {
            let workers: Vec<_> = (0..connections)
                .map(|index| {
                    let rx = rx.clone();
                    s.spawn(move || worker(self, &rx, index))
                })
                .collect();
            drop(rx);
            claim_files(self, tables, &tx);
            drop(tx);
            for worker in workers {
                if worker.join().is_err() {
                    self.fail("a loader thread panicked; its batch was rolled back".to_owned());
                }
            }
        });
    }

    pub fn fail(&self, message: String) {
        self.failures
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(message);
    }

    /// A file failed for good: recorded here, and in the run so no other worker tries it
    /// (with `--on-error stop`, nor any other file of its table).
    fn fail_file(&self, lease: Lease, table: Option<&TableJob>, message: String) {
        if let Err(e) = self.member.fail(lease, &message) {
            self.ui
                .warn(&format!("cannot mark unit {} failed: {e:#}", lease.unit));
        }
        if let Some(table) = table {
            table.failed.store(true, Ordering::Release);
        }
        self.fail(message);
    }
}

/// The claimer: claims files of the run one after another, scans each (verified against its
/// manifest and the ledger, cut into batches) and queues its batches. Returns when no file is
/// left to claim, or when asked to stop.
fn claim_files<'t>(shared: &FileRun<'_>, tables: &'t [Arc<TableJob>], tx: &Sender<Batch<'t>>) {
    while !shared.stop.load(Ordering::Acquire) {
        let stop_tables = shared.loading.stop_table_on_error;
        let claimed = match shared.member.claim(stop_tables) {
            Ok(claimed) => claimed,
            Err(e) => {
                shared.fail(format!("{e:#}"));
                shared.stop.store(true, Ordering::Release);
                return;
            }
        };
        if let Some(row) = claimed {
            if !queue_file(shared, tables, &row, tx) {
                return;
            }
            continue;
        }
        match shared.member.unfinished_units() {
            Err(e) => {
                shared.fail(format!("{e:#}"));
                shared.stop.store(true, Ordering::Release);
                return;
            }
            Ok(rows) => {
                // With --on-error stop, a table with a failed file has nothing left to claim.
                let failed: BTreeSet<&str> = rows
                    .iter()
                    .filter(|row| stop_tables && row.is_failed())
                    .map(|row| row.table.as_str())
                    .collect();
                let open = rows
                    .iter()
                    .any(|row| row.is_open() && !failed.contains(row.table.as_str()));
                if !open {
                    return;
                }
            }
        }
        std::thread::sleep(CLAIM_POLL);
    }
}

/// Scans one claimed file and queues its batches; `false` once the workers are gone.
fn queue_file<'t>(
    shared: &FileRun<'_>,
    tables: &'t [Arc<TableJob>],
    row: &UnitRow,
    tx: &Sender<Batch<'t>>,
) -> bool {
    let lease = Lease {
        unit: row.unit,
        token: row.claims,
    };
    let found = tables
        .iter()
        .find(|t| t.collection.name == row.table)
        .and_then(|table| {
            let file = table
                .collection
                .files
                .iter()
                .find(|f| f.name == row.source)?;
            Some((table, file))
        });
    let Some((table, file)) = found else {
        shared.fail_file(
            lease,
            None,
            format!(
                "table {:?}: file {:?} of the run is not in this process's export directories",
                row.table, row.source
            ),
        );
        return true;
    };
    let loaded =
        match shared
            .member
            .ledger_entries(shared.ledger, &table.collection.name, &file.name)
        {
            Ok(entries) => entries,
            Err(e) => {
                shared.fail(format!("{}: {e:#}", file.path.display()));
                shared.stop.store(true, Ordering::Release);
                return true;
            }
        };
    let mut spans = Vec::new();
    for e in &loaded {
        match (e.lo.parse::<u64>(), e.hi.parse::<u64>()) {
            (Ok(lo), Ok(hi)) => {
                spans.push(Loaded {
                    lo,
                    hi,
                    xxh3: e.checksum.clone(),
                });
                table.task.add_done_before(e.rows);
            }
            // Loading around a span we cannot read could load rows twice.
            _ => {
                shared.fail_file(
                    lease,
                    Some(table),
                    format!(
                        "{}: ledger row with span {:?}..{:?} is not a byte range; file not \
                         loaded",
                        file.path.display(),
                        e.lo,
                        e.hi
                    ),
                );
                return true;
            }
        }
    }
    spans.sort_unstable_by_key(|l| l.lo);
    let scanned = match file.scan(&spans, shared.loading.batch_bytes) {
        Ok(scanned) => scanned,
        Err(e) => {
            shared.fail_file(lease, Some(table), format!("{e:#}"));
            return true;
        }
    };
    // gpfdist takes whole files: one that a COPY run loaded in part goes on by COPY.
    let whole_file = (shared.gpfdist.is_some() && spans.is_empty() && !scanned.spans.is_empty())
        .then(|| {
            (
                Span {
                    lo: 0,
                    hi: file.bytes,
                    first_line: 1,
                    rows: scanned.rows,
                },
                WholeFileScan {
                    xxh3: scanned.xxh3.clone(),
                    longest_line: scanned.longest_line,
                },
            )
        });
    if shared.gpfdist.is_some() && !spans.is_empty() && !scanned.spans.is_empty() {
        shared.ui.info(&format!(
            "{}: partly loaded by an earlier COPY run; the rest goes by COPY",
            file.path.display()
        ));
    }
    let batches: Vec<(Span, Option<WholeFileScan>)> = match whole_file {
        Some((span, whole)) => vec![(span, Some(whole))],
        None => scanned.spans.into_iter().map(|span| (span, None)).collect(),
    };
    let job = Arc::new(FileJob {
        copy: CopyTarget {
            schema: shared.target.schema.clone(),
            table: table.collection.name.clone(),
            columns: scanned.columns,
            format: CopyFormat::Text,
        },
        table,
        file: file.clone(),
        lease,
        batches_left: AtomicUsize::new(batches.len()),
        given_up: AtomicBool::new(false),
    });
    if batches.is_empty() {
        job.batches_left.store(1, Ordering::Release);
        job.batch_done(shared);
        return true;
    }
    for (span, whole_file) in batches {
        let batch = Batch {
            file: Arc::clone(&job),
            span,
            whole_file,
        };
        if tx.send(batch).is_err() {
            return false;
        }
    }
    true
}

/// One loader: one connection, one batch at a time (and with `--via gpfdist`, one gpfdist,
/// started when first needed).
fn worker(shared: &FileRun<'_>, rx: &Receiver<Batch<'_>>, index: usize) {
    let mut loader = Loader::new(shared.target, shared.loading.load);
    let mut buf = Vec::new();
    let mut gpfdist = WorkerGpfdist::new(shared.gpfdist.as_ref(), index);
    for batch in rx {
        if shared.stop.load(Ordering::Acquire) {
            return;
        }
        let table_stopped =
            shared.loading.stop_table_on_error && batch.file.table.failed.load(Ordering::Acquire);
        if table_stopped {
            batch.file.given_up.store(true, Ordering::Release);
        }
        if !batch.file.given_up.load(Ordering::Acquire) {
            load(shared, &batch, &mut loader, &mut buf, &mut gpfdist);
        }
        batch.file.batch_done(shared);
    }
}

/// Loads one batch, retrying on a fresh connection while the failure is a lost connection.
fn load(
    shared: &FileRun<'_>,
    batch: &Batch<'_>,
    loader: &mut Loader<'_>,
    buf: &mut Vec<u8>,
    gpfdist: &mut WorkerGpfdist<'_>,
) {
    let file = &batch.file;
    let span = batch.span;
    let entry = LedgerEntry {
        table: file.copy.table.clone(),
        source: file.file.name.clone(),
        lo: span.lo.to_string(),
        hi: span.hi.to_string(),
        rows: span.rows,
        checksum: batch
            .whole_file
            .as_ref()
            .map(|whole| whole.xxh3.clone())
            .unwrap_or_default(),
    };
    let run = shared.member.run();
    let result = loader.run(
        |client| {
            // The file is still this process's: the same fence for COPY and gpfdist.
            let mut fence = |tx: &mut Transaction<'_>, entry: &mut LedgerEntry| match run
                .count_batch(tx, file.lease, entry.rows)
            {
                Ok(true) => Ok(()),
                Ok(false) => Err(CopyError::Fenced(Fenced::Lost)),
                Err(e) => Err(CopyError::Db(e)),
            };
            let one = FileBatch {
                file: &file.file,
                copy: &file.copy,
                span,
                whole: batch.whole_file.as_ref().map(|whole| WholeFile {
                    table_columns: &file.table.columns,
                    longest_line: whole.longest_line,
                }),
            };
            load_batch(
                client,
                &one,
                shared.ledger,
                &entry,
                buf,
                gpfdist,
                &mut fence,
            )
        },
        |failure, backoff, attempt, attempts| {
            shared.ui.warn(&format!(
                "{}: connection lost, retrying on a fresh one in {backoff:?} (attempt \
                 {attempt}/{attempts})",
                describe_failure(&file.file.path, span, failure),
            ));
        },
    );
    let failure = match result {
        Ok(rows) => {
            file.table.task.add(rows, span.hi - span.lo);
            return;
        }
        Err(UnitFailure::Copy(CopyError::AlreadyLoaded)) => {
            file.table.task.add_done_before(span.rows);
            return;
        }
        Err(UnitFailure::Copy(CopyError::Fenced(_))) => {
            if !file.given_up.swap(true, Ordering::AcqRel) {
                shared.ui.sharing(
                    shared.member.has_peers().unwrap_or(true),
                    &format!(
                        "{}: went to another worker, which loads the rest of it; this one \
                         leaves it (nothing is loaded twice)",
                        file.file.path.display()
                    ),
                );
            }
            return;
        }
        Err(failure) => failure,
    };
    file.given_up.store(true, Ordering::Release);
    let message = describe_failure(&file.file.path, span, &failure);
    let data_error = matches!(
        failure,
        UnitFailure::Copy(CopyError::Data { .. } | CopyError::RowCount { .. })
    );
    if data_error {
        shared.fail_file(file.lease, Some(file.table), message);
    } else {
        // Not the file's fault (the server is gone): another run may load it.
        shared.fail(message);
        shared.stop.store(true, Ordering::Release);
    }
}
