//! The `adbpg` dialect on a genuine Greenplum 6.24.3 (AnalyticDB for PostgreSQL 6.x's engine),
//! against the genuine Qdrant: every flow a user runs — export → import, migrate, `verify
//! --full` and `--sample`, `plan`, `index`, resume after kill -9, every `--if-exists` mode, odd
//! identifiers — on every data shape of the README's mapping table, with the catalog showing
//! rows on both segments, `DISTRIBUTED BY (id)` and the storage choices. One cluster for the
//! whole process (`support::greenplum`), a database and small collections per test, so the tier
//! stays quick and its tests run in parallel. Where Greenplum is not installed each test says
//! so in one line and returns (under `CI=true` it fails).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Output, Stdio};
use std::thread;
use std::time::Duration;

use qdrant_client::qdrant as grpc;
use qdrant2pg::point_id::PointKey;

use crate::config::odd_identifiers_migrate_and_verify;
use crate::export::load_ids;
use crate::import::bad_data_is_reported;
use crate::migrate::{if_exists_acts_alike_in_migrate_and_import, kill_9_mid_migrate_then_rerun};
use crate::support::cli::{assert_ok, describe, qdrant2pg};
use crate::support::flows::{
    FIXTURES, assert_verifies, client, export_import, fixture_server, kill_9_once_the_ledger_holds,
    runtime, upsert,
};
use crate::support::greenplum::Greenplum;
use crate::support::pg::TestDb;
use crate::support::probe::{self, alive, children_of, wait_until_gone};
use crate::support::qdrant::QdrantServer;

const ADBPG: [&str; 2] = ["--dialect", "adbpg"];

/// A fresh database on the shared cluster; `None` (the test returns) where Greenplum is not
/// installed.
fn greenplum_db() -> Option<TestDb> {
    Greenplum::shared().map(Greenplum::create_database)
}

fn run(command: &str, server: &QdrantServer, db: &TestDb, extra: &[&str]) -> Output {
    let (url, dsn) = (server.url(), db.dsn());
    qdrant2pg(
        &[
            &[command, "--url", &url, "--dsn", &dsn, "--quiet"][..],
            extra,
        ]
        .concat(),
    )
}

/// `(column, attstorage)` of `table`'s user columns, and the columns it is distributed by.
fn storage_and_distribution(db: &TestDb, table: &str) -> (BTreeMap<String, String>, Vec<String>) {
    let mut client = db.client();
    let storage = client
        .query(
            "SELECT attname::text, attstorage::text FROM pg_attribute \
             WHERE attrelid = $1::text::regclass AND attnum > 0 AND NOT attisdropped",
            &[&table],
        )
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    let distributed = client
        .query(
            "SELECT a.attname::text FROM gp_distribution_policy p JOIN pg_attribute a \
             ON a.attrelid = p.localoid AND a.attnum = ANY (p.distkey::int2[]) \
             WHERE p.localoid = $1::text::regclass",
            &[&table],
        )
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    (storage, distributed)
}

/// Rows of `table` per segment.
fn rows_per_segment(db: &TestDb, table: &str) -> Vec<i64> {
    db.client()
        .query(
            &format!("SELECT count(*) FROM {table} GROUP BY gp_segment_id ORDER BY 1"),
            &[],
        )
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect()
}

/// The fixtures' tables: spread over both segments, distributed by id, dense vectors stored
/// PLAIN (inline and uncompressed, as AnalyticDB's vector index wants them) and multivectors and
/// sparse arrays not (a ColBERT list easily outgrows a page, which PLAIN would refuse).
fn assert_catalog(db: &TestDb) {
    for table in FIXTURES {
        let per_segment = rows_per_segment(db, table);
        assert!(
            per_segment.len() == 2 && per_segment.iter().all(|&n| n > 0),
            "{table}: rows per segment {per_segment:?}"
        );
        let (storage, distributed) = storage_and_distribution(db, table);
        assert_eq!(distributed, ["id"], "{table}");
        let (dense, other): (&[&str], &[&str]) = match table {
            "fx_rich" => (
                &["text", "image"],
                &["colbert", "bm25_indices", "bm25_values"],
            ),
            _ => (&["vector"], &[]),
        };
        for column in dense {
            assert_eq!(storage[*column], "p", "{table}.{column}: {storage:?}");
        }
        for column in other {
            assert_ne!(storage[*column], "p", "{table}.{column}: {storage:?}");
        }
    }
}

/// `verify` says `identical` for every fixture collection.
fn assert_identical(server: &QdrantServer, db: &TestDb, extra: &[&str]) {
    let out = run("verify", server, db, extra);
    assert_ok(&out);
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(text.matches("identical").count(), 3, "{}", describe(&out));
}

#[test]
fn fixtures_export_import_and_migrate_into_greenplum_bit_exact_on_both_segments() {
    let (Some(imported), Some(migrated)) = (greenplum_db(), greenplum_db()) else {
        return;
    };
    // Integer, UUID and mixed ids; unnamed and named vectors, some absent; float16; a
    // multivector; a sparse vector; payloads full of COPY and JSON hazards.
    let server = fixture_server();
    let out = tempfile::tempdir().expect("tempdir");
    export_import(&server, &imported, out.path(), "adbpg");
    assert_ok(&run("migrate", &server, &migrated, &ADBPG));
    for db in [&imported, &migrated] {
        assert_catalog(db);
        assert_identical(&server, db, &["--full"]);
        assert_identical(&server, db, &["--sample", "100"]);
    }
    // The ledger's units (file spans) account for every row once.
    let ledger: i64 = imported
        .client()
        .query_one(
            "SELECT sum(rows)::bigint FROM public.qdrant2pg_ledger WHERE source <> ''",
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(
        ledger, 1200,
        "rows the ledger records for the three fixtures"
    );

    // One float moved by one ulp: verify names that value, and no other.
    let mut client = migrated.client();
    let row = client
        .query_one("SELECT vector FROM fx_single WHERE id = 3", &[])
        .unwrap();
    let mut vector: Vec<f32> = row.get(0);
    vector[2] = f32::from_bits(vector[2].to_bits() + 1);
    client
        .execute("UPDATE fx_single SET vector = $1 WHERE id = 3", &[&vector])
        .unwrap();
    let out = run(
        "verify",
        &server,
        &migrated,
        &["--full", "--collection", "fx_single"],
    );
    assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
    let text = String::from_utf8_lossy(&out.stdout);
    let differences: Vec<&str> = text.lines().filter(|l| l.starts_with("  - ")).collect();
    assert_eq!(
        differences,
        ["  - id 3: vector \"vector\" differs first at element 2"],
        "{}",
        describe(&out)
    );
}

#[test]
fn index_without_ann_builds_the_id_and_payload_indexes_and_says_why_not_the_vectors() {
    let Some(db) = greenplum_db() else {
        return;
    };
    let server = fixture_server();
    assert_ok(&run("migrate", &server, &db, &ADBPG));
    let out = run("index", &server, &db, &ADBPG);
    assert_ok(&out);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("fx_single: vector \"vector\": the server has no `ann` access method"),
        "{}",
        describe(&out)
    );
    let indexes: Vec<String> = db
        .client()
        .query(
            "SELECT indexname::text FROM pg_indexes WHERE schemaname = 'public' \
             AND tablename NOT LIKE 'qdrant2pg\\_%' ORDER BY 1",
            &[],
        )
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(
        indexes,
        [
            "fx_rich_id_idx",
            "fx_sharded_id_idx",
            "fx_single_id_idx",
            "fx_single_payload_n_idx",
            "fx_single_payload_title_idx",
        ],
        "{}",
        describe(&out)
    );
    // Greenplum 6 has no CREATE INDEX IF NOT EXISTS: a re-run skips what the catalog holds.
    let again = run("index", &server, &db, &ADBPG);
    assert_ok(&again);
    // verify --full reads the table in parts (ctid ranges, each a filtered scan on Greenplum 6,
    // which has no TID range scans) over several connections.
    assert_identical(
        &server,
        &db,
        &["--full", "--connections", "3", "--table-parts", "6"],
    );
}

#[test]
fn plan_ddl_for_adbpg_creates_the_table_on_greenplum() {
    let Some(db) = greenplum_db() else {
        return;
    };
    let server = fixture_server();
    let out = qdrant2pg(&[
        "plan",
        "--url",
        &server.url(),
        "--collection",
        "fx_rich",
        "--dialect",
        "adbpg",
    ]);
    assert_ok(&out);
    let text = String::from_utf8_lossy(&out.stdout);
    let ddl: String = text
        .lines()
        .skip_while(|l| l.trim() != "DDL:")
        .skip(1)
        .take_while(|l| l.starts_with("    "))
        .map(|l| format!("{}\n", &l[4..]))
        .collect();
    assert!(ddl.contains(") DISTRIBUTED BY (id);"), "{text}");
    db.client().batch_execute(&ddl).unwrap();
    let (storage, distributed) = storage_and_distribution(&db, "fx_rich");
    assert_eq!(distributed, ["id"]);
    // Dense vectors stay PLAIN (AnalyticDB's ann index wants them inline); other float
    // arrays are EXTERNAL (floats do not compress).
    assert_eq!(storage["text"], "p");
    assert_eq!(storage["colbert"], "e");
}

/// A collection with ids above 2^63 (so `numeric(20,0)`) and a uint8 vector beside a float32
/// one: the shapes the fixtures lack.
fn load_big_ids_and_uint8(server: &QdrantServer) {
    let params = |datatype: grpc::Datatype| grpc::VectorParams {
        size: 4,
        distance: grpc::Distance::Euclid as i32,
        datatype: Some(datatype as i32),
        ..Default::default()
    };
    let rt = runtime();
    let client = client(server);
    rt.block_on(
        client.create_collection(grpc::CreateCollection {
            collection_name: "wide".into(),
            vectors_config: Some(grpc::VectorsConfig {
                config: Some(grpc::vectors_config::Config::ParamsMap(
                    grpc::VectorParamsMap {
                        map: [
                            ("bytes".to_owned(), params(grpc::Datatype::Uint8)),
                            ("floats".to_owned(), params(grpc::Datatype::Float32)),
                        ]
                        .into(),
                    },
                )),
            }),
            ..Default::default()
        }),
    )
    .expect("create collection");
    let ids = [
        0,
        7,
        (1 << 63) - 1,
        1 << 63,
        (1 << 63) + 5,
        u64::MAX - 1,
        u64::MAX,
    ];
    let points = ids
        .iter()
        .enumerate()
        .map(|(i, &id)| {
            let i = i as f32;
            let floats = vec![0.1 + i, -1.0 / 3.0, 1e-40, 3.4e38];
            let bytes = vec![0.0, 1.0, 128.0 + i, 255.0];
            grpc::PointStruct::new(
                PointKey::Num(id).to_proto(),
                grpc::NamedVectors::default()
                    .add_vector("bytes", bytes)
                    .add_vector("floats", floats),
                qdrant_client::Payload::new(),
            )
        })
        .collect();
    upsert(&rt, &client, "wide", points);
}

#[test]
fn ids_above_2_63_and_uint8_vectors_move_exactly() {
    let (Some(imported), Some(migrated)) = (greenplum_db(), greenplum_db()) else {
        return;
    };
    let server = QdrantServer::start();
    load_big_ids_and_uint8(&server);
    let out = tempfile::tempdir().expect("tempdir");
    export_import(&server, &imported, out.path(), "adbpg");
    assert_ok(&run("migrate", &server, &migrated, &ADBPG));
    for db in [&imported, &migrated] {
        assert_verifies(&server, db, &[], 1);
        let id_type: String = db
            .client()
            .query_one(
                "SELECT format_type(atttypid, atttypmod) FROM pg_attribute \
                 WHERE attrelid = 'wide'::regclass AND attname = 'id'",
                &[],
            )
            .unwrap()
            .get(0);
        assert_eq!(id_type, "numeric(20,0)");
        assert_eq!(rows_per_segment(db, "wide").len(), 2);
    }
}

#[test]
fn kill_9_mid_migrate_into_greenplum_then_rerun_loads_every_point_once() {
    if let Some(db) = greenplum_db() {
        kill_9_mid_migrate_then_rerun(&db, &ADBPG);
    }
}

#[test]
fn every_if_exists_mode_and_the_ledger_on_greenplum() {
    if let Some(db) = greenplum_db() {
        if_exists_acts_alike_in_migrate_and_import(&db, &ADBPG);
    }
}

#[test]
fn odd_identifiers_on_greenplum() {
    if let Some(db) = greenplum_db() {
        odd_identifiers_migrate_and_verify(&db, &ADBPG);
    }
}

#[test]
fn greenplum_cluster_spreads_rows_over_two_segments_with_a_database_per_test() {
    let Some(gp) = Greenplum::shared() else {
        return;
    };
    let (a, b) = (gp.create_database(), gp.create_database());
    assert_ne!(a.name, b.name);
    let mut client = a.client();
    let version: String = client.query_one("SELECT version()", &[]).unwrap().get(0);
    assert!(version.contains("Greenplum Database 6."), "{version}");
    client
        .batch_execute(
            "CREATE TABLE t (id bigint) DISTRIBUTED BY (id); \
             INSERT INTO t SELECT generate_series(1, 100)",
        )
        .unwrap();
    let segments: i64 = client
        .query_one("SELECT count(DISTINCT gp_segment_id) FROM t", &[])
        .unwrap()
        .get(0);
    assert_eq!(segments, 2);
    let visible: i64 = b
        .client()
        .query_one("SELECT count(*) FROM pg_tables WHERE tablename = 't'", &[])
        .unwrap()
        .get(0);
    assert_eq!(visible, 0, "a table of {} is visible in {}", a.name, b.name);
    let psql = gp.program("psql").arg("--version").output().unwrap();
    assert!(
        String::from_utf8_lossy(&psql.stdout).contains("9.4"),
        "{psql:?}"
    );
}

/// `import --via gpfdist` with the install's gpfdist.
fn via_gpfdist(gp: &Greenplum) -> Vec<String> {
    let gpfdist = gp.program_path("gpfdist");
    ["--dialect", "adbpg", "--via", "gpfdist", "--gpfdist"]
        .into_iter()
        .map(str::to_owned)
        .chain([gpfdist.display().to_string()])
        .collect()
}

/// The gpfdist servers among the children of process `pid`.
fn gpfdist_children(pid: u32) -> Vec<u32> {
    children_of(pid)
        .into_iter()
        .filter(|child| {
            std::fs::read(format!("/proc/{child}/cmdline")).is_ok_and(|cmdline| {
                cmdline
                    .split(|b| *b == 0)
                    .next()
                    .is_some_and(|program| program.ends_with(b"gpfdist"))
            })
        })
        .collect()
}

#[test]
fn import_via_gpfdist_loads_whole_files_exactly_once_across_a_kill_9() {
    let Some(gp) = Greenplum::shared() else {
        return;
    };
    let db = gp.create_database();
    let server = QdrantServer::start();
    let total = 30_000u64;
    let ids: Vec<PointKey> = (0..total).map(|i| PointKey::Num(i * 7 + 3)).collect();
    load_ids(&server, "big", 64, &ids);
    let out = tempfile::tempdir().expect("tempdir");
    let data = out.path().to_str().expect("utf-8");
    assert_ok(&qdrant2pg(&[
        "export",
        "--url",
        &server.url(),
        "--output",
        data,
        "--dialect",
        "adbpg",
        "--max-lines",
        "500",
        "--quiet",
    ]));
    let dsn = db.dsn();
    let via = via_gpfdist(gp);
    let via: Vec<&str> = via.iter().map(String::as_str).collect();
    let import = [
        &["import", "--dsn", &dsn, "--data", data, "-j", "2"][..],
        &via,
    ]
    .concat();
    let mut child = crate::support::cli::command(&import)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn");
    let mut servers = Vec::new();
    let pid = child.id();
    kill_9_once_the_ledger_holds(&db, &mut child, "source <> ''", 3, || {
        servers.extend(gpfdist_children(pid));
    });
    assert!(
        !servers.is_empty(),
        "no gpfdist was seen serving the import"
    );
    let left = wait_until_gone(&servers, Duration::from_secs(10));
    assert!(
        left.is_empty(),
        "gpfdist outlived the killed import: {left:?}"
    );
    let mut client = db.client();
    let partial: i64 = client
        .query_one("SELECT count(*) FROM big", &[])
        .unwrap()
        .get(0);
    assert!(
        partial > 0 && partial < total as i64,
        "killed after {partial} rows"
    );

    let rerun = qdrant2pg(&[&import[..], &["--quiet"]].concat());
    assert_ok(&rerun);
    let row = client
        .query_one("SELECT count(*), count(DISTINCT id) FROM big", &[])
        .unwrap();
    assert_eq!(
        (row.get::<_, i64>(0), row.get::<_, i64>(1)),
        (total as i64, total as i64)
    );
    // Every unit is a whole file, its ledger span the file's bytes.
    let partial_units: i64 = client
        .query_one(
            "SELECT count(*) FROM public.qdrant2pg_ledger WHERE source <> '' AND lo <> '0'",
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(partial_units, 0);
    assert_verifies(&server, &db, &[], 1);
    assert_eq!(rows_per_segment(&db, "big").len(), 2);
}

#[test]
fn import_via_gpfdist_names_the_bad_file_line_and_column() {
    let Some(gp) = Greenplum::shared() else {
        return;
    };
    let via = via_gpfdist(gp);
    let via: Vec<&str> = via.iter().map(String::as_str).collect();
    bad_data_is_reported(&gp.create_database(), &via);
}

#[test]
fn import_via_gpfdist_refuses_a_server_without_external_tables() {
    let Some(gp) = Greenplum::shared() else {
        return;
    };
    let db = crate::support::pg::PgCluster::pg15().create_database();
    let out = tempfile::tempdir().expect("tempdir");
    let via = via_gpfdist(gp);
    let via: Vec<&str> = via.iter().map(String::as_str).collect();
    let dsn = db.dsn();
    let data = out.path().to_str().expect("utf-8");
    let run = qdrant2pg(&[&["import", "--dsn", &dsn, "--data", data][..], &via].concat());
    assert!(!run.status.success(), "{}", describe(&run));
    assert!(
        String::from_utf8_lossy(&run.stderr).contains("--via gpfdist needs Greenplum"),
        "{}",
        describe(&run)
    );
}

const PROBE_VAR: &str = "QDRANT2PG_GREENPLUM_PROBE";

/// Not a test of its own: the process that the leak test below starts and ends.
#[test]
#[ignore = "run by greenplum_servers_die_with_the_test_process in a process of its own"]
fn greenplum_probe() {
    let Ok(mode) = std::env::var(PROBE_VAR) else {
        return;
    };
    let Some(gp) = Greenplum::shared() else {
        return;
    };
    let mut client = gp.create_database().client();
    let dir: String = client.query_one("SHOW data_directory", &[]).unwrap().get(0);
    // The cluster's root holds every instance's data directory.
    let root = Path::new(&dir).parent().unwrap();
    println!("PROBE root {}", root.display());
    println!("PROBE ready");
    if mode == "kill" {
        thread::sleep(Duration::from_secs(600));
    }
}

/// Runs [`greenplum_probe`] in a new test process; returns it and the cluster root it reports.
fn start_probe(mode: &str) -> (std::process::Child, PathBuf) {
    let (mut child, said) = probe::start_probe("greenplum::greenplum_probe", PROBE_VAR, mode);
    let root = said.iter().find_map(|line| line.strip_prefix("root "));
    let Some(root) = root.map(PathBuf::from) else {
        let _ = child.kill();
        panic!("the probe reported no cluster")
    };
    (child, root)
}

/// Every postmaster of the cluster in `root` and each of their children.
fn server_pids(root: &Path) -> Vec<u32> {
    let postmasters: Vec<u32> = ["coord", "seg0", "seg1"]
        .iter()
        .filter_map(|name| std::fs::read_to_string(root.join(name).join("postmaster.pid")).ok())
        .filter_map(|pid_file| pid_file.lines().next()?.trim().parse().ok())
        .collect();
    let children = postmasters.iter().flat_map(|&pid| children_of(pid));
    postmasters.iter().copied().chain(children).collect()
}

#[test]
fn greenplum_servers_die_with_the_test_process() {
    if Greenplum::shared().is_none() {
        return;
    }
    let (mut killed, root) = start_probe("kill");
    let pids = server_pids(&root);
    assert!(
        pids.len() > 3,
        "no server processes found in {}",
        root.display()
    );
    killed.kill().unwrap();
    killed.wait().unwrap();
    let left = wait_until_gone(&pids, Duration::from_secs(30));
    assert!(
        left.is_empty(),
        "Greenplum processes outlived the killed test process: {left:?}"
    );

    // Nothing ran to remove the directory: the next test process sweeps it, and its own
    // cluster stops when it exits.
    assert!(root.exists());
    let (mut exits, next_root) = start_probe("exit");
    let next_pids = server_pids(&next_root);
    assert!(exits.wait().unwrap().success());
    assert!(!root.exists(), "{} was not swept", root.display());
    let left: Vec<u32> = next_pids.into_iter().filter(|&pid| alive(pid)).collect();
    assert!(
        left.is_empty(),
        "Greenplum processes outlived the test process: {left:?}"
    );
    assert!(
        !next_root.exists(),
        "{} outlived the test process",
        next_root.display()
    );
}
