//! The commit fence: every COPY transaction into a unit locks the unit's row and checks that
//! the unit is still this worker's before it commits, so a worker that lost its unit never
//! commits into it again.

use postgres::Transaction;

use crate::run::store::{DONE, SharedRun, TODO, UnitRow, unit_row};
use crate::source::cursor::Lease;

impl SharedRun {
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
}
