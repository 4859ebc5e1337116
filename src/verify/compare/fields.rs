//! PostgreSQL's binary send forms read back: what `COPY … (FORMAT binary)` and binary query
//! results hold for the column types qdrant2pg writes — the layouts `encode::binary` writes,
//! in reverse. Every reader checks lengths and answers `None` for bytes that are not what the
//! type's send function writes, so a damaged or foreign value is named, never a panic.

use half::f16;

use crate::point_id::PointKey;

const FLOAT4_OID: u32 = 700;
const INT4_OID: u32 = 23;
const INT8_OID: u32 = 20;
/// PostgreSQL's `MAXDIM`.
const MAX_DIMS: i32 = 6;

/// Big-endian values off the front of a field.
struct Cursor<'a>(&'a [u8]);

impl<'a> Cursor<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        if self.0.len() < n {
            return None;
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Some(head)
    }

    fn array<const N: usize>(&mut self) -> Option<[u8; N]> {
        self.take(N)?.try_into().ok()
    }

    fn i16(&mut self) -> Option<i16> {
        self.array().map(i16::from_be_bytes)
    }

    fn u16(&mut self) -> Option<u16> {
        self.array().map(u16::from_be_bytes)
    }

    fn i32(&mut self) -> Option<i32> {
        self.array().map(i32::from_be_bytes)
    }

    fn u32(&mut self) -> Option<u32> {
        self.array().map(u32::from_be_bytes)
    }
}

/// f32 bits with every NaN made one: PostgreSQL does not keep NaN payloads.
pub(super) fn canonical_bits(bits: u32) -> u32 {
    if bits & 0x7fff_ffff > 0x7f80_0000 {
        f32::NAN.to_bits()
    } else {
        bits
    }
}

/// An array value: its dimensions and the element bytes (each `[len i32][bytes]`).
pub(super) struct Array<'a> {
    pub dims: Vec<usize>,
    oid: u32,
    count: usize,
    elements: &'a [u8],
}

/// Reads `array_send`'s form: ndim, has-null flag, element oid, per dimension its size and
/// lower bound, then the elements.
pub(super) fn array(raw: &[u8]) -> Option<Array<'_>> {
    let mut c = Cursor(raw);
    let ndim = c.i32()?;
    if !(0..=MAX_DIMS).contains(&ndim) {
        return None;
    }
    c.i32()?;
    let oid = c.u32()?;
    let mut dims = Vec::with_capacity(ndim as usize);
    let mut count = if ndim == 0 { 0 } else { 1usize };
    for _ in 0..ndim {
        let size = usize::try_from(c.i32()?).ok()?;
        c.i32()?;
        count = count.checked_mul(size)?;
        dims.push(size);
    }
    Some(Array {
        dims,
        oid,
        count,
        elements: c.0,
    })
}

impl Array<'_> {
    pub fn len(&self) -> usize {
        self.count
    }

    /// `real` elements as canonical little-endian f32 bits; `None` for another element type, a
    /// NULL element or stray bytes.
    pub fn write_f32_bits(&self, out: &mut Vec<u8>) -> Option<()> {
        // Each element is its length (4) and 4 bytes.
        if self.oid != FLOAT4_OID || self.elements.len() != self.count.checked_mul(8)? {
            return None;
        }
        let start = out.len();
        out.resize(start + self.count * 4, 0);
        for (dst, src) in out[start..]
            .chunks_exact_mut(4)
            .zip(self.elements.chunks_exact(8))
        {
            if src[..4] != [0, 0, 0, 4] {
                return None;
            }
            let bits = u32::from_be_bytes([src[4], src[5], src[6], src[7]]);
            dst.copy_from_slice(&canonical_bits(bits).to_le_bytes());
        }
        Some(())
    }

    /// `integer` or `bigint` elements as little-endian u64; `None` for another element type, a
    /// negative or NULL element, or stray bytes.
    pub fn write_indices(&self, out: &mut Vec<u8>) -> Option<()> {
        let width = match self.oid {
            INT4_OID => 4,
            INT8_OID => 8,
            _ => return None,
        };
        let mut c = Cursor(self.elements);
        for _ in 0..self.count {
            if c.i32()? != width as i32 {
                return None;
            }
            let bytes = c.take(width)?;
            let index = if width == 4 {
                i64::from(i32::from_be_bytes(bytes.try_into().ok()?))
            } else {
                i64::from_be_bytes(bytes.try_into().ok()?)
            };
            out.extend_from_slice(&u64::try_from(index).ok()?.to_le_bytes());
        }
        c.0.is_empty().then_some(())
    }
}

/// The dimension a pgvector `vector` or `halfvec` value claims.
pub(super) fn pgvector_dim(raw: &[u8]) -> Option<usize> {
    usize::try_from(Cursor(raw).i16()?).ok()
}

/// pgvector's `vector_send` (`halfvec_send` when `half`): i16 dim, i16 unused, the values.
/// Appends the canonical bits.
pub(super) fn pgvector(raw: &[u8], half: bool, out: &mut Vec<u8>) -> Option<()> {
    let mut c = Cursor(raw);
    let dim = usize::try_from(c.i16()?).ok()?;
    c.i16()?;
    let width = if half { 2 } else { 4 };
    if c.0.len() != dim * width {
        return None;
    }
    out.reserve(dim * 4);
    for value in c.0.chunks_exact(width) {
        let bits = if half {
            f16::from_bits(u16::from_be_bytes([value[0], value[1]]))
                .to_f32()
                .to_bits()
        } else {
            u32::from_be_bytes([value[0], value[1], value[2], value[3]])
        };
        out.extend_from_slice(&canonical_bits(bits).to_le_bytes());
    }
    Some(())
}

/// pgvector's `sparsevec_send`: i32 dim, i32 nnz, i32 unused, nnz 0-based i32 indices, nnz
/// f32 values. Returns the index bytes and value bytes, checked.
pub(super) fn sparsevec(raw: &[u8]) -> Option<(&[u8], &[u8])> {
    let mut c = Cursor(raw);
    c.i32()?;
    let nnz = usize::try_from(c.i32()?).ok()?;
    c.i32()?;
    let indices = c.take(nnz.checked_mul(4)?)?;
    let values = c.take(nnz * 4)?;
    c.0.is_empty().then_some((indices, values))
}

/// The id column's type.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IdColumn {
    Bigint,
    Integer,
    Numeric,
    Uuid,
    Text,
}

impl IdColumn {
    /// From `format_type()` of the `id` column; `None` for a type no Qdrant id maps to.
    pub fn from_sql_type(sql_type: &str) -> Option<IdColumn> {
        Some(match sql_type {
            "bigint" => IdColumn::Bigint,
            "integer" => IdColumn::Integer,
            "uuid" => IdColumn::Uuid,
            "text" => IdColumn::Text,
            t if t.starts_with("numeric") => IdColumn::Numeric,
            t if t.starts_with("character varying") => IdColumn::Text,
            _ => return None,
        })
    }

    /// The SQL type an array of ids is cast to, to select rows by id.
    pub fn sql_type(self) -> &'static str {
        match self {
            IdColumn::Bigint => "bigint",
            IdColumn::Integer => "integer",
            IdColumn::Numeric => "numeric",
            IdColumn::Uuid => "uuid",
            IdColumn::Text => "text",
        }
    }

    /// Reads one id; `None` when it is not a Qdrant id (negative, fractional, malformed).
    pub fn read(self, raw: &[u8]) -> Option<PointKey> {
        match self {
            IdColumn::Bigint => {
                let n = i64::from_be_bytes(raw.try_into().ok()?);
                Some(PointKey::Num(u64::try_from(n).ok()?))
            }
            IdColumn::Integer => {
                let n = i32::from_be_bytes(raw.try_into().ok()?);
                Some(PointKey::Num(u64::try_from(n).ok()?))
            }
            IdColumn::Numeric => numeric(raw).map(PointKey::Num),
            IdColumn::Uuid => Some(PointKey::Uuid(u128::from_be_bytes(raw.try_into().ok()?))),
            IdColumn::Text => std::str::from_utf8(raw).ok()?.parse().ok(),
        }
    }
}

/// `numeric_send` of a non-negative integer up to `u64::MAX`: ndigits, weight, sign, dscale,
/// then base-10000 digits, the first worth 10000^weight.
fn numeric(raw: &[u8]) -> Option<u64> {
    let mut c = Cursor(raw);
    let ndigits = c.u16()?;
    let weight = c.i16()?;
    let sign = c.u16()?;
    c.u16()?;
    if sign != 0 {
        return None;
    }
    let mut value: u64 = 0;
    for i in 0..i32::from(ndigits) {
        let digit = c.u16()?;
        if digit >= 10_000 || i > i32::from(weight) {
            // Past the units: a fraction, which only a zero digit may be.
            if digit != 0 {
                return None;
            }
            continue;
        }
        value = value.checked_mul(10_000)?.checked_add(u64::from(digit))?;
    }
    // Trailing zero groups are not sent: scale up to the units.
    for _ in i32::from(ndigits)..=i32::from(weight) {
        value = value.checked_mul(10_000)?;
    }
    c.0.is_empty().then_some(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn be(parts: &[i32]) -> Vec<u8> {
        parts.iter().flat_map(|p| p.to_be_bytes()).collect()
    }

    #[test]
    fn arrays_read_back_what_array_send_writes() {
        let mut raw = be(&[1, 0, 700, 2, 1, 4]);
        raw.extend(1.5f32.to_bits().to_be_bytes());
        raw.extend(be(&[4]));
        raw.extend(0x7fc0_0001u32.to_be_bytes());
        let a = array(&raw).unwrap();
        assert_eq!((a.dims.clone(), a.len()), (vec![2], 2));
        let mut out = Vec::new();
        a.write_f32_bits(&mut out).unwrap();
        assert_eq!(
            out,
            [
                1.5f32.to_bits().to_le_bytes(),
                f32::NAN.to_bits().to_le_bytes()
            ]
            .concat()
        );
        // A NULL element, a wrong element type, or a byte missing: refused.
        let mut null = be(&[1, 1, 700, 1, 1, -1]);
        assert!(
            array(&null)
                .unwrap()
                .write_f32_bits(&mut Vec::new())
                .is_none()
        );
        null.pop();
        assert!(
            array(&null)
                .unwrap()
                .write_f32_bits(&mut Vec::new())
                .is_none()
        );
        assert!(
            array(&raw[..raw.len() - 1])
                .unwrap()
                .write_f32_bits(&mut Vec::new())
                .is_none()
        );
        let ints = [be(&[1, 0, 23, 2, 1, 4, 7, 4]), be(&[-1])].concat();
        let a = array(&ints).unwrap();
        assert!(a.write_f32_bits(&mut Vec::new()).is_none());
        assert!(a.write_indices(&mut Vec::new()).is_none(), "negative index");
        let bigs = [be(&[1, 0, 20, 1, 1, 8, 0]), u32::MAX.to_be_bytes().to_vec()].concat();
        let mut out = Vec::new();
        array(&bigs).unwrap().write_indices(&mut out).unwrap();
        assert_eq!(out, u64::from(u32::MAX).to_le_bytes());
        let empty = be(&[0, 0, 700]);
        assert_eq!(array(&empty).unwrap().len(), 0);
        assert!(array(&be(&[7, 0, 700])).is_none());
    }

    #[test]
    fn pgvector_forms() {
        let vector = [
            &[0, 2, 0, 0][..],
            &1.5f32.to_bits().to_be_bytes(),
            &(-0.0f32).to_bits().to_be_bytes(),
        ]
        .concat();
        let mut out = Vec::new();
        assert_eq!(pgvector_dim(&vector), Some(2));
        assert_eq!(pgvector(&vector, false, &mut out), Some(()));
        assert_eq!(
            out,
            [
                1.5f32.to_bits().to_le_bytes(),
                (-0.0f32).to_bits().to_le_bytes()
            ]
            .concat()
        );
        assert_eq!(pgvector(&vector[..9], false, &mut Vec::new()), None);
        let half = [0, 1, 0, 0, 0x38, 0x00];
        let mut out = Vec::new();
        assert_eq!(pgvector(&half, true, &mut out), Some(()));
        assert_eq!(out, 0.5f32.to_bits().to_le_bytes());
        let sparse = be(&[50, 2, 0, 3, 7, 1, 2]);
        assert_eq!(sparsevec(&sparse), Some((&sparse[12..20], &sparse[20..28])));
        assert_eq!(sparsevec(&sparse[..27]), None);
    }

    #[test]
    fn ids_of_every_column_type() {
        assert_eq!(
            IdColumn::Bigint.read(&7i64.to_be_bytes()),
            Some(PointKey::Num(7))
        );
        assert_eq!(IdColumn::Bigint.read(&(-7i64).to_be_bytes()), None);
        assert_eq!(
            IdColumn::Integer.read(&7i32.to_be_bytes()),
            Some(PointKey::Num(7))
        );
        assert_eq!(
            IdColumn::Uuid.read(&[1; 16]),
            Some(PointKey::Uuid(u128::from_be_bytes([1; 16])))
        );
        assert_eq!(IdColumn::Text.read(b"42"), Some(PointKey::Num(42)));
        assert_eq!(
            IdColumn::Text.read(b"01020304-0506-0708-090a-0b0c0d0e0f10"),
            Some(PointKey::Uuid(0x0102_0304_0506_0708_090a_0b0c_0d0e_0f10))
        );
        assert_eq!(IdColumn::Text.read(b"-1"), None);
        // The forms encode::binary writes (and numeric_send too).
        let max = [
            &[0, 5, 0, 4, 0, 0, 0, 0][..],
            &[0x07, 0x34, 0x1a, 0x58, 0x02, 0xe1, 0x03, 0xbb, 0x06, 0x4f],
        ]
        .concat();
        assert_eq!(IdColumn::Numeric.read(&max), Some(PointKey::Num(u64::MAX)));
        assert_eq!(
            IdColumn::Numeric.read(&[0, 1, 0, 2, 0, 0, 0, 0, 0, 1]),
            Some(PointKey::Num(100_000_000))
        );
        assert_eq!(
            IdColumn::Numeric.read(&[0, 0, 0, 0, 0, 0, 0, 0]),
            Some(PointKey::Num(0))
        );
        // 1.5 (weight 0, digits 1 and 5000), negative, and 2^64 are not ids.
        assert_eq!(
            IdColumn::Numeric.read(&[0, 2, 0, 0, 0, 0, 0, 1, 0, 1, 0x13, 0x88]),
            None
        );
        assert_eq!(
            IdColumn::Numeric.read(&[0, 1, 0, 0, 0x40, 0, 0, 0, 0, 1]),
            None
        );
        let two_64 = [
            &[0, 5, 0, 4, 0, 0, 0, 0][..],
            &[0x07, 0x34, 0x1a, 0x58, 0x02, 0xe1, 0x03, 0xbb, 0x06, 0x50],
        ]
        .concat();
        assert_eq!(IdColumn::Numeric.read(&two_64), None);
    }
}
