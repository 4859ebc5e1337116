//! `sync` against a genuine Qdrant that keeps being written: a writer thread upserts new
//! points, overwrites vectors, sets and deletes payload keys and deletes points through
//! Qdrant's own API at a steady rate, on integer and UUID ids, named dense and sparse vectors,
//! while `migrate` and then `sync` passes run; once it stops, a final `sync` must exit 0 and
//! `verify --full` must find both sides identical, with no id twice. The same on pgvector with
//! HNSW indexes built before the first pass (they are maintained by the writes; `verify
//! --search` passes on them after), and on Greenplum 6 with `--dialect adbpg`. Then the faults:
//! `sync` killed -9 mid-repair and run again, Qdrant killed mid-pass (exit 1, no row deleted),
//! and tables that no longer fit their collection (refused before anything is written, naming
//! the column).

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use qdrant_client::Qdrant;
use qdrant_client::qdrant::points_selector::PointsSelectorOneOf;
use qdrant_client::qdrant::{self as grpc, vectors_config};

use crate::support::cli::{assert_ok, command, describe, qdrant2pg};
use crate::support::flows::{client_at, counts, runtime, upsert};
use crate::support::greenplum::Greenplum;
use crate::support::pg::{PgCluster, TestDb};
use crate::support::qdrant::QdrantServer;
use crate::support::rng::Rng;
use crate::support::vectors::{dense, sparse};

/// Points per collection before the writer starts.
const POINTS: u64 = 3_000;
/// The writer's pace: one change every this long (each waits for Qdrant to apply it), a few
/// hundred changes a second.
const WRITE_EVERY: Duration = Duration::from_millis(3);

/// The two collections: the same shape, integer ids in one, UUIDs in the other.
const COLLECTIONS: [(&str, bool); 2] = [("live_int", false), ("live_uuid", true)];

fn point_id(uuid: bool, n: u64, rng: &mut Rng) -> grpc::PointId {
    if uuid {
        let bits = (u128::from(rng.next()) << 64) | u128::from(n);
        uuid::Uuid::from_u128(bits).to_string().into()
    } else {
        n.into()
    }
}

/// A point's vectors: `a` (8-d), `b` (4-d, absent from one point in five) and a sparse `s`.
fn vectors(rng: &mut Rng, only: Option<&str>) -> grpc::Vectors {
    let mut named = HashMap::new();
    if only.is_none_or(|v| v == "a") {
        named.insert("a".to_owned(), dense((0..8).map(|_| rng.unit()).collect()));
    }
    if only.is_none_or(|v| v == "b") && (only.is_some() || rng.below(5) != 0) {
        named.insert("b".to_owned(), dense((0..4).map(|_| rng.unit()).collect()));
    }
    if only.is_none_or(|v| v == "s") {
        let indices: Vec<u32> = (0..6).map(|_| rng.below(500) as u32).collect();
        named.insert("s".to_owned(), sparse(rng, indices));
    }
    grpc::Vectors {
        vectors_options: Some(grpc::vectors::VectorsOptions::Vectors(grpc::NamedVectors {
            vectors: named,
        })),
    }
}

fn payload(rng: &mut Rng, n: u64) -> HashMap<String, grpc::Value> {
    HashMap::from([
        ("n".to_owned(), grpc::Value::from(n as i64)),
        (
            "tag".to_owned(),
            grpc::Value::from(format!("t{}", rng.below(7))),
        ),
        ("x".to_owned(), grpc::Value::from(f64::from(rng.unit()))),
    ])
}

/// Creates both collections and loads [`POINTS`] points into each; the ids, per collection.
fn load(client: &Qdrant) -> Vec<Vec<grpc::PointId>> {
    let rt = runtime();
    let params = |size, distance: grpc::Distance| grpc::VectorParams {
        size,
        distance: distance as i32,
        ..Default::default()
    };
    let mut rng = Rng(11);
    let mut all = Vec::new();
    for (name, uuid) in COLLECTIONS {
        rt.block_on(client.create_collection(grpc::CreateCollection {
            collection_name: name.into(),
            vectors_config: Some(grpc::VectorsConfig {
                config: Some(vectors_config::Config::ParamsMap(grpc::VectorParamsMap {
                    map: HashMap::from([
                        ("a".to_owned(), params(8, grpc::Distance::Cosine)),
                        ("b".to_owned(), params(4, grpc::Distance::Euclid)),
                    ]),
                })),
            }),
            sparse_vectors_config: Some(grpc::SparseVectorConfig {
                map: HashMap::from([("s".to_owned(), grpc::SparseVectorParams::default())]),
            }),
            ..Default::default()
        }))
        .expect("create collection");
        let ids: Vec<grpc::PointId> = (0..POINTS).map(|n| point_id(uuid, n, &mut rng)).collect();
        for chunk in ids.chunks(500) {
            let points = chunk
                .iter()
                .enumerate()
                .map(|(i, id)| grpc::PointStruct {
                    id: Some(id.clone()),
                    vectors: Some(vectors(&mut rng, None)),
                    payload: payload(&mut rng, i as u64),
                })
                .collect();
            upsert(&rt, client, name, points);
        }
        all.push(ids);
    }
    all
}

/// A thread changing both collections through Qdrant's API until stopped.
struct Writer {
    stop: Arc<AtomicBool>,
    changes: Arc<AtomicU64>,
    thread: JoinHandle<()>,
}

impl Writer {
    fn start(url: &str, ids: Vec<Vec<grpc::PointId>>) -> Writer {
        let (stop, changes) = (
            Arc::new(AtomicBool::new(false)),
            Arc::new(AtomicU64::new(0)),
        );
        let (url, stop_flag, counter) = (url.to_owned(), Arc::clone(&stop), Arc::clone(&changes));
        let thread = std::thread::spawn(move || {
            let rt = runtime();
            let client = client_at(&url);
            let mut live = ids;
            let mut rng = Rng(23);
            let mut next = POINTS;
            while !stop_flag.load(Ordering::Acquire) {
                let c = rng.below(COLLECTIONS.len());
                let (name, uuid) = COLLECTIONS[c];
                change(&rt, &client, name, uuid, &mut live[c], &mut next, &mut rng);
                counter.fetch_add(1, Ordering::Relaxed);
                std::thread::sleep(WRITE_EVERY);
            }
        });
        Writer {
            stop,
            changes,
            thread,
        }
    }

    /// Stops the writer once its change in flight has been applied; the changes it made.
    fn stop(self) -> u64 {
        self.stop.store(true, Ordering::Release);
        self.thread.join().expect("the writer");
        self.changes.load(Ordering::Relaxed)
    }
}

fn selector(id: &grpc::PointId) -> Option<grpc::PointsSelector> {
    Some(grpc::PointsSelector {
        points_selector_one_of: Some(PointsSelectorOneOf::Points(grpc::PointsIdsList {
            ids: vec![id.clone()],
        })),
    })
}

/// One change, waited for: a new point, a vector overwritten, a payload key set or deleted, or
/// a point deleted.
fn change(
    rt: &tokio::runtime::Runtime,
    client: &Qdrant,
    name: &str,
    uuid: bool,
    live: &mut Vec<grpc::PointId>,
    next: &mut u64,
    rng: &mut Rng,
) {
    let pick = rng.below(live.len());
    let id = live[pick].clone();
    let collection_name = name.to_owned();
    let outcome = match rng.below(5) {
        0 => {
            let new = point_id(uuid, *next, rng);
            *next += 1;
            live.push(new.clone());
            rt.block_on(client.upsert_points(grpc::UpsertPoints {
                collection_name,
                wait: Some(true),
                points: vec![grpc::PointStruct {
                    id: Some(new),
                    vectors: Some(vectors(rng, None)),
                    payload: payload(rng, *next),
                }],
                ..Default::default()
            }))
            .map(drop)
        }
        1 => {
            let only = ["a", "b", "s"][rng.below(3)];
            rt.block_on(client.update_vectors(grpc::UpdatePointVectors {
                collection_name,
                wait: Some(true),
                points: vec![grpc::PointVectors {
                    id: Some(id),
                    vectors: Some(vectors(rng, Some(only))),
                }],
                ..Default::default()
            }))
            .map(drop)
        }
        2 => rt
            .block_on(client.set_payload(grpc::SetPayloadPoints {
                collection_name,
                wait: Some(true),
                payload: HashMap::from([("tag".to_owned(), grpc::Value::from("changed"))]),
                points_selector: selector(&id),
                ..Default::default()
            }))
            .map(drop),
        3 => rt
            .block_on(client.delete_payload(grpc::DeletePayloadPoints {
                collection_name,
                wait: Some(true),
                keys: vec!["x".to_owned()],
                points_selector: selector(&id),
                ..Default::default()
            }))
            .map(drop),
        _ => {
            live.swap_remove(pick);
            rt.block_on(client.delete_points(grpc::DeletePoints {
                collection_name,
                wait: Some(true),
                points: selector(&id),
                ..Default::default()
            }))
            .map(drop)
        }
    };
    outcome.expect("a change through Qdrant's API");
}

/// `sync …extra` of both collections.
fn sync(url: &str, dsn: &str, extra: &[&str]) -> std::process::Output {
    let mut args = vec!["sync", "--url", url, "--dsn", dsn, "--quiet"];
    args.extend_from_slice(extra);
    qdrant2pg(&args)
}

/// The number of each pass line's differing ids, in order.
fn deltas(out: &std::process::Output) -> Vec<u64> {
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|line| {
            let (_, rest) = line.split_once(" differing bucket(s), ")?;
            rest.split_whitespace().next()?.parse().ok()
        })
        .collect()
}

/// A collection loaded, migrated with the writer running, synced twice with it running, then
/// synced once more after it stopped: the last sync and `verify --full` say identical, and no
/// table holds an id twice.
fn writes_during_migrate_and_sync(db: &TestDb, dialect: &str) {
    let Some(server) = QdrantServer::genuine() else {
        return;
    };
    let url = server.url();
    let ids = load(&client_at(&url));
    let dsn = db.dsn();
    let writer = Writer::start(&url, ids);
    assert_ok(&qdrant2pg(&[
        "migrate",
        "--url",
        &url,
        "--dsn",
        &dsn,
        "--dialect",
        dialect,
        "--live",
        "--quiet",
    ]));
    let pgvector = dialect == "pgvector";
    if pgvector {
        // HNSW indexes before the first pass: the repairs maintain them.
        assert_ok(&qdrant2pg(&[
            "index", "--url", &url, "--dsn", &dsn, "--quiet",
        ]));
    }
    let mut passes = Vec::new();
    for _ in 0..2 {
        let out = sync(&url, &dsn, &["--dialect", dialect]);
        // Exit 1 is allowed here: the writer may change a repaired point again meanwhile.
        let line_count = deltas(&out);
        assert_eq!(line_count.len(), 2, "{}", describe(&out));
        passes.extend(line_count);
    }
    let changes = writer.stop();
    assert!(changes > 100, "the writer made only {changes} changes");
    let last = sync(&url, &dsn, &["--dialect", dialect]);
    assert_ok(&last);
    assert!(
        passes.iter().any(|&d| d > 0),
        "the passes under writes found nothing to repair: {passes:?}"
    );
    let verified = qdrant2pg(&["verify", "--url", &url, "--dsn", &dsn, "--full", "--quiet"]);
    assert_ok(&verified);
    let text = String::from_utf8_lossy(&verified.stdout);
    assert_eq!(text.matches("identical").count(), 2, "{text}");
    for (name, _) in COLLECTIONS {
        let (rows, ids) = counts(db, name);
        assert_eq!(rows, ids, "{name}: an id twice");
    }
    // A sync of identical sides finds nothing and says so.
    let quiet = sync(&url, &dsn, &["--dialect", dialect, "--until-converged"]);
    assert_ok(&quiet);
    assert_eq!(deltas(&quiet), vec![0, 0], "{}", describe(&quiet));
    if pgvector {
        let searched = qdrant2pg(&[
            "verify", "--url", &url, "--dsn", &dsn, "--search", "50", "--quiet",
        ]);
        assert_ok(&searched);
        let text = String::from_utf8_lossy(&searched.stdout);
        assert!(
            text.contains("search \"a\"") && text.contains("recall@10"),
            "{text}"
        );
    }
}

#[test]
fn a_writer_during_migrate_and_sync_then_a_final_sync_is_identical() {
    writes_during_migrate_and_sync(&PgCluster::pg15().create_database(), "postgres");
}

#[test]
fn pgvector_tables_with_hnsw_indexes_built_before_sync_stay_searchable() {
    writes_during_migrate_and_sync(&PgCluster::pg18_vector().create_database(), "pgvector");
}

#[test]
fn greenplum_adbpg_tables_sync_with_delete_then_copy() {
    let Some(greenplum) = Greenplum::shared() else {
        return;
    };
    writes_during_migrate_and_sync(&greenplum.create_database(), "adbpg");
}

/// A genuine Qdrant with both collections loaded, migrated into a new PostgreSQL 15 database
/// (indexed too, when `indexed`); `None` where no genuine Qdrant is installed.
struct Migrated {
    server: QdrantServer,
    url: String,
    client: Qdrant,
    db: TestDb,
    dsn: String,
}

fn migrated(indexed: bool) -> Option<Migrated> {
    let server = QdrantServer::genuine()?;
    let url = server.url();
    let client = client_at(&url);
    load(&client);
    let db = PgCluster::pg15().create_database();
    let dsn = db.dsn();
    assert_ok(&qdrant2pg(&[
        "migrate", "--url", &url, "--dsn", &dsn, "--quiet",
    ]));
    if indexed {
        assert_ok(&qdrant2pg(&[
            "index", "--url", &url, "--dsn", &dsn, "--quiet",
        ]));
    }
    Some(Migrated {
        server,
        url,
        client,
        db,
        dsn,
    })
}

#[test]
fn sync_killed_9_mid_repair_converges_when_run_again() {
    let Some(Migrated {
        server: _server,
        url,
        client,
        db,
        dsn,
    }) = migrated(true)
    else {
        return;
    };
    // Every point's payload changes: a delta of every id, many repair batches.
    let rt = runtime();
    for (name, _) in COLLECTIONS {
        rt.block_on(client.set_payload(grpc::SetPayloadPoints {
            collection_name: name.into(),
            wait: Some(true),
            payload: HashMap::from([("tag".to_owned(), grpc::Value::from("second"))]),
            points_selector: Some(grpc::PointsSelector {
                points_selector_one_of: Some(PointsSelectorOneOf::Filter(grpc::Filter::default())),
            }),
            ..Default::default()
        }))
        .expect("set every payload");
    }
    let mut child = command(&["sync", "--url", &url, "--dsn", &dsn, "--quiet"])
        .spawn()
        .expect("sync");
    let mut pg = db.client();
    let started = Instant::now();
    loop {
        let repaired: i64 = pg
            .query_one(
                "SELECT count(*) FROM live_int WHERE payload->>'tag' = 'second'",
                &[],
            )
            .expect("count")
            .get(0);
        if repaired > 0 {
            break;
        }
        assert!(
            child.try_wait().expect("wait").is_none(),
            "sync ended first"
        );
        assert!(started.elapsed() < Duration::from_secs(120), "no repair");
        std::thread::sleep(Duration::from_millis(10));
    }
    child.kill().expect("kill -9");
    child.wait().expect("reap");
    let rerun = sync(&url, &dsn, &[]);
    assert_ok(&rerun);
    assert_ok(&qdrant2pg(&[
        "verify", "--url", &url, "--dsn", &dsn, "--full", "--quiet",
    ]));
    for (name, _) in COLLECTIONS {
        let (rows, ids) = counts(&db, name);
        assert_eq!((rows, ids), (POINTS as i64, POINTS as i64), "{name}");
    }
}

#[test]
fn qdrant_killed_mid_pass_exits_1_and_deletes_nothing() {
    let Some(Migrated {
        mut server,
        url,
        client,
        db,
        dsn,
    }) = migrated(false)
    else {
        return;
    };
    // Half the points go: a pass that ran to its end would delete their rows.
    let rt = runtime();
    rt.block_on(client.delete_points(grpc::DeletePoints {
        collection_name: "live_int".into(),
        wait: Some(true),
        points: Some(grpc::PointsSelector {
            points_selector_one_of: Some(PointsSelectorOneOf::Points(grpc::PointsIdsList {
                ids: (0..POINTS / 2).map(grpc::PointId::from).collect(),
            })),
        }),
        ..Default::default()
    }))
    .expect("delete");
    let scratch = tempfile::tempdir().expect("scratch");
    let scratch_dir = scratch.path().to_str().expect("utf-8");
    let mut child = command(&[
        "sync",
        "--url",
        &url,
        "--dsn",
        &dsn,
        "--quiet",
        "--retries",
        "2",
        "--page-size",
        "16",
        "--scratch",
        scratch_dir,
    ])
    .spawn()
    .expect("sync");
    // Mid-pass: the pass is reading once its spill directory exists.
    let started = Instant::now();
    while std::fs::read_dir(scratch.path())
        .expect("scratch")
        .next()
        .is_none()
    {
        assert!(
            child.try_wait().expect("wait").is_none(),
            "sync ended first"
        );
        assert!(started.elapsed() < Duration::from_secs(60), "no pass began");
        std::thread::sleep(Duration::from_millis(5));
    }
    let QdrantServer::Genuine(genuine) = &mut server else {
        unreachable!("genuine() gives a genuine server")
    };
    genuine.kill();
    let status = child.wait().expect("sync");
    assert!(!status.success(), "sync succeeded without Qdrant");
    let (rows, _) = counts(&db, "live_int");
    assert_eq!(rows, POINTS as i64, "a row was deleted on doubt");
}

#[test]
fn a_table_that_no_longer_fits_its_collection_is_refused_naming_the_column() {
    let Some(Migrated {
        server: _server,
        url,
        client: _,
        db,
        dsn,
    }) = migrated(false)
    else {
        return;
    };
    let mut pg = db.client();
    let refused = |expected: &[&str]| {
        let out = sync(&url, &dsn, &["--collection", "live_int"]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{}", describe(&out));
        assert!(
            expected.iter().all(|e| stderr.contains(e)),
            "{expected:?}: {}",
            describe(&out)
        );
    };
    pg.batch_execute("ALTER TABLE live_int ADD COLUMN note text")
        .expect("add a column");
    refused(&["column \"note\" is not one the collection gives"]);
    pg.batch_execute("ALTER TABLE live_int DROP COLUMN note, DROP COLUMN b")
        .expect("drop a column");
    refused(&["no column \"b\""]);
    // Another dialect's table: arrays where pgvector would have `vector`.
    let out = sync(
        &url,
        &dsn,
        &["--collection", "live_uuid", "--dialect", "pgvector"],
    );
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("column \"a\" is real[]"),
        "{}",
        describe(&out)
    );
    // Nothing was written: the tables are as migrate left them.
    let (rows, _) = counts(&db, "live_uuid");
    assert_eq!(rows, POINTS as i64);
}

#[test]
fn a_pass_reads_the_table_whole_only_when_someone_else_wrote_it() {
    let Some(Migrated {
        server: _server,
        url,
        client,
        db,
        dsn,
    }) = migrated(true)
    else {
        return;
    };
    let table_read = |out: &std::process::Output| -> Vec<String> {
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|l| Some(l.split_once(" rows (")?.1.split_once(')')?.0.to_owned()))
            .collect()
    };
    let only_int = ["--collection", "live_int"];
    // The first pass has nothing kept: it reads the table whole.
    let first = sync(&url, &dsn, &only_int);
    assert_ok(&first);
    assert_eq!(table_read(&first), ["whole"], "{}", describe(&first));
    // Qdrant changes, the table does not: the kept buckets hold, and only the differing
    // buckets' rows are read, by id.
    let rt = runtime();
    rt.block_on(client.set_payload(grpc::SetPayloadPoints {
        collection_name: "live_int".into(),
        wait: Some(true),
        payload: HashMap::from([("tag".to_owned(), grpc::Value::from("qdrant"))]),
        points_selector: selector(&grpc::PointId::from(7)),
        ..Default::default()
    }))
    .expect("set a payload");
    let second = sync(&url, &dsn, &only_int);
    assert_ok(&second);
    assert_eq!(table_read(&second), ["by id"], "{}", describe(&second));
    assert_eq!(deltas(&second), [1], "{}", describe(&second));
    // Someone else writes the table: the next pass trusts nothing kept, reads it whole, and
    // puts the row back as Qdrant has it.
    db.client()
        .batch_execute("UPDATE live_int SET payload = '{\"tag\": \"table\"}' WHERE id = 11")
        .expect("a write behind sync's back");
    let third = sync(&url, &dsn, &only_int);
    assert_ok(&third);
    assert_eq!(table_read(&third), ["whole"], "{}", describe(&third));
    assert_eq!(deltas(&third), [1], "{}", describe(&third));
    let quiet = sync(&url, &dsn, &only_int);
    assert_eq!(
        (table_read(&quiet), deltas(&quiet)),
        (vec!["by id".to_owned()], vec![0])
    );
    assert_ok(&qdrant2pg(&[
        "verify",
        "--url",
        &url,
        "--dsn",
        &dsn,
        "--full",
        "--quiet",
        "--collection",
        "live_int",
    ]));
}
