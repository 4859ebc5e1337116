//! `verify --search N`: do the tables answer the searches Qdrant answered?
//!
//! Equal rows are half of a migration's proof; the other half is what the application does with
//! them. For every vector that has a pgvector index, the same query vectors — N points spread
//! over the collection's id space, plus the user's own from `--queries FILE` — go to Qdrant twice
//! (an exact search, its ground truth, and its own HNSW) and to PostgreSQL through that index,
//! ordered by the operator of the vector's distance (`search::sql`). Per vector: recall@K
//! of PostgreSQL against Qdrant's exact answer, and its overlap with Qdrant's HNSW answer. Below
//! `--min-recall` the check fails. A vector with no pgvector index, or one pgvector cannot rank as
//! Qdrant does (multivectors, sparse vectors with Qdrant's IDF modifier), is named and skipped.

pub mod sql;

use std::collections::HashSet;
use std::io::BufRead;
use std::path::Path;

use anyhow::{Context, bail};
use postgres::Client;
use qdrant_client::qdrant::Modifier;
use serde::{Deserialize, Serialize};

use self::sql::{knn_sql, operator, pgvector_type, query_literal, vector_index};
use crate::encode::vectors::{VectorRef, vector_of};
use crate::layout::{VectorShape, VectorSpec};
use crate::point_id::PointKey;
use crate::postgres::catalog::table_columns;
use crate::postgres::ident::qualified;
use crate::source::qdrant::{QdrantReader, QueryVector};
use crate::source::schema::CollectionSchema;

/// Queries per batched request to Qdrant.
const QDRANT_BATCH: usize = 64;

/// How the search check runs.
#[derive(Clone, Copy, Debug)]
pub struct SearchSettings {
    /// Neighbours per query: the K of recall@K.
    pub top: u64,
    /// The least recall@K against Qdrant's exact search that passes.
    pub min_recall: f64,
    /// `hnsw.ef_search` for PostgreSQL's searches.
    pub ef_search: u32,
}

/// One line of `--queries FILE`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct QueryLine {
    collection: Option<String>,
    #[serde(default)]
    using: String,
    query: QueryValue,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum QueryValue {
    Dense(Vec<f32>),
    Sparse { indices: Vec<u32>, values: Vec<f32> },
}

/// A query vector the user gave.
#[derive(Debug, Clone)]
pub struct UserQuery {
    collection: Option<String>,
    using: String,
    query: QueryVector,
}

/// Reads `--queries FILE`; errors name the file and line.
pub fn read_queries(path: &Path) -> anyhow::Result<Vec<UserQuery>> {
    let file = std::fs::File::open(path)
        .with_context(|| format!("opening the queries file {}", path.display()))?;
    let mut queries = Vec::new();
    for (i, line) in std::io::BufReader::new(file).lines().enumerate() {
        let line = line.with_context(|| format!("reading {}", path.display()))?;
        if line.trim().is_empty() {
            continue;
        }
        let parsed: QueryLine = serde_json::from_str(&line).with_context(|| {
            format!(
                "{}:{}: expected {{\"using\": NAME, \"query\": [numbers] or \
                 {{\"indices\": [...], \"values\": [...]}}}}",
                path.display(),
                i + 1
            )
        })?;
        let query = match parsed.query {
            QueryValue::Dense(values) => QueryVector::Dense(values),
            QueryValue::Sparse { indices, values } => {
                if indices.len() != values.len() {
                    bail!(
                        "{}:{}: a sparse query needs as many indices as values",
                        path.display(),
                        i + 1
                    );
                }
                QueryVector::Sparse { indices, values }
            }
        };
        queries.push(UserQuery {
            collection: parsed.collection,
            using: parsed.using,
            query,
        });
    }
    Ok(queries)
}

/// What the search check found for one vector.
#[derive(Clone, Debug, Serialize)]
pub struct VectorSearch {
    pub collection: String,
    pub vector: String,
    /// The index PostgreSQL searched through, with its method and operator class; `None` when
    /// the vector was skipped.
    pub index: Option<String>,
    pub queries: usize,
    /// recall@K against Qdrant's exact search.
    pub recall: Option<f64>,
    /// The share of Qdrant's HNSW answers PostgreSQL also returned.
    pub hnsw_overlap: Option<f64>,
    /// Why the vector was not measured.
    pub skipped: Option<String>,
    pub passed: bool,
}

impl VectorSearch {
    fn skipped(collection: &str, spec: &VectorSpec, why: impl Into<String>) -> VectorSearch {
        VectorSearch {
            collection: collection.to_owned(),
            vector: spec.column().to_owned(),
            index: None,
            queries: 0,
            recall: None,
            hnsw_overlap: None,
            skipped: Some(why.into()),
            passed: true,
        }
    }

    /// One report line.
    pub fn line(&self, top: u64, min_recall: f64) -> String {
        match (&self.skipped, self.recall, self.hnsw_overlap) {
            (Some(why), _, _) => format!("search {:?}: skipped — {why}", self.vector),
            (None, Some(recall), Some(overlap)) => format!(
                "search {:?} ({}): recall@{top} {recall:.3} against Qdrant's exact search, \
                 {overlap:.3} overlap with Qdrant's HNSW, {} queries{}",
                self.vector,
                self.index.as_deref().unwrap_or("?"),
                self.queries,
                if self.passed {
                    String::new()
                } else {
                    format!(" — BELOW --min-recall {min_recall}")
                }
            ),
            _ => format!("search {:?}: no queries", self.vector),
        }
    }
}

/// The search check of one collection's table, vector by vector.
#[allow(clippy::too_many_arguments)]
pub fn check_collection(
    server: &QdrantReader,
    db: &mut Client,
    schema: &str,
    collection: &CollectionSchema,
    sample: &[PointKey],
    user: &[UserQuery],
    args: &SearchSettings,
) -> anyhow::Result<Vec<VectorSearch>> {
    let name = &collection.name;
    let table = qualified(Some(schema), name);
    let columns = table_columns(db, schema, name)
        .with_context(|| format!("reading the columns of {table}"))?;
    // Only their vectors are queries.
    let (points, _) = server
        .get_points(name, sample)
        .with_context(|| format!("reading the query points of {name:?}"))?;
    db.batch_execute(&format!(
        "SET enable_seqscan = off; SET hnsw.ef_search = {}",
        args.ef_search
    ))
    .context("search settings")?;
    let mut results = Vec::new();
    for spec in &collection.layout.vectors {
        let column = spec.column();
        let Some((op, opclass)) = operator(spec) else {
            results.push(VectorSearch::skipped(
                name,
                spec,
                format!(
                    "pgvector has no operator that ranks a {} vector as Qdrant does",
                    spec.shape
                ),
            ));
            continue;
        };
        if spec.shape == VectorShape::Sparse && idf(collection, &spec.name) {
            results.push(VectorSearch::skipped(
                name,
                spec,
                "Qdrant scores it with the IDF modifier, which pgvector's inner product does not apply",
            ));
            continue;
        }
        let sql_type = columns
            .iter()
            .find(|(c, _)| c == column)
            .map(|(_, t)| t.as_str());
        let Some((base, dim)) = sql_type.and_then(pgvector_type) else {
            results.push(VectorSearch::skipped(
                name,
                spec,
                format!(
                    "column {column:?} is {}, not a pgvector type (migrate with --dialect pgvector)",
                    sql_type.unwrap_or("missing")
                ),
            ));
            continue;
        };
        let Some(index) = vector_index(db, schema, name, column, opclass)
            .with_context(|| format!("looking for an index on {table}.{column}"))?
        else {
            results.push(VectorSearch::skipped(
                name,
                spec,
                format!("no pgvector index with a *{opclass} operator class (run qdrant2pg index)"),
            ));
            continue;
        };
        let mut queries: Vec<QueryVector> = Vec::new();
        for point in &points {
            let vector = vector_of(point, spec).with_context(|| format!("collection {name:?}"))?;
            match vector {
                Some(VectorRef::Dense(values)) => queries.push(QueryVector::Dense(values.to_vec())),
                Some(VectorRef::Sparse { indices, values }) => queries.push(QueryVector::Sparse {
                    indices: indices.to_vec(),
                    values: values.to_vec(),
                }),
                Some(VectorRef::Multi(_)) | None => {}
            }
        }
        queries.extend(
            user.iter()
                .filter(|q| q.using == spec.name && q.collection.as_ref().is_none_or(|c| c == name))
                .map(|q| q.query.clone()),
        );
        let sparse_dim = dim.unwrap_or(crate::layout::SPARSEVEC_MAX_DIM);
        let sql = knn_sql(&table, column, op, base);
        let top = i64::try_from(args.top).context("--top is too large")?;
        if let Some(first) = queries.first() {
            let plan: Vec<String> = db
                .query(
                    &format!("EXPLAIN {sql}"),
                    &[&query_literal(first, sparse_dim), &top],
                )
                .with_context(|| format!("planning a search of {table}.{column}"))?
                .iter()
                .map(|r| r.get(0))
                .collect();
            if !plan.iter().any(|line| line.contains(&index.name)) {
                results.push(VectorSearch::skipped(
                    name,
                    spec,
                    format!(
                        "PostgreSQL's planner does not use index {} for this search",
                        index.name
                    ),
                ));
                continue;
            }
        }
        let statement = db
            .prepare(&sql)
            .with_context(|| format!("searching {table}"))?;
        let (mut found_exact, mut expected_exact) = (0usize, 0usize);
        let (mut found_hnsw, mut expected_hnsw) = (0usize, 0usize);
        for batch in queries.chunks(QDRANT_BATCH) {
            let exact = server.nearest(name, &spec.name, batch, args.top, true)?;
            let hnsw = server.nearest(name, &spec.name, batch, args.top, false)?;
            for ((query, exact), hnsw) in batch.iter().zip(&exact).zip(&hnsw) {
                let answer: HashSet<PointKey> = db
                    .query(&statement, &[&query_literal(query, sparse_dim), &top])
                    .with_context(|| format!("searching {table}.{column}"))?
                    .iter()
                    .filter_map(|r| r.get::<_, String>(0).parse().ok())
                    .collect();
                found_exact += exact.iter().filter(|k| answer.contains(k)).count();
                expected_exact += exact.len();
                found_hnsw += hnsw.iter().filter(|k| answer.contains(k)).count();
                expected_hnsw += hnsw.len();
            }
        }
        let share = |found: usize, expected: usize| {
            if expected == 0 {
                1.0
            } else {
                found as f64 / expected as f64
            }
        };
        let recall = share(found_exact, expected_exact);
        results.push(VectorSearch {
            collection: name.clone(),
            vector: column.to_owned(),
            index: Some(format!(
                "{} {}, {}",
                index.method, index.name, index.opclass
            )),
            queries: queries.len(),
            recall: Some(recall),
            hnsw_overlap: Some(share(found_hnsw, expected_hnsw)),
            skipped: None,
            passed: recall >= args.min_recall,
        });
    }
    db.batch_execute("RESET enable_seqscan")
        .context("search settings")?;
    Ok(results)
}

/// Whether Qdrant applies the IDF modifier to sparse vector `name`.
fn idf(collection: &CollectionSchema, name: &str) -> bool {
    collection
        .info
        .config
        .as_ref()
        .and_then(|c| c.params.as_ref())
        .and_then(|p| p.sparse_vectors_config.as_ref())
        .and_then(|s| s.map.get(name))
        .and_then(|p| p.modifier)
        .is_some_and(|m| m == Modifier::Idf as i32)
}
