//! COPY BINARY rows: what migrate streams straight into PostgreSQL.
//!
//! Binary skips float parsing on the server and every escape on our side. The stream is
//! PostgreSQL's: a signature, flags and header extension ([`RowEncoder::start_stream`]); per
//! row an i16 field count, then per field an i32 length (−1 for NULL) and the value in the
//! type's `send` form; an i16 −1 at the end ([`RowEncoder::end_stream`]). All big-endian.
//!
//! Unlike text, binary values must match the column types exactly, so the encoder is built from
//! the same facts the DDL is decided from ([`DataFacts`]: id kind, sparse index widths) and
//! refuses a point that does not fit them:
//! - id: `bigint` 8 bytes, `numeric` in PostgreSQL's base-10000 form, `uuid` 16 bytes, `text`
//!   the decimal or hyphenated text;
//! - `real[]`: ndim, has-null 0, element oid 700, per dimension its size and lower bound 1, per
//!   element length 4 and the IEEE bits; `real[][]` has ndim 2; an empty array has ndim 0;
//! - sparse as arrays: `integer[]` (oid 23) or `bigint[]` (oid 20) indices and `real[]` values;
//! - pgvector (`VectorSyntax::Pgvector`): `vector` (i16 dim, i16 0, f32s) for float32 and uint8
//!   vectors, `halfvec` (i16 dim, i16 0, f16s) for float16 vectors, whose values it holds
//!   exactly, and `sparsevec` (i32 dim, i32 nnz, i32 0, 0-based i32 indices, f32 values) as
//!   pgvector 0.7+ `*_recv` read them; multivectors stay `real[][]`;
//! - `json`: the text; `jsonb`: version byte 1, then the text.

use super::json::{Escape, write_payload};
use super::text::write_id;
use super::vectors::{MultiRef, SparsevecEntries, VectorRef, first_non_finite, vector_of};
use super::{EncodeError, RowEncoder};
use crate::layout::{
    DataFacts, Datatype, Halfvec, IdKind, Layout, PayloadType, VECTOR_MAX_DIM, VectorShape,
    VectorSpec, VectorSyntax,
};
use crate::payload::PointRef;
use crate::point_id::PointKey;

/// PostgreSQL's limit on one field (`MaxAllocSize`, 1 GB − 1).
const MAX_FIELD: usize = (1 << 30) - 1;

const FLOAT4_OID: u32 = 700;
const INT4_OID: u32 = 23;
const INT8_OID: u32 = 20;

/// Encodes points of one collection as COPY BINARY rows.
#[derive(Clone, Debug)]
pub struct BinaryRowEncoder {
    id_kind: IdKind,
    vectors: Vec<Column>,
    jsonb: bool,
    fields: i16,
}

#[derive(Clone, Debug)]
struct Column {
    spec: VectorSpec,
    sparse_slot: Option<usize>,
    form: Form,
}

/// The column type a vector is sent as.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Form {
    /// `real[]`, or `real[][]` for a multivector.
    Real,
    /// Two columns: `integer[]` (or `bigint[]` when `wide`) and `real[]`.
    SparseArrays {
        wide: bool,
    },
    Vector,
    Halfvec,
    Sparsevec {
        dim: u32,
    },
}

impl BinaryRowEncoder {
    /// An encoder for the table whose DDL was decided from `facts` with `syntax`.
    pub fn new(layout: &Layout, facts: &DataFacts, syntax: VectorSyntax) -> Self {
        let mut sparse = 0..;
        let vectors: Vec<Column> = layout
            .vectors
            .iter()
            .map(|spec| {
                let sparse_slot = (spec.shape == VectorShape::Sparse)
                    .then(|| sparse.next())
                    .flatten();
                let form = match (spec.shape, syntax) {
                    (VectorShape::Multi, _) | (VectorShape::Dense, VectorSyntax::Array) => {
                        Form::Real
                    }
                    (VectorShape::Dense, VectorSyntax::Pgvector) => match spec.datatype {
                        Datatype::Float16 => Form::Halfvec,
                        Datatype::Float32 | Datatype::Uint8 => Form::Vector,
                    },
                    (VectorShape::Sparse, VectorSyntax::Array) => Form::SparseArrays {
                        wide: sparse_slot.is_some_and(|slot| facts.sparse_needs_bigint(slot)),
                    },
                    (VectorShape::Sparse, VectorSyntax::Pgvector) => Form::Sparsevec {
                        dim: spec.sparsevec_dim(),
                    },
                };
                Column {
                    spec: spec.clone(),
                    sparse_slot,
                    form,
                }
            })
            .collect();
        let vector_fields: usize = vectors
            .iter()
            .map(|c| {
                if matches!(c.form, Form::SparseArrays { .. }) {
                    2
                } else {
                    1
                }
            })
            .sum();
        BinaryRowEncoder {
            id_kind: facts.id_kind(),
            // A Qdrant collection has a handful of vectors; PostgreSQL caps a table at 1600
            // columns, far below i16::MAX.
            fields: i16::try_from(vector_fields + 2).unwrap_or(i16::MAX),
            vectors,
            jsonb: layout.payload == PayloadType::Jsonb,
        }
    }

    /// Chooses `halfvec` or `vector` for the dense pgvector columns as the DDL's `halfvec`
    /// policy does (`new` assumes [`Halfvec::Float16`]).
    pub fn with_halfvec(mut self, halfvec: Halfvec) -> Self {
        for column in &mut self.vectors {
            if matches!(column.form, Form::Vector | Form::Halfvec) {
                column.form = if halfvec.applies_to(column.spec.datatype) {
                    Form::Halfvec
                } else {
                    Form::Vector
                };
            }
        }
        self
    }

    fn id(&self, out: &mut Vec<u8>, key: PointKey) -> Result<(), EncodeError> {
        let mismatch = || EncodeError::IdKind {
            id: key,
            kind: self.id_kind,
        };
        match (self.id_kind, key) {
            (IdKind::Bigint, PointKey::Num(n)) => {
                let n = i64::try_from(n).map_err(|_| mismatch())?;
                out.extend_from_slice(&8i32.to_be_bytes());
                out.extend_from_slice(&n.to_be_bytes());
            }
            (IdKind::Numeric, PointKey::Num(n)) => field(out, key, |out| {
                numeric(out, n);
                Ok(())
            })?,
            (IdKind::Uuid, PointKey::Uuid(u)) => {
                out.extend_from_slice(&16i32.to_be_bytes());
                out.extend_from_slice(&u.to_be_bytes());
            }
            (IdKind::Text, _) => field(out, key, |out| {
                write_id(out, key);
                Ok(())
            })?,
            (IdKind::Bigint | IdKind::Numeric, PointKey::Uuid(_))
            | (IdKind::Uuid, PointKey::Num(_)) => {
                return Err(mismatch());
            }
        }
        Ok(())
    }
}

impl RowEncoder for BinaryRowEncoder {
    /// The stream header: signature, flags 0, no header extension.
    fn start_stream(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(b"PGCOPY\n\xff\r\n\0");
        out.extend_from_slice(&0i32.to_be_bytes());
        out.extend_from_slice(&0i32.to_be_bytes());
    }

    /// The end-of-data marker.
    fn end_stream(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&(-1i16).to_be_bytes());
    }

    fn append_row(
        &self,
        PointRef { point, payload }: PointRef<'_>,
        out: &mut Vec<u8>,
        facts: &mut DataFacts,
    ) -> Result<PointKey, EncodeError> {
        let key = PointKey::from_proto(point.id.as_ref())?;
        out.extend_from_slice(&self.fields.to_be_bytes());
        self.id(out, key)?;
        for column in &self.vectors {
            let vector = vector_of(point, &column.spec)?;
            if let (Some(slot), Some(VectorRef::Sparse { indices, .. })) =
                (column.sparse_slot, vector)
                && let Some(&max) = indices.iter().max()
            {
                facts.note_sparse_index(slot, max);
            }
            let name = &column.spec.name;
            match (vector, column.form) {
                (None, Form::SparseArrays { .. }) => {
                    out.extend_from_slice(&(-1i32).to_be_bytes());
                    out.extend_from_slice(&(-1i32).to_be_bytes());
                }
                (None, _) => out.extend_from_slice(&(-1i32).to_be_bytes()),
                (Some(VectorRef::Dense(values)), Form::Real) => {
                    field(out, key, |out| {
                        real_array(out, &[values.len()], values);
                        Ok(())
                    })?;
                }
                (Some(VectorRef::Multi(multi)), _) => field(out, key, |out| {
                    multi_array(out, multi);
                    Ok(())
                })?,
                (Some(VectorRef::Dense(values)), Form::Vector | Form::Halfvec) => {
                    field(out, key, |out| {
                        pgvector(out, key, name, values, column.form == Form::Halfvec)
                    })?;
                }
                (Some(VectorRef::Sparse { indices, values }), Form::SparseArrays { wide }) => {
                    field(out, key, |out| index_array(out, key, name, indices, wide))?;
                    field(out, key, |out| {
                        real_array(out, &[values.len()], values);
                        Ok(())
                    })?;
                }
                (Some(VectorRef::Sparse { indices, values }), Form::Sparsevec { dim }) => {
                    let entries = SparsevecEntries::new(key, name, indices, values, dim)?;
                    field(out, key, |out| {
                        sparsevec(out, dim, &entries);
                        Ok(())
                    })?;
                }
                // vector_of checked the shape against the same spec the form was chosen from.
                (Some(found), form) => unreachable!("{found:?} checked against {form:?}"),
            }
        }
        let mut json = Default::default();
        field(out, key, |out| {
            if self.jsonb {
                out.push(1);
            }
            json = write_payload(out, payload, Escape::None);
            Ok(())
        })?;
        if self.jsonb && json.has_nul {
            return Err(EncodeError::NulInJsonb { id: key });
        }
        facts.note_id(key);
        if json.wide_number {
            facts.note_wide_number(key);
        }
        Ok(key)
    }
}

/// Writes one length-prefixed field whose body `body` appends.
fn field(
    out: &mut Vec<u8>,
    id: PointKey,
    body: impl FnOnce(&mut Vec<u8>) -> Result<(), EncodeError>,
) -> Result<(), EncodeError> {
    let at = out.len();
    out.extend_from_slice(&[0; 4]);
    body(out)?;
    let bytes = out.len() - at - 4;
    if bytes > MAX_FIELD {
        return Err(EncodeError::FieldTooLarge { id, bytes });
    }
    // MAX_FIELD < i32::MAX, so the cast is exact.
    out[at..at + 4].copy_from_slice(&(bytes as i32).to_be_bytes());
    Ok(())
}

/// The array header: ndim (0 for an empty array), no nulls, element type, dimensions.
fn array_header(out: &mut Vec<u8>, dims: &[usize], oid: u32) {
    let empty = dims.contains(&0);
    let ndim = if empty { 0 } else { dims.len() as i32 };
    out.extend_from_slice(&ndim.to_be_bytes());
    out.extend_from_slice(&0i32.to_be_bytes());
    out.extend_from_slice(&oid.to_be_bytes());
    if !empty {
        for &d in dims {
            // Array sizes come from gRPC messages, far below 2^31 elements.
            out.extend_from_slice(&(d as i32).to_be_bytes());
            out.extend_from_slice(&1i32.to_be_bytes());
        }
    }
}

/// `real[]` (one dimension) or `real[][]` (two) holding `values`.
fn real_array(out: &mut Vec<u8>, dims: &[usize], values: &[f32]) {
    array_header(out, dims, FLOAT4_OID);
    real_elements(out, values);
}

/// Each element's length 4 and its bits, big-endian: the buffer grown once and filled in
/// 8-byte slots, which the compiler turns into vector byte shuffles. Appending element by
/// element took 1.8-1.9x the instructions in the row encoder (callgrind, migrate of 5k and
/// 20k x 768 from the genuine Qdrant: docs/benchmarks.md).
fn real_elements(out: &mut Vec<u8>, values: &[f32]) {
    let start = out.len();
    out.resize(start + values.len() * 8, 0);
    for (slot, v) in out[start..].chunks_exact_mut(8).zip(values) {
        slot.copy_from_slice(&(4u64 << 32 | u64::from(v.to_bits())).to_be_bytes());
    }
}

fn multi_array(out: &mut Vec<u8>, multi: MultiRef<'_>) {
    let dims = [multi.rows(), multi.dim()];
    array_header(out, &dims, FLOAT4_OID);
    for i in 0..multi.rows() {
        real_elements(out, multi.row(i));
    }
}

fn index_array(
    out: &mut Vec<u8>,
    id: PointKey,
    vector: &str,
    indices: &[u32],
    wide: bool,
) -> Result<(), EncodeError> {
    if wide {
        array_header(out, &[indices.len()], INT8_OID);
        for &i in indices {
            out.extend_from_slice(&8i32.to_be_bytes());
            out.extend_from_slice(&i64::from(i).to_be_bytes());
        }
        return Ok(());
    }
    if let Some(&index) = indices.iter().find(|&&i| i > i32::MAX as u32) {
        return Err(EncodeError::SparseIndexTooWide {
            id,
            vector: vector.into(),
            index,
        });
    }
    array_header(out, &[indices.len()], INT4_OID);
    for &i in indices {
        out.extend_from_slice(&(4u64 << 32 | u64::from(i)).to_be_bytes());
    }
    Ok(())
}

/// pgvector's `vector` or `halfvec` send form.
fn pgvector(
    out: &mut Vec<u8>,
    id: PointKey,
    vector: &str,
    values: &[f32],
    half: bool,
) -> Result<(), EncodeError> {
    let dim = i16::try_from(values.len())
        .ok()
        .filter(|&d| d as usize <= VECTOR_MAX_DIM)
        .ok_or_else(|| EncodeError::PgvectorDim {
            id,
            vector: vector.into(),
            dim: values.len(),
        })?;
    if let Some(value) = first_non_finite(values.iter().copied()) {
        return Err(EncodeError::NonFinite {
            id,
            vector: vector.into(),
            value,
        });
    }
    out.extend_from_slice(&dim.to_be_bytes());
    out.extend_from_slice(&0i16.to_be_bytes());
    if half {
        for &v in values {
            let h = half::f16::from_f32(v);
            if h.to_f32().to_bits() != v.to_bits() {
                return Err(EncodeError::NotHalf {
                    id,
                    vector: vector.into(),
                    value: v,
                });
            }
            out.extend_from_slice(&h.to_bits().to_be_bytes());
        }
    } else {
        out.reserve(values.len() * 4);
        for &v in values {
            out.extend_from_slice(&v.to_bits().to_be_bytes());
        }
    }
    Ok(())
}

/// pgvector's `sparsevec` send form: indices 0-based, as Qdrant numbers them.
fn sparsevec(out: &mut Vec<u8>, dim: u32, entries: &SparsevecEntries<'_>) {
    // dim ≤ SPARSEVEC_MAX_DIM and nnz ≤ SPARSEVEC_MAX_NNZ, both far below 2^31.
    out.extend_from_slice(&(dim as i32).to_be_bytes());
    out.extend_from_slice(&(entries.nnz as i32).to_be_bytes());
    out.extend_from_slice(&0i32.to_be_bytes());
    for (index, _) in entries.iter() {
        out.extend_from_slice(&(index as i32).to_be_bytes());
    }
    for (_, value) in entries.iter() {
        out.extend_from_slice(&value.to_bits().to_be_bytes());
    }
}

/// PostgreSQL's `numeric` send form of an integer: base-10000 digits, most significant first,
/// trailing zero digits left to the weight, as `numeric_send` writes them.
fn numeric(out: &mut Vec<u8>, n: u64) {
    let mut groups = [0u16; 5];
    let mut len = 0;
    let mut rest = n;
    while rest > 0 {
        groups[len] = (rest % 10_000) as u16;
        rest /= 10_000;
        len += 1;
    }
    // groups[..len] is least significant first; zeros at the low end need not be sent.
    let skip = groups[..len].iter().take_while(|&&g| g == 0).count();
    let weight = len.saturating_sub(1) as i16;
    out.extend_from_slice(&((len - skip) as i16).to_be_bytes());
    out.extend_from_slice(&weight.to_be_bytes());
    out.extend_from_slice(&0u16.to_be_bytes()); // sign: positive
    out.extend_from_slice(&0i16.to_be_bytes()); // dscale: an integer
    for g in groups[skip..len].iter().rev() {
        out.extend_from_slice(&g.to_be_bytes());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::encode::fixtures::{dense, layout, multi_flat, point, sparse, spec, with_payload};

    fn be32(v: i32) -> Vec<u8> {
        v.to_be_bytes().to_vec()
    }

    /// Parses one row back into its fields (None = NULL), checking the field count.
    fn fields(row: &[u8]) -> Vec<Option<Vec<u8>>> {
        let count = i16::from_be_bytes([row[0], row[1]]) as usize;
        let mut at = 2;
        let mut fields = Vec::new();
        for _ in 0..count {
            let len = i32::from_be_bytes(row[at..at + 4].try_into().unwrap());
            at += 4;
            if len < 0 {
                fields.push(None);
            } else {
                fields.push(Some(row[at..at + len as usize].to_vec()));
                at += len as usize;
            }
        }
        assert_eq!(at, row.len(), "row has trailing bytes");
        fields
    }

    fn facts_with(ids: &[PointKey], sparse_max: Vec<Option<u32>>) -> DataFacts {
        let mut facts = DataFacts {
            max_sparse_index: sparse_max,
            ..Default::default()
        };
        for &id in ids {
            facts.note_id(id);
        }
        facts
    }

    #[test]
    fn stream_framing() {
        let enc =
            BinaryRowEncoder::new(&layout(vec![]), &DataFacts::default(), VectorSyntax::Array);
        let mut out = Vec::new();
        enc.start_stream(&mut out);
        enc.end_stream(&mut out);
        assert_eq!(out, b"PGCOPY\n\xff\r\n\0\0\0\0\0\0\0\0\0\xff\xff");
    }

    #[test]
    fn ids_in_each_column_type() {
        let l = layout(vec![]);
        let big = PointKey::Num(u64::MAX);
        let uuid = PointKey::Uuid(0x0102_0304_0506_0708_090a_0b0c_0d0e_0f10);
        let cases: Vec<(DataFacts, PointKey, Vec<u8>)> = vec![
            (
                facts_with(&[PointKey::Num(1)], vec![]),
                PointKey::Num(258),
                258i64.to_be_bytes().to_vec(),
            ),
            // 18446744073709551615 = 1844 6744 0737 0955 1615 in base 10000.
            (
                facts_with(&[big], vec![]),
                big,
                [
                    &[0, 5, 0, 4, 0, 0, 0, 0][..],
                    &[0x07, 0x34, 0x1a, 0x58, 0x02, 0xe1, 0x03, 0xbb, 0x06, 0x4f],
                ]
                .concat(),
            ),
            // 10^8 = 1 0000 0000: one digit, weight 2.
            (
                facts_with(&[big], vec![]),
                PointKey::Num(100_000_000),
                vec![0, 1, 0, 2, 0, 0, 0, 0, 0, 1],
            ),
            (
                facts_with(&[big], vec![]),
                PointKey::Num(0),
                vec![0, 0, 0, 0, 0, 0, 0, 0],
            ),
            (facts_with(&[uuid], vec![]), uuid, (1..=16).collect()),
            (
                facts_with(&[uuid, PointKey::Num(1)], vec![]),
                PointKey::Num(42),
                b"42".to_vec(),
            ),
            (
                facts_with(&[uuid, PointKey::Num(1)], vec![]),
                uuid,
                b"01020304-0506-0708-090a-0b0c0d0e0f10".to_vec(),
            ),
        ];
        for (facts, key, expected) in cases {
            let enc = BinaryRowEncoder::new(&l, &facts, VectorSyntax::Array);
            let mut out = Vec::new();
            let mut seen = DataFacts::default();
            assert_eq!(
                enc.encode((&point(key, vec![])).into(), &mut out, &mut seen)
                    .unwrap(),
                key
            );
            let f = fields(&out);
            assert_eq!(
                f[0].as_deref(),
                Some(&expected[..]),
                "{key} as {:?}",
                facts.id_kind()
            );
            assert_eq!(f[1].as_deref(), Some(&b"{}"[..]));
        }
        let bigint = BinaryRowEncoder::new(&l, &DataFacts::default(), VectorSyntax::Array);
        let mut out = b"kept".to_vec();
        for key in [big, uuid] {
            let err = bigint.encode(
                (&point(key, vec![])).into(),
                &mut out,
                &mut DataFacts::default(),
            );
            assert!(
                matches!(
                    err,
                    Err(EncodeError::IdKind {
                        kind: IdKind::Bigint,
                        ..
                    })
                ),
                "{err:?}"
            );
        }
        assert_eq!(out, b"kept");
    }

    #[test]
    fn arrays_match_postgresql_array_send() {
        let l = layout(vec![
            spec("d", VectorShape::Dense, Some(2)),
            spec("m", VectorShape::Multi, Some(2)),
            spec("s", VectorShape::Sparse, None),
            spec("t", VectorShape::Sparse, None),
        ]);
        let facts = facts_with(&[PointKey::Num(1)], vec![Some(5), Some(u32::MAX)]);
        let enc = BinaryRowEncoder::new(&l, &facts, VectorSyntax::Array);
        let p = point(
            PointKey::Num(1),
            vec![
                ("d", dense(vec![1.0, -0.0])),
                ("m", multi_flat(vec![1.0, 2.0, 3.0, 4.0], 2)),
                ("s", sparse(vec![5], vec![0.5])),
                ("t", sparse(vec![u32::MAX], vec![f32::NAN])),
            ],
        );
        let mut out = Vec::new();
        let mut seen = DataFacts::for_layout(&l);
        enc.encode((&p).into(), &mut out, &mut seen).unwrap();
        assert_eq!(seen.max_sparse_index, vec![Some(5), Some(u32::MAX)]);
        let f = fields(&out);
        assert_eq!(f.len(), 1 + 2 + 2 + 2 + 1);
        let header = |ndim: i32, oid: u32, dims: &[i32]| {
            let mut h = [be32(ndim), be32(0), oid.to_be_bytes().to_vec()].concat();
            for &d in dims {
                h.extend(be32(d));
                h.extend(be32(1));
            }
            h
        };
        let elem = |v: f32| [be32(4), v.to_bits().to_be_bytes().to_vec()].concat();
        // Layout order: m (multi) and d (dense) sorted by name: d, m; then sparse s, t.
        assert_eq!(
            f[1].as_deref().unwrap(),
            [header(1, 700, &[2]), elem(1.0), elem(-0.0)].concat()
        );
        assert_eq!(
            f[2].as_deref().unwrap(),
            [
                header(2, 700, &[2, 2]),
                elem(1.0),
                elem(2.0),
                elem(3.0),
                elem(4.0)
            ]
            .concat()
        );
        assert_eq!(
            f[3].as_deref().unwrap(),
            [header(1, 23, &[1]), be32(4), be32(5)].concat()
        );
        assert_eq!(
            f[4].as_deref().unwrap(),
            [header(1, 700, &[1]), elem(0.5)].concat()
        );
        let wide = [
            header(1, 20, &[1]),
            be32(8),
            i64::from(u32::MAX).to_be_bytes().to_vec(),
        ]
        .concat();
        assert_eq!(f[5].as_deref().unwrap(), wide);
        assert_eq!(
            f[6].as_deref().unwrap(),
            [header(1, 700, &[1]), elem(f32::NAN)].concat()
        );

        let absent = point(PointKey::Num(2), vec![("m", multi_flat(vec![], 0))]);
        let mut out = Vec::new();
        enc.encode((&absent).into(), &mut out, &mut seen).unwrap();
        let f = fields(&out);
        assert_eq!(f[1], None);
        assert_eq!(
            f[2].as_deref().unwrap(),
            header(0, 700, &[]),
            "empty multivector"
        );
        assert_eq!(f[3..7], [None, None, None, None]);

        let narrow = BinaryRowEncoder::new(
            &l,
            &facts_with(&[], vec![Some(5), Some(5)]),
            VectorSyntax::Array,
        );
        let err = narrow
            .encode((&p).into(), &mut Vec::new(), &mut seen)
            .unwrap_err();
        assert!(
            matches!(
                err,
                EncodeError::SparseIndexTooWide {
                    index: u32::MAX,
                    ..
                }
            ),
            "{err}"
        );
    }

    #[test]
    fn pgvector_send_forms() {
        let mut half = spec("h", VectorShape::Dense, Some(2));
        half.datatype = Datatype::Float16;
        let l = layout(vec![
            spec("f", VectorShape::Dense, Some(2)),
            half,
            spec("s", VectorShape::Sparse, Some(50)),
        ]);
        let enc = BinaryRowEncoder::new(&l, &DataFacts::default(), VectorSyntax::Pgvector);
        let p = point(
            PointKey::Num(1),
            vec![
                ("f", dense(vec![1.5, -2.0])),
                ("h", dense(vec![0.5, -65504.0])),
                ("s", sparse(vec![7, 3, 9], vec![0.25, 2.0, 0.0])),
            ],
        );
        let mut out = Vec::new();
        enc.encode((&p).into(), &mut out, &mut DataFacts::for_layout(&l))
            .unwrap();
        let f = fields(&out);
        assert_eq!(f.len(), 5);
        let vector = [
            &2i16.to_be_bytes()[..],
            &[0, 0],
            &1.5f32.to_bits().to_be_bytes(),
            &(-2.0f32).to_bits().to_be_bytes(),
        ]
        .concat();
        assert_eq!(f[1].as_deref().unwrap(), vector);
        assert_eq!(
            f[2].as_deref().unwrap(),
            [0, 2, 0, 0, 0x38, 0x00, 0xfb, 0xff]
        );
        let sparsevec = [
            be32(50),
            be32(2),
            be32(0),
            be32(3),
            be32(7),
            2.0f32.to_bits().to_be_bytes().to_vec(),
            0.25f32.to_bits().to_be_bytes().to_vec(),
        ]
        .concat();
        assert_eq!(f[3].as_deref().unwrap(), sparsevec);

        for (name, bad, want) in [
            ("f", 1e-45f32, None),
            ("f", f32::INFINITY, Some("NonFinite")),
            ("h", 0.1, Some("NotHalf")),
        ] {
            let p = point(PointKey::Num(2), vec![(name, dense(vec![bad, 1.0]))]);
            let result = enc.encode((&p).into(), &mut Vec::new(), &mut DataFacts::for_layout(&l));
            match want {
                None => assert!(result.is_ok(), "{result:?}"),
                Some(kind) => assert!(format!("{result:?}").contains(kind), "{result:?}"),
            }
        }
    }

    #[test]
    fn jsonb_has_a_version_byte_and_refuses_nul() {
        let mut l = layout(vec![]);
        l.payload = PayloadType::Jsonb;
        let enc = BinaryRowEncoder::new(&l, &DataFacts::default(), VectorSyntax::Array);
        let p = with_payload(point(PointKey::Num(1), vec![]), vec![("k", "a\"|\\")]);
        let mut out = Vec::new();
        enc.encode((&p).into(), &mut out, &mut DataFacts::default())
            .unwrap();
        assert_eq!(
            fields(&out)[1].as_deref().unwrap(),
            b"\x01{\"k\":\"a\\\"|\\\\\"}"
        );
        let nul = with_payload(point(PointKey::Num(1), vec![]), vec![("k", "\0")]);
        let err = enc
            .encode((&nul).into(), &mut out, &mut DataFacts::default())
            .unwrap_err();
        assert!(matches!(err, EncodeError::NulInJsonb { .. }), "{err}");
    }
}
