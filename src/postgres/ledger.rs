//! The ledger: which units of work are already in the target, recorded in the target itself.
//!
//! `qdrant2pg_ledger` lives in the target schema and holds one row per committed unit of work:
//! the table, the source (an export file, or for migrate a collection), the span of that source
//! the unit covered (`[lo, hi)`: byte offsets of a file, or point ids), the rows, a checksum of
//! the bytes sent, and the time. A unit's COPY and its ledger row are written in ONE transaction
//! ([`crate::sink::copy`]); that boundary is the whole exactly-once story: whatever crashes —
//! the client (kill -9), the connection, the server — a unit has both its rows and its ledger
//! row, or neither. A re-run reads the ledger first and loads only what it does not list.
//!
//! The primary key `(table_name, source, lo)` also makes two importers racing on the same unit
//! safe: the second commit fails with a unique violation and its COPY rolls back with it.

use postgres::GenericClient;

use super::ident::qualified;
use crate::postgres::ddl::Dialect;

/// The `source` of the row that marks a table as created by this tool. A table with ledger rows
/// is one this tool is loading, so a re-run resumes it, even when it failed before its first
/// batch committed (without the mark it would look like someone else's table and be skipped).
pub const CREATED: &str = "";

/// The `source` of migrate's rows: their span is an id range `[lo, hi)` of the collection the
/// table is named after, as `PointKey` text (`hi` empty for +∞).
pub const MIGRATE_SOURCE: &str = "qdrant";

/// The ledger table's name in the target schema.
pub const LEDGER_TABLE: &str = "qdrant2pg_ledger";

/// One committed unit of work.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LedgerEntry {
    /// The target table, unqualified (the ledger is per schema).
    pub table: String,
    /// Where the rows came from: a file name relative to the collection directory, or a
    /// collection for migrate.
    pub source: String,
    /// Start of the span, inclusive (a byte offset, or a point id), as text.
    pub lo: String,
    /// End of the span, exclusive; empty for "to the end".
    pub hi: String,
    pub rows: u64,
    /// xxh3-64 of the bytes sent, 16 hex digits.
    pub checksum: String,
}

/// Reading or writing the ledger failed.
#[derive(Debug, thiserror::Error)]
pub enum LedgerError {
    #[error("cannot create the ledger table {table}")]
    Create {
        table: String,
        #[source]
        source: postgres::Error,
    },
    #[error("cannot read the ledger table {table}")]
    Read {
        table: String,
        #[source]
        source: postgres::Error,
    },
    #[error("cannot clear the ledger rows of table {table}")]
    Forget {
        table: String,
        #[source]
        source: postgres::Error,
    },
}

impl LedgerError {
    /// The server's error underneath.
    pub fn into_db(self) -> postgres::Error {
        match self {
            LedgerError::Create { source, .. }
            | LedgerError::Read { source, .. }
            | LedgerError::Forget { source, .. } => source,
        }
    }
}

/// The ledger of one target schema.
#[derive(Clone, Debug)]
pub struct Ledger {
    /// `schema.qdrant2pg_ledger`, quoted.
    name: String,
}

impl Ledger {
    pub fn new(schema: &str) -> Ledger {
        Ledger {
            name: qualified(Some(schema), LEDGER_TABLE),
        }
    }

    /// The qualified, quoted table name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Creates the ledger table if it is missing. Greenplum distributes it by its key.
    pub fn ensure(
        &self,
        client: &mut impl GenericClient,
        dialect: Dialect,
    ) -> Result<(), LedgerError> {
        let distributed = if dialect == Dialect::Adbpg {
            " DISTRIBUTED BY (table_name, source, lo)"
        } else {
            ""
        };
        let sql = format!(
            "CREATE TABLE IF NOT EXISTS {} (\n    table_name text NOT NULL,\n    \
             source text NOT NULL,\n    lo text NOT NULL,\n    hi text NOT NULL,\n    \
             rows bigint NOT NULL,\n    checksum text NOT NULL,\n    \
             loaded_at timestamptz NOT NULL DEFAULT now(),\n    \
             PRIMARY KEY (table_name, source, lo)\n){distributed}",
            self.name
        );
        client
            .batch_execute(&sql)
            .map_err(|source| LedgerError::Create {
                table: self.name.clone(),
                source,
            })
    }

    /// Every unit recorded for `table`.
    pub fn entries(
        &self,
        client: &mut impl GenericClient,
        table: &str,
    ) -> Result<Vec<LedgerEntry>, LedgerError> {
        self.entries_where(client, table, None)
    }

    /// The units recorded for `table` from one `source` (an export file).
    pub fn entries_for(
        &self,
        client: &mut impl GenericClient,
        table: &str,
        source: &str,
    ) -> Result<Vec<LedgerEntry>, LedgerError> {
        self.entries_where(client, table, Some(source))
    }

    fn entries_where(
        &self,
        client: &mut impl GenericClient,
        table: &str,
        source: Option<&str>,
    ) -> Result<Vec<LedgerEntry>, LedgerError> {
        let sql = format!(
            "SELECT source, lo, hi, rows, checksum FROM {} WHERE table_name = $1 \
             AND ($2::text IS NULL OR source = $2) ORDER BY source, lo",
            self.name
        );
        let rows = client
            .query(&sql, &[&table, &source])
            .map_err(|source| LedgerError::Read {
                table: self.name.clone(),
                source,
            })?;
        rows.iter()
            .map(|row| {
                let rows: i64 = row.try_get(3)?;
                Ok(LedgerEntry {
                    table: table.to_owned(),
                    source: row.try_get(0)?,
                    lo: row.try_get(1)?,
                    hi: row.try_get(2)?,
                    rows: rows.max(0) as u64,
                    checksum: row.try_get(4)?,
                })
            })
            .collect::<Result<_, postgres::Error>>()
            .map_err(|source| LedgerError::Read {
                table: self.name.clone(),
                source,
            })
    }

    /// The rows recorded for `table` from `source` (`MIGRATE_SOURCE`), summed by the server.
    pub fn loaded_rows(
        &self,
        client: &mut impl GenericClient,
        table: &str,
        source: &str,
    ) -> Result<u64, LedgerError> {
        let sql = format!(
            "SELECT coalesce(sum(rows), 0)::int8 FROM {} WHERE table_name = $1 AND source = $2",
            self.name
        );
        let rows: i64 = client
            .query_one(&sql, &[&table, &source])
            .map_err(|source| LedgerError::Read {
                table: self.name.clone(),
                source,
            })?
            .get(0);
        Ok(rows.max(0) as u64)
    }

    /// Records a unit inside the caller's transaction, the one that holds its COPY.
    pub fn record(
        &self,
        tx: &mut impl GenericClient,
        entry: &LedgerEntry,
    ) -> Result<(), postgres::Error> {
        let sql = format!(
            "INSERT INTO {} (table_name, source, lo, hi, rows, checksum) \
             VALUES ($1, $2, $3, $4, $5, $6)",
            self.name
        );
        let rows = i64::try_from(entry.rows).unwrap_or(i64::MAX);
        tx.execute(
            &sql,
            &[
                &entry.table,
                &entry.source,
                &entry.lo,
                &entry.hi,
                &rows,
                &entry.checksum,
            ],
        )
        .map(drop)
    }

    /// Marks `table` as created by this tool, in the transaction that creates (or empties) it.
    pub fn record_created(
        &self,
        tx: &mut impl GenericClient,
        table: &str,
    ) -> Result<(), postgres::Error> {
        let entry = LedgerEntry {
            table: table.to_owned(),
            source: CREATED.to_owned(),
            lo: String::new(),
            hi: String::new(),
            rows: 0,
            checksum: String::new(),
        };
        self.record(tx, &entry)
    }

    /// Drops every record of `table`, inside the caller's transaction (the one that truncates
    /// or drops the table, so the ledger never describes rows that are gone).
    pub fn forget(&self, tx: &mut impl GenericClient, table: &str) -> Result<u64, LedgerError> {
        let sql = format!("DELETE FROM {} WHERE table_name = $1", self.name);
        tx.execute(&sql, &[&table])
            .map_err(|source| LedgerError::Forget {
                table: table.to_owned(),
                source,
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ledger_lives_in_the_target_schema() {
        assert_eq!(Ledger::new("public").name(), "public.qdrant2pg_ledger");
        assert_eq!(
            Ledger::new("My Schema").name(),
            "\"My Schema\".qdrant2pg_ledger"
        );
    }
}
