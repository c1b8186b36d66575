//! A JSON tree that keeps what FHIR needs kept: member order and numbers exactly as
//! written.
//!
//! FHIR decimals carry precision (`1.50` is not `1.5`), and a redacted record must leave
//! clinical values untouched, so numbers stay as their source text. Members keep their
//! order, duplicate member names are refused (a reader that kept the other copy could see
//! a value this crate never scrubbed), and the parser enforces
//! [`crate::limits::MAX_JSON_DEPTH`] and
//! [`crate::limits::MAX_NODES`] while it builds the tree. Errors give a byte
//! offset, never content.

use std::collections::HashSet;

use crate::FhirError;
use crate::limits::{MAX_JSON_DEPTH, NodeBudget};

/// A parsed JSON value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Json {
    Null,
    Bool(bool),
    /// A number, as written in the source.
    Number(String),
    String(String),
    Array(Vec<Json>),
    /// Members in source order; names are unique.
    Object(Vec<(String, Json)>),
}

impl Json {
    /// The member `key` of an object.
    pub(crate) fn get(&self, key: &str) -> Option<&Json> {
        match self {
            Json::Object(members) => members.iter().find(|(k, _)| k == key).map(|(_, v)| v),
            _ => None,
        }
    }

    /// The member `key` of an object, mutably.
    pub(crate) fn get_mut(&mut self, key: &str) -> Option<&mut Json> {
        match self {
            Json::Object(members) => members.iter_mut().find(|(k, _)| k == key).map(|(_, v)| v),
            _ => None,
        }
    }

    /// The text of a string value.
    pub(crate) fn as_str(&self) -> Option<&str> {
        match self {
            Json::String(s) => Some(s),
            _ => None,
        }
    }

    /// The `resourceType` of an object that is a FHIR resource.
    pub(crate) fn resource_type(&self) -> Option<&str> {
        self.get("resourceType").and_then(Json::as_str)
    }
}

/// Parses a whole JSON document (UTF-8 already checked by the caller).
pub(crate) fn parse(text: &str) -> Result<Json, FhirError> {
    let mut parser = Parser {
        b: text.as_bytes(),
        text,
        at: 0,
        budget: NodeBudget::default(),
    };
    parser.skip_bom();
    parser.skip_ws();
    let value = parser.value(0)?;
    parser.skip_ws();
    if parser.at != parser.b.len() {
        return Err(parser.err("content after the end of the document"));
    }
    Ok(value)
}

struct Parser<'a> {
    b: &'a [u8],
    text: &'a str,
    at: usize,
    budget: NodeBudget,
}

impl Parser<'_> {
    fn err(&self, problem: &'static str) -> FhirError {
        FhirError::InvalidJson {
            problem,
            offset: self.at,
        }
    }

    fn skip_bom(&mut self) {
        if self.b.starts_with(b"\xEF\xBB\xBF") {
            self.at = 3;
        }
    }

    fn skip_ws(&mut self) {
        while let Some(b' ' | b'\t' | b'\n' | b'\r') = self.b.get(self.at) {
            self.at += 1;
        }
    }

    fn peek(&self) -> Option<u8> {
        self.b.get(self.at).copied()
    }

    fn value(&mut self, depth: usize) -> Result<Json, FhirError> {
        self.budget.take("JSON values")?;
        match self.peek() {
            Some(b'{') => self.object(depth + 1),
            Some(b'[') => self.array(depth + 1),
            Some(b'"') => Ok(Json::String(self.string()?)),
            Some(b't') => self.literal(b"true", Json::Bool(true)),
            Some(b'f') => self.literal(b"false", Json::Bool(false)),
            Some(b'n') => self.literal(b"null", Json::Null),
            Some(b'-' | b'0'..=b'9') => self.number(),
            Some(_) => Err(self.err("unexpected character")),
            None => Err(self.err("unexpected end of input")),
        }
    }

    fn enter(&self, depth: usize) -> Result<(), FhirError> {
        if depth > MAX_JSON_DEPTH {
            return Err(FhirError::TooDeep {
                limit: MAX_JSON_DEPTH,
                offset: self.at,
            });
        }
        Ok(())
    }

    fn object(&mut self, depth: usize) -> Result<Json, FhirError> {
        self.enter(depth)?;
        self.at += 1;
        let mut members: Vec<(String, Json)> = Vec::new();
        let mut names: HashSet<String> = HashSet::new();
        self.skip_ws();
        if self.peek() == Some(b'}') {
            self.at += 1;
            return Ok(Json::Object(members));
        }
        loop {
            self.skip_ws();
            if self.peek() != Some(b'"') {
                return Err(self.err("expected a member name"));
            }
            let name_at = self.at;
            let name = self.string()?;
            if !names.insert(name.clone()) {
                return Err(FhirError::InvalidJson {
                    problem: "duplicate member name",
                    offset: name_at,
                });
            }
            self.skip_ws();
            if self.peek() != Some(b':') {
                return Err(self.err("expected ':' after a member name"));
            }
            self.at += 1;
            self.skip_ws();
            let value = self.value(depth)?;
            members.push((name, value));
            self.skip_ws();
            match self.peek() {
                Some(b',') => self.at += 1,
                Some(b'}') => {
                    self.at += 1;
                    return Ok(Json::Object(members));
                }
                _ => return Err(self.err("expected ',' or '}' in an object")),
            }
        }
    }

    fn array(&mut self, depth: usize) -> Result<Json, FhirError> {
        self.enter(depth)?;
        self.at += 1;
        let mut items = Vec::new();
        self.skip_ws();
        if self.peek() == Some(b']') {
            self.at += 1;
            return Ok(Json::Array(items));
        }
        loop {
            self.skip_ws();
            items.push(self.value(depth)?);
            self.skip_ws();
            match self.peek() {
                Some(b',') => self.at += 1,
                Some(b']') => {
                    self.at += 1;
                    return Ok(Json::Array(items));
                }
                _ => return Err(self.err("expected ',' or ']' in an array")),
            }
        }
    }

    fn literal(&mut self, word: &[u8], value: Json) -> Result<Json, FhirError> {
        if self.b[self.at..].starts_with(word) {
            self.at += word.len();
            Ok(value)
        } else {
            Err(self.err("unknown literal"))
        }
    }

    fn digits(&mut self) -> usize {
        let start = self.at;
        while let Some(b'0'..=b'9') = self.peek() {
            self.at += 1;
        }
        self.at - start
    }

    fn number(&mut self) -> Result<Json, FhirError> {
        let start = self.at;
        if self.peek() == Some(b'-') {
            self.at += 1;
        }
        match self.peek() {
            Some(b'0') => self.at += 1,
            Some(b'1'..=b'9') => {
                self.digits();
            }
            _ => return Err(self.err("malformed number")),
        }
        if self.peek() == Some(b'.') {
            self.at += 1;
            if self.digits() == 0 {
                return Err(self.err("malformed number"));
            }
        }
        if let Some(b'e' | b'E') = self.peek() {
            self.at += 1;
            if let Some(b'+' | b'-') = self.peek() {
                self.at += 1;
            }
            if self.digits() == 0 {
                return Err(self.err("malformed number"));
            }
        }
        Ok(Json::Number(self.text[start..self.at].to_owned()))
    }

    fn hex4(&mut self) -> Result<u32, FhirError> {
        let mut n = 0u32;
        for _ in 0..4 {
            let d = match self.peek() {
                Some(c @ b'0'..=b'9') => c - b'0',
                Some(c @ b'a'..=b'f') => c - b'a' + 10,
                Some(c @ b'A'..=b'F') => c - b'A' + 10,
                _ => return Err(self.err("malformed \\u escape")),
            };
            n = n * 16 + u32::from(d);
            self.at += 1;
        }
        Ok(n)
    }

    fn string(&mut self) -> Result<String, FhirError> {
        self.at += 1;
        let mut out = String::new();
        loop {
            let run = self.at;
            while let Some(c) = self.peek() {
                if c == b'"' || c == b'\\' || c < 0x20 {
                    break;
                }
                self.at += 1;
            }
            // Stops only at ASCII bytes, so the run is whole UTF-8 characters.
            out.push_str(&self.text[run..self.at]);
            match self.peek() {
                Some(b'"') => {
                    self.at += 1;
                    return Ok(out);
                }
                Some(b'\\') => {
                    self.at += 1;
                    let c = match self.peek() {
                        Some(b'"') => '"',
                        Some(b'\\') => '\\',
                        Some(b'/') => '/',
                        Some(b'b') => '\u{8}',
                        Some(b'f') => '\u{c}',
                        Some(b'n') => '\n',
                        Some(b'r') => '\r',
                        Some(b't') => '\t',
                        Some(b'u') => {
                            self.at += 1;
                            out.push(self.unicode_escape()?);
                            continue;
                        }
                        _ => return Err(self.err("unknown escape")),
                    };
                    self.at += 1;
                    out.push(c);
                }
                Some(_) => return Err(self.err("control character in a string")),
                None => return Err(self.err("unterminated string")),
            }
        }
    }

    /// The character of a `\uXXXX` escape (the `\u` already consumed), joining surrogate
    /// pairs; a lone surrogate is not a character and is refused.
    fn unicode_escape(&mut self) -> Result<char, FhirError> {
        let first = self.hex4()?;
        let code = if (0xD800..0xDC00).contains(&first) {
            if !self.b[self.at..].starts_with(b"\\u") {
                return Err(self.err("unpaired surrogate escape"));
            }
            self.at += 2;
            let second = self.hex4()?;
            if !(0xDC00..0xE000).contains(&second) {
                return Err(self.err("unpaired surrogate escape"));
            }
            0x10000 + ((first - 0xD800) << 10) + (second - 0xDC00)
        } else {
            first
        };
        char::from_u32(code).ok_or_else(|| self.err("unpaired surrogate escape"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn obj(members: &[(&str, Json)]) -> Json {
        Json::Object(
            members
                .iter()
                .map(|(k, v)| ((*k).to_owned(), v.clone()))
                .collect(),
        )
    }

    #[test]
    fn parses_values_and_keeps_order_and_number_text() {
        let v = parse(
            r#" {"b": 1.50, "a": [true, false, null, -0, 2e-3], "s": "x\u00e9\ud83d\ude00\n"} "#,
        )
        .unwrap();
        let expected = obj(&[
            ("b", Json::Number("1.50".into())),
            (
                "a",
                Json::Array(vec![
                    Json::Bool(true),
                    Json::Bool(false),
                    Json::Null,
                    Json::Number("-0".into()),
                    Json::Number("2e-3".into()),
                ]),
            ),
            ("s", Json::String("xé😀\n".into())),
        ]);
        assert_eq!(v, expected);
    }

    #[test]
    fn refuses_malformed_json_with_an_offset() {
        for (bad, offset) in [
            ("{", 1),
            ("{\"a\" 1}", 5),
            ("[1,]", 3),
            ("01", 1),
            ("1.", 2),
            ("\"\\x\"", 2),
            ("\"\\ud800\"", 7),
            ("\"a\nb\"", 2),
            ("{\"a\":1,\"a\":2}", 7),
            ("[1] [2]", 4),
            ("tru", 0),
            ("", 0),
        ] {
            match parse(bad) {
                Err(FhirError::InvalidJson { offset: at, .. }) => assert_eq!(at, offset, "{bad:?}"),
                other => panic!("{bad:?}: {other:?}"),
            }
        }
    }

    #[test]
    fn depth_limit_is_enforced() {
        let ok = "[".repeat(MAX_JSON_DEPTH) + &"]".repeat(MAX_JSON_DEPTH);
        assert!(parse(&ok).is_ok());
        let deep = "[".repeat(MAX_JSON_DEPTH + 1) + &"]".repeat(MAX_JSON_DEPTH + 1);
        assert!(matches!(parse(&deep), Err(FhirError::TooDeep { .. })));
    }

    #[test]
    fn accepts_a_byte_order_mark() {
        assert_eq!(parse("\u{feff}{}").unwrap(), Json::Object(vec![]));
    }
}
