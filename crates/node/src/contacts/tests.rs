//! Pinning, rotation and revocation rules of the contact book.

use super::*;
use dossier_bundle::card::CardDetails;
use dossier_bundle::revocation::Revocation;
use dossier_bundle::{CountryCode, FacilityKeys, PartyKind};

fn t(n: i64) -> Timestamp {
    Timestamp::from_unix(1_800_000_000 + n).unwrap()
}

fn details(id: &str) -> CardDetails {
    CardDetails {
        id: FacilityId::parse(id).unwrap(),
        name: format!("Facility {id}"),
        country: CountryCode::parse("TH").unwrap(),
        kind: PartyKind::Facility,
    }
}

fn issue(keys: &FacilityKeys, id: &str, from: Option<&FacilityKeys>) -> FacilityCard {
    FacilityCard::issue(keys, &details(id), t(0), None, from).unwrap()
}

fn revoke(keys: &FacilityKeys, card: &FacilityCard) -> SignedRevocation {
    SignedRevocation::sign(
        Revocation {
            facility: card.id().clone(),
            key: card.key_id(),
            reason: "laptop stolen".into(),
            revoked_at: t(10),
        },
        keys,
    )
    .unwrap()
}

fn me() -> FacilityId {
    FacilityId::parse("us-me").unwrap()
}

fn sender(card: &FacilityCard) -> PartyRef {
    PartyRef {
        id: card.id().clone(),
        key: card.key_id(),
    }
}

#[test]
fn a_revoked_contact_is_refused_everywhere_until_re_pinned() {
    let dir = tempfile::tempdir().unwrap();
    let home = NodeHome::at(dir.path());
    let old = FacilityKeys::generate().unwrap();
    let old_card = issue(&old, "th-clinic", None);
    let id = old_card.id().clone();
    let mut book = ContactBook::default();
    book.add(old_card.clone(), &me(), None, t(1)).unwrap();
    book.require_not_revoked(&id).unwrap();

    // A forged revocation (signed by another key) changes nothing.
    let stranger = FacilityKeys::generate().unwrap();
    let stranger_card = issue(&stranger, "th-clinic", None);
    let forged = revoke(&stranger, &stranger_card);
    assert_eq!(
        book.apply_revocation(&forged, t(11)),
        Ok(RevocationOutcome::NotPinned)
    );
    assert!(book.revoked(&id).is_none());

    let signed = revoke(&old, &old_card);
    assert_eq!(
        book.apply_revocation(&signed, t(11)),
        Ok(RevocationOutcome::Applied { earlier_key: false })
    );
    assert_eq!(
        book.apply_revocation(&signed, t(12)),
        Ok(RevocationOutcome::AlreadyApplied)
    );
    let r = book.revoked(&id).unwrap();
    assert_eq!((r.at, r.applied_at), (t(10), t(11)));
    assert_eq!(r.reason, "laptop stolen");

    // (a) nothing is sealed to it; (b) bundles signed by the key are refused.
    let e = book.require_not_revoked(&id).unwrap_err();
    assert!(matches!(e, NodeError::ContactRevoked { .. }));
    assert_eq!(e.exit_class(), crate::error::ExitClass::PinMismatch);
    let pins = Pins {
        book: &book,
        own_cards: &[],
    };
    assert!(matches!(
        pins.sender_card(&sender(&old_card)),
        Err(SenderLookupError::KeyRevoked { .. })
    ));

    // The revocation survives saving and loading.
    book.save(&home).unwrap();
    let mut book = ContactBook::load(&home).unwrap();
    assert!(book.revoked(&id).is_some());

    // (c) a new card rotation-signed by the revoked key does not move the pin.
    let new = FacilityKeys::generate().unwrap();
    let rotated = issue(&new, "th-clinic", Some(&old));
    assert!(rotated.is_rotation_signed_by(&old_card));
    let e = book.add(rotated.clone(), &me(), None, t(20)).unwrap_err();
    assert!(matches!(e, NodeError::RotationByRevokedKey { .. }), "{e}");
    assert_eq!(e.exit_class(), crate::error::ExitClass::PinMismatch);
    assert_eq!(book.get(&id).unwrap().card.key_id(), old_card.key_id());

    // Removing the pin keeps the revocation: the old card cannot come back...
    book.remove(&id).unwrap();
    let e = book.add(old_card.clone(), &me(), None, t(21)).unwrap_err();
    assert!(matches!(e, NodeError::CardKeyRevoked { .. }), "{e}");
    // ...but the new card, checked out of band, can be pinned.
    let fp = rotated.fingerprint().to_string();
    assert_eq!(
        book.add(rotated.clone(), &me(), Some(&fp), t(22)).unwrap(),
        AddOutcome::Pinned { verified: true }
    );
    book.require_not_revoked(&id).unwrap();
    let pins = Pins {
        book: &book,
        own_cards: &[],
    };
    assert!(pins.sender_card(&sender(&rotated)).is_ok());
}

#[test]
fn revoking_an_earlier_key_distrusts_the_keys_it_vouched_for() {
    let old = FacilityKeys::generate().unwrap();
    let new = FacilityKeys::generate().unwrap();
    let old_card = issue(&old, "th-clinic", None);
    let new_card = issue(&new, "th-clinic", Some(&old));
    let mut book = ContactBook::default();
    book.add(old_card.clone(), &me(), None, t(1)).unwrap();
    assert!(matches!(
        book.add(new_card.clone(), &me(), None, t(2)).unwrap(),
        AddOutcome::Rotated { .. }
    ));
    // The thief of the old key could have made the rotation: the new card was vouched
    // for by a key now revoked, so it is not trusted either.
    assert_eq!(
        book.apply_revocation(&revoke(&old, &old_card), t(11)),
        Ok(RevocationOutcome::Applied { earlier_key: true })
    );
    let id = new_card.id().clone();
    assert!(book.revoked(&id).is_some());
    assert!(matches!(
        book.require_not_revoked(&id),
        Err(NodeError::ContactRevoked { .. })
    ));
    let pins = Pins {
        book: &book,
        own_cards: &[],
    };
    for card in [&old_card, &new_card] {
        assert!(matches!(
            pins.sender_card(&sender(card)),
            Err(SenderLookupError::KeyRevoked { .. })
        ));
    }
    // A key older than the revoked one is still good for what it signed.
    let older = FacilityKeys::generate().unwrap();
    let older_card = issue(&older, "th-other", None);
    let middle = FacilityKeys::generate().unwrap();
    let middle_card = issue(&middle, "th-other", Some(&older));
    let mut book = ContactBook::default();
    book.add(older_card.clone(), &me(), None, t(1)).unwrap();
    book.add(middle_card.clone(), &me(), None, t(2)).unwrap();
    assert_eq!(
        book.apply_revocation(&revoke(&middle, &middle_card), t(3)),
        Ok(RevocationOutcome::Applied { earlier_key: false })
    );
    let pins = Pins {
        book: &book,
        own_cards: &[],
    };
    assert!(pins.sender_card(&sender(&older_card)).is_ok());
    assert!(pins.sender_card(&sender(&middle_card)).is_err());
}

#[test]
fn revocations_of_strangers_are_ignored_and_old_books_load() {
    let keys = FacilityKeys::generate().unwrap();
    let card = issue(&keys, "th-clinic", None);
    let mut book = ContactBook::default();
    assert_eq!(
        book.apply_revocation(&revoke(&keys, &card), t(1)),
        Ok(RevocationOutcome::NotPinned)
    );
    assert!(book.revoked_keys().is_empty());
    // A contacts.json written before revocations existed still loads.
    let dir = tempfile::tempdir().unwrap();
    let home = NodeHome::at(dir.path());
    let text = String::from_utf8(card.to_file_bytes()).unwrap();
    let old = serde_json::json!({
        "format": CONTACTS_FORMAT,
        "contacts": [{"card": text, "verified": false, "pinned_at": t(0),
                      "verified_at": null, "previous": []}],
    });
    std::fs::write(home.contacts_path(), old.to_string()).unwrap();
    let book = ContactBook::load(&home).unwrap();
    assert_eq!(book.all().len(), 1);
    assert!(book.revoked_keys().is_empty());
    // And a book without revocations is written without the new member.
    book.save(&home).unwrap();
    let written = std::fs::read_to_string(home.contacts_path()).unwrap();
    assert!(!written.contains("revoked_keys"), "{written}");
}
