//! Delivery receipts: a recipient's signed statement about one bundle (docs/protocol.md §16).
//!
//! When a node has durably stored (or refused) a bundle it received, it signs a receipt over
//! the bundle id, the SHA-256 of the ciphertext it received, its own id and key, the outcome
//! and the time. The relay carries receipts to the sender as opaque bytes; the sender checks
//! the signature against its pin for that recipient. A receipt is evidence: it says *this
//! recipient* holds *exactly this ciphertext*, so a relay that substituted bytes is caught.
//!
//! Same envelope as a card: `body` is the base64 of the exact signed JSON bytes.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;

use crate::card::FacilityCard;
#[cfg(feature = "sealing")]
use crate::fingerprint::hex_lower;
use crate::fingerprint::{KeyId, parse_hex_lower};
use crate::ids::BundleId;
use crate::manifest::PartyRef;
use crate::sig::{self, SigContext};
use crate::timestamp::Timestamp;

/// Largest receipt file accepted, in bytes.
pub const MAX_RECEIPT_BYTES: usize = 4096;
/// Longest rejection reason, in characters.
pub const MAX_REASON_CHARS: usize = 200;
const RECEIPT_VERSION: &str = "v1";

/// Why a receipt was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum ReceiptError {
    /// Over [`MAX_RECEIPT_BYTES`].
    #[error("receipt is larger than {MAX_RECEIPT_BYTES} bytes")]
    TooLarge,
    /// Not a v1 receipt.
    #[error("receipt is malformed ({0})")]
    Malformed(&'static str),
    /// A newer receipt version.
    #[error("receipt is version {0:?}, probably from a newer dossier; upgrade dossier")]
    UnknownVersion(String),
}

/// What the recipient did with the bundle.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ReceiptStatus {
    /// Verified and stored in the inbox.
    Delivered,
    /// Refused (quarantined); `reason` says why, without any record content.
    Rejected,
    /// Opened by an operator (optional, sent only if the recipient's policy allows).
    Opened,
}

impl ReceiptStatus {
    /// `delivered`, `rejected` or `opened`.
    pub fn as_str(self) -> &'static str {
        match self {
            ReceiptStatus::Delivered => "delivered",
            ReceiptStatus::Rejected => "rejected",
            ReceiptStatus::Opened => "opened",
        }
    }
}

/// The signed content of a receipt.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeliveryReceipt {
    /// Bundle concerned.
    pub bundle_id: BundleId,
    /// SHA-256 of the ciphertext the recipient received.
    pub ciphertext_sha256: [u8; 32],
    /// The recipient and the key set it signed with.
    pub recipient: PartyRef,
    /// Outcome.
    pub status: ReceiptStatus,
    /// For `rejected`: why (no record content).
    pub reason: Option<String>,
    /// When.
    pub at: Timestamp,
}

#[derive(serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct Body {
    bundle_id: BundleId,
    ciphertext_sha256: String,
    recipient: PartyRef,
    status: ReceiptStatus,
    reason: Option<String>,
    at: Timestamp,
}

#[derive(serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct Envelope {
    dossier_receipt: String,
    body: String,
    signature: String,
}

/// A receipt as carried: content plus the exact signed bytes and signature.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SignedReceipt {
    receipt: DeliveryReceipt,
    body_bytes: Vec<u8>,
    signature: [u8; 64],
}

impl SignedReceipt {
    /// Signs `receipt` with the recipient's current keys (which must be `receipt.recipient.key`).
    #[cfg(feature = "sealing")]
    pub fn sign(
        receipt: DeliveryReceipt,
        keys: &crate::identity::FacilityKeys,
    ) -> Result<Self, ReceiptError> {
        if keys.key_id() != receipt.recipient.key {
            return Err(ReceiptError::Malformed(
                "signing key is not the key named in the receipt",
            ));
        }
        check_reason(receipt.reason.as_deref())?;
        let body = Body {
            bundle_id: receipt.bundle_id.clone(),
            ciphertext_sha256: hex_lower(&receipt.ciphertext_sha256),
            recipient: receipt.recipient.clone(),
            status: receipt.status,
            reason: receipt.reason.clone(),
            at: receipt.at,
        };
        let body_bytes = serde_json::to_vec(&body).map_err(|_| ReceiptError::Malformed("body"))?;
        let signature = keys.sign(SigContext::Receipt, &body_bytes);
        Ok(Self {
            receipt,
            body_bytes,
            signature,
        })
    }

    /// Parses a receipt. The signature is NOT checked here: call [`SignedReceipt::verify`]
    /// with the pinned card of `receipt().recipient` before trusting any field.
    pub fn parse(bytes: &[u8]) -> Result<Self, ReceiptError> {
        if bytes.len() > MAX_RECEIPT_BYTES {
            return Err(ReceiptError::TooLarge);
        }
        #[derive(serde::Deserialize)]
        struct VersionOnly {
            dossier_receipt: String,
        }
        if let Ok(v) = serde_json::from_slice::<VersionOnly>(bytes) {
            if v.dossier_receipt != RECEIPT_VERSION {
                return Err(ReceiptError::UnknownVersion(
                    v.dossier_receipt.chars().take(16).collect(),
                ));
            }
        }
        let env: Envelope = serde_json::from_slice(bytes)
            .map_err(|_| ReceiptError::Malformed("not a receipt envelope"))?;
        let body_bytes = B64
            .decode(&env.body)
            .map_err(|_| ReceiptError::Malformed("body is not base64"))?;
        let body: Body = serde_json::from_slice(&body_bytes)
            .map_err(|_| ReceiptError::Malformed("body is not a v1 receipt"))?;
        let signature: [u8; 64] = B64
            .decode(&env.signature)
            .ok()
            .and_then(|v| v.try_into().ok())
            .ok_or(ReceiptError::Malformed(
                "signature is not 64 bytes of base64",
            ))?;
        let ciphertext_sha256 = parse_hex_lower(&body.ciphertext_sha256)
            .and_then(|v| v.try_into().ok())
            .ok_or(ReceiptError::Malformed(
                "ciphertext_sha256 is not 64 lowercase hex digits",
            ))?;
        check_reason(body.reason.as_deref())?;
        let receipt = DeliveryReceipt {
            bundle_id: body.bundle_id,
            ciphertext_sha256,
            recipient: body.recipient,
            status: body.status,
            reason: body.reason,
            at: body.at,
        };
        Ok(Self {
            receipt,
            body_bytes,
            signature,
        })
    }

    /// The receipt as it travels (compact JSON envelope).
    pub fn to_bytes(&self) -> Vec<u8> {
        let env = Envelope {
            dossier_receipt: RECEIPT_VERSION.into(),
            body: B64.encode(&self.body_bytes),
            signature: B64.encode(self.signature),
        };
        serde_json::to_vec(&env).unwrap_or_default()
    }

    /// True if `card` is the recipient named (id and key) and its key made the signature.
    pub fn verify(&self, card: &FacilityCard) -> bool {
        card.id() == &self.receipt.recipient.id
            && card.key_id() == self.receipt.recipient.key
            && sig::verify(
                card.verifying_key(),
                SigContext::Receipt,
                &self.body_bytes,
                &self.signature,
            )
    }

    /// The content. Trust it only after [`SignedReceipt::verify`].
    pub fn receipt(&self) -> &DeliveryReceipt {
        &self.receipt
    }

    /// The key id named as the signer.
    pub fn signer_key(&self) -> KeyId {
        self.receipt.recipient.key
    }
}

fn check_reason(reason: Option<&str>) -> Result<(), ReceiptError> {
    match reason {
        Some(r) if r.chars().count() > MAX_REASON_CHARS || r.chars().any(char::is_control) => Err(
            ReceiptError::Malformed("reason too long or with control characters"),
        ),
        _ => Ok(()),
    }
}

#[cfg(all(test, feature = "sealing"))]
mod tests {
    use super::*;
    use crate::FacilityKeys;

    fn party() -> (FacilityKeys, FacilityCard) {
        crate::test_support::facility("th-b", "TH")
    }

    fn receipt(card: &FacilityCard) -> DeliveryReceipt {
        DeliveryReceipt {
            bundle_id: BundleId::parse(&"ab".repeat(16)).unwrap(),
            ciphertext_sha256: [9; 32],
            recipient: PartyRef {
                id: card.id().clone(),
                key: card.key_id(),
            },
            status: ReceiptStatus::Delivered,
            reason: None,
            at: Timestamp::from_unix(1_800_000_000).unwrap(),
        }
    }

    #[test]
    fn sign_parse_verify() {
        let (keys, card) = party();
        let signed = SignedReceipt::sign(receipt(&card), &keys).unwrap();
        let back = SignedReceipt::parse(&signed.to_bytes()).unwrap();
        assert_eq!(back, signed);
        assert!(back.verify(&card));
        let (_, other) = party();
        assert!(!back.verify(&other));
    }

    #[test]
    fn forged_and_malformed_receipts_fail() {
        let (keys, card) = party();
        let signed = SignedReceipt::sign(receipt(&card), &keys).unwrap();
        let text = String::from_utf8(signed.to_bytes()).unwrap();
        let env: serde_json::Value = serde_json::from_str(&text).unwrap();
        let body = String::from_utf8(B64.decode(env["body"].as_str().unwrap()).unwrap()).unwrap();
        let forged_body = body.replace("delivered", "rejected");
        let mut env2 = env.clone();
        env2["body"] = B64.encode(forged_body).into();
        let forged = SignedReceipt::parse(env2.to_string().as_bytes()).unwrap();
        assert!(!forged.verify(&card));
        assert_eq!(
            SignedReceipt::parse(&vec![b' '; MAX_RECEIPT_BYTES + 1]),
            Err(ReceiptError::TooLarge)
        );
        assert!(matches!(
            SignedReceipt::parse(b"{}"),
            Err(ReceiptError::Malformed(_))
        ));
        let v2 = br#"{"dossier_receipt":"v2","body":"","signature":""}"#;
        assert_eq!(
            SignedReceipt::parse(v2),
            Err(ReceiptError::UnknownVersion("v2".into()))
        );
    }

    #[test]
    fn wrong_signing_key_is_refused() {
        let (_, card) = party();
        let (other_keys, _) = party();
        assert!(SignedReceipt::sign(receipt(&card), &other_keys).is_err());
    }
}
