//! Comparing a table row with the Qdrant point it came from, value by value.
//!
//! Rows are read back as text, which is unambiguous for every type involved: arrays as `{…}`,
//! pgvector as `[…]` and `{i:v,…}/dim`, and `json`/`jsonb` as JSON text — PostgreSQL's own
//! output (`col::text`), except for `real[]` columns, which are read in binary and written as
//! the same text here ([`RealArrayText`]) with the shortest floats that read back to the same
//! bits. The server's `real` text would be exact only where the session's `extra_float_digits`
//! reaches the code that formats it, and Greenplum 6 formats the casts of a distributed query on
//! its segments, whose sessions take the coordinator's `SET`s for simple queries but not for
//! the extended protocol's (observed on 6.24.3: 6 significant digits). Vectors are compared bit
//! for bit (any NaN equals any NaN, as PostgreSQL does not keep NaN payloads). Payloads are
//! compared in the canonical form of `encode::json::write_canonical` on both sides — the point's
//! payload as the source read it exactly, the table's text parsed without rounding
//! (`payload::ExactJson`) — so numbers are equal exactly when their decimal values are:
//! `jsonb`'s `10000000000000000000` equals Qdrant's `1e19`, and `18446744073709551615` never
//! equals `1.8446744073709552e19`.

use half::f16;
use postgres::types::{FromSql, Type};
use qdrant_client::qdrant::RetrievedPoint;
use serde_json::Value as Json;

use crate::encode::float::write_f32;
use crate::encode::json::write_canonical;
use crate::encode::vectors::{VectorRef, vector_of};
use crate::layout::{Layout, PayloadType, VectorShape, VectorSpec};
use crate::payload::exact_json::{Canonical, JsonError};
use crate::payload::{ExactJson, JsonKind, JsonRef, MAX_PAYLOAD_DEPTH, PayloadRef, PointRef};

/// How a vector column is typed in the target, as read from the catalog.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ColumnForm {
    /// `real[]` / `real[][]`; sparse vectors as an indices array plus a values array.
    Array,
    /// pgvector `vector`.
    Vector,
    /// pgvector `halfvec`: values rounded to float16.
    Halfvec,
    /// pgvector `sparsevec`: 1-based `{i:v,…}/dim`, zeros dropped.
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

/// A `real[]` (or `real[][]`) value read in binary, as the text PostgreSQL prints for it
/// (`{1.5,NULL,NaN}`, `{{1,2},{3,4}}`, `{}`), floats in their shortest exact form.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RealArrayText(pub String);

impl<'a> FromSql<'a> for RealArrayText {
    fn from_sql(_: &Type, raw: &'a [u8]) -> Result<Self, Box<dyn std::error::Error + Sync + Send>> {
        let mut raw = raw;
        let mut int = || -> Result<i32, String> {
            let (head, rest) = raw
                .split_first_chunk::<4>()
                .ok_or("a truncated real[] value")?;
            raw = rest;
            Ok(i32::from_be_bytes(*head))
        };
        let ndim = int()?;
        let _has_nulls = int()?;
        let _element_type = int()?;
        let mut dims = Vec::new();
        for _ in 0..ndim {
            let len = usize::try_from(int()?).map_err(|_| "a negative real[] dimension")?;
            let _lower_bound = int()?;
            dims.push(len);
        }
        let mut floats = Vec::new();
        let elements = if ndim == 0 { 0 } else { dims.iter().product() };
        for _ in 0..elements {
            floats.push(match int()? {
                -1 => None,
                4 => Some(f32::from_bits(int()? as u32)),
                n => return Err(format!("a real[] element of {n} bytes").into()),
            });
        }
        let mut text = Vec::with_capacity(floats.len() * 12 + 2);
        write_array(&mut text, &dims, &mut floats.into_iter());
        Ok(RealArrayText(String::from_utf8(text)?))
    }

    fn accepts(ty: &Type) -> bool {
        *ty == Type::FLOAT4_ARRAY
    }
}

/// Writes the elements of an array of dimensions `dims` as PostgreSQL's array text.
fn write_array(
    out: &mut Vec<u8>,
    dims: &[usize],
    elements: &mut impl Iterator<Item = Option<f32>>,
) {
    out.push(b'{');
    if let Some((&len, inner)) = dims.split_first() {
        for i in 0..len {
            if i > 0 {
                out.push(b',');
            }
            if inner.is_empty() {
                match elements.next().flatten() {
                    Some(v) => write_f32(out, v),
                    None => out.extend_from_slice(b"NULL"),
                }
            } else {
                write_array(out, inner, elements);
            }
        }
    }
    out.push(b'}');
}

/// One vector as compared: f32 bits (NaN canonicalised), rows for multivectors, indices for
/// sparse vectors.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Values {
    Dense(Vec<u32>),
    Multi(Vec<Vec<u32>>),
    Sparse(Vec<u64>, Vec<u32>),
}

fn bits(v: f32) -> u32 {
    if v.is_nan() {
        f32::NAN.to_bits()
    } else {
        v.to_bits()
    }
}

fn parse_f32(text: &str) -> Option<f32> {
    text.trim().parse::<f32>().ok()
}

/// `{1,2}` or `[1,2]` → values; `{{1,2},{3,4}}` → rows.
fn parse_rows(text: &str) -> Option<Vec<Vec<f32>>> {
    let inner = text.trim();
    let nested = inner.starts_with("{{");
    if !nested {
        let body = inner.strip_prefix(['{', '['])?.strip_suffix(['}', ']'])?;
        let values: Option<Vec<f32>> = body
            .split(',')
            .filter(|s| !s.trim().is_empty())
            .map(parse_f32)
            .collect();
        return Some(vec![values?]);
    }
    let body = inner.strip_prefix('{')?.strip_suffix('}')?;
    body.split("},")
        .map(|row| {
            let row = row.trim().trim_start_matches('{').trim_end_matches('}');
            row.split(',')
                .filter(|s| !s.trim().is_empty())
                .map(parse_f32)
                .collect()
        })
        .collect()
}

/// What the table holds for one vector, normalised for comparison.
fn table_values(
    spec: &VectorSpec,
    form: ColumnForm,
    fields: &[Option<&str>],
) -> Option<Option<Values>> {
    let first = fields.first().copied().flatten();
    let Some(text) = first else { return Some(None) };
    Some(Some(match (spec.shape, form) {
        (VectorShape::Sparse, ColumnForm::Sparsevec) => {
            // {i:v,...}/dim with 1-based indices.
            let body = text.trim().strip_prefix('{')?;
            let (body, _dim) = body.split_once("}/")?;
            let mut indices = Vec::new();
            let mut values = Vec::new();
            for pair in body.split(',').filter(|s| !s.is_empty()) {
                let (i, v) = pair.split_once(':')?;
                indices.push(i.trim().parse::<u64>().ok()?.checked_sub(1)?);
                values.push(bits(parse_f32(v)?));
            }
            Values::Sparse(indices, values)
        }
        (VectorShape::Sparse, _) => {
            let values_text = fields.get(1).copied().flatten()?;
            let body = text.trim().strip_prefix('{')?.strip_suffix('}')?;
            let indices: Option<Vec<u64>> = body
                .split(',')
                .filter(|s| !s.is_empty())
                .map(|s| s.trim().parse().ok())
                .collect();
            let values = parse_rows(values_text)?
                .into_iter()
                .flatten()
                .map(bits)
                .collect();
            Values::Sparse(indices?, values)
        }
        (VectorShape::Multi, _) => Values::Multi(
            parse_rows(text)?
                .into_iter()
                .map(|r| r.into_iter().map(bits).collect())
                .collect(),
        ),
        (VectorShape::Dense, _) => {
            Values::Dense(parse_rows(text)?.into_iter().flatten().map(bits).collect())
        }
    }))
}

/// What Qdrant holds for one vector, as the column form would store it.
fn point_values(
    point: &RetrievedPoint,
    spec: &VectorSpec,
    form: ColumnForm,
) -> Result<Option<Values>, String> {
    let round = |v: f32| {
        if form == ColumnForm::Halfvec {
            f16::from_f32(v).to_f32()
        } else {
            v
        }
    };
    Ok(match vector_of(point, spec).map_err(|e| e.to_string())? {
        None => None,
        Some(VectorRef::Dense(values)) => Some(Values::Dense(
            values.iter().map(|&v| bits(round(v))).collect(),
        )),
        Some(VectorRef::Multi(multi)) => Some(Values::Multi(
            (0..multi.rows())
                .map(|i| multi.row(i).iter().map(|&v| bits(v)).collect())
                .collect(),
        )),
        Some(VectorRef::Sparse { indices, values }) => {
            let mut pairs: Vec<(u64, u32)> = indices
                .iter()
                .zip(values)
                .map(|(&i, &v)| (u64::from(i), bits(v)))
                .collect();
            if form == ColumnForm::Sparsevec {
                // pgvector keeps a sparsevec sorted and without zeros.
                pairs.sort_by_key(|p| p.0);
                pairs.retain(|p| f32::from_bits(p.1) != 0.0);
            }
            Some(Values::Sparse(
                pairs.iter().map(|p| p.0).collect(),
                pairs.iter().map(|p| p.1).collect(),
            ))
        }
    })
}

/// A table row as text fields in layout column order (`id`, vector columns, `payload`).
pub struct RowText<'a> {
    pub fields: Vec<Option<&'a str>>,
}

/// Compares one row with one point; `Err` says what differs (never the values themselves).
pub fn compare_row(
    layout: &Layout,
    forms: &[ColumnForm],
    row: &RowText<'_>,
    PointRef { point, payload }: PointRef<'_>,
) -> Result<(), String> {
    let mut at = 1;
    for (spec, &form) in layout.vectors.iter().zip(forms) {
        let width = if spec.shape == VectorShape::Sparse && form == ColumnForm::Array {
            2
        } else {
            1
        };
        let fields = row
            .fields
            .get(at..at + width)
            .ok_or("row has too few columns")?;
        at += width;
        let stored = table_values(spec, form, fields).ok_or_else(|| {
            format!(
                "vector {:?}: the table holds a malformed value (or only one of a sparse \
                 vector's two columns)",
                spec.column()
            )
        })?;
        let source = point_values(point, spec, form)?;
        if stored != source {
            let what = match (&stored, &source) {
                (None, Some(_)) => "missing from the table".to_owned(),
                (Some(_), None) => "in the table but absent in Qdrant".to_owned(),
                (Some(Values::Dense(a)), Some(Values::Dense(b))) if a.len() != b.len() => {
                    format!("{} values in the table, {} in Qdrant", a.len(), b.len())
                }
                (Some(Values::Dense(a)), Some(Values::Dense(b))) => {
                    let i = a.iter().zip(b).position(|(x, y)| x != y).unwrap_or(0);
                    format!("differs first at element {i}")
                }
                _ => "differs".to_owned(),
            };
            return Err(format!("vector {:?} {what}", spec.column()));
        }
    }
    let stored = match row.fields.get(at).copied().flatten() {
        // Parsed without recursion or rounding, however deep the table's JSON is.
        Some(text) => Some(
            ExactJson::parse(text, usize::MAX)
                .map_err(|_| "payload in the table is not JSON".to_owned())?,
        ),
        None => None,
    };
    // A json column keeps each number's text, so an integer is not a float of the same value;
    // jsonb keeps values only.
    let form = match layout.payload {
        PayloadType::Json => Canonical::ValuesAndKinds,
        PayloadType::Jsonb => Canonical::Values,
    };
    let stored_text = canonical(
        stored.as_ref().map(|doc| PayloadRef::Exact(doc.root())),
        form,
    );
    let source_text = canonical(Some(payload), form);
    if stored_text != source_text {
        return Err(format!(
            "payload differs (keys {:?})",
            differing_keys(&stored_text, &source_text)
        ));
    }
    Ok(())
}

/// A payload's canonical text; a SQL NULL as `null`.
fn canonical(payload: Option<PayloadRef<'_>>, form: Canonical) -> Vec<u8> {
    let mut out = Vec::new();
    match payload {
        Some(payload) => write_canonical(&mut out, payload, form),
        None => out.extend_from_slice(b"null"),
    }
    out
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

/// Parses JSON text into serde_json values with every float read correctly rounded, which
/// serde_json's own reading is not in this build (see Cargo.toml): what the round-trip tests
/// read tables and REST answers back with before [`json_identical`]. At most twice
/// [`MAX_PAYLOAD_DEPTH`] levels (a payload and what wraps it), so the recursive build and drop
/// of the result stay shallow.
pub fn parse_json_exactly(text: &str) -> Result<Json, JsonError> {
    fn build(value: JsonRef<'_>) -> Json {
        match value.kind() {
            JsonKind::Null => Json::Null,
            JsonKind::Bool(b) => Json::Bool(b),
            JsonKind::Number(n) if n.contains(['.', 'e', 'E']) => n
                .parse::<f64>()
                .ok()
                .and_then(serde_json::Number::from_f64)
                .map_or(Json::Null, Json::Number),
            JsonKind::Number(n) => n
                .parse::<i64>()
                .map(Json::from)
                .or_else(|_| n.parse::<u64>().map(Json::from))
                .unwrap_or_else(|_| n.parse::<f64>().map_or(Json::Null, Json::from)),
            JsonKind::String(s) => Json::String(s.to_owned()),
            JsonKind::Array(members) => Json::Array(members.map(|(_, v)| build(v)).collect()),
            JsonKind::Object(members) => Json::Object(
                members
                    .map(|(k, v)| (k.unwrap_or_default().to_owned(), build(v)))
                    .collect(),
            ),
        }
    }
    Ok(build(ExactJson::parse(text, 2 * MAX_PAYLOAD_DEPTH)?.root()))
}

/// JSON equality with nothing forgiven: an integer never equals a float, and floats compare
/// bit for bit (`-0.0` is not `0.0`); object keys in any order. What the round-trip tests
/// demand of a `json` column.
pub fn json_identical(a: &Json, b: &Json) -> bool {
    match (a, b) {
        (Json::Number(x), Json::Number(y)) if x.is_f64() || y.is_f64() => {
            x.is_f64() && y.is_f64() && x.as_f64().map(f64::to_bits) == y.as_f64().map(f64::to_bits)
        }
        (Json::Array(x), Json::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(a, b)| json_identical(a, b))
        }
        (Json::Object(x), Json::Object(y)) => {
            x.len() == y.len()
                && x.iter()
                    .all(|(k, v)| y.get(k).is_some_and(|w| json_identical(v, w)))
        }
        _ => a == b,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `real[]` in PostgreSQL's binary form: header, dimensions (lower bound 1), elements.
    fn binary_array(dims: &[i32], elements: &[Option<f32>]) -> Vec<u8> {
        let mut out = Vec::new();
        let mut int = |v: i32| out.extend_from_slice(&v.to_be_bytes());
        int(dims.len() as i32);
        int(i32::from(elements.iter().any(Option::is_none)));
        int(700);
        for &d in dims {
            int(d);
            int(1);
        }
        for e in elements {
            match e {
                Some(v) => {
                    int(4);
                    int(v.to_bits() as i32);
                }
                None => int(-1),
            }
        }
        out
    }

    #[test]
    fn real_arrays_read_in_binary_print_as_postgresql_does_with_exact_floats() {
        let text = |dims: &[i32], elements: &[Option<f32>]| {
            RealArrayText::from_sql(&Type::FLOAT4_ARRAY, &binary_array(dims, elements))
                .unwrap()
                .0
        };
        let tenth = 0.1f32;
        let third = f32::from_bits((1.0f32 / 3.0).to_bits() + 1);
        assert_eq!(
            text(&[4], &[Some(tenth), None, Some(f32::NAN), Some(-0.0)]),
            "{0.1,NULL,NaN,-0.0}"
        );
        assert_eq!(text(&[], &[]), "{}");
        assert_eq!(
            text(
                &[2, 2],
                &[Some(1.0), Some(third), Some(f32::INFINITY), Some(1e-45)]
            ),
            "{{1.0,0.33333337},{Infinity,1e-45}}"
        );
        let rows = parse_rows(&text(
            &[2, 2],
            &[Some(1.0), Some(third), Some(3.0), Some(4.0)],
        ));
        assert_eq!(rows.unwrap()[0][1].to_bits(), third.to_bits());
        assert!(RealArrayText::from_sql(&Type::FLOAT4_ARRAY, &[0, 0, 0, 1]).is_err());
    }

    #[test]
    fn parses_every_text_form() {
        assert_eq!(parse_rows("{1,-0,NaN,Infinity}").unwrap()[0].len(), 4);
        assert_eq!(parse_rows("[1.5,2]").unwrap(), vec![vec![1.5, 2.0]]);
        assert_eq!(
            parse_rows("{{1,2},{3,4}}").unwrap(),
            vec![vec![1.0, 2.0], vec![3.0, 4.0]]
        );
        assert_eq!(parse_f32("-0").map(f32::to_bits), Some((-0.0f32).to_bits()));
        assert_eq!(parse_f32("1e-07"), Some(1e-7));
        let spec = VectorSpec {
            name: "s".into(),
            shape: VectorShape::Sparse,
            dim: None,
            datatype: Default::default(),
            distance: None,
            hnsw: None,
        };
        let sparse = table_values(&spec, ColumnForm::Sparsevec, &[Some("{1:0.5,4:2}/10")]).unwrap();
        assert_eq!(
            sparse,
            Some(Values::Sparse(
                vec![0, 3],
                vec![0.5f32.to_bits(), 2f32.to_bits()]
            ))
        );
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
