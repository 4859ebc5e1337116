//! COPY text rows: what export files hold and what text COPY streams.
//!
//! One point becomes one line: fields in [`column_names`] order, separated by `|`, `\N` for
//! NULL, ended by `\n` — PostgreSQL's text format with the guide's delimiter, so the guide's own
//! `COPY … FROM STDIN DELIMITER '|' HEADER` loads it. Only the payload and the header can hold
//! bytes COPY would misread; both are escaped. Numbers, braces and brackets never need it.
//!
//! Vectors, per [`VectorSyntax`]:
//! - `Array`: `real[]` as `{v1,v2}`, multivectors as `real[][]` `{{..},{..}}`, a sparse vector as
//!   two columns `{i1,i2}` (indices as Qdrant numbers them) and `{v1,v2}`.
//! - `Pgvector`: a dense vector as `[v1,v2]` (the text of pgvector's `vector` and `halfvec`),
//!   a sparse vector as ONE `sparsevec` column `{i+1:v,…}/DIM` (pgvector numbers from 1), and a
//!   multivector still as `real[][]`, for which pgvector has no type. pgvector cannot hold NaN
//!   or ±Infinity, nor explicit zeros in a sparsevec (it drops them itself; so do we); the
//!   sparsevec dimension is the layout's `dim` for that vector, or pgvector's maximum 10^9.

use super::float::write_f32_list;
use super::json::{Escape, write_payload};
use super::vectors::{SparsevecEntries, VectorRef, first_non_finite, vector_of};
use super::{EncodeError, RowEncoder};
use crate::layout::{
    DataFacts, Layout, PayloadType, VECTOR_MAX_DIM, VectorShape, VectorSpec, VectorSyntax,
};
use crate::payload::PointRef;
use crate::point_id::PointKey;

/// COPY text's NULL.
const NULL: &[u8] = b"\\N";

/// Encodes points of one collection as COPY text rows.
#[derive(Clone, Debug)]
pub struct TextRowEncoder {
    vectors: Vec<Column>,
    syntax: VectorSyntax,
    jsonb: bool,
    header: Vec<u8>,
}

#[derive(Clone, Debug)]
struct Column {
    spec: VectorSpec,
    /// Position among the layout's sparse vectors, for [`DataFacts::note_sparse_index`].
    sparse_slot: Option<usize>,
}

impl TextRowEncoder {
    pub fn new(layout: &Layout, syntax: VectorSyntax) -> Self {
        let mut header = Vec::new();
        for (i, name) in layout.columns(syntax).iter().enumerate() {
            if i > 0 {
                header.push(b'|');
            }
            write_escaped(&mut header, name);
        }
        header.push(b'\n');
        TextRowEncoder {
            vectors: columns(layout),
            syntax,
            jsonb: layout.payload == PayloadType::Jsonb,
            header,
        }
    }

    /// Appends the header line: the column names, `|`-joined.
    pub fn header(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.header);
    }
}

impl RowEncoder for TextRowEncoder {
    /// One row and its `\n`.
    fn append_row(
        &self,
        PointRef { point, payload }: PointRef<'_>,
        out: &mut Vec<u8>,
        facts: &mut DataFacts,
    ) -> Result<PointKey, EncodeError> {
        let key = PointKey::from_proto(point.id.as_ref())?;
        write_id(out, key);
        for column in &self.vectors {
            out.push(b'|');
            let spec = &column.spec;
            match vector_of(point, spec)? {
                None if spec.shape == VectorShape::Sparse && self.syntax == VectorSyntax::Array => {
                    out.extend_from_slice(b"\\N|\\N");
                }
                None => out.extend_from_slice(NULL),
                Some(VectorRef::Dense(values)) => match self.syntax {
                    VectorSyntax::Array => write_array(out, values),
                    VectorSyntax::Pgvector => write_pgvector(out, key, spec, values)?,
                },
                Some(VectorRef::Multi(multi)) => {
                    out.push(b'{');
                    for i in 0..multi.rows() {
                        if i > 0 {
                            out.push(b',');
                        }
                        write_array(out, multi.row(i));
                    }
                    out.push(b'}');
                }
                Some(VectorRef::Sparse { indices, values }) => {
                    if let (Some(slot), Some(&max)) = (column.sparse_slot, indices.iter().max()) {
                        facts.note_sparse_index(slot, max);
                    }
                    match self.syntax {
                        VectorSyntax::Array => {
                            write_indices(out, indices);
                            out.push(b'|');
                            write_array(out, values);
                        }
                        VectorSyntax::Pgvector => {
                            write_sparsevec(out, key, spec, indices, values)?;
                        }
                    }
                }
            }
        }
        out.push(b'|');
        let json = write_payload(out, payload, Escape::CopyText);
        if self.jsonb && json.has_nul {
            return Err(EncodeError::NulInJsonb { id: key });
        }
        out.push(b'\n');
        facts.note_id(key);
        if json.wide_number {
            facts.note_wide_number(key);
        }
        Ok(key)
    }
}

/// The layout's vectors with their sparse slots.
fn columns(layout: &Layout) -> Vec<Column> {
    let mut sparse = 0..;
    layout
        .vectors
        .iter()
        .map(|spec| Column {
            spec: spec.clone(),
            sparse_slot: (spec.shape == VectorShape::Sparse)
                .then(|| sparse.next())
                .flatten(),
        })
        .collect()
}

/// An id as every id column type reads it: decimal, or a hyphenated lowercase UUID.
pub(crate) fn write_id(out: &mut Vec<u8>, key: PointKey) {
    match key {
        PointKey::Num(n) => out.extend_from_slice(itoa::Buffer::new().format(n).as_bytes()),
        PointKey::Uuid(u) => {
            let mut buf = uuid::Uuid::encode_buffer();
            let text = uuid::Uuid::from_u128(u).hyphenated().encode_lower(&mut buf);
            out.extend_from_slice(text.as_bytes());
        }
    }
}

fn write_array(out: &mut Vec<u8>, values: &[f32]) {
    out.push(b'{');
    write_f32_list(out, values);
    out.push(b'}');
}

fn write_indices(out: &mut Vec<u8>, indices: &[u32]) {
    out.push(b'{');
    let mut buf = itoa::Buffer::new();
    for (i, &index) in indices.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        out.extend_from_slice(buf.format(index).as_bytes());
    }
    out.push(b'}');
}

/// `[v1,v2]`, refusing what pgvector's `vector` / `halfvec` cannot hold.
fn write_pgvector(
    out: &mut Vec<u8>,
    id: PointKey,
    spec: &VectorSpec,
    values: &[f32],
) -> Result<(), EncodeError> {
    if values.len() > VECTOR_MAX_DIM {
        return Err(EncodeError::PgvectorDim {
            id,
            vector: spec.name.clone(),
            dim: values.len(),
        });
    }
    if let Some(value) = first_non_finite(values.iter().copied()) {
        return Err(EncodeError::NonFinite {
            id,
            vector: spec.name.clone(),
            value,
        });
    }
    out.push(b'[');
    write_f32_list(out, values);
    out.push(b']');
    Ok(())
}

/// `{i+1:v,…}/DIM`.
fn write_sparsevec(
    out: &mut Vec<u8>,
    id: PointKey,
    spec: &VectorSpec,
    indices: &[u32],
    values: &[f32],
) -> Result<(), EncodeError> {
    let dim = spec.sparsevec_dim();
    let entries = SparsevecEntries::new(id, &spec.name, indices, values, dim)?;
    let mut ints = itoa::Buffer::new();
    out.push(b'{');
    for (i, (index, value)) in entries.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        out.extend_from_slice(ints.format(u64::from(index) + 1).as_bytes());
        out.push(b':');
        super::float::write_f32(out, value);
    }
    out.extend_from_slice(b"}/");
    out.extend_from_slice(ints.format(dim).as_bytes());
    Ok(())
}

/// Appends `text` escaped as one COPY text field with `|` as the delimiter.
fn write_escaped(out: &mut Vec<u8>, text: &str) {
    for &b in text.as_bytes() {
        match b {
            b'\\' => out.extend_from_slice(b"\\\\"),
            b'|' => out.extend_from_slice(b"\\|"),
            b'\n' => out.extend_from_slice(b"\\n"),
            b'\r' => out.extend_from_slice(b"\\r"),
            b'\t' => out.extend_from_slice(b"\\t"),
            _ => out.push(b),
        }
    }
}

#[cfg(test)]
mod tests {
    use qdrant_client::qdrant::RetrievedPoint;

    use super::*;
    use crate::encode::fixtures::{dense, layout, multi_flat, point, sparse, spec, with_payload};
    use crate::layout::IdKind;

    fn row(enc: &TextRowEncoder, p: &RetrievedPoint, facts: &mut DataFacts) -> String {
        let mut out = Vec::new();
        enc.encode(p.into(), &mut out, facts).unwrap();
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn rows_follow_the_layout_with_nulls_for_absent_vectors() {
        let l = layout(vec![
            spec("text", VectorShape::Dense, Some(2)),
            spec("colbert", VectorShape::Multi, Some(2)),
            spec("bm25", VectorShape::Sparse, None),
        ]);
        let enc = TextRowEncoder::new(&l, VectorSyntax::Array);
        let mut out = Vec::new();
        enc.header(&mut out);
        assert_eq!(out, b"id|colbert|text|bm25_indices|bm25_values|payload\n");
        let mut facts = DataFacts::for_layout(&l);
        let full = point(
            PointKey::Num(u64::MAX),
            vec![
                ("text", dense(vec![0.5, -0.0])),
                ("colbert", multi_flat(vec![1.0, 2.0, 3.0, 4.0], 2)),
                ("bm25", sparse(vec![3, 70000], vec![0.25, 1e-7])),
            ],
        );
        assert_eq!(
            row(&enc, &full, &mut facts),
            "18446744073709551615|{{1,2},{3,4}}|{0.5,-0}|{3,70000}|{0.25,1e-7}|{}\n"
        );
        let uuid = "5c56c793-69f3-4fbf-87e6-c4bf54c28c26";
        let key = PointKey::Uuid(uuid::Uuid::parse_str(uuid).unwrap().as_u128());
        let bare = with_payload(point(key, vec![]), vec![("k", "a|b\\c\n")]);
        assert_eq!(
            row(&enc, &bare, &mut facts),
            format!("{uuid}|\\N|\\N|\\N|\\N|{{\"k\":\"a\\|b\\\\\\\\c\\\\n\"}}\n")
        );
        assert_eq!(facts.id_kind(), IdKind::Text);
        assert_eq!(facts.max_sparse_index, vec![Some(70000)]);
    }

    #[test]
    fn specials_are_spelled_for_real_arrays() {
        let l = layout(vec![spec("", VectorShape::Dense, Some(4))]);
        let enc = TextRowEncoder::new(&l, VectorSyntax::Array);
        let p = point(
            PointKey::Num(1),
            vec![(
                "",
                dense(vec![
                    f32::NAN,
                    f32::INFINITY,
                    f32::NEG_INFINITY,
                    f32::MIN_POSITIVE,
                ]),
            )],
        );
        let mut facts = DataFacts::for_layout(&l);
        assert_eq!(
            row(&enc, &p, &mut facts),
            "1|{NaN,Infinity,-Infinity,1.1754944e-38}|{}\n"
        );
    }

    #[test]
    fn pgvector_syntax_merges_sparse_and_refuses_non_finite() {
        // A sparse vector's `dim` is the sparsevec dimension.
        let bm25 = spec("bm25", VectorShape::Sparse, Some(100));
        let l = layout(vec![spec("text", VectorShape::Dense, Some(2)), bm25]);
        let enc = TextRowEncoder::new(&l, VectorSyntax::Pgvector);
        let mut out = Vec::new();
        enc.header(&mut out);
        assert_eq!(out, b"id|text|bm25|payload\n");
        let mut facts = DataFacts::for_layout(&l);
        let p = point(
            PointKey::Num(5),
            vec![
                ("text", dense(vec![1.5, -2.0])),
                ("bm25", sparse(vec![9, 0, 4], vec![0.5, 1.0, 0.0])),
            ],
        );
        assert_eq!(
            row(&enc, &p, &mut facts),
            "5|[1.5,-2]|{1:1,10:0.5}/100|{}\n"
        );
        let absent = point(PointKey::Num(6), vec![]);
        assert_eq!(row(&enc, &absent, &mut facts), "6|\\N|\\N|{}\n");

        let mut out = b"kept".to_vec();
        let nan = point(PointKey::Num(7), vec![("text", dense(vec![1.0, f32::NAN]))]);
        let err = enc.encode((&nan).into(), &mut out, &mut facts).unwrap_err();
        assert!(
            matches!(err, EncodeError::NonFinite { ref vector, .. } if vector == "text"),
            "{err}"
        );
        assert!(err.to_string().contains("point 7"), "{err}");
        assert_eq!(out, b"kept", "a failed row leaves nothing behind");
        let wide = point(
            PointKey::Num(8),
            vec![("bm25", sparse(vec![100], vec![1.0]))],
        );
        let err = enc
            .encode((&wide).into(), &mut out, &mut facts)
            .unwrap_err();
        assert!(
            matches!(
                err,
                EncodeError::SparseBeyondDim {
                    index: 100,
                    dim: 100,
                    ..
                }
            ),
            "{err}"
        );
        assert_eq!(out, b"kept");
    }

    #[test]
    fn jsonb_refuses_nul_and_json_keeps_it() {
        let nul = with_payload(point(PointKey::Num(3), vec![]), vec![("k", "a\0b")]);
        for (payload, ok) in [(PayloadType::Json, true), (PayloadType::Jsonb, false)] {
            let mut l = layout(vec![]);
            l.payload = payload;
            let enc = TextRowEncoder::new(&l, VectorSyntax::Array);
            let mut out = Vec::new();
            let result = enc.encode((&nul).into(), &mut out, &mut DataFacts::for_layout(&l));
            assert_eq!(result.is_ok(), ok, "{payload:?}");
            if ok {
                assert_eq!(out, b"3|{\"k\":\"a\\\\u0000b\"}\n");
            } else {
                assert!(matches!(
                    result,
                    Err(EncodeError::NulInJsonb {
                        id: PointKey::Num(3)
                    })
                ));
                assert!(out.is_empty());
            }
        }
    }

    #[test]
    fn header_names_are_escaped() {
        let l = layout(vec![spec("a|b\\c\nd", VectorShape::Dense, Some(1))]);
        let mut out = Vec::new();
        TextRowEncoder::new(&l, VectorSyntax::Array).header(&mut out);
        assert_eq!(out, b"id|a\\|b\\\\c\\nd|payload\n");
    }
}
