//! One sync pass over one collection: both sides read whole into digest buckets, exactly as
//! `verify --full` reads them (`verify::full::Reading`), each row's `(bucket, id, digest)` also
//! written to the scratch disk ([`Spill`]); then, partition by partition, the ids of the
//! differing buckets — every id whose digest differs or that one side lacks — repaired in
//! batches on `-j` connections at once ([`TableWriter::replace`]): read again from Qdrant by id (vectors and exact
//! payloads), the table's rows of those ids deleted and Qdrant's written, in one transaction.
//! Right after its commit each batch is read from Qdrant once more: an id whose point changed
//! again in between is counted, and the pass does not call the two sides identical.
//!
//! A read that fails — Qdrant unreachable, a point it cannot serve, a timeout — ends the pass
//! with an error: what is deleted is only ever what a successful read by id proved gone, and a
//! batch commits whole or not at all.

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
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
use crate::sync::cache::{Fingerprint, Kept, KeptStates, RowVersions};
use crate::sync::spill::{Side, Spill};
use crate::sync::target::TableWriter;
use crate::verify::compare::CanonicalRow;
use crate::verify::digest::{BUCKETS, Buckets, bucket_of, bucket_of_key, digest};
use crate::verify::full::{FullRead, Reading};
use crate::verify::table::Table;

/// Ids per repair batch (one read by id, one transaction): 512 points of 768 floats are about
/// 1.5 MB of COPY data, large enough that a commit's round trip is small beside its rows, small
/// enough that a batch holds its locks briefly while the application keeps writing to Qdrant.
const REPAIR_BATCH: usize = 512;
/// With the table's buckets kept from the last pass, the table's rows of the differing buckets
/// are read by id up to this many (their ids and digests held in memory, about 64 bytes each);
/// beyond it the table is read whole, as without kept buckets.
const BY_ID_ROWS: u64 = 1 << 17;

/// What a pass needs beyond the collection and its table.
pub struct PassSettings<'a> {
    pub read: &'a FullRead,
    /// Where the spill files go.
    pub scratch: &'a std::path::Path,
    pub load: LoadSettings,
    /// Read the table whole every pass, trusting no kept buckets.
    pub full_read: bool,
}

/// What one pass over one collection did.
#[derive(Clone, Debug, Default, Serialize)]
pub struct PassReport {
    pub collection: String,
    /// Points read from Qdrant.
    pub points: u64,
    /// Rows read from the table: all of them, or (`table_read` = `by id`) just the differing
    /// buckets' rows.
    pub rows: u64,
    /// `whole`, or `by id` where the last pass's buckets were still the table's.
    pub table_read: &'static str,
    pub differing_buckets: usize,
    /// Ids whose digests differed, or that one side lacked.
    pub differing_ids: u64,
    /// Rows written from Qdrant's points.
    pub upserted: u64,
    /// Rows deleted because Qdrant no longer has their point.
    pub deleted: u64,
    /// Repaired ids whose point Qdrant changed again before the pass ended.
    pub changed_again: u64,
    /// The whole pass, and of it the repairs (reading by id, writing, reading again).
    pub seconds: f64,
    pub repair_seconds: f64,
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
            "pass {pass}: {}: Qdrant {} points, table {} rows ({}), {} differing bucket(s), {} \
             id(s) differ: {} upserted, {} deleted, {:.2} s ({:.2} s repairing): {outcome}",
            self.collection,
            self.points,
            self.rows,
            self.table_read,
            self.differing_buckets,
            self.differing_ids,
            self.upserted,
            self.deleted,
            self.seconds,
            self.repair_seconds
        )
    }
}

/// One collection's table and what its passes keep.
pub struct Synced<'a> {
    pub table: &'a Table,
    pub writer: &'a TableWriter,
    pub versions: &'a RowVersions,
    pub kept: &'a KeptStates,
}

/// Runs one pass over `synced`'s collection.
pub fn run_pass(
    source: &Source,
    target: &Target,
    synced: &Synced<'_>,
    settings: &PassSettings<'_>,
    ui: &Ui,
    task: &Task,
) -> anyhow::Result<PassReport> {
    let started = Instant::now();
    let table = synced.table;
    let name = &table.schema.name;
    let count = source.count_exact(name)?;
    let span = IdSpan::probe(|k| source.first_at_or_after(name, k))
        .with_context(|| format!("probing the ids of collection {name:?}"))?;
    let reading = Reading::new(source, target, table, &span, count, settings.read)?;
    let mut db = target.connect().context("connecting to the target")?;
    let state = |what: &'static str| {
        move |e| anyhow::Error::new(e).context(format!("{what} the kept state of {name:?}"))
    };
    let fingerprint = synced
        .versions
        .fingerprint(&mut db)
        .with_context(|| format!("fingerprinting {}", table.name))?;
    let kept = match settings.full_read {
        true => None,
        false => synced
            .kept
            .get(&mut db, name)
            .map_err(state("reading"))?
            .filter(|kept| kept.fingerprint == fingerprint),
    };
    let spill = Spill::create(settings.scratch).with_context(|| {
        format!(
            "creating the spill files in {} (--scratch)",
            settings.scratch.display()
        )
    })?;
    let theirs = Buckets::default();
    let fold = |side: Side, buckets: &Buckets, key: PointKey, row: &CanonicalRow| {
        let (bucket, digest) = (bucket_of(row.id()), digest(row.bytes()));
        buckets.add_digest(bucket, digest);
        spill.write(side, bucket, key, digest);
    };
    let (ours, points, mut rows, mut table_read) = match kept {
        Some(kept) => {
            let points = reading.points(&|key, row| fold(Side::Qdrant, &theirs, key, row), task)?;
            (kept.buckets, points, 0, TableRead::ById)
        }
        None => {
            let ours = Buckets::default();
            let (points, rows) = reading.both(
                |key, row| fold(Side::Qdrant, &theirs, key, row),
                |key, row| fold(Side::Table, &ours, key, row),
                task,
            )?;
            (ours, points, rows, TableRead::Whole)
        }
    };
    let differing = ours.differing(&theirs);
    drop(theirs);
    let mut wanted = vec![false; BUCKETS];
    for d in &differing {
        wanted[d.bucket] = true;
    }
    // The kept buckets say how many rows the differing ones hold: few are read by id, many
    // make the table read whole after all.
    let by_id = match table_read {
        TableRead::ById => {
            let held: u64 = differing.iter().map(|d| ours.rows(d.bucket)).sum();
            if held <= BY_ID_ROWS {
                let ids = reading.table_ids_in(&wanted)?;
                Some(reading.table_digests(&ids)?)
            } else {
                rows = reading.rows(&|key, row| {
                    spill.write(Side::Table, bucket_of(row.id()), key, digest(row.bytes()))
                })?;
                table_read = TableRead::Whole;
                None
            }
        }
        TableRead::Whole => None,
    };
    spill
        .finish()
        .with_context(|| format!("writing the spill files in {}", spill.dir().display()))?;
    let mut by_partition: BTreeMap<usize, Vec<(PointKey, u128)>> = BTreeMap::new();
    for (key, digest) in by_id.into_iter().flatten() {
        rows += 1;
        by_partition
            .entry(Spill::partition_of(bucket_of_key(key)))
            .or_default()
            .push((key, digest));
    }
    let mut report = PassReport {
        collection: name.clone(),
        points,
        rows,
        table_read: table_read.words(),
        differing_buckets: differing.len(),
        ..PassReport::default()
    };
    if !differing.is_empty() {
        // A pass that stops before its end leaves nothing to trust.
        synced
            .kept
            .forget(&mut db, name)
            .map_err(state("dropping"))?;
    }
    let repairing = Instant::now();
    let repairs = Repairs {
        source,
        table,
        writer: synced.writer,
        versions: synced.versions,
        target,
        load: settings.load,
        ui,
        buckets: &ours,
        fingerprint: Mutex::new(fingerprint),
        failed: AtomicBool::new(false),
    };
    let repaired = repairs.run(settings.read.connections, |send| {
        let mut pending: Vec<(PointKey, Vec<u128>)> = Vec::with_capacity(REPAIR_BATCH);
        for partition in Spill::partitions(&wanted) {
            let read = |side| {
                spill.read(side, partition, &wanted).with_context(|| {
                    format!("reading the spill files in {}", spill.dir().display())
                })
            };
            let table_side = match table_read {
                TableRead::Whole => read(Side::Table)?,
                TableRead::ById => by_partition.remove(&partition).unwrap_or_default(),
            };
            let delta = delta(read(Side::Qdrant)?, table_side);
            report.differing_ids += delta.len() as u64;
            // Batches fill across partitions: a small delta spread over many buckets is still
            // a few large transactions, not one per partition.
            pending.extend(delta);
            while pending.len() >= REPAIR_BATCH {
                let rest = pending.split_off(REPAIR_BATCH);
                if !send(std::mem::replace(&mut pending, rest)) {
                    return Ok(());
                }
            }
        }
        if !pending.is_empty() {
            send(pending);
        }
        Ok(())
    })?;
    report.upserted = repaired.upserted;
    report.deleted = repaired.deleted;
    report.changed_again = repaired.changed_again;
    let fingerprint = repairs
        .fingerprint
        .into_inner()
        .unwrap_or_else(|e| e.into_inner());
    report.repair_seconds = repairing.elapsed().as_secs_f64();
    synced
        .kept
        .keep(
            &mut db,
            name,
            &Kept {
                fingerprint,
                buckets: ours,
            },
            settings.load.commits,
        )
        .map_err(|e| {
            anyhow::Error::new(e).context(format!("writing the kept state of {name:?}"))
        })?;
    report.seconds = started.elapsed().as_secs_f64();
    Ok(report)
}

/// How a pass read the table.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum TableRead {
    Whole,
    ById,
}

impl TableRead {
    fn words(self) -> &'static str {
        match self {
            TableRead::Whole => "whole",
            TableRead::ById => "by id",
        }
    }
}

/// The ids of one partition's differing buckets that differ, each with the digests of the
/// table's rows of it (none where the table lacks it): a digest that differs, an id one side
/// lacks, or an id the table holds more than once.
fn delta(
    qdrant: Vec<(PointKey, u128)>,
    table: Vec<(PointKey, u128)>,
) -> BTreeMap<PointKey, Vec<u128>> {
    let mut rows: HashMap<PointKey, Vec<u128>> = HashMap::with_capacity(table.len());
    for (key, digest) in table {
        rows.entry(key).or_default().push(digest);
    }
    let mut delta = BTreeMap::new();
    for (key, digest) in qdrant {
        match rows.remove(&key) {
            Some(held) if held == [digest] => {}
            held => {
                delta.insert(key, held.unwrap_or_default());
            }
        }
    }
    delta.extend(rows);
    delta
}

/// What repairs one collection's table, a batch at a time on each of several connections,
/// keeping its buckets and fingerprint up to date with what it writes. Batches hold disjoint
/// ids and each is one transaction, so they may commit in any order; on pgvector most of a
/// batch's time is the server inserting each new row into the HNSW graphs, which runs on as
/// many cores as there are connections.
struct Repairs<'a> {
    source: &'a Source,
    table: &'a Table,
    writer: &'a TableWriter,
    versions: &'a RowVersions,
    target: &'a Target,
    load: LoadSettings,
    ui: &'a Ui,
    buckets: &'a Buckets,
    fingerprint: Mutex<Fingerprint>,
    /// Set when a batch fails: the other connections stop before their next batch.
    failed: AtomicBool,
}

/// One repair connection's session and buffers.
struct Connection<'a> {
    loader: Loader<'a>,
    rows: Vec<u8>,
    buf: Vec<u8>,
}

/// What repairs did.
#[derive(Default)]
struct Repaired {
    upserted: u64,
    deleted: u64,
    changed_again: u64,
}

/// A batch of differing ids, each with the digests of the table's rows of it.
type Batch = Vec<(PointKey, Vec<u128>)>;

impl Repairs<'_> {
    /// Repairs every batch `produce` sends (`send` returns false once the repairs have
    /// stopped on a failure) over `connections` connections; the first failure is the
    /// result.
    fn run(
        &self,
        connections: usize,
        produce: impl FnOnce(&dyn Fn(Batch) -> bool) -> anyhow::Result<()>,
    ) -> anyhow::Result<Repaired> {
        let connections = connections.max(1);
        let (send, receive) = crossbeam_channel::bounded::<Batch>(connections);
        std::thread::scope(|scope| {
            let workers: Vec<_> = (0..connections)
                .map(|_| {
                    let receive = receive.clone();
                    scope.spawn(move || self.work(receive))
                })
                .collect();
            drop(receive);
            let produced =
                produce(&|batch| !self.failed.load(Ordering::Relaxed) && send.send(batch).is_ok());
            drop(send);
            let mut total = Repaired::default();
            let mut failure = None;
            for worker in workers {
                match worker.join() {
                    Ok(Ok(done)) => {
                        total.upserted += done.upserted;
                        total.deleted += done.deleted;
                        total.changed_again += done.changed_again;
                    }
                    Ok(Err(e)) => {
                        failure.get_or_insert(e);
                    }
                    Err(panic) => std::panic::resume_unwind(panic),
                }
            }
            match failure {
                Some(e) => Err(e),
                None => produced.map(|()| total),
            }
        })
    }

    /// One connection's share: batches until there are none, or until one (anyone's) fails.
    fn work(&self, batches: crossbeam_channel::Receiver<Batch>) -> anyhow::Result<Repaired> {
        let mut connection = Connection {
            loader: Loader::new(self.target, self.load),
            rows: Vec::new(),
            buf: Vec::new(),
        };
        let mut done = Repaired::default();
        for batch in batches {
            if self.failed.load(Ordering::Relaxed) {
                break;
            }
            if let Err(e) = self.batch(&mut connection, &batch, &mut done) {
                self.failed.store(true, Ordering::Relaxed);
                return Err(e);
            }
        }
        Ok(done)
    }

    /// Reads `batch`'s points by id, replaces their rows, and reads them once more.
    fn batch(
        &self,
        connection: &mut Connection<'_>,
        batch: &[(PointKey, Vec<u128>)],
        report: &mut Repaired,
    ) -> anyhow::Result<()> {
        let name = &self.table.schema.name;
        let ids: Vec<PointKey> = batch.iter().map(|(key, _)| *key).collect();
        let written = digests(
            self.source,
            self.table,
            &ids,
            Some((self.writer, &mut connection.rows)),
        )?;
        let (writer, versions) = (self.writer, self.versions);
        let (rows, buf) = (&connection.rows, &mut connection.buf);
        let expected = written.len() as u64;
        let ui = self.ui;
        let replaced = connection
            .loader
            .run(
                |client| writer.replace(client, versions, &ids, rows, expected, buf),
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
        self.fingerprint
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .apply(&replaced.written, &replaced.deleted);
        for (key, held) in batch {
            let bucket = bucket_of_key(*key);
            for &old in held {
                self.buckets.remove_digest(bucket, old);
            }
            if let Some(&new) = written.get(key) {
                self.buckets.add_digest(bucket, new);
            }
        }
        report.upserted += expected;
        report.deleted += batch
            .iter()
            .filter(|(key, held)| !held.is_empty() && !written.contains_key(key))
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
        let delta: Vec<(PointKey, Vec<u128>)> = delta(qdrant, table).into_iter().collect();
        assert_eq!(
            delta,
            vec![
                (n(2), vec![21]),
                (n(3), vec![]),
                (n(4), vec![40]),
                (n(5), vec![50, 50])
            ]
        );
    }
}
