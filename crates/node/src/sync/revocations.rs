//! Key revocations in every sync (docs/protocol.md §17): post this node's own, then fetch
//! everyone's and apply those of pinned contacts.
//!
//! 1. **Post**: each revocation in `HOME/revocations/outgoing.json` the relay has not
//!    confirmed is posted; it is marked posted only on `RevocationStored` (or when the relay
//!    already refuses the key, which it does only once it holds the revocation). Anything
//!    else leaves it pending for the next sync: a revocation is never lost.
//! 2. **Own key**: a node whose current key is revoked stops here, with an error that says
//!    how to recover (`dossier key rotate`, new enrollment, phone calls).
//! 3. **Fetch**: revocations after the cursor in `HOME/revocations/cursor.json` are listed.
//!    Each is verified against the pinned card whose key it names — the relay is not
//!    trusted for this — and applied to the contact book, audited and reported (those of
//!    facilities not pinned here are remembered, to check cards pinned later). A contact
//!    whose pinned key is revoked (or was vouched for by a revoked key) gets nothing more
//!    from this node: bundles still queued for it are marked refused instead of being
//!    uploaded (they are encrypted to a key a thief may hold).

use dossier_bundle::Timestamp;
use dossier_bundle::revocation::SignedRevocation;
use dossier_wire::RefusalCode;
use dossier_wire::message::RevocationItem;

use super::{Session, SyncContext, SyncEvent, TRIES, backoff};
use crate::audit::{AuditAction, AuditEvent};
use crate::contacts::{ContactBook, RevocationOutcome};
use crate::error::NodeError;
use crate::outbox::{self, OutboxRecord};
use crate::relay_client::RelayError;
use crate::revocation;
use crate::statefile::{one_line, with_state_lock};

/// Posts pending revocations, stops if this node's key is revoked, then applies contacts'.
pub(super) async fn exchange(
    ctx: &SyncContext<'_>,
    session: &mut Session<'_, '_>,
) -> Result<(), NodeError> {
    post_pending(ctx, session).await?;
    revocation::require_current_key_usable(ctx.home, &ctx.me)?;
    fetch_and_apply(ctx, session).await
}

/// `dossier key revoke`: posts pending revocations on a connection of their own. Returns how
/// many the relay confirmed.
pub async fn post_now(ctx: &SyncContext<'_>) -> Result<usize, NodeError> {
    let mut session = Session::new(ctx);
    let result = post_pending(ctx, &mut session).await;
    session.close().await;
    result
}

async fn post_pending(
    ctx: &SyncContext<'_>,
    session: &mut Session<'_, '_>,
) -> Result<usize, NodeError> {
    let mut posted = 0;
    for r in revocation::pending(ctx.home)? {
        let result = with_retry!(session, |c| c.post_revocation(&r.revocation));
        match result {
            Ok(()) => {}
            // The relay refuses a key only once it holds its revocation.
            Err(e) if e.is_key_revoked() && r.key == ctx.me.key_id() => {}
            Err(e) if e.is_connection_problem() || e.refuses_node() => return Err(e.into()),
            Err(e) => {
                ctx.events.event(SyncEvent::Warning(format!(
                    "the relay did not store the revocation of key {} ({e}); it is kept and posted \
                     again at the next sync",
                    r.key.fingerprint()
                )));
                continue;
            }
        }
        revocation::mark_posted(ctx.home, r.key, Timestamp::now())?;
        ctx.events.event(SyncEvent::RevocationPosted {
            fingerprint: r.key.fingerprint().to_string(),
        });
        posted += 1;
    }
    Ok(posted)
}

async fn fetch_and_apply(
    ctx: &SyncContext<'_>,
    session: &mut Session<'_, '_>,
) -> Result<(), NodeError> {
    let mut after = revocation::cursor(ctx.home)?;
    loop {
        let items = match with_retry!(session, |c| c.revocations(after)) {
            Ok(items) => items,
            // A relay from before revocations refuses the request as unknown: the rest of
            // the sync still works, but contacts' revocations cannot reach this node.
            Err(RelayError::Refused {
                code: RefusalCode::Malformed,
                message,
            }) => {
                ctx.events.event(SyncEvent::Warning(format!(
                    "the relay cannot list key revocations ({message}); ask its operator to \
                     upgrade dossier-relay, or contacts' revocations will not reach this node"
                )));
                return Ok(());
            }
            Err(e) => return Err(e.into()),
        };
        let before = after;
        for item in items.iter().filter(|i| i.seq > before) {
            tokio::task::block_in_place(|| apply(ctx, item))?;
            after = after.max(item.seq);
        }
        revocation::advance_cursor(ctx.home, after)?;
        // A page is cut to one frame, so only an empty (or stale) page means the end.
        if after == before {
            return Ok(());
        }
    }
}

/// Applies one listed revocation if it concerns a pinned contact and verifies.
fn apply(ctx: &SyncContext<'_>, item: &RevocationItem) -> Result<(), NodeError> {
    let warn = |m: String| ctx.events.event(SyncEvent::Warning(m));
    let signed = match SignedRevocation::parse(item.revocation.as_bytes()) {
        Ok(s) => s,
        Err(e) => {
            warn(format!(
                "revocation #{} listed by the relay is unreadable and was ignored ({e})",
                item.seq
            ));
            return Ok(());
        }
    };
    let facility = signed.unverified().facility.clone();
    // Our own keys are revoked by `dossier key revoke`, never by what the relay lists.
    if facility.as_str() != item.facility || &facility == ctx.me.id() {
        return Ok(());
    }
    let now = Timestamp::now();
    let applied = with_state_lock(ctx.home, || {
        let mut book = ContactBook::load(ctx.home)?;
        let outcome = match book.apply_revocation(&signed, now) {
            Ok(o) => o,
            Err(e) => return Ok(Err(e)),
        };
        if let RevocationOutcome::Applied { earlier_key } = outcome {
            let country = book.get(&facility).map(|c| c.card.country());
            // The reason is the contact's free text: it stays out of the audit trail.
            ctx.actor.record(
                AuditEvent::new(AuditAction::ContactRevoked)
                    .counterpart(&facility, country)
                    .detail(if earlier_key {
                        "an earlier key revoked by its owner; the keys it vouched for distrusted"
                    } else {
                        "key revoked by its owner"
                    }),
            )?;
            book.save(ctx.home)?;
        }
        Ok(Ok(outcome))
    })?;
    match applied {
        Ok(RevocationOutcome::Applied { .. }) => {
            refuse_queued(ctx, facility.as_str(), now)?;
            ctx.events.event(SyncEvent::ContactRevoked {
                id: facility.to_string(),
                reason: one_line(&signed.unverified().reason, 200),
            });
        }
        Ok(RevocationOutcome::NotPinned) => revocation::remember_unpinned(ctx.home, &signed)?,
        Ok(RevocationOutcome::AlreadyApplied) => {}
        Err(e) => warn(format!(
            "a revocation for {facility} listed by the relay does not match the pinned card and \
             was ignored ({e})"
        )),
    }
    Ok(())
}

/// Bundles still waiting for upload to `facility` were sealed to a key now distrusted: they
/// are refused for good rather than handed to whoever holds that key now.
fn refuse_queued(ctx: &SyncContext<'_>, facility: &str, now: Timestamp) -> Result<(), NodeError> {
    let queued: Vec<OutboxRecord> = outbox::list(ctx.home)?
        .into_iter()
        .filter(|r| r.needs_upload() && r.to.iter().any(|t| t == facility))
        .collect();
    for rec in queued {
        let why = format!(
            "{facility} revoked the key this bundle is encrypted to, so it was not uploaded; send \
             the files again once {facility}'s new card is pinned"
        );
        outbox::update(ctx.home, &rec.bundle_id, |r| r.mark_refused(&why, now))?;
        ctx.events.event(SyncEvent::UploadRefused {
            bundle_id: rec.bundle_id,
            error: why,
        });
    }
    Ok(())
}
