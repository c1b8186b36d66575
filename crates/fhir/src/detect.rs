//! Telling FHIR records from other files, failing closed.
//!
//! The node redacts what [`detect`] recognises and sends anything else as an ordinary
//! attachment, so a FHIR record that is *not* recognised would leave unredacted. Detection
//! is therefore generous: a well-formed JSON object with a string `resourceType`, or XML
//! whose root element is in the FHIR namespace, is FHIR — and so is input that starts
//! like JSON or XML, cannot be read in full (damaged, over a limit) and mentions
//! `"resourceType"` or the FHIR namespace. Such input then fails loudly in
//! [`crate::birth_dates`] and [`crate::redact_identifiers`] instead of slipping through.

use quick_xml::NsReader;
use quick_xml::events::Event;
use quick_xml::name::ResolveResult;

use crate::json::value::{self, Json};
use crate::limits::MAX_INPUT_BYTES;
use crate::xml::tree::FHIR_NS;

/// The two FHIR serialisations this crate reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FhirFormat {
    /// FHIR JSON (`application/fhir+json`).
    Json,
    /// FHIR XML (`application/fhir+xml`).
    Xml,
}

/// Whether `bytes` is a FHIR resource, and in which format; `None` for anything else.
/// Never fails.
pub fn detect(bytes: &[u8]) -> Option<FhirFormat> {
    let body = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes);
    let start = body
        .iter()
        .position(|b| !matches!(b, b' ' | b'\t' | b'\r' | b'\n'))?;
    match body[start] {
        b'{' => detect_json(bytes),
        b'<' => detect_xml(bytes),
        _ => None,
    }
}

fn mentions(bytes: &[u8], needle: &[u8]) -> bool {
    bytes.windows(needle.len()).any(|w| w == needle)
}

fn detect_json(bytes: &[u8]) -> Option<FhirFormat> {
    let damaged = || mentions(bytes, b"\"resourceType\"").then_some(FhirFormat::Json);
    if bytes.len() > MAX_INPUT_BYTES {
        return damaged();
    }
    let Ok(text) = std::str::from_utf8(bytes) else {
        return damaged();
    };
    match value::parse(text) {
        Ok(root) => match root.get("resourceType") {
            Some(Json::String(_)) => Some(FhirFormat::Json),
            _ => None,
        },
        Err(_) => damaged(),
    }
}

fn detect_xml(bytes: &[u8]) -> Option<FhirFormat> {
    let damaged = || mentions(bytes, FHIR_NS.as_bytes()).then_some(FhirFormat::Xml);
    if bytes.len() > MAX_INPUT_BYTES {
        return damaged();
    }
    let Ok(text) = std::str::from_utf8(bytes) else {
        return damaged();
    };
    let mut reader = NsReader::from_str(text.strip_prefix('\u{feff}').unwrap_or(text));
    loop {
        match reader.read_resolved_event() {
            Ok((ns, Event::Start(_) | Event::Empty(_))) => {
                return match ns {
                    ResolveResult::Bound(n) if n.as_ref() == FHIR_NS.as_bytes() => {
                        Some(FhirFormat::Xml)
                    }
                    _ => None,
                };
            }
            Ok((_, Event::Eof)) => return None,
            Ok(_) => {}
            Err(_) => return damaged(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recognises_fhir_json_and_xml() {
        assert_eq!(
            detect(br#"{"resourceType":"Patient"}"#),
            Some(FhirFormat::Json)
        );
        assert_eq!(
            detect(b"\xEF\xBB\xBF \n{\"id\":\"1\",\"resourceType\":\"Bundle\"}"),
            Some(FhirFormat::Json)
        );
        assert_eq!(
            detect(b"<?xml version=\"1.0\"?><!-- x --><Patient xmlns=\"http://hl7.org/fhir\"/>"),
            Some(FhirFormat::Xml)
        );
        assert_eq!(
            detect(b"<f:Bundle xmlns:f=\"http://hl7.org/fhir\"></f:Bundle>"),
            Some(FhirFormat::Xml)
        );
    }

    #[test]
    fn other_input_is_not_fhir() {
        for other in [
            &b""[..],
            b"   ",
            b"%PDF-1.7",
            b"\x89PNG\r\n",
            b"{\"name\":\"x\"}",
            b"{\"resourceType\":7}",
            b"[{\"resourceType\":\"Patient\"}]",
            b"{\"a\":",
            b"<html><body/></html>",
            b"<Patient/>",
            b"<Patient xmlns=\"http://example.org\"/>",
            b"\xff\xfe{",
        ] {
            assert_eq!(detect(other), None, "{:?}", String::from_utf8_lossy(other));
        }
    }

    #[test]
    fn damaged_fhir_is_still_fhir() {
        assert_eq!(
            detect(b"{\"resourceType\":\"Patient\","),
            Some(FhirFormat::Json)
        );
        assert_eq!(
            detect(b"{\"resourceType\":\"Patient\",\"x\":\"\xff\"}"),
            Some(FhirFormat::Json)
        );
        assert_eq!(
            detect(b"<!DOCTYPE x><Patient xmlns=\"http://hl7.org/fhir\">"),
            Some(FhirFormat::Xml)
        );
    }
}
