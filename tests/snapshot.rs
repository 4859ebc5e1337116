//! `--snapshot`: export, plan and verify straight from genuine Qdrant 1.18.3 snapshot files,
//! with no server. The output must be the live path's, byte for byte.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{self, Read};
use std::path::{Path, PathBuf};
use std::process::Output;

use sha2::{Digest, Sha256};

use crate::export::check_against_truth;
use crate::support::cli::{assert_ok, describe, qdrant2pg};
use crate::support::flows::{FIXTURES, export_import, fixture_server, fixtures_dir};
use crate::support::pg::PgCluster;

fn snapshot_of(name: &str) -> PathBuf {
    fixtures_dir().join(format!("{name}.snapshot.gz"))
}

fn path_str(path: &Path) -> &str {
    path.to_str().expect("utf-8 path")
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Every file of an export directory tree, by relative path.
fn tree(dir: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    let mut files = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(at) = stack.pop() {
        for entry in std::fs::read_dir(&at).expect("read_dir") {
            let path = entry.expect("entry").path();
            if path.is_dir() {
                stack.push(path);
            } else {
                let bytes = std::fs::read(&path).expect("read");
                files.insert(path.strip_prefix(dir).expect("prefix").to_path_buf(), bytes);
            }
        }
    }
    files
}

fn assert_empty_dir(dir: &Path) {
    let left: Vec<_> = std::fs::read_dir(dir)
        .expect("scratch")
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .collect();
    assert!(left.is_empty(), "scratch not cleaned up: {left:?}");
}

#[test]
fn each_fixture_snapshot_exports_exactly_what_the_real_server_holds() {
    for name in FIXTURES {
        let out = tempfile::tempdir().expect("tempdir");
        let scratch = tempfile::tempdir().expect("tempdir");
        let result = qdrant2pg(&[
            "export",
            "--snapshot",
            path_str(&snapshot_of(name)),
            "--scratch",
            path_str(scratch.path()),
            "--output",
            path_str(out.path()),
            "--max-lines",
            "40",
            "--cursors",
            "3",
            "--page-size",
            "16",
            "--quiet",
        ]);
        assert_ok(&result);
        check_against_truth(name, &out.path().join(name), 40);
        assert_empty_dir(scratch.path());
    }
}

/// Snapshots the server itself made (`POST /collections/NAME/snapshots` on the genuine Qdrant)
/// export byte for byte what the live export of that server writes.
#[test]
fn snapshot_export_is_byte_identical_to_the_live_export() {
    let server = fixture_server();
    let url = server.url();
    let folder = tempfile::tempdir().expect("tempdir");
    for name in FIXTURES {
        // A folder of snapshots names each collection by its file.
        server.write_snapshot(name, &folder.path().join(format!("{name}.snapshot")));
    }
    for dialect in ["postgres", "pgvector"] {
        let live = tempfile::tempdir().expect("tempdir");
        let offline = tempfile::tempdir().expect("tempdir");
        // One cursor and one encoder: pages reach the files in id order, so the files are cut
        // at the same ids whatever the timing.
        let common = [
            "--max-lines",
            "70",
            "--cursors",
            "1",
            "--encoders",
            "1",
            "--page-size",
            "32",
            "--dialect",
            dialect,
            "--quiet",
        ];
        let mut args = vec!["export", "--url", &url, "--output"];
        args.push(path_str(live.path()));
        args.extend(common);
        assert_ok(&qdrant2pg(&args));
        let mut args = vec!["export", "--snapshot", path_str(folder.path()), "--output"];
        args.push(path_str(offline.path()));
        args.extend(common);
        assert_ok(&qdrant2pg(&args));

        let (live, offline) = (tree(live.path()), tree(offline.path()));
        assert_eq!(
            live.keys().collect::<Vec<_>>(),
            offline.keys().collect::<Vec<_>>(),
            "{dialect}: the same files"
        );
        assert!(live.len() > FIXTURES.len() * 3, "{:?}", live.keys());
        for (path, bytes) in &live {
            assert!(
                offline[path] == *bytes,
                "{dialect}: {} differs between the live and the snapshot export",
                path.display()
            );
        }
    }
}

#[test]
fn plan_from_snapshots_says_what_plan_from_the_server_says() {
    let server = fixture_server();
    let live = qdrant2pg(&["plan", "--url", &server.url(), "--dialect", "pgvector"]);
    assert_ok(&live);
    let mut args = vec!["plan", "--dialect", "pgvector"];
    let files: Vec<PathBuf> = FIXTURES.iter().map(|n| snapshot_of(n)).collect();
    for file in &files {
        args.extend(["--snapshot", path_str(file)]);
    }
    let offline = qdrant2pg(&args);
    assert_ok(&offline);
    let text = String::from_utf8_lossy(&offline.stdout);
    assert_eq!(text, String::from_utf8_lossy(&live.stdout));
    for needle in [
        "collection fx_rich",
        "points (exact):   600",
        "colbert real[][]",
    ] {
        assert!(text.contains(needle), "plan lacks {needle:?}:\n{text}");
    }
    // One snapshot, named by --collection.
    let named = qdrant2pg(&[
        "plan",
        "--snapshot",
        path_str(&files[0]),
        "--collection",
        "docs",
    ]);
    assert_ok(&named);
    assert!(
        String::from_utf8_lossy(&named.stdout).contains("collection docs\n  points (exact):   300"),
        "{}",
        describe(&named)
    );
}

#[test]
fn verify_from_snapshots_against_the_tables_of_the_live_path() {
    let server = fixture_server();
    let db = PgCluster::pg15().create_database();
    let out = tempfile::tempdir().expect("tempdir");
    export_import(&server, &db, out.path(), "postgres");
    drop(server);
    let folder = fixtures_dir();
    let dsn = db.dsn();
    let verify = |extra: &[&str]| {
        let mut args = vec![
            "verify",
            "--snapshot",
            path_str(&folder),
            "--dsn",
            &dsn,
            "--quiet",
        ];
        args.extend_from_slice(extra);
        qdrant2pg(&args)
    };
    for (mode, compared) in [
        (&["--full"][..], "compared (full): identical"),
        (&["--sample", "40"][..], "40 compared (sample): identical"),
    ] {
        let result = verify(mode);
        assert_ok(&result);
        let text = String::from_utf8_lossy(&result.stdout);
        assert_eq!(text.matches(compared).count(), 3, "{}", describe(&result));
    }
    db.client()
        .batch_execute(
            "UPDATE fx_single SET vector[5] = -vector[5] WHERE id = 9;
             DELETE FROM fx_sharded WHERE id = '1';",
        )
        .expect("corrupt the tables");
    // A sample of at least every point reads every id of the snapshots: it finds them too.
    for mode in ["--full", "--sample=1000"] {
        let result = verify(&[mode]);
        assert_eq!(result.status.code(), Some(1), "{}", describe(&result));
        let text = String::from_utf8_lossy(&result.stdout);
        for needle in [
            "id 9: vector \"vector\" differs first at element 4",
            "id 1: missing from the table",
            "count: Qdrant has 600 points, the table 599 rows",
        ] {
            assert!(
                text.contains(needle),
                "{mode}: lacks {needle:?}:\n{}",
                describe(&result)
            );
        }
    }
}

fn sha256_hex(reader: impl Read) -> String {
    let mut hasher = Sha256::new();
    let mut reader = reader;
    let mut buf = vec![0; 1 << 16];
    loop {
        let n = reader.read(&mut buf).expect("read");
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    hasher
        .finalize()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn export_snapshot(snapshot: &Path, out: &Path) -> Output {
    qdrant2pg(&[
        "export",
        "--snapshot",
        path_str(snapshot),
        "--output",
        path_str(out),
        "--quiet",
    ])
}

#[test]
fn checksums_beside_the_snapshot_are_checked() {
    let dir = tempfile::tempdir().expect("tempdir");
    let snapshot = dir.path().join("fx_single.snapshot.gz");
    std::fs::copy(snapshot_of("fx_single"), &snapshot).expect("copy");
    let beside = dir.path().join("fx_single.snapshot.gz.checksum");
    let out = tempfile::tempdir().expect("tempdir");

    // Qdrant's form: the hex digest alone.
    let right = sha256_hex(File::open(&snapshot).expect("open"));
    std::fs::write(&beside, &right).expect("write");
    assert_ok(&export_snapshot(&snapshot, out.path()));

    let mut wrong = right.clone().into_bytes();
    wrong[0] = if wrong[0] == b'0' { b'1' } else { b'0' };
    std::fs::write(&beside, &wrong).expect("write");
    let result = export_snapshot(&snapshot, &out.path().join("again"));
    assert!(!result.status.success(), "{}", describe(&result));
    let err = stderr(&result);
    assert!(
        err.contains("fx_single.snapshot.gz is damaged")
            && err.contains("fx_single.snapshot.gz.checksum")
            && err.contains(&right),
        "{err}"
    );
    assert!(
        !out.path().join("again/fx_single/create_table.sql").exists(),
        "nothing exported from a damaged snapshot"
    );

    // A checksum of the unzipped snapshot, as Qdrant wrote it before the file was gzipped.
    std::fs::remove_file(&beside).expect("rm");
    let unzipped = sha256_hex(flate2::read::GzDecoder::new(
        File::open(&snapshot).expect("open"),
    ));
    let of_tar = dir.path().join("fx_single.snapshot.checksum");
    std::fs::write(&of_tar, format!("{unzipped}  fx_single.snapshot\n")).expect("write");
    assert_ok(&export_snapshot(&snapshot, &out.path().join("tar")));
    std::fs::write(&of_tar, &right).expect("write");
    let result = export_snapshot(&snapshot, &out.path().join("tar2"));
    assert!(
        stderr(&result).contains("is damaged"),
        "{}",
        describe(&result)
    );

    std::fs::write(&of_tar, "not a checksum").expect("write");
    let result = export_snapshot(&snapshot, &out.path().join("tar3"));
    assert!(
        stderr(&result).contains("does not hold a SHA-256 checksum"),
        "{}",
        describe(&result)
    );
}

#[test]
fn what_is_not_a_snapshot_gets_one_clear_error() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = tempfile::tempdir().expect("tempdir");
    let junk = dir.path().join("junk.snapshot");
    std::fs::write(
        &junk,
        "config.json? no, just text that is not a tar\n".repeat(20),
    )
    .expect("w");
    let result = export_snapshot(&junk, out.path());
    assert!(!result.status.success());
    assert!(
        stderr(&result).contains(&format!(
            "snapshot {} is not a Qdrant collection snapshot: it is not a tar archive",
            junk.display()
        )),
        "{}",
        describe(&result)
    );

    let empty = tempfile::tempdir().expect("tempdir");
    let result = export_snapshot(empty.path(), out.path());
    assert!(
        stderr(&result).contains("holds no *.snapshot or *.snapshot.gz file"),
        "{}",
        describe(&result)
    );

    let renamed = dir.path().join("fx_single.tar.gz");
    std::fs::copy(snapshot_of("fx_single"), &renamed).expect("copy");
    let result = qdrant2pg(&[
        "export",
        "--snapshot",
        path_str(&renamed),
        "--snapshot",
        path_str(&snapshot_of("fx_rich")),
        "--output",
        path_str(out.path()),
    ]);
    assert!(
        stderr(&result).contains("is not a snapshot file name"),
        "{}",
        describe(&result)
    );

    let result = qdrant2pg(&[
        "export",
        "--snapshot",
        path_str(&fixtures_dir()),
        "--collection",
        "nope",
        "--output",
        path_str(out.path()),
    ]);
    assert!(
        stderr(&result).contains(
            "no snapshot holds collection \"nope\" (the snapshots hold: fx_rich, fx_sharded, fx_single)"
        ),
        "{}",
        describe(&result)
    );
}

/// A regular file's header (the originals may be sparse entries, whose size means otherwise).
fn plain_header(size: usize) -> tar::Header {
    let mut header = tar::Header::new_gnu();
    header.set_entry_type(tar::EntryType::Regular);
    header.set_mode(0o644);
    header.set_size(size as u64);
    header
}

/// `fx_single`'s snapshot with every segment archive claiming segment format `version`.
fn with_segment_format(version: &str, to: &Path) {
    let mut outer = tar::Archive::new(flate2::read::GzDecoder::new(
        File::open(snapshot_of("fx_single")).expect("fixture"),
    ));
    let mut rebuilt = tar::Builder::new(File::create(to).expect("create"));
    for entry in outer.entries().expect("entries") {
        let mut entry = entry.expect("entry");
        let path = entry.path().expect("path").into_owned();
        let mut bytes = Vec::new();
        entry.read_to_end(&mut bytes).expect("read");
        if path.starts_with("0/segments") && path.extension().is_some_and(|e| e == "tar") {
            let mut inner = tar::Archive::new(io::Cursor::new(bytes));
            let mut segment = tar::Builder::new(Vec::new());
            for file in inner.entries().expect("segment entries") {
                let mut file = file.expect("segment entry");
                let name = file.path().expect("path").into_owned();
                let mut data = Vec::new();
                file.read_to_end(&mut data).expect("read");
                if name.ends_with("files/version.info") {
                    data = version.as_bytes().to_vec();
                }
                segment
                    .append_data(&mut plain_header(data.len()), &name, data.as_slice())
                    .expect("append");
            }
            bytes = segment.into_inner().expect("segment tar");
        }
        rebuilt
            .append_data(&mut plain_header(bytes.len()), &path, bytes.as_slice())
            .expect("append");
    }
    rebuilt.into_inner().expect("tar");
}

#[test]
fn a_segment_format_the_engine_cannot_read_names_both_versions() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = tempfile::tempdir().expect("tempdir");
    // The unmodified rebuild reads fine: only the version changes the outcome.
    let same = dir.path().join("fx_single.snapshot");
    with_segment_format("0.6.0", &same);
    assert_ok(&export_snapshot(&same, out.path()));

    let newer = dir.path().join("newer.snapshot");
    with_segment_format("0.9.1", &newer);
    let result = export_snapshot(&newer, &out.path().join("newer"));
    assert!(!result.status.success(), "{}", describe(&result));
    let err = stderr(&result);
    for needle in [
        "qdrant-edge 0.7.2",
        "segment formats 0.3.0 to 0.6.0",
        "Qdrant 1.18.3",
        "collection format 0.4.2 and segment format(s) 0.9.1",
        "newer.snapshot",
    ] {
        assert!(err.contains(needle), "lacks {needle:?}: {err}");
    }
}

/// All data rows of an export, sorted: what two exports cut into different files must share.
fn sorted_rows(dir: &Path) -> Vec<Vec<u8>> {
    let mut rows = Vec::new();
    for (path, bytes) in tree(dir) {
        if path.extension().is_some_and(|e| e == "csv") {
            rows.extend(
                bytes
                    .split(|b| *b == b'\n')
                    .skip(1)
                    .filter(|l| !l.is_empty())
                    .map(<[u8]>::to_vec),
            );
        }
    }
    rows.sort();
    rows
}

/// The same 20,000 × 768-d collection exported over gRPC from the test server and from its
/// snapshot, same binary, same flags, one after the other. Run with `cargo test --test main
/// snapshot_rate -- --ignored --nocapture` (add `--release` for release figures).
#[test]
#[ignore = "a minute or two on 2 cores; run by hand for the figures"]
fn snapshot_rate_against_grpc() {
    const POINTS: u64 = 20_000;
    let server = crate::support::qdrant::QdrantServer::start();
    let ids: Vec<qdrant2pg::point_id::PointKey> = (0..POINTS)
        .map(qdrant2pg::point_id::PointKey::Num)
        .collect();
    crate::export::load_ids(&server, "rate", 768, &ids);
    let dir = tempfile::tempdir().expect("tempdir");
    let snapshot = dir.path().join("rate-1-2026-11-25-23-50-00.snapshot");
    server.write_snapshot("rate", &snapshot);
    let size = std::fs::metadata(&snapshot).expect("snapshot").len();
    let url = server.url();
    let run = |source: &[&str], out: &Path| {
        let mut args = vec!["export"];
        args.extend_from_slice(source);
        args.extend(["--output", path_str(out), "--quiet"]);
        let start = std::time::Instant::now();
        assert_ok(&qdrant2pg(&args));
        start.elapsed().as_secs_f64()
    };
    let (live, offline) = (dir.path().join("live"), dir.path().join("offline"));
    let grpc = run(&["--url", &url], &live);
    let from_snapshot = run(&["--snapshot", path_str(&snapshot)], &offline);
    assert!(
        sorted_rows(&live.join("rate")) == sorted_rows(&offline.join("rate")),
        "same rows"
    );
    eprintln!(
        "{POINTS} x 768: gRPC {grpc:.2} s ({:.0} points/s); snapshot ({:.0} MB, unpacked, loaded \
         and read) {from_snapshot:.2} s ({:.0} points/s); snapshot/gRPC speed {:.2}x",
        POINTS as f64 / grpc,
        size as f64 / 1e6,
        POINTS as f64 / from_snapshot,
        grpc / from_snapshot
    );
}
