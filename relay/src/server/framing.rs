//! Frames on QUIC streams (docs/protocol.md §15.2), with the limits that keep a slow or
//! hostile peer from holding the relay's memory.
//!
//! Reading follows `dossier_wire::check`: bytes accumulate until the check says the frame
//! is whole, and a header announcing more than 64 KiB is refused before its body is read.
//! The reader asks the stream only for the bytes the current frame still needs, so it never
//! swallows ciphertext that follows a frame. The whole frame must arrive before a deadline.

use std::time::Duration;

use dossier_wire::{FrameCheck, WireError};
use quinn::{RecvStream, SendStream};
use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::time::{Instant, timeout, timeout_at};

/// How long a peer may take to send one whole request frame.
pub(crate) const FRAME_TIMEOUT: Duration = Duration::from_secs(30);
/// How long one write may wait for the peer to make room (flow control).
pub(crate) const WRITE_TIMEOUT: Duration = Duration::from_secs(30);

/// Why no frame could be read.
#[derive(Debug)]
pub(crate) enum ReadFrameError {
    /// The peer finished the stream before a whole frame.
    Ended,
    /// The frame did not arrive before the deadline.
    TimedOut,
    /// The header or the JSON is not acceptable (too large, empty, unknown message).
    Wire(WireError),
    /// The stream was reset or the connection lost.
    Stream(quinn::ReadError),
}

/// Reads one frame and decodes it, within [`FRAME_TIMEOUT`] (or `limit`).
pub(crate) async fn read_frame<T: DeserializeOwned>(
    recv: &mut RecvStream,
    limit: Duration,
) -> Result<T, ReadFrameError> {
    let deadline = Instant::now() + limit;
    let mut buf: Vec<u8> = Vec::with_capacity(4);
    loop {
        let want = match dossier_wire::check(&buf).map_err(ReadFrameError::Wire)? {
            FrameCheck::Complete(n) => {
                return dossier_wire::decode(&buf[..n]).map_err(ReadFrameError::Wire);
            }
            FrameCheck::Incomplete if buf.len() < 4 => 4,
            FrameCheck::Incomplete => {
                4 + u32::from_be_bytes([buf[0], buf[1], buf[2], buf[3]]) as usize
            }
        };
        let filled = buf.len();
        buf.resize(want, 0);
        match timeout_at(deadline, recv.read(&mut buf[filled..])).await {
            Err(_) => return Err(ReadFrameError::TimedOut),
            Ok(Err(e)) => return Err(ReadFrameError::Stream(e)),
            Ok(Ok(None)) => return Err(ReadFrameError::Ended),
            Ok(Ok(Some(n))) => buf.truncate(filled + n),
        }
    }
}

/// Why a frame could not be written.
#[derive(Debug)]
pub(crate) enum WriteFrameError {
    /// The message does not fit a frame (a bug in the caller's size budget).
    Encode(WireError),
    /// The peer did not make room in time.
    TimedOut,
    /// The stream was stopped or the connection lost.
    Stream(quinn::WriteError),
}

impl std::fmt::Display for WriteFrameError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            WriteFrameError::Encode(e) => write!(f, "encoding: {e}"),
            WriteFrameError::TimedOut => f.write_str("peer did not read in time"),
            WriteFrameError::Stream(e) => write!(f, "{e}"),
        }
    }
}

/// Encodes `msg` and writes it as one frame.
pub(crate) async fn write_frame<T: Serialize>(
    send: &mut SendStream,
    msg: &T,
) -> Result<(), WriteFrameError> {
    let frame = dossier_wire::encode(msg).map_err(WriteFrameError::Encode)?;
    write_bytes(send, &frame).await
}

/// Writes raw bytes within [`WRITE_TIMEOUT`].
pub(crate) async fn write_bytes(
    send: &mut SendStream,
    bytes: &[u8],
) -> Result<(), WriteFrameError> {
    match timeout(WRITE_TIMEOUT, send.write_all(bytes)).await {
        Err(_) => Err(WriteFrameError::TimedOut),
        Ok(Err(e)) => Err(WriteFrameError::Stream(e)),
        Ok(Ok(())) => Ok(()),
    }
}

/// Writes an owned buffer (a body piece) without copying it, within [`WRITE_TIMEOUT`].
pub(crate) async fn write_chunk(
    send: &mut SendStream,
    bytes: bytes::Bytes,
) -> Result<(), WriteFrameError> {
    match timeout(WRITE_TIMEOUT, send.write_chunk(bytes)).await {
        Err(_) => Err(WriteFrameError::TimedOut),
        Ok(Err(e)) => Err(WriteFrameError::Stream(e)),
        Ok(Ok(())) => Ok(()),
    }
}

/// Keeps the items of a listing that fit one frame, in order: a listing is paged by its
/// cursor, so a cut-off tail is simply fetched by the next request. `overhead` is the size
/// of the message without items.
pub(crate) fn fit_in_frame<T: Serialize>(items: Vec<T>, overhead: usize) -> Vec<T> {
    // Room for the envelope, separators and a margin for escaping differences.
    let budget = dossier_wire::MAX_FRAME_BYTES.saturating_sub(overhead + 64);
    let mut used = 0usize;
    let mut keep = 0usize;
    for item in &items {
        let size = serde_json::to_vec(item).map_or(usize::MAX, |v| v.len()) + 1;
        if used.saturating_add(size) > budget {
            break;
        }
        used += size;
        keep += 1;
    }
    let mut items = items;
    items.truncate(keep);
    items
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fit_in_frame_keeps_a_prefix_that_encodes() {
        let items: Vec<String> = (0..100)
            .map(|i| format!("{i:04}{}", "x".repeat(4000)))
            .collect();
        let kept = fit_in_frame(items.clone(), 40);
        assert!(!kept.is_empty() && kept.len() < items.len());
        assert_eq!(kept[..], items[..kept.len()]);
        let msg = dossier_wire::ServerMessage::Directory { cards: kept };
        assert!(dossier_wire::encode(&msg).is_ok());
        assert_eq!(fit_in_frame(vec!["a"; 3], 40).len(), 3);
    }
}
