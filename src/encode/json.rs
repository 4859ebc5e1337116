//! A point's payload as JSON text, escaped for COPY text in the same pass.
//!
//! The payload arrives as gRPC `Value`s in unordered maps, or — where gRPC could not carry it
//! exactly — as the JSON Qdrant holds ([`PayloadRef`]); both are written by the same writer.
//! Keys are written sorted so the same collection always exports the same bytes. Numbers keep
//! their kind: `integer_value` as an integer, `double_value` as serde_json (and so Qdrant's
//! REST API) writes it (`1.0` stays `1.0`, shortest round-trip digits via `ryu`), an exact
//! payload's integers as Qdrant wrote them (above `i64::MAX` too) and its floats as the same
//! doubles, written the same way. Non-finite
//! doubles, which JSON cannot spell, become `null` as in serde_json. Strings are escaped as
//! serde_json does (`"`, `\`, control characters; non-ASCII, U+2028 included, stays raw UTF-8),
//! so the text is what Qdrant itself would print.
//!
//! COPY text then needs `\` doubled and the `|` delimiter escaped. JSON text never holds a raw
//! newline, CR or tab (they are escaped inside strings and never appear outside), so those two
//! are all [`Escape::CopyText`] adds — done while writing, not as a second pass over the row.
//!
//! [`write_canonical`] writes the form `verify` compares: keys sorted, strings escaped as
//! above, every number in [`canonical_number`] form, so two payloads compare equal exactly
//! when they hold the same values (and, for `json` columns, the same number kinds), however
//! each side spelled its numbers.
//!
//! Strings are scanned with a 256-entry class table rather than `memchr`: JSON must find any
//! byte below 0x20 as well as `"` `\` `|`, more than `memchr3` can look for.

use std::collections::HashMap;

use qdrant_client::qdrant::Value;
use qdrant_client::qdrant::value::Kind;

use crate::payload::exact_json::{Canonical, JsonKind, JsonRef, Members, canonical_number};
use crate::payload::{PayloadRef, maybe_bent_integer};
use crate::point_id::PointKey;

/// How the JSON text is embedded in the COPY stream.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Escape {
    /// As it is: binary COPY fields carry their length, nothing needs escaping.
    None,
    /// Escaped for a COPY text field with `|` as the delimiter.
    CopyText,
}

/// What writing a payload saw that a column type may refuse, or that may be inexact.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[must_use]
pub struct JsonFacts {
    /// Some string or key holds U+0000 (written `\u0000`), which `json` stores but `jsonb`
    /// rejects.
    pub has_nul: bool,
    /// Some gRPC double lies in [2^63, 2^64]: possibly an integer above `i64::MAX` that
    /// Qdrant's gRPC API sent as the nearest double, and that could not be read again exactly
    /// (see [`maybe_bent_integer`]).
    pub wide_number: bool,
}

/// Why a payload was written from gRPC doubles although the REST API answered: it no longer
/// held the point (deleted between the two reads).
pub const NOT_FOUND_AGAIN: &str = "Qdrant's REST API no longer had the point";

/// The warning for a collection where some payload was written from a double that may be a
/// bent integer: it names the collection and one point, never the value, and says why the
/// exact value could not be had (`why`).
pub fn wide_number_warning(collection: &str, point: PointKey, why: &str) -> String {
    format!(
        "{collection}: point {point}'s payload holds a number between 2^63 and 2^64 that could \
         not be read exactly ({why}). Qdrant's gRPC API sends an integer above \
         9223372036854775807 (i64::MAX) as the nearest double, so if it was such an integer it \
         is written rounded: the payloads of such points may hold rounded values"
    )
}

/// Appends `payload` as one JSON object (`{}` when empty).
pub fn write_payload(out: &mut Vec<u8>, payload: PayloadRef<'_>, escape: Escape) -> JsonFacts {
    Writer::new(out, escape, Numbers::AsSent).payload(payload)
}

/// Appends `payload` in the canonical form `verify` compares (not escaped for COPY), numbers
/// kept as `form` says.
pub fn write_canonical(out: &mut Vec<u8>, payload: PayloadRef<'_>, form: Canonical) {
    let _ = Writer::new(out, Escape::None, Numbers::Canonical(form)).payload(payload);
}

/// How numbers are written.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Numbers {
    /// As Qdrant sent them.
    AsSent,
    /// In [`canonical_number`] form.
    Canonical(Canonical),
}

struct Writer<'a> {
    out: &'a mut Vec<u8>,
    escape: Escape,
    numbers: Numbers,
    facts: JsonFacts,
}

/// A container being written by [`Writer::exact`]: what is left of it.
enum Open<'a> {
    Array(Members<'a>, bool),
    Object(std::vec::IntoIter<(&'a str, JsonRef<'a>)>, bool),
}

impl<'a> Writer<'a> {
    fn new(out: &'a mut Vec<u8>, escape: Escape, numbers: Numbers) -> Self {
        Writer {
            out,
            escape,
            numbers,
            facts: JsonFacts::default(),
        }
    }

    fn payload(mut self, payload: PayloadRef<'_>) -> JsonFacts {
        match payload {
            PayloadRef::Grpc(map) => self.object(map),
            PayloadRef::Exact(json) => self.exact(json),
        }
        self.facts
    }

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
            Some(Kind::IntegerValue(n)) => self.number(itoa::Buffer::new().format(*n)),
            Some(Kind::DoubleValue(d)) if d.is_finite() => {
                self.facts.wide_number |= maybe_bent_integer(*d);
                self.number(ryu::Buffer::new().format_finite(*d));
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

    /// An exact payload, walked with an explicit stack: it may come from anywhere, and no
    /// depth should cost stack.
    fn exact(&mut self, root: JsonRef<'_>) {
        let mut open: Vec<Open<'_>> = Vec::new();
        let mut next = Some(root);
        loop {
            if let Some(value) = next.take() {
                match value.kind() {
                    JsonKind::Null => self.out.extend_from_slice(b"null"),
                    JsonKind::Bool(true) => self.out.extend_from_slice(b"true"),
                    JsonKind::Bool(false) => self.out.extend_from_slice(b"false"),
                    JsonKind::Number(text) => self.exact_number(text),
                    JsonKind::String(s) => self.string(s),
                    JsonKind::Array(members) => {
                        self.out.push(b'[');
                        open.push(Open::Array(members, true));
                    }
                    JsonKind::Object(members) => {
                        let mut entries: Vec<(&str, JsonRef<'_>)> =
                            members.map(|(k, v)| (k.unwrap_or_default(), v)).collect();
                        entries.sort_by(|a, b| a.0.cmp(b.0));
                        self.out.push(b'{');
                        open.push(Open::Object(entries.into_iter(), true));
                    }
                }
            }
            let Some(top) = open.last_mut() else {
                return;
            };
            match top {
                Open::Array(members, first) => match members.next() {
                    Some((_, value)) => {
                        if !std::mem::take(first) {
                            self.out.push(b',');
                        }
                        next = Some(value);
                    }
                    None => {
                        self.out.push(b']');
                        open.pop();
                    }
                },
                Open::Object(entries, first) => match entries.next() {
                    Some((key, value)) => {
                        if !std::mem::take(first) {
                            self.out.push(b',');
                        }
                        self.string(key);
                        self.out.push(b':');
                        next = Some(value);
                    }
                    None => {
                        self.out.push(b'}');
                        open.pop();
                    }
                },
            }
        }
    }

    /// A number of an exact payload: an integer as written (whole, whatever its size), a
    /// float as the double it reads as, in the same shortest form as a gRPC double — Qdrant's
    /// REST API spells `1e19` as `1e+19`, and the export must not depend on which way a value
    /// came. A float beyond the double range (not something Qdrant writes) stays as written.
    fn exact_number(&mut self, text: &str) {
        if text.contains(['.', 'e', 'E'])
            && let Ok(d) = text.parse::<f64>()
            && d.is_finite()
        {
            self.number(ryu::Buffer::new().format_finite(d));
        } else {
            self.number(text);
        }
    }

    /// A JSON number's text: digits, sign, `.`, `e` — nothing COPY text would misread.
    fn number(&mut self, text: &str) {
        match self.numbers {
            Numbers::AsSent => self.out.extend_from_slice(text.as_bytes()),
            Numbers::Canonical(form) => canonical_number(text, form, self.out),
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
    use crate::payload::ExactJson;

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
        let facts = write_payload(&mut out, PayloadRef::Grpc(p), escape);
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
        let nested = v(Kind::ListValue(ListValue {
            values: vec![v(Kind::DoubleValue(u64::MAX as f64))],
        }));
        let mut out = Vec::new();
        let p = payload(vec![("k", nested)]);
        assert!(write_payload(&mut out, PayloadRef::Grpc(&p), Escape::None).wide_number);
        let p = payload(vec![("k", s("x"))]);
        assert!(!write_payload(&mut out, PayloadRef::Grpc(&p), Escape::None).wide_number);
    }

    fn exact(text: &str, escape: Escape) -> (String, JsonFacts) {
        let doc = ExactJson::parse(text, 10).unwrap();
        let mut out = Vec::new();
        let facts = write_payload(&mut out, PayloadRef::Exact(doc.root()), escape);
        (String::from_utf8(out).unwrap(), facts)
    }

    #[test]
    fn exact_payloads_are_written_like_grpc_ones_with_integers_whole() {
        let (text, facts) = exact(
            r#"{"z": [1.0, 18446744073709551615, 1e19, -0.0], "a": {"y": null, "b": true},
                "s": "\u0000|\\\n\u2028"}"#,
            Escape::CopyText,
        );
        assert_eq!(
            text,
            "{\"a\":{\"b\":true,\"y\":null},\"s\":\"\\\\u0000\\|\\\\\\\\\\\\n\u{2028}\",\
             \"z\":[1.0,18446744073709551615,1e19,-0.0]}"
        );
        assert!(facts.has_nul && !facts.wide_number);
        // The same payload over gRPC writes the same bytes.
        let p = payload(vec![
            (
                "a",
                v(Kind::StructValue(Struct {
                    fields: payload(vec![
                        ("y", v(Kind::NullValue(0))),
                        ("b", v(Kind::BoolValue(true))),
                    ]),
                })),
            ),
            ("s", s("\0|\\\n\u{2028}")),
        ]);
        let (grpc, _) = json(&p, Escape::CopyText);
        let (same, _) = exact(
            r#"{"s": "\u0000|\\\n\u2028", "a": {"b": true, "y": null}}"#,
            Escape::CopyText,
        );
        assert_eq!(grpc, same);
    }

    #[test]
    fn canonical_forms_agree_across_spellings_and_sources() {
        let canonical = |payload: PayloadRef<'_>| {
            let mut out = Vec::new();
            write_canonical(&mut out, payload, Canonical::Values);
            String::from_utf8(out).unwrap()
        };
        let p = payload(vec![
            ("big", v(Kind::DoubleValue(1e19))),
            ("half", v(Kind::DoubleValue(0.5))),
            ("n", v(Kind::IntegerValue(-120))),
            ("zero", v(Kind::DoubleValue(-0.0))),
        ]);
        let from_grpc = canonical(PayloadRef::Grpc(&p));
        assert_eq!(from_grpc, r#"{"big":1e19,"half":5e-1,"n":-12e1,"zero":0}"#);
        // As jsonb prints the same values, keys in its own order.
        let doc = ExactJson::parse(
            r#"{"n": -120, "big": 10000000000000000000, "zero": 0.0, "half": 0.50}"#,
            10,
        )
        .unwrap();
        assert_eq!(canonical(PayloadRef::Exact(doc.root())), from_grpc);
        let exact = ExactJson::parse(r#"{"u": 18446744073709551615}"#, 10).unwrap();
        let rounded = ExactJson::parse(r#"{"u": 1.8446744073709552e19}"#, 10).unwrap();
        assert_ne!(
            canonical(PayloadRef::Exact(exact.root())),
            canonical(PayloadRef::Exact(rounded.root()))
        );
        // What a json column keeps: the integer 10^19 is not the float 1e19.
        let kinded = |payload: PayloadRef<'_>| {
            let mut out = Vec::new();
            write_canonical(&mut out, payload, Canonical::ValuesAndKinds);
            String::from_utf8(out).unwrap()
        };
        let integer = ExactJson::parse(r#"{"big": 10000000000000000000}"#, 10).unwrap();
        let float = payload(vec![("big", v(Kind::DoubleValue(1e19)))]);
        assert_ne!(
            kinded(PayloadRef::Exact(integer.root())),
            kinded(PayloadRef::Grpc(&float))
        );
        assert_eq!(
            kinded(PayloadRef::Grpc(&p)),
            r#"{"big":1.0e19,"half":5.0e-1,"n":-12e1,"zero":0}"#
        );
    }
}
