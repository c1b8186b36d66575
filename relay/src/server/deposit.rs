//! Deposits: a streamed, resumable upload made durable before it is acknowledged
//! (docs/protocol.md §15.3; invariants 5 and 9).
//!
//! ```text
//! node                                   relay
//! Deposit {bundle_id, recipients, length, sha256}  →
//!                                        ← DepositOffset {have}      (bytes already durable)
//! ciphertext[have..length], finish       →
//!                                        ← DepositAccepted {bundle_id, accepted_at}
//!                                          (after fsync, directory fsync, index commit)
//!                                        → Notice new_mail to each connected recipient
//! ```
//!
//! The network side reads into buffers of at most [`CHUNK_BYTES`] and hands them over a
//! channel of [`CHANNEL_DEPTH`] to a blocking thread that owns the store's upload, so disk
//! and network overlap and one deposit holds at most a few MiB whatever the bundle's size.
//! If the connection drops, the bytes received so far are still written and kept: the
//! node's next `Deposit` is answered with a larger `have`.

use std::sync::Arc;
use std::time::Duration;

use dossier_wire::message::NoticeKind;
use dossier_wire::{RefusalCode, ServerMessage};
use quinn::{RecvStream, SendStream};
use tokio::sync::mpsc;

use super::framing::write_frame;
use super::notices::notify;
use super::refusal::{from_store, refused};
use super::request::answer;
use super::{Context, blocking, stream_code};
use crate::clock::now_unix;
use crate::store::{
    Accepted, DepositMeta, DepositStart, DepositUpload, StoreError, digest_from_hex,
};

/// Largest buffer handed from the network to the disk.
pub(crate) const CHUNK_BYTES: usize = 1 << 20;
/// Buffers in flight between network and disk per transfer.
pub(crate) const CHANNEL_DEPTH: usize = 2;
/// Longest silence from the node in the middle of a body.
pub(crate) const BODY_IDLE_TIMEOUT: Duration = Duration::from_secs(30);

/// The deposit request's fields, as received.
pub(crate) struct Announced {
    pub bundle_id: String,
    pub recipients: Vec<String>,
    pub length: u64,
    pub sha256: String,
}

/// What the network side hands the disk side.
enum Chunk {
    Bytes(Vec<u8>),
    /// The node finished its side: make the deposit durable.
    End,
}

/// How the body transfer ended, for the answer.
enum Outcome {
    Accepted(Accepted),
    Refused(ServerMessage),
    /// The node went away (or stalled); the bytes received are kept for resuming.
    Interrupted(&'static str),
}

/// Handles one `Deposit` request from `sender`.
pub(crate) async fn handle(
    ctx: &Arc<Context>,
    sender: &Arc<str>,
    announced: Announced,
    mut send: SendStream,
    mut recv: RecvStream,
) {
    let Some(sha256) = digest_from_hex(&announced.sha256) else {
        let why = refused(
            RefusalCode::Malformed,
            "sha256 must be 64 lowercase hex digits",
        );
        return answer(send, recv, &why).await;
    };
    let meta = DepositMeta {
        bundle_id: announced.bundle_id,
        sender: sender.to_string(),
        recipients: announced.recipients,
        length: announced.length,
        sha256,
    };
    let bundle_id = meta.bundle_id.clone();
    let recipients = meta.recipients.clone();
    let store = Arc::clone(&ctx.store);
    let start = blocking(move || store.begin_deposit(&meta, now_unix())).await;
    let upload = match start {
        Ok(DepositStart::AlreadyAccepted(a)) => {
            tracing::info!(%bundle_id, %sender, "deposit already accepted (retry)");
            return answer(send, recv, &accepted_reply(&a)).await;
        }
        Ok(DepositStart::Upload(upload)) => upload,
        Err(e) => {
            tracing::info!(%bundle_id, %sender, error = %e, "deposit refused");
            return answer(send, recv, &from_store(&e)).await;
        }
    };
    let have = upload.offset();
    let length = upload.meta().length;
    if write_frame(&mut send, &ServerMessage::DepositOffset { have })
        .await
        .is_err()
    {
        return; // the upload is dropped, keeping its bytes
    }
    tracing::info!(%bundle_id, %sender, length, have, "deposit receiving");
    let _permit = ctx.transfers.acquire(sender).await;
    match receive_body(upload, &mut recv).await {
        Outcome::Accepted(a) => {
            tracing::info!(%bundle_id, %sender, length, recipients = recipients.len(), "deposit accepted");
            if write_frame(&mut send, &accepted_reply(&a)).await.is_ok() {
                let _ = send.finish();
            }
            for r in &recipients {
                notify(ctx, r, NoticeKind::NewMail, &bundle_id);
            }
        }
        Outcome::Refused(why) => {
            tracing::info!(%bundle_id, %sender, "deposit refused after upload");
            answer(send, recv, &why).await;
        }
        Outcome::Interrupted(how) => {
            tracing::info!(%bundle_id, %sender, how, "deposit interrupted; kept for resuming");
            let _ = recv.stop(stream_code::REFUSED);
            let _ = send.reset(stream_code::REFUSED);
        }
    }
}

fn accepted_reply(a: &Accepted) -> ServerMessage {
    ServerMessage::DepositAccepted {
        bundle_id: a.bundle_id.clone(),
        accepted_at: a.accepted_at,
    }
}

/// Streams the body from `recv` into `upload` and finishes it when the node finishes.
async fn receive_body(upload: Box<dyn DepositUpload>, recv: &mut RecvStream) -> Outcome {
    let (tx, rx) = mpsc::channel::<Chunk>(CHANNEL_DEPTH);
    let writer = tokio::task::spawn_blocking(move || write_body(upload, rx));
    let interrupted = read_body(recv, &tx).await;
    drop(tx);
    let written = match writer.await {
        Ok(r) => r,
        Err(e) => {
            tracing::error!(error = %e, "deposit writer failed");
            return Outcome::Refused(super::refusal::internal());
        }
    };
    match (written, interrupted) {
        (Some(Ok(a)), _) => Outcome::Accepted(a),
        (Some(Err(e)), _) => Outcome::Refused(from_store(&e)),
        (None, Some(how)) => Outcome::Interrupted(how),
        (None, None) => Outcome::Interrupted("ended"),
    }
}

/// Network side: reads buffers and sends them on; `End` when the node finished. Returns why
/// it stopped early, if it did. Bytes already read are always handed over first.
async fn read_body(recv: &mut RecvStream, tx: &mpsc::Sender<Chunk>) -> Option<&'static str> {
    loop {
        let mut buf = vec![0u8; CHUNK_BYTES];
        let mut filled = 0;
        let mut stop = None;
        let mut finished = false;
        while filled < buf.len() {
            match tokio::time::timeout(BODY_IDLE_TIMEOUT, recv.read(&mut buf[filled..])).await {
                Ok(Ok(Some(n))) => filled += n,
                Ok(Ok(None)) => {
                    finished = true;
                    break;
                }
                Ok(Err(_)) => {
                    stop = Some("connection lost or stream reset");
                    break;
                }
                Err(_) => {
                    stop = Some("node silent for too long");
                    break;
                }
            }
        }
        buf.truncate(filled);
        if !buf.is_empty() && tx.send(Chunk::Bytes(buf)).await.is_err() {
            return None; // the writer stopped: its result says why
        }
        if stop.is_some() {
            return stop;
        }
        if finished {
            let _ = tx.send(Chunk::End).await;
            return None;
        }
    }
}

/// Disk side, on a blocking thread. `None` if the channel closed without `End` (the upload
/// is dropped, keeping its bytes); otherwise the store's verdict.
fn write_body(
    mut upload: Box<dyn DepositUpload>,
    mut rx: mpsc::Receiver<Chunk>,
) -> Option<Result<Accepted, StoreError>> {
    while let Some(chunk) = rx.blocking_recv() {
        match chunk {
            Chunk::Bytes(bytes) => {
                if let Err(e) = upload.write_all(&bytes) {
                    return Some(Err(e));
                }
            }
            Chunk::End => return Some(upload.finish(now_unix())),
        }
    }
    None
}
