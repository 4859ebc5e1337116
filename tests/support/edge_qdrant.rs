//! An in-process Qdrant gRPC server backed by the real engine (`qdrant-edge`).
//!
//! The tests run against a genuine Qdrant where one is installed (`support::genuine_qdrant`);
//! this server stands in on machines without one, and `tests/qdrant_server.rs` keeps checking
//! it against the genuine server's recorded output. It implements the
//! services `qdrant-client` generates, on top of `EdgeShard`s, and answers the calls qdrant2pg
//! makes the way Qdrant 1.18 does: the conversions, the multi-shard scroll and the collection
//! info all come from `qdrant2pg::source::edge`, which the snapshot source also uses, and
//! `tests/qdrant_server.rs` checks them against a genuine server's output.
//!
//! What it mirrors from the real server's gRPC setup: unlimited request size
//! (`max_decoding_message_size(usize::MAX)`), gzip accepted and offered, `Unauthenticated` for a
//! missing or wrong `api-key` (401 in REST terms, since Qdrant 1.9), `NotFound` with the server's message for an unknown collection,
//! and `Unimplemented` for every call the migration does not make (filters and `order_by`
//! included), so a test that strays from the real contract fails loudly.
//!
//! Threads: the server owns a multi-thread tokio runtime on its own thread. Engine calls block,
//! so every one of them runs under `spawn_blocking`; no lock is held across an `.await`.
//! `stop` drops the runtime, which closes every connection as a killed server would; the data
//! stays in memory and on disk, so `restart` serves it again on the same port.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use qdrant_client::qdrant::collections_server::{Collections, CollectionsServer};
use qdrant_client::qdrant::point_id::PointIdOptions;
use qdrant_client::qdrant::points_server::{Points, PointsServer};
use qdrant_client::qdrant::qdrant_server::{Qdrant, QdrantServer as QdrantService};
use qdrant_client::qdrant::value::Kind;
use qdrant_client::qdrant::{
    self as grpc, vectors_config, with_payload_selector, with_vectors_selector,
};
use qdrant_edge::{
    Distance, EdgeConfig, EdgeOptimizersConfig, EdgeShard, EdgeSparseVectorParams,
    EdgeVectorParams, HnswIndexConfig, JsonPath, Modifier, MultiVectorConfig, OperationError,
    Payload, PayloadSelector, PayloadSelectorExclude, PayloadSelectorInclude,
    PointInsertOperations, PointOperations, PointStructPersisted, UpdateOperation, Vector,
    VectorInternal, VectorStorageDatatype, VectorStructInternal, VectorStructPersisted,
    WithPayloadInterface, WithVector,
};
use qdrant2pg::point_id::PointKey;
use qdrant2pg::source::edge::config_file::{
    CollectionConfigFile, CollectionParamsFile, HnswDiffFile, OptimizerConfigFile, SparseIndexFile,
    SparseVectorParamsFile, VectorParamsFile, VectorsConfigFile, WalConfigFile,
};
use qdrant2pg::source::edge::{self, EdgeError, key_to_edge};
use qdrant2pg::source::snapshot::archive::CollectionSnapshot;
use tokio::sync::oneshot;
use tonic::codec::CompressionEncoding;
use tonic::service::Interceptor;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::server::TcpIncoming;
use tonic::{Request, Response, Status};

/// What the health check reports: the version whose behaviour this server follows.
const VERSION: &str = "1.18.3";
/// Worker threads of the server's runtime. Handlers only hop onto the blocking pool, so two
/// are enough on this 2-core machine.
const WORKERS: usize = 2;
/// How long `stop` waits for engine calls still running before it lets go of them.
const STOP_GRACE: Duration = Duration::from_secs(10);

/// A running (or stopped) test server. Dropping it shuts it down and removes its storage.
pub struct EdgeQdrant {
    addr: SocketAddr,
    running: Option<Running>,
    /// Declared before `storage`: the shards flush into it when they drop.
    store: Arc<Store>,
    api_key: Option<Arc<str>>,
    /// Held for its `Drop`, which removes the directory.
    _storage: tempfile::TempDir,
}

struct Running {
    shutdown: oneshot::Sender<()>,
    thread: JoinHandle<()>,
}

impl EdgeQdrant {
    /// A server on 127.0.0.1 and a free port, with its own runtime thread and temp storage.
    pub fn start() -> EdgeQdrant {
        Self::launch(None)
    }

    /// A server that refuses every call without `api-key: <key>`.
    pub fn start_with_api_key(key: &str) -> EdgeQdrant {
        Self::launch(Some(Arc::from(key)))
    }

    fn launch(api_key: Option<Arc<str>>) -> EdgeQdrant {
        let storage = tempfile::Builder::new()
            .prefix("qdrant-test-")
            .tempdir()
            .unwrap_or_else(|e| panic!("test Qdrant: no temp storage: {e}"));
        let store = Arc::new(Store {
            dir: storage.path().to_path_buf(),
            collections: RwLock::new(BTreeMap::new()),
            next_dir: AtomicU64::new(0),
            next_operation: AtomicU64::new(0),
        });
        let mut server = EdgeQdrant {
            addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            running: None,
            store,
            api_key,
            _storage: storage,
        };
        server.serve();
        server
    }

    /// `http://127.0.0.1:PORT`, for `qdrant_client::Qdrant::from_url`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Load a collection snapshot (`.snapshot`, or gzipped `.snapshot.gz`) as `collection`.
    pub fn load_snapshot(&self, collection: &str, snapshot: &Path) {
        let dir = self.store.new_dir();
        let opened = CollectionSnapshot::open(snapshot, &dir).unwrap_or_else(|e| {
            panic!(
                "test Qdrant: cannot load {}: {}",
                snapshot.display(),
                error_chain(&e)
            )
        });
        let loaded = Collection {
            config: opened.config,
            shards: opened.shards,
            dir,
        };
        let mut collections = self
            .store
            .collections
            .write()
            .unwrap_or_else(|e| e.into_inner());
        collections.insert(collection.to_owned(), Arc::new(loaded));
    }

    /// Upsert one point whose payload is given as JSON, as Qdrant's REST API takes it: values
    /// gRPC cannot carry (integers above `i64::MAX`, nesting deeper than prost's recursion
    /// limit allows) reach the engine as they are.
    pub fn upsert_json(
        &self,
        collection: &str,
        point: grpc::PointStruct,
        payload: serde_json::Map<String, serde_json::Value>,
    ) {
        let collection = self
            .store
            .get(collection)
            .unwrap_or_else(|e| panic!("test Qdrant: {}", e.message()));
        let key = PointKey::from_proto(point.id.as_ref()).expect("a point id");
        let mut point = point_to_edge(point).expect("a valid point");
        point.payload = Some(qdrant_edge::Payload(payload));
        let operation = UpdateOperation::PointOperation(PointOperations::UpsertPoints(
            PointInsertOperations::PointsList(vec![point]),
        ));
        collection.shards[collection.shard_of(key)]
            .update(operation)
            .unwrap_or_else(|e| panic!("test Qdrant: upsert: {e}"));
    }

    /// Write `collection` as a collection snapshot in Qdrant 1.18's layout (what `POST
    /// /collections/NAME/snapshots` writes): `config.json`, `version.info`, and per shard its
    /// files with each segment as `segments/<uuid>.tar` holding `snapshot/files/…`. The shards
    /// are flushed first, so the segments hold every point.
    pub fn write_snapshot(&self, collection: &str, to: &Path) {
        let collection = self
            .store
            .get(collection)
            .unwrap_or_else(|e| panic!("test Qdrant: {}", e.message()));
        let file = std::fs::File::create(to).unwrap_or_else(|e| fail("create", e));
        let mut tar = tar::Builder::new(std::io::BufWriter::new(file));
        let config = serde_json::to_vec(&collection.config).expect("config serialises");
        append_bytes(&mut tar, "config.json", &config);
        append_bytes(&mut tar, "version.info", b"0.4.2");
        for (i, shard) in collection.shards.iter().enumerate() {
            shard.flush();
            let dir = collection.dir.join(i.to_string());
            let entries = std::fs::read_dir(&dir).unwrap_or_else(|e| fail("read shard", e));
            for entry in entries {
                let path = entry.unwrap_or_else(|e| fail("read shard", e)).path();
                let name = path
                    .file_name()
                    .expect("a name")
                    .to_string_lossy()
                    .into_owned();
                if name != "segments" {
                    let inside = format!("{i}/{name}");
                    let added = if path.is_dir() {
                        tar.append_dir_all(&inside, &path)
                    } else {
                        tar.append_path_with_name(&path, &inside)
                    };
                    added.unwrap_or_else(|e| fail(&inside, e));
                    continue;
                }
                let segments = std::fs::read_dir(&path).unwrap_or_else(|e| fail("segments", e));
                for segment in segments {
                    let segment = segment.unwrap_or_else(|e| fail("segments", e)).path();
                    let id = segment
                        .file_name()
                        .expect("a name")
                        .to_string_lossy()
                        .into_owned();
                    let mut inner = tar::Builder::new(Vec::new());
                    inner
                        .append_dir_all("snapshot/files", &segment)
                        .unwrap_or_else(|e| fail(&id, e));
                    let inner = inner.into_inner().unwrap_or_else(|e| fail(&id, e));
                    append_bytes(&mut tar, &format!("{i}/segments/{id}.tar"), &inner);
                }
            }
        }
        tar.into_inner()
            .and_then(|mut w| std::io::Write::flush(&mut w))
            .unwrap_or_else(|e| fail("finish", e));
    }

    /// Stop serving: every connection is dropped, as when a server is killed. Data is kept.
    pub fn stop(&mut self) {
        if let Some(running) = self.running.take() {
            // The server thread may already be gone; then there is nobody left to tell.
            let _ = running.shutdown.send(());
            if running.thread.join().is_err() {
                panic!("test Qdrant: the server thread panicked");
            }
        }
    }

    /// Serve the same data on the same port again.
    pub fn restart(&mut self) {
        self.stop();
        self.serve();
    }

    fn serve(&mut self) {
        let (shutdown, on_shutdown) = oneshot::channel();
        let (bound, on_bound) = std::sync::mpsc::channel();
        let store = self.store.clone();
        let check = ApiKeyCheck(self.api_key.clone());
        let addr = self.addr;
        let thread = std::thread::Builder::new()
            .name(format!("qdrant-test-{}", addr.port()))
            .spawn(move || {
                let runtime = match tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(WORKERS)
                    .enable_all()
                    .build()
                {
                    Ok(runtime) => runtime,
                    Err(e) => {
                        let _ = bound.send(Err(e));
                        return;
                    }
                };
                runtime.block_on(async move {
                    let incoming = match listen(addr) {
                        Ok((incoming, addr)) => {
                            let _ = bound.send(Ok(addr));
                            incoming
                        }
                        Err(e) => {
                            let _ = bound.send(Err(e));
                            return;
                        }
                    };
                    let service = Service { store };
                    let router = tonic::transport::Server::builder()
                        .add_service(InterceptedService::new(
                            QdrantService::new(service.clone())
                                .send_compressed(CompressionEncoding::Gzip)
                                .accept_compressed(CompressionEncoding::Gzip)
                                .max_decoding_message_size(usize::MAX),
                            check.clone(),
                        ))
                        .add_service(InterceptedService::new(
                            CollectionsServer::new(service.clone())
                                .send_compressed(CompressionEncoding::Gzip)
                                .accept_compressed(CompressionEncoding::Gzip)
                                .max_decoding_message_size(usize::MAX),
                            check.clone(),
                        ))
                        .add_service(InterceptedService::new(
                            PointsServer::new(service)
                                .send_compressed(CompressionEncoding::Gzip)
                                .accept_compressed(CompressionEncoding::Gzip)
                                .max_decoding_message_size(usize::MAX),
                            check,
                        ));
                    // Whichever ends first: a serving error, or `stop`. Either way the runtime is
                    // dropped right after, which cuts every open connection.
                    tokio::select! {
                        served = router.serve_with_incoming(incoming) => {
                            if let Err(e) = served {
                                eprintln!("test Qdrant on {addr}: {e}");
                            }
                        }
                        _ = on_shutdown => {}
                    }
                });
                runtime.shutdown_timeout(STOP_GRACE);
            })
            .unwrap_or_else(|e| panic!("test Qdrant: cannot spawn the server thread: {e}"));
        match on_bound.recv() {
            Ok(Ok(addr)) => self.addr = addr,
            Ok(Err(e)) => panic!("test Qdrant: cannot listen on {addr}: {e}"),
            Err(_) => panic!("test Qdrant: the server thread died before listening"),
        }
        self.running = Some(Running { shutdown, thread });
    }
}

impl Drop for EdgeQdrant {
    fn drop(&mut self) {
        self.stop();
        // `store` (and with it every shard) drops before `storage` removes the directory.
    }
}

fn fail(what: &str, e: std::io::Error) -> ! {
    panic!("test Qdrant: snapshot {what}: {e}")
}

fn append_bytes<W: std::io::Write>(tar: &mut tar::Builder<W>, name: &str, bytes: &[u8]) {
    let mut header = tar::Header::new_gnu();
    header.set_mode(0o644);
    header.set_size(bytes.len() as u64);
    tar.append_data(&mut header, name, bytes)
        .unwrap_or_else(|e| fail(name, e));
}

/// Listen on `addr` with `SO_REUSEADDR`, so a restart gets its port back even while the
/// connections of the previous run linger in TIME_WAIT.
fn listen(addr: SocketAddr) -> std::io::Result<(TcpIncoming, SocketAddr)> {
    let socket = tokio::net::TcpSocket::new_v4()?;
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    let listener = socket.listen(1024)?;
    let addr = listener.local_addr()?;
    Ok((TcpIncoming::from(listener).with_nodelay(Some(true)), addr))
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        text.push_str(": ");
        text.push_str(&c.to_string());
        cause = c.source();
    }
    text
}

/// The real server's answers to a missing or a wrong key: `Unauthenticated`, with its messages.
#[derive(Clone)]
struct ApiKeyCheck(Option<Arc<str>>);

impl Interceptor for ApiKeyCheck {
    fn call(&mut self, request: Request<()>) -> Result<Request<()>, Status> {
        let Some(expected) = &self.0 else {
            return Ok(request);
        };
        match request.metadata().get("api-key").map(|v| v.to_str()) {
            None => Err(Status::unauthenticated(
                "Must provide an API key or an Authorization bearer token",
            )),
            Some(Ok(given)) if given == &**expected => Ok(request),
            Some(_) => Err(Status::unauthenticated("Invalid API key or JWT")),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Storage

struct Store {
    dir: PathBuf,
    collections: RwLock<BTreeMap<String, Arc<Collection>>>,
    next_dir: AtomicU64,
    next_operation: AtomicU64,
}

struct Collection {
    config: CollectionConfigFile,
    shards: Vec<EdgeShard>,
    dir: PathBuf,
}

impl Store {
    fn new_dir(&self) -> PathBuf {
        self.dir.join(format!(
            "c{}",
            self.next_dir.fetch_add(1, Ordering::Relaxed)
        ))
    }

    fn get(&self, name: &str) -> Result<Arc<Collection>, Status> {
        let collections = self.collections.read().unwrap_or_else(|e| e.into_inner());
        collections.get(name).cloned().ok_or_else(|| {
            Status::not_found(format!("Not found: Collection `{name}` doesn't exist!"))
        })
    }
}

impl Collection {
    /// The shard a point lives on. Qdrant uses a hash ring; any stable hash spreads the ids
    /// the same way for the purpose of these tests.
    fn shard_of(&self, key: PointKey) -> usize {
        let hash = match key {
            PointKey::Num(n) => xxhash_rust::xxh3::xxh3_64(&n.to_le_bytes()),
            PointKey::Uuid(u) => xxhash_rust::xxh3::xxh3_64(&u.to_be_bytes()),
        };
        (hash % self.shards.len() as u64) as usize
    }
}

/// Run an engine call off the async workers.
///
/// A call cancelled because `stop` is dropping the runtime answers `Unavailable`: a real server
/// going down mid-request leaves the client with a broken connection, which tonic reports as
/// `Unavailable`, never with an `Internal` answer.
async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, Status> + Send + 'static,
) -> Result<T, Status> {
    tokio::task::spawn_blocking(work).await.map_err(|e| {
        if e.is_cancelled() {
            Status::unavailable("test Qdrant: shutting down")
        } else {
            Status::internal(format!("engine task failed: {e}"))
        }
    })?
}

fn engine_error(e: EdgeError) -> Status {
    match e {
        EdgeError::BadPoint { .. } | EdgeError::PointId(_) | EdgeError::BadValue(_) => {
            Status::invalid_argument(format!("Wrong input: {}", error_chain(&e)))
        }
        _ => Status::internal(format!("Service internal error: {}", error_chain(&e))),
    }
}

fn elapsed(start: Instant) -> f64 {
    start.elapsed().as_secs_f64()
}

// ---------------------------------------------------------------------------------------------
// Creating collections: the request, with the server's defaults, as a config file + engine config

fn distance_from_grpc(distance: i32) -> Result<Distance, Status> {
    match grpc::Distance::try_from(distance) {
        Ok(grpc::Distance::Cosine) => Ok(Distance::Cosine),
        Ok(grpc::Distance::Euclid) => Ok(Distance::Euclid),
        Ok(grpc::Distance::Dot) => Ok(Distance::Dot),
        Ok(grpc::Distance::Manhattan) => Ok(Distance::Manhattan),
        _ => Err(Status::invalid_argument(format!(
            "Malformed distance parameter: {distance}"
        ))),
    }
}

fn datatype_from_grpc(datatype: Option<i32>) -> Result<Option<VectorStorageDatatype>, Status> {
    let Some(datatype) = datatype else {
        return Ok(None);
    };
    match grpc::Datatype::try_from(datatype) {
        Ok(grpc::Datatype::Default) => Ok(None),
        Ok(grpc::Datatype::Float32) => Ok(Some(VectorStorageDatatype::Float32)),
        Ok(grpc::Datatype::Float16) => Ok(Some(VectorStorageDatatype::Float16)),
        Ok(grpc::Datatype::Uint8) => Ok(Some(VectorStorageDatatype::Uint8)),
        Ok(grpc::Datatype::Turbo4) => Ok(Some(VectorStorageDatatype::Turbo4)),
        _ => Err(Status::invalid_argument(format!(
            "Unknown datatype: {datatype}"
        ))),
    }
}

#[allow(deprecated)]
fn hnsw_diff_from_grpc(diff: &grpc::HnswConfigDiff) -> HnswDiffFile {
    HnswDiffFile {
        m: diff.m,
        ef_construct: diff.ef_construct,
        full_scan_threshold: diff.full_scan_threshold,
        max_indexing_threads: diff.max_indexing_threads,
        on_disk: diff.on_disk,
        payload_m: diff.payload_m,
    }
}

#[allow(deprecated)]
fn vector_params_from_grpc(params: &grpc::VectorParams) -> Result<VectorParamsFile, Status> {
    if params.size == 0 {
        return Err(Status::invalid_argument(
            "Validation error in body: [size: must be >= 1]",
        ));
    }
    Ok(VectorParamsFile {
        size: params.size,
        distance: distance_from_grpc(params.distance)?,
        hnsw_config: params.hnsw_config.as_ref().map(hnsw_diff_from_grpc),
        on_disk: params.on_disk,
        datatype: datatype_from_grpc(params.datatype)?,
        multivector_config: params
            .multivector_config
            .map(|_| MultiVectorConfig::default()),
    })
}

#[allow(deprecated)]
fn sparse_params_from_grpc(
    params: &grpc::SparseVectorParams,
) -> Result<SparseVectorParamsFile, Status> {
    let index = match &params.index {
        None => None,
        Some(index) => Some(SparseIndexFile {
            full_scan_threshold: index.full_scan_threshold,
            on_disk: index.on_disk,
            datatype: datatype_from_grpc(index.datatype)?,
        }),
    };
    let modifier = match params.modifier.map(grpc::Modifier::try_from) {
        None => None,
        Some(Ok(grpc::Modifier::None)) => Some(Modifier::None),
        Some(Ok(grpc::Modifier::Idf)) => Some(Modifier::Idf),
        Some(Err(_)) => return Err(Status::invalid_argument("Unknown sparse vector modifier")),
    };
    Ok(SparseVectorParamsFile { index, modifier })
}

/// The collection's stored configuration: the request over the server's defaults.
#[allow(deprecated)]
fn config_from_create(request: &grpc::CreateCollection) -> Result<CollectionConfigFile, Status> {
    let vectors = match request
        .vectors_config
        .as_ref()
        .and_then(|v| v.config.as_ref())
    {
        None => VectorsConfigFile::Multi(BTreeMap::new()),
        Some(vectors_config::Config::Params(p)) => {
            VectorsConfigFile::Single(vector_params_from_grpc(p)?)
        }
        Some(vectors_config::Config::ParamsMap(map)) => VectorsConfigFile::Multi(
            map.map
                .iter()
                .map(|(k, p)| vector_params_from_grpc(p).map(|p| (k.clone(), p)))
                .collect::<Result<_, _>>()?,
        ),
    };
    let sparse_vectors = match &request.sparse_vectors_config {
        None => None,
        Some(sparse) => Some(
            sparse
                .map
                .iter()
                .map(|(k, p)| sparse_params_from_grpc(p).map(|p| (k.clone(), p)))
                .collect::<Result<_, _>>()?,
        ),
    };
    let hnsw = request
        .hnsw_config
        .as_ref()
        .map(hnsw_diff_from_grpc)
        .unwrap_or_default();
    let to_usize = |v: Option<u64>, default: usize| v.map_or(default, |v| v as usize);
    let wal = request.wal_config.unwrap_or_default();
    let optimizers = request.optimizers_config.unwrap_or_default();
    Ok(CollectionConfigFile {
        params: CollectionParamsFile {
            vectors,
            sparse_vectors,
            shard_number: request.shard_number.unwrap_or(1).max(1),
            replication_factor: request.replication_factor.unwrap_or(1),
            write_consistency_factor: request.write_consistency_factor.unwrap_or(1),
            on_disk_payload: request.on_disk_payload.unwrap_or(true),
        },
        hnsw_config: HnswIndexConfig {
            m: to_usize(hnsw.m, 16),
            ef_construct: to_usize(hnsw.ef_construct, 100),
            full_scan_threshold: to_usize(hnsw.full_scan_threshold, 10_000),
            max_indexing_threads: to_usize(hnsw.max_indexing_threads, 0),
            on_disk: Some(hnsw.on_disk.unwrap_or(false)),
            payload_m: hnsw.payload_m.map(|m| m as usize),
            inline_storage: None,
        },
        optimizer_config: Some(OptimizerConfigFile {
            deleted_threshold: optimizers.deleted_threshold.unwrap_or(0.2),
            vacuum_min_vector_number: optimizers.vacuum_min_vector_number.unwrap_or(1000),
            default_segment_number: optimizers.default_segment_number.unwrap_or(0),
            max_segment_size: optimizers.max_segment_size,
            memmap_threshold: optimizers.memmap_threshold,
            indexing_threshold: Some(optimizers.indexing_threshold.unwrap_or(10_000)),
            flush_interval_sec: optimizers.flush_interval_sec.unwrap_or(5),
            max_optimization_threads: None,
        }),
        wal_config: Some(WalConfigFile {
            wal_capacity_mb: wal.wal_capacity_mb.unwrap_or(32),
            wal_segments_ahead: wal.wal_segments_ahead.unwrap_or(0),
            wal_retain_closed: wal.wal_retain_closed.unwrap_or(1),
        }),
    })
}

/// The engine's configuration for the same collection (the unnamed vector is named "").
fn edge_config(config: &CollectionConfigFile) -> EdgeConfig {
    let dense = |p: &VectorParamsFile| EdgeVectorParams {
        size: p.size as usize,
        distance: p.distance,
        on_disk: p.on_disk,
        multivector_config: p.multivector_config,
        datatype: p.datatype,
        quantization_config: None,
        hnsw_config: None,
    };
    let vectors = match &config.params.vectors {
        VectorsConfigFile::Single(p) => HashMap::from([(String::new(), dense(p))]),
        VectorsConfigFile::Multi(map) => map.iter().map(|(k, p)| (k.clone(), dense(p))).collect(),
    };
    let sparse_vectors = config
        .params
        .sparse_vectors
        .iter()
        .flatten()
        .map(|(k, p)| {
            let index = p.index.unwrap_or_default();
            let params = EdgeSparseVectorParams {
                full_scan_threshold: index.full_scan_threshold.map(|n| n as usize),
                on_disk: index.on_disk,
                modifier: p.modifier,
                datatype: index.datatype,
            };
            (k.clone(), params)
        })
        .collect();
    EdgeConfig {
        on_disk_payload: config.params.on_disk_payload,
        vectors,
        sparse_vectors,
        hnsw_config: config.hnsw_config,
        quantization_config: None,
        optimizers: EdgeOptimizersConfig::default(),
        wal_options: None,
    }
}

// ---------------------------------------------------------------------------------------------
// Services

#[derive(Clone)]
struct Service {
    store: Arc<Store>,
}

/// Implement a generated service trait: the given methods, plus `Unimplemented` for the rest.
macro_rules! service {
    (
        impl $trait:ident for Service { $($method:item)* }
        unimplemented { $($name:ident($req:ident) -> $resp:ident;)* }
    ) => {
        #[tonic::async_trait]
        impl $trait for Service {
            $($method)*
            $(
                async fn $name(
                    &self,
                    _request: Request<grpc::$req>,
                ) -> Result<Response<grpc::$resp>, Status> {
                    Err(Status::unimplemented(concat!(
                        stringify!($trait), "/", stringify!($name),
                        " is not served by the test Qdrant"
                    )))
                }
            )*
        }
    };
}

service! {
    impl Qdrant for Service {
        async fn health_check(
            &self,
            _request: Request<grpc::HealthCheckRequest>,
        ) -> Result<Response<grpc::HealthCheckReply>, Status> {
            Ok(Response::new(grpc::HealthCheckReply {
                title: "qdrant - vector search engine".into(),
                version: VERSION.into(),
                commit: None,
            }))
        }
    }
    unimplemented {}
}

service! {
    impl Collections for Service {
        async fn get(
            &self,
            request: Request<grpc::GetCollectionInfoRequest>,
        ) -> Result<Response<grpc::GetCollectionInfoResponse>, Status> {
            let start = Instant::now();
            let collection = self.store.get(&request.get_ref().collection_name)?;
            let info = blocking(move || Ok(edge::config_file::collection_info(&collection.config, &collection.shards))).await?;
            Ok(Response::new(grpc::GetCollectionInfoResponse { result: Some(info), time: elapsed(start) }))
        }

        async fn list(
            &self,
            _request: Request<grpc::ListCollectionsRequest>,
        ) -> Result<Response<grpc::ListCollectionsResponse>, Status> {
            let start = Instant::now();
            let collections = self.store.collections.read().unwrap_or_else(|e| e.into_inner());
            let collections = collections
                .keys()
                .map(|name| grpc::CollectionDescription { name: name.clone() })
                .collect();
            Ok(Response::new(grpc::ListCollectionsResponse { collections, time: elapsed(start) }))
        }

        async fn create(
            &self,
            request: Request<grpc::CreateCollection>,
        ) -> Result<Response<grpc::CollectionOperationResponse>, Status> {
            let start = Instant::now();
            let request = request.into_inner();
            let name = request.collection_name.clone();
            if self.store.get(&name).is_ok() {
                return Err(Status::invalid_argument(format!(
                    "Wrong input: Collection `{name}` already exists!"
                )));
            }
            let config = config_from_create(&request)?;
            let store = self.store.clone();
            blocking(move || {
                let dir = store.new_dir();
                let engine = edge_config(&config);
                let shards = (0..config.params.shard_number)
                    .map(|i| {
                        let path = dir.join(i.to_string());
                        std::fs::create_dir_all(&path)
                            .map_err(|e| Status::internal(format!("cannot create {}: {e}", path.display())))?;
                        EdgeShard::new(&path, engine.clone())
                            .map_err(|e| Status::invalid_argument(format!("Wrong input: {e}")))
                    })
                    .collect::<Result<Vec<_>, _>>()?;
                let mut collections = store.collections.write().unwrap_or_else(|e| e.into_inner());
                if collections.contains_key(&name) {
                    return Err(Status::invalid_argument(format!(
                        "Wrong input: Collection `{name}` already exists!"
                    )));
                }
                collections.insert(name, Arc::new(Collection { config, shards, dir }));
                Ok(())
            })
            .await?;
            Ok(Response::new(grpc::CollectionOperationResponse { result: true, time: elapsed(start) }))
        }

        async fn delete(
            &self,
            request: Request<grpc::DeleteCollection>,
        ) -> Result<Response<grpc::CollectionOperationResponse>, Status> {
            let start = Instant::now();
            let removed = {
                let mut collections = self.store.collections.write().unwrap_or_else(|e| e.into_inner());
                collections.remove(&request.get_ref().collection_name)
            };
            let result = removed.is_some();
            // Free the disk now unless a request still reads the collection; the temp dir goes
            // with the server in any case.
            if let Some(collection) = removed.and_then(|c| Arc::try_unwrap(c).ok()) {
                blocking(move || {
                    let dir = collection.dir.clone();
                    drop(collection);
                    std::fs::remove_dir_all(&dir)
                        .map_err(|e| Status::internal(format!("cannot remove {}: {e}", dir.display())))
                })
                .await?;
            }
            Ok(Response::new(grpc::CollectionOperationResponse { result, time: elapsed(start) }))
        }

        async fn collection_exists(
            &self,
            request: Request<grpc::CollectionExistsRequest>,
        ) -> Result<Response<grpc::CollectionExistsResponse>, Status> {
            let start = Instant::now();
            let exists = self.store.get(&request.get_ref().collection_name).is_ok();
            Ok(Response::new(grpc::CollectionExistsResponse {
                result: Some(grpc::CollectionExists { exists }),
                time: elapsed(start),
            }))
        }
    }
    unimplemented {
        update(UpdateCollection) -> CollectionOperationResponse;
        update_aliases(ChangeAliases) -> CollectionOperationResponse;
        list_collection_aliases(ListCollectionAliasesRequest) -> ListAliasesResponse;
        list_aliases(ListAliasesRequest) -> ListAliasesResponse;
        collection_cluster_info(CollectionClusterInfoRequest) -> CollectionClusterInfoResponse;
        update_collection_cluster_setup(UpdateCollectionClusterSetupRequest) -> UpdateCollectionClusterSetupResponse;
        create_shard_key(CreateShardKeyRequest) -> CreateShardKeyResponse;
        delete_shard_key(DeleteShardKeyRequest) -> DeleteShardKeyResponse;
        list_shard_keys(ListShardKeysRequest) -> ListShardKeysResponse;
    }
}

service! {
    impl Points for Service {
        async fn upsert(
            &self,
            request: Request<grpc::UpsertPoints>,
        ) -> Result<Response<grpc::PointsOperationResponse>, Status> {
            let start = Instant::now();
            let request = request.into_inner();
            if request.update_filter.is_some() {
                return Err(Status::unimplemented("conditional upserts are not served by the test Qdrant"));
            }
            let collection = self.store.get(&request.collection_name)?;
            let operation_id = self.store.next_operation.fetch_add(1, Ordering::Relaxed);
            blocking(move || {
                let mut per_shard = vec![Vec::new(); collection.shards.len()];
                for point in request.points {
                    let key = PointKey::from_proto(point.id.as_ref())
                        .map_err(|e| Status::invalid_argument(format!("Wrong input: {e}")))?;
                    per_shard[collection.shard_of(key)].push(point_to_edge(point).map_err(engine_error)?);
                }
                for (shard, points) in collection.shards.iter().zip(per_shard) {
                    if points.is_empty() {
                        continue;
                    }
                    let operation = UpdateOperation::PointOperation(PointOperations::UpsertPoints(
                        PointInsertOperations::PointsList(points),
                    ));
                    shard
                        .update(operation)
                        .map_err(|e| Status::invalid_argument(format!("Wrong input: {e}")))?;
                }
                Ok(())
            })
            .await?;
            Ok(Response::new(grpc::PointsOperationResponse {
                result: Some(grpc::UpdateResult {
                    operation_id: Some(operation_id),
                    status: grpc::UpdateStatus::Completed as i32,
                }),
                time: elapsed(start),
                usage: None,
            }))
        }

        async fn get(
            &self,
            request: Request<grpc::GetPoints>,
        ) -> Result<Response<grpc::GetResponse>, Status> {
            let start = Instant::now();
            let request = request.into_inner();
            let collection = self.store.get(&request.collection_name)?;
            let with_payload = payload_selector(request.with_payload);
            let with_vector = vector_selector(request.with_vectors);
            let mut keys = Vec::with_capacity(request.ids.len());
            for id in &request.ids {
                let key = PointKey::from_proto(Some(id))
                    .map_err(|e| Status::invalid_argument(format!("Wrong input: {e}")))?;
                if !keys.contains(&key) {
                    keys.push(key);
                }
            }
            let result = blocking(move || {
                let mut found = HashMap::new();
                for shard in &collection.shards {
                    let ids: Vec<_> = keys.iter().map(|k| edge::key_to_edge(*k)).collect();
                    let records = shard
                        .retrieve(&ids, Some(with_payload.clone()), Some(with_vector.clone()))
                        .map_err(|e| Status::internal(format!("Service internal error: {e}")))?;
                    found.extend(records.into_iter().map(|r| (edge::key_from_edge(r.id), r)));
                }
                Ok(keys.iter().filter_map(|k| found.remove(k)).map(edge::convert::record_to_grpc).collect())
            })
            .await?;
            Ok(Response::new(grpc::GetResponse { result, time: elapsed(start), usage: None }))
        }

        async fn scroll(
            &self,
            request: Request<grpc::ScrollPoints>,
        ) -> Result<Response<grpc::ScrollResponse>, Status> {
            let start = Instant::now();
            let request = request.into_inner();
            if request.filter.is_some() || request.order_by.is_some() {
                return Err(Status::unimplemented(
                    "filtered or ordered scrolls are not served by the test Qdrant",
                ));
            }
            let collection = self.store.get(&request.collection_name)?;
            let limit = request.limit.unwrap_or(10) as usize;
            if limit == 0 {
                return Err(Status::invalid_argument("Validation error in body: [limit: must be >= 1]"));
            }
            let offset = match &request.offset {
                None => None,
                Some(id) => Some(
                    PointKey::from_proto(Some(id))
                        .map_err(|e| Status::invalid_argument(format!("Wrong input: {e}")))?,
                ),
            };
            let with_payload = payload_selector(request.with_payload);
            let with_vector = vector_selector(request.with_vectors);
            let page = blocking(move || {
                edge::shard::scroll_shards(&collection.shards, offset, limit, &with_payload, &with_vector)
                    .map_err(engine_error)
            })
            .await?;
            Ok(Response::new(grpc::ScrollResponse {
                next_page_offset: page.next_offset.map(PointKey::to_proto),
                result: page.records.into_iter().map(edge::convert::record_to_grpc).collect(),
                time: elapsed(start),
                usage: None,
            }))
        }

        async fn count(
            &self,
            request: Request<grpc::CountPoints>,
        ) -> Result<Response<grpc::CountResponse>, Status> {
            let start = Instant::now();
            let request = request.into_inner();
            if request.filter.is_some() {
                return Err(Status::unimplemented("filtered counts are not served by the test Qdrant"));
            }
            let collection = self.store.get(&request.collection_name)?;
            let count = blocking(move || edge::shard::count_shards(&collection.shards).map_err(engine_error)).await?;
            Ok(Response::new(grpc::CountResponse {
                result: Some(grpc::CountResult { count }),
                time: elapsed(start),
                usage: None,
            }))
        }
    }
    unimplemented {
        delete(DeletePoints) -> PointsOperationResponse;
        update_vectors(UpdatePointVectors) -> PointsOperationResponse;
        delete_vectors(DeletePointVectors) -> PointsOperationResponse;
        set_payload(SetPayloadPoints) -> PointsOperationResponse;
        overwrite_payload(SetPayloadPoints) -> PointsOperationResponse;
        delete_payload(DeletePayloadPoints) -> PointsOperationResponse;
        clear_payload(ClearPayloadPoints) -> PointsOperationResponse;
        create_field_index(CreateFieldIndexCollection) -> PointsOperationResponse;
        delete_field_index(DeleteFieldIndexCollection) -> PointsOperationResponse;
        create_vector_name(CreateVectorNameRequest) -> PointsOperationResponse;
        delete_vector_name(DeleteVectorNameRequest) -> PointsOperationResponse;
        search(SearchPoints) -> SearchResponse;
        search_batch(SearchBatchPoints) -> SearchBatchResponse;
        search_groups(SearchPointGroups) -> SearchGroupsResponse;
        recommend(RecommendPoints) -> RecommendResponse;
        recommend_batch(RecommendBatchPoints) -> RecommendBatchResponse;
        recommend_groups(RecommendPointGroups) -> RecommendGroupsResponse;
        discover(DiscoverPoints) -> DiscoverResponse;
        discover_batch(DiscoverBatchPoints) -> DiscoverBatchResponse;
        update_batch(UpdateBatchPoints) -> UpdateBatchResponse;
        query(QueryPoints) -> QueryResponse;
        query_batch(QueryBatchPoints) -> QueryBatchResponse;
        query_groups(QueryPointGroups) -> QueryGroupsResponse;
        facet(FacetCounts) -> FacetResponse;
        search_matrix_pairs(SearchMatrixPoints) -> SearchMatrixPairsResponse;
        search_matrix_offsets(SearchMatrixPoints) -> SearchMatrixOffsetsResponse;
    }
}

// ---------------------------------------------------------------------------------------------
// Requests into the engine: a client's points and selectors as the engine takes them, the way
// the real server converts them (`lib/api/src/conversions`). Only this server needs them.

/// A gRPC value as the server stores it: a value without a kind is `null`, a non-finite double
/// is refused (JSON has no NaN).
pub fn grpc_to_json(value: grpc::Value) -> Result<serde_json::Value, EdgeError> {
    Ok(match value.kind {
        None | Some(Kind::NullValue(_)) => serde_json::Value::Null,
        Some(Kind::BoolValue(b)) => serde_json::Value::Bool(b),
        Some(Kind::IntegerValue(i)) => serde_json::Value::Number(i.into()),
        Some(Kind::DoubleValue(d)) => serde_json::Number::from_f64(d)
            .map(serde_json::Value::Number)
            .ok_or_else(|| EdgeError::BadValue(format!("{d} is not a JSON number")))?,
        Some(Kind::StringValue(s)) => serde_json::Value::String(s),
        Some(Kind::ListValue(list)) => serde_json::Value::Array(
            list.values
                .into_iter()
                .map(grpc_to_json)
                .collect::<Result<_, _>>()?,
        ),
        Some(Kind::StructValue(s)) => serde_json::Value::Object(
            s.fields
                .into_iter()
                .map(|(k, v)| grpc_to_json(v).map(|v| (k, v)))
                .collect::<Result<_, _>>()?,
        ),
    })
}

fn bad_point(id: &grpc::PointId, reason: impl Into<String>) -> EdgeError {
    let id = match &id.point_id_options {
        Some(PointIdOptions::Num(n)) => n.to_string(),
        Some(PointIdOptions::Uuid(u)) => u.clone(),
        None => String::from("<none>"),
    };
    EdgeError::BadPoint {
        id,
        reason: reason.into(),
    }
}

/// One input vector, whichever of the two wire forms the client used (the `vector` oneof, or
/// the deprecated `data` + `indices` + `vectors_count`).
#[allow(deprecated)]
fn input_vector(id: &grpc::PointId, vector: grpc::Vector) -> Result<Vector, EdgeError> {
    use grpc::vector::Vector as In;
    let engine = |e: OperationError| bad_point(id, e.to_string());
    match vector.vector {
        Some(In::Dense(dense)) => Ok(Vector::new_dense(dense.data)),
        Some(In::Sparse(sparse)) => {
            Vector::new_sparse(sparse.indices, sparse.values).map_err(engine)
        }
        Some(In::MultiDense(multi)) => Vector::new_multi(
            multi
                .vectors
                .into_iter()
                .map(|v| v.data)
                .collect::<Vec<_>>(),
        )
        .map_err(engine),
        Some(In::Document(_) | In::Image(_) | In::Object(_)) => Err(bad_point(
            id,
            "inference inputs need a server with an embedding model",
        )),
        None => match (vector.indices, vector.vectors_count) {
            (Some(indices), _) => Vector::new_sparse(indices.data, vector.data).map_err(engine),
            (None, Some(0)) => Err(bad_point(id, "vectors_count must be greater than 0")),
            (None, Some(count)) => {
                let dim = vector.data.len() / count as usize;
                if dim == 0 || dim * count as usize != vector.data.len() {
                    return Err(bad_point(
                        id,
                        "multi-vector data is not divisible by its count",
                    ));
                }
                let rows = vector
                    .data
                    .chunks(dim)
                    .map(<[f32]>::to_vec)
                    .collect::<Vec<_>>();
                Vector::new_multi(rows).map_err(engine)
            }
            (None, None) => Ok(Vector::new_dense(vector.data)),
        },
    }
}

/// A client's `PointStruct` as the engine's upsert input. Payload numbers keep their kind.
fn point_to_edge(point: grpc::PointStruct) -> Result<PointStructPersisted, EdgeError> {
    let proto_id = point.id.clone().unwrap_or_default();
    let key = PointKey::from_proto(point.id.as_ref())?;
    let vectors = match point.vectors.and_then(|v| v.vectors_options) {
        None => return Err(bad_point(&proto_id, "no vectors given")),
        Some(grpc::vectors::VectorsOptions::Vector(vector)) => {
            match input_vector(&proto_id, vector)?.0 {
                VectorInternal::Dense(dense) => VectorStructInternal::Single(dense),
                VectorInternal::MultiDense(multi) => VectorStructInternal::MultiDense(multi),
                VectorInternal::Sparse(_) => {
                    return Err(bad_point(&proto_id, "a sparse vector must be named"));
                }
            }
        }
        Some(grpc::vectors::VectorsOptions::Vectors(named)) => VectorStructInternal::Named(
            named
                .vectors
                .into_iter()
                .map(|(name, v)| input_vector(&proto_id, v).map(|v| (name, v.0)))
                .collect::<Result<_, _>>()?,
        ),
    };
    let payload = point
        .payload
        .into_iter()
        .map(|(k, v)| grpc_to_json(v).map(|v| (k, v)))
        .collect::<Result<serde_json::Map<_, _>, _>>()
        .map_err(|e| bad_point(&proto_id, e.to_string()))?;
    Ok(PointStructPersisted {
        id: key_to_edge(key),
        vector: VectorStructPersisted::from(vectors),
        payload: Some(Payload(payload)),
    })
}

/// What a request's `with_payload` asks for; absent means all of it, as on the server.
fn payload_selector(selector: Option<grpc::WithPayloadSelector>) -> WithPayloadInterface {
    let paths = |fields: Vec<String>| -> Vec<JsonPath> {
        fields
            .iter()
            .filter_map(|f| JsonPath::try_from(f.as_str()).ok())
            .collect()
    };
    match selector.and_then(|s| s.selector_options) {
        None => WithPayloadInterface::Bool(true),
        Some(with_payload_selector::SelectorOptions::Enable(on)) => WithPayloadInterface::Bool(on),
        Some(with_payload_selector::SelectorOptions::Include(inc)) => {
            WithPayloadInterface::Selector(PayloadSelector::Include(PayloadSelectorInclude {
                include: paths(inc.fields),
            }))
        }
        Some(with_payload_selector::SelectorOptions::Exclude(exc)) => {
            WithPayloadInterface::Selector(PayloadSelector::Exclude(PayloadSelectorExclude {
                exclude: paths(exc.fields),
            }))
        }
    }
}

/// What a request's `with_vectors` asks for; absent means none, as on the server.
fn vector_selector(selector: Option<grpc::WithVectorsSelector>) -> WithVector {
    match selector.and_then(|s| s.selector_options) {
        None => WithVector::Bool(false),
        Some(with_vectors_selector::SelectorOptions::Enable(on)) => WithVector::Bool(on),
        Some(with_vectors_selector::SelectorOptions::Include(names)) => {
            WithVector::Selector(names.names)
        }
    }
}

#[cfg(test)]
mod tests {
    use qdrant2pg::source::edge::convert::json_to_grpc;

    use super::*;

    #[test]
    fn grpc_values_round_trip_and_nan_is_refused() {
        let json: serde_json::Value =
            serde_json::from_str(r#"{"a": null, "b": [true, "x\u0000y", {"c": -2}], "d": 2.5}"#)
                .unwrap();
        assert_eq!(grpc_to_json(json_to_grpc(json.clone())).unwrap(), json);
        assert!(
            grpc_to_json(grpc::Value {
                kind: Some(Kind::DoubleValue(f64::NAN))
            })
            .is_err()
        );
        assert_eq!(
            grpc_to_json(grpc::Value { kind: None }).unwrap(),
            serde_json::Value::Null
        );
    }

    #[test]
    #[allow(deprecated)]
    fn deprecated_input_forms_are_understood() {
        let id = PointKey::Num(7).to_proto();
        let multi = grpc::Vector {
            data: vec![1.0, 2.0, 3.0, 4.0, 5.0, 6.0],
            vectors_count: Some(3),
            ..Default::default()
        };
        let VectorInternal::MultiDense(m) = input_vector(&id, multi).unwrap().0 else {
            panic!("not multi")
        };
        assert_eq!(m.dim, 2);
        let bad = grpc::Vector {
            data: vec![1.0, 2.0, 3.0],
            vectors_count: Some(2),
            ..Default::default()
        };
        assert!(input_vector(&id, bad).is_err());
        let sparse = grpc::Vector {
            data: vec![0.5],
            indices: Some(grpc::SparseIndices { data: vec![9] }),
            ..Default::default()
        };
        assert!(matches!(
            input_vector(&id, sparse).unwrap().0,
            VectorInternal::Sparse(_)
        ));
    }
}
