//! `qdrant2pg plan`: what a migration would do, without moving any data.
//!
//! For each collection: the exact point count, where the ids lie and which id column type
//! they need, the vectors and the columns they become, the DDL for the chosen dialect, the
//! range plan the cursors would start from, and the export size estimated from one encoded
//! page. Everything here comes from cheap requests: count, id-only probes, one page. With
//! `--snapshot` the same questions go to the snapshot files (unpacked to scratch first).

use std::process::ExitCode;

use anyhow::Context;

use crate::cmd::export::DEFAULT_MAX_LINES;
use crate::cmd::flags::SourceArgs;
use crate::config::qdrant::{QdrantArgs, ReadTuning, SourceFile};
use crate::config::read_or_default;
use crate::encode::RowEncoder;
use crate::encode::text::TextRowEncoder;
use crate::layout::{DataFacts, PayloadType, VectorShape, VectorSpec};
use crate::point_id::PointKey;
use crate::postgres::ddl::{Dialect, create_table_sql};
use crate::progress::{OutputArgs, Ui};
use crate::source::page::{Fetch, PageReader};
use crate::source::plan::{IdSpan, range_count};
use crate::source::schema::CollectionSchema;

/// Points encoded to estimate the bytes per row.
const SAMPLE_POINTS: u32 = 64;

/// `qdrant2pg plan` flags.
#[derive(Debug, clap::Args)]
pub struct PlanArgs {
    /// The guide's qdrant2csv.yaml (its `qdrant:` section and `export.collections`).
    #[arg(long, short = 'c', value_name = "FILE")]
    pub config: Option<std::path::PathBuf>,
    #[command(flatten)]
    pub qdrant: QdrantArgs,
    #[command(flatten)]
    pub source: SourceArgs,
    #[arg(long, value_enum, default_value_t = Dialect::Postgres)]
    pub dialect: Dialect,
    #[arg(long, value_enum, default_value_t)]
    pub payload_type: PayloadType,
    #[command(flatten)]
    pub tuning: ReadTuning,
}

pub fn run(args: PlanArgs, output: &OutputArgs) -> anyhow::Result<ExitCode> {
    let ui = Ui::new(output);
    let file: SourceFile = read_or_default(args.config.as_deref(), &|w| ui.warn(w))?;
    let (reader, names) = args
        .source
        .open(&args.qdrant, &file, args.config.as_deref())?;
    let syntax = args.dialect.vector_syntax();
    let mut out = String::new();
    for name in &names {
        let info = reader.collection_info(name)?;
        let schema = CollectionSchema::from_info(name, info, args.payload_type)?;
        let count = reader.count_exact(name)?;
        let span = IdSpan::probe(|key| reader.first_at_or_after(name, key))
            .with_context(|| format!("probing the ids of collection {name:?}"))?;
        let mut facts = DataFacts::for_layout(&schema.layout);
        if let Some((_, max)) = span.ints {
            facts.note_id(PointKey::Num(max));
            facts.note_id(PointKey::Num(0));
        }
        if span.uuids.is_some() {
            facts.note_id(PointKey::Uuid(0));
        }
        // One page, encoded as export would: bytes per row, and sparse index widths so far.
        let encoder = TextRowEncoder::new(&schema.layout, syntax);
        let page = reader.scroll(name, PointKey::MIN, SAMPLE_POINTS, Fetch::Everything)?;
        let mut bytes = Vec::new();
        for point in page.exact.points(&page.points) {
            encoder
                .encode(point, &mut bytes, &mut facts)
                .with_context(|| format!("collection {name:?}"))?;
        }
        let per_row = bytes.len() as f64 / page.points.len().max(1) as f64;
        let ranges = span.plan(range_count(count, DEFAULT_MAX_LINES, &args.tuning));
        out.push_str(&format!("collection {name}\n"));
        out.push_str(&format!("  points (exact):   {count}\n"));
        out.push_str(&format!(
            "  id column:        id {}",
            facts.id_kind().sql_type()
        ));
        match (span.ints, span.uuids) {
            (Some((lo, hi)), Some((ulo, uhi))) => out.push_str(&format!(
                " (integers {lo}..={hi} and UUIDs {}..={})\n",
                PointKey::Uuid(ulo),
                PointKey::Uuid(uhi)
            )),
            (Some((lo, hi)), None) => out.push_str(&format!(" (integers {lo}..={hi})\n")),
            (None, Some((lo, hi))) => out.push_str(&format!(
                " (UUIDs {}..={})\n",
                PointKey::Uuid(lo),
                PointKey::Uuid(hi)
            )),
            (None, None) => out.push_str(" (empty collection)\n"),
        }
        for v in &schema.layout.vectors {
            out.push_str(&format!(
                "  vector {:<12} {}\n",
                v.column(),
                describe_vector(v)
            ));
        }
        out.push_str(&format!(
            "  estimated export: {:.1} MB ({per_row:.0} bytes/point from {} sampled points)\n",
            per_row * count as f64 / 1e6,
            page.points.len()
        ));
        out.push_str(&format!(
            "  ranges planned:   {} for {} cursor(s)\n",
            ranges.len(),
            args.tuning.cursors
        ));
        for r in &ranges {
            out.push_str(&format!("    {r}\n"));
        }
        let ddl = create_table_sql(None, name, &schema.layout, &facts, args.dialect);
        out.push_str("  DDL:\n");
        for line in ddl.lines() {
            out.push_str(&format!("    {line}\n"));
        }
        out.push('\n');
    }
    print!("{out}");
    ui.finish_quietly("plan", output)?;
    Ok(ExitCode::SUCCESS)
}

/// A vector as Qdrant's API describes it: `dense, size 768, float32, distance Cosine, hnsw m=16
/// ef_construct=100`.
fn describe_vector(v: &VectorSpec) -> String {
    let mut words = vec![v.shape.to_string()];
    if v.shape != VectorShape::Sparse {
        if let Some(dim) = v.dim {
            words.push(format!("size {dim}"));
        }
        words.push(v.datatype.to_string());
    }
    if let Some(distance) = v.distance {
        words.push(format!("distance {distance}"));
    }
    if let Some(h) = v.hnsw {
        words.push(format!("hnsw m={} ef_construct={}", h.m, h.ef_construct));
    }
    words.join(", ")
}
