//! `qdrant2pg status`: where the shared run of a target schema stands, from any host — units
//! done, claimed, left and failed, rows and rows/s, workers seen and alive, per table. It reads
//! the run's tables and PostgreSQL's lock table (`run`), and changes nothing.

use std::fmt::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;

use crate::config::postgres::{PostgresArgs, Target, TargetFile};
use crate::config::read_or_default;
use crate::postgres::ident::quote_ident;
use crate::progress::{OutputArgs, Ui};
use crate::run::plan::describe_settings;
use crate::run::status::Status;
use crate::run::store::SharedRun;

/// `qdrant2pg status` flags.
#[derive(Debug, clap::Args)]
pub struct StatusArgs {
    /// The guide's csv2adbpg.yaml (its `database:` section), used unchanged.
    #[arg(long, short = 'c', value_name = "FILE")]
    pub config: Option<PathBuf>,
    #[command(flatten)]
    pub postgres: PostgresArgs,
}

pub fn run(args: StatusArgs, output: &OutputArgs) -> anyhow::Result<ExitCode> {
    let ui = Ui::new(output);
    let file: TargetFile = read_or_default(args.config.as_deref(), &|w| ui.warn(w))?;
    let target = Target::resolve(&args.postgres, &file.database, &|k| std::env::var(k).ok())?;
    let mut client = target.connect()?;
    let status = SharedRun::new(&target.schema).status(&mut client)?;
    match &status {
        Some(status) => print!("{}", render(status)),
        None => println!(
            "no shared run in schema {} (migrate and import start one)",
            quote_ident(&target.schema)
        ),
    }
    if let Some(path) = &output.report_json {
        let json = serde_json::to_vec_pretty(&status).context("writing the report")?;
        std::fs::write(path, json).with_context(|| format!("cannot write {}", path.display()))?;
    }
    Ok(ExitCode::SUCCESS)
}

/// The status as text: one block for the run, one line per table, the failures.
fn render(s: &Status) -> String {
    let state = if s.finished.is_some() {
        "finished"
    } else if s.units.failed > 0 && s.units.claimed + s.units.left == 0 {
        "failed"
    } else if s.workers_alive > 0 {
        "in progress"
    } else {
        "stalled: no worker alive (run the command again on any host to finish it)"
    };
    let mut out = String::new();
    let _ = writeln!(
        out,
        "run in schema {}: {} (generation {}), {state}",
        quote_ident(&s.schema),
        describe_settings(&s.settings),
        s.generation
    );
    let settings: Vec<String> = s
        .settings
        .iter()
        .filter(|(k, _)| k.as_str() != "command" && k.as_str() != "--collection")
        .map(|(k, v)| format!("{k} {v}"))
        .collect();
    let _ = writeln!(out, "  settings: {}", settings.join(", "));
    match &s.finished {
        Some(at) => {
            let _ = writeln!(
                out,
                "  started {}, finished {at} ({:.1} s)",
                s.started, s.seconds
            );
        }
        None => {
            let _ = writeln!(out, "  started {} ({:.1} s ago)", s.started, s.seconds);
        }
    }
    let u = &s.units;
    let _ = writeln!(
        out,
        "  units: {} done, {} claimed, {} left, {} failed (of {})",
        u.done,
        u.claimed,
        u.left,
        u.failed,
        u.total()
    );
    let _ = writeln!(out, "  rows: {} ({:.0} rows/s)", s.rows, s.rows_per_second);
    let _ = writeln!(
        out,
        "  workers: {} seen, {} alive",
        s.workers_seen, s.workers_alive
    );
    let width = s
        .tables
        .iter()
        .map(|t| t.table.chars().count())
        .max()
        .unwrap_or(0)
        .max(5);
    let _ = writeln!(
        out,
        "  {:<width$}  {:>6}  {:>7}  {:>6}  {:>6}  {:>12}",
        "table", "done", "claimed", "left", "failed", "rows"
    );
    for t in &s.tables {
        let _ = writeln!(
            out,
            "  {:<width$}  {:>6}  {:>7}  {:>6}  {:>6}  {:>12}",
            t.table, t.units.done, t.units.claimed, t.units.left, t.units.failed, t.rows
        );
    }
    for f in &s.failures {
        let _ = writeln!(
            out,
            "  failed: {} {} (worker {}): {}",
            f.table, f.source, f.worker, f.note
        );
    }
    out
}
