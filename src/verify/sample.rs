//! `verify --sample N`: N points that exist (drawn by `Source::sample_keys`, whatever the id
//! layout), read by id from both sides and compared in canonical form; also how `--full` names
//! the rows its drill-down found.

use std::collections::HashMap;

use anyhow::Context;

use crate::point_id::PointKey;
use crate::postgres::scan::rows_by_id;
use crate::source::Source;
use crate::verify::compare::{BadTableId, CanonicalRow};
use crate::verify::findings::Findings;
use crate::verify::table::Table;

/// Ids per request when reading points and rows by id.
pub const BY_ID_CHUNK: usize = 256;

/// `--sample N`: N of the collection's `total` points (all of them when it has fewer), read by
/// id on both sides.
pub fn verify_sample(
    reader: &Source,
    db: &mut postgres::Client,
    table: &Table,
    total: u64,
    n: usize,
) -> anyhow::Result<Findings> {
    let keys = reader.sample_keys(&table.schema.name, total, n)?;
    let mut findings = Findings {
        checked: keys.len() as u64,
        asked: Some(total.min(n as u64)),
        ..Findings::default()
    };
    for chunk in keys.chunks(BY_ID_CHUNK) {
        for (key, what) in compare_by_id(reader, db, table, chunk)? {
            findings.differ(format!("id {key}: {what}"));
        }
    }
    Ok(findings)
}

/// Reads `keys` by id from both sides and says what differs, in id order.
pub fn compare_by_id(
    reader: &Source,
    db: &mut postgres::Client,
    table: &Table,
    keys: &[PointKey],
) -> anyhow::Result<Vec<(PointKey, String)>> {
    let mut rows: HashMap<PointKey, (CanonicalRow, usize)> = HashMap::new();
    rows_by_id(
        db,
        &table.scan(),
        table.form.id_column().sql_type(),
        keys,
        |fields| {
            let mut row = CanonicalRow::default();
            let key = table.form.of_table(fields, &mut row)?;
            rows.entry(key).or_insert((row, 0)).1 += 1;
            Ok::<_, BadTableId>(())
        },
    )?;
    let mut points: HashMap<PointKey, CanonicalRow> = HashMap::new();
    let (found, exact) = reader.get_points(&table.schema.name, keys)?;
    for point in exact.points(&found) {
        let mut row = CanonicalRow::default();
        let key = table
            .form
            .of_point(point, &mut row)
            .with_context(|| format!("collection {:?}", table.schema.name))?;
        points.insert(key, row);
    }
    let mut found = Vec::new();
    for &key in keys {
        let what = match (points.get(&key), rows.get(&key)) {
            (None, None) => continue,
            (Some(_), None) => "missing from the table".to_owned(),
            (None, Some(_)) => "in the table but not in Qdrant".to_owned(),
            (Some(_), Some((_, n))) if *n > 1 => format!("{n} rows in the table"),
            (Some(point), Some((row, _))) => match table.form.difference(row, point) {
                Some(what) => what,
                None => continue,
            },
        };
        found.push((key, what));
    }
    found.sort_by_key(|f| f.0);
    Ok(found)
}
