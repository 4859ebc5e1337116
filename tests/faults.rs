//! Faults injected into a running export, and damaged export directories: the outcome is
//! checked with exact ids, checksums and `verify --full`, never by "it did not crash".
//!
//! Import's and migrate's kill -9 and PostgreSQL's restart live beside those commands
//! (tests/import.rs, tests/migrate.rs); this file covers export and the files between the two.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use qdrant2pg::manifest::Manifest;
use qdrant2pg::point_id::PointKey;

use crate::export::load_ids;
use crate::support::cli::{assert_ok, describe, qdrant2pg};
use crate::support::flows::{assert_verifies, client, runtime};
use crate::support::pg::PgCluster;
use crate::support::qdrant::QdrantServer;

/// `export --url server --collection name --output out extra…`, started in the background.
fn spawn_export(server: &QdrantServer, name: &str, out: &Path, extra: &[&str]) -> Child {
    Command::new(env!("CARGO_BIN_EXE_qdrant2pg"))
        .args([
            "export",
            "--url",
            &server.url(),
            "--collection",
            name,
            "--quiet",
        ])
        .arg("--output")
        .arg(out)
        .args(extra)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn export")
}

fn export(server: &QdrantServer, name: &str, out: &Path, extra: &[&str]) -> Output {
    spawn_export(server, name, out, extra)
        .wait_with_output()
        .expect("run export")
}

/// Data files renamed into place (complete on disk, listed in the manifest or not yet).
fn data_files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .map(|e| e.expect("dir entry").path())
                .filter(|p| p.extension().is_some_and(|x| x == "csv"))
                .collect()
        })
        .unwrap_or_default();
    files.sort();
    files
}

/// Waits until `dir` holds `files` data files, with `child` still running.
fn wait_for_files(child: &mut Child, dir: &Path, files: usize) {
    let started = Instant::now();
    while data_files(dir).len() < files {
        assert!(
            child.try_wait().expect("try_wait").is_none(),
            "export finished before the fault could be injected"
        );
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "no files appeared"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Every data row of an export directory (headers dropped), sorted: the content of an export
/// independent of how its rows were cut into files.
fn sorted_rows(dir: &Path) -> Vec<String> {
    let manifest = Manifest::load(dir).expect("load").expect("a manifest");
    let mut rows = Vec::new();
    for file in &manifest.files {
        let text = std::fs::read_to_string(dir.join(&file.name)).expect("read data file");
        rows.extend(text.lines().skip(1).map(str::to_owned));
    }
    rows.sort_unstable();
    rows
}

/// Each file the manifest lists is, byte for byte, what the manifest says it is.
fn assert_listed_files_intact(dir: &Path, manifest: &Manifest) {
    for file in &manifest.files {
        let bytes = std::fs::read(dir.join(&file.name)).expect("a listed file exists");
        assert_eq!(bytes.len() as u64, file.bytes, "{}: size", file.name);
        let xxh3 = format!("{:016x}", xxhash_rust::xxh3::xxh3_64(&bytes));
        assert_eq!(xxh3, file.xxh3, "{}: checksum", file.name);
        let lines = bytes.iter().filter(|&&b| b == b'\n').count() as u64;
        assert_eq!(lines, file.rows + 1, "{}: rows + header", file.name);
    }
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn kill_9_mid_export_then_rerun_equals_an_uninterrupted_export() {
    let server = QdrantServer::start();
    let ids: Vec<PointKey> = (0..30_000u64).map(|i| PointKey::Num(i * 7 + 3)).collect();
    load_ids(&server, "crashy", 16, &ids);
    let tuning = ["--max-lines", "500", "--page-size", "20", "--cursors", "2"];
    let whole = tempfile::tempdir().expect("tempdir");
    assert_ok(&export(&server, "crashy", whole.path(), &tuning));

    let out = tempfile::tempdir().expect("tempdir");
    let dir = out.path().join("crashy");
    let mut child = spawn_export(&server, "crashy", out.path(), &tuning);
    wait_for_files(&mut child, &dir, 4);
    child.kill().expect("kill -9");
    child.wait().expect("reap");

    // What the crash left: an unfinished manifest whose every file is whole.
    let left = Manifest::load(&dir).expect("load").expect("a manifest");
    assert!(!left.complete, "a killed export is not complete");
    assert!(left.rows() < ids.len() as u64);
    assert_listed_files_intact(&dir, &left);
    let db = PgCluster::pg15().create_database();
    let data = out.path().to_str().expect("utf-8");
    let refused = qdrant2pg(&["import", "--dsn", &db.dsn(), "--data", data]);
    assert!(!refused.status.success(), "{}", describe(&refused));
    assert!(
        stderr(&refused).contains("not complete"),
        "{}",
        describe(&refused)
    );

    let rerun = export(&server, "crashy", out.path(), &tuning);
    assert_ok(&rerun);
    let done = Manifest::load(&dir).expect("load").expect("a manifest");
    assert!(done.complete);
    assert_listed_files_intact(&dir, &done);
    assert_eq!(done.rows(), ids.len() as u64);
    assert_eq!(
        sorted_rows(&dir),
        sorted_rows(&whole.path().join("crashy")),
        "the resumed export holds other rows than the uninterrupted one"
    );
    assert_eq!(
        std::fs::read(dir.join("create_table.sql")).expect("ddl"),
        std::fs::read(whole.path().join("crashy/create_table.sql")).expect("ddl")
    );

    assert_ok(&qdrant2pg(&[
        "import",
        "--dsn",
        &db.dsn(),
        "--data",
        data,
        "--quiet",
    ]));
    assert_verifies(&server, &db, &[], 1);
}

#[test]
fn qdrant_stopped_mid_export_is_retried_until_it_is_back() {
    let mut server = QdrantServer::start();
    let ids: Vec<PointKey> = (0..20_000u64).map(PointKey::Num).collect();
    load_ids(&server, "flaky", 16, &ids);
    let out = tempfile::tempdir().expect("tempdir");
    let dir = out.path().join("flaky");
    let tuning = ["--max-lines", "400", "--page-size", "20", "--cursors", "2"];
    let mut child = spawn_export(&server, "flaky", out.path(), &tuning);
    wait_for_files(&mut child, &dir, 2);
    server.stop();
    assert!(
        child.try_wait().expect("try_wait").is_none(),
        "the export finished before the server went down"
    );
    // Down for several backoff rounds (200 ms, 400 ms, 800 ms, …), well inside the 8 attempts.
    std::thread::sleep(Duration::from_secs(2));
    server.restart();
    let done = child.wait_with_output().expect("export");
    assert_ok(&done);
    let manifest = Manifest::load(&dir).expect("load").expect("a manifest");
    assert!(manifest.complete);
    assert_listed_files_intact(&dir, &manifest);
    let mut seen: BTreeMap<String, usize> = BTreeMap::new();
    for row in sorted_rows(&dir) {
        let id = row.split('|').next().expect("id").to_owned();
        *seen.entry(id).or_default() += 1;
    }
    assert_eq!(seen.len(), ids.len(), "every point, once");
    assert!(seen.values().all(|&n| n == 1), "a point was written twice");

    // Down for good: a clear error once the retry budget is spent.
    server.stop();
    let started = Instant::now();
    let gone = export(
        &server,
        "flaky",
        out.path(),
        &["--restart", "--retries", "3", "--connect-timeout", "1"],
    );
    assert!(!gone.status.success(), "{}", describe(&gone));
    let text = stderr(&gone);
    assert!(
        text.contains(&server.url()[7..]),
        "names the address: {text}"
    );
    assert!(!text.contains("panicked"), "{text}");
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "gave up in time"
    );
}

/// A small tmpfs mounted over a temporary directory, unmounted on drop.
struct SmallDisk {
    dir: tempfile::TempDir,
}

impl SmallDisk {
    /// `None` where mounting is not allowed (not root): the caller skips and says so.
    fn mount(size: &str) -> Option<SmallDisk> {
        if unsafe { libc::geteuid() } != 0 {
            return None;
        }
        let dir = tempfile::tempdir().expect("tempdir");
        let status = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir.path())
            .status()
            .expect("run mount");
        assert!(status.success(), "root but cannot mount a tmpfs");
        Some(SmallDisk { dir })
    }

    fn resize(&self, size: &str) {
        let status = Command::new("mount")
            .args(["-o", &format!("remount,size={size}")])
            .arg(self.dir.path())
            .status()
            .expect("run mount");
        assert!(status.success(), "remount");
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(self.dir.path()).status();
    }
}

#[test]
fn a_full_disk_fails_clearly_and_a_rerun_after_freeing_space_completes() {
    let Some(disk) = SmallDisk::mount("1m") else {
        eprintln!("skipped: mounting a small tmpfs needs root");
        return;
    };
    let server = QdrantServer::start();
    let ids: Vec<PointKey> = (0..20_000u64).map(PointKey::Num).collect();
    load_ids(&server, "roomy", 32, &ids);
    let dir = disk.path().join("roomy");
    let tuning = ["--max-lines", "1000"];
    let full = export(&server, "roomy", disk.path(), &tuning);
    assert!(!full.status.success(), "{}", describe(&full));
    let text = stderr(&full);
    assert!(text.contains("No space left on device"), "{text}");
    assert!(
        text.contains(&*dir.to_string_lossy()),
        "names the file: {text}"
    );
    assert!(!text.contains("panicked"), "{text}");
    if let Some(left) = Manifest::load(&dir).expect("load") {
        assert!(!left.complete);
        assert_listed_files_intact(&dir, &left);
    }

    disk.resize("64m");
    assert_ok(&export(&server, "roomy", disk.path(), &tuning));
    let manifest = Manifest::load(&dir).expect("load").expect("a manifest");
    assert!(manifest.complete);
    assert_listed_files_intact(&dir, &manifest);
    assert_eq!(manifest.rows(), ids.len() as u64);
    assert_eq!(sorted_rows(&dir).len(), ids.len());
}

#[test]
fn damaged_files_and_manifests_are_named_and_nothing_of_them_loads() {
    let server = QdrantServer::start();
    let ids: Vec<PointKey> = (0..3_000u64).map(PointKey::Num).collect();
    load_ids(&server, "fragile", 8, &ids);
    let out = tempfile::tempdir().expect("tempdir");
    let dir = out.path().join("fragile");
    assert_ok(&export(
        &server,
        "fragile",
        out.path(),
        &["--max-lines", "1000", "--cursors", "1"],
    ));
    let manifest = Manifest::load(&dir).expect("load").expect("a manifest");
    assert!(manifest.files.len() >= 3);
    let victim = dir.join(&manifest.files[1].name);
    let original = std::fs::read(&victim).expect("read");
    let db = PgCluster::pg15().create_database();
    let data = out.path().to_str().expect("utf-8");
    let import = || qdrant2pg(&["import", "--dsn", &db.dsn(), "--data", data, "-j", "1"]);
    // The damaged file's own ids: none of them may reach the table (other files may load).
    let victim_ids: Vec<i64> = String::from_utf8_lossy(&original)
        .lines()
        .skip(1)
        .map(|row| {
            row.split('|')
                .next()
                .expect("id")
                .parse()
                .expect("integer id")
        })
        .collect();
    let loaded_from_victim = || -> i64 {
        db.client()
            .query_opt(
                "SELECT count(*) FROM fragile WHERE id = ANY($1)",
                &[&victim_ids],
            )
            .ok()
            .flatten()
            .map_or(0, |r| r.get(0))
    };

    let truncated = &original[..original.len() - 37];
    let edited = {
        let mut bytes = original.clone();
        let at = bytes.len() / 2;
        bytes[at] = if bytes[at] == b'1' { b'2' } else { b'1' };
        bytes
    };
    for (damage, bytes, expect) in [
        ("truncated", truncated.to_vec(), "bytes"),
        ("edited", edited, "checksum"),
    ] {
        std::fs::write(&victim, &bytes).expect("damage");
        let out = import();
        assert!(!out.status.success(), "{damage}: {}", describe(&out));
        let text = stderr(&out);
        assert!(
            text.contains(&*victim.to_string_lossy()),
            "{damage}: {text}"
        );
        assert!(text.contains(expect), "{damage}: {text}");
        assert!(!text.contains("panicked"), "{text}");
        assert_eq!(
            loaded_from_victim(),
            0,
            "{damage}: rows of a damaged file were loaded"
        );
    }

    let import_fails_naming_victim = || {
        let out = import();
        assert!(!out.status.success(), "{}", describe(&out));
        assert!(
            stderr(&out).contains(&*victim.to_string_lossy()),
            "{}",
            describe(&out)
        );
    };
    // The manifest lists a file that is gone.
    std::fs::remove_file(&victim).expect("remove");
    import_fails_naming_victim();

    // The manifest's row count disagrees with the file.
    std::fs::write(&victim, &original).expect("restore");
    let mut lying = manifest.clone();
    lying.files[1].rows += 1;
    lying.store(&dir).expect("store");
    import_fails_naming_victim();

    // Repaired, it loads and verifies.
    manifest.store(&dir).expect("store");
    assert_ok(&import());
    assert_verifies(&server, &db, &[], 1);
}

/// Upserts point `id` of `collection` with payload `{"s": text}` (and the vector `load_ids`
/// gives every point).
fn set_payload_text(server: &QdrantServer, collection: &str, id: u64, text: &str) {
    use qdrant_client::qdrant as grpc;
    runtime()
        .block_on(client(server).upsert_points(grpc::UpsertPoints {
            collection_name: collection.into(),
            wait: Some(true),
            points: vec![grpc::PointStruct {
                id: Some(id.into()),
                vectors: Some(vec![-1.0f32, -0.5].into()),
                payload: [("s".to_owned(), grpc::Value::from(text.to_owned()))].into(),
            }],
            ..Default::default()
        }))
        .expect("upsert");
}

#[test]
fn one_collections_failure_does_not_sink_the_others_and_a_rerun_resumes_only_it() {
    let server = QdrantServer::start();
    let ids: Vec<PointKey> = (0..300).map(PointKey::Num).collect();
    let names = ["a", "b", "broken", "c"];
    for name in names {
        load_ids(&server, name, 2, &ids);
    }
    // jsonb cannot hold U+0000: this point fails its collection, whichever command reads it.
    set_payload_text(&server, "broken", 150, "x\u{0}y");
    let tmp = tempfile::tempdir().expect("tempdir");
    let out = tmp.path().join("out");
    let output = out.to_str().expect("utf-8");
    let url = server.url();
    let export = || {
        qdrant2pg(&[
            "export",
            "--url",
            &url,
            "--output",
            output,
            "--payload-type",
            "jsonb",
            "--cursors",
            "2",
            "--page-size",
            "64",
            "--quiet",
        ])
    };
    let names_the_failure = |run: &Output, what: &str| {
        let stderr = stderr(run);
        assert!(!run.status.success(), "{}", describe(run));
        assert!(
            stderr.contains(what) && stderr.contains("point 150: the payload holds a \\u0000"),
            "{}",
            describe(run)
        );
    };

    let first = export();
    names_the_failure(
        &first,
        "1 of 4 collection(s) could not be exported completely",
    );
    let manifest = |name: &str| {
        Manifest::load(&out.join(name))
            .expect("load")
            .expect("manifest")
    };
    for name in ["a", "b", "c"] {
        assert!(manifest(name).complete, "{name}");
        assert_eq!(manifest(name).rows(), 300, "{name}");
    }
    assert!(!manifest("broken").complete);
    let finished: Vec<Vec<u8>> = ["a", "b", "c"]
        .iter()
        .map(|name| std::fs::read(out.join(name).join("manifest.json")).expect("manifest"))
        .collect();

    // import loads the complete collections and names the incomplete one.
    let db = PgCluster::pg15().create_database();
    let dsn = db.dsn();
    let import = || qdrant2pg(&["import", "--dsn", &dsn, "--data", output, "--quiet"]);
    let imported = import();
    assert!(!imported.status.success(), "{}", describe(&imported));
    assert!(
        stderr(&imported).contains("collection broken: the export in")
            && stderr(&imported).contains("is not complete"),
        "{}",
        describe(&imported)
    );
    let count = |table: &str| -> i64 {
        db.client()
            .query_one(&format!("SELECT count(*) FROM {table}"), &[])
            .map(|row| row.get(0))
            .unwrap_or(-1)
    };
    for name in ["a", "b", "c"] {
        assert_eq!(count(name), 300, "{name}");
    }
    assert_eq!(count("broken"), -1, "no table for the incomplete export");

    // Once the point is mended, the same export finishes only the failed collection …
    set_payload_text(&server, "broken", 150, "mended");
    assert_ok(&export());
    for (name, before) in ["a", "b", "c"].iter().zip(&finished) {
        let after = std::fs::read(out.join(name).join("manifest.json")).expect("manifest");
        assert_eq!(&after, before, "{name} was not exported again");
    }
    assert!(manifest("broken").complete);
    // … and the same import loads only it.
    assert_ok(&import());
    assert_verifies(&server, &db, &[], 4);

    // migrate: the other tables load to the end; a re-run loads only the rest.
    set_payload_text(&server, "broken", 150, "x\u{0}y");
    let migrated_db = PgCluster::pg15().create_database();
    let migrate = || {
        qdrant2pg(&[
            "migrate",
            "--url",
            &url,
            "--dsn",
            &migrated_db.dsn(),
            "--payload-type",
            "jsonb",
            "--page-size",
            "64",
            "--quiet",
        ])
    };
    names_the_failure(
        &migrate(),
        "1 of 4 collection(s) could not be migrated completely",
    );
    let migrated_count = |table: &str| -> i64 {
        migrated_db
            .client()
            .query_one(&format!("SELECT count(*) FROM {table}"), &[])
            .map(|row| row.get(0))
            .unwrap_or(-1)
    };
    for name in ["a", "b", "c"] {
        assert_eq!(migrated_count(name), 300, "{name}");
    }
    assert!(migrated_count("broken") < 300);
    set_payload_text(&server, "broken", 150, "mended");
    assert_ok(&migrate());
    assert_verifies(&server, &migrated_db, &[], 4);
}
