//! `qdrant2pg migrate`: Qdrant straight into PostgreSQL, no files — the guide's two steps in one.
//!
//! Plan: resolve both guide YAMLs (`--source-config qdrant2csv.yaml`, `--target-config
//! csv2adbpg.yaml`) and the same flags and environment export and import take. Per collection:
//! describe, count exactly, probe the id span — which decides the id column type before the
//! first row moves — write the DDL, ready the table as import does (`postgres::table`), read the
//! ledger and cut the id space into ranges minus what earlier runs committed. Spawn: the
//! export's cursors feed a bounded page queue drained by `--connections` workers, each owning
//! one connection ([`Loader`]); a worker encodes the page it takes and COPYs it.
//!
//! Unit of work = one page: its COPY and its ledger row `{table, source "qdrant", lo, hi}` —
//! the ids the page accounts for, `[lo, hi)` as [`PointKey`] text — commit in ONE transaction.
//! Pages tile the id space without overlap, so a re-run that subtracts the ledger's ranges reads
//! every point not yet committed exactly once, whatever killed the previous run. Empty pages
//! (ids covered, no points) are not recorded; a re-run only scans them again.
//!
//! Format: COPY BINARY (`encode::binary`), which spares the server all float parsing, except
//! on a Greenplum-based server older than PostgreSQL 9.4 (Greenplum 5, AnalyticDB 4.3), which
//! gets COPY text (`encode::text`, the rows the guide's files hold): see [`copy_format`]. At the
//! end each table's ledger rows must add up to Qdrant's exact count, else the run fails naming
//! the table.
//!
//! A collection that fails (a point that cannot be read, a row its table rejects) stops loading
//! there; the other tables are loaded to the end and checked, and the run then fails naming
//! it. Its committed pages stay in the ledger, so the same command again loads only the rest.

use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use anyhow::{Context, bail};

use crate::cmd::export::{interleave, range_count};
use crate::config::EndpointArgs;
use crate::config::postgres::Target;
use crate::config::qdrant::ReadTuning;
use crate::encode::EncodeError;
use crate::encode::binary::BinaryRowEncoder;
use crate::encode::json::{NOT_FOUND_AGAIN, wide_number_warning};
use crate::encode::text::{TextRowEncoder, column_names};
use crate::layout::{DataFacts, Layout, PayloadType};
use crate::point_id::{KeyRange, PointKey};
use crate::postgres::catalog::server_version_num;
use crate::postgres::ddl::{DdlOptions, Dialect, Halfvec, VectorStorage, create_table_sql_with};
use crate::postgres::ident::qualified;
use crate::postgres::ledger::{CREATED, Ledger, LedgerEntry, MIGRATE_SOURCE};
use crate::postgres::table::{IfExists, TableSpec, prepare_schema, prepare_table};
use crate::progress::{Failed, OutputArgs, Task, Ui};
use crate::sink::copy::{
    CopyError, CopyFormat, CopyTarget, LoadSettings, Loader, UnitFailure, copy_unit, error_chain,
};
use crate::sink::manifest::VectorSyntax;
use crate::source::cursor::{PageBatch, PageReader, Scheduler, Work};
use crate::source::parallel::read_parallel;
use crate::source::plan::{IdSpan, subtract};
use crate::source::schema::CollectionSchema;
use crate::source::snapshot::SnapshotArgs;
use crate::source::{Source, concerns_every_collection};

/// The column type of sparse vector indices (array dialects).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum SparseIndices {
    /// `integer[]`: indices up to 2^31−1, which is what sparse models produce.
    #[default]
    Integer,
    /// `bigint[]`: every u32 index Qdrant accepts.
    Bigint,
}

/// `qdrant2pg migrate` flags.
#[derive(Debug, clap::Args)]
pub struct MigrateArgs {
    #[command(flatten)]
    pub ends: EndpointArgs,
    #[command(flatten)]
    pub snapshots: SnapshotArgs,
    /// A collection to migrate (repeatable). Default: the YAML's list, else every collection.
    #[arg(long = "collection", value_name = "NAME")]
    pub collections: Vec<String>,
    /// The target's SQL dialect (rows travel as COPY BINARY; Greenplum before 6 gets text).
    #[arg(long, value_enum, default_value_t = Dialect::Postgres)]
    pub dialect: Dialect,
    /// pgvector: when dense vectors become halfvec instead of vector.
    #[arg(long, value_enum, default_value_t)]
    pub halfvec: Halfvec,
    /// The storage of float array columns in the tables it creates.
    #[arg(long, value_enum, default_value_t)]
    pub vector_storage: VectorStorage,
    /// The payload column type.
    #[arg(long, value_enum, default_value_t)]
    pub payload_type: PayloadType,
    /// The column type of sparse indices; a point with an index above 2^31−1 needs `bigint`.
    #[arg(long, value_enum, default_value_t)]
    pub sparse_indices: SparseIndices,
    /// What to do with a table that already exists.
    #[arg(long, value_enum, default_value_t)]
    pub if_exists: IfExists,
    /// Concurrent scroll cursors (each its own gRPC connection), shared by all collections.
    #[arg(long, default_value_t = 4, value_name = "N")]
    pub cursors: usize,
    /// Points per scroll request, and so per COPY transaction.
    #[arg(long, default_value_t = 1024, value_name = "N")]
    pub page_size: u32,
    /// PostgreSQL connections, each encoding and loading one page at a time.
    #[arg(long, short = 'j', default_value_t = 2, value_name = "N")]
    pub connections: usize,
    /// Attempts per page when the PostgreSQL connection is lost, with exponential backoff
    /// (`--retries` is Qdrant's).
    #[arg(long, default_value_t = 8, value_name = "N")]
    pub copy_retries: u32,
    /// Set synchronous_commit=off on the loading sessions (faster commits; a server crash may
    /// forget the last pages, which the next run loads again).
    #[arg(long)]
    pub synchronous_commit_off: bool,
}

/// How one collection's rows are written.
enum RowEncoder {
    Binary(BinaryRowEncoder),
    Text(TextRowEncoder),
}

/// One collection's share of the run.
struct TableJob {
    name: String,
    count: u64,
    copy: CopyTarget,
    encoder: RowEncoder,
    facts: DataFacts,
    task: Arc<Task>,
    /// Set once a page has warned about a possibly bent big integer: once per table is enough.
    warned_wide_number: AtomicBool,
}

/// A worker's connection and buffers, handed from page to page.
struct Slot<'a> {
    loader: Loader<'a>,
    rows: Vec<u8>,
    chunk: Vec<u8>,
}

pub fn run(args: MigrateArgs, output: &OutputArgs) -> anyhow::Result<ExitCode> {
    let ui = Ui::new(output);
    if args.connections == 0 {
        bail!("--connections must be at least 1");
    }
    let (source_file, target) = args.ends.load(&|w| ui.warn(w))?;
    let wanted = source_file.export.wanted(&args.collections);
    let source = Source::open(
        &args.ends.qdrant,
        &source_file.qdrant,
        args.ends.source_config.as_deref(),
        &args.snapshots,
        &wanted,
    )?;
    let names = source.collections(&wanted)?;
    let ledger = Ledger::new(&target.schema);
    let mut admin = target.connect().context("connecting for setup")?;
    prepare_schema(&mut admin, &target.schema, &ledger, args.dialect)?;

    let mut jobs = Vec::new();
    let mut spans = Vec::new();
    let mut work = Vec::new();
    let mut failed = Failed::default();
    for name in &names {
        let prepared = prepare_job(&source, name, &args, &target, &ledger, &mut admin, &ui);
        let (job, todo, span) = match prepared {
            Ok(Some(prepared)) => prepared,
            Ok(None) => continue,
            Err(e) if concerns_every_collection(&e) => return Err(e),
            Err(e) => {
                failed.add(name, Some(&ui.task(name, None)), e);
                continue;
            }
        };
        work.extend(todo.into_iter().map(|range| Work {
            collection: jobs.len(),
            range,
        }));
        spans.push(span);
        jobs.push(job);
    }
    drop(admin);

    work.sort_by_key(|w| std::cmp::Reverse(jobs[w.collection].count));
    let work = interleave(work, jobs.len());
    let scheduler = Scheduler::new(work, spans, u64::from(args.page_size) * 2);
    let settings = LoadSettings {
        retries: args.copy_retries,
        synchronous_commit_off: args.synchronous_commit_off,
    };
    let slots = Mutex::new(Vec::<Slot<'_>>::new());
    let names: Vec<String> = jobs.iter().map(|j| j.name.clone()).collect();
    let result = read_parallel(
        &scheduler,
        &|| source.open_reader(),
        &names,
        args.cursors,
        args.page_size,
        args.connections,
        |batch| {
            let job = &jobs[batch.collection];
            if batch.points.is_empty() {
                return Ok(());
            }
            let taken = slots.lock().unwrap_or_else(|e| e.into_inner()).pop();
            let mut slot = taken.unwrap_or_else(|| Slot {
                loader: Loader::new(&target, settings),
                rows: Vec::new(),
                chunk: Vec::new(),
            });
            let result = load_page(job, &ledger, &batch, &mut slot, &ui, &source);
            slots.lock().unwrap_or_else(|e| e.into_inner()).push(slot);
            result.with_context(|| format!("migrating collection {:?}", job.name))
        },
    );
    drop(slots);
    let failures = match result {
        Ok(failures) => failures,
        Err(e) => {
            for job in &jobs {
                job.task.finish("stopped");
            }
            ui.finish("migrate", output)
                .context("writing the summary")?;
            return Err(e.context(format!(
                "pages already committed are recorded in {}; a re-run loads only the rest",
                ledger.name()
            )));
        }
    };
    for failure in failures {
        let job = &jobs[failure.collection];
        failed.add(&job.name, Some(&job.task), failure.error);
    }
    let whole: Vec<&TableJob> = jobs.iter().filter(|j| !failed.contains(&j.name)).collect();
    let checked = check_counts(&target, &ledger, &whole);
    ui.finish("migrate", output)
        .context("writing the summary")?;
    failed.into_result(
        names.len(),
        "migrated completely",
        &format!(
            "the other tables are complete, pages already committed are recorded in {}, and \
             the same command again loads only the rest",
            ledger.name()
        ),
    )?;
    checked?;
    Ok(ExitCode::SUCCESS)
}

/// Describes, counts and probes one collection, writes its DDL and readies its table: its
/// job, the id ranges left to load, and its id span. `None` when the table is skipped
/// (`--if-exists skip`).
fn prepare_job(
    source: &Source,
    name: &str,
    args: &MigrateArgs,
    target: &Target,
    ledger: &Ledger,
    admin: &mut postgres::Client,
    ui: &Ui,
) -> anyhow::Result<Option<(TableJob, Vec<KeyRange>, IdSpan)>> {
    let info = source.collection_info(name)?;
    let schema = CollectionSchema::from_info(name, info, args.payload_type)?;
    let count = source.count_exact(name)?;
    let span = IdSpan::probe(|key| source.first_at_or_after(name, key))
        .with_context(|| format!("probing the ids of collection {name:?}"))?;
    let facts = facts_before_loading(&schema.layout, &span, args.sparse_indices);
    let ddl = create_table_sql_with(
        Some(&target.schema),
        name,
        &schema.layout,
        &facts,
        DdlOptions {
            dialect: args.dialect,
            halfvec: args.halfvec,
            storage: args.vector_storage,
        },
    );
    let spec = TableSpec {
        schema: &target.schema,
        table: name,
        ddl: &ddl,
        if_exists: args.if_exists,
    };
    let task = ui.task(name, Some(count));
    let Some(entries) = prepare_table(admin, ledger, &spec, ui)? else {
        task.finish("skipped");
        return Ok(None);
    };
    let (covered, rows_before) = committed(&entries, &qualified(Some(&target.schema), name))?;
    task.add_done_before(rows_before);
    let tuning = ReadTuning {
        cursors: args.cursors,
        page_size: args.page_size,
        encoders: Some(args.connections),
    };
    let todo = subtract(&span.plan(range_count(count, u64::MAX, &tuning)), &covered);
    let format = copy_format(args.dialect, admin)?;
    let job = table_job(args, target, format, schema, facts, count, task);
    Ok(Some((job, todo, span)))
}

/// What the DDL and the binary encoder must know before any row is read: which id kinds exist
/// (from the probed span) and how wide sparse indices may be (from the flag).
fn facts_before_loading(layout: &Layout, span: &IdSpan, sparse: SparseIndices) -> DataFacts {
    let mut facts = DataFacts::for_layout(layout);
    if let Some((lo, hi)) = span.ints {
        facts.note_id(PointKey::Num(lo));
        facts.note_id(PointKey::Num(hi));
    }
    if let Some((lo, _)) = span.uuids {
        facts.note_id(PointKey::Uuid(lo));
    }
    if sparse == SparseIndices::Bigint {
        for slot in 0..facts.max_sparse_index.len() {
            facts.note_sparse_index(slot, u32::MAX);
        }
    }
    facts
}

/// The id ranges earlier runs committed into `table`, and their rows. Refuses a table another
/// command (import) was loading: its ledger rows are byte spans of files, not id ranges, and
/// loading around them would load rows twice.
fn committed(entries: &[LedgerEntry], table: &str) -> anyhow::Result<(Vec<KeyRange>, u64)> {
    let mut ranges = Vec::new();
    let mut rows = 0;
    for entry in entries.iter().filter(|e| e.source != CREATED) {
        if entry.source != MIGRATE_SOURCE {
            bail!(
                "{table} is being loaded by `qdrant2pg import` (ledger rows for file {:?}); \
                 finish that import, or start over with --if-exists replace",
                entry.source
            );
        }
        let bound = |text: &str| {
            text.parse::<PointKey>().with_context(|| {
                format!(
                    "{table}: ledger row with span {:?}..{:?}",
                    entry.lo, entry.hi
                )
            })
        };
        let lo = bound(&entry.lo)?;
        let hi = if entry.hi.is_empty() {
            None
        } else {
            Some(bound(&entry.hi)?)
        };
        ranges.push(KeyRange::new(lo, hi));
        rows += entry.rows;
    }
    Ok((ranges, rows))
}

/// The server version from which the `adbpg` dialect loads COPY BINARY: Greenplum 6 and
/// AnalyticDB for PostgreSQL 6 are PostgreSQL 9.4 underneath.
const ADBPG_BINARY_FROM: u32 = 90400;

/// How migrate's rows travel. Binary spares the server all float parsing, and every PostgreSQL
/// takes it. So does Greenplum 6, where it measured 2.2–5.1 times COPY text through the
/// coordinator (`scripts/bench-greenplum.sh`); Greenplum before 6 (AnalyticDB 4.3) has no binary
/// COPY, so older Greenplum-based servers get text, as their import path does.
fn copy_format(dialect: Dialect, admin: &mut postgres::Client) -> anyhow::Result<CopyFormat> {
    if dialect != Dialect::Adbpg {
        return Ok(CopyFormat::Binary);
    }
    let version = server_version_num(admin).context("asking the target's version")?;
    Ok(if version >= ADBPG_BINARY_FROM {
        CopyFormat::Binary
    } else {
        CopyFormat::Text
    })
}

fn table_job(
    args: &MigrateArgs,
    target: &Target,
    format: CopyFormat,
    schema: CollectionSchema,
    facts: DataFacts,
    count: u64,
    task: Arc<Task>,
) -> TableJob {
    let syntax = if args.dialect == Dialect::Pgvector {
        VectorSyntax::Pgvector
    } else {
        VectorSyntax::Array
    };
    let encoder = match format {
        CopyFormat::Text => RowEncoder::Text(TextRowEncoder::new(&schema.layout, syntax)),
        CopyFormat::Binary => RowEncoder::Binary(
            BinaryRowEncoder::new(&schema.layout, &facts, syntax).with_halfvec(args.halfvec),
        ),
    };
    TableJob {
        copy: CopyTarget {
            schema: target.schema.clone(),
            table: schema.name.clone(),
            columns: column_names(&schema.layout, syntax),
            format,
        },
        name: schema.name,
        count,
        encoder,
        facts,
        warned_wide_number: AtomicBool::new(false),
        task,
    }
}

/// Encodes one page and commits it with its ledger row.
fn load_page(
    job: &TableJob,
    ledger: &Ledger,
    batch: &PageBatch,
    slot: &mut Slot<'_>,
    ui: &Ui,
    source: &Source,
) -> anyhow::Result<()> {
    let Slot {
        loader,
        rows,
        chunk,
    } = slot;
    rows.clear();
    let mut facts = job.facts.clone();
    match &job.encoder {
        RowEncoder::Binary(encoder) => {
            BinaryRowEncoder::header(rows);
            for point in batch.point_refs() {
                encoder.encode(point, rows, &mut facts).map_err(with_hint)?;
            }
            BinaryRowEncoder::trailer(rows);
        }
        RowEncoder::Text(encoder) => {
            for point in batch.point_refs() {
                encoder.encode(point, rows, &mut facts)?;
            }
        }
    }
    if let Some(point) = facts.wide_number
        && !job.warned_wide_number.swap(true, Ordering::Relaxed)
    {
        let why = source
            .inexact_because()
            .unwrap_or_else(|| NOT_FOUND_AGAIN.to_owned());
        ui.warn(&wide_number_warning(&job.name, point, &why));
    }
    let entry = LedgerEntry {
        table: job.name.clone(),
        source: MIGRATE_SOURCE.to_owned(),
        lo: batch.covered.lo.to_string(),
        hi: batch.covered.hi.map(|k| k.to_string()).unwrap_or_default(),
        rows: batch.points.len() as u64,
        checksum: String::new(),
    };
    let result = loader.run(
        |client| {
            copy_unit(
                client,
                &job.copy,
                ledger,
                &entry,
                &mut rows.as_slice(),
                chunk,
            )
        },
        |failure, backoff, attempt, attempts| {
            ui.warn(&format!(
                "{} ids {}: {}; retrying on a fresh connection in {backoff:?} (attempt \
                 {attempt}/{attempts})",
                job.name,
                batch.covered,
                describe(failure)
            ));
        },
    );
    match result {
        Ok(loaded) => job.task.add(loaded, rows.len() as u64),
        // Another run committed this very page meanwhile: its rows are in, once.
        Err(UnitFailure::Copy(CopyError::AlreadyLoaded)) => job.task.add_done_before(entry.rows),
        Err(failure) => bail!("ids {}: {}", batch.covered, describe(&failure)),
    }
    Ok(())
}

/// Says how to get past the one encoding error a flag fixes.
fn with_hint(err: EncodeError) -> anyhow::Error {
    let hint = matches!(err, EncodeError::SparseIndexTooWide { .. });
    let err = anyhow::Error::from(err);
    if hint {
        err.context(
            "re-run with --sparse-indices bigint (and --if-exists replace, since the table was \
             created with integer[] indices)",
        )
    } else {
        err
    }
}

fn describe(failure: &UnitFailure) -> String {
    match failure {
        UnitFailure::Connect(e) => format!("{e:#}"),
        UnitFailure::Copy(e) => error_chain(e),
    }
}

/// Each table's committed rows (its ledger) against Qdrant's exact count at the start.
fn check_counts(target: &Target, ledger: &Ledger, jobs: &[&TableJob]) -> anyhow::Result<()> {
    let mut admin = target.connect().context("connecting to check the counts")?;
    let mut wrong = Vec::new();
    for job in jobs {
        let loaded: u64 = ledger
            .entries(&mut admin, &job.name)?
            .iter()
            .filter(|e| e.source == MIGRATE_SOURCE)
            .map(|e| e.rows)
            .sum();
        if loaded == job.count {
            job.task.finish("ok");
        } else {
            job.task.finish("MISMATCH");
            wrong.push(format!(
                "{}: {loaded} rows loaded but Qdrant counted {} points (was the collection \
                 written to meanwhile?)",
                qualified(Some(&target.schema), &job.name),
                job.count
            ));
        }
    }
    if !wrong.is_empty() {
        bail!("{}", wrong.join("; "));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::layout::{Datatype, IdKind, VectorShape, VectorSpec};

    fn sparse_layout() -> Layout {
        let spec = VectorSpec {
            name: "bm25".into(),
            shape: VectorShape::Sparse,
            dim: None,
            datatype: Datatype::Float32,
            distance: None,
            hnsw: None,
        };
        Layout::new(vec![spec], PayloadType::Json)
    }

    #[test]
    fn the_probed_span_decides_the_id_column() {
        let layout = sparse_layout();
        let kind = |ints, uuids| {
            facts_before_loading(&layout, &IdSpan { ints, uuids }, SparseIndices::Integer).id_kind()
        };
        assert_eq!(kind(None, None), IdKind::Bigint);
        assert_eq!(kind(Some((0, i64::MAX as u64)), None), IdKind::Bigint);
        assert_eq!(kind(Some((5, u64::MAX)), None), IdKind::Numeric);
        assert_eq!(kind(None, Some((1, 9))), IdKind::Uuid);
        assert_eq!(kind(Some((1, 2)), Some((1, 9))), IdKind::Text);
        let wide = facts_before_loading(&layout, &IdSpan::default(), SparseIndices::Bigint);
        assert!(wide.sparse_needs_bigint(0));
        let narrow = facts_before_loading(&layout, &IdSpan::default(), SparseIndices::Integer);
        assert!(!narrow.sparse_needs_bigint(0));
    }

    fn entry(source: &str, lo: &str, hi: &str, rows: u64) -> LedgerEntry {
        LedgerEntry {
            table: "t".into(),
            source: source.into(),
            lo: lo.into(),
            hi: hi.into(),
            rows,
            checksum: String::new(),
        }
    }

    #[test]
    fn committed_ranges_come_back_from_the_ledger_text() {
        let uuid = "5c56c793-69f3-4fbf-87e6-c4bf54c28c26";
        let entries = [
            entry(CREATED, "", "", 0),
            entry(MIGRATE_SOURCE, "0", "100", 7),
            entry(MIGRATE_SOURCE, uuid, "", 3),
        ];
        let (ranges, rows) = committed(&entries, "t").unwrap();
        assert_eq!(rows, 10);
        assert_eq!(
            ranges,
            vec![
                KeyRange::new(PointKey::Num(0), Some(PointKey::Num(100))),
                KeyRange::new(uuid.parse().unwrap(), None),
            ]
        );
        let import = [entry("0000000000.csv", "11", "500", 4)];
        let err = committed(&import, "t").unwrap_err().to_string();
        assert!(err.contains("qdrant2pg import"), "{err}");
        let garbled = [entry(MIGRATE_SOURCE, "x", "", 1)];
        assert!(committed(&garbled, "t").is_err());
    }
}
