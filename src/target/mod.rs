//! Targets: what the SQL looks like per dialect.
//!
//! Everything that writes SQL text lives here, so that identifiers are quoted in exactly one
//! way and the dialects differ in exactly one place: [`ident`] quotes names, [`ddl`] writes
//! `CREATE TABLE` for PostgreSQL, pgvector and AnalyticDB for PostgreSQL / Greenplum; [`ledger`]
//! records which units of work a target already holds; [`table`] readies schema and tables for a
//! load.

pub mod catalog;
pub mod compare;
pub mod ddl;
pub mod ident;
pub mod index;
pub mod ledger;
pub mod table;
