//! Property tests of COPY text encoding: arbitrary points (ids, vectors in both wire shapes,
//! payloads full of the bytes COPY and JSON treat specially) are encoded by [`TextRowEncoder`],
//! then read back with a reference reader written here from PostgreSQL's COPY text rules, and
//! must come back exactly — or be refused with an error naming the point, leaving the buffer as
//! it was.
//!
//! The unit tests in `text.rs` and `json.rs` pin chosen hazards; these look for the ones nobody
//! thought of. Cases follow proptest's default (256, or `PROPTEST_CASES`), so CI runs them in a
//! few seconds and a failure prints a seed to replay.

use std::collections::{BTreeSet, HashMap};

use proptest::prelude::*;
use qdrant_client::qdrant::value::Kind;
use qdrant_client::qdrant::{
    DenseVector, ListValue, MultiDenseVector, RetrievedPoint, Struct, Value, VectorOutput,
};
use serde_json::Value as Json;

use super::fixtures::{
    dense, json_identical, multi_flat, old_style, parse_json_exactly, point, sparse,
};
use super::json::{Escape, write_payload};
use super::text::TextRowEncoder;
use super::{EncodeError, RowEncoder};
use crate::layout::{
    DataFacts, Datatype, Layout, PayloadType, VectorShape, VectorSpec, VectorSyntax,
};
use crate::payload::PayloadRef;
use crate::point_id::PointKey;

/// One field as PostgreSQL's COPY text reader sees it: `None` for `\N`.
type Field = Option<Vec<u8>>;

/// Splits one line into fields and unescapes them as PostgreSQL's `CopyReadAttributesText`
/// does with `DELIMITER '|'`: the NULL marker is matched on the raw text, a backslash takes
/// the next byte with it (`\b \f \n \r \t \v`, octal `\NNN`, hex `\xHH`, anything else
/// literally), and only an unescaped `|` ends a field.
fn copy_fields(line: &[u8]) -> Vec<Field> {
    let mut fields = Vec::new();
    let mut start = 0;
    let mut i = 0;
    while i <= line.len() {
        match line.get(i) {
            Some(b'\\') => {
                // An unescaped `\.` is PostgreSQL's end-of-data marker, never data.
                assert_ne!(
                    line.get(i + 1),
                    Some(&b'.'),
                    "end-of-copy marker in a field"
                );
                i += 2;
            }
            Some(b'|') | None => {
                let raw = &line[start..i.min(line.len())];
                fields.push((raw != b"\\N").then(|| copy_unescape(raw)));
                i += 1;
                start = i;
            }
            Some(_) => i += 1,
        }
    }
    fields
}

fn copy_unescape(raw: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(raw.len());
    let mut i = 0;
    while i < raw.len() {
        let b = raw[i];
        i += 1;
        if b != b'\\' {
            out.push(b);
            continue;
        }
        let Some(&c) = raw.get(i) else {
            // PostgreSQL keeps a trailing backslash; the encoder must never write one.
            panic!(
                "field ends in a lone backslash: {:?}",
                String::from_utf8_lossy(raw)
            );
        };
        i += 1;
        match c {
            b'0'..=b'7' => {
                let mut value = u32::from(c - b'0');
                for _ in 0..2 {
                    match raw.get(i) {
                        Some(&d @ b'0'..=b'7') => {
                            value = value * 8 + u32::from(d - b'0');
                            i += 1;
                        }
                        _ => break,
                    }
                }
                out.push((value & 0xff) as u8);
            }
            b'x' if raw.get(i).is_some_and(u8::is_ascii_hexdigit) => {
                let mut value = 0u32;
                for _ in 0..2 {
                    match raw.get(i).and_then(|d| char::from(*d).to_digit(16)) {
                        Some(d) => {
                            value = value * 16 + d;
                            i += 1;
                        }
                        None => break,
                    }
                }
                out.push(value as u8);
            }
            b'b' => out.push(0x08),
            b'f' => out.push(0x0c),
            b'n' => out.push(b'\n'),
            b'r' => out.push(b'\r'),
            b't' => out.push(b'\t'),
            b'v' => out.push(0x0b),
            other => out.push(other),
        }
    }
    out
}

fn text(field: &Field) -> &str {
    let bytes = field.as_deref().expect("a value, not NULL");
    std::str::from_utf8(bytes).expect("UTF-8 field")
}

/// A `real` as PostgreSQL's `float4in` spells non-finite values.
fn real(s: &str) -> f32 {
    match s {
        "NaN" => f32::NAN,
        "Infinity" => f32::INFINITY,
        "-Infinity" => f32::NEG_INFINITY,
        _ => s
            .parse()
            .unwrap_or_else(|e| panic!("{s:?} is not a real: {e}")),
    }
}

/// The comma-separated items between `open` and `close` (no items for `{}`).
fn items(s: &str, open: char, close: char) -> Vec<&str> {
    let inner = s
        .strip_prefix(open)
        .and_then(|s| s.strip_suffix(close))
        .unwrap_or_else(|| panic!("{s:?} is not {open}…{close}"));
    if inner.is_empty() {
        Vec::new()
    } else {
        inner.split(',').collect()
    }
}

fn reals(s: &str, open: char, close: char) -> Vec<f32> {
    items(s, open, close).into_iter().map(real).collect()
}

/// `{{a,b},{c,d}}` as rows.
fn real_rows(s: &str) -> Vec<Vec<f32>> {
    let inner = s
        .strip_prefix('{')
        .and_then(|s| s.strip_suffix('}'))
        .unwrap_or_else(|| panic!("{s:?} is not a real[][]"));
    if inner.is_empty() {
        return Vec::new();
    }
    inner
        .split("},{")
        .map(|row| reals(&format!("{{{}}}", row.trim_matches(['{', '}'])), '{', '}'))
        .collect()
}

/// Bit-exact, except that every NaN is one NaN (COPY text spells them all `NaN`).
fn same_reals(a: &[f32], b: &[f32]) -> bool {
    a.len() == b.len()
        && a.iter()
            .zip(b)
            .all(|(x, y)| x.to_bits() == y.to_bits() || x.is_nan() && y.is_nan())
}

/// The JSON a payload value must read back as: non-finite doubles become `null`, as in
/// serde_json and Qdrant's REST API.
fn expected_json(value: &Value) -> Json {
    match &value.kind {
        None | Some(Kind::NullValue(_)) => Json::Null,
        Some(Kind::BoolValue(b)) => Json::Bool(*b),
        Some(Kind::IntegerValue(n)) => Json::from(*n),
        Some(Kind::DoubleValue(d)) => {
            serde_json::Number::from_f64(*d).map_or(Json::Null, Json::Number)
        }
        Some(Kind::StringValue(s)) => Json::String(s.clone()),
        Some(Kind::ListValue(l)) => Json::Array(l.values.iter().map(expected_json).collect()),
        Some(Kind::StructValue(s)) => expected_object(&s.fields),
    }
}

fn expected_object(fields: &HashMap<String, Value>) -> Json {
    Json::Object(
        fields
            .iter()
            .map(|(k, v)| (k.clone(), expected_json(v)))
            .collect(),
    )
}

fn has_nul(value: &Value) -> bool {
    match &value.kind {
        Some(Kind::StringValue(s)) => s.contains('\0'),
        Some(Kind::ListValue(l)) => l.values.iter().any(has_nul),
        Some(Kind::StructValue(s)) => payload_has_nul(&s.fields),
        _ => false,
    }
}

fn payload_has_nul(fields: &HashMap<String, Value>) -> bool {
    fields.iter().any(|(k, v)| k.contains('\0') || has_nul(v))
}

/// Characters COPY text, JSON or line handling treat specially, mixed with any character.
fn hazard_char() -> impl Strategy<Value = char> {
    prop_oneof![
        3 => any::<char>(),
        2 => prop::sample::select(vec![
            '\0', '\\', '|', '\n', '\r', '\t', '"', '\u{8}', '\u{c}', '\u{b}', '\u{1f}', '\u{7f}',
            '\u{2028}', '\u{2029}', 'N', '.', 'x', '0', 'u', 'ü', '🦀', '\u{feff}',
        ]),
    ]
}

fn hazard_string(max: usize) -> impl Strategy<Value = String> {
    prop::collection::vec(hazard_char(), 0..max).prop_map(|c| c.into_iter().collect())
}

fn double() -> impl Strategy<Value = f64> {
    prop_oneof![
        3 => any::<f64>(),
        1 => prop::sample::select(vec![
            1e308, 5e-324, -0.0, 0.0, 1.0, f64::MAX, f64::MIN, f64::MIN_POSITIVE, f64::NAN,
            f64::INFINITY, f64::NEG_INFINITY, 1e16, 0.1,
        ]),
    ]
}

fn integer() -> impl Strategy<Value = i64> {
    prop_oneof![
        3 => any::<i64>(),
        1 => prop::sample::select(vec![i64::MIN, i64::MAX, 0, -1, 1 << 53, (1 << 53) + 1]),
    ]
}

fn kind(kind: Kind) -> Value {
    Value { kind: Some(kind) }
}

fn leaf() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value { kind: None }),
        Just(kind(Kind::NullValue(0))),
        any::<bool>().prop_map(|b| kind(Kind::BoolValue(b))),
        integer().prop_map(|n| kind(Kind::IntegerValue(n))),
        double().prop_map(|d| kind(Kind::DoubleValue(d))),
        hazard_string(24).prop_map(|s| kind(Kind::StringValue(s))),
    ]
}

fn list(values: Vec<Value>) -> Value {
    kind(Kind::ListValue(ListValue { values }))
}

fn object(fields: HashMap<String, Value>) -> Value {
    kind(Kind::StructValue(Struct { fields }))
}

fn payload_value() -> impl Strategy<Value = Value> {
    leaf().prop_recursive(6, 48, 5, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..5).prop_map(list),
            prop::collection::hash_map(hazard_string(8), inner, 0..5).prop_map(object),
        ]
    })
}

fn payload() -> impl Strategy<Value = HashMap<String, Value>> {
    prop::collection::hash_map(hazard_string(12), payload_value(), 0..6)
}

fn point_key() -> impl Strategy<Value = PointKey> {
    prop_oneof![
        any::<u64>().prop_map(PointKey::Num),
        prop::sample::select(vec![0, u64::MAX]).prop_map(PointKey::Num),
        any::<u128>().prop_map(PointKey::Uuid),
    ]
}

fn real_value() -> impl Strategy<Value = f32> {
    prop_oneof![
        4 => any::<f32>(),
        1 => prop::sample::select(vec![
            0.0, -0.0, f32::NAN, f32::INFINITY, f32::NEG_INFINITY, f32::MIN_POSITIVE,
            f32::from_bits(1), f32::MAX, f32::MIN,
        ]),
    ]
}

/// A layout of up to three vectors with hazardous, distinct names.
fn layout_strategy() -> impl Strategy<Value = Layout> {
    let shape = prop::sample::select(vec![
        VectorShape::Dense,
        VectorShape::Multi,
        VectorShape::Sparse,
    ]);
    let specs = prop::collection::btree_set(hazard_string(6), 0..4).prop_flat_map(move |names| {
        let n = names.len();
        (
            Just(names),
            prop::collection::vec((shape.clone(), 1u64..5, any::<bool>()), n),
            any::<bool>(),
        )
    });
    specs.prop_map(|(names, shapes, jsonb): (BTreeSet<String>, _, bool)| {
        let vectors = names
            .into_iter()
            .zip(shapes)
            .map(|(name, (shape, dim, sparse_dim))| VectorSpec {
                name,
                shape,
                // A sparse vector's `dim` is its sparsevec dimension, small enough to be hit.
                dim: match shape {
                    VectorShape::Sparse => sparse_dim.then_some(dim * 3),
                    VectorShape::Dense | VectorShape::Multi => Some(dim),
                },
                datatype: Datatype::Float32,
                distance: None,
                hnsw: None,
            })
            .collect();
        let payload = if jsonb {
            PayloadType::Jsonb
        } else {
            PayloadType::Json
        };
        Layout::new(vectors, payload)
    })
}

/// A vector fitting `spec` (or none), in either wire shape a server may send.
fn vector_for(spec: &VectorSpec) -> BoxedStrategy<Option<VectorOutput>> {
    let dim = spec.dim.unwrap_or(1) as usize;
    let vector = match spec.shape {
        VectorShape::Dense => (prop::collection::vec(real_value(), dim), any::<bool>())
            .prop_map(|(data, new)| {
                if new {
                    dense(data)
                } else {
                    old_style(data, None, None)
                }
            })
            .boxed(),
        VectorShape::Multi => (
            prop::collection::vec(prop::collection::vec(real_value(), dim), 0..3),
            any::<bool>(),
        )
            .prop_map(|(rows, new)| {
                if new {
                    VectorOutput {
                        vector: Some(qdrant_client::qdrant::vector_output::Vector::MultiDense(
                            MultiDenseVector {
                                vectors: rows
                                    .into_iter()
                                    .map(|data| DenseVector { data })
                                    .collect(),
                            },
                        )),
                        ..Default::default()
                    }
                } else {
                    let count = rows.len() as u32;
                    multi_flat(rows.concat(), count)
                }
            })
            .boxed(),
        VectorShape::Sparse => {
            let index = prop_oneof![0u32..16, any::<u32>()];
            (
                prop::collection::vec((index, real_value()), 0..5),
                any::<bool>(),
            )
                .prop_map(|(entries, new)| {
                    let (indices, values): (Vec<u32>, Vec<f32>) = entries.into_iter().unzip();
                    if new {
                        sparse(indices, values)
                    } else {
                        old_style(values, Some(indices), None)
                    }
                })
                .boxed()
        }
    };
    prop::option::weighted(0.85, vector).boxed()
}

fn case() -> impl Strategy<Value = (Layout, RetrievedPoint, VectorSyntax)> {
    (
        layout_strategy(),
        point_key(),
        payload(),
        prop::sample::select(vec![VectorSyntax::Array, VectorSyntax::Pgvector]),
    )
        .prop_flat_map(|(layout, key, payload, syntax)| {
            let vectors: Vec<_> = layout.vectors.iter().map(vector_for).collect();
            (
                Just(layout),
                Just(key),
                Just(payload),
                Just(syntax),
                vectors,
            )
        })
        .prop_map(|(layout, key, payload, syntax, vectors)| {
            let named: Vec<(&str, VectorOutput)> = layout
                .vectors
                .iter()
                .zip(vectors)
                .filter_map(|(spec, v)| Some((spec.name.as_str(), v?)))
                .collect();
            let mut p = point(key, named);
            p.payload = payload;
            (layout, p, syntax)
        })
}

/// Why pgvector would refuse this vector, if it would.
fn pgvector_refuses(spec: &VectorSpec, v: &super::vectors::VectorRef<'_>) -> bool {
    use super::vectors::VectorRef;
    match v {
        VectorRef::Dense(values) => values.iter().any(|x| !x.is_finite()),
        VectorRef::Multi(_) => false,
        VectorRef::Sparse { indices, values } => {
            let distinct: BTreeSet<_> = indices.iter().collect();
            distinct.len() != indices.len()
                || values.iter().any(|x| !x.is_finite())
                || indices.iter().any(|&i| i >= spec.sparsevec_dim())
        }
    }
}

/// Checks one encoded row against the point, field by field.
fn check_row(
    layout: &Layout,
    syntax: VectorSyntax,
    p: &RetrievedPoint,
    key: PointKey,
    line: &[u8],
) {
    use super::vectors::{VectorRef, vector_of};
    assert_eq!(line.last(), Some(&b'\n'), "a row ends with its newline");
    let body = &line[..line.len() - 1];
    assert!(
        !body.iter().any(|b| matches!(b, b'\n' | b'\r' | 0)),
        "raw line break or NUL inside a row"
    );
    let fields = copy_fields(body);
    let names = layout.columns(syntax);
    assert_eq!(fields.len(), names.len(), "one field per column: {names:?}");
    let mut fields = fields.iter();
    let mut next = || fields.next().expect("counted above");
    assert_eq!(text(next()), key.to_string());
    for spec in &layout.vectors {
        let value = vector_of(p, spec).expect("the strategy fits the layout");
        match (value, syntax) {
            (None, VectorSyntax::Array) if spec.shape == VectorShape::Sparse => {
                assert_eq!(next(), &None);
                assert_eq!(next(), &None);
            }
            (None, _) => assert_eq!(next(), &None),
            (Some(VectorRef::Dense(values)), VectorSyntax::Array) => {
                assert!(same_reals(&reals(text(next()), '{', '}'), values));
            }
            (Some(VectorRef::Dense(values)), VectorSyntax::Pgvector) => {
                assert!(same_reals(&reals(text(next()), '[', ']'), values));
            }
            (Some(VectorRef::Multi(multi)), _) => {
                let rows = real_rows(text(next()));
                assert_eq!(rows.len(), multi.rows());
                for (i, row) in rows.iter().enumerate() {
                    assert!(same_reals(row, multi.row(i)));
                }
            }
            (Some(VectorRef::Sparse { indices, values }), VectorSyntax::Array) => {
                let read: Vec<u32> = items(text(next()), '{', '}')
                    .into_iter()
                    .map(|i| i.parse().expect("an index"))
                    .collect();
                assert_eq!(read, indices);
                assert!(same_reals(&reals(text(next()), '{', '}'), values));
            }
            (Some(VectorRef::Sparse { indices, values }), VectorSyntax::Pgvector) => {
                let field = text(next());
                let (entries, dim) = field.rsplit_once('/').expect("{…}/dim");
                assert_eq!(dim, spec.sparsevec_dim().to_string());
                let read: Vec<(u32, f32)> = items(entries, '{', '}')
                    .into_iter()
                    .map(|e| {
                        let (i, v) = e.split_once(':').expect("i:v");
                        (i.parse::<u32>().expect("an index") - 1, real(v))
                    })
                    .collect();
                let mut want: Vec<(u32, f32)> = indices
                    .iter()
                    .copied()
                    .zip(values.iter().copied())
                    .filter(|e| e.1 != 0.0)
                    .collect();
                want.sort_by_key(|e| e.0);
                assert_eq!(read.len(), want.len());
                for (r, w) in read.iter().zip(&want) {
                    assert!(
                        r.0 == w.0 && r.1.to_bits() == w.1.to_bits(),
                        "{r:?} != {w:?}"
                    );
                }
            }
        }
    }
    let json = parse_json_exactly(text(next())).expect("the payload is JSON");
    let want = expected_object(&p.payload);
    assert!(
        json_identical(&json, &want),
        "payload read back as {json}, want {want}"
    );
}

proptest! {
    /// Every row reads back exactly through PostgreSQL's COPY text rules, or is refused with
    /// an error naming the point and leaves the buffer as it was.
    #[test]
    fn rows_read_back_exactly_or_are_refused_whole((layout, p, syntax) in case()) {
        let encoder = TextRowEncoder::new(&layout, syntax);
        let mut header = Vec::new();
        encoder.header(&mut header);
        let names: Vec<Field> = layout.columns(syntax)
            .into_iter()
            .map(|n| Some(n.into_bytes()))
            .collect();
        prop_assert_eq!(header.iter().filter(|&&b| b == b'\n').count(), 1);
        prop_assert_eq!(copy_fields(&header[..header.len() - 1]), names);

        let key = PointKey::from_proto(p.id.as_ref()).expect("generated ids are valid");
        let refused_by_pgvector = syntax == VectorSyntax::Pgvector
            && layout.vectors.iter().any(|spec| {
                super::vectors::vector_of(&p, spec)
                    .expect("the strategy fits the layout")
                    .is_some_and(|v| pgvector_refuses(spec, &v))
            });
        let refused_by_jsonb = layout.payload == PayloadType::Jsonb && payload_has_nul(&p.payload);
        let mut out = b"before|".to_vec();
        let mut facts = DataFacts::for_layout(&layout);
        match encoder.encode((&p).into(), &mut out, &mut facts) {
            Ok(got) => {
                prop_assert!(!refused_by_pgvector && !refused_by_jsonb, "should have been refused");
                prop_assert_eq!(got, key);
                check_row(&layout, syntax, &p, key, &out[b"before|".len()..]);
            }
            Err(err) => {
                prop_assert!(refused_by_pgvector || refused_by_jsonb, "refused: {}", err);
                prop_assert!(
                    !refused_by_pgvector || !matches!(err, EncodeError::NulInJsonb { .. }),
                    "{}", err
                );
                let message = err.to_string();
                prop_assert!(message.starts_with(&format!("point {key}")), "{}", message);
                prop_assert_eq!(&out[..], b"before|", "a refused row leaves nothing behind");
            }
        }
    }

    /// The payload alone, both embeddings: JSON as it is (binary COPY) and escaped for text.
    #[test]
    fn payloads_read_back_bit_exact(payload in payload()) {
        let want = expected_object(&payload);
        let mut plain = Vec::new();
        let facts = write_payload(&mut plain, PayloadRef::Grpc(&payload), Escape::None);
        prop_assert_eq!(facts.has_nul, payload_has_nul(&payload));
        let json = parse_json_exactly(std::str::from_utf8(&plain).expect("UTF-8")).expect("JSON");
        prop_assert!(json_identical(&json, &want), "{} != {}", json, want);
        let mut copy = Vec::new();
        let _ = write_payload(&mut copy, PayloadRef::Grpc(&payload), Escape::CopyText);
        let fields = copy_fields(&copy);
        prop_assert_eq!(fields.len(), 1, "an unescaped delimiter");
        prop_assert_eq!(fields[0].as_deref(), Some(&plain[..]));
    }

    /// Nesting as deep as a payload can arrive (`payload::MAX_PAYLOAD_DEPTH`), alternating
    /// arrays and objects.
    #[test]
    fn deep_nesting_reads_back(
        depth in 0usize..crate::payload::MAX_PAYLOAD_DEPTH,
        inner in leaf(),
        key in hazard_string(4),
    ) {
        let mut value = inner;
        for level in 0..depth {
            value = if level % 2 == 0 {
                list(vec![value])
            } else {
                object(HashMap::from([(key.clone(), value)]))
            };
        }
        let payload = HashMap::from([(key, value)]);
        let mut copy = Vec::new();
        let _ = write_payload(&mut copy, PayloadRef::Grpc(&payload), Escape::CopyText);
        let fields = copy_fields(&copy);
        let json = std::str::from_utf8(fields[0].as_deref().expect("not NULL"))
            .ok()
            .and_then(|text| parse_json_exactly(text).ok())
            .expect("JSON");
        prop_assert!(json_identical(&json, &expected_object(&payload)));
    }
}

proptest! {
    // Megabyte strings: fewer cases, so the property stays within a few seconds.
    #![proptest_config(ProptestConfig {
        cases: (ProptestConfig::default().cases / 16).max(1),
        ..ProptestConfig::default()
    })]

    /// Huge strings, as keys and values, read back whole.
    #[test]
    fn huge_strings_read_back(unit in hazard_string(16), repeat in 1usize..(1 << 16)) {
        let huge = unit.repeat(repeat);
        let payload = HashMap::from([(huge.clone(), kind(Kind::StringValue(huge)))]);
        let mut copy = Vec::new();
        let _ = write_payload(&mut copy, PayloadRef::Grpc(&payload), Escape::CopyText);
        prop_assert!(!copy.contains(&b'\n'));
        let fields = copy_fields(&copy);
        prop_assert_eq!(fields.len(), 1);
        let json = std::str::from_utf8(fields[0].as_deref().expect("not NULL"))
            .ok()
            .and_then(|text| parse_json_exactly(text).ok())
            .expect("JSON");
        prop_assert!(json_identical(&json, &expected_object(&payload)));
    }
}
