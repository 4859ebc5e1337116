//! The target database — PostgreSQL, pgvector, AnalyticDB for PostgreSQL / Greenplum: what the
//! SQL looks like per dialect, and what the tables and the ledger hold.
//!
//! (Named for what it holds, not `target/`, which reads as Cargo's build directory and which
//! tools that skip build output skip too.)
//!
//! It is only the target: it knows nothing of Qdrant. Identifiers are quoted in exactly one way
//! and the dialects differ in exactly one place: [`ident`] quotes names, [`ddl`] writes `CREATE
//! TABLE` for PostgreSQL, pgvector and AnalyticDB for PostgreSQL / Greenplum; [`catalog`] asks
//! what the server and its tables are; [`ledger`] records which units of work a target already
//! holds; [`table`] readies schema and tables for a load; [`index`] plans index builds; [`scan`]
//! reads a table back in parallel, in binary; [`transient`] tells a lost connection from a
//! failure that will repeat. What bridges both ends lives above: `verify` (comparing rows and
//! searches) and `run` (one load shared by many processes).

pub mod catalog;
pub mod ddl;
pub mod ident;
pub mod index;
pub mod ledger;
pub mod scan;
pub mod table;
pub mod transient;
