//! `qdrant2pg migrate` on real servers: the real fixtures into PostgreSQL 15 (arrays) and 18
//! (pgvector) verify bit-exact, the guide's two YAMLs drive it unchanged, a kill -9 mid-run
//! then a re-run leaves every point exactly once, and `--if-exists` acts as it does for import.

use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use qdrant2pg::point_id::PointKey;

use crate::export::load_ids;
use crate::support::cli::{assert_ok, describe, qdrant2pg};
use crate::support::flows::{
    assert_verifies, counts, fixture_server, kill_9_once_the_ledger_holds,
};
use crate::support::pg::{Auth, PgCluster, PgVersion, TestDb};
use crate::support::qdrant::QdrantServer;

pub(crate) fn migrate(server: &QdrantServer, db: &TestDb, extra: &[&str]) -> Output {
    let (url, dsn) = (server.url(), db.dsn());
    let mut args = vec!["migrate", "--url", &url, "--dsn", &dsn, "--quiet"];
    args.extend_from_slice(extra);
    qdrant2pg(&args)
}

#[test]
fn fixtures_migrate_into_postgres_15_bit_exact_and_a_rerun_adds_nothing() {
    let server = fixture_server();
    let db = PgCluster::pg15().create_database();
    // Small pages: many units, several per range, over two connections.
    let out = migrate(&server, &db, &["--page-size", "64", "-j", "2"]);
    assert_ok(&out);
    assert_verifies(&server, &db, &[], 3);
    let before = counts(&db, "fx_rich");
    // A finished table is resumed with nothing left to read.
    assert_ok(&migrate(&server, &db, &[]));
    assert_eq!(counts(&db, "fx_rich"), before);
    assert_verifies(&server, &db, &[], 3);
}

#[test]
fn a_lone_migrate_speaks_of_its_own_work_and_its_summary_of_what_it_did() {
    let server = fixture_server();
    let db = PgCluster::pg15().create_database();
    let (url, dsn) = (server.url(), db.dsn());
    let args = [
        "migrate",
        "--url",
        &url,
        "--dsn",
        &dsn,
        "--page-size",
        "64",
        "-j",
        "2",
    ];
    let out = qdrant2pg(&args);
    assert_ok(&out);
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    // One process: nothing about planning a run or units going to other workers.
    for said in ["worker 1", "another worker", "taken over"] {
        assert!(!stderr.contains(said), "{said:?}: {}", describe(&out));
    }
    let header = stdout
        .lines()
        .find(|l| l.starts_with("name"))
        .unwrap_or_default();
    assert!(
        header.contains("MB") && !header.contains("files"),
        "{stdout}"
    );
    // verify moved nothing: no MB column.
    let out = qdrant2pg(&["verify", "--url", &url, "--dsn", &dsn]);
    assert_ok(&out);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let header = stdout
        .lines()
        .find(|l| l.starts_with("name"))
        .unwrap_or_default();
    assert!(
        header.contains("rows/s") && !header.contains("MB"),
        "{stdout}"
    );
    // --verbose says how this process took part in the run.
    let out = qdrant2pg(&[&args[..], &["--schema", "loud", "--verbose"]].concat());
    assert_ok(&out);
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("worker 1: planned the run"),
        "{}",
        describe(&out)
    );
}

#[test]
fn fixtures_migrate_into_pgvector_bit_exact() {
    let server = fixture_server();
    let db = PgCluster::pg18_vector().create_database();
    assert_ok(&migrate(&server, &db, &["--dialect", "pgvector"]));
    assert_verifies(&server, &db, &[], 3);
    let kind: String = db
        .client()
        .query_one(
            "SELECT format_type(atttypid, atttypmod) FROM pg_attribute \
             WHERE attrelid = 'fx_single'::regclass AND attname = 'vector'",
            &[],
        )
        .expect("column type")
        .get(0);
    assert!(kind.starts_with("vector("), "{kind}");
}

#[test]
fn the_guides_two_yamls_drive_it_unchanged() {
    let server = QdrantServer::start();
    let ids: Vec<PointKey> = (0..250).map(PointKey::Num).collect();
    load_ids(&server, "test_collection", 3, &ids);
    let db = PgCluster::pg15().create_database();
    let work = tempfile::tempdir().expect("tempdir");
    let port = server.url().rsplit(':').next().expect("port").to_owned();
    let source = work.path().join("qdrant2csv.yaml");
    std::fs::write(
        &source,
        format!(
            "qdrant:\n    host: 'localhost'\n    port: 6333\n    grpc_port: {port}\n    \
             api_key: ''\n    url: ''\n    location: ''\n\nexport:\n  collections:\n    - \
             'test_collection'\n  max_line_in_file: 100\n  output_path: './output'\n"
        ),
    )
    .expect("source yaml");
    let target = work.path().join("csv2adbpg.yaml");
    std::fs::write(
        &target,
        format!(
            "database:\n    host: \"127.0.0.1\"\n    port: {}\n    name: \"{}\"\n    user: \
             \"postgres\"\n    password: \"{}\"\n    schema: \"vec\"\n\ndata_path: \"./output\"\n",
            PgCluster::pg15().port(),
            db.name,
            PgCluster::pg15().password().unwrap_or("")
        ),
    )
    .expect("target yaml");
    let out = qdrant2pg(&[
        "migrate",
        "--source-config",
        source.to_str().expect("utf-8"),
        "--target-config",
        target.to_str().expect("utf-8"),
        "--page-size",
        "40",
    ]);
    assert_ok(&out);
    assert_eq!(counts(&db, "vec.test_collection"), (250, 250));
    assert!(
        !work.path().join("output").exists(),
        "migrate writes no files"
    );
}

#[test]
fn kill_9_mid_migrate_then_rerun_has_every_point_exactly_once() {
    kill_9_mid_migrate_then_rerun(&PgCluster::pg15().create_database(), &[]);
}

/// Kills a migrate of `total` points into `db` (with `extra` flags) once the ledger holds a few
/// units, then checks that a re-run leaves every point exactly once.
pub(crate) fn kill_9_mid_migrate_then_rerun(db: &TestDb, extra: &[&str]) {
    let server = QdrantServer::start();
    let total = 40_000u64;
    let ids: Vec<PointKey> = (0..total).map(|i| PointKey::Num(i * 3 + 1)).collect();
    load_ids(&server, "big", 64, &ids);
    let (url, dsn) = (server.url(), db.dsn());
    let mut child = Command::new(env!("CARGO_BIN_EXE_qdrant2pg"))
        .args(["migrate", "--url", &url, "--dsn", &dsn, "--quiet"])
        .args(["--page-size", "50", "-j", "2", "--cursors", "2"])
        .args(extra)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn");
    kill_9_once_the_ledger_holds(db, &mut child, "source = 'qdrant'", 5, || {});
    let (partial, _) = counts(db, "public.big");
    assert!(
        partial > 0 && partial < total as i64,
        "killed after {partial} rows"
    );
    let out = migrate(&server, db, &[&["--page-size", "300"], extra].concat());
    assert_ok(&out);
    assert_eq!(counts(db, "public.big"), (total as i64, total as i64));
    assert_verifies(&server, db, &[], 1);
}

/// The guarantee of asynchronous unit commits: once migrate or import has reported done, a
/// server crash loses none of it. The server is made to lose every commit that did not wait for
/// its WAL flush — its default `synchronous_commit = off` (so the run's own bookkeeping waits
/// for nothing either), a WAL writer that sleeps 10 s and never writes by size, WAL buffers that
/// hold the whole load — so what survives the crash is what the command's one durable commit
/// flushed. Without it, this test loses the last pages (tried by making
/// `Loader::commit_durably` return at once).
#[test]
fn a_server_crash_right_after_migrate_and_import_report_done_loses_no_row() {
    let cluster = PgCluster::start(PgVersion::Pg15, Auth::Trust);
    let db = cluster.create_database();
    let mut admin = db.client();
    for setting in [
        "wal_writer_delay = '10s'",
        "wal_writer_flush_after = '1GB'",
        "wal_buffers = '64MB'",
    ] {
        admin
            .batch_execute(&format!("ALTER SYSTEM SET {setting}"))
            .expect(setting);
    }
    drop(admin);
    cluster.restart();
    let server = QdrantServer::start();
    let total = 3000u64;
    let ids: Vec<PointKey> = (0..total).map(PointKey::Num).collect();
    load_ids(&server, "big", 64, &ids);
    let ledger = |db: &TestDb, source: &str| -> (i64, i64) {
        let row = db
            .client()
            .query_one(
                "SELECT count(*), coalesce(sum(rows), 0)::int8 FROM public.qdrant2pg_ledger \
                 WHERE source LIKE $1",
                &[&source],
            )
            .expect("ledger");
        (row.get(0), row.get(1))
    };

    // Small pages over two connections: many commits, the last ones right before done.
    let out = migrate(&server, &db, &["--page-size", "100", "-j", "2"]);
    assert_ok(&out);
    let before = ledger(&db, "qdrant");
    assert_eq!(before.1, total as i64);
    cluster.crash_and_restart();
    assert_eq!(counts(&db, "public.big"), (total as i64, total as i64));
    assert_eq!(
        ledger(&db, "qdrant"),
        before,
        "migrate's ledger rows after the crash"
    );

    let files = tempfile::tempdir().expect("tempdir");
    let out = files.path().to_str().expect("utf-8");
    assert_ok(&qdrant2pg(&[
        "export",
        "--url",
        &server.url(),
        "--output",
        out,
        "--max-lines",
        "1000",
        "--quiet",
    ]));
    let imported = cluster.create_database();
    assert_ok(&qdrant2pg(&[
        "import",
        "--dsn",
        &imported.dsn(),
        "--data",
        out,
        "--batch-bytes",
        "50000",
        "-j",
        "2",
        "--quiet",
    ]));
    let before = ledger(&imported, "%.csv");
    assert_eq!(before.1, total as i64);
    assert!(before.0 > 10, "{before:?}: too few batches to lose one");
    cluster.crash_and_restart();
    assert_eq!(
        counts(&imported, "public.big"),
        (total as i64, total as i64)
    );
    assert_eq!(
        ledger(&imported, "%.csv"),
        before,
        "import's ledger rows after the crash"
    );
}

#[test]
fn if_exists_is_shared_with_import() {
    if_exists_acts_alike_in_migrate_and_import(&PgCluster::pg15().create_database(), &[]);
}

/// Every `--if-exists` mode of migrate on a table this tool did not create, then import
/// refusing a table migrate is loading; `extra` flags go to migrate and import.
pub(crate) fn if_exists_acts_alike_in_migrate_and_import(db: &TestDb, extra: &[&str]) {
    let migrate_with = |server: &QdrantServer, db: &TestDb, args: &[&str]| {
        migrate(server, db, &[args, extra].concat())
    };
    let server = QdrantServer::start();
    let ids: Vec<PointKey> = (0..100).map(PointKey::Num).collect();
    load_ids(&server, "docs", 2, &ids);
    db.client()
        .batch_execute("CREATE TABLE docs (id bigint, vector real[], payload json)")
        .expect("foreign table");
    // A table this tool did not create: skipped by default, refused with fail.
    let out = migrate_with(&server, db, &[]);
    assert_ok(&out);
    assert_eq!(counts(db, "docs"), (0, 0));
    let out = migrate_with(&server, db, &["--if-exists", "fail"]);
    assert!(!out.status.success(), "{}", describe(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("already exists (--if-exists fail)"),
        "{}",
        describe(&out)
    );
    // append loads into it; truncate and replace start over; each way once.
    assert_ok(&migrate_with(&server, db, &["--if-exists", "append"]));
    assert_eq!(counts(db, "docs"), (100, 100));
    for mode in ["truncate", "replace"] {
        assert_ok(&migrate_with(&server, db, &["--if-exists", mode]));
        assert_eq!(counts(db, "docs"), (100, 100), "--if-exists {mode}");
    }
    assert_verifies(&server, db, &[], 1);
    // import refuses a table migrate is loading: the ledger's spans are not its files.
    let dir = tempfile::tempdir().expect("tempdir");
    let out_dir = dir.path().to_str().expect("utf-8");
    let url = server.url();
    assert_ok(&qdrant2pg(&[
        "export", "--url", &url, "--output", out_dir, "--quiet",
    ]));
    let dsn = db.dsn();
    let import = ["import", "--dsn", &dsn, "--data", out_dir];
    let out = qdrant2pg(&[&import[..], &["--if-exists", "append", "--quiet"], extra].concat());
    assert!(!out.status.success(), "{}", describe(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("being loaded by `qdrant2pg migrate`"),
        "{}",
        describe(&out)
    );
    assert_eq!(counts(db, "docs"), (100, 100));
}

/// Rows/s of migrate against export + import on the same generated collection (768-d floats by
/// default; `BENCH_POINTS` sets the size). Timings are printed, never asserted. Run with
/// `cargo test --release --test main migrate::bench -- --ignored --nocapture`.
#[test]
#[ignore = "benchmark: minutes of work, prints timings"]
fn bench_migrate_against_export_and_import() {
    let points: u64 = std::env::var("BENCH_POINTS")
        .ok()
        .and_then(|p| p.parse().ok())
        .unwrap_or(50_000);
    let server = QdrantServer::start();
    let url = server.url();
    let size = points.to_string();
    assert_ok(&qdrant2pg(&[
        "generate",
        "--url",
        &url,
        "--collection",
        "bench",
        "--points",
        &size,
        "--dim",
        "768",
        "--quiet",
    ]));
    let files = tempfile::tempdir().expect("tempdir");
    let out_dir = files.path().to_str().expect("utf-8");
    let via_files = PgCluster::pg15().create_database();
    let started = Instant::now();
    assert_ok(&qdrant2pg(&[
        "export", "--url", &url, "--output", out_dir, "--quiet",
    ]));
    let exported = started.elapsed();
    assert_ok(&qdrant2pg(&[
        "import",
        "--dsn",
        &via_files.dsn(),
        "--data",
        out_dir,
        "--quiet",
    ]));
    let two_steps = started.elapsed();
    let direct = PgCluster::pg15().create_database();
    let started = Instant::now();
    assert_ok(&migrate(&server, &direct, &[]));
    let migrated = started.elapsed();
    let expected = (points as i64, points as i64);
    assert_eq!(counts(&via_files, "bench"), expected);
    assert_eq!(counts(&direct, "bench"), expected);
    let rate = |d: Duration| points as f64 / d.as_secs_f64();
    println!(
        "{points} points x 768: export {:.2}s + import {:.2}s = {:.2}s ({:.0} rows/s); migrate \
         {:.2}s ({:.0} rows/s); migrate/two-step = {:.2}x",
        exported.as_secs_f64(),
        (two_steps - exported).as_secs_f64(),
        two_steps.as_secs_f64(),
        rate(two_steps),
        migrated.as_secs_f64(),
        rate(migrated),
        two_steps.as_secs_f64() / migrated.as_secs_f64()
    );
}

#[test]
fn snapshots_migrate_with_no_server_and_verify_against_the_live_collections() {
    let server = fixture_server();
    let db = PgCluster::pg15().create_database();
    let dsn = db.dsn();
    let fixtures = crate::support::flows::fixtures_dir();
    let out = qdrant2pg(&[
        "migrate",
        "--snapshot",
        fixtures.to_str().expect("utf-8"),
        "--dsn",
        &dsn,
        "--quiet",
    ]);
    assert_ok(&out);
    // The live server holds the same three collections: verify compares every point.
    assert_verifies(&server, &db, &[], 3);
}
