//! Bad configuration through the built CLI: missing keys, wrong types, unknown keys, TLS that
//! the server cannot give, an unreachable PostgreSQL, and identifiers with quotes, spaces,
//! unicode and SQL keywords. Each fault gets one clear `error:` line and never a panic; unknown
//! keys get a warning naming them, and the run goes on.

use std::collections::HashMap;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Output;

use qdrant_client::qdrant::{self as grpc};
use qdrant2pg::point_id::PointKey;

use crate::migrate::migrate;
use crate::support::cli::{assert_ok, command, describe, qdrant2pg};
use crate::support::flows::assert_verifies;
use crate::support::flows::{client, runtime, upsert};
use crate::support::pg::{PgCluster, TestDb};
use crate::support::qdrant::QdrantServer;

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).expect("write config");
    path
}

fn utf8(path: &Path) -> &str {
    path.to_str().expect("utf-8 path")
}

/// The run failed with exactly one `error:` line holding every `needle`, and no panic.
fn one_clear_line(out: &Output, needles: &[&str]) {
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{}", describe(out));
    assert!(!stderr.contains("panicked"), "{}", describe(out));
    let errors: Vec<&str> = stderr.lines().filter(|l| l.starts_with("error:")).collect();
    assert_eq!(errors.len(), 1, "{}", describe(out));
    assert_eq!(
        stderr.trim_end().lines().last(),
        errors.first().copied(),
        "the error is the last line, and all on one line: {}",
        describe(out)
    );
    for needle in needles {
        assert!(
            errors[0].contains(needle),
            "no {needle:?} in {}",
            describe(out)
        );
    }
}

/// A TCP port on localhost that nothing listens on.
fn closed_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    listener.local_addr().expect("address").port()
}

#[test]
fn wrong_types_and_broken_files_name_the_file_and_the_key() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    let port = write(d, "port.yaml", "database:\n    port: \"abc\"\n");
    let out = qdrant2pg(&["import", "--config", utf8(&port), "--quiet"]);
    one_clear_line(&out, &["port.yaml", "database.port", "invalid type"]);

    let negative = write(d, "negative.yaml", "export:\n  max_line_in_file: -1\n");
    let out = qdrant2pg(&["export", "--config", utf8(&negative), "--quiet"]);
    one_clear_line(&out, &["negative.yaml", "export.max_line_in_file"]);

    let flag = write(d, "flag.yaml", "qdrant:\n  https: maybe\n");
    let out = qdrant2pg(&["migrate", "--source-config", utf8(&flag), "--quiet"]);
    one_clear_line(&out, &["flag.yaml", "qdrant.https"]);

    let section = write(d, "section.yaml", "export: [a, b]\n");
    let out = qdrant2pg(&["verify", "--source-config", utf8(&section), "--quiet"]);
    one_clear_line(
        &out,
        &[
            "section.yaml",
            "export",
            "expected a mapping of the guide's export keys",
        ],
    );
    assert!(
        !describe(&out).contains("ExportSection"),
        "{}",
        describe(&out)
    );

    let list = write(d, "list.yaml", "export:\n  collections: docs\n");
    let out = qdrant2pg(&["export", "--config", utf8(&list), "--quiet"]);
    one_clear_line(&out, &["list.yaml", "export.collections"]);

    let broken = write(d, "broken.yaml", "qdrant: [unclosed\n  host: x\n");
    let out = qdrant2pg(&["export", "--config", utf8(&broken), "--quiet"]);
    one_clear_line(&out, &["broken.yaml", "line"]);

    let binary = d.join("binary.yaml");
    std::fs::write(&binary, [0xff, 0xfe, b':', 0x00, 0x80]).expect("write");
    let out = qdrant2pg(&["import", "--config", utf8(&binary), "--quiet"]);
    one_clear_line(&out, &["binary.yaml", "UTF-8"]);

    let out = qdrant2pg(&[
        "import",
        "--config",
        utf8(&d.join("absent.yaml")),
        "--quiet",
    ]);
    one_clear_line(&out, &["absent.yaml", "No such file"]);
}

#[test]
fn missing_keys_fall_back_to_defaults_that_name_themselves() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    // No `qdrant:` section: the default address, named with its origin, once retries run out.
    let source = write(d, "qdrant2csv.yaml", "export:\n  collections: [docs]\n");
    let out = qdrant2pg(&[
        "export",
        "--config",
        utf8(&source),
        "--output",
        utf8(&d.join("out")),
        "--retries",
        "1",
        "--connect-timeout",
        "2",
        "--quiet",
    ]);
    one_clear_line(&out, &["localhost:6334", "default"]);

    // `database:` with every key commented out, and no `data_path`: the default directory.
    let target = write(
        d,
        "csv2adbpg.yaml",
        "database:\n    # host: x\n    # port: 5432\n# data_path: ./output\n",
    );
    let out = command(&["import", "--config", utf8(&target), "--quiet"])
        .current_dir(d)
        .output()
        .expect("run qdrant2pg");
    one_clear_line(&out, &["./output"]);

    // An empty file is the defaults, not an error.
    let empty = write(d, "empty.yaml", "");
    let out = command(&["import", "--config", utf8(&empty), "--quiet"])
        .current_dir(d)
        .output()
        .expect("run qdrant2pg");
    one_clear_line(&out, &["./output"]);
}

#[test]
fn unknown_keys_are_warned_by_name_and_the_run_proceeds() {
    let server = QdrantServer::start();
    crate::export::load_ids(
        &server,
        "docs",
        2,
        &[PointKey::Num(1), PointKey::Num(2), PointKey::Num(3)],
    );
    let db = PgCluster::pg15().create_database();
    let dir = tempfile::tempdir().expect("tempdir");
    let port = server.url().rsplit(':').next().expect("port").to_owned();
    let source = write(
        dir.path(),
        "qdrant2csv.yaml",
        &format!(
            "qdrant:\n  host: localhost\n  grpc_port: {port}\n  hots: typo\nexport:\n  \
             collections: [docs]\n  max_lines_in_file: 5\nextra: {{nested: 1}}\n"
        ),
    );
    let target = write(
        dir.path(),
        "csv2adbpg.yaml",
        &format!(
            "database:\n  host: 127.0.0.1\n  port: {}\n  name: {}\n  user: postgres\n  \
             password: '{}'\n  sslmode: disable\n",
            PgCluster::pg15().port(),
            db.name,
            PgCluster::pg15().password().unwrap_or("")
        ),
    );
    let out = qdrant2pg(&[
        "migrate",
        "--source-config",
        utf8(&source),
        "--target-config",
        utf8(&target),
        "--quiet",
    ]);
    assert_ok(&out);
    let stderr = String::from_utf8_lossy(&out.stderr);
    for key in [
        "qdrant.hots",
        "export.max_lines_in_file",
        "extra",
        "database.sslmode",
    ] {
        assert!(
            stderr
                .lines()
                .any(|l| l.starts_with("warning:") && l.contains(&format!("unknown key `{key}`"))),
            "no warning for {key}: {}",
            describe(&out)
        );
    }
    let rows: i64 = db
        .client()
        .query_one("SELECT count(*) FROM public.docs", &[])
        .expect("count")
        .get(0);
    assert_eq!(rows, 3);
}

#[test]
fn tls_required_by_flag_dsn_or_environment_is_refused_clearly_without_it() {
    let db = PgCluster::pg15().create_database();
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::create_dir(dir.path().join("empty")).expect("dir");
    let data = dir.path().join("empty");
    let dsn = db.dsn();
    let with_mode = format!("{dsn} sslmode=require");
    let runs = [
        qdrant2pg(&[
            "import",
            "--dsn",
            &dsn,
            "--data",
            utf8(&data),
            "--sslmode",
            "require",
        ]),
        qdrant2pg(&["import", "--dsn", &with_mode, "--data", utf8(&data)]),
        command(&["import", "--dsn", &dsn, "--data", utf8(&data)])
            .env("PGSSLMODE", "require")
            .output()
            .expect("run qdrant2pg"),
    ];
    for out in &runs {
        one_clear_line(
            out,
            &["cannot connect to PostgreSQL at postgres@127.0.0.1", "TLS"],
        );
    }
}

#[test]
fn unreachable_postgres_is_one_clear_line() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path();
    let port = closed_port();
    let refused = format!("host=127.0.0.1 port={port} user=postgres dbname=db connect_timeout=3");
    let out = qdrant2pg(&["import", "--dsn", &refused, "--data", utf8(data)]);
    one_clear_line(&out, &[&format!("postgres@127.0.0.1:{port}/db")]);
    let unknown = "host=no-such-host.invalid user=postgres dbname=db connect_timeout=3";
    let out = qdrant2pg(&["import", "--dsn", unknown, "--data", utf8(data)]);
    one_clear_line(&out, &["no-such-host.invalid"]);
}

/// A collection named `name` with two named vectors, `it's Col` and `select`, and payloads.
/// (Qdrant refuses `"`, `|` and `\` in collection and vector names; the PostgreSQL side gets
/// its `"` through the schema name.)
fn load_odd(server: &QdrantServer, name: &str, points: u64) {
    let rt = runtime();
    let client = client(server);
    let params = |size| grpc::VectorParams {
        size,
        distance: grpc::Distance::Dot as i32,
        ..Default::default()
    };
    rt.block_on(client.create_collection(grpc::CreateCollection {
        collection_name: name.into(),
        vectors_config: Some(grpc::VectorsConfig {
            config: Some(grpc::vectors_config::Config::ParamsMap(
                grpc::VectorParamsMap {
                    map: HashMap::from([
                        ("it's Col".to_owned(), params(3)),
                        ("select".to_owned(), params(2)),
                    ]),
                },
            )),
        }),
        ..Default::default()
    }))
    .expect("create collection");
    let dense = |data: Vec<f32>| grpc::Vector {
        vector: Some(grpc::vector::Vector::Dense(grpc::DenseVector { data })),
        ..Default::default()
    };
    let points = (0..points)
        .map(|i| {
            let x = i as f32;
            grpc::PointStruct {
                id: Some(PointKey::Num(i).to_proto()),
                vectors: Some(grpc::Vectors {
                    vectors_options: Some(grpc::vectors::VectorsOptions::Vectors(
                        grpc::NamedVectors {
                            vectors: HashMap::from([
                                ("it's Col".to_owned(), dense(vec![x, -x, 0.5])),
                                ("select".to_owned(), dense(vec![1.0, x])),
                            ]),
                        },
                    )),
                }),
                payload: [(
                    "\"quoted\" key".to_owned(),
                    grpc::Value::from(format!("{name}|{i}\\")),
                )]
                .into(),
            }
        })
        .collect();
    upsert(&rt, &client, name, points);
}

#[test]
fn odd_identifiers_migrate_and_verify_full() {
    odd_identifiers_migrate_and_verify(&PgCluster::pg15().create_database(), &[]);
}

/// Collection, vector and schema names with quotes, spaces, unicode and SQL keywords migrate
/// into `db` (with `extra` flags) and verify.
pub(crate) fn odd_identifiers_migrate_and_verify(db: &TestDb, extra: &[&str]) {
    let server = QdrantServer::start();
    let names = ["it's a b;c", "ünï", "select"];
    for (i, name) in names.iter().enumerate() {
        load_odd(&server, name, 20 + i as u64);
    }
    let schema = ["--schema", "Sch\"ema ü"];
    assert_ok(&migrate(&server, db, &[&schema[..], extra].concat()));
    assert_verifies(&server, db, &schema, names.len());
    for (i, name) in names.iter().enumerate() {
        let table = format!("\"Sch\"\"ema ü\".\"{}\"", name.replace('"', "\"\""));
        let row = db
            .client()
            .query_one(
                &format!("SELECT count(*), sum(\"it's Col\"[1]), sum(\"select\"[2]) FROM {table}"),
                &[],
            )
            .expect("query the odd table");
        let n = 20 + i as i64;
        let sum = (n * (n - 1) / 2) as f32;
        assert_eq!(row.get::<_, i64>(0), n, "{name}");
        assert_eq!(row.get::<_, f32>(1), sum, "{name}");
        assert_eq!(row.get::<_, f32>(2), sum, "{name}");
    }
}
