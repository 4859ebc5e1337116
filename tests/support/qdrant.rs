//! The Qdrant the tests run against: the genuine server wherever it is installed, the
//! in-process one only where it is not.
//!
//! [`QdrantServer::start`] gives a genuine Qdrant 1.18.3 (`support::genuine_qdrant`) when its
//! binary is installed (`scripts/install-test-deps.sh`). Without it, the test prints one line
//! saying so and runs against the in-process server on Qdrant's engine (`support::edge_qdrant`),
//! except under `CI=true`, where a missing genuine server fails the test: CI must exercise the
//! real thing. Tests of what only the genuine server has (its REST API, snapshots it makes) ask
//! for [`QdrantServer::genuine`], which is `None`, after the same one line, where it is missing.
//!
//! Both kinds take the same calls, so a test is written once: data goes in through the gRPC API
//! (`support::flows::client`), [`QdrantServer::upsert_json`] (REST for the genuine server),
//! [`QdrantServer::load_snapshot`] (an upload), and comes out through the CLI under test.

use std::path::Path;
use std::sync::Once;

use qdrant_client::qdrant::{
    self as grpc, point_id::PointIdOptions, vector::Vector as VectorKind, vectors::VectorsOptions,
};
use serde_json::{Map, Value as Json, json};

use super::edge_qdrant::EdgeQdrant;
use super::genuine_qdrant::{self, GenuineQdrant};
use super::tier::installed_or_skipped;

/// A Qdrant server for one test; dropping it stops it and removes its storage.
pub enum QdrantServer {
    Genuine(GenuineQdrant),
    InProcess(EdgeQdrant),
}

impl QdrantServer {
    /// The genuine server if installed, else the in-process one (see the module docs).
    pub fn start() -> QdrantServer {
        Self::launch(None)
    }

    /// A server that refuses every call without `api-key: <key>`.
    pub fn start_with_api_key(key: &str) -> QdrantServer {
        Self::launch(Some(key))
    }

    /// A genuine server, for tests of what only it has; `None` (the test is skipped, which it
    /// says in one line) where none is installed and `CI` is not `true`.
    pub fn genuine() -> Option<QdrantServer> {
        Self::genuine_with(None)
    }

    /// [`genuine`](Self::genuine), refusing every call without `api-key: <key>` when given.
    pub fn genuine_with(api_key: Option<&str>) -> Option<QdrantServer> {
        let bin = genuine_binary()?;
        Some(QdrantServer::Genuine(GenuineQdrant::start(bin, api_key)))
    }

    fn launch(api_key: Option<&str>) -> QdrantServer {
        match genuine_binary() {
            Some(bin) => QdrantServer::Genuine(GenuineQdrant::start(bin, api_key)),
            None => QdrantServer::InProcess(match api_key {
                Some(key) => EdgeQdrant::start_with_api_key(key),
                None => EdgeQdrant::start(),
            }),
        }
    }

    /// The gRPC address, `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        match self {
            QdrantServer::Genuine(server) => server.url(),
            QdrantServer::InProcess(server) => server.url(),
        }
    }

    /// The genuine server, for REST calls and snapshots it makes; `None` in process.
    pub fn as_genuine(&self) -> Option<&GenuineQdrant> {
        match self {
            QdrantServer::Genuine(server) => Some(server),
            QdrantServer::InProcess(_) => None,
        }
    }

    /// Loads a collection snapshot (`.snapshot`, or gzipped `.snapshot.gz`) as `collection`.
    pub fn load_snapshot(&self, collection: &str, snapshot: &Path) {
        match self {
            QdrantServer::Genuine(server) => server.upload_snapshot(collection, snapshot),
            QdrantServer::InProcess(server) => server.load_snapshot(collection, snapshot),
        }
    }

    /// Upserts one point whose payload is given as JSON, as Qdrant's REST API takes it: values
    /// gRPC cannot carry (integers above `i64::MAX`, nesting deeper than prost's recursion
    /// limit allows) reach the server as they are.
    pub fn upsert_json(
        &self,
        collection: &str,
        point: grpc::PointStruct,
        payload: Map<String, Json>,
    ) {
        match self {
            QdrantServer::Genuine(server) => {
                let mut rest = rest_point(&point);
                rest["payload"] = Json::Object(payload);
                server.upsert_points(collection, vec![rest]);
            }
            QdrantServer::InProcess(server) => server.upsert_json(collection, point, payload),
        }
    }

    /// A snapshot of `collection` at `to`: made by the server itself when genuine, written in
    /// Qdrant 1.18's layout by the in-process one.
    pub fn write_snapshot(&self, collection: &str, to: &Path) {
        match self {
            QdrantServer::Genuine(server) => server.download_snapshot(collection, to),
            QdrantServer::InProcess(server) => server.write_snapshot(collection, to),
        }
    }

    /// Stops serving at once, every connection dropped as when a server is killed; the data is
    /// kept for [`restart`](Self::restart).
    pub fn stop(&mut self) {
        match self {
            QdrantServer::Genuine(server) => server.kill(),
            QdrantServer::InProcess(server) => server.stop(),
        }
    }

    /// Serves the same data on the same port again.
    pub fn restart(&mut self) {
        match self {
            QdrantServer::Genuine(server) => server.restart(),
            QdrantServer::InProcess(server) => server.restart(),
        }
    }
}

/// The genuine binary, or `None` after one line saying why (a panic under `CI=true`).
fn genuine_binary() -> Option<&'static Path> {
    static SAID: Once = Once::new();
    installed_or_skipped(
        &SAID,
        "genuine Qdrant",
        genuine_qdrant::binary(),
        "tests use the in-process server and skip what only the genuine one can do",
    )
}

/// A gRPC point as the REST API spells it (id and vectors; the payload is the caller's).
fn rest_point(point: &grpc::PointStruct) -> Json {
    let id = match point
        .id
        .as_ref()
        .and_then(|id| id.point_id_options.as_ref())
    {
        Some(PointIdOptions::Num(n)) => json!(n),
        Some(PointIdOptions::Uuid(u)) => json!(u),
        None => panic!("a point without an id"),
    };
    let vector = match point
        .vectors
        .as_ref()
        .and_then(|v| v.vectors_options.as_ref())
    {
        None => json!({}),
        Some(VectorsOptions::Vector(vector)) => rest_vector(vector),
        Some(VectorsOptions::Vectors(named)) => Json::Object(
            named
                .vectors
                .iter()
                .map(|(name, v)| (name.clone(), rest_vector(v)))
                .collect(),
        ),
    };
    json!({ "id": id, "vector": vector })
}

#[allow(deprecated)]
fn rest_vector(vector: &grpc::Vector) -> Json {
    match &vector.vector {
        Some(VectorKind::Dense(dense)) => json!(dense.data),
        Some(VectorKind::Sparse(sparse)) => {
            json!({ "indices": sparse.indices, "values": sparse.values })
        }
        Some(VectorKind::MultiDense(multi)) => {
            Json::Array(multi.vectors.iter().map(|v| json!(v.data)).collect())
        }
        Some(other) => panic!("no REST form for {other:?} in the tests"),
        // The deprecated flat form: `data`, with `indices` for sparse and `vectors_count` rows
        // for a multivector.
        None => match (&vector.indices, vector.vectors_count) {
            (Some(indices), _) => json!({ "indices": indices.data, "values": vector.data }),
            (None, Some(rows)) if rows > 1 => Json::Array(
                vector
                    .data
                    .chunks(vector.data.len() / rows as usize)
                    .map(|row| json!(row))
                    .collect(),
            ),
            (None, _) => json!(vector.data),
        },
    }
}
