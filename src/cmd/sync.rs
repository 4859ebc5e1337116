//! `qdrant2pg sync`: brings tables up to their collections while the collections keep
//! changing — a pass (`sync::pass`) reads both sides whole, as `verify --full` does, and repairs
//! every id that differs. One pass by default; `--until-converged` runs passes until one finds
//! no difference (at most `--max-passes`); `--watch SECONDS` keeps a standby copy in sync until
//! interrupted, a pass starting every SECONDS (a pass that overruns its slot is followed at
//! once by the next). Exit 0 means the last pass found both sides identical as it read them.

use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

use crate::cmd::flags::{CommitArgs, FullReadArgs, SourceArgs};
use crate::config::EndpointArgs;
use crate::config::postgres::Target;
use crate::layout::Halfvec;
use crate::postgres::catalog::{id_is_indexed, is_greenplum};
use crate::postgres::ddl::Dialect;
use crate::progress::{OutputArgs, Ui};
use crate::sink::copy::{Commits, LoadSettings};
use crate::source::Source;
use crate::sync::cache::{KeptStates, RowVersions};
use crate::sync::pass::{PassReport, PassSettings, Synced, run_pass};
use crate::sync::target::{TableWriter, lock_table};
use crate::verify::table::Table;

/// Passes `--until-converged` runs at most unless `--max-passes` says otherwise.
const DEFAULT_MAX_PASSES: u32 = 10;

/// `qdrant2pg sync` flags.
#[derive(Debug, clap::Args)]
pub struct SyncArgs {
    #[command(flatten)]
    pub ends: EndpointArgs,
    #[command(flatten)]
    pub source: SourceArgs,
    /// The dialect the tables were made in (as `migrate --dialect`).
    #[arg(long, value_enum, default_value_t = Dialect::Postgres)]
    pub dialect: Dialect,
    /// pgvector: when dense vectors are halfvec (as `migrate --halfvec`).
    #[arg(long, value_enum, default_value_t)]
    pub halfvec: Halfvec,
    #[command(flatten)]
    pub read: FullReadArgs,
    /// Attempts per repair batch when the PostgreSQL connection is lost (`--retries` is
    /// Qdrant's).
    #[arg(long, default_value_t = 8, value_name = "N")]
    pub copy_retries: u32,
    #[command(flatten)]
    pub commits: CommitArgs,
    /// Run passes until one finds no difference (at most --max-passes).
    #[arg(long, conflicts_with = "watch")]
    pub until_converged: bool,
    /// The most passes --until-converged runs [default: 10].
    #[arg(long, value_name = "N", requires = "until_converged")]
    pub max_passes: Option<u32>,
    /// Keep the tables in sync until interrupted: a pass every SECONDS, each starting on its
    /// slot of the interval (not after the previous pass's end).
    #[arg(long, value_name = "SECONDS")]
    pub watch: Option<u64>,
    /// Read each table whole every pass, even where the buckets the last pass kept are still
    /// the table's (nobody else wrote it since).
    #[arg(long)]
    pub full_read: bool,
}

/// One collection, how its table is written, and how its row versions are fingerprinted.
struct SyncedTable {
    table: Table,
    writer: TableWriter,
    versions: RowVersions,
}

pub fn run(args: SyncArgs, output: &OutputArgs) -> anyhow::Result<ExitCode> {
    let ui = Ui::new(output);
    let (source_file, target) = args.ends.load(&|w| ui.warn(w))?;
    let (source, names) = args.source.open(
        &args.ends.qdrant,
        &source_file,
        args.ends.source_config.as_deref(),
    )?;
    // Held for the whole command: its session keeps every table's sync lock.
    let mut db = target.connect().context("connecting to the target")?;
    let mut synced = Vec::new();
    for name in &names {
        let table = Table::describe(&mut db, &target.schema, name, &source)?;
        let writer = TableWriter::check(
            &mut db,
            &target.schema,
            name,
            &table.schema.layout,
            args.dialect,
            args.halfvec,
        )?;
        if !lock_table(&mut db, &target.schema, name).context("taking the table's sync lock")? {
            bail!(
                "another sync of {} is running (it holds the table's lock); one at a time",
                table.name
            );
        }
        if !id_is_indexed(&mut db, &target.schema, name).context("looking for an id index")? {
            ui.warn(&format!(
                "{} has no index on id: every repair batch scans the table (`qdrant2pg index` \
                 builds one)",
                table.name
            ));
        }
        let versions =
            RowVersions::new(&mut db, &target.schema, name).context("asking what the target is")?;
        synced.push(SyncedTable {
            table,
            writer,
            versions,
        });
    }
    let greenplum = is_greenplum(&mut db).context("asking what the target is")?;
    let kept = KeptStates::open(&mut db, &target.schema, greenplum)
        .context("creating the table that keeps each pass's state")?;
    let read = args.read.settings();
    let scratch = args
        .source
        .scratch
        .clone()
        .unwrap_or_else(std::env::temp_dir);
    let settings = PassSettings {
        read: &read,
        scratch: &scratch,
        load: LoadSettings {
            retries: args.copy_retries,
            // Greenplum's segments each have a WAL of their own: no one flush covers the others'.
            commits: match greenplum {
                true => Commits::EachDurable,
                false => args.commits.commits(args.dialect),
            },
        },
        full_read: args.full_read,
    };
    let max_passes = match (args.until_converged, args.watch) {
        (true, _) => args.max_passes.unwrap_or(DEFAULT_MAX_PASSES),
        (false, Some(_)) => u32::MAX,
        (false, None) => 1,
    };
    let started = Instant::now();
    let mut reports = Vec::new();
    let mut identical = false;
    for pass in 1..=max_passes {
        let outcome = one_pass(&source, &target, &synced, &kept, &settings, &ui, pass);
        let found_none = match outcome {
            Ok(passed) => {
                identical = passed.iter().all(PassReport::identical);
                let found_none = passed.iter().all(|r| r.differing_ids == 0);
                reports.extend(passed);
                found_none
            }
            // A standby keeps going: the next pass reads everything again.
            Err(e) if args.watch.is_some() => {
                ui.warn(&format!("pass {pass} failed: {e:#}"));
                identical = false;
                false
            }
            Err(e) => {
                record(&ui, &reports)?;
                ui.finish("sync", output).context("writing the summary")?;
                return Err(e);
            }
        };
        if args.until_converged && found_none {
            break;
        }
        if let Some(seconds) = args.watch {
            wait_for_slot(started, Duration::from_secs(seconds.max(1)));
        }
    }
    record(&ui, &reports)?;
    ui.finish("sync", output).context("writing the summary")?;
    Ok(if identical {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// One pass over every collection, each line printed as it ends.
fn one_pass(
    source: &Source,
    target: &Target,
    tables: &[SyncedTable],
    kept: &KeptStates,
    settings: &PassSettings<'_>,
    ui: &Ui,
    pass: u32,
) -> anyhow::Result<Vec<PassReport>> {
    let mut reports = Vec::new();
    for one in tables {
        let name = &one.table.schema.name;
        let task = ui.task(&format!("{name} #{pass}"), None);
        let synced = Synced {
            table: &one.table,
            writer: &one.writer,
            versions: &one.versions,
            kept,
        };
        let report = run_pass(source, target, &synced, settings, ui, &task);
        match &report {
            Ok(r) => task.finish(if r.identical() { "ok" } else { "CHANGED" }),
            Err(_) => task.finish("FAILED"),
        }
        let report = report.with_context(|| format!("sync pass {pass} of collection {name:?}"))?;
        println!("{}", report.line(pass));
        reports.push(report);
    }
    Ok(reports)
}

/// Sleeps until the next multiple of `every` since `started`.
fn wait_for_slot(started: Instant, every: Duration) {
    let elapsed = started.elapsed();
    let slots = elapsed.as_nanos() / every.as_nanos() + 1;
    let next = every * u32::try_from(slots).unwrap_or(u32::MAX);
    std::thread::sleep(next.saturating_sub(elapsed));
}

fn record(ui: &Ui, reports: &[PassReport]) -> anyhow::Result<()> {
    ui.record("passes", serde_json::to_value(reports)?);
    Ok(())
}
