//! Key revocations: a facility's signed statement that one of its keys must no longer be
//! trusted (docs/protocol.md §17).
//!
//! A revocation names the facility, the key id of the revoked key set, a one-line reason and
//! the time, and is signed **by the revoked key itself** (context `dossier/revocation/v1`).
//! Anyone holding the key can therefore revoke it — which is the point: the rightful owner
//! can revoke a stolen key without any other secret, and a thief who revokes it only does
//! the owner's work. A revocation never names a replacement key: the owner's new card is
//! checked out of band, because a card signed by a revoked key proves nothing.
//!
//! Same envelope as a card or a receipt: `body` is the base64 of the exact signed JSON bytes,
//! so no canonicalisation is needed to check it. The relay and every peer can read the
//! reason, so it must never hold patient details.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;

use crate::card::FacilityCard;
use crate::fingerprint::KeyId;
use crate::ids::FacilityId;
use crate::sig::{self, SigContext};
use crate::timestamp::Timestamp;

/// Largest revocation file accepted, in bytes.
pub const MAX_REVOCATION_BYTES: usize = 4096;
/// Longest reason, in characters.
pub const MAX_REVOCATION_REASON_CHARS: usize = 200;
/// The envelope version this implementation writes and reads.
pub const REVOCATION_VERSION: &str = "v1";

/// Why a revocation was refused. Nothing is changed when any of these is returned.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum RevocationError {
    /// Over [`MAX_REVOCATION_BYTES`].
    #[error("revocation is larger than {MAX_REVOCATION_BYTES} bytes")]
    TooLarge,
    /// Not the JSON shape of a v1 revocation.
    #[error("revocation is malformed ({0})")]
    Malformed(&'static str),
    /// A newer revocation version.
    #[error("revocation is version {0:?}, probably from a newer dossier; upgrade dossier")]
    UnknownVersion(String),
    /// The reason breaks the rules of §17 (length, one line).
    #[error(
        "the revocation reason {0}; give one line of at most {MAX_REVOCATION_REASON_CHARS} \
         characters, without patient details"
    )]
    BadReason(&'static str),
    /// The revocation names another facility than the card it was checked against.
    #[error("the revocation is for facility {revoked}, not {card}")]
    WrongFacility {
        /// Facility named in the revocation.
        revoked: FacilityId,
        /// Facility of the card.
        card: FacilityId,
    },
    /// The revocation names another key than the card's.
    #[error("the revocation is for key {revoked}, not the card's key {card}")]
    WrongKey {
        /// Key id named in the revocation.
        revoked: KeyId,
        /// Key id of the card.
        card: KeyId,
    },
    /// The signature does not verify under the revoked key.
    #[error("the revocation's signature does not verify under the key it revokes; ignore it")]
    BadSignature,
}

/// The signed content of a revocation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Revocation {
    /// The facility whose key is revoked.
    pub facility: FacilityId,
    /// Key id (docs/protocol.md §3.1) of the revoked key set.
    pub key: KeyId,
    /// Why, in one line (visible to the relay and to peers: never patient details).
    pub reason: String,
    /// When the owner revoked it.
    pub revoked_at: Timestamp,
}

#[derive(serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct Body {
    facility: FacilityId,
    key: KeyId,
    reason: String,
    revoked_at: Timestamp,
}

#[derive(serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct Envelope {
    dossier_revocation: String,
    body: String,
    signature: String,
}

/// A revocation as carried: content plus the exact signed bytes and signature.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SignedRevocation {
    revocation: Revocation,
    body_bytes: Vec<u8>,
    signature: [u8; 64],
}

impl SignedRevocation {
    /// Signs `revocation` with the keys it revokes (`revocation.key` must be their id).
    #[cfg(feature = "sealing")]
    pub fn sign(
        revocation: Revocation,
        keys: &crate::identity::FacilityKeys,
    ) -> Result<Self, RevocationError> {
        if keys.key_id() != revocation.key {
            return Err(RevocationError::Malformed(
                "a revocation must be signed by the key it revokes",
            ));
        }
        check_reason(&revocation.reason)?;
        let body = Body {
            facility: revocation.facility.clone(),
            key: revocation.key,
            reason: revocation.reason.clone(),
            revoked_at: revocation.revoked_at,
        };
        let body_bytes =
            serde_json::to_vec(&body).map_err(|_| RevocationError::Malformed("body"))?;
        let signature = keys.sign(SigContext::Revocation, &body_bytes);
        Ok(Self {
            revocation,
            body_bytes,
            signature,
        })
    }

    /// Parses a revocation (docs/protocol.md §17.2). The signature is NOT checked here: call
    /// [`SignedRevocation::verify`] with the card of the key it names before acting on it.
    pub fn parse(bytes: &[u8]) -> Result<Self, RevocationError> {
        if bytes.len() > MAX_REVOCATION_BYTES {
            return Err(RevocationError::TooLarge);
        }
        // The version is read first, leniently, so a newer revocation with new members is
        // reported as newer rather than malformed (docs/protocol.md §13).
        #[derive(serde::Deserialize)]
        struct VersionOnly {
            dossier_revocation: String,
        }
        if let Ok(v) = serde_json::from_slice::<VersionOnly>(bytes) {
            if v.dossier_revocation != REVOCATION_VERSION {
                return Err(RevocationError::UnknownVersion(
                    v.dossier_revocation.chars().take(16).collect(),
                ));
            }
        }
        let env: Envelope = serde_json::from_slice(bytes)
            .map_err(|_| RevocationError::Malformed("not a revocation envelope"))?;
        let body_bytes = B64
            .decode(&env.body)
            .map_err(|_| RevocationError::Malformed("body is not base64"))?;
        let body: Body = serde_json::from_slice(&body_bytes)
            .map_err(|_| RevocationError::Malformed("body is not a v1 revocation"))?;
        let signature: [u8; 64] = B64
            .decode(&env.signature)
            .ok()
            .and_then(|v| v.try_into().ok())
            .ok_or(RevocationError::Malformed(
                "signature is not 64 bytes of base64",
            ))?;
        check_reason(&body.reason)?;
        Ok(Self {
            revocation: Revocation {
                facility: body.facility,
                key: body.key,
                reason: body.reason,
                revoked_at: body.revoked_at,
            },
            body_bytes,
            signature,
        })
    }

    /// The revocation as it travels: a compact JSON envelope.
    pub fn to_bytes(&self) -> Vec<u8> {
        let env = Envelope {
            dossier_revocation: REVOCATION_VERSION.into(),
            body: B64.encode(&self.body_bytes),
            signature: B64.encode(self.signature),
        };
        serde_json::to_vec(&env).unwrap_or_default()
    }

    /// Checks the revocation against `card`: it must name the card's facility and key id,
    /// and its signature must verify under the card's key (docs/protocol.md §17.3).
    pub fn verify(&self, card: &FacilityCard) -> Result<&Revocation, RevocationError> {
        let r = &self.revocation;
        if &r.facility != card.id() {
            return Err(RevocationError::WrongFacility {
                revoked: r.facility.clone(),
                card: card.id().clone(),
            });
        }
        if r.key != card.key_id() {
            return Err(RevocationError::WrongKey {
                revoked: r.key,
                card: card.key_id(),
            });
        }
        if !sig::verify(
            card.verifying_key(),
            SigContext::Revocation,
            &self.body_bytes,
            &self.signature,
        ) {
            return Err(RevocationError::BadSignature);
        }
        Ok(r)
    }

    /// The content, unverified: use it only to find the card to [`verify`](Self::verify)
    /// against (facility and key id), never to act on.
    pub fn unverified(&self) -> &Revocation {
        &self.revocation
    }
}

/// Checks a reason: 1 to [`MAX_REVOCATION_REASON_CHARS`] characters, no control characters
/// (so one line), not only white space, no leading or trailing white space.
pub fn check_reason(reason: &str) -> Result<(), RevocationError> {
    if reason.trim().is_empty() {
        return Err(RevocationError::BadReason("is empty"));
    }
    if reason.chars().count() > MAX_REVOCATION_REASON_CHARS {
        return Err(RevocationError::BadReason("is too long"));
    }
    if reason.chars().any(char::is_control) {
        return Err(RevocationError::BadReason(
            "contains a line break or another control character",
        ));
    }
    if reason.trim() != reason {
        return Err(RevocationError::BadReason(
            "starts or ends with white space",
        ));
    }
    Ok(())
}

#[cfg(all(test, feature = "sealing"))]
mod tests {
    use super::*;
    use crate::FacilityKeys;

    fn party(id: &str) -> (FacilityKeys, FacilityCard) {
        crate::test_support::facility(id, "TH")
    }

    fn revocation(card: &FacilityCard, reason: &str) -> Revocation {
        Revocation {
            facility: card.id().clone(),
            key: card.key_id(),
            reason: reason.into(),
            revoked_at: Timestamp::from_unix(1_800_000_000).unwrap(),
        }
    }

    fn envelope(signed: &SignedRevocation) -> serde_json::Value {
        serde_json::from_slice(&signed.to_bytes()).unwrap()
    }

    fn body_text(env: &serde_json::Value) -> String {
        String::from_utf8(B64.decode(env["body"].as_str().unwrap()).unwrap()).unwrap()
    }

    #[test]
    fn sign_parse_verify() {
        let (keys, card) = party("th-b");
        let signed = SignedRevocation::sign(revocation(&card, "laptop stolen"), &keys).unwrap();
        let back = SignedRevocation::parse(&signed.to_bytes()).unwrap();
        assert_eq!(back, signed);
        let r = back.verify(&card).unwrap();
        assert_eq!(r.reason, "laptop stolen");
        assert_eq!(r.key, card.key_id());
        let env = envelope(&signed);
        assert_eq!(env["dossier_revocation"], "v1");
        assert_eq!(
            body_text(&env),
            format!(
                r#"{{"facility":"th-b","key":"{}","reason":"laptop stolen","revoked_at":"2027-01-15T08:00:00Z"}}"#,
                card.key_id()
            )
        );
    }

    #[test]
    fn tampered_reason_fails() {
        let (keys, card) = party("th-b");
        let signed = SignedRevocation::sign(revocation(&card, "laptop stolen"), &keys).unwrap();
        let mut env = envelope(&signed);
        let forged = body_text(&env).replace("laptop stolen", "routine change");
        env["body"] = B64.encode(forged).into();
        let forged = SignedRevocation::parse(env.to_string().as_bytes()).unwrap();
        assert_eq!(forged.unverified().reason, "routine change");
        assert_eq!(forged.verify(&card), Err(RevocationError::BadSignature));
    }

    #[test]
    fn wrong_key_or_facility_fails() {
        let (keys, card) = party("th-b");
        let signed = SignedRevocation::sign(revocation(&card, "lost"), &keys).unwrap();
        // Same facility, other keys (e.g. the card after a rotation).
        let (_, other_keys_card) = party("th-b");
        assert!(matches!(
            signed.verify(&other_keys_card),
            Err(RevocationError::WrongKey { .. })
        ));
        let (_, other_facility) = party("us-a");
        assert!(matches!(
            signed.verify(&other_facility),
            Err(RevocationError::WrongFacility { .. })
        ));
        // Signed by a key other than the one it names: refused at signing time...
        let (stranger, _) = party("th-b");
        assert!(SignedRevocation::sign(revocation(&card, "lost"), &stranger).is_err());
        // ...and a signature by another key spliced in does not verify.
        let (stranger_keys, stranger_card) = party("th-b");
        let by_stranger =
            SignedRevocation::sign(revocation(&stranger_card, "lost"), &stranger_keys).unwrap();
        let mut env = envelope(&signed);
        env["signature"] = envelope(&by_stranger)["signature"].clone();
        let spliced = SignedRevocation::parse(env.to_string().as_bytes()).unwrap();
        assert_eq!(spliced.verify(&card), Err(RevocationError::BadSignature));
    }

    #[test]
    fn other_signature_contexts_do_not_verify() {
        let (keys, card) = party("th-b");
        let signed = SignedRevocation::sign(revocation(&card, "lost"), &keys).unwrap();
        let as_receipt = keys.sign(SigContext::Receipt, &signed.body_bytes);
        let mut env = envelope(&signed);
        env["signature"] = B64.encode(as_receipt).into();
        let wrong = SignedRevocation::parse(env.to_string().as_bytes()).unwrap();
        assert_eq!(wrong.verify(&card), Err(RevocationError::BadSignature));
    }

    #[test]
    fn size_version_and_unknown_fields() {
        assert_eq!(
            SignedRevocation::parse(&vec![b' '; MAX_REVOCATION_BYTES + 1]),
            Err(RevocationError::TooLarge)
        );
        assert!(matches!(
            SignedRevocation::parse(b"{}"),
            Err(RevocationError::Malformed(_))
        ));
        assert!(matches!(
            SignedRevocation::parse(b"not json"),
            Err(RevocationError::Malformed(_))
        ));
        let v2 = br#"{"dossier_revocation":"v2","body":"","signature":"","replacement":1}"#;
        assert_eq!(
            SignedRevocation::parse(v2),
            Err(RevocationError::UnknownVersion("v2".into()))
        );
        let (keys, card) = party("th-b");
        let signed = SignedRevocation::sign(revocation(&card, "lost"), &keys).unwrap();
        let mut env = envelope(&signed);
        env["extra"] = 1.into();
        assert!(matches!(
            SignedRevocation::parse(env.to_string().as_bytes()),
            Err(RevocationError::Malformed(_))
        ));
        let mut env = envelope(&signed);
        let body = body_text(&env).replace("\"reason\"", "\"replacement\":null,\"reason\"");
        env["body"] = B64.encode(body).into();
        assert!(matches!(
            SignedRevocation::parse(env.to_string().as_bytes()),
            Err(RevocationError::Malformed(_))
        ));
    }

    #[test]
    fn reasons_are_one_short_line() {
        assert!(check_reason("laptop stolen").is_ok());
        assert!(check_reason(&"é".repeat(MAX_REVOCATION_REASON_CHARS)).is_ok());
        for bad in [
            String::new(),
            "   ".into(),
            "two\nlines".into(),
            "tab\there".into(),
            " padded".into(),
            "x".repeat(MAX_REVOCATION_REASON_CHARS + 1),
        ] {
            assert!(
                matches!(check_reason(&bad), Err(RevocationError::BadReason(_))),
                "{bad:?}"
            );
        }
        let (keys, card) = party("th-b");
        assert!(matches!(
            SignedRevocation::sign(revocation(&card, "a\nb"), &keys),
            Err(RevocationError::BadReason(_))
        ));
        // A parser refuses a bad reason even under a valid signature.
        let signed = SignedRevocation::sign(revocation(&card, "lost"), &keys).unwrap();
        let mut bad = signed.clone();
        bad.revocation.reason = "a\nb".into();
        let body = Body {
            facility: card.id().clone(),
            key: card.key_id(),
            reason: "a\nb".into(),
            revoked_at: signed.revocation.revoked_at,
        };
        bad.body_bytes = serde_json::to_vec(&body).unwrap();
        bad.signature = keys.sign(SigContext::Revocation, &bad.body_bytes);
        assert!(matches!(
            SignedRevocation::parse(&bad.to_bytes()),
            Err(RevocationError::BadReason(_))
        ));
    }
}
