//! What every source hands the cursors: one scroll page at a time, through [`PageReader`] —
//! a Qdrant server over gRPC (`source::qdrant`) or snapshot shards read in-process
//! (`source::snapshot`) — with the points' exact payloads beside them.

use qdrant_client::qdrant::RetrievedPoint;

use crate::payload::ExactPayloads;
use crate::point_id::PointKey;
use crate::source::error::SourceError;

/// One scroll page.
#[derive(Debug, Default)]
pub struct ScrollPage {
    pub points: Vec<RetrievedPoint>,
    /// The payloads of `points` that gRPC could not carry exactly, read again.
    pub exact: ExactPayloads,
    /// The first id of the next page, `None` at the end of the collection.
    pub next: Option<PointKey>,
}

/// What to fetch with each point.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fetch {
    /// Vectors and payload: a real read.
    Everything,
    /// Ids only: probing the id space.
    IdsOnly,
}

/// Reads pages of one collection; implemented by every source.
pub trait PageReader {
    fn scroll(
        &self,
        collection: &str,
        offset: PointKey,
        limit: u32,
        fetch: Fetch,
    ) -> Result<ScrollPage, SourceError>;

    fn first_at_or_after(
        &self,
        collection: &str,
        key: PointKey,
    ) -> Result<Option<PointKey>, SourceError>;
}
