//! `init`, `card`, `key rotate`, `key export-age`.

use dossier_bundle::card::CardDetails;
use dossier_bundle::{CountryCode, FacilityCard, FacilityId, PartyKind, Timestamp};
use dossier_node::audit::{Actor, AuditAction, AuditEvent};
use dossier_node::fsutil::write_atomic;
use dossier_node::policy::Policy;
use dossier_node::{NodeError, NodeHome, identity};
use serde_json::json;

use crate::cli::{CardArgs, InitArgs, KeyCommand};
use crate::output::Out;
use crate::passphrase;

pub fn init(home: &NodeHome, actor: &Actor, a: InitArgs) -> Result<(), NodeError> {
    let out = Out::new(a.json);
    let details = CardDetails {
        id: FacilityId::parse(&a.id)?,
        name: a.name.clone(),
        country: CountryCode::parse(&a.country)?,
        kind: if a.patient {
            PartyKind::Patient
        } else {
            PartyKind::Facility
        },
    };
    dossier_bundle::ids::check_display_name(&details.name)?;
    if home.is_initialised() {
        return Err(NodeError::AlreadyInitialised(home.root().to_path_buf()));
    }
    let pass = passphrase::new()?;
    let card = identity::init(home, &details, &pass, Timestamp::now())?;
    // The safe defaults, with every setting explained in comments.
    Policy::write_default(home)?;
    actor.record(AuditEvent::new(AuditAction::Init))?;
    out.say(format!(
        "Created the identity of {} ({}, {}) in {}",
        card.id(),
        card.name(),
        card.country(),
        home.root().display()
    ));
    out.say(format!("Fingerprint: {}", card.fingerprint()));
    out.say("Share your card with `dossier card -o FILE`; read this fingerprint to each contact by phone.");
    out.say(format!(
        "The disclosure policy is in {} (safe defaults: records only to verified contacts, minors protected); review it with `dossier policy show`.",
        home.policy_path().display()
    ));
    out.json(&card_json(&card));
    Ok(())
}

pub fn card(home: &NodeHome, a: CardArgs) -> Result<(), NodeError> {
    let out = Out::new(a.json);
    let card = identity::my_card(home)?;
    match &a.output {
        Some(path) => {
            write_atomic(path, &card.to_file_bytes())
                .map_err(NodeError::io(format!("writing {}", path.display())))?;
            out.say(format!(
                "Wrote the card of {} to {}",
                card.id(),
                path.display()
            ));
            out.say(format!("Fingerprint: {}", card.fingerprint()));
            out.json(&card_json(&card));
        }
        None if a.json => {
            eprintln!("Fingerprint: {}", card.fingerprint());
            out.json(&card_json(&card));
        }
        None => {
            print!("{}", String::from_utf8_lossy(&card.to_file_bytes()));
            eprintln!("Fingerprint of {}: {}", card.id(), card.fingerprint());
        }
    }
    Ok(())
}

pub fn key(home: &NodeHome, actor: &Actor, cmd: KeyCommand) -> Result<(), NodeError> {
    let out = Out::new(false);
    match cmd {
        KeyCommand::Rotate => {
            let pass = passphrase::existing()?;
            let (card, old) = identity::rotate(home, &pass, Timestamp::now())?;
            actor.record(AuditEvent::new(AuditAction::KeyRotate))?;
            out.say(format!("New keys for {}.", card.id()));
            out.say(format!("Old fingerprint: {}", old.fingerprint()));
            out.say(format!("New fingerprint: {}", card.fingerprint()));
            out.say("Send your new card (`dossier card -o FILE`) to every contact: it is signed by your old key, so their nodes accept it without a new phone call. Bundles sealed to your old key still open here.");
        }
        KeyCommand::ExportAge { yes, output } => {
            if !yes {
                return Err(NodeError::NeedsConfirmation(
                    "export-age writes your private decryption key in plain text; anyone holding the file can read every \
                     bundle sent to you. Re-run with --yes if you mean it, and keep the file offline",
                ));
            }
            let pass = passphrase::existing()?;
            identity::export_age(home, &pass, &output, yes, Timestamp::now())?;
            // The private key left the keyring: if the trail cannot say so, take it back.
            if let Err(e) = actor
                .record(AuditEvent::new(AuditAction::KeyExport).detail("age identity file written"))
            {
                let _ = std::fs::remove_file(&output);
                return Err(e);
            }
            out.say(format!("Wrote the age identity to {} (mode 0600). With it, `age -d -i {} BUNDLE | tar -x` unpacks any bundle sent to you. Keep it offline and delete it when done.", output.display(), output.display()));
        }
    }
    Ok(())
}

pub fn card_json(card: &FacilityCard) -> serde_json::Value {
    json!({
        "id": card.id().as_str(),
        "name": card.name(),
        "country": card.country().as_str(),
        "kind": card.kind().as_str(),
        "fingerprint": card.fingerprint().as_str(),
        "key_id": card.key_id().to_hex(),
        "created_at": card.created_at().to_string(),
    })
}
