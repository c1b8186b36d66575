//! `contacts add|list|verify|remove`.

use dossier_bundle::{FacilityId, Timestamp};
use dossier_node::audit::{Actor, AuditAction, AuditEvent, AuditOutcome};
use dossier_node::contacts::read_card_arg;
use dossier_node::{AddOutcome, ContactBook, NodeError, NodeHome, identity};
use serde_json::json;

use crate::cli::ContactsCommand;
use crate::output::Out;

pub fn run(home: &NodeHome, actor: &Actor, cmd: ContactsCommand) -> Result<(), NodeError> {
    let me = identity::my_card(home)?;
    let mut book = ContactBook::load(home)?;
    let now = Timestamp::now();
    match cmd {
        ContactsCommand::Add { card, verified } => {
            let out = Out::new(false);
            let card = read_card_arg(&card)?;
            let (id, name, country, fp) = (
                card.id().clone(),
                card.name().to_owned(),
                card.country(),
                card.fingerprint(),
            );
            let event = AuditEvent::new(AuditAction::ContactAdd).counterpart(&id, Some(country));
            // A revocation fetched before this facility was pinned still counts.
            dossier_node::revocation::check_new_card(home, &mut book, &card, now)?;
            let outcome = match book.add(card, me.id(), verified.as_deref(), now) {
                Ok(o) => o,
                Err(e) => {
                    // A key that differs from the pin is a security event worth recording.
                    actor.record(
                        event
                            .outcome(AuditOutcome::Refused)
                            .detail(refusal_class(&e)),
                    )?;
                    return Err(e);
                }
            };
            actor.record(event.detail(match &outcome {
                AddOutcome::Pinned { verified: true } => "pinned, verified",
                AddOutcome::Pinned { verified: false } => "pinned, unverified",
                AddOutcome::AlreadyPinned => "already pinned",
                AddOutcome::Rotated { .. } => "rotation signed by the pinned key",
            }))?;
            book.save(home)?;
            match outcome {
                AddOutcome::Pinned { verified: true } => out.say(format!("Pinned {id} ({name}, {country}) as verified.\nFingerprint: {fp}")),
                AddOutcome::Pinned { verified: false } => out.say(format!(
                    "Pinned {id} ({name}, {country}), NOT yet verified.\nFingerprint: {fp}\nCall {id} on a number you already trust, compare this fingerprint, then run `dossier contacts verify {id} FINGERPRINT`."
                )),
                AddOutcome::AlreadyPinned => out.say(format!("{id} is already pinned with these keys (fingerprint {fp}).")),
                AddOutcome::Rotated { from } => out.say(format!(
                    "{id} rotated its keys; the new card is signed by the pinned key, so the pin moved.\n  old: {from}\n  new: {fp}\nBundles {id} signed with the old key still verify."
                )),
            }
        }
        ContactsCommand::List { json } => {
            let out = Out::new(json);
            let rows: Vec<_> = book
                .all()
                .iter()
                .map(|c| {
                    json!({
                        "id": c.card.id().as_str(),
                        "name": c.card.name(),
                        "country": c.card.country().as_str(),
                        "kind": c.card.kind().as_str(),
                        "fingerprint": c.card.fingerprint().as_str(),
                        "verified": c.verified,
                        "pinned_at": c.pinned_at.to_string(),
                        "verified_at": c.verified_at.map(|t| t.to_string()),
                        "revoked": book.revoked(c.card.id()).map(|r| json!({
                            "at": r.at.to_string(),
                            "reason": r.reason,
                        })),
                    })
                })
                .collect();
            if book.all().is_empty() {
                out.say("No contacts yet. Add one with `dossier contacts add CARD`.");
            }
            for c in book.all() {
                out.say(format!(
                    "{:<24} {:<2} {:<10} {}  {}  {}",
                    c.card.id(),
                    c.card.country(),
                    if book.revoked(c.card.id()).is_some() {
                        "REVOKED"
                    } else if c.verified {
                        "verified"
                    } else {
                        "UNVERIFIED"
                    },
                    c.card.fingerprint(),
                    c.pinned_at,
                    c.card.name()
                ));
            }
            out.json(&serde_json::Value::Array(rows));
        }
        ContactsCommand::Verify { id, fingerprint } => {
            let id = FacilityId::parse(&id)?;
            let country = book.get(&id).map(|c| c.card.country());
            let event = AuditEvent::new(AuditAction::ContactVerify).counterpart(&id, country);
            if let Err(e) = book.verify(&id, &fingerprint, now) {
                actor.record(
                    event
                        .outcome(AuditOutcome::Refused)
                        .detail(refusal_class(&e)),
                )?;
                return Err(e);
            }
            actor.record(event)?;
            book.save(home)?;
            Out::new(false).say(format!("{id} is now verified."));
        }
        ContactsCommand::Remove { id } => {
            let id = FacilityId::parse(&id)?;
            let removed = book.remove(&id)?;
            actor.record(
                AuditEvent::new(AuditAction::ContactRemove)
                    .counterpart(&id, Some(removed.card.country())),
            )?;
            book.save(home)?;
            Out::new(false).say(format!(
                "Removed {id} (fingerprint {}). Bundles from {id} will no longer open here.",
                removed.card.fingerprint()
            ));
        }
    }
    Ok(())
}

/// A short, content-free name for why a contact change was refused.
fn refusal_class(e: &NodeError) -> &'static str {
    match e {
        NodeError::ContactKeyMismatch { .. } => "key differs from the pinned one",
        NodeError::FingerprintMismatch { .. } => "fingerprint does not match",
        NodeError::IsSelf => "own card",
        NodeError::RotationByRevokedKey { .. } => "new card signed by a revoked key",
        NodeError::CardKeyRevoked { .. } => "card carries a revoked key",
        _ => "refused",
    }
}
