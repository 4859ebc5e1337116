//! Sources: where points come from — Qdrant over gRPC, or a snapshot on disk — and the
//! machinery that reads them in parallel: the id-range planner and the cursors.

pub mod cursor;
pub mod edge;
pub mod parallel;
pub mod export_dir;
pub mod plan;
pub mod qdrant;
pub mod schema;
