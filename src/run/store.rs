//! The run's three tables in the target schema, and the reads and locks every role shares:
//! the run row, the unit rows, and the advisory locks that say which units and which workers
//! are alive.

use std::collections::{BTreeMap, BTreeSet};

use postgres::{Client, GenericClient};
use serde_json::Value;
use xxhash_rust::xxh3::xxh3_64;

use crate::config::postgres::ConnectError;
use crate::postgres::ident::qualified;
use crate::postgres::transient::is_transient;

pub const RUN_TABLE: &str = "qdrant2pg_run";
pub const UNITS_TABLE: &str = "qdrant2pg_units";
pub const WORKERS_TABLE: &str = "qdrant2pg_workers";

pub(super) const TODO: &str = "todo";
pub(super) const DONE: &str = "done";
pub(super) const FAILED: &str = "failed";

/// What makes a run what it is, keyed by the flag that sets each value (`--dialect` →
/// `"pgvector"`), plus `command`. Identical commands have equal settings; tuning flags
/// (connections, page and batch sizes) are not settings, so each host may pick its own.
pub type Settings = BTreeMap<String, Value>;

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
    pub(super) fn is_transient(&self) -> bool {
        match self {
            RunError::Db { source, .. }
            | RunError::Connect(ConnectError::Connect { source, .. }) => is_transient(source),
            _ => false,
        }
    }
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

/// The run of one target schema: its tables and its advisory lock keys.
#[derive(Clone, Debug)]
pub struct SharedRun {
    pub(super) schema: String,
    pub(super) run: String,
    pub(super) units: String,
    pub(super) workers: String,
    /// First advisory-lock key of the units (and, with unit 0, of the plan); the workers'
    /// liveness locks use `unit_class + 1`. From the schema's name, so runs of different schemas
    /// never contend; positive, as `pg_locks` shows it as an unsigned `oid`.
    pub(super) unit_class: i32,
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

    pub(super) fn worker_class(&self) -> i32 {
        self.unit_class + 1
    }

    pub(super) fn db(&self, what: &'static str) -> impl FnOnce(postgres::Error) -> RunError + '_ {
        move |source| RunError::Db {
            schema: self.schema.clone(),
            what,
            source,
        }
    }

    pub(super) fn corrupt(&self, detail: String) -> RunError {
        RunError::Corrupt {
            schema: self.schema.clone(),
            detail,
        }
    }

    pub(super) fn read_run(
        &self,
        client: &mut impl GenericClient,
    ) -> Result<Option<RunRow>, RunError> {
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
    pub(super) fn unit_rows(
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
    pub(super) fn locked(
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

    pub(super) fn alive_workers(
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

    pub(super) fn mark_finished(
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

    pub(super) fn take_liveness(
        &self,
        client: &mut impl GenericClient,
        worker: i32,
    ) -> Result<(), RunError> {
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

    pub(super) fn try_claim(
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
}

/// The run's row.
#[derive(Debug)]
pub(super) struct RunRow {
    pub(super) generation: i32,
    pub(super) settings: Settings,
    pub(super) plan: String,
    pub(super) next_unit: i32,
    pub(super) started: String,
    pub(super) finished: Option<String>,
    pub(super) command: String,
}

pub(super) fn unit_row(row: &postgres::Row) -> UnitRow {
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

/// `host:pid`, as `status` and the units show who claimed what.
pub(super) fn worker_name() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| "?".to_owned());
    format!("{host}:{}", std::process::id())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    pub(super) fn lock_classes_are_positive_even_and_per_schema() {
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
}
