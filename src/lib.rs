//! qdrant2pg: move Qdrant collections into PostgreSQL, pgvector and AnalyticDB for PostgreSQL.
//!
//! The pipeline, stage by stage: `source` (Qdrant over gRPC, or a snapshot) → `encode` (COPY
//! text / binary rows) → `sink` (rotating files + manifest, or PostgreSQL COPY + ledger). The
//! modules form layers, and each uses only the ones below it:
//!
//! ```text
//! cli                      the command line
//! cmd                      one module per subcommand: plan, spawn, join, report
//! sync                     a table brought up to a changing collection (verify's digests,
//!                          then a repair)
//! verify, run              both ends at once: comparing rows and searches; one load shared
//!                          by many processes (plan, claims, fences)
//! sink                     rotating files; COPY with its ledger row; gpfdist
//! postgres, source, encode the target (SQL, DDL, ledger, scans); Qdrant (gRPC, REST,
//!                          snapshots, cursors); point -> COPY row
//! manifest                 what an export directory holds
//! layout                   one collection's columns
//! config, payload, point_id, progress, retry
//!                          settings, payload values, ids, output, the one retry policy
//! ```

// Lets the test helpers shared with the integration tests (`tests/support/exact_json.rs`, included
// by `encode::fixtures`) name this crate as those tests do.
#[cfg(test)]
extern crate self as qdrant2pg;

pub mod cli;
pub mod cmd;
pub mod config;
pub mod encode;
pub mod layout;
pub mod manifest;
pub mod payload;
pub mod point_id;
pub mod postgres;
pub mod progress;
pub mod retry;
pub mod run;
pub mod sink;
pub mod source;
pub mod sync;
pub mod verify;
