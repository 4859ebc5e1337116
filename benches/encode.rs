//! Criterion benches of the encoding hot path. Every group puts a naive baseline (`write!` /
//! `Display`, or serde_json + `str::replace` as the guide's export.py does) beside the fast
//! path, with the same throughput, so the figures read as ratios.
//!
//! Vectors are realistic embedding values: normally distributed, sd 0.05, from a fixed seed.
//!
//! `F32_CALLGRIND=WRITER:ROWS` runs no bench: it writes ROWS rows of 768 floats with one f32
//! writer and exits, for `scripts/callgrind-f32.sh` to count instructions per float.

use std::collections::HashMap;
use std::hint::black_box;
use std::io::Write;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group};
use qdrant_client::qdrant::vectors_output::VectorsOptions;
use qdrant_client::qdrant::{
    DenseVector, ListValue, RetrievedPoint, Struct, Value, VectorOutput, VectorsOutput,
    value::Kind, vector_output::Vector,
};
use qdrant2pg::encode::RowEncoder;
use qdrant2pg::encode::binary::BinaryRowEncoder;
use qdrant2pg::encode::float::write_f32_list;
use qdrant2pg::encode::json::{Escape, write_payload};
use qdrant2pg::encode::text::TextRowEncoder;
use qdrant2pg::layout::VectorSyntax;
use qdrant2pg::layout::{DataFacts, Datatype, Layout, PayloadType, VectorShape, VectorSpec};
use qdrant2pg::payload::PayloadRef;
use qdrant2pg::point_id::PointKey;

/// `n` values ~ N(0, 0.05²): xorshift64 and Box–Muller, deterministic.
fn embedding(n: usize, seed: u64) -> Vec<f32> {
    let mut state = seed | 1;
    let mut uniform = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        ((state >> 11) as f64 + 0.5) / (1u64 << 53) as f64
    };
    (0..n)
        .map(|_| {
            let (u1, u2) = (uniform(), uniform());
            ((-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos() * 0.05) as f32
        })
        .collect()
}

/// `values` as comma-separated texts through a crate's own buffer (`ryu`, `zmij`), as their API
/// allows: room reserved once, each value's text copied in. Finite values only (the comparators'
/// data is finite; the row path also spells NaN, ±Infinity and -0 as PostgreSQL does).
fn write_list_via<B>(
    out: &mut Vec<u8>,
    values: &[f32],
    buf: &mut B,
    text: fn(&mut B, f32) -> &str,
) {
    out.reserve(values.len() * 17);
    for (i, &v) in values.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        out.extend_from_slice(text(buf, v).as_bytes());
    }
}

fn ryu_text(buf: &mut ryu::Buffer, v: f32) -> &str {
    buf.format_finite(v)
}

fn zmij_text(buf: &mut zmij::Buffer, v: f32) -> &str {
    buf.format_finite(v)
}

fn value(kind: Kind) -> Value {
    Value { kind: Some(kind) }
}

fn text(s: &str) -> Value {
    value(Kind::StringValue(s.to_owned()))
}

fn typical_payload() -> HashMap<String, Value> {
    [
        (
            "title",
            text("Wireless noise-cancelling headphones, 30 h battery"),
        ),
        ("category", text("electronics/audio")),
        ("price", value(Kind::DoubleValue(199.99))),
        ("rating", value(Kind::IntegerValue(4))),
        ("in_stock", value(Kind::BoolValue(true))),
        (
            "tags",
            value(Kind::ListValue(ListValue {
                values: vec![text("bluetooth"), text("anc"), text("over-ear")],
            })),
        ),
        (
            "description",
            text(
                "Closed-back over-ear headphones with adaptive noise cancelling, multipoint \
                 pairing and a USB-C fast charge that gives five hours of play in ten minutes.",
            ),
        ),
        (
            "seller",
            value(Kind::StructValue(Struct {
                fields: [
                    ("id", value(Kind::IntegerValue(88123))),
                    ("name", text("Acme Audio")),
                ]
                .into_iter()
                .map(|(k, v)| (k.to_owned(), v))
                .collect(),
            })),
        ),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect()
}

fn hazard_payload() -> HashMap<String, Value> {
    [
        (
            "path",
            text("C:\\Users\\me\\data|backup\\2024\\new\\file.txt"),
        ),
        (
            "quote",
            text("she said \"a|b\" and \"c\\d\"\n\tthen left\r\n"),
        ),
        ("ctrl", text("\u{1}\u{2}\u{1f}\u{8}\u{c}|||\\\\\\")),
        ("unicode", text("naïve café 日本語 🦀 \u{2028} \u{2029}")),
        (
            "table",
            text("a|b|c|d|e|f|g|h|i|j|k|l|m|n|o|p|q|r|s|t|u|v|w|x|y|z"),
        ),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect()
}

/// The same payload as serde_json sees it, for the naive baseline.
fn to_serde(v: &Value) -> serde_json::Value {
    match &v.kind {
        None | Some(Kind::NullValue(_)) => serde_json::Value::Null,
        Some(Kind::BoolValue(b)) => (*b).into(),
        Some(Kind::IntegerValue(n)) => (*n).into(),
        Some(Kind::DoubleValue(d)) => (*d).into(),
        Some(Kind::StringValue(s)) => s.clone().into(),
        Some(Kind::ListValue(l)) => l.values.iter().map(to_serde).collect(),
        Some(Kind::StructValue(s)) => s
            .fields
            .iter()
            .map(|(k, v)| (k.clone(), to_serde(v)))
            .collect(),
    }
}

fn to_serde_map(payload: &HashMap<String, Value>) -> serde_json::Value {
    payload
        .iter()
        .map(|(k, v)| (k.clone(), to_serde(v)))
        .collect()
}

/// export.py's way, made correct: json.dumps, then escape for COPY text with two replaces.
fn naive_payload(out: &mut Vec<u8>, json: &serde_json::Value) {
    let text = serde_json::to_string(json).unwrap_or_default();
    out.extend_from_slice(text.replace('\\', "\\\\").replace('|', "\\|").as_bytes());
}

fn naive_vector(out: &mut Vec<u8>, values: &[f32]) {
    out.push(b'{');
    for (i, v) in values.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        let _ = write!(out, "{v}");
    }
    out.push(b'}');
}

fn point(id: u64, vector: Vec<f32>, payload: HashMap<String, Value>) -> RetrievedPoint {
    RetrievedPoint {
        id: Some(PointKey::Num(id).to_proto()),
        payload,
        vectors: Some(VectorsOutput {
            vectors_options: Some(VectorsOptions::Vector(VectorOutput {
                vector: Some(Vector::Dense(DenseVector { data: vector })),
                ..Default::default()
            })),
        }),
        ..Default::default()
    }
}

fn layout(dim: u64) -> Layout {
    let spec = VectorSpec {
        name: String::new(),
        shape: VectorShape::Dense,
        dim: Some(dim),
        datatype: Datatype::Float32,
        distance: None,
        hnsw: None,
    };
    Layout::new(vec![spec], PayloadType::Json)
}

fn vectors(c: &mut Criterion) {
    for dim in [768, 1536] {
        let values = embedding(dim, 42);
        let mut group = c.benchmark_group(format!("f32_{dim}"));
        group.throughput(Throughput::Elements(dim as u64));
        let mut out = Vec::with_capacity(dim * 20);
        group.bench_function("display", |b| {
            b.iter(|| {
                out.clear();
                naive_vector(&mut out, black_box(&values));
                black_box(&out);
            })
        });
        group.bench_function("ryu", |b| {
            b.iter(|| {
                out.clear();
                out.push(b'{');
                write_list_via(
                    &mut out,
                    black_box(&values),
                    &mut ryu::Buffer::new(),
                    ryu_text,
                );
                out.push(b'}');
                black_box(&out);
            })
        });
        group.bench_function("zmij", |b| {
            b.iter(|| {
                out.clear();
                out.push(b'{');
                write_list_via(
                    &mut out,
                    black_box(&values),
                    &mut zmij::Buffer::new(),
                    zmij_text,
                );
                out.push(b'}');
                black_box(&out);
            })
        });
        group.bench_function("qdrant2pg", |b| {
            b.iter(|| {
                out.clear();
                out.push(b'{');
                write_f32_list(&mut out, black_box(&values));
                out.push(b'}');
                black_box(&out);
            })
        });
        group.finish();
    }
}

fn payloads(c: &mut Criterion) {
    for (name, payload) in [("typical", typical_payload()), ("hazard", hazard_payload())] {
        let serde = to_serde_map(&payload);
        let mut out = Vec::with_capacity(4096);
        let _ = write_payload(&mut out, PayloadRef::Grpc(&payload), Escape::CopyText);
        let mut group = c.benchmark_group(format!("payload_{name}"));
        group.throughput(Throughput::Bytes(out.len() as u64));
        group.bench_function("serde_json+replace", |b| {
            b.iter(|| {
                out.clear();
                naive_payload(&mut out, black_box(&serde));
                black_box(&out);
            })
        });
        group.bench_function("qdrant2pg", |b| {
            b.iter(|| {
                out.clear();
                let _ = write_payload(
                    &mut out,
                    PayloadRef::Grpc(black_box(&payload)),
                    Escape::CopyText,
                );
                black_box(&out);
            })
        });
        group.finish();
    }
}

/// A whole text row (1 × 768-d + typical payload) beside the vector alone, which bounds it.
fn text_row(c: &mut Criterion) {
    let values = embedding(768, 7);
    let payload = typical_payload();
    let serde = to_serde_map(&payload);
    let p = point(123_456_789, values.clone(), payload);
    let encoder = TextRowEncoder::new(&layout(768), VectorSyntax::Array);
    let mut facts = DataFacts::default();
    let mut out = Vec::with_capacity(16 * 1024);
    let mut group = c.benchmark_group("text_row_768");
    group.throughput(Throughput::Elements(768));
    group.bench_function("display+serde_json", |b| {
        b.iter(|| {
            out.clear();
            let _ = write!(out, "{}|", black_box(123_456_789u64));
            naive_vector(&mut out, black_box(&values));
            out.push(b'|');
            naive_payload(&mut out, black_box(&serde));
            out.push(b'\n');
            black_box(&out);
        })
    });
    group.bench_function(BenchmarkId::new("qdrant2pg", "vector only"), |b| {
        b.iter(|| {
            out.clear();
            out.push(b'{');
            write_f32_list(&mut out, black_box(&values));
            out.push(b'}');
            black_box(&out);
        })
    });
    group.bench_function(BenchmarkId::new("qdrant2pg", "row"), |b| {
        b.iter(|| {
            out.clear();
            let key = encoder.encode(black_box(&p).into(), &mut out, &mut facts);
            black_box((&out, key.is_ok()));
        })
    });
    group.finish();
}

/// A COPY BINARY row (1 × 768-d + typical payload).
fn binary_row(c: &mut Criterion) {
    let values = embedding(768, 9);
    let payload = typical_payload();
    let serde = to_serde_map(&payload);
    let p = point(123_456_789, values.clone(), payload);
    let l = layout(768);
    let encoder = BinaryRowEncoder::new(&l, &DataFacts::default(), VectorSyntax::Array);
    let mut facts = DataFacts::default();
    let mut out = Vec::with_capacity(16 * 1024);
    let _ = encoder.encode((&p).into(), &mut out, &mut facts);
    let mut group = c.benchmark_group("binary_row_768");
    group.throughput(Throughput::Bytes(out.len() as u64));
    group.bench_function("write_all per field", |b| {
        b.iter(|| {
            out.clear();
            let _ = out.write_all(&3i16.to_be_bytes());
            let _ = out.write_all(&8i32.to_be_bytes());
            let _ = out.write_all(&black_box(123_456_789i64).to_be_bytes());
            let _ = out.write_all(&(12 + 8 + 8 * 768i32).to_be_bytes());
            for x in [1i32, 0, 700, 768, 1] {
                let _ = out.write_all(&x.to_be_bytes());
            }
            for v in black_box(&values) {
                let _ = out.write_all(&4i32.to_be_bytes());
                let _ = out.write_all(&v.to_be_bytes());
            }
            let json = serde_json::to_vec(black_box(&serde)).unwrap_or_default();
            let _ = out.write_all(&(json.len() as i32).to_be_bytes());
            let _ = out.write_all(&json);
            black_box(&out);
        })
    });
    group.bench_function("qdrant2pg", |b| {
        b.iter(|| {
            out.clear();
            let key = encoder.encode(black_box(&p).into(), &mut out, &mut facts);
            black_box((&out, key.is_ok()));
        })
    });
    group.finish();
}

/// `F32_CALLGRIND=WRITER:ROWS`: ROWS rows of 768 floats (`{…}`), written with WRITER
/// (`qdrant2pg`, `zmij` or `ryu`) from a pool of 64 rows generated first, so a run with 0 rows
/// counts everything but the writing. The rows are N(0, 0.05²) with one value in 16 in
/// another magnitude, 1e-9 to 1e6, so the exponent and integer layouts are in the count too.
fn rows_for_callgrind(spec: &str) {
    let (writer, rows) = spec.split_once(':').expect("F32_CALLGRIND=WRITER:ROWS");
    let rows: usize = rows.parse().expect("ROWS is a number");
    let pool: Vec<Vec<f32>> = (0..64)
        .map(|seed| {
            let mut row = embedding(768, 1000 + seed);
            for (i, v) in row.iter_mut().enumerate().skip(5).step_by(16) {
                *v *= 20.0 * 10f32.powi((i / 16 % 16) as i32 - 9);
            }
            row
        })
        .collect();
    let write: fn(&mut Vec<u8>, &[f32]) = match writer {
        "qdrant2pg" => write_f32_list,
        "zmij" => |out, values| write_list_via(out, values, &mut zmij::Buffer::new(), zmij_text),
        "ryu" => |out, values| write_list_via(out, values, &mut ryu::Buffer::new(), ryu_text),
        _ => panic!("F32_CALLGRIND: WRITER is qdrant2pg, zmij or ryu"),
    };
    let write = black_box(write);
    let mut out = Vec::with_capacity(768 * 20);
    let mut bytes = 0;
    for row in pool.iter().cycle().take(rows) {
        out.clear();
        out.push(b'{');
        write(&mut out, black_box(row));
        out.push(b'}');
        bytes += black_box(&out).len();
    }
    println!("{writer}: {rows} rows, {bytes} bytes");
}

criterion_group!(benches, vectors, payloads, text_row, binary_row);

fn main() {
    if let Ok(spec) = std::env::var("F32_CALLGRIND") {
        rows_for_callgrind(&spec);
        return;
    }
    benches();
    Criterion::default().configure_from_args().final_summary();
}
