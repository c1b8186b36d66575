//! Pinned contacts: trust on first use, confirmed out of band, moved only by rotation.
//!
//! The first card imported for an id is pinned (unverified until its fingerprint is
//! confirmed by phone or in person). A later card for the same id with different keys is
//! refused unless it carries a rotation signature by the pinned key; then the pin moves and
//! the old card is kept so bundles the contact signed before rotating still verify.

use std::path::Path;

use dossier_bundle::open::{SenderDirectory, SenderLookupError};
use dossier_bundle::{FacilityCard, FacilityId, Fingerprint, PartyRef, Timestamp};

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

/// All pinned contacts, as stored in `contacts.json`.
#[derive(Clone, Debug, Default)]
pub struct ContactBook {
    contacts: Vec<PinnedContact>,
}

#[derive(serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct StoredBook {
    format: String,
    contacts: Vec<StoredContact>,
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
        Ok(Self { contacts })
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

    /// Removes the pin for `id`.
    pub fn remove(&mut self, id: &FacilityId) -> Result<PinnedContact, NodeError> {
        let i = self
            .contacts
            .iter()
            .position(|c| c.card.id() == id)
            .ok_or_else(|| NodeError::NotAContact(id.clone()))?;
        Ok(self.contacts.remove(i))
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
        std::iter::once(&contact.card)
            .chain(contact.previous.iter())
            .find(|c| c.key_id() == sender.key)
            .cloned()
            .ok_or(SenderLookupError::KeyMismatch {
                pinned: contact.card.fingerprint(),
            })
    }
}

/// Parses a card file given on the command line.
pub fn read_card_arg(path: &Path) -> Result<FacilityCard, NodeError> {
    crate::identity::read_card_file(path)
}
