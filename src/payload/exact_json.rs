//! JSON held exactly: numbers as their text, any depth, no recursion.
//!
//! serde_json (without `arbitrary_precision`, which would change how the Qdrant engine in this
//! process reads its own payloads) turns every number into an `i64`, a `u64` or an `f64`, and
//! its default float reading is not always correctly rounded. Where the text itself is the
//! truth — Qdrant's REST answers, a table's `payload::text` read back by `verify` — this
//! parser keeps each number as the text it was written as, so nothing is rounded on the way.
//!
//! The document is a flat list of nodes in document order; a container records where its
//! subtree ends, so walking, skipping and copying never recurse and a hostile depth costs heap,
//! not stack. Strings are kept unescaped.

use std::fmt;

/// A JSON document, parsed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExactJson {
    nodes: Vec<Node>,
    /// The unescaped strings and the number texts, back to back.
    text: String,
}

/// One value; containers are followed by their members (objects: key node, value node).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Node {
    Null,
    Bool(bool),
    Number(Span),
    String(Span),
    /// `len` members; `end` is the index of the first node after the object's subtree.
    Object {
        len: usize,
        end: usize,
    },
    Array {
        len: usize,
        end: usize,
    },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Span {
    start: usize,
    end: usize,
}

/// Why a text is not JSON this parser takes.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JsonError {
    #[error("invalid JSON at byte {offset}: {reason}")]
    Syntax { offset: usize, reason: &'static str },
    #[error("JSON nested deeper than {limit} levels (at byte {offset})")]
    TooDeep { offset: usize, limit: usize },
}

/// A view of one value of an [`ExactJson`].
#[derive(Clone, Copy)]
pub struct JsonRef<'a> {
    doc: &'a ExactJson,
    index: usize,
}

/// What a value is.
pub enum JsonKind<'a> {
    Null,
    Bool(bool),
    /// The number as written, e.g. `18446744073709551615` or `1e19`.
    Number(&'a str),
    String(&'a str),
    Array(Members<'a>),
    Object(Members<'a>),
}

/// The members of an array (values) or object (key, value), in document order.
pub struct Members<'a> {
    doc: &'a ExactJson,
    next: usize,
    left: usize,
    object: bool,
}

impl<'a> Iterator for Members<'a> {
    /// The key (objects only) and the value.
    type Item = (Option<&'a str>, JsonRef<'a>);

    fn next(&mut self) -> Option<Self::Item> {
        if self.left == 0 {
            return None;
        }
        self.left -= 1;
        let key = if self.object {
            let key = match self.doc.nodes[self.next] {
                Node::String(span) => &self.doc.text[span.start..span.end],
                // The parser only ever puts a string node in key position.
                _ => "",
            };
            self.next += 1;
            Some(key)
        } else {
            None
        };
        let value = JsonRef {
            doc: self.doc,
            index: self.next,
        };
        self.next = value.end();
        Some((key, value))
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (self.left, Some(self.left))
    }
}

impl ExactJson {
    /// Parses one JSON document (whitespace around it allowed), refusing nesting deeper than
    /// `max_depth` (an object or array is one level; a scalar at the top is depth 0).
    pub fn parse(text: &str, max_depth: usize) -> Result<ExactJson, JsonError> {
        Parser {
            bytes: text.as_bytes(),
            text,
            at: 0,
            doc: ExactJson {
                nodes: Vec::new(),
                text: String::new(),
            },
            open: Vec::new(),
            fresh: false,
            max_depth,
        }
        .document()
    }

    /// The top value.
    pub fn root(&self) -> JsonRef<'_> {
        JsonRef {
            doc: self,
            index: 0,
        }
    }

    /// A copy of one value of another document as a document of its own.
    pub fn copy_of(value: JsonRef<'_>) -> ExactJson {
        let (first, end) = (value.index, value.end());
        let mut doc = ExactJson {
            nodes: Vec::with_capacity(end - first),
            text: String::new(),
        };
        for node in &value.doc.nodes[first..end] {
            let mut copy_span = |span: Span| {
                let start = doc.text.len();
                doc.text.push_str(&value.doc.text[span.start..span.end]);
                Span {
                    start,
                    end: doc.text.len(),
                }
            };
            doc.nodes.push(match *node {
                Node::Number(span) => Node::Number(copy_span(span)),
                Node::String(span) => Node::String(copy_span(span)),
                Node::Object { len, end } => Node::Object {
                    len,
                    end: end - first,
                },
                Node::Array { len, end } => Node::Array {
                    len,
                    end: end - first,
                },
                scalar => scalar,
            });
        }
        doc
    }
}

impl<'a> JsonRef<'a> {
    pub fn kind(&self) -> JsonKind<'a> {
        let doc = self.doc;
        let members = |len, object| Members {
            doc,
            next: self.index + 1,
            left: len,
            object,
        };
        match doc.nodes[self.index] {
            Node::Null => JsonKind::Null,
            Node::Bool(b) => JsonKind::Bool(b),
            Node::Number(span) => JsonKind::Number(&doc.text[span.start..span.end]),
            Node::String(span) => JsonKind::String(&doc.text[span.start..span.end]),
            Node::Array { len, .. } => JsonKind::Array(members(len, false)),
            Node::Object { len, .. } => JsonKind::Object(members(len, true)),
        }
    }

    /// The value of `key`, when this is an object that has it (the first, if repeated).
    pub fn get(&self, key: &str) -> Option<JsonRef<'a>> {
        match self.kind() {
            JsonKind::Object(members) => members
                .filter(|(k, _)| *k == Some(key))
                .map(|(_, v)| v)
                .next(),
            _ => None,
        }
    }

    /// The index of the first node after this value's subtree.
    fn end(&self) -> usize {
        match self.doc.nodes[self.index] {
            Node::Object { end, .. } | Node::Array { end, .. } => end,
            _ => self.index + 1,
        }
    }
}

/// Two values are equal when they are written alike: the same structure, members in the same
/// order, numbers with the same text, strings with the same content. Compared node by node,
/// without recursion.
impl PartialEq for JsonRef<'_> {
    fn eq(&self, other: &Self) -> bool {
        let mine = &self.doc.nodes[self.index..self.end()];
        let theirs = &other.doc.nodes[other.index..other.end()];
        mine.len() == theirs.len()
            && mine.iter().zip(theirs).all(|(a, b)| match (a, b) {
                (Node::Number(x), Node::Number(y)) | (Node::String(x), Node::String(y)) => {
                    self.doc.text[x.start..x.end] == other.doc.text[y.start..y.end]
                }
                (Node::Object { len: x, .. }, Node::Object { len: y, .. })
                | (Node::Array { len: x, .. }, Node::Array { len: y, .. }) => x == y,
                (a, b) => a == b,
            })
    }
}

impl fmt::Debug for JsonRef<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "JsonRef({})", self.index)
    }
}

/// What a canonical number keeps.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Canonical {
    /// The decimal value only. `jsonb` keeps no more: it stores numbers as `numeric` and prints
    /// `1e19` as `10000000000000000000` and `-0.0` as `0.0`.
    Values,
    /// The decimal value and whether it was written as an integer or a float (with `.` or an
    /// exponent), as a `json` column keeps its text: the integer `10000000000000000000` and the
    /// float `1e19` stay apart. An integral value a double holds exactly (|x| ≤ 2^53) is the
    /// same number either way (`1` and `1.0`), as verify has always counted it.
    ValuesAndKinds,
}

/// Appends a number's canonical form: the same text exactly when the decimal values (and, with
/// [`Canonical::ValuesAndKinds`], the kinds) are the same, however each was written. Values
/// become `digits` + `e` + exponent with no leading or trailing zeros (`1e19`, `-12e1`, `0`);
/// a float kept as such is written `d.ddd` + `e` + exponent instead (`1.0e19`, `5.0e-1`), but
/// one with an integral value within ±2^53 as that integer (`1.0` as `1`). Nothing is rounded: `18446744073709551615` and `1.8446744073709552e19` differ, as
/// do `2^63` and the shortest form of the double nearest it. `text` must be a JSON number.
pub fn canonical_number(text: &str, form: Canonical, out: &mut Vec<u8>) {
    let float = form == Canonical::ValuesAndKinds && text.contains(['.', 'e', 'E']);
    let (negative, unsigned) = match text.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, text),
    };
    let (mantissa, exponent) = match unsigned.find(['e', 'E']) {
        Some(at) => (&unsigned[..at], &unsigned[at + 1..]),
        None => (unsigned, ""),
    };
    let (int, frac) = mantissa.split_once('.').unwrap_or((mantissa, ""));
    // The exponent as written, saturating: a hostile `1e99999999999999999999` compares
    // unequal to any real value either way.
    let mut exp: i64 = 0;
    let (exp_negative, exp_digits) = match exponent.as_bytes().first() {
        Some(b'-') => (true, &exponent[1..]),
        Some(b'+') => (false, &exponent[1..]),
        _ => (false, exponent),
    };
    for d in exp_digits.bytes() {
        exp = exp.saturating_mul(10).saturating_add(i64::from(d - b'0'));
    }
    if exp_negative {
        exp = -exp;
    }
    exp = exp.saturating_sub(frac.len() as i64);
    let mut digits: Vec<u8> = int
        .bytes()
        .chain(frac.bytes())
        .skip_while(|&d| d == b'0')
        .collect();
    while digits.last() == Some(&b'0') {
        digits.pop();
        exp = exp.saturating_add(1);
    }
    // An integral value a double holds exactly is one number however it was written: `1.0`
    // equals `1`. Above 2^53 the kinds stay apart.
    let float = float && !integral_up_to_2_pow_53(&digits, exp);
    if digits.is_empty() {
        out.extend_from_slice(if float { b"0.0" } else { b"0" });
        return;
    }
    if negative {
        out.push(b'-');
    }
    if float {
        // d.ddd × 10^(exp + places after the point)
        out.push(digits[0]);
        out.push(b'.');
        match &digits[1..] {
            [] => out.push(b'0'),
            rest => out.extend_from_slice(rest),
        }
        exp = exp.saturating_add(digits.len() as i64 - 1);
    } else {
        out.extend_from_slice(&digits);
    }
    if exp != 0 {
        out.push(b'e');
        out.extend_from_slice(itoa::Buffer::new().format(exp).as_bytes());
    }
}

/// Whether `digits` × 10^`exp` is an integer of magnitude at most 2^53 (zero included).
fn integral_up_to_2_pow_53(digits: &[u8], exp: i64) -> bool {
    if exp < 0 || digits.len() as i64 + exp > 16 {
        return digits.is_empty();
    }
    let value = digits
        .iter()
        .fold(0u64, |v, d| v * 10 + u64::from(d - b'0'))
        * 10u64.pow(exp as u32);
    value <= 1 << 53
}

struct Parser<'t> {
    bytes: &'t [u8],
    text: &'t str,
    at: usize,
    doc: ExactJson,
    /// Open containers: their node index.
    open: Vec<usize>,
    /// The innermost open container has no member yet.
    fresh: bool,
    max_depth: usize,
}

impl Parser<'_> {
    fn error(&self, reason: &'static str) -> JsonError {
        JsonError::Syntax {
            offset: self.at,
            reason,
        }
    }

    fn skip_whitespace(&mut self) {
        while let Some(b' ' | b'\t' | b'\n' | b'\r') = self.bytes.get(self.at) {
            self.at += 1;
        }
    }

    fn peek(&mut self) -> Option<u8> {
        self.skip_whitespace();
        self.bytes.get(self.at).copied()
    }

    fn expect(&mut self, byte: u8, reason: &'static str) -> Result<(), JsonError> {
        if self.peek() == Some(byte) {
            self.at += 1;
            Ok(())
        } else {
            Err(self.error(reason))
        }
    }

    fn document(mut self) -> Result<ExactJson, JsonError> {
        self.value()?;
        while let Some(&open) = self.open.last() {
            let object = matches!(self.doc.nodes[open], Node::Object { .. });
            let close = if object { b'}' } else { b']' };
            let next = self.peek();
            if next == Some(close) {
                self.at += 1;
                self.close();
            } else if self.fresh {
                self.member(object)?;
            } else if next == Some(b',') {
                self.at += 1;
                self.member(object)?;
            } else {
                return Err(self.error("expected `,` or the end of the container"));
            }
        }
        if self.peek().is_some() {
            return Err(self.error("trailing characters after the document"));
        }
        Ok(self.doc)
    }

    /// A member after `{`, `[` or `,`: for objects a key and `:` first.
    fn member(&mut self, object: bool) -> Result<(), JsonError> {
        if object {
            if self.peek() != Some(b'"') {
                return Err(self.error("expected a string key"));
            }
            self.string()?;
            self.expect(b':', "expected `:` after a key")?;
        }
        if let Some(&open) = self.open.last() {
            match &mut self.doc.nodes[open] {
                Node::Object { len, .. } | Node::Array { len, .. } => *len += 1,
                _ => {}
            }
        }
        self.value()
    }

    fn close(&mut self) {
        self.fresh = false;
        if let Some(open) = self.open.pop() {
            let end = self.doc.nodes.len();
            if let Node::Object { end: e, .. } | Node::Array { end: e, .. } =
                &mut self.doc.nodes[open]
            {
                *e = end;
            }
        }
    }

    /// One value; a container is only opened: its members are read by
    /// [`document`](Self::document)'s loop, so nesting never recurses.
    fn value(&mut self) -> Result<(), JsonError> {
        self.fresh = false;
        match self.peek() {
            Some(c @ (b'{' | b'[')) => {
                if self.open.len() >= self.max_depth {
                    return Err(JsonError::TooDeep {
                        offset: self.at,
                        limit: self.max_depth,
                    });
                }
                self.at += 1;
                self.open.push(self.doc.nodes.len());
                self.doc.nodes.push(if c == b'{' {
                    Node::Object { len: 0, end: 0 }
                } else {
                    Node::Array { len: 0, end: 0 }
                });
                self.fresh = true;
                Ok(())
            }
            Some(b'"') => self.string(),
            Some(b'-' | b'0'..=b'9') => self.number(),
            Some(_) => {
                for (word, node) in [
                    ("null", Node::Null),
                    ("true", Node::Bool(true)),
                    ("false", Node::Bool(false)),
                ] {
                    if self.bytes[self.at..].starts_with(word.as_bytes()) {
                        self.at += word.len();
                        self.doc.nodes.push(node);
                        return Ok(());
                    }
                }
                Err(self.error("expected a value"))
            }
            None => Err(self.error("unexpected end of the text")),
        }
    }

    fn number(&mut self) -> Result<(), JsonError> {
        let start = self.at;
        let digits = |p: &mut Self| {
            let from = p.at;
            while p.bytes.get(p.at).is_some_and(u8::is_ascii_digit) {
                p.at += 1;
            }
            p.at - from
        };
        if self.bytes.get(self.at) == Some(&b'-') {
            self.at += 1;
        }
        match self.bytes.get(self.at) {
            Some(b'0') => self.at += 1,
            Some(b'1'..=b'9') => {
                digits(self);
            }
            _ => return Err(self.error("a number needs digits")),
        }
        if self.bytes.get(self.at) == Some(&b'.') {
            self.at += 1;
            if digits(self) == 0 {
                return Err(self.error("a number needs digits after `.`"));
            }
        }
        if let Some(b'e' | b'E') = self.bytes.get(self.at) {
            self.at += 1;
            if let Some(b'+' | b'-') = self.bytes.get(self.at) {
                self.at += 1;
            }
            if digits(self) == 0 {
                return Err(self.error("a number needs digits in its exponent"));
            }
        }
        let span = self.push_text(&self.text[start..self.at]);
        self.doc.nodes.push(Node::Number(span));
        Ok(())
    }

    fn push_text(&mut self, s: &str) -> Span {
        let start = self.doc.text.len();
        self.doc.text.push_str(s);
        Span {
            start,
            end: self.doc.text.len(),
        }
    }

    /// A string at `"`, unescaped into the document's text.
    fn string(&mut self) -> Result<(), JsonError> {
        self.at += 1;
        let start = self.doc.text.len();
        loop {
            let run = self.at;
            while let Some(&b) = self.bytes.get(self.at) {
                if b == b'"' || b == b'\\' || b < 0x20 {
                    break;
                }
                self.at += 1;
            }
            // `run..at` ends before an ASCII byte, so it is a whole UTF-8 sequence.
            self.doc.text.push_str(&self.text[run..self.at]);
            match self.bytes.get(self.at) {
                Some(b'"') => {
                    self.at += 1;
                    break;
                }
                Some(b'\\') => {
                    self.at += 1;
                    self.escape()?;
                }
                Some(_) => return Err(self.error("a control character inside a string")),
                None => return Err(self.error("a string is not closed")),
            }
        }
        let span = Span {
            start,
            end: self.doc.text.len(),
        };
        self.doc.nodes.push(Node::String(span));
        Ok(())
    }

    /// The escape after a backslash.
    fn escape(&mut self) -> Result<(), JsonError> {
        let Some(&c) = self.bytes.get(self.at) else {
            return Err(self.error("a string is not closed"));
        };
        self.at += 1;
        let ch = match c {
            b'"' => '"',
            b'\\' => '\\',
            b'/' => '/',
            b'b' => '\u{8}',
            b'f' => '\u{c}',
            b'n' => '\n',
            b'r' => '\r',
            b't' => '\t',
            b'u' => {
                let first = self.hex4()?;
                let code = if (0xD800..0xDC00).contains(&first) {
                    if !self.bytes[self.at..].starts_with(b"\\u") {
                        return Err(self.error("a lone surrogate in a \\u escape"));
                    }
                    self.at += 2;
                    let second = self.hex4()?;
                    if !(0xDC00..0xE000).contains(&second) {
                        return Err(self.error("a lone surrogate in a \\u escape"));
                    }
                    0x10000 + ((first - 0xD800) << 10) + (second - 0xDC00)
                } else {
                    first
                };
                char::from_u32(code)
                    .ok_or_else(|| self.error("a lone surrogate in a \\u escape"))?
            }
            _ => return Err(self.error("an unknown escape in a string")),
        };
        self.doc.text.push(ch);
        Ok(())
    }

    fn hex4(&mut self) -> Result<u32, JsonError> {
        let digits = self
            .bytes
            .get(self.at..self.at + 4)
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u32::from_str_radix(h, 16).ok())
            .ok_or_else(|| self.error("a \\u escape needs four hex digits"))?;
        self.at += 4;
        Ok(digits)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn canonical(text: &str) -> String {
        let mut out = Vec::new();
        canonical_number(text, Canonical::Values, &mut out);
        String::from_utf8(out).unwrap()
    }

    fn kinded(text: &str) -> String {
        let mut out = Vec::new();
        canonical_number(text, Canonical::ValuesAndKinds, &mut out);
        String::from_utf8(out).unwrap()
    }

    /// The document back as compact JSON (keys in document order), for the tests.
    fn show(value: JsonRef<'_>) -> String {
        match value.kind() {
            JsonKind::Null => "null".into(),
            JsonKind::Bool(b) => b.to_string(),
            JsonKind::Number(n) => n.into(),
            JsonKind::String(s) => serde_json::to_string(s).unwrap(),
            JsonKind::Array(members) => {
                let items: Vec<String> = members.map(|(_, v)| show(v)).collect();
                format!("[{}]", items.join(","))
            }
            JsonKind::Object(members) => {
                let items: Vec<String> = members
                    .map(|(k, v)| {
                        format!("{}:{}", serde_json::to_string(k.unwrap()).unwrap(), show(v))
                    })
                    .collect();
                format!("{{{}}}", items.join(","))
            }
        }
    }

    #[test]
    fn numbers_keep_their_text_and_strings_are_unescaped() {
        let text = r#" {"u64": 18446744073709551615, "f": 0.39118921785523453, "e": -1.5E+3,
            "s": "a\"\\\/\b\f\n\r\t\u00e9\ud83e\udd80|", "n": [null, true, false, {}, []]} "#;
        let doc = ExactJson::parse(text, 10).unwrap();
        let root = doc.root();
        assert_eq!(
            show(root),
            r#"{"u64":18446744073709551615,"f":0.39118921785523453,"e":-1.5E+3,"s":"a\"\\/\b\f\n\r\té🦀|","n":[null,true,false,{},[]]}"#
        );
        assert!(matches!(
            root.get("u64").unwrap().kind(),
            JsonKind::Number("18446744073709551615")
        ));
        assert!(root.get("missing").is_none());
        let copy = ExactJson::copy_of(root.get("n").unwrap());
        assert_eq!(show(copy.root()), "[null,true,false,{},[]]");
        assert_eq!(copy.root(), root.get("n").unwrap());
        assert_ne!(copy.root(), root);
        let other = ExactJson::parse(r#"[null, true, false, {}, [1]]"#, 5).unwrap();
        assert_ne!(copy.root(), other.root());
    }

    #[test]
    fn malformed_text_is_refused_with_its_offset() {
        for bad in [
            "",
            "{",
            "[1,]",
            "{\"a\" 1}",
            "{1:2}",
            "01",
            "1.",
            "1e",
            "-",
            "\"\\x\"",
            "\"\\ud800\"",
            "\"a\u{1}\"",
            "nul",
            "[1] 2",
            "\"open",
            "{\"a\":1,}",
        ] {
            assert!(
                matches!(ExactJson::parse(bad, 10), Err(JsonError::Syntax { .. })),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn depth_is_limited_without_recursion() {
        let deep = |d: usize| format!("{}1{}", "[".repeat(d), "]".repeat(d));
        assert!(ExactJson::parse(&deep(5), 5).is_ok());
        assert_eq!(
            ExactJson::parse(&deep(6), 5),
            Err(JsonError::TooDeep {
                offset: 5,
                limit: 5
            })
        );
        // A million levels: heap only, no stack to overflow, in the parse, the copy, the
        // comparison or the drop.
        let doc = ExactJson::parse(&deep(1_000_000), usize::MAX).unwrap();
        assert_eq!(ExactJson::copy_of(doc.root()).root(), doc.root());
        let objects = |d: usize| format!("{}1{}", r#"{"k":"#.repeat(d), "}".repeat(d));
        assert!(ExactJson::parse(&objects(1000), 1000).is_ok());
        assert!(matches!(
            ExactJson::parse(&objects(1001), 1000),
            Err(JsonError::TooDeep { limit: 1000, .. })
        ));
    }

    #[test]
    fn canonical_numbers_are_equal_exactly_when_values_are() {
        for (a, b) in [
            ("1e19", "10000000000000000000"),
            ("1e19", "1.0e19"),
            ("1E+19", "100000000000000000000e-1"),
            ("-0.0", "0"),
            ("0.50", "5e-1"),
            ("100", "1e2"),
            ("-12.5", "-125e-1"),
            ("5e-324", &*format!("0.{}5", "0".repeat(323))),
        ] {
            assert_eq!(canonical(a), canonical(b), "{a} = {b}");
        }
        for (a, b) in [
            ("18446744073709551615", "1.8446744073709552e19"),
            ("9223372036854775808", "9.223372036854776e18"),
            ("0.39118921785523453", "0.3911892178552346"),
            ("1", "-1"),
        ] {
            assert_ne!(canonical(a), canonical(b), "{a} != {b}");
        }
        assert_eq!(canonical("18446744073709551615"), "18446744073709551615");
        assert_eq!(
            canonical("-0.0028413045220077038"),
            "-28413045220077038e-19"
        );
        // Kinds kept: an integer and a float of one value stay apart above 2^53, where a double
        // cannot hold both; spellings still merge.
        assert_ne!(kinded("10000000000000000000"), kinded("1e19"));
        assert_ne!(kinded("9007199254740994"), kinded("9007199254740994.0"));
        assert_eq!(kinded("9007199254740992"), kinded("9007199254740992.0"));
        assert_eq!(kinded("-9007199254740992"), kinded("-9.007199254740992e15"));
        assert_eq!(kinded("1"), kinded("1.0"));
        assert_eq!(kinded("100"), kinded("1e2"));
        assert_eq!(kinded("1e19"), "1.0e19");
        assert_eq!(kinded("1.0E+19"), "1.0e19");
        assert_eq!(kinded("10000000000000000000"), "1e19");
        assert_eq!(kinded("-0.0028413045220077038"), "-2.8413045220077038e-3");
        assert_eq!(kinded("0.5"), "5.0e-1");
        assert_eq!(kinded("-0.0"), "0");
        assert_eq!(kinded("12.5"), "1.25e1");
        assert_eq!(kinded("7"), "7");
    }
}
