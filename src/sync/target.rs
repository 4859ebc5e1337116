//! The table as `sync` writes it: checked to be exactly what `migrate` would create for the
//! collection as it is now, and repaired a batch of ids at a time.
//!
//! **The check.** The columns a pass writes are the ones the DDL of the collection's current
//! layout declares for the dialect, with the id kind and the sparse index width the table
//! already has (`postgres::ddl::columns`). A table that differs — a named vector added in
//! Qdrant, a column the user added, dropped or retyped, another `--dialect` or `--halfvec` —
//! is refused before anything is written, naming the column.
//!
//! **A repair batch** is one transaction: `DELETE` of every id of the batch, then a COPY of the
//! points Qdrant returned for them (migrate's encoders, its COPY format), committed together. A
//! kill -9 at any moment leaves each batch wholly done or not at all, and the next pass
//! converges. An id is deleted without replacement only when Qdrant, asked for it by id, did
//! not return it: proven gone, never assumed.

use postgres::Client;

use crate::encode::RowEncoder;
use crate::encode::binary::BinaryRowEncoder;
use crate::encode::text::TextRowEncoder;
use crate::layout::{DataFacts, Halfvec, IdKind, Layout};
use crate::payload::PointRef;
use crate::point_id::PointKey;
use crate::postgres::catalog::table_columns;
use crate::postgres::ddl::{self, DdlOptions, Dialect, VectorStorage};
use crate::postgres::scan::ids_condition;
use crate::sink::copy::{CopyError, CopyFormat, CopyTarget, copy_in};
use crate::sync::cache::RowVersions;

/// The table does not fit the collection as it is now.
#[derive(Debug, thiserror::Error)]
pub enum TableMismatch {
    #[error(
        "table {table}: it has no column {column:?}, which the collection now needs ({sql_type}); \
         was a vector added in Qdrant, or the column dropped? Migrate into a new table \
         (--if-exists replace), or add the column"
    )]
    Missing {
        table: String,
        column: String,
        sql_type: String,
    },
    #[error(
        "table {table}: column {column:?} is {found}, where the collection with --dialect \
         {dialect} needs {expected}; check --dialect and --halfvec"
    )]
    Type {
        table: String,
        column: String,
        found: String,
        expected: String,
        dialect: &'static str,
    },
    #[error(
        "table {table}: column {column:?} is not one the collection gives ({found}); sync writes \
         only the collection's columns and refuses a table with more"
    )]
    Extra {
        table: String,
        column: String,
        found: String,
    },
    #[error("reading the columns of {table}")]
    Catalog {
        table: String,
        #[source]
        source: postgres::Error,
    },
}

/// How a table's rows are written.
pub struct TableWriter {
    copy: CopyTarget,
    encoder: Box<dyn RowEncoder>,
    /// The id and sparse facts the table's types fix: what every encoded row must fit.
    facts: DataFacts,
    /// The id column's type, for `id = ANY(…)`.
    id_type: String,
}

impl TableWriter {
    /// Checks `table` of `schema` against `layout` in `dialect` and prepares its writer.
    pub fn check(
        db: &mut Client,
        schema: &str,
        table: &str,
        layout: &Layout,
        dialect: Dialect,
        halfvec: Halfvec,
    ) -> Result<TableWriter, TableMismatch> {
        let qualified = crate::postgres::ident::qualified(Some(schema), table);
        let columns =
            table_columns(db, schema, table).map_err(|source| TableMismatch::Catalog {
                table: qualified.clone(),
                source,
            })?;
        let facts = facts_of(layout, &columns);
        let options = DdlOptions {
            dialect,
            halfvec,
            storage: VectorStorage::default(),
        };
        let expected = ddl::columns(layout, &facts, options);
        for want in &expected {
            let Some((_, found)) = columns.iter().find(|(name, _)| *name == want.name) else {
                return Err(TableMismatch::Missing {
                    table: qualified,
                    column: want.name.clone(),
                    sql_type: want.sql_type.clone(),
                });
            };
            // format_type() says `real[]` for `real[][]`: the column type keeps no dimensions.
            let want_type = want.sql_type.replace("[][]", "[]");
            if *found != want_type {
                return Err(TableMismatch::Type {
                    table: qualified,
                    column: want.name.clone(),
                    found: found.clone(),
                    expected: want_type,
                    dialect: dialect.name(),
                });
            }
        }
        if let Some((column, found)) = columns
            .iter()
            .find(|(name, _)| !expected.iter().any(|c| c.name == *name))
        {
            return Err(TableMismatch::Extra {
                table: qualified,
                column: column.clone(),
                found: found.clone(),
            });
        }
        let syntax = dialect.vector_syntax();
        let format =
            CopyFormat::for_target(dialect, db).map_err(|source| TableMismatch::Catalog {
                table: qualified.clone(),
                source,
            })?;
        let encoder: Box<dyn RowEncoder> = match format {
            CopyFormat::Text => Box::new(TextRowEncoder::new(layout, syntax)),
            CopyFormat::Binary => {
                Box::new(BinaryRowEncoder::new(layout, &facts, syntax).with_halfvec(halfvec))
            }
        };
        Ok(TableWriter {
            copy: CopyTarget {
                schema: schema.to_owned(),
                table: table.to_owned(),
                columns: layout.columns(syntax),
                format,
            },
            encoder,
            id_type: facts.id_kind().sql_type().to_owned(),
            facts,
        })
    }

    /// Encodes `points` as one COPY stream into `rows`.
    pub fn encode<'p>(
        &self,
        points: impl Iterator<Item = PointRef<'p>>,
        rows: &mut Vec<u8>,
    ) -> Result<(), crate::encode::EncodeError> {
        rows.clear();
        let mut facts = self.facts.clone();
        self.encoder.start_stream(rows);
        for point in points {
            self.encoder.encode(point, rows, &mut facts)?;
        }
        self.encoder.end_stream(rows);
        Ok(())
    }

    /// One repair batch in one transaction: deletes the rows of `ids`, then loads `rows` (the
    /// encoded points Qdrant returned for them, `expected` in all). Returns the row versions
    /// it deleted and the ones it wrote, as `versions` hashes them.
    pub fn replace(
        &self,
        client: &mut Client,
        versions: &RowVersions,
        ids: &[PointKey],
        rows: &[u8],
        expected: u64,
        buf: &mut Vec<u8>,
    ) -> Result<Replaced, CopyError> {
        let condition = ids_condition(&self.id_type, ids);
        let mut tx = client.transaction().map_err(CopyError::Db)?;
        let hashes = |rows: Vec<postgres::Row>| rows.iter().map(|r| r.get(0)).collect();
        let deleted = hashes(
            tx.query(&versions.delete_returning(&condition), &[])
                .map_err(CopyError::Db)?,
        );
        let mut written = Vec::new();
        if expected > 0 {
            let (loaded, _) = copy_in(&mut tx, &self.copy, &mut &rows[..], buf)?;
            if loaded != expected {
                return Err(CopyError::RowCount {
                    expected,
                    actual: loaded,
                });
            }
            written = hashes(
                tx.query(&versions.select(&condition), &[])
                    .map_err(CopyError::Db)?,
            );
        }
        tx.commit().map_err(CopyError::Db)?;
        Ok(Replaced { deleted, written })
    }
}

/// The row versions one repair batch deleted and wrote, hashed as its table's fingerprint
/// counts them.
pub struct Replaced {
    pub deleted: Vec<i64>,
    pub written: Vec<i64>,
}

/// The facts the table's column types fix: the id kind its `id` column holds, and which sparse
/// vectors have `bigint[]` indices.
fn facts_of(layout: &Layout, columns: &[(String, String)]) -> DataFacts {
    let mut facts = DataFacts::for_layout(layout);
    let type_of = |name: &str| {
        columns
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, t)| t.as_str())
    };
    let kind = match type_of("id") {
        Some("uuid") => IdKind::Uuid,
        Some("text") => IdKind::Text,
        Some(t) if t.starts_with("numeric") => IdKind::Numeric,
        _ => IdKind::Bigint,
    };
    match kind {
        IdKind::Bigint => facts.note_id(PointKey::Num(0)),
        IdKind::Numeric => facts.note_id(PointKey::Num(u64::MAX)),
        IdKind::Uuid => facts.note_id(PointKey::Uuid(0)),
        IdKind::Text => {
            facts.note_id(PointKey::Num(0));
            facts.note_id(PointKey::Uuid(0));
        }
    }
    let sparse = layout
        .vectors
        .iter()
        .filter(|v| v.shape == crate::layout::VectorShape::Sparse);
    for (slot, v) in sparse.enumerate() {
        if type_of(&format!("{}_indices", v.column())) == Some("bigint[]") {
            facts.note_sparse_index(slot, u32::MAX);
        }
    }
    facts
}

/// Takes the session lock that keeps two syncs off one table (held until `db` closes); `false`
/// when another session holds it. Two passes at once would each repair what the other is
/// changing.
pub fn lock_table(db: &mut Client, schema: &str, table: &str) -> Result<bool, postgres::Error> {
    let key = xxhash_rust::xxh3::xxh3_64(format!("{schema}\0{table}").as_bytes());
    let (class, object) = (SYNC_LOCK_CLASS, key as u32 as i32);
    Ok(db
        .query_one("SELECT pg_try_advisory_lock($1, $2)", &[&class, &object])?
        .get(0))
}

/// The advisory lock class of sync's table locks: negative, so it never meets a shared run's
/// classes (`run::store` takes only positive ones, from the schema's hash).
const SYNC_LOCK_CLASS: i32 = -0x7173_796f;
