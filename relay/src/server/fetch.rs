//! Fetches: streaming a held ciphertext to one of its recipients from any offset
//! (docs/protocol.md §15.3; invariant 9).
//!
//! ```text
//! node                                   relay
//! Fetch {bundle_id, offset}              →
//!                                        ← Body {length, offset}, ciphertext[offset..length], finish
//!                                          (or Refused {unknown_bundle})
//! ```
//!
//! A blocking thread reads the body file in pieces of at most 1 MiB into a short channel;
//! the network side writes them out as the node's flow control allows. The pieces are the
//! store's own aligned read buffers, recycled once QUIC is done with them, so serving a
//! body neither zero-fills nor copies it on the way. Memory per fetch is bounded by the
//! channel and the connection's send window, not the bundle. If the file turns out shorter than its record
//! (which the store's checks make a corruption), the stream is reset rather than finished,
//! so the node can never mistake a short body for a whole one.

use std::io::{Seek, SeekFrom};
use std::sync::Arc;

use bytes::Bytes;
use dossier_wire::{RefusalCode, ServerMessage};
use quinn::{RecvStream, SendStream};
use tokio::sync::mpsc;

use super::deposit::{CHANNEL_DEPTH, CHUNK_BYTES};
use super::framing::{write_chunk, write_frame};
use super::refusal::{from_store, refused};
use super::request::answer;
use super::{Context, blocking, stream_code};
use crate::store::{HeldBlob, StoreError};

/// Handles one `Fetch` request from `recipient`.
pub(crate) async fn handle(
    ctx: &Arc<Context>,
    recipient: &Arc<str>,
    bundle_id: &str,
    offset: u64,
    mut send: SendStream,
    recv: RecvStream,
) {
    let store = Arc::clone(&ctx.store);
    let (id, who) = (bundle_id.to_owned(), Arc::clone(recipient));
    let blob = match blocking(move || store.open_blob(&id, &who)).await {
        Ok(blob) => blob,
        Err(e) => return answer(send, recv, &from_store(&e)).await,
    };
    let length = blob.length;
    if offset > length {
        let why = refused(
            RefusalCode::Malformed,
            format!(
                "offset {offset} is past the end of bundle {bundle_id} ({length} bytes); fetch \
                 from an offset at most the length"
            ),
        );
        return answer(send, recv, &why).await;
    }
    drop(recv);
    if write_frame(&mut send, &ServerMessage::Body { length, offset })
        .await
        .is_err()
    {
        return;
    }
    let _permit = ctx.transfers.acquire(recipient).await;
    let (tx, mut rx) = mpsc::channel::<Result<Bytes, StoreError>>(CHANNEL_DEPTH);
    let reader = tokio::task::spawn_blocking(move || read_body(blob, offset, &tx));
    let mut sent = 0u64;
    let mut failed = false;
    while let Some(chunk) = rx.recv().await {
        match chunk {
            Ok(bytes) => {
                let n = bytes.len() as u64;
                // Handed to QUIC as it is, without another copy.
                if write_chunk(&mut send, bytes).await.is_err() {
                    failed = true;
                    break; // the node went away; dropping rx stops the reader
                }
                sent += n;
            }
            Err(e) => {
                tracing::error!(%bundle_id, error = %e, "reading a body failed");
                failed = true;
                break;
            }
        }
    }
    drop(rx);
    let _ = reader.await;
    if failed || sent != length - offset {
        if !failed {
            tracing::error!(%bundle_id, sent, expected = length - offset, "body shorter than its record");
        }
        let _ = send.reset(stream_code::REFUSED);
        return;
    }
    let _ = send.finish();
    tracing::info!(%bundle_id, %recipient, offset, bytes = sent, "body sent");
}

/// Blocking side: reads `blob` from `offset` to its end in pieces of at most
/// [`CHUNK_BYTES`] (the store's own buffers where it can, see [`crate::store::BlobRead::read_piece`]).
fn read_body(mut blob: HeldBlob, offset: u64, tx: &mpsc::Sender<Result<Bytes, StoreError>>) {
    if let Err(e) = blob.reader.seek(SeekFrom::Start(offset)) {
        let _ = tx.blocking_send(Err(StoreError::Io {
            context: "positioning a body",
            source: e,
        }));
        return;
    }
    let mut left = blob.length - offset;
    while left > 0 {
        let want = usize::try_from(left).map_or(CHUNK_BYTES, |l| l.min(CHUNK_BYTES));
        let piece = match blob.reader.read_piece(want) {
            Ok(piece) => piece,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => {
                let _ = tx.blocking_send(Err(StoreError::Io {
                    context: "reading a body",
                    source: e,
                }));
                return;
            }
        };
        if piece.is_empty() {
            return; // short file: the sender side notices the missing bytes
        }
        left -= piece.len() as u64;
        if tx.blocking_send(Ok(piece)).is_err() {
            return;
        }
    }
}
