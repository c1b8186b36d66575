//! This node's own key revocations (`dossier key revoke`, docs/protocol.md §17).
//!
//! Revoking signs a [`SignedRevocation`] of the node's **current** key with that key, and
//! keeps it in `HOME/revocations/outgoing.json` until the relay has stored it: `key revoke`
//! posts it at once when the relay is reachable, and every `sync` posts what is still
//! pending, so a revocation made while the relay is down is never lost. From the moment it
//! is written, the node refuses to seal or send with the revoked key
//! ([`require_current_key_usable`]); `dossier key rotate` makes new keys, after which the
//! node works again (its relay enrollment must be renewed with the new card).
//!
//! Contacts' revocations are applied to the contact book (`contacts`), fetched by
//! `sync` after the cursor kept in `HOME/revocations/cursor.json`. Those of facilities not
//! pinned when they arrive are remembered ([`remember_unpinned`]), so that a card pinned
//! later is checked against them ([`check_new_card`]): a node that meets a facility after
//! its revocation was posted still refuses the revoked key.
//!
//! ```text
//! HOME/revocations/      mode 0700
//!   outgoing.json        {"format":"dossier-revocations/v1","revocations":[
//!                          {"key":HEX,"revoked_at":T,"revocation":SIGNED-JSON,"posted_at":T|null}]}
//!   cursor.json          {"format":"dossier-revocation-cursor/v1","after":SEQ}
//!   unpinned.json        {"format":"dossier-revocations-unpinned/v1","revocations":[SIGNED-JSON]}
//! ```

use std::path::PathBuf;

use dossier_bundle::revocation::{Revocation, SignedRevocation};
use dossier_bundle::{FacilityCard, KeyId, Keyring, Timestamp};

use crate::contacts::ContactBook;
use crate::error::NodeError;
use crate::fsutil::create_private_dir;
use crate::home::NodeHome;
use crate::statefile::{read_json, with_state_lock, write_json};

const OUTGOING_FORMAT: &str = "dossier-revocations/v1";
const CURSOR_FORMAT: &str = "dossier-revocation-cursor/v1";
const UNPINNED_FORMAT: &str = "dossier-revocations-unpinned/v1";
/// Most bytes of remembered revocations kept (the oldest are dropped beyond it), well under
/// the state-record limit: about a thousand revocations.
const MAX_UNPINNED_BYTES: usize = 768 * 1024;

/// A revocation of one of this node's keys, as kept until (and after) the relay has it.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OwnRevocation {
    /// Key id of the revoked key set.
    pub key: KeyId,
    /// When it was revoked (the signed time).
    pub revoked_at: Timestamp,
    /// The signed revocation, exactly as posted to the relay.
    pub revocation: String,
    /// When the relay confirmed it stored it; `None` while it is still to be posted.
    pub posted_at: Option<Timestamp>,
}

#[derive(serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct Outgoing {
    format: String,
    revocations: Vec<OwnRevocation>,
}

#[derive(serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct Unpinned {
    format: String,
    revocations: Vec<String>,
}

#[derive(serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct Cursor {
    format: String,
    after: u64,
}

/// `HOME/revocations`.
pub fn dir(home: &NodeHome) -> PathBuf {
    home.root().join("revocations")
}

/// `HOME/revocations/outgoing.json`.
pub fn outgoing_path(home: &NodeHome) -> PathBuf {
    dir(home).join("outgoing.json")
}

fn cursor_path(home: &NodeHome) -> PathBuf {
    dir(home).join("cursor.json")
}

fn unpinned_path(home: &NodeHome) -> PathBuf {
    dir(home).join("unpinned.json")
}

fn unpinned(home: &NodeHome) -> Result<Vec<String>, NodeError> {
    let path = unpinned_path(home);
    match read_json::<Unpinned>(&path)? {
        None => Ok(Vec::new()),
        Some(u) if u.format == UNPINNED_FORMAT => Ok(u.revocations),
        Some(_) => Err(NodeError::CorruptState(path, "unknown format version")),
    }
}

/// Remembers a revocation fetched for a facility not pinned here (or for a key of theirs
/// never pinned here), to check cards pinned later. Unverified until then.
pub fn remember_unpinned(home: &NodeHome, signed: &SignedRevocation) -> Result<(), NodeError> {
    let text = String::from_utf8_lossy(&signed.to_bytes()).into_owned();
    with_state_lock(home, || {
        let mut all = unpinned(home)?;
        if all.contains(&text) {
            return Ok(());
        }
        all.push(text);
        let mut total: usize = all.iter().map(String::len).sum();
        while total > MAX_UNPINNED_BYTES && !all.is_empty() {
            total -= all.remove(0).len();
        }
        create_private_dir(&dir(home)).map_err(NodeError::io("creating revocations/"))?;
        write_json(
            &unpinned_path(home),
            &Unpinned {
                format: UNPINNED_FORMAT.into(),
                revocations: all,
            },
        )
    })
}

/// Before `card` is pinned: records in `book` every remembered revocation that verifies
/// against it, so that [`ContactBook::add`] refuses it. Returns whether any did.
pub fn check_new_card(
    home: &NodeHome,
    book: &mut ContactBook,
    card: &FacilityCard,
    now: Timestamp,
) -> Result<bool, NodeError> {
    let mut found = false;
    for text in unpinned(home)? {
        let Ok(signed) = SignedRevocation::parse(text.as_bytes()) else {
            continue;
        };
        let claimed = signed.unverified();
        if &claimed.facility != card.id() || claimed.key != card.key_id() {
            continue;
        }
        // One that does not verify against the real card is a forgery: ignore it.
        if let Ok(recorded) = book.record_revocation(&signed, card, now) {
            found |= recorded;
        }
    }
    Ok(found)
}

/// Every revocation this node made, oldest first.
pub fn own_revocations(home: &NodeHome) -> Result<Vec<OwnRevocation>, NodeError> {
    let path = outgoing_path(home);
    match read_json::<Outgoing>(&path)? {
        None => Ok(Vec::new()),
        Some(o) if o.format == OUTGOING_FORMAT => Ok(o.revocations),
        Some(_) => Err(NodeError::CorruptState(path, "unknown format version")),
    }
}

fn save(home: &NodeHome, revocations: Vec<OwnRevocation>) -> Result<(), NodeError> {
    create_private_dir(&dir(home)).map_err(NodeError::io("creating revocations/"))?;
    write_json(
        &outgoing_path(home),
        &Outgoing {
            format: OUTGOING_FORMAT.into(),
            revocations,
        },
    )
}

/// The revocation of this node's key `key`, if it made one.
pub fn own_revocation(home: &NodeHome, key: KeyId) -> Result<Option<OwnRevocation>, NodeError> {
    Ok(own_revocations(home)?.into_iter().find(|r| r.key == key))
}

/// Revocations the relay has not confirmed yet.
pub fn pending(home: &NodeHome) -> Result<Vec<OwnRevocation>, NodeError> {
    Ok(own_revocations(home)?
        .into_iter()
        .filter(|r| r.posted_at.is_none())
        .collect())
}

/// What [`revoke_current_key`] did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RevokeOutcome {
    /// Signed and kept, to be posted.
    Revoked(OwnRevocation),
    /// The current key was already revoked; nothing changed.
    AlreadyRevoked(OwnRevocation),
}

/// `dossier key revoke`: signs a revocation of the current key (`me` must be its card) and
/// keeps it durably to be posted. From now on the node refuses to sign with that key.
pub fn revoke_current_key(
    home: &NodeHome,
    keyring: &Keyring,
    me: &FacilityCard,
    reason: &str,
    now: Timestamp,
) -> Result<RevokeOutcome, NodeError> {
    let keys = keyring.current();
    if keys.key_id() != me.key_id() {
        return Err(NodeError::CorruptState(
            home.card_path(),
            "card.json does not match the keyring's current keys",
        ));
    }
    dossier_bundle::revocation::check_reason(reason)?;
    let signed = SignedRevocation::sign(
        Revocation {
            facility: me.id().clone(),
            key: me.key_id(),
            reason: reason.to_owned(),
            revoked_at: now,
        },
        keys,
    )?;
    let text = String::from_utf8_lossy(&signed.to_bytes()).into_owned();
    with_state_lock(home, || {
        let mut all = own_revocations(home)?;
        if let Some(existing) = all.iter().find(|r| r.key == me.key_id()) {
            return Ok(RevokeOutcome::AlreadyRevoked(existing.clone()));
        }
        let record = OwnRevocation {
            key: me.key_id(),
            revoked_at: now,
            revocation: text,
            posted_at: None,
        };
        all.push(record.clone());
        save(home, all)?;
        Ok(RevokeOutcome::Revoked(record))
    })
}

/// Records that the relay holds the revocation of `key` (idempotent).
pub fn mark_posted(home: &NodeHome, key: KeyId, at: Timestamp) -> Result<(), NodeError> {
    with_state_lock(home, || {
        let mut all = own_revocations(home)?;
        let mut changed = false;
        for r in all
            .iter_mut()
            .filter(|r| r.key == key && r.posted_at.is_none())
        {
            r.posted_at = Some(at);
            changed = true;
        }
        if changed { save(home, all) } else { Ok(()) }
    })
}

/// Refuses to sign with `me`'s key if this node revoked it.
pub fn require_current_key_usable(home: &NodeHome, me: &FacilityCard) -> Result<(), NodeError> {
    match own_revocation(home, me.key_id())? {
        Some(r) => Err(NodeError::OwnKeyRevoked {
            fingerprint: me.fingerprint(),
            at: r.revoked_at,
        }),
        None => Ok(()),
    }
}

/// Refuses `key rotate` while a revocation has not reached the relay: the new card would
/// reach contacts before they learn that the old key was revoked.
pub fn require_none_pending(home: &NodeHome) -> Result<(), NodeError> {
    if pending(home)?.is_empty() {
        Ok(())
    } else {
        Err(NodeError::RevocationPending(outgoing_path(home)))
    }
}

/// The last revocation seq fetched from the relay (0 if none yet).
pub fn cursor(home: &NodeHome) -> Result<u64, NodeError> {
    let path = cursor_path(home);
    match read_json::<Cursor>(&path)? {
        None => Ok(0),
        Some(c) if c.format == CURSOR_FORMAT => Ok(c.after),
        Some(_) => Err(NodeError::CorruptState(path, "unknown format version")),
    }
}

/// Moves the cursor forward only (another process may have gone further).
pub fn advance_cursor(home: &NodeHome, after: u64) -> Result<(), NodeError> {
    with_state_lock(home, || {
        let current = cursor(home)?;
        if after <= current {
            return Ok(());
        }
        create_private_dir(&dir(home)).map_err(NodeError::io("creating revocations/"))?;
        write_json(
            &cursor_path(home),
            &Cursor {
                format: CURSOR_FORMAT.into(),
                after,
            },
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use dossier_bundle::card::CardDetails;
    use dossier_bundle::{CountryCode, FacilityId, FacilityKeys, PartyKind};

    fn node() -> (tempfile::TempDir, NodeHome, Keyring, FacilityCard) {
        let dir = tempfile::tempdir().unwrap();
        let home = NodeHome::at(dir.path());
        let keys = FacilityKeys::generate().unwrap();
        let details = CardDetails {
            id: FacilityId::parse("th-clinic").unwrap(),
            name: "Clinic".into(),
            country: CountryCode::parse("TH").unwrap(),
            kind: PartyKind::Facility,
        };
        let card = FacilityCard::issue(
            &keys,
            &details,
            Timestamp::from_unix(1).unwrap(),
            None,
            None,
        )
        .unwrap();
        (dir, home, Keyring::new(keys), card)
    }

    #[test]
    fn a_revocation_is_kept_until_posted_and_blocks_the_key() {
        let (_dir, home, ring, card) = node();
        let now = Timestamp::from_unix(1_800_000_000).unwrap();
        require_current_key_usable(&home, &card).unwrap();
        require_none_pending(&home).unwrap();
        let RevokeOutcome::Revoked(r) =
            revoke_current_key(&home, &ring, &card, "laptop stolen", now).unwrap()
        else {
            panic!("not revoked")
        };
        let signed = SignedRevocation::parse(r.revocation.as_bytes()).unwrap();
        assert_eq!(signed.verify(&card).unwrap().reason, "laptop stolen");
        assert_eq!(pending(&home).unwrap(), vec![r.clone()]);
        assert!(matches!(
            require_current_key_usable(&home, &card),
            Err(NodeError::OwnKeyRevoked { .. })
        ));
        assert!(matches!(
            require_none_pending(&home),
            Err(NodeError::RevocationPending(_))
        ));
        // Revoking again changes nothing.
        assert!(matches!(
            revoke_current_key(&home, &ring, &card, "again", now).unwrap(),
            RevokeOutcome::AlreadyRevoked(_)
        ));
        mark_posted(&home, card.key_id(), now).unwrap();
        assert!(pending(&home).unwrap().is_empty());
        require_none_pending(&home).unwrap();
        assert!(require_current_key_usable(&home, &card).is_err());
        assert_eq!(
            own_revocation(&home, card.key_id())
                .unwrap()
                .unwrap()
                .posted_at,
            Some(now)
        );
    }

    #[test]
    fn bad_reasons_are_usage_errors_and_change_nothing() {
        let (_dir, home, ring, card) = node();
        let now = Timestamp::from_unix(1_800_000_000).unwrap();
        for bad in ["", "two\nlines", &"x".repeat(201)] {
            let e = revoke_current_key(&home, &ring, &card, bad, now).unwrap_err();
            assert_eq!(e.exit_class(), crate::error::ExitClass::Usage, "{e}");
        }
        assert!(own_revocations(&home).unwrap().is_empty());
    }

    #[test]
    fn a_card_pinned_after_its_revocation_arrived_is_refused() {
        let (_dir, home, ring, card) = node();
        let now = Timestamp::from_unix(1_800_000_000).unwrap();
        let signed = SignedRevocation::sign(
            Revocation {
                facility: card.id().clone(),
                key: card.key_id(),
                reason: "keyring leaked".into(),
                revoked_at: now,
            },
            ring.current(),
        )
        .unwrap();
        // A forgery naming the same key, remembered too, is ignored when checked.
        let other = FacilityKeys::generate().unwrap();
        let mut forged_env: serde_json::Value = serde_json::from_slice(&signed.to_bytes()).unwrap();
        let other_sig = SignedRevocation::sign(
            Revocation {
                facility: card.id().clone(),
                key: other.key_id(),
                reason: "keyring leaked".into(),
                revoked_at: now,
            },
            &other,
        )
        .unwrap();
        let other_env: serde_json::Value = serde_json::from_slice(&other_sig.to_bytes()).unwrap();
        forged_env["signature"] = other_env["signature"].clone();
        let forged = SignedRevocation::parse(forged_env.to_string().as_bytes()).unwrap();
        remember_unpinned(&home, &forged).unwrap();
        let mut book = ContactBook::default();
        assert!(!check_new_card(&home, &mut book, &card, now).unwrap());

        remember_unpinned(&home, &signed).unwrap();
        remember_unpinned(&home, &signed).unwrap();
        assert_eq!(unpinned(&home).unwrap().len(), 2);
        assert!(check_new_card(&home, &mut book, &card, now).unwrap());
        let me = FacilityId::parse("us-me").unwrap();
        assert!(matches!(
            book.add(card, &me, None, now),
            Err(NodeError::CardKeyRevoked { .. })
        ));
    }

    #[test]
    fn the_cursor_only_moves_forward() {
        let (_dir, home, _, _) = node();
        assert_eq!(cursor(&home).unwrap(), 0);
        advance_cursor(&home, 5).unwrap();
        advance_cursor(&home, 3).unwrap();
        assert_eq!(cursor(&home).unwrap(), 5);
    }
}
