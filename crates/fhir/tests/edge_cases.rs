//! Redaction cases the real samples do not cover: resources in unusual places, ids and
//! full URLs that carry identifiers, logical references, narratives, and refusals.

mod common;

use common::{PSEUDONYM, strings_under};
use dossier_fhir::{FhirError, FhirFormat, birth_dates, patient_birth_dates, redact_identifiers};
use serde_json::{Value, json};

fn redact(input: &Value) -> (Value, String, dossier_fhir::Redaction) {
    let bytes = serde_json::to_vec(input).unwrap();
    let out = redact_identifiers(&bytes, FhirFormat::Json, PSEUDONYM).unwrap();
    let text = String::from_utf8(out.output.clone()).unwrap();
    (serde_json::from_str(&text).unwrap(), text, out)
}

fn pseudonym_identifier() -> Value {
    json!([{"system": "urn:dossier:pseudonym", "value": PSEUDONYM}])
}

#[test]
fn patients_are_found_in_contained_and_nested_bundles() {
    let input = json!({
        "resourceType": "Bundle", "type": "collection",
        "entry": [
            {"resource": {"resourceType": "Observation", "id": "o1",
                "contained": [{"resourceType": "Patient", "id": "c1",
                    "identifier": [{"value": "CONT-1001"}], "birthDate": "2015"}],
                "subject": {"reference": "#c1"}}},
            {"resource": {"resourceType": "Bundle", "type": "collection",
                "entry": [{"resource": {"resourceType": "Patient",
                    "telecom": [{"system": "email", "value": "kit@example.org"}]}}]}}
        ]
    });
    let bytes = serde_json::to_vec(&input).unwrap();
    let dates = patient_birth_dates(&bytes, FhirFormat::Json).unwrap();
    assert_eq!(dates.len(), 2);
    assert_eq!(dates[0].unwrap().to_string(), "2015");
    assert_eq!(dates[1], None);
    assert_eq!(birth_dates(&bytes, FhirFormat::Json).unwrap().len(), 1);

    let (output, text, out) = redact(&input);
    assert!(!text.contains("CONT-1001") && !text.contains("kit@example.org"));
    let contained = &output["entry"][0]["resource"]["contained"][0];
    assert_eq!(contained["identifier"], pseudonym_identifier());
    let nested = &output["entry"][1]["resource"]["entry"][0]["resource"];
    assert_eq!(nested["identifier"], pseudonym_identifier());
    let labels: Vec<&str> = out.relink.iter().map(|i| i.resource.as_str()).collect();
    assert_eq!(
        labels,
        ["Patient/c1", "Patient@entry[1].resource.entry[0].resource"]
    );
}

#[test]
fn ids_and_urn_full_urls_that_carry_identifiers_are_renamed_everywhere() {
    let uuid = "0f8fad5b-d9cb-469f-a165-70867728950e";
    let input = json!({
        "resourceType": "Bundle", "type": "transaction",
        "entry": [
            {"fullUrl": format!("urn:uuid:{uuid}"),
             "resource": {"resourceType": "Patient", "id": uuid,
                "identifier": [{"system": "urn:ietf:rfc:3986", "value": format!("urn:uuid:{uuid}")}]},
             "request": {"method": "PUT", "url": format!("Patient/{uuid}")}},
            {"fullUrl": "urn:uuid:7d444840-9dc0-11d1-b245-5ffdce74fad2",
             "resource": {"resourceType": "Condition", "subject": {"reference": format!("urn:uuid:{uuid}")},
                "asserter": {"reference": format!("Patient/{uuid}")}},
             "request": {"method": "POST", "url": "Condition"}}
        ]
    });
    let (output, text, _) = redact(&input);
    assert!(!text.contains(uuid));
    let patient_url = output["entry"][0]["fullUrl"].as_str().unwrap();
    assert!(patient_url.starts_with("urn:uuid:"));
    assert_eq!(output["entry"][0]["resource"]["id"], PSEUDONYM);
    assert_eq!(
        output["entry"][0]["request"]["url"],
        format!("Patient/{PSEUDONYM}")
    );
    let condition = &output["entry"][1]["resource"];
    assert_eq!(condition["subject"]["reference"], patient_url);
    assert_eq!(
        condition["asserter"]["reference"],
        format!("Patient/{PSEUDONYM}")
    );
}

#[test]
fn several_patients_with_identifier_ids_get_distinct_ids() {
    let input = json!({"resourceType": "Bundle", "type": "collection", "entry": [
        {"resource": {"resourceType": "Patient", "id": "MRN1001", "identifier": [{"value": "MRN1001"}]}},
        {"resource": {"resourceType": "Patient", "id": "MRN1002", "identifier": [{"value": "MRN1002"}]}},
        {"resource": {"resourceType": "Encounter", "subject": {"reference": "Patient/MRN1002"}}}
    ]});
    let (output, text, _) = redact(&input);
    assert!(!text.contains("MRN100"));
    assert_eq!(output["entry"][0]["resource"]["id"], PSEUDONYM);
    assert_eq!(
        output["entry"][1]["resource"]["id"],
        format!("{PSEUDONYM}-1")
    );
    assert_eq!(
        output["entry"][2]["resource"]["subject"]["reference"],
        format!("Patient/{PSEUDONYM}-1")
    );
}

#[test]
fn logical_references_by_patient_identifier_become_the_pseudonym() {
    let input = json!({"resourceType": "Bundle", "type": "collection", "entry": [
        {"resource": {"resourceType": "Patient", "id": "p1",
            "identifier": [{"system": "http://example.org/mrn", "value": "MRN-77120"}]}},
        {"resource": {"resourceType": "Condition", "id": "c1",
            "subject": {"identifier": {"system": "http://example.org/mrn", "value": "MRN-77120"},
                        "display": "the patient"}}}
    ]});
    let (output, _, out) = redact(&input);
    assert_eq!(
        output["entry"][1]["resource"]["subject"],
        json!({"identifier": {"system": "urn:dossier:pseudonym", "value": PSEUDONYM}, "display": "the patient"})
    );
    let last = out.relink.last().unwrap();
    assert_eq!(
        (last.resource.as_str(), last.path.as_str()),
        ("Condition/c1", "subject.identifier")
    );
}

#[test]
fn narratives_are_scrubbed_or_replaced_and_marked_generated() {
    let input = json!({"resourceType": "Bundle", "type": "collection", "entry": [
        {"resource": {"resourceType": "Patient", "id": "p1",
            "text": {"status": "generated",
                "div": "<div xmlns=\"http://www.w3.org/1999/xhtml\"><p>Jo Park, tel 020 7946 0018, 12 Elm Close</p></div>"},
            "name": [{"family": "Park", "given": ["Jo"]}],
            "telecom": [{"system": "phone", "value": "020 7946 0018"}],
            "address": [{"line": ["12 Elm Close"], "city": "Leeds", "postalCode": "LS1 4AP"}]}},
        {"resource": {"resourceType": "Encounter", "id": "e1",
            "text": {"div": "<div xmlns=\"http://www.w3.org/1999/xhtml\">Seen at <i>12 Elm</i> Close, LS1 4AP</div>"}}},
        {"resource": {"resourceType": "Condition", "id": "c1",
            "text": {"status": "extensions",
                "div": "<div xmlns=\"http://www.w3.org/1999/xhtml\">Asthma &amp; hay fever</div>"}}}
    ]});
    let (output, text, _) = redact(&input);
    for value in ["7946", "Elm Close", "LS1 4AP"] {
        assert!(!text.contains(value), "{value}");
    }
    let patient_text = &output["entry"][0]["resource"]["text"];
    assert_eq!(patient_text["status"], "generated");
    assert_eq!(
        patient_text["div"],
        "<div xmlns=\"http://www.w3.org/1999/xhtml\"><p>Jo Park, tel [redacted], [redacted]</p></div>"
    );
    // Split over <i>: replaced, and a status is added before the div.
    let encounter_text = &output["entry"][1]["resource"]["text"];
    assert_eq!(encounter_text["status"], "generated");
    assert!(
        encounter_text["div"]
            .as_str()
            .unwrap()
            .contains("Narrative removed")
    );
    let members: Vec<&String> = encounter_text.as_object().unwrap().keys().collect();
    assert_eq!(members.len(), 2);
    // Untouched narratives stay byte for byte.
    assert_eq!(output["entry"][2], input["entry"][2]);
}

#[test]
fn json_keeps_member_order_numbers_and_primitive_extensions_in_step() {
    let text = r#"{"resourceType":"Bundle","type":"collection","entry":[{"resource":{"resourceType":"Patient","id":"p1","meta":{"versionId":"3"},"text":{"status":"empty","div":"<div xmlns=\"http://www.w3.org/1999/xhtml\">-</div>"},"active":true,"address":[{"use":"home","line":["1 Mill Lane"],"_line":[{"extension":[{"url":"http://example.org/x","valueString":"1 Mill Lane"}]}],"postalCode":"ZZ9 9ZZ","_postalCode":{"id":"pc"},"city":"Oxford","country":"GB"}],"birthDate":"1990-01-01"}},{"resource":{"resourceType":"Observation","id":"o1","status":"final","valueQuantity":{"value":5.50,"unit":"mmol/L"},"referenceRange":[{"low":{"value":1e2}}],"subject":{"reference":"Patient/p1"}}}]}"#;
    let out = redact_identifiers(text.as_bytes(), FhirFormat::Json, PSEUDONYM).unwrap();
    let got = String::from_utf8(out.output).unwrap();
    let expected = format!(
        r#"{{"resourceType":"Bundle","type":"collection","entry":[{{"resource":{{"resourceType":"Patient","id":"p1","meta":{{"versionId":"3"}},"text":{{"status":"empty","div":"<div xmlns=\"http://www.w3.org/1999/xhtml\">-</div>"}},"identifier":[{{"system":"urn:dossier:pseudonym","value":"{PSEUDONYM}"}}],"active":true,"address":[{{"use":"home","city":"Oxford","country":"GB"}}],"birthDate":"1990-01-01"}}}},{{"resource":{{"resourceType":"Observation","id":"o1","status":"final","valueQuantity":{{"value":5.50,"unit":"mmol/L"}},"referenceRange":[{{"low":{{"value":1e2}}}}],"subject":{{"reference":"Patient/p1"}}}}}}]}}"#
    );
    assert_eq!(got, expected);
    let paths: Vec<&str> = out.relink.iter().map(|i| i.path.as_str()).collect();
    assert_eq!(
        paths,
        [
            "address[0].line[0]",
            "address[0]._line[0]",
            "address[0].postalCode",
            "address[0]._postalCode"
        ]
    );
}

#[test]
fn related_people_lose_their_identity_and_providers_are_left_alone() {
    let input = json!({"resourceType": "Bundle", "type": "collection", "entry": [
        {"resource": {"resourceType": "Patient", "id": "p1"}},
        {"resource": {"resourceType": "RelatedPerson", "id": "r1",
            "identifier": [{"value": "RP-33871"}], "patient": {"reference": "Patient/p1"},
            "name": [{"family": "Okafor", "given": ["Nneka"]}],
            "telecom": [{"value": "nneka@example.org"}],
            "address": [{"line": ["7 Quay Street"], "city": "Cork", "postalCode": "T12 X9Y"}]}},
        {"resource": {"resourceType": "Person", "id": "s1", "name": [{"family": "Okafor"}],
            "identifier": [{"value": "PS-55120"}], "telecom": [{"value": "+353 1 555 0142"}]}},
        {"resource": {"resourceType": "Practitioner", "id": "d1", "identifier": [{"value": "GMC-4410"}],
            "telecom": [{"value": "+353 1 555 0100"}],
            "address": [{"line": ["Surgery Road 1"], "postalCode": "T12 A1B"}]}}
    ]});
    let (output, text, _) = redact(&input);
    let related = &output["entry"][1]["resource"];
    assert_eq!(
        related,
        &json!({"resourceType": "RelatedPerson", "id": "r1", "patient": {"reference": "Patient/p1"},
                "address": [{"city": "Cork"}]})
    );
    let person = &output["entry"][2]["resource"];
    assert_eq!(
        person,
        &json!({"resourceType": "Person", "id": "s1", "name": [{"family": "Okafor"}]})
    );
    assert_eq!(output["entry"][3], input["entry"][3]);
    assert_eq!(
        output["entry"][0]["resource"]["identifier"],
        pseudonym_identifier()
    );
    for gone in ["RP-33871", "nneka", "Quay", "T12 X9Y", "PS-55120", "0142"] {
        assert!(!text.contains(gone), "{gone}");
    }
}

#[test]
fn refusals() {
    let patient = json!({"resourceType": "Patient", "identifier": [{"value": "MRN-90001"}]});
    let bytes = serde_json::to_vec(&patient).unwrap();
    for bad in ["", "has space", "x/y", &"p".repeat(49)] {
        let err = redact_identifiers(&bytes, FhirFormat::Json, bad).unwrap_err();
        assert!(matches!(err, FhirError::InvalidPseudonym { .. }), "{bad:?}");
    }
    let err = redact_identifiers(&bytes, FhirFormat::Json, "px-MRN-90001").unwrap_err();
    assert!(matches!(err, FhirError::InvalidPseudonym { .. }));

    // A removed phone number repeated in a kept element: refused, not silently sent.
    let repeated = json!({"resourceType": "Bundle", "type": "collection", "entry": [
        {"resource": {"resourceType": "Patient", "telecom": [{"value": "tel:+44 20 7946 0321"}]}},
        {"resource": {"resourceType": "Organization", "telecom": [{"value": "+442079460321"}]}}]});
    let err = redact_identifiers(
        &serde_json::to_vec(&repeated).unwrap(),
        FhirFormat::Json,
        PSEUDONYM,
    )
    .unwrap_err();
    assert_eq!(
        err,
        FhirError::IdentifierSurvives {
            location: "entry[1].resource.telecom[0].value".into()
        }
    );
}

#[test]
fn postal_codes_that_look_like_years_do_not_trip_on_dates() {
    let input = json!({"resourceType": "Bundle", "type": "collection", "entry": [
        {"resource": {"resourceType": "Patient", "birthDate": "2010-05-01",
            "address": [{"postalCode": "2010", "city": "Auckland"}]}},
        {"resource": {"resourceType": "Immunization", "occurrenceDateTime": "2010-06-02",
            "text": {"status": "generated", "div": "<div xmlns=\"http://www.w3.org/1999/xhtml\">Given 2010-06-02</div>"}}}
    ]});
    let (output, _, _) = redact(&input);
    assert_eq!(output["entry"][1], input["entry"][1]);
    let mut references = Vec::new();
    strings_under(&output, "reference", &mut references);
    assert!(references.is_empty());
}
