//! The target database — PostgreSQL, pgvector, AnalyticDB for PostgreSQL / Greenplum: what the
//! SQL looks like per dialect, and what the tables and the ledger hold.
//!
//! (Named for what it holds, not `target/`, which reads as Cargo's build directory and which
//! tools that skip build output skip too.)
//!
//! Everything that writes SQL text lives here, so that identifiers are quoted in exactly one
//! way and the dialects differ in exactly one place: [`ident`] quotes names, [`ddl`] writes
//! `CREATE TABLE` for PostgreSQL, pgvector and AnalyticDB for PostgreSQL / Greenplum; [`ledger`]
//! records which units of work a target already holds; [`table`] readies schema and tables for a
//! load; [`run`] divides one load among many processes (the shared run), and [`units`] is
//! migrate's side of it: id ranges as cursor work, and the fence each page's commit passes.

pub mod catalog;
pub mod compare;
pub mod ddl;
pub mod ident;
pub mod index;
pub mod ledger;
pub mod run;
pub mod scan;
pub mod search;
pub mod table;
pub mod units;
