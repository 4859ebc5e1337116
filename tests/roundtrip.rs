//! Round trips with PostgreSQL as the oracle: random points full of hazards are encoded by our
//! COPY text and COPY binary encoders, loaded into a real server into the table our DDL declares,
//! read back and compared bit for bit with what was generated. The binary encoder's bytes are
//! also compared, field by field, with PostgreSQL's own `COPY … TO STDOUT (FORMAT binary)` of
//! the rows it parsed from our text, so the two encoders are held to the server and to each
//! other.
//!
//! Three targets: plain arrays on PostgreSQL 15 (`real[]`, `real[][]`, sparse as two arrays),
//! pgvector's types on PostgreSQL 18 (`vector`, `halfvec`, `sparsevec`), and the same arrays in
//! the `adbpg` dialect on a genuine Greenplum 6 (PostgreSQL 9.4 underneath: its `real` input
//! and output are the old ones, and its text COPY has no `HEADER`, so the header is stripped
//! client-side as import does).
//!
//! The generator is seeded. Each test runs rounds for a time budget (`QDRANT2PG_ROUNDTRIP_SECS`,
//! default 5 s); a failure names the round's seed, and `QDRANT2PG_ROUNDTRIP_SEED=<seed>` replays
//! exactly that round first.

use std::collections::{HashMap, HashSet};
use std::error::Error;
use std::fmt::Write as _;
use std::io::{Read, Write};
use std::time::{Duration, Instant};

use crate::support::exact_json::parse_json_exactly;
use crate::support::rng::Rng;
use postgres::types::{FromSql, Kind as PgKind, Type};
use qdrant_client::qdrant::value::Kind;
use qdrant_client::qdrant::vector_output::Vector;
use qdrant_client::qdrant::vectors_output::VectorsOptions;
use qdrant_client::qdrant::{
    DenseVector, ListValue, MultiDenseVector, NamedVectorsOutput, RetrievedPoint, SparseIndices,
    SparseVector, Struct, Value, VectorOutput, VectorsOutput,
};
use qdrant2pg::encode::binary::BinaryRowEncoder;
use qdrant2pg::encode::text::TextRowEncoder;
use qdrant2pg::encode::{EncodeError, RowEncoder};
use qdrant2pg::layout::{
    DataFacts, Datatype, Halfvec, Layout, PayloadType, SPARSEVEC_MAX_DIM, VectorShape, VectorSpec,
    VectorSyntax,
};
use qdrant2pg::point_id::PointKey;
use qdrant2pg::postgres::ddl::{self, DdlOptions, Dialect};
use qdrant2pg::postgres::ident::quote_ident;

use crate::support::greenplum::Greenplum;
use crate::support::pg::PgCluster;

#[test]
fn arrays_round_trip_through_postgres_15() {
    run_rounds(Target::Arrays);
}

#[test]
fn pgvector_types_round_trip_through_postgres_18() {
    run_rounds(Target::Pgvector);
}

#[test]
fn arrays_round_trip_through_greenplum_6() {
    if Greenplum::shared().is_some() {
        run_rounds(Target::Greenplum);
    }
}

/// Which column types the table gets, and so which values a point may hold.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Target {
    /// PostgreSQL 15, `Dialect::Postgres`: every f32 (NaN, ±inf included), any sparse index.
    Arrays,
    /// PostgreSQL 18 + pgvector, `Dialect::Pgvector`: finite values only, as pgvector requires.
    Pgvector,
    /// Greenplum 6, `Dialect::Adbpg`: arrays as on PostgreSQL 15.
    Greenplum,
}

impl Target {
    fn syntax(self) -> VectorSyntax {
        match self {
            Target::Arrays | Target::Greenplum => VectorSyntax::Array,
            Target::Pgvector => VectorSyntax::Pgvector,
        }
    }

    fn dialect(self) -> Dialect {
        match self {
            Target::Arrays => Dialect::Postgres,
            Target::Pgvector => Dialect::Pgvector,
            Target::Greenplum => Dialect::Adbpg,
        }
    }
}

fn run_rounds(target: Target) {
    let budget = std::env::var("QDRANT2PG_ROUNDTRIP_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .map_or(Duration::from_secs(5), Duration::from_secs_f64);
    let replay: Option<u64> = std::env::var("QDRANT2PG_ROUNDTRIP_SEED")
        .ok()
        .and_then(|s| s.parse().ok());
    let first = replay.unwrap_or_else(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64)
    });
    let db = match target {
        Target::Arrays => PgCluster::pg15().create_database(),
        Target::Pgvector => PgCluster::pg18_vector().create_database(),
        Target::Greenplum => Greenplum::shared()
            .expect("the caller checked that Greenplum is installed")
            .create_database(),
    };
    let mut client = db.client();
    if target == Target::Pgvector {
        client.batch_execute("CREATE EXTENSION vector").unwrap();
    }
    let started = Instant::now();
    let (mut rounds, mut rows) = (0u64, 0usize);
    while rounds == 0 || started.elapsed() < budget {
        let seed = first.wrapping_add(rounds);
        let case = Case::generate(&mut Rng(seed), target);
        match round_trip(&mut client, &case, &format!("r{rounds}")) {
            Ok(n) => rows += n,
            Err(why) => panic!(
                "{target:?} round trip failed (replay: QDRANT2PG_ROUNDTRIP_SEED={seed}):\n{why}\n\
                 layout: {:#?}",
                case.layout
            ),
        }
        rounds += 1;
    }
    eprintln!("{target:?}: {rounds} rounds, {rows} rows, first seed {first}");
}

/// One generated table: a layout and points for it, with what each should read back as.
struct Case {
    target: Target,
    /// Which dense pgvector columns are `halfvec` (always `Never` for arrays).
    halfvec: Halfvec,
    /// Load the text with the guide's own COPY statement.
    guide_copy: bool,
    layout: Layout,
    points: Vec<Generated>,
}

struct Generated {
    key: PointKey,
    /// Per layout vector, in layout order; `None` where the point lacks it.
    vectors: Vec<Option<VectorValue>>,
    point: RetrievedPoint,
    /// A `\u0000` somewhere in the payload, which `jsonb` cannot store.
    has_nul: bool,
}

#[derive(Clone, Debug, PartialEq)]
enum VectorValue {
    Dense(Vec<f32>),
    Multi(Vec<Vec<f32>>),
    Sparse(Vec<u32>, Vec<f32>),
}

/// Encodes, loads and reads back one case; returns the rows checked, or every mismatch.
fn round_trip(client: &mut postgres::Client, case: &Case, name: &str) -> Result<usize, String> {
    let syntax = case.target.syntax();
    let jsonb = case.layout.payload == PayloadType::Jsonb;
    let text_encoder = TextRowEncoder::new(&case.layout, syntax);
    let mut text = Vec::new();
    text_encoder.header(&mut text);
    let header_len = text.len();
    let mut facts = DataFacts::for_layout(&case.layout);
    let mut loaded = Vec::new();
    for p in &case.points {
        match text_encoder.encode((&p.point).into(), &mut text, &mut facts) {
            Ok(key) if key == p.key && !(jsonb && p.has_nul) => loaded.push(p),
            Err(EncodeError::NulInJsonb { id }) if jsonb && p.has_nul && id == p.key => {}
            other => return Err(format!("text encoder on point {}: {other:?}", p.key)),
        }
    }

    let binary_encoder =
        BinaryRowEncoder::new(&case.layout, &facts, syntax).with_halfvec(case.halfvec);
    let mut binary = Vec::new();
    binary_encoder.start_stream(&mut binary);
    let mut binary_facts = DataFacts::for_layout(&case.layout);
    for p in &case.points {
        match binary_encoder.encode((&p.point).into(), &mut binary, &mut binary_facts) {
            Ok(key) if key == p.key && !(jsonb && p.has_nul) => {}
            // The text encoder refused it, so the id kind may not fit it either.
            Err(EncodeError::NulInJsonb { id } | EncodeError::IdKind { id, .. })
                if jsonb && p.has_nul && id == p.key => {}
            other => return Err(format!("binary encoder on point {}: {other:?}", p.key)),
        }
    }
    binary_encoder.end_stream(&mut binary);
    // A refused point may leave what its vectors taught in one encoder's facts but not the
    // other's (it is refused at a different field); otherwise they must agree.
    if loaded.len() == case.points.len() && binary_facts != facts {
        return Err(format!(
            "the encoders learned different facts: {facts:?} / {binary_facts:?}"
        ));
    }

    let (text_table, binary_table) = (format!("{name}_text"), format!("{name}_binary"));
    for table in [&text_table, &binary_table] {
        let ddl = ddl::create_table_sql_with(None, table, &case.layout, &facts, case.ddl_options());
        client
            .batch_execute(&ddl)
            .map_err(|e| format!("{ddl}: {}", db_error(&e)))?;
    }
    // Half the rounds load the way the guide's import.py does; the others also have the server
    // check the header against the table's columns.
    let (copy_text, stream) = match (case.target, case.guide_copy) {
        (Target::Greenplum, _) => (
            format!("COPY {text_table} FROM STDIN DELIMITER '|'"),
            &text[header_len..],
        ),
        (_, true) => (
            format!("COPY {text_table} FROM STDIN DELIMITER '|' HEADER"),
            &text[..],
        ),
        (_, false) => (
            format!("COPY {text_table} FROM STDIN (FORMAT text, DELIMITER '|', HEADER MATCH)"),
            &text[..],
        ),
    };
    copy_in(client, &copy_text, stream).map_err(|e| {
        format!(
            "COPY text: {e}\nstream:\n{}",
            String::from_utf8_lossy(&text)
        )
    })?;
    copy_in(
        client,
        &format!("COPY {binary_table} FROM STDIN (FORMAT binary)"),
        &binary,
    )
    .map_err(|e| format!("COPY binary: {e}"))?;

    for table in [&text_table, &binary_table] {
        check_table(client, case, &loaded, table)?;
    }
    compare_with_server_binary(client, case, &facts, &text_table, &binary)?;
    Ok(loaded.len())
}

fn copy_in(client: &mut postgres::Client, sql: &str, data: &[u8]) -> Result<(), String> {
    let mut writer = client.copy_in(sql).map_err(|e| db_error(&e))?;
    writer.write_all(data).map_err(|e| e.to_string())?;
    writer.finish().map(drop).map_err(|e| db_error(&e))
}

/// The server's message with its detail and context (which COPY line failed).
fn db_error(e: &postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => format!(
            "{}: {} (detail: {:?}, context: {:?})",
            db.code().code(),
            db.message(),
            db.detail(),
            db.where_()
        ),
        None => format!("{e:?}"),
    }
}

/// Reads `table` back and compares every row with what was generated.
fn check_table(
    client: &mut postgres::Client,
    case: &Case,
    loaded: &[&Generated],
    table: &str,
) -> Result<(), String> {
    let names = case.layout.columns(case.target.syntax());
    let select: Vec<String> = names
        .iter()
        .zip(ddl::columns(
            &case.layout,
            &DataFacts::default(),
            case.ddl_options(),
        ))
        .map(|(name, column)| {
            let name = quote_ident(name);
            match column.sql_type.split('(').next() {
                _ if column.name == "id" || column.name == "payload" => format!("{name}::text"),
                Some("vector" | "halfvec") => format!("{name}::real[]"),
                Some("sparsevec") => format!("{name}::text"),
                _ => name.into_owned(),
            }
        })
        .collect();
    let sql = format!("SELECT {} FROM {table}", select.join(", "));
    let rows = client
        .query(&sql, &[])
        .map_err(|e| format!("{sql}: {}", db_error(&e)))?;
    if rows.len() != loaded.len() {
        return Err(format!(
            "{table}: {} rows, expected {}",
            rows.len(),
            loaded.len()
        ));
    }
    let expected: HashMap<String, &Generated> =
        loaded.iter().map(|p| (p.key.to_string(), *p)).collect();
    let mut seen = HashSet::new();
    let mut problems = String::new();
    for row in &rows {
        let id: String = row.get(0);
        let Some(p) = expected.get(&id) else {
            return Err(format!("{table}: id {id:?} was never generated"));
        };
        if !seen.insert(id.clone()) {
            return Err(format!("{table}: id {id} twice"));
        }
        let mut column = 1;
        for (spec, value) in case.layout.vectors.iter().zip(&p.vectors) {
            let found = read_vector(row, &mut column, spec, case.target)
                .map_err(|e| format!("{table}, point {id}, vector {:?}: {e}", spec.name))?;
            let wanted = value.as_ref().map(|v| as_stored(v, spec, case.target));
            if !same_vector(&wanted, &found) {
                let _ = writeln!(
                    problems,
                    "{table}, point {id}, vector {:?}:\n  expected {wanted:?}\n  found    {found:?}",
                    spec.name
                );
            }
        }
        let payload: String = row.get(column);
        let found = parse_json_exactly(&payload)
            .map_err(|e| format!("{table}, point {id}: payload {payload:?}: {e}"))?;
        let wanted = payload_json(&p.point.payload);
        if !same_json(&wanted, &found) {
            let _ = writeln!(
                problems,
                "{table}, point {id}, payload:\n  expected {wanted}\n  found    {found}"
            );
        }
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(problems)
    }
}

/// Reads one layout vector from `row` starting at column `*at` (two columns for a sparse
/// vector stored as arrays), as a [`VectorValue`].
fn read_vector(
    row: &postgres::Row,
    at: &mut usize,
    spec: &VectorSpec,
    target: Target,
) -> Result<Option<VectorValue>, String> {
    let get_array = |i: usize| {
        row.try_get::<_, Option<PgArray>>(i)
            .map_err(|e| e.to_string())
    };
    let column = *at;
    *at += 1;
    let floats = |column| get_array(column)?.map(PgArray::floats).transpose();
    Ok(match (spec.shape, target) {
        (VectorShape::Dense, _) => match floats(column)? {
            None => None,
            Some((dims, values)) if dims.len() == 1 => Some(VectorValue::Dense(values)),
            Some((dims, _)) => return Err(format!("a dense vector with dimensions {dims:?}")),
        },
        (VectorShape::Multi, _) => match floats(column)? {
            None => None,
            Some((dims, values)) => match dims.as_slice() {
                &[_, d] if d > 0 => Some(VectorValue::Multi(
                    values.chunks(d as usize).map(<[f32]>::to_vec).collect(),
                )),
                _ => return Err(format!("a multivector with dimensions {dims:?}")),
            },
        },
        (VectorShape::Sparse, Target::Arrays | Target::Greenplum) => {
            *at += 1;
            match (get_array(column)?, get_array(column + 1)?) {
                (None, None) => None,
                (Some(indices), Some(values)) => {
                    let indices = indices.integers()?;
                    let (_, values) = values.floats()?;
                    Some(VectorValue::Sparse(indices, values))
                }
                (i, v) => return Err(format!("indices {i:?} but values {v:?}")),
            }
        }
        (VectorShape::Sparse, Target::Pgvector) => row
            .try_get::<_, Option<String>>(column)
            .map_err(|e| e.to_string())?
            .map(|text| parse_sparsevec(&text))
            .transpose()?,
    })
}

/// pgvector's sparsevec text `{1:0.5,3:2}/dim` as 0-based indices and values.
fn parse_sparsevec(text: &str) -> Result<VectorValue, String> {
    let body = text
        .strip_prefix('{')
        .and_then(|t| t.split_once("}/"))
        .map(|(body, _)| body)
        .ok_or_else(|| format!("not a sparsevec: {text:?}"))?;
    let (mut indices, mut values) = (Vec::new(), Vec::new());
    for entry in body.split(',').filter(|e| !e.is_empty()) {
        let parsed = entry.split_once(':').and_then(|(i, v)| {
            Some((
                i.parse::<u32>().ok()?.checked_sub(1)?,
                v.parse::<f32>().ok()?,
            ))
        });
        let (i, v) = parsed.ok_or_else(|| format!("bad sparsevec entry {entry:?} in {text:?}"))?;
        indices.push(i);
        values.push(v);
    }
    Ok(VectorValue::Sparse(indices, values))
}

/// What the column stores for `value`: pgvector's sparsevec keeps non-zero entries only, in
/// index order.
fn as_stored(value: &VectorValue, spec: &VectorSpec, target: Target) -> VectorValue {
    match (value, spec.shape, target) {
        (VectorValue::Sparse(indices, values), VectorShape::Sparse, Target::Pgvector) => {
            let mut entries: Vec<(u32, f32)> = indices
                .iter()
                .copied()
                .zip(values.iter().copied())
                .filter(|&(_, v)| v != 0.0)
                .collect();
            entries.sort_by_key(|&(i, _)| i);
            VectorValue::Sparse(
                entries.iter().map(|e| e.0).collect(),
                entries.iter().map(|e| e.1).collect(),
            )
        }
        _ => value.clone(),
    }
}

fn same_vector(a: &Option<VectorValue>, b: &Option<VectorValue>) -> bool {
    let floats =
        |a: &[f32], b: &[f32]| a.len() == b.len() && a.iter().zip(b).all(|(x, y)| same_f32(*x, *y));
    match (a, b) {
        (None, None) => true,
        (Some(VectorValue::Dense(a)), Some(VectorValue::Dense(b))) => floats(a, b),
        (Some(VectorValue::Multi(a)), Some(VectorValue::Multi(b))) => {
            a.len() == b.len() && a.iter().zip(b).all(|(x, y)| floats(x, y))
        }
        (Some(VectorValue::Sparse(ai, av)), Some(VectorValue::Sparse(bi, bv))) => {
            ai == bi && floats(av, bv)
        }
        _ => false,
    }
}

/// Bit-identical, except that any NaN matches any NaN (text carries no NaN payload).
fn same_f32(a: f32, b: f32) -> bool {
    a.to_bits() == b.to_bits() || (a.is_nan() && b.is_nan())
}

/// A PostgreSQL array in its binary (send) form, whatever its element type.
/// Every header field is kept, so two arrays are equal exactly when their bytes are.
#[derive(Debug, PartialEq)]
struct PgArray {
    has_nulls: i32,
    element: u32,
    dims: Vec<i32>,
    elements: Vec<Option<Vec<u8>>>,
}

impl PgArray {
    fn parse(mut raw: &[u8]) -> Result<PgArray, String> {
        let ndim = take_i32(&mut raw)?;
        let has_nulls = take_i32(&mut raw)?;
        let element = take_i32(&mut raw)? as u32;
        let mut dims = Vec::new();
        for _ in 0..ndim {
            dims.push(take_i32(&mut raw)?);
            let lower_bound = take_i32(&mut raw)?;
            if lower_bound != 1 {
                return Err(format!("lower bound {lower_bound}"));
            }
        }
        let count = if ndim == 0 {
            0
        } else {
            dims.iter().product::<i32>()
        };
        let mut elements = Vec::new();
        for _ in 0..count {
            elements.push(take_field(&mut raw)?);
        }
        if !raw.is_empty() {
            return Err(format!("{} bytes after the last element", raw.len()));
        }
        Ok(PgArray {
            has_nulls,
            element,
            dims,
            elements,
        })
    }

    /// A `real[]` / `real[][]`: its dimensions and values.
    fn floats(self) -> Result<(Vec<i32>, Vec<f32>), String> {
        if self.element != 700 {
            return Err(format!("element type {} is not real", self.element));
        }
        let values = self.elements.iter().map(|e| match e.as_deref() {
            Some(&[a, b, c, d]) => Ok(f32::from_bits(u32::from_be_bytes([a, b, c, d]))),
            other => Err(format!("real element {other:?}")),
        });
        Ok((self.dims, values.collect::<Result<_, _>>()?))
    }

    /// An `integer[]` or `bigint[]` of sparse indices.
    fn integers(self) -> Result<Vec<u32>, String> {
        self.elements
            .iter()
            .map(|e| {
                let n = match (self.element, e.as_deref()) {
                    (23, Some(&[a, b, c, d])) => i64::from(i32::from_be_bytes([a, b, c, d])),
                    (20, Some(bytes)) if bytes.len() == 8 => {
                        i64::from_be_bytes(bytes.try_into().map_err(|_| "int8")?)
                    }
                    (oid, e) => return Err(format!("index element {e:?} of type {oid}")),
                };
                u32::try_from(n).map_err(|_| format!("index {n} is not a u32"))
            })
            .collect()
    }
}

impl<'a> FromSql<'a> for PgArray {
    fn from_sql(_: &Type, raw: &'a [u8]) -> Result<Self, Box<dyn Error + Sync + Send>> {
        Ok(PgArray::parse(raw)?)
    }

    fn accepts(ty: &Type) -> bool {
        matches!(ty.kind(), PgKind::Array(_))
    }
}

fn take_i32(raw: &mut &[u8]) -> Result<i32, String> {
    let (head, rest) = raw.split_first_chunk::<4>().ok_or("truncated")?;
    *raw = rest;
    Ok(i32::from_be_bytes(*head))
}

/// A length-prefixed value (`-1` is NULL), as COPY binary fields and array elements are sent.
fn take_field(raw: &mut &[u8]) -> Result<Option<Vec<u8>>, String> {
    let len = take_i32(raw)?;
    if len < 0 {
        return Ok(None);
    }
    let len = len as usize;
    if raw.len() < len {
        return Err(format!("field of {len} bytes, {} left", raw.len()));
    }
    let (value, rest) = raw.split_at(len);
    *raw = rest;
    Ok(Some(value.to_vec()))
}

type BinaryRow = Vec<Option<Vec<u8>>>;

/// The rows of a COPY binary stream.
fn parse_copy_binary(mut raw: &[u8]) -> Result<Vec<BinaryRow>, String> {
    raw = raw
        .strip_prefix(b"PGCOPY\n\xff\r\n\0")
        .ok_or("no COPY binary signature")?;
    let _flags = take_i32(&mut raw)?;
    let extension = take_i32(&mut raw)? as usize;
    raw = raw.get(extension..).ok_or("truncated header extension")?;
    let mut rows = Vec::new();
    loop {
        let (count, rest) = raw.split_first_chunk::<2>().ok_or("no trailer")?;
        raw = rest;
        let count = i16::from_be_bytes(*count);
        if count == -1 {
            return if raw.is_empty() {
                Ok(rows)
            } else {
                Err("bytes after the trailer".into())
            };
        }
        rows.push(
            (0..count)
                .map(|_| take_field(&mut raw))
                .collect::<Result<_, _>>()?,
        );
    }
}

/// Compares our binary stream field by field with the server's own binary COPY of the rows it
/// parsed from our text. NaNs in `real` arrays are compared as NaN (text carries no payload);
/// a `jsonb` payload, which the server sends in its own normal form, by value.
fn compare_with_server_binary(
    client: &mut postgres::Client,
    case: &Case,
    facts: &DataFacts,
    text_table: &str,
    ours: &[u8],
) -> Result<(), String> {
    let mut theirs = Vec::new();
    client
        .copy_out(&format!("COPY {text_table} TO STDOUT (FORMAT binary)"))
        .map_err(|e| db_error(&e))?
        .read_to_end(&mut theirs)
        .map_err(|e| e.to_string())?;
    let columns = ddl::columns(&case.layout, facts, case.ddl_options());
    let (ours, theirs) = (parse_copy_binary(ours)?, parse_copy_binary(&theirs)?);
    if ours.len() != theirs.len() {
        return Err(format!(
            "binary: we sent {} rows, the server {}",
            ours.len(),
            theirs.len()
        ));
    }
    // A heap does not keep COPY's row order (a wide row may land on a later page), so rows
    // pair up by their id field, which must then be byte-identical too.
    let by_id: HashMap<&Option<Vec<u8>>, &BinaryRow> = theirs
        .iter()
        .filter_map(|row| Some((row.first()?, row)))
        .collect();
    for (row, our_row) in ours.iter().enumerate() {
        let our_id = our_row
            .first()
            .ok_or_else(|| format!("binary row {row}: no fields"))?;
        let their_row = by_id.get(our_id).ok_or_else(|| {
            format!(
                "binary row {row}: the server sent no row with our id field {}; its ids: {}",
                hex(our_id),
                theirs
                    .iter()
                    .filter_map(|r| r.first())
                    .map(hex)
                    .collect::<Vec<_>>()
                    .join(" ")
            )
        })?;
        if our_row.len() != columns.len() || their_row.len() != columns.len() {
            return Err(format!(
                "binary row {row}: {} / {} fields",
                our_row.len(),
                their_row.len()
            ));
        }
        for ((column, a), b) in columns.iter().zip(our_row).zip(their_row.iter()) {
            let same = match (column.sql_type.as_str(), a, b) {
                ("real[]" | "real[][]", Some(a), Some(b)) => {
                    canonical_nans(a)? == canonical_nans(b)?
                }
                ("jsonb", Some(a), Some(b)) => {
                    // Version byte 1, then the text.
                    let json = |bytes: &[u8]| match bytes.split_first() {
                        Some((1, text)) => std::str::from_utf8(text)
                            .ok()
                            .and_then(|text| parse_json_exactly(text).ok()),
                        _ => None,
                    };
                    matches!((json(a), json(b)), (Some(a), Some(b)) if same_json(&a, &b))
                }
                _ => a == b,
            };
            if !same {
                return Err(format!(
                    "binary row {row}, column {} ({}):\n  ours   {}\n  server {}",
                    column.name,
                    column.sql_type,
                    hex(a),
                    hex(b)
                ));
            }
        }
    }
    Ok(())
}

/// A `real` array with every NaN element replaced by PostgreSQL's canonical NaN.
fn canonical_nans(raw: &[u8]) -> Result<PgArray, String> {
    let mut array = PgArray::parse(raw)?;
    for bytes in array.elements.iter_mut().flatten() {
        if let Ok(bits) = <[u8; 4]>::try_from(bytes.as_slice())
            && f32::from_bits(u32::from_be_bytes(bits)).is_nan()
        {
            *bytes = f32::NAN.to_bits().to_be_bytes().to_vec();
        }
    }
    Ok(array)
}

fn hex(field: &Option<Vec<u8>>) -> String {
    match field {
        None => "NULL".into(),
        Some(bytes) => bytes.iter().map(|b| format!("{b:02x}")).collect(),
    }
}

/// The payload as the JSON value it stands for: non-finite doubles become `null`.
fn payload_json(payload: &HashMap<String, Value>) -> serde_json::Value {
    serde_json::Value::Object(
        payload
            .iter()
            .map(|(k, v)| (k.clone(), value_json(v)))
            .collect(),
    )
}

fn value_json(value: &Value) -> serde_json::Value {
    use serde_json::Value as J;
    match &value.kind {
        None | Some(Kind::NullValue(_)) => J::Null,
        Some(Kind::BoolValue(b)) => J::Bool(*b),
        Some(Kind::IntegerValue(i)) => J::from(*i),
        Some(Kind::DoubleValue(d)) => serde_json::Number::from_f64(*d).map_or(J::Null, J::Number),
        Some(Kind::StringValue(s)) => J::String(s.clone()),
        Some(Kind::ListValue(list)) => J::Array(list.values.iter().map(value_json).collect()),
        Some(Kind::StructValue(s)) => payload_json(&s.fields),
    }
}

/// JSON equality with numbers compared by value: integers exactly, others as f64 (`jsonb`
/// prints `1e308` as 309 digits and `-0.0` as `0.0`).
fn same_json(a: &serde_json::Value, b: &serde_json::Value) -> bool {
    use serde_json::Value as J;
    match (a, b) {
        (J::Number(a), J::Number(b)) => {
            let (a, b) = (a.to_string(), b.to_string());
            match (a.parse::<i128>(), b.parse::<i128>()) {
                (Ok(x), Ok(y)) => x == y,
                _ => a.parse::<f64>().ok() == b.parse::<f64>().ok() && a.parse::<f64>().is_ok(),
            }
        }
        (J::Array(a), J::Array(b)) => {
            a.len() == b.len() && a.iter().zip(b).all(|(x, y)| same_json(x, y))
        }
        (J::Object(a), J::Object(b)) => {
            a.len() == b.len()
                && a.iter()
                    .all(|(k, x)| b.get(k).is_some_and(|y| same_json(x, y)))
        }
        _ => a == b,
    }
}

/// Vector names, with the hazards a column name can carry (case, space, quote, delimiter).
const NAMES: &[&str] = &[
    "text", "Image", "colbert", "my vec", "ünï", "a|b", "q\"t", "bm25", "d2",
];

/// Payload string pieces: everything COPY text or JSON must escape, and more.
const PIECES: &[&str] = &[
    "a", "|", "\\", "\\N", "\\.", "\n", "\r", "\t", "\"", "'", "\u{2028}", "\u{2029}", "😀",
    "中文", "é", "\u{1}", "\u{1f}", "\u{7f}", "{", "}", "[", "]", ",", ":", "\\u0000", "null", " ",
    "",
];

impl Case {
    fn ddl_options(&self) -> DdlOptions {
        DdlOptions {
            halfvec: self.halfvec,
            ..DdlOptions::from(self.target.dialect())
        }
    }

    fn generate(rng: &mut Rng, target: Target) -> Case {
        let halfvec = match target {
            Target::Arrays | Target::Greenplum => Halfvec::Never,
            Target::Pgvector => *rng.pick(&[Halfvec::Never, Halfvec::Float16, Halfvec::Always]),
        };
        let layout = loop {
            let layout = generate_layout(rng, target);
            if layout.duplicate_column().is_none() {
                break layout;
            }
        };
        let jsonb = layout.payload == PayloadType::Jsonb;
        let count = 1 + rng.below(40);
        let mut keys = HashSet::new();
        let id_plan = rng.below(4);
        let points = (0..count)
            .filter_map(|_| {
                let key = generate_key(rng, id_plan);
                keys.insert(key)
                    .then(|| generate_point(rng, &layout, key, target, halfvec, jsonb))
            })
            .collect();
        Case {
            target,
            halfvec,
            guide_copy: rng.one_in(2),
            layout,
            points,
        }
    }
}

fn generate_layout(rng: &mut Rng, target: Target) -> Layout {
    let payload = if rng.one_in(2) {
        PayloadType::Json
    } else {
        PayloadType::Jsonb
    };
    let spec = |name: &str, shape, rng: &mut Rng| {
        let datatype = *rng.pick(&[Datatype::Float32, Datatype::Float16, Datatype::Uint8]);
        let dim = match shape {
            VectorShape::Dense => Some(1 + rng.below(8) as u64),
            VectorShape::Multi => Some(1 + rng.below(4) as u64),
            // pgvector's sparsevec needs a dimension above every index; arrays need none.
            VectorShape::Sparse if target == Target::Pgvector && rng.one_in(2) => Some(1000),
            VectorShape::Sparse => None,
        };
        VectorSpec {
            name: name.to_owned(),
            shape,
            dim,
            datatype,
            distance: None,
            hnsw: None,
        }
    };
    let vectors = match rng.below(8) {
        0 => Vec::new(),
        1 | 2 => vec![spec("", VectorShape::Dense, rng)],
        _ => {
            let mut names: Vec<&str> = NAMES.to_vec();
            (0..1 + rng.below(4))
                .map(|_| {
                    let name = names.swap_remove(rng.below(names.len()));
                    let shape =
                        *rng.pick(&[VectorShape::Dense, VectorShape::Multi, VectorShape::Sparse]);
                    spec(name, shape, rng)
                })
                .collect()
        }
    };
    Layout::new(vectors, payload)
}

/// An id from one of four plans: small integers, integers past `i64::MAX` too, UUIDs, mixed.
fn generate_key(rng: &mut Rng, plan: usize) -> PointKey {
    let small = |rng: &mut Rng| match rng.below(4) {
        0 => *rng.pick(&[0, 1, i64::MAX as u64]),
        _ => rng.next() >> (1 + rng.below(63)),
    };
    let big = |rng: &mut Rng| {
        let random = rng.next() | 1 << 63;
        *rng.pick(&[u64::MAX, 1 << 63, (1 << 63) + 1, random])
    };
    let uuid = |rng: &mut Rng| match rng.below(8) {
        0 => *rng.pick(&[0, u128::MAX, 1]),
        _ => u128::from(rng.next()) << 64 | u128::from(rng.next()),
    };
    match (plan, rng.below(2)) {
        (0, _) | (1, 0) => PointKey::Num(small(rng)),
        (1, _) => PointKey::Num(big(rng)),
        (2, _) => PointKey::Uuid(uuid(rng)),
        (_, 0) => PointKey::Num(if rng.one_in(2) { small(rng) } else { big(rng) }),
        _ => PointKey::Uuid(uuid(rng)),
    }
}

fn generate_point(
    rng: &mut Rng,
    layout: &Layout,
    key: PointKey,
    target: Target,
    halfvec: Halfvec,
    jsonb: bool,
) -> Generated {
    let vectors: Vec<Option<VectorValue>> = layout
        .vectors
        .iter()
        .map(|spec| {
            // The unnamed vector is always there; named ones may be missing from a point.
            (spec.name.is_empty() || !rng.one_in(5))
                .then(|| generate_vector(rng, spec, target, halfvec))
        })
        .collect();
    let outputs: Vec<(String, VectorOutput)> = layout
        .vectors
        .iter()
        .zip(&vectors)
        .filter_map(|(spec, v)| Some((spec.name.clone(), wire_vector(rng, v.as_ref()?))))
        .collect();
    let options = match outputs.as_slice() {
        [] => None,
        [(name, output)] if name.is_empty() => Some(VectorsOptions::Vector(output.clone())),
        _ => Some(VectorsOptions::Vectors(NamedVectorsOutput {
            vectors: outputs.into_iter().collect(),
        })),
    };
    // jsonb tables get a NUL now and then, to see both encoders refuse the point.
    let nul_chance = if jsonb { 30 } else { 4 };
    let payload = generate_object(rng, 0, nul_chance);
    let point = RetrievedPoint {
        id: Some(key.to_proto()),
        payload,
        vectors: options.map(|o| VectorsOutput {
            vectors_options: Some(o),
        }),
        ..Default::default()
    };
    let has_nul = point
        .payload
        .iter()
        .any(|(k, v)| k.contains('\0') || value_has_nul(v));
    Generated {
        key,
        vectors,
        point,
        has_nul,
    }
}

fn generate_vector(
    rng: &mut Rng,
    spec: &VectorSpec,
    target: Target,
    halfvec: Halfvec,
) -> VectorValue {
    let dim = spec.dim.unwrap_or(0) as usize;
    let pgvector = target == Target::Pgvector;
    // A float16 vector holds half values whatever its column; a `halfvec` column holds only
    // those exactly.
    let half = pgvector
        && spec.shape == VectorShape::Dense
        && (spec.datatype == Datatype::Float16 || halfvec.applies_to(spec.datatype));
    let values = |rng: &mut Rng, n: usize| -> Vec<f32> {
        (0..n)
            .map(|_| generate_f32(rng, spec.datatype, pgvector, half))
            .collect()
    };
    match spec.shape {
        VectorShape::Dense => VectorValue::Dense(values(rng, dim)),
        VectorShape::Multi => {
            VectorValue::Multi((0..1 + rng.below(3)).map(|_| values(rng, dim)).collect())
        }
        VectorShape::Sparse => {
            let n = rng.below(6);
            let mut indices = HashSet::new();
            while indices.len() < n {
                // pgvector's sparsevec holds indices below its dimension; arrays hold any u32.
                let limit = match (spec.dim, target) {
                    (Some(dim), _) => dim as u32,
                    (None, Target::Pgvector) => SPARSEVEC_MAX_DIM,
                    (None, Target::Arrays | Target::Greenplum) => u32::MAX,
                };
                let index = match rng.below(4) {
                    0 => *rng.pick(&[0, i32::MAX as u32, i32::MAX as u32 + 1, limit - 1]),
                    _ => rng.below(100_000) as u32,
                };
                if index >= limit {
                    continue;
                }
                indices.insert(index);
            }
            let indices: Vec<u32> = indices.into_iter().collect();
            let values = values(rng, indices.len());
            VectorValue::Sparse(indices, values)
        }
    }
}

/// A value of the vector's datatype: every f32 hazard, or only finite values (pgvector), or
/// only values exactly representable in half precision.
fn generate_f32(rng: &mut Rng, datatype: Datatype, finite: bool, half: bool) -> f32 {
    const SPECIAL: &[u32] = &[
        0x7fc0_0000, // NaN
        0xffc0_0000, // -NaN
        0x7f80_0001, // signalling NaN
        0x7f80_0000, // +inf
        0xff80_0000, // -inf
        0x0000_0000,
        0x8000_0000, // -0.0
        0x0000_0001, // smallest subnormal
        0x8000_0001,
        0x007f_ffff, // largest subnormal
        0x0080_0000, // smallest normal
        0x7f7f_ffff, // f32::MAX
        0xff7f_ffff, // f32::MIN
        0x3f80_0001, // 1 + ulp
        0x3dcc_cccd, // 0.1
        0x15ae_43fd, // 7.038531e-26, which reading through f64 (PostgreSQL < 12) would bend
    ];
    loop {
        let v = match (datatype, rng.below(4)) {
            (Datatype::Uint8, _) => rng.below(256) as f32,
            _ if half => half::f16::from_bits(rng.next() as u16).to_f32(),
            (_, 0) => f32::from_bits(*rng.pick(SPECIAL)),
            (_, 1) => f32::from_bits(rng.next() as u32),
            _ => (rng.next() as i32 as f32) / i32::MAX as f32,
        };
        if !finite || v.is_finite() {
            return v;
        }
    }
}

/// A vector in one of the two wire forms a server may use: the `vector` oneof (Qdrant ≥ 1.16)
/// or the deprecated flat fields.
#[allow(deprecated)]
fn wire_vector(rng: &mut Rng, value: &VectorValue) -> VectorOutput {
    let current = rng.one_in(2);
    match value {
        VectorValue::Dense(data) if current => VectorOutput {
            vector: Some(Vector::Dense(DenseVector { data: data.clone() })),
            ..Default::default()
        },
        VectorValue::Dense(data) => VectorOutput {
            data: data.clone(),
            ..Default::default()
        },
        VectorValue::Multi(rows) if current => VectorOutput {
            vector: Some(Vector::MultiDense(MultiDenseVector {
                vectors: rows
                    .iter()
                    .map(|r| DenseVector { data: r.clone() })
                    .collect(),
            })),
            ..Default::default()
        },
        VectorValue::Multi(rows) => VectorOutput {
            data: rows.concat(),
            vectors_count: Some(rows.len() as u32),
            ..Default::default()
        },
        VectorValue::Sparse(indices, values) if current => VectorOutput {
            vector: Some(Vector::Sparse(SparseVector {
                values: values.clone(),
                indices: indices.clone(),
            })),
            ..Default::default()
        },
        VectorValue::Sparse(indices, values) => VectorOutput {
            data: values.clone(),
            indices: Some(SparseIndices {
                data: indices.clone(),
            }),
            ..Default::default()
        },
    }
}

fn generate_object(rng: &mut Rng, depth: usize, nul_chance: usize) -> HashMap<String, Value> {
    let fields = if depth > 3 {
        rng.below(2)
    } else {
        rng.below(5)
    };
    (0..fields)
        .map(|_| {
            let key = generate_string(rng, nul_chance);
            (key, generate_value(rng, depth + 1, nul_chance))
        })
        .collect()
}

fn generate_value(rng: &mut Rng, depth: usize, nul_chance: usize) -> Value {
    let kind = match rng.below(if depth > 4 { 6 } else { 9 }) {
        0 => Kind::NullValue(0),
        1 => Kind::BoolValue(rng.one_in(2)),
        2 => Kind::IntegerValue(match rng.below(3) {
            0 => *rng.pick(&[i64::MIN, i64::MAX, 0, -1, 1 << 53, (1 << 53) + 1]),
            _ => rng.next() as i64 >> rng.below(64),
        }),
        3 => Kind::DoubleValue(match rng.below(3) {
            0 => *rng.pick(&[
                1e308,
                -1e308,
                5e-324,
                -0.0,
                0.1,
                1.0,
                f64::MAX,
                f64::MIN_POSITIVE,
                f64::NAN,
                f64::INFINITY,
                f64::NEG_INFINITY,
                9007199254740993.0,
            ]),
            1 => f64::from_bits(rng.next()),
            _ => rng.next() as i64 as f64 / 1e6,
        }),
        4 | 5 => Kind::StringValue(generate_string(rng, nul_chance)),
        6 => Kind::ListValue(ListValue {
            values: (0..rng.below(4))
                .map(|_| generate_value(rng, depth + 1, nul_chance))
                .collect(),
        }),
        7 => Kind::StructValue(Struct {
            fields: generate_object(rng, depth, nul_chance),
        }),
        // Deep nesting: a chain of single-element lists and objects.
        _ => {
            let mut value = Value {
                kind: Some(Kind::StringValue("deep".into())),
            };
            for level in 0..64 {
                value = Value {
                    kind: Some(if level % 2 == 0 {
                        Kind::ListValue(ListValue {
                            values: vec![value],
                        })
                    } else {
                        Kind::StructValue(Struct {
                            fields: HashMap::from([("k".into(), value)]),
                        })
                    }),
                };
            }
            return value;
        }
    };
    Value { kind: Some(kind) }
}

fn generate_string(rng: &mut Rng, nul_chance: usize) -> String {
    let mut s = String::new();
    for _ in 0..rng.below(8) {
        if rng.one_in(nul_chance * 8) {
            s.push('\0');
        } else {
            let piece = *rng.pick(PIECES);
            s.push_str(piece);
        }
    }
    s
}

fn value_has_nul(value: &Value) -> bool {
    match &value.kind {
        Some(Kind::StringValue(s)) => s.contains('\0'),
        Some(Kind::ListValue(list)) => list.values.iter().any(value_has_nul),
        Some(Kind::StructValue(s)) => s
            .fields
            .iter()
            .any(|(k, v)| k.contains('\0') || value_has_nul(v)),
        _ => false,
    }
}
