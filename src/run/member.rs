//! A worker's seat in a run: its coordination connection, which holds its liveness lock and the
//! locks of the units it claimed, and what it does with units — claim, wait, split, release,
//! close, fail.

use std::collections::BTreeSet;
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use postgres::error::SqlState;
use postgres::{Client, Transaction};

use crate::config::postgres::Target;
use crate::postgres::ledger::{Ledger, LedgerEntry};
use crate::postgres::transient::is_transient;
use crate::retry::{Verdict, retry};
use crate::run::status::{FailedUnit, Outcome};
use crate::run::store::{DONE, FAILED, RunError, SharedRun, TODO, UnitRow, unit_row};
use crate::source::cursor::Lease;

/// Open units looked at per claim: enough that a few workers claiming at once rarely all try
/// the same ones, few enough that a claim stays one small query.
const CLAIM_CANDIDATES: i64 = 8;

/// This process's seat in a run: its coordination connection, which holds its liveness lock
/// and the locks of the units it claimed. Shared by its threads; a lost connection is opened
/// again (with backoff, as loading connections are) and takes back the locks nobody else took
/// meanwhile — those somebody did take are no longer ours, which their fences will say.
pub struct Member {
    pub(super) run: SharedRun,
    pub(super) target: Target,
    pub worker: i32,
    pub(super) name: String,
    pub(super) attempts: u32,
    pub(super) conn: Mutex<Connection>,
    /// A second session, for [`wait_for`](Member::wait_for): a wait there holds up no claim
    /// or release on the first.
    pub(super) waiter: Mutex<Option<Client>>,
}

pub(super) struct Connection {
    pub(super) client: Option<Client>,
    /// Units whose advisory lock this session should hold.
    pub(super) held: BTreeSet<i32>,
}

impl Member {
    pub fn run(&self) -> &SharedRun {
        &self.run
    }

    pub(super) fn conn(&self) -> MutexGuard<'_, Connection> {
        self.conn.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Runs `f` on the coordination connection, reconnecting while failures are transient.
    pub(super) fn with<T>(
        &self,
        what: &'static str,
        mut f: impl FnMut(&SharedRun, &mut Client, &mut BTreeSet<i32>) -> Result<T, RunError>,
    ) -> Result<T, RunError> {
        let mut conn = self.conn();
        let attempt = |_| {
            let result = self.session(&mut conn).and_then(|()| {
                let Connection { client, held } = &mut *conn;
                match client.as_mut() {
                    Some(client) => f(&self.run, client, held),
                    None => Err(self.run.corrupt(format!("no connection for {what}"))),
                }
            });
            if result.as_ref().is_err_and(RunError::is_transient) {
                conn.client = None;
            }
            result
        };
        let judge = |err: &RunError, _: u32, _: Duration| {
            if err.is_transient() {
                Verdict::Retry
            } else {
                Verdict::GiveUp
            }
        };
        retry(self.attempts, attempt, judge).map_err(|failed| failed.error)
    }

    /// Opens the connection when it is missing, and takes back this worker's locks.
    pub(super) fn session(&self, conn: &mut Connection) -> Result<(), RunError> {
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

    /// The write of the durable commit a command makes before it reports done
    /// ([`crate::sink::copy::Loader::commit_durably`]): this worker's row, rewritten as it is.
    /// Changes one row while this worker is enrolled in the run.
    pub fn durable_mark(&self, tx: &mut Transaction<'_>) -> Result<u64, postgres::Error> {
        let sql = format!(
            "UPDATE {} SET name = name WHERE worker = $1",
            self.run.workers
        );
        tx.execute(&sql, &[&self.worker])
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

    /// Whether another worker of the run is alive now: what this process says about sharing
    /// work only matters to a user then.
    pub fn has_peers(&self) -> Result<bool, RunError> {
        self.with("counting the run's workers", |run, client, _| {
            let generation = run.read_run(client)?.map_or(0, |r| r.generation);
            Ok(run.alive_workers(client, generation)? > 1)
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
