//! Key revocations posted by nodes (docs/protocol.md §15.3, §17).
//!
//! A node posts a revocation of its own key, signed by that key. The relay accepts it only
//! if it names the authenticated facility and verifies under the key of the facility's
//! **enrolled** card, stores it for good, and from then on refuses that key at
//! authentication (`auth`), so a stolen key cannot use the relay even for a moment longer
//! than the owner needs to revoke it. Connections already open with the key are closed once
//! the answer has had time to arrive. The operator enrolls the facility's new card (made by
//! `dossier key rotate`) to let it back in. Every node can list the revocations and applies
//! those of its own pinned contacts after checking them against its pins.

use std::sync::Arc;
use std::time::Duration;

use dossier_bundle::revocation::{RevocationError, SignedRevocation};
use dossier_bundle::{FacilityCard, Timestamp};
use dossier_wire::message::RevocationItem;
use dossier_wire::{RefusalCode, ServerMessage};

use super::framing::fit_in_frame;
use super::refusal::{from_store, refused};
use super::{Context, blocking, close_code};
use crate::clock::now_unix;
use crate::store::RevocationRecord;

/// How long the node that posted a revocation has to read the answer before the relay
/// closes the connections that authenticated with the revoked key.
const CLOSE_AFTER: Duration = Duration::from_secs(2);

/// Checks a posted revocation against the enrolled card of `facility` and stores it.
pub(crate) async fn post(ctx: &Arc<Context>, facility: &Arc<str>, text: String) -> ServerMessage {
    let signed = match SignedRevocation::parse(text.as_bytes()) {
        Ok(s) => s,
        Err(e) => return refused(RefusalCode::Malformed, format!("{e}; update dossier")),
    };
    let named = signed.unverified().facility.clone();
    if named.as_str() != &**facility {
        return refused(
            RefusalCode::Malformed,
            format!(
                "the revocation is for {named} but this connection is {facility}; a facility can \
                 revoke only its own key"
            ),
        );
    }
    let store = Arc::clone(&ctx.store);
    let who = Arc::clone(facility);
    let result = blocking(move || {
        let card = super::enrolled_card(store.as_ref(), &who)?;
        if let Err(e) = signed.verify(&card) {
            return Ok(Err(refusal_for(&who, &card, &e)));
        }
        let key = card.key_id().to_hex();
        let record = store.post_revocation(&who, &key, text.as_bytes(), now_unix())?;
        Ok(Ok((record, card)))
    })
    .await;
    let (record, card) = match result {
        Ok(Ok(stored)) => stored,
        Ok(Err(reply)) => return reply,
        Err(e) => return from_store(&e),
    };
    tracing::warn!(
        facility = %record.facility,
        fingerprint = %card.fingerprint(),
        seq = record.seq,
        "key revoked by its holder: the relay refuses it from now on; enroll the facility's \
         new card once it has run `dossier key rotate` and confirmed the new fingerprint"
    );
    close_later(ctx, facility);
    ServerMessage::RevocationStored
}

/// The refusal for a revocation that does not match the enrolled card.
fn refusal_for(facility: &str, card: &FacilityCard, e: &RevocationError) -> ServerMessage {
    match e {
        RevocationError::WrongKey { .. } => refused(
            RefusalCode::BadSignature,
            format!(
                "the revocation names another key than the card enrolled for {facility} \
                 (fingerprint {}); only the enrolled key can be revoked through this relay",
                card.fingerprint()
            ),
        ),
        _ => refused(
            RefusalCode::BadSignature,
            format!(
                "the revocation's signature does not verify under the card enrolled for \
                 {facility}; it must be signed by the key it revokes"
            ),
        ),
    }
}

/// Closes, after [`CLOSE_AFTER`], the connections `facility` has open now: they all
/// authenticated with the key just revoked.
fn close_later(ctx: &Arc<Context>, facility: &str) {
    let conns = ctx.registry.connections(facility);
    if conns.is_empty() {
        return;
    }
    let ctx = Arc::clone(ctx);
    tokio::spawn(async move {
        tokio::time::sleep(CLOSE_AFTER).await;
        for c in &conns {
            c.close(close_code::REVOKED, b"key_revoked");
        }
        drop(ctx);
    });
}

/// The `Revocations` answer: as many records as fit one frame (the cursor pages the rest).
pub(crate) fn list_reply(records: Vec<RevocationRecord>) -> ServerMessage {
    let items = records
        .into_iter()
        .map(|r| RevocationItem {
            seq: r.seq,
            facility: r.facility,
            revocation: String::from_utf8_lossy(&r.revocation).into_owned(),
        })
        .collect();
    ServerMessage::Revocations {
        items: fit_in_frame(items, 32),
    }
}

/// The refusal a node whose enrolled key was revoked gets at authentication.
pub(crate) fn auth_refusal(
    facility: &str,
    card: &FacilityCard,
    revoked: &RevocationRecord,
) -> ServerMessage {
    let at = Timestamp::from_unix(revoked.posted_at)
        .map(|t| t.to_string())
        .unwrap_or_else(|_| revoked.posted_at.to_string());
    refused(
        RefusalCode::KeyRevoked,
        format!(
            "the key enrolled for {facility} (fingerprint {}) was revoked by its holder at {at}; \
             this relay refuses it until its operator enrolls the facility's new card \
             (`dossier-relay enroll`)",
            card.fingerprint()
        ),
    )
}
