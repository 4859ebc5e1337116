//! Migrate's units of a shared run: id ranges as cursor work, and the fence every page's commit
//! passes.
//!
//! A migrate unit is an id range `[lo, hi)` of one collection (as [`PointKey`] text, `hi` empty
//! for +∞) with `done_to`, how far its committed pages reach. Its pages commit in id order,
//! each starting exactly at `done_to` and moving it on, so `[lo, done_to)` is in the table
//! (and in the ledger) and `[done_to, hi)` is not: a unit taken over from a dead worker is
//! read on from `done_to`, with nothing to reconcile.
//!
//! [`RangeUnits`] is what the cursors claim from: an open unit nobody holds, else a cut off the
//! open unit with the most rows left by estimate (the same estimate and midpoint as in-process
//! splits, on the unit's committed density). The cut moves the victim's `hi` down; its owner
//! hears of it in [`RangeUnits::fence`], which every page's COPY transaction runs under the
//! unit's row lock before it commits: a page holding ids at or above the new `hi` is refused
//! ([`Fenced::Shrunk`]) and sent again without them, a page wholly above it is dropped
//! ([`Fenced::Finished`]), and a page of a unit another worker has claimed since is dropped
//! ([`Fenced::Lost`]). So whoever splits, and whenever, no id is committed twice.
//!
//! A unit that fails (a point its table rejects, a read that fails) is marked failed in the run,
//! and its table's other units are neither claimed nor cut from then on: the failure stops its
//! table, while the others load to their end. The run then ends failed, naming it; the same
//! command again, once no worker of the run is left, reopens it.

use std::collections::BTreeSet;
use std::time::Duration;

use postgres::Transaction;

use crate::point_id::{KeyRange, PointKey};
use crate::postgres::ledger::LedgerEntry;
use crate::run::member::Member;
use crate::run::store::UnitRow;
use crate::sink::copy::{CopyError, Fenced};
use crate::source::cursor::{
    Claim, ClaimError, Lease, SharedUnits, cut_point, estimate_rows_left, prior_rows,
};
use crate::source::plan::IdSpan;
use crate::source::plan::Work;

/// Times a claim looks for a unit to cut before it waits: a cut fails only when its victim
/// changed between the look and the row lock, which a second look sees.
const SPLIT_TRIES: usize = 4;

/// The units of one migrate run, for the cursors of one process.
pub struct RangeUnits<'a> {
    member: &'a Member,
    /// Table names in the command's job order: a unit's table gives its collection index.
    tables: Vec<String>,
    /// Per table, where ids lie (midpoints of ranges open to +∞ are taken inside it).
    spans: Vec<IdSpan>,
    /// Per table, the points it had when the run was planned.
    points: Vec<u64>,
    min_split_rows: u64,
}

/// How a page's fence went.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PageFence {
    /// The page closes its unit.
    pub done: bool,
    /// Where the unit ends now (`None`: +∞).
    pub hi: Option<PointKey>,
}

impl<'a> RangeUnits<'a> {
    /// `tables[i]` has `points[i]` points spread over `spans[i]`.
    pub fn new(
        member: &'a Member,
        tables: Vec<String>,
        spans: Vec<IdSpan>,
        points: Vec<u64>,
        min_split_rows: u64,
    ) -> Self {
        RangeUnits {
            member,
            tables,
            spans,
            points,
            min_split_rows,
        }
    }

    /// Checks page `[covered.lo, covered.hi)` (its highest id `last_id`) against its unit's
    /// row, locked until the transaction ends, then moves the unit on: `entry.hi` becomes
    /// where the page's ids end inside the unit. Refuses with [`CopyError::Fenced`] a page
    /// that may not commit, and with [`CopyError::AlreadyLoaded`] one an earlier attempt of
    /// this worker committed (a commit whose answer was lost).
    pub fn fence(
        &self,
        tx: &mut Transaction<'_>,
        lease: Lease,
        entry: &mut LedgerEntry,
        covered: KeyRange,
        last_id: Option<PointKey>,
    ) -> Result<PageFence, CopyError> {
        let run = self.member.run();
        let row = run.lock_unit(tx, lease.unit).map_err(CopyError::Db)?;
        let Some(row) = row.filter(|r| r.claims == lease.token && !r.is_failed()) else {
            return Err(CopyError::Fenced(Fenced::Lost));
        };
        let (_, done_to, hi) = bounds(&row).map_err(CopyError::Fenced)?;
        if row.is_done() {
            return Err(if covered.lo < done_to {
                CopyError::AlreadyLoaded
            } else {
                CopyError::Fenced(Fenced::Finished)
            });
        }
        if done_to != covered.lo {
            // Pages commit in order, so only this very page can have moved `done_to` past
            // its start; anything else means the unit's progress is not this worker's.
            return Err(if done_to > covered.lo {
                CopyError::AlreadyLoaded
            } else {
                CopyError::Fenced(Fenced::Lost)
            });
        }
        if let (Some(hi), Some(last)) = (hi, last_id)
            && last >= hi
        {
            return Err(CopyError::Fenced(Fenced::Shrunk(row.hi)));
        }
        let end = match (covered.hi, hi) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        let done = end == hi;
        entry.hi = end.map(|k| k.to_string()).unwrap_or_default();
        run.advance(tx, lease.unit, &entry.hi, entry.rows, done)
            .map_err(CopyError::Db)?;
        Ok(PageFence { done, hi })
    }

    /// Cursor work for a claimed unit: its unread part `[done_to, hi)`.
    fn work(&self, row: &UnitRow) -> Result<(Work, Lease), ClaimError> {
        let (_, done_to, hi) = bounds(row)?;
        let collection = self
            .tables
            .iter()
            .position(|t| *t == row.table)
            .ok_or_else(|| {
                format!(
                    "unit {} belongs to table {:?}, which is not in the plan",
                    row.unit, row.table
                )
            })?;
        let work = Work {
            collection,
            range: KeyRange::new(done_to, hi),
        };
        let lease = Lease {
            unit: row.unit,
            token: row.claims,
        };
        Ok((work, lease))
    }

    /// Where to cut `row`, with the rows it is estimated to leave: the midpoint of its
    /// uncommitted part, at the density of its committed part — or, before anything of it is
    /// committed, at the collection's average density. (Taking "nothing committed yet" as
    /// plenty, as in-process splits may, would let idle workers halve fresh units again and
    /// again before their owners' first commits, which take a round trip to show.)
    fn cut(&self, row: &UnitRow) -> Option<(f64, PointKey)> {
        let (estimate, mid) = self.estimate(row)?;
        (estimate >= self.min_split_rows as f64).then_some((estimate, mid))
    }

    /// The rows `row` has left by estimate: none when it is too narrow to cut.
    fn rows_left(&self, row: &UnitRow) -> f64 {
        self.estimate(row).map_or(0.0, |(estimate, _)| estimate)
    }

    /// The rows `row` has left by estimate, and the midpoint of its uncommitted part.
    fn estimate(&self, row: &UnitRow) -> Option<(f64, PointKey)> {
        let (lo, done_to, hi) = bounds(row).ok()?;
        let table = self.tables.iter().position(|t| *t == row.table)?;
        let span = &self.spans[table];
        let (mid, end) = cut_point(done_to, hi, span)?;
        let estimate = match u64::try_from(row.rows).unwrap_or(0) {
            0 => prior_rows(done_to, end, span, self.points[table]),
            rows => estimate_rows_left(lo, done_to, end, rows),
        };
        Some((estimate, mid))
    }
}

impl SharedUnits for RangeUnits<'_> {
    fn next(&self) -> Result<Claim, ClaimError> {
        for _ in 0..SPLIT_TRIES {
            if let Some(row) = self.member.claim(true)? {
                let (work, lease) = self.work(&row)?;
                return Ok(Claim::Unit {
                    work,
                    lease,
                    split_from: None,
                });
            }
            // A failed unit stops its table: its other units are neither claimed nor cut.
            let mut unfinished = self.member.unfinished_units()?;
            let failed: BTreeSet<String> = unfinished
                .iter()
                .filter(|row| row.is_failed())
                .map(|row| row.table.clone())
                .collect();
            unfinished.retain(|row| !failed.contains(&row.table));
            if unfinished.is_empty() {
                return Ok(Claim::Done);
            }
            let heaviest = unfinished
                .iter()
                .filter_map(|row| self.cut(row).map(|(estimate, _)| (estimate, row.unit)))
                .max_by(|a, b| a.0.total_cmp(&b.0));
            let Some((_, victim)) = heaviest else {
                let soonest = unfinished
                    .iter()
                    .map(|row| (self.rows_left(row), row.unit))
                    .min_by(|a, b| a.0.total_cmp(&b.0));
                return Ok(Claim::Wait(soonest.map(|(_, unit)| unit)));
            };
            let cut = |row: &UnitRow| self.cut(row).map(|(_, mid)| mid.to_string());
            let Some(new) = self.member.split(victim, &cut)? else {
                continue;
            };
            if let Some(row) = self.member.claim_unit(new)? {
                let (work, lease) = self.work(&row)?;
                return Ok(Claim::Unit {
                    work,
                    lease,
                    split_from: Some(victim),
                });
            }
        }
        Ok(Claim::Wait(None))
    }

    fn wait(&self, unit: i32, at_most: Duration) -> Result<(), ClaimError> {
        Ok(self.member.wait_for(unit, at_most)?)
    }

    fn fail(&self, lease: Lease, note: &str) -> Result<(), ClaimError> {
        Ok(self.member.fail(lease, note)?)
    }
}

/// A unit's `lo`, `done_to` and `hi` as ids.
fn bounds(row: &UnitRow) -> Result<(PointKey, PointKey, Option<PointKey>), Fenced> {
    let key = |text: &str| {
        text.parse::<PointKey>().map_err(|_| {
            Fenced::Unreadable(format!(
                "unit {} holds {text:?}, which is not a point id",
                row.unit
            ))
        })
    };
    let hi = match row.hi.as_str() {
        "" => None,
        text => Some(key(text)?),
    };
    Ok((key(&row.lo)?, key(&row.done_to)?, hi))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(lo: &str, done_to: &str, hi: &str) -> UnitRow {
        UnitRow {
            unit: 7,
            table: "t".into(),
            source: "qdrant".into(),
            lo: lo.into(),
            hi: hi.into(),
            done_to: done_to.into(),
            rows: 0,
            claims: 1,
            state: "todo".into(),
        }
    }

    #[test]
    fn bounds_read_point_ids_and_an_open_end() {
        let uuid = "5c56c793-69f3-4fbf-87e6-c4bf54c28c26";
        assert_eq!(
            bounds(&row("0", "10", "")).unwrap(),
            (PointKey::Num(0), PointKey::Num(10), None)
        );
        assert_eq!(
            bounds(&row("0", "10", uuid)).unwrap().2,
            Some(uuid.parse().unwrap())
        );
        assert!(matches!(
            bounds(&row("x", "10", "")),
            Err(Fenced::Unreadable(text)) if text.contains("unit 7")
        ));
    }
}
