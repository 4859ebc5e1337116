//! `qdrant2pg import`: the guide's step 2 — export files into PostgreSQL — in parallel, exactly
//! once, resumable.
//!
//! Plan: resolve the guide's `csv2adbpg.yaml`, libpq's environment and flags; open the export
//! directory; create the schema, the ledger and each table (`--if-exists` decides what happens
//! to a table that is already there; a table the ledger shows this tool was loading is always
//! resumed). Spawn: one planner thread scans files largest first (checksum and rows against the
//! manifest, cut points) and feeds batches into one bounded queue; N workers, one connection
//! each, COPY a batch and write its ledger row in one transaction. Join, report.
//!
//! Session settings: `statement_timeout = 0` (a server default must not cut a long COPY);
//! `synchronous_commit = off` only with `--synchronous-commit-off` — safe for exactly-once,
//! because a server crash loses a batch's rows and its ledger row together and the re-run loads
//! it again, but a crash then forgets commits that were reported done.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, bail};
use crossbeam_channel::{Receiver, Sender, bounded};

use crate::config::postgres::{PostgresArgs, Target, TargetFile};
use crate::progress::{OutputArgs, Task, Ui};
use crate::sink::copy::{CopyError, CopyTarget, copy_unit, file_span, is_transient};
use crate::sink::manifest::VectorSyntax;
use crate::source::export_dir::{DataFile, ExportedCollection, Loaded, Span};
use crate::target::ddl::{DdlOptions, Dialect, Halfvec, create_table_sql_with};
use crate::target::ident::{qualified, quote_ident};
use crate::target::ledger::{CREATED, Ledger, LedgerEntry};

/// Bytes per batch. The guide's 40,000-line files of 768-d vectors are ~300 MB; 32 MiB cuts
/// each into ~10 batches, so the last file never leaves a connection idle, while one commit
/// (and ledger row) per 32 MiB costs nothing next to parsing that much COPY text.
const DEFAULT_BATCH_BYTES: u64 = 32 << 20;
/// Batches queued per connection. A batch in the queue is a descriptor (a file span), not
/// data, so the bound is not about memory: it keeps the planner's scan (which reads each
/// file once to verify it) just ahead of the loaders, so a bad file stops a run early.
const QUEUED_PER_CONNECTION: usize = 2;
/// First backoff after a lost connection; doubled per attempt up to [`MAX_BACKOFF`].
const FIRST_BACKOFF: Duration = Duration::from_millis(250);
const MAX_BACKOFF: Duration = Duration::from_secs(15);

/// What to do with a table that already exists (and that this tool was not part-way through
/// loading — such a table is always resumed).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum IfExists {
    /// Leave it alone, as the guide does.
    #[default]
    Skip,
    /// Load the files into it (the ledger still never loads a batch twice).
    Append,
    /// Empty it, then load.
    Truncate,
    /// Drop it, create it anew, load.
    Replace,
    /// Stop with an error.
    Fail,
}

/// What to do when the server rejects a file's data.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum OnError {
    /// Finish the batches in flight, then stop.
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
    /// Attempts per batch when the connection is lost, with exponential backoff.
    #[arg(long, default_value_t = 8, value_name = "N")]
    pub retries: u32,
    /// Set synchronous_commit=off on the loading sessions (faster commits; a server crash may
    /// forget the last batches, which the next run loads again).
    #[arg(long)]
    pub synchronous_commit_off: bool,
}

/// One table's share of the run.
struct TableJob {
    collection: ExportedCollection,
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
}

/// What every worker shares.
struct Shared {
    ui: Arc<Ui>,
    target: Target,
    ledger: Ledger,
    args: ImportArgs,
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
    let file = match &args.config {
        Some(path) => {
            let (file, unknown) = TargetFile::read(path)?;
            for key in unknown {
                ui.warn(&format!("{}: unknown key `{key}` ignored", path.display()));
            }
            file
        }
        None => TargetFile::default(),
    };
    let target = Target::resolve(&args.postgres, &file.database, &|k| std::env::var(k).ok())?;
    let data = args
        .data
        .clone()
        .or(file.data_path)
        .unwrap_or_else(|| PathBuf::from("./output"));
    if args.connections == 0 {
        bail!("--connections must be at least 1");
    }
    let collections = open_collections(&data, &args.collections)?;
    let mut admin = target.connect().context("connecting for setup")?;
    let ledger = Ledger::new(&target.schema);
    prepare_schema(&mut admin, &target.schema, &ledger, args.dialect)?;
    let shared = Arc::new(Shared {
        ui: Arc::clone(&ui),
        ledger,
        target,
        args,
        stop: AtomicBool::new(false),
        failures: Mutex::new(Vec::new()),
    });
    let mut tables = Vec::new();
    let mut loaded = Vec::new();
    for collection in collections {
        let total = collection.manifest.as_ref().map(|m| m.rows());
        let task = ui.task(&collection.name, total);
        let entries = match prepare_table(&mut admin, &shared, &collection, &ui)? {
            Some(entries) => entries,
            None => {
                task.finish("skipped");
                continue;
            }
        };
        let job = Arc::new(TableJob {
            files_left: AtomicUsize::new(collection.files.len()),
            collection,
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
        .map(|_| {
            let shared = Arc::clone(&shared);
            let rx = rx.clone();
            std::thread::spawn(move || worker(&shared, &rx))
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

/// The collection directories to load, by name.
fn open_collections(data: &Path, only: &[String]) -> anyhow::Result<Vec<ExportedCollection>> {
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
    for (_, dir) in dirs {
        let collection = ExportedCollection::open(&dir)?;
        if let Some(manifest) = &collection.manifest
            && !manifest.complete
        {
            bail!(
                "the export in {} is not complete (its manifest says so): run the export \
                 again to finish it, then import",
                dir.display()
            );
        }
        collections.push(collection);
    }
    Ok(collections)
}

fn prepare_schema(
    admin: &mut postgres::Client,
    schema: &str,
    ledger: &Ledger,
    dialect: Dialect,
) -> anyhow::Result<()> {
    admin
        .batch_execute(&format!(
            "CREATE SCHEMA IF NOT EXISTS {}",
            quote_ident(schema)
        ))
        .with_context(|| format!("creating schema {schema}"))?;
    if dialect == Dialect::Pgvector {
        admin
            .batch_execute("CREATE EXTENSION IF NOT EXISTS vector")
            .context(
                "creating the pgvector extension (CREATE EXTENSION vector needs a privileged \
             role once per database)",
            )?;
    }
    ledger.ensure(admin, dialect)?;
    Ok(())
}

/// Applies `--if-exists` and creates the table; returns the ledger entries to resume from, or
/// `None` to skip the table.
fn prepare_table(
    admin: &mut postgres::Client,
    shared: &Shared,
    collection: &ExportedCollection,
    ui: &Ui,
) -> anyhow::Result<Option<Vec<LedgerEntry>>> {
    let schema = &shared.target.schema;
    let table = &collection.name;
    let name = qualified(Some(schema), table);
    let ddl = table_ddl(shared, collection, ui)?;
    let exists = admin
        .query_opt(
            "SELECT 1 FROM information_schema.tables WHERE table_schema = $1 AND table_name = $2",
            &[schema, table],
        )
        .with_context(|| format!("looking for table {name}"))?
        .is_some();
    let entries = shared.ledger.entries(admin, table)?;
    let mut tx = admin.transaction()?;
    let outcome = match (exists, entries.is_empty(), shared.args.if_exists) {
        (true, false, IfExists::Skip | IfExists::Append | IfExists::Fail) => {
            let batches = entries.iter().filter(|e| e.source != CREATED).count();
            ui.info(&format!(
                "{name}: resuming ({batches} batches already loaded)"
            ));
            Some(entries)
        }
        (true, true, IfExists::Skip) => {
            ui.info(&format!("{name} already exists: skipped (see --if-exists)"));
            None
        }
        (true, true, IfExists::Fail) => {
            bail!("table {name} already exists (--if-exists fail)")
        }
        (true, true, IfExists::Append) => Some(entries),
        (true, _, IfExists::Truncate) => {
            tx.batch_execute(&format!("TRUNCATE {name}"))
                .with_context(|| format!("truncating {name}"))?;
            shared.ledger.forget(&mut tx, table)?;
            shared.ledger.record_created(&mut tx, table)?;
            Some(Vec::new())
        }
        (true, _, IfExists::Replace) => {
            tx.batch_execute(&format!("DROP TABLE {name}"))
                .with_context(|| format!("dropping {name}"))?;
            shared.ledger.forget(&mut tx, table)?;
            create_table(&mut tx, schema, &ddl, &name)?;
            shared.ledger.record_created(&mut tx, table)?;
            Some(Vec::new())
        }
        (false, _, _) => {
            // Ledger rows of a table that was dropped by hand describe nothing any more.
            shared.ledger.forget(&mut tx, table)?;
            create_table(&mut tx, schema, &ddl, &name)?;
            shared.ledger.record_created(&mut tx, table)?;
            Some(Vec::new())
        }
    };
    tx.commit()
        .with_context(|| format!("preparing table {name}"))?;
    Ok(outcome)
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
                bail!(
                    "{}: the files hold vectors as {:?} but --dialect is {:?}: export again with \
                     --dialect {}",
                    collection.dir.display(),
                    manifest.vector_syntax,
                    args.dialect,
                    if args.dialect == Dialect::Pgvector {
                        "pgvector"
                    } else {
                        "postgres (or adbpg)"
                    }
                );
            }
            let options = DdlOptions {
                dialect: args.dialect,
                halfvec: args.halfvec,
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

/// Runs DDL with the target schema first on the search path, so the guide's unqualified
/// `CREATE TABLE name (…)` lands in the target schema, as its import.py arranges.
fn create_table(
    tx: &mut postgres::Transaction<'_>,
    schema: &str,
    ddl: &str,
    name: &str,
) -> anyhow::Result<()> {
    tx.batch_execute(&format!(
        "SET LOCAL search_path TO {}, public",
        quote_ident(schema)
    ))?;
    tx.batch_execute(ddl)
        .with_context(|| format!("creating table {name}"))
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
            shared.stop.store(true, Ordering::Release);
            return;
        }
        let scanned = match file.scan(&loaded, shared.args.batch_bytes) {
            Ok(scanned) => scanned,
            Err(e) => {
                shared.fail(format!("{e:#}"));
                table.failed.store(true, Ordering::Release);
                table.file_done();
                if shared.args.on_error == OnError::Stop {
                    shared.stop.store(true, Ordering::Release);
                }
                continue;
            }
        };
        if scanned.spans.is_empty() {
            table.file_done();
            continue;
        }
        let job = Arc::new(FileJob {
            copy: CopyTarget {
                schema: shared.target.schema.clone(),
                table: table.collection.name.clone(),
                columns: scanned.columns,
            },
            table,
            file,
            batches_left: AtomicUsize::new(scanned.spans.len()),
            failed: AtomicBool::new(false),
        });
        for span in scanned.spans {
            if tx
                .send(Batch {
                    file: Arc::clone(&job),
                    span,
                })
                .is_err()
            {
                return;
            }
        }
    }
}

/// One loader: one connection, one batch at a time.
fn worker(shared: &Shared, rx: &Receiver<Batch>) {
    let mut client: Option<postgres::Client> = None;
    let mut buf = Vec::new();
    for batch in rx {
        if shared.stop.load(Ordering::Acquire) {
            return;
        }
        if !batch.file.failed.load(Ordering::Acquire) {
            load(shared, &batch, &mut client, &mut buf);
        }
        batch.file.batch_done();
    }
}

/// Loads one batch, retrying on a fresh connection while the failure is a lost connection.
fn load(shared: &Shared, batch: &Batch, client: &mut Option<postgres::Client>, buf: &mut Vec<u8>) {
    let file = &batch.file;
    let span = batch.span;
    let entry = LedgerEntry {
        table: file.copy.table.clone(),
        source: file.file.name.clone(),
        lo: span.lo.to_string(),
        hi: span.hi.to_string(),
        rows: span.rows,
        checksum: String::new(),
    };
    let mut backoff = FIRST_BACKOFF;
    let mut attempt = 1;
    loop {
        let result = session(shared, client)
            .map_err(Failure::Connect)
            .and_then(|c| {
                let source = std::fs::File::open(&file.file.path)
                    .and_then(|f| file_span(f, span.lo, span.hi))
                    .map_err(|e| Failure::Copy(CopyError::Source(e)))?;
                let mut source = source;
                copy_unit(c, &file.copy, &shared.ledger, &entry, &mut source, buf)
                    .map_err(Failure::Copy)
            });
        let failure = match result {
            Ok(rows) => {
                file.table.task.add(rows, span.hi - span.lo);
                return;
            }
            Err(Failure::Copy(CopyError::AlreadyLoaded)) => {
                file.table.task.add_done_before(span.rows);
                return;
            }
            Err(failure) => failure,
        };
        let transient = match &failure {
            Failure::Connect(e) => e.chain().any(|c| {
                c.downcast_ref::<postgres::Error>()
                    .is_some_and(is_transient)
            }),
            Failure::Copy(e) => e.is_transient(),
        };
        *client = None;
        if transient && attempt < shared.args.retries {
            shared.ui.warn(&format!(
                "{}: connection lost, retrying on a fresh one in {backoff:?} (attempt {}/{})",
                describe_failure(file, span, &failure),
                attempt + 1,
                shared.args.retries
            ));
            std::thread::sleep(backoff);
            backoff = (backoff * 2).min(MAX_BACKOFF);
            attempt += 1;
            continue;
        }
        shared.fail(describe_failure(file, span, &failure));
        file.failed.store(true, Ordering::Release);
        file.table.failed.store(true, Ordering::Release);
        let data_error = matches!(
            failure,
            Failure::Copy(CopyError::Data { .. } | CopyError::RowCount { .. })
        );
        if shared.args.on_error == OnError::Stop || !data_error {
            shared.stop.store(true, Ordering::Release);
        }
        return;
    }
}

enum Failure {
    Connect(anyhow::Error),
    Copy(CopyError),
}

/// The worker's connection, opened (with the bulk-load settings) when missing.
fn session<'a>(
    shared: &Shared,
    client: &'a mut Option<postgres::Client>,
) -> anyhow::Result<&'a mut postgres::Client> {
    if client.is_none() {
        let mut fresh = shared.target.connect()?;
        let mut settings = "SET statement_timeout = 0".to_owned();
        if shared.args.synchronous_commit_off {
            settings.push_str("; SET synchronous_commit = off");
        }
        fresh.batch_execute(&settings)?;
        *client = Some(fresh);
    }
    client.as_mut().context("no connection")
}

/// `file:line: column c: message`, from the server's error and the batch's first line.
fn describe_failure(file: &FileJob, span: Span, failure: &Failure) -> String {
    let path = file.file.path.display();
    match failure {
        Failure::Copy(CopyError::Data { position, source }) => {
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
        Failure::Copy(CopyError::Db(e)) => {
            format!(
                "{path} bytes {}..{}: {}",
                span.lo,
                span.hi,
                server_message(e)
            )
        }
        Failure::Copy(e) => format!("{path} bytes {}..{}: {}", span.lo, span.hi, chain(e)),
        Failure::Connect(e) => format!("{path} bytes {}..{}: {e:#}", span.lo, span.hi),
    }
}

/// An error and its causes, `: `-separated (what `{:#}` prints for anyhow errors).
fn chain(err: &dyn std::error::Error) -> String {
    let mut out = err.to_string();
    let mut cause = err.source();
    while let Some(e) = cause {
        out.push_str(": ");
        out.push_str(&e.to_string());
        cause = e.source();
    }
    out
}

/// The server's primary message and SQLSTATE, without its DETAIL and CONTEXT, which quote
/// row values.
fn server_message(err: &postgres::Error) -> String {
    match err.as_db_error() {
        Some(db) => format!("{} (SQLSTATE {})", db.message(), db.code().code()),
        None => chain(err),
    }
}
