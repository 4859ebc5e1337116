//! The user's own searches for `verify --search`: query vectors (`--queries FILE`) and payload
//! filters (`--filter FILE`, or beside a query), one JSON object per line. A line that is not
//! what it should be stops the run, naming the file and line; a filter that is valid but has
//! no SQL form is kept, with why, to be named and skipped where it would have run.

use std::io::BufRead;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use serde_json::Value;

use super::filter::{Filter, Untranslatable};
use crate::source::qdrant::QueryVector;

/// A file of queries or filters could not be read.
#[derive(Debug, thiserror::Error)]
pub enum InputError {
    #[error("cannot read {path}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}:{line}: expected {expected}")]
    Line {
        path: PathBuf,
        line: usize,
        expected: &'static str,
        #[source]
        source: Option<serde_json::Error>,
    },
}

/// A query vector the user gave.
#[derive(Debug, Clone)]
pub struct UserQuery {
    pub collection: Option<String>,
    /// The vector it searches (`""`: the unnamed one).
    pub using: String,
    pub query: QueryVector,
    /// The filter it is searched with, if any: it then counts towards that filter only.
    pub filter: Option<NamedFilter>,
}

/// A payload filter the user gave, named by where it came from (`FILE:LINE`).
#[derive(Debug, Clone, PartialEq)]
pub struct NamedFilter {
    pub name: String,
    pub filter: Result<Filter, Untranslatable>,
}

/// One line of `--queries FILE`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct QueryLine {
    collection: Option<String>,
    #[serde(default)]
    using: String,
    query: QueryValue,
    filter: Option<Value>,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum QueryValue {
    Dense(Vec<f32>),
    Sparse { indices: Vec<u32>, values: Vec<f32> },
}

const QUERY_LINE: &str = "{\"using\": NAME, \"query\": [numbers] or {\"indices\": [...], \
                          \"values\": [...]}, optionally \"collection\" and \"filter\"}";
const FILTER_LINE: &str =
    "a Qdrant filter: {\"must\": [...], \"should\": [...], \"must_not\": [...]}";

/// Reads `--queries FILE`.
pub fn read_queries(path: &Path) -> Result<Vec<UserQuery>, InputError> {
    let mut queries = Vec::new();
    for_each_line(path, |line, text| {
        let bad = |source| InputError::Line {
            path: path.to_owned(),
            line,
            expected: QUERY_LINE,
            source,
        };
        let parsed: QueryLine = serde_json::from_str(text).map_err(|e| bad(Some(e)))?;
        let query = match parsed.query {
            QueryValue::Dense(values) => QueryVector::Dense(values),
            QueryValue::Sparse { indices, values } => {
                if indices.len() != values.len() {
                    return Err(bad(None));
                }
                QueryVector::Sparse { indices, values }
            }
        };
        queries.push(UserQuery {
            collection: parsed.collection,
            using: parsed.using,
            query,
            filter: parsed
                .filter
                .map(|json| named(path, line, &json))
                .transpose()
                .map_err(|()| bad(None))?,
        });
        Ok(())
    })?;
    Ok(queries)
}

/// Reads `--filter FILE`: one Qdrant filter per line.
pub fn read_filters(path: &Path) -> Result<Vec<NamedFilter>, InputError> {
    let mut filters = Vec::new();
    for_each_line(path, |line, text| {
        let bad = |source| InputError::Line {
            path: path.to_owned(),
            line,
            expected: FILTER_LINE,
            source,
        };
        let json: Value = serde_json::from_str(text).map_err(|e| bad(Some(e)))?;
        filters.push(named(path, line, &json).map_err(|()| bad(None))?);
        Ok(())
    })?;
    Ok(filters)
}

/// A filter named `FILE:LINE`; `Err` when the JSON is not an object (not a filter at all).
fn named(path: &Path, line: usize, json: &Value) -> Result<NamedFilter, ()> {
    if !json.is_object() {
        return Err(());
    }
    Ok(NamedFilter {
        name: format!("{}:{line}", path.display()),
        filter: Filter::from_json(json),
    })
}

/// Calls `f(line number, text)` for every line of `path` that is not blank.
fn for_each_line(
    path: &Path,
    mut f: impl FnMut(usize, &str) -> Result<(), InputError>,
) -> Result<(), InputError> {
    let read = |source| InputError::Read {
        path: path.to_owned(),
        source,
    };
    let file = std::fs::File::open(path).map_err(read)?;
    for (i, line) in std::io::BufReader::new(file).lines().enumerate() {
        let line = line.map_err(read)?;
        if !line.trim().is_empty() {
            f(i + 1, &line)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queries_and_filters_are_read_and_bad_lines_named() {
        let dir = tempfile::tempdir().expect("tempdir");
        let queries = dir.path().join("q.jsonl");
        std::fs::write(
            &queries,
            "{\"using\": \"v\", \"query\": [0.5, 1]}\n\n\
             {\"query\": {\"indices\": [3], \"values\": [1]}, \"filter\": \
             {\"must\": {\"key\": \"k\", \"match\": {\"value\": 1}}}}\n",
        )
        .expect("write");
        let read = read_queries(&queries).expect("queries");
        assert_eq!(read.len(), 2);
        assert_eq!(read[0].query, QueryVector::Dense(vec![0.5, 1.0]));
        let filter = read[1].filter.as_ref().expect("a filter beside the query");
        assert_eq!(filter.name, format!("{}:3", queries.display()));
        assert!(filter.filter.is_ok());

        let filters = dir.path().join("f.jsonl");
        std::fs::write(
            &filters,
            "{\"must\": [{\"key\": \"g\", \"geo_radius\": {}}]}\n[1]\n",
        )
        .expect("write");
        let error = read_filters(&filters)
            .expect_err("line 2 is no filter")
            .to_string();
        assert!(
            error.contains("f.jsonl:2: expected a Qdrant filter"),
            "{error}"
        );
        std::fs::write(
            &filters,
            "{\"must\": [{\"key\": \"g\", \"geo_radius\": {}}]}\n",
        )
        .expect("write");
        let read = read_filters(&filters).expect("filters");
        assert!(read[0].filter.is_err(), "kept, to be named and skipped");
    }
}
