//! A point's payload as JSON text, escaped for COPY text in the same pass.
//!
//! The payload arrives as gRPC `Value`s in unordered maps; keys are written sorted so the same
//! collection always exports the same bytes. Numbers keep their kind: `integer_value` as an
//! integer, `double_value` as serde_json (and so Qdrant's REST API) writes it (`1.0` stays
//! `1.0`, shortest round-trip digits via `ryu`). Non-finite doubles, which JSON cannot spell,
//! become `null` as in serde_json. Strings are escaped as serde_json does (`"`, `\`, control
//! characters; non-ASCII, U+2028 included, stays raw UTF-8), so the text is what Qdrant itself
//! would print.
//!
//! COPY text then needs `\` doubled and the `|` delimiter escaped. JSON text never holds a raw
//! newline, CR or tab (they are escaped inside strings and never appear outside), so those two
//! are all [`Escape::CopyText`] adds — done while writing, not as a second pass over the row.
//!
//! Strings are scanned with a 256-entry class table rather than `memchr`: JSON must find any
//! byte below 0x20 as well as `"` `\` `|`, more than `memchr3` can look for.

use std::collections::HashMap;

use qdrant_client::qdrant::Value;
use qdrant_client::qdrant::value::Kind;

use crate::point_id::PointKey;

/// How the JSON text is embedded in the COPY stream.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Escape {
    /// As it is: binary COPY fields carry their length, nothing needs escaping.
    None,
    /// Escaped for a COPY text field with `|` as the delimiter.
    CopyText,
}

/// What writing a payload saw that a column type may refuse.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[must_use]
pub struct JsonFacts {
    /// Some string or key holds U+0000 (written `\u0000`), which `json` stores but `jsonb`
    /// rejects.
    pub has_nul: bool,
    /// Some double lies in [2^63, 2^64]: most likely an integer above `i64::MAX` that Qdrant's
    /// gRPC API (which has no unsigned integer kind) sent as the nearest double. See
    /// [`maybe_bent_integer`].
    pub wide_number: bool,
}

/// The warning for a collection where [`maybe_bent_integer`] fired: it names the collection and
/// one point, never the value.
pub fn wide_number_warning(collection: &str, point: PointKey) -> String {
    format!(
        "{collection}: point {point}'s payload holds a number between 2^63 and 2^64. Qdrant \
         sends an integer above 9223372036854775807 (i64::MAX) as the nearest double, so if \
         it was such an integer it is written rounded (see the README's known limits)"
    )
}

/// Whether a payload double may be an integer above `i64::MAX` that reached us rounded.
///
/// Qdrant keeps a JSON integer as i64 or u64 and converts a u64 above `i64::MAX` into the
/// nearest double when it answers over gRPC (`json_to_proto` in its `api` crate; our snapshot
/// reader shares that conversion). Such a value lands in [2^63, 2^64] (`u64::MAX` rounds up to
/// 2^64). Integers outside that range are not affected: anything below `i64::MIN` or above
/// `u64::MAX` is already a double inside Qdrant. A genuine float in the range (say `1e19`) is
/// indistinguishable, which is why this only ever raises a warning.
pub fn maybe_bent_integer(d: f64) -> bool {
    const TWO_POW_63: f64 = 9_223_372_036_854_775_808.0;
    (TWO_POW_63..=2.0 * TWO_POW_63).contains(&d)
}

/// Appends `payload` as one JSON object (`{}` when empty).
pub fn write_payload(
    out: &mut Vec<u8>,
    payload: &HashMap<String, Value>,
    escape: Escape,
) -> JsonFacts {
    let mut facts = JsonFacts::default();
    let mut w = Writer {
        out,
        escape,
        facts: &mut facts,
    };
    w.object(payload);
    facts
}

struct Writer<'a> {
    out: &'a mut Vec<u8>,
    escape: Escape,
    facts: &'a mut JsonFacts,
}

impl Writer<'_> {
    fn object(&mut self, map: &HashMap<String, Value>) {
        // Sorting needs the keys in one place: one small allocation per object. The whole
        // payload, sort included, measured about 4 % of a 768-d row (benches/encode.rs).
        let mut entries: Vec<(&String, &Value)> = map.iter().collect();
        entries.sort_unstable_by(|a, b| a.0.cmp(b.0));
        self.out.push(b'{');
        for (i, (key, value)) in entries.into_iter().enumerate() {
            if i > 0 {
                self.out.push(b',');
            }
            self.string(key);
            self.out.push(b':');
            self.value(value);
        }
        self.out.push(b'}');
    }

    fn value(&mut self, value: &Value) {
        match &value.kind {
            None | Some(Kind::NullValue(_)) => self.out.extend_from_slice(b"null"),
            Some(Kind::BoolValue(true)) => self.out.extend_from_slice(b"true"),
            Some(Kind::BoolValue(false)) => self.out.extend_from_slice(b"false"),
            Some(Kind::IntegerValue(n)) => {
                self.out
                    .extend_from_slice(itoa::Buffer::new().format(*n).as_bytes());
            }
            Some(Kind::DoubleValue(d)) if d.is_finite() => {
                self.facts.wide_number |= maybe_bent_integer(*d);
                self.out
                    .extend_from_slice(ryu::Buffer::new().format_finite(*d).as_bytes());
            }
            Some(Kind::DoubleValue(_)) => self.out.extend_from_slice(b"null"),
            Some(Kind::StringValue(s)) => self.string(s),
            Some(Kind::StructValue(s)) => self.object(&s.fields),
            Some(Kind::ListValue(list)) => {
                self.out.push(b'[');
                for (i, item) in list.values.iter().enumerate() {
                    if i > 0 {
                        self.out.push(b',');
                    }
                    self.value(item);
                }
                self.out.push(b']');
            }
        }
    }

    fn string(&mut self, s: &str) {
        let table = match self.escape {
            Escape::None => &JSON_CLASS,
            Escape::CopyText => &COPY_CLASS,
        };
        let bytes = s.as_bytes();
        self.out.push(b'"');
        let mut run = 0;
        for (i, &b) in bytes.iter().enumerate() {
            let class = table[usize::from(b)];
            if class == PLAIN {
                continue;
            }
            self.out.extend_from_slice(&bytes[run..i]);
            run = i + 1;
            self.escaped(b, class);
        }
        self.out.extend_from_slice(&bytes[run..]);
        self.out.push(b'"');
    }

    #[cold]
    fn escaped(&mut self, b: u8, class: u8) {
        // A JSON escape starts with one backslash; inside COPY text that backslash is doubled.
        let backslash: &[u8] = match self.escape {
            Escape::None => b"\\",
            Escape::CopyText => b"\\\\",
        };
        match class {
            DELIMITER => self.out.extend_from_slice(b"\\|"),
            UNICODE => {
                self.facts.has_nul |= b == 0;
                const HEX: &[u8; 16] = b"0123456789abcdef";
                self.out.extend_from_slice(backslash);
                self.out.extend_from_slice(&[
                    b'u',
                    b'0',
                    b'0',
                    HEX[usize::from(b >> 4)],
                    HEX[usize::from(b & 0xf)],
                ]);
            }
            short => {
                self.out.extend_from_slice(backslash);
                if short == b'\\' {
                    // The escaped character is itself a backslash: doubled again for COPY.
                    self.out.extend_from_slice(backslash);
                } else {
                    self.out.push(short);
                }
            }
        }
    }
}

/// A byte written as it is.
const PLAIN: u8 = 0;
/// A control character with no short escape: `\u00XX`.
const UNICODE: u8 = 1;
/// The COPY delimiter `|` (COPY text only).
const DELIMITER: u8 = 2;

/// Per byte: [`PLAIN`], [`UNICODE`], or the letter of its short JSON escape.
const JSON_CLASS: [u8; 256] = class_table(false);
const COPY_CLASS: [u8; 256] = class_table(true);

const fn class_table(copy_text: bool) -> [u8; 256] {
    let mut table = [PLAIN; 256];
    let mut b = 0;
    while b < 0x20 {
        table[b] = UNICODE;
        b += 1;
    }
    table[0x08] = b'b';
    table[0x0c] = b'f';
    table[b'\n' as usize] = b'n';
    table[b'\r' as usize] = b'r';
    table[b'\t' as usize] = b't';
    table[b'"' as usize] = b'"';
    table[b'\\' as usize] = b'\\';
    if copy_text {
        table[b'|' as usize] = DELIMITER;
    }
    table
}

#[cfg(test)]
mod tests {
    use qdrant_client::qdrant::{ListValue, Struct};

    use super::*;

    fn v(kind: Kind) -> Value {
        Value { kind: Some(kind) }
    }

    fn s(text: &str) -> Value {
        v(Kind::StringValue(text.into()))
    }

    fn payload(entries: Vec<(&str, Value)>) -> HashMap<String, Value> {
        entries
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v))
            .collect()
    }

    fn json(p: &HashMap<String, Value>, escape: Escape) -> (String, bool) {
        let mut out = Vec::new();
        let facts = write_payload(&mut out, p, escape);
        (String::from_utf8(out).unwrap(), facts.has_nul)
    }

    /// Undoes COPY text escaping the way PostgreSQL reads a field.
    fn copy_unescape(field: &str) -> String {
        let mut out = String::new();
        let mut chars = field.chars();
        while let Some(c) = chars.next() {
            if c != '\\' {
                out.push(c);
                continue;
            }
            match chars.next() {
                Some('n') => out.push('\n'),
                Some('r') => out.push('\r'),
                Some('t') => out.push('\t'),
                Some(other) => out.push(other),
                None => panic!("dangling backslash in {field:?}"),
            }
        }
        out
    }

    #[test]
    fn keys_sorted_numbers_keep_their_kind() {
        let p = payload(vec![
            ("b", v(Kind::IntegerValue(-9_223_372_036_854_775_808))),
            ("a", v(Kind::DoubleValue(1.0))),
            ("c", v(Kind::DoubleValue(1e308))),
            ("d", v(Kind::DoubleValue(5e-324))),
            ("e", v(Kind::DoubleValue(f64::NAN))),
            ("f", v(Kind::BoolValue(false))),
            ("g", v(Kind::NullValue(0))),
            ("h", Value { kind: None }),
            (
                "i",
                v(Kind::ListValue(ListValue {
                    values: vec![s("x"), v(Kind::DoubleValue(-0.5))],
                })),
            ),
            (
                "j",
                v(Kind::StructValue(Struct {
                    fields: payload(vec![("z", v(Kind::IntegerValue(1))), ("y", s(""))]),
                })),
            ),
        ]);
        let (text, nul) = json(&p, Escape::None);
        assert_eq!(
            text,
            r#"{"a":1.0,"b":-9223372036854775808,"c":1e308,"d":5e-324,"e":null,"f":false,"g":null,"h":null,"i":["x",-0.5],"j":{"y":"","z":1}}"#
        );
        assert!(!nul);
        let parsed: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(parsed["c"].as_f64(), Some(1e308));
        assert_eq!(parsed["d"].as_f64(), Some(5e-324));
        assert_eq!(json(&HashMap::new(), Escape::CopyText).0, "{}");
    }

    #[test]
    fn strings_escape_like_serde_json_and_round_trip_through_copy_text() {
        let hazards = [
            "",
            "plain",
            "\\",
            "\"",
            "|",
            "\\|\"\n\r\t",
            "a\u{0}b",
            "\u{1}\u{8}\u{c}\u{1f}\u{7f}",
            "naïve 日本語 🦀",
            "line\u{2028}sep\u{2029}",
            "\\n is not a newline",
            "\\.",
            "|||\\\\\\",
        ];
        for hazard in hazards {
            let p = payload(vec![(hazard, s(hazard))]);
            let (plain, nul) = json(&p, Escape::None);
            let expected = serde_json::to_string(&serde_json::json!({ hazard: hazard })).unwrap();
            assert_eq!(plain, expected, "{hazard:?}");
            assert_eq!(nul, hazard.contains('\0'), "{hazard:?}");
            let (copy, _) = json(&p, Escape::CopyText);
            assert!(!copy.contains(['\n', '\r', '\t']), "{copy:?}");
            assert!(
                copy.match_indices('|')
                    .all(|(i, _)| copy[..i].ends_with('\\')),
                "unescaped delimiter in {copy:?}"
            );
            assert_eq!(copy_unescape(&copy), plain, "{hazard:?}");
        }
        let (all_special, _) = json(&payload(vec![("k", s("\\|"))]), Escape::CopyText);
        assert_eq!(all_special, r#"{"k":"\\\\\|"}"#);
        let (nul, has_nul) = json(&payload(vec![("\0", s("x"))]), Escape::CopyText);
        assert_eq!(nul, r#"{"\\u0000":"x"}"#);
        assert!(has_nul);
    }

    #[test]
    fn doubles_where_a_u64_would_land_are_flagged() {
        // What Qdrant's gRPC sends for these u64 payload integers.
        for bent in [i64::MAX as u64 + 1, u64::MAX - 1, u64::MAX] {
            assert!(maybe_bent_integer(bent as f64), "{bent}");
        }
        for plain in [
            i64::MAX as f64 / 4.0,
            -(2f64.powi(63)),
            2f64.powi(65),
            1e308,
            0.5,
        ] {
            assert!(!maybe_bent_integer(plain), "{plain}");
        }
        let nested = v(Kind::ListValue(ListValue {
            values: vec![v(Kind::DoubleValue(u64::MAX as f64))],
        }));
        let mut out = Vec::new();
        let facts = write_payload(&mut out, &payload(vec![("k", nested)]), Escape::None);
        assert!(facts.wide_number);
        let facts = write_payload(&mut out, &payload(vec![("k", s("x"))]), Escape::None);
        assert!(!facts.wide_number);
    }
}
