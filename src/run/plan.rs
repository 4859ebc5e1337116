//! Planning and joining a run: under the plan lock, exactly one process of any number started
//! at once writes the plan (or finds it, or refuses other settings), and enrolls as a worker.

use std::collections::BTreeSet;
use std::sync::Mutex;

use postgres::{Client, GenericClient, Transaction};
use serde::Serialize;
use serde_json::Value;

use crate::config::postgres::Target;
use crate::postgres::ddl::Dialect;
use crate::postgres::ident::quote_ident;
use crate::run::member::{Connection, Member};
use crate::run::status::count_units;
use crate::run::store::{
    FAILED, RunError, RunRow, Settings, SharedRun, TODO, UnitRow, worker_name,
};

/// Unit rows per INSERT when a plan is written: 6 parameters each, far below the protocol's
/// 65535, so even tens of thousands of units take a few round trips.
const UNITS_PER_INSERT: usize = 1000;

/// A unit as the plan writes it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewUnit {
    pub table: String,
    /// `qdrant` (migrate) or a file name relative to the collection (import).
    pub source: String,
    pub lo: String,
    pub hi: String,
}

/// What a command's planner hands over: its per-table plan (JSON, as the command reads it
/// back), and the units.
#[derive(Debug)]
pub struct NewPlan {
    pub plan: String,
    pub units: Vec<NewUnit>,
}

/// How joining went.
pub enum Joined {
    /// This process is a member of the run: it wrote the plan or found it.
    Member {
        member: Box<Member>,
        /// The command's per-table plan, as it wrote it.
        plan: String,
        how: Joining,
    },
    /// The run with these settings is finished: nothing to do.
    Finished(Summary),
}

/// How a member came in.
#[derive(Debug)]
pub enum Joining {
    /// It wrote the plan; `replaced` describes the run it replaced, if any.
    Planned { replaced: Option<String> },
    /// It found the plan; `retried` failed units were reopened (no worker was left).
    Found { retried: u64 },
}

/// A finished run, in brief.
#[derive(Clone, Debug, Serialize)]
pub struct Summary {
    pub command: String,
    pub units: i64,
    pub rows: i64,
    pub started: String,
    pub finished: String,
}

impl SharedRun {
    /// Joins the run these `settings` describe on `client`, which becomes the member's
    /// coordination connection: waits for the plan lock, then finds the run, or calls `plan`
    /// (inside the locked transaction, the schema created) to write a new one. `attempts`
    /// bounds the member's reconnections later on.
    pub fn join<E: From<RunError>>(
        self,
        target: &Target,
        mut client: Client,
        settings: &Settings,
        attempts: u32,
        dialect: Dialect,
        plan: impl FnOnce(&mut Transaction<'_>) -> Result<NewPlan, E>,
    ) -> Result<Joined, E> {
        let name = worker_name();
        let mut tx = client
            .transaction()
            .map_err(self.db("starting the plan transaction"))?;
        tx.execute("SELECT pg_advisory_xact_lock($1, 0)", &[&self.unit_class])
            .map_err(self.db("waiting for the plan lock"))?;
        tx.batch_execute(&self.ensure_sql(dialect))
            .map_err(self.db("creating the run tables"))?;
        let current = self.read_run(&mut tx)?;
        let mut replaced = None;
        if let Some(run) = &current {
            let rows = self.unit_rows(&mut tx, None)?;
            let counts = count_units(&rows, &BTreeSet::new());
            let alive = self.alive_workers(&mut tx, run.generation)?;
            let tables_gone = counts.left == 0 && self.tables_gone(&mut tx, &rows)?;
            if &run.settings == settings && !tables_gone {
                if counts.left == 0 && counts.failed == 0 {
                    self.mark_finished(&mut tx, run.generation)?;
                    let summary = self.summary(&mut tx, run, &rows)?;
                    tx.commit().map_err(self.db("reading the finished run"))?;
                    return Ok(Joined::Finished(summary));
                }
                let retried = if counts.failed > 0 && alive == 0 {
                    self.reopen_failed(&mut tx)?
                } else {
                    0
                };
                let worker = self.enroll(tx, run.generation, &name)?;
                return Ok(Joined::Member {
                    plan: run.plan.clone(),
                    member: self.member(client, worker, target, attempts),
                    how: Joining::Found { retried },
                });
            }
            if alive > 0 && counts.left > 0 {
                return Err(RunError::Refused(self.refusal(run, settings, alive)).into());
            }
            replaced = Some(if tables_gone {
                format!(
                    "{}, whose tables were dropped since",
                    describe_settings(&run.settings)
                )
            } else {
                describe_settings(&run.settings)
            });
        }
        let new = plan(&mut tx)?;
        let generation = current.as_ref().map_or(1, |r| r.generation + 1);
        let first_unit = current.as_ref().map_or(1, |r| r.next_unit);
        self.write_plan(&mut tx, generation, first_unit, settings, &new, &name)?;
        let worker = self.enroll(tx, generation, &name)?;
        Ok(Joined::Member {
            member: self.member(client, worker, target, attempts),
            plan: new.plan,
            how: Joining::Planned { replaced },
        })
    }

    pub(super) fn member(
        self,
        client: Client,
        worker: i32,
        target: &Target,
        attempts: u32,
    ) -> Box<Member> {
        Box::new(Member {
            run: self,
            target: target.clone(),
            worker,
            name: worker_name(),
            attempts,
            conn: Mutex::new(Connection {
                client: Some(client),
                held: BTreeSet::new(),
            }),
            waiter: Mutex::new(None),
        })
    }

    pub(super) fn ensure_sql(&self, dialect: Dialect) -> String {
        let distributed = |key: &str| {
            if dialect == Dialect::Adbpg {
                format!(" DISTRIBUTED BY ({key})")
            } else {
                String::new()
            }
        };
        format!(
            "CREATE SCHEMA IF NOT EXISTS {schema};\n\
             CREATE TABLE IF NOT EXISTS {run} (\n    run integer PRIMARY KEY,\n    \
             generation integer NOT NULL,\n    command text NOT NULL,\n    \
             settings text NOT NULL,\n    plan text NOT NULL,\n    \
             next_unit integer NOT NULL,\n    planned_by text NOT NULL,\n    \
             started_at timestamptz NOT NULL DEFAULT now(),\n    finished_at timestamptz\n){d_run};\n\
             CREATE TABLE IF NOT EXISTS {units} (\n    unit integer PRIMARY KEY,\n    \
             table_name text NOT NULL,\n    source text NOT NULL,\n    lo text NOT NULL,\n    \
             hi text NOT NULL,\n    done_to text NOT NULL,\n    \
             rows bigint NOT NULL DEFAULT 0,\n    claims integer NOT NULL DEFAULT 0,\n    \
             state text NOT NULL DEFAULT '{TODO}',\n    worker text,\n    \
             claimed_at timestamptz,\n    finished_at timestamptz,\n    note text\n){d_unit};\n\
             CREATE TABLE IF NOT EXISTS {workers} (\n    worker integer PRIMARY KEY,\n    \
             generation integer NOT NULL,\n    name text NOT NULL,\n    \
             joined_at timestamptz NOT NULL DEFAULT now()\n){d_worker};",
            schema = quote_ident(&self.schema),
            run = self.run,
            units = self.units,
            workers = self.workers,
            d_run = distributed("run"),
            d_unit = distributed("unit"),
            d_worker = distributed("worker"),
        )
    }

    pub(super) fn summary(
        &self,
        client: &mut impl GenericClient,
        run: &RunRow,
        rows: &[UnitRow],
    ) -> Result<Summary, RunError> {
        let finished = match &run.finished {
            Some(at) => at.clone(),
            None => self
                .read_run(client)?
                .and_then(|r| r.finished)
                .unwrap_or_default(),
        };
        Ok(Summary {
            command: describe_settings(&run.settings),
            units: rows.len() as i64,
            rows: rows.iter().map(|r| r.rows).sum(),
            started: run.started.clone(),
            finished,
        })
    }

    /// Whether a table the units load no longer exists: a finished run whose tables were
    /// dropped by hand describes nothing any more, and the same command plans it anew.
    pub(super) fn tables_gone(
        &self,
        client: &mut impl GenericClient,
        rows: &[UnitRow],
    ) -> Result<bool, RunError> {
        let tables: BTreeSet<&str> = rows.iter().map(|r| r.table.as_str()).collect();
        for table in tables {
            let exists = client
                .query_opt(
                    "SELECT 1 FROM information_schema.tables WHERE table_schema = $1 AND \
                     table_name = $2",
                    &[&self.schema, &table],
                )
                .map_err(self.db("looking for the run's tables"))?
                .is_some();
            if !exists {
                return Ok(true);
            }
        }
        Ok(false)
    }

    pub(super) fn reopen_failed(&self, client: &mut impl GenericClient) -> Result<u64, RunError> {
        let sql = format!(
            "UPDATE {} SET state = '{TODO}', note = NULL, finished_at = NULL \
             WHERE state = '{FAILED}'",
            self.units
        );
        client
            .execute(&sql, &[])
            .map_err(self.db("reopening failed units"))
    }

    /// Why a command with `settings` may not join `run`.
    pub(super) fn refusal(&self, run: &RunRow, settings: &Settings, alive: i64) -> String {
        let mut lines = vec![format!(
            "schema {} has a shared run in progress with other settings ({} started {}, {alive} \
             worker(s) alive); refusing to mix them:",
            quote_ident(&self.schema),
            describe_settings(&run.settings),
            run.started
        )];
        let keys: BTreeSet<&String> = run.settings.keys().chain(settings.keys()).collect();
        for key in keys {
            let (theirs, ours) = (run.settings.get(key), settings.get(key));
            if theirs != ours {
                let show =
                    |v: Option<&Value>| v.map_or_else(|| "nothing".to_owned(), Value::to_string);
                lines.push(format!(
                    "  {key}: the run has {}, this command {}",
                    show(theirs),
                    show(ours)
                ));
            }
        }
        lines.push(format!(
            "Start this command with the run's settings to help it, wait until it has finished \
             (`qdrant2pg status --schema {}`), or use another --schema.",
            self.schema
        ));
        lines.join("\n")
    }

    pub(super) fn write_plan(
        &self,
        tx: &mut Transaction<'_>,
        generation: i32,
        first_unit: i32,
        settings: &Settings,
        new: &NewPlan,
        name: &str,
    ) -> Result<(), RunError> {
        let too_many = || {
            self.corrupt(format!(
                "{} units are more than a run can hold",
                new.units.len()
            ))
        };
        let next_unit = i32::try_from(new.units.len())
            .ok()
            .and_then(|n| first_unit.checked_add(n))
            .ok_or_else(too_many)?;
        let command = settings
            .get("command")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned();
        let settings_text = serde_json::to_string(settings)
            .map_err(|e| self.corrupt(format!("the settings cannot be written: {e}")))?;
        tx.batch_execute(&format!(
            "DELETE FROM {}; DELETE FROM {}",
            self.run, self.units
        ))
        .map_err(self.db("clearing the previous run"))?;
        let sql = format!(
            "INSERT INTO {} (run, generation, command, settings, plan, next_unit, planned_by) \
             VALUES (1, $1, $2, $3, $4, $5, $6)",
            self.run
        );
        tx.execute(
            &sql,
            &[
                &generation,
                &command,
                &settings_text,
                &new.plan,
                &next_unit,
                &name,
            ],
        )
        .map_err(self.db("writing the run"))?;
        for (chunk_no, chunk) in new.units.chunks(UNITS_PER_INSERT).enumerate() {
            let mut sql = format!(
                "INSERT INTO {} (unit, table_name, source, lo, hi, done_to) VALUES ",
                self.units
            );
            let mut ids = Vec::with_capacity(chunk.len());
            for (i, _) in chunk.iter().enumerate() {
                let base = i * 5;
                if i > 0 {
                    sql.push_str(", ");
                }
                sql.push_str(&format!(
                    "(${}, ${}, ${}, ${}, ${}, ${})",
                    base + 1,
                    base + 2,
                    base + 3,
                    base + 4,
                    base + 5,
                    base + 4
                ));
                ids.push(first_unit + (chunk_no * UNITS_PER_INSERT + i) as i32);
            }
            let mut params: Vec<&(dyn postgres::types::ToSql + Sync)> = Vec::new();
            for (unit, id) in chunk.iter().zip(&ids) {
                params.extend([
                    id as &(dyn postgres::types::ToSql + Sync),
                    &unit.table,
                    &unit.source,
                    &unit.lo,
                    &unit.hi,
                ]);
            }
            tx.execute(&sql, &params)
                .map_err(self.db("writing the units"))?;
        }
        let clear = format!("DELETE FROM {} WHERE generation < $1", self.workers);
        tx.execute(&clear, &[&generation])
            .map_err(self.db("clearing the previous run's workers"))?;
        Ok(())
    }

    /// Registers this process as a worker of `generation`, takes its liveness lock (a session
    /// lock: it outlives the transaction) and commits.
    pub(super) fn enroll(
        &self,
        mut tx: Transaction<'_>,
        generation: i32,
        name: &str,
    ) -> Result<i32, RunError> {
        // Two statements, not INSERT … SELECT max(): the plan lock already serialises them,
        // and on Greenplum that form needs a gang on the coordinator itself.
        let next = format!("SELECT coalesce(max(worker), 0) + 1 FROM {}", self.workers);
        let worker: i32 = tx
            .query_one(&next, &[])
            .map_err(self.db("numbering this worker"))?
            .get(0);
        let insert = format!(
            "INSERT INTO {} (worker, generation, name) VALUES ($1, $2, $3)",
            self.workers
        );
        tx.execute(&insert, &[&worker, &generation, &name])
            .map_err(self.db("registering this worker"))?;
        self.take_liveness(&mut tx, worker)?;
        tx.commit().map_err(self.db("committing the plan"))?;
        Ok(worker)
    }
}

/// `migrate of a, b (--dialect postgres, …)`, for messages.
pub fn describe_settings(settings: &Settings) -> String {
    let command = settings
        .get("command")
        .and_then(Value::as_str)
        .unwrap_or("a run");
    let tables = settings
        .get("--collection")
        .and_then(Value::as_array)
        .map(|names| {
            names
                .iter()
                .map(|n| n.as_str().unwrap_or_default().to_owned())
                .collect::<Vec<_>>()
                .join(", ")
        })
        .unwrap_or_default();
    format!("{command} of {tables}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::run::store::RunRow;

    #[test]
    pub(super) fn a_refusal_names_every_differing_setting() {
        let run = SharedRun::new("public");
        let settings = |dialect: &str, names: &[&str]| -> Settings {
            [
                ("command".to_owned(), Value::from("migrate")),
                ("--dialect".to_owned(), Value::from(dialect)),
                ("--collection".to_owned(), Value::from(names.to_vec())),
            ]
            .into()
        };
        let row = RunRow {
            generation: 1,
            settings: settings("postgres", &["a", "b"]),
            plan: String::new(),
            next_unit: 1,
            started: "2026-12-01 12:00:00+00".into(),
            finished: None,
            command: "migrate".into(),
        };
        let text = run.refusal(&row, &settings("pgvector", &["a"]), 2);
        assert!(text.contains("migrate of a, b"), "{text}");
        assert!(
            text.contains("--dialect: the run has \"postgres\", this command \"pgvector\""),
            "{text}"
        );
        assert!(
            text.contains("--collection: the run has [\"a\",\"b\"], this command [\"a\"]"),
            "{text}"
        );
        assert!(!text.contains("command:"), "{text}");
    }
}
