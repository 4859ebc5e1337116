//! The command line: one subcommand per step of the guide, plus the ones it leaves to hand work.
//! Each command's flags live beside the command (`cmd::*::*Args`); shared groups (Qdrant
//! connection, PostgreSQL connection, output) are flattened in from `config` and `progress`.

use clap::{Parser, Subcommand};

use crate::cmd;
use crate::progress::OutputArgs;

/// Move Qdrant collections into PostgreSQL, pgvector or AnalyticDB for PostgreSQL — in
/// parallel, resumably, and without bending a single value.
#[derive(Debug, Parser)]
#[command(name = "qdrant2pg", version, about, max_term_width = 100)]
pub struct Cli {
    #[command(flatten)]
    pub output: OutputArgs,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Export collections to COPY text files plus create_table.sql and a manifest (guide step 1).
    Export(cmd::export::ExportArgs),
    /// Load export directories into PostgreSQL over N connections, exactly once (guide step 2).
    Import(cmd::import::ImportArgs),
    /// Stream collections straight into PostgreSQL (COPY BINARY, no files), exactly once.
    Migrate(cmd::migrate::MigrateArgs),
    /// Show what a migration would do — counts, id kinds, columns, DDL, ranges — moving no data.
    Plan(cmd::plan::PlanArgs),
    /// Compare Qdrant with the tables: exact counts, then every vector bit and payload value.
    Verify(cmd::verify::VerifyArgs),
    /// Rebuild indexes from the collection's config: vector (HNSW / ann) and payload (guide step 4).
    Index(cmd::index::IndexArgs),
    /// Show where the shared run of a target schema stands: units, rows, rows/s, workers.
    Status(cmd::status::StatusArgs),
    /// Bring tables up to collections that keep changing: verify --full, then repair each
    /// difference (passes until converged, or a standby kept in sync with --watch).
    Sync(cmd::sync::SyncArgs),
    /// Fill a Qdrant with a synthetic collection (benchmarks, demos): sizes, vector kinds, id layouts.
    Generate(cmd::generate::GenerateArgs),
}
