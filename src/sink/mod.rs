//! Sinks: where encoded rows go — rotating export files with their manifest, or PostgreSQL
//! connections streaming COPY with a ledger, or Greenplum's segments pulling files from gpfdist.

pub mod copy;
pub mod file_batch;
pub mod files;
pub mod gpfdist;
