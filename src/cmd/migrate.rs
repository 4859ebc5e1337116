//! `qdrant2pg migrate`: Qdrant straight into PostgreSQL, no files — the guide's two steps in one,
//! shared by any number of identical commands on any number of hosts.
//!
//! Plan: resolve both guide YAMLs (`--source-config qdrant2csv.yaml`, `--target-config
//! csv2adbpg.yaml`) and the same flags and environment export and import take, then join the
//! target schema's shared run (`run`). The process that finds no run plans it, under
//! the run's lock: per collection, describe, count exactly, probe the id span — which decides
//! the id column type before the first row moves — write the DDL, ready the table as import
//! does (`postgres::table`), read the ledger and cut the id space into units minus what earlier
//! runs committed. Every other process reads that plan (layouts, id facts, spans, counts) and
//! asks Qdrant only for points. Spawn: cursors claim units (`run::ranges`) and feed a
//! bounded page queue drained by `--connections` workers, each owning one connection
//! ([`Loader`]); a worker encodes the page it takes and COPYs it. A single process is a run with
//! one member: the same path.
//!
//! Unit of commit = one page: its COPY, its unit's fence and its ledger row `{table, source
//! "qdrant", lo, hi}` — the ids the page accounts for, `[lo, hi)` as [`PointKey`] text — commit
//! in ONE transaction. A unit's pages commit in id order and tile it, so whatever killed a
//! worker, the unit is done up to where its last commit left it, and whoever takes it over
//! reads on from there. Empty pages (ids covered, no points) move the unit on without a ledger
//! row.
//!
//! Format: COPY BINARY (`encode::binary`), which spares the server all float parsing, except
//! for a Greenplum-based server older than PostgreSQL 9.4 (Greenplum 5, AnalyticDB 4.3), which
//! gets COPY text (`encode::text`, the rows the guide's files hold): see [`copy_format`]. When
//! the run is complete each table's ledger rows must add up to Qdrant's exact count at planning
//! time, else the command fails naming the table.
//!
//! A collection that fails (a point that cannot be read, a row its table rejects) stops loading
//! there: its unit is marked failed in the run and no process claims its table's units any more
//! (`run::ranges`), while the other tables are loaded to the end and checked; the run then
//! fails naming it. Its committed pages stay in the ledger, so the same command again (once no
//! worker of the run is left) loads only the rest.

use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use anyhow::{Context, bail};
use postgres::Transaction;
use serde::{Deserialize, Serialize};

use crate::cmd::flags::{CommitArgs, RunArgs, SourceArgs, TableArgs, run_settings, setting};
use crate::cmd::shared_run::{announce, failed_elsewhere, finished_run, outcome_result};
use crate::config::EndpointArgs;
use crate::config::postgres::Target;
use crate::encode::binary::BinaryRowEncoder;
use crate::encode::json::{NOT_FOUND_AGAIN, wide_number_warning};
use crate::encode::text::TextRowEncoder;
use crate::encode::{EncodeError, RowEncoder};
use crate::layout::{DataFacts, Layout, PayloadType};
use crate::payload::PointRef;
use crate::point_id::{KeyRange, PointKey};
use crate::postgres::ddl::create_table_sql_with;
use crate::postgres::ident::qualified;
use crate::postgres::ledger::{CREATED, Ledger, LedgerEntry, MIGRATE_SOURCE};
use crate::postgres::table::{TableSpec, prepare_schema, prepare_table};
use crate::progress::{Failed, OutputArgs, Task, Ui};
use crate::run::member::Member;
use crate::run::plan::{Joined, NewPlan, NewUnit};
use crate::run::ranges::{PageFence, RangeUnits};
use crate::run::store::Settings;
use crate::run::store::SharedRun;
use crate::sink::copy::{
    CopyError, CopyFormat, CopyTarget, Fenced, LoadSettings, Loader, UnitFailure, UnitRows,
    copy_unit,
};
use crate::source::Source;
use crate::source::cursor::{ActiveRange, Lease, PageBatch, Scheduler};
use crate::source::page::PageReader;
use crate::source::parallel::read_parallel;
use crate::source::plan::{IdSpan, Work, interleave, subtract};
use crate::source::schema::CollectionSchema;

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
    pub source: SourceArgs,
    #[command(flatten)]
    pub table: TableArgs,
    /// The payload column type.
    #[arg(long, value_enum, default_value_t)]
    pub payload_type: PayloadType,
    /// The column type of sparse indices; a point with an index above 2^31−1 needs `bigint`.
    #[arg(long, value_enum, default_value_t)]
    pub sparse_indices: SparseIndices,
    /// The collection keeps being written while it is migrated: a table whose row count no
    /// longer matches Qdrant's is reported, not failed (`qdrant2pg sync` catches it up).
    #[arg(long)]
    pub live: bool,
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
    #[command(flatten)]
    pub commits: CommitArgs,
    #[command(flatten)]
    pub run: RunArgs,
}

/// Points per planned unit. A unit is what a dead worker's successor takes over and what
/// workers claim in turn: 8192 points are a few seconds of one connection's work at the rates
/// measured here (docs/benchmarks.md), so claims stay rare next to commits, while a collection of a
/// million points is already 122 units for a few dozen workers to share; splits even out the
/// rest.
const UNIT_POINTS: u64 = 8192;
/// At most this many units per collection: the units table stays small (each claim reads
/// the open ones' numbers), and a billion points still make units of 60k points.
const MAX_UNITS: usize = 16_384;

/// One table of the run's plan: what every process needs to load it, decided once by the
/// process that planned the run (a layout, id facts and span probed now could differ).
#[derive(Debug, Serialize, Deserialize)]
struct PlannedTable {
    table: String,
    /// Qdrant's exact count when the run was planned.
    count: u64,
    layout: Layout,
    facts: DataFacts,
    span: IdSpan,
}

/// One collection's share of the run.
struct TableJob {
    name: String,
    count: u64,
    copy: CopyTarget,
    encoder: Box<dyn RowEncoder>,
    facts: DataFacts,
    task: Arc<Task>,
    /// Set once a page has warned about a possibly bent big integer: once per table is enough.
    warned_wide_number: AtomicBool,
}

/// A worker's connection and buffers, handed from page to page.
struct Slot<'a> {
    loader: Loader<'a>,
    rows: Vec<u8>,
}

/// What every page worker shares.
struct Pages<'a> {
    source: &'a Source,
    units: &'a RangeUnits<'a>,
    member: &'a Member,
    ledger: &'a Ledger,
    ui: &'a Ui,
}

pub fn run(args: MigrateArgs, output: &OutputArgs) -> anyhow::Result<ExitCode> {
    let ui = Ui::new(output);
    if args.connections == 0 {
        bail!("--connections must be at least 1");
    }
    let (source_file, target) = args.ends.load(&|w| ui.warn(w))?;
    let (source, mut names) = args.source.open(
        &args.ends.qdrant,
        &source_file,
        args.ends.source_config.as_deref(),
    )?;
    // Sorted: the run's settings name them, and identical commands must agree.
    names.sort();
    let ledger = Ledger::new(&target.schema);
    let client = target.connect().context("connecting for setup")?;
    let joined = SharedRun::new(&target.schema).join(
        &target,
        client,
        &settings(&args, &names),
        args.copy_retries,
        args.table.dialect,
        |tx| plan(tx, &args, &target, &source, &names, &ledger, &ui),
    )?;
    let (member, plan) = match joined {
        Joined::Finished(summary) => return finished_run("migrate", &summary, &ui, output),
        Joined::Member { member, plan, how } => {
            announce(&ui, &member, &how);
            (member, plan)
        }
    };
    let planned: Vec<PlannedTable> = serde_json::from_str(&plan)
        .context("the run's plan is not a migrate plan this version can read")?;
    let mut admin = target.connect().context("connecting for setup")?;
    let format = CopyFormat::for_target(args.table.dialect, &mut admin)
        .context("asking the target's version")?;
    let mut jobs = Vec::new();
    let mut spans = Vec::new();
    for table in planned {
        let task = ui.task(&table.table, Some(table.count));
        task.add_done_before(ledger.loaded_rows(&mut admin, &table.table, MIGRATE_SOURCE)?);
        spans.push(table.span);
        jobs.push(table_job(&args, &target, format, table, task));
    }
    drop(admin);

    let names: Vec<String> = jobs.iter().map(|j| j.name.clone()).collect();
    let points = jobs.iter().map(|j| j.count).collect();
    let units = RangeUnits::new(
        &member,
        names.clone(),
        spans,
        points,
        u64::from(args.page_size) * 2,
    );
    let scheduler = Scheduler::shared(&units);
    let settings = LoadSettings {
        retries: args.copy_retries,
        commits: args.commits.commits(args.table.dialect),
    };
    let pages = Pages {
        source: &source,
        units: &units,
        member: &member,
        ledger: &ledger,
        ui: &ui,
    };
    let slots = Mutex::new(Vec::<Slot<'_>>::new());
    let result = read_parallel(
        &scheduler,
        &|| source.open_reader(),
        &names,
        args.cursors,
        args.page_size,
        args.connections,
        |batch| {
            let job = &jobs[batch.collection];
            let taken = slots.lock().unwrap_or_else(|e| e.into_inner()).pop();
            let mut slot = taken.unwrap_or_else(|| Slot {
                loader: Loader::new(&target, settings),
                rows: Vec::new(),
            });
            let result = load_page(&pages, job, &batch, &mut slot);
            slots.lock().unwrap_or_else(|e| e.into_inner()).push(slot);
            result.with_context(|| format!("migrating collection {:?}", job.name))
        },
    );
    let failures = match result {
        Ok(failures) => failures,
        Err(e) => {
            for job in &jobs {
                job.task.finish("stopped");
            }
            ui.finish("migrate", output)
                .context("writing the summary")?;
            return Err(e.context(format!(
                "pages already committed are recorded in {}; running the command again (on any \
                 host) loads only the rest",
                ledger.name()
            )));
        }
    };
    // Every page this process committed is made durable before anything is reported.
    let mut loader = slots
        .into_inner()
        .unwrap_or_else(|e| e.into_inner())
        .pop()
        .map_or_else(|| Loader::new(&target, settings), |slot| slot.loader);
    loader
        .commit_durably(&mut |tx| member.durable_mark(tx))
        .map_err(|failure| anyhow::anyhow!("{}", failure.describe()))
        .context("making the committed pages durable")?;
    drop(loader);
    let mut failed = Failed::default();
    for failure in failures {
        let job = &jobs[failure.collection];
        failed.add(&job.name, Some(&job.task), failure.error);
    }
    // Tables another process of the run failed in.
    let elsewhere = failed_elsewhere(&member, |table| failed.contains(table))?;
    for (table, why) in elsewhere {
        let task = jobs.iter().find(|j| j.name == table).map(|j| &*j.task);
        failed.add(&table, task, why);
    }
    let whole: Vec<&TableJob> = jobs.iter().filter(|j| !failed.contains(&j.name)).collect();
    let checked = if failed.is_empty() {
        outcome_result(&member).and_then(|()| check_counts(&target, &ledger, &whole, &args, &ui))
    } else {
        check_counts(&target, &ledger, &whole, &args, &ui)
    };
    ui.finish("migrate", output)
        .context("writing the summary")?;
    failed.into_result(
        jobs.len(),
        "migrated completely",
        &format!(
            "the other tables are complete, pages already committed are recorded in {}, and \
             the same command again (on any host, once no worker of the run is left) loads \
             only the rest",
            ledger.name()
        ),
    )?;
    checked?;
    Ok(ExitCode::SUCCESS)
}

/// Units planned for a collection of `points`: about [`UNIT_POINTS`] each, at most
/// [`MAX_UNITS`].
fn units_for(points: u64) -> usize {
    (points.div_ceil(UNIT_POINTS) as usize).clamp(1, MAX_UNITS)
}

/// What makes this migration this run (tuning flags are not part of it).
fn settings(args: &MigrateArgs, names: &[String]) -> Settings {
    run_settings(
        "migrate",
        names,
        &args.run,
        &args.table,
        [
            ("--payload-type", setting(&args.payload_type)),
            ("--sparse-indices", setting(&args.sparse_indices)),
        ],
    )
}

/// Plans the run (under its lock, in its transaction): per collection, the table readied and
/// the id space not yet in the ledger cut into units, largest collection first.
fn plan(
    tx: &mut Transaction<'_>,
    args: &MigrateArgs,
    target: &Target,
    source: &Source,
    names: &[String],
    ledger: &Ledger,
    ui: &Ui,
) -> anyhow::Result<NewPlan> {
    prepare_schema(tx, &target.schema, ledger, args.table.dialect)?;
    let mut tables = Vec::new();
    let mut work = Vec::new();
    for name in names {
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
            args.table.ddl_options(),
        );
        let spec = TableSpec {
            schema: &target.schema,
            table: name,
            ddl: &ddl,
            if_exists: args.table.if_exists,
        };
        let Some(entries) = prepare_table(tx, ledger, &spec, ui)? else {
            continue;
        };
        let (covered, _) = committed(&entries, &qualified(Some(&target.schema), name))?;
        let todo = subtract(&span.plan(units_for(count)), &covered);
        work.extend(todo.into_iter().map(|range| (tables.len(), range)));
        tables.push(PlannedTable {
            table: schema.name,
            count,
            layout: schema.layout,
            facts,
            span,
        });
    }
    // Largest collection first, interleaved, so every worker has work from the start and the
    // big ones are not left for last.
    let mut work: Vec<_> = work
        .into_iter()
        .map(|(collection, range)| Work { collection, range })
        .collect();
    work.sort_by_key(|w| std::cmp::Reverse(tables[w.collection].count));
    let units = interleave(work, tables.len())
        .into_iter()
        .map(|w| NewUnit {
            table: tables[w.collection].table.clone(),
            source: MIGRATE_SOURCE.to_owned(),
            lo: w.range.lo.to_string(),
            hi: w.range.hi.map(|k| k.to_string()).unwrap_or_default(),
        })
        .collect();
    Ok(NewPlan {
        plan: serde_json::to_string(&tables).context("writing the run's plan")?,
        units,
    })
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

fn table_job(
    args: &MigrateArgs,
    target: &Target,
    format: CopyFormat,
    table: PlannedTable,
    task: Arc<Task>,
) -> TableJob {
    let PlannedTable {
        table: name,
        count,
        layout,
        facts,
        span: _,
    } = table;
    let syntax = args.table.dialect.vector_syntax();
    let encoder: Box<dyn RowEncoder> = match format {
        CopyFormat::Text => Box::new(TextRowEncoder::new(&layout, syntax)),
        CopyFormat::Binary => Box::new(
            BinaryRowEncoder::new(&layout, &facts, syntax).with_halfvec(args.table.halfvec),
        ),
    };
    TableJob {
        copy: CopyTarget {
            schema: target.schema.clone(),
            table: name.clone(),
            columns: layout.columns(syntax),
            format,
        },
        name,
        count,
        encoder,
        facts,
        warned_wide_number: AtomicBool::new(false),
        task,
    }
}

/// A page's place in its range's commit order: passed on once the page is settled; dropped
/// unsettled (an error, a panic), it abandons the range, so no later page commits over the gap.
struct Turn<'a> {
    range: &'a ActiveRange,
    seq: u64,
    settled: bool,
}

impl Turn<'_> {
    fn settle(mut self) {
        self.settled = true;
        self.range.pass(self.seq);
    }
}

impl Drop for Turn<'_> {
    fn drop(&mut self) {
        if !self.settled {
            self.range.abandon();
        }
    }
}

/// How a page ended.
enum Settled {
    Committed {
        rows: u64,
        fence: PageFence,
    },
    /// Its rows were already in (an earlier attempt's commit went through unanswered).
    AlreadyIn,
    /// It accounts for nothing any more: its unit ended below it, or another worker has it.
    Dropped(Fenced),
}

/// Encodes one page and commits it with its unit's fence and its ledger row, cutting it when
/// its unit turns out to have been split below some of its ids.
fn load_page(
    pages: &Pages<'_>,
    job: &TableJob,
    batch: &PageBatch,
    slot: &mut Slot<'_>,
) -> anyhow::Result<()> {
    let range = &batch.range;
    let Some(lease) = range.lease() else {
        bail!("ids {}: a page with no unit of the run", batch.covered);
    };
    let turn = Turn {
        range,
        seq: batch.seq,
        settled: false,
    };
    let mut keep = batch.points.len();
    let settled = loop {
        match commit_page(pages, job, batch, keep, lease, slot) {
            Ok(settled) => break settled,
            Err(PageError::Shrunk(hi)) => {
                range.shrink(hi);
                keep = batch.points[..keep]
                    .iter()
                    .take_while(|p| point_key(p).is_ok_and(|k| k < hi))
                    .count();
            }
            Err(PageError::Failed(err)) => {
                let note = format!("{err:#}");
                if let Err(e) = pages.member.fail(lease, &note) {
                    pages.ui.warn(&format!(
                        "{}: cannot mark unit {} failed: {e:#}",
                        job.name, lease.unit
                    ));
                }
                return Err(err);
            }
        }
    };
    let release = match &settled {
        Settled::Committed { rows, fence } => {
            let bytes = slot.rows.len() as u64;
            job.task.add(*rows, bytes);
            if let Some(hi) = fence.hi {
                range.shrink(hi);
            }
            fence.done
        }
        Settled::AlreadyIn => {
            job.task.add_done_before(keep as u64);
            batch.last
        }
        Settled::Dropped(Fenced::Lost) => {
            // Said once per unit: its later pages find the range abandoned.
            if !range.abandoned() {
                pages.ui.sharing(
                    pages.member.has_peers().unwrap_or(true),
                    &format!(
                        "{}: unit {} went to another worker, which loads the rest of it; this \
                         one leaves it (nothing is loaded twice)",
                        job.name, lease.unit
                    ),
                );
                range.abandon();
            }
            true
        }
        Settled::Dropped(_) => true,
    };
    if !matches!(settled, Settled::Dropped(Fenced::Lost)) {
        turn.settle();
    }
    if release {
        pages
            .member
            .release(lease.unit)
            .with_context(|| format!("releasing unit {}", lease.unit))?;
    }
    Ok(())
}

/// Why one attempt at a page did not settle it.
enum PageError {
    /// Its unit now ends at this id, below some of the page's points.
    Shrunk(PointKey),
    Failed(anyhow::Error),
}

fn point_key(point: &qdrant_client::qdrant::RetrievedPoint) -> anyhow::Result<PointKey> {
    Ok(PointKey::from_proto(point.id.as_ref())?)
}

/// One attempt at committing the first `keep` points of a page (all of it, or the part still
/// inside its unit).
fn commit_page(
    pages: &Pages<'_>,
    job: &TableJob,
    batch: &PageBatch,
    keep: usize,
    lease: Lease,
    slot: &mut Slot<'_>,
) -> Result<Settled, PageError> {
    let Slot { loader, rows } = slot;
    let failed = |e: anyhow::Error| PageError::Failed(e.context(format!("ids {}", batch.covered)));
    encode_rows(job, batch.point_refs().take(keep), rows, pages).map_err(failed)?;
    let points = &batch.points[..keep];
    let last_id = points.last().map(point_key).transpose().map_err(failed)?;
    let entry = LedgerEntry {
        table: job.name.clone(),
        source: MIGRATE_SOURCE.to_owned(),
        lo: batch.covered.lo.to_string(),
        hi: batch.covered.hi.map(|k| k.to_string()).unwrap_or_default(),
        rows: points.len() as u64,
        checksum: String::new(),
    };
    // The page's turn comes before its transaction: waiting inside one would hold its locks
    // while the page before it may need them (Greenplum's automatic ANALYZE after a COPY takes
    // a table lock until commit), a deadlock no server can see.
    if !batch.range.wait_turn(batch.seq) {
        return Ok(Settled::Dropped(Fenced::Lost));
    }
    let mut fence = None;
    let result = loader.run(
        |client| {
            copy_unit(
                client,
                &job.copy,
                pages.ledger,
                &entry,
                UnitRows::Bytes(rows),
                &mut |tx, entry| {
                    fence = Some(
                        pages
                            .units
                            .fence(tx, lease, entry, batch.covered, last_id)?,
                    );
                    Ok(())
                },
            )
        },
        |failure, backoff, attempt, attempts| {
            pages.ui.warn(&format!(
                "{} ids {}: {}; retrying on a fresh connection in {backoff:?} (attempt \
                 {attempt}/{attempts})",
                job.name,
                batch.covered,
                failure.describe()
            ));
        },
    );
    match result {
        Ok(rows) => Ok(Settled::Committed {
            rows,
            fence: fence.unwrap_or(PageFence {
                done: false,
                hi: None,
            }),
        }),
        Err(UnitFailure::Copy(CopyError::AlreadyLoaded)) => Ok(Settled::AlreadyIn),
        Err(UnitFailure::Copy(CopyError::Fenced(Fenced::Shrunk(hi)))) => {
            let hi = hi.parse::<PointKey>().map_err(|e| failed(e.into()))?;
            Err(PageError::Shrunk(hi))
        }
        Err(UnitFailure::Copy(CopyError::Fenced(reason @ (Fenced::Lost | Fenced::Finished)))) => {
            Ok(Settled::Dropped(reason))
        }
        Err(failure) => Err(failed(anyhow::anyhow!("{}", failure.describe()))),
    }
}

/// Encodes `points` into `rows` (COPY binary with its header and trailer, or COPY text).
fn encode_rows<'p>(
    job: &TableJob,
    points: impl Iterator<Item = PointRef<'p>>,
    rows: &mut Vec<u8>,
    pages: &Pages<'_>,
) -> anyhow::Result<()> {
    rows.clear();
    let mut facts = job.facts.clone();
    job.encoder.start_stream(rows);
    for point in points {
        job.encoder
            .encode(point, rows, &mut facts)
            .map_err(with_hint)?;
    }
    job.encoder.end_stream(rows);
    if let Some(point) = facts.wide_number
        && !job.warned_wide_number.swap(true, Ordering::Relaxed)
    {
        let why = pages
            .source
            .inexact_because()
            .unwrap_or_else(|| NOT_FOUND_AGAIN.to_owned());
        pages.ui.warn(&wide_number_warning(&job.name, point, &why));
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

/// Each table's committed rows (its ledger) against Qdrant's exact count when the run was
/// planned. With `--live` a difference is what the writes during the run left, said but not
/// failed.
fn check_counts(
    target: &Target,
    ledger: &Ledger,
    jobs: &[&TableJob],
    args: &MigrateArgs,
    ui: &Ui,
) -> anyhow::Result<()> {
    let mut admin = target.connect().context("connecting to check the counts")?;
    let mut wrong = Vec::new();
    for job in jobs {
        let loaded = ledger.loaded_rows(&mut admin, &job.name, MIGRATE_SOURCE)?;
        if loaded == job.count {
            job.task.finish("ok");
        } else if args.live {
            job.task.finish("CHANGED");
            ui.info(&format!(
                "{}: {loaded} rows loaded while Qdrant counted {} points when the run was \
                 planned: the collection changed meanwhile; `qdrant2pg sync` catches the table up",
                qualified(Some(&target.schema), &job.name),
                job.count
            ));
        } else {
            job.task.finish("MISMATCH");
            wrong.push(format!(
                "{}: {loaded} rows loaded but Qdrant counted {} points (was the collection \
                 written to meanwhile? then `qdrant2pg sync` catches the table up, and \
                 `migrate --live` expects it)",
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
