//! `qdrant2pg import`: the guide's step 2 — export files into PostgreSQL — in parallel, exactly
//! once, resumable, and shared by any number of identical commands on any number of hosts.
//!
//! Plan: resolve the guide's `csv2adbpg.yaml`, libpq's environment and flags; open the export
//! directories (a whole export, or the parts of one made with `export --partition`, checked to
//! be complete and disjoint); join the target schema's shared run (`postgres::run`). The
//! process that finds no run plans it under the run's lock: the schema, the ledger and each
//! table (`--if-exists` decides what happens to a table that is already there; a table the
//! ledger shows this tool was loading is always resumed), and one unit per data file, largest
//! first. Spawn: a claimer thread claims files, scans each (checksum and rows against the
//! manifest, the spans the ledger already holds, cut points) and feeds its batches into one
//! bounded queue; N workers, one connection each, COPY a batch, pass its file's fence (is the
//! file still this process's) and write its ledger row in one transaction. Join, report.
//! Tables, sessions and retries are `postgres::table`'s and `sink::copy`'s, shared with migrate.
//!
//! One collection does not sink the others: an incomplete export is named and not loaded, and
//! data a table rejects stops that table (`--on-error stop`: no process of the run claims its
//! files any more) or that file (`skip-file`) while the other tables load to the end. The run
//! then exits non-zero naming each failure; the same command again loads only what the ledger
//! lacks.
//!
//! `--via gpfdist` (Greenplum, AnalyticDB): a file no earlier run touched is one batch that the
//! segments pull through an external table from the worker's own gpfdist (`sink::gpfdist`),
//! with the same one-transaction fence and ledger row; what a COPY run left of a file still goes
//! by COPY.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, bail};
use crossbeam_channel::{Receiver, Sender, bounded};
use postgres::Transaction;
use serde::{Deserialize, Serialize};
use xxhash_rust::xxh3::Xxh3;

use crate::cmd::shared_run::{announce, failed_elsewhere, finished_run, outcome_result};
use crate::config::postgres::{PostgresArgs, Target, TargetFile};
use crate::config::read_or_default;
use crate::postgres::catalog::{is_greenplum, table_columns};
use crate::postgres::ddl::{DdlOptions, Dialect, Halfvec, VectorStorage, create_table_sql_with};
use crate::postgres::ident::qualified;
use crate::postgres::ledger::{Ledger, LedgerEntry, MIGRATE_SOURCE};
use crate::postgres::run::{
    Joined, Lease, Member, NewPlan, NewUnit, RunArgs, Settings, SharedRun, UnitRow, setting,
};
use crate::postgres::table::{IfExists, TableSpec, prepare_schema, prepare_table};
use crate::progress::{OutputArgs, Task, Ui};
use crate::sink::copy::{
    CopyError, CopyFormat, CopyTarget, Fenced, LoadSettings, Loader, UnitFailure, copy_unit,
    error_chain, file_span,
};
use crate::sink::gpfdist::{
    GpfdistArgs, GpfdistServer, GpfdistSettings, ServedFile, Via, insert_file,
};
use crate::sink::manifest::{MANIFEST_FILE, Partition, VectorSyntax};
use crate::source::export_dir::{CREATE_TABLE_FILE, DataFile, ExportedCollection, Loaded, Span};

/// Bytes per batch. The guide's 40,000-line files of 768-d vectors are ~300 MB; 32 MiB cuts
/// each into ~10 batches, so the last file never leaves a connection idle, while one commit
/// (and ledger row) per 32 MiB costs nothing next to parsing that much COPY text.
const DEFAULT_BATCH_BYTES: u64 = 32 << 20;
/// Batches queued per connection. A batch in the queue is a descriptor (a file span), not
/// data, so the bound is not about memory: it keeps the planner's scan (which reads each
/// file once to verify it) just ahead of the loaders, so a bad file stops a run early.
const QUEUED_PER_CONNECTION: usize = 2;
/// How long the claimer waits before asking again when every open file is held by a worker:
/// a file a dead worker held is taken over within about this.
const CLAIM_POLL: Duration = Duration::from_millis(500);
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
    /// An export directory (`data_path`): one subdirectory per collection, holding a whole
    /// export or parts of one (`export --partition`). Repeatable: parts may lie in several
    /// [default: ./output].
    #[arg(long, value_name = "DIR")]
    pub data: Vec<PathBuf>,
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
    #[command(flatten)]
    pub run: RunArgs,
}

/// One table of the run's plan.
#[derive(Debug, Serialize, Deserialize)]
struct PlannedTable {
    table: String,
    /// Rows of the whole export, when a manifest says.
    rows: Option<u64>,
}

/// One table's share of the run.
struct TableJob {
    collection: ExportedCollection,
    /// `(column, SQL type)` of the table, for `--via gpfdist`'s external tables.
    columns: Vec<(String, String)>,
    task: Arc<Task>,
    /// A file of it failed here (with `--on-error stop`, the table stops).
    failed: AtomicBool,
}

/// One file this process claimed and is loading.
struct FileJob {
    table: Arc<TableJob>,
    file: DataFile,
    copy: CopyTarget,
    lease: Lease,
    batches_left: AtomicUsize,
    /// A batch failed (the file is marked failed) or the file went to another worker.
    given_up: AtomicBool,
}

impl FileJob {
    /// One batch settled: the last one closes the file's unit, unless the file was given up.
    fn batch_done(&self, shared: &Shared) {
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
    member: Member,
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

pub fn run(args: ImportArgs, output: &OutputArgs) -> anyhow::Result<ExitCode> {
    let ui = Ui::new(output);
    let file: TargetFile = read_or_default(args.config.as_deref(), &|w| ui.warn(w))?;
    let target = Target::resolve(&args.postgres, &file.database, &|k| std::env::var(k).ok())?;
    let data = if args.data.is_empty() {
        vec![file.data_path.unwrap_or_else(|| PathBuf::from("./output"))]
    } else {
        args.data.clone()
    };
    if args.connections == 0 {
        bail!("--connections must be at least 1");
    }
    let (collections, incomplete) = open_collections(&data, &args.collections, &ui)?;
    let ledger = Ledger::new(&target.schema);
    let mut client = target.connect().context("connecting for setup")?;
    let gpfdist = match args.gpfdist.via {
        Via::Copy => None,
        Via::Gpfdist => {
            if !is_greenplum(&mut client).context("asking what the target is")? {
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
    let incomplete: Vec<String> = incomplete
        .into_iter()
        .map(|(name, dir)| {
            ui.task(&name, None).finish("INCOMPLETE");
            format!(
                "collection {name}: the export in {} is not complete (its manifest says so), \
                 so nothing of it was loaded: run the export again to finish it, then import",
                dir.display()
            )
        })
        .collect();
    let joined = SharedRun::new(&target.schema).join(
        &target,
        client,
        &settings(&args, &collections),
        args.retries,
        args.dialect,
        |tx| plan(tx, &args, &target, &collections, &ledger, &ui),
    )?;
    let (member, plan) = match joined {
        Joined::Finished(summary) if incomplete.is_empty() => {
            return finished_run("import", &summary, &ui, output);
        }
        Joined::Finished(_) => {
            ui.finish("import", output).context("writing the summary")?;
            return report_failures(&incomplete, &ledger);
        }
        Joined::Member { member, plan, how } => {
            announce(&ui, &member, &how);
            (*member, plan)
        }
    };
    let planned: Vec<PlannedTable> = serde_json::from_str(&plan)
        .context("the run's plan is not an import plan this version can read")?;
    let mut admin = target.connect().context("connecting for setup")?;
    let mut by_name: BTreeMap<String, ExportedCollection> = collections
        .into_iter()
        .map(|c| (c.name.clone(), c))
        .collect();
    let mut tables = Vec::new();
    for table in planned {
        let Some(collection) = by_name.remove(&table.table) else {
            bail!(
                "the run loads table {:?}, which these export directories do not hold",
                table.table
            );
        };
        let columns = table_columns(&mut admin, &target.schema, &collection.name)
            .with_context(|| format!("reading the columns of {}", collection.name))?;
        let task = ui.task(&table.table, table.rows);
        tables.push(Arc::new(TableJob {
            collection,
            columns,
            task,
            failed: AtomicBool::new(false),
        }));
    }
    drop(admin);
    let shared = Arc::new(Shared {
        ui: Arc::clone(&ui),
        ledger,
        target,
        member,
        args,
        gpfdist,
        stop: AtomicBool::new(false),
        failures: Mutex::new(incomplete),
    });

    let (tx, rx) = bounded::<Batch>(shared.args.connections * QUEUED_PER_CONNECTION);
    let workers: Vec<_> = (0..shared.args.connections)
        .map(|index| {
            let shared = Arc::clone(&shared);
            let rx = rx.clone();
            std::thread::spawn(move || worker(&shared, &rx, index))
        })
        .collect();
    drop(rx);
    claim_files(&shared, &tables, &tx);
    drop(tx);
    for worker in workers {
        if worker.join().is_err() {
            shared.fail("a loader thread panicked; its batch was rolled back".to_owned());
        }
    }
    let stopped = shared.stop.load(Ordering::Acquire);
    let mut failures =
        std::mem::take(&mut *shared.failures.lock().unwrap_or_else(|e| e.into_inner()));
    // Tables another process of the run failed in count as failed here too.
    let failed_here = |name: &str| {
        tables
            .iter()
            .any(|t| t.collection.name == name && t.failed.load(Ordering::Acquire))
    };
    let elsewhere = failed_elsewhere(&shared.member, failed_here).unwrap_or_else(|e| {
        failures.push(format!("{e:#}"));
        Vec::new()
    });
    for (table, why) in &elsewhere {
        failures.push(format!("table {table}: {why}"));
    }
    for table in &tables {
        let name = &table.collection.name;
        let failed = failed_here(name) || elsewhere.iter().any(|(t, _)| t == name);
        table.task.finish(match (failed, stopped) {
            (true, _) => "FAILED",
            (false, true) => "stopped",
            (false, false) => "ok",
        });
    }
    if failures.is_empty() && !stopped {
        // Every unit of the run done, or else which are open or failed.
        let outcome = outcome_result(&shared.member);
        ui.finish("import", output).context("writing the summary")?;
        outcome?;
        return Ok(ExitCode::SUCCESS);
    }
    ui.finish("import", output).context("writing the summary")?;
    report_failures(&failures, &shared.ledger)
}

/// Prints each failure and what a re-run does; the exit code of a failed import.
fn report_failures(failures: &[String], ledger: &Ledger) -> anyhow::Result<ExitCode> {
    for failure in failures {
        eprintln!("error: {failure}");
    }
    eprintln!(
        "error: {} failure(s); batches already committed are in {}, and running the command \
         again (on any host) loads only the rest",
        failures.len(),
        ledger.name()
    );
    Ok(ExitCode::FAILURE)
}

/// What makes this import this run: the collections, the dialect and table options, and the
/// export itself (every file's name, size and checksum), so a run is never continued from other
/// files. Where the directories are is not part of it: each host may mount them elsewhere.
fn settings(args: &ImportArgs, collections: &[ExportedCollection]) -> Settings {
    let names: Vec<String> = collections.iter().map(|c| c.name.clone()).collect();
    let mut export = Xxh3::new();
    for collection in collections {
        export.update(collection.name.as_bytes());
        export.update(&[0]);
        if let Some(manifest) = &collection.manifest {
            export.update(&serde_json::to_vec(&manifest.layout).unwrap_or_default());
            export.update(&serde_json::to_vec(&manifest.vector_syntax).unwrap_or_default());
        }
        for file in &collection.files {
            export.update(file.name.as_bytes());
            export.update(&file.bytes.to_le_bytes());
            if let Some((rows, xxh3)) = &file.expected {
                export.update(&rows.to_le_bytes());
                export.update(xxh3.as_bytes());
            }
            export.update(&[0]);
        }
    }
    [
        ("command", "import".into()),
        ("--collection", names.into()),
        ("--dialect", setting(&args.dialect)),
        ("--halfvec", setting(&args.halfvec)),
        ("--vector-storage", setting(&args.vector_storage)),
        ("--if-exists", setting(&args.if_exists)),
        ("--on-error", setting(&args.on_error)),
        ("--run", args.run.name.clone().into()),
        ("export files", format!("{:016x}", export.digest()).into()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect()
}

/// Plans the run (under its lock, in its transaction): each table readied, one unit per data
/// file, largest first.
fn plan(
    tx: &mut Transaction<'_>,
    args: &ImportArgs,
    target: &Target,
    collections: &[ExportedCollection],
    ledger: &Ledger,
    ui: &Ui,
) -> anyhow::Result<NewPlan> {
    prepare_schema(tx, &target.schema, ledger, args.dialect)?;
    let mut tables = Vec::new();
    let mut files = Vec::new();
    for collection in collections {
        let ddl = table_ddl(args, &target.schema, collection, ui)?;
        let spec = TableSpec {
            schema: &target.schema,
            table: &collection.name,
            ddl: &ddl,
            if_exists: args.if_exists,
        };
        match prepare_table(tx, ledger, &spec, ui)? {
            Some(entries) if entries.iter().any(|e| e.source == MIGRATE_SOURCE) => bail!(
                "{} is being loaded by `qdrant2pg migrate` (its ledger holds id ranges, not \
                 files); finish that migrate, or start over with --if-exists replace",
                qualified(Some(&target.schema), &collection.name)
            ),
            Some(_) => {}
            None => continue,
        }
        tables.push(PlannedTable {
            table: collection.name.clone(),
            rows: collection.manifest.as_ref().map(|m| m.rows()),
        });
        files.extend(collection.files.iter().map(|f| (collection, f)));
    }
    files.sort_by_key(|(_, f)| std::cmp::Reverse(f.bytes));
    let units = files
        .into_iter()
        .map(|(collection, file)| NewUnit {
            table: collection.name.clone(),
            source: file.name.clone(),
            lo: "0".to_owned(),
            hi: file.bytes.to_string(),
        })
        .collect();
    Ok(NewPlan {
        plan: serde_json::to_string(&tables).context("writing the run's plan")?,
        units,
    })
}

/// The collection directories to load, by name, and those whose export is incomplete (name and
/// directory), which are not loaded.
type Collections = (Vec<ExportedCollection>, Vec<(String, PathBuf)>);

/// The collection directories to load, by name, from every export directory, and the
/// incomplete ones: a directory holding `manifest.json` or `create_table.sql` is a whole
/// export; one holding `part-I-of-N` directories holds parts of a partitioned one, which may be
/// spread over several export directories and load as one collection.
fn open_collections(data: &[PathBuf], only: &[String], ui: &Ui) -> anyhow::Result<Collections> {
    #[derive(Default)]
    struct Found {
        whole: Vec<PathBuf>,
        parts: Vec<PathBuf>,
    }
    let mut found: BTreeMap<String, Found> = BTreeMap::new();
    for root in data {
        let entries = std::fs::read_dir(root)
            .with_context(|| format!("cannot read the export directory {}", root.display()))?;
        for entry in entries {
            let entry = entry.with_context(|| format!("reading {}", root.display()))?;
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
    let roots = || {
        data.iter()
            .map(|d| d.display().to_string())
            .collect::<Vec<_>>()
            .join(", ")
    };
    for wanted in only {
        if !found.contains_key(wanted) {
            bail!("no directory for collection {wanted:?} in {}", roots());
        }
    }
    let mut collections = Vec::new();
    let mut incomplete = Vec::new();
    for (name, Found { whole, parts }) in found {
        let collection = match (whole.as_slice(), parts.is_empty()) {
            ([dir], true) => ExportedCollection::open(dir)?,
            ([], false) => ExportedCollection::from_parts(&name, &parts)?,
            _ => {
                let dirs: Vec<String> = whole
                    .iter()
                    .chain(&parts)
                    .map(|d| d.display().to_string())
                    .collect();
                bail!(
                    "collection {name:?} is exported more than once ({}): pass only the \
                     --data directories of one export",
                    dirs.join(", ")
                );
            }
        };
        if let Some(manifest) = &collection.manifest {
            if !manifest.complete {
                incomplete.push((name, collection.dir));
                continue;
            }
            if let Some(warning) = collection.count_warning() {
                ui.warn(&warning);
            }
        }
        collections.push(collection);
    }
    Ok((collections, incomplete))
}

/// The `part-I-of-N` directories inside a collection directory.
fn part_dirs(dir: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let mut parts = Vec::new();
    for entry in std::fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))? {
        let entry = entry.with_context(|| format!("reading {}", dir.display()))?;
        let name = entry.file_name();
        if Partition::parse_dir_name(&name.to_string_lossy()).is_some() && entry.path().is_dir() {
            parts.push(entry.path());
        }
    }
    parts.sort();
    Ok(parts)
}

/// The table's DDL: written from the manifest for the chosen dialect, or the guide's
/// `create_table.sql` as it is.
fn table_ddl(
    args: &ImportArgs,
    schema: &str,
    collection: &ExportedCollection,
    ui: &Ui,
) -> anyhow::Result<String> {
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
                Some(schema),
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

/// The claimer: claims files of the run one after another, scans each (verified against its
/// manifest and the ledger, cut into batches) and queues its batches. Returns when no file is
/// left to claim, or when asked to stop.
fn claim_files(shared: &Shared, tables: &[Arc<TableJob>], tx: &Sender<Batch>) {
    while !shared.stop.load(Ordering::Acquire) {
        let stop_tables = shared.args.on_error == OnError::Stop;
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
fn queue_file(
    shared: &Shared,
    tables: &[Arc<TableJob>],
    row: &UnitRow,
    tx: &Sender<Batch>,
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
            .ledger_entries(&shared.ledger, &table.collection.name, &file.name)
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
    let scanned = match file.scan(&spans, shared.args.batch_bytes) {
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
                WholeFile {
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
    let batches: Vec<(Span, Option<WholeFile>)> = match whole_file {
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
        table: Arc::clone(table),
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
        if table_stopped {
            batch.file.given_up.store(true, Ordering::Release);
        }
        if !batch.file.given_up.load(Ordering::Acquire) {
            let server = Served {
                index,
                server: &mut gpfdist,
            };
            load(shared, &batch, &mut loader, &mut buf, server);
        }
        batch.file.batch_done(shared);
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
            match &batch.whole_file {
                Some(whole) => {
                    let types = file_column_types(&file.table.columns, &file.copy)?;
                    let url = gpfdist.url(shared, &file.file, whole.longest_line)?;
                    let served = ServedFile {
                        url: &url,
                        header: file.file.header,
                        types: &types,
                    };
                    insert_file(
                        client,
                        &file.copy,
                        served,
                        &shared.ledger,
                        &entry,
                        &mut fence,
                    )
                }
                None => {
                    let mut source = std::fs::File::open(&file.file.path)
                        .and_then(|f| file_span(f, span.lo, span.hi))
                        .map_err(CopyError::Source)?;
                    copy_unit(
                        client,
                        &file.copy,
                        &shared.ledger,
                        &entry,
                        &mut source,
                        buf,
                        &mut fence,
                    )
                }
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
        Err(UnitFailure::Copy(CopyError::Fenced(_))) => {
            if !file.given_up.swap(true, Ordering::AcqRel) {
                shared.ui.info(&format!(
                    "{}: taken over by another worker; leaving it to that one",
                    file.file.path.display()
                ));
            }
            return;
        }
        Err(failure) => failure,
    };
    file.given_up.store(true, Ordering::Release);
    let message = describe_failure(file, span, &failure);
    let data_error = matches!(
        failure,
        UnitFailure::Copy(CopyError::Data { .. } | CopyError::RowCount { .. })
    );
    if data_error {
        shared.fail_file(file.lease, Some(&file.table), message);
    } else {
        // Not the file's fault (the server is gone): another run may load it.
        shared.fail(message);
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
