//! The `adbpg` dialect on a genuine Greenplum 6.24.3 (AnalyticDB for PostgreSQL 6.x's engine),
//! against the genuine Qdrant: one cluster for the whole process (`support::greenplum`), a
//! database and small collections per test, so the tier stays quick and its tests run in
//! parallel. Where Greenplum is not installed each test says so in one line and returns (under
//! `CI=true` it fails).

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use crate::support::greenplum::Greenplum;

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
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([
            "greenplum::greenplum_probe",
            "--exact",
            "--ignored",
            "--nocapture",
        ])
        .arg("--test-threads=1")
        .env(PROBE_VAR, mode)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut root = None;
    for line in lines.by_ref() {
        let line = line.unwrap();
        let line = line.find("PROBE ").map_or("", |at| &line[at..]);
        if let Some(dir) = line.strip_prefix("PROBE root ") {
            root = Some(PathBuf::from(dir));
        } else if line == "PROBE ready" {
            break;
        }
    }
    thread::spawn(move || lines.for_each(drop));
    let root = root.unwrap_or_else(|| {
        let _ = child.kill();
        panic!("the probe reported no cluster")
    });
    (child, root)
}

/// Every postmaster of the cluster in `root` and each of their children.
fn server_pids(root: &Path) -> Vec<u32> {
    let postmasters: Vec<u32> = ["coord", "seg0", "seg1"]
        .iter()
        .filter_map(|name| std::fs::read_to_string(root.join(name).join("postmaster.pid")).ok())
        .filter_map(|pid_file| pid_file.lines().next()?.trim().parse().ok())
        .collect();
    let mut pids = postmasters.clone();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|p| p.parse::<u32>().ok())
        else {
            continue;
        };
        let parent = std::fs::read_to_string(entry.path().join("stat"))
            .ok()
            .and_then(|stat| stat.rsplit(") ").next()?.split(' ').nth(1)?.parse().ok());
        if parent.is_some_and(|p: u32| postmasters.contains(&p)) {
            pids.push(pid);
        }
    }
    pids
}

/// Alive as far as anyone can tell: it exists and is not a zombie awaiting its reaper.
fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
        stat.rsplit(") ")
            .next()
            .is_some_and(|rest| !rest.starts_with('Z'))
    })
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
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut left = pids.clone();
    while !left.is_empty() && Instant::now() < deadline {
        thread::sleep(Duration::from_millis(100));
        left.retain(|&pid| alive(pid));
    }
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
