//! Whether servers outlive the test process: a test starts a second test process (a probe: an
//! ignored test run by name), reads the `PROBE …` lines it prints about the servers it started,
//! ends it — it exits, or is killed — and looks for what is left.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

/// Runs the ignored test `test` in a new test process with `var=mode`, and returns it with the
/// text of each `PROBE …` line it printed before `PROBE ready`.
pub fn start_probe(test: &str, var: &str, mode: &str) -> (Child, Vec<String>) {
    let mut child = Command::new(std::env::current_exe().expect("the test binary"))
        .args([
            test,
            "--exact",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(var, mode)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn the probe");
    let stdout = child.stdout.take().expect("the probe's stdout");
    let mut said = Vec::new();
    let mut lines = BufReader::new(stdout).lines();
    for line in lines.by_ref() {
        let Ok(line) = line else { break };
        // libtest's "test <name> ... " starts the first line.
        let Some(at) = line.find("PROBE ") else {
            continue;
        };
        match &line[at + "PROBE ".len()..] {
            "ready" => break,
            what => said.push(what.to_owned()),
        }
    }
    // Keep reading, or the probe's last words would fail on a closed pipe.
    thread::spawn(move || lines.for_each(drop));
    (child, said)
}

/// Alive as far as anyone can tell: it exists and is not a zombie awaiting its reaper.
pub fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
        stat.rsplit(") ")
            .next()
            .is_some_and(|rest| !rest.starts_with('Z'))
    })
}

/// Those of `pids` still alive after waiting up to `within` for them to go.
pub fn wait_until_gone(pids: &[u32], within: Duration) -> Vec<u32> {
    let deadline = Instant::now() + within;
    loop {
        let left: Vec<u32> = pids.iter().copied().filter(|&pid| alive(pid)).collect();
        if left.is_empty() || Instant::now() > deadline {
            return left;
        }
        thread::sleep(Duration::from_millis(50));
    }
}

/// The processes whose parent is `parent`.
pub fn children_of(parent: u32) -> Vec<u32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|entry| {
            let pid: u32 = entry.file_name().to_str()?.parse().ok()?;
            let stat = std::fs::read_to_string(entry.path().join("stat")).ok()?;
            let ppid: u32 = stat.rsplit(") ").next()?.split(' ').nth(1)?.parse().ok()?;
            (ppid == parent).then_some(pid)
        })
        .collect()
}
