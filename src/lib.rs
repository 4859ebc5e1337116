//! qdrant2pg: move Qdrant collections into PostgreSQL, pgvector and AnalyticDB for PostgreSQL.
//!
//! The pipeline, stage by stage: `source` (Qdrant over gRPC, or a snapshot) → `encode` (COPY
//! text / binary rows) → `sink` (rotating files + manifest, or PostgreSQL COPY + ledger).
//! `postgres` knows the target database: its SQL dialects, tables and ledger; `config` turns the guide's YAML files and flags into checked
//! settings; `cmd` wires the stages together for each subcommand. `payload` is what travels
//! between the stages for a point's payload: gRPC values, or exact JSON where gRPC bends them.

pub mod cli;
pub mod cmd;
pub mod config;
pub mod encode;
pub mod layout;
pub mod payload;
pub mod point_id;
pub mod postgres;
pub mod progress;
pub mod sink;
pub mod source;
