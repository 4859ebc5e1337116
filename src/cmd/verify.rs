//! `qdrant2pg verify`: the guide's step 3 — done by the tool, exactly, not by eye.
//!
//! For each collection: Qdrant's exact count against `count(*)`, then content. `--sample N`
//! compares N points spread over the id space; `--full` compares every point by walking both
//! sides in id order and merging — in parallel id ranges when the table has an index on `id`
//! (`qdrant2pg index` makes one), in one ordered scan otherwise. Vectors are compared bit for
//! bit and payloads as JSON (see `postgres::compare`). Any difference exits 1, naming the first
//! differing ids and what differs — never the values. With `--snapshot` the points come from
//! snapshot files instead of a server.

use std::process::ExitCode;
use std::sync::Mutex;

use anyhow::{Context, bail};
use postgres::fallible_iterator::FallibleIterator;
use qdrant_client::qdrant::RetrievedPoint;

use crate::cmd::verify_search::{self, SearchArgs, read_queries};
use crate::config::EndpointArgs;
use crate::config::postgres::Target;
use crate::layout::{PayloadType, VectorShape};
use crate::payload::PointRef;
use crate::point_id::{KeyRange, PointKey};
use crate::postgres::catalog::{id_is_indexed, table_columns};
use crate::postgres::compare::{ColumnForm, RealArrayText, RowText, compare_row};
use crate::postgres::ident::{qualified, quote_ident};
use crate::progress::{OutputArgs, Ui};
use crate::source::Source;
use crate::source::cursor::PageReader;
use crate::source::plan::IdSpan;
use crate::source::qdrant::Fetch;
use crate::source::schema::CollectionSchema;
use crate::source::snapshot::SnapshotArgs;

/// Differences listed per collection before the rest are only counted.
const SHOWN_DIFFERENCES: usize = 10;
/// Points per scroll page while verifying.
const PAGE: u32 = 256;

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
    /// Parallel range workers for --full (each one Qdrant and one PostgreSQL connection).
    #[arg(long, default_value_t = 4, value_name = "N")]
    pub workers: usize,
    #[command(flatten)]
    pub parity: SearchArgs,
}

/// What one collection's check found.
#[derive(Default)]
struct Findings {
    checked: u64,
    differences: Vec<String>,
    more: u64,
}

impl Findings {
    fn differ(&mut self, what: String) {
        if self.differences.len() < SHOWN_DIFFERENCES {
            self.differences.push(what);
        } else {
            self.more += 1;
        }
    }

    fn merge(&mut self, other: Findings) {
        self.checked += other.checked;
        for d in other.differences {
            self.differ(d);
        }
        self.more += other.more;
    }

    fn is_clean(&self) -> bool {
        self.differences.is_empty()
    }
}

/// The table side of one collection.
struct Table {
    name: String,
    schema: CollectionSchema,
    forms: Vec<ColumnForm>,
    /// `id::text, col::text, …, payload::text`, but `real[]` columns as they are.
    select: String,
    /// Per selected column, whether it is a `real[]` read in binary ([`RealArrayText`]).
    real_arrays: Vec<bool>,
    /// `ORDER BY` in Qdrant's id order.
    order: &'static str,
    id_type: String,
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
        let task = ui.task(name, None);
        let table = describe_table(&mut db, &target.schema, name, &reader)?;
        let qdrant_count = reader.count_exact(name)?;
        let table_count: i64 = db
            .query_one(&format!("SELECT count(*) FROM {}", table.name), &[])
            .with_context(|| format!("counting {}", table.name))?
            .get(0);
        let mut findings = Findings::default();
        if table_count as u64 != qdrant_count {
            findings.differ(format!(
                "count: Qdrant has {qdrant_count} points, the table {table_count} rows"
            ));
        }
        let span = IdSpan::probe(|k| reader.first_at_or_after(name, k))?;
        let content = if args.full {
            verify_full(&reader, &target, &table, &span, args.workers, &mut db)?
        } else {
            verify_sample(&reader, &mut db, &table, &span, args.sample)?
        };
        findings.merge(content);
        task.add(findings.checked, 0);
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
    let type_of = |column: &str| {
        columns
            .iter()
            .find(|(n, _)| n == column)
            .map(|(_, t)| t.clone())
    };
    let payload = match type_of("payload").as_deref() {
        Some("jsonb") => PayloadType::Jsonb,
        _ => PayloadType::Json,
    };
    let schema_info =
        CollectionSchema::from_info(collection, reader.collection_info(collection)?, payload)?;
    let mut select = vec!["id::text".to_owned()];
    let mut real_arrays = vec![false];
    // `real[]` is read in binary: text would be formatted by the server with whatever
    // `extra_float_digits` reaches the code doing it (see `postgres::compare`).
    let mut read = |column: &str| {
        let real = type_of(column).as_deref() == Some("real[]");
        select.push(if real {
            quote_ident(column).into_owned()
        } else {
            format!("{}::text", quote_ident(column))
        });
        real_arrays.push(real);
    };
    let mut forms = Vec::new();
    for spec in &schema_info.layout.vectors {
        let base = spec.column();
        let form = type_of(base).map_or(ColumnForm::Array, |t| ColumnForm::from_sql_type(&t));
        if spec.shape == VectorShape::Sparse && form == ColumnForm::Array {
            for suffix in ["_indices", "_values"] {
                let column = format!("{base}{suffix}");
                if type_of(&column).is_none() {
                    bail!("table {name} has no column {column:?} for sparse vector {base:?}");
                }
                read(&column);
            }
        } else {
            if type_of(base).is_none() {
                bail!("table {name} has no column {base:?} for vector {base:?}");
            }
            read(base);
        }
        forms.push(form);
    }
    select.push("payload::text".to_owned());
    real_arrays.push(false);
    // Aliases keep `ORDER BY id` on the column itself: a bare name in ORDER BY would otherwise
    // mean the output column `id::text` and sort integers as text.
    let select: Vec<String> = select
        .iter()
        .enumerate()
        .map(|(i, expr)| format!("{expr} AS c{i}"))
        .collect();
    let id_type = type_of("id").with_context(|| format!("table {name} has no id column"))?;
    let order = if id_type == "text" {
        "ORDER BY (id ~ '^[0-9]+$') DESC, CASE WHEN id ~ '^[0-9]+$' THEN id::numeric END, \
         CASE WHEN id !~ '^[0-9]+$' THEN id::uuid END"
    } else {
        "ORDER BY id"
    };
    Ok(Table {
        name,
        schema: schema_info,
        forms,
        select: select.join(", "),
        real_arrays,
        order,
        id_type,
    })
}

fn key_of_text(text: &str) -> Option<PointKey> {
    match text.parse::<u64>() {
        Ok(n) => Some(PointKey::Num(n)),
        Err(_) => uuid::Uuid::parse_str(text)
            .ok()
            .map(|u| PointKey::Uuid(u.as_u128())),
    }
}

fn key_of_point(point: &RetrievedPoint) -> anyhow::Result<PointKey> {
    Ok(PointKey::from_proto(point.id.as_ref())?)
}

/// Compares a fetched row (text fields) with a point.
fn check(
    table: &Table,
    fields: Vec<Option<String>>,
    point: PointRef<'_>,
    key: PointKey,
    findings: &mut Findings,
) {
    findings.checked += 1;
    let row = RowText {
        fields: fields.iter().map(|f| f.as_deref()).collect(),
    };
    if let Err(what) = compare_row(&table.schema.layout, &table.forms, &row, point) {
        findings.differ(format!("id {key}: {what}"));
    }
}

fn row_fields(table: &Table, row: &postgres::Row) -> anyhow::Result<Vec<Option<String>>> {
    (0..row.len())
        .map(|i| {
            Ok(if table.real_arrays[i] {
                row.try_get::<_, Option<RealArrayText>>(i)?.map(|a| a.0)
            } else {
                row.try_get::<_, Option<String>>(i)?
            })
        })
        .collect::<Result<_, postgres::Error>>()
        .with_context(|| format!("reading a row of {}", table.name))
}

/// `--sample N`: ids spread evenly over where ids lie, looked up on both sides.
fn verify_sample(
    reader: &Source,
    db: &mut postgres::Client,
    table: &Table,
    span: &IdSpan,
    n: usize,
) -> anyhow::Result<Findings> {
    let collection = &table.schema.name;
    let keys = reader.keys_spread(collection, span, n)?;
    let mut findings = Findings::default();
    for chunk in keys.chunks(PAGE as usize) {
        let (points, exact) = reader.get_points(collection, chunk)?;
        let texts: Vec<String> = chunk.iter().map(|k| k.to_string()).collect();
        let sql = format!(
            "SELECT {} FROM {} WHERE id::text = ANY($1)",
            table.select, table.name
        );
        let rows = db
            .query(&sql, &[&texts])
            .with_context(|| format!("reading {}", table.name))?;
        let mut by_key = std::collections::HashMap::new();
        for row in &rows {
            let fields = row_fields(table, row)?;
            if let Some(key) = fields[0].as_deref().and_then(key_of_text)
                && by_key.insert(key, fields).is_some()
            {
                findings.differ(format!("id {key}: more than one row in the table"));
            }
        }
        for point in exact.points(&points) {
            let key = key_of_point(point.point)?;
            match by_key.remove(&key) {
                Some(fields) => check(table, fields, point, key, &mut findings),
                None => findings.differ(format!("id {key}: missing from the table")),
            }
        }
    }
    Ok(findings)
}

/// `--full`: every point, both sides in id order, merged; ranges in parallel when `id` is
/// indexed.
fn verify_full(
    source: &Source,
    target: &Target,
    table: &Table,
    span: &IdSpan,
    workers: usize,
    db: &mut postgres::Client,
) -> anyhow::Result<Findings> {
    let indexed = id_is_indexed(db, &target.schema, &table.schema.name)
        .context("looking for an index on id")?;
    let ranges = if indexed && table.id_type != "text" {
        span.plan(workers.max(1) * 2)
    } else {
        vec![KeyRange::ALL]
    };
    let queue = Mutex::new(ranges);
    let results = Mutex::new(Vec::new());
    std::thread::scope(|s| {
        for _ in 0..workers.max(1) {
            s.spawn(|| {
                let result = (|| -> anyhow::Result<Findings> {
                    let reader = source.open_reader()?;
                    let mut db = target.connect()?;
                    let mut findings = Findings::default();
                    while let Some(range) = queue.lock().unwrap_or_else(|e| e.into_inner()).pop() {
                        findings.merge(verify_range(reader.as_ref(), &mut db, table, range)?);
                    }
                    Ok(findings)
                })();
                results
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .push(result);
            });
        }
    });
    let mut findings = Findings::default();
    for result in results.into_inner().unwrap_or_else(|e| e.into_inner()) {
        findings.merge(result?);
    }
    Ok(findings)
}

/// Merges one id range: Qdrant's scroll against the table's rows in the same order.
fn verify_range(
    reader: &dyn PageReader,
    db: &mut postgres::Client,
    table: &Table,
    range: KeyRange,
) -> anyhow::Result<Findings> {
    let collection = &table.schema.name;
    let mut findings = Findings::default();
    let (filter, params) = range_filter(&table.id_type, range);
    let sql = format!(
        "SELECT {} FROM {} {filter} {}",
        table.select, table.name, table.order
    );
    let params: Vec<&(dyn postgres::types::ToSql + Sync)> = params
        .iter()
        .map(|p| p as &(dyn postgres::types::ToSql + Sync))
        .collect();
    let mut rows = db
        .query_raw(&sql, params)
        .with_context(|| format!("reading {}", table.name))?;
    let mut pending_row = next_row(table, &mut rows)?;
    let mut offset = Some(range.lo);
    while let Some(at) = offset {
        let page = reader.scroll(collection, at, PAGE, Fetch::Everything)?;
        offset = page.next.filter(|n| range.contains(*n));
        for point in page.exact.points(&page.points) {
            let key = key_of_point(point.point)?;
            if !range.contains(key) {
                offset = None;
                break;
            }
            // Rows before this point exist only in the table.
            while let Some((row_key, _)) = &pending_row {
                if *row_key >= key {
                    break;
                }
                findings.differ(format!("id {row_key}: in the table but not in Qdrant"));
                pending_row = next_row(table, &mut rows)?;
            }
            match pending_row.take() {
                Some((row_key, fields)) if row_key == key => {
                    check(table, fields, point, key, &mut findings);
                    pending_row = next_row(table, &mut rows)?;
                }
                other => {
                    findings.differ(format!("id {key}: missing from the table"));
                    pending_row = other;
                }
            }
        }
    }
    while let Some((row_key, _)) = pending_row {
        findings.differ(format!("id {row_key}: in the table but not in Qdrant"));
        pending_row = next_row(table, &mut rows)?;
    }
    Ok(findings)
}

/// The next table row and its id.
fn next_row(
    table: &Table,
    rows: &mut postgres::RowIter<'_>,
) -> anyhow::Result<Option<(PointKey, Vec<Option<String>>)>> {
    let Some(row) = rows.next()? else {
        return Ok(None);
    };
    let fields = row_fields(table, &row)?;
    let key = fields[0]
        .as_deref()
        .and_then(key_of_text)
        .context("the table holds an id that is neither an integer nor a UUID")?;
    Ok(Some((key, fields)))
}

/// A `WHERE` clause selecting `range` of ids from a table whose ids are all of one kind
/// (`bigint`/`numeric` or `uuid`), with its parameters as text.
fn range_filter(id_type: &str, range: KeyRange) -> (String, Vec<String>) {
    let uuid_table = id_type == "uuid";
    let cast = if id_type.starts_with("numeric") {
        "numeric"
    } else {
        id_type
    };
    let same_kind = |k: PointKey| matches!(k, PointKey::Uuid(_)) == uuid_table;
    let mut clauses = Vec::new();
    let mut params = Vec::new();
    let mut bound = |op: &str, key: PointKey, clauses: &mut Vec<String>| {
        params.push(key.to_string());
        clauses.push(format!("id {op} ${}::text::{cast}", params.len()));
    };
    match (same_kind(range.lo), range.lo) {
        (true, lo) => bound(">=", lo, &mut clauses),
        // Starts among integers, table holds UUIDs: only the upper end can bound it.
        (false, PointKey::Num(_)) => {}
        // Starts among UUIDs, table holds integers: nothing of this table is in the range.
        (false, PointKey::Uuid(_)) => clauses.push("false".to_owned()),
    }
    match range.hi {
        Some(hi) if same_kind(hi) => bound("<", hi, &mut clauses),
        Some(PointKey::Uuid(_)) | None => {}
        // Ends among integers, table holds UUIDs.
        Some(PointKey::Num(_)) => clauses.push("false".to_owned()),
    }
    if clauses.is_empty() {
        (String::new(), params)
    } else {
        (format!("WHERE {}", clauses.join(" AND ")), params)
    }
}
