//! Payloads in one canonical byte form, whichever side they come from.
//!
//! Qdrant hands a payload over as gRPC values; the table holds JSON text (`json` keeps the text
//! as written, `jsonb` prints it again: numbers as `numeric`, keys shortest first). Both reduce
//! to the same bytes exactly when they hold the same JSON value:
//! - objects: members sorted by key bytes; a repeated key counts once, the last one (as Qdrant's
//!   parser and jsonb keep it);
//! - strings: unescaped UTF-8 (an unpaired surrogate escape becomes bytes no valid string has);
//! - numbers: by what the column can keep, see [`Numbers`].
//!
//! [`canonical_payload`] is the one entry for the source side: it takes the payload as the
//! source hands it, and every number goes through [`number`], which the table side shares.
//! The form is self-delimiting (tags and lengths), so [`members`] can split an object again to
//! name the keys that differ.

use std::collections::HashMap;

use qdrant_client::qdrant::Value;
use qdrant_client::qdrant::value::Kind;

/// How numbers compare, by the payload column's type.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Numbers {
    /// `json` keeps each number's text, so its kind too. An integer and a float are equal only
    /// where a double holds both exactly (|x| ≤ 2^53): `1` equals `1.0`, but
    /// `18446744073709551615` never equals `1.8446744073709552e19`. Floats compare as doubles
    /// (`-0.0` equals `0.0`), larger integers exactly.
    Json,
    /// `jsonb` keeps a `numeric` and no kind: numbers compare by exact decimal value, a float by
    /// the shortest text that reads back to it (what the loaders write and `numeric` keeps), so
    /// `18446744073709551615` still differs from the double `1.8446744073709552e19`.
    Jsonb,
}

/// One number as a side holds it.
#[derive(Clone, Copy, Debug)]
pub enum Number<'a> {
    Int(i128),
    Float(f64),
    /// A JSON number literal, already checked against JSON's grammar.
    Literal(&'a str),
}

const NULL: u8 = 0;
const FALSE: u8 = 1;
const TRUE: u8 = 2;
const STRING: u8 = 3;
const ARRAY: u8 = 4;
const OBJECT: u8 = 5;
/// 8 bytes: the double's bits, `-0.0` as `0.0`.
const DOUBLE: u8 = 6;
/// An integer beyond ±2^53 under [`Numbers::Json`]: a [`decimal`] body.
const INTEGER: u8 = 7;
/// Any number under [`Numbers::Jsonb`]: a [`decimal`] body.
const DECIMAL: u8 = 8;
/// A NaN or infinite double under [`Numbers::Jsonb`] (no table can hold one).
const NON_FINITE: u8 = 9;

/// Nesting deeper than this is refused: the parser recurses, and no payload a gRPC message or a
/// snapshot carries comes near it.
const MAX_DEPTH: usize = 1024;

/// The table's payload text is not JSON (or nests deeper than [`MAX_DEPTH`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NotJson;

/// Appends the canonical form of a payload as the source hands it.
pub fn canonical_payload(payload: &HashMap<String, Value>, numbers: Numbers, out: &mut Vec<u8>) {
    grpc_object(payload, numbers, out);
}

fn grpc_object(map: &HashMap<String, Value>, numbers: Numbers, out: &mut Vec<u8>) {
    let mut entries: Vec<(&String, &Value)> = map.iter().collect();
    entries.sort_unstable_by(|a, b| a.0.cmp(b.0));
    out.push(OBJECT);
    push_len(out, entries.len());
    for (key, value) in entries {
        push_len(out, key.len());
        out.extend_from_slice(key.as_bytes());
        grpc_value(value, numbers, out);
    }
}

fn grpc_value(value: &Value, numbers: Numbers, out: &mut Vec<u8>) {
    match &value.kind {
        None | Some(Kind::NullValue(_)) => out.push(NULL),
        Some(Kind::BoolValue(b)) => out.push(if *b { TRUE } else { FALSE }),
        Some(Kind::IntegerValue(i)) => number(Number::Int(i128::from(*i)), numbers, out),
        Some(Kind::DoubleValue(d)) => number(Number::Float(*d), numbers, out),
        Some(Kind::StringValue(s)) => {
            out.push(STRING);
            push_len(out, s.len());
            out.extend_from_slice(s.as_bytes());
        }
        Some(Kind::ListValue(list)) => {
            out.push(ARRAY);
            push_len(out, list.values.len());
            for item in &list.values {
                grpc_value(item, numbers, out);
            }
        }
        Some(Kind::StructValue(s)) => grpc_object(&s.fields, numbers, out),
    }
}

/// Appends the canonical form of one number: the single place numbers are decided.
pub fn number(n: Number<'_>, numbers: Numbers, out: &mut Vec<u8>) {
    match numbers {
        Numbers::Json => match n {
            Number::Int(i) => integer(i, out),
            Number::Float(d) => double(d, out),
            Number::Literal(text) if text.bytes().any(|b| matches!(b, b'.' | b'e' | b'E')) => {
                // The grammar was checked, so the parse cannot fail; an overflow reads as ±inf.
                double(text.parse().unwrap_or(f64::NAN), out);
            }
            Number::Literal(text) => match text.parse::<i128>() {
                Ok(i) => integer(i, out),
                Err(_) => {
                    out.push(INTEGER);
                    decimal(text, out);
                }
            },
        },
        Numbers::Jsonb => match n {
            Number::Int(i) => {
                out.push(DECIMAL);
                decimal(itoa::Buffer::new().format(i), out);
            }
            Number::Float(d) if d.is_finite() => {
                out.push(DECIMAL);
                decimal(ryu::Buffer::new().format_finite(d), out);
            }
            Number::Float(_) => out.push(NON_FINITE),
            Number::Literal(text) => {
                out.push(DECIMAL);
                decimal(text, out);
            }
        },
    }
}

/// An integer under [`Numbers::Json`]: as a double where one holds it exactly, else exact.
fn integer(i: i128, out: &mut Vec<u8>) {
    const EXACT: i128 = 1 << 53;
    if (-EXACT..=EXACT).contains(&i) {
        double(i as f64, out);
    } else {
        out.push(INTEGER);
        decimal(itoa::Buffer::new().format(i), out);
    }
}

fn double(d: f64, out: &mut Vec<u8>) {
    out.push(DOUBLE);
    let d = if d == 0.0 { 0.0 } else { d };
    out.extend_from_slice(&d.to_bits().to_le_bytes());
}

/// The exact value of a decimal literal (`-12.50e3`) as a sign byte, the significant digits
/// (length-prefixed, no leading or trailing zeros) and the exponent of the last one: `1`,
/// `125`, `2`. Zero is `0`, no digits, `0`, whatever its sign or spelling.
fn decimal(text: &str, out: &mut Vec<u8>) {
    let (negative, unsigned) = match text.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, text),
    };
    let (mantissa, exponent) = match unsigned.split_once(['e', 'E']) {
        Some((m, e)) => (m, e),
        None => (unsigned, "0"),
    };
    let mut exponent: i64 = exponent.parse().unwrap_or_else(|_| {
        // Beyond i64: no source or table holds such a number; saturate, deterministically.
        if exponent.starts_with('-') {
            i64::MIN / 2
        } else {
            i64::MAX / 2
        }
    });
    let sign_at = out.len();
    out.push(u8::from(negative));
    let len_at = out.len();
    out.extend_from_slice(&[0; 4]);
    let digits_at = out.len();
    let mut after_point = false;
    for b in mantissa.bytes() {
        match b {
            b'.' => after_point = true,
            b'0' if out.len() == digits_at => exponent -= i64::from(after_point),
            digit => {
                out.push(digit);
                exponent -= i64::from(after_point);
            }
        }
    }
    while out.len() > digits_at && out[out.len() - 1] == b'0' {
        out.pop();
        exponent += 1;
    }
    let digits = out.len() - digits_at;
    if digits == 0 {
        out[sign_at] = 0;
        exponent = 0;
    }
    out[len_at..digits_at].copy_from_slice(&len_bytes(digits));
    out.extend_from_slice(&exponent.to_le_bytes());
}

/// Appends the canonical form of the JSON text a table holds.
pub fn canonical_json(text: &[u8], numbers: Numbers, out: &mut Vec<u8>) -> Result<(), NotJson> {
    let mut parser = Parser {
        text,
        at: 0,
        numbers,
    };
    parser.value(out, 0)?;
    parser.skip_space();
    if parser.at == text.len() {
        Ok(())
    } else {
        Err(NotJson)
    }
}

struct Parser<'a> {
    text: &'a [u8],
    at: usize,
    numbers: Numbers,
}

/// One object member written into the output: `[start, end)` with the key at `key`.
struct Member {
    start: usize,
    key: std::ops::Range<usize>,
    end: usize,
}

impl Parser<'_> {
    fn skip_space(&mut self) {
        while let Some(b' ' | b'\t' | b'\n' | b'\r') = self.text.get(self.at) {
            self.at += 1;
        }
    }

    fn expect(&mut self, byte: u8) -> Result<(), NotJson> {
        self.skip_space();
        if self.text.get(self.at) == Some(&byte) {
            self.at += 1;
            Ok(())
        } else {
            Err(NotJson)
        }
    }

    fn value(&mut self, out: &mut Vec<u8>, depth: usize) -> Result<(), NotJson> {
        if depth > MAX_DEPTH {
            return Err(NotJson);
        }
        self.skip_space();
        match *self.text.get(self.at).ok_or(NotJson)? {
            b'{' => self.object(out, depth),
            b'[' => self.array(out, depth),
            b'"' => {
                out.push(STRING);
                self.string(out)
            }
            b't' => self.word(b"true", TRUE, out),
            b'f' => self.word(b"false", FALSE, out),
            b'n' => self.word(b"null", NULL, out),
            b'-' | b'0'..=b'9' => {
                let numbers = self.numbers;
                number(Number::Literal(self.number_literal()?), numbers, out);
                Ok(())
            }
            _ => Err(NotJson),
        }
    }

    fn word(&mut self, word: &[u8], tag: u8, out: &mut Vec<u8>) -> Result<(), NotJson> {
        if self.text[self.at..].starts_with(word) {
            self.at += word.len();
            out.push(tag);
            Ok(())
        } else {
            Err(NotJson)
        }
    }

    /// `-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?`, JSON's number grammar.
    fn number_literal(&mut self) -> Result<&str, NotJson> {
        let start = self.at;
        let text = self.text;
        let digits = |at: &mut usize| {
            let from = *at;
            while text.get(*at).is_some_and(u8::is_ascii_digit) {
                *at += 1;
            }
            *at > from
        };
        let mut at = self.at;
        if text.get(at) == Some(&b'-') {
            at += 1;
        }
        if text.get(at) == Some(&b'0') {
            at += 1;
        } else if !digits(&mut at) {
            return Err(NotJson);
        }
        if text.get(at) == Some(&b'.') {
            at += 1;
            if !digits(&mut at) {
                return Err(NotJson);
            }
        }
        if let Some(b'e' | b'E') = text.get(at) {
            at += 1;
            if let Some(b'+' | b'-') = text.get(at) {
                at += 1;
            }
            if !digits(&mut at) {
                return Err(NotJson);
            }
        }
        self.at = at;
        // Only ASCII digits and signs were accepted.
        std::str::from_utf8(&text[start..at]).map_err(|_| NotJson)
    }

    /// The items of an array or object after its opening bracket, `,`-separated up to `close`:
    /// `item` reads each. Returns how many there were.
    fn items(
        &mut self,
        close: u8,
        mut item: impl FnMut(&mut Self) -> Result<(), NotJson>,
    ) -> Result<usize, NotJson> {
        self.at += 1;
        self.skip_space();
        if self.text.get(self.at) == Some(&close) {
            self.at += 1;
            return Ok(0);
        }
        let mut count = 0;
        loop {
            item(self)?;
            count += 1;
            self.skip_space();
            match self.text.get(self.at) {
                Some(b',') => self.at += 1,
                Some(&b) if b == close => {
                    self.at += 1;
                    return Ok(count);
                }
                _ => return Err(NotJson),
            }
        }
    }

    fn array(&mut self, out: &mut Vec<u8>, depth: usize) -> Result<(), NotJson> {
        out.push(ARRAY);
        let count_at = out.len();
        out.extend_from_slice(&[0; 4]);
        let count = self.items(b']', |p| p.value(out, depth + 1))?;
        out[count_at..count_at + 4].copy_from_slice(&len_bytes(count));
        Ok(())
    }

    fn object(&mut self, out: &mut Vec<u8>, depth: usize) -> Result<(), NotJson> {
        out.push(OBJECT);
        let count_at = out.len();
        out.extend_from_slice(&[0; 4]);
        let body = out.len();
        let mut members: Vec<Member> = Vec::new();
        self.items(b'}', |p| {
            p.expect(b'"')?;
            let start = out.len();
            p.at -= 1;
            p.string(out)?;
            let key = start + 4..out.len();
            p.expect(b':')?;
            p.value(out, depth + 1)?;
            members.push(Member {
                start,
                key,
                end: out.len(),
            });
            Ok(())
        })?;
        let key = |m: &Member| &out[m.key.clone()];
        let count = if members.windows(2).all(|w| key(&w[0]) < key(&w[1])) {
            members.len()
        } else {
            // Sorted by key, the last of equal keys first, which dedup then keeps.
            let mut order: Vec<usize> = (0..members.len()).collect();
            order.sort_by(|&a, &b| key(&members[a]).cmp(key(&members[b])).then(b.cmp(&a)));
            order.dedup_by(|a, b| key(&members[*a]) == key(&members[*b]));
            let mut sorted = Vec::with_capacity(out.len() - body);
            for &i in &order {
                sorted.extend_from_slice(&out[members[i].start..members[i].end]);
            }
            out.truncate(body);
            out.extend_from_slice(&sorted);
            order.len()
        };
        out[count_at..count_at + 4].copy_from_slice(&len_bytes(count));
        Ok(())
    }

    /// A string at `"`, written as its length and its unescaped bytes.
    fn string(&mut self, out: &mut Vec<u8>) -> Result<(), NotJson> {
        self.at += 1;
        let len_at = out.len();
        out.extend_from_slice(&[0; 4]);
        loop {
            let rest = &self.text[self.at..];
            let stop = memchr::memchr2(b'"', b'\\', rest).ok_or(NotJson)?;
            out.extend_from_slice(&rest[..stop]);
            self.at += stop + 1;
            if rest[stop] == b'"' {
                break;
            }
            let escape = *self.text.get(self.at).ok_or(NotJson)?;
            self.at += 1;
            let short = match escape {
                b'"' | b'\\' | b'/' => escape,
                b'b' => 0x08,
                b'f' => 0x0c,
                b'n' => b'\n',
                b'r' => b'\r',
                b't' => b'\t',
                b'u' => {
                    self.unicode_escape(out)?;
                    continue;
                }
                _ => return Err(NotJson),
            };
            out.push(short);
        }
        let len = out.len() - len_at - 4;
        out[len_at..len_at + 4].copy_from_slice(&len_bytes(len));
        Ok(())
    }

    /// `\uXXXX` (after the `u`), a surrogate pair joined into one character.
    fn unicode_escape(&mut self, out: &mut Vec<u8>) -> Result<(), NotJson> {
        let unit = self.hex4()?;
        let code = if (0xd800..0xdc00).contains(&unit)
            && self.text[self.at..].starts_with(b"\\u")
            && let Some(low) = self.peek_low_surrogate()
        {
            self.at += 6;
            0x10000 + ((unit - 0xd800) << 10) + (low - 0xdc00)
        } else {
            unit
        };
        match char::from_u32(code) {
            Some(c) => out.extend_from_slice(c.encode_utf8(&mut [0; 4]).as_bytes()),
            // An unpaired surrogate: its generalised UTF-8 bytes, which no valid string holds.
            None => out.extend_from_slice(&[
                0xe0 | (code >> 12) as u8,
                0x80 | ((code >> 6) & 0x3f) as u8,
                0x80 | (code & 0x3f) as u8,
            ]),
        }
        Ok(())
    }

    fn peek_low_surrogate(&self) -> Option<u32> {
        let hex = self.text.get(self.at + 2..self.at + 6)?;
        let unit = u32::from_str_radix(std::str::from_utf8(hex).ok()?, 16).ok()?;
        (0xdc00..0xe000).contains(&unit).then_some(unit)
    }

    fn hex4(&mut self) -> Result<u32, NotJson> {
        let hex = self.text.get(self.at..self.at + 4).ok_or(NotJson)?;
        if !hex.iter().all(u8::is_ascii_hexdigit) {
            return Err(NotJson);
        }
        self.at += 4;
        let hex = std::str::from_utf8(hex).map_err(|_| NotJson)?;
        u32::from_str_radix(hex, 16).map_err(|_| NotJson)
    }
}

/// An object's members as `(key, canonical value)`, from its canonical form; `None` when it is
/// not an object.
pub fn members(canonical: &[u8]) -> Option<Vec<(&[u8], &[u8])>> {
    if canonical.first() != Some(&OBJECT) {
        return None;
    }
    let count = read_len(canonical, 1)?;
    let mut at = 5;
    let mut out = Vec::with_capacity(count.min(1024));
    for _ in 0..count {
        let key_len = read_len(canonical, at)?;
        let key = canonical.get(at + 4..at + 4 + key_len)?;
        let value_at = at + 4 + key_len;
        let end = skip(canonical, value_at)?;
        out.push((key, &canonical[value_at..end]));
        at = end;
    }
    Some(out)
}

/// Where the canonical value starting at `at` ends.
fn skip(bytes: &[u8], at: usize) -> Option<usize> {
    Some(match *bytes.get(at)? {
        NULL | FALSE | TRUE | NON_FINITE => at + 1,
        DOUBLE => at + 9,
        STRING => at + 5 + read_len(bytes, at + 1)?,
        INTEGER | DECIMAL => at + 1 + 1 + 4 + read_len(bytes, at + 2)? + 8,
        ARRAY => {
            let mut end = at + 5;
            for _ in 0..read_len(bytes, at + 1)? {
                end = skip(bytes, end)?;
            }
            end
        }
        OBJECT => {
            let mut end = at + 5;
            for _ in 0..read_len(bytes, at + 1)? {
                end = skip(bytes, end + 4 + read_len(bytes, end)?)?;
            }
            end
        }
        _ => return None,
    })
}

fn push_len(out: &mut Vec<u8>, len: usize) {
    out.extend_from_slice(&len_bytes(len));
}

/// Lengths and counts as u32: a field PostgreSQL holds is at most 1 GB.
fn len_bytes(len: usize) -> [u8; 4] {
    (len as u32).to_le_bytes()
}

fn read_len(bytes: &[u8], at: usize) -> Option<usize> {
    let raw = bytes.get(at..at + 4)?;
    Some(u32::from_le_bytes(raw.try_into().ok()?) as usize)
}

#[cfg(test)]
mod tests {
    use qdrant_client::qdrant::{ListValue, Struct};

    use super::*;

    fn table(text: &str, numbers: Numbers) -> Vec<u8> {
        let mut out = Vec::new();
        canonical_json(text.as_bytes(), numbers, &mut out).unwrap_or_else(|_| panic!("{text}"));
        out
    }

    fn kind(kind: Kind) -> Value {
        Value { kind: Some(kind) }
    }

    fn source(pairs: Vec<(&str, Value)>, numbers: Numbers) -> Vec<u8> {
        let map = pairs.into_iter().map(|(k, v)| (k.to_owned(), v)).collect();
        let mut out = Vec::new();
        canonical_payload(&map, numbers, &mut out);
        out
    }

    fn int(i: i64) -> Value {
        kind(Kind::IntegerValue(i))
    }

    fn float(d: f64) -> Value {
        kind(Kind::DoubleValue(d))
    }

    #[test]
    fn json_numbers_keep_their_kind_above_two_to_the_53() {
        let j = Numbers::Json;
        let same = |text: &str, value: Value| {
            table(&format!("{{\"n\": {text}}}"), j) == source(vec![("n", value)], j)
        };
        assert!(same("1", float(1.0)));
        assert!(same("1.0", int(1)));
        assert!(same("-0.0", float(0.0)));
        assert!(same("0", float(-0.0)));
        assert!(same("1e2", int(100)));
        assert!(same("9007199254740992", float(9007199254740992.0)));
        assert!(same("0.10000000000000001", float(0.1)));
        assert!(same("9223372036854775807", int(i64::MAX)));
        assert!(same("1.8446744073709552e19", float(1.8446744073709552e19)));
        assert!(!same("9007199254740994", float(9007199254740994.0)));
        assert!(!same("18446744073709551615", float(1.8446744073709552e19)));
        assert!(!same("10000000000000000000", float(1e19)));
        assert!(!same("9223372036854775807", float(9223372036854775807.0)));
        assert!(!same("1", int(2)));
        assert!(!same("1e400", float(f64::MAX)));
        // Integers beyond i128 stay exact, and never equal a float.
        let huge = "123456789012345678901234567890123456789012";
        assert_ne!(table(huge, j), table(&format!("{huge}0"), j));
        assert_ne!(
            table(huge, j),
            table("1.23456789012345678901234567890123456789012e41", j)
        );
        assert_ne!(
            table("1.8446744073709552e19", j),
            table("18446744073709551615", j)
        );
    }

    #[test]
    fn jsonb_numbers_compare_by_exact_decimal_value() {
        let b = Numbers::Jsonb;
        let same = |text: &str, value: Value| {
            table(&format!("{{\"n\": {text}}}"), b) == source(vec![("n", value)], b)
        };
        // What numeric prints for what the loaders wrote.
        assert!(same("1.0", float(1.0)));
        assert!(same("1", float(1.0)));
        assert!(same("0.0", float(-0.0)));
        assert!(same(&format!("1{}", "0".repeat(308)), float(1e308)));
        assert!(same(&format!("0.{}5", "0".repeat(323)), float(5e-324)));
        assert!(same("18446744073709552000", float(1.8446744073709552e19)));
        assert!(same("-9223372036854775808", int(i64::MIN)));
        assert!(same("0.1", float(0.1)));
        assert!(!same("18446744073709551615", float(1.8446744073709552e19)));
        assert!(!same("0.10000000000000001", float(0.1)));
        assert!(!same("2", int(1)));
        assert!(!same("null", float(f64::NAN)));
        assert_eq!(table("-0e5", b), table("0.000", b));
        assert_eq!(table("12.50e3", b), table("12500", b));
        assert_ne!(table("-1", b), table("1", b));
    }

    #[test]
    fn objects_sort_keys_keep_the_last_repeat_and_strings_unescape() {
        let j = Numbers::Json;
        let text = r#"{"b": [true, false, null, "x\u00e9\ud83d\ude00\n\"\\\/"], "a": {"z": 1, "y": 2}, "b": {"k": "v"}}"#;
        let expected = source(
            vec![
                ("a", {
                    let fields = [("z", int(1)), ("y", int(2))]
                        .into_iter()
                        .map(|(k, v)| (k.to_owned(), v))
                        .collect();
                    kind(Kind::StructValue(Struct { fields }))
                }),
                ("b", {
                    let fields = [("k".to_owned(), kind(Kind::StringValue("v".into())))].into();
                    kind(Kind::StructValue(Struct { fields }))
                }),
            ],
            j,
        );
        assert_eq!(table(text, j), expected);
        let list = source(
            vec![(
                "b",
                kind(Kind::ListValue(ListValue {
                    values: vec![
                        kind(Kind::BoolValue(true)),
                        kind(Kind::BoolValue(false)),
                        kind(Kind::NullValue(0)),
                        kind(Kind::StringValue("xé😀\n\"\\/".into())),
                    ],
                })),
            )],
            j,
        );
        assert_eq!(
            table(
                r#"{"b": [true, false, null, "x\u00e9\ud83d\ude00\n\"\\\/"]}"#,
                j
            ),
            list
        );
        // jsonb's key order (shortest first) reads the same as sorted.
        assert_eq!(
            table(r#"{"b": 1, "aa": 2}"#, j),
            table(r#"{"aa": 2, "b": 1}"#, j)
        );
        // An unpaired surrogate never equals a valid string.
        assert_ne!(table(r#""\ud800""#, j), table("\"\u{fffd}\"", j));
    }

    #[test]
    fn malformed_text_is_refused() {
        for bad in [
            "",
            "{",
            "{\"a\"}",
            "{\"a\":}",
            "[1,]",
            "01",
            "1.",
            ".5",
            "-",
            "1e",
            "\"\\x\"",
            "\"abc",
            "tru",
            "{} x",
            "\"\\u12\"",
            "{\"a\":1,}",
        ] {
            let mut out = Vec::new();
            assert_eq!(
                canonical_json(bad.as_bytes(), Numbers::Json, &mut out),
                Err(NotJson),
                "{bad:?}"
            );
        }
        let deep = format!("{}{}", "[".repeat(MAX_DEPTH + 2), "]".repeat(MAX_DEPTH + 2));
        assert_eq!(
            canonical_json(deep.as_bytes(), Numbers::Json, &mut Vec::new()),
            Err(NotJson)
        );
    }

    #[test]
    fn members_split_an_object_again() {
        for numbers in [Numbers::Json, Numbers::Jsonb] {
            let canonical = table(
                r#"{"b": [1, {"x": null}], "a": "s", "c": 1e300, "d": 12345678901234567890}"#,
                numbers,
            );
            let members = members(&canonical).unwrap();
            let keys: Vec<&[u8]> = members.iter().map(|m| m.0).collect();
            assert_eq!(keys, [&b"a"[..], b"b", b"c", b"d"]);
            assert_eq!(members[0].1, table(r#""s""#, numbers));
            assert_eq!(members[1].1, table(r#"[1, {"x": null}]"#, numbers));
            assert_eq!(members[3].1, table("12345678901234567890", numbers));
            assert_eq!(super::members(&table("[1]", numbers)), None);
        }
    }
}
