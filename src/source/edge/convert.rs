//! Engine records as a Qdrant server sends them over gRPC: payload JSON with integers and
//! doubles kept apart, vectors in the `vector` oneof, exact payloads beside them.

use std::collections::HashMap;

use qdrant_client::qdrant::{self as grpc, value::Kind, vector_output, vectors_output};
use qdrant_edge::{Payload, Record, VectorInternal, VectorStructInternal};

use crate::payload::{ExactJson, ExactPayloads, MAX_PAYLOAD_DEPTH, json_holds_wide_number};

use super::{EdgeError, key_from_edge};

/// A JSON value as the server puts it on the wire.
pub fn json_to_grpc(value: serde_json::Value) -> grpc::Value {
    let kind = match value {
        serde_json::Value::Null => Kind::NullValue(0),
        serde_json::Value::Bool(b) => Kind::BoolValue(b),
        serde_json::Value::Number(n) => match n.as_i64() {
            Some(i) => Kind::IntegerValue(i),
            // `as_f64` is `None` only for arbitrary-precision text beyond f64; JSON numbers that
            // reach the engine are finite, so the real server's `unwrap` never fires there.
            None => Kind::DoubleValue(n.as_f64().unwrap_or(f64::NAN)),
        },
        serde_json::Value::String(s) => Kind::StringValue(s),
        serde_json::Value::Array(items) => Kind::ListValue(grpc::ListValue {
            values: items.into_iter().map(json_to_grpc).collect(),
        }),
        serde_json::Value::Object(map) => Kind::StructValue(grpc::Struct {
            fields: map.into_iter().map(|(k, v)| (k, json_to_grpc(v))).collect(),
        }),
    };
    grpc::Value { kind: Some(kind) }
}

/// A point's payload as the server sends it.
pub fn payload_to_grpc(payload: Payload) -> HashMap<String, grpc::Value> {
    payload
        .0
        .into_iter()
        .map(|(k, v)| (k, json_to_grpc(v)))
        .collect()
}

fn vector_to_grpc(vector: VectorInternal) -> grpc::VectorOutput {
    let vector = match vector {
        VectorInternal::Dense(data) => vector_output::Vector::Dense(grpc::DenseVector { data }),
        VectorInternal::Sparse(sparse) => vector_output::Vector::Sparse(grpc::SparseVector {
            values: sparse.values,
            indices: sparse.indices,
        }),
        VectorInternal::MultiDense(multi) => {
            let dim = multi.dim.max(1);
            vector_output::Vector::MultiDense(grpc::MultiDenseVector {
                vectors: multi
                    .flattened_vectors
                    .chunks(dim)
                    .map(|row| grpc::DenseVector { data: row.to_vec() })
                    .collect(),
            })
        }
    };
    grpc::VectorOutput {
        vector: Some(vector),
        ..Default::default()
    }
}

/// A point's vectors as the server sends them: the unnamed vector alone, or the named map.
pub fn vectors_to_grpc(vectors: VectorStructInternal) -> grpc::VectorsOutput {
    let options = match vectors {
        VectorStructInternal::Single(dense) => {
            vectors_output::VectorsOptions::Vector(vector_to_grpc(VectorInternal::Dense(dense)))
        }
        VectorStructInternal::MultiDense(multi) => vectors_output::VectorsOptions::Vector(
            vector_to_grpc(VectorInternal::MultiDense(multi)),
        ),
        VectorStructInternal::Named(named) => {
            vectors_output::VectorsOptions::Vectors(grpc::NamedVectorsOutput {
                vectors: named
                    .into_iter()
                    .map(|(k, v)| (k, vector_to_grpc(v)))
                    .collect(),
            })
        }
    };
    grpc::VectorsOutput {
        vectors_options: Some(options),
    }
}

/// Engine records as a reader takes them: each as the server's `RetrievedPoint`, and, where
/// that gRPC payload holds a double where bent u64 integers land (an integer above `i64::MAX`,
/// which [`payload_to_grpc`] sends as the nearest double as the server does, or a genuine
/// float there), the payload exact too — as the live source reads those again over REST.
pub fn records_to_points(
    records: Vec<Record>,
) -> Result<(Vec<grpc::RetrievedPoint>, ExactPayloads), EdgeError> {
    let mut exact = Vec::new();
    let mut points = Vec::with_capacity(records.len());
    for (i, record) in records.into_iter().enumerate() {
        if let Some(payload) = &record.payload
            && payload.0.values().any(json_holds_wide_number)
        {
            // serde_json writes numbers as Qdrant's REST API does: a u64 whole, floats in
            // their shortest form.
            let text = serde_json::to_string(&payload.0)
                .map_err(|e| EdgeError::BadValue(e.to_string()))?;
            let json = ExactJson::parse(&text, MAX_PAYLOAD_DEPTH)
                .map_err(|e| EdgeError::BadValue(e.to_string()))?;
            exact.push((i, json));
        }
        points.push(record_to_grpc(record));
    }
    Ok((points, ExactPayloads::new(exact)))
}

/// An engine record as the server's `RetrievedPoint`: payload always present (empty when not
/// asked for), vectors only when asked for.
pub fn record_to_grpc(record: Record) -> grpc::RetrievedPoint {
    grpc::RetrievedPoint {
        id: Some(key_from_edge(record.id).to_proto()),
        payload: record.payload.map(payload_to_grpc).unwrap_or_default(),
        vectors: record.vector.map(vectors_to_grpc),
        shard_key: None,
        order_value: None,
    }
}

#[cfg(test)]
mod tests {
    use qdrant_edge::Vector;

    use super::*;

    #[test]
    fn numbers_keep_their_kind_like_the_server() {
        let json: serde_json::Value =
            serde_json::from_str(r#"[1, -1, 1.0, 0.1, 18446744073709551615, 9223372036854775807]"#)
                .unwrap();
        let Some(Kind::ListValue(list)) = json_to_grpc(json).kind else {
            panic!("not a list")
        };
        let kinds: Vec<_> = list.values.into_iter().map(|v| v.kind.unwrap()).collect();
        assert_eq!(
            kinds,
            vec![
                Kind::IntegerValue(1),
                Kind::IntegerValue(-1),
                Kind::DoubleValue(1.0),
                Kind::DoubleValue(0.1),
                // Beyond i64: the server sends a double.
                Kind::DoubleValue(18446744073709551615.0),
                Kind::IntegerValue(i64::MAX),
            ]
        );
    }

    #[test]
    fn vectors_use_the_oneof_only() {
        let out = vectors_to_grpc(VectorStructInternal::Named(HashMap::from([(
            "m".to_string(),
            Vector::new_multi(vec![vec![1.0, 2.0], vec![3.0, 4.0]])
                .unwrap()
                .0,
        )])));
        let Some(vectors_output::VectorsOptions::Vectors(named)) = out.vectors_options else {
            panic!("not named")
        };
        #[allow(deprecated)]
        let grpc::VectorOutput {
            data,
            indices,
            vectors_count,
            vector,
        } = named.vectors["m"].clone();
        assert!(data.is_empty() && indices.is_none() && vectors_count.is_none());
        let Some(vector_output::Vector::MultiDense(multi)) = vector else {
            panic!("not multi")
        };
        let rows: Vec<_> = multi.vectors.into_iter().map(|v| v.data).collect();
        assert_eq!(rows, vec![vec![1.0, 2.0], vec![3.0, 4.0]]);
    }
}
