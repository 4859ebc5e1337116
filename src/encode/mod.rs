//! Encoding stage: one Qdrant point → one PostgreSQL COPY row, appended to a reused buffer.
//!
//! This is the CPU hot path of every command. Each encoder appends into a caller-owned
//! `Vec<u8>` (capacity kept across pages), never allocates per field, and reports what it learned
//! about the data ([`crate::layout::DataFacts`]) so the DDL can be decided after the read.
//!
//! - [`float`]: shortest round-trip text for `f32`.
//! - [`json`]: a payload as JSON text, escaped for COPY text on the fly.
//! - [`text`]: COPY text rows (`|`-delimited, `\N` for NULL), as export files and text COPY use.
//! - [`binary`]: COPY BINARY rows, as migrate streams them.
//! - [`vectors`]: finding each layout vector in a point, whatever shape the server sent it in.

pub mod binary;
#[cfg(test)]
pub(crate) mod fixtures;
pub mod float;
#[cfg(test)]
mod fuzz;
pub mod json;
pub mod text;
pub mod vectors;

use crate::layout::{DataFacts, IdKind, VectorShape};
use crate::payload::PointRef;
use crate::point_id::{PointIdError, PointKey};

/// One point → one COPY row, in one of the two formats: what a sink holds, whichever format it
/// streams ([`text::TextRowEncoder`], [`binary::BinaryRowEncoder`]).
pub trait RowEncoder: Send + Sync {
    /// Appends the row of `point` to `out` and notes the point in `facts`; may leave part of a
    /// row behind on error ([`encode`](RowEncoder::encode) removes it).
    fn append_row(
        &self,
        point: PointRef<'_>,
        out: &mut Vec<u8>,
        facts: &mut DataFacts,
    ) -> Result<PointKey, EncodeError>;

    /// What a COPY stream of these rows starts with (nothing, for text).
    fn start_stream(&self, _out: &mut Vec<u8>) {}

    /// What a COPY stream of these rows ends with (nothing, for text).
    fn end_stream(&self, _out: &mut Vec<u8>) {}

    /// Appends one row, notes the point's id and sparse widths in `facts`, and returns its key.
    /// On error `out` is as it was; `facts` may have learned from the vectors encoded before the
    /// fault, which can only make column types wider.
    fn encode(
        &self,
        point: PointRef<'_>,
        out: &mut Vec<u8>,
        facts: &mut DataFacts,
    ) -> Result<PointKey, EncodeError> {
        let start = out.len();
        let row = self.append_row(point, out, facts);
        if row.is_err() {
            out.truncate(start);
        }
        row
    }
}

/// Why one point could not become a row. Every variant names the point, and the vector where
/// one is at fault, so the user can find it in Qdrant.
#[derive(Debug, thiserror::Error)]
pub enum EncodeError {
    #[error(transparent)]
    Id(#[from] PointIdError),
    #[error(
        "point {id}: vector {vector:?} is {found}, but the collection declares it {expected:?}"
    )]
    Shape {
        id: PointKey,
        vector: String,
        expected: VectorShape,
        found: &'static str,
    },
    #[error(
        "point {id}: vector {vector:?} has {found} dimensions, the collection declares {expected}"
    )]
    Dim {
        id: PointKey,
        vector: String,
        expected: usize,
        found: usize,
    },
    #[error(
        "point {id}: multivector {vector:?} holds {values} values, which is not {count} vectors \
         of equal length"
    )]
    MultiLength {
        id: PointKey,
        vector: String,
        values: usize,
        count: usize,
    },
    #[error("point {id}: sparse vector {vector:?} has {indices} indices but {values} values")]
    SparseLengths {
        id: PointKey,
        vector: String,
        indices: usize,
        values: usize,
    },
    #[error("point {id}: sparse vector {vector:?} repeats index {index}")]
    SparseDuplicate {
        id: PointKey,
        vector: String,
        index: u32,
    },
    #[error(
        "point {id}: sparse vector {vector:?} has index {index}, beyond the sparsevec dimension \
         {dim}"
    )]
    SparseBeyondDim {
        id: PointKey,
        vector: String,
        index: u32,
        dim: u32,
    },
    #[error(
        "point {id}: sparse vector {vector:?} has {nnz} non-zero values; pgvector's sparsevec \
         holds at most {}",
        crate::layout::SPARSEVEC_MAX_NNZ
    )]
    SparseTooMany {
        id: PointKey,
        vector: String,
        nnz: usize,
    },
    #[error(
        "point {id}: sparse vector {vector:?} has index {index}, too large for the integer[] \
         column chosen for it (bigint[] is needed)"
    )]
    SparseIndexTooWide {
        id: PointKey,
        vector: String,
        index: u32,
    },
    #[error(
        "point {id}: vector {vector:?} has {dim} dimensions; pgvector's vector and halfvec hold \
         at most {}",
        crate::layout::VECTOR_MAX_DIM
    )]
    PgvectorDim {
        id: PointKey,
        vector: String,
        dim: usize,
    },
    #[error("point {id}: vector {vector:?} holds {value}, which pgvector cannot store")]
    NonFinite {
        id: PointKey,
        vector: String,
        value: f32,
    },
    #[error("point {id}: vector {vector:?} holds {value}, which halfvec cannot store exactly")]
    NotHalf {
        id: PointKey,
        vector: String,
        value: f32,
    },
    #[error(
        "point {id}: the payload holds a \\u0000 character, which jsonb cannot store (use a json \
         payload column)"
    )]
    NulInJsonb { id: PointKey },
    #[error("point {id}: a field of {bytes} bytes exceeds PostgreSQL's 1 GB limit")]
    FieldTooLarge { id: PointKey, bytes: usize },
    #[error("point {id} does not fit the id column type chosen for this table ({kind:?})")]
    IdKind { id: PointKey, kind: IdKind },
}
