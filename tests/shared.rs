//! Shared runs on real servers (the genuine Qdrant where installed, PostgreSQL 15): identical
//! `migrate` and `import` commands in several processes divide one run through the target
//! database and finish it exactly once — with a worker killed -9 mid-run and started again, or
//! gone for good; processes racing to plan write one plan; a run with other settings is
//! refused; `status` shows the run from outside; a split reaches the unit's owner at its next
//! commit (the fence, driven through the library), and a failed unit stops its table, not the
//! run; `export --partition` parts load bit for bit as one export, and a broken set of parts is
//! refused.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Output};
use std::time::{Duration, Instant};

use qdrant2pg::config::postgres::{DatabaseSection, PostgresArgs, Target};
use qdrant2pg::point_id::{KeyRange, PointKey};
use qdrant2pg::postgres::ddl::Dialect;
use qdrant2pg::postgres::ledger::{Ledger, LedgerEntry};
use qdrant2pg::postgres::table::prepare_schema;
use qdrant2pg::run::member::Member;
use qdrant2pg::run::plan::{Joined, NewPlan, NewUnit};
use qdrant2pg::run::ranges::{PageFence, RangeUnits};
use qdrant2pg::run::store::{Settings, SharedRun};
use qdrant2pg::sink::copy::{CopyError, CopyFormat, CopyTarget, Fenced, UnitRows, copy_unit};
use qdrant2pg::source::cursor::Lease;
use qdrant2pg::source::plan::IdSpan;

use crate::export::load_ids;
use crate::support::cli::{assert_ok, command, describe, qdrant2pg, qdrant2pg_with_env};
use crate::support::flows::{FIXTURES, assert_verifies, counts, fixture_server};
use crate::support::greenplum::Greenplum;
use crate::support::pg::{PgCluster, TestDb};
use crate::support::qdrant::QdrantServer;

/// How long a shared run in these tests may take, on a loaded 2-core machine.
const RUN_TIMEOUT: Duration = Duration::from_secs(300);

/// `qdrant2pg args…` in the background, its stdout and stderr in `log`.
fn spawn(args: &[String], log: &Path) -> Child {
    let out = File::create(log).expect("a log file");
    let err = out.try_clone().expect("a log file");
    command(&args.iter().map(String::as_str).collect::<Vec<_>>())
        .stdout(out)
        .stderr(err)
        .spawn()
        .expect("start qdrant2pg")
}

/// Waits for `child`; panics with its log unless it succeeded.
fn wait_ok(child: &mut Child, log: &Path) {
    let started = Instant::now();
    loop {
        if let Some(status) = child.try_wait().expect("wait") {
            let text = std::fs::read_to_string(log).unwrap_or_default();
            assert!(status.success(), "{status}:\n{text}");
            return;
        }
        if started.elapsed() > RUN_TIMEOUT {
            let _ = child.kill();
            panic!(
                "still running after {RUN_TIMEOUT:?}:\n{}",
                std::fs::read_to_string(log).unwrap_or_default()
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Polls `check` until it holds.
fn wait_until(what: &str, mut check: impl FnMut() -> bool) {
    let started = Instant::now();
    while !check() {
        assert!(
            started.elapsed() < RUN_TIMEOUT,
            "timed out waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// One number from a query, `None` while the tables do not exist yet.
fn number(db: &mut postgres::Client, sql: &str) -> Option<i64> {
    db.query_opt(sql, &[]).ok().flatten().map(|r| r.get(0))
}

/// Whether the process `pid` holds an open unit of the run in `schema` it has committed pages
/// of.
fn holds_a_started_unit(db: &mut postgres::Client, schema: &str, pid: u32) -> bool {
    number(
        db,
        &format!(
            "SELECT count(*) FROM {schema}.qdrant2pg_units WHERE worker LIKE '%:{pid}' \
             AND state = 'todo' AND rows > 0"
        ),
    )
    .is_some_and(|n| n > 0)
}

/// `workers` identical commands (`args`, loading into `schema`) share one run; once worker 0
/// holds a unit it has started, it is killed -9, and started again when `restart`. Every
/// process must succeed.
fn share_with_a_kill(args: &[String], db: &TestDb, schema: &str, workers: usize, restart: bool) {
    let logs = tempfile::tempdir().expect("tempdir");
    let log = |i: usize| logs.path().join(format!("worker-{i}.log"));
    let mut children: Vec<(Child, PathBuf)> = (0..workers)
        .map(|i| (spawn(args, &log(i)), log(i)))
        .collect();
    let victim = children[0].0.id();
    let mut client = db.client();
    wait_until("worker 0 to be mid-unit", || {
        assert!(
            children[0].0.try_wait().expect("wait").is_none(),
            "worker 0 finished before it could be killed:\n{}",
            std::fs::read_to_string(log(0)).unwrap_or_default()
        );
        holds_a_started_unit(&mut client, schema, victim)
    });
    children[0].0.kill().expect("kill -9");
    children[0].0.wait().expect("reap");
    if restart {
        children[0] = (spawn(args, &log(workers)), log(workers));
    } else {
        children.remove(0);
    }
    for (child, log) in &mut children {
        wait_ok(child, log);
    }
}

/// The processes that completed units of the run.
fn workers_that_finished_units(db: &TestDb) -> i64 {
    db.client()
        .query_one(
            "SELECT count(DISTINCT worker) FROM public.qdrant2pg_units WHERE state = 'done' \
             AND rows > 0",
            &[],
        )
        .expect("units")
        .get(0)
}

fn strings(args: &[&str]) -> Vec<String> {
    args.iter().map(|s| (*s).to_owned()).collect()
}

/// A collection of `total` points with 16-d vectors, ids spread out.
fn big_collection(server: &QdrantServer, name: &str, total: u64) {
    let ids: Vec<PointKey> = (0..total).map(|i| PointKey::Num(i * 3 + 1)).collect();
    load_ids(server, name, 16, &ids);
}

fn migrate_args(server: &QdrantServer, db: &TestDb) -> Vec<String> {
    strings(&[
        "migrate",
        "--url",
        &server.url(),
        "--dsn",
        &db.dsn(),
        "--collection",
        "big",
        "--page-size",
        "50",
        "-j",
        "1",
        "--cursors",
        "1",
        "--quiet",
    ])
}

fn four_migrates_with_worker_0_killed(restart: bool) {
    let server = QdrantServer::start();
    let total = 60_000;
    big_collection(&server, "big", total);
    let db = PgCluster::pg15().create_database();
    share_with_a_kill(&migrate_args(&server, &db), &db, "public", 4, restart);
    assert_eq!(counts(&db, "public.big"), (total as i64, total as i64));
    assert_verifies(&server, &db, &[], 1);
    assert!(workers_that_finished_units(&db) >= 3, "the work was shared");
}

#[test]
fn four_migrates_one_killed_9_and_started_again_load_every_point_once() {
    four_migrates_with_worker_0_killed(true);
}

#[test]
fn four_migrates_one_killed_9_for_good_load_every_point_once() {
    four_migrates_with_worker_0_killed(false);
}

fn three_imports_with_worker_0_killed(restart: bool) {
    let server = QdrantServer::start();
    let total = 30_000;
    big_collection(&server, "docs", total);
    let export = tempfile::tempdir().expect("tempdir");
    let out = export.path().to_str().expect("utf-8");
    assert_ok(&qdrant2pg(&[
        "export",
        "--url",
        &server.url(),
        "--output",
        out,
        "--max-lines",
        "500",
        "--quiet",
    ]));
    let db = PgCluster::pg15().create_database();
    let args = strings(&[
        "import",
        "--dsn",
        &db.dsn(),
        "--data",
        out,
        "-j",
        "1",
        "--batch-bytes",
        "20000",
        "--quiet",
    ]);
    share_with_a_kill(&args, &db, "public", 3, restart);
    assert_eq!(counts(&db, "public.docs"), (total as i64, total as i64));
    assert_verifies(&server, &db, &[], 1);
    assert!(workers_that_finished_units(&db) >= 2, "the work was shared");
}

#[test]
fn three_imports_one_killed_9_and_started_again_load_every_row_once() {
    three_imports_with_worker_0_killed(true);
}

#[test]
fn three_imports_one_killed_9_for_good_load_every_row_once() {
    three_imports_with_worker_0_killed(false);
}

#[test]
fn processes_racing_to_plan_write_one_plan() {
    let server = QdrantServer::start();
    big_collection(&server, "big", 5_000);
    let db = PgCluster::pg15().create_database();
    let mut args = migrate_args(&server, &db);
    // Planning is said under --verbose only: a process cannot know that others will join.
    args.retain(|a| a != "--quiet");
    args.push("--verbose".to_owned());
    let logs = tempfile::tempdir().expect("tempdir");
    let mut children: Vec<(Child, PathBuf)> = (0..3)
        .map(|i| {
            let log = logs.path().join(format!("worker-{i}.log"));
            (spawn(&args, &log), log)
        })
        .collect();
    let mut texts = Vec::new();
    for (child, log) in &mut children {
        wait_ok(child, log);
        texts.push(std::fs::read_to_string(log).expect("log"));
    }
    let planned = texts
        .iter()
        .filter(|t| t.contains("planned the run"))
        .count();
    let others = texts
        .iter()
        .filter(|t| t.contains("joined the run") || t.contains("nothing left to do"))
        .count();
    assert_eq!((planned, others), (1, 2), "{texts:#?}");
    let mut client = db.client();
    assert_eq!(
        number(
            &mut client,
            "SELECT max(generation)::int8 FROM public.qdrant2pg_run"
        ),
        Some(1),
        "one plan"
    );
    assert_eq!(counts(&db, "public.big"), (5_000, 5_000));
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn status(db: &TestDb) -> String {
    let out = qdrant2pg(&["status", "--dsn", &db.dsn(), "--schema", "public"]);
    assert_ok(&out);
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn a_run_with_other_settings_is_refused_and_status_shows_the_run() {
    let server = QdrantServer::start();
    big_collection(&server, "big", 20_000);
    let db = PgCluster::pg15().create_database();
    assert!(status(&db).contains("no shared run"), "{}", status(&db));
    let args = migrate_args(&server, &db);
    let logs = tempfile::tempdir().expect("tempdir");
    let log = logs.path().join("worker.log");
    let mut child = spawn(&args, &log);
    let mut client = db.client();
    wait_until("the run to commit pages", || {
        holds_a_started_unit(&mut client, "public", child.id())
    });
    // Stopped, the worker still holds its unit and is alive to the run.
    let pid = child.id() as libc::pid_t;
    // SAFETY: signals to the child this test started and still owns.
    unsafe { libc::kill(pid, libc::SIGSTOP) };
    let shown = status(&db);
    for expected in [
        "migrate of big",
        "in progress",
        "1 claimed",
        "workers: 1 seen, 1 alive",
        "--dialect \"postgres\"",
    ] {
        assert!(shown.contains(expected), "{expected:?} not in:\n{shown}");
    }
    let mut other = args.clone();
    other.extend(strings(&["--dialect", "pgvector"]));
    other.retain(|a| a != "--quiet");
    let refused = qdrant2pg(&other.iter().map(String::as_str).collect::<Vec<_>>());
    assert!(!refused.status.success(), "{}", describe(&refused));
    for expected in [
        "has a shared run in progress with other settings",
        "refusing to mix them",
        "--dialect: the run has \"postgres\", this command \"pgvector\"",
    ] {
        assert!(
            stderr(&refused).contains(expected),
            "{}",
            describe(&refused)
        );
    }
    let mut more = args.clone();
    more.extend(strings(&["--collection", "small"]));
    let refused = qdrant2pg(&more.iter().map(String::as_str).collect::<Vec<_>>());
    assert!(
        stderr(&refused)
            .contains("--collection: the run has [\"big\"], this command [\"big\",\"small\"]"),
        "{}",
        describe(&refused)
    );
    // SAFETY: as above.
    unsafe { libc::kill(pid, libc::SIGCONT) };
    wait_ok(&mut child, &log);
    assert_eq!(counts(&db, "public.big"), (20_000, 20_000));
    let shown = status(&db);
    assert!(shown.contains("finished"), "{shown}");
    assert!(shown.contains("rows: 20000"), "{shown}");
    // The same command again has nothing to do; another run may start now.
    let again = qdrant2pg(&args.iter().map(String::as_str).collect::<Vec<_>>());
    assert_ok(&again);
    assert!(
        String::from_utf8_lossy(&again.stdout).contains("nothing left to do"),
        "{}",
        describe(&again)
    );
    let mut append = args.clone();
    append.extend(strings(&["--if-exists", "append"]));
    assert_ok(&qdrant2pg(
        &append.iter().map(String::as_str).collect::<Vec<_>>(),
    ));
    assert_eq!(counts(&db, "public.big"), (20_000, 20_000));
    assert!(status(&db).contains("generation 2"), "{}", status(&db));
}

/// One page committed through the fence, as migrate commits it: `ids` as COPY text into `t`.
fn commit(
    target: &Target,
    units: &RangeUnits<'_>,
    lease: Lease,
    ids: std::ops::Range<u64>,
    covered: KeyRange,
) -> Result<(PageFence, LedgerEntry), CopyError> {
    let ledger = Ledger::new("public");
    let copy = CopyTarget {
        schema: "public".into(),
        table: "t".into(),
        columns: vec!["id".into()],
        format: CopyFormat::Text,
    };
    let rows: String = ids.clone().map(|i| format!("{i}\n")).collect();
    let entry = LedgerEntry {
        table: "t".into(),
        source: "qdrant".into(),
        lo: covered.lo.to_string(),
        hi: covered.hi.map(|k| k.to_string()).unwrap_or_default(),
        rows: ids.clone().count() as u64,
        checksum: String::new(),
    };
    let last = ids.clone().last().map(PointKey::Num);
    let mut client = target.connect().expect("connect");
    let mut seen = None;
    copy_unit(
        &mut client,
        &copy,
        &ledger,
        &entry,
        UnitRows::Bytes(rows.as_bytes()),
        &mut |tx, entry| {
            let fence = units.fence(tx, lease, entry, covered, last)?;
            seen = Some((fence, entry.clone()));
            Ok(())
        },
    )?;
    Ok(seen.expect("the fence ran"))
}

fn lease(row: &qdrant2pg::run::store::UnitRow) -> Lease {
    Lease {
        unit: row.unit,
        token: row.claims,
    }
}

/// The owner of a unit learns that another worker split it in the transaction of its next
/// commit, under the unit's row lock: a page holding ids above the cut is refused and goes
/// again without them, a page wholly above it is dropped, and the new unit's rows come from its
/// own claimer only. Driven through the library, so each step happens in a known order.
/// A shared run in `db`'s public schema whose plan is `units` over empty tables `(id bigint)`
/// named by the units, and a way to join it as one more member; with the target, for commits.
fn run_of(db: &TestDb, units: Vec<NewUnit>) -> (Target, impl Fn() -> Member) {
    let args = PostgresArgs {
        dsn: Some(db.dsn()),
        ..PostgresArgs::default()
    };
    let target = Target::resolve(&args, &DatabaseSection::default(), &|_| None).expect("target");
    let join_target = target.clone();
    let join = move || -> Member {
        let settings: Settings = [("command".to_owned(), "test".into())].into();
        let plan = |tx: &mut postgres::Transaction<'_>| -> anyhow::Result<NewPlan> {
            prepare_schema(tx, "public", &Ledger::new("public"), Dialect::Postgres)?;
            let mut tables: Vec<&str> = units.iter().map(|u| u.table.as_str()).collect();
            tables.dedup();
            for table in tables {
                tx.batch_execute(&format!("CREATE TABLE public.{table} (id bigint)"))?;
            }
            Ok(NewPlan {
                plan: "[]".into(),
                units: units.clone(),
            })
        };
        let joined = SharedRun::new("public")
            .join(
                &join_target,
                join_target.connect().expect("connect"),
                &settings,
                3,
                Dialect::Postgres,
                plan,
            )
            .expect("join");
        match joined {
            Joined::Member { member, .. } => *member,
            Joined::Finished(_) => panic!("a finished run"),
        }
    };
    (target, join)
}

/// A unit of table `table`, ids `[lo, hi)`.
fn unit(table: &str, lo: u64, hi: u64) -> NewUnit {
    NewUnit {
        table: table.into(),
        source: "qdrant".into(),
        lo: lo.to_string(),
        hi: hi.to_string(),
    }
}

/// A unit that fails stops its table for every worker of the run, not the run: claims that
/// skip failed tables pass over the table's other units (a worker that does not skip them, as
/// `import --on-error skip-file`, still gets them), and the run's failures name it.
#[test]
fn a_failed_unit_stops_its_table_for_every_worker_not_the_run() {
    let db = PgCluster::pg15().create_database();
    let (_, join) = run_of(
        &db,
        vec![unit("t", 0, 100), unit("t", 100, 200), unit("u", 0, 100)],
    );
    let (a, b) = (join(), join());
    let first = a.claim(true).expect("claim").expect("an open unit");
    assert_eq!((first.table.as_str(), first.lo.as_str()), ("t", "0"));
    a.fail(lease(&first), "a point its table rejects")
        .expect("fail");
    let next = b.claim(true).expect("claim").expect("an open unit");
    assert_eq!(next.table, "u", "t's other unit is passed over: {next:?}");
    assert!(
        a.claim(true).expect("claim").is_none(),
        "nothing of u or t is left"
    );
    let skip_file = a.claim(false).expect("claim").expect("t's other unit");
    assert_eq!(
        (skip_file.table.as_str(), skip_file.lo.as_str()),
        ("t", "100")
    );
    let failed = b.failed_units().expect("failed units");
    assert_eq!(failed.len(), 1, "{failed:?}");
    assert_eq!(
        (failed[0].table.as_str(), failed[0].note.as_str()),
        ("t", "a point its table rejects")
    );
}

#[test]
fn a_split_reaches_the_owner_at_its_next_commit_which_keeps_only_what_is_left() {
    let db = PgCluster::pg15().create_database();
    let (target, join) = run_of(&db, vec![unit("t", 0, 1000)]);
    let (a, b) = (join(), join());
    let span = IdSpan {
        ints: Some((0, 999)),
        uuids: None,
    };
    let units_a = RangeUnits::new(&a, vec!["t".into()], vec![span], vec![1000], 1);
    let units_b = RangeUnits::new(&b, vec!["t".into()], vec![span], vec![1000], 1);
    let range = |lo: u64, hi: Option<u64>| KeyRange::new(PointKey::Num(lo), hi.map(PointKey::Num));

    let first = a.claim(true).expect("claim").expect("an open unit");
    let lease_a = lease(&first);
    let (fence, _) =
        commit(&target, &units_a, lease_a, 0..100, range(0, Some(100))).expect("page 1");
    assert!(!fence.done);
    // Worker b, finding nothing to claim, cuts a's unit at 500.
    assert!(
        b.claim(true).expect("claim").is_none(),
        "a holds the only unit"
    );
    let new = b
        .split(first.unit, &|_| Some("500".to_owned()))
        .expect("split")
        .expect("a new unit");
    // a's next page holds ids up to 599: refused, the unit ends at 500 now.
    let refused = commit(&target, &units_a, lease_a, 100..600, range(100, Some(600)));
    assert!(
        matches!(&refused, Err(CopyError::Fenced(Fenced::Shrunk(hi))) if hi == "500"),
        "{refused:?}"
    );
    // Sent again without them, it closes the unit at 500.
    let (fence, entry) =
        commit(&target, &units_a, lease_a, 100..500, range(100, Some(600))).expect("page 2");
    assert_eq!(
        fence,
        PageFence {
            done: true,
            hi: Some(PointKey::Num(500))
        }
    );
    assert_eq!((entry.lo.as_str(), entry.hi.as_str()), ("100", "500"));
    // A page a's cursor read past the cut accounts for nothing any more.
    let beyond = commit(&target, &units_a, lease_a, 600..700, range(600, Some(700)));
    assert!(
        matches!(beyond, Err(CopyError::Fenced(Fenced::Finished))),
        "{beyond:?}"
    );
    // b claims the new unit and loads it; a stale lease on it commits nothing.
    let second = b.claim_unit(new).expect("claim").expect("the new unit");
    assert_eq!((second.lo.as_str(), second.hi.as_str()), ("500", "1000"));
    let stale = Lease {
        unit: new,
        token: second.claims - 1,
    };
    let lost = commit(&target, &units_a, stale, 500..600, range(500, Some(600)));
    assert!(
        matches!(lost, Err(CopyError::Fenced(Fenced::Lost))),
        "{lost:?}"
    );
    let (fence, _) = commit(
        &target,
        &units_b,
        lease(&second),
        500..1000,
        range(500, None),
    )
    .expect("page 3");
    assert!(fence.done);
    assert_eq!(counts(&db, "public.t"), (1000, 1000));
    let spans: Vec<(String, String)> = db
        .client()
        .query(
            "SELECT lo, hi FROM public.qdrant2pg_ledger WHERE source = 'qdrant' ORDER BY lo::int8",
            &[],
        )
        .expect("ledger")
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    let expected = [("0", "100"), ("100", "500"), ("500", "1000")];
    assert_eq!(
        spans,
        expected.map(|(lo, hi)| (lo.to_owned(), hi.to_owned()))
    );
    assert!(matches!(
        a.outcome().expect("outcome"),
        qdrant2pg::run::status::Outcome::Complete
    ));
}

/// Rows of `schema.table`, in a canonical text form, hashed: equal digests mean equal rows bit
/// for bit (PostgreSQL 15 prints `real` as the shortest text that reads back to the same bits).
fn digest(db: &TestDb, schema: &str, table: &str) -> (i64, String) {
    let row = db
        .client()
        .query_one(
            &format!(
                "SELECT count(*), coalesce(md5(string_agg(t::text, E'\\n' ORDER BY t::text)), '') \
                 FROM \"{schema}\".\"{table}\" t"
            ),
            &[],
        )
        .expect("digest");
    (row.get(0), row.get(1))
}

fn export_to(server: &QdrantServer, out: &Path, extra: &[&str]) {
    let out = out.to_str().expect("utf-8");
    let url = server.url();
    let mut args = vec![
        "export",
        "--url",
        &url,
        "--output",
        out,
        "--max-lines",
        "9",
        "--quiet",
    ];
    args.extend_from_slice(extra);
    assert_ok(&qdrant2pg(&args));
}

fn import_from(db: &TestDb, schema: &str, data: &[&Path]) -> Output {
    let dsn = db.dsn();
    let mut args = vec!["import", "--dsn", &dsn, "--schema", schema, "--quiet"];
    let data: Vec<String> = data
        .iter()
        .map(|d| d.to_str().expect("utf-8").to_owned())
        .collect();
    for d in &data {
        args.extend(["--data", d]);
    }
    qdrant2pg(&args)
}

#[test]
fn partitions_of_1_3_and_7_load_bit_for_bit_as_one_export() {
    let server = fixture_server();
    let db = PgCluster::pg15().create_database();
    let work = tempfile::tempdir().expect("tempdir");
    let whole = work.path().join("whole");
    export_to(&server, &whole, &[]);
    assert_ok(&import_from(&db, "whole", &[&whole]));
    for n in [1u32, 3, 7] {
        let parts = work.path().join(format!("parts-{n}"));
        for i in 0..n {
            let part = format!("{i}/{n}");
            export_to(&server, &parts, &["--partition", &part]);
        }
        let schema = format!("p{n}");
        assert_ok(&import_from(&db, &schema, &[&parts]));
        for table in FIXTURES {
            let expected = digest(&db, "whole", table);
            assert!(expected.0 > 0, "{table} is empty");
            assert_eq!(digest(&db, &schema, table), expected, "{table}, {n} parts");
        }
    }
    assert_verifies(&server, &db, &["--schema", "p7"], FIXTURES.len());
    // A job array's environment picks the part when no flag does.
    let from_env = work.path().join("from-env");
    let out = from_env.to_str().expect("utf-8");
    let url = server.url();
    assert_ok(&qdrant2pg_with_env(
        &[
            "export",
            "--url",
            &url,
            "--output",
            out,
            "--collection",
            "fx_single",
            "--quiet",
        ],
        &[("JOB_COMPLETION_INDEX", "1"), ("JOB_COMPLETIONS", "3")],
    ));
    assert!(
        from_env
            .join("fx_single/part-1-of-3/manifest.json")
            .is_file()
    );
}

#[test]
fn a_set_of_parts_with_one_missing_twice_or_overlapping_is_refused() {
    let server = fixture_server();
    let db = PgCluster::pg15().create_database();
    let work = tempfile::tempdir().expect("tempdir");
    let three = work.path().join("three");
    for i in 0..3 {
        let part = format!("{i}/3");
        export_to(
            &server,
            &three,
            &["--collection", "fx_sharded", "--partition", &part],
        );
    }
    let moved = work.path().join("elsewhere");
    std::fs::create_dir_all(moved.join("fx_sharded")).expect("mkdir");
    std::fs::rename(
        three.join("fx_sharded/part-1-of-3"),
        moved.join("fx_sharded/part-1-of-3"),
    )
    .expect("move part 1");
    let refused = |data: &[&Path], expected: &str| {
        let out = import_from(&db, "refused", data);
        assert!(!out.status.success(), "{}", describe(&out));
        assert!(
            stderr(&out).contains(expected),
            "{expected:?} in {}",
            describe(&out)
        );
    };
    refused(&[&three], "part(s) 1 of 3 missing");
    // Parts spread over two export directories load as one collection.
    assert_ok(&import_from(&db, "spread", &[&three, &moved]));
    assert_verifies(
        &server,
        &db,
        &["--schema", "spread", "--collection", "fx_sharded"],
        1,
    );
    // The same part twice.
    let copy = work.path().join("copy");
    std::fs::create_dir_all(copy.join("fx_sharded")).expect("mkdir");
    std::fs::create_dir_all(copy.join("fx_sharded/part-1-of-3")).expect("mkdir");
    for entry in std::fs::read_dir(moved.join("fx_sharded/part-1-of-3")).expect("read") {
        let path = entry.expect("entry").path();
        std::fs::copy(
            &path,
            copy.join("fx_sharded/part-1-of-3")
                .join(path.file_name().expect("name")),
        )
        .expect("copy");
    }
    refused(&[&three, &moved, &copy], "part 1 of 3 appears twice");
    // A part of another partitioning.
    let seven = work.path().join("seven");
    export_to(
        &server,
        &seven,
        &["--collection", "fx_sharded", "--partition", "1/7"],
    );
    refused(&[&three, &seven], "parts of different exports");
    // A part whose range overlaps the next one's (an export of other data).
    let manifest_path = moved.join("fx_sharded/part-1-of-3/manifest.json");
    let mut manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&manifest_path).expect("read")).expect("json");
    manifest["partition"]["range"]["hi"] = serde_json::json!(null);
    std::fs::write(&manifest_path, manifest.to_string()).expect("write");
    refused(&[&three, &moved], "overlaps every part after it");
}

/// Every row of `schema.table` as the server sends it in binary — ids as text, vectors as the
/// exact `f32` bits, payloads as text — sorted by id: equal on two servers means bit for bit.
fn rows_of(db: &TestDb, schema: &str, table: &str) -> Vec<(String, Vec<u32>, String)> {
    let mut rows: Vec<(String, Vec<u32>, String)> = db
        .client()
        .query(
            &format!("SELECT id::text, vector, payload::text FROM {schema}.{table}"),
            &[],
        )
        .expect("rows")
        .iter()
        .map(|r| {
            let vector: Vec<f32> = r.get(1);
            (
                r.get(0),
                vector.iter().map(|v| v.to_bits()).collect(),
                r.get(2),
            )
        })
        .collect();
    rows.sort();
    rows
}

/// A shared run on Greenplum (AnalyticDB's engine), where its locks and ledger live on the
/// coordinator and its tables on segments: 3 `migrate` workers with one killed -9 mid-unit and
/// started again, then 2 `import` workers with one killed for good, both end with every row once
/// and bit for bit what a single migrate into PostgreSQL 15 holds.
#[test]
fn a_shared_run_on_greenplum_survives_a_killed_worker() {
    let Some(gp) = Greenplum::shared() else {
        return;
    };
    let server = QdrantServer::start();
    let total = 20_000u64;
    let mut x: u128 = 0x0123_4567_89ab_cdef_fedc_ba98_7654_3210;
    let ids: Vec<PointKey> = (0..total)
        .map(|i| {
            if i % 2 == 0 {
                PointKey::Num(i * 5 + 1)
            } else {
                x = x
                    .wrapping_mul(0x2360_ed05_1fc6_5da4_4385_df64_9fcc_f645)
                    .wrapping_add(1);
                PointKey::Uuid(x)
            }
        })
        .collect();
    load_ids(&server, "mixed", 16, &ids);
    let db = gp.create_database();
    let url = server.url();
    let args = strings(&[
        "migrate",
        "--url",
        &url,
        "--dsn",
        &db.dsn(),
        "--collection",
        "mixed",
        "--dialect",
        "adbpg",
        "--page-size",
        "50",
        "-j",
        "1",
        "--cursors",
        "2",
        "--quiet",
    ]);
    share_with_a_kill(&args, &db, "public", 3, true);
    assert_eq!(counts(&db, "public.mixed"), (total as i64, total as i64));
    let reference = PgCluster::pg15().create_database();
    assert_ok(&qdrant2pg(&[
        "migrate",
        "--url",
        &url,
        "--dsn",
        &reference.dsn(),
        "--collection",
        "mixed",
        "--quiet",
    ]));
    let expected = rows_of(&reference, "public", "mixed");
    assert_eq!(expected.len(), total as usize);
    assert!(
        rows_of(&db, "public", "mixed") == expected,
        "Greenplum's rows differ"
    );

    let export = tempfile::tempdir().expect("tempdir");
    let out = export.path().to_str().expect("utf-8");
    assert_ok(&qdrant2pg(&[
        "export",
        "--url",
        &url,
        "--output",
        out,
        "--dialect",
        "adbpg",
        "--max-lines",
        "500",
        "--quiet",
    ]));
    let args = strings(&[
        "import",
        "--dsn",
        &db.dsn(),
        "--schema",
        "imported",
        "--dialect",
        "adbpg",
        "--data",
        out,
        "-j",
        "1",
        "--batch-bytes",
        "20000",
        "--quiet",
    ]);
    share_with_a_kill(&args, &db, "imported", 2, false);
    assert!(
        rows_of(&db, "imported", "mixed") == expected,
        "imported rows differ"
    );
}
