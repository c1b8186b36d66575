//! FHIR XML: the handwritten fixtures in `tests/data` (invented people only), checked
//! with a plain quick-xml reader rather than the crate's own tree.

mod common;

use common::{PSEUDONYM, digits_and_letters, fixture, xml_entries, xml_references};
use dossier_fhir::{FhirFormat, birth_dates, detect, patient_birth_dates, redact_identifiers};
use time::macros::date;

fn redact(name: &str) -> (String, dossier_fhir::Redaction) {
    let out = redact_identifiers(&fixture(name), FhirFormat::Xml, PSEUDONYM).unwrap();
    (String::from_utf8(out.output.clone()).unwrap(), out)
}

const PATIENT_VALUES: &[&str] = &[
    "MRN-448812",
    "987-65-4329",
    "+1 555 0100 123",
    "ada.quill@example.org",
    "42 Lantern Row",
    "Flat 7",
    "Lower Fernvale",
    "90210",
    "+1 555 0100 987",
    "9 Harbour Steps",
    "90211",
    "Bram",
];

const BUNDLE_VALUES: &[&str] = &[
    "NHX7731",
    "+1 555 0100 123",
    "42 Lantern Row",
    "90210",
    "123-45-6780",
    "+1 555 0100 987",
    "9 Harbour Steps",
    "90211",
    "Bram",
];

#[test]
fn fixtures_are_detected_as_fhir_xml() {
    for name in ["patient.xml", "bundle.xml"] {
        assert_eq!(detect(&fixture(name)), Some(FhirFormat::Xml), "{name}");
    }
}

#[test]
fn birth_dates_and_minor_checks() {
    let born = birth_dates(&fixture("patient.xml"), FhirFormat::Xml).unwrap();
    assert_eq!(born.len(), 1);
    assert_eq!(born[0].to_string(), "2011-03-14");
    assert!(born[0].is_minor_on(date!(2026 - 06 - 01), 18));
    assert!(!born[0].is_minor_on(date!(2029 - 03 - 14), 18));

    // Month precision: judged by 2011-03-31.
    let born = patient_birth_dates(&fixture("bundle.xml"), FhirFormat::Xml).unwrap();
    assert_eq!(born.len(), 1);
    let born = born[0].unwrap();
    assert_eq!(born.to_string(), "2011-03");
    assert!(born.is_minor_on(date!(2029 - 03 - 30), 18));
    assert!(!born.is_minor_on(date!(2029 - 03 - 31), 18));
}

#[test]
fn redaction_removes_every_identifying_value_from_the_whole_output() {
    for (name, values) in [
        ("patient.xml", PATIENT_VALUES),
        ("bundle.xml", BUNDLE_VALUES),
    ] {
        let (text, out) = redact(name);
        let input = String::from_utf8(fixture(name)).unwrap();
        let squeezed = digits_and_letters(&text);
        for value in values {
            assert!(input.contains(value), "{name}: fixture lost {value}");
            assert!(!text.contains(value), "{name}: {value} survives");
            let skeleton = digits_and_letters(value);
            assert!(
                !squeezed.contains(&skeleton),
                "{name}: {skeleton} survives reformatted"
            );
        }
        for item in &out.relink {
            assert!(
                !text.contains(item.value.trim()),
                "{name}: {} survives",
                item.path
            );
        }
    }
}

#[test]
fn the_lone_patient_keeps_what_the_recipient_needs() {
    let (text, out) = redact("patient.xml");
    let paths: Vec<&str> = out.relink.iter().map(|i| i.path.as_str()).collect();
    assert_eq!(
        paths,
        [
            "identifier[0]",
            "identifier[1]",
            "telecom[0]",
            "telecom[1]",
            "address[0].text",
            "address[0].line[0]",
            "address[0].line[1]",
            "address[0].district",
            "address[0].postalCode",
            "contact[0]",
        ]
    );
    assert!(
        out.relink
            .iter()
            .all(|i| i.resource == "Patient/pat-example-1")
    );
    for kept in [
        "<id value=\"pat-example-1\"/>",
        "<family value=\"Quill\"/>",
        "<given value=\"Ada\"/>",
        "<birthDate value=\"2011-03-14\"/>",
        "<city value=\"Fernvale\"/>",
        "<state value=\"Westshire\"/>",
        "<country value=\"US\"/>",
        "<status value=\"generated\"/>",
    ] {
        assert!(text.contains(kept), "{kept}");
    }
    assert_eq!(text.matches("<identifier>").count(), 1);
    assert!(text.contains(&format!(
        "<identifier><system value=\"urn:dossier:pseudonym\"/><value value=\"{PSEUDONYM}\"/></identifier>"
    )));
    // The pseudonym takes the first identifier's place, after text and before active.
    let order = ["</text>", "urn:dossier:pseudonym", "<active", "<name>"];
    let at: Vec<usize> = order.iter().map(|s| text.find(s).unwrap()).collect();
    assert!(at.windows(2).all(|w| w[0] < w[1]), "{at:?}");
    // The narrative is scrubbed in place; the shared family name stays.
    assert!(text.contains(
        "<p>Phone <a href=\"tel:[redacted]\">[redacted]</a>, lives at [redacted], Fernvale [redacted].</p>\
         <p>Next of kin: [redacted] Quill.</p>"
    ));
    assert!(text.contains("born 2011-03-14"));
}

#[test]
fn bundle_entries_keep_their_shape_and_clinical_resources_are_untouched() {
    let input = String::from_utf8(fixture("bundle.xml")).unwrap();
    let (text, _) = redact("bundle.xml");
    let (before, after) = (xml_entries(&input), xml_entries(&text));
    assert_eq!(before.len(), 6);
    assert_eq!(before.len(), after.len());
    for (b, a) in before.iter().zip(&after) {
        assert_eq!(b.resource_type, a.resource_type);
    }
    let renamed = |s: &str| s.replace("Patient/NHX7731", &format!("Patient/{PSEUDONYM}"));
    for (b, a) in before.iter().zip(&after) {
        match b.resource_type.as_str() {
            "Condition" | "Practitioner" => assert_eq!(renamed(&b.source), a.source),
            "Observation" => {
                assert!(a.source.contains("<value value=\"142.50\"/>"));
                assert!(a.source.contains(&format!(
                    "<identifier><system value=\"urn:dossier:pseudonym\"/><value value=\"{PSEUDONYM}\"/></identifier>"
                )));
            }
            _ => {}
        }
        assert_eq!(b.full_url.as_deref().map(renamed), a.full_url);
        let expected_id =
            b.id.as_deref()
                .map(|id| if id == "NHX7731" { PSEUDONYM } else { id });
        assert_eq!(expected_id, a.id.as_deref());
    }
    // The Condition's escaped note survives exactly.
    assert!(text.contains("Uses inhaler &lt;2 times a week &amp; before sport."));
}

#[test]
fn bundle_narratives_are_scrubbed_or_replaced() {
    let (text, _) = redact("bundle.xml");
    let composition = &xml_entries(&text)[0].source;
    assert!(composition.contains("<p>Asthma (record [redacted]), mild intermittent.</p>"));
    // A phone number split over <b> cannot be scrubbed node by node: the section's
    // narrative is replaced and marked generated.
    assert!(!composition.contains("after 5pm"));
    assert!(composition.contains("Narrative removed before sending"));
    assert!(!composition.contains("additional"));
    // The Condition's narrative held nothing removed.
    assert!(
        text.contains(
            "<div xmlns=\"http://www.w3.org/1999/xhtml\">Asthma, mild intermittent</div>"
        )
    );
}

#[test]
fn every_patient_reference_resolves_inside_the_bundle() {
    let (text, out) = redact("bundle.xml");
    let entries = xml_entries(&text);
    let mut targets = Vec::new();
    for e in &entries {
        targets.extend(e.full_url.clone());
        targets.push(format!("{}/{}", e.resource_type, e.id.as_deref().unwrap()));
    }
    let references = xml_references(&text);
    let to_patient: Vec<&String> = references
        .iter()
        .filter(|r| r.contains("Patient/"))
        .collect();
    assert_eq!(to_patient.len(), 4);
    for reference in references {
        assert!(
            targets.contains(&reference),
            "dangling reference {reference}"
        );
    }
    let renames: Vec<(&str, &str)> = out
        .relink
        .iter()
        .map(|i| (i.resource.as_str(), i.path.as_str()))
        .filter(|(_, p)| matches!(*p, "id" | "fullUrl" | "subject.identifier"))
        .collect();
    assert_eq!(
        renames,
        [
            ("Patient/NHX7731", "fullUrl"),
            ("Patient/NHX7731", "id"),
            ("Observation/obs-1", "subject.identifier")
        ]
    );
}

#[test]
fn redacted_xml_is_still_fhir_and_redacting_twice_changes_nothing_more() {
    for name in ["patient.xml", "bundle.xml"] {
        let (_, once) = redact(name);
        assert_eq!(detect(&once.output), Some(FhirFormat::Xml));
        assert_eq!(
            patient_birth_dates(&once.output, FhirFormat::Xml).unwrap(),
            patient_birth_dates(&fixture(name), FhirFormat::Xml).unwrap()
        );
        let twice = redact_identifiers(&once.output, FhirFormat::Xml, PSEUDONYM).unwrap();
        assert_eq!(twice.output, once.output, "{name}");
        assert!(twice.relink.is_empty(), "{name}");
    }
}

#[test]
fn prefixed_fhir_xml_is_redacted_too() {
    let text = r#"<f:Patient xmlns:f="http://hl7.org/fhir"><f:id value="p1"/><f:identifier><f:value value="Q-99321"/></f:identifier><f:name><f:family value="Lind"/></f:name><f:telecom><f:value value="555-0199"/></f:telecom></f:Patient>"#;
    let out = redact_identifiers(text.as_bytes(), FhirFormat::Xml, PSEUDONYM).unwrap();
    let out = String::from_utf8(out.output).unwrap();
    assert_eq!(
        out,
        format!(
            r#"<f:Patient xmlns:f="http://hl7.org/fhir"><f:id value="p1"/><f:identifier><f:system value="urn:dossier:pseudonym"/><f:value value="{PSEUDONYM}"/></f:identifier><f:name><f:family value="Lind"/></f:name></f:Patient>"#
        )
    );
}
