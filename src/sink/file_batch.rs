//! One batch of an export file into its table, in one transaction: a COPY of a run of its
//! lines, or — a whole file with `--via gpfdist` — the segments' INSERT from the loading
//! connection's own gpfdist; either way with the caller's fence and the batch's ledger row
//! ([`sink::copy`], [`sink::gpfdist`]). And the words for a batch that failed, `file:line:
//! column c: message`, without the row values the server quotes.
//!
//! [`sink::copy`]: crate::sink::copy
//! [`sink::gpfdist`]: crate::sink::gpfdist

use std::path::Path;

use postgres::Client;

use crate::postgres::ledger::{Ledger, LedgerEntry};
use crate::progress::error_chain;
use crate::sink::copy::{
    CopyError, CopyTarget, Fence, UnitFailure, UnitRows, copy_unit, file_span,
};
use crate::sink::gpfdist::{GpfdistError, GpfdistServer, GpfdistSettings, ServedFile, insert_file};
use crate::source::export_dir::{DataFile, Span};

/// A loading connection's gpfdist, started when its first whole file comes.
pub struct WorkerGpfdist<'a> {
    settings: Option<&'a GpfdistSettings>,
    /// The connection's number: its gpfdist serves on the first port + this.
    index: usize,
    server: Option<GpfdistServer>,
}

impl<'a> WorkerGpfdist<'a> {
    /// `settings` is `None` without `--via gpfdist`.
    pub fn new(settings: Option<&'a GpfdistSettings>, index: usize) -> Self {
        WorkerGpfdist {
            settings,
            index,
            server: None,
        }
    }

    /// The URL the segments load `file` from.
    fn url(&mut self, file: &DataFile, longest_line: u64) -> Result<String, CopyError> {
        let failed = |e| CopyError::Source(std::io::Error::other(e));
        let settings = self
            .settings
            .ok_or_else(|| failed(GpfdistError::NotFound))?;
        let server = match &mut self.server {
            Some(server) => server,
            None => self.server.insert(
                GpfdistServer::start(settings, self.index as u16, longest_line).map_err(failed)?,
            ),
        };
        server.serve(&file.path, longest_line).map_err(failed)
    }
}

/// One batch of a file.
pub struct FileBatch<'a> {
    pub file: &'a DataFile,
    pub copy: &'a CopyTarget,
    pub span: Span,
    /// Set for a whole file the segments pull through gpfdist.
    pub whole: Option<WholeFile<'a>>,
}

/// What a whole-file batch needs beyond its span.
pub struct WholeFile<'a> {
    /// `(column, SQL type)` of the table, for the external table.
    pub table_columns: &'a [(String, String)],
    /// The file's longest line, for gpfdist's `-m`.
    pub longest_line: u64,
}

/// Loads `batch` on `client` as one transaction that also passes `fence` and records `entry`
/// in `ledger`; the rows the server reported.
pub fn load_batch(
    client: &mut Client,
    batch: &FileBatch<'_>,
    ledger: &Ledger,
    entry: &LedgerEntry,
    buf: &mut Vec<u8>,
    gpfdist: &mut WorkerGpfdist<'_>,
    fence: &mut Fence<'_>,
) -> Result<u64, CopyError> {
    match &batch.whole {
        Some(whole) => {
            let types = file_column_types(whole.table_columns, batch.copy)?;
            let url = gpfdist.url(batch.file, whole.longest_line)?;
            let served = ServedFile {
                url: &url,
                header: batch.file.header,
                types: &types,
            };
            insert_file(client, batch.copy, served, ledger, entry, fence)
        }
        None => {
            let mut source = std::fs::File::open(&batch.file.path)
                .and_then(|f| file_span(f, batch.span.lo, batch.span.hi))
                .map_err(CopyError::Source)?;
            copy_unit(
                client,
                batch.copy,
                ledger,
                entry,
                UnitRows::Read {
                    source: &mut source,
                    buf,
                },
                fence,
            )
        }
    }
}

/// The SQL types of the file's columns, from the table's.
fn file_column_types(
    table: &[(String, String)],
    copy: &CopyTarget,
) -> Result<Vec<String>, CopyError> {
    copy.columns
        .iter()
        .map(|column| {
            table
                .iter()
                .find(|(name, _)| name == column)
                .map(|(_, sql_type)| sql_type.clone())
                .ok_or_else(|| {
                    CopyError::Source(std::io::Error::other(format!(
                        "the file has a column {column:?} that table {} lacks",
                        copy.table
                    )))
                })
        })
        .collect()
}

/// `file:line: column c: message`, from the server's error and the batch's first line.
pub fn describe_failure(path: &Path, span: Span, failure: &UnitFailure) -> String {
    let path = path.display();
    match failure {
        UnitFailure::Copy(CopyError::Data { position, source }) => {
            let line = position.line.map(|l| span.first_line + l - 1);
            let mut out = match line {
                Some(line) => format!("{path}:{line}"),
                None => path.to_string(),
            };
            if let Some(column) = &position.column {
                out.push_str(&format!(": column {column}"));
            }
            out.push_str(&format!(": {}", server_message(source)));
            out
        }
        UnitFailure::Copy(CopyError::Db(e)) => {
            format!(
                "{path} bytes {}..{}: {}",
                span.lo,
                span.hi,
                server_message(e)
            )
        }
        UnitFailure::Copy(e) => {
            format!("{path} bytes {}..{}: {}", span.lo, span.hi, error_chain(e))
        }
        UnitFailure::Connect(e) => format!("{path} bytes {}..{}: {e:#}", span.lo, span.hi),
    }
}

/// The server's primary message and SQLSTATE, without its DETAIL and CONTEXT, which quote
/// row values.
fn server_message(err: &postgres::Error) -> String {
    match err.as_db_error() {
        Some(db) => format!("{} (SQLSTATE {})", db.message(), db.code().code()),
        None => error_chain(err),
    }
}
