//! `verify --search --filter`: a Qdrant filter, as the application sends it, in both engines.
//!
//! Filtered search is where an HNSW migration most often loses results: Qdrant filters inside
//! its graph walk, pgvector after it (0.8 goes on walking with `hnsw.iterative_scan`). So the
//! filter a user gives in Qdrant's JSON is read once into [`Filter`] and written twice: back to
//! Qdrant's gRPC form ([`Filter::to_grpc`]), and as a SQL condition on the payload column
//! ([`Filter::to_sql`]) through the very expressions `index` builds payload indexes on
//! ([`payload_value`]), so that the planner can use those indexes.
//!
//! What is translated: `match` on a keyword, an integer or a bool (`value`, or `any` of several
//! keywords or integers), `range` on numbers (`gt`, `gte`, `lt`, `lte`), and `must` / `should` /
//! `must_not`, nested. A point without the field matches no `match` and no `range`, and so
//! matches their `must_not` (SQL's NULL, read with `IS NOT TRUE`). Anything else — geo, full
//! text, `except`, `is_empty`, `has_id`, nested keys, `min_should` — is [`Untranslatable`],
//! named, and the filter skipped: never silently dropped. One difference stays, which the
//! caller catches by counting both sides: Qdrant matches a field holding an array when any
//! element matches, the SQL compares the field's whole value.

use qdrant_client::qdrant::{self as grpc, condition::ConditionOneOf, r#match::MatchValue};
use serde_json::{Map, Value};

use crate::layout::PayloadType;
use crate::postgres::ident::quote_literal;
use crate::postgres::index::{PayloadValue, payload_value};

/// A payload filter both engines can apply.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Filter {
    must: Vec<Condition>,
    should: Vec<Condition>,
    must_not: Vec<Condition>,
}

#[derive(Clone, Debug, PartialEq)]
enum Condition {
    /// The field is one of these keywords.
    Keyword {
        key: String,
        any: Vec<String>,
    },
    /// The field is one of these integers.
    Integer {
        key: String,
        any: Vec<i64>,
    },
    Bool {
        key: String,
        value: bool,
    },
    Range {
        key: String,
        bounds: Bounds,
    },
    Filter(Filter),
}

#[derive(Clone, Copy, Debug, Default, PartialEq)]
struct Bounds {
    gt: Option<f64>,
    gte: Option<f64>,
    lt: Option<f64>,
    lte: Option<f64>,
}

/// Why a filter has no SQL form here (it is then named and skipped).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{0} is not translated to SQL")]
pub struct Untranslatable(String);

impl Filter {
    /// Reads a filter in Qdrant's JSON form (`{"must": [...], "should": [...], "must_not":
    /// [...]}`, each a condition or a list of them).
    pub fn from_json(json: &Value) -> Result<Filter, Untranslatable> {
        let Value::Object(object) = json else {
            return Err(Untranslatable(format!(
                "a filter that is not an object ({json})"
            )));
        };
        let mut filter = Filter::default();
        for (clause, conditions) in object {
            let list = match clause.as_str() {
                "must" => &mut filter.must,
                "should" => &mut filter.should,
                "must_not" => &mut filter.must_not,
                other => return Err(Untranslatable(format!("{other:?}"))),
            };
            match conditions {
                Value::Array(items) => {
                    for item in items {
                        list.push(Condition::from_json(item)?);
                    }
                }
                Value::Null => {}
                single => list.push(Condition::from_json(single)?),
            }
        }
        Ok(filter)
    }

    /// The filter as Qdrant's gRPC API takes it.
    pub fn to_grpc(&self) -> grpc::Filter {
        let conditions = |list: &[Condition]| list.iter().map(Condition::to_grpc).collect();
        grpc::Filter {
            must: conditions(&self.must),
            should: conditions(&self.should),
            must_not: conditions(&self.must_not),
            min_should: None,
        }
    }

    /// A SQL condition on the `payload` column (of `payload_type`) that keeps the points the
    /// filter keeps.
    pub fn to_sql(&self, payload_type: PayloadType) -> String {
        let sql = |list: &[Condition]| -> Vec<String> {
            list.iter().map(|c| c.to_sql(payload_type)).collect()
        };
        let mut parts = sql(&self.must);
        if !self.should.is_empty() {
            parts.push(format!("({})", sql(&self.should).join(" OR ")));
        }
        if !self.must_not.is_empty() {
            parts.push(format!(
                "({}) IS NOT TRUE",
                sql(&self.must_not).join(" OR ")
            ));
        }
        match parts.len() {
            0 => "TRUE".to_owned(),
            _ => format!("({})", parts.join(" AND ")),
        }
    }
}

impl Condition {
    fn from_json(json: &Value) -> Result<Condition, Untranslatable> {
        let Value::Object(object) = json else {
            return Err(Untranslatable(format!(
                "a condition that is not an object ({json})"
            )));
        };
        let Some(key) = object.get("key") else {
            // A condition without a key is a nested filter, or one of the kinds that take none.
            return match object
                .keys()
                .find(|k| !["must", "should", "must_not"].contains(&k.as_str()))
            {
                Some(other) => Err(Untranslatable(format!("{other:?}"))),
                None => Filter::from_json(json).map(Condition::Filter),
            };
        };
        let Some(key) = key.as_str() else {
            return Err(Untranslatable(format!(
                "a key that is not a string ({key})"
            )));
        };
        if key.contains(['.', '[']) {
            return Err(Untranslatable(format!("nested key {key:?}")));
        }
        let key = key.to_owned();
        let mut kinds = object.iter().filter(|(k, _)| k.as_str() != "key");
        let (Some((kind, value)), None) = (kinds.next(), kinds.next()) else {
            return Err(Untranslatable(format!(
                "a condition on {key:?} with no single kind"
            )));
        };
        match (kind.as_str(), value) {
            ("match", Value::Object(m)) => Condition::matching(key, m),
            ("range", Value::Object(r)) => Ok(Condition::Range {
                bounds: Bounds::from_json(&key, r)?,
                key,
            }),
            (other, _) => Err(Untranslatable(format!("{other:?} on {key:?}"))),
        }
    }

    fn matching(key: String, m: &Map<String, Value>) -> Result<Condition, Untranslatable> {
        let unsupported = |what: &str| Untranslatable(format!("\"match\" {what} on {key:?}"));
        if m.len() != 1 {
            return Err(unsupported("with several kinds"));
        }
        match m.iter().next() {
            Some((k, Value::String(s))) if k == "value" => Ok(Condition::Keyword {
                any: vec![s.clone()],
                key,
            }),
            Some((k, Value::Bool(b))) if k == "value" => Ok(Condition::Bool { value: *b, key }),
            Some((k, Value::Number(n))) if k == "value" => match n.as_i64() {
                Some(i) => Ok(Condition::Integer { any: vec![i], key }),
                None => Err(unsupported(&format!("of the number {n}"))),
            },
            Some((k, Value::Array(items))) if k == "any" => {
                if let Some(any) = items
                    .iter()
                    .map(|v| v.as_str().map(str::to_owned))
                    .collect()
                {
                    Ok(Condition::Keyword { any, key })
                } else if let Some(any) = items.iter().map(Value::as_i64).collect() {
                    Ok(Condition::Integer { any, key })
                } else {
                    Err(unsupported("\"any\" of mixed or other values"))
                }
            }
            Some((k, _)) => Err(unsupported(&format!("{k:?}"))),
            None => Err(unsupported("with no value")),
        }
    }

    fn to_grpc(&self) -> grpc::Condition {
        let field = |key: &str, value: MatchValue| grpc::FieldCondition {
            key: key.to_owned(),
            r#match: Some(grpc::Match {
                match_value: Some(value),
            }),
            ..Default::default()
        };
        let one_of = match self {
            Condition::Keyword { key, any } => ConditionOneOf::Field(field(
                key,
                match any.as_slice() {
                    [one] => MatchValue::Keyword(one.clone()),
                    many => MatchValue::Keywords(grpc::RepeatedStrings {
                        strings: many.to_vec(),
                    }),
                },
            )),
            Condition::Integer { key, any } => ConditionOneOf::Field(field(
                key,
                match any.as_slice() {
                    [one] => MatchValue::Integer(*one),
                    many => MatchValue::Integers(grpc::RepeatedIntegers {
                        integers: many.to_vec(),
                    }),
                },
            )),
            Condition::Bool { key, value } => {
                ConditionOneOf::Field(field(key, MatchValue::Boolean(*value)))
            }
            Condition::Range { key, bounds } => ConditionOneOf::Field(grpc::FieldCondition {
                key: key.clone(),
                range: Some(grpc::Range {
                    lt: bounds.lt,
                    gt: bounds.gt,
                    gte: bounds.gte,
                    lte: bounds.lte,
                }),
                ..Default::default()
            }),
            Condition::Filter(filter) => ConditionOneOf::Filter(filter.to_grpc()),
        };
        grpc::Condition {
            condition_one_of: Some(one_of),
        }
    }

    fn to_sql(&self, payload_type: PayloadType) -> String {
        let value = |key: &str, kind| payload_value(key, kind, payload_type);
        let one_of = |expression: String, literals: Vec<String>| match literals.as_slice() {
            [one] => format!("{expression} = {one}"),
            many => format!("{expression} IN ({})", many.join(", ")),
        };
        match self {
            Condition::Keyword { key, any } => one_of(
                value(key, PayloadValue::Text),
                any.iter().map(|s| quote_literal(s)).collect(),
            ),
            Condition::Integer { key, any } => one_of(
                value(key, PayloadValue::Number),
                any.iter().map(i64::to_string).collect(),
            ),
            Condition::Bool { key, value: b } => {
                format!("{} = {b}", value(key, PayloadValue::Boolean))
            }
            Condition::Range { key, bounds } => {
                let number = value(key, PayloadValue::Number);
                let mut float = ryu::Buffer::new();
                let mut parts = Vec::new();
                for (op, bound) in [
                    (">", bounds.gt),
                    (">=", bounds.gte),
                    ("<", bounds.lt),
                    ("<=", bounds.lte),
                ] {
                    if let Some(bound) = bound {
                        parts.push(format!("{number} {op} {}", float.format(bound)));
                    }
                }
                // A range with no bound keeps every number.
                if parts.is_empty() {
                    parts.push(format!("{number} IS NOT NULL"));
                }
                format!("({})", parts.join(" AND "))
            }
            Condition::Filter(filter) => filter.to_sql(payload_type),
        }
    }
}

impl Bounds {
    fn from_json(key: &str, range: &Map<String, Value>) -> Result<Bounds, Untranslatable> {
        let mut bounds = Bounds::default();
        for (name, value) in range {
            let Some(number) = value.as_f64().filter(|n| n.is_finite()) else {
                // Qdrant reads a range of strings as a datetime range.
                return Err(Untranslatable(format!(
                    "\"range\" on {key:?} with {name} {value} (not a number)"
                )));
            };
            let slot = match name.as_str() {
                "gt" => &mut bounds.gt,
                "gte" => &mut bounds.gte,
                "lt" => &mut bounds.lt,
                "lte" => &mut bounds.lte,
                other => {
                    return Err(Untranslatable(format!(
                        "\"range\" on {key:?} with {other:?}"
                    )));
                }
            };
            *slot = Some(number);
        }
        Ok(bounds)
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn sql(filter: Value, payload_type: PayloadType) -> String {
        Filter::from_json(&filter)
            .unwrap_or_else(|e| panic!("{filter}: {e}"))
            .to_sql(payload_type)
    }

    #[test]
    fn conditions_read_the_payload_through_the_index_expressions() {
        let keyword = payload_value("city", PayloadValue::Text, PayloadType::Jsonb);
        let number = payload_value("n", PayloadValue::Number, PayloadType::Jsonb);
        let flag = payload_value("ok", PayloadValue::Boolean, PayloadType::Jsonb);
        assert_eq!(keyword, "(payload->>'city')");
        let filter = json!({
            "must": [
                {"key": "city", "match": {"value": "O'Hare"}},
                {"key": "n", "range": {"gte": 1, "lt": 2.5}}
            ],
            "should": [
                {"key": "n", "match": {"any": [1, 2]}},
                {"key": "ok", "match": {"value": true}}
            ],
            "must_not": {"key": "city", "match": {"any": ["a", "b"]}}
        });
        assert_eq!(
            sql(filter, PayloadType::Jsonb),
            format!(
                "({keyword} = 'O''Hare' AND ({number} >= 1.0 AND {number} < 2.5) AND \
                 ({number} IN (1, 2) OR {flag} = true) AND ({keyword} IN ('a', 'b')) IS NOT TRUE)"
            )
        );
        // A json column guards documents holding \u0000, as its indexes do.
        assert!(
            sql(
                json!({"must": {"key": "n", "match": {"value": 3}}}),
                PayloadType::Json
            )
            .contains("strpos(payload::text")
        );
        assert_eq!(sql(json!({}), PayloadType::Json), "TRUE");
        assert_eq!(
            sql(
                json!({"must": [{"must_not": [{"key": "ok", "match": {"value": false}}]}]}),
                PayloadType::Jsonb
            ),
            format!("((({flag} = false) IS NOT TRUE))")
        );
    }

    #[test]
    fn the_grpc_form_says_what_the_json_said() {
        let filter = Filter::from_json(&json!({
            "must": [{"key": "kw", "match": {"value": "x"}}],
            "must_not": [{"key": "n", "range": {"gt": 5}}],
            "should": [{"key": "n", "match": {"any": [1, 2]}}]
        }))
        .expect("translatable");
        let grpc = filter.to_grpc();
        let field = |c: &grpc::Condition| match &c.condition_one_of {
            Some(ConditionOneOf::Field(f)) => f.clone(),
            other => panic!("{other:?}"),
        };
        assert_eq!(
            field(&grpc.must[0]).r#match.and_then(|m| m.match_value),
            Some(MatchValue::Keyword("x".into()))
        );
        assert_eq!(field(&grpc.must_not[0]).range.and_then(|r| r.gt), Some(5.0));
        assert_eq!(
            field(&grpc.should[0]).r#match.and_then(|m| m.match_value),
            Some(MatchValue::Integers(grpc::RepeatedIntegers {
                integers: vec![1, 2]
            }))
        );
    }

    #[test]
    fn what_has_no_translation_is_named() {
        for (filter, named) in [
            (
                json!({"must": [{"key": "loc", "geo_radius": {}}]}),
                "\"geo_radius\" on \"loc\"",
            ),
            (
                json!({"must": [{"key": "t", "match": {"text": "x"}}]}),
                "\"match\" \"text\" on \"t\"",
            ),
            (
                json!({"must": [{"key": "a.b", "match": {"value": 1}}]}),
                "nested key \"a.b\"",
            ),
            (json!({"must": [{"has_id": [1]}]}), "\"has_id\""),
            (json!({"min_should": {}}), "\"min_should\""),
            (
                json!({"must": [{"key": "d", "range": {"gt": "2024-01-01"}}]}),
                "not a number",
            ),
            (
                json!({"must": [{"key": "n", "match": {"except": [1]}}]}),
                "\"except\"",
            ),
        ] {
            let error = Filter::from_json(&filter)
                .expect_err("untranslatable")
                .to_string();
            assert!(error.contains(named), "{filter}: {error}");
        }
    }
}
