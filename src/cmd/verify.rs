//! `qdrant2pg verify`: the guide's step 3 — done by the tool, exactly, not by eye.
//!
//! For each collection: Qdrant's exact count against `count(*)`, then content, every row and
//! point reduced to the canonical form of `postgres::compare` (vectors bit for bit, payloads as
//! JSON values). `--sample N` reads N points spread over the id space, and their rows by id.
//! `--full` reads everything, both sides at once and each in parallel — Qdrant with export's
//! cursors, the table in binary over ctid ranges (`postgres::scan`) — and folds every row into
//! digest buckets by id (`sink::digest`): neither side's order nor an index matters, and memory
//! stays fixed. Where buckets differ, both sides list their ids again (ids only), keeping those
//! that fall into the differing buckets; just those rows are read again from both sides (the
//! table's in one filtered scan, or through an index on `id`) and compared by digest, and the
//! first that differ are named with what differs — never the values. Any difference exits 1.
//! With `--snapshot` the points come from snapshot files.

use std::collections::{BTreeSet, HashMap};
use std::process::ExitCode;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use anyhow::{Context, bail};

use crate::cmd::export::range_count;
use crate::cmd::verify_search::{self, SearchArgs, read_queries};
use crate::config::EndpointArgs;
use crate::config::postgres::Target;
use crate::config::qdrant::ReadTuning;
use crate::point_id::PointKey;
use crate::postgres::catalog::table_columns;
use crate::postgres::compare::{BadTableId, CanonicalRow, RowForm, write_id};
use crate::postgres::ident::qualified;
use crate::postgres::scan::{
    Part, TableScan, default_parts, has_tid_range_scans, heap_blocks, ids_condition, read_parts,
    rows_by_id, tile,
};
use crate::progress::{OutputArgs, Task, Ui};
use crate::sink::digest::{BUCKETS, Buckets, Differing, bucket_of, digest};
use crate::source::Source;
use crate::source::cursor::{PageReader, Scheduler, Work};
use crate::source::parallel::read_parallel;
use crate::source::plan::IdSpan;
use crate::source::qdrant::Fetch;
use crate::source::schema::CollectionSchema;
use crate::source::snapshot::SnapshotArgs;

/// Differences listed per collection before the rest are only counted.
const SHOWN_DIFFERENCES: usize = 10;
/// Ids per request when reading points and rows by id.
const BY_ID_CHUNK: usize = 256;
/// Rows of differing buckets drilled into in one run: their ids are held in memory (about 64
/// bytes each) and each is read by id from both sides. Buckets beyond it are counted, not
/// drilled: the first differences named are what a user fixes first, and a table that differs
/// in more rows needs no finer list.
const DRILL_ROWS: u64 = 1 << 17;
/// Ids per page when listing ids alone: a page of ids is small, so few round trips.
const ID_PAGE: u32 = 10_000;

/// `qdrant2pg verify` flags.
#[derive(Debug, clap::Args)]
pub struct VerifyArgs {
    #[command(flatten)]
    pub ends: EndpointArgs,
    #[command(flatten)]
    pub snapshots: SnapshotArgs,
    /// A collection to verify (repeatable). Default: the YAML's list, else every collection.
    #[arg(long = "collection", value_name = "NAME")]
    pub collections: Vec<String>,
    /// Compare this many points spread over the id space.
    #[arg(
        long,
        default_value_t = 1000,
        value_name = "N",
        conflicts_with = "full"
    )]
    pub sample: usize,
    /// Compare every point.
    #[arg(long)]
    pub full: bool,
    #[command(flatten)]
    pub tuning: ReadTuning,
    /// PostgreSQL connections reading the table for --full.
    #[arg(long, short = 'j', default_value_t = 2, value_name = "N")]
    pub connections: usize,
    /// Parts (ctid ranges) the table is cut into for --full; 1 reads it in one plain scan.
    /// Default: 4 per connection where the server has TID range scans (PostgreSQL 14 and
    /// later) and the table has 8 MB per part, else 1.
    #[arg(long, value_name = "N")]
    pub table_parts: Option<u32>,
    #[command(flatten)]
    pub parity: SearchArgs,
}

/// What one collection's check found.
#[derive(Default)]
struct Findings {
    checked: u64,
    differences: Vec<String>,
    more: u64,
    /// Said after the differences: what was not looked into.
    note: Option<String>,
}

impl Findings {
    fn differ(&mut self, what: String) {
        if self.differences.len() < SHOWN_DIFFERENCES {
            self.differences.push(what);
        } else {
            self.more += 1;
        }
    }

    fn is_clean(&self) -> bool {
        self.differences.is_empty()
    }
}

/// The table side of one collection.
struct Table {
    schema: CollectionSchema,
    /// Qualified and quoted.
    name: String,
    form: RowForm,
}

impl Table {
    fn scan(&self) -> TableScan<'_> {
        TableScan {
            table: &self.name,
            columns: self.form.columns(),
            only: None,
        }
    }
}

pub fn run(args: VerifyArgs, output: &OutputArgs) -> anyhow::Result<ExitCode> {
    let ui = Ui::new(output);
    let warn = |m: &str| ui.warn(m);
    let (source, target) = args.ends.load(&warn)?;
    let wanted = source.export.wanted(&args.collections);
    let reader = Source::open(
        &args.ends.qdrant,
        &source.qdrant,
        args.ends.source_config.as_deref(),
        &args.snapshots,
        &wanted,
    )?;
    let names = reader.collections(&wanted)?;
    let user_queries = match &args.parity.queries {
        Some(path) => read_queries(path)?,
        None => Vec::new(),
    };
    let mut db = target.connect().context("connecting to the target")?;
    let mut all_clean = true;
    let mut searches = Vec::new();
    let mut out = String::new();
    for name in &names {
        let table = describe_table(&mut db, &target.schema, name, &reader)?;
        let qdrant_count = reader.count_exact(name)?;
        let task = ui.task(name, args.full.then_some(qdrant_count));
        let table_count: i64 = db
            .query_one(&format!("SELECT count(*) FROM {}", table.name), &[])
            .with_context(|| format!("counting {}", table.name))?
            .get(0);
        let span = IdSpan::probe(|k| reader.first_at_or_after(name, k))?;
        let mut findings = if args.full {
            verify_full(&reader, &target, &table, &span, qdrant_count, &args, &task)?
        } else {
            let findings = verify_sample(&reader, &mut db, &table, &span, args.sample)?;
            task.add(findings.checked, 0);
            findings
        };
        if table_count as u64 != qdrant_count {
            findings.differences.insert(
                0,
                format!("count: Qdrant has {qdrant_count} points, the table {table_count} rows"),
            );
        }
        let searched = if args.parity.wanted() {
            let server = reader.server().context(
                "verify --search compares with Qdrant's own search: it needs a Qdrant server, \
                 not --snapshot",
            )?;
            let sample = match args.parity.search {
                Some(n) => reader.keys_spread(name, &span, n)?,
                None => Vec::new(),
            };
            verify_search::check_collection(
                server,
                &mut db,
                &target.schema,
                &table.schema,
                &sample,
                &user_queries,
                &args.parity,
            )?
        } else {
            Vec::new()
        };
        let clean = findings.is_clean();
        all_clean &= clean && searched.iter().all(|s| s.passed);
        task.finish(if clean { "ok" } else { "DIFFERS" });
        out.push_str(&format!(
            "{name}: Qdrant {qdrant_count} points, table {} {table_count} rows, {} compared ({}): {}\n",
            table.name,
            findings.checked,
            if args.full { "full" } else { "sample" },
            if clean { "identical" } else { "DIFFERENT" }
        ));
        for d in &findings.differences {
            out.push_str(&format!("  - {d}\n"));
        }
        if findings.more > 0 {
            out.push_str(&format!("  … and {} more difference(s)\n", findings.more));
        }
        if let Some(note) = &findings.note {
            out.push_str(&format!("  {note}\n"));
        }
        for s in &searched {
            out.push_str(&format!(
                "  {}\n",
                s.line(args.parity.top, args.parity.min_recall)
            ));
        }
        searches.extend(searched);
    }
    print!("{out}");
    if let Some(why) = reader.inexact_because() {
        ui.warn(&format!(
            "payload numbers between 2^63 and 2^64 were compared as Qdrant's gRPC API sends \
             them, the nearest doubles, because they could not be read exactly ({why}): a table \
             holding such integers exactly is reported as different"
        ));
    }
    if args.parity.wanted() {
        ui.record("search", serde_json::to_value(&searches)?);
    }
    ui.finish("verify", output)?;
    Ok(if all_clean {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// Reads the table's columns from the catalog and matches them to the collection's layout.
fn describe_table(
    db: &mut postgres::Client,
    schema: &str,
    collection: &str,
    reader: &Source,
) -> anyhow::Result<Table> {
    let name = qualified(Some(schema), collection);
    let columns = table_columns(db, schema, collection)
        .with_context(|| format!("reading the columns of {name}"))?;
    if columns.is_empty() {
        bail!("table {name} does not exist (import or migrate collection {collection:?} first)");
    }
    let payload = match columns.iter().find(|(n, _)| n == "payload") {
        Some((_, t)) if t == "jsonb" => crate::layout::PayloadType::Jsonb,
        _ => crate::layout::PayloadType::Json,
    };
    let schema =
        CollectionSchema::from_info(collection, reader.collection_info(collection)?, payload)?;
    let form = RowForm::new(&schema.layout, &columns)
        .with_context(|| format!("table {name} does not fit collection {collection:?}"))?;
    Ok(Table { schema, name, form })
}

/// `--sample N`: ids spread evenly over where ids lie, read by id on both sides.
fn verify_sample(
    reader: &Source,
    db: &mut postgres::Client,
    table: &Table,
    span: &IdSpan,
    n: usize,
) -> anyhow::Result<Findings> {
    let keys = reader.keys_spread(&table.schema.name, span, n)?;
    let mut findings = Findings {
        checked: keys.len() as u64,
        ..Findings::default()
    };
    for chunk in keys.chunks(BY_ID_CHUNK) {
        for (key, what) in compare_by_id(reader, db, table, chunk)? {
            findings.differ(format!("id {key}: {what}"));
        }
    }
    Ok(findings)
}

/// Reads `keys` by id from both sides and says what differs, in id order.
fn compare_by_id(
    reader: &Source,
    db: &mut postgres::Client,
    table: &Table,
    keys: &[PointKey],
) -> anyhow::Result<Vec<(PointKey, String)>> {
    let mut rows: HashMap<PointKey, (CanonicalRow, usize)> = HashMap::new();
    rows_by_id(
        db,
        &table.scan(),
        table.form.id_column().sql_type(),
        keys,
        |fields| {
            let mut row = CanonicalRow::default();
            let key = table.form.of_table(fields, &mut row)?;
            rows.entry(key).or_insert((row, 0)).1 += 1;
            Ok::<_, BadTableId>(())
        },
    )?;
    let mut points: HashMap<PointKey, CanonicalRow> = HashMap::new();
    let (found, exact) = reader.get_points(&table.schema.name, keys)?;
    for point in exact.points(&found) {
        let mut row = CanonicalRow::default();
        let key = table
            .form
            .of_point(point, &mut row)
            .with_context(|| format!("collection {:?}", table.schema.name))?;
        points.insert(key, row);
    }
    let mut found = Vec::new();
    for &key in keys {
        let what = match (points.get(&key), rows.get(&key)) {
            (None, None) => continue,
            (Some(_), None) => "missing from the table".to_owned(),
            (None, Some(_)) => "in the table but not in Qdrant".to_owned(),
            (Some(_), Some((_, n))) if *n > 1 => format!("{n} rows in the table"),
            (Some(point), Some((row, _))) => match table.form.difference(row, point) {
                Some(what) => what,
                None => continue,
            },
        };
        found.push((key, what));
    }
    found.sort_by_key(|f| f.0);
    Ok(found)
}

/// `--full`: both sides folded into digest buckets; differing buckets drilled down to ids.
fn verify_full(
    reader: &Source,
    target: &Target,
    table: &Table,
    span: &IdSpan,
    count: u64,
    args: &VerifyArgs,
    task: &Task,
) -> anyhow::Result<Findings> {
    let mut db = target.connect().context("connecting to the target")?;
    let blocks = heap_blocks(&mut db, &table.name)
        .with_context(|| format!("reading the size of {}", table.name))?;
    let parts = match args.table_parts {
        Some(parts) => parts,
        None => default_parts(
            has_tid_range_scans(&mut db).context("reading the server version")?,
            args.connections,
            blocks,
        ),
    };
    let parts = tile(blocks, parts);
    let reading = Reading {
        reader,
        target,
        table,
        span,
        count,
        args,
        parts,
    };

    let (ours, theirs) = (Buckets::default(), Buckets::default());
    let points = reading.both(
        |row| theirs.add(row.id(), row.bytes()),
        |row| ours.add(row.id(), row.bytes()),
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

/// One collection and its table, read whole.
struct Reading<'a> {
    reader: &'a Source,
    target: &'a Target,
    table: &'a Table,
    span: &'a IdSpan,
    count: u64,
    args: &'a VerifyArgs,
    parts: Vec<Part>,
}

impl Reading<'_> {
    /// Which of `ids` (sorted) differ between the two sides: their rows read by id from both,
    /// the table's in one scan over the parts (or through an index on `id`), compared by digest.
    fn differing_rows(&self, ids: &[PointKey]) -> anyhow::Result<Vec<PointKey>> {
        let table = self.table;
        let rows: Mutex<HashMap<PointKey, (u128, u32)>> = Mutex::new(HashMap::new());
        if !ids.is_empty() {
            let scan = TableScan {
                only: Some(ids_condition(table.form.id_column().sql_type(), ids)),
                ..table.scan()
            };
            read_parts(
                self.target,
                &scan,
                self.parts.clone(),
                self.args.connections,
                CanonicalRow::default,
                |row, fields| {
                    let key = table.form.of_table(fields, row)?;
                    let mut rows = rows.lock().unwrap_or_else(|e| e.into_inner());
                    rows.entry(key).or_insert((digest(row.bytes()), 0)).1 += 1;
                    Ok::<_, BadTableId>(())
                },
            )
            .with_context(|| format!("reading table {}", table.name))?;
        }
        let rows = rows.into_inner().unwrap_or_else(|e| e.into_inner());
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

    /// The ids either side holds whose canonical id falls into a `wanted` bucket: both sides
    /// read again, ids only.
    fn ids_in(&self, wanted: &[bool]) -> anyhow::Result<BTreeSet<PointKey>> {
        let found = Mutex::new(BTreeSet::new());
        let keep = |key: PointKey| {
            let mut id = Vec::with_capacity(17);
            write_id(&mut id, key);
            if wanted[bucket_of(&id)] {
                found.lock().unwrap_or_else(|e| e.into_inner()).insert(key);
            }
        };
        let table = self.table;
        let id_column = ["id".to_owned()];
        let scan = TableScan {
            table: &table.name,
            columns: &id_column,
            only: None,
        };
        std::thread::scope(|s| {
            let rows = s.spawn(|| {
                read_parts(
                    self.target,
                    &scan,
                    self.parts.clone(),
                    self.args.connections,
                    || (),
                    |_, fields| {
                        keep(table.form.table_id(fields.first().copied().flatten())?);
                        Ok::<_, BadTableId>(())
                    },
                )
            });
            let mut offset = Some(PointKey::MIN);
            while let Some(at) = offset {
                let page = self
                    .reader
                    .scroll(&table.schema.name, at, ID_PAGE, Fetch::IdsOnly)?;
                for point in &page.points {
                    keep(
                        PointKey::from_proto(point.id.as_ref())
                            .with_context(|| format!("collection {:?}", table.schema.name))?,
                    );
                }
                offset = page.next;
            }
            rows.join()
                .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
                .with_context(|| format!("reading table {}", table.name))?;
            anyhow::Ok(())
        })?;
        Ok(found.into_inner().unwrap_or_else(|e| e.into_inner()))
    }

    /// Reads both sides at once, each in parallel, handing every point and every row in
    /// canonical form to its side's fold. Returns the points read.
    fn both(
        &self,
        on_point: impl Fn(&CanonicalRow) + Sync,
        on_row: impl Fn(&CanonicalRow) + Sync,
        task: &Task,
    ) -> anyhow::Result<u64> {
        let table = self.table;
        std::thread::scope(|s| {
            let rows = s.spawn(|| {
                read_parts(
                    self.target,
                    &table.scan(),
                    self.parts.clone(),
                    self.args.connections,
                    CanonicalRow::default,
                    |row, fields| {
                        table.form.of_table(fields, row)?;
                        on_row(row);
                        Ok::<_, BadTableId>(())
                    },
                )
            });
            let points = self.points(&on_point, task);
            let rows = rows
                .join()
                .unwrap_or_else(|panic| std::panic::resume_unwind(panic));
            rows.with_context(|| format!("reading table {}", table.name))?;
            points
        })
    }

    /// Qdrant's side: export's cursors and page workers.
    fn points(
        &self,
        on_point: &(impl Fn(&CanonicalRow) + Sync),
        task: &Task,
    ) -> anyhow::Result<u64> {
        let tuning = &self.args.tuning;
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
                    self.table
                        .form
                        .of_point(point, &mut row)
                        .with_context(|| format!("collection {collection:?}"))?;
                    on_point(&row);
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
