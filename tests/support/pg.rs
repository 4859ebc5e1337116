//! Throwaway PostgreSQL clusters for the integration tests.
//!
//! Two servers: PostgreSQL 15 from Debian's packages (`/usr/lib/postgresql/15/bin`), and
//! PostgreSQL 18.1 with pgvector 0.8.5, unpacked by `scripts/install-test-deps.sh` into
//! `target/test-servers/pg18` (its binaries find their ICU libraries through `LD_LIBRARY_PATH`).
//! Each test process shares one cluster of each ([`PgCluster::pg15`], [`PgCluster::pg18_vector`])
//! and gives every test its own database ([`PgCluster::create_database`]), so tests run in
//! parallel threads without seeing each other. Tests that restart a server or need password
//! authentication start a private cluster ([`PgCluster::start`]).
//!
//! A cluster lives in a fresh directory (data, unix socket, server log) and listens on a free port
//! of 127.0.0.1. It is tuned for throwaway data: no fsync, no full-page writes.
//!
//! No server may outlive the test process, however the process ends:
//! - a private cluster is stopped (immediate mode) and its directory removed when it is dropped;
//! - the shared clusters live in statics, which never drop, so an `atexit` handler stops them and
//!   removes their directories when the test binary exits normally, pass or fail;
//! - if the process is killed outright, the kernel sends the postmaster `SIGQUIT` (immediate
//!   shutdown) through `PR_SET_PDEATHSIG`. That signal fires when the *thread* that forked the
//!   child exits, and libtest runs each test on its own short-lived thread, so every postmaster
//!   is forked by one spawner thread that lives as long as the process. Directories left behind
//!   by a killed process are swept by the next test process.
//!
//! `QDRANT2PG_KEEP_PG=1` keeps the directories, server logs included, for a post-mortem.
//!
//! Tests usually run as root (CI does); PostgreSQL refuses to, so the servers then run as the
//! `postgres` system user.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::net::TcpListener;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard, Once, OnceLock, PoisonError};
use std::thread;
use std::time::{Duration, Instant};

use postgres::NoTls;

use super::spawn::spawn_tied_to_this_process;

/// How long a server may take to accept connections after it is spawned. A cold start on a busy
/// 2-core CI machine takes about a second; crash recovery after an immediate stop a few more.
pub(super) const READY_TIMEOUT: Duration = Duration::from_secs(60);

/// Set, this keeps each cluster's directory (data and `server.log`) after the server stops, for
/// a post-mortem. A kept directory holds [`KEPT`], and sweeps leave it alone.
pub(super) const KEEP_VAR: &str = "QDRANT2PG_KEEP_PG";
pub(super) const KEPT: &str = "KEPT";

/// Starting on a port that another process grabbed between our probe and the server's bind fails;
/// we then try another port, this many times in all.
pub(super) const PORT_ATTEMPTS: usize = 5;

/// Which server binaries a cluster runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PgVersion {
    /// Debian's PostgreSQL 15; override the bin dir with `QDRANT2PG_PG15_BIN`.
    Pg15,
    /// PostgreSQL 18.1 with pgvector 0.8.5, from `scripts/install-test-deps.sh`; override the
    /// bin dir with `QDRANT2PG_PG18_BIN`.
    Pg18Vector,
}

/// How clients over TCP authenticate. The unix socket, which only the harness uses, always trusts.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Auth {
    Trust,
    /// `scram-sha-256` with this password for the `postgres` user.
    Scram(String),
}

/// One running PostgreSQL cluster, owned by the test process.
pub struct PgCluster {
    version: PgVersion,
    bin: Binaries,
    /// Holds `data/`, `sock/` and `server.log`; removed when the cluster stops.
    root: PathBuf,
    port: u16,
    auth: Auth,
    server_user: Option<ServerUser>,
    /// The postmaster; `None` once stopped.
    postmaster: Mutex<Option<Child>>,
    next_db: AtomicU64,
}

/// A fresh database on a cluster. It is not dropped: the whole cluster is thrown away at exit.
pub struct TestDb {
    pub name: String,
    port: u16,
    password: Option<String>,
}

impl PgCluster {
    /// The PostgreSQL 15 cluster shared by every test of this process.
    pub fn pg15() -> &'static PgCluster {
        static CLUSTER: OnceLock<PgCluster> = OnceLock::new();
        shared(&CLUSTER, PgVersion::Pg15)
    }

    /// The PostgreSQL 18 + pgvector cluster shared by every test of this process.
    pub fn pg18_vector() -> &'static PgCluster {
        static CLUSTER: OnceLock<PgCluster> = OnceLock::new();
        shared(&CLUSTER, PgVersion::Pg18Vector)
    }

    /// A private cluster, stopped and deleted on drop. Panics, with the server's own output, if
    /// it cannot be started.
    pub fn start(version: PgVersion, auth: Auth) -> PgCluster {
        let bin = Binaries::of(version);
        let server_user = ServerUser::for_this_process();
        let root = scratch_dir(&format!("{version:?}"), server_user);
        init_data_dir(&bin, &root, &auth, server_user);
        let mut last_log = String::new();
        for _ in 0..PORT_ATTEMPTS {
            let port = free_port();
            // The log of a failed attempt must not be mistaken for this one's.
            let _ = fs::remove_file(root.join("server.log"));
            let mut child = spawn_postmaster(&bin, &root, port, server_user);
            let log = root.join("server.log");
            match wait_ready(&socket_config(&root, port), &log, &mut child) {
                Ok(()) => {
                    return PgCluster {
                        version,
                        bin,
                        root,
                        port,
                        auth,
                        server_user,
                        postmaster: Mutex::new(Some(child)),
                        next_db: AtomicU64::new(0),
                    };
                }
                Err(log) if log.contains("could not bind") => last_log = log,
                Err(log) => {
                    stop_postmaster(&mut child, libc::SIGQUIT);
                    panic!(
                        "{version:?} server in {} did not start:\n{log}",
                        root.display()
                    )
                }
            }
        }
        panic!("{version:?} server found no free port in {PORT_ATTEMPTS} attempts:\n{last_log}")
    }

    /// A new, empty database with a name unique on this cluster and telling which test made it.
    pub fn create_database(&self) -> TestDb {
        let name = create_database(
            &mut self.admin(),
            &self.next_db,
            &format!("{:?}", self.version),
        );
        TestDb {
            name,
            port: self.port,
            password: self.password().map(str::to_owned),
        }
    }

    /// Restarts the server in fast mode (as `pg_ctl restart -m fast`): sessions are cut, committed
    /// data survives, the port stays the same.
    pub fn restart(&self) {
        self.restart_after(libc::SIGINT);
    }

    /// Crashes the server (`pg_ctl stop -m immediate`: no shutdown checkpoint, WAL still in the
    /// server's buffers is lost) and starts it again, through crash recovery, on the same port.
    pub fn crash_and_restart(&self) {
        self.restart_after(libc::SIGQUIT);
    }

    /// Stops the server with `signal` and starts it again on the same port.
    fn restart_after(&self, signal: i32) {
        let mut postmaster = self.lock();
        if let Some(child) = postmaster.as_mut() {
            stop_postmaster(child, signal);
        }
        let child = postmaster.insert(spawn_postmaster(
            &self.bin,
            &self.root,
            self.port,
            self.server_user,
        ));
        let log = self.root.join("server.log");
        if let Err(log) = wait_ready(&socket_config(&self.root, self.port), &log, child) {
            panic!(
                "{:?} server did not come back after a restart:\n{log}",
                self.version
            );
        }
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn host(&self) -> String {
        "127.0.0.1".to_owned()
    }

    /// `psql`, `pg_dump` or another program of this server's version, ready to run.
    pub fn program(&self, name: &str) -> Command {
        self.bin.command(name)
    }

    /// The `postgres` user's password over TCP, if the cluster was started with one.
    pub fn password(&self) -> Option<&str> {
        match &self.auth {
            Auth::Trust => None,
            Auth::Scram(password) => Some(password),
        }
    }

    /// Stops the server (immediate mode, like `pg_ctl stop -m immediate`) and deletes the
    /// cluster's directory. Idempotent.
    fn shutdown(&self) {
        if let Some(mut child) = self.lock().take() {
            stop_postmaster(&mut child, libc::SIGQUIT);
        }
        remove_unless_kept(&self.root, &format!("{:?}", self.version));
    }

    fn lock(&self) -> MutexGuard<'_, Option<Child>> {
        // A test that panicked while holding the lock leaves the child handle intact.
        self.postmaster
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// A superuser session over the private unix socket, where authentication is `trust`.
    fn admin(&self) -> postgres::Client {
        socket_config(&self.root, self.port)
            .connect(NoTls)
            .unwrap_or_else(|e| panic!("admin connection to {:?}: {e}", self.version))
    }
}

impl Drop for PgCluster {
    fn drop(&mut self) {
        self.shutdown();
    }
}

impl StopAtExit for PgCluster {
    fn stop_at_exit(&self) {
        self.shutdown();
    }
}

impl TestDb {
    /// A database `name` of a server on 127.0.0.1:`port` whose TCP clients need no password.
    pub(super) fn trusted(name: String, port: u16) -> TestDb {
        TestDb {
            name,
            port,
            password: None,
        }
    }

    /// A libpq-style connection string for this database, over TCP; it carries the password
    /// when the cluster has one.
    pub fn dsn(&self) -> String {
        let mut dsn = format!(
            "host=127.0.0.1 port={} user=postgres dbname={}",
            self.port, self.name
        );
        if let Some(password) = &self.password {
            // libpq's key=value syntax: quoted, with `\` and `'` escaped.
            dsn.push_str(" password='");
            for c in password.chars() {
                if c == '\\' || c == '\'' {
                    dsn.push('\\');
                }
                dsn.push(c);
            }
            dsn.push('\'');
        }
        dsn
    }

    /// A session on this database. Blocking: call it outside any tokio runtime.
    pub fn client(&self) -> postgres::Client {
        postgres::Client::connect(&self.dsn(), NoTls)
            .unwrap_or_else(|e| panic!("connecting to test database {}: {e:?}", self.name))
    }
}

/// The shared cluster in `cell`, started on first use, stopped at process exit.
fn shared(cell: &'static OnceLock<PgCluster>, version: PgVersion) -> &'static PgCluster {
    let mut started = false;
    let cluster = cell.get_or_init(|| {
        started = true;
        PgCluster::start(version, Auth::Trust)
    });
    if started {
        stop_at_exit(cluster);
    }
    cluster
}

/// A server shared by every test of the process, which lives in a static (statics never drop).
pub(super) trait StopAtExit: Sync {
    /// Stops the server and removes its directory; idempotent.
    fn stop_at_exit(&self);
}

/// Has `server` stopped when the test binary exits normally, pass or fail.
pub(super) fn stop_at_exit(server: &'static dyn StopAtExit) {
    static AT_EXIT: Once = Once::new();
    static SERVERS: Mutex<Vec<&'static dyn StopAtExit>> = Mutex::new(Vec::new());

    extern "C" fn stop_shared_servers() {
        for server in SERVERS
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
        {
            server.stop_at_exit();
        }
    }

    AT_EXIT.call_once(|| {
        // SAFETY: registers a plain `extern "C" fn` taking no arguments, as atexit expects.
        if unsafe { libc::atexit(stop_shared_servers) } != 0 {
            panic!("atexit refused the shared-server cleanup handler");
        }
    });
    SERVERS
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .push(server);
}

/// Deletes a stopped server's directory, unless [`KEEP_VAR`] asks to keep it for a post-mortem.
pub(super) fn remove_unless_kept(root: &Path, what: &str) {
    if std::env::var_os(KEEP_VAR).is_some() && fs::write(root.join(KEPT), b"").is_ok() {
        eprintln!(
            "{KEEP_VAR}: kept the {what} cluster in {} (not swept: delete it when done)",
            root.display()
        );
        return;
    }
    // Best effort: a directory that resists is swept by the next test process.
    let _ = fs::remove_dir_all(root);
}

/// Where a version's server programs are, and the libraries they need besides the system's.
#[derive(Clone, Debug)]
struct Binaries {
    dir: PathBuf,
    /// pg0's PostgreSQL 18 finds its bundled ICU only through `LD_LIBRARY_PATH` (its RUNPATH
    /// covers the programs' own dependencies, not those of the libraries they load).
    libs: Option<PathBuf>,
}

impl Binaries {
    /// The binaries of `version`, or a panic that says how to get them.
    fn of(version: PgVersion) -> Binaries {
        let (var, default, remedy) = match version {
            PgVersion::Pg15 => (
                "QDRANT2PG_PG15_BIN",
                PathBuf::from("/usr/lib/postgresql/15/bin"),
                "install Debian's postgresql-15 (apt-get install postgresql-15)",
            ),
            PgVersion::Pg18Vector => (
                "QDRANT2PG_PG18_BIN",
                Path::new(env!("CARGO_MANIFEST_DIR")).join("target/test-servers/pg18/bin"),
                "run scripts/install-test-deps.sh",
            ),
        };
        let dir = std::env::var_os(var).map(PathBuf::from).unwrap_or(default);
        // Resolved, because the server user may reach the files only through their real path.
        let dir = match dir.join("postgres").canonicalize() {
            Ok(postgres) if postgres.is_file() => postgres.parent().map_or(dir, Path::to_path_buf),
            _ => panic!(
                "{version:?} server binaries not found in {} ({var} overrides it): {remedy}",
                dir.display()
            ),
        };
        let libs = match version {
            PgVersion::Pg15 => None,
            PgVersion::Pg18Vector => dir.parent().map(|tree| tree.join("lib")),
        };
        Binaries { dir, libs }
    }

    /// `program` of this server, with the environment it needs.
    fn command(&self, program: &str) -> Command {
        let mut command = Command::new(self.dir.join(program));
        if let Some(libs) = &self.libs {
            command.env("LD_LIBRARY_PATH", libs);
        }
        command
    }
}

/// The unprivileged user servers run as when the tests run as root.
#[derive(Clone, Copy, Debug)]
pub(super) struct ServerUser {
    uid: u32,
    gid: u32,
}

impl ServerUser {
    pub(super) fn for_this_process() -> Option<ServerUser> {
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } != 0 {
            return None;
        }
        static POSTGRES: OnceLock<ServerUser> = OnceLock::new();
        Some(*POSTGRES.get_or_init(|| {
            // SAFETY: getpwnam reads a NUL-terminated name; the result is copied out at once, and
            // this runs once per process, under the OnceLock.
            let entry = unsafe { libc::getpwnam(c"postgres".as_ptr()) };
            if entry.is_null() {
                panic!("tests run as root need the `postgres` system user to run servers as");
            }
            // SAFETY: non-null, so it points at a valid passwd record.
            let entry = unsafe { &*entry };
            ServerUser {
                uid: entry.pw_uid,
                gid: entry.pw_gid,
            }
        }))
    }

    pub(super) fn apply(user: Option<ServerUser>, cmd: &mut Command) {
        if let Some(user) = user {
            cmd.uid(user.uid).gid(user.gid);
        }
    }

    pub(super) fn chown(user: Option<ServerUser>, path: &Path) {
        if let Some(user) = user {
            std::os::unix::fs::chown(path, Some(user.uid), Some(user.gid))
                .unwrap_or_else(|e| panic!("chown {} to postgres: {e}", path.display()));
        }
    }
}

/// A new directory for one cluster, owned by the server user, under a per-user base that
/// is swept of directories whose test process has died.
pub(super) fn scratch_dir(label: &str, user: Option<ServerUser>) -> PathBuf {
    static SWEEP: Once = Once::new();
    static NEXT: AtomicU64 = AtomicU64::new(0);
    // Per user: another user's base is not ours to write in or sweep.
    // SAFETY: geteuid has no preconditions.
    let base =
        std::env::temp_dir().join(format!("qdrant2pg-test-pg-{}", unsafe { libc::geteuid() }));
    fs::create_dir_all(&base).unwrap_or_else(|e| panic!("creating {}: {e}", base.display()));
    SWEEP.call_once(|| sweep_dead(&base));
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    let root = base.join(format!("{}-{n}-{label}", std::process::id()));
    // A leftover of an earlier process with our pid; it is dead, as its pid is ours now.
    let _ = fs::remove_dir_all(&root);
    fs::create_dir(&root).unwrap_or_else(|e| panic!("creating {}: {e}", root.display()));
    fs::create_dir(root.join("sock"))
        .unwrap_or_else(|e| panic!("creating {}/sock: {e}", root.display()));
    ServerUser::chown(user, &root);
    ServerUser::chown(user, &root.join("sock"));
    root
}

/// Removes the cluster directories of test processes that no longer exist (killed before their
/// exit handlers ran). Best effort: what fails now is retried by the next process.
fn sweep_dead(base: &Path) {
    let Ok(entries) = fs::read_dir(base) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let pid = name
            .to_str()
            .and_then(|n| n.split('-').next())
            .and_then(|p| p.parse().ok());
        let dead = pid.is_some_and(|pid: i32| {
            // SAFETY: signal 0 only checks that the pid exists.
            let status = unsafe { libc::kill(pid, 0) };
            status == -1 && io::Error::last_os_error().raw_os_error() == Some(libc::ESRCH)
        });
        if dead && !entry.path().join(KEPT).exists() {
            let _ = fs::remove_dir_all(entry.path());
        }
    }
}

/// `initdb` plus the settings of a throwaway test server.
fn init_data_dir(bin: &Binaries, root: &Path, auth: &Auth, user: Option<ServerUser>) {
    let data = root.join("data");
    let mut initdb = bin.command("initdb");
    initdb
        .arg("--pgdata")
        .arg(&data)
        .args([
            "--username=postgres",
            "--encoding=UTF8",
            "--no-locale",
            "--no-sync",
        ])
        .arg("--auth-local=trust")
        .current_dir(root);
    match auth {
        Auth::Trust => {
            initdb.arg("--auth-host=trust");
        }
        Auth::Scram(password) => {
            let pwfile = root.join("pwfile");
            fs::write(&pwfile, password)
                .unwrap_or_else(|e| panic!("writing {}: {e}", pwfile.display()));
            ServerUser::chown(user, &pwfile);
            initdb
                .arg("--auth-host=scram-sha-256")
                .arg("--pwfile")
                .arg(&pwfile);
        }
    }
    ServerUser::apply(user, &mut initdb);
    let out = initdb
        .output()
        .unwrap_or_else(|e| panic!("running {}: {e}", bin.dir.display()));
    if !out.status.success() {
        panic!(
            "initdb in {} failed ({}):\n{}{}",
            data.display(),
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let _ = fs::remove_file(root.join("pwfile"));
    let settings = format!(
        "\n# qdrant2pg test server: throwaway data, many parallel sessions\n\
         listen_addresses = '127.0.0.1'\n\
         unix_socket_directories = '{}'\n\
         max_connections = 300\n\
         shared_buffers = 128MB\n\
         fsync = off\n\
         synchronous_commit = off\n\
         full_page_writes = off\n\
         max_wal_size = 2GB\n",
        root.join("sock").display()
    );
    let conf = data.join("postgresql.conf");
    OpenOptions::new()
        .append(true)
        .open(&conf)
        .and_then(|mut f| f.write_all(settings.as_bytes()))
        .unwrap_or_else(|e| panic!("writing {}: {e}", conf.display()));
}

/// Spawns the postmaster on `port`, logging to `server.log`, set to die with this process.
fn spawn_postmaster(bin: &Binaries, root: &Path, port: u16, user: Option<ServerUser>) -> Child {
    let (log, log_err) = append_log(&root.join("server.log"));
    let mut cmd = bin.command("postgres");
    cmd.arg("-D")
        .arg(root.join("data"))
        .arg("-p")
        .arg(port.to_string())
        .current_dir(root)
        .stdin(Stdio::null())
        .stdout(log)
        .stderr(log_err);
    ServerUser::apply(user, &mut cmd);
    spawn_tied_to_this_process(cmd, libc::SIGQUIT)
        .unwrap_or_else(|e| panic!("spawning {}: {e}", bin.dir.display()))
}

/// `path` opened for appending, twice: a server's stdout and stderr.
pub(super) fn append_log(path: &Path) -> (File, File) {
    let log = File::options()
        .create(true)
        .append(true)
        .open(path)
        .unwrap_or_else(|e| panic!("opening {}: {e}", path.display()));
    let log_err = log
        .try_clone()
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    (log, log_err)
}

/// Signals the postmaster (`SIGINT` fast, `SIGQUIT` immediate shutdown) and reaps it.
pub(super) fn stop_postmaster(child: &mut Child, signal: i32) {
    if let Ok(None) = child.try_wait() {
        if let Ok(pid) = i32::try_from(child.id()) {
            // SAFETY: the pid is our own unreaped child, so it cannot have been reused.
            unsafe { libc::kill(pid, signal) };
        }
        // An error here means the child was already reaped: nothing left to stop.
        let _ = child.wait();
    }
}

/// Waits until the server accepts sessions through `config`; on failure returns why, with the
/// server's `log`.
pub(super) fn wait_ready(
    config: &postgres::Config,
    log: &Path,
    postmaster: &mut Child,
) -> Result<(), String> {
    let deadline = Instant::now() + READY_TIMEOUT;
    let log = || fs::read_to_string(log).unwrap_or_else(|e| format!("(no log: {e})"));
    loop {
        match postmaster.try_wait() {
            Ok(Some(status)) => return Err(format!("postmaster exited ({status}):\n{}", log())),
            Ok(None) => {}
            Err(e) => return Err(format!("waiting for the postmaster: {e}")),
        }
        match config.connect(NoTls) {
            Ok(_) => return Ok(()),
            Err(_) if Instant::now() < deadline => thread::sleep(Duration::from_millis(50)),
            Err(e) => return Err(format!("not ready after {READY_TIMEOUT:?}: {e}\n{}", log())),
        }
    }
}

/// A port on 127.0.0.1 that was free a moment ago.
pub(super) fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap_or_else(|e| panic!("finding a free port: {e}"))
}

/// The harness's own connection settings: unix socket, `trust`, database `postgres`.
pub(super) fn socket_config(root: &Path, port: u16) -> postgres::Config {
    let mut config = postgres::Config::new();
    config
        .host_path(root.join("sock"))
        .port(port)
        .user("postgres")
        .dbname("postgres")
        .connect_timeout(Duration::from_secs(5));
    config
}

/// A new database on the server `admin` is connected to, named by [`database_name`] with the
/// next number of `counter`; `what` names the server in a failure.
pub(super) fn create_database(
    admin: &mut postgres::Client,
    counter: &AtomicU64,
    what: &str,
) -> String {
    let n = counter.fetch_add(1, Ordering::Relaxed);
    let name = database_name(n, thread::current().name().unwrap_or("test"));
    admin
        .batch_execute(&format!("CREATE DATABASE \"{name}\""))
        .unwrap_or_else(|e| panic!("creating database {name} on {what}: {e}"));
    name
}

/// `t<n>_<test path>`: unique per cluster, telling in `\\l` which test made it, within
/// PostgreSQL's 63-byte identifiers.
fn database_name(n: u64, test: &str) -> String {
    let mut name = format!("t{n}_");
    name.extend(test.chars().map(|c| {
        if c.is_ascii_alphanumeric() {
            c.to_ascii_lowercase()
        } else {
            '_'
        }
    }));
    name.truncate(63);
    name
}
