//! Qdrant over gRPC: connecting, describing collections, counting, and scrolling one page.
//!
//! Each cursor thread owns one [`QdrantReader`]: its own current-thread tokio runtime and its
//! own client (so its own HTTP/2 connection). The runtime only runs while that thread waits for
//! a response, so a thread may block on a channel between requests without starving anyone —
//! and no connection is shared by cursors that would otherwise queue behind each other.
//!
//! Transient failures (unavailable, resource exhausted, deadline exceeded, aborted) are retried
//! with the crate's one backoff ([`crate::retry`]) from the same offset, which is safe because a
//! scroll page is a pure read. The decision is made on the gRPC status code, never on message text.
//!
//! Pages come back with their payloads exact: scroll and get decode through
//! [`DepthCheckedCodec`] (payload depth bounded before prost recurses), and the points of a page
//! whose gRPC payload holds a double where bent u64 integers land have their payloads read
//! again over REST ([`RestReader`]). A page without such doubles costs no REST call.

use std::sync::Arc;
use std::time::Duration;

use qdrant_client::qdrant::collections_client::CollectionsClient;
use qdrant_client::qdrant::points_client::PointsClient;
use qdrant_client::qdrant::qdrant_client::QdrantClient;
use qdrant_client::qdrant::{
    CollectionInfo, CountPoints, CreateCollection, DenseVector, Filter, GetCollectionInfoRequest,
    GetPoints, GetResponse, HealthCheckRequest, ListCollectionsRequest, PointStruct, Query,
    QueryBatchPoints, QueryPoints, RetrievedPoint, Sample, ScoredPoint, ScrollPoints,
    ScrollResponse, SearchParams, SparseVector, UpsertPoints, VectorInput, WithPayloadSelector,
    WithVectorsSelector, query, vector_input, with_payload_selector, with_vectors_selector,
};
use tonic::client::Grpc;
use tonic::codegen::GrpcMethod;
use tonic::codegen::http::uri::PathAndQuery;
use tonic::service::Interceptor;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::{Channel, ClientTlsConfig, Endpoint};
use tonic::{Code, Status};

use crate::config::qdrant::{Connection, Secret};
use crate::payload::{ExactPayloads, holds_wide_double};
use crate::point_id::PointKey;
use crate::retry::{Exhausted, Verdict, retry};
use crate::source::error::SourceError;
use crate::source::page::{Fetch, PageReader, ScrollPage};
use crate::source::rest::{RestReader, RestState};
use crate::source::wire::{DepthCheckedCodec, PayloadTooDeep, Response};

/// A query vector for a nearest-neighbour search.
#[derive(Clone, Debug, PartialEq)]
pub enum QueryVector {
    Dense(Vec<f32>),
    Sparse { indices: Vec<u32>, values: Vec<f32> },
}

impl QueryVector {
    fn to_grpc(&self) -> VectorInput {
        VectorInput {
            variant: Some(match self {
                QueryVector::Dense(data) => {
                    vector_input::Variant::Dense(DenseVector { data: data.clone() })
                }
                QueryVector::Sparse { indices, values } => {
                    vector_input::Variant::Sparse(SparseVector {
                        indices: indices.clone(),
                        values: values.clone(),
                    })
                }
            }),
        }
    }
}

/// What a nearest-neighbour search asks Qdrant for, beside the query vectors.
#[derive(Clone, Copy, Debug)]
pub struct Nearest<'a> {
    /// The vector searched (`""`: the unnamed vector).
    pub using: &'a str,
    /// How many neighbours per query.
    pub top: u64,
    /// A full scan (Qdrant's ground truth) instead of its own index.
    pub exact: bool,
    /// Only points that match it.
    pub filter: Option<&'a Filter>,
}

/// Sends the API key with every request, as Qdrant expects it (`api-key` metadata).
#[derive(Clone)]
struct ApiKey(Option<tonic::metadata::MetadataValue<tonic::metadata::Ascii>>);

impl Interceptor for ApiKey {
    fn call(&mut self, mut request: tonic::Request<()>) -> Result<tonic::Request<()>, Status> {
        if let Some(key) = &self.0 {
            request.metadata_mut().insert("api-key", key.clone());
        }
        Ok(request)
    }
}

type Service = InterceptedService<Channel, ApiKey>;

/// A connection to Qdrant, owned by one thread.
pub struct QdrantReader {
    runtime: tokio::runtime::Runtime,
    points: PointsClient<Service>,
    /// Scroll and get, through [`DepthCheckedCodec`].
    payload_calls: Grpc<Service>,
    collections: CollectionsClient<Service>,
    rest: RestReader,
    connection: Connection,
}

impl QdrantReader {
    /// Connects (retrying transient failures) and checks that the server answers. `rest` is
    /// shared by the readers of one run, so one REST failure stops them all trying.
    pub fn connect(
        connection: &Connection,
        rest: Arc<RestState>,
    ) -> Result<QdrantReader, SourceError> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(SourceError::Runtime)?;
        let unreachable =
            |source: Box<dyn std::error::Error + Send + Sync>| SourceError::Unreachable {
                hint: connection.hint(),
                source,
            };
        let mut endpoint = Endpoint::from_shared(connection.url.clone())
            .map_err(|e| unreachable(e.into()))?
            .timeout(connection.request_timeout)
            .connect_timeout(connection.connect_timeout)
            .http2_keep_alive_interval(Duration::from_secs(30))
            .keep_alive_while_idle(true);
        if connection.url.starts_with("https://") {
            endpoint = endpoint
                .tls_config(ClientTlsConfig::new().with_native_roots())
                .map_err(|e| unreachable(e.into()))?;
        }
        let key = connection
            .api_key
            .as_ref()
            .map(Secret::expose)
            .map(str::parse)
            .transpose();
        let key = ApiKey(key.map_err(|_| SourceError::Unauthenticated {
            url: connection.url.clone(),
        })?);
        let channel = retry(
            connection.retries,
            |_| runtime.block_on(endpoint.connect()),
            |_, _, _| Verdict::Retry,
        )
        .map_err(|failed| unreachable(failed.error.into()))?;
        // Pages of big vectors exceed tonic's 4 MiB default; the server bounds them anyway.
        let points = PointsClient::with_interceptor(channel.clone(), key.clone())
            .max_decoding_message_size(usize::MAX);
        let payload_calls = Grpc::new(InterceptedService::new(channel.clone(), key.clone()))
            .max_decoding_message_size(usize::MAX);
        let collections = CollectionsClient::with_interceptor(channel.clone(), key.clone())
            .max_decoding_message_size(usize::MAX);
        let reader = QdrantReader {
            runtime,
            points,
            payload_calls,
            collections,
            rest: RestReader::new(connection, rest),
            connection: connection.clone(),
        };
        let health = QdrantClient::with_interceptor(channel, key);
        reader.with_retries("", "health check", || {
            let mut health = health.clone();
            async move { health.health_check(HealthCheckRequest {}).await }
        })?;
        Ok(reader)
    }

    pub fn connection(&self) -> &Connection {
        &self.connection
    }

    /// Every collection's name, sorted.
    pub fn list_collections(&self) -> Result<Vec<String>, SourceError> {
        let response = self.with_retries("", "listing", || {
            let mut client = self.collections.clone();
            async move { client.list(ListCollectionsRequest {}).await }
        })?;
        let mut names: Vec<String> = response.collections.into_iter().map(|c| c.name).collect();
        names.sort();
        Ok(names)
    }

    pub fn collection_info(&self, collection: &str) -> Result<CollectionInfo, SourceError> {
        let request = GetCollectionInfoRequest {
            collection_name: collection.to_owned(),
        };
        let response = self.with_retries(collection, "describing", || {
            let (mut client, request) = (self.collections.clone(), request.clone());
            async move { client.get(request).await }
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
        let response = self.with_retries(collection, "counting", || {
            let (mut client, request) = (self.points.clone(), request.clone());
            async move { client.count(request).await }
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
            with_payload: Some(payload_selector(everything)),
            with_vectors: Some(vectors_selector(everything)),
            ..Default::default()
        };
        let response: ScrollResponse = match self.with_retries(collection, "scrolling", || {
            self.payload_call(request.clone(), "Scroll", Response::Scroll)
        }) {
            Ok(response) => response,
            Err(e @ SourceError::Request { .. }) if everything && e.is_internal() => {
                return Err(self.find_unreadable(collection, offset, limit).unwrap_or(e));
            }
            Err(e) => return Err(e),
        };
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
        let exact = if everything {
            self.exact_payloads(collection, &response.result)?
        } else {
            ExactPayloads::default()
        };
        Ok(ScrollPage {
            points: response.result,
            exact,
            next,
        })
    }

    /// Scroll or get through the depth-checked codec.
    fn payload_call<Req, Resp>(
        &self,
        request: Req,
        method: &'static str,
        response: Response,
    ) -> impl std::future::Future<Output = Result<tonic::Response<Resp>, Status>> + use<Req, Resp>
    where
        Req: prost::Message + Send + Sync + 'static,
        Resp: prost::Message + Default + Send + Sync + 'static,
    {
        let mut grpc = self.payload_calls.clone();
        async move {
            grpc.ready()
                .await
                .map_err(|e| Status::unavailable(e.to_string()))?;
            let mut request = tonic::Request::new(request);
            request
                .extensions_mut()
                .insert(GrpcMethod::new("qdrant.Points", method));
            let path = match response {
                Response::Scroll => PathAndQuery::from_static("/qdrant.Points/Scroll"),
                Response::Get => PathAndQuery::from_static("/qdrant.Points/Get"),
            };
            grpc.unary(request, path, DepthCheckedCodec::new(response))
                .await
        }
    }

    /// The exact payloads of the points whose gRPC payload may hold a bent integer, read
    /// again over REST; none when no point does. When REST cannot be used (the reason is then in
    /// the shared [`RestState`]) the page fails naming its first such point, unless the
    /// connection allows rounded integers: then none, and the writer flags those payloads.
    fn exact_payloads(
        &self,
        collection: &str,
        points: &[RetrievedPoint],
    ) -> Result<ExactPayloads, SourceError> {
        let suspect: Vec<(usize, PointKey)> = points
            .iter()
            .enumerate()
            .filter(|(_, p)| holds_wide_double(&p.payload))
            .map(|(i, p)| {
                PointKey::from_proto(p.id.as_ref())
                    .map(|key| (i, key))
                    .map_err(|source| SourceError::BadId {
                        collection: collection.to_owned(),
                        source,
                    })
            })
            .collect::<Result<_, _>>()?;
        if suspect.is_empty() {
            return Ok(ExactPayloads::default());
        }
        let ids: Vec<PointKey> = suspect.iter().map(|(_, key)| *key).collect();
        let Some(mut found) = self.rest.payloads(collection, &ids)? else {
            if self.connection.allow_rounded_integers {
                return Ok(ExactPayloads::default());
            }
            return Err(SourceError::Inexact {
                collection: collection.to_owned(),
                point: ids[0],
                why: self.rest.failure().unwrap_or_default().to_owned(),
            });
        };
        // A point deleted between the two reads keeps its gRPC payload.
        Ok(ExactPayloads::new(
            suspect
                .into_iter()
                .filter_map(|(i, key)| found.remove(&key).map(|payload| (i, payload)))
                .collect(),
        ))
    }

    /// A page that fails with `Internal` may hold a point the server cannot read: reads the
    /// page's ids alone, then each point alone, to name the first that fails. `None` if none
    /// does: the page's own error stands.
    fn find_unreadable(
        &self,
        collection: &str,
        offset: PointKey,
        limit: u32,
    ) -> Option<SourceError> {
        let ids = self
            .scroll(collection, offset, limit, Fetch::IdsOnly)
            .ok()?;
        ids.points.iter().find_map(|point| {
            let id = PointKey::from_proto(point.id.as_ref()).ok()?;
            match self.get_points(collection, &[id]) {
                Err(SourceError::Request { source, .. }) if source.code() == Code::Internal => {
                    Some(SourceError::UnreadablePoint {
                        collection: collection.to_owned(),
                        id,
                        source,
                    })
                }
                _ => None,
            }
        })
    }

    /// The points with these ids (vectors and payload, exact as in [`scroll`](Self::scroll));
    /// missing ids are simply not returned.
    pub fn get_points(
        &self,
        collection: &str,
        ids: &[PointKey],
    ) -> Result<(Vec<RetrievedPoint>, ExactPayloads), SourceError> {
        let request = GetPoints {
            collection_name: collection.to_owned(),
            ids: ids.iter().map(|k| k.to_proto()).collect(),
            with_payload: Some(payload_selector(true)),
            with_vectors: Some(vectors_selector(true)),
            ..Default::default()
        };
        let response: GetResponse = self.with_retries(collection, "getting points", || {
            self.payload_call(request.clone(), "Get", Response::Get)
        })?;
        let exact = self.exact_payloads(collection, &response.result)?;
        Ok((response.result, exact))
    }

    /// For each query, the ids of the `search.top` points nearest to it, nearest first: by
    /// Qdrant's own index, or, with `search.exact`, by a full scan — Qdrant's ground truth —
    /// among the points `search.filter` keeps. One batched request.
    pub fn nearest(
        &self,
        collection: &str,
        search: Nearest<'_>,
        queries: &[QueryVector],
    ) -> Result<Vec<Vec<PointKey>>, SourceError> {
        let request = QueryBatchPoints {
            collection_name: collection.to_owned(),
            query_points: queries
                .iter()
                .map(|q| QueryPoints {
                    collection_name: collection.to_owned(),
                    query: Some(Query {
                        variant: Some(query::Variant::Nearest(q.to_grpc())),
                    }),
                    using: (!search.using.is_empty()).then(|| search.using.to_owned()),
                    filter: search.filter.cloned(),
                    params: Some(SearchParams {
                        exact: Some(search.exact),
                        ..Default::default()
                    }),
                    limit: Some(search.top),
                    ..Default::default()
                })
                .collect(),
            ..Default::default()
        };
        let response = self.with_retries(collection, "searching", || {
            let (mut client, request) = (self.points.clone(), request.clone());
            async move { client.query_batch(request).await }
        })?;
        response
            .result
            .into_iter()
            .map(|batch| scored_keys(collection, &batch.result))
            .collect()
    }

    /// `n` ids drawn at random by Qdrant from the points that exist (its `sample: random`
    /// query, ids only), whatever their layout.
    pub fn random_keys(&self, collection: &str, n: u64) -> Result<Vec<PointKey>, SourceError> {
        let request = QueryPoints {
            collection_name: collection.to_owned(),
            query: Some(Query {
                variant: Some(query::Variant::Sample(Sample::Random as i32)),
            }),
            limit: Some(n),
            with_payload: Some(payload_selector(false)),
            with_vectors: Some(vectors_selector(false)),
            ..Default::default()
        };
        let response = self.with_retries(collection, "sampling", || {
            let (mut client, request) = (self.points.clone(), request.clone());
            async move { client.query(request).await }
        })?;
        scored_keys(collection, &response.result)
    }

    /// How many points `filter` keeps, counted exactly.
    pub fn count_matching(&self, collection: &str, filter: &Filter) -> Result<u64, SourceError> {
        let request = CountPoints {
            collection_name: collection.to_owned(),
            filter: Some(filter.clone()),
            exact: Some(true),
            ..Default::default()
        };
        let response = self.with_retries(collection, "counting", || {
            let (mut client, request) = (self.points.clone(), request.clone());
            async move { client.count(request).await }
        })?;
        Ok(response.result.map_or(0, |r| r.count))
    }

    /// Creates a collection (the load generator's, and tests').
    pub fn create_collection(&self, request: CreateCollection) -> Result<(), SourceError> {
        let name = request.collection_name.clone();
        self.with_retries(&name, "creating", || {
            let (mut client, request) = (self.collections.clone(), request.clone());
            async move { client.create(request).await }
        })?;
        Ok(())
    }

    /// Upserts points and waits until they are applied.
    pub fn upsert(&self, collection: &str, points: Vec<PointStruct>) -> Result<(), SourceError> {
        let request = UpsertPoints {
            collection_name: collection.to_owned(),
            wait: Some(true),
            points,
            ..Default::default()
        };
        self.with_retries(collection, "upserting", || {
            let (mut client, request) = (self.points.clone(), request.clone());
            async move { client.upsert(request).await }
        })?;
        Ok(())
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

    /// Runs one request, retrying transient failures ([`retry`]'s policy).
    fn with_retries<T, F, Fut>(
        &self,
        collection: &str,
        operation: &'static str,
        mut request: F,
    ) -> Result<T, SourceError>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Result<tonic::Response<T>, Status>>,
    {
        let judge = |status: &Status, _: u32, _: Duration| {
            if too_deep(status).is_some() || !is_transient(status.code()) {
                Verdict::GiveUp
            } else {
                retry_after(status).map_or(Verdict::Retry, Verdict::RetryAfter)
            }
        };
        let Exhausted {
            error: status,
            attempts,
        } = match retry(
            self.connection.retries,
            |_| self.runtime.block_on(request()),
            judge,
        ) {
            Ok(response) => return Ok(response.into_inner()),
            Err(failed) => failed,
        };
        if let Some(too_deep) = too_deep(&status) {
            return Err(SourceError::TooDeep {
                collection: collection.to_owned(),
                source: too_deep.clone(),
            });
        }
        let code = status.code();
        if code == Code::Unauthenticated || code == Code::PermissionDenied {
            return Err(SourceError::Unauthenticated {
                url: self.connection.url.clone(),
            });
        }
        if code == Code::NotFound && !collection.is_empty() {
            return Err(SourceError::CollectionNotFound {
                collection: collection.to_owned(),
                url: self.connection.url.clone(),
            });
        }
        if code == Code::Unavailable {
            let of = if collection.is_empty() {
                String::new()
            } else {
                format!(" of {collection:?}")
            };
            return Err(SourceError::Unreachable {
                hint: format!(
                    "{} ({operation}{of}, {attempts} attempt(s))",
                    self.connection.hint()
                ),
                source: Box::new(status),
            });
        }
        Err(SourceError::Request {
            collection: collection.to_owned(),
            operation,
            attempts,
            source: Box::new(status),
        })
    }
}

/// The ids of scored points, in their order.
fn scored_keys(collection: &str, points: &[ScoredPoint]) -> Result<Vec<PointKey>, SourceError> {
    points
        .iter()
        .map(|p| {
            PointKey::from_proto(p.id.as_ref()).map_err(|source| SourceError::BadId {
                collection: collection.to_owned(),
                source,
            })
        })
        .collect()
}

/// The payload too deep that a response failed on, if that is why it failed.
fn too_deep(status: &Status) -> Option<&PayloadTooDeep> {
    std::error::Error::source(status).and_then(|e| e.downcast_ref::<PayloadTooDeep>())
}

impl PageReader for QdrantReader {
    fn scroll(
        &self,
        collection: &str,
        offset: PointKey,
        limit: u32,
        fetch: Fetch,
    ) -> Result<ScrollPage, SourceError> {
        QdrantReader::scroll(self, collection, offset, limit, fetch)
    }

    fn first_at_or_after(
        &self,
        collection: &str,
        key: PointKey,
    ) -> Result<Option<PointKey>, SourceError> {
        QdrantReader::first_at_or_after(self, collection, key)
    }
}

/// The status codes a real server returns while it is restarting, overloaded or slow.
/// `Unknown` is what tonic reports for a connection cut mid-response, and `Cancelled` for a
/// connection closed under a request in flight (hyper's `Canceled`: the server went down
/// mid-call, seen in `faults::qdrant_stopped_mid_export…`). qdrant2pg never cancels a request
/// of its own, and its reads (and `generate`'s upserts of fixed ids) are idempotent, so both
/// are worth another attempt.
fn is_transient(code: Code) -> bool {
    matches!(
        code,
        Code::Unavailable
            | Code::ResourceExhausted
            | Code::DeadlineExceeded
            | Code::Aborted
            | Code::Unknown
            | Code::Cancelled
    )
}

/// Qdrant's rate limiter says how long to wait in a `retry-after` header (seconds).
fn retry_after(status: &Status) -> Option<Duration> {
    let seconds: u64 = status
        .metadata()
        .get("retry-after")?
        .to_str()
        .ok()?
        .parse()
        .ok()?;
    Some(Duration::from_secs(seconds))
}

/// Asks for every point's payload, or for none.
fn payload_selector(all: bool) -> WithPayloadSelector {
    WithPayloadSelector {
        selector_options: Some(with_payload_selector::SelectorOptions::Enable(all)),
    }
}

/// Asks for every point's vectors, or for none.
fn vectors_selector(all: bool) -> WithVectorsSelector {
    WithVectorsSelector {
        selector_options: Some(with_vectors_selector::SelectorOptions::Enable(all)),
    }
}
