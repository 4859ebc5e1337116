//! What the target already has and can do, read from PostgreSQL's catalog.

use postgres::GenericClient;

/// `(column, format_type)` of a table, in column order; empty when the table does not exist.
pub fn table_columns(
    db: &mut impl GenericClient,
    schema: &str,
    table: &str,
) -> Result<Vec<(String, String)>, postgres::Error> {
    Ok(db
        .query(
            "SELECT a.attname::text, format_type(a.atttypid, a.atttypmod) FROM pg_attribute a \
             JOIN pg_class c ON c.oid = a.attrelid JOIN pg_namespace n ON n.oid = c.relnamespace \
             WHERE n.nspname = $1 AND c.relname = $2 AND a.attnum > 0 AND NOT a.attisdropped \
             ORDER BY a.attnum",
            &[&schema, &table],
        )?
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect())
}

/// Whether some index of `table` leads with its `id` column.
pub fn id_is_indexed(
    db: &mut impl GenericClient,
    schema: &str,
    table: &str,
) -> Result<bool, postgres::Error> {
    Ok(db
        .query_one(
            "SELECT EXISTS (SELECT 1 FROM pg_index i JOIN pg_class c ON c.oid = i.indrelid \
             JOIN pg_namespace n ON n.oid = c.relnamespace JOIN pg_attribute a \
             ON a.attrelid = i.indrelid AND a.attnum = i.indkey[0] \
             WHERE n.nspname = $1 AND c.relname = $2 AND a.attname = 'id')",
            &[&schema, &table],
        )?
        .get(0))
}

/// `server_version_num`: 90426 for Greenplum 6.24 (PostgreSQL 9.4 underneath), 150004, ….
pub fn server_version_num(db: &mut impl GenericClient) -> Result<u32, postgres::Error> {
    let text: String = db
        .query_one("SELECT current_setting('server_version_num')", &[])?
        .get(0);
    // A server that answers something else is older than any this tool supports.
    Ok(text.trim().parse().unwrap_or(0))
}

/// Whether the server is Greenplum-based (Greenplum, AnalyticDB for PostgreSQL), as its
/// `version()` says.
pub fn is_greenplum(db: &mut impl GenericClient) -> Result<bool, postgres::Error> {
    let version: String = db.query_one("SELECT version()", &[])?.get(0);
    Ok(version.contains("Greenplum"))
}

/// Whether the index access method `name` (`hnsw`, AnalyticDB's `ann`) is installed.
pub fn access_method_exists(
    db: &mut impl GenericClient,
    name: &str,
) -> Result<bool, postgres::Error> {
    Ok(db
        .query_one(
            "SELECT EXISTS (SELECT 1 FROM pg_am WHERE amname = $1)",
            &[&name],
        )?
        .get(0))
}

/// The names of every index in `schema`.
pub fn index_names(
    db: &mut impl GenericClient,
    schema: &str,
) -> Result<std::collections::HashSet<String>, postgres::Error> {
    Ok(db
        .query(
            "SELECT c.relname::text FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
             WHERE n.nspname = $1 AND c.relkind = 'i'",
            &[&schema],
        )?
        .iter()
        .map(|r| r.get(0))
        .collect())
}
