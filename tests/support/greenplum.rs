//! A genuine Greenplum 6.24.3 cluster for the `adbpg` tier: AnalyticDB for PostgreSQL 6.x's
//! engine, a coordinator and two primary segments on loopback.
//!
//! The server is the installed prefix `target/test-servers/greenplum` (unpacked by
//! `scripts/install-test-deps.sh` from `../shared/greenplum-6.24.3`), or `QDRANT2PG_GREENPLUM`.
//! Where it is missing, [`Greenplum::shared`] is `None` after one line saying so, and the test
//! returns; under `CI=true` it fails instead (`support::tier`).
//!
//! One cluster per test process, made on first use in a fresh directory under the per-user base
//! of `support::pg` (so the same sweep removes what a killed process left), on three free
//! consecutive ports: the coordinator's, then one per segment. Each test gets its own database.
//! The cluster is made as the `cluster.sh` beside the install makes it (Greenplum's own
//! gpinitsystem needs Python 2): `initdb` for each instance, `gp_add_segment()` on the
//! coordinator in utility mode, then the segments and the coordinator started. Unlike
//! `cluster.sh`, which starts them through `pg_ctl` (whose servers are daemons nobody can tie to
//! a test), each postmaster is spawned directly as a child that dies with the test process
//! (`support::spawn`): an `atexit` handler stops them when the test binary exits, and the
//! kernel's `PR_SET_PDEATHSIG` when it is killed. The three `initdb`s run at once, unsynced,
//! and the servers run with `fsync = off`: throwaway data.
//!
//! Tests usually run as root (CI does); Greenplum, like PostgreSQL, refuses to, so the servers
//! then run as the `postgres` system user. The binaries find their libraries through
//! `LD_LIBRARY_PATH`, which [`Greenplum::program`] sets for `psql` and `gpfdist` too.

use std::fs::{self, OpenOptions};
use std::io::Write;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::AtomicU64;
use std::sync::{Mutex, Once, OnceLock, PoisonError};
use std::thread;
use std::time::{Duration, Instant};

use postgres::NoTls;

use super::pg::{
    PORT_ATTEMPTS, READY_TIMEOUT, ServerUser, StopAtExit, TestDb, append_log, create_database,
    free_port, remove_unless_kept, scratch_dir, socket_config, stop_at_exit, stop_postmaster,
    wait_ready,
};
use super::spawn::spawn_tied_to_this_process;
use super::tier::installed_or_skipped;

/// Sessions the coordinator takes: a test's CLI run opens up to about ten (loaders, verify
/// workers, setup), and tests run in parallel.
const COORDINATOR_CONNECTIONS: u32 = 100;
/// Each coordinator session that runs a distributed statement holds one or more sessions on
/// every segment (one per slice of its plan): Greenplum advises 3-5 times the coordinator's.
const SEGMENT_CONNECTIONS: u32 = 400;

/// One server of the cluster.
struct Instance {
    /// The data directory's name under the cluster's root, and its log's.
    name: &'static str,
    /// `gp_contentid`: −1 for the coordinator, the segment number otherwise.
    content: i16,
    /// `gp_dbid`.
    dbid: i16,
    /// Added to the coordinator's port.
    port_offset: u16,
}

/// Segments first: they start before the coordinator, which reaches them at start-up.
const SEGMENTS: [Instance; 2] = [
    Instance {
        name: "seg0",
        content: 0,
        dbid: 2,
        port_offset: 1,
    },
    Instance {
        name: "seg1",
        content: 1,
        dbid: 3,
        port_offset: 2,
    },
];
const COORDINATOR: Instance = Instance {
    name: "coord",
    content: -1,
    dbid: 1,
    port_offset: 0,
};

/// The running cluster of this test process.
pub struct Greenplum {
    prefix: PathBuf,
    /// Holds each instance's data directory and log, and the unix sockets (`sock/`).
    root: PathBuf,
    /// The coordinator's; the segments listen on the next two.
    port: u16,
    /// The segments' postmasters, then the coordinator's; empty once stopped.
    postmasters: Mutex<Vec<Child>>,
    next_db: AtomicU64,
}

impl Greenplum {
    /// The cluster shared by every test of this process, made on first use; `None` where no
    /// Greenplum is installed (after one line saying so; a panic under `CI=true`).
    pub fn shared() -> Option<&'static Greenplum> {
        static CLUSTER: OnceLock<Greenplum> = OnceLock::new();
        let prefix = prefix()?;
        let mut started = false;
        let cluster = CLUSTER.get_or_init(|| {
            started = true;
            Greenplum::start(prefix)
        });
        if started {
            stop_at_exit(cluster);
        }
        Some(cluster)
    }

    /// A new, empty database with a name unique on this cluster and telling which test made it.
    pub fn create_database(&self) -> TestDb {
        let name = create_database(&mut self.admin(), &self.next_db, "Greenplum");
        TestDb::trusted(name, self.port)
    }

    /// A program of the install (`psql`, `gpfdist`), with the libraries it needs.
    pub fn program(&self, name: &str) -> Command {
        let mut command = Command::new(self.prefix.join("bin").join(name));
        command.env("LD_LIBRARY_PATH", self.prefix.join("lib"));
        command
    }

    /// Where the install's program `name` is (`gpfdist`, for `import --gpfdist`).
    pub fn program_path(&self, name: &str) -> PathBuf {
        self.prefix.join("bin").join(name)
    }

    /// A superuser session on the coordinator over the private unix socket (`trust`).
    fn admin(&self) -> postgres::Client {
        socket_config(&self.root, self.port)
            .connect(NoTls)
            .unwrap_or_else(|e| panic!("admin connection to Greenplum: {e}"))
    }

    fn start(prefix: &Path) -> Greenplum {
        let user = ServerUser::for_this_process();
        let mut last_log = String::new();
        for _ in 0..PORT_ATTEMPTS {
            let root = scratch_dir("greenplum", user);
            let port = free_port_triple();
            let mut postmasters = Vec::new();
            match make_cluster(prefix, &root, port, user, &mut postmasters) {
                Ok(()) => {
                    return Greenplum {
                        prefix: prefix.to_path_buf(),
                        root,
                        port,
                        postmasters: Mutex::new(postmasters),
                        next_db: AtomicU64::new(0),
                    };
                }
                Err(log) => {
                    stop_all(&mut postmasters);
                    if !log.contains("could not bind") {
                        panic!(
                            "Greenplum cluster in {} did not start:\n{log}",
                            root.display()
                        );
                    }
                    let _ = fs::remove_dir_all(&root);
                    last_log = log;
                }
            }
        }
        panic!("Greenplum found no free ports in {PORT_ATTEMPTS} attempts:\n{last_log}")
    }
}

impl StopAtExit for Greenplum {
    /// Immediate shutdown, the coordinator first, then the directory goes.
    fn stop_at_exit(&self) {
        stop_all(
            &mut self
                .postmasters
                .lock()
                .unwrap_or_else(PoisonError::into_inner),
        );
        remove_unless_kept(&self.root, "Greenplum");
    }
}

/// The installed prefix, or `None` after one line saying why (a panic under `CI=true`).
fn prefix() -> Option<&'static Path> {
    static FOUND: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    static SAID: Once = Once::new();
    let found = FOUND.get_or_init(|| {
        let (path, origin) = match std::env::var_os("QDRANT2PG_GREENPLUM") {
            Some(prefix) => (PathBuf::from(prefix), "QDRANT2PG_GREENPLUM"),
            None => (
                Path::new(env!("CARGO_MANIFEST_DIR")).join("target/test-servers/greenplum"),
                "scripts/install-test-deps.sh, from ../shared/greenplum-6.24.3",
            ),
        };
        // Resolved, because the server user may reach the files only through their real path.
        match path.join("bin/postgres").canonicalize() {
            Ok(postgres) if postgres.is_file() => Ok(postgres
                .parent()
                .and_then(Path::parent)
                .map_or(path, Path::to_path_buf)),
            _ => Err(format!("no Greenplum at {} ({origin})", path.display())),
        }
    });
    installed_or_skipped(
        &SAID,
        "Greenplum",
        found.as_ref().map(PathBuf::as_path).map_err(String::as_str),
        "the adbpg dialect is checked by its golden SQL only",
    )
}

/// Three consecutive ports of 127.0.0.1 that were free a moment ago.
fn free_port_triple() -> u16 {
    loop {
        let port = free_port();
        let free = |p: u16| TcpListener::bind(("127.0.0.1", p)).is_ok();
        if port < u16::MAX - 2 && free(port + 1) && free(port + 2) {
            return port;
        }
    }
}

/// Initialises and starts the cluster, pushing each started postmaster onto `postmasters`; on
/// failure returns why, with the server's log.
fn make_cluster(
    prefix: &Path,
    root: &Path,
    port: u16,
    user: Option<ServerUser>,
    postmasters: &mut Vec<Child>,
) -> Result<(), String> {
    let instances = [&SEGMENTS[0], &SEGMENTS[1], &COORDINATOR];
    thread::scope(|s| {
        let inits: Vec<_> = instances
            .iter()
            .map(|instance| s.spawn(move || init_instance(prefix, root, instance, port, user)))
            .collect();
        inits
            .into_iter()
            .try_for_each(|init| init.join().unwrap_or_else(|e| std::panic::resume_unwind(e)))
    })?;

    // The coordinator learns its segments in utility mode, as gpinitsystem does.
    let mut coordinator = spawn_instance(
        prefix,
        root,
        &COORDINATOR,
        port,
        user,
        &["-c", "gp_role=utility"],
    );
    let utility = |instance: &Instance| {
        let mut config = socket_config(root, port + instance.port_offset);
        config.options("-c gp_session_role=utility");
        config
    };
    let log = |instance: &Instance| root.join(format!("{}.log", instance.name));
    let registered = wait_ready(&utility(&COORDINATOR), &log(&COORDINATOR), &mut coordinator)
        .and_then(|()| register_segments(root, port, &utility(&COORDINATOR)));
    stop_postmaster(&mut coordinator, libc::SIGINT);
    registered?;

    for segment in &SEGMENTS {
        let mut child = spawn_instance(prefix, root, segment, port, user, &[]);
        let ready = wait_ready(&utility(segment), &log(segment), &mut child);
        postmasters.push(child);
        ready?;
    }
    let mut child = spawn_instance(prefix, root, &COORDINATOR, port, user, &["-E"]);
    let ready = wait_ready(&socket_config(root, port), &log(&COORDINATOR), &mut child);
    postmasters.push(child);
    ready?;
    wait_for_segments(root, port)
}

/// `gp_add_segment()` of every instance, on the coordinator in utility mode.
fn register_segments(root: &Path, port: u16, coordinator: &postgres::Config) -> Result<(), String> {
    let register = [&COORDINATOR, &SEGMENTS[0], &SEGMENTS[1]]
        .iter()
        .map(|i| {
            format!(
                "SELECT pg_catalog.gp_add_segment({}::int2, {}::int2, 'p', 'p', 's', 'u', {}, \
                 'localhost', '127.0.0.1', '{}');",
                i.dbid,
                i.content,
                port + i.port_offset,
                root.join(i.name).display()
            )
        })
        .collect::<String>();
    coordinator
        .connect(NoTls)
        .and_then(|mut c| c.batch_execute(&register))
        .map_err(|e| format!("registering the segments: {e}"))
}

/// `initdb` of one instance, plus its place in the cluster and the settings of a throwaway
/// test server.
fn init_instance(
    prefix: &Path,
    root: &Path,
    instance: &Instance,
    port: u16,
    user: Option<ServerUser>,
) -> Result<(), String> {
    let data = root.join(instance.name);
    let connections = if instance.content < 0 {
        COORDINATOR_CONNECTIONS
    } else {
        SEGMENT_CONNECTIONS
    };
    let mut initdb = server_command(prefix, "initdb", root, user);
    initdb
        .arg("-D")
        .arg(&data)
        .args([
            "--username=postgres",
            "--encoding=UTF8",
            "--locale=C",
            "--nosync",
            "--auth-local=trust",
            "--auth-host=trust",
            "--shared_buffers=128MB",
        ])
        .arg(format!("--max_connections={connections}"));
    let out = initdb
        .output()
        .map_err(|e| format!("running initdb of {}: {e}", prefix.display()))?;
    if !out.status.success() {
        return Err(format!(
            "initdb of {} failed ({}):\n{}{}",
            data.display(),
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    let settings = format!(
        "\n# qdrant2pg test cluster: throwaway data\n\
         port = {}\n\
         listen_addresses = '127.0.0.1'\n\
         unix_socket_directories = '{}'\n\
         gp_contentid = {}\n\
         fsync = off\n",
        port + instance.port_offset,
        root.join("sock").display(),
        instance.content
    );
    append(&data.join("postgresql.conf"), &settings)?;
    append(
        &data.join("internal.auto.conf"),
        &format!("gp_dbid = {}\n", instance.dbid),
    )
}

fn append(path: &Path, text: &str) -> Result<(), String> {
    OpenOptions::new()
        .append(true)
        .open(path)
        .and_then(|mut f| f.write_all(text.as_bytes()))
        .map_err(|e| format!("writing {}: {e}", path.display()))
}

/// A program of the install, run as the server user with only the environment it needs (no
/// `PG*` variable of the caller's).
fn server_command(prefix: &Path, program: &str, root: &Path, user: Option<ServerUser>) -> Command {
    let mut command = Command::new(prefix.join("bin").join(program));
    command
        .env_clear()
        .env(
            "PATH",
            format!("{}:/usr/bin:/bin", prefix.join("bin").display()),
        )
        .env("LD_LIBRARY_PATH", prefix.join("lib"))
        .env("GPHOME", prefix)
        .env("HOME", root)
        .current_dir(root)
        .stdin(Stdio::null());
    ServerUser::apply(user, &mut command);
    command
}

/// Spawns one instance's postmaster with `extra` options, logging to `<name>.log`, set to die
/// with this process.
fn spawn_instance(
    prefix: &Path,
    root: &Path,
    instance: &Instance,
    port: u16,
    user: Option<ServerUser>,
    extra: &[&str],
) -> Child {
    let (log, log_err) = append_log(&root.join(format!("{}.log", instance.name)));
    let mut cmd = server_command(prefix, "postgres", root, user);
    cmd.arg("-D")
        .arg(root.join(instance.name))
        .arg("-p")
        .arg((port + instance.port_offset).to_string())
        .args(extra)
        .stdout(log)
        .stderr(log_err);
    spawn_tied_to_this_process(cmd, libc::SIGQUIT)
        .unwrap_or_else(|e| panic!("spawning Greenplum's postgres: {e}"))
}

/// Waits until a distributed query reaches both segments (the coordinator accepts sessions a
/// little before its segments answer).
fn wait_for_segments(root: &Path, port: u16) -> Result<(), String> {
    let deadline = Instant::now() + READY_TIMEOUT;
    let config = socket_config(root, port);
    loop {
        let answer = config.connect(NoTls).and_then(|mut c| {
            c.query_one("SELECT count(*) FROM gp_dist_random('gp_id')", &[])
                .map(|row| row.get::<_, i64>(0))
        });
        match answer {
            Ok(2) => return Ok(()),
            _ if Instant::now() < deadline => thread::sleep(Duration::from_millis(200)),
            other => {
                return Err(format!(
                    "the segments did not answer within {READY_TIMEOUT:?}: {other:?}"
                ));
            }
        }
    }
}

/// Immediate shutdown of every postmaster, the coordinator (last started) first.
fn stop_all(postmasters: &mut Vec<Child>) {
    while let Some(mut child) = postmasters.pop() {
        stop_postmaster(&mut child, libc::SIGQUIT);
    }
}
