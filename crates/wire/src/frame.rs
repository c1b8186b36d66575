//! Frames: `u32 big-endian length || JSON`, at most [`MAX_FRAME_BYTES`] of JSON
//! (docs/protocol.md §15.2).
//!
//! As in mini-redis, checking is separate from parsing: [`check`] never allocates and treats
//! an incomplete buffer as a normal state, so a reader can keep filling its buffer until a
//! frame is whole, and a peer announcing an oversized frame is refused before it is read.

/// Largest JSON payload of one frame.
pub const MAX_FRAME_BYTES: usize = 64 * 1024;

/// Why bytes could not become a message.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum WireError {
    /// The announced length is over the limit.
    #[error("frame of {0} bytes exceeds the {MAX_FRAME_BYTES}-byte limit")]
    TooLarge(usize),
    /// A zero-length frame.
    #[error("empty frame")]
    Empty,
    /// The JSON is not a message this version knows.
    #[error("malformed message: {0}")]
    Malformed(String),
}

/// Result of [`check`].
#[derive(Debug, PartialEq, Eq)]
pub enum FrameCheck {
    /// More bytes are needed.
    Incomplete,
    /// A whole frame of this many bytes (header included) is at the front of the buffer.
    Complete(usize),
}

/// Whether `buf` starts with a whole frame. Never allocates.
pub fn check(buf: &[u8]) -> Result<FrameCheck, WireError> {
    let Some(header) = buf.get(..4) else {
        return Ok(FrameCheck::Incomplete);
    };
    let len = u32::from_be_bytes([header[0], header[1], header[2], header[3]]) as usize;
    if len == 0 {
        return Err(WireError::Empty);
    }
    if len > MAX_FRAME_BYTES {
        return Err(WireError::TooLarge(len));
    }
    if buf.len() < 4 + len {
        return Ok(FrameCheck::Incomplete);
    }
    Ok(FrameCheck::Complete(4 + len))
}

/// Encodes a message as one frame.
pub fn encode<T: serde::Serialize>(msg: &T) -> Result<Vec<u8>, WireError> {
    let body = serde_json::to_vec(msg).map_err(|e| WireError::Malformed(e.to_string()))?;
    if body.len() > MAX_FRAME_BYTES {
        return Err(WireError::TooLarge(body.len()));
    }
    let mut out = Vec::with_capacity(4 + body.len());
    out.extend_from_slice(&(body.len() as u32).to_be_bytes());
    out.extend_from_slice(&body);
    Ok(out)
}

/// Decodes one whole frame (as measured by [`check`]).
pub fn decode<T: serde::de::DeserializeOwned>(frame: &[u8]) -> Result<T, WireError> {
    match check(frame)? {
        FrameCheck::Complete(n) if n == frame.len() => {
            serde_json::from_slice(&frame[4..]).map_err(|e| WireError::Malformed(e.to_string()))
        }
        _ => Err(WireError::Malformed(
            "frame length does not match its header".into(),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::message::ClientMessage;

    #[test]
    fn incomplete_is_not_an_error() {
        assert_eq!(check(&[]), Ok(FrameCheck::Incomplete));
        assert_eq!(check(&[0, 0, 0]), Ok(FrameCheck::Incomplete));
        assert_eq!(check(&[0, 0, 0, 5, b'{']), Ok(FrameCheck::Incomplete));
    }

    #[test]
    fn oversized_and_empty_are_refused_from_the_header_alone() {
        let big = ((MAX_FRAME_BYTES + 1) as u32).to_be_bytes();
        assert_eq!(check(&big), Err(WireError::TooLarge(MAX_FRAME_BYTES + 1)));
        assert_eq!(check(&[0, 0, 0, 0]), Err(WireError::Empty));
    }

    #[test]
    fn round_trip_and_trailing_bytes() {
        let f = encode(&ClientMessage::Mailbox {}).unwrap();
        assert_eq!(check(&f), Ok(FrameCheck::Complete(f.len())));
        assert_eq!(
            decode::<ClientMessage>(&f).unwrap(),
            ClientMessage::Mailbox {}
        );
        let mut longer = f.clone();
        longer.push(0);
        assert_eq!(check(&longer), Ok(FrameCheck::Complete(f.len())));
        assert!(decode::<ClientMessage>(&longer).is_err());
    }

    #[test]
    fn unknown_message_type_is_malformed() {
        let body = br#"{"type":"teleport"}"#;
        let mut f = (body.len() as u32).to_be_bytes().to_vec();
        f.extend_from_slice(body);
        assert!(matches!(
            decode::<ClientMessage>(&f),
            Err(WireError::Malformed(_))
        ));
    }
}
