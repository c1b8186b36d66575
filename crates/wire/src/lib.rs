//! The dossier relay wire protocol, version 1 (docs/protocol.md §15).
//!
//! Bytes in, bytes out: this crate has no sockets, tasks or clocks, so the whole protocol
//! can be unit-tested and fuzzed without a network. A frame is a 4-byte big-endian length
//! followed by that many bytes of JSON; [`frame::check`] decides without allocating whether
//! a buffer holds a whole frame (and refuses one over [`frame::MAX_FRAME_BYTES`] before it
//! arrives), [`frame::decode`] parses it. Ciphertext bodies never travel inside frames: a
//! message announces a length and the raw bytes follow on the same QUIC stream.

#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod frame;
pub mod message;
pub mod pin;

pub use frame::{FrameCheck, MAX_FRAME_BYTES, WireError, check, decode, encode};
pub use message::{
    ClientMessage, MailboxItem, Refusal, RefusalCode, RevocationItem, ServerMessage,
};

/// ALPN protocol id; a relay speaking another version refuses the TLS handshake.
pub const ALPN: &[u8] = b"dossier-relay/1";
/// The protocol version carried in `Auth`.
pub const PROTOCOL_VERSION: u32 = 1;
/// TLS exporter label for the authentication challenge (RFC 5705 / RFC 8446 §7.5).
pub const AUTH_EXPORTER_LABEL: &[u8] = b"EXPORTER-dossier-relay-auth-v1";
