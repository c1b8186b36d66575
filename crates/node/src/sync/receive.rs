//! Receiving: mailbox items become inbox or quarantine entries — verified, durable, then
//! acknowledged, then receipted (see the order in the parent module's docs).

#[cfg(test)]
use std::fs::File;
use std::io::Read;

use dossier_bundle::open::{FailureClass, VerifiedBundle, verify};
use dossier_bundle::receipt::{DeliveryReceipt, ReceiptStatus, SignedReceipt};
use dossier_bundle::{BundleId, OpenError, PartyRef, Timestamp};
use dossier_wire::MailboxItem;
use dossier_wire::message::MAX_LIST_ITEMS;

use super::{Session, SyncContext, SyncEvent, TRIES, backoff, relay_time};
use crate::audit::{AuditAction, AuditEvent, AuditOutcome};
use crate::contacts::{ContactBook, Pins};
use crate::error::NodeError;
use crate::home::NodeHome;
use crate::inbox::{self, Arrival};
use crate::relay_client::RelayError;
#[cfg(test)]
use crate::statefile::measure_file;
use crate::statefile::{hex, one_line};
use crate::transfer::{DownloadPipeline, Downloaded};

pub(super) async fn receive_mail(
    ctx: &SyncContext<'_>,
    session: &mut Session<'_, '_>,
) -> Result<(), NodeError> {
    inbox::prepare(ctx.home)?;
    // One receiver per home at a time (e.g. `sync --watch` and a manual `sync`): the other
    // waits, then finds the work done.
    let mut lock =
        crate::statefile::file_lock(&inbox::incoming_dir(ctx.home).join(".receive.lock"))?;
    let _receiving = tokio::task::block_in_place(|| lock.write())
        .map_err(NodeError::io("taking the receive lock"))?;
    let book = ContactBook::load(ctx.home)?;
    let mut own_cards = vec![ctx.me.clone()];
    own_cards.extend(crate::identity::my_retired_cards(ctx.home)?);
    let pins = Pins {
        book: &book,
        own_cards: &own_cards,
    };
    loop {
        let items = with_retry!(session, |c| c.mailbox())?;
        let full = items.len() >= MAX_LIST_ITEMS;
        if !full {
            remove_stale_parts(ctx.home, &items);
        }
        let mut acked = 0usize;
        for item in &items {
            if receive_one(ctx, session, &pins, item).await? {
                acked += 1;
            }
        }
        if !full || acked == 0 {
            return Ok(());
        }
    }
}

/// Removes partial downloads of bundles the relay no longer lists (expired, or received
/// meanwhile by another process): they can never be resumed.
fn remove_stale_parts(home: &NodeHome, listed: &[MailboxItem]) {
    let Ok(entries) = std::fs::read_dir(inbox::incoming_dir(home)) else {
        return;
    };
    for e in entries.flatten() {
        let path = e.path();
        let stem = path.file_stem().and_then(|s| s.to_str()).unwrap_or("");
        let is_part = path.extension().is_some_and(|x| x == "part");
        if is_part && !listed.iter().any(|i| i.bundle_id == stem) {
            let _ = std::fs::remove_file(&path);
        }
    }
}

/// Fetches, checks, files and acknowledges one mailbox item. Returns whether it was
/// acknowledged (so the mailbox shrank).
async fn receive_one(
    ctx: &SyncContext<'_>,
    session: &mut Session<'_, '_>,
    pins: &Pins<'_>,
    item: &MailboxItem,
) -> Result<bool, NodeError> {
    let Ok(id) = BundleId::parse(&item.bundle_id) else {
        ctx.events.event(SyncEvent::Warning(format!(
            "the relay listed a malformed bundle id ({} characters); skipped",
            item.bundle_id.len()
        )));
        return Ok(false);
    };
    let id = id.as_str().to_owned();
    if let Some(known) = inbox::known(ctx.home, &id)? {
        with_retry!(session, |c| c.ack(&id))?;
        ctx.events.event(SyncEvent::Duplicate {
            bundle_id: id.clone(),
        });
        // The sender may not have the receipt yet (e.g. we stopped before posting it).
        post_receipt(ctx, session, &id, known.receipt()).await?;
        return Ok(true);
    }

    let part = inbox::part_path(ctx.home, &id);
    // Download, store, hash and verify in one pass (see `transfer`); retries within this
    // call continue the same pipeline from the byte where the connection dropped.
    let (fetched, finished, resumed_from) = tokio::task::block_in_place(|| {
        std::thread::scope(|scope| -> Result<_, NodeError> {
            let mut pipeline =
                DownloadPipeline::start(scope, &part, item.length, |body: &mut dyn Read| {
                    verify(body, ctx.keyring, ctx.me.id(), pins)
                })
                .map_err(NodeError::io("opening the download"))?;
            let resumed_from = pipeline.sink.resumed_from();
            let fetched = tokio::runtime::Handle::current().block_on(async {
                tokio::select! {
                    r = async {
                        with_retry!(session, |c| c.fetch(item, &mut pipeline.sink, ctx.progress))
                    } => r,
                    () = ctx.stop.raised() => Err(RelayError::ConnectionLost(
                        "stopped by the operator; the download resumes at the next sync".into(),
                    )),
                }
            });
            let finished = pipeline
                .finish()
                .map_err(NodeError::io("storing the download"))?;
            Ok((fetched, finished, resumed_from))
        })
    })?;
    match fetched {
        Ok(()) => {}
        Err(e) if e.refuses_node() || e.is_connection_problem() => return Err(e.into()),
        Err(e @ RelayError::Local { .. }) => return Err(e.into()),
        Err(e) => {
            ctx.events.event(SyncEvent::DownloadDeferred {
                bundle_id: id,
                error: e.to_string(),
            });
            return Ok(false);
        }
    }
    let Some(downloaded) = finished else {
        ctx.events.event(SyncEvent::DownloadDeferred {
            bundle_id: id,
            error: "the download ended before the last byte; it resumes at the next sync".into(),
        });
        return Ok(false);
    };
    let filed = tokio::task::block_in_place(|| {
        file_verified(ctx, pins, item, &part, resumed_from, downloaded)
    })?;
    let Some(receipt_text) = filed else {
        ctx.events.event(SyncEvent::DownloadDeferred {
            bundle_id: id,
            error: "the downloaded bytes do not match the relay's listing (length or SHA-256); discarded, it will be fetched again".into(),
        });
        return Ok(false);
    };
    // Durable here: now the relay may forget it.
    with_retry!(session, |c| c.ack(&id))?;
    post_receipt(ctx, session, &id, &receipt_text).await?;
    Ok(true)
}

/// Checks a complete download already on disk against the relay's listing, verifies it
/// (pass 1 of opening) and files it; see [`file_verified`]. Blocking.
#[cfg(test)]
pub(super) fn file_download(
    ctx: &SyncContext<'_>,
    pins: &Pins<'_>,
    item: &MailboxItem,
    part: &std::path::Path,
    resumed_from: u64,
) -> Result<Option<String>, NodeError> {
    let (length, sha256) = measure_file(part).map_err(NodeError::io("reading the download"))?;
    let verdict = File::open(part).map_err(OpenError::Io).and_then(|f| {
        verify(
            std::io::BufReader::with_capacity(256 * 1024, f),
            ctx.keyring,
            ctx.me.id(),
            pins,
        )
    });
    let downloaded = Downloaded {
        length,
        sha256,
        verdict,
    };
    file_verified(ctx, pins, item, part, resumed_from, downloaded)
}

/// Files a complete, verified download: into the inbox if every check passed, else into
/// quarantine. Returns the signed receipt to send back, or `None` if the bytes do not match
/// the relay's listing and part of them came from an earlier attempt (the download is
/// discarded and fetched again from the first byte). Blocking: call it off the async
/// workers.
pub(super) fn file_verified(
    ctx: &SyncContext<'_>,
    pins: &Pins<'_>,
    item: &MailboxItem,
    part: &std::path::Path,
    resumed_from: u64,
    downloaded: Downloaded<Result<VerifiedBundle, OpenError>>,
) -> Result<Option<String>, NodeError> {
    let id = item.bundle_id.clone();
    let Downloaded {
        length,
        sha256: sha,
        verdict: verified,
    } = downloaded;
    let sha_hex = hex(&sha);
    let off_listing = length != item.length || sha_hex != item.sha256;
    if off_listing && resumed_from > 0 {
        // Part of it came from an earlier attempt whose bytes may have been damaged here:
        // fetch it once more from the first byte before blaming the relay.
        let _ = std::fs::remove_file(part);
        return Ok(None);
    }
    // A whole, fresh download that is not what the relay listed is quarantined like any
    // other failed check (§15.5) and its sender told through a `rejected` receipt naming
    // the hash received, instead of the same wrong bytes being fetched at every sync.
    let off_listing = off_listing.then(|| {
        (
            "verification_failed",
            "the body the relay served does not match its own listing (length or SHA-256)"
                .to_owned(),
            "the body differs from the relay's listing".to_owned(),
        )
    });

    let now = Timestamp::now();
    let arrival = Arrival {
        bundle_id: id.clone(),
        relay_from: item.from.clone(),
        length,
        ciphertext_sha256: sha_hex,
        deposited_at: relay_time(item.deposited_at, now),
        received_at: now,
    };
    let rejection = match &verified {
        Err(OpenError::Io(e)) => {
            return Err(NodeError::io("reading the download to verify it")(
                std::io::Error::new(e.kind(), e.to_string()),
            ));
        }
        Err(e) if off_listing.is_some() => Some((class_name(e), e.to_string(), receipt_reason(e))),
        _ if off_listing.is_some() => off_listing,
        Ok(v) if v.manifest().bundle_id.as_str() != id => Some((
            "verification_failed",
            "the bundle id signed inside differs from the one the relay listed".to_owned(),
            "the signed bundle id differs from the relay's listing".to_owned(),
        )),
        Ok(v) if v.manifest().sender.id.as_str() != item.from => Some((
            "verification_failed",
            format!(
                "the bundle is signed by {} but the relay says {} deposited it",
                v.manifest().sender.id,
                item.from
            ),
            "signed by another facility than the depositor".to_owned(),
        )),
        Ok(_) => None,
        Err(e) => Some((class_name(e), e.to_string(), receipt_reason(e))),
    };

    let receipt_text = match (rejection, verified) {
        (None, Ok(v)) => {
            let receipt = sign_receipt(ctx, &id, &sha, ReceiptStatus::Delivered, None)?;
            let sender = &v.manifest().sender.id;
            let country = pins.book.get(sender).map(|c| c.card.country());
            ctx.actor.record(
                AuditEvent::new(AuditAction::Receive)
                    .bundle(&v.manifest().bundle_id)
                    .counterpart(sender, country),
            )?;
            let rec = inbox::admit(ctx.home, part, &v, &arrival, &receipt)?;
            ctx.events.event(SyncEvent::Received {
                bundle_id: id.clone(),
                from: rec.from.clone(),
                kind: rec.kind.as_str().to_owned(),
                length,
                resumed_from,
            });
            rec.receipt
        }
        (Some((class, reason, short)), _) => {
            let receipt = sign_receipt(ctx, &id, &sha, ReceiptStatus::Rejected, Some(short))?;
            let mut event = AuditEvent::new(AuditAction::Quarantine)
                .outcome(AuditOutcome::Refused)
                .detail(class);
            if let Ok(bundle) = BundleId::parse(&id) {
                event = event.bundle(&bundle);
            }
            if let Ok(from) = dossier_bundle::FacilityId::parse(&item.from) {
                let country = pins.book.get(&from).map(|c| c.card.country());
                event = event.counterpart(&from, country);
            }
            ctx.actor.record(event)?;
            let rec = inbox::quarantine(ctx.home, part, &arrival, &reason, class, &receipt)?;
            ctx.events.event(SyncEvent::Quarantined {
                bundle_id: id.clone(),
                relay_from: item.from.clone(),
                reason: rec.reason.clone(),
            });
            rec.receipt
        }
        (None, Err(_)) => unreachable!("every verification error is a rejection"),
    };
    Ok(Some(receipt_text))
}

async fn post_receipt(
    ctx: &SyncContext<'_>,
    session: &mut Session<'_, '_>,
    bundle_id: &str,
    receipt: &str,
) -> Result<(), NodeError> {
    match with_retry!(session, |c| c.post_receipt(receipt)) {
        Ok(()) => inbox::mark_receipt_posted(ctx.home, bundle_id),
        Err(e) if e.is_connection_problem() || e.refuses_node() => Err(e.into()),
        Err(e) => {
            ctx.events.event(SyncEvent::Warning(format!(
                "the relay did not store the receipt for {bundle_id} ({e}); it is sent again at the next sync"
            )));
            Ok(())
        }
    }
}

pub(super) async fn post_pending_receipts(
    ctx: &SyncContext<'_>,
    session: &mut Session<'_, '_>,
) -> Result<(), NodeError> {
    for (id, receipt) in inbox::unposted_receipts(ctx.home)? {
        post_receipt(ctx, session, &id, &receipt).await?;
    }
    // `opened` receipts written by `dossier open` since the last sync.
    for (id, receipt) in crate::retention::unposted_opened_receipts(ctx.home)? {
        match with_retry!(session, |c| c.post_receipt(&receipt)) {
            Ok(()) => crate::retention::mark_opened_receipt_posted(ctx.home, &id)?,
            Err(e) if e.is_connection_problem() || e.refuses_node() => return Err(e.into()),
            Err(e) => ctx.events.event(SyncEvent::Warning(format!(
                "the relay did not store the opened receipt for {id} ({e}); it is sent again at the next sync"
            ))),
        }
    }
    Ok(())
}

pub(super) fn sign_receipt(
    ctx: &SyncContext<'_>,
    bundle_id: &str,
    sha: &[u8; 32],
    status: ReceiptStatus,
    reason: Option<String>,
) -> Result<SignedReceipt, NodeError> {
    let keys = ctx.keyring.current();
    let receipt = DeliveryReceipt {
        bundle_id: BundleId::parse(bundle_id)?,
        ciphertext_sha256: *sha,
        recipient: PartyRef {
            id: ctx.me.id().clone(),
            key: keys.key_id(),
        },
        status,
        reason: reason.map(|r| one_line(&r, dossier_bundle::receipt::MAX_REASON_CHARS)),
        at: Timestamp::now(),
    };
    SignedReceipt::sign(receipt, keys)
        .map_err(|e| NodeError::io("signing a receipt")(std::io::Error::other(e.to_string())))
}

fn class_name(e: &OpenError) -> &'static str {
    match e.class() {
        FailureClass::UnknownSender => "unknown_sender",
        FailureClass::PinMismatch => "pin_mismatch",
        _ => "verification_failed",
    }
}

/// The reason sent to the sender in a `rejected` receipt: short, no record content.
pub(super) fn receipt_reason(e: &OpenError) -> String {
    match e {
        OpenError::UnknownSender(id) => {
            format!("the sender {id} is not a pinned contact of the recipient")
        }
        OpenError::SenderKeyMismatch { sender, .. } => {
            format!("signed with a key the recipient has not pinned for {sender}")
        }
        OpenError::SenderKeyRevoked { sender, .. } => {
            format!("signed with a key {sender} revoked")
        }
        OpenError::NotForMe => "not encrypted to the recipient's current or retired keys".into(),
        OpenError::NotListedRecipient => {
            "the signed recipient list does not name the recipient".into()
        }
        OpenError::BadSignature => "the signature does not verify".into(),
        OpenError::Tampered(_) => "the ciphertext is damaged or was tampered with".into(),
        OpenError::Manifest(_) => "the manifest is invalid or from a newer version".into(),
        OpenError::UnknownFormat => "unknown bundle format (newer version?)".into(),
        _ => "not a valid dossier bundle".into(),
    }
}
