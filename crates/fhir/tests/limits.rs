//! Hard limits, non-FHIR input, and the rule that errors never carry record content.

use dossier_fhir::limits::{MAX_INPUT_BYTES, MAX_JSON_DEPTH, MAX_NODES, MAX_XML_DEPTH};
use dossier_fhir::{
    FhirError, FhirFormat, birth_dates, detect, patient_birth_dates, redact_identifiers,
};

const FORMATS: [FhirFormat; 2] = [FhirFormat::Json, FhirFormat::Xml];

fn all_entry_points(bytes: &[u8], format: FhirFormat) -> Vec<FhirError> {
    vec![
        birth_dates(bytes, format).unwrap_err(),
        patient_birth_dates(bytes, format).unwrap_err(),
        redact_identifiers(bytes, format, "px1").unwrap_err(),
    ]
}

#[test]
fn oversize_input_is_refused_before_it_is_read() {
    let mut big = br#"{"resourceType":"Patient","x":""#.to_vec();
    big.resize(MAX_INPUT_BYTES + 1, b' ');
    for format in FORMATS {
        for err in all_entry_points(&big, format) {
            assert_eq!(
                err,
                FhirError::TooLarge {
                    size: MAX_INPUT_BYTES + 1,
                    limit: MAX_INPUT_BYTES
                }
            );
        }
    }
    // Too big to read, but it says it is FHIR: detection fails closed.
    assert_eq!(detect(&big), Some(FhirFormat::Json));
    let mut other = b"{\"name\":\"".to_vec();
    other.resize(MAX_INPUT_BYTES + 1, b' ');
    assert_eq!(detect(&other), None);
}

#[test]
fn too_deep_json_is_refused() {
    let depth = MAX_JSON_DEPTH + 10;
    let text = format!(
        r#"{{"resourceType":"Patient","extension":{}{}}}"#,
        "[".repeat(depth),
        "]".repeat(depth)
    );
    for err in all_entry_points(text.as_bytes(), FhirFormat::Json) {
        assert!(
            matches!(err, FhirError::TooDeep { limit, .. } if limit == MAX_JSON_DEPTH),
            "{err:?}"
        );
    }
    assert_eq!(detect(text.as_bytes()), Some(FhirFormat::Json));
}

#[test]
fn too_deep_xml_is_refused() {
    let depth = MAX_XML_DEPTH + 10;
    let text = format!(
        r#"<Patient xmlns="http://hl7.org/fhir">{}{}</Patient>"#,
        "<extension>".repeat(depth),
        "</extension>".repeat(depth)
    );
    for err in all_entry_points(text.as_bytes(), FhirFormat::Xml) {
        assert!(
            matches!(err, FhirError::TooDeep { limit, .. } if limit == MAX_XML_DEPTH),
            "{err:?}"
        );
    }
    assert_eq!(detect(text.as_bytes()), Some(FhirFormat::Xml));
}

#[test]
fn too_many_json_values_are_refused() {
    let text = format!(
        r#"{{"resourceType":"Patient","x":[{}0]}}"#,
        "0,".repeat(MAX_NODES)
    );
    let err = birth_dates(text.as_bytes(), FhirFormat::Json).unwrap_err();
    assert!(
        matches!(err, FhirError::TooMany { limit, .. } if limit == MAX_NODES),
        "{err:?}"
    );
}

#[test]
fn too_many_xml_nodes_are_refused() {
    let text = format!(
        r#"<Patient xmlns="http://hl7.org/fhir">{}</Patient>"#,
        "<a/>".repeat(MAX_NODES)
    );
    let err = birth_dates(text.as_bytes(), FhirFormat::Xml).unwrap_err();
    assert!(
        matches!(err, FhirError::TooMany { limit, .. } if limit == MAX_NODES),
        "{err:?}"
    );
}

#[test]
fn non_fhir_input_is_not_detected() {
    for other in [
        &b""[..],
        b"Dear colleague,\nplease find attached.",
        b"%PDF-1.7\n%\xe2\xe3\xcf\xd3",
        b"\x89PNG\r\n\x1a\n",
        b"{\"patient\":\"x\",\"type\":\"Bundle\"}",
        b"[1,2,3]",
        b"<?xml version=\"1.0\"?><ClinicalDocument xmlns=\"urn:hl7-org:v3\"/>",
        b"<html><body>hi</body></html>",
        b"PK\x03\x04",
    ] {
        assert_eq!(detect(other), None, "{}", String::from_utf8_lossy(other));
    }
}

#[test]
fn non_fhir_input_is_an_error_for_the_other_entry_points() {
    let cases: [(&[u8], FhirFormat); 4] = [
        (b"{\"patient\":\"x\"}", FhirFormat::Json),
        (b"[1]", FhirFormat::Json),
        (
            b"<ClinicalDocument xmlns=\"urn:hl7-org:v3\"/>",
            FhirFormat::Xml,
        ),
        (b"<Patient/>", FhirFormat::Xml),
    ];
    for (bytes, format) in cases {
        for err in all_entry_points(bytes, format) {
            assert!(matches!(err, FhirError::NotFhir { .. }), "{err:?}");
        }
    }
    let err = birth_dates(b"not json", FhirFormat::Json).unwrap_err();
    assert!(
        matches!(err, FhirError::InvalidJson { offset: 0, .. }),
        "{err:?}"
    );
}

/// Record content used in the error cases below; none of it may appear in a message.
const SECRETS: &[&str] = &[
    "Quill",
    "555",
    "0100",
    "14/03/2011",
    "MRN-448812",
    "Lantern",
];

fn assert_clean(err: &FhirError) {
    let text = format!("{err} {err:?}");
    for secret in SECRETS {
        assert!(!text.contains(secret), "{secret} leaked into: {text}");
    }
    assert!(
        text.contains(';') || text.contains("cannot"),
        "no advice in: {text}"
    );
}

#[test]
fn errors_name_places_never_content() {
    let bad_date = r#"{"resourceType":"Bundle","entry":[{"resource":{"resourceType":"Patient",
        "name":[{"family":"Quill"}],"birthDate":"14/03/2011"}}]}"#;
    let err = birth_dates(bad_date.as_bytes(), FhirFormat::Json).unwrap_err();
    assert_eq!(
        err,
        FhirError::InvalidBirthDate {
            location: "entry[0].resource.birthDate".into()
        }
    );
    assert_clean(&err);

    let bad_xml_date = r#"<Patient xmlns="http://hl7.org/fhir"><name><family value="Quill"/></name><birthDate value="14/03/2011"/></Patient>"#;
    let err = birth_dates(bad_xml_date.as_bytes(), FhirFormat::Xml).unwrap_err();
    assert_clean(&err);

    let survives = r#"{"resourceType":"Bundle","entry":[
        {"resource":{"resourceType":"Patient","telecom":[{"system":"phone","value":"+1 555 0100 123"}]}},
        {"resource":{"resourceType":"Condition","note":[{"text":"Call Quill on +1-555-0100-123"}]}}]}"#;
    let err = redact_identifiers(survives.as_bytes(), FhirFormat::Json, "px1").unwrap_err();
    assert_eq!(
        err,
        FhirError::IdentifierSurvives {
            location: "entry[1].resource.note[0].text".into()
        }
    );
    assert_clean(&err);

    // Member names that are not FHIR element names are not echoed either.
    let odd_key = r#"{"resourceType":"Bundle","entry":[{"Quill 555 0100":{"resourceType":"Patient","birthDate":"14/03/2011"}}]}"#;
    let err = birth_dates(odd_key.as_bytes(), FhirFormat::Json).unwrap_err();
    assert_eq!(
        err,
        FhirError::InvalidBirthDate {
            location: "entry[0].?.birthDate".into()
        }
    );
    assert_clean(&err);

    for broken in [
        &br#"{"resourceType":"Patient","name":"Quill 555 0100"#[..],
        br#"{"resourceType":"Patient","name":"Quill","name":"MRN-448812"}"#,
        br#"<Patient xmlns="http://hl7.org/fhir"><name value="Quill"></Patient>"#,
        br#"<!DOCTYPE x [<!ENTITY q "Quill">]><Patient xmlns="http://hl7.org/fhir">&q;</Patient>"#,
    ] {
        let format = detect(broken).expect("damaged FHIR is still detected");
        for err in all_entry_points(broken, format) {
            assert_clean(&err);
        }
    }

    let err = redact_identifiers(
        b"{\"resourceType\":\"Patient\"}",
        FhirFormat::Json,
        "Quill 555",
    )
    .unwrap_err();
    assert!(matches!(err, FhirError::InvalidPseudonym { .. }));
    assert_clean(&err);
}
