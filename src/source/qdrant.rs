//! Qdrant over gRPC: connecting, describing collections, counting, and scrolling one page.
//!
//! Each cursor thread owns one [`QdrantReader`]: its own current-thread tokio runtime and its
//! own client (so its own HTTP/2 connection). The runtime only runs while that thread waits for
//! a response, so a thread may block on a channel between requests without starving anyone —
//! and no connection is shared by cursors that would otherwise queue behind each other.
//!
//! Transient failures (unavailable, resource exhausted, deadline exceeded, aborted) are retried
//! with exponential backoff from the same offset, which is safe because a scroll page is a pure
//! read. The decision is made on the gRPC status code, never on message text.

use std::time::Duration;

use qdrant_client::qdrant::{
    CollectionInfo, CountPoints, GetCollectionInfoRequest, RetrievedPoint, ScrollPoints,
    WithPayloadSelector, WithVectorsSelector, with_payload_selector, with_vectors_selector,
};
use qdrant_client::{Qdrant, QdrantError};
use tonic::Code;

use crate::config::qdrant::Connection;
use crate::point_id::{PointIdError, PointKey};

/// The first retry waits this long; each further one twice as long, up to [`MAX_BACKOFF`].
const FIRST_BACKOFF: Duration = Duration::from_millis(200);
/// Cap on one backoff: long enough to ride out a server restart, short enough to notice it.
const MAX_BACKOFF: Duration = Duration::from_secs(10);

/// A Qdrant request failed.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    #[error("cannot reach Qdrant: {hint}")]
    Unreachable {
        hint: String,
        #[source]
        source: QdrantError,
    },
    #[error(
        "Qdrant at {url} rejected the request as unauthenticated: check --api-key, \
         QDRANT_API_KEY or qdrant.api_key"
    )]
    Unauthenticated { url: String },
    #[error("collection {collection:?} does not exist in Qdrant at {url}")]
    CollectionNotFound { collection: String, url: String },
    #[error("{operation} of collection {collection:?} failed after {attempts} attempt(s)")]
    Request {
        collection: String,
        operation: &'static str,
        attempts: u32,
        #[source]
        source: QdrantError,
    },
    #[error("collection {collection:?}: a scroll page holds a bad point id")]
    BadId {
        collection: String,
        #[source]
        source: PointIdError,
    },
    #[error("collection {collection:?}: the server broke the scroll protocol: {detail}")]
    Protocol { collection: String, detail: String },
    #[error("cannot start the gRPC runtime")]
    Runtime(#[source] std::io::Error),
}

/// One scroll page.
#[derive(Debug, Default)]
pub struct ScrollPage {
    pub points: Vec<RetrievedPoint>,
    /// The first id of the next page, `None` at the end of the collection.
    pub next: Option<PointKey>,
}

/// What to fetch with each point.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fetch {
    /// Vectors and payload: a real read.
    Everything,
    /// Ids only: probing the id space.
    IdsOnly,
}

/// A connection to Qdrant, owned by one thread.
pub struct QdrantReader {
    runtime: tokio::runtime::Runtime,
    client: Qdrant,
    connection: Connection,
}

impl QdrantReader {
    /// Connects and checks that the server answers.
    pub fn connect(connection: &Connection) -> Result<QdrantReader, SourceError> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(SourceError::Runtime)?;
        let mut config = Qdrant::from_url(&connection.url)
            .timeout(connection.request_timeout)
            .connect_timeout(connection.connect_timeout)
            .skip_compatibility_check();
        if let Some(key) = &connection.api_key {
            config.set_api_key(key.expose());
        }
        // Building a client spawns nothing but needs a runtime context for its channel.
        let client = {
            let _guard = runtime.enter();
            config.build().map_err(|source| SourceError::Unreachable {
                hint: connection.hint(),
                source,
            })?
        };
        let reader = QdrantReader {
            runtime,
            client,
            connection: connection.clone(),
        };
        reader.with_retries(
            "",
            "health check",
            |c| async move { c.health_check().await },
        )?;
        Ok(reader)
    }

    pub fn connection(&self) -> &Connection {
        &self.connection
    }

    /// Every collection's name, sorted.
    pub fn list_collections(&self) -> Result<Vec<String>, SourceError> {
        let response =
            self.with_retries("", "listing", |c| async move { c.list_collections().await })?;
        let mut names: Vec<String> = response.collections.into_iter().map(|c| c.name).collect();
        names.sort();
        Ok(names)
    }

    pub fn collection_info(&self, collection: &str) -> Result<CollectionInfo, SourceError> {
        let request = GetCollectionInfoRequest {
            collection_name: collection.to_owned(),
        };
        let response = self.with_retries(collection, "describing", |c| {
            let request = request.clone();
            async move { c.collection_info(request).await }
        })?;
        response
            .result
            .ok_or_else(|| SourceError::CollectionNotFound {
                collection: collection.to_owned(),
                url: self.connection.url.clone(),
            })
    }

    /// The exact point count (the info's `points_count` is only an estimate).
    pub fn count_exact(&self, collection: &str) -> Result<u64, SourceError> {
        let request = CountPoints {
            collection_name: collection.to_owned(),
            exact: Some(true),
            ..Default::default()
        };
        let response = self.with_retries(collection, "counting", |c| {
            let request = request.clone();
            async move { c.count(request).await }
        })?;
        Ok(response.result.map_or(0, |r| r.count))
    }

    /// One scroll page starting at `offset` (inclusive).
    pub fn scroll(
        &self,
        collection: &str,
        offset: PointKey,
        limit: u32,
        fetch: Fetch,
    ) -> Result<ScrollPage, SourceError> {
        let everything = fetch == Fetch::Everything;
        let request = ScrollPoints {
            collection_name: collection.to_owned(),
            offset: Some(offset.to_proto()),
            limit: Some(limit),
            with_payload: Some(WithPayloadSelector {
                selector_options: Some(with_payload_selector::SelectorOptions::Enable(everything)),
            }),
            with_vectors: Some(WithVectorsSelector {
                selector_options: Some(with_vectors_selector::SelectorOptions::Enable(everything)),
            }),
            ..Default::default()
        };
        let response = self.with_retries(collection, "scrolling", |c| {
            let request = request.clone();
            async move { c.scroll(request).await }
        })?;
        let next = match response.next_page_offset {
            Some(id) => {
                Some(
                    PointKey::from_proto(Some(&id)).map_err(|source| SourceError::BadId {
                        collection: collection.to_owned(),
                        source,
                    })?,
                )
            }
            None => None,
        };
        Ok(ScrollPage {
            points: response.result,
            next,
        })
    }

    /// The first id at or after `key`, or `None` if there is none: a cheap probe (ids only).
    pub fn first_at_or_after(
        &self,
        collection: &str,
        key: PointKey,
    ) -> Result<Option<PointKey>, SourceError> {
        let page = self.scroll(collection, key, 1, Fetch::IdsOnly)?;
        match page.points.first() {
            Some(p) => PointKey::from_proto(p.id.as_ref())
                .map(Some)
                .map_err(|source| SourceError::BadId {
                    collection: collection.to_owned(),
                    source,
                }),
            None => Ok(None),
        }
    }

    /// Runs one request, retrying transient failures with exponential backoff.
    fn with_retries<T, F, Fut>(
        &self,
        collection: &str,
        operation: &'static str,
        mut request: F,
    ) -> Result<T, SourceError>
    where
        F: FnMut(Qdrant) -> Fut,
        Fut: std::future::Future<Output = Result<T, QdrantError>>,
    {
        let mut backoff = FIRST_BACKOFF;
        let mut attempt = 0;
        loop {
            attempt += 1;
            match self.runtime.block_on(request(self.client.clone())) {
                Ok(value) => return Ok(value),
                Err(err) => {
                    let code = status_code(&err);
                    if code == Some(Code::Unauthenticated) || code == Some(Code::PermissionDenied) {
                        return Err(SourceError::Unauthenticated {
                            url: self.connection.url.clone(),
                        });
                    }
                    if code == Some(Code::NotFound) && !collection.is_empty() {
                        return Err(SourceError::CollectionNotFound {
                            collection: collection.to_owned(),
                            url: self.connection.url.clone(),
                        });
                    }
                    if !is_transient(code) || attempt >= self.connection.retries {
                        if code == Some(Code::Unavailable) || code.is_none() {
                            return Err(SourceError::Unreachable {
                                hint: format!(
                                    "{} ({operation}{}{}, {attempt} attempt(s))",
                                    self.connection.hint(),
                                    if collection.is_empty() { "" } else { " of " },
                                    collection
                                ),
                                source: err,
                            });
                        }
                        return Err(SourceError::Request {
                            collection: collection.to_owned(),
                            operation,
                            attempts: attempt,
                            source: err,
                        });
                    }
                    let wait = retry_after(&err).unwrap_or(backoff);
                    std::thread::sleep(wait);
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                }
            }
        }
    }
}

fn status_code(err: &QdrantError) -> Option<Code> {
    match err {
        QdrantError::ResponseError { status } => Some(status.code()),
        QdrantError::ResourceExhaustedError { .. } => Some(Code::ResourceExhausted),
        _ => None,
    }
}

/// The status codes a real server returns while it is restarting, overloaded or slow
/// (`Unknown` is what tonic reports for a connection cut mid-response).
fn is_transient(code: Option<Code>) -> bool {
    matches!(
        code,
        Some(
            Code::Unavailable
                | Code::ResourceExhausted
                | Code::DeadlineExceeded
                | Code::Aborted
                | Code::Unknown
        )
    )
}

fn retry_after(err: &QdrantError) -> Option<Duration> {
    match err {
        QdrantError::ResourceExhaustedError {
            retry_after_seconds,
            ..
        } => Some(Duration::from_secs(*retry_after_seconds).min(MAX_BACKOFF)),
        _ => None,
    }
}
