//! Greenplum's parallel load path: the segments pull an export file from `gpfdist` through a
//! readable external table, instead of every row passing through the coordinator's COPY.
//!
//! One unit is one whole file that the ledger does not mention yet. In ONE transaction: a
//! temporary external table over the file's URL, `INSERT INTO t (cols) SELECT cols FROM it`, the
//! row count checked against the scan's, the ledger row — the span `[0, size)` with the file's
//! xxh3, which the import's scan checked against the manifest just before — and commit. So the
//! ledger's exactly-once story holds unchanged: a kill -9 mid-INSERT rolls the rows and the
//! ledger row back together, and a re-run skips the file; a file that a COPY run loaded in part
//! has its rest loaded through COPY.
//!
//! Each loading connection runs its own `gpfdist` (several servers feed the segments in
//! parallel, as Greenplum's docs advise). It serves a private directory holding one link, to the
//! file being loaded, under a plain name, so that any file name makes a valid URL and nothing
//! else of the disk is served. Its `-m` (the longest row it passes on) follows the longest line
//! of the file, and it is restarted for a file with longer lines. The process is tied to ours
//! (`PR_SET_PDEATHSIG`): an import killed outright leaves no server behind.
//!
//! The segments connect to `--gpfdist-address` (default: this host's address on its route to
//! the coordinator, which is right where the segments share the coordinator's network) on
//! `--gpfdist-port` + the connection's number (default: free ports); a firewall between them
//! and this host must let those ports through.

use std::fmt::Write as _;
use std::net::{IpAddr, ToSocketAddrs, UdpSocket};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use postgres::Client;

use crate::postgres::ident::{qualified, quote_ident, quote_literal};
use crate::postgres::ledger::{Ledger, LedgerEntry};
use crate::sink::copy::{CopyError, CopyTarget, ErrorPosition, Fence, commit_unit, located_error};

/// gpfdist's own bounds on `-m`: 32 KiB (its default) to 256 MiB.
const MIN_LINE: u64 = 32 << 10;
pub const MAX_LINE: u64 = 256 << 20;
/// How long a starting gpfdist may take to accept connections.
const READY_TIMEOUT: Duration = Duration::from_secs(10);
/// Starting on a free port that another process took meanwhile fails; so many tries in all.
const PORT_ATTEMPTS: usize = 5;
/// The temporary external table of a loading session (one unit at a time).
const EXTERNAL_TABLE: &str = "qdrant2pg_unit";

/// The gpfdist path could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum GpfdistError {
    #[error(
        "no gpfdist program found on PATH or in $GPHOME/bin: pass --gpfdist PATH (it ships with \
         Greenplum's server and loader tools)"
    )]
    NotFound,
    #[error("--gpfdist {0} is not a file")]
    NotAFile(PathBuf),
    #[error(
        "cannot tell which address the segments reach this host at (the route to the \
         coordinator {coordinator}): pass --gpfdist-address"
    )]
    Address {
        coordinator: String,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot prepare the directory gpfdist serves")]
    Directory(#[source] std::io::Error),
    #[error("cannot start {program} on port {port}")]
    Spawn {
        program: PathBuf,
        port: u16,
        #[source]
        source: std::io::Error,
    },
    #[error("{program} did not start serving on port {port}: {log}")]
    NotServing {
        program: PathBuf,
        port: u16,
        log: String,
    },
    #[error(
        "{path}: a line of {bytes} bytes is longer than gpfdist passes on (256 MiB); import \
         this collection with --via copy"
    )]
    LineTooLong { path: PathBuf, bytes: u64 },
}

/// What every loading connection's gpfdist shares.
#[derive(Clone, Debug)]
pub struct GpfdistSettings {
    program: PathBuf,
    /// Host part of the URLs (an IPv6 address in brackets).
    address: String,
    first_port: Option<u16>,
}

impl GpfdistSettings {
    /// The program and the address to serve at, from the flags; `coordinator` is the target's
    /// first TCP host and port, for the default address.
    pub fn resolve(
        program: Option<&Path>,
        address: Option<&str>,
        first_port: Option<u16>,
        coordinator: Option<(String, u16)>,
    ) -> Result<GpfdistSettings, GpfdistError> {
        let program = match program {
            Some(path) if path.is_file() => path.to_owned(),
            Some(path) => return Err(GpfdistError::NotAFile(path.to_owned())),
            None => find_program().ok_or(GpfdistError::NotFound)?,
        };
        let address = match address {
            Some(address) => address.to_owned(),
            None => route_address(coordinator)?.to_string(),
        };
        let address = if address.contains(':') && !address.starts_with('[') {
            format!("[{address}]")
        } else {
            address
        };
        Ok(GpfdistSettings {
            program,
            address,
            first_port,
        })
    }
}

/// `gpfdist` on `PATH`, else in `$GPHOME/bin`.
fn find_program() -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(std::env::var_os("GPHOME").map(|home| Path::new(&home).join("bin")))
        .map(|dir| dir.join("gpfdist"))
        .find(|candidate| candidate.is_file())
}

/// This host's address on its route to the coordinator (a UDP `connect` sends nothing; it only
/// asks the kernel which interface it would use). A coordinator on a unix socket is local.
fn route_address(coordinator: Option<(String, u16)>) -> Result<IpAddr, GpfdistError> {
    let Some((host, port)) = coordinator else {
        return Ok(IpAddr::from([127, 0, 0, 1]));
    };
    let error = |source| GpfdistError::Address {
        coordinator: format!("{host}:{port}"),
        source,
    };
    let peer = (host.as_str(), port)
        .to_socket_addrs()
        .map_err(error)?
        .next()
        .ok_or_else(|| error(std::io::Error::other("the name resolves to no address")))?;
    let local = if peer.is_ipv4() {
        "0.0.0.0:0"
    } else {
        "[::]:0"
    };
    let socket = UdpSocket::bind(local).map_err(error)?;
    socket.connect(peer).map_err(error)?;
    Ok(socket.local_addr().map_err(error)?.ip())
}

/// One loading connection's gpfdist, stopped on drop.
pub struct GpfdistServer {
    settings: GpfdistSettings,
    index: u16,
    child: Child,
    port: u16,
    /// The `-m` it runs with.
    max_line: u64,
    /// Holds `serve/`, the directory it serves (one link at a time), and its log.
    dir: tempfile::TempDir,
    /// Links made so far, for fresh names.
    served: u64,
}

impl GpfdistServer {
    /// A server for connection `index` passing on lines of up to `longest_line` bytes.
    pub fn start(
        settings: &GpfdistSettings,
        index: u16,
        longest_line: u64,
    ) -> Result<GpfdistServer, GpfdistError> {
        let dir = tempfile::Builder::new()
            .prefix("qdrant2pg-gpfdist-")
            .tempdir()
            .map_err(GpfdistError::Directory)?;
        std::fs::create_dir(dir.path().join("serve")).map_err(GpfdistError::Directory)?;
        let max_line = longest_line.next_power_of_two().clamp(MIN_LINE, MAX_LINE);
        let attempts = if settings.first_port.is_some() {
            1
        } else {
            PORT_ATTEMPTS
        };
        let mut last = None;
        for _ in 0..attempts {
            let port = match settings.first_port {
                Some(first) => first.saturating_add(index),
                None => free_port().map_err(GpfdistError::Directory)?,
            };
            match spawn(settings, dir.path(), port, max_line) {
                Ok(child) => {
                    return Ok(GpfdistServer {
                        settings: settings.clone(),
                        index,
                        child,
                        port,
                        max_line,
                        dir,
                        served: 0,
                    });
                }
                Err(e) => last = Some(e),
            }
        }
        Err(last.unwrap_or(GpfdistError::NotFound))
    }

    /// The URL of `file` for the segments, the file being linked into the served directory
    /// under a fresh plain name (the previous link goes). Restarts the server first when the
    /// file's `longest_line` exceeds its `-m`.
    pub fn serve(&mut self, file: &Path, longest_line: u64) -> Result<String, GpfdistError> {
        if longest_line > MAX_LINE {
            return Err(GpfdistError::LineTooLong {
                path: file.to_path_buf(),
                bytes: longest_line,
            });
        }
        if longest_line > self.max_line {
            *self = GpfdistServer::start(&self.settings, self.index, longest_line)?;
        }
        let serve = self.dir.path().join("serve");
        let _ = std::fs::remove_file(serve.join(format!("{}.csv", self.served)));
        self.served += 1;
        let name = format!("{}.csv", self.served);
        let target = std::path::absolute(file).map_err(GpfdistError::Directory)?;
        std::os::unix::fs::symlink(target, serve.join(&name)).map_err(GpfdistError::Directory)?;
        Ok(format!(
            "gpfdist://{}:{}/{name}",
            self.settings.address, self.port
        ))
    }
}

impl Drop for GpfdistServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A port of this host that was free a moment ago.
fn free_port() -> std::io::Result<u16> {
    Ok(std::net::TcpListener::bind("0.0.0.0:0")?
        .local_addr()?
        .port())
}

/// Starts gpfdist on `port` serving `dir/serve`, logging to `dir/gpfdist.log`, and waits until
/// it says it serves.
fn spawn(
    settings: &GpfdistSettings,
    dir: &Path,
    port: u16,
    max_line: u64,
) -> Result<Child, GpfdistError> {
    let log = dir.join("gpfdist.log");
    let spawn_error = |source| GpfdistError::Spawn {
        program: settings.program.clone(),
        port,
        source,
    };
    let output = std::fs::File::create(&log).map_err(spawn_error)?;
    let errors = output.try_clone().map_err(spawn_error)?;
    let mut command = Command::new(&settings.program);
    command
        .arg("-d")
        .arg(dir.join("serve"))
        .args(["-p", &port.to_string(), "-m", &max_line.to_string(), "-s"])
        .stdin(Stdio::null())
        .stdout(output)
        .stderr(errors);
    // SAFETY: the hook only calls prctl, which is async-signal-safe. The loading thread that
    // spawns gpfdist outlives it (the server is dropped, so killed, before the thread ends), so
    // the signal fires only when this process dies.
    unsafe {
        command.pre_exec(|| {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) == -1 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let mut child = command.spawn().map_err(spawn_error)?;
    let serving = format!("Serving HTTP on port {port}");
    let deadline = Instant::now() + READY_TIMEOUT;
    loop {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        if text.contains(&serving) {
            return Ok(child);
        }
        let exited = matches!(child.try_wait(), Ok(Some(_)));
        if exited || Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            return Err(GpfdistError::NotServing {
                program: settings.program.clone(),
                port,
                log: text.lines().rev().take(2).collect::<Vec<_>>().join(" / "),
            });
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A file as a gpfdist serves it to the segments.
#[derive(Clone, Copy, Debug)]
pub struct ServedFile<'a> {
    /// `gpfdist://host:port/name`.
    pub url: &'a str,
    /// Its first line is the guide's header.
    pub header: bool,
    /// The SQL types of its columns (the target table's).
    pub types: &'a [String],
}

/// The external table's SQL for `file`: the file's columns with the target table's types.
fn external_table_sql(target: &CopyTarget, file: ServedFile<'_>) -> String {
    let ServedFile { url, header, types } = file;
    let mut sql = format!("CREATE READABLE EXTERNAL TEMP TABLE {EXTERNAL_TABLE} (");
    for (i, (column, sql_type)) in target.columns.iter().zip(types).enumerate() {
        let _ = write!(
            sql,
            "{}{} {sql_type}",
            if i > 0 { ", " } else { "" },
            quote_ident(column)
        );
    }
    let _ = write!(
        sql,
        ") LOCATION ({}) FORMAT 'TEXT' ({}DELIMITER '|') ENCODING 'UTF8'",
        quote_literal(url),
        if header { "HEADER " } else { "" }
    );
    sql
}

/// Loads the whole `file` into `target`, passes `fence` (see `sink::copy`'s) and records
/// `entry` in `ledger`, in one transaction. `entry.rows` is what the scan counted, and the
/// server must load exactly that. Returns the rows loaded.
pub fn insert_file(
    client: &mut Client,
    target: &CopyTarget,
    file: ServedFile<'_>,
    ledger: &Ledger,
    entry: &LedgerEntry,
    fence: &mut Fence<'_>,
) -> Result<u64, CopyError> {
    let columns = target
        .columns
        .iter()
        .map(|c| quote_ident(c))
        .collect::<Vec<_>>()
        .join(", ");
    let table = qualified(Some(&target.schema), &target.table);
    let mut tx = client.transaction().map_err(CopyError::Db)?;
    tx.batch_execute(&external_table_sql(target, file))
        .map_err(CopyError::Db)?;
    let prefix = format!("External table {EXTERNAL_TABLE}, line ");
    let after_line = format!(" of {}", file.url);
    let rows = tx
        .execute(
            &format!("INSERT INTO {table} ({columns}) SELECT {columns} FROM {EXTERNAL_TABLE}"),
            &[],
        )
        .map_err(|e| {
            located_error(e, |context| {
                ErrorPosition::find(context, &prefix, &after_line, &target.columns)
            })
        })?;
    if rows != entry.rows {
        return Err(CopyError::RowCount {
            expected: entry.rows,
            actual: rows,
        });
    }
    tx.batch_execute(&format!("DROP EXTERNAL TABLE {EXTERNAL_TABLE}"))
        .map_err(CopyError::Db)?;
    commit_unit(tx, ledger, entry.clone(), fence)?;
    Ok(rows)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sink::copy::CopyFormat;

    #[test]
    fn external_table_takes_the_files_columns_with_the_tables_types() {
        let target = CopyTarget {
            schema: "vec".into(),
            table: "docs".into(),
            columns: vec!["id".into(), "My Vec".into(), "payload".into()],
            format: CopyFormat::Text,
        };
        let types = ["bigint".to_owned(), "real[]".into(), "json".into()];
        assert_eq!(
            external_table_sql(
                &target,
                ServedFile {
                    url: "gpfdist://10.0.0.5:8081/1.csv",
                    header: true,
                    types: &types
                }
            ),
            "CREATE READABLE EXTERNAL TEMP TABLE qdrant2pg_unit (id bigint, \"My Vec\" real[], \
             payload json) LOCATION ('gpfdist://10.0.0.5:8081/1.csv') FORMAT 'TEXT' (HEADER \
             DELIMITER '|') ENCODING 'UTF8'"
        );
        let position = ErrorPosition::find(
            "JSON data, line 1: {\"a\nExternal table qdrant2pg_unit, line 3 of \
             gpfdist://h:1/1.csv, column payload",
            "External table qdrant2pg_unit, line ",
            " of gpfdist://h:1/1.csv",
            &target.columns,
        );
        assert_eq!(
            position,
            ErrorPosition {
                line: Some(3),
                column: Some("payload".into())
            }
        );
    }

    #[test]
    fn addresses_default_to_the_route_to_the_coordinator() {
        let local = route_address(Some(("127.0.0.1".into(), 5432))).unwrap();
        assert_eq!(local, IpAddr::from([127, 0, 0, 1]));
        assert_eq!(route_address(None).unwrap(), IpAddr::from([127, 0, 0, 1]));
        let settings =
            GpfdistSettings::resolve(Some(Path::new("/bin/sh")), Some("fd00::5"), None, None)
                .unwrap();
        assert_eq!(settings.address, "[fd00::5]");
        let missing = Path::new("/no/such/gpfdist");
        assert!(matches!(
            GpfdistSettings::resolve(Some(missing), None, None, None),
            Err(GpfdistError::NotAFile(_))
        ));
    }
}
