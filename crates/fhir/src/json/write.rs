//! Writing the JSON tree back out: compact, members in order, numbers as they were read.

use super::value::Json;

/// Serialises a value compactly.
pub(crate) fn to_bytes(value: &Json) -> Vec<u8> {
    let mut out = Vec::new();
    write(value, &mut out);
    out
}

/// Serialises a value compactly into a string (used for removed fragments).
pub(crate) fn to_text(value: &Json) -> String {
    // Only valid UTF-8 is ever written.
    String::from_utf8(to_bytes(value)).unwrap_or_default()
}

fn write(value: &Json, out: &mut Vec<u8>) {
    match value {
        Json::Null => out.extend_from_slice(b"null"),
        Json::Bool(true) => out.extend_from_slice(b"true"),
        Json::Bool(false) => out.extend_from_slice(b"false"),
        Json::Number(n) => out.extend_from_slice(n.as_bytes()),
        Json::String(s) => write_string(s, out),
        Json::Array(items) => {
            out.push(b'[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write(item, out);
            }
            out.push(b']');
        }
        Json::Object(members) => {
            out.push(b'{');
            for (i, (name, item)) in members.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_string(name, out);
                out.push(b':');
                write(item, out);
            }
            out.push(b'}');
        }
    }
}

fn write_string(s: &str, out: &mut Vec<u8>) {
    out.push(b'"');
    let mut run = 0;
    for (i, c) in s.char_indices() {
        let escaped: Option<&[u8]> = match c {
            '"' => Some(b"\\\""),
            '\\' => Some(b"\\\\"),
            '\n' => Some(b"\\n"),
            '\r' => Some(b"\\r"),
            '\t' => Some(b"\\t"),
            c if (c as u32) < 0x20 => None,
            _ => continue,
        };
        out.extend_from_slice(&s.as_bytes()[run..i]);
        match escaped {
            Some(e) => out.extend_from_slice(e),
            None => out.extend_from_slice(format!("\\u{:04x}", c as u32).as_bytes()),
        }
        run = i + c.len_utf8();
    }
    out.extend_from_slice(&s.as_bytes()[run..]);
    out.push(b'"');
}

#[cfg(test)]
mod tests {
    use super::super::value::parse;
    use super::*;

    #[test]
    fn round_trips_compactly() {
        let text = r#"{"a":[1.50,-2e+3,true,null],"b":"q\"\\\n\t\u0001é","c":{}}"#;
        assert_eq!(to_text(&parse(text).unwrap()), text);
    }
}
