//! The parts of sync that need no network: filing a finished download (inbox or
//! quarantine, with the right receipt) and applying receipts and notices to the outbox.
//! The network half is exercised against the real relay in tests/tests/online_*.rs.

use std::sync::Mutex;

use std::path::PathBuf;

use dossier_bundle::card::CardDetails;
use dossier_bundle::receipt::{ReceiptStatus, SignedReceipt};
use dossier_bundle::{BundleKind, CountryCode, FacilityId, OpenError, PartyKind};
use dossier_wire::MailboxItem;
use dossier_wire::message::ReceiptItem;
use secrecy::SecretString;

use super::receipts::apply_receipt_item;
use super::receive::{file_download, receipt_reason, sign_receipt};
use super::*;
use crate::contacts::{ContactBook, Pins};
use crate::inbox;
use crate::relay_client::NoProgress;
use crate::statefile::hex;

const PIN: &str = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
const CONTENT: &[u8] = b"PLAINTEXT-MARKER-7731 follow-up in two weeks";

struct Party {
    _dir: tempfile::TempDir,
    home: NodeHome,
    ring: Keyring,
    card: FacilityCard,
    actor: crate::audit::Actor,
}

fn party(id: &str) -> Party {
    let dir = tempfile::tempdir().unwrap();
    let home = NodeHome::at(&dir.path().join("home"));
    let details = CardDetails {
        id: FacilityId::parse(id).unwrap(),
        name: format!("Facility {id}"),
        country: CountryCode::parse("US").unwrap(),
        kind: PartyKind::Facility,
    };
    let pass = SecretString::from("a passphrase for tests");
    let card = crate::identity::init(&home, &details, &pass, Timestamp::now()).unwrap();
    let ring = crate::identity::unlock(&home, &pass).unwrap();
    let actor = crate::audit::Actor::new(&home, crate::audit::Operator::new("tester").unwrap());
    Party {
        _dir: dir,
        home,
        ring,
        card,
        actor,
    }
}

fn pin(holder: &Party, other: &FacilityCard) {
    let mut book = ContactBook::load(&holder.home).unwrap();
    book.add(other.clone(), holder.card.id(), None, Timestamp::now())
        .unwrap();
    book.save(&holder.home).unwrap();
}

#[derive(Default)]
struct Recorder(Mutex<Vec<SyncEvent>>);

impl SyncEvents for Recorder {
    fn event(&self, e: SyncEvent) {
        self.0.lock().unwrap().push(e);
    }
}

fn ctx<'a>(p: &'a Party, events: &'a Recorder) -> SyncContext<'a> {
    SyncContext {
        home: &p.home,
        keyring: &p.ring,
        me: p.card.clone(),
        relay: RelayConfig::new("127.0.0.1:9", PIN).unwrap(),
        progress: &NoProgress,
        events,
        actor: &p.actor,
        stop: StopSignal::never(),
    }
}

/// Queues a bundle from `from` to `to` in `from`'s outbox; returns its record.
fn queue(from: &Party, to: &[&Party]) -> OutboxRecord {
    let input = from.home.root().join("note.txt");
    std::fs::write(&input, CONTENT).unwrap();
    let opts = SealOptions {
        to: to.iter().map(|p| p.card.id().clone()).collect(),
        kind: BundleKind::Message,
        subject: Some("SUBJECT-MARKER-1902".into()),
        thread: None,
        patient: Some("MRN-MARKER-5521".into()),
        redacted: false,
        overrides: Vec::new(),
    };
    outbox::queue(
        &from.home,
        &from.ring,
        &opts,
        &[input],
        Timestamp::now(),
        &mut |_| Ok(()),
    )
    .unwrap()
}

/// Puts the sender's outbox copy where a download would be; returns the relay's listing.
fn download(sender: &Party, rec: &OutboxRecord, receiver: &Party) -> (MailboxItem, PathBuf) {
    inbox::prepare(&receiver.home).unwrap();
    let part = inbox::part_path(&receiver.home, &rec.bundle_id);
    std::fs::copy(outbox::bundle_path(&sender.home, &rec.bundle_id), &part).unwrap();
    let item = MailboxItem {
        bundle_id: rec.bundle_id.clone(),
        from: rec.from.clone(),
        length: rec.length,
        sha256: rec.ciphertext_sha256.clone(),
        deposited_at: Timestamp::now().unix(),
    };
    (item, part)
}

fn with_pins<T>(p: &Party, f: impl FnOnce(&Pins<'_>) -> T) -> T {
    let book = ContactBook::load(&p.home).unwrap();
    let own = vec![p.card.clone()];
    f(&Pins {
        book: &book,
        own_cards: &own,
    })
}

/// Every byte under `dir`, for plaintext scans.
fn all_bytes(dir: &std::path::Path) -> Vec<u8> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(all_bytes(&p));
        } else {
            out.extend(std::fs::read(&p).unwrap());
        }
    }
    out
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

#[test]
fn a_verified_download_enters_the_inbox_with_a_delivered_receipt() {
    let (sender, receiver) = (party("us-a"), party("th-b"));
    pin(&sender, &receiver.card);
    pin(&receiver, &sender.card);
    let rec = queue(&sender, &[&receiver]);
    let (item, part) = download(&sender, &rec, &receiver);
    let events = Recorder::default();
    let c = ctx(&receiver, &events);
    let receipt = with_pins(&receiver, |pins| file_download(&c, pins, &item, &part, 0))
        .unwrap()
        .expect("the bytes match the listing");

    assert!(!part.exists(), "the partial file became the inbox entry");
    let stored = inbox::bundle_path(&receiver.home, &rec.bundle_id);
    assert_eq!(
        std::fs::read(&stored).unwrap(),
        std::fs::read(outbox::bundle_path(&sender.home, &rec.bundle_id)).unwrap(),
        "the inbox keeps the ciphertext as received"
    );
    let entry = inbox::load_inbox(&receiver.home, &rec.bundle_id)
        .unwrap()
        .unwrap();
    assert!(entry.verified && !entry.receipt_posted);
    assert_eq!(entry.from, "us-a");
    assert_eq!(entry.to, vec!["th-b".to_owned()]);
    assert_eq!(entry.subject.as_deref(), Some("SUBJECT-MARKER-1902"));
    assert_eq!(entry.ciphertext_sha256, rec.ciphertext_sha256);
    assert!(matches!(
        inbox::known(&receiver.home, &rec.bundle_id).unwrap(),
        Some(inbox::Known::Inbox(_))
    ));
    assert!(
        !contains(&all_bytes(receiver.home.root()), CONTENT),
        "verification writes no plaintext"
    );

    let signed = SignedReceipt::parse(receipt.as_bytes()).unwrap();
    assert!(signed.verify(&receiver.card));
    let r = signed.receipt();
    assert_eq!(r.status, ReceiptStatus::Delivered);
    assert_eq!(hex(&r.ciphertext_sha256), rec.ciphertext_sha256);
    assert_eq!(r.bundle_id.as_str(), rec.bundle_id);
    assert!(matches!(
        events.0.lock().unwrap().as_slice(),
        [SyncEvent::Received { .. }]
    ));
}

#[test]
fn an_unpinned_sender_is_quarantined_with_a_rejected_receipt() {
    let (sender, receiver) = (party("sg-x"), party("th-b"));
    pin(&sender, &receiver.card);
    let rec = queue(&sender, &[&receiver]);
    let (item, part) = download(&sender, &rec, &receiver);
    let events = Recorder::default();
    let c = ctx(&receiver, &events);
    let receipt = with_pins(&receiver, |pins| file_download(&c, pins, &item, &part, 0))
        .unwrap()
        .unwrap();
    assert!(
        inbox::load_inbox(&receiver.home, &rec.bundle_id)
            .unwrap()
            .is_none()
    );
    let q = inbox::load_quarantine(&receiver.home, &rec.bundle_id)
        .unwrap()
        .unwrap();
    assert_eq!(q.class, "unknown_sender");
    assert!(q.reason.contains("sg-x"), "{}", q.reason);
    assert!(
        inbox::quarantine_dir(&receiver.home)
            .join(format!("{}.dossier", rec.bundle_id))
            .is_file()
    );
    let signed = SignedReceipt::parse(receipt.as_bytes()).unwrap();
    assert!(signed.verify(&receiver.card));
    assert_eq!(signed.receipt().status, ReceiptStatus::Rejected);
    let reason = signed.receipt().reason.clone().unwrap();
    assert!(reason.contains("not a pinned contact"), "{reason}");
    let all = all_bytes(receiver.home.root());
    for secret in [CONTENT, b"SUBJECT-MARKER-1902", b"MRN-MARKER-5521"] {
        assert!(!contains(&all, secret), "nothing of the bundle in clear");
    }
}

#[test]
fn a_resumed_download_that_differs_from_the_listing_is_fetched_again_from_zero() {
    let (sender, receiver) = (party("us-a"), party("th-b"));
    pin(&sender, &receiver.card);
    pin(&receiver, &sender.card);
    let rec = queue(&sender, &[&receiver]);
    let (mut item, part) = download(&sender, &rec, &receiver);
    item.sha256 = "0".repeat(64);
    let events = Recorder::default();
    let c = ctx(&receiver, &events);
    let filed = with_pins(&receiver, |pins| file_download(&c, pins, &item, &part, 10)).unwrap();
    assert!(filed.is_none());
    assert!(!part.exists(), "fetched again from zero next time");
    assert!(
        inbox::known(&receiver.home, &rec.bundle_id)
            .unwrap()
            .is_none()
    );
}

#[test]
fn a_fresh_download_that_differs_from_the_listing_is_judged_by_its_bytes() {
    let (sender, receiver) = (party("us-a"), party("th-b"));
    pin(&sender, &receiver.card);
    pin(&receiver, &sender.card);
    // Authentic bytes under a wrong listing: quarantined (a failed check, §15.5), the
    // rejected receipt over what came.
    let rec = queue(&sender, &[&receiver]);
    let (mut item, part) = download(&sender, &rec, &receiver);
    item.sha256 = "0".repeat(64);
    let events = Recorder::default();
    let c = ctx(&receiver, &events);
    with_pins(&receiver, |pins| file_download(&c, pins, &item, &part, 0))
        .unwrap()
        .expect("a rejected receipt");
    let q = inbox::load_quarantine(&receiver.home, &rec.bundle_id)
        .unwrap()
        .expect("quarantined");
    assert!(
        q.reason.contains("does not match its own listing"),
        "{}",
        q.reason
    );
    assert_eq!(
        q.ciphertext_sha256, rec.ciphertext_sha256,
        "the hash received"
    );

    // Damaged bytes under the genuine listing: quarantined and rejected, not refetched
    // at every sync.
    let rec = queue(&sender, &[&receiver]);
    let (item, part) = download(&sender, &rec, &receiver);
    let mut body = std::fs::read(&part).unwrap();
    let mid = body.len() / 2;
    body[mid] ^= 0x01;
    std::fs::write(&part, &body).unwrap();
    with_pins(&receiver, |pins| file_download(&c, pins, &item, &part, 0))
        .unwrap()
        .expect("a rejected receipt");
    let q = inbox::load_quarantine(&receiver.home, &rec.bundle_id)
        .unwrap()
        .expect("quarantined");
    assert!(q.reason.contains("tampered"), "{}", q.reason);
}

#[test]
fn a_bundle_deposited_by_someone_else_than_its_signer_is_quarantined() {
    let (sender, receiver) = (party("us-a"), party("th-b"));
    pin(&sender, &receiver.card);
    pin(&receiver, &sender.card);
    let rec = queue(&sender, &[&receiver]);
    let (mut item, part) = download(&sender, &rec, &receiver);
    item.from = "sg-replayer".into();
    let events = Recorder::default();
    let c = ctx(&receiver, &events);
    with_pins(&receiver, |pins| file_download(&c, pins, &item, &part, 0))
        .unwrap()
        .unwrap();
    let q = inbox::load_quarantine(&receiver.home, &rec.bundle_id)
        .unwrap()
        .unwrap();
    assert!(q.reason.contains("sg-replayer"), "{}", q.reason);
}

fn receipt_item(
    seq: u64,
    rec: &OutboxRecord,
    recipient: &str,
    text: Option<String>,
) -> ReceiptItem {
    ReceiptItem {
        seq,
        receipt: text,
        notice: None,
        bundle_id: rec.bundle_id.clone(),
        recipient: recipient.to_owned(),
        at: Timestamp::now().unix(),
    }
}

fn signed_by(p: &Party, rec: &OutboxRecord, sha: [u8; 32], status: ReceiptStatus) -> String {
    let events = Recorder::default();
    let c = ctx(p, &events);
    let r = sign_receipt(&c, &rec.bundle_id, &sha, status, None).unwrap();
    String::from_utf8(r.to_bytes()).unwrap()
}

fn sha_of(rec: &OutboxRecord) -> [u8; 32] {
    let mut sha = [0u8; 32];
    for (i, b) in sha.iter_mut().enumerate() {
        *b = u8::from_str_radix(&rec.ciphertext_sha256[2 * i..2 * i + 2], 16).unwrap();
    }
    sha
}

#[test]
fn receipts_change_state_only_when_they_verify_against_the_pin() {
    let (sender, clinic, patient) = (party("us-a"), party("th-b"), party("p-c"));
    pin(&sender, &clinic.card);
    pin(&sender, &patient.card);
    let rec = queue(&sender, &[&clinic, &patient]);
    outbox::update(&sender.home, &rec.bundle_id, |r| {
        r.mark_accepted(Timestamp::now(), Timestamp::now())
    })
    .unwrap();
    let book = ContactBook::load(&sender.home).unwrap();
    let events = Recorder::default();
    let c = ctx(&sender, &events);

    // A genuine receipt from the clinic.
    let good = signed_by(&clinic, &rec, sha_of(&rec), ReceiptStatus::Delivered);
    apply_receipt_item(&c, &book, &receipt_item(1, &rec, "th-b", Some(good))).unwrap();
    // An impostor with the patient's id but its own keys.
    let impostor = party("p-c");
    let forged = signed_by(&impostor, &rec, sha_of(&rec), ReceiptStatus::Delivered);
    apply_receipt_item(&c, &book, &receipt_item(2, &rec, "p-c", Some(forged))).unwrap();
    // A receipt relabelled for another recipient than it names.
    let relabelled = signed_by(&clinic, &rec, sha_of(&rec), ReceiptStatus::Delivered);
    apply_receipt_item(&c, &book, &receipt_item(3, &rec, "p-c", Some(relabelled))).unwrap();

    let r = outbox::load(&sender.home, &rec.bundle_id).unwrap().unwrap();
    assert_eq!(r.recipients[0].state, DeliveryState::Delivered);
    assert!(r.recipients[0].receipt.is_some());
    assert_eq!(r.recipients[1].state, DeliveryState::Accepted);
    let warnings = events
        .0
        .lock()
        .unwrap()
        .iter()
        .filter(|e| matches!(e, SyncEvent::Warning(_)))
        .count();
    assert_eq!(warnings, 2, "{:?}", events.0.lock().unwrap());

    // The patient received other bytes than were deposited: flagged, not delivered.
    let other = signed_by(&patient, &rec, [7; 32], ReceiptStatus::Delivered);
    apply_receipt_item(&c, &book, &receipt_item(4, &rec, "p-c", Some(other))).unwrap();
    let r = outbox::load(&sender.home, &rec.bundle_id).unwrap().unwrap();
    assert_eq!(r.recipients[1].state, DeliveryState::Accepted);
    assert!(r.recipients[1].alert.is_some());

    // The relay's expiry notice ends the patient's wait; the clinic's delivery stands.
    for who in ["th-b", "p-c"] {
        let mut n = receipt_item(5, &rec, who, None);
        n.notice = Some(NoticeKind::Expired);
        apply_receipt_item(&c, &book, &n).unwrap();
    }
    let r = outbox::load(&sender.home, &rec.bundle_id).unwrap().unwrap();
    assert_eq!(r.recipients[0].state, DeliveryState::Delivered);
    assert_eq!(r.recipients[1].state, DeliveryState::Expired);
}

#[test]
fn the_receipt_position_only_moves_forward() {
    let p = party("us-a");
    SyncState::advance(&p.home, 9, Timestamp::now()).unwrap();
    SyncState::advance(&p.home, 4, Timestamp::now()).unwrap();
    assert_eq!(SyncState::load(&p.home).unwrap().receipts_after, 9);
}

#[test]
fn rejection_reasons_fit_a_receipt_and_name_no_content() {
    let id = FacilityId::parse("sg-x").unwrap();
    for e in [
        OpenError::UnknownSender(id),
        OpenError::NotForMe,
        OpenError::NotListedRecipient,
        OpenError::BadSignature,
        OpenError::Tampered("part #1 does not match".into()),
        OpenError::NotABundle,
    ] {
        let r = receipt_reason(&e);
        assert!(r.chars().count() <= dossier_bundle::receipt::MAX_REASON_CHARS);
        assert!(!r.chars().any(char::is_control));
    }
}
