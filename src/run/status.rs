//! Where a run stands, as `qdrant2pg status` shows it from any host, and how it ended for the
//! commands that took part.

use std::collections::{BTreeMap, BTreeSet};

use postgres::{Client, GenericClient};
use serde::Serialize;

use crate::run::store::{DONE, FAILED, RUN_TABLE, RunError, Settings, SharedRun, UnitRow};

/// Failed units named in an outcome; the rest are counted.
const FAILURES_LISTED: i64 = 20;

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

    pub(super) fn add(&mut self, row: &UnitRow, locked: &BTreeSet<i32>) {
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

impl SharedRun {
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

    pub(super) fn failures(
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

pub(super) fn count_units(rows: &[UnitRow], locked: &BTreeSet<i32>) -> UnitCounts {
    let mut counts = UnitCounts::default();
    for row in rows {
        counts.add(row, locked);
    }
    counts
}
