//! `verify --search N`: do the tables answer the searches Qdrant answered — and what does the
//! application need to set, how fast will it be, and do its filtered searches still work?
//!
//! Equal rows are half of a migration's proof; the other half is what the application does with
//! them. For every vector that has a pgvector index, the same query vectors — N points of the
//! collection, plus the user's own from `--queries FILE` — go to Qdrant twice (an exact search,
//! its ground truth, and its own HNSW) and to PostgreSQL through that index, ordered by the
//! operator of the vector's distance (`sql`). Per vector:
//! - recall@K of PostgreSQL against Qdrant's exact answer, climbing a ladder of `hnsw.ef_search`
//!   values (`--ef-search auto`, the default) to the smallest that reaches `--min-recall`, or at
//!   the one `--ef-search N` names; and the line that sets it for the application;
//! - where even the top of the ladder misses, what would reach it: a larger graph (`index --m
//!   --ef-construction`), measured on a copy of the table where that is cheap enough;
//! - latency (p50, p95, one client) and throughput (`-j` clients) of both engines on the same
//!   queries, PostgreSQL at the setting found;
//! - with `--filter FILE` (or filters beside queries), the same against Qdrant's exact filtered
//!   search, the filter translated to SQL on the payload column (`filter`), and the setting —
//!   `hnsw.iterative_scan`, `ef_search` — that reaches `--min-recall`.
//!
//! A vector with no pgvector index, or one pgvector cannot rank as Qdrant does (multivectors,
//! sparse vectors with Qdrant's IDF modifier), is named and skipped; so is a filter with no SQL
//! form.

pub mod filter;
pub mod input;
pub mod measure;
pub mod sql;

use std::str::FromStr;
use std::sync::Arc;

use postgres::Client;
use qdrant_client::qdrant::Modifier;
use serde::Serialize;

use self::filter::Filter;
use self::input::{InputError, NamedFilter, UserQuery};
use self::measure::{IterativeScan, Latency, PgSearch, Rung, Setting, Trial};
use self::sql::{VectorIndex, operator, pgvector_type, query_literal, vector_index};
use crate::config::postgres::{ConnectError, Target};
use crate::encode::EncodeError;
use crate::encode::vectors::{VectorRef, vector_of};
use crate::layout::{Hnsw, PayloadType, SPARSEVEC_MAX_DIM, VectorShape, VectorSpec};
use crate::point_id::PointKey;
use crate::postgres::catalog::table_columns;
use crate::postgres::ident::{qualified, quote_ident};
use crate::source::error::SourceError;
use crate::source::qdrant::{Nearest, QdrantReader, QueryVector};
use crate::source::rest::RestState;
use crate::source::schema::CollectionSchema;

/// Queries per batched request to Qdrant.
const QDRANT_BATCH: usize = 64;

/// The `hnsw.ef_search` values `--ef-search auto` tries, smallest first, up to pgvector's
/// largest (1000); 40 is pgvector's default. Steps of about 1.5×: on a 5000-point collection of
/// sparse vectors (1–16 words of 7000) recall@10 measured 0.938, 0.946, 0.948, 0.951 and 0.955
/// at 200, 300, 400, 600 and 1000, so coarser steps would report needlessly large values,
/// while each rung costs one pass over the queries.
const LADDER: [u32; 10] = [
    PGVECTOR_DEFAULT_EF_SEARCH,
    60,
    100,
    150,
    200,
    300,
    400,
    600,
    800,
    1000,
];

/// pgvector's `hnsw.ef_search` when nothing sets it.
const PGVECTOR_DEFAULT_EF_SEARCH: u32 = 40;

/// The largest table a larger graph is tried on (a copy, built then and there): on 5,000 rows
/// the trial builds took 1.9 s (64-d dense, m=8, ef_construction=200) to 19 s (sparse, m=64,
/// ef_construction=256) on the 2 shared cores of the test machine, and HNSW builds grow a
/// little faster than the rows, so 20,000 rows cost up to about a minute and a half.
const TRIAL_MAX_ROWS: f64 = 20_000.0;

/// pgvector's limits on `m` and `ef_construction`.
const MAX_M: u64 = 100;
const MAX_EF_CONSTRUCTION: u64 = 1000;

/// The search check failed to run (a finding is not an error: it is in the report).
#[derive(Debug, thiserror::Error)]
pub enum SearchError {
    #[error(transparent)]
    Input(#[from] InputError),
    #[error(transparent)]
    Source(#[from] SourceError),
    #[error(transparent)]
    Connect(#[from] ConnectError),
    #[error("{what} {table}")]
    Db {
        what: &'static str,
        table: String,
        #[source]
        source: postgres::Error,
    },
    #[error("collection {collection:?}: a query point")]
    Vector {
        collection: String,
        #[source]
        source: EncodeError,
    },
    #[error("--top {0} is larger than PostgreSQL's LIMIT takes")]
    Top(u64),
}

/// `--ef-search`: found per vector, or one value for all.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EfSearch {
    /// The smallest rung of the ladder that reaches `--min-recall`.
    Auto,
    Fixed(u32),
}

impl FromStr for EfSearch {
    type Err = String;

    fn from_str(text: &str) -> Result<EfSearch, String> {
        if text == "auto" {
            return Ok(EfSearch::Auto);
        }
        match text.parse::<u32>() {
            Ok(n @ 1..=1000) => Ok(EfSearch::Fixed(n)),
            _ => Err("`auto` or a number from 1 to 1000 (pgvector's range)".to_owned()),
        }
    }
}

/// How the search check runs.
#[derive(Clone, Copy, Debug)]
pub struct SearchSettings {
    /// Neighbours per query: the K of recall@K.
    pub top: u64,
    /// The least recall@K against Qdrant's exact search that passes.
    pub min_recall: f64,
    pub ef_search: EfSearch,
    /// Clients at once for the throughput measurement, on each engine.
    pub clients: usize,
}

impl SearchSettings {
    /// The settings an unfiltered search climbs: the ladder from K up (pgvector returns at
    /// most `ef_search` rows from its graph), or the one value given.
    fn ladder(&self) -> Vec<Setting> {
        match self.ef_search {
            EfSearch::Fixed(n) => vec![Setting::plain(n)],
            EfSearch::Auto => {
                let mut rungs: Vec<Setting> = LADDER
                    .iter()
                    .filter(|&&ef| u64::from(ef) >= self.top)
                    .map(|&ef| Setting::plain(ef))
                    .collect();
                if rungs.is_empty() {
                    rungs.push(Setting::plain(LADDER[LADDER.len() - 1]));
                }
                rungs
            }
        }
    }

    /// The settings a filtered search climbs from the vector's own `ef_search`: as it is, then
    /// with the iterative scan (where the server has it), then up the ladder with it.
    fn filtered_ladder(&self, base: u32, iterative: bool) -> Vec<Setting> {
        let mut settings = vec![Setting::plain(base)];
        if iterative {
            let relaxed = |ef_search| Setting {
                ef_search,
                iterative_scan: IterativeScan::RelaxedOrder,
            };
            settings.push(relaxed(base));
            if self.ef_search == EfSearch::Auto {
                settings.extend(
                    LADDER
                        .iter()
                        .filter(|&&ef| ef > base)
                        .map(|&ef| relaxed(ef)),
                );
            }
        }
        settings
    }
}

/// Where the searches come from beyond the sampled points.
#[derive(Clone, Debug, Default)]
pub struct UserSearches {
    pub queries: Vec<UserQuery>,
    /// `--filter FILE`: each applies to every vector's queries.
    pub filters: Vec<NamedFilter>,
}

/// The two engines, and how to open more connections to each for the throughput measurement.
pub struct Engines<'a> {
    pub qdrant: &'a QdrantReader,
    pub target: &'a Target,
    pub db: &'a mut Client,
}

/// Both engines' speed on one vector's queries.
#[derive(Clone, Debug, Serialize)]
pub struct Latencies {
    /// PostgreSQL through its index, at the setting reported.
    pub postgres: Latency,
    /// Qdrant's own search (its HNSW, as the application uses it).
    pub qdrant: Latency,
    /// Where each server runs, as this process reaches it.
    pub postgres_at: String,
    pub qdrant_at: String,
    /// Qdrant had indexed no vector of the collection in an HNSW graph (segments below its
    /// indexing threshold are searched in full).
    pub qdrant_without_graph: bool,
}

/// What the search check found for one filter on one vector.
#[derive(Clone, Debug, Serialize)]
pub struct FilteredSearch {
    /// Where the filter came from (`FILE:LINE`).
    pub filter: String,
    /// Why it was not measured.
    pub skipped: Option<String>,
    /// The points the filter keeps in each engine.
    pub qdrant_points: u64,
    pub postgres_points: u64,
    /// The share of the collection's points the filter keeps (Qdrant's count).
    pub share: f64,
    pub queries: usize,
    /// Every setting tried, up to the first that reached `--min-recall`.
    pub rungs: Vec<Rung>,
    /// The setting reported: the first that reached, else the last tried.
    pub setting: Option<Setting>,
    pub recall: Option<f64>,
    /// Rows PostgreSQL returned at that setting, all queries together.
    pub returned: usize,
    /// The indexes PostgreSQL's plan searched through.
    pub plan: Vec<String>,
    pub passed: bool,
}

impl FilteredSearch {
    fn skipped(name: &str, why: String) -> FilteredSearch {
        FilteredSearch {
            filter: name.to_owned(),
            skipped: Some(why),
            qdrant_points: 0,
            postgres_points: 0,
            share: 0.0,
            queries: 0,
            rungs: Vec::new(),
            setting: None,
            recall: None,
            returned: 0,
            plan: Vec::new(),
            passed: true,
        }
    }

    fn line(&self, top: u64, min_recall: f64) -> String {
        if let Some(why) = &self.skipped {
            return format!("filter {}: skipped — {why}", self.filter);
        }
        let kept = format!(
            "keeps {:.1} % of the points ({} in Qdrant, {} in PostgreSQL)",
            self.share * 100.0,
            self.qdrant_points,
            self.postgres_points
        );
        let setting = self.setting.map(|s| s.describe()).unwrap_or_default();
        let via = if self.plan.is_empty() {
            "no index".to_owned()
        } else {
            self.plan.join(", ")
        };
        let outcome = if self.qdrant_points != self.postgres_points {
            " — DIFFERENT: the SQL keeps other points than Qdrant's filter (a field holding an \
             array? Qdrant matches any element) or the payloads differ"
                .to_owned()
        } else if self.qdrant_points == 0 {
            if self.returned == 0 {
                ": both return nothing".to_owned()
            } else {
                format!(
                    " — DIFFERENT: PostgreSQL returned {} rows where Qdrant returned none",
                    self.returned
                )
            }
        } else if self.passed {
            String::new()
        } else {
            format!(" — BELOW --min-recall {min_recall} at every setting tried")
        };
        format!(
            "filter {} {kept}, {} queries: recall@{top} {:.3} at {setting} (through {via}){outcome}",
            self.filter,
            self.queries,
            self.recall.unwrap_or(0.0),
        )
    }
}

/// What the search check found for one vector.
#[derive(Clone, Debug, Serialize)]
pub struct VectorSearch {
    pub collection: String,
    pub vector: String,
    /// The index PostgreSQL searched through, with its method and operator class; `None` when
    /// the vector was skipped.
    pub index: Option<String>,
    /// Its name, qualified.
    pub index_name: Option<String>,
    /// The index's HNSW settings.
    pub hnsw: Option<Hnsw>,
    pub queries: usize,
    /// `--ef-search auto`: the ladder was climbed.
    pub auto: bool,
    /// Every setting tried, up to the first that reached `--min-recall`.
    pub ladder: Vec<Rung>,
    /// The setting reported: the first that reached, else the last tried.
    pub setting: Option<Setting>,
    /// recall@K against Qdrant's exact search, at that setting.
    pub recall: Option<f64>,
    /// The share of Qdrant's HNSW answers PostgreSQL also returned.
    pub hnsw_overlap: Option<f64>,
    /// Qdrant's own HNSW against its exact search, for comparison.
    pub qdrant_recall: Option<f64>,
    pub latency: Option<Latencies>,
    /// Larger graphs tried on a copy of the table when even the top of the ladder missed.
    pub larger_index: Vec<Trial>,
    /// Why no larger graph was tried where one would have been.
    pub larger_index_untried: Option<String>,
    pub filters: Vec<FilteredSearch>,
    /// Why the vector was not measured.
    pub skipped: Option<String>,
    /// The unfiltered searches reached `--min-recall`.
    pub reached: bool,
    /// They did, and so did every filter's.
    pub passed: bool,
}

impl VectorSearch {
    fn skipped(collection: &str, spec: &VectorSpec, why: impl Into<String>) -> VectorSearch {
        VectorSearch {
            skipped: Some(why.into()),
            ..VectorSearch::new(collection, spec.column())
        }
    }

    /// Nothing measured yet.
    fn new(collection: &str, column: &str) -> VectorSearch {
        VectorSearch {
            collection: collection.to_owned(),
            vector: column.to_owned(),
            index: None,
            index_name: None,
            hnsw: None,
            queries: 0,
            auto: false,
            ladder: Vec::new(),
            setting: None,
            recall: None,
            hnsw_overlap: None,
            qdrant_recall: None,
            latency: None,
            larger_index: Vec::new(),
            larger_index_untried: None,
            filters: Vec::new(),
            skipped: None,
            reached: true,
            passed: true,
        }
    }

    /// The report lines: the vector's, then indented ones for its speed, a larger graph and
    /// each filter.
    pub fn lines(&self, top: u64, min_recall: f64) -> Vec<String> {
        if let Some(why) = &self.skipped {
            return vec![format!("search {:?}: skipped — {why}", self.vector)];
        }
        let (Some(recall), Some(setting)) = (self.recall, self.setting) else {
            return vec![format!("search {:?}: no queries", self.vector)];
        };
        let hnsw = self
            .hnsw
            .map(|h| format!(", m={}, ef_construction={}", h.m, h.ef_construct))
            .unwrap_or_default();
        let at = setting.describe();
        let how = match (self.auto, self.reached) {
            (true, true) => {
                let before = self.ladder.len().checked_sub(2).map(|i| self.ladder[i]);
                match before {
                    Some(b) => format!(
                        " — the smallest of the ladder reaching {min_recall} ({:.3} at ef_search \
                         {})",
                        b.recall, b.setting.ef_search
                    ),
                    None => format!(" — the smallest of the ladder reaching {min_recall}"),
                }
            }
            (true, false) => format!(
                " — BELOW --min-recall {min_recall} at every ef_search from {} to {}",
                self.ladder.first().map_or(0, |r| r.setting.ef_search),
                setting.ef_search
            ),
            (false, true) => " (--ef-search)".to_owned(),
            (false, false) => format!(
                " — BELOW --min-recall {min_recall} (--ef-search auto finds the ef_search it \
                 needs)"
            ),
        };
        let mut lines = vec![format!(
            "search {:?} ({}{hnsw}), {} queries: recall@{top} {recall:.3} against Qdrant's exact \
             search at {at}{how}; Qdrant's own HNSW {:.3}, overlap with it {:.3}",
            self.vector,
            self.index.as_deref().unwrap_or("?"),
            self.queries,
            self.qdrant_recall.unwrap_or(0.0),
            self.hnsw_overlap.unwrap_or(0.0),
        )];
        if let Some(l) = &self.latency {
            let graph = if l.qdrant_without_graph {
                " (Qdrant searched without an HNSW graph: it builds none for segments under its \
                 indexing threshold)"
            } else {
                ""
            };
            lines.push(format!(
                "  latency, {} queries: PostgreSQL at {at}: {}; Qdrant: {} — PostgreSQL at {}, \
                 Qdrant at {}{graph}",
                l.postgres.queries,
                l.postgres.describe(),
                l.qdrant.describe(),
                l.postgres_at,
                l.qdrant_at
            ));
        }
        lines.extend(self.larger_index_line());
        for f in &self.filters {
            lines.push(format!("  {}", f.line(top, min_recall)));
        }
        lines
    }

    /// What the trial of larger graphs found, as advice.
    fn larger_index_line(&self) -> Option<String> {
        if let Some(why) = &self.larger_index_untried {
            return Some(format!("  a larger graph was not tried: {why}"));
        }
        let rebuild = |t: &Trial| {
            let index = self.index_name.as_deref().unwrap_or("the index");
            format!(
                "DROP INDEX {index}; qdrant2pg index --collection {} --m {} --ef-construction {}",
                self.collection, t.m, t.ef_construction
            )
        };
        if let Some(t) = self.larger_index.iter().find(|t| t.reached) {
            let last = t
                .rungs
                .last()
                .map_or((0.0, 0), |r| (r.recall, r.setting.ef_search));
            return Some(format!(
                "  a larger graph reaches it: m={}, ef_construction={} gives recall {:.3} at \
                 ef_search {} (measured on a copy of the table, built in {:.1} s): {}",
                t.m,
                t.ef_construction,
                last.0,
                last.1,
                t.build_seconds,
                rebuild(t)
            ));
        }
        if self.larger_index.is_empty() {
            return None;
        }
        let tried: Vec<String> = self
            .larger_index
            .iter()
            .map(|t| {
                let best = t.rungs.iter().map(|r| r.recall).fold(0.0, f64::max);
                format!(
                    "m={}, ef_construction={} gives at most {best:.3}",
                    t.m, t.ef_construction
                )
            })
            .collect();
        Some(format!(
            "  a larger graph does not reach it either ({}, measured on a copy of the table): \
             the table's vectors may not be Qdrant's (verify --full compares every one)",
            tried.join("; ")
        ))
    }
}

/// One line for the application: the `hnsw.ef_search` (and `hnsw.iterative_scan`) that serves
/// every vector whose setting was found, set for a session, the role or the database. `None`
/// when nothing was found (`--ef-search N`, or no vector reached).
pub fn settings_advice(
    searches: &[VectorSearch],
    db: &mut Client,
) -> Result<Option<String>, SearchError> {
    let found: Vec<&VectorSearch> = searches.iter().filter(|s| s.auto && s.reached).collect();
    let Some(ef_search) = found
        .iter()
        .filter_map(|s| s.setting.map(|s| s.ef_search))
        .chain(
            found
                .iter()
                .flat_map(|s| &s.filters)
                .filter(|f| f.passed)
                .filter_map(|f| f.setting.map(|s| s.ef_search)),
        )
        .max()
    else {
        return Ok(None);
    };
    let iterative = found.iter().flat_map(|s| &s.filters).any(|f| {
        f.passed
            && f.setting
                .is_some_and(|s| s.iterative_scan == IterativeScan::RelaxedOrder)
    });
    let row = db
        .query_one("SELECT current_user::text, current_database()::text", &[])
        .map_err(|source| SearchError::Db {
            what: "asking who is connected",
            table: String::new(),
            source,
        })?;
    let (role, database): (String, String) = (row.get(0), row.get(1));
    if ef_search == PGVECTOR_DEFAULT_EF_SEARCH && !iterative {
        return Ok(Some(format!(
            "pgvector's default hnsw.ef_search ({ef_search}) serves every search above that \
             reached --min-recall: nothing to set"
        )));
    }
    let mut settings = vec![format!("hnsw.ef_search = {ef_search}")];
    if iterative {
        settings.push("hnsw.iterative_scan = relaxed_order".to_owned());
    }
    let each = |prefix: &str| {
        settings
            .iter()
            .map(|s| format!("{prefix}SET {s};"))
            .collect::<Vec<_>>()
            .join(" ")
    };
    Ok(Some(format!(
        "{} serve{} every search above that reached --min-recall; for the application's \
         sessions: {} — or for its role: {} — or for the database: {}",
        settings.join(" and "),
        if settings.len() == 1 { "s" } else { "" },
        each(""),
        each(&format!("ALTER ROLE {} ", quote_ident(&role))),
        each(&format!("ALTER DATABASE {} ", quote_ident(&database))),
    )))
}

/// The search check of one collection's table, vector by vector. `sample` are the ids of the
/// points whose vectors are queries.
pub fn check_collection(
    engines: &mut Engines<'_>,
    schema: &str,
    collection: &CollectionSchema,
    sample: &[PointKey],
    user: &UserSearches,
    settings: &SearchSettings,
) -> Result<Vec<VectorSearch>, SearchError> {
    let name = &collection.name;
    let table = qualified(Some(schema), name);
    let db_error = |what: &'static str| {
        let table = table.clone();
        move |source| SearchError::Db {
            what,
            table,
            source,
        }
    };
    let columns =
        table_columns(engines.db, schema, name).map_err(db_error("reading the columns of"))?;
    let payload_type = if columns.iter().any(|(c, t)| c == "payload" && t == "jsonb") {
        PayloadType::Jsonb
    } else {
        PayloadType::Json
    };
    let iterative = engines
        .db
        .query_one(
            "SELECT coalesce(string_to_array(extversion, '.')::int[] >= '{0,8}', false) \
             FROM pg_extension WHERE extname = 'vector'",
            &[],
        )
        .map(|row| row.get::<_, bool>(0))
        .unwrap_or(false);
    let (points, _) = engines.qdrant.get_points(name, sample)?;
    let filters = CollectionFilters::count(engines, collection, &table, payload_type, user)?;
    let top = i64::try_from(settings.top).map_err(|_| SearchError::Top(settings.top))?;
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
        let Some(index) = vector_index(engines.db, schema, name, column, opclass)
            .map_err(db_error("looking for a vector index on"))?
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
            let vector = vector_of(point, spec).map_err(|source| SearchError::Vector {
                collection: name.clone(),
                source,
            })?;
            match vector {
                Some(VectorRef::Dense(values)) => queries.push(QueryVector::Dense(values.to_vec())),
                Some(VectorRef::Sparse { indices, values }) => queries.push(QueryVector::Sparse {
                    indices: indices.to_vec(),
                    values: values.to_vec(),
                }),
                Some(VectorRef::Multi(_)) | None => {}
            }
        }
        let mine = |q: &&UserQuery| {
            q.using == spec.name && q.collection.as_ref().is_none_or(|c| c == name)
        };
        queries.extend(
            user.queries
                .iter()
                .filter(mine)
                .filter(|q| q.filter.is_none())
                .map(|q| q.query.clone()),
        );
        let sparse_dim = dim.unwrap_or(SPARSEVEC_MAX_DIM);
        let search = PgSearch {
            table: &table,
            column,
            operator: op,
            base_type: base,
            top,
            iterative,
        };
        let ladder = settings.ladder();
        if let Some(first) = queries.first() {
            search
                .set(engines.db, ladder[0])
                .map_err(db_error("setting up a search of"))?;
            let plan = search
                .explain(engines.db, None, &query_literal(first, sparse_dim))
                .map_err(db_error("planning a search of"))?;
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
        let vector = VectorQueries::ask(
            engines.qdrant,
            collection,
            &spec.name,
            queries,
            sparse_dim,
            settings.top,
        )?;
        let index_name = qualified(Some(schema), &index.name);
        let mut result = measure_vector(
            engines,
            settings,
            &search,
            &index,
            &index_name,
            &vector,
            &ladder,
        )?;
        if !result.reached && settings.ef_search == EfSearch::Auto {
            try_larger_graphs(
                engines.db,
                settings,
                &search,
                &index,
                &vector,
                &ladder,
                &mut result,
            )?;
        }
        let base = result.setting.map_or(ladder[0].ef_search, |s| s.ef_search);
        for run in filters.for_vector(spec, &vector) {
            let measured = match run {
                FilterRun::Skipped(named, why) => FilteredSearch::skipped(&named.name, why),
                FilterRun::Run {
                    named,
                    counted,
                    queries,
                } => measure_filtered(
                    engines,
                    settings,
                    &search,
                    &vector,
                    &counted,
                    &named.name,
                    &queries,
                    sparse_dim,
                    &settings.filtered_ladder(base, iterative),
                )?,
            };
            result.filters.push(measured);
        }
        result.passed = result.reached && result.filters.iter().all(|f| f.passed);
        results.push(result);
    }
    let mut reset = "RESET enable_seqscan; RESET hnsw.ef_search".to_owned();
    if iterative {
        reset.push_str("; RESET hnsw.iterative_scan");
    }
    engines
        .db
        .batch_execute(&reset)
        .map_err(db_error("resetting the search settings on"))?;
    Ok(results)
}

/// One vector's queries, as both engines take them, and Qdrant's exact answers to them.
struct VectorQueries<'a> {
    collection: &'a str,
    using: &'a str,
    queries: Vec<QueryVector>,
    /// The queries as pgvector literals.
    literals: Vec<String>,
    /// Per query, Qdrant's exact top K: the ground truth.
    exact: Vec<Vec<PointKey>>,
    /// Qdrant has no HNSW graph for the collection yet: its "own" search is a full scan.
    qdrant_without_graph: bool,
}

impl<'a> VectorQueries<'a> {
    fn ask(
        qdrant: &QdrantReader,
        collection: &'a CollectionSchema,
        using: &'a str,
        queries: Vec<QueryVector>,
        sparse_dim: u32,
        top: u64,
    ) -> Result<VectorQueries<'a>, SearchError> {
        let exact = nearest(
            qdrant,
            &collection.name,
            &queries,
            Nearest {
                using,
                top,
                exact: true,
                filter: None,
            },
        )?;
        Ok(VectorQueries {
            collection: &collection.name,
            using,
            qdrant_without_graph: collection.info.indexed_vectors_count == Some(0),
            literals: queries
                .iter()
                .map(|q| query_literal(q, sparse_dim))
                .collect(),
            queries,
            exact,
        })
    }
}

/// Qdrant's answers to `queries`, in batches.
fn nearest(
    qdrant: &QdrantReader,
    collection: &str,
    queries: &[QueryVector],
    search: Nearest<'_>,
) -> Result<Vec<Vec<PointKey>>, SourceError> {
    let mut answers = Vec::with_capacity(queries.len());
    for batch in queries.chunks(QDRANT_BATCH) {
        answers.extend(qdrant.nearest(collection, search, batch)?);
    }
    Ok(answers)
}

/// The unfiltered searches of one vector: the ladder climbed, Qdrant's HNSW beside it, and
/// both engines timed at the setting reported.
fn measure_vector(
    engines: &mut Engines<'_>,
    settings: &SearchSettings,
    search: &PgSearch<'_>,
    index: &VectorIndex,
    index_name: &str,
    vector: &VectorQueries<'_>,
    ladder: &[Setting],
) -> Result<VectorSearch, SearchError> {
    let db_error = |source| SearchError::Db {
        what: "searching",
        table: search.table.to_owned(),
        source,
    };
    let mut result = VectorSearch {
        index: Some(format!(
            "{} {}, {}",
            index.method, index.name, index.opclass
        )),
        index_name: Some(index_name.to_owned()),
        hnsw: index.hnsw,
        queries: vector.queries.len(),
        auto: settings.ef_search == EfSearch::Auto,
        ..VectorSearch::new(vector.collection, search.column)
    };
    if vector.queries.is_empty() {
        return Ok(result);
    }
    let hnsw = nearest(
        engines.qdrant,
        vector.collection,
        &vector.queries,
        Nearest {
            using: vector.using,
            top: settings.top,
            exact: false,
            filter: None,
        },
    )?;
    let climb = search
        .climb(
            engines.db,
            None,
            &vector.literals,
            &vector.exact,
            ladder,
            settings.min_recall,
        )
        .map_err(db_error)?;
    let Some(last) = climb.last() else {
        return Ok(result);
    };
    result.setting = Some(last.setting);
    result.recall = Some(last.recall);
    result.reached = climb.reached;
    result.ladder = climb.rungs.clone();
    result.hnsw_overlap = Some(measure::recall(&hnsw, &climb.answers));
    result.qdrant_recall = Some(measure::recall(&vector.exact, &hnsw));
    result.latency = Some(latencies(engines, settings, search, vector, last.setting)?);
    Ok(result)
}

/// Both engines' latency and throughput on `vector`'s queries, PostgreSQL at `setting`.
fn latencies(
    engines: &mut Engines<'_>,
    settings: &SearchSettings,
    search: &PgSearch<'_>,
    vector: &VectorQueries<'_>,
    setting: Setting,
) -> Result<Latencies, SearchError> {
    let sql = search.sql(None);
    let target = engines.target;
    let db_error = |source| SearchError::Db {
        what: "timing searches of",
        table: search.table.to_owned(),
        source,
    };
    let postgres = Latency::measure(
        vector.literals.len(),
        settings.clients,
        || {
            let mut client = target.connect()?;
            search.set(&mut client, setting).map_err(db_error)?;
            let statement = client.prepare(&sql).map_err(db_error)?;
            Ok::<_, SearchError>((client, statement))
        },
        |(client, statement), i| {
            client
                .query(&*statement, &[&vector.literals[i], &search.top])
                .map(drop)
                .map_err(db_error)
        },
    )?;
    let connection = engines.qdrant.connection();
    let qdrant = Latency::measure(
        vector.queries.len(),
        settings.clients,
        || QdrantReader::connect(connection, Arc::new(RestState::default())),
        |reader, i| {
            reader
                .nearest(
                    vector.collection,
                    Nearest {
                        using: vector.using,
                        top: settings.top,
                        exact: false,
                        filter: None,
                    },
                    &vector.queries[i..=i],
                )
                .map(drop)
        },
    )?;
    Ok(Latencies {
        postgres,
        qdrant,
        postgres_at: target.describe(),
        qdrant_at: connection.url.clone(),
        qdrant_without_graph: vector.qdrant_without_graph,
    })
}

/// Where even the top of the ladder missed: larger graphs, each built on a copy of the table,
/// until one reaches `--min-recall` — on tables small enough that a trial build is cheap.
fn try_larger_graphs(
    db: &mut Client,
    settings: &SearchSettings,
    search: &PgSearch<'_>,
    index: &VectorIndex,
    vector: &VectorQueries<'_>,
    ladder: &[Setting],
    result: &mut VectorSearch,
) -> Result<(), SearchError> {
    let Some(hnsw) = index.hnsw else {
        return Ok(());
    };
    let candidates = larger_graphs(hnsw);
    let Some(first) = candidates.first() else {
        result.larger_index_untried = Some(format!(
            "the index already has pgvector's largest settings (m={}, ef_construction={})",
            hnsw.m, hnsw.ef_construct
        ));
        return Ok(());
    };
    let db_error = |what| {
        move |source| SearchError::Db {
            what,
            table: search.table.to_owned(),
            source,
        }
    };
    let rows: f64 = db
        .query_one(
            "SELECT reltuples::float8 FROM pg_class WHERE oid = $1::text::regclass",
            &[&search.table],
        )
        .map_err(db_error("estimating the rows of"))?
        .get(0);
    if rows > TRIAL_MAX_ROWS {
        result.larger_index_untried = Some(format!(
            "the table has about {rows:.0} rows, where a trial build costs about as much as \
             `index` itself; to try m={}, ef_construction={}: DROP INDEX {}; qdrant2pg index \
             --collection {} --m {} --ef-construction {}",
            first.m,
            first.ef_construct,
            result.index_name.as_deref().unwrap_or(&index.name),
            vector.collection,
            first.m,
            first.ef_construct
        ));
        return Ok(());
    }
    for candidate in candidates {
        let trial = search
            .trial(
                db,
                &index.opclass,
                candidate,
                &vector.literals,
                &vector.exact,
                ladder,
                settings.min_recall,
            )
            .map_err(db_error("trying a larger graph on a copy of"))?;
        let reached = trial.reached;
        result.larger_index.push(trial);
        if reached {
            break;
        }
    }
    Ok(())
}

/// Graphs larger than `hnsw` to try, smaller first: twice and four times its `m` and
/// `ef_construction`, within pgvector's limits (`ef_construction` at least twice `m`).
fn larger_graphs(hnsw: Hnsw) -> Vec<Hnsw> {
    let mut out: Vec<Hnsw> = Vec::new();
    for factor in [2, 4] {
        let m = (hnsw.m * factor).min(MAX_M);
        let candidate = Hnsw {
            m,
            ef_construct: (hnsw.ef_construct * factor).clamp(2 * m, MAX_EF_CONSTRUCTION),
        };
        if candidate != hnsw && !out.contains(&candidate) {
            out.push(candidate);
        }
    }
    out
}

/// The user's filters on one collection, each translated and counted on both sides once.
struct CollectionFilters {
    entries: Vec<FilterEntry>,
}

struct FilterEntry {
    named: NamedFilter,
    /// The filter in both forms with the points it keeps; why not where it has no SQL form.
    counted: Result<Counted, String>,
    /// For filters given beside queries: the vector those queries search, and the queries.
    attached: Option<(String, Vec<QueryVector>)>,
}

/// A filter in both engines' forms, with the points each keeps.
#[derive(Clone)]
struct Counted {
    grpc: qdrant_client::qdrant::Filter,
    sql: String,
    qdrant_points: u64,
    postgres_points: u64,
    share: f64,
}

/// One filter to measure on one vector, or to name as skipped.
enum FilterRun<'f> {
    Skipped(&'f NamedFilter, String),
    Run {
        named: &'f NamedFilter,
        counted: Counted,
        queries: Vec<QueryVector>,
    },
}

impl CollectionFilters {
    /// `--filter`'s filters, and those beside this collection's queries (the same filter
    /// beside several queries of one vector is measured once, with all of them).
    fn count(
        engines: &mut Engines<'_>,
        collection: &CollectionSchema,
        table: &str,
        payload_type: PayloadType,
        user: &UserSearches,
    ) -> Result<CollectionFilters, SearchError> {
        let name = &collection.name;
        let mut entries: Vec<FilterEntry> = user
            .filters
            .iter()
            .map(|named| FilterEntry {
                named: named.clone(),
                counted: Err(String::new()),
                attached: None,
            })
            .collect();
        for query in &user.queries {
            let Some(named) = &query.filter else { continue };
            if query.collection.as_ref().is_some_and(|c| c != name) {
                continue;
            }
            let same = entries.iter_mut().find(|e| {
                e.named.filter == named.filter
                    && e.attached
                        .as_ref()
                        .is_some_and(|(using, _)| *using == query.using)
            });
            match same {
                Some(entry) => {
                    if let Some((_, queries)) = &mut entry.attached {
                        queries.push(query.query.clone());
                    }
                }
                None => entries.push(FilterEntry {
                    named: named.clone(),
                    counted: Err(String::new()),
                    attached: Some((query.using.clone(), vec![query.query.clone()])),
                }),
            }
        }
        if entries.is_empty() {
            return Ok(CollectionFilters { entries });
        }
        let total = engines.qdrant.count_exact(name)?;
        for entry in &mut entries {
            entry.counted = match &entry.named.filter {
                Err(untranslatable) => Err(untranslatable.to_string()),
                Ok(filter) => Ok(count(engines, name, table, payload_type, filter, total)?),
            };
        }
        Ok(CollectionFilters { entries })
    }

    /// The filters to run on vector `spec`: every `--filter` one with the vector's own
    /// queries, and those given beside queries of this vector with those queries.
    fn for_vector(&self, spec: &VectorSpec, vector: &VectorQueries<'_>) -> Vec<FilterRun<'_>> {
        self.entries
            .iter()
            .filter(|e| {
                e.attached
                    .as_ref()
                    .is_none_or(|(using, _)| *using == spec.name)
            })
            .map(|e| match &e.counted {
                Err(why) => FilterRun::Skipped(&e.named, why.clone()),
                Ok(counted) => FilterRun::Run {
                    named: &e.named,
                    counted: counted.clone(),
                    queries: match &e.attached {
                        Some((_, queries)) => queries.clone(),
                        None => vector.queries.clone(),
                    },
                },
            })
            .collect()
    }
}

/// `filter` in both forms, and the points it keeps in each engine out of `total`.
fn count(
    engines: &mut Engines<'_>,
    collection: &str,
    table: &str,
    payload_type: PayloadType,
    filter: &Filter,
    total: u64,
) -> Result<Counted, SearchError> {
    let grpc = filter.to_grpc();
    let sql = filter.to_sql(payload_type);
    let qdrant_points = engines.qdrant.count_matching(collection, &grpc)?;
    let postgres_points: i64 = engines
        .db
        .query_one(&format!("SELECT count(*) FROM {table} WHERE {sql}"), &[])
        .map_err(|source| SearchError::Db {
            what: "counting the rows a filter keeps in",
            table: table.to_owned(),
            source,
        })?
        .get(0);
    Ok(Counted {
        grpc,
        sql,
        qdrant_points,
        postgres_points: u64::try_from(postgres_points).unwrap_or(0),
        share: if total == 0 {
            0.0
        } else {
            qdrant_points as f64 / total as f64
        },
    })
}

/// One filter's searches on one vector: Qdrant's exact filtered answers against PostgreSQL's
/// at each setting of `ladder` until one reaches `--min-recall`.
#[allow(clippy::too_many_arguments)]
fn measure_filtered(
    engines: &mut Engines<'_>,
    settings: &SearchSettings,
    search: &PgSearch<'_>,
    vector: &VectorQueries<'_>,
    counted: &Counted,
    name: &str,
    queries: &[QueryVector],
    sparse_dim: u32,
    ladder: &[Setting],
) -> Result<FilteredSearch, SearchError> {
    let db_error = |source| SearchError::Db {
        what: "searching with a filter",
        table: search.table.to_owned(),
        source,
    };
    let exact = nearest(
        engines.qdrant,
        vector.collection,
        queries,
        Nearest {
            using: vector.using,
            top: settings.top,
            exact: true,
            filter: Some(&counted.grpc),
        },
    )?;
    let literals: Vec<String> = queries
        .iter()
        .map(|q| query_literal(q, sparse_dim))
        .collect();
    let climb = search
        .climb(
            engines.db,
            Some(&counted.sql),
            &literals,
            &exact,
            ladder,
            settings.min_recall,
        )
        .map_err(db_error)?;
    let last = climb.last();
    let plan = match (literals.first(), last) {
        (Some(first), Some(last)) => {
            search.set(engines.db, last.setting).map_err(db_error)?;
            plan_indexes(
                &search
                    .explain(engines.db, Some(&counted.sql), first)
                    .map_err(db_error)?,
            )
        }
        _ => Vec::new(),
    };
    let returned = climb.answers.iter().map(Vec::len).sum();
    let agree = counted.qdrant_points == counted.postgres_points
        && (counted.qdrant_points > 0 || returned == 0);
    Ok(FilteredSearch {
        filter: name.to_owned(),
        skipped: None,
        qdrant_points: counted.qdrant_points,
        postgres_points: counted.postgres_points,
        share: counted.share,
        queries: queries.len(),
        setting: last.map(|r| r.setting),
        recall: last.map(|r| r.recall),
        rungs: climb.rungs,
        returned,
        plan,
        passed: agree && climb.reached,
    })
}

/// The indexes an `EXPLAIN` plan scans (`Index Scan using x`, `Bitmap Index Scan on x`).
fn plan_indexes(plan: &[String]) -> Vec<String> {
    let mut names: Vec<String> = Vec::new();
    for line in plan {
        for marker in [
            "Index Scan using ",
            "Index Only Scan using ",
            "Bitmap Index Scan on ",
        ] {
            if let Some(at) = line.find(marker) {
                let rest = &line[at + marker.len()..];
                let name = rest
                    .split_whitespace()
                    .next()
                    .unwrap_or_default()
                    .to_owned();
                if !name.is_empty() && !names.contains(&name) {
                    names.push(name);
                }
            }
        }
    }
    names
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ef_search_is_auto_or_within_pgvectors_range() {
        assert_eq!("auto".parse(), Ok(EfSearch::Auto));
        assert_eq!("300".parse(), Ok(EfSearch::Fixed(300)));
        assert!("0".parse::<EfSearch>().is_err());
        assert!("1001".parse::<EfSearch>().is_err());
    }

    #[test]
    fn the_ladder_starts_where_k_rows_can_come_back() {
        let settings = |top, ef_search| SearchSettings {
            top,
            min_recall: 0.95,
            ef_search,
            clients: 1,
        };
        let efs = |s: SearchSettings| s.ladder().iter().map(|r| r.ef_search).collect::<Vec<_>>();
        assert_eq!(efs(settings(10, EfSearch::Auto)), LADDER);
        assert_eq!(efs(settings(100, EfSearch::Auto))[0], 100);
        assert_eq!(efs(settings(5000, EfSearch::Auto)), [1000]);
        assert_eq!(efs(settings(10, EfSearch::Fixed(77))), [77]);
        let filtered = settings(10, EfSearch::Auto).filtered_ladder(400, true);
        assert_eq!(filtered[0], Setting::plain(400));
        assert_eq!(filtered[1].iterative_scan, IterativeScan::RelaxedOrder);
        assert_eq!(filtered.last().map(|s| s.ef_search), Some(1000));
        assert_eq!(
            settings(10, EfSearch::Auto)
                .filtered_ladder(400, false)
                .len(),
            1
        );
    }

    #[test]
    fn larger_graphs_double_and_quadruple_within_pgvectors_limits() {
        let graph = |m, ef_construct| Hnsw { m, ef_construct };
        assert_eq!(
            larger_graphs(graph(16, 64)),
            [graph(32, 128), graph(64, 256)]
        );
        assert_eq!(
            larger_graphs(graph(40, 600)),
            [graph(80, 1000), graph(100, 1000)]
        );
        assert_eq!(larger_graphs(graph(100, 1000)), []);
    }

    #[test]
    fn plans_name_the_indexes_they_scan() {
        let plan: Vec<String> = [
            "Limit  (cost=1.0..2.0 rows=10 width=40)",
            "  ->  Index Scan using knn_l2_idx on knn  (cost=…)",
            "        Filter: (…)",
            "  ->  Bitmap Index Scan on knn_payload_kw_idx  (cost=…)",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        assert_eq!(plan_indexes(&plan), ["knn_l2_idx", "knn_payload_kw_idx"]);
    }
}
