//! Nearest-neighbour search on the target: the PostgreSQL half of `verify --search`.
//!
//! A Qdrant distance maps to one pgvector ordering operator (`<=>` cosine, `<#>` negative inner
//! product for Dot and for sparse vectors, `<->` Euclid, `<+>` Manhattan), and an index answers
//! that operator only if its operator class is the matching one (`vector_cosine_ops`, …). Here we
//! find such an index in the catalog (with the HNSW settings it was built with), spell a query
//! vector as pgvector reads it, and write the ordered `LIMIT k` query that an application would
//! run through that index, filtered or not.

use postgres::GenericClient;

use crate::layout::{Distance, Hnsw, VectorShape, VectorSpec};
use crate::postgres::ident::quote_ident;
use crate::postgres::index::PGVECTOR_HNSW_DEFAULT;
use crate::source::qdrant::QueryVector;

/// A vector index the catalog shows on one column.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VectorIndex {
    pub name: String,
    /// `hnsw` or `ivfflat`.
    pub method: String,
    /// The operator class, which decides the distance the index orders by.
    pub opclass: String,
    /// The graph's settings, for an `hnsw` index (pgvector's defaults where its `WITH` said
    /// nothing).
    pub hnsw: Option<Hnsw>,
}

/// The pgvector ordering operator that ranks as Qdrant's distance does, and the suffix of the
/// operator classes that serve it; `None` for a vector Qdrant does not rank by one distance.
pub fn operator(spec: &VectorSpec) -> Option<(&'static str, &'static str)> {
    match (spec.shape, spec.distance) {
        // Qdrant scores sparse vectors by dot product.
        (VectorShape::Sparse, _) | (VectorShape::Dense, Some(Distance::Dot)) => {
            Some(("<#>", "_ip_ops"))
        }
        (VectorShape::Dense, Some(Distance::Cosine)) => Some(("<=>", "_cosine_ops")),
        (VectorShape::Dense, Some(Distance::Euclid)) => Some(("<->", "_l2_ops")),
        (VectorShape::Dense, Some(Distance::Manhattan)) => Some(("<+>", "_l1_ops")),
        (VectorShape::Multi, _) | (VectorShape::Dense, None) => None,
    }
}

/// The hnsw or ivfflat index on `column` of `schema.table` whose operator class ends with
/// `opclass_suffix`, if there is one.
pub fn vector_index(
    db: &mut impl GenericClient,
    schema: &str,
    table: &str,
    column: &str,
    opclass_suffix: &str,
) -> Result<Option<VectorIndex>, postgres::Error> {
    let rows = db.query(
        "SELECT i.relname::text, am.amname::text, opc.opcname::text,
                coalesce(i.reloptions, '{}')::text[]
           FROM pg_index x
           JOIN pg_class t ON t.oid = x.indrelid
           JOIN pg_namespace n ON n.oid = t.relnamespace
           JOIN pg_class i ON i.oid = x.indexrelid
           JOIN pg_am am ON am.oid = i.relam
           JOIN pg_attribute a ON a.attrelid = t.oid AND a.attnum = x.indkey[0]
           JOIN pg_opclass opc ON opc.oid = x.indclass[0]
          WHERE n.nspname = $1 AND t.relname = $2 AND a.attname = $3
            AND am.amname IN ('hnsw', 'ivfflat') AND x.indisvalid
          ORDER BY am.amname = 'hnsw' DESC, i.relname",
        &[&schema, &table, &column],
    )?;
    Ok(rows
        .iter()
        .map(|r| {
            let method: String = r.get(1);
            let options: Vec<String> = r.get(3);
            VectorIndex {
                name: r.get(0),
                hnsw: (method == "hnsw").then(|| hnsw_settings(&options)),
                method,
                opclass: r.get(2),
            }
        })
        .find(|index| index.opclass.ends_with(opclass_suffix)))
}

/// `m` and `ef_construction` from an hnsw index's `reloptions` (`{m=24,ef_construction=120}`),
/// pgvector's defaults for those not set.
fn hnsw_settings(options: &[String]) -> Hnsw {
    let mut hnsw = PGVECTOR_HNSW_DEFAULT;
    for option in options {
        match option.split_once('=') {
            Some(("m", v)) => hnsw.m = v.parse().unwrap_or(hnsw.m),
            Some(("ef_construction", v)) => {
                hnsw.ef_construct = v.parse().unwrap_or(hnsw.ef_construct);
            }
            _ => {}
        }
    }
    hnsw
}

/// The base type of a pgvector column (`vector`, `halfvec`, `sparsevec`) and its declared
/// dimension, from `format_type()`; `None` for any other type.
pub fn pgvector_type(sql_type: &str) -> Option<(&str, Option<u32>)> {
    let (base, dim) = match sql_type.split_once('(') {
        Some((base, rest)) => (base, rest.trim_end_matches(')').parse().ok()),
        None => (sql_type, None),
    };
    matches!(base, "vector" | "halfvec" | "sparsevec").then_some((base, dim))
}

/// `query` as pgvector's text input reads it: `[1.5,2,…]`, or for `sparsevec` `{i:v,…}/dim`
/// with 1-based indices. Floats are the shortest text of each f32, so the server parses the very
/// values.
pub fn query_literal(query: &QueryVector, sparse_dim: u32) -> String {
    let mut out = String::new();
    let mut float = ryu::Buffer::new();
    match query {
        QueryVector::Dense(values) => {
            out.push('[');
            for (i, v) in values.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(float.format(*v));
            }
            out.push(']');
        }
        QueryVector::Sparse { indices, values } => {
            let mut pairs: Vec<(u32, f32)> = indices
                .iter()
                .copied()
                .zip(values.iter().copied())
                .collect();
            pairs.sort_by_key(|p| p.0);
            out.push('{');
            for (i, (index, value)) in pairs.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(itoa::Buffer::new().format(u64::from(*index) + 1));
                out.push(':');
                out.push_str(float.format(*value));
            }
            out.push_str("}/");
            out.push_str(itoa::Buffer::new().format(sparse_dim));
        }
    }
    out
}

/// The k-nearest query an application would run: ids ordered by `operator` against `$1`
/// (the literal, cast to `base_type`), `LIMIT $2`; with `filter`, only the rows it keeps that
/// have the vector (Qdrant searches a named vector among the points that have it, and a
/// filter may keep fewer points than K).
pub fn knn_sql(
    table: &str,
    column: &str,
    operator: &str,
    base_type: &str,
    filter: Option<&str>,
) -> String {
    let column = quote_ident(column);
    let filter = filter
        .map(|condition| format!(" WHERE {condition} AND {column} IS NOT NULL"))
        .unwrap_or_default();
    format!(
        "SELECT id::text FROM {table}{filter} ORDER BY {column} {operator} \
         $1::text::{base_type} LIMIT $2"
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::layout::{Datatype, Hnsw};

    fn spec(shape: VectorShape, distance: Option<Distance>) -> VectorSpec {
        VectorSpec {
            name: "v".into(),
            shape,
            dim: Some(3),
            datatype: Datatype::Float32,
            distance,
            hnsw: Some(Hnsw {
                m: 16,
                ef_construct: 100,
            }),
        }
    }

    #[test]
    fn each_distance_has_its_operator_and_opclass() {
        let dense = |d| operator(&spec(VectorShape::Dense, Some(d)));
        assert_eq!(dense(Distance::Cosine), Some(("<=>", "_cosine_ops")));
        assert_eq!(dense(Distance::Dot), Some(("<#>", "_ip_ops")));
        assert_eq!(dense(Distance::Euclid), Some(("<->", "_l2_ops")));
        assert_eq!(dense(Distance::Manhattan), Some(("<+>", "_l1_ops")));
        assert_eq!(
            operator(&spec(VectorShape::Sparse, None)),
            Some(("<#>", "_ip_ops"))
        );
        assert_eq!(
            operator(&spec(VectorShape::Multi, Some(Distance::Cosine))),
            None
        );
    }

    #[test]
    fn literals_are_what_pgvector_reads() {
        assert_eq!(
            query_literal(&QueryVector::Dense(vec![0.1, -2.0, 1e-7]), 0),
            "[0.1,-2.0,1e-7]"
        );
        let sparse = QueryVector::Sparse {
            indices: vec![9, 0],
            values: vec![0.5, 2.0],
        };
        assert_eq!(query_literal(&sparse, 30), "{1:2.0,10:0.5}/30");
        assert_eq!(pgvector_type("halfvec(128)"), Some(("halfvec", Some(128))));
        assert_eq!(pgvector_type("sparsevec"), Some(("sparsevec", None)));
        assert_eq!(pgvector_type("real[]"), None);
    }

    #[test]
    fn hnsw_settings_read_from_reloptions_with_pgvectors_defaults() {
        let options = |o: &[&str]| o.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(
            hnsw_settings(&options(&["m=24", "ef_construction=120"])),
            Hnsw {
                m: 24,
                ef_construct: 120
            }
        );
        assert_eq!(hnsw_settings(&options(&[])), PGVECTOR_HNSW_DEFAULT);
    }

    #[test]
    fn a_filtered_search_keeps_the_rows_that_have_the_vector() {
        assert_eq!(
            knn_sql("s.t", "v", "<->", "vector", Some("(x)")),
            "SELECT id::text FROM s.t WHERE (x) AND v IS NOT NULL ORDER BY v <-> \
             $1::text::vector LIMIT $2"
        );
    }
}
