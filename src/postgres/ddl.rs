//! `CREATE TABLE` for one collection, per dialect.
//!
//! The column list is the layout's (id, vectors in canonical order, payload); the types come
//! from the layout and from the facts learned while reading (id kind, sparse index width).
//!
//! No `PRIMARY KEY`: a bulk load into a table with a unique index pays a B-tree insert per row
//! and holds the index's locks across N parallel COPYs; building the key afterwards (the index
//! step) is several times cheaper. Exactly-once comes from the ledger, not from a constraint.
//!
//! Dialects:
//! - `postgres`: plain arrays, readable by any PostgreSQL (the guide's mapping, widened).
//! - `adbpg` (AnalyticDB for PostgreSQL / Greenplum): the same types, `DISTRIBUTED BY (id)` so
//!   rows spread over segments by id, and `SET STORAGE PLAIN` on dense vector columns as
//!   AnalyticDB's vector docs advise (keeps vectors inline and uncompressed for the vector
//!   index). Multivector columns are not made PLAIN: a ColBERT list easily exceeds a page,
//!   and PLAIN would make such a row fail to insert.
//! - `pgvector`: dense vectors as `vector(dim)` (or `halfvec(dim)`, see [`Halfvec`]), sparse
//!   vectors as one `sparsevec` column; multivectors stay `real[][]` because pgvector has no
//!   multivector type. The data must then be written in pgvector's text forms
//!   ([`crate::manifest::VectorSyntax::Pgvector`]), which [`columns`] matches: one column
//!   per sparse vector instead of two.
//!
//! Storage ([`VectorStorage`]): every other `real[]` / `real[][]` column (dense vectors outside
//! AnalyticDB, multivectors, sparse values) is set `EXTERNAL`, out of line and uncompressed,
//! which is what pgvector's own types default to; `--vector-storage default` keeps PostgreSQL's
//! `EXTENDED`.

use serde::{Deserialize, Serialize};

use super::ident::{qualified, quote_ident};
use crate::layout::{DataFacts, Halfvec, Layout, PayloadType, VectorShape, VectorSyntax};

/// The SQL flavour of the target.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Dialect {
    /// PostgreSQL with arrays (`real[]`); no extension needed.
    Postgres,
    /// PostgreSQL with the pgvector extension (`vector`, `halfvec`, `sparsevec`).
    Pgvector,
    /// AnalyticDB for PostgreSQL / Greenplum: arrays, distributed by id.
    #[serde(alias = "greenplum")]
    Adbpg,
}

impl Dialect {
    /// As `--dialect` names it.
    pub fn name(self) -> &'static str {
        match self {
            Dialect::Postgres => "postgres",
            Dialect::Pgvector => "pgvector",
            Dialect::Adbpg => "adbpg",
        }
    }

    /// How vectors are spelled in this dialect's rows and columns.
    pub fn vector_syntax(self) -> VectorSyntax {
        match self {
            Dialect::Pgvector => VectorSyntax::Pgvector,
            Dialect::Postgres | Dialect::Adbpg => VectorSyntax::Array,
        }
    }
}

/// How float array columns (`real[]`, `real[][]`) are stored.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum VectorStorage {
    /// `EXTERNAL`: out of line and never compressed. Floats do not compress, and under
    /// PostgreSQL's default (`EXTENDED`) every vector over about 2 KB first goes through a
    /// compression attempt that fails; skipping it cut PostgreSQL's CPU for a load 1.4× and
    /// migrate's time 1.21–1.27× (docs/benchmarks.md). `PLAIN` (inline) cost the server more than this.
    #[default]
    External,
    /// PostgreSQL's default for the type (`EXTENDED` for arrays).
    Default,
}

/// Everything that shapes the DDL beyond the collection itself.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DdlOptions {
    pub dialect: Dialect,
    pub halfvec: Halfvec,
    pub storage: VectorStorage,
}

impl From<Dialect> for DdlOptions {
    fn from(dialect: Dialect) -> Self {
        DdlOptions {
            dialect,
            halfvec: Halfvec::Never,
            storage: VectorStorage::default(),
        }
    }
}

/// One column of the target table.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Column {
    /// The bare name (quote with [`quote_ident`] before use in SQL).
    pub name: String,
    pub sql_type: String,
    /// A dense vector column: `SET STORAGE PLAIN` applies on adbpg.
    pub dense_vector: bool,
}

/// The columns of a collection's table in file order.
pub fn columns(layout: &Layout, facts: &DataFacts, options: DdlOptions) -> Vec<Column> {
    let column = |name: &str, sql_type: String, dense_vector: bool| Column {
        name: name.to_owned(),
        sql_type,
        dense_vector,
    };
    let mut out = vec![column("id", facts.id_kind().sql_type().to_owned(), false)];
    let mut sparse_slot = 0;
    for v in &layout.vectors {
        let name = v.column();
        match (v.shape, options.dialect) {
            (VectorShape::Dense, Dialect::Pgvector) => {
                let half = options.halfvec.applies_to(v.datatype);
                let base = if half { "halfvec" } else { "vector" };
                let sql_type = match v.dim {
                    Some(dim) => format!("{base}({dim})"),
                    None => base.to_owned(),
                };
                out.push(column(name, sql_type, true));
            }
            (VectorShape::Dense, _) => out.push(column(name, "real[]".to_owned(), true)),
            (VectorShape::Multi, _) => out.push(column(name, "real[][]".to_owned(), false)),
            (VectorShape::Sparse, Dialect::Pgvector) => {
                // Declared with the dimension its values carry: an HNSW index refuses a
                // sparsevec column without one ("column does not have dimensions").
                let sql_type = format!("sparsevec({})", v.sparsevec_dim());
                out.push(column(name, sql_type, false));
                sparse_slot += 1;
            }
            (VectorShape::Sparse, _) => {
                let indices = if facts.sparse_needs_bigint(sparse_slot) {
                    "bigint[]"
                } else {
                    "integer[]"
                };
                out.push(column(
                    &format!("{name}_indices"),
                    indices.to_owned(),
                    false,
                ));
                out.push(column(
                    &format!("{name}_values"),
                    "real[]".to_owned(),
                    false,
                ));
                sparse_slot += 1;
            }
        }
    }
    let payload = match layout.payload {
        PayloadType::Json => "json",
        PayloadType::Jsonb => "jsonb",
    };
    out.push(column("payload", payload.to_owned(), false));
    out
}

/// The DDL for one collection's table with default options (what export writes into
/// `create_table.sql`).
pub fn create_table_sql(
    schema: Option<&str>,
    table: &str,
    layout: &Layout,
    facts: &DataFacts,
    dialect: Dialect,
) -> String {
    create_table_sql_with(schema, table, layout, facts, dialect.into())
}

/// The DDL for one collection's table: `CREATE TABLE`, plus the dialect's extra statements,
/// each ending in `;` so the whole text runs as one simple-query batch (or through psql).
pub fn create_table_sql_with(
    schema: Option<&str>,
    table: &str,
    layout: &Layout,
    facts: &DataFacts,
    options: DdlOptions,
) -> String {
    let name = qualified(schema, table);
    let columns = columns(layout, facts, options);
    let body = columns
        .iter()
        .map(|c| format!("    {} {}", quote_ident(&c.name), c.sql_type))
        .collect::<Vec<_>>()
        .join(",\n");
    let mut sql = format!("CREATE TABLE {name} (\n{body}\n)");
    if options.dialect == Dialect::Adbpg {
        sql.push_str(" DISTRIBUTED BY (id)");
    }
    sql.push_str(";\n");
    for c in &columns {
        let storage = if options.dialect == Dialect::Adbpg && c.dense_vector {
            "PLAIN"
        } else if options.storage == VectorStorage::External && c.sql_type.starts_with("real[]") {
            "EXTERNAL"
        } else {
            continue;
        };
        sql.push_str(&format!(
            "ALTER TABLE {name} ALTER COLUMN {} SET STORAGE {storage};\n",
            quote_ident(&c.name)
        ));
    }
    sql
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::layout::Datatype;
    use crate::layout::VectorSpec;
    use crate::point_id::PointKey;

    fn spec(name: &str, shape: VectorShape, dim: Option<u64>, datatype: Datatype) -> VectorSpec {
        VectorSpec {
            name: name.into(),
            shape,
            dim,
            datatype,
            distance: None,
            hnsw: None,
        }
    }

    /// A collection with every kind of vector: a float16 dense, a float32 dense, a multivector
    /// and two sparse vectors, one of which has an index above 2^31−1.
    fn rich() -> (Layout, DataFacts) {
        let layout = Layout::new(
            vec![
                spec("text", VectorShape::Dense, Some(768), Datatype::Float32),
                spec("Image", VectorShape::Dense, Some(4), Datatype::Float16),
                spec("colbert", VectorShape::Multi, Some(128), Datatype::Float32),
                spec("bm25", VectorShape::Sparse, None, Datatype::Float32),
                spec("wide", VectorShape::Sparse, None, Datatype::Float32),
            ],
            PayloadType::Jsonb,
        );
        let mut facts = DataFacts::for_layout(&layout);
        facts.note_id(PointKey::Num(1));
        facts.note_id(PointKey::Uuid(7));
        facts.note_sparse_index(0, 10);
        facts.note_sparse_index(1, u32::MAX);
        (layout, facts)
    }

    fn assert_sql(actual: &str, expected: &str) {
        assert_eq!(
            actual, expected,
            "\nexpected:\n{expected}\nactual:\n{actual}"
        );
    }

    #[test]
    fn guide_shaped_collection_postgres() {
        let layout = Layout::new(
            vec![spec("", VectorShape::Dense, Some(768), Datatype::Float32)],
            PayloadType::Json,
        );
        let facts = DataFacts::for_layout(&layout);
        assert_sql(
            &create_table_sql(None, "test_collection", &layout, &facts, Dialect::Postgres),
            "CREATE TABLE test_collection (\n    id bigint,\n    vector real[],\n    payload json\n);\n\
             ALTER TABLE test_collection ALTER COLUMN vector SET STORAGE EXTERNAL;\n",
        );
    }

    #[test]
    fn rich_collection_postgres() {
        let (layout, facts) = rich();
        assert_sql(
            &create_table_sql(
                Some("public"),
                "My-Docs",
                &layout,
                &facts,
                Dialect::Postgres,
            ),
            "CREATE TABLE public.\"My-Docs\" (\n    id text,\n    \"Image\" real[],\n    \
             colbert real[][],\n    text real[],\n    bm25_indices integer[],\n    \
             bm25_values real[],\n    wide_indices bigint[],\n    wide_values real[],\n    \
             payload jsonb\n);\n\
             ALTER TABLE public.\"My-Docs\" ALTER COLUMN \"Image\" SET STORAGE EXTERNAL;\n\
             ALTER TABLE public.\"My-Docs\" ALTER COLUMN colbert SET STORAGE EXTERNAL;\n\
             ALTER TABLE public.\"My-Docs\" ALTER COLUMN text SET STORAGE EXTERNAL;\n\
             ALTER TABLE public.\"My-Docs\" ALTER COLUMN bm25_values SET STORAGE EXTERNAL;\n\
             ALTER TABLE public.\"My-Docs\" ALTER COLUMN wide_values SET STORAGE EXTERNAL;\n",
        );
        let options = DdlOptions {
            storage: VectorStorage::Default,
            ..DdlOptions::from(Dialect::Postgres)
        };
        let default = create_table_sql_with(None, "t", &layout, &facts, options);
        assert!(!default.contains("STORAGE"), "{default}");
    }

    #[test]
    fn rich_collection_adbpg() {
        let (layout, facts) = rich();
        assert_sql(
            &create_table_sql(Some("vec"), "select", &layout, &facts, Dialect::Adbpg),
            "CREATE TABLE vec.\"select\" (\n    id text,\n    \"Image\" real[],\n    \
             colbert real[][],\n    text real[],\n    bm25_indices integer[],\n    \
             bm25_values real[],\n    wide_indices bigint[],\n    wide_values real[],\n    \
             payload jsonb\n) DISTRIBUTED BY (id);\n\
             ALTER TABLE vec.\"select\" ALTER COLUMN \"Image\" SET STORAGE PLAIN;\n\
             ALTER TABLE vec.\"select\" ALTER COLUMN colbert SET STORAGE EXTERNAL;\n\
             ALTER TABLE vec.\"select\" ALTER COLUMN text SET STORAGE PLAIN;\n\
             ALTER TABLE vec.\"select\" ALTER COLUMN bm25_values SET STORAGE EXTERNAL;\n\
             ALTER TABLE vec.\"select\" ALTER COLUMN wide_values SET STORAGE EXTERNAL;\n",
        );
    }

    #[test]
    fn rich_collection_pgvector() {
        let (layout, facts) = rich();
        let options = DdlOptions {
            halfvec: Halfvec::Float16,
            ..DdlOptions::from(Dialect::Pgvector)
        };
        // pgvector's types are EXTERNAL already; the multivector's real[][] is made so.
        assert_sql(
            &create_table_sql_with(None, "ünï code", &layout, &facts, options),
            "CREATE TABLE \"ünï code\" (\n    id text,\n    \"Image\" halfvec(4),\n    \
             colbert real[][],\n    text vector(768),\n    bm25 sparsevec(1000000000),\n    \
             wide sparsevec(1000000000),\n    payload jsonb\n);\n\
             ALTER TABLE \"ünï code\" ALTER COLUMN colbert SET STORAGE EXTERNAL;\n",
        );
        let names = |halfvec| {
            let options = DdlOptions {
                halfvec,
                ..DdlOptions::from(Dialect::Pgvector)
            };
            columns(&layout, &facts, options)
                .into_iter()
                .filter(|c| c.dense_vector)
                .map(|c| c.sql_type)
                .collect::<Vec<_>>()
        };
        assert_eq!(names(Halfvec::Never), ["vector(4)", "vector(768)"]);
        assert_eq!(names(Halfvec::Always), ["halfvec(4)", "halfvec(768)"]);
    }

    #[test]
    fn id_types_follow_the_facts() {
        let layout = Layout::new(vec![], PayloadType::Json);
        let id_type = |keys: &[PointKey]| {
            let mut facts = DataFacts::for_layout(&layout);
            keys.iter().for_each(|k| facts.note_id(*k));
            columns(&layout, &facts, Dialect::Postgres.into())[0]
                .sql_type
                .clone()
        };
        assert_eq!(id_type(&[]), "bigint");
        assert_eq!(id_type(&[PointKey::Num(u64::MAX)]), "numeric(20,0)");
        assert_eq!(id_type(&[PointKey::Uuid(1)]), "uuid");
        assert_eq!(id_type(&[PointKey::Num(1), PointKey::Uuid(1)]), "text");
    }
}
