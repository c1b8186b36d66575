//! Hard size limits for everything dossier parses (docs/protocol.md §7).
//!
//! Every parser checks its input against these before allocating, so a hostile card,
//! manifest or bundle cannot make a node allocate unbounded memory.

/// Largest card file accepted (envelope JSON), in bytes.
pub const MAX_CARD_BYTES: usize = 16 * 1024;
/// Largest `manifest.json` accepted, in bytes.
pub const MAX_MANIFEST_BYTES: usize = 4 * 1024 * 1024;
/// Most parts one bundle may carry.
pub const MAX_PARTS: usize = 10_000;
/// Most recipients one bundle may name (the sender is not counted).
pub const MAX_RECIPIENTS: usize = 64;
/// Largest age header accepted before the payload, in bytes. An X25519 stanza is about
/// 110 bytes, so this leaves room for far more than [`MAX_RECIPIENTS`] + 1 stanzas while
/// refusing a header built to exhaust memory.
pub const MAX_AGE_HEADER_BYTES: usize = 64 * 1024;
/// Largest single part: the ustar size field holds 11 octal digits (8 GiB - 1).
pub const MAX_PART_BYTES: u64 = 0o77777777777;
/// Longest part path, in bytes (fits ustar name + prefix with the `parts/` prefix).
pub const MAX_PART_PATH_BYTES: usize = 240;
/// Longest single path component, in bytes (ustar name field).
pub const MAX_PART_COMPONENT_BYTES: usize = 100;
/// Longest subject line, in characters.
pub const MAX_SUBJECT_CHARS: usize = 500;
/// Longest thread id or patient reference, in characters.
pub const MAX_REF_CHARS: usize = 200;
/// Longest media type, in bytes.
pub const MAX_MEDIA_TYPE_BYTES: usize = 127;
/// Bytes of zero padding accepted after the tar end-of-archive marker.
pub const MAX_TRAILING_PADDING: u64 = 64 * 1024;
