//! One request stream: read the request frame, dispatch, answer (docs/protocol.md §15.3).
//!
//! Deposits and fetches stream ciphertext and live in their own modules; the small requests
//! (mailbox, ack, receipts, directory) are answered here with one frame each, key
//! revocations in `revocation`. Listings are
//! cut to what fits one frame; they are paged by their cursors, so nothing is lost.
//! The requesting facility is always the authenticated one, never a field of the request.

use std::sync::Arc;

use dossier_bundle::receipt::SignedReceipt;
use dossier_wire::message::{MAX_LIST_ITEMS, NoticeKind, ReceiptItem};
use dossier_wire::{ClientMessage, MailboxItem, RefusalCode, ServerMessage, WireError};
use quinn::{RecvStream, SendStream};

use super::framing::{FRAME_TIMEOUT, ReadFrameError, fit_in_frame, read_frame, write_frame};
use super::refusal::{from_store, internal, refused};
use super::{Context, blocking, deposit, fetch, revocation, stream_code};
use crate::clock::now_unix;
use crate::store::{AckOutcome, NoticeBody, StoreError, to_hex};

/// Handles one request stream from `facility`.
pub(crate) async fn handle(
    ctx: Arc<Context>,
    facility: Arc<str>,
    send: SendStream,
    mut recv: RecvStream,
) {
    let msg = match read_frame::<ClientMessage>(&mut recv, FRAME_TIMEOUT).await {
        Ok(msg) => msg,
        // Nobody is listening for an answer.
        Err(ReadFrameError::Stream(_)) | Err(ReadFrameError::Ended) => return,
        Err(ReadFrameError::TimedOut) => {
            let why = refused(
                RefusalCode::Malformed,
                format!(
                    "the request frame did not arrive within {} s; send it again",
                    FRAME_TIMEOUT.as_secs()
                ),
            );
            return answer(send, recv, &why).await;
        }
        Err(ReadFrameError::Wire(e)) => {
            let message = match e {
                WireError::TooLarge(n) => format!(
                    "the request frame announced {n} bytes; frames are at most {} bytes \
                     (docs/protocol.md §15.2); update dossier",
                    dossier_wire::MAX_FRAME_BYTES
                ),
                other => format!("{other}; update dossier"),
            };
            tracing::info!(%facility, "malformed request refused");
            return answer(send, recv, &refused(RefusalCode::Malformed, message)).await;
        }
    };
    if let Err(why) = msg.check_sizes() {
        return answer(send, recv, &refused(RefusalCode::Malformed, why)).await;
    }
    match msg {
        ClientMessage::Deposit {
            bundle_id,
            recipients,
            length,
            sha256,
        } => {
            let announced = deposit::Announced {
                bundle_id,
                recipients,
                length,
                sha256,
            };
            deposit::handle(&ctx, &facility, announced, send, recv).await;
        }
        ClientMessage::Fetch { bundle_id, offset } => {
            fetch::handle(&ctx, &facility, &bundle_id, offset, send, recv).await;
        }
        other => {
            let reply = small_request(&ctx, &facility, other).await;
            answer(send, recv, &reply).await;
        }
    }
}

/// Writes the one-frame answer and finishes the stream; after a refusal, also tells the
/// node to stop sending on it.
pub(crate) async fn answer(mut send: SendStream, mut recv: RecvStream, reply: &ServerMessage) {
    if matches!(reply, ServerMessage::Refused(_)) {
        let _ = recv.stop(stream_code::REFUSED);
    }
    if let Err(e) = write_frame(&mut send, reply).await {
        tracing::debug!(error = %e, "answer not delivered");
        return;
    }
    let _ = send.finish();
}

/// Answers the requests that need one store call and one frame.
async fn small_request(
    ctx: &Arc<Context>,
    facility: &Arc<str>,
    msg: ClientMessage,
) -> ServerMessage {
    let store = Arc::clone(&ctx.store);
    let who = Arc::clone(facility);
    let result = match msg {
        ClientMessage::Mailbox {} => {
            blocking(move || store.mailbox(&who, 0, MAX_LIST_ITEMS).map(mailbox_reply)).await
        }
        ClientMessage::Ack { bundle_id } => blocking(move || {
            let outcome = store.ack(&who, &bundle_id, now_unix())?;
            if outcome == AckOutcome::Released {
                tracing::info!(%bundle_id, "bundle delivered to every recipient; body released");
            }
            Ok(ServerMessage::Acked)
        })
        .await,
        ClientMessage::PostReceipt { receipt } => {
            return post_receipt(ctx, facility, receipt).await;
        }
        ClientMessage::Receipts { after } => {
            blocking(move || {
                store
                    .receipts(&who, after, MAX_LIST_ITEMS)
                    .map(receipts_reply)
            })
            .await
        }
        ClientMessage::Directory {} => blocking(move || directory_reply(&*store)).await,
        ClientMessage::PostRevocation { revocation } => {
            return revocation::post(ctx, facility, revocation).await;
        }
        ClientMessage::Revocations { after } => {
            blocking(move || {
                store
                    .revocations(after, MAX_LIST_ITEMS)
                    .map(revocation::list_reply)
            })
            .await
        }
        ClientMessage::Auth { .. } => {
            return refused(
                RefusalCode::Malformed,
                "this connection is already authenticated; auth is only the first message",
            );
        }
        ClientMessage::Deposit { .. } | ClientMessage::Fetch { .. } => return internal(),
    };
    result.unwrap_or_else(|e| from_store(&e))
}

fn mailbox_reply(entries: Vec<crate::store::MailboxEntry>) -> ServerMessage {
    let items = entries
        .into_iter()
        .map(|e| MailboxItem {
            bundle_id: e.bundle_id,
            from: e.from,
            length: e.length,
            sha256: to_hex(&e.sha256),
            deposited_at: e.deposited_at,
        })
        .collect();
    ServerMessage::Mailbox {
        items: fit_in_frame(items, 32),
    }
}

fn receipts_reply(notices: Vec<crate::store::SenderNotice>) -> ServerMessage {
    let items = notices
        .into_iter()
        .map(|n| {
            let (receipt, notice) = match n.body {
                NoticeBody::Receipt(bytes) => {
                    (Some(String::from_utf8_lossy(&bytes).into_owned()), None)
                }
                NoticeBody::Expired => (None, Some(NoticeKind::Expired)),
            };
            ReceiptItem {
                seq: n.seq,
                receipt,
                notice,
                bundle_id: n.bundle_id,
                recipient: n.recipient,
                at: n.at,
            }
        })
        .collect();
    ServerMessage::Receipts {
        items: fit_in_frame(items, 32),
    }
}

/// Cards of facilities enrolled and not revoked, in id order, as many as fit one frame.
fn directory_reply(store: &dyn crate::store::RelayStore) -> Result<ServerMessage, StoreError> {
    let cards: Vec<String> = store
        .enrollments()?
        .into_iter()
        .filter(|e| e.revoked_at.is_none())
        .map(|e| String::from_utf8_lossy(&e.card).into_owned())
        .collect();
    let total = cards.len();
    let cards = fit_in_frame(cards, 32);
    if cards.len() < total {
        tracing::warn!(
            listed = cards.len(),
            enrolled = total,
            "directory cut to one frame"
        );
    }
    Ok(ServerMessage::Directory { cards })
}

/// Checks a recipient's receipt (it must name the authenticated facility and verify under
/// its enrolled card, §15.3) and appends it to the sender's log.
async fn post_receipt(ctx: &Arc<Context>, facility: &Arc<str>, receipt: String) -> ServerMessage {
    let signed = match SignedReceipt::parse(receipt.as_bytes()) {
        Ok(s) => s,
        Err(e) => return refused(RefusalCode::Malformed, format!("{e}; update dossier")),
    };
    if signed.receipt().recipient.id.as_str() != &**facility {
        return refused(
            RefusalCode::Malformed,
            format!(
                "the receipt names {} as recipient but this connection is {facility}; post only \
                 your own receipts",
                signed.receipt().recipient.id
            ),
        );
    }
    let store = Arc::clone(&ctx.store);
    let who = Arc::clone(facility);
    let result = blocking(move || {
        let card = super::enrolled_card(store.as_ref(), &who)?;
        if !signed.verify(&card) {
            return Ok(Err(refused(
                RefusalCode::BadSignature,
                format!(
                    "the receipt's signature does not verify under the card enrolled for {who}; \
                     if you rotated your keys, ask the relay operator to enroll your new card"
                ),
            )));
        }
        let bundle_id = signed.receipt().bundle_id.as_str().to_owned();
        let seq = store.post_receipt(&bundle_id, &who, receipt.as_bytes(), now_unix())?;
        tracing::info!(%bundle_id, recipient = %who, seq, "receipt stored");
        Ok(Ok(ServerMessage::ReceiptStored))
    })
    .await;
    match result {
        Ok(Ok(reply)) | Ok(Err(reply)) => reply,
        Err(e) => from_store(&e),
    }
}
