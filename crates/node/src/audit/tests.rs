//! Tampering, crash and concurrency tests for the audit trail.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use dossier_bundle::{BundleId, CountryCode, FacilityId, Timestamp};

use super::*;
use crate::error::{ExitClass, NodeError};
use crate::home::NodeHome;

fn now() -> Timestamp {
    Timestamp::parse("2026-11-23T09:00:00Z").unwrap()
}

fn op() -> Operator {
    Operator::new("dr.lee").unwrap()
}

fn send_event(n: u8) -> AuditEvent {
    let bid = BundleId::parse(&format!("{n:02x}").repeat(16)).unwrap();
    AuditEvent::new(AuditAction::Send).bundle(&bid).counterpart(
        &FacilityId::parse("th-bangkok-intl").unwrap(),
        Some(CountryCode::parse("TH").unwrap()),
    )
}

/// A home whose trail holds entries 1..=n.
fn trail(n: u8) -> (tempfile::TempDir, AuditLog) {
    let dir = tempfile::tempdir().unwrap();
    let log = AuditLog::open(&NodeHome::at(dir.path()));
    for i in 1..=n {
        let e = log.append(&op(), &send_event(i), now()).unwrap();
        assert_eq!(e.seq, u64::from(i));
    }
    (dir, log)
}

fn lines(log: &AuditLog) -> Vec<String> {
    fs::read_to_string(log.log_path())
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect()
}

fn write_lines(log: &AuditLog, lines: &[String]) {
    let mut text = lines.join("\n");
    text.push('\n');
    fs::write(log.log_path(), text).unwrap();
}

fn broken(log: &AuditLog) -> TrailBreak {
    match log.verify().unwrap() {
        VerifyReport::Broken(b) => b,
        VerifyReport::Intact(i) => panic!("expected a break, trail is intact: {i:?}"),
    }
}

fn assert_append_refused(log: &AuditLog) {
    let before = fs::read(log.log_path()).unwrap_or_default();
    let err = log.append(&op(), &send_event(99), now()).unwrap_err();
    assert!(matches!(err, NodeError::AuditBroken { .. }), "{err}");
    assert_eq!(err.exit_class(), ExitClass::Verification);
    assert!(err.to_string().contains("dossier audit verify"), "{err}");
    assert_eq!(fs::read(log.log_path()).unwrap_or_default(), before);
}

fn mode(p: &Path) -> u32 {
    fs::metadata(p).unwrap().permissions().mode() & 0o777
}

#[test]
fn fresh_home_gets_a_private_trail_that_verifies() {
    let dir = tempfile::tempdir().unwrap();
    let home = NodeHome::at(dir.path());
    let log = AuditLog::open(&home);
    assert_eq!(log.entries().unwrap(), vec![]);
    assert_eq!(log.head().unwrap(), None);
    assert!(matches!(
        log.verify().unwrap(),
        VerifyReport::Intact(IntactTrail { entries: 0, .. })
    ));

    let e1 = log
        .append(&op(), &AuditEvent::new(AuditAction::Init), now())
        .unwrap();
    assert_eq!((e1.seq, e1.prev.as_str()), (1, GENESIS_HASH));
    let e2 = log.append(&op(), &send_event(1), now()).unwrap();
    assert_eq!((e2.seq, &e2.prev), (2, &e1.hash));

    assert_eq!(mode(&home.audit_dir()), 0o700);
    assert_eq!(mode(&log.log_path()), 0o600);
    assert_eq!(mode(&log.head_path()), 0o600);
    assert_eq!(log.entries().unwrap(), vec![e1, e2.clone()]);
    let head = log.head().unwrap().unwrap();
    assert_eq!((head.seq, &head.hash), (2, &e2.hash));
    assert_eq!(
        log.verify().unwrap(),
        VerifyReport::Intact(IntactTrail {
            entries: 2,
            last: head,
            anchor_behind: false,
        })
    );
}

#[test]
fn edited_entry_is_named() {
    let (_d, log) = trail(5);
    let mut l = lines(&log);
    l[2] = l[2].replace("th-bangkok-intl", "th-phuket-care");
    write_lines(&log, &l);
    let b = broken(&log);
    assert_eq!(
        (b.seq, b.line, &b.problem),
        (Some(3), Some(3), &TrailProblem::Edited)
    );
    assert_eq!(
        b.to_string(),
        "entry 3 (line 3) was edited: its content does not match its hash"
    );
    // The tail still matches, so appends go on; verify keeps reporting the edit.
    log.append(&op(), &send_event(6), now()).unwrap();
    assert_eq!(broken(&log).seq, Some(3));
    assert!(log.entries().unwrap_err().to_string().contains("line 3"));
}

#[test]
fn a_head_held_off_the_node_is_checked() {
    let (_d, log) = trail(3);
    let at_review = log.head().unwrap().unwrap();
    log.append(&op(), &send_event(4), now()).unwrap();
    assert!(log.contains(&at_review).unwrap());
    assert!(
        !log.contains(&AuditHead {
            seq: 3,
            hash: "ab".repeat(32)
        })
        .unwrap()
    );
    assert!(
        !log.contains(&AuditHead {
            seq: 9,
            hash: at_review.hash.clone()
        })
        .unwrap()
    );
    assert!(
        log.contains(&AuditHead {
            seq: 0,
            hash: GENESIS_HASH.into()
        })
        .unwrap()
    );

    // Rewriting history from entry 2 on (all hashes recomputed, anchor rewritten) passes
    // `verify` but not the auditor's copy of the head.
    let mut l = lines(&log);
    let e1: AuditEntry = serde_json::from_str(&l[0]).unwrap();
    let mut prev = e1.hash;
    l.truncate(1);
    for seq in 2..=4u64 {
        let e = AuditEntry::build(seq, &prev, &op(), &send_event(50 + seq as u8), now());
        prev = e.hash.clone();
        l.push(e.to_line());
    }
    write_lines(&log, &l);
    fs::write(
        log.head_path(),
        format!("{{\"format\":\"dossier-audit-head/v1\",\"seq\":4,\"hash\":\"{prev}\"}}"),
    )
    .unwrap();
    assert!(log.verify().unwrap().is_intact());
    assert!(!log.contains(&at_review).unwrap());
}

#[test]
fn removed_middle_entry_is_named() {
    let (_d, log) = trail(5);
    let mut l = lines(&log);
    l.remove(2);
    write_lines(&log, &l);
    let b = broken(&log);
    assert_eq!(
        (b.seq, b.line, &b.problem),
        (Some(3), Some(3), &TrailProblem::OutOfSequence { found: 4 })
    );
}

#[test]
fn reordered_entries_are_named() {
    let (_d, log) = trail(5);
    let mut l = lines(&log);
    l.swap(1, 2);
    write_lines(&log, &l);
    let b = broken(&log);
    assert_eq!(
        (b.seq, b.line, &b.problem),
        (Some(2), Some(2), &TrailProblem::OutOfSequence { found: 3 })
    );
}

#[test]
fn relinked_entry_is_named() {
    // Entry 3 replaced by a well-formed entry 3 that does not chain onto entry 2.
    let (_d, log) = trail(5);
    let mut l = lines(&log);
    let forged = AuditEntry::build(3, &"ab".repeat(32), &op(), &send_event(3), now());
    l[2] = forged.to_line();
    write_lines(&log, &l);
    let b = broken(&log);
    assert_eq!((b.seq, &b.problem), (Some(3), &TrailProblem::BrokenLink));
}

#[test]
fn truncated_last_entry_is_named() {
    let (_d, log) = trail(5);
    let mut l = lines(&log);
    l.pop();
    write_lines(&log, &l);
    let b = broken(&log);
    assert_eq!(
        (b.seq, b.line, &b.problem),
        (Some(5), None, &TrailProblem::Truncated { last: 4 })
    );
    assert!(b.to_string().starts_with("entry 5 is missing"));
    assert_append_refused(&log);

    fs::write(log.log_path(), b"").unwrap();
    assert_eq!(broken(&log).problem, TrailProblem::Truncated { last: 0 });
    assert_append_refused(&log);
}

#[test]
fn truncated_mid_line_is_named() {
    let (_d, log) = trail(5);
    let bytes = fs::read(log.log_path()).unwrap();
    fs::write(log.log_path(), &bytes[..bytes.len() - 40]).unwrap();
    let b = broken(&log);
    assert_eq!(
        (b.seq, b.line, &b.problem),
        (Some(5), Some(5), &TrailProblem::Incomplete)
    );
    assert_append_refused(&log);
}

#[test]
fn deleted_anchor_is_named() {
    let (_d, log) = trail(3);
    fs::remove_file(log.head_path()).unwrap();
    let b = broken(&log);
    assert_eq!(
        (b.seq, b.line, &b.problem),
        (None, None, &TrailProblem::HeadMissing)
    );
    assert_append_refused(&log);

    fs::write(log.head_path(), b"{").unwrap();
    assert_eq!(broken(&log).problem, TrailProblem::HeadUnreadable);
    assert_append_refused(&log);
}

#[test]
fn forged_line_with_bad_hash_is_named() {
    let (_d, log) = trail(5);
    let mut l = lines(&log);
    let last: AuditEntry = serde_json::from_str(&l[4]).unwrap();
    let mut forged = AuditEntry::build(6, &last.hash, &op(), &send_event(6), now());
    forged.hash = "00".repeat(32);
    l.push(forged.to_line());
    write_lines(&log, &l);
    let b = broken(&log);
    assert_eq!(
        (b.seq, b.line, &b.problem),
        (Some(6), Some(6), &TrailProblem::Edited)
    );
    assert_append_refused(&log);
}

#[test]
fn entries_added_past_the_anchor_are_named() {
    let (_d, log) = trail(5);
    let mut l = lines(&log);
    let mut prev = serde_json::from_str::<AuditEntry>(&l[4]).unwrap().hash;
    for seq in 6..=7 {
        let e = AuditEntry::build(seq, &prev, &op(), &send_event(seq as u8), now());
        prev = e.hash.clone();
        l.push(e.to_line());
    }
    write_lines(&log, &l);
    let b = broken(&log);
    assert_eq!(
        (b.seq, &b.problem),
        (Some(6), &TrailProblem::BeyondAnchor { anchored: 5 })
    );
    assert_append_refused(&log);
}

#[test]
fn rewritten_last_entry_with_fresh_hash_is_caught_by_the_anchor() {
    let (_d, log) = trail(5);
    let mut l = lines(&log);
    let e4: AuditEntry = serde_json::from_str(&l[3]).unwrap();
    let rewritten = AuditEntry::build(
        5,
        &e4.hash,
        &op(),
        &send_event(5).outcome(AuditOutcome::Failed),
        now(),
    );
    l[4] = rewritten.to_line();
    write_lines(&log, &l);
    let b = broken(&log);
    assert_eq!(
        (b.seq, b.line, &b.problem),
        (Some(5), Some(5), &TrailProblem::HeadMismatch)
    );
    assert_append_refused(&log);
}

#[test]
fn bad_lines_are_named_without_echoing_them() {
    let (_d, log) = trail(2);
    let mut l = lines(&log);
    l[1] = "subject: MRN-4711 biopsy".into();
    write_lines(&log, &l);
    let b = broken(&log);
    assert_eq!(
        (b.seq, b.problem.clone()),
        (Some(2), TrailProblem::Unparseable)
    );
    assert!(!b.to_string().contains("MRN"));
    let err = log.entries().unwrap_err().to_string();
    assert!(err.contains("line 2") && !err.contains("MRN"), "{err}");

    l[1] = "x".repeat(MAX_LINE_BYTES + 1);
    write_lines(&log, &l);
    assert_eq!(broken(&log).problem, TrailProblem::TooLong);
    assert_append_refused(&log);

    let (_d2, log2) = trail(2);
    let mut l = lines(&log2);
    l[1] = l[1].replacen("\"v\":1", "\"v\":2", 1);
    write_lines(&log2, &l);
    assert_eq!(broken(&log2).problem, TrailProblem::NewerVersion(2));
}

#[test]
fn interrupted_append_is_repaired_by_the_next() {
    // A command stopped after fsyncing its entry but before moving the anchor.
    let (_d, log) = trail(4);
    let old_head = fs::read(log.head_path()).unwrap();
    log.append(&op(), &send_event(5), now()).unwrap();
    fs::write(log.head_path(), &old_head).unwrap();
    match log.verify().unwrap() {
        VerifyReport::Intact(i) => {
            assert_eq!(i.entries, 5);
            assert!(i.anchor_behind);
        }
        VerifyReport::Broken(b) => panic!("{b}"),
    }
    let e = log.append(&op(), &send_event(6), now()).unwrap();
    assert_eq!(e.seq, 6);
    assert_eq!(log.head().unwrap().unwrap().seq, 6);
    assert!(matches!(
        log.verify().unwrap(),
        VerifyReport::Intact(IntactTrail {
            entries: 6,
            anchor_behind: false,
            ..
        })
    ));

    // The same for the very first entry.
    let (_d, log) = trail(0);
    fs::create_dir_all(log.dir()).unwrap();
    log.append(&op(), &send_event(1), now()).unwrap();
    fs::write(
        log.head_path(),
        format!("{{\"format\":\"dossier-audit-head/v1\",\"seq\":0,\"hash\":\"{GENESIS_HASH}\"}}"),
    )
    .unwrap();
    assert_eq!(log.append(&op(), &send_event(2), now()).unwrap().seq, 2);
    assert!(log.verify().unwrap().is_intact());
}

#[test]
fn concurrent_appends_get_distinct_seqs() {
    let (_d, log) = trail(0);
    let threads: Vec<_> = (0..4u8)
        .map(|t| {
            let log = log.clone();
            std::thread::spawn(move || {
                (0..20u8)
                    .map(|i| {
                        let op = Operator::new(&format!("op{t}")).unwrap();
                        log.append(&op, &send_event(t * 20 + i), now()).unwrap().seq
                    })
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    let mut seqs: Vec<u64> = threads
        .into_iter()
        .flat_map(|t| t.join().unwrap())
        .collect();
    seqs.sort_unstable();
    assert_eq!(seqs, (1..=80).collect::<Vec<_>>());
    assert!(matches!(
        log.verify().unwrap(),
        VerifyReport::Intact(IntactTrail { entries: 80, .. })
    ));
}

#[test]
fn entries_hold_no_record_content() {
    // The only free text is `detail`; identifiers are typed. A listing of a realistic
    // trail carries ids, countries, operator and outcome only.
    let (_d, log) = trail(0);
    let ev = send_event(1)
        .outcome(AuditOutcome::Refused)
        .detail("refused: permitted_countries");
    let e = log.append(&op(), &ev, now()).unwrap();
    let line = &lines(&log)[0];
    assert_eq!(line, &e.to_line());
    let v: serde_json::Value = serde_json::from_str(line).unwrap();
    let keys: Vec<&str> = v.as_object().unwrap().keys().map(String::as_str).collect();
    let mut keys = keys;
    keys.sort_unstable();
    assert_eq!(
        keys,
        [
            "action",
            "bundle_id",
            "counterparts",
            "detail",
            "hash",
            "operator",
            "outcome",
            "prev",
            "seq",
            "time",
            "v"
        ]
    );
}
