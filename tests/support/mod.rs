//! Test servers and helpers shared by the integration tests.
pub mod cli;
pub mod flows;
pub mod pg;
pub mod qdrant;
