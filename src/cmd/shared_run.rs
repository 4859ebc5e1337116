//! What `migrate` and `import` say about the shared run they join (`run`): how this
//! process came in, that a finished run has nothing left to do, and how the run ended.

use std::process::ExitCode;

use anyhow::{Context, anyhow, bail};

use crate::progress::{OutputArgs, Ui};
use crate::run::member::Member;
use crate::run::plan::{Joining, Summary};
use crate::run::status::Outcome;

/// One line on how this process joined.
pub fn announce(ui: &Ui, member: &Member, how: &Joining) {
    let worker = member.worker;
    match how {
        // Planning is every run's first step; it only tells a user something when other
        // processes join the run, and they say so themselves.
        Joining::Planned { replaced: None } => {
            ui.sharing(false, &format!("worker {worker}: planned the run"));
        }
        Joining::Planned {
            replaced: Some(old),
        } => ui.info(&format!(
            "worker {worker}: planned a new run; the previous one ({old}) had finished or had \
             no live worker, and what it loaded stays in the ledger"
        )),
        Joining::Found { retried } => {
            ui.info(&format!("worker {worker}: joined the run"));
            if *retried > 0 {
                ui.info(&format!(
                    "worker {worker}: reopened {retried} failed unit(s), as no worker of the \
                     run was left"
                ));
            }
        }
    }
}

/// The command's whole answer when its run had already finished.
pub fn finished_run(
    command: &str,
    summary: &Summary,
    ui: &Ui,
    output: &OutputArgs,
) -> anyhow::Result<ExitCode> {
    println!(
        "qdrant2pg {command}: the run ({}) finished at {}: {} units, {} rows; nothing left to \
         do (pass --run NAME to run it again)",
        summary.command, summary.finished, summary.units, summary.rows
    );
    ui.finish_quietly(command, output)
        .context("writing the report")?;
    Ok(ExitCode::SUCCESS)
}

/// The tables with a failed unit in the run that this process has not `named` as failed
/// (another process failed them), each with why: the first such unit, its worker and its note.
pub fn failed_elsewhere(
    member: &Member,
    named: impl Fn(&str) -> bool,
) -> anyhow::Result<Vec<(String, anyhow::Error)>> {
    let mut elsewhere: Vec<(String, anyhow::Error)> = Vec::new();
    for unit in member.failed_units()? {
        if named(&unit.table) || elsewhere.iter().any(|(t, _)| *t == unit.table) {
            continue;
        }
        let why = anyhow!(
            "{} failed on worker {}: {}",
            unit.source,
            unit.worker,
            unit.note
        );
        elsewhere.push((unit.table, why));
    }
    Ok(elsewhere)
}

/// `Ok` when every unit of the run is done; else an error naming the failed units.
pub fn outcome_result(member: &Member) -> anyhow::Result<()> {
    match member.outcome()? {
        Outcome::Complete => Ok(()),
        Outcome::Failed { units, count } => {
            let mut lines = vec![format!("{count} unit(s) of the run failed:")];
            for unit in &units {
                lines.push(format!(
                    "  {} {} (worker {}): {}",
                    unit.table, unit.source, unit.worker, unit.note
                ));
            }
            if count > units.len() as i64 {
                lines.push(format!("  … and {} more", count - units.len() as i64));
            }
            lines.push(
                "Once the cause is fixed, the same command retries them (when no worker of the \
                 run is left)."
                    .to_owned(),
            );
            bail!("{}", lines.join("\n"))
        }
        Outcome::Unfinished { open } => bail!(
            "{open} unit(s) of the run are still open; running the command again (on any host) \
             finishes them"
        ),
    }
}
