//! `init`, `card`, `key rotate`, `key export-age`, `key revoke`.

use std::io::IsTerminal as _;
use std::sync::Mutex;

use dossier_bundle::card::CardDetails;
use dossier_bundle::{CountryCode, FacilityCard, FacilityId, PartyKind, Timestamp};
use dossier_node::audit::{Actor, AuditAction, AuditEvent};
use dossier_node::fsutil::write_atomic;
use dossier_node::policy::Policy;
use dossier_node::relay_client::{NoProgress, runtime};
use dossier_node::relay_config::RelayConfig;
use dossier_node::revocation::{self, RevokeOutcome};
use dossier_node::sync::{self, SyncContext, SyncEvent, SyncEvents};
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
            crate::output::to_stderr(&format!("Fingerprint: {}", card.fingerprint()));
            out.json(&card_json(&card));
        }
        None => {
            // The card file as it is; a closed stdout is ignored (see `output`).
            let _ = std::io::Write::write_all(&mut std::io::stdout().lock(), &card.to_file_bytes());
            crate::output::to_stderr(&format!(
                "Fingerprint of {}: {}",
                card.id(),
                card.fingerprint()
            ));
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
            if revocation::own_revocation(home, old)?.is_some() {
                out.say("Your old key was revoked, so nobody trusts this card automatically:\n  1. Send the new card (`dossier card -o FILE`) to the relay's operator: the relay refuses the revoked key, and lets this node in again only once they run `dossier-relay enroll` with the new card.\n  2. Send it to every contact and read them the new fingerprint on a number they already trust; they run `dossier contacts remove ID` and `dossier contacts add CARD --verified FINGERPRINT`.");
            } else {
                out.say("Send your new card (`dossier card -o FILE`) to every contact: it is signed by your old key, so their nodes accept it without a new phone call. Bundles sealed to your old key still open here.");
            }
        }
        KeyCommand::Revoke { reason, yes } => revoke(home, actor, &reason, yes)?,
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

/// `dossier key revoke`: signs the revocation of the current key, keeps it (from now on
/// this node signs nothing with that key) and posts it at once if the relay answers;
/// otherwise `dossier sync` posts it later.
fn revoke(home: &NodeHome, actor: &Actor, reason: &str, yes: bool) -> Result<(), NodeError> {
    let out = Out::new(false);
    let me = identity::my_card(home)?;
    // A bad reason is a usage error, reported before anything is asked or changed.
    dossier_bundle::revocation::check_reason(reason)?;
    if !yes {
        confirm_revoke(&me)?;
    }
    let pass = passphrase::existing()?;
    let ring = identity::unlock(home, &pass)?;
    let record = match revocation::revoke_current_key(home, &ring, &me, reason, Timestamp::now())? {
        RevokeOutcome::Revoked(r) => {
            // The reason is free text: it stays out of the audit trail.
            actor.record(
                AuditEvent::new(AuditAction::KeyRevoke)
                    .detail("own current key revoked; signed revocation kept for the relay"),
            )?;
            out.say(format!(
                "Revoked the key of {} (fingerprint {}) at {}. This node no longer seals or sends with it.",
                me.id(),
                me.fingerprint(),
                r.revoked_at
            ));
            r
        }
        RevokeOutcome::AlreadyRevoked(r) => {
            out.say(format!(
                "The key of {} (fingerprint {}) was already revoked at {}; nothing changed.",
                me.id(),
                me.fingerprint(),
                r.revoked_at
            ));
            r
        }
    };
    if record.posted_at.is_none() {
        post_revocation(home, actor, &ring, &out)?;
    } else {
        out.say("The relay already holds the revocation.");
    }
    out.say("Next: run `dossier key rotate` for new keys. The relay refuses the revoked key, so send the new card (`dossier card -o FILE`) to the relay's operator to enroll, and to every contact with the new fingerprint read out by phone: a card signed by a revoked key is not trusted automatically.");
    Ok(())
}

/// Posts the pending revocation now, if a relay is configured and answers.
fn post_revocation(
    home: &NodeHome,
    actor: &Actor,
    ring: &dossier_bundle::Keyring,
    out: &Out,
) -> Result<(), NodeError> {
    let kept = revocation::outgoing_path(home);
    if RelayConfig::load(home)?.is_none() {
        out.say(format!(
            "No relay is configured: the revocation is kept in {} and posted by the first `dossier sync` after `dossier relay set`.",
            kept.display()
        ));
        return Ok(());
    }
    let warnings = Warnings::default();
    let ctx = SyncContext::new(home, ring, &NoProgress, &warnings, actor)?;
    let rt = runtime().map_err(NodeError::io("starting the network runtime"))?;
    let kept = format!(
        "The revocation is kept in {} and posted by the next `dossier sync`; run it as soon as the relay can take it.",
        kept.display()
    );
    match rt.block_on(sync::revocations::post_now(&ctx)) {
        Ok(n) if n > 0 => {
            out.say(format!(
                "The relay at {} stored the revocation: it refuses this key from now on, and your contacts apply it at their next sync.",
                ctx.relay.address
            ));
            Ok(())
        }
        Ok(_) => {
            for w in warnings.take() {
                out.say(format!("warning: {w}"));
            }
            out.say(kept);
            Ok(())
        }
        Err(NodeError::Relay(e)) if e.is_connection_problem() => {
            out.say(format!("The relay could not be reached ({e})."));
            out.say(kept);
            Ok(())
        }
        Err(e) => {
            // The key is revoked here whatever the relay said; only the posting failed.
            out.say(kept);
            Err(e)
        }
    }
}

/// Keeps the warnings of posting, to show them if the relay did not store the revocation.
#[derive(Default)]
struct Warnings(Mutex<Vec<String>>);

impl Warnings {
    fn take(&self) -> Vec<String> {
        self.0
            .lock()
            .map(|mut v| std::mem::take(&mut *v))
            .unwrap_or_default()
    }
}

impl SyncEvents for Warnings {
    fn event(&self, e: SyncEvent) {
        if let (SyncEvent::Warning(w), Ok(mut v)) = (e, self.0.lock()) {
            v.push(w);
        }
    }
}

/// Asks for a typed confirmation on a terminal; without one, `--yes` is required.
fn confirm_revoke(me: &FacilityCard) -> Result<(), NodeError> {
    const NEEDS_YES: &str = "revoking a key cannot be undone: the relay and every contact will refuse it. Re-run with --yes to confirm (or run it in a terminal to be asked)";
    if !std::io::stdin().is_terminal() {
        return Err(NodeError::NeedsConfirmation(NEEDS_YES));
    }
    eprint!(
        "Revoke the key of {} (fingerprint {})? This cannot be undone. Type REVOKE to confirm: ",
        me.id(),
        me.fingerprint()
    );
    let mut answer = String::new();
    std::io::stdin()
        .read_line(&mut answer)
        .map_err(NodeError::io("reading the confirmation"))?;
    if answer.trim() == "REVOKE" {
        Ok(())
    } else {
        Err(NodeError::NeedsConfirmation(NEEDS_YES))
    }
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
