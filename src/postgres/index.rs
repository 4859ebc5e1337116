//! Index DDL from the Qdrant collection's configuration (the guide's step 4).
//!
//! Vector indexes follow each vector's distance and HNSW settings (a vector's own `m` /
//! `ef_construct` override the collection's): AnalyticDB's `ann` access method, or pgvector's
//! `hnsw` with the operator class of the distance and the column's type. Payload indexes follow
//! the payload schema. Expression indexes are guarded so that a value of another JSON type (which
//! Qdrant allows beside an index) yields NULL instead of failing the build. Where a dialect has
//! no equivalent, the plan says so and skips that index.
//!
//! The server decides the rest ([`IndexFeatures`], asked once): `IF NOT EXISTS` where it exists
//! (PostgreSQL 9.5+; Greenplum 6 and AnalyticDB 6 are 9.4 underneath, so `index` skips indexes
//! already in the catalog by name — which it does everywhere, so a re-run only builds what is
//! missing), and the `ann` index only where AnalyticDB's access method is installed (an
//! open-source Greenplum has none: the vector indexes are skipped, saying so, and the id and
//! payload indexes are built).

use std::collections::BTreeMap;

use qdrant_client::qdrant::{PayloadSchemaInfo, PayloadSchemaType};
use xxhash_rust::xxh3::xxh3_64;

use super::catalog::{access_method_exists, server_version_num};
use super::ddl::Dialect;
use super::ident::{qualified, quote_ident, quote_literal};
use crate::layout::{Distance, Hnsw, PayloadType, VectorShape, VectorSpec};

/// PostgreSQL truncates identifiers to 63 bytes.
const MAX_IDENT: usize = 63;

/// What pgvector's HNSW takes when an index says nothing (its `m` and `ef_construction`
/// defaults).
pub const PGVECTOR_HNSW_DEFAULT: Hnsw = Hnsw {
    m: 16,
    ef_construct: 64,
};

/// `index --m N --ef-construction N`: HNSW settings that replace the collection's in every
/// vector index built (for a graph that answers with more recall than the collection's own
/// settings give in pgvector, as `verify --search` measures).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct HnswOverride {
    pub m: Option<u64>,
    pub ef_construction: Option<u64>,
}

impl HnswOverride {
    /// `hnsw` (the collection's, if it sets any) with the overrides applied; a value neither
    /// gives is pgvector's default. `None` when neither sets anything: the index then takes
    /// the access method's own defaults.
    pub fn apply(self, hnsw: Option<Hnsw>) -> Option<Hnsw> {
        if self.m.is_none() && self.ef_construction.is_none() {
            return hnsw;
        }
        let base = hnsw.unwrap_or(PGVECTOR_HNSW_DEFAULT);
        Some(Hnsw {
            m: self.m.unwrap_or(base.m),
            ef_construct: self.ef_construction.unwrap_or(base.ef_construct),
        })
    }
}

/// pgvector's `WITH (m = …, ef_construction = …)` for `hnsw`.
pub fn hnsw_options(hnsw: Hnsw) -> String {
    format!(
        " WITH (m = {}, ef_construction = {})",
        hnsw.m, hnsw.ef_construct
    )
}

/// What the index SQL is written for: the dialect, and what the target server offers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IndexFeatures {
    pub dialect: Dialect,
    /// `CREATE INDEX IF NOT EXISTS` (PostgreSQL 9.5 and later).
    pub if_not_exists: bool,
    /// AnalyticDB for PostgreSQL's `ann` access method (its FastANN vector index).
    pub ann: bool,
}

impl IndexFeatures {
    /// `dialect` on the server `db` is connected to.
    pub fn detect(
        db: &mut impl postgres::GenericClient,
        dialect: Dialect,
    ) -> Result<IndexFeatures, postgres::Error> {
        Ok(IndexFeatures {
            dialect,
            if_not_exists: server_version_num(db)? >= 90500,
            ann: access_method_exists(db, "ann")?,
        })
    }

    /// `CREATE [UNIQUE] INDEX [IF NOT EXISTS] name`.
    fn create(self, unique: bool, name: &str) -> String {
        format!(
            "CREATE {}INDEX {}{}",
            if unique { "UNIQUE " } else { "" },
            if self.if_not_exists {
                "IF NOT EXISTS "
            } else {
                ""
            },
            quote_ident(name)
        )
    }
}

/// One index to build.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IndexStatement {
    pub name: String,
    /// What it is for, in words (`vector "text" hnsw cosine`).
    pub what: String,
    pub sql: String,
}

/// The indexes of one table, and what could not be indexed and why.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct IndexPlan {
    pub statements: Vec<IndexStatement>,
    pub skipped: Vec<String>,
}

/// An index name within PostgreSQL's limit, unique per table and purpose.
fn index_name(table: &str, purpose: &str) -> String {
    let name = format!("{table}_{purpose}_idx");
    if name.len() <= MAX_IDENT {
        return name;
    }
    let hash = format!("{:08x}", xxh3_64(name.as_bytes()) as u32);
    let mut cut = MAX_IDENT - hash.len() - 1;
    while !name.is_char_boundary(cut) {
        cut -= 1;
    }
    format!("{}_{hash}", &name[..cut])
}

/// The index plan for one table. `column_types` is the table's `(column, format_type)` list.
pub fn plan_indexes(
    schema: &str,
    table: &str,
    vectors: &[VectorSpec],
    payload_schema: &std::collections::HashMap<String, PayloadSchemaInfo>,
    payload_type: PayloadType,
    column_types: &[(String, String)],
    features: IndexFeatures,
) -> IndexPlan {
    let mut plan = IndexPlan::default();
    let target = qualified(Some(schema), table);
    let type_of = |c: &str| {
        column_types
            .iter()
            .find(|(n, _)| n == c)
            .map(|(_, t)| t.as_str())
    };
    let id_index = index_name(table, "id");
    plan.statements.push(IndexStatement {
        what: "unique id".to_owned(),
        sql: format!("{} ON {target} (id)", features.create(true, &id_index)),
        name: id_index,
    });
    for spec in vectors {
        let column = spec.column();
        let Some(sql_type) = type_of(column).or_else(|| type_of(&format!("{column}_values")))
        else {
            plan.skipped
                .push(format!("vector {column:?}: no such column in {target}"));
            continue;
        };
        match vector_index(&target, table, spec, sql_type, features) {
            Ok(statement) => plan.statements.push(statement),
            Err(why) => plan.skipped.push(format!("vector {column:?}: {why}")),
        }
    }
    let fields: BTreeMap<_, _> = payload_schema.iter().collect();
    for (field, info) in fields {
        match payload_index(&target, table, field, info, payload_type, features) {
            Ok(statement) => plan.statements.push(statement),
            Err(why) => plan.skipped.push(format!("payload {field:?}: {why}")),
        }
    }
    plan
}

fn vector_index(
    target: &str,
    table: &str,
    spec: &VectorSpec,
    sql_type: &str,
    features: IndexFeatures,
) -> Result<IndexStatement, String> {
    let column = spec.column();
    let name = index_name(table, column);
    // m = 0 is Qdrant's way to build no graph at all, which no target index takes: such a vector
    // gets the target's own defaults, as a collection without HNSW settings does.
    let hnsw = spec.hnsw.filter(|h| h.m > 0);
    match features.dialect {
        Dialect::Postgres => {
            Err("plain PostgreSQL has no vector index; use --dialect pgvector or adbpg".into())
        }
        Dialect::Adbpg => {
            if spec.shape != VectorShape::Dense {
                return Err(format!(
                    "AnalyticDB's ann index takes dense real[] vectors, not {:?}",
                    spec.shape
                ));
            }
            let measure = match spec.distance {
                Some(Distance::Euclid) => "l2",
                Some(Distance::Dot) => "ip",
                Some(Distance::Cosine) => "cosine",
                Some(Distance::Manhattan) => {
                    return Err("AnalyticDB's ann index has no Manhattan (L1) distance".into());
                }
                None => return Err("the collection declares no distance".into()),
            };
            if !features.ann {
                return Err(
                    "the server has no `ann` access method (AnalyticDB for PostgreSQL's \
                     vector index; an open-source Greenplum lacks it)"
                        .into(),
                );
            }
            let mut with = vec![
                format!("dim={}", spec.dim.unwrap_or(0)),
                format!("distancemeasure={measure}"),
            ];
            if let Some(h) = hnsw {
                with.push(format!("hnsw_m={}", h.m));
                with.push(format!("hnsw_ef_construction={}", h.ef_construct));
            }
            Ok(IndexStatement {
                what: format!("vector {column:?} ann {measure}"),
                sql: format!(
                    "{} ON {target} USING ann({}) WITH ({})",
                    features.create(false, &name),
                    quote_ident(column),
                    with.join(", ")
                ),
                name,
            })
        }
        Dialect::Pgvector => {
            let family = if sql_type.starts_with("halfvec") {
                "halfvec"
            } else if sql_type.starts_with("sparsevec") {
                "sparsevec"
            } else if sql_type.starts_with("vector") {
                "vector"
            } else {
                return Err(format!(
                    "column type {sql_type} has no pgvector index (multivectors stay real[][])"
                ));
            };
            let distance = match (spec.shape, spec.distance) {
                // Qdrant scores sparse vectors by dot product.
                (VectorShape::Sparse, _) | (_, Some(Distance::Dot)) => "ip",
                (_, Some(Distance::Euclid)) => "l2",
                (_, Some(Distance::Cosine)) => "cosine",
                (_, Some(Distance::Manhattan)) => "l1",
                (_, None) => return Err("the collection declares no distance".into()),
            };
            let with = hnsw.map(hnsw_options).unwrap_or_default();
            Ok(IndexStatement {
                what: format!("vector {column:?} hnsw {family}_{distance}_ops"),
                sql: format!(
                    "{} ON {target} USING hnsw ({} {family}_{distance}_ops){with}",
                    features.create(false, &name),
                    quote_ident(column)
                ),
                name,
            })
        }
    }
}

/// How a payload field is read in SQL: the expressions payload indexes are built on, which
/// `verify --search --filter` writes its conditions with too, so that the planner can use them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PayloadValue {
    /// `payload->>'k'`: keywords, UUIDs, datetimes, and full text.
    Text,
    /// The value as `numeric` when it is a JSON number, else NULL.
    Number,
    /// The value as `boolean` when it is a JSON boolean, else NULL.
    Boolean,
}

/// The SQL expression that reads `field` of the `payload` column as `kind`. Guards turn a value
/// of another JSON type (which Qdrant allows beside an index) into NULL instead of a failed
/// cast, and, in a `json` column, a document holding `\u0000` (which json's operators refuse to
/// unescape) into NULL too.
pub fn payload_value(field: &str, kind: PayloadValue, payload_type: PayloadType) -> String {
    let key = quote_literal(field);
    let (json, payload) = match payload_type {
        PayloadType::Json => (
            "json",
            r"(CASE WHEN strpos(payload::text, '\u0000') = 0 THEN payload END)",
        ),
        PayloadType::Jsonb => ("jsonb", "payload"),
    };
    let text = format!("({payload}->>{key})");
    let typed = |json_type: &str, cast: &str| {
        format!(
            "(CASE WHEN {json}_typeof({payload}->{key}) = '{json_type}' THEN {text}::{cast} END)"
        )
    };
    match kind {
        PayloadValue::Text => text,
        PayloadValue::Number => typed("number", "numeric"),
        PayloadValue::Boolean => typed("boolean", "boolean"),
    }
}

fn payload_index(
    target: &str,
    table: &str,
    field: &str,
    info: &PayloadSchemaInfo,
    payload_type: PayloadType,
    features: IndexFeatures,
) -> Result<IndexStatement, String> {
    let value = |kind| payload_value(field, kind, payload_type);
    let kind =
        PayloadSchemaType::try_from(info.data_type).unwrap_or(PayloadSchemaType::UnknownType);
    let (method, expression, what) = match kind {
        PayloadSchemaType::Keyword | PayloadSchemaType::Uuid | PayloadSchemaType::Datetime => {
            ("btree", value(PayloadValue::Text), "text")
        }
        PayloadSchemaType::Integer | PayloadSchemaType::Float => {
            ("btree", value(PayloadValue::Number), "number")
        }
        PayloadSchemaType::Bool => ("btree", value(PayloadValue::Boolean), "boolean"),
        PayloadSchemaType::Text => (
            "gin",
            format!("to_tsvector('simple', {})", value(PayloadValue::Text)),
            "full text",
        ),
        PayloadSchemaType::Geo => {
            return Err(
                "geo indexes have no PostgreSQL equivalent here (PostGIS is not assumed)".into(),
            );
        }
        PayloadSchemaType::UnknownType => return Err("unknown payload index type".into()),
    };
    let name = index_name(table, &format!("payload_{field}"));
    Ok(IndexStatement {
        what: format!("payload {field:?} {what}"),
        sql: format!(
            "{} ON {target} USING {method} (({expression}))",
            features.create(false, &name)
        ),
        name,
    })
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;
    use crate::layout::{Datatype, Hnsw};

    fn dense(name: &str, distance: Distance) -> VectorSpec {
        VectorSpec {
            name: name.into(),
            shape: VectorShape::Dense,
            dim: Some(768),
            datatype: Datatype::Float32,
            distance: Some(distance),
            hnsw: Some(Hnsw {
                m: 24,
                ef_construct: 150,
            }),
        }
    }

    /// `dialect` on a server with everything: PostgreSQL 9.5+ and AnalyticDB's `ann`.
    fn full(dialect: Dialect) -> IndexFeatures {
        IndexFeatures {
            dialect,
            if_not_exists: true,
            ann: true,
        }
    }

    fn schema(kind: PayloadSchemaType) -> PayloadSchemaInfo {
        PayloadSchemaInfo {
            data_type: kind as i32,
            params: None,
            points: None,
        }
    }

    #[test]
    fn adbpg_golden() {
        let vectors = [
            dense("text", Distance::Cosine),
            dense("img", Distance::Manhattan),
        ];
        let payload: HashMap<_, _> =
            [("title".to_owned(), schema(PayloadSchemaType::Keyword))].into();
        let columns = [
            ("text".to_owned(), "real[]".to_owned()),
            ("img".to_owned(), "real[]".to_owned()),
        ];
        let plan = plan_indexes(
            "public",
            "Docs",
            &vectors,
            &payload,
            PayloadType::Json,
            &columns,
            full(Dialect::Adbpg),
        );
        let sql: Vec<&str> = plan.statements.iter().map(|s| s.sql.as_str()).collect();
        assert_eq!(
            sql,
            [
                "CREATE UNIQUE INDEX IF NOT EXISTS \"Docs_id_idx\" ON public.\"Docs\" (id)",
                "CREATE INDEX IF NOT EXISTS \"Docs_text_idx\" ON public.\"Docs\" USING ann(text) WITH (dim=768, distancemeasure=cosine, hnsw_m=24, hnsw_ef_construction=150)",
                "CREATE INDEX IF NOT EXISTS \"Docs_payload_title_idx\" ON public.\"Docs\" USING btree ((((CASE WHEN strpos(payload::text, '\\u0000') = 0 THEN payload END)->>'title')))",
            ]
        );
        assert_eq!(
            plan.skipped,
            ["vector \"img\": AnalyticDB's ann index has no Manhattan (L1) distance"]
        );
    }

    #[test]
    fn greenplum_without_ann_builds_id_and_payload_indexes_without_if_not_exists() {
        let vectors = [dense("text", Distance::Cosine)];
        let payload: HashMap<_, _> = [("n".to_owned(), schema(PayloadSchemaType::Integer))].into();
        let columns = [("text".to_owned(), "real[]".to_owned())];
        let greenplum = IndexFeatures {
            dialect: Dialect::Adbpg,
            if_not_exists: false,
            ann: false,
        };
        let plan = plan_indexes(
            "public",
            "docs",
            &vectors,
            &payload,
            PayloadType::Json,
            &columns,
            greenplum,
        );
        let sql: Vec<&str> = plan.statements.iter().map(|s| s.sql.as_str()).collect();
        assert_eq!(
            sql,
            [
                "CREATE UNIQUE INDEX docs_id_idx ON public.docs (id)",
                "CREATE INDEX docs_payload_n_idx ON public.docs USING btree (((CASE WHEN json_typeof((CASE WHEN strpos(payload::text, '\\u0000') = 0 THEN payload END)->'n') = 'number' THEN ((CASE WHEN strpos(payload::text, '\\u0000') = 0 THEN payload END)->>'n')::numeric END)))",
            ]
        );
        assert_eq!(
            plan.skipped,
            [
                "vector \"text\": the server has no `ann` access method (AnalyticDB for \
              PostgreSQL's vector index; an open-source Greenplum lacks it)"
            ]
        );
    }

    #[test]
    fn pgvector_golden() {
        let sparse = VectorSpec {
            name: "bm25".into(),
            shape: VectorShape::Sparse,
            dim: None,
            datatype: Datatype::Float32,
            distance: None,
            hnsw: None,
        };
        // `c` has no graph in Qdrant (m = 0): the target's defaults.
        let mut no_graph = dense("c", Distance::Euclid);
        no_graph.hnsw = Some(Hnsw {
            m: 0,
            ef_construct: 100,
        });
        let vectors = [
            dense("a", Distance::Dot),
            dense("b", Distance::Manhattan),
            no_graph,
            sparse,
        ];
        let payload: HashMap<_, _> = [
            ("n".to_owned(), schema(PayloadSchemaType::Integer)),
            ("body".to_owned(), schema(PayloadSchemaType::Text)),
        ]
        .into();
        let columns = [
            ("a".to_owned(), "halfvec(768)".to_owned()),
            ("b".to_owned(), "vector(768)".to_owned()),
            ("c".to_owned(), "vector(768)".to_owned()),
            ("bm25".to_owned(), "sparsevec(1000000000)".to_owned()),
        ];
        let plan = plan_indexes(
            "s",
            "t",
            &vectors,
            &payload,
            PayloadType::Jsonb,
            &columns,
            full(Dialect::Pgvector),
        );
        let sql: Vec<&str> = plan.statements.iter().map(|s| s.sql.as_str()).collect();
        assert_eq!(
            sql,
            [
                "CREATE UNIQUE INDEX IF NOT EXISTS t_id_idx ON s.t (id)",
                "CREATE INDEX IF NOT EXISTS t_a_idx ON s.t USING hnsw (a halfvec_ip_ops) WITH (m = 24, ef_construction = 150)",
                "CREATE INDEX IF NOT EXISTS t_b_idx ON s.t USING hnsw (b vector_l1_ops) WITH (m = 24, ef_construction = 150)",
                "CREATE INDEX IF NOT EXISTS t_c_idx ON s.t USING hnsw (c vector_l2_ops)",
                "CREATE INDEX IF NOT EXISTS t_bm25_idx ON s.t USING hnsw (bm25 sparsevec_ip_ops)",
                "CREATE INDEX IF NOT EXISTS t_payload_body_idx ON s.t USING gin ((to_tsvector('simple', (payload->>'body'))))",
                "CREATE INDEX IF NOT EXISTS t_payload_n_idx ON s.t USING btree (((CASE WHEN jsonb_typeof(payload->'n') = 'number' THEN (payload->>'n')::numeric END)))",
            ]
        );
        assert!(plan.skipped.is_empty());
    }

    #[test]
    fn overrides_replace_the_collections_hnsw_settings_and_fill_in_pgvectors() {
        let collection = Some(Hnsw {
            m: 24,
            ef_construct: 150,
        });
        assert_eq!(HnswOverride::default().apply(collection), collection);
        assert_eq!(HnswOverride::default().apply(None), None);
        let m = HnswOverride {
            m: Some(48),
            ef_construction: None,
        };
        assert_eq!(
            m.apply(collection),
            Some(Hnsw {
                m: 48,
                ef_construct: 150
            })
        );
        // A sparse vector has no HNSW settings in Qdrant: pgvector's default fills the other.
        let ef = HnswOverride {
            m: None,
            ef_construction: Some(200),
        };
        assert_eq!(
            ef.apply(None),
            Some(Hnsw {
                m: 16,
                ef_construct: 200
            })
        );
    }

    #[test]
    fn long_names_stay_within_63_bytes_and_unique() {
        let a = index_name(&"x".repeat(60), "vector_one");
        let b = index_name(&"x".repeat(60), "vector_two");
        assert!(a.len() <= MAX_IDENT && b.len() <= MAX_IDENT);
        assert_ne!(a, b);
    }
}
