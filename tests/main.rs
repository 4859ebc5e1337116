//! The integration tests: one binary, each test on its own collection / database, running the
//! built `qdrant2pg` as a user would.

mod config;
mod docs;
mod export;
mod faults;
mod genuine;
mod greenplum;
mod hostile;
mod import;
mod index;
mod migrate;
mod pg_harness;
mod plan;
mod qdrant_server;
mod roundtrip;
mod search;
mod secrets;
mod shared;
mod snapshot;
mod support;
mod sync;
mod verify;
