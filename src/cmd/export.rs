//! `qdrant2pg export`: the guide's step 1, in parallel and resumable.
//!
//! Plan: resolve the guide's `qdrant2csv.yaml` and flags, open the source (a server, or
//! snapshot files with `--snapshot`), describe and count each collection, probe its id span and
//! cut it into ranges, minus what a previous run already wrote. With `--partition I/N` (or a
//! job array's index and size from the environment) only part I of N of each collection's id
//! space is exported, to `<collection>/part-I-of-N/` with its own manifest: the same span
//! probed on any host gives the same parts, and the manifest records the part's range so
//! `import` can check a set of parts is complete and disjoint. Spawn: cursors (one gRPC
//! connection each, or handles on the snapshot's shards) → bounded page queue → encoder threads
//! → per-collection rotating files. Join, then finish each collection: `create_table.sql` (its column types
//! depend on the ids and sparse indices seen), manifest marked complete, counts checked. A
//! collection that fails (a point that cannot be read, a file that cannot be written) keeps
//! the files it completed and stays incomplete; the others finish, and the run then fails
//! naming it, so the same command again exports only what is missing.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use anyhow::{Context, bail};

use crate::cmd::flags::SourceArgs;
use crate::config::qdrant::{QdrantArgs, ReadTuning, SourceFile};
use crate::config::read_or_default;
use crate::encode::RowEncoder;
use crate::encode::json::{NOT_FOUND_AGAIN, wide_number_warning};
use crate::encode::text::TextRowEncoder;
use crate::layout::{PayloadType, VectorSyntax};
use crate::manifest::{MANIFEST_FILE, Manifest, Partition, temporary_name, write_atomically};
use crate::point_id::KeyRange;
use crate::postgres::ddl::{DdlOptions, Dialect, VectorStorage, create_table_sql_with};
use crate::progress::{Failed, OutputArgs, Task, Ui};
use crate::sink::files::{CollectionFiles, EncodedPage};
use crate::source::cursor::{CollectionFailure, PageBatch, Scheduler};
use crate::source::page::PageReader;
use crate::source::parallel::read_parallel;
use crate::source::plan::{IdSpan, Work, clip, interleave, range_count, subtract};
use crate::source::schema::CollectionSchema;
use crate::source::{Source, concerns_every_collection};

/// The guide's default for `max_line_in_file`.
pub(crate) const DEFAULT_MAX_LINES: u64 = 40_000;
/// `qdrant2pg export` flags.
#[derive(Debug, clap::Args)]
pub struct ExportArgs {
    /// The guide's qdrant2csv.yaml (sections `qdrant:` and `export:`), used unchanged.
    #[arg(long, short = 'c', value_name = "FILE")]
    pub config: Option<PathBuf>,
    #[command(flatten)]
    pub qdrant: QdrantArgs,
    #[command(flatten)]
    pub source: SourceArgs,
    /// Output directory (`export.output_path`); one subdirectory per collection.
    #[arg(long, short = 'o', value_name = "DIR")]
    pub output: Option<PathBuf>,
    /// Rows per file at most (`export.max_line_in_file`, default 40000).
    #[arg(long, value_name = "N")]
    pub max_lines: Option<u64>,
    /// Start over: delete this tool's files (data files, manifest, create_table.sql) in each
    /// exported collection's directory instead of resuming.
    #[arg(long)]
    pub restart: bool,
    /// The payload column type written to create_table.sql.
    #[arg(long, value_enum, default_value_t)]
    pub payload_type: PayloadType,
    /// The target dialect: decides create_table.sql, and with `pgvector` vectors are written in
    /// pgvector's text form (`[1,2]`, sparsevec `{1:0.5}/dim`).
    #[arg(long, value_enum, default_value_t = Dialect::Postgres)]
    pub dialect: Dialect,
    /// The storage create_table.sql sets on float array columns.
    #[arg(long, value_enum, default_value_t)]
    pub vector_storage: VectorStorage,
    #[command(flatten)]
    pub tuning: ReadTuning,
    /// Benchmark the ceiling: scroll and decode every page with the same cursors, then discard
    /// it — no encoding, no files. Export's speed is reported against this.
    #[arg(long)]
    pub scroll_only: bool,
    /// Export only part I of N (0 ≤ I < N) of every collection's id space, into
    /// `<collection>/part-I-of-N/` with its own manifest; `import` loads the N parts as one
    /// collection. Default: JOB_COMPLETION_INDEX / JOB_COMPLETIONS (a Kubernetes Indexed Job)
    /// or SLURM_ARRAY_TASK_ID / SLURM_ARRAY_TASK_COUNT (a Slurm job array), when set.
    #[arg(long, value_name = "I/N", value_parser = parse_part)]
    pub partition: Option<Part>,
}

/// Which part of a partitioned export this process writes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Part {
    pub index: u32,
    pub count: u32,
}

fn parse_part(text: &str) -> Result<Part, String> {
    let parsed = text
        .split_once('/')
        .and_then(|(i, n)| Some((i.trim().parse().ok()?, n.trim().parse().ok()?)));
    match parsed {
        Some((index, count)) if index < count => Ok(Part { index, count }),
        _ => Err(format!(
            "{text:?} is not I/N with 0 <= I < N (part I of N, counted from 0)"
        )),
    }
}

/// The job-array variables a partition is read from when `--partition` is not given: the
/// index, the count, and (Slurm) the first index, which arrays like `--array=1-8` start at.
const PART_VARIABLES: [(&str, &str, Option<&str>); 2] = [
    ("JOB_COMPLETION_INDEX", "JOB_COMPLETIONS", None),
    (
        "SLURM_ARRAY_TASK_ID",
        "SLURM_ARRAY_TASK_COUNT",
        Some("SLURM_ARRAY_TASK_MIN"),
    ),
];

/// `--partition`, else the first job array in the environment whose index and count are both
/// set; with where it came from.
fn resolve_part(
    flag: Option<Part>,
    env: &dyn Fn(&str) -> Option<String>,
    warn: &dyn Fn(&str),
) -> anyhow::Result<Option<(Part, String)>> {
    if let Some(part) = flag {
        return Ok(Some((part, "--partition".to_owned())));
    }
    for (index_var, count_var, min_var) in PART_VARIABLES {
        let Some(index) = env(index_var) else {
            continue;
        };
        let Some(count) = env(count_var) else {
            warn(&format!(
                "{index_var} is set but {count_var} is not: exporting every id (set \
                 {count_var} to the number of parts, or pass --partition I/N)"
            ));
            continue;
        };
        let number = |var: &str, text: &str| {
            text.trim().parse::<u32>().with_context(|| {
                format!("{var}={text:?} is not a number (it says which part to export)")
            })
        };
        let first = match min_var.and_then(|v| env(v).map(|t| (v, t))) {
            Some((var, text)) => number(var, &text)?,
            None => 0,
        };
        let index = number(index_var, &index)?;
        let count = number(count_var, &count)?;
        let origin = format!("{index_var}={index}, {count_var}={count}");
        let Some(index) = index.checked_sub(first).filter(|i| *i < count) else {
            bail!(
                "{origin}: the index is not between {first} and {} — a job array of {count} \
                 tasks must number them {first}..{}; or pass --partition I/N",
                first + count.saturating_sub(1),
                first + count.saturating_sub(1)
            );
        };
        return Ok(Some((Part { index, count }, origin)));
    }
    Ok(None)
}

/// Everything export needs, checked.
struct ExportPlan {
    /// The guide's qdrant2csv.yaml, or its defaults.
    file: SourceFile,
    output: PathBuf,
    max_lines: u64,
    part: Option<Part>,
}

impl ExportPlan {
    fn resolve(args: &ExportArgs, ui: &Ui) -> anyhow::Result<ExportPlan> {
        let file: SourceFile = read_or_default(args.config.as_deref(), &|w| ui.warn(w))?;
        let output = args
            .output
            .clone()
            .or_else(|| file.export.output_path.clone())
            .unwrap_or_else(|| PathBuf::from("./output"));
        let max_lines = args
            .max_lines
            .or(file.export.max_line_in_file)
            .unwrap_or(DEFAULT_MAX_LINES);
        if max_lines == 0 {
            bail!("max_line_in_file must be at least 1");
        }
        let part = resolve_part(args.partition, &|k| std::env::var(k).ok(), &|w| ui.warn(w))?;
        if let Some((part, origin)) = &part {
            ui.info(&format!(
                "exporting part {} of {} of every collection ({origin})",
                part.index, part.count
            ));
        }
        Ok(ExportPlan {
            file,
            output,
            max_lines,
            part: part.map(|(p, _)| p),
        })
    }
}

/// One collection's share of the run.
struct CollectionJob {
    schema: CollectionSchema,
    dir: PathBuf,
    count: u64,
    files: CollectionFiles,
    task: Arc<Task>,
    encoder: TextRowEncoder,
    /// Bytes per encoded row, as last seen.
    row_bytes: AtomicUsize,
}

pub fn run(args: ExportArgs, output: &OutputArgs) -> anyhow::Result<ExitCode> {
    let ui = Ui::new(output);
    let plan = ExportPlan::resolve(&args, &ui)?;
    let syntax = args.dialect.vector_syntax();
    fs::create_dir_all(&plan.output)
        .with_context(|| format!("cannot create output directory {}", plan.output.display()))?;
    let (source, names) = args
        .source
        .open(&args.qdrant, &plan.file, args.config.as_deref())?;

    let mut jobs = Vec::new();
    let mut work = Vec::new();
    let mut spans = Vec::new();
    let mut failed = Failed::default();
    for name in &names {
        let job = match prepare_job(&source, name, &args, &plan, syntax, &ui) {
            Ok(Some(job)) => job,
            Ok(None) => continue,
            Err(e) if concerns_every_collection(&e) => return Err(e),
            Err(e) => {
                failed.add(name, Some(&ui.task(name, None)), e);
                continue;
            }
        };
        let (job, todo, span) = job;
        let index = jobs.len();
        work.extend(todo.into_iter().map(|range| Work {
            collection: index,
            range,
        }));
        spans.push(span);
        jobs.push(job);
    }

    // Interleave the collections' ranges, largest collection first, so every cursor has work
    // from the start and the big ones are not left for last.
    work.sort_by_key(|w| std::cmp::Reverse(jobs[w.collection].count));
    let work = interleave(work, jobs.len());
    let scheduler = Scheduler::new(work, spans, u64::from(args.tuning.page_size) * 2);
    let names: Vec<String> = jobs.iter().map(|j| j.schema.name.clone()).collect();
    let failures = if args.scroll_only {
        read_parallel(
            &scheduler,
            &|| source.open_reader(),
            &names,
            args.tuning.cursors,
            args.tuning.page_size,
            args.tuning.encoders(),
            |batch| {
                jobs[batch.collection]
                    .task
                    .add(batch.points.len() as u64, 0);
                Ok(())
            },
        )?
    } else {
        read_and_write(&scheduler, &source, &names, &jobs, &args.tuning)?
    };
    for failure in failures {
        let job = &jobs[failure.collection];
        failed.add(&job.schema.name, Some(&job.task), failure.error);
    }
    if args.scroll_only {
        for job in jobs.iter().filter(|j| !failed.contains(&j.schema.name)) {
            job.task.finish("scrolled");
        }
        ui.finish("export --scroll-only", output)?;
        failed.into_result(names.len(), "scrolled", "nothing was written")?;
        return Ok(ExitCode::SUCCESS);
    }

    let mut mismatches = 0;
    for job in jobs.iter().filter(|j| !failed.contains(&j.schema.name)) {
        let facts = job.files.manifest().facts();
        if let Some(point) = facts.wide_number {
            ui.warn(&wide_number_warning(
                &job.schema.name,
                point,
                &source
                    .inexact_because()
                    .unwrap_or_else(|| NOT_FOUND_AGAIN.to_owned()),
            ));
        }
        let ddl = create_table_sql_with(
            None,
            &job.schema.name,
            &job.schema.layout,
            &facts,
            DdlOptions {
                storage: args.vector_storage,
                ..DdlOptions::from(args.dialect)
            },
        );
        let sql_path = job.dir.join("create_table.sql");
        write_atomically(&sql_path, ddl.as_bytes())
            .with_context(|| format!("cannot write {}", sql_path.display()))?;
        let manifest = job.files.complete()?;
        // A part holds what its range holds; import checks the parts' sum.
        if plan.part.is_none() && manifest.rows() != job.count {
            mismatches += 1;
            ui.warn(&format!(
                "{}: exported {} rows but Qdrant counted {} points when the export started \
                 (was the collection written to meanwhile?)",
                job.schema.name,
                manifest.rows(),
                job.count
            ));
        }
        job.task
            .finish(if plan.part.is_some() || manifest.rows() == job.count {
                "ok"
            } else {
                "MISMATCH"
            });
    }
    ui.finish("export", output)?;
    failed.into_result(
        names.len(),
        "exported completely",
        "their files so far are kept, and the same command again exports only what is missing",
    )?;
    Ok(if mismatches == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(2)
    })
}

/// Describes, counts and probes one collection and readies its directory: its job, the id
/// ranges left to read, and its id span. `None` when an earlier run exported it completely.
fn prepare_job(
    source: &Source,
    name: &str,
    args: &ExportArgs,
    plan: &ExportPlan,
    syntax: VectorSyntax,
    ui: &Ui,
) -> anyhow::Result<Option<(CollectionJob, Vec<KeyRange>, IdSpan)>> {
    let info = source.collection_info(name)?;
    let schema = CollectionSchema::from_info(name, info, args.payload_type)?;
    let dir = match plan.part {
        Some(part) => plan
            .output
            .join(name)
            .join(Partition::dir_name(part.index, part.count)),
        None => plan.output.join(name),
    };
    let Some(mut manifest) = prepare_directory(&dir, &schema, syntax, args.restart, plan.part)?
    else {
        ui.info(&format!(
            "{name}: already exported completely in {}, skipped",
            dir.display()
        ));
        return Ok(None);
    };
    let count = source.count_exact(name)?;
    let span = IdSpan::probe(|key| source.first_at_or_after(name, key))
        .with_context(|| format!("probing the ids of collection {name:?}"))?;
    let pieces = range_count(count, plan.max_lines, &args.tuning);
    let mut planned = span.plan(pieces);
    if let Some(part) = plan.part {
        // A part keeps the range it started with: the span may have moved since.
        let range = match manifest.partition {
            Some(p) => p.range,
            None => span.partition(part.count)[part.index as usize],
        };
        manifest.partition = Some(Partition {
            index: part.index,
            count: part.count,
            range,
        });
        planned = clip(&planned, &range);
    }
    manifest.points_count = Some(count);
    manifest.store(&dir)?;
    let covered: Vec<KeyRange> = manifest.files.iter().map(|f| f.range).collect();
    let done_rows = manifest.rows();
    let todo = subtract(&planned, &covered);
    let task = ui.task(name, plan.part.is_none().then_some(count));
    task.add_done_before(done_rows);
    let encoder = TextRowEncoder::new(&schema.layout, syntax);
    let mut header = Vec::new();
    encoder.header(&mut header);
    let files = CollectionFiles::new(&dir, manifest, header, plan.max_lines, Arc::clone(&task));
    let job = CollectionJob {
        schema,
        dir,
        count,
        files,
        task,
        encoder,
        row_bytes: AtomicUsize::new(0),
    };
    Ok(Some((job, todo, span)))
}

/// The pipeline: cursors → bounded page queue → encoders → files. Returns the collections that
/// failed; the files each did complete are recorded either way.
fn read_and_write(
    scheduler: &Scheduler,
    source: &Source,
    names: &[String],
    jobs: &[CollectionJob],
    tuning: &ReadTuning,
) -> anyhow::Result<Vec<CollectionFailure>> {
    let result = read_parallel(
        scheduler,
        &|| source.open_reader(),
        names,
        tuning.cursors,
        tuning.page_size,
        tuning.encoders(),
        |batch| {
            let job = &jobs[batch.collection];
            let page = encode_page(job, batch)?;
            job.files
                .accept(page)
                .with_context(|| format!("exporting collection {:?}", job.schema.name))
        },
    );
    // Whatever happened, record the files that did complete.
    for job in jobs {
        job.files.flush()?;
    }
    result
}

fn encode_page(job: &CollectionJob, batch: PageBatch) -> anyhow::Result<EncodedPage> {
    // Rows of one collection are alike in size: size the buffer from the last page's rows, so
    // it is allocated once, not grown by doubling.
    let row_bytes = job.row_bytes.load(Ordering::Relaxed);
    let capacity = row_bytes * batch.points.len() + row_bytes / 2;
    let mut page = EncodedPage {
        range_id: batch.range_id,
        seq: batch.seq,
        last: batch.last,
        covered: batch.covered,
        bytes: Vec::with_capacity(capacity),
        row_ends: Vec::with_capacity(batch.points.len()),
        keys: Vec::with_capacity(batch.points.len()),
        facts: crate::layout::DataFacts::for_layout(&job.schema.layout),
    };
    for point in batch.point_refs() {
        let key = job
            .encoder
            .encode(point, &mut page.bytes, &mut page.facts)
            .with_context(|| format!("collection {:?}", job.schema.name))?;
        page.row_ends.push(page.bytes.len());
        page.keys.push(key);
    }
    if let Some(rows) = page.bytes.len().checked_div(page.keys.len()) {
        job.row_bytes.store(rows, Ordering::Relaxed);
    }
    Ok(page)
}

/// Readies `dir` for this collection's export and returns the manifest to continue from, or
/// `None` if a previous run already completed it.
fn prepare_directory(
    dir: &Path,
    schema: &CollectionSchema,
    syntax: VectorSyntax,
    restart: bool,
    part: Option<Part>,
) -> anyhow::Result<Option<Manifest>> {
    let fresh = || Manifest::new(&schema.name, schema.layout.clone(), syntax);
    fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    if restart {
        remove_export_files(dir, None)?;
        let manifest = fresh();
        manifest.store(dir)?;
        return Ok(Some(manifest));
    }
    let manifest = match Manifest::load(dir)? {
        Some(m) => m,
        None => {
            if let Some(stray) = export_files(dir)?.into_iter().find(|p| !is_temporary(p)) {
                bail!(
                    "{} already holds {} but no qdrant2pg manifest: it is not an export this tool \
                     can resume; pass --restart to overwrite it, or choose another --output",
                    dir.display(),
                    stray
                        .file_name()
                        .map(|n| n.to_string_lossy())
                        .unwrap_or_default()
                );
            }
            let manifest = fresh();
            manifest.store(dir)?;
            return Ok(Some(manifest));
        }
    };
    if manifest.collection != schema.name
        || manifest.layout != schema.layout
        || manifest.vector_syntax != syntax
    {
        bail!(
            "{} holds an export of a different collection or layout (collection {:?}, {} \
             vector column(s), {:?} syntax); pass --restart to overwrite it, or choose another --output",
            dir.display(),
            manifest.collection,
            manifest.layout.vectors.len(),
            manifest.vector_syntax
        );
    }
    let holds = manifest.partition.map(|p| (p.index, p.count));
    let wanted = part.map(|p| (p.index, p.count));
    // A part's manifest is stored before its range is known; one that got no further is fresh.
    let unstarted_part = holds.is_none() && manifest.files.is_empty() && wanted.is_some();
    if holds != wanted && !unstarted_part {
        bail!(
            "{} holds {} but this export writes {}; pass --restart to overwrite it, or choose \
             another --output",
            dir.display(),
            holds.map_or("a whole export".to_owned(), |(i, n)| format!(
                "part {i} of {n}"
            )),
            wanted.map_or("a whole export".to_owned(), |(i, n)| format!(
                "part {i} of {n}"
            ))
        );
    }
    if manifest.complete {
        return Ok(None);
    }
    // Resume: files the manifest does not list were never finished; they go.
    remove_export_files(dir, Some(&manifest))?;
    Ok(Some(manifest))
}

/// This tool's files in `dir`: data files, their temporaries, the manifest, create_table.sql.
fn export_files(dir: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let mut found = Vec::new();
    for entry in fs::read_dir(dir).with_context(|| format!("cannot read {}", dir.display()))? {
        let path = entry
            .with_context(|| format!("cannot read {}", dir.display()))?
            .path();
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let data = name.len() == 14
            && name.ends_with(".csv")
            && name[..10].bytes().all(|b| b.is_ascii_digit());
        if data || is_temporary(&path) || name == "create_table.sql" {
            found.push(path);
        }
    }
    Ok(found)
}

fn is_temporary(path: &Path) -> bool {
    path.file_name().is_some_and(|n| {
        let n = n.to_string_lossy();
        n.starts_with('.') && n.ends_with(".tmp")
    })
}

/// Removes this tool's files from `dir`, except the data files `keep` lists.
fn remove_export_files(dir: &Path, keep: Option<&Manifest>) -> anyhow::Result<()> {
    for path in export_files(dir)? {
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        if keep.is_some_and(|m| m.files.iter().any(|f| f.name == name)) {
            continue;
        }
        fs::remove_file(&path).with_context(|| format!("cannot remove {}", path.display()))?;
    }
    if keep.is_none() {
        let manifest = dir.join(MANIFEST_FILE);
        for path in [temporary_name(&manifest), manifest] {
            match fs::remove_file(&path) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                    return Err(e).with_context(|| format!("cannot remove {}", path.display()));
                }
                _ => {}
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::env_of;

    fn part(index: u32, count: u32) -> Part {
        Part { index, count }
    }

    #[test]
    fn partition_flags_parse_i_of_n() {
        assert_eq!(parse_part("3/8"), Ok(part(3, 8)));
        assert_eq!(parse_part(" 0 / 1 "), Ok(part(0, 1)));
        for bad in ["8/8", "1/0", "3", "a/b", "-1/4"] {
            assert!(parse_part(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn job_arrays_give_the_partition_when_no_flag_does() {
        let resolve = |flag, vars| {
            let warnings = std::cell::RefCell::new(Vec::new());
            let result = resolve_part(flag, &env_of(vars), &|w| {
                warnings.borrow_mut().push(w.to_owned())
            })
            .map(|p| p.map(|(p, _)| p));
            (result, warnings.into_inner())
        };
        let k8s = &[("JOB_COMPLETION_INDEX", "2"), ("JOB_COMPLETIONS", "5")];
        assert_eq!(resolve(None, k8s).0.unwrap(), Some(part(2, 5)));
        assert_eq!(resolve(Some(part(0, 1)), k8s).0.unwrap(), Some(part(0, 1)));
        let slurm = &[
            ("SLURM_ARRAY_TASK_ID", "8"),
            ("SLURM_ARRAY_TASK_COUNT", "8"),
            ("SLURM_ARRAY_TASK_MIN", "1"),
        ];
        assert_eq!(resolve(None, slurm).0.unwrap(), Some(part(7, 8)));
        let (none, warnings) = resolve(None, &[("JOB_COMPLETION_INDEX", "2")]);
        assert_eq!(none.unwrap(), None);
        assert!(
            warnings[0].contains("JOB_COMPLETIONS is not"),
            "{warnings:?}"
        );
        let outside = &[
            ("SLURM_ARRAY_TASK_ID", "12"),
            ("SLURM_ARRAY_TASK_COUNT", "4"),
        ];
        let err = resolve(None, outside).0.unwrap_err().to_string();
        assert!(err.contains("SLURM_ARRAY_TASK_ID=12"), "{err}");
        assert_eq!(resolve(None, &[]).0.unwrap(), None);
    }
}
