//! Domain-separated Ed25519 signatures.
//!
//! Every signature dossier makes is over `context || 0x00 || message`, where the context
//! names what is being signed. A card signature can then never be replayed as a manifest
//! signature or a receipt, even if the bytes happened to parse (docs/protocol.md §4).

use ed25519_dalek::{Signature, VerifyingKey};
#[cfg(any(test, feature = "sealing"))]
use ed25519_dalek::{Signer, SigningKey};

/// What a signature is for. The string is part of the signed bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SigContext {
    /// A card signed by its own key.
    CardSelf,
    /// A new card signed by the key it replaces.
    CardRotation,
    /// A bundle manifest signed by its sender.
    Manifest,
    /// A node proving its identity to a relay over one TLS session (docs/protocol.md §15).
    RelayAuth,
    /// A delivery receipt signed by a recipient.
    Receipt,
    /// A key's revocation, signed by the revoked key itself (docs/protocol.md §17).
    Revocation,
}

impl SigContext {
    /// The context string, as written in docs/protocol.md §4.
    pub fn label(self) -> &'static str {
        match self {
            SigContext::CardSelf => "dossier/card-self/v1",
            SigContext::CardRotation => "dossier/card-rotation/v1",
            SigContext::Manifest => "dossier/manifest/v1",
            SigContext::RelayAuth => "dossier/relay-auth/v1",
            SigContext::Receipt => "dossier/receipt/v1",
            SigContext::Revocation => "dossier/revocation/v1",
        }
    }

    fn input(self, message: &[u8]) -> Vec<u8> {
        let label = self.label().as_bytes();
        let mut v = Vec::with_capacity(label.len() + 1 + message.len());
        v.extend_from_slice(label);
        v.push(0);
        v.extend_from_slice(message);
        v
    }
}

/// Signs `message` under `context`.
#[cfg(any(test, feature = "sealing"))]
pub(crate) fn sign(key: &SigningKey, context: SigContext, message: &[u8]) -> [u8; 64] {
    key.sign(&context.input(message)).to_bytes()
}

/// Verifies with the strict rules (no malleable or small-order signatures).
pub(crate) fn verify(
    key: &VerifyingKey,
    context: SigContext,
    message: &[u8],
    sig: &[u8; 64],
) -> bool {
    key.verify_strict(&context.input(message), &Signature::from_bytes(sig))
        .is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn contexts_do_not_cross() {
        let key = SigningKey::from_bytes(&[9u8; 32]);
        let s = sign(&key, SigContext::CardSelf, b"m");
        assert!(verify(&key.verifying_key(), SigContext::CardSelf, b"m", &s));
        assert!(!verify(
            &key.verifying_key(),
            SigContext::Manifest,
            b"m",
            &s
        ));
        assert!(!verify(
            &key.verifying_key(),
            SigContext::CardSelf,
            b"n",
            &s
        ));
    }
}
