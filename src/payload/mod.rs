//! A point's payload as the pipeline carries it: the gRPC values Qdrant sent, or — for the
//! points whose values gRPC cannot carry exactly — the payload as Qdrant holds it, read again
//! from its REST API or straight from a snapshot's JSON ([`ExactJson`]).
//!
//! gRPC's `Value` has no unsigned integer: Qdrant sends a payload integer above `i64::MAX` (its
//! REST API keeps it as a u64) as the nearest double, which lands in [2^63, 2^64]. The source
//! layer looks for such doubles in every page ([`holds_wide_double`]) and replaces those
//! points' payloads with exact ones ([`ExactPayloads`]); encoders and `verify` then read every
//! payload through [`PayloadRef`], whichever way it came.
//!
//! Depth: a payload nests at most [`MAX_PAYLOAD_DEPTH`] levels, checked where payloads enter
//! (the gRPC wire, REST answers, snapshots), so every recursive walk after that is shallow.

pub mod exact_json;

use std::collections::HashMap;

use qdrant_client::qdrant::value::Kind;
use qdrant_client::qdrant::{RetrievedPoint, Value};

pub use exact_json::{ExactJson, JsonKind, JsonRef};

/// The deepest payload read, the payload object itself being level 1 (`{"a": {"b": []}}` is 3
/// deep). Qdrant cannot hold a deeper one: it reads JSON (request bodies, and its own stored
/// payloads) with serde_json, which stops at 128 nested levels, so a stored payload is at most
/// 127 deep (the genuine 1.18.3 server accepts 126 through `set_payload` and 124 through an
/// upsert, whose body nests the payload two and three levels down). Deeper input is refused
/// where it enters, naming the point, instead of being walked recursively.
pub const MAX_PAYLOAD_DEPTH: usize = 127;

/// One point's payload, as the source delivered it.
#[derive(Clone, Copy, Debug)]
pub enum PayloadRef<'a> {
    /// Qdrant's gRPC values: exact, unless [`holds_wide_double`] says otherwise.
    Grpc(&'a HashMap<String, Value>),
    /// The payload as Qdrant holds it (REST, or a snapshot's JSON): always an object.
    Exact(JsonRef<'a>),
}

/// A point as the encoders and `verify` take it: its gRPC form, and the payload to use for it.
#[derive(Clone, Copy, Debug)]
pub struct PointRef<'a> {
    pub point: &'a RetrievedPoint,
    pub payload: PayloadRef<'a>,
}

impl<'a> From<&'a RetrievedPoint> for PointRef<'a> {
    /// A point whose gRPC payload is exact.
    fn from(point: &'a RetrievedPoint) -> Self {
        PointRef {
            point,
            payload: PayloadRef::Grpc(&point.payload),
        }
    }
}

/// The payloads of a page that were read exactly, by the point's index in the page.
#[derive(Debug, Default)]
pub struct ExactPayloads(Vec<(usize, ExactJson)>);

impl ExactPayloads {
    /// `entries` must be in increasing index order.
    pub fn new(entries: Vec<(usize, ExactJson)>) -> ExactPayloads {
        debug_assert!(entries.windows(2).all(|w| w[0].0 < w[1].0));
        ExactPayloads(entries)
    }

    /// The payload of the point at `index` of the page.
    pub fn payload<'a>(&'a self, index: usize, point: &'a RetrievedPoint) -> PayloadRef<'a> {
        match self.0.binary_search_by_key(&index, |(i, _)| *i) {
            Ok(at) => PayloadRef::Exact(self.0[at].1.root()),
            Err(_) => PayloadRef::Grpc(&point.payload),
        }
    }

    /// The page's points, each with the payload to use for it.
    pub fn points<'a>(
        &'a self,
        points: &'a [RetrievedPoint],
    ) -> impl Iterator<Item = PointRef<'a>> + 'a {
        points.iter().enumerate().map(|(i, point)| PointRef {
            point,
            payload: self.payload(i, point),
        })
    }

    /// Drops the payloads of points at `len` and beyond (the page was cut there).
    pub fn truncate(&mut self, len: usize) {
        self.0.retain(|(i, _)| *i < len);
    }
}

/// Whether a payload double may be an integer above `i64::MAX` that reached us rounded.
///
/// Qdrant keeps a JSON integer as i64 or u64 and converts a u64 above `i64::MAX` into the
/// nearest double when it answers over gRPC (`json_to_proto` in its `api` crate). Such a value
/// lands in [2^63, 2^64] (`u64::MAX` rounds up to 2^64). Integers outside that range are not
/// affected: anything below `i64::MIN` or above `u64::MAX` is already a double inside Qdrant. A
/// genuine float in the range (say `1e19`) looks the same, which is why such payloads are read
/// again rather than guessed at.
pub fn maybe_bent_integer(d: f64) -> bool {
    const TWO_POW_63: f64 = 9_223_372_036_854_775_808.0;
    (TWO_POW_63..=2.0 * TWO_POW_63).contains(&d)
}

/// Whether a gRPC payload holds a double where Qdrant's bent u64 integers land.
pub fn holds_wide_double(payload: &HashMap<String, Value>) -> bool {
    payload.values().any(value_holds_wide_double)
}

fn value_holds_wide_double(value: &Value) -> bool {
    match &value.kind {
        Some(Kind::DoubleValue(d)) => maybe_bent_integer(*d),
        Some(Kind::StructValue(s)) => holds_wide_double(&s.fields),
        Some(Kind::ListValue(list)) => list.values.iter().any(value_holds_wide_double),
        _ => false,
    }
}

/// Whether a JSON payload value holds a number that [`holds_wide_double`] would find once
/// converted to gRPC values as Qdrant converts them (an integer above `i64::MAX` becomes the
/// nearest double).
pub fn json_holds_wide_number(value: &serde_json::Value) -> bool {
    match value {
        serde_json::Value::Number(n) => {
            n.as_i64().is_none() && n.as_f64().is_some_and(maybe_bent_integer)
        }
        serde_json::Value::Array(items) => items.iter().any(json_holds_wide_number),
        serde_json::Value::Object(map) => map.values().any(json_holds_wide_number),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use qdrant_client::qdrant::{ListValue, Struct};

    use super::*;

    fn v(kind: Kind) -> Value {
        Value { kind: Some(kind) }
    }

    #[test]
    fn doubles_where_a_u64_would_land_are_found_at_any_depth() {
        // What Qdrant's gRPC sends for these u64 payload integers.
        for bent in [i64::MAX as u64 + 1, u64::MAX - 1, u64::MAX] {
            assert!(maybe_bent_integer(bent as f64), "{bent}");
        }
        for plain in [
            i64::MAX as f64 / 4.0,
            -(2f64.powi(63)),
            2f64.powi(65),
            1e308,
            0.5,
        ] {
            assert!(!maybe_bent_integer(plain), "{plain}");
        }
        let nested = v(Kind::StructValue(Struct {
            fields: HashMap::from([(
                "k".to_owned(),
                v(Kind::ListValue(ListValue {
                    values: vec![v(Kind::DoubleValue(u64::MAX as f64))],
                })),
            )]),
        }));
        assert!(holds_wide_double(&HashMap::from([(
            "a".to_owned(),
            nested
        )])));
        let plain = v(Kind::IntegerValue(i64::MAX));
        assert!(!holds_wide_double(&HashMap::from([(
            "a".to_owned(),
            plain
        )])));
        for (text, wide) in [
            (r#"{"a": [1, {"b": 18446744073709551615}]}"#, true),
            (r#"[1e19]"#, true),
            (
                r#"[-9223372036854775808, 9223372036854775807, 1e20, 0.5]"#,
                false,
            ),
        ] {
            let json: serde_json::Value = serde_json::from_str(text).unwrap();
            assert_eq!(json_holds_wide_number(&json), wide, "{text}");
        }
    }

    #[test]
    fn exact_payloads_replace_only_their_points() {
        let points = vec![RetrievedPoint::default(); 3];
        let doc = ExactJson::parse(r#"{"u": 18446744073709551615}"#, 2).unwrap();
        let mut exact = ExactPayloads::new(vec![(1, doc)]);
        assert!(matches!(exact.payload(0, &points[0]), PayloadRef::Grpc(_)));
        assert!(matches!(exact.payload(1, &points[1]), PayloadRef::Exact(_)));
        exact.truncate(1);
        assert!(matches!(exact.payload(1, &points[1]), PayloadRef::Grpc(_)));
    }
}
