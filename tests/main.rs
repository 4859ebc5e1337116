//! The integration tests: one binary, each test on its own collection / database, running the
//! built `qdrant2pg` as a user would.

mod support;
mod export;
mod plan;
mod verify;
mod import;
mod index;
mod migrate;
mod pg_harness;
mod qdrant_server;
mod roundtrip;
mod snapshot;
