//! `qdrant2pg import`: the guide's step 2 — export files into PostgreSQL — in parallel, exactly
//! once, resumable.
//!
//! Plan: resolve the guide's `csv2adbpg.yaml`, libpq's environment and flags; open the export
//! directory; create the schema, the ledger and each table (`--if-exists` decides what happens
//! to a table that is already there; a table the ledger shows this tool was loading is always
//! resumed). Spawn: one planner thread scans files largest first (checksum and rows against the
//! manifest, cut points) and feeds batches into one bounded queue; N workers, one connection
//! each, COPY a batch and write its ledger row in one transaction. Join, report. Tables,
//! sessions and retries are `postgres::table`'s and `sink::copy`'s, shared with migrate.
//!
//! One collection does not sink the others: an incomplete export is named and not loaded, and
//! data a table rejects stops that table (`--on-error stop`) or that file (`skip-file`) while
//! the other tables load to the end. The run then exits non-zero naming each failure; the same
//! command again loads only what the ledger lacks.
//!
//! `--via gpfdist` (Greenplum, AnalyticDB): a file no earlier run touched is one batch that the
//! segments pull through an external table from the worker's own gpfdist (`sink::gpfdist`),
//! with the same one-transaction ledger row; what a COPY run left of a file still goes by COPY.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use anyhow::{Context, bail};
use crossbeam_channel::{Receiver, Sender, bounded};

use crate::config::postgres::{PostgresArgs, Target, TargetFile};
use crate::config::read_or_default;
use crate::postgres::catalog::{is_greenplum, table_columns};
use crate::postgres::ddl::{DdlOptions, Dialect, Halfvec, VectorStorage, create_table_sql_with};
use crate::postgres::ident::qualified;
use crate::postgres::ledger::{Ledger, LedgerEntry, MIGRATE_SOURCE};
use crate::postgres::table::{IfExists, TableSpec, prepare_schema, prepare_table};
use crate::progress::{OutputArgs, Task, Ui};
use crate::sink::copy::{
    CopyError, CopyFormat, CopyTarget, LoadSettings, Loader, UnitFailure, copy_unit, error_chain,
    file_span,
};
use crate::sink::gpfdist::{GpfdistArgs, GpfdistServer, GpfdistSettings, Via, insert_file};
use crate::sink::manifest::VectorSyntax;
use crate::source::export_dir::{DataFile, ExportedCollection, Loaded, Span};

/// Bytes per batch. The guide's 40,000-line files of 768-d vectors are ~300 MB; 32 MiB cuts
/// each into ~10 batches, so the last file never leaves a connection idle, while one commit
/// (and ledger row) per 32 MiB costs nothing next to parsing that much COPY text.
const DEFAULT_BATCH_BYTES: u64 = 32 << 20;
/// Batches queued per connection. A batch in the queue is a descriptor (a file span), not
/// data, so the bound is not about memory: it keeps the planner's scan (which reads each
/// file once to verify it) just ahead of the loaders, so a bad file stops a run early.
const QUEUED_PER_CONNECTION: usize = 2;
/// What to do when the server rejects a file's data.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum OnError {
    /// Stop loading that table (batches in flight finish); the other tables go on.
    #[default]
    Stop,
    /// Skip the rest of that file and go on with the others.
    SkipFile,
}

/// `qdrant2pg import` flags.
#[derive(Debug, clap::Args)]
pub struct ImportArgs {
    /// The guide's csv2adbpg.yaml (`database:` and `data_path`), used unchanged.
    #[arg(long, short = 'c', value_name = "FILE")]
    pub config: Option<PathBuf>,
    #[command(flatten)]
    pub postgres: PostgresArgs,
    /// The export directory (`data_path`): one subdirectory per collection [default: ./output].
    #[arg(long, value_name = "DIR")]
    pub data: Option<PathBuf>,
    /// A collection to import (repeatable). Default: every collection directory.
    #[arg(long = "collection", value_name = "NAME")]
    pub collections: Vec<String>,
    /// Parallel connections, each loading one batch at a time.
    #[arg(long, short = 'j', default_value_t = 2, value_name = "N")]
    pub connections: usize,
    /// Target size of one batch (one COPY, one transaction) in bytes.
    #[arg(long, default_value_t = DEFAULT_BATCH_BYTES, value_name = "BYTES")]
    pub batch_bytes: u64,
    /// What to do with a table that already exists.
    #[arg(long, value_enum, default_value_t)]
    pub if_exists: IfExists,
    /// What to do when the server rejects a file's data.
    #[arg(long, value_enum, default_value_t)]
    pub on_error: OnError,
    /// The target's SQL dialect (decides the DDL of qdrant2pg exports).
    #[arg(long, value_enum, default_value_t = Dialect::Postgres)]
    pub dialect: Dialect,
    /// pgvector: when dense vectors become halfvec instead of vector.
    #[arg(long, value_enum, default_value_t)]
    pub halfvec: Halfvec,
    /// The storage of float array columns in the tables it creates from a qdrant2pg export.
    #[arg(long, value_enum, default_value_t)]
    pub vector_storage: VectorStorage,
    /// Attempts per batch when the connection is lost, with exponential backoff.
    #[arg(long, default_value_t = 8, value_name = "N")]
    pub retries: u32,
    /// Set synchronous_commit=off on the loading sessions (faster commits; a server crash may
    /// forget the last batches, which the next run loads again).
    #[arg(long)]
    pub synchronous_commit_off: bool,
    #[command(flatten)]
    pub gpfdist: GpfdistArgs,
}

/// One table's share of the run.
struct TableJob {
    collection: ExportedCollection,
    /// `(column, SQL type)` of the table, for `--via gpfdist`'s external tables.
    columns: Vec<(String, String)>,
    task: Arc<Task>,
    /// Files not yet fully loaded or given up.
    files_left: AtomicUsize,
    failed: AtomicBool,
    done: AtomicBool,
}

impl TableJob {
    fn file_done(&self) {
        self.task.add_file();
        if self.files_left.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.close(if self.failed.load(Ordering::Acquire) {
                "FAILED"
            } else {
                "ok"
            });
        }
    }

    fn close(&self, outcome: &str) {
        if !self.done.swap(true, Ordering::AcqRel) {
            self.task.finish(outcome);
        }
    }
}

/// One file being loaded.
struct FileJob {
    table: Arc<TableJob>,
    file: DataFile,
    copy: CopyTarget,
    batches_left: AtomicUsize,
    failed: AtomicBool,
}

impl FileJob {
    fn batch_done(&self) {
        if self.batches_left.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.table.file_done();
        }
    }
}

struct Batch {
    file: Arc<FileJob>,
    span: Span,
    /// `--via gpfdist`: the span is the whole file, pulled by the segments.
    whole_file: Option<WholeFile>,
}

/// What a whole-file batch needs beyond its span.
struct WholeFile {
    /// xxh3 of the file, recorded in the ledger for the span `[0, size)`.
    xxh3: String,
    longest_line: u64,
}

/// What every worker shares.
struct Shared {
    ui: Arc<Ui>,
    target: Target,
    ledger: Ledger,
    args: ImportArgs,
    /// Set with `--via gpfdist`.
    gpfdist: Option<GpfdistSettings>,
    stop: AtomicBool,
    failures: Mutex<Vec<String>>,
}

impl Shared {
    fn fail(&self, message: String) {
        self.failures
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(message);
    }
}

pub fn run(args: ImportArgs, output: &OutputArgs) -> anyhow::Result<ExitCode> {
    let ui = Ui::new(output);
    let file: TargetFile = read_or_default(args.config.as_deref(), &|w| ui.warn(w))?;
    let target = Target::resolve(&args.postgres, &file.database, &|k| std::env::var(k).ok())?;
    let data = args
        .data
        .clone()
        .or(file.data_path)
        .unwrap_or_else(|| PathBuf::from("./output"));
    if args.connections == 0 {
        bail!("--connections must be at least 1");
    }
    let (collections, incomplete) = open_collections(&data, &args.collections)?;
    let mut admin = target.connect().context("connecting for setup")?;
    let gpfdist = match args.gpfdist.via {
        Via::Copy => None,
        Via::Gpfdist => {
            if !is_greenplum(&mut admin).context("asking what the target is")? {
                bail!(
                    "--via gpfdist needs Greenplum or AnalyticDB for PostgreSQL (external \
                     tables), and {} is neither: use --via copy",
                    target.describe()
                );
            }
            Some(GpfdistSettings::resolve(
                &args.gpfdist,
                target.coordinator(),
            )?)
        }
    };
    let ledger = Ledger::new(&target.schema);
    prepare_schema(&mut admin, &target.schema, &ledger, args.dialect)?;
    let shared = Arc::new(Shared {
        ui: Arc::clone(&ui),
        ledger,
        target,
        args,
        gpfdist,
        stop: AtomicBool::new(false),
        failures: Mutex::new(Vec::new()),
    });
    for (name, dir) in incomplete {
        ui.task(&name, None).finish("INCOMPLETE");
        shared.fail(format!(
            "collection {name}: the export in {} is not complete (its manifest says so), so \
             nothing of it was loaded: run the export again to finish it, then import",
            dir.display()
        ));
    }
    let mut tables = Vec::new();
    let mut loaded = Vec::new();
    for collection in collections {
        let total = collection.manifest.as_ref().map(|m| m.rows());
        let task = ui.task(&collection.name, total);
        let ddl = table_ddl(&shared, &collection, &ui)?;
        let spec = TableSpec {
            schema: &shared.target.schema,
            table: &collection.name,
            ddl: &ddl,
            if_exists: shared.args.if_exists,
        };
        let entries = match prepare_table(&mut admin, &shared.ledger, &spec, &ui)? {
            Some(entries) if entries.iter().any(|e| e.source == MIGRATE_SOURCE) => bail!(
                "{} is being loaded by `qdrant2pg migrate` (its ledger holds id ranges, not \
                 files); finish that migrate, or start over with --if-exists replace",
                qualified(Some(&shared.target.schema), &collection.name)
            ),
            Some(entries) => entries,
            None => {
                task.finish("skipped");
                continue;
            }
        };
        let columns = table_columns(&mut admin, &shared.target.schema, &collection.name)
            .with_context(|| format!("reading the columns of {}", collection.name))?;
        let job = Arc::new(TableJob {
            files_left: AtomicUsize::new(collection.files.len()),
            collection,
            columns,
            task,
            failed: AtomicBool::new(false),
            done: AtomicBool::new(false),
        });
        if job.collection.files.is_empty() {
            job.close("ok");
        }
        loaded.push(entries);
        tables.push(job);
    }
    drop(admin);

    let (tx, rx) = bounded::<Batch>(shared.args.connections * QUEUED_PER_CONNECTION);
    let workers: Vec<_> = (0..shared.args.connections)
        .map(|index| {
            let shared = Arc::clone(&shared);
            let rx = rx.clone();
            std::thread::spawn(move || worker(&shared, &rx, index))
        })
        .collect();
    drop(rx);
    plan(&shared, &tables, loaded, &tx);
    drop(tx);
    for worker in workers {
        if worker.join().is_err() {
            shared.fail("a loader thread panicked; its batch was rolled back".to_owned());
        }
    }
    for table in &tables {
        table.close(if table.failed.load(Ordering::Acquire) {
            "FAILED"
        } else {
            "stopped"
        });
    }
    ui.finish("import", output).context("writing the summary")?;
    let failures = shared.failures.lock().unwrap_or_else(|e| e.into_inner());
    if failures.is_empty() {
        return Ok(ExitCode::SUCCESS);
    }
    for failure in failures.iter() {
        eprintln!("error: {failure}");
    }
    eprintln!(
        "error: {} failure(s); batches already committed are in {}, and a re-run loads only \
         the rest",
        failures.len(),
        shared.ledger.name()
    );
    Ok(ExitCode::FAILURE)
}

/// The collection directories to load, by name, and those whose export is incomplete (name and
/// directory), which are not loaded.
type Collections = (Vec<ExportedCollection>, Vec<(String, PathBuf)>);

/// The collection directories to load, by name, and the incomplete ones.
fn open_collections(data: &Path, only: &[String]) -> anyhow::Result<Collections> {
    let mut dirs = Vec::new();
    let entries = std::fs::read_dir(data)
        .with_context(|| format!("cannot read the export directory {}", data.display()))?;
    for entry in entries {
        let entry = entry.with_context(|| format!("reading {}", data.display()))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if entry.path().is_dir() && (only.is_empty() || only.contains(&name)) {
            dirs.push((name, entry.path()));
        }
    }
    for wanted in only {
        if !dirs.iter().any(|(name, _)| name == wanted) {
            bail!(
                "no directory for collection {wanted:?} in {}",
                data.display()
            );
        }
    }
    dirs.sort();
    let mut collections = Vec::new();
    let mut incomplete = Vec::new();
    for (name, dir) in dirs {
        let collection = ExportedCollection::open(&dir)?;
        if let Some(manifest) = &collection.manifest
            && !manifest.complete
        {
            incomplete.push((name, dir));
            continue;
        }
        collections.push(collection);
    }
    Ok((collections, incomplete))
}

/// The table's DDL: written from the manifest for the chosen dialect, or the guide's
/// `create_table.sql` as it is.
fn table_ddl(shared: &Shared, collection: &ExportedCollection, ui: &Ui) -> anyhow::Result<String> {
    let args = &shared.args;
    match &collection.manifest {
        Some(manifest) => {
            if (args.dialect == Dialect::Pgvector)
                != (manifest.vector_syntax == VectorSyntax::Pgvector)
            {
                let (held, wanted) = if args.dialect == Dialect::Pgvector {
                    ("PostgreSQL arrays", "pgvector")
                } else {
                    ("pgvector's types", "postgres (or adbpg)")
                };
                bail!(
                    "{}: the files hold vectors as {held}, for another --dialect than the one \
                     given: export again with --dialect {wanted}, or import with the dialect \
                     of the export",
                    collection.dir.display(),
                );
            }
            let options = DdlOptions {
                dialect: args.dialect,
                halfvec: args.halfvec,
                storage: args.vector_storage,
            };
            Ok(create_table_sql_with(
                Some(&shared.target.schema),
                &collection.name,
                &manifest.layout,
                &manifest.facts(),
                options,
            ))
        }
        None => {
            if args.dialect != Dialect::Postgres {
                ui.warn(&format!(
                    "{}: no manifest, so its create_table.sql is used as written (--dialect \
                     applies to qdrant2pg exports only)",
                    collection.dir.display()
                ));
            }
            Ok(collection.create_table_sql()?)
        }
    }
}

/// A file to scan, with the byte ranges the ledger already holds.
struct PendingFile {
    table: Arc<TableJob>,
    file: DataFile,
    loaded: Vec<Loaded>,
}

/// The planner: files of every table, largest first; each scanned (verified, cut), its batches
/// queued. Stops early when a worker asks to stop or every worker is gone.
fn plan(
    shared: &Shared,
    tables: &[Arc<TableJob>],
    loaded: Vec<Vec<LedgerEntry>>,
    tx: &Sender<Batch>,
) {
    let mut files = Vec::new();
    for (table, entries) in tables.iter().zip(loaded) {
        for file in &table.collection.files {
            let mut loaded = Vec::new();
            let mut unreadable = false;
            for e in entries.iter().filter(|e| e.source == file.name) {
                match (e.lo.parse::<u64>(), e.hi.parse::<u64>()) {
                    (Ok(lo), Ok(hi)) => {
                        loaded.push(Loaded {
                            lo,
                            hi,
                            xxh3: e.checksum.clone(),
                        });
                        table.task.add_done_before(e.rows);
                    }
                    // Loading around a span we cannot read could load rows twice.
                    _ => {
                        shared.fail(format!(
                            "{}: ledger row with span {:?}..{:?} is not a byte range; file \
                             not loaded",
                            file.path.display(),
                            e.lo,
                            e.hi
                        ));
                        table.failed.store(true, Ordering::Release);
                        unreadable = true;
                    }
                }
            }
            if unreadable {
                table.file_done();
                continue;
            }
            loaded.sort_unstable_by_key(|l| l.lo);
            files.push(PendingFile {
                table: Arc::clone(table),
                file: file.clone(),
                loaded,
            });
        }
    }
    files.sort_by_key(|f| std::cmp::Reverse(f.file.bytes));
    for PendingFile {
        table,
        file,
        loaded,
    } in files
    {
        if shared.stop.load(Ordering::Acquire) {
            return;
        }
        if table.failed.load(Ordering::Acquire) && shared.args.on_error == OnError::Stop {
            table.file_done();
            continue;
        }
        let scanned = match file.scan(&loaded, shared.args.batch_bytes) {
            Ok(scanned) => scanned,
            Err(e) => {
                shared.fail(format!("{e:#}"));
                table.failed.store(true, Ordering::Release);
                table.file_done();
                continue;
            }
        };
        if scanned.spans.is_empty() {
            table.file_done();
            continue;
        }
        // gpfdist takes whole files: one that a COPY run loaded in part goes on by COPY.
        let whole_file = (shared.gpfdist.is_some() && loaded.is_empty()).then(|| {
            (
                Span {
                    lo: 0,
                    hi: file.bytes,
                    first_line: 1,
                    rows: scanned.rows,
                },
                WholeFile {
                    xxh3: scanned.xxh3.clone(),
                    longest_line: scanned.longest_line,
                },
            )
        });
        if shared.gpfdist.is_some() && whole_file.is_none() {
            shared.ui.info(&format!(
                "{}: partly loaded by an earlier COPY run; the rest goes by COPY",
                file.path.display()
            ));
        }
        let job = Arc::new(FileJob {
            copy: CopyTarget {
                schema: shared.target.schema.clone(),
                table: table.collection.name.clone(),
                columns: scanned.columns,
                format: CopyFormat::Text,
            },
            table,
            file,
            batches_left: AtomicUsize::new(if whole_file.is_some() {
                1
            } else {
                scanned.spans.len()
            }),
            failed: AtomicBool::new(false),
        });
        let batches: Vec<Batch> = match whole_file {
            Some((span, whole)) => vec![Batch {
                file: Arc::clone(&job),
                span,
                whole_file: Some(whole),
            }],
            None => scanned
                .spans
                .into_iter()
                .map(|span| Batch {
                    file: Arc::clone(&job),
                    span,
                    whole_file: None,
                })
                .collect(),
        };
        for batch in batches {
            if tx.send(batch).is_err() {
                return;
            }
        }
    }
}

/// One loader: one connection, one batch at a time (and with `--via gpfdist`, one gpfdist,
/// started when first needed).
fn worker(shared: &Shared, rx: &Receiver<Batch>, index: usize) {
    let mut loader = Loader::new(
        &shared.target,
        LoadSettings {
            retries: shared.args.retries,
            synchronous_commit_off: shared.args.synchronous_commit_off,
        },
    );
    let mut buf = Vec::new();
    let mut gpfdist = None;
    for batch in rx {
        if shared.stop.load(Ordering::Acquire) {
            return;
        }
        let table_stopped = shared.args.on_error == OnError::Stop
            && batch.file.table.failed.load(Ordering::Acquire);
        if !batch.file.failed.load(Ordering::Acquire) && !table_stopped {
            let server = Served {
                index,
                server: &mut gpfdist,
            };
            load(shared, &batch, &mut loader, &mut buf, server);
        }
        batch.file.batch_done();
    }
}

/// A worker's gpfdist, started when its first whole file comes.
struct Served<'a> {
    index: usize,
    server: &'a mut Option<GpfdistServer>,
}

impl Served<'_> {
    /// The URL the segments load `file` from.
    fn url(
        &mut self,
        shared: &Shared,
        file: &DataFile,
        longest_line: u64,
    ) -> Result<String, CopyError> {
        let failed = |e| CopyError::Source(std::io::Error::other(e));
        let settings = shared
            .gpfdist
            .as_ref()
            .ok_or_else(|| failed(crate::sink::gpfdist::GpfdistError::NotFound))?;
        let server = match self.server {
            Some(server) => server,
            None => self.server.insert(
                GpfdistServer::start(settings, self.index as u16, longest_line).map_err(failed)?,
            ),
        };
        server.serve(&file.path, longest_line).map_err(failed)
    }
}

/// Loads one batch, retrying on a fresh connection while the failure is a lost connection.
fn load(
    shared: &Shared,
    batch: &Batch,
    loader: &mut Loader<'_>,
    buf: &mut Vec<u8>,
    mut gpfdist: Served<'_>,
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
    let result = loader.run(
        |client| match &batch.whole_file {
            Some(whole) => {
                let types = file_column_types(&file.table.columns, &file.copy)?;
                let url = gpfdist.url(shared, &file.file, whole.longest_line)?;
                let header = file.file.header;
                insert_file(
                    client,
                    &file.copy,
                    &types,
                    &url,
                    header,
                    &shared.ledger,
                    &entry,
                )
            }
            None => {
                let mut source = std::fs::File::open(&file.file.path)
                    .and_then(|f| file_span(f, span.lo, span.hi))
                    .map_err(CopyError::Source)?;
                copy_unit(client, &file.copy, &shared.ledger, &entry, &mut source, buf)
            }
        },
        |failure, backoff, attempt, attempts| {
            shared.ui.warn(&format!(
                "{}: connection lost, retrying on a fresh one in {backoff:?} (attempt \
                 {attempt}/{attempts})",
                describe_failure(file, span, failure),
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
        Err(failure) => failure,
    };
    shared.fail(describe_failure(file, span, &failure));
    file.failed.store(true, Ordering::Release);
    file.table.failed.store(true, Ordering::Release);
    // Data the table rejects stops that table (or file); anything else — the server lost
    // for good — stops the run.
    let data_error = matches!(
        failure,
        UnitFailure::Copy(CopyError::Data { .. } | CopyError::RowCount { .. })
    );
    if !data_error {
        shared.stop.store(true, Ordering::Release);
    }
}

/// The SQL types of the file's columns, from the table's.
fn file_column_types(
    table: &[(String, String)],
    copy: &CopyTarget,
) -> Result<Vec<String>, CopyError> {
    copy.columns
        .iter()
        .map(|column| {
            table
                .iter()
                .find(|(name, _)| name == column)
                .map(|(_, sql_type)| sql_type.clone())
                .ok_or_else(|| {
                    CopyError::Source(std::io::Error::other(format!(
                        "the file has a column {column:?} that table {} lacks",
                        copy.table
                    )))
                })
        })
        .collect()
}

/// `file:line: column c: message`, from the server's error and the batch's first line.
fn describe_failure(file: &FileJob, span: Span, failure: &UnitFailure) -> String {
    let path = file.file.path.display();
    match failure {
        UnitFailure::Copy(CopyError::Data { position, source }) => {
            let line = position.line.map(|l| span.first_line + l - 1);
            let mut out = match line {
                Some(line) => format!("{path}:{line}"),
                None => path.to_string(),
            };
            if let Some(column) = &position.column {
                out.push_str(&format!(": column {column}"));
            }
            out.push_str(&format!(": {}", server_message(source)));
            out
        }
        UnitFailure::Copy(CopyError::Db(e)) => {
            format!(
                "{path} bytes {}..{}: {}",
                span.lo,
                span.hi,
                server_message(e)
            )
        }
        UnitFailure::Copy(e) => {
            format!("{path} bytes {}..{}: {}", span.lo, span.hi, error_chain(e))
        }
        UnitFailure::Connect(e) => format!("{path} bytes {}..{}: {e:#}", span.lo, span.hi),
    }
}

/// The server's primary message and SQLSTATE, without its DETAIL and CONTEXT, which quote
/// row values.
fn server_message(err: &postgres::Error) -> String {
    match err.as_db_error() {
        Some(db) => format!("{} (SQLSTATE {})", db.message(), db.code().code()),
        None => error_chain(err),
    }
}
