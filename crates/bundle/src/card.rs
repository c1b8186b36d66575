//! Facility cards: the public, self-signed identity a facility hands to its contacts.
//!
//! A card binds a facility id, display name, country and kind to one key set. It travels as
//! a small JSON envelope whose `body` is the base64 of the exact JSON bytes that were signed,
//! so no canonicalisation is needed to check it (docs/protocol.md §5). A card made by
//! `dossier key rotate` also carries a `rotation_signature` by the key it replaces, which is
//! what lets a contact move its pin without a new phone call.

use std::str::FromStr;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use ed25519_dalek::VerifyingKey;

use crate::fingerprint::{Fingerprint, KeyId};
#[cfg(feature = "sealing")]
use crate::identity::FacilityKeys;
use crate::ids::{CountryCode, FacilityId, IdError, check_display_name};
use crate::limits::MAX_CARD_BYTES;
use crate::sig::{self, SigContext};
use crate::timestamp::Timestamp;

/// The envelope version this implementation writes and reads.
pub const CARD_VERSION: &str = "v1";

/// Why a card was refused. Nothing is pinned or changed when any of these is returned.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum CardError {
    /// Larger than [`MAX_CARD_BYTES`].
    #[error("card file is larger than {MAX_CARD_BYTES} bytes; it is not a dossier card")]
    TooLarge,
    /// Not the JSON shape of a v1 card.
    #[error(
        "card is malformed ({0}); ask the facility to send its card again (`dossier card -o FILE`)"
    )]
    Malformed(&'static str),
    /// A version this implementation does not know.
    #[error("card is version {0:?}, probably from a newer dossier; upgrade dossier to read it")]
    UnknownVersion(String),
    /// A field failed validation.
    #[error("card has an invalid field: {0}")]
    BadField(#[from] IdError),
    /// The self-signature does not verify: the card was altered or forged.
    #[error("card signature does not verify: the card was altered or forged; do not pin it")]
    BadSignature,
}

/// Whether a card belongs to an organisation or to a patient's own device.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PartyKind {
    /// A hospital, clinic, agency or other organisation.
    Facility,
    /// A patient's personal node.
    Patient,
}

impl PartyKind {
    /// `facility` or `patient`.
    pub fn as_str(self) -> &'static str {
        match self {
            PartyKind::Facility => "facility",
            PartyKind::Patient => "patient",
        }
    }
}

/// The descriptive part of a card, chosen at `dossier init`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CardDetails {
    /// Unique id.
    pub id: FacilityId,
    /// Display name.
    pub name: String,
    /// ISO 3166-1 alpha-2 country.
    pub country: CountryCode,
    /// Facility or patient.
    pub kind: PartyKind,
}

#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct CardBody {
    id: FacilityId,
    name: String,
    country: CountryCode,
    kind: PartyKind,
    age_recipient: String,
    signing_key: String,
    created_at: Timestamp,
    expires_at: Option<Timestamp>,
    previous_key: Option<KeyId>,
}

#[derive(serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct Envelope {
    dossier_card: String,
    body: String,
    signature: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    rotation_signature: Option<String>,
}

/// A parsed card whose self-signature has been checked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FacilityCard {
    body: CardBody,
    body_bytes: Vec<u8>,
    signature: [u8; 64],
    rotation_signature: Option<[u8; 64]>,
    verifying_key: VerifyingKey,
    key_id: KeyId,
}

impl FacilityCard {
    #[cfg(feature = "sealing")]
    /// Issues a card for `keys`, self-signed. With `rotated_from`, the card names the old key
    /// set as `previous_key` and is also signed by it.
    pub fn issue(
        keys: &FacilityKeys,
        details: &CardDetails,
        created_at: Timestamp,
        expires_at: Option<Timestamp>,
        rotated_from: Option<&FacilityKeys>,
    ) -> Result<Self, CardError> {
        check_display_name(&details.name)?;
        let body = CardBody {
            id: details.id.clone(),
            name: details.name.clone(),
            country: details.country,
            kind: details.kind,
            age_recipient: keys.age_recipient(),
            signing_key: B64.encode(keys.verifying_key().as_bytes()),
            created_at,
            expires_at,
            previous_key: rotated_from.map(FacilityKeys::key_id),
        };
        let body_bytes =
            serde_json::to_vec(&body).map_err(|_| CardError::Malformed("unserialisable body"))?;
        let signature = keys.sign(SigContext::CardSelf, &body_bytes);
        let rotation_signature =
            rotated_from.map(|old| old.sign(SigContext::CardRotation, &body_bytes));
        Ok(Self {
            body,
            body_bytes,
            signature,
            rotation_signature,
            verifying_key: keys.verifying_key(),
            key_id: keys.key_id(),
        })
    }

    /// Parses a card file and checks its self-signature (docs/protocol.md §5).
    pub fn parse(bytes: &[u8]) -> Result<Self, CardError> {
        if bytes.len() > MAX_CARD_BYTES {
            return Err(CardError::TooLarge);
        }
        // The version is read first, leniently, so a newer card with new fields is reported
        // as newer rather than malformed (docs/protocol.md §13).
        #[derive(serde::Deserialize)]
        struct VersionOnly {
            dossier_card: String,
        }
        if let Ok(v) = serde_json::from_slice::<VersionOnly>(bytes) {
            if v.dossier_card != CARD_VERSION {
                return Err(CardError::UnknownVersion(
                    v.dossier_card.chars().take(16).collect(),
                ));
            }
        }
        let env: Envelope = serde_json::from_slice(bytes)
            .map_err(|_| CardError::Malformed("not a card envelope"))?;
        if env.dossier_card != CARD_VERSION {
            return Err(CardError::UnknownVersion(
                env.dossier_card.chars().take(16).collect(),
            ));
        }
        let body_bytes = B64
            .decode(&env.body)
            .map_err(|_| CardError::Malformed("body is not base64"))?;
        let body: CardBody = serde_json::from_slice(&body_bytes).map_err(|e| {
            if e.is_data() {
                CardError::Malformed("body field missing or invalid")
            } else {
                CardError::Malformed("body is not JSON")
            }
        })?;
        check_display_name(&body.name)?;
        let recipient = age::x25519::Recipient::from_str(&body.age_recipient)
            .map_err(|_| CardError::Malformed("age_recipient is not an age X25519 recipient"))?;
        if recipient.to_string() != body.age_recipient {
            return Err(CardError::Malformed(
                "age_recipient is not in canonical form",
            ));
        }
        let vk_bytes: [u8; 32] = B64
            .decode(&body.signing_key)
            .ok()
            .and_then(|v| v.try_into().ok())
            .ok_or(CardError::Malformed(
                "signing_key is not 32 bytes of base64",
            ))?;
        let verifying_key = VerifyingKey::from_bytes(&vk_bytes)
            .map_err(|_| CardError::Malformed("signing_key is not an Ed25519 key"))?;
        if verifying_key.is_weak() {
            return Err(CardError::Malformed("signing_key is a weak Ed25519 key"));
        }
        let signature = decode_sig(&env.signature)?;
        let rotation_signature = env
            .rotation_signature
            .as_deref()
            .map(decode_sig)
            .transpose()?;
        if rotation_signature.is_some() != body.previous_key.is_some() {
            return Err(CardError::Malformed(
                "rotation_signature and previous_key must come together",
            ));
        }
        if !sig::verify(
            &verifying_key,
            SigContext::CardSelf,
            &body_bytes,
            &signature,
        ) {
            return Err(CardError::BadSignature);
        }
        let key_id = KeyId::of(&vk_bytes, &body.age_recipient);
        Ok(Self {
            body,
            body_bytes,
            signature,
            rotation_signature,
            verifying_key,
            key_id,
        })
    }

    /// The card file: a pretty-printed JSON envelope and a final newline.
    pub fn to_file_bytes(&self) -> Vec<u8> {
        let env = Envelope {
            dossier_card: CARD_VERSION.to_owned(),
            body: B64.encode(&self.body_bytes),
            signature: B64.encode(self.signature),
            rotation_signature: self.rotation_signature.map(|s| B64.encode(s)),
        };
        let mut out = serde_json::to_vec_pretty(&env).unwrap_or_default();
        out.push(b'\n');
        out
    }

    /// True if this card's rotation signature verifies under `old`, the pinned key it claims
    /// to replace, and names that key as `previous_key`.
    pub fn is_rotation_signed_by(&self, old: &FacilityCard) -> bool {
        match (&self.rotation_signature, &self.body.previous_key) {
            (Some(sig), Some(prev)) if *prev == old.key_id => sig::verify(
                &old.verifying_key,
                SigContext::CardRotation,
                &self.body_bytes,
                sig,
            ),
            _ => false,
        }
    }

    /// Facility id.
    pub fn id(&self) -> &FacilityId {
        &self.body.id
    }
    /// Display name.
    pub fn name(&self) -> &str {
        &self.body.name
    }
    /// Country.
    pub fn country(&self) -> CountryCode {
        self.body.country
    }
    /// Facility or patient.
    pub fn kind(&self) -> PartyKind {
        self.body.kind
    }
    /// The descriptive fields.
    pub fn details(&self) -> CardDetails {
        CardDetails {
            id: self.body.id.clone(),
            name: self.body.name.clone(),
            country: self.body.country,
            kind: self.body.kind,
        }
    }
    /// The age recipient string (`age1...`).
    pub fn age_recipient(&self) -> &str {
        &self.body.age_recipient
    }
    /// The age recipient, ready to encrypt to. Checked at parse time.
    pub fn age_recipient_key(&self) -> age::x25519::Recipient {
        age::x25519::Recipient::from_str(&self.body.age_recipient)
            .expect("checked when the card was parsed or issued")
    }
    /// The Ed25519 verifying key.
    pub fn verifying_key(&self) -> &VerifyingKey {
        &self.verifying_key
    }
    /// Id of the card's key set.
    pub fn key_id(&self) -> KeyId {
        self.key_id
    }
    /// Human fingerprint of the card's key set.
    pub fn fingerprint(&self) -> Fingerprint {
        self.key_id.fingerprint()
    }
    /// When the card was issued.
    pub fn created_at(&self) -> Timestamp {
        self.body.created_at
    }
    /// When the card stops being valid, if ever.
    pub fn expires_at(&self) -> Option<Timestamp> {
        self.body.expires_at
    }
    /// The key set this card replaced, for rotated cards.
    pub fn previous_key(&self) -> Option<KeyId> {
        self.body.previous_key
    }
}

fn decode_sig(s: &str) -> Result<[u8; 64], CardError> {
    B64.decode(s)
        .ok()
        .and_then(|v| v.try_into().ok())
        .ok_or(CardError::Malformed("signature is not 64 bytes of base64"))
}

#[cfg(all(test, feature = "sealing"))]
mod tests {
    use super::*;

    fn details() -> CardDetails {
        CardDetails {
            id: FacilityId::parse("th-bangkok-clinic").unwrap(),
            name: "Bangkok Clinic".into(),
            country: CountryCode::parse("TH").unwrap(),
            kind: PartyKind::Facility,
        }
    }

    fn t0() -> Timestamp {
        Timestamp::parse("2026-11-23T09:00:00Z").unwrap()
    }

    #[test]
    fn issue_parse_round_trip() {
        let keys = FacilityKeys::generate().unwrap();
        let card = FacilityCard::issue(&keys, &details(), t0(), None, None).unwrap();
        let back = FacilityCard::parse(&card.to_file_bytes()).unwrap();
        assert_eq!(back, card);
        assert_eq!(back.key_id(), keys.key_id());
        assert_eq!(back.details(), details());
    }

    #[test]
    fn altered_body_is_refused() {
        let keys = FacilityKeys::generate().unwrap();
        let card = FacilityCard::issue(&keys, &details(), t0(), None, None).unwrap();
        let text = String::from_utf8(card.to_file_bytes()).unwrap();
        let env: serde_json::Value = serde_json::from_str(&text).unwrap();
        let body = B64.decode(env["body"].as_str().unwrap()).unwrap();
        let forged = String::from_utf8(body)
            .unwrap()
            .replace("Bangkok Clinic", "Bangkok Clinix");
        let mut env2 = env.clone();
        env2["body"] = B64.encode(forged).into();
        assert_eq!(
            FacilityCard::parse(env2.to_string().as_bytes()),
            Err(CardError::BadSignature)
        );
    }

    #[test]
    fn limits_and_versions() {
        assert_eq!(
            FacilityCard::parse(&vec![b' '; MAX_CARD_BYTES + 1]),
            Err(CardError::TooLarge)
        );
        assert!(matches!(
            FacilityCard::parse(b"{not json"),
            Err(CardError::Malformed(_))
        ));
        assert!(matches!(
            FacilityCard::parse(b"[]"),
            Err(CardError::Malformed(_))
        ));
        let v2 = br#"{"dossier_card":"v2","body":"","signature":""}"#;
        assert_eq!(
            FacilityCard::parse(v2),
            Err(CardError::UnknownVersion("v2".into()))
        );
        let extra = br#"{"dossier_card":"v1","body":"","signature":"","extra":1}"#;
        assert!(matches!(
            FacilityCard::parse(extra),
            Err(CardError::Malformed(_))
        ));
    }

    #[test]
    fn rotation_signature_chains_to_the_old_key() {
        let old = FacilityKeys::generate().unwrap();
        let new = FacilityKeys::generate().unwrap();
        let stranger = FacilityKeys::generate().unwrap();
        let old_card = FacilityCard::issue(&old, &details(), t0(), None, None).unwrap();
        let rotated = FacilityCard::issue(&new, &details(), t0(), None, Some(&old)).unwrap();
        let rotated = FacilityCard::parse(&rotated.to_file_bytes()).unwrap();
        assert!(rotated.is_rotation_signed_by(&old_card));
        let stranger_card = FacilityCard::issue(&stranger, &details(), t0(), None, None).unwrap();
        assert!(!rotated.is_rotation_signed_by(&stranger_card));
        assert!(!old_card.is_rotation_signed_by(&old_card));
    }
}
