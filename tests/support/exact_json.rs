//! Reading JSON back for the tests, with nothing forgiven: floats read correctly rounded (which
//! serde_json's own reading is not in this build), and an equality where an integer never
//! equals a float and floats compare bit for bit. Used by the integration tests and, through a
//! `#[path]` include, by the crate's own unit tests (`encode::fixtures`).

use qdrant2pg::payload::exact_json::{JsonError, JsonKind, JsonRef};
use qdrant2pg::payload::{ExactJson, MAX_PAYLOAD_DEPTH};
use serde_json::Value as Json;

/// Parses JSON text into serde_json values with every float read correctly rounded, which
/// serde_json's own reading is not in this build (see Cargo.toml): what the tests read tables and
/// REST answers back with before [`json_identical`]. At most twice
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
