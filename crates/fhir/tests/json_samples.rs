//! The two real International Patient Summary bundles: birth dates, minor checks and
//! redaction, checked with serde_json rather than the crate's own reader.

mod common;

use std::collections::HashMap;

use common::{PSEUDONYM, SAMPLES, collect_strings, digits_and_letters, sample, sample_path};
use dossier_fhir::{FhirFormat, birth_dates, detect, redact_identifiers};
use serde_json::{Value, json};
use time::macros::date;

fn parse(bytes: &[u8]) -> Value {
    serde_json::from_slice(bytes).expect("output is JSON")
}

fn entries(bundle: &Value) -> &Vec<Value> {
    bundle["entry"].as_array().expect("a Bundle with entries")
}

fn patients(bundle: &Value) -> Vec<&Value> {
    entries(bundle)
        .iter()
        .map(|e| &e["resource"])
        .filter(|r| r["resourceType"] == "Patient")
        .collect()
}

fn array<'a>(v: &'a Value, key: &str) -> Vec<&'a Value> {
    match &v[key] {
        Value::Array(items) => items.iter().collect(),
        Value::Null => Vec::new(),
        other => vec![other],
    }
}

/// The identifying values the input's Patients hold: identifier and telecom values,
/// address lines and postal codes, and everything identifying about their contacts.
fn identifying_values(bundle: &Value) -> Vec<String> {
    let mut out = Vec::new();
    for patient in patients(bundle) {
        let mut kept_names = Vec::new();
        for name in array(patient, "name") {
            collect_strings(name, &mut kept_names);
        }
        for id in array(patient, "identifier") {
            out.push(id["value"].as_str().unwrap().to_owned());
        }
        let mut addresses = array(patient, "address");
        for contact in array(patient, "contact") {
            addresses.extend(array(contact, "address"));
            for t in array(contact, "telecom") {
                out.push(t["value"].as_str().unwrap().to_owned());
            }
            let mut names = Vec::new();
            collect_strings(&contact["name"], &mut names);
            // A contact's name part equal to the patient's own (a shared given or family
            // name) stays in the record through the patient's name; "usual" is a code.
            out.extend(
                names
                    .into_iter()
                    .filter(|n| !kept_names.contains(n) && n != "usual"),
            );
        }
        for t in array(patient, "telecom") {
            out.push(t["value"].as_str().unwrap().to_owned());
        }
        for address in addresses {
            collect_strings(&address["line"], &mut out);
            collect_strings(&address["postalCode"], &mut out);
        }
    }
    out
}

#[test]
fn the_shared_samples_are_where_the_tests_expect_them() {
    for name in SAMPLES {
        assert!(
            sample_path(name).is_file(),
            "{}",
            sample_path(name).display()
        );
    }
}

#[test]
fn samples_are_detected_as_fhir_json() {
    for name in SAMPLES {
        assert_eq!(detect(&sample(name)), Some(FhirFormat::Json), "{name}");
    }
}

#[test]
fn birth_dates_of_the_samples() {
    let dates = |name| -> Vec<String> {
        birth_dates(&sample(name), FhirFormat::Json)
            .unwrap()
            .iter()
            .map(ToString::to_string)
            .collect()
    };
    assert_eq!(dates(SAMPLES[0]), ["1972-05-01"]);
    assert_eq!(dates(SAMPLES[1]), ["1985-04-25"]);
}

#[test]
fn minor_checks_on_the_sample_birth_dates() {
    let born = birth_dates(&sample(SAMPLES[0]), FhirFormat::Json).unwrap()[0];
    assert!(!born.is_minor_on(date!(2026 - 06 - 01), 18));
    assert!(born.is_minor_on(date!(1990 - 04 - 30), 18));
    assert!(!born.is_minor_on(date!(1990 - 05 - 01), 18));
    assert!(born.is_minor_on(date!(1993 - 04 - 30), 21));

    let born = birth_dates(&sample(SAMPLES[1]), FhirFormat::Json).unwrap()[0];
    assert!(born.is_minor_on(date!(2003 - 04 - 24), 18));
    assert!(!born.is_minor_on(date!(2003 - 04 - 25), 18));
}

#[test]
fn redaction_removes_every_identifying_value_from_the_whole_output() {
    for name in SAMPLES {
        let input = sample(name);
        let values = identifying_values(&parse(&input));
        assert!(values.len() >= 6, "{name}: {values:?}");
        let out = redact_identifiers(&input, FhirFormat::Json, PSEUDONYM).unwrap();
        let text = String::from_utf8(out.output.clone()).unwrap();
        let squeezed = digits_and_letters(&text);
        for value in &values {
            assert!(
                !text.contains(value.as_str()),
                "{name}: a removed value survives"
            );
            let skeleton = digits_and_letters(value.trim_start_matches("tel:"));
            assert!(
                !squeezed.contains(&skeleton) || skeleton.len() < 6,
                "{name}: {skeleton}"
            );
        }
        for item in &out.relink {
            assert!(
                !text.contains(&item.value),
                "{name}: fragment at {} survives",
                item.path
            );
            let mut leaves = Vec::new();
            collect_strings(&parse(item.value.as_bytes()), &mut leaves);
            for leaf in leaves.iter().filter(|l| values.contains(l)) {
                assert!(!text.contains(leaf.as_str()));
            }
        }
    }
}

#[test]
fn patients_keep_only_what_the_recipient_needs() {
    for name in SAMPLES {
        let input = parse(&sample(name));
        let out = redact_identifiers(&sample(name), FhirFormat::Json, PSEUDONYM).unwrap();
        let output = parse(&out.output);
        for (before, after) in patients(&input).into_iter().zip(patients(&output)) {
            assert_eq!(
                after["identifier"],
                json!([{"system": "urn:dossier:pseudonym", "value": PSEUDONYM}])
            );
            for gone in ["telecom", "contact", "photo"] {
                assert!(after.get(gone).is_none(), "{name}: {gone}");
            }
            for key in ["name", "gender", "birthDate"] {
                assert_eq!(after[key], before[key], "{name}: {key}");
            }
            for (a_before, a_after) in array(before, "address").iter().zip(array(after, "address"))
            {
                for key in ["city", "state", "country"] {
                    assert_eq!(a_after.get(key), a_before.get(key));
                }
                for key in ["line", "postalCode", "text", "district"] {
                    assert!(a_after.get(key).is_none());
                }
            }
        }
    }
}

#[test]
fn bundles_keep_their_shape_and_clinical_resources_are_untouched() {
    for name in SAMPLES {
        let input = parse(&sample(name));
        let out = redact_identifiers(&sample(name), FhirFormat::Json, PSEUDONYM).unwrap();
        let output = parse(&out.output);
        assert_eq!(output["resourceType"], "Bundle");
        for key in ["id", "identifier", "type", "timestamp"] {
            assert_eq!(output[key], input[key], "{name}: Bundle.{key}");
        }
        let (before, after) = (entries(&input), entries(&output));
        assert_eq!(before.len(), after.len(), "{name}");

        // What redaction may rename: full URLs and "Type/id" of renamed resources.
        let mut renamed: HashMap<String, String> = HashMap::new();
        for (b, a) in before.iter().zip(after) {
            assert_eq!(b["resource"]["resourceType"], a["resource"]["resourceType"]);
            if b["fullUrl"] != a["fullUrl"] {
                renamed.insert(
                    b["fullUrl"].as_str().unwrap().into(),
                    a["fullUrl"].as_str().unwrap().into(),
                );
            }
            if b["resource"]["id"] != a["resource"]["id"] {
                let t = b["resource"]["resourceType"].as_str().unwrap();
                renamed.insert(
                    format!("{t}/{}", b["resource"]["id"].as_str().unwrap()),
                    format!("{t}/{}", a["resource"]["id"].as_str().unwrap()),
                );
            }
        }
        for (b, a) in before.iter().zip(after) {
            if b["resource"]["resourceType"] == "Patient" {
                continue;
            }
            let mut expected = b.clone();
            rename_strings(&mut expected, &renamed);
            assert_eq!(
                &expected, a,
                "{name}: {} changed",
                b["resource"]["resourceType"]
            );
        }
    }
}

fn rename_strings(v: &mut Value, renamed: &HashMap<String, String>) {
    match v {
        Value::String(s) => {
            if let Some(new) = renamed.get(s.as_str()) {
                *s = new.clone();
            }
        }
        Value::Array(items) => items.iter_mut().for_each(|c| rename_strings(c, renamed)),
        Value::Object(map) => map.values_mut().for_each(|c| rename_strings(c, renamed)),
        _ => {}
    }
}

#[test]
fn every_reference_resolves_inside_the_bundle() {
    for name in SAMPLES {
        let out = redact_identifiers(&sample(name), FhirFormat::Json, PSEUDONYM).unwrap();
        let output = parse(&out.output);
        let mut targets = Vec::new();
        for e in entries(&output) {
            let url = e["fullUrl"].as_str().unwrap().to_owned();
            let r = &e["resource"];
            targets.push(url.clone());
            targets.push(format!(
                "{}/{}",
                r["resourceType"].as_str().unwrap(),
                r["id"].as_str().unwrap()
            ));
        }
        let mut references = Vec::new();
        common::strings_under(&output, "reference", &mut references);
        assert!(!references.is_empty());
        let patient_refs = references
            .iter()
            .filter(|r| r.starts_with("Patient/"))
            .count();
        if name == SAMPLES[1] {
            assert_eq!(patient_refs, 3);
        }
        for reference in references {
            assert!(
                targets.contains(&reference),
                "{name}: dangling reference {reference}"
            );
        }
    }
}

#[test]
fn the_patient_whose_id_was_its_health_index_number_is_renamed_consistently() {
    let input = sample(SAMPLES[1]);
    assert!(String::from_utf8_lossy(&input).contains("Patient/AAA1234"));
    let out = redact_identifiers(&input, FhirFormat::Json, PSEUDONYM).unwrap();
    let text = String::from_utf8(out.output.clone()).unwrap();
    assert!(!text.contains("AAA1234"));
    let output = parse(&out.output);
    let entry = entries(&output)
        .iter()
        .find(|e| e["resource"]["resourceType"] == "Patient")
        .unwrap();
    assert_eq!(entry["resource"]["id"], PSEUDONYM);
    assert_eq!(
        entry["fullUrl"],
        format!("https://terminz.azurewebsites.net/fhir/Patient/{PSEUDONYM}")
    );
    let relinked: Vec<(&str, &str, &str)> = out
        .relink
        .iter()
        .map(|i| (i.resource.as_str(), i.path.as_str(), i.value.as_str()))
        .filter(|(_, p, _)| *p == "id" || *p == "fullUrl")
        .collect();
    assert_eq!(
        relinked,
        [
            (
                "Patient/AAA1234",
                "fullUrl",
                "\"https://terminz.azurewebsites.net/fhir/Patient/AAA1234\""
            ),
            ("Patient/AAA1234", "id", "\"AAA1234\""),
        ]
    );
}

#[test]
fn relink_lists_what_was_removed_from_the_minimal_sample() {
    let out = redact_identifiers(&sample(SAMPLES[0]), FhirFormat::Json, PSEUDONYM).unwrap();
    let paths: Vec<&str> = out.relink.iter().map(|i| i.path.as_str()).collect();
    assert_eq!(
        paths,
        [
            "identifier[0]",
            "telecom[0]",
            "address[0].line[0]",
            "address[0].postalCode",
            "contact[0]"
        ]
    );
    for item in &out.relink {
        assert_eq!(
            item.resource,
            "Patient/7685713c-e29e-4a75-8a90-45be7ba3be94"
        );
    }
    assert_eq!(
        out.relink[0].value,
        r#"{"system":"urn:oid:2.16.840.1.113883.2.4.6.3","value":"574687583"}"#
    );
    // The id is a UUID, not an identifier: it is kept, and so are references to it.
    let text = String::from_utf8(out.output).unwrap();
    assert!(text.contains("urn:uuid:7685713c-e29e-4a75-8a90-45be7ba3be94"));
}

#[test]
fn redacting_twice_changes_nothing_more() {
    for name in SAMPLES {
        let once = redact_identifiers(&sample(name), FhirFormat::Json, PSEUDONYM).unwrap();
        let twice = redact_identifiers(&once.output, FhirFormat::Json, PSEUDONYM).unwrap();
        assert_eq!(twice.output, once.output, "{name}");
        assert!(twice.relink.is_empty(), "{name}");
    }
}

#[test]
fn redacted_output_is_still_fhir_with_the_same_birth_dates() {
    for name in SAMPLES {
        let out = redact_identifiers(&sample(name), FhirFormat::Json, PSEUDONYM).unwrap();
        assert_eq!(detect(&out.output), Some(FhirFormat::Json));
        assert_eq!(
            birth_dates(&out.output, FhirFormat::Json).unwrap(),
            birth_dates(&sample(name), FhirFormat::Json).unwrap()
        );
    }
}
