//! The relay authentication proof (docs/protocol.md §15.2).
//!
//! A node proves it holds its card's signing key by signing the TLS exporter value of the
//! very QUIC connection it is on, together with its facility id. The exporter is unique per
//! TLS session, so a proof captured on one connection is useless on any other. Both halves
//! live here so the node (which signs) and the relay (which only verifies, and links this
//! crate without its sealing half) agree byte for byte.

use crate::card::FacilityCard;
use crate::ids::FacilityId;
use crate::sig::{self, SigContext};

/// Length of the TLS exporter value that is signed.
pub const EXPORTER_BYTES: usize = 32;

/// The signed message: `exporter (32 bytes) || facility id (ASCII)`.
pub fn auth_message(exporter: &[u8; EXPORTER_BYTES], facility: &FacilityId) -> Vec<u8> {
    let mut m = Vec::with_capacity(EXPORTER_BYTES + facility.as_str().len());
    m.extend_from_slice(exporter);
    m.extend_from_slice(facility.as_str().as_bytes());
    m
}

/// Signs the proof with the node's current keys.
#[cfg(feature = "sealing")]
pub fn sign(
    keys: &crate::identity::FacilityKeys,
    exporter: &[u8; EXPORTER_BYTES],
    facility: &FacilityId,
) -> [u8; 64] {
    keys.sign(SigContext::RelayAuth, &auth_message(exporter, facility))
}

/// Checks a proof against the enrolled card of `card.id()`.
pub fn verify(card: &FacilityCard, exporter: &[u8; EXPORTER_BYTES], signature: &[u8; 64]) -> bool {
    sig::verify(
        card.verifying_key(),
        SigContext::RelayAuth,
        &auth_message(exporter, card.id()),
        signature,
    )
}

#[cfg(all(test, feature = "sealing"))]
mod tests {
    use super::*;

    #[test]
    fn proof_is_bound_to_the_exporter_and_the_key() {
        let (keys, card) = crate::test_support::facility("us-a", "US");
        let sig = sign(&keys, &[1; 32], card.id());
        assert!(verify(&card, &[1; 32], &sig));
        assert!(!verify(&card, &[2; 32], &sig));
        let (_, other_card) = crate::test_support::facility("us-a", "US");
        assert!(!verify(&other_card, &[1; 32], &sig));
    }
}
