//! `qdrant2pg export` end to end: the built binary against the in-process Qdrant server,
//! checked against a genuine Qdrant server's ground truth and against every point upserted.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::Output;

use crate::support::exact_json::parse_json_exactly;
use qdrant_client::qdrant::{self as grpc};
use qdrant2pg::manifest::Manifest;
use qdrant2pg::point_id::{KeyRange, PointKey};
use serde_json::Value as Json;

use crate::support::cli::{assert_ok, qdrant2pg};
use crate::support::flows::{client, runtime, upsert};
use crate::support::qdrant::QdrantServer;

pub(crate) fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/qdrant-1.18.3")
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// One field of a COPY text row, unescaped; `None` is `\N`.
fn split_row(line: &str) -> Vec<Option<String>> {
    let mut fields = Vec::new();
    let mut field = String::new();
    let mut null = false;
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => match chars.next() {
                Some('N') => null = true,
                Some('n') => field.push('\n'),
                Some('r') => field.push('\r'),
                Some('t') => field.push('\t'),
                Some(other) => field.push(other),
                None => panic!("row ends in a backslash: {line:?}"),
            },
            '|' => {
                fields.push((!null).then(|| std::mem::take(&mut field)));
                field.clear();
                null = false;
            }
            c => field.push(c),
        }
    }
    fields.push((!null).then_some(field));
    fields
}

/// `{1,2}` / `{{1,2},{3,4}}` → f32 bits (rows flattened).
fn array_bits(text: &str) -> Vec<u32> {
    text.split(['{', '}', ','])
        .filter(|s| !s.is_empty())
        .map(|s| {
            s.parse::<f32>()
                .unwrap_or_else(|_| panic!("not a float: {s:?}"))
                .to_bits()
        })
        .collect()
}

fn json_f32_bits(values: &Json) -> Vec<u32> {
    match values {
        Json::Array(items) => items.iter().flat_map(json_f32_bits).collect(),
        // A shortest f32 decimal read as f64 then narrowed is the same f32 (53 >= 2·24 + 2).
        Json::Number(n) => vec![(n.as_f64().expect("a number") as f32).to_bits()],
        other => panic!("not a vector: {other}"),
    }
}

fn key_of_json(id: &Json) -> PointKey {
    match id {
        Json::Number(n) => PointKey::Num(n.as_u64().expect("u64 id")),
        Json::String(s) => PointKey::Uuid(uuid::Uuid::parse_str(s).expect("uuid").as_u128()),
        other => panic!("bad id {other}"),
    }
}

fn key_of_text(text: &str) -> PointKey {
    match text.parse::<u64>() {
        Ok(n) => PointKey::Num(n),
        Err(_) => PointKey::Uuid(uuid::Uuid::parse_str(text).expect("uuid id").as_u128()),
    }
}

/// Every row of an exported collection, by id: column name → field. Also checks the files
/// against the manifest: header, row limit, coverage, no duplicate id.
fn read_export(
    dir: &Path,
    max_lines: usize,
) -> BTreeMap<PointKey, BTreeMap<String, Option<String>>> {
    let manifest = Manifest::load(dir).expect("manifest").expect("a manifest");
    assert!(manifest.complete, "manifest not complete");
    let mut rows = BTreeMap::new();
    let mut ranges: Vec<KeyRange> = Vec::new();
    for file in &manifest.files {
        let path = dir.join(&file.name);
        let bytes = std::fs::read(&path).expect("data file");
        assert_eq!(bytes.len() as u64, file.bytes, "{}", file.name);
        let text = String::from_utf8(bytes).expect("utf-8");
        let mut lines = text.split_terminator('\n');
        let header: Vec<String> = lines
            .next()
            .expect("header")
            .split('|')
            .map(str::to_owned)
            .collect();
        let mut count = 0;
        for line in lines {
            count += 1;
            let fields = split_row(line);
            assert_eq!(fields.len(), header.len(), "{}: {line:?}", file.name);
            let key = key_of_text(fields[0].as_deref().expect("id"));
            assert!(
                file.range.contains(key),
                "{key} outside {} in {}",
                file.range,
                file.name
            );
            let row: BTreeMap<_, _> = header.iter().cloned().zip(fields).collect();
            assert!(rows.insert(key, row).is_none(), "{key} exported twice");
        }
        assert_eq!(count, file.rows, "{}", file.name);
        assert!(
            count as usize <= max_lines,
            "{} has {count} rows",
            file.name
        );
        ranges.push(file.range);
    }
    ranges.sort_by_key(|r| r.lo);
    for pair in ranges.windows(2) {
        assert!(
            pair[0].hi.is_some_and(|hi| hi <= pair[1].lo),
            "overlapping files {ranges:?}"
        );
    }
    let leftovers: Vec<String> = std::fs::read_dir(dir)
        .expect("dir")
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| {
            n.ends_with(".tmp")
                || (n.ends_with(".csv") && !manifest.files.iter().any(|f| &f.name == n))
        })
        .collect();
    assert!(
        leftovers.is_empty(),
        "files outside the manifest: {leftovers:?}"
    );
    rows
}

/// Exports a genuine Qdrant 1.18.3 snapshot through gRPC and compares every value with the
/// real server's own scroll.
fn check_fixture(name: &str, max_lines: usize) {
    let server = QdrantServer::start();
    server.load_snapshot(name, &fixtures().join(format!("{name}.snapshot.gz")));
    let out_dir = tempfile::tempdir().expect("tempdir");
    let out = qdrant2pg(&[
        "export",
        "--url",
        &server.url(),
        "--collection",
        name,
        "--output",
        out_dir.path().to_str().expect("utf-8 path"),
        "--max-lines",
        &max_lines.to_string(),
        "--cursors",
        "3",
        "--page-size",
        "16",
        "--quiet",
    ]);
    assert_ok(&out);
    check_against_truth(name, &out_dir.path().join(name), max_lines);
}

/// Compares the export of fixture `name` in `dir` with the real server's own scroll: every
/// point, every vector bit, every payload value; and the manifest's files (see `read_export`).
pub(crate) fn check_against_truth(name: &str, dir: &Path, max_lines: usize) {
    let rows = read_export(dir, max_lines);
    let truth = BufReader::new(flate2::read::GzDecoder::new(
        std::fs::File::open(fixtures().join(format!("{name}.points.jsonl.gz"))).expect("fixture"),
    ));
    let mut seen = BTreeSet::new();
    for line in truth.lines() {
        let point: Json = parse_json_exactly(&line.expect("line")).expect("json");
        let key = key_of_json(&point["id"]);
        seen.insert(key);
        let row = rows
            .get(&key)
            .unwrap_or_else(|| panic!("{name}: point {key} not exported"));
        let payload: Json = parse_json_exactly(row["payload"].as_deref().expect("payload"))
            .unwrap_or_else(|e| panic!("{name}: payload of {key} is not JSON: {e}"));
        assert_eq!(payload, point["payload"], "{name}: payload of {key}");
        let vectors: BTreeMap<String, Json> = match &point["vector"] {
            Json::Object(map) => map.clone().into_iter().collect(),
            unnamed => [("vector".to_owned(), unnamed.clone())].into(),
        };
        for (column, field) in row {
            if column == "id" || column == "payload" || column.ends_with("_indices") {
                continue;
            }
            let (vector, part) = match column.strip_suffix("_values") {
                Some(base) => (base.to_owned(), "values"),
                None => (column.clone(), ""),
            };
            match (vectors.get(&vector), field) {
                (None, None) => {}
                (Some(expected), Some(text)) if part == "values" => {
                    assert_eq!(
                        array_bits(text),
                        json_f32_bits(&expected["values"]),
                        "{key} {column}"
                    );
                    let indices = row[&format!("{vector}_indices")]
                        .as_deref()
                        .expect("indices");
                    let expected_indices: Vec<u64> = expected["indices"]
                        .as_array()
                        .expect("indices")
                        .iter()
                        .map(|i| i.as_u64().expect("index"))
                        .collect();
                    let got: Vec<u64> = indices
                        .trim_matches(|c| c == '{' || c == '}')
                        .split(',')
                        .filter(|s| !s.is_empty())
                        .map(|s| s.parse().expect("index"))
                        .collect();
                    assert_eq!(got, expected_indices, "{key} {column}");
                }
                (Some(expected), Some(text)) => {
                    assert_eq!(
                        array_bits(text),
                        json_f32_bits(expected),
                        "{name}: {key} {column}"
                    );
                }
                (expected, got) => {
                    panic!("{name}: {key} {column}: expected {expected:?}, got {got:?}")
                }
            }
        }
    }
    assert_eq!(
        seen.len(),
        rows.len(),
        "{name}: exported points the server does not have"
    );
    assert!(dir.join("create_table.sql").exists());
}

#[test]
fn fx_single_exports_exactly_what_the_real_server_holds() {
    check_fixture("fx_single", 40);
}

#[test]
fn fx_rich_exports_named_sparse_multi_float16_and_absent_vectors_exactly() {
    check_fixture("fx_rich", 64);
}

#[test]
fn fx_sharded_exports_mixed_ids_across_shards_exactly() {
    check_fixture("fx_sharded", 50);
}

#[test]
fn create_table_follows_the_ids_and_vectors_seen() {
    let server = QdrantServer::start();
    for name in ["fx_single", "fx_rich", "fx_sharded"] {
        server.load_snapshot(name, &fixtures().join(format!("{name}.snapshot.gz")));
    }
    let out_dir = tempfile::tempdir().expect("tempdir");
    // No --collection: every collection is exported, all at once under one cursor budget.
    let out = qdrant2pg(&[
        "export",
        "--url",
        &server.url(),
        "--output",
        out_dir.path().to_str().expect("utf-8"),
        "--cursors",
        "2",
        "--quiet",
    ]);
    assert_ok(&out);
    let sql = |name: &str| {
        std::fs::read_to_string(out_dir.path().join(name).join("create_table.sql")).expect("sql")
    };
    let single = sql("fx_single");
    assert!(
        single.contains("id bigint")
            && single.contains("vector real[]")
            && single.contains("payload json"),
        "{single}"
    );
    let rich = sql("fx_rich");
    for needle in [
        "id uuid",
        "colbert real[][]",
        "bm25_indices integer[]",
        "bm25_values real[]",
        "image real[]",
        "text real[]",
    ] {
        assert!(rich.contains(needle), "{needle} missing from {rich}");
    }
    assert!(
        sql("fx_sharded").contains("id text"),
        "{}",
        sql("fx_sharded")
    );
    let summary = String::from_utf8_lossy(&out.stdout);
    for name in ["fx_single", "fx_rich", "fx_sharded"] {
        assert!(summary.contains(name), "summary lacks {name}: {summary}");
    }
}

/// A collection with one unnamed `dim`-d vector and the given ids.
pub(crate) fn load_ids(server: &QdrantServer, name: &str, dim: u64, ids: &[PointKey]) {
    let rt = runtime();
    let client = client(server);
    rt.block_on(client.create_collection(grpc::CreateCollection {
        collection_name: name.into(),
        vectors_config: Some(grpc::VectorsConfig {
            config: Some(grpc::vectors_config::Config::Params(grpc::VectorParams {
                size: dim,
                distance: grpc::Distance::Euclid as i32,
                ..Default::default()
            })),
        }),
        ..Default::default()
    }))
    .expect("create collection");
    for chunk in ids.chunks(500) {
        let points = chunk
            .iter()
            .map(|key| grpc::PointStruct {
                id: Some(key.to_proto()),
                vectors: Some(grpc::Vectors {
                    vectors_options: Some(grpc::vectors::VectorsOptions::Vector(grpc::Vector {
                        vector: Some(grpc::vector::Vector::Dense(grpc::DenseVector {
                            data: (0..dim).map(|i| i as f32 * 0.5 - 1.0).collect(),
                        })),
                        ..Default::default()
                    })),
                }),
                payload: [("k".to_owned(), grpc::Value::from(key.to_string()))].into(),
            })
            .collect();
        upsert(&rt, &client, name, points);
    }
}

fn export_ids(server: &QdrantServer, name: &str, out: &Path, extra: &[&str]) -> Output {
    let url = server.url();
    let output = out.to_str().expect("utf-8");
    let mut args = vec![
        "export",
        "--url",
        &url,
        "--collection",
        name,
        "--output",
        output,
        "--quiet",
    ];
    args.extend(extra);
    qdrant2pg(&args)
}

fn assert_ids_exactly_once(out: &Path, name: &str, ids: &[PointKey], max_lines: usize) {
    let rows = read_export(&out.join(name), max_lines);
    let got: Vec<PointKey> = rows.keys().copied().collect();
    let mut want = ids.to_vec();
    want.sort();
    want.dedup();
    assert_eq!(got.len(), want.len(), "row count");
    assert_eq!(got, want);
}

#[test]
fn skewed_sparse_uuid_and_mixed_ids_are_read_exactly_once() {
    let server = QdrantServer::start();
    let mut x: u128 = 0x0123_4567_89ab_cdef_fedc_ba98_7654_3210;
    let mut uuid = || {
        x = x
            .wrapping_mul(0x2360_ed05_1fc6_5da4_4385_df64_9fcc_f645)
            .wrapping_add(0x9e37_79b9);
        PointKey::Uuid(x)
    };
    let cases: Vec<(&str, Vec<PointKey>)> = vec![
        // Two dense blocks 2^50 apart and a few ids at the very top of the integer space.
        (
            "blocks",
            (0..700)
                .chain((1 << 50)..(1 << 50) + 900)
                .chain(u64::MAX - 3..=u64::MAX)
                .map(PointKey::Num)
                .collect(),
        ),
        // Sparse ids: a geometric spread.
        (
            "sparse",
            (0..60)
                .map(|i| PointKey::Num(1u64 << i))
                .chain((0..400).map(|i| PointKey::Num(i * 7919)))
                .collect(),
        ),
        ("uuids", (0..1200).map(|_| uuid()).collect()),
        (
            "mixed",
            (0..500)
                .map(|_| uuid())
                .chain((0..700).map(|i| PointKey::Num(i * 3)))
                .collect(),
        ),
    ];
    let out = tempfile::tempdir().expect("tempdir");
    for (name, ids) in &cases {
        load_ids(&server, name, 4, ids);
        let result = export_ids(
            &server,
            name,
            out.path(),
            &["--cursors", "4", "--page-size", "32", "--max-lines", "100"],
        );
        assert_ok(&result);
        assert_ids_exactly_once(out.path(), name, ids, 100);
    }
    let sql = std::fs::read_to_string(out.path().join("blocks/create_table.sql")).expect("sql");
    assert!(
        sql.contains("numeric(20,0)"),
        "ids above 2^63-1 need numeric: {sql}"
    );
}

#[test]
fn rerun_resumes_and_restart_starts_over() {
    let server = QdrantServer::start();
    let ids: Vec<PointKey> = (0..1500).map(PointKey::Num).collect();
    load_ids(&server, "resumed", 8, &ids);
    let out = tempfile::tempdir().expect("tempdir");
    let dir = out.path().join("resumed");
    assert_ok(&export_ids(
        &server,
        "resumed",
        out.path(),
        &["--max-lines", "100", "--cursors", "2"],
    ));
    let complete = Manifest::load(&dir).expect("load").expect("manifest");

    // A crash after some files were renamed into place but before the manifest recorded them:
    // forget half the files and mark the export unfinished; leave a stray temporary file too.
    let mut partial = complete.clone();
    partial.complete = false;
    let forgotten: Vec<String> = partial
        .files
        .drain(partial.files.len() / 2..)
        .map(|f| f.name)
        .collect();
    partial.store(&dir).expect("store");
    std::fs::write(
        dir.join(".0000000999.csv.tmp"),
        b"id|vector|payload\n1|{1}|{}\n",
    )
    .expect("stray");
    let kept: Vec<String> = partial.files.iter().map(|f| f.name.clone()).collect();
    let mtimes: Vec<_> = kept
        .iter()
        .map(|n| {
            std::fs::metadata(dir.join(n))
                .expect("meta")
                .modified()
                .expect("mtime")
        })
        .collect();

    assert_ok(&export_ids(
        &server,
        "resumed",
        out.path(),
        &["--max-lines", "100"],
    ));
    assert_ids_exactly_once(out.path(), "resumed", &ids, 100);
    for (name, mtime) in kept.iter().zip(&mtimes) {
        let now = std::fs::metadata(dir.join(name))
            .expect("meta")
            .modified()
            .expect("mtime");
        assert_eq!(
            &now, mtime,
            "{name} was rewritten although the manifest had it"
        );
    }
    assert!(!forgotten.is_empty());

    // A complete export is left alone; --restart writes it anew.
    let again = export_ids(&server, "resumed", out.path(), &[]);
    assert_ok(&again);
    assert!(stderr(&again).contains("already exported") || again.stderr.is_empty());
    assert_ok(&export_ids(
        &server,
        "resumed",
        out.path(),
        &["--restart", "--max-lines", "700"],
    ));
    assert_ids_exactly_once(out.path(), "resumed", &ids, 700);
    assert!(
        Manifest::load(&dir)
            .expect("load")
            .expect("manifest")
            .files
            .len()
            >= 3
    );
}

#[test]
fn the_guides_yaml_works_unchanged() {
    let server = QdrantServer::start();
    let ids: Vec<PointKey> = (0..250).map(PointKey::Num).collect();
    load_ids(&server, "test_collection", 3, &ids);
    load_ids(&server, "multi", 3, &ids[..10]);
    let work = tempfile::tempdir().expect("tempdir");
    let port = server.url().rsplit(':').next().expect("port").to_owned();
    // The guide's qdrant2csv.yaml, comments and all, with its ports pointed at this server.
    let yaml = format!(
        "qdrant: # The configuration items that are used to connect to the Qdrant cluster.\n\
        \x20   host: 'localhost'  # The host address of the Qdrant service.\n\
        \x20   port: 6333        # The port number of the Qdrant service. Default value: 6433.\n\
        \x20   grpc_port: {port}   # The port number of the gRPC interface. Default value:  6334.\n\
        \x20   api_key: ''  # The API key for authentication in Qdrant Cloud.\n\
        \x20   url: ''      # The hostname or string.\"Optional[scheme], host, Optional[port], Optional[prefix]\"\n\
        \x20   location: '' # If you set this field to memory, ...\n\
        \n\
        export:\n\
        \x20 collections:\n\
        \x20   - 'test_collection'\n\
        \x20   - 'multi'                 # All Qdrant collections that you want to export.\n\
        \x20 max_line_in_file: 100     # The maximum number of lines that are contained in each output CSV file.\n\
        \x20 output_path: '{}'     # The path to the directory in which the exported CSV files are stored.\n",
        work.path().join("output").display()
    );
    let config = work.path().join("qdrant2csv.yaml");
    std::fs::write(&config, yaml).expect("yaml");
    let out = qdrant2pg(&[
        "export",
        "--config",
        config.to_str().expect("utf-8"),
        "--quiet",
    ]);
    assert_ok(&out);
    assert_ids_exactly_once(&work.path().join("output"), "test_collection", &ids, 100);
    assert_ids_exactly_once(&work.path().join("output"), "multi", &ids[..10], 100);
}

#[test]
fn bad_input_gets_one_clear_line_and_no_complete_looking_file() {
    let server = QdrantServer::start();
    load_ids(&server, "present", 2, &[PointKey::Num(1)]);
    let out = tempfile::tempdir().expect("tempdir");
    let missing = export_ids(&server, "absent", out.path(), &[]);
    assert!(!missing.status.success());
    assert!(
        stderr(&missing).contains("\"absent\" does not exist"),
        "{}",
        stderr(&missing)
    );

    let unreachable = qdrant2pg(&[
        "export",
        "--url",
        "http://127.0.0.1:9",
        "--collection",
        "x",
        "--output",
        out.path().to_str().expect("utf-8"),
        "--retries",
        "1",
        "--connect-timeout",
        "2",
    ]);
    assert!(!unreachable.status.success());
    let text = stderr(&unreachable);
    assert!(
        text.contains("127.0.0.1:9") && text.contains("6334"),
        "{text}"
    );

    let keyed = QdrantServer::start_with_api_key("right-key");
    let wrong = qdrant2pg(&[
        "export",
        "--url",
        &keyed.url(),
        "--api-key",
        "wrong-key-123",
        "--collection",
        "x",
        "--output",
        out.path().to_str().expect("utf-8"),
    ]);
    assert!(!wrong.status.success());
    assert!(
        stderr(&wrong).contains("unauthenticated"),
        "{}",
        stderr(&wrong)
    );
    assert!(
        !stderr(&wrong).contains("wrong-key-123")
            && !String::from_utf8_lossy(&wrong.stdout).contains("wrong-key-123")
    );

    let memory = out.path().join("memory.yaml");
    std::fs::write(&memory, "qdrant:\n  location: ':memory:'\n").expect("yaml");
    let refused = qdrant2pg(&["export", "--config", memory.to_str().expect("utf-8")]);
    assert!(
        stderr(&refused).contains("not supported"),
        "{}",
        stderr(&refused)
    );

    // An output directory holding something else is never overwritten without --restart.
    let foreign = out.path().join("present");
    std::fs::create_dir_all(&foreign).expect("dir");
    std::fs::write(foreign.join("0000000000.csv"), b"id|vector|payload\n").expect("file");
    let clash = export_ids(&server, "present", out.path(), &[]);
    assert!(!clash.status.success());
    assert!(stderr(&clash).contains("--restart"), "{}", stderr(&clash));

    // Not writable (running as root defeats permissions, so use a path under a file).
    let blocked = out.path().join("a-file");
    std::fs::write(&blocked, b"").expect("file");
    let unwritable = export_ids(&server, "present", &blocked.join("sub"), &[]);
    assert!(!unwritable.status.success());
    assert!(
        stderr(&unwritable).contains("a-file"),
        "{}",
        stderr(&unwritable)
    );
}
