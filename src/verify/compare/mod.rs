//! Comparing a table with the collection it came from: each table row and each Qdrant point is
//! reduced to one canonical byte form ([`CanonicalRow`]), and two forms are equal exactly when
//! the values are. `verify` hashes these forms to compare whole tables in any order; where two
//! differ, [`RowForm::difference`] reads them side by side and says what differs — never the
//! values.
//!
//! The semantics:
//! - ids by value, whatever the id column's type (`bigint`, `numeric`, `uuid`, `text`);
//! - vectors bit for bit, any NaN equal to any NaN (PostgreSQL does not keep NaN payloads),
//!   with the shape PostgreSQL stores (an empty array has no dimensions); a `halfvec` column
//!   against the source rounded to float16; a `sparsevec` against the source sorted by index and
//!   without zeros, as pgvector keeps it; NULL where a named vector is absent;
//! - payloads in the canonical form of `encode::json::write_canonical`, written from the payload
//!   as the source read it (exactly, `payload::PayloadRef`) and from the table's text parsed
//!   without rounding (`payload::ExactJson`): numbers by decimal value, and in a `json` column
//!   (which keeps each number's text) by kind too, where an integer equals a float only if a
//!   double holds both (|x| ≤ 2^53): `18446744073709551615` never equals
//!   `1.8446744073709552e19`, while `jsonb`'s `10000000000000000000` equals Qdrant's `1e19`.
//!
//! The table side is read in PostgreSQL's binary send forms ([`fields`]), so no float is ever
//! printed or parsed.

mod fields;

use half::f16;
use qdrant_client::qdrant::RetrievedPoint;

pub use self::fields::IdColumn;
use self::fields::canonical_bits;
use crate::encode::json::write_canonical;
use crate::encode::vectors::{VectorRef, vector_of};
use crate::layout::{Layout, VectorShape, VectorSpec};
use crate::payload::exact_json::Canonical;
use crate::payload::{ExactJson, JsonKind, JsonRef, PayloadRef, PointRef};
use crate::point_id::{PointIdError, PointKey};

/// How a vector column is typed in the target, as read from the catalog.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ColumnForm {
    /// `real[]` / `real[][]`; sparse vectors as an indices array plus a values array.
    Array,
    /// pgvector `vector`.
    Vector,
    /// pgvector `halfvec`: values rounded to float16.
    Halfvec,
    /// pgvector `sparsevec`: sorted, zeros dropped.
    Sparsevec,
}

impl ColumnForm {
    /// From `format_type()` of the column.
    pub fn from_sql_type(sql_type: &str) -> ColumnForm {
        if sql_type.starts_with("halfvec") {
            ColumnForm::Halfvec
        } else if sql_type.starts_with("sparsevec") {
            ColumnForm::Sparsevec
        } else if sql_type.starts_with("vector") {
            ColumnForm::Vector
        } else {
            ColumnForm::Array
        }
    }
}

/// Why a table's columns do not fit the collection's layout.
#[derive(Debug, thiserror::Error)]
pub enum FormError {
    #[error("it has no column {column:?} (for {what})")]
    Missing { column: String, what: String },
    #[error("its column {column:?} is {sql_type}; verify reads {expected} there")]
    Type {
        column: String,
        sql_type: String,
        expected: &'static str,
    },
}

/// A table row's id is not a Qdrant point id.
#[derive(Debug, thiserror::Error)]
#[error("the table holds an id that is neither an integer nor a UUID ({0})")]
pub struct BadTableId(String);

/// One layout vector and the column(s) holding it.
#[derive(Clone, Debug)]
struct VectorColumn {
    spec: VectorSpec,
    form: ColumnForm,
    /// 2 for a sparse vector held as an indices and a values array, else 1.
    fields: usize,
}

/// A table's columns matched to its collection's layout: how to read both into canonical rows.
#[derive(Clone, Debug)]
pub struct RowForm {
    id: IdColumn,
    vectors: Vec<VectorColumn>,
    numbers: Canonical,
    columns: Vec<String>,
}

// Tags of a canonical vector field.
const ABSENT: u8 = 0;
/// ndim (u8), the dimensions (u32 each), then the bits (u32 each).
const ARRAY: u8 = 1;
/// nnz (u32), the indices (u64 each), then the bits (u32 each).
const SPARSE: u8 = 2;
/// The table holds bytes that are not what the column type's send function writes.
const MALFORMED: u8 = 0xfe;
/// The point's vector could not be read; the message is in [`CanonicalRow::source_error`].
const SOURCE_ERROR: u8 = 0xff;
// A payload field is canonical JSON text, or one of these bytes, which no UTF-8 text starts
// with: a SQL NULL, or ([`MALFORMED`]) text that is not JSON.
const PAYLOAD_NULL: u8 = 0xfd;

/// One row or point in canonical form: the id, each vector, the payload, as consecutive fields.
#[derive(Clone, Debug, Default)]
pub struct CanonicalRow {
    bytes: Vec<u8>,
    ends: Vec<usize>,
    source_error: Option<String>,
}

impl CanonicalRow {
    /// Every field: what a digest covers.
    pub fn bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// The id field: what a bucket is chosen by.
    pub fn id(&self) -> &[u8] {
        self.field(0)
    }

    fn field(&self, i: usize) -> &[u8] {
        let start = if i == 0 { 0 } else { self.ends[i - 1] };
        &self.bytes[start..self.ends[i]]
    }

    fn clear(&mut self) {
        self.bytes.clear();
        self.ends.clear();
        self.source_error = None;
    }

    fn end_field(&mut self) {
        self.ends.push(self.bytes.len());
    }

    fn write_id(&mut self, key: PointKey) {
        write_id(&mut self.bytes, key);
        self.end_field();
    }
}

/// A point id in canonical form, as [`CanonicalRow::id`] holds it: `N` and the integer's 8
/// bytes, or `U` and the UUID's 16.
pub fn write_id(out: &mut Vec<u8>, key: PointKey) {
    match key {
        PointKey::Num(n) => {
            out.push(b'N');
            out.extend_from_slice(&n.to_le_bytes());
        }
        PointKey::Uuid(u) => {
            out.push(b'U');
            out.extend_from_slice(&u.to_be_bytes());
        }
    }
}

impl RowForm {
    /// Matches the table's `(column, format_type)` list to the layout.
    pub fn new(layout: &Layout, columns: &[(String, String)]) -> Result<RowForm, FormError> {
        let type_of = |column: &str, what: &dyn Fn() -> String| {
            columns
                .iter()
                .find(|(name, _)| name == column)
                .map(|(_, sql_type)| sql_type.as_str())
                .ok_or_else(|| FormError::Missing {
                    column: column.to_owned(),
                    what: what(),
                })
        };
        let expect = |column: &str, sql_type: &str, allowed: &[&str], expected: &'static str| {
            if allowed.contains(&sql_type) {
                Ok(())
            } else {
                Err(FormError::Type {
                    column: column.to_owned(),
                    sql_type: sql_type.to_owned(),
                    expected,
                })
            }
        };
        let id_type = type_of("id", &|| "the point ids".to_owned())?;
        let id = IdColumn::from_sql_type(id_type).ok_or_else(|| FormError::Type {
            column: "id".to_owned(),
            sql_type: id_type.to_owned(),
            expected: "bigint, integer, numeric, uuid or text",
        })?;
        let mut names = vec!["id".to_owned()];
        let mut vectors = Vec::new();
        for spec in &layout.vectors {
            let base = spec.column();
            let what = || format!("vector {base:?}");
            let form = ColumnForm::from_sql_type(type_of(base, &what).unwrap_or("real[]"));
            let fields = if spec.shape == VectorShape::Sparse && form == ColumnForm::Array {
                let indices = format!("{base}_indices");
                let values = format!("{base}_values");
                let index_type = type_of(&indices, &what)?;
                expect(
                    &indices,
                    index_type,
                    &["integer[]", "bigint[]"],
                    "integer[] or bigint[]",
                )?;
                expect(&values, type_of(&values, &what)?, &["real[]"], "real[]")?;
                names.extend([indices, values]);
                2
            } else {
                let sql_type = type_of(base, &what)?;
                if form == ColumnForm::Array {
                    // format_type() says `real[]` for `real[][]` too: PostgreSQL keeps no
                    // dimension count in the column type.
                    expect(base, sql_type, &["real[]", "real[][]"], "real[]")?;
                }
                names.push(base.to_owned());
                1
            };
            vectors.push(VectorColumn {
                spec: spec.clone(),
                form,
                fields,
            });
        }
        let payload_type = type_of("payload", &|| "the payload".to_owned())?;
        // jsonb keeps values only (numbers as `numeric`); json keeps each number's text.
        let numbers = match payload_type {
            "jsonb" => Canonical::Values,
            "json" | "text" => Canonical::ValuesAndKinds,
            other => {
                return Err(FormError::Type {
                    column: "payload".to_owned(),
                    sql_type: other.to_owned(),
                    expected: "json, jsonb or text",
                });
            }
        };
        names.push("payload".to_owned());
        Ok(RowForm {
            id,
            vectors,
            numbers,
            columns: names,
        })
    }

    /// The columns a row is read as, in order (bare names).
    pub fn columns(&self) -> &[String] {
        &self.columns
    }

    pub fn id_column(&self) -> IdColumn {
        self.id
    }

    /// A point in canonical form. Only a point without a valid id is an error; a vector that
    /// cannot be read makes a row that differs from every table row, and says why.
    pub fn of_point(
        &self,
        PointRef { point, payload }: PointRef<'_>,
        row: &mut CanonicalRow,
    ) -> Result<PointKey, PointIdError> {
        row.clear();
        let key = PointKey::from_proto(point.id.as_ref())?;
        row.write_id(key);
        for column in &self.vectors {
            let start = row.bytes.len();
            if let Err(message) = point_vector(point, column, &mut row.bytes) {
                row.bytes.truncate(start);
                row.bytes.push(SOURCE_ERROR);
                row.source_error.get_or_insert(message);
            }
            row.end_field();
        }
        write_canonical(&mut row.bytes, payload, self.numbers);
        row.end_field();
        Ok(key)
    }

    /// A table row (its fields in [`RowForm::columns`] order, binary) in canonical form.
    pub fn of_table(
        &self,
        fields: &[Option<&[u8]>],
        row: &mut CanonicalRow,
    ) -> Result<PointKey, BadTableId> {
        row.clear();
        let key = self.table_id(fields.first().copied().flatten())?;
        row.write_id(key);
        let mut at = 1;
        for column in &self.vectors {
            let raw = fields.get(at..at + column.fields).unwrap_or(&[]);
            at += column.fields;
            let start = row.bytes.len();
            if table_vector(column, raw, &mut row.bytes).is_none() {
                row.bytes.truncate(start);
                row.bytes.push(MALFORMED);
            }
            row.end_field();
        }
        match fields.get(at).copied().flatten() {
            None => row.bytes.push(PAYLOAD_NULL),
            Some(raw) => {
                let text = match self.numbers {
                    // jsonb_send: a version byte (1), then the text.
                    Canonical::Values => raw.strip_prefix(&[1]).unwrap_or(&[]),
                    Canonical::ValuesAndKinds => raw,
                };
                // Parsed without recursion or rounding, however deep the table's JSON is.
                match std::str::from_utf8(text)
                    .ok()
                    .and_then(|text| ExactJson::parse(text, usize::MAX).ok())
                {
                    Some(doc) => {
                        write_canonical(&mut row.bytes, PayloadRef::Exact(doc.root()), self.numbers)
                    }
                    None => row.bytes.push(MALFORMED),
                }
            }
        }
        row.end_field();
        Ok(key)
    }

    /// The id a table row's `id` field (binary; `None` for NULL) holds.
    pub fn table_id(&self, raw: Option<&[u8]>) -> Result<PointKey, BadTableId> {
        match raw {
            Some(raw) => self
                .id
                .read(raw)
                .ok_or_else(|| BadTableId(describe_id(self.id, raw))),
            None => Err(BadTableId("NULL".to_owned())),
        }
    }

    /// What differs between a table row and a point of the same id, or `None` if nothing does.
    pub fn difference(&self, table: &CanonicalRow, source: &CanonicalRow) -> Option<String> {
        for (i, column) in self.vectors.iter().enumerate() {
            let (ours, theirs) = (table.field(i + 1), source.field(i + 1));
            if ours != theirs {
                let name = column.spec.column();
                return Some(vector_difference(name, ours, theirs, source));
            }
        }
        let at = self.vectors.len() + 1;
        let (ours, theirs) = (table.field(at), source.field(at));
        if ours == theirs {
            return None;
        }
        Some(match ours.first() {
            Some(&MALFORMED) => "payload in the table is not JSON".to_owned(),
            Some(&PAYLOAD_NULL) => "payload differs (NULL in the table)".to_owned(),
            _ => format!("payload differs (keys {:?})", differing_keys(ours, theirs)),
        })
    }
}

/// An id the table holds that is no Qdrant id, for the error message.
fn describe_id(column: IdColumn, raw: &[u8]) -> String {
    match column {
        IdColumn::Bigint if raw.len() == 8 => {
            i64::from_be_bytes(raw.try_into().unwrap_or_default()).to_string()
        }
        IdColumn::Integer if raw.len() == 4 => {
            i32::from_be_bytes(raw.try_into().unwrap_or_default()).to_string()
        }
        IdColumn::Text => format!("{:?}", String::from_utf8_lossy(raw)),
        _ => format!("{} bytes of {}", raw.len(), column.sql_type()),
    }
}

/// `[ARRAY, ndim, dims…]`; an array with no elements has no dimensions, as in PostgreSQL.
fn array_header(out: &mut Vec<u8>, dims: &[usize]) {
    out.push(ARRAY);
    if dims.contains(&0) {
        out.push(0);
        return;
    }
    out.push(dims.len() as u8);
    for &d in dims {
        out.extend_from_slice(&(d as u32).to_le_bytes());
    }
}

fn push_floats(out: &mut Vec<u8>, values: &[f32], round: impl Fn(f32) -> f32) {
    let start = out.len();
    out.resize(start + values.len() * 4, 0);
    for (dst, &v) in out[start..].chunks_exact_mut(4).zip(values) {
        dst.copy_from_slice(&canonical_bits(round(v).to_bits()).to_le_bytes());
    }
}

/// The point's vector as `column` stores it.
fn point_vector(
    point: &RetrievedPoint,
    column: &VectorColumn,
    out: &mut Vec<u8>,
) -> Result<(), String> {
    match vector_of(point, &column.spec).map_err(|e| e.to_string())? {
        None => out.push(ABSENT),
        Some(VectorRef::Dense(values)) => {
            array_header(out, &[values.len()]);
            if column.form == ColumnForm::Halfvec {
                push_floats(out, values, |v| f16::from_f32(v).to_f32());
            } else {
                push_floats(out, values, |v| v);
            }
        }
        Some(VectorRef::Multi(multi)) => {
            array_header(out, &[multi.rows(), multi.dim()]);
            for i in 0..multi.rows() {
                push_floats(out, multi.row(i), |v| v);
            }
        }
        Some(VectorRef::Sparse { indices, values }) => {
            let mut pairs: Vec<(u64, u32)> = indices
                .iter()
                .zip(values)
                .map(|(&i, &v)| (u64::from(i), canonical_bits(v.to_bits())))
                .collect();
            if column.form == ColumnForm::Sparsevec {
                pairs.sort_by_key(|p| p.0);
                pairs.retain(|p| f32::from_bits(p.1) != 0.0);
            }
            out.push(SPARSE);
            out.extend_from_slice(&(pairs.len() as u32).to_le_bytes());
            for (i, _) in &pairs {
                out.extend_from_slice(&i.to_le_bytes());
            }
            for (_, bits) in &pairs {
                out.extend_from_slice(&bits.to_le_bytes());
            }
        }
    }
    Ok(())
}

/// The table's vector in canonical form; `None` when its bytes are malformed (or only one of a
/// sparse vector's two columns is NULL).
fn table_vector(column: &VectorColumn, raw: &[Option<&[u8]>], out: &mut Vec<u8>) -> Option<()> {
    match (column.form, raw) {
        (_, [None]) | (ColumnForm::Array, [None, None]) => out.push(ABSENT),
        (ColumnForm::Array, [Some(indices), Some(values)]) => {
            let (indices, values) = (fields::array(indices)?, fields::array(values)?);
            if indices.dims.len() > 1 || values.dims.len() > 1 || indices.len() != values.len() {
                return None;
            }
            out.push(SPARSE);
            out.extend_from_slice(&(values.len() as u32).to_le_bytes());
            indices.write_indices(out)?;
            values.write_f32_bits(out)?;
        }
        (ColumnForm::Array, [Some(raw)]) => {
            let array = fields::array(raw)?;
            array_header(out, &array.dims);
            array.write_f32_bits(out)?;
        }
        (ColumnForm::Vector | ColumnForm::Halfvec, [Some(raw)]) => {
            array_header(out, &[fields::pgvector_dim(raw)?]);
            fields::pgvector(raw, column.form == ColumnForm::Halfvec, out)?;
        }
        (ColumnForm::Sparsevec, [Some(raw)]) => {
            let (indices, values) = fields::sparsevec(raw)?;
            out.push(SPARSE);
            out.extend_from_slice(&((indices.len() / 4) as u32).to_le_bytes());
            for index in indices.chunks_exact(4) {
                let index = i32::from_be_bytes([index[0], index[1], index[2], index[3]]);
                out.extend_from_slice(&u64::try_from(index).ok()?.to_le_bytes());
            }
            for value in values.chunks_exact(4) {
                let bits = u32::from_be_bytes([value[0], value[1], value[2], value[3]]);
                out.extend_from_slice(&canonical_bits(bits).to_le_bytes());
            }
        }
        _ => return None,
    }
    Some(())
}

/// A canonical vector field read back, for naming what differs.
enum Shape<'a> {
    Absent,
    Array { dims: Vec<usize>, bits: &'a [u8] },
    Sparse { indices: &'a [u8], bits: &'a [u8] },
    Other,
}

fn shape(field: &[u8]) -> Shape<'_> {
    let read_u32 = |at: usize| -> Option<usize> {
        Some(u32::from_le_bytes(field.get(at..at + 4)?.try_into().ok()?) as usize)
    };
    let parsed = || -> Option<Shape<'_>> {
        Some(match *field.first()? {
            ABSENT => Shape::Absent,
            ARRAY => {
                let ndim = usize::from(*field.get(1)?);
                let dims = (0..ndim)
                    .map(|d| read_u32(2 + 4 * d))
                    .collect::<Option<Vec<_>>>()?;
                Shape::Array {
                    dims,
                    bits: field.get(2 + 4 * ndim..)?,
                }
            }
            SPARSE => {
                let nnz = read_u32(1)?;
                Shape::Sparse {
                    indices: field.get(5..5 + 8 * nnz)?,
                    bits: field.get(5 + 8 * nnz..)?,
                }
            }
            _ => Shape::Other,
        })
    };
    parsed().unwrap_or(Shape::Other)
}

/// What differs between two canonical vector fields of column `name`.
fn vector_difference(name: &str, ours: &[u8], theirs: &[u8], source: &CanonicalRow) -> String {
    if theirs.first() == Some(&SOURCE_ERROR) {
        return source.source_error.clone().unwrap_or_default();
    }
    if ours.first() == Some(&MALFORMED) {
        return format!(
            "vector {name:?}: the table holds a malformed value (or only one of a sparse \
             vector's two columns)"
        );
    }
    let first_difference = |a: &[u8], b: &[u8], width: usize| {
        a.chunks(width)
            .zip(b.chunks(width))
            .position(|(x, y)| x != y)
            .unwrap_or(0)
    };
    let what = match (shape(ours), shape(theirs)) {
        (Shape::Absent, _) => "missing from the table".to_owned(),
        (_, Shape::Absent) => "in the table but absent in Qdrant".to_owned(),
        (Shape::Array { dims: a, bits: x }, Shape::Array { dims: b, bits: y }) => {
            if x.len() != y.len() {
                format!(
                    "{} values in the table, {} in Qdrant",
                    x.len() / 4,
                    y.len() / 4
                )
            } else if a != b {
                format!("is shaped {a:?} in the table, {b:?} in Qdrant")
            } else {
                let i = first_difference(x, y, 4);
                match a.as_slice() {
                    [_, columns] => format!(
                        "differs first at vector {}, element {}",
                        i / columns,
                        i % columns
                    ),
                    _ => format!("differs first at element {i}"),
                }
            }
        }
        (
            Shape::Sparse {
                indices: i,
                bits: x,
            },
            Shape::Sparse {
                indices: j,
                bits: y,
            },
        ) => {
            if x.len() != y.len() {
                format!(
                    "{} entries in the table, {} in Qdrant",
                    x.len() / 4,
                    y.len() / 4
                )
            } else if i != j {
                format!(
                    "indices differ first at entry {}",
                    first_difference(i, j, 8)
                )
            } else {
                format!("differs first at entry {}", first_difference(x, y, 4))
            }
        }
        _ => "differs".to_owned(),
    };
    format!("vector {name:?} {what}")
}

/// The top-level keys whose values differ between two canonical payloads (keys only on one
/// side included). Canonical texts are compared as written: equal text, equal value.
fn differing_keys(a: &[u8], b: &[u8]) -> Vec<String> {
    let parse = |text: &[u8]| {
        std::str::from_utf8(text)
            .ok()
            .and_then(|t| ExactJson::parse(t, usize::MAX).ok())
    };
    let (a, b) = (parse(a), parse(b));
    fn members(doc: &Option<ExactJson>) -> Vec<(&str, JsonRef<'_>)> {
        match doc.as_ref().map(|d| d.root().kind()) {
            Some(JsonKind::Object(members)) => members
                .map(|(key, value)| (key.unwrap_or_default(), value))
                .collect(),
            _ => Vec::new(),
        }
    }
    let (a, b) = (members(&a), members(&b));
    let mut keys: Vec<String> = a
        .iter()
        .filter(|entry| !b.contains(entry))
        .chain(b.iter().filter(|entry| !a.contains(entry)))
        .map(|(key, _)| (*key).to_owned())
        .collect();
    keys.sort();
    keys.dedup();
    keys
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use qdrant_client::qdrant::vector_output::Vector;
    use qdrant_client::qdrant::vectors_output::VectorsOptions;
    use qdrant_client::qdrant::{
        DenseVector, MultiDenseVector, NamedVectorsOutput, SparseVector, Value, VectorOutput,
        VectorsOutput,
    };

    use super::*;
    use crate::encode::fixtures::{json_identical, parse_json_exactly};
    use crate::layout::PayloadType;

    fn spec(name: &str, shape: VectorShape) -> VectorSpec {
        VectorSpec {
            name: name.into(),
            shape,
            dim: None,
            datatype: Default::default(),
            distance: None,
            hnsw: None,
        }
    }

    fn output(vector: Vector) -> VectorOutput {
        VectorOutput {
            vector: Some(vector),
            ..Default::default()
        }
    }

    fn point(
        id: u64,
        vectors: Vec<(&str, Vector)>,
        payload: HashMap<String, Value>,
    ) -> RetrievedPoint {
        RetrievedPoint {
            id: Some(PointKey::Num(id).to_proto()),
            vectors: Some(VectorsOutput {
                vectors_options: Some(VectorsOptions::Vectors(NamedVectorsOutput {
                    vectors: vectors
                        .into_iter()
                        .map(|(n, v)| (n.to_owned(), output(v)))
                        .collect(),
                })),
            }),
            payload,
            ..Default::default()
        }
    }

    fn be(parts: &[i32]) -> Vec<u8> {
        parts.iter().flat_map(|p| p.to_be_bytes()).collect()
    }

    fn real_array(dims: &[i32], values: &[f32]) -> Vec<u8> {
        let mut out = be(&[dims.len() as i32, 0, 700]);
        for &d in dims {
            out.extend(be(&[d, 1]));
        }
        for v in values {
            out.extend(be(&[4]));
            out.extend(v.to_bits().to_be_bytes());
        }
        out
    }

    fn columns(list: &[(&str, &str)]) -> Vec<(String, String)> {
        list.iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect()
    }

    #[test]
    fn arrays_rows_and_points_meet_in_one_form_and_differences_are_named() {
        let layout = Layout::new(
            vec![
                spec("d", VectorShape::Dense),
                spec("m", VectorShape::Multi),
                spec("s", VectorShape::Sparse),
            ],
            PayloadType::Json,
        );
        let form = RowForm::new(
            &layout,
            &columns(&[
                ("id", "bigint"),
                ("d", "real[]"),
                ("m", "real[][]"),
                ("s_indices", "integer[]"),
                ("s_values", "real[]"),
                ("payload", "json"),
            ]),
        )
        .unwrap();
        assert_eq!(
            form.columns(),
            ["id", "d", "m", "s_indices", "s_values", "payload"]
        );
        let payload: HashMap<String, Value> = [(
            "k".to_owned(),
            Value {
                kind: Some(qdrant_client::qdrant::value::Kind::DoubleValue(1.0)),
            },
        )]
        .into();
        let p = point(
            7,
            vec![
                (
                    "d",
                    Vector::Dense(DenseVector {
                        data: vec![1.0, f32::NAN, -0.0],
                    }),
                ),
                (
                    "m",
                    Vector::MultiDense(MultiDenseVector {
                        vectors: vec![
                            DenseVector {
                                data: vec![1.0, 2.0],
                            },
                            DenseVector {
                                data: vec![3.0, 4.0],
                            },
                        ],
                    }),
                ),
            ],
            payload,
        );
        let mut source = CanonicalRow::default();
        assert_eq!(
            form.of_point(PointRef::from(&p), &mut source).unwrap(),
            PointKey::Num(7)
        );
        let id = 7i64.to_be_bytes();
        let d = real_array(&[3], &[1.0, f32::from_bits(0x7fc0_1234), -0.0]);
        let m = real_array(&[2, 2], &[1.0, 2.0, 3.0, 4.0]);
        let row = |d: &[u8], m: &[u8], s: [Option<&[u8]>; 2], payload: Option<&[u8]>| {
            let mut table = CanonicalRow::default();
            let fields = [Some(&id[..]), Some(d), Some(m), s[0], s[1], payload];
            assert_eq!(
                form.of_table(&fields, &mut table).unwrap(),
                PointKey::Num(7)
            );
            table
        };
        let same = row(&d, &m, [None, None], Some(b"{\"k\": 1}"));
        assert_eq!(same.bytes(), source.bytes());
        assert_eq!(form.difference(&same, &source), None);
        let cases: Vec<(CanonicalRow, &str)> = vec![
            (
                row(
                    &real_array(&[3], &[1.0, f32::NAN, 0.0]),
                    &m,
                    [None, None],
                    Some(b"{\"k\":1}"),
                ),
                "vector \"d\" differs first at element 2",
            ),
            (
                row(
                    &real_array(&[2], &[1.0, 2.0]),
                    &m,
                    [None, None],
                    Some(b"{\"k\":1}"),
                ),
                "vector \"d\" 2 values in the table, 3 in Qdrant",
            ),
            (
                row(
                    &d,
                    &real_array(&[2, 2], &[1.0, 2.0, 3.0, 5.0]),
                    [None, None],
                    Some(b"{\"k\":1}"),
                ),
                "vector \"m\" differs first at vector 1, element 1",
            ),
            (
                row(
                    &d,
                    &real_array(&[4], &[1.0, 2.0, 3.0, 4.0]),
                    [None, None],
                    Some(b"{\"k\":1}"),
                ),
                "vector \"m\" is shaped [4] in the table, [2, 2] in Qdrant",
            ),
            (
                row(
                    &d,
                    &m,
                    [None, Some(&real_array(&[1], &[1.0]))],
                    Some(b"{\"k\":1}"),
                ),
                "vector \"s\": the table holds a malformed value",
            ),
            (
                row(
                    &d,
                    &m,
                    [
                        Some(&be(&[1, 0, 23, 1, 1, 4, 3])),
                        Some(&real_array(&[1], &[1.0])),
                    ],
                    Some(b"{\"k\":1}"),
                ),
                "vector \"s\" in the table but absent in Qdrant",
            ),
            (
                row(&d, &m, [None, None], Some(b"{\"k\":1.5,\"x\":0}")),
                "payload differs (keys [\"k\", \"x\"])",
            ),
            (
                row(&d, &m, [None, None], Some(b"{\"k\":")),
                "payload in the table is not JSON",
            ),
            (
                row(&d, &m, [None, None], None),
                "payload differs (NULL in the table)",
            ),
        ];
        for (table, expected) in cases {
            let found = form.difference(&table, &source).unwrap_or_default();
            assert!(found.starts_with(expected), "{found:?} is not {expected:?}");
        }
        let mut table = CanonicalRow::default();
        let bad = (-1i64).to_be_bytes();
        let err = form.of_table(&[Some(&bad[..]), None, None, None, None, None], &mut table);
        assert!(err.unwrap_err().to_string().contains("(-1)"));
        let missing = RowForm::new(&layout, &columns(&[("id", "bigint"), ("payload", "json")]));
        assert!(missing.unwrap_err().to_string().contains("\"d\""));
        let wrong = RowForm::new(
            &layout,
            &columns(&[
                ("id", "bigint"),
                ("d", "double precision[]"),
                ("payload", "json"),
            ]),
        );
        assert!(
            wrong
                .unwrap_err()
                .to_string()
                .contains("double precision[]")
        );
    }

    #[test]
    fn pgvector_forms_round_and_sort_the_source_as_pgvector_stores_it() {
        let layout = Layout::new(
            vec![
                spec("h", VectorShape::Dense),
                spec("s", VectorShape::Sparse),
            ],
            PayloadType::Jsonb,
        );
        let form = RowForm::new(
            &layout,
            &columns(&[
                ("id", "uuid"),
                ("h", "halfvec(2)"),
                ("s", "sparsevec(10)"),
                ("payload", "jsonb"),
            ]),
        )
        .unwrap();
        let mut p = point(
            0,
            vec![
                (
                    "h",
                    Vector::Dense(DenseVector {
                        data: vec![0.1, -2.0],
                    }),
                ),
                (
                    "s",
                    Vector::Sparse(SparseVector {
                        indices: vec![7, 3, 9],
                        values: vec![0.25, 2.0, 0.0],
                    }),
                ),
            ],
            HashMap::new(),
        );
        p.id = Some(PointKey::Uuid(5).to_proto());
        let mut source = CanonicalRow::default();
        form.of_point(PointRef::from(&p), &mut source).unwrap();
        let half = [
            &[0, 2, 0, 0][..],
            &f16::from_f32(0.1).to_bits().to_be_bytes(),
            &f16::from_f32(-2.0).to_bits().to_be_bytes(),
        ]
        .concat();
        let sparse = [
            be(&[10, 2, 0, 3, 7]),
            2.0f32.to_bits().to_be_bytes().to_vec(),
            0.25f32.to_bits().to_be_bytes().to_vec(),
        ]
        .concat();
        let id = 5u128.to_be_bytes();
        let mut table = CanonicalRow::default();
        let fields = [
            Some(&id[..]),
            Some(&half[..]),
            Some(&sparse[..]),
            Some(&b"\x01{}"[..]),
        ];
        assert_eq!(
            form.of_table(&fields, &mut table).unwrap(),
            PointKey::Uuid(5)
        );
        assert_eq!(form.difference(&table, &source), None);
        assert_eq!(table.bytes(), source.bytes());
    }

    #[test]
    fn json_identical_forgives_nothing_and_the_exact_parse_rounds_nothing() {
        assert!(json_identical(
            &serde_json::json!({"a": 1.0, "b": [1]}),
            &serde_json::json!({"b": [1], "a": 1.0})
        ));
        assert!(!json_identical(
            &serde_json::json!({"a": 1.0}),
            &serde_json::json!({"a": 1})
        ));
        // serde_json's own reading gives the double after this one.
        let exact =
            parse_json_exactly(r#"{"f": 0.39118921785523453, "u": 18446744073709551615}"#).unwrap();
        assert_eq!(
            exact["f"].as_f64().map(f64::to_bits),
            Some(0x3fd9093e804f1b78)
        );
        assert_eq!(exact["u"].as_u64(), Some(u64::MAX));
    }
}
