//! The audit trail through the real binary: every operation is recorded with its operator
//! and counterpart, never with record content; `audit verify` finds an entry edited,
//! removed, reordered or cut off the end by hand and names the first bad one; and an
//! operation whose entry cannot be written fails without leaving its result behind.

use std::path::{Path, PathBuf};

use dossier_tests::*;
use serde_json::Value;

/// A coordinator and a clinic with a few audited operations behind them: pinning, a seal
/// and an open on each side.
struct Scene {
    lab: Lab,
    coordinator: Node,
    clinic: Node,
}

fn scene() -> Scene {
    let lab = Lab::new();
    let coordinator = lab.coordinator();
    let clinic = lab.clinic();
    coordinator.pin_both_ways(&clinic);
    let dir = lab.fresh_dir("in");
    let input = dir.join("history.json");
    std::fs::write(&input, synthetic_fhir_json()).unwrap();
    let bundle = lab.fresh_path("b.dossier");
    coordinator
        .run(&[
            "--operator",
            "nurse.kim",
            "seal",
            "--to",
            CLINIC_ID,
            "--subject",
            PHI.subject,
            "--patient",
            PHI.patient,
            "-o",
            bundle.to_str().unwrap(),
            input.to_str().unwrap(),
        ])
        .ok();
    let out = lab.fresh_path("opened");
    clinic
        .command(&[
            "open",
            bundle.to_str().unwrap(),
            "-o",
            out.to_str().unwrap(),
        ])
        .env("DOSSIER_OPERATOR", "dr.suda")
        .output()
        .map(|o| assert!(o.status.success(), "open: {o:?}"))
        .unwrap();
    Scene {
        lab,
        coordinator,
        clinic,
    }
}

fn entries(node: &Node) -> Vec<Value> {
    match node.run(&["audit", "--json"]).ok().json() {
        Value::Array(a) => a,
        other => panic!("audit --json is not an array: {other}"),
    }
}

fn log_path(node: &Node) -> PathBuf {
    node.home.join("audit").join("log.jsonl")
}

fn lines(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect()
}

fn write_lines(path: &Path, lines: &[String]) {
    let mut text = lines.join("\n");
    text.push('\n');
    std::fs::write(path, text).unwrap();
}

#[test]
fn operations_are_recorded_with_operator_and_counterpart_but_no_content() {
    let s = scene();
    let mine = entries(&s.coordinator);
    let actions: Vec<&str> = mine.iter().map(|e| e["action"].as_str().unwrap()).collect();
    assert_eq!(actions, ["init", "contact_add", "seal"], "{mine:?}");
    let seal = &mine[2];
    assert_eq!(seal["operator"], "nurse.kim");
    assert_eq!(seal["outcome"], "ok");
    assert_eq!(seal["counterparts"][0]["id"], CLINIC_ID);
    assert_eq!(seal["counterparts"][0]["country"], "TH");
    assert_eq!(seal["bundle_id"].as_str().unwrap().len(), 32);
    assert_eq!(mine[1]["detail"], "pinned, verified");

    let theirs = entries(&s.clinic);
    let open = theirs.last().unwrap();
    assert_eq!(open["action"], "open");
    assert_eq!(
        open["operator"], "dr.suda",
        "$DOSSIER_OPERATOR names the operator"
    );
    assert_eq!(open["counterparts"][0]["id"], COORDINATOR_ID);
    assert_eq!(open["bundle_id"], seal["bundle_id"]);

    for node in [&s.coordinator, &s.clinic] {
        let raw = std::fs::read(log_path(node)).unwrap();
        for secret in [PHI.subject, PHI.patient, "history.json"] {
            assert!(
                !contains_bytes(&raw, secret.as_bytes()),
                "the trail of {} holds {secret:?}",
                node.label
            );
        }
        node.run(&["audit", "verify"]).ok();
        let head = node.run(&["audit", "head", "--json"]).ok().json();
        assert_eq!(head["seq"].as_u64().unwrap(), entries(node).len() as u64);
    }
}

#[test]
fn an_edited_entry_is_named_by_verify() {
    let s = scene();
    let path = log_path(&s.coordinator);
    let mut l = lines(&path);
    l[1] = l[1].replace(CLINIC_ID, "th-other-clinic");
    write_lines(&path, &l);
    let out = s.coordinator.run(&["audit", "verify"]);
    out.code(EXIT_VERIFICATION).stderr_has("entry 2");
    let report = s.coordinator.run(&["audit", "verify", "--json"]);
    report.code(EXIT_VERIFICATION);
    assert_eq!(report.json()["first_bad_seq"], 2);
}

#[test]
fn a_removed_or_reordered_entry_is_named_by_verify() {
    let s = scene();
    let path = log_path(&s.coordinator);
    let original = lines(&path);

    let mut removed = original.clone();
    removed.remove(1);
    write_lines(&path, &removed);
    let report = s.coordinator.run(&["audit", "verify", "--json"]);
    report.code(EXIT_VERIFICATION);
    assert_eq!(report.json()["first_bad_seq"], 2, "{}", report.describe());

    let mut swapped = original.clone();
    swapped.swap(1, 2);
    write_lines(&path, &swapped);
    let report = s.coordinator.run(&["audit", "verify", "--json"]);
    report.code(EXIT_VERIFICATION);
    assert_eq!(report.json()["first_bad_seq"], 2, "{}", report.describe());

    write_lines(&path, &original);
    s.coordinator.run(&["audit", "verify"]).ok();
}

#[test]
fn a_truncated_tail_is_caught_by_the_anchor() {
    let s = scene();
    let path = log_path(&s.coordinator);
    let mut l = lines(&path);
    let last = l.pop().unwrap();
    write_lines(&path, &l);
    let report = s.coordinator.run(&["audit", "verify", "--json"]);
    report.code(EXIT_VERIFICATION);
    assert_eq!(report.json()["first_bad_seq"], 3, "{}", report.describe());

    // Cut in the middle of the last line instead.
    let mut text = l.join("\n");
    text.push('\n');
    text.push_str(&last[..last.len() / 2]);
    std::fs::write(&path, text).unwrap();
    s.coordinator
        .run(&["audit", "verify"])
        .code(EXIT_VERIFICATION);
}

#[test]
fn an_operation_whose_entry_cannot_be_written_fails_and_leaves_nothing() {
    let s = scene();
    let path = log_path(&s.coordinator);
    // Someone cut the last entry: the end of the log no longer matches its anchor, so no
    // entry can be chained on and every audited operation is refused.
    let mut l = lines(&path);
    l.pop();
    write_lines(&path, &l);

    let dir = s.lab.fresh_dir("in2");
    let input = dir.join("note.txt");
    std::fs::write(&input, b"follow-up").unwrap();
    let bundle = s.lab.fresh_path("refused.dossier");
    let out = s.coordinator.seal_outcome(
        &[CLINIC_ID],
        &["--kind", "message"],
        &bundle,
        &[input.as_path()],
    );
    out.code(EXIT_VERIFICATION).stderr_has("audit");
    assert!(!bundle.exists(), "no bundle without its audit entry");
    let ledger = s.coordinator.home.join("disclosures");
    let records = std::fs::read_dir(&ledger).map(|d| d.count()).unwrap_or(0);
    assert_eq!(records, 1, "only the first seal is accounted for");
}
