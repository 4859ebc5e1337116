//! Reading a table back fast and in any order: binary COPY over physical (ctid) ranges, in
//! parallel — verify's table side — and rows by id, through the same binary COPY.
//!
//! Each part is `COPY (SELECT cols FROM t WHERE ctid >= '(lo,0)' AND ctid < '(hi,0)') TO STDOUT
//! (FORMAT binary)`. From PostgreSQL 14 on that is a TID range scan, which reads only those
//! blocks: N connections read disjoint parts of the heap at once, with no sort and no index, and
//! binary spares the server printing every float. The parts tile the block numbers: the first
//! starts at block 0 and the last is open-ended, so rows in blocks added after the size was read
//! are not missed. A server without TID range scans (before 14; Greenplum 6) reads the table in
//! one plain scan: there a ctid bound would make every part scan the whole table.

use std::fmt;
use std::io::Read;
use std::sync::Mutex;

use postgres::Client;

use crate::config::postgres::{ConnectError, Target};
use crate::point_id::PointKey;
use crate::postgres::ident::quote_ident;

/// Parts per connection: more parts than connections, so a connection that drew a part of
/// dead or toast-heavy blocks does not hold up the end (etl plans 4 partitions per worker).
const PARTS_PER_CONNECTION: u32 = 4;
/// Below this many blocks per part (8 MiB of heap at 8 KiB blocks), a part costs more to start
/// than it saves.
const MIN_BLOCKS_PER_PART: u32 = 1024;
/// The first PostgreSQL version with TID range scans.
const TID_RANGE_SCANS: i32 = 140_000;

/// A table and the columns to read from it.
pub struct TableScan<'a> {
    /// Qualified and quoted.
    pub table: &'a str,
    /// Bare column names, in the order rows are handed over.
    pub columns: &'a [String],
    /// Only the rows with these ids, when given: see [`ids_condition`].
    pub only: Option<String>,
}

/// `id = ANY('{…}'::type[])`: the rows with these ids, in one scan (PostgreSQL 14 and later
/// hash a long list). The ids are inlined, since COPY takes no parameters; a point id's text is
/// digits or a hyphenated UUID, nothing that needs quoting.
pub fn ids_condition(id_type: &str, ids: &[PointKey]) -> String {
    let list: Vec<String> = ids.iter().map(|k| k.to_string()).collect();
    format!("id = ANY('{{{}}}'::{id_type}[])", list.join(","))
}

/// Blocks `[lo, hi)` of the heap; `hi = None` runs to the end.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Part {
    pub lo: u32,
    pub hi: Option<u32>,
}

impl Part {
    /// The whole table, read by a plain scan.
    pub const WHOLE: Part = Part { lo: 0, hi: None };

    fn condition(&self) -> Option<String> {
        match (self.lo, self.hi) {
            (0, None) => None,
            (0, Some(hi)) => Some(format!("ctid < '({hi},0)'::tid")),
            (lo, None) => Some(format!("ctid >= '({lo},0)'::tid")),
            (lo, Some(hi)) => Some(format!(
                "ctid >= '({lo},0)'::tid AND ctid < '({hi},0)'::tid"
            )),
        }
    }
}

impl fmt::Display for Part {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.lo, self.hi) {
            (0, None) => write!(f, "the whole table"),
            (lo, None) => write!(f, "blocks {lo} to the end"),
            (lo, Some(hi)) => write!(f, "blocks [{lo}, {hi})"),
        }
    }
}

/// Reading a table failed; names the table and the part.
#[derive(Debug, thiserror::Error)]
pub enum ScanError {
    #[error("connecting to read {table}")]
    Connect {
        table: String,
        #[source]
        source: ConnectError,
    },
    #[error("reading {table} ({part})")]
    Read {
        table: String,
        part: Part,
        #[source]
        source: postgres::Error,
    },
    #[error("reading {table} ({part}): the COPY stream is cut short or malformed")]
    Stream {
        table: String,
        part: Part,
        #[source]
        source: std::io::Error,
    },
    #[error("reading {table} ({part})")]
    Row {
        table: String,
        part: Part,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
}

/// Whether the server runs a ctid range as a TID range scan.
pub fn has_tid_range_scans(db: &mut Client) -> Result<bool, postgres::Error> {
    let version: String = db.query_one("SHOW server_version_num", &[])?.get(0);
    Ok(version.trim().parse::<i32>().unwrap_or(0) >= TID_RANGE_SCANS)
}

/// The number of blocks in the table's heap.
pub fn heap_blocks(db: &mut Client, table: &str) -> Result<u32, postgres::Error> {
    let blocks: i64 = db
        .query_one(
            "SELECT pg_relation_size($1::text::regclass) / current_setting('block_size')::bigint",
            &[&table],
        )?
        .get(0);
    Ok(u32::try_from(blocks).unwrap_or(u32::MAX))
}

/// How many parts to read a heap of `blocks` blocks in over `connections`: several each where
/// the server has TID range scans (but none under [`MIN_BLOCKS_PER_PART`]), else one.
pub fn default_parts(tid_range_scans: bool, connections: usize, blocks: u32) -> u32 {
    if !tid_range_scans {
        return 1;
    }
    let wanted = u32::try_from(connections)
        .unwrap_or(u32::MAX)
        .max(1)
        .saturating_mul(PARTS_PER_CONNECTION);
    wanted.min(blocks / MIN_BLOCKS_PER_PART).max(1)
}

/// `parts` parts of a heap of `blocks` blocks (at most one per block): the first from block 0,
/// the last open-ended; one part is the whole table, read by a plain scan.
pub fn tile(blocks: u32, parts: u32) -> Vec<Part> {
    let parts = parts.min(blocks).max(1);
    if parts == 1 {
        return vec![Part::WHOLE];
    }
    let step = blocks / parts;
    (0..parts)
        .map(|i| Part {
            lo: i * step,
            hi: (i + 1 < parts).then(|| (i + 1) * step),
        })
        .collect()
}

/// Reads every part over `connections` connections, handing each row's fields (binary, in
/// `scan.columns` order, `None` for NULL) to `handle` with the connection's own state from
/// `init`. Returns the rows read. The first failure stops the other connections after their
/// current part.
pub fn read_parts<S, E>(
    target: &Target,
    scan: &TableScan<'_>,
    parts: Vec<Part>,
    connections: usize,
    init: impl Fn() -> S + Sync,
    handle: impl Fn(&mut S, &[Option<&[u8]>]) -> Result<(), E> + Sync,
) -> Result<u64, ScanError>
where
    E: std::error::Error + Send + Sync + 'static,
{
    let queue = Mutex::new(parts);
    let failed = std::sync::atomic::AtomicBool::new(false);
    let results: Vec<Result<u64, ScanError>> = std::thread::scope(|s| {
        let workers: Vec<_> = (0..connections.max(1))
            .map(|_| {
                s.spawn(|| -> Result<u64, ScanError> {
                    let mut db = target.connect().map_err(|source| ScanError::Connect {
                        table: scan.table.to_owned(),
                        source,
                    })?;
                    let mut state = init();
                    let mut rows = 0;
                    loop {
                        if failed.load(std::sync::atomic::Ordering::Relaxed) {
                            break;
                        }
                        let Some(part) = queue.lock().unwrap_or_else(|e| e.into_inner()).pop()
                        else {
                            break;
                        };
                        match read_part(&mut db, scan, part, |fields| handle(&mut state, fields)) {
                            Ok(n) => rows += n,
                            Err(e) => {
                                failed.store(true, std::sync::atomic::Ordering::Relaxed);
                                return Err(e);
                            }
                        }
                    }
                    Ok(rows)
                })
            })
            .collect();
        workers
            .into_iter()
            .map(|w| {
                w.join()
                    .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
            })
            .collect()
    });
    let mut rows = 0;
    for result in results {
        rows += result?;
    }
    Ok(rows)
}

/// One part through `COPY … TO STDOUT (FORMAT binary)`.
fn read_part<E>(
    db: &mut Client,
    scan: &TableScan<'_>,
    part: Part,
    mut each: impl FnMut(&[Option<&[u8]>]) -> Result<(), E>,
) -> Result<u64, ScanError>
where
    E: std::error::Error + Send + Sync + 'static,
{
    let table = || scan.table.to_owned();
    let conditions: Vec<String> = part
        .condition()
        .into_iter()
        .chain(scan.only.clone())
        .collect();
    let filter = if conditions.is_empty() {
        String::new()
    } else {
        format!(" WHERE {}", conditions.join(" AND "))
    };
    let sql = format!(
        "COPY (SELECT {} FROM {}{filter}) TO STDOUT (FORMAT binary)",
        select_list(scan.columns),
        scan.table,
    );
    let mut reader = db.copy_out(&sql).map_err(|source| ScanError::Read {
        table: table(),
        part,
        source,
    })?;
    let stream = |source| ScanError::Stream {
        table: table(),
        part,
        source,
    };
    // Signature, flags, then a header extension of the length given.
    let mut header = [0u8; 19];
    reader.read_exact(&mut header).map_err(stream)?;
    if &header[..11] != b"PGCOPY\n\xff\r\n\0" {
        return Err(stream(std::io::Error::other("no binary COPY signature")));
    }
    let extension = u32::from_be_bytes([header[15], header[16], header[17], header[18]]);
    std::io::copy(
        &mut (&mut reader).take(u64::from(extension)),
        &mut std::io::sink(),
    )
    .map_err(stream)?;
    let mut buf = Vec::new();
    let mut spans: Vec<Option<(usize, usize)>> = Vec::new();
    let mut rows = 0;
    loop {
        let mut count = [0u8; 2];
        reader.read_exact(&mut count).map_err(stream)?;
        let count = i16::from_be_bytes(count);
        if count < 0 {
            break;
        }
        buf.clear();
        spans.clear();
        for _ in 0..count {
            let mut len = [0u8; 4];
            reader.read_exact(&mut len).map_err(stream)?;
            let Ok(len) = usize::try_from(i32::from_be_bytes(len)) else {
                spans.push(None);
                continue;
            };
            let at = buf.len();
            buf.resize(at + len, 0);
            reader.read_exact(&mut buf[at..]).map_err(stream)?;
            spans.push(Some((at, at + len)));
        }
        let fields: Vec<Option<&[u8]>> = spans
            .iter()
            .map(|span| span.map(|(a, b)| &buf[a..b]))
            .collect();
        each(&fields).map_err(|source| ScanError::Row {
            table: table(),
            part,
            source: Box::new(source),
        })?;
        rows += 1;
    }
    Ok(rows)
}

/// The rows whose id is one of `ids`, each handed to `each` as [`read_parts`] does, over one
/// connection. Uses an index on `id` where there is one, else one scan.
pub fn rows_by_id<E>(
    db: &mut Client,
    scan: &TableScan<'_>,
    id_type: &str,
    ids: &[PointKey],
    each: impl FnMut(&[Option<&[u8]>]) -> Result<(), E>,
) -> Result<u64, ScanError>
where
    E: std::error::Error + Send + Sync + 'static,
{
    let scan = TableScan {
        table: scan.table,
        columns: scan.columns,
        only: Some(ids_condition(id_type, ids)),
    };
    read_part(db, &scan, Part::WHOLE, each)
}

fn select_list(columns: &[String]) -> String {
    columns
        .iter()
        .map(|c| quote_ident(c))
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parts_tile_the_heap() {
        let part = |lo, hi| Part { lo, hi };
        assert_eq!(Part::WHOLE.condition(), None);
        assert_eq!(
            part(0, Some(8)).condition().as_deref(),
            Some("ctid < '(8,0)'::tid"),
            "the first part starts at block 0"
        );
        assert_eq!(
            part(8, None).condition().as_deref(),
            Some("ctid >= '(8,0)'::tid")
        );
        let ids = [PointKey::Num(7), PointKey::Uuid(1)];
        assert_eq!(
            ids_condition("text", &ids),
            "id = ANY('{7,00000000-0000-0000-0000-000000000001}'::text[])"
        );
        assert_eq!(part(8, None).to_string(), "blocks 8 to the end");
        assert_eq!(tile(0, 8), [Part::WHOLE]);
        assert_eq!(tile(100, 1), [Part::WHOLE]);
        assert_eq!(tile(3, 8).len(), 3);
        let parts = tile(MIN_BLOCKS_PER_PART * 100 + 7, 8);
        assert_eq!(parts.len(), 8);
        assert_eq!(parts[0].lo, 0);
        assert_eq!(parts[7].hi, None);
        for pair in parts.windows(2) {
            assert_eq!(pair[0].hi, Some(pair[1].lo));
        }
        assert_eq!(default_parts(false, 8, u32::MAX), 1);
        assert_eq!(default_parts(true, 2, u32::MAX), 8);
        assert_eq!(default_parts(true, 2, MIN_BLOCKS_PER_PART * 3), 3);
        assert_eq!(default_parts(true, 2, 5), 1);
    }
}
