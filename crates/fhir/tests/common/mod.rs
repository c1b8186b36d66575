//! Helpers shared by the integration tests: where the samples are, and small readers
//! that look at redacted output independently of the crate's own parsers.

// Each test file uses a different subset of these helpers.
#![allow(dead_code)]

use std::path::PathBuf;

use quick_xml::Reader;
use quick_xml::events::{BytesStart, Event};
use serde_json::Value;

/// The pseudonym the tests redact with.
pub const PSEUDONYM: &str = "px-7f3a9c";

/// The two real IPS samples shared with the project.
pub const SAMPLES: [&str; 2] = [
    "ips-bundle-minimal.json",
    "ips-bundle-no-info-required-sections.json",
];

/// Path of a shared FHIR sample (`/work/shared/data/fhir/…` beside the repository).
pub fn sample_path(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../../shared/data/fhir")
        .join(name)
}

/// Bytes of a shared FHIR sample.
pub fn sample(name: &str) -> Vec<u8> {
    let path = sample_path(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()))
}

/// Bytes of one of this crate's own fixtures in `tests/data`.
pub fn fixture(name: &str) -> Vec<u8> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data")
        .join(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()))
}

/// Every string anywhere in a JSON value under a member named `key`.
pub fn strings_under(v: &Value, key: &str, out: &mut Vec<String>) {
    match v {
        Value::Object(map) => {
            for (k, child) in map {
                if k == key {
                    collect_strings(child, out);
                }
                strings_under(child, key, out);
            }
        }
        Value::Array(items) => items.iter().for_each(|c| strings_under(c, key, out)),
        _ => {}
    }
}

/// Every string in a JSON value.
pub fn collect_strings(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::String(s) => out.push(s.clone()),
        Value::Array(items) => items.iter().for_each(|c| collect_strings(c, out)),
        Value::Object(map) => map.values().for_each(|c| collect_strings(c, out)),
        _ => {}
    }
}

/// Letters and digits of a value, for checking that no reformatted copy survives.
pub fn digits_and_letters(s: &str) -> String {
    s.chars().filter(|c| c.is_alphanumeric()).collect()
}

/// An entry of an XML Bundle as seen by a plain (non-FHIR-aware) reader.
#[derive(Debug, Clone)]
pub struct XmlEntry {
    pub full_url: Option<String>,
    pub resource_type: String,
    pub id: Option<String>,
    /// The resource element exactly as written.
    pub source: String,
}

fn value_attr(e: &BytesStart<'_>) -> Option<String> {
    e.attributes()
        .flatten()
        .find(|a| a.key.as_ref() == b"value")
        .map(|a| String::from_utf8(a.value.into_owned()).unwrap())
}

/// The entries of an XML Bundle (default FHIR namespace, no prefixes).
pub fn xml_entries(text: &str) -> Vec<XmlEntry> {
    let mut reader = Reader::from_str(text);
    let mut stack: Vec<String> = Vec::new();
    let mut entries: Vec<XmlEntry> = Vec::new();
    let mut start = 0usize;
    loop {
        let before = reader.buffer_position() as usize;
        let (e, opens) = match reader.read_event().unwrap() {
            Event::Start(e) => (e, true),
            Event::Empty(e) => (e, false),
            Event::End(_) => {
                if stack.len() == 4 && stack[2] == "resource" {
                    let end = reader.buffer_position() as usize;
                    entries.last_mut().unwrap().source = text[start..end].to_owned();
                }
                stack.pop();
                continue;
            }
            Event::Eof => break,
            _ => continue,
        };
        let name = String::from_utf8(e.name().as_ref().to_vec()).unwrap();
        let path: Vec<&str> = stack.iter().map(String::as_str).collect();
        match (path.as_slice(), name.as_str()) {
            (["Bundle"], "entry") => entries.push(XmlEntry {
                full_url: None,
                resource_type: String::new(),
                id: None,
                source: String::new(),
            }),
            (["Bundle", "entry"], "fullUrl") => {
                entries.last_mut().unwrap().full_url = value_attr(&e);
            }
            (["Bundle", "entry", "resource"], t) => {
                entries.last_mut().unwrap().resource_type = t.to_owned();
                start = before;
            }
            (["Bundle", "entry", "resource", _], "id") => {
                entries.last_mut().unwrap().id = value_attr(&e);
            }
            _ => {}
        }
        if opens {
            stack.push(name);
        }
    }
    entries
}

/// Every `<reference value="…"/>` in an XML document.
pub fn xml_references(text: &str) -> Vec<String> {
    let mut reader = Reader::from_str(text);
    let mut out = Vec::new();
    loop {
        match reader.read_event().unwrap() {
            Event::Start(e) | Event::Empty(e) if e.name().as_ref() == b"reference" => {
                out.extend(value_attr(&e));
            }
            Event::Eof => break,
            _ => {}
        }
    }
    out
}
