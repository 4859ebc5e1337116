//! Commands: each one only coordinates — plan, spawn the stages, join, report.

pub mod export;
pub mod flags;
pub mod generate;
pub mod import;
pub mod index;
pub mod migrate;
pub mod plan;
pub mod shared_run;
pub mod status;
pub mod sync;
pub mod verify;
