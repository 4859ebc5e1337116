//! Sinks: where encoded rows go — rotating export files with their manifest, or PostgreSQL
//! connections streaming COPY with a ledger.

pub mod copy;
pub mod digest;
pub mod files;
pub mod manifest;
