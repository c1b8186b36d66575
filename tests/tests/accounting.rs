//! Accounting of disclosures and retention, through a real relay: what left the coordinator
//! about a patient (to whom, where, which parts, delivered and opened when, by whom), the
//! same grouped by facility for a breach notice, the accounting delivered to the patient's
//! own node, and `purge` deleting what the policy's periods no longer allow to keep.

use std::path::Path;

use dossier_tests::*;
use serde_json::Value;

const RECORDS: &str = "knee-workup";

/// Sends the records to the clinic, which receives, opens and syncs again (posting its
/// `opened` receipt); the coordinator then collects both receipts. Returns the bundle id
/// and the clinic's export directory.
fn disclose_and_open(c: &Cast) -> (String, std::path::PathBuf) {
    let dir = c.lab.fresh_dir("out");
    let records = make_records(&dir, RECORDS, 64 * 1024, 7);
    let sent = c.coordinator.send_outcome(
        &[CLINIC_ID],
        &[&PHI.seal_args()[..], &["--operator", "nurse.kim"]].concat(),
        &[records.as_path()],
    );
    let sent = sent.ok().json();
    let id = sent["bundle_id"].as_str().unwrap().to_owned();
    c.clinic.sync();
    let export = c.lab.fresh_path("clinic-opened");
    c.clinic
        .run(&["open", &id, "-o", export.to_str().unwrap()])
        .ok();
    c.clinic.sync();
    c.coordinator.sync();
    (id, export)
}

#[test]
fn a_patient_gets_an_accounting_with_delivery_and_opening_times() {
    let c = Cast::start();
    let (id, _) = disclose_and_open(&c);
    // Something about another patient, which must not appear in this one's accounting.
    let other = c.lab.fresh_dir("other");
    std::fs::write(other.join("note.txt"), b"unrelated").unwrap();
    c.coordinator
        .send_outcome(
            &[CLINIC_ID],
            &["--kind", "message", "--patient", "MRN-OTHER-1"],
            &[other.join("note.txt").as_path()],
        )
        .ok();

    let doc = c
        .coordinator
        .run(&["disclosures", "--patient", PHI.patient, "--json"])
        .ok()
        .json();
    let list = doc["disclosures"].as_array().unwrap();
    assert_eq!(list.len(), 1, "{doc}");
    let d = &list[0];
    assert_eq!(d["bundle_id"], id.as_str());
    assert_eq!(d["kind"], "record");
    assert_eq!(d["channel"], "relay");
    assert_eq!(d["operator"], "nurse.kim");
    let to = &d["recipients"][0];
    assert_eq!(to["id"], CLINIC_ID);
    assert_eq!(to["country"], "TH");
    assert_eq!(to["state"], "opened", "{doc}");
    assert!(to["delivered_at"].is_string(), "{doc}");
    assert!(to["opened_at"].is_string(), "{doc}");
    let names: Vec<&str> = d["parts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    assert!(
        names.contains(&format!("{RECORDS}/{IPS_SAMPLE_NAME}").as_str()),
        "{names:?}"
    );
    assert!(d["parts"][0]["length"].as_u64().unwrap() > 0);

    // Delivered to the patient's own node, as a bundle they can open.
    c.coordinator
        .run(&[
            "disclosures",
            "--patient",
            PHI.patient,
            "--send-to-patient",
            PATIENT_ID,
        ])
        .ok();
    c.patient.sync();
    let inbox = c.patient.inbox();
    let report = inbox
        .iter()
        .find(|b| b["kind"] == "message")
        .expect("the accounting arrived");
    let out = c.lab.fresh_path("patient-report");
    c.patient
        .run(&[
            "open",
            report["bundle_id"].as_str().unwrap(),
            "-o",
            out.to_str().unwrap(),
        ])
        .ok();
    let text = std::fs::read(out.join("accounting-of-disclosures.json")).unwrap();
    let got: Value = serde_json::from_slice(&text).unwrap();
    assert_eq!(got["patient"], PHI.patient);
    assert_eq!(got["disclosures"][0]["bundle_id"], id.as_str());

    let audit = c.coordinator.run(&["audit", "--json"]).ok().json();
    assert!(
        audit
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["action"] == "disclosure_report"),
        "{audit}"
    );
}

#[test]
fn disclosures_to_a_facility_are_grouped_by_patient_for_a_breach_notice() {
    let c = Cast::start();
    disclose_and_open(&c);
    let dir = c.lab.fresh_dir("second");
    std::fs::write(dir.join("plan.txt"), b"plan").unwrap();
    c.coordinator
        .send_outcome(
            &[CLINIC_ID, PATIENT_ID],
            &["--kind", "careplan", "--patient", "MRN-2"],
            &[dir.join("plan.txt").as_path()],
        )
        .ok();
    let doc = c
        .coordinator
        .run(&[
            "disclosures",
            "--to",
            CLINIC_ID,
            "--since",
            "2020-01-01",
            "--json",
        ])
        .ok()
        .json();
    let patients: Vec<&str> = doc["patients"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["patient"].as_str().unwrap())
        .collect();
    assert_eq!(patients, ["MRN-0042-77193", "MRN-2"], "{doc}");
    let later = c
        .coordinator
        .run(&[
            "disclosures",
            "--to",
            CLINIC_ID,
            "--since",
            "2999-01-01",
            "--json",
        ])
        .ok()
        .json();
    assert_eq!(later["patients"].as_array().unwrap().len(), 0);
    c.coordinator
        .run(&["disclosures", "--to", PATIENT_ID, "--json"])
        .ok();
    c.coordinator
        .run(&["disclosures", "--since", "2020-13-45", "--to", CLINIC_ID])
        .code(EXIT_USAGE);
}

/// Moves every timestamp field named `field` in the JSON files under `dir` back to 2020.
fn backdate(dir: &Path, field: &str) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "json") {
            let mut v: Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
            if v.get(field).is_some() {
                v[field] = Value::from("2020-01-01T00:00:00Z");
                std::fs::write(&path, serde_json::to_vec_pretty(&v).unwrap()).unwrap();
            }
        }
    }
}

#[test]
fn purge_deletes_exports_opened_bundles_and_settled_sent_copies_when_due() {
    let c = Cast::start();
    let (id, export) = disclose_and_open(&c);
    let ciphertext = c.clinic.home.join("inbox").join(format!("{id}.dossier"));
    assert!(export.is_dir() && ciphertext.is_file());

    // Nothing is due yet.
    let dry = c.clinic.run(&["purge", "--dry-run", "--json"]).ok().json();
    assert_eq!(dry["purged"].as_array().unwrap().len(), 0, "{dry}");

    // A hundred days later (the default periods are 30 days for exports, 90 for the rest).
    backdate(
        &c.clinic.home.join("retention").join("exports"),
        "written_at",
    );
    backdate(&c.clinic.home.join("retention").join("opened"), "opened_at");
    let dry = c.clinic.run(&["purge", "--dry-run", "--json"]).ok().json();
    assert_eq!(dry["purged"].as_array().unwrap().len(), 2, "{dry}");
    assert!(export.is_dir(), "a dry run deletes nothing");
    let done = c.clinic.run(&["purge", "--json"]).ok().json();
    let what: Vec<&str> = done["purged"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["what"].as_str().unwrap())
        .collect();
    assert_eq!(what, ["export", "inbox"], "{done}");
    assert!(!export.exists(), "the plaintext export is gone");
    assert!(!ciphertext.exists(), "the received ciphertext is gone");
    // No copy of a record byte is left anywhere in the clinic's home.
    let plain = ips_sample().unwrap_or_else(synthetic_fhir_json);
    let needle = &plain[plain.len() / 2..plain.len() / 2 + 64];
    for file in walk(&c.clinic.home) {
        let bytes = std::fs::read(&file).unwrap();
        assert!(
            !contains_bytes(&bytes, needle),
            "{} still holds record bytes",
            file.display()
        );
    }
    let out = c.lab.fresh_path("again");
    c.clinic
        .run(&["open", &id, "-o", out.to_str().unwrap()])
        .failed();
    let audit = c.clinic.run(&["audit", "--json"]).ok().json();
    let purges = audit
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["action"] == "purge")
        .count();
    assert_eq!(purges, 2, "{audit}");

    // The coordinator's sealed copy goes once delivery is settled and its period is over.
    let sent_copy = c
        .coordinator
        .home
        .join("outbox")
        .join(format!("{id}.dossier"));
    assert!(sent_copy.is_file());
    backdate(&c.coordinator.home.join("outbox"), "queued_at");
    let summary = c.coordinator.sync();
    assert_eq!(summary["purged"][0]["what"], "outbox", "{summary}");
    assert!(!sent_copy.exists(), "sync purges too");
    // The accounting survives the purge: it is evidence.
    let doc = c
        .coordinator
        .run(&["disclosures", "--patient", PHI.patient, "--json"])
        .ok()
        .json();
    assert_eq!(doc["disclosures"][0]["bundle_id"], id.as_str());
}

fn walk(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    if let Ok(entries) = std::fs::read_dir(dir) {
        for e in entries.flatten() {
            let p = e.path();
            if p.is_dir() {
                out.extend(walk(&p));
            } else if p.is_file() {
                out.push(p);
            }
        }
    }
    out
}
