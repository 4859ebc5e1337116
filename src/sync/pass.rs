//! One sync pass over one collection: both sides read whole into digest buckets, exactly as
//! `verify --full` reads them (`verify::full::Reading`), each row's `(bucket, id, digest)` also
//! written to the scratch disk ([`Spill`]); then, partition by partition, the ids of the
//! differing buckets — every id whose digest differs or that one side lacks — repaired in
//! batches ([`TableWriter::replace`]): read again from Qdrant by id (vectors and exact
//! payloads), the table's rows of those ids deleted and Qdrant's written, in one transaction.
//! Right after its commit each batch is read from Qdrant once more: an id whose point changed
//! again in between is counted, and the pass does not call the two sides identical.
//!
//! A read that fails — Qdrant unreachable, a point it cannot serve, a timeout — ends the pass
//! with an error: what is deleted is only ever what a successful read by id proved gone, and a
//! batch commits whole or not at all.

use std::collections::{BTreeMap, HashMap};
use std::time::Instant;

use anyhow::Context;
use serde::Serialize;

use crate::config::postgres::Target;
use crate::point_id::PointKey;
use crate::progress::{Task, Ui};
use crate::sink::copy::{LoadSettings, Loader, UnitFailure};
use crate::source::Source;
use crate::source::page::PageReader;
use crate::source::plan::IdSpan;
use crate::sync::spill::{Side, Spill};
use crate::sync::target::TableWriter;
use crate::verify::compare::CanonicalRow;
use crate::verify::digest::{BUCKETS, Buckets, bucket_of, digest};
use crate::verify::full::{FullRead, Reading};
use crate::verify::table::Table;

/// Ids per repair batch (one read by id, one transaction): 512 points of 768 floats are about
/// 1.5 MB of COPY data, large enough that a commit's round trip is small beside its rows, small
/// enough that a batch holds its locks briefly while the application keeps writing to Qdrant.
const REPAIR_BATCH: usize = 512;

/// What a pass needs beyond the collection and its table.
pub struct PassSettings<'a> {
    pub read: &'a FullRead,
    /// Where the spill files go.
    pub scratch: &'a std::path::Path,
    pub load: LoadSettings,
}

/// What one pass over one collection did.
#[derive(Clone, Debug, Default, Serialize)]
pub struct PassReport {
    pub collection: String,
    /// Points read from Qdrant.
    pub points: u64,
    /// Rows read from the table.
    pub rows: u64,
    pub differing_buckets: usize,
    /// Ids whose digests differed, or that one side lacked.
    pub differing_ids: u64,
    /// Rows written from Qdrant's points.
    pub upserted: u64,
    /// Rows deleted because Qdrant no longer has their point.
    pub deleted: u64,
    /// Repaired ids whose point Qdrant changed again before the pass ended.
    pub changed_again: u64,
    pub seconds: f64,
}

impl PassReport {
    /// Whether the pass found both sides identical as it read them: no difference, or every
    /// difference repaired and still what Qdrant held when read again.
    pub fn identical(&self) -> bool {
        self.changed_again == 0
    }

    /// One line for the user.
    pub fn line(&self, pass: u32) -> String {
        let outcome = match (self.differing_ids, self.changed_again) {
            (0, _) => "identical".to_owned(),
            (_, 0) => "repaired, identical".to_owned(),
            (_, n) => format!("repaired; {n} point(s) changed again meanwhile"),
        };
        format!(
            "pass {pass}: {}: Qdrant {} points, table {} rows, {} differing bucket(s), {} id(s) \
             differ: {} upserted, {} deleted, {:.2} s: {outcome}",
            self.collection,
            self.points,
            self.rows,
            self.differing_buckets,
            self.differing_ids,
            self.upserted,
            self.deleted,
            self.seconds
        )
    }
}

/// Runs one pass over `table`'s collection.
pub fn run_pass(
    source: &Source,
    target: &Target,
    table: &Table,
    writer: &TableWriter,
    settings: &PassSettings<'_>,
    ui: &Ui,
    task: &Task,
) -> anyhow::Result<PassReport> {
    let started = Instant::now();
    let name = &table.schema.name;
    let count = source.count_exact(name)?;
    let span = IdSpan::probe(|k| source.first_at_or_after(name, k))
        .with_context(|| format!("probing the ids of collection {name:?}"))?;
    let reading = Reading::new(source, target, table, &span, count, settings.read)?;
    let spill = Spill::create(settings.scratch).with_context(|| {
        format!(
            "creating the spill files in {} (--scratch)",
            settings.scratch.display()
        )
    })?;
    let (ours, theirs) = (Buckets::default(), Buckets::default());
    let fold = |side: Side, buckets: &Buckets, key: PointKey, row: &CanonicalRow| {
        let (bucket, digest) = (bucket_of(row.id()), digest(row.bytes()));
        buckets.add_digest(bucket, digest);
        spill.write(side, bucket, key, digest);
    };
    let (points, rows) = reading.both(
        |key, row| fold(Side::Qdrant, &theirs, key, row),
        |key, row| fold(Side::Table, &ours, key, row),
        task,
    )?;
    spill
        .finish()
        .with_context(|| format!("writing the spill files in {}", spill.dir().display()))?;
    let differing = ours.differing(&theirs);
    drop((ours, theirs));
    let mut report = PassReport {
        collection: name.clone(),
        points,
        rows,
        differing_buckets: differing.len(),
        ..PassReport::default()
    };
    let mut wanted = vec![false; BUCKETS];
    for d in &differing {
        wanted[d.bucket] = true;
    }
    let mut repair = Repair {
        source,
        table,
        writer,
        loader: Loader::new(target, settings.load),
        ui,
        rows: Vec::new(),
        buf: Vec::new(),
    };
    for partition in Spill::partitions(&wanted) {
        let read = |side| {
            spill
                .read(side, partition, &wanted)
                .with_context(|| format!("reading the spill files in {}", spill.dir().display()))
        };
        let delta = delta(read(Side::Qdrant)?, read(Side::Table)?);
        report.differing_ids += delta.len() as u64;
        let delta: Vec<(PointKey, bool)> = delta.into_iter().collect();
        for batch in delta.chunks(REPAIR_BATCH) {
            repair.batch(batch, &mut report)?;
        }
    }
    report.seconds = started.elapsed().as_secs_f64();
    Ok(report)
}

/// The ids of one partition's differing buckets that differ, each with whether the table has
/// it: a digest that differs, an id one side lacks, or an id the table holds more than once.
fn delta(qdrant: Vec<(PointKey, u128)>, table: Vec<(PointKey, u128)>) -> BTreeMap<PointKey, bool> {
    let mut rows: HashMap<PointKey, (u128, u32)> = HashMap::with_capacity(table.len());
    for (key, digest) in table {
        rows.entry(key).or_insert((digest, 0)).1 += 1;
    }
    let mut delta = BTreeMap::new();
    for (key, digest) in qdrant {
        match rows.remove(&key) {
            Some((d, 1)) if d == digest => {}
            Some(_) => {
                delta.insert(key, true);
            }
            None => {
                delta.insert(key, false);
            }
        }
    }
    delta.extend(rows.into_keys().map(|key| (key, true)));
    delta
}

/// What repairs one collection's table, a batch at a time.
struct Repair<'a> {
    source: &'a Source,
    table: &'a Table,
    writer: &'a TableWriter,
    loader: Loader<'a>,
    ui: &'a Ui,
    rows: Vec<u8>,
    buf: Vec<u8>,
}

impl Repair<'_> {
    /// Reads `batch`'s points by id, replaces their rows, and reads them once more.
    fn batch(&mut self, batch: &[(PointKey, bool)], report: &mut PassReport) -> anyhow::Result<()> {
        let name = &self.table.schema.name;
        let ids: Vec<PointKey> = batch.iter().map(|(key, _)| *key).collect();
        let written = digests(
            self.source,
            self.table,
            &ids,
            Some((self.writer, &mut self.rows)),
        )?;
        let (writer, rows, buf) = (self.writer, &self.rows, &mut self.buf);
        let expected = written.len() as u64;
        let ui = self.ui;
        self.loader
            .run(
                |client| writer.replace(client, &ids, rows, expected, buf),
                |failure, backoff, attempt, attempts| {
                    ui.warn(&format!(
                        "{name}: repairing {} id(s): {}; retrying on a fresh connection in \
                         {backoff:?} (attempt {attempt}/{attempts})",
                        ids.len(),
                        describe(failure)
                    ))
                },
            )
            .map_err(|failure| {
                anyhow::anyhow!(
                    "{name}: repairing ids {}..={}: {}",
                    ids[0],
                    ids[ids.len() - 1],
                    describe(&failure)
                )
            })?;
        report.upserted += expected;
        report.deleted += batch
            .iter()
            .filter(|(key, in_table)| *in_table && !written.contains_key(key))
            .count() as u64;
        let again = digests(self.source, self.table, &ids, None)?;
        report.changed_again += ids
            .iter()
            .filter(|key| written.get(key) != again.get(key))
            .count() as u64;
        Ok(())
    }
}

/// The canonical digests of the points Qdrant has of `ids` (an id it lacks is left out), and
/// with `encode`, those points encoded as the table's COPY stream.
fn digests(
    source: &Source,
    table: &Table,
    ids: &[PointKey],
    encode: Option<(&TableWriter, &mut Vec<u8>)>,
) -> anyhow::Result<HashMap<PointKey, u128>> {
    let name = &table.schema.name;
    let (points, exact) = source
        .get_points(name, ids)
        .with_context(|| format!("reading {} point(s) of {name:?} by id", ids.len()))?;
    let mut digests = HashMap::with_capacity(points.len());
    let mut row = CanonicalRow::default();
    for point in exact.points(&points) {
        let key = table
            .form
            .of_point(point, &mut row)
            .with_context(|| format!("collection {name:?}"))?;
        digests.insert(key, digest(row.bytes()));
    }
    if let Some((writer, rows)) = encode {
        writer
            .encode(exact.points(&points), rows)
            .with_context(|| format!("collection {name:?}"))?;
    }
    Ok(digests)
}

fn describe(failure: &UnitFailure) -> String {
    match failure {
        UnitFailure::Connect(e) => format!("{e:#}"),
        UnitFailure::Copy(e) => crate::progress::error_chain(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_delta_is_every_id_that_differs_or_one_side_lacks_or_the_table_holds_twice() {
        let n = PointKey::Num;
        let qdrant = vec![(n(1), 10), (n(2), 20), (n(3), 30), (n(5), 50)];
        let table = vec![(n(1), 10), (n(2), 21), (n(4), 40), (n(5), 50), (n(5), 50)];
        let delta: Vec<(PointKey, bool)> = delta(qdrant, table).into_iter().collect();
        assert_eq!(
            delta,
            vec![(n(2), true), (n(3), false), (n(4), true), (n(5), true)]
        );
    }
}
