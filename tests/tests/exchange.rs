//! End-to-end exchange over the real `dossier` binary: a US care coordinator seals an HL7
//! IPS summary and a multi-MiB imaging file for a clinic abroad and the patient; each
//! recipient (and the sender's own node) opens it byte-identical; nobody else can.

use std::fs;
use std::path::Path;

use dossier_tests::*;
use serde_json::Value;

const RECORDS: &str = "treatment-history-k7";
const FIVE_MIB: usize = 5 * 1024 * 1024;

/// Checks one recipient's `open --json` document and the files it released.
fn check_opened(
    opened: &Value,
    out_dir: &Path,
    sealed: &Value,
    expected_tree: &std::collections::BTreeMap<String, String>,
    sender_fp: &str,
    sender_verified: bool,
) {
    assert_eq!(opened["bundle_id"], sealed["bundle_id"], "{opened}");
    assert_eq!(opened["kind"], "record");
    assert_eq!(opened["from"], COORDINATOR_ID);
    assert_eq!(opened["from_fingerprint"], sender_fp);
    assert_eq!(opened["from_verified"], sender_verified);
    assert_eq!(
        opened["to"],
        serde_json::json!([CLINIC_ID, PATIENT_ID]),
        "the signed recipient list, in --to order"
    );
    assert_eq!(opened["subject"], PHI.subject);
    assert_eq!(opened["patient"], PHI.patient);
    assert_eq!(opened["thread"], PHI.thread);
    assert_eq!(opened["created_at"], sealed["created_at"]);

    let parts = opened["parts"].as_array().expect("parts is an array");
    assert_eq!(parts.len(), 2, "{opened}");
    let ips_path = format!("{RECORDS}/{IPS_SAMPLE_NAME}");
    let scan_path = format!("{RECORDS}/imaging/{SCAN_NAME}");
    // The directory is walked in byte order of names: imaging/ sorts before ips-….
    assert_eq!(parts[0]["path"], scan_path.as_str());
    assert_eq!(parts[0]["media_type"], "application/dicom");
    assert_eq!(parts[1]["path"], ips_path.as_str());
    assert_eq!(parts[1]["media_type"], "application/fhir+json");
    for p in parts {
        let path = p["path"].as_str().unwrap();
        let on_disk = out_dir.join(path);
        assert_eq!(
            p["length"].as_u64().unwrap(),
            fs::metadata(&on_disk).unwrap().len(),
            "length of {path}"
        );
        assert_eq!(
            p["sha256"].as_str().unwrap(),
            expected_tree[path].as_str(),
            "signed hash of {path} is the original's"
        );
        assert_eq!(mode_of(&on_disk), 0o600, "opened record {path} is private");
    }
    assert_eq!(
        &tree_digests(out_dir),
        expected_tree,
        "exactly the sealed files, byte-identical"
    );
    assert_eq!(mode_of(out_dir), 0o700, "the output directory is private");
    for sub in [RECORDS.to_owned(), format!("{RECORDS}/imaging")] {
        assert_eq!(mode_of(&out_dir.join(&sub)), 0o700, "{sub}/ is private");
    }
}

#[test]
fn ips_and_imaging_reach_clinic_patient_and_sender_byte_identical() {
    let Some(ips) = ips_sample() else {
        eprintln!(
            "SKIPPED: the shared HL7 IPS sample {} is absent (set DOSSIER_SAMPLE_DIR to the directory holding it)",
            fhir_sample_dir().join(IPS_SAMPLE_NAME).display()
        );
        return;
    };
    let lab = Lab::new();
    let coordinator = lab.coordinator();
    let clinic = lab.clinic();
    let patient = lab.patient_node();
    coordinator.pin_both_ways(&clinic);
    // The patient pins the coordinator without confirming the fingerprint.
    coordinator.pin(&patient, true);
    patient.pin(&coordinator, false);

    let outgoing = lab.fresh_dir("outgoing");
    let records = make_records(&outgoing, RECORDS, FIVE_MIB, 0x5EED_0001);
    assert_eq!(fs::read(records.join(IPS_SAMPLE_NAME)).unwrap(), ips);
    let expected: std::collections::BTreeMap<String, String> = tree_digests(&outgoing);
    assert_eq!(expected.len(), 2);

    let bundle = lab.fresh_path("bundle");
    let mut extra = vec!["--kind", "record"];
    extra.extend(PHI.seal_args());
    let sealed = coordinator.seal(&[CLINIC_ID, PATIENT_ID], &extra, &bundle, &[&records]);
    assert_eq!(sealed["from"], COORDINATOR_ID);
    assert_eq!(sealed["to"], serde_json::json!([CLINIC_ID, PATIENT_ID]));
    assert_eq!(sealed["parts"], 2);
    assert_eq!(sealed["kind"], "record");
    assert_eq!(sealed["bytes"], (FIVE_MIB + ips.len()) as u64);
    assert_eq!(sealed["bundle_id"].as_str().unwrap().len(), 32);

    // What travels is a standard age file that carries nothing readable.
    let cipher = fs::read(&bundle).unwrap();
    assert!(cipher.starts_with(b"age-encryption.org/v1\n"));
    assert!(cipher.len() > FIVE_MIB, "the whole scan is inside");
    for s in protected_strings(RECORDS) {
        assert!(
            !contains_bytes(&cipher, s.as_bytes()),
            "{s:?} appears in clear in the bundle file"
        );
    }
    assert!(
        !contains_bytes(&cipher, &ips[100..164]),
        "IPS bytes in clear"
    );
    assert!(!contains_bytes(&cipher, b"resourceType"));

    let coordinator_fp = coordinator.fingerprint();
    for (node, verified) in [(&clinic, true), (&patient, false), (&coordinator, true)] {
        let out = lab.fresh_path(&format!("opened-by-{}", node.label));
        let opened = node.open(&bundle, &out);
        opened.ok();
        check_opened(
            &opened.json(),
            &out,
            &sealed,
            &expected,
            &coordinator_fp,
            verified,
        );
    }
}

#[test]
fn recipient_can_open_into_an_existing_empty_directory_and_reply() {
    let lab = Lab::new();
    let coordinator = lab.coordinator();
    let clinic = lab.clinic();
    coordinator.pin_both_ways(&clinic);

    // The clinic replies with a care plan: a single file, not a directory.
    let plan = lab.fresh_dir("plans").join("care-plan.pdf");
    let mut pdf = b"%PDF-1.7\n".to_vec();
    pdf.extend(pseudo_random_bytes(7, 300 * 1024));
    write_file(&plan, &pdf);
    let bundle = lab.fresh_path("reply");
    let sealed = clinic.seal(
        &[COORDINATOR_ID],
        &["--kind", "careplan", "--thread", PHI.thread],
        &bundle,
        &[&plan],
    );
    assert_eq!(sealed["kind"], "careplan");
    assert_eq!(sealed["from"], CLINIC_ID);

    let out = lab.fresh_dir("inbox");
    let opened = coordinator.open(&bundle, &out);
    let doc = opened.ok().json();
    assert_eq!(doc["kind"], "careplan");
    assert_eq!(doc["from"], CLINIC_ID);
    assert_eq!(doc["to"], serde_json::json!([COORDINATOR_ID]));
    assert_eq!(doc["subject"], Value::Null);
    assert_eq!(doc["parts"][0]["path"], "care-plan.pdf");
    assert_eq!(doc["parts"][0]["media_type"], "application/pdf");
    assert_eq!(fs::read(out.join("care-plan.pdf")).unwrap(), pdf);
}

#[test]
fn stranger_who_pinned_the_sender_cannot_open() {
    let lab = Lab::new();
    let coordinator = lab.coordinator();
    let clinic = lab.clinic();
    let stranger = lab.stranger();
    coordinator.pin_both_ways(&clinic);
    // The stranger knows and trusts the sender, but the bundle is not addressed to it.
    stranger.pin(&coordinator, true);
    coordinator.pin(&stranger, true);

    let outgoing = lab.fresh_dir("outgoing");
    let records = make_records(&outgoing, RECORDS, 200 * 1024, 2);
    let bundle = lab.fresh_path("bundle");
    coordinator.seal(&[CLINIC_ID], &PHI.seal_args(), &bundle, &[&records]);

    let out = lab.path().join("stranger-out");
    let refused = stranger.open(&bundle, &out);
    refused
        .code(EXIT_VERIFICATION)
        .stderr_has("not addressed to this node");
    assert_nothing_released(&out);
    assert_no_phi(&refused, &protected_strings(RECORDS));
    assert!(refused.stdout.trim().is_empty(), "{}", refused.describe());

    // Same for an existing empty directory: it stays empty.
    let out2 = lab.fresh_dir("stranger-out-existing");
    stranger.open(&bundle, &out2).code(EXIT_VERIFICATION);
    assert_nothing_released(&out2);

    // The intended recipient still opens the very same file.
    let ok_out = lab.fresh_path("clinic-out");
    clinic.open(&bundle, &ok_out).ok();
    assert_eq!(tree_digests(&ok_out), tree_digests(&outgoing));
}
