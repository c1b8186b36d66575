//! The gate on real homes and files (the rules themselves are tested in `policy::check`).

use std::fs;

use dossier_bundle::card::CardDetails;
use dossier_bundle::{CountryCode, FacilityCard, Keyring, PartyKind};
use secrecy::SecretString;

use super::*;
use crate::audit::Operator;
use crate::policy::PolicyRefusal;
use crate::sealing::plan_parts;

const SSN: &str = "999-12-3456";
const PHONE: &str = "+1 555 0100 777";

struct Node {
    _dir: tempfile::TempDir,
    home: NodeHome,
    ring: Keyring,
    card: FacilityCard,
    actor: Actor,
    scratch: PathBuf,
}

fn node(id: &str, country: &str) -> Node {
    let dir = tempfile::tempdir().unwrap();
    let home = NodeHome::at(&dir.path().join("home"));
    let details = CardDetails {
        id: FacilityId::parse(id).unwrap(),
        name: format!("Facility {id}"),
        country: CountryCode::parse(country).unwrap(),
        kind: PartyKind::Facility,
    };
    let pass = SecretString::from("a passphrase for tests");
    let card = crate::identity::init(&home, &details, &pass, Timestamp::now()).unwrap();
    let ring = crate::identity::unlock(&home, &pass).unwrap();
    let actor = Actor::new(&home, Operator::new("tester").unwrap());
    let scratch = dir.path().join("scratch");
    fs::create_dir_all(&scratch).unwrap();
    Node {
        _dir: dir,
        home,
        ring,
        card,
        actor,
        scratch,
    }
}

fn pin(holder: &Node, other: &Node, verified: bool) {
    let mut book = ContactBook::load(&holder.home).unwrap();
    let fp = other.card.fingerprint();
    book.add(
        other.card.clone(),
        holder.card.id(),
        verified.then_some(fp.as_str()),
        Timestamp::now(),
    )
    .unwrap();
    book.save(&holder.home).unwrap();
}

fn opts(to: &Node, kind: BundleKind) -> SealOptions {
    SealOptions {
        to: vec![to.card.id().clone()],
        kind,
        subject: None,
        thread: None,
        patient: Some("MRN-1".into()),
        redacted: false,
        overrides: Vec::new(),
    }
}

fn record(birth: &str) -> Vec<u8> {
    format!(
        r#"{{"resourceType":"Bundle","type":"document","entry":[
{{"fullUrl":"urn:uuid:1","resource":{{"resourceType":"Patient","id":"pt1",
"identifier":[{{"system":"http://hl7.org/fhir/sid/us-ssn","value":"{SSN}"}}],
"name":[{{"family":"Quill","given":["Ada"]}}],
"telecom":[{{"system":"phone","value":"{PHONE}"}}],
"birthDate":"{birth}"}}}},
{{"fullUrl":"urn:uuid:2","resource":{{"resourceType":"Condition","id":"c1",
"subject":{{"reference":"Patient/pt1"}},"code":{{"text":"Asthma"}}}}}}]}}"#
    )
    .into_bytes()
}

fn now() -> Timestamp {
    Timestamp::parse("2026-11-23T09:00:00Z").unwrap()
}

fn audit_lines(n: &Node) -> Vec<serde_json::Value> {
    let text = fs::read_to_string(n.home.audit_dir().join("log.jsonl")).unwrap_or_default();
    text.lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn contains(hay: &[u8], needle: &str) -> bool {
    hay.windows(needle.len()).any(|w| w == needle.as_bytes())
}

#[test]
fn unverified_contacts_get_no_records_and_the_refusal_is_audited() {
    let us = node("us-mercy-intl", "US");
    let th = node("th-bangkok-care", "TH");
    pin(&us, &th, false);
    let file = us.scratch.join("note.txt");
    fs::write(&file, b"hello").unwrap();
    let inputs = [file.clone()];
    let flags = GateFlags::default();
    let mut o = opts(&th, BundleKind::Record);
    let err = prepare(
        &us.home,
        &us.actor,
        AuditAction::Send,
        &mut o,
        &inputs,
        &flags,
        now(),
    )
    .unwrap_err();
    assert!(matches!(
        err,
        NodeError::Policy(PolicyRefusal::UnverifiedContact { .. })
    ));
    let last = audit_lines(&us).pop().unwrap();
    assert_eq!(last["action"], "send");
    assert_eq!(last["outcome"], "refused");
    assert_eq!(last["detail"], "records_require_verified_contact");
    assert_eq!(last["counterparts"][0]["country"], "TH");

    let mut o = opts(&th, BundleKind::Careplan);
    let p = prepare(
        &us.home,
        &us.actor,
        AuditAction::Seal,
        &mut o,
        &inputs,
        &flags,
        now(),
    )
    .unwrap();
    assert_eq!(p.inputs(), &inputs);
    assert!(!o.redacted && o.overrides.is_empty());
}

#[test]
fn a_minors_record_abroad_needs_redaction_or_a_reason() {
    let us = node("us-mercy-intl", "US");
    let th = node("th-bangkok-care", "TH");
    let home_peer = node("us-st-jude", "US");
    pin(&us, &th, true);
    pin(&us, &home_peer, true);
    let file = us.scratch.join("ips.json");
    fs::write(&file, record("2011-03-14")).unwrap();
    let inputs = [file.clone()];

    // Refused abroad; fine at home (the file is not even read then).
    let mut o = opts(&th, BundleKind::Record);
    let err = prepare(
        &us.home,
        &us.actor,
        AuditAction::Seal,
        &mut o,
        &inputs,
        &GateFlags::default(),
        now(),
    )
    .unwrap_err();
    assert!(
        matches!(err, NodeError::Policy(PolicyRefusal::MinorAbroad { .. })),
        "{err}"
    );
    assert_eq!(err.exit_class(), crate::ExitClass::PolicyRefused);
    let mut o = opts(&home_peer, BundleKind::Record);
    prepare(
        &us.home,
        &us.actor,
        AuditAction::Seal,
        &mut o,
        &inputs,
        &GateFlags::default(),
        now(),
    )
    .unwrap();
    // An adult's record goes.
    let adult = us.scratch.join("adult.json");
    fs::write(&adult, record("1972-05-01")).unwrap();
    let mut o = opts(&th, BundleKind::Record);
    prepare(
        &us.home,
        &us.actor,
        AuditAction::Seal,
        &mut o,
        &[adult],
        &GateFlags::default(),
        now(),
    )
    .unwrap();

    // With a reason: allowed, audited, marked.
    let flags = GateFlags {
        redact_identifiers: false,
        allow_minor_reason: Some("surgery abroad arranged by guardian".into()),
    };
    let mut o = opts(&th, BundleKind::Record);
    let p = prepare(
        &us.home,
        &us.actor,
        AuditAction::Seal,
        &mut o,
        &inputs,
        &flags,
        now(),
    )
    .unwrap();
    assert_eq!(p.inputs(), &inputs);
    assert_eq!(o.overrides.len(), 1);
    assert!(o.overrides[0].contains("surgery abroad arranged by guardian"));
    let last = audit_lines(&us).pop().unwrap();
    assert_eq!(last["action"], "policy_override");
    assert_eq!(
        last["detail"],
        "minors: surgery abroad arranged by guardian"
    );
    assert_eq!(last["counterparts"][0]["id"], "th-bangkok-care");

    // A blank reason is a usage error, not audited as a refusal.
    let before = audit_lines(&us).len();
    let flags = GateFlags {
        redact_identifiers: false,
        allow_minor_reason: Some("  ".into()),
    };
    let mut o = opts(&th, BundleKind::Record);
    let err = prepare(
        &us.home,
        &us.actor,
        AuditAction::Seal,
        &mut o,
        &inputs,
        &flags,
        now(),
    )
    .unwrap_err();
    assert_eq!(err.exit_class(), crate::ExitClass::Usage);
    assert_eq!(audit_lines(&us).len(), before);
}

#[test]
fn redaction_replaces_fhir_parts_keeps_names_and_stores_the_table_encrypted() {
    let us = node("us-mercy-intl", "US");
    let th = node("th-bangkok-care", "TH");
    pin(&us, &th, true);
    let dir = us.scratch.join("records");
    fs::create_dir_all(dir.join("imaging")).unwrap();
    fs::write(dir.join("ips.json"), record("2011-03-14")).unwrap();
    fs::write(dir.join("imaging/scan.dcm"), vec![7u8; 10_000]).unwrap();
    let lone = us.scratch.join("summary.json");
    fs::write(&lone, record("2011-03-14")).unwrap();
    let letter = us.scratch.join("letter.txt");
    fs::write(&letter, format!("call {PHONE}")).unwrap();
    let inputs = [dir.clone(), lone.clone(), letter.clone()];

    let flags = GateFlags {
        redact_identifiers: true,
        allow_minor_reason: None,
    };
    let mut o = opts(&th, BundleKind::Record);
    let mut p = prepare(
        &us.home,
        &us.actor,
        AuditAction::Seal,
        &mut o,
        &inputs,
        &flags,
        now(),
    )
    .unwrap();
    assert!(o.redacted);
    assert!(o.overrides.is_empty());
    assert_eq!(p.fhir_parts(), 2);

    let names = |inputs: &[PathBuf]| -> Vec<(String, String)> {
        plan_parts(inputs)
            .unwrap()
            .iter()
            .map(|x| {
                (
                    x.source.path.as_str().to_owned(),
                    x.source.media_type.clone(),
                )
            })
            .collect()
    };
    assert_eq!(
        names(p.inputs()),
        names(&inputs),
        "same part names and types"
    );
    assert_eq!(p.inputs()[2], letter, "inputs without FHIR pass through");
    let work = p.inputs()[0]
        .parent()
        .unwrap()
        .parent()
        .unwrap()
        .to_path_buf();
    assert!(work.starts_with(us.home.redacting_dir()));
    for sub in p.inputs()[..2].iter() {
        assert!(sub.starts_with(&work));
    }
    let copy = fs::read(p.inputs()[0].join("ips.json")).unwrap();
    let pseudonym = p.pseudonym().unwrap().to_owned();
    assert!(!contains(&copy, SSN) && !contains(&copy, PHONE));
    assert!(contains(&copy, &pseudonym));
    assert_eq!(
        fs::read(p.inputs()[0].join("imaging/scan.dcm")).unwrap(),
        vec![7u8; 10_000]
    );
    assert!(!contains(&fs::read(&p.inputs()[1]).unwrap(), SSN));
    assert!(
        p.notes().iter().any(|n| n.contains("2 other part(s)")),
        "{:?}",
        p.notes()
    );

    // The table: encrypted, private, readable by this node's keyring only.
    let table_path = p.relink_path().unwrap().to_path_buf();
    assert_eq!(table_path, RelinkTable::path(&us.home, &pseudonym));
    let raw = fs::read(&table_path).unwrap();
    assert!(raw.starts_with(b"age-encryption.org/v1\n"));
    assert!(!contains(&raw, SSN) && !contains(&raw, PHONE));
    p.bind_bundle(&us.home, "0123456789abcdef0123456789abcdef")
        .unwrap();
    let t = RelinkTable::load(&us.home, &us.ring, &pseudonym).unwrap();
    assert_eq!(
        t.bundle_id.as_deref(),
        Some("0123456789abcdef0123456789abcdef")
    );
    assert_eq!(t.parts.len(), 2);
    assert_eq!(t.parts[0].part, "records/ips.json");
    assert!(t.parts[0].removed.iter().any(|i| i.value.contains(SSN)));
    assert!(t.parts[0].removed.iter().any(|i| i.value.contains(PHONE)));

    // The originals are untouched, and the copies go with the Prepared.
    assert!(contains(&fs::read(dir.join("ips.json")).unwrap(), SSN));
    drop(p);
    assert!(!work.exists());
    assert!(table_path.exists(), "the table stays");
}

#[test]
fn a_record_that_cannot_be_de_identified_is_refused_without_naming_it() {
    let us = node("us-mercy-intl", "US");
    let th = node("th-bangkok-care", "TH");
    pin(&us, &th, true);
    // The SSN also sits in a kept element: redaction cannot make this safe.
    let mut text = String::from_utf8(record("1972-05-01")).unwrap();
    text = text.replace(
        "\"code\":{\"text\":\"Asthma\"}",
        &format!("\"code\":{{\"text\":\"Asthma {SSN}\"}}"),
    );
    let file = us.scratch.join("maria-lopez.json");
    fs::write(&file, text).unwrap();
    let flags = GateFlags {
        redact_identifiers: true,
        allow_minor_reason: None,
    };
    let mut o = opts(&th, BundleKind::Record);
    let err = prepare(
        &us.home,
        &us.actor,
        AuditAction::Seal,
        &mut o,
        &[file],
        &flags,
        now(),
    )
    .unwrap_err();
    let msg = err.to_string();
    assert!(msg.contains("review it by hand"), "{msg}");
    assert!(!msg.contains(SSN), "{msg}");
    assert!(!us.home.relink_dir().exists());
    assert!(!o.redacted);
}
