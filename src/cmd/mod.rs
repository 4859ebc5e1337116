//! Commands: each one only coordinates — plan, spawn the stages, join, report.

pub mod export;
pub mod generate;
pub mod import;
pub mod index;
pub mod migrate;
pub mod plan;
pub mod verify;
pub mod verify_search;
