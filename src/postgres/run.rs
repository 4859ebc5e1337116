//! The shared run: one `migrate` or `import` divided among any number of processes, on any
//! number of hosts, with the target database as the only coordinator.
//!
//! Three tables beside the ledger, in the target schema:
//! - `qdrant2pg_run` — one row: the command and its settings, the plan (per table, as the
//!   command describes it), its generation (each new plan is the next one), when it started
//!   and finished;
//! - `qdrant2pg_units` — the units of work: an id range `[lo, hi)` of a collection (migrate) or
//!   a file (import); how far each got (`done_to`), its rows, how often it was claimed, and
//!   whether it is open (`todo`), `done` or `failed`;
//! - `qdrant2pg_workers` — every process that joined the generation.
//!
//! **Planning.** Every process starts with a transaction-scoped advisory lock on the schema's
//! run, so of any number of identical commands started at once exactly one finds no plan and
//! writes it — tables readied as `--if-exists` says, units inserted — in that one transaction;
//! the others wait on the lock, then read the plan. A run with other [`Settings`] (another
//! collection set, dialect, export…) is refused while a worker of it lives; once it is
//! finished, or no worker of it lives, a new plan replaces it. A finished run with the same
//! settings is not repeated: the process says so and exits (`--run NAME` starts another; a run
//! whose tables were dropped since is planned anew).
//!
//! **Claiming.** A worker claims a unit with a session-level advisory lock on `(class, unit)`,
//! held on its coordination connection for as long as it works on the unit, and bumps the
//! unit's `claims`: the new count is its token ([`Lease`]). A worker that dies — kill -9, host
//! lost — loses its connection and with it its locks, so its units are claimable again, and the
//! next claim changes their tokens. Each worker also holds a lock on its own number, which is
//! how any process tells live workers from gone ones. A worker with nothing to claim waits on a
//! held unit's lock ([`Member::wait_for`]), which PostgreSQL grants the moment its holder lets
//! go — finished, or dead.
//!
//! **Fencing.** The ledger, committed with each COPY, stays the only truth of what the tables
//! hold; the units only divide the work. Every COPY transaction locks its unit's row and checks
//! the token before it commits ([`SharedRun::lock_unit`], [`SharedRun::count_batch`]), so a
//! worker that lost a unit (its connection dropped and another worker claimed the unit) can
//! never commit into it again, whatever it still has in flight. The rules for what a page may
//! commit are migrate's (`postgres::units`); import's are per file (`cmd::import`).
//!
//! **Splitting.** A worker that finds nothing to claim cuts an open unit ([`Member::split`]):
//! under the unit's row lock its `hi` moves down to a point the caller chose above `done_to`,
//! and a new unit takes `[mid, old hi)`.
//!
//! Everything here is SQL that PostgreSQL 9.4 and Greenplum 6 run too: advisory locks,
//! `SELECT … FOR UPDATE`, `UPDATE … RETURNING`; no `SKIP LOCKED`, no `ON CONFLICT`, no query
//! that joins `pg_locks` with a distributed table.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use postgres::error::SqlState;
use postgres::{Client, GenericClient, Transaction};
use serde::Serialize;
use serde_json::Value;
use xxhash_rust::xxh3::xxh3_64;

use crate::config::postgres::{ConnectError, Target};
use crate::postgres::ddl::Dialect;
use crate::postgres::ident::{qualified, quote_ident};
use crate::postgres::ledger::{Ledger, LedgerEntry};
use crate::sink::copy::{Backoff, is_transient};

pub const RUN_TABLE: &str = "qdrant2pg_run";
pub const UNITS_TABLE: &str = "qdrant2pg_units";
pub const WORKERS_TABLE: &str = "qdrant2pg_workers";

/// Unit rows per INSERT when a plan is written: 6 parameters each, far below the protocol's
/// 65535, so even tens of thousands of units take a few round trips.
const UNITS_PER_INSERT: usize = 1000;
/// Open units looked at per claim: enough that a few workers claiming at once rarely all try
/// the same ones, few enough that a claim stays one small query.
const CLAIM_CANDIDATES: i64 = 8;
/// Failed units named in an outcome; the rest are counted.
const FAILURES_LISTED: i64 = 20;

const TODO: &str = "todo";
const DONE: &str = "done";
const FAILED: &str = "failed";

/// What makes a run what it is, keyed by the flag that sets each value (`--dialect` →
/// `"pgvector"`), plus `command`. Identical commands have equal settings; tuning flags
/// (connections, page and batch sizes) are not settings, so each host may pick its own.
pub type Settings = BTreeMap<String, Value>;

/// Flags every command that joins a shared run takes.
#[derive(Clone, Debug, Default, clap::Args)]
pub struct RunArgs {
    /// Names the run. Identical commands with the same name share one run, on any number of
    /// hosts; once it has finished, running it again does nothing unless the name changes.
    #[arg(long = "run", value_name = "NAME", default_value = "")]
    pub name: String,
}

/// A flag's value as a setting: its name on the command line.
pub fn setting<V: clap::ValueEnum>(value: &V) -> Value {
    value
        .to_possible_value()
        .map_or(Value::Null, |v| Value::from(v.get_name()))
}

/// A unit held by this process: its number, and the claim count that proves it is still ours
/// (another worker's claim changes it).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Lease {
    pub unit: i32,
    pub token: i32,
}

/// The shared run failed.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("shared run in schema {schema}: {what}")]
    Db {
        schema: String,
        what: &'static str,
        #[source]
        source: postgres::Error,
    },
    #[error(transparent)]
    Connect(#[from] ConnectError),
    #[error("{0}")]
    Refused(String),
    #[error("shared run in schema {schema}: {detail}")]
    Corrupt { schema: String, detail: String },
}

impl RunError {
    /// Whether a fresh connection may succeed.
    fn is_transient(&self) -> bool {
        match self {
            RunError::Db { source, .. }
            | RunError::Connect(ConnectError::Connect { source, .. }) => is_transient(source),
            _ => false,
        }
    }
}

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

/// A unit's row.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UnitRow {
    pub unit: i32,
    pub table: String,
    pub source: String,
    pub lo: String,
    pub hi: String,
    pub done_to: String,
    pub rows: i64,
    pub claims: i32,
    pub state: String,
}

impl UnitRow {
    pub fn is_open(&self) -> bool {
        self.state == TODO
    }

    pub fn is_done(&self) -> bool {
        self.state == DONE
    }

    pub fn is_failed(&self) -> bool {
        self.state == FAILED
    }
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

/// A failed unit, for the message that ends a run.
#[derive(Clone, Debug, Serialize)]
pub struct FailedUnit {
    pub table: String,
    pub source: String,
    pub note: String,
    pub worker: String,
}

/// Where a run stands once a worker has nothing left to claim.
#[derive(Debug)]
pub enum Outcome {
    /// Every unit is done.
    Complete,
    /// Units failed (the first [`FAILURES_LISTED`] named; `count` in all).
    Failed { units: Vec<FailedUnit>, count: i64 },
    /// Units are still open (this process stopped early).
    Unfinished { open: i64 },
}

/// The run's progress, as `qdrant2pg status` shows it.
#[derive(Clone, Debug, Serialize)]
pub struct Status {
    pub schema: String,
    pub command: String,
    pub settings: Settings,
    pub generation: i32,
    pub started: String,
    pub finished: Option<String>,
    pub seconds: f64,
    pub units: UnitCounts,
    pub rows: i64,
    pub rows_per_second: f64,
    pub workers_seen: i64,
    pub workers_alive: i64,
    pub tables: Vec<TableStatus>,
    pub failures: Vec<FailedUnit>,
}

/// Units by state; `claimed` are open units a live worker holds, `left` the open rest.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct UnitCounts {
    pub done: i64,
    pub claimed: i64,
    pub left: i64,
    pub failed: i64,
}

impl UnitCounts {
    pub fn total(&self) -> i64 {
        self.done + self.claimed + self.left + self.failed
    }

    fn add(&mut self, row: &UnitRow, locked: &BTreeSet<i32>) {
        match row.state.as_str() {
            DONE => self.done += 1,
            FAILED => self.failed += 1,
            _ if locked.contains(&row.unit) => self.claimed += 1,
            _ => self.left += 1,
        }
    }
}

/// One table's share of the run.
#[derive(Clone, Debug, Serialize)]
pub struct TableStatus {
    pub table: String,
    pub units: UnitCounts,
    pub rows: i64,
}

/// The run of one target schema: its tables and its advisory lock keys.
#[derive(Clone, Debug)]
pub struct SharedRun {
    schema: String,
    run: String,
    units: String,
    workers: String,
    /// First advisory-lock key of the units (and, with unit 0, of the plan); the workers'
    /// liveness locks use `unit_class + 1`. From the schema's name, so runs of different schemas
    /// never contend; positive, as `pg_locks` shows it as an unsigned `oid`.
    unit_class: i32,
}

impl SharedRun {
    pub fn new(schema: &str) -> SharedRun {
        let unit_class = ((xxh3_64(schema.as_bytes()) as u32 & 0x3fff_ffff) << 1) as i32;
        SharedRun {
            schema: schema.to_owned(),
            run: qualified(Some(schema), RUN_TABLE),
            units: qualified(Some(schema), UNITS_TABLE),
            workers: qualified(Some(schema), WORKERS_TABLE),
            unit_class,
        }
    }

    fn worker_class(&self) -> i32 {
        self.unit_class + 1
    }

    fn db(&self, what: &'static str) -> impl FnOnce(postgres::Error) -> RunError + '_ {
        move |source| RunError::Db {
            schema: self.schema.clone(),
            what,
            source,
        }
    }

    fn corrupt(&self, detail: String) -> RunError {
        RunError::Corrupt {
            schema: self.schema.clone(),
            detail,
        }
    }

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

    fn member(self, client: Client, worker: i32, target: &Target, attempts: u32) -> Box<Member> {
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

    fn ensure_sql(&self, dialect: Dialect) -> String {
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

    fn read_run(&self, client: &mut impl GenericClient) -> Result<Option<RunRow>, RunError> {
        let sql = format!(
            "SELECT generation, settings, plan, next_unit, started_at::text, \
             finished_at::text, command FROM {} WHERE run = 1",
            self.run
        );
        let Some(row) = client
            .query_opt(&sql, &[])
            .map_err(self.db("reading the run"))?
        else {
            return Ok(None);
        };
        let parse = |text: String, what: &str| {
            serde_json::from_str(&text)
                .map_err(|e| self.corrupt(format!("the run's {what} are not readable: {e}")))
        };
        Ok(Some(RunRow {
            generation: row.get(0),
            settings: parse(row.get(1), "settings")?,
            plan: row.get(2),
            next_unit: row.get(3),
            started: row.get(4),
            finished: row.get(5),
            command: row.get(6),
        }))
    }

    /// Every unit (in `state`, when given), in unit order.
    fn unit_rows(
        &self,
        client: &mut impl GenericClient,
        state: Option<&str>,
    ) -> Result<Vec<UnitRow>, RunError> {
        let filter = if state.is_some() {
            "WHERE state = $1"
        } else {
            "WHERE $1::text IS NULL"
        };
        let sql = format!(
            "SELECT unit, table_name, source, lo, hi, done_to, rows, claims, state FROM {} \
             {filter} ORDER BY unit",
            self.units
        );
        let rows = client
            .query(&sql, &[&state])
            .map_err(self.db("reading the units"))?;
        Ok(rows.iter().map(unit_row).collect())
    }

    /// Units a live worker holds: the second keys of the advisory locks of `class` in this
    /// database. Read on its own, not joined with the units: Greenplum keeps locks on the
    /// coordinator and the units on segments.
    fn locked(
        &self,
        client: &mut impl GenericClient,
        class: i32,
    ) -> Result<BTreeSet<i32>, RunError> {
        let rows = client
            .query(
                "SELECT objid::int8 FROM pg_locks WHERE locktype = 'advisory' AND granted \
                 AND objsubid = 2 AND classid = $1::int8::oid AND database = \
                 (SELECT oid FROM pg_database WHERE datname = current_database())",
                &[&i64::from(class)],
            )
            .map_err(self.db("reading the advisory locks"))?;
        Ok(rows
            .iter()
            .filter_map(|r| i32::try_from(r.get::<_, i64>(0)).ok())
            .collect())
    }

    fn alive_workers(
        &self,
        client: &mut impl GenericClient,
        generation: i32,
    ) -> Result<i64, RunError> {
        let alive: Vec<i32> = self
            .locked(client, self.worker_class())?
            .into_iter()
            .collect();
        let sql = format!(
            "SELECT count(*) FROM {} WHERE generation = $1 AND worker = ANY($2)",
            self.workers
        );
        let row = client
            .query_one(&sql, &[&generation, &alive])
            .map_err(self.db("counting live workers"))?;
        Ok(row.get(0))
    }

    fn mark_finished(
        &self,
        client: &mut impl GenericClient,
        generation: i32,
    ) -> Result<(), RunError> {
        let sql = format!(
            "UPDATE {} SET finished_at = now() WHERE run = 1 AND generation = $1 AND \
             finished_at IS NULL",
            self.run
        );
        client
            .execute(&sql, &[&generation])
            .map_err(self.db("marking the run finished"))?;
        Ok(())
    }

    fn summary(
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
    fn tables_gone(
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

    fn reopen_failed(&self, client: &mut impl GenericClient) -> Result<u64, RunError> {
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
    fn refusal(&self, run: &RunRow, settings: &Settings, alive: i64) -> String {
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

    fn write_plan(
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
    fn enroll(
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

    fn take_liveness(&self, client: &mut impl GenericClient, worker: i32) -> Result<(), RunError> {
        let locked: bool = client
            .query_one(
                "SELECT pg_try_advisory_lock($1, $2)",
                &[&self.worker_class(), &worker],
            )
            .map_err(self.db("taking this worker's liveness lock"))?
            .get(0);
        if locked {
            Ok(())
        } else {
            Err(self.corrupt(format!(
                "worker number {worker} is locked by another session"
            )))
        }
    }

    /// Locks a unit's row inside a COPY transaction (until it commits) and returns it: the
    /// fence every commit into a unit passes. `None` when the unit is gone (a new plan).
    pub fn lock_unit(
        &self,
        tx: &mut Transaction<'_>,
        unit: i32,
    ) -> Result<Option<UnitRow>, postgres::Error> {
        let sql = format!(
            "SELECT unit, table_name, source, lo, hi, done_to, rows, claims, state FROM {} \
             WHERE unit = $1 FOR UPDATE",
            self.units
        );
        Ok(tx.query_opt(&sql, &[&unit])?.as_ref().map(unit_row))
    }

    /// Moves a unit (locked by [`lock_unit`](Self::lock_unit)) on to `done_to`, adding `rows`;
    /// `done` closes it.
    pub fn advance(
        &self,
        tx: &mut Transaction<'_>,
        unit: i32,
        done_to: &str,
        rows: u64,
        done: bool,
    ) -> Result<(), postgres::Error> {
        let state = if done { DONE } else { TODO };
        let sql = format!(
            "UPDATE {} SET done_to = $2, rows = rows + $3, state = $4, finished_at = \
             CASE WHEN $4 = '{DONE}' THEN now() END WHERE unit = $1",
            self.units
        );
        let rows = i64::try_from(rows).unwrap_or(i64::MAX);
        tx.execute(&sql, &[&unit, &done_to, &rows, &state])
            .map(drop)
    }

    /// Adds a batch's rows to its unit inside the batch's COPY transaction, if the unit is
    /// still open and `lease`'s: `false` means another worker holds it now, and the batch
    /// must not commit.
    pub fn count_batch(
        &self,
        tx: &mut Transaction<'_>,
        lease: Lease,
        rows: u64,
    ) -> Result<bool, postgres::Error> {
        let sql = format!(
            "UPDATE {} SET rows = rows + $3 WHERE unit = $1 AND claims = $2 AND state = '{TODO}'",
            self.units
        );
        let rows = i64::try_from(rows).unwrap_or(i64::MAX);
        Ok(tx.execute(&sql, &[&lease.unit, &lease.token, &rows])? == 1)
    }

    fn try_claim(
        &self,
        client: &mut Client,
        unit: i32,
        worker: &str,
    ) -> Result<Option<UnitRow>, postgres::Error> {
        let locked: bool = client
            .query_one(
                "SELECT pg_try_advisory_lock($1, $2)",
                &[&self.unit_class, &unit],
            )?
            .get(0);
        if !locked {
            return Ok(None);
        }
        let sql = format!(
            "UPDATE {} SET claims = claims + 1, worker = $2, claimed_at = now() \
             WHERE unit = $1 AND state = '{TODO}' \
             RETURNING unit, table_name, source, lo, hi, done_to, rows, claims, state",
            self.units
        );
        match client.query_opt(&sql, &[&unit, &worker])? {
            Some(row) => Ok(Some(unit_row(&row))),
            None => {
                client.execute(
                    "SELECT pg_advisory_unlock($1, $2)",
                    &[&self.unit_class, &unit],
                )?;
                Ok(None)
            }
        }
    }

    /// The run's progress, or `None` when the schema has no run.
    pub fn status(&self, client: &mut Client) -> Result<Option<Status>, RunError> {
        let exists = client
            .query_opt(
                "SELECT 1 FROM information_schema.tables WHERE table_schema = $1 AND \
                 table_name = $2",
                &[&self.schema, &RUN_TABLE],
            )
            .map_err(self.db("looking for the run table"))?
            .is_some();
        if !exists {
            return Ok(None);
        }
        let Some(run) = self.read_run(client)? else {
            return Ok(None);
        };
        let rows = self.unit_rows(client, None)?;
        let locked = self.locked(client, self.unit_class)?;
        let mut tables: BTreeMap<&str, TableStatus> = BTreeMap::new();
        for row in &rows {
            let table = tables.entry(&row.table).or_insert_with(|| TableStatus {
                table: row.table.clone(),
                units: UnitCounts::default(),
                rows: 0,
            });
            table.units.add(row, &locked);
            table.rows += row.rows;
        }
        let elapsed = format!(
            "SELECT extract(epoch FROM coalesce(finished_at, now()) - started_at)::float8 FROM {} \
             WHERE run = 1",
            self.run
        );
        let seconds: f64 = client
            .query_one(&elapsed, &[])
            .map_err(self.db("reading the run's time"))?
            .get(0);
        let seen_sql = format!(
            "SELECT count(*) FROM {} WHERE generation = $1",
            self.workers
        );
        let workers_seen: i64 = client
            .query_one(&seen_sql, &[&run.generation])
            .map_err(self.db("counting workers"))?
            .get(0);
        let workers_alive = self.alive_workers(client, run.generation)?;
        let total_rows: i64 = rows.iter().map(|r| r.rows).sum();
        Ok(Some(Status {
            schema: self.schema.clone(),
            command: run.command.clone(),
            settings: run.settings.clone(),
            generation: run.generation,
            started: run.started.clone(),
            finished: run.finished.clone(),
            seconds,
            units: count_units(&rows, &locked),
            rows: total_rows,
            rows_per_second: total_rows as f64 / seconds.max(1e-9),
            workers_seen,
            workers_alive,
            tables: tables.into_values().collect(),
            failures: self.failures(client)?.0,
        }))
    }

    fn failures(
        &self,
        client: &mut impl GenericClient,
    ) -> Result<(Vec<FailedUnit>, i64), RunError> {
        let sql = format!(
            "SELECT table_name, source, coalesce(note, ''), coalesce(worker, ''), \
             count(*) OVER () FROM {} WHERE state = '{FAILED}' ORDER BY unit LIMIT $1",
            self.units
        );
        let rows = client
            .query(&sql, &[&FAILURES_LISTED])
            .map_err(self.db("reading failed units"))?;
        let count = rows.first().map_or(0, |r| r.get(4));
        let units = rows
            .iter()
            .map(|r| FailedUnit {
                table: r.get(0),
                source: r.get(1),
                note: r.get(2),
                worker: r.get(3),
            })
            .collect();
        Ok((units, count))
    }
}

/// The run's row.
#[derive(Debug)]
struct RunRow {
    generation: i32,
    settings: Settings,
    plan: String,
    next_unit: i32,
    started: String,
    finished: Option<String>,
    command: String,
}

fn unit_row(row: &postgres::Row) -> UnitRow {
    UnitRow {
        unit: row.get(0),
        table: row.get(1),
        source: row.get(2),
        lo: row.get(3),
        hi: row.get(4),
        done_to: row.get(5),
        rows: row.get(6),
        claims: row.get(7),
        state: row.get(8),
    }
}

fn count_units(rows: &[UnitRow], locked: &BTreeSet<i32>) -> UnitCounts {
    let mut counts = UnitCounts::default();
    for row in rows {
        counts.add(row, locked);
    }
    counts
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

/// `host:pid`, as `status` and the units show who claimed what.
fn worker_name() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| "?".to_owned());
    format!("{host}:{}", std::process::id())
}

/// This process's seat in a run: its coordination connection, which holds its liveness lock
/// and the locks of the units it claimed. Shared by its threads; a lost connection is opened
/// again (with backoff, as loading connections are) and takes back the locks nobody else took
/// meanwhile — those somebody did take are no longer ours, which their fences will say.
pub struct Member {
    run: SharedRun,
    target: Target,
    pub worker: i32,
    name: String,
    attempts: u32,
    conn: Mutex<Connection>,
    /// A second session, for [`wait_for`](Member::wait_for): a wait there holds up no claim
    /// or release on the first.
    waiter: Mutex<Option<Client>>,
}

struct Connection {
    client: Option<Client>,
    /// Units whose advisory lock this session should hold.
    held: BTreeSet<i32>,
}

impl Member {
    pub fn run(&self) -> &SharedRun {
        &self.run
    }

    fn conn(&self) -> MutexGuard<'_, Connection> {
        self.conn.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Runs `f` on the coordination connection, reconnecting while failures are transient.
    fn with<T>(
        &self,
        what: &'static str,
        mut f: impl FnMut(&SharedRun, &mut Client, &mut BTreeSet<i32>) -> Result<T, RunError>,
    ) -> Result<T, RunError> {
        let mut conn = self.conn();
        let mut backoff = Backoff::new();
        let mut attempt = 1;
        loop {
            let result = self.session(&mut conn).and_then(|()| {
                let Connection { client, held } = &mut *conn;
                match client.as_mut() {
                    Some(client) => f(&self.run, client, held),
                    None => Err(self.run.corrupt(format!("no connection for {what}"))),
                }
            });
            match result {
                Ok(value) => return Ok(value),
                Err(err) if err.is_transient() => {
                    conn.client = None;
                    if attempt >= self.attempts {
                        return Err(err);
                    }
                    attempt += 1;
                    std::thread::sleep(backoff.next_wait());
                }
                Err(err) => return Err(err),
            }
        }
    }

    /// Opens the connection when it is missing, and takes back this worker's locks.
    fn session(&self, conn: &mut Connection) -> Result<(), RunError> {
        if conn.client.is_some() {
            return Ok(());
        }
        let mut client = self.target.connect()?;
        client
            .batch_execute("SET statement_timeout = 0")
            .map_err(self.run.db("setting up the coordination session"))?;
        self.run.take_liveness(&mut client, self.worker)?;
        let mut kept = BTreeSet::new();
        for &unit in &conn.held {
            let locked: bool = client
                .query_one(
                    "SELECT pg_try_advisory_lock($1, $2)",
                    &[&self.run.unit_class, &unit],
                )
                .map_err(self.run.db("taking back a unit's lock"))?
                .get(0);
            if locked {
                kept.insert(unit);
            }
        }
        conn.held = kept;
        conn.client = Some(client);
        Ok(())
    }

    /// Claims an open unit nobody holds, first in unit order; `None` when there is none. With
    /// `skip_failed_tables`, units of a table that has a failed unit are left alone: a failure
    /// stops its table, not the run.
    pub fn claim(&self, skip_failed_tables: bool) -> Result<Option<UnitRow>, RunError> {
        self.with("claiming a unit", |run, client, held| {
            let locked: Vec<i32> = run.locked(client, run.unit_class)?.into_iter().collect();
            let skip = if skip_failed_tables {
                format!(
                    " AND table_name NOT IN (SELECT table_name FROM {} WHERE state = '{FAILED}')",
                    run.units
                )
            } else {
                String::new()
            };
            let sql = format!(
                "SELECT unit FROM {} WHERE state = '{TODO}' AND NOT (unit = ANY($1)){skip} \
                 ORDER BY unit LIMIT $2",
                run.units
            );
            let candidates = client
                .query(&sql, &[&locked, &CLAIM_CANDIDATES])
                .map_err(run.db("looking for an open unit"))?;
            for row in candidates {
                let unit: i32 = row.get(0);
                if let Some(claimed) = run
                    .try_claim(client, unit, &self.name)
                    .map_err(run.db("claiming a unit"))?
                {
                    held.insert(unit);
                    return Ok(Some(claimed));
                }
            }
            Ok(None)
        })
    }

    /// Claims `unit` if it is open and nobody holds it.
    pub fn claim_unit(&self, unit: i32) -> Result<Option<UnitRow>, RunError> {
        self.with("claiming a unit", |run, client, held| {
            let claimed = run
                .try_claim(client, unit, &self.name)
                .map_err(run.db("claiming a unit"))?;
            if claimed.is_some() {
                held.insert(unit);
            }
            Ok(claimed)
        })
    }

    /// Blocks until whoever holds `unit` lets go of it — it finished the unit, lost it, or died
    /// and its session ended — or `at_most` has passed: a shared lock on the unit's key, which
    /// PostgreSQL grants the moment the holder's lock goes, taken and let go in one transaction
    /// on a session of its own. A failure here only ends the wait (the next claim says more).
    pub fn wait_for(&self, unit: i32, at_most: Duration) -> Result<(), RunError> {
        let mut waiter = self.waiter.lock().unwrap_or_else(|e| e.into_inner());
        if waiter.is_none() {
            let mut client = self.target.connect()?;
            client
                .batch_execute("SET statement_timeout = 0")
                .map_err(self.run.db("setting up the waiting session"))?;
            *waiter = Some(client);
        }
        let Some(client) = waiter.as_mut() else {
            return Ok(());
        };
        let millis = at_most.as_millis().max(1);
        let waited = client.transaction().and_then(|mut tx| {
            tx.batch_execute(&format!("SET LOCAL lock_timeout = {millis}"))?;
            tx.execute(
                "SELECT pg_advisory_xact_lock_shared($1, $2)",
                &[&self.run.unit_class, &unit],
            )?;
            tx.commit()
        });
        match waited {
            Ok(()) => Ok(()),
            Err(e) if e.code() == Some(&SqlState::LOCK_NOT_AVAILABLE) => Ok(()),
            Err(e) => {
                *waiter = None;
                if is_transient(&e) {
                    Ok(())
                } else {
                    Err(self.run.db("waiting for a unit")(e))
                }
            }
        }
    }

    /// Every unit not done (open or failed), in unit order.
    pub fn unfinished_units(&self) -> Result<Vec<UnitRow>, RunError> {
        self.with("reading the units", |run, client, _| {
            let sql = format!(
                "SELECT unit, table_name, source, lo, hi, done_to, rows, claims, state FROM {} \
                 WHERE state <> '{DONE}' ORDER BY unit",
                run.units
            );
            let rows = client
                .query(&sql, &[])
                .map_err(run.db("reading the units"))?;
            Ok(rows.iter().map(unit_row).collect())
        })
    }

    /// Cuts `unit`: `cut` sees its row as it is under the row lock and returns where the new
    /// unit starts (its `hi` moves there), or `None` to leave it. Returns the new unit's number.
    pub fn split(
        &self,
        unit: i32,
        cut: &dyn Fn(&UnitRow) -> Option<String>,
    ) -> Result<Option<i32>, RunError> {
        self.with("splitting a unit", |run, client, _| {
            let db = |what| run.db(what);
            let mut tx = client.transaction().map_err(db("starting a split"))?;
            let Some(row) = run
                .lock_unit(&mut tx, unit)
                .map_err(db("locking a unit to split"))?
            else {
                return Ok(None);
            };
            let Some(mid) = row.is_open().then(|| cut(&row)).flatten() else {
                return Ok(None);
            };
            tx.execute(
                &format!("UPDATE {} SET hi = $2 WHERE unit = $1", run.units),
                &[&unit, &mid],
            )
            .map_err(db("shortening the unit"))?;
            let new: i32 = tx
                .query_one(
                    &format!(
                        "UPDATE {} SET next_unit = next_unit + 1 WHERE run = 1 \
                         RETURNING next_unit - 1",
                        run.run
                    ),
                    &[],
                )
                .map_err(db("numbering the new unit"))?
                .get(0);
            tx.execute(
                &format!(
                    "INSERT INTO {} (unit, table_name, source, lo, hi, done_to) \
                     VALUES ($1, $2, $3, $4, $5, $4)",
                    run.units
                ),
                &[&new, &row.table, &row.source, &mid, &row.hi],
            )
            .map_err(db("writing the new unit"))?;
            tx.commit().map_err(db("committing a split"))?;
            Ok(Some(new))
        })
    }

    /// Lets go of a unit this process is done with (finished, lost or failed).
    pub fn release(&self, unit: i32) -> Result<(), RunError> {
        self.with("releasing a unit", |run, client, held| {
            if held.remove(&unit) {
                client
                    .execute(
                        "SELECT pg_advisory_unlock($1, $2)",
                        &[&run.unit_class, &unit],
                    )
                    .map_err(run.db("releasing a unit"))?;
            }
            Ok(())
        })
    }

    /// Closes an import unit whose every batch committed; `false` if it is no longer ours.
    pub fn complete(&self, lease: Lease) -> Result<bool, RunError> {
        let closed = self.with("closing a unit", |run, client, _| {
            let sql = format!(
                "UPDATE {} SET state = '{DONE}', finished_at = now() \
                 WHERE unit = $1 AND claims = $2 AND state = '{TODO}'",
                run.units
            );
            client
                .execute(&sql, &[&lease.unit, &lease.token])
                .map_err(run.db("closing a unit"))
        })?;
        self.release(lease.unit)?;
        Ok(closed == 1)
    }

    /// Marks a unit failed for good (bad data), so no other worker tries it again in this run,
    /// with `note` saying why.
    pub fn fail(&self, lease: Lease, note: &str) -> Result<(), RunError> {
        self.with("marking a unit failed", |run, client, _| {
            let sql = format!(
                "UPDATE {} SET state = '{FAILED}', note = $3, finished_at = now() \
                 WHERE unit = $1 AND claims = $2 AND state = '{TODO}'",
                run.units
            );
            client
                .execute(&sql, &[&lease.unit, &lease.token, &note])
                .map_err(run.db("marking a unit failed"))
        })?;
        self.release(lease.unit)
    }

    /// The run's failed units, the first [`FAILURES_LISTED`] in unit order.
    pub fn failed_units(&self) -> Result<Vec<FailedUnit>, RunError> {
        self.with("reading failed units", |run, client, _| {
            Ok(run.failures(client)?.0)
        })
    }

    /// The ledger's record of one file of `table` (import reads it when it claims the file).
    pub fn ledger_entries(
        &self,
        ledger: &Ledger,
        table: &str,
        source: &str,
    ) -> Result<Vec<LedgerEntry>, RunError> {
        self.with("reading the ledger", |run, client, _| {
            ledger
                .entries_for(client, table, source)
                .map_err(|e| run.db("reading the ledger")(e.into_db()))
        })
    }

    /// Where the run stands; marks it finished when every unit is done.
    pub fn outcome(&self) -> Result<Outcome, RunError> {
        self.with("reading the run's outcome", |run, client, _| {
            let (units, count) = run.failures(client)?;
            if count > 0 {
                return Ok(Outcome::Failed { units, count });
            }
            let open = run.unit_rows(client, Some(TODO))?.len() as i64;
            if open > 0 {
                return Ok(Outcome::Unfinished { open });
            }
            let generation = run.read_run(client)?.map_or(0, |r| r.generation);
            run.mark_finished(client, generation)?;
            Ok(Outcome::Complete)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lock_classes_are_positive_even_and_per_schema() {
        for schema in ["public", "vec", "My Schema", ""] {
            let run = SharedRun::new(schema);
            assert!(run.unit_class >= 0 && run.unit_class % 2 == 0, "{schema}");
            assert!(run.worker_class() > 0);
        }
        assert_ne!(
            SharedRun::new("public").unit_class,
            SharedRun::new("vec").unit_class
        );
        assert_eq!(SharedRun::new("a b").units, "\"a b\".qdrant2pg_units");
    }

    #[test]
    fn a_refusal_names_every_differing_setting() {
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
