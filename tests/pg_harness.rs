//! The PostgreSQL test harness itself: both servers run what the other tests rely on (versions,
//! pgvector, isolated databases, restarts, password auth), and no server outlives the test
//! process, whether it exits or is killed.

use std::path::PathBuf;
use std::process::Child;
use std::thread;
use std::time::Duration;

use postgres::error::SqlState;

use crate::support::pg::{Auth, PgCluster, PgVersion};
use crate::support::probe::{self, alive, wait_until_gone};

fn server_version_num(client: &mut postgres::Client) -> i32 {
    let row = client
        .query_one("SELECT current_setting('server_version_num')::int", &[])
        .unwrap();
    row.get(0)
}

#[test]
fn pg15_gives_each_test_its_own_database() {
    let cluster = PgCluster::pg15();
    let (a, b) = (cluster.create_database(), cluster.create_database());
    assert_ne!(a.name, b.name);
    assert!(
        a.name.contains("pg15_gives_each_test"),
        "database name {:?}",
        a.name
    );
    assert_eq!(
        a.dsn(),
        format!(
            "host=127.0.0.1 port={} user=postgres dbname={}",
            cluster.port(),
            a.name
        )
    );

    let mut client_a = a.client();
    assert_eq!(server_version_num(&mut client_a) / 10000, 15);
    client_a
        .batch_execute("CREATE TABLE t (x int); INSERT INTO t VALUES (1)")
        .unwrap();
    let count: i64 = b
        .client()
        .query_one("SELECT count(*) FROM pg_tables WHERE tablename = 't'", &[])
        .unwrap()
        .get(0);
    assert_eq!(
        count, 0,
        "a table of database {} is visible in {}",
        a.name, b.name
    );

    let psql = cluster.program("psql").arg("--version").output().unwrap();
    let psql = String::from_utf8_lossy(&psql.stdout);
    assert!(psql.contains("PostgreSQL) 15."), "psql --version: {psql}");
}

#[test]
fn pg18_has_pgvector() {
    let cluster = PgCluster::pg18_vector();
    let mut client = cluster.create_database().client();
    assert_eq!(server_version_num(&mut client) / 10000, 18);
    client.batch_execute("CREATE EXTENSION vector").unwrap();
    let version: String = client
        .query_one(
            "SELECT extversion FROM pg_extension WHERE extname = 'vector'",
            &[],
        )
        .unwrap()
        .get(0);
    assert!(version.starts_with("0.8."), "pgvector {version}");
    let distance: f64 = client
        .query_one("SELECT '[1,2,3]'::vector <-> '[1,2,5]'::vector", &[])
        .unwrap()
        .get(0);
    assert_eq!(distance, 2.0);
}

#[test]
fn restart_cuts_sessions_and_keeps_committed_data() {
    let cluster = PgCluster::start(PgVersion::Pg15, Auth::Trust);
    let port = cluster.port();
    let db = cluster.create_database();
    let mut before = db.client();
    before
        .batch_execute("CREATE TABLE t (x int); INSERT INTO t VALUES (42)")
        .unwrap();

    cluster.restart();

    assert_eq!(cluster.port(), port);
    let err = before.query_one("SELECT 1", &[]).unwrap_err();
    assert!(
        err.is_closed() || err.code() == Some(&SqlState::ADMIN_SHUTDOWN),
        "{err:?}"
    );
    let x: i32 = db
        .client()
        .query_one("SELECT x FROM t", &[])
        .unwrap()
        .get(0);
    assert_eq!(x, 42);
}

#[test]
fn scram_cluster_checks_the_password() {
    let cluster = PgCluster::start(PgVersion::Pg15, Auth::Scram("s3cret|\\'".into()));
    assert_eq!(cluster.password(), Some("s3cret|\\'"));
    let db = cluster.create_database();
    let mut config: postgres::Config = format!(
        "host={} port={} user=postgres dbname={}",
        cluster.host(),
        cluster.port(),
        db.name
    )
    .parse()
    .unwrap();

    let refused = |config: &postgres::Config| match config.connect(postgres::NoTls) {
        Ok(_) => panic!("connected with password {:?}", config.get_password()),
        Err(e) => e,
    };
    let err = refused(&config);
    let cause = std::error::Error::source(&err)
        .map(ToString::to_string)
        .unwrap_or_default();
    assert_eq!(cause, "password missing", "no password: {err:?}");
    let err = refused(config.password("wrong"));
    assert_eq!(
        err.code(),
        Some(&SqlState::INVALID_PASSWORD),
        "wrong password: {err:?}"
    );
    config
        .password("s3cret|\\'")
        .connect(postgres::NoTls)
        .unwrap();
    // The DSN quotes the password for libpq's key=value syntax.
    assert!(
        db.dsn().ends_with(r"password='s3cret|\\\''"),
        "{}",
        db.dsn()
    );
    db.client().query_one("SELECT 1", &[]).unwrap();
}

/// What a probe process reports about the shared clusters it started.
struct Probe {
    child: Child,
    /// Postmaster and every backend / auxiliary process of each cluster.
    pids: Vec<u32>,
    data_dirs: Vec<PathBuf>,
}

impl Drop for Probe {
    /// A failed assertion must not leave the probe (and its servers) behind.
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs [`leak_probe`] in a new test process and reads what it started.
fn start_probe(mode: &str) -> Probe {
    let (child, said) = probe::start_probe("pg_harness::leak_probe", PROBE_VAR, mode);
    let mut probe = Probe {
        child,
        pids: Vec::new(),
        data_dirs: Vec::new(),
    };
    for line in said {
        if let Some(dir) = line.strip_prefix("dir ") {
            probe.data_dirs.push(PathBuf::from(dir));
        } else if let Some(pid) = line.strip_prefix("pid ") {
            probe.pids.push(pid.parse().unwrap());
        }
    }
    assert_eq!(
        probe.data_dirs.len(),
        2,
        "the probe did not report both clusters"
    );
    assert!(
        probe.pids.len() > 2,
        "the probe reported no server processes: {:?}",
        probe.pids
    );
    probe
}

const PROBE_VAR: &str = "QDRANT2PG_LEAK_PROBE";

/// Not a test of its own: the process that the two leak tests below start and end.
#[test]
#[ignore = "run by the leak tests in a process of its own"]
fn leak_probe() {
    let Ok(mode) = std::env::var(PROBE_VAR) else {
        return;
    };
    for cluster in [PgCluster::pg15(), PgCluster::pg18_vector()] {
        let mut client = cluster.create_database().client();
        let dir: String = client.query_one("SHOW data_directory", &[]).unwrap().get(0);
        println!("PROBE dir {dir}");
        let pid_file: String = client
            .query_one("SELECT pg_read_file('postmaster.pid')", &[])
            .unwrap()
            .get(0);
        println!("PROBE pid {}", pid_file.lines().next().unwrap());
        for row in client
            .query("SELECT pid FROM pg_stat_activity", &[])
            .unwrap()
        {
            println!("PROBE pid {}", row.get::<_, i32>(0));
        }
    }
    println!("PROBE ready");
    if mode == "kill" {
        thread::sleep(Duration::from_secs(600));
    }
}

#[test]
fn shared_clusters_stop_when_the_process_exits() {
    let mut probe = start_probe("exit");
    let status = probe.child.wait().unwrap();
    assert!(status.success(), "probe: {status}");
    // The exit handler stops the servers before the process is gone: no grace period.
    let left: Vec<u32> = probe
        .pids
        .iter()
        .copied()
        .filter(|&pid| alive(pid))
        .collect();
    assert!(
        left.is_empty(),
        "server processes outlived the test process: {left:?}"
    );
    for dir in &probe.data_dirs {
        assert!(!dir.exists(), "{} outlived the test process", dir.display());
    }
}

#[test]
fn shared_clusters_stop_when_the_process_is_killed() {
    let mut probe = start_probe("kill");
    probe.child.kill().unwrap();
    probe.child.wait().unwrap();
    let left = wait_until_gone(&probe.pids, Duration::from_secs(20));
    assert!(
        left.is_empty(),
        "server processes outlived the killed test process: {left:?}"
    );

    // Nothing ran to remove the directories: the next test process sweeps them.
    assert!(probe.data_dirs.iter().all(|dir| dir.exists()));
    let mut next = start_probe("exit");
    assert!(next.child.wait().unwrap().success());
    for dir in &probe.data_dirs {
        assert!(!dir.exists(), "{} was not swept", dir.display());
    }
}
