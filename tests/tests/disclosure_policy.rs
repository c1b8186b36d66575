//! The disclosure policy and minimum-necessary redaction, end to end over the real binary:
//! `HOME/policy.toml` (destination countries, verified contacts, minors, consent), the
//! consent register, `--redact identifiers` on the shared IPS sample and on FHIR XML, the
//! re-link table kept encrypted at the sender, and the audit entries of refusals and
//! overrides. Everything is offline (`seal` + `open`): the gate runs before sealing, the
//! same for `seal` and `send`.

use std::fs;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use dossier_tests::*;
use serde_json::Value;

/// Exit code: refused by the disclosure policy.
const EXIT_POLICY: i32 = 6;
const REASON: &str = "surgery abroad arranged by guardian";
const MRN: &str = "MRN-0042-K7";

/// The coordinator (US) and the clinic (TH), the clinic pinned verified or not.
fn cast(lab: &Lab, clinic_verified: bool) -> (Node, Node) {
    let coordinator = lab.coordinator();
    let clinic = lab.clinic();
    coordinator.pin(&clinic, clinic_verified);
    clinic.pin(&coordinator, true);
    (coordinator, clinic)
}

fn write_policy(node: &Node, text: &str) {
    fs::write(node.home.join("policy.toml"), text).unwrap();
}

/// `seal --to clinic [extra] -o fresh inputs`; returns the outcome and the output path.
fn seal(lab: &Lab, node: &Node, extra: &[&str], inputs: &[&Path]) -> (Outcome, PathBuf) {
    let out = lab.fresh_path("bundle");
    let o = node.seal_outcome(&[CLINIC_ID], extra, &out, inputs);
    if o.code != EXIT_OK {
        assert!(
            !out.exists(),
            "a refused seal wrote nothing\n{}",
            o.describe()
        );
    }
    (o, out)
}

fn audit(node: &Node) -> Vec<Value> {
    let doc = node.run(&["audit", "--json"]).ok().json();
    doc.as_array().expect("audit --json is an array").clone()
}

fn input_file(lab: &Lab, name: &str, bytes: &[u8]) -> PathBuf {
    let dir = lab.fresh_dir("in");
    let p = dir.join(name);
    write_file(&p, bytes);
    p
}

/// A calendar year that makes someone born in it 14 or 15 today.
fn minor_birth_year() -> u64 {
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    1970 + secs / 31_556_952 - 15
}

#[test]
fn records_go_only_to_verified_contacts_other_kinds_are_not_restricted() {
    let lab = Lab::new();
    let (coordinator, clinic) = cast(&lab, false);
    let record = input_file(&lab, "summary.json", &synthetic_fhir_json());

    let (o, _) = seal(&lab, &coordinator, &["--kind", "record"], &[&record]);
    o.code(EXIT_POLICY)
        .stderr_has("records_require_verified_contact")
        .stderr_has(&format!("dossier contacts verify {CLINIC_ID}"))
        .stderr_has("Nothing was sent");
    for kind in ["careplan", "message"] {
        let (o, out) = seal(&lab, &coordinator, &["--kind", kind], &[&record]);
        o.ok();
        assert!(out.is_file());
    }
    let refused = audit(&coordinator)
        .into_iter()
        .find(|e| e["outcome"] == "refused")
        .expect("the refusal is audited");
    assert_eq!(refused["action"], "seal");
    assert_eq!(refused["detail"], "records_require_verified_contact");
    assert_eq!(refused["counterparts"][0]["id"], CLINIC_ID);

    // `send` passes the same gate, before it seals, queues or connects (the relay set
    // here does not exist).
    let pin = format!("sha256:{}", "ab".repeat(32));
    coordinator
        .run(&["relay", "set", "127.0.0.1:9", "--pin", &pin])
        .ok();
    let record_arg = record.to_str().unwrap();
    coordinator
        .run(&["send", "--to", CLINIC_ID, "--json", record_arg])
        .code(EXIT_POLICY)
        .stderr_has("records_require_verified_contact");
    let outbox = coordinator.run(&["outbox", "--json"]).ok().json();
    assert_eq!(outbox, serde_json::json!([]), "nothing was queued");
    let last = audit(&coordinator).pop().unwrap();
    assert_eq!(last["action"], "send");
    assert_eq!(last["outcome"], "refused");

    coordinator
        .run(&["contacts", "verify", CLINIC_ID, &clinic.fingerprint()])
        .ok();
    let (o, out) = seal(&lab, &coordinator, &["--kind", "record"], &[&record]);
    o.ok();
    let opened = lab.fresh_path("opened");
    clinic.open(&out, &opened).ok();
    assert_eq!(
        fs::read(opened.join("summary.json")).unwrap(),
        synthetic_fhir_json()
    );
}

#[test]
fn a_country_outside_permitted_countries_is_refused_for_every_kind() {
    let lab = Lab::new();
    let (coordinator, _clinic) = cast(&lab, true);
    write_policy(&coordinator, "permitted_countries = [\"US\"]\n");
    let record = input_file(&lab, "summary.json", &synthetic_fhir_json());
    for kind in ["record", "careplan", "message"] {
        let (o, out) = seal(&lab, &coordinator, &["--kind", kind], &[&record]);
        o.code(EXIT_POLICY)
            .stderr_has("which is not in permitted_countries")
            .stderr_has("th-bangkok-care is in TH");
        assert!(!out.exists(), "nothing written");
    }
    assert!(
        !coordinator.home.join("redacting").exists()
            || fs::read_dir(coordinator.home.join("redacting"))
                .unwrap()
                .next()
                .is_none()
    );
    let shown = coordinator.run(&["policy", "show", "--json"]).ok().json();
    assert_eq!(
        shown["settings"]["permitted_countries"]["value"],
        serde_json::json!(["US"])
    );

    write_policy(&coordinator, "permitted_countries = [\"US\", \"TH\"]\n");
    seal(&lab, &coordinator, &[], &[&record]).0.ok();
}

/// Every identifying value of the Patient resources in an IPS JSON bundle: identifiers,
/// telecom, address lines and postal codes, and the same for their contacts.
fn patient_identifiers(bundle: &Value) -> Vec<String> {
    let mut out = Vec::new();
    let mut push = |v: &Value| {
        if let Some(s) = v.as_str() {
            out.push(s.to_owned());
        }
    };
    let addresses = |a: &Value, push: &mut dyn FnMut(&Value)| {
        for addr in a
            .as_array()
            .into_iter()
            .flatten()
            .chain(a.as_object().map(|_| a))
        {
            for l in addr["line"].as_array().into_iter().flatten() {
                push(l);
            }
            push(&addr["postalCode"]);
        }
    };
    for e in bundle["entry"].as_array().unwrap() {
        let r = &e["resource"];
        if r["resourceType"] != "Patient" {
            continue;
        }
        for i in r["identifier"].as_array().into_iter().flatten() {
            push(&i["value"]);
        }
        for t in r["telecom"].as_array().into_iter().flatten() {
            push(&t["value"]);
        }
        addresses(&r["address"], &mut push);
        for c in r["contact"].as_array().into_iter().flatten() {
            for t in c["telecom"].as_array().into_iter().flatten() {
                push(&t["value"]);
            }
            addresses(&c["address"], &mut push);
        }
    }
    out
}

fn resource_types(bundle: &Value) -> Vec<String> {
    bundle["entry"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["resource"]["resourceType"].as_str().unwrap().to_owned())
        .collect()
}

/// The single re-link table of a node: its path, after checking it is encrypted,
/// private and free of every value in `secrets`.
fn relink_table(node: &Node, pseudonym: &str, secrets: &[String]) -> PathBuf {
    let dir = node.home.join("relink");
    assert_eq!(mode_of(&dir), 0o700);
    let path = dir.join(format!("{pseudonym}.age"));
    let bytes = fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    assert!(
        bytes.starts_with(b"age-encryption.org/v1\n")
            || bytes.starts_with(b"-----BEGIN AGE ENCRYPTED FILE-----"),
        "the re-link table is an age file"
    );
    assert_eq!(mode_of(&path), 0o600);
    for s in secrets {
        assert!(
            !contains_bytes(&bytes, s.as_bytes()),
            "{s:?} in clear in the re-link table"
        );
    }
    path
}

#[test]
fn a_minors_ips_record_abroad_needs_a_reason_or_redaction() {
    let Some(ips) = ips_sample() else {
        eprintln!(
            "SKIPPED: the shared HL7 IPS sample {} is absent (set DOSSIER_SAMPLE_DIR)",
            fhir_sample_dir().join(IPS_SAMPLE_NAME).display()
        );
        return;
    };
    let lab = Lab::new();
    let (coordinator, clinic) = cast(&lab, true);
    let text = String::from_utf8(ips).unwrap();
    let birth = format!("\"birthDate\": \"{}-01-01\"", minor_birth_year());
    let minor = text.replace("\"birthDate\": \"1972-05-01\"", &birth);
    assert!(minor.contains(&birth), "the sample's birthDate was found");
    let original: Value = serde_json::from_str(&minor).unwrap();
    let secrets = patient_identifiers(&original);
    assert!(secrets.len() >= 5, "{secrets:?}");
    let record = input_file(&lab, "ips-minor.json", minor.as_bytes());

    // Refused as it is; the message names the rule and both ways out.
    let (o, _) = seal(&lab, &coordinator, &[], &[&record]);
    o.code(EXIT_POLICY)
        .stderr_has("minors")
        .stderr_has("--redact identifiers")
        .stderr_has("--allow-minor --reason");

    // An override needs its reason (a usage error).
    let (o, _) = seal(&lab, &coordinator, &["--allow-minor"], &[&record]);
    o.code(EXIT_USAGE).stderr_has("--reason");

    // With one it goes, and the trail keeps the reason.
    let (o, out) = seal(
        &lab,
        &coordinator,
        &["--allow-minor", "--reason", REASON],
        &[&record],
    );
    o.ok();
    assert!(out.is_file());
    let overrides: Vec<Value> = audit(&coordinator)
        .into_iter()
        .filter(|e| e["action"] == "policy_override")
        .collect();
    assert_eq!(overrides.len(), 1, "{overrides:?}");
    assert!(
        overrides[0]["detail"].as_str().unwrap().contains(REASON),
        "{overrides:?}"
    );
    assert_eq!(overrides[0]["counterparts"][0]["id"], CLINIC_ID);

    // Redacted, it goes without an override, and is still the same FHIR document.
    let (o, out) = seal(&lab, &coordinator, &["--redact", "identifiers"], &[&record]);
    o.ok();
    let sealed = o.json();
    assert_eq!(sealed["redacted"], true);
    let pseudonym = sealed["pseudonym"].as_str().expect("pseudonym").to_owned();
    assert_eq!(
        audit(&coordinator)
            .iter()
            .filter(|e| e["action"] == "policy_override")
            .count(),
        1,
        "no override was needed"
    );
    let opened_dir = lab.fresh_path("opened");
    clinic.open(&out, &opened_dir).ok();
    let opened = fs::read(opened_dir.join("ips-minor.json")).unwrap();
    let doc: Value = serde_json::from_slice(&opened).expect("the opened record is JSON");
    assert_eq!(doc["resourceType"], "Bundle");
    assert_eq!(resource_types(&doc), resource_types(&original));
    assert_eq!(
        dossier_fhir::detect(&opened),
        Some(dossier_fhir::FhirFormat::Json)
    );
    let births = dossier_fhir::birth_dates(&opened, dossier_fhir::FhirFormat::Json).unwrap();
    assert_eq!(births.len(), 1, "the birth date is kept");
    for s in &secrets {
        assert!(
            !contains_bytes(&opened, s.as_bytes()),
            "{s:?} reached the clinic"
        );
    }
    let patient = doc["entry"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| &e["resource"])
        .find(|r| r["resourceType"] == "Patient")
        .unwrap();
    assert_eq!(
        patient["identifier"],
        serde_json::json!([{ "system": "urn:dossier:pseudonym", "value": pseudonym }])
    );
    relink_table(&coordinator, &pseudonym, &secrets);
    let work = coordinator.home.join("redacting");
    assert_eq!(
        fs::read_dir(&work).unwrap().count(),
        0,
        "the redacted copies are gone"
    );
}

#[test]
fn a_minors_fhir_xml_record_is_redacted_before_it_leaves() {
    let lab = Lab::new();
    let (coordinator, clinic) = cast(&lab, true);
    let fixture = workspace_root().join("crates/fhir/tests/data/bundle.xml");
    let text = fs::read_to_string(&fixture).unwrap();
    let birth = format!("<birthDate value=\"{}-01\"/>", minor_birth_year());
    let minor = text.replace("<birthDate value=\"2011-03\"/>", &birth);
    assert!(minor.contains(&birth), "the fixture's birthDate was found");
    let record = input_file(&lab, "summary.xml", minor.as_bytes());

    seal(&lab, &coordinator, &[], &[&record])
        .0
        .code(EXIT_POLICY)
        .stderr_has("minors");
    let (o, out) = seal(&lab, &coordinator, &["--redact", "identifiers"], &[&record]);
    o.ok();
    let pseudonym = o.json()["pseudonym"].as_str().unwrap().to_owned();
    let opened_dir = lab.fresh_path("opened");
    clinic.open(&out, &opened_dir).ok();
    let opened = fs::read(opened_dir.join("summary.xml")).unwrap();
    assert_eq!(
        dossier_fhir::detect(&opened),
        Some(dossier_fhir::FhirFormat::Xml)
    );
    assert_eq!(
        dossier_fhir::birth_dates(&opened, dossier_fhir::FhirFormat::Xml)
            .unwrap()
            .len(),
        1
    );
    let count = |hay: &[u8], needle: &str| {
        hay.windows(needle.len())
            .filter(|w| *w == needle.as_bytes())
            .count()
    };
    assert_eq!(
        count(&opened, "<fullUrl "),
        count(minor.as_bytes(), "<fullUrl "),
        "same entries"
    );
    for t in [
        "Composition",
        "Patient",
        "Practitioner",
        "Condition",
        "Observation",
        "RelatedPerson",
    ] {
        assert_eq!(count(&opened, &format!("<{t}>")), 1, "{t} is still there");
    }
    let secrets: Vec<String> = [
        "NHX7731",
        "+1 555 0100 123",
        "42 Lantern Row",
        "90210",
        "123-45-6780",
        "+1 555 0100 987",
        "9 Harbour Steps",
        "90211",
    ]
    .map(String::from)
    .to_vec();
    for s in &secrets {
        assert!(
            !contains_bytes(&opened, s.as_bytes()),
            "{s:?} reached the clinic"
        );
    }
    assert!(contains_bytes(&opened, pseudonym.as_bytes()));
    assert!(
        contains_bytes(&opened, b"+1 555 0100 400"),
        "the practitioner's work phone is kept"
    );
    relink_table(&coordinator, &pseudonym, &secrets);
}

#[test]
fn consent_is_required_per_patient_and_country_and_a_revocation_stops_the_next_send() {
    let lab = Lab::new();
    let (coordinator, _clinic) = cast(&lab, true);
    write_policy(&coordinator, "[consent]\nrequired = true\n");
    let record = input_file(&lab, "summary.json", &synthetic_fhir_json());
    let with_patient = ["--patient", MRN];

    let (o, _) = seal(&lab, &coordinator, &with_patient, &[&record]);
    o.code(EXIT_POLICY)
        .stderr_has("consent grant --patient REF --country TH");
    assert!(!o.stderr.contains(MRN), "no patient reference in errors");
    seal(&lab, &coordinator, &[], &[&record])
        .0
        .code(EXIT_POLICY)
        .stderr_has("--patient REF");

    // A consent that would already have ended is refused as a usage error.
    coordinator
        .run(&[
            "consent",
            "grant",
            "--patient",
            MRN,
            "--country",
            "TH",
            "--until",
            "2001-01-31",
        ])
        .code(EXIT_USAGE)
        .stderr_has("before today");
    coordinator
        .run(&["consent", "grant", "--patient", MRN, "--country", "IN"])
        .ok();
    seal(&lab, &coordinator, &with_patient, &[&record])
        .0
        .code(EXIT_POLICY);

    coordinator
        .run(&[
            "consent",
            "grant",
            "--patient",
            MRN,
            "--country",
            "TH",
            "--until",
            "2099-12-31",
        ])
        .ok();
    let list = coordinator
        .run(&["consent", "list", "--patient", MRN, "--json"])
        .ok()
        .json();
    let th: Vec<&Value> = list
        .as_array()
        .unwrap()
        .iter()
        .filter(|g| g["country"] == "TH")
        .collect();
    assert_eq!(th.len(), 1, "{list}");
    assert_eq!(th[0]["patient"], MRN);
    assert_eq!(th[0]["until"], "2099-12-31");
    assert_eq!(th[0]["ended"], Value::Null);
    assert_eq!(th[0]["current"], true);

    // First send: allowed. Then the patient withdraws consent; the second is refused.
    seal(&lab, &coordinator, &with_patient, &[&record]).0.ok();
    coordinator
        .run(&["consent", "revoke", "--patient", MRN, "--country", "TH"])
        .ok();
    seal(&lab, &coordinator, &with_patient, &[&record])
        .0
        .code(EXIT_POLICY)
        .stderr_has("consent");
    let list = coordinator.run(&["consent", "list", "--json"]).ok().json();
    let th = list
        .as_array()
        .unwrap()
        .iter()
        .find(|g| g["country"] == "TH")
        .unwrap();
    assert_eq!(th["ended"]["how"], "revoked", "{list}");
    assert_eq!(th["current"], false);
    coordinator
        .run(&["consent", "revoke", "--patient", MRN, "--country", "TH"])
        .failed()
        .stderr_has("nothing was revoked");

    // The trail shows grants and revocations by country, never the patient.
    let trail = audit(&coordinator);
    let grants: Vec<&Value> = trail
        .iter()
        .filter(|e| e["action"] == "consent_grant")
        .collect();
    assert_eq!(grants.len(), 2, "the refused grant is not recorded");
    assert!(grants[1]["detail"].as_str().unwrap().contains("TH"));
    assert!(
        trail
            .iter()
            .any(|e| e["action"] == "consent_revoke" && e["detail"] == "TH")
    );
    let log = fs::read(coordinator.home.join("audit/log.jsonl")).unwrap();
    assert!(!contains_bytes(&log, MRN.as_bytes()));
}

#[test]
fn policy_show_follows_the_file_and_a_misspelt_key_stops_sealing() {
    let lab = Lab::new();
    let (coordinator, _clinic) = cast(&lab, true);
    let shown = coordinator.run(&["policy", "show", "--json"]).ok().json();
    assert_eq!(
        shown["file_exists"], true,
        "init writes the commented template"
    );
    assert_eq!(
        shown["settings"]["records_require_verified_contact"]["value"],
        true
    );
    assert_eq!(shown["settings"]["minors.protect"]["value"], true);
    assert_eq!(shown["settings"]["minors.age_of_majority"]["value"], 18);
    let template = fs::read_to_string(coordinator.home.join("policy.toml")).unwrap();
    assert!(
        template.contains("# "),
        "the template explains its settings"
    );

    write_policy(
        &coordinator,
        "records_require_verified_contact = false\n[minors]\nage_of_majority = 21\n",
    );
    let shown = coordinator.run(&["policy", "show", "--json"]).ok().json();
    let s = &shown["settings"];
    assert_eq!(s["records_require_verified_contact"]["value"], false);
    assert_eq!(s["records_require_verified_contact"]["source"], "file");
    assert_eq!(s["minors.age_of_majority"]["value"], 21);
    assert_eq!(s["minors.protect"]["value"], true);
    assert_eq!(s["minors.protect"]["source"], "default");
    assert!(shown["file"].as_str().unwrap().ends_with("policy.toml"));
    let human = coordinator.run(&["policy", "show"]).ok().stdout.clone();
    assert!(human.contains("minors.age_of_majority") && human.contains("21"));

    write_policy(&coordinator, "[minors]\nage_of_majorty = 21\n");
    let record = input_file(&lab, "summary.json", &synthetic_fhir_json());
    let (o, _) = seal(&lab, &coordinator, &[], &[&record]);
    o.code(EXIT_ERROR)
        .stderr_has("age_of_majorty")
        .stderr_has("policy.toml");
    coordinator
        .run(&["policy", "show"])
        .code(EXIT_ERROR)
        .stderr_has("age_of_majorty");
}
