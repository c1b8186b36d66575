//! No protected health information in error output: whenever `open` fails — not for this
//! node, unknown sender, pinned-key mismatch, tampered, truncated, non-empty or unusable
//! output directory, wrong passphrase — neither stdout nor stderr carries the subject, the
//! patient reference, the thread or any part file name, in human or `--json` mode.

use std::ffi::OsString;
use std::fs;
use std::path::Path;

use dossier_tests::*;

const RECORDS: &str = "oncology-summary-j9";

fn open_args(bundle: &Path, out: &Path, json: bool) -> Vec<OsString> {
    let mut a: Vec<OsString> = vec!["open".into(), bundle.into(), "-o".into(), out.into()];
    if json {
        a.push("--json".into());
    }
    a
}

#[test]
fn failing_opens_never_print_subject_patient_or_part_names() {
    let lab = Lab::new();
    let coordinator = lab.coordinator();
    let clinic = lab.clinic();
    let stranger = lab.stranger();
    coordinator.pin_both_ways(&clinic);
    stranger.pin(&coordinator, true);
    stranger.pin(&clinic, true);
    let impostor = lab.facility("impostor", COORDINATOR_ID, "Mercy Hospital", "US");
    impostor.pin(&clinic, true);

    let outgoing = lab.fresh_dir("outgoing");
    let records = make_records(&outgoing, RECORDS, 150 * 1024, 0xFEED);
    let secrets = protected_strings(RECORDS);

    let good = lab.fresh_path("good");
    coordinator.seal(&[CLINIC_ID], &PHI.seal_args(), &good, &[&records]);
    let from_stranger = lab.fresh_path("from-stranger");
    stranger.seal(&[CLINIC_ID], &PHI.seal_args(), &from_stranger, &[&records]);
    let from_impostor = lab.fresh_path("from-impostor");
    impostor.seal(&[CLINIC_ID], &PHI.seal_args(), &from_impostor, &[&records]);
    let bytes = fs::read(&good).unwrap();
    let tampered = lab.fresh_path("tampered");
    let mut t = bytes.clone();
    let mid = t.len() / 2;
    t[mid] ^= 0x10;
    fs::write(&tampered, t).unwrap();
    let truncated = lab.fresh_path("truncated");
    fs::write(&truncated, &bytes[..bytes.len() - 40]).unwrap();
    let non_empty = lab.fresh_dir("non-empty");
    fs::write(non_empty.join("existing.txt"), b"x").unwrap();

    // Control: a successful human-mode open does print the subject and patient, so the
    // checks below would notice them.
    let shown = clinic.run(&open_args(&good, &lab.fresh_path("ok"), false));
    shown.ok();
    assert!(shown.stdout.contains(PHI.subject) && shown.stdout.contains(PHI.patient));
    assert!(shown.stdout.contains(SCAN_NAME));

    for json in [false, true] {
        let cases: Vec<(&str, &Node, &Path, std::path::PathBuf, i32)> = vec![
            (
                "not for me",
                &stranger,
                &good,
                lab.fresh_path("o"),
                EXIT_VERIFICATION,
            ),
            (
                "unknown sender",
                &clinic,
                &from_stranger,
                lab.fresh_path("o"),
                EXIT_UNKNOWN_SENDER,
            ),
            (
                "pinned key mismatch",
                &clinic,
                &from_impostor,
                lab.fresh_path("o"),
                EXIT_PIN_MISMATCH,
            ),
            (
                "tampered",
                &clinic,
                &tampered,
                lab.fresh_path("o"),
                EXIT_VERIFICATION,
            ),
            (
                "truncated",
                &clinic,
                &truncated,
                lab.fresh_path("o"),
                EXIT_VERIFICATION,
            ),
            (
                "output not empty",
                &clinic,
                &good,
                non_empty.clone(),
                EXIT_ERROR,
            ),
            (
                "output parent missing (fails after verification)",
                &clinic,
                &good,
                lab.path().join("missing-parent").join("out"),
                EXIT_ERROR,
            ),
        ];
        for (what, node, bundle, out, code) in cases {
            let o = node.run(&open_args(bundle, &out, json));
            assert_eq!(o.code, code, "{what} (json={json})\n{}", o.describe());
            assert!(!o.stderr.trim().is_empty(), "{what}: says why");
            assert!(
                o.stdout.trim().is_empty(),
                "{what}: nothing on stdout\n{}",
                o.describe()
            );
            assert_no_phi(&o, &secrets);
            if out != non_empty {
                assert_nothing_released(&out);
            }
        }
        let o = clinic.run_with_passphrase(
            "wrong passphrase for this",
            &open_args(&good, &lab.fresh_path("o"), json),
        );
        o.code(EXIT_ERROR);
        assert_no_phi(&o, &secrets);
    }
    assert_eq!(
        tree_digests(&non_empty).into_keys().collect::<Vec<_>>(),
        ["existing.txt"]
    );
}

#[test]
fn failing_seals_do_not_echo_the_subject_or_patient() {
    let lab = Lab::new();
    let coordinator = lab.coordinator();
    let outgoing = lab.fresh_dir("outgoing");
    let records = make_records(&outgoing, RECORDS, 1024, 1);
    // Not a contact: refused before anything is written.
    let out = lab.fresh_path("b");
    let o = coordinator.seal_outcome(&[CLINIC_ID], &PHI.seal_args(), &out, &[&records]);
    o.failed().stderr_has(CLINIC_ID);
    assert_no_phi(&o, &[PHI.subject, PHI.patient, PHI.thread]);
    assert!(!out.exists());
    let left: Vec<_> = fs::read_dir(lab.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(".dossier-tmp-"))
        .collect();
    assert!(left.is_empty(), "temporary files left: {left:?}");
}
