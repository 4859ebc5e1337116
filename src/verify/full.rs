//! `verify --full`: every point and every row, both sides read at once and each in parallel —
//! Qdrant with export's cursors, the table in binary over ctid ranges (`postgres::scan`) — and
//! folded into digest buckets by id ([`digest`]): neither side's order nor an index matters, and
//! memory stays fixed. Where buckets differ, both sides list their ids again (ids only), keeping
//! those that fall into the differing buckets; just those rows are read again from both sides
//! (the table's in one filtered scan, or through an index on `id`) and compared by digest, and
//! the first that differ are named with what differs.
//!
//! [`digest`]: crate::verify::digest

use std::collections::{BTreeSet, HashMap};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use anyhow::Context;

use crate::config::postgres::Target;
use crate::config::qdrant::ReadTuning;
use crate::point_id::PointKey;
use crate::postgres::scan::{
    Part, TableScan, default_parts, has_tid_range_scans, heap_blocks, ids_condition, read_parts,
    tile,
};
use crate::progress::Task;
use crate::source::Source;
use crate::source::cursor::Scheduler;
use crate::source::page::{Fetch, PageReader};
use crate::source::parallel::read_parallel;
use crate::source::plan::{IdSpan, Work, range_count};
use crate::verify::compare::{BadTableId, CanonicalRow};
use crate::verify::digest::{BUCKETS, Buckets, Differing, bucket_of_key, digest};
use crate::verify::findings::{Findings, SHOWN_DIFFERENCES};
use crate::verify::sample::{BY_ID_CHUNK, compare_by_id};
use crate::verify::table::Table;

/// Rows of differing buckets drilled into in one run: their ids are held in memory (about 64
/// bytes each) and each is read by id from both sides. Buckets beyond it are counted, not
/// drilled: the first differences named are what a user fixes first, and a table that differs
/// in more rows needs no finer list.
const DRILL_ROWS: u64 = 1 << 17;
/// Ids per page when listing ids alone: a page of ids is small, so few round trips.
const ID_PAGE: u32 = 10_000;

/// How hard `--full` reads each side.
#[derive(Clone, Debug)]
pub struct FullRead {
    /// Qdrant's side: cursors, page size, encoders.
    pub tuning: ReadTuning,
    /// PostgreSQL connections reading the table.
    pub connections: usize,
    /// Parts (ctid ranges) the table is cut into; `None` picks by server and size.
    pub table_parts: Option<u32>,
}

/// `--full`: both sides folded into digest buckets; differing buckets drilled down to ids.
pub fn verify_full(
    reader: &Source,
    target: &Target,
    table: &Table,
    span: &IdSpan,
    count: u64,
    settings: &FullRead,
    task: &Task,
) -> anyhow::Result<Findings> {
    let mut db = target.connect().context("connecting to the target")?;
    let reading = Reading::new(reader, target, table, span, count, settings)?;
    let (ours, theirs) = (Buckets::default(), Buckets::default());
    let (points, _) = reading.both(
        |_, row| theirs.add(row.id(), row.bytes()),
        |_, row| ours.add(row.id(), row.bytes()),
        task,
    )?;
    let mut findings = Findings {
        checked: points,
        ..Findings::default()
    };
    let differing = ours.differing(&theirs);
    drop((ours, theirs));
    if differing.is_empty() {
        return Ok(findings);
    }

    let (drilled, rest) = split_drill(differing);
    let mut wanted = vec![false; BUCKETS];
    for d in &drilled {
        wanted[d.bucket] = true;
    }
    let ids: Vec<PointKey> = reading.ids_in(&wanted)?.into_iter().collect();
    let differing_ids = reading.differing_rows(&ids)?;
    let shown = differing_ids.len().min(SHOWN_DIFFERENCES);
    for (key, what) in compare_by_id(reader, &mut db, table, &differing_ids[..shown])? {
        findings.differ(format!("id {key}: {what}"));
    }
    findings.more += (differing_ids.len() - shown) as u64;
    if findings.is_clean() {
        findings.differ(format!(
            "rows differ in {} id bucket(s), but read again by id they are equal (was the table \
             or the collection written to while verify ran?)",
            drilled.len()
        ));
    }
    if !rest.is_empty() {
        let rows: u64 = rest.iter().map(|d| d.rows).sum();
        findings.note = Some(format!(
            "rows also differ in {} more id bucket(s) holding about {rows} rows, not listed; \
             fix the differences above and verify again",
            rest.len()
        ));
    }
    Ok(findings)
}

/// The differing buckets to drill into, at most [`DRILL_ROWS`] rows' worth (always one), and
/// the rest.
fn split_drill(differing: Vec<Differing>) -> (Vec<Differing>, Vec<Differing>) {
    let mut rows = 0;
    let keep = differing
        .iter()
        .position(|d| {
            rows += d.rows;
            rows > DRILL_ROWS
        })
        .unwrap_or(differing.len())
        .max(1);
    let mut drilled = differing;
    let rest = drilled.split_off(keep.min(drilled.len()));
    (drilled, rest)
}

/// One collection and its table, read whole: what `verify --full` and `sync` read both sides
/// through.
pub struct Reading<'a> {
    reader: &'a Source,
    target: &'a Target,
    table: &'a Table,
    span: &'a IdSpan,
    count: u64,
    settings: &'a FullRead,
    parts: Vec<Part>,
}

impl<'a> Reading<'a> {
    /// The table's ctid parts decided (`settings.table_parts`, else by server and size).
    pub fn new(
        reader: &'a Source,
        target: &'a Target,
        table: &'a Table,
        span: &'a IdSpan,
        count: u64,
        settings: &'a FullRead,
    ) -> anyhow::Result<Reading<'a>> {
        let mut db = target.connect().context("connecting to the target")?;
        let blocks = heap_blocks(&mut db, &table.name)
            .with_context(|| format!("reading the size of {}", table.name))?;
        let parts = match settings.table_parts {
            Some(parts) => parts,
            None => default_parts(
                has_tid_range_scans(&mut db).context("reading the server version")?,
                settings.connections,
                blocks,
            ),
        };
        Ok(Reading {
            reader,
            target,
            table,
            span,
            count,
            settings,
            parts: tile(blocks, parts),
        })
    }

    /// Which of `ids` (sorted) differ between the two sides: their rows read by id from both,
    /// the table's in one scan over the parts (or through an index on `id`), compared by digest.
    fn differing_rows(&self, ids: &[PointKey]) -> anyhow::Result<Vec<PointKey>> {
        let table = self.table;
        let mut rows: HashMap<PointKey, (u128, u32)> = HashMap::new();
        for (key, digest) in self.table_digests(ids)? {
            rows.entry(key).or_insert((digest, 0)).1 += 1;
        }
        let mut points: HashMap<PointKey, u128> = HashMap::new();
        let mut row = CanonicalRow::default();
        for chunk in ids.chunks(BY_ID_CHUNK) {
            let (found, exact) = self.reader.get_points(&table.schema.name, chunk)?;
            for point in exact.points(&found) {
                let key = table
                    .form
                    .of_point(point, &mut row)
                    .with_context(|| format!("collection {:?}", table.schema.name))?;
                points.insert(key, digest(row.bytes()));
            }
        }
        Ok(ids
            .iter()
            .copied()
            .filter(|key| rows.get(key) != points.get(key).map(|&d| (d, 1)).as_ref())
            .collect())
    }

    /// The table's rows of `ids`, each as its id and digest (an id held twice comes twice): one
    /// scan over the parts (or through an index on `id`).
    pub fn table_digests(&self, ids: &[PointKey]) -> anyhow::Result<Vec<(PointKey, u128)>> {
        let table = self.table;
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let found = Mutex::new(Vec::new());
        let scan = TableScan {
            only: Some(ids_condition(table.form.id_column().sql_type(), ids)),
            ..table.scan()
        };
        read_parts(
            self.target,
            &scan,
            self.parts.clone(),
            self.settings.connections,
            CanonicalRow::default,
            |row, fields| {
                let key = table.form.of_table(fields, row)?;
                let digest = digest(row.bytes());
                found
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .push((key, digest));
                Ok::<_, BadTableId>(())
            },
        )
        .with_context(|| format!("reading table {}", table.name))?;
        Ok(found.into_inner().unwrap_or_else(|e| e.into_inner()))
    }

    /// The ids either side holds whose canonical id falls into a `wanted` bucket: both sides
    /// read again, ids only.
    fn ids_in(&self, wanted: &[bool]) -> anyhow::Result<BTreeSet<PointKey>> {
        let table = self.table;
        std::thread::scope(|s| {
            let rows = s.spawn(|| self.table_ids_in(wanted));
            let mut found = BTreeSet::new();
            let mut offset = Some(PointKey::MIN);
            while let Some(at) = offset {
                let page = self
                    .reader
                    .scroll(&table.schema.name, at, ID_PAGE, Fetch::IdsOnly)?;
                for point in &page.points {
                    let key = PointKey::from_proto(point.id.as_ref())
                        .with_context(|| format!("collection {:?}", table.schema.name))?;
                    if wanted[bucket_of_key(key)] {
                        found.insert(key);
                    }
                }
                offset = page.next;
            }
            let rows = rows
                .join()
                .unwrap_or_else(|panic| std::panic::resume_unwind(panic))?;
            found.extend(rows);
            Ok(found)
        })
    }

    /// The table's ids whose canonical id falls into a `wanted` bucket: the table read again,
    /// ids only.
    pub fn table_ids_in(&self, wanted: &[bool]) -> anyhow::Result<Vec<PointKey>> {
        let table = self.table;
        let id_column = ["id".to_owned()];
        let scan = TableScan {
            table: &table.name,
            columns: &id_column,
            only: None,
        };
        let found = Mutex::new(Vec::new());
        read_parts(
            self.target,
            &scan,
            self.parts.clone(),
            self.settings.connections,
            || (),
            |_, fields| {
                let key = table.form.table_id(fields.first().copied().flatten())?;
                if wanted[bucket_of_key(key)] {
                    found.lock().unwrap_or_else(|e| e.into_inner()).push(key);
                }
                Ok::<_, BadTableId>(())
            },
        )
        .with_context(|| format!("reading table {}", table.name))?;
        Ok(found.into_inner().unwrap_or_else(|e| e.into_inner()))
    }

    /// Reads both sides at once, each in parallel, handing every point and every row, with its
    /// id, in canonical form to its side's fold. Returns the points and the rows read.
    pub fn both(
        &self,
        on_point: impl Fn(PointKey, &CanonicalRow) + Sync,
        on_row: impl Fn(PointKey, &CanonicalRow) + Sync,
        task: &Task,
    ) -> anyhow::Result<(u64, u64)> {
        std::thread::scope(|s| {
            let rows = s.spawn(|| self.rows(&on_row));
            let points = self.points(&on_point, task);
            let rows = rows
                .join()
                .unwrap_or_else(|panic| std::panic::resume_unwind(panic))?;
            Ok((points?, rows))
        })
    }

    /// The table's side: every row, in binary over the ctid parts. Returns the rows read.
    pub fn rows(&self, on_row: &(impl Fn(PointKey, &CanonicalRow) + Sync)) -> anyhow::Result<u64> {
        let table = self.table;
        read_parts(
            self.target,
            &table.scan(),
            self.parts.clone(),
            self.settings.connections,
            CanonicalRow::default,
            |row, fields| {
                let key = table.form.of_table(fields, row)?;
                on_row(key, row);
                Ok::<_, BadTableId>(())
            },
        )
        .with_context(|| format!("reading table {}", table.name))
    }

    /// Qdrant's side: export's cursors and page workers. Returns the points read.
    pub fn points(
        &self,
        on_point: &(impl Fn(PointKey, &CanonicalRow) + Sync),
        task: &Task,
    ) -> anyhow::Result<u64> {
        let tuning = &self.settings.tuning;
        let work = self
            .span
            .plan(range_count(self.count, u64::MAX, tuning))
            .into_iter()
            .map(|range| Work {
                collection: 0,
                range,
            })
            .collect();
        let scheduler = Scheduler::new(work, vec![*self.span], u64::from(tuning.page_size) * 2);
        let points = AtomicU64::new(0);
        let collection = &self.table.schema.name;
        let failures = read_parallel(
            &scheduler,
            &|| self.reader.open_reader(),
            std::slice::from_ref(collection),
            tuning.cursors,
            tuning.page_size,
            tuning.encoders(),
            |batch| {
                let mut row = CanonicalRow::default();
                for point in batch.point_refs() {
                    let key = self
                        .table
                        .form
                        .of_point(point, &mut row)
                        .with_context(|| format!("collection {collection:?}"))?;
                    on_point(key, &row);
                }
                let n = batch.points.len() as u64;
                points.fetch_add(n, Ordering::Relaxed);
                task.add(n, 0);
                Ok(())
            },
        )?;
        // One collection is read at a time: its failure is the command's.
        if let Some(failure) = failures.into_iter().next() {
            return Err(failure.error);
        }
        Ok(points.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn drill_down_stops_at_its_row_budget_but_never_drills_nothing() {
        let d = |bucket, rows| Differing { bucket, rows };
        let (drilled, rest) = split_drill(vec![d(1, 10), d(2, DRILL_ROWS - 10), d(3, 1)]);
        assert_eq!((drilled.len(), rest.len()), (2, 1));
        let (drilled, rest) = split_drill(vec![d(1, DRILL_ROWS * 2), d(2, 1)]);
        assert_eq!((drilled, rest), (vec![d(1, DRILL_ROWS * 2)], vec![d(2, 1)]));
    }
}
