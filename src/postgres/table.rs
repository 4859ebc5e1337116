//! Readying the target for a load: schema, extension, ledger, and each table as `--if-exists`
//! says. Import and migrate both load through here, so a table is treated the same whichever
//! command fills it.
//!
//! The ledger decides first: a table with ledger rows is one this tool was loading (the
//! [`CREATED`] mark is written in the same transaction as the `CREATE TABLE`), so a re-run
//! resumes it whatever `--if-exists` says, except `truncate` and `replace`, which start over.

use anyhow::{Context, bail};
use postgres::GenericClient;

use crate::postgres::ddl::Dialect;
use crate::postgres::ident::{qualified, quote_ident};
use crate::postgres::ledger::{CREATED, Ledger, LedgerEntry};
use crate::progress::Ui;

/// What to do with a table that already exists (and that this tool was not part-way through
/// loading — such a table is always resumed).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum IfExists {
    /// Leave it alone, as the guide does.
    #[default]
    Skip,
    /// Load into it (the ledger still never loads a unit twice).
    Append,
    /// Empty it, then load.
    Truncate,
    /// Drop it, create it anew, load.
    Replace,
    /// Stop with an error.
    Fail,
}

/// Creates the schema, the pgvector extension when the dialect needs it, and the ledger.
pub fn prepare_schema(
    admin: &mut impl GenericClient,
    schema: &str,
    ledger: &Ledger,
    dialect: Dialect,
) -> anyhow::Result<()> {
    admin
        .batch_execute(&format!(
            "CREATE SCHEMA IF NOT EXISTS {}",
            quote_ident(schema)
        ))
        .with_context(|| format!("creating schema {schema}"))?;
    if dialect == Dialect::Pgvector {
        admin
            .batch_execute("CREATE EXTENSION IF NOT EXISTS vector")
            .context(
                "creating the pgvector extension (CREATE EXTENSION vector needs a privileged \
                 role once per database)",
            )?;
    }
    ledger.ensure(admin, dialect)?;
    Ok(())
}

/// One table to ready: where it goes and the DDL that creates it.
pub struct TableSpec<'a> {
    pub schema: &'a str,
    /// The bare table name.
    pub table: &'a str,
    /// `CREATE TABLE …;`, qualified or not (it runs with `schema` first on the search path).
    pub ddl: &'a str,
    pub if_exists: IfExists,
}

/// Applies `--if-exists` and creates the table; returns the table's ledger entries to resume
/// from (callers keep those of their own `source`), or `None` to skip the table.
pub fn prepare_table(
    admin: &mut impl GenericClient,
    ledger: &Ledger,
    spec: &TableSpec<'_>,
    ui: &Ui,
) -> anyhow::Result<Option<Vec<LedgerEntry>>> {
    let TableSpec {
        schema,
        table,
        ddl,
        if_exists,
    } = *spec;
    let name = qualified(Some(schema), table);
    let exists = admin
        .query_opt(
            "SELECT 1 FROM information_schema.tables WHERE table_schema = $1 AND table_name = $2",
            &[&schema, &table],
        )
        .with_context(|| format!("looking for table {name}"))?
        .is_some();
    let entries = ledger.entries(admin, table)?;
    let mut tx = admin.transaction()?;
    let outcome = match (exists, entries.is_empty(), if_exists) {
        (true, false, IfExists::Skip | IfExists::Append | IfExists::Fail) => {
            let units = entries.iter().filter(|e| e.source != CREATED).count();
            ui.info(&format!("{name}: resuming ({units} units already loaded)"));
            Some(entries)
        }
        (true, true, IfExists::Skip) => {
            ui.info(&format!("{name} already exists: skipped (see --if-exists)"));
            None
        }
        (true, true, IfExists::Fail) => {
            bail!("table {name} already exists (--if-exists fail)")
        }
        (true, true, IfExists::Append) => Some(entries),
        (true, _, IfExists::Truncate) => {
            tx.batch_execute(&format!("TRUNCATE {name}"))
                .with_context(|| format!("truncating {name}"))?;
            ledger.forget(&mut tx, table)?;
            ledger.record_created(&mut tx, table)?;
            Some(Vec::new())
        }
        (true, _, IfExists::Replace) => {
            tx.batch_execute(&format!("DROP TABLE {name}"))
                .with_context(|| format!("dropping {name}"))?;
            ledger.forget(&mut tx, table)?;
            create_table(&mut tx, schema, ddl, &name)?;
            ledger.record_created(&mut tx, table)?;
            Some(Vec::new())
        }
        (false, _, _) => {
            // Ledger rows of a table that was dropped by hand describe nothing any more.
            ledger.forget(&mut tx, table)?;
            create_table(&mut tx, schema, ddl, &name)?;
            ledger.record_created(&mut tx, table)?;
            Some(Vec::new())
        }
    };
    tx.commit()
        .with_context(|| format!("preparing table {name}"))?;
    Ok(outcome)
}

/// Runs DDL with the target schema first on the search path, so the guide's unqualified
/// `CREATE TABLE name (…)` lands in the target schema, as its import.py arranges.
fn create_table(
    tx: &mut postgres::Transaction<'_>,
    schema: &str,
    ddl: &str,
    name: &str,
) -> anyhow::Result<()> {
    tx.batch_execute(&format!(
        "SET LOCAL search_path TO {}, public",
        quote_ident(schema)
    ))?;
    tx.batch_execute(ddl)
        .with_context(|| format!("creating table {name}"))
}
