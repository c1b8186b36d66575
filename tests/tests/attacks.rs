//! Forgery and misuse: a table of attacks, each run against the real `dossier` binary (and,
//! for the relay rows, a real `dossier-relay` whose operator edits its own store). Every row
//! asserts the exit code docs/protocol.md §12 documents for it and that nothing was released:
//! no output directory, no staging directory, no file outside the output directory, no
//! inbox entry where the attack aims at the inbox, and no subject, patient reference or part
//! name in the error output.
//!
//! Malicious bundles are built by hand from the library's public types, the `tar` layout
//! written header by header and the `age` crate (`dossier_tests::attacks`), signed with the
//! attacking node's own key read from its keyring, so each one is exactly the attack named
//! and is refused for that reason (each error message is checked). `control_*` tests show
//! the same construction without the attack is accepted.
//!
//! The table (`TABLE`) is also listed in docs/threat-model.md §7;
//! `the_threat_model_lists_every_row` keeps the two in step.

use std::fs;
use std::path::{Path, PathBuf};

use dossier_bundle::limits::{MAX_PART_BYTES, MAX_PARTS};
use dossier_bundle::{FacilityId, Manifest, PartyRef, Timestamp};
use dossier_tests::attacks::*;
use dossier_tests::*;
use serde_json::Value;

/// Declares each attack once: the table row (test name, documented exit code) and the
/// `#[test]` that runs it with that code.
macro_rules! attacks {
    ($($(#[doc = $doc:literal])* $name:ident => $code:expr, $run:path;)*) => {
        /// Every attack: its test name and the exit code docs/protocol.md §12 gives for it.
        const TABLE: &[(&str, i32)] = &[$((stringify!($name), $code)),*];
        $(
            $(#[doc = $doc])*
            #[test]
            fn $name() {
                $run($code)
            }
        )*
    };
}

attacks! {
    /// Opening the same bundle file twice: both open (offline replay is not detected,
    /// threat model §4.3) and no inbox entry is made by either.
    replayed_file_opened_twice_offline => EXIT_OK, replay_offline;
    /// The relay operator restores a backup: an acknowledged bundle is listed again. It is
    /// acknowledged as a duplicate, never filed twice (§15.5).
    replayed_through_relay_from_backup => EXIT_OK, replay_through_relay;
    /// The relay serves an older bundle's ciphertext (valid, same sender) under a new
    /// bundle's listing: quarantined (signed id differs), not opened, sender alerted.
    relay_serves_old_bundle_as_new => EXIT_VERIFICATION, relay_serves_old_bundle;
    /// The relay substitutes damaged ciphertext and lists its hash: quarantined, `rejected`
    /// receipt naming what was received, the sender sees the substitution.
    relay_substitutes_ciphertext => EXIT_VERIFICATION, relay_substitutes;
    /// The relay swaps the body but not the listing: the fresh download differs from the
    /// listing, is quarantined, `rejected` receipt, the sender sees the substitution.
    relay_swaps_body_not_listing => EXIT_VERIFICATION, relay_swaps_body_only;
    /// A recipient decrypts and re-encrypts the signed container to a third party.
    forwarded_to_third_party => EXIT_VERIFICATION, forwarded_to_third_party_run;
    /// The same, with the third party written into the signed recipient list.
    forwarded_with_recipients_rewritten => EXIT_VERIFICATION, forwarded_rewritten;
    /// Manifest and signature of one bundle put on another's parts (same sender).
    manifest_swapped_between_bundles => EXIT_VERIFICATION, manifest_swap;
    /// A delivery receipt whose signature was altered on the relay.
    receipt_forged => EXIT_OK, receipt_forged_run;
    /// A genuine receipt for another bundle listed for this one (replayed).
    receipt_replayed_for_other_bundle => EXIT_OK, receipt_replayed;
    /// A pinned facility signs with its own key but claims another pinned facility's id.
    impersonation_of_pinned_facility => EXIT_PIN_MISMATCH, impersonate_pinned;
    /// A pinned facility signs with its own key claiming to be the reader itself.
    impersonation_of_the_reader => EXIT_PIN_MISMATCH, impersonate_reader;
    /// A facility signs claiming an id the reader never pinned.
    impersonation_of_unpinned_facility => EXIT_UNKNOWN_SENDER, impersonate_unpinned;
    /// An enrolled facility deposits, through the relay, a bundle claiming another id.
    impersonation_through_relay => EXIT_VERIFICATION, impersonate_through_relay;
    /// A node that is not the facility authenticates to the relay under its id.
    relay_login_as_other_facility => EXIT_ERROR, relay_login_as_other;
    /// A signed manifest announcing a part over `MAX_PART_BYTES`.
    oversize_part_in_manifest => EXIT_VERIFICATION, oversize_part;
    /// A tar header announcing an 8 GiB part over a few bytes of data.
    oversize_tar_size_claim => EXIT_VERIFICATION, oversize_tar_claim;
    /// A `manifest.json` entry announcing more than `MAX_MANIFEST_BYTES`.
    oversize_manifest_entry => EXIT_VERIFICATION, oversize_manifest;
    /// One MiB of zeros after the end of the archive (over `MAX_TRAILING_PADDING`).
    zero_padding_bomb => EXIT_VERIFICATION, padding_bomb;
    /// 10,001 parts (over `MAX_PARTS`).
    too_many_parts => EXIT_VERIFICATION, too_many_parts_run;
    /// A part entry named `parts/../…`.
    tar_path_traversal_dotdot => EXIT_VERIFICATION, traversal_dotdot;
    /// A part entry with an absolute name.
    tar_path_absolute => EXIT_VERIFICATION, traversal_absolute;
    /// A pax header renaming a part to `parts/../…`.
    tar_path_traversal_pax => EXIT_VERIFICATION, traversal_pax;
    /// A symbolic link entry, then a part written through it.
    tar_symlink_then_file_through_it => EXIT_VERIFICATION, symlink_then_file;
    /// A hard link entry to a file outside.
    tar_hardlink => EXIT_VERIFICATION, hardlink;
    /// Two parts with the same name.
    duplicate_part_names => EXIT_VERIFICATION, duplicate_parts;
    /// Two parts whose names differ only in case.
    duplicate_part_names_case => EXIT_VERIFICATION, duplicate_parts_case;
    /// An age header with 10,000 recipient stanzas.
    header_with_10000_recipients => EXIT_VERIFICATION, header_10000;
    /// A signed manifest listing 10,000 recipients.
    manifest_with_10000_recipients => EXIT_VERIFICATION, manifest_10000;
    /// A sender clock 30 days behind: accepted, the claimed time shown as is (§2).
    clock_backdated_30_days => EXIT_OK, clock_backdated;
    /// A sender clock 30 days ahead: accepted, the claimed time shown as is (§2).
    clock_forward_dated_30_days => EXIT_OK, clock_forward_dated;
}

const RECORDS: &str = "cardiology-referral-k7";
const PART_A: &str = "notes/discharge-summary-zq.txt";
const PART_B: &str = "ips-minimal.json";
const DAY: i64 = 24 * 60 * 60;

// ---------------------------------------------------------------------------------------
// Offline: a coordinator and a clinic pinned both ways; a stranger when a row needs one.

struct World {
    lab: Lab,
    coordinator: Node,
    clinic: Node,
    sender: Insider,
    clinic_card: dossier_bundle::FacilityCard,
    part_a: Vec<u8>,
    part_b: Vec<u8>,
}

impl World {
    fn new() -> Self {
        let lab = Lab::new();
        let coordinator = lab.coordinator();
        let clinic = lab.clinic();
        coordinator.pin_both_ways(&clinic);
        let sender = Insider::of(&coordinator);
        let clinic_card = card_of(&clinic);
        World {
            lab,
            coordinator,
            clinic,
            sender,
            clinic_card,
            part_a: pseudo_random_bytes(0xA77, 3000),
            part_b: ips_sample().unwrap_or_else(synthetic_fhir_json),
        }
    }

    /// A stranger that pinned the coordinator (verified), but that nobody sends to.
    fn stranger(&self) -> Node {
        let stranger = self.lab.stranger();
        stranger.pin(&self.coordinator, true);
        stranger
    }

    fn parts(&self) -> Vec<(&str, &[u8])> {
        vec![(PART_A, &self.part_a), (PART_B, &self.part_b)]
    }

    /// An honest manifest from the coordinator to the clinic.
    fn manifest(&self, created_at: Timestamp) -> Manifest {
        manifest_for(
            self.sender.party(),
            vec![party(&self.clinic_card)],
            &self.parts(),
            created_at,
        )
    }

    /// The honest container entries for [`World::manifest`].
    fn honest_entries(&self) -> Vec<RawEntry> {
        self.sender
            .signed_entries(&self.manifest(Timestamp::now()), &self.parts())
    }

    /// Encrypts a container to the clinic and the coordinator, as `seal` would.
    fn to_clinic(&self, container: &[u8]) -> Vec<u8> {
        encrypt_to(
            &[
                self.clinic_card.age_recipient_key(),
                self.sender.card.age_recipient_key(),
            ],
            container,
        )
    }

    /// Seals `records` (a fresh copy with `seed`) with the real binary, to the clinic.
    fn sealed_by_binary(&self, seed: u64) -> PathBuf {
        let outgoing = self.lab.fresh_dir("outgoing");
        let records = make_records(&outgoing, RECORDS, 20_000, seed);
        let bundle = self.lab.fresh_path("sealed").with_extension("dossier");
        self.coordinator
            .seal(&[CLINIC_ID], &PHI.seal_args(), &bundle, &[&records]);
        bundle
    }

    fn protected(&self) -> Vec<&'static str> {
        let mut p = protected_strings(RECORDS);
        p.extend(["discharge-summary-zq", PART_B]);
        p
    }

    /// `node` opens `bytes`: asserts exit `code`, the JSON error names `reason`, nothing is
    /// released, nothing escaped into the lab, and no protected text is printed.
    #[track_caller]
    fn refused(&self, node: &Node, bytes: &[u8], code: i32, reason: &str) -> Outcome {
        let file = self.lab.fresh_path("attack").with_extension("dossier");
        fs::write(&file, bytes).unwrap();
        let out = self.lab.fresh_path("out");
        let o = node.open(&file, &out);
        assert_eq!(o.code, code, "expected exit {code}\n{}", o.describe());
        let err: Value = serde_json::from_str(o.stderr.trim())
            .unwrap_or_else(|e| panic!("stderr is one JSON error ({e})\n{}", o.describe()));
        assert_eq!(err["exit_code"], code, "{}", o.describe());
        let message = err["error"].as_str().unwrap_or_default();
        assert!(
            message.contains(reason),
            "the error should say {reason:?}\n{}",
            o.describe()
        );
        assert!(o.stdout.trim().is_empty(), "{}", o.describe());
        assert_nothing_released(&out);
        assert!(!out.exists(), "no output directory is created");
        assert_no_escape(self.lab.path());
        assert_no_phi(&o, &self.protected());
        assert!(
            inbox_ids(node).is_empty(),
            "opening a file makes no inbox entry"
        );
        o
    }

    /// `node` opens `bytes` successfully; returns the JSON report.
    fn opens(&self, node: &Node, bytes: &[u8]) -> Value {
        let file = self.lab.fresh_path("honest").with_extension("dossier");
        fs::write(&file, bytes).unwrap();
        let out = self.lab.fresh_path("out");
        let o = node.open(&file, &out);
        o.ok();
        let tree = tree_digests(&out);
        assert_eq!(tree.get(PART_A), Some(&sha256_hex(&self.part_a)));
        assert_eq!(tree.get(PART_B), Some(&sha256_hex(&self.part_b)));
        o.json()
    }

    /// The clinic's age identity (from `key export-age`), to decrypt what it received.
    fn clinic_identity(&self) -> age::x25519::Identity {
        read_age_identities(&self.clinic.export_age_identity()).remove(0)
    }
}

/// Name every escape attempt uses for the file it tries to create outside the output.
const ESCAPED: &str = "escaped-by-attack";

/// No file whose name starts with [`ESCAPED`] exists anywhere under `root`.
fn assert_no_escape(root: &Path) {
    fn walk(dir: &Path) {
        for e in fs::read_dir(dir).unwrap().flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            assert!(
                !name.starts_with(ESCAPED),
                "{} was written outside the output directory",
                e.path().display()
            );
            if e.file_type().unwrap().is_dir() {
                walk(&e.path());
            }
        }
    }
    walk(root);
}

fn inbox_ids(node: &Node) -> Vec<String> {
    node.inbox()
        .iter()
        .map(|i| i["bundle_id"].as_str().unwrap_or_default().to_owned())
        .collect()
}

#[test]
fn control_hand_built_bundle_opens() {
    let w = World::new();
    let m = w.manifest(Timestamp::now());
    let bytes = w.to_clinic(&container(&w.sender.signed_entries(&m, &w.parts()), 0));
    let report = w.opens(&w.clinic, &bytes);
    assert_eq!(report["bundle_id"], m.bundle_id.as_str());
    assert_eq!(report["from"], COORDINATOR_ID);
}

fn replay_offline(code: i32) {
    let w = World::new();
    let bundle = w.sealed_by_binary(1);
    for _ in 0..2 {
        let out = w.lab.fresh_path("out");
        w.clinic.open(&bundle, &out).code(code);
        assert!(!tree_digests(&out).is_empty());
    }
    assert!(
        inbox_ids(&w.clinic).is_empty(),
        "files never enter the inbox"
    );
}

fn forwarded_to_third_party_run(code: i32) {
    let w = World::new();
    let stranger = w.stranger();
    let bundle = fs::read(w.sealed_by_binary(2)).unwrap();
    let plaintext = age_decrypt(&w.clinic_identity(), &bundle);
    let stranger_key = read_age_identities(&stranger.export_age_identity()).remove(0);
    let forwarded = age_encrypt(&stranger_key.to_public(), &plaintext);
    w.refused(&stranger, &forwarded, code, "does not name this node");
}

fn forwarded_rewritten(code: i32) {
    let w = World::new();
    let stranger = w.stranger();
    let stranger_card = card_of(&stranger);
    let bundle = fs::read(w.sealed_by_binary(3)).unwrap();
    let mut entries = read_tar(&age_decrypt(&w.clinic_identity(), &bundle));
    let m = entries
        .iter_mut()
        .find(|e| e.name == "manifest.json")
        .unwrap();
    let text = String::from_utf8(m.data.clone()).unwrap();
    let clinic = serde_json::to_string(&party(&w.clinic_card)).unwrap();
    let replaced = serde_json::to_string(&party(&stranger_card)).unwrap();
    assert!(text.contains(&clinic));
    m.data = text.replace(&clinic, &replaced).into_bytes();
    let forwarded = encrypt_to(&[stranger_card.age_recipient_key()], &write_tar(&entries));
    w.refused(&stranger, &forwarded, code, "signature does not verify");
}

fn manifest_swap(code: i32) {
    let w = World::new();
    let identity = w.clinic_identity();
    let first = read_tar(&age_decrypt(
        &identity,
        &fs::read(w.sealed_by_binary(4)).unwrap(),
    ));
    let second = read_tar(&age_decrypt(
        &identity,
        &fs::read(w.sealed_by_binary(5)).unwrap(),
    ));
    assert_eq!(first.len(), second.len());
    let mut swapped = first.clone();
    let n = swapped.len();
    swapped[n - 2] = second[n - 2].clone();
    swapped[n - 1] = second[n - 1].clone();
    // Control: the second bundle's own manifest and signature verify on its own parts.
    let honest = w.lab.fresh_path("honest-second");
    fs::write(&honest, w.to_clinic(&write_tar(&second))).unwrap();
    w.clinic.open(&honest, &w.lab.fresh_path("honest-out")).ok();
    w.refused(
        &w.clinic,
        &w.to_clinic(&write_tar(&swapped)),
        code,
        "does not match its signed manifest entry",
    );
}

fn impersonate_pinned(code: i32) {
    let w = World::new();
    let stranger = w.stranger();
    w.clinic.pin(&stranger, true);
    let attacker = Insider::of(&stranger);
    let m = manifest_for(
        attacker.party_as(COORDINATOR_ID),
        vec![party(&w.clinic_card)],
        &w.parts(),
        Timestamp::now(),
    );
    let bytes = w.to_clinic(&container(&attacker.signed_entries(&m, &w.parts()), 0));
    let o = w.refused(
        &w.clinic,
        &bytes,
        code,
        "claims to be from us-mercy-intl but is signed with key",
    );
    // The stranger's own id, honestly claimed, opens: the refusal is the impersonation.
    let m = manifest_for(
        attacker.party(),
        vec![party(&w.clinic_card)],
        &w.parts(),
        Timestamp::now(),
    );
    w.opens(
        &w.clinic,
        &w.to_clinic(&container(&attacker.signed_entries(&m, &w.parts()), 0)),
    );
    assert!(o.stderr.contains(&attacker.card.fingerprint().to_string()));
}

fn impersonate_reader(code: i32) {
    let w = World::new();
    let attacker = Insider::of(&w.coordinator);
    let m = manifest_for(
        attacker.party_as(CLINIC_ID),
        vec![party(&w.clinic_card)],
        &w.parts(),
        Timestamp::now(),
    );
    let bytes = w.to_clinic(&container(&attacker.signed_entries(&m, &w.parts()), 0));
    w.refused(
        &w.clinic,
        &bytes,
        code,
        "claims to be from th-bangkok-care but is signed with key",
    );
}

fn impersonate_unpinned(code: i32) {
    let w = World::new();
    let attacker = Insider::of(&w.stranger());
    let m = manifest_for(
        attacker.party_as("in-apollo-chennai"),
        vec![party(&w.clinic_card)],
        &w.parts(),
        Timestamp::now(),
    );
    let bytes = w.to_clinic(&container(&attacker.signed_entries(&m, &w.parts()), 0));
    w.refused(
        &w.clinic,
        &bytes,
        code,
        "in-apollo-chennai is not one of your contacts",
    );
}

fn oversize_part(code: i32) {
    let w = World::new();
    let mut m = w.manifest(Timestamp::now());
    m.parts[0].length = MAX_PART_BYTES + 1;
    let bytes = w.to_clinic(&container(&w.sender.signed_entries(&m, &w.parts()), 0));
    w.refused(&w.clinic, &bytes, code, "manifest is invalid");
}

fn oversize_tar_claim(code: i32) {
    let w = World::new();
    let mut entries = w.honest_entries();
    entries[0].declared_size = Some(MAX_PART_BYTES);
    w.refused(
        &w.clinic,
        &w.to_clinic(&container(&entries, 0)),
        code,
        "tampered",
    );
}

fn oversize_manifest(code: i32) {
    let w = World::new();
    let mut entries = w.honest_entries();
    let n = entries.len();
    entries[n - 2].declared_size = Some(4 * 1024 * 1024 + 1);
    w.refused(
        &w.clinic,
        &w.to_clinic(&container(&entries, 0)),
        code,
        "manifest larger than the limit",
    );
}

fn padding_bomb(code: i32) {
    let w = World::new();
    let bytes = w.to_clinic(&container(&w.honest_entries(), 1024 * 1024));
    w.refused(
        &w.clinic,
        &bytes,
        code,
        "data after the end of the container",
    );
}

fn too_many_parts_run(code: i32) {
    let w = World::new();
    let names: Vec<String> = (0..=MAX_PARTS).map(|i| format!("p/{i:05}.txt")).collect();
    let parts: Vec<(&str, &[u8])> = names.iter().map(|n| (n.as_str(), &b""[..])).collect();
    let m = manifest_for(
        w.sender.party(),
        vec![party(&w.clinic_card)],
        &parts,
        Timestamp::now(),
    );
    let bytes = w.to_clinic(&container(&w.sender.signed_entries(&m, &parts), 0));
    w.refused(
        &w.clinic,
        &bytes,
        code,
        "more than the allowed number of parts",
    );
}

/// The honest entries with part 0 renamed to `name`.
fn renamed_part(w: &World, name: &str) -> Vec<u8> {
    let mut entries = w.honest_entries();
    entries[0].name = name.as_bytes().to_vec();
    w.to_clinic(&container(&entries, 0))
}

fn traversal_dotdot(code: i32) {
    let w = World::new();
    let bytes = renamed_part(&w, &format!("parts/../{ESCAPED}-dotdot.txt"));
    w.refused(&w.clinic, &bytes, code, "part path #0 is not allowed");
}

fn traversal_absolute(code: i32) {
    let w = World::new();
    let target = w.lab.path().join(format!("{ESCAPED}-abs.txt"));
    let bytes = renamed_part(&w, target.to_str().unwrap());
    w.refused(&w.clinic, &bytes, code, "unexpected entry in the container");
    let bytes = renamed_part(&w, &format!("parts/{}", target.display()));
    w.refused(&w.clinic, &bytes, code, "part path #0 is not allowed");
}

fn traversal_pax(code: i32) {
    let w = World::new();
    let mut entries = w.honest_entries();
    entries.insert(
        0,
        RawEntry::pax_path(&format!("parts/../{ESCAPED}-pax.txt")),
    );
    w.refused(
        &w.clinic,
        &w.to_clinic(&container(&entries, 0)),
        code,
        "part path #0 is not allowed",
    );
}

fn symlink_then_file(code: i32) {
    let w = World::new();
    let outside = w.lab.fresh_dir("outside");
    let mut entries = w.honest_entries();
    // `parts/notes` → a directory outside, then PART_A (`notes/…`) written through it.
    entries.insert(
        0,
        RawEntry::link("parts/notes", b'2', outside.to_str().unwrap()),
    );
    w.refused(
        &w.clinic,
        &w.to_clinic(&container(&entries, 0)),
        code,
        "not a regular file",
    );
    assert_eq!(fs::read_dir(&outside).unwrap().count(), 0);
    // A symlink as the part itself.
    let mut entries = w.honest_entries();
    entries[1] = RawEntry::link(&format!("parts/{PART_B}"), b'2', "/etc/passwd");
    w.refused(
        &w.clinic,
        &w.to_clinic(&container(&entries, 0)),
        code,
        "not a regular file",
    );
}

fn hardlink(code: i32) {
    let w = World::new();
    let mut entries = w.honest_entries();
    entries.insert(
        1,
        RawEntry::link(&format!("parts/{ESCAPED}-hard"), b'1', "/etc/passwd"),
    );
    w.refused(
        &w.clinic,
        &w.to_clinic(&container(&entries, 0)),
        code,
        "not a regular file",
    );
}

/// A signed bundle whose two parts are named `a` and `b`.
fn two_named_parts(w: &World, a: &str, b: &str) -> Vec<u8> {
    let m = {
        let mut m = w.manifest(Timestamp::now());
        m.parts[0].path = dossier_bundle::PartPath::parse(a, 0).unwrap();
        m.parts[1].path = dossier_bundle::PartPath::parse(b, 1).unwrap();
        m
    };
    let parts = [(a, &w.part_a[..]), (b, &w.part_b[..])];
    w.to_clinic(&container(&w.sender.signed_entries(&m, &parts), 0))
}

fn duplicate_parts(code: i32) {
    let w = World::new();
    let bytes = two_named_parts(&w, "report.txt", "report.txt");
    w.refused(&w.clinic, &bytes, code, "manifest is invalid");
}

fn duplicate_parts_case(code: i32) {
    let w = World::new();
    let bytes = two_named_parts(&w, "Report.TXT", "report.txt");
    w.refused(&w.clinic, &bytes, code, "manifest is invalid");
}

fn header_10000(code: i32) {
    let w = World::new();
    let mut recipients: Vec<age::x25519::Recipient> = (1..10_000)
        .map(|_| age::x25519::Identity::generate().to_public())
        .collect();
    recipients.push(w.clinic_card.age_recipient_key());
    let bytes = encrypt_to(&recipients, &container(&w.honest_entries(), 0));
    w.refused(&w.clinic, &bytes, code, "header is larger than 65536 bytes");
}

fn manifest_10000(code: i32) {
    let w = World::new();
    let mut m = w.manifest(Timestamp::now());
    let key = w.sender.card.key_id();
    m.recipients.extend((1..10_000).map(|i| PartyRef {
        id: FacilityId::parse(&format!("r-{i:05}")).unwrap(),
        key,
    }));
    let bytes = w.to_clinic(&container(&w.sender.signed_entries(&m, &w.parts()), 0));
    w.refused(&w.clinic, &bytes, code, "manifest is invalid");
}

/// A bundle sealed at `now + offset` opens, and the report shows the claimed time as is.
fn clock_skewed(code: i32, offset: i64) {
    let w = World::new();
    let claimed = Timestamp::from_unix(Timestamp::now().unix() + offset).unwrap();
    let m = w.manifest(claimed);
    let file = w.lab.fresh_path("skewed");
    fs::write(
        &file,
        w.to_clinic(&container(&w.sender.signed_entries(&m, &w.parts()), 0)),
    )
    .unwrap();
    let o = w.clinic.open(&file, &w.lab.fresh_path("out"));
    o.code(code);
    assert_eq!(o.json()["created_at"], claimed.to_string());
}

fn clock_backdated(code: i32) {
    clock_skewed(code, -30 * DAY);
}

fn clock_forward_dated(code: i32) {
    clock_skewed(code, 30 * DAY);
}

// ---------------------------------------------------------------------------------------
// Through a real relay: the three-party cast; the operator edits its stopped relay.

fn note(lab: &Lab, text: &str) -> PathBuf {
    let path = lab.fresh_dir("in").join("note.txt");
    write_file(&path, text.as_bytes());
    path
}

fn send_note(c: &Cast, text: &str) -> String {
    let sent = c.coordinator.send(
        &[CLINIC_ID],
        &PHI.seal_args(),
        &[note(&c.lab, text).as_path()],
    );
    assert_eq!(sent["state"], "accepted", "{sent}");
    sent["bundle_id"].as_str().unwrap().to_owned()
}

fn restart(c: &mut Cast) {
    c.relay.start();
    for n in [&c.coordinator, &c.clinic, &c.patient] {
        n.use_relay(&c.relay);
    }
}

fn list(summary: &Value, key: &str) -> Vec<Value> {
    summary[key].as_array().cloned().unwrap_or_default()
}

fn entries_for<'a>(items: &'a [Value], id: &str) -> Vec<&'a Value> {
    items.iter().filter(|v| v["bundle_id"] == id).collect()
}

/// `open ID` at `node` is refused with `code` and releases nothing.
fn open_id_refused(c: &Cast, node: &Node, id: &str, code: i32) {
    let out = c.lab.fresh_path("out");
    let o = node.run(&["open", id, "-o", out.to_str().unwrap(), "--json"]);
    o.code(code);
    assert_nothing_released(&out);
    assert_no_phi(&o, &[PHI.subject, PHI.patient, PHI.thread]);
}

/// After the clinic quarantined `id`: it is listed once, quarantined, and does not open;
/// the coordinator's next sync raises the substitution alert and does not count it as
/// delivered.
fn assert_quarantined_and_alerted(c: &Cast, id: &str, code: i32) {
    let inbox = c.clinic.inbox();
    let items = entries_for(&inbox, id);
    assert_eq!(items.len(), 1, "{inbox:?}");
    assert_eq!(items[0]["quarantined"], true, "{inbox:?}");
    let reason = items[0]["reason"].to_string();
    for secret in [PHI.subject, PHI.patient, PHI.thread] {
        assert!(!reason.contains(secret), "no PHI in the reason: {reason}");
    }
    open_id_refused(c, &c.clinic, id, code);
    let summary = c.coordinator.sync();
    assert!(
        list(&summary, "warnings")
            .iter()
            .any(|w| w.as_str().unwrap_or("").contains("ALERT")),
        "{summary}"
    );
    let status = c.coordinator.status(id);
    let r = &status["recipients"][0];
    assert_eq!(r["id"], CLINIC_ID);
    assert!(
        r["alert"]
            .as_str()
            .is_some_and(|a| a.contains("substituted")),
        "{status}"
    );
    assert_ne!(r["state"], "delivered", "{status}");
}

fn replay_through_relay(code: i32) {
    let mut c = Cast::start();
    let id = send_note(&c, "replay me");
    c.relay.stop();
    let backup = c.lab.fresh_path("relay-backup");
    copy_tree(&c.relay.data, &backup);
    restart(&mut c);
    assert_eq!(
        list(&c.clinic.sync(), "received").len(),
        1,
        "first delivery"
    );
    c.coordinator.sync();
    assert_eq!(c.coordinator.delivery_state(&id, CLINIC_ID), "delivered");
    // The operator restores the backup: the bundle is listed for the clinic again.
    c.relay.stop();
    fs::remove_dir_all(&c.relay.data).unwrap();
    copy_tree(&backup, &c.relay.data);
    restart(&mut c);
    let again = c.clinic.run(&["sync", "--json"]);
    again.code(code);
    let summary = again.json();
    assert!(list(&summary, "received").is_empty(), "{summary}");
    assert_eq!(list(&summary, "duplicates"), vec![Value::from(id.clone())]);
    assert_eq!(entries_for(&c.clinic.inbox(), &id).len(), 1);
    assert!(list(&c.clinic.sync(), "duplicates").is_empty(), "acked");
}

fn relay_serves_old_bundle(code: i32) {
    let mut c = Cast::start();
    let old = send_note(&c, "same words");
    let old_body = fs::read(
        c.coordinator
            .home
            .join("outbox")
            .join(format!("{old}.dossier")),
    )
    .expect("the outbox keeps the sent ciphertext");
    assert_eq!(list(&c.clinic.sync(), "received").len(), 1);
    let new = send_note(&c, "same words");
    c.relay.stop();
    let edit = StoreEdit::of(&mut c.relay);
    let new_body = fs::read(edit.blob(&new)).unwrap();
    edit.replace_blob(&new, &old_body);
    // age headers carry a random-length grease stanza: list the old body's length too.
    let (old_len, new_len) = (old_body.len().to_string(), new_body.len().to_string());
    assert_eq!(old_len.len(), new_len.len(), "lengths with as many digits");
    if old_len != new_len {
        let n = edit.rewrite_index(
            format!("\"length\":{new_len},").as_bytes(),
            format!("\"length\":{old_len},").as_bytes(),
        );
        assert!(n >= 1, "the listing names the new body's length");
    }
    let n = edit.rewrite_index(
        sha256_hex(&new_body).as_bytes(),
        sha256_hex(&old_body).as_bytes(),
    );
    assert!(n >= 1, "the listing names the new body's hash");
    restart(&mut c);
    let summary = c.clinic.sync();
    let q = list(&summary, "quarantined");
    assert_eq!(q.len(), 1, "{summary}");
    assert_eq!(q[0]["bundle_id"], new.as_str());
    assert!(
        q[0]["reason"]
            .as_str()
            .unwrap()
            .contains("differs from the one the relay listed"),
        "{summary}"
    );
    assert!(list(&summary, "received").is_empty());
    // The old bundle is still filed once, unchanged.
    let inbox = c.clinic.inbox();
    let old_items = entries_for(&inbox, &old);
    assert_eq!(old_items.len(), 1);
    assert_eq!(old_items[0]["quarantined"], false);
    assert_quarantined_and_alerted(&c, &new, code);
}

fn relay_substitutes(code: i32) {
    let mut c = Cast::start();
    let id = send_note(&c, "substitute me");
    c.relay.stop();
    let edit = StoreEdit::of(&mut c.relay);
    let body = fs::read(edit.blob(&id)).unwrap();
    let mut forged = body.clone();
    let at = forged.len() - 40;
    forged[at] ^= 0x20;
    edit.replace_blob(&id, &forged);
    assert!(edit.rewrite_index(sha256_hex(&body).as_bytes(), sha256_hex(&forged).as_bytes()) >= 1);
    restart(&mut c);
    let summary = c.clinic.sync();
    let q = list(&summary, "quarantined");
    assert_eq!(q.len(), 1, "{summary}");
    assert!(
        q[0]["reason"].as_str().unwrap().contains("tampered"),
        "{summary}"
    );
    assert_quarantined_and_alerted(&c, &id, code);
}

fn relay_swaps_body_only(code: i32) {
    let mut c = Cast::start();
    let id = send_note(&c, "swap my body");
    c.relay.stop();
    let edit = StoreEdit::of(&mut c.relay);
    let mut body = fs::read(edit.blob(&id)).unwrap();
    let at = body.len() / 2;
    body[at] ^= 0x01;
    edit.replace_blob(&id, &body);
    restart(&mut c);
    let summary = c.clinic.sync();
    assert!(list(&summary, "received").is_empty(), "{summary}");
    let q = list(&summary, "quarantined");
    assert_eq!(q.len(), 1, "{summary}");
    // Not fetched again: the next sync finds nothing to do for it.
    let again = c.clinic.sync();
    assert!(list(&again, "quarantined").is_empty(), "{again}");
    assert!(list(&again, "deferred").is_empty(), "{again}");
    assert_quarantined_and_alerted(&c, &id, code);
}

/// Two bundles to the clinic, received and receipted; the relay stopped before the
/// coordinator collects the receipts. Returns the ids and the receipts' texts.
fn two_receipts(c: &mut Cast) -> [(String, String); 2] {
    let x = send_note(c, "first");
    let y = send_note(c, "second");
    assert_eq!(list(&c.clinic.sync(), "received").len(), 2);
    c.relay.stop();
    [x, y].map(|id| {
        let rec: Value = serde_json::from_slice(
            &fs::read(c.clinic.home.join("inbox").join(format!("{id}.json"))).unwrap(),
        )
        .unwrap();
        let receipt = rec["receipt"].as_str().unwrap().to_owned();
        (id, receipt)
    })
}

/// The coordinator collects receipts: exit `code`, one warning containing `warning` per
/// altered receipt, and the bundles stay `accepted`.
fn receipts_ignored(c: &Cast, ids: &[&str], code: i32, warning: &str) {
    let o = c.coordinator.run(&["sync", "--json"]);
    o.code(code);
    let summary = o.json();
    let warnings = list(&summary, "warnings");
    let matching = warnings
        .iter()
        .filter(|w| w.as_str().unwrap_or("").contains(warning))
        .count();
    assert_eq!(matching, ids.len(), "{summary}");
    for id in ids {
        assert_eq!(c.coordinator.delivery_state(id, CLINIC_ID), "accepted");
    }
}

fn receipt_forged_run(code: i32) {
    let mut c = Cast::start();
    let [(x, receipt_x), (y, _)] = two_receipts(&mut c);
    let envelope: Value = serde_json::from_str(&receipt_x).unwrap();
    let old_sig = envelope["signature"].as_str().unwrap().to_owned();
    let sig = {
        use base64::Engine as _;
        let b64 = base64::engine::general_purpose::STANDARD;
        let mut sig = b64.decode(&old_sig).unwrap();
        sig[7] ^= 0x04;
        b64.encode(sig)
    };
    assert_eq!(old_sig.len(), sig.len());
    let edit = StoreEdit::of(&mut c.relay);
    assert!(edit.rewrite_index(old_sig.as_bytes(), sig.as_bytes()) >= 1);
    restart(&mut c);
    receipts_ignored(&c, &[&x], code, "its signature does not verify");
    // The untouched receipt still counts: the refusal is the forgery.
    assert_eq!(c.coordinator.delivery_state(&y, CLINIC_ID), "delivered");
}

fn receipt_replayed(code: i32) {
    let mut c = Cast::start();
    let [(x, rx), (y, ry)] = two_receipts(&mut c);
    assert_eq!(
        rx.len(),
        ry.len(),
        "receipts of one recipient have one length"
    );
    let edit = StoreEdit::of(&mut c.relay);
    let mark = "#".repeat(rx.len());
    assert!(edit.rewrite_index(rx.as_bytes(), mark.as_bytes()) >= 1);
    assert!(edit.rewrite_index(ry.as_bytes(), rx.as_bytes()) >= 1);
    assert!(edit.rewrite_index(mark.as_bytes(), ry.as_bytes()) >= 1);
    restart(&mut c);
    receipts_ignored(&c, &[&x, &y], code, "names another bundle");
}

fn relay_login_as_other(code: i32) {
    let c = Cast::start();
    let impostor = c.lab.facility(
        "impostor",
        COORDINATOR_ID,
        "Mercy Hospital International Office",
        "US",
    );
    impostor.pin(&c.clinic, true);
    impostor.use_relay(&c.relay);
    let o = impostor.send_outcome(
        &[CLINIC_ID],
        &[],
        &[note(&c.lab, "from the impostor").as_path()],
    );
    o.code(code).stderr_has("bad_signature");
    assert!(c.relay.blob_files().is_empty(), "nothing was deposited");
    let summary = c.clinic.sync();
    assert!(list(&summary, "received").is_empty(), "{summary}");
    assert!(list(&summary, "quarantined").is_empty(), "{summary}");
    assert!(c.clinic.inbox().is_empty());
}

fn impersonate_through_relay(code: i32) {
    let mut c = Cast::start();
    let stranger = c.lab.stranger();
    stranger.pin(&c.clinic, true);
    c.relay.stop();
    c.relay.enroll(&stranger);
    // Queued while the relay is down, so the file can be replaced before the upload.
    stranger.relay_set(c.relay.address(), &c.relay.pin).ok();
    stranger.set_connect_timeout(1);
    let queued = stranger.send(&[CLINIC_ID], &[], &[note(&c.lab, "queued").as_path()]);
    assert_eq!(queued["state"], "queued", "{queued}");
    let id = queued["bundle_id"].as_str().unwrap().to_owned();
    // The stranger's modified client: the same id, signed by its own key, claiming to be
    // the coordinator.
    let attacker = Insider::of(&stranger);
    let clinic_card = card_of(&c.clinic);
    let body = pseudo_random_bytes(9, 500);
    let parts = [("note.txt", &body[..])];
    let mut m = manifest_for(
        attacker.party_as(COORDINATOR_ID),
        vec![party(&clinic_card)],
        &parts,
        Timestamp::now(),
    );
    m.bundle_id = dossier_bundle::BundleId::parse(&id).unwrap();
    let forged = encrypt_to(
        &[
            clinic_card.age_recipient_key(),
            attacker.card.age_recipient_key(),
        ],
        &container(&attacker.signed_entries(&m, &parts), 0),
    );
    let outbox = stranger.home.join("outbox");
    fs::write(outbox.join(format!("{id}.dossier")), &forged).unwrap();
    let record_path = outbox.join(format!("{id}.json"));
    let mut record: Value = serde_json::from_slice(&fs::read(&record_path).unwrap()).unwrap();
    record["length"] = Value::from(forged.len());
    record["ciphertext_sha256"] = Value::from(sha256_hex(&forged));
    fs::write(&record_path, record.to_string()).unwrap();
    restart(&mut c);
    stranger.use_relay(&c.relay);
    assert_eq!(list(&stranger.sync(), "uploaded").len(), 1);

    let summary = c.clinic.sync();
    assert!(list(&summary, "received").is_empty(), "{summary}");
    let q = list(&summary, "quarantined");
    assert_eq!(q.len(), 1, "{summary}");
    assert_eq!(q[0]["bundle_id"], id.as_str());
    assert!(
        q[0]["reason"]
            .as_str()
            .unwrap()
            .contains("claims to be from us-mercy-intl"),
        "{summary}"
    );
    open_id_refused(&c, &c.clinic, &id, code);
    // The depositor learns it was rejected.
    stranger.sync();
    assert_eq!(stranger.delivery_state(&id, CLINIC_ID), "rejected");
}

// ---------------------------------------------------------------------------------------

#[test]
fn the_threat_model_lists_every_row() {
    let doc = fs::read_to_string(workspace_root().join("docs/threat-model.md")).unwrap();
    for (name, code) in TABLE {
        let row = doc
            .lines()
            .find(|l| l.contains(&format!("`{name}`")))
            .unwrap_or_else(|| panic!("docs/threat-model.md §7 lists `{name}`"));
        assert!(
            row.contains(&format!("| {code} |")),
            "the row for `{name}` gives exit {code}: {row}"
        );
    }
    let listed = doc
        .lines()
        .filter(|l| l.contains("| `") && l.contains("` |"))
        .count();
    assert!(listed >= TABLE.len());
}
