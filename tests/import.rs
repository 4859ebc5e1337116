//! `qdrant2pg import` against real PostgreSQL servers: guide-style and qdrant2pg export
//! directories, odd identifiers, `--if-exists`, bad data mapped to `file:line`, a kill -9 in the
//! middle of a load, pgvector, and the password never shown.

use std::fs;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use qdrant2pg::layout::{
    DataFacts, Datatype, Layout, PayloadType, VectorShape, VectorSpec, VectorSyntax,
};
use qdrant2pg::manifest::{FileEntry, Manifest};
use qdrant2pg::point_id::{KeyRange, PointKey};

use crate::support::cli::{assert_ok, describe, qdrant2pg};
use crate::support::flows::kill_9_once_the_ledger_holds;
use crate::support::pg::{Auth, PgCluster, PgVersion, TestDb};

/// `rows` lines of `id|{a,b,c}|{"n":id}` for ids `first..first+rows`.
fn rows(first: u64, rows: u64, pgvector: bool) -> String {
    let (open, close) = if pgvector { ('[', ']') } else { ('{', '}') };
    (first..first + rows)
        .map(|i| format!("{i}|{open}{i}.5,-1,1e-05{close}|{{\"n\":{i},\"s\":\"a\\|b\"}}\n"))
        .collect()
}

/// A qdrant2pg export directory for `name`: one dense 3-d vector, the given files' bodies.
fn write_export(root: &Path, name: &str, bodies: &[String], syntax: VectorSyntax) {
    let dir = root.join(name);
    fs::create_dir_all(&dir).unwrap();
    let spec = VectorSpec {
        name: String::new(),
        shape: VectorShape::Dense,
        dim: Some(3),
        datatype: Datatype::Float32,
        distance: None,
        hnsw: None,
    };
    let mut manifest = Manifest::new(name, Layout::new(vec![spec], PayloadType::Json), syntax);
    let mut first = 0;
    for (n, body) in bodies.iter().enumerate() {
        let file_name = format!("{n:010}.csv");
        let content = format!("id|vector|payload\n{body}");
        fs::write(dir.join(&file_name), &content).unwrap();
        let count = body.lines().count() as u64;
        let mut facts = DataFacts::for_layout(&manifest.layout);
        facts.note_id(PointKey::Num(first));
        manifest.files.push(FileEntry {
            name: file_name,
            rows: count,
            bytes: content.len() as u64,
            xxh3: format!("{:016x}", xxhash_rust::xxh3::xxh3_64(content.as_bytes())),
            range: KeyRange::new(PointKey::Num(first), Some(PointKey::Num(first + count))),
            facts,
        });
        first += count;
    }
    manifest.points_count = Some(first);
    manifest.complete = true;
    manifest.store(&dir).unwrap();
}

fn count(db: &TestDb, table: &str) -> i64 {
    db.client()
        .query_one(&format!("SELECT count(*) FROM {table}"), &[])
        .unwrap()
        .get(0)
}

fn import(db: &TestDb, data: &Path, extra: &[&str]) -> Output {
    let dsn = db.dsn();
    let data = data.to_str().unwrap();
    let mut args = vec!["import", "--dsn", &dsn, "--data", data];
    args.extend_from_slice(extra);
    qdrant2pg(&args)
}

#[test]
fn guide_directory_loads_from_the_guide_yaml_and_the_password_never_shows() {
    let password = "pw-Sekr1t'\\x";
    let cluster = PgCluster::start(PgVersion::Pg15, Auth::Scram(password.to_owned()));
    let db = cluster.create_database();
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let dir = data.join("test_collection");
    fs::create_dir_all(&dir).unwrap();
    // Exactly what the guide's export.py writes: unqualified DDL, header, `{a, b}` arrays.
    fs::write(
        dir.join("create_table.sql"),
        "CREATE TABLE test_collection  (id bigint,vector real[],payload json);",
    )
    .unwrap();
    fs::write(
        dir.join("0000000000.csv"),
        "id|vector|payload\n1|{0.5, 1.0}|{\"a\": 1}\n2|{0.25, 2.0}|{}\n",
    )
    .unwrap();
    fs::write(
        dir.join("0000000001.csv"),
        "id|vector|payload\n3|{1.5, 3.0}|{\"b\": \"x\"}\n",
    )
    .unwrap();
    let yaml = |password: &str| {
        format!(
            "database:\n    host: \"127.0.0.1\"\n    port: {}\n    name: \"{}\"\n    user: \"postgres\"\n    \
             password: \"{}\"\n    schema: \"vec\"\n\ndata_path: \"{}\"\n",
            cluster.port(),
            db.name,
            password.replace('\\', "\\\\").replace('"', "\\\""),
            data.display()
        )
    };
    let config = tmp.path().join("csv2adbpg.yaml");
    fs::write(&config, yaml(password)).unwrap();
    let out = qdrant2pg(&["import", "--config", config.to_str().unwrap()]);
    assert_ok(&out);
    assert!(!describe(&out).contains(password), "{}", describe(&out));
    assert_eq!(count(&db, "vec.test_collection"), 3);
    let sum: f32 = db
        .client()
        .query_one("SELECT sum(vector[2]) FROM vec.test_collection", &[])
        .unwrap()
        .get(0);
    assert_eq!(sum, 6.0);
    // A wrong password fails, and is not shown either.
    fs::write(&config, yaml("wrong-Passw0rd")).unwrap();
    let out = qdrant2pg(&["import", "--config", config.to_str().unwrap()]);
    assert!(!out.status.success(), "{}", describe(&out));
    assert!(
        !describe(&out).contains("wrong-Passw0rd"),
        "{}",
        describe(&out)
    );
    assert!(
        describe(&out).contains("postgres@127.0.0.1"),
        "{}",
        describe(&out)
    );
}

#[test]
fn odd_collection_names_load_in_parallel_batches_exactly_once() {
    let db = PgCluster::pg15().create_database();
    let tmp = tempfile::tempdir().unwrap();
    let names = ["My-Docs", "select", "ünï code"];
    for (i, name) in names.iter().enumerate() {
        let n = 500 * (i as u64 + 1);
        write_export(
            tmp.path(),
            name,
            &[rows(0, n, false), rows(n, 7, false)],
            VectorSyntax::Array,
        );
    }
    let args = [
        "--schema",
        "My Schema",
        "--connections",
        "3",
        "--batch-bytes",
        "4096",
    ];
    let report = tmp.path().join("report.json");
    let mut with_report = args.to_vec();
    with_report.extend(["--report-json", report.to_str().unwrap()]);
    assert_ok(&import(&db, tmp.path(), &with_report));
    let check = || {
        for (i, name) in names.iter().enumerate() {
            let table = format!("\"My Schema\".\"{name}\"");
            let expected = 500 * (i as i64 + 1) + 7;
            let row = db
                .client()
                .query_one(
                    &format!(
                        "SELECT count(*), count(DISTINCT id), sum(id), \
                         bool_and(payload->>'s' = 'a|b' AND vector[3] = 1e-05::real) FROM {table}"
                    ),
                    &[],
                )
                .unwrap();
            assert_eq!(row.get::<_, i64>(0), expected, "{name}");
            assert_eq!(row.get::<_, i64>(1), expected, "{name}");
            assert_eq!(row.get::<_, Option<bool>>(3), Some(true), "{name}");
        }
    };
    check();
    let json: serde_json::Value = serde_json::from_slice(&fs::read(&report).unwrap()).unwrap();
    assert_eq!(json["tasks"].as_array().unwrap().len(), 3, "{json}");
    // A second run finds every batch in the ledger and loads nothing twice.
    let out = import(&db, tmp.path(), &args);
    assert_ok(&out);
    check();
}

#[test]
fn bad_data_is_reported_as_file_line_and_column() {
    bad_data_is_reported(&PgCluster::pg15().create_database(), &[]);
}

/// A file with a bad row fails naming its file, line and column (never the value), and
/// nothing of it is loaded; `extra` flags go to import.
pub(crate) fn bad_data_is_reported(db: &TestDb, extra: &[&str]) {
    let tmp = tempfile::tempdir().unwrap();
    let mut bad = rows(100, 50, false);
    bad.push_str("150|{1,2,3}|{not json\n");
    bad.push_str(&rows(151, 10, false));
    write_export(
        tmp.path(),
        "docs",
        &[rows(0, 100, false), bad],
        VectorSyntax::Array,
    );
    let out = import(db, tmp.path(), &[&["--connections", "1"], extra].concat());
    assert!(!out.status.success(), "{}", describe(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    // Line 1 is the header: the bad row is line 52 of the second file.
    assert!(
        stderr.contains("0000000001.csv:52: column payload: invalid input syntax for type json"),
        "{}",
        describe(&out)
    );
    assert!(
        !stderr.contains("not json"),
        "row values must not be printed:\n{}",
        describe(&out)
    );
    // Its transaction rolled back; the good file is in.
    assert_eq!(count(db, "public.docs"), 100);
}

#[test]
fn if_exists_modes() {
    let db = PgCluster::pg15().create_database();
    let tmp = tempfile::tempdir().unwrap();
    write_export(
        tmp.path(),
        "docs",
        &[rows(0, 10, false)],
        VectorSyntax::Array,
    );
    db.client()
        .batch_execute(
            "CREATE TABLE docs (id bigint, vector real[], payload json); \
             INSERT INTO docs VALUES (1000, '{1,2,3}', '{}')",
        )
        .unwrap();
    assert_ok(&import(&db, tmp.path(), &[]));
    assert_eq!(count(&db, "docs"), 1, "skip is the default");
    let out = import(&db, tmp.path(), &["--if-exists", "fail"]);
    assert!(
        !out.status.success() && describe(&out).contains("already exists"),
        "{}",
        describe(&out)
    );
    assert_ok(&import(&db, tmp.path(), &["--if-exists", "append"]));
    assert_eq!(count(&db, "docs"), 11);
    assert_ok(&import(&db, tmp.path(), &["--if-exists", "append"]));
    assert_eq!(count(&db, "docs"), 11, "append never loads a batch twice");
    assert_ok(&import(&db, tmp.path(), &["--if-exists", "truncate"]));
    assert_eq!(count(&db, "docs"), 10);
    db.client()
        .batch_execute("ALTER TABLE docs ADD COLUMN extra int")
        .unwrap();
    assert_ok(&import(&db, tmp.path(), &["--if-exists", "replace"]));
    assert_eq!(count(&db, "docs"), 10);
    let columns: i64 = db
        .client()
        .query_one(
            "SELECT count(*) FROM information_schema.columns WHERE table_name = 'docs'",
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(columns, 3, "replace recreates the table from the manifest");
}

#[test]
fn kill_9_mid_load_then_rerun_has_every_row_exactly_once() {
    let db = PgCluster::pg15().create_database();
    let tmp = tempfile::tempdir().unwrap();
    let total = 400_000u64;
    write_export(
        tmp.path(),
        "big",
        &[rows(0, total / 2, false), rows(total / 2, total / 2, false)],
        VectorSyntax::Array,
    );
    let dsn = db.dsn();
    let mut child = Command::new(env!("CARGO_BIN_EXE_qdrant2pg"))
        .args([
            "import",
            "--dsn",
            &dsn,
            "--data",
            tmp.path().to_str().unwrap(),
        ])
        .args(["--connections", "2", "--batch-bytes", "200000", "--quiet"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    kill_9_once_the_ledger_holds(&db, &mut child, "true", 3, || {});
    let partial = count(&db, "public.big");
    assert!(
        partial > 0 && partial < total as i64,
        "killed after {partial} rows"
    );
    assert_ok(&import(
        &db,
        tmp.path(),
        &["--connections", "2", "--batch-bytes", "300000"],
    ));
    let row = db
        .client()
        .query_one(
            "SELECT count(*), count(DISTINCT id), min(id), max(id) FROM public.big",
            &[],
        )
        .unwrap();
    assert_eq!(row.get::<_, i64>(0), total as i64);
    assert_eq!(row.get::<_, i64>(1), total as i64);
    assert_eq!(
        (row.get::<_, i64>(2), row.get::<_, i64>(3)),
        (0, total as i64 - 1)
    );
}

#[test]
fn pgvector_dialect_loads_vector_columns() {
    let db = PgCluster::pg18_vector().create_database();
    let tmp = tempfile::tempdir().unwrap();
    write_export(
        tmp.path(),
        "vecs",
        &[rows(0, 20, true)],
        VectorSyntax::Pgvector,
    );
    assert_ok(&import(&db, tmp.path(), &["--dialect", "pgvector"]));
    let row = db
        .client()
        .query_one(
            "SELECT format_type(atttypid, atttypmod), (SELECT vector::text FROM vecs WHERE id = 3) \
             FROM pg_attribute WHERE attrelid = 'vecs'::regclass AND attname = 'vector'",
            &[],
        )
        .unwrap();
    assert_eq!(row.get::<_, String>(0), "vector(3)");
    assert_eq!(row.get::<_, String>(1), "[3.5,-1,1e-05]");

    // A float16 dense vector as halfvec, and a sparse vector as one sparsevec column (1-based).
    let dir = tmp.path().join("hybrid");
    fs::create_dir_all(&dir).unwrap();
    let vector = |name: &str, shape, dim, datatype| VectorSpec {
        name: name.into(),
        shape,
        dim,
        datatype,
        distance: None,
        hnsw: None,
    };
    let layout = Layout::new(
        vec![
            vector("bm25", VectorShape::Sparse, Some(10), Datatype::Float32),
            vector("text", VectorShape::Dense, Some(3), Datatype::Float16),
        ],
        PayloadType::Jsonb,
    );
    let mut manifest = Manifest::new("hybrid", layout, VectorSyntax::Pgvector);
    let content =
        "id|text|bm25|payload\n1|[1.5,-1,0.25]|{1:0.5,3:0.25}/10|{\"k\": 1}\n2|\\N|\\N|{}\n";
    fs::write(dir.join("0000000000.csv"), content).unwrap();
    let mut facts = DataFacts::for_layout(&manifest.layout);
    facts.note_id(PointKey::Num(1));
    facts.note_sparse_index(0, 2);
    manifest.files.push(FileEntry {
        name: "0000000000.csv".into(),
        rows: 2,
        bytes: content.len() as u64,
        xxh3: format!("{:016x}", xxhash_rust::xxh3::xxh3_64(content.as_bytes())),
        range: KeyRange::new(PointKey::Num(0), None),
        facts,
    });
    manifest.complete = true;
    manifest.store(&dir).unwrap();
    let args = [
        "--dialect",
        "pgvector",
        "--halfvec",
        "float16",
        "--collection",
        "hybrid",
    ];
    assert_ok(&import(&db, tmp.path(), &args));
    let row = db
        .client()
        .query_one(
            "SELECT pg_typeof(text)::text, text::text, bm25::text, payload->>'k' FROM hybrid \
             WHERE id = 1",
            &[],
        )
        .unwrap();
    assert_eq!(row.get::<_, String>(0), "halfvec");
    assert_eq!(row.get::<_, String>(1), "[1.5,-1,0.25]");
    assert_eq!(row.get::<_, String>(2), "{1:0.5,3:0.25}/10");
    assert_eq!(row.get::<_, Option<String>>(3).as_deref(), Some("1"));
    assert_eq!(count(&db, "hybrid WHERE text IS NULL AND bm25 IS NULL"), 1);
    // Array-syntax files cannot go into pgvector columns: said up front, nothing loaded.
    write_export(
        tmp.path(),
        "arrays",
        &[rows(0, 2, false)],
        VectorSyntax::Array,
    );
    let out = import(
        &db,
        tmp.path(),
        &["--dialect", "pgvector", "--collection", "arrays"],
    );
    assert!(
        !out.status.success() && describe(&out).contains("export again"),
        "{}",
        describe(&out)
    );
}

/// Runs openssl with `args` in `dir`, panicking with its output on failure.
fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("running openssl");
    assert!(out.status.success(), "openssl {args:?}: {}", describe(&out));
}

/// A CA and a server certificate for 127.0.0.1 signed by it, plus an unrelated CA.
fn make_certificates(dir: &Path) {
    let key = ["-newkey", "rsa:2048", "-nodes", "-days", "2"];
    openssl(
        dir,
        &[
            &["req", "-x509"],
            &key[..],
            &[
                "-keyout",
                "ca.key",
                "-out",
                "ca.pem",
                "-subj",
                "/CN=qdrant2pg test CA",
            ],
        ]
        .concat(),
    );
    openssl(
        dir,
        &[
            &["req", "-x509"],
            &key[..],
            &[
                "-keyout",
                "other.key",
                "-out",
                "other.pem",
                "-subj",
                "/CN=other CA",
            ],
        ]
        .concat(),
    );
    openssl(
        dir,
        &[
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            "server.key",
            "-out",
            "server.csr",
            "-subj",
            "/CN=127.0.0.1",
        ],
    );
    fs::write(dir.join("san.ext"), "subjectAltName=IP:127.0.0.1\n").unwrap();
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            "server.pem",
            "-days",
            "2",
            "-extfile",
            "san.ext",
        ],
    );
}

#[test]
fn tls_require_verify_ca_and_verify_full() {
    use std::os::unix::fs::PermissionsExt;
    let cluster = PgCluster::start(PgVersion::Pg15, Auth::Trust);
    let db = cluster.create_database();
    let tmp = tempfile::tempdir().unwrap();
    let certs = tmp.path().join("certs");
    fs::create_dir(&certs).unwrap();
    make_certificates(&certs);
    // The server may run as another user (`postgres` when tests run as root): let it in, and
    // give it its key with the permissions PostgreSQL insists on.
    for dir in [tmp.path(), certs.as_path()] {
        fs::set_permissions(dir, fs::Permissions::from_mode(0o755)).unwrap();
    }
    fs::set_permissions(certs.join("server.pem"), fs::Permissions::from_mode(0o644)).unwrap();
    fs::set_permissions(certs.join("server.key"), fs::Permissions::from_mode(0o600)).unwrap();
    let is_root = Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| o.stdout.starts_with(b"0\n"));
    if is_root {
        let status = Command::new("chown")
            .arg("postgres")
            .arg(certs.join("server.key"))
            .status()
            .unwrap();
        assert!(status.success());
    }
    let mut admin = db.client();
    for setting in [
        format!(
            "ALTER SYSTEM SET ssl_cert_file = '{}'",
            certs.join("server.pem").display()
        ),
        format!(
            "ALTER SYSTEM SET ssl_key_file = '{}'",
            certs.join("server.key").display()
        ),
        "ALTER SYSTEM SET ssl = on".to_owned(),
    ] {
        admin.batch_execute(&setting).unwrap();
    }
    let ssl_on: bool = admin
        .query_one("SELECT pg_reload_conf()", &[])
        .unwrap()
        .get(0);
    assert!(ssl_on);
    std::thread::sleep(Duration::from_secs(1));

    let data = tmp.path().join("data");
    write_export(&data, "docs", &[rows(0, 10, false)], VectorSyntax::Array);
    let ca = certs.join("ca.pem");
    let other = certs.join("other.pem");
    let run = |host: &str, mode: &str, root: &Path, table: &str| {
        let dsn = format!(
            "host={host} port={} user=postgres dbname={} sslmode={mode}",
            cluster.port(),
            db.name
        );
        qdrant2pg(&[
            "import",
            "--dsn",
            &dsn,
            "--data",
            data.to_str().unwrap(),
            "--schema",
            table,
            "--sslrootcert",
            root.to_str().unwrap(),
        ])
    };
    assert_ok(&run("127.0.0.1", "require", &other, "s_require"));
    assert_ok(&run("127.0.0.1", "verify-full", &ca, "s_full"));
    assert_ok(&run("localhost", "verify-ca", &ca, "s_ca"));
    let wrong_ca = run("127.0.0.1", "verify-full", &other, "s_bad");
    assert!(!wrong_ca.status.success(), "{}", describe(&wrong_ca));
    let wrong_name = run("localhost", "verify-full", &ca, "s_bad");
    assert!(!wrong_name.status.success(), "{}", describe(&wrong_name));
    for schema in ["s_require", "s_full", "s_ca"] {
        assert_eq!(count(&db, &format!("{schema}.docs")), 10);
    }
    // `require` against a server without TLS: see config::tls_required_…_without_it.
}

#[test]
fn server_restart_mid_load_is_retried_on_fresh_connections() {
    let cluster = PgCluster::start(PgVersion::Pg15, Auth::Trust);
    let db = cluster.create_database();
    let tmp = tempfile::tempdir().unwrap();
    let total = 300_000u64;
    write_export(
        tmp.path(),
        "docs",
        &[rows(0, total / 2, false), rows(total / 2, total / 2, false)],
        VectorSyntax::Array,
    );
    let dsn = db.dsn();
    let child = Command::new(env!("CARGO_BIN_EXE_qdrant2pg"))
        .args([
            "import",
            "--dsn",
            &dsn,
            "--data",
            tmp.path().to_str().unwrap(),
        ])
        .args(["--connections", "2", "--batch-bytes", "200000", "--quiet"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let started = Instant::now();
    let mut client = db.client();
    loop {
        let loaded: Option<i64> = client
            .query_opt("SELECT count(*) FROM public.qdrant2pg_ledger", &[])
            .ok()
            .flatten()
            .map(|r| r.get(0));
        if loaded.is_some_and(|n| n >= 3) {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "no progress in the ledger"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    drop(client);
    cluster.restart();
    let out = child.wait_with_output().unwrap();
    assert_ok(&out);
    assert!(
        describe(&out).contains("retrying on a fresh one"),
        "{}",
        describe(&out)
    );
    let row = db
        .client()
        .query_one("SELECT count(*), count(DISTINCT id) FROM public.docs", &[])
        .unwrap();
    assert_eq!(
        (row.get::<_, i64>(0), row.get::<_, i64>(1)),
        (total as i64, total as i64)
    );
}

#[test]
fn on_error_skip_file_goes_on_with_the_other_files() {
    let db = PgCluster::pg15().create_database();
    let tmp = tempfile::tempdir().unwrap();
    // The bad file is the largest, so with one connection it is loaded first.
    let bad = format!("0|{{1,2,3}}|{{\"broken\"\n{}", rows(1, 299, false));
    write_export(
        tmp.path(),
        "docs",
        &[bad, rows(300, 100, false), rows(400, 50, false)],
        VectorSyntax::Array,
    );
    let out = import(&db, tmp.path(), &["--connections", "1"]);
    assert!(!out.status.success(), "{}", describe(&out));
    assert_eq!(count(&db, "docs"), 0, "stop: nothing after the bad file");
    let out = import(
        &db,
        tmp.path(),
        &["--connections", "1", "--on-error", "skip-file"],
    );
    assert!(!out.status.success(), "{}", describe(&out));
    assert!(
        describe(&out).contains("0000000000.csv:2: column payload"),
        "{}",
        describe(&out)
    );
    assert!(describe(&out).contains("FAILED"), "{}", describe(&out));
    assert_eq!(count(&db, "docs"), 150, "skip-file: the other files are in");
}
