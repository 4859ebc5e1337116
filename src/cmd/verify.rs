//! `qdrant2pg verify`: the guide's step 3 — done by the tool, exactly, not by eye.
//!
//! For each collection: Qdrant's exact count against `count(*)`, then content, every row and
//! point reduced to the canonical form of `verify::compare` (vectors bit for bit, payloads as
//! JSON values): `--sample N` points that exist, read by id (`verify::sample`), or with `--full`
//! everything, folded into digest buckets and drilled down to the differing ids
//! (`verify::full`); then, with `--search`, nearest-neighbour searches (`verify::search`), and
//! the settings the application needs for them. The first differences are named with what
//! differs — never the values. Any difference, and any search below `--min-recall`, exits 1.
//! With `--snapshot` the points come from snapshot files.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;

use crate::cmd::flags::{FullReadArgs, SourceArgs};
use crate::config::EndpointArgs;
use crate::progress::{OutputArgs, Ui};
use crate::source::page::PageReader;
use crate::source::plan::IdSpan;
use crate::verify::full::verify_full;
use crate::verify::sample::verify_sample;
use crate::verify::search::input::{read_filters, read_queries};
use crate::verify::search::{
    self, EfSearch, Engines, SearchSettings, UserSearches, settings_advice,
};
use crate::verify::table::Table;

/// `qdrant2pg verify` flags.
#[derive(Debug, clap::Args)]
pub struct VerifyArgs {
    #[command(flatten)]
    pub ends: EndpointArgs,
    #[command(flatten)]
    pub source: SourceArgs,
    /// Compare this many points of each collection (every point where it has no more),
    /// drawn from the points that exist whatever their ids.
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
    pub read: FullReadArgs,
    #[command(flatten)]
    pub parity: SearchArgs,
}

/// `verify --search` flags.
#[derive(Debug, Clone, clap::Args)]
pub struct SearchArgs {
    /// Also compare nearest-neighbour searches, with the vectors of this many points of each
    /// collection as queries: PostgreSQL's indexed top K against Qdrant's exact and HNSW top
    /// K, with the ef_search it needs and both engines' latency.
    #[arg(long, value_name = "N")]
    pub search: Option<usize>,
    /// Neighbours per query: the K of recall@K.
    #[arg(long, default_value_t = 10, value_name = "K")]
    pub top: u64,
    /// More query vectors, one JSON object per line: `{"using": "NAME", "query": [floats]}` (or
    /// `"query": {"indices": [...], "values": [...]}` for a sparse vector; `using` left out means
    /// the unnamed vector; `"collection": "NAME"` limits a line to one collection; `"filter":
    /// {...}` searches it with that Qdrant filter only).
    #[arg(long, value_name = "FILE")]
    pub queries: Option<PathBuf>,
    /// Qdrant filters, one JSON object per line (`{"must": [{"key": "k", "match": {"value":
    /// "v"}}]}`): every vector's queries are searched with each too, against Qdrant's exact
    /// filtered search, the filter translated to SQL on the payload column.
    #[arg(long, value_name = "FILE")]
    pub filter: Option<PathBuf>,
    /// The least recall@K against Qdrant's exact search that passes.
    #[arg(long, default_value_t = 0.95, value_name = "R")]
    pub min_recall: f64,
    /// `hnsw.ef_search` for PostgreSQL's searches: `auto` finds, per vector, the smallest of
    /// 40, 60, 100, 150, 200, 300, 400, 600, 800, 1000 that reaches --min-recall; a number
    /// (1–1000) searches at that value only.
    #[arg(long, default_value = "auto", value_name = "auto|N")]
    pub ef_search: EfSearch,
}

impl SearchArgs {
    pub fn wanted(&self) -> bool {
        self.search.is_some() || self.queries.is_some() || self.filter.is_some()
    }

    fn settings(&self, clients: usize) -> SearchSettings {
        SearchSettings {
            top: self.top,
            min_recall: self.min_recall,
            ef_search: self.ef_search,
            clients,
        }
    }
}

pub fn run(args: VerifyArgs, output: &OutputArgs) -> anyhow::Result<ExitCode> {
    let ui = Ui::new(output);
    let warn = |m: &str| ui.warn(m);
    let (source_file, target) = args.ends.load(&warn)?;
    let (reader, names) = args.source.open(
        &args.ends.qdrant,
        &source_file,
        args.ends.source_config.as_deref(),
    )?;
    let full_read = args.read.settings();
    let user = UserSearches {
        queries: match &args.parity.queries {
            Some(path) => read_queries(path)?,
            None => Vec::new(),
        },
        filters: match &args.parity.filter {
            Some(path) => read_filters(path)?,
            None => Vec::new(),
        },
    };
    let settings = args.parity.settings(args.read.connections);
    let mut db = target.connect().context("connecting to the target")?;
    let mut all_clean = true;
    let mut searches = Vec::new();
    let mut out = String::new();
    for name in &names {
        let table = Table::describe(&mut db, &target.schema, name, &reader)?;
        let qdrant_count = reader.count_exact(name)?;
        let task = ui.task(name, args.full.then_some(qdrant_count));
        let table_count: i64 = db
            .query_one(&format!("SELECT count(*) FROM {}", table.name), &[])
            .with_context(|| format!("counting {}", table.name))?
            .get(0);
        let mut findings = if args.full {
            let span = IdSpan::probe(|k| reader.first_at_or_after(name, k))?;
            verify_full(
                &reader,
                &target,
                &table,
                &span,
                qdrant_count,
                &full_read,
                &task,
            )?
        } else {
            let findings = verify_sample(&reader, &mut db, &table, qdrant_count, args.sample)?;
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
                Some(n) => reader.sample_keys(name, qdrant_count, n)?,
                None => Vec::new(),
            };
            let mut engines = Engines {
                qdrant: server,
                target: &target,
                db: &mut db,
            };
            search::check_collection(
                &mut engines,
                &target.schema,
                &table.schema,
                &sample,
                &user,
                &settings,
            )
            .with_context(|| format!("searching {}", table.name))?
        } else {
            Vec::new()
        };
        let clean = findings.is_clean();
        let searches_passed = searched.iter().all(|s| s.passed);
        all_clean &= clean && searches_passed;
        task.finish(match (clean, searches_passed) {
            (false, _) => "DIFFERS",
            (true, false) => "LOW RECALL",
            (true, true) => "ok",
        });
        out.push_str(&format!(
            "{name}: Qdrant {qdrant_count} points, table {} {table_count} rows, {}\n",
            table.name,
            findings.verdict()
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
            for line in s.lines(settings.top, settings.min_recall) {
                out.push_str(&format!("  {line}\n"));
            }
        }
        searches.extend(searched);
    }
    if let Some(advice) = settings_advice(&searches, &mut db)? {
        out.push_str(&format!("{advice}\n"));
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
