//! Pinned contacts: trust on first use, confirmed out of band, moved only by rotation.
//!
//! The first card imported for an id is pinned (unverified until its fingerprint is
//! confirmed by phone or in person). A later card for the same id with different keys is
//! refused unless it carries a rotation signature by the pinned key; then the pin moves and
//! the old card is kept so bundles the contact signed before rotating still verify.
//!
//! A contact can revoke a key (docs/protocol.md §17). A revocation that verifies against a
//! pinned card — the current one, or one the contact rotated away from — is kept in the
//! book, by facility and key, even if the pin is later removed: bundles signed by that key
//! are refused ([`Pins`]), nothing is sealed to it, a card carrying it is not pinned again,
//! and a new card signed by it does not move the pin (a revoked key vouches for nothing).
//!
//! A revoked key also stops vouching for what it vouched for before: if the pin moved away
//! from it by rotation, the cards after it are distrusted too. Whoever stole the key could
//! have made that rotation (a thief's card looks exactly like the owner's), so the contact
//! counts as revoked until its new card is checked out of band and pinned afresh.

use std::path::Path;

use dossier_bundle::open::{SenderDirectory, SenderLookupError};
use dossier_bundle::revocation::{RevocationError, SignedRevocation};
use dossier_bundle::{FacilityCard, FacilityId, Fingerprint, KeyId, PartyRef, Timestamp};

use crate::error::NodeError;
use crate::fsutil::write_atomic;
use crate::home::NodeHome;

const CONTACTS_FORMAT: &str = "dossier-contacts/v1";
const MAX_CONTACTS_BYTES: usize = 64 * 1024 * 1024;

/// One pinned contact.
#[derive(Clone, Debug)]
pub struct PinnedContact {
    /// The current pinned card.
    pub card: FacilityCard,
    /// Whether the fingerprint was confirmed out of band.
    pub verified: bool,
    /// When first pinned.
    pub pinned_at: Timestamp,
    /// When verified, if it was.
    pub verified_at: Option<Timestamp>,
    /// Cards this contact rotated away from, oldest first.
    pub previous: Vec<FacilityCard>,
}

/// What `contacts add` did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AddOutcome {
    /// A new pin.
    Pinned {
        /// Whether `--verified` confirmed it.
        verified: bool,
    },
    /// The same keys were already pinned (details refreshed if the card is newer).
    AlreadyPinned,
    /// A rotation signed by the pinned key moved the pin.
    Rotated {
        /// The previous fingerprint.
        from: Fingerprint,
    },
}

/// A key a contact revoked, verified against its pinned card and applied here.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RevokedKey {
    /// The contact.
    pub facility: FacilityId,
    /// Key id of the revoked key set.
    pub key: KeyId,
    /// When the contact revoked it (its signed time).
    pub at: Timestamp,
    /// The contact's one-line reason (never patient details, but from another party: show
    /// it as their words).
    pub reason: String,
    /// When this node applied it.
    pub applied_at: Timestamp,
}

/// What applying a contact's revocation did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RevocationOutcome {
    /// The key was revoked here, and with it the contact: its pinned key is the revoked
    /// one or was vouched for (by rotation) by it.
    Applied {
        /// The revoked key is one the contact rotated away from, not the pinned one.
        earlier_key: bool,
    },
    /// Already applied earlier.
    AlreadyApplied,
    /// Not a pinned contact, or a key of theirs never pinned here: nothing to check it
    /// against, nothing to do.
    NotPinned,
}

/// All pinned contacts, as stored in `contacts.json`.
#[derive(Clone, Debug, Default)]
pub struct ContactBook {
    contacts: Vec<PinnedContact>,
    revoked: Vec<RevokedKey>,
}

#[derive(serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct StoredBook {
    format: String,
    contacts: Vec<StoredContact>,
    /// Absent in books written before revocations existed (and while none is applied).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    revoked_keys: Vec<RevokedKey>,
}

#[derive(serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct StoredContact {
    card: String,
    verified: bool,
    pinned_at: Timestamp,
    verified_at: Option<Timestamp>,
    previous: Vec<String>,
}

impl ContactBook {
    /// Loads `contacts.json` (an empty book if it does not exist yet).
    pub fn load(home: &NodeHome) -> Result<Self, NodeError> {
        let path = home.contacts_path();
        if !path.exists() {
            return Ok(Self::default());
        }
        let corrupt = |why| NodeError::CorruptState(path.clone(), why);
        let bytes = crate::identity::read_bounded(&path, MAX_CONTACTS_BYTES)
            .map_err(|_| corrupt("unreadable or too large"))?;
        let stored: StoredBook =
            serde_json::from_slice(&bytes).map_err(|_| corrupt("not valid JSON"))?;
        if stored.format != CONTACTS_FORMAT {
            return Err(corrupt("unknown format version"));
        }
        let parse = |s: &str| {
            FacilityCard::parse(s.as_bytes())
                .map_err(|_| corrupt("a pinned card no longer verifies"))
        };
        let contacts = stored
            .contacts
            .iter()
            .map(|c| {
                Ok(PinnedContact {
                    card: parse(&c.card)?,
                    verified: c.verified,
                    pinned_at: c.pinned_at,
                    verified_at: c.verified_at,
                    previous: c
                        .previous
                        .iter()
                        .map(|p| parse(p))
                        .collect::<Result<_, _>>()?,
                })
            })
            .collect::<Result<_, NodeError>>()?;
        Ok(Self {
            contacts,
            revoked: stored.revoked_keys,
        })
    }

    /// Writes `contacts.json` atomically.
    pub fn save(&self, home: &NodeHome) -> Result<(), NodeError> {
        let text = |c: &FacilityCard| String::from_utf8_lossy(&c.to_file_bytes()).into_owned();
        let stored = StoredBook {
            format: CONTACTS_FORMAT.to_owned(),
            contacts: self
                .contacts
                .iter()
                .map(|c| StoredContact {
                    card: text(&c.card),
                    verified: c.verified,
                    pinned_at: c.pinned_at,
                    verified_at: c.verified_at,
                    previous: c.previous.iter().map(text).collect(),
                })
                .collect(),
            revoked_keys: self.revoked.clone(),
        };
        let bytes = serde_json::to_vec_pretty(&stored)
            .map_err(|e| NodeError::io("encoding contacts")(e.into()))?;
        write_atomic(&home.contacts_path(), &bytes).map_err(NodeError::io("writing contacts.json"))
    }

    /// All contacts, in the order they were pinned.
    pub fn all(&self) -> &[PinnedContact] {
        &self.contacts
    }

    /// The contact with `id`.
    pub fn get(&self, id: &FacilityId) -> Option<&PinnedContact> {
        self.contacts.iter().find(|c| c.card.id() == id)
    }

    /// Pins `card` (see the module docs for the rules). `verified_fp`, if given, must match.
    pub fn add(
        &mut self,
        card: FacilityCard,
        me: &FacilityId,
        verified_fp: Option<&str>,
        now: Timestamp,
    ) -> Result<AddOutcome, NodeError> {
        if card.id() == me {
            return Err(NodeError::IsSelf);
        }
        if let Some(fp) = verified_fp {
            if !card.fingerprint().matches(fp) {
                return Err(NodeError::FingerprintMismatch {
                    id: card.id().clone(),
                    actual: card.fingerprint(),
                });
            }
        }
        if let Some(r) = self.key_revocation(card.id(), card.key_id()) {
            return Err(NodeError::CardKeyRevoked {
                id: card.id().clone(),
                fingerprint: card.fingerprint(),
                at: r.at,
            });
        }
        let revoked_pin = self.revoked(card.id()).map(|r| r.at);
        let Some(existing) = self.contacts.iter_mut().find(|c| c.card.id() == card.id()) else {
            self.contacts.push(PinnedContact {
                card,
                verified: verified_fp.is_some(),
                pinned_at: now,
                verified_at: verified_fp.map(|_| now),
                previous: Vec::new(),
            });
            return Ok(AddOutcome::Pinned {
                verified: verified_fp.is_some(),
            });
        };
        if existing.card.key_id() == card.key_id() {
            if card.created_at() > existing.card.created_at() {
                existing.card = card;
            }
            if verified_fp.is_some() && !existing.verified {
                existing.verified = true;
                existing.verified_at = Some(now);
            }
            return Ok(AddOutcome::AlreadyPinned);
        }
        if let Some(revoked_at) = revoked_pin.filter(|_| card.is_rotation_signed_by(&existing.card))
        {
            return Err(NodeError::RotationByRevokedKey {
                id: card.id().clone(),
                presented: card.fingerprint(),
                revoked_at,
            });
        }
        if card.is_rotation_signed_by(&existing.card) {
            let from = existing.card.fingerprint();
            let old = std::mem::replace(&mut existing.card, card);
            existing.previous.push(old);
            // Trust carries over a signed rotation; an explicit --verified also counts.
            if verified_fp.is_some() {
                existing.verified = true;
                existing.verified_at = Some(now);
            }
            return Ok(AddOutcome::Rotated { from });
        }
        Err(NodeError::ContactKeyMismatch {
            id: card.id().clone(),
            pinned: existing.card.fingerprint(),
            presented: card.fingerprint(),
        })
    }

    /// Marks `id` verified if `fp` is its fingerprint.
    pub fn verify(&mut self, id: &FacilityId, fp: &str, now: Timestamp) -> Result<(), NodeError> {
        let c = self
            .contacts
            .iter_mut()
            .find(|c| c.card.id() == id)
            .ok_or_else(|| NodeError::NotAContact(id.clone()))?;
        if !c.card.fingerprint().matches(fp) {
            return Err(NodeError::FingerprintMismatch {
                id: id.clone(),
                actual: c.card.fingerprint(),
            });
        }
        c.verified = true;
        c.verified_at = Some(now);
        Ok(())
    }

    /// Removes the pin for `id`. Revocations of its keys are kept: a revoked key is never
    /// trusted again, whatever happens to the pin.
    pub fn remove(&mut self, id: &FacilityId) -> Result<PinnedContact, NodeError> {
        let i = self
            .contacts
            .iter()
            .position(|c| c.card.id() == id)
            .ok_or_else(|| NodeError::NotAContact(id.clone()))?;
        Ok(self.contacts.remove(i))
    }

    /// The revocation of `id`'s key `key`, if that key was revoked.
    pub fn key_revocation(&self, id: &FacilityId, key: KeyId) -> Option<&RevokedKey> {
        self.revoked
            .iter()
            .find(|r| &r.facility == id && r.key == key)
    }

    /// The revocation that makes `id`'s key `key` untrusted: the key's own, or that of an
    /// earlier key of the pinned chain that vouched for it by rotation.
    pub fn revocation_covering(&self, id: &FacilityId, key: KeyId) -> Option<&RevokedKey> {
        if let Some(r) = self.key_revocation(id, key) {
            return Some(r);
        }
        let contact = self.get(id)?;
        // Oldest first: each card was accepted on the rotation signature of the one before.
        let chain: Vec<KeyId> = contact
            .previous
            .iter()
            .map(FacilityCard::key_id)
            .chain(std::iter::once(contact.card.key_id()))
            .collect();
        let pos = chain.iter().position(|k| *k == key)?;
        chain[..pos]
            .iter()
            .find_map(|k| self.key_revocation(id, *k))
    }

    /// Why `id` is revoked, if it is: its pinned key, or a key that vouched for it, was
    /// revoked by the contact.
    pub fn revoked(&self, id: &FacilityId) -> Option<&RevokedKey> {
        let contact = self.get(id)?;
        self.revocation_covering(id, contact.card.key_id())
    }

    /// Every revocation applied here.
    pub fn revoked_keys(&self) -> &[RevokedKey] {
        &self.revoked
    }

    /// Applies a contact's revocation (docs/protocol.md §17.4): checked against the pinned
    /// card with the key it names (current or rotated away from); a revocation that does not
    /// verify changes nothing and is returned as the error.
    pub fn apply_revocation(
        &mut self,
        signed: &SignedRevocation,
        now: Timestamp,
    ) -> Result<RevocationOutcome, RevocationError> {
        let claimed = signed.unverified();
        let Some(contact) = self.get(&claimed.facility) else {
            return Ok(RevocationOutcome::NotPinned);
        };
        let Some(card) = std::iter::once(&contact.card)
            .chain(contact.previous.iter())
            .find(|c| c.key_id() == claimed.key)
        else {
            return Ok(RevocationOutcome::NotPinned);
        };
        let earlier_key = card.key_id() != contact.card.key_id();
        let card = card.clone();
        Ok(if self.record_revocation(signed, &card, now)? {
            RevocationOutcome::Applied { earlier_key }
        } else {
            RevocationOutcome::AlreadyApplied
        })
    }

    /// Records a revocation of `card`'s key, pinned or not (a card about to be pinned is
    /// checked this way against revocations fetched earlier). `false` if it was already
    /// recorded; an error if it does not verify against `card`.
    pub fn record_revocation(
        &mut self,
        signed: &SignedRevocation,
        card: &FacilityCard,
        now: Timestamp,
    ) -> Result<bool, RevocationError> {
        let r = signed.verify(card)?;
        if self.key_revocation(&r.facility, r.key).is_some() {
            return Ok(false);
        }
        self.revoked.push(RevokedKey {
            facility: r.facility.clone(),
            key: r.key,
            at: r.revoked_at,
            reason: r.reason.clone(),
            applied_at: now,
        });
        Ok(true)
    }

    /// Refuses to seal to `id` if it revoked its pinned key.
    pub fn require_not_revoked(&self, id: &FacilityId) -> Result<(), NodeError> {
        match self.revoked(id) {
            Some(r) => Err(NodeError::ContactRevoked {
                id: id.clone(),
                at: r.at,
                reason: r.reason.clone(),
            }),
            None => Ok(()),
        }
    }
}

/// The pins plus this node's own cards: what a bundle's sender is checked against.
pub struct Pins<'a> {
    /// Pinned contacts.
    pub book: &'a ContactBook,
    /// This node's current and retired cards.
    pub own_cards: &'a [FacilityCard],
}

impl SenderDirectory for Pins<'_> {
    fn sender_card(&self, sender: &PartyRef) -> Result<FacilityCard, SenderLookupError> {
        if let Some(own) = self.own_cards.first().filter(|c| c.id() == &sender.id) {
            return self
                .own_cards
                .iter()
                .find(|c| c.key_id() == sender.key)
                .cloned()
                .ok_or(SenderLookupError::KeyMismatch {
                    pinned: own.fingerprint(),
                });
        }
        let contact = self
            .book
            .get(&sender.id)
            .ok_or(SenderLookupError::NotAContact)?;
        let card = std::iter::once(&contact.card)
            .chain(contact.previous.iter())
            .find(|c| c.key_id() == sender.key)
            .cloned()
            .ok_or(SenderLookupError::KeyMismatch {
                pinned: contact.card.fingerprint(),
            })?;
        // A key its owner revoked (or one it vouched for) signs nothing we accept, however
        // good the signature.
        match self.book.revocation_covering(&sender.id, sender.key) {
            Some(r) => Err(SenderLookupError::KeyRevoked { revoked_at: r.at }),
            None => Ok(card),
        }
    }
}

/// Parses a card file given on the command line.
pub fn read_card_arg(path: &Path) -> Result<FacilityCard, NodeError> {
    crate::identity::read_card_file(path)
}

#[cfg(test)]
mod tests;
