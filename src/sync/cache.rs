//! What a pass keeps of a table's side for the next one, so that the next pass need not read
//! the table whole: Qdrant's side must be read every time (it has no change feed), the table's
//! only when someone other than `sync` may have written it.
//!
//! Kept, in `qdrant2pg_sync` in the target schema, per table: the table's digest buckets as the
//! pass left them, and a fingerprint of the table's row versions — the count of its rows and the
//! sum of a 64-bit hash of each row version's `(ctid, xmin)` (`gp_segment_id` too on Greenplum,
//! whose ctids are per segment), computed by the server over the table's main fork without
//! reading a vector. Any write by anyone changes it: an insert adds a row version, a delete
//! removes one, an update does both, and a row that reuses a freed slot has a new `xmin`; so does
//! a TRUNCATE and reload, or a VACUUM FULL (new ctids).
//!
//! A pass that reads the table whole takes the fingerprint before it reads, and every repair
//! batch adds what it inserted and subtracts what it deleted (`DELETE … RETURNING` and a look at
//! the rows it wrote, in the batch's own transaction), so the kept fingerprint is the table's as
//! the pass left it, with no other writer counted in. The next pass trusts the kept buckets only
//! when the table's fingerprint is still that: then it reads Qdrant alone, and for the buckets
//! that differ, reads the table's ids (ids only) and just those buckets' rows by id. Anything
//! else — no kept state, another fingerprint, a pass that did not finish (its state is dropped
//! before its first repair) — reads the table whole, as `verify --full` does.
//!
//! Why not PostgreSQL's write counters (`pg_stat_user_tables`): a backend reports its counts up
//! to a second after it commits, a reset or an aborted insert moves them, and on Greenplum the
//! coordinator's counters do not see the segments' writes; the fingerprint is exact, the same on
//! both, and costs one scan of the main fork.

use postgres::{Client, GenericClient, Transaction};

use crate::postgres::catalog::is_greenplum;
use crate::postgres::ident::qualified;
use crate::sink::copy::{Commits, CopyError, durable_commit};
use crate::verify::digest::Buckets;

/// The table that keeps each synced table's state, in the target schema.
pub const SYNC_TABLE: &str = "qdrant2pg_sync";

/// A table's row versions, summed: equal fingerprints, untouched table (but for a 64-bit hash
/// collision).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Fingerprint {
    pub rows: i64,
    pub sum: i128,
}

impl Fingerprint {
    fn parse(rows: i64, sum: &str) -> Option<Fingerprint> {
        Some(Fingerprint {
            rows,
            sum: sum.parse().ok()?,
        })
    }

    /// Rows a repair batch inserted (`hashes` of each) and deleted.
    pub fn apply(&mut self, inserted: &[i64], deleted: &[i64]) {
        self.rows += inserted.len() as i64 - deleted.len() as i64;
        self.sum += inserted.iter().map(|&h| i128::from(h)).sum::<i128>();
        self.sum -= deleted.iter().map(|&h| i128::from(h)).sum::<i128>();
    }
}

/// How one table's row versions are hashed, in SQL.
#[derive(Clone, Debug)]
pub struct RowVersions {
    /// Qualified and quoted.
    table: String,
    /// The SQL expression of one row version's 64-bit hash.
    hash: &'static str,
}

impl RowVersions {
    pub fn new(
        db: &mut impl GenericClient,
        schema: &str,
        table: &str,
    ) -> Result<Self, postgres::Error> {
        let hash = if is_greenplum(db)? {
            "('x' || substr(md5(gp_segment_id::text || ':' || ctid::text || ':' || xmin::text), 1, 16))::bit(64)::int8"
        } else {
            "('x' || substr(md5(ctid::text || ':' || xmin::text), 1, 16))::bit(64)::int8"
        };
        Ok(RowVersions {
            table: qualified(Some(schema), table),
            hash,
        })
    }

    /// The table's fingerprint now.
    pub fn fingerprint(&self, db: &mut impl GenericClient) -> Result<Fingerprint, postgres::Error> {
        let row = db.query_one(
            &format!(
                "SELECT count(*)::int8, coalesce(sum({}), 0)::text FROM {}",
                self.hash, self.table
            ),
            &[],
        )?;
        Ok(Fingerprint::parse(row.get(0), &row.get::<_, String>(1)).unwrap_or_default())
    }

    /// `DELETE … RETURNING` of `condition`'s rows, giving each deleted row version's hash.
    pub fn delete_returning(&self, condition: &str) -> String {
        format!(
            "DELETE FROM {} WHERE {condition} RETURNING {}",
            self.table, self.hash
        )
    }

    /// The hashes of `condition`'s row versions.
    pub fn select(&self, condition: &str) -> String {
        format!("SELECT {} FROM {} WHERE {condition}", self.hash, self.table)
    }
}

/// What the last finished pass left of one table.
pub struct Kept {
    pub fingerprint: Fingerprint,
    pub buckets: Buckets,
}

/// The kept state of the target schema's synced tables.
pub struct KeptStates {
    table: String,
}

impl KeptStates {
    /// Creates `qdrant2pg_sync` where it is missing.
    pub fn open(db: &mut Client, schema: &str, greenplum: bool) -> Result<Self, postgres::Error> {
        let table = qualified(Some(schema), SYNC_TABLE);
        let distributed = if greenplum {
            " DISTRIBUTED BY (table_name)"
        } else {
            ""
        };
        db.batch_execute(&format!(
            "CREATE TABLE IF NOT EXISTS {table} (\n    table_name text PRIMARY KEY,\n    \
             rows bigint NOT NULL,\n    fingerprint text NOT NULL,\n    buckets bytea NOT NULL,\n    \
             kept_at timestamptz NOT NULL DEFAULT now()\n){distributed}"
        ))?;
        Ok(KeptStates { table })
    }

    /// `table`'s kept state, if a finished pass left one.
    pub fn get(&self, db: &mut Client, table: &str) -> Result<Option<Kept>, postgres::Error> {
        let row = db.query_opt(
            &format!(
                "SELECT rows, fingerprint, buckets FROM {} WHERE table_name = $1",
                self.table
            ),
            &[&table],
        )?;
        Ok(row.and_then(|row| {
            Some(Kept {
                fingerprint: Fingerprint::parse(row.get(0), &row.get::<_, String>(1))?,
                buckets: Buckets::from_bytes(row.get::<_, &[u8]>(2))?,
            })
        }))
    }

    /// Forgets `table`'s state: done before a pass's first repair, so that a pass that does not
    /// finish leaves nothing to trust.
    pub fn forget(&self, db: &mut Client, table: &str) -> Result<(), postgres::Error> {
        db.execute(
            &format!("DELETE FROM {} WHERE table_name = $1", self.table),
            &[&table],
        )?;
        Ok(())
    }

    /// Keeps what a finished pass leaves of `table`. With [`Commits::Deferred`] the pass's
    /// repairs committed without waiting for their WAL flush, and this is the durable commit
    /// that, later in the same WAL, returns only once they are on disk too; with
    /// [`Commits::EachDurable`] every commit already waited, and so does this one.
    pub fn keep(
        &self,
        db: &mut Client,
        table: &str,
        kept: &Kept,
        commits: Commits,
    ) -> Result<(), CopyError> {
        let mut write = |tx: &mut Transaction<'_>| {
            tx.execute(
                &format!("DELETE FROM {} WHERE table_name = $1", self.table),
                &[&table],
            )?;
            tx.execute(
                &format!(
                    "INSERT INTO {} (table_name, rows, fingerprint, buckets) VALUES ($1, $2, $3, \
                     $4)",
                    self.table
                ),
                &[
                    &table,
                    &kept.fingerprint.rows,
                    &kept.fingerprint.sum.to_string(),
                    &kept.buckets.to_bytes(),
                ],
            )
        };
        match commits {
            Commits::Deferred => durable_commit(db, &mut write),
            Commits::EachDurable => {
                let mut tx = db.transaction().map_err(CopyError::Db)?;
                write(&mut tx).map_err(CopyError::Db)?;
                tx.commit().map_err(CopyError::Db)
            }
        }
    }
}
