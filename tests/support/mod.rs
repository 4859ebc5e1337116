//! Test servers and helpers shared by the integration tests.
pub mod cli;
pub mod edge_qdrant;
pub mod exact_json;
pub mod flows;
pub mod genuine_qdrant;
pub mod greenplum;
pub mod pg;
pub mod probe;
pub mod qdrant;
pub mod rng;
pub mod spawn;
pub mod tier;
pub mod vectors;
