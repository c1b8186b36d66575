//! Receipts for bundles this node sent: checked against the recipient's pin and against the
//! deposited ciphertext hash before they change any outbox state.

use dossier_bundle::Timestamp;
use dossier_bundle::receipt::SignedReceipt;
use dossier_wire::message::{MAX_LIST_ITEMS, NoticeKind, ReceiptItem};

use super::{Session, SyncContext, SyncEvent, SyncState, TRIES, backoff, relay_time};
use crate::contacts::ContactBook;
use crate::error::NodeError;
use crate::outbox::{self, Applied};
use crate::statefile::{hex, one_line};

pub(super) async fn collect_receipts(
    ctx: &SyncContext<'_>,
    session: &mut Session<'_, '_>,
) -> Result<(), NodeError> {
    let book = ContactBook::load(ctx.home)?;
    let mut after = SyncState::load(ctx.home)?.receipts_after;
    loop {
        let items = with_retry!(session, |c| c.receipts(after))?;
        let before = after;
        for item in &items {
            if item.seq <= before {
                continue;
            }
            apply_receipt_item(ctx, &book, item)?;
            after = after.max(item.seq);
        }
        SyncState::advance(ctx.home, after, Timestamp::now())?;
        if items.len() < MAX_LIST_ITEMS || after == before {
            return Ok(());
        }
    }
}

pub(super) fn apply_receipt_item(
    ctx: &SyncContext<'_>,
    book: &ContactBook,
    item: &ReceiptItem,
) -> Result<(), NodeError> {
    let warn = |m: String| ctx.events.event(SyncEvent::Warning(m));
    let now = Timestamp::now();
    if item.notice == Some(NoticeKind::Expired) {
        let at = relay_time(item.at, now);
        let applied = outbox::update(ctx.home, &item.bundle_id, |r| {
            r.apply_expired(&item.recipient, at)
        })?;
        report_applied(ctx, item, applied, at);
        return Ok(());
    }
    let Some(text) = &item.receipt else {
        warn(format!(
            "the relay sent an entry for bundle {} without a receipt or a known notice; ignored",
            short(&item.bundle_id)
        ));
        return Ok(());
    };
    let checked = match check_receipt(book, item, text) {
        Ok(r) => r,
        Err(why) => {
            warn(format!(
                "receipt for bundle {} from {} ignored: {why}",
                short(&item.bundle_id),
                short(&item.recipient)
            ));
            return Ok(());
        }
    };
    let r = checked.receipt();
    let sha = hex(&r.ciphertext_sha256);
    let applied = outbox::update(ctx.home, r.bundle_id.as_str(), |rec| {
        let matches = rec.ciphertext_sha256 == sha;
        rec.apply_receipt(
            r.recipient.id.as_str(),
            r.status,
            r.reason.as_deref(),
            r.at,
            text,
            matches,
        )
    })?;
    report_applied(ctx, item, applied, r.at);
    Ok(())
}

fn report_applied(
    ctx: &SyncContext<'_>,
    item: &ReceiptItem,
    applied: Option<Applied>,
    at: Timestamp,
) {
    let event = match applied {
        None => SyncEvent::Warning(format!(
            "the relay reported on bundle {}, which is not in this node's outbox; ignored",
            short(&item.bundle_id)
        )),
        Some(Applied::Changed(state)) => SyncEvent::Receipt {
            bundle_id: item.bundle_id.clone(),
            recipient: item.recipient.clone(),
            state,
            at,
        },
        Some(Applied::Unchanged) => return,
        Some(Applied::NotARecipient) => SyncEvent::Warning(format!(
            "a receipt for bundle {} names {}, who is not one of its recipients; ignored",
            item.bundle_id,
            short(&item.recipient)
        )),
        Some(Applied::CiphertextMismatch) => SyncEvent::Warning(format!(
            "ALERT: {} received different ciphertext for bundle {} than this node deposited: the relay substituted it. See `dossier status {}`",
            item.recipient, item.bundle_id, item.bundle_id
        )),
    };
    ctx.events.event(event);
}

/// Parses and checks a receipt against the recipient's pinned card (current or previous).
fn check_receipt(
    book: &ContactBook,
    item: &ReceiptItem,
    text: &str,
) -> Result<SignedReceipt, String> {
    let signed = SignedReceipt::parse(text.as_bytes()).map_err(|e| e.to_string())?;
    let r = signed.receipt();
    if r.recipient.id.as_str() != item.recipient || r.bundle_id.as_str() != item.bundle_id {
        return Err("it names another bundle or recipient than the relay's entry".into());
    }
    let contact = book
        .get(&r.recipient.id)
        .ok_or("the recipient is not a pinned contact")?;
    let card = std::iter::once(&contact.card)
        .chain(contact.previous.iter())
        .find(|c| c.key_id() == signed.signer_key())
        .ok_or("it is signed with a key not pinned for the recipient")?;
    if !signed.verify(card) {
        return Err("its signature does not verify".into());
    }
    Ok(signed)
}

/// At most 64 characters of relay-supplied text, without control characters.
fn short(s: &str) -> String {
    one_line(s, 64)
}
