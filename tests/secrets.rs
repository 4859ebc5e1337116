//! Secrets never show: every subcommand runs with a distinctive PostgreSQL password and Qdrant
//! API key, passed by flags, by environment variables and by the guide's YAML files, in runs
//! that succeed and runs that fail (wrong password, wrong key, unreachable host, malformed
//! DSN); everything they print and every file they write (`--report-json` reports, export
//! directories with their manifests) is searched for the secrets.
//!
//! `import` reading the guide's YAML, with a right and a wrong password, is covered in
//! `tests/import.rs`.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Output;

use crate::support::cli::{describe, qdrant2pg_with_env};
use crate::support::pg::{Auth, PgCluster, PgVersion, TestDb};
use crate::support::qdrant::QdrantServer;

const PASSWORD: &str = "pw-Kq7zSECRET-pg";
const API_KEY: &str = "ak-X3k9SECRET-qd";
const WRONG_PASSWORD: &str = "pw-wrongSECRET-2";
const WRONG_KEY: &str = "ak-wrongSECRET-2";
const SECRETS: [&str; 4] = [PASSWORD, API_KEY, WRONG_PASSWORD, WRONG_KEY];
const COLLECTION: &str = "secretive";

/// Every run of one test, and the directory they write into.
struct Runs {
    dir: tempfile::TempDir,
    /// Files holding secrets on purpose (the YAML configs): not searched.
    configs: Vec<PathBuf>,
    count: usize,
}

impl Runs {
    /// Runs `qdrant2pg args… --report-json FILE` with `env`, checks the outcome, and checks
    /// that no secret is in its output or in any file written so far.
    fn run(&mut self, succeeds: bool, args: &[&str], env: &[(&str, &str)]) -> Output {
        self.count += 1;
        let report = self.dir.path().join(format!("report-{}.json", self.count));
        let report_arg = report.to_str().expect("utf-8").to_owned();
        let args = [args, &["--report-json", &report_arg]].concat();
        let out = qdrant2pg_with_env(&args, env);
        let printed = describe(&out);
        let what = format!("qdrant2pg {}\n{printed}", args.join(" "));
        assert_eq!(out.status.success(), succeeds, "{what}");
        for secret in SECRETS {
            assert!(!printed.contains(secret), "{secret} printed by {what}");
        }
        if succeeds {
            assert!(report.exists(), "no report from {what}");
        }
        self.assert_files_clean(self.dir.path(), &what);
        out
    }

    fn assert_files_clean(&self, dir: &Path, after: &str) {
        for entry in fs::read_dir(dir).expect("read the test directory") {
            let path = entry.expect("a directory entry").path();
            if path.is_dir() {
                self.assert_files_clean(&path, after);
            } else if !self.configs.contains(&path) {
                let bytes = fs::read(&path).expect("read a written file");
                let text = String::from_utf8_lossy(&bytes);
                for secret in SECRETS {
                    assert!(
                        !text.contains(secret),
                        "{secret} written to {} by {after}",
                        path.display()
                    );
                }
            }
        }
    }

    fn path(&self, name: &str) -> String {
        self.dir
            .path()
            .join(name)
            .to_str()
            .expect("utf-8")
            .to_owned()
    }
}

/// The arguments of several groups, in order.
fn with<'a>(parts: &[&[&'a str]]) -> Vec<&'a str> {
    parts.concat()
}

/// `db`'s DSN with `password` in place of the right one.
fn dsn_with(db: &TestDb, password: &str) -> String {
    db.dsn().replace(PASSWORD, password)
}

#[test]
fn no_command_prints_or_writes_a_password_or_an_api_key() {
    let cluster = PgCluster::start(PgVersion::Pg15, Auth::Scram(PASSWORD.to_owned()));
    let db = cluster.create_database();
    let server = QdrantServer::start_with_api_key(API_KEY);
    let url = server.url();
    let dsn = db.dsn();
    assert!(dsn.contains(PASSWORD), "the DSN carries the password");
    let mut runs = Runs {
        dir: tempfile::tempdir().expect("tempdir"),
        configs: Vec::new(),
        count: 0,
    };
    let none: &[(&str, &str)] = &[];

    // Flags.
    let qdrant = ["--url", &url, "--api-key", API_KEY];
    let pg = ["--dsn", &dsn];
    let out_flags = runs.path("out-flags");
    let generate = [
        "generate",
        "--collection",
        COLLECTION,
        "--points",
        "300",
        "--dim",
        "4",
    ];
    runs.run(true, &with(&[&generate, &qdrant]), none);
    let only = ["--collection", COLLECTION];
    runs.run(true, &with(&[&["plan"], &qdrant, &only]), none);
    runs.run(
        true,
        &with(&[&["export", "--output", &out_flags], &qdrant]),
        none,
    );
    let schema = ["--schema", "flags"];
    runs.run(
        true,
        &with(&[&["import", "--data", &out_flags], &pg, &schema]),
        none,
    );
    runs.run(
        true,
        &with(&[&["verify", "--full"], &qdrant, &pg, &schema]),
        none,
    );
    runs.run(
        true,
        &with(&[&["index", "--dry-run"], &qdrant, &pg, &schema]),
        none,
    );
    runs.run(true, &with(&[&["index"], &qdrant, &pg, &schema]), none);
    let migrated = ["--schema", "migrated"];
    runs.run(true, &with(&[&["migrate"], &qdrant, &pg, &migrated]), none);
    runs.run(true, &with(&[&["status"], &pg, &migrated]), none);

    // Environment variables.
    let port = cluster.port().to_string();
    let env = [
        ("QDRANT_URL", url.as_str()),
        ("QDRANT_API_KEY", API_KEY),
        ("PGHOST", "127.0.0.1"),
        ("PGPORT", port.as_str()),
        ("PGUSER", "postgres"),
        ("PGDATABASE", db.name.as_str()),
        ("PGPASSWORD", PASSWORD),
    ];
    let out_env = runs.path("out-env");
    let schema = ["--schema", "env"];
    runs.run(true, &with(&[&["plan"], &only]), &env);
    runs.run(true, &["export", "--output", &out_env], &env);
    runs.run(
        true,
        &with(&[&["import", "--data", &out_env], &schema]),
        &env,
    );
    runs.run(true, &with(&[&["verify", "--full"], &schema]), &env);
    runs.run(true, &with(&[&["index"], &schema]), &env);
    runs.run(true, &["migrate", "--schema", "migrated_env"], &env);
    runs.run(true, &["status", "--schema", "migrated_env"], &env);
    let env_wrong: Vec<(&str, &str)> = env
        .iter()
        .map(|&(k, v)| match k {
            "QDRANT_API_KEY" => (k, WRONG_KEY),
            "PGPASSWORD" => (k, WRONG_PASSWORD),
            _ => (k, v),
        })
        .collect();
    runs.run(
        false,
        &["export", "--output", &runs.path("out-env-wrong")],
        &env_wrong,
    );
    runs.run(false, &["migrate", "--schema", "never"], &env_wrong);

    // The guide's YAML files.
    let source = runs.dir.path().join("qdrant2csv.yaml");
    let target = runs.dir.path().join("csv2adbpg.yaml");
    let out_yaml = runs.path("out-yaml");
    let source_yaml = |key: &str| {
        format!(
            "qdrant:\n  url: \"{url}\"\n  api_key: \"{key}\"\nexport:\n  collections: \
             [\"{COLLECTION}\"]\n  output_path: \"{out_yaml}\"\n"
        )
    };
    let target_yaml = |password: &str| {
        format!(
            "database:\n  host: \"127.0.0.1\"\n  port: {port}\n  name: \"{}\"\n  user: \
             \"postgres\"\n  password: \"{password}\"\n  schema: \"yaml\"\ndata_path: \
             \"{out_yaml}\"\n",
            db.name
        )
    };
    fs::write(&source, source_yaml(API_KEY)).expect("write the source YAML");
    fs::write(&target, target_yaml(PASSWORD)).expect("write the target YAML");
    runs.configs = vec![source.clone(), target.clone()];
    let (source, target) = (
        source.to_str().expect("utf-8").to_owned(),
        target.to_str().expect("utf-8").to_owned(),
    );
    let both = ["--source-config", &source, "--target-config", &target];
    runs.run(true, &["plan", "--config", &source], none);
    runs.run(true, &["export", "--config", &source], none);
    runs.run(true, &["import", "--config", &target], none);
    runs.run(true, &with(&[&["verify", "--full"], &both]), none);
    runs.run(true, &with(&[&["index"], &both]), none);
    runs.run(
        true,
        &with(&[&["migrate", "--schema", "migrated_yaml"], &both]),
        none,
    );
    runs.run(true, &["status", "--config", &target], none);
    fs::write(&runs.configs[0], source_yaml(WRONG_KEY)).expect("write the source YAML");
    fs::write(&runs.configs[1], target_yaml(WRONG_PASSWORD)).expect("write the target YAML");
    runs.run(false, &["plan", "--config", &source], none);
    runs.run(false, &with(&[&["verify"], &both]), none);
    runs.run(false, &with(&[&["index"], &both]), none);
    runs.run(false, &with(&[&["migrate"], &both]), none);

    // Failing runs, by flags: wrong key, wrong password, nobody listening, malformed DSNs.
    let wrong_key = ["--url", &url, "--api-key", WRONG_KEY];
    let wrong_dsn = dsn_with(&db, WRONG_PASSWORD);
    let wrong_pg = ["--dsn", &wrong_dsn];
    let never = ["--schema", "never"];
    let gen_wrong = [
        "generate",
        "--collection",
        "never",
        "--points",
        "10",
        "--dim",
        "4",
    ];
    runs.run(false, &with(&[&gen_wrong, &wrong_key]), none);
    runs.run(false, &with(&[&["plan"], &wrong_key]), none);
    runs.run(
        false,
        &with(&[&["export", "--output", &runs.path("out-wrong")], &wrong_key]),
        none,
    );
    runs.run(
        false,
        &with(&[&["import", "--data", &out_flags], &wrong_pg, &never]),
        none,
    );
    runs.run(false, &with(&[&["migrate"], &wrong_key, &pg, &never]), none);
    runs.run(
        false,
        &with(&[&["migrate"], &qdrant, &wrong_pg, &never]),
        none,
    );
    runs.run(false, &with(&[&["verify"], &wrong_key, &pg]), none);
    runs.run(false, &with(&[&["verify"], &qdrant, &wrong_pg]), none);
    runs.run(false, &with(&[&["index"], &qdrant, &wrong_pg]), none);
    runs.run(false, &with(&[&["status"], &wrong_pg]), none);
    let nobody = [
        "--url",
        "http://127.0.0.1:1",
        "--api-key",
        API_KEY,
        "--retries",
        "1",
        "--connect-timeout",
        "1",
    ];
    runs.run(
        false,
        &with(&[&["export", "--output", &runs.path("out-x")], &nobody]),
        none,
    );
    let unreachable_dsn = format!("host=127.0.0.1 port=1 user=postgres password='{PASSWORD}'");
    for bad in [
        unreachable_dsn,
        format!("host=127.0.0.1 password={PASSWORD} bogus"),
        format!("host=127.0.0.1 password='{PASSWORD}"),
        format!("postgresql://postgres:{PASSWORD}@127.0.0.1:notaport/db"),
        format!("postgresql://postgres:{PASSWORD}@127.0.0.1:1/db"),
    ] {
        runs.run(
            false,
            &["import", "--data", &out_flags, "--dsn", &bad],
            none,
        );
        runs.run(false, &with(&[&["migrate", "--dsn", &bad], &qdrant]), none);
    }
}
