//! Multi-step set-ups several test areas share: a Qdrant server holding the real fixtures, and
//! a fixture collection moved into PostgreSQL by export + import.

use std::path::{Path, PathBuf};

use super::cli::{assert_ok, describe, qdrant2pg};
use super::pg::TestDb;
use super::qdrant::QdrantServer;

/// The three collections made by a genuine Qdrant 1.18.3 (see tests/fixtures).
pub const FIXTURES: [&str; 3] = ["fx_single", "fx_rich", "fx_sharded"];

pub fn fixtures_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/qdrant-1.18.3")
}

/// A test Qdrant server with every fixture snapshot loaded.
pub fn fixture_server() -> QdrantServer {
    let server = QdrantServer::start();
    for name in FIXTURES {
        server.load_snapshot(name, &fixtures_dir().join(format!("{name}.snapshot.gz")));
    }
    server
}

/// export → import of every collection of `server` with `dialect`.
pub fn export_import(server: &QdrantServer, db: &TestDb, out: &Path, dialect: &str) {
    let out = out.to_str().expect("utf-8");
    assert_ok(&qdrant2pg(&[
        "export",
        "--url",
        &server.url(),
        "--output",
        out,
        "--dialect",
        dialect,
        "--quiet",
    ]));
    assert_ok(&qdrant2pg(&[
        "import",
        "--dsn",
        &db.dsn(),
        "--data",
        out,
        "--dialect",
        dialect,
        "--quiet",
    ]));
}

/// A runtime for the async Qdrant client in tests.
pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime for the client")
}

/// The real Qdrant client, pointed at `server`.
pub fn client(server: &QdrantServer) -> qdrant_client::Qdrant {
    client_at(&server.url())
}

/// The real Qdrant client, pointed at the gRPC address `url`.
pub fn client_at(url: &str) -> qdrant_client::Qdrant {
    qdrant_client::Qdrant::from_url(url)
        .skip_compatibility_check()
        .build()
        .expect("a client")
}

/// Upserts `points` into `collection` through the real client and waits until they are applied.
pub fn upsert(
    rt: &tokio::runtime::Runtime,
    client: &qdrant_client::Qdrant,
    collection: &str,
    points: Vec<qdrant_client::qdrant::PointStruct>,
) {
    rt.block_on(client.upsert_points(qdrant_client::qdrant::UpsertPoints {
        collection_name: collection.into(),
        wait: Some(true),
        points,
        ..Default::default()
    }))
    .expect("upsert");
}

/// `verify --full extra…` of every collection of `server` against `db` says `collections`
/// identical.
pub fn assert_verifies(server: &QdrantServer, db: &TestDb, extra: &[&str], collections: usize) {
    let (url, dsn) = (server.url(), db.dsn());
    let mut args = vec!["verify", "--url", &url, "--dsn", &dsn, "--full", "--quiet"];
    args.extend_from_slice(extra);
    let out = qdrant2pg(&args);
    assert_ok(&out);
    assert_eq!(
        String::from_utf8_lossy(&out.stdout)
            .matches("identical")
            .count(),
        collections,
        "{}",
        describe(&out)
    );
}

/// Waits, while `child` (an import or migrate into `db`) runs, until the ledger holds `units`
/// rows matching the SQL condition `filter`, calling `watch` at each look; then kills it with
/// SIGKILL. Panics if the child ends first or the ledger shows no such progress in two minutes.
pub fn kill_9_once_the_ledger_holds(
    db: &TestDb,
    child: &mut std::process::Child,
    filter: &str,
    units: i64,
    mut watch: impl FnMut(),
) {
    let started = std::time::Instant::now();
    let mut client = db.client();
    let sql = format!("SELECT count(*) FROM public.qdrant2pg_ledger WHERE {filter}");
    loop {
        watch();
        // The ledger table may not exist yet.
        let loaded: Option<i64> = client.query_opt(&sql, &[]).ok().flatten().map(|r| r.get(0));
        if loaded.is_some_and(|n| n >= units) {
            break;
        }
        assert!(
            child.try_wait().expect("wait").is_none(),
            "the run finished before it could be killed"
        );
        assert!(
            started.elapsed() < std::time::Duration::from_secs(120),
            "no progress in the ledger"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    watch();
    child.kill().expect("kill"); // SIGKILL
    child.wait().expect("reap");
}

/// Rows and distinct ids of `table`.
pub fn counts(db: &TestDb, table: &str) -> (i64, i64) {
    let row = db
        .client()
        .query_one(
            &format!("SELECT count(*), count(DISTINCT id) FROM {table}"),
            &[],
        )
        .expect("count");
    (row.get(0), row.get(1))
}
