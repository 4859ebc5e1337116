//! PostgreSQL COPY FROM STDIN, one unit of work per transaction, recorded in the ledger.
//!
//! A unit is a stream of COPY bytes (a run of whole lines of an export file for import; encoded
//! pages of an id range for migrate) plus the [`LedgerEntry`] that names it. [`copy_unit`]
//! opens a transaction, streams the bytes, checks the row count the server reports, passes the
//! shared run's fence (is the unit still this worker's, and where does it end now), writes the
//! ledger row and commits: the rows and their ledger row become visible together or not at all.
//! Dropping the COPY writer or the transaction on any error aborts both (rust-postgres rolls a
//! dropped transaction back), so a failed unit leaves nothing behind and can be retried.
//!
//! Errors are classified by kind for the caller's retry loop: [`CopyError::is_transient`] says
//! whether a fresh connection may succeed (SQLSTATE class 08 connection exception, 57P01-03
//! server shutting down or starting, 40001/40P01, 53300 too many connections, or a socket
//! error), never by matching message text. Data errors carry the server's `CONTEXT` line number
//! and column so the caller can name `file:line`. [`Loader`] is one loading connection with
//! that retry loop around it: a unit that failed transiently is sent again, whole, on a fresh
//! connection after the crate's one backoff ([`crate::retry`]).
//!
//! Session settings: `statement_timeout = 0` (a server default must not cut a long COPY), and
//! with [`Commits::Deferred`] (the default on PostgreSQL) `synchronous_commit = off`: a unit's
//! commit returns once its WAL record is in the server's buffers instead of waiting for the
//! flush. Exactly-once does not depend on it — a server crash loses a unit's rows and its ledger
//! row together, and WAL is replayed as a prefix, so the tables, the ledger and the run's units
//! always agree — and "done" stays durable: before a command reports done it calls
//! [`Loader::commit_durably`], one transaction that writes a row and commits waiting for its WAL
//! flush. WAL is one sequence, so that flush covers every commit made before it on every
//! connection. A crash between the two loses only what the command has not yet reported; the
//! command's own check that follows (the run's open units, the ledger's counts) reads it back.

use std::io::{Read, Write};
use std::time::Duration;

use anyhow::Context;
use postgres::error::SqlState;
use postgres::{Client, Transaction};
use xxhash_rust::xxh3::Xxh3;

use crate::config::postgres::Target;
use crate::postgres::catalog::server_version_num;
use crate::postgres::ddl::Dialect;
use crate::postgres::ident::{qualified, quote_ident};
use crate::postgres::ledger::{Ledger, LedgerEntry};
use crate::postgres::transient::is_transient;
use crate::progress::error_chain;
use crate::retry::{Verdict, retry};

/// Bytes read from the source and handed to the connection at a time. rust-postgres sends each
/// write above 4 KiB as one CopyData message, so large writes mean few messages and few
/// runtime wake-ups; 1 MiB keeps per-message overhead negligible while bounding the buffer each
/// connection holds.
const CHUNK: usize = 1 << 20;

/// The COPY stream's format.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CopyFormat {
    /// `|`-delimited text, as the guide's files hold it.
    Text,
    /// PostgreSQL's binary format (`crate::encode::binary`).
    Binary,
}

/// The server version from which the `adbpg` dialect loads COPY BINARY: Greenplum 6 and
/// AnalyticDB for PostgreSQL 6 are PostgreSQL 9.4 underneath.
const ADBPG_BINARY_FROM: u32 = 90400;

impl CopyFormat {
    /// How rows read from Qdrant travel to `dialect`'s server (migrate, sync). Binary spares the
    /// server all float parsing, and every PostgreSQL takes it. So does Greenplum 6, where it
    /// measured 2.2–5.1 times COPY text through the coordinator (`scripts/bench-greenplum.sh`);
    /// Greenplum before 6 (AnalyticDB 4.3) has no binary COPY, so older Greenplum-based servers
    /// get text, as their import path does.
    pub fn for_target(dialect: Dialect, admin: &mut Client) -> Result<CopyFormat, postgres::Error> {
        if dialect != Dialect::Adbpg {
            return Ok(CopyFormat::Binary);
        }
        Ok(if server_version_num(admin)? >= ADBPG_BINARY_FROM {
            CopyFormat::Binary
        } else {
            CopyFormat::Text
        })
    }
}

/// The table and column list one COPY statement loads.
#[derive(Clone, Debug)]
pub struct CopyTarget {
    pub schema: String,
    /// The bare table name.
    pub table: String,
    /// Bare column names in stream order; quoted when the statement is built.
    pub columns: Vec<String>,
    pub format: CopyFormat,
}

impl CopyTarget {
    /// Text: `COPY t (cols) FROM STDIN DELIMITER '|'`, without `HEADER`, the one spelling every
    /// PostgreSQL since 9.0 and Greenplum / AnalyticDB accept. Binary: `… FROM STDIN (FORMAT
    /// binary)`.
    pub fn statement(&self) -> String {
        let columns = self
            .columns
            .iter()
            .map(|c| quote_ident(c))
            .collect::<Vec<_>>()
            .join(", ");
        let table = qualified(Some(&self.schema), &self.table);
        let options = match self.format {
            CopyFormat::Text => "DELIMITER '|'",
            CopyFormat::Binary => "(FORMAT binary)",
        };
        format!("COPY {table} ({columns}) FROM STDIN {options}")
    }

    /// Reads the line and column out of the server's `CONTEXT` for a COPY into this table:
    /// `COPY t, line 1842, column payload: "…"` (PostgreSQL prints the bare table name and
    /// column name). See [`ErrorPosition::find`].
    pub fn error_position(&self, context: &str) -> ErrorPosition {
        ErrorPosition::find(
            context,
            &format!("COPY {}, line ", self.table),
            "",
            &self.columns,
        )
    }
}

/// Where in the stream a data error happened, from the server's `CONTEXT`
/// (`COPY t, line 1842, column payload: "…"`). The quoted value is never kept.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ErrorPosition {
    /// 1-based line of the COPY stream.
    pub line: Option<u64>,
    pub column: Option<String>,
}

impl ErrorPosition {
    /// The position in the `CONTEXT` line that starts `{prefix}<line>{after_line}`, followed by
    /// `, column <one of columns>` where the server names it. Matching the known names, rather
    /// than searching for `, line `, keeps a table or a value containing that text from being
    /// misread; the value itself is never kept. The server localises this text (lc_messages);
    /// in another language nothing is found and the error is reported without a position.
    pub fn find(context: &str, prefix: &str, after_line: &str, columns: &[String]) -> Self {
        // Errors inside a value (json, arrays) put their own context lines first.
        let Some(rest) = context.lines().find_map(|c| c.strip_prefix(prefix)) else {
            return ErrorPosition::default();
        };
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        let line = rest[..digits].parse().ok();
        let column = rest[digits..]
            .strip_prefix(after_line)
            .and_then(|rest| rest.strip_prefix(", column "))
            .and_then(|rest| {
                columns
                    .iter()
                    .filter(|c| {
                        rest.strip_prefix(c.as_str())
                            .is_some_and(|after| after.is_empty() || after.starts_with(':'))
                    })
                    .max_by_key(|c| c.len())
                    .cloned()
            });
        ErrorPosition { line, column }
    }
}

/// One unit could not be committed.
#[derive(Debug, thiserror::Error)]
pub enum CopyError {
    #[error("cannot read the source")]
    Source(#[source] std::io::Error),
    #[error("the server rejected the data{}", describe(.position))]
    Data {
        position: ErrorPosition,
        #[source]
        source: postgres::Error,
    },
    #[error("database error")]
    Db(#[source] postgres::Error),
    #[error("the server loaded {actual} rows where {expected} were sent")]
    RowCount { expected: u64, actual: u64 },
    #[error("another run already recorded this unit in the ledger")]
    AlreadyLoaded,
    #[error("{0}")]
    Fenced(Fenced),
    /// A durable commit's mark changed no row: its commit would write no WAL and so wait for
    /// nothing.
    #[error("the durable commit's mark wrote no row")]
    NothingWritten,
}

/// Why a shared run's unit refused a commit (its row is the fence every commit passes).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Fenced {
    /// Another worker claimed the unit: this one must leave it alone.
    #[error("another worker has taken over this unit")]
    Lost,
    /// The unit was split below rows this commit holds: it now ends at `hi` (a point id).
    #[error("the unit was split and now ends at {0}")]
    Shrunk(String),
    /// The unit ended before these rows (a split gave them to another unit).
    #[error("the unit ended before these rows")]
    Finished,
    /// The unit's row holds what this tool never writes (edited by hand?).
    #[error("{0}")]
    Unreadable(String),
}

fn describe(position: &ErrorPosition) -> String {
    match (&position.line, &position.column) {
        (Some(line), Some(column)) => format!(" at line {line} of the unit, column {column}"),
        (Some(line), None) => format!(" at line {line} of the unit"),
        (None, Some(column)) => format!(" in column {column}"),
        (None, None) => String::new(),
    }
}

impl CopyError {
    /// Whether the same unit may succeed on a fresh connection.
    pub fn is_transient(&self) -> bool {
        match self {
            CopyError::Db(e) | CopyError::Data { source: e, .. } => is_transient(e),
            CopyError::Source(_)
            | CopyError::RowCount { .. }
            | CopyError::AlreadyLoaded
            | CopyError::Fenced(_)
            | CopyError::NothingWritten => false,
        }
    }
}

/// What a unit's transaction passes before it commits: the shared run's check that the unit is
/// still this worker's, which may also narrow `entry` (its end) or refuse with
/// [`CopyError::Fenced`]. It runs after the COPY, so the bulk of the work overlaps whatever the
/// fence waits for, and holds its row lock only until the commit.
pub type Fence<'a> =
    dyn FnMut(&mut Transaction<'_>, &mut LedgerEntry) -> Result<(), CopyError> + 'a;

/// What a unit sends: rows already encoded in memory (migrate's pages), streamed from where they
/// lie, or a reader (a span of a file), read into a reused buffer.
pub enum UnitRows<'a> {
    Bytes(&'a [u8]),
    Read {
        source: &'a mut dyn Read,
        buf: &'a mut Vec<u8>,
    },
}

/// Streams `rows` into `target`, passes `fence` and records `entry` in `ledger`, all in one
/// transaction. `entry.rows` is the row count the caller expects; `entry.checksum` is filled
/// in here from the bytes actually sent. A unit of no rows sends nothing and records nothing
/// in the ledger (it holds rows), but still passes its fence. Returns the rows the server
/// reported.
pub fn copy_unit(
    client: &mut Client,
    target: &CopyTarget,
    ledger: &Ledger,
    entry: &LedgerEntry,
    rows: UnitRows<'_>,
    fence: &mut Fence<'_>,
) -> Result<u64, CopyError> {
    let mut tx = client.transaction().map_err(CopyError::Db)?;
    let mut entry = entry.clone();
    if entry.rows == 0 {
        fence(&mut tx, &mut entry)?;
        tx.commit().map_err(CopyError::Db)?;
        return Ok(0);
    }
    let (rows, checksum) = match rows {
        UnitRows::Bytes(bytes) => copy_in_bytes(&mut tx, target, bytes)?,
        UnitRows::Read { source, buf } => copy_in(&mut tx, target, source, buf)?,
    };
    if rows != entry.rows {
        return Err(CopyError::RowCount {
            expected: entry.rows,
            actual: rows,
        });
    }
    entry.checksum = checksum;
    commit_unit(tx, ledger, entry, fence)?;
    Ok(rows)
}

/// Streams `source` into `target` inside `tx`: the rows the server reported, and the xxh3 of
/// the bytes sent (16 hex digits). The transaction is the caller's to commit.
pub fn copy_in(
    tx: &mut Transaction<'_>,
    target: &CopyTarget,
    source: &mut dyn Read,
    buf: &mut Vec<u8>,
) -> Result<(u64, String), CopyError> {
    let mut stream = CopyStream::open(tx, target)?;
    buf.resize(CHUNK, 0);
    loop {
        let n = match source.read(buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(CopyError::Source(e)),
        };
        stream.send(&buf[..n])?;
    }
    stream.finish()
}

/// [`copy_in`] of bytes already in memory: sent in chunks of [`CHUNK`] from where they lie,
/// sparing their copy into a read buffer: 7 % of migrate's own instructions, counted by
/// callgrind (docs/benchmarks.md).
pub fn copy_in_bytes(
    tx: &mut Transaction<'_>,
    target: &CopyTarget,
    bytes: &[u8],
) -> Result<(u64, String), CopyError> {
    let mut stream = CopyStream::open(tx, target)?;
    for chunk in bytes.chunks(CHUNK) {
        stream.send(chunk)?;
    }
    stream.finish()
}

/// One COPY statement's stream and the xxh3 of what it sent.
struct CopyStream<'t, 'c> {
    target: &'t CopyTarget,
    writer: postgres::CopyInWriter<'c>,
    hasher: Xxh3,
}

impl<'t, 'c> CopyStream<'t, 'c> {
    fn open(tx: &'c mut Transaction<'_>, target: &'t CopyTarget) -> Result<Self, CopyError> {
        let writer = tx
            .copy_in(&target.statement())
            .map_err(|e| data_error(target, e))?;
        Ok(CopyStream {
            target,
            writer,
            hasher: Xxh3::new(),
        })
    }

    fn send(&mut self, chunk: &[u8]) -> Result<(), CopyError> {
        self.hasher.update(chunk);
        self.writer
            .write_all(chunk)
            .map_err(|e| write_error(self.target, e))
    }

    /// The rows the server reported, and the xxh3 of the bytes sent (16 hex digits).
    fn finish(self) -> Result<(u64, String), CopyError> {
        let rows = self
            .writer
            .finish()
            .map_err(|e| data_error(self.target, e))?;
        Ok((rows, format!("{:016x}", self.hasher.digest())))
    }
}

/// Passes `fence` and records `entry` in `ledger` inside `tx`, the transaction holding the
/// unit's rows, and commits all of it. A unit another run recorded first is
/// [`CopyError::AlreadyLoaded`] (and rolls back).
pub fn commit_unit(
    mut tx: Transaction<'_>,
    ledger: &Ledger,
    mut entry: LedgerEntry,
    fence: &mut Fence<'_>,
) -> Result<(), CopyError> {
    fence(&mut tx, &mut entry)?;
    ledger.record(&mut tx, &entry).map_err(|e| match e.code() {
        Some(&SqlState::UNIQUE_VIOLATION) => CopyError::AlreadyLoaded,
        _ => CopyError::Db(e),
    })?;
    tx.commit().map_err(CopyError::Db)
}

/// A unit that could not be loaded, even after the retries.
#[derive(Debug)]
pub enum UnitFailure {
    /// No connection (or its session settings failed).
    Connect(anyhow::Error),
    Copy(CopyError),
}

impl UnitFailure {
    /// Whether a fresh connection may succeed.
    pub fn is_transient(&self) -> bool {
        match self {
            UnitFailure::Connect(e) => e.chain().any(|c| {
                c.downcast_ref::<postgres::Error>()
                    .is_some_and(is_transient)
            }),
            UnitFailure::Copy(e) => e.is_transient(),
        }
    }

    /// The failure and its causes, on one line.
    pub fn describe(&self) -> String {
        match self {
            UnitFailure::Connect(e) => format!("{e:#}"),
            UnitFailure::Copy(e) => error_chain(e),
        }
    }
}

/// One transaction that runs `mark` (which must write at least one row) and commits waiting
/// for its WAL flush, at the server's `synchronous_commit` level for this role and database, or
/// `on` where that is `off`. A transaction that writes nothing commits without a WAL record and
/// waits for nothing, hence [`CopyError::NothingWritten`]. On a standby-replicated server the
/// level the server sets (`remote_apply`, say) is kept, and the wait covers the standby too.
pub fn durable_commit(client: &mut Client, mark: &mut DurableMark<'_>) -> Result<(), CopyError> {
    let mut tx = client.transaction().map_err(CopyError::Db)?;
    // `reset_val` is the level before this session's `SET synchronous_commit = off`.
    tx.query_one(
        "SELECT set_config('synchronous_commit', CASE reset_val WHEN 'off' THEN 'on' ELSE \
         reset_val END, true) FROM pg_settings WHERE name = 'synchronous_commit'",
        &[],
    )
    .map_err(CopyError::Db)?;
    if mark(&mut tx).map_err(CopyError::Db)? == 0 {
        return Err(CopyError::NothingWritten);
    }
    tx.commit().map_err(CopyError::Db)
}

/// The write a durable commit makes (see [`durable_commit`]): rows changed.
pub type DurableMark<'a> = dyn FnMut(&mut Transaction<'_>) -> Result<u64, postgres::Error> + 'a;

/// How a loading session's commits reach disk.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Commits {
    /// Each commit returns without waiting for its WAL flush (`synchronous_commit = off`); the
    /// command makes them all durable with one [`Loader::commit_durably`] before it reports
    /// done. Faster wherever the server flushes WAL to disk (docs/benchmarks.md).
    Deferred,
    /// Each commit waits for its WAL flush, as the server's `synchronous_commit` says
    /// (`--durable-each-commit`, and Greenplum, whose segments each have a WAL of their own, so
    /// no single commit's flush covers the others').
    EachDurable,
}

/// How a [`Loader`] connects, retries and commits.
#[derive(Clone, Copy, Debug)]
pub struct LoadSettings {
    /// Attempts per unit while the failure is transient.
    pub retries: u32,
    pub commits: Commits,
}

/// One loading connection, opened when first needed and replaced after any failure.
pub struct Loader<'a> {
    target: &'a Target,
    settings: LoadSettings,
    client: Option<Client>,
}

impl<'a> Loader<'a> {
    pub fn new(target: &'a Target, settings: LoadSettings) -> Self {
        Loader {
            target,
            settings,
            client: None,
        }
    }

    /// Runs `unit` (one transaction) until it succeeds, fails for good, or runs out of
    /// attempts; `on_retry(failure, backoff, next_attempt, attempts)` hears of each retry.
    pub fn run<T>(
        &mut self,
        mut unit: impl FnMut(&mut Client) -> Result<T, CopyError>,
        mut on_retry: impl FnMut(&UnitFailure, Duration, u32, u32),
    ) -> Result<T, UnitFailure> {
        let attempts = self.settings.retries;
        let attempt = |_| {
            let result = self
                .session()
                .map_err(UnitFailure::Connect)
                .and_then(|c| unit(c).map_err(UnitFailure::Copy));
            if result.is_err() {
                self.client = None;
            }
            result
        };
        let judge = |failure: &UnitFailure, attempt: u32, wait: Duration| {
            if !failure.is_transient() {
                return Verdict::GiveUp;
            }
            on_retry(failure, wait, attempt + 1, attempts);
            Verdict::Retry
        };
        retry(attempts, attempt, judge).map_err(|failed| failed.error)
    }

    /// Makes every commit made before this call durable — on this connection and on every other
    /// loader's of this process (of any process, in fact): one [`durable_commit`] writing
    /// `mark`, retried as a unit is. With [`Commits::EachDurable`] each commit already was, and
    /// this returns at once. Call it after the last loader has committed and before reporting
    /// done, then read back what the command reports (a crash before it returns may have lost
    /// the last commits, and the reads see that).
    pub fn commit_durably(&mut self, mark: &mut DurableMark<'_>) -> Result<(), UnitFailure> {
        if self.settings.commits == Commits::EachDurable {
            return Ok(());
        }
        self.run(|client| durable_commit(client, mark), |_, _, _, _| {})
    }

    /// The connection, opened (with the bulk-load settings) when missing.
    fn session(&mut self) -> anyhow::Result<&mut Client> {
        if self.client.is_none() {
            let mut fresh = self.target.connect()?;
            let mut settings = "SET statement_timeout = 0".to_owned();
            if self.settings.commits == Commits::Deferred {
                settings.push_str("; SET synchronous_commit = off");
            }
            fresh
                .batch_execute(&settings)
                .context("setting up the loading session")?;
            self.client = Some(fresh);
        }
        self.client.as_mut().context("no connection")
    }
}

/// A write to the COPY stream failed: rust-postgres wraps the protocol error in an io error.
fn write_error(target: &CopyTarget, err: std::io::Error) -> CopyError {
    match err
        .into_inner()
        .map(|inner| inner.downcast::<postgres::Error>())
    {
        Some(Ok(pg)) => data_error(target, *pg),
        Some(Err(other)) => CopyError::Source(std::io::Error::other(other)),
        None => CopyError::Source(std::io::Error::other("COPY stream write failed")),
    }
}

/// A server error during COPY: a data error when the server says where in the stream it is.
fn data_error(target: &CopyTarget, err: postgres::Error) -> CopyError {
    located_error(err, |context| target.error_position(context))
}

/// A server error loading rows: a data error when `position` finds where in the rows it is.
pub fn located_error(
    err: postgres::Error,
    position: impl FnOnce(&str) -> ErrorPosition,
) -> CopyError {
    let position = err.as_db_error().and_then(|db| db.where_()).map(position);
    match position {
        Some(position) if position.line.is_some() => CopyError::Data {
            position,
            source: err,
        },
        _ => CopyError::Db(err),
    }
}

/// A `Read` over bytes `[lo, hi)` of a file, without the header line and without loading it.
pub fn file_span(mut file: std::fs::File, lo: u64, hi: u64) -> std::io::Result<impl Read> {
    use std::io::{Seek, SeekFrom};
    file.seek(SeekFrom::Start(lo))?;
    Ok(file.take(hi.saturating_sub(lo)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target() -> CopyTarget {
        CopyTarget {
            schema: "public".into(),
            table: "My-Docs, line 5".into(),
            columns: vec![
                "id".into(),
                "Image".into(),
                "payload".into(),
                "payload: x".into(),
            ],
            format: CopyFormat::Text,
        }
    }

    #[test]
    fn context_gives_line_and_column_but_never_the_value() {
        let t = target();
        let p = t.error_position(
            "COPY My-Docs, line 5, line 1842, column payload: \"{\"a\": 1, line 9\"",
        );
        assert_eq!(
            p,
            ErrorPosition {
                line: Some(1842),
                column: Some("payload".into())
            }
        );
        let p = t.error_position("COPY My-Docs, line 5, line 3: \"1|{1}|{}|x\"");
        assert_eq!(
            p,
            ErrorPosition {
                line: Some(3),
                column: None
            }
        );
        let p = t.error_position("COPY My-Docs, line 5, line 7, column payload: x: null input");
        assert_eq!(
            p,
            ErrorPosition {
                line: Some(7),
                column: Some("payload: x".into())
            }
        );
        let p = t.error_position("JSON data, line 1: {x\nCOPY My-Docs, line 5, line 7, column id");
        assert_eq!(
            p,
            ErrorPosition {
                line: Some(7),
                column: Some("id".into())
            }
        );
        assert_eq!(
            t.error_position("COPY other, line 7"),
            ErrorPosition::default()
        );
    }

    #[test]
    fn statement_quotes_columns_and_has_no_header_option() {
        assert_eq!(
            target().statement(),
            "COPY public.\"My-Docs, line 5\" (id, \"Image\", payload, \"payload: x\") FROM STDIN \
             DELIMITER '|'"
        );
        let binary = CopyTarget {
            format: CopyFormat::Binary,
            ..target()
        };
        assert!(binary.statement().ends_with(" FROM STDIN (FORMAT binary)"));
    }

    #[test]
    fn file_span_reads_exactly_the_range() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f.csv");
        std::fs::write(&path, b"id|payload\n1|{}\n2|{}\n").unwrap();
        let mut out = String::new();
        file_span(std::fs::File::open(&path).unwrap(), 11, 16)
            .unwrap()
            .read_to_string(&mut out)
            .unwrap();
        assert_eq!(out, "1|{}\n");
    }
}
