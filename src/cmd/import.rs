//! `qdrant2pg import`: the guide's step 2 — export files into PostgreSQL — in parallel, exactly
//! once, resumable, and shared by any number of identical commands on any number of hosts.
//!
//! Plan: resolve the guide's `csv2adbpg.yaml`, libpq's environment and flags; open the export
//! directories (a whole export, or the parts of one made with `export --partition`, checked to
//! be complete and disjoint); join the target schema's shared run (`run`). The
//! process that finds no run plans it under the run's lock: the schema, the ledger and each
//! table (`--if-exists` decides what happens to a table that is already there; a table the
//! ledger shows this tool was loading is always resumed), and one unit per data file, largest
//! first. Spawn: the claimer and loaders of `run::files` claim files, scan them and load them a
//! batch per transaction, with the file's fence and its ledger row. Join, report. Tables,
//! sessions and retries are `postgres::table`'s and `sink::copy`'s, shared with migrate.
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

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use anyhow::{Context, bail};
use postgres::Transaction;
use serde::{Deserialize, Serialize};
use xxhash_rust::xxh3::Xxh3;

use crate::cmd::flags::{CommitArgs, GpfdistArgs, RunArgs, TableArgs, Via, run_settings, setting};
use crate::cmd::shared_run::{announce, failed_elsewhere, finished_run, outcome_result};
use crate::config::postgres::{PostgresArgs, Target, TargetFile};
use crate::config::read_or_default;
use crate::layout::VectorSyntax;
use crate::postgres::catalog::{is_greenplum, table_columns};
use crate::postgres::ddl::{Dialect, create_table_sql_with};
use crate::postgres::ident::qualified;
use crate::postgres::ledger::{Ledger, MIGRATE_SOURCE};
use crate::postgres::table::{TableSpec, prepare_schema, prepare_table};
use crate::progress::{OutputArgs, Ui};
use crate::run::files::{FileLoading, FileRun, TableJob};
use crate::run::plan::{Joined, NewPlan, NewUnit};
use crate::run::store::Settings;
use crate::run::store::SharedRun;
use crate::sink::copy::{LoadSettings, Loader};
use crate::source::export_dir::{ExportedCollection, FoundExports, find_collections};

/// Bytes per batch. The guide's 40,000-line files of 768-d vectors are ~300 MB; 32 MiB cuts
/// each into ~10 batches, so the last file never leaves a connection idle, while one commit
/// (and ledger row) per 32 MiB costs nothing next to parsing that much COPY text.
const DEFAULT_BATCH_BYTES: u64 = 32 << 20;
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
    #[command(flatten)]
    pub table: TableArgs,
    /// What to do when the server rejects a file's data.
    #[arg(long, value_enum, default_value_t)]
    pub on_error: OnError,
    /// Attempts per batch when the connection is lost, with exponential backoff.
    #[arg(long, default_value_t = 8, value_name = "N")]
    pub retries: u32,
    #[command(flatten)]
    pub commits: CommitArgs,
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
    let FoundExports {
        complete: collections,
        incomplete,
    } = find_collections(&data, &args.collections)?;
    for collection in &collections {
        if let Some(warning) = collection.count_warning() {
            ui.warn(&warning);
        }
    }
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
            Some(args.gpfdist.settings(target.coordinator())?)
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
        args.table.dialect,
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
    let shared = FileRun {
        ui: &ui,
        target: &target,
        ledger: &ledger,
        member: &member,
        loading: FileLoading {
            connections: args.connections,
            batch_bytes: args.batch_bytes,
            stop_table_on_error: args.on_error == OnError::Stop,
            load: LoadSettings {
                retries: args.retries,
                commits: args.commits.commits(args.table.dialect),
            },
        },
        gpfdist,
        stop: AtomicBool::new(false),
        failures: Mutex::new(incomplete),
    };
    shared.load(&tables);
    let stopped = shared.stop.load(Ordering::Acquire);
    if !stopped {
        // Every batch this process committed is made durable before anything is reported.
        Loader::new(&target, shared.loading.load)
            .commit_durably(&mut |tx| member.durable_mark(tx))
            .map_err(|failure| anyhow::anyhow!("{}", failure.describe()))
            .context("making the committed batches durable")?;
    }
    let mut failures =
        std::mem::take(&mut *shared.failures.lock().unwrap_or_else(|e| e.into_inner()));
    // Tables another process of the run failed in count as failed here too.
    let failed_here = |name: &str| {
        tables
            .iter()
            .any(|t| t.collection.name == name && t.failed.load(Ordering::Acquire))
    };
    let elsewhere = failed_elsewhere(shared.member, failed_here).unwrap_or_else(|e| {
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
        let outcome = outcome_result(shared.member);
        ui.finish("import", output).context("writing the summary")?;
        outcome?;
        return Ok(ExitCode::SUCCESS);
    }
    ui.finish("import", output).context("writing the summary")?;
    report_failures(&failures, shared.ledger)
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
    run_settings(
        "import",
        &names,
        &args.run,
        &args.table,
        [
            ("--on-error", setting(&args.on_error)),
            ("export files", format!("{:016x}", export.digest()).into()),
        ],
    )
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
    prepare_schema(tx, &target.schema, ledger, args.table.dialect)?;
    let mut tables = Vec::new();
    let mut files = Vec::new();
    for collection in collections {
        let ddl = table_ddl(args, &target.schema, collection, ui)?;
        let spec = TableSpec {
            schema: &target.schema,
            table: &collection.name,
            ddl: &ddl,
            if_exists: args.table.if_exists,
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
            if (args.table.dialect == Dialect::Pgvector)
                != (manifest.vector_syntax == VectorSyntax::Pgvector)
            {
                let (held, wanted) = if args.table.dialect == Dialect::Pgvector {
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
            let options = args.table.ddl_options();
            Ok(create_table_sql_with(
                Some(schema),
                &collection.name,
                &manifest.layout,
                &manifest.facts(),
                options,
            ))
        }
        None => {
            if args.table.dialect != Dialect::Postgres {
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
