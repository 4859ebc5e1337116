//! `qdrant2pg index`: the guide's step 4 — rebuild indexes from the Qdrant collection's own
//! configuration instead of by hand.
//!
//! Plan the statements per table (`postgres::index`, for what the server offers), print them
//! with `--dry-run`, else build those not already in the catalog over N connections (largest
//! work first: vector indexes before payload ones) with `maintenance_work_mem` raised, then
//! ANALYZE each table.

use std::process::ExitCode;
use std::sync::Mutex;
use std::time::Instant;

use anyhow::{Context, bail};

use crate::config::EndpointArgs;
use crate::config::qdrant::Connection;
use crate::layout::PayloadType;
use crate::postgres::catalog::{index_names, table_columns};
use crate::postgres::ddl::Dialect;
use crate::postgres::ident::{qualified, quote_literal};
use crate::postgres::index::{HnswOverride, IndexFeatures, IndexStatement, plan_indexes};
use crate::progress::{OutputArgs, Ui, Unit};
use crate::source::qdrant::QdrantReader;
use crate::source::schema::CollectionSchema;

/// `qdrant2pg index` flags.
#[derive(Debug, clap::Args)]
pub struct IndexArgs {
    #[command(flatten)]
    pub ends: EndpointArgs,
    /// A collection to index (repeatable). Default: the YAML's list, else every collection.
    #[arg(long = "collection", value_name = "NAME")]
    pub collections: Vec<String>,
    /// The target's dialect [default: pgvector when the tables have pgvector columns, else
    /// postgres]. AnalyticDB must be named: `--dialect adbpg`.
    #[arg(long, value_enum)]
    pub dialect: Option<Dialect>,
    /// Print the SQL instead of running it.
    #[arg(long)]
    pub dry_run: bool,
    /// Indexes built at once, each on its own connection.
    #[arg(long, short = 'j', default_value_t = 2, value_name = "N")]
    pub connections: usize,
    /// maintenance_work_mem for the builds (HNSW builds are much faster when the graph fits).
    #[arg(long, default_value = "1GB", value_name = "SIZE")]
    pub maintenance_work_mem: String,
    /// HNSW `m` for every vector index, instead of the collection's (pgvector: 2–100). More
    /// links per node: more recall at a given ef_search, a larger index, a slower build.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(2..=100))]
    pub m: Option<u64>,
    /// HNSW `ef_construction` for every vector index, instead of the collection's (pgvector:
    /// 4–1000, at least twice m).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(4..=1000))]
    pub ef_construction: Option<u64>,
}

pub fn run(args: IndexArgs, output: &OutputArgs) -> anyhow::Result<ExitCode> {
    let ui = Ui::new(output);
    let warn = |m: &str| ui.warn(m);
    let (source, target) = args.ends.load(&warn)?;
    let connection = Connection::resolve(
        &args.ends.qdrant,
        &source.qdrant,
        args.ends.source_config.as_deref(),
    )?;
    let reader = QdrantReader::connect(&connection, Default::default())?;
    let names = if !args.collections.is_empty() {
        args.collections.clone()
    } else if let Some(names) = source.export.collections.clone().filter(|n| !n.is_empty()) {
        names
    } else {
        reader.list_collections()?
    };
    let mut db = target.connect().context("connecting to the target")?;
    // What the server offers is asked once; the dialect may differ per table.
    let server = IndexFeatures::detect(&mut db, args.dialect.unwrap_or(Dialect::Postgres))
        .context("asking the target what it offers")?;
    let existing = index_names(&mut db, &target.schema)
        .with_context(|| format!("listing the indexes of schema {}", target.schema))?;
    let overrides = HnswOverride {
        m: args.m,
        ef_construction: args.ef_construction,
    };
    let mut statements: Vec<IndexStatement> = Vec::new();
    let mut tables = Vec::new();
    for name in &names {
        let columns = table_columns(&mut db, &target.schema, name)
            .with_context(|| format!("reading the columns of {name}"))?;
        if columns.is_empty() {
            bail!(
                "table {} does not exist (import or migrate collection {name:?} first)",
                qualified(Some(&target.schema), name)
            );
        }
        let payload = if columns.iter().any(|(c, t)| c == "payload" && t == "jsonb") {
            PayloadType::Jsonb
        } else {
            PayloadType::Json
        };
        let schema = CollectionSchema::from_info(name, reader.collection_info(name)?, payload)?;
        let pgvector_columns = columns.iter().any(|(_, t)| {
            t.starts_with("vector") || t.starts_with("halfvec") || t.starts_with("sparsevec")
        });
        let dialect = args.dialect.unwrap_or(if pgvector_columns {
            Dialect::Pgvector
        } else {
            Dialect::Postgres
        });
        let mut vectors = schema.layout.vectors.clone();
        for spec in &mut vectors {
            spec.hnsw = overrides.apply(spec.hnsw);
        }
        let plan = plan_indexes(
            &target.schema,
            name,
            &vectors,
            &schema.info.payload_schema,
            payload,
            &columns,
            IndexFeatures { dialect, ..server },
        );
        for skipped in &plan.skipped {
            ui.warn(&format!("{name}: {skipped} — skipped"));
        }
        for statement in plan.statements {
            if existing.contains(&statement.name) {
                let message = format!(
                    "{name}: {} ({}) already exists",
                    statement.name, statement.what
                );
                if overrides != HnswOverride::default() && statement.what.starts_with("vector") {
                    ui.warn(&format!(
                        "{message} and is kept as it is: --m and --ef-construction shape the \
                         indexes built now (DROP INDEX {} first to rebuild it)",
                        qualified(Some(&target.schema), &statement.name)
                    ));
                } else {
                    ui.info(&message);
                }
            } else {
                statements.push(statement);
            }
        }
        tables.push(qualified(Some(&target.schema), name));
    }
    if args.dry_run {
        for s in &statements {
            println!("-- {}\n{};", s.what, s.sql);
        }
        for t in &tables {
            println!("ANALYZE {t};");
        }
        ui.finish_quietly("index --dry-run", output)?;
        return Ok(ExitCode::SUCCESS);
    }
    // Vector indexes are the long builds: start them first so they overlap.
    statements.sort_by_key(|s| !s.what.starts_with("vector"));
    let queue = Mutex::new(
        statements
            .into_iter()
            .rev()
            .map(|s| {
                let task = ui.task_of(&s.name, Some(1), Unit::Indexes);
                (s, task)
            })
            .collect::<Vec<_>>(),
    );
    let failures = Mutex::new(Vec::new());
    let fail = |message: String| {
        failures
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(message)
    };
    let settings = format!(
        "SET statement_timeout = 0; SET maintenance_work_mem = {}",
        quote_literal(&args.maintenance_work_mem)
    );
    std::thread::scope(|s| {
        for _ in 0..args.connections.max(1) {
            s.spawn(|| {
                let session = target
                    .connect()
                    .map_err(|e| format!("{:#}", anyhow::Error::from(e)))
                    .and_then(|mut c| {
                        c.batch_execute(&settings)
                            .map(|()| c)
                            .map_err(|e| format!("session settings: {e}"))
                    });
                let mut session = match session {
                    Ok(session) => session,
                    Err(message) => return fail(message),
                };
                while let Some((statement, task)) =
                    queue.lock().unwrap_or_else(|p| p.into_inner()).pop()
                {
                    let started = Instant::now();
                    match session.batch_execute(&statement.sql) {
                        Ok(()) => {
                            task.add(1, 0);
                            task.finish("ok");
                            ui.info(&format!(
                                "built {} ({}) in {:.1} s",
                                statement.name,
                                statement.what,
                                started.elapsed().as_secs_f64()
                            ));
                        }
                        Err(e) => {
                            task.finish("FAILED");
                            fail(format!(
                                "{} ({}): {}",
                                statement.name,
                                statement.what,
                                e.as_db_error()
                                    .map_or_else(|| e.to_string(), |d| d.message().to_owned())
                            ))
                        }
                    }
                }
            });
        }
    });
    for t in &tables {
        db.batch_execute(&format!("ANALYZE {t}"))
            .with_context(|| format!("analyzing {t}"))?;
    }
    let failures = failures.into_inner().unwrap_or_else(|p| p.into_inner());
    ui.finish("index", output)?;
    if let Some(first) = failures.first() {
        bail!("{} index build(s) failed; first: {first}", failures.len());
    }
    Ok(ExitCode::SUCCESS)
}
