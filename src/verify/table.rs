//! The table side of one collection: its columns read from the catalog and matched to the
//! collection's layout, so that every row can be brought to the canonical form of [`compare`].
//!
//! [`compare`]: crate::verify::compare

use anyhow::{Context, bail};

use crate::layout::PayloadType;
use crate::postgres::catalog::table_columns;
use crate::postgres::ident::qualified;
use crate::postgres::scan::TableScan;
use crate::source::Source;
use crate::source::schema::CollectionSchema;
use crate::verify::compare::RowForm;

/// A collection's table, matched to the collection.
pub struct Table {
    pub schema: CollectionSchema,
    /// Qualified and quoted.
    pub name: String,
    pub form: RowForm,
}

impl Table {
    /// Reads the table's columns from the catalog and matches them to the collection's layout
    /// as `source` describes it; a table that does not fit is refused, naming what differs.
    pub fn describe(
        db: &mut postgres::Client,
        schema: &str,
        collection: &str,
        source: &Source,
    ) -> anyhow::Result<Table> {
        let name = qualified(Some(schema), collection);
        let columns = table_columns(db, schema, collection)
            .with_context(|| format!("reading the columns of {name}"))?;
        if columns.is_empty() {
            bail!(
                "table {name} does not exist (import or migrate collection {collection:?} first)"
            );
        }
        let payload = match columns.iter().find(|(n, _)| n == "payload") {
            Some((_, t)) if t == "jsonb" => PayloadType::Jsonb,
            _ => PayloadType::Json,
        };
        let schema =
            CollectionSchema::from_info(collection, source.collection_info(collection)?, payload)?;
        let form = RowForm::new(&schema.layout, &columns)
            .with_context(|| format!("table {name} does not fit collection {collection:?}"))?;
        Ok(Table { schema, name, form })
    }

    /// A scan of every row's compared columns.
    pub fn scan(&self) -> TableScan<'_> {
        TableScan {
            table: &self.name,
            columns: self.form.columns(),
            only: None,
        }
    }
}
