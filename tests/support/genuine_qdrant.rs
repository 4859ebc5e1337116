//! A genuine Qdrant 1.18.3 server process for the tests: the reference every flow is checked
//! against where it is installed.
//!
//! The binary is `$QDRANT_BIN`, else `target/test-servers/qdrant`, which
//! `scripts/install-test-deps.sh` unpacks from `../shared/qdrant-1.18.3` (checked against its
//! SHA-256). It is started as the real thing is: all settings by environment, on loopback and two
//! free ports, its storage and snapshots in a temporary directory, ready when `GET /readyz`
//! answers. Each test gets its own server (about 0.2 s to start, 50 MB).
//!
//! Data reaches it as a user's data would: through its gRPC API (the real `qdrant-client`) or its
//! REST API ([`GenuineQdrant::rest`]): points, snapshot uploads, and snapshots it makes itself.
//!
//! [`GenuineQdrant::kill`] is SIGKILL, a crash it recovers from on the next start (its WAL);
//! [`GenuineQdrant::restart`] serves the same storage on the same ports again. The process dies
//! with the test process (`support::spawn`), and its directory goes with the value.

use std::fs::File;
use std::io::{Read, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use crate::support::exact_json::parse_json_exactly;
use serde_json::{Value as Json, json};

use super::spawn::spawn_tied_to_this_process;

/// How long a start may take before `/readyz` answers: about 0.2 s idle, a few seconds on a
/// loaded 2-core machine or after a crash (WAL replay).
const READY_TIMEOUT: Duration = Duration::from_secs(60);
/// Binding a port another process took between our probe and the server's bind fails; we then
/// try other ports, this many times in all.
const PORT_ATTEMPTS: usize = 5;
/// REST calls in tests move at most a few snapshots; a call that hangs this long is a bug.
const REST_TIMEOUT: Duration = Duration::from_secs(300);

/// Where the genuine binary is, or why there is none.
pub fn binary() -> Result<&'static Path, &'static str> {
    static FOUND: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    FOUND
        .get_or_init(|| {
            let (path, origin) = match std::env::var_os("QDRANT_BIN") {
                Some(bin) => (PathBuf::from(bin), "QDRANT_BIN"),
                None => (
                    Path::new(env!("CARGO_MANIFEST_DIR")).join("target/test-servers/qdrant"),
                    "scripts/install-test-deps.sh, from ../shared/qdrant-1.18.3",
                ),
            };
            if path.is_file() {
                Ok(path)
            } else {
                Err(format!(
                    "no genuine Qdrant at {} ({origin})",
                    path.display()
                ))
            }
        })
        .as_ref()
        .map(PathBuf::as_path)
        .map_err(String::as_str)
}

/// A running (or killed) genuine Qdrant. Dropping it kills it and removes its directory.
pub struct GenuineQdrant {
    bin: PathBuf,
    http_port: u16,
    grpc_port: u16,
    api_key: Option<String>,
    child: Option<Child>,
    /// Storage, snapshots, the working directory and `qdrant.log`.
    dir: tempfile::TempDir,
}

impl GenuineQdrant {
    /// A server on two free ports of 127.0.0.1; every call then needs `api-key: <key>` when
    /// `api_key` is given. Panics with the server's log if it does not come up.
    pub fn start(bin: &Path, api_key: Option<&str>) -> GenuineQdrant {
        let dir = tempfile::Builder::new()
            .prefix("qdrant-genuine-")
            .tempdir()
            .unwrap_or_else(|e| panic!("genuine Qdrant: no temp dir: {e}"));
        let mut server = GenuineQdrant {
            bin: bin.to_path_buf(),
            http_port: 0,
            grpc_port: 0,
            api_key: api_key.map(str::to_owned),
            child: None,
            dir,
        };
        let mut last = String::new();
        for _ in 0..PORT_ATTEMPTS {
            (server.http_port, server.grpc_port) = (free_port(), free_port());
            match server.spawn() {
                Ok(()) => return server,
                Err(log) if log.contains("in use") => last = log,
                Err(log) => panic!("genuine Qdrant did not start:\n{log}"),
            }
        }
        panic!("genuine Qdrant found no free ports in {PORT_ATTEMPTS} attempts:\n{last}")
    }

    /// The gRPC address, `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.grpc_port)
    }

    /// The REST address, `http://127.0.0.1:PORT`.
    pub fn rest_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.http_port)
    }

    /// SIGKILL: every connection drops mid-flight, as when a host dies. Storage is kept.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Serves the same storage on the same ports again (after [`kill`](Self::kill), or killing
    /// it first).
    pub fn restart(&mut self) {
        self.kill();
        if let Err(log) = self.spawn() {
            panic!("genuine Qdrant did not come back:\n{log}");
        }
    }

    /// One REST call; panics, with the server's answer, unless it succeeds. Returns the JSON
    /// answer's `result`.
    pub fn rest(&self, method: &str, path: &str, body: Option<&Json>) -> Json {
        let url = format!("{}{path}", self.rest_url());
        let request = ureq::http::Request::builder()
            .method(method)
            .uri(&url)
            .header("content-type", "application/json");
        let request = self.with_key(request);
        let bytes = body.map(|b| b.to_string().into_bytes()).unwrap_or_default();
        let request = request.body(bytes).expect("a REST request");
        let answer = self.read_answer(&url, agent().run(request));
        // Floats read correctly rounded (serde_json's own reading is not, in this build).
        std::str::from_utf8(&answer)
            .map_err(|e| e.to_string())
            .and_then(|text| parse_json_exactly(text).map_err(|e| e.to_string()))
            .unwrap_or_else(|e| panic!("{method} {url}: the answer is not JSON: {e}"))["result"]
            .take()
    }

    /// Upserts points given as REST JSON (`{"id", "vector", "payload"}`), waiting until they
    /// are applied: values gRPC cannot carry (integers above `i64::MAX`, deep nesting) reach
    /// the server as they are.
    pub fn upsert_points(&self, collection: &str, points: Vec<Json>) {
        self.rest(
            "PUT",
            &format!("/collections/{}/points?wait=true", encode(collection)),
            Some(&json!({ "points": points })),
        );
    }

    /// Uploads a collection snapshot (`.snapshot`, or gzipped `.snapshot.gz`) as `collection`,
    /// as `POST /collections/NAME/snapshots/upload` does for a user.
    pub fn upload_snapshot(&self, collection: &str, snapshot: &Path) {
        let mut bytes = Vec::new();
        let file =
            File::open(snapshot).unwrap_or_else(|e| panic!("opening {}: {e}", snapshot.display()));
        let read = if snapshot.extension().is_some_and(|e| e == "gz") {
            flate2::read::GzDecoder::new(file).read_to_end(&mut bytes)
        } else {
            let mut file = file;
            file.read_to_end(&mut bytes)
        };
        read.unwrap_or_else(|e| panic!("reading {}: {e}", snapshot.display()));
        const BOUNDARY: &str = "qdrant2pg-test-snapshot-boundary";
        let mut body = format!(
            "--{BOUNDARY}\r\ncontent-disposition: form-data; name=\"snapshot\"; \
             filename=\"{collection}.snapshot\"\r\ncontent-type: application/octet-stream\r\n\r\n"
        )
        .into_bytes();
        body.extend_from_slice(&bytes);
        body.extend_from_slice(format!("\r\n--{BOUNDARY}--\r\n").as_bytes());
        let url = format!(
            "{}/collections/{}/snapshots/upload?wait=true&priority=snapshot",
            self.rest_url(),
            encode(collection)
        );
        let request = ureq::http::Request::builder()
            .method("POST")
            .uri(&url)
            .header(
                "content-type",
                format!("multipart/form-data; boundary={BOUNDARY}"),
            );
        let request = self.with_key(request).body(body).expect("a request");
        self.read_answer(&url, agent().run(request));
    }

    /// Has the server snapshot `collection` (`POST /collections/NAME/snapshots`) and downloads
    /// the snapshot to `to`.
    pub fn download_snapshot(&self, collection: &str, to: &Path) {
        let made = self.rest(
            "POST",
            &format!("/collections/{}/snapshots?wait=true", encode(collection)),
            None,
        );
        let name = made["name"]
            .as_str()
            .unwrap_or_else(|| panic!("snapshot of {collection}: no name in {made}"));
        let url = format!(
            "{}/collections/{}/snapshots/{}",
            self.rest_url(),
            encode(collection),
            encode(name)
        );
        let request = ureq::http::Request::builder().method("GET").uri(&url);
        let request = self.with_key(request).body(()).expect("a request");
        let mut response = agent()
            .run(request)
            .unwrap_or_else(|e| panic!("GET {url}: {e}"));
        assert!(
            response.status().is_success(),
            "GET {url}: {}",
            response.status()
        );
        let mut file =
            File::create(to).unwrap_or_else(|e| panic!("creating {}: {e}", to.display()));
        std::io::copy(&mut response.body_mut().as_reader(), &mut file)
            .and_then(|_| file.flush())
            .unwrap_or_else(|e| panic!("downloading {url} to {}: {e}", to.display()));
    }

    fn with_key(&self, request: ureq::http::request::Builder) -> ureq::http::request::Builder {
        match &self.api_key {
            Some(key) => request.header("api-key", key),
            None => request,
        }
    }

    /// The body of a successful answer; panics with the server's words otherwise.
    fn read_answer(
        &self,
        url: &str,
        answer: Result<ureq::http::Response<ureq::Body>, ureq::Error>,
    ) -> Vec<u8> {
        let mut response = answer.unwrap_or_else(|e| panic!("{url}: {e}"));
        let status = response.status();
        let body = response
            .body_mut()
            .with_config()
            .limit(u64::MAX)
            .read_to_vec()
            .unwrap_or_else(|e| panic!("{url}: reading the answer: {e}"));
        assert!(
            status.is_success(),
            "{url}: {status}: {}",
            String::from_utf8_lossy(&body)
        );
        body
    }

    /// Starts the process on the chosen ports and waits until it is ready; on failure, kills it
    /// and returns why, with its log.
    fn spawn(&mut self) -> Result<(), String> {
        let root = self.dir.path();
        let log_path = root.join("qdrant.log");
        let log = File::options()
            .create(true)
            .append(true)
            .open(&log_path)
            .map_err(|e| format!("opening {}: {e}", log_path.display()))?;
        let start_of_log = log.metadata().map_or(0, |m| m.len());
        let log_err = log.try_clone().map_err(|e| e.to_string())?;
        let mut cmd = Command::new(&self.bin);
        cmd.current_dir(root)
            .env("QDRANT__SERVICE__HOST", "127.0.0.1")
            .env("QDRANT__SERVICE__HTTP_PORT", self.http_port.to_string())
            .env("QDRANT__SERVICE__GRPC_PORT", self.grpc_port.to_string())
            .env("QDRANT__STORAGE__STORAGE_PATH", root.join("storage"))
            .env("QDRANT__STORAGE__SNAPSHOTS_PATH", root.join("snapshots"))
            .env("QDRANT__TELEMETRY_DISABLED", "true")
            .env_remove("QDRANT__SERVICE__API_KEY")
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log_err);
        if let Some(key) = &self.api_key {
            cmd.env("QDRANT__SERVICE__API_KEY", key);
        }
        let mut child = spawn_tied_to_this_process(cmd, libc::SIGKILL)
            .map_err(|e| format!("spawning {}: {e}", self.bin.display()))?;
        let this_start = || {
            let text = std::fs::read(&log_path).unwrap_or_default();
            String::from_utf8_lossy(&text[(start_of_log as usize).min(text.len())..]).into_owned()
        };
        let ready = format!("{}/readyz", self.rest_url());
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            if let Ok(Some(status)) = child.try_wait() {
                return Err(format!("qdrant exited ({status}):\n{}", this_start()));
            }
            // `/readyz` can answer before the gRPC listener is bound: wait for both.
            let grpc = std::net::SocketAddr::from(([127, 0, 0, 1], self.grpc_port));
            if agent()
                .get(&ready)
                .call()
                .is_ok_and(|r| r.status().is_success())
                && std::net::TcpStream::connect_timeout(&grpc, Duration::from_secs(1)).is_ok()
            {
                // Another process (a test elsewhere on this machine) may have taken a port
                // between our probe and the server's bind, and answered for it.
                let ours = [self.http_port, self.grpc_port]
                    .iter()
                    .all(|&port| listens_on(child.id(), port));
                if ours {
                    self.child = Some(child);
                    return Ok(());
                }
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!(
                    "a port was in use by another process:\n{}",
                    this_start()
                ));
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!(
                    "not ready after {READY_TIMEOUT:?}:\n{}",
                    this_start()
                ));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for GenuineQdrant {
    fn drop(&mut self) {
        self.kill();
    }
}

/// One HTTP agent for every test: statuses are checked by the caller, not turned into errors.
fn agent() -> &'static ureq::Agent {
    static AGENT: OnceLock<ureq::Agent> = OnceLock::new();
    AGENT.get_or_init(|| {
        ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(REST_TIMEOUT))
            .build()
            .into()
    })
}

/// A path segment, percent-encoded (collection names may hold anything).
pub fn encode(segment: &str) -> String {
    let mut out = String::new();
    for byte in segment.bytes() {
        if byte.is_ascii_alphanumeric() || b"-._~".contains(&byte) {
            out.push(byte as char);
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

/// Whether process `pid` holds a listening TCP socket on `port` (from `/proc`: the socket
/// inodes of its descriptors against the kernel's table of listening sockets).
fn listens_on(pid: u32, port: u16) -> bool {
    let Ok(fds) = std::fs::read_dir(format!("/proc/{pid}/fd")) else {
        return false;
    };
    let inodes: std::collections::HashSet<String> = fds
        .flatten()
        .filter_map(|fd| std::fs::read_link(fd.path()).ok())
        .filter_map(|link| {
            let link = link.to_string_lossy().into_owned();
            Some(link.strip_prefix("socket:[")?.strip_suffix(']')?.to_owned())
        })
        .collect();
    let local_port = format!(":{port:04X}");
    ["/proc/net/tcp", "/proc/net/tcp6"].iter().any(|table| {
        std::fs::read_to_string(table).is_ok_and(|text| {
            text.lines().skip(1).any(|line| {
                let fields: Vec<&str> = line.split_whitespace().collect();
                // local_address, state (0A: LISTEN), inode
                fields.len() > 9
                    && fields[1].ends_with(&local_port)
                    && fields[3] == "0A"
                    && inodes.contains(fields[9])
            })
        })
    })
}

/// A port on 127.0.0.1 that was free a moment ago.
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap_or_else(|e| panic!("finding a free port: {e}"))
}
